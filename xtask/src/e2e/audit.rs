//! The audit-trail checks in the booted test host: a session's blocked TCP, UDP and DNS attempts
//! are recorded with the session's identity, a burst is folded and still refused at once, the
//! host table's refusals are recorded too (in a container, without the kernel log), and a
//! restart of the listener keeps running sessions.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::checks::{check, require, AGENT, OPERATOR};
use super::container::Container;
use super::net::INET_V4;
use super::sessions::{launch, launch_background, ATTACKS, PROJECT};
use super::Lab;

const LISTENER: &str = "pipelock-containment-audit.service";

/// `blocked --json ARGS`, asked again until `done` holds for the records or 8 s passed.
fn records_until(c: &Container, args: &str, done: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let out = c.must(&format!("pipelock-containment blocked --json {args}"))?;
        let value: Value = serde_json::from_str(&out).context("blocked --json")?;
        let records = value["records"].as_array().cloned().unwrap_or_default();
        if done(&records) || Instant::now() > deadline {
            return Ok(records);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The `unit` line of attempts.py, and its other lines by their first word.
fn attempt_lines(output: &str) -> Result<(String, Vec<(String, String)>)> {
    let mut unit = None;
    let mut lines = Vec::new();
    for line in output.lines() {
        let Some((what, rest)) = line.split_once(' ') else {
            continue;
        };
        if what == "unit" {
            unit = Some(rest.to_string());
        } else {
            lines.push((what.to_string(), rest.to_string()));
        }
    }
    match unit {
        Some(unit) if unit.starts_with("pipelock-agent-") => Ok((unit, lines)),
        _ => bail!("attempts.py did not run in a session: {output:?}"),
    }
}

fn line<'a>(lines: &'a [(String, String)], what: &str) -> &'a str {
    lines
        .iter()
        .find(|(w, _)| w == what)
        .map_or("", |(_, rest)| rest.as_str())
}

fn is(record: &Value, protocol: &str, port: u16) -> bool {
    record["protocol"] == protocol && record["destination"] == INET_V4 && record["port"] == port
}

/// A name no resolver has seen: the query is what gets recorded.
fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("plc-{tag}-{:x}{nanos:x}.example", std::process::id())
}

