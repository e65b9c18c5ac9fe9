//! The benchmarks, in a booted test host with the package installed, each beside its floor in one
//! run; nothing on the machine running them changes.
//! `cargo xtask bench-launch`: `cc-launch true` against a bare `sudo -n -u cc-agent true` and a
//! bare transient unit, and the proxy bridge against direct loopback (a 1 GiB transfer, 1,000
//! short connections, RSS). `cargo xtask bench`: a no-op `apply` against `nft -c -f` of the rule
//! file, `grant`/`revoke` of a 100,000-file tree against `setfacl -R` of the same entries, and a
//! session's flood of refused attempts recorded by the audit listener against no listener.

use anyhow::{bail, Context, Result};

use super::checks::{AGENT, OPERATOR};
use super::{scenario, Lab};

/// Targets from the contained-launch issue.
const TARGET_FLOOR_RATIO: f64 = 1.3;
const TARGET_LAUNCH_MS: f64 = 150.0;
const TARGET_THROUGHPUT_LOSS: f64 = 0.05;
const TARGET_ADDED_MS_PER_CONNECTION: f64 = 1.0;
const TARGET_BRIDGE_RSS_KIB: u64 = 10 * 1024;
/// Targets from the architecture issue.
const TARGET_NOOP_APPLY_MS: f64 = 50.0;
const TARGET_GRANT_FLOOR_RATIO: f64 = 1.5;
/// Targets from the audit issue.
const TARGET_RECORDED_PER_S: f64 = 50_000.0;
const TARGET_LISTENER_RSS_KIB: u64 = 20 * 1024;
/// Attempts in the audit benchmark's flood.
const FLOOD: u64 = 1_000_000;
/// The grant benchmark's tree: this many directories of this many files.
const TREE_DIRS: u32 = 100;
const TREE_FILES_PER_DIR: u32 = 1000;
/// The loopback port the bridge benchmark's sink serves (an allowed loopback port).
const SINK_PORT: u16 = 9700;
const TOOL: &str = include_str!("attacks/bridge_bench.py");

