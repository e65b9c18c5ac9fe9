//! Exit codes, documented in the man page: scripts and fleet tooling branch on them.

/// Everything succeeded; for `verify`, every probe passed.
pub const OK: i32 = 0;
/// The command failed (the message says why); for `verify`, a probe failed.
pub const FAILURE: i32 = 1;
/// `verify` only: no probe failed, but at least one was skipped.
pub const SKIPPED: i32 = 2;
/// The command line is wrong (EX_USAGE).
pub const USAGE: i32 = 64;
/// Root is required (EX_NOPERM).
pub const NEED_ROOT: i32 = 77;
/// The config is invalid (EX_CONFIG).
pub const CONFIG: i32 = 78;

/// Root is required and the caller is not root: the refusal every command gives, exit code
/// `NEED_ROOT`.
#[derive(Debug)]
pub struct NeedRoot(pub String);

impl std::fmt::Display for NeedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeedRoot {}
