//! The agent account outside the launcher, in the booted test host: ssh, cron and D-Bus name
//! resolution refuse it, each beside a control (the operator) that shows the way in works.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use camino::Utf8Path;

use super::checks::{check, require, AGENT, OPERATOR};
use super::container::Container;
use super::net::{HOST_V4, INET_V4};
use super::Lab;

/// The key pair the login attempts use (made in the test host, used from the internet host).
const KEY: &str = "/root/e2e-ssh-key";

pub fn phase(lab: &mut Lab) -> Result<()> {
    require(lab, "account/ssh-key-planted", |c| {
        c.must(&format!(
            "rm -f {KEY} {KEY}.pub && ssh-keygen -q -t ed25519 -N '' -f {KEY} && \
             runuser -u {AGENT} -- sh -c 'mkdir -p ~/.ssh && cat > ~/.ssh/authorized_keys' < {KEY}.pub && \
             install -d -o {OPERATOR} -m 700 /home/{OPERATOR}/.ssh && \
             install -o {OPERATOR} -m 600 {KEY}.pub /home/{OPERATOR}/.ssh/authorized_keys && \
             systemctl is-active ssh.service"
        ))
        .map(drop)
    })?;
    let key = lab.rootfs.join(KEY.trim_start_matches('/'));
    let inet_ns = lab.inet_ns().to_owned();
    check(lab, "account/ssh-login-refused", |c| {
        let login = |user: &str| -> Result<(bool, String)> {
            let out = Command::new("ip")
                .args(["netns", "exec", &inet_ns, "ssh", "-v", "-i", key.as_str()])
                .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
                .args([
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "ConnectTimeout=5",
                ])
                .arg(format!("{user}@{HOST_V4}"))
                .arg("echo logged-in")
                .output()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok((out.status.success(), text))
        };
        let (ok, text) = login(OPERATOR)?;
        if !ok || !text.contains("Authenticated to") || !text.contains("logged-in") {
            bail!("control: the key does not log {OPERATOR} in: {text}");
        }
        let (ok, text) = login(AGENT)?;
        if ok || text.contains("Authenticated to") || text.contains("logged-in") {
            bail!("CONTAINMENT BROKEN: the agent's planted key logged in over ssh: {text}");
        }
        let log = c.must("journalctl -q -u ssh.service --no-pager | tail -n 50")?;
        if !log.contains(&format!(
            "User {AGENT} from {INET_V4} not allowed because listed in DenyUsers"
        )) {
            bail!("sshd refused the agent, but not by its DenyUsers drop-in:\n{log}");
        }
        Ok(())
    });
    check(lab, "account/crontab-refused", |c| {
        let o = c.sh(&format!("runuser -u {AGENT} -- crontab -l"))?;
        if o.ok() || !o.both().contains("not allowed") {
            bail!(
                "crontab as the agent was not refused by cron.deny: {:?}",
                o.both()
            );
        }
        Ok(())
    });
    let internet_log = lab.internet_log();
    check(lab, "account/cron-runs-no-agent-job", |c| {
        cron_jobs_run(c, &internet_log, "installed", true)
    });
    check(lab, "account/dbus-resolve-refused", |c| {
        // Control: resolved answers the operator (it synthesizes localhost; nothing leaves).
        let o = c.sh(&format!(
            "runuser -u {OPERATOR} -- resolvectl query localhost"
        ))?;
        if !o.ok() || !o.stdout.contains("127.0.0.1") {
            bail!(
                "control: resolved does not answer {OPERATOR}: {:?}",
                o.both()
            );
        }
        let o = c.sh(&format!("runuser -u {AGENT} -- resolvectl query localhost"))?;
        if o.ok() || o.stdout.contains("127.0.0.1") {
            bail!(
                "CONTAINMENT BROKEN: the agent resolved a name over D-Bus: {:?}",
                o.both()
            );
        }
        if !o.both().contains("ccess denied") {
            bail!(
                "the agent's lookup failed, but not by the bus policy: {:?}",
                o.both()
            );
        }
        Ok(())
    });
    Ok(())
}

/// Plant an `@reboot` job (it curls the internet host) for the agent and for the operator,
/// replay cron's boot, and wait for the operator's request. `agent_crontab`: plant the agent's
/// job now; otherwise it was planted before and must be gone.
pub fn cron_jobs_run(
    c: &Container,
    internet_log: &Utf8Path,
    tag: &str,
    agent_crontab: bool,
) -> Result<()> {
    let job = |who: &str| {
        format!("@reboot curl -s -m 5 --noproxy '*' -o /dev/null http://{INET_V4}/cron-{who}-{tag}")
    };
    if agent_crontab {
        plant_agent_job(c, tag)?;
    } else if c
        .sh(&format!("test -e /var/spool/cron/crontabs/{AGENT}"))?
        .ok()
    {
        bail!("the agent's crontab is still there");
    }
    c.must(&format!(
        "echo \"{}\" | crontab -u {OPERATOR} - && rm -f /run/crond.reboot && systemctl restart cron.service",
        job("operator")
    ))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(internet_log)
        .unwrap_or_default()
        .contains(&format!("/cron-operator-{tag}"))
    {
        if Instant::now() > deadline {
            bail!("control: the operator's cron job did not reach the internet host in 20 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent's job would have run at the same moment; give it a little longer anyway.
    std::thread::sleep(Duration::from_secs(2));
    let internet = std::fs::read_to_string(internet_log).unwrap_or_default();
    c.must(&format!("crontab -u {OPERATOR} -r"))?;
    if internet.contains(&format!("/cron-agent-{tag}")) {
        bail!("CONTAINMENT BROKEN: the agent's cron job reached the internet host");
    }
    Ok(())
}

/// The agent's `@reboot` job, written straight into cron's spool as a crontab from before the
/// package would be (cron.deny stops `crontab` for the agent, even from root).
pub fn plant_agent_job(c: &Container, tag: &str) -> Result<()> {
    let crontab = format!("/var/spool/cron/crontabs/{AGENT}");
    c.must(&format!(
        "echo \"@reboot curl -s -m 5 --noproxy '*' -o /dev/null http://{INET_V4}/cron-agent-{tag}\" \
         > {crontab} && chown {AGENT}:crontab {crontab} && chmod 600 {crontab}"
    ))
    .map(drop)
}
