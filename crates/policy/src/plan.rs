//! The plan: from config, rendered files and an observed host snapshot, the ordered steps of apply/remove (pure, no I/O).
//!
//! `host::apply` walks a plan, records an undo for every step and rolls back on failure. Nothing
//! here reads the host: the executor hands in an [`Observed`] snapshot, so every decision
//! (what changes, in which order, what is deferred) is testable without root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::facts::DistroFamily;
use crate::paths;
use crate::render::{FileKind, RenderedFile};

/// The boot unit that loads the rule file.
pub const CONTAINMENT_UNIT: &str = "pipelock-containment.service";
/// The egress proxy unit.
pub const PROXY_UNIT: &str = "pipelock-proxy.service";
/// The path unit that refreshes the combined CA bundle when an input changes.
pub const CA_PATH_UNIT: &str = crate::ca::PATH_UNIT;
/// The timer that revokes expired workspace grants.
pub const GRANTS_TIMER: &str = "pipelock-containment-grants.timer";
/// Units apply enables, in order.
pub const UNITS: &[&str] = &[
    CONTAINMENT_UNIT,
    PROXY_UNIT,
    CA_PATH_UNIT,
    GRANTS_TIMER,
    crate::session::BRIDGE_SOCKET_UNIT,
    crate::watch::UNIT,
    crate::audit::UNIT,
];
/// Helper units: started when not running, never required (a failure only warns).
const HELPER_UNITS: &[&str] = &[
    CA_PATH_UNIT,
    GRANTS_TIMER,
    crate::session::BRIDGE_SOCKET_UNIT,
    crate::watch::UNIT,
    crate::audit::UNIT,
];
/// The operator's own pipelock user unit that install migrates away from.
pub const USER_PIPELOCK_UNIT: &str = "pipelock.service";
pub use crate::paths::MANAGED_FILES_LIST;
pub use crate::paths::PURGE_ACCOUNTS_FILE;
use crate::render::FIXED_FILES;
/// The manifest of everything apply manages.
pub const MANIFEST_FILE: &str = "/var/lib/pipelock-containment/manifest.json";
/// The packaged sysusers.d file (defaults only).
pub const SYSUSERS_FILE: &str = "/usr/lib/sysusers.d/pipelock-containment.conf";
/// Home of the proxy user (the proxy unit's StateDirectory).
pub const PROXY_HOME: &str = "/var/lib/pipelock";
/// Artefacts of upstream `pipelock contain`; apply refuses to run over them.
pub const UPSTREAM_ARTEFACTS: &[&str] = &[
    "/usr/local/bin/plk-launch",
    "/etc/sudoers.d/50-pipelock-agent",
];

/// A file on the host as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    Absent,
    Present {
        contents: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl FileState {
    pub fn contents(&self) -> Option<&[u8]> {
        match self {
            FileState::Absent => None,
            FileState::Present { contents, .. } => Some(contents),
        }
    }
}

/// Whether the kernel's nftables can be used from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftState {
    /// `nft list table` failed (chroot, image build, no CAP_NET_ADMIN): the load is deferred.
    Unreachable(String),
    /// Reachable; the table is not loaded.
    Absent,
    /// Reachable; the table is loaded (its `nft list table` text).
    Present(String),
}

/// One unit as systemctl reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnitState {
    pub installed: bool,
    pub enabled: bool,
    pub active: bool,
    /// Masked (by the admin, or by deb-systemd-helper after a remove): never enabled or started.
    pub masked: bool,
}

/// An enablement symlink of an operator's `pipelock.service` user unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserUnitLink {
    /// The user whose ~/.config holds the link; None for the global /etc/systemd/user.
    pub owner: Option<String>,
    pub link: Utf8PathBuf,
    pub target: Utf8PathBuf,
    /// The unit was running (for that user) when install stopped it.
    #[serde(default)]
    pub was_active: bool,
}

/// What apply recorded on its last successful run: `/var/lib/pipelock-containment/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// The helper version that wrote it.
    pub version: String,
    /// Seconds since the epoch of the last apply that changed something.
    pub applied_at: u64,
    /// Every file apply manages, with its sha256.
    pub files: BTreeMap<Utf8PathBuf, String>,
    /// Accounts apply created (they are never deleted, except on an opted-in purge).
    pub users_created: Vec<String>,
    pub groups_created: Vec<String>,
    /// The config's account names and purge setting at apply time: dpkg deletes the conffile
    /// before postrm purge runs, so purge reads them from here.
    pub agent_user: String,
    pub proxy_user: String,
    pub operators_group: String,
    pub delete_users_on_purge: bool,
    /// System units apply enabled (remove disables the package's units regardless).
    pub units_enabled: Vec<String>,
    /// Operators' pipelock user units install disabled; remove restores exactly these.
    pub user_units_disabled: Vec<UserUnitLink>,
    /// Whether the table was loaded into the kernel (false: deferred to first boot).
    pub table_loaded: bool,
    /// The agent UID the rule file was rendered for.
    #[serde(default)]
    pub agent_uid: Option<u32>,
    /// The combined CA bundle apply maintains (`ca.combined_bundle`); remove deletes it.
    #[serde(default)]
    pub ca_bundle: Option<Utf8PathBuf>,
    /// The workspace grant records (`grants.records`); remove revokes them, purge deletes them.
    #[serde(default)]
    pub grant_records: Option<Utf8PathBuf>,
    /// cron/at deny lists apply listed the agent in (value: apply created the file); remove
    /// takes back exactly these lines and deletes the files it created.
    #[serde(default)]
    pub deny_lists: BTreeMap<Utf8PathBuf, bool>,
}

impl Manifest {
    /// Equal apart from the timestamp.
    fn same_content(&self, other: &Manifest) -> bool {
        let mut a = self.clone();
        a.applied_at = other.applied_at;
        a == *other
    }
}

/// Everything the executor observed on the host before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Every desired path and every path in the previous manifest; a missing key counts as absent.
    pub files: BTreeMap<Utf8PathBuf, FileState>,
    pub manifest: Option<Manifest>,
    pub nft: NftState,
    /// The loaded table differs from what the rule file on disk loads (both listed by nft):
    /// someone changed it by hand. Apply reloads it.
    pub table_drift: bool,
    /// `/run/systemd/system` exists: systemd is PID 1 and units can be started.
    pub systemd_running: bool,
    pub units: BTreeMap<String, UnitState>,
    /// Enabled operator pipelock user units (migration).
    pub user_unit_links: Vec<UserUnitLink>,
    /// The combined CA bundle: what is there and what apply would write. None: not looked at.
    pub ca: Option<CaState>,
    /// The accounts and how to create them. None: not looked at (remove).
    pub accounts: Option<AccountsObserved>,
    /// The agent account as it is. None: it does not exist (yet), or not looked at.
    pub agent: Option<AgentObserved>,
    /// Deny lists (`account::SCHEDULERS`) whose scheduler is installed.
    pub schedulers: BTreeSet<Utf8PathBuf>,
    /// A chroot or image build (or it cannot be told): no process is signalled, since the
    /// processes here belong to the machine building the image.
    pub chroot: bool,
}

/// The combined CA bundle as it is and as apply would make it. `host::apply` reads the inputs
/// and builds the would-be text with the pure `ca::build_bundle`, so the plan (and `--dry-run`)
/// sees a changed proxy CA or system bundle and a second apply stays a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaState {
    pub bundle: Utf8PathBuf,
    pub current: FileState,
    /// The would-be contents, or why the bundle cannot be built (a proxy CA file that is not a
    /// CA, no system bundle): then the previous bundle stays and apply warns.
    pub desired: Result<String, String>,
    /// What fixing the proxy CA key would change (empty: right already, or no key), or why it
    /// cannot be fixed.
    pub key_changes: Result<Vec<String>, String>,
    /// The key and who must own it; None when the owners could not be looked up.
    pub key_fix: Option<KeyFix>,
    /// What the bundle says about the proxy CA, and its warnings (expiry), for the log.
    pub notes: Vec<String>,
}

/// The proxy CA key and the owners it gets (the proxy user, mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFix {
    pub key: Utf8PathBuf,
    pub owners: crate::ca::Owners,
}

/// What the CA step changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaChange {
    /// New bundle contents.
    Write,
    /// Same contents; owner or mode wrong.
    Permissions,
    /// The bundle is right (or cannot be built); only the key's owner/mode are fixed.
    KeyOnly,
}

impl Observed {
    pub fn file(&self, path: &Utf8Path) -> FileState {
        self.files.get(path).cloned().unwrap_or(FileState::Absent)
    }
    fn unit(&self, unit: &str) -> UnitState {
        self.units.get(unit).copied().unwrap_or_default()
    }
}

/// How a validator checks an artefact before it goes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validator {
    /// `nft -c -f FILE`
    Nft,
    /// `visudo -cf FILE`
    Visudo,
}

/// How system accounts are created on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountTool {
    /// `systemd-sysusers` with the packaged file (config names are the defaults).
    Sysusers,
    /// `groupadd -r` / `useradd -r` (Fedora and others).
    Useradd,
    /// `addgroup --system` / `adduser --system --group` (Debian).
    Adduser,
}

