//! The command line: one clap definition that drives parsing, `--help`, the man page and completions.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "pipelock-containment",
    version,
    about = "Three-UID containment for AI coding agents behind the pipelock egress proxy",
    long_about = "Three-UID containment for AI coding agents. Operators keep their network; \
        the proxy user is the only way out; every agent runs as the agent user, which the \
        kernel (nftables, matching on UID) lets reach the proxy port and nothing else.\n\n\
        The package's maintainer scripts run this helper; operators run it to review, verify \
        and repair.",
    after_help = "Exit codes: 0 success, 1 failure, 2 verify skipped a probe, 64 usage error, \
        77 root required, 78 invalid config. cc-launch and the tool wrappers: the tool's own \
        code, or 64 usage, 77 not allowed to launch (not an operator, directory closed to the \
        agent), 78 invalid config, 125 containment not in force (rule or proxy), 126 tool not \
        allowed, 127 tool not installed for the agent."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file to read.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: Utf8PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show or write every file containment would install, rendered for this host (no root needed).
    Render(RenderArgs),
    /// Check a config file and print it with every default filled in.
    CheckConfig(CheckConfigArgs),
    /// Create the users, render, validate and install everything, load the table (root).
    ///
    /// Idempotent: a second run changes nothing and prints "no changes". If a step fails, the
    /// completed steps are undone and the exit code is 1.
    Apply(ApplyArgs),
    /// Undo apply: stop the proxy, end the agent's processes, delete the table and every
    /// generated file (root). Users and the config stay.
    Remove(RemoveArgs),
    /// Remove, then delete the state directory, and the users when the config opted in (root).
    Purge(RemoveArgs),
    /// Manage the tools operators may launch (tools.wrap) and their wrappers.
    #[command(subcommand)]
    Tools(ToolsCommand),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the plan as a diff against the host and change nothing (no root needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Called by a package maintainer script (dpkg or rpm).
    #[arg(long, hide = true)]
    pub from_maintainer_script: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Called by a package maintainer script: failures are reported but do not block the
    /// package removal.
    #[arg(long, hide = true)]
    pub from_maintainer_script: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Allow a tool and give it a wrapper (edits the config, then runs `apply`; root).
    Add(ToolEditArgs),
    /// Disallow a tool and remove its wrapper (edits the config, then runs `apply`; root).
    Remove(ToolEditArgs),
    /// List the allowed tools and their wrappers.
    List(ToolsListArgs),
}

#[derive(Debug, Args)]
pub struct ToolEditArgs {
    /// A command name looked up on the agent's PATH (claude), or an absolute path
    /// (/opt/claude/bin/claude); for remove, also the wrapper's name.
    #[arg(value_name = "TOOL")]
    pub tool: String,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only edit the config; do not run `apply` (the wrappers change at the next apply).
    #[arg(long)]
    pub no_apply: bool,
}

#[derive(Debug, Args)]
pub struct ToolsListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print JSON: a list of {tool, command, wrapper}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write the files below DIR (mirroring their install paths) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<Utf8PathBuf>,
    /// Print the files as JSON (path, kind, mode, contents).
    #[arg(long, conflicts_with = "out")]
    pub json: bool,
    /// Assume this UID for the agent user if it does not exist yet.
    #[arg(long, value_name = "UID")]
    pub agent_uid: Option<u32>,
    /// Assume this UID for the proxy user if it does not exist yet.
    #[arg(long, value_name = "UID")]
    pub proxy_uid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        super::command().debug_assert();
    }
}
