//! Root test of `verify` against a real kernel: a private network and mount namespace, throwaway users.
//!
//! The scenario loads the rendered table, then breaks it in several ways and records
//! `verify --json` after each step; the assertions check which probes change, and that the
//! output validates against docs/verify-schema.json. Nothing touches the host: users exist
//! only in a private copy of /etc/passwd bind-mounted inside the namespace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pipelock-containment");
const SCHEMA: &str = include_str!("../docs/verify-schema.json");

/// Pick two UIDs below 1000 that the host's passwd does not use.
fn free_uids(count: usize) -> Vec<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let used: Vec<u32> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    (900..999)
        .filter(|u| !used.contains(u))
        .take(count)
        .collect()
}

/// Status of every probe in one report.
fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Probes whose status differs between two reports.
fn changed(a: &Value, b: &Value) -> Vec<String> {
    let (a, b) = (statuses(a), statuses(b));
    a.iter()
        .filter(|(name, status)| b.get(*name) != Some(status))
        .map(|(name, _)| name.clone())
        .collect()
}

fn probe<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe {name}"))
}

fn validate(report: &Value) {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn table_probe_detects_drift_and_agent_probes_see_the_kernel_rule() {
    if testbed::skip_unless_root(
        "table_probe_detects_drift_and_agent_probes_see_the_kernel_rule",
        "network namespace, nft, setpriv",
        &["unshare", "nft", "setpriv", "ip"],
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("verify-root-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let uids = free_uids(3);
    let (agent, proxy, moved) = (uids[0], uids[1], uids[2]);

    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let users = |agent_uid: u32| {
        format!(
            "{passwd}cc-agent:x:{agent_uid}:{agent_uid}::/var/lib/cc-agent:/usr/sbin/nologin\n\
             pipelock-proxy:x:{proxy}:{proxy}::/var/lib/pipelock:/usr/sbin/nologin\n"
        )
    };
    std::fs::write(d.join("passwd"), users(agent)).unwrap();
    std::fs::write(d.join("passwd-moved"), users(moved)).unwrap();
    std::fs::write(
        d.join("group"),
        format!(
            "{group}cc-agent:x:{agent}:\npipelock-proxy:x:{proxy}:\ncc-agent-moved:x:{moved}:\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("containment.toml"),
        pipelock_containment::config::DEFAULT_CONFIG_TOML,
    )
    .unwrap();

    let script = format!(
        r#"
set -eu
{internet}
D={d}
BIN={BIN}
verify() {{ "$BIN" verify --json --config "$D/containment.toml" > "$D/$1.json" || echo $? > "$D/$1.rc"; }}
mount --bind "$D/passwd" /etc/passwd
mount --bind "$D/group" /etc/group
ip link set lo up
test_internet 192.0.2.10/24
ip -6 addr add 2001:db8::10/64 dev verify0 nodad
"$BIN" render --config "$D/containment.toml" --out "$D/root" > /dev/null
RULES="$D/root/etc/nftables.d/pipelock-containment.nft"
nft -f "$RULES"
verify loaded
# Harmless drift: an extra counter with no verdict.
nft insert rule inet pipelock_containment agent_egress counter
verify benign
nft -f "$RULES"
# The seed's hole: all of loopback open.
nft insert rule inet pipelock_containment agent_egress oif lo accept
verify loopback-hole
nft -f "$RULES"
verify repaired
# The agent recreated with another UID.
mount --bind "$D/passwd-moved" /etc/passwd
verify moved
umount /etc/passwd
nft delete table inet pipelock_containment
verify no-table
"#,
        d = d.display(),
        internet = testbed::TEST_INTERNET,
    );
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scenario failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = |step: &str| -> Value {
        let path = d.join(format!("{step}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let value: Value = serde_json::from_str(&text).unwrap();
        validate(&value);
        value
    };
    let rc = |step: &str| -> i32 {
        let path = d.join(format!("{step}.rc"));
        if Path::new(&path).exists() {
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        } else {
            0
        }
    };

    let loaded = report("loaded");
    for name in [
        "users",
        "nft-table",
        "agent-egress-denied",
        "agent-loopback-denied",
        "dns-policy",
    ] {
        assert_eq!(
            probe(&loaded, name)["status"],
            "pass",
            "{:#}",
            probe(&loaded, name)
        );
    }
    // The namespace has no installed files and no systemd: those probes fail or skip.
    assert_eq!(loaded["contained"], false);
    assert_eq!(rc("loaded"), 1);

    let benign = report("benign");
    assert_eq!(changed(&loaded, &benign), ["nft-table"]);
    let table = probe(&benign, "nft-table");
    assert!(
        table["diff"].as_str().unwrap().contains("+\t\tcounter\n"),
        "{table:#}"
    );

    let hole = report("loopback-hole");
    assert_eq!(
        changed(&loaded, &hole),
        ["agent-loopback-denied", "dns-policy", "nft-table"],
        "the hole opens loopback (and a loopback resolver) and nothing else"
    );
    let table = probe(&hole, "nft-table");
    assert!(
        table["diff"]
            .as_str()
            .unwrap()
            .contains("+\t\toif \"lo\" accept\n"),
        "{table:#}"
    );

    let repaired = report("repaired");
    assert!(changed(&loaded, &repaired).is_empty(), "{repaired:#}");

    let moved_report = report("moved");
    let table = probe(&moved_report, "nft-table");
    assert_eq!(table["status"], "fail");
    let diff = table["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!("-\t\tmeta skuid {moved} jump")),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("+\t\tmeta skuid {agent} jump")),
        "{diff}"
    );
    // The recreated agent is not the UID the loaded table confines: its traffic gets out.
    assert_eq!(
        probe(&moved_report, "agent-egress-denied")["status"],
        "fail"
    );
    assert_eq!(probe(&moved_report, "users")["status"], "pass");

    let none = report("no-table");
    let table = probe(&none, "nft-table");
    assert_eq!(table["status"], "fail");
    assert!(table["detail"].as_str().unwrap().contains("not loaded"));
    let egress = probe(&none, "agent-egress-denied");
    assert_eq!(egress["status"], "fail", "{egress:#}");
    assert!(egress["detail"].as_str().unwrap().contains("NOT blocked"));
}
