//! Placeholder for the program sudo runs as the agent user; the launch path replaces it.

fn main() {
    eprintln!("agent-exec: not built yet");
    std::process::exit(1);
}
