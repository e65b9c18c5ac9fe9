//! The audit trail (pure): who a session is, blocked attempts folded into records, the journal
//! fields a record is written as and read back from, explanations, and the metrics' counters.
//!
//! The listener (`host::audit`) reads NFLOG messages from the host table and from each session's
//! own table, turns each into an [`Attempt`](crate::nflog::Attempt), and hands it to the
//! [`Folder`] of its source. A destination's first attempt is recorded at once; the ones after it
//! within [`FOLD_WINDOW_SECS`] are folded into one record that says how many they were.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::{Config, DnsPolicy};
use crate::nflog::{Attempt, Protocol};

/// The listener's unit (socket-activated by `pipelock-containment-audit.socket`, and started at
/// boot so the host table's group is bound).
pub const UNIT: &str = "pipelock-containment-audit.service";
/// The journal's MESSAGE_ID of every record (`journalctl MESSAGE_ID=...`).
pub const MESSAGE_ID: &str = "6c1f0e53b7a24d8e9a4c2f71d05b3e98";
/// The records' SYSLOG_IDENTIFIER.
pub const SYSLOG_IDENTIFIER: &str = "pipelock-containment-audit";
pub use crate::paths::NFLOG_GROUP;
/// Where the listener takes sessions' NFLOG sockets (root only; socket-activated).
pub const AUDIT_SOCKET: &str = "/run/pipelock-containment/audit.sock";
/// The listener's counters for the metrics, rewritten as they change.
pub const COUNTERS_FILE: &str = "/run/pipelock-containment/audit-counters.json";
/// Attempts at one destination within this many seconds after a record become one record.
pub const FOLD_WINDOW_SECS: u64 = 1;
/// Distinct destinations per source and window; more are folded into one "other destinations" record.
pub const MAX_DESTINATIONS: usize = 64;
/// Label sets of `pipelock_containment_blocked_total`; past this, operator and tool read "other".
pub const MAX_LABEL_SETS: usize = 64;

/// Journal fields of a record. The identity fields are the ones session units carry.
pub const FIELD_EVENT: &str = "PIPELOCK_EVENT";
pub const FIELD_SESSION: &str = "PIPELOCK_SESSION";
pub const FIELD_ORIGIN: &str = "PIPELOCK_ORIGIN";
pub const FIELD_UID: &str = "PIPELOCK_UID";
pub const FIELD_PROTOCOL: &str = "PIPELOCK_PROTOCOL";
pub const FIELD_DESTINATION: &str = "PIPELOCK_DESTINATION";
pub const FIELD_PORT: &str = "PIPELOCK_PORT";
pub const FIELD_NAME: &str = "PIPELOCK_NAME";
pub const FIELD_COUNT: &str = "PIPELOCK_COUNT";
pub const FIELD_FIRST: &str = "PIPELOCK_FIRST";
pub const FIELD_LAST: &str = "PIPELOCK_LAST";
pub const FIELD_KIND: &str = "PIPELOCK_KIND";
pub use crate::session::Identity;
use crate::session::{FIELD_CWD, FIELD_OPERATOR, FIELD_TOOL};

/// What the session's setup and stop tell the listener over [`AUDIT_SOCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handover {
    /// The session's NFLOG socket comes with this message.
    Attach(Identity),
    /// The session ended: record what is folded, then close its socket.
    Detach { unit: String },
}

/// Where an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A session's own table, inside its network namespace.
    Session,
    /// The host table (an agent process outside any session).
    Host,
}

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `count` attempts at one destination (1: the first; more: folded).
    Attempts,
    /// Attempts at more than [`MAX_DESTINATIONS`] destinations, folded into one record.
    Scattered,
    /// `count` attempts the kernel could not queue to the listener (a sequence gap), or whose
    /// packet was unreadable.
    Lost,
}

/// One audit record, as the journal holds it and `blocked` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    pub origin: Origin,
    /// RFC 3339 UTC: the first and last attempt the record stands for.
    pub first: String,
    pub last: String,
    pub session: Option<String>,
    pub operator: Option<String>,
    pub tool: Option<String>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub protocol: String,
    pub destination: Option<String>,
    pub port: Option<u16>,
    /// The queried name of a DNS attempt.
    pub name: Option<String>,
    pub count: u64,
}

/// What folds attempts together: one destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    protocol: Protocol,
    destination: IpAddr,
    port: Option<u16>,
    name: Option<String>,
}

