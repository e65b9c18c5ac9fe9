//! Workspace grants (pure, no I/O): path policy, credential patterns, the ACL model, grant records and revoke plans.
//!
//! A grant gives the agent user access to one directory tree through POSIX ACL entries:
//! traversal (`--x`) on the parents it cannot enter yet, `r-X` or `rwX` on the tree, and the same
//! as default entries on the tree's directories. Every entry it adds is recorded with what was
//! there before, so revoke puts back exactly the previous state. The host layer
//! (`host::grants`) reads and writes the ACLs; this module decides what they should be.

use std::collections::BTreeMap;
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

/// Read, write and execute bits of one ACL entry (as in `rwx`, 4 2 1).
pub const R: u8 = 4;
pub const W: u8 = 2;
pub const X: u8 = 1;

/// Paths (and everything below them) that are refused unless `--force`; `/` only as itself.
pub const PROTECTED_PREFIXES: &[&str] = &[
    "/", "/etc", "/usr", "/var", "/proc", "/sys", "/root", "/boot",
];

/// How much of the tree the agent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read files, enter and list directories (`r-X`).
    Ro,
    /// Also create, change and delete (`rwX`).
    Rw,
}

impl Mode {
    /// Bits of the access entry: `X` means execute for directories and for files that are
    /// already executable by someone.
    pub fn access_bits(self, is_dir: bool, executable: bool) -> u8 {
        let x = if is_dir || executable { X } else { 0 };
        match self {
            Mode::Ro => R | x,
            Mode::Rw => R | W | x,
        }
    }

