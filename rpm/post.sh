# %post: apply containment ($1: 1 install, 2 upgrade).
pipelock-containment apply --from-maintainer-script