#[derive(Debug, Clone)]
struct Window {
    opened: u64,
    first: u64,
    last: u64,
    /// Attempts since the record that opened the window.
    folded: u64,
    uid: Option<u32>,
}

impl Window {
    fn open(now: u64, uid: Option<u32>) -> Window {
        Window {
            opened: now,
            first: now,
            last: now,
            folded: 0,
            uid,
        }
    }
}

/// A record before the listener gives it an id and its source's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub kind: Kind,
    pub first: u64,
    pub last: u64,
    pub uid: Option<u32>,
    pub protocol: String,
    pub destination: Option<IpAddr>,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub count: u64,
}

/// Folds one source's attempts (a session, or the host table) into bounded records.
#[derive(Debug, Default)]
pub struct Folder {
    windows: HashMap<Key, Window>,
    scattered: Option<Window>,
    next_seq: Option<u32>,
    lost: u64,
    lost_since: Option<u64>,
}

impl Folder {
    /// One logged attempt at time `now` (seconds) with the kernel's sequence number `seq`.
    /// Returns the record to write at once: the first attempt at a destination in its window.
    pub fn attempt(
        &mut self,
        attempt: &Attempt,
        uid: Option<u32>,
        seq: Option<u32>,
        now: u64,
    ) -> Option<Draft> {
        self.sequence(seq, now);
        let key = Key {
            protocol: attempt.protocol,
            destination: attempt.destination,
            port: attempt.port,
            name: attempt.dns_name.clone(),
        };
        if let Some(window) = self.windows.get_mut(&key) {
            window.folded += 1;
            window.last = now;
            window.uid = uid;
            return None;
        }
        if self.windows.len() >= MAX_DESTINATIONS {
            let window = self.scattered.get_or_insert(Window::open(now, uid));
            window.folded += 1;
            window.last = now;
            return None;
        }
        let draft = Draft {
            kind: Kind::Attempts,
            first: now,
            last: now,
            uid,
            protocol: protocol_name(&key.protocol),
            destination: Some(key.destination),
            port: key.port,
            name: key.name.clone(),
            count: 1,
        };
        self.windows.insert(key, Window::open(now, uid));
        Some(draft)
    }

    /// The records of windows that closed by `now` (all of them with `all`: the source ends).
    /// A window with folded attempts stays open for the next ones; an idle one closes.
    pub fn flush(&mut self, now: u64, all: bool) -> Vec<Draft> {
        let due = |w: &Window| all || now >= w.opened + FOLD_WINDOW_SECS;
        let mut out = Vec::new();
        let mut keys: Vec<&Key> = self.windows.keys().collect();
        keys.sort_by_key(|k| (k.destination, k.port, k.protocol));
        let keys: Vec<Key> = keys.into_iter().cloned().collect();
        for key in keys {
            let window = self.windows.get_mut(&key).expect("listed key");
            if !due(window) {
                continue;
            }
            if window.folded == 0 {
                self.windows.remove(&key);
                continue;
            }
            out.push(Draft {
                kind: Kind::Attempts,
                first: window.first,
                last: window.last,
                uid: window.uid,
                protocol: protocol_name(&key.protocol),
                destination: Some(key.destination),
                port: key.port,
                name: key.name.clone(),
                count: window.folded,
            });
            *window = Window::open(now, window.uid);
            if all {
                self.windows.remove(&key);
            }
        }
        if let Some(window) = self.scattered.take_if(|w| due(w)) {
            out.push(Draft {
                kind: Kind::Scattered,
                first: window.first,
                last: window.last,
                uid: window.uid,
                protocol: "mixed".into(),
                destination: None,
                port: None,
                name: None,
                count: window.folded,
            });
        }
        if self.lost > 0 {
            out.push(Draft {
                kind: Kind::Lost,
                first: self.lost_since.unwrap_or(now),
                last: now,
                uid: None,
                protocol: "unknown".into(),
                destination: None,
                port: None,
                name: None,
                count: self.lost,
            });
            self.lost = 0;
            self.lost_since = None;
        }
        out
    }

    /// A logged packet that is not a readable IP packet: counted with the lost ones.
    pub fn unreadable(&mut self, seq: Option<u32>, now: u64) {
        self.sequence(seq, now);
        self.lost += 1;
        self.lost_since.get_or_insert(now);
    }

    /// The kernel numbers each message: a gap is attempts it could not queue.
    fn sequence(&mut self, seq: Option<u32>, now: u64) {
        let Some(seq) = seq else { return };
        if let Some(expected) = self.next_seq {
            let gap = seq.wrapping_sub(expected);
            // A gap past half the range is a reordering or a restart, not a loss.
            if gap > 0 && gap < u32::MAX / 2 {
                self.lost += u64::from(gap);
                self.lost_since.get_or_insert(now);
            }
        }
        self.next_seq = Some(seq.wrapping_add(1));
    }

