//! A long-running CPython peer: a script that reads one command per line on stdin and answers
//! "ok <ns per operation>" (or "error ...") on stdout, so Python's start-up is paid once and its
//! slices can be interleaved with weft's.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyPeer {
    /// The interpreter: `WEFT_BENCH_PYTHON`, default `python3`.
    pub fn python() -> String {
        std::env::var("WEFT_BENCH_PYTHON").unwrap_or_else(|_| "python3".into())
    }

    /// Starts `script` (a path) and checks it answers `probe`; None when it cannot.
    pub fn start(script: &str, probe: &str) -> Option<PyPeer> {
        let mut child = Command::new(Self::python()).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut peer = PyPeer { child, stdin, stdout };
        peer.run(probe).ok()?;
        Some(peer)
    }

    /// Runs one command; the words of its "ok ..." answer after "ok".
    pub fn ask(&mut self, cmd: &str) -> Result<Vec<String>, String> {
        writeln!(self.stdin, "{cmd}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let mut w = line.split_whitespace();
        match w.next() {
            Some("ok") => Ok(w.map(str::to_owned).collect()),
            _ => Err(format!("python peer: {}", line.trim())),
        }
    }

    /// Runs one command answering "ok <ns per operation>"; ns per operation.
    pub fn run(&mut self, cmd: &str) -> Result<f64, String> {
        match self.ask(cmd)?.as_slice() {
            [v] => v.parse().map_err(|_| format!("python peer: bad answer {v}")),
            other => Err(format!("python peer: bad answer {other:?}")),
        }
    }

    /// `python3 --version`, or "not found".
    pub fn version() -> String {
        Command::new(Self::python())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "not found".into())
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
