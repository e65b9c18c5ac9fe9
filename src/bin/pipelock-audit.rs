//! pipelock-audit: the audit listener, and each session's network setup and stop; see `host::audit`.

fn main() {
    std::process::exit(pipelock_containment::host::audit::main());
}
