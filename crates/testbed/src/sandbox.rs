//! The throwaway copy of the host root tests run in (`sandbox.sh`: new mount, network and PID
//! namespaces; overlays over /etc, /usr and /var), and the test internet inside it.

use std::path::PathBuf;
use std::process::Command;

/// Shell text that defines `test_internet LOCAL [REMOTE]`: a veth pair in the sandbox's own
/// network namespace, `verify0` with the address LOCAL and `verify1` with REMOTE (both
/// optional, documentation addresses such as 192.0.2.10/24), both up. It gives the probes a
/// route, and a server bound to REMOTE a place that is not loopback. Prepend it to a script.
pub const TEST_INTERNET: &str = r#"
test_internet() {
    ip link add verify0 type veth peer name verify1
    [ -z "${1:-}" ] || ip addr add "$1" dev verify0
    [ -z "${2:-}" ] || ip addr add "$2" dev verify1
    ip link set verify1 up
    ip link set verify0 up
}
"#;

/// What a sandbox script printed, and whether it succeeded.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// One sandbox: its overlay layers live in a work directory removed on drop.
pub struct Sandbox {
    work: PathBuf,
    binary: PathBuf,
    prelude: String,
}

impl Sandbox {
    /// A sandbox in which `binary` is installed as /usr/bin/pipelock-containment.
    pub fn new(tag: &str, binary: &str) -> Sandbox {
        let work = std::env::temp_dir().join(format!("sandbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        Sandbox {
            work,
            binary: binary.into(),
            prelude: TEST_INTERNET.to_string(),
        }
    }

    /// Shell text run before every script of this sandbox (helper functions), after
    /// `TEST_INTERNET`.
    pub fn with_prelude(mut self, prelude: &str) -> Sandbox {
        self.prelude.push_str(prelude);
        self
    }

    /// The script that builds the sandbox.
    pub fn script_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sandbox.sh")
    }

    pub fn output(&self, script: &str) -> Output {
        let output = Command::new("sh")
            .arg(Self::script_path())
            .arg(&self.work)
            .arg(&self.binary)
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
