//! Runs `sessions` and `sessions stop`: the session list from systemd, and ending sessions.

use anyhow::{bail, Result};

use crate::cli::{SessionsAction, SessionsArgs, SessionsStopArgs};
use crate::exit;
use crate::host;
use crate::session::{self, Session};

pub fn sessions(args: SessionsArgs) -> Result<i32> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        bail!("systemd is not running here: there are no sessions (they are systemd units)");
    }
    match args.action {
        Some(SessionsAction::Stop(stop)) => stop_command(stop),
        None => list(args.json),
    }
}

fn list(json: bool) -> Result<i32> {
    let sessions = host::session::list_sessions()?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "sessions": sessions }))?
        );
        return Ok(exit::OK);
    }
    if sessions.is_empty() {
        outln!("no sessions");
        return Ok(exit::OK);
    }
    for s in &sessions {
        outln!(
            "{}  {}  operator {}  tool {}  cwd {}  started {}  tasks {}  memory {}",
            s.unit,
            s.state,
            s.operator,
            s.tool,
            s.cwd,
            s.started,
            s.tasks.map_or("-".into(), |n| n.to_string()),
            s.memory_bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        );
        if !s.grants.is_empty() {
            outln!("    grants: {}", s.grants.join(", "));
        }
        if !s.published.is_empty() {
            let ports: Vec<String> = s
                .published
                .iter()
                .map(|p| format!("http://localhost:{p}/"))
                .collect();
            outln!("    published: {}", ports.join(", "));
        }
    }
    Ok(exit::OK)
}

/// `ID` as a unit name: the name itself, or the hex id.
fn unit_for(id: &str) -> String {
    if id.ends_with(".service") {
        id.to_string()
    } else {
        format!("{}{id}.service", session::UNIT_PREFIX)
    }
}

fn stop_command(args: SessionsStopArgs) -> Result<i32> {
    if !args.dry_run {
        super::need_root(
            "ending sessions stops their units",
            " (--dry-run shows which)",
        )?;
    }
    let running: Vec<Session> = host::session::list_sessions()?;
    let units: Vec<String> = if args.all {
        running.iter().map(|s| s.unit.clone()).collect()
    } else {
        let mut units = Vec::new();
        for id in &args.ids {
            let unit = unit_for(id);
            if !running.iter().any(|s| s.unit == unit) {
                bail!("no session {unit} (see `pipelock-containment sessions`)");
            }
            units.push(unit);
        }
        units
    };
    if units.is_empty() {
        outln!("no sessions");
        return Ok(exit::OK);
    }
    if args.dry_run {
        for unit in &units {
            outln!("would stop {unit}");
        }
        return Ok(exit::OK);
    }
    if args.all {
        host::session::stop_units(&[session::AGENTS_SLICE.to_string()])?;
    } else {
        host::session::stop_units(&units)?;
    }
    for unit in &units {
        outln!("stopped {unit}");
    }
    Ok(exit::OK)
}
