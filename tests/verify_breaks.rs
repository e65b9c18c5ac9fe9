//! Root test: after a real `apply` in a throwaway copy of the host, break one property at a
//! time, check that exactly the expected probes fail, then check that `apply` repairs it.
//!
//! Runs in `testbed::Sandbox` (new mount, network and PID namespaces; overlays over
//! /etc, /usr, /var). systemd is not running there, so boot-unit and proxy-unit skip; the
//! booted-host e2e covers them.

use std::collections::BTreeMap;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pipelock-containment");

/// What the sandboxes of these tests need as root.
const NEEDS: &str = "namespaces, overlays, useradd, nft, setpriv";

const SCHEMA: &str = include_str!("../docs/verify-schema.json");

const SCRIPT: &str = r#"
fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
pipelock-containment apply > /dev/null 2>&1 || fail "apply"
# A route for the egress probe: a veth pair inside the private namespace, documentation addresses.
test_internet 192.0.2.10/24
step() { echo "=== step $1"; pipelock-containment verify --json; echo "=== rc $?"; }
repair() {
    pipelock-containment apply > /dev/null 2>&1 || echo "=== apply failed after $1"
    step "$1+apply"
}
W=/var/lib/pipelock-containment/wrappers
step baseline
chmod 0644 /etc/sudoers.d/pipelock-containment; step sudoers-chmod; repair sudoers-chmod
echo '# edited' >> "$W/claude"; step wrapper-edit; repair wrapper-edit
echo '# edited' >> /etc/nftables.d/pipelock-containment.nft; step rule-file-edit; repair rule-file-edit
nft insert rule inet pipelock_containment agent_egress counter; step table-drift; repair table-drift
nft delete table inet pipelock_containment; step table-deleted; repair table-deleted
new=$(awk -F: 'BEGIN{for(u=900;u<1000;u++)free[u]=1} {delete free[$3]} END{for(u=900;u<1000;u++) if(free[u]){print u; exit}}' /etc/passwd)
usermod -u "$new" cc-agent; step agent-new-uid; repair agent-new-uid
mkdir -p /etc/pipelock
printf -- '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n' > /etc/pipelock/ca-key.pem
chmod 0644 /etc/pipelock/ca-key.pem; step ca-key-readable
pipelock-containment ca refresh > /dev/null 2>&1 || echo "ca refresh failed"
step ca-key-readable+ca-refresh
"#;

/// Split the script's output into the report of each step.
fn reports(output: &str) -> BTreeMap<String, Value> {
    let mut reports = BTreeMap::new();
    let mut name = None;
    let mut json = String::new();
    for line in output.lines() {
        if let Some(step) = line.strip_prefix("=== step ") {
            name = Some(step.to_string());
            json.clear();
        } else if line.starts_with("=== rc ") {
            let step = name.take().expect("rc without step");
            let value: Value =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("step {step}: {e}\n{json}"));
            reports.insert(step, value);
        } else if line.starts_with("=== apply failed") {
            panic!("{line}\n{output}");
        } else if name.is_some() {
            json.push_str(line);
            json.push('\n');
        }
    }
    reports
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Probes whose status differs from the baseline, and their new status.
fn changed(base: &Value, report: &Value) -> Vec<String> {
    let base = statuses(base);
    statuses(report)
        .into_iter()
        .filter(|(name, status)| base.get(name) != Some(status))
        .map(|(name, status)| format!("{name}={status}"))
        .collect()
}

