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
    /// Check every containment property of this host; exit 0 all pass, 1 any fail, 2 any skipped.
    Verify(VerifyArgs),
    /// One screen: roles and UIDs, the table and its counters, units, last apply, drift, tools.
    Status(StatusArgs),
    /// Blocked attempts by the agent, per session: the audit listener's records in the journal.
    Blocked(BlockedArgs),
    /// Write Prometheus metrics (for node_exporter's textfile collector).
    Metrics(MetricsArgs),
    /// The agent-side half of verify's probes (verify runs it as the agent user).
    #[command(hide = true)]
    AgentProbe(AgentProbeArgs),
    /// Wait until ADDRESS accepts connections (the proxy unit's ExecStartPost, so a start
    /// returns only once the proxy listens); exit 1 after the timeout.
    #[command(hide = true)]
    WaitListening(WaitListeningArgs),
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
    /// The CA bundle agents trust: the system roots plus the proxy's TLS interception CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Give the agent user access to one directory tree (POSIX ACLs), recorded for revoke.
    #[command(
        long_about = "Give the agent user access to one directory tree through POSIX \
        ACLs: traversal (--x) on the parent directories it cannot enter yet, r-X (ro) or rwX \
        (rw) on the tree, and default entries on its directories so new files stay accessible. \
        Symlinks are resolved first and never followed inside the tree. Below the first parent \
        the agent could not enter, everything beside the path gets an explicit empty entry \
        (u:AGENT:---), so traversal opens nothing else. Files that look like credentials \
        (grants.credential_patterns) get that empty entry too, even when world-readable; each \
        one is named. System paths and whole home directories are refused unless root passes \
        --force. `grants expire` (a timer, every 30 s) also closes credentials and paths that \
        appeared since.\n\n\
        Root may grant anything. Members of the operators' group may grant directories they own \
        below their home, through sudo: `sudo pipelock-containment grant ~/src/PROJECT`."
    )]
    Grant(GrantArgs),
    /// Take a grant back: restores exactly the ACL entries it changed.
    Revoke(RevokeArgs),
    /// List the active grants; `grants expire` revokes the expired ones (run by a timer).
    Grants(GrantsArgs),
    /// List the contained agent sessions; `sessions stop ID|--all` ends them (root).
    #[command(
        long_about = "List the contained agent sessions: every launch through cc-launch or a \
        tool wrapper runs as a transient systemd unit (pipelock-agent-ID.service) in \
        pipelock-agents.slice, as the agent user, with its own network namespace (the proxy is \
        reached through a unix-socket bridge) and its own file-system view. Shows the unit, \
        operator, tool, working directory, grants, start time, task count and memory.\n\n\
        `sessions stop ID|--all` ends every process of those sessions: systemd kills the \
        whole cgroup (SIGTERM, then SIGKILL after 5 s), so no fork loop survives."
    )]
    Sessions(SessionsArgs),
    /// Follow the ruleset and load the containment table again whenever something else removes
    /// it (root; pipelock-containment-watch.service runs it). Each restore is logged and
    /// recorded in /run/pipelock-containment/watch.json for verify and the metrics.
    Watch,
}

/// `cc-launch`'s command line, for its man page (cc-launch itself parses nothing: every word
/// after TOOL goes to the tool unchanged).
pub fn cc_launch_command() -> clap::Command {
    clap::Command::new("cc-launch")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run an allowed AI coding tool as the agent user, in a contained session")
        .long_about(
            "Run TOOL (one of tools.wrap in /etc/pipelock-containment/containment.toml) as the \
             agent user in a contained session: a transient systemd unit in \
             pipelock-agents.slice with its own network namespace, whose only way out is the \
             egress proxy (through a unix-socket bridge), and its own file-system view (the \
             agent's home and the active grants; protected paths read-only). The session gets \
             a pty of its own when you are on a terminal, pipes otherwise. Only members of the \
             operators' group (users.operators_group) may launch; cc-launch runs \
             `sudo -n /usr/libexec/pipelock-containment/launch-session TOOL [ARGS...]`, the \
             one command the sudoers drop-in grants. List sessions with \
             `pipelock-containment sessions`.",
        )
        .after_help(
            "Exit codes: the tool's own (128+N when it died of signal N); 64 no tool given; \
             77 not an operator, or the current directory is not visible to the agent (grant it \
             with `pipelock-containment grant DIR`); 78 invalid config; 125 the session cannot \
             be contained (no systemd, no network namespaces, the bridge not running); 126 tool \
             not allowed or invalid name; 127 tool not installed for the agent.",
        )
        .arg(
            clap::Arg::new("tool")
                .value_name("TOOL")
                .required(true)
                .help("The tool to run"),
        )
        .arg(
            clap::Arg::new("args")
                .value_name("ARGS")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .help("Passed to the tool unchanged"),
        )
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Print the sessions as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<SessionsAction>,
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// End sessions: their units are stopped and every process in them ends (root).
    Stop(SessionsStopArgs),
}

