//! The CA bundle on the host: read the system bundle and the proxy CA, write the combined bundle
//! atomically (0644 root:root, no write when unchanged), and fix the proxy CA key's owner and mode.
//!
//! `refresh` is what `ca refresh` and `apply` call; `inspect` is the read-only view `verify` and
//! `status` use. The pure work (parsing, merging, who-can-read) lives in `pipelock_policy::ca`.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{fchown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use pipelock_policy::ca::{self, FileAccess, ProxyCaStatus};
use pipelock_policy::config::Config;
use pipelock_policy::facts::Facts;

/// Mode of the combined bundle: everyone (the agent included) must read it.
pub const BUNDLE_MODE: u32 = 0o644;
/// Mode of the proxy CA key: the proxy user only.
pub const KEY_MODE: u32 = 0o600;
/// Where Debian's update-ca-certificates runs hooks; ours is named without dots (run-parts).
pub const DEBIAN_HOOK: &str = "/etc/ca-certificates/update.d/pipelock-containment";

/// Largest file read as a CA bundle or certificate (a bundle is a few hundred KiB).
const MAX_READ: u64 = 16 * 1024 * 1024;

/// The four files involved, resolved from the config and the host's distro.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaPaths {
    pub system_bundle: Utf8PathBuf,
    pub proxy_ca: Utf8PathBuf,
    pub proxy_ca_key: Utf8PathBuf,
    pub combined_bundle: Utf8PathBuf,
}

impl CaPaths {
    /// `ca.system_bundle` if set, else the distro's bundle.
    pub fn new(config: &Config, facts: &Facts) -> CaPaths {
        CaPaths {
            system_bundle: config
                .ca
                .system_bundle
                .clone()
                .unwrap_or_else(|| facts.distro.system_ca_bundle.clone()),
            proxy_ca: config.ca.proxy_ca.clone(),
            proxy_ca_key: config.ca.proxy_ca_key.clone(),
            combined_bundle: config.ca.combined_bundle.clone(),
        }
    }
}

pub use pipelock_policy::ca::Owners;

/// What happened to the combined bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleAction {
    /// New contents were written.
    Written,
    /// Dry run: new contents would be written.
    WouldWrite,
    /// Same contents, owner and mode: nothing was written.
    Unchanged,
    /// Same contents; the owner or mode were wrong and have been fixed.
    PermissionsFixed,
    /// Dry run: same contents, the owner or mode would be fixed.
    WouldFixPermissions,
}

/// The proxy CA key, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyOutcome {
    pub path: Utf8PathBuf,
    /// None: no key file (nothing to fix, nothing to leak).
    pub before: Option<FileAccess>,
    pub after: Option<FileAccess>,
    /// What was (or, in a dry run, would be) changed, in words.
    pub changes: Vec<String>,
    pub agent_could_read_before: bool,
    /// After this run (in a dry run: still, since nothing changed).
    pub agent_can_read: bool,
}

/// Everything `ca refresh` did and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaOutcome {
    pub dry_run: bool,
    pub paths: CaPaths,
    pub bundle: BundleAction,
    pub system_certificates: usize,
    pub duplicates_skipped: usize,
    pub proxy_ca: ProxyCaStatus,
    pub key: KeyOutcome,
    pub warnings: Vec<String>,
}

impl CaOutcome {
    /// The proxy CA is in the bundle: agents' tools will accept intercepted TLS.
    pub fn interception_trusted(&self) -> bool {
        matches!(self.proxy_ca, ProxyCaStatus::Trusted { .. })
    }

    /// Human-readable report, one line per fact.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let bundle = &self.paths.combined_bundle;
        let action = match self.bundle {
            BundleAction::Written => "written",
            BundleAction::WouldWrite => "would be written (dry run)",
            BundleAction::Unchanged => "unchanged",
            BundleAction::PermissionsFixed => "unchanged; owner/mode fixed to root:root 0644",
            BundleAction::WouldFixPermissions => {
                "unchanged; owner/mode would be fixed to root:root 0644 (dry run)"
            }
        };
        let proxy_part = match &self.proxy_ca {
            ProxyCaStatus::Missing => String::new(),
            ProxyCaStatus::Trusted { certificates, .. } => format!(
                " + {} proxy CA certificate{}",
                certificates.len(),
                if certificates.len() == 1 { "" } else { "s" }
            ),
        };
        lines.push(format!(
            "combined CA bundle {bundle}: {action} ({} system roots from {}{proxy_part})",
            self.system_certificates, self.paths.system_bundle
        ));
        lines.extend(proxy_ca_lines(&self.paths, &self.proxy_ca));
        lines.extend(self.key.report(self.dry_run));
        lines
    }
}