#[test]
fn each_break_fails_its_probe_and_apply_repairs_it() {
    let test = "each_break_fails_its_probe_and_apply_repairs_it";
    if testbed::skip_unless_root(test, NEEDS, &["unshare", "nft", "setpriv", "ip"]) {
        return;
    }
    let output = testbed::Sandbox::new("verify-breaks", BIN).output(SCRIPT);
    let text = format!("{}{}", output.stdout, output.stderr);
    assert!(output.ok, "sandbox script failed:\n{text}");
    let reports = reports(&text);

    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (step, report) in &reports {
        assert!(
            validator.is_valid(report),
            "step {step}: invalid JSON {report:#}"
        );
    }

    let base = &reports["baseline"];
    let s = statuses(base);
    for name in [
        "users",
        "nft-table",
        "rule-file",
        "sudoers",
        "wrappers",
        "ca-key",
        "agent-egress-denied",
        "agent-loopback-denied",
        "dns-policy",
    ] {
        assert_eq!(s[name], "pass", "baseline {name}: {base:#}");
    }

    let expect = |step: &str, want: &[&str]| {
        let got = changed(base, &reports[step]);
        assert_eq!(got, want, "step {step}: {:#}", reports[step]);
        let repaired = format!("{step}+apply");
        if let Some(after) = reports.get(&repaired) {
            assert_eq!(
                changed(base, after),
                Vec::<String>::new(),
                "apply did not repair {step}: {after:#}"
            );
        }
    };
    expect("sudoers-chmod", &["sudoers=fail"]);
    expect("wrapper-edit", &["wrappers=fail"]);
    expect("rule-file-edit", &["rule-file=fail"]);
    expect("table-drift", &["nft-table=fail"]);
    // Without the table nothing confines the agent: the agent probes fail with it.
    expect(
        "table-deleted",
        &[
            "agent-egress-denied=fail",
            "agent-loopback-denied=fail",
            "dns-policy=fail",
            "nft-table=fail",
        ],
    );
    // The loaded table and the rule file name the old UID: the new one is not confined.
    expect(
        "agent-new-uid",
        &[
            "agent-egress-denied=fail",
            "agent-loopback-denied=fail",
            "dns-policy=fail",
            "nft-table=fail",
            "rule-file=fail",
        ],
    );
    expect("ca-key-readable", &["ca-key=fail"]);
    // `ca refresh` fixes the key's owner and mode (apply runs it once its CA step is wired).
    assert_eq!(
        statuses(&reports["ca-key-readable+ca-refresh"])["ca-key"],
        "pass",
        "{:#}",
        reports["ca-key-readable+ca-refresh"]
    );

    let diff = reports["agent-new-uid"]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nft-table")
        .unwrap()["diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(diff.contains("meta skuid"), "{diff}");
}

#[test]
fn status_counts_blocked_attempts_and_metrics_file_is_written() {
    let test = "status_counts_blocked_attempts_and_metrics_file_is_written";
    if testbed::skip_unless_root(test, NEEDS, &["unshare", "nft", "setpriv", "ip"]) {
        return;
    }
    let script = r#"
fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
pipelock-containment apply > /dev/null 2>&1 || fail "apply"
for i in 1 2 3; do
    setpriv --reuid=cc-agent --regid=cc-agent --init-groups -- \
        pipelock-containment agent-probe udp:127.0.0.1:9 udp:127.0.0.1:53 > /dev/null
done
echo "=== status"
pipelock-containment status --json
echo "=== metrics"
mkdir -p /var/lib/prometheus/node-exporter
pipelock-containment metrics --output /var/lib/prometheus/node-exporter/pipelock_containment.prom
cat /var/lib/prometheus/node-exporter/pipelock_containment.prom
echo "=== files"
ls -A /var/lib/prometheus/node-exporter
"#;
    let output = testbed::Sandbox::new("verify-status", BIN).output(script);
    let text = output.stdout;
    assert!(output.ok, "{text}{}", output.stderr);
    let section = |name: &str| -> String {
        let start = text.find(&format!("=== {name}\n")).unwrap() + name.len() + 5;
        let end = text[start..]
            .find("\n=== ")
            .map_or(text.len(), |e| start + e + 1);
        text[start..end].to_string()
    };
    let status: Value = serde_json::from_str(&section("status")).unwrap();
    assert_eq!(status["table_loaded"], true, "{status:#}");
    assert_eq!(status["drift"], false, "{status:#}");
    assert!(status["last_apply"]
        .as_str()
        .unwrap()
        .contains("pipelock-containment"));
    let counter = |name: &str| {
        status["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["packets"]
            .as_u64()
            .unwrap()
    };
    // Six datagrams from the agent, all rejected; three of them DNS.
    assert_eq!(counter("blocked"), 6, "{status:#}");
    assert_eq!(counter("dns_blocked"), 3, "{status:#}");
    assert_eq!(status["roles"][0]["name"], "cc-agent");

    let metrics = section("metrics");
    assert!(
        metrics.contains("\npipelock_containment_drift 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npipelock_containment_table_loaded 1\n"),
        "{metrics}"
    );
    // At least the six datagrams above, plus the metrics run's own agent probes.
    let blocked: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pipelock_containment_blocked_packets_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(blocked >= 6, "{metrics}");
    assert!(metrics.contains("# TYPE pipelock_containment_proxy_up gauge\n"));
    assert_eq!(section("files").trim(), "pipelock_containment.prom");
}

#[test]
fn url_probes_go_through_a_real_proxy_and_fail_when_it_stops() {
    let test = "url_probes_go_through_a_real_proxy_and_fail_when_it_stops";
    if testbed::skip_unless_root(test, NEEDS, &["tinyproxy", "python3", "curl", "ip"]) {
        return;
    }
    // The "internet" is 192.0.2.1 on a veth inside the private namespace; tinyproxy runs as
    // the proxy user on 127.0.0.1:8888, as the config says.
    let script = r#"
fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
pipelock-containment apply > /dev/null 2>&1 || fail "apply"
test_internet "" 192.0.2.1/24
mkdir -p /tmp/www && echo hello > /tmp/www/index.html
/usr/bin/python3 -m http.server --bind 192.0.2.1 --directory /tmp/www 8080 > /dev/null 2>&1 &
printf 'Port 8888\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\nMaxClients 8\n' > /tmp/tinyproxy.conf
setpriv --reuid=pipelock-proxy --regid=pipelock-proxy --init-groups -- \
    /usr/bin/tinyproxy -d -c /tmp/tinyproxy.conf > /dev/null 2>&1 &
proxy=$!
for i in $(seq 50); do
    curl -s -o /dev/null --max-time 1 http://192.0.2.1:8080/ && \
    curl -s -o /dev/null --max-time 1 --proxy http://127.0.0.1:8888 http://192.0.2.1:8080/ && break
    sleep 0.1
done
echo "=== step proxy-up"; pipelock-containment verify --json --url http://192.0.2.1:8080/; echo "=== rc $?"
kill "$proxy"; wait "$proxy" 2>/dev/null
echo "=== step proxy-down"; pipelock-containment verify --json --url http://192.0.2.1:8080/; echo "=== rc $?"
"#;
    let output = testbed::Sandbox::new("verify-url", BIN).output(script);
    let text = format!("{}{}", output.stdout, output.stderr);
    assert!(output.ok, "{text}");
    let reports = reports(&text);
    let up = &reports["proxy-up"];
    let s = statuses(up);
    assert_eq!(s["agent-via-proxy"], "pass", "{up:#}");
    assert_eq!(s["operator-direct"], "pass", "{up:#}");
    // 192.0.2.1 is local here, so the agent's direct attempt leaves through lo: still denied.
    assert_eq!(s["agent-egress-denied"], "pass", "{up:#}");
    assert_eq!(s["agent-loopback-denied"], "pass", "{up:#}");
    assert_eq!(
        changed(up, &reports["proxy-down"]),
        ["agent-via-proxy=fail"],
        "{:#}",
        reports["proxy-down"]
    );
}
