//! The test host's root file system: a Debian bookworm minbase with systemd, debootstrapped from
//! the mirror this machine's own apt sources name, cached as a tarball keyed by its contents.

use std::fs;
use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::proc::{run, run_visible};

pub const SUITE: &str = "bookworm";
/// Hostname of the booted test host.
pub const HOSTNAME: &str = "plc-e2e";

/// Everything the test host needs besides minbase. The container has no route to a Debian
/// mirror, so every dependency of the package under test must be here.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "nftables",
    "sudo",
    "curl",
    "ca-certificates",
    "iproute2",
    "acl",
    "adduser",
    "procps",
    "tinyproxy",
    "rpm",
    // the contained-session attacks and the bridge benchmark
    "python3",
    // ways into the agent account besides the launcher: ssh, cron, name resolution over D-Bus
    "openssh-server",
    "cron",
    "systemd-resolved",
    // other users of the kernel's firewall, which must leave the table alone
    "libpam-systemd", // polkitd (for firewalld) needs default-logind, which debootstrap cannot pick
    "firewalld",
    "ufw",
];

/// Bumped when the post-debootstrap setup below changes, so caches are rebuilt.
const SETUP_VERSION: u32 = 1;

/// The Debian mirror URI from this machine's apt sources (env `PLC_E2E_MIRROR` overrides).
pub fn mirror() -> Result<String> {
    if let Ok(m) = std::env::var("PLC_E2E_MIRROR") {
        return Ok(m);
    }
    let mut files: Vec<Utf8PathBuf> = Vec::new();
    if let Ok(dir) = Utf8Path::new("/etc/apt/sources.list.d").read_dir_utf8() {
        for e in dir.flatten() {
            files.push(e.into_path());
        }
    }
    files.sort();
    files.insert(0, "/etc/apt/sources.list".into());
    let texts: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| Some((f.to_string(), fs::read_to_string(f).ok()?)))
        .collect();
    if let Some(m) = mirror_from(&texts) {
        return Ok(m);
    }
    bail!(
        "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list or \
         /etc/apt/sources.list.d/: set PLC_E2E_MIRROR"
    )
}

/// The first Debian mirror (a URI ending in /debian) in apt source files, given as (path, text):
/// deb822 `.sources` (URIs:) and one-line `.list` (deb [options] URI suite ...).
fn mirror_from(files: &[(String, String)]) -> Option<String> {
    for (path, text) in files {
        let uris: Vec<String> = if path.ends_with(".sources") {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("URIs:"))
                .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        } else if path.ends_with(".list") {
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with("deb "))
                .filter_map(|l| {
                    let rest = l.strip_prefix("deb ")?.trim();
                    let rest = match rest.strip_prefix('[') {
                        Some(r) => r.split_once(']')?.1.trim(),
                        None => rest,
                    };
                    rest.split_whitespace().next().map(str::to_owned)
                })
                .collect()
        } else {
            continue;
        };
        if let Some(u) = uris
            .into_iter()
            .find(|u| u.trim_end_matches('/').ends_with("/debian"))
        {
            return Some(u);
        }
    }
    None
}

/// FNV-1a: a stable short key for the cache file name.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Returns the cached rootfs tarball, building it first when missing.
pub fn cached_tarball(cache_dir: &Utf8Path) -> Result<Utf8PathBuf> {
    let mirror = mirror()?;
    let key = format!(
        "{SUITE} minbase {} setup{SETUP_VERSION} {}",
        PACKAGES.join(","),
        std::env::consts::ARCH
    );
    let tar = cache_dir.join(format!("rootfs-{SUITE}-{:016x}.tar", fnv(&key)));
    if tar.exists() {
        println!("    cached: {tar}");
        return Ok(tar);
    }
    fs::create_dir_all(cache_dir)?;
    let dir = cache_dir.join("build-rootfs");
    remove_tree(&dir)?;
    println!("    debootstrap {SUITE} from {mirror} (cache key: {key})");
    // A private mount namespace: whatever debootstrap mounts inside the target goes away with it.
    run_visible(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .args(["debootstrap", "--variant=minbase"])
            .arg(format!("--include={}", PACKAGES.join(",")))
            .args([SUITE, dir.as_str(), &mirror]),
    )?;
    setup(&dir)?;
    let partial = Utf8PathBuf::from(format!("{tar}.partial"));
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C", dir.as_str()])
        .args(["-cf", partial.as_str(), "."]))?;
    fs::rename(&partial, &tar)?;
    remove_tree(&dir)?;
    Ok(tar)
}

