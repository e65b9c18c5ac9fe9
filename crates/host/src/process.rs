//! Running a program of the host (one place for the error that names a missing program), and
//! finding the processes of a user.

use std::process::{Command, Output};

use anyhow::{anyhow, bail, Result};

/// Run a program found on PATH. A missing program is an error that names it.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|err| cannot_run(program, err))
}

fn cannot_run(program: &str, err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow!("`{program}` was not found on PATH: install it (the package depends on it)")
    } else {
        anyhow!("cannot run `{program}`: {err}")
    }
}

/// Run and require success; the error quotes the command and its stderr.
pub fn run_ok(program: &str, args: &[&str]) -> Result<Output> {
    succeeded(program, args, run(program, args)?)
}

/// The output of a run that succeeded; else an error quoting the command and its stderr.
fn succeeded(program: &str, args: &[&str], output: Output) -> Result<Output> {
    if !output.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program,
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// Run with `input` on standard input and require success, like `run_ok`.
pub fn run_ok_with_input(program: &str, args: &[&str], input: &[u8]) -> Result<Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| cannot_run(program, err))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    succeeded(program, args, child.wait_with_output()?)
}

/// Send `lines` to the journal as `identifier` (systemd-cat); nothing when journald does not
/// run (a chroot, an image build).
pub fn to_journal(identifier: &str, lines: &[String]) {
    use std::io::Write;
    if lines.is_empty() || !std::path::Path::new("/run/systemd/journal/socket").exists() {
        return;
    }
    let Ok(mut child) = Command::new("systemd-cat")
        .args(["-t", identifier])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        for line in lines {
            let _ = writeln!(stdin, "{}", line.trim());
        }
    }
    let _ = child.wait();
}

/// Every live (not zombie) PID whose real or effective UID is `uid` (from /proc), except ourselves.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        // A zombie has ended already; only its parent can reap it.
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            continue;
        }
        let uids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|v| v.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if uids.iter().take(2).any(|u| *u == uid) {
            pids.push(pid);
        }
    }
    pids
}
