//! The audit trail on the host: NFLOG sockets, the session's network setup and stop
//! (`pipelock-audit --attach`, `--detach`, run by systemd as root), and the listener that turns
//! what the kernel logs into journal records (`pipelock-containment-audit.service`).
//!
//! A session's table lives in its own network namespace, and NFLOG groups are per namespace: the
//! setup binds the session's group there and hands the socket to the listener with the
//! session's identity. The listener keeps each socket in systemd's file descriptor store, so a
//! restart gets every session back, identity included (a memfd beside each socket).

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use nix::libc;
use nix::sys::socket::{
    accept4, bind, connect, getsockopt, listen, send, sendmsg, socket, sockopt, AddressFamily,
    Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use pipelock_policy::audit::{
    self, Counters, Draft, Folder, Handover, Identity, Origin, AUDIT_SOCKET, COUNTERS_FILE,
    NFLOG_GROUP,
};
use pipelock_policy::nflog::{self, ConfigAttribute, Message};
use pipelock_policy::session;

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The name systemd gives the listening socket (`FileDescriptorName=` in the socket unit).
const LISTENING_FD_NAME: &str = "audit";
/// Stored beside each session's socket: its identity.
const IDENTITY_SUFFIX: &str = ".identity";
/// Bytes of each packet the kernel copies: headers and a DNS question.
const COPY_RANGE: u32 = 512;
/// The kernel sends a batch after this many packets or 1/100 s ticks, whichever comes first.
const QUEUE_THRESHOLD: u32 = 64;
const QUEUE_TIMEOUT: u32 = 2;
const BATCH_BYTES: u32 = 128 * 1024;
/// After a session's end, what the kernel still batches arrives within the queue timeout.
const END_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// The socket's receive buffer: room for a burst while the listener restarts.
const RECEIVE_BUFFER: libc::c_int = 16 * 1024 * 1024;

/// `pipelock-audit`: the listener, or with `--attach HEX` / `--detach UNIT` the session's side.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == session::AUDIT_ATTACH || a == session::AUDIT_DETACH)
    {
        // Run from the session unit, with the agent's environment: root's own PATH for nft and ip.
        std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    }
    let result = match args.first().map(String::as_str) {
        Some(session::AUDIT_ATTACH) => attach(args.get(1).map(String::as_str).unwrap_or("")),
        Some(session::AUDIT_DETACH) => detach(args.get(1).map(String::as_str).unwrap_or("")),
        _ => Options::parse(&args).and_then(listen_forever),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("pipelock-audit: {err:#}");
            1
        }
    }
}

