//! Gathers the observations `verify`, `status` and `metrics` judge: nft listings, files, units, sockets, probes run as the agent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;

use crate::facts::{gather, lookup_account, AssumedUids};
use pipelock_policy::config::Config;
use pipelock_policy::facts::{Account, Facts, LoginUidRange};
use pipelock_policy::paths;
use pipelock_policy::render::{render_all, FileKind, RenderedFile};
use pipelock_policy::verify::{
    parse_proc_net_tcp, Access, AgentAttempts, Attempt, CaBundleObs, CaKeyObs, FetchObs, FileState,
    GeneratedFileObs, NetOutcome, Observations, ProxyObs, SessionView, SessionsObs, SudoersObs,
    TableObs, UnitObs, UsersObs, WatcherObs, WrappersObs,
};
use pipelock_policy::verify::{DbusObs, SchedulerObs, SshdObs, WaysInObs};

/// The boot unit that loads the table.
pub const BOOT_UNIT: &str = "pipelock-containment.service";
/// The proxy's unit.
pub const PROXY_UNIT: &str = "pipelock-proxy.service";

/// A documentation address (TEST-NET-1 / 2001:db8::/32): egress probes aim here, never at a real host.
const TEST_NET_V4: &str = "192.0.2.1";
const TEST_NET_V6: &str = "2001:db8::1";

/// What to gather.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// URL for the fetch probes (agent via proxy, operator direct).
    pub url: Option<String>,
    /// Run the probes that act as the agent (network attempts, file access).
    pub agent_probes: bool,
}

