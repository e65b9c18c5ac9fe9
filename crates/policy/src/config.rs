//! The containment config: strict TOML parsing, defaults and validation (pure, no I/O).

use std::fmt;
use std::net::IpAddr;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::grants::{default_credential_patterns, CredentialPattern};

/// Where the packaged config lives.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pipelock-containment/containment.toml";

/// The shipped default config, every key written out and commented.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../pkg/containment.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub users: Users,
    pub proxy: Proxy,
    pub network: Network,
    pub tools: Tools,
    pub ca: Ca,
    /// Absent in configs written before grants existed: then the defaults apply.
    #[serde(default)]
    pub grants: Grants,
    /// Absent in configs written before contained sessions: then the defaults apply.
    #[serde(default)]
    pub session: SessionLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    pub agent: String,
    pub agent_home: Utf8PathBuf,
    pub proxy: String,
    pub operators_group: String,
    pub delete_on_purge: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub listen_address: IpAddr,
    pub listen_port: u16,
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsPolicy {
    Blocked,
    LoopbackResolver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockedResponse {
    Reject,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub dns: DnsPolicy,
    pub allowed_loopback_ports: Vec<u16>,
    pub blocked_response: BlockedResponse,
    /// Obsolete: blocked attempts go to the audit listener, not the kernel log; accepted so
    /// an older config still loads, and `apply` says it has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rate_per_minute: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub wrap: Vec<String>,
    pub env_passthrough: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ca {
    pub proxy_ca: Utf8PathBuf,
    pub proxy_ca_key: Utf8PathBuf,
    pub combined_bundle: Utf8PathBuf,
    /// Empty means: detect the distro's bundle.
    pub system_bundle: Option<Utf8PathBuf>,
}

/// Workspace grants: where they are recorded, and which files never get an agent entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    pub records: Utf8PathBuf,
    pub credential_patterns: Vec<CredentialPattern>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            records: crate::paths::GRANT_RECORDS.into(),
            credential_patterns: default_credential_patterns(),
        }
    }
}

/// Contained sessions: limits, host sockets hidden from the agent, protected names in grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    pub tasks_max: u32,
    pub memory_high: String,
    pub memory_max: String,
    pub cpu_weight: u32,
    pub inaccessible_paths: Vec<Utf8PathBuf>,
    pub protected_names: Vec<String>,
    pub publish_ports: Vec<u16>,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            tasks_max: 512,
            memory_high: "60%".into(),
            memory_max: "75%".into(),
            cpu_weight: 50,
            inaccessible_paths: [
                "/run/dbus/system_bus_socket",
                "/run/systemd/resolve",
                "/run/nscd",
                "/run/avahi-daemon",
                "/run/cups",
                "/tmp/.X11-unix",
            ]
            .iter()
            .map(|p| Utf8PathBuf::from(*p))
            .collect(),
            protected_names: [
                ".git/hooks/",
                ".git/config",
                ".gitmodules",
                ".envrc",
                ".vscode/",
                ".idea/",
                ".bashrc",
                ".bash_profile",
                ".bash_login",
                ".profile",
                ".zshrc",
                ".zprofile",
                ".zshenv",
            ]
            .iter()
            .map(|p| p.to_string())
            .collect(),
            publish_ports: Vec::new(),
        }
    }
}

