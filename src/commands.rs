//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::Result;

use crate::cli::{CaCommand, CaRefreshArgs, CheckConfigArgs, Cli, Command, RenderArgs};
use crate::config::ConfigError;
use crate::exit;
use crate::host;
use crate::render;

/// Run the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Render(args) => render_command(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Ca(CaCommand::Refresh(args)) => ca_refresh(args),
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

fn ca_refresh(args: CaRefreshArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    if !args.dry_run && !nix::unistd::geteuid().is_root() {
        eprintln!(
            "pipelock-containment: error: `ca refresh` writes {} and sets the owner of {}: \
             run it as root, or add --dry-run to see what it would do",
            config.ca.combined_bundle, config.ca.proxy_ca_key
        );
        return Ok(exit::NEED_ROOT);
    }
    let facts = host::facts::gather(&config, host::facts::AssumedUids::default())?;
    let outcome = host::ca::refresh(&config, &facts, args.dry_run)?;
    let text = if args.json {
        serde_json::to_string_pretty(&outcome)? + "\n"
    } else {
        outcome.report().join("\n") + "\n"
    };
    // A closed stdout (`| head`) must not turn a finished refresh into a panic.
    if let Err(err) = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(err.into());
        }
    }
    for warning in &outcome.warnings {
        eprintln!("pipelock-containment: warning: {warning}");
    }
    Ok(if outcome.key.agent_can_read && !args.dry_run {
        exit::FAILURE
    } else {
        exit::OK
    })
}
