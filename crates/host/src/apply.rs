//! The executor: observes the host, runs a `plan::Plan` step by step with an undo for each, rolls back on failure.
//!
//! Invariants: every artefact is validated (`nft -c -f`, `visudo -cf`) before anything goes live;
//! files are written atomically (temp file in the same directory, fsync, rename); the table is
//! replaced by the rule file in one nft transaction; a failing step undoes the completed ones in
//! reverse order. Accounts are created first and never deleted (not even on rollback).
//! The CA step (`ca refresh`) is undone by restoring the previous bundle; the proxy CA key's
//! owner and mode are never loosened again. A bundle that cannot be built from its inputs only
//! warns: the previous bundle stays.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Group, Pid, Uid, User};

use super::fs::write_atomic;
use super::process::{processes_of, run, run_ok};
use pipelock_policy::config::Config;
use pipelock_policy::facts::DistroPaths;
use pipelock_policy::paths;
use pipelock_policy::plan::{
    self, AccountTool, AccountsObserved, FileState, Manifest, NftState, Observed, Plan, Step,
    UnitState, UserUnitLink, Validator,
};

/// Test hook: the id of a step after which the executor fails as if the step had failed
/// (after its undo was recorded). Honoured only in debug builds.
pub const FAIL_AT_ENV: &str = "PIPELOCK_CONTAINMENT_FAIL_AT";

/// Where output goes: the commands print it; tests may capture it.
pub type Log<'a> = &'a mut dyn FnMut(&str);

/// systemd is PID 1 (the test every maintainer script uses).
pub fn systemd_running() -> bool {
    Utf8Path::new("/run/systemd/system").is_dir()
}

/// We may run inside a chroot: our `/` is not PID 1's, or that cannot be told (no /proc, no
/// access to PID 1's root, as in `dnf --installroot`). Loading the table or signalling processes
/// here would change the machine building the image, not the image.
pub fn in_chroot() -> bool {
    match (std::fs::metadata("/"), std::fs::metadata("/proc/1/root")) {
        (Ok(ours), Ok(init)) => ours.dev() != init.dev() || ours.ino() != init.ino(),
        _ => true,
    }
}

fn nft_table_name() -> String {
    format!("{} {}", paths::NFT_TABLE_FAMILY, paths::NFT_TABLE)
}

/// The live table, or why the kernel's nftables cannot be used from here.
pub fn observe_nft() -> NftState {
    if in_chroot() {
        return NftState::Unreachable(
            "running in a chroot (or / cannot be compared with PID 1's)".into(),
        );
    }
    // One call: the table's stateless text, or nft saying it is not there.
    match crate::verify::list_loaded_table() {
        Ok(Some(text)) => NftState::Present(text),
        Ok(None) => NftState::Absent,
        Err(err) => NftState::Unreachable(format!("`nft list table` failed: {err}")),
    }
}

fn systemctl_args<'a>(running: bool, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = Vec::new();
    if !running {
        // Offline: edits the unit symlinks on disk, talks to no manager.
        all.push("--root=/");
    }
    all.extend_from_slice(args);
    all
}

/// The state of each unit from two systemctl calls: `list-unit-files` (from disk; a unit
/// without a file is absent) and `is-active` (one line per unit, only when systemd runs).
fn observe_units(units: &[&str], running: bool) -> BTreeMap<String, UnitState> {
    let mut list_args = vec!["list-unit-files", "--no-legend", "--full", "--"];
    list_args.extend_from_slice(units);
    // No unit matched is exit status 1 with no output: every unit is absent.
    let files = run("systemctl", &systemctl_args(running, &list_args))
        .map(|out| unit_file_states(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default();
    let mut active_args = vec!["is-active", "--"];
    active_args.extend_from_slice(units);
    let active: Vec<bool> = match running.then(|| run("systemctl", &active_args)) {
        Some(Ok(out)) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|state| matches!(state.trim(), "active" | "reloading"))
            .collect(),
        _ => Vec::new(),
    };
    units
        .iter()
        .enumerate()
        .map(|(index, unit)| {
            let state = files.get(*unit).map(String::as_str);
            let unit_state = UnitState {
                installed: state.is_some(),
                enabled: state.is_some_and(|s| s.starts_with("enabled")),
                masked: state.is_some_and(|s| s.starts_with("masked")),
                active: active.len() == units.len() && active[index],
            };
            (unit.to_string(), unit_state)
        })
        .collect()
}

/// `systemctl list-unit-files --no-legend` lines (`UNIT STATE [PRESET]`) as unit -> state.
fn unit_file_states(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// Read a file's contents, mode and owner; absent when it does not exist.
pub fn observe_file(path: &Utf8Path) -> Result<FileState> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FileState::Absent),
        Err(err) => Err(err).with_context(|| format!("inspecting {path}")),
        Ok(meta) => {
            let contents = match std::fs::read(path) {
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    b"(not readable without root)\n".to_vec()
                }
                other => other.with_context(|| format!("reading {path}"))?,
            };
            Ok(FileState::Present {
                contents,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            })
        }
    }
}

pub fn read_manifest() -> Result<Option<Manifest>> {
    match std::fs::read_to_string(plan::MANIFEST_FILE) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", plan::MANIFEST_FILE)),
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a valid manifest", plan::MANIFEST_FILE)),
    }
}

