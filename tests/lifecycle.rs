//! Lifecycle tests that run the real binary as root in a throwaway copy of the host.
//!
//! Each test runs in `testbed::Sandbox` (`crates/testbed/sandbox.sh`): new mount, network and PID namespaces, overlays
//! over /etc, /usr and /var, tmpfs over /run and /tmp. useradd, nft, visudo and kill act on the
//! copies and on a private network namespace. Not root: each test prints `SKIPPED` and returns.

use std::path::PathBuf;
use std::process::Command;

/// Shell helpers every script gets.
const PRELUDE: &str = r#"
fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
# The file listing (path, mode, owner, type, link target) and the hashes of every file below
# /etc and the state directory (the listing covers all of /var/lib): what "the host is
# identical" means here.
snap() {
    find /etc /var/lib -xdev -printf '%p %m %U %G %y %s %l\n' | sort
    find /etc /var/lib/pipelock-containment /var/lib/cc-agent -xdev -type f -print0 2>/dev/null \
        | sort -z | xargs -0 sha256sum
}
ids() { pipelock-containment apply --dry-run --json | jq -r '.steps[].id'; }
AGENT_UID() { id -u cc-agent; }
"#;

/// A sandbox whose scripts get the helper functions above.
fn sandbox(tag: &str) -> testbed::Sandbox {
    testbed::Sandbox::new(tag, env!("CARGO_BIN_EXE_pipelock-containment")).with_prelude(PRELUDE)
}

fn needs_root(test: &str) -> bool {
    testbed::skip_unless_root(
        test,
        "user, mount and network namespaces, useradd, nft",
        &["unshare", "nft", "visudo", "jq", "setpriv"],
    )
}

/// Run `script` in a fresh sandbox as root (or skip loudly); it must print OK.
fn passes(test: &str, tag: &str, script: &str) {
    if needs_root(test) {
        return;
    }
    let out = sandbox(tag).must(script);
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}

/// The dry run lists exactly the operations the real run then carries out, accounts first:
/// on a fresh host, and again after a config change on an installed one.
#[test]
fn a_dry_run_lists_the_operations_the_real_run_carries_out() {
    passes(
        "a_dry_run_lists_the_operations_the_real_run_carries_out",
        "dry-equals-real",
        r#"
same_operations() {
    pipelock-containment apply --dry-run --json > /tmp/dry.json || fail "dry run ($1)"
    pipelock-containment apply --json > /tmp/real.json || fail "apply ($1)"
    jq -c '{accounts, steps: [.steps[].id]}' /tmp/dry.json > /tmp/dry.ids
    jq -c '{accounts, steps}' /tmp/real.json > /tmp/real.ids
    jq -e '.steps | length > 3' /tmp/dry.ids > /dev/null || fail "$1: the dry run plans too little: $(cat /tmp/dry.ids)"
    cmp -s /tmp/dry.ids /tmp/real.ids || fail "$1: the dry run planned
$(cat /tmp/dry.ids)
but apply carried out
$(cat /tmp/real.ids)"
}
same_operations "fresh host"
jq -e '.accounts | length > 0' /tmp/real.ids > /dev/null || fail "no account steps on a fresh host"
sed -i -e 's/listen_port = 8888/listen_port = 3128/' -e '/"codex",/d' /etc/pipelock-containment/containment.toml
same_operations "changed config"
jq -e '.accounts == []' /tmp/real.ids > /dev/null || fail "account steps on an installed host"
pipelock-containment apply --dry-run --json | jq -e '.changes == false and .accounts == [] and .steps == []' > /dev/null \
    || fail "a third run still plans something"
echo OK
"#,
    );
}

