//! agent-exec's host side: runs as the agent user after sudo, proves containment with live probes, then execs the tool.
//!
//! Everything here is on the launch hot path: one small config file read, a user database
//! lookup, a handful of loopback socket calls, then `execve`. The policy (allow-list, PATH,
//! environment) lives in `crate::launch`.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::{access, AccessFlags, Uid, User};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::exit;
use crate::facts::Account;
use crate::launch::{self, Refusal, ToolTarget};

/// The variable that points agent-exec at another config file, for tests. Honoured only when
/// agent-exec was not started by sudo (see `config_path`).
pub const CONFIG_ENV: &str = "PIPELOCK_CONTAINMENT_CONFIG";

/// How long a blocked TCP connect may take before it counts as dropped (policy "drop").
const BLOCKED_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the proxy may take to accept a connection.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole of agent-exec: returns the exit code if it does not exec the tool.
pub fn agent_exec_main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let Some(tool) = args.next() else {
        return refuse(&Refusal::Usage);
    };
    let rest: Vec<OsString> = args.collect();
    let tool = match tool.into_string() {
        Ok(tool) => tool,
        Err(tool) => {
            return refuse(&Refusal::BadName(tool.to_string_lossy().into_owned()));
        }
    };
    if tool == "--help" || tool == "-h" {
        eprintln!(
            "agent-exec TOOL [ARGS...]: started by cc-launch through sudo, as the agent user. \
             Checks the allow-list and that containment is in force, then runs TOOL with a \
             clean environment."
        );
        return exit::OK;
    }

    let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let path = config_path(&inherited);
    let config = match std::fs::read_to_string(&path)
        .map_err(|err| format!("cannot read the config {path}: {err}"))
        .and_then(|text| Config::parse(&text, path.as_str()).map_err(|err| err.to_string()))
    {
        Ok(config) => config,
        Err(message) => {
            eprintln!("agent-exec: {message}");
            return exit::CONFIG;
        }
    };

    match prepare(&config, &tool, inherited) {
        Ok(launch) => {
            let err = std::process::Command::new(launch.program.as_std_path())
                .arg0(&tool)
                .args(&rest)
                .env_clear()
                .envs(launch.env)
                .exec();
            eprintln!("agent-exec: cannot run {}: {err}", launch.program);
            exit::FAILURE
        }
        Err(refusal) => refuse(&refusal),
    }
}

fn refuse(refusal: &Refusal) -> i32 {
    eprintln!("cc-launch: {refusal}");
    refusal.exit_code()
}

/// The config file: the packaged one, or `PIPELOCK_CONTAINMENT_CONFIG` when agent-exec was not
/// started by sudo.
///
/// Through sudo, the environment is reset and only the sudoers `env_keep` list passes, which
/// never includes `PIPELOCK_*` (config validation refuses it as a pass-through), and sudo
/// always sets `SUDO_UID`/`SUDO_USER`/`SUDO_COMMAND`: so an operator can never choose the file.
/// Without sudo, whoever runs agent-exec already is the agent (it refuses any other UID) or
/// root, and gains nothing by choosing the file: the probes test the live kernel either way.
pub fn config_path(inherited: &[(OsString, OsString)]) -> Utf8PathBuf {
    let get = |name: &str| {
        inherited
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    };
    let via_sudo = ["SUDO_UID", "SUDO_USER", "SUDO_COMMAND"]
        .iter()
        .any(|name| get(name).is_some());
    match get(CONFIG_ENV).and_then(|value| value.to_str()) {
        Some(path) if !via_sudo && path.starts_with('/') => path.into(),
        _ => DEFAULT_CONFIG_PATH.into(),
    }
}

/// What to exec.
pub struct Launch {
    pub program: Utf8PathBuf,
    pub env: std::collections::BTreeMap<OsString, OsString>,
}

/// Every check, in order from cheapest; nothing runs unless all pass.
pub fn prepare(
    config: &Config,
    tool: &str,
    inherited: Vec<(OsString, OsString)>,
) -> Result<Launch, Refusal> {
    let agent = current_agent(config)?;
    let target = launch::select_tool(config, tool)?;
    let program = locate(&target, &agent)?;
    check_cwd()?;
    prove_rule_in_force(config)?;
    prove_proxy_listening(config)?;
    Ok(Launch {
        program,
        env: launch::build_env(config, &agent, inherited),
    })
}

/// The running user, which must be the configured agent user (real and effective UID).
fn current_agent(config: &Config) -> Result<Account, Refusal> {
    let uid = Uid::current();
    let wrong = || Refusal::WrongUser {
        expected: config.users.agent.clone(),
        uid: uid.as_raw(),
    };
    if Uid::effective() != uid {
        return Err(wrong());
    }
    let user = User::from_uid(uid).ok().flatten().ok_or_else(wrong)?;
    if user.name != config.users.agent || uid.is_root() {
        return Err(wrong());
    }
    Ok(Account {
        name: user.name,
        uid: uid.as_raw(),
        gid: user.gid.as_raw(),
        home: Utf8PathBuf::from_path_buf(user.dir)
            .unwrap_or_else(|_| config.users.agent_home.clone()),
    })
}

fn is_executable_file(path: &Utf8Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
        && access(path.as_std_path(), AccessFlags::X_OK).is_ok()
}

