//! Contained sessions on the host: `cc-launch` (the operator), `launch-session` (root, through
//! sudo: starts the transient unit), `session-init` (the agent, inside the unit: the bridge, then
//! the tool), and listing and stopping sessions. The sandbox itself is `pipelock_policy::session`.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio as ProcessStdio};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{Gid, Group, Uid, User};

use crate::bridge;
use pipelock_policy::config::{Config, DEFAULT_CONFIG_PATH};
use pipelock_policy::exit;
use pipelock_policy::facts::Account;
use pipelock_policy::grants::GrantRecord;
use pipelock_policy::launch::{self, Refusal};
use pipelock_policy::session::{self, SessionSpec, Stdio};

/// The message and exit code of a refused launch, printed as `cc-launch: ...`.
fn refuse(refusal: &Refusal) -> i32 {
    eprintln!("cc-launch: {refusal}");
    refusal.exit_code()
}

fn read_config() -> Result<Config, i32> {
    crate::fs::read_config(camino::Utf8Path::new(DEFAULT_CONFIG_PATH)).map_err(|err| {
        eprintln!("cc-launch: {err:#}");
        exit::CONFIG
    })
}

fn usage(config: Option<&Config>) -> String {
    let tools = config
        .map(|c| c.tools.wrap.join(", "))
        .unwrap_or_else(|| "see tools.wrap".into());
    format!("usage: cc-launch TOOL [ARGS...]   (allowed tools: {tools})")
}

/// Whether the calling process is in `group_name` (supplementary or primary group).
fn caller_in_group(group_name: &str) -> bool {
    let Ok(Some(group)) = Group::from_name(group_name) else {
        return false;
    };
    nix::unistd::getgroups().is_ok_and(|groups| groups.contains(&group.gid))
        || Gid::current() == group.gid
}

/// `cc-launch TOOL [ARGS...]`, as the operator: refuse non-members before anything starts,
/// then exec exactly the command the sudoers drop-in grants.
pub fn cc_launch_main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let config = read_config();
    match args.first().and_then(|a| a.to_str()) {
        Some("-h" | "--help") => {
            println!("{}", usage(config.as_ref().ok()));
            return exit::OK;
        }
        None => {
            eprintln!("{}", usage(config.as_ref().ok()));
            return exit::USAGE;
        }
        Some(_) => {}
    }
    let config = match config {
        Ok(config) => config,
        Err(code) => return code,
    };
    if !Uid::current().is_root() && !caller_in_group(&config.users.operators_group) {
        let who = User::from_uid(Uid::current())
            .ok()
            .flatten()
            .map_or_else(|| Uid::current().to_string(), |u| u.name);
        eprintln!(
            "cc-launch: refused: {who} is not a member of the group {group}, which may start \
             agents. An administrator can add you with `usermod -aG {group} USER` (it takes \
             effect at your next login).",
            group = config.users.operators_group
        );
        return exit::NEED_ROOT;
    }
    let err = Command::new("/usr/bin/sudo")
        .arg("-n")
        .arg(session::LAUNCH_SESSION)
        .args(&args)
        .exec();
    eprintln!("cc-launch: cannot run /usr/bin/sudo: {err}");
    exit::FAILURE
}

/// The operator who ran sudo: SUDO_UID, which sudo sets and the sudoers `env_reset` keeps.
fn sudo_operator(config: &Config) -> Result<(String, u32), Refusal> {
    let uid: u32 = std::env::var("SUDO_UID")
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Refusal::BadName("launch-session is started by cc-launch through sudo".into())
        })?;
    let user = User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .ok_or_else(|| Refusal::BadName(format!("the sudo caller UID {uid} is unknown")))?;
    let member = Group::from_name(&config.users.operators_group)
        .ok()
        .flatten()
        .zip(CString::new(user.name.clone()).ok())
        .is_some_and(|(group, name)| {
            nix::unistd::getgrouplist(&name, user.gid).is_ok_and(|g| g.contains(&group.gid))
        });
    if !member && uid != 0 {
        return Err(Refusal::BadName(format!(
            "{} is not a member of {}",
            user.name, config.users.operators_group
        )));
    }
    Ok((user.name, uid))
}