#[test]
fn apply_twice_reports_no_changes_and_loads_real_uids() {
    if needs_root("apply_twice_reports_no_changes_and_loads_real_uids") {
        return;
    }
    let sandbox = sandbox("twice");
    let out = sandbox.must(
        r#"
mkdir -p /etc/ssh/sshd_config.d   # the drop-in is written where sshd reads drop-ins
pipelock-containment apply > /tmp/first 2>&1 || { cat /tmp/first; fail "first apply"; }
cat /tmp/first
grep -q "applied" /tmp/first || fail "first apply reported no change"
grep -q "^deferred: systemd is not running" /tmp/first || fail "no deferral note"
pipelock-containment apply > /tmp/second 2>&1 || { cat /tmp/second; fail "second apply"; }
cat /tmp/second
grep -qx "no changes" /tmp/second || fail "second apply changed something"
pipelock-containment apply --dry-run | grep -qx "no changes" || fail "dry run after apply is not empty"
uid=$(id -u cc-agent)
nft list table inet pipelock_containment | grep -q "meta skuid $uid jump agent_egress" \
    || fail "table does not match agent UID $uid"
grep -q "meta skuid $uid " /etc/nftables.d/pipelock-containment.nft || fail "rule file UID"
[ "$(stat -c %a /etc/sudoers.d/pipelock-containment)" = 440 ] || fail "sudoers mode"
visudo -c >/dev/null || fail "sudoers as a whole invalid"
getent group pipelock-operators >/dev/null || fail "operators group"
[ -d /var/lib/cc-agent ] || fail "agent home"
[ "$(stat -c %U /var/lib/cc-agent)" = cc-agent ] || fail "agent home owner"
getent passwd cc-agent | grep -q nologin || fail "agent shell"
getent shadow cc-agent | cut -d: -f2 | grep -q '^[!*]' || fail "agent account not locked"
[ "$(getent shadow cc-agent | cut -d: -f8)" = 1 ] || fail "agent account not expired"
jq -e '.files | length == 9' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "manifest files"
jq -e '.users_created == ["cc-agent","pipelock-proxy"]' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "manifest users"
[ -L /etc/systemd/system/sysinit.target.wants/pipelock-containment.service ] || fail "containment unit not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/pipelock-proxy.service ] || fail "proxy unit not enabled"
[ -L /etc/systemd/system/paths.target.wants/pipelock-containment-ca.path ] || fail "CA path unit not enabled"
[ -L /etc/systemd/system/timers.target.wants/pipelock-containment-grants.timer ] || fail "grants timer not enabled"
[ "$(stat -c %a /etc/sudoers.d/pipelock-containment-grants)" = 440 ] || fail "grants sudoers mode"
# The rule works: a UDP send to loopback is refused at once for the agent, not for root.
bash -c 'echo x > /dev/udp/127.0.0.1/9' || fail "root UDP send failed"
setpriv --reuid cc-agent --regid cc-agent --clear-groups bash -c 'echo x > /dev/udp/127.0.0.1/9' 2>/dev/null \
    && fail "agent UDP send got through"
nft list counter inet pipelock_containment blocked | grep -q "packets 0" && fail "blocked counter did not count"
echo OK
"#,
    );
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn injected_failure_at_each_step_leaves_the_host_identical() {
    passes(
        "injected_failure_at_each_step_leaves_the_host_identical",
        "inject",
        r#"
# Fresh host: the accounts are created (and kept); then every step fails in turn.
PIPELOCK_CONTAINMENT_FAIL_AT=validate:/etc/nftables.d/pipelock-containment.nft \
    pipelock-containment apply >/tmp/out 2>&1 && fail "injected failure did not fail"
getent passwd cc-agent >/dev/null || fail "accounts were not created"
snap > /tmp/before; nft list ruleset > /tmp/rules-before
n=0
for id in $(ids); do
    n=$((n+1))
    PIPELOCK_CONTAINMENT_FAIL_AT=$id pipelock-containment apply > /tmp/out 2>&1
    rc=$?
    [ $rc = 1 ] || { cat /tmp/out; fail "fail at $id: exit $rc, want 1"; }
    grep -q "step \`$id\`" /tmp/out || { cat /tmp/out; fail "message does not name $id"; }
    snap > /tmp/after; nft list ruleset > /tmp/rules-after
    diff /tmp/before /tmp/after || fail "files differ after failure at $id"
    diff /tmp/rules-before /tmp/rules-after || fail "ruleset differs after failure at $id"
done
[ $n -ge 12 ] || fail "only $n steps"
echo "fresh host: $n injected failures, host identical each time"

# Applied host, then a changed config: the rollback restores the old files and the old table.
pipelock-containment apply >/dev/null || fail "apply"
sed -i -e 's/listen_port = 8888/listen_port = 3128/' -e '/"codex",/d' /etc/pipelock-containment/containment.toml
snap > /tmp/before; nft list ruleset > /tmp/rules-before
grep -q 8888 /tmp/rules-before || fail "old table not loaded"
m=0
for id in $(ids); do
    m=$((m+1))
    PIPELOCK_CONTAINMENT_FAIL_AT=$id pipelock-containment apply > /tmp/out 2>&1 && fail "fail at $id passed"
    snap > /tmp/after; nft list ruleset > /tmp/rules-after
    diff /tmp/before /tmp/after || fail "files differ after failure at $id (update)"
    diff /tmp/rules-before /tmp/rules-after || fail "ruleset differs after failure at $id (update)"
done
ids | grep -q '^remove:/var/lib/pipelock-containment/wrappers/codex$' || fail "stale wrapper not planned"
echo "update: $m injected failures, host identical each time"
pipelock-containment apply >/dev/null || fail "apply after injections"
nft list table inet pipelock_containment | grep -q "dport 3128" || fail "new table"
[ ! -e /var/lib/pipelock-containment/wrappers/codex ] || fail "stale wrapper kept"
echo OK
"#,
    );
}

#[test]
fn real_failures_roll_back() {
    passes(
        "real_failures_roll_back",
        "real",
        r#"
PIPELOCK_CONTAINMENT_FAIL_AT=validate:/etc/nftables.d/pipelock-containment.nft \
    pipelock-containment apply >/dev/null 2>&1 && fail "setup"
mkdir -p /var/lib/pipelock-containment/wrappers
snap > /tmp/before; nft list ruleset > /tmp/rules-before
check() {
    grep -q "the host is as before" /tmp/out || fail "rollback after $1 not reported complete"
    snap > /tmp/after; nft list ruleset > /tmp/rules-after
    diff /tmp/before /tmp/after || fail "files differ after $1"
    diff /tmp/rules-before /tmp/rules-after || fail "ruleset differs after $1"
}

# 1. A validator that rejects: visudo shimmed on PATH.
mkdir -p /tmp/shim
printf '#!/bin/sh\necho "shim: syntax error" >&2\nexit 1\n' > /tmp/shim/visudo; chmod +x /tmp/shim/visudo
PATH=/tmp/shim:$PATH pipelock-containment apply > /tmp/out 2>&1; rc=$?
cat /tmp/out
[ $rc = 1 ] || fail "visudo rejection: exit $rc"
grep -q "validate:/etc/sudoers.d/pipelock-containment" /tmp/out || fail "step not named"
grep -q "shim: syntax error" /tmp/out || fail "reason not shown"
check "visudo rejection"

# 2. An unwritable target directory (read-only bind mount) after the table went live.
mount --bind -o ro /var/lib/pipelock-containment/wrappers /var/lib/pipelock-containment/wrappers
pipelock-containment apply > /tmp/out 2>&1; rc=$?
cat /tmp/out
[ $rc = 1 ] || fail "read-only target: exit $rc"
grep -q "write:/var/lib/pipelock-containment/wrappers/claude" /tmp/out || fail "step not named"
grep -q "rolled back .*nft:load" /tmp/out || grep -q "rolled back nft:load" /tmp/out || fail "table load not rolled back"
check "read-only target"
umount /var/lib/pipelock-containment/wrappers

# 3. A missing tool: no nft.
mv /usr/sbin/nft /usr/sbin/nft.hidden
pipelock-containment apply > /tmp/out 2>&1; rc=$?
cat /tmp/out
mv /usr/sbin/nft.hidden /usr/sbin/nft
[ $rc = 1 ] || fail "missing nft: exit $rc"
grep -q "\`nft\` was not found" /tmp/out || fail "missing nft not named"
check "missing nft"
echo OK
"#,
    );
}

#[test]
fn remove_ends_agent_processes_and_leaves_nothing_then_purge() {
    passes(
        "remove_ends_agent_processes_and_leaves_nothing_then_purge",
        "remove",
        r#"
pipelock-containment apply >/dev/null || fail "apply"
uid=$(id -u cc-agent)
setpriv --reuid cc-agent --regid cc-agent --clear-groups sleep 1000 &
setpriv --reuid cc-agent --regid cc-agent --clear-groups sh -c 'trap "" TERM; while :; do sleep 1; done' &
# A fork-and-exit loop: each round leaves an orphan behind; a /proc scan always misses the newest.
setpriv --reuid cc-agent --regid cc-agent --clear-groups sh -c 'trap "" TERM; while :; do sh -c "trap \"\" TERM; sleep 100 &"; done' &
sleep 0.5
[ "$(pgrep -c -u "$uid")" -ge 10 ] || fail "agent processes not started"
pipelock-containment remove > /tmp/out 2>&1 || { cat /tmp/out; fail "remove"; }
cat /tmp/out
grep -q "ended [0-9]* process(es) running as cc-agent" /tmp/out || fail "no process count"
grep -q "with SIGKILL" /tmp/out || fail "no SIGKILL report"
sleep 0.2
[ "$(pgrep -c -u "$uid" || true)" = 0 ] || fail "agent processes survive"
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table still loaded"
for f in /etc/nftables.d/pipelock-containment.nft /etc/sudoers.d/pipelock-containment \
         /etc/systemd/system/pipelock-proxy.service.d/50-pipelock-containment.conf \
         /var/lib/pipelock-containment/wrappers; do
    [ ! -e "$f" ] || fail "$f left after remove"
done
[ ! -e /etc/systemd/system/multi-user.target.wants/pipelock-proxy.service ] || fail "proxy still enabled"
[ ! -e /etc/systemd/system/sysinit.target.wants/pipelock-containment.service ] || fail "unit still enabled"
[ ! -e /etc/systemd/system/paths.target.wants/pipelock-containment-ca.path ] || fail "CA path unit still enabled"
[ ! -e /etc/systemd/system/timers.target.wants/pipelock-containment-grants.timer ] || fail "grants timer still enabled"
getent passwd cc-agent >/dev/null || fail "remove deleted the agent user"
[ -f /etc/pipelock-containment/containment.toml ] || fail "remove deleted the config"
pipelock-containment remove >/dev/null 2>&1 || fail "second remove"
pipelock-containment purge > /tmp/out 2>&1 || { cat /tmp/out; fail "purge"; }
[ ! -e /var/lib/pipelock-containment ] || fail "state left after purge"
getent passwd cc-agent >/dev/null || fail "purge deleted users without opt-in"
[ ! -e /var/lib/cc-agent ] || fail "purge left the agent's home"

# Opted in: the setting is remembered at apply time, so purge works after the config is gone.
sed -i 's/delete_on_purge = false/delete_on_purge = true/' /etc/pipelock-containment/containment.toml
pipelock-containment apply >/dev/null || fail "apply 2"
grep -qx "agent cc-agent" /var/lib/pipelock-containment/purge-accounts || fail "purge list"
rm /etc/pipelock-containment/containment.toml   # what dpkg does before postrm purge
pipelock-containment purge > /tmp/out 2>&1 || { cat /tmp/out; fail "purge 2"; }
cat /tmp/out
getent passwd cc-agent >/dev/null && fail "agent user kept despite opt-in"
[ ! -e /var/lib/cc-agent ] || fail "the deleted agent's home is left"
getent passwd pipelock-proxy >/dev/null && fail "proxy user kept despite opt-in"
[ ! -e /var/lib/pipelock-containment ] || fail "state left"
echo OK
"#,
    );
}

#[test]
fn refuses_upstream_and_migrates_user_units() {
    passes(
        "refuses_upstream_and_migrates_user_units",
        "upstream",
        r#"
touch /etc/sudoers.d/50-pipelock-agent
pipelock-containment apply > /tmp/out 2>&1; rc=$?
cat /tmp/out
[ $rc = 1 ] || fail "upstream artefact: exit $rc"
grep -q "pipelock contain" /tmp/out || fail "message"
getent passwd cc-agent >/dev/null && fail "created users despite refusing"
rm /etc/sudoers.d/50-pipelock-agent

useradd -m -d /home/lifecycle-alice lifecycle-alice
u=/home/lifecycle-alice/.config/systemd/user
mkdir -p $u/default.target.wants
printf '[Service]\nExecStart=/usr/bin/pipelock run\n[Install]\nWantedBy=default.target\n' > $u/pipelock.service
ln -s $u/pipelock.service $u/default.target.wants/pipelock.service
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply"; }
grep -q "stop and disable pipelock.service for lifecycle-alice" /tmp/out || { cat /tmp/out; fail "no migration"; }
[ ! -e $u/default.target.wants/pipelock.service ] || fail "user unit still enabled"
jq -e '.user_units_disabled | length == 1' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "not recorded"
pipelock-containment apply | grep -qx "no changes" || fail "not idempotent after migration"
pipelock-containment remove >/dev/null || fail "remove"
[ "$(readlink $u/default.target.wants/pipelock.service)" = $u/pipelock.service ] || fail "user unit not restored"

# Root is required; a dry run is not.
setpriv --reuid nobody --regid nogroup --clear-groups pipelock-containment apply >/dev/null 2>&1; rc=$?
[ $rc = 77 ] || fail "non-root apply: exit $rc, want 77"
setpriv --reuid nobody --regid nogroup --clear-groups pipelock-containment apply --dry-run >/dev/null 2>&1 \
    || fail "non-root dry run"
echo OK
"#,
    );
}

/// Without systemd as PID 1 (the sandbox has none) a launch refuses, names what is missing, and
/// starts nothing: there is no fallback to an uncontained path.
#[test]
fn launch_fails_closed_without_systemd() {
    let launch = env!("CARGO_BIN_EXE_launch-session");
    passes(
        "launch_fails_closed_without_systemd",
        "launch-closed",
        &format!(
            r#"
pipelock-containment apply > /dev/null || fail "apply"
[ ! -d /run/systemd/system ] || fail "the sandbox has systemd"
out=$(SUDO_UID=0 SUDO_USER=root {launch} claude 2>&1); rc=$?
echo "$out"
[ $rc = 125 ] || fail "exit $rc, expected 125"
echo "$out" | grep -q "systemd is not running as PID 1" || fail "reason not named"
pgrep -u cc-agent && fail "an agent process started"
out=$(SUDO_UID=0 SUDO_USER=root {launch} not-allowed-tool 2>&1); rc=$?
[ $rc = 126 ] || fail "a tool off the list: exit $rc"
echo OK
"#
        ),
    );
}

#[test]
fn maintainer_scripts_parse_and_pass_shellcheck() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scripts: Vec<PathBuf> = [
        "debian/postinst",
        "debian/prerm",
        "debian/postrm",
        "rpm/pre.sh",
        "rpm/post.sh",
        "rpm/preun.sh",
        "rpm/postun.sh",
        "crates/testbed/sandbox.sh",
    ]
    .iter()
    .map(|s| root.join(s))
    .collect();
    for script in &scripts {
        let status = Command::new("sh").arg("-n").arg(script).status().unwrap();
        assert!(status.success(), "sh -n {}", script.display());
    }
    if !testbed::have_or_skip("maintainer_scripts_parse_and_pass_shellcheck", "shellcheck") {
        return;
    }
    let output = Command::new("shellcheck")
        .args(["-s", "sh"])
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !testbed::have_or_skip("units_pass_systemd_analyze_verify", "systemd-analyze") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = std::env::temp_dir().join(format!("lifecycle-units-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nftables.service.d")).unwrap();
    for unit in [
        "pipelock-containment.service",
        "pipelock-proxy.service",
        "pipelock-agents.slice",
        "pipelock-containment-bridge.socket",
    ] {
        std::fs::copy(root.join(unit), dir.join(unit)).unwrap();
    }
    // The package's binaries are not installed here: verify these units with a program that
    // exists in place of theirs.
    for (unit, exec) in [
        (
            "pipelock-containment-bridge.service",
            "ExecStart=/usr/libexec/pipelock-containment/pipelock-bridge",
        ),
        (
            "pipelock-containment-watch.service",
            "ExecStart=/usr/bin/pipelock-containment watch",
        ),
    ] {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        assert!(text.contains(exec), "{unit} has no {exec}");
        std::fs::write(dir.join(unit), text.replace(exec, "ExecStart=/bin/true")).unwrap();
    }
    std::fs::copy(
        root.join("nftables.service.d/pipelock-containment.conf"),
        dir.join("nftables.service.d/pipelock-containment.conf"),
    )
    .unwrap();
    // A stand-in nftables.service, so the drop-in and the ordering are checked too.
    std::fs::write(
        dir.join("nftables.service"),
        "[Unit]\nDescription=nftables\nDefaultDependencies=no\nBefore=network-pre.target\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/nft -f /etc/nftables.conf\n\
         ExecReload=/usr/sbin/nft -f /etc/nftables.conf\nExecStop=/usr/sbin/nft flush ruleset\n",
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "nftables.service",
            "pipelock-containment.service",
            "pipelock-proxy.service",
            "pipelock-agents.slice",
            "pipelock-containment-bridge.socket",
            "pipelock-containment-bridge.service",
            "pipelock-containment-watch.service",
        ])
        .current_dir(&dir)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn deb_maintainer_scripts_handle_every_argument() {
    passes(
        "deb_maintainer_scripts_handle_every_argument",
        "debscripts",
        &format!(
            r#"
D={root}/debian
sh -e $D/postinst configure "" > /tmp/out 2>&1 || {{ cat /tmp/out; fail "postinst configure (install)"; }}
nft list table inet pipelock_containment >/dev/null || fail "no table after install"
nft list ruleset > /tmp/rules
# Upgrade: prerm upgrade must not touch the table; postinst configure re-applies atomically.
sh -e $D/prerm upgrade 0.2.0 || fail "prerm upgrade"
nft list ruleset | diff /tmp/rules - || fail "prerm upgrade changed the ruleset"
sh -e $D/prerm failed-upgrade 0.1.0 || fail "prerm failed-upgrade"
sh -e $D/prerm deconfigure in-favour other 1.0 || fail "prerm deconfigure"
nft list ruleset | diff /tmp/rules - || fail "prerm opened a window"
sh -e $D/postrm upgrade 0.2.0 || fail "postrm upgrade"
sh -e $D/postinst configure 0.1.0 > /tmp/out 2>&1 || fail "postinst configure (upgrade)"
grep -q "^pipelock-containment: contained cc-agent (uid [0-9]*) behind 127.0.0.1:8888; no changes; 0 warning(s)" /tmp/out \
    || {{ cat /tmp/out; fail "upgrade with same templates changed something, or no one-line summary"; }}
[ "$(wc -l < /tmp/out)" = 1 ] || {{ cat /tmp/out; fail "postinst printed more than its summary"; }}
for a in abort-upgrade abort-remove abort-deconfigure; do
    sh -e $D/postinst $a 0.1.0 >/dev/null 2>&1 || fail "postinst $a"
done
sh -e $D/postrm abort-install || fail "postrm abort-install"
sh -e $D/postrm abort-upgrade 0.1.0 || fail "postrm abort-upgrade"
sh -e $D/postrm failed-upgrade 0.1.0 || fail "postrm failed-upgrade"
sh -e $D/postinst bogus 2>/dev/null && fail "postinst accepted an unknown argument"
sh -e $D/prerm bogus 2>/dev/null && fail "prerm accepted an unknown argument"
sh -e $D/postrm bogus 2>/dev/null && fail "postrm accepted an unknown argument"
# Opt in, then remove and purge as dpkg does: prerm remove, files (helper, conffile) gone,
# postrm remove, postrm purge.
sed -i 's/delete_on_purge = false/delete_on_purge = true/' /etc/pipelock-containment/containment.toml
sh -e $D/postinst configure 0.1.0 >/dev/null || fail "apply opt-in"
sh -e $D/prerm remove > /tmp/out 2>&1 || {{ cat /tmp/out; fail "prerm remove"; }}
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table left after prerm remove"
[ ! -e /etc/sudoers.d/pipelock-containment ] || fail "sudoers left after remove"
rm /usr/bin/pipelock-containment /etc/pipelock-containment/containment.toml
sh -e $D/postrm remove || fail "postrm remove"
getent passwd cc-agent >/dev/null || fail "users deleted on remove"
sh -e $D/postrm purge || fail "postrm purge"
getent passwd cc-agent >/dev/null && fail "agent kept despite opt-in"
[ ! -e /var/lib/cc-agent ] || fail "postrm purge left the deleted agent's home"
getent group pipelock-operators >/dev/null && fail "operators group kept despite opt-in"
[ ! -e /var/lib/pipelock-containment ] || fail "state left after purge"
[ ! -e /etc/pipelock-containment ] || fail "config dir left after purge"
echo OK
"#,
            root = env!("CARGO_MANIFEST_DIR")
        ),
    );
}

