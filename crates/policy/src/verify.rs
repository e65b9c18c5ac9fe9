//! The verify probes (pure): each probe's verdict from observations the host layer gathered, and the report.
//!
//! `host::verify` gathers [`Observations`] (loaded and rendered table text, file modes, unit
//! states, listening sockets, what a probe run as the agent saw); [`evaluate`] turns them into
//! one [`Probe`] per property, with a one-line detail and a remediation. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{Config, DnsPolicy};
use crate::exit;
use crate::facts::{Account, LoginUidRange};
use crate::paths;

/// Version of the JSON document `verify --json` prints (docs/verify-schema.json).
pub const SCHEMA_VERSION: u32 = 1;

/// Every probe, in report order. Names are stable: dashboards key on them.
pub const PROBE_NAMES: &[&str] = &[
    "users",
    "nft-table",
    "rule-file",
    "boot-unit",
    "proxy-unit",
    "sudoers",
    "wrappers",
    "ca-bundle",
    "ca-key",
    "agent-egress-denied",
    "agent-via-proxy",
    "operator-direct",
    "agent-loopback-denied",
    "dns-policy",
    "agent-processes-in-sessions",
    "sessions-isolated",
    "table-watcher",
    "audit-listener",
    "account-locked",
    "ssh-denied",
    "cron-denied",
    "dbus-policy",
];

const APPLY: &str = "run `pipelock-containment apply` as root";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One checked property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Stable kebab-case name (one of [`PROBE_NAMES`]).
    pub name: String,
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// What to do about it (empty when the probe passed).
    pub remediation: String,
    /// A unified diff (expected -> found) when content drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Probe {
    fn pass(name: &str, detail: impl Into<String>) -> Probe {
        Probe {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            remediation: String::new(),
            diff: None,
        }
    }
    fn fail(name: &str, detail: impl Into<String>, remediation: impl Into<String>) -> Probe {
        Probe {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            remediation: remediation.into(),
            diff: None,
        }
    }
    fn skip(name: &str, detail: impl Into<String>, remediation: impl Into<String>) -> Probe {
        Probe {
            name: name.into(),
            status: Status::Skip,
            detail: detail.into(),
            remediation: remediation.into(),
            diff: None,
        }
    }
    fn with_diff(mut self, diff: String) -> Probe {
        self.diff = Some(diff);
        self
    }
}

/// The whole verify result, as `verify --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub host: String,
    /// True when no probe failed.
    pub contained: bool,
    pub probes: Vec<Probe>,
}

