//! The proxy bridge: the in-session half (TCP on loopback inside the session's namespace to
//! the host's unix socket) and the host half (that socket to the proxy), both unprivileged.
//! The same socket publishes a session's dev-server ports on the host's loopback: the host half
//! binds them and hands the listening sockets to the session, which accepts on them.
//!
//! Bytes move with splice(2) through a pipe, one thread per direction and connection.

use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::fcntl::{splice, SpliceFFlags};
use nix::sys::socket::{sendmsg, shutdown, ControlMessage, MsgFlags, Shutdown};

use pipelock_policy::config::Config;
use pipelock_policy::session::{self, BridgeRequest};

/// Stack of each forwarding thread: they only loop over splice(2).
const THREAD_STACK: usize = 64 * 1024;
/// How much one splice moves at most (the pipe's default 64 KiB caps it; a 1 MiB pipe measured
/// slower in bench-launch).
const CHUNK: usize = 1 << 20;

/// Move bytes from `from` to `to` until end of file, then half-close `to`.
fn pump(from: &OwnedFd, to: &OwnedFd) -> io::Result<u64> {
    let (pipe_read, pipe_write) = nix::unistd::pipe()?;
    // No SPLICE_F_MORE: on TCP it corks small writes (a proxy's replies) for up to 200 ms.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let mut total = 0u64;
    loop {
        let n = splice(from.as_fd(), None, pipe_write.as_fd(), None, CHUNK, flags)?;
        if n == 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            let m = splice(pipe_read.as_fd(), None, to.as_fd(), None, left, flags)?;
            if m == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed"));
            }
            left -= m;
        }
        total += n as u64;
    }
    let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
    Ok(total)
}

/// Forward both ways between two connected sockets until both directions are done.
fn join(a: OwnedFd, b: OwnedFd) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let upstream = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let _ = pump(&a2, &b2);
        });
    let _ = pump(&b, &a);
    if let Ok(handle) = upstream {
        let _ = handle.join();
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) {
    if let Err(err) = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(f)
    {
        eprintln!("pipelock-containment bridge: cannot start a thread: {err}");
    }
}

/// The in-session half: listen on `port` at 127.0.0.1 and ::1 inside the session's network
/// namespace. Binding fails loudly (the caller refuses to start the tool).
pub fn listen_in_session(port: u16) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let listener = TcpListener::bind(SocketAddr::new(address, port)).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot listen on {address} port {port}: {err}"),
            )
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serve one in-session listener (in its own thread): each connection goes to the host half.
/// A connection the host half cannot take is closed and logged.
pub fn serve_in_session(listener: TcpListener, port: u16) {
    spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let _ = tcp.set_nodelay(true);
            spawn(move || match UnixStream::connect(session::BRIDGE_SOCKET) {
                Ok(mut unix) => {
                    let header = BridgeRequest::Connect(port).header();
                    if unix.write_all(header.as_bytes()).is_ok() {
                        join(tcp.into(), unix.into());
                    }
                }
                Err(err) => eprintln!(
                    "pipelock-containment bridge: the host side {} is not reachable ({err}): \
                     connection to port {port} closed; see `systemctl status {}`",
                    session::BRIDGE_SOCKET,
                    session::BRIDGE_SOCKET_UNIT
                ),
            });
        }
    });
}

/// Ask the host half to publish `port`; on success, accept on the host's loopback and forward
/// each connection to the session's own server on that port. Failure only warns: the session
/// runs, the port is not published.
pub fn publish_from_session(port: u16) -> Result<(), String> {
    let mut unix = UnixStream::connect(session::BRIDGE_SOCKET).map_err(|err| {
        format!(
            "the bridge {} is not reachable: {err}",
            session::BRIDGE_SOCKET
        )
    })?;
    unix.write_all(BridgeRequest::Publish(port).header().as_bytes())
        .map_err(|err| err.to_string())?;
    let mut reply = [0u8; 256];
    let (text_len, fds) = crate::sd::recv_with_fds(unix.as_raw_fd(), &mut reply, MsgFlags::empty())
        .map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&reply[..text_len])
        .trim()
        .to_string();
    if fds.is_empty() {
        return Err(text);
    }
    for fd in fds {
        let listener = TcpListener::from(fd);
        spawn(move || {
            for stream in listener.incoming() {
                let Ok(outside) = stream else { continue };
                spawn(move || {
                    let inside = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                        .or_else(|_| TcpStream::connect((Ipv6Addr::LOCALHOST, port)));
                    if let Ok(inside) = inside {
                        join(outside.into(), inside.into());
                    }
                });
            }
        });
    }
    Ok(())
}

