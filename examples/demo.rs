//! Builds and runs the C demo: `cargo run --release --example demo`.
//!
//! Builds `libweft.so` (release), compiles `examples/demo.c` against `include/weft.h` with the
//! system C compiler (found by the `cc` crate, honouring `CC` and `CFLAGS`), links it to the
//! library with an rpath, runs it, and exits with its status. Linux only, like weft itself.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, ExitCode};

/// The target triple of this build. Outside a build script cargo does not say, so it is
/// assembled from what this binary was compiled for.
fn target_triple() -> String {
    let arch = std::env::consts::ARCH;
    let env = if cfg!(target_env = "musl") { "musl" } else { "gnu" };
    format!("{arch}-unknown-linux-{env}")
}

/// Compiles `source` into the executable `exe`, linked against `libweft.so` in `lib_dir`.
fn compile(source: &Path, exe: &Path, lib_dir: &Path) -> Result<(), String> {
    let triple = target_triple();
    let compiler = cc::Build::new()
        .target(&triple)
        .host(&triple)
        .opt_level(2)
        .debug(false)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .emit_rerun_if_env_changed(false)
        // The warning flags are spelled out below, so that they are there whatever cc's
        // defaults become.
        .warnings(false)
        .extra_warnings(false)
        .try_get_compiler()
        .map_err(|e| format!("no C compiler found: {e}"))?;
    let include = common::root().join("include");
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", include.display()))
        .arg(source)
        .arg("-o")
        .arg(exe)
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lweft")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    let status = cmd.status().map_err(|e| format!("cannot run {:?}: {e}", compiler.path()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("compiling {} failed ({status})", source.display()))
    }
}

fn main() -> ExitCode {
    let lib_dir = common::cdylib_dir();
    let source = common::root().join("examples").join("demo.c");
    let out_dir = common::target_dir().join("examples-c");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("demo: cannot create {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let exe = out_dir.join("demo");
    if let Err(e) = compile(&source, &exe, lib_dir) {
        eprintln!("demo: {e}");
        return ExitCode::FAILURE;
    }
    // The demo inherits stdout and stderr, so its output goes straight through.
    // `cargo run` sets LD_LIBRARY_PATH to its own target directories, which would outrank the
    // rpath and could load a stale libweft.so from an earlier build.
    let status = match Command::new(&exe).env_remove("LD_LIBRARY_PATH").status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: cannot run {}: {e}", exe.display());
            return ExitCode::FAILURE;
        }
    };
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let sig = status.signal().unwrap_or(0);
            eprintln!("demo: {} was killed by signal {sig}", exe.display());
            ExitCode::from(128u8.saturating_add(u8::try_from(sig).unwrap_or(0)))
        }
    }
}