impl Report {
    pub fn new(host: String, probes: Vec<Probe>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            host,
            contained: !probes.iter().any(|p| p.status == Status::Fail),
            probes,
        }
    }

    /// 0 all passed, 1 any failed, 2 any skipped and none failed.
    pub fn exit_code(&self) -> i32 {
        if self.probes.iter().any(|p| p.status == Status::Fail) {
            exit::FAILURE
        } else if self.probes.iter().any(|p| p.status == Status::Skip) {
            exit::SKIPPED
        } else {
            exit::OK
        }
    }

    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }

    /// The human-readable report: one line per probe, the fix and any diff below it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for probe in &self.probes {
            let _ = writeln!(
                out,
                "{} {:<22} {}",
                probe.status.label(),
                probe.name,
                probe.detail
            );
            if !probe.remediation.is_empty() && probe.status != Status::Pass {
                let _ = writeln!(out, "     {:<22} fix: {}", "", probe.remediation);
            }
            if let Some(diff) = &probe.diff {
                for line in diff.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
        let count = |s| self.probes.iter().filter(|p| p.status == s).count();
        let _ = writeln!(
            out,
            "{}: {} ({} passed, {} failed, {} skipped)",
            self.host,
            if self.contained {
                "contained"
            } else {
                "NOT contained"
            },
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip)
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Observations

/// A file as found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileState {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The text, when it was read (and is UTF-8).
    pub contents: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersObs {
    pub agent_name: String,
    pub proxy_name: String,
    pub agent: Option<Account>,
    pub proxy: Option<Account>,
    pub login_range: LoginUidRange,
    /// The agent's /etc/shadow state (None: no line, or the file is not readable).
    pub agent_shadow: Option<crate::facts::ShadowState>,
    /// The agent's login shell from the user database.
    pub agent_shell: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableObs {
    /// `nft -s list table` of the live table: Ok(None) when it is not loaded.
    pub loaded: Result<Option<String>, String>,
    /// The rendered rule file loaded into a throwaway namespace and listed back the same way.
    pub expected: Result<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFileObs {
    pub path: String,
    pub state: Option<FileState>,
    /// What the current config and UIDs render (None when rendering was impossible).
    pub expected: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitObs {
    pub systemd_running: bool,
    /// `systemctl is-enabled` output.
    pub enabled: String,
    /// `systemctl is-active` output.
    pub active: String,
}

/// A listening TCP socket and the UID that owns it (from /proc/net/tcp{,6}).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub addr: SocketAddr,
    pub uid: u32,
    /// The socket's inode, as /proc/PID/fd links name it (`socket:[INODE]`).
    pub inode: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyObs {
    pub systemd_running: bool,
    pub active: String,
    /// The unit's effective `User=`.
    pub unit_user: String,
    /// Every listening TCP socket (the evaluation picks the relevant ones).
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoersObs {
    pub file: GeneratedFileObs,
    /// `visudo -cf`: None when visudo is not installed; Err carries its message.
    pub visudo: Option<Result<(), String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappersObs {
    /// Rendered launcher and wrappers: path -> (mode, contents).
    pub expected: BTreeMap<String, (u32, String)>,
    /// What is in the wrapper directory: path -> state.
    pub found: BTreeMap<String, FileState>,
}

/// Whether the agent could open a file for reading (tested as the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Readable,
    Unreadable,
    Missing,
    /// The probe could not run (no agent user, setpriv failed).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundleObs {
    pub bundle_path: String,
    pub bundle: Option<FileState>,
    pub agent_access: Access,
    pub proxy_ca_path: String,
    /// The proxy CA's PEM text; None when absent.
    pub proxy_ca: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaKeyObs {
    pub key_path: String,
    pub key: Option<FileState>,
    pub agent_access: Access,
}

/// What a network attempt made as the agent saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetOutcome {
    /// EPERM/EACCES on send or connect: a netfilter verdict.
    Denied,
    /// TCP reset (ECONNREFUSED): the reject rule, or nothing listening.
    Refused,
    /// The datagram left the socket.
    Sent,
    /// The TCP handshake completed.
    Connected,
    TimedOut,
    /// No route: says nothing about the rule.
    Unreachable,
    Error(String),
}

impl NetOutcome {
    /// The word the agent-side probe prints.
    pub fn word(&self) -> String {
        match self {
            NetOutcome::Denied => "denied".into(),
            NetOutcome::Refused => "refused".into(),
            NetOutcome::Sent => "sent".into(),
            NetOutcome::Connected => "connected".into(),
            NetOutcome::TimedOut => "timeout".into(),
            NetOutcome::Unreachable => "unreachable".into(),
            NetOutcome::Error(e) => format!("error: {e}"),
        }
    }

    pub fn from_word(word: &str) -> NetOutcome {
        match word.trim() {
            "denied" => NetOutcome::Denied,
            "refused" => NetOutcome::Refused,
            "sent" => NetOutcome::Sent,
            "connected" => NetOutcome::Connected,
            "timeout" => NetOutcome::TimedOut,
            "unreachable" => NetOutcome::Unreachable,
            other => NetOutcome::Error(
                other
                    .strip_prefix("error: ")
                    .unwrap_or(other)
                    .trim()
                    .to_string(),
            ),
        }
    }

    fn got_through(&self) -> bool {
        matches!(self, NetOutcome::Sent | NetOutcome::Connected)
    }

    fn blocked(&self) -> bool {
        matches!(
            self,
            NetOutcome::Denied | NetOutcome::Refused | NetOutcome::TimedOut
        )
    }
}

/// One attempt: a description ("udp 192.0.2.1:9") and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub target: String,
    pub outcome: NetOutcome,
}

/// Attempts made as the agent; Err when they could not be made (no agent user, no setpriv).
pub type AgentAttempts = Result<Vec<Attempt>, String>;

/// A fetch of the --url (curl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchObs {
    /// No --url given.
    NoUrl,
    /// curl is not installed, or the identity to fetch as is missing.
    CannotRun(String),
    Done {
        url: String,
        curl_exit: i32,
        http_code: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    pub users: UsersObs,
    pub table: TableObs,
    pub rule_file: GeneratedFileObs,
    pub boot_unit: UnitObs,
    pub proxy: ProxyObs,
    pub sudoers: SudoersObs,
    pub wrappers: WrappersObs,
    pub ca_bundle: CaBundleObs,
    pub ca_key: CaKeyObs,
    pub agent_egress: AgentAttempts,
    pub agent_via_proxy: FetchObs,
    pub operator_direct: FetchObs,
    pub agent_loopback: AgentAttempts,
    pub dns: AgentAttempts,
    pub sessions: SessionsObs,
    pub watcher: WatcherObs,
    pub audit: AuditObs,
    pub ways_in: WaysInObs,
}

/// The audit listener: its unit's state and the counters it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditObs {
    pub systemd_running: bool,
    /// `systemctl is-active` output.
    pub active: String,
    pub counters: Option<crate::audit::Counters>,
}

/// The table watcher: its unit's state and what it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherObs {
    pub systemd_running: bool,
    /// `systemctl is-active` output.
    pub active: String,
    pub state: Option<crate::watch::WatchState>,
}

/// The agent's processes and the running sessions, as the host layer saw them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionsObs {
    pub systemd_running: bool,
    /// Processes of the agent UID outside every session unit: (pid, command line).
    pub outside: Vec<(u32, String)>,
    pub sessions: Vec<SessionView>,
}

/// One running session seen from the host: its network namespace and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub unit: String,
    /// Interfaces in the session's network namespace (from /proc/PID/net/dev).
    pub interfaces: Vec<String>,
    /// Routes in it that do not go through loopback.
    pub routes_out: usize,
    pub tasks_max: Option<u64>,
}

/// Every probe's verdict, in [`PROBE_NAMES`] order.
pub fn evaluate(config: &Config, obs: &Observations) -> Vec<Probe> {
    let proxy_uid = obs.users.proxy.as_ref().map(|a| a.uid);
    vec![
        users(&obs.users),
        nft_table(&obs.table),
        rule_file(&obs.rule_file),
        boot_unit(&obs.boot_unit),
        proxy_unit(config, proxy_uid, &obs.proxy),
        sudoers(&obs.sudoers),
        wrappers(&obs.wrappers),
        ca_bundle(config, &obs.ca_bundle),
        ca_key(config, &obs.ca_key),
        agent_egress_denied(&obs.agent_egress),
        agent_via_proxy(&obs.agent_via_proxy),
        operator_direct(&obs.operator_direct),
        agent_loopback_denied(&obs.agent_loopback),
        dns_policy(config, &obs.dns),
        agent_processes_in_sessions(&obs.sessions),
        sessions_isolated(config, &obs.sessions),
        table_watcher(&obs.watcher),
        audit_listener(&obs.audit),
        account_locked(&obs.users),
        ssh_denied(&obs.users.agent_name, &obs.ways_in.sshd),
        cron_denied(&obs.users.agent_name, &obs.ways_in.schedulers),
        dbus_policy(&obs.ways_in.dbus),
    ]
}

