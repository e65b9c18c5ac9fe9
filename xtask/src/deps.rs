//! Every external program the build, the tests, the benchmarks and the helper call, the Debian
//! package that provides it, and the install step that makes them all present.

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;

/// Who needs a program: the build only, or the tests and benchmarks too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    Build,
    Test,
}

/// (program, Debian package, who needs it). `cargo xtask deps --check` proves each resolves;
/// `every_called_program_is_listed` fails when the code calls a program missing here.
pub const PROGRAMS: &[(&str, &str, Need)] = &[
    // cargo-deb strips with binutils and finds shared-library dependencies with dpkg-shlibdeps
    ("cc", "build-essential", Need::Build),
    ("strip", "binutils", Need::Build),
    ("nm", "binutils", Need::Build),
    ("dpkg-shlibdeps", "dpkg-dev", Need::Build),
    ("fakeroot", "fakeroot", Need::Build),
    ("xz", "xz-utils", Need::Build),
    ("gzip", "gzip", Need::Build),
    ("tar", "tar", Need::Build),
    ("git", "git", Need::Build),
    // what the helper drives and the root tests exercise
    ("nft", "nftables", Need::Test),
    ("sudo", "sudo", Need::Test),
    ("visudo", "sudo", Need::Test),
    ("update-ca-certificates", "ca-certificates", Need::Test),
    ("systemctl", "systemd", Need::Test),
    ("systemd-run", "systemd", Need::Test),
    ("systemd-analyze", "systemd", Need::Test),
    ("systemd-sysusers", "systemd", Need::Test),
    ("journalctl", "systemd", Need::Test),
    ("loginctl", "systemd", Need::Test),
    ("systemd-cat", "systemd", Need::Test),
    ("ip", "iproute2", Need::Test),
    ("getfacl", "acl", Need::Test),
    ("setfacl", "acl", Need::Test),
    ("adduser", "adduser", Need::Test),
    ("useradd", "passwd", Need::Test),
    ("userdel", "passwd", Need::Test),
    ("usermod", "passwd", Need::Test),
    ("groupadd", "passwd", Need::Test),
    ("groupdel", "passwd", Need::Test),
    ("addgroup", "adduser", Need::Test),
    ("pgrep", "procps", Need::Test),
    ("unshare", "util-linux", Need::Test),
    ("nsenter", "util-linux", Need::Test),
    ("setpriv", "util-linux", Need::Test),
    ("sshd", "openssh-server", Need::Test),
    ("ssh-keygen", "openssh-client", Need::Test),
    ("ssh", "openssh-client", Need::Test),
    ("dbus-daemon", "dbus-daemon", Need::Test),
    ("dbus-send", "dbus-bin", Need::Test),
    ("dbus-test-tool", "dbus-tests", Need::Test),
    ("runuser", "util-linux", Need::Test),
    ("timeout", "coreutils", Need::Test),
    ("cat", "coreutils", Need::Test),
    ("cp", "coreutils", Need::Test),
    ("rm", "coreutils", Need::Test),
    ("md5sum", "coreutils", Need::Build),
    // rpm's requirement generator, which the .rpm build runs on the binaries
    (crate::rpm_package::FIND_REQUIRES, "rpm", Need::Build),
    ("chroot", "coreutils", Need::Test),
    ("sh", "dash", Need::Test),
    ("jq", "jq", Need::Test),
    ("openssl", "openssl", Need::Test),
    ("curl", "curl", Need::Test),
    ("python3", "python3", Need::Test),
    ("dpkg-query", "dpkg", Need::Test),
    ("dpkg", "dpkg", Need::Test),
    ("dpkg-deb", "dpkg", Need::Test),
    ("apt-get", "apt", Need::Test),
    // inspecting and linting the packages and the scripts
    ("rpm", "rpm", Need::Test),
    ("rpm2archive", "rpm", Need::Test),
    ("rpmsign", "rpm", Need::Test),
    ("lintian", "lintian", Need::Test),
    ("rpmlint", "rpmlint", Need::Test),
    ("piuparts", "piuparts", Need::Test),
    ("shellcheck", "shellcheck", Need::Test),
    // the end-to-end suite: a booted Debian container, repositories, a stand-in proxy
    ("debootstrap", "debootstrap", Need::Test),
    ("systemd-nspawn", "systemd-container", Need::Test),
    ("apt-ftparchive", "apt-utils", Need::Test),
    ("createrepo_c", "createrepo-c", Need::Test),
    ("dnf", "dnf", Need::Test),
    ("rpmbuild", "rpm", Need::Test),
    ("gpg", "gnupg", Need::Test),
    ("gpgconf", "gnupg", Need::Test),
    ("tinyproxy", "tinyproxy", Need::Test),
    // benchmarks
    ("hyperfine", "hyperfine", Need::Test),
];

