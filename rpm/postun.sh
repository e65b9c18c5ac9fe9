# %postun: clean state when the package is gone ($1 = 0).
if [ "$1" -eq 0 ]; then
    rm -rf /var/lib/pipelock-containment
fi