/// The host's name, for the report.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// True when systemd is the running init (not a chroot or a plain container).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Gather everything the probes judge. Never fails: what cannot be observed is recorded as such.
pub fn observe(config: &Config, options: &Options) -> Observations {
    let agent = lookup_account(&config.users.agent).ok().flatten();
    // Before the agent probes below start processes of the agent outside any session.
    let sessions = observe_sessions(agent.as_ref().map(|a| a.uid));
    let proxy = lookup_account(&config.users.proxy).ok().flatten();
    let login_range = std::fs::read_to_string("/etc/login.defs")
        .map(|text| LoginUidRange::from_login_defs(&text))
        .unwrap_or_default();
    let rendered: Result<Vec<RenderedFile>, String> = gather(config, AssumedUids::default())
        .and_then(|facts: Facts| render_all(config, &facts))
        .map_err(|err| format!("{err:#}"));
    let rendered_of = |kind: FileKind| -> Option<String> {
        rendered
            .as_ref()
            .ok()
            .and_then(|files| files.iter().find(|f| f.kind == kind))
            .map(|f| f.contents.clone())
    };

    let table = TableObs {
        loaded: list_loaded_table(),
        expected: match &rendered {
            Err(err) => Err(err.clone()),
            Ok(_) => normalize_through_nft(&rendered_of(FileKind::NftRules).unwrap_or_default()),
        },
    };
    let systemd = systemd_running();
    let sudoers_state = file_state(Path::new(paths::SUDOERS_DROPIN), true);
    let visudo = match sudoers_state {
        Some(_) => visudo_check(Path::new(paths::SUDOERS_DROPIN)),
        None => Some(Ok(())),
    };

    let mut expected_wrappers = BTreeMap::new();
    if let Ok(files) = &rendered {
        for file in files {
            if file.path.starts_with(paths::WRAPPER_DIR) {
                expected_wrappers.insert(file.path.to_string(), (file.mode, file.contents.clone()));
            }
        }
    }
    let mut found_wrappers = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(paths::WRAPPER_DIR) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(state) = file_state(&path, true) {
                found_wrappers.insert(path.to_string_lossy().into_owned(), state);
            }
        }
    }

    let bundle_path = config.ca.combined_bundle.to_string();
    let key_path = config.ca.proxy_ca_key.to_string();

    // Probes as the agent: one setpriv run for all of them.
    let (egress, loopback, dns, bundle_access, key_access) = if options.agent_probes {
        agent_probes(config, agent.as_ref(), &bundle_path, &key_path)
    } else {
        let not_run: AgentAttempts = Err("not run".into());
        let unknown = Access::Unknown("not run".into());
        (
            not_run.clone(),
            not_run.clone(),
            not_run,
            unknown.clone(),
            unknown,
        )
    };

    let (agent_via_proxy, operator_direct) = match &options.url {
        None => (FetchObs::NoUrl, FetchObs::NoUrl),
        Some(url) => (
            match &agent {
                Some(agent) if options.agent_probes => fetch(config, url, Some(agent)),
                _ => FetchObs::CannotRun("the agent user does not exist".into()),
            },
            fetch(config, url, None),
        ),
    };

    Observations {
        users: UsersObs {
            agent_name: config.users.agent.clone(),
            proxy_name: config.users.proxy.clone(),
            agent: agent.clone(),
            proxy,
            login_range,
            agent_shadow: std::fs::read_to_string("/etc/shadow")
                .ok()
                .and_then(|text| {
                    pipelock_policy::facts::shadow_state(
                        &text,
                        &config.users.agent,
                        crate::facts::days_since_epoch(),
                    )
                }),
            agent_shell: nix::unistd::User::from_name(&config.users.agent)
                .ok()
                .flatten()
                .map(|u| u.shell.to_string_lossy().into_owned()),
        },
        table,
        rule_file: GeneratedFileObs {
            path: paths::RULE_FILE.into(),
            state: file_state(Path::new(paths::RULE_FILE), true),
            expected: rendered_of(FileKind::NftRules),
        },
        boot_unit: UnitObs {
            systemd_running: systemd,
            enabled: systemctl(&["is-enabled", BOOT_UNIT]),
            active: systemctl(&["is-active", BOOT_UNIT]),
        },
        proxy: ProxyObs {
            systemd_running: systemd,
            active: systemctl(&["is-active", PROXY_UNIT]),
            unit_user: systemctl(&["show", "-p", "User", "--value", PROXY_UNIT]),
            listeners: listeners(),
        },
        sudoers: SudoersObs {
            file: GeneratedFileObs {
                path: paths::SUDOERS_DROPIN.into(),
                state: sudoers_state,
                expected: rendered_of(FileKind::Sudoers),
            },
            visudo,
        },
        wrappers: WrappersObs {
            expected: expected_wrappers,
            found: found_wrappers,
        },
        ca_bundle: CaBundleObs {
            bundle: file_state(Path::new(&bundle_path), true),
            bundle_path,
            agent_access: bundle_access,
            proxy_ca_path: config.ca.proxy_ca.to_string(),
            proxy_ca: std::fs::read_to_string(&config.ca.proxy_ca).ok(),
        },
        ca_key: CaKeyObs {
            key: file_state(Path::new(&key_path), false),
            key_path,
            agent_access: key_access,
        },
        agent_egress: egress,
        agent_via_proxy,
        operator_direct,
        agent_loopback: loopback,
        dns,
        sessions,
        watcher: WatcherObs {
            systemd_running: systemd,
            active: systemctl(&["is-active", pipelock_policy::watch::UNIT]),
            state: crate::watch::read_state(),
        },
        audit: pipelock_policy::verify::AuditObs {
            systemd_running: systemd,
            active: systemctl(&["is-active", pipelock_policy::audit::UNIT]),
            counters: crate::audit::read_counters(pipelock_policy::audit::COUNTERS_FILE.into()),
        },
        ways_in: observe_ways_in(config),
    }
}

