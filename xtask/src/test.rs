//! `cargo xtask test`: the project's one test command. Every step is timed; any failure makes
//! the run fail, after the steps that do not depend on it have run too.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::dist::{self, DistArgs, Packages};
use crate::{cmd, deps, inspect, lint, site};

/// How a step ended.
enum Outcome {
    Passed,
    /// Did not run, and says why (printed as a loud SKIPPED line).
    Skipped(String),
    Failed,
}

struct StepResult {
    name: &'static str,
    outcome: Outcome,
    secs: f64,
}

/// Run one step, timed; an error is printed by `cmd::step` and recorded as a failure.
fn timed(results: &mut Vec<StepResult>, name: &'static str, f: impl FnOnce() -> Result<Outcome>) {
    let start = Instant::now();
    let outcome = cmd::step(name, f).unwrap_or(Outcome::Failed);
    if let Outcome::Skipped(why) = &outcome {
        eprintln!("SKIPPED: {name}: {why}");
    }
    results.push(StepResult {
        name,
        outcome,
        secs: start.elapsed().as_secs_f64(),
    });
}

pub fn run() -> Result<()> {
    let start = Instant::now();
    let mut results = Vec::new();

    cmd::step("test dependencies (apt)", || deps::ensure(deps::Need::Test))?;
    timed(&mut results, "cargo test --workspace", || {
        cargo_test().map(|()| Outcome::Passed)
    });
    let mut packages: Option<Packages> = None;
    timed(&mut results, "dist (default config)", || {
        packages = Some(dist::dist(&DistArgs::default())?);
        Ok(Outcome::Passed)
    });
    match &packages {
        Some(packages) => {
            timed(&mut results, "check-packages", || {
                inspect::check(packages).map(|()| Outcome::Passed)
            });
            timed(&mut results, "lint-packages", || {
                lint::lint(packages).map(|()| Outcome::Passed)
            });
            timed(&mut results, "site-check", || {
                site::check().map(|()| Outcome::Passed)
            });
            timed(&mut results, "e2e", || e2e(packages));
        }
        None => {
            for name in ["check-packages", "lint-packages", "site-check", "e2e"] {
                eprintln!("SKIPPED: {name}: the packages were not built");
                results.push(StepResult {
                    name,
                    outcome: Outcome::Failed,
                    secs: 0.0,
                });
            }
        }
    }

    let count = |want: fn(&Outcome) -> bool| results.iter().filter(|r| want(&r.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Passed));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let failed = count(|o| matches!(o, Outcome::Failed));
    eprintln!(
        "\nxtask test summary ({:.0}s):",
        start.elapsed().as_secs_f64()
    );
    for r in &results {
        let status = match &r.outcome {
            Outcome::Passed => "ok",
            Outcome::Skipped(_) => "SKIPPED",
            Outcome::Failed => "FAILED",
        };
        eprintln!("  {:<24} {:<8} {:>6.1}s", r.name, status, r.secs);
    }
    println!("xtask: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        let names: Vec<&str> = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed))
            .map(|r| r.name)
            .collect();
        bail!("failed: {}", names.join(", "));
    }
    Ok(())
}

fn cargo_test() -> Result<()> {
    cmd::run(cmd::cargo().current_dir(cmd::project_root()).args([
        "test",
        "--workspace",
        "--locked",
        // Every test binary runs, so one failure does not hide the others.
        "--no-fail-fast",
    ]))
}

/// The end-to-end suite (`cargo xtask e2e`) on the freshly built, checked and linted packages:
/// install, upgrade, remove and purge them in a booted container. Needs root.
fn e2e(packages: &Packages) -> Result<Outcome> {
    if crate::e2e::for_test(packages)? {
        Ok(Outcome::Passed)
    } else {
        Ok(Outcome::Skipped(
            "needs root (debootstrap, network namespaces, systemd-nspawn)".into(),
        ))
    }
}
