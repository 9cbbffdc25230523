//! The C conformance suite (`ctests/`), built against the real `libweft.so` and run from
//! `cargo test`: once as is, once under AddressSanitizer + UndefinedBehaviorSanitizer.
//!
//! Every `ctests/*.c` file is compiled into one program, `weft_ctests` (tests register
//! themselves with the `TEST()` macro of `ctests/runner.h`), with the C compiler the `cc` crate
//! finds. The task functions of the process tests that must live in a shared library,
//! `ctests/tasklib/*.c`, are built once into `target/ctests/libweft_tasklib.so` (linked
//! against libweft.so, not instrumented, like libweft.so itself), which both programs link
//! against with an rpath. The program runs each test in its own forked child with a timeout and prints TAP;
//! the TAP is streamed to this test's output, and the test fails, quoting the failing lines,
//! when the program exits non-zero. Run one C test by hand with
//! `target/ctests/weft_ctests NAME` (or `--in-process NAME` under a debugger, `--list`).
//!
//! `ctests/scaling/scaling.c` is a separate program (a subdirectory, so the suite's glob leaves
//! it out): it times a CPU-bound task over 1..N thread and process workers. It is built as
//! `target/ctests/weft_scaling` against the same libweft.so, and its `--check` run (a tiny task,
//! every result verified, no timing judged) is a test here.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The Rust target triple of this build, for `cc` (integration tests get no `TARGET`).
fn target_triple() -> String {
    let arch = std::env::consts::ARCH;
    let os = std::env::consts::OS;
    let env = if cfg!(target_env = "musl") { "musl" } else { "gnu" };
    match os {
        "linux" => format!("{arch}-unknown-linux-{env}"),
        "macos" => format!("{arch}-apple-darwin"),
        other => format!("{arch}-unknown-{other}"),
    }
}

/// Every C file of the suite, sorted (the runner and all `test_*.c`, whoever wrote them).
fn c_sources() -> Vec<PathBuf> {
    let dir = common::root().join("ctests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("read ctests entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    files.sort();
    assert!(files.iter().any(|p| p.ends_with("runner.c")), "ctests/runner.c is missing");
    files
}

/// The C files of the task library (`ctests/tasklib/*.c`), sorted.
fn tasklib_sources() -> Vec<PathBuf> {
    let dir = common::root().join("ctests").join("tasklib");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("read ctests/tasklib entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "ctests/tasklib holds no C file");
    files
}

/// A `cc` build configured as every C file of the suite is compiled.
fn c_build(extra_flags: &[&str]) -> cc::Build {
    let triple = target_triple();
    let mut build = cc::Build::new();
    build
        .target(&triple)
        .host(&triple)
        // -O0: compiles two to three times faster, and the tests spend their time inside the
        // (optimised) library and in waits anyway.
        .opt_level(0)
        .debug(true)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .warnings(true)
        .extra_warnings(true);
    for flag in ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"] {
        build.flag(flag);
    }
    for flag in extra_flags {
        build.flag(flag);
    }
    build
}

/// Runs a compiler command; panics with its output when it fails.
fn run_compiler(mut cmd: Command, what: &str) {
    let output = cmd.output().unwrap_or_else(|e| panic!("run the C compiler {:?}: {e}", cmd.get_program()));
    assert!(
        output.status.success(),
        "compiling {what} failed ({}):\n{:?}\n{}{}",
        output.status,
        cmd,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds `target/ctests/libweft_tasklib.so` from `ctests/tasklib/*.c` (once per test binary:
/// both suites link against the same file, which must not change while either runs — the
/// forkserver and spawn start methods check that a task's object is the one the parent saw)
/// and returns the directory holding it.
fn build_tasklib() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib_dir = common::cdylib_dir();
        let out_dir = common::target_dir().join("ctests");
        std::fs::create_dir_all(&out_dir).expect("create target/ctests");
        let lib = out_dir.join("libweft_tasklib.so");
        // Built under a temporary name and renamed into place, so that a program still running
        // from an earlier build keeps its (unchanged) file.
        let tmp = out_dir.join(format!("libweft_tasklib.so.tmp{}", std::process::id()));
        let compiler = c_build(&[]).get_compiler();
        let mut cmd = compiler.to_command();
        cmd.args(["-fPIC", "-shared"]);
        cmd.arg("-I").arg(common::root().join("include"));
        cmd.arg("-I").arg(common::root().join("ctests").join("tasklib"));
        cmd.args(tasklib_sources());
        cmd.arg("-o").arg(&tmp);
        cmd.arg("-L").arg(lib_dir).arg("-lweft");
        cmd.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
        run_compiler(cmd, "the C task library");
        std::fs::rename(&tmp, &lib).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), lib.display()));
        out_dir
    })
}