/// Enabled `pipelock.service` user units: /etc/systemd/user and every home's ~/.config.
pub fn observe_user_units() -> Vec<UserUnitLink> {
    let mut roots: Vec<(Option<String>, Utf8PathBuf)> =
        vec![(None, Utf8PathBuf::from("/etc/systemd/user"))];
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 6 && !fields[5].is_empty() && fields[5] != "/" {
                roots.push((
                    Some(fields[0].to_string()),
                    Utf8Path::new(fields[5]).join(".config/systemd/user"),
                ));
            }
        }
    }
    let mut links = Vec::new();
    for (owner, root) in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let is_wants = dir
                .file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.ends_with(".wants"));
            let link = dir.join(plan::USER_PIPELOCK_UNIT);
            if !is_wants || std::fs::symlink_metadata(&link).is_err() {
                continue;
            }
            let (Ok(link), Ok(target)) = (
                Utf8PathBuf::from_path_buf(link.clone()),
                std::fs::read_link(&link).map(|t| Utf8PathBuf::from(t.to_string_lossy().as_ref())),
            ) else {
                continue;
            };
            let was_active = match &owner {
                Some(owner) if systemd_running() => run(
                    "systemctl",
                    &[
                        "--user",
                        "-M",
                        &format!("{owner}@"),
                        "is-active",
                        "--quiet",
                        plan::USER_PIPELOCK_UNIT,
                    ],
                )
                .map(|out| out.status.success())
                .unwrap_or(false),
                _ => false,
            };
            links.push(UserUnitLink {
                owner: owner.clone(),
                link,
                target,
                was_active,
            });
        }
    }
    links
}

fn deny_list_paths() -> impl Iterator<Item = Utf8PathBuf> {
    pipelock_policy::account::SCHEDULERS
        .iter()
        .map(|s| Utf8PathBuf::from(s.deny))
}

/// The host snapshot for `paths` plus what the previous manifest managed.
pub fn observe(paths_wanted: &[Utf8PathBuf]) -> Result<Observed> {
    let manifest = read_manifest()?;
    let mut all: Vec<Utf8PathBuf> = paths_wanted.to_vec();
    if let Some(manifest) = &manifest {
        all.extend(manifest.files.keys().cloned());
        all.extend(manifest.ca_bundle.iter().cloned());
        all.extend(manifest.grant_records.iter().cloned());
    }
    all.push(plan::MANIFEST_FILE.into());
    if let Ok(entries) = std::fs::read_dir(paths::WRAPPER_DIR) {
        for entry in entries.flatten() {
            if let Ok(path) = Utf8PathBuf::from_path_buf(entry.path()) {
                all.push(path);
            }
        }
    }
    let mut files = BTreeMap::new();
    for path in all {
        let state = observe_file(&path)?;
        files.insert(path, state);
    }
    let running = systemd_running();
    let unit_names: Vec<&str> = plan::UNITS
        .iter()
        .chain(pipelock_policy::account::SSHD_UNITS)
        .copied()
        .collect();
    let units = observe_units(&unit_names, running);
    let schedulers = pipelock_policy::account::SCHEDULERS
        .iter()
        .filter(|s| super::facts::scheduler_installed(s))
        .map(|s| Utf8PathBuf::from(s.deny))
        .collect();
    Ok(Observed {
        accounts: None,
        agent: None,
        files,
        manifest,
        nft: observe_nft(),
        table_drift: false,
        systemd_running: running,
        units,
        user_unit_links: observe_user_units(),
        ca: None,
        schedulers,
        chroot: in_chroot(),
    })
}

/// The combined CA bundle as it is, and as `ca refresh` would write it now.
pub fn observe_ca(config: &Config, facts: &pipelock_policy::facts::Facts) -> Result<plan::CaState> {
    let planned = crate::ca::plan(config, facts);
    let bundle = planned.paths.combined_bundle.clone();
    let notes = match &planned.bundle {
        Ok(built) => crate::ca::proxy_ca_lines(&planned.paths, &built.proxy_ca)
            .into_iter()
            .chain(built.warnings.iter().map(|w| format!("warning: {w}")))
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(plan::CaState {
        current: observe_file(&bundle)?,
        bundle,
        desired: planned.bundle.map(|b| b.text),
        key_changes: planned.key_changes,
        key_fix: planned.owners.map(|owners| plan::KeyFix {
            key: planned.paths.proxy_ca_key.clone(),
            owners,
        }),
        notes,
    })
}

/// One run at a time (dpkg and an admin may call apply together): an exclusive lock on
/// /run/lock/pipelock-containment.lock, held until the returned guard drops. No /run (an odd
/// chroot): no lock.
pub fn lock(log: Log<'_>) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    let dir = ["/run/lock", "/run"]
        .into_iter()
        .find(|d| Utf8Path::new(d).is_dir());
    let Some(dir) = dir else {
        return Ok(None);
    };
    let path = Utf8Path::new(dir).join("pipelock-containment.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock {path}"))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(guard) => Ok(Some(guard)),
        Err((file, _)) => {
            log(&format!(
                "waiting for another pipelock-containment run ({path})"
            ));
            Flock::lock(file, FlockArg::LockExclusive)
                .map(Some)
                .map_err(|(_, err)| anyhow!("locking {path}: {err}"))
        }
    }
}

/// Refuse to run over upstream `pipelock contain`.
pub fn refuse_upstream() -> Result<()> {
    let found: Vec<&str> = plan::UPSTREAM_ARTEFACTS
        .iter()
        .copied()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    if !found.is_empty() {
        bail!(
            "upstream `pipelock contain` is installed here ({}): the two would fight over the \
             same users and rules. Run `pipelock contain rollback` first (or remove those files), \
             then run `pipelock-containment apply` again",
            found.join(", ")
        );
    }
    Ok(())
}

