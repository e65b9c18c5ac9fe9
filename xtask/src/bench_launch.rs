//! `cargo xtask bench-launch`: the launch overhead, `cc-launch true` against a bare `sudo -n -u cc-agent true`.
//!
//! Runs in the private sandbox of the launch tests (tests/launch/sandbox.rs): real accounts in
//! an /etc overlay, the rendered rule loaded in a private network namespace, a stand-in proxy,
//! release binaries installed at their real paths. Needs root and hyperfine. Nothing on the
//! host changes.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

#[path = "../../tests/launch/sandbox.rs"]
mod sandbox;

use sandbox::{assert_ok, describe, Sandbox, AGENT_EXEC, OPERATOR_UID};

/// The target from the launch issue: cc-launch may cost at most this much more than bare sudo.
const TARGET_RATIO: f64 = 1.5;

pub fn run(runs: u32) -> Result<()> {
    if !nix_is_root() {
        bail!("bench-launch needs root (namespaces, overlays, nft, sudo): run it with sudo");
    }
    if Command::new("hyperfine").arg("--version").output().is_err() {
        bail!("hyperfine is not installed: `apt-get install hyperfine` (or `cargo install hyperfine`)");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the project")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&repo)
        .args([
            "build",
            "--release",
            "--package",
            "pipelock-containment",
            "--bins",
        ])
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| repo.join("target"));
    let release = target.join("release");
    let mut sandbox = Sandbox::new(
        "bench",
        &repo,
        &release.join("pipelock-containment"),
        &release.join("agent-exec"),
    );
    // The baseline needs its own grant, in the sandbox only.
    assert_ok(
        &sandbox.sh(
            "echo 'launch-op ALL=(cc-agent) NOPASSWD: /usr/bin/true' >/etc/sudoers.d/launch-bench \
             && chmod 0440 /etc/sudoers.d/launch-bench",
        ),
        "baseline sudoers rule",
    );
    sandbox.load_rule();
    sandbox.start_proxy();
    for check in ["cc-launch true", "sudo -n -u cc-agent /usr/bin/true"] {
        assert_ok(&sandbox.as_user(OPERATOR_UID, check), check);
    }
    let json = format!("{}/bench.json", sandbox.work());
    let out = sandbox.as_user(
        OPERATOR_UID,
        &format!(
            "hyperfine -N --style basic --warmup 20 --runs {runs} --export-json {json} \
             \"cc-launch true\" \"sudo -n -u cc-agent /usr/bin/true\""
        ),
    );
    if !out.status.success() {
        bail!("hyperfine failed: {}", describe(&out));
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let report = sandbox.sh(&format!("cat {json}"));
    let report: serde_json::Value =
        serde_json::from_slice(&report.stdout).context("reading hyperfine's JSON")?;
    let stat = |index: usize, key: &str| -> Result<f64> {
        report["results"][index][key]
            .as_f64()
            .with_context(|| format!("hyperfine's JSON has no {key}"))
    };
    let (launch, sudo) = (stat(0, "mean")?, stat(1, "mean")?);
    let (launch_median, sudo_median) = (stat(0, "median")?, stat(1, "median")?);
    // Where cc-launch's time goes (informative): its parts, timed the same way.
    let parts = sandbox.sh(&format!(
        "cd {work} && hyperfine -N --style basic --warmup 10 --runs {runs} \
         \"/bin/sh -c :\" \"/usr/bin/id -Gn\" \
         \"setpriv --reuid 61234 --regid 61234 --clear-groups /usr/bin/true\" \
         \"setpriv --reuid 61234 --regid 61234 --clear-groups {AGENT_EXEC} true\"",
        work = sandbox.work()
    ));
    println!("\nParts of the launch (as root in the sandbox):");
    print!("{}", String::from_utf8_lossy(&parts.stdout));
    let ratio = launch / sudo;
    let median_ratio = launch_median / sudo_median;
    println!(
        "\nbench-launch: mean: cc-launch true {:.2} ms, sudo -n -u cc-agent true {:.2} ms, \
         ratio {ratio:.2}x; median: {:.2} ms vs {:.2} ms, ratio {median_ratio:.2}x \
         (target <= {TARGET_RATIO}x: {})",
        launch * 1e3,
        sudo * 1e3,
        launch_median * 1e3,
        sudo_median * 1e3,
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn nix_is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