#[derive(Debug, Args)]
pub struct SessionsStopArgs {
    /// The session's unit name, or its id (the hex part).
    #[arg(value_name = "ID", required_unless_present = "all")]
    pub ids: Vec<String>,
    /// Every session (stops pipelock-agents.slice).
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Show what would be stopped and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A command that brings the host in line with the config: apply and `ca refresh`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Show what would change, as a diff against the host, and change nothing (no root needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan or the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
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

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Rebuild the combined CA bundle and fix the proxy CA key's owner and mode (root).
    ///
    /// Reads the system bundle (ca.system_bundle, or the distro's) and the proxy CA
    /// (ca.proxy_ca), writes ca.combined_bundle atomically as 0644 root:root when its
    /// contents change, and makes ca.proxy_ca_key owned by the proxy user with mode 0600.
    /// A missing proxy CA is not an error: the bundle then holds the system roots only.
    /// Runs by itself when either input changes (pipelock-containment-ca.path, and on
    /// Debian the update-ca-certificates hook).
    Refresh(ChangeArgs),
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The directory to grant.
    #[arg(value_name = "PATH")]
    pub path: Utf8PathBuf,
    /// Read-only (r-X) or read-write (rwX).
    #[arg(long, default_value = "ro", value_parser = grant_mode())]
    pub mode: crate::grants::Mode,
    /// Revoke automatically after this long, for example 30m, 8h, 1h30m, 2d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub expires: Option<u64>,
    /// Root only: grant a protected system path or a whole home directory anyway.
    #[arg(long)]
    pub force: bool,
    /// Walk the tree and list every ACL change the grant would make; change and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the grant record as JSON (with --dry-run: every planned change too).
    #[arg(long)]
    pub json: bool,
}

fn parse_duration_arg(text: &str) -> Result<u64, String> {
    crate::grants::parse_duration(text)
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The granted directory (as granted, or any path resolving to it).
    #[arg(value_name = "PATH", required_unless_present = "all")]
    pub path: Option<Utf8PathBuf>,
    /// Root only: revoke every grant (the package's removal scripts run this).
    #[arg(long, conflicts_with = "path")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the grants as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<GrantsAction>,
}

#[derive(Debug, Subcommand)]
pub enum GrantsAction {
    /// Revoke every grant whose expiry has passed.
    Expire,
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

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the result as JSON (schema: docs/verify-schema.json).
    #[arg(long)]
    pub json: bool,
    /// Also fetch URL as the agent through the proxy, and directly as the caller.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "pipelock-containment-audit.service records every attempt the host table or a \
    session's own table refuses: the session, its operator, tool and directory, the destination, \
    and for DNS the queried name. Repeated attempts at one destination are folded into one record \
    a second, which says how many it stands for. The records are in the system journal \
    (SYSLOG_IDENTIFIER=pipelock-containment-audit): reading them needs root or the \
    systemd-journal group. `sessions` lists the session units these records name.\n\n\
    Exit codes: 0, records listed (or none); 1, no record has the id given to --explain."
)]
pub struct BlockedArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only records since TIME (any journalctl --since value: "1 hour ago", "today", "2026-11-30 08:00").
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only this session's records: its unit name or the id in it, as `sessions` lists it.
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Only the records of sessions this operator started.
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
    /// Keep printing new records as they come (Ctrl-C ends).
    #[arg(long, conflicts_with_all = ["explain", "from"])]
    pub follow: bool,
    /// Say what the record ID was, why it was blocked and what to change.
    #[arg(long, value_name = "ID")]
    pub explain: Option<String>,
    /// Read `journalctl -o json` output from FILE instead of the journal (a journal copied from
    /// another machine); `-` is stdin.
    #[arg(long, value_name = "FILE")]
    pub from: Option<std::path::PathBuf>,
    /// Print the records as JSON (with --follow, one object per line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write to FILE atomically (temporary file and rename) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct WaitListeningArgs {
    /// The address to connect to, as ADDR:PORT (IPv6 in brackets).
    pub address: std::net::SocketAddr,
    #[arg(long, default_value_t = 30)]
    pub timeout_seconds: u64,
}

#[derive(Debug, Args)]
pub struct AgentProbeArgs {
    /// Probes: udp:ADDR:PORT, tcp:ADDR:PORT or read:PATH.
    #[arg(required = true)]
    pub specs: Vec<String>,
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `--mode ro|rw`, with each mode's meaning in the help.
fn grant_mode() -> impl clap::builder::TypedValueParser<Value = crate::grants::Mode> {
    use crate::grants::Mode;
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new([
        clap::builder::PossibleValue::new("ro")
            .help("Read files, enter and list directories (`r-X`)"),
        clap::builder::PossibleValue::new("rw").help("Also create, change and delete (`rwX`)"),
    ])
    .map(|mode| if mode == "rw" { Mode::Rw } else { Mode::Ro })
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        super::command().debug_assert();
    }
}