/// What the bundle says about the proxy CA: not trusted yet, or each certificate trusted.
pub fn proxy_ca_lines(paths: &CaPaths, proxy_ca: &ProxyCaStatus) -> Vec<String> {
    let mut lines = Vec::new();
    match proxy_ca {
        ProxyCaStatus::Missing => lines.push(format!(
            "TLS interception is not trusted yet: there is no proxy CA at {}, so agents \
                 trust the system roots only. Put the proxy's CA certificate there; the bundle \
                 is refreshed when it appears (pipelock-containment-ca.path), or run \
                 `pipelock-containment ca refresh`.",
            paths.proxy_ca
        )),
        ProxyCaStatus::Trusted {
            certificates,
            already_in_system,
        } => {
            for cert in certificates {
                lines.push(format!(
                    "proxy CA {}: `{}`, valid until {}, SHA-256 {}",
                    paths.proxy_ca,
                    ca::sanitize(&cert.subject),
                    ca::format_time(cert.not_after),
                    cert.sha256
                ));
            }
            if *already_in_system > 0 {
                lines.push(format!(
                    "the system bundle already holds the proxy CA ({already_in_system} \
                         certificate(s)); it is not repeated"
                ));
            }
        }
    }
    lines
}

impl KeyOutcome {
    /// The key's state in words, and a loud line when the agent could read it.
    pub fn report(&self, dry_run: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let key = self;
        match &key.before {
            None => lines.push(format!(
                "proxy CA key {}: absent (nothing to protect)",
                key.path
            )),
            Some(_) if key.changes.is_empty() => lines.push(format!(
                "proxy CA key {}: owner and mode correct (proxy user, 0600)",
                key.path
            )),
            Some(_) => lines.push(format!(
                "proxy CA key {}: {}{}",
                key.path,
                key.changes.join(", "),
                if dry_run { " (dry run)" } else { "" }
            )),
        }
        if key.agent_could_read_before {
            lines.push(if key.agent_can_read {
                format!(
                    "the agent user CAN READ the proxy CA key {}: the host is not contained \
                     until `pipelock-containment ca refresh` (or apply) fixes it",
                    key.path
                )
            } else {
                format!(
                    "the agent user could read the proxy CA key {} before this fix: treat the \
                     key as exposed and regenerate the proxy CA",
                    key.path
                )
            });
        }
        lines
    }
}

/// What `verify` and `status` need to know, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaInspection {
    pub paths: CaPaths,
    /// The combined bundle exists.
    pub bundle_present: bool,
    /// None: there is no proxy CA file (interception not trusted yet, not a failure).
    pub bundle_contains_proxy_ca: Option<bool>,
    /// The bundle has exactly the contents `ca refresh` would write now.
    pub bundle_current: bool,
    /// None: there is no key file.
    pub agent_can_read_key: Option<bool>,
    /// Why a question could not be answered (an unreadable or invalid file).
    pub problems: Vec<String>,
}

/// Owners for this host: the bundle root:root, the key the proxy user's, the agent's groups from NSS.
pub fn owners(facts: &Facts) -> Result<Owners> {
    Ok(Owners {
        bundle: (0, 0),
        key: (facts.proxy.uid, facts.proxy.gid),
        agent_uid: facts.agent.uid,
        agent_groups: agent_groups(&facts.agent.name, facts.agent.gid)?,
    })
}

