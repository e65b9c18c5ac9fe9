//! The systemd service protocols: descriptors systemd passes (`LISTEN_FDS`, `LISTEN_FDNAMES`)
//! and notifications to it (`NOTIFY_SOCKET`: READY, and the file descriptor store); and
//! receiving a message with the descriptors passed along, which the bridge and the audit
//! listener use too.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socket, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

/// The first descriptor systemd passes.
const FIRST_PASSED_FD: RawFd = 3;

/// The descriptors systemd passed to this process, with their names (`FileDescriptorName=`, or
/// the name given when storing it); empty when none were passed or they were for another PID.
/// Each is close-on-exec from now on.
pub fn passed_fds() -> Vec<(String, OwnedFd)> {
    let count: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let for_me = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_me || count <= 0 {
        return Vec::new();
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(String::from).collect())
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            let fd = FIRST_PASSED_FD + i;
            // SAFETY: systemd passed LISTEN_FDS descriptors from fd 3 to this PID (checked above);
            // nothing else in this process owns them.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = nix::fcntl::fcntl(
                owned.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            let name = names
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            (name, owned)
        })
        .collect()
}

/// One message from the unix socket `fd` into `buffer`, and the descriptors that came with it
/// (up to four), each owned: (the message's length, the descriptors).
pub fn recv_with_fds(
    fd: RawFd,
    buffer: &mut [u8],
    flags: MsgFlags,
) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<()>(fd, &mut iov, Some(&mut space), flags)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors for this process.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((message.bytes, fds))
}

/// Send `state` (`READY=1`, `FDSTORE=1\nFDNAME=x`, ...) with `fds` to the service manager.
/// `Ok(false)`: not started by one (no `NOTIFY_SOCKET`).
pub fn notify(state: &str, fds: &[RawFd]) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.to_string_lossy().into_owned();
    let address = match path.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(path.as_str()),
    }?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(state.as_bytes())],
        cmsgs,
        MsgFlags::empty(),
        Some(&address),
    )?;
    Ok(true)
}
