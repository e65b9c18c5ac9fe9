//! File-system helpers: the one atomic, symlink-safe writer; reading the config and the grant records; review trees.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{fchown, OpenOptionsExt, PermissionsExt};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use pipelock_policy::config::Config;
use pipelock_policy::render::RenderedFile;

/// Read and validate the config file; the error names the file.
pub fn read_config(path: &Utf8Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the config {path}: install the package, or pass --config FILE")
    })?;
    Ok(Config::parse(&text, path.as_str())?)
}

/// The workspace grant records at `path` (none when the file does not exist); the error names it.
pub fn read_grant_records(path: &Utf8Path) -> Result<pipelock_policy::grants::Records> {
    if !path.exists() {
        return Ok(pipelock_policy::grants::Records::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    pipelock_policy::grants::Records::parse(&text, path.as_str()).map_err(|e| anyhow::anyhow!(e))
}

/// Write rendered files below `root`, mirroring their absolute paths, with their modes.
pub fn write_tree(root: &Utf8Path, files: &[RenderedFile]) -> Result<()> {
    let owner = current_owner();
    for file in files {
        let target = root.join(file.path.strip_prefix("/").unwrap_or(&file.path));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
        }
        write_atomic(&target, file.contents.as_bytes(), owner, file.mode)?;
    }
    Ok(())
}

/// This process's effective (uid, gid): the owner of files it writes for its caller.
pub fn current_owner() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Replace `path` with `contents`, owned by `owner` (uid, gid) with `mode`: a new temporary
/// file in the same directory (created exclusively, never through a symlink), fsync, rename over
/// the target, fsync of the directory. A reader sees the old file or the new one; a symlink at
/// `path` is replaced, never followed. The temporary name has no suffix of the target's, so a
/// collector that reads `*.prom` never sees a half-written file.
pub fn write_atomic(path: &Utf8Path, contents: &[u8], owner: (u32, u32), mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{path} has no file name"))?;
    let (tmp, mut file) = create_temp(dir, name)?;
    let result = (|| -> Result<()> {
        file.write_all(contents)
            .with_context(|| format!("cannot write {tmp}"))?;
        fchown(&file, Some(owner.0), Some(owner.1))
            .with_context(|| format!("cannot set the owner of {tmp} to {}:{}", owner.0, owner.1))?;
        file.set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {tmp}"))?;
        file.sync_all()
            .with_context(|| format!("cannot flush {tmp} to disk"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {tmp} to {path}"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the directory {dir} to disk"))
}

/// A new file `.NAME.tmp.PID.N` in `dir`, created exclusively with O_NOFOLLOW, mode 0600.
fn create_temp(dir: &Utf8Path, name: &str) -> Result<(Utf8PathBuf, File)> {
    let pid = std::process::id();
    for n in 0..100 {
        let tmp = dir.join(format!(".{name}.tmp.{pid}.{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot create {tmp}")),
        }
    }
    bail!("cannot create a temporary file in {dir}: too many stale .{name}.tmp.* files")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_target_or_the_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = dir.join("target");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        // The first temporary name is taken by a planted symlink too.
        let planted = dir.join(format!(".target.tmp.{}.0", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&target, b"new", current_owner(), 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // Nothing is left behind but the planted link.
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let target = dir.join("sub");
        std::fs::create_dir(&target).unwrap(); // rename over a directory fails
        assert!(write_atomic(&target, b"x", current_owner(), 0o644).is_err());
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
}