#[test]
fn rpm_scriptlets_follow_dollar_one() {
    passes(
        "rpm_scriptlets_follow_dollar_one",
        "rpmscripts",
        &format!(
            r#"
R={root}/rpm
# The accounts come from the block dist generates before rpm/pre.sh (xtask's rpm_scripts
# tests); without it %post's apply creates them.
sh $R/pre.sh 1 || fail "%pre 1"
sh $R/post.sh 1 > /tmp/out 2>&1 || {{ cat /tmp/out; fail "%post 1"; }}
getent passwd cc-agent >/dev/null || fail "%pre + %post created no agent"
[ -d "$(getent passwd cc-agent | cut -d: -f6)" ] || fail "agent home missing after %pre + %post"
nft list ruleset > /tmp/rules
# rpm -U: new %pre 2, new %post 2, old %preun 1, old %postun 1.
sh $R/pre.sh 2 && sh $R/post.sh 2 > /tmp/out 2>&1 || fail "%post 2"
grep -q "; no changes; " /tmp/out || {{ cat /tmp/out; fail "upgrade changed something"; }}
sh $R/preun.sh 1 && sh $R/postun.sh 1 || fail "%preun/%postun 1"
nft list ruleset | diff /tmp/rules - || fail "upgrade scriptlets touched the ruleset"
[ -f /var/lib/pipelock-containment/manifest.json ] || fail "%postun 1 removed the state"
# rpm -e: %preun 0, files removed, %postun 0.
sh $R/preun.sh 0 > /tmp/out 2>&1 || {{ cat /tmp/out; fail "%preun 0"; }}
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table left after erase"
rm /usr/bin/pipelock-containment
sh $R/postun.sh 0 || fail "%postun 0"
[ ! -e /var/lib/pipelock-containment ] || fail "state left after erase"
getent passwd cc-agent >/dev/null || fail "users deleted without opt-in"
echo OK
"#,
            root = env!("CARGO_MANIFEST_DIR")
        ),
    );
}