    /// Bits of the default entry on directories (new files drop `x` through their create mode).
    pub fn default_bits(self) -> u8 {
        self.access_bits(true, false)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ro => "ro",
            Mode::Rw => "rw",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rwx` text of entry bits, as getfacl prints them.
pub fn perm_text(bits: u8) -> String {
    [(R, 'r'), (W, 'w'), (X, 'x')]
        .iter()
        .map(|(bit, c)| if bits & bit != 0 { *c } else { '-' })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Path policy

/// Refuse protected system paths and whole home directories unless forced.
///
/// `path` is canonical (symlinks resolved). `home_roots` are the home directories known on the
/// host; a path equal to one, or above one (such as `/home`), is a home root.
pub fn check_path_policy(
    path: &Utf8Path,
    home_roots: &[Utf8PathBuf],
    force: bool,
) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{path} is not an absolute path"));
    }
    if force {
        return Ok(());
    }
    for prefix in PROTECTED_PREFIXES {
        let hit = if *prefix == "/" {
            path == Utf8Path::new("/")
        } else {
            path.starts_with(prefix)
        };
        if hit {
            return Err(format!(
                "{path} is a protected system path (below {prefix}); granting the agent access \
                 there is refused. Grant a project directory instead, or, as root, pass --force \
                 if you really mean it"
            ));
        }
    }
    for home in home_roots {
        if home == Utf8Path::new("/") || !home.is_absolute() {
            continue;
        }
        if home.starts_with(path) {
            let what = if home == path {
                format!("{path} is a whole home directory")
            } else {
                format!("{path} contains the home directory {home}")
            };
            return Err(format!(
                "{what}; it holds keys, tokens and shell history, so granting it is refused. \
                 Grant the project directory below it (for example {}/src/PROJECT), or, as \
                 root, pass --force",
                home.as_str().trim_end_matches('/')
            ));
        }
    }
    Ok(())
}

/// Who asks for a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granter {
    pub name: String,
    pub uid: u32,
}

/// A non-root operator may grant only directories below their own home that they own, with
/// every component from the home down owned by them too. `components` lists the canonical path's
/// components from the home directory down to the path itself, with their owners.
pub fn check_operator_may_grant(
    operator: &Granter,
    home: &Utf8Path,
    path: &Utf8Path,
    components: &[(Utf8PathBuf, u32)],
) -> Result<(), String> {
    if !path.starts_with(home) || path == home {
        return Err(format!(
            "{path} is not below your home directory {home}: operators may grant only \
             directories they own inside their home; ask root (an administrator) to grant it"
        ));
    }
    if components.first().map(|(p, _)| p.as_path()) != Some(home)
        || components.last().map(|(p, _)| p.as_path()) != Some(path)
    {
        return Err(format!(
            "internal error: ownership of {path} was not checked from {home} down"
        ));
    }
    for (component, owner) in components {
        if *owner != operator.uid {
            return Err(format!(
                "{component} is owned by UID {owner}, not by you ({} UID {}): operators may \
                 grant only directories they own; ask root to grant it",
                operator.name, operator.uid
            ));
        }
    }
    Ok(())
}

/// A new grant must not overlap an existing one: each tree belongs to exactly one grant.
pub fn check_overlap(path: &Utf8Path, grants: &[GrantRecord]) -> Result<(), String> {
    for grant in grants {
        if grant.path == path {
            return Err(format!(
                "{path} is already granted ({}, by {}): revoke it first to change it",
                grant.mode, grant.granted_by.name
            ));
        }
        if path.starts_with(&grant.path) {
            return Err(format!(
                "{path} is inside the granted tree {} ({}): the agent already has access; \
                 revoke that grant first to grant a part of it differently",
                grant.path, grant.mode
            ));
        }
        if grant.path.starts_with(path) {
            return Err(format!(
                "{path} contains the granted tree {}: revoke that grant first",
                grant.path
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Credential patterns

/// One credential pattern: a file-name glob (`*` and `?`), optionally narrowed by names to
/// leave out and by content (the file counts only if it contains one of the strings, or cannot
/// be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CredentialPattern {
    Name(String),
    Detailed(DetailedPattern),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedPattern {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containing: Vec<String>,
}

impl CredentialPattern {
    pub fn name(&self) -> &str {
        match self {
            CredentialPattern::Name(name) => name,
            CredentialPattern::Detailed(d) => &d.name,
        }
    }

    fn except(&self) -> &[String] {
        match self {
            CredentialPattern::Name(_) => &[],
            CredentialPattern::Detailed(d) => &d.except,
        }
    }

    fn containing(&self) -> &[String] {
        match self {
            CredentialPattern::Name(_) => &[],
            CredentialPattern::Detailed(d) => &d.containing,
        }
    }

    /// Check one pattern as written in the config.
    pub fn validate(&self) -> Result<(), String> {
        for glob in std::iter::once(self.name()).chain(self.except().iter().map(String::as_str)) {
            if glob.is_empty() || glob.contains(['/', '\0', '\n']) {
                return Err(format!(
                    "{glob:?} is not a file-name pattern: use a name with `*` and `?`, no `/`"
                ));
            }
        }
        if self.containing().iter().any(String::is_empty) {
            return Err(format!(
                "pattern {:?}: `containing` strings must not be empty",
                self.name()
            ));
        }
        Ok(())
    }
}

/// The built-in patterns (also written out in the shipped config).
pub fn default_credential_patterns() -> Vec<CredentialPattern> {
    let name = |n: &str| CredentialPattern::Name(n.into());
    let detailed = |n: &str, except: &[&str], containing: &[&str]| {
        CredentialPattern::Detailed(DetailedPattern {
            name: n.into(),
            except: except.iter().map(|s| s.to_string()).collect(),
            containing: containing.iter().map(|s| s.to_string()).collect(),
        })
    };
    vec![
        name(".env*"),
        detailed("id_*", &["*.pub"], &["PRIVATE KEY", "PuTTY-User-Key-File"]),
        detailed("*.pem", &[], &["PRIVATE KEY"]),
        name("*.key"),
        name(".netrc"),
        name(".git-credentials"),
        name("auth.json"),
        detailed(".npmrc", &[], &["_authToken", "_auth"]),
        name(".pgpass"),
        name("credentials"),
    ]
}

/// What the name of a file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameVerdict<'a> {
    /// No pattern matches: an ordinary file.
    Ordinary,
    /// A pattern matches by name alone.
    Credential { pattern: &'a str },
    /// Patterns match by name, and decide on content: a credential if the content holds one of
    /// `containing` (or cannot be read).
    IfContains {
        pattern: &'a str,
        containing: Vec<&'a str>,
    },
}

/// Match a file name against the patterns. A name-only match wins over content checks.
pub fn classify_name<'a>(patterns: &'a [CredentialPattern], file_name: &str) -> NameVerdict<'a> {
    let mut content: Option<(&'a str, Vec<&'a str>)> = None;
    for pattern in patterns {
        if !glob_matches(pattern.name(), file_name)
            || pattern.except().iter().any(|g| glob_matches(g, file_name))
        {
            continue;
        }
        if pattern.containing().is_empty() {
            return NameVerdict::Credential {
                pattern: pattern.name(),
            };
        }
        let entry = content.get_or_insert_with(|| (pattern.name(), Vec::new()));
        entry
            .1
            .extend(pattern.containing().iter().map(String::as_str));
    }
    match content {
        Some((pattern, containing)) => NameVerdict::IfContains {
            pattern,
            containing,
        },
        None => NameVerdict::Ordinary,
    }
}

/// Does the (start of the) content hold one of the strings?
pub fn content_matches(containing: &[&str], content: &[u8]) -> bool {
    containing.iter().any(|needle| {
        let needle = needle.as_bytes();
        !needle.is_empty() && content.windows(needle.len()).any(|w| w == needle)
    })
}

/// Shell-style match of a whole file name: `*` any run of characters, `?` one character.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && (glob[g] == '?' || glob[g] == name[n]) {
            g += 1;
            n += 1;
        } else if g < glob.len() && glob[g] == '*' {
            star = Some((g, n));
            g += 1;
        } else if let Some((sg, sn)) = star {
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

// ---------------------------------------------------------------------------------------------
// The ACL model

/// One POSIX ACL (access, or a directory's default), as getfacl shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    pub user_obj: u8,
    pub group_obj: u8,
    pub other: u8,
    pub mask: Option<u8>,
    pub users: BTreeMap<u32, u8>,
    pub groups: BTreeMap<u32, u8>,
}

impl Acl {
    /// The minimal ACL of a file mode (no ACL stored).
    pub fn from_mode(mode: u32) -> Acl {
        Acl {
            user_obj: ((mode >> 6) & 7) as u8,
            group_obj: ((mode >> 3) & 7) as u8,
            other: (mode & 7) as u8,
            ..Acl::default()
        }
    }

    /// Only the three base entries: the same as the file mode, nothing stored.
    pub fn is_minimal(&self) -> bool {
        self.mask.is_none() && self.users.is_empty() && self.groups.is_empty()
    }

    fn has_named(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty()
    }

    /// The mask `setfacl` would compute: the union of the group class.
    fn computed_mask(&self) -> u8 {
        self.users
            .values()
            .chain(self.groups.values())
            .fold(self.group_obj, |m, p| m | p)
    }

    /// What the given user gets from this ACL (their own entry through the mask, else other),
    /// ignoring group entries: the agent is a system user with no shared groups.
    pub fn effective_for(&self, uid: u32, owner: u32) -> u8 {
        if uid == owner {
            return self.user_obj;
        }
        match self.users.get(&uid) {
            Some(perm) => perm & self.mask.unwrap_or(7),
            None => self.other,
        }
    }

    /// A default ACL for a directory that has none: the base entries of its access ACL.
    pub fn default_base(access: &Acl) -> Acl {
        Acl {
            user_obj: access.user_obj,
            group_obj: access.group_obj,
            other: access.other,
            ..Acl::default()
        }
    }
}

/// Which ACL of a path an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclKind {
    Access,
    Default,
}

/// Why the grant touched the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A parent directory: traversal only (an explicit `--x`, so it cannot list it either).
    Parent,
    /// A file or directory beside the path to the grant, below the first parent the agent
    /// could not pass before: an explicit empty entry, so traversal opens nothing else.
    Sibling,
    /// A path in the granted tree.
    Tree,
    /// A credential in the tree: the agent got an explicit empty entry.
    Credential,
}

/// One ACL the grant changed, and what it held before: enough to put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclChange {
    pub path: Utf8PathBuf,
    pub kind: AclKind,
    pub role: Role,
    /// The agent's entry before the grant; `None`: there was none.
    pub previous: Option<u8>,
    /// The mask before the grant; `None`: there was none (a minimal ACL, or no default ACL).
    pub previous_mask: Option<u8>,
    /// For default ACLs: whether the directory had one at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_default_existed: bool,
}

/// What a grant wants for the agent on one ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// At least these bits (an existing wider entry stays as it is).
    Add(u8),
    /// An explicit empty entry (`u:agent:---`): credentials stay closed to the agent even where
    /// the `other` bits would let it read them.
    Deny,
}

/// Plan the agent's entry and a mask that lets it through. An existing mask is widened by the
/// agent's bits only, and not at all if that would give the owning group or another named
/// entry more than it has now (POSIX ACLs share one mask): then the agent gets what the mask
/// allows, and `agent_shortfall` tells. Returns the new ACL and the previous entry and mask to
/// record, or `None` if nothing changes.
pub fn plan_entry(
    current: &Acl,
    agent: u32,
    desired: Desired,
) -> Option<(Acl, Option<u8>, Option<u8>)> {
    let previous = current.users.get(&agent).copied();
    let mut next = current.clone();
    match desired {
        Desired::Add(bits) => {
            let perm = previous.unwrap_or(0) | bits;
            next.users.insert(agent, perm);
            next.mask = Some(match current.mask {
                Some(mask) if others_gain(current, agent, mask | perm) => mask,
                Some(mask) => mask | perm,
                None => next.computed_mask(),
            });
        }
        Desired::Deny => {
            next.users.insert(agent, 0);
            next.mask = Some(current.mask.unwrap_or_else(|| next.computed_mask()));
        }
    }
    (next != *current).then_some((next, previous, current.mask))
}

/// Would this mask give anyone in the group class (besides the agent) more than now?
fn others_gain(acl: &Acl, agent: u32, new_mask: u8) -> bool {
    let old_mask = acl.mask.unwrap_or(7);
    std::iter::once(acl.group_obj)
        .chain(
            acl.users
                .iter()
                .filter(|(uid, _)| **uid != agent)
                .map(|(_, p)| *p),
        )
        .chain(acl.groups.values().copied())
        .any(|perm| perm & new_mask & !old_mask != 0)
}

/// The bits the agent wanted but does not get through the mask (`None`: it gets them all).
pub fn agent_shortfall(acl: &Acl, agent: u32, wanted: u8) -> Option<u8> {
    let effective = acl.users.get(&agent).copied().unwrap_or(0) & acl.mask.unwrap_or(7);
    let missing = wanted & !effective;
    (missing != 0).then_some(missing)
}

/// Put back the agent's entry and the mask recorded before the grant. `previous_mask == None`
/// with no other named entries left gives the minimal ACL (nothing stored, as before).
pub fn restore_entry(
    current: &Acl,
    agent: u32,
    previous: Option<u8>,
    previous_mask: Option<u8>,
) -> Acl {
    let mut next = current.clone();
    match previous {
        Some(perm) => {
            next.users.insert(agent, perm);
        }
        None => {
            next.users.remove(&agent);
        }
    }
    next.mask = match previous_mask {
        Some(mask) => Some(mask),
        None if next.has_named() => Some(next.computed_mask()),
        None => None,
    };
    next
}

/// Restore a directory's default ACL; `None` means: no default ACL.
pub fn restore_default(current: Option<&Acl>, agent: u32, change: &AclChange) -> Option<Acl> {
    let current = current?;
    let next = restore_entry(current, agent, change.previous, change.previous_mask);
    if !change.previous_default_existed && !next.has_named() {
        None
    } else {
        Some(next)
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// One active grant, as stored in the records file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The canonical root of the granted tree.
    pub path: Utf8PathBuf,
    pub mode: Mode,
    pub granted_by: Granter,
    /// The agent account the entries name.
    pub agent: Granter,
    /// Seconds since the Unix epoch (UTC).
    pub granted_at: u64,
    pub expires_at: Option<u64>,
    /// Every ACL the grant changed, in the order it changed them.
    pub entries: Vec<AclChange>,
    /// Credential files in the tree that got no agent entry.
    #[serde(default)]
    pub skipped_credentials: Vec<Utf8PathBuf>,
}

/// The records file: every active grant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    pub version: u32,
    pub grants: Vec<GrantRecord>,
}

impl Records {
    pub const VERSION: u32 = 1;

    pub fn new() -> Records {
        Records {
            version: Self::VERSION,
            grants: Vec::new(),
        }
    }

    /// Parse the records file; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Records, String> {
        let records: Records = serde_json::from_str(text)
            .map_err(|err| format!("{source}: not a grant records file: {err}"))?;
        if records.version != Self::VERSION {
            return Err(format!(
                "{source}: records version {} is not supported (expected {})",
                records.version,
                Self::VERSION
            ));
        }
        Ok(records)
    }

    pub fn find(&self, path: &Utf8Path) -> Option<usize> {
        self.grants.iter().position(|g| g.path == path)
    }

    /// The grants whose expiry is at or before `now`.
    pub fn expired(&self, now: u64) -> Vec<Utf8PathBuf> {
        self.grants
            .iter()
            .filter(|g| g.expires_at.is_some_and(|at| at <= now))
            .map(|g| g.path.clone())
            .collect()
    }

    /// The change an active grant recorded for this ACL, if any: a later grant that needs the
    /// same parent entry records the state from before the first grant, not the first grant's.
    pub fn original_state(&self, path: &Utf8Path, kind: AclKind) -> Option<&AclChange> {
        original_state(&self.grants, path, kind)
    }
}

/// The change one of `grants` recorded for this ACL (see `Records::original_state`).
pub fn original_state<'a>(
    grants: &'a [GrantRecord],
    path: &Utf8Path,
    kind: AclKind,
) -> Option<&'a AclChange> {
    grants
        .iter()
        .flat_map(|g| &g.entries)
        .find(|c| c.path == path && c.kind == kind)
}

/// The child of `parent` on the way down to `path` (`parent` must be an ancestor of `path`).
pub fn next_on_path(parent: &Utf8Path, path: &Utf8Path) -> Option<Utf8PathBuf> {
    let rest = path.strip_prefix(parent).ok()?;
    let first = rest.components().next()?;
    Some(parent.join(first.as_str()))
}

/// What revoke does with one recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeStep {
    /// Put the recorded state back.
    Restore(AclChange),
    /// Another grant still needs this entry (a shared parent, or its own tree root): leave it.
    Keep {
        change: AclChange,
        needed_by: Utf8PathBuf,
    },
    /// Another grant keeps this path closed (it lies beside that grant's path): close it again.
    Deny {
        change: AclChange,
        needed_by: Utf8PathBuf,
    },
}

impl RevokeStep {
    pub fn change(&self) -> &AclChange {
        match self {
            RevokeStep::Restore(c)
            | RevokeStep::Keep { change: c, .. }
            | RevokeStep::Deny { change: c, .. } => c,
        }
    }
}

/// Compute what revoking `revoked` must undo, given the grants that stay.
/// Tree entries are undone deepest first, then parents and siblings from the bottom up.
pub fn revoke_plan(revoked: &GrantRecord, remaining: &[GrantRecord]) -> Vec<RevokeStep> {
    let mut steps: Vec<RevokeStep> = revoked
        .entries
        .iter()
        .rev()
        .map(|change| {
            let other = remaining.iter().find_map(|g| {
                if g.path == revoked.path {
                    return None;
                }
                g.entries
                    .iter()
                    .find(|c| c.path == change.path && c.kind == change.kind)
                    .map(|c| (g, c.role))
            });
            match other {
                Some((grant, Role::Sibling)) => RevokeStep::Deny {
                    change: change.clone(),
                    needed_by: grant.path.clone(),
                },
                Some((grant, _)) => RevokeStep::Keep {
                    change: change.clone(),
                    needed_by: grant.path.clone(),
                },
                None => RevokeStep::Restore(change.clone()),
            }
        })
        .collect();
    steps.sort_by_cached_key(|step| {
        let change = step.change();
        (
            matches!(change.role, Role::Parent | Role::Sibling),
            std::cmp::Reverse(change.path.components().count()),
        )
    });
    steps
}

/// The parents of a canonical path, from `/` down to its direct parent.
pub fn parents_top_down(path: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut parents: Vec<Utf8PathBuf> = path.ancestors().skip(1).map(Utf8Path::to_owned).collect();
    parents.reverse();
    parents
}

// ---------------------------------------------------------------------------------------------
// Durations and times

/// Parse `30m`, `8h`, `1s`, `2d`, `1h30m` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number with a unit, s, m, h or d \
             (for example 30m, 8h, 1h30m)"
        )
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("{text:?}: a grant must last at least 1s"));
    }
    Ok(total)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    crate::timefmt::rfc3339(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn homes() -> Vec<Utf8PathBuf> {
        vec!["/home/alice".into(), "/home/bob".into(), "/".into()]
    }

    #[test]
    fn protected_prefixes_are_refused_unless_forced() {
        for path in [
            "/",
            "/etc",
            "/etc/ssh",
            "/usr/lib",
            "/var",
            "/var/www/x",
            "/proc/1",
            "/sys",
            "/root",
            "/root/src",
            "/boot",
        ] {
            let err = check_path_policy(Utf8Path::new(path), &homes(), false).unwrap_err();
            assert!(err.contains("protected"), "{path}: {err}");
            assert!(check_path_policy(Utf8Path::new(path), &homes(), true).is_ok());
        }
        // Prefixes match whole components only.
        assert!(check_path_policy(Utf8Path::new("/etcetera/x"), &homes(), false).is_ok());
        assert!(check_path_policy(Utf8Path::new("/srv/proj"), &homes(), false).is_ok());
        assert!(check_path_policy(Utf8Path::new("/tmp/x"), &homes(), false).is_ok());
    }

    #[test]
    fn home_roots_and_their_parents_are_refused_unless_forced() {
        let err = check_path_policy(Utf8Path::new("/home/alice"), &homes(), false).unwrap_err();
        assert!(err.contains("whole home directory"), "{err}");
        assert!(err.contains("/home/alice/src/PROJECT"), "{err}");
        let err = check_path_policy(Utf8Path::new("/home"), &homes(), false).unwrap_err();
        assert!(err.contains("contains the home directory"), "{err}");
        assert!(check_path_policy(Utf8Path::new("/home/alice"), &homes(), true).is_ok());
        assert!(check_path_policy(Utf8Path::new("/home/alice/src/proj"), &homes(), false).is_ok());
        assert!(check_path_policy(Utf8Path::new("relative"), &homes(), true).is_err());
    }

    fn alice() -> Granter {
        Granter {
            name: "alice".into(),
            uid: 1000,
        }
    }

    #[test]
    fn operator_may_grant_only_owned_paths_below_home() {
        let home = Utf8Path::new("/home/alice");
        let path = Utf8Path::new("/home/alice/src/proj");
        let chain = |owners: [u32; 3]| -> Vec<(Utf8PathBuf, u32)> {
            ["/home/alice", "/home/alice/src", "/home/alice/src/proj"]
                .iter()
                .zip(owners)
                .map(|(p, o)| (Utf8PathBuf::from(*p), o))
                .collect()
        };
        assert!(check_operator_may_grant(&alice(), home, path, &chain([1000; 3])).is_ok());
        let err =
            check_operator_may_grant(&alice(), home, path, &chain([1000, 0, 1000])).unwrap_err();
        assert!(err.contains("/home/alice/src is owned by UID 0"), "{err}");
        let err = check_operator_may_grant(&alice(), home, Utf8Path::new("/etc"), &[]).unwrap_err();
        assert!(err.contains("not below your home"), "{err}");
        let err = check_operator_may_grant(&alice(), home, Utf8Path::new("/home/bob/src"), &[])
            .unwrap_err();
        assert!(err.contains("not below your home"), "{err}");
        let err = check_operator_may_grant(&alice(), home, home, &[]).unwrap_err();
        assert!(err.contains("not below"), "{err}");
        // A chain that does not start at the home is an error, not a pass.
        assert!(check_operator_may_grant(&alice(), home, path, &chain([1000; 3])[1..]).is_err());
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches(".env*", ".env"));
        assert!(glob_matches(".env*", ".env.local"));
        assert!(!glob_matches(".env*", "x.env"));
        assert!(glob_matches("*.pem", "server.pem"));
        assert!(!glob_matches("*.pem", "server.pem.txt"));
        assert!(glob_matches("id_*", "id_ed25519"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*a*b*", "xxaybzz"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("", "x"));
    }

    #[test]
    fn default_credential_patterns_classify() {
        let patterns = default_credential_patterns();
        let credential = |name| {
            matches!(
                classify_name(&patterns, name),
                NameVerdict::Credential { .. }
            )
        };
        for name in [
            ".env",
            ".env.production",
            "tls.key",
            ".netrc",
            ".git-credentials",
            "auth.json",
            ".pgpass",
            "credentials",
        ] {
            assert!(credential(name), "{name}");
        }
        for name in [
            "main.rs",
            "environment.md",
            "id_ed25519.pub",
            "keys.json",
            "README",
        ] {
            assert_eq!(
                classify_name(&patterns, name),
                NameVerdict::Ordinary,
                "{name}"
            );
        }
        // Content decides for keys named id_*, PEM files and .npmrc.
        let NameVerdict::IfContains { containing, .. } = classify_name(&patterns, "id_ed25519")
        else {
            panic!("id_ed25519 needs a content check");
        };
        assert!(content_matches(
            &containing,
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blb\n"
        ));
        assert!(!content_matches(&containing, b"def id_helper(): pass\n"));
        let NameVerdict::IfContains { containing, .. } = classify_name(&patterns, "cert.pem")
        else {
            panic!("cert.pem needs a content check");
        };
        assert!(!content_matches(
            &containing,
            b"-----BEGIN CERTIFICATE-----\n"
        ));
        assert!(content_matches(
            &containing,
            b"-----BEGIN EC PRIVATE KEY-----\n"
        ));
        let NameVerdict::IfContains { containing, .. } = classify_name(&patterns, ".npmrc") else {
            panic!(".npmrc needs a content check");
        };
        assert!(content_matches(
            &containing,
            b"//registry.npmjs.org/:_authToken=npm_abc\n"
        ));
        assert!(!content_matches(&containing, b"save-exact=true\n"));
    }

    #[test]
    fn patterns_are_validated() {
        assert!(CredentialPattern::Name("a/b".into()).validate().is_err());
        assert!(CredentialPattern::Name("".into()).validate().is_err());
        for pattern in default_credential_patterns() {
            pattern.validate().unwrap();
        }
        let empty_needle = CredentialPattern::Detailed(DetailedPattern {
            name: "x".into(),
            except: vec![],
            containing: vec!["".into()],
        });
        assert!(empty_needle.validate().is_err());
    }

    #[test]
    fn mode_bits_follow_capital_x() {
        assert_eq!(perm_text(Mode::Ro.access_bits(true, false)), "r-x");
        assert_eq!(perm_text(Mode::Ro.access_bits(false, false)), "r--");
        assert_eq!(perm_text(Mode::Ro.access_bits(false, true)), "r-x");
        assert_eq!(perm_text(Mode::Rw.access_bits(false, false)), "rw-");
        assert_eq!(perm_text(Mode::Rw.access_bits(true, false)), "rwx");
        assert_eq!(perm_text(Mode::Rw.default_bits()), "rwx");
    }

    const AGENT: u32 = 990;

    #[test]
    fn entry_on_minimal_acl_adds_mask_and_restore_makes_it_minimal_again() {
        let before = Acl::from_mode(0o700);
        let (after, previous, previous_mask) = plan_entry(&before, AGENT, Desired::Add(X)).unwrap();
        assert_eq!(after.users.get(&AGENT), Some(&X));
        assert_eq!(after.mask, Some(X));
        assert_eq!(after.group_obj, 0, "the owning group gains nothing");
        assert_eq!((previous, previous_mask), (None, None));
        let restored = restore_entry(&after, AGENT, previous, previous_mask);
        assert_eq!(restored, before);
        assert!(restored.is_minimal());
    }

    #[test]
    fn existing_mask_is_widened_only_by_the_agent_bits_and_restored() {
        // User 1234 has rw- under mask r--: adding x for the agent gives 1234 nothing, so the
        // mask becomes r-x (not rwx, as recomputing it would make it).
        let mut before = Acl::from_mode(0o740);
        before.users.insert(1234, R | W);
        before.mask = Some(R);
        let (after, previous, previous_mask) =
            plan_entry(&before, AGENT, Desired::Add(R | X)).unwrap();
        assert_eq!(
            after.mask,
            Some(R | X),
            "not recomputed to rwx for user 1234"
        );
        assert_eq!(
            restore_entry(&after, AGENT, previous, previous_mask),
            before
        );
    }

    #[test]
    fn mask_is_not_widened_when_others_would_gain() {
        // chmod 640 on a file with an ACL: group_obj rw-, mask r--. Widening the mask to rw-
        // would let the owning group write, and user 1234 (rwx) write too.
        let mut before = Acl::from_mode(0o640);
        before.group_obj = R | W;
        before.users.insert(1234, R | W | X);
        before.mask = Some(R);
        let (after, _, _) = plan_entry(&before, AGENT, Desired::Add(R | W)).unwrap();
        assert_eq!(after.mask, Some(R));
        assert_eq!(agent_shortfall(&after, AGENT, R | W), Some(W));
        // Without anyone to gain, the mask is widened for the agent.
        let mut alone = Acl::from_mode(0o600);
        alone.mask = Some(0);
        let (after, _, _) = plan_entry(&alone, AGENT, Desired::Add(R | W)).unwrap();
        assert_eq!(after.mask, Some(R | W));
        assert_eq!(agent_shortfall(&after, AGENT, R | W), None);
    }

    #[test]
    fn sufficient_existing_entry_is_no_change() {
        let mut before = Acl::from_mode(0o700);
        before.users.insert(AGENT, R | W | X);
        before.mask = Some(R | W | X);
        assert_eq!(plan_entry(&before, AGENT, Desired::Add(X)), None);
        // A narrower entry is widened, and restore puts the narrow one back.
        before.users.insert(AGENT, R);
        let (after, previous, previous_mask) = plan_entry(&before, AGENT, Desired::Add(X)).unwrap();
        assert_eq!(after.users[&AGENT], R | X);
        assert_eq!(
            restore_entry(&after, AGENT, previous, previous_mask),
            before
        );
    }

    #[test]
    fn credential_gets_an_explicit_deny_that_is_restored() {
        // 0644: `other` could read it; the empty named entry closes it for the agent only.
        let before = Acl::from_mode(0o644);
        let (after, previous, previous_mask) = plan_entry(&before, AGENT, Desired::Deny).unwrap();
        assert_eq!(after.users[&AGENT], 0);
        assert_eq!(after.effective_for(AGENT, 1000), 0);
        assert_eq!(
            after.effective_for(4242, 1000),
            R,
            "others keep their access"
        );
        assert_eq!(after.mask, Some(R), "the group class gains nothing");
        assert_eq!(
            restore_entry(&after, AGENT, previous, previous_mask),
            before
        );
        // An existing agent entry on a credential is closed too, and put back on revoke.
        let mut open = Acl::from_mode(0o600);
        open.users.insert(AGENT, R);
        open.mask = Some(R);
        let (after, previous, previous_mask) = plan_entry(&open, AGENT, Desired::Deny).unwrap();
        assert_eq!(after.effective_for(AGENT, 1000), 0);
        assert_eq!(restore_entry(&after, AGENT, previous, previous_mask), open);
    }

    fn change(path: &str, kind: AclKind, role: Role) -> AclChange {
        AclChange {
            path: path.into(),
            kind,
            role,
            previous: None,
            previous_mask: None,
            previous_default_existed: false,
        }
    }

    #[test]
    fn default_acl_that_did_not_exist_is_removed_on_restore() {
        let access = Acl::from_mode(0o755);
        let base = Acl::default_base(&access);
        let (after, _, _) = plan_entry(&base, AGENT, Desired::Add(R | W | X)).unwrap();
        let c = change("/p", AclKind::Default, Role::Tree);
        assert_eq!(restore_default(Some(&after), AGENT, &c), None);
        let existed = AclChange {
            previous_default_existed: true,
            ..c
        };
        assert_eq!(restore_default(Some(&after), AGENT, &existed), Some(base));
    }

    fn grant(path: &str, entries: Vec<AclChange>) -> GrantRecord {
        GrantRecord {
            path: path.into(),
            mode: Mode::Rw,
            granted_by: alice(),
            agent: Granter {
                name: "cc-agent".into(),
                uid: AGENT,
            },
            granted_at: 0,
            expires_at: None,
            entries,
            skipped_credentials: vec![],
        }
    }

    #[test]
    fn revoke_keeps_parent_entries_another_grant_needs() {
        let a = grant(
            "/home/alice/src/a",
            vec![
                change("/home/alice", AclKind::Access, Role::Parent),
                change("/home/alice/src", AclKind::Access, Role::Parent),
                change("/home/alice/src/a", AclKind::Access, Role::Tree),
                change("/home/alice/src/a", AclKind::Default, Role::Tree),
                change("/home/alice/src/a/f", AclKind::Access, Role::Tree),
            ],
        );
        let b = grant(
            "/home/alice/src/b",
            vec![
                change("/home/alice", AclKind::Access, Role::Parent),
                change("/home/alice/src/b", AclKind::Access, Role::Tree),
            ],
        );
        let plan = revoke_plan(&a, std::slice::from_ref(&b));
        let restored: Vec<&str> = plan
            .iter()
            .filter_map(|s| match s {
                RevokeStep::Restore(c) => Some(c.path.as_str()),
                RevokeStep::Keep { .. } | RevokeStep::Deny { .. } => None,
            })
            .collect();
        assert_eq!(
            restored,
            [
                "/home/alice/src/a/f",
                "/home/alice/src/a",
                "/home/alice/src/a",
                "/home/alice/src"
            ]
        );
        assert!(plan.iter().any(|s| matches!(s,
            RevokeStep::Keep { change, needed_by }
                if change.path == "/home/alice" && needed_by == "/home/alice/src/b")));
        // Alone, everything is restored, parents last.
        let plan = revoke_plan(&a, &[]);
        assert!(plan.iter().all(|s| matches!(s, RevokeStep::Restore(_))));
        assert!(matches!(plan.last(), Some(RevokeStep::Restore(c)) if c.path == "/home/alice"));
        // A path another grant keeps closed (beside its path) is closed again, not restored.
        let mut c = grant(
            "/home/alice/src/c",
            vec![change("/home/alice/src/a", AclKind::Access, Role::Sibling)],
        );
        c.entries
            .push(change("/home/alice/src", AclKind::Access, Role::Parent));
        let plan = revoke_plan(&a, std::slice::from_ref(&c));
        assert!(plan.iter().any(|s| matches!(s,
            RevokeStep::Deny { change, needed_by }
                if change.path == "/home/alice/src/a" && needed_by == "/home/alice/src/c")));
        assert!(plan.iter().any(|s| matches!(s,
            RevokeStep::Keep { change, .. } if change.path == "/home/alice/src")));
        // The revoked grant itself in `remaining` does not count.
        assert!(revoke_plan(&a, std::slice::from_ref(&a))
            .iter()
            .all(|s| matches!(s, RevokeStep::Restore(_))));
    }

    #[test]
    fn overlapping_grants_are_refused() {
        let records = vec![grant("/home/alice/src/a", vec![])];
        assert!(check_overlap(Utf8Path::new("/home/alice/src/a"), &records)
            .unwrap_err()
            .contains("already granted"));
        assert!(
            check_overlap(Utf8Path::new("/home/alice/src/a/sub"), &records)
                .unwrap_err()
                .contains("inside the granted tree")
        );
        assert!(check_overlap(Utf8Path::new("/home/alice/src"), &records)
            .unwrap_err()
            .contains("contains the granted tree"));
        assert!(check_overlap(Utf8Path::new("/home/alice/src/ab"), &records).is_ok());
    }

    #[test]
    fn expiry_and_original_state() {
        let mut records = Records::new();
        let mut a = grant("/a", vec![change("/", AclKind::Access, Role::Parent)]);
        a.expires_at = Some(100);
        records.grants.push(a);
        records.grants.push(grant("/b", vec![]));
        assert_eq!(records.expired(99), Vec::<Utf8PathBuf>::new());
        assert_eq!(records.expired(100), vec![Utf8PathBuf::from("/a")]);
        assert!(records
            .original_state(Utf8Path::new("/"), AclKind::Access)
            .is_some());
        assert!(records
            .original_state(Utf8Path::new("/"), AclKind::Default)
            .is_none());
        let text = serde_json::to_string(&records).unwrap();
        assert_eq!(Records::parse(&text, "t").unwrap(), records);
        assert!(Records::parse("{\"version\":2,\"grants\":[]}", "t")
            .unwrap_err()
            .contains("version 2"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(1));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("8h"), Ok(28800));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2d"), Ok(172800));
        for bad in ["", "10", "m", "1x", "-1s", "0s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn next_on_path_is_the_child_towards_the_grant() {
        let path = Utf8Path::new("/home/alice/src/proj");
        assert_eq!(
            next_on_path(Utf8Path::new("/home/alice"), path).unwrap(),
            "/home/alice/src"
        );
        assert_eq!(next_on_path(Utf8Path::new("/"), path).unwrap(), "/home");
        assert_eq!(next_on_path(path, path), None);
        assert_eq!(next_on_path(Utf8Path::new("/etc"), path), None);
    }

    #[test]
    fn parents_are_listed_top_down() {
        assert_eq!(
            parents_top_down(Utf8Path::new("/home/alice/src")),
            ["/", "/home", "/home/alice"]
        );
        assert!(parents_top_down(Utf8Path::new("/")).is_empty());
    }
}
