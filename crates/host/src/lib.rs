//! pipelock-host: the one layer that touches the host: user database, files, subprocesses. Everything else is pure.

pub mod apply;
pub mod audit;
pub mod bridge;
pub mod ca;
pub mod facts;
pub mod fs;
pub mod grants;
pub mod launch;
pub mod process;
pub mod sd;
pub mod session;
pub mod tools;
pub mod verify;
pub mod watch;

/// This process runs as root (effective UID 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
