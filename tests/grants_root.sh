#!/bin/bash
# Root acceptance test for workspace grants; run by tests/grants_root.rs in testbed::Sandbox
# (overlays over /etc, /usr and /var, so the test users and config live only there; the
# helper installed at /usr/bin/pipelock-containment); /home is a tmpfs here (POSIX ACLs),
# records go to a temp dir. Nothing on the host changes.
# Usage: grants_root.sh HELPER_BINARY SHIPPED_CONFIG RENDERED_GRANTS_SUDOERS
set -euo pipefail
# Never `CMD | grep -q`: with pipefail, grep exiting early makes CMD fail with SIGPIPE and
# a `&& fail` check could never fire. Match on captured output instead.
BIN=$1
SHIPPED_CONFIG=$2
SUDOERS=$3
T=$(mktemp -d /tmp/grants-test.XXXXXX)
cleanup() {
    umount -l /home 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

# Test users, only in this mount namespace.
AGENT=61001 ALICE=61002 BOB=61003 OPS=61010
mkdir -p "$T/state"
cat >>/etc/passwd <<PW
gr-agent:x:$AGENT:$AGENT::/nonexistent:/usr/sbin/nologin
gr-alice:x:$ALICE:$ALICE::/home/alice:/bin/sh
gr-bob:x:$BOB:$BOB::/home/bob:/bin/sh
PW
for u in gr-agent gr-alice gr-bob; do echo "$u:*:19000:0:99999:7:::" >>/etc/shadow; done
cat >>/etc/group <<GR
gr-agent:x:$AGENT:
gr-alice:x:$ALICE:
gr-bob:x:$BOB:
gr-ops:x:$OPS:gr-alice
GR
mkdir -p /etc/pipelock-containment
sed -e 's/^agent = "cc-agent"/agent = "gr-agent"/' \
    -e 's/^operators_group = .*/operators_group = "gr-ops"/' \
    -e "s|^records = .*|records = \"$T/state/grants.json\"|" \
    "$SHIPPED_CONFIG" >/etc/pipelock-containment/containment.toml
grep -q '^agent = "gr-agent"' /etc/pipelock-containment/containment.toml || fail "config not rewritten"

mount -t tmpfs -o mode=0755 tmpfs /home
setfacl -m u:$AGENT:--x /home && setfacl -b /home || fail "tmpfs has no POSIX ACLs"

# alice's home, the way current distros make it: 0700.
H=/home/alice P=$H/src/proj
install -d -o $ALICE -g $ALICE -m 0700 $H $H/.ssh
install -d -o $ALICE -g $ALICE -m 0755 $H/src $P $P/sub $H/src/proj2
install -d -o $BOB -g $BOB -m 0755 /home/bob /home/bob/src
key='-----BEGIN OPENSSH PRIVATE KEY-----'
echo "$key" >$H/.ssh/id_ed25519; chmod 600 $H/.ssh/id_ed25519
echo 'fn main() {}' >$P/main.rs
echo 'TOKEN=secret' >$P/.env
echo "$key" >$P/id_ed25519
echo 'ssh-ed25519 AAAA' >$P/id_ed25519.pub
printf '#!/bin/sh\necho hi\n' >$P/run.sh; chmod 755 $P/run.sh
echo 'x' >$P/sub/notes.txt
echo 'y' >$H/src/proj2/readme
ln -s $H/.ssh $P/ssh-link
ln -s $H/.ssh/id_ed25519 $P/key-link
ln -s /etc $H/src/etc-link
chmod 644 $P/.env $P/id_ed25519   # readable through "other": the grant must still close them
chown -R $ALICE:$ALICE $H
# Pre-existing ACLs revoke must put back exactly: a named entry under a narrow mask, a
# directory's own default ACL, and an agent entry that was there before the grant.
setfacl -m u:$BOB:rwx $P/main.rs && setfacl -m m::r $P/main.rs
install -d -o $ALICE -g $ALICE -m 0750 $P/shared
setfacl -d -m u:$BOB:r-x $P/shared
echo data >$P/shared/data && chown $ALICE:$ALICE $P/shared/data && chmod 600 $P/shared/data
setfacl -m u:$AGENT:r-- $P/shared/data

snapshot() { (cd / && getfacl -R -p /home 2>/dev/null); }
snapshot >"$T/before"

as_agent() { setpriv --reuid=$AGENT --regid=$AGENT --clear-groups -- "$@"; }
as_alice() { setpriv --reuid=$ALICE --regid=$ALICE --clear-groups -- "$@"; }
# Through sudo, as sudo would set it up: root, with SUDO_UID/SUDO_USER of the operator.
sudo_alice() { env SUDO_UID=$ALICE SUDO_USER=gr-alice SUDO_GID=$ALICE SUDO_COMMAND="$BIN $*" "$BIN" "$@"; }
must_fail() { local what=$1; shift; if "$@" >"$T/out" 2>&1; then cat "$T/out"; fail "$what: succeeded"; fi; }
must_work() { local what=$1; shift; "$@" >"$T/out" 2>&1 || { cat "$T/out"; fail "$what: failed"; }; }

step "before any grant the agent cannot reach the project"
must_fail "agent reads main.rs before grant" as_agent cat $P/main.rs

step "refusals"
must_fail "alice grants /etc" sudo_alice grant /etc
grep -q "protected system path" "$T/out" || { cat "$T/out"; fail "/etc refusal message"; }
must_fail "alice grants bob's dir" sudo_alice grant /home/bob/src
grep -q "not below your home" "$T/out" || { cat "$T/out"; fail "bob refusal message"; }
must_fail "alice grants /etc through a symlink" sudo_alice grant $H/src/etc-link
grep -q "/etc" "$T/out" || fail "symlink refusal names /etc"
must_fail "alice grants her home" sudo_alice grant $H
must_fail "alice forces" sudo_alice grant --force $P
grep -q "root only" "$T/out" || { cat "$T/out"; fail "--force refusal"; }
must_fail "alice passes a config" sudo_alice grant --config /tmp/x.toml $P
must_fail "root grants /etc without force" "$BIN" grant /etc
must_fail "root grants a home without force" "$BIN" grant $H
grep -q "whole home directory" "$T/out" || { cat "$T/out"; fail "home refusal message"; }
set +e; as_alice "$BIN" grant $P >"$T/out" 2>&1; rc=$?; set -e
[ $rc = 77 ] || { cat "$T/out"; fail "non-root without sudo: exit $rc, expected 77"; }
# bob is not an operator: the grants rule cannot have let him in, so sudo gave him root by
# another rule and he acts as root (recorded as such); root limits still apply.
must_fail "root-by-sudo bob grants /etc" env SUDO_UID=$BOB SUDO_USER=gr-bob "$BIN" grant /etc
grep -q "acting as root" "$T/out" && grep -q "protected system path" "$T/out" \
    || { cat "$T/out"; fail "non-operator sudo caller"; }
[ ! -e "$T/state/grants.json" ] || jq -e '.grants == []' "$T/state/grants.json" >/dev/null || fail "refusals left records"
snapshot >"$T/after-refusals"
diff -u "$T/before" "$T/after-refusals" || fail "a refused grant changed ACLs"

step "a dry run of that grant changes and records nothing"
sudo_alice grant $P --mode rw --dry-run --json >"$T/dry.json" 2>"$T/dry.err" || { cat "$T/dry.json" "$T/dry.err"; fail "grant --dry-run"; }
snapshot >"$T/after-dry-run"
diff -u "$T/before" "$T/after-dry-run" || fail "a dry run changed ACLs"
[ ! -e "$T/state/grants.json" ] || jq -e '.grants == []' "$T/state/grants.json" >/dev/null || fail "a dry run left a record"
[ "$(jq '.changes | length' "$T/dry.json")" -gt 10 ] || { cat "$T/dry.json"; fail "the dry run plans too little"; }
sudo_alice grant $P --mode rw --dry-run >"$T/dry.out" 2>&1 || { cat "$T/dry.out"; fail "grant --dry-run (text)"; }
grep -q "^would grant $P to gr-agent (rw); nothing was changed" "$T/dry.out" || { cat "$T/dry.out"; fail "dry-run text"; }

step "alice grants ~/src/proj read-write through sudo"
sudo_alice grant $P --mode rw >"$T/grant.out" 2>"$T/grant.err" || { cat "$T/grant.out" "$T/grant.err"; fail "grant"; }
step "the grant recorded exactly the changes its dry run listed"
jq -S '.changes' "$T/dry.json" >"$T/dry.changes"
jq -S '.grants[0].entries' "$T/state/grants.json" >"$T/real.changes"
diff -u "$T/dry.changes" "$T/real.changes" || fail "the dry run and the grant differ"
cat "$T/grant.out" "$T/grant.err"
grep -q "$P/.env: looks like a credential" "$T/grant.err" || fail "no warning naming .env"
grep -q "$P/id_ed25519: looks like a credential" "$T/grant.err" || fail "no warning naming id_ed25519"
! grep -q "id_ed25519.pub" "$T/grant.err" || fail "public key treated as credential"

must_work "agent writes a file in proj" as_agent sh -c "echo x > $P/f"
must_work "agent reads main.rs" as_agent cat $P/main.rs
must_work "agent reads sub/notes.txt" as_agent cat $P/sub/notes.txt
must_work "agent runs run.sh" as_agent $P/run.sh
must_work "agent reads the public key" as_agent cat $P/id_ed25519.pub
must_work "agent writes shared/data (its old r-- entry widened)" as_agent sh -c "echo more >> $P/shared/data"
# main.rs: bob has rwx under mask r--; widening the mask for the agent's rw- would let bob
# write, so the mask stays and the agent only reads it (with a warning naming the file).
grep -q "^mask::r--$" <<<"$(getfacl -n -p $P/main.rs)" || fail "main.rs mask widened: bob gained write"
grep -q "$P/main.rs: the agent lacks -w-" "$T/grant.err" || fail "no warning about main.rs"
must_fail "agent writes main.rs (mask kept narrow)" as_agent sh -c "echo x >> $P/main.rs"
must_fail "agent lists ~alice" as_agent ls $H
must_fail "agent reads ~alice/.ssh/id_ed25519" as_agent cat $H/.ssh/id_ed25519
must_fail "agent lists ~alice/.ssh through a symlink in proj" as_agent ls $P/ssh-link/
must_fail "agent reads the key through a symlink in proj" as_agent cat $P/key-link
must_fail "agent reads proj/.env (mode 0644)" as_agent cat $P/.env
must_fail "agent reads proj/id_ed25519" as_agent cat $P/id_ed25519
must_fail "agent writes proj/.env" as_agent sh -c "echo y >> $P/.env"
must_fail "agent reads proj2 (not granted)" as_agent cat $H/src/proj2/readme
# Beside the path, the agent gets an explicit empty entry (or nothing), never access.
grep -Eq "^user:$AGENT:(r..|-w.|--x)$" <<<"$(getfacl -n -p $H/.ssh)" && fail ".ssh opened to the agent"
grep -q "^user:$AGENT:---$" <<<"$(getfacl -n -p $H/.ssh)" || fail ".ssh not closed explicitly"
grep -q "user:$AGENT" <<<"$(getfacl -n -p $H/.ssh/id_ed25519)" && fail "the ssh key got an agent entry"
must_fail "agent lists ~alice/src (only --x)" as_agent ls $H/src
# Default entries: a file alice creates later is accessible to the agent.
as_alice sh -c "umask 077; echo new > $P/sub/later.txt"
must_work "agent reads a file created after the grant" as_agent cat $P/sub/later.txt
# The group class gained nothing on the parent: only the agent's --x.
grep -q "^user:$AGENT:--x$" <<<"$(getfacl -n -p $H)" || { getfacl -n -p $H; fail "no --x for the agent on ~alice"; }
grep -q "^group::---$" <<<"$(getfacl -n -p $H)" || fail "group entry on ~alice changed"

# A credential alice creates in the tree later inherits the agent's entry, until the next
# `grants expire` run closes it.
as_alice sh -c "echo 'TOKEN=x' > $P/sub/.env.local"
must_work "agent reads a new .env before the refresh (the known window)" as_agent cat $P/sub/.env.local
"$BIN" grants expire >"$T/refresh.out" 2>&1 || { cat "$T/refresh.out"; fail "grants expire (credentials)"; }
grep -q "$P/sub/.env.local: looks like a credential" "$T/refresh.out" || { cat "$T/refresh.out"; fail "refresh did not name .env.local"; }
must_fail "agent reads a .env created after the grant" as_agent cat $P/sub/.env.local
# A file alice creates beside the path later is closed by the next `grants expire` run.
as_alice sh -c "echo fresh > $H/src/later-notes.txt"
chmod 644 $H/src/later-notes.txt
"$BIN" grants expire >/dev/null || fail "grants expire (refresh)"
must_fail "agent reads a file created beside the path after the grant" as_agent cat $H/src/later-notes.txt
grep -q "$P" <<<"$("$BIN" grants)" || fail "grants does not list proj"
"$BIN" grants --json >"$T/list.json"
grep -q "\"path\": \"$P\"" "$T/list.json" && grep -q '"mode": "rw"' "$T/list.json" \
    && grep -q '"name": "gr-alice"' "$T/list.json" || { cat "$T/list.json"; fail "grants --json"; }
must_fail "alice grants a directory inside the granted tree" sudo_alice grant $P/sub

step "through the real sudo rule"
if command -v sudo >/dev/null; then
    # The sandbox installed the helper at its path.
    install -m 0440 "$SUDOERS" /etc/sudoers.d/pipelock-containment-grants
    visudo -cf /etc/sudoers.d/pipelock-containment-grants >/dev/null || fail "visudo rejects the grants drop-in"
    grep -q "^$(hostname) \|[[:space:]]$(hostname)\b" /etc/hosts || echo "127.0.1.1 $(hostname)" >>/etc/hosts
    S="sudo -n /usr/bin/pipelock-containment"
    must_work "alice lists grants through sudo" as_alice $S grants
    must_fail "alice grants /etc through sudo" as_alice $S grant /etc
    grep -q "protected system path" "$T/out" || { cat "$T/out"; fail "sudo /etc refusal"; }
    must_fail "alice grants bob's dir through sudo" as_alice $S grant /home/bob/src
    grep -q "not below your home" "$T/out" || { cat "$T/out"; fail "sudo bob refusal"; }
    must_fail "alice runs another command through the rule" as_alice sudo -n /usr/bin/pipelock-containment render
    must_fail "bob (not an operator) uses the rule" setpriv --reuid=$BOB --regid=$BOB --clear-groups -- $S grants
    must_work "alice grants proj2 through sudo" as_alice $S grant $H/src/proj2
    grep -q '"name": "gr-alice"' <<<"$("$BIN" grants --json)" || fail "sudo grant not recorded as gr-alice"
    must_work "agent reads proj2" as_agent cat $H/src/proj2/readme
    must_work "alice revokes through sudo" as_alice $S revoke $H/src/proj2
    must_fail "agent reads proj2 after revoke" as_agent cat $H/src/proj2/readme
else
    echo "SKIPPED: grants through the real sudo rule: sudo not installed" >&2
fi

step "a second grant shares the parent traversal entry"
sudo_alice grant $H/src/proj2 --mode ro >/dev/null 2>&1 || fail "grant proj2"
must_work "agent reads proj2" as_agent cat $H/src/proj2/readme
must_fail "agent writes in proj2 (ro)" as_agent sh -c "echo x > $H/src/proj2/w"

step "revoke proj: proj2 keeps working"
must_work "revoke proj" sudo_alice revoke $P
must_fail "agent reads main.rs after revoke" as_agent cat $P/main.rs
must_work "agent still reads proj2" as_agent cat $H/src/proj2/readme
grep -q "user:$AGENT" <<<"$(getfacl -n -p $P/f)" && fail "file created during the grant kept an agent entry"
grep -q "user:$AGENT" <<<"$(getfacl -n -p $P/sub/later.txt)" && fail "later.txt kept its inherited agent entry"
grep -q "user:$AGENT" <<<"$(getfacl -n -p $P/sub/.env.local)" && fail ".env.local kept an agent entry"
must_work "revoke proj2" sudo_alice revoke $H/src/proj2
must_fail "agent reads proj2 after revoke" as_agent cat $H/src/proj2/readme

step "getfacl -R after revoke equals before the grant"
rm -f $P/f $P/sub/later.txt $H/src/later-notes.txt $P/sub/.env.local
snapshot >"$T/after"
diff -u "$T/before" "$T/after" || fail "ACLs differ after revoke"
echo "identical: $(grep -c '^# file:' "$T/after") paths"

step "a 1-second grant is gone after grants expire"
"$BIN" grant $H/src/proj2 --expires 1h >/dev/null 2>&1 || fail "grant with a 1h expiry"
grep -q "$H/src/proj2" <<<"$("$BIN" grants expire)" && fail "a 1h grant expired at once"
must_work "revoke the 1h grant" "$BIN" revoke $H/src/proj2
"$BIN" grant $P --mode ro --expires 1s >/dev/null 2>&1 || fail "grant with expiry"
must_work "agent reads during the expiring grant" as_agent cat $P/main.rs
sleep 2
"$BIN" grants expire | tee "$T/expire.out"
grep -q "expired: revoked $P" "$T/expire.out" || fail "grants expire did not revoke"
must_fail "agent reads after expiry" as_agent cat $P/main.rs
grep -q "no active grants" <<<"$("$BIN" grants)" || fail "grant still listed"
snapshot >"$T/after-expire"
diff -u "$T/before" "$T/after-expire" || fail "ACLs differ after expiry"

step "a symlink swapped in after the grant is not followed by revoke"
"$BIN" grant $H/src/proj2 >/dev/null 2>&1 || fail "grant proj2 as root"
mv $H/src/proj2 $H/src/proj2.real && ln -s /etc $H/src/proj2
must_fail "revoke through a swapped-in symlink" "$BIN" revoke $H/src/proj2
grep -q "user:$AGENT" <<<"$(getfacl -n -p /etc)" && fail "revoke followed a symlink to /etc"
grep -q "$H/src/proj2" <<<"$("$BIN" grants)" || fail "a failed revoke dropped the record"
rm $H/src/proj2 && mv $H/src/proj2.real $H/src/proj2
must_work "revoke again once the directory is back" "$BIN" revoke $H/src/proj2
snapshot >"$T/after-swap"
diff -u "$T/before" "$T/after-swap" || fail "ACLs differ after the second revoke"

step "revoke --all (package removal) takes back every grant"
"$BIN" grant $P --mode rw >/dev/null 2>&1 || fail "grant proj for --all"
"$BIN" grant $H/src/proj2 >/dev/null 2>&1 || fail "grant proj2 for --all"
must_fail "alice revokes all" sudo_alice revoke --all
must_work "root revokes all" "$BIN" revoke --all
grep -q "no active grants" <<<"$("$BIN" grants)" || fail "grants left after revoke --all"
snapshot >"$T/after-all"
diff -u "$T/before" "$T/after-all" || fail "ACLs differ after revoke --all"

echo "PASS: grants root acceptance"