/// sshd's effective config for the agent, the schedulers' lists, the packaged D-Bus policy.
fn observe_ways_in(config: &Config) -> WaysInObs {
    let agent = &config.users.agent;
    let sshd = if !Path::new("/usr/sbin/sshd").exists() {
        SshdObs::NotInstalled
    } else {
        let spec = format!("user={agent},host=verify.invalid,addr={TEST_NET_V4}");
        match run("/usr/sbin/sshd", &["-T", "-C", &spec]) {
            Ok(out) if out.status.success() => {
                SshdObs::Effective(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => SshdObs::Unreadable(
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("no message")
                    .to_string(),
            ),
            Err(err) => SshdObs::Unreadable(format!("{err:#}")),
        }
    };
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let schedulers = pipelock_policy::account::SCHEDULERS
        .iter()
        .map(|s| SchedulerObs {
            name: s.name,
            installed: crate::facts::scheduler_installed(s),
            allow_path: s.allow.into(),
            allow: read(s.allow),
            deny_path: s.deny.into(),
            deny: read(s.deny),
        })
        .collect();
    WaysInObs {
        sshd,
        schedulers,
        dbus: DbusObs {
            path: pipelock_policy::account::DBUS_POLICY.into(),
            found: read(pipelock_policy::account::DBUS_POLICY),
            expected: pipelock_policy::render::render_dbus_policy(config)
                .map_err(|e| format!("{e:#}")),
        },
    }
}

/// The agent's processes outside session units, and each session's namespace and limit.
fn observe_sessions(agent_uid: Option<u32>) -> SessionsObs {
    let systemd_running = systemd_running();
    let mut outside = Vec::new();
    for pid in agent_uid
        .map(crate::process::processes_of)
        .unwrap_or_default()
    {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !cgroup.contains(&format!("/{}/", pipelock_policy::session::AGENTS_SLICE)) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            outside.push((pid as u32, cmd));
        }
    }
    let mut sessions = Vec::new();
    if systemd_running {
        for s in crate::session::list_sessions().unwrap_or_default() {
            let Some(pid) = s.main_pid else { continue };
            let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
            let interfaces = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
                .collect();
            let route =
                std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap_or_default();
            let route6 =
                std::fs::read_to_string(format!("/proc/{pid}/net/ipv6_route")).unwrap_or_default();
            let routes_out = route
                .lines()
                .skip(1)
                .filter(|l| l.split_whitespace().next() != Some("lo"))
                .count()
                + route6
                    .lines()
                    .filter(|l| l.split_whitespace().last() != Some("lo"))
                    .count();
            sessions.push(SessionView {
                unit: s.unit,
                interfaces,
                routes_out,
                tasks_max: s.tasks_max,
            });
        }
    }
    SessionsObs {
        systemd_running,
        outside,
        sessions,
    }
}

fn file_state(path: &Path, read: bool) -> Option<FileState> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(FileState {
        mode: meta.permissions().mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        contents: if read {
            std::fs::read_to_string(path).ok()
        } else {
            None
        },
    })
}

fn run(program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// Connect to `address` every 50 ms until it accepts or `timeout` passes; how long it took.
pub fn wait_listening(address: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let start = std::time::Instant::now();
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
            Ok(_) => return Ok(start.elapsed()),
            Err(err) if start.elapsed() >= timeout => return Err(err.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `systemctl ARGS`: its first stdout line, or what went wrong.
pub fn systemctl(args: &[&str]) -> String {
    if !systemd_running() {
        return "unknown (systemd not running)".into();
    }
    match run("systemctl", args) {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() && !out.status.success() {
                "not-found".into()
            } else {
                line
            }
        }
        Err(err) => format!("unknown (systemctl: {err})"),
    }
}

/// `nft -s list table inet pipelock_containment`: Ok(None) when the table does not exist.
pub fn list_loaded_table() -> Result<Option<String>, String> {
    let table = format!("{} {}", paths::NFT_TABLE_FAMILY, paths::NFT_TABLE);
    let mut args = vec!["-s", "list", "table"];
    args.extend(table.split(' '));
    match run("nft", &args) {
        Err(err) => Err(format!("cannot run nft: {err}")),
        Ok(out) if out.status.success() => Ok(Some(String::from_utf8_lossy(&out.stdout).into())),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No such file or directory") {
                Ok(None)
            } else {
                Err(stderr.split_whitespace().collect::<Vec<_>>().join(" "))
            }
        }
    }
}

/// Load a rule file into a throwaway network namespace and list it back, so the expected text
/// comes from nft's own printer, exactly like the loaded table's.
pub fn normalize_through_nft(rules: &str) -> Result<String, String> {
    let script = format!(
        "nft -f /dev/stdin && exec nft -s list table {} {}",
        paths::NFT_TABLE_FAMILY,
        paths::NFT_TABLE
    );
    let mut child = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run unshare: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(rules.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|err| format!("unshare: {err}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into())
    } else {
        Err(format!(
            "loading the rendered rules into a scratch namespace failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ))
    }
}

/// `visudo -cf FILE`: None when visudo is not installed.
fn visudo_check(path: &Path) -> Option<Result<(), String>> {
    let path = path.to_string_lossy();
    match run("visudo", &["-cf", &path]) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => Some(Err(err.to_string())),
        Ok(out) if out.status.success() => Some(Ok(())),
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            Some(Err(text.split_whitespace().collect::<Vec<_>>().join(" ")))
        }
    }
}

/// Every listening TCP socket of this network namespace, with its owner.
pub fn listeners() -> Vec<pipelock_policy::verify::Listener> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| parse_proc_net_tcp(&text))
        .collect()
}