/// One step of a plan. Each has a stable id (`Step::id`) for messages and fault injection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Run `systemd-sysusers FILE`, then make the agent's home.
    Sysusers {
        file: Utf8PathBuf,
        agent: String,
        agent_home: Utf8PathBuf,
    },
    CreateGroup {
        name: String,
        tool: AccountTool,
    },
    CreateUser {
        name: String,
        home: Utf8PathBuf,
        create_home: bool,
        shell: Utf8PathBuf,
        tool: AccountTool,
    },
    /// Check an artefact with its validator before anything goes live.
    Validate {
        path: Utf8PathBuf,
        validator: Validator,
        #[serde(skip)]
        contents: String,
    },
    /// Stop and disable an operator's pipelock user unit (the system proxy replaces it).
    DisableUserUnit {
        link: UserUnitLink,
    },
    /// Write a file atomically (temp file, fsync, rename), owned by root, with this mode.
    WriteFile {
        path: Utf8PathBuf,
        mode: u32,
        #[serde(skip)]
        contents: String,
        #[serde(skip)]
        previous: FileState,
    },
    /// Remove a file apply managed that is no longer wanted (a wrapper no longer configured).
    RemoveFile {
        path: Utf8PathBuf,
        #[serde(skip)]
        previous: FileState,
    },
    /// `nft -f RULE_FILE`: the file replaces the table in one transaction.
    LoadNftTable {
        rule_file: Utf8PathBuf,
    },
    /// `ca refresh`: write the combined CA bundle (0644 root:root) and make the proxy CA key
    /// the proxy user's, mode 0600. Undo restores the previous bundle; the key stays fixed.
    RefreshCaBundle {
        bundle: Utf8PathBuf,
        change: CaChange,
        /// What the key fix changes (empty: nothing).
        key_changes: Vec<String>,
        /// Why the bundle cannot be built (it is then left as it is; the step only warns).
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
        /// Old and new bundle text, for the diff.
        #[serde(skip)]
        previous: FileState,
        #[serde(skip)]
        contents: String,
        /// The key fix, when `key_changes` is not empty.
        #[serde(skip)]
        key_fix: Option<KeyFix>,
        /// Logged when the step runs.
        #[serde(skip)]
        notes: Vec<String>,
    },
    DaemonReload,
    /// `systemctl enable UNIT` (with `--root=/`, offline, when systemd is not running).
    EnableUnit {
        unit: String,
    },
    /// `systemctl start` or `restart`; `required: false` failures only warn.
    StartUnit {
        unit: String,
        restart: bool,
        required: bool,
    },
    WriteManifest {
        #[serde(skip)]
        manifest: Manifest,
    },
    // Steps of remove.
    StopUnit {
        unit: String,
    },
    DisableUnit {
        unit: String,
    },
    /// SIGTERM every process of the user (or of `uid`, when the account was renamed or
    /// recreated), wait a grace period, then SIGKILL.
    EndProcesses {
        user: String,
        uid: Option<u32>,
        grace_seconds: u64,
    },
    DeleteNftTable,
    RemoveDirIfEmpty {
        path: Utf8PathBuf,
    },
    RestoreUserUnit {
        link: UserUnitLink,
    },
    /// `revoke --all`: take back every workspace grant recorded in `records`.
    RevokeGrants {
        records: Utf8PathBuf,
    },
    /// List the agent in a cron/at deny list, or take it back out (`contents: None`: delete the
    /// file apply created). The file keeps its owner and mode.
    EditDenyList {
        path: Utf8PathBuf,
        user: String,
        listed: bool,
        #[serde(skip)]
        contents: Option<String>,
        #[serde(skip)]
        previous: FileState,
    },
    /// `systemctl try-reload-or-restart UNIT` for a running daemon that must re-read a drop-in;
    /// a failure only warns.
    ReloadUnit {
        unit: String,
    },
    /// Delete the agent's crontab, at jobs, linger flag and systemd user units.
    RemoveAgentJobs {
        user: String,
    },
    /// Make the agent's home (mode 0750, the agent's).
    CreateAgentHome {
        path: Utf8PathBuf,
        uid: u32,
        gid: u32,
    },
    /// `usermod --lock --expiredate 1 USER`: PAM-based logins (su, sshd, cron, at, login)
    /// refuse it, while session units (no PAM) and runuser still run as it. Never undone, not
    /// even by remove. An account outside /etc/shadow (LDAP, sssd) is only warned about.
    LockAccount {
        user: String,
    },
    // Steps of purge.
    /// `userdel [--remove] USER`: the agent's home goes with it (a UID that may be reused must
    /// not own files).
    DeleteUser {
        user: String,
        remove_home: bool,
    },
    /// `groupdel GROUP`.
    DeleteGroup {
        group: String,
    },
    /// Delete a directory and everything below it (symlinks are removed, not followed).
    RemoveTree {
        path: Utf8PathBuf,
    },
}

impl Step {
    /// A stable id: names the step in errors and in `PIPELOCK_CONTAINMENT_FAIL_AT`.
    pub fn id(&self) -> String {
        match self {
            Step::Sysusers { .. } => "users:sysusers".into(),
            Step::CreateGroup { name, .. } => format!("users:group:{name}"),
            Step::CreateUser { name, .. } => format!("users:user:{name}"),
            Step::Validate { path, .. } => format!("validate:{path}"),
            Step::DisableUserUnit { link } => format!("user-unit:disable:{}", link.link),
            Step::WriteFile { path, .. } => format!("write:{path}"),
            Step::RemoveFile { path, .. } => format!("remove:{path}"),
            Step::LoadNftTable { .. } => "nft:load".into(),
            Step::RefreshCaBundle { .. } => "ca:bundle".into(),
            Step::DaemonReload => "systemd:daemon-reload".into(),
            Step::EnableUnit { unit } => format!("systemd:enable:{unit}"),
            Step::StartUnit { unit, .. } => format!("systemd:start:{unit}"),
            Step::WriteManifest { .. } => "manifest".into(),
            Step::StopUnit { unit } => format!("systemd:stop:{unit}"),
            Step::DisableUnit { unit } => format!("systemd:disable:{unit}"),
            Step::EndProcesses { user, .. } => format!("processes:{user}"),
            Step::DeleteNftTable => "nft:delete".into(),
            Step::RemoveDirIfEmpty { path } => format!("rmdir:{path}"),
            Step::RestoreUserUnit { link } => format!("user-unit:restore:{}", link.link),
            Step::RevokeGrants { .. } => "grants:revoke-all".into(),
            Step::EditDenyList { path, .. } => format!("deny-list:{path}"),
            Step::ReloadUnit { unit } => format!("systemd:reload:{unit}"),
            Step::RemoveAgentJobs { user } => format!("jobs:{user}"),
            Step::CreateAgentHome { path, .. } => format!("home:{path}"),
            Step::LockAccount { user } => format!("users:lock:{user}"),
            Step::DeleteUser { user, .. } => format!("users:delete:{user}"),
            Step::DeleteGroup { group } => format!("users:delete-group:{group}"),
            Step::RemoveTree { path } => format!("rm-tree:{path}"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Sysusers { file, .. } => {
                write!(f, "create the system users with systemd-sysusers {file}")
            }
            Step::CreateGroup { name, tool } => {
                write!(f, "create system group {name} ({})", tool_name(*tool, true))
            }
            Step::CreateUser { name, home, .. } => {
                write!(f, "create system user {name} (home {home})")
            }
            Step::Validate {
                path, validator, ..
            } => write!(
                f,
                "validate {path} with {}",
                match validator {
                    Validator::Nft => "nft -c -f",
                    Validator::Visudo => "visudo -cf",
                }
            ),
            Step::DisableUserUnit { link } => write!(
                f,
                "stop and disable {} for {} (link {})",
                USER_PIPELOCK_UNIT,
                link.owner.as_deref().unwrap_or("all users"),
                link.link
            ),
            Step::WriteFile {
                path,
                mode,
                previous,
                ..
            } => match previous {
                FileState::Absent => write!(f, "create {path} (mode {mode:04o})"),
                FileState::Present { .. } => write!(f, "update {path} (mode {mode:04o})"),
            },
            Step::RemoveFile { path, .. } => write!(f, "remove {path}"),
            Step::LoadNftTable { rule_file } => {
                write!(f, "load the nft table from {rule_file} (one transaction)")
            }
            Step::RefreshCaBundle {
                bundle,
                change,
                key_changes,
                ..
            } => {
                match change {
                    CaChange::Write => write!(f, "write the combined CA bundle {bundle}")?,
                    CaChange::Permissions => write!(
                        f,
                        "set owner/mode of the combined CA bundle {bundle} to root:root 0644"
                    )?,
                    CaChange::KeyOnly => write!(f, "fix the proxy CA key")?,
                }
                if !key_changes.is_empty() {
                    write!(f, " (proxy CA key: {})", key_changes.join(", "))?;
                }
                Ok(())
            }
            Step::DaemonReload => write!(f, "systemctl daemon-reload"),
            Step::EnableUnit { unit } => write!(f, "enable {unit}"),
            Step::StartUnit { unit, restart, .. } => {
                write!(f, "{} {unit}", if *restart { "restart" } else { "start" })
            }
            Step::WriteManifest { .. } => write!(f, "record the manifest {MANIFEST_FILE}"),
            Step::StopUnit { unit } => write!(f, "stop {unit}"),
            Step::DisableUnit { unit } => write!(f, "disable {unit}"),
            Step::EndProcesses {
                user,
                uid,
                grace_seconds,
            } => write!(
                f,
                "end processes of {user}{} (SIGTERM, {grace_seconds} s grace, then SIGKILL)",
                uid.map(|uid| format!(" (former agent UID {uid})"))
                    .unwrap_or_default()
            ),
            Step::DeleteNftTable => write!(f, "delete the nft table inet {}", paths::NFT_TABLE),
            Step::RemoveDirIfEmpty { path } => write!(f, "remove the directory {path} if empty"),
            Step::RestoreUserUnit { link } => write!(
                f,
                "re-enable {} for {} (link {})",
                USER_PIPELOCK_UNIT,
                link.owner.as_deref().unwrap_or("all users"),
                link.link
            ),
            Step::RevokeGrants { records } => {
                write!(f, "revoke every workspace grant recorded in {records}")
            }
            Step::EditDenyList {
                path,
                user,
                listed,
                contents,
                previous,
            } => match (listed, contents, previous) {
                (true, _, FileState::Absent) => write!(f, "create {path} listing {user}"),
                (true, _, _) => write!(f, "list {user} in {path}"),
                (false, None, _) => write!(f, "remove {path} (apply created it for {user})"),
                (false, Some(_), _) => write!(f, "take {user} out of {path}"),
            },
            Step::ReloadUnit { unit } => write!(f, "reload {unit} (it re-reads its config)"),
            Step::RemoveAgentJobs { user } => write!(
                f,
                "delete {user}'s crontab, at jobs, linger flag and systemd user units"
            ),
            Step::CreateAgentHome { path, .. } => write!(f, "create the agent's home {path}"),
            Step::LockAccount { user } => write!(
                f,
                "lock and expire the agent account {user} (usermod --lock --expiredate 1)"
            ),
            Step::DeleteUser {
                user,
                remove_home: true,
            } => write!(f, "delete user {user} and its home"),
            Step::DeleteUser { user, .. } => write!(f, "delete user {user}"),
            Step::DeleteGroup { group } => write!(f, "delete group {group}"),
            Step::RemoveTree { path } => write!(f, "remove {path} and everything below it"),
        }
    }
}

fn tool_name(tool: AccountTool, group: bool) -> &'static str {
    match (tool, group) {
        (AccountTool::Sysusers, _) => "systemd-sysusers",
        (AccountTool::Useradd, true) => "groupadd -r",
        (AccountTool::Useradd, false) => "useradd -r",
        (AccountTool::Adduser, true) => "addgroup --system",
        (AccountTool::Adduser, false) => "adduser --system --group",
    }
}

/// An ordered plan, with what it could not do here and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The accounts to create first (`plan_accounts`): apply creates them, then plans the rest
    /// again with their real UIDs. The same ids, in the same order, as the real run's.
    pub accounts: Vec<Step>,
    pub steps: Vec<Step>,
    /// What is deferred or skipped (no systemd, no kernel nftables, unit not installed).
    pub notes: Vec<String>,
    /// What the operator must fix, though apply goes on (a proxy CA file that is not a CA).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Nothing to change.
    pub fn is_noop(&self) -> bool {
        self.accounts.is_empty() && self.steps.is_empty()
    }

    /// Unified diffs of every changed file, then the list of steps.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            match step {
                Step::WriteFile {
                    path,
                    mode,
                    contents,
                    previous,
                } => {
                    let (old, old_label) = match previous {
                        FileState::Absent => (String::new(), "/dev/null".to_string()),
                        FileState::Present {
                            contents,
                            mode: old_mode,
                            ..
                        } => {
                            if old_mode & 0o7777 != *mode {
                                out.push_str(&format!(
                                    "mode {path}: {:04o} -> {mode:04o}\n",
                                    old_mode & 0o7777
                                ));
                            }
                            (
                                String::from_utf8_lossy(contents).into_owned(),
                                format!("a{path}"),
                            )
                        }
                    };
                    if old != *contents {
                        out.push_str(&unified(&old, contents, &old_label, &format!("b{path}")));
                    }
                }
                Step::RemoveFile { path, previous } => {
                    let old = String::from_utf8_lossy(previous.contents().unwrap_or_default())
                        .into_owned();
                    out.push_str(&unified(&old, "", &format!("a{path}"), "/dev/null"));
                }
                Step::EditDenyList {
                    path,
                    contents,
                    previous,
                    ..
                } => {
                    let old = String::from_utf8_lossy(previous.contents().unwrap_or_default())
                        .into_owned();
                    let (old_label, new_label) = match (previous, contents) {
                        (FileState::Absent, _) => ("/dev/null".to_string(), format!("b{path}")),
                        (_, None) => (format!("a{path}"), "/dev/null".to_string()),
                        _ => (format!("a{path}"), format!("b{path}")),
                    };
                    let new = contents.as_deref().unwrap_or_default();
                    out.push_str(&unified(&old, new, &old_label, &new_label));
                }
                Step::RefreshCaBundle {
                    bundle,
                    change: CaChange::Write,
                    previous,
                    contents,
                    ..
                } => out.push_str(&bundle_diff(bundle, previous, contents)),
                _ => {}
            }
        }
        out.push_str(&self.summary());
        out
    }

    /// One line per step, then the notes.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if self.is_noop() {
            out.push_str("no changes\n");
        }
        for (n, step) in self.accounts.iter().chain(&self.steps).enumerate() {
            out.push_str(&format!("{:>3}. {step}  [{}]\n", n + 1, step.id()));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for warning in &self.warnings {
            out.push_str(&format!("WARNING: {warning}\n"));
        }
        out
    }
}