/// Compiles and links the whole suite into `target/ctests/<name>` against libweft.so and the
/// task library.
fn build_suite(name: &str, extra_flags: &[&str]) -> PathBuf {
    let lib_dir = common::cdylib_dir();
    let tasklib_dir = build_tasklib();
    let exe = tasklib_dir.join(name);

    let compiler = c_build(extra_flags).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.arg("-I").arg(common::root().join("include"));
    cmd.arg("-I").arg(common::root().join("ctests"));
    cmd.args(c_sources());
    cmd.arg("-o").arg(&exe);
    cmd.arg("-L").arg(tasklib_dir).arg("-lweft_tasklib");
    cmd.arg(format!("-Wl,-rpath,{}", tasklib_dir.display()));
    cmd.arg("-L").arg(lib_dir).arg("-lweft");
    cmd.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    run_compiler(cmd, "the C suite");
    exe
}

/// Compiles the standalone scaling program `ctests/scaling/scaling.c` into
/// `target/ctests/weft_scaling` against libweft.so, with the suite's flags but optimised (it
/// exists to time a CPU-bound loop). Its `--python` finds the peer script by absolute path.
fn build_scaling() -> PathBuf {
    let lib_dir = common::cdylib_dir();
    let dir = common::root().join("ctests").join("scaling");
    let out_dir = common::target_dir().join("ctests");
    std::fs::create_dir_all(&out_dir).expect("create target/ctests");
    let exe = out_dir.join("weft_scaling");
    // Built under a temporary name and renamed into place, as the task library is: a program
    // still running from an earlier build keeps its file (spawn workers re-open it).
    let tmp = out_dir.join(format!("weft_scaling.tmp{}", std::process::id()));
    let compiler = c_build(&["-O2"]).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.arg("-I").arg(common::root().join("include"));
    cmd.arg(format!("-DWEFT_SCALING_PEER=\"{}\"", dir.join("scaling_peer.py").display()));
    cmd.arg(dir.join("scaling.c"));
    cmd.arg("-o").arg(&tmp);
    cmd.arg("-L").arg(lib_dir).arg("-lweft");
    cmd.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    run_compiler(cmd, "the scaling program");
    std::fs::rename(&tmp, &exe).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), exe.display()));
    exe
}

/// Runs `exe args` to completion (killed after `limit`) and returns its stdout; panics, quoting
/// both streams, unless it exits with status 0.
fn run_program(exe: &Path, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(exe)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(common::root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
    // Read both streams on threads of their own, so that neither pipe can fill and block it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not finish within {limit:?}", exe.display());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    println!("$ {} {}  # {:.2} s, {status}\n{out}{err}", exe.display(), args.join(" "), start.elapsed().as_secs_f64());
    assert!(status.success(), "{} {args:?} failed ({status}):\n{out}{err}", exe.display());
    out
}

/// The largest worker count of a scaling run, from its header ("... workers 1..N, ...").
fn scaling_workers(out: &str) -> usize {
    let at = out.find("workers 1..").unwrap_or_else(|| panic!("no \"workers 1..N\" in the output:\n{out}"));
    let digits: String = out[at + "workers 1..".len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|e| panic!("bad worker count {digits:?} ({e}) in the output:\n{out}"))
}

/// Asserts that the table of a scaling run has one row per worker count for each kind
/// ("KIND WORKERS TASKS SECONDS TASKS/S SPEEDUPx"). The figures themselves are not judged.
fn assert_scaling_rows(out: &str) {
    let n = scaling_workers(out);
    assert!(n >= 1, "no worker count in the output:\n{out}");
    for kind in ["threads", "processes"] {
        let ks: Vec<usize> = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() == 6 && f[0] == kind && f[5].ends_with('x'))
            .map(|f| f[1].parse().unwrap_or_else(|e| panic!("bad worker count in a {kind} row ({e}):\n{out}")))
            .collect();
        assert_eq!(ks, (1..=n).collect::<Vec<_>>(), "the {kind} rows are not one per worker count 1..{n}:\n{out}");
    }
}