/// Which accounts exist, and how to create the missing ones.
pub fn observe_accounts(config: &Config) -> Result<AccountsObserved> {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let distro = DistroPaths::detect(&os_release, |path| path.exists());
    let agent_exists = User::from_name(&config.users.agent)?.is_some();
    let proxy_exists = User::from_name(&config.users.proxy)?.is_some();
    let group_exists = Group::from_name(&config.users.operators_group)?.is_some();
    // Asked only when an account is to be made: it runs a program, and apply is mostly a no-op.
    let sysusers_available = !(agent_exists && proxy_exists && group_exists)
        && Utf8Path::new(plan::SYSUSERS_FILE).exists()
        && run("systemd-sysusers", &["--version"]).is_ok();
    Ok(AccountsObserved {
        agent_exists,
        proxy_exists,
        group_exists,
        family: distro.family,
        nologin: distro.nologin,
        sysusers_available,
    })
}

/// Undo records, run in reverse order on failure.
#[derive(Debug)]
enum Undo {
    RestoreFile {
        path: Utf8PathBuf,
        previous: FileState,
    },
    RemoveDir(Utf8PathBuf),
    RestoreTable(Option<String>),
    Systemctl(Vec<String>),
    /// A daemon-reload (and proxy restart) after every other undo.
    ReloadAtEnd {
        restart_proxy: bool,
    },
    Symlink {
        link: Utf8PathBuf,
        target: Utf8PathBuf,
    },
}

/// Runs steps, remembering how to undo each.
pub struct Executor<'a> {
    log: Log<'a>,
    undo: Vec<(String, Undo)>,
    fail_at: Option<String>,
    systemd_running: bool,
    nft_before: NftState,
    /// Remove: keep going after a failed step.
    best_effort: bool,
    errors: Vec<String>,
    /// Remove: an agent process survived, so the table must stay.
    agent_survived: bool,
}

