# %pre: create the system users before the files land ($1: 1 install, 2 upgrade).
if [ -x /usr/bin/systemd-sysusers ] && [ -f /usr/lib/sysusers.d/pipelock-containment.conf ]; then
    systemd-sysusers /usr/lib/sysusers.d/pipelock-containment.conf || :
fi
