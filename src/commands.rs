//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::Result;

use crate::cli::{AgentProbeArgs, CheckConfigArgs, Cli, Command, RenderArgs, VerifyArgs};
use crate::config::ConfigError;
use crate::exit;
use crate::host;
use crate::render;
use crate::verify;

/// Run the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Render(args) => render_command(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Verify(args) => verify_command(args),
        Command::AgentProbe(args) => agent_probe(args),
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

fn verify_command(args: VerifyArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
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
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.exit_code())
}

fn agent_probe(args: AgentProbeArgs) -> Result<i32> {
    for (spec, word) in host::verify::agent_probe(&args.specs) {
        println!("{spec}\t{word}");
    }
    Ok(exit::OK)
}
