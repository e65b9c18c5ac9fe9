//! The `status` screen (pure): roles, table and counters, units, last apply, drift, tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::verify::{Probe, Status};

/// Probes whose failure means the host differs from what the config renders.
pub const DRIFT_PROBES: &[&str] = &["nft-table", "rule-file", "sudoers", "wrappers"];

/// A named nft counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of `nft -j list counters table inet pipelock_containment`.
pub fn parse_counters_json(text: &str) -> Result<Vec<Counter>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("nft -j output is not JSON: {err}"))?;
    let items = value["nftables"]
        .as_array()
        .ok_or("nft -j output has no \"nftables\" array")?;
    Ok(items
        .iter()
        .filter_map(|item| {
            let counter = item.get("counter")?;
            Some(Counter {
                name: counter["name"].as_str()?.to_string(),
                packets: counter["packets"].as_u64().unwrap_or(0),
                bytes: counter["bytes"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

/// When the last apply that changed something ran, from the manifest's `applied_at`
/// (seconds since the epoch), with the helper version that wrote it.
pub fn last_apply_from_manifest(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let time = match &value["applied_at"] {
        serde_json::Value::Number(n) => crate::timefmt::rfc3339(n.as_u64()? as i64),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    Some(match value["version"].as_str() {
        Some(version) if !version.is_empty() => format!("{time} (pipelock-containment {version})"),
        _ => time,
    })
}

/// Drift: the generated artefacts that differ from the render, by probe name.
pub fn drifted(probes: &[Probe]) -> Vec<String> {
    probes
        .iter()
        .filter(|p| DRIFT_PROBES.contains(&p.name.as_str()) && p.status == Status::Fail)
        .map(|p| p.name.clone())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub role: String,
    pub name: String,
    /// UID for users, GID for the operators group; None when missing.
    pub id: Option<u32>,
    /// Members (operators group only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub unit: String,
    pub enabled: String,
    pub active: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub tool: String,
    pub wrapper: String,
    pub wrapper_present: bool,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    pub host: String,
    pub roles: Vec<Role>,
    pub table_loaded: bool,
    /// Why the table state is unknown (not root, nft missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_error: Option<String>,
    pub counters: Vec<Counter>,
    pub units: Vec<Unit>,
    /// From the manifest; None when no apply is recorded.
    pub last_apply: Option<String>,
    pub drift: bool,
    pub drifted: Vec<String>,
    /// Drift can only be judged as root (the table and the 0440 sudoers file are root's).
    pub drift_checked: bool,
    /// The CA bundle probe's verdict, e.g. that TLS interception is not trusted yet.
    pub ca: String,
    pub tools: Vec<Tool>,
}

impl StatusView {
    pub fn counter(&self, name: &str) -> Option<&Counter> {
        self.counters.iter().find(|c| c.name == name)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pipelock-containment on {}", self.host);
        let _ = writeln!(out, "roles:");
        for role in &self.roles {
            let id = match (role.id, role.role.as_str()) {
                (None, _) => "MISSING".to_string(),
                (Some(id), "operators") => format!("GID {id}"),
                (Some(id), _) => format!("UID {id}"),
            };
            let members = if role.role == "operators" {
                if role.members.is_empty() {
                    " (no members)".to_string()
                } else {
                    format!(" ({})", role.members.join(", "))
                }
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {:<10} {:<20} {id}{members}", role.role, role.name);
        }
        let table = match (&self.table_error, self.table_loaded) {
            (Some(err), _) => format!("unknown ({err})"),
            (None, true) => "loaded".to_string(),
            (None, false) => "NOT LOADED: agents are not contained".to_string(),
        };
        let _ = writeln!(out, "table:     inet pipelock_containment {table}");
        for counter in &self.counters {
            let _ = writeln!(
                out,
                "  {:<12} {} packet(s), {} bytes since load",
                counter.name, counter.packets, counter.bytes
            );
        }
        let _ = writeln!(out, "units:");
        for unit in &self.units {
            let _ = writeln!(
                out,
                "  {:<40} {} / {}",
                unit.unit, unit.enabled, unit.active
            );
        }
        let _ = writeln!(
            out,
            "last apply: {}",
            self.last_apply.as_deref().unwrap_or("none recorded")
        );
        let _ = writeln!(
            out,
            "drift:     {}",
            if !self.drift_checked {
                "unknown: run status as root to compare the host with the config".to_string()
            } else if self.drift {
                format!(
                    "YES ({}): run `pipelock-containment apply`",
                    self.drifted.join(", ")
                )
            } else {
                "no".to_string()
            }
        );
        let _ = writeln!(out, "ca:        {}", self.ca);
        let _ = writeln!(out, "tools:");
        for tool in &self.tools {
            let _ = writeln!(
                out,
                "  {:<12} {} {}",
                tool.tool,
                tool.wrapper,
                if tool.wrapper_present {
                    ""
                } else {
                    "(missing)"
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_nft_json() {
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"counter": {"family": "inet", "name": "blocked", "table": "pipelock_containment", "handle": 3, "packets": 17, "bytes": 1020}}, {"counter": {"family": "inet", "name": "dns_blocked", "table": "pipelock_containment", "handle": 4, "packets": 2, "bytes": 120}}]}"#;
        assert_eq!(
            parse_counters_json(text).unwrap(),
            vec![
                Counter {
                    name: "blocked".into(),
                    packets: 17,
                    bytes: 1020
                },
                Counter {
                    name: "dns_blocked".into(),
                    packets: 2,
                    bytes: 120
                },
            ]
        );
        assert!(parse_counters_json("Error: no such table").is_err());
        assert!(parse_counters_json("{}").is_err());
    }

    #[test]
    fn manifest_time_is_optional() {
        assert_eq!(
            last_apply_from_manifest(r#"{"version":"0.1.0","applied_at":1796025600,"files":{}}"#),
            Some("2026-11-30T08:00:00Z (pipelock-containment 0.1.0)".into())
        );
        assert_eq!(
            last_apply_from_manifest(r#"{"applied_at":"2026-11-30T07:00:00Z"}"#),
            Some("2026-11-30T07:00:00Z".into())
        );
        assert_eq!(last_apply_from_manifest(r#"{"files":{}}"#), None);
        assert_eq!(last_apply_from_manifest("garbage"), None);
    }

    #[test]
    fn drift_comes_from_the_content_probes() {
        let probe = |name: &str, status| Probe {
            name: name.into(),
            status,
            detail: String::new(),
            remediation: String::new(),
            diff: None,
        };
        let probes = vec![
            probe("nft-table", Status::Fail),
            probe("sudoers", Status::Pass),
            probe("agent-egress-denied", Status::Fail),
        ];
        assert_eq!(drifted(&probes), ["nft-table"]);
    }

    #[test]
    fn text_shows_missing_table_and_drift() {
        let view = StatusView {
            host: "h".into(),
            roles: vec![
                Role {
                    role: "agent".into(),
                    name: "cc-agent".into(),
                    id: Some(998),
                    members: vec![],
                },
                Role {
                    role: "operators".into(),
                    name: "pipelock-operators".into(),
                    id: Some(990),
                    members: vec!["alice".into()],
                },
            ],
            table_loaded: false,
            table_error: None,
            counters: vec![],
            units: vec![],
            last_apply: None,
            drift: true,
            drifted: vec!["nft-table".into()],
            drift_checked: true,
            ca: "/etc/pipelock/combined-ca.pem is missing".into(),
            tools: vec![],
        };
        let text = view.to_text();
        assert!(text.contains("UID 998"), "{text}");
        assert!(text.contains("GID 990 (alice)"), "{text}");
        assert!(text.contains("NOT LOADED"), "{text}");
        assert!(text.contains("YES (nft-table)"), "{text}");
        assert!(text.contains("none recorded"), "{text}");
        let unchecked = StatusView {
            drift_checked: false,
            ..view
        };
        assert!(unchecked.to_text().contains("drift:     unknown"));
    }
}
