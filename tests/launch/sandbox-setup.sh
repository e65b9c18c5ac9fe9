#!/bin/sh
# Sets up a launch sandbox. Runs INSIDE a private mount and network namespace (the caller
# started `unshare --mount --net` and enters it with nsenter), so nothing here changes the
# host: /etc, /var/lib, /usr/libexec and /run are overlays or tmpfs that vanish with the
# namespace.
#
# usage: sandbox-setup.sh DIR HELPER AGENT_EXEC INET_PID
#   DIR         scratch directory (a tmpfs is mounted on it)
#   HELPER      the pipelock-containment binary
#   AGENT_EXEC  the agent-exec binary
#   INET_PID    a process in the "internet" network namespace (gets 192.0.2.1, 2001:db8::1)
set -eu
dir=$1 helper=$2 agent_exec=$3 inet_pid=$4
here=$(cd "$(dirname "$0")" && pwd)

mount --make-rprivate /
mount -t tmpfs -o mode=0755 launch-sandbox "$dir"
for d in etc varlib libexec; do mkdir -p "$dir/$d.up" "$dir/$d.work"; done
mount -t overlay launch-etc -o "lowerdir=/etc,upperdir=$dir/etc.up,workdir=$dir/etc.work" /etc
mount -t overlay launch-varlib -o "lowerdir=/var/lib,upperdir=$dir/varlib.up,workdir=$dir/varlib.work" /var/lib
mount -t overlay launch-libexec -o "lowerdir=/usr/libexec,upperdir=$dir/libexec.up,workdir=$dir/libexec.work" /usr/libexec
# sudo's timestamps and the syslog socket: private.
mount -t tmpfs -o mode=0755 launch-run /run
mkdir -p "$dir/home" && chmod 0755 "$dir/home"

# Accounts, in the overlay only. UIDs above the login range, as system users would be.
groupadd -g 61237 pipelock-operators
for account in cc-agent:61234 pipelock-proxy:61235 launch-op:61236 launch-nm:61238; do
	groupadd -g "${account#*:}" "${account%:*}"
done
useradd -r -l -u 61234 -g cc-agent -d /var/lib/cc-agent -m -s /usr/sbin/nologin cc-agent 2>/dev/null
useradd -r -l -u 61235 -g pipelock-proxy -d /var/lib/pipelock -s /usr/sbin/nologin pipelock-proxy 2>/dev/null
useradd -l -u 61236 -g launch-op -G pipelock-operators -d "$dir/home/launch-op" -m -s /bin/sh launch-op 2>/dev/null
useradd -l -u 61238 -g launch-nm -d "$dir/home/launch-nm" -m -s /bin/sh launch-nm 2>/dev/null
# A stand-in tool in the agent's own ~/.local/bin.
install -d -o cc-agent -g cc-agent /var/lib/cc-agent/.local /var/lib/cc-agent/.local/bin
printf '#!/bin/sh\necho "standin uid=$(id -u) args=$*"\n' >/var/lib/cc-agent/.local/bin/standin
chmod 0755 /var/lib/cc-agent/.local/bin/standin
# A directory the agent cannot enter.
install -d -m 0700 -o launch-op "$dir/home/launch-op/private"
# A directory everyone can use.
install -d -m 0777 "$dir/work"

# The config, rendered files, agent-exec: installed where the package puts them.
mkdir -p /etc/pipelock-containment
sed -e '/^wrap = \[/,/^\]/c\
wrap = ["env", "id", "sh", "cat", "curl", "standin", "selfcall", "python3", "/usr/bin/true"]' \
	"$here/../../pkg/containment.toml" >/etc/pipelock-containment/containment.toml
"$helper" render --out "$dir/render" >/dev/null
install -d /usr/libexec/pipelock-containment /var/lib/pipelock-containment
install -m 0755 "$agent_exec" /usr/libexec/pipelock-containment/agent-exec
cp -a "$dir/render/var/lib/pipelock-containment/wrappers" /var/lib/pipelock-containment/
install -m 0440 "$dir/render/etc/sudoers.d/pipelock-containment" /etc/sudoers.d/pipelock-containment
cp "$dir/render/etc/nftables.d/pipelock-containment.nft" "$dir/rules.nft"
grep -q "$(hostname)" /etc/hosts || echo "127.0.1.1 $(hostname)" >>/etc/hosts

# The network: loopback, and a veth to the "internet" namespace.
ip link set lo up
ip link add launch0 type veth peer name launch1 netns "$inet_pid"
ip addr add 192.0.2.10/24 dev launch0
ip -6 addr add 2001:db8::10/64 dev launch0 nodad
ip link set launch0 up
nsenter -t "$inet_pid" -n sh -c '
	ip link set lo up
	ip addr add 192.0.2.1/24 dev launch1
	ip -6 addr add 2001:db8::1/64 dev launch1 nodad
	ip link set launch1 up'