/// The agent's groups as the system would give them at login (primary plus supplementary).
pub fn agent_groups(name: &str, gid: u32) -> Result<Vec<u32>> {
    let cname = std::ffi::CString::new(name).context("user name with a NUL byte")?;
    let groups = nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
        .with_context(|| format!("listing the groups of user {name:?}"))?;
    let mut groups: Vec<u32> = groups.into_iter().map(|g| g.as_raw()).collect();
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(groups)
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Refresh the combined bundle and fix the key, for this host's config and facts.
pub fn refresh(config: &Config, facts: &Facts, dry_run: bool) -> Result<CaOutcome> {
    refresh_at(
        &CaPaths::new(config, facts),
        &owners(facts)?,
        now(),
        dry_run,
    )
}

/// `refresh` with every input explicit (paths, owners, the time), so tests can point it at a
/// temporary directory.
pub fn refresh_at(paths: &CaPaths, owners: &Owners, now: i64, dry_run: bool) -> Result<CaOutcome> {
    // The Debian hook and the path unit can fire together: one refresh at a time.
    let _lock = if dry_run {
        None
    } else {
        Some(lock_bundle_dir(&paths.combined_bundle)?)
    };
    // The plan, read-only: the same one apply's CA step carries out.
    let key = fix_key(&paths.proxy_ca_key, owners, true);
    let built = plan_bundle(paths, owners, now);
    let key_fix = match &key {
        Ok(planned) if !planned.changes.is_empty() => Some((paths.proxy_ca_key.as_path(), owners)),
        _ => None,
    };
    let (bundle, planned) = match (built, key.as_ref()) {
        (Ok(built), _) => built,
        (Err(err), Ok(_)) => {
            // The key is protected even when the bundle cannot be built: that matters more.
            if !dry_run {
                carry_out(&paths.combined_bundle, "", None, key_fix)?;
            }
            return Err(err);
        }
        (Err(err), Err(key_err)) => {
            return Err(err.context(format!("and the proxy CA key: {key_err:#}")))
        }
    };
    let mut key = key?;
    let action = if dry_run {
        planned
    } else {
        let write = (planned != BundleAction::Unchanged).then_some(owners.bundle);
        if let Some(fixed) = carry_out(&paths.combined_bundle, &bundle.text, write, key_fix)? {
            key = fixed;
        }
        match planned {
            BundleAction::WouldWrite => BundleAction::Written,
            BundleAction::WouldFixPermissions => BundleAction::PermissionsFixed,
            done => done,
        }
    };

    Ok(CaOutcome {
        dry_run,
        paths: paths.clone(),
        bundle: action,
        system_certificates: bundle.system_certificates,
        duplicates_skipped: bundle.duplicates_skipped,
        proxy_ca: bundle.proxy_ca,
        key,
        warnings: bundle.warnings,
    })
}

/// The bundle `refresh` would write now, and what writing it would do. Read-only.
fn plan_bundle(paths: &CaPaths, owners: &Owners, now: i64) -> Result<(ca::Bundle, BundleAction)> {
    let system = read_limited(&paths.system_bundle)?.with_context(|| {
        format!(
            "the system CA bundle {} does not exist: install the distro's CA package \
             (ca-certificates) or set ca.system_bundle in the config",
            paths.system_bundle
        )
    })?;
    let proxy = read_limited(&paths.proxy_ca)?;
    let bundle = match ca::build_bundle(
        &system,
        paths.system_bundle.as_str(),
        proxy
            .as_deref()
            .map(|bytes| (bytes, paths.proxy_ca.as_str())),
        now,
    ) {
        Ok(bundle) => bundle,
        Err(err) => {
            let exposed = matches!(err, ca::CaError::PrivateKey { .. })
                && std::fs::metadata(&paths.proxy_ca).is_ok_and(|meta| {
                    let access = FileAccess {
                        uid: meta.uid(),
                        gid: meta.gid(),
                        mode: meta.mode() & 0o7777,
                        has_acl: has_access_acl(&paths.proxy_ca).unwrap_or(true),
                    };
                    ca::can_read(&access, owners.agent_uid, &owners.agent_groups)
                });
            let err = anyhow::Error::new(err);
            let err = if exposed {
                err.context(format!(
                    "{} holds a private key that the agent user can read: move the key to \
                     ca.proxy_ca_key, and treat it as exposed (regenerate the proxy CA)",
                    paths.proxy_ca
                ))
            } else {
                err
            };
            return Err(err.context(format!(
                "cannot build the combined CA bundle {}",
                paths.combined_bundle
            )));
        }
    };
    let action = planned_action(
        &paths.combined_bundle,
        bundle.text.as_bytes(),
        owners.bundle,
    )?;
    Ok((bundle, action))
}

/// What `apply` plans with: the bundle `refresh` would write now (or why it cannot be built) and
/// what fixing the key would change (or why it cannot be fixed). Read-only.
pub struct Planned {
    pub paths: CaPaths,
    pub bundle: std::result::Result<ca::Bundle, String>,
    pub key_changes: std::result::Result<Vec<String>, String>,
    /// None when the owners could not be looked up (`key_changes` then says why).
    pub owners: Option<Owners>,
}

/// Read the inputs and build the would-be bundle with the pure `ca::build_bundle`; inspect the
/// key without changing it. Nothing is written or locked.
pub fn plan(config: &Config, facts: &Facts) -> Planned {
    let paths = CaPaths::new(config, facts);
    let owners = owners(facts);
    let (bundle, key_changes) = match &owners {
        Err(err) => (Err(format!("{err:#}")), Err(format!("{err:#}"))),
        Ok(owners) => (
            plan_bundle(&paths, owners, now())
                .map(|(bundle, _)| bundle)
                .map_err(|err| format!("{err:#}")),
            fix_key(&paths.proxy_ca_key, owners, true)
                .map(|key| key.changes)
                .map_err(|err| format!("{err:#}")),
        ),
    };
    Planned {
        paths,
        bundle,
        key_changes,
        owners: owners.ok(),
    }
}

/// Carry out apply's CA step as planned: write the planned bundle (root:root 0644, through
/// `write_atomic`) when `write`, then fix the key when `key_fix` is given.
pub fn install_planned(
    bundle: &Utf8Path,
    contents: &str,
    write: bool,
    key_fix: Option<(&Utf8Path, &Owners)>,
) -> Result<Option<KeyOutcome>> {
    let _lock = lock_bundle_dir(bundle)?;
    carry_out(bundle, contents, write.then_some((0, 0)), key_fix)
}

/// The CA plan's operations, under the caller's lock: the bundle written with its owner when
/// `write` names one, then the key fixed.
fn carry_out(
    bundle: &Utf8Path,
    contents: &str,
    write: Option<(u32, u32)>,
    key_fix: Option<(&Utf8Path, &Owners)>,
) -> Result<Option<KeyOutcome>> {
    if let Some(owner) = write {
        write_bundle(bundle, contents.as_bytes(), owner, BUNDLE_MODE)?;
    }
    key_fix
        .map(|(key, owners)| fix_key(key, owners, false))
        .transpose()
}

/// Whether a `refresh` error comes from the inputs (a proxy CA file that is not a CA, an empty
/// system bundle) rather than from writing: `apply` warns about those and keeps the old bundle.
pub fn is_refused_input(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<ca::CaError>())
}