/// sshd's effective config for a login as the agent (`sshd -T -C user=AGENT,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdObs {
    NotInstalled,
    Effective(String),
    /// `sshd -T` failed: its message.
    Unreadable(String),
}

/// One job scheduler and its allow/deny lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerObs {
    pub name: &'static str,
    pub installed: bool,
    pub allow_path: String,
    pub allow: Option<String>,
    pub deny_path: String,
    pub deny: Option<String>,
}

/// The packaged D-Bus policy as it is, and as the current config renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbusObs {
    pub path: String,
    pub found: Option<String>,
    pub expected: Result<String, String>,
}

/// Ways into the agent account besides the launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaysInObs {
    pub sshd: SshdObs,
    pub schedulers: Vec<SchedulerObs>,
    pub dbus: DbusObs,
}

pub fn ssh_denied(agent: &str, obs: &SshdObs) -> Probe {
    const NAME: &str = "ssh-denied";
    match obs {
        SshdObs::NotInstalled => Probe::pass(NAME, "sshd is not installed"),
        SshdObs::Effective(text) if crate::account::sshd_denies(text, agent) => Probe::pass(
            NAME,
            format!("sshd's effective config denies {agent} (DenyUsers)"),
        ),
        SshdObs::Effective(_) => Probe::fail(
            NAME,
            format!(
                "sshd would accept a login as {agent}: its effective config has no DenyUsers \
                 for it (an expired account stops PAM logins, not every sshd setup)"
            ),
            format!(
                "{APPLY} (it writes {}); if sshd_config does not include {}/*.conf, add \
                 `DenyUsers {agent}` to it, then reload sshd",
                crate::account::SSHD_DROPIN,
                crate::account::SSHD_DROPIN_DIR
            ),
        ),
        SshdObs::Unreadable(err) => Probe::skip(
            NAME,
            format!("`sshd -T` failed: {err}"),
            "run verify as root; check sshd's config with `sshd -t`",
        ),
    }
}

pub fn cron_denied(agent: &str, schedulers: &[SchedulerObs]) -> Probe {
    const NAME: &str = "cron-denied";
    let installed: Vec<&SchedulerObs> = schedulers.iter().filter(|s| s.installed).collect();
    if installed.is_empty() {
        return Probe::pass(NAME, "neither cron nor at is installed");
    }
    let mut open = Vec::new();
    for s in &installed {
        let listed = |text: &Option<String>| {
            text.as_deref()
                .is_some_and(|t| crate::account::is_listed(t, agent))
        };
        let denied = match &s.allow {
            Some(_) => !listed(&s.allow),
            None => listed(&s.deny),
        };
        if !denied {
            open.push(format!(
                "{} ({} does not list {agent})",
                s.name, s.deny_path
            ));
        }
    }
    let names: Vec<&str> = installed.iter().map(|s| s.name).collect();
    if open.is_empty() {
        Probe::pass(
            NAME,
            format!("{} refuse jobs of {agent}", names.join(" and ")),
        )
    } else {
        Probe::fail(
            NAME,
            format!("{agent} may submit jobs to {}", open.join(", ")),
            format!("{APPLY} (it lists {agent} in the deny lists)"),
        )
    }
}

pub fn dbus_policy(obs: &DbusObs) -> Probe {
    const NAME: &str = "dbus-policy";
    let expected = match &obs.expected {
        Ok(text) => text,
        Err(err) => return Probe::skip(NAME, format!("cannot render the policy: {err}"), ""),
    };
    match &obs.found {
        Some(found) if found == expected => Probe::pass(
            NAME,
            format!(
                "{} denies the agent {} name-resolution services",
                obs.path,
                crate::account::DBUS_DENIED.len()
            ),
        ),
        Some(_) => Probe::fail(
            NAME,
            format!(
                "{} does not name the configured agent: the bus lets it resolve names",
                obs.path
            ),
            "the package was built for other user names: install the site build for this \
             config (users.agent), or reinstall the package",
        ),
        None => Probe::fail(
            NAME,
            format!(
                "{} is missing: the agent can resolve names over D-Bus",
                obs.path
            ),
            "reinstall the package (apt install --reinstall pipelock-containment)",
        ),
    }
}

pub fn account_locked(obs: &UsersObs) -> Probe {
    const NAME: &str = "account-locked";
    let Some(state) = obs.agent_shadow else {
        return Probe::skip(
            NAME,
            format!("no /etc/shadow line for {} could be read", obs.agent_name),
            "run verify as root; an account in LDAP or sssd is locked there",
        );
    };
    let shell_ok = obs
        .agent_shell
        .as_deref()
        .is_some_and(|s| s.ends_with("/nologin") || s.ends_with("/false"));
    let mut problems = Vec::new();
    if !state.locked {
        problems.push("it has a usable password");
    }
    if !state.expired {
        problems.push("it is not expired (PAM logins, su, sshd keys and cron accept it)");
    }
    if !shell_ok {
        problems.push("its shell is not nologin");
    }
    if problems.is_empty() {
        Probe::pass(
            NAME,
            format!(
                "{} is locked, expired and has no login shell",
                obs.agent_name
            ),
        )
    } else {
        Probe::fail(
            NAME,
            format!(
                "the agent account {}: {}",
                obs.agent_name,
                problems.join("; ")
            ),
            format!("{APPLY} (usermod --lock --expiredate 1 {})", obs.agent_name),
        )
    }
}

