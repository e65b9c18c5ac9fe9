//! Tidy test: the pure core does no I/O, and the crates depend on each other only downwards.
//!
//! The pure core (`crates/policy`: config, facts, plan, render, verdicts) is what the unit tests
//! cover without root; this test fails when one of its files gains a file, process, socket or
//! syscall call, or when a crate gains a dependency that points the wrong way (the core on the
//! host layer or on a host library, the host layer on the CLI). Test modules (last in each file,
//! as clippy's items_after_test_module keeps them) may use the file system for fixtures.

use std::path::{Path, PathBuf};

/// What only the host layer may use.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::os::unix::net",
    "std::env::var",
    "File::open",
    "File::create",
    "pipelock_host",
    "nix::",
    "libc::",
];

/// Dependencies each crate must not have: the arrows that would point up or into the host.
const FORBIDDEN_DEPENDENCIES: &[(&str, &[&str])] = &[
    (
        "pipelock-policy",
        &[
            "pipelock-host",
            "pipelock-containment",
            "nix",
            "libc",
            "acl-sys",
            "posix-acl",
            "tempfile",
            "clap",
        ],
    ),
    ("pipelock-host", &["pipelock-containment", "clap"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `line` uses `token` as a path (not as part of a longer name such as `unix::`).
fn uses(line: &str, token: &str) -> bool {
    line.match_indices(token).any(|(at, _)| {
        at == 0
            || !line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn problems_in(relative: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start() == "#[cfg(test)]" {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        for token in FORBIDDEN {
            if uses(code, token) {
                problems.push(format!("{}:{}: {token}", relative.display(), n + 1));
            }
        }
    }
    problems
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn pure_modules_do_no_io_and_import_nothing_above_them() {
    let root = workspace_root();
    let src = root.join("crates/policy/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        problems.extend(problems_in(
            relative,
            &std::fs::read_to_string(file).unwrap(),
        ));
    }
    assert!(
        files.len() >= 20,
        "only {} pure modules found below {src:?}",
        files.len()
    );
    assert!(
        problems.is_empty(),
        "the pure core must leave I/O to crates/host (ARCHITECTURE.md, Invariants):\n{}",
        problems.join("\n")
    );
}

/// `[dependencies]` of each workspace crate, from `cargo metadata` (dev-dependencies excluded).
fn normal_dependencies() -> Vec<(String, Vec<String>)> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (package["name"].as_str().unwrap().to_string(), dependencies)
        })
        .collect()
}

fn dependency_problems(crates: &[(String, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, forbidden) in FORBIDDEN_DEPENDENCIES {
        let Some((_, dependencies)) = crates.iter().find(|(n, _)| n == name) else {
            problems.push(format!("{name}: not in the workspace"));
            continue;
        };
        for dependency in dependencies {
            if forbidden.contains(&dependency.as_str()) {
                problems.push(format!("{name} depends on {dependency}"));
            }
        }
    }
    problems
}

#[test]
fn crates_depend_only_downwards() {
    let problems = dependency_problems(&normal_dependencies());
    assert!(
        problems.is_empty(),
        "a crate dependency points the wrong way (ARCHITECTURE.md, Invariants):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_tidy_check_catches_io_and_upward_imports() {
    let bad = "use std::fs;\nfn f() { let _ = pipelock_host::fs::read_config; }\n";
    assert_eq!(problems_in(Path::new("plan.rs"), bad).len(), 2);
    // Names that merely contain a token, comments and test modules do not count.
    let fine = "use std::os::unix::ffi::OsStrExt; // std::fs here is a comment\n\
                #[cfg(test)]\nmod tests { use std::fs; }\n";
    assert!(problems_in(Path::new("plan.rs"), fine).is_empty());
    let upward = [
        ("pipelock-policy".to_string(), vec!["nix".to_string()]),
        (
            "pipelock-host".to_string(),
            vec!["pipelock-containment".to_string()],
        ),
    ];
    assert_eq!(dependency_problems(&upward).len(), 2);
}
