//! Contained sessions (pure, no I/O): the transient unit an agent session runs in, the bridge's
//! header, and the session list parsed from `systemctl show`.
//!
//! `host::session` gathers the facts (caller, config, grants, terminal) and runs what this
//! module computes; every property of the sandbox is decided here, so it is unit-tested.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::config::Config;
use crate::facts::Account;
use crate::grants::{GrantRecord, Mode};

/// Every session unit lives in this slice; stopping it ends every session.
pub const AGENTS_SLICE: &str = "pipelock-agents.slice";
/// Session units are named `pipelock-agent-<id>.service`.
pub const UNIT_PREFIX: &str = "pipelock-agent-";
/// The host half of the proxy bridge (socket-activated, unprivileged).
pub const BRIDGE_SOCKET_UNIT: &str = "pipelock-containment-bridge.socket";
pub const BRIDGE_SERVICE_UNIT: &str = "pipelock-containment-bridge.service";
/// Where the host half listens; inside a session the only way to the proxy.
pub const BRIDGE_SOCKET: &str = "/run/pipelock-containment/bridge.sock";
/// The program systemd starts inside the session, as the agent.
pub const SESSION_INIT: &str = "/usr/libexec/pipelock-containment/session-init";
/// The one program operators may run through sudo (as root): it starts the session unit.
pub const LAUNCH_SESSION: &str = "/usr/libexec/pipelock-containment/launch-session";
/// launch-session's mode for the session's stop (root, from systemd): remove the placeholders.
pub const REMOVE_PLACEHOLDERS: &str = "--remove-placeholders";
/// The audit program: the listener, and the session's network setup and stop (root, from systemd).
pub const AUDIT_PROGRAM: &str = "/usr/libexec/pipelock-containment/pipelock-audit";
/// Its mode before the session starts, inside the session's network namespace: the session's
/// table and routes, then the NFLOG socket to the listener. Its argument is the hex of the
/// identity's JSON (no systemd quoting, `$` or `%` to escape).
pub const AUDIT_ATTACH: &str = "--attach";
/// Its mode after the session ends: the listener records what is folded and closes the socket.
pub const AUDIT_DETACH: &str = "--detach";
/// The journal fields every session unit carries; `sessions` and `revoke` read them back.
pub const FIELD_OPERATOR: &str = "PIPELOCK_OPERATOR";
pub const FIELD_TOOL: &str = "PIPELOCK_TOOL";
pub const FIELD_CWD: &str = "PIPELOCK_CWD";
pub const FIELD_GRANTS: &str = "PIPELOCK_GRANTS";

/// Who a session is: what `sessions` lists and every record of the session carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Identity {
    pub unit: String,
    pub operator: String,
    pub tool: String,
    pub cwd: String,
}

/// How the session's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// The operator is on a terminal: the session gets a pty of its own (`systemd-run --pty`).
    Pty,
    /// Pipes or files (`systemd-run --pipe`).
    Pipe,
}

/// Everything the session unit is made from.
pub struct SessionSpec<'a> {
    pub config: &'a Config,
    pub agent: &'a Account,
    pub operator: &'a str,
    pub unit: &'a str,
    pub tool: &'a str,
    pub args: &'a [String],
    pub cwd: &'a Utf8Path,
    /// The active grants (already filtered: not expired).
    pub grants: &'a [GrantRecord],
    /// The agent's whole environment.
    pub env: &'a BTreeMap<String, String>,
    pub stdio: Stdio,
    /// From `protected_paths`, as the host is now.
    pub protected: &'a [Protected],
}

/// A session unit name for a random id: `pipelock-agent-<16 hex>.service`.
pub fn unit_name(id: u64) -> String {
    unit_name_for(&format!("{id:016x}"))
}

/// The session unit name for the id part of it (`sessions` and `blocked` print the id).
pub fn unit_name_for(id: &str) -> String {
    format!("{UNIT_PREFIX}{id}.service")
}