/// Packages needed that provide no program anyone calls by name.
const DATA_PACKAGES: &[(&str, Need)] = &[
    ("ca-certificates", Need::Test),
    ("debian-archive-keyring", Need::Test),
];

/// The Debian packages for `need` (the test set includes the build set), de-duplicated.
pub fn packages(need: Need) -> Vec<&'static str> {
    let wanted = |n: Need| need == Need::Test || n == Need::Build;
    let mut out: Vec<&str> = PROGRAMS
        .iter()
        .filter(|(_, _, n)| wanted(*n))
        .map(|(_, package, _)| *package)
        .chain(
            DATA_PACKAGES
                .iter()
                .filter(|(_, n)| wanted(*n))
                .map(|(p, _)| *p),
        )
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// dpkg's `${Status}` (want, error flag, state): only `install ok installed` is a usable package.
/// `unknown ok not-installed`, `deinstall ok config-files` and `install ok half-installed` are not.
fn status_is_installed(status: &str) -> bool {
    status.trim() == "install ok installed"
}

fn is_installed(package: &str) -> bool {
    cmd::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .map(|out| {
            out.status.success() && status_is_installed(&String::from_utf8_lossy(&out.stdout))
        })
        .unwrap_or(false)
}

/// Install the packages for `need` that are missing (as root), or say exactly what to install.
/// Prints what it found and what it installed, so a log tells a clean machine from a dirty one.
pub fn ensure(need: Need) -> Result<()> {
    let wanted = packages(need);
    let (found, missing): (Vec<&str>, Vec<&str>) =
        wanted.iter().copied().partition(|p| is_installed(p));
    eprintln!("deps: found installed: {}", found.join(" "));
    if missing.is_empty() {
        eprintln!("deps: installed now: (nothing)");
        return check(need);
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
    let _no_daemons = NoDaemonStarts::new()?;
    apt(&install)?;
    eprintln!("deps: installed now: {}", missing.join(" "));
    check(need)
}

/// While it lives, `/usr/sbin/policy-rc.d` exits 101: the packages install without starting
/// their daemons (sshd, dbus, tinyproxy) on the machine running the tests. An admin's own
/// policy-rc.d is left alone.
struct NoDaemonStarts(bool);

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoDaemonStarts {
    fn new() -> Result<NoDaemonStarts> {
        use std::os::unix::fs::PermissionsExt;
        if std::path::Path::new(POLICY_RC_D).exists() {
            return Ok(NoDaemonStarts(false));
        }
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# cargo xtask deps: start no daemon\nexit 101\n",
        )?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoDaemonStarts(true))
    }
}

impl Drop for NoDaemonStarts {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// The directories a program is looked up in: PATH plus the sbin directories (root's PATH).
fn resolves(program: &str) -> bool {
    let executable = |path: &str| {
        std::fs::metadata(path).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if program.starts_with('/') {
        return executable(program);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .any(|dir| executable(&format!("{dir}/{program}")));
    found
}

/// `cargo xtask deps --check`: every program in the table for `need` resolves.
pub fn check(need: Need) -> Result<()> {
    let wanted = |n: Need| need == Need::Test || n == Need::Build;
    let unresolved: Vec<String> = PROGRAMS
        .iter()
        .filter(|(program, _, n)| wanted(*n) && !resolves(program))
        .map(|(program, package, _)| format!("{program} (package {package})"))
        .collect();
    if !unresolved.is_empty() {
        bail!(
            "these programs do not resolve after the install step: {}",
            unresolved.join(", ")
        );
    }
    eprintln!(
        "deps: all {} programs resolve",
        PROGRAMS.iter().filter(|(_, _, n)| wanted(*n)).count()
    );
    Ok(())
}

/// `cargo xtask deps --clean-root`: prove the install list on a clean machine. Debootstraps a
/// minbase Debian into target/clean-root, installs `packages(Need::Test)` there with apt (no
/// service starts: policy-rc.d), and checks that every program of the table resolves inside.
/// Minutes, not seconds: run it when the table changes, not on every CI run.
pub fn clean_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("deps --clean-root needs root (debootstrap, chroot): run it with sudo");
    }
    ensure(Need::Test)?;
    let dir = crate::cmd::project_root().join("target/clean-root");
    crate::e2e::rootfs::remove_tree(&dir)?;
    let mirror = crate::e2e::rootfs::mirror()?;
    let packages = packages(Need::Test).join(" ");
    let programs: Vec<&str> = PROGRAMS.iter().map(|(p, _, _)| *p).collect();
    let script = format!(
        "set -eu
debootstrap --variant=minbase {suite} {dir} {mirror}
cp /etc/resolv.conf {dir}/etc/resolv.conf
printf '#!/bin/sh\nexit 101\n' > {dir}/usr/sbin/policy-rc.d && chmod 0755 {dir}/usr/sbin/policy-rc.d
mount -t proc proc {dir}/proc
chroot {dir} apt-get update -q
chroot {dir} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages}
missing=
for p in {programs}; do
    chroot {dir} sh -c \"PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v $p\" >/dev/null || missing=\"$missing $p\"
done
umount {dir}/proc
if [ -n \"$missing\" ]; then echo \"deps --clean-root: not resolved in a clean root:$missing\"; exit 1; fi
echo \"deps --clean-root: all {count} programs resolve in a clean {suite} root\"",
        suite = crate::e2e::rootfs::SUITE,
        programs = programs.join(" "),
        count = programs.len(),
    );
    let result = crate::cmd::run(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&script),
    );
    crate::e2e::rootfs::remove_tree(&dir)?;
    result
}

