//! Every generated and shipped file checked by its own tool: nft -c, visudo -cf, sh -n,
//! shellcheck, systemd-analyze verify. A missing tool skips loudly here and fails under CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use pipelock_containment::config::Config;
use pipelock_containment::facts::{Account, DistroPaths, Facts, LoginUidRange};
use pipelock_containment::render::{render_all, FileKind, RenderedFile};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn facts() -> Facts {
    let account = |name: &str, uid| Account {
        name: name.into(),
        uid,
        gid: uid,
        home: "/nonexistent".into(),
    };
    Facts {
        agent: account("cc-agent", 987),
        proxy: account("pipelock-proxy", 988),
        login_range: LoginUidRange::default(),
        distro: DistroPaths::detect("ID=debian\n", |_| true),
        sshd_dropin_dir: true,
    }
}

/// Both shipped configs' renderings: defaults and the fixture with every option flipped.
fn renderings() -> Vec<RenderedFile> {
    let fixture = format!("{ROOT}/tests/fixtures/resolver-allowlist-drop.toml");
    let fixture = Config::parse(&std::fs::read_to_string(&fixture).unwrap(), &fixture).unwrap();
    let mut files = render_all(&Config::defaults(), &facts()).unwrap();
    files.extend(render_all(&fixture, &facts()).unwrap());
    files
}

fn write_temp(dir: &Path, index: usize, file: &RenderedFile) -> PathBuf {
    let name = format!("{index}-{}", file.path.file_name().unwrap());
    let path = dir.join(name);
    std::fs::write(&path, &file.contents).unwrap();
    path
}

fn run_ok(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn files_of(kind: FileKind) -> Vec<RenderedFile> {
    let files: Vec<_> = renderings()
        .into_iter()
        .filter(|f| f.kind == kind)
        .collect();
    assert!(!files.is_empty(), "no rendered file of kind {kind:?}");
    files
}

#[test]
fn rule_files_pass_nft_check() {
    if !testbed::have_or_skip("rule_files_pass_nft_check", "nft")
        || !testbed::have_or_skip("rule_files_pass_nft_check", "unshare")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A private network namespace (a user namespace too when not root): nft -c needs
    // CAP_NET_ADMIN, and the host's ruleset is never touched.
    let as_root = nix::unistd::geteuid().is_root();
    let mut files = files_of(FileKind::NftRules);
    // The table each session loads in its own network namespace.
    let mut session = files[0].clone();
    session.path = "(session table)".into();
    session.contents = pipelock_containment::session::session_ruleset(998);
    files.push(session);
    for (index, file) in files.iter().enumerate() {
        let path = write_temp(dir.path(), index, file);
        let mut command = Command::new("unshare");
        if !as_root {
            command.arg("--map-root-user");
        }
        command.args(["--net", "nft", "-c", "-f"]).arg(&path);
        run_ok(&mut command, &format!("nft -c -f {}", file.path));
    }
}

#[test]
fn broken_rule_file_is_rejected_by_nft_check() {
    if !testbed::have_or_skip("broken_rule_file_is_rejected_by_nft_check", "nft") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut file = files_of(FileKind::NftRules).remove(0);
    file.contents = file
        .contents
        .replace("jump agent_egress", "jump no_such_chain");
    let path = write_temp(dir.path(), 0, &file);
    let mut command = Command::new("unshare");
    if !nix::unistd::geteuid().is_root() {
        command.arg("--map-root-user");
    }
    let status = command
        .args(["--net", "nft", "-c", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "nft -c accepted a jump to a missing chain"
    );
}

#[test]
fn sudoers_dropins_pass_visudo() {
    if !testbed::have_or_skip("sudoers_dropins_pass_visudo", "visudo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (index, file) in files_of(FileKind::Sudoers).iter().enumerate() {
        assert!(
            !file.path.file_name().unwrap().contains('.'),
            "sudo skips drop-ins with a dot"
        );
        assert_eq!(file.mode, 0o440);
        let path = write_temp(dir.path(), index, file);
        run_ok(
            Command::new("visudo").arg("-cf").arg(&path),
            &format!("visudo -cf {}", file.path),
        );
    }
}

/// The rendered scripts and the packaged ones.
fn scripts() -> Vec<(String, String)> {
    let mut scripts: Vec<(String, String)> = renderings()
        .into_iter()
        .filter(|f| f.kind == FileKind::Wrapper)
        .map(|f| (f.path.to_string(), f.contents))
        .collect();
    for dir in ["debian", "rpm", "pkg/profile.d"] {
        for entry in std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let is_script =
                path.extension().is_some_and(|e| e == "sh") || text.starts_with("#!/bin/sh");
            if is_script {
                scripts.push((path.display().to_string(), text));
            }
        }
    }
    scripts
}

#[test]
fn scripts_parse_and_pass_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    let check = testbed::have_or_skip("scripts_parse_and_pass_shellcheck", "shellcheck");
    for (index, (name, text)) in scripts().iter().enumerate() {
        let path = dir.path().join(format!("script-{index}"));
        std::fs::write(&path, text).unwrap();
        run_ok(
            Command::new("sh").arg("-n").arg(&path),
            &format!("sh -n {name}"),
        );
        if check {
            // Scriptlets and profile snippets have no shebang: check them as sh.
            run_ok(
                Command::new("shellcheck")
                    .args(["--shell=sh", "--severity=style"])
                    .arg(&path),
                &format!("shellcheck {name}"),
            );
        }
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !testbed::have_or_skip("units_pass_systemd_analyze_verify", "systemd-analyze") {
        return;
    }
    let mut units: Vec<PathBuf> = std::fs::read_dir(format!("{ROOT}/systemd"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    units.sort();
    assert!(!units.is_empty());
    // The proxy unit together with its rendered drop-in, as systemd would load them.
    let dir = tempfile::tempdir().unwrap();
    let dropin = files_of(FileKind::SystemdDropIn).remove(0);
    let unit_dir = dir.path().join("pipelock-proxy.service.d");
    std::fs::create_dir(&unit_dir).unwrap();
    std::fs::write(
        unit_dir.join("50-pipelock-containment.conf"),
        &dropin.contents,
    )
    .unwrap();
    for unit in &units {
        std::fs::copy(unit, dir.path().join(unit.file_name().unwrap())).unwrap();
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(
            units
                .iter()
                .map(|u| dir.path().join(u.file_name().unwrap())),
        )
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A proxy binary that is not installed on the build machine is fine here.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains("is not executable: No such file or directory"))
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        output.status.success() || problems.is_empty(),
        "systemd-analyze verify: {}",
        problems.join("\n")
    );
    assert!(
        problems.is_empty(),
        "systemd-analyze verify: {}",
        problems.join("\n")
    );
}
