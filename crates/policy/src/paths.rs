//! Fixed install locations: what the package ships and what the helper generates.

/// The nft rule file the helper renders and the boot unit loads.
pub const RULE_FILE: &str = "/etc/nftables.d/pipelock-containment.nft";
/// The sudoers drop-in (no dot in the name, or sudo ignores it).
pub const SUDOERS_DROPIN: &str = "/etc/sudoers.d/pipelock-containment";
/// Generated launcher and tool wrappers; /etc/profile.d puts it first on operators' PATH.
pub const WRAPPER_DIR: &str = "/var/lib/pipelock-containment/wrappers";
/// The launcher operators run: `cc-launch TOOL [ARGS...]` (packaged, on the default PATH).
pub const LAUNCHER: &str = "/usr/bin/cc-launch";
/// Where releases before contained sessions generated the launcher; remove deletes it.
pub const OLD_LAUNCHER: &str = "/var/lib/pipelock-containment/wrappers/cc-launch";
/// Drop-in that gives the packaged proxy unit its user and command.
pub const PROXY_UNIT_DROPIN: &str =
    "/etc/systemd/system/pipelock-proxy.service.d/50-pipelock-containment.conf";
/// The helper's state: the manifest of what it manages, the wrappers.
pub const STATE_DIR: &str = "/var/lib/pipelock-containment";
/// The nft table and chain, as the design fixes them.
pub const NFT_TABLE_FAMILY: &str = "inet";
pub const NFT_TABLE: &str = "pipelock_containment";
pub const NFT_CHAIN: &str = "output_filter";
/// The NFLOG group the host table and every session's table log to (one per network namespace).
pub const NFLOG_GROUP: u16 = 7409;
/// The helper itself, as the sudoers rule for grants names it.
pub const HELPER: &str = "/usr/bin/pipelock-containment";
/// Default records of active workspace grants (config `grants.records`).
pub const GRANT_RECORDS: &str = "/var/lib/pipelock-containment/grants.json";
/// The sudoers drop-in that lets operators grant their own directories.
pub const SUDOERS_GRANTS_DROPIN: &str = "/etc/sudoers.d/pipelock-containment-grants";
/// Shell-readable list of accounts postrm/%postun deletes on purge (present only when the
/// config opts in).
pub const PURGE_ACCOUNTS_FILE: &str = "/var/lib/pipelock-containment/purge-accounts";
/// Shell-readable list of the managed files, for postrm when the helper is gone.
pub const MANAGED_FILES_LIST: &str = "/var/lib/pipelock-containment/managed-files";
