//! File-system helpers: reading the config, and writing a tree of rendered files for review.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::config::Config;
use crate::render::RenderedFile;

/// Read and validate the config file; the error names the file.
pub fn read_config(path: &Utf8Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the config {path}: install the package, or pass --config FILE")
    })?;
    Ok(Config::parse(&text, path.as_str())?)
}

/// Write rendered files below `root`, mirroring their absolute paths, with their modes.
pub fn write_tree(root: &Utf8Path, files: &[RenderedFile]) -> Result<()> {
    for file in files {
        let target = root.join(file.path.strip_prefix("/").unwrap_or(&file.path));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
        }
        std::fs::write(&target, &file.contents).with_context(|| format!("writing {target}"))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .with_context(|| format!("setting the mode of {target}"))?;
    }
    Ok(())
}
