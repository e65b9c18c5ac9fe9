//! Build script: lets the link against libacl work on hosts with the runtime library only.
//!
//! `posix-acl` links `-lacl`, which needs the development symlink `libacl.so` (Debian
//! `libacl1-dev`, Fedora `libacl-devel`). Package builds have it through Build-Depends. Where
//! only the runtime `libacl.so.1` is installed, this points the linker at a symlink to it in
//! OUT_DIR; the binary then depends on `libacl.so.1` exactly as with the development package.

use std::path::{Path, PathBuf};

const LIB_DIRS: &[&str] = &[
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let dirs: Vec<&Path> = LIB_DIRS.iter().map(Path::new).collect();
    if dirs.iter().any(|dir| dir.join("libacl.so").exists()) {
        return;
    }
    let Some(runtime) = dirs
        .iter()
        .map(|dir| dir.join("libacl.so.1"))
        .find(|path| path.exists())
    else {
        println!(
            "cargo:warning=libacl not found: install libacl1-dev (Debian) or libacl-devel (Fedora)"
        );
        return;
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let link = out.join("libacl.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&runtime, &link).expect("symlink libacl.so in OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out.display());
}
