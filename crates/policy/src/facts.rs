//! Facts about this host that rendering needs (accounts, UID ranges, distro paths), and the pure checks on them.

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

/// A resolved account, as the system's user database (NSS) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Utf8PathBuf,
}

/// The UID range of human (login) accounts, from /etc/login.defs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoginUidRange {
    pub min: u32,
    pub max: u32,
}

impl Default for LoginUidRange {
    /// shadow-utils' compiled-in defaults.
    fn default() -> Self {
        LoginUidRange {
            min: 1000,
            max: 60000,
        }
    }
}

impl LoginUidRange {
    /// Read UID_MIN and UID_MAX from the text of login.defs; absent keys keep their defaults.
    pub fn from_login_defs(text: &str) -> LoginUidRange {
        let mut range = LoginUidRange::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<u32>() else {
                continue;
            };
            match key {
                "UID_MIN" => range.min = value,
                "UID_MAX" => range.max = value,
                _ => {}
            }
        }
        range
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.min..=self.max).contains(&uid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistroFamily {
    Debian,
    Fedora,
    Other,
}

/// Paths that differ between distro families.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistroPaths {
    pub family: DistroFamily,
    pub system_ca_bundle: Utf8PathBuf,
    pub nologin: Utf8PathBuf,
}

impl DistroPaths {
    pub const DEBIAN_CA_BUNDLE: &'static str = "/etc/ssl/certs/ca-certificates.crt";
    pub const FEDORA_CA_BUNDLE: &'static str = "/etc/pki/tls/certs/ca-bundle.crt";

    /// Pick the family from os-release's ID and ID_LIKE, and the paths that go with it.
    /// `exists` says whether a path is present on the host.
    pub fn detect(os_release: &str, exists: impl Fn(&Utf8Path) -> bool) -> DistroPaths {
        let ids: Vec<&str> = os_release
            .lines()
            .filter_map(|line| {
                line.strip_prefix("ID=")
                    .or_else(|| line.strip_prefix("ID_LIKE="))
            })
            .flat_map(|value| value.trim_matches('"').split_whitespace())
            .collect();
        let family = if ids.iter().any(|id| *id == "debian" || *id == "ubuntu") {
            DistroFamily::Debian
        } else if ids
            .iter()
            .any(|id| matches!(*id, "fedora" | "rhel" | "centos" | "suse"))
        {
            DistroFamily::Fedora
        } else {
            DistroFamily::Other
        };
        let preferred = match family {
            DistroFamily::Fedora => [Self::FEDORA_CA_BUNDLE, Self::DEBIAN_CA_BUNDLE],
            _ => [Self::DEBIAN_CA_BUNDLE, Self::FEDORA_CA_BUNDLE],
        };
        let system_ca_bundle = preferred
            .iter()
            .map(Utf8Path::new)
            .find(|path| exists(path))
            .unwrap_or(Utf8Path::new(preferred[0]))
            .to_owned();
        let nologin = ["/usr/sbin/nologin", "/sbin/nologin"]
            .iter()
            .map(Utf8Path::new)
            .find(|path| exists(path))
            .unwrap_or(Utf8Path::new("/usr/sbin/nologin"))
            .to_owned();
        DistroPaths {
            family,
            system_ca_bundle,
            nologin,
        }
    }
}

/// Everything rendering needs to know about the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub agent: Account,
    pub proxy: Account,
    pub login_range: LoginUidRange,
    pub distro: DistroPaths,
    /// The distro's sshd reads drop-ins from `/etc/ssh/sshd_config.d` (the directory exists).
    pub sshd_dropin_dir: bool,
}

impl Facts {
    /// Refuse accounts that would make containment meaningless or harmful.
    pub fn check_accounts(&self) -> Result<(), String> {
        for (role, account) in [("agent", &self.agent), ("proxy", &self.proxy)] {
            if account.uid == 0 {
                return Err(format!(
                    "the {role} user {:?} has UID 0 (root); containment needs a dedicated \
                     unprivileged system user: change users.{role} in the config",
                    account.name
                ));
            }
            if self.login_range.contains(account.uid) {
                return Err(format!(
                    "the {role} user {:?} has UID {}, inside the login range {}-{} of \
                     /etc/login.defs, so it looks like a human account; use a system user \
                     (created with `useradd -r` or sysusers.d) and set users.{role} in the config",
                    account.name, account.uid, self.login_range.min, self.login_range.max
                ));
            }
        }
        if self.agent.uid == self.proxy.uid {
            return Err(format!(
                "the agent user {:?} and the proxy user {:?} share UID {}; the kernel rule \
                 tells them apart by UID, so they must differ",
                self.agent.name, self.proxy.name, self.agent.uid
            ));
        }
        Ok(())
    }
}

