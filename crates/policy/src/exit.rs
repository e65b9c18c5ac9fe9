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
