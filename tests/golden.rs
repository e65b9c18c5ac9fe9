//! Golden tests: every template rendered for fixed facts, compared with committed snapshots.
//!
//! Regenerate after an intended change with `INSTA_UPDATE=always cargo test --test golden`
//! (or `cargo insta review`), then review the diff of `tests/snapshots/`.

use pipelock_containment::config::Config;
use pipelock_containment::facts::{Account, DistroPaths, Facts, LoginUidRange};
use pipelock_containment::render::{render_all, RenderedFile};

fn facts(agent_uid: u32, proxy_uid: u32) -> Facts {
    Facts {
        agent: Account {
            name: "cc-agent".into(),
            uid: agent_uid,
            gid: agent_uid,
            home: "/var/lib/cc-agent".into(),
        },
        proxy: Account {
            name: "pipelock-proxy".into(),
            uid: proxy_uid,
            gid: proxy_uid,
            home: "/var/lib/pipelock".into(),
        },
        login_range: LoginUidRange::default(),
        distro: DistroPaths::detect("ID=debian\n", |_| true),
        sshd_dropin_dir: true,
    }
}

fn config(fixture: &str) -> Config {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Config::parse(&text, &path).unwrap()
}

/// All files of one rendering as one reviewable text.
fn joined(files: &[RenderedFile]) -> String {
    files
        .iter()
        .map(|f| {
            format!(
                "==> {} ({:?}, mode {:04o}) <==\n{}",
                f.path, f.kind, f.mode, f.contents
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn defaults_uids_987_988() {
    let files = render_all(&Config::defaults(), &facts(987, 988)).unwrap();
    insta::assert_snapshot!(joined(&files));
}

#[test]
fn defaults_uids_990_120() {
    let files = render_all(&Config::defaults(), &facts(990, 120)).unwrap();
    insta::assert_snapshot!(joined(&files));
}

#[test]
fn resolver_allowlist_drop_ipv6_proxy() {
    let files = render_all(&config("resolver-allowlist-drop.toml"), &facts(987, 988)).unwrap();
    insta::assert_snapshot!(joined(&files));
}

/// The UID substitution: another host's UIDs change those tokens and nothing else.
#[test]
fn different_uids_change_only_uid_tokens() {
    let a = render_all(&Config::defaults(), &facts(987, 988)).unwrap();
    let b = render_all(&Config::defaults(), &facts(990, 120)).unwrap();
    assert_eq!(a.len(), b.len());
    let mut changed_lines = 0;
    for (fa, fb) in a.iter().zip(&b) {
        assert_eq!(fa.path, fb.path);
        assert_eq!(fa.contents.lines().count(), fb.contents.lines().count());
        for (la, lb) in fa.contents.lines().zip(fb.contents.lines()) {
            if la != lb {
                changed_lines += 1;
                let la = la.replace("987", "U_AGENT").replace("988", "U_PROXY");
                let lb = lb.replace("990", "U_AGENT").replace("120", "U_PROXY");
                assert_eq!(la, lb, "{}: a line differs in more than its UIDs", fa.path);
            }
        }
    }
    // The rule file's header names both UIDs; the jump names the agent's.
    assert_eq!(changed_lines, 3);
}

/// The packaged D-Bus policy, rendered from the default config at build time.
#[test]
fn dbus_policy_defaults() {
    let text = pipelock_containment::render::render_dbus_policy(&Config::defaults()).unwrap();
    insta::assert_snapshot!(text);
}