/// The host half: the socket systemd passes (fd 3); each connection's header says what it wants.
pub fn serve_host(config: Config) -> io::Result<()> {
    let mut passed = crate::sd::passed_fds();
    if passed.len() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "expected one socket from systemd (LISTEN_FDS=1): start it through {}",
                session::BRIDGE_SOCKET_UNIT
            ),
        ));
    }
    let listener = UnixListener::from(passed.remove(0).1);
    let mut current = CurrentConfig::new(config);
    for stream in listener.incoming() {
        let Ok(unix) = stream else { continue };
        let config = current.get();
        spawn(move || {
            if let Err(err) = serve_host_connection(unix, &config) {
                eprintln!("pipelock-containment bridge: {err}");
            }
        });
    }
    Ok(())
}

/// The config as the file is now: parsed again when its modification time changes, so an edit
/// of the allowed or published ports needs no restart of the bridge. A file that no longer
/// parses keeps the last good config (and says so once).
struct CurrentConfig {
    config: std::sync::Arc<Config>,
    modified: Option<std::time::SystemTime>,
}

impl CurrentConfig {
    fn new(config: Config) -> Self {
        CurrentConfig {
            config: std::sync::Arc::new(config),
            modified: Self::modified(),
        }
    }

    fn modified() -> Option<std::time::SystemTime> {
        std::fs::metadata(pipelock_policy::config::DEFAULT_CONFIG_PATH)
            .and_then(|m| m.modified())
            .ok()
    }

    fn get(&mut self) -> std::sync::Arc<Config> {
        let now = Self::modified();
        if now != self.modified {
            self.modified = now;
            let path = camino::Utf8Path::new(pipelock_policy::config::DEFAULT_CONFIG_PATH);
            match crate::fs::read_config(path) {
                Ok(config) => self.config = std::sync::Arc::new(config),
                Err(err) => {
                    eprintln!("pipelock-containment bridge: keeping the last config: {err:#}")
                }
            }
        }
        self.config.clone()
    }
}

fn serve_host_connection(unix: UnixStream, config: &Config) -> io::Result<()> {
    unix.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(unix.try_clone()?);
    let mut line = String::new();
    reader.by_ref().take(16).read_line(&mut line)?;
    if line.is_empty() {
        // A connect-and-close: launch-session checking that the bridge answers.
        return Ok(());
    }
    let request = session::parse_bridge_header(&line, config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let buffered = reader.buffer().to_vec();
    unix.set_read_timeout(None)?;
    match request {
        BridgeRequest::Connect(port) => {
            let address = if port == config.proxy.listen_port {
                SocketAddr::new(config.proxy.listen_address, port)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            };
            let mut tcp =
                TcpStream::connect_timeout(&address, Duration::from_secs(5)).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("cannot reach {address} for a session ({err}); its connection is closed"),
                    )
                })?;
            let _ = tcp.set_nodelay(true);
            tcp.write_all(&buffered)?;
            join(unix.into(), tcp.into());
            Ok(())
        }
        BridgeRequest::Publish(port) => publish_on_host(&unix, port),
    }
}

/// Bind `port` on the host's loopback and hand the listening sockets to the session.
fn publish_on_host(unix: &UnixStream, port: u16) -> io::Result<()> {
    let mut listeners = Vec::new();
    let mut problems = Vec::new();
    for address in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        match TcpListener::bind(SocketAddr::new(address, port)) {
            Ok(listener) => listeners.push(listener),
            Err(err) => problems.push(format!("{address} port {port}: {err}")),
        }
    }
    let text = if listeners.is_empty() {
        format!("cannot publish: {}", problems.join("; "))
    } else {
        "ok".to_string()
    };
    let fds: Vec<RawFd> = listeners.iter().map(|l| l.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        unix.as_raw_fd(),
        &[IoSlice::new(text.as_bytes())],
        cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}
