//! Site builds: a site config's names reach the packaged config and the sysusers.d file, and a
//! bad site config fails the build, naming the key and the line.

use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use pipelock_containment::config::DEFAULT_CONFIG_TOML;
use pipelock_containment::sysusers::SYSUSERS_FILE;

use crate::dist::{self, DistArgs};
use crate::{cmd, generate, inspect};

/// Where the site-check packages go (apart from target/dist, which keeps the default build).
const SITE_DIR: &str = "target/dist-site-check";

pub fn check() -> Result<()> {
    let dir = cmd::project_root().join(SITE_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {dir}"))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir}"))?;
    cmd::step("site build: users.agent = \"ai-agent\"", || good_site(&dir))?;
    cmd::step("site build: an unknown key fails the build", || {
        bad_site(&dir)
    })?;
    Ok(())
}

fn replaced(from: &str, to: &str) -> Result<String> {
    if !DEFAULT_CONFIG_TOML.contains(from) {
        bail!("the default config no longer contains {from:?}: update the site check");
    }
    Ok(DEFAULT_CONFIG_TOML.replacen(from, to, 1))
}

fn good_site(dir: &Utf8Path) -> Result<()> {
    let text = format!(
        "# Example Org site policy.\n{}",
        replaced("agent = \"cc-agent\"", "agent = \"ai-agent\"")?.replacen(
            "/var/lib/cc-agent",
            "/var/lib/ai-agent",
            1
        )
    );
    let site = dir.join("site.toml");
    generate::write(&site, text.as_bytes())?;
    let packages = dist::dist(&DistArgs {
        config: Some(site),
        version_suffix: Some("+site1".into()),
        out_dir: Some(dir.join("packages")),
    })?;
    inspect::check(&packages)?;

    // Beyond "the files match the build's input": the name itself, in both packages.
    let packages_dir = dir.join("packages");
    for tree in ["inspect-deb-tree", "inspect-rpm-tree"] {
        let tree = packages_dir.join(tree);
        let config =
            std::fs::read_to_string(tree.join("etc/pipelock-containment/containment.toml"))
                .with_context(|| format!("no packaged config in {tree}"))?;
        let sysusers = std::fs::read_to_string(tree.join(SYSUSERS_FILE.trim_start_matches('/')))
            .with_context(|| format!("no sysusers.d file in {tree}"))?;
        if !config.contains("agent = \"ai-agent\"") || !config.starts_with("# Example Org") {
            bail!("{tree}: the packaged config is not the site config");
        }
        if !sysusers.contains("\nu ai-agent - ") || sysusers.contains("cc-agent") {
            bail!(
                "{tree}: the sysusers.d file does not declare ai-agent (and only it):\n{sysusers}"
            );
        }
    }
    eprintln!("site build ships ai-agent in the config and the sysusers.d file of both packages");
    Ok(())
}

fn bad_site(dir: &Utf8Path) -> Result<()> {
    let text = replaced("[network]\n", "[network]\nfirewal = true\n")?;
    let line = text
        .lines()
        .position(|l| l == "firewal = true")
        .expect("just inserted")
        + 1;
    let site = dir.join("bad-site.toml");
    generate::write(&site, text.as_bytes())?;
    let out_dir = dir.join("bad-packages");
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let out = cmd::capture(Command::new(exe).args([
        "dist",
        "--config",
        site.as_str(),
        "--out-dir",
        out_dir.as_str(),
    ]))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("expected failure, the build printed:");
    for line in stderr.lines() {
        eprintln!("  | {line}");
    }
    if out.status.success() {
        bail!("`cargo xtask dist --config {site}` succeeded with an unknown key");
    }
    for needle in [
        "unknown field `firewal`".to_string(),
        format!("line {line}, column 1"),
        "network.firewal".to_string(),
        site.to_string(),
    ] {
        if !stderr.contains(&needle) {
            bail!("the failed build's error does not say {needle:?}");
        }
    }
    let leftovers = std::fs::read_dir(&out_dir).map(|d| d.count()).unwrap_or(0);
    if leftovers > 0 {
        bail!("the failed build left {leftovers} file(s) in {out_dir}");
    }
    eprintln!("a site config with an unknown key fails the build, naming the key and line {line}");
    Ok(())
}
