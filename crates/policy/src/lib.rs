//! The pure core of pipelock-containment: config, facts, rendering, plans and verdicts. No I/O.

pub mod account;
pub mod audit;
pub mod ca;
pub mod config;
pub mod exit;
pub mod facts;
pub mod grants;
pub mod launch;
pub mod metrics;
pub mod nflog;
pub mod paths;
pub mod plan;
pub mod render;
pub mod session;
pub mod status;
pub mod sysusers;
pub mod timefmt;
pub mod tools;
pub mod verify;
pub mod watch;
