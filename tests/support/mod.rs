//! Shared by the root tests: runs a shell script as root in `sandbox.sh`, a throwaway copy of
//! the host (new mount, network and PID namespaces; overlays over /etc, /usr and /var).

// Each test crate uses only part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_pipelock-containment");

/// What a sandbox script printed, and whether it succeeded.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// One sandbox: its overlay layers live in a work directory removed on drop.
pub struct Sandbox {
    work: PathBuf,
    prelude: &'static str,
}

impl Sandbox {
    pub fn new(tag: &str) -> Sandbox {
        let work = std::env::temp_dir().join(format!("sandbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        Sandbox { work, prelude: "" }
    }

    /// Shell text run before every script of this sandbox (helper functions).
    pub fn with_prelude(mut self, prelude: &'static str) -> Sandbox {
        self.prelude = prelude;
        self
    }

    pub fn output(&self, script: &str) -> Output {
        let support = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sandbox.sh");
        let output = Command::new("sh")
            .arg(&support)
            .arg(&self.work)
            .arg(BINARY)
            .arg(format!("{}\n{script}", self.prelude))
            .output()
            .expect("running the sandbox");
        Output {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Run `script`; returns (success, stdout followed by stderr).
    pub fn run(&self, script: &str) -> (bool, String) {
        let output = self.output(script);
        (output.ok, format!("{}{}", output.stdout, output.stderr))
    }

    /// Run `script`, which must succeed; returns stdout followed by stderr.
    pub fn must(&self, script: &str) -> String {
        let (ok, text) = self.run(script);
        assert!(ok, "sandbox script failed:\n{text}");
        text
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Whether `tool` is on PATH or in an sbin directory.
pub fn have(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|dir| PathBuf::from(dir).join(tool).is_file());
    found
}
