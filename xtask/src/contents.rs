//! The .deb's side of the package contents table (`pipelock_contents`): cargo-deb's metadata in
//! Cargo.toml, generated from the table, and `cargo xtask contents`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

pub use pipelock_contents::{
    load, Contents, Kind, Packager, Shipped, CONTENTS_FILE, UNIT_DIR, UNIT_SOURCE_DIR,
};

/// What regenerates the .deb's metadata in Cargo.toml.
pub const WRITE_COMMAND: &str = "cargo xtask contents --write";

/// cargo-deb's `assets`: everything but the enabled units, which `systemd-units` installs.
pub fn deb_assets(contents: &Contents) -> Vec<[String; 3]> {
    let relative = |dest: &str| dest.trim_start_matches('/').to_owned();
    let mut out: Vec<[String; 3]> = contents
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
    for row in contents
        .file
        .iter()
        .filter(|r| r.packager != Some(Packager::Rpm))
    {
        out.push([row.source.clone(), relative(&row.dest), row.mode.clone()]);
    }
    for unit in contents.unit.iter().filter(|u| !u.enable) {
        out.push([
            format!("{UNIT_SOURCE_DIR}/{}.*", unit.name),
            relative(&format!("{UNIT_DIR}/")),
            "644".into(),
        ]);
    }
    out
}

/// cargo-deb's `systemd-units`: the enabled units, enabled and started by Debian's snippets.
pub fn deb_systemd_units(contents: &Contents) -> Vec<BTreeMap<&'static str, toml::Value>> {
    contents
        .unit
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

/// The generated keys of `[package.metadata.deb]`, as Cargo.toml should hold them.
fn deb_metadata(contents: &Contents) -> (toml_edit::Array, toml_edit::Array) {
    let mut assets = toml_edit::Array::new();
    for asset in deb_assets(contents) {
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
    for unit in deb_systemd_units(contents) {
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