/// A NETLINK_NETFILTER socket bound to `group` in this network namespace, copying packets and
/// numbering them (gaps are attempts the kernel could not queue). Needs CAP_NET_ADMIN.
pub fn nflog_socket(group: u16) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            nflog::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("cannot open a netfilter netlink socket");
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_nl is valid (the kernel assigns the port id).
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: address is a valid sockaddr_nl of the size given.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&address as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error()).context("cannot bind the netlink socket");
    }
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with an int option value of the right size.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&RECEIVE_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set == 0 {
            break;
        }
    }
    let requests = [
        vec![ConfigAttribute::Command(nflog::NFULNL_CFG_CMD_BIND)],
        vec![
            ConfigAttribute::Mode {
                copy_range: COPY_RANGE,
                copy_mode: nflog::NFULNL_COPY_PACKET,
            },
            ConfigAttribute::Flags(nflog::NFULNL_CFG_F_SEQ),
            ConfigAttribute::QueueThreshold(QUEUE_THRESHOLD),
            ConfigAttribute::Timeout(QUEUE_TIMEOUT),
            ConfigAttribute::BufferSize(BATCH_BYTES),
        ],
    ];
    for (seq, attributes) in requests.iter().enumerate() {
        let request =
            nflog::config_request(group, libc::AF_UNSPEC as u8, seq as u32 + 1, attributes);
        send(fd.as_raw_fd(), &request, MsgFlags::empty())
            .with_context(|| format!("cannot configure NFLOG group {group}"))?;
        let mut reply = [0u8; 4096];
        let n = nix::sys::socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())
            .with_context(|| format!("no answer configuring NFLOG group {group}"))?;
        for message in nflog::messages(&reply[..n]) {
            if let Message::Error(errno) = message {
                if errno != 0 {
                    let err = io::Error::from_raw_os_error(-errno);
                    bail!(
                        "the kernel refused NFLOG group {group}: {err}{}",
                        if -errno == libc::EBUSY {
                            " (another listener has it: is pipelock-containment-audit.service running twice, or ulogd on that group?)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    Ok(fd)
}

/// `--attach HEX`, before the session's tool starts (root, in the session's network namespace):
/// the session's table and routes, then its NFLOG socket to the listener.
fn attach(hex: &str) -> Result<()> {
    let identity: Identity = session::unhex(hex)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            anyhow!(
                "{} takes the session's identity as hex JSON",
                session::AUDIT_ATTACH
            )
        })?;
    if !crate::is_root() || std::env::var_os("SUDO_UID").is_some() {
        bail!(
            "{} is for the session unit's start only",
            session::AUDIT_ATTACH
        );
    }
    if !own_network_namespace()? {
        bail!("refusing to change the host's network: this is not a session's own network namespace (is PrivateNetwork= in effect?)");
    }
    let config =
        crate::fs::read_config(Utf8Path::new(pipelock_policy::config::DEFAULT_CONFIG_PATH))?;
    let agent = crate::facts::lookup_account(&config.users.agent)?
        .ok_or_else(|| anyhow!("the agent user {:?} does not exist", config.users.agent))?;
    // The table first: a route without it would make attempts wait for a timeout.
    crate::process::run_ok_with_input(
        "nft",
        &["-f", "-"],
        session::session_ruleset(agent.uid).as_bytes(),
    )?;
    crate::process::run_ok("ip", &["link", "set", "lo", "up"])?;
    crate::process::run_ok("ip", &["-4", "route", "add", "default", "dev", "lo"])?;
    if Utf8Path::new("/proc/sys/net/ipv6").exists() {
        // Without it IPv6 attempts still fail at once (no route), they are only not recorded.
        if let Err(err) =
            crate::process::run_ok("ip", &["-6", "route", "add", "default", "dev", "lo"])
        {
            eprintln!("pipelock-audit: warning: IPv6 attempts of {} are refused but not recorded: {err:#}", identity.unit);
        }
    }
    let socket = nflog_socket(NFLOG_GROUP)?;
    if let Err(err) = handover(
        &Handover::Attach(identity.clone()),
        Some(socket.as_raw_fd()),
    ) {
        // The session is still contained; only its record is missing, and the journal says so.
        eprintln!(
            "pipelock-audit: warning: attempts of {} are refused but not recorded: the audit listener at {AUDIT_SOCKET} is not reachable ({err}); start pipelock-containment-audit.socket",
            identity.unit
        );
    }
    Ok(())
}

/// `--detach UNIT`, after the session ended (root).
fn detach(unit: &str) -> Result<()> {
    if !crate::is_root() || std::env::var_os("SUDO_UID").is_some() {
        bail!(
            "{} is for the session unit's stop only",
            session::AUDIT_DETACH
        );
    }
    if let Err(err) = handover(
        &Handover::Detach {
            unit: unit.to_string(),
        },
        None,
    ) {
        eprintln!(
            "pipelock-audit: warning: could not tell the audit listener that {unit} ended: {err}"
        );
    }
    Ok(())
}

/// Whether this process's network namespace is not PID 1's (the host's).
fn own_network_namespace() -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
    let host = std::fs::metadata("/proc/1/ns/net").context("cannot read /proc/1/ns/net")?;
    Ok((mine.dev(), mine.ino()) != (host.dev(), host.ino()))
}

/// One message to the listener, with `fd` if given; its answer.
fn handover(message: &Handover, fd: Option<RawFd>) -> Result<String> {
    let sock = seqpacket_socket()?;
    let address = UnixAddr::new(audit_socket_path().as_str())?;
    connect(sock.as_raw_fd(), &address)?;
    let text = serde_json::to_vec(message)?;
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&text)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    let mut reply = [0u8; 512];
    let n = nix::sys::socket::recv(sock.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    if reply != "ok" {
        bail!("the listener answered {reply:?}");
    }
    Ok(reply)
}

/// The listener's socket: `PIPELOCK_AUDIT_SOCKET` for tests, else the packaged path.
fn audit_socket_path() -> Utf8PathBuf {
    std::env::var("PIPELOCK_AUDIT_SOCKET")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| AUDIT_SOCKET.into())
}