/// What a session cannot do without, checked before anything starts (fail closed).
fn check_platform() -> Result<(), Refusal> {
    let missing = |what: &str| Err(Refusal::NotContained(what.to_string()));
    if !Utf8Path::new("/run/systemd/system").is_dir() {
        return missing(
            "systemd is not running as PID 1 (no /run/systemd/system): sessions are systemd units",
        );
    }
    if !Utf8Path::new("/proc/self/ns/net").exists() {
        return missing("the kernel has no network namespaces (CONFIG_NET_NS)");
    }
    let limit = std::fs::read_to_string("/proc/sys/user/max_net_namespaces")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if limit == Some(0) {
        return missing("network namespaces are disabled (user.max_net_namespaces = 0)");
    }
    match std::os::unix::net::UnixStream::connect(session::BRIDGE_SOCKET) {
        Ok(_) => Ok(()),
        Err(err) => missing(&format!(
            "the proxy bridge {} does not answer ({err}): `systemctl start {}`",
            session::BRIDGE_SOCKET,
            session::BRIDGE_SOCKET_UNIT
        )),
    }
}

/// The active grants from the records file (none when it does not exist).
fn active_grants(config: &Config) -> Vec<GrantRecord> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match crate::fs::read_grant_records(&config.grants.records) {
        Ok(records) => records
            .grants
            .into_iter()
            .filter(|g| g.expires_at.is_none_or(|t| t > now))
            .collect(),
        Err(err) => {
            eprintln!("cc-launch: warning: {err:#}: no grant is bound into the session");
            Vec::new()
        }
    }
}

/// Whether the agent can enter and read `dir`: asked as the agent, in a forked child (the
/// kernel's answer, ACLs included; root's own access() would always say yes).
fn agent_can_use(dir: &Utf8Path, agent: &Account) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let path = CString::new(dir.as_str()).map_err(|_| "the path holds a NUL byte".to_string())?;
    let (uid, gid) = (Uid::from_raw(agent.uid), Gid::from_raw(agent.gid));
    // SAFETY: launch-session has one thread here; the child only makes async-signal-safe
    // calls (set*id, access, _exit).
    match unsafe { fork() }.map_err(|err| format!("cannot fork: {err}"))? {
        ForkResult::Child => {
            let ok = nix::unistd::setgroups(&[gid]).is_ok()
                && nix::unistd::setgid(gid).is_ok()
                && nix::unistd::setuid(uid).is_ok()
                && nix::unistd::access(
                    path.as_c_str(),
                    nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK,
                )
                .is_ok();
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(_) => Err("permission denied for the agent".into()),
            Err(err) => Err(format!("cannot check access: {err}")),
        },
    }
}

fn is_tty_or_socket(fd: i32) -> bool {
    // SAFETY: 0-2 are open for the life of the process (sudo and the shell opened them).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if nix::unistd::isatty(borrowed.as_raw_fd()).unwrap_or(false) {
        return true;
    }
    fstat(borrowed.as_raw_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false)
}

pub(crate) fn random_id() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(bytes)
}

/// `launch-session TOOL [ARGS...]`, as root through sudo: check everything, then start the
/// session unit with `systemd-run` and return its exit code.
pub fn launch_session_main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == session::REMOVE_PLACEHOLDERS)
    {
        return remove_placeholders(&args[1..]);
    }
    let config = match read_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match prepare_session(&config, &args) {
        Ok((run_args, stdio)) => run_systemd(run_args, stdio),
        Err(refusal) => refuse(&refusal),
    }
}

