//! The launch policy (pure, no I/O): which tool may start, where it is looked up, and the agent's environment.
//!
//! `host::launch` (agent-exec) gathers the facts (config, the agent account, the operator's
//! environment as sudo passed it, probe results) and applies these functions; nothing here
//! touches the host, so every rule is unit-tested.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{
    is_valid_tool, passthrough_problem, tool_command_name, Config, BUNDLE_VARS, NODE_CA_VAR,
    PROXY_VARS,
};
use crate::exit;
use crate::facts::Account;
use crate::paths;

/// agent-exec refused because containment is not proven (rule missing, proxy down).
pub const EXIT_NOT_CONTAINED: i32 = 125;
/// agent-exec refused a tool that is not on the allow-list, or a malformed tool name.
pub const EXIT_NOT_ALLOWED: i32 = 126;
/// The allowed tool was not found on the agent's PATH.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Variables passed from the operator unless the config adds more: terminal and locale only.
/// `LC_*` means every variable starting with `LC_`.
pub const BASE_PASSTHROUGH: &[&str] = &["TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_*"];

/// Where NO_PROXY points: loopback never goes through the proxy.
pub const NO_PROXY: &str = "127.0.0.1,localhost,::1";

/// Why a launch is refused; each kind has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No tool given.
    Usage,
    /// The tool name is malformed (odd characters, a relative path, a path the config does not list).
    BadName(String),
    /// The tool is valid but not on the allow-list.
    NotAllowed(String),
    /// The allowed tool is not installed where the agent looks.
    NotFound {
        tool: String,
        searched: Vec<Utf8PathBuf>,
    },
    /// agent-exec does not run as the configured agent user.
    WrongUser { expected: String, uid: u32 },
    /// The agent cannot enter or read the current directory.
    Cwd { dir: String, reason: String },
    /// The kernel rule is not in force for the agent user.
    RuleNotInForce(String),
    /// Nothing listens on the proxy address.
    ProxyDown { address: String, reason: String },
    /// A session cannot be contained (no systemd, no namespaces, no bridge, a shared network).
    NotContained(String),
}

