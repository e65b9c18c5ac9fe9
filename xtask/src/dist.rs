//! `cargo xtask dist`: the release binaries, the generated files, then the .deb and the .rpm.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use pipelock_containment::config::{Config, DEFAULT_CONFIG_TOML};
use pipelock_containment::sysusers;

use crate::{cmd, contents, deps, generate, rpm_package, rpm_scripts, tools};

/// The Debian revision and the RPM release of every build.
pub const RELEASE: &str = "1";

#[derive(Debug, Clone, Default, Args)]
pub struct DistArgs {
    /// A site config to ship as the packaged /etc/pipelock-containment/containment.toml
    /// (validated now, with the helper's own errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<Utf8PathBuf>,
    /// Appended to the crate version, e.g. `+site1` (sorts after the plain version in dpkg and
    /// rpm) or `~rc1` (sorts before). Letters, digits, `.`, `+` and `~`.
    #[arg(long, value_name = "S")]
    pub version_suffix: Option<String>,
    /// Where to write the packages (default: target/dist).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<Utf8PathBuf>,
}

/// What a build produced, and what it was built from (the inspection checks against it).
#[derive(Debug, Clone)]
pub struct Packages {
    pub deb: Utf8PathBuf,
    pub rpm: Utf8PathBuf,
    /// Upstream version, suffix included (no revision or release).
    pub version: String,
    pub deb_arch: String,
    pub rpm_arch: String,
    /// The packaged config, byte for byte, and parsed.
    pub config_text: String,
    pub config: Config,
}

impl Packages {
    pub fn print(&self) {
        println!("{}", self.deb);
        println!("{}", self.rpm);
    }

    pub fn deb_version(&self) -> String {
        format!("{}-{RELEASE}", self.version)
    }
}

/// The config the packages will ship: the site file or the default, validated as the helper does.
pub fn packaged_config(site: Option<&Utf8Path>) -> Result<(String, Config)> {
    let (text, source_name) = match site {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
            path.to_string(),
        ),
        None => (
            DEFAULT_CONFIG_TOML.to_string(),
            "pkg/containment.toml".into(),
        ),
    };
    let config = Config::parse(&text, &source_name)
        .map_err(|err| anyhow::anyhow!("the packaged config is invalid: {err}"))?;
    Ok((text, config))
}

/// The version with the suffix, refusing characters that dpkg or rpm would mangle.
pub fn full_version(suffix: Option<&str>) -> Result<String> {
    let base = crate_version()?;
    let Some(suffix) = suffix else {
        return Ok(base);
    };
    if suffix.is_empty()
        || !suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~'))
    {
        bail!("--version-suffix {suffix:?}: use letters, digits, `.`, `+` and `~` only");
    }
    Ok(format!("{base}{suffix}"))
}

/// Every shipped binary but the helper itself is on the session path: sudo runs them on every
/// launch, and session-init runs as the agent. They must not link the template engine, the X.509
/// parser, the TOML editor or the CLI parser (ARCHITECTURE.md, "The session binaries are lean").
const NOT_IN_LEAN_BINARIES: [&str; 4] = [
    "handlebars::",
    "x509_parser::",
    "toml_edit::",
    "clap_builder::",
];

fn check_lean_binaries(release_dir: &Utf8Path) -> Result<()> {
    for name in generate::BINARIES.iter().filter(|b| **b != generate::BIN) {
        let path = release_dir.join(name);
        let symbols = cmd::output(std::process::Command::new("nm").args(["-C", path.as_str()]))?;
        for library in NOT_IN_LEAN_BINARIES {
            let count = symbols.lines().filter(|l| l.contains(library)).count();
            if count > 0 {
                bail!(
                    "{path} links {library} ({count} symbols); the session binaries must stay lean: \
                     find what they call from crates/host or crates/policy that uses it, and keep \
                     it out of their path"
                );
            }
        }
    }
    println!(
        "session binaries lean: no {}",
        NOT_IN_LEAN_BINARIES.join(", no ")
    );
    Ok(())
}

/// The root package's version, from the root Cargo.toml (the xtask's own version is 0.0.0).
fn crate_version() -> Result<String> {
    let path = cmd::project_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let manifest: toml::Value =
        toml::from_str(&text).with_context(|| format!("cannot parse {path}"))?;
    rpm_package::package_key(&manifest, "version")
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{path} has no package.version"))
}

/// Debian and RPM names for the architecture this machine builds for.
pub fn arch_names() -> Result<(String, String)> {
    let (deb, rpm) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", "x86_64"),
        "aarch64" => ("arm64", "aarch64"),
        "x86" => ("i386", "i586"),
        "arm" => ("armhf", "armhfp"),
        "powerpc64" => ("ppc64el", "ppc64le"),
        "riscv64" => ("riscv64", "riscv64"),
        "s390x" => ("s390x", "s390x"),
        other => bail!("no Debian/RPM architecture name known for {other}"),
    };
    Ok((deb.into(), rpm.into()))
}

