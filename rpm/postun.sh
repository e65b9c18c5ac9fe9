# %postun ($1: 0 erase, 1 upgrade). RPM has no purge: erase is the last chance, so with
# $1 = 0 this deletes the state directory, and the accounts only when the config said
# users.delete_on_purge = true (apply recorded them in purge-accounts; the helper is gone).
#
# The config: containment.toml is %config(noreplace). an erase deletes it when unchanged;
# when the admin edited it, rpm keeps it as /etc/pipelock-containment/containment.toml.rpmsave
# and a later install does NOT read that file: the new install starts from the defaults, and
# the admin moves the .rpmsave back and runs `pipelock-containment apply`.
# On upgrade ($1 = 1) an edited config stays in place and the new default lands as
# containment.toml.rpmnew.
if [ "$1" -eq 0 ]; then
    STATE=/var/lib/pipelock-containment
    # The agent's home goes, also when its account stays: only a real directory it owns.
    if [ -f "$STATE/managed-files" ]; then
        while read -r kind name path; do
            if [ "$kind" = home ] && [ -d "$path" ] && [ ! -L "$path" ] \
                && [ "$(stat -c %U "$path")" = "$name" ]; then
                rm -rf --one-file-system "$path"
            fi
        done < "$STATE/managed-files"
    fi
    if [ -f "$STATE/purge-accounts" ]; then
        while read -r kind name; do
            case "$kind" in
                # The agent's home goes with it: its UID may be reused.
                agent) getent passwd "$name" >/dev/null && { userdel --remove "$name" || :; } ;;
                user) getent passwd "$name" >/dev/null && { userdel "$name" || :; } ;;
                group) getent group "$name" >/dev/null && { groupdel "$name" || :; } ;;
            esac
        done < "$STATE/purge-accounts"
    fi
    rm -rf "$STATE"
    # The proxy unit's StateDirectory=.
    rm -rf /var/lib/pipelock
fi
