//! Tests of the pure bundle logic, with CAs generated in the test.

use super::*;
use testbed::certs::{bundle_of, ca, ca_without_cert_sign, leaf, long_ca, ymd};

fn now() -> i64 {
    ymd(2026, 6, 1)
}

/// How many times each DER appears among the bundle's certificates.
fn count(bundle: &str, der: &[u8]) -> usize {
    blocks(bundle.as_bytes())
        .iter()
        .filter(|b| b.label == "CERTIFICATE")
        .filter(|b| decode_cert(b).unwrap().der == der)
        .count()
}

fn cert_count(bundle: &str) -> usize {
    blocks(bundle.as_bytes()).len()
}

#[test]
fn bundle_is_system_roots_then_proxy_ca_once() {
    let (root1, root2, proxy) = (
        long_ca("root one"),
        long_ca("root two"),
        long_ca("proxy CA"),
    );
    let system = bundle_of(&[&root1, &root2]);
    let bundle = build_bundle(
        system.as_bytes(),
        "/etc/ssl/certs/ca-certificates.crt",
        Some((proxy.pem().as_bytes(), "/etc/pipelock/ca.pem")),
        now(),
    )
    .unwrap();
    assert_eq!(cert_count(&bundle.text), 3);
    for cert in [&root1, &root2, &proxy] {
        assert_eq!(count(&bundle.text, &cert.der()), 1);
    }
    // Order: system roots first, in their order, then the proxy CA.
    let ders: Vec<Vec<u8>> = blocks(bundle.text.as_bytes())
        .iter()
        .map(|b| decode_cert(b).unwrap().der)
        .collect();
    assert_eq!(ders, [root1.der(), root2.der(), proxy.der()]);
    assert_eq!(bundle.system_certificates, 2);
    assert_eq!(bundle.duplicates_skipped, 0);
    assert!(bundle.warnings.is_empty(), "{:?}", bundle.warnings);
    match &bundle.proxy_ca {
        ProxyCaStatus::Trusted {
            certificates,
            already_in_system,
        } => {
            assert_eq!(*already_in_system, 0);
            assert_eq!(certificates[0].subject, "CN=proxy CA");
            assert_eq!(certificates[0].sha256, fingerprint(&proxy.der()));
        }
        other => panic!("{other:?}"),
    }
    assert!(bundle.text.starts_with("# Combined CA bundle"));
    assert!(bundle.text.ends_with("-----END CERTIFICATE-----\n"));
}

