//! The Fedora-side test these machines allow: Debian's dnf installs, upgrades, removes and
//! reinstalls the .rpm from the signed dnf repository (gpgcheck and repo_gpgcheck on) into an
//! installroot, also under a site `disable *` preset and with the proxy unit masked.
//!
//! The installroot is the test host's Debian root with an empty rpm database: the scriptlets
//! get a real shell and tools, and a stand-in package (built here with rpmbuild) provides
//! what the .rpm requires from a Fedora base system. This machine's nft ruleset must not move.

use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::chroot::ruleset;
use super::proc::run;
use super::repo::{self, SigningKey, KEY_ASC};
use super::rootfs;

const PACKAGE: &str = "pipelock-containment";
const STAND_IN: &str = "plc-e2e-fedora-base";

/// A noarch package that provides every requirement of `rpm` except rpmlib's own.
fn stand_in(rpm: &Utf8Path, dir: &Utf8Path) -> Result<Utf8PathBuf> {
    let requires = run(Command::new("rpm").args(["-qpR", rpm.as_str()]))?;
    let provides: Vec<&str> = requires
        .lines()
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.starts_with("rpmlib(") && !r.starts_with("config("))
        .collect();
    let top = dir.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS"))?;
    let spec = top.join("SPECS/stand-in.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: {STAND_IN}\nVersion: 1\nRelease: 1\nSummary: stand-in for a Fedora base \
             system\nLicense: MIT\nBuildArch: noarch\n{}\n%description\nProvides what the \
             package under test needs from the base system; the files are the Debian root's.\n\
             %files\n",
            provides
                .iter()
                .map(|p| format!("Provides: {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )?;
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {top}"))
        .args(["-bb", "--quiet", spec.as_str()]))?;
    let built = top.join(format!("RPMS/noarch/{STAND_IN}-1-1.noarch.rpm"));
    if !built.is_file() {
        bail!("rpmbuild did not write {built}");
    }
    Ok(built)
}

/// A signed repository of `rpms` in `dir`; returns its rpm directory.
fn signed_repo(rpms: &[&Utf8Path], dir: &Utf8Path, key: &SigningKey) -> Result<Utf8PathBuf> {
    let input = dir.join("input");
    let _ = std::fs::remove_dir_all(&input);
    std::fs::create_dir_all(&input)?;
    for rpm in rpms {
        std::fs::copy(rpm, input.join(rpm.file_name().unwrap_or("x.rpm")))?;
    }
    let out = dir.join("repo");
    repo::build(&input, &out, key)?;
    Ok(out)
}

struct Root {
    dir: Utf8PathBuf,
    cache: Utf8PathBuf,
}

impl Root {
    fn fresh(tar: &Utf8Path, dir: &Utf8Path, cache: &Utf8Path) -> Result<Root> {
        rootfs::unpack(tar, dir)?;
        run(Command::new("rpm").args(["--root", dir.as_str(), "--initdb"]))?;
        Ok(Root {
            dir: dir.to_owned(),
            cache: cache.to_owned(),
        })
    }

    /// `dnf ARGS` into the root with `repo` as the only repository, signatures checked.
    fn dnf(&self, repo: &Utf8Path, args: &[&str]) -> Result<String> {
        let key = repo.join(KEY_ASC);
        run(Command::new("dnf")
            .args([
                "-y",
                "--installroot",
                self.dir.as_str(),
                "--releasever",
                "39",
            ])
            .args(["--setopt=reposdir=/nonexistent", "--disableplugin=*"])
            .arg(format!("--setopt=cachedir={}", self.cache))
            .arg("--setopt=install_weak_deps=False")
            .arg(format!("--repofrompath=plc,file://{}", repo.join("rpm")))
            .args(["--setopt=plc.gpgcheck=1", "--setopt=plc.repo_gpgcheck=1"])
            .arg(format!("--setopt=plc.gpgkey=file://{key}"))
            .args(args))
        .with_context(|| format!("dnf {}", args.join(" ")))
    }

    fn version(&self) -> Result<String> {
        run(Command::new("rpm").args([
            "--root",
            self.dir.as_str(),
            "-q",
            "--qf",
            "%{VERSION}-%{RELEASE}",
            PACKAGE,
        ]))
    }

    fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.dir.join(path.trim_start_matches('/'))).is_ok()
    }
}

