//! Shared by the integration tests that drive the real shared library from C and Python.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/` of this build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Builds `libweft.so` (release profile, as shipped) in its own target directory — `cargo
/// test` does not produce the cdylib itself and holds the lock on the main one — and returns
/// the directory that contains it. Built once per test binary.
pub fn cdylib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("cdylib");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--lib", "--quiet"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(root())
            .status()
            .expect("run cargo build for the cdylib");
        assert!(status.success(), "building libweft.so failed");
        let dir = target.join("release");
        assert!(dir.join("libweft.so").exists(), "libweft.so missing in {}", dir.display());
        dir
    })
}
