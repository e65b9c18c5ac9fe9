# %post ($1: 1 install, 2 upgrade): apply. On upgrade this runs before the old package's
# %preun/%postun, re-renders with the new templates, keeps the UIDs and the config, and
# replaces the nft table in one transaction: no window.
# Under a maintainer script apply renders the files and replaces the table only; the
# generated part below presets and starts the units (presets and masks are honoured).
pipelock-containment apply --from-maintainer-script