/// Resolve the tool to a file the agent can execute, never one in the wrapper directory
/// (checked again on the canonical path, so a symlink into it does not count).
fn locate(target: &ToolTarget, agent: &Account) -> Result<Utf8PathBuf, Refusal> {
    let (name, found, searched) = match target {
        ToolTarget::Path(path) => (
            path.as_str(),
            Some(path.clone()).filter(|p| is_executable_file(p)),
            vec![path.parent().unwrap_or(path).to_owned()],
        ),
        ToolTarget::Search(name) => {
            let dirs = launch::agent_path(&agent.home);
            let found = launch::find_in_path(name, &dirs, |candidate| {
                is_executable_file(candidate) && !resolves_into_wrapper_dir(candidate)
            });
            (name.as_str(), found, dirs)
        }
    };
    match found {
        Some(program) if !resolves_into_wrapper_dir(&program) => Ok(program),
        _ => Err(Refusal::NotFound {
            tool: name.to_string(),
            searched,
        }),
    }
}

fn resolves_into_wrapper_dir(path: &Utf8Path) -> bool {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|real| Utf8PathBuf::from_path_buf(real).ok())
        .is_some_and(|real| launch::is_in_wrapper_dir(&real))
}

/// The agent must be able to enter and read the current directory, by its full path.
fn check_cwd() -> Result<(), Refusal> {
    let dir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(err) => {
            return Err(Refusal::Cwd {
                dir: ".".into(),
                reason: err.to_string(),
            })
        }
    };
    access(&dir, AccessFlags::R_OK | AccessFlags::X_OK).map_err(|errno| Refusal::Cwd {
        dir: dir.display().to_string(),
        reason: io::Error::from(errno).to_string(),
    })
}

/// Prove, as the agent, that the kernel rule is in force: (a) a UDP datagram to a loopback port
/// must fail with EPERM; (b) a TCP connect to a loopback listener agent-exec opens itself
/// (not the proxy's port) must be refused or dropped. Without the rule, both would succeed.
pub fn prove_rule_in_force(config: &Config) -> Result<(), Refusal> {
    let fail = |what: String| Err(Refusal::RuleNotInForce(what));
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));

    let receiver = UdpSocket::bind(loopback).map_err(|err| {
        Refusal::RuleNotInForce(format!("cannot open a loopback UDP socket: {err}"))
    })?;
    let target = receiver
        .local_addr()
        .map_err(|err| Refusal::RuleNotInForce(err.to_string()))?;
    let sender = UdpSocket::bind(loopback).map_err(|err| {
        Refusal::RuleNotInForce(format!("cannot open a loopback UDP socket: {err}"))
    })?;
    match sender.send_to(b"pipelock-containment probe", target) {
        Err(err) if err.raw_os_error() == Some(nix::libc::EPERM) => {}
        Err(err) => {
            return fail(format!(
                "a UDP probe to {target} failed with \"{err}\" instead of the rule's EPERM"
            ))
        }
        Ok(_) => return fail(format!("a UDP probe to {target} was sent")),
    }

    // A listener on a port the rule does not allow (the proxy's and the allowed ports are).
    let mut listener = None;
    for _ in 0..8 {
        let candidate = TcpListener::bind(loopback).map_err(|err| {
            Refusal::RuleNotInForce(format!("cannot open a loopback TCP listener: {err}"))
        })?;
        let port = candidate.local_addr().map(|a| a.port()).unwrap_or(0);
        if port != config.proxy.listen_port
            && !config.network.allowed_loopback_ports.contains(&port)
        {
            listener = Some(candidate);
            break;
        }
    }
    let Some(listener) = listener else {
        return fail("no loopback port free for the TCP probe".into());
    };
    let target = listener
        .local_addr()
        .map_err(|err| Refusal::RuleNotInForce(err.to_string()))?;
    match TcpStream::connect_timeout(&target, BLOCKED_CONNECT_TIMEOUT) {
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::TimedOut
            ) || err.raw_os_error() == Some(nix::libc::EPERM) =>
        {
            Ok(())
        }
        Err(err) => fail(format!(
            "a TCP probe to {target} failed with \"{err}\", not by the rule"
        )),
        Ok(_) => fail(format!(
            "a TCP probe to the loopback listener {target} connected"
        )),
    }
}

/// Prove the proxy accepts connections at its configured address.
pub fn prove_proxy_listening(config: &Config) -> Result<(), Refusal> {
    let address = SocketAddr::new(config.proxy.listen_address, config.proxy.listen_port);
    TcpStream::connect_timeout(&address, PROXY_CONNECT_TIMEOUT)
        .map(drop)
        .map_err(|err| Refusal::ProxyDown {
            address: address.to_string(),
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn config_override_is_ignored_under_sudo() {
        let plain = env_of(&[(CONFIG_ENV, "/tmp/test.toml")]);
        assert_eq!(config_path(&plain), "/tmp/test.toml");
        for sudo_var in ["SUDO_UID", "SUDO_USER", "SUDO_COMMAND"] {
            let via_sudo = env_of(&[(CONFIG_ENV, "/tmp/test.toml"), (sudo_var, "x")]);
            assert_eq!(config_path(&via_sudo), DEFAULT_CONFIG_PATH);
        }
        assert_eq!(
            config_path(&env_of(&[(CONFIG_ENV, "relative.toml")])),
            DEFAULT_CONFIG_PATH
        );
        assert_eq!(config_path(&[]), DEFAULT_CONFIG_PATH);
    }
}
