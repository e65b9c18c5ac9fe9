//! Build chores: `cargo xtask repo`, `cargo xtask e2e`, `cargo xtask bench-launch` and friends.

mod bench_launch;
mod e2e;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build chores for pipelock-containment")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a signed apt repository and a signed dnf repository from target/dist/*.deb and
    /// *.rpm into target/dist/repo/, with the public key.
    Repo(RepoArgs),
    /// End-to-end test as root: boot a Debian host with systemd, install the package from the
    /// signed repository, run the containment checks and the package lifecycle.
    E2e(E2eArgs),
    /// Benchmark `cc-launch true` against a bare `sudo -n -u cc-agent true` (root, hyperfine).
    BenchLaunch {
        /// Timed runs per command.
        #[arg(long, default_value_t = 300)]
        runs: u32,
    },
}

#[derive(clap::Args)]
struct RepoArgs {
    /// Sign with this key from your GnuPG keyring (fingerprint or user id).
    #[arg(long, value_name = "ID", required_unless_present = "throwaway_key")]
    key_id: Option<String>,
    /// Sign with a fresh throwaway key (tests only); its public key is written with the repo.
    #[arg(long, conflicts_with = "key_id")]
    throwaway_key: bool,
}

#[derive(clap::Args)]
struct E2eArgs {
    /// Keep the test host's root file system (target/e2e-run/rootfs) after the run.
    #[arg(long)]
    keep: bool,
    /// Test the .deb/.rpm in DIR instead of building them with `cargo xtask dist`.
    #[arg(long, value_name = "DIR")]
    artefacts: Option<Utf8PathBuf>,
}

fn workspace_root() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Cmd::Repo(a) => {
            let key = match a.key_id {
                Some(id) => e2e::repo::SigningKey::user(&id),
                None => e2e::repo::SigningKey::throwaway()?,
            };
            let out = root.join("target/dist/repo");
            e2e::repo::build(&root.join("target/dist"), &out, &key)?;
            println!("wrote {out}");
            Ok(())
        }
        Cmd::BenchLaunch { runs } => bench_launch::run(runs),
        Cmd::E2e(a) => e2e::main(
            &root,
            e2e::Opts {
                keep: a.keep,
                artefacts: a.artefacts,
            },
        ),
    }
}