pub fn run(lab: &mut Lab, runs: u32) -> Result<()> {
    scenario::run_install_only(lab)?;
    let c = lab.c();
    std::fs::copy("/usr/bin/hyperfine", lab.rootfs.join("usr/bin/hyperfine"))
        .context("copying hyperfine into the test host")?;
    std::fs::write(lab.rootfs.join("root/bridge_bench.py"), TOOL)?;
    c.must(&format!(
        "sed -i 's/^allowed_loopback_ports = .*/allowed_loopback_ports = [{SINK_PORT}]/' \
           /etc/pipelock-containment/containment.toml && \
         pipelock-containment tools add true && pipelock-containment tools add python3 && \
         install -m 0644 /root/bridge_bench.py /usr/share/bridge_bench.py && \
         echo '{OPERATOR} ALL=({AGENT}) NOPASSWD: /usr/bin/true' > /etc/sudoers.d/bench && \
         chmod 0440 /etc/sudoers.d/bench"
    ))?;
    for command in [
        "cc-launch true".to_string(),
        format!("sudo -n -u {AGENT} /usr/bin/true"),
    ] {
        c.must(&format!(
            "runuser -u {OPERATOR} -- sh -c 'cd / && {command}'"
        ))?;
    }
    let floor =
        format!("systemd-run --quiet --wait --pipe --collect -p User={AGENT} /usr/bin/true");
    c.must(&floor)?;
    let sandbox = sandbox_floor(c)?;
    c.must(&sandbox)?;
    // Root runs all four, so the floors need no sudo; cc-launch's own sudo hop counts.
    let out = c.must(&format!(
        "cd / && hyperfine -N --style basic --warmup 10 --runs {runs} --export-json /root/bench.json \
         'cc-launch true' 'sudo -n -u {AGENT} /usr/bin/true' '{floor}' '{sandbox}'"
    ))?;
    print!("{out}");
    let report: serde_json::Value = serde_json::from_str(&c.must("cat /root/bench.json")?)
        .context("reading hyperfine's JSON")?;
    let stat = |index: usize, key: &str| -> Result<f64> {
        report["results"][index][key]
            .as_f64()
            .map(|s| s * 1e3)
            .with_context(|| format!("hyperfine's JSON has no {key}"))
    };
    let (launch, sudo, unit) = (stat(0, "mean")?, stat(1, "mean")?, stat(2, "mean")?);
    let (launch_med, unit_med) = (stat(0, "median")?, stat(2, "median")?);
    let (sandboxed, sandboxed_med) = (stat(3, "mean")?, stat(3, "median")?);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nbench-launch (load {}): cc-launch true {launch:.1} ms, sudo -n -u {AGENT} true {sudo:.1} ms, \
         systemd-run floor {unit:.1} ms; cc-launch / floor {:.2}x by mean, {:.2}x by median \
         (target <= {TARGET_FLOOR_RATIO}x: {}); under {TARGET_LAUNCH_MS} ms: {}",
        load.split_whitespace().next().unwrap_or("?"),
        launch / unit,
        launch_med / unit_med,
        verdict(launch / unit <= TARGET_FLOOR_RATIO),
        verdict(launch <= TARGET_LAUNCH_MS),
    );
    println!(
        "bench-launch: the session's own sandbox properties on /usr/bin/true (systemd's share): \
         {sandboxed:.1} ms; cc-launch / that floor {:.2}x by mean, {:.2}x by median; our own \
         code (sudo hop, checks, bridge start) adds {:.1} ms",
        launch / sandboxed,
        launch_med / sandboxed_med,
        launch - sandboxed,
    );

    // The bridge: the same client, direct on the host and from a session through the bridge.
    c.must(&format!(
        "nohup python3 /usr/share/bridge_bench.py serve {SINK_PORT} > /root/sink.log 2>&1 < /dev/null & \
         for i in $(seq 50); do ss -Hltn 'sport = :{SINK_PORT}' | grep -q . && exit 0; sleep 0.1; done; exit 1"
    ))?;
    let client = format!("python3 /usr/share/bridge_bench.py client {SINK_PORT}");
    let direct = c.must(&format!("cd / && {client}"))?;
    let bridged = c.must(&format!(
        "cd / && runuser -u {OPERATOR} -- sh -c 'cd / && cc-launch {client}'"
    ))?;
    let field = |text: &str, key: &str| -> Result<f64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key}= in {text:?}"))
    };
    let (direct_mibs, bridged_mibs) = (field(&direct, "mib_per_s")?, field(&bridged, "mib_per_s")?);
    let (direct_ms, bridged_ms) = (
        field(&direct, "ms_per_conn")?,
        field(&bridged, "ms_per_conn")?,
    );
    let rss_host = c.must("ps -o rss= -C pipelock-bridge | sort -n | tail -1")?;
    let rss_host: u64 = rss_host.trim().parse().unwrap_or(0);
    let rss_session = field(&bridged, "session_init_rss_kib").unwrap_or(0.0) as u64;
    let loss = 1.0 - bridged_mibs / direct_mibs;
    let added = bridged_ms - direct_ms;
    println!(
        "bench-bridge: 1 GiB direct {direct_mibs:.0} MiB/s, through the bridge {bridged_mibs:.0} MiB/s \
         ({:.1}% lower; target <= {:.0}%: {}); 1,000 connections direct {direct_ms:.3} ms each, bridged \
         {bridged_ms:.3} ms (+{added:.3} ms; target < {TARGET_ADDED_MS_PER_CONNECTION} ms: {}); RSS: host half \
         {rss_host} KiB, in-session half {rss_session} KiB (target < {} KiB: {})",
        loss * 100.0,
        TARGET_THROUGHPUT_LOSS * 100.0,
        verdict(loss <= TARGET_THROUGHPUT_LOSS),
        verdict(added < TARGET_ADDED_MS_PER_CONNECTION),
        TARGET_BRIDGE_RSS_KIB,
        verdict(rss_host.max(rss_session) < TARGET_BRIDGE_RSS_KIB),
    );
    if rss_host == 0 {
        bail!("the host half of the bridge was not running during the transfer");
    }
    Ok(())
}

