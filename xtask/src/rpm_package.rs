//! The .rpm, built with the `rpm` crate from the contents table (pkg/contents.toml) and
//! `[package.metadata.rpm]` in Cargo.toml: owned directories, the generated files as %ghost,
//! Requires per scriptlet, %license, %changelog.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use pipelock_containment::config::Config;
use pipelock_containment::facts::{Account, DistroFamily, DistroPaths, Facts, LoginUidRange};
use pipelock_containment::{paths, render};
use serde::Deserialize;

use crate::contents::{self, Kind, Packager, Shipped};
use crate::rpm_scripts;

/// rpm's own requirement generator (shared libraries of ELF files), as rpmbuild runs it.
pub const FIND_REQUIRES: &str = "/usr/lib/rpm/find-requires";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Metadata {
    pub summary: String,
    pub release: String,
    pub requires: Vec<String>,
    pub requires_pre: Vec<String>,
    pub requires_post: Vec<String>,
    pub requires_preun: Vec<String>,
    pub requires_postun: Vec<String>,
}

/// What Cargo.toml says about the package, for the RPM.
pub struct Manifest {
    pub rpm: Metadata,
    pub license: String,
    pub homepage: String,
    /// The .deb's maintainer, shown as the packager in `rpm -qi`.
    pub packager: String,
    pub description: String,
}

/// `[package] KEY` of a Cargo.toml, following `KEY.workspace = true` to `[workspace.package]`.
pub fn package_key<'a>(manifest: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    let value = manifest.get("package")?.get(key)?;
    if value.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
        manifest.get("workspace")?.get("package")?.get(key)
    } else {
        Some(value)
    }
}

/// Read `[package]`, `[package.metadata.rpm]` and the .deb's maintainer and description.
pub fn manifest(root: &Utf8Path) -> Result<Manifest> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let doc: toml::Value = toml::from_str(&text).with_context(|| format!("cannot parse {path}"))?;
    let package = &doc["package"];
    let string = |value: Option<&toml::Value>, key: &str| -> Result<String> {
        value
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{path}: {key} is missing or not a string"))
    };
    let rpm = package
        .get("metadata")
        .and_then(|m| m.get("rpm"))
        .cloned()
        .with_context(|| format!("{path}: [package.metadata.rpm] is missing"))?;
    let deb = package.get("metadata").and_then(|m| m.get("deb"));
    Ok(Manifest {
        rpm: rpm
            .try_into()
            .with_context(|| format!("{path}: [package.metadata.rpm]"))?,
        license: string(package_key(&doc, "license"), "package.license")?,
        homepage: string(package.get("homepage"), "package.homepage")?,
        packager: string(
            deb.and_then(|d| d.get("maintainer")),
            "package.metadata.deb.maintainer",
        )?,
        description: wrap(
            &string(
                deb.and_then(|d| d.get("extended-description")),
                "package.metadata.deb.extended-description",
            )?,
            DESCRIPTION_WIDTH,
        ),
    })
}

/// rpm shows the description as it is: lines no longer than rpmlint allows.
const DESCRIPTION_WIDTH: usize = 79;

/// `text` with its words on lines of at most `width` columns (a longer word gets a line).
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines.join("\n")
}

/// The files `apply` writes for the packaged config (outside the state directory, which is a
/// %ghost directory of its own), with their modes: the .rpm lists them as %ghost.
pub fn ghost_files(config: &Config) -> Result<Vec<(String, u16)>> {
    let account = |name: &str, uid, home: &Utf8Path| Account {
        name: name.to_owned(),
        uid,
        gid: uid,
        home: home.to_owned(),
    };
    // Only the paths matter here: the UIDs are placeholders.
    let facts = Facts {
        agent: account(&config.users.agent, 990, &config.users.agent_home),
        proxy: account(&config.users.proxy, 991, Utf8Path::new("/var/lib/pipelock")),
        login_range: LoginUidRange {
            min: 1000,
            max: 60000,
        },
        distro: DistroPaths {
            family: DistroFamily::Fedora,
            system_ca_bundle: DistroPaths::FEDORA_CA_BUNDLE.into(),
            nologin: "/usr/sbin/nologin".into(),
        },
        sshd_dropin_dir: true,
    };
    Ok(render::render_all(config, &facts)?
        .into_iter()
        .filter(|file| !file.path.starts_with(paths::STATE_DIR))
        .map(|file| (file.path.into_string(), file.mode as u16))
        .collect())
}

/// One %changelog entry: who and which version, the text, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogEntry {
    pub name: String,
    pub text: String,
    pub time: u32,
}