/// A config problem, naming the key and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: `{}`: {}", self.source_name, key, self.message),
            None => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What the config sets that no longer has an effect, as warnings.
    pub fn obsolete_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.network.log_rate_per_minute.is_some() {
            out.push(
                "network.log_rate_per_minute has no effect: blocked attempts are recorded by \
                 pipelock-containment-audit.service (see `pipelock-containment blocked`); \
                 remove the line"
                    .to_string(),
            );
        }
        out
    }

    /// The built-in defaults: the shipped config file.
    pub fn defaults() -> Config {
        Config::parse(DEFAULT_CONFIG_TOML, "built-in defaults").expect("shipped config is valid")
    }

    /// Parse and validate. `source_name` (usually the path) prefixes every error.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError {
            source_name: source_name.to_string(),
            key: None,
            message: describe_toml_error(text, &err),
        })?;
        config.validate().map_err(|(key, message)| ConfigError {
            source_name: source_name.to_string(),
            key: Some(key),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_string(), message));

        for (key, name) in [
            ("users.agent", &self.users.agent),
            ("users.proxy", &self.users.proxy),
            ("users.operators_group", &self.users.operators_group),
        ] {
            if !is_valid_account_name(name) {
                return fail(
                    key,
                    format!(
                        "{name:?} is not a valid user or group name: use 1-32 characters, \
                         a lower-case letter or `_` first, then lower-case letters, digits, `_` or `-`"
                    ),
                );
            }
        }
        if self.users.agent == self.users.proxy {
            return fail(
                "users.proxy",
                format!(
                    "the proxy user must differ from the agent user (both are {:?})",
                    self.users.agent
                ),
            );
        }
        if self.users.agent == "root" || self.users.proxy == "root" {
            return fail(
                "users",
                "neither the agent nor the proxy may be root".into(),
            );
        }

        for (key, path) in [
            ("users.agent_home", &self.users.agent_home),
            ("ca.proxy_ca", &self.ca.proxy_ca),
            ("ca.proxy_ca_key", &self.ca.proxy_ca_key),
            ("ca.combined_bundle", &self.ca.combined_bundle),
            ("grants.records", &self.grants.records),
        ] {
            check_absolute(key, path)?;
        }
        if let Some(path) = &self.ca.system_bundle {
            check_absolute("ca.system_bundle", path)?;
        }

        if self.proxy.listen_port == 0 {
            return fail("proxy.listen_port", "0 is not a port: use 1-65535".into());
        }
        if !self.proxy.listen_address.is_loopback() {
            return fail(
                "proxy.listen_address",
                format!(
                    "{} is not a loopback address: the proxy must listen on 127.0.0.1, \
                     another 127.x address or ::1, so only this host can use it",
                    self.proxy.listen_address
                ),
            );
        }
        match self.proxy.command.first() {
            None => {
                return fail(
                    "proxy.command",
                    "empty: give the program and its arguments, for example \
                     [\"/usr/bin/pipelock\", \"run\"]"
                        .into(),
                )
            }
            Some(program) if !program.starts_with('/') => {
                return fail(
                    "proxy.command",
                    format!("the program {program:?} must be an absolute path"),
                )
            }
            Some(_) => {}
        }
        if let Some(arg) = self.proxy.command.iter().find(|a| a.contains('\n')) {
            return fail(
                "proxy.command",
                format!("argument {arg:?} contains a line break"),
            );
        }

        for port in &self.network.allowed_loopback_ports {
            if *port == 0 {
                return fail(
                    "network.allowed_loopback_ports",
                    "0 is not a port: use 1-65535".into(),
                );
            }
            if *port == 53 {
                return fail(
                    "network.allowed_loopback_ports",
                    "port 53 is DNS: set network.dns = \"loopback-resolver\" instead".into(),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for tool in &self.tools.wrap {
            if !is_valid_tool(tool) {
                return fail(
                    "tools.wrap",
                    format!(
                        "{tool:?} is not a valid tool: use a command name of letters, digits, \
                         `.`, `_`, `+` or `-` (not starting with `-` or `.`), or an absolute path"
                    ),
                );
            }
            if !seen.insert(tool_command_name(tool)) {
                return fail(
                    "tools.wrap",
                    format!("{tool:?} is listed twice (wrappers are named by the last path part)"),
                );
            }
            if tool_command_name(tool) == "cc-launch" {
                return fail("tools.wrap", "\"cc-launch\" is the launcher itself".into());
            }
        }
        for name in &self.tools.env_passthrough {
            if !is_valid_env_name(name) {
                return fail(
                    "tools.env_passthrough",
                    format!(
                        "{name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                    ),
                );
            }
            if let Some(problem) = passthrough_problem(name) {
                return fail("tools.env_passthrough", format!("{name:?}: {problem}"));
            }
        }
        if self.session.tasks_max < 8 {
            return fail(
                "session.tasks_max",
                "must be at least 8 (a shell and a tool need a few tasks)".into(),
            );
        }
        if !(1..=10000).contains(&self.session.cpu_weight) {
            return fail("session.cpu_weight", "must be 1-10000".into());
        }
        for (key, value) in [
            ("session.memory_high", &self.session.memory_high),
            ("session.memory_max", &self.session.memory_max),
        ] {
            if !is_memory_size(value) {
                return fail(
                    key,
                    format!(
                        "{value:?} is not a size: use bytes with K, M, G or T, a percentage \
                         of the machine's memory (\"75%\"), or \"infinity\""
                    ),
                );
            }
        }
        for path in &self.session.inaccessible_paths {
            check_absolute("session.inaccessible_paths", path)?;
        }
        for name in &self.session.protected_names {
            if name.is_empty()
                || name.starts_with('/')
                || name
                    .trim_end_matches('/')
                    .split('/')
                    .any(|part| part.is_empty() || part == ".." || part == ".")
                || name.contains(['"', '\\', '\n', ' '])
            {
                return fail(
                    "session.protected_names",
                    format!(
                        "{name:?} must be a relative path inside a grant, like \".envrc\" \
                         or \".git/hooks/\" (a trailing `/`: a directory)"
                    ),
                );
            }
        }
        let mut published = std::collections::BTreeSet::new();
        for port in &self.session.publish_ports {
            if *port < 1024 {
                return fail(
                    "session.publish_ports",
                    format!("{port} is below 1024: the bridge is unprivileged; use 1024-65535"),
                );
            }
            if *port == self.proxy.listen_port || self.network.allowed_loopback_ports.contains(port)
            {
                return fail(
                    "session.publish_ports",
                    format!("{port} is the proxy's or an allowed loopback port: it cannot also be published"),
                );
            }
            if !published.insert(*port) {
                return fail("session.publish_ports", format!("{port} is listed twice"));
            }
        }
        for pattern in &self.grants.credential_patterns {
            if let Err(message) = pattern.validate() {
                return fail("grants.credential_patterns", message);
            }
        }
        Ok(())
    }
}

/// A systemd memory size: `infinity`, `N%`, or digits with an optional K/M/G/T suffix.
fn is_memory_size(value: &str) -> bool {
    if value == "infinity" {
        return true;
    }
    if let Some(percent) = value.strip_suffix('%') {
        return percent.parse::<u8>().is_ok_and(|p| (1..=100).contains(&p));
    }
    let digits = value.trim_end_matches(['K', 'M', 'G', 'T']);
    value.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

fn check_absolute(key: &str, path: &Utf8Path) -> Result<(), (String, String)> {
    if path.is_absolute() && !path.as_str().contains(['\n', '"', '\\']) {
        Ok(())
    } else {
        Err((
            key.to_string(),
            format!("{path:?} must be an absolute path (starting with `/`)"),
        ))
    }
}

/// The name a wrapper gets: the tool itself, or the last part of an absolute path.
pub fn tool_command_name(tool: &str) -> &str {
    tool.rsplit('/').next().unwrap_or(tool)
}

/// A tool is a plain command name, or an absolute path whose parts are plain names.
pub fn is_valid_tool(tool: &str) -> bool {
    let plain = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && !name.starts_with(['-', '.'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
    };
    match tool.strip_prefix('/') {
        Some(rest) => rest.split('/').all(plain),
        None => plain(tool),
    }
}

/// Portable user/group names, as useradd accepts them by default.
pub fn is_valid_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub fn is_valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// toml's message, with the key it concerns and the line and column where it starts.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let mut message = err.message().trim_end().to_string();
    if message.ends_with("expected u16") {
        message.push_str(" (a port number, 1-65535)");
    }
    let Some(span) = err.span() else {
        return message;
    };
    let (line, column) = line_and_column(text, span.start);
    match key_at(text, span.start) {
        Some(key) => format!("line {line}, column {column}: `{key}`: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The dotted key whose value starts at `offset`: the nearest `[table]` above plus the line's key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') || key.contains([' ', '[', '"']) {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')?.strip_suffix(']').map(str::trim)
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Proxy variables, both cases: curl ignores upper-case HTTP_PROXY, others read only upper case.
pub const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Variables that point TLS clients (OpenSSL, Python requests, curl, git, cargo, pip) at the
/// combined bundle: the system roots plus the proxy CA.
pub const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
];

/// Node adds this file to its own built-in roots.
pub const NODE_CA_VAR: &str = "NODE_EXTRA_CA_CERTS";

/// Why an extra pass-through variable may not be configured, if it may not.
///
/// Variables the launcher sets itself must come from it; loader and sudo variables would change
/// what runs; `PIPELOCK_*` is reserved for the helper.
pub fn passthrough_problem(name: &str) -> Option<String> {
    let set_here = ["HOME", "PATH", "USER", "LOGNAME", "NO_PROXY", "no_proxy"]
        .iter()
        .chain(PROXY_VARS)
        .chain(BUNDLE_VARS)
        .any(|var| *var == name)
        || name == NODE_CA_VAR;
    if set_here {
        return Some(format!("{name} is set by the launcher itself"));
    }
    for prefix in ["LD_", "SUDO_", "PIPELOCK_"] {
        if name.starts_with(prefix) {
            return Some(format!("{prefix}* variables may not pass to the agent"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_problems() {
        assert!(passthrough_problem("EDITOR").is_none());
        assert!(passthrough_problem("https_proxy").is_some());
        assert!(passthrough_problem("NODE_EXTRA_CA_CERTS").is_some());
        assert!(passthrough_problem("LD_LIBRARY_PATH").is_some());
        assert!(passthrough_problem("SUDO_UID").is_some());
        assert!(passthrough_problem("PIPELOCK_CONTAINMENT_CONFIG").is_some());
    }

    fn with_replaced(from: &str, to: &str) -> Result<Config, ConfigError> {
        assert!(DEFAULT_CONFIG_TOML.contains(from), "fixture lost: {from}");
        Config::parse(&DEFAULT_CONFIG_TOML.replacen(from, to, 1), "test.toml")
    }

    #[test]
    fn shipped_defaults_parse() {
        let config = Config::defaults();
        assert_eq!(config.users.agent, "cc-agent");
        assert_eq!(config.users.proxy, "pipelock-proxy");
        assert_eq!(config.proxy.listen_port, 8888);
        assert_eq!(config.network.dns, DnsPolicy::Blocked);
        assert_eq!(config.network.blocked_response, BlockedResponse::Reject);
        assert_eq!(config.tools.wrap, ["claude", "codex", "gemini"]);
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let err = with_replaced("[network]\n", "[network]\nfirewall = true\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `firewall`"), "{text}");
        assert!(text.contains("test.toml: line "), "{text}");
        assert!(text.contains("column 1"), "{text}");
    }

    #[test]
    fn bad_port_is_refused() {
        let err = with_replaced("listen_port = 8888", "listen_port = 70000").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`proxy.listen_port`"), "{text}");
        assert!(text.contains("1-65535"), "{text}");
        let err = with_replaced("listen_port = 8888", "listen_port = 0").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("proxy.listen_port"));
        assert!(err.message.contains("1-65535"));
    }

    #[test]
    fn relative_path_is_refused() {
        let err = with_replaced(
            "proxy_ca = \"/etc/pipelock/ca.pem\"",
            "proxy_ca = \"ca.pem\"",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("ca.proxy_ca"));
        assert!(err.message.contains("absolute path"));
    }

    #[test]
    fn same_agent_and_proxy_is_refused() {
        let err = with_replaced("proxy = \"pipelock-proxy\"", "proxy = \"cc-agent\"").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("users.proxy"));
        assert!(err.message.contains("must differ"));
    }

    #[test]
    fn invalid_names_and_tools_are_refused() {
        let err = with_replaced("agent = \"cc-agent\"", "agent = \"Agent!\"").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("users.agent"));
        let err = with_replaced("\"claude\",", "\"../claude\",").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("tools.wrap"));
        let err = with_replaced("\"claude\",", "\"a;b\",").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("tools.wrap"));
        assert!(with_replaced("\"claude\",", "\"/opt/claude/bin/claude\",").is_ok());
    }

    #[test]
    fn non_loopback_listen_address_is_refused() {
        let err = with_replaced(
            "listen_address = \"127.0.0.1\"",
            "listen_address = \"0.0.0.0\"",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("proxy.listen_address"));
    }

    #[test]
    fn dns_and_response_enums_are_kebab_case() {
        let config = with_replaced("dns = \"blocked\"", "dns = \"loopback-resolver\"").unwrap();
        assert_eq!(config.network.dns, DnsPolicy::LoopbackResolver);
        let err = with_replaced("dns = \"blocked\"", "dns = \"open\"").unwrap_err();
        assert!(err.to_string().contains("blocked"), "{err}");
    }

    #[test]
    fn grants_defaults_and_validation() {
        let config = Config::defaults();
        assert_eq!(config.grants, Grants::default());
        assert_eq!(
            config.grants.records,
            "/var/lib/pipelock-containment/grants.json"
        );
        // A config written before grants existed still parses, with the defaults.
        let start = DEFAULT_CONFIG_TOML.find("[grants]").unwrap();
        let old = Config::parse(&DEFAULT_CONFIG_TOML[..start], "old.toml").unwrap();
        assert_eq!(old.grants, Grants::default());
        let err = with_replaced(
            "records = \"/var/lib/pipelock-containment/grants.json\"",
            "records = \"grants.json\"",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("grants.records"));
        let err = with_replaced("    \".netrc\",\n", "    \"a/.netrc\",\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("grants.credential_patterns"));
        let err = with_replaced("[grants]\n", "[grants]\nexpire = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `expire`"), "{err}");
        let config =
            with_replaced("    \".pgpass\",\n", "    \".pgpass\",\n    \"*.kdbx\",\n").unwrap();
        assert!(config
            .grants
            .credential_patterns
            .contains(&CredentialPattern::Name("*.kdbx".into())));
        // check-config prints it back, and what it prints parses to the same config.
        let text = toml::to_string(&config).unwrap();
        assert_eq!(Config::parse(&text, "printed").unwrap(), config);
    }

    #[test]
    fn line_and_column_counts_from_one() {
        assert_eq!(line_and_column("a\nbc\n", 3), (2, 2));
        assert_eq!(line_and_column("abc", 0), (1, 1));
    }
}