/// How the listener runs.
#[derive(Debug)]
struct Options {
    /// Where to listen when systemd passed no socket.
    socket: Utf8PathBuf,
    journal: Utf8PathBuf,
    counters: Utf8PathBuf,
    /// Bind the host table's group too.
    host: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            socket: audit_socket_path(),
            journal: JOURNAL_SOCKET.into(),
            counters: COUNTERS_FILE.into(),
            host: true,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = |name: &str| {
                rest.next()
                    .map(Utf8PathBuf::from)
                    .ok_or_else(|| anyhow!("{name} needs a path"))
            };
            match arg.as_str() {
                "--journal-socket" => options.journal = value(arg)?,
                "--counters" => options.counters = value(arg)?,
                "--no-host-table" => options.host = false,
                "--help" | "-h" => {
                    println!("usage: pipelock-audit [--journal-socket PATH] [--counters PATH] [--no-host-table]\n\
                              Records the agent's blocked attempts in the journal; started by pipelock-containment-audit.socket.");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        Ok(options)
    }
}

/// One NFLOG socket: the host table's, or a session's.
struct Source {
    origin: Origin,
    identity: Option<Identity>,
    socket: OwnedFd,
    /// The identity as systemd stores it beside the socket.
    stored_identity: Option<OwnedFd>,
    folder: Folder,
    /// The session ended: close after this, once the kernel sent what it still batches.
    ending: Option<std::time::Instant>,
}

impl Source {
    fn unit(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.unit.as_str())
    }
}

struct Listener {
    options: Options,
    listening: OwnedFd,
    signals: nix::sys::signalfd::SignalFd,
    sources: Vec<Source>,
    journal: UnixDatagram,
    counters: Counters,
    counters_changed: bool,
    id_prefix: u32,
    next_id: u32,
    journal_failures: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn listen_forever(options: Options) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let mut passed = crate::sd::passed_fds();
    let listening = match passed
        .iter()
        .position(|(name, _)| name == LISTENING_FD_NAME)
    {
        Some(at) => passed.remove(at).1,
        None => listen_on(&options.socket)?,
    };
    let mut sources = restore_sessions(passed);
    if options.host {
        let socket = nflog_socket(NFLOG_GROUP).context("the host table's NFLOG group")?;
        sources.insert(
            0,
            Source {
                origin: Origin::Host,
                identity: None,
                socket,
                stored_identity: None,
                folder: Folder::default(),
                ending: None,
            },
        );
    }
    drop_capabilities()?;
    // Counted since boot: a restart goes on from what the last one wrote.
    let counters = read_counters(&options.counters).unwrap_or_default();
    let mut listener = Listener {
        id_prefix: (crate::session::random_id() >> 32) as u32,
        next_id: 0,
        options,
        listening,
        signals,
        sources,
        journal: UnixDatagram::unbound()?,
        counters,
        counters_changed: true,
        journal_failures: 0,
    };
    listener.counters.sessions_attached = listener.sessions() as u64;
    listener.write_counters();
    crate::sd::notify(
        &format!("READY=1\nSTATUS=recording {} sessions", listener.sessions()),
        &[],
    )?;
    listener.run()
}

