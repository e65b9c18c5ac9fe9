//! Gathers `Facts` from this host: accounts through NSS (getpwnam), login.defs, os-release.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::User;

use pipelock_policy::config::Config;
use pipelock_policy::facts::{Account, DistroPaths, Facts, LoginUidRange};

/// UIDs to assume for accounts that do not exist yet, so `render` can show the result before install.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumedUids {
    pub agent: Option<u32>,
    pub proxy: Option<u32>,
}

/// One of the scheduler's programs is on this host.
pub fn scheduler_installed(scheduler: &pipelock_policy::account::Scheduler) -> bool {
    scheduler.programs.iter().any(|p| Utf8Path::new(p).exists())
}

/// Look up an account the way getpwnam does, so NSS (LDAP, sssd) accounts count.
pub fn lookup_account(name: &str) -> Result<Option<Account>> {
    let user = User::from_name(name)
        .with_context(|| format!("looking up user {name:?} in the user database"))?;
    Ok(user.map(|user| Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: Utf8PathBuf::from_path_buf(user.dir)
            .unwrap_or_else(|dir| Utf8PathBuf::from(dir.to_string_lossy().into_owned())),
    }))
}

fn resolve(name: &str, role: &str, assumed: Option<u32>, home: &Utf8Path) -> Result<Account> {
    match (lookup_account(name)?, assumed) {
        (Some(account), _) => Ok(account),
        (None, Some(uid)) => Ok(Account {
            name: name.to_string(),
            uid,
            gid: uid,
            home: home.to_owned(),
        }),
        (None, None) => bail!(
            "the {role} user {name:?} does not exist: run `pipelock-containment apply` as root \
             to create it, or pass --{role}-uid to render with an assumed UID"
        ),
    }
}

/// Gather every fact rendering needs, then refuse accounts that must not be used.
pub fn gather(config: &Config, assumed: AssumedUids) -> Result<Facts> {
    let agent = resolve(
        &config.users.agent,
        "agent",
        assumed.agent,
        &config.users.agent_home,
    )?;
    let proxy = resolve(
        &config.users.proxy,
        "proxy",
        assumed.proxy,
        Utf8Path::new("/var/lib/pipelock"),
    )?;
    let login_range = std::fs::read_to_string("/etc/login.defs")
        .map(|text| LoginUidRange::from_login_defs(&text))
        .unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let distro = DistroPaths::detect(&os_release, |path| path.exists());
    let facts = Facts {
        agent,
        proxy,
        login_range,
        distro,
        sshd_dropin_dir: Utf8Path::new(pipelock_policy::account::SSHD_DROPIN_DIR).is_dir(),
    };
    if let Err(problem) = facts.check_accounts() {
        bail!(problem);
    }
    Ok(facts)
}

/// Today, in days since the epoch (the unit of /etc/shadow's dates).
pub fn days_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}
