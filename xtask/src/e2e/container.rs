//! The booted test host: `systemd-nspawn --boot` of the rootfs inside the test host namespace,
//! commands run in it with nsenter, and a clean poweroff (a Drop guard) that ends only what the
//! harness started.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::proc::{guard, kill_and_reap, wait_pid, Guard};

/// The environment every command inside gets (nothing leaks from the harness's own).
const ENV: &[&str] = &[
    "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "DEBIAN_FRONTEND=noninteractive",
    "TERM=dumb",
];

pub struct Container {
    pub leader: i32,
    logs: Utf8PathBuf,
    boot: u32,
    guard: Option<Guard>,
}

/// The result of one command inside.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn poweroff(nspawn: i32, leader: i32) {
    let _ = Command::new("nsenter")
        .args([
            "-t",
            &leader.to_string(),
            "-a",
            "--",
            "systemctl",
            "poweroff",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if wait_pid(nspawn, Duration::from_secs(60)).is_none() {
        eprintln!("    the test host did not power off in 60 s: stopping systemd-nspawn");
        kill_and_reap(nspawn, nix::sys::signal::Signal::SIGTERM);
    }
}

impl Container {
    /// Boots `rootfs` in the network namespace at `netns_path`; waits until systemd reports
    /// `running` or `degraded`. `boot` numbers the console log file in `logs`.
    pub fn boot(rootfs: &Utf8Path, netns_path: &str, logs: &Utf8Path, boot: u32) -> Result<Self> {
        let console = logs.join(format!("boot{boot}-console.log"));
        let child = super::proc::with_signals_unblocked(&mut Command::new("systemd-nspawn"))
            .args(["--quiet", "--boot", "--keep-unit", "--register=no"])
            .args(["--console=read-only", "-D", rootfs.as_str()])
            // A real host's services may change the firewall; nspawn grants CAP_NET_ADMIN only
            // with --private-network, which --network-namespace-path does not imply.
            .arg("--capability=CAP_NET_ADMIN")
            .arg(format!("--network-namespace-path={netns_path}"))
            .arg(format!("--machine={}", super::rootfs::HOSTNAME))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&console)?)
            .stderr(fs::File::create(
                logs.join(format!("boot{boot}-nspawn.log")),
            )?)
            .spawn()
            .context("cannot start systemd-nspawn")?;
        let nspawn_pid = child.id() as i32;
        // Until we know the leader, the guard can only stop nspawn itself.
        let early = guard("systemd-nspawn (booting)", move || {
            kill_and_reap(nspawn_pid, nix::sys::signal::Signal::SIGTERM)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        // nspawn forks helpers on the way: the leader is the child that has become systemd.
        let leader = loop {
            let init = children(nspawn_pid).into_iter().find(|p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "systemd")
            });
            if let Some(p) = init {
                break p;
            }
            if Instant::now() > deadline || wait_pid(nspawn_pid, Duration::ZERO).is_some() {
                bail!("systemd-nspawn did not start the test host: see {console}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // From here a full poweroff replaces the early guard's kill.
        let late = guard("test host (poweroff)", move || poweroff(nspawn_pid, leader));
        early.disarm();
        let c = Container {
            leader,
            logs: logs.to_owned(),
            boot,
            guard: Some(late),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let o = c.sh_quiet("systemctl is-system-running", 10)?;
            let state = format!("{} {}", o.stdout.trim(), o.stderr.trim());
            let state = state.trim().to_owned();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    let f = c.sh_quiet("systemctl --failed --no-legend", 10)?;
                    println!("    test host is degraded; failed units:\n{}", f.stdout);
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("the test host did not finish booting in 120 s (state {state:?})");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(c)
    }

    fn nsenter(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.leader.to_string(),
            "-a",
            "--",
            "/usr/bin/env",
            "-i",
        ])
        .args(ENV)
        .args(["/bin/sh", "-c", script]);
        super::proc::with_signals_unblocked(&mut c);
        c
    }

    fn sh_quiet(&self, script: &str, timeout_s: u64) -> Result<Out> {
        let mut cmd = self.nsenter(script);
        let tmp = self.logs.join(format!(".cmd-out-{}", self.boot));
        let tmp_err = self.logs.join(format!(".cmd-err-{}", self.boot));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&tmp)?)
            .stderr(fs::File::create(&tmp_err)?)
            .spawn()
            .context("cannot run nsenter")?;
        let pid = child.id() as i32;
        let status = match wait_pid(pid, Duration::from_secs(timeout_s)) {
            Some(s) => s,
            None => {
                kill_and_reap(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.try_wait();
                bail!("timed out after {timeout_s} s inside the test host: {script}");
            }
        };
        let code = status.code().unwrap_or(128 + 9);
        let out = Out {
            code,
            stdout: fs::read_to_string(&tmp).unwrap_or_default(),
            stderr: fs::read_to_string(&tmp_err).unwrap_or_default(),
        };
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&tmp_err);
        Ok(out)
    }

    /// Runs `script` with /bin/sh inside as root; logs it and its output to commands.log.
    pub fn sh(&self, script: &str) -> Result<Out> {
        self.sh_timeout(script, 300)
    }

    pub fn sh_timeout(&self, script: &str, timeout_s: u64) -> Result<Out> {
        let t = Instant::now();
        let o = self.sh_quiet(script, timeout_s)?;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join("commands.log"))?;
        writeln!(
            log,
            "### boot{} $ {script}\n### exit {} in {:.1} s\n{}{}",
            self.boot,
            o.code,
            t.elapsed().as_secs_f64(),
            o.stdout,
            o.stderr
        )?;
        Ok(o)
    }

    /// Like `sh`, but fails unless it exits 0.
    pub fn must(&self, script: &str) -> Result<String> {
        let o = self.sh(script)?;
        if !o.ok() {
            bail!(
                "inside the test host, `{script}` exited {}:\n{}",
                o.code,
                o.both()
            );
        }
        Ok(o.stdout)
    }

    /// Saves the journal of this boot (and the ruleset) into the logs directory.
    pub fn save_journal(&self) {
        if let Ok(o) = self.sh_quiet("journalctl -b --no-pager -o short-monotonic", 60) {
            let _ = fs::write(
                self.logs.join(format!("boot{}-journal.log", self.boot)),
                o.both(),
            );
        }
        if let Ok(o) = self.sh_quiet("nft list ruleset; systemctl --failed --no-pager", 30) {
            let _ = fs::write(
                self.logs.join(format!("boot{}-state.log", self.boot)),
                o.both(),
            );
        }
    }

    /// Saves the journal, powers off and waits for systemd-nspawn to exit.
    pub fn poweroff(mut self) {
        self.save_journal();
        drop(self.guard.take());
    }
}
