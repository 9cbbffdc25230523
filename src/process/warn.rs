//! Warnings: conditions that are not errors but deserve the program's attention (forking a
//! process that has other threads). By default weft prints the first warning of each kind to
//! stderr; a program can install its own hook, or silence them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// A program's warning hook: receives each warning's text.
pub type Hook = Box<dyn Fn(&str) + Send + Sync>;

enum Sink {
    Default,
    Silent,
    Custom(Hook),
}

static SINK: RwLock<Sink> = RwLock::new(Sink::Default);
static PRINTED_FORK: AtomicBool = AtomicBool::new(false);

/// Installs `hook` (`None` silences warnings). Thread-safe.
pub fn set_hook(hook: Option<Hook>) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = match hook {
        Some(h) => Sink::Custom(h),
        None => Sink::Silent,
    };
}

/// Restores the default (print the first warning to stderr).
pub fn reset_hook() {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Sink::Default;
}

/// Reports that this process is about to fork while it has `threads` threads.
pub fn fork_with_threads(threads: u32) {
    let text = format!(
        "weft: this process has {threads} threads; forking it copies locks other threads may hold and can deadlock the \
         child: prefer the forkserver or spawn start method"
    );
    match &*SINK.read().unwrap_or_else(|e| e.into_inner()) {
        Sink::Silent => {}
        Sink::Custom(h) => h(&text),
        Sink::Default => {
            if !PRINTED_FORK.swap(true, Ordering::Relaxed) {
                eprintln!("{text}");
            }
        }
    }
}
