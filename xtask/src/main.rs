//! Build chores behind `cargo xtask`: packages, package lint and inspection, the project test run.

mod cmd;
mod contents;
mod deps;
mod dist;
mod e2e;
mod generate;
mod inspect;
mod lint;
mod piuparts;
mod rpm_package;
mod rpm_scripts;
mod site;
mod test;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build chores for pipelock-containment"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the release binaries and write the .deb and the .rpm to target/dist/.
    Dist(dist::DistArgs),
    /// Build the packages and run lintian and rpmlint on them (fails on any error or warning).
    LintPackages(dist::DistArgs),
    /// Build the packages and check their files, modes, metadata, dependencies and scripts.
    CheckPackages(dist::DistArgs),
    /// Check site builds: a site config's names land in the packages, a bad one fails the build.
    SiteCheck,
    /// Check that Cargo.toml's .deb assets and systemd-units are what pkg/contents.toml
    /// generates; `--write` regenerates them.
    Contents {
        #[arg(long)]
        write: bool,
    },
    /// Build the packages and run piuparts on the .deb in a fresh bookworm chroot (root; the
    /// e2e also runs it, with the upgrade from the previous release).
    Piuparts(dist::DistArgs),
    /// The project's test command: cargo test, package checks, lint, site builds, end-to-end.
    Test,
    /// Write a signed apt repository and a signed dnf repository from target/dist/*.deb and
    /// *.rpm into target/dist/repo/, with the public key.
    Repo(e2e::RepoArgs),
    /// End-to-end test as root: boot a Debian host with systemd, install the package from the
    /// signed repository, run the containment checks and the package lifecycle.
    E2e(e2e::E2eArgs),
    /// Install the Debian packages the build and the tests need (as root), then prove that every
    /// program they call resolves. `--check`: only the proof, installing nothing.
    /// `--clean-root`: the same install in a freshly debootstrapped root (minutes).
    Deps {
        #[arg(long, conflicts_with = "clean_root")]
        check: bool,
        #[arg(long)]
        clean_root: bool,
    },
    /// Benchmark, in a booted test host: `cc-launch true` against bare sudo and a bare
    /// transient unit, and the proxy bridge against direct loopback (root, hyperfine).
    BenchLaunch {
        /// Timed runs per command.
        #[arg(long, default_value_t = 300)]
        runs: u32,
    },
    /// Benchmark, in a booted test host: a no-op `apply` against `nft -c -f` of the rule file,
    /// `grant`/`revoke` of a 100,000-file tree against `setfacl -R` (root, hyperfine), and the
    /// audit listener recording a session's flood against no listener.
    Bench {
        /// Timed runs of apply (grant and revoke: at most 10).
        #[arg(long, default_value_t = 50)]
        runs: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Dist(args) => dist::dist(&args).map(|packages| packages.print()),
        Task::LintPackages(args) => dist::dist(&args).and_then(|packages| lint::lint(&packages)),
        Task::CheckPackages(args) => {
            dist::dist(&args).and_then(|packages| inspect::check(&packages))
        }
        Task::SiteCheck => site::check(),
        Task::Contents { write } => contents::command(write),
        Task::Piuparts(args) => dist::dist(&args).and_then(|packages| {
            if !piuparts::run(&packages.deb, None)? {
                anyhow::bail!("piuparts needs root (it builds and enters a chroot)");
            }
            Ok(())
        }),
        Task::Test => test::run(),
        Task::Repo(args) => e2e::repo_command(&args),
        Task::E2e(args) => e2e::e2e_command(&args),
        Task::Deps { check: true, .. } => deps::check(deps::Need::Test),
        Task::Deps {
            clean_root: true, ..
        } => deps::clean_root(),
        Task::Deps { .. } => deps::ensure(deps::Need::Test),
        Task::BenchLaunch { runs } => deps::ensure(deps::Need::Test)
            .and_then(|()| e2e::bench_command(e2e::Scenario::Bench { runs })),
        Task::Bench { runs } => deps::ensure(deps::Need::Test)
            .and_then(|()| e2e::bench_command(e2e::Scenario::BenchHelper { runs })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