pub fn dist(args: &DistArgs) -> Result<Packages> {
    let root = cmd::project_root();
    let (config_text, config) = packaged_config(args.config.as_deref())?;
    deps::ensure(deps::Need::Build)?;
    let version = full_version(args.version_suffix.as_deref())?;
    let (deb_arch, rpm_arch) = arch_names()?;
    let out_dir = match &args.out_dir {
        Some(dir) => dir.clone(),
        None => root.join("target/dist"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {out_dir}"))?;
    let packages = Packages {
        deb: out_dir.join(format!(
            "{}_{version}-{RELEASE}_{deb_arch}.deb",
            generate::BIN
        )),
        rpm: out_dir.join(format!(
            "{}-{version}-{RELEASE}.{rpm_arch}.rpm",
            generate::BIN
        )),
        version,
        deb_arch,
        rpm_arch,
        config_text,
        config,
    };
    eprintln!(
        "packaging {} {} with the config from {}",
        generate::BIN,
        packages.version,
        args.config
            .as_ref()
            .map_or("pkg/containment.toml", |p| p.as_str())
    );

    // cargo-deb reads its assets from Cargo.toml: they must be the contents table's.
    contents::check_cargo_toml(&root)?;
    tools::ensure_all()?;
    cmd::run(cmd::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "--package",
        generate::BIN,
        "--bins",
    ]))?;

    let generated = root.join(generate::GENERATED_DIR);
    generate::write_all(
        &generated,
        &packages.version,
        &packages.config_text,
        &packages.config,
    )?;
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    check_lean_binaries(&target_dir.join("release"))?;
    generate::strip_binaries(&target_dir.join("release"), &generated)?;
    rpm_scripts::write_all(&root, &generated, &sysusers::render(&packages.config))?;

    // Reproducible packages: file times and build time clamped to the last commit's time.
    let source_date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| last_commit_time(&root));
    let with_date = |mut command: std::process::Command| {
        if let Some(date) = &source_date {
            command.env("SOURCE_DATE_EPOCH", date);
        }
        command
    };

    for stale in [&packages.deb, &packages.rpm] {
        if stale.exists() {
            std::fs::remove_file(stale).with_context(|| format!("cannot remove {stale}"))?;
        }
    }
    cmd::run(with_date(cmd::cargo()).current_dir(&root).args([
        "deb",
        "--package",
        generate::BIN,
        "--no-build",
        "--locked",
        "--deb-version",
        &packages.deb_version(),
        "--output",
        packages.deb.as_str(),
    ]))?;
    add_md5sums(&packages.deb, &root.join("target/dist-md5sums"), &with_date)?;
    rpm_package::build(
        &root,
        &generated,
        &packages.config,
        &packages.version,
        &packages.rpm_arch,
        source_date.as_deref().and_then(|d| d.parse().ok()),
        &packages.rpm,
    )?;
    for built in [&packages.deb, &packages.rpm] {
        if !built.is_file() {
            bail!("the packaging tool reported success, but {built} is not there");
        }
    }
    Ok(packages)
}

/// cargo-deb writes no md5sums: add them as dh_md5sums does (every regular file but the
/// conffiles), so `dpkg --verify` and debsums can check this security package. The .deb is
/// unpacked and built again by dpkg-deb itself, files owned by root.
fn add_md5sums(
    deb: &Utf8Path,
    work: &Utf8Path,
    with_date: &dyn Fn(std::process::Command) -> std::process::Command,
) -> Result<()> {
    use std::process::Command;
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("cannot empty {work}"))?;
    }
    cmd::run(Command::new("dpkg-deb").args(["-R", deb.as_str(), work.as_str()]))?;
    let control = work.join("DEBIAN");
    let conffiles: Vec<String> = std::fs::read_to_string(control.join("conffiles"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect();
    let mut files = Vec::new();
    let mut dirs = vec![work.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in dir.read_dir_utf8()? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && entry.path() != control {
                dirs.push(entry.into_path());
            } else if kind.is_file() {
                let relative = entry.path().strip_prefix(work)?.to_string();
                if !conffiles.contains(&relative) {
                    files.push(relative);
                }
            }
        }
    }
    files.sort();
    let sums = cmd::output(
        Command::new("md5sum")
            .arg("--")
            .args(&files)
            .current_dir(work),
    )?;
    std::fs::write(control.join("md5sums"), sums)?;
    cmd::run(with_date(Command::new("dpkg-deb")).args([
        "--root-owner-group",
        "-Zxz",
        "--build",
        work.as_str(),
        deb.as_str(),
    ]))?;
    std::fs::remove_dir_all(work).with_context(|| format!("cannot remove {work}"))?;
    Ok(())
}

/// The committer time of HEAD, in seconds since the epoch (None outside a git checkout).
fn last_commit_time(root: &Utf8Path) -> Option<String> {
    let out = cmd::capture(std::process::Command::new("git").current_dir(root).args([
        "log",
        "-1",
        "--format=%ct",
    ]))
    .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let time = text.trim();
    (out.status.success() && !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit()))
        .then(|| time.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_suffix_is_checked() {
        let base = full_version(None).unwrap();
        assert_eq!(base, crate_version().unwrap());
        assert_eq!(
            full_version(Some("+site1")).unwrap(),
            format!("{base}+site1")
        );
        assert!(full_version(Some("-1")).is_err());
        assert!(full_version(Some("")).is_err());
        assert!(full_version(Some("a b")).is_err());
    }

    #[test]
    fn bad_site_config_names_the_key_and_line() {
        let dir = cmd::project_root().join("target/xtask-unit");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad-site.toml");
        std::fs::write(
            &path,
            DEFAULT_CONFIG_TOML.replacen("[network]\n", "[network]\nfirewal = true\n", 1),
        )
        .unwrap();
        let err = packaged_config(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("unknown field `firewal`"), "{err}");
        assert!(err.contains("line "), "{err}");
    }
}
