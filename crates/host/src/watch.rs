//! `pipelock-containment watch`: follows the ruleset with `nft monitor tables` and loads the
//! containment table again whenever anyone else's flush or delete removes it; a one-second
//! check covers a missed event. Records each restore for verify and the metrics.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::process::run;
use pipelock_policy::paths;
use pipelock_policy::watch::{deletes_our_table, WatchState, STATE_FILE};

fn table_loaded() -> bool {
    run(
        "nft",
        &["list", "table", paths::NFT_TABLE_FAMILY, paths::NFT_TABLE],
    )
    .is_ok_and(|o| o.status.success())
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    pipelock_policy::timefmt::rfc3339(secs)
}

fn save(state: &WatchState) {
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    let path = camino::Utf8Path::new(STATE_FILE);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(err) = crate::fs::write_atomic(path, text.as_bytes(), (0, 0), 0o644) {
        eprintln!("pipelock-containment watch: cannot record to {STATE_FILE}: {err:#}");
    }
}

/// The last state the watcher recorded (none when it has not run since boot).
pub fn read_state() -> Option<WatchState> {
    let text = std::fs::read_to_string(STATE_FILE).ok()?;
    serde_json::from_str(&text).ok()
}

/// Load the table if it is missing and the rule file exists; `seen` is when the loss was seen.
fn restore_if_missing(state: &mut WatchState, seen: Instant) {
    if table_loaded() || !camino::Utf8Path::new(paths::RULE_FILE).exists() {
        return;
    }
    match run("nft", &["-f", paths::RULE_FILE]) {
        Ok(out) if out.status.success() => {
            let ms = seen.elapsed().as_millis() as u64;
            state.restores += 1;
            state.last_restore = Some(now_rfc3339());
            state.last_restore_ms = Some(ms);
            state.last_error = None;
            eprintln!(
                "pipelock-containment watch: the table inet {} was gone (someone else's flush or \
                 delete): loaded it again from {} after {ms} ms ({} restores since start)",
                paths::NFT_TABLE,
                paths::RULE_FILE,
                state.restores
            );
        }
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            eprintln!(
                "pipelock-containment watch: cannot load {}: {err}",
                paths::RULE_FILE
            );
            state.last_error = Some(err);
        }
        Err(err) => {
            eprintln!("pipelock-containment watch: {err:#}");
            state.last_error = Some(format!("{err:#}"));
        }
    }
    save(state);
}

/// Runs until killed (a systemd service).
pub fn watch() -> Result<()> {
    let mut state = WatchState::default();
    save(&state);
    restore_if_missing(&mut state, Instant::now());
    loop {
        let mut child = Command::new("nft")
            .args(["monitor", "tables"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("starting `nft monitor tables`")?;
        let stdout = child.stdout.take().context("no output from nft monitor")?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The monitor is listening from here on: a deletion before it started is caught now.
        restore_if_missing(&mut state, Instant::now());
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) if deletes_our_table(&line) => {
                    restore_if_missing(&mut state, Instant::now());
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    restore_if_missing(&mut state, Instant::now());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("pipelock-containment watch: `nft monitor` ended; starting it again");
        std::thread::sleep(Duration::from_millis(200));
    }
}