#[test]
fn image_build_without_kernel_nftables_defers_the_table() {
    passes(
        "image_build_without_kernel_nftables_defers_the_table",
        "image",
        r#"
# No CAP_NET_ADMIN: the kernel's nftables is out of reach, as in an image build.
nocap() { setpriv --bounding-set -net_admin --inh-caps -net_admin "$@"; }
nocap nft list tables >/dev/null 2>&1 && fail "nft still reachable without CAP_NET_ADMIN"
nocap pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply without nftables"; }
cat /tmp/out
grep -q "^deferred: the kernel's nftables is not reachable" /tmp/out || fail "table deferral not said"
grep -q "loads /etc/nftables.d/pipelock-containment.nft at first boot" /tmp/out || fail "first boot not said"
grep -q "^deferred: systemd is not running" /tmp/out || fail "unit deferral not said"
[ -f /etc/nftables.d/pipelock-containment.nft ] || fail "rule file not rendered"
[ -L /etc/systemd/system/sysinit.target.wants/pipelock-containment.service ] || fail "unit not enabled"
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table loaded in an image build"
jq -e '.table_loaded == false' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "manifest"
nocap pipelock-containment apply | grep -qx "no changes" || fail "second image-build apply changed something"
# First boot with the kernel back: the next apply loads the table.
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply with nftables"; }
grep -q "load the nft table" /tmp/out || { cat /tmp/out; fail "table not loaded once reachable"; }
nft list table inet pipelock_containment >/dev/null || fail "table missing"
echo OK
"#,
    );
}