type AgentResults = (AgentAttempts, AgentAttempts, AgentAttempts, Access, Access);

/// Run every agent-side probe in one child process that runs as the agent.
fn agent_probes(config: &Config, agent: Option<&Account>, bundle: &str, key: &str) -> AgentResults {
    let fail = |err: String| -> AgentResults {
        (
            Err(err.clone()),
            Err(err.clone()),
            Err(err.clone()),
            Access::Unknown(err.clone()),
            Access::Unknown(err),
        )
    };
    let Some(agent) = agent else {
        return fail(format!(
            "the agent user {} does not exist",
            config.users.agent
        ));
    };
    // A listener the agent must not reach: stands for any local service (a database, ssh -D).
    // Never a port the agent may use: the proxy's or an allow-listed one.
    let mut listener = None;
    for _ in 0..8 {
        match TcpListener::bind("127.0.0.1:0") {
            Ok(candidate) => {
                let port = candidate.local_addr().map(|a| a.port()).unwrap_or(0);
                if port != config.proxy.listen_port
                    && !config.network.allowed_loopback_ports.contains(&port)
                {
                    listener = Some(candidate);
                    break;
                }
            }
            Err(err) => return fail(format!("cannot open a loopback test listener: {err}")),
        }
    }
    let Some(listener) = listener else {
        return fail("cannot find a loopback port outside the allow-list".into());
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let egress = [
        format!("udp:{TEST_NET_V4}:9"),
        format!("udp:[{TEST_NET_V6}]:9"),
    ];
    let loopback = [
        "udp:127.0.0.1:9".to_string(),
        format!("tcp:127.0.0.1:{port}"),
    ];
    let dns = [
        "udp:127.0.0.1:53".to_string(),
        format!("udp:{TEST_NET_V4}:53"),
    ];
    let files = [format!("read:{bundle}"), format!("read:{key}")];
    let specs: Vec<String> = egress
        .iter()
        .chain(&loopback)
        .chain(&dns)
        .chain(&files)
        .cloned()
        .collect();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return fail(format!("cannot find this program: {err}")),
    };
    let results = match run_as(agent, &exe, &specs) {
        Ok(results) => results,
        Err(err) => return fail(format!("{err:#}")),
    };
    drop(listener);
    let attempts = |group: &[String]| -> AgentAttempts {
        Ok(group
            .iter()
            .map(|spec| Attempt {
                target: spec.replacen(':', " ", 1),
                outcome: NetOutcome::from_word(
                    results
                        .get(spec)
                        .map(String::as_str)
                        .unwrap_or("error: no answer"),
                ),
            })
            .collect())
    };
    let access = |spec: &String| match results.get(spec).map(String::as_str) {
        Some("readable") => Access::Readable,
        Some("unreadable") => Access::Unreadable,
        Some("missing") => Access::Missing,
        other => Access::Unknown(other.unwrap_or("no answer").to_string()),
    };
    (
        attempts(&egress),
        attempts(&loopback),
        attempts(&dns),
        access(&files[0]),
        access(&files[1]),
    )
}

/// The setpriv prefix that runs a command as `account` with its own groups and an empty environment.
fn as_account(account: &Account) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .arg("--init-groups")
        .arg("--")
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir("/");
    command
}

/// Run `EXE agent-probe SPECS...` as the account; map each spec to the word it printed.
fn run_as(account: &Account, exe: &Path, specs: &[String]) -> Result<BTreeMap<String, String>> {
    let out = as_account(account)
        .arg(exe)
        .arg("agent-probe")
        .args(specs)
        .stdin(Stdio::null())
        .output()
        .context("running setpriv (util-linux)")?;
    if !out.status.success() {
        anyhow::bail!(
            "the probe as {} failed: {}",
            account.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(spec, word)| (spec.to_string(), word.to_string()))
        .collect())
}

/// The agent side of the probes: each spec is `udp:ADDR:PORT`, `tcp:ADDR:PORT` or `read:PATH`.
/// Prints `SPEC<TAB>WORD` per spec. Runs as whoever started it (verify starts it as the agent).
pub fn agent_probe(specs: &[String]) -> Vec<(String, String)> {
    specs
        .iter()
        .map(|spec| (spec.clone(), probe_one(spec)))
        .collect()
}

