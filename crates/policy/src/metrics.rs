//! Prometheus text-format metrics (pure), for node_exporter's textfile collector.

use std::fmt::Write as _;

use crate::verify::{Probe, Status};

/// What the metrics say, gathered by the host layer from verify and the nft counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsInput {
    /// No verify probe failed.
    pub contained: bool,
    /// The loaded table or a generated file differs from the render.
    pub drift: bool,
    pub table_loaded: bool,
    pub blocked_packets: u64,
    pub blocked_bytes: u64,
    pub dns_blocked_packets: u64,
    /// The proxy unit is active, as the proxy user, on the configured address.
    pub proxy_up: bool,
    /// Times the watcher loaded the table again after someone else removed it (since boot).
    pub table_restores: u64,
    pub probes: Vec<Probe>,
    /// The audit listener's counters; None when it has written none (not running).
    pub audit: Option<crate::audit::Counters>,
    /// Running session units.
    pub sessions: u64,
    /// Seconds since the epoch when the metrics were gathered.
    pub timestamp: u64,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in Prometheus text exposition format.
pub fn render(input: &MetricsInput) -> String {
    let mut out = String::new();
    let one = |value: u64| vec![(String::new(), value)];
    metric(
        &mut out,
        "pipelock_containment_active",
        "gauge",
        "1 when every verify probe that ran passed (the host is contained), else 0.",
        &one(u64::from(input.contained)),
    );
    metric(
        &mut out,
        "pipelock_containment_drift",
        "gauge",
        "1 when the loaded table or a generated file differs from what the config renders; `pipelock-containment apply` repairs it.",
        &one(u64::from(input.drift)),
    );
    metric(
        &mut out,
        "pipelock_containment_table_loaded",
        "gauge",
        "1 when the nft table inet pipelock_containment is loaded.",
        &one(u64::from(input.table_loaded)),
    );
    metric(
        &mut out,
        "pipelock_containment_blocked_packets_total",
        "counter",
        "Packets from the agent user rejected by the kernel rule since the table was loaded.",
        &one(input.blocked_packets),
    );
    metric(
        &mut out,
        "pipelock_containment_blocked_bytes_total",
        "counter",
        "Bytes from the agent user rejected by the kernel rule since the table was loaded.",
        &one(input.blocked_bytes),
    );
    metric(
        &mut out,
        "pipelock_containment_dns_blocked_packets_total",
        "counter",
        "DNS packets from the agent user blocked since the table was loaded (dns = \"blocked\").",
        &one(input.dns_blocked_packets),
    );
    metric(
        &mut out,
        "pipelock_containment_proxy_up",
        "gauge",
        "1 when pipelock-proxy.service is active, runs as the proxy user and listens on the configured loopback address.",
        &one(u64::from(input.proxy_up)),
    );
    metric(
        &mut out,
        "pipelock_containment_table_restores_total",
        "counter",
        "Times pipelock-containment-watch.service loaded the table again after someone else's flush or delete, since boot.",
        &one(input.table_restores),
    );
    let probes: Vec<(String, u64)> = input
        .probes
        .iter()
        .map(|p| {
            (
                format!(
                    "{{probe=\"{}\",status=\"{}\"}}",
                    p.name,
                    match p.status {
                        Status::Pass => "pass",
                        Status::Fail => "fail",
                        Status::Skip => "skip",
                    }
                ),
                1,
            )
        })
        .collect();
    metric(
        &mut out,
        "pipelock_containment_probe",
        "gauge",
        "One sample per verify probe, labelled with its name and status (pass, fail, skip).",
        &probes,
    );
    metric(
        &mut out,
        "pipelock_containment_sessions",
        "gauge",
        "Contained agent sessions running (units in pipelock-agents.slice).",
        &one(input.sessions),
    );
    metric(
        &mut out,
        "pipelock_containment_audit_up",
        "gauge",
        "1 when pipelock-containment-audit.service has written its counters (it records blocked attempts), else 0.",
        &one(u64::from(input.audit.is_some())),
    );
    if let Some(audit) = &input.audit {
        metric(
            &mut out,
            "pipelock_containment_audit_sessions",
            "gauge",
            "Sessions whose blocked attempts the audit listener records; fewer than pipelock_containment_sessions means some are not recorded.",
            &one(audit.sessions_attached),
        );
        let samples: Vec<(String, u64)> = audit
            .blocked
            .iter()
            .map(|(l, n)| {
                (
                    format!(
                        "{{operator=\"{}\",tool=\"{}\",proto=\"{}\"}}",
                        label(&l.operator),
                        label(&l.tool),
                        label(&l.proto)
                    ),
                    *n,
                )
            })
            .collect();
        metric(
            &mut out,
            "pipelock_containment_blocked_total",
            "counter",
            "Blocked attempts the audit listener recorded since it started, by the session's operator and tool (\"none\" outside sessions; \"other\" past 64 label sets) and proto (tcp, udp, icmp, icmpv6, dns, other).",
            &samples,
        );
    }
    metric(
        &mut out,
        "pipelock_containment_last_run_timestamp_seconds",
        "gauge",
        "When these metrics were gathered, in seconds since the epoch.",
        &one(input.timestamp),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> MetricsInput {
        MetricsInput {
            contained: true,
            drift: false,
            table_loaded: true,
            blocked_packets: 42,
            blocked_bytes: 2520,
            dns_blocked_packets: 3,
            proxy_up: true,
            table_restores: 2,
            probes: vec![Probe {
                name: "nft-table".into(),
                status: Status::Pass,
                detail: String::new(),
                remediation: String::new(),
                diff: None,
            }],
            audit: Some(crate::audit::Counters {
                blocked: vec![(
                    crate::audit::Labels {
                        operator: "alice".into(),
                        tool: "claude".into(),
                        proto: "dns".into(),
                    },
                    7,
                )],
                sessions_attached: 1,
            }),
            sessions: 1,
            timestamp: 1_764_488_000,
        }
    }

    #[test]
    fn required_metrics_with_help_and_type() {
        let text = render(&input());
        for (name, kind, value) in [
            ("pipelock_containment_active", "gauge", "1"),
            ("pipelock_containment_drift", "gauge", "0"),
            (
                "pipelock_containment_blocked_packets_total",
                "counter",
                "42",
            ),
            ("pipelock_containment_proxy_up", "gauge", "1"),
            ("pipelock_containment_table_restores_total", "counter", "2"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{text}");
            assert!(text.contains(&format!("\n{name} {value}\n")), "{text}");
        }
        assert!(
            text.contains("pipelock_containment_probe{probe=\"nft-table\",status=\"pass\"} 1\n")
        );
        assert!(text.contains(
            "pipelock_containment_blocked_total{operator=\"alice\",tool=\"claude\",proto=\"dns\"} 7\n"
        ));
        assert!(text.contains("\npipelock_containment_sessions 1\n"));
        assert!(text.contains("\npipelock_containment_audit_up 1\n"));
    }

    #[test]
    fn without_the_listener_the_metrics_say_so() {
        let text = render(&MetricsInput {
            audit: None,
            ..input()
        });
        assert!(text.contains("\npipelock_containment_audit_up 0\n"));
        assert!(!text.contains("pipelock_containment_blocked_total"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_line_is_valid_exposition_format() {
        let text = render(&MetricsInput {
            contained: false,
            drift: true,
            ..input()
        });
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if line.starts_with('#') {
                let words: Vec<&str> = line.splitn(4, ' ').collect();
                assert!(matches!(words[1], "HELP" | "TYPE"), "{line}");
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let bare = name.split('{').next().unwrap();
            assert!(
                bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
        assert!(text.contains("\npipelock_containment_active 0\n"));
        assert!(text.contains("\npipelock_containment_drift 1\n"));
    }
}