impl<'a> Executor<'a> {
    /// `systemd_running` and `nft_before` as observed before the plan was made.
    pub fn new(log: Log<'a>, systemd_running: bool, nft_before: NftState) -> Executor<'a> {
        let fail_at = if cfg!(debug_assertions) {
            std::env::var(FAIL_AT_ENV).ok().filter(|s| !s.is_empty())
        } else {
            None
        };
        Executor {
            log,
            undo: Vec::new(),
            fail_at,
            systemd_running,
            nft_before,
            best_effort: false,
            errors: Vec::new(),
            agent_survived: false,
        }
    }

    /// Run every step; on the first failure undo the completed ones and return the error.
    pub fn run_all(&mut self, plan: &Plan) -> Result<()> {
        for step in &plan.steps {
            let id = step.id();
            let removes_table = matches!(step, Step::DeleteNftTable)
                || matches!(step, Step::StopUnit { unit } if unit == plan::CONTAINMENT_UNIT);
            if self.agent_survived && removes_table {
                (self.log)(&format!(
                    "  KEPT {id}: a process of the agent is still running, so the table stays"
                ));
                self.errors.push(format!(
                    "{id}: skipped; the table stays because a process of the agent could not be \
                     ended: end it, then run `pipelock-containment remove` again"
                ));
                continue;
            }
            (self.log)(&format!("  {step}"));
            let result = self.run_step(step).and_then(|()| match &self.fail_at {
                Some(fail) if *fail == id => bail!("injected failure ({FAIL_AT_ENV}={id})"),
                _ => Ok(()),
            });
            if let Err(err) = result {
                if self.best_effort {
                    if matches!(step, Step::EndProcesses { .. }) {
                        self.agent_survived = true;
                    }
                    (self.log)(&format!("  FAILED {id}: {err:#}"));
                    self.errors.push(format!("{id}: {err:#}"));
                    continue;
                }
                let (undone, failed) = self.rollback();
                let outcome = if failed.is_empty() {
                    "the host is as before".to_string()
                } else {
                    format!("ROLLBACK INCOMPLETE, check by hand: {}", failed.join("; "))
                };
                return Err(err.context(format!(
                    "step `{id}` ({step}) failed; rolled back {undone} completed step(s), \
                     {outcome}"
                )));
            }
        }
        Ok(())
    }

    fn rollback(&mut self) -> (usize, Vec<String>) {
        let records = std::mem::take(&mut self.undo);
        let count = records.len();
        let mut failed = Vec::new();
        let mut reload = false;
        let mut restart_proxy = false;
        for (id, undo) in records.into_iter().rev() {
            if let Undo::ReloadAtEnd { restart_proxy: r } = undo {
                reload = true;
                restart_proxy |= r;
                continue;
            }
            if let Err(err) = self.undo_one(&undo) {
                (self.log)(&format!("  rollback of {id} FAILED: {err:#}"));
                failed.push(format!("{id}: {err:#}"));
            } else {
                (self.log)(&format!("  rolled back {id}"));
            }
        }
        if reload {
            let _ = run("systemctl", &["daemon-reload"]);
            if restart_proxy {
                let _ = run("systemctl", &["try-restart", plan::PROXY_UNIT]);
            }
        }
        (count, failed)
    }

    fn undo_one(&mut self, undo: &Undo) -> Result<()> {
        match undo {
            Undo::RestoreFile { path, previous } => match previous {
                FileState::Absent => remove_if_present(path),
                FileState::Present {
                    contents,
                    mode,
                    uid,
                    gid,
                } => write_atomic(path, contents, (*uid, *gid), *mode),
            },
            Undo::RemoveDir(dir) => {
                let _ = std::fs::remove_dir(dir);
                Ok(())
            }
            Undo::RestoreTable(previous) => restore_table(previous.as_deref()),
            Undo::Systemctl(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_ok("systemctl", &args).map(drop)
            }
            Undo::ReloadAtEnd { .. } => Ok(()),
            Undo::Symlink { link, target } => {
                if let Some(parent) = link.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(target, link)
                    .with_context(|| format!("re-creating {link}"))
            }
        }
    }

    fn record(&mut self, id: String, undo: Undo) {
        self.undo.push((id, undo));
    }

    fn run_step(&mut self, step: &Step) -> Result<()> {
        let id = step.id();
        match step {
            Step::Sysusers { .. } | Step::CreateGroup { .. } | Step::CreateUser { .. } => {
                run_account_step(step)
            }
            Step::Validate {
                path,
                validator,
                contents,
            } => validate(path, *validator, contents, &self.nft_before, self.log),
            Step::DisableUserUnit { link } => {
                if let (true, Some(owner)) = (link.was_active, &link.owner) {
                    let machine = format!("{owner}@");
                    self.record(
                        format!("{id}:stop"),
                        Undo::Systemctl(
                            ["--user", "-M", &machine, "start", plan::USER_PIPELOCK_UNIT]
                                .map(String::from)
                                .to_vec(),
                        ),
                    );
                    run_ok(
                        "systemctl",
                        &["--user", "-M", &machine, "stop", plan::USER_PIPELOCK_UNIT],
                    )?;
                }
                std::fs::remove_file(&link.link)
                    .with_context(|| format!("removing {}", link.link))?;
                self.record(
                    id,
                    Undo::Symlink {
                        link: link.link.clone(),
                        target: link.target.clone(),
                    },
                );
                Ok(())
            }
            Step::WriteFile {
                path,
                mode,
                contents,
                previous,
            } => {
                for dir in create_parents(path)? {
                    self.record(format!("mkdir:{dir}"), Undo::RemoveDir(dir));
                }
                self.record(
                    id,
                    Undo::RestoreFile {
                        path: path.clone(),
                        previous: previous.clone(),
                    },
                );
                write_atomic(path, contents.as_bytes(), (0, 0), *mode)
            }
            Step::RemoveFile { path, previous } => {
                self.record(
                    id,
                    Undo::RestoreFile {
                        path: path.clone(),
                        previous: previous.clone(),
                    },
                );
                remove_if_present(path)
            }
            Step::LoadNftTable { rule_file } => {
                let previous = match &self.nft_before {
                    NftState::Present(text) => Some(text.clone()),
                    _ => None,
                };
                self.record(id, Undo::RestoreTable(previous));
                run_ok("nft", &["-f", rule_file.as_str()]).map(drop)
            }
            Step::RefreshCaBundle {
                bundle,
                change,
                previous,
                contents,
                key_fix,
                notes,
                ..
            } => {
                let write = *change != plan::CaChange::KeyOnly;
                if write {
                    for dir in create_parents(bundle)? {
                        self.record(format!("mkdir:{dir}"), Undo::RemoveDir(dir));
                    }
                    // The key fix is not undone: a key the agent could read stays closed.
                    self.record(
                        id,
                        Undo::RestoreFile {
                            path: bundle.clone(),
                            previous: previous.clone(),
                        },
                    );
                }
                let key_fix = key_fix.as_ref().map(|fix| (fix.key.as_path(), &fix.owners));
                let key = crate::ca::install_planned(bundle, contents, write, key_fix)?;
                let key_lines = key.map(|k| k.report(false)).unwrap_or_default();
                for line in notes.iter().chain(&key_lines) {
                    (self.log)(&format!("  {line}"));
                }
                Ok(())
            }
            Step::DaemonReload => {
                self.record(
                    id,
                    Undo::ReloadAtEnd {
                        restart_proxy: false,
                    },
                );
                run_ok("systemctl", &["daemon-reload"]).map(drop)
            }
            Step::EnableUnit { unit } => {
                let undo = systemctl_args(self.systemd_running, &["disable", unit]);
                self.record(
                    id,
                    Undo::Systemctl(undo.iter().map(|s| s.to_string()).collect()),
                );
                run_ok(
                    "systemctl",
                    &systemctl_args(self.systemd_running, &["enable", unit]),
                )
                .map(drop)
            }
            Step::StartUnit {
                unit,
                restart,
                required,
            } => {
                if *restart {
                    self.record(
                        id,
                        Undo::ReloadAtEnd {
                            restart_proxy: unit == plan::PROXY_UNIT,
                        },
                    );
                } else {
                    self.record(id, Undo::Systemctl(vec!["stop".into(), unit.clone()]));
                }
                let verb = if *restart { "restart" } else { "start" };
                match run_ok("systemctl", &[verb, unit]) {
                    Err(err) if !*required => {
                        (self.log)(&format!(
                            "  warning: {err:#}; see `journalctl -u {unit}` (containment is in \
                             force; agents cannot reach the network until the proxy runs)"
                        ));
                        Ok(())
                    }
                    other => other.map(drop),
                }
            }
            Step::WriteManifest { manifest } => {
                let previous = observe_file(Utf8Path::new(plan::MANIFEST_FILE))?;
                for dir in create_parents(Utf8Path::new(plan::MANIFEST_FILE))? {
                    self.record(format!("mkdir:{dir}"), Undo::RemoveDir(dir));
                }
                self.record(
                    id,
                    Undo::RestoreFile {
                        path: plan::MANIFEST_FILE.into(),
                        previous,
                    },
                );
                let mut text = serde_json::to_string_pretty(manifest)?;
                text.push('\n');
                write_atomic(
                    Utf8Path::new(plan::MANIFEST_FILE),
                    text.as_bytes(),
                    (0, 0),
                    0o644,
                )
            }
            Step::StopUnit { unit } => run_ok("systemctl", &["stop", unit]).map(drop),
            Step::DisableUnit { unit } => run_ok(
                "systemctl",
                &systemctl_args(self.systemd_running, &["disable", unit]),
            )
            .map(drop),
            Step::EndProcesses {
                user,
                uid,
                grace_seconds,
            } => {
                let message = end_processes(user, *uid, Duration::from_secs(*grace_seconds))?;
                (self.log)(&format!("  {message}"));
                Ok(())
            }
            // Already gone (the unit's ExecStop deleted it) is fine.
            Step::DeleteNftTable => restore_table(None),
            Step::RemoveDirIfEmpty { path } => {
                if let Ok(mut entries) = std::fs::read_dir(path) {
                    if entries.next().is_none() {
                        std::fs::remove_dir(path).with_context(|| format!("removing {path}"))?;
                    }
                }
                Ok(())
            }
            Step::RevokeGrants { records } => {
                let (revoked, problems) = crate::grants::revoke_all(records)?;
                if revoked.is_empty() && problems.is_empty() {
                    (self.log)("  no active workspace grant");
                }
                for path in &revoked {
                    (self.log)(&format!("  revoked the grant of {path}"));
                }
                if !problems.is_empty() {
                    bail!(
                        "{} grant(s) could not be revoked: {}",
                        problems.len(),
                        problems.join("; ")
                    );
                }
                Ok(())
            }
            Step::EditDenyList {
                path,
                contents,
                previous,
                ..
            } => {
                self.record(
                    id,
                    Undo::RestoreFile {
                        path: path.clone(),
                        previous: previous.clone(),
                    },
                );
                match (contents, previous) {
                    (None, _) => remove_if_present(path),
                    (Some(text), FileState::Present { mode, uid, gid, .. }) => {
                        write_atomic(path, text.as_bytes(), (*uid, *gid), *mode & 0o7777)
                    }
                    (Some(text), FileState::Absent) => {
                        write_atomic(path, text.as_bytes(), (0, 0), 0o644)
                    }
                }
            }
            Step::ReloadUnit { unit } => {
                if let Err(err) = run_ok("systemctl", &["try-reload-or-restart", unit]) {
                    (self.log)(&format!("  warning: {err:#}; reload {unit} by hand"));
                }
                Ok(())
            }
            // Like the account it belongs to, the home is made and never taken back.
            Step::CreateAgentHome { path, uid, gid } => {
                create_parents(&path.join("x"))?;
                nix::unistd::chown(
                    path.as_std_path(),
                    Some(Uid::from_raw(*uid)),
                    Some(nix::unistd::Gid::from_raw(*gid)),
                )
                .with_context(|| format!("chown {path}"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750))
                    .with_context(|| format!("chmod {path}"))
            }
            // A lock that fails warns: the rule and the launcher still contain the agent.
            Step::LockAccount { user } => {
                if let Err(err) = run_ok("usermod", &["--lock", "--expiredate", "1", user]) {
                    (self.log)(&format!(
                        "  warning: {err:#}: PAM logins as {user} may still work"
                    ));
                }
                Ok(())
            }
            Step::DeleteUser { user, remove_home } => {
                let args: &[&str] = if *remove_home {
                    &["--remove", user]
                } else {
                    &[user]
                };
                run_ok("userdel", args).map(drop)
            }
            Step::DeleteGroup { group } => run_ok("groupdel", &[group]).map(drop),
            Step::RemoveTree { path } => match std::fs::remove_dir_all(path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow!("removing {path}: {err}"))
                }
                _ => Ok(()),
            },
            Step::RemoveAgentJobs { user } => {
                for line in remove_agent_jobs(user, self.systemd_running)? {
                    (self.log)(&format!("  {line}"));
                }
                Ok(())
            }
            Step::RestoreUserUnit { link } => {
                if std::fs::symlink_metadata(&link.link).is_err() {
                    if let Some(parent) = link.link.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::os::unix::fs::symlink(&link.target, &link.link)
                        .with_context(|| format!("re-creating {}", link.link))?;
                }
                if let (true, true, Some(owner)) =
                    (link.was_active, self.systemd_running, &link.owner)
                {
                    let machine = format!("{owner}@");
                    run_ok(
                        "systemctl",
                        &["--user", "-M", &machine, "start", plan::USER_PIPELOCK_UNIT],
                    )?;
                }
                Ok(())
            }
        }
    }
}