/// Programs named as string literals in `source`: `Command::new("x")`, `run("x", …)`,
/// `run_ok("x", …)`. Commands inside the booted test host are not counted (they run there).
#[cfg(test)]
pub fn called_programs(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for opener in [
        "Command::new(\"",
        " run(\"",
        "(run(\"",
        " run_ok(\"",
        "(run_ok(\"",
    ] {
        let mut rest = source;
        while let Some(at) = rest.find(opener) {
            // clap::Command::new("name") builds a command line, it runs nothing.
            let is_clap = rest[..at].ends_with("clap::");
            rest = &rest[at + opener.len()..];
            if is_clap {
                continue;
            }
            if let Some(end) = rest.find('"') {
                let name = &rest[..end];
                if !name.is_empty()
                    && !name.contains(['/', ' ', '{'])
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
                {
                    out.push(name.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_install_ok_installed_counts() {
        assert!(status_is_installed("install ok installed"));
        assert!(status_is_installed("install ok installed\n"));
        for status in [
            "unknown ok not-installed",
            "deinstall ok config-files",
            "purge ok not-installed",
            "install ok half-installed",
            "install ok unpacked",
            "install ok half-configured",
            "install ok triggers-awaited",
            "install ok triggers-pending",
            "install reinstreq half-installed",
            "hold ok not-installed",
            "",
        ] {
            assert!(
                !status_is_installed(status),
                "{status:?} counted as installed"
            );
        }
    }

    #[test]
    fn the_scan_finds_literals_and_skips_paths() {
        let src = r#"Command::new("nft").arg("x"); let o = run("systemctl", &[]); run_ok("visudo", &[]);
            Command::new("/usr/bin/env"); Command::new(program); Command::new("a b");
            clap::Command::new("cc-launch");"#;
        assert_eq!(called_programs(src), vec!["nft", "systemctl", "visudo"]);
    }

    /// Every program the code names must be in the table, or a clean machine lacks it.
    #[test]
    fn every_called_program_is_listed() {
        let root = crate::cmd::project_root();
        let mut files = Vec::new();
        for dir in ["src", "crates", "xtask/src", "tests"] {
            collect_rs(&root.join(dir).into_std_path_buf(), &mut files);
        }
        assert!(
            files.len() > 20,
            "the scan found only {} files",
            files.len()
        );
        let listed: Vec<&str> = PROGRAMS.iter().map(|(p, _, _)| *p).collect();
        let mut missing = Vec::new();
        for file in &files {
            if file.ends_with("xtask/src/deps.rs") {
                continue; // its tests name made-up programs on purpose
            }
            let text = std::fs::read_to_string(file).unwrap();
            for program in called_programs(&text) {
                if !listed.contains(&program.as_str()) {
                    missing.push(format!("{program} ({})", file.display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "programs called but missing from deps::PROGRAMS: {missing:?}"
        );
    }

    #[test]
    fn a_program_missing_from_the_table_is_caught() {
        let listed: Vec<&str> = PROGRAMS.iter().map(|(p, _, _)| *p).collect();
        let called = called_programs(r#"Command::new("frobnicate-ruleset")"#);
        assert_eq!(called, vec!["frobnicate-ruleset"]);
        assert!(!listed.contains(&called[0].as_str()));
    }

    #[test]
    fn test_packages_include_the_build_packages() {
        let test = packages(Need::Test);
        for p in packages(Need::Build) {
            assert!(test.contains(&p), "{p}");
        }
        assert!(test.contains(&"acl") && test.contains(&"hyperfine"));
    }

    fn collect_rs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_rs(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
}