/// A bundle holds hundreds of certificates: show its comment lines (inputs, proxy CA subject
/// and fingerprint) and the certificate counts, not the base64.
fn bundle_diff(path: &Utf8Path, previous: &FileState, new: &str) -> String {
    let summary = |text: &str| -> (String, usize) {
        let comments: String = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let certs = text
            .lines()
            .filter(|l| *l == "-----BEGIN CERTIFICATE-----")
            .count();
        (comments, certs)
    };
    let (old_label, old_text) = match previous.contents() {
        None => ("/dev/null".to_string(), String::new()),
        Some(bytes) => (
            format!("a{path}"),
            String::from_utf8_lossy(bytes).into_owned(),
        ),
    };
    let (old_comments, old_certs) = summary(&old_text);
    let (new_comments, new_certs) = summary(new);
    let mut out = format!(
        "CA bundle {path}: {old_certs} -> {new_certs} certificates (comment lines below)\n"
    );
    out.push_str(&unified(
        &old_comments,
        &new_comments,
        &old_label,
        &format!("b{path}"),
    ));
    out
}

fn unified(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

/// Hex sha256, as the manifest records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The agent account's home and shadow entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentObserved {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Utf8PathBuf,
    pub home_exists: bool,
    /// None: /etc/shadow cannot be read here (not root). Some(None): the agent has no line.
    pub shadow: Option<Option<crate::facts::ShadowState>>,
}

/// Which accounts exist already, and what the host offers to create them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsObserved {
    pub agent_exists: bool,
    pub proxy_exists: bool,
    pub group_exists: bool,
    pub family: DistroFamily,
    pub nologin: Utf8PathBuf,
    pub sysusers_available: bool,
}

/// The account steps: run first, before facts are gathered (the rule needs the real UIDs).
/// Accounts are never deleted here, and their creation is not rolled back.
pub fn plan_accounts(config: &Config, seen: &AccountsObserved) -> Vec<Step> {
    if seen.agent_exists && seen.proxy_exists && seen.group_exists {
        return Vec::new();
    }
    let defaults = Config::defaults().users;
    let names_are_defaults = config.users.agent == defaults.agent
        && config.users.proxy == defaults.proxy
        && config.users.operators_group == defaults.operators_group
        && config.users.agent_home == defaults.agent_home;
    if seen.sysusers_available && names_are_defaults {
        return vec![Step::Sysusers {
            file: SYSUSERS_FILE.into(),
            agent: config.users.agent.clone(),
            agent_home: config.users.agent_home.clone(),
        }];
    }
    let tool = match seen.family {
        DistroFamily::Debian => AccountTool::Adduser,
        _ => AccountTool::Useradd,
    };
    let mut steps = Vec::new();
    if !seen.group_exists {
        steps.push(Step::CreateGroup {
            name: config.users.operators_group.clone(),
            tool,
        });
    }
    if !seen.proxy_exists {
        steps.push(Step::CreateUser {
            name: config.users.proxy.clone(),
            home: PROXY_HOME.into(),
            create_home: false,
            shell: seen.nologin.clone(),
            tool,
        });
    }
    if !seen.agent_exists {
        steps.push(Step::CreateUser {
            name: config.users.agent.clone(),
            home: config.users.agent_home.clone(),
            create_home: true,
            shell: seen.nologin.clone(),
            tool,
        });
    }
    steps
}

/// Every file apply manages: what `render_all` renders, as (path, mode, contents, kind).
pub fn desired_files(
    rendered: &[RenderedFile],
) -> Vec<(Utf8PathBuf, u32, String, Option<FileKind>)> {
    rendered
        .iter()
        .map(|file| {
            (
                file.path.clone(),
                file.mode,
                file.contents.clone(),
                Some(file.kind),
            )
        })
        .collect()
}

/// Inputs of `plan_apply` besides the snapshot.
pub struct ApplyInput<'a> {
    pub config: &'a Config,
    pub rendered: &'a [RenderedFile],
    pub observed: &'a Observed,
    /// Accounts the account steps of this run created (recorded in the manifest).
    pub users_created: &'a [String],
    pub groups_created: &'a [String],
    pub version: &'a str,
    /// The agent UID the files were rendered for (facts).
    pub agent_uid: u32,
    pub now: u64,
    /// Enable and start the units. False under a maintainer script: the package's systemd
    /// snippets do that, honouring policy-rc.d, presets, masks and a disabled unit.
    pub manage_units: bool,
}

fn file_matches(state: &FileState, contents: &str, mode: u32) -> bool {
    matches!(state, FileState::Present { contents: c, mode: m, uid: 0, gid: 0 }
        if c.as_slice() == contents.as_bytes() && m & 0o7777 == mode)
}

