//! Root integration tests of the launch path: agent-exec, cc-launch, wrappers and sudoers, in a private sandbox.
//!
//! Each test builds its own sandbox (tests/launch/sandbox.rs and sandbox-setup.sh): a private
//! mount and network namespace with overlays over /etc, /var/lib and /usr/libexec, real
//! accounts that exist only in the overlay, the rendered rule file, sudoers drop-in, wrappers
//! and agent-exec installed at their real paths, and a veth to an "internet" namespace holding
//! 192.0.2.1 and 2001:db8::1. Nothing on the host changes. Without root they print SKIPPED.

#[path = "launch/sandbox.rs"]
mod sandbox;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sandbox::*;

fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        // Straight to the stderr handle: the test harness hides eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: needs root (namespaces, overlays, nft, sudo)"
        );
    }
    root
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/launch")
}

fn new_sandbox(name: &str) -> Sandbox {
    Sandbox::new(
        name,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        Path::new(env!("CARGO_BIN_EXE_pipelock-containment")),
        Path::new(env!("CARGO_BIN_EXE_agent-exec")),
    )
}

fn parse_env(output: &Output) -> BTreeMap<String, String> {
    text(&output.stdout)
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn expected_env(passed: &[(&str, &str)]) -> BTreeMap<String, String> {
    let proxy = "http://127.0.0.1:8888";
    let bundle = "/etc/pipelock/combined-ca.pem";
    let mut env: BTreeMap<String, String> = [
        ("HOME", "/var/lib/cc-agent"),
        ("USER", "cc-agent"),
        ("LOGNAME", "cc-agent"),
        (
            "PATH",
            "/var/lib/cc-agent/.local/bin:/usr/local/bin:/usr/bin:/bin",
        ),
        ("HTTP_PROXY", proxy),
        ("HTTPS_PROXY", proxy),
        ("ALL_PROXY", proxy),
        ("http_proxy", proxy),
        ("https_proxy", proxy),
        ("all_proxy", proxy),
        ("NO_PROXY", "127.0.0.1,localhost,::1"),
        ("no_proxy", "127.0.0.1,localhost,::1"),
        ("SSL_CERT_FILE", bundle),
        ("REQUESTS_CA_BUNDLE", bundle),
        ("CURL_CA_BUNDLE", bundle),
        ("GIT_SSL_CAINFO", bundle),
        ("CARGO_HTTP_CAINFO", bundle),
        ("PIP_CERT", bundle),
        ("NODE_EXTRA_CA_CERTS", "/etc/pipelock/ca.pem"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in passed {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// Run escape.py as given and return every attempt that got through.
fn escapes(output: &Output) -> Vec<String> {
    let out = text(&output.stdout);
    assert!(
        out.lines().count() >= 13,
        "escape.py did not run every attempt: {}",
        describe(output)
    );
    out.lines()
        .filter(|line| line.ends_with(" open"))
        .map(str::to_string)
        .collect()
}

#[test]
fn agent_exec_runs_only_allowed_tools_and_only_when_contained() {
    if !root_or_skip("agent_exec_runs_only_allowed_tools_and_only_when_contained") {
        return;
    }
    let mut sandbox = new_sandbox("exec");
    let touch = format!("{AGENT_EXEC} sh -c 'touch {}; echo ran'", sandbox.marker());
    let escape = format!("{PYTHON} {}/escape.py", assets().display());

    // Control: without the rule, the agent gets out. Proves the escape test can fail.
    let open = escapes(&sandbox.as_agent(&escape));
    assert!(
        open.contains(&"tcp-internet-v4 open".to_string())
            && open.contains(&"tcp-loopback-other-port open".to_string()),
        "control failed: without the rule the agent should reach 192.0.2.1 and 127.0.0.1:9999, got {open:?}"
    );

    // No rule: refused, nothing runs (even with the proxy up).
    sandbox.start_proxy();
    let out = sandbox.as_agent(&touch);
    assert_refused(
        &out,
        125,
        "systemctl start pipelock-containment",
        "without the table",
    );
    assert!(!sandbox.marker_exists(), "the tool ran without the rule");

    // Rule but no proxy: refused, nothing runs.
    sandbox.load_rule();
    sandbox.stop_proxy();
    let out = sandbox.as_agent(&touch);
    assert_refused(
        &out,
        125,
        "systemctl start pipelock-proxy",
        "without the proxy",
    );
    assert!(!sandbox.marker_exists(), "the tool ran without the proxy");

    // Contained: the allowed tool runs as the agent with exactly the documented environment.
    sandbox.start_proxy();
    let out = sandbox.as_agent(&format!(
        "env -i TERM=dumb GITHUB_TOKEN=x SSH_AUTH_SOCK=/tmp/s AWS_SECRET_ACCESS_KEY=y \
         LC_ALL=C.UTF-8 {AGENT_EXEC} env"
    ));
    assert_ok(&out, "env through agent-exec");
    assert_eq!(
        parse_env(&out),
        expected_env(&[("TERM", "dumb"), ("LC_ALL", "C.UTF-8")])
    );
    let out = sandbox.as_agent(&format!("{AGENT_EXEC} id -u"));
    assert_ok(&out, "id through agent-exec");
    assert_eq!(text(&out.stdout).trim(), AGENT_UID.to_string());
    let out = sandbox.as_agent(&format!("{AGENT_EXEC} standin a b"));
    assert_ok(&out, "a tool in the agent's ~/.local/bin");
    assert_eq!(text(&out.stdout).trim(), "standin uid=61234 args=a b");
    assert_ok(
        &sandbox.as_agent(&format!("{AGENT_EXEC} /usr/bin/true")),
        "an absolute path the config lists",
    );
    // Exit codes propagate (exec, not a child).
    let out = sandbox.as_agent(&format!("{AGENT_EXEC} sh -c 'exit 42'"));
    assert_eq!(out.status.code(), Some(42), "{}", describe(&out));

    // Refusals: not allowed, bad names, not found, a wrapper never resolves, a closed cwd.
    assert_refused(
        &sandbox.as_agent(&format!("{AGENT_EXEC} bash -c 'echo ran'")),
        126,
        "pipelock-containment tools add bash",
        "a tool off the allow-list",
    );
    for bad in ["/usr/bin/env", "./env", "../bin/env", "env;id"] {
        assert_refused(
            &sandbox.as_agent(&format!("{AGENT_EXEC} '{bad}'")),
            126,
            "not a valid tool name",
            bad,
        );
    }
    assert_refused(
        &sandbox.as_agent(&format!("{AGENT_EXEC} selfcall")),
        127,
        "not installed for the agent",
        "a tool that only exists as a wrapper",
    );
    assert_ok(
        &sandbox.sh(&format!(
            "ln -s {WRAPPERS}/selfcall /var/lib/cc-agent/.local/bin/selfcall"
        )),
        "symlink",
    );
    assert_refused(
        &sandbox.as_agent(&format!("{AGENT_EXEC} selfcall")),
        127,
        "not installed for the agent",
        "a symlink into the wrapper directory",
    );
    let private = format!("{}/home/launch-op/private", sandbox.dir.display());
    assert_refused(
        &sandbox.sh(&format!(
            "cd {private} && setpriv --reuid {AGENT_UID} --regid {AGENT_UID} --clear-groups \
             {AGENT_EXEC} id"
        )),
        77,
        &format!("pipelock-containment grant {private}"),
        "a directory the agent cannot enter",
    );
    // Only the agent may run it.
    assert_refused(
        &sandbox.sh(&format!(
            "cd {} && setpriv --reuid {OPERATOR_UID} --regid {OPERATOR_UID} --clear-groups \
             {AGENT_EXEC} id",
            sandbox.work()
        )),
        77,
        "runs as the agent user",
        "agent-exec as an operator",
    );

    // Try to break out, as the agent directly and as a tool started by agent-exec.
    let open = escapes(&sandbox.as_agent(&escape));
    assert!(open.is_empty(), "the agent got out: {open:?}");
    let open = escapes(&sandbox.as_agent(&format!(
        "{AGENT_EXEC} python3 {}/escape.py",
        assets().display()
    )));
    assert!(open.is_empty(), "a launched tool got out: {open:?}");
    // Control as root: the same attempts get through, so "blocked" above is the rule's doing.
    let open = escapes(&sandbox.sh(&escape));
    assert!(
        open.contains(&"tcp-internet-v6 open".to_string()),
        "control failed: root should reach [2001:db8::1]:80, got {open:?}"
    );

    // The table deleted: refused again, nothing runs.
    sandbox.delete_table();
    assert_refused(
        &sandbox.as_agent(&touch),
        125,
        "not in force",
        "after deleting the table",
    );
    assert!(
        !sandbox.marker_exists(),
        "the tool ran after the table went"
    );
}

#[test]
fn cc_launch_goes_through_sudo_for_operators_only() {
    if !root_or_skip("cc_launch_goes_through_sudo_for_operators_only") {
        return;
    }
    let mut sandbox = new_sandbox("sudo");
    // A config the operator would like agent-exec to read instead: allows everything.
    assert_ok(
        &sandbox.sh(&format!(
            "sed 's/^wrap = .*/wrap = [\"bash\", \"sh\", \"env\"]/' \
             /etc/pipelock-containment/containment.toml > {}/evil.toml",
            sandbox.dir.display()
        )),
        "evil config",
    );
    sandbox.load_rule();
    sandbox.start_proxy();
    let op = |command: &str| sandbox.as_user(OPERATOR_UID, command);

    // The wrapper: runs as the agent, exactly the documented environment, no secrets.
    let out = op("env");
    assert_ok(&out, "the env wrapper");
    assert_eq!(
        parse_env(&out),
        expected_env(&[
            ("TERM", "xterm-256color"),
            ("COLORTERM", "truecolor"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "C.UTF-8"),
        ])
    );
    let out = op("cc-launch id -u");
    assert_ok(&out, "cc-launch id");
    assert_eq!(text(&out.stdout).trim(), AGENT_UID.to_string());
    // The `id` wrapper sits first on PATH; cc-launch itself must not call it.
    let out = op("id -u");
    assert_ok(&out, "the id wrapper");
    assert_eq!(text(&out.stdout).trim(), AGENT_UID.to_string());

    // Everything but the proxy is closed to a tool an operator launched.
    let out = op(&format!(
        "cc-launch python3 {}/escape.py",
        assets().display()
    ));
    let open = escapes(&out);
    assert!(
        open.is_empty(),
        "a tool launched by cc-launch got out: {open:?}"
    );

    // Through the proxy the tool reaches the "internet"; around it, it fails at once.
    let out = op("cc-launch curl -sS --max-time 5 http://192.0.2.1/");
    assert_ok(&out, "curl through the proxy");
    assert_eq!(text(&out.stdout), "hello\n");
    // Rejected, not dropped: curl's own clock says it failed at once (a drop would take 5 s).
    let out = op(
        "cc-launch curl -sS --max-time 5 -w 'time=%{time_total}' --noproxy '*' \
                  http://192.0.2.1/",
    );
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let took: f64 = text(&out.stdout)
        .trim()
        .strip_prefix("time=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time: {}", describe(&out)));
    assert!(took < 1.0, "curl around the proxy took {took} s");

    // A terminal: the tool sees one (sudo keeps it), as an interactive tool needs.
    let out =
        op("script -qec \"cc-launch sh -c 'test -t 0 && test -t 1 && echo tty-ok'\" /dev/null");
    assert!(
        text(&out.stdout).contains("tty-ok"),
        "no terminal for the tool: {}",
        describe(&out)
    );

    // Ctrl-C on the terminal ends the tool (and cc-launch with it) at once.
    let out = op(&format!(
        "{PYTHON} {}/ctrl_c.py cc-launch sh -c 'echo started; sleep 30'",
        assets().display()
    ));
    let report = text(&out.stdout);
    let took: f64 = report
        .split("took=")
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("ctrl_c.py: {}", describe(&out)));
    assert!(
        took < 5.0 && (report.contains("signal=2 ") || report.contains("code=130 ")),
        "Ctrl-C did not end the tool: {}",
        describe(&out)
    );

    // Exit codes, signals and pipes.
    assert_eq!(op("sh -c 'exit 42'").status.code(), Some(42));
    let out = op("cc-launch sh -c 'kill -TERM $$'; echo status=$?");
    assert!(
        text(&out.stdout).contains("status=143"),
        "SIGTERM did not propagate: {}",
        describe(&out)
    );
    let out = op("echo through-the-pipe | cat | cc-launch cat");
    assert_eq!(
        text(&out.stdout).trim(),
        "through-the-pipe",
        "{}",
        describe(&out)
    );

    // Refusals through the whole chain.
    let touch = format!("sh -c 'touch {}'", sandbox.marker());
    assert_refused(
        &op("cc-launch bash -c 'echo ran'"),
        126,
        "pipelock-containment tools add bash",
        "an operator's tool off the allow-list (and PIPELOCK_CONTAINMENT_CONFIG ignored)",
    );
    assert_refused(
        &sandbox.as_user(NON_MEMBER_UID, &format!("cc-launch {touch}")),
        77,
        "is not a member of the group pipelock-operators",
        "a non-member",
    );
    assert!(!sandbox.marker_exists(), "a non-member's tool ran");
    assert_refused(&op("cc-launch"), 64, "usage: cc-launch", "no tool");

    // The grant is agent-exec and nothing else.
    for attempt in [
        "sudo -n -u cc-agent -- /bin/sh -c 'echo ran'",
        "sudo -n -u cc-agent -- /usr/bin/id",
        "sudo -n -u root -- /usr/libexec/pipelock-containment/agent-exec id",
        "sudo -n -u pipelock-proxy -- /usr/libexec/pipelock-containment/agent-exec id",
    ] {
        let out = op(attempt);
        assert_ne!(out.status.code(), Some(0), "{attempt} was allowed");
        assert!(out.stdout.is_empty(), "{attempt} ran: {}", describe(&out));
    }

    // A member is recognised without starting id(1) (the hot path): break id and launch.
    assert_ok(
        &sandbox.sh("mount --bind /bin/false /usr/bin/id"),
        "hiding id",
    );
    let out = op("cc-launch sh -c 'echo fast'");
    assert_ok(&out, "a member's launch without id(1)");
    assert_eq!(text(&out.stdout).trim(), "fast");
    assert_ok(&sandbox.sh("umount /usr/bin/id"), "restoring id");

    // The table deleted: cc-launch refuses and nothing runs.
    sandbox.delete_table();
    assert_refused(
        &op(&format!("cc-launch {touch}")),
        125,
        "systemctl start pipelock-containment",
        "cc-launch without the table",
    );
    assert!(!sandbox.marker_exists(), "the tool ran without the table");
}

#[test]
fn rendered_launcher_wrappers_and_sudoers_pass_their_checkers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("containment.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/containment.toml"))
            .unwrap();
    std::fs::write(
        &config,
        shipped.replace("env_passthrough = []", "env_passthrough = [\"EDITOR\"]"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipelock-containment"))
        .arg("render")
        .arg("--config")
        .arg(&config)
        .args(["--agent-uid", "61234", "--proxy-uid", "61235", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_ok(&out, "render");
    let root = dir.path().join("out");
    let sudoers = root.join("etc/sudoers.d/pipelock-containment");
    match Command::new("visudo").arg("-cf").arg(&sudoers).output() {
        Ok(out) => assert_ok(&out, "visudo -cf"),
        Err(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: visudo -cf: visudo is not installed (apt-get install sudo)"
            );
        }
    }
    let wrappers: Vec<PathBuf> = std::fs::read_dir(root.join(&WRAPPERS[1..]))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(wrappers.len(), 4, "cc-launch and three wrappers");
    match Command::new("shellcheck").args(&wrappers).output() {
        Ok(out) => assert_ok(&out, "shellcheck"),
        Err(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: shellcheck: not installed (apt-get install shellcheck)"
            );
        }
    }
    let text = std::fs::read_to_string(&sudoers).unwrap();
    assert!(text.contains(&format!("Cmnd_Alias PIPELOCK_AGENT_EXEC = {AGENT_EXEC}\n")));
    assert!(text.contains("env_keep = \"TERM COLORTERM LANG LANGUAGE LC_* EDITOR\""));
    assert!(text.contains("%pipelock-operators ALL=(cc-agent) NOPASSWD: PIPELOCK_AGENT_EXEC\n"));
}

#[test]
fn tools_add_and_remove_edit_the_config_in_place() {
    if !root_or_skip("tools_add_and_remove_edit_the_config_in_place") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("containment.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/containment.toml"))
            .unwrap();
    std::fs::write(&config, &shipped).unwrap();
    // --no-apply always: apply would install into the real system.
    let tools = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pipelock-containment"))
            .arg("tools")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    assert_ok(&tools(&["add", "aider", "--no-apply"]), "tools add");
    assert_ok(&tools(&["remove", "codex", "--no-apply"]), "tools remove");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        shipped.replace(
            "    \"codex\",\n    \"gemini\",\n]",
            "    \"gemini\",\n    \"aider\",\n]"
        ),
        "comments and layout kept, only the list changed"
    );
    let out = tools(&["list", "--json"]);
    assert_ok(&out, "tools list");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["command"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claude", "gemini", "aider"]);
    // Invalid names never reach the file; non-root may not edit.
    let out = tools(&["add", "../evil", "--no-apply"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pipelock-containment"))
        .args(["tools", "add", "x", "--no-apply", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
}
