//! Running subprocesses and timed steps, with the command line in every error.

use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The workspace root (the directory holding the root Cargo.toml).
pub fn project_root() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// `cargo`, as the one that runs this xtask (rustup's proxy sets `CARGO`).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Run with inherited output; a non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Run and capture; a non-zero exit is an error with the command's stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = capture(cmd)?;
    let line = describe(cmd);
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

/// Run and capture whatever happens (the caller judges the exit status).
pub fn capture(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{line}`"))
}

/// Run `f` as a named step: print its start, its end and how long it took.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("\n==> {name}");
    let start = Instant::now();
    let result = f();
    let secs = start.elapsed().as_secs_f64();
    match &result {
        Ok(_) => eprintln!("<== {name}: ok ({secs:.1}s)"),
        Err(err) => eprintln!("<== {name}: FAILED ({secs:.1}s): {err:#}"),
    }
    result
}