fn validate(
    path: &Utf8Path,
    validator: Validator,
    contents: &str,
    nft: &NftState,
    log: Log<'_>,
) -> Result<()> {
    let dir = private_temp_dir()?;
    let file = dir.join(path.file_name().unwrap_or("artefact"));
    let result = (|| {
        write_atomic(&file, contents.as_bytes(), (0, 0), 0o440)?;
        match validator {
            Validator::Visudo => run_ok("visudo", &["-c", "-q", "-f", file.as_str()])
                .map(drop)
                .with_context(|| format!("visudo rejects the rendered {path}")),
            Validator::Nft => match (run_ok("nft", &["-c", "-f", file.as_str()]), nft) {
                (Ok(_), _) => Ok(()),
                (Err(err), NftState::Unreachable(reason))
                    if !err.to_string().contains("not found on PATH") =>
                {
                    log(&format!(
                        "  note: the rule file could not be checked against the kernel \
                         ({reason}); the boot unit loads it at first boot"
                    ));
                    Ok(())
                }
                (Err(err), _) if err.to_string().contains("not found on PATH") => Err(err),
                (Err(err), _) => Err(err.context(format!("nft rejects the rendered {path}"))),
            },
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn private_temp_dir() -> Result<Utf8PathBuf> {
    let base = std::env::temp_dir();
    let base = Utf8PathBuf::from_path_buf(base).unwrap_or_else(|_| "/tmp".into());
    for n in 0..100 {
        let dir = base.join(format!("pipelock-containment.{}.{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("creating {dir}")),
        }
    }
    bail!("cannot create a private directory in {base}")
}

use std::os::unix::fs::DirBuilderExt;

/// Create the missing parents of `path` (mode 0755); returns them, outermost first.
fn create_parents(path: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_owned());
        dir = d.parent();
    }
    missing.reverse();
    for d in &missing {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .with_context(|| format!("creating the directory {d}"))?;
    }
    Ok(missing)
}

/// Load the previous table back (or delete ours when there was none), in one transaction.
fn restore_table(previous: Option<&str>) -> Result<()> {
    let table = nft_table_name();
    match previous {
        None => {
            let out = run(
                "nft",
                &["delete", "table", paths::NFT_TABLE_FAMILY, paths::NFT_TABLE],
            )?;
            if !out.status.success() {
                // Already absent is fine.
                let err = String::from_utf8_lossy(&out.stderr);
                if !err.contains("No such file") {
                    bail!("`nft delete table {table}` failed: {}", err.trim());
                }
            }
            Ok(())
        }
        Some(text) => {
            let dir = private_temp_dir()?;
            let file = dir.join("previous.nft");
            let script = format!("table {table}\ndelete table {table}\n{text}");
            let result = write_atomic(&file, script.as_bytes(), (0, 0), 0o600)
                .and_then(|()| run_ok("nft", &["-f", file.as_str()]).map(drop));
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
    }
}

fn run_account_step(step: &Step) -> Result<()> {
    match step {
        Step::Sysusers {
            file,
            agent,
            agent_home,
        } => {
            run_ok("systemd-sysusers", &[file.as_str()])?;
            // sysusers makes no home directories.
            if let Some(user) = User::from_name(agent)? {
                if !agent_home.exists() {
                    create_parents(&agent_home.join("x"))?;
                    nix::unistd::chown(agent_home.as_std_path(), Some(user.uid), Some(user.gid))?;
                    std::fs::set_permissions(agent_home, std::fs::Permissions::from_mode(0o750))?;
                }
            }
            Ok(())
        }
        Step::CreateGroup { name, tool } => match tool {
            AccountTool::Adduser => run_ok("addgroup", &["--system", "--quiet", name]).map(drop),
            _ => run_ok("groupadd", &["-r", name]).map(drop),
        },
        Step::CreateUser {
            name,
            home,
            create_home,
            shell,
            tool,
        } => {
            match tool {
                AccountTool::Adduser => {
                    let mut args = vec![
                        "--system",
                        "--quiet",
                        "--group",
                        "--home",
                        home.as_str(),
                        "--shell",
                        shell.as_str(),
                    ];
                    if !create_home {
                        args.push("--no-create-home");
                    }
                    args.push(name);
                    run_ok("adduser", &args)?;
                }
                _ => {
                    let args = [
                        "-r",
                        "-U",
                        "-d",
                        home.as_str(),
                        "-s",
                        shell.as_str(),
                        if *create_home { "-m" } else { "-M" },
                        "-c",
                        "pipelock-containment",
                        name,
                    ];
                    run_ok("useradd", &args)?;
                }
            }
            if *create_home && home.exists() {
                std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o750))?;
            }
            Ok(())
        }
        _ => unreachable!("not an account step"),
    }
}

/// Unlink `path` (never what a symlink there points to); already gone is fine.
fn remove_if_present(path: &Utf8Path) -> Result<()> {
    // Checked first: on a read-only file system unlink fails with EROFS even for no file.
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {path}"))
        }
        _ => Ok(()),
    }
}