#[test]
fn accounts_come_from_sysusers_when_packaged_and_names_are_defaults() {
    passes(
        "accounts_come_from_sysusers_when_packaged_and_names_are_defaults",
        "sysusers",
        r#"
cat > /usr/lib/sysusers.d/pipelock-containment.conf <<'X'
g pipelock-operators -
u pipelock-proxy - "pipelock egress proxy" /var/lib/pipelock /usr/sbin/nologin
u cc-agent - "pipelock-contained agent" /var/lib/cc-agent /usr/sbin/nologin
X
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply"; }
grep -q "systemd-sysusers /usr/lib/sysusers.d/pipelock-containment.conf" /tmp/out || { cat /tmp/out; fail "sysusers not used"; }
getent passwd cc-agent | grep -q ":/var/lib/cc-agent:/usr/sbin/nologin$" || fail "agent account"
[ "$(stat -c '%U %a' /var/lib/cc-agent)" = "cc-agent 750" ] || fail "agent home not made"
pipelock-containment apply | grep -qx "no changes" || fail "not idempotent"

# A renamed agent is not in the packaged file: adduser/useradd instead, with the config's home.
# The former agent's processes would be uncontained under the new table: they are ended.
old_uid=$(id -u cc-agent)
setpriv --reuid cc-agent --regid cc-agent --clear-groups sleep 1000 &
sleep 0.2
sed -i -e 's/^agent = "cc-agent"/agent = "lifecycle-robot"/' -e 's|^agent_home = .*|agent_home = "/var/lib/lifecycle-robot"|' \
    /etc/pipelock-containment/containment.toml
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply renamed"; }
grep -q "create system user lifecycle-robot (home /var/lib/lifecycle-robot)" /tmp/out || { cat /tmp/out; fail "renamed user"; }
[ "$(stat -c '%U %a' /var/lib/lifecycle-robot)" = "lifecycle-robot 750" ] || fail "renamed home"
grep -q "former agent UID $old_uid" /tmp/out || { cat /tmp/out; fail "former agent's processes not ended"; }
[ "$(pgrep -c -u "$old_uid" || true)" = 0 ] || fail "a former agent process survives"
uid=$(id -u lifecycle-robot)
nft list table inet pipelock_containment | grep -q "meta skuid $uid jump" || fail "table not re-rendered for the new agent"
echo OK
"#,
    );
}

