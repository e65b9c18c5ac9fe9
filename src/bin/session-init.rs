//! session-init: the first program of a session, as the agent: the in-session bridge, then the tool; see `host::session`.

fn main() {
    std::process::exit(pipelock_containment::host::session::session_init_main());
}
