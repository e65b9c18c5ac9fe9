//! A private launch sandbox (mount + network namespaces, overlays, real accounts in the overlay), shared by tests/launch.rs and `cargo xtask bench-launch`.
//!
//! The accounts exist only in the sandbox's /etc overlay: agent `cc-agent` 61234, proxy
//! `pipelock-proxy` 61235, operator `launch-op` 61236 (in `pipelock-operators`), non-member
//! `launch-nm` 61238. `sandbox-setup.sh` beside this file does the setup inside the namespaces.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const AGENT_UID: u32 = 61234;
pub const OPERATOR_UID: u32 = 61236;
pub const NON_MEMBER_UID: u32 = 61238;
pub const WRAPPERS: &str = "/var/lib/pipelock-containment/wrappers";
pub const AGENT_EXEC: &str = "/usr/libexec/pipelock-containment/agent-exec";
pub const PYTHON: &str = "/usr/bin/python3";

/// Start `unshare FLAGS -- sh -c 'echo $$; exec CMD'`, read the inner PID, then wait for
/// `ready_lines` more lines.
fn start_namespace(flags: &[&str], cmd: &str, ready_lines: usize) -> (Child, u32) {
    let mut child = Command::new("unshare")
        .args(flags)
        .args(["--fork", "--kill-child", "--", "sh", "-c"])
        .arg(format!("echo $$; exec {cmd}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let pid = line.trim().parse().expect("unshare printed the PID");
    for _ in 0..ready_lines {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    (child, pid)
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub pid: u32,
    assets: PathBuf,
    holders: Vec<Child>,
    proxy: Option<Child>,
}

impl Sandbox {
    /// Set up a sandbox; `repo` is the project root, `helper` and `agent_exec` the binaries to install.
    pub fn new(name: &str, repo: &Path, helper: &Path, agent_exec: &Path) -> Sandbox {
        let assets = repo.join("tests/launch");
        let dir = std::env::temp_dir().join(format!("launch-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (inet, inet_pid) = start_namespace(
            &["--net"],
            &format!("{PYTHON} {}/listener.py :: 80", assets.display()),
            1,
        );
        let (sandbox, pid) = start_namespace(&["--mount", "--net"], "sleep 3600", 0);
        let mut sandbox = Sandbox {
            dir,
            pid,
            assets,
            holders: vec![sandbox, inet],
            proxy: None,
        };
        let setup = sandbox.enter(&[
            "sh",
            &format!("{}/sandbox-setup.sh", sandbox.assets.display()),
            sandbox.dir.to_str().unwrap(),
            helper.to_str().unwrap(),
            agent_exec.to_str().unwrap(),
            &inet_pid.to_string(),
        ]);
        assert_ok(&setup, "sandbox setup");
        // Listeners that must stay out of the agent's reach.
        let others =
            sandbox.spawn_listener(&["127.0.0.1", "9999", "::1", "9999", "127.0.0.2", "9999"]);
        sandbox.holders.push(others);
        sandbox
    }

    pub fn enter(&self, argv: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter runs")
    }

    pub fn sh(&self, script: &str) -> Output {
        self.enter(&["sh", "-c", script])
    }

    pub fn spawn_listener(&self, args: &[&str]) -> Child {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--", PYTHON])
            .arg(self.assets.join("listener.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "listener {args:?} did not start");
        child
    }

    pub fn start_proxy(&mut self) {
        self.proxy = Some(self.spawn_listener(&["--proxy", "127.0.0.1", "8888"]));
    }

    pub fn stop_proxy(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
    }

    pub fn load_rule(&self) {
        let dir = self.dir.display();
        assert_ok(
            &self.sh(&format!("nft -f {dir}/rules.nft")),
            "loading the rule",
        );
    }

    pub fn delete_table(&self) {
        assert_ok(
            &self.sh("nft delete table inet pipelock_containment"),
            "deleting the table",
        );
    }

    pub fn work(&self) -> String {
        format!("{}/work", self.dir.display())
    }

    /// Run a command line as the agent, directly (no sudo), from the shared work directory.
    pub fn as_agent(&self, command: &str) -> Output {
        self.sh(&format!(
            "cd {} && setpriv --reuid {AGENT_UID} --regid {AGENT_UID} --clear-groups {command}",
            self.work()
        ))
    }

    /// Run a shell command line as a login user whose PATH starts with the wrapper directory,
    /// with an operator's environment full of secrets. The process limit stops a wrapper that
    /// would call itself.
    pub fn as_user(&self, uid: u32, command: &str) -> Output {
        self.sh(&format!(
            "cd {work} && prlimit --nproc=256 setpriv --reuid {uid} --regid {uid} --init-groups \
             /usr/bin/env -i HOME={dir}/home PATH={WRAPPERS}:/usr/bin:/bin TERM=xterm-256color \
             COLORTERM=truecolor LANG=C.UTF-8 LC_TIME=C.UTF-8 SSH_AUTH_SOCK=/tmp/ssh-x/agent.1 \
             AWS_SECRET_ACCESS_KEY=aws-secret AWS_PROFILE=prod GITHUB_TOKEN=ghp_secret \
             LD_PRELOAD=/nonexistent.so PIPELOCK_CONTAINMENT_CONFIG={dir}/evil.toml \
             HTTPS_PROXY=http://192.0.2.1:3128 /bin/sh -c '{command}'",
            work = self.work(),
            dir = self.dir.display(),
            command = command.replace('\'', "'\\''"),
        ))
    }

    pub fn marker(&self) -> String {
        format!("{}/ran", self.work())
    }

    pub fn marker_exists(&self) -> bool {
        self.sh(&format!("test -e {}", self.marker()))
            .status
            .success()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_proxy();
        for child in self.holders.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The tmpfs on dir vanished with the namespace; only the empty mount point is left.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

pub fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(output)
    );
}

pub fn assert_refused(output: &Output, code: i32, message: &str, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: wrong exit code: {}",
        describe(output)
    );
    assert!(
        text(&output.stderr).contains(message),
        "{what}: message lacks {message:?}: {}",
        describe(output)
    );
    assert!(
        output.stdout.is_empty(),
        "{what}: something ran: {}",
        describe(output)
    );
}
