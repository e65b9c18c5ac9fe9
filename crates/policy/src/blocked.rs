//! Blocked attempts from the kernel log (pure): parse netfilter log lines carrying the rule's prefix.
//!
//! The rule logs with `log prefix "pipelock-containment blocked: " flags skuid`, so each line
//! is the prefix followed by the netfilter fields (`IN= OUT=eth0 SRC=… DST=… PROTO=TCP SPT=…
//! DPT=… UID=…`). Input comes either as journal JSON (`journalctl -k -o json`) or as text
//! lines in any of the usual formats (`dmesg`, `dmesg --time-format iso`, `journalctl -o
//! short-iso`): the text before the prefix is the time.

use std::net::IpAddr;

use serde::Serialize;

use crate::paths;

/// One blocked attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// As the source gave it: RFC 3339 UTC from the journal, or the text before the prefix.
    pub time: String,
    /// Lower case: tcp, udp, icmp, icmpv6, or the number the kernel printed.
    pub protocol: String,
    pub source: String,
    pub destination: String,
    /// Destination port (TCP, UDP); None for ICMP.
    pub port: Option<u16>,
    /// The sending socket's UID (the rule logs with `flags skuid`).
    pub uid: Option<u32>,
    /// Outgoing interface.
    pub interface: String,
}

/// Parse the part of a log line after the time: None when the line is not one of ours.
pub fn parse_message(time: &str, message: &str) -> Option<Entry> {
    let at = message.find(paths::LOG_PREFIX)?;
    let fields = &message[at + paths::LOG_PREFIX.len()..];
    let field = |key: &str| -> Option<&str> {
        fields
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    };
    let address = |key: &str| -> Option<String> {
        let text = field(key)?;
        Some(
            text.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| text.to_string()),
        )
    };
    let destination = address("DST")?;
    Some(Entry {
        time: time.trim().to_string(),
        protocol: field("PROTO").unwrap_or("?").to_ascii_lowercase(),
        source: address("SRC").unwrap_or_default(),
        destination,
        port: field("DPT").and_then(|p| p.parse().ok()),
        uid: field("UID").and_then(|u| u.parse().ok()),
        interface: field("OUT").unwrap_or("").to_string(),
    })
}

/// Parse text lines (dmesg, dmesg --time-format iso, journalctl -o short-iso); other lines are ignored.
pub fn parse_text(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let at = line.find(paths::LOG_PREFIX)?;
            parse_message(&line_time(&line[..at]), &line[at..])
        })
        .collect()
}

/// The time part of a text log line: `[ 123.456]` or `[Mon Nov 30 07:33:01 2026]` lose their
/// brackets; a syslog-style `TIME HOST kernel:` keeps the TIME.
fn line_time(before: &str) -> String {
    let before = before.trim();
    if let Some(inner) = before.strip_prefix('[') {
        if let Some(end) = inner.find(']') {
            return inner[..end].trim().to_string();
        }
    }
    let before = before.strip_suffix("kernel:").unwrap_or(before).trim_end();
    let mut words: Vec<&str> = before.split_whitespace().collect();
    if words.len() >= 2 && !before.ends_with(']') {
        words.pop(); // the host name
    }
    words.join(" ")
}

/// Parse `journalctl -o json` output: one JSON object per line, MESSAGE and __REALTIME_TIMESTAMP.
pub fn parse_journal_json(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            let message = match &value["MESSAGE"] {
                serde_json::Value::String(s) => s.clone(),
                // The journal gives non-UTF-8 messages as byte arrays.
                serde_json::Value::Array(bytes) => String::from_utf8_lossy(
                    &bytes
                        .iter()
                        .filter_map(|b| b.as_u64().map(|b| b as u8))
                        .collect::<Vec<u8>>(),
                )
                .into_owned(),
                _ => return None,
            };
            let time = value["__REALTIME_TIMESTAMP"]
                .as_str()
                .and_then(|us| us.parse::<u64>().ok())
                .map(rfc3339_from_micros)
                .unwrap_or_default();
            parse_message(&time, &message)
        })
        .collect()
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339_from_micros(micros: u64) -> String {
    crate::timefmt::rfc3339((micros / 1_000_000) as i64)
}

