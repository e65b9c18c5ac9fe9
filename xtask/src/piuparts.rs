//! piuparts (from Debian's archive) on the built .deb: install, purge, and install, remove,
//! install again, in a fresh bookworm chroot; files left after purge fail the run.

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;
use crate::dist::Packages;

/// What systemd itself leaves when piuparts purges it again: the package pulls systemd into
/// the minbase chroot, and systemd's tmpfiles.d makes these. None of them is this package's.
const SYSTEMD_LEFTOVERS: &[&str] = &[
    "/root/.ssh/",
    "/var/cache/private/",
    "/var/lib/private/",
    "/var/lib/systemd/coredump/",
    "/var/lib/systemd/pstore/",
    "/var/log/private/",
];

/// Ok(false): not root, nothing ran (the caller reports the skip).
pub fn run(packages: &Packages) -> Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(false);
    }
    let tmp = cmd::project_root().join("target/piuparts");
    std::fs::create_dir_all(&tmp)?;
    let mirror = crate::e2e::rootfs::mirror()?;
    let mut command = Command::new("piuparts");
    // sudo's prerm refuses to go without a root password unless told (piuparts purges the
    // dependencies it installed, sudo among them).
    command
        .env("SUDO_FORCE_REMOVE", "yes")
        .args(["--distribution", "bookworm", "--mirror", &mirror])
        .args(["--tmpdir", tmp.as_str(), "--install-remove-install"]);
    for path in SYSTEMD_LEFTOVERS {
        command.args(["--ignore", path]);
    }
    command.arg(packages.deb.as_str());
    let out = cmd::capture(&mut command)?;
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR:") || l.contains("FAIL"))
        .collect();
    if !out.status.success() || !failures.is_empty() {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        bail!("piuparts failed ({}): {}", out.status, failures.join(" | "));
    }
    eprintln!(
        "piuparts: {} passed (install, purge, install-remove-install; nothing left)",
        packages.deb
    );
    Ok(true)
}