/// The apply plan. Order (an invariant the executor relies on):
/// validate everything; migrate user units; write the rule file and load the table; only then
/// the sudoers grant, the proxy drop-in, the launcher and wrappers; remove stale files; CA
/// bundle; units; the manifest last.
pub fn plan_apply(input: &ApplyInput<'_>) -> Plan {
    let observed = input.observed;
    let mut plan = Plan {
        accounts: observed
            .accounts
            .as_ref()
            .map(|seen| plan_accounts(input.config, seen))
            .unwrap_or_default(),
        ..Plan::default()
    };
    let desired = desired_files(input.rendered);

    // Validators run on every artefact that has one, changed or not, whenever anything changes;
    // they are added at the front once we know the plan is not empty.
    let mut validations = Vec::new();
    for (path, _, contents, kind) in &desired {
        let validator = match kind {
            Some(FileKind::NftRules) => Some(Validator::Nft),
            Some(FileKind::Sudoers) => Some(Validator::Visudo),
            _ => None,
        };
        if let Some(validator) = validator {
            validations.push(Step::Validate {
                path: path.clone(),
                validator,
                contents: contents.clone(),
            });
        }
    }

    plan.warnings.extend(input.config.obsolete_keys());
    // The agent account's own steps come first, like the accounts: they are never undone.
    let agent_steps =
        plan_agent_account(input.config, observed, &plan.accounts, &mut plan.warnings);
    let mut steps = Vec::new();
    for link in &observed.user_unit_links {
        steps.push(Step::DisableUserUnit { link: link.clone() });
    }

    let write = |path: &Utf8Path, mode: u32, contents: &str| -> Option<Step> {
        let previous = observed.file(path);
        (!file_matches(&previous, contents, mode)).then(|| Step::WriteFile {
            path: path.to_owned(),
            mode,
            contents: contents.to_string(),
            previous,
        })
    };

    // The rule file first, then the table: the grant must not go live before the rule.
    let mut rule_file_changed = false;
    let mut dropin_changed = false;
    for (path, mode, contents, kind) in desired.iter().filter(|f| f.3 == Some(FileKind::NftRules)) {
        let _ = kind;
        if let Some(step) = write(path, *mode, contents) {
            rule_file_changed = true;
            steps.push(step);
        }
    }
    // The agent changed (renamed, or recreated with another UID): the new table no longer
    // matches the old UID, so its processes would run uncontained. End them first.
    if let Some(old) = observed.manifest.as_ref().and_then(|m| m.agent_uid) {
        if old != input.agent_uid && !observed.chroot {
            let name = observed
                .manifest
                .as_ref()
                .map(|m| m.agent_user.clone())
                .unwrap_or_default();
            steps.push(Step::EndProcesses {
                user: name,
                uid: Some(old),
                grace_seconds: 5,
            });
        }
    }
    let rule_file = Utf8PathBuf::from(paths::RULE_FILE);
    match &observed.nft {
        NftState::Unreachable(reason) => plan.notes.push(format!(
            "the kernel's nftables is not reachable here ({reason}): the table is not loaded \
             now; {CONTAINMENT_UNIT} loads {rule_file} at first boot"
        )),
        NftState::Absent => steps.push(Step::LoadNftTable {
            rule_file: rule_file.clone(),
        }),
        NftState::Present(_) if rule_file_changed || observed.table_drift => {
            steps.push(Step::LoadNftTable {
                rule_file: rule_file.clone(),
            })
        }
        NftState::Present(_) => {}
    }
    let mut ca_dropin_changed = false;
    for (path, mode, contents, kind) in desired.iter().filter(|f| f.3 != Some(FileKind::NftRules)) {
        if let Some(step) = write(path, *mode, contents) {
            if *kind == Some(FileKind::SystemdDropIn) {
                dropin_changed = true;
            }
            if path == crate::ca::PATH_UNIT_DROPIN {
                ca_dropin_changed = true;
            }
            steps.push(step);
        }
    }
    // Stale files: managed before, not wanted now.
    let wanted: BTreeSet<&Utf8PathBuf> = desired.iter().map(|f| &f.0).collect();
    if let Some(manifest) = &observed.manifest {
        for path in manifest.files.keys() {
            if !wanted.contains(path) {
                let previous = observed.file(path);
                if previous != FileState::Absent {
                    if path.as_str() == paths::PROXY_UNIT_DROPIN {
                        dropin_changed = true;
                    }
                    if path.as_str() == crate::ca::PATH_UNIT_DROPIN {
                        ca_dropin_changed = true;
                    }
                    steps.push(Step::RemoveFile {
                        path: path.clone(),
                        previous,
                    });
                }
            }
        }
    }
    // A bundle the previous apply wrote at another path (ca.combined_bundle changed).
    let bundle_path = &input.config.ca.combined_bundle;
    if let Some(old) = observed
        .manifest
        .as_ref()
        .and_then(|m| m.ca_bundle.as_ref())
    {
        let previous = observed.file(old);
        if old != bundle_path && is_our_bundle(&previous) {
            steps.push(Step::RemoveFile {
                path: old.clone(),
                previous,
            });
        }
    }
    if let Some(ca) = &observed.ca {
        let (step, note) = plan_ca(ca);
        steps.extend(step);
        plan.warnings.extend(note);
    }
    let deny_lists = plan_deny_lists(input.config, observed, &mut steps, &mut plan.notes);
    let sshd_dropin_changed = steps.iter().any(|s| {
        matches!(s, Step::WriteFile { path, .. } | Step::RemoveFile { path, .. }
            if path == crate::account::SSHD_DROPIN)
    });
    if sshd_dropin_changed {
        steps.extend(reload_sshd(observed));
    }

    // Units.
    let mut units_enabled: Vec<String> = observed
        .manifest
        .as_ref()
        .map(|m| m.units_enabled.clone())
        .unwrap_or_default();
    let manage = input.manage_units;
    for unit in UNITS.iter().filter(|u| !manage && observed.unit(u).masked) {
        plan.warnings.push(format!(
            "{unit} is masked: it stays masked and is not started (`systemctl unmask {unit}` to \
             use it)"
        ));
    }
    if !manage {
        plan.notes.push(
            "called from a maintainer script: the package's systemd snippets enable and start \
             the units (policy-rc.d, presets, masks and disabled units are honoured)"
                .into(),
        );
    }
    if manage && observed.systemd_running && (dropin_changed || ca_dropin_changed) {
        steps.push(Step::DaemonReload);
    }
    for unit in UNITS.iter().filter(|_| manage) {
        let state = observed.unit(unit);
        if !state.installed {
            plan.notes.push(format!(
                "{unit} is not installed (no unit file): not enabled or started"
            ));
            continue;
        }
        if state.masked {
            plan.warnings.push(format!(
                "{unit} is masked: left masked, not enabled or started (`systemctl unmask \
                 {unit}`, then apply, to use it)"
            ));
            continue;
        }
        if !state.enabled {
            steps.push(Step::EnableUnit {
                unit: unit.to_string(),
            });
            if !units_enabled.iter().any(|u| u == unit) {
                units_enabled.push(unit.to_string());
            }
        }
    }
    if !manage {
    } else if observed.systemd_running {
        let startable = |unit: &str| {
            let state = observed.unit(unit);
            state.installed && !state.masked
        };
        let containment = observed.unit(CONTAINMENT_UNIT);
        // Never restart the containment unit: its stop deletes the table. The table is already
        // replaced above; start only marks the oneshot active.
        if startable(CONTAINMENT_UNIT) && !containment.active {
            steps.push(Step::StartUnit {
                unit: CONTAINMENT_UNIT.into(),
                restart: false,
                required: true,
            });
        }
        let proxy = observed.unit(PROXY_UNIT);
        if startable(PROXY_UNIT) && (!proxy.active || dropin_changed) {
            steps.push(Step::StartUnit {
                unit: PROXY_UNIT.into(),
                restart: proxy.active,
                required: false,
            });
        }
        for unit in HELPER_UNITS {
            let state = observed.unit(unit);
            // A path unit reads its PathChanged= lines when it starts.
            let restart = state.active && *unit == CA_PATH_UNIT && ca_dropin_changed;
            if startable(unit) && (!state.active || restart) {
                steps.push(Step::StartUnit {
                    unit: unit.to_string(),
                    restart,
                    required: false,
                });
            }
        }
    } else {
        plan.notes.push(format!(
            "systemd is not running: units are enabled offline (systemctl --root=/), nothing is \
             started; at boot {CONTAINMENT_UNIT} loads the table and {PROXY_UNIT} starts the proxy"
        ));
    }

    // The manifest.
    let previous = observed.manifest.clone().unwrap_or_default();
    let mut user_units_disabled = previous.user_units_disabled.clone();
    for link in &observed.user_unit_links {
        if !user_units_disabled.iter().any(|l| l.link == link.link) {
            user_units_disabled.push(link.clone());
        }
    }
    let merge = |old: &[String], new: &[String]| -> Vec<String> {
        let mut all = old.to_vec();
        for name in new {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    };
    let table_loaded = !matches!(observed.nft, NftState::Unreachable(_));
    let manifest = Manifest {
        version: input.version.to_string(),
        applied_at: input.now,
        files: desired
            .iter()
            .map(|(path, _, contents, _)| (path.clone(), sha256_hex(contents.as_bytes())))
            .collect(),
        users_created: merge(&previous.users_created, input.users_created),
        groups_created: merge(&previous.groups_created, input.groups_created),
        agent_user: input.config.users.agent.clone(),
        proxy_user: input.config.users.proxy.clone(),
        operators_group: input.config.users.operators_group.clone(),
        delete_users_on_purge: input.config.users.delete_on_purge,
        units_enabled,
        user_units_disabled,
        table_loaded,
        agent_uid: Some(input.agent_uid),
        ca_bundle: Some(bundle_path.clone()),
        grant_records: Some(input.config.grants.records.clone()),
        deny_lists,
    };
    let manifest_changed = match &observed.manifest {
        Some(old) => !old.same_content(&manifest),
        None => true,
    };
    if !steps.is_empty() || manifest_changed {
        steps.push(Step::WriteManifest { manifest });
    }
    plan.steps = agent_steps;
    if steps
        .iter()
        .any(|s| !matches!(s, Step::WriteManifest { .. }))
    {
        plan.steps.extend(validations);
    }
    plan.steps.extend(steps);
    plan
}

/// The agent account's own steps: its home when it has none (sysusers and rpm %pre make
/// none), then locked and expired, so PAM refuses it everywhere. An agent the account steps
/// create is locked too (its home comes with it).
fn plan_agent_account(
    config: &Config,
    observed: &Observed,
    accounts: &[Step],
    warnings: &mut Vec<String>,
) -> Vec<Step> {
    let user = &config.users.agent;
    let lock = Step::LockAccount { user: user.clone() };
    let Some(agent) = &observed.agent else {
        let created = accounts.iter().any(|s| {
            matches!(s, Step::CreateUser { name, .. } if name == user)
                || matches!(s, Step::Sysusers { .. })
        });
        return if created { vec![lock] } else { Vec::new() };
    };
    let mut steps = Vec::new();
    if !agent.home_exists && !matches!(agent.home.as_str(), "/nonexistent" | "/") {
        steps.push(Step::CreateAgentHome {
            path: agent.home.clone(),
            uid: agent.uid,
            gid: agent.gid,
        });
    }
    match agent.shadow {
        Some(Some(state)) if state.locked && state.expired => {}
        Some(Some(_)) => steps.push(lock),
        Some(None) => warnings.push(format!(
            "{user} is not in /etc/shadow: lock and expire it where the account lives (verify's \
             account-locked probe checks it)"
        )),
        None => {}
    }
    steps
}

/// List the agent in every deny list whose scheduler is installed (or that exists). Returns the
/// lists that are ours to take back: listed by this or an earlier apply, never one the admin
/// had already listed the agent in.
fn plan_deny_lists(
    config: &Config,
    observed: &Observed,
    steps: &mut Vec<Step>,
    notes: &mut Vec<String>,
) -> BTreeMap<Utf8PathBuf, bool> {
    let user = &config.users.agent;
    let earlier = observed
        .manifest
        .as_ref()
        .map(|m| m.deny_lists.clone())
        .unwrap_or_default();
    let mut ours = BTreeMap::new();
    for scheduler in crate::account::SCHEDULERS {
        let path = Utf8PathBuf::from(scheduler.deny);
        let previous = observed.file(&path);
        if previous == FileState::Absent && !observed.schedulers.contains(&path) {
            notes.push(format!(
                "{path} is not edited: its scheduler is not installed (the account's expiry \
                 refuses its jobs; apply lists {user} once it is installed)"
            ));
            continue;
        }
        let text = String::from_utf8_lossy(previous.contents().unwrap_or_default()).into_owned();
        if crate::account::is_listed(&text, user) {
            if let Some(created) = earlier.get(&path) {
                ours.insert(path, *created);
            }
            continue;
        }
        let created = earlier
            .get(&path)
            .copied()
            .unwrap_or(previous == FileState::Absent);
        steps.push(Step::EditDenyList {
            path: path.clone(),
            user: user.clone(),
            listed: true,
            contents: Some(crate::account::with_listed(&text, user)),
            previous,
        });
        ours.insert(path, created);
    }
    ours
}

/// Reload the running sshd, so the drop-in counts for the next connection.
fn reload_sshd(observed: &Observed) -> Option<Step> {
    if !observed.systemd_running {
        return None;
    }
    crate::account::SSHD_UNITS
        .iter()
        .find(|unit| observed.unit(unit).active)
        .map(|unit| Step::ReloadUnit {
            unit: unit.to_string(),
        })
}

/// A file that starts with the header `ca refresh` writes: ours to delete.
fn is_our_bundle(state: &FileState) -> bool {
    state
        .contents()
        .is_some_and(|c| c.starts_with(crate::ca::BUNDLE_HEADER.as_bytes()))
}

/// The CA step, when the bundle or the key needs a change, and a note when the bundle cannot be
/// built. A bundle that cannot be built never fails apply (a package install must not fail on
/// a wrong file at `ca.proxy_ca`): the previous bundle stays and apply warns.
fn plan_ca(ca: &CaState) -> (Option<Step>, Option<String>) {
    let mut note = None;
    let key_changes = match &ca.key_changes {
        Ok(changes) => changes.clone(),
        Err(why) => {
            note = Some(format!(
                "the proxy CA key cannot be checked or fixed: {why}; fix it, then run `pipelock-containment ca refresh`"
            ));
            Vec::new()
        }
    };
    let (change, refused, contents) = match &ca.desired {
        Ok(text) => {
            let change = match &ca.current {
                FileState::Present {
                    contents,
                    mode,
                    uid,
                    gid,
                } if contents.as_slice() == text.as_bytes() => {
                    if (*mode & 0o7777, *uid, *gid) == (0o644, 0, 0) {
                        None
                    } else {
                        Some(CaChange::Permissions)
                    }
                }
                _ => Some(CaChange::Write),
            };
            (change, None, text.clone())
        }
        Err(why) => {
            let message = format!(
                "the combined CA bundle {} cannot be built: {why}. It keeps its previous contents ({}); fix the file, then run `pipelock-containment ca refresh` (or apply)",
                ca.bundle,
                if ca.current == FileState::Absent {
                    "none: agents have no CA bundle yet"
                } else {
                    "TLS interception trust unchanged"
                }
            );
            note = Some(match note {
                Some(key) => format!("{message}; {key}"),
                None => message,
            });
            (None, Some(why.clone()), String::new())
        }
    };
    let change = match (change, key_changes.is_empty()) {
        (Some(change), _) => change,
        (None, false) => CaChange::KeyOnly,
        (None, true) => return (None, note),
    };
    (
        Some(Step::RefreshCaBundle {
            bundle: ca.bundle.clone(),
            key_fix: ca.key_fix.clone().filter(|_| !key_changes.is_empty()),
            change,
            key_changes,
            refused,
            previous: ca.current.clone(),
            contents,
            notes: ca.notes.clone(),
        }),
        note,
    )
}

/// What purge looks at: the accounts the manifest and the config name, and which of them exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgeInput {
    pub manifest: Option<Manifest>,
    /// The config, when it is still there (dpkg deletes conffiles before postrm purge).
    pub config: Option<Config>,
    pub users_present: BTreeSet<String>,
    pub groups_present: BTreeSet<String>,
    /// Agents' homes that are real directories the agent owns (only those are removed when
    /// the accounts stay).
    pub agent_homes: Vec<Utf8PathBuf>,
    /// Grant record files (and their locks) kept outside the state directory that exist.
    pub outside_records: Vec<(Utf8PathBuf, FileState)>,
}

impl PurgeInput {
    /// The (agent, proxy, operators group) names the manifest and then the config give.
    pub fn named(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        let manifest = self.manifest.iter().map(|m| {
            (
                m.agent_user.as_str(),
                m.proxy_user.as_str(),
                m.operators_group.as_str(),
            )
        });
        let config = self.config.iter().map(|c| {
            (
                c.users.agent.as_str(),
                c.users.proxy.as_str(),
                c.users.operators_group.as_str(),
            )
        });
        manifest.chain(config)
    }
}

