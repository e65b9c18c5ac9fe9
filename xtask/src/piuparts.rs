//! piuparts (from Debian's archive) on a built .deb: install, purge, and install, remove,
//! install again, in a fresh bookworm chroot, and with a signed repository holding the
//! previous release, the upgrade from it; files left after purge fail the run.

use std::process::Command;

use anyhow::{bail, Result};

use camino::Utf8Path;

use crate::cmd;

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

/// A signed apt repository (`repo::build`'s layout) that holds the release to upgrade from.
pub struct Previous<'a> {
    pub repo: &'a Utf8Path,
    pub suite: &'a str,
    pub component: &'a str,
    pub keyring: &'a str,
}

/// Ok(false): not root, nothing ran (the caller reports the skip).
pub fn run(deb: &Utf8Path, previous: Option<&Previous<'_>>) -> Result<bool> {
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
    // The previous release in the chroot's sources: piuparts then also installs it and
    // upgrades to this .deb. The repository is bind-mounted at its own path.
    if let Some(p) = previous {
        let line = format!(
            "deb [signed-by={}/{}] file://{}/apt {} {}",
            p.repo, p.keyring, p.repo, p.suite, p.component
        );
        command.args(["--bindmount", p.repo.as_str(), "--extra-repo", &line]);
    }
    command.arg(deb.as_str());
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
    let upgrade = log.contains("PASS: Installation, upgrade and purging tests");
    if previous.is_some() && !upgrade {
        bail!("piuparts did not run the upgrade from the previous release");
    }
    eprintln!(
        "piuparts: {deb} passed (install, purge, install-remove-install{}; nothing left)",
        if upgrade {
            ", upgrade from the previous release"
        } else {
            ""
        }
    );
    Ok(true)
}
