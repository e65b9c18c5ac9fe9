//! Installing and removing the package in a chroot (an image build) leaves the machine doing it
//! alone: its nft ruleset is unchanged and a process of its own with the agent's UID survives.

use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use super::checks::AGENT;
use super::proc::run;
use super::rootfs;

/// dpkg inside `dir` in a private mount namespace, with /dev, and with /proc only when asked
/// (without it the helper cannot compare its root with PID 1's, as in `dnf --installroot`).
fn dpkg_in(dir: &Utf8Path, with_proc: bool, args: &str) -> Result<String> {
    let proc = if with_proc {
        format!("mount -t proc proc {dir}/proc; ")
    } else {
        String::new()
    };
    run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-ec",
        &format!("mount --bind /dev {dir}/dev; {proc}chroot {dir} dpkg {args}"),
    ]))
}

/// This machine's whole nft ruleset, to compare before and after an image-style install.
pub fn ruleset() -> Result<String> {
    run(Command::new("nft").args(["list", "ruleset"]))
}

fn agent_uid(dir: &Utf8Path) -> Result<u32> {
    let passwd = std::fs::read_to_string(dir.join("etc/passwd"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&AGENT)).then(|| f.get(2)?.parse().ok())?
        })
        .context("the chroot has no agent account after the install")
}

/// Install with and without /proc, remove the other way round; returns a one-line summary.
pub fn install_and_remove(tar: &Utf8Path, deb: &Utf8Path, dir: &Utf8Path) -> Result<String> {
    rootfs::unpack(tar, dir)?;
    std::fs::copy(deb, dir.join("root/package.deb"))?;
    let before = ruleset()?;
    let mut rounds = Vec::new();
    for (install_proc, remove_proc) in [(false, true), (true, false)] {
        let out = dpkg_in(dir, install_proc, "-i /root/package.deb")?;
        if !out.contains("the table loads at first boot") {
            bail!("the install in a chroot did not say it deferred the table:\n{out}");
        }
        let uid = agent_uid(dir)?.to_string();
        // The build machine's own process with that UID: remove must not signal it.
        let mut canary = Command::new("setpriv")
            .args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
            .args(["sleep", "120"])
            .spawn()
            .context("cannot start the canary process")?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let removed = dpkg_in(dir, remove_proc, "-r pipelock-containment");
        let alive = canary.try_wait()?.is_none();
        let _ = canary.kill();
        let _ = canary.wait();
        removed?;
        if !alive {
            bail!("remove in a chroot ended a process of this machine with the agent's UID {uid}");
        }
        let after = ruleset()?;
        if after != before {
            bail!(
                "the chroot's install or remove changed this machine's nft ruleset \
                 (install with /proc: {install_proc}):\n--- before\n{before}\n--- after\n{after}"
            );
        }
        rounds.push(format!(
            "install {} /proc, remove {} /proc",
            if install_proc { "with" } else { "without" },
            if remove_proc { "with" } else { "without" }
        ));
    }
    rootfs::remove_tree(dir)?;
    Ok(rounds.join("; "))
}
