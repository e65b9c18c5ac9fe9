//! The sysusers.d(5) file that declares the agent and proxy users and the operators' group (pure).
//!
//! The packages ship it at [`SYSUSERS_FILE`], rendered at build time from the packaged config, so a
//! site build with other user names declares those names.

use crate::config::Config;

/// Where the packages install the file.
pub const SYSUSERS_FILE: &str = "/usr/lib/sysusers.d/pipelock-containment.conf";
/// Home of the proxy user: the proxy unit's `StateDirectory=pipelock`.
pub const PROXY_HOME: &str = "/var/lib/pipelock";
/// The login shell of both system users.
pub const NOLOGIN: &str = "/usr/sbin/nologin";

/// The sysusers.d lines for `config`: both users with fixed-free UIDs (`-`), and the group.
pub fn render(config: &Config) -> String {
    let users = &config.users;
    format!(
        "# pipelock-containment: system accounts for three-UID containment (sysusers.d(5)).\n\
         # Rendered from the packaged containment.toml when the package was built.\n\
         u {agent} - \"pipelock-containment agent\" {agent_home} {NOLOGIN}\n\
         u {proxy} - \"pipelock egress proxy\" {PROXY_HOME} {NOLOGIN}\n\
         g {group} -\n",
        agent = users.agent,
        agent_home = users.agent_home,
        proxy = users.proxy,
        group = users.operators_group,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_declares_both_users_and_the_group() {
        let text = render(&Config::defaults());
        assert!(text.contains(
            "\nu cc-agent - \"pipelock-containment agent\" /var/lib/cc-agent /usr/sbin/nologin\n"
        ));
        assert!(text.contains(
            "\nu pipelock-proxy - \"pipelock egress proxy\" /var/lib/pipelock /usr/sbin/nologin\n"
        ));
        assert!(text.ends_with("\ng pipelock-operators -\n"));
    }

    #[test]
    fn names_come_from_the_config() {
        let mut config = Config::defaults();
        config.users.agent = "ai-agent".into();
        config.users.agent_home = "/srv/ai-agent".into();
        config.users.operators_group = "ai-ops".into();
        let text = render(&config);
        assert!(text.contains("\nu ai-agent - \"pipelock-containment agent\" /srv/ai-agent "));
        assert!(text.contains("\ng ai-ops -\n"));
        assert!(!text.contains("cc-agent"));
    }
}