fn probe_one(spec: &str) -> String {
    let Some((kind, target)) = spec.split_once(':') else {
        return "error: bad probe spec".into();
    };
    if kind == "read" {
        return match std::fs::File::open(target).and_then(|mut f| f.read(&mut [0u8; 1])) {
            Ok(_) => "readable".into(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => "missing".into(),
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => "unreadable".into(),
            Err(err) => format!("error: {err}"),
        };
    }
    let Ok(addr) = target.parse::<SocketAddr>() else {
        return format!("error: bad address {target}");
    };
    let result = match kind {
        "udp" => {
            let bind = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            UdpSocket::bind(bind).and_then(|socket| {
                socket
                    .send_to(b"pipelock-containment verify probe", addr)
                    .map(|_| NetOutcome::Sent)
            })
        }
        "tcp" => {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(|_| NetOutcome::Connected)
        }
        _ => return "error: unknown probe kind".into(),
    };
    match result {
        Ok(outcome) => outcome.word(),
        Err(err) => classify(&err).word(),
    }
}

fn classify(err: &std::io::Error) -> NetOutcome {
    let errno = err.raw_os_error().map(Errno::from_raw);
    match errno {
        Some(Errno::EPERM | Errno::EACCES) => NetOutcome::Denied,
        Some(Errno::ECONNREFUSED) => NetOutcome::Refused,
        Some(
            Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EADDRNOTAVAIL | Errno::EAFNOSUPPORT,
        ) => NetOutcome::Unreachable,
        Some(Errno::ETIMEDOUT) => NetOutcome::TimedOut,
        _ if err.kind() == std::io::ErrorKind::TimedOut => NetOutcome::TimedOut,
        _ => NetOutcome::Error(err.to_string()),
    }
}

/// Fetch the URL with curl: as the agent through the proxy, or (account None) directly as the caller.
fn fetch(config: &Config, url: &str, agent: Option<&Account>) -> FetchObs {
    let proxy = SocketAddr::new(config.proxy.listen_address, config.proxy.listen_port);
    let mut command = match agent {
        Some(agent) => {
            let mut command = as_account(agent);
            command
                .arg("curl")
                .arg("--proxy")
                .arg(format!("http://{proxy}"));
            command
        }
        None => {
            let mut command = Command::new("curl");
            command.arg("--noproxy").arg("*");
            command
        }
    };
    command.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "15",
    ]);
    if config.ca.combined_bundle.exists() {
        command
            .arg("--cacert")
            .arg(config.ca.combined_bundle.as_str());
    }
    command.arg("--").arg(url).stdin(Stdio::null());
    match command.output() {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            FetchObs::CannotRun("curl (or setpriv) is not installed".into())
        }
        Err(err) => FetchObs::CannotRun(err.to_string()),
        Ok(out) => FetchObs::Done {
            url: url.to_string(),
            curl_exit: out.status.code().unwrap_or(-1),
            http_code: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        },
    }
}