/// The purge plan, after remove: the accounts when the manifest or the config opted in (else
/// only the agent's home, which apply makes again), grant records kept outside the state
/// directory, then the state directory with the manifest and the records in it.
pub fn plan_purge(input: &PurgeInput) -> Plan {
    let mut plan = Plan::default();
    let manifest = input.manifest.as_ref();
    let config = input.config.as_ref();
    let delete = manifest.is_some_and(|m| m.delete_users_on_purge)
        || config.is_some_and(|c| c.users.delete_on_purge);
    let mut agents: Vec<&str> = Vec::new();
    let mut users: Vec<&str> = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    for (agent, proxy, group) in input.named() {
        agents.push(agent);
        users.extend([agent, proxy]);
        groups.push(group);
    }
    let mut seen = BTreeSet::new();
    users.retain(|u| !u.is_empty() && seen.insert(*u));
    let mut seen = BTreeSet::new();
    groups.retain(|g| !g.is_empty() && seen.insert(*g));
    if delete {
        for user in users.iter().filter(|u| input.users_present.contains(**u)) {
            plan.steps.push(Step::DeleteUser {
                user: user.to_string(),
                remove_home: agents.contains(user),
            });
        }
        for group in groups.iter().filter(|g| input.groups_present.contains(**g)) {
            plan.steps.push(Step::DeleteGroup {
                group: group.to_string(),
            });
        }
    } else {
        plan.notes
            .push("users kept (users.delete_on_purge = false)".into());
        for home in input.agent_homes.iter().filter(|h| h.as_str() != "/") {
            plan.steps.push(Step::RemoveTree { path: home.clone() });
        }
    }
    for (path, previous) in &input.outside_records {
        plan.steps.push(Step::RemoveFile {
            path: path.clone(),
            previous: previous.clone(),
        });
    }
    plan.steps.push(Step::RemoveTree {
        path: paths::STATE_DIR.into(),
    });
    plan
}

/// The remove plan: the seed's rollback list. Agent processes end before the table goes, so
/// nothing contained keeps running uncontained. The launch path and the grants rule go first,
/// then every workspace grant is revoked, then agent processes end, then the table goes. Users,
/// the config, the proxy's CA and key stay; the combined bundle goes only if `ca refresh` wrote it.
///
/// `config` is the config as it is now (the defaults when it is gone); the manifest's record
/// wins where both name something.
pub fn plan_remove(config: &Config, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    let manifest = observed.manifest.clone().unwrap_or_default();
    let agent = if manifest.agent_user.is_empty() {
        config.users.agent.clone()
    } else {
        manifest.agent_user.clone()
    };
    if observed.systemd_running {
        // Also when not "active": a failing proxy sits in its Restart= loop ("activating").
        // The helper units first: no grant expiry or CA refresh runs while things go.
        // The watcher first: it would put back the table that remove is about to delete.
        for unit in [crate::watch::UNIT, GRANTS_TIMER, CA_PATH_UNIT, PROXY_UNIT] {
            if observed.unit(unit).installed {
                plan.steps.push(Step::StopUnit { unit: unit.into() });
            }
        }
        if observed.unit(crate::session::BRIDGE_SOCKET_UNIT).installed {
            for unit in [
                crate::session::BRIDGE_SOCKET_UNIT,
                crate::session::BRIDGE_SERVICE_UNIT,
            ] {
                plan.steps.push(Step::StopUnit { unit: unit.into() });
            }
        }
    } else {
        plan.notes
            .push("systemd is not running: no unit is stopped".into());
    }
    // Every managed file: the manifest's, plus the fixed paths in case the manifest is lost.
    let mut files: BTreeSet<Utf8PathBuf> = manifest.files.keys().cloned().collect();
    files.extend(FIXED_FILES.iter().map(Utf8PathBuf::from));
    // The combined CA bundle: only a file `ca refresh` wrote (its header says so).
    let bundle = manifest
        .ca_bundle
        .clone()
        .unwrap_or_else(|| config.ca.combined_bundle.clone());
    if is_our_bundle(&observed.file(&bundle)) {
        files.insert(bundle.clone());
    }
    files.extend(
        observed
            .files
            .keys()
            .filter(|p| p.starts_with(paths::WRAPPER_DIR))
            .cloned(),
    );
    // The purge and file lists are state: they must outlive remove, for postrm purge.
    files.remove(Utf8Path::new(PURGE_ACCOUNTS_FILE));
    files.remove(Utf8Path::new(MANAGED_FILES_LIST));
    // First take away the way to start agents (sudoers grant, launcher, wrappers), so no new
    // agent starts between ending the running ones and deleting the table.
    // The grants rule goes too, so no operator grants anything after the grants are revoked.
    let (launch, rest): (Vec<_>, Vec<_>) = files.into_iter().partition(|path| {
        path.as_str() == paths::SUDOERS_DROPIN
            || path.as_str() == paths::SUDOERS_GRANTS_DROPIN
            || path.starts_with(paths::WRAPPER_DIR)
    });
    let remove_files = |plan: &mut Plan, paths: Vec<Utf8PathBuf>| {
        for path in paths {
            let previous = observed.file(&path);
            if previous != FileState::Absent {
                plan.steps.push(Step::RemoveFile { path, previous });
            }
        }
    };
    remove_files(&mut plan, launch);
    // Jobs the agent left with cron, at or its user manager would start it again later.
    plan.steps.push(Step::RemoveAgentJobs {
        user: agent.clone(),
    });
    // Grants widen the agent's access to operators' files: take them back before the agent's
    // processes end and the table goes (best effort, like every remove step).
    let records = manifest
        .grant_records
        .clone()
        .unwrap_or_else(|| config.grants.records.clone());
    if observed.file(&records) != FileState::Absent {
        plan.steps.push(Step::RevokeGrants { records });
    }
    if observed.systemd_running {
        // Every session ends with its cgroup, fork loops included, before the table goes.
        plan.steps.push(Step::StopUnit {
            unit: crate::session::AGENTS_SLICE.into(),
        });
    }
    if observed.chroot {
        plan.notes.push(
            "in a chroot or image build: no process is signalled (they are the building \
             machine's)"
                .into(),
        );
    } else {
        plan.steps.push(Step::EndProcesses {
            user: agent.clone(),
            uid: None,
            grace_seconds: 5,
        });
    }
    if observed.systemd_running && observed.unit(CONTAINMENT_UNIT).active {
        // Its ExecStop deletes the table; the explicit delete below catches the rest.
        plan.steps.push(Step::StopUnit {
            unit: CONTAINMENT_UNIT.into(),
        });
    }
    match &observed.nft {
        NftState::Present(_) => plan.steps.push(Step::DeleteNftTable),
        NftState::Absent => {}
        NftState::Unreachable(reason) => plan.notes.push(format!(
            "the kernel's nftables is not reachable here ({reason}): no table to delete"
        )),
    }
    for unit in UNITS {
        if observed.unit(unit).enabled {
            plan.steps.push(Step::DisableUnit {
                unit: unit.to_string(),
            });
        }
    }
    let sshd_dropin_removed =
        observed.file(Utf8Path::new(crate::account::SSHD_DROPIN)) != FileState::Absent;
    remove_files(&mut plan, rest);
    if sshd_dropin_removed {
        plan.steps.extend(reload_sshd(observed));
    }
    for (path, created) in &manifest.deny_lists {
        let previous = observed.file(path);
        let text = String::from_utf8_lossy(previous.contents().unwrap_or_default()).into_owned();
        if crate::account::is_listed(&text, &agent) {
            plan.steps.push(Step::EditDenyList {
                path: path.clone(),
                user: agent.clone(),
                listed: false,
                contents: crate::account::without_listed(&text, &agent, *created),
                previous,
            });
        }
    }
    let bundle_removed = plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::RemoveFile { path, .. } if *path == bundle));
    let mut dirs: Vec<&str> = vec![
        paths::WRAPPER_DIR,
        Utf8Path::new(paths::RULE_FILE)
            .parent()
            .map_or("", |p| p.as_str()),
        Utf8Path::new(paths::PROXY_UNIT_DROPIN)
            .parent()
            .map_or("", |p| p.as_str()),
        Utf8Path::new(crate::ca::PATH_UNIT_DROPIN)
            .parent()
            .map_or("", |p| p.as_str()),
    ];
    if bundle_removed {
        dirs.push(bundle.parent().map_or("", |p| p.as_str()));
    }
    let mut seen = BTreeSet::new();
    for dir in dirs {
        if !dir.is_empty() && dir != "/" && seen.insert(dir) {
            plan.steps.push(Step::RemoveDirIfEmpty { path: dir.into() });
        }
    }
    if observed.systemd_running {
        plan.steps.push(Step::DaemonReload);
    }
    for link in &manifest.user_units_disabled {
        plan.steps
            .push(Step::RestoreUserUnit { link: link.clone() });
    }
    let mut after = manifest.clone();
    after.files.clear();
    after.ca_bundle = None;
    after.units_enabled.clear();
    after.user_units_disabled.clear();
    after.table_loaded = false;
    after.deny_lists.clear();
    if observed.manifest.is_some() {
        plan.steps.push(Step::WriteManifest { manifest: after });
    }
    plan
}

#[cfg(test)]
mod tests {
    /// A generated wrapper, written after the table and removed before the processes end.
    const CLAUDE_WRAPPER: &str = "/var/lib/pipelock-containment/wrappers/claude";

    use super::*;
    use crate::facts::{Account, DistroPaths, Facts, LoginUidRange};

    fn facts() -> Facts {
        let account = |name: &str, uid| Account {
            name: name.into(),
            uid,
            gid: uid,
            home: "/nonexistent".into(),
        };
        Facts {
            agent: account("cc-agent", 987),
            proxy: account("pipelock-proxy", 988),
            login_range: LoginUidRange::default(),
            distro: DistroPaths::detect("ID=debian\n", |_| true),
            sshd_dropin_dir: true,
        }
    }

    fn rendered(config: &Config) -> Vec<RenderedFile> {
        crate::render::render_all(config, &facts()).unwrap()
    }

    fn empty_host() -> Observed {
        Observed {
            accounts: None,
            agent: None,
            files: BTreeMap::new(),
            manifest: None,
            nft: NftState::Absent,
            table_drift: false,
            systemd_running: true,
            units: UNITS
                .iter()
                .map(|u| {
                    (
                        u.to_string(),
                        UnitState {
                            installed: true,
                            enabled: false,
                            active: false,
                            masked: false,
                        },
                    )
                })
                .collect(),
            user_unit_links: Vec::new(),
            ca: None,
            schedulers: crate::account::SCHEDULERS
                .iter()
                .map(|s| Utf8PathBuf::from(s.deny))
                .collect(),
            chroot: false,
        }
    }

    fn apply(config: &Config, observed: &Observed) -> Plan {
        apply_with(config, observed, 987, true)
    }

    /// Apply with the files rendered for an agent of `agent_uid`; `manage_units: false` is a
    /// maintainer script's apply.
    fn apply_with(
        config: &Config,
        observed: &Observed,
        agent_uid: u32,
        manage_units: bool,
    ) -> Plan {
        let mut facts = facts();
        facts.agent.uid = agent_uid;
        let files = crate::render::render_all(config, &facts).unwrap();
        plan_apply(&ApplyInput {
            config,
            rendered: &files,
            observed,
            users_created: &[],
            groups_created: &[],
            version: "0.1.0",
            agent_uid,
            now: 1000,
            manage_units,
        })
    }

