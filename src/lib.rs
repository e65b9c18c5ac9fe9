//! pipelock-containment: the CLI over the pure core (`pipelock_policy`) and the host layer (`pipelock_host`).

pub use pipelock_host as host;
pub use pipelock_policy::{
    account, audit, ca, config, exit, facts, grants, launch, metrics, nflog, paths, plan, render,
    session, status, sysusers, timefmt, tools, verify, watch,
};

pub mod cli;
#[macro_use]
pub mod output;
pub mod commands;