/// `cargo xtask bench`: the helper's own work against what the kernel tools alone take.
pub fn run_helper(lab: &mut Lab, runs: u32) -> Result<()> {
    scenario::run_install_only(lab)?;
    let c = lab.c();
    std::fs::copy("/usr/bin/hyperfine", lab.rootfs.join("usr/bin/hyperfine"))
        .context("copying hyperfine into the test host")?;
    let rule = pipelock_containment::paths::RULE_FILE;
    c.must("pipelock-containment apply")?;
    if !c.must("pipelock-containment apply")?.contains("no changes") {
        bail!("a second apply is not a no-op, so it cannot be benchmarked as one");
    }
    let apply = c.must(&format!(
        "cd / && hyperfine -N --style basic --warmup 3 --runs {runs} --export-json /root/apply.json \
         'pipelock-containment apply' 'nft -c -f {rule}'"
    ))?;
    print!("{apply}");
    let means = |file: &str| -> Result<Vec<f64>> {
        let report: serde_json::Value = serde_json::from_str(&c.must(&format!("cat {file}"))?)
            .with_context(|| format!("reading hyperfine's {file}"))?;
        report["results"]
            .as_array()
            .context("hyperfine's JSON has no results")?
            .iter()
            .map(|r| r["mean"].as_f64().map(|s| s * 1e3).context("no mean"))
            .collect()
    };
    let (noop, nft) = match means("/root/apply.json")?[..] {
        [noop, nft] => (noop, nft),
        ref other => bail!("expected two results, got {other:?}"),
    };

    // A tree the operator owns, below their home; the floor sets the same entries with setfacl:
    // r-X on everything and the default entry on directories.
    let tree = format!("/home/{OPERATOR}/bench-tree");
    c.must(&format!(
        "rm -rf {tree} && mkdir -p {tree} && cd {tree} && \
         for d in $(seq {TREE_DIRS}); do mkdir d$d && (cd d$d && seq {TREE_FILES_PER_DIR} | xargs touch); done && \
         chown -R {OPERATOR}: {tree} && find {tree} -type f | wc -l"
    ))?;
    let entries = format!("u:{AGENT}:rX");
    let floor_grant_inner = format!(
        "setfacl -R -m {entries} {tree} && find {tree} -type d -exec setfacl -m d:{entries} {{}} +"
    );
    let floor_grant = format!("sh -c '{floor_grant_inner}'");
    let floor_revoke = format!("setfacl -R -b {tree}");
    let grant = format!("pipelock-containment grant {tree}");
    let revoke = format!("pipelock-containment revoke {tree}");
    // Each run starts from the state its command expects: no grant, or a grant.
    let clean = format!("{revoke} >/dev/null 2>&1; {floor_revoke}");
    let granted = format!("{clean}; {grant} >/dev/null");
    let grants = c.must(&format!(
        "cd / && hyperfine -N --style basic --runs {tree_runs} --export-json /root/grant.json \
         --prepare \"sh -c '{clean}'\" \"{grant}\" \
         --prepare \"sh -c '{clean}'\" \"{floor_grant}\" \
         --prepare \"sh -c '{granted}'\" \"{revoke}\" \
         --prepare \"sh -c '{clean}; {floor_grant_inner}'\" \"{floor_revoke}\"",
        tree_runs = runs.clamp(3, 10),
    ))?;
    print!("{grants}");
    let (grant_ms, floor_grant_ms, revoke_ms, floor_revoke_ms) = match means("/root/grant.json")?[..]
    {
        [a, b, c, d] => (a, b, c, d),
        ref other => bail!("expected four results, got {other:?}"),
    };
    let files = TREE_DIRS * TREE_FILES_PER_DIR;
    println!(
        "\nbench: no-op apply {noop:.1} ms, nft -c -f of the rule file {nft:.1} ms ({:.1}x; \
         target under {TARGET_NOOP_APPLY_MS} ms: {})",
        noop / nft,
        verdict(noop < TARGET_NOOP_APPLY_MS),
    );
    println!(
        "bench: {files} files: grant {grant_ms:.0} ms, setfacl {floor_grant_ms:.0} ms ({:.2}x); \
         revoke {revoke_ms:.0} ms, setfacl -R -b {floor_revoke_ms:.0} ms ({:.2}x) (target within \
         {TARGET_GRANT_FLOOR_RATIO}x: grant {}, revoke {})",
        grant_ms / floor_grant_ms,
        revoke_ms / floor_revoke_ms,
        verdict(grant_ms / floor_grant_ms <= TARGET_GRANT_FLOOR_RATIO),
        verdict(revoke_ms / floor_revoke_ms <= TARGET_GRANT_FLOOR_RATIO),
    );
    audit_flood(c)
}

