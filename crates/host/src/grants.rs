//! Applies and takes back workspace grants on the host: caller identity, POSIX ACLs (posix-acl), the records file.
//!
//! Every path is opened component by component with `O_NOFOLLOW` from `/`, and ACLs are read
//! and written through `/proc/self/fd/N` of the opened file, so a symlink swapped in during a
//! grant can never redirect an entry to another file. Symlinks inside a tree are skipped.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use nix::dir::Type as DirType;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode as StatMode, SFlag};
use nix::unistd::{getuid, Group, User};
use posix_acl::{PosixACL, Qualifier};

use pipelock_policy::config::{Config, DEFAULT_CONFIG_PATH};
use pipelock_policy::grants::{
    agent_shortfall, check_operator_may_grant, check_overlap, check_path_policy, classify_name,
    content_matches, perm_text, plan_entry, restore_default, restore_entry, revoke_plan, Acl,
    AclChange, AclKind, CredentialPattern, Desired, GrantRecord, Granter, Mode, NameVerdict,
    Records, RevokeStep, Role, X,
};

/// Who runs the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Root: may grant anything. `sudo_user` names who became root through sudo, for the record.
    Root { sudo_user: Option<String> },
    /// A member of the operators' group, through the sudo rule: own directories only.
    Operator { who: Granter, home: Utf8PathBuf },
}

impl Caller {
    pub fn granter(&self) -> Granter {
        match self {
            Caller::Root { sudo_user: None } => Granter {
                name: "root".into(),
                uid: 0,
            },
            Caller::Root {
                sudo_user: Some(user),
            } => Granter {
                name: format!("root (sudo by {user})"),
                uid: 0,
            },
            Caller::Operator { who, .. } => who.clone(),
        }
    }
}

/// Refuse early, before reading the config, when not running as root.
pub fn require_root() -> Result<()> {
    if getuid().is_root() {
        return Ok(());
    }
    Err(pipelock_policy::exit::NeedRoot(
        "grants change ACLs as root: run it through sudo (members of the operators' group may \
         grant directories they own), for example `sudo pipelock-containment grant ~/src/PROJECT`"
            .into(),
    )
    .into())
}

/// Identify the caller. SUDO_UID and SUDO_USER are trusted only when the real UID is 0 (sudo
/// sets them itself and resets the environment); a caller that is not root must go through sudo.
///
/// A sudo caller in the operators' group may have come through the narrow grants rule, so they
/// get the operator's limits. A sudo caller outside that group cannot have used that rule: sudo
/// gave them root through another rule, and they act as root (recorded as `root (sudo by NAME)`).
/// An operator who is also a full administrator acts as root with
/// `sudo env -u SUDO_UID -u SUDO_USER pipelock-containment grant ...`.
pub fn identify_caller(config: &Config) -> Result<Caller> {
    if !getuid().is_root() {
        return Err(pipelock_policy::exit::NeedRoot(format!(
            "grants change ACLs as root: run it through sudo (members of {} may grant \
             directories they own), for example `sudo pipelock-containment grant ~/src/PROJECT`",
            config.users.operators_group
        ))
        .into());
    }
    let sudo_uid = std::env::var("SUDO_UID").ok();
    let Some(sudo_uid) = sudo_uid.filter(|v| !v.is_empty()) else {
        return Ok(Caller::Root { sudo_user: None });
    };
    let uid: u32 = sudo_uid
        .parse()
        .map_err(|_| anyhow!("SUDO_UID={sudo_uid:?} is not a UID"))?;
    if uid == 0 {
        return Ok(Caller::Root { sudo_user: None });
    }
    let name = std::env::var("SUDO_USER")
        .map_err(|_| anyhow!("SUDO_UID is set but SUDO_USER is not: run it through sudo"))?;
    let user = User::from_name(&name)
        .with_context(|| format!("looking up the sudo caller {name:?}"))?
        .ok_or_else(|| anyhow!("the sudo caller {name:?} is not in the user database"))?;
    if user.uid.as_raw() != uid {
        bail!(
            "SUDO_USER={name} has UID {}, but SUDO_UID={uid}: refusing",
            user.uid
        );
    }
    let group = Group::from_name(&config.users.operators_group)
        .context("looking up the operators' group")?;
    let is_operator = match group {
        Some(group) => {
            let cname = CString::new(name.clone())?;
            nix::unistd::getgrouplist(&cname, user.gid)
                .with_context(|| format!("reading the groups of {name}"))?
                .contains(&group.gid)
        }
        None => false,
    };
    if !is_operator {
        eprintln!(
            "note: acting as root: {name} is not in {}, so sudo gave root through another rule",
            config.users.operators_group
        );
        return Ok(Caller::Root {
            sudo_user: Some(name),
        });
    }
    let home = Utf8PathBuf::from_path_buf(user.dir)
        .map_err(|dir| anyhow!("the home of {name} ({}) is not UTF-8", dir.display()))?;
    let home = std::fs::canonicalize(&home)
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or(home);
    Ok(Caller::Operator {
        who: Granter { name, uid },
        home,
    })
}

/// Operators run through sudo with the default config only: another config could point the
/// records at any file or drop the credential patterns.
pub fn check_operator_arguments(
    caller: &Caller,
    config_path: &Utf8Path,
    force: bool,
) -> Result<()> {
    if let Caller::Operator { who, .. } = caller {
        if config_path != DEFAULT_CONFIG_PATH {
            bail!(
                "{}: --config is for root only (operators use {DEFAULT_CONFIG_PATH})",
                who.name
            );
        }
        if force {
            bail!(
                "{}: --force and --all are for root only; ask an administrator",
                who.name
            );
        }
    }
    Ok(())
}

