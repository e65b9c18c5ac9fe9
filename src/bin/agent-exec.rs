//! agent-exec: the program sudo runs as the agent user; see `host::launch` (thin entry point).

fn main() {
    std::process::exit(pipelock_containment::host::launch::agent_exec_main());
}