/// Read-only checks for `verify`/`status`.
pub fn inspect(config: &Config, facts: &Facts) -> Result<CaInspection> {
    Ok(inspect_at(
        &CaPaths::new(config, facts),
        &owners(facts)?,
        now(),
    ))
}

/// `inspect` with explicit inputs.
pub fn inspect_at(paths: &CaPaths, owners: &Owners, now: i64) -> CaInspection {
    let mut problems = Vec::new();
    let mut note = |err: anyhow::Error| problems.push(format!("{err:#}"));
    let bundle = read_limited(&paths.combined_bundle).unwrap_or_else(|e| {
        note(e);
        None
    });
    let proxy = read_limited(&paths.proxy_ca).unwrap_or_else(|e| {
        note(e);
        None
    });
    let bundle_contains_proxy_ca = match (&bundle, &proxy) {
        (_, None) => None,
        (None, Some(_)) => Some(false),
        (Some(bundle), Some(proxy)) => {
            match ca::bundle_contains_proxy_ca(bundle, proxy, paths.proxy_ca.as_str()) {
                Ok(found) => Some(found),
                Err(err) => {
                    note(err.into());
                    Some(false)
                }
            }
        }
    };
    let bundle_current = match (&bundle, read_limited(&paths.system_bundle)) {
        (Some(current), Ok(Some(system))) => ca::build_bundle(
            &system,
            paths.system_bundle.as_str(),
            proxy.as_deref().map(|p| (p, paths.proxy_ca.as_str())),
            now,
        )
        .is_ok_and(|expected| expected.text.as_bytes() == current.as_slice()),
        _ => false,
    };
    let agent_can_read_key = match key_access(&paths.proxy_ca_key) {
        Ok(None) => None,
        Ok(Some((_, access))) => Some(ca::can_read(
            &access,
            owners.agent_uid,
            &owners.agent_groups,
        )),
        Err(err) => {
            note(err);
            // Unknown counts as readable: never report a host contained on a guess.
            Some(true)
        }
    };
    CaInspection {
        paths: paths.clone(),
        bundle_present: bundle.is_some(),
        bundle_contains_proxy_ca,
        bundle_current,
        agent_can_read_key,
        problems,
    }
}