/// The counters a listener last wrote at `path`; None when there are none (it never ran).
pub fn read_counters(path: &Utf8Path) -> Option<Counters> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// A unix socket that keeps message boundaries (a handover is one message, with its descriptor).
fn seqpacket_socket() -> Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// A fresh listening socket at `path` (only root may connect).
fn listen_on(path: &Utf8Path) -> Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let sock = seqpacket_socket()?;
    let _ = std::fs::remove_file(path);
    bind(sock.as_raw_fd(), &UnixAddr::new(path.as_str())?)
        .with_context(|| format!("cannot listen on {path}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listen(&sock, Backlog::new(64)?)?;
    Ok(sock)
}

/// The sessions a previous listener stored with systemd: each socket with its identity.
fn restore_sessions(passed: Vec<(String, OwnedFd)>) -> Vec<Source> {
    let mut identities: HashMap<String, OwnedFd> = HashMap::new();
    let mut sockets = Vec::new();
    for (name, fd) in passed {
        match name.strip_suffix(IDENTITY_SUFFIX) {
            Some(unit) => {
                identities.insert(unit.to_string(), fd);
            }
            None if session::is_session_unit(&name) => sockets.push((name, fd)),
            None => eprintln!("pipelock-audit: ignoring a passed descriptor named {name:?}"),
        }
    }
    sockets
        .into_iter()
        .map(|(unit, socket)| {
            let stored = identities.remove(&unit);
            let identity = stored
                .as_ref()
                .and_then(|fd| read_identity(fd).ok())
                .unwrap_or_else(|| Identity {
                    unit: unit.clone(),
                    operator: "unknown".into(),
                    tool: "unknown".into(),
                    cwd: "unknown".into(),
                });
            Source {
                origin: Origin::Session,
                identity: Some(identity),
                socket,
                stored_identity: stored,
                folder: Folder::default(),
                ending: None,
            }
        })
        .collect()
}

fn read_identity(fd: &OwnedFd) -> Result<Identity> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.rewind()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text)?)
}

fn identity_memfd(identity: &Identity) -> Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor is owned at once.
    let fd = unsafe { libc::memfd_create(c"pipelock-audit-identity".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: fd was just returned by memfd_create and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.write_all(&serde_json::to_vec(identity)?)?;
    Ok(fd)
}

/// From here on the listener parses what agents send: it keeps no capability (it was root with
/// CAP_NET_ADMIN only, to bind the host's group).
fn drop_capabilities() -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: prctl and capset with valid arguments: a v3 header and two data words.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error()).context("PR_SET_NO_NEW_PRIVS");
        }
        if libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error()).context("cannot drop capabilities");
        }
    }
    Ok(())
}