/// The agent account named in the config, from the user database.
pub fn agent_account(config: &Config) -> Result<Granter> {
    let account = super::facts::lookup_account(&config.users.agent)?.ok_or_else(|| {
        anyhow!(
            "the agent user {:?} does not exist: run `pipelock-containment apply` as root first",
            config.users.agent
        )
    })?;
    if account.uid == 0 {
        bail!("the agent user {:?} has UID 0: refusing", account.name);
    }
    Ok(Granter {
        name: account.name,
        uid: account.uid,
    })
}

// ---------------------------------------------------------------------------------------------
// Safe opening and ACL I/O

fn cloexec(flags: OFlag) -> OFlag {
    flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW
}

fn open_at(dir: RawFd, name: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let fd = openat(Some(dir), name, cloexec(flags), StatMode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open an absolute path without following any symlink on the way (`O_PATH`).
fn open_nofollow(path: &Utf8Path) -> Result<OwnedFd> {
    let mut fd = open_at(nix::libc::AT_FDCWD, "/", OFlag::O_PATH | OFlag::O_DIRECTORY)
        .context("opening /")?;
    let mut so_far = Utf8PathBuf::from("/");
    for component in path.components().skip(1) {
        let name = component.as_str();
        so_far.push(name);
        fd = open_at(fd.as_raw_fd(), name, OFlag::O_PATH).with_context(|| {
            format!("opening {so_far} (a symlink or a missing path is not followed)")
        })?;
    }
    let stat = fstat(fd.as_raw_fd()).with_context(|| format!("stat {path}"))?;
    if file_type(&stat) == SFlag::S_IFLNK {
        bail!("{path} is a symlink now; it was not followed");
    }
    Ok(fd)
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

fn proc_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL")
}

fn acl_error(what: &str, path: &Utf8Path, err: impl fmt::Display) -> anyhow::Error {
    anyhow!(
        "{what} of {path}: {err} (does the file system support POSIX ACLs? mount it with `acl`)"
    )
}

fn to_model(acl: &PosixACL) -> Acl {
    let mut model = Acl::default();
    for entry in acl.entries() {
        let perm = (entry.perm & 7) as u8;
        match entry.qual {
            Qualifier::UserObj => model.user_obj = perm,
            Qualifier::GroupObj => model.group_obj = perm,
            Qualifier::Other => model.other = perm,
            Qualifier::Mask => model.mask = Some(perm),
            Qualifier::User(uid) => {
                model.users.insert(uid, perm);
            }
            Qualifier::Group(gid) => {
                model.groups.insert(gid, perm);
            }
            Qualifier::Undefined => {}
        }
    }
    model
}

/// The access ACL through the descriptor itself, or through /proc for an `O_PATH` one (EBADF).
fn read_access(fd: RawFd, path: &Utf8Path) -> Result<Acl> {
    // SAFETY: `fd` stays open for the call.
    let raw = unsafe { acl_sys::acl_get_fd(fd) };
    if !raw.is_null() {
        // SAFETY: a new acl_t from libacl, freed once when this PosixACL drops.
        return Ok(to_model(&unsafe { PosixACL::from_raw(raw) }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(nix::libc::EBADF) {
        return Err(acl_error("reading the ACL", path, err));
    }
    let proc = proc_path(fd);
    let acl = PosixACL::read_acl(proc.to_str().expect("ascii"))
        .map_err(|err| acl_error("reading the ACL", path, err))?;
    Ok(to_model(&acl))
}

fn read_default(fd: RawFd, path: &Utf8Path) -> Result<Option<Acl>> {
    let proc = proc_path(fd);
    let acl = PosixACL::read_default_acl(proc.to_str().expect("ascii"))
        .map_err(|err| acl_error("reading the default ACL", path, err))?;
    Ok((!acl.entries().is_empty()).then(|| to_model(&acl)))
}

/// Write an ACL exactly as given (the mask is ours, not recomputed by libacl).
fn write_acl(fd: RawFd, path: &Utf8Path, kind: AclKind, model: Option<&Acl>) -> Result<()> {
    let proc = proc_path(fd);
    let Some(model) = model else {
        // SAFETY: a valid NUL-terminated path.
        let ret = unsafe { acl_sys::acl_delete_def_file(proc.as_ptr()) };
        if ret != 0 {
            return Err(acl_error(
                "removing the default ACL",
                path,
                std::io::Error::last_os_error(),
            ));
        }
        return Ok(());
    };
    let mut acl = PosixACL::empty();
    acl.set(Qualifier::UserObj, u32::from(model.user_obj));
    acl.set(Qualifier::GroupObj, u32::from(model.group_obj));
    acl.set(Qualifier::Other, u32::from(model.other));
    for (uid, perm) in &model.users {
        acl.set(Qualifier::User(*uid), u32::from(*perm));
    }
    for (gid, perm) in &model.groups {
        acl.set(Qualifier::Group(*gid), u32::from(*perm));
    }
    if let Some(mask) = model.mask {
        acl.set(Qualifier::Mask, u32::from(mask));
    }
    acl.validate()
        .map_err(|err| acl_error("checking the new ACL", path, err))?;
    let kind_c = match kind {
        AclKind::Access => acl_sys::ACL_TYPE_ACCESS,
        AclKind::Default => acl_sys::ACL_TYPE_DEFAULT,
    };
    let raw = acl.into_raw();
    // The access ACL through the descriptor itself where it is not `O_PATH` (EBADF), else and
    // for the default ACL through /proc.
    // SAFETY (both calls): `raw` is a valid acl_t from posix-acl; ownership goes back to
    // PosixACL right after.
    let by_path = || unsafe { acl_sys::acl_set_file(proc.as_ptr(), kind_c, raw) };
    let mut ret = match kind {
        AclKind::Access => unsafe { acl_sys::acl_set_fd(fd, raw) },
        AclKind::Default => by_path(),
    };
    let mut err = std::io::Error::last_os_error();
    if ret != 0 && kind == AclKind::Access && err.raw_os_error() == Some(nix::libc::EBADF) {
        ret = by_path();
        err = std::io::Error::last_os_error();
    }
    // SAFETY: `raw` came from into_raw above and is freed exactly once, by this drop.
    drop(unsafe { PosixACL::from_raw(raw) });
    if ret != 0 {
        return Err(acl_error("writing the ACL", path, err));
    }
    Ok(())
}

fn read_kind(fd: RawFd, path: &Utf8Path, kind: AclKind) -> Result<Option<Acl>> {
    match kind {
        AclKind::Access => read_access(fd, path).map(Some),
        AclKind::Default => read_default(fd, path),
    }
}

// ---------------------------------------------------------------------------------------------
// Tree walking

struct Entry<'a> {
    fd: RawFd,
    path: &'a Utf8Path,
    name: &'a str,
    stat: FileStat,
    is_dir: bool,
    is_root: bool,
}

/// A count on the terminal (stderr) once a walk has taken a second: `granting /x: 240000 entries`.
struct Progress<'a> {
    what: &'a str,
    root: &'a Utf8Path,
    started: std::time::Instant,
    last_shown: Option<std::time::Instant>,
    entries: u64,
    on_terminal: bool,
}

impl<'a> Progress<'a> {
    fn new(what: &'a str, root: &'a Utf8Path) -> Progress<'a> {
        Progress {
            what,
            root,
            started: std::time::Instant::now(),
            last_shown: None,
            entries: 0,
            on_terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn tick(&mut self) {
        self.entries += 1;
        if !self.on_terminal || !self.entries.is_multiple_of(4096) {
            return;
        }
        let now = std::time::Instant::now();
        let due = match self.last_shown {
            None => now - self.started >= std::time::Duration::from_secs(1),
            Some(last) => now - last >= std::time::Duration::from_millis(200),
        };
        if due {
            eprint!("\r{} {}: {} entries", self.what, self.root, self.entries);
            self.last_shown = Some(now);
        }
    }
}

/// The last count, and the line ended, however the walk ended.
impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.last_shown.is_some() {
            eprintln!("\r{} {}: {} entries", self.what, self.root, self.entries);
        }
    }
}

/// Walk a directory tree without following symlinks. `visit` returns whether to descend into a
/// directory. Symlinks and special files are never visited (their count is returned). `what`
/// names the walk in the progress line a long one shows on a terminal.
fn walk(
    root: &Utf8Path,
    what: &str,
    visit: &mut dyn FnMut(&Entry<'_>) -> Result<bool>,
) -> Result<usize> {
    let mut progress = Progress::new(what, root);
    let mut visit = |entry: &Entry<'_>| {
        progress.tick();
        visit(entry)
    };
    let fd = open_nofollow(root)?;
    // Re-open the directory itself for reading entries (O_PATH cannot be listed).
    let dir = open_at(fd.as_raw_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .with_context(|| format!("opening {root}"))?;
    let mut skipped = 0;
    walk_dir(
        dir,
        root,
        root.file_name().unwrap_or("/"),
        true,
        &mut visit,
        &mut skipped,
    )?;
    Ok(skipped)
}

fn walk_dir(
    dir: OwnedFd,
    path: &Utf8Path,
    name: &str,
    is_root: bool,
    visit: &mut dyn FnMut(&Entry<'_>) -> Result<bool>,
    skipped: &mut usize,
) -> Result<()> {
    let stat = fstat(dir.as_raw_fd()).with_context(|| format!("stat {path}"))?;
    let descend = visit(&Entry {
        fd: dir.as_raw_fd(),
        path,
        name,
        stat,
        is_dir: true,
        is_root,
    })?;
    if !descend {
        return Ok(());
    }
    for (child, listed) in list_dir(&dir, path)? {
        let child_path = path.join(&child);
        // The listing's type saves a descriptor per entry: a regular file is opened for reading
        // (its ACL is then read and written through that descriptor), a directory for listing,
        // and a symlink or special file not at all. O_NOFOLLOW and the fstat below catch a
        // swap since the listing; an unknown type is looked at through O_PATH first.
        let flags = match listed {
            Some(DirType::File) => OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            Some(DirType::Directory) => OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Some(_) => {
                *skipped += 1;
                continue;
            }
            None => OFlag::O_PATH,
        };
        let fd = match open_at(dir.as_raw_fd(), &child, flags) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => continue,
            // Replaced by a symlink (or no longer a directory) since the listing.
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) if listed.is_some() => {
                *skipped += 1;
                continue;
            }
            Err(err) => return Err(anyhow!("opening {child_path}: {err}")),
        };
        let stat = fstat(fd.as_raw_fd()).with_context(|| format!("stat {child_path}"))?;
        match file_type(&stat) {
            SFlag::S_IFDIR if listed.is_some() => {
                walk_dir(fd, &child_path, &child, false, visit, skipped)?;
            }
            SFlag::S_IFDIR => {
                let sub = open_at(
                    dir.as_raw_fd(),
                    &child,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                )
                .with_context(|| format!("opening {child_path}"))?;
                let sub_stat = fstat(sub.as_raw_fd())?;
                if (sub_stat.st_dev, sub_stat.st_ino) != (stat.st_dev, stat.st_ino) {
                    bail!("{child_path} changed while it was being walked");
                }
                walk_dir(sub, &child_path, &child, false, visit, skipped)?;
            }
            SFlag::S_IFREG => {
                visit(&Entry {
                    fd: fd.as_raw_fd(),
                    path: &child_path,
                    name: &child,
                    stat,
                    is_dir: false,
                    is_root: false,
                })?;
            }
            _ => *skipped += 1,
        }
    }
    Ok(())
}

/// The names in a directory, sorted, with the type the listing gives (None: not given).
fn list_dir(dir: &OwnedFd, path: &Utf8Path) -> Result<Vec<(String, Option<DirType>)>> {
    let dup = nix::unistd::dup(dir.as_raw_fd())?;
    let mut listing = nix::dir::Dir::from_fd(dup).with_context(|| format!("listing {path}"))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.with_context(|| format!("listing {path}"))?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        match std::str::from_utf8(bytes) {
            Ok(name) => names.push((name.to_string(), entry.file_type())),
            Err(_) => eprintln!(
                "warning: {path}/{}: name is not UTF-8, skipped (no agent entry)",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Is this file a credential by the patterns (reading its start when a pattern asks)?
fn is_credential(entry: &Entry<'_>, patterns: &[CredentialPattern]) -> Option<String> {
    match classify_name(patterns, entry.name) {
        NameVerdict::Ordinary => None,
        NameVerdict::Credential { pattern } => Some(pattern.to_string()),
        NameVerdict::IfContains {
            pattern,
            containing,
        } => {
            if entry.is_dir {
                return None;
            }
            let mut head = Vec::new();
            let read = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(proc_path(entry.fd).to_str().expect("ascii"))
                .and_then(|file| file.take(256 * 1024).read_to_end(&mut head));
            match read {
                Ok(_) if !content_matches(&containing, &head) => None,
                Ok(_) => Some(format!("{pattern} holding {}", containing.join(" or "))),
                // Unreadable: treat as a credential (fail closed).
                Err(_) => Some(format!("{pattern} (unreadable, so treated as one)")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// The records file, locked for the whole command.
pub struct LockedRecords {
    path: Utf8PathBuf,
    pub records: Records,
    _lock: Flock<File>,
}

impl LockedRecords {
    pub fn open(path: &Utf8Path) -> Result<LockedRecords> {
        let dir = path.parent().unwrap_or(Utf8Path::new("/"));
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        let lock_path = format!("{path}.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&lock_path)
            .with_context(|| format!("opening the lock {lock_path}"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, err)| anyhow!("locking {lock_path}: {err}"))?;
        let records = match std::fs::read_to_string(path) {
            Ok(text) => Records::parse(&text, path.as_str()).map_err(|e| anyhow!(e))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Records::new(),
            Err(err) => return Err(err).with_context(|| format!("reading {path}")),
        };
        Ok(LockedRecords {
            path: path.to_owned(),
            records,
            _lock: lock,
        })
    }

    /// Write the records through `host::fs::write_atomic` (0644, owned by this process), as
    /// compact JSON: a grant of 100,000 files records 100,000 entries, and the grants timer
    /// reads them every 30 s (`grants --json` is the readable form).
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string(&self.records)? + "\n";
        let me = super::fs::current_owner();
        super::fs::write_atomic(&self.path, text.as_bytes(), me, 0o644)
            .with_context(|| format!("writing the grant records {}", self.path))
    }
}

// ---------------------------------------------------------------------------------------------
// Grant

/// What `grant` asks for.
pub struct GrantRequest<'a> {
    pub path: &'a Utf8Path,
    pub mode: Mode,
    pub expires_in: Option<u64>,
    pub force: bool,
    /// Walk and plan every entry exactly as a grant does, write nothing and record nothing.
    pub dry_run: bool,
}

/// The outcome of a grant, for printing.
pub struct GrantOutcome {
    pub record: GrantRecord,
    pub warnings: Vec<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Resolve a path the way a grant does: symlinks resolved, must be a directory, UTF-8.
pub fn canonical_dir(path: &Utf8Path) -> Result<Utf8PathBuf> {
    let canonical =
        std::fs::canonicalize(path).with_context(|| format!("resolving {path} (it must exist)"))?;
    let canonical = Utf8PathBuf::from_path_buf(canonical)
        .map_err(|p| anyhow!("{} is not UTF-8", p.display()))?;
    if !canonical.is_dir() {
        bail!("{canonical} is not a directory: grants give access to a directory tree");
    }
    Ok(canonical)
}

/// Home directories known on the host: the user database, plus every directory in /home.
fn home_roots() -> Vec<Utf8PathBuf> {
    let mut homes = BTreeSet::new();
    // SAFETY: getpwent/endpwent are used from this single thread only.
    unsafe {
        nix::libc::setpwent();
        loop {
            let entry = nix::libc::getpwent();
            if entry.is_null() {
                break;
            }
            let dir = CStr::from_ptr((*entry).pw_dir);
            if let Ok(dir) = dir.to_str() {
                homes.insert(Utf8PathBuf::from(dir));
            }
        }
        nix::libc::endpwent();
    }
    if let Ok(entries) = std::fs::read_dir("/home") {
        for entry in entries.flatten() {
            if let Ok(path) = Utf8PathBuf::from_path_buf(entry.path()) {
                homes.insert(path);
            }
        }
    }
    homes
        .into_iter()
        .flat_map(|home| {
            let canonical = std::fs::canonicalize(&home)
                .ok()
                .and_then(|p| Utf8PathBuf::from_path_buf(p).ok());
            std::iter::once(home).chain(canonical)
        })
        .collect()
}

/// Owners of every component from `home` down to `path`, opened without following symlinks.
fn component_owners(home: &Utf8Path, path: &Utf8Path) -> Result<Vec<(Utf8PathBuf, u32)>> {
    let mut owners = Vec::new();
    for ancestor in path.ancestors() {
        if !ancestor.starts_with(home) {
            break;
        }
        let fd = open_nofollow(ancestor)?;
        owners.push((ancestor.to_owned(), fstat(fd.as_raw_fd())?.st_uid));
    }
    owners.reverse();
    Ok(owners)
}

/// Check everything, apply the grant, record it. On an error, what was applied is taken back.
pub fn grant(
    config: &Config,
    caller: &Caller,
    agent: &Granter,
    request: &GrantRequest<'_>,
) -> Result<GrantOutcome> {
    let path = canonical_dir(request.path)?;
    if request.path != path {
        eprintln!("note: {} resolves to {path}", request.path);
    }
    check_path_policy(&path, &home_roots(), request.force).map_err(|e| anyhow!(e))?;
    if let Caller::Operator { who, home } = caller {
        let owners = if path.starts_with(home) {
            component_owners(home, &path)?
        } else {
            Vec::new()
        };
        check_operator_may_grant(who, home, &path, &owners).map_err(|e| anyhow!(e))?;
    }

    let mut locked = LockedRecords::open(&config.grants.records)?;
    check_overlap(&path, &locked.records.grants).map_err(|e| anyhow!(e))?;

    let granted_at = now();
    let mut record = GrantRecord {
        path: path.clone(),
        mode: request.mode,
        granted_by: caller.granter(),
        agent: agent.clone(),
        granted_at,
        expires_at: request.expires_in.map(|secs| granted_at + secs),
        entries: Vec::new(),
        skipped_credentials: Vec::new(),
    };
    let mut warnings = Vec::new();
    let writes = if request.dry_run {
        Writes::None
    } else {
        Writes::Apply
    };
    let applied = apply_grant(
        config,
        caller,
        &locked.records,
        &mut record,
        &mut warnings,
        writes,
    );
    if request.dry_run {
        return applied.map(|()| GrantOutcome { record, warnings });
    }
    if let Err(err) = applied {
        let undo = undo_changes(&record, &locked.records.grants, agent.uid);
        let mut err = err.context(format!("granting {path}: nothing was kept"));
        if !undo.is_empty() {
            err = err.context(format!(
                "granting {path} failed, and taking back what was applied failed too: {}",
                undo.join("; ")
            ));
        }
        return Err(err);
    }
    locked.records.grants.push(record.clone());
    if let Err(err) = locked.save() {
        locked.records.grants.pop();
        let undo = undo_changes(&record, &locked.records.grants, agent.uid);
        if !undo.is_empty() {
            eprintln!("warning: {}", undo.join("; "));
        }
        return Err(err);
    }
    Ok(GrantOutcome { record, warnings })
}

/// Whether a grant's walk writes the ACLs it plans (`--dry-run`: it only records them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    Apply,
    None,
}

impl Writes {
    fn acl(self, fd: RawFd, path: &Utf8Path, kind: AclKind, model: &Acl) -> Result<()> {
        match self {
            Writes::Apply => write_acl(fd, path, kind, Some(model)),
            Writes::None => Ok(()),
        }
    }
}

fn apply_grant(
    config: &Config,
    caller: &Caller,
    records: &Records,
    record: &mut GrantRecord,
    warnings: &mut Vec<String>,
    writes: Writes,
) -> Result<()> {
    let agent = record.agent.uid;
    let path = record.path.clone();
    let mode = record.mode;

    // Parents: traversal only. Above the first parent the agent cannot pass (`/`, `/home`)
    // nothing changes. From there down, each parent gets an explicit `--x` (so the agent
    // cannot list it even where `other` could), and everything beside the path gets an explicit
    // empty entry (so the new traversal opens nothing but the way to the tree).
    let parents = pipelock_policy::grants::parents_top_down(&path);
    let mut below_barrier = false;
    for (i, parent) in parents.iter().enumerate() {
        let fd = open_nofollow(parent)?;
        let stat = fstat(fd.as_raw_fd())?;
        let current = read_access(fd.as_raw_fd(), parent)?;
        let shared = records.original_state(parent, AclKind::Access).cloned();
        if !below_barrier && shared.is_none() && current.effective_for(agent, stat.st_uid) & X != 0
        {
            continue;
        }
        below_barrier = true;
        if let Caller::Operator { home, .. } = caller {
            if !parent.starts_with(home) && shared.is_none() {
                bail!(
                    "the agent user cannot enter {parent}, which is above your home {home}; \
                     an operator's grant changes nothing outside their home: ask root to \
                     grant it"
                );
            }
        }
        let next_on_path = parents.get(i + 1).unwrap_or(&path);
        apply_entry(
            fd.as_raw_fd(),
            parent,
            &current,
            &records.grants,
            record,
            Role::Parent,
            Desired::Add(X),
            writes,
        )?;
        close_siblings(
            fd.as_raw_fd(),
            parent,
            next_on_path,
            &records.grants,
            record,
            writes,
        )?;
    }

    // The tree.
    let operator_uid = match caller {
        Caller::Operator { who, .. } => Some(who.uid),
        Caller::Root { .. } => None,
    };
    let patterns = &config.grants.credential_patterns;
    let mut not_owned = 0usize;
    let skipped = walk(&path, "granting", &mut |entry| {
        if let Some(uid) = operator_uid {
            if entry.stat.st_uid != uid {
                not_owned += 1;
                warnings.push(format!(
                    "{}: owned by UID {}, not by you: no agent entry{}",
                    entry.path,
                    entry.stat.st_uid,
                    if entry.is_dir { " (nor below it)" } else { "" }
                ));
                return Ok(false);
            }
        }
        let current = read_access(entry.fd, entry.path)?;
        if !entry.is_root {
            if let Some(why) = is_credential(entry, patterns) {
                warnings.push(format!(
                    "{}: looks like a credential ({why}): closed to the agent{}",
                    entry.path,
                    if entry.is_dir { " (nor below it)" } else { "" }
                ));
                record.skipped_credentials.push(entry.path.to_owned());
                if let Some((next, previous, previous_mask)) =
                    plan_entry(&current, agent, Desired::Deny)
                {
                    writes.acl(entry.fd, entry.path, AclKind::Access, &next)?;
                    record.entries.push(AclChange {
                        path: entry.path.to_owned(),
                        kind: AclKind::Access,
                        role: Role::Credential,
                        previous,
                        previous_mask,
                        previous_default_existed: false,
                    });
                }
                return Ok(false);
            }
        }
        let executable = entry.stat.st_mode & 0o111 != 0;
        let bits = mode.access_bits(entry.is_dir, executable);
        let tree_change = |previous, previous_mask, kind, existed| AclChange {
            path: entry.path.to_owned(),
            kind,
            role: Role::Tree,
            previous,
            previous_mask,
            previous_default_existed: existed,
        };
        if entry.is_root
            && records
                .original_state(entry.path, AclKind::Access)
                .is_some()
        {
            // Another grant closed this directory (it lies beside that grant's path).
            apply_entry(
                entry.fd,
                entry.path,
                &current,
                &records.grants,
                record,
                Role::Tree,
                Desired::Add(bits),
                writes,
            )?;
        } else {
            match plan_entry(&current, agent, Desired::Add(bits)) {
                Some((next, previous, previous_mask)) => {
                    if let Some(missing) = agent_shortfall(&next, agent, bits) {
                        warnings.push(format!(
                            "{}: the agent lacks {} here: widening the ACL mask would also give \
                             the owning group or another named entry more access",
                            entry.path,
                            perm_text(missing)
                        ));
                    }
                    writes.acl(entry.fd, entry.path, AclKind::Access, &next)?;
                    record.entries.push(tree_change(
                        previous,
                        previous_mask,
                        AclKind::Access,
                        false,
                    ));
                }
                // Already enough: record it, so revoke keeps this pre-existing entry.
                None => record.entries.push(tree_change(
                    current.users.get(&agent).copied(),
                    current.mask,
                    AclKind::Access,
                    false,
                )),
            }
        }
        if entry.is_dir {
            let existing = read_default(entry.fd, entry.path)?;
            let base = existing
                .clone()
                .unwrap_or_else(|| Acl::default_base(&current));
            match plan_entry(&base, agent, Desired::Add(mode.default_bits())) {
                Some((next, previous, previous_mask)) => {
                    writes.acl(entry.fd, entry.path, AclKind::Default, &next)?;
                    record.entries.push(tree_change(
                        previous,
                        previous_mask,
                        AclKind::Default,
                        existing.is_some(),
                    ));
                }
                None => record.entries.push(tree_change(
                    base.users.get(&agent).copied(),
                    base.mask,
                    AclKind::Default,
                    existing.is_some(),
                )),
            }
        }
        Ok(true)
    })?;
    if skipped > 0 {
        warnings.push(format!(
            "{path}: {skipped} symlinks or special files left alone (symlinks are not followed)"
        ));
    }
    if not_owned > 0 {
        warnings.push(format!(
            "{path}: {not_owned} entries not owned by you got no agent entry"
        ));
    }
    Ok(())
}

/// Give everything in `parent` beside the way to the grant an explicit empty agent entry,
/// except what `record` already covers and other grants' paths (and their ancestors).
fn close_siblings(
    parent_fd: RawFd,
    parent: &Utf8Path,
    next_on_path: &Utf8Path,
    others: &[GrantRecord],
    record: &mut GrantRecord,
    writes: Writes,
) -> Result<()> {
    let dir = open_at(parent_fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .with_context(|| format!("opening {parent}"))?;
    for (name, _) in list_dir(&dir, parent)? {
        let sibling = parent.join(&name);
        if sibling == next_on_path
            || others.iter().any(|g| g.path.starts_with(&sibling))
            || record
                .entries
                .iter()
                .any(|c| c.path == sibling && c.kind == AclKind::Access)
        {
            continue;
        }
        let fd = match open_at(dir.as_raw_fd(), &name, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(err) => bail!("opening {sibling}: {err}"),
        };
        let stat = fstat(fd.as_raw_fd())?;
        if !matches!(file_type(&stat), SFlag::S_IFDIR | SFlag::S_IFREG) {
            continue;
        }
        let current = read_access(fd.as_raw_fd(), &sibling)?;
        apply_entry(
            fd.as_raw_fd(),
            &sibling,
            &current,
            others,
            record,
            Role::Sibling,
            Desired::Deny,
            writes,
        )?;
    }
    Ok(())
}

/// Close what appeared beside the paths of the given grants since they were made (and what a
/// revoke just reopened): every parent they recorded gets its siblings closed again.
fn refresh_siblings(grants: &mut Vec<GrantRecord>) -> Vec<String> {
    let mut problems = Vec::new();
    for index in 0..grants.len() {
        let mut grant = grants.remove(index);
        let parents: Vec<Utf8PathBuf> = grant
            .entries
            .iter()
            .filter(|c| c.role == Role::Parent)
            .map(|c| c.path.clone())
            .collect();
        for parent in parents {
            let Some(next) = pipelock_policy::grants::next_on_path(&parent, &grant.path) else {
                continue;
            };
            let result = open_nofollow(&parent).and_then(|fd| {
                close_siblings(
                    fd.as_raw_fd(),
                    &parent,
                    &next,
                    grants,
                    &mut grant,
                    Writes::Apply,
                )
            });
            if let Err(err) = result {
                problems.push(format!("closing what lies beside {}: {err:#}", grant.path));
            }
        }
        grants.insert(index, grant);
    }
    problems
}

/// Close credential files that appeared in a granted tree since the grant (they inherited the
/// agent's entry from the default ACL): each gets the explicit empty entry and is recorded, so
/// revoke leaves it with no agent entry at all. Returns one note per file closed.
fn refresh_credentials(
    patterns: &[CredentialPattern],
    grant: &mut GrantRecord,
) -> Result<Vec<String>> {
    let agent = grant.agent.uid;
    let mut closed = Vec::new();
    let mut changes: Vec<AclChange> = Vec::new();
    walk(&grant.path.clone(), "checking", &mut |entry| {
        if entry.is_root {
            return Ok(true);
        }
        let Some(why) = is_credential(entry, patterns) else {
            return Ok(true);
        };
        let current = read_access(entry.fd, entry.path)?;
        if current.users.get(&agent).copied().unwrap_or(0) != 0 {
            if let Some((next, _, _)) = plan_entry(&current, agent, Desired::Deny) {
                write_acl(entry.fd, entry.path, AclKind::Access, Some(&next))?;
                closed.push(format!(
                    "{}: looks like a credential ({why}), created since the grant: closed to \
                     the agent",
                    entry.path
                ));
                changes.push(AclChange {
                    path: entry.path.to_owned(),
                    kind: AclKind::Access,
                    role: Role::Credential,
                    previous: None,
                    previous_mask: None,
                    previous_default_existed: false,
                });
            }
        }
        Ok(false)
    })?;
    for change in changes {
        // A path the grant recorded already keeps its original state; it is a credential now.
        match grant
            .entries
            .iter_mut()
            .find(|c| c.path == change.path && c.kind == AclKind::Access)
        {
            Some(existing) => existing.role = Role::Credential,
            None => {
                grant.skipped_credentials.push(change.path.clone());
                grant.entries.push(change);
            }
        }
    }
    Ok(closed)
}

/// Apply one access entry outside the tree and record it. An ACL another grant already
/// changed is recorded with that grant's original state, so the last revoke restores it.
#[allow(clippy::too_many_arguments)]
fn apply_entry(
    fd: RawFd,
    path: &Utf8Path,
    current: &Acl,
    others: &[GrantRecord],
    record: &mut GrantRecord,
    role: Role,
    desired: Desired,
    writes: Writes,
) -> Result<()> {
    let shared = pipelock_policy::grants::original_state(others, path, AclKind::Access).cloned();
    let planned = plan_entry(current, record.agent.uid, desired);
    if let Some((next, _, _)) = &planned {
        writes.acl(fd, path, AclKind::Access, next)?;
    }
    let change = match (shared, planned) {
        (Some(original), _) => AclChange { role, ..original },
        (None, Some((_, previous, previous_mask))) => AclChange {
            path: path.to_owned(),
            kind: AclKind::Access,
            role,
            previous,
            previous_mask,
            previous_default_existed: false,
        },
        (None, None) => return Ok(()),
    };
    record.entries.push(change);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Revoke

/// Put back every recorded change that no remaining grant needs, after stripping agent entries
/// the grant did not record (files created in the tree since, which inherited them).
/// Returns the problems met; restoring continues past each one.
fn undo_changes(record: &GrantRecord, remaining: &[GrantRecord], agent: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let steps = revoke_plan(record, remaining);
    // One lookup per swept entry, keyed by the path's text (far cheaper than comparing paths by
    // component): what the grant recorded there, and the restores to make on the descriptor the
    // sweep already holds. What the sweep does not reach is restored by path below.
    #[derive(Default)]
    struct AtPath<'a> {
        recorded: [bool; 2],
        restore: [Option<&'a AclChange>; 2],
        /// Restored during the sweep.
        restored: [bool; 2],
    }
    let slot = |kind: AclKind| usize::from(kind == AclKind::Default);
    let mut at_path: HashMap<&str, AtPath<'_>> = HashMap::new();
    for change in &record.entries {
        if matches!(change.role, Role::Tree | Role::Credential) {
            at_path.entry(change.path.as_str()).or_default().recorded[slot(change.kind)] = true;
        }
    }
    for step in &steps {
        if let RevokeStep::Restore(change) = step {
            if matches!(change.role, Role::Tree | Role::Credential) {
                at_path.entry(change.path.as_str()).or_default().restore[slot(change.kind)] =
                    Some(change);
            }
        }
    }
    if record.path.exists() {
        let swept = walk(&record.path, "revoking", &mut |entry| {
            let mut here = at_path.get_mut(entry.path.as_str());
            for kind in [AclKind::Access, AclKind::Default] {
                if let Some(here) = here.as_deref_mut() {
                    if let Some(change) = here.restore[slot(kind)] {
                        restore_on(entry.fd, change, agent)?;
                        here.restored[slot(kind)] = true;
                        continue;
                    }
                    if here.recorded[slot(kind)] {
                        continue;
                    }
                }
                if kind == AclKind::Default && !entry.is_dir {
                    continue;
                }
                let Some(current) = read_kind(entry.fd, entry.path, kind)? else {
                    continue;
                };
                if !current.users.contains_key(&agent) {
                    continue;
                }
                let unrecorded = AclChange {
                    path: entry.path.to_owned(),
                    kind,
                    role: Role::Tree,
                    previous: None,
                    previous_mask: None,
                    previous_default_existed: false,
                };
                let next = match kind {
                    AclKind::Access => Some(restore_entry(&current, agent, None, None)),
                    AclKind::Default => restore_default(Some(&current), agent, &unrecorded),
                };
                write_acl(entry.fd, entry.path, kind, next.as_ref())?;
            }
            Ok(true)
        });
        if let Err(err) = swept {
            problems.push(format!("sweeping {}: {err:#}", record.path));
        }
    }
    for step in &steps {
        let result = match step {
            RevokeStep::Restore(change)
                if at_path
                    .get(change.path.as_str())
                    .is_some_and(|h| h.restored[slot(change.kind)]) =>
            {
                Ok(())
            }
            RevokeStep::Restore(change) => restore_change(change, agent),
            RevokeStep::Keep { .. } => Ok(()),
            RevokeStep::Deny { change, .. } => deny_again(change, agent),
        };
        if let Err(err) = result {
            problems.push(format!("{}: {err:#}", step.change().path));
        }
    }
    problems
}

/// Close a path again for the agent (another grant keeps it closed).
fn deny_again(change: &AclChange, agent: u32) -> Result<()> {
    let fd = open_nofollow(&change.path)?;
    let current = read_access(fd.as_raw_fd(), &change.path)?;
    if let Some((next, _, _)) = plan_entry(&current, agent, Desired::Deny) {
        write_acl(fd.as_raw_fd(), &change.path, AclKind::Access, Some(&next))?;
    }
    Ok(())
}

fn restore_change(change: &AclChange, agent: u32) -> Result<()> {
    let fd = match open_nofollow(&change.path) {
        Ok(fd) => fd,
        // Gone since the grant: nothing to take back.
        Err(_) if !change.path.exists() && change.path.symlink_metadata().is_err() => return Ok(()),
        Err(err) => return Err(err),
    };
    restore_on(fd.as_raw_fd(), change, agent)
}

/// Put one recorded entry back on an open descriptor of its path.
fn restore_on(fd: RawFd, change: &AclChange, agent: u32) -> Result<()> {
    let current = read_kind(fd, &change.path, change.kind)?;
    let next = match change.kind {
        AclKind::Access => {
            let current = current.as_ref().expect("an access ACL always exists");
            Some(restore_entry(
                current,
                agent,
                change.previous,
                change.previous_mask,
            ))
        }
        AclKind::Default => restore_default(current.as_ref(), agent, change),
    };
    if next == current {
        return Ok(());
    }
    write_acl(fd, &change.path, change.kind, next.as_ref())
}

/// May this caller revoke this grant? Root: any. Operators: their own grants, or grants below
/// their home.
fn check_may_revoke(caller: &Caller, record: &GrantRecord) -> Result<()> {
    match caller {
        Caller::Root { .. } => Ok(()),
        Caller::Operator { who, home } => {
            if record.granted_by.uid == who.uid || record.path.starts_with(home) {
                Ok(())
            } else {
                bail!(
                    "{} was granted by {} and is not below your home {home}: ask root to revoke it",
                    record.path,
                    record.granted_by.name
                )
            }
        }
    }
}

/// Revoke the grant of `path` (resolved if it still exists).
pub fn revoke(config: &Config, caller: &Caller, path: &Utf8Path) -> Result<GrantRecord> {
    let mut locked = LockedRecords::open(&config.grants.records)?;
    let resolved = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok());
    let index = resolved
        .as_deref()
        .and_then(|p| locked.records.find(p))
        .or_else(|| locked.records.find(path))
        .ok_or_else(|| {
            anyhow!(
                "{path} is not granted (see `pipelock-containment grants` for the active grants)"
            )
        })?;
    check_may_revoke(caller, &locked.records.grants[index])?;
    revoke_index(&mut locked, index)
}

fn revoke_index(locked: &mut LockedRecords, index: usize) -> Result<GrantRecord> {
    // Sessions that see the tree (bound in, or working inside it) end first: an open
    // directory outlives the ACL change.
    let path = locked.records.grants[index].path.clone();
    let stopped = super::session::stop_sessions_using(&path)
        .with_context(|| format!("ending the sessions that use {path}; the grant stays"))?;
    for unit in &stopped {
        eprintln!("ended session {unit}: it used {path}");
    }
    let record = locked.records.grants.remove(index);
    let problems = undo_changes(&record, &locked.records.grants, record.agent.uid);
    if !problems.is_empty() {
        locked.records.grants.insert(index, record.clone());
        // Keep the record: restoring is idempotent, so revoke can simply run again.
        bail!(
            "revoking {} failed; the grant stays recorded, fix the cause and run revoke \
             again: {}",
            record.path,
            problems.join("; ")
        );
    }
    // A path beside another grant's path that this grant opened is closed again.
    let problems = refresh_siblings(&mut locked.records.grants);
    locked.save()?;
    if !problems.is_empty() {
        bail!(
            "revoked {}, but closing paths beside the remaining grants failed: {}",
            record.path,
            problems.join("; ")
        );
    }
    Ok(record)
}

/// Revoke every grant recorded in `records`, newest first (for package removal); returns the
/// revoked paths and problems.
pub fn revoke_all(records: &Utf8Path) -> Result<(Vec<Utf8PathBuf>, Vec<String>)> {
    let mut locked = LockedRecords::open(records)?;
    let mut revoked = Vec::new();
    let mut problems = Vec::new();
    for index in (0..locked.records.grants.len()).rev() {
        match revoke_index(&mut locked, index) {
            Ok(record) => revoked.push(record.path),
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    Ok((revoked, problems))
}

/// Revoke every grant whose expiry has passed; returns the revoked paths and problems.
pub fn expire(config: &Config) -> Result<(Vec<Utf8PathBuf>, Vec<String>)> {
    let mut locked = LockedRecords::open(&config.grants.records)?;
    let mut revoked = Vec::new();
    let mut problems = Vec::new();
    for path in locked.records.expired(now()) {
        let Some(index) = locked.records.find(&path) else {
            continue;
        };
        match revoke_index(&mut locked, index) {
            Ok(record) => revoked.push(record.path),
            Err(err) => problems.push(format!("{err:#}")),
        }
    }
    // Close what appeared since the last run: paths beside the grants' paths, and credential
    // files in the granted trees.
    let before = locked.records.grants.clone();
    problems.extend(refresh_siblings(&mut locked.records.grants));
    for grant in &mut locked.records.grants {
        match refresh_credentials(&config.grants.credential_patterns, grant) {
            Ok(notes) => {
                for note in notes {
                    eprintln!("warning: {note}");
                }
            }
            Err(err) => problems.push(format!("checking {} for credentials: {err:#}", grant.path)),
        }
    }
    if locked.records.grants != before {
        locked.save()?;
    }
    Ok((revoked, problems))
}

/// The active grants (no lock needed: the file is replaced by rename, never half-written).
pub fn list(config: &Config) -> Result<Records> {
    super::fs::read_grant_records(&config.grants.records)
}