fn prepare_session(config: &Config, args: &[OsString]) -> Result<(Vec<String>, Stdio), Refusal> {
    if !Uid::effective().is_root() {
        return Err(Refusal::BadName(
            "launch-session runs as root through sudo: use cc-launch".into(),
        ));
    }
    let Some(tool) = args.first() else {
        return Err(Refusal::Usage);
    };
    let tool = tool
        .to_str()
        .ok_or_else(|| Refusal::BadName(tool.to_string_lossy().into_owned()))?;
    let tool_args: Vec<String> = args[1..]
        .iter()
        .map(|a| {
            a.to_str()
                .map(String::from)
                .ok_or_else(|| Refusal::BadName(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    launch::select_tool(config, tool)?;
    let (operator, _uid) = sudo_operator(config)?;
    check_platform()?;
    let agent = crate::facts::lookup_account(&config.users.agent)
        .ok()
        .flatten()
        .ok_or_else(|| {
            Refusal::NotContained(format!(
                "the agent user {:?} does not exist (run `pipelock-containment apply`)",
                config.users.agent
            ))
        })?;
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
        .ok_or_else(|| Refusal::Cwd {
            dir: ".".into(),
            reason: "the current directory is gone or not UTF-8".into(),
        })?;
    let grants = active_grants(config);
    if !session::visible_in_session(&cwd, &agent.home, &grants) {
        return Err(Refusal::Cwd {
            dir: cwd.to_string(),
            reason: "it is not inside a grant, so the session cannot see it".into(),
        });
    }
    agent_can_use(&cwd, &agent).map_err(|reason| Refusal::Cwd {
        dir: cwd.to_string(),
        reason,
    })?;
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let env: BTreeMap<String, String> = launch::build_env(config, &agent, inherited)
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let protected = session::protected_paths(&grants, &config.session.protected_names, |p| {
        std::fs::symlink_metadata(p).is_ok()
    });
    create_placeholders(&protected, &grants)?;
    let on_terminal =
        nix::unistd::isatty(0).unwrap_or(false) && nix::unistd::isatty(1).unwrap_or(false);
    let stdio = if on_terminal { Stdio::Pty } else { Stdio::Pipe };
    let unit = session::unit_name(random_id());
    let run_args = session::systemd_run_args(&SessionSpec {
        config,
        agent: &agent,
        operator: &operator,
        unit: &unit,
        tool,
        args: &tool_args,
        cwd: &cwd,
        grants: &grants,
        env: &env,
        stdio,
        protected: &protected,
    });
    Ok((run_args, stdio))
}

/// Create the missing protected names empty, owned like their grant's root, so the session can
/// mount them read-only.
fn create_placeholders(
    protected: &[session::Protected],
    grants: &[GrantRecord],
) -> Result<(), Refusal> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    for p in protected {
        let Some(kind) = p.placeholder else { continue };
        let Some(grant) = grants.iter().find(|g| p.path.starts_with(&g.path)) else {
            continue;
        };
        let owner = std::fs::metadata(&grant.path).map_err(|err| Refusal::Cwd {
            dir: grant.path.to_string(),
            reason: err.to_string(),
        })?;
        let made = match kind {
            session::PlaceholderKind::Dir => std::fs::DirBuilder::new().mode(0o755).create(&p.path),
            session::PlaceholderKind::File => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&p.path)
                .map(drop),
        };
        match made {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(Refusal::NotContained(format!(
                    "cannot create the protected placeholder {}: {err}",
                    p.path
                )))
            }
        }
        let _ = std::os::unix::fs::lchown(&p.path, Some(owner.uid()), Some(owner.gid()));
    }
    Ok(())
}

/// `launch-session --remove-placeholders PATH...`: the session's stop, run by systemd as root.
/// Removes each placeholder that is still empty; never follows a symlink.
fn remove_placeholders(paths: &[OsString]) -> i32 {
    if std::env::var_os("SUDO_UID").is_some() || !Uid::effective().is_root() {
        eprintln!(
            "launch-session: {} is for the session's stop only",
            session::REMOVE_PLACEHOLDERS
        );
        return exit::USAGE;
    }
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let result = if meta.is_dir() {
            std::fs::remove_dir(path)
        } else if meta.is_file() && meta.len() == 0 {
            std::fs::remove_file(path)
        } else {
            Ok(())
        };
        if let Err(err) = result {
            if err.raw_os_error() != Some(nix::libc::ENOTEMPTY) {
                eprintln!(
                    "launch-session: keeping {}: {err}",
                    Utf8Path::new(&path.to_string_lossy())
                );
            }
        }
    }
    exit::OK
}

