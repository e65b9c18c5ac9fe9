# %preun ($1: 0 erase, 1 upgrade). Only on erase: on upgrade the OLD package's %preun runs
# after the NEW package's %post, and removing here would undo what the new version applied.
if [ "$1" -eq 0 ]; then
    pipelock-containment remove --from-maintainer-script
fi