/// debian/changelog as RPM changelog entries, newest first (as both formats keep them).
pub fn changelog(debian_changelog: &str) -> Result<Vec<ChangelogEntry>> {
    let mut entries = Vec::new();
    let mut version = None;
    let mut text = String::new();
    for line in debian_changelog.lines() {
        if let Some(rest) = line.strip_prefix(" -- ") {
            let (who, date) = rest
                .split_once("  ")
                .with_context(|| format!("debian/changelog: no date in {line:?}"))?;
            let time = rpm::chrono::DateTime::parse_from_rfc2822(date.trim())
                .with_context(|| format!("debian/changelog: cannot read the date {date:?}"))?
                .timestamp();
            let version: String = version
                .take()
                .with_context(|| format!("debian/changelog: {line:?} has no entry above it"))?;
            entries.push(ChangelogEntry {
                name: format!("{who} - {version}"),
                text: std::mem::take(&mut text).trim_end().to_owned(),
                time: u32::try_from(time).context("debian/changelog: a date before 1970")?,
            });
        } else if !line.starts_with(' ') && !line.trim().is_empty() {
            let open = line.find('(').zip(line.find(')'));
            let (open, close) =
                open.with_context(|| format!("debian/changelog: no version in {line:?}"))?;
            version = Some(line[open + 1..close].to_owned());
        } else if let Some(item) = line.trim_start().strip_prefix("* ") {
            text.push_str(&format!("- {item}\n"));
        } else if !line.trim().is_empty() {
            text.push_str(&format!("  {}\n", line.trim()));
        }
    }
    if entries.is_empty() {
        bail!("debian/changelog has no entries");
    }
    Ok(entries)
}

/// A build of another version than debian/changelog's newest (a `--version-suffix` or site
/// build) gets an entry of its own on top, as `dch --local` would add one, so the newest
/// %changelog entry names the package's version.
fn with_build_entry(
    mut entries: Vec<ChangelogEntry>,
    packager: &str,
    full_version: &str,
    source_date: Option<u32>,
) -> Vec<ChangelogEntry> {
    let newest = entries.first().map(|e| e.name.clone()).unwrap_or_default();
    if newest.ends_with(&format!(" - {full_version}")) {
        return entries;
    }
    let base = newest.rsplit(" - ").next().unwrap_or("?").to_owned();
    let time = source_date
        .or_else(|| entries.first().map(|e| e.time))
        .unwrap_or(0);
    entries.insert(
        0,
        ChangelogEntry {
            name: format!("{packager} - {full_version}"),
            text: format!("- Local build of {base} as {full_version}."),
            time,
        },
    );
    entries
}