/// The agent's crontab, at jobs, linger flag and systemd user units go, so nothing starts it
/// after the table is gone. The spools are root's; the home is the agent's, so its user units
/// are deleted by a process running as the agent (no symlink there reaches anything else).
fn remove_agent_jobs(user: &str, systemd_running: bool) -> Result<Vec<String>> {
    use pipelock_policy::account::{AT_SPOOLS, CRONTAB_SPOOLS, LINGER_DIR, USER_UNIT_DIR};
    let mut done = Vec::new();
    let Some(account) = User::from_name(user)? else {
        return Ok(vec![format!("no user {user}: no job to delete")]);
    };
    let uid = account.uid.as_raw();
    let regular_of_uid = |path: &Utf8Path| {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.uid() == uid)
    };
    for spool in CRONTAB_SPOOLS {
        let crontab = Utf8Path::new(spool).join(user);
        if regular_of_uid(&crontab) {
            remove_if_present(&crontab)?;
            done.push(format!("deleted the crontab {crontab}"));
        }
    }
    for spool in AT_SPOOLS {
        let Ok(entries) = std::fs::read_dir(spool) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(job) = Utf8PathBuf::from_path_buf(entry.path()) else {
                continue;
            };
            if regular_of_uid(&job) {
                remove_if_present(&job)?;
                done.push(format!("deleted the at job {job}"));
            }
        }
    }
    let linger = Utf8Path::new(LINGER_DIR).join(user);
    if std::fs::symlink_metadata(&linger).is_ok() {
        if systemd_running {
            run_ok("loginctl", &["disable-linger", user])?;
        }
        remove_if_present(&linger)?;
        done.push(format!("disabled lingering ({linger})"));
    }
    let units = Utf8PathBuf::from_path_buf(account.dir)
        .map_err(|_| anyhow!("the home of {user} is not UTF-8"))?
        .join(USER_UNIT_DIR);
    if std::fs::symlink_metadata(&units).is_ok() {
        let uid = uid.to_string();
        let gid = account.gid.as_raw().to_string();
        run_ok(
            "setpriv",
            &[
                "--reuid",
                &uid,
                "--regid",
                &gid,
                "--clear-groups",
                "--",
                "rm",
                "-rf",
                "--",
                units.as_str(),
            ],
        )?;
        done.push(format!("deleted the systemd user units in {units}"));
    }
    if done.is_empty() {
        done.push(format!(
            "{user} had no crontab, at job, linger or user unit"
        ));
    }
    Ok(done)
}