/// The entries as a table for a terminal.
pub fn to_text(entries: &[Entry]) -> String {
    let mut out = format!(
        "{:<32} {:>6} {:<7} {:<40} {:>5}\n",
        "TIME", "UID", "PROTO", "DESTINATION", "PORT"
    );
    for e in entries {
        out.push_str(&format!(
            "{:<32} {:>6} {:<7} {:<40} {:>5}\n",
            e.time,
            e.uid.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            e.protocol,
            e.destination,
            e.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP4: &str = "[ 8123.456789] pipelock-containment blocked: IN= OUT=eth0 \
        SRC=192.0.2.10 DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=50321 DF PROTO=TCP \
        SPT=41522 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0 UID=998 GID=998 ";
    const UDP4: &str = "2026-11-30T07:33:01,123456+00:00 pipelock-containment blocked: IN= \
        OUT=lo SRC=127.0.0.1 DST=127.0.0.53 LEN=57 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=UDP \
        SPT=50000 DPT=53 LEN=37 UID=998 GID=998 ";
    const TCP6: &str = "2026-11-30T07:33:02+0000 vm kernel: pipelock-containment blocked: IN= \
        OUT=eth0 SRC=2001:0db8:0000:0000:0000:0000:0000:0010 \
        DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=123456 \
        PROTO=TCP SPT=39000 DPT=8443 WINDOW=64800 RES=0x00 SYN URGP=0 UID=998 GID=998 ";
    const ICMP: &str = "[Mon Nov 30 07:33:03 2026] pipelock-containment blocked: IN= OUT=eth0 \
        SRC=192.0.2.10 DST=192.0.2.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=ICMP \
        TYPE=8 CODE=0 ID=7 SEQ=1 UID=998 GID=998 ";
    const OTHER: &str = "[ 8123.5] e1000: eth0 NIC Link is Up";

    #[test]
    fn ipv4_tcp_from_dmesg() {
        let entries = parse_text(&format!("{OTHER}\n{TCP4}\n"));
        assert_eq!(
            entries,
            vec![Entry {
                time: "8123.456789".into(),
                protocol: "tcp".into(),
                source: "192.0.2.10".into(),
                destination: "192.0.2.1".into(),
                port: Some(443),
                uid: Some(998),
                interface: "eth0".into(),
            }]
        );
    }

    #[test]
    fn ipv4_udp_dns_from_iso_dmesg() {
        let e = &parse_text(UDP4)[0];
        assert_eq!(e.time, "2026-11-30T07:33:01,123456+00:00");
        assert_eq!(
            (e.protocol.as_str(), e.destination.as_str(), e.port, e.uid),
            ("udp", "127.0.0.53", Some(53), Some(998))
        );
    }

    #[test]
    fn ipv6_tcp_from_short_iso_journal_text() {
        let e = &parse_text(TCP6)[0];
        assert_eq!(e.time, "2026-11-30T07:33:02+0000");
        assert_eq!(e.destination, "2001:db8::1");
        assert_eq!(e.source, "2001:db8::10");
        assert_eq!(e.port, Some(8443));
    }

    #[test]
    fn icmp_has_no_port() {
        let e = &parse_text(ICMP)[0];
        assert_eq!(e.time, "Mon Nov 30 07:33:03 2026");
        assert_eq!((e.protocol.as_str(), e.port), ("icmp", None));
    }

    #[test]
    fn journal_json_string_and_byte_messages() {
        let message = TCP4.split_once("] ").unwrap().1;
        let line1 = serde_json::json!({
            "MESSAGE": message,
            "__REALTIME_TIMESTAMP": "1764487981123456",
            "_TRANSPORT": "kernel"
        });
        let line2 = serde_json::json!({
            "MESSAGE": UDP4.split_once(' ').unwrap().1.as_bytes(),
            "__REALTIME_TIMESTAMP": "1764487982000000"
        });
        let unrelated = serde_json::json!({"MESSAGE": "eth0: link up"});
        let text = format!("{line1}\n{unrelated}\n{line2}\nnot json\n");
        let entries = parse_journal_json(&text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].time, "2025-11-30T07:33:01Z");
        assert_eq!(entries[0].port, Some(443));
        assert_eq!(entries[1].destination, "127.0.0.53");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_from_micros(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_from_micros(951_782_400_000_000),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339_from_micros(1_798_761_599_000_000),
            "2026-12-31T23:59:59Z"
        );
    }

    #[test]
    fn text_table_lists_destination_and_port() {
        let text = to_text(&parse_text(TCP4));
        assert!(text.lines().nth(1).unwrap().contains("192.0.2.1"));
        assert!(text.contains("443"));
    }
}
