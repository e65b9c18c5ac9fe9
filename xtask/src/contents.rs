//! The package contents table, `pkg/contents.toml`: what the .deb and the .rpm ship. The .rpm
//! is built from it, the .deb's cargo-deb metadata in Cargo.toml is generated from it, and the
//! package checks expect exactly its files.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

/// The table, relative to the repository.
pub const CONTENTS_FILE: &str = "pkg/contents.toml";
/// Where the packaged units live in the repository, and where they are installed.
const UNIT_SOURCE_DIR: &str = "systemd";
const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// What regenerates the .deb's metadata in Cargo.toml.
pub const WRITE_COMMAND: &str = "cargo xtask contents --write";

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

fn octal(mode: &str, dest: &str) -> Result<u32> {
    u32::from_str_radix(mode, 8)
        .with_context(|| format!("{CONTENTS_FILE}: {dest}: mode {mode:?} is not octal"))
}

/// The names matching `name`, where `*` in it stands for any run of characters.
fn matching(names: impl Iterator<Item = String>, pattern: &str) -> Vec<String> {
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
                Packager::Rpm => format!("{}/bin/{}", crate::generate::GENERATED_DIR, binary.name),
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

    /// cargo-deb's `assets`: everything but the enabled units, which `systemd-units` installs.
    pub fn deb_assets(&self) -> Vec<[String; 3]> {
        let relative = |dest: &str| dest.trim_start_matches('/').to_owned();
        let mut out: Vec<[String; 3]> = self
            .binary
            .iter()
            .map(|b| {
                [
                    format!("target/release/{}", b.name),
                    relative(&b.dest),
                    "755".into(),
                ]
            })
            .collect();
        for row in self
            .file
            .iter()
            .filter(|r| r.packager != Some(Packager::Rpm))
        {
            out.push([row.source.clone(), relative(&row.dest), row.mode.clone()]);
        }
        for unit in self.unit.iter().filter(|u| !u.enable) {
            out.push([
                format!("{UNIT_SOURCE_DIR}/{}.*", unit.name),
                relative(&format!("{UNIT_DIR}/")),
                "644".into(),
            ]);
        }
        out
    }

    /// cargo-deb's `systemd-units`: the enabled units, enabled and started by Debian's snippets.
    pub fn deb_systemd_units(&self) -> Vec<BTreeMap<&'static str, toml::Value>> {
        self.unit
            .iter()
            .filter(|u| u.enable)
            .map(|unit| {
                let mut entry = BTreeMap::new();
                entry.insert("unit-name", toml::Value::String(unit.name.clone()));
                entry.insert(
                    "unit-scripts",
                    toml::Value::String(format!("{UNIT_SOURCE_DIR}/")),
                );
                entry.insert("enable", toml::Value::Boolean(true));
                entry.insert("start", toml::Value::Boolean(true));
                entry.insert(
                    "restart-after-upgrade",
                    toml::Value::Boolean(unit.restart_after_upgrade),
                );
                if !unit.stop_on_upgrade {
                    entry.insert("stop-on-upgrade", toml::Value::Boolean(false));
                }
                entry
            })
            .collect()
    }
}

/// The generated keys of `[package.metadata.deb]`, as Cargo.toml should hold them.
fn deb_metadata(contents: &Contents) -> (toml_edit::Array, toml_edit::Array) {
    let mut assets = toml_edit::Array::new();
    for asset in contents.deb_assets() {
        let mut row = toml_edit::Array::new();
        for field in asset {
            row.push(field);
        }
        row.decor_mut().set_prefix("\n    ");
        assets.push_formatted(toml_edit::Value::Array(row));
    }
    assets.set_trailing("\n");
    assets.set_trailing_comma(true);
    let mut units = toml_edit::Array::new();
    for unit in contents.deb_systemd_units() {
        let mut table = toml_edit::InlineTable::new();
        for key in [
            "unit-name",
            "unit-scripts",
            "enable",
            "start",
            "restart-after-upgrade",
            "stop-on-upgrade",
        ] {
            match unit.get(key) {
                Some(toml::Value::String(s)) => {
                    table.insert(key, s.as_str().into());
                }
                Some(toml::Value::Boolean(b)) => {
                    table.insert(key, (*b).into());
                }
                _ => {}
            }
        }
        let mut value = toml_edit::Value::InlineTable(table);
        value.decor_mut().set_prefix("\n    ");
        units.push_formatted(value);
    }
    units.set_trailing("\n");
    units.set_trailing_comma(true);
    (assets, units)
}