/// The image-wide setup an operator's base image would have.
fn setup(dir: &Utf8Path) -> Result<()> {
    fs::write(dir.join("etc/hostname"), format!("{HOSTNAME}\n"))?;
    fs::write(
        dir.join("etc/hosts"),
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             192.0.2.1\tinternet.test\n2001:db8::1\tinternet.test\n"
        ),
    )?;
    // No route to a Debian mirror from inside: the only source is the test repository.
    let _ = fs::remove_file(dir.join("etc/apt/sources.list"));
    // Debian's own tinyproxy service would take the proxy port; the package's proxy unit runs it.
    run(Command::new("systemctl").args(["--root", dir.as_str(), "mask", "tinyproxy.service"]))?;
    // firewalld runs only during its own check (it would filter the test host's inbound ports).
    run(Command::new("systemctl").args(["--root", dir.as_str(), "mask", "firewalld.service"]))?;
    // Quieter boots: nothing in the test host needs these.
    for unit in [
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
    ] {
        let _ = run(Command::new("systemctl").args(["--root", dir.as_str(), "mask", unit]));
    }
    run(Command::new("chroot").args([dir.as_str(), "apt-get", "clean"]))?;
    let _ = fs::remove_dir_all(dir.join("var/lib/apt/lists"));
    fs::create_dir_all(dir.join("var/lib/apt/lists/partial"))?;
    Ok(())
}

/// Unpacks `tarball` into `dir` (replaced).
pub fn unpack(tarball: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    remove_tree(dir)?;
    fs::create_dir_all(dir)?;
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-xpf", tarball.as_str()])
        .args(["-C", dir.as_str()]))?;
    Ok(())
}

/// Removes a directory tree, refusing if anything is mounted below it.
pub fn remove_tree(dir: &Utf8Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let canon = dir.canonicalize_utf8()?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines() {
        if let Some(mp) = l.split(' ').nth(4) {
            if Utf8Path::new(mp).starts_with(&canon) {
                bail!("refusing to remove {dir}: {mp} is mounted below it");
            }
        }
    }
    run(Command::new("rm").args(["-rf", "--one-file-system", canon.as_str()]))
        .context("cannot remove the old tree")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, text: &str) -> (String, String) {
        (path.to_owned(), text.to_owned())
    }

    #[test]
    fn mirror_from_deb822_skips_security_and_comments() {
        let files = [f(
            "/etc/apt/sources.list.d/debian.sources",
            "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n\
             URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
             Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n",
        )];
        assert_eq!(
            mirror_from(&files).as_deref(),
            Some("http://mirror.example/debian/")
        );
    }

    #[test]
    fn mirror_from_one_line_list_with_options() {
        let files = [
            f(
                "/etc/apt/sources.list",
                "# deb http://old.example/debian bookworm main\n",
            ),
            f(
                "/etc/apt/sources.list.d/x.list",
                "deb https://packages.example/apt cloud main\n\
                 deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main\n",
            ),
        ];
        assert_eq!(
            mirror_from(&files).as_deref(),
            Some("http://ftp.example/debian")
        );
    }

    #[test]
    fn mirror_from_none_without_a_debian_uri() {
        let files = [f(
            "/etc/apt/sources.list",
            "deb http://archive.ubuntu.com/ubuntu noble main\n",
        )];
        assert_eq!(mirror_from(&files), None);
    }

    #[test]
    fn cache_key_is_stable() {
        assert_eq!(fnv(""), 0xcbf29ce484222325);
        assert_eq!(fnv("a"), 0xaf63dc4c8601ec8c);
    }
}