impl Refusal {
    pub fn exit_code(&self) -> i32 {
        match self {
            Refusal::Usage => exit::USAGE,
            Refusal::BadName(_) | Refusal::NotAllowed(_) => EXIT_NOT_ALLOWED,
            Refusal::NotFound { .. } => EXIT_NOT_FOUND,
            Refusal::WrongUser { .. } | Refusal::Cwd { .. } => exit::NEED_ROOT,
            Refusal::RuleNotInForce(_) | Refusal::ProxyDown { .. } | Refusal::NotContained(_) => {
                EXIT_NOT_CONTAINED
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Usage => write!(f, "usage: cc-launch TOOL [ARGS...]"),
            Refusal::BadName(tool) => write!(
                f,
                "refused: {tool:?} is not a valid tool name: use a plain command name \
                 (letters, digits, `.`, `_`, `+`, `-`), or an absolute path that \
                 tools.wrap lists exactly"
            ),
            Refusal::NotAllowed(tool) => write!(
                f,
                "refused: {tool:?} is not an allowed tool (tools.wrap in {}). An administrator \
                 can allow it: `pipelock-containment tools add {tool}`",
                crate::config::DEFAULT_CONFIG_PATH
            ),
            Refusal::NotFound { tool, searched } => write!(
                f,
                "{tool:?} is allowed but not installed for the agent: not found in {}. Install \
                 it where the agent finds it (for example the agent's ~/.local/bin), or list \
                 its absolute path in tools.wrap",
                searched
                    .iter()
                    .map(|dir| dir.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Refusal::WrongUser { expected, uid } => write!(
                f,
                "refused: agent-exec runs as the agent user {expected:?} (started by cc-launch \
                 through sudo), not as UID {uid}. Use `cc-launch TOOL [ARGS...]`"
            ),
            Refusal::Cwd { dir, reason } => write!(
                f,
                "refused: the agent cannot work in the current directory {dir} ({reason}). \
                 Change to a directory the agent may use, or grant it access: \
                 `pipelock-containment grant {dir}`"
            ),
            Refusal::RuleNotInForce(what) => write!(
                f,
                "refused: the containment rule is not in force for the agent user ({what}), \
                 so the tool would reach the network directly. Load it: \
                 `systemctl start pipelock-containment` (or `pipelock-containment apply` as root)"
            ),
            Refusal::NotContained(what) => write!(
                f,
                "refused: the session cannot be contained: {what}. Nothing was started"
            ),
            Refusal::ProxyDown { address, reason } => write!(
                f,
                "refused: the proxy is not listening on {address} ({reason}), so the tool would \
                 have no network. Start it: `systemctl start pipelock-proxy` (see \
                 `systemctl status pipelock-proxy`)"
            ),
        }
    }
}

/// How the allowed tool is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolTarget {
    /// A plain name, looked up on the agent's PATH.
    Search(String),
    /// An absolute path the config lists.
    Path(Utf8PathBuf),
}

/// Check the requested tool against the allow-list `tools.wrap`.
///
/// A plain name matches a plain entry, or the last part of an absolute entry (so `cc-launch
/// claude` runs `/opt/claude/bin/claude` when that is what the config lists). A name with a
/// slash is accepted only when it is exactly an absolute entry.
pub fn select_tool(config: &Config, requested: &str) -> Result<ToolTarget, Refusal> {
    if requested.is_empty() {
        return Err(Refusal::Usage);
    }
    if !is_valid_tool(requested) {
        return Err(Refusal::BadName(requested.to_string()));
    }
    if requested.starts_with('/') {
        return if config.tools.wrap.iter().any(|entry| entry == requested) {
            Ok(ToolTarget::Path(requested.into()))
        } else {
            Err(Refusal::BadName(requested.to_string()))
        };
    }
    for entry in &config.tools.wrap {
        if entry == requested {
            return Ok(ToolTarget::Search(requested.to_string()));
        }
        if entry.starts_with('/') && tool_command_name(entry) == requested {
            return Ok(ToolTarget::Path(entry.into()));
        }
    }
    Err(Refusal::NotAllowed(requested.to_string()))
}

/// The agent's PATH, in order: its own ~/.local/bin, then the system's. Never the wrapper
/// directory, so a wrapper can never end up calling itself.
pub fn agent_path(home: &Utf8Path) -> Vec<Utf8PathBuf> {
    vec![
        home.join(".local/bin"),
        "/usr/local/bin".into(),
        "/usr/bin".into(),
        "/bin".into(),
    ]
}

/// True if `path` is the wrapper directory or inside it (compare canonical paths).
pub fn is_in_wrapper_dir(path: &Utf8Path) -> bool {
    path.starts_with(paths::WRAPPER_DIR)
}

/// The first `dir/name` in `dirs` that `is_executable` accepts, skipping the wrapper directory.
pub fn find_in_path(
    name: &str,
    dirs: &[Utf8PathBuf],
    is_executable: impl Fn(&Utf8Path) -> bool,
) -> Option<Utf8PathBuf> {
    dirs.iter()
        .filter(|dir| !is_in_wrapper_dir(dir))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The proxy URL for an address and port (`http://[::1]:8888` for IPv6).
pub fn proxy_url(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    }
}

/// The pass-through list: the base list plus the configured extras that may pass.
pub fn passthrough_names(config: &Config) -> Vec<&str> {
    BASE_PASSTHROUGH
        .iter()
        .copied()
        .chain(
            config
                .tools
                .env_passthrough
                .iter()
                .map(String::as_str)
                .filter(|name| passthrough_problem(name).is_none()),
        )
        .collect()
}

fn passes(name: &OsStr, allowed: &[&str]) -> bool {
    let name = name.as_bytes();
    allowed
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix.as_bytes()) && name.len() > prefix.len(),
            None => name == pattern.as_bytes(),
        })
}