impl Listener {
    fn sessions(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| s.origin == Origin::Session)
            .count()
    }

    fn run(&mut self) -> Result<()> {
        let mut buffer = vec![0u8; 256 * 1024];
        let mut last_flush = now();
        loop {
            let mut polled: Vec<libc::pollfd> =
                [self.listening.as_raw_fd(), self.signals.as_fd().as_raw_fd()]
                    .into_iter()
                    .chain(self.sources.iter().map(|s| s.socket.as_raw_fd()))
                    .map(|fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
            let timeout = if self.sources.iter().any(|s| s.ending.is_some()) {
                20
            } else {
                250
            };
            // SAFETY: polled is a valid array of pollfd for its length.
            let ready =
                unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err.into());
                }
            }
            if polled[1].revents != 0 {
                if let Ok(Some(_)) = self.signals.read_signal() {
                    // Sessions that ended go now: the next listener must not get them back.
                    for unit in self.ended(true) {
                        self.remove_session(&unit);
                    }
                    self.flush(true);
                    self.write_counters();
                    return Ok(());
                }
            }
            for (at, entry) in polled.iter().enumerate().skip(2) {
                if entry.revents != 0 {
                    self.drain(at - 2, &mut buffer);
                }
            }
            if polled[0].revents != 0 {
                self.accept_handover();
            }
            for unit in self.ended(false) {
                self.remove_session(&unit);
            }
            let t = now();
            if t > last_flush {
                last_flush = t;
                self.flush(false);
                self.write_counters();
            }
        }
    }

    /// The sessions that ended (their grace period over, or all of them with `now`).
    fn ended(&self, now: bool) -> Vec<String> {
        let due = std::time::Instant::now();
        self.sources
            .iter()
            .filter(|s| s.ending.is_some_and(|at| now || at <= due))
            .filter_map(|s| s.unit().map(String::from))
            .collect()
    }

    /// Read everything queued on source `at`.
    fn drain(&mut self, at: usize, buffer: &mut [u8]) {
        let fd = self.sources[at].socket.as_raw_fd();
        for _ in 0..64 {
            match nix::sys::socket::recv(fd, buffer, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return,
                Ok(n) => {
                    let t = now();
                    let mut drafts = Vec::new();
                    let source = &mut self.sources[at];
                    for message in nflog::messages(&buffer[..n]) {
                        let Message::Packet(logged) = message else {
                            continue;
                        };
                        let Some(attempt) = nflog::parse_packet(logged.payload) else {
                            source.folder.unreadable(logged.seq, t);
                            continue;
                        };
                        drafts.extend(source.folder.attempt(&attempt, logged.uid, logged.seq, t));
                    }
                    for draft in drafts {
                        self.emit(at, draft);
                    }
                }
                // The queue overflowed: the sequence gap counts what was lost.
                Err(nix::errno::Errno::ENOBUFS) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(err) => {
                    eprintln!("pipelock-audit: reading NFLOG: {err}");
                    return;
                }
            }
        }
    }

    fn flush(&mut self, all: bool) {
        let t = now();
        for at in 0..self.sources.len() {
            for draft in self.sources[at].folder.flush(t, all) {
                self.emit(at, draft);
            }
        }
    }

    fn emit(&mut self, at: usize, draft: Draft) {
        let source = &self.sources[at];
        self.counters.add(source.identity.as_ref(), &draft);
        self.counters_changed = true;
        let id = format!("{:08x}{:08x}", self.id_prefix, self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let record = audit::record(draft, id, source.origin, source.identity.as_ref());
        let datagram = journal_datagram(&record.journal_fields());
        if self
            .journal
            .send_to(&datagram, self.options.journal.as_std_path())
            .is_err()
        {
            self.journal_failures += 1;
            if self.journal_failures.is_power_of_two() {
                eprintln!(
                    "pipelock-audit: cannot write to the journal at {} ({} records so far): {}",
                    self.options.journal,
                    self.journal_failures,
                    record.message()
                );
            }
        }
    }

    fn write_counters(&mut self) {
        if !self.counters_changed {
            return;
        }
        self.counters.sessions_attached = self.sessions() as u64;
        let Ok(text) = serde_json::to_vec(&self.counters) else {
            return;
        };
        match crate::fs::write_atomic(
            &self.options.counters,
            &text,
            crate::fs::current_owner(),
            0o644,
        ) {
            Ok(()) => self.counters_changed = false,
            Err(err) => eprintln!("pipelock-audit: {err:#}"),
        }
    }

    /// One connection from a session's setup or stop.
    fn accept_handover(&mut self) {
        let Ok(conn) = accept4(self.listening.as_raw_fd(), SockFlag::SOCK_CLOEXEC) else {
            return;
        };
        // SAFETY: accept4 just returned this descriptor and nothing else owns it.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        let answer = match self.take_handover(&conn) {
            Ok(()) => "ok".to_string(),
            Err(err) => {
                eprintln!("pipelock-audit: {err:#}");
                format!("error: {err:#}")
            }
        };
        let _ = send(conn.as_raw_fd(), answer.as_bytes(), MsgFlags::MSG_DONTWAIT);
    }

    fn take_handover(&mut self, conn: &OwnedFd) -> Result<()> {
        let peer = getsockopt(conn, sockopt::PeerCredentials)?;
        if peer.uid() != 0 {
            bail!("refusing a handover from uid {}", peer.uid());
        }
        let mut text = vec![0u8; 64 * 1024];
        let (length, mut fds) =
            crate::sd::recv_with_fds(conn.as_raw_fd(), &mut text, MsgFlags::MSG_CMSG_CLOEXEC)?;
        let handover: Handover =
            serde_json::from_slice(&text[..length]).context("a malformed handover")?;
        match handover {
            Handover::Attach(identity) => {
                let socket = fds
                    .pop()
                    .ok_or_else(|| anyhow!("{} came without its socket", identity.unit))?;
                if !session::is_session_unit(&identity.unit) {
                    bail!("{:?} is not a session unit", identity.unit);
                }
                self.remove_session(&identity.unit);
                let stored = identity_memfd(&identity)?;
                let fdpoll = "FDPOLL=0";
                crate::sd::notify(
                    &format!("FDSTORE=1\nFDNAME={}\n{fdpoll}", identity.unit),
                    &[socket.as_raw_fd()],
                )?;
                crate::sd::notify(
                    &format!(
                        "FDSTORE=1\nFDNAME={}{IDENTITY_SUFFIX}\n{fdpoll}",
                        identity.unit
                    ),
                    &[stored.as_raw_fd()],
                )?;
                self.sources.push(Source {
                    origin: Origin::Session,
                    identity: Some(identity),
                    socket,
                    stored_identity: Some(stored),
                    folder: Folder::default(),
                    ending: None,
                });
            }
            Handover::Detach { unit } => {
                let at = self
                    .sources
                    .iter()
                    .position(|s| s.unit() == Some(unit.as_str()));
                if let Some(at) = at {
                    self.sources[at].ending = Some(std::time::Instant::now() + END_GRACE);
                }
            }
        }
        self.counters_changed = true;
        Ok(())
    }

    /// Record what a session has folded, then let its socket go (here and in systemd's store).
    fn remove_session(&mut self, unit: &str) {
        let Some(at) = self.sources.iter().position(|s| s.unit() == Some(unit)) else {
            return;
        };
        let mut buffer = vec![0u8; 256 * 1024];
        self.drain(at, &mut buffer);
        for draft in self.sources[at].folder.flush(now(), true) {
            self.emit(at, draft);
        }
        let source = self.sources.remove(at);
        drop(source.stored_identity);
        for name in [unit.to_string(), format!("{unit}{IDENTITY_SUFFIX}")] {
            let _ = crate::sd::notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), &[]);
        }
    }
}