/// SIGTERM every process of `user`, wait up to `grace`, SIGKILL what is left.
pub fn end_processes(user: &str, uid: Option<u32>, grace: Duration) -> Result<String> {
    let uid = match (uid, User::from_name(user)?) {
        (Some(uid), _) => uid,
        (None, Some(account)) => account.uid.as_raw(),
        (None, None) => return Ok(format!("no user {user}: no process to end")),
    };
    let found = processes_of(uid);
    if found.is_empty() {
        return Ok(format!("no process was running as {user}"));
    }
    for pid in &found {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut left = processes_of(uid);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = processes_of(uid);
    }
    let killed = left.len();
    // SIGKILL to everything of the UID at once: kill(-1) issued as the agent reaches every
    // process it may signal in one pass of the kernel's task list, so a fork-and-exit loop has
    // no child left outside it. Repeated until nothing of the UID is left.
    let mut rounds = 0;
    while !processes_of(uid).is_empty() {
        if rounds == 20 {
            let left = processes_of(uid);
            bail!(
                "{} process(es) of {user} (UID {uid}) survived SIGKILL: {:?}",
                left.len(),
                left
            );
        }
        kill_all_as(uid)?;
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!(
        "ended {} process(es) running as {user}: {} on SIGTERM, {killed} with SIGKILL after {} s \
         (kill(-1) as the agent, {rounds} round(s))",
        found.len().max(killed),
        found.len().saturating_sub(killed),
        grace.as_secs()
    ))
}

/// `kill(-1, SIGKILL)` from a child that has become `uid`: every process of the UID but the
/// child itself gets it, atomically.
fn kill_all_as(uid: u32) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let gid = User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(uid, |u| u.gid.as_raw());
    let mut command = Command::new("/bin/true");
    // SAFETY: only async-signal-safe calls between fork and exec (set*id, kill).
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
            nix::unistd::setuid(Uid::from_raw(uid))?;
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            Ok(())
        });
    }
    let status = command
        .status()
        .context("starting a process as the agent to send kill(-1, SIGKILL)")?;
    if !status.success() {
        bail!("the kill(-1) process as UID {uid} failed ({status})");
    }
    Ok(())
}

/// The agent account's home and shadow entry, for `plan_agent_account`. None: no such user.
fn observe_agent(config: &Config) -> Result<Option<plan::AgentObserved>> {
    let Some(user) = User::from_name(&config.users.agent)? else {
        return Ok(None);
    };
    let home =
        Utf8PathBuf::from_path_buf(user.dir).unwrap_or_else(|_| config.users.agent_home.clone());
    let shadow = std::fs::read_to_string("/etc/shadow").ok().map(|text| {
        pipelock_policy::facts::shadow_state(&text, &user.name, super::facts::days_since_epoch())
    });
    Ok(Some(plan::AgentObserved {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home_exists: home.exists(),
        home,
        shadow,
    }))
}

/// The outcome of `apply_host`, for output.
pub struct Applied {
    pub plan: Plan,
    pub account_steps: Vec<Step>,
}

/// Gather facts, render, observe, plan. Accounts that do not exist yet are assumed (dry run).
/// What `plan_for_host` found and planned.
pub struct Planned {
    pub plan: Plan,
    pub observed: Observed,
    pub warnings: Vec<String>,
    pub facts: pipelock_policy::facts::Facts,
}

/// `manage_units`: enable and start the units (false under a maintainer script, where the
/// package's own systemd snippets do it and honour policy-rc.d, presets and masks).
pub fn plan_for_host(
    config: &Config,
    users_created: &[String],
    groups_created: &[String],
    now: u64,
    manage_units: bool,
) -> Result<Planned> {
    let mut warnings = Vec::new();
    let missing = User::from_name(&config.users.agent)?.is_none()
        || User::from_name(&config.users.proxy)?.is_none();
    let assumed = if missing {
        warnings.push(
            "the users do not exist yet: the diff shows assumed UIDs (999/998); apply creates \
             them and renders their real UIDs"
                .to_string(),
        );
        crate::facts::AssumedUids {
            agent: Some(999),
            proxy: Some(998),
        }
    } else {
        Default::default()
    };
    let facts = crate::facts::gather(config, assumed)?;
    let rendered = pipelock_policy::render::render_all(config, &facts)?;
    let wanted: Vec<Utf8PathBuf> = plan::desired_files(&rendered)
        .into_iter()
        .map(|f| f.0)
        .chain(deny_list_paths())
        .collect();
    let mut observed = observe(&wanted)?;
    observed.table_drift = loaded_table_drifted(&observed.nft);
    observed.ca = Some(observe_ca(config, &facts)?);
    observed.accounts = Some(observe_accounts(config)?);
    observed.agent = observe_agent(config)?;
    let plan = plan::plan_apply(&plan::ApplyInput {
        config,
        rendered: &rendered,
        observed: &observed,
        users_created,
        groups_created,
        version: env!("CARGO_PKG_VERSION"),
        agent_uid: facts.agent.uid,
        now,
        manage_units,
    });
    Ok(Planned {
        plan,
        observed,
        warnings,
        facts,
    })
}

/// Whether the loaded table differs from what the rule file on disk loads. Both texts come
/// from nft's own printer (the file is loaded into a scratch network namespace), so only a
/// real difference counts. A changed rule file is handled by the plan itself.
fn loaded_table_drifted(nft: &NftState) -> bool {
    let NftState::Present(loaded) = nft else {
        return false;
    };
    let Ok(on_disk) = std::fs::read_to_string(paths::RULE_FILE) else {
        return false;
    };
    match crate::verify::normalize_through_nft(&on_disk) {
        Ok(expected) => {
            pipelock_policy::verify::normalize_table(loaded)
                != pipelock_policy::verify::normalize_table(&expected)
        }
        Err(_) => false,
    }
}