#[test]
fn proxy_ca_already_in_system_bundle_appears_once() {
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let system = bundle_of(&[&root, &proxy]);
    let bundle = build_bundle(
        system.as_bytes(),
        "system",
        Some((proxy.pem().as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    assert_eq!(cert_count(&bundle.text), 2);
    assert_eq!(count(&bundle.text, &proxy.der()), 1);
    assert!(matches!(
        bundle.proxy_ca,
        ProxyCaStatus::Trusted {
            already_in_system: 1,
            ..
        }
    ));
}

#[test]
fn duplicates_in_the_system_bundle_are_dropped() {
    let (root1, root2, proxy) = (long_ca("root one"), long_ca("root two"), long_ca("proxy"));
    let system = bundle_of(&[&root1, &root2, &root1]);
    let proxy_file = bundle_of(&[&proxy, &proxy]);
    let bundle = build_bundle(
        system.as_bytes(),
        "system",
        Some((proxy_file.as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    assert_eq!(cert_count(&bundle.text), 3);
    assert_eq!(bundle.system_certificates, 2);
    assert_eq!(bundle.duplicates_skipped, 2);
}

#[test]
fn rebuilding_from_the_output_is_a_fixed_point() {
    // Run twice: feeding the combined bundle back in as the "system bundle" changes nothing
    // but the header, and the certificates stay exactly once.
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let system = bundle_of(&[&root]);
    let proxy_pem = proxy.pem();
    let first = build_bundle(
        system.as_bytes(),
        "system",
        Some((proxy_pem.as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    let again = build_bundle(
        system.as_bytes(),
        "system",
        Some((proxy_pem.as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    assert_eq!(first.text, again.text, "deterministic");
    let second = build_bundle(
        first.text.as_bytes(),
        "system",
        Some((proxy_pem.as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    assert_eq!(cert_count(&second.text), 2);
    assert_eq!(count(&second.text, &proxy.der()), 1);
}

#[test]
fn output_is_normalised_pem() {
    let root = long_ca("root");
    // CRLF line ends, leading spaces, comments in between (Fedora style), a trailing blank line.
    let messy = format!(
        "# ACCVRAIZ1\n{}\n\n",
        root.pem()
            .replace('\n', "\r\n")
            .replace("-----BEGIN", "  -----BEGIN")
    );
    let bundle = build_bundle(messy.as_bytes(), "system", None, now()).unwrap();
    assert!(!bundle.text.contains('\r'));
    let body: Vec<&str> = bundle
        .text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(body.first(), Some(&"-----BEGIN CERTIFICATE-----"));
    assert!(body.iter().all(|l| l.len() <= 64 || l.starts_with("-----")));
    assert_eq!(count(&bundle.text, &root.der()), 1);
}

#[test]
fn missing_proxy_ca_gives_system_roots_only() {
    let root = long_ca("root");
    let bundle = build_bundle(bundle_of(&[&root]).as_bytes(), "system", None, now()).unwrap();
    assert_eq!(bundle.proxy_ca, ProxyCaStatus::Missing);
    assert_eq!(cert_count(&bundle.text), 1);
    assert!(bundle.text.contains("TLS interception is not trusted"));
}

#[test]
fn a_key_file_given_as_the_ca_is_refused_and_never_copied() {
    let (root, proxy) = (long_ca("root"), long_ca("proxy CA"));
    let system = bundle_of(&[&root]);
    for file in [
        proxy.key_pem(),
        format!("{}{}", proxy.pem(), proxy.key_pem()),
    ] {
        let err = build_bundle(
            system.as_bytes(),
            "system",
            Some((file.as_bytes(), "/etc/pipelock/ca.pem")),
            now(),
        )
        .unwrap_err();
        assert!(matches!(err, CaError::PrivateKey { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("/etc/pipelock/ca.pem looks like a private key"),
            "{text}"
        );
        assert!(text.contains("no key material is copied"), "{text}");
        // The message never echoes the key.
        let key_body = proxy.key_pem().lines().nth(1).unwrap().to_string();
        assert!(!text.contains(&key_body));
    }
    // Other key flavours are caught by their label too.
    for label in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"] {
        let file = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        let err = parse_proxy_ca(file.as_bytes(), "k", now()).unwrap_err();
        assert!(
            matches!(err, CaError::PrivateKey { .. }),
            "{label}: {err:?}"
        );
    }
}

#[test]
fn a_key_in_the_system_bundle_is_left_out() {
    let root = long_ca("root");
    let system = format!("{}{}", root.pem(), root.key_pem());
    let bundle = build_bundle(system.as_bytes(), "system", None, now()).unwrap();
    assert_eq!(cert_count(&bundle.text), 1);
    assert!(!bundle.text.contains("PRIVATE KEY"));
    assert!(
        bundle.warnings[0].contains("never copied"),
        "{:?}",
        bundle.warnings
    );
}

#[test]
fn a_leaf_certificate_is_refused() {
    let issuer = long_ca("issuer");
    let server = leaf("example.test", &issuer);
    let err = parse_proxy_ca(server.pem().as_bytes(), "/etc/pipelock/ca.pem", now()).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("is not a CA (basicConstraints CA:TRUE is missing)"));
    // A chain with a leaf in it is refused as a whole.
    let chain = bundle_of(&[&server, &issuer]);
    assert!(parse_proxy_ca(chain.as_bytes(), "c", now()).is_err());
}

#[test]
fn a_ca_that_cannot_sign_certificates_is_refused() {
    let err = parse_proxy_ca(
        ca_without_cert_sign("no signing").pem().as_bytes(),
        "c",
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::NoCertSign { .. }), "{err:?}");
}

#[test]
fn files_without_certificates_are_refused() {
    for (file, der) in [
        (b"".to_vec(), false),
        (b"hello\n".to_vec(), false),
        (long_ca("x").der(), true),
    ] {
        match parse_proxy_ca(&file, "f", now()).unwrap_err() {
            CaError::NoCertificate { looks_like_der, .. } => assert_eq!(looks_like_der, der),
            other => panic!("{other:?}"),
        }
    }
    let err = parse_proxy_ca(b"", "/etc/pipelock/ca.pem", now()).unwrap_err();
    assert!(err.to_string().contains("holds no certificate"));
    // A broken certificate block is an error, not silently skipped.
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        parse_proxy_ca(broken.as_bytes(), "f", now()).unwrap_err(),
        CaError::BadCertificate { index: 1, .. }
    ));
    // An empty system bundle is refused (a truncated file must not wipe the trust store).
    assert!(matches!(
        build_bundle(b"", "system", None, now()).unwrap_err(),
        CaError::EmptySystemBundle { .. }
    ));
}

#[test]
fn an_expired_ca_warns_but_is_used() {
    let root = long_ca("root");
    let expired = ca("old proxy CA", (2026, 5, 1));
    let bundle = build_bundle(
        root.pem().as_bytes(),
        "system",
        Some((expired.pem().as_bytes(), "/etc/pipelock/ca.pem")),
        now(),
    )
    .unwrap();
    assert_eq!(bundle.warnings.len(), 1, "{:?}", bundle.warnings);
    let warning = &bundle.warnings[0];
    assert!(
        warning.contains("expired on 2026-05-01 00:00:00 UTC"),
        "{warning}"
    );
    assert!(warning.contains("CN=old proxy CA"), "{warning}");
    assert_eq!(count(&bundle.text, &expired.der()), 1);
}

#[test]
fn a_ca_expiring_within_30_days_warns() {
    let soon = ca("proxy CA", (2026, 6, 11));
    let (_, warnings) = parse_proxy_ca(soon.pem().as_bytes(), "p", now()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("expires in 10 days on 2026-06-11"),
        "{warnings:?}"
    );

    // 31 days out: no warning.
    let later = ca("proxy CA", (2026, 7, 2));
    let (_, warnings) = parse_proxy_ca(later.pem().as_bytes(), "p", now()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn a_ca_not_yet_valid_warns() {
    let cert = long_ca("future");
    let (_, warnings) = parse_proxy_ca(cert.pem().as_bytes(), "p", ymd(2019, 1, 1)).unwrap();
    assert!(
        warnings[0].contains("not valid before 2020-01-01"),
        "{warnings:?}"
    );
}

#[test]
fn bundle_membership_check() {
    let (root, proxy, other) = (long_ca("root"), long_ca("proxy"), long_ca("other"));
    let bundle = build_bundle(
        root.pem().as_bytes(),
        "system",
        Some((proxy.pem().as_bytes(), "proxy")),
        now(),
    )
    .unwrap();
    assert!(bundle_contains_proxy_ca(bundle.text.as_bytes(), proxy.pem().as_bytes(), "p").unwrap());
    assert!(
        !bundle_contains_proxy_ca(bundle.text.as_bytes(), other.pem().as_bytes(), "p").unwrap()
    );
    assert!(
        bundle_contains_proxy_ca(bundle.text.as_bytes(), proxy.key_pem().as_bytes(), "p").is_err()
    );
}

#[test]
fn who_can_read_a_file() {
    let file = |uid, gid, mode| FileAccess {
        uid,
        gid,
        mode,
        has_acl: false,
    };
    let agent = 990;
    let groups = [990, 50];
    // The proxy's key done right.
    assert!(!can_read(&file(991, 991, 0o600), agent, &groups));
    // World-readable.
    assert!(can_read(&file(991, 991, 0o644), agent, &groups));
    // Group-readable through a supplementary group, or not in the group.
    assert!(can_read(&file(991, 50, 0o640), agent, &groups));
    assert!(!can_read(&file(991, 991, 0o640), agent, &groups));
    // In the group with no group bit: "other" bits do not apply.
    assert!(!can_read(&file(991, 50, 0o604), agent, &groups));
    // Owned by the agent: it can chmod, so it counts as readable.
    assert!(can_read(&file(agent, 991, 0o000), agent, &groups));
    // An ACL with a readable mask may grant the agent a named entry.
    let acl = FileAccess {
        has_acl: true,
        ..file(991, 991, 0o640)
    };
    assert!(can_read(&acl, agent, &groups));
    let masked = FileAccess {
        has_acl: true,
        ..file(991, 991, 0o600)
    };
    assert!(!can_read(&masked, agent, &groups));
}

#[test]
fn comments_cannot_smuggle_pem_markers() {
    assert_eq!(
        sanitize("CN=x\n-----BEGIN CERTIFICATE-----"),
        "CN=x?-BEGIN CERTIFICATE-"
    );
}

#[test]
fn times_format_as_utc() {
    assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(
        format_time(ymd(2024, 2, 29) + 3661),
        "2024-02-29 01:01:01 UTC"
    );
    assert_eq!(format_time(-1), "1969-12-31 23:59:59 UTC");
}

#[test]
fn the_packaged_path_unit_watches_the_default_inputs() {
    let unit = include_str!("../../../../systemd/pipelock-containment-ca.path");
    let watched: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("PathChanged="))
        .collect();
    assert_eq!(watched, WATCHED_BY_DEFAULT);
    let config = crate::config::Config::defaults();
    assert!(WATCHED_BY_DEFAULT.contains(&config.ca.proxy_ca.as_str()));
    assert_eq!(path_unit_dropin(config.ca.proxy_ca.as_str(), None), None);
    for bundle in [
        crate::facts::DistroPaths::DEBIAN_CA_BUNDLE,
        crate::facts::DistroPaths::FEDORA_CA_BUNDLE,
    ] {
        assert!(WATCHED_BY_DEFAULT.contains(&bundle));
    }
}

#[test]
fn configured_inputs_elsewhere_get_a_drop_in() {
    let dropin = path_unit_dropin(
        "/srv/proxy/ca.pem",
        Some("/etc/ssl/certs/ca-certificates.crt"),
    )
    .unwrap();
    assert!(
        dropin.contains("[Path]\nPathChanged=/srv/proxy/ca.pem\n"),
        "{dropin}"
    );
    assert!(!dropin.contains("ca-certificates.crt"), "{dropin}");
}