    /// Apply after the agent was recreated with UID 990 (the files rendered for it).
    fn apply_as_uid_990(config: &Config, observed: &Observed) -> Plan {
        apply_with(config, observed, 990, true)
    }

    /// The host after `plan` ran on `before`: what the executor would leave.
    fn simulate(before: &Observed, plan: &Plan) -> Observed {
        let mut after = before.clone();
        for step in &plan.steps {
            match step {
                Step::WriteFile {
                    path,
                    mode,
                    contents,
                    ..
                } => {
                    after.files.insert(
                        path.clone(),
                        FileState::Present {
                            contents: contents.clone().into_bytes(),
                            mode: *mode,
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
                Step::EditDenyList { path, contents, .. } => {
                    let state = match contents {
                        None => FileState::Absent,
                        Some(text) => FileState::Present {
                            contents: text.clone().into_bytes(),
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                        },
                    };
                    after.files.insert(path.clone(), state);
                }
                Step::RemoveFile { path, .. } => {
                    after.files.insert(path.clone(), FileState::Absent);
                    if let Some(ca) = after.ca.as_mut().filter(|ca| ca.bundle == *path) {
                        ca.current = FileState::Absent;
                    }
                }
                Step::LoadNftTable { .. } => {
                    after.nft = NftState::Present("table".into());
                    after.table_drift = false;
                }
                Step::DeleteNftTable => after.nft = NftState::Absent,
                Step::EnableUnit { unit } => after.units.get_mut(unit).unwrap().enabled = true,
                Step::DisableUnit { unit } => after.units.get_mut(unit).unwrap().enabled = false,
                Step::StartUnit { unit, .. } => after.units.get_mut(unit).unwrap().active = true,
                Step::StopUnit { unit } => {
                    if let Some(state) = after.units.get_mut(unit) {
                        state.active = false;
                    }
                }
                Step::DisableUserUnit { link } => after.user_unit_links.retain(|l| l != link),
                Step::WriteManifest { manifest } => after.manifest = Some(manifest.clone()),
                Step::RefreshCaBundle { bundle, .. } => {
                    let ca = after.ca.as_mut().unwrap();
                    assert_eq!(&ca.bundle, bundle);
                    if let Ok(text) = &ca.desired {
                        ca.current = FileState::Present {
                            contents: text.clone().into_bytes(),
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                        };
                    }
                    ca.key_changes = Ok(Vec::new());
                }
                _ => {}
            }
        }
        after
    }

    fn ids(plan: &Plan) -> Vec<String> {
        plan.steps.iter().map(Step::id).collect()
    }

    fn position(plan: &Plan, id: &str) -> usize {
        ids(plan)
            .iter()
            .position(|s| s == id)
            .unwrap_or_else(|| panic!("{id} not in {:?}", ids(plan)))
    }

    #[test]
    fn fresh_host_gets_everything_in_a_safe_order() {
        let config = Config::defaults();
        let plan = apply(&config, &empty_host());
        let ids = ids(&plan);
        assert!(ids[0].starts_with("validate:"), "{ids:?}");
        assert_eq!(ids[0], format!("validate:{}", paths::RULE_FILE));
        assert_eq!(ids[1], format!("validate:{}", paths::SUDOERS_DROPIN));
        let rule = position(&plan, &format!("write:{}", paths::RULE_FILE));
        let load = position(&plan, "nft:load");
        let sudoers = position(&plan, &format!("write:{}", paths::SUDOERS_DROPIN));
        let launcher = position(&plan, &format!("write:{}", CLAUDE_WRAPPER));
        assert!(rule < load && load < sudoers && load < launcher, "{ids:?}");
        assert!(position(&plan, "systemd:enable:pipelock-containment.service") > sudoers);
        assert_eq!(ids.last().unwrap(), "manifest");
        for tool in ["claude", "codex", "gemini"] {
            position(&plan, &format!("write:{}/{tool}", paths::WRAPPER_DIR));
        }
        // No restart of the containment unit, ever: its stop deletes the table.
        assert!(plan.steps.iter().all(|s| !matches!(s,
            Step::StartUnit { unit, restart: true, .. } if unit == CONTAINMENT_UNIT)));
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn second_run_is_a_noop() {
        let config = Config::defaults();
        let first = apply(&config, &empty_host());
        let after = simulate(&empty_host(), &first);
        let second = apply(&config, &after);
        assert!(second.is_noop(), "{}", second.summary());
        assert_eq!(second.summary(), "no changes\n");
        assert_eq!(second.diff(), "no changes\n");
    }

    #[test]
    fn a_new_version_alone_rewrites_only_the_manifest() {
        let config = Config::defaults();
        let after = simulate(&empty_host(), &apply(&config, &empty_host()));
        let files = rendered(&config);
        let plan = plan_apply(&ApplyInput {
            config: &config,
            rendered: &files,
            observed: &after,
            users_created: &[],
            groups_created: &[],
            version: "0.2.0",
            agent_uid: 987,
            now: 2000,
            manage_units: true,
        });
        assert_eq!(ids(&plan), ["manifest"]);
    }

    #[test]
    fn dropped_tool_removes_its_wrapper_and_diff_shows_it() {
        let config = Config::defaults();
        let after = simulate(&empty_host(), &apply(&config, &empty_host()));
        let mut fewer = config.clone();
        fewer.tools.wrap.retain(|t| t != "codex");
        let plan = apply(&fewer, &after);
        let codex = format!("{}/codex", paths::WRAPPER_DIR);
        position(&plan, &format!("remove:{codex}"));
        let diff = plan.diff();
        assert!(diff.contains(&format!("--- a{codex}")), "{diff}");
        assert!(diff.contains("+++ /dev/null"), "{diff}");
        // The table is unchanged: no reload.
        assert!(!ids(&plan).contains(&"nft:load".to_string()));
        let manifest = match plan.steps.last().unwrap() {
            Step::WriteManifest { manifest } => manifest,
            other => panic!("{other:?}"),
        };
        assert!(!manifest.files.contains_key(Utf8Path::new(&codex)));
        assert!(apply(&fewer, &simulate(&after, &plan)).is_noop());
    }

    #[test]
    fn changed_port_reloads_table_and_shows_a_unified_diff() {
        let config = Config::defaults();
        let after = simulate(&empty_host(), &apply(&config, &empty_host()));
        let mut other = config.clone();
        other.proxy.listen_port = 3128;
        let plan = apply(&other, &after);
        position(&plan, "nft:load");
        let diff = plan.diff();
        assert!(
            diff.contains(&format!("--- a{}", paths::RULE_FILE)),
            "{diff}"
        );
        assert!(
            diff.contains("-\t\toif \"lo\" ip daddr 127.0.0.1 tcp dport 8888 accept"),
            "{diff}"
        );
        assert!(
            diff.contains("+\t\toif \"lo\" ip daddr 127.0.0.1 tcp dport 3128 accept"),
            "{diff}"
        );
    }

    #[test]
    fn wrong_mode_or_owner_is_repaired() {
        let config = Config::defaults();
        let mut after = simulate(&empty_host(), &apply(&config, &empty_host()));
        if let Some(FileState::Present { mode, .. }) =
            after.files.get_mut(Utf8Path::new(paths::SUDOERS_DROPIN))
        {
            *mode = 0o644;
        }
        if let Some(FileState::Present { uid, .. }) =
            after.files.get_mut(Utf8Path::new(CLAUDE_WRAPPER))
        {
            *uid = 1000;
        }
        let plan = apply(&config, &after);
        position(&plan, &format!("write:{}", paths::SUDOERS_DROPIN));
        position(&plan, &format!("write:{}", CLAUDE_WRAPPER));
        assert!(plan
            .diff()
            .contains("mode /etc/sudoers.d/pipelock-containment: 0644 -> 0440"));
    }

    #[test]
    fn flushed_table_is_reloaded_without_rewriting_files() {
        let config = Config::defaults();
        let mut after = simulate(&empty_host(), &apply(&config, &empty_host()));
        after.nft = NftState::Absent; // `flush ruleset` by someone else
        let plan = apply(&config, &after);
        assert_eq!(
            ids(&plan),
            [
                format!("validate:{}", paths::RULE_FILE),
                format!("validate:{}", paths::SUDOERS_DROPIN),
                format!("validate:{}", paths::SUDOERS_GRANTS_DROPIN),
                "nft:load".into(),
                "manifest".into(),
            ]
        );
    }

    #[test]
    fn drifted_table_is_reloaded_without_rewriting_files() {
        let config = Config::defaults();
        let mut after = simulate(&empty_host(), &apply(&config, &empty_host()));
        after.table_drift = true; // a rule inserted by hand
        let plan = apply(&config, &after);
        assert!(
            ids(&plan).contains(&"nft:load".to_string()),
            "{:?}",
            ids(&plan)
        );
        assert!(!ids(&plan).iter().any(|id| id.starts_with("write:")));
        let again = simulate(&after, &plan);
        assert!(!ids(&apply(&config, &again)).contains(&"nft:load".to_string()));
    }

    #[test]
    fn chroot_defers_table_and_units() {
        let config = Config::defaults();
        let mut host = empty_host();
        host.nft = NftState::Unreachable("nft list tables: Operation not permitted".into());
        host.systemd_running = false;
        let plan = apply(&config, &host);
        let ids = ids(&plan);
        assert!(!ids.iter().any(|i| i == "nft:load"), "{ids:?}");
        assert!(
            !ids.iter().any(|i| i.starts_with("systemd:start")),
            "{ids:?}"
        );
        assert!(!ids.iter().any(|i| i == "systemd:daemon-reload"), "{ids:?}");
        position(&plan, "systemd:enable:pipelock-containment.service");
        let notes = plan.notes.join("\n");
        assert!(
            notes.contains("loads /etc/nftables.d/pipelock-containment.nft at first boot"),
            "{notes}"
        );
        assert!(notes.contains("systemd is not running"), "{notes}");
        let after = simulate(&host, &plan);
        let again = apply(&config, &after);
        assert!(again.is_noop(), "{}", again.summary());
    }

    #[test]
    fn proxy_restarts_only_when_its_dropin_changed() {
        let config = Config::defaults();
        let after = simulate(&empty_host(), &apply(&config, &empty_host()));
        let mut other = config.clone();
        other.proxy.command = vec!["/usr/bin/tinyproxy".into(), "-d".into()];
        let plan = apply(&other, &after);
        let reload = position(&plan, "systemd:daemon-reload");
        let start = position(&plan, "systemd:start:pipelock-proxy.service");
        assert!(reload < start);
        assert!(matches!(
            &plan.steps[start],
            Step::StartUnit {
                restart: true,
                required: false,
                ..
            }
        ));
        assert!(!ids(&plan).contains(&"systemd:start:pipelock-containment.service".to_string()));
    }

    #[test]
    fn missing_unit_files_are_noted_not_enabled() {
        let config = Config::defaults();
        let mut host = empty_host();
        host.units.clear();
        let plan = apply(&config, &host);
        assert!(!ids(&plan)
            .iter()
            .any(|i| i.starts_with("systemd:enable") || i.starts_with("systemd:start")));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("pipelock-proxy.service is not installed")));
    }

    #[test]
    fn user_units_are_migrated_and_remembered() {
        let config = Config::defaults();
        let mut host = empty_host();
        let link = UserUnitLink {
            owner: Some("alice".into()),
            link: "/home/alice/.config/systemd/user/default.target.wants/pipelock.service".into(),
            target: "/home/alice/.config/systemd/user/pipelock.service".into(),
            was_active: false,
        };
        host.user_unit_links.push(link.clone());
        let plan = apply(&config, &host);
        let disable = position(&plan, &format!("user-unit:disable:{}", link.link));
        assert!(disable < position(&plan, "systemd:start:pipelock-proxy.service"));
        let after = simulate(&host, &plan);
        assert_eq!(
            after.manifest.as_ref().unwrap().user_units_disabled,
            std::slice::from_ref(&link)
        );
        assert!(apply(&config, &after).is_noop());
        let remove = plan_remove(&Config::defaults(), &after);
        position(&remove, &format!("user-unit:restore:{}", link.link));
    }

    #[test]
    fn purge_setting_is_recorded_for_postrm() {
        let mut config = Config::defaults();
        config.users.delete_on_purge = true;
        let plan = apply(&config, &empty_host());
        let write = plan.steps.iter().find_map(|s| match s {
            Step::WriteFile { path, contents, .. } if path == PURGE_ACCOUNTS_FILE => Some(contents),
            _ => None,
        });
        let text = write.expect("purge list written");
        assert!(text.contains("agent cc-agent\nuser pipelock-proxy\ngroup pipelock-operators\n"));
        let after = simulate(&empty_host(), &plan);
        assert!(after.manifest.as_ref().unwrap().delete_users_on_purge);
        // Remove keeps it: postrm purge reads it after the conffile is gone.
        let remove = plan_remove(&Config::defaults(), &after);
        assert!(!ids(&remove).contains(&format!("remove:{PURGE_ACCOUNTS_FILE}")));
        // Turning it off again removes the list.
        config.users.delete_on_purge = false;
        let plan = apply(&config, &after);
        position(&plan, &format!("remove:{PURGE_ACCOUNTS_FILE}"));
    }

    #[test]
    fn accounts_use_sysusers_only_with_default_names() {
        let seen = AccountsObserved {
            agent_exists: false,
            proxy_exists: false,
            group_exists: false,
            family: DistroFamily::Debian,
            nologin: "/usr/sbin/nologin".into(),
            sysusers_available: true,
        };
        let config = Config::defaults();
        assert!(matches!(
            plan_accounts(&config, &seen)[..],
            [Step::Sysusers { .. }]
        ));
        let mut renamed = config.clone();
        renamed.users.agent = "robot".into();
        renamed.users.agent_home = "/srv/robot".into();
        let steps = plan_accounts(&renamed, &seen);
        let ids: Vec<_> = steps.iter().map(Step::id).collect();
        assert_eq!(
            ids,
            [
                "users:group:pipelock-operators",
                "users:user:pipelock-proxy",
                "users:user:robot"
            ]
        );
        assert!(
            matches!(&steps[2], Step::CreateUser { home, create_home: true, tool: AccountTool::Adduser, .. } if home == "/srv/robot")
        );
        let fedora = AccountsObserved {
            family: DistroFamily::Fedora,
            sysusers_available: false,
            agent_exists: true,
            ..seen.clone()
        };
        let steps = plan_accounts(&config, &fedora);
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| matches!(
            s,
            Step::CreateGroup {
                tool: AccountTool::Useradd,
                ..
            } | Step::CreateUser {
                tool: AccountTool::Useradd,
                ..
            }
        )));
        let all = AccountsObserved {
            agent_exists: true,
            proxy_exists: true,
            group_exists: true,
            ..seen
        };
        assert!(plan_accounts(&config, &all).is_empty());
    }

