//! Root acceptance test for workspace grants, isolated in a private mount namespace (see grants_root.sh).

use std::process::Command;

#[test]
fn grant_revoke_expire_and_refusals_as_root() {
    if testbed::skip_unless_root(
        "grant_revoke_expire_and_refusals_as_root",
        "mount namespace, overlay /etc, tmpfs /home, setpriv, ACLs",
        &["unshare", "setpriv", "getfacl", "setfacl", "mount", "jq"],
    ) {
        return;
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--fork", "--", "true"])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!(
            "SKIPPED: grant_revoke_expire_and_refusals_as_root: root, but `unshare --mount` \
             fails here (a container without CAP_SYS_ADMIN?)"
        );
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    // The sudoers drop-in exactly as the helper renders it, for the test's operators' group.
    let mut config = pipelock_containment::config::Config::defaults();
    config.users.operators_group = "gr-ops".into();
    let sudoers = pipelock_containment::render::render_grants_sudoers(&config).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("grants-sudoers.")
        .tempdir()
        .unwrap();
    let sudoers_path = dir.path().join("pipelock-containment-grants");
    std::fs::write(&sudoers_path, &sudoers.contents).unwrap();
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "--",
            "bash",
        ])
        .arg(format!("{root}/tests/grants_root.sh"))
        .arg(env!("CARGO_BIN_EXE_pipelock-containment"))
        .arg(format!("{root}/pkg/containment.toml"))
        .arg(&sudoers_path)
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success() && stdout.contains("PASS: grants root acceptance"),
        "grants acceptance failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
