//! Tests of the host CA refresh against files in a temporary directory (no real /etc touched).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use testbed::certs::{bundle_of, long_ca, ymd, TestCert};

struct Fixture {
    _dir: tempfile::TempDir,
    paths: CaPaths,
    owners: Owners,
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn egid() -> u32 {
    nix::unistd::getegid().as_raw()
}

/// Paths in a fresh temp dir; the bundle is owned by whoever runs the test (root:root in CI),
/// the key by a stand-in proxy user when root (else the caller), the agent is another UID.
fn fixture(system: &[&TestCert]) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("ca-test-")
        .tempdir()
        .unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    let paths = CaPaths {
        system_bundle: root.join("system/ca-certificates.crt"),
        proxy_ca: root.join("pipelock/ca.pem"),
        proxy_ca_key: root.join("pipelock/ca-key.pem"),
        combined_bundle: root.join("pipelock/combined-ca.pem"),
    };
    std::fs::create_dir_all(root.join("system")).unwrap();
    std::fs::create_dir_all(root.join("pipelock")).unwrap();
    std::fs::write(&paths.system_bundle, bundle_of(system)).unwrap();
    let key_owner = if euid() == 0 {
        (64_001, 64_001)
    } else {
        (euid(), egid())
    };
    let owners = Owners {
        bundle: (euid(), egid()),
        key: key_owner,
        agent_uid: 64_002,
        agent_groups: vec![64_002],
    };
    Fixture {
        _dir: dir,
        paths,
        owners,
    }
}

fn now() -> i64 {
    ymd(2026, 6, 1)
}

fn count_certs(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn writes_roots_plus_proxy_ca_then_leaves_an_unchanged_bundle_alone() {
    let (root1, root2, proxy) = (
        long_ca("root one"),
        long_ca("root two"),
        long_ca("proxy CA"),
    );
    let f = fixture(&[&root1, &root2]);
    std::fs::write(&f.paths.proxy_ca, proxy.pem()).unwrap();

    let first = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert_eq!(first.bundle, BundleAction::Written);
    assert!(first.interception_trusted());
    let text = std::fs::read_to_string(&f.paths.combined_bundle).unwrap();
    assert_eq!(count_certs(&text), 3);
    assert_eq!(
        text.matches(&proxy.pem()).count(),
        1,
        "proxy CA exactly once"
    );
    let meta = std::fs::metadata(&f.paths.combined_bundle).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!((meta.uid(), meta.gid()), f.owners.bundle);

    // Same inputs again: nothing written (same inode, same mtime).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert_eq!(second.bundle, BundleAction::Unchanged);
    assert!(
        second.report()[0].contains(": unchanged ("),
        "{:?}",
        second.report()
    );
    let again = std::fs::metadata(&f.paths.combined_bundle).unwrap();
    assert_eq!(again.ino(), meta.ino());
    assert_eq!(again.mtime_nsec(), meta.mtime_nsec());
    assert_eq!(again.mtime(), meta.mtime());

    // The proxy CA lands in the system bundle too (an operator ran update-ca-certificates).
    std::fs::write(&f.paths.system_bundle, bundle_of(&[&root1, &root2, &proxy])).unwrap();
    let third = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    let text = std::fs::read_to_string(&f.paths.combined_bundle).unwrap();
    assert_eq!(count_certs(&text), 3);
    assert_eq!(text.matches(&proxy.pem()).count(), 1);
    assert!(matches!(
        third.proxy_ca,
        ProxyCaStatus::Trusted {
            already_in_system: 1,
            ..
        }
    ));
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(f.paths.combined_bundle.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn dry_run_writes_nothing() {
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let f = fixture(&[&root]);
    std::fs::write(&f.paths.proxy_ca, proxy.pem()).unwrap();
    std::fs::write(&f.paths.proxy_ca_key, proxy.key_pem()).unwrap();
    std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o644)).unwrap();
    let outcome = refresh_at(&f.paths, &f.owners, now(), true).unwrap();
    assert_eq!(outcome.bundle, BundleAction::WouldWrite);
    assert!(!f.paths.combined_bundle.exists());
    assert!(outcome.key.agent_can_read, "dry run changes nothing");
    assert!(!outcome.key.changes.is_empty());
    let mode = std::fs::metadata(&f.paths.proxy_ca_key).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o644);
}

#[test]
fn missing_proxy_ca_gives_system_roots_and_says_interception_is_not_trusted() {
    let root = long_ca("root");
    let f = fixture(&[&root]);
    let outcome = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert!(!outcome.interception_trusted());
    let text = std::fs::read_to_string(&f.paths.combined_bundle).unwrap();
    assert_eq!(count_certs(&text), 1);
    let report = outcome.report().join("\n");
    assert!(
        report.contains("TLS interception is not trusted yet"),
        "{report}"
    );
    assert!(report.contains(f.paths.proxy_ca.as_str()), "{report}");
}

