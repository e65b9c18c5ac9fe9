//! The packaging tools at pinned versions: installed with `cargo install --locked` when missing.

use anyhow::{bail, Result};

use crate::cmd;

/// A cargo subcommand the packages are built with, and the version the metadata is written for.
pub struct Tool {
    /// The crate to install.
    pub krate: &'static str,
    /// The cargo subcommand it provides.
    pub subcommand: &'static str,
    pub version: &'static str,
}

pub const CARGO_DEB: Tool = Tool {
    krate: "cargo-deb",
    subcommand: "deb",
    version: "3.8.0",
};

/// Make sure every packaging tool is installed at its pinned version.
pub fn ensure_all() -> Result<()> {
    ensure(&CARGO_DEB)
}

fn ensure(tool: &Tool) -> Result<()> {
    match installed_version(tool) {
        Some(version) if version == tool.version => {
            eprintln!("{} {} is installed", tool.krate, version);
            return Ok(());
        }
        Some(version) => eprintln!(
            "{} {} is installed, but the packaging is written for {}: installing that",
            tool.krate, version, tool.version
        ),
        None => eprintln!("{} is missing: installing {}", tool.krate, tool.version),
    }
    cmd::run(cmd::cargo().args([
        "install",
        "--locked",
        "--force",
        "--version",
        tool.version,
        tool.krate,
    ]))?;
    match installed_version(tool) {
        Some(version) if version == tool.version => Ok(()),
        other => bail!(
            "installed {} {}, but `cargo {} --version` now reports {:?}: is another one earlier on PATH?",
            tool.krate,
            tool.version,
            tool.subcommand,
            other
        ),
    }
}

/// The version `cargo SUBCOMMAND --version` reports ("cargo-deb 3.8.0" -> "3.8.0").
fn installed_version(tool: &Tool) -> Option<String> {
    let out = cmd::capture(cmd::cargo().args([tool.subcommand, "--version"])).ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&out.stdout), tool.krate)
}

fn parse_version(text: &str, krate: &str) -> Option<String> {
    let line = text.lines().find(|l| l.trim_start().starts_with(krate))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_version_line() {
        assert_eq!(
            parse_version("cargo-deb 3.8.0\n", "cargo-deb").as_deref(),
            Some("3.8.0")
        );
        assert_eq!(
            parse_version("warning: x\ncargo-deb 3.8.0 (2a1b)\n", "cargo-deb").as_deref(),
            Some("3.8.0")
        );
        assert_eq!(parse_version("error: no such command\n", "cargo-deb"), None);
    }
}
