//! Root test: the audit listener records a session's flood with the session's identity, and a
//! restart (the stored descriptors passed back, as systemd does) keeps the session's link.
//!
//! In the sandbox (`testbed::Sandbox`), tests/audit_root.py plays systemd (NOTIFY_SOCKET, the
//! descriptor store, LISTEN_FDS) and the journal (a datagram socket). The session is a process
//! in a network namespace of its own, set up by `pipelock-audit --attach` as the session unit
//! does; it floods as the agent. The control: a listener restarted without the stored
//! descriptors records nothing of the session.

use serde_json::Value;

const UNIT: &str = "pipelock-agent-00000000000000ab.service";
const FLOOD: u64 = 20_000;

fn sandbox_result(script: &str) -> Value {
    let binary = env!("CARGO_BIN_EXE_pipelock-containment");
    let out = testbed::Sandbox::new("audit", binary).must(script);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"));
    serde_json::from_str(line).unwrap()
}

fn of_session(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["PIPELOCK_SESSION"] == UNIT)
        .collect()
}

fn count(r: &Value) -> u64 {
    r["PIPELOCK_COUNT"].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_listener_survives_a_flood_and_a_restart_without_losing_the_session() {
    if testbed::skip_unless_root(
        "the_listener_survives_a_flood_and_a_restart_without_losing_the_session",
        "network namespaces, nft, NFLOG, setpriv",
        &["unshare", "nft", "ip", "setpriv", "python3", "useradd"],
    ) {
        return;
    }
    let identity = serde_json::json!({
        "unit": UNIT, "operator": "alice", "tool": "claude", "cwd": "/home/alice/proj",
    });
    let hex = pipelock_containment::session::hex(identity.to_string().as_bytes());
    let audit = env!("CARGO_BIN_EXE_pipelock-audit");
    let root = env!("CARGO_MANIFEST_DIR");
    let installed = "/usr/libexec/pipelock-containment/pipelock-audit";
    let result = sandbox_result(&format!(
        r#"
install -D -m 0755 {audit} {installed}
useradd --system --no-create-home --shell /usr/sbin/nologin cc-agent
# Not in a session's own network namespace: --attach must refuse and change nothing.
if {installed} --attach {hex} 2>/tmp/refusal; then echo "ATTACHED IN THE HOST NAMESPACE"; exit 1; fi
grep -q "not a session's own network namespace" /tmp/refusal || {{ cat /tmp/refusal; exit 1; }}
if nft list table inet pipelock_session 2>/dev/null; then echo "TABLE LOADED IN THE HOST NAMESPACE"; exit 1; fi
if ip route show default | grep -q "dev lo"; then echo "ROUTE ADDED IN THE HOST NAMESPACE"; exit 1; fi
# Through sudo (an operator's way to root) it refuses too, even in a namespace of its own.
if SUDO_UID=1000 unshare --net {installed} --attach {hex} 2>/dev/null; then echo "ATTACHED UNDER SUDO"; exit 1; fi
python3 {root}/tests/audit_root.py {installed} cc-agent {UNIT} {hex}
"#
    ));
    let records: Vec<Value> = result["records"].as_array().unwrap().clone();
    let session = of_session(&records);
    println!(
        "{} records, {} of the session; listener high-water RSS {} KiB",
        records.len(),
        session.len(),
        result["listener_hwm_kib"]
    );
    // The flood: every attempt refused at once, and all 20,000 accounted for in few records.
    let flood_line = result["flood_line"].as_str().unwrap();
    assert!(flood_line.starts_with("flooded"), "{flood_line}");
    let slowest: f64 = flood_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        slowest < 0.5,
        "an attempt took {slowest} s: not refused at once"
    );
    let flood: Vec<&&Value> = session
        .iter()
        .filter(|r| r["PIPELOCK_DESTINATION"] == "192.0.2.9" || r["PIPELOCK_KIND"] == "lost")
        .collect();
    let accounted: u64 = flood.iter().map(|r| count(r)).sum();
    assert_eq!(accounted, FLOOD, "flood records: {flood:#?}");
    assert!(
        flood.len() <= 12,
        "{} records for one flood: not folded",
        flood.len()
    );
    assert!(flood
        .iter()
        .any(|r| r["MESSAGE"].as_str().unwrap().contains("folded")));
    assert_eq!(result["listener_alive_after_flood"], true);
    assert_eq!(result["first_exit"], 0);
    // Every record of the session carries its identity.
    for r in &session {
        assert_eq!(r["PIPELOCK_OPERATOR"], "alice", "{r}");
        assert_eq!(r["PIPELOCK_TOOL"], "claude", "{r}");
        assert_eq!(r["PIPELOCK_CWD"], "/home/alice/proj", "{r}");
        assert_eq!(r["PIPELOCK_ORIGIN"], "session", "{r}");
    }
    // The store held the session's socket and identity across the restart.
    assert_eq!(
        result["stored_after_first"],
        serde_json::json!([UNIT, format!("{UNIT}.identity")])
    );
    // Control: without the stored descriptors, nothing of the session is recorded.
    assert!(result["marker1_line"]
        .as_str()
        .unwrap()
        .starts_with("refused 4241"));
    assert!(
        of_session(result["control_records"].as_array().unwrap()).is_empty(),
        "a listener without the store recorded the session: the link must come from the store"
    );
    assert_eq!(result["control_exit"], 0);
    // After the restart: the attempt made while no listener held the socket, the one after, and
    // one made just before the session's stop.
    for port in ["4241", "4242", "4243"] {
        assert!(
            session
                .iter()
                .any(|r| r["PIPELOCK_DESTINATION"] == "192.0.2.7" && r["PIPELOCK_PORT"] == port),
            "no record of TCP 192.0.2.7:{port} with the session after the restart"
        );
    }
    // The session's stop lets both descriptors go.
    assert_eq!(result["stored_after_detach"], serde_json::json!([]));
    assert_eq!(result["second_exit"], 0);
    assert_eq!(result["session_exit"], 0);
}
