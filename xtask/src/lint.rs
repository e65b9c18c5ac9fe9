//! lintian and rpmlint on the built packages: any error or warning fails, overrides carry reasons.

use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;
use crate::dist::Packages;

/// rpmlint settings and filters, each with its reason (the .deb ships its lintian overrides).
pub const RPMLINT_CONFIG: &str = "rpm/rpmlint.toml";
pub const RPMLINT_FILTERS: &str = "rpm/rpmlintrc";

pub fn lint(packages: &Packages) -> Result<()> {
    let mut failures = Vec::new();
    if let Err(err) = cmd::step("lintian", || lintian(packages)) {
        failures.push(format!("{err:#}"));
    }
    if let Err(err) = cmd::step("rpmlint", || rpmlint(packages)) {
        failures.push(format!("{err:#}"));
    }
    if !failures.is_empty() {
        bail!("package lint failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

fn lintian(packages: &Packages) -> Result<()> {
    let mut command = Command::new("lintian");
    // lintian -EvIL +pedantic: experimental, info and pedantic tags shown; E and W fail.
    command.args([
        "--fail-on",
        "error,warning",
        "--display-experimental",
        "--verbose",
        "--display-info",
        "--display-level",
        "+pedantic",
        packages.deb.as_str(),
    ]);
    let out = cmd::capture(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}{}", String::from_utf8_lossy(&out.stderr));
    let bad = lintian_problems(&text);
    if !out.status.success() || !bad.is_empty() {
        bail!(
            "lintian found {} error(s)/warning(s) in {} ({}): fix them or override each in \
             debian/pipelock-containment.lintian-overrides with its reason",
            bad.len(),
            packages.deb,
            out.status
        );
    }
    eprintln!("lintian: no errors, no warnings");
    Ok(())
}

/// Lines that are errors or warnings (overridden tags do not print; info lines do not count).
/// (`--show-overrides` is not used: lintian 2.116 then fails on overridden warnings too.)
fn lintian_problems(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect()
}

fn rpmlint(packages: &Packages) -> Result<()> {
    let root = cmd::project_root();
    let mut command = Command::new("rpmlint");
    command.current_dir(&root).args([
        "--config",
        RPMLINT_CONFIG,
        "--rpmlintrc",
        RPMLINT_FILTERS,
        packages.rpm.as_str(),
    ]);
    let out = cmd::capture(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}{}", String::from_utf8_lossy(&out.stderr));
    let Some((errors, warnings)) = rpmlint_counts(&text) else {
        bail!(
            "rpmlint printed no summary line ({}); it did not check {}",
            out.status,
            packages.rpm
        );
    };
    if errors > 0 || warnings > 0 || !out.status.success() {
        bail!(
            "rpmlint found {errors} error(s) and {warnings} warning(s) in {} ({}): fix them or \
             filter each in {RPMLINT_FILTERS} with its reason",
            packages.rpm,
            out.status
        );
    }
    eprintln!("rpmlint: no errors, no warnings");
    Ok(())
}

/// From "1 packages and 0 specfiles checked; 0 errors, 2 warnings, ...": (errors, warnings).
fn rpmlint_counts(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().rev().find(|l| l.contains(" checked; "))?;
    let tail = line.split(" checked; ").nth(1)?;
    let count = |word: &str| -> Option<u32> {
        tail.split(',')
            .map(str::trim)
            .find(|part| part.ends_with(word) || part.ends_with(&format!("{word}s")))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    Some((count("error")?, count("warning")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rpmlint_summary() {
        let text = "x.rpm: W: no-documentation\n\
                    1 packages and 0 specfiles checked; 0 errors, 2 warnings, 3 filtered, 0 badness; has taken 0.3 s\n";
        assert_eq!(rpmlint_counts(text), Some((0, 2)));
        assert_eq!(
            rpmlint_counts("1 packages and 0 specfiles checked; 1 error, 0 warnings, 0 badness\n"),
            Some((1, 0))
        );
        assert_eq!(rpmlint_counts("Traceback ...\n"), None);
    }

    #[test]
    fn overridden_and_info_tags_do_not_count() {
        let text = "O: p: tag-a\nI: p: tag-b\nW: p: tag-c\nE: p: tag-d\nN: note\n";
        assert_eq!(lintian_problems(text), ["W: p: tag-c", "E: p: tag-d"]);
    }
}