    /// Whether anything waits to be recorded.
    pub fn is_idle(&self) -> bool {
        self.windows.is_empty() && self.scattered.is_none() && self.lost == 0
    }
}

fn protocol_name(protocol: &Protocol) -> String {
    protocol.name()
}

/// A draft with its id and source: the record to write.
pub fn record(draft: Draft, id: String, origin: Origin, identity: Option<&Identity>) -> Record {
    Record {
        id,
        kind: draft.kind,
        origin,
        first: crate::timefmt::rfc3339(draft.first as i64),
        last: crate::timefmt::rfc3339(draft.last as i64),
        session: identity.map(|i| i.unit.clone()),
        operator: identity.map(|i| i.operator.clone()),
        tool: identity.map(|i| i.tool.clone()),
        cwd: identity.map(|i| i.cwd.clone()),
        uid: draft.uid,
        protocol: draft.protocol,
        destination: draft.destination.map(|d| d.to_string()),
        port: draft.port,
        name: draft.name,
        count: draft.count,
    }
}

impl Record {
    /// `udp 192.0.2.1:53 (name exfil.example)` or `tcp [2001:db8::1]:443`.
    pub fn target(&self) -> String {
        let Some(destination) = &self.destination else {
            return match self.kind {
                Kind::Lost => "unknown destinations".into(),
                _ => "many destinations".into(),
            };
        };
        let host = if destination.contains(':') {
            format!("[{destination}]")
        } else {
            destination.clone()
        };
        let mut text = match self.port {
            Some(port) => format!("{} {host}:{port}", self.protocol),
            None => format!("{} {host}", self.protocol),
        };
        if let Some(name) = &self.name {
            text.push_str(&format!(" (name {name})"));
        }
        text
    }

    /// The journal's MESSAGE.
    pub fn message(&self) -> String {
        let who = match (&self.session, &self.operator, &self.tool) {
            (Some(unit), Some(operator), Some(tool)) => {
                format!("session {unit} ({tool} for {operator})")
            }
            _ => match self.uid {
                Some(uid) => format!("agent process (uid {uid}) outside a session"),
                None => "agent process outside a session".into(),
            },
        };
        match self.kind {
            Kind::Lost => format!(
                "{who}: {} blocked attempts not recorded in detail: the kernel's queue to the listener overflowed, or the packet was unreadable",
                self.count
            ),
            Kind::Scattered => format!(
                "{who}: {} blocked attempts at more than {MAX_DESTINATIONS} destinations, folded",
                self.count
            ),
            Kind::Attempts if self.count == 1 => {
                format!("{who} tried {}: blocked", self.target())
            }
            Kind::Attempts => format!(
                "{who} tried {} {} more times: blocked, folded into this record",
                self.target(),
                self.count
            ),
        }
    }

    /// The record as journal fields (MESSAGE and the identifiers included).
    pub fn journal_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("MESSAGE", self.message()),
            ("MESSAGE_ID", MESSAGE_ID.to_string()),
            ("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER.to_string()),
            (
                "PRIORITY",
                if self.kind == Kind::Lost { "3" } else { "4" }.into(),
            ),
            (FIELD_EVENT, self.id.clone()),
            (FIELD_KIND, enum_text(&self.kind)),
            (FIELD_ORIGIN, enum_text(&self.origin)),
            (FIELD_FIRST, self.first.clone()),
            (FIELD_LAST, self.last.clone()),
            (FIELD_PROTOCOL, self.protocol.clone()),
            (FIELD_COUNT, self.count.to_string()),
        ];
        let optional = [
            (FIELD_SESSION, self.session.clone()),
            (FIELD_OPERATOR, self.operator.clone()),
            (FIELD_TOOL, self.tool.clone()),
            (FIELD_CWD, self.cwd.clone()),
            (FIELD_UID, self.uid.map(|u| u.to_string())),
            (FIELD_DESTINATION, self.destination.clone()),
            (FIELD_PORT, self.port.map(|p| p.to_string())),
            (FIELD_NAME, self.name.clone()),
        ];
        fields.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        fields
    }

    /// A record from one `journalctl -o json` object; None when it is not one of ours.
    pub fn from_journal(entry: &serde_json::Value) -> Option<Record> {
        if entry["MESSAGE_ID"] != MESSAGE_ID {
            return None;
        }
        let text = |key: &str| entry[key].as_str().map(String::from);
        let number = |key: &str| text(key).and_then(|v| v.parse::<u64>().ok());
        Some(Record {
            id: text(FIELD_EVENT)?,
            kind: from_text(text(FIELD_KIND)?)?,
            origin: from_text(text(FIELD_ORIGIN)?)?,
            first: text(FIELD_FIRST).unwrap_or_default(),
            last: text(FIELD_LAST).unwrap_or_default(),
            session: text(FIELD_SESSION),
            operator: text(FIELD_OPERATOR),
            tool: text(FIELD_TOOL),
            cwd: text(FIELD_CWD),
            uid: number(FIELD_UID).and_then(|u| u32::try_from(u).ok()),
            protocol: text(FIELD_PROTOCOL).unwrap_or_default(),
            destination: text(FIELD_DESTINATION),
            port: number(FIELD_PORT).and_then(|p| u16::try_from(p).ok()),
            name: text(FIELD_NAME),
            count: number(FIELD_COUNT).unwrap_or(1),
        })
    }
}