pub fn phase(lab: &mut Lab) -> Result<()> {
    require(lab, "audit/listener-runs", |c| {
        c.must(&format!(
            "systemctl is-active {LISTENER} pipelock-containment-audit.socket"
        ))
        .map(drop)
    })?;
    check(lab, "audit/session-tcp-udp-dns-recorded", |c| {
        let name = unique_name("dns");
        let script = format!("python3 {ATTACKS}/attempts.py {INET_V4} {name}");
        // Control: the same attempts where nothing stops them (root, outside a session) go out.
        let control = c.must(&format!("{script} | grep -v '^unit'"))?;
        if !control.contains("udp open") || !control.contains("dns open") {
            bail!("control failed: root's attempts did not go out: {control:?}");
        }
        let o = launch(c, &format!("cc-launch {script}"))?;
        let (unit, lines) = attempt_lines(&o.stdout)?;
        for what in ["tcp", "udp", "dns"] {
            if !line(&lines, what).starts_with("blocked") {
                bail!(
                    "CONTAINMENT BROKEN: {what} from a session was not refused: {:?}",
                    o.both()
                );
            }
        }
        // The session has ended: its records outlive it.
        let records = records_until(c, &format!("--session {unit}"), |r| {
            r.iter().any(|r| is(r, "tcp", 4471))
                && r.iter().any(|r| is(r, "udp", 9))
                && r.iter().any(|r| r["name"] == name.as_str())
        })?;
        let tcp = records.iter().find(|r| is(r, "tcp", 4471));
        let udp = records.iter().find(|r| is(r, "udp", 9));
        let dns = records.iter().find(|r| r["name"] == name.as_str());
        let (Some(tcp), Some(_), Some(dns)) = (tcp, udp, dns) else {
            bail!("blocked --session {unit} lacks the TCP, UDP or DNS attempt (name {name}): {records:#?}");
        };
        for r in &records {
            if r["operator"] != OPERATOR || r["tool"] != "python3" || r["cwd"] != PROJECT {
                bail!("a record lacks the session's identity: {r}");
            }
        }
        let explained = c.must(&format!(
            "pipelock-containment blocked --explain {}",
            tcp["id"].as_str().unwrap_or("")
        ))?;
        if !explained.contains("must use the proxy") {
            bail!("--explain of a direct TCP attempt: {explained:?}");
        }
        let explained = c.must(&format!(
            "pipelock-containment blocked --explain {}",
            dns["id"].as_str().unwrap_or("")
        ))?;
        if !explained.contains(&name) {
            bail!("--explain of the DNS query does not name it: {explained:?}");
        }
        Ok(())
    });
    check(lab, "audit/burst-folded-and-refused-at-once", |c| {
        const BURST: u64 = 10_000;
        let o = launch(
            c,
            &format!(
                "cc-launch python3 {ATTACKS}/attempts.py {INET_V4} {} {BURST}",
                unique_name("burst")
            ),
        )?;
        let (unit, lines) = attempt_lines(&o.stdout)?;
        let burst: Vec<&str> = line(&lines, "burst").split(' ').collect();
        let (refused, slowest, total) = match burst[..] {
            [r, s, t] => (r.parse::<u64>()?, s.parse::<f64>()?, t),
            _ => bail!("the burst did not run: {:?}", o.both()),
        };
        if refused != BURST {
            bail!(
                "CONTAINMENT BROKEN: {} of {BURST} burst connects were not refused",
                BURST - refused
            );
        }
        if slowest > 0.5 {
            bail!("a refused connect took {slowest} s: the burst must still fail fast");
        }
        let folded = |r: &[Value]| -> (u64, usize) {
            let mine: Vec<&Value> = r
                .iter()
                .filter(|r| is(r, "tcp", 4472) || r["kind"] == "lost")
                .collect();
            (
                mine.iter().filter_map(|r| r["count"].as_u64()).sum(),
                mine.len(),
            )
        };
        let records = records_until(c, &format!("--session {unit}"), |r| folded(r).0 >= BURST)?;
        let (accounted, count) = folded(&records);
        if accounted != BURST {
            bail!("{accounted} of {BURST} burst attempts accounted for: {records:#?}");
        }
        if count > 12 {
            bail!("{count} records for one burst: not folded");
        }
        println!("          {BURST} attempts in {total} s (slowest {slowest} s), {count} records");
        Ok(())
    });
    check(lab, "audit/host-table-recorded-in-a-container", |c| {
        // An agent process outside any session: the host table refuses it, and its record is in
        // this host's journal (the kernel log would be the outer host's). `--follow` sees it come.
        c.must(
            "nohup timeout 4 pipelock-containment blocked --follow --json > /root/follow.log 2>&1 < /dev/null & sleep 0.5",
        )?;
        let o = c.sh(&format!(
            "runuser -u {AGENT} -- curl -sS --noproxy '*' -m 3 http://{INET_V4}:4473/"
        ))?;
        if o.ok() {
            bail!("CONTAINMENT BROKEN: the agent reached {INET_V4}:4473 directly");
        }
        let uid: u64 = c.must(&format!("id -u {AGENT}"))?.trim().parse()?;
        let records = records_until(c, "", |r| {
            r.iter()
                .any(|r| is(r, "tcp", 4473) && r["origin"] == "host")
        })?;
        let found = records
            .iter()
            .any(|r| is(r, "tcp", 4473) && r["origin"] == "host" && r["uid"] == uid);
        if !found {
            bail!("no host-table record of TCP {INET_V4}:4473 by uid {uid}: {records:#?}");
        }
        let followed = c.must(
            "for i in $(seq 60); do pgrep -f 'blocked [-]-follow' > /dev/null || break; sleep 0.1; done; cat /root/follow.log",
        )?;
        let seen = followed
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|r| is(&r, "tcp", 4473)));
        if !seen {
            bail!("blocked --follow did not print the new record: {followed:?}");
        }
        Ok(())
    });
    check(lab, "audit/listener-restart-keeps-sessions", |c| {
        launch_background(
            c,
            &format!(
                "sh -c \"while :; do python3 {ATTACKS}/attempts.py {INET_V4} restart.example > /dev/null; sleep 0.3; done\""
            ),
            "/home/alice/restart.log",
        )?;
        let unit = c.must(
            "systemctl list-units --plain --no-legend 'pipelock-agent-*' | cut -d' ' -f1 | head -1",
        )?;
        let unit = unit.trim();
        let stored = c.must(&format!(
            "systemctl show -p NFileDescriptorStore --value {LISTENER}"
        ))?;
        c.must(&format!("systemctl restart {LISTENER}"))?;
        let since = c.must("date +%s")?;
        let records = records_until(
            c,
            &format!("--session {unit} --since @{}", since.trim()),
            |r| !r.is_empty(),
        )?;
        c.must("pipelock-containment sessions stop --all")?;
        let after = c.must(&format!(
            "for i in $(seq 30); do n=$(systemctl show -p NFileDescriptorStore --value {LISTENER}); [ \"$n\" = 0 ] && break; sleep 0.1; done; echo $n"
        ))?;
        if stored.trim().parse::<u32>().unwrap_or(0) < 2 {
            bail!("the listener's descriptor store held {stored:?} descriptors for a running session, not 2");
        }
        if records.is_empty() || records.iter().any(|r| r["operator"] != OPERATOR) {
            bail!("after the restart the session's attempts are not recorded with its identity: {records:#?}");
        }
        if after.trim() != "0" {
            bail!("the ended session's descriptors stay in the store: {after:?}");
        }
        Ok(())
    });
    check(lab, "audit/metrics-by-operator-tool-proto", |c| {
        let text = c.must("pipelock-containment metrics")?;
        for want in [
            format!("pipelock_containment_blocked_total{{operator=\"{OPERATOR}\",tool=\"python3\",proto=\"dns\"}}"),
            format!("pipelock_containment_blocked_total{{operator=\"{OPERATOR}\",tool=\"python3\",proto=\"tcp\"}}"),
            "pipelock_containment_audit_up 1".to_string(),
            "pipelock_containment_sessions 0".to_string(),
        ] {
            if !text.contains(&want) {
                bail!("the metrics lack {want}:\n{text}");
            }
        }
        Ok(())
    });
    Ok(())
}