/// Start `systemd-run`. With a pty, or with plain files and pipes, it is exec'd. A terminal or a
/// socket on 0-2 in pipe mode is never handed to the agent: pipes stand in, and bytes are relayed.
fn run_systemd(args: Vec<String>, stdio: Stdio) -> i32 {
    let mut command = Command::new("systemd-run");
    command.args(&args);
    let relay: Vec<i32> = match stdio {
        Stdio::Pty => Vec::new(),
        Stdio::Pipe => (0..3).filter(|fd| is_tty_or_socket(*fd)).collect(),
    };
    if relay.is_empty() {
        let err = command.exec();
        eprintln!("cc-launch: cannot run systemd-run: {err}");
        return exit::FAILURE;
    }
    for fd in &relay {
        match fd {
            0 => command.stdin(ProcessStdio::piped()),
            1 => command.stdout(ProcessStdio::piped()),
            _ => command.stderr(ProcessStdio::piped()),
        };
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("cc-launch: cannot run systemd-run: {err}");
            return exit::FAILURE;
        }
    };
    let mut threads = Vec::new();
    if let Some(mut stdin) = child.stdin.take() {
        // Not joined: it may block reading the terminal after the session ended. A plain
        // read/write loop: io::copy would splice, holding the pipe while the source blocks, and
        // systemd-run could not close its end and exit.
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut input = io::stdin().lock();
            while let Ok(n) = input.read(&mut buffer) {
                if n == 0 || stdin.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
    }
    if let Some(mut out) = child.stdout.take() {
        threads.push(std::thread::spawn(move || {
            let _ = io::copy(&mut out, &mut io::stdout().lock());
            let _ = io::stdout().flush();
        }));
    }
    if let Some(mut err) = child.stderr.take() {
        threads.push(std::thread::spawn(move || {
            let _ = io::copy(&mut err, &mut io::stderr().lock());
        }));
    }
    let status = child.wait();
    for thread in threads {
        let _ = thread.join();
    }
    match status {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(err) => {
            eprintln!("cc-launch: waiting for systemd-run: {err}");
            exit::FAILURE
        }
    }
}

/// The session's network namespace must hold nothing but loopback. /proc/self/net is this
/// process's namespace (/sys/class/net would show the namespace /sys was mounted in).
fn check_private_network() -> Result<(), Refusal> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").map_err(|err| {
        Refusal::NotContained(format!("cannot list the network interfaces: {err}"))
    })?;
    let others: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next().map(|name| name.trim().to_string()))
        .filter(|name| name != "lo")
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(Refusal::NotContained(format!(
            "the session has network interfaces besides loopback ({}): it is not in a \
             network namespace of its own",
            others.join(", ")
        )))
    }
}

/// `session-init TOOL [ARGS...]`, as the agent inside the unit: prove the namespace is private,
/// start the in-session bridge, run the tool, and return its exit status.
pub fn session_init_main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let Some(tool) = args.next().and_then(|t| t.into_string().ok()) else {
        return refuse(&Refusal::Usage);
    };
    let rest: Vec<OsString> = args.collect();
    let config = match read_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let program = match prepare_init(&config, &tool) {
        Ok(program) => program,
        Err(refusal) => return refuse(&refusal),
    };
    // Ctrl-C and friends reach the whole foreground group; only the tool acts on them.
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGQUIT,
        nix::sys::signal::Signal::SIGTSTP,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn);
        }
    }
    let mut command = Command::new(program.as_std_path());
    command.arg0(&tool).args(&rest);
    // SAFETY: only async-signal-safe calls between fork and exec (signal dispositions).
    unsafe {
        command.pre_exec(|| {
            for signal in [
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::Signal::SIGQUIT,
                nix::sys::signal::Signal::SIGTSTP,
            ] {
                let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl);
            }
            Ok(())
        });
    }
    match command.status() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(err) => {
            eprintln!("cc-launch: cannot run {program}: {err}");
            launch::EXIT_NOT_FOUND
        }
    }
}