/// The scaling program's correctness run, with every start method of its process pools (fork
/// also with the Python peer, to check the script and the parsing of its figures): exit status
/// 0 — every result was verified — and a row per worker count for both kinds.
#[test]
fn scaling_program_check() {
    let exe = build_scaling();
    // Not while a suite runs: the C suite's timing-sensitive tests get the CPUs to themselves.
    let _one_at_a_time = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let limit = Duration::from_secs(60);
    for method in ["fork", "forkserver", "spawn"] {
        let out = run_program(&exe, &["--check", "--start-method", method], limit);
        assert!(out.contains(&format!("process start method {method}")), "not a {method} run:\n{out}");
        assert_scaling_rows(&out);
    }
    let out = run_program(&exe, &["--check", "--python"], limit);
    assert_scaling_rows(&out);
    assert!(out.contains("Python threads") && out.contains("Python processes"), "no Python figures:\n{out}");
}

/// The whole suite must finish within this (each C test also has its own timeout).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

/// One suite runs at a time: their TAP streams stay apart, and the timing-sensitive C tests do
/// not compete with a second suite for the (possibly two) cores.
static RUNNING: Mutex<()> = Mutex::new(());

/// Runs the suite, streaming its TAP output; panics with the failing lines when it fails.
fn run_suite(exe: &Path, env: &[(&str, &str)]) {
    let _one_at_a_time = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let start = Instant::now();
    // LD_LIBRARY_PATH (set by cargo to its own deps directories) would outrank the rpath and
    // could load another build of libweft.so than the one the suite was linked against.
    let mut child = Command::new(exe)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .current_dir(common::root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));

    // Lines worth quoting on failure: "not ok", the summary, and everything on stderr (failed
    // assertions and sanitizer reports), in arrival order.
    let notable = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let err_lines = Arc::clone(&notable);
    let err_reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_else(|e| format!("(unreadable stderr: {e})"));
            eprintln!("{line}");
            err_lines.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let out_lines = Arc::clone(&notable);
    let out_reader = thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.by_ref().read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            println!("{line}");
            if line.starts_with("not ok") || line.starts_with("# ") {
                out_lines.lock().unwrap().push(line);
            }
        }
    });

    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the C suite") {
            break status;
        }
        if start.elapsed() > SUITE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within {:?}", exe.display(), SUITE_LIMIT);
        }
        thread::sleep(Duration::from_millis(20));
    };
    out_reader.join().unwrap();
    err_reader.join().unwrap();
    println!("# {} finished in {:.1} s: {status}", exe.display(), start.elapsed().as_secs_f64());
    if !status.success() {
        let lines = notable.lock().unwrap();
        panic!(
            "the C suite {} failed ({status}); rerun one test with `{} NAME`:\n{}",
            exe.display(),
            exe.display(),
            lines.join("\n")
        );
    }
}

#[test]
fn c_conformance_suite() {
    let exe = build_suite("weft_ctests", &[]);
    run_suite(&exe, &[]);
}

#[test]
fn c_conformance_suite_asan_ubsan() {
    let exe = build_suite(
        "weft_ctests_asan",
        &["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"],
    );
    // libweft.so itself is not instrumented (it is the release cdylib); ASan still checks every
    // access the C tests make and every malloc/free, including the library's, since the
    // library's allocator is the intercepted libc malloc.
    run_suite(
        &exe,
        &[
            // abort_on_error: a report ends the test's child with SIGABRT, which the runner
            // reports as a failure of that one test (the default exit code would too, this is
            // just unambiguous). detect_leaks: each test's child leaves with _exit(), which skips
            // LeakSanitizer's exit-time check, so leaks are checked explicitly where it matters
            // (test `no_memory_kept_after_free` calls __lsan_do_recoverable_leak_check); at exit
            // it only checks the runner itself, which is cheap and works in this environment.
            ("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1"),
            ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
        ],
    );
}
