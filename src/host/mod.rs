//! The one layer that touches the host: user database, files, subprocesses. Everything else is pure.

pub mod apply;
pub mod ca;
pub mod facts;
pub mod fs;
pub mod grants;
pub mod launch;
pub mod tools;
pub mod verify;
