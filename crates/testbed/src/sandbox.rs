//! The throwaway copy of the host root tests run in (`sandbox.sh`: new mount, network and PID
//! namespaces; overlays over /etc, /usr and /var), and the test internet inside it.

use std::path::{Path, PathBuf};
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

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the .deb would put in place, from `pkg/contents.toml`, as `MODE SOURCE DEST` lines for
/// sandbox.sh: every file of every unit, and every file the repository holds. Files that
/// `cargo xtask dist` generates are not there yet; the packaged config is the repository's
/// `pkg/containment.toml`, and the binary is the one under test.
pub fn package_installs() -> String {
    let root = repository();
    let root = camino::Utf8Path::from_path(&root).expect("a UTF-8 checkout path");
    let contents = pipelock_contents::load(root).unwrap_or_else(|err| panic!("{err:#}"));
    let mut lines = String::new();
    for unit in &contents.unit {
        for file in unit.files(root).unwrap_or_else(|err| panic!("{err:#}")) {
            lines.push_str(&format!(
                "644 {}/{file} {}/{file}\n",
                pipelock_contents::UNIT_SOURCE_DIR,
                pipelock_contents::UNIT_DIR
            ));
        }
    }
    for file in &contents.file {
        let source = if file.dest == "/etc/pipelock-containment/containment.toml" {
            "pkg/containment.toml"
        } else {
            file.source.as_str()
        };
        let generated = source.starts_with("target/");
        if generated || file.packager == Some(pipelock_contents::Packager::Rpm) {
            continue;
        }
        lines.push_str(&format!("{} {source} {}\n", file.mode, file.dest));
    }
    lines
}

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
        std::fs::create_dir_all(&self.work).expect("creating the sandbox's work directory");
        let installs = self.work.join("installs");
        std::fs::write(&installs, package_installs()).expect("writing the install list");
        let output = Command::new("sh")
            .arg(Self::script_path())
            .arg(&self.work)
            .arg(&self.binary)
            .arg(format!("{}\n{script}", self.prelude))
            .arg(&installs)
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_sandbox_installs_what_the_contents_table_lists() {
        let installs = super::package_installs();
        for line in [
            "644 systemd/pipelock-containment.service /usr/lib/systemd/system/pipelock-containment.service",
            "644 systemd/pipelock-agents.slice /usr/lib/systemd/system/pipelock-agents.slice",
            "644 pkg/containment.toml /etc/pipelock-containment/containment.toml",
            "755 pkg/ca-certificates-hook/pipelock-containment /etc/ca-certificates/update.d/pipelock-containment",
        ] {
            assert!(installs.lines().any(|l| l == line), "{line} missing:\n{installs}");
        }
        assert!(
            !installs.contains("target/"),
            "generated files listed:\n{installs}"
        );
        assert!(
            !installs.contains("LICENSE"),
            "an .rpm-only file listed:\n{installs}"
        );
    }
}
