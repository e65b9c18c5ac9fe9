//! Lifecycle tests that run the real binary as root in a throwaway copy of the host.
//!
//! Each test runs `tests/support/sandbox.sh`: new mount, network and PID namespaces, overlays
//! over /etc, /usr and /var, tmpfs over /run and /tmp. useradd, nft, visudo and kill act on the
//! copies and on a private network namespace. Not root: each test prints `SKIPPED` and returns.

use std::path::PathBuf;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_pipelock-containment");

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn skip(test: &str, why: &str) -> bool {
    eprintln!("SKIPPED: {test}: {why}");
    true
}

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

struct Sandbox {
    work: PathBuf,
}

impl Sandbox {
    fn new(test: &str) -> Sandbox {
        let work =
            std::env::temp_dir().join(format!("lifecycle-test-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        Sandbox { work }
    }

    /// Run `script` in the sandbox; returns (exit status success, stdout+stderr).
    fn run(&self, script: &str) -> (bool, String) {
        let support = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sandbox.sh");
        let output = Command::new("sh")
            .arg(&support)
            .arg(&self.work)
            .arg(BINARY)
            .arg(format!("{PRELUDE}\n{script}"))
            .output()
            .expect("running the sandbox");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    fn must(&self, script: &str) -> String {
        let (ok, text) = self.run(script);
        assert!(ok, "sandbox script failed:\n{text}");
        text
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn needs_root(test: &str) -> bool {
    if !is_root() {
        return skip(
            test,
            "needs root (user, mount and network namespaces, useradd, nft)",
        );
    }
    for tool in ["unshare", "nft", "visudo", "jq", "setpriv"] {
        if which(tool).is_none() {
            // CI installs these; a missing tool must not look like a pass.
            panic!("{test}: `{tool}` is required to run this root test");
        }
    }
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(tool))
        .find(|p| p.is_file())
}

#[test]
fn apply_twice_reports_no_changes_and_loads_real_uids() {
    if needs_root("apply_twice_reports_no_changes_and_loads_real_uids") {
        return;
    }
    let sandbox = Sandbox::new("twice");
    let out = sandbox.must(
        r#"
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
jq -e '.files | length == 7' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "manifest files"
jq -e '.users_created == ["cc-agent","pipelock-proxy"]' /var/lib/pipelock-containment/manifest.json >/dev/null || fail "manifest users"
[ -L /etc/systemd/system/sysinit.target.wants/pipelock-containment.service ] || fail "containment unit not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/pipelock-proxy.service ] || fail "proxy unit not enabled"
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
    if needs_root("injected_failure_at_each_step_leaves_the_host_identical") {
        return;
    }
    let sandbox = Sandbox::new("inject");
    let out = sandbox.must(
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
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn real_failures_roll_back() {
    if needs_root("real_failures_roll_back") {
        return;
    }
    let sandbox = Sandbox::new("real");
    let out = sandbox.must(
        r#"
PIPELOCK_CONTAINMENT_FAIL_AT=validate:/etc/nftables.d/pipelock-containment.nft \
    pipelock-containment apply >/dev/null 2>&1 && fail "setup"
mkdir -p /var/lib/pipelock-containment/wrappers
snap > /tmp/before; nft list ruleset > /tmp/rules-before
check() {
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
grep -q "write:/var/lib/pipelock-containment/wrappers/cc-launch" /tmp/out || fail "step not named"
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
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn remove_ends_agent_processes_and_leaves_nothing_then_purge() {
    if needs_root("remove_ends_agent_processes_and_leaves_nothing_then_purge") {
        return;
    }
    let sandbox = Sandbox::new("remove");
    let out = sandbox.must(
        r#"
pipelock-containment apply >/dev/null || fail "apply"
uid=$(id -u cc-agent)
setpriv --reuid cc-agent --regid cc-agent --clear-groups sleep 1000 &
setpriv --reuid cc-agent --regid cc-agent --clear-groups sh -c 'trap "" TERM; while :; do sleep 1; done' &
sleep 0.3
[ "$(pgrep -c -u "$uid")" -ge 2 ] || fail "agent processes not started"
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
getent passwd cc-agent >/dev/null || fail "remove deleted the agent user"
[ -f /etc/pipelock-containment/containment.toml ] || fail "remove deleted the config"
pipelock-containment remove >/dev/null 2>&1 || fail "second remove"
pipelock-containment purge > /tmp/out 2>&1 || { cat /tmp/out; fail "purge"; }
[ ! -e /var/lib/pipelock-containment ] || fail "state left after purge"
getent passwd cc-agent >/dev/null || fail "purge deleted users without opt-in"

# Opted in: the setting is remembered at apply time, so purge works after the config is gone.
sed -i 's/delete_on_purge = false/delete_on_purge = true/' /etc/pipelock-containment/containment.toml
pipelock-containment apply >/dev/null || fail "apply 2"
grep -qx "user cc-agent" /var/lib/pipelock-containment/purge-accounts || fail "purge list"
rm /etc/pipelock-containment/containment.toml   # what dpkg does before postrm purge
pipelock-containment purge > /tmp/out 2>&1 || { cat /tmp/out; fail "purge 2"; }
cat /tmp/out
getent passwd cc-agent >/dev/null && fail "agent user kept despite opt-in"
getent passwd pipelock-proxy >/dev/null && fail "proxy user kept despite opt-in"
[ ! -e /var/lib/pipelock-containment ] || fail "state left"
echo OK
"#,
    );
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn refuses_upstream_and_migrates_user_units() {
    if needs_root("refuses_upstream_and_migrates_user_units") {
        return;
    }
    let sandbox = Sandbox::new("upstream");
    let out = sandbox.must(
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
    println!("{out}");
    assert!(out.contains("OK"), "{out}");
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
        "tests/support/sandbox.sh",
    ]
    .iter()
    .map(|s| root.join(s))
    .collect();
    for script in &scripts {
        let status = Command::new("sh").arg("-n").arg(script).status().unwrap();
        assert!(status.success(), "sh -n {}", script.display());
    }
    if which("shellcheck").is_none() {
        skip(
            "maintainer_scripts_parse_and_pass_shellcheck",
            "shellcheck is not installed (apt-get install shellcheck); only `sh -n` ran",
        );
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