    #[test]
    fn remove_ends_processes_before_the_table_goes() {
        let config = Config::defaults();
        let mut host = simulate(&empty_host(), &apply(&config, &empty_host()));
        for path in host.manifest.as_ref().unwrap().files.keys() {
            assert!(host.files.contains_key(path));
        }
        host.units.values_mut().for_each(|u| u.active = true);
        let plan = remove_and_check(&host);
        let ids = ids(&plan);
        let stop_proxy = position(&plan, "systemd:stop:pipelock-proxy.service");
        let sudoers = position(&plan, &format!("remove:{}", paths::SUDOERS_DROPIN));
        let launcher = position(&plan, &format!("remove:{}", CLAUDE_WRAPPER));
        let end = position(&plan, "processes:cc-agent");
        let delete = position(&plan, "nft:delete");
        assert!(stop_proxy < end && end < delete, "{ids:?}");
        // No new agent can start between ending the old ones and deleting the table.
        assert!(sudoers < end && launcher < end, "{ids:?}");
        for path in [paths::RULE_FILE, paths::SUDOERS_DROPIN, CLAUDE_WRAPPER] {
            position(&plan, &format!("remove:{path}"));
        }
        position(&plan, "systemd:disable:pipelock-proxy.service");
    }

    fn remove_and_check(host: &Observed) -> Plan {
        let plan = plan_remove(&Config::defaults(), host);
        let after = simulate(host, &plan);
        assert!(after.files.iter().all(|(p, f)| *f == FileState::Absent
            || p == PURGE_ACCOUNTS_FILE
            || p == MANAGED_FILES_LIST));
        assert_eq!(after.nft, NftState::Absent);
        assert!(after.manifest.as_ref().unwrap().files.is_empty());
        plan
    }

    fn present(text: &str, mode: u32, gid: u32) -> FileState {
        FileState::Present {
            contents: text.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid,
        }
    }