/// Apply for real: accounts, then plan and execute with rollback.
pub fn apply_host(config: &Config, log: Log<'_>, manage_units: bool) -> Result<Applied> {
    let _lock = lock(log)?;
    refuse_upstream()?;
    let accounts = observe_accounts(config)?;
    let account_steps = plan::plan_accounts(config, &accounts);
    let mut users_created = Vec::new();
    let mut groups_created = Vec::new();
    for step in &account_steps {
        log(&format!("  {step}"));
        run_account_step(step).with_context(|| format!("step `{}` ({step}) failed", step.id()))?;
    }
    for (exists, name) in [
        (accounts.agent_exists, &config.users.agent),
        (accounts.proxy_exists, &config.users.proxy),
    ] {
        if !exists && User::from_name(name)?.is_some() {
            users_created.push(name.clone());
        }
    }
    if !accounts.group_exists && Group::from_name(&config.users.operators_group)?.is_some() {
        groups_created.push(config.users.operators_group.clone());
    }
    if !account_steps.is_empty() {
        // The packaged sysusers file may not declare the operators group: make sure it exists.
        if Group::from_name(&config.users.operators_group)?.is_none() {
            run_ok("groupadd", &["-r", &config.users.operators_group])?;
            groups_created.push(config.users.operators_group.clone());
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Planned { plan, observed, .. } =
        plan_for_host(config, &users_created, &groups_created, now, manage_units)?;
    let mut executor = Executor::new(log, observed.systemd_running, observed.nft.clone());
    executor.run_all(&plan)?;
    Ok(Applied {
        plan,
        account_steps,
    })
}

/// Remove (best effort: every step is tried; errors are collected and returned). `config` is
/// the config as it is now, or the defaults when it is gone.
/// What remove did: its plan, the steps that failed, and whether the table stayed because a
/// process of the agent survived (that alone fails a package removal).
pub struct Removed {
    pub plan: Plan,
    pub errors: Vec<String>,
    pub table_kept: bool,
}

pub fn remove_host(config: &Config, log: Log<'_>) -> Result<Removed> {
    let _lock = lock(log)?;
    let mut wanted = vec![
        config.ca.combined_bundle.clone(),
        config.grants.records.clone(),
        paths::SUDOERS_GRANTS_DROPIN.into(),
        pipelock_policy::ca::PATH_UNIT_DROPIN.into(),
        pipelock_policy::account::SSHD_DROPIN.into(),
    ];
    wanted.extend(deny_list_paths());
    let observed = observe(&wanted)?;
    let plan = plan::plan_remove(config, &observed);
    let mut executor = Executor::new(log, observed.systemd_running, observed.nft.clone());
    executor.best_effort = true;
    executor.run_all(&plan)?;
    let errors = std::mem::take(&mut executor.errors);
    let table_kept = executor.agent_survived;
    Ok(Removed {
        plan,
        errors,
        table_kept,
    })
}

/// What purge works on: the manifest, the config if still there, and which of the accounts
/// they name exist.
fn observe_purge(config: Option<&Config>) -> Result<plan::PurgeInput> {
    let manifest = read_manifest().ok().flatten();
    let mut input = plan::PurgeInput {
        manifest: manifest.clone(),
        config: config.cloned(),
        ..Default::default()
    };
    let (mut users, mut groups, mut homes) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for (agent, proxy, group) in input.named() {
        for (user, is_agent) in [(agent, true), (proxy, false)] {
            if user.is_empty() {
                continue;
            }
            let Some(account) = User::from_name(user)? else {
                continue;
            };
            users.insert(user.to_string());
            // Only a real directory the agent owns counts as its home.
            let Ok(home) = Utf8PathBuf::from_path_buf(account.dir) else {
                continue;
            };
            let ours = is_agent
                && std::fs::symlink_metadata(&home)
                    .is_ok_and(|m| m.is_dir() && m.uid() == account.uid.as_raw());
            if ours && !homes.contains(&home) {
                homes.push(home);
            }
        }
        if !group.is_empty() && Group::from_name(group)?.is_some() {
            groups.insert(group.to_string());
        }
    }
    (input.users_present, input.groups_present, input.agent_homes) = (users, groups, homes);
    let records = manifest
        .as_ref()
        .and_then(|m| m.grant_records.clone())
        .into_iter()
        .chain(config.map(|c| c.grants.records.clone()));
    for path in records.filter(|p| !p.starts_with(paths::STATE_DIR)) {
        for file in [path.clone(), Utf8PathBuf::from(format!("{path}.lock"))] {
            if std::fs::symlink_metadata(&file).is_ok()
                && !input.outside_records.iter().any(|(p, _)| *p == file)
            {
                let state = observe_file(&file)?;
                input.outside_records.push((file, state));
            }
        }
    }
    Ok(input)
}

/// Purge after remove: observe, plan (`plan::plan_purge`), carry out best-effort; returns the
/// steps that failed.
pub fn purge_host(config: Option<&Config>, log: Log<'_>) -> Result<Vec<String>> {
    let plan = plan::plan_purge(&observe_purge(config)?);
    for note in &plan.notes {
        log(&format!("  {note}"));
    }
    // Purge runs no unit and loads no table: the executor needs only the table as it is.
    let mut executor = Executor::new(log, systemd_running(), observe_nft());
    executor.best_effort = true;
    executor.run_all(&plan)?;
    Ok(std::mem::take(&mut executor.errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_file_states_read_both_column_layouts_and_skip_nothing_else() {
        let states = unit_file_states(
            "ssh.service enabled enabled\npipelock-proxy.service masked enabled\n\
             cron.service disabled\n\n",
        );
        assert_eq!(states.len(), 3);
        assert_eq!(states["ssh.service"], "enabled");
        assert_eq!(states["pipelock-proxy.service"], "masked");
        assert_eq!(states["cron.service"], "disabled");
        assert!(unit_file_states("").is_empty());
    }
}
