//! `blocked --from`: kernel log text (dmesg) and journal JSON read from a file or stdin (no root needed).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pipelock-containment");

const DMESG: &str = "\
[ 8123.100000] eth0: renamed from veth12
[ 8123.456789] pipelock-containment blocked: IN= OUT=eth0 SRC=192.0.2.10 DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=50321 DF PROTO=TCP SPT=41522 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0 UID=998 GID=998 
[ 8124.000001] pipelock-containment blocked: IN= OUT=eth0 SRC=2001:0db8:0000:0000:0000:0000:0000:0010 DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=72 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=UDP SPT=5000 DPT=53 LEN=32 UID=998 GID=998 
";

fn entries(output: &std::process::Output) -> Vec<Value> {
    assert!(output.status.success(), "{output:?}");
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value["entries"].as_array().unwrap().clone()
}

#[test]
fn blocked_reads_dmesg_text_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmesg.txt");
    std::fs::write(&path, DMESG).unwrap();
    let output = Command::new(BIN)
        .args(["blocked", "--json", "--from"])
        .arg(&path)
        .output()
        .unwrap();
    let entries = entries(&output);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["destination"], "192.0.2.1");
    assert_eq!(entries[0]["port"], 443);
    assert_eq!(entries[0]["protocol"], "tcp");
    assert_eq!(entries[0]["uid"], 998);
    assert_eq!(entries[1]["destination"], "2001:db8::1");
    assert_eq!(entries[1]["port"], 53);

    let text = Command::new(BIN)
        .args(["blocked", "--from"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("192.0.2.1") && text.contains("443"), "{text}");
}

#[test]
fn blocked_reads_journal_json_from_stdin() {
    let line = serde_json::json!({
        "MESSAGE": DMESG.lines().nth(1).unwrap().split_once("] ").unwrap().1,
        "__REALTIME_TIMESTAMP": "1796025600000000",
    });
    let mut child = Command::new(BIN)
        .args(["blocked", "--json", "--from", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let entries = entries(&child.wait_with_output().unwrap());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["time"], "2026-11-30T08:00:00Z");
    assert_eq!(entries[0]["port"], 443);
}