/// The shared-library requirements of the executables, as rpm's find-requires reports them.
fn elf_requires(root: &Utf8Path, files: &[Shipped]) -> Result<BTreeSet<String>> {
    let executables: Vec<String> = files
        .iter()
        .filter(|f| f.mode & 0o111 != 0)
        .map(|f| root.join(&f.source).into_string())
        .collect();
    let mut child = Command::new(FIND_REQUIRES)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {FIND_REQUIRES} (Debian's rpm package)"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{}\n", executables.join("\n")).as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{FIND_REQUIRES} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Build `out` for `version` on `arch`, with `generated` holding the composed scriptlets.
pub fn build(
    root: &Utf8Path,
    generated: &Utf8Path,
    config: &Config,
    version: &str,
    arch: &str,
    source_date: Option<u32>,
    out: &Utf8Path,
) -> Result<()> {
    let manifest = manifest(root)?;
    let meta = &manifest.rpm;
    let contents = contents::load(root)?;
    let files = contents.shipped(root, Packager::Rpm)?;

    let mut build_config = rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip);
    if let Some(date) = source_date {
        build_config = build_config.source_date(date);
    }
    let mut builder = rpm::PackageBuilder::new(
        crate::generate::BIN,
        version,
        &manifest.license,
        arch,
        &meta.summary,
    );
    builder
        .using_config(build_config)
        .release(meta.release.as_str())
        .description(manifest.description.as_str())
        .url(manifest.homepage.as_str())
        .packager(manifest.packager.as_str())
        .group("Unspecified")
        .build_host("reproducible");

    for name in rpm_scripts::SCRIPTLETS {
        let path = generated.join("rpm").join(format!("{name}.sh"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let scriptlet = rpm::Scriptlet::new(text).prog(vec!["/bin/sh"]);
        match name {
            "pre" => builder.pre_install_script(scriptlet),
            "post" => builder.post_install_script(scriptlet),
            "preun" => builder.pre_uninstall_script(scriptlet),
            "postun" => builder.post_uninstall_script(scriptlet),
            other => bail!("no RPM tag for the scriptlet {other}"),
        };
    }

    for name in &meta.requires {
        builder.requires(rpm::Dependency::any(name));
    }
    for name in elf_requires(root, &files)? {
        builder.requires(rpm::Dependency::any(name));
    }
    type ScriptDependency = fn(String) -> rpm::Dependency;
    let phases: [(&[String], ScriptDependency); 4] = [
        (&meta.requires_pre, rpm::Dependency::script_pre),
        (&meta.requires_post, rpm::Dependency::script_post),
        (&meta.requires_preun, rpm::Dependency::script_preun),
        (&meta.requires_postun, rpm::Dependency::script_postun),
    ];
    for (names, dependency) in phases {
        for name in names {
            builder.requires(dependency(name.clone()));
        }
    }

    for dir in &contents.directories {
        builder.with_dir_entry(rpm::FileOptions::dir(dir.as_str()).permissions(0o755))?;
    }
    builder.with_ghost(rpm::FileOptions::ghost_dir(paths::STATE_DIR).permissions(0o755))?;
    for (path, mode) in ghost_files(config)? {
        builder.with_ghost(rpm::FileOptions::ghost(path).permissions(mode))?;
    }
    for file in &files {
        let options = rpm::FileOptions::new(file.dest.as_str()).permissions(file.mode as u16);
        let options = match file.kind {
            None => options,
            Some(Kind::Doc) => options.doc(),
            Some(Kind::License) => options.license(),
            Some(Kind::Config) => options.config().noreplace(),
        };
        let source = root.join(&file.source);
        builder
            .with_file(&source, options)
            .with_context(|| format!("cannot add {source} to the .rpm"))?;
    }

    let changelog_path = root.join("debian/changelog");
    let changelog_text = std::fs::read_to_string(&changelog_path)
        .with_context(|| format!("cannot read {changelog_path}"))?;
    let entries = with_build_entry(
        changelog(&changelog_text)?,
        &manifest.packager,
        &format!("{version}-{}", meta.release),
        source_date,
    );
    for entry in entries {
        builder.add_changelog_entry(&entry.name, &entry.text, entry.time);
    }

    let package = builder
        .build()
        .with_context(|| format!("cannot build {out}"))?;
    package
        .write_file(out)
        .with_context(|| format!("cannot write {out}"))?;
    eprintln!("wrote {out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "\
pipelock-containment (0.2.0-1) unstable; urgency=medium

  * Second: one item
    that wraps.
  * Another.

 -- A Maintainer <a@example.org>  Tue, 01 Dec 2026 10:00:00 +0000

pipelock-containment (0.1.0-1) unstable; urgency=medium

  * First.

 -- A Maintainer <a@example.org>  Mon, 30 Nov 2026 08:00:00 +0000
";

    #[test]
    fn the_changelog_keeps_every_entry_newest_first_with_its_version_and_date() {
        let entries = changelog(CHANGELOG).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "A Maintainer <a@example.org> - 0.2.0-1");
        assert_eq!(
            entries[0].text,
            "- Second: one item\n  that wraps.\n- Another."
        );
        assert_eq!(entries[0].time, 1_796_119_200);
        assert_eq!(entries[1].name, "A Maintainer <a@example.org> - 0.1.0-1");
        assert!(entries[0].time > entries[1].time);
    }

    #[test]
    fn the_description_wraps_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc  dd", 5), "aa bb\ncc dd");
        assert_eq!(wrap("a verylongword b", 4), "a\nverylongword\nb");
        let text = "word ".repeat(100);
        assert!(wrap(&text, DESCRIPTION_WIDTH)
            .lines()
            .all(|l| l.len() <= DESCRIPTION_WIDTH));
    }

    #[test]
    fn a_build_of_another_version_gets_its_own_changelog_entry_on_top() {
        let entries = changelog(CHANGELOG).unwrap();
        let same = with_build_entry(entries.clone(), "P <p@example.org>", "0.2.0-1", None);
        assert_eq!(same, entries);
        let site = with_build_entry(
            entries.clone(),
            "P <p@example.org>",
            "0.2.0+site1-1",
            Some(7),
        );
        assert_eq!(site.len(), 3);
        assert_eq!(site[0].name, "P <p@example.org> - 0.2.0+site1-1");
        assert_eq!(site[0].text, "- Local build of 0.2.0-1 as 0.2.0+site1-1.");
        assert_eq!(site[0].time, 7);
        assert_eq!(site[1..], entries[..]);
    }

    #[test]
    fn a_changelog_without_a_trailer_is_refused() {
        let text = "pipelock-containment (0.1.0-1) unstable; urgency=medium\n\n  * First.\n";
        assert!(changelog(text).is_err());
    }

    #[test]
    fn the_shipped_metadata_reads() {
        let manifest = manifest(&crate::cmd::project_root()).unwrap();
        assert!(!manifest.description.is_empty());
        for phase in [
            &manifest.rpm.requires_pre,
            &manifest.rpm.requires_post,
            &manifest.rpm.requires_preun,
            &manifest.rpm.requires_postun,
        ] {
            assert!(phase.iter().any(|p| p == "systemd"), "{phase:?}");
        }
    }

    #[test]
    fn the_ghosts_are_what_apply_writes_outside_the_state_directory() {
        let (_, config) = crate::dist::packaged_config(None).unwrap();
        let ghosts = ghost_files(&config).unwrap();
        let paths: Vec<&str> = ghosts.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            paths::RULE_FILE,
            paths::SUDOERS_DROPIN,
            paths::SUDOERS_GRANTS_DROPIN,
        ] {
            assert!(paths.contains(&expected), "{expected} not in {paths:?}");
        }
        assert!(paths.iter().all(|p| !p.starts_with(paths::STATE_DIR)));
        assert!(ghosts
            .iter()
            .any(|(p, mode)| p == paths::SUDOERS_DROPIN && *mode == 0o440));
    }
}
