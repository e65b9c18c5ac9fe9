//! The files the packages ship that are generated at build time: man pages and completions from
//! the clap definition, the packaged config, the sysusers.d file.

use std::io::Write;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap_complete::Shell;
use flate2::{write::GzEncoder, Compression};
use pipelock_containment::{cli, config::Config, render, sysusers};

/// The binary (and package) name.
pub const BIN: &str = "pipelock-containment";

/// The binaries the packages ship, as cargo builds them into target/release.
pub const BINARIES: [&str; 6] = [
    BIN,
    "cc-launch",
    "launch-session",
    "session-init",
    "pipelock-bridge",
    "pipelock-audit",
];

/// Below the workspace root: where the package metadata in Cargo.toml expects the generated files.
pub use pipelock_contents::GENERATED_DIR;

/// The clap command with every subcommand named as its man page calls it.
fn built_command() -> clap::Command {
    let mut command = cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// Every man page as (file name, page): the command and each visible subcommand, recursively.
fn man_pages(version: &str) -> Vec<(String, clap_mangen::Man)> {
    fn walk(command: &clap::Command, version: &str, pages: &mut Vec<(String, clap_mangen::Man)>) {
        let man = clap_mangen::Man::new(command.clone())
            .source(format!("{BIN} {version}"))
            .manual("pipelock-containment manual");
        pages.push((man.get_filename(), man));
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, version, pages);
        }
    }
    let mut pages = Vec::new();
    walk(&built_command(), version, &mut pages);
    let launcher = clap_mangen::Man::new(cli::cc_launch_command())
        .source(format!("{BIN} {version}"))
        .manual("pipelock-containment manual");
    pages.push((launcher.get_filename(), launcher));
    pages
}

/// The man page file names as installed (gzipped), e.g. `pipelock-containment-render.1.gz`.
pub fn man_page_files() -> Vec<String> {
    man_pages("")
        .into_iter()
        .map(|(name, _)| format!("{name}.gz"))
        .collect()
}

/// Write everything below `dir` (emptied first, so nothing stale ships).
pub fn write_all(dir: &Utf8Path, version: &str, config_text: &str, config: &Config) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {dir}"))?;
    }
    let man_dir = dir.join("man");
    let completions_dir = dir.join("completions");
    let sysusers_dir = dir.join("sysusers.d");
    let dbus_dir = dir.join("dbus-1");
    for d in [&man_dir, &completions_dir, &sysusers_dir, &dbus_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {d}"))?;
    }

    for (name, man) in man_pages(version) {
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        write(&man_dir.join(format!("{name}.gz")), &gzip(&roff)?)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = built_command();
        clap_complete::generate_to(shell, &mut command, BIN, &completions_dir)
            .with_context(|| format!("cannot write the {shell} completion"))?;
    }
    write(&dir.join("containment.toml"), config_text.as_bytes())?;
    write(
        &sysusers_dir.join(format!("{BIN}.conf")),
        sysusers::render(config).as_bytes(),
    )?;
    write(
        &dbus_dir.join(format!("{BIN}.conf")),
        render::render_dbus_policy(config)?.as_bytes(),
    )?;
    Ok(())
}

/// Stripped copies of the release binaries in `dir/bin`, for the .rpm (cargo-deb strips the
/// .deb's own; the .rpm packages what it is given).
pub fn strip_binaries(release_dir: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).with_context(|| format!("cannot create {bin_dir}"))?;
    for name in BINARIES {
        let source = release_dir.join(name);
        let target = bin_dir.join(name);
        crate::cmd::run(std::process::Command::new("strip").args([
            "--strip-all",
            "-o",
            target.as_str(),
            source.as_str(),
        ]))?;
    }
    Ok(())
}

pub fn write(path: &Utf8PathBuf, contents: &[u8]) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {path}"))
}

/// gzip at the highest level, with no name and no time stamp (reproducible, as Debian wants).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_man_page_for_the_command_and_each_subcommand() {
        let files = man_page_files();
        assert_eq!(files[0], "pipelock-containment.1.gz");
        assert!(files.contains(&"pipelock-containment-render.1.gz".to_string()));
        assert!(files.contains(&"pipelock-containment-check-config.1.gz".to_string()));
        assert!(!files.iter().any(|f| f.contains("-help.")), "{files:?}");
        assert!(files.contains(&"cc-launch.1.gz".to_string()));
        assert!(files.contains(&"pipelock-containment-sessions-stop.1.gz".to_string()));
    }

    #[test]
    fn gzip_is_reproducible() {
        assert_eq!(gzip(b"roff").unwrap(), gzip(b"roff").unwrap());
    }
}
