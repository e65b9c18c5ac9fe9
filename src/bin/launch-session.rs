//! launch-session: the one program sudo runs as root for operators: starts the session unit; see `host::session`.

fn main() {
    std::process::exit(pipelock_containment::host::session::launch_session_main());
}