/// Which records `blocked` reads.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Any `journalctl --since` value.
    pub since: Option<String>,
    /// A session unit name.
    pub session: Option<String>,
    pub operator: Option<String>,
    /// One record by its id.
    pub event: Option<String>,
    /// A file of `journalctl -o json` output instead of the journal; `-` is stdin.
    pub from: Option<std::path::PathBuf>,
}

impl Query {
    /// The `journalctl` arguments (matches on different fields are all required).
    pub fn journalctl_args(&self, follow: bool) -> Vec<String> {
        let mut args: Vec<String> = ["-o", "json", "--no-pager", "-q"].map(String::from).into();
        args.push(format!("MESSAGE_ID={}", audit::MESSAGE_ID));
        let matches = [
            (audit::FIELD_SESSION, &self.session),
            (session::FIELD_OPERATOR, &self.operator),
            (audit::FIELD_EVENT, &self.event),
        ];
        for (field, value) in matches {
            if let Some(value) = value {
                args.push(format!("{field}={value}"));
            }
        }
        if let Some(since) = &self.since {
            args.push(format!("--since={since}"));
        }
        if follow {
            args.push("--follow".into());
            if self.since.is_none() {
                args.push("--lines=0".into());
            }
        }
        args
    }

    fn keeps(&self, record: &audit::Record) -> bool {
        let wanted = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        wanted(&self.session, &record.session)
            && wanted(&self.operator, &record.operator)
            && wanted(&self.event, &Some(record.id.clone()))
    }
}

