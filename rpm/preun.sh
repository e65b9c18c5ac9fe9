# %preun: remove containment only when the package goes away ($1 = 0), not on upgrade.
if [ "$1" -eq 0 ]; then
    pipelock-containment remove --from-maintainer-script
fi
