//! `cargo xtask e2e`: the end-to-end proof. Builds the packages and a signed repository, boots a
//! debootstrapped Debian with systemd in a private network namespace joined to a test
//! "internet", installs the package with `apt-get install` from the repository, and runs the
//! scenario (`scenario.rs`). Everything it starts is ended by Drop guards or, on a signal, by
//! the handler (`proc.rs`); logs stay in `target/e2e-logs/`.

pub mod account;
pub mod audit;
pub mod bench;
pub mod checks;
pub mod chroot;
pub mod container;
pub mod dnf;
pub mod net;
pub mod proc;
pub mod repo;
pub mod rootfs;
pub mod scenario;
pub mod sessions;

use std::fs;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use checks::Checks;
use container::Container;
use proc::run;

#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Sign with this key from your GnuPG keyring (fingerprint or user id).
    #[arg(long, value_name = "ID", required_unless_present = "throwaway_key")]
    key_id: Option<String>,
    /// Sign with a fresh throwaway key (tests only); its public key is written with the repo.
    #[arg(long, conflicts_with = "key_id")]
    throwaway_key: bool,
}

#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Keep the test host's root file system (target/e2e-run/rootfs) after the run.
    #[arg(long)]
    keep: bool,
    /// Test the .deb/.rpm in DIR instead of building them with `cargo xtask dist`.
    #[arg(long, value_name = "DIR")]
    artefacts: Option<Utf8PathBuf>,
    /// Run only the install and the contained-session checks (a quick loop while working on
    /// sessions); the full scenario is the default.
    #[arg(long)]
    sessions_only: bool,
    /// After the checks, keep the test host booted until the file target/e2e-run/release
    /// exists (enter it with `nsenter -t PID -a`, PID as printed).
    #[arg(long)]
    hold: bool,
}

/// What runs in the booted test host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Everything: the seed's checks, sessions, verify, lifecycle.
    Full,
    /// Install, configure, and the contained-session checks only.
    Sessions,
    /// Install, configure, then the launch and bridge benchmarks (`cargo xtask bench-launch`).
    Bench { runs: u32 },
    /// Install, then the no-op apply and grant/revoke benchmarks (`cargo xtask bench`).
    BenchHelper { runs: u32 },
}

/// `cargo xtask repo`.
pub fn repo_command(a: &RepoArgs) -> Result<()> {
    let root = crate::cmd::project_root();
    let key = match &a.key_id {
        Some(id) => repo::SigningKey::user(id),
        None => repo::SigningKey::throwaway()?,
    };
    let out = root.join("target/dist/repo");
    repo::build(&root.join("target/dist"), &out, &key)?;
    println!("wrote {out}");
    Ok(())
}

/// `cargo xtask e2e`.
pub fn e2e_command(a: &E2eArgs) -> Result<()> {
    let root = crate::cmd::project_root();
    main(
        &root,
        Opts {
            keep: a.keep,
            artefacts: a.artefacts.clone(),
            dist_upgrade: false,
            only: Vec::new(),
            hold: a.hold,
            scenario: if a.sessions_only {
                Scenario::Sessions
            } else {
                Scenario::Full
            },
        },
    )
    .map(|_| ())
}

/// `cargo xtask bench-launch` and `cargo xtask bench`: the packages built now, in a booted test
/// host.
pub fn bench_command(scenario: Scenario) -> Result<()> {
    let root = crate::cmd::project_root();
    let ran = main(
        &root,
        Opts {
            keep: false,
            artefacts: None,
            dist_upgrade: false,
            only: Vec::new(),
            hold: false,
            scenario,
        },
    )?;
    if !ran {
        bail!("the benchmarks need root (they boot a test host): run them with sudo");
    }
    Ok(())
}

/// For `cargo xtask test`: the packages it just built. `Ok(false)`: skipped (not root).
pub fn for_test(packages: &crate::dist::Packages) -> Result<bool> {
    let root = crate::cmd::project_root();
    let dir = packages.deb.parent().context("the .deb has no directory")?;
    main(
        &root,
        Opts {
            keep: false,
            artefacts: Some(dir.to_owned()),
            dist_upgrade: true,
            only: vec![packages.deb.clone(), packages.rpm.clone()],
            hold: false,
            scenario: Scenario::Full,
        },
    )
}

pub struct Opts {
    /// Keep the test host's root file system and the work directory after the run.
    pub keep: bool,
    /// Use the .deb/.rpm in this directory instead of building them.
    pub artefacts: Option<Utf8PathBuf>,
    /// Build the upgrade packages with `dist --version-suffix` even with `artefacts`.
    pub dist_upgrade: bool,
    /// Only these files of `artefacts` (all .deb and .rpm in it when empty).
    pub only: Vec<Utf8PathBuf>,
    pub scenario: Scenario,
    pub hold: bool,
}