/// The records the query asks for, oldest first.
pub fn read_records(query: &Query) -> Result<Vec<audit::Record>> {
    let text = match &query.from {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("reading journal JSON from stdin")?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading journal JSON from {}", path.display()))?,
        None => {
            let args = query.journalctl_args(false);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = crate::process::run("journalctl", &refs)?;
            if !out.status.success() {
                bail!(
                    "`journalctl {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            warn_if_journal_is_partial(&out.stderr);
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    Ok(audit::parse_journal(&text)
        .into_iter()
        .filter(|r| query.keeps(r))
        .collect())
}

/// Follow the journal: `each` gets every new record until journalctl ends.
pub fn follow_records(query: &Query, mut each: impl FnMut(&audit::Record)) -> Result<()> {
    use std::io::BufRead;
    let args = query.journalctl_args(true);
    let mut command = std::process::Command::new("journalctl");
    command.args(&args).stdout(std::process::Stdio::piped());
    // SAFETY: prctl is async-signal-safe; journalctl ends with us (Ctrl-C, a timeout's TERM).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context("cannot run `journalctl` (is systemd's journal installed?)")?;
    let stdout = child.stdout.take().context("journalctl's output")?;
    for line in io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(record) = audit::Record::from_journal(&entry) {
                if query.keeps(&record) {
                    each(&record);
                }
            }
        }
    }
    child.wait()?;
    Ok(())
}

fn warn_if_journal_is_partial(stderr: &[u8]) {
    let text = String::from_utf8_lossy(stderr);
    if text.contains("insufficient permissions") || text.contains("not seeing messages") {
        eprintln!(
            "warning: the records are in the system journal, which this user cannot read: run as root, or join the systemd-journal or adm group"
        );
    }
}

/// A record in the journal's native protocol: `KEY=value` lines; a value with a newline goes
/// as KEY, newline, its length (64-bit little endian), the bytes, newline.
fn journal_datagram(fields: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// The journal fields of native-protocol datagrams (what `journal_datagram` wrote); for tests
/// that stand in for the journal.
pub fn parse_journal_datagram(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'=') {
        let key = String::from_utf8_lossy(&rest[..end]).into_owned();
        if rest[end] == b'=' {
            let line_end = rest[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| end + p);
            fields.push((
                key,
                String::from_utf8_lossy(&rest[end + 1..line_end]).into_owned(),
            ));
            rest = rest.get(line_end + 1..).unwrap_or(&[]);
        } else {
            let Some(length) = rest.get(end + 1..end + 9) else {
                break;
            };
            let length = u64::from_le_bytes(length.try_into().unwrap_or([0; 8])) as usize;
            let start = end + 9;
            let Some(value) = rest.get(start..start + length) else {
                break;
            };
            fields.push((key, String::from_utf8_lossy(value).into_owned()));
            rest = rest.get(start + length + 1..).unwrap_or(&[]);
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_datagrams_carry_plain_and_multi_line_values() {
        let fields = vec![
            ("MESSAGE", "two\nlines".to_string()),
            ("PIPELOCK_PORT", "53".to_string()),
        ];
        let datagram = journal_datagram(&fields);
        assert!(datagram.ends_with(b"PIPELOCK_PORT=53\n"));
        let back = parse_journal_datagram(&datagram);
        assert_eq!(
            back,
            vec![
                ("MESSAGE".to_string(), "two\nlines".to_string()),
                ("PIPELOCK_PORT".to_string(), "53".to_string())
            ]
        );
    }
}
