//! `blocked --from` and `--explain`: audit records from a saved journal (`journalctl -o json`), no root needed.

use std::process::Command;

use pipelock_containment::audit::{self, Folder, Identity, Origin};
use pipelock_containment::nflog::{Attempt, Protocol};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pipelock-containment");
const UNIT: &str = "pipelock-agent-00000000000000ab.service";

/// Two records as journalctl -o json prints them: a session's DNS query and a host-table TCP attempt.
fn journal() -> String {
    let identity = Identity {
        unit: UNIT.into(),
        operator: "alice".into(),
        tool: "claude".into(),
        cwd: "/home/alice/proj".into(),
    };
    let attempt = |destination: &str, port: u16, protocol: Protocol, name: Option<&str>| Attempt {
        protocol,
        source: "127.0.0.1".parse().unwrap(),
        destination: destination.parse().unwrap(),
        port: Some(port),
        dns_name: name.map(String::from),
        dns_type: name.map(|_| 1),
    };
    let dns = attempt("192.0.2.53", 53, Protocol::Udp, Some("exfil-42.example"));
    let tcp = attempt("127.0.0.1", 5432, Protocol::Tcp, None);
    let records = [
        audit::record(
            Folder::default()
                .attempt(&dns, Some(998), None, 1_764_488_000)
                .unwrap(),
            "0000000100000001".into(),
            Origin::Session,
            Some(&identity),
        ),
        audit::record(
            Folder::default()
                .attempt(&tcp, Some(998), None, 1_764_488_001)
                .unwrap(),
            "0000000100000002".into(),
            Origin::Host,
            None,
        ),
    ];
    let mut text = String::from("{\"MESSAGE\":\"unrelated\",\"MESSAGE_ID\":\"other\"}\n");
    for record in records {
        let object: serde_json::Map<String, Value> = record
            .journal_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        text.push_str(&Value::Object(object).to_string());
        text.push('\n');
    }
    text
}

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pkg/containment.toml");

fn blocked(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.json");
    std::fs::write(&path, journal()).unwrap();
    Command::new(BIN)
        .args(["blocked", "--config", CONFIG])
        .args(args)
        .arg("--from")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn blocked_lists_and_filters_saved_records() {
    let output = blocked(&["--json"]);
    assert!(output.status.success(), "{output:?}");
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    let records = value["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["session"], UNIT);
    assert_eq!(records[0]["operator"], "alice");
    assert_eq!(records[0]["tool"], "claude");
    assert_eq!(records[0]["name"], "exfil-42.example");
    assert_eq!(records[1]["origin"], "host");
    assert_eq!(records[1]["uid"], 998);

    let one = blocked(&["--json", "--session", "00000000000000ab"]);
    let value: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(value["records"].as_array().unwrap().len(), 1);
    let none = blocked(&["--json", "--operator", "bob"]);
    let value: Value = serde_json::from_slice(&none.stdout).unwrap();
    assert!(value["records"].as_array().unwrap().is_empty());

    let text = String::from_utf8(blocked(&[]).stdout).unwrap();
    assert!(
        text.contains("exfil-42.example") && text.contains("alice"),
        "{text}"
    );
}

#[test]
fn explain_names_the_fix_and_an_unknown_id_fails() {
    let output = blocked(&["--explain", "0000000100000002"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("allow port 5432 in network.allowed_loopback_ports"),
        "{text}"
    );
    let dns = String::from_utf8(blocked(&["--explain", "0000000100000001"]).stdout).unwrap();
    assert!(
        dns.contains("exfil-42.example") && dns.contains("proxy"),
        "{dns}"
    );
    let missing = blocked(&["--explain", "ffffffffffffffff"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no record has the id"));
}