/// The version suffix of the rebuilt package the upgrade step installs.
pub const UPGRADE_SUFFIX: &str = "+e2e1";
/// The internet host's request log, in the logs directory.
const INTERNET_LOG: &str = "internet-host.log";

/// Step timings, printed as they happen and summed up at the end.
#[derive(Default)]
pub struct Steps {
    done: Vec<(String, f64, bool)>,
}

impl Steps {
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        println!("==> {name}");
        let t = Instant::now();
        let r = f();
        self.finish(name, t, r.is_ok());
        r
    }

    fn finish(&mut self, name: &str, t: Instant, ok: bool) {
        let secs = t.elapsed().as_secs_f64();
        println!(
            "<== {name}: {} in {secs:.1} s",
            if ok { "done" } else { "FAILED" }
        );
        self.done.push((name.to_owned(), secs, ok));
    }

    fn summary(&self) {
        println!("\nStep timings:");
        for (name, secs, ok) in &self.done {
            println!(
                "  {secs:7.1} s  {}  {name}",
                if *ok { "ok  " } else { "FAIL" }
            );
        }
    }
}

/// Everything the scenario works with.
pub struct Lab {
    pub rootfs: Utf8PathBuf,
    pub certs: net::Certs,
    pub checks: Checks,
    pub rpm_name: Option<String>,
    pub rpm2_name: Option<String>,
    pub steps: Steps,
    // Dropped in this order: test host, internet host, namespaces.
    container: Option<Container>,
    _internet: net::InternetHost,
    net: net::TestNet,
    logs: Utf8PathBuf,
    work: Utf8PathBuf,
    pkgs: Utf8PathBuf,
    repo_dir: Utf8PathBuf,
    key: repo::SigningKey,
    boots: u32,
}

impl Lab {
    /// The booted test host.
    pub fn c(&self) -> &Container {
        self.container.as_ref().expect("the test host is booted")
    }

    /// The internet host's namespace, for clients that come from the test internet.
    pub fn inet_ns(&self) -> &str {
        &self.net.inet_ns
    }

    /// The internet host's request log (one line per request, with its path).
    pub fn internet_log(&self) -> Utf8PathBuf {
        self.logs.join(INTERNET_LOG)
    }

    /// A timed scenario step.
    pub fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Lab) -> Result<T>) -> Result<T> {
        println!("==> {name}");
        let t = Instant::now();
        let r = f(self);
        self.steps.finish(name, t, r.is_ok());
        r
    }

    fn boot(&mut self) -> Result<()> {
        self.boots += 1;
        let c = Container::boot(
            &self.rootfs,
            &self.net.host_ns_path(),
            &self.logs,
            self.boots,
        )?;
        println!(
            "    test host booted (boot {}, leader pid {})",
            self.boots, c.leader
        );
        self.container = Some(c);
        Ok(())
    }

    /// Powers the test host off and boots the same root file system again.
    pub fn reboot(&mut self) -> Result<()> {
        if let Some(c) = self.container.take() {
            c.poweroff();
        }
        self.boot()
    }

    /// Publishes a higher version of the .deb (and .rpm) in the repository; returns the .deb's
    /// version. The packages `dist --version-suffix` built, or else (with --artefacts) a copy of
    /// the .deb with a higher version in its control file.
    pub fn publish_upgrade(&mut self) -> Result<String> {
        let deb = first_with_ext(&self.pkgs, ".deb")?.context("no .deb to upgrade from")?;
        let v1 = run(Command::new("dpkg-deb").args(["--field", deb.as_str(), "Version"]))?;
        let upgrade = self.work.join("upgrade-packages");
        let new_deb = match first_with_ext(&upgrade, ".deb").ok().flatten() {
            Some(d) => {
                let dst = self.pkgs.join(d.file_name().unwrap_or_default());
                fs::copy(&d, &dst)?;
                if let Some(r) = first_with_ext(&upgrade, ".rpm")? {
                    let name = r.file_name().unwrap_or_default().to_owned();
                    fs::copy(&r, self.pkgs.join(&name))?;
                    self.rpm2_name = Some(name);
                }
                dst
            }
            None => {
                let v2 = format!("{}{UPGRADE_SUFFIX}", v1.trim());
                repo::rebuild_deb_with_version(&deb, &v2, &self.work.join("rebuild"), &self.pkgs)?
            }
        };
        let v2 = run(Command::new("dpkg-deb").args(["--field", new_deb.as_str(), "Version"]))?;
        repo::build(&self.pkgs, &self.repo_dir, &self.key)?;
        println!(
            "    published {} next to {} in the repository",
            v2.trim(),
            v1.trim()
        );
        Ok(v2.trim().to_owned())
    }
}

