//! Runs each subcommand: ties config, facts and render to the host layer and to output.

use anyhow::Result;

use crate::cli::{
    AgentProbeArgs, BlockedArgs, CheckConfigArgs, Cli, Command, MetricsArgs, RenderArgs,
    StatusArgs, VerifyArgs,
};
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
        Command::Status(args) => status_command(args),
        Command::Blocked(args) => blocked_command(args),
        Command::Metrics(args) => metrics_command(args),
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

fn status_command(args: StatusArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let view = host::verify::status_view(&config);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", view.to_text());
    }
    Ok(exit::OK)
}

fn blocked_command(args: BlockedArgs) -> Result<i32> {
    let source = match args.from {
        Some(path) => host::verify::LogSource::File(path),
        None => host::verify::LogSource::Journal { since: args.since },
    };
    let entries = host::verify::read_blocked(&source)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "entries": entries }))?
        );
    } else if entries.is_empty() {
        println!("no blocked attempts in the kernel log");
    } else {
        print!("{}", crate::blocked::to_text(&entries));
    }
    Ok(exit::OK)
}

fn metrics_command(args: MetricsArgs) -> Result<i32> {
    let config = host::fs::read_config(&args.config.config)?;
    let text = crate::metrics::render(&host::verify::metrics_input(&config));
    match &args.output {
        Some(path) => host::verify::write_atomic(path, &text, 0o644)?,
        None => print!("{text}"),
    }
    Ok(exit::OK)
}
