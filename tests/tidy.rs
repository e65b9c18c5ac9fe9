//! Tidy test: modules outside `src/host/` do no I/O, run nothing and never import the host layer or the commands.
//!
//! The pure core (config, facts, plan, render, verdicts) is what the unit tests cover without
//! root; this test fails when one of its files gains a file, process, socket or syscall call,
//! or an import that points up at `host` or `commands`. Test modules (last in each file, as
//! clippy's items_after_test_module keeps them) may use the file system for fixtures.

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
    "crate::host",
    "crate::commands",
    "nix::",
    "libc::",
];

/// The layers above the pure core: the host layer, the commands, the entry points.
fn is_pure(relative: &Path) -> bool {
    let text = relative.to_string_lossy();
    !(text.starts_with("host/")
        || text.starts_with("commands")
        || text.starts_with("bin/")
        || text == "main.rs"
        || text == "lib.rs")
}

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
                problems.push(format!("src/{}:{}: {token}", relative.display(), n + 1));
            }
        }
    }
    problems
}

#[test]
fn pure_modules_do_no_io_and_import_nothing_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        if !is_pure(relative) {
            continue;
        }
        checked += 1;
        problems.extend(problems_in(
            relative,
            &std::fs::read_to_string(file).unwrap(),
        ));
    }
    assert!(
        checked >= 20,
        "only {checked} pure modules found below {src:?}"
    );
    assert!(
        problems.is_empty(),
        "pure modules must leave I/O to src/host/ (ARCHITECTURE.md, Invariants):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_tidy_check_catches_io_and_upward_imports() {
    let bad = "use std::fs;\nfn f() { let _ = crate::host::fs::read_config; }\n";
    assert_eq!(problems_in(Path::new("plan.rs"), bad).len(), 2);
    // Names that merely contain a token, comments and test modules do not count.
    let fine = "use std::os::unix::ffi::OsStrExt; // std::fs here is a comment\n\
                #[cfg(test)]\nmod tests { use std::fs; }\n";
    assert!(problems_in(Path::new("plan.rs"), fine).is_empty());
    assert!(!is_pure(Path::new("host/apply.rs")));
    assert!(is_pure(Path::new("verify.rs")));
}
