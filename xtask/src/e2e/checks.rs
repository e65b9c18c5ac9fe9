//! The named checks of the end-to-end run: recording, the one-check and must-pass helpers, and
//! the names the scenarios share.

use std::time::Instant;

use anyhow::{bail, Result};
use pipelock_containment::paths;

use super::container::Container;
use super::Lab;

pub const AGENT: &str = "cc-agent";
pub const PROXY: &str = "pipelock-proxy";
pub const OPERATORS: &str = "pipelock-operators";
pub const OPERATOR: &str = "alice";
/// A second local proxy in the test host (nobody's): the agent must not be able to use it.
pub const CANARY_PORT: u16 = 8889;

#[derive(Default)]
pub struct Checks {
    pub results: Vec<(String, Result<(), String>, f64)>,
}

impl Checks {
    /// Records check `name` with its outcome, printing it at once.
    pub fn record(&mut self, name: &str, r: Result<()>, secs: f64) -> bool {
        let ok = r.is_ok();
        match &r {
            Ok(()) => println!("    PASS  {name}"),
            Err(e) => println!("    FAIL  {name}: {e:#}"),
        }
        self.results
            .push((name.to_owned(), r.map_err(|e| format!("{e:#}")), secs));
        ok
    }

    /// The names of the failed checks.
    pub fn failures(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, r, _)| r.is_err())
            .map(|(n, _, _)| n.as_str())
            .collect()
    }
}

/// Runs one named check.
pub fn check(lab: &mut Lab, name: &str, f: impl FnOnce(&Container) -> Result<()>) -> bool {
    let t = Instant::now();
    let r = f(lab.c());
    lab.checks.record(name, r, t.elapsed().as_secs_f64())
}

/// A check the rest of the scenario cannot go on without: failing it ends the run.
pub fn require(lab: &mut Lab, name: &str, f: impl FnOnce(&Container) -> Result<()>) -> Result<()> {
    if check(lab, name, f) {
        Ok(())
    } else {
        bail!("required check {name} failed")
    }
}

pub fn table_present(c: &Container) -> Result<()> {
    let o = c.sh(&format!(
        "nft list table {} {}",
        paths::NFT_TABLE_FAMILY,
        paths::NFT_TABLE
    ))?;
    if !o.ok() {
        bail!(
            "table {} {} is not loaded: {}",
            paths::NFT_TABLE_FAMILY,
            paths::NFT_TABLE,
            o.both().trim()
        );
    }
    Ok(())
}
