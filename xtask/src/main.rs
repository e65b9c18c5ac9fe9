//! Build chores: `cargo xtask bench-launch` and friends.

mod bench_launch;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build chores for pipelock-containment")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Benchmark `cc-launch true` against a bare `sudo -n -u cc-agent true` (root, hyperfine).
    BenchLaunch {
        /// Timed runs per command.
        #[arg(long, default_value_t = 300)]
        runs: u32,
    },
}

fn main() -> anyhow::Result<()> {
    match Xtask::parse().command {
        Task::BenchLaunch { runs } => bench_launch::run(runs),
    }
}
