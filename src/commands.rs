//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::{Context, Result};

use crate::cli::{
    AgentProbeArgs, ApplyArgs, BlockedArgs, CaCommand, ChangeArgs, CheckConfigArgs, Cli, Command,
    MetricsArgs, RemoveArgs, RenderArgs, StatusArgs, ToolEditArgs, ToolsCommand, ToolsListArgs,
    VerifyArgs, WaitListeningArgs,
};
use crate::config::Config;
use crate::exit;
use crate::host;
use crate::output;
use crate::render;
use crate::verify;

mod grants_cli;
mod sessions_cli;

/// Run the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Render(args) => render_command(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Verify(args) => verify_command(args),
        Command::AgentProbe(args) => agent_probe(args),
        Command::WaitListening(args) => wait_listening(args),
        Command::Status(args) => status_command(args),
        Command::Blocked(args) => blocked_command(args),
        Command::Metrics(args) => metrics_command(args),
        Command::Apply(args) => apply_command(args),
        Command::Remove(args) => remove_command(args, false),
        Command::Purge(args) => remove_command(args, true),
        Command::Tools(ToolsCommand::Add(args)) => tools_edit(args, true),
        Command::Tools(ToolsCommand::Remove(args)) => tools_edit(args, false),
        Command::Tools(ToolsCommand::List(args)) => tools_list(args),
        Command::Ca(CaCommand::Refresh(args)) => ca_refresh(args),
        Command::Grant(args) => grants_cli::grant(args),
        Command::Revoke(args) => grants_cli::revoke(args),
        Command::Grants(args) => grants_cli::grants(args),
        Command::Sessions(args) => sessions_cli::sessions(args),
        Command::Watch => {
            need_root(
                "the watcher loads nft tables",
                " (pipelock-containment-watch.service does)",
            )?;
            host::watch::watch().map(|()| exit::OK)
        }
    }
}

fn render_command(args: RenderArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let assumed = host::facts::AssumedUids {
        agent: args.agent_uid,
        proxy: args.proxy_uid,
    };
    let facts = host::facts::gather(&config, assumed)?;
    let files = render::render_all(&config, &facts)?;
    if let Some(out) = &args.out {
        host::fs::write_tree(out, &files)?;
        for file in &files {
            outln!("wrote {}{}", out, file.path);
        }
    } else if args.json {
        outln!("{}", serde_json::to_string_pretty(&files)?);
    } else {
        for file in &files {
            outln!("==> {} (mode {:04o}) <==", file.path, file.mode);
            out!("{}", file.contents);
            outln!();
        }
    }
    Ok(exit::OK)
}

fn check_config(args: CheckConfigArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    out!("{}", toml::to_string(&config)?);
    Ok(exit::OK)
}

/// Unless running as root, the refusal (exit code 77): why root is needed and what works
/// without it. Every command refuses this one way.
pub(crate) fn need_root(why: &str, without_root: &str) -> Result<()> {
    if host::is_root() {
        return Ok(());
    }
    Err(exit::NeedRoot(format!("{why}: run it as root, with sudo{without_root}")).into())
}

/// Progress output. A closed stdout (`| head`, a maintainer script's pipe) must not abort a
/// half-done apply or remove, so write errors are ignored.
fn print_line(line: &str) {
    outln!("{line}");
}