#[test]
fn apply_builds_the_ca_bundle_and_remove_revokes_grants() {
    if needs_root("apply_builds_the_ca_bundle_and_remove_revokes_grants") {
        return;
    }
    for tool in ["openssl", "getfacl"] {
        assert!(
            testbed::have(tool),
            "`{tool}` is required to run this root test"
        );
    }
    let sandbox = sandbox("ca-grants");
    let out = sandbox.must(
        r#"
B=/etc/pipelock/combined-ca.pem
SYS=/etc/ssl/certs/ca-certificates.crt
[ -s $SYS ] || fail "no system bundle $SYS on this host"
mkdir -p /etc/pipelock
# The proxy's CA key, left world-readable (as a careless setup would).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=test-proxy-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -days 30 -keyout /etc/pipelock/ca-key.pem -out /tmp/proxy-ca.pem 2>/dev/null || fail "openssl"
chmod 0644 /etc/pipelock/ca-key.pem

# 1. No proxy CA yet: the bundle is the system roots; the key is locked down.
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply"; }
cat /tmp/out
[ "$(stat -c '%a %U %G' $B)" = "644 root root" ] || fail "bundle mode/owner: $(stat -c '%a %U %G' $B)"
first=$(sed -n '/BEGIN CERTIFICATE/{n;p;q}' $SYS)
grep -qxF "$first" $B || fail "the system roots are not in the bundle"
[ "$(stat -c '%a %U' /etc/pipelock/ca-key.pem)" = "600 pipelock-proxy" ] || fail "key: $(stat -c '%a %U' /etc/pipelock/ca-key.pem)"
setpriv --reuid cc-agent --regid cc-agent --clear-groups cat /etc/pipelock/ca-key.pem >/dev/null 2>&1 \
    && fail "the agent reads the CA key"
setpriv --reuid cc-agent --regid cc-agent --clear-groups cat $B >/dev/null || fail "the agent cannot read the bundle"
jq -e --arg b $B '.ca_bundle == $b' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "bundle not in the manifest"
pipelock-containment apply | grep -qx "no changes" || fail "second apply changed something"

# 2. The proxy CA appears: the dry run shows it; a failure at the CA step restores the old bundle.
install -m 0644 /tmp/proxy-ca.pem /etc/pipelock/ca.pem
pipelock-containment apply --dry-run > /tmp/dry 2>&1
grep -q "write the combined CA bundle $B" /tmp/dry || { cat /tmp/dry; fail "dry run misses the new proxy CA"; }
grep -q "^+# Proxy CA: /etc/pipelock/ca.pem" /tmp/dry || { cat /tmp/dry; fail "dry run diff"; }
snap > /tmp/before
PIPELOCK_CONTAINMENT_FAIL_AT=ca:bundle pipelock-containment apply > /tmp/out 2>&1 && fail "injected failure passed"
grep -q "rolled back ca:bundle" /tmp/out || { cat /tmp/out; fail "CA step not rolled back"; }
snap > /tmp/after
diff /tmp/before /tmp/after || fail "host differs after a failure at the CA step"
grep -q "test-proxy-ca" $B && fail "the failed refresh left the proxy CA in the bundle"
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply with proxy CA"; }
grep -q "test-proxy-ca" $B || fail "proxy CA not in the bundle"
openssl verify -CAfile $B /etc/pipelock/ca.pem >/dev/null || fail "bundle does not verify the proxy CA"
[ "$(stat -c '%a %U %G' $B)" = "644 root root" ] || fail "bundle mode/owner after refresh"
pipelock-containment apply | grep -qx "no changes" || fail "apply after the proxy CA changed something"

# 3. Key material at ca.proxy_ca: apply still succeeds, warns, keeps the bundle.
cp $B /tmp/bundle-good
install -m 0600 /etc/pipelock/ca-key.pem /etc/pipelock/ca.pem
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply failed on a bad proxy CA"; }
cat /tmp/out
grep -q "^pipelock-containment: WARNING: the combined CA bundle $B cannot be built" /tmp/out || fail "no loud warning"
grep -qx "no changes" /tmp/out || fail "a bad proxy CA changed something"
cmp -s $B /tmp/bundle-good || fail "bundle changed on a bad proxy CA"
install -m 0644 /tmp/proxy-ca.pem /etc/pipelock/ca.pem

# 4. A proxy CA outside the watched paths: the path unit gets a drop-in, until it is back.
D=/etc/systemd/system/pipelock-containment-ca.path.d/50-pipelock-containment.conf
sed -i 's|^proxy_ca = .*|proxy_ca = "/etc/lifecycle-ca/ca.pem"|' /etc/pipelock-containment/containment.toml
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply with a moved proxy CA"; }
grep -qx "PathChanged=/etc/lifecycle-ca/ca.pem" $D || fail "path unit drop-in"
grep -q "test-proxy-ca" $B && fail "the proxy CA stayed in the bundle after it moved away"
sed -i 's|^proxy_ca = .*|proxy_ca = "/etc/pipelock/ca.pem"|' /etc/pipelock-containment/containment.toml
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply back"; }
[ ! -e $D ] || fail "stale path unit drop-in kept"
grep -q "test-proxy-ca" $B || fail "proxy CA not back in the bundle"

# 5. A grant made before remove is revoked by remove: the ACLs are as before the grant.
mkdir -p /tmp/lp/proj/sub; echo secret > /tmp/lp/proj/sub/file; chmod 0700 /tmp/lp
setpriv --reuid cc-agent --regid cc-agent --clear-groups cat /tmp/lp/proj/sub/file >/dev/null 2>&1 \
    && fail "the agent reads the project before any grant"
acls() { getfacl -p /tmp /tmp/lp 2>/dev/null; getfacl -R -p /tmp/lp/proj 2>/dev/null; }
acls > /tmp/acl-before
pipelock-containment grant /tmp/lp/proj > /tmp/out 2>&1 || { cat /tmp/out; fail "grant"; }
setpriv --reuid cc-agent --regid cc-agent --clear-groups cat /tmp/lp/proj/sub/file >/dev/null || fail "grant gave no access"
pipelock-containment remove > /tmp/out 2>&1 || { cat /tmp/out; fail "remove"; }
cat /tmp/out
grep -q "revoked the grant of /tmp/lp/proj" /tmp/out || fail "remove did not report the revoke"
acls > /tmp/acl-after
diff /tmp/acl-before /tmp/acl-after || fail "ACLs differ after remove"
setpriv --reuid cc-agent --regid cc-agent --clear-groups cat /tmp/lp/proj/sub/file >/dev/null 2>&1 \
    && fail "the agent still reads the project"
[ ! -e $B ] || fail "bundle left after remove"
[ ! -e /etc/sudoers.d/pipelock-containment-grants ] || fail "grants sudoers left after remove"
[ -f /etc/pipelock/ca.pem ] || fail "remove deleted the proxy's CA"
[ -f /etc/pipelock/ca-key.pem ] || fail "remove deleted the proxy's key"
pipelock-containment purge > /tmp/out 2>&1 || { cat /tmp/out; fail "purge"; }
[ ! -e /var/lib/pipelock-containment/grants.json ] || fail "grant records left after purge"
echo OK
"#,
    );
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}

