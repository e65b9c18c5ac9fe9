//! The package contents table, `pkg/contents.toml`: what the .deb and the .rpm ship, read for
//! xtask (the .rpm, the .deb's cargo-deb metadata, the package checks) and for the root tests'
//! sandbox (testbed), so both expand it one way.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

/// The table, relative to the repository.
pub const CONTENTS_FILE: &str = "pkg/contents.toml";
/// Where the packaged units live in the repository, and where they are installed.
pub const UNIT_SOURCE_DIR: &str = "systemd";
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// Below the repository: where `cargo xtask dist` writes the generated files the table names.
pub const GENERATED_DIR: &str = "target/dist/generated";

/// Which package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packager {
    Deb,
    Rpm,
}

/// How a file is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Config,
    Doc,
    License,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    pub directories: Vec<String>,
    pub binary: Vec<Binary>,
    pub file: Vec<FileRow>,
    pub unit: Vec<Unit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    pub name: String,
    pub dest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRow {
    pub source: String,
    pub dest: String,
    pub mode: String,
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    pub packager: Option<Packager>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    #[serde(default)]
    pub enable: bool,
    #[serde(default = "yes")]
    pub restart_after_upgrade: bool,
    #[serde(default = "yes")]
    pub stop_on_upgrade: bool,
}

/// One file one package installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// Relative to the repository.
    pub source: Utf8PathBuf,
    pub dest: String,
    pub mode: u32,
    pub kind: Option<Kind>,
}

/// Read the table.
pub fn load(root: &Utf8Path) -> Result<Contents> {
    let path = root.join(CONTENTS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let contents: Contents =
        toml::from_str(&text).with_context(|| format!("cannot parse {path}"))?;
    for row in &contents.file {
        if !row.dest.starts_with('/') {
            bail!("{path}: dest {:?} is not an absolute path", row.dest);
        }
    }
    Ok(contents)
}

pub fn octal(mode: &str, dest: &str) -> Result<u32> {
    u32::from_str_radix(mode, 8)
        .with_context(|| format!("{CONTENTS_FILE}: {dest}: mode {mode:?} is not octal"))
}

/// The names matching `name`, where `*` in it stands for any run of characters.
pub fn matching(names: impl Iterator<Item = String>, pattern: &str) -> Vec<String> {
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
    let exact = !pattern.contains('*');
    let mut found: Vec<String> = names
        .filter(|n| {
            if exact {
                n == pattern
            } else {
                n.len() >= prefix.len() + suffix.len()
                    && n.starts_with(prefix)
                    && n.ends_with(suffix)
            }
        })
        .collect();
    found.sort();
    found
}

fn list(dir: &Utf8Path) -> Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {dir}"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry
                .file_type()
                .ok()?
                .is_file()
                .then(|| entry.file_name().into_string().ok())?
        })
        .collect())
}

impl Unit {
    /// The unit's files in the repository: every `systemd/NAME.*` (cargo-deb's rule too).
    pub fn files(&self, root: &Utf8Path) -> Result<Vec<String>> {
        let found = matching(
            list(&root.join(UNIT_SOURCE_DIR))?.into_iter(),
            &format!("{}.*", self.name),
        );
        if found.is_empty() {
            bail!(
                "{CONTENTS_FILE}: unit {} has no file {UNIT_SOURCE_DIR}/{}.*",
                self.name,
                self.name
            );
        }
        Ok(found)
    }
}

impl Contents {
    /// Every file `packager` ships, patterns expanded (files below target/dist/generated/ exist
    /// once `cargo xtask dist` wrote them).
    pub fn shipped(&self, root: &Utf8Path, packager: Packager) -> Result<Vec<Shipped>> {
        let mut out = Vec::new();
        for binary in &self.binary {
            let source = match packager {
                Packager::Deb => format!("target/release/{}", binary.name),
                Packager::Rpm => format!("{}/bin/{}", GENERATED_DIR, binary.name),
            };
            out.push(Shipped {
                source: source.into(),
                dest: binary.dest.clone(),
                mode: 0o755,
                kind: None,
            });
        }
        for row in &self.file {
            if row.packager.is_some_and(|p| p != packager) {
                continue;
            }
            let mode = octal(&row.mode, &row.dest)?;
            let source = Utf8Path::new(&row.source);
            if !row.source.contains('*') {
                out.push(Shipped {
                    source: source.to_owned(),
                    dest: row.dest.clone(),
                    mode,
                    kind: row.kind,
                });
                continue;
            }
            if !row.dest.ends_with('/') {
                bail!(
                    "{CONTENTS_FILE}: {}: a pattern needs a dest directory ending in /",
                    row.source
                );
            }
            let dir = source.parent().unwrap_or(Utf8Path::new(""));
            let names = matching(
                list(&root.join(dir))?.into_iter(),
                source.file_name().unwrap_or_default(),
            );
            if names.is_empty() {
                bail!("{CONTENTS_FILE}: no file matches {}", row.source);
            }
            for name in names {
                out.push(Shipped {
                    source: dir.join(&name),
                    dest: format!("{}{name}", row.dest),
                    mode,
                    kind: row.kind,
                });
            }
        }
        for unit in &self.unit {
            for file in unit.files(root)? {
                out.push(Shipped {
                    source: Utf8Path::new(UNIT_SOURCE_DIR).join(&file),
                    dest: format!("{UNIT_DIR}/{file}"),
                    mode: 0o644,
                    kind: None,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_prefix_and_suffix_only() {
        let names = ["a.1.gz", "b.1.gz", "c.5.gz", "x"].map(String::from);
        assert_eq!(
            matching(names.clone().into_iter(), "*.1.gz"),
            ["a.1.gz", "b.1.gz"]
        );
        assert_eq!(matching(names.into_iter(), "x"), ["x"]);
    }
}