/// Hold an exclusive lock on the bundle's directory (created 0755 if missing) until dropped.
fn lock_bundle_dir(bundle: &Utf8Path) -> Result<nix::fcntl::Flock<File>> {
    let dir = ensure_bundle_dir(bundle)?;
    let file = File::open(dir).with_context(|| format!("cannot open the directory {dir}"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("cannot lock the directory {dir}"))
}

fn bundle_dir(bundle: &Utf8Path) -> Result<&Utf8Path> {
    bundle
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .with_context(|| format!("{bundle} has no directory"))
}

/// Read a whole file, at most `MAX_READ` bytes; `None` if it does not exist.
fn read_limited(path: &Utf8Path) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot open {path}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {path}"))?;
    if bytes.len() as u64 > MAX_READ {
        bail!("{path} is larger than {MAX_READ} bytes: not a CA file");
    }
    Ok(Some(bytes))
}

/// What putting `contents` at `path` (owner, 0644) would do: nothing, fix the owner or mode,
/// or write it. A symlink or anything but a regular file there is replaced by a regular file.
fn planned_action(path: &Utf8Path, contents: &[u8], owner: (u32, u32)) -> Result<BundleAction> {
    let current = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Some(meta),
        Ok(_) => None,
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("cannot inspect {path}")),
    };
    if let Some(meta) = current {
        let same = meta.len() == contents.len() as u64
            && read_limited(path)?.is_some_and(|bytes| bytes == contents);
        if same {
            // A rewrite gives a fresh inode: it also breaks any hard link to the bundle.
            let right = (meta.uid(), meta.gid()) == owner
                && meta.mode() & 0o7777 == BUNDLE_MODE
                && meta.nlink() == 1;
            return Ok(if right {
                BundleAction::Unchanged
            } else {
                BundleAction::WouldFixPermissions
            });
        }
    }
    Ok(BundleAction::WouldWrite)
}

/// The bundle's directory, created (mode 0755) when missing.
fn ensure_bundle_dir(bundle: &Utf8Path) -> Result<&Utf8Path> {
    let dir = bundle_dir(bundle)?;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create the directory {dir}"))?;
    }
    Ok(dir)
}

/// The bundle through `host::fs::write_atomic`, its directory made first.
fn write_bundle(path: &Utf8Path, contents: &[u8], owner: (u32, u32), mode: u32) -> Result<()> {
    ensure_bundle_dir(path)?;
    crate::fs::write_atomic(path, contents, owner, mode)
}

/// Describe the key without opening it (so a dry run or verify works unprivileged); `None` if it
/// does not exist. Refuses anything but a regular file with a single link, so a planted symlink
/// or hard link cannot make root change the owner of another file.
fn key_access(path: &Utf8Path) -> Result<Option<(Identity, FileAccess)>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot inspect the proxy CA key {path}"))
        }
    };
    check_key_inode(path, &meta)?;
    let access = FileAccess {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        has_acl: has_access_acl(path)?,
    };
    Ok(Some(((meta.dev(), meta.ino()), access)))
}