fn apply_command(args: ApplyArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.change.config.config)?;
    if args.change.dry_run {
        let host::apply::Planned {
            plan, mut warnings, ..
        } = host::apply::plan_for_host(&config, &[], &[], 0, !args.from_maintainer_script)?;
        if !host::is_root() {
            warnings.push(
                "not root: files only root can read and the live nft table are not compared".into(),
            );
        }
        if args.change.json {
            let value = serde_json::json!({
                "changes": !plan.is_noop(),
                "accounts": plan.accounts.iter().map(|s| s.id()).collect::<Vec<_>>(),
                "steps": plan.steps.iter().map(|s| serde_json::json!({
                    "id": s.id(), "description": s.to_string(), "step": s,
                })).collect::<Vec<_>>(),
                "notes": plan.notes,
                "warnings": warnings.iter().chain(&plan.warnings).collect::<Vec<_>>(),
                "diff": plan.diff(),
            });
            outln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            for warning in &warnings {
                output::warn(warning);
            }
            out!("{}", plan.diff());
        }
        return Ok(exit::OK);
    }
    need_root(
        "apply changes the system",
        " (`pipelock-containment apply --dry-run` shows the changes without root)",
    )?;
    let maintainer = args.from_maintainer_script && !args.change.json;
    if !args.change.json && !maintainer {
        print_line("pipelock-containment apply:");
    }
    // Under a maintainer script the steps go to the journal; the terminal gets the warnings and
    // one summary line.
    let mut details: Vec<String> = Vec::new();
    let applied = {
        let mut log = print_line;
        let mut quiet = |_: &str| {};
        let mut collect = |line: &str| details.push(line.to_string());
        let logger: host::apply::Log<'_> = if args.change.json {
            &mut quiet
        } else if maintainer {
            &mut collect
        } else {
            &mut log
        };
        host::apply::apply_host(&config, logger, !args.from_maintainer_script)
    };
    if maintainer {
        host::process::to_journal("pipelock-containment", &details);
    }
    let applied = applied?;
    let plan = &applied.plan;
    if args.change.json {
        let value = serde_json::json!({
            "changes": !plan.is_noop() || !applied.account_steps.is_empty(),
            "steps": plan.steps.iter().map(|s| s.id()).collect::<Vec<_>>(),
            "accounts": applied.account_steps.iter().map(|s| s.id()).collect::<Vec<_>>(),
            "notes": plan.notes,
            "warnings": plan.warnings,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(exit::OK);
    }
    let changes = plan.steps.len() + applied.account_steps.len();
    if maintainer {
        let mut warnings: Vec<String> = details
            .iter()
            .filter(|l| l.contains("warning:"))
            .map(|l| l.trim().to_string())
            .collect();
        warnings.extend(plan.warnings.iter().map(|w| format!("WARNING: {w}")));
        for warning in &warnings {
            output::note(warning);
        }
        let agent = host::facts::lookup_account(&config.users.agent)
            .ok()
            .flatten()
            .map_or_else(
                || config.users.agent.clone(),
                |a| format!("{} (uid {})", a.name, a.uid),
            );
        let proxy =
            std::net::SocketAddr::new(config.proxy.listen_address, config.proxy.listen_port);
        let deferred = plan.notes.iter().any(|n| n.contains("not reachable here"));
        outln!(
            "pipelock-containment: {} {agent} behind {proxy}{}; {}; {} warning(s) (details: \
             journalctl -t pipelock-containment, pipelock-containment status)",
            if deferred {
                "rendered for"
            } else {
                "contained"
            },
            if deferred {
                ", the table loads at first boot"
            } else {
                ""
            },
            if changes == 0 {
                "no changes".to_string()
            } else {
                format!("{changes} change(s)")
            },
            warnings.len()
        );
        return Ok(exit::OK);
    }
    if plan.is_noop() && applied.account_steps.is_empty() {
        outln!("no changes");
    } else {
        outln!(
            "applied {} step(s)",
            plan.steps.len() + applied.account_steps.len()
        );
    }
    for note in &plan.notes {
        outln!("deferred: {note}");
    }
    for warning in &plan.warnings {
        output::warn_loud(warning);
    }
    Ok(exit::OK)
}

fn remove_command(args: RemoveArgs, purge: bool) -> Result<i32> {
    let what = if purge { "purge" } else { "remove" };
    need_root(&format!("{what} changes the system"), "")?;
    // The config may be gone already (dpkg deletes conffiles before postrm purge).
    let config = if args.config.config.exists() {
        match host::fs::read_config(&args.config.config) {
            Ok(config) => Some(config),
            Err(err) => {
                output::warn(&format!("{err:#}; using the manifest and the defaults"));
                None
            }
        }
    } else {
        None
    };
    let current = config.clone().unwrap_or_else(Config::defaults);
    // Under a maintainer script the steps go to the journal; the terminal gets the errors and
    // one summary line.
    let maintainer = args.from_maintainer_script;
    if !maintainer {
        print_line(&format!("pipelock-containment {what}:"));
    }
    let mut details: Vec<String> = Vec::new();
    let removed = {
        let mut log = print_line;
        let mut collect = |line: &str| details.push(line.to_string());
        let logger: host::apply::Log<'_> = if maintainer { &mut collect } else { &mut log };
        (|| -> Result<_> {
            let removed = host::apply::remove_host(&current, &mut *logger)?;
            let purged = if purge && !removed.table_kept {
                host::apply::purge_host(config.as_ref(), &mut *logger)?
            } else {
                Vec::new()
            };
            Ok((removed, purged))
        })()
    };
    if maintainer {
        host::process::to_journal("pipelock-containment", &details);
    }
    let (
        host::apply::Removed {
            plan,
            mut errors,
            table_kept,
        },
        purged,
    ) = removed?;
    errors.extend(purged);
    if !maintainer {
        for note in &plan.notes {
            outln!("note: {note}");
        }
        if purge && table_kept {
            outln!("kept: the accounts and the state (the table stays in force)");
        } else if !purge {
            outln!("kept: the users and {}", args.config.config);
        }
    }
    if errors.is_empty() {
        if maintainer {
            outln!(
                "pipelock-containment: {what}: containment taken down, the agent's processes \
                 ended{}; 0 error(s) (details: journalctl -t pipelock-containment)",
                if purge {
                    ", the state deleted"
                } else {
                    "; the accounts stay"
                }
            );
        } else {
            outln!("{what}: done");
        }
        return Ok(exit::OK);
    }
    output::note(&format!("{what} finished with {} error(s):", errors.len()));
    for err in &errors {
        output::more(err);
    }
    if args.from_maintainer_script && !table_kept {
        output::more(&format!(
            "(not failing the package operation; fix the above and run `pipelock-containment \
             {what}` again)"
        ));
        return Ok(exit::OK);
    }
    if table_kept {
        output::note(
            "containment stays in force: a process of the agent could not be ended, so the \
             package is not removed; end it, then remove again",
        );
    }
    Ok(exit::FAILURE)
}

fn verify_command(args: VerifyArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    need_root(
        "verify reads the nft table and probes as the agent user",
        " (`pipelock-containment status` works without root)",
    )?;
    let options = host::verify::Options {
        url: args.url,
        agent_probes: true,
    };
    let observations = host::verify::observe(&config, &options);
    let report = verify::Report::new(
        host::verify::hostname(),
        verify::evaluate(&config, &observations),
    );
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", report.to_text());
    }
    Ok(report.exit_code())
}