/// What /etc/shadow says about one account: no password can log in, and the account expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowState {
    pub locked: bool,
    pub expired: bool,
}

/// The `name` line of /etc/shadow text, judged on `today` (days since the epoch). None: no line.
/// Locked: the password field starts with `!` or `*` (no password matches). Expired: an
/// expiry day is set and has passed, so PAM's account stack (su, sshd, cron, login) refuses.
pub fn shadow_state(shadow: &str, name: &str, today: u64) -> Option<ShadowState> {
    let line = shadow.lines().find(|l| l.split(':').next() == Some(name))?;
    let fields: Vec<&str> = line.split(':').collect();
    let password = fields.get(1).copied().unwrap_or("");
    let expire = fields.get(7).and_then(|f| f.parse::<u64>().ok());
    Some(ShadowState {
        locked: password.starts_with('!') || password.starts_with('*'),
        expired: expire.is_some_and(|day| day <= today),
    })
}

/// The agent account the unit tests share (default names, UID 987).
#[cfg(test)]
pub(crate) fn test_agent() -> Account {
    Account {
        name: "cc-agent".into(),
        uid: 987,
        gid: 987,
        home: "/var/lib/cc-agent".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_lines_are_judged_for_lock_and_expiry() {
        let shadow = "root:$y$x:19000:0:99999:7:::\ncc-agent:!*:19000:::::::\n\
                      locked:!:19000:::::1:\nold:$y$h:19000:::::20000:\n";
        assert_eq!(
            shadow_state(shadow, "cc-agent", 20500),
            Some(ShadowState {
                locked: true,
                expired: false
            })
        );
        assert_eq!(
            shadow_state(shadow, "locked", 20500),
            Some(ShadowState {
                locked: true,
                expired: true
            })
        );
        assert_eq!(
            shadow_state(shadow, "old", 20500),
            Some(ShadowState {
                locked: false,
                expired: true
            })
        );
        assert_eq!(
            shadow_state(shadow, "old", 19999),
            Some(ShadowState {
                locked: false,
                expired: false
            })
        );
        assert_eq!(shadow_state(shadow, "cc", 20500), None);
    }

    fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            home: "/nonexistent".into(),
        }
    }

    fn facts(agent_uid: u32, proxy_uid: u32) -> Facts {
        Facts {
            agent: account("cc-agent", agent_uid),
            proxy: account("pipelock-proxy", proxy_uid),
            login_range: LoginUidRange::default(),
            distro: DistroPaths::detect("ID=debian\n", |_| true),
            sshd_dropin_dir: true,
        }
    }

    #[test]
    fn login_defs_range_is_read() {
        let text = "# comment\nUID_MIN\t\t 2000\nUID_MAX 59999\nSYS_UID_MIN 100\n";
        assert_eq!(
            LoginUidRange::from_login_defs(text),
            LoginUidRange {
                min: 2000,
                max: 59999
            }
        );
        assert_eq!(LoginUidRange::from_login_defs(""), LoginUidRange::default());
    }

    #[test]
    fn system_accounts_pass() {
        assert_eq!(facts(987, 988).check_accounts(), Ok(()));
    }

    #[test]
    fn root_human_and_shared_uids_are_refused() {
        assert!(facts(0, 988).check_accounts().unwrap_err().contains("root"));
        assert!(facts(987, 1000)
            .check_accounts()
            .unwrap_err()
            .contains("login range"));
        assert!(facts(987, 987)
            .check_accounts()
            .unwrap_err()
            .contains("share UID 987"));
    }

    #[test]
    fn distro_paths_follow_os_release() {
        let fedora = DistroPaths::detect("NAME=Fedora\nID=fedora\n", |_| true);
        assert_eq!(fedora.family, DistroFamily::Fedora);
        assert_eq!(fedora.system_ca_bundle, DistroPaths::FEDORA_CA_BUNDLE);
        let ubuntu = DistroPaths::detect("ID=ubuntu\nID_LIKE=debian\n", |_| true);
        assert_eq!(ubuntu.family, DistroFamily::Debian);
        assert_eq!(ubuntu.system_ca_bundle, DistroPaths::DEBIAN_CA_BUNDLE);
        let rocky = DistroPaths::detect("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", |p| {
            p.as_str() != "/usr/sbin/nologin"
        });
        assert_eq!(rocky.family, DistroFamily::Fedora);
        assert_eq!(rocky.nologin, "/sbin/nologin");
    }
}
