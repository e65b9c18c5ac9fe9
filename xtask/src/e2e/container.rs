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

/// The cgroup v1 pids hierarchy of a machine without the unified one.
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

/// On a cgroup v1 machine nspawn mounts the pids hierarchy read-only, so systemd in the test
/// host could not enforce a session's TasksMax. The test host gets a pids cgroup of its own
/// (nspawn starts in it, so the container's cgroup namespace is rooted there), which it may
/// write after a remount; the directory and what the test host made below it go after it ends.
/// None on a unified (cgroup v2) machine, or without a writable v1 pids hierarchy.
fn create_pids_cgroup(boot: u32) -> Result<Option<Utf8PathBuf>> {
    let v1 = !Utf8Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && nix::unistd::access(
            format!("{V1_PIDS}/cgroup.procs").as_str(),
            nix::unistd::AccessFlags::W_OK,
        )
        .is_ok();
    if !v1 {
        return Ok(None);
    }
    // Below the harness's own pids cgroup, so whatever limit it runs under still holds.
    let own = fs::read_to_string("/proc/self/cgroup")?
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, path)| path.to_owned()))
        .unwrap_or_else(|| "/".into());
    let dir = Utf8PathBuf::from(format!(
        "{V1_PIDS}{}/plc-e2e-pids{boot}-{}",
        own.trim_end_matches('/'),
        std::process::id()
    ));
    fs::create_dir(&dir).with_context(|| format!("cannot create {dir}"))?;
    Ok(Some(dir))
}

/// Removes a cgroup and every cgroup below it, deepest first (all empty of processes once the
/// test host is gone).
fn remove_cgroup_tree(dir: &Utf8Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Ok(sub) = Utf8PathBuf::from_path_buf(entry.path()) {
                    remove_cgroup_tree(&sub);
                }
            }
        }
    }
    if let Err(err) = fs::remove_dir(dir) {
        eprintln!("    cannot remove the test host's pids cgroup {dir}: {err}");
    }
}

impl Container {
    /// Boots `rootfs` in the network namespace at `netns_path`; waits until systemd reports
    /// `running` or `degraded`. `boot` numbers the console log file in `logs`.
    pub fn boot(rootfs: &Utf8Path, netns_path: &str, logs: &Utf8Path, boot: u32) -> Result<Self> {
        let console = logs.join(format!("boot{boot}-console.log"));
        let pids_dir = create_pids_cgroup(boot)?;
        let mut nspawn = Command::new("systemd-nspawn");
        if let Some(dir) = &pids_dir {
            use std::os::unix::process::CommandExt;
            let procs = std::ffi::CString::new(format!("{dir}/cgroup.procs"))?;
            // SAFETY: open, write and close are async-signal-safe; "0" is the writing process.
            unsafe {
                nspawn.pre_exec(move || {
                    let fd = nix::libc::open(procs.as_ptr(), nix::libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
                    nix::libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = super::proc::with_signals_unblocked(&mut nspawn)
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
        let own_pids = pids_dir.is_some();
        let early_pids = pids_dir.clone();
        let early = guard("systemd-nspawn (booting)", move || {
            kill_and_reap(nspawn_pid, nix::sys::signal::Signal::SIGTERM);
            if let Some(dir) = &early_pids {
                remove_cgroup_tree(dir);
            }
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
        let late = guard("test host (poweroff)", move || {
            poweroff(nspawn_pid, leader);
            if let Some(dir) = &pids_dir {
                remove_cgroup_tree(dir);
            }
        });
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
        if own_pids {
            // systemd takes the controller on when it re-executes: units from then on (every
            // session) get their pids cgroup and TasksMax.
            c.must(&format!(
                "mount -o remount,bind,rw {V1_PIDS} && systemctl daemon-reexec"
            ))?;
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
