# %post ($1: 1 install, 2 upgrade): apply. On upgrade this runs before the old package's
# %preun/%postun, re-renders with the new templates, keeps the UIDs and the config, and
# replaces the nft table in one transaction: no window.
# No systemctl here: apply starts units only when systemd is running (not in a chroot or an
# image build, where it enables them offline and the table loads at first boot).
pipelock-containment apply --from-maintainer-script