    #[test]
    fn deny_lists_are_edited_once_and_taken_back_exactly() {
        use crate::account::{AT_DENY, CRON_DENY};
        let config = Config::defaults();
        let mut host = empty_host();
        let at_deny = "alias\nbackup\n";
        host.files
            .insert(AT_DENY.into(), present(at_deny, 0o640, 1));
        let plan = apply(&config, &host);
        let after = simulate(&host, &plan);
        let manifest = after.manifest.clone().unwrap();
        assert_eq!(
            manifest.deny_lists,
            BTreeMap::from([(AT_DENY.into(), false), (CRON_DENY.into(), true)])
        );
        assert_eq!(
            after.file(Utf8Path::new(AT_DENY)).contents(),
            Some(&b"alias\nbackup\ncc-agent\n"[..])
        );
        assert!(plan.diff().contains("+cc-agent"), "{}", plan.diff());
        assert!(apply(&config, &after).is_noop());

        let remove = plan_remove(&config, &after);
        let gone = simulate(&after, &remove);
        assert_eq!(
            gone.file(Utf8Path::new(AT_DENY)).contents(),
            Some(at_deny.as_bytes())
        );
        assert_eq!(gone.file(Utf8Path::new(CRON_DENY)), FileState::Absent);
        let steps: Vec<String> = remove.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            steps.contains(&format!("take cc-agent out of {AT_DENY}")),
            "{steps:?}"
        );
        assert!(
            steps.contains(&format!(
                "remove {CRON_DENY} (apply created it for cc-agent)"
            )),
            "{steps:?}"
        );
    }

    #[test]
    fn a_listing_the_admin_made_is_not_ours_to_take_back() {
        use crate::account::CRON_DENY;
        let config = Config::defaults();
        let mut host = empty_host();
        host.files
            .insert(CRON_DENY.into(), present("cc-agent\n", 0o644, 0));
        host.schedulers
            .remove(Utf8Path::new(crate::account::AT_DENY));
        let plan = apply(&config, &host);
        assert!(!ids(&plan).iter().any(|id| id.starts_with("deny-list:")));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("/etc/at.deny is not edited")));
        let after = simulate(&host, &plan);
        assert!(after.manifest.as_ref().unwrap().deny_lists.is_empty());
        let remove = plan_remove(&config, &after);
        assert!(!ids(&remove).iter().any(|id| id.starts_with("deny-list:")));
    }

    #[test]
    fn sshd_reloads_for_its_drop_in_and_jobs_go_before_the_table() {
        use crate::account::SSHD_DROPIN;
        let config = Config::defaults();
        let mut host = empty_host();
        host.units.insert(
            "ssh.service".into(),
            UnitState {
                installed: true,
                enabled: true,
                active: true,
                masked: false,
            },
        );
        let plan = apply(&config, &host);
        let write = position(&plan, &format!("write:{SSHD_DROPIN}"));
        let reload = position(&plan, "systemd:reload:ssh.service");
        assert!(write < reload);
        let after = simulate(&host, &plan);
        assert!(apply(&config, &after).is_noop());
        let remove = plan_remove(&config, &after);
        let removed = position(&remove, &format!("remove:{SSHD_DROPIN}"));
        assert!(removed < position(&remove, "systemd:reload:ssh.service"));
        let jobs = position(&remove, "jobs:cc-agent");
        assert!(jobs < position(&remove, "processes:cc-agent"));
        assert!(position(&remove, &format!("remove:{}", paths::SUDOERS_DROPIN)) < jobs);
    }

    #[test]
    fn maintainer_scripts_leave_units_to_the_package_and_masks_are_kept() {
        let config = Config::defaults();
        let plan = apply_with(&config, &empty_host(), 987, false);
        assert!(!ids(&plan)
            .iter()
            .any(|id| id.starts_with("systemd:enable:") || id.starts_with("systemd:start:")));
        position(&plan, "nft:load");
        assert!(plan.notes.iter().any(|n| n.contains("maintainer script")));

        let mut host = empty_host();
        host.units.get_mut(PROXY_UNIT).unwrap().masked = true;
        let plan = apply(&config, &host);
        let ids = ids(&plan);
        assert!(!ids.iter().any(|id| id.ends_with(PROXY_UNIT)), "{ids:?}");
        position(&plan, &format!("systemd:enable:{CONTAINMENT_UNIT}"));
        assert!(plan.warnings.iter().any(|w| w.contains("is masked")));
    }

    #[test]
    fn a_chroot_signals_no_process() {
        let config = Config::defaults();
        let mut host = simulate(&empty_host(), &apply(&config, &empty_host()));
        host.chroot = true;
        host.nft = NftState::Unreachable("running in a chroot".into());
        let remove = plan_remove(&config, &host);
        assert!(!ids(&remove).iter().any(|id| id.starts_with("processes:")));
        assert!(!ids(&remove).contains(&"nft:delete".to_string()));
        assert!(remove
            .notes
            .iter()
            .any(|n| n.contains("no process is signalled")));
        // A renamed agent in an image: the former agent's processes are not ours to end either.
        let plan = apply_as_uid_990(&config, &host);
        assert!(!ids(&plan).iter().any(|id| id.starts_with("processes:")));
    }

    #[test]
    fn remove_without_manifest_still_removes_fixed_paths() {
        let mut host = empty_host();
        host.files.insert(
            paths::SUDOERS_DROPIN.into(),
            FileState::Present {
                contents: b"x".to_vec(),
                mode: 0o440,
                uid: 0,
                gid: 0,
            },
        );
        let plan = plan_remove(&Config::defaults(), &host);
        position(&plan, &format!("remove:{}", paths::SUDOERS_DROPIN));
        assert!(!ids(&plan).contains(&"manifest".to_string()));
    }

    #[test]
    fn a_changed_agent_uid_ends_the_former_agents_processes_before_the_swap() {
        let config = Config::defaults();
        let after = simulate(&empty_host(), &apply(&config, &empty_host()));
        assert_eq!(after.manifest.as_ref().unwrap().agent_uid, Some(987));
        let plan = apply_as_uid_990(&config, &after);
        let end = position(&plan, "processes:cc-agent");
        assert!(matches!(
            &plan.steps[end],
            Step::EndProcesses { uid: Some(987), .. }
        ));
        assert!(end < position(&plan, "nft:load"));
    }

    #[test]
    fn step_ids_are_unique_in_a_plan() {
        let plan = apply(&Config::defaults(), &empty_host());
        let ids = ids(&plan);
        let unique: BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    const BUNDLE: &str = "/etc/pipelock/combined-ca.pem";

    fn bundle_text(proxy: &str) -> String {
        format!("{}: do not edit\n# Proxy CA: {proxy}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", crate::ca::BUNDLE_HEADER)
    }

    fn host_with_ca(desired: Result<String, String>) -> Observed {
        let mut host = empty_host();
        host.ca = Some(CaState {
            bundle: BUNDLE.into(),
            current: FileState::Absent,
            desired,
            key_changes: Ok(vec!["mode 0644 -> 0600".into()]),
            key_fix: None,
            notes: Vec::new(),
        });
        host
    }

    fn ca_step(plan: &Plan) -> &Step {
        &plan.steps[position(plan, "ca:bundle")]
    }

    #[test]
    fn ca_bundle_is_written_recorded_and_then_left_alone() {
        let config = Config::defaults();
        let host = host_with_ca(Ok(bundle_text("none")));
        let plan = apply(&config, &host);
        assert!(matches!(
            ca_step(&plan),
            Step::RefreshCaBundle { change: CaChange::Write, key_changes, refused: None, .. }
                if key_changes == &["mode 0644 -> 0600"]
        ));
        // After the files, before the units.
        assert!(
            position(&plan, "ca:bundle") > position(&plan, &format!("write:{}", CLAUDE_WRAPPER))
        );
        assert!(
            position(&plan, "ca:bundle")
                < position(&plan, "systemd:enable:pipelock-containment.service")
        );
        let diff = plan.diff();
        assert!(
            diff.contains("CA bundle /etc/pipelock/combined-ca.pem: 0 -> 1 certificates"),
            "{diff}"
        );
        assert!(diff.contains("+# Proxy CA: none"), "{diff}");
        let after = simulate(&host, &plan);
        assert_eq!(
            after.manifest.as_ref().unwrap().ca_bundle.as_deref(),
            Some(Utf8Path::new(BUNDLE))
        );
        let again = apply(&config, &after);
        assert!(again.is_noop(), "{}", again.summary());

        // A new proxy CA: only the bundle changes, and the diff says how.
        let mut changed = after.clone();
        changed.ca.as_mut().unwrap().desired = Ok(bundle_text("/etc/pipelock/ca.pem"));
        let plan = apply(&config, &changed);
        assert_eq!(
            ids(&plan),
            [
                "validate:/etc/nftables.d/pipelock-containment.nft",
                "validate:/etc/sudoers.d/pipelock-containment",
                "validate:/etc/sudoers.d/pipelock-containment-grants",
                "ca:bundle",
                "manifest"
            ]
        );
        assert!(
            plan.diff()
                .contains("-# Proxy CA: none\n+# Proxy CA: /etc/pipelock/ca.pem"),
            "{}",
            plan.diff()
        );

        // Wrong mode: fixed without a rewrite of the contents.
        let mut loose = after.clone();
        if let FileState::Present { mode, .. } = &mut loose.ca.as_mut().unwrap().current {
            *mode = 0o600;
        }
        assert!(matches!(
            ca_step(&apply(&config, &loose)),
            Step::RefreshCaBundle {
                change: CaChange::Permissions,
                ..
            }
        ));
        // A key that went loose again: the key alone.
        let mut key = after;
        key.ca.as_mut().unwrap().key_changes = Ok(vec!["owner 0:0 -> 988:988".into()]);
        assert!(matches!(
            ca_step(&apply(&config, &key)),
            Step::RefreshCaBundle {
                change: CaChange::KeyOnly,
                ..
            }
        ));
    }

    #[test]
    fn a_refused_proxy_ca_warns_and_never_blocks_apply() {
        let config = Config::defaults();
        let why = "ca.pem holds a PRIVATE KEY".to_string();
        let host = host_with_ca(Err(why.clone()));
        let plan = apply(&config, &host);
        // The key is still fixed; the bundle is left alone; the operator is told.
        assert!(matches!(
            ca_step(&plan),
            Step::RefreshCaBundle { change: CaChange::KeyOnly, refused: Some(r), .. } if *r == why
        ));
        let notes = plan.warnings.join("\n");
        assert!(notes.contains("the combined CA bundle /etc/pipelock/combined-ca.pem cannot be built: ca.pem holds a PRIVATE KEY"), "{notes}");
        let after = simulate(&host, &plan);
        let again = apply(&config, &after);
        assert!(again.is_noop(), "{}", again.summary());
        assert!(again.summary().starts_with("no changes\n"));
        assert!(again
            .summary()
            .contains("\nWARNING: the combined CA bundle"));
    }

    #[test]
    fn path_unit_dropin_follows_the_configured_ca_paths() {
        let mut config = Config::defaults();
        let host = empty_host();
        let plan = apply(&config, &host);
        assert!(!ids(&plan).contains(&format!("write:{}", crate::ca::PATH_UNIT_DROPIN)));
        config.ca.proxy_ca = "/srv/proxy/ca.pem".into();
        let after = simulate(&host, &plan);
        let mut running = after.clone();
        running.units.values_mut().for_each(|u| {
            u.enabled = true;
            u.active = true;
        });
        let plan = apply(&config, &running);
        let write = position(&plan, &format!("write:{}", crate::ca::PATH_UNIT_DROPIN));
        let reload = position(&plan, "systemd:daemon-reload");
        let restart = position(&plan, "systemd:start:pipelock-containment-ca.path");
        assert!(write < reload && reload < restart);
        assert!(matches!(
            &plan.steps[restart],
            Step::StartUnit {
                restart: true,
                required: false,
                ..
            }
        ));
        // The proxy is not restarted for it.
        assert!(!ids(&plan).contains(&"systemd:start:pipelock-proxy.service".to_string()));
        let after = simulate(&running, &plan);
        assert!(apply(&config, &after).is_noop());
        // Back to the default path: the drop-in goes.
        let plan = apply(&Config::defaults(), &after);
        position(&plan, &format!("remove:{}", crate::ca::PATH_UNIT_DROPIN));
        position(&plan, "systemd:daemon-reload");
        // remove takes it away too.
        let remove = plan_remove(&config, &after);
        position(&remove, &format!("remove:{}", crate::ca::PATH_UNIT_DROPIN));
    }

    #[test]
    fn helper_units_are_enabled_started_and_stopped() {
        let config = Config::defaults();
        let plan = apply(&config, &empty_host());
        for unit in [CA_PATH_UNIT, GRANTS_TIMER] {
            position(&plan, &format!("systemd:enable:{unit}"));
            let start = position(&plan, &format!("systemd:start:{unit}"));
            assert!(matches!(
                &plan.steps[start],
                Step::StartUnit {
                    restart: false,
                    required: false,
                    ..
                }
            ));
        }
        let mut after = simulate(&empty_host(), &plan);
        let remove = plan_remove(&config, &after);
        for unit in [CA_PATH_UNIT, GRANTS_TIMER] {
            assert!(
                position(&remove, &format!("systemd:stop:{unit}"))
                    < position(&remove, "processes:cc-agent")
            );
            position(&remove, &format!("systemd:disable:{unit}"));
        }
        // Without systemd: enabled offline, never started.
        after = empty_host();
        after.systemd_running = false;
        let plan = apply(&config, &after);
        position(&plan, &format!("systemd:enable:{GRANTS_TIMER}"));
        assert!(!ids(&plan).iter().any(|i| i.starts_with("systemd:start")));
    }

    #[test]
    fn remove_revokes_grants_first_and_deletes_only_our_bundle() {
        let config = Config::defaults();
        let host = host_with_ca(Ok(bundle_text("none")));
        let mut after = simulate(&host, &apply(&config, &host));
        let ours = after.ca.as_ref().unwrap().current.clone();
        after.files.insert(BUNDLE.into(), ours);
        after.files.insert(
            paths::GRANT_RECORDS.into(),
            FileState::Present {
                contents: b"{}".to_vec(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
        let plan = plan_remove(&config, &after);
        let revoke = position(&plan, "grants:revoke-all");
        let grants_rule = position(&plan, &format!("remove:{}", paths::SUDOERS_GRANTS_DROPIN));
        assert!(grants_rule < revoke);
        assert!(revoke < position(&plan, "processes:cc-agent"));
        assert!(revoke < position(&plan, "nft:delete"));
        position(&plan, &format!("remove:{BUNDLE}"));
        position(&plan, "rmdir:/etc/pipelock");
        // A file at ca.combined_bundle that `ca refresh` did not write stays.
        after.files.insert(
            BUNDLE.into(),
            FileState::Present {
                contents: b"system roots".to_vec(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
        after.manifest = None;
        let plan = plan_remove(&config, &after);
        assert!(!ids(&plan).contains(&format!("remove:{BUNDLE}")));
        assert!(!ids(&plan).contains(&"rmdir:/etc/pipelock".to_string()));
    }

    #[test]
    fn a_moved_bundle_removes_the_old_one() {
        let config = Config::defaults();
        let host = host_with_ca(Ok(bundle_text("none")));
        let mut after = simulate(&host, &apply(&config, &host));
        after
            .files
            .insert(BUNDLE.into(), after.ca.as_ref().unwrap().current.clone());
        let mut moved = config.clone();
        moved.ca.combined_bundle = "/etc/pipelock/other.pem".into();
        after.ca.as_mut().unwrap().bundle = moved.ca.combined_bundle.clone();
        after.ca.as_mut().unwrap().current = FileState::Absent;
        let plan = apply(&moved, &after);
        position(&plan, &format!("remove:{BUNDLE}"));
        position(&plan, "ca:bundle");
    }

    fn purge_input(delete: bool) -> PurgeInput {
        let mut config = Config::defaults();
        config.users.delete_on_purge = delete;
        PurgeInput {
            config: Some(config),
            users_present: ["cc-agent".to_string(), "pipelock-proxy".to_string()].into(),
            groups_present: ["pipelock-operators".to_string()].into(),
            agent_homes: vec!["/var/lib/cc-agent".into()],
            ..Default::default()
        }
    }

    #[test]
    fn purge_deletes_the_accounts_only_when_opted_in_and_the_state_last() {
        let plan = plan_purge(&purge_input(true));
        assert_eq!(
            ids(&plan),
            [
                "users:delete:cc-agent",
                "users:delete:pipelock-proxy",
                "users:delete-group:pipelock-operators",
                "rm-tree:/var/lib/pipelock-containment",
            ]
        );
        assert!(matches!(
            &plan.steps[0],
            Step::DeleteUser {
                remove_home: true,
                ..
            }
        ));
        assert!(matches!(
            &plan.steps[1],
            Step::DeleteUser {
                remove_home: false,
                ..
            }
        ));
        let kept = plan_purge(&purge_input(false));
        assert_eq!(
            ids(&kept),
            [
                "rm-tree:/var/lib/cc-agent",
                "rm-tree:/var/lib/pipelock-containment"
            ]
        );
        assert!(kept.notes.iter().any(|n| n.contains("users kept")));
        // The manifest's opt-in counts when the config is gone.
        let manifest_only = PurgeInput {
            config: None,
            manifest: Some(Manifest {
                agent_user: "cc-agent".into(),
                proxy_user: "pipelock-proxy".into(),
                operators_group: "pipelock-operators".into(),
                delete_users_on_purge: true,
                ..Default::default()
            }),
            ..purge_input(false)
        };
        assert_eq!(plan_purge(&manifest_only).steps.len(), 4);
    }
}
