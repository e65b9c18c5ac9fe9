//! The contained-session checks in the booted test host: every launch is a transient unit with
//! its own network namespace and file-system view. Each attack has a control run where nothing
//! stops it (root, or an agent process that did not come through the launcher), so a probe that
//! cannot work reads as a broken probe, not as a pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::checks::{check, require, table_present, AGENT, CANARY_PORT, OPERATOR};
use super::container::Container;
use super::net::{HELLO_BODY, INET_NAME, INET_V4, INET_V6};
use super::Lab;

/// Where the attack scripts go in the test host.
pub const ATTACKS: &str = "/usr/share/plc-e2e";
pub const PROJECT: &str = "/home/alice/proj";
/// The dev-server port sessions publish (session.publish_ports).
const PUBLISHED: u16 = 3000;
const SCRIPTS: &[(&str, &str)] = &[
    ("escape.py", include_str!("attacks/escape.py")),
    ("relay.py", include_str!("attacks/relay.py")),
    ("forkbomb.py", include_str!("attacks/forkbomb.py")),
    ("fdcheck.py", include_str!("attacks/fdcheck.py")),
    ("protected.sh", include_str!("attacks/protected.sh")),
    ("pty_driver.py", include_str!("attacks/pty_driver.py")),
    ("tui.py", include_str!("attacks/tui.py")),
    ("tiocsti.py", include_str!("attacks/tiocsti.py")),
    ("datagrams.py", include_str!("attacks/datagrams.py")),
    ("attempts.py", include_str!("attacks/attempts.py")),
    ("flood.py", include_str!("attacks/flood.py")),
];

/// `cc-launch ...` as the operator, in the granted project, in a non-login shell.
pub fn launch(c: &Container, command: &str) -> Result<super::container::Out> {
    c.sh(&format!(
        "runuser -u {OPERATOR} -- sh -c 'cd {PROJECT} && {command}'"
    ))
}

/// `NAME open|blocked` lines of escape.py, by name.
fn attempts(output: &str) -> BTreeMap<String, bool> {
    output
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(' ')?;
            Some((name.to_owned(), rest == "open"))
        })
        .collect()
}

fn no_agent_processes(c: &Container) -> Result<()> {
    let o = c.sh(&format!(
        "for i in $(seq 50); do pgrep -u {AGENT} >/dev/null || exit 0; sleep 0.1; done; pgrep -a -u {AGENT}; exit 1"
    ))?;
    if !o.ok() {
        bail!("processes of {AGENT} still run: {}", o.stdout.trim());
    }
    Ok(())
}

/// Starts `command` as a session in the background, its output in `log` (the operator's file).
pub fn launch_background(c: &Container, command: &str, log: &str) -> Result<()> {
    c.must(&format!(
        "runuser -u {OPERATOR} -- sh -c 'cd {PROJECT} && nohup cc-launch {command} > {log} 2>&1 < /dev/null &'; \
         for i in $(seq 50); do pipelock-containment sessions | grep -q pipelock-agent- && exit 0; sleep 0.1; done; \
         echo no session started; cat {log}; exit 1"
    ))
    .map(drop)
}

