//! Everything the CLI writes: stdout that a closed pipe cannot abort, the one form of a
//! warning and an error on stderr, and the one decision of an error's exit code.

use crate::config::ConfigError;
use crate::exit;

/// The prefix of every line on stderr.
pub const NAME: &str = "pipelock-containment";

/// `println!` that ignores a closed stdout (`| head`, a maintainer script's pipe): output must
/// never abort a half-done apply or remove.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout, like `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Something the operator should know; the command goes on.
pub fn warn(text: &str) {
    eprintln!("{NAME}: warning: {text}");
}

/// Something that leaves the host less contained than configured (a CA bundle that cannot be
/// built): the command goes on, loudly.
pub fn warn_loud(text: &str) {
    eprintln!("{NAME}: WARNING: {text}");
}

/// A line on stderr that carries its own kind (`warning: …`, `… finished with 2 error(s)`).
pub fn note(text: &str) {
    eprintln!("{NAME}: {text}");
}

/// A line that continues the one above (an item of a list), indented.
pub fn more(text: &str) {
    eprintln!("  {text}");
}

/// The error a command ended with, each cause on its own line; returns its exit code.
pub fn error(err: &anyhow::Error) -> i32 {
    eprintln!("{NAME}: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    exit_code_for(err)
}

/// The exit code for an error: a config problem and a root refusal have their own.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|cause| cause.is::<ConfigError>()) {
        exit::CONFIG
    } else if err.chain().any(|cause| cause.is::<exit::NeedRoot>()) {
        exit::NEED_ROOT
    } else {
        exit::FAILURE
    }
}