pub fn table_watcher(obs: &WatcherObs) -> Probe {
    const NAME: &str = "table-watcher";
    if !obs.systemd_running {
        return Probe::skip(NAME, "systemd is not running: no watcher", "");
    }
    let last = obs.state.as_ref().map_or_else(
        || "no record yet".to_string(),
        |s| match (&s.last_restore, s.last_restore_ms) {
            (Some(at), Some(ms)) => format!(
                "{} restores since it started, the last at {at}, {ms} ms after the deletion",
                s.restores
            ),
            _ => "nothing removed the table since it started".to_string(),
        },
    );
    match obs.active.as_str() {
        "active" => Probe::pass(NAME, format!("active; {last}")),
        state => Probe::fail(
            NAME,
            format!(
                "{} is {state}: a flush by someone else would leave agent processes outside \
                 sessions uncontained until the next apply ({last})",
                crate::watch::UNIT
            ),
            format!("systemctl enable --now {}, or {APPLY}", crate::watch::UNIT),
        ),
    }
}

pub fn audit_listener(obs: &AuditObs) -> Probe {
    const NAME: &str = "audit-listener";
    if !obs.systemd_running {
        return Probe::skip(NAME, "systemd is not running: no listener", "");
    }
    let counted = obs.counters.as_ref().map_or_else(
        || "no counters written yet".to_string(),
        |c| {
            format!(
                "recording {} sessions; {} blocked attempts since boot",
                c.sessions_attached,
                c.blocked.iter().map(|(_, n)| n).sum::<u64>()
            )
        },
    );
    match obs.active.as_str() {
        "active" => Probe::pass(NAME, format!("active; {counted}")),
        state => Probe::fail(
            NAME,
            format!(
                "{} is {state}: blocked attempts are still refused but not recorded, and \
                 `blocked` shows nothing new",
                crate::audit::UNIT
            ),
            format!(
                "systemctl enable --now pipelock-containment-audit.socket {}, or {APPLY}",
                crate::audit::UNIT
            ),
        ),
    }
}

pub fn agent_processes_in_sessions(obs: &SessionsObs) -> Probe {
    const NAME: &str = "agent-processes-in-sessions";
    if obs.outside.is_empty() {
        return Probe::pass(
            NAME,
            format!(
                "every process of the agent runs in a session ({} sessions)",
                obs.sessions.len()
            ),
        );
    }
    let listed: Vec<String> = obs
        .outside
        .iter()
        .take(10)
        .map(|(pid, cmd)| format!("{pid} {cmd}"))
        .collect();
    Probe::fail(
        NAME,
        format!(
            "{} process(es) of the agent run outside a session, behind the host table only: {}",
            obs.outside.len(),
            listed.join("; ")
        ),
        "find who started them (cron, ssh, a script's runuser) and launch through cc-launch; \
         end them with `kill PID`",
    )
}