/// Put the attack scripts into the test host (before the package, so the file-system listings
/// of remove and purge count them as the host's own).
pub fn install_attacks(rootfs: &camino::Utf8Path) -> Result<()> {
    let dir = rootfs.join(ATTACKS.trim_start_matches('/'));
    std::fs::create_dir_all(&dir)?;
    for (name, text) in SCRIPTS {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

pub fn phase(lab: &mut Lab) -> Result<()> {
    require(lab, "sessions/setup", |c| {
        c.must(&format!(
            "pipelock-containment tools add python3 && pipelock-containment tools add sh && \
             mkdir -p {PROJECT}/.git/hooks {PROJECT}/.vscode && \
             printf '[core]\\n\\tbare = false\\n' > {PROJECT}/.git/config && \
             for f in .gitmodules .envrc .bashrc README; do echo '# fixture' > {PROJECT}/$f; done && \
             chown -R {OPERATOR}: {PROJECT} && \
             sed -i 's/^publish_ports = .*/publish_ports = [{PUBLISHED}]/' /etc/pipelock-containment/containment.toml && \
             pipelock-containment apply && \
             pipelock-containment grant {PROJECT} --mode rw"
        ))
        .map(drop)
    })?;
    check(lab, "account/pam-logins-refused-sessions-run", |c| {
        // Control: su works for the operator; the agent account is expired, so PAM refuses it.
        c.must(&format!("su -s /bin/sh {OPERATOR} -c true"))?;
        let o = c.sh(&format!("su -s /bin/sh {AGENT} -c 'echo logged-in'"))?;
        if o.ok() || o.stdout.contains("logged-in") {
            bail!("su to the agent account worked: {:?}", o.both());
        }
        if !o.both().contains("expired") {
            bail!(
                "su to the agent failed, but not for the expiry: {:?}",
                o.both()
            );
        }
        // Sessions do not go through PAM: they still run as the agent.
        let id = launch(c, "cc-launch sh -c \"id -un\"")?;
        if id.stdout.trim() != AGENT {
            bail!("a session did not run as {AGENT}: {:?}", id.both());
        }
        Ok(())
    });
    check(lab, "sessions/cc-launch-on-default-path", |c| {
        let o = c.must(&format!(
            "runuser -u {OPERATOR} -- sh -c 'command -v cc-launch'"
        ))?;
        if o.trim() != "/usr/bin/cc-launch" {
            bail!("cc-launch in a non-login shell is {:?}", o.trim());
        }
        Ok(())
    });
    check(lab, "sessions/through-the-bridge", |c| {
        let o = launch(
            c,
            &format!("cc-launch curl -sS -m 10 http://{INET_NAME}/hello"),
        )?;
        if !o.ok() || o.stdout.trim() != HELLO_BODY {
            bail!("curl in a session exited {}: {:?}", o.code, o.both().trim());
        }
        let o = launch(
            c,
            &format!("cc-launch curl -sS -m 10 --cacert /etc/pipelock/combined-ca.pem https://{INET_NAME}/hello"),
        )?;
        if !o.ok() || o.stdout.trim() != HELLO_BODY {
            bail!(
                "HTTPS in a session exited {}: {:?}",
                o.code,
                o.both().trim()
            );
        }
        Ok(())
    });
    check(lab, "sessions/pipes-and-cwd", |c| {
        let o = launch(
            c,
            "printf \"through-the-pipe\\n\" | cc-launch sh -c \"cat; pwd\" | cat",
        )?;
        if !o.ok() || o.stdout != format!("through-the-pipe\n{PROJECT}\n") {
            bail!("a pipe through a session gave {:?}", o.both());
        }
        Ok(())
    });
    check(lab, "sessions/non-member-refused-before-start", |c| {
        c.must("id bob >/dev/null 2>&1 || useradd --create-home bob")?;
        let o = c.sh("runuser -u bob -- cc-launch curl http://192.0.2.1/; echo rc=$?")?;
        if !o.stdout.contains("rc=77") || !o.stderr.contains("not a member") {
            bail!("a non-member got {:?}", o.both().trim());
        }
        Ok(())
    });
    check(lab, "sessions/escape-attempts-fail", |c| {
        c.must(&format!(
            "nohup python3 {ATTACKS}/relay.py > /root/relay.log 2>&1 < /dev/null & \
             for i in $(seq 50); do grep -q 'relays up' /root/relay.log && exit 0; sleep 0.1; done; exit 1"
        ))?;
        let args = format!("{INET_V4} {INET_V6} {}", CANARY_PORT);
        // Controls: root reaches every target; an agent process outside the launcher reaches
        // every unix-socket channel (the host table sees only IP).
        let root = attempts(&c.must(&format!("python3 {ATTACKS}/escape.py {args}"))?);
        let outside = attempts(&c.must(&format!(
            "runuser -u {AGENT} -- python3 {ATTACKS}/escape.py {args}"
        ))?);
        let o = launch(c, &format!("cc-launch python3 {ATTACKS}/escape.py {args}"))?;
        // The relays go at once (a process outside any unit would hold up the next poweroff).
        c.must("pkill -f 'plc-e2e/[r]elay.py'; true")?;
        let inside = attempts(&o.stdout);
        if root.len() < 8 || inside.len() != root.len() {
            bail!(
                "the probe did not run everywhere: root {root:?}, session {:?}",
                o.both()
            );
        }
        let broken_probes: Vec<_> = root
            .iter()
            .filter(|(_, open)| !**open)
            .map(|(n, _)| n)
            .collect();
        if !broken_probes.is_empty() {
            bail!("broken probes (blocked even for root): {broken_probes:?}");
        }
        let unix_outside: Vec<_> = outside
            .iter()
            .filter(|(n, open)| n.starts_with("unix-") && !**open)
            .map(|(n, _)| n)
            .collect();
        if !unix_outside.is_empty() {
            bail!("controls failed: {unix_outside:?} blocked for an agent outside a session");
        }
        let open: Vec<_> = inside
            .iter()
            .filter(|(_, open)| **open)
            .map(|(n, _)| n)
            .collect();
        if !open.is_empty() {
            bail!(
                "CONTAINMENT BROKEN: from a session {open:?} got through:\n{}",
                o.stdout
            );
        }
        println!(
            "          {} channels open to root, all blocked in a session",
            root.len()
        );
        Ok(())
    });
    check(lab, "sessions/host-ruleset-flush-changes-nothing", |c| {
        let log = "/home/alice/flush.log";
        launch_background(
            c,
            &format!(
                "sh -c \"while :; do curl -s -m 2 --noproxy \\\"*\\\" -o /dev/null http://{INET_V4}/hello; echo direct rc=\\$?; \
                 curl -s -m 2 -o /dev/null http://{INET_NAME}/hello; echo proxy rc=\\$?; done\""
            ),
            log,
        )?;
        std::thread::sleep(Duration::from_secs(1));
        // The watcher would put the host table back within milliseconds; this check is about
        // sessions, which must not need it, so it is stopped (apply below starts it again).
        c.must("systemctl stop pipelock-containment-watch.service && nft -f /etc/nftables.conf")?;
        // Control: the host wall is really gone for an agent process outside the launcher.
        let control = c.sh(&format!(
            "runuser -u {AGENT} -- curl -s -m 3 --noproxy '*' http://{INET_V4}/hello"
        ))?;
        c.must("systemctl stop nftables.service")?;
        std::thread::sleep(Duration::from_secs(2));
        c.must("pipelock-containment sessions stop --all")?;
        c.must("pipelock-containment apply")?;
        table_present(c)?;
        if control.stdout.trim() != HELLO_BODY {
            bail!("control failed: after the flush an agent outside a session still could not reach the host ({:?})", control.both());
        }
        let text = c.must(&format!("cat {log}"))?;
        let direct = text.lines().filter(|l| l.starts_with("direct rc=")).count();
        let leaks = text.lines().filter(|l| *l == "direct rc=0").count();
        let proxied = text.lines().filter(|l| *l == "proxy rc=0").count();
        if leaks > 0 {
            bail!("CONTAINMENT BROKEN: {leaks} of {direct} direct requests from a session got through after the flush");
        }
        if direct < 5 || proxied < 5 {
            bail!("the loop did not run: {direct} direct, {proxied} proxied attempts:\n{text}");
        }
        println!("          {direct} direct attempts during flush and stop, all blocked; {proxied} through the bridge");
        Ok(())
    });
    check(lab, "sessions/protected-paths", |c| {
        // Control: outside a session the grant lets the agent write all of them.
        let outside = c.sh(&format!(
            "runuser -u {AGENT} -- sh -c 'cd {PROJECT} && test -w .git/config && test -w .git/hooks && test -w .gitmodules && test -w .vscode' && echo writable"
        ))?;
        let o = launch(c, &format!("cc-launch sh {ATTACKS}/protected.sh"))?;
        if outside.stdout.trim() != "writable" {
            bail!(
                "control failed: the grant does not let the agent write: {:?}",
                outside.both()
            );
        }
        if !o.stdout.contains("control written") {
            bail!(
                "the session could not write in the rw grant: {:?}",
                o.both()
            );
        }
        let written: Vec<&str> = o
            .stdout
            .lines()
            .filter(|l| l.ends_with(" written") || l.ends_with(" created"))
            .filter(|l| !l.starts_with("control"))
            .collect();
        if !written.is_empty() {
            bail!("CONTAINMENT BROKEN: a session changed protected paths: {written:?}");
        }
        let hooks = c.sh(&format!("ls -A {PROJECT}/.git/hooks"))?;
        if !hooks.stdout.trim().is_empty() {
            bail!("a hook appeared: {}", hooks.stdout.trim());
        }
        Ok(())
    });
    check(lab, "sessions/fork-bomb-held-by-tasks-max", |c| {
        // The unit carries the limit in any case.
        launch_background(c, "sh -c \"sleep 300\"", "/home/alice/tasks.log")?;
        let max = c.must(
            "for u in $(systemctl list-units --plain --no-legend 'pipelock-agent-*' | cut -d' ' -f1); do \
               systemctl show -p TasksMax --value $u; done",
        )?;
        c.must("pipelock-containment sessions stop --all")?;
        if max.trim() != "512" {
            bail!("the session unit has TasksMax {:?}, not 512", max.trim());
        }
        // Enforcement needs the pids controller in the test host: cgroup v2 with pids, or a
        // writable v1 pids hierarchy. On a cgroup v1 build machine nspawn mounts it read-only.
        let enforceable = c
            .sh("grep -qw pids /sys/fs/cgroup/cgroup.controllers 2>/dev/null || test -w /sys/fs/cgroup/pids/cgroup.procs")?
            .ok();
        if !enforceable {
            println!(
                "          NOT ENFORCEABLE IN THIS TEST HOST: the machine runs cgroup v1 and the \
                 container's pids hierarchy is read-only; checked the unit's TasksMax=512 only"
            );
            return Ok(());
        }
        let outside = c.must(&format!(
            "runuser -u {AGENT} -- python3 {ATTACKS}/forkbomb.py 700"
        ))?;
        let t = Instant::now();
        let o = launch(c, &format!("cc-launch python3 {ATTACKS}/forkbomb.py 700"))?;
        let secs = t.elapsed().as_secs_f64();
        let count = |text: &str| -> Option<u32> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("forked="))
                .and_then(|n| n.parse().ok())
        };
        if count(&outside) != Some(700) {
            bail!("control failed: outside a session the agent forked {outside:?}");
        }
        match count(&o.stdout) {
            Some(n) if n < 512 && n > 10 => {
                println!("          a session forked {n} children (TasksMax 512), outside 700; {secs:.1} s");
                Ok(())
            }
            other => bail!(
                "CONTAINMENT BROKEN: a session forked {other:?}: {:?}",
                o.both()
            ),
        }
    });
    check(lab, "sessions/fork-loop-ended-by-sessions-stop", |c| {
        launch_background(
            c,
            "sh -c \"while :; do sh -c \\\"sleep 300 &\\\"; done\"",
            "/home/alice/forkloop.log",
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let running: u32 = c
            .must(&format!("pgrep -c -u {AGENT} sleep || true"))?
            .trim()
            .parse()?;
        if running < 5 {
            bail!("control failed: the fork loop made only {running} processes");
        }
        c.must("pipelock-containment sessions stop --all")?;
        no_agent_processes(c)?;
        println!("          {running}+ orphans of a fork loop, none left after `sessions stop`");
        Ok(())
    });
    check(lab, "sessions/inherited-socket-not-passed", |c| {
        let script = |launcher: &str| {
            format!(
                "runuser -u {OPERATOR} -- bash -c 'cd {PROJECT} && exec 3<>/dev/tcp/{INET_V4}/80 && {launcher} python3 {ATTACKS}/fdcheck.py <&3 3<&-'"
            )
        };
        let control = c.must(&script(""))?;
        let o = c.sh(&script("cc-launch"))?;
        if !control.contains("fd0=socket") {
            bail!("control failed: the operator's stdin was not a socket: {control:?}");
        }
        if !o.ok() || !o.stdout.contains("fd0=fifo") {
            bail!("a session's stdin was {:?}", o.both());
        }
        Ok(())
    });
    check(lab, "sessions/pty-resize-ctrl-c", |c| {
        let o = c.sh(&format!(
            "runuser -u {OPERATOR} -- sh -c 'cd {PROJECT} && python3 {ATTACKS}/pty_driver.py cc-launch python3 {ATTACKS}/tui.py'"
        ))?;
        for want in ["tty=yes", "size=24x80", "resized=40x120", "exit=130"] {
            if !o.stdout.contains(want) {
                bail!("{want} missing: {:?}", o.both());
            }
        }
        Ok(())
    });
    check(lab, "sessions/tiocsti-reaches-only-the-session-pty", |c| {
        let under_pty = |launcher: &str| {
            c.sh(&format!(
                "runuser -u {OPERATOR} -- sh -c 'cd {PROJECT} && python3 {ATTACKS}/pty_driver.py --plain \
                 bash -c \"{launcher} python3 {ATTACKS}/tiocsti.py; read -t 2 line; echo operator-read=\\$line\"'"
            ))
        };
        // Control: a program on the operator's own terminal types into the operator's shell.
        let control = under_pty("")?;
        let o = under_pty("cc-launch")?;
        if control.stdout.contains("tiocsti=refused") {
            println!("          TIOCSTI is refused by this kernel for everyone (dev.tty.legacy_tiocsti=0)");
        } else if !control.stdout.contains("operator-read=INJECTED") {
            bail!(
                "control failed: TIOCSTI did not reach the operator's shell: {:?}",
                control.both()
            );
        }
        if !o.stdout.contains("tiocsti=") {
            bail!("the probe did not run in a session: {:?}", o.both());
        }
        if o.stdout.contains("operator-read=INJECTED") {
            bail!(
                "CONTAINMENT BROKEN: a session typed into the operator's shell: {:?}",
                o.stdout
            );
        }
        Ok(())
    });
    check(lab, "sessions/dev-server-published", |c| {
        let url = format!("http://127.0.0.1:{PUBLISHED}/README");
        let fetch = format!("runuser -u {OPERATOR} -- curl -sS -m 5 --noproxy '*' {url}");
        // Control: nothing answers before the session.
        if c.sh(&fetch)?.ok() {
            bail!("control failed: something already serves {url}");
        }
        launch_background(
            c,
            &format!("python3 -m http.server {PUBLISHED} --bind 127.0.0.1"),
            "/home/alice/devserver.log",
        )?;
        let mut body = String::new();
        for _ in 0..50 {
            let o = c.sh(&fetch)?;
            if o.ok() {
                body = o.stdout;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let listed = c.must("pipelock-containment sessions --json")?;
        c.must("pipelock-containment sessions stop --all")?;
        if body.trim() != "# fixture" {
            let log = c.sh("cat /home/alice/devserver.log")?.stdout;
            bail!("the operator did not reach the session's server at {url}: {body:?}; the session said: {log:?}");
        }
        let report: serde_json::Value = serde_json::from_str(&listed)?;
        let published = report["sessions"][0]["published"].clone();
        if published != serde_json::json!([PUBLISHED]) {
            bail!("sessions lists published {published}, expected [{PUBLISHED}]");
        }
        if c.sh(&fetch)?.ok() {
            bail!("{url} still answers after the session ended");
        }
        Ok(())
    });
    check(lab, "sessions/listed-and-ended-by-revoke", |c| {
        launch_background(c, "sh -c \"sleep 300\"", "/home/alice/sleep.log")?;
        let listed = c.must("pipelock-containment sessions --json")?;
        let report: serde_json::Value = serde_json::from_str(&listed)?;
        let found = report["sessions"].as_array().is_some_and(|all| {
            all.iter().any(|s| {
                s["operator"] == OPERATOR
                    && s["tool"] == "sh"
                    && s["cwd"] == PROJECT
                    && s["grants"]
                        .as_array()
                        .is_some_and(|g| g.iter().any(|p| p == PROJECT))
                    && s["tasks"].as_u64().is_some_and(|n| n >= 1)
            })
        });
        if !found {
            bail!("the session is not listed as expected: {listed}");
        }
        let o = c.must(&format!("pipelock-containment revoke {PROJECT} 2>&1"))?;
        if !o.contains("ended session") {
            bail!("revoke did not say it ended the session: {o:?}");
        }
        no_agent_processes(c)?;
        c.must(&format!("pipelock-containment grant {PROJECT} --mode rw"))
            .map(drop)
    });
    Ok(())
}