fn first_with_ext(dir: &Utf8Path, ext: &str) -> Result<Option<Utf8PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut v: Vec<_> = dir
        .read_dir_utf8()?
        .flatten()
        .map(|e| e.into_path())
        .filter(|p| p.as_str().ends_with(ext))
        .collect();
    v.sort();
    Ok(v.into_iter().next())
}

/// Entry point: SKIPPED (`Ok(false)`) unless root; otherwise the whole run, cleanup included.
pub fn main(root: &Utf8Path, opts: Opts) -> Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: cargo xtask e2e: needs root (debootstrap, network namespaces, \
             systemd-nspawn). Run it as root; CI does."
        );
        return Ok(false);
    }
    proc::install_signal_handler()?;
    let t = Instant::now();
    let logs = root.join("target/e2e-logs");
    let mut steps = Steps::default();
    let r = run_all(root, &opts, &logs, &mut steps);
    proc::run_all();
    let total = t.elapsed().as_secs_f64();
    match r {
        Ok(()) => {
            println!("\ne2e: PASSED in {total:.0} s (logs: {logs})");
            Ok(true)
        }
        Err(e) => {
            eprintln!("\ne2e: FAILED after {total:.0} s: {e:#}\nlogs, including the test host's journal: {logs}");
            Err(e)
        }
    }
}