pub fn sessions_isolated(config: &Config, obs: &SessionsObs) -> Probe {
    const NAME: &str = "sessions-isolated";
    if !obs.systemd_running {
        return Probe::skip(NAME, "systemd is not running: no sessions", "");
    }
    let mut problems = Vec::new();
    for s in &obs.sessions {
        let others: Vec<&String> = s.interfaces.iter().filter(|i| *i != "lo").collect();
        if !others.is_empty() || s.routes_out > 0 {
            problems.push(format!(
                "{} has interfaces {others:?} and {} routes out",
                s.unit, s.routes_out
            ));
        }
        if s.tasks_max != Some(u64::from(config.session.tasks_max)) {
            problems.push(format!(
                "{} has TasksMax {:?}, not {}",
                s.unit, s.tasks_max, config.session.tasks_max
            ));
        }
    }
    if problems.is_empty() {
        Probe::pass(
            NAME,
            format!(
                "{} sessions, each with only loopback and TasksMax {}",
                obs.sessions.len(),
                config.session.tasks_max
            ),
        )
    } else {
        Probe::fail(
            NAME,
            problems.join("; "),
            "stop them (`pipelock-containment sessions stop ID`) and launch again with cc-launch",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The probes

pub fn users(obs: &UsersObs) -> Probe {
    const NAME: &str = "users";
    let mut found = Vec::new();
    for (role, name, account) in [
        ("agent", &obs.agent_name, &obs.agent),
        ("proxy", &obs.proxy_name, &obs.proxy),
    ] {
        let Some(account) = account else {
            return Probe::fail(
                NAME,
                format!("the {role} user {name} does not exist"),
                format!("{APPLY}: it creates the user as a system account"),
            );
        };
        if account.uid == 0 || obs.login_range.contains(account.uid) {
            return Probe::fail(
                NAME,
                format!(
                    "the {role} user {name} has UID {}, not a system account (login range {}-{})",
                    account.uid, obs.login_range.min, obs.login_range.max
                ),
                format!(
                    "delete {name} and {APPLY}, which recreates it as a system user (or set users.{role})"
                ),
            );
        }
        found.push(format!("{name} UID {}", account.uid));
    }
    if let (Some(agent), Some(proxy)) = (&obs.agent, &obs.proxy) {
        if agent.uid == proxy.uid {
            return Probe::fail(
                NAME,
                format!("{} and {} share UID {}", agent.name, proxy.name, agent.uid),
                "give each role its own system user, then apply",
            );
        }
    }
    Probe::pass(NAME, format!("{}: system accounts", found.join(", ")))
}

/// Make two `nft list` texts comparable: drop counter values, blank lines and trailing blanks.
pub fn normalize_table(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let mut words: Vec<&str> = line.split_whitespace().collect();
        for i in 1..words.len() {
            if matches!(words[i - 1], "packets" | "bytes") && words[i].parse::<u64>().is_ok() {
                words[i] = "0";
            }
        }
        out.push_str(indent);
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// A unified diff from `expected` to `found`, or None when they are equal.
pub fn unified_diff(
    expected: &str,
    found: &str,
    expected_name: &str,
    found_name: &str,
) -> Option<String> {
    if expected == found {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(expected, found)
            .unified_diff()
            .context_radius(3)
            .header(expected_name, found_name)
            .to_string(),
    )
}

fn changed_lines(diff: &str) -> String {
    let count = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') && !l.starts_with("+++"))
                || (l.starts_with('-') && !l.starts_with("---"))
        })
        .count();
    if count == 1 {
        "1 line changed".into()
    } else {
        format!("{count} lines changed")
    }
}

pub fn nft_table(obs: &TableObs) -> Probe {
    const NAME: &str = "nft-table";
    let table = format!("{} {}", paths::NFT_TABLE_FAMILY, paths::NFT_TABLE);
    let loaded = match &obs.loaded {
        Err(err) => {
            return Probe::fail(
                NAME,
                format!("cannot list table {table}: {err}"),
                "run verify as root on a host with nft installed",
            )
        }
        Ok(None) => {
            return Probe::fail(
                NAME,
                format!("table {table} is not loaded: the agent's traffic is not restricted"),
                format!("systemctl restart pipelock-containment.service, or {APPLY}"),
            )
        }
        Ok(Some(text)) => normalize_table(text),
    };
    let expected = match &obs.expected {
        Err(err) => {
            return Probe::fail(
                NAME,
                format!("cannot render the expected table: {err}"),
                APPLY,
            )
        }
        Ok(text) => normalize_table(text),
    };
    match unified_diff(
        &expected,
        &loaded,
        "rendered (config + current UIDs)",
        "loaded",
    ) {
        None => Probe::pass(
            NAME,
            format!("table {table} is loaded and equals what the config and current UIDs render"),
        ),
        Some(diff) => Probe::fail(
            NAME,
            format!(
                "table {table} differs from what the config and current UIDs render ({})",
                changed_lines(&diff)
            ),
            format!("{APPLY}: it replaces the table in one transaction"),
        )
        .with_diff(diff),
    }
}

pub fn rule_file(obs: &GeneratedFileObs) -> Probe {
    const NAME: &str = "rule-file";
    let Some(state) = &obs.state else {
        return Probe::fail(
            NAME,
            format!("{} is missing: the table will not load at boot", obs.path),
            APPLY,
        );
    };
    if let Some(problem) = unsafe_ownership(state) {
        return Probe::fail(NAME, format!("{} {problem}", obs.path), APPLY);
    }
    content_verdict(NAME, obs, state, "the boot unit loads it")
}

/// Root-owned and not writable by group or others, or what is wrong.
fn unsafe_ownership(state: &FileState) -> Option<String> {
    if state.uid != 0 {
        Some(format!("is owned by UID {}, not root", state.uid))
    } else if state.mode & 0o022 != 0 {
        Some(format!(
            "has mode {:04o}: writable by group or others",
            state.mode & 0o7777
        ))
    } else {
        None
    }
}

fn content_verdict(name: &str, obs: &GeneratedFileObs, state: &FileState, role: &str) -> Probe {
    let Some(expected) = &obs.expected else {
        return Probe::fail(
            name,
            format!(
                "{} is present, but the expected content cannot be rendered",
                obs.path
            ),
            APPLY,
        );
    };
    let found = state.contents.as_deref().unwrap_or("");
    match unified_diff(expected, found, "rendered", &obs.path) {
        None => Probe::pass(
            name,
            format!("{} is present and matches the config ({role})", obs.path),
        ),
        Some(diff) => Probe::fail(
            name,
            format!(
                "{} differs from what the config renders ({})",
                obs.path,
                changed_lines(&diff)
            ),
            APPLY,
        )
        .with_diff(diff),
    }
}

pub fn boot_unit(obs: &UnitObs) -> Probe {
    const NAME: &str = "boot-unit";
    const UNIT: &str = "pipelock-containment.service";
    if !obs.systemd_running {
        return Probe::skip(
            NAME,
            format!("systemd is not running here: cannot tell whether {UNIT} is enabled"),
            "run verify on the booted host",
        );
    }
    if obs.enabled != "enabled" {
        return Probe::fail(
            NAME,
            format!(
                "{UNIT} is {}: the table will not be loaded at boot",
                obs.enabled
            ),
            format!("systemctl enable --now {UNIT}, or {APPLY}"),
        );
    }
    if obs.active != "active" {
        return Probe::fail(
            NAME,
            format!("{UNIT} is enabled but {}", obs.active),
            format!("systemctl restart {UNIT}; journalctl -u {UNIT}"),
        );
    }
    Probe::pass(NAME, format!("{UNIT} is enabled and active"))
}

pub fn proxy_unit(config: &Config, proxy_uid: Option<u32>, obs: &ProxyObs) -> Probe {
    const NAME: &str = "proxy-unit";
    const UNIT: &str = "pipelock-proxy.service";
    let want = SocketAddr::new(config.proxy.listen_address, config.proxy.listen_port);
    if !obs.systemd_running {
        return Probe::skip(
            NAME,
            format!("systemd is not running here: cannot check {UNIT}"),
            "run verify on the booted host",
        );
    }
    if obs.active != "active" {
        return Probe::fail(
            NAME,
            format!("{UNIT} is {}: agents have no way out", obs.active),
            format!("systemctl restart {UNIT}; journalctl -u {UNIT}"),
        );
    }
    if obs.unit_user != config.users.proxy {
        let user = if obs.unit_user.is_empty() {
            "root"
        } else {
            &obs.unit_user
        };
        return Probe::fail(
            NAME,
            format!("{UNIT} runs as {user}, not {}", config.users.proxy),
            format!("{APPLY}: it installs the unit's User= drop-in"),
        );
    }
    let Some(uid) = proxy_uid else {
        return Probe::fail(
            NAME,
            format!("the proxy user {} does not exist", config.users.proxy),
            APPLY,
        );
    };
    let mine: BTreeSet<&Listener> = obs.listeners.iter().filter(|l| l.uid == uid).collect();
    if let Some(wide) = mine.iter().find(|l| !l.addr.ip().is_loopback()) {
        return Probe::fail(
            NAME,
            format!(
                "{} also listens on {}: reachable from outside this host",
                config.users.proxy, wide.addr
            ),
            format!(
                "make the proxy listen on {want} only (proxy.command in the config), then {APPLY}"
            ),
        );
    }
    if mine.iter().any(|l| l.addr == want) {
        return Probe::pass(
            NAME,
            format!(
                "{UNIT} is active, runs as {}, listens on {want} only",
                config.users.proxy
            ),
        );
    }
    match obs.listeners.iter().find(|l| l.addr == want) {
        Some(other) => Probe::fail(
            NAME,
            format!("{want} is held by UID {}, not {}", other.uid, config.users.proxy),
            format!("stop whatever owns {want}, then systemctl restart {UNIT}"),
        ),
        None => Probe::fail(
            NAME,
            format!("nothing listens on {want}"),
            format!(
                "check proxy.command listens on {want}; systemctl restart {UNIT}; journalctl -u {UNIT}"
            ),
        ),
    }
}

pub fn sudoers(obs: &SudoersObs) -> Probe {
    const NAME: &str = "sudoers";
    let file = &obs.file;
    let Some(state) = &file.state else {
        return Probe::fail(
            NAME,
            format!("{} is missing: operators cannot launch agents", file.path),
            APPLY,
        );
    };
    if state.mode & 0o7777 != 0o440 {
        return Probe::fail(
            NAME,
            format!(
                "{} has mode {:04o}, not 0440",
                file.path,
                state.mode & 0o7777
            ),
            format!("{APPLY} (or chmod 0440 {})", file.path),
        );
    }
    if state.uid != 0 {
        return Probe::fail(
            NAME,
            format!("{} is owned by UID {}, not root", file.path, state.uid),
            APPLY,
        );
    }
    match &obs.visudo {
        Some(Err(err)) => {
            return Probe::fail(NAME, format!("visudo rejects {}: {err}", file.path), APPLY)
        }
        None => {
            return Probe::skip(
                NAME,
                format!("visudo is not installed: cannot check {}", file.path),
                "install sudo",
            )
        }
        Some(Ok(())) => {}
    }
    content_verdict(NAME, file, state, "0440, passes visudo")
}

pub fn wrappers(obs: &WrappersObs) -> Probe {
    const NAME: &str = "wrappers";
    let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    let mut missing = Vec::new();
    let mut differ = Vec::new();
    let mut diffs = String::new();
    for (path, (mode, contents)) in &obs.expected {
        match obs.found.get(path) {
            None => missing.push(base(path)),
            Some(state) => {
                let found = state.contents.as_deref().unwrap_or("");
                if let Some(diff) = unified_diff(contents, found, "rendered", path) {
                    differ.push(base(path));
                    diffs.push_str(&diff);
                } else if state.mode & 0o7777 != *mode
                    || state.uid != 0
                    || unsafe_ownership(state).is_some()
                {
                    differ.push(format!("{} (mode {:04o})", base(path), state.mode & 0o7777));
                }
            }
        }
    }
    let stale: Vec<String> = obs
        .found
        .keys()
        .filter(|path| !obs.expected.contains_key(*path))
        .map(|path| base(path))
        .collect();
    if missing.is_empty() && differ.is_empty() && stale.is_empty() {
        let names: Vec<String> = obs.expected.keys().map(|p| base(p)).collect();
        return Probe::pass(
            NAME,
            format!(
                "{} match the config: {}",
                paths::WRAPPER_DIR,
                names.join(", ")
            ),
        );
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !differ.is_empty() {
        problems.push(format!("differ from the config {}", differ.join(", ")));
    }
    if !stale.is_empty() {
        problems.push(format!("not in the config {}", stale.join(", ")));
    }
    let probe = Probe::fail(
        NAME,
        format!("{}: {}", paths::WRAPPER_DIR, problems.join("; ")),
        APPLY,
    );
    if diffs.is_empty() {
        probe
    } else {
        probe.with_diff(diffs)
    }
}

/// The base64 bodies of the CERTIFICATE blocks in a PEM text, whitespace removed.
pub fn pem_certificates(text: &str) -> Vec<String> {
    let mut certs = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(body) = current.take() {
                certs.push(body);
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    certs
}

fn access_problem(name: &str, access: &Access) -> Option<Probe> {
    match access {
        Access::Unknown(err) => Some(Probe::fail(
            name,
            format!("cannot test access as the agent: {err}"),
            "run verify as root, with setpriv (util-linux) installed",
        )),
        _ => None,
    }
}

pub fn ca_bundle(config: &Config, obs: &CaBundleObs) -> Probe {
    const NAME: &str = "ca-bundle";
    let path = &obs.bundle_path;
    let Some(bundle) = &obs.bundle else {
        return Probe::fail(
            NAME,
            format!("{path} is missing: agent tools cannot verify TLS through the proxy"),
            format!("pipelock-containment ca refresh, or {APPLY}"),
        );
    };
    if let Some(problem) = access_problem(NAME, &obs.agent_access) {
        return problem;
    }
    if obs.agent_access != Access::Readable {
        return Probe::fail(
            NAME,
            format!("{path} is not readable by {}", config.users.agent),
            format!("{APPLY} (the bundle is 0644 root:root)"),
        );
    }
    let Some(proxy_ca) = &obs.proxy_ca else {
        return Probe::skip(
            NAME,
            format!(
                "{path} is readable by {}, but the proxy CA {} is absent: TLS interception is not trusted yet",
                config.users.agent, obs.proxy_ca_path
            ),
            format!(
                "install the proxy's CA certificate at {}, then pipelock-containment ca refresh",
                obs.proxy_ca_path
            ),
        );
    };
    let wanted = pem_certificates(proxy_ca);
    let have: BTreeSet<String> = pem_certificates(bundle.contents.as_deref().unwrap_or(""))
        .into_iter()
        .collect();
    if wanted.is_empty() {
        return Probe::fail(
            NAME,
            format!("{} holds no PEM certificate", obs.proxy_ca_path),
            format!(
                "put the proxy's CA certificate (PEM) at {}",
                obs.proxy_ca_path
            ),
        );
    }
    if wanted.iter().all(|cert| have.contains(cert)) {
        Probe::pass(
            NAME,
            format!(
                "{path} is readable by {} and contains the proxy CA ({} certificates)",
                config.users.agent,
                have.len()
            ),
        )
    } else {
        Probe::fail(
            NAME,
            format!("{path} does not contain the proxy CA {}", obs.proxy_ca_path),
            "pipelock-containment ca refresh",
        )
    }
}

pub fn ca_key(config: &Config, obs: &CaKeyObs) -> Probe {
    const NAME: &str = "ca-key";
    let path = &obs.key_path;
    let Some(key) = &obs.key else {
        return Probe::pass(
            NAME,
            format!("{path} is absent: no proxy CA key on this host to protect"),
        );
    };
    let fix = format!(
        "chown {} {path} && chmod 0600 {path} (apply does this)",
        config.users.proxy
    );
    if let Some(problem) = access_problem(NAME, &obs.agent_access) {
        return problem;
    }
    if obs.agent_access == Access::Readable {
        return Probe::fail(
            NAME,
            format!(
                "{path} is READABLE by {}: the agent can forge certificates",
                config.users.agent
            ),
            fix,
        );
    }
    if key.mode & 0o077 != 0 {
        return Probe::fail(
            NAME,
            format!(
                "{path} has mode {:04o}: group or others can read it",
                key.mode & 0o7777
            ),
            fix,
        );
    }
    Probe::pass(
        NAME,
        format!(
            "{path} is not readable by {} (mode {:04o})",
            config.users.agent,
            key.mode & 0o7777
        ),
    )
}

fn attempts_text(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{} {}", a.target, a.outcome.word()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The attempts with their summary, or the skip when the probe could not run as the agent.
/// The network probes below share one skeleton (skip, first leak, verdict); only their words differ.
fn made_attempts<'a>(name: &str, obs: &'a AgentAttempts) -> Result<(&'a [Attempt], String), Probe> {
    match obs {
        Ok(attempts) => Ok((attempts, attempts_text(attempts))),
        Err(err) => Err(Probe::skip(
            name,
            format!("cannot run a probe as the agent: {err}"),
            format!(
                "{APPLY} (the agent user must exist); run verify as root with setpriv installed"
            ),
        )),
    }
}

fn first_through(attempts: &[Attempt]) -> Option<&Attempt> {
    attempts.iter().find(|a| a.outcome.got_through())
}

pub fn agent_egress_denied(obs: &AgentAttempts) -> Probe {
    const NAME: &str = "agent-egress-denied";
    let (attempts, text) = match made_attempts(NAME, obs) {
        Ok(made) => made,
        Err(skip) => return skip,
    };
    if let Some(leak) = first_through(attempts) {
        return Probe::fail(
            NAME,
            format!(
                "the agent's {} got out: egress is NOT blocked ({text})",
                leak.target
            ),
            format!("systemctl restart pipelock-containment.service, or {APPLY}"),
        );
    }
    if let Some(error) = attempts
        .iter()
        .find(|a| matches!(a.outcome, NetOutcome::Error(_)))
    {
        return Probe::fail(
            NAME,
            format!(
                "the probe of {} failed: {}",
                error.target,
                error.outcome.word()
            ),
            "run verify as root",
        );
    }
    if attempts.iter().any(|a| a.outcome.blocked()) {
        Probe::pass(
            NAME,
            format!("the kernel rejects the agent's traffic ({text})"),
        )
    } else {
        Probe::skip(
            NAME,
            format!("no route to a test address, so the rule cannot be told from the missing route ({text})"),
            "run verify on a host with a default route (IPv4 or IPv6)",
        )
    }
}

fn fetch(name: &str, obs: &FetchObs, how: &str, fix: &str) -> Probe {
    match obs {
        FetchObs::NoUrl => Probe::skip(
            name,
            "needs --url URL",
            "pass --url with an address the proxy allows",
        ),
        FetchObs::CannotRun(err) => {
            Probe::skip(name, format!("cannot fetch: {err}"), "install curl")
        }
        FetchObs::Done {
            url,
            curl_exit: 0,
            http_code,
            ..
        } => Probe::pass(name, format!("{how} reached {url} (HTTP {http_code})")),
        FetchObs::Done {
            url,
            curl_exit,
            error,
            ..
        } => Probe::fail(
            name,
            format!(
                "{how} cannot reach {url}: curl exit {curl_exit}: {}",
                one_line(error)
            ),
            fix,
        ),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn agent_via_proxy(obs: &FetchObs) -> Probe {
    fetch(
        "agent-via-proxy",
        obs,
        "the agent, through the proxy,",
        "check pipelock-proxy.service (journalctl -u pipelock-proxy) and that its policy allows the URL",
    )
}

pub fn operator_direct(obs: &FetchObs) -> Probe {
    fetch(
        "operator-direct",
        obs,
        "an operator, directly,",
        "check the host's own network; containment does not restrict operators",
    )
}

pub fn agent_loopback_denied(obs: &AgentAttempts) -> Probe {
    const NAME: &str = "agent-loopback-denied";
    let (attempts, text) = match made_attempts(NAME, obs) {
        Ok(made) => made,
        Err(skip) => return skip,
    };
    if let Some(leak) = first_through(attempts) {
        return Probe::fail(
            NAME,
            format!(
                "the agent reached {}, which is not the proxy: loopback is open ({text})",
                leak.target
            ),
            format!("{APPLY}: it reloads the table"),
        );
    }
    if attempts.iter().any(|a| a.outcome.blocked()) {
        Probe::pass(
            NAME,
            format!("loopback other than the proxy is closed to the agent ({text})"),
        )
    } else {
        Probe::fail(
            NAME,
            format!("inconclusive loopback probe ({text})"),
            "run verify as root",
        )
    }
}

pub fn dns_policy(config: &Config, obs: &AgentAttempts) -> Probe {
    const NAME: &str = "dns-policy";
    let (attempts, text) = match made_attempts(NAME, obs) {
        Ok(made) => made,
        Err(skip) => return skip,
    };
    let is_loopback = |a: &&Attempt| a.target.contains("127.") || a.target.contains("[::1]");
    match config.network.dns {
        DnsPolicy::Blocked => {
            if let Some(leak) = first_through(attempts) {
                return Probe::fail(
                    NAME,
                    format!(
                        "policy is blocked, but the agent's DNS to {} got out ({text})",
                        leak.target
                    ),
                    APPLY,
                );
            }
            if attempts.iter().any(|a| a.outcome.blocked()) {
                Probe::pass(
                    NAME,
                    format!("agent DNS is blocked, as the policy says ({text})"),
                )
            } else {
                Probe::fail(
                    NAME,
                    format!("inconclusive DNS probe ({text})"),
                    "run verify as root",
                )
            }
        }
        DnsPolicy::LoopbackResolver => {
            if let Some(leak) = attempts
                .iter()
                .find(|a| !is_loopback(a) && a.outcome.got_through())
            {
                return Probe::fail(
                    NAME,
                    format!(
                        "policy is loopback-resolver, but the agent's DNS to {} got out ({text})",
                        leak.target
                    ),
                    APPLY,
                );
            }
            if let Some(blocked) = attempts
                .iter()
                .find(|a| is_loopback(a) && !a.outcome.got_through())
            {
                return Probe::fail(
                    NAME,
                    format!(
                        "policy is loopback-resolver, but DNS to {} is blocked ({text})",
                        blocked.target
                    ),
                    APPLY,
                );
            }
            Probe::pass(
                NAME,
                format!("agent DNS reaches only the loopback resolver ({text})"),
            )
        }
    }
}

/// The listening TCP sockets in the text of /proc/net/tcp or /proc/net/tcp6, with their owner UID.
///
/// The kernel prints each address as native-endian 32-bit words in hex and the port as plain hex.
pub fn parse_proc_net_tcp(text: &str) -> Vec<Listener> {
    let mut listeners = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || fields[3] != "0A" {
            continue;
        }
        let Some((addr_hex, port_hex)) = fields[1].split_once(':') else {
            continue;
        };
        let (Ok(port), Ok(uid)) = (u16::from_str_radix(port_hex, 16), fields[7].parse::<u32>())
        else {
            continue;
        };
        let mut bytes = Vec::with_capacity(16);
        for chunk in addr_hex.as_bytes().chunks(8) {
            let Ok(word) = u32::from_str_radix(std::str::from_utf8(chunk).unwrap_or(""), 16) else {
                break;
            };
            bytes.extend_from_slice(&word.to_ne_bytes());
        }
        let ip: std::net::IpAddr = match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice()).unwrap().into(),
            16 => <[u8; 16]>::try_from(bytes.as_slice()).unwrap().into(),
            _ => continue,
        };
        listeners.push(Listener {
            addr: SocketAddr::new(ip, port),
            uid,
            inode: fields.get(9).and_then(|f| f.parse().ok()).unwrap_or(0),
        });
    }
    listeners
}

#[cfg(test)]
mod tests;