fn wait_listening(args: WaitListeningArgs) -> Result<i32> {
    let timeout = std::time::Duration::from_secs(args.timeout_seconds);
    match host::verify::wait_listening(args.address, timeout) {
        Ok(waited) => {
            outln!(
                "{} accepts connections (after {} ms)",
                args.address,
                waited.as_millis()
            );
            Ok(exit::OK)
        }
        Err(err) => {
            output::note(&format!(
                "{} did not accept connections within {} s: {err}",
                args.address, args.timeout_seconds
            ));
            Ok(exit::FAILURE)
        }
    }
}

fn agent_probe(args: AgentProbeArgs) -> Result<i32> {
    for (spec, word) in host::verify::agent_probe(&args.specs) {
        outln!("{spec}\t{word}");
    }
    Ok(exit::OK)
}

fn status_command(args: StatusArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let view = host::verify::status_view(&config);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        out!("{}", view.to_text());
    }
    Ok(exit::OK)
}

fn blocked_command(args: BlockedArgs) -> Result<i32> {
    use crate::audit;
    let query = host::audit::Query {
        since: args.since,
        session: args.session.as_deref().map(audit::session_unit),
        operator: args.operator,
        event: args.explain.clone(),
        from: args.from,
    };
    if let Some(id) = &args.explain {
        let Some(record) = host::audit::read_records(&query)?.pop() else {
            anyhow::bail!(
                "no record has the id {id}: `pipelock-containment blocked` lists them (EVENT)"
            );
        };
        let config = host::fs::read_config(&args.config.config)?;
        let explanation = audit::explain(&record, &config);
        if args.json {
            let value = serde_json::json!({ "record": record, "explanation": explanation });
            outln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            outln!("what: {}", explanation.what);
            outln!("why:  {}", explanation.why);
            outln!("fix:  {}", explanation.fix);
        }
        return Ok(exit::OK);
    }
    if args.follow {
        if !args.json {
            out!("{}", audit::to_text(&[]));
        }
        host::audit::follow_records(&query, |record| {
            if args.json {
                outln!("{}", serde_json::to_string(record).unwrap_or_default());
            } else {
                out!(
                    "{}",
                    audit::to_text(std::slice::from_ref(record))
                        .lines()
                        .skip(1)
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                );
            }
        })?;
        return Ok(exit::OK);
    }
    let records = host::audit::read_records(&query)?;
    if args.json {
        let value = serde_json::json!({ "records": records });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else if records.is_empty() {
        outln!("no blocked attempts recorded");
    } else {
        out!("{}", audit::to_text(&records));
    }
    Ok(exit::OK)
}

fn metrics_command(args: MetricsArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    need_root(
        "metrics reads the nft table and probes as the agent user",
        " (`pipelock-containment status` works without root)",
    )?;
    let text = crate::metrics::render(&host::verify::metrics_input(&config));
    match &args.output {
        Some(path) => {
            let path = camino::Utf8Path::from_path(path)
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            let me = host::fs::current_owner();
            host::fs::write_atomic(path, text.as_bytes(), me, 0o644)?
        }
        None => out!("{text}"),
    }
    Ok(exit::OK)
}

fn tools_edit(args: ToolEditArgs, add: bool) -> Result<i32> {
    let verb = if add { "add" } else { "remove" };
    let why = format!(
        "`tools {verb}` changes {} and the wrappers",
        args.config.config
    );
    need_root(&why, "")?;
    let path = &args.config.config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the config {path}"))?;
    let edit = if add {
        crate::tools::add(&text, &args.tool, path.as_str())?
    } else {
        crate::tools::remove(&text, &args.tool, path.as_str())?
    };
    match edit {
        crate::tools::Edit::Unchanged if add => {
            outln!("{} is already allowed", args.tool);
            return Ok(exit::OK);
        }
        crate::tools::Edit::Unchanged => {
            outln!("{} is not in tools.wrap; nothing to remove", args.tool);
            return Ok(exit::OK);
        }
        crate::tools::Edit::Changed(new_text) => {
            host::tools::rewrite_config(path, &new_text)?;
            let done = if add { "added to" } else { "removed from" };
            outln!("{} {done} tools.wrap in {path}", args.tool);
        }
    }
    if args.no_apply {
        outln!("not applied (--no-apply): run `pipelock-containment apply` to update the wrappers");
        return Ok(exit::OK);
    }
    host::tools::run_apply(path)?;
    Ok(exit::OK)
}

fn tools_list(args: ToolsListArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let entries = crate::tools::list(&config);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        outln!("no tools allowed (add one: pipelock-containment tools add NAME)");
    } else {
        for entry in &entries {
            outln!("{}\t{}", entry.command, entry.tool);
        }
    }
    Ok(exit::OK)
}

fn ca_refresh(args: ChangeArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    if !args.dry_run {
        let why = format!(
            "`ca refresh` writes {} and sets the owner of {}",
            config.ca.combined_bundle, config.ca.proxy_ca_key
        );
        need_root(&why, " (--dry-run shows what it would do)")?;
    }
    let facts = host::facts::gather(&config, host::facts::AssumedUids::default())?;
    let outcome = host::ca::refresh(&config, &facts, args.dry_run)?;
    let text = if args.json {
        serde_json::to_string_pretty(&outcome)? + "\n"
    } else {
        outcome.report().join("\n") + "\n"
    };
    out!("{text}");
    for warning in &outcome.warnings {
        output::warn(warning);
    }
    Ok(if outcome.key.agent_can_read && !args.dry_run {
        exit::FAILURE
    } else {
        exit::OK
    })
}
