//! Runs the Python binding's test suite (`bindings/python/tests`, pytest) against the
//! `libweft.so` that `common::cdylib_dir()` builds. Fails when pytest fails, when it ran no
//! tests, or when python3, pytest or cffi is missing: CI installs them, so a missing tool is an
//! error here, never a silent skip. `PYTHON` chooses the interpreter (default `python3`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Forwards a child's output into the test's (shown when the test fails, or with --nocapture).
fn forward(out: &Output) {
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

fn check_prerequisites(python: &str) {
    let probe = Command::new(python)
        .args(["-c", "import sys, cffi, pytest; print(sys.version.split()[0], cffi.__version__, pytest.__version__)"])
        .output();
    match probe {
        Err(e) => panic!(
            "cannot run `{python}` ({e}): the Python binding tests need python3 with cffi and pytest \
             (install them: `pip install cffi pytest`; set PYTHON to choose another interpreter)"
        ),
        Ok(out) if !out.status.success() => {
            forward(&out);
            panic!(
                "`{python}` lacks cffi or pytest, which the Python binding tests need: run \
                 `{python} -m pip install cffi pytest`"
            );
        }
        Ok(out) => {
            let versions = String::from_utf8_lossy(&out.stdout);
            println!("python, cffi, pytest: {}", versions.trim());
        }
    }
}

#[test]
fn python_binding_suite() {
    let python = python();
    check_prerequisites(&python);

    let root = common::root();
    let library = common::cdylib_dir().join("libweft.so");
    let binding = root.join("bindings").join("python");
    let tests = binding.join("tests");
    assert!(tests.is_dir(), "missing {}", tests.display());

    let pythonpath = match std::env::var_os("PYTHONPATH") {
        Some(p) if !p.is_empty() => {
            let mut v = binding.clone().into_os_string();
            v.push(":");
            v.push(p);
            v
        }
        _ => binding.clone().into_os_string(),
    };

    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider"])
        .arg(Path::new("bindings").join("python").join("tests"))
        .current_dir(&root)
        .env("WEFT_LIBRARY", &library)
        .env("WEFT_HEADER", root.join("include").join("weft.h"))
        .env("PYTHONPATH", pythonpath)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pytest`: {e}"));
    forward(&out);

    match out.status.code() {
        Some(0) => {}
        Some(5) => panic!("pytest collected no tests in {}: the binding suite is empty", tests.display()),
        Some(code) => panic!(
            "the Python binding tests failed (pytest exit code {code}) against {}; output above",
            library.display()
        ),
        None => panic!("pytest was killed by a signal: {:?}", out.status),
    }
}
