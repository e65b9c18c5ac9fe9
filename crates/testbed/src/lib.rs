//! testbed: what the workspace's tests share: the one root-or-skip and have-tool checks, the
//! throwaway copy of the host root tests run in, its test internet, and generated certificates.

pub mod certs;
pub mod sandbox;

pub use sandbox::{Output, Sandbox, TEST_INTERNET};

/// This process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `tool` is on PATH or in an sbin directory.
pub fn have(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|dir| std::path::Path::new(dir).join(tool).is_file());
    found
}

/// Print the loud skip line every skipped test prints; returns true, for `if skip(..) { return }`.
pub fn skip(test: &str, why: &str) -> bool {
    eprintln!("SKIPPED: {test}: {why}");
    true
}

/// The one root-or-skip. Not root: skips loudly, naming what root is needed for, and returns
/// true. Root: every tool in `tools` must be installed (CI installs them), else the test fails,
/// so a missing tool never looks like a pass.
pub fn skip_unless_root(test: &str, needs: &str, tools: &[&str]) -> bool {
    if !is_root() {
        return skip(test, &format!("needs root ({needs})"));
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    assert!(
        missing.is_empty(),
        "{test}: running as root, but {missing:?} missing (`cargo xtask deps` installs them)"
    );
    false
}

/// The one have-tool for a check that needs an optional tool: present, true; missing, a loud
/// skip and false, except under CI (the `CI` variable), which must run every check.
pub fn have_or_skip(test: &str, tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: `{tool}` is missing, and CI must run every check (see .ci/run)"
    );
    skip(
        test,
        &format!("`{tool}` is not installed (apt-get install it to run this check)"),
    );
    false
}
