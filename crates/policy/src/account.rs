//! Ways into the agent account that bypass the launcher: cron and at deny lists, sshd, D-Bus, job spools (pure).

/// cron's and at's deny lists: a listed user may not submit jobs.
pub const CRON_DENY: &str = "/etc/cron.deny";
pub const AT_DENY: &str = "/etc/at.deny";
/// A job scheduler and its lists. Its deny list is edited only where one of `programs` is
/// installed (or the list already exists), so no package later finds a file it ships there.
pub struct Scheduler {
    pub name: &'static str,
    pub deny: &'static str,
    pub allow: &'static str,
    pub programs: &'static [&'static str],
}

pub const SCHEDULERS: &[Scheduler] = &[
    Scheduler {
        name: "cron",
        deny: CRON_DENY,
        allow: "/etc/cron.allow",
        programs: &["/usr/bin/crontab"],
    },
    Scheduler {
        name: "at",
        deny: AT_DENY,
        allow: "/etc/at.allow",
        programs: &["/usr/bin/at"],
    },
];

/// The sshd drop-in that denies the agent; written only where the distro's sshd_config
/// includes this directory (Debian 12, Fedora, RHEL 9).
pub const SSHD_DROPIN_DIR: &str = "/etc/ssh/sshd_config.d";
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/50-pipelock-containment.conf";
/// sshd's unit on Debian (`ssh`) and Fedora (`sshd`); reloaded when the drop-in changes.
pub const SSHD_UNITS: &[&str] = &["ssh.service", "sshd.service"];

/// The packaged D-Bus system policy (generated at build time, like the sysusers.d file).
pub const DBUS_POLICY: &str = "/usr/share/dbus-1/system.d/pipelock-containment.conf";
/// Bus names the agent may not send to: services that resolve names or change the network.
pub const DBUS_DENIED: &[(&str, &str)] = &[
    (
        "org.freedesktop.resolve1",
        "systemd-resolved: DNS, LLMNR and mDNS lookups",
    ),
    ("org.freedesktop.Avahi", "avahi-daemon: mDNS and DNS-SD"),
    (
        "org.freedesktop.network1",
        "systemd-networkd: links, DNS servers",
    ),
    (
        "org.freedesktop.NetworkManager",
        "NetworkManager: connections, DNS, its dnsmasq",
    ),
    ("net.connman", "ConnMan: connections, DNS proxy"),
    (
        "org.freedesktop.machine1",
        "systemd-machined: container names and shells",
    ),
];

/// Where each scheduler keeps the agent's jobs (Debian, then Fedora).
pub const CRONTAB_SPOOLS: &[&str] = &["/var/spool/cron/crontabs", "/var/spool/cron"];
pub const AT_SPOOLS: &[&str] = &["/var/spool/cron/atjobs", "/var/spool/at"];
/// logind's linger flags: one empty file per user.
pub const LINGER_DIR: &str = "/var/lib/systemd/linger";
/// The agent's own systemd user units, below its home.
pub const USER_UNIT_DIR: &str = ".config/systemd/user";

/// Whether `user` has a line of its own in a cron/at list (comments and blanks ignored).
pub fn is_listed(text: &str, user: &str) -> bool {
    text.lines().any(|line| line.trim() == user)
}

/// The list with `user` added at the end (unchanged when already listed).
pub fn with_listed(text: &str, user: &str) -> String {
    if is_listed(text, user) {
        return text.to_string();
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(user);
    out.push('\n');
    out
}

/// The list without `user`'s lines; None when a file we created would be left with no entry.
pub fn without_listed(text: &str, user: &str, created_by_us: bool) -> Option<String> {
    let kept: Vec<&str> = text.lines().filter(|line| line.trim() != user).collect();
    let has_entries = kept
        .iter()
        .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    if created_by_us && !has_entries {
        return None;
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Some(out)
}

/// Whether `sshd -T` output (for a connection as the agent) denies `user`.
pub fn sshd_denies(effective_config: &str, user: &str) -> bool {
    effective_config.lines().any(|line| {
        let mut words = line.split_whitespace();
        words
            .next()
            .is_some_and(|key| key.eq_ignore_ascii_case("denyusers"))
            && words.any(|pattern| pattern == user || pattern == "*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_idempotent_and_taken_back_exactly() {
        let original = "# at.deny\nalias\nbackup";
        let listed = with_listed(original, "cc-agent");
        assert_eq!(listed, "# at.deny\nalias\nbackup\ncc-agent\n");
        assert_eq!(with_listed(&listed, "cc-agent"), listed);
        assert_eq!(
            without_listed(&listed, "cc-agent", false).as_deref(),
            Some("# at.deny\nalias\nbackup\n")
        );
    }

    #[test]
    fn a_list_we_created_goes_when_only_the_agent_is_left() {
        let created = with_listed("", "cc-agent");
        assert_eq!(created, "cc-agent\n");
        assert_eq!(without_listed(&created, "cc-agent", true), None);
        // An admin added someone meanwhile: the file stays, with their entry.
        let shared = with_listed(&created, "bob");
        assert_eq!(
            without_listed(&shared, "cc-agent", true).as_deref(),
            Some("bob\n")
        );
        // Not ours: an empty file stays.
        assert_eq!(
            without_listed(&created, "cc-agent", false).as_deref(),
            Some("")
        );
    }

    #[test]
    fn only_a_whole_line_counts_as_listed() {
        assert!(is_listed("a\n  cc-agent \n", "cc-agent"));
        assert!(!is_listed("cc-agent2\n# cc-agent\n", "cc-agent"));
    }

    #[test]
    fn sshd_effective_config_is_read_per_word() {
        assert!(sshd_denies(
            "port 22\ndenyusers cc-agent other\n",
            "cc-agent"
        ));
        assert!(sshd_denies("DenyUsers *\n", "cc-agent"));
        assert!(!sshd_denies(
            "denyusers cc-agent2\nallowusers cc-agent\n",
            "cc-agent"
        ));
    }
}
