//! Runs `grant`, `revoke` and `grants [expire]`: caller checks, then the host layer, then output.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{GrantArgs, GrantsAction, GrantsArgs, RevokeArgs};
use crate::exit;
use crate::grants::{format_utc, GrantRecord, Role};
use crate::host;
use crate::host::grants::GrantRequest;

pub fn grant(args: GrantArgs) -> Result<i32> {
    host::grants::require_root()?;
    let config = host::fs::read_config(&args.config.config)?;
    let caller = host::grants::identify_caller(&config)?;
    host::grants::check_operator_arguments(&caller, &args.config.config, args.force)?;
    let agent = host::grants::agent_account(&config)?;
    let request = GrantRequest {
        path: &args.path,
        mode: args.mode,
        expires_in: args.expires,
        force: args.force,
        dry_run: args.dry_run,
    };
    let outcome = host::grants::grant(&config, &caller, &agent, &request)?;
    for warning in &outcome.warnings {
        crate::output::warn(warning);
    }
    let record = &outcome.record;
    if args.dry_run {
        print_planned(record, args.json)?;
    } else if args.json {
        outln!("{}", serde_json::to_string_pretty(&Summary::of(record))?);
    } else {
        let parents = Summary::of(record).parents_traversal;
        outln!(
            "granted {} to {} ({}){}",
            record.path,
            record.agent.name,
            record.mode,
            match record.expires_at {
                Some(at) => format!(", expires {}", format_utc(at)),
                None => String::new(),
            }
        );
        if !parents.is_empty() {
            outln!("  traversal (--x) added on: {}", parents.join(", "));
        }
        outln!(
            "  {} ACLs changed, {} credential files closed to the agent; undo with \
             `pipelock-containment revoke {}`",
            record.entries.len(),
            record.skipped_credentials.len(),
            record.path
        );
    }
    Ok(exit::OK)
}

pub fn revoke(args: RevokeArgs) -> Result<i32> {
    host::grants::require_root()?;
    let config = host::fs::read_config(&args.config.config)?;
    let caller = host::grants::identify_caller(&config)?;
    host::grants::check_operator_arguments(&caller, &args.config.config, args.all)?;
    let Some(path) = &args.path else {
        let (revoked, problems) = host::grants::revoke_all(&config.grants.records)?;
        for path in &revoked {
            outln!("revoked {path}");
        }
        for problem in &problems {
            crate::output::note(&format!("error: {problem}"));
        }
        return Ok(if problems.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        });
    };
    let record = host::grants::revoke(&config, &caller, path)?;
    outln!(
        "revoked {} ({}, granted by {} at {})",
        record.path,
        record.mode,
        record.granted_by.name,
        format_utc(record.granted_at)
    );
    Ok(exit::OK)
}

pub fn grants(args: GrantsArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    match args.action {
        Some(GrantsAction::Expire) => {
            host::grants::require_root()?;
            let caller = host::grants::identify_caller(&config)?;
            host::grants::check_operator_arguments(&caller, &args.config.config, false)?;
            let (revoked, problems) = host::grants::expire(&config)?;
            for path in &revoked {
                outln!("expired: revoked {path}");
            }
            for problem in &problems {
                crate::output::note(&format!("error: {problem}"));
            }
            Ok(if problems.is_empty() {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
        None => {
            let records = host::grants::list(&config)?;
            if args.json {
                let summaries: Vec<Summary> = records.grants.iter().map(Summary::of).collect();
                outln!("{}", serde_json::to_string_pretty(&summaries)?);
            } else if records.grants.is_empty() {
                outln!("no active grants");
            } else {
                outln!(
                    "{:<40} {:<4} {:<12} {:<21} EXPIRES",
                    "PATH",
                    "MODE",
                    "BY",
                    "GRANTED"
                );
                for g in &records.grants {
                    outln!(
                        "{:<40} {:<4} {:<12} {:<21} {}",
                        g.path,
                        g.mode,
                        g.granted_by.name,
                        format_utc(g.granted_at),
                        g.expires_at.map_or("never".into(), format_utc)
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}

/// `grant --dry-run`: every ACL entry the grant would change or keep, as the record would hold it.
fn print_planned(record: &GrantRecord, json: bool) -> Result<()> {
    if json {
        let value = serde_json::json!({
            "dry_run": true,
            "grant": Summary::of(record),
            "changes": record.entries,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let count = |role: Role| record.entries.iter().filter(|c| c.role == role).count();
    let summary = Summary::of(record);
    let parents = &summary.parents_traversal;
    outln!(
        "would grant {} to {} ({}); nothing was changed",
        record.path,
        record.agent.name,
        record.mode
    );
    if !parents.is_empty() {
        outln!("  traversal (--x) on: {}", parents.join(", "));
    }
    outln!(
        "  {} ACL entries in the tree, {} beside the way to it closed, {} credential files closed{}",
        count(Role::Tree),
        count(Role::Sibling),
        count(Role::Credential),
        if summary.skipped_credentials.is_empty() {
            String::new()
        } else {
            format!(": {}", summary.skipped_credentials.join(", "))
        }
    );
    outln!("  every entry, as the grant would record it: add --json");
    Ok(())
}

/// What `grant --json` and `grants --json` print per grant (the full record is in the records file).
#[derive(Serialize)]
struct Summary<'a> {
    path: &'a str,
    mode: crate::grants::Mode,
    agent: &'a str,
    granted_by: &'a crate::grants::Granter,
    granted_at: String,
    expires_at: Option<String>,
    entries: usize,
    parents_traversal: Vec<&'a str>,
    skipped_credentials: Vec<&'a str>,
}

impl<'a> Summary<'a> {
    fn of(record: &'a GrantRecord) -> Summary<'a> {
        Summary {
            path: record.path.as_str(),
            mode: record.mode,
            agent: &record.agent.name,
            granted_by: &record.granted_by,
            granted_at: format_utc(record.granted_at),
            expires_at: record.expires_at.map(format_utc),
            entries: record.entries.len(),
            parents_traversal: record
                .entries
                .iter()
                .filter(|c| c.role == Role::Parent)
                .map(|c| c.path.as_str())
                .collect(),
            skipped_credentials: record
                .skipped_credentials
                .iter()
                .map(|p| p.as_str())
                .collect(),
        }
    }
}