fn run_all(root: &Utf8Path, opts: &Opts, logs: &Utf8Path, steps: &mut Steps) -> Result<()> {
    let target = root.join("target");
    let work = target.join("e2e-run");
    if logs.exists() {
        fs::remove_dir_all(logs)?;
    }
    fs::create_dir_all(logs)?;
    fs::create_dir_all(&work)?;
    net::remove_stale();

    let upgrade_dir = work.join("upgrade-packages");
    rootfs::remove_tree(&upgrade_dir)?;
    let build_upgrade = || {
        crate::dist::dist(&crate::dist::DistArgs {
            version_suffix: Some(UPGRADE_SUFFIX.to_owned()),
            out_dir: Some(upgrade_dir.clone()),
            ..Default::default()
        })
    };
    let mut only = opts.only.clone();
    let input = match &opts.artefacts {
        Some(dir) if opts.dist_upgrade => {
            steps.run(
                "build: upgrade packages (dist --version-suffix)",
                build_upgrade,
            )?;
            dir.clone()
        }
        Some(dir) => dir.clone(),
        None => steps.run(
            "build: packages (cargo xtask dist, and again with a version suffix)",
            || {
                let built = crate::dist::dist(&crate::dist::DistArgs::default())?;
                if opts.scenario == Scenario::Full {
                    build_upgrade()?;
                }
                only = vec![built.deb.clone(), built.rpm.clone()];
                Ok(built.deb.parent().context("no dist directory")?.to_owned())
            },
        )?,
    };
    let pkgs = work.join("packages");
    let repo_dir = work.join("repo");
    let (key, rpm_name) = steps.run("build: signed apt and dnf repositories", || {
        rootfs::remove_tree(&pkgs)?;
        fs::create_dir_all(&pkgs)?;
        let mut n = 0;
        for e in input
            .read_dir_utf8()
            .with_context(|| format!("cannot read {input}"))?
        {
            let p = e?.into_path();
            let wanted = only.is_empty() || only.contains(&p);
            if wanted && (p.as_str().ends_with(".deb") || p.as_str().ends_with(".rpm")) {
                fs::copy(&p, pkgs.join(p.file_name().unwrap_or_default()))?;
                n += 1;
            }
        }
        if first_with_ext(&pkgs, ".deb")?.is_none() {
            bail!("no .deb in {input} ({n} packages found)");
        }
        let key = repo::SigningKey::throwaway()?;
        repo::build(&pkgs, &repo_dir, &key)?;
        let rpm = first_with_ext(&pkgs, ".rpm")?.and_then(|p| p.file_name().map(str::to_owned));
        Ok((key, rpm))
    })?;
    let rootfs_dir = work.join("rootfs");
    steps.run("rootfs: Debian bookworm minbase + systemd (cached)", || {
        let tar = rootfs::cached_tarball(&target.join("e2e-cache"))?;
        rootfs::unpack(&tar, &rootfs_dir)
    })?;
    if opts.scenario == Scenario::Full {
        steps.run(
            "chroot: install and remove in a chroot leave this machine alone",
            || {
                let tar = rootfs::cached_tarball(&target.join("e2e-cache"))?;
                let deb = first_with_ext(&pkgs, ".deb")?.context("no .deb to install")?;
                let done = chroot::install_and_remove(&tar, &deb, &work.join("chroot"))?;
                println!("    {done}: this machine's ruleset unchanged, its canary alive");
                Ok(())
            },
        )?;
        steps.run(
            "piuparts: install, purge, reinstall, upgrade from the previous release",
            || {
                let upgrade = first_with_ext(&upgrade_dir, ".deb")?.context("no upgrade .deb")?;
                let previous = crate::piuparts::Previous {
                    repo: &repo_dir,
                    suite: repo::SUITE,
                    component: repo::COMPONENT,
                    keyring: repo::KEYRING,
                };
                if !crate::piuparts::run(&upgrade, Some(&previous))? {
                    bail!("piuparts needs root");
                }
                Ok(())
            },
        )?;
        steps.run(
            "dnf: install, upgrade, remove, reinstall from the signed dnf repository",
            || {
                let tar = rootfs::cached_tarball(&target.join("e2e-cache"))?;
                let rpm = first_with_ext(&pkgs, ".rpm")?.context("no .rpm to install")?;
                let upgrade = first_with_ext(&upgrade_dir, ".rpm")?.context("no upgrade .rpm")?;
                for line in
                    dnf::install_upgrade_remove(&tar, &rpm, &upgrade, &work.join("dnf"), &key)?
                {
                    println!("    {line}");
                }
                println!("    this machine's nft ruleset unchanged");
                Ok(())
            },
        )?;
    }
    let keep_rootfs = opts.keep;
    let rootfs_for_guard = rootfs_dir.clone();
    let _rootfs_guard = proc::guard("test host root file system", move || {
        if keep_rootfs {
            println!("    --keep: leaving {rootfs_for_guard}");
        } else if let Err(e) = rootfs::remove_tree(&rootfs_for_guard) {
            eprintln!("    {e:#}");
        }
    });
    let (testnet, certs, internet) =
        steps.run("network: namespaces, veth, test internet host", || {
            let testnet = net::create()?;
            let certs = net::make_certs(&work.join("certs"))?;
            let inet =
                net::start_internet(&testnet, &repo_dir, &certs, &work, &logs.join(INTERNET_LOG))?;
            Ok((testnet, certs, inet))
        })?;
    let mut lab = Lab {
        rootfs: rootfs_dir,
        certs,
        checks: Checks::default(),
        rpm_name,
        rpm2_name: None,
        steps: std::mem::take(steps),
        container: None,
        _internet: internet,
        net: testnet,
        logs: logs.to_owned(),
        work: work.clone(),
        pkgs,
        repo_dir,
        key,
        boots: 0,
    };
    let r = lab
        .step("boot the test host (systemd-nspawn --boot)", Lab::boot)
        .and_then(|()| match opts.scenario {
            Scenario::Full => scenario::run(&mut lab),
            Scenario::Sessions => scenario::run_sessions_only(&mut lab),
            Scenario::Bench { runs } => bench::run(&mut lab, runs),
            Scenario::BenchHelper { runs } => bench::run_helper(&mut lab, runs),
        });
    if opts.hold {
        let release = work.join("release");
        let _ = fs::remove_file(&release);
        println!(
            "    --hold: the test host runs (nsenter -t {} -a); create {release} to end",
            lab.c().leader
        );
        while !release.exists() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    if let Some(c) = lab.container.take() {
        c.poweroff();
    }
    *steps = std::mem::take(&mut lab.steps);
    steps.summary();
    let failures = lab.checks.failures();
    let passed = lab.checks.results.iter().filter(|r| r.1.is_ok()).count();
    println!(
        "\nChecks: {passed} passed, {} failed (of {})",
        failures.len(),
        lab.checks.results.len()
    );
    let mut report = String::new();
    for (name, r, secs) in &lab.checks.results {
        let status = match r {
            Ok(()) => "PASS".to_owned(),
            Err(e) => format!("FAIL: {e}"),
        };
        report.push_str(&format!("{secs:6.1} s  {name}: {status}\n"));
    }
    fs::write(logs.join("checks.txt"), &report)?;
    r?;
    if !failures.is_empty() {
        bail!("failed checks: {}", failures.join(", "));
    }
    Ok(())
}
