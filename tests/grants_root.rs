//! Root acceptance test for workspace grants, in a throwaway copy of the host (see grants_root.sh).

#[test]
fn grant_revoke_expire_and_refusals_as_root() {
    if testbed::skip_unless_root(
        "grant_revoke_expire_and_refusals_as_root",
        "mount namespace, overlay /etc, tmpfs /home, setpriv, ACLs",
        &[
            "unshare", "setpriv", "getfacl", "setfacl", "mount", "jq", "sudo",
        ],
    ) {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    // The sudoers drop-in exactly as the helper renders it, for the test's operators' group.
    let mut config = pipelock_containment::config::Config::defaults();
    config.users.operators_group = "gr-ops".into();
    let sudoers = pipelock_containment::render::render_grants_sudoers(&config).unwrap();
    // Below /var, which the sandbox shows through its overlay (its /tmp is a fresh tmpfs).
    let dir = tempfile::Builder::new()
        .prefix("grants-sudoers.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let sudoers_path = dir.path().join("pipelock-containment-grants");
    std::fs::write(&sudoers_path, &sudoers.contents).unwrap();
    let binary = env!("CARGO_BIN_EXE_pipelock-containment");
    let output = testbed::Sandbox::new("grants", binary).output(&format!(
        "bash {root}/tests/grants_root.sh {binary} {root}/pkg/containment.toml {}",
        sudoers_path.display()
    ));
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.ok && stdout.contains("PASS: grants root acceptance"),
        "grants acceptance failed:\n{stdout}\n{stderr}"
    );
}