/// True for names `unit_name` makes (the only units `sessions stop` touches).
pub fn is_session_unit(name: &str) -> bool {
    name.strip_prefix(UNIT_PREFIX)
        .and_then(|rest| rest.strip_suffix(".service"))
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A path as one word of a systemd space-separated list (double-quoted, `\` and `"` escaped).
fn quoted(path: &Utf8Path) -> String {
    format!(
        "\"{}\"",
        path.as_str().replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower- or upper-case hex text; None when it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The session's own table, loaded inside its network namespace before the tool starts. Only
/// the agent's sockets are judged: loopback is the session's own (the bridge, its servers); DNS
/// and every other destination (routed to loopback for this) are logged to the listener and
/// refused at once: TCP with a reset, the rest dropped, which fails the send with EPERM.
pub fn session_ruleset(agent_uid: u32) -> String {
    let group = crate::paths::NFLOG_GROUP;
    format!(
        "table inet pipelock_session\n\
         delete table inet pipelock_session\n\
         table inet pipelock_session {{\n\
         \tcounter refused {{\n\t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter; policy accept;\n\
         \t\tmeta skuid {agent_uid} jump agent\n\
         \t}}\n\
         \tchain agent {{\n\
         \t\tmeta l4proto {{ tcp, udp }} th dport 53 jump refuse\n\
         \t\toif \"lo\" ip daddr 127.0.0.0/8 accept\n\
         \t\toif \"lo\" ip6 daddr ::1 accept\n\
         \t\tjump refuse\n\
         \t}}\n\
         \tchain refuse {{\n\
         \t\tcounter name \"refused\"\n\
         \t\tlog group {group}\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\tdrop\n\
         \t}}\n\
         }}\n"
    )
}

/// systemd expands `$VAR` in a command line at exec time; `$$` is a literal `$`.
fn literal_argument(arg: &str) -> String {
    arg.replace('$', "$$")
}

/// Where a protected name stands in a read-write grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// What the session mounts read-only: the name itself, or its first missing component.
    pub path: Utf8PathBuf,
    /// Whether `path` is missing: launch-session creates it empty (a directory when the name
    /// goes on below it or ends in `/`), and the session's stop removes it if still empty.
    pub placeholder: Option<PlaceholderKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceholderKind {
    Dir,
    File,
}

/// Names inside the root of every read-write grant that stay read-only and cannot be created:
/// files the operator's own tools later run or trust (git hooks and config, direnv, editor
/// settings, shell rc files). `exists` tells whether a path exists on the host.
pub fn protected_paths(
    grants: &[GrantRecord],
    names: &[String],
    exists: impl Fn(&Utf8Path) -> bool,
) -> Vec<Protected> {
    let mut out: Vec<Protected> = Vec::new();
    for grant in grants.iter().filter(|g| g.mode == Mode::Rw) {
        for name in names {
            let is_dir = name.ends_with('/');
            let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
            let mut path = grant.path.clone();
            let mut entry = None;
            for (i, part) in parts.iter().enumerate() {
                path.push(part);
                if !exists(&path) {
                    let more = i + 1 < parts.len();
                    let kind = if more || is_dir {
                        PlaceholderKind::Dir
                    } else {
                        PlaceholderKind::File
                    };
                    entry = Some(Protected {
                        path: path.clone(),
                        placeholder: Some(kind),
                    });
                    break;
                }
            }
            let entry = entry.unwrap_or(Protected {
                path,
                placeholder: None,
            });
            if !out.iter().any(|p| p.path == entry.path) {
                out.push(entry);
            }
        }
    }
    out
}

/// Whether `path` is visible inside a session: the agent's home, a grant, or a system path
/// that `ProtectHome=tmpfs` does not hide.
pub fn visible_in_session(path: &Utf8Path, agent_home: &Utf8Path, grants: &[GrantRecord]) -> bool {
    if path.starts_with(agent_home) || grants.iter().any(|g| path.starts_with(&g.path)) {
        return true;
    }
    !["/home", "/root", "/run/user", "/tmp", "/var/tmp"]
        .iter()
        .any(|hidden| path.starts_with(hidden))
}

/// The `systemd-run` command line (without the program name) for one session.
pub fn systemd_run_args(spec: &SessionSpec) -> Vec<String> {
    let s = &spec.config.session;
    let mut args: Vec<String> = vec![
        format!("--unit={}", spec.unit),
        format!("--slice={AGENTS_SLICE}"),
        "--quiet".into(),
        "--wait".into(),
        "--collect".into(),
        "--service-type=exec".into(),
        match spec.stdio {
            Stdio::Pty => "--pty".into(),
            Stdio::Pipe => "--pipe".into(),
        },
        format!("--working-directory={}", spec.cwd),
        format!("--uid={}", spec.agent.name),
    ];
    let mut property = |p: String| {
        args.push("--property".into());
        args.push(p);
    };
    property(format!(
        "Description=pipelock agent session: {} for {}",
        spec.tool, spec.operator
    ));
    for (field, value) in [
        (FIELD_OPERATOR, spec.operator.to_string()),
        (FIELD_TOOL, spec.tool.to_string()),
        (FIELD_CWD, spec.cwd.to_string()),
        (
            FIELD_GRANTS,
            spec.grants
                .iter()
                .map(|g| g.path.as_str())
                .collect::<Vec<_>>()
                .join(":"),
        ),
    ] {
        property(format!("LogExtraFields={field}={value}"));
    }
    // Network: a namespace of its own with only loopback; the bridge is the way out. Before the
    // tool starts, the session's own table refuses everything else at once and records it.
    property("PrivateNetwork=yes".into());
    let identity = Identity {
        unit: spec.unit.to_string(),
        operator: spec.operator.to_string(),
        tool: spec.tool.to_string(),
        cwd: spec.cwd.to_string(),
    };
    property(format!(
        "ExecStartPre=+{AUDIT_PROGRAM} {AUDIT_ATTACH} {}",
        hex(serde_json::to_string(&identity)
            .unwrap_or_default()
            .as_bytes())
    ));
    property(format!(
        "ExecStopPost=+{AUDIT_PROGRAM} {AUDIT_DETACH} {}",
        spec.unit
    ));
    property("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6".into());
    // File system view.
    property("PrivateTmp=yes".into());
    property("ProtectSystem=strict".into());
    property("ProtectHome=tmpfs".into());
    property(format!("BindPaths={}", quoted(&spec.agent.home)));
    for grant in spec.grants {
        let key = match grant.mode {
            Mode::Rw => "BindPaths",
            Mode::Ro => "BindReadOnlyPaths",
        };
        property(format!("{key}={}", quoted(&grant.path)));
    }
    // /run: an empty tmpfs; only the bridge's socket directory comes back.
    property("TemporaryFileSystem=/run".into());
    property(format!(
        "BindReadOnlyPaths={}",
        quoted(
            Utf8Path::new(BRIDGE_SOCKET)
                .parent()
                .unwrap_or(Utf8Path::new("/run"))
        )
    ));
    if !spec.protected.is_empty() {
        let list: Vec<String> = spec
            .protected
            .iter()
            .map(|p| format!("-{}", quoted(&p.path)))
            .collect();
        property(format!("ReadOnlyPaths={}", list.join(" ")));
    }
    let placeholders: Vec<String> = spec
        .protected
        .iter()
        .filter(|p| p.placeholder.is_some())
        .map(|p| quoted(&p.path))
        .collect();
    if !placeholders.is_empty() {
        property(format!(
            "ExecStopPost=+{LAUNCH_SESSION} {REMOVE_PLACEHOLDERS} {}",
            placeholders.join(" ")
        ));
    }
    let mut hidden: Vec<String> = s
        .inaccessible_paths
        .iter()
        .map(|p| format!("-{}", quoted(p)))
        .collect();
    for grant in spec.grants {
        hidden.extend(
            grant
                .skipped_credentials
                .iter()
                .map(|p| format!("-{}", quoted(p))),
        );
    }
    if !hidden.is_empty() {
        property(format!("InaccessiblePaths={}", hidden.join(" ")));
    }
    // Privileges and kernel interfaces.
    for p in [
        "ProtectProc=invisible",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "LockPersonality=yes",
        "RestrictNamespaces=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "KillMode=control-group",
        "TimeoutStopSec=5s",
        "SendSIGHUP=yes",
    ] {
        property(p.into());
    }
    // Limits.
    property(format!("TasksMax={}", s.tasks_max));
    property(format!("MemoryHigh={}", s.memory_high));
    property(format!("MemoryMax={}", s.memory_max));
    property(format!("CPUWeight={}", s.cpu_weight));
    for (name, value) in spec.env {
        args.push(format!("--setenv={name}={value}"));
    }
    args.push(SESSION_INIT.into());
    args.push(literal_argument(spec.tool));
    args.extend(spec.args.iter().map(|a| literal_argument(a)));
    args
}

/// The ports the in-session bridge listens on (inside the namespace, v4 and v6 loopback):
/// the proxy's, then the allowed loopback ports.
pub fn bridged_ports(config: &Config) -> Vec<u16> {
    let mut ports = vec![config.proxy.listen_port];
    for port in &config.network.allowed_loopback_ports {
        if !ports.contains(port) {
            ports.push(*port);
        }
    }
    ports
}

/// What the in-session half asks the host half, in a one-line header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeRequest {
    /// Forward this connection to the proxy port or an allowed loopback port.
    Connect(u16),
    /// Listen on this host loopback port and hand the listening sockets over (a dev server).
    Publish(u16),
}

impl BridgeRequest {
    pub fn header(self) -> String {
        match self {
            BridgeRequest::Connect(port) => format!("{port}\n"),
            BridgeRequest::Publish(port) => format!("publish {port}\n"),
        }
    }
}

/// The host half's reading of a header: only ports the config bridges or publishes.
pub fn parse_bridge_header(line: &str, config: &Config) -> Result<BridgeRequest, String> {
    let line = line.trim_end_matches('\n');
    let (publish, number) = match line.strip_prefix("publish ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let port: u16 = number
        .parse()
        .map_err(|_| format!("malformed bridge header {line:?}"))?;
    if publish {
        if config.session.publish_ports.contains(&port) {
            Ok(BridgeRequest::Publish(port))
        } else {
            Err(format!("port {port} is not in session.publish_ports"))
        }
    } else if bridged_ports(config).contains(&port) {
        Ok(BridgeRequest::Connect(port))
    } else {
        Err(format!(
            "port {port} is not bridged (the proxy port or network.allowed_loopback_ports)"
        ))
    }
}

/// One running session, as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub unit: String,
    pub state: String,
    pub operator: String,
    pub tool: String,
    pub cwd: String,
    pub grants: Vec<String>,
    pub started: String,
    pub tasks: Option<u64>,
    /// The unit's TasksMax (None: infinity).
    pub tasks_max: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub main_pid: Option<u32>,
    /// Host loopback ports this session's servers are published on.
    pub published: Vec<u16>,
    /// The unit's cgroup path (for counting its processes where TasksCurrent is not accounted).
    #[serde(skip)]
    pub control_group: String,
}

/// The properties `systemctl show` is asked for.
pub const SHOW_PROPERTIES: &str = "Id,ActiveState,SubState,LogExtraFields,ActiveEnterTimestamp,\
TasksCurrent,TasksMax,MemoryCurrent,MainPID,ControlGroup";

/// Parse `systemctl show -p SHOW_PROPERTIES UNIT...` (records separated by blank lines).
pub fn parse_show(text: &str) -> Vec<Session> {
    let number = |v: &str| v.parse::<u64>().ok().filter(|n| *n != u64::MAX);
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let mut session = Session {
            unit: String::new(),
            state: String::new(),
            operator: String::new(),
            tool: String::new(),
            cwd: String::new(),
            grants: Vec::new(),
            started: String::new(),
            tasks: None,
            tasks_max: None,
            memory_bytes: None,
            main_pid: None,
            published: Vec::new(),
            control_group: String::new(),
        };
        let mut sub = String::new();
        for line in record.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "Id" => session.unit = value.to_string(),
                "ActiveState" => session.state = value.to_string(),
                "SubState" => sub = value.to_string(),
                "ActiveEnterTimestamp" => session.started = value.to_string(),
                "TasksCurrent" => session.tasks = number(value),
                "TasksMax" => session.tasks_max = number(value),
                "MemoryCurrent" => session.memory_bytes = number(value),
                "MainPID" => session.main_pid = value.parse().ok().filter(|p| *p != 0),
                "ControlGroup" => session.control_group = value.to_string(),
                "LogExtraFields" => {
                    for field in value.split_whitespace() {
                        let Some((name, v)) = field.split_once('=') else {
                            continue;
                        };
                        match name {
                            FIELD_OPERATOR => session.operator = v.to_string(),
                            FIELD_TOOL => session.tool = v.to_string(),
                            FIELD_CWD => session.cwd = v.to_string(),
                            FIELD_GRANTS => {
                                session.grants = v
                                    .split(':')
                                    .filter(|g| !g.is_empty())
                                    .map(String::from)
                                    .collect()
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !sub.is_empty() {
            session.state = format!("{}/{sub}", session.state);
        }
        if is_session_unit(&session.unit) {
            out.push(session);
        }
    }
    out
}

/// The sessions that use `path`: a grant at or below it, or a working directory inside it.
pub fn sessions_using<'a>(sessions: &'a [Session], path: &Utf8Path) -> Vec<&'a Session> {
    sessions
        .iter()
        .filter(|s| {
            s.grants.iter().any(|g| Utf8Path::new(g).starts_with(path))
                || Utf8Path::new(&s.cwd).starts_with(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Granter;

    use crate::facts::test_agent as agent;

    fn grant(path: &str, mode: Mode) -> GrantRecord {
        let who = Granter {
            name: "alice".into(),
            uid: 1000,
        };
        GrantRecord {
            path: path.into(),
            mode,
            granted_by: who.clone(),
            agent: who,
            granted_at: 0,
            expires_at: None,
            entries: Vec::new(),
            skipped_credentials: vec![format!("{path}/.env").into()],
        }
    }

    fn args_for(grants: &[GrantRecord], stdio: Stdio, tool_args: &[String]) -> Vec<String> {
        let config = Config::defaults();
        let agent = agent();
        let env = BTreeMap::from([("HOME".to_string(), "/var/lib/cc-agent".to_string())]);
        let existing = ["/home/alice/proj/.git", "/home/alice/proj/.git/hooks"];
        let protected = protected_paths(grants, &config.session.protected_names, |p| {
            existing.contains(&p.as_str())
        });
        systemd_run_args(&SessionSpec {
            config: &config,
            agent: &agent,
            operator: "alice",
            unit: "pipelock-agent-00000000000000ab.service",
            tool: "claude",
            args: tool_args,
            cwd: Utf8Path::new("/home/alice/proj"),
            grants,
            env: &env,
            stdio,
            protected: &protected,
        })
    }

    fn has(args: &[String], want: &str) -> bool {
        args.iter().any(|a| a == want)
    }

    #[test]
    fn the_session_s_network_is_set_up_before_and_detached_after_with_its_identity() {
        let args = args_for(&[grant("/home/alice/proj", Mode::Rw)], Stdio::Pipe, &[]);
        let start = args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("ExecStartPre=+{AUDIT_PROGRAM} {AUDIT_ATTACH} ")))
            .expect("the session's network setup");
        assert!(start.chars().all(|c| c.is_ascii_hexdigit()), "{start}");
        let identity: Identity = serde_json::from_slice(&unhex(start).unwrap()).unwrap();
        assert_eq!(identity.unit, "pipelock-agent-00000000000000ab.service");
        assert_eq!(
            (
                identity.operator.as_str(),
                identity.tool.as_str(),
                identity.cwd.as_str()
            ),
            ("alice", "claude", "/home/alice/proj")
        );
        assert!(has(
            &args,
            &format!(
                "ExecStopPost=+{AUDIT_PROGRAM} {AUDIT_DETACH} {}",
                identity.unit
            )
        ));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&hex(b"\x00\xff$%")).unwrap(), b"\x00\xff$%");
    }

    #[test]
    fn the_session_table_judges_only_the_agent_and_logs_to_the_listener() {
        let rules = session_ruleset(998);
        assert!(rules.contains("meta skuid 998 jump agent"), "{rules}");
        assert!(rules.contains(&format!("log group {}", crate::paths::NFLOG_GROUP)));
        // DNS is refused before loopback is let through: a name is a channel out.
        let dns = rules.find("th dport 53 jump refuse").unwrap();
        assert!(dns < rules.find("ip daddr 127.0.0.0/8 accept").unwrap());
        assert!(rules.starts_with("table inet pipelock_session\ndelete table"));
    }

    #[test]
    fn the_unit_has_its_own_network_and_file_system_view() {
        let args = args_for(&[grant("/home/alice/proj", Mode::Rw)], Stdio::Pty, &[]);
        for want in [
            "--slice=pipelock-agents.slice",
            "--uid=cc-agent",
            "--pty",
            "--wait",
            "--working-directory=/home/alice/proj",
            "PrivateNetwork=yes",
            "PrivateTmp=yes",
            "ProtectSystem=strict",
            "ProtectHome=tmpfs",
            "ProtectProc=invisible",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "BindPaths=\"/var/lib/cc-agent\"",
            "BindPaths=\"/home/alice/proj\"",
            "TasksMax=512",
            "--setenv=HOME=/var/lib/cc-agent",
            "LogExtraFields=PIPELOCK_OPERATOR=alice",
            "LogExtraFields=PIPELOCK_GRANTS=/home/alice/proj",
        ] {
            assert!(has(&args, want), "{want} missing from {args:#?}");
        }
        let ro = args
            .iter()
            .find(|a| a.starts_with("ReadOnlyPaths="))
            .unwrap();
        for name in [
            ".git/hooks",
            ".git/config",
            ".gitmodules",
            ".envrc",
            ".vscode",
        ] {
            assert!(
                ro.contains(&format!("-\"/home/alice/proj/{name}\"")),
                "{ro}"
            );
        }
        // Missing ones get placeholders, removed when the session stops; existing ones do not.
        let stop = args
            .iter()
            .find(|a| a.starts_with("ExecStopPost=+") && a.contains(REMOVE_PLACEHOLDERS))
            .unwrap();
        assert!(stop.contains("\"/home/alice/proj/.git/config\""), "{stop}");
        assert!(stop.contains("\"/home/alice/proj/.vscode\""), "{stop}");
        assert!(!stop.contains("\"/home/alice/proj/.git/hooks\""), "{stop}");
        assert!(has(&args, "TemporaryFileSystem=/run"));
        assert!(has(
            &args,
            "BindReadOnlyPaths=\"/run/pipelock-containment\""
        ));
        let hidden = args
            .iter()
            .find(|a| a.starts_with("InaccessiblePaths="))
            .unwrap();
        for path in [
            "/run/dbus/system_bus_socket",
            "/run/systemd/resolve",
            "/run/nscd",
            "/home/alice/proj/.env",
        ] {
            assert!(hidden.contains(&format!("-\"{path}\"")), "{hidden}");
        }
        // The command comes last: session-init, the tool, its arguments.
        assert_eq!(&args[args.len() - 2..], [SESSION_INIT, "claude"]);
    }

    #[test]
    fn read_only_grants_bind_read_only_and_protect_nothing_extra() {
        let args = args_for(&[grant("/srv/data", Mode::Ro)], Stdio::Pipe, &[]);
        assert!(has(&args, "BindReadOnlyPaths=\"/srv/data\""));
        assert!(has(&args, "--pipe"));
        assert!(!args.iter().any(|a| a.starts_with("ReadOnlyPaths=")));
    }

    #[test]
    fn operator_arguments_cannot_add_options_or_expand_variables() {
        let tool_args = vec!["--property=PrivateNetwork=no".to_string(), "$HOME".into()];
        let args = args_for(&[], Stdio::Pipe, &tool_args);
        let init = args.iter().position(|a| a == SESSION_INIT).unwrap();
        assert_eq!(
            &args[init..],
            [
                SESSION_INIT,
                "claude",
                "--property=PrivateNetwork=no",
                "$$HOME"
            ]
        );
        assert!(!args[..init].iter().any(|a| a.contains("PrivateNetwork=no")));
    }

    #[test]
    fn a_missing_protected_name_is_protected_at_its_first_missing_part() {
        let grants = [grant("/p", Mode::Rw), grant("/r", Mode::Ro)];
        let names: Vec<String> = [".git/hooks/", ".envrc", ".vscode/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = protected_paths(&grants, &names, |p| p == "/p/.envrc");
        assert_eq!(
            got,
            vec![
                Protected {
                    path: "/p/.git".into(),
                    placeholder: Some(PlaceholderKind::Dir)
                },
                Protected {
                    path: "/p/.envrc".into(),
                    placeholder: None
                },
                Protected {
                    path: "/p/.vscode".into(),
                    placeholder: Some(PlaceholderKind::Dir)
                },
            ]
        );
    }

    #[test]
    fn paths_with_quotes_stay_one_word() {
        assert_eq!(quoted(Utf8Path::new("/a b/\"c\"")), "\"/a b/\\\"c\\\"\"");
    }

    #[test]
    fn session_units_are_recognised_by_name() {
        assert!(is_session_unit(&unit_name(0xab)));
        assert!(!is_session_unit("pipelock-agent-.service"));
        assert!(!is_session_unit("pipelock-proxy.service"));
        assert!(!is_session_unit("pipelock-agent-x1.service"));
    }

    #[test]
    fn cwd_must_be_visible_inside_the_session() {
        let grants = [grant("/home/alice/proj", Mode::Rw)];
        let home = Utf8Path::new("/var/lib/cc-agent");
        assert!(visible_in_session(
            Utf8Path::new("/home/alice/proj/src"),
            home,
            &grants
        ));
        assert!(visible_in_session(
            Utf8Path::new("/var/lib/cc-agent"),
            home,
            &grants
        ));
        assert!(visible_in_session(Utf8Path::new("/srv"), home, &grants));
        assert!(!visible_in_session(
            Utf8Path::new("/home/alice"),
            home,
            &grants
        ));
        assert!(!visible_in_session(Utf8Path::new("/tmp/x"), home, &grants));
    }

    #[test]
    fn bridge_headers_name_only_bridged_ports() {
        let mut config = Config::defaults();
        config.network.allowed_loopback_ports = vec![5432];
        assert_eq!(bridged_ports(&config), vec![8888, 5432]);
        config.session.publish_ports = vec![3000];
        let connect = BridgeRequest::Connect(8888);
        assert_eq!(parse_bridge_header(&connect.header(), &config), Ok(connect));
        assert_eq!(
            parse_bridge_header("5432\n", &config),
            Ok(BridgeRequest::Connect(5432))
        );
        let publish = BridgeRequest::Publish(3000);
        assert_eq!(parse_bridge_header(&publish.header(), &config), Ok(publish));
        assert!(parse_bridge_header("publish 8888\n", &config).is_err());
        assert!(parse_bridge_header("3000\n", &config).is_err());
        assert!(parse_bridge_header("22\n", &config).is_err());
        assert!(parse_bridge_header("x\n", &config).is_err());
    }

    #[test]
    fn show_output_becomes_sessions() {
        let text = "Id=pipelock-agent-00000000000000ab.service\nActiveState=active\nSubState=running\n\
LogExtraFields=PIPELOCK_OPERATOR=alice PIPELOCK_TOOL=claude PIPELOCK_CWD=/home/alice/proj PIPELOCK_GRANTS=/home/alice/proj:/srv/data\n\
ActiveEnterTimestamp=Wed 2026-12-02 17:00:00 UTC\nTasksCurrent=3\nTasksMax=512\nMemoryCurrent=[not set]\nMainPID=42\n\n\
Id=pipelock-proxy.service\nActiveState=active\n";
        let sessions = parse_show(text);
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.operator, "alice");
        assert_eq!(s.tool, "claude");
        assert_eq!(s.grants, vec!["/home/alice/proj", "/srv/data"]);
        assert_eq!(s.tasks, Some(3));
        assert_eq!(s.tasks_max, Some(512));
        assert_eq!(s.memory_bytes, None);
        assert_eq!(s.main_pid, Some(42));
        assert_eq!(s.state, "active/running");
        assert_eq!(
            sessions_using(&sessions, Utf8Path::new("/srv/data")).len(),
            1
        );
        assert_eq!(
            sessions_using(&sessions, Utf8Path::new("/home/alice")).len(),
            1
        );
        assert!(sessions_using(&sessions, Utf8Path::new("/home/bob")).is_empty());
    }
}