/// The agent's whole environment, built from scratch.
///
/// From `inherited` (what sudo passed on) only the pass-through variables are kept; everything
/// agent-exec sets itself wins over them. Nothing else of the operator's reaches the tool.
pub fn build_env(
    config: &Config,
    agent: &Account,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<OsString, OsString> {
    let allowed = passthrough_names(config);
    let mut env: BTreeMap<OsString, OsString> = inherited
        .into_iter()
        .filter(|(name, _)| passes(name, &allowed))
        .collect();
    let mut set = |name: &str, value: &str| {
        env.insert(name.into(), value.into());
    };
    set("HOME", agent.home.as_str());
    set("USER", &agent.name);
    set("LOGNAME", &agent.name);
    let path = agent_path(&agent.home)
        .iter()
        .map(|dir| dir.as_str())
        .collect::<Vec<_>>()
        .join(":");
    set("PATH", &path);
    let proxy = proxy_url(config.proxy.listen_address, config.proxy.listen_port);
    for var in PROXY_VARS {
        set(var, &proxy);
    }
    set("NO_PROXY", NO_PROXY);
    set("no_proxy", NO_PROXY);
    for var in BUNDLE_VARS {
        set(var, config.ca.combined_bundle.as_str());
    }
    set(NODE_CA_VAR, config.ca.proxy_ca.as_str());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::facts::test_agent as agent;

    fn config_with(wrap: &[&str], extras: &[&str]) -> Config {
        let mut config = Config::defaults();
        config.tools.wrap = wrap.iter().map(|s| s.to_string()).collect();
        config.tools.env_passthrough = extras.iter().map(|s| s.to_string()).collect();
        config
    }

    /// Terminal and locale variables the agent gets unchanged.
    const PASSED_THROUGH: &[(&str, &str)] = &[
        ("TERM", "xterm-256color"),
        ("COLORTERM", "truecolor"),
        ("LANG", "de_DE.UTF-8"),
        ("LANGUAGE", "de"),
        ("LC_ALL", "C.UTF-8"),
        ("LC_TIME", "en_GB.UTF-8"),
    ];

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn environment_is_exactly_the_documented_one() {
        let inherited = env_of(&[
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_PROFILE", "prod"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("ANTHROPIC_API_KEY", "sk-x"),
            ("HOME", "/home/operator"),
            ("PATH", "/var/lib/pipelock-containment/wrappers:/usr/bin"),
            ("USER", "operator"),
            ("SUDO_USER", "operator"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("HTTPS_PROXY", "http://elsewhere:3128"),
            ("LC_", "not a locale variable"),
            ("LCX", "no"),
            ("EDITOR", "vim"),
        ]);
        let inherited = inherited.into_iter().chain(env_of(PASSED_THROUGH));
        let env = build_env(&config_with(&["claude"], &[]), &agent(), inherited);
        let proxy = "http://127.0.0.1:8888";
        let bundle = "/etc/pipelock/combined-ca.pem";
        let expected: BTreeMap<OsString, OsString> = env_of(&[
            ("HOME", "/var/lib/cc-agent"),
            ("USER", "cc-agent"),
            ("LOGNAME", "cc-agent"),
            (
                "PATH",
                "/var/lib/cc-agent/.local/bin:/usr/local/bin:/usr/bin:/bin",
            ),
            ("HTTP_PROXY", proxy),
            ("HTTPS_PROXY", proxy),
            ("ALL_PROXY", proxy),
            ("http_proxy", proxy),
            ("https_proxy", proxy),
            ("all_proxy", proxy),
            ("NO_PROXY", "127.0.0.1,localhost,::1"),
            ("no_proxy", "127.0.0.1,localhost,::1"),
            ("SSL_CERT_FILE", bundle),
            ("REQUESTS_CA_BUNDLE", bundle),
            ("CURL_CA_BUNDLE", bundle),
            ("GIT_SSL_CAINFO", bundle),
            ("CARGO_HTTP_CAINFO", bundle),
            ("PIP_CERT", bundle),
            ("NODE_EXTRA_CA_CERTS", "/etc/pipelock/ca.pem"),
        ])
        .into_iter()
        .chain(env_of(PASSED_THROUGH))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn configured_extras_pass_but_never_override_or_smuggle() {
        let inherited = env_of(&[
            ("EDITOR", "vim"),
            ("HOME", "/home/operator"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("PIPELOCK_CONTAINMENT_CONFIG", "/tmp/evil.toml"),
            ("GITHUB_TOKEN", "ghp_x"),
        ]);
        let config = config_with(
            &["claude"],
            &[
                "EDITOR",
                "HOME",
                "LD_PRELOAD",
                "PIPELOCK_CONTAINMENT_CONFIG",
            ],
        );
        let env = build_env(&config, &agent(), inherited);
        assert_eq!(env.get(OsStr::new("EDITOR")), Some(&OsString::from("vim")));
        assert_eq!(
            env.get(OsStr::new("HOME")),
            Some(&OsString::from("/var/lib/cc-agent"))
        );
        for absent in ["LD_PRELOAD", "PIPELOCK_CONTAINMENT_CONFIG", "GITHUB_TOKEN"] {
            assert!(!env.contains_key(OsStr::new(absent)), "{absent} passed");
        }
        assert_eq!(
            passthrough_names(&config),
            ["TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_*", "EDITOR"]
        );
    }

    #[test]
    fn config_refuses_passthrough_that_would_undo_containment() {
        let shipped = crate::config::DEFAULT_CONFIG_TOML;
        for name in [
            "LD_PRELOAD",
            "HTTPS_PROXY",
            "PIPELOCK_CONTAINMENT_CONFIG",
            "SUDO_USER",
        ] {
            let text = shipped.replace(
                "env_passthrough = []",
                &format!("env_passthrough = [\"{name}\"]"),
            );
            let err = Config::parse(&text, "t").unwrap_err();
            assert_eq!(err.key.as_deref(), Some("tools.env_passthrough"), "{name}");
        }
        let text = shipped.replace("env_passthrough = []", "env_passthrough = [\"EDITOR\"]");
        assert!(Config::parse(&text, "t").is_ok());
    }

    #[test]
    fn ipv6_proxy_url_has_brackets() {
        assert_eq!(proxy_url("::1".parse().unwrap(), 8888), "http://[::1]:8888");
        assert_eq!(
            proxy_url("127.0.0.2".parse().unwrap(), 3128),
            "http://127.0.0.2:3128"
        );
    }

    #[test]
    fn allow_list() {
        let config = config_with(&["claude", "codex", "/opt/gem/bin/gemini"], &[]);
        assert_eq!(
            select_tool(&config, "claude"),
            Ok(ToolTarget::Search("claude".into()))
        );
        assert_eq!(
            select_tool(&config, "gemini"),
            Ok(ToolTarget::Path("/opt/gem/bin/gemini".into()))
        );
        assert_eq!(
            select_tool(&config, "/opt/gem/bin/gemini"),
            Ok(ToolTarget::Path("/opt/gem/bin/gemini".into()))
        );
        let refused = select_tool(&config, "bash").unwrap_err();
        assert_eq!(refused, Refusal::NotAllowed("bash".into()));
        assert_eq!(refused.exit_code(), EXIT_NOT_ALLOWED);
        assert!(refused
            .to_string()
            .contains("pipelock-containment tools add bash"));
        assert_eq!(select_tool(&config, ""), Err(Refusal::Usage));
    }

    #[test]
    fn names_with_slashes_or_odd_characters_are_refused() {
        let config = config_with(&["claude", "/opt/gem/bin/gemini"], &[]);
        for bad in [
            "/usr/bin/claude",
            "./claude",
            "bin/claude",
            "../claude",
            "/opt/gem/bin/../bin/gemini",
            "/opt/gem/bin//gemini",
            "claude;id",
            "claude ",
            "-claude",
            ".claude",
            "clau\nde",
            "$(id)",
        ] {
            let refused = select_tool(&config, bad).unwrap_err();
            assert_eq!(refused, Refusal::BadName(bad.into()), "{bad:?}");
            assert_eq!(refused.exit_code(), EXIT_NOT_ALLOWED);
        }
    }

    #[test]
    fn path_search_skips_the_wrapper_dir_and_keeps_order() {
        let dirs = agent_path(Utf8Path::new("/var/lib/cc-agent"));
        assert!(!dirs.iter().any(|dir| is_in_wrapper_dir(dir)));
        let found = find_in_path("claude", &dirs, |p| {
            p == "/usr/bin/claude" || p == "/var/lib/cc-agent/.local/bin/claude"
        });
        assert_eq!(
            found.as_deref(),
            Some(Utf8Path::new("/var/lib/cc-agent/.local/bin/claude"))
        );
        let with_wrappers = [
            Utf8PathBuf::from(paths::WRAPPER_DIR),
            Utf8PathBuf::from("/usr/bin"),
        ];
        assert_eq!(
            find_in_path("claude", &with_wrappers, |_| true).as_deref(),
            Some(Utf8Path::new("/usr/bin/claude"))
        );
        assert_eq!(find_in_path("claude", &dirs, |_| false), None);
        assert!(is_in_wrapper_dir(Utf8Path::new(
            "/var/lib/pipelock-containment/wrappers/claude"
        )));
        assert!(!is_in_wrapper_dir(Utf8Path::new(
            "/var/lib/pipelock-containment/wrappers2/claude"
        )));
    }

    #[test]
    fn refusals_have_their_own_exit_codes_and_name_the_fix() {
        let rule = Refusal::RuleNotInForce("x".into());
        assert_eq!(rule.exit_code(), EXIT_NOT_CONTAINED);
        assert!(rule
            .to_string()
            .contains("systemctl start pipelock-containment"));
        let proxy = Refusal::ProxyDown {
            address: "127.0.0.1:8888".into(),
            reason: "refused".into(),
        };
        assert_eq!(proxy.exit_code(), EXIT_NOT_CONTAINED);
        assert!(proxy.to_string().contains("systemctl start pipelock-proxy"));
        let cwd = Refusal::Cwd {
            dir: "/home/op/src".into(),
            reason: "permission denied".into(),
        };
        assert!(cwd
            .to_string()
            .contains("pipelock-containment grant /home/op/src"));
        let not_found = Refusal::NotFound {
            tool: "claude".into(),
            searched: vec!["/usr/bin".into()],
        };
        assert_eq!(not_found.exit_code(), EXIT_NOT_FOUND);
    }
}
