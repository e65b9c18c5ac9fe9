//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::{Context, Result};

use crate::cli::{
    CheckConfigArgs, Cli, Command, RenderArgs, ToolEditArgs, ToolsCommand, ToolsListArgs,
};
use crate::config::ConfigError;
use crate::exit;
use crate::host;
use crate::render;

/// Run the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Render(args) => render_command(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Tools(ToolsCommand::Add(args)) => tools_edit(args, true),
        Command::Tools(ToolsCommand::Remove(args)) => tools_edit(args, false),
        Command::Tools(ToolsCommand::List(args)) => tools_list(args),
    }
}

/// The exit code for an error: a config problem has its own.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<ConfigError>()) {
        exit::CONFIG
    } else {
        exit::FAILURE
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
            println!("wrote {}{}", out, file.path);
        }
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&files)?);
    } else {
        for file in &files {
            println!("==> {} (mode {:04o}) <==", file.path, file.mode);
            print!("{}", file.contents);
            println!();
        }
    }
    Ok(exit::OK)
}

fn check_config(args: CheckConfigArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    print!("{}", toml::to_string(&config)?);
    Ok(exit::OK)
}

fn tools_edit(args: ToolEditArgs, add: bool) -> Result<i32> {
    let verb = if add { "add" } else { "remove" };
    if !host::tools::is_root() {
        eprintln!(
            "pipelock-containment: `tools {verb}` changes {} and the wrappers: run it as root \
             (sudo pipelock-containment tools {verb} {})",
            args.config.config, args.tool
        );
        return Ok(exit::NEED_ROOT);
    }
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
            println!("{} is already allowed", args.tool);
            return Ok(exit::OK);
        }
        crate::tools::Edit::Unchanged => {
            println!("{} is not in tools.wrap; nothing to remove", args.tool);
            return Ok(exit::OK);
        }
        crate::tools::Edit::Changed(new_text) => {
            host::tools::write_atomic(path, &new_text)?;
            let done = if add { "added to" } else { "removed from" };
            println!("{} {done} tools.wrap in {path}", args.tool);
        }
    }
    if args.no_apply {
        println!(
            "not applied (--no-apply): run `pipelock-containment apply` to update the wrappers"
        );
        return Ok(exit::OK);
    }
    host::tools::run_apply(path)?;
    Ok(exit::OK)
}

fn tools_list(args: ToolsListArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let entries = crate::tools::list(&config);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        println!("no tools allowed (add one: pipelock-containment tools add NAME)");
    } else {
        for entry in &entries {
            println!("{}\t{}", entry.command, entry.tool);
        }
    }
    Ok(exit::OK)
}
