//! `tools add|remove`: the host side: root check, atomic rewrite of the config, re-render through `apply`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use anyhow::{Context, Result};
use camino::Utf8Path;

/// Replace the config at `path` with `contents` through `host::fs::write_atomic`, keeping its
/// mode and owner (a new file: 0644, owned by the caller).
pub fn rewrite_config(path: &Utf8Path, contents: &str) -> Result<()> {
    let old = std::fs::metadata(path).ok();
    let mode = old
        .as_ref()
        .map_or(0o644, |meta| meta.permissions().mode() & 0o7777);
    let owner = old
        .as_ref()
        .map_or(super::fs::current_owner(), |meta| (meta.uid(), meta.gid()));
    super::fs::write_atomic(path, contents.as_bytes(), owner, mode)
}

/// Run `pipelock-containment apply --config PATH` (this same program), so the wrappers follow
/// the config. The error names the command to run by hand.
pub fn run_apply(config: &Utf8Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let shown = format!("{} apply --config {config}", exe.display());
    let status = Command::new(&exe)
        .arg("apply")
        .arg("--config")
        .arg(config.as_str())
        .status()
        .with_context(|| format!("running `{shown}`"))?;
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!(
            "the config is saved, but re-rendering failed: `{shown}` exited with {}; \
             fix what it reports and run it again",
            status
                .code()
                .map_or_else(|| "a signal".to_string(), |code| code.to_string())
        )
    }
}
