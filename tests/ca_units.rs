//! The CA refresh triggers as shipped: the systemd path/service units (systemd-analyze verify)
//! and the Debian update-ca-certificates hook (shellcheck, and how it behaves when run).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const HOOK: &str = "pkg/ca-certificates-hook/pipelock-containment";
const UNITS: [&str; 2] = [
    "systemd/pipelock-containment-ca.path",
    "systemd/pipelock-containment-ca.service",
];
const HELPER: &str = "/usr/bin/pipelock-containment";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn write_executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `systemd-analyze verify` in a scratch root holding the distro's units, the helper (a stub at
/// its install path) and ours, so the check needs nothing installed on this machine.
#[test]
fn ca_units_pass_systemd_analyze_verify() {
    if !testbed::have_or_skip("ca_units_pass_systemd_analyze_verify", "systemd-analyze") {
        return;
    }
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists());
    let Some(system_units) = system_units else {
        testbed::skip(
            "ca_units_pass_systemd_analyze_verify",
            "no systemd unit directory with sysinit.target here",
        );
        return;
    };
    let root = tempfile::Builder::new()
        .prefix("ca-units-")
        .tempdir()
        .unwrap();
    copy_dir(system_units, &root.path().join("usr/lib/systemd/system"));
    for program in [HELPER, "/usr/bin/sleep"] {
        write_executable(
            &root.path().join(program.trim_start_matches('/')),
            "#!/bin/sh\n",
        );
    }
    let unit_dir = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&unit_dir).unwrap();
    let mut args = Vec::new();
    for unit in UNITS {
        let name = Path::new(unit).file_name().unwrap();
        std::fs::copy(repo(unit), unit_dir.join(name)).unwrap();
        args.push(format!("/etc/systemd/system/{}", name.to_str().unwrap()));
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(format!("--root={}", root.path().display()))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Unknown keys are only warnings for systemd: any output fails the test.
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

#[test]
fn the_service_runs_ca_refresh_and_the_path_unit_triggers_it() {
    let service = std::fs::read_to_string(repo(UNITS[1])).unwrap();
    assert!(service.contains(&format!("\nExecStart={HELPER} ca refresh\n")));
    assert!(service.contains("\nType=oneshot\n"));
    let path = std::fs::read_to_string(repo(UNITS[0])).unwrap();
    assert!(path.contains("\nUnit=pipelock-containment-ca.service\n"));
    assert!(path.contains("\nWantedBy=paths.target\n"));
}

#[test]
fn the_hook_passes_shellcheck() {
    if !testbed::have_or_skip("the_hook_passes_shellcheck", "shellcheck") {
        return;
    }
    let output = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .arg(repo(HOOK))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_hook_name_has_no_dot_and_it_is_executable() {
    let name = Path::new(HOOK).file_name().unwrap().to_str().unwrap();
    // run-parts (used by update-ca-certificates) skips names with dots.
    assert!(name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    let mode = std::fs::metadata(repo(HOOK)).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "the hook must be executable");
}

/// Run a copy of the hook whose helper path points at `helper` (absent if `None`), with a
/// large certificate list on stdin as update-ca-certificates gives it.
fn run_hook(dir: &Path, helper: Option<&str>) -> std::process::Output {
    let fake = dir.join("helper");
    let _ = std::fs::remove_file(&fake);
    if let Some(script) = helper {
        write_executable(&fake, script);
    }
    let hook = std::fs::read_to_string(repo(HOOK)).unwrap();
    let line = format!("helper={HELPER}\n");
    assert!(hook.contains(&line), "the hook runs {HELPER}");
    let copy = dir.join("hook");
    write_executable(
        &copy,
        &hook.replace(&line, &format!("helper={}\n", fake.display())),
    );
    let mut child = Command::new(&copy)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 1 MiB: more than a pipe buffer, so a hook that does not drain stdin fails this write.
    let list = "+local-ca.pem\n".repeat(1 << 16);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .expect("the hook drains its stdin");
    child.wait_with_output().unwrap()
}

#[test]
fn the_hook_runs_ca_refresh_quietly_and_never_fails_the_update() {
    let dir = tempfile::Builder::new()
        .prefix("ca-hook-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("args");

    // Success: the helper's report is not shown.
    let ok = run_hook(
        dir.path(),
        Some(&format!(
            "#!/bin/sh\necho \"$@\" > {}\necho 'combined CA bundle: unchanged'\n",
            log.display()
        )),
    );
    assert!(ok.status.success());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ca refresh\n");
    assert!(
        ok.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(
        ok.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Failure: the update goes on, with the helper's error and a pointer to the command.
    let failed = run_hook(
        dir.path(),
        Some("#!/bin/sh\necho 'error: bad proxy CA' >&2\nexit 1\n"),
    );
    assert!(failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("error: bad proxy CA"), "{stderr}");
    assert!(stderr.contains("pipelock-containment: W:"), "{stderr}");

    // Package removed, hook left behind: silent success.
    let removed = run_hook(dir.path(), None);
    assert!(removed.status.success());
    assert!(removed.stderr.is_empty() && removed.stdout.is_empty());
}

/// The real update-ca-certificates of this machine runs the hook, which regenerates the bundle;
/// openssl and curl accept a proxy-signed server certificate through it. Root: the script runs
/// in testbed::Sandbox, on its overlays over /etc and /usr.
#[test]
fn update_ca_certificates_regenerates_the_bundle_through_the_hook() {
    if testbed::skip_unless_root(
        "update_ca_certificates_regenerates_the_bundle_through_the_hook",
        "mount namespace, overlays",
        &["update-ca-certificates", "openssl", "unshare"],
    ) {
        return;
    }
    let binary = env!("CARGO_BIN_EXE_pipelock-containment");
    let output = testbed::Sandbox::new("ca-hook", binary).output(&format!(
        "timeout 300 sh {} {binary} {} /tmp/ca-e2e",
        repo("tests/ca-update-hook.sh").display(),
        repo("").display()
    ));
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.ok, "tests/ca-update-hook.sh failed");
    assert!(stdout.contains("ok: update-ca-certificates regenerated the bundle"));
}

#[test]
fn the_e2e_script_passes_shellcheck() {
    if !testbed::have_or_skip("the_e2e_script_passes_shellcheck", "shellcheck") {
        return;
    }
    let output = Command::new("shellcheck")
        .arg("--shell=sh")
        .arg(repo("tests/ca-update-hook.sh"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
