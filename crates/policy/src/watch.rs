//! The table watcher's logic (pure): which `nft monitor` lines matter, and the state it records
//! for verify and the metrics.

use serde::{Deserialize, Serialize};

use crate::paths;

/// Where the watcher records what it did (a runtime file: it starts anew at boot).
pub const STATE_FILE: &str = "/run/pipelock-containment/watch.json";
/// The unit that runs `pipelock-containment watch`.
pub const UNIT: &str = "pipelock-containment-watch.service";

/// A line of `nft monitor tables` that says our table went (a delete, or a flush of everything).
pub fn deletes_our_table(line: &str) -> bool {
    let ours = format!(
        "delete table {} {}",
        paths::NFT_TABLE_FAMILY,
        paths::NFT_TABLE
    );
    let line = line.trim();
    line == ours || line.starts_with(&format!("{ours} ")) || line == "flush ruleset"
}

/// What the watcher has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchState {
    /// Times the table was found missing and loaded again.
    pub restores: u64,
    /// The last restore: when (UTC, RFC 3339) and how long after the deletion was seen.
    pub last_restore: Option<String>,
    pub last_restore_ms: Option<u64>,
    /// The last failure to restore, if the last attempt failed.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_tables_deletion_counts() {
        assert!(deletes_our_table("delete table inet pipelock_containment"));
        assert!(deletes_our_table(
            "delete table inet pipelock_containment # handle 7\n"
        ));
        assert!(deletes_our_table("flush ruleset"));
        assert!(!deletes_our_table("delete table inet filter"));
        assert!(!deletes_our_table("add table inet pipelock_containment"));
        assert!(!deletes_our_table(
            "delete table inet pipelock_containment_other"
        ));
    }
}