/// Every case in turn; returns one line per case.
pub fn install_upgrade_remove(
    tar: &Utf8Path,
    rpm: &Utf8Path,
    upgrade: &Utf8Path,
    work: &Utf8Path,
    key: &SigningKey,
) -> Result<Vec<String>> {
    let before = ruleset()?;
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let base = stand_in(rpm, work)?;
    let first = signed_repo(&[rpm, &base], &work.join("first"), key)?;
    let both = signed_repo(&[rpm, upgrade, &base], &work.join("both"), key)?;
    let cache = work.join("cache");
    let root_dir = work.join("root");
    let mut done = Vec::new();
    let proxy_wants = "/etc/systemd/system/multi-user.target.wants/pipelock-proxy.service";
    let boot_wants = "/etc/systemd/system/sysinit.target.wants/pipelock-containment.service";

    // The check is real: the same repository without its metadata signature is refused.
    let unsigned = work.join("unsigned");
    run(Command::new("cp").args(["-a", first.as_str(), unsigned.as_str()]))?;
    std::fs::remove_file(unsigned.join("rpm/repodata/repomd.xml.asc"))?;
    let root = Root::fresh(tar, &root_dir, &cache)?;
    if root.dnf(&unsigned, &["install", PACKAGE]).is_ok()
        || root.exists("/usr/bin/pipelock-containment")
    {
        bail!("dnf installed from a repository whose metadata is not signed (repo_gpgcheck)");
    }

    // Install, upgrade, remove, reinstall.
    let root = Root::fresh(tar, &root_dir, &cache)?;
    root.dnf(&first, &["install", PACKAGE])?;
    let v1 = root.version()?;
    if !root.exists(boot_wants) || !root.exists(proxy_wants) {
        bail!("after dnf install the units are not enabled by the package's preset");
    }
    let owner = run(Command::new("rpm").args([
        "--root",
        root.dir.as_str(),
        "-qf",
        "--qf",
        "%{NAME}",
        "/etc/sudoers.d/pipelock-containment",
    ]))?;
    if owner.trim() != PACKAGE {
        bail!("rpm -qf names {owner:?}, not {PACKAGE}, for the sudoers rule apply wrote (%ghost)");
    }
    root.dnf(&both, &["upgrade", PACKAGE])?;
    let v2 = root.version()?;
    if v2 == v1 {
        bail!("dnf upgrade left {PACKAGE} at {v1}");
    }
    root.dnf(&both, &["remove", PACKAGE])?;
    if root.exists("/usr/bin/pipelock-containment")
        || root.exists("/etc/sudoers.d/pipelock-containment")
    {
        bail!("dnf remove left the helper or its sudoers rule");
    }
    let owned_dirs = [
        "/etc/pipelock-containment",
        "/usr/libexec/pipelock-containment",
        "/var/lib/pipelock-containment",
    ];
    if let Some(left) = owned_dirs.iter().find(|d| root.exists(d)) {
        bail!("dnf remove left the package's directory {left}");
    }
    root.dnf(&both, &["install", PACKAGE])?;
    if !root.exists("/etc/sudoers.d/pipelock-containment") {
        bail!("the reinstall did not apply (no sudoers rule)");
    }
    done.push(format!(
        "unsigned metadata refused; install {v1}, upgrade to {v2}, remove, reinstall: \
         signatures checked, units preset, generated files owned (%ghost), directories gone"
    ));

    // A site preset that disables everything wins over the package's.
    let root = Root::fresh(tar, &root_dir, &cache)?;
    std::fs::create_dir_all(root.dir.join("etc/systemd/system-preset"))?;
    std::fs::write(
        root.dir.join("etc/systemd/system-preset/00-site.preset"),
        "disable *\n",
    )?;
    root.dnf(&first, &["install", PACKAGE])?;
    if root.exists(proxy_wants) || root.exists(boot_wants) {
        bail!("with a `disable *` site preset, dnf install still enabled the units");
    }
    done.push("`disable *` preset: installed, no unit enabled".to_string());

    // A masked proxy unit: the install succeeds and the mask stays.
    let root = Root::fresh(tar, &root_dir, &cache)?;
    run(Command::new("systemctl").args([
        "--root",
        root.dir.as_str(),
        "mask",
        "pipelock-proxy.service",
    ]))?;
    let out = root.dnf(&first, &["install", PACKAGE])?;
    let mask = std::fs::read_link(root.dir.join("etc/systemd/system/pipelock-proxy.service"))
        .unwrap_or_default();
    if mask != std::path::Path::new("/dev/null") {
        bail!("the install unmasked the proxy unit:\n{out}");
    }
    done.push("masked proxy unit: installed, still masked".to_string());

    rootfs::remove_tree(&root_dir)?;
    if ruleset()? != before {
        bail!("dnf --installroot changed this machine's nft ruleset");
    }
    Ok(done)
}