/// cron.deny, at.deny and the sshd drop-in: listed once, kept across applies, taken back
/// exactly on remove (owner and mode too); files apply created go. Remove deletes the agent's
/// crontab, at jobs, linger flag and user units without following a symlink it planted.
#[test]
fn ways_into_the_agent_account_close_and_are_taken_back_exactly() {
    passes(
        "ways_into_the_agent_account_close_and_are_taken_back_exactly",
        "ways-in",
        r#"
for p in crontab at; do
    [ -e /usr/bin/$p ] || { printf '#!/bin/sh\nexit 1\n' > /usr/bin/$p; chmod 755 /usr/bin/$p; }
done
rm -f /etc/cron.deny /etc/cron.allow /etc/at.allow
printf '# at.deny\nalias\nbackup\n' > /etc/at.deny
chown root:daemon /etc/at.deny; chmod 640 /etc/at.deny
cp -p /etc/at.deny /tmp/at.deny.orig
mkdir -p /etc/ssh/sshd_config.d
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply"; }
grep -qx cc-agent /etc/at.deny || fail "agent not in at.deny"
[ "$(grep -c . /etc/at.deny)" = 4 ] || fail "at.deny entries lost"
[ "$(stat -c '%U:%G %a' /etc/at.deny)" = "root:daemon 640" ] || fail "at.deny owner or mode changed"
[ "$(cat /etc/cron.deny)" = cc-agent ] || fail "cron.deny not created with the agent"
grep -qx "DenyUsers cc-agent" /etc/ssh/sshd_config.d/50-pipelock-containment.conf || fail "sshd drop-in"
jq -e '.deny_lists == {"/etc/at.deny": false, "/etc/cron.deny": true}' \
    /var/lib/pipelock-containment/manifest.json >/dev/null || fail "deny lists not recorded"
pipelock-containment apply | grep -qx "no changes" || fail "second apply changed something"
# sshd itself reads the drop-in: its effective config for a login as the agent denies it.
if [ -x /usr/sbin/sshd ]; then
    mkdir -p /run/sshd
    /usr/sbin/sshd -T -C user=cc-agent,host=h,addr=192.0.2.1 | grep -qx "denyusers cc-agent" \
        || fail "sshd -T does not deny the agent"
    /usr/sbin/sshd -T -C user=root,host=h,addr=192.0.2.1 | grep -q "^denyusers" || fail "no denyusers at all"
    pipelock-containment verify --json | jq -e '.probes[] | select(.name == "ssh-denied") | .status == "pass"' \
        >/dev/null || fail "ssh-denied probe"
fi
pipelock-containment verify --json | jq -e '.probes[] | select(.name == "cron-denied") | .status == "pass"' \
    >/dev/null || fail "cron-denied probe"

# Jobs the agent left, and a symlink trap in its home.
uid=$(id -u cc-agent); home=$(getent passwd cc-agent | cut -d: -f6)
mkdir -p /var/spool/cron/crontabs /var/spool/cron/atjobs /var/lib/systemd/linger
echo '* * * * * true' > /var/spool/cron/crontabs/cc-agent; chown cc-agent /var/spool/cron/crontabs/cc-agent
echo job > /var/spool/cron/atjobs/a0001; chown cc-agent /var/spool/cron/atjobs/a0001
echo other > /var/spool/cron/atjobs/a0002   # root's job stays
touch /var/lib/systemd/linger/cc-agent
echo keep > /etc/keep-me
setpriv --reuid cc-agent --regid cc-agent --clear-groups sh -c "
    mkdir -p $home/.config/systemd/user && echo '[Service]' > $home/.config/systemd/user/x.service
    ln -s /etc/keep-me $home/.config/systemd/user/trap" || fail "agent's user units"
pipelock-containment remove > /tmp/out 2>&1 || { cat /tmp/out; fail "remove"; }
cat /tmp/out
cmp /tmp/at.deny.orig /etc/at.deny || fail "at.deny not restored exactly"
[ "$(stat -c '%U:%G %a' /etc/at.deny)" = "root:daemon 640" ] || fail "at.deny owner or mode after remove"
[ ! -e /etc/cron.deny ] || fail "the cron.deny apply created is left"
[ ! -e /etc/ssh/sshd_config.d/50-pipelock-containment.conf ] || fail "sshd drop-in left"
[ -d /etc/ssh/sshd_config.d ] || fail "remove deleted sshd's drop-in directory"
for f in /var/spool/cron/crontabs/cc-agent /var/spool/cron/atjobs/a0001 /var/lib/systemd/linger/cc-agent \
         "$home/.config/systemd/user"; do
    [ ! -e "$f" ] || fail "$f left after remove"
done
[ -f /var/spool/cron/atjobs/a0002 ] || fail "root's at job deleted"
[ "$(cat /etc/keep-me)" = keep ] || fail "the symlink in the agent's home was followed"

# An admin who adds a user to the cron.deny apply created keeps the file (without the agent).
pipelock-containment apply >/dev/null || fail "apply 2"
echo bob >> /etc/cron.deny
pipelock-containment remove >/dev/null 2>&1 || fail "remove 2"
[ "$(cat /etc/cron.deny)" = bob ] || fail "cron.deny after remove: $(cat /etc/cron.deny)"
echo OK
"#,
    );
}