#[test]
fn a_refused_proxy_ca_keeps_the_previous_bundle() {
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let f = fixture(&[&root]);
    std::fs::write(&f.paths.proxy_ca, proxy.pem()).unwrap();
    refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    let before = std::fs::read(&f.paths.combined_bundle).unwrap();

    // The operator copies the key where the certificate belongs.
    std::fs::write(&f.paths.proxy_ca, proxy.key_pem()).unwrap();
    let err = refresh_at(&f.paths, &f.owners, now(), false).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("looks like a private key"), "{text}");
    assert_eq!(std::fs::read(&f.paths.combined_bundle).unwrap(), before);
    assert!(!String::from_utf8(before).unwrap().contains("PRIVATE KEY"));
    // World-readable, so the agent can read the key there: said first.
    std::fs::set_permissions(&f.paths.proxy_ca, Permissions::from_mode(0o644)).unwrap();
    let err = refresh_at(&f.paths, &f.owners, now(), false).unwrap_err();
    assert!(
        format!("{err:#}").contains("holds a private key that the agent user can read"),
        "{err:#}"
    );
    // The key file proper is still locked down in the same run.
    std::fs::write(&f.paths.proxy_ca_key, proxy.key_pem()).unwrap();
    std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o644)).unwrap();
    assert!(refresh_at(&f.paths, &f.owners, now(), false).is_err());
    let mode = std::fs::metadata(&f.paths.proxy_ca_key).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}

#[test]
fn missing_system_bundle_is_a_clear_error() {
    let f = fixture(&[]);
    std::fs::remove_file(&f.paths.system_bundle).unwrap();
    let err = refresh_at(&f.paths, &f.owners, now(), false).unwrap_err();
    assert!(format!("{err:#}").contains("ca.system_bundle"), "{err:#}");
}

#[test]
fn wrong_mode_with_same_contents_is_fixed_without_rewriting_contents() {
    let root = long_ca("root");
    let f = fixture(&[&root]);
    refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    std::fs::set_permissions(&f.paths.combined_bundle, Permissions::from_mode(0o600)).unwrap();
    let outcome = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert_eq!(outcome.bundle, BundleAction::PermissionsFixed);
    let mode = std::fs::metadata(&f.paths.combined_bundle).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o644);
}

#[test]
fn a_symlinked_bundle_is_replaced_not_followed() {
    let root = long_ca("root");
    let f = fixture(&[&root]);
    let victim = f.paths.combined_bundle.with_file_name("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, &f.paths.combined_bundle).unwrap();
    refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let meta = std::fs::symlink_metadata(&f.paths.combined_bundle).unwrap();
    assert!(meta.file_type().is_file());
}

#[test]
fn the_key_gets_the_proxy_owner_and_0600_and_the_agent_reader_is_reported() {
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let f = fixture(&[&root]);
    std::fs::write(&f.paths.proxy_ca, proxy.pem()).unwrap();
    std::fs::write(&f.paths.proxy_ca_key, proxy.key_pem()).unwrap();
    std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o644)).unwrap();

    let outcome = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert!(outcome.key.agent_could_read_before);
    assert!(!outcome.key.agent_can_read);
    let meta = std::fs::metadata(&f.paths.proxy_ca_key).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), f.owners.key);
    let report = outcome.report().join("\n");
    assert!(report.contains("mode 0644 -> 0600"), "{report}");
    assert!(report.contains("could read the proxy CA key"), "{report}");
    // The key never reaches the bundle.
    let text = std::fs::read_to_string(&f.paths.combined_bundle).unwrap();
    assert!(!text.contains("PRIVATE KEY"));

    // Second run: nothing to fix.
    let again = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert!(again.key.changes.is_empty(), "{:?}", again.key.changes);
    assert!(!again.key.agent_could_read_before);

    let inspection = inspect_at(&f.paths, &f.owners, now());
    assert_eq!(inspection.agent_can_read_key, Some(false));
    assert_eq!(inspection.bundle_contains_proxy_ca, Some(true));
    assert!(inspection.bundle_current);
    assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
}

#[test]
fn a_group_readable_key_is_reported_for_an_agent_in_that_group() {
    let root = long_ca("root");
    let f = fixture(&[&root]);
    std::fs::write(&f.paths.proxy_ca_key, "key\n").unwrap();
    std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o640)).unwrap();
    let mut owners = f.owners.clone();
    owners.agent_groups.push(egid());
    assert_eq!(
        inspect_at(&f.paths, &owners, now()).agent_can_read_key,
        Some(true)
    );
    // Not in the group: the same file is safe from the agent.
    assert_eq!(
        inspect_at(&f.paths, &f.owners, now()).agent_can_read_key,
        Some(false)
    );
}