/// Cargo.toml with its `[package.metadata.deb]` assets and systemd-units generated from the
/// table; everything else (comments included) as it was.
pub fn cargo_toml_with_deb_metadata(cargo_toml: &str, contents: &Contents) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = cargo_toml.parse().context("cannot parse Cargo.toml")?;
    let deb = doc["package"]["metadata"]["deb"]
        .as_table_mut()
        .context("Cargo.toml has no [package.metadata.deb]")?;
    let (assets, units) = deb_metadata(contents);
    for (key, array) in [("assets", assets), ("systemd-units", units)] {
        match deb.get_mut(key) {
            Some(item) => *item = toml_edit::value(array),
            None => bail!("Cargo.toml's [package.metadata.deb] has no {key} to replace"),
        }
    }
    Ok(doc.to_string())
}

/// Fail when Cargo.toml's .deb metadata is not what the table generates.
pub fn check_cargo_toml(root: &Utf8Path) -> Result<()> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let contents = load(root)?;
    if cargo_toml_with_deb_metadata(&text, &contents)? != text {
        bail!(
            "{path}: [package.metadata.deb] assets or systemd-units differ from {CONTENTS_FILE}; \
             run `{WRITE_COMMAND}`"
        );
    }
    Ok(())
}

/// `cargo xtask contents`: check, or with `write` regenerate, the .deb metadata in Cargo.toml.
pub fn command(write: bool) -> Result<()> {
    let root = crate::cmd::project_root();
    if !write {
        check_cargo_toml(&root)?;
        println!("Cargo.toml's .deb metadata matches {CONTENTS_FILE}");
        return Ok(());
    }
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let updated = cargo_toml_with_deb_metadata(&text, &load(&root)?)?;
    if updated == text {
        println!("Cargo.toml is up to date");
    } else {
        std::fs::write(&path, updated).with_context(|| format!("cannot write {path}"))?;
        println!("wrote the .deb metadata in {path} from {CONTENTS_FILE}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_toml_deb_metadata_is_generated_from_the_table() {
        check_cargo_toml(&crate::cmd::project_root()).unwrap();
    }

    #[test]
    fn the_units_the_package_enables_are_the_helper_s_units() {
        let root = crate::cmd::project_root();
        let contents = load(&root).unwrap();
        let enabled: Vec<String> = contents
            .unit
            .iter()
            .filter(|u| u.enable)
            .flat_map(|u| u.files(&root).unwrap())
            .collect();
        for unit in pipelock_containment::plan::UNITS {
            assert!(
                enabled.iter().any(|f| f == unit),
                "{unit} is in plan::UNITS but no enabled [[unit]] of {CONTENTS_FILE} has it"
            );
        }
        for unit in contents.unit.iter().filter(|u| u.enable) {
            let files = unit.files(&root).unwrap();
            assert!(
                files
                    .iter()
                    .any(|f| pipelock_containment::plan::UNITS.contains(&f.as_str())),
                "{CONTENTS_FILE} enables {} but plan::UNITS has none of {files:?}",
                unit.name
            );
        }
    }

    #[test]
    fn patterns_match_by_prefix_and_suffix_only() {
        let names = ["a.1.gz", "b.1.gz", "c.5.gz", "x"].map(String::from);
        assert_eq!(
            matching(names.clone().into_iter(), "*.1.gz"),
            ["a.1.gz", "b.1.gz"]
        );
        assert_eq!(matching(names.into_iter(), "x"), ["x"]);
    }

    #[test]
    fn a_stale_cargo_toml_is_rewritten_and_its_comments_kept() {
        let root = crate::cmd::project_root();
        let contents = load(&root).unwrap();
        let stale = "[package]\nname = \"x\"\n\n[package.metadata.deb]\n# kept\nassets = []\nsystemd-units = []\n";
        let text = cargo_toml_with_deb_metadata(stale, &contents).unwrap();
        assert!(text.contains("# kept"));
        assert!(text.contains("\"target/release/cc-launch\", \"usr/bin/cc-launch\", \"755\""));
        assert!(text.contains("unit-name = \"pipelock-proxy\""));
        assert_eq!(
            cargo_toml_with_deb_metadata(&text, &contents).unwrap(),
            text
        );
    }
}