/// A process of the agent that cannot be ended keeps the table: remove says so, exits non-zero,
/// and the next remove (once it is gone) finishes.
#[test]
fn remove_keeps_the_table_while_an_agent_process_survives() {
    passes(
        "remove_keeps_the_table_while_an_agent_process_survives",
        "survivor",
        r#"
pipelock-containment apply >/dev/null || fail "apply"
PIPELOCK_CONTAINMENT_FAIL_AT=processes:cc-agent pipelock-containment remove > /tmp/out 2>&1; rc=$?
cat /tmp/out
[ $rc != 0 ] || fail "remove succeeded although the agent's processes were not ended"
grep -q "KEPT nft:delete" /tmp/out || fail "no word that the table is kept"
nft list table inet pipelock_containment >/dev/null 2>&1 || fail "the table went"
# From prerm too: the package removal fails rather than leave the agent uncontained.
PIPELOCK_CONTAINMENT_FAIL_AT=processes:cc-agent pipelock-containment remove --from-maintainer-script \
    > /tmp/out 2>&1 && { cat /tmp/out; fail "prerm remove succeeded with a surviving agent"; }
grep -q "the package is not removed" /tmp/out || { cat /tmp/out; fail "prerm did not say why"; }
nft list table inet pipelock_containment >/dev/null 2>&1 || fail "the table went (prerm)"
pipelock-containment remove > /tmp/out 2>&1 || { cat /tmp/out; fail "second remove"; }
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table left after the second remove"
echo OK
"#,
    );
}

/// `postrm disappear` (no prerm ran, the helper is gone) removes every file apply listed,
/// the grants' sudoers rule and the sshd drop-in included, and the table.
#[test]
fn postrm_without_the_helper_removes_every_managed_file() {
    passes(
        "postrm_without_the_helper_removes_every_managed_file",
        "disappear",
        &format!(
            r#"
D={root}/debian
mkdir -p /etc/ssh/sshd_config.d
pipelock-containment apply >/dev/null || fail "apply"
list=/var/lib/pipelock-containment/managed-files
files="/etc/nftables.d/pipelock-containment.nft /etc/sudoers.d/pipelock-containment
    /etc/sudoers.d/pipelock-containment-grants /etc/ssh/sshd_config.d/50-pipelock-containment.conf
    /etc/systemd/system/pipelock-proxy.service.d/50-pipelock-containment.conf"
for f in $files; do
    grep -qx "file $f" $list || fail "$f not in $list"
    [ -e "$f" ] || fail "$f not written"
done
bundle=$(sed -n 's/^bundle //p' $list)
[ -n "$bundle" ] || fail "no bundle line"
mkdir -p "$(dirname "$bundle")"
printf '%s\ncert\n' '{header}' > "$bundle"
rm /usr/bin/pipelock-containment
sh -e $D/postrm disappear other-package || fail "postrm disappear"
for f in $files "$bundle"; do [ ! -e "$f" ] || fail "$f left"; done
[ -d /etc/sudoers.d ] && [ -d /etc/ssh/sshd_config.d ] || fail "a directory of another package went"
nft list table inet pipelock_containment >/dev/null 2>&1 && fail "table left"
[ ! -e /var/lib/pipelock-containment ] || fail "state left"
echo OK
"#,
            root = env!("CARGO_MANIFEST_DIR"),
            header = pipelock_containment::ca::BUNDLE_HEADER,
        ),
    );
}

/// Every file apply writes goes through one writer that replaces a symlink at the target and
/// never follows it: links planted at each target path point at a file that must stay as it was.
#[test]
fn apply_never_follows_a_symlink_at_a_target_path() {
    passes(
        "apply_never_follows_a_symlink_at_a_target_path",
        "symlinks",
        r#"
mkdir -p /etc/ssh/sshd_config.d
pipelock-containment apply --dry-run --json | jq -r '.steps[] | select(.id | startswith("write:")) | .id[6:]' > /tmp/targets
[ "$(wc -l < /tmp/targets)" -ge 6 ] || fail "only $(wc -l < /tmp/targets) targets"
echo precious > /etc/victim
while read -r t; do
    mkdir -p "$(dirname "$t")"
    ln -s /etc/victim "$t"
done < /tmp/targets
pipelock-containment apply > /tmp/out 2>&1 || { cat /tmp/out; fail "apply"; }
[ "$(cat /etc/victim)" = precious ] || fail "a symlinked target was followed: /etc/victim changed"
while read -r t; do
    [ -f "$t" ] && [ ! -L "$t" ] || fail "$t is not a regular file after apply"
done < /tmp/targets
echo "$(wc -l < /tmp/targets) symlinked targets replaced, none followed"
echo OK
"#,
    );
}