/// The named counters of the loaded table: Ok(None) when it is not loaded.
pub fn counters() -> Result<Option<Vec<pipelock_policy::status::Counter>>, String> {
    let out = run(
        "nft",
        &[
            "-j",
            "list",
            "counters",
            "table",
            paths::NFT_TABLE_FAMILY,
            paths::NFT_TABLE,
        ],
    )
    .map_err(|err| format!("cannot run nft: {err}"))?;
    if out.status.success() {
        pipelock_policy::status::parse_counters_json(&String::from_utf8_lossy(&out.stdout))
            .map(Some)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(stderr.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    }
}

/// Units `status` shows.
pub const STATUS_UNITS: &[&str] = &[BOOT_UNIT, PROXY_UNIT, "pipelock-containment-metrics.timer"];

/// Gather the status screen. Drift comes from the same probes verify runs (without the agent probes).
pub fn status_view(config: &Config) -> pipelock_policy::status::StatusView {
    use pipelock_policy::status::{
        drifted, last_apply_from_manifest, Role, StatusView, Tool, Unit,
    };
    let observations = observe(config, &Options::default());
    let probes = pipelock_policy::verify::evaluate(config, &observations);
    let drift_checked = super::is_root();
    let drifted = if drift_checked {
        drifted(&probes)
    } else {
        Vec::new()
    };
    let (table_loaded, table_error, counters) = match counters() {
        Ok(Some(counters)) => (true, None, counters),
        Ok(None) => (false, None, Vec::new()),
        Err(err) => (false, Some(err), Vec::new()),
    };
    let group = nix::unistd::Group::from_name(&config.users.operators_group)
        .ok()
        .flatten();
    let manifest = Path::new(paths::STATE_DIR).join("manifest.json");
    let last_apply = std::fs::read_to_string(&manifest).ok().map(|text| {
        last_apply_from_manifest(&text).unwrap_or_else(|| {
            std::fs::metadata(&manifest)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| {
                    format!(
                        "{} (manifest modified)",
                        pipelock_policy::timefmt::rfc3339(d.as_secs() as i64)
                    )
                })
                .unwrap_or_else(|| "recorded, time unknown".into())
        })
    });
    StatusView {
        host: hostname(),
        roles: vec![
            Role {
                role: "agent".into(),
                name: config.users.agent.clone(),
                id: observations.users.agent.as_ref().map(|a| a.uid),
                members: vec![],
            },
            Role {
                role: "proxy".into(),
                name: config.users.proxy.clone(),
                id: observations.users.proxy.as_ref().map(|a| a.uid),
                members: vec![],
            },
            Role {
                role: "operators".into(),
                name: config.users.operators_group.clone(),
                id: group.as_ref().map(|g| g.gid.as_raw()),
                members: group.map(|g| g.mem).unwrap_or_default(),
            },
        ],
        table_loaded,
        table_error,
        counters,
        units: STATUS_UNITS
            .iter()
            .map(|unit| Unit {
                unit: unit.to_string(),
                enabled: systemctl(&["is-enabled", unit]),
                active: systemctl(&["is-active", unit]),
            })
            .collect(),
        last_apply,
        drift: !drifted.is_empty(),
        drifted,
        drift_checked,
        ca: probes
            .iter()
            .find(|p| p.name == "ca-bundle")
            .map(|p| format!("{} ({})", p.detail, p.status.label().to_lowercase()))
            .unwrap_or_default(),
        tools: config
            .tools
            .wrap
            .iter()
            .map(|tool| {
                let wrapper = format!(
                    "{}/{}",
                    paths::WRAPPER_DIR,
                    pipelock_policy::config::tool_command_name(tool)
                );
                Tool {
                    tool: tool.clone(),
                    wrapper_present: Path::new(&wrapper).is_file(),
                    wrapper,
                }
            })
            .collect(),
    }
}

/// Gather the metrics: the verify probes (as the agent, without URL) and the counters.
pub fn metrics_input(config: &Config) -> pipelock_policy::metrics::MetricsInput {
    let observations = observe(
        config,
        &Options {
            url: None,
            agent_probes: true,
        },
    );
    let probes = pipelock_policy::verify::evaluate(config, &observations);
    let counters = counters().ok().flatten();
    let value = |name: &str| {
        counters
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.name == name))
            .map(|c| (c.packets, c.bytes))
            .unwrap_or((0, 0))
    };
    let status = |name: &str| probes.iter().find(|p| p.name == name).map(|p| p.status);
    pipelock_policy::metrics::MetricsInput {
        contained: !probes
            .iter()
            .any(|p| p.status == pipelock_policy::verify::Status::Fail),
        drift: !pipelock_policy::status::drifted(&probes).is_empty(),
        table_loaded: counters.is_some(),
        blocked_packets: value("blocked").0,
        blocked_bytes: value("blocked").1,
        dns_blocked_packets: value("dns_blocked").0,
        proxy_up: status("proxy-unit") == Some(pipelock_policy::verify::Status::Pass),
        table_restores: observations
            .watcher
            .state
            .as_ref()
            .map_or(0, |s| s.restores),
        probes,
        audit: observations.audit.counters.clone(),
        sessions: observations.sessions.sessions.len() as u64,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[test]
    fn wait_listening_returns_once_the_port_accepts_and_times_out_otherwise() {
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Nothing listens there now: the wait gives up after its timeout.
        assert!(wait_listening(address, Duration::from_millis(200)).is_err());
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = TcpListener::bind(address).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(listener);
        });
        let waited = wait_listening(address, Duration::from_secs(10)).unwrap();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        late.join().unwrap();
    }
}
