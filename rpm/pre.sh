# %pre ($1: 1 install, 2 upgrade): create the system users before the package's files land.
# The sysusers.d file is not on disk yet, so its lines are given on stdin with --replace
# (what %sysusers_create_compat does). Without systemd-sysusers: groupadd/useradd -r.
# `pipelock-containment apply` in %post creates whatever is still missing (renamed users in
# the config, the agent's home) and never deletes an account.
if [ -x /usr/bin/systemd-sysusers ]; then
    /usr/bin/systemd-sysusers --replace=/usr/lib/sysusers.d/pipelock-containment.conf - <<'SYSUSERS' || :
g pipelock-operators -
u pipelock-proxy - "pipelock egress proxy" /var/lib/pipelock /usr/sbin/nologin
u cc-agent - "pipelock-contained agent" /var/lib/cc-agent /usr/sbin/nologin
SYSUSERS
else
    getent group pipelock-operators >/dev/null || groupadd -r pipelock-operators || :
    getent passwd pipelock-proxy >/dev/null || \
        useradd -r -U -M -d /var/lib/pipelock -s /sbin/nologin -c "pipelock egress proxy" pipelock-proxy || :
    getent passwd cc-agent >/dev/null || \
        useradd -r -U -m -d /var/lib/cc-agent -s /sbin/nologin -c "pipelock-contained agent" cc-agent || :
fi
