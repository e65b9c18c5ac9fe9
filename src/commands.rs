//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::Result;

use crate::cli::{CheckConfigArgs, Cli, Command, RenderArgs};
use crate::config::ConfigError;
use crate::exit;
use crate::host;
use crate::render;

mod grants_cli;

/// Run the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Render(args) => render_command(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Grant(args) => grants_cli::grant(args),
        Command::Revoke(args) => grants_cli::revoke(args),
        Command::Grants(args) => grants_cli::grants(args),
    }
}

/// The exit code for an error: a config problem has its own.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<ConfigError>()) {
        exit::CONFIG
    } else if err
        .chain()
        .any(|cause| cause.is::<host::grants::NeedRoot>())
    {
        exit::NEED_ROOT
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
