# %pre ($1: 1 install, 2 upgrade). The accounts are created just above, by the block that
# `cargo xtask dist` generates from the packaged sysusers.d file (systemd-sysusers, or
# groupadd/useradd -r where it is missing), so a site build's names are the only names.
# `pipelock-containment apply` in %post creates whatever is still missing (renamed users in
# the config, the agent's home) and never deletes an account.
:
