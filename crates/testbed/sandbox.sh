#!/bin/sh
# sandbox.sh WORKDIR BINARY SCRIPT INSTALLS: run SCRIPT (sh -c) as root in a throwaway copy of the host.
#
# New mount, network and PID namespaces; overlays over /etc, /usr and /var whose upper layers
# live in WORKDIR, fresh tmpfs over /run and /tmp. useradd, nft, visudo and kill act on these
# copies and on a private network namespace: the real host is never changed. The packaged files
# (INSTALLS: `MODE SOURCE DEST` lines from the contents table) and BINARY are installed into the
# copy first, as the package would.
set -eu
work=$1 binary=$2 script=$3 installs=$4
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
# shellcheck disable=SC2016 # the inner script expands its own variables
exec unshare --mount --net --pid --fork --mount-proc --propagation private \
    env SANDBOX_WORK="$work" SANDBOX_BINARY="$binary" SANDBOX_INSTALLS="$installs" SANDBOX_ROOT="$root" SANDBOX_SCRIPT="$script" \
    sh -eu -c '
for d in etc usr var; do
    mkdir -p "$SANDBOX_WORK/upper-$d" "$SANDBOX_WORK/work-$d"
    mount -t overlay "overlay-lifecycle-$d" \
        -o "lowerdir=/$d,upperdir=$SANDBOX_WORK/upper-$d,workdir=$SANDBOX_WORK/work-$d" "/$d"
done
ip link set lo up
install -m 0755 "$SANDBOX_BINARY" /usr/bin/pipelock-containment
# The packaged files, from the contents table (testbed::package_installs); a config already
# in place stays.
while read -r mode source dest; do
    [ "$dest" = /etc/pipelock-containment/containment.toml ] && [ -f "$dest" ] && continue
    install -D -m "$mode" "$SANDBOX_ROOT/$source" "$dest"
done < "$SANDBOX_INSTALLS"
# The checkout (scripts, binary) may live below /tmp or /run: keep it reachable at its path.
mkdir -p /var/lib/sandbox-checkout
mount --bind "$SANDBOX_ROOT" /var/lib/sandbox-checkout
mount -t tmpfs tmpfs-lifecycle-run /run
mount -t tmpfs tmpfs-lifecycle-tmp /tmp
if [ ! -d "$SANDBOX_ROOT/debian" ]; then
    mkdir -p "$SANDBOX_ROOT"
    mount --bind /var/lib/sandbox-checkout "$SANDBOX_ROOT"
fi
cd /
exec sh -u -c "$SANDBOX_SCRIPT"
'
