//! The Debian packages the build and the tests need, installed with apt when missing.

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;

/// What `cargo xtask dist` needs besides the Rust toolchain.
pub const BUILD: &[&str] = &[
    // cargo-deb strips with binutils and finds shared-library dependencies with dpkg-shlibdeps
    "build-essential",
    "binutils",
    "dpkg-dev",
    "fakeroot",
    "xz-utils",
];

/// What `cargo xtask test` needs on top of `BUILD`.
pub const TEST: &[&str] = &[
    // what the helper drives and the root tests exercise
    "nftables",
    "sudo",
    "ca-certificates",
    "systemd",
    "iproute2",
    "acl",
    "adduser",
    "passwd",
    "procps",
    "util-linux",
    "jq",
    "openssl",
    "curl",
    "python3",
    // inspecting and linting the packages and the scripts
    "rpm",
    "lintian",
    "rpmlint",
    "shellcheck",
    // the end-to-end suite: a booted Debian container, repositories, a stand-in proxy
    "debootstrap",
    "debian-archive-keyring",
    "systemd-container",
    "apt-utils",
    "createrepo-c",
    "gnupg",
    "tinyproxy",
];

fn is_installed(package: &str) -> bool {
    cmd::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .map(|out| String::from_utf8_lossy(&out.stdout).ends_with("installed"))
        .unwrap_or(false)
}

/// Install the packages that are missing (as root), or say exactly what to install.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing Debian packages: {}; install them with `sudo apt-get install {}` \
             (or run this command as root)",
            missing.join(" "),
            missing.join(" ")
        );
    }
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args);
        cmd::run(&mut command)
    };
    apt(&["update", "-q"])?;
    let mut install = vec![
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--no-upgrade",
    ];
    install.extend(&missing);
    apt(&install)
}
