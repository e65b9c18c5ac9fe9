//! `tools add|remove`: the host side: root check, atomic rewrite of the config, re-render through `apply`.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use anyhow::{Context, Result};
use camino::Utf8Path;

/// True if this process runs as root (effective UID 0).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Replace `path` with `contents` atomically: a temporary file beside it with the same mode and
/// owner, fsync, rename, fsync of the directory. A reader sees the old or the new file, never
/// half of one.
pub fn write_atomic(path: &Utf8Path, contents: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let old = std::fs::metadata(path).ok();
    let mut temp = tempfile::Builder::new()
        .prefix(".containment.toml.")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {dir}"))?;
    temp.write_all(contents.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing a temporary file in {dir}"))?;
    let mode = old
        .as_ref()
        .map_or(0o644, |meta| meta.permissions().mode() & 0o7777);
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of the new {path}"))?;
    if let Some(meta) = &old {
        std::os::unix::fs::chown(temp.path(), Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("setting the owner of the new {path}"))?;
    }
    temp.persist(path)
        .map_err(|err| err.error)
        .with_context(|| format!("replacing {path}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {dir}"))?;
    Ok(())
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
