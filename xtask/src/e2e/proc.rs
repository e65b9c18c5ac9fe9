//! Subprocesses and cleanup for the harness: checked runs with clear errors, and a cleanup
//! registry that Drop guards and the signal handler share, so everything the harness started is
//! ended exactly once, even on failure or Ctrl-C.

use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs `cmd`, fails with the command line and its stderr unless it exits 0; returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with stdout and stderr going to ours (long steps whose progress is useful).
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

/// The command line, for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Waits for the child `pid` (ours) to exit, polling; `None` on timeout.
pub fn wait_pid(pid: i32, timeout: Duration) -> Option<ExitStatus> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(ExitStatus::from_raw(code << 8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(ExitStatus::from_raw(sig as i32)),
            Ok(_) => {}
            // Already reaped (or not our child): it is gone.
            Err(_) => return Some(ExitStatus::from_raw(0)),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `sig` to our child `pid`, then reaps it.
pub fn kill_and_reap(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    if wait_pid(pid, Duration::from_secs(10)).is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = wait_pid(pid, Duration::from_secs(5));
    }
}

type Action = Box<dyn FnOnce() + Send>;

struct Entry {
    id: u64,
    name: String,
    action: Action,
}

static REGISTRY: Mutex<(u64, Vec<Entry>)> = Mutex::new((0, Vec::new()));

/// Runs its cleanup action when dropped, unless the signal handler ran it first.
#[must_use = "the cleanup runs when the guard is dropped"]
pub struct Guard(u64);

/// Registers `action` (named for the log); it runs when the guard drops or on a signal.
pub fn guard(name: &str, action: impl FnOnce() + Send + 'static) -> Guard {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.0 += 1;
    let id = reg.0;
    reg.1.push(Entry {
        id,
        name: name.to_owned(),
        action: Box::new(action),
    });
    Guard(id)
}

fn take(id: Option<u64>) -> Option<Entry> {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let pos = match id {
        Some(id) => reg.1.iter().position(|e| e.id == id)?,
        None => reg.1.len().checked_sub(1)?,
    };
    Some(reg.1.remove(pos))
}

fn run_entry(e: Entry) {
    eprintln!("    cleanup: {}", e.name);
    (e.action)();
}

impl Guard {
    /// Removes the cleanup without running it (another guard took over its job).
    pub fn disarm(self) {
        let _ = take(Some(self.0));
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(e) = take(Some(self.0)) {
            run_entry(e);
        }
    }
}

/// Runs every registered cleanup, newest first.
pub fn run_all() {
    while let Some(e) = take(None) {
        run_entry(e);
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this process and handles them on a thread: run every
/// cleanup, then exit 130. Call before starting other threads. Children get a clean signal
/// mask (the standard library resets it when spawning).
/// The handler blocks these signals in the harness, and a blocked mask is inherited across
/// exec: every program the harness starts gets them unblocked again, or the test host's
/// poweroff could not end what the checks started (it waited 60 s for each).
pub fn with_signals_unblocked(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: sigprocmask is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::SigSet::all()
                .thread_unblock()
                .map_err(std::io::Error::from)
        })
    }
}

pub fn install_signal_handler() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().context("cannot block signals")?;
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("\n!!! e2e: got {sig:?}: cleaning up everything this run started");
            run_all();
            std::process::exit(130);
        }
    });
    Ok(())
}