#[test]
fn a_symlinked_or_hard_linked_key_is_refused() {
    let root = long_ca("root");
    let f = fixture(&[&root]);
    let elsewhere = f.paths.proxy_ca_key.with_file_name("elsewhere");
    std::fs::write(&elsewhere, "not the key\n").unwrap();
    std::fs::set_permissions(&elsewhere, Permissions::from_mode(0o644)).unwrap();

    std::os::unix::fs::symlink(&elsewhere, &f.paths.proxy_ca_key).unwrap();
    let err = refresh_at(&f.paths, &f.owners, now(), false).unwrap_err();
    assert!(format!("{err:#}").contains("is a symlink"), "{err:#}");
    // An unreadable answer counts as readable for verify.
    assert_eq!(
        inspect_at(&f.paths, &f.owners, now()).agent_can_read_key,
        Some(true)
    );

    std::fs::remove_file(&f.paths.proxy_ca_key).unwrap();
    std::fs::hard_link(&elsewhere, &f.paths.proxy_ca_key).unwrap();
    let err = refresh_at(&f.paths, &f.owners, now(), false).unwrap_err();
    assert!(format!("{err:#}").contains("hard links"), "{err:#}");
    let meta = std::fs::metadata(&elsewhere).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644, "the other file is untouched");
}

#[test]
fn inspection_notices_a_stale_bundle() {
    let (root, proxy, newer) = (
        long_ca("root"),
        long_ca("proxy CA"),
        long_ca("new proxy CA"),
    );
    let f = fixture(&[&root]);
    std::fs::write(&f.paths.proxy_ca, proxy.pem()).unwrap();
    refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    std::fs::write(&f.paths.proxy_ca, newer.pem()).unwrap();
    let inspection = inspect_at(&f.paths, &f.owners, now());
    assert_eq!(inspection.bundle_contains_proxy_ca, Some(false));
    assert!(!inspection.bundle_current);
    assert_eq!(inspection.agent_can_read_key, None);
}

/// Try to read `path` as `uid:gid` (std drops supplementary groups when root sets a UID).
fn read_as(uid: u32, gid: u32, path: &Utf8Path) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("cat")
        .arg(path)
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_agent_really_cannot_read_the_fixed_key() {
    if euid() != 0 {
        eprintln!("SKIPPED: the_agent_really_cannot_read_the_fixed_key: needs root (reads the key as another UID)");
        return;
    }
    let proxy = long_ca("proxy CA");
    let f = fixture(&[&long_ca("root")]);
    // Let other users through the temp directory, as through /etc/pipelock.
    let mut dir = f.paths.proxy_ca_key.parent().unwrap();
    while dir.as_str() != "/tmp" && dir.starts_with(std::env::temp_dir()) {
        std::fs::set_permissions(dir, Permissions::from_mode(0o755)).unwrap();
        dir = dir.parent().unwrap();
    }
    std::fs::write(&f.paths.proxy_ca_key, proxy.key_pem()).unwrap();
    std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o640)).unwrap();
    let agent = (f.owners.agent_uid, f.owners.agent_groups[0]);
    // A named ACL entry for the agent: the mode alone (0640, root's group) would not show it.
    let acl = std::process::Command::new("setfacl")
        .args(["-m", &format!("u:{}:r", agent.0)])
        .arg(&f.paths.proxy_ca_key)
        .status();
    let with_acl = matches!(acl, Ok(status) if status.success());
    if !with_acl {
        eprintln!("SKIPPED (part): the_agent_really_cannot_read_the_fixed_key: setfacl unavailable, testing a 0644 key instead");
        std::fs::set_permissions(&f.paths.proxy_ca_key, Permissions::from_mode(0o644)).unwrap();
    }
    assert!(
        read_as(agent.0, agent.1, &f.paths.proxy_ca_key),
        "the test setup must let the agent read the key first"
    );
    assert_eq!(
        inspect_at(&f.paths, &f.owners, now()).agent_can_read_key,
        Some(true)
    );

    let outcome = refresh_at(&f.paths, &f.owners, now(), false).unwrap();
    assert!(outcome.key.agent_could_read_before);
    assert!(!outcome.key.agent_can_read);
    assert!(!read_as(agent.0, agent.1, &f.paths.proxy_ca_key));
    // The proxy user still reads its key.
    assert!(read_as(
        f.owners.key.0,
        f.owners.key.1,
        &f.paths.proxy_ca_key
    ));
    // And everyone reads the bundle.
    assert!(read_as(agent.0, agent.1, &f.paths.combined_bundle));
}