fn from_text<T: for<'de> Deserialize<'de>>(text: String) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text)).ok()
}

fn enum_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Every record in `journalctl -o json` output (one object per line; other lines are skipped).
pub fn parse_journal(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| Record::from_journal(&entry))
        .collect()
}

/// `--session` accepts the unit name or the id in it.
pub fn session_unit(name: &str) -> String {
    if name.ends_with(".service") {
        name.to_string()
    } else if name.starts_with(crate::session::UNIT_PREFIX) {
        format!("{name}.service")
    } else {
        crate::session::unit_name_for(name)
    }
}

/// The records as a table for a terminal.
pub fn to_text(records: &[Record]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<20} {:<10} {:>6} {}\n",
        "TIME", "EVENT", "SESSION", "OPERATOR", "COUNT", "ATTEMPT"
    );
    for r in records {
        let session = match (&r.session, r.origin) {
            (Some(unit), _) => unit
                .strip_prefix(crate::session::UNIT_PREFIX)
                .and_then(|u| u.strip_suffix(".service"))
                .unwrap_or(unit)
                .to_string(),
            (None, _) => "(host table)".into(),
        };
        let attempt = match r.kind {
            Kind::Attempts => r.target(),
            Kind::Scattered => format!("{} (folded)", r.target()),
            Kind::Lost => "not recorded: queue overflow".into(),
        };
        out.push_str(&format!(
            "{:<20} {:<16} {:<20} {:<10} {:>6} {}\n",
            r.first,
            r.id,
            session,
            r.operator.as_deref().unwrap_or("-"),
            r.count,
            attempt
        ));
    }
    out
}

/// What `blocked --explain` says of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub what: String,
    pub why: String,
    pub fix: String,
}

/// Why the record's attempt was blocked and what to do, under `config`.
pub fn explain(record: &Record, config: &Config) -> Explanation {
    let proxy = format!(
        "{}:{}",
        config.proxy.listen_address, config.proxy.listen_port
    );
    let what = format!("{} ({})", record.message(), record.first);
    let loopback = record
        .destination
        .as_deref()
        .and_then(|d| d.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let (why, fix) = match record.kind {
        Kind::Lost => (
            "more attempts came than the listener could take; the kernel counted them all (`pipelock-containment status`)".to_string(),
            "find the session's other records: it was flooding; `pipelock-containment sessions stop UNIT` ends it".to_string(),
        ),
        Kind::Scattered => (
            format!("the agent tried more than {MAX_DESTINATIONS} destinations in a second: a scan, or a tool ignoring the proxy"),
            format!("the agent must use the proxy at {proxy} (HTTPS_PROXY and HTTP_PROXY are set in every session)"),
        ),
        Kind::Attempts if record.name.is_some() || record.port == Some(53) => {
            let name = record.name.as_deref().map(|n| format!(" for {n}")).unwrap_or_default();
            let why = format!("the agent sent a DNS query{name} itself; names are resolved by the proxy, so a query is never let out (a name is a channel out)");
            let fix = match config.network.dns {
                DnsPolicy::Blocked if record.origin == Origin::Host => "make the tool use the proxy (HTTPS_PROXY); if the agent must resolve names, set network.dns = \"loopback-resolver\" and run a resolver on this host's loopback".to_string(),
                _ => format!("make the tool use the proxy at {proxy}: it resolves the name; a tool that resolves before connecting needs its proxy setting (HTTPS_PROXY, ALL_PROXY)"),
            };
            (why, fix)
        }
        Kind::Attempts if loopback && record.protocol == "tcp" => {
            let port = record.port.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            (
                format!("TCP port {port} on loopback is neither the proxy port nor an allowed loopback port"),
                format!("if the agent should reach that service, allow port {port} in network.allowed_loopback_ports (in {}) and run `pipelock-containment apply`", crate::config::DEFAULT_CONFIG_PATH),
            )
        }
        Kind::Attempts if record.protocol == "tcp" => (
            format!("the agent connected directly instead of through the proxy at {proxy}"),
            format!("the agent must use the proxy at {proxy}: HTTPS_PROXY and HTTP_PROXY are set in every session; the tool ignored them (curl --noproxy, a hard-coded address, or a client without proxy support)"),
        ),
        Kind::Attempts => (
            format!("only TCP through the proxy at {proxy} leaves; {} is never let out", record.protocol),
            "there is no setting for it: use a TCP protocol through the proxy".to_string(),
        ),
    };
    Explanation { what, why, fix }
}

/// The label set of one blocked attempt in the metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels {
    pub operator: String,
    pub tool: String,
    pub proto: String,
}

