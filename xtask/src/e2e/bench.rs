//! `cargo xtask bench-launch`: in a booted test host with the package installed, `cc-launch true`
//! against its floors (a bare `sudo -n -u cc-agent true` and a bare transient unit), and the
//! proxy bridge against direct loopback (a 1 GiB transfer, 1,000 short connections, RSS).
//! Everything runs side by side in one run; nothing on the machine running it changes.

use anyhow::{bail, Context, Result};

use super::checks::{AGENT, OPERATOR};
use super::{scenario, Lab};

/// Targets from the contained-launch issue.
const TARGET_FLOOR_RATIO: f64 = 1.3;
const TARGET_LAUNCH_MS: f64 = 150.0;
const TARGET_THROUGHPUT_LOSS: f64 = 0.05;
const TARGET_ADDED_MS_PER_CONNECTION: f64 = 1.0;
const TARGET_BRIDGE_RSS_KIB: u64 = 10 * 1024;
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
        unit: "unused",
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