/// One session floods refused datagrams, first with the audit listener stopped (the kernel
/// refuses and nobody records: the floor), then with it recording; the listener's CPU time and
/// memory over the second flood.
fn audit_flood(c: &super::container::Container) -> Result<()> {
    const UNITS: &str = "pipelock-containment-audit.socket pipelock-containment-audit.service";
    let flood = |c: &super::container::Container| -> Result<(String, f64)> {
        let out = c.must(&format!(
            "runuser -u {OPERATOR} -- sh -c 'cd / && cc-launch python3 {}/flood.py {FLOOD}' 2>/dev/null",
            super::sessions::ATTACKS
        ))?;
        let field = |key: &str| {
            out.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(String::from)
                .with_context(|| format!("no {key}= in {out:?}"))
        };
        if field("refused")? != FLOOD.to_string() {
            bail!("not every attempt of the flood was refused: {out}");
        }
        Ok((field("unit")?, field("seconds")?.parse()?))
    };
    c.must("pipelock-containment tools add python3")?;
    c.must(&format!("systemctl stop {UNITS}"))?;
    let (_, floor_s) = flood(c)?;
    c.must(&format!("systemctl start {UNITS}"))?;
    let pid = c.must("systemctl show -p MainPID --value pipelock-containment-audit.service")?;
    let pid = pid.trim();
    let cpu = |c: &super::container::Container| -> Result<f64> {
        let stat = c.must(&format!("cat /proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .context("stat")?
            .1
            .split(' ')
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(ticks as f64 / 100.0)
    };
    let cpu_before = cpu(c)?;
    let (unit, recorded_s) = flood(c)?;
    // Every attempt accounted for: folded counts and any lost ones.
    let mut accounted = 0;
    let mut lost = 0;
    for _ in 0..40 {
        let out = c.must(&format!(
            "pipelock-containment blocked --json --session {unit}"
        ))?;
        let value: serde_json::Value = serde_json::from_str(&out)?;
        let records = value["records"].as_array().cloned().unwrap_or_default();
        accounted = records
            .iter()
            .filter_map(|r| r["count"].as_u64())
            .sum::<u64>();
        lost = records
            .iter()
            .filter(|r| r["kind"] == "lost")
            .filter_map(|r| r["count"].as_u64())
            .sum();
        if accounted >= FLOOD {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let cpu_s = cpu(c)? - cpu_before;
    let hwm = c.must(&format!("grep VmHWM /proc/{pid}/status"))?;
    let hwm_kib: u64 = hwm.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let recorded = accounted - lost;
    let rate = recorded as f64 / recorded_s;
    println!(
        "bench-audit: {FLOOD} refused attempts from one session: {:.0}/s with no listener (floor), \
         {rate:.0}/s recorded ({:.2}x the floor's time), {lost} lost, {accounted} accounted for \
         (target at least {TARGET_RECORDED_PER_S:.0}/s without loss: {}); listener CPU {cpu_s:.2} s \
         ({:.0}% of one core over the flood), RSS high-water {hwm_kib} KiB (target under {TARGET_LISTENER_RSS_KIB} KiB: {})",
        FLOOD as f64 / floor_s,
        recorded_s / floor_s,
        verdict(lost == 0 && accounted == FLOOD && rate >= TARGET_RECORDED_PER_S),
        100.0 * cpu_s / recorded_s,
        verdict(hwm_kib < TARGET_LISTENER_RSS_KIB),
    );
    if accounted != FLOOD {
        bail!("{accounted} of {FLOOD} attempts accounted for in the records");
    }
    Ok(())
}

/// `systemd-run` with every property a session gets, running /usr/bin/true instead of
/// session-init and the tool: what systemd's sandbox alone costs. Built by the same function
/// launch-session uses.
fn sandbox_floor(c: &super::container::Container) -> Result<String> {
    use pipelock_containment::{config::Config, facts::Account, session};
    let uid: u32 = c.must(&format!("id -u {AGENT}"))?.trim().parse()?;
    let agent = Account {
        name: AGENT.into(),
        uid,
        gid: uid,
        home: "/var/lib/cc-agent".into(),
    };
    let config = Config::defaults();
    let env = std::collections::BTreeMap::new();
    let args = session::systemd_run_args(&session::SessionSpec {
        config: &config,
        agent: &agent,
        operator: "root",
        unit: &session::unit_name(0xbe9c),
        tool: "true",
        args: &[],
        cwd: camino::Utf8Path::new("/"),
        grants: &[],
        env: &env,
        stdio: session::Stdio::Pipe,
        protected: &[],
    });
    let command: Vec<String> = args
        .iter()
        .take_while(|a| a.as_str() != session::SESSION_INIT)
        .filter(|a| !a.starts_with("--unit="))
        // Double quotes group words for hyperfine; the paths here have no spaces to quote.
        .map(|a| format!("\"{}\"", a.replace('"', "")))
        .collect();
    Ok(format!("systemd-run {} /usr/bin/true", command.join(" ")))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}