/// `pipelock_containment_blocked_total`, as the listener counts it: bounded label sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub blocked: Vec<(Labels, u64)>,
    /// Sessions whose sockets the listener holds.
    pub sessions_attached: u64,
}

impl Counters {
    /// Count `count` attempts of `protocol` (a name or port 53 counts as `dns`).
    pub fn add(&mut self, identity: Option<&Identity>, draft: &Draft) {
        let proto = if draft.name.is_some() || draft.port == Some(53) {
            "dns".to_string()
        } else {
            match draft.protocol.as_str() {
                p @ ("tcp" | "udp" | "icmp" | "icmpv6") => p.to_string(),
                _ => "other".to_string(),
            }
        };
        let (operator, tool) = match identity {
            Some(i) => (i.operator.clone(), i.tool.clone()),
            None => ("none".to_string(), "none".to_string()),
        };
        let mut labels = Labels {
            operator,
            tool,
            proto,
        };
        if !self.blocked.iter().any(|(l, _)| *l == labels) && self.blocked.len() >= MAX_LABEL_SETS {
            labels.operator = "other".into();
            labels.tool = "other".into();
        }
        match self.blocked.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, n)) => *n += draft.count,
            None => self.blocked.push((labels, draft.count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(destination: &str, port: u16, protocol: Protocol) -> Attempt {
        Attempt {
            protocol,
            source: "127.0.0.1".parse().unwrap(),
            destination: destination.parse().unwrap(),
            port: Some(port),
            dns_name: None,
            dns_type: None,
        }
    }

    fn identity() -> Identity {
        Identity {
            unit: "pipelock-agent-00000000000000ab.service".into(),
            operator: "alice".into(),
            tool: "claude".into(),
            cwd: "/home/alice/proj".into(),
        }
    }

    #[test]
    fn a_burst_is_one_record_then_one_folded_record_per_window() {
        let mut folder = Folder::default();
        let a = attempt("192.0.2.1", 443, Protocol::Tcp);
        let mut immediate = Vec::new();
        for i in 0..10_000u32 {
            immediate.extend(folder.attempt(&a, Some(998), Some(i), 100 + u64::from(i / 5000)));
        }
        assert_eq!(immediate.len(), 1);
        assert_eq!(immediate[0].count, 1);
        let later = folder.flush(102, false);
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(later[0].count, 9_999);
        assert_eq!((later[0].first, later[0].last), (100, 101));
        // The next window is idle: it closes and records nothing.
        assert!(folder.flush(104, false).is_empty());
        assert!(folder.is_idle());
    }

    #[test]
    fn a_window_not_yet_due_waits() {
        let mut folder = Folder::default();
        let a = attempt("192.0.2.1", 80, Protocol::Tcp);
        folder.attempt(&a, None, None, 50);
        folder.attempt(&a, None, None, 50);
        assert!(folder.flush(50, false).is_empty());
        assert_eq!(folder.flush(50, true)[0].count, 1);
        assert!(folder.is_idle());
    }

    #[test]
    fn sequence_gaps_are_lost_attempts_and_say_so() {
        let mut folder = Folder::default();
        let a = attempt("192.0.2.1", 9, Protocol::Udp);
        folder.attempt(&a, None, Some(10), 1);
        folder.attempt(&a, None, Some(11), 1);
        folder.attempt(&a, None, Some(15), 1);
        // An unreadable packet is counted with the lost ones, and its number is no gap.
        folder.unreadable(Some(16), 1);
        folder.attempt(&a, None, Some(17), 1);
        let records = folder.flush(5, false);
        let lost: Vec<_> = records.iter().filter(|d| d.kind == Kind::Lost).collect();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].count, 4);
        let folded: u64 = records
            .iter()
            .filter(|d| d.kind == Kind::Attempts)
            .map(|d| d.count)
            .sum();
        assert_eq!(
            folded + 1 + 4,
            8,
            "sequence numbers 10 to 17: eight attempts"
        );
    }

    #[test]
    fn many_destinations_fold_into_one_scattered_record() {
        let mut folder = Folder::default();
        let mut immediate = 0;
        for port in 1..=1000u16 {
            immediate += folder
                .attempt(&attempt("192.0.2.1", port, Protocol::Tcp), None, None, 7)
                .into_iter()
                .count();
        }
        assert_eq!(immediate, MAX_DESTINATIONS);
        let records = folder.flush(9, false);
        let scattered: Vec<_> = records
            .iter()
            .filter(|d| d.kind == Kind::Scattered)
            .collect();
        assert_eq!(scattered.len(), 1);
        assert_eq!(scattered[0].count, 1000 - MAX_DESTINATIONS as u64);
    }

    #[test]
    fn records_round_trip_through_journal_fields() {
        let mut a = attempt("2001:db8::53", 53, Protocol::Udp);
        a.dns_name = Some("exfil-1234.example".into());
        let draft = Folder::default().attempt(&a, Some(998), None, 0).unwrap();
        let record = record(
            draft,
            "00ab00cd00ef0012".into(),
            Origin::Session,
            Some(&identity()),
        );
        let fields = record.journal_fields();
        let entry: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        let line = serde_json::Value::Object(entry).to_string();
        let back = parse_journal(&format!("{line}\n{{\"MESSAGE\":\"other\"}}\n"));
        assert_eq!(back, vec![record.clone()]);
        assert!(record.message().contains("exfil-1234.example"));
        assert!(record.message().contains("claude for alice"));
    }

    #[test]
    fn explanations_name_the_fix() {
        let config = Config::defaults();
        let draft = |a: &Attempt| Folder::default().attempt(a, None, None, 0).unwrap();
        let local = record(
            draft(&attempt("127.0.0.1", 5432, Protocol::Tcp)),
            "1".into(),
            Origin::Host,
            None,
        );
        assert!(explain(&local, &config)
            .fix
            .contains("allow port 5432 in network.allowed_loopback_ports"));
        let direct = record(
            draft(&attempt("192.0.2.1", 443, Protocol::Tcp)),
            "2".into(),
            Origin::Session,
            Some(&identity()),
        );
        assert!(explain(&direct, &config).fix.contains("must use the proxy"));
        let mut dns = attempt("192.0.2.1", 53, Protocol::Udp);
        dns.dns_name = Some("x.example".into());
        let dns = record(draft(&dns), "3".into(), Origin::Session, Some(&identity()));
        assert!(explain(&dns, &config).why.contains("x.example"));
        let udp = record(
            draft(&attempt("192.0.2.1", 9, Protocol::Udp)),
            "4".into(),
            Origin::Session,
            None,
        );
        assert!(explain(&udp, &config).fix.contains("no setting"));
    }

    #[test]
    fn counter_label_sets_are_bounded() {
        let mut counters = Counters::default();
        let draft = Folder::default()
            .attempt(&attempt("192.0.2.1", 53, Protocol::Udp), None, None, 0)
            .unwrap();
        for n in 0..200 {
            let mut who = identity();
            who.operator = format!("op{n}");
            counters.add(Some(&who), &draft);
        }
        counters.add(None, &draft);
        assert!(counters.blocked.len() <= MAX_LABEL_SETS + 1);
        let total: u64 = counters.blocked.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 201);
        assert!(counters
            .blocked
            .iter()
            .any(|(l, _)| l.operator == "other" && l.proto == "dns"));
    }

    #[test]
    fn session_names_take_the_unit_or_its_id() {
        let unit = "pipelock-agent-00000000000000ab.service";
        assert_eq!(session_unit(unit), unit);
        assert_eq!(session_unit("pipelock-agent-00000000000000ab"), unit);
        assert_eq!(session_unit("00000000000000ab"), unit);
    }
}