fn prepare_init(config: &Config, tool: &str) -> Result<Utf8PathBuf, Refusal> {
    let agent = crate::launch::current_agent(config)?;
    let target = launch::select_tool(config, tool)?;
    let program = crate::launch::locate(&target, &agent)?;
    check_private_network()?;
    for port in session::bridged_ports(config) {
        let listeners = bridge::listen_in_session(port).map_err(|err| {
            Refusal::NotContained(format!("the in-session bridge cannot start: {err}"))
        })?;
        for listener in listeners {
            bridge::serve_in_session(listener, port);
        }
    }
    for port in &config.session.publish_ports {
        if let Err(err) = bridge::publish_from_session(*port) {
            eprintln!("cc-launch: warning: port {port} is not published on this host: {err}");
        }
    }
    Ok(program)
}

/// `pipelock-agent-*` units systemd knows, with their properties.
pub fn list_sessions() -> Result<Vec<session::Session>> {
    let out = crate::process::run_ok(
        "systemctl",
        &[
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "--type=service",
            &format!("{}*", session::UNIT_PREFIX),
        ],
    )?;
    let units: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| session::is_session_unit(u))
        .map(String::from)
        .collect();
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["show", "-p", session::SHOW_PROPERTIES];
    args.extend(units.iter().map(String::as_str));
    let out = crate::process::run_ok("systemctl", &args)?;
    let mut sessions = session::parse_show(&String::from_utf8_lossy(&out.stdout));
    let listeners: Vec<pipelock_policy::verify::Listener> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| pipelock_policy::verify::parse_proc_net_tcp(&text))
        .collect();
    for s in &mut sessions {
        if s.tasks.is_none() {
            s.tasks = count_cgroup_tasks(&s.control_group);
        }
        if let Some(pid) = s.main_pid {
            s.published = published_ports(pid, &listeners);
        }
    }
    Ok(sessions)
}

/// Host loopback ports whose listening socket the session's first process holds.
fn published_ports(pid: u32, listeners: &[pipelock_policy::verify::Listener]) -> Vec<u16> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<u64> = entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut ports: Vec<u16> = listeners
        .iter()
        .filter(|l| l.addr.ip().is_loopback() && inodes.contains(&l.inode))
        .map(|l| l.addr.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Where systemd does not account tasks (a cgroup v1 host), count the cgroup's tasks.
fn count_cgroup_tasks(cgroup: &str) -> Option<u64> {
    if cgroup.is_empty() {
        return None;
    }
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/systemd",
    ]
    .iter()
    .find_map(|root| {
        std::fs::read_to_string(format!("{root}{cgroup}/tasks"))
            .ok()
            .or_else(|| std::fs::read_to_string(format!("{root}{cgroup}/cgroup.threads")).ok())
    })
    .map(|text| text.lines().count() as u64)
}

/// Stop session units: every process in their cgroups ends (SIGTERM, then SIGKILL after
/// TimeoutStopSec), fork loops included, because systemd kills the cgroup, not a PID list.
pub fn stop_units(units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    for unit in units {
        if !session::is_session_unit(unit) && unit != session::AGENTS_SLICE {
            bail!("{unit} is not a session unit (see `pipelock-containment sessions`)");
        }
    }
    let mut args = vec!["stop"];
    args.extend(units.iter().map(String::as_str));
    crate::process::run_ok("systemctl", &args)
        .map(drop)
        .context("stopping sessions")
}

/// Stop the sessions that use `path` (a grant being revoked); returns their units.
pub fn stop_sessions_using(path: &Utf8Path) -> Result<Vec<String>> {
    if !Utf8Path::new("/run/systemd/system").is_dir() {
        return Ok(Vec::new());
    }
    let sessions = list_sessions()?;
    let units: Vec<String> = session::sessions_using(&sessions, path)
        .into_iter()
        .map(|s| s.unit.clone())
        .collect();
    stop_units(&units).map_err(|err| anyhow!("{err:#}"))?;
    Ok(units)
}