/// Device and inode: the file `fix_key` inspected is the one it changes.
type Identity = (u64, u64);

fn check_key_inode(path: &Utf8Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.file_type().is_symlink() {
        bail!(
            "the proxy CA key {path} is a symlink: refusing to change its owner through it; \
             replace it with the key file itself"
        );
    }
    if !meta.file_type().is_file() {
        bail!("the proxy CA key {path} is not a regular file");
    }
    if meta.nlink() != 1 {
        bail!(
            "the proxy CA key {path} has {} hard links: refusing to change the owner of a \
             file that is also elsewhere; make it a single file",
            meta.nlink()
        );
    }
    Ok(())
}

/// Whether the file (not a symlink's target) carries a POSIX access ACL.
fn has_access_acl(path: &Utf8Path) -> Result<bool> {
    const NAME: &[u8] = b"system.posix_acl_access\0";
    let cpath = std::ffi::CString::new(path.as_str())
        .with_context(|| format!("{path} contains a NUL byte"))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; a null buffer with size 0
    // only asks for the value's size.
    let size = unsafe {
        nix::libc::lgetxattr(
            cpath.as_ptr(),
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            0,
        )
    };
    if size >= 0 {
        return Ok(size > 0);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(nix::libc::ENODATA) | Some(nix::libc::ENOTSUP) => Ok(false),
        _ => Err(err).with_context(|| format!("cannot read the ACL of {path}")),
    }
}

/// Make the key owned by the proxy user, mode 0600; report whether the agent could read it.
fn fix_key(path: &Utf8Path, owners: &Owners, dry_run: bool) -> Result<KeyOutcome> {
    let Some((identity, before)) = key_access(path)? else {
        return Ok(KeyOutcome {
            path: path.to_owned(),
            before: None,
            after: None,
            changes: Vec::new(),
            agent_could_read_before: false,
            agent_can_read: false,
        });
    };
    let readable =
        |access: &FileAccess| ca::can_read(access, owners.agent_uid, &owners.agent_groups);
    let mut changes = Vec::new();
    if (before.uid, before.gid) != owners.key {
        changes.push(format!(
            "owner {}:{} -> {}:{}",
            before.uid, before.gid, owners.key.0, owners.key.1
        ));
    }
    if before.mode != KEY_MODE {
        changes.push(format!("mode {:04o} -> {KEY_MODE:04o}", before.mode));
    }
    let after = if dry_run || changes.is_empty() {
        before
    } else {
        // Change it through a descriptor opened without following symlinks, after checking it
        // is still the inode inspected above.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(
                nix::libc::O_NOFOLLOW
                    | nix::libc::O_NONBLOCK
                    | nix::libc::O_NOCTTY
                    | nix::libc::O_CLOEXEC,
            )
            .open(path)
            .with_context(|| format!("cannot open the proxy CA key {path}"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat the proxy CA key {path}"))?;
        check_key_inode(path, &meta)?;
        if (meta.dev(), meta.ino()) != identity {
            bail!("the proxy CA key {path} was replaced while being fixed: run again");
        }
        fchown(&file, Some(owners.key.0), Some(owners.key.1)).with_context(|| {
            format!(
                "cannot make the proxy user ({}:{}) the owner of the proxy CA key {path}",
                owners.key.0, owners.key.1
            )
        })?;
        // fchmod also sets the ACL mask to ---, which disables any named ACL entry.
        file.set_permissions(Permissions::from_mode(KEY_MODE))
            .with_context(|| format!("cannot set the mode of the proxy CA key {path} to 0600"))?;
        file.sync_all()
            .with_context(|| format!("cannot flush {path}"))?;
        key_access(path)?
            .map(|(_, access)| access)
            .with_context(|| format!("the proxy CA key {path} disappeared while being fixed"))?
    };
    Ok(KeyOutcome {
        path: path.to_owned(),
        before: Some(before),
        after: Some(after),
        changes,
        agent_could_read_before: readable(&before),
        agent_can_read: readable(&after),
    })
}

#[cfg(test)]
mod tests;
