//! The process-wide hook for failed tasks that nobody joins (Python's `threading.excepthook`).
//!
//! A failure is reported once: when the thread ends if no handle to it remains, or when the
//! last handle is freed without the outcome having been looked at. Without a hook, weft prints
//! `Exception in thread NAME: STATUS: message` to standard error, as Python does.

use super::Thread;
use crate::call::Outcome;
use std::sync::{Arc, RwLock};

/// A hook receives the thread and its failed outcome. It runs on the thread that ends or on
/// the thread that frees the last handle.
pub type Hook = Arc<dyn Fn(&Arc<Thread>, &Outcome) + Send + Sync>;

static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Installs `hook` (`None` restores the default printer).
pub fn set(hook: Option<Hook>) {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = hook;
}

pub(super) fn report(thread: &Arc<Thread>, outcome: &Outcome) {
    let hook = HOOK.read().unwrap_or_else(|e| e.into_inner()).clone();
    match hook {
        Some(h) => {
            let _ = crate::status::catch(|| {
                h(thread, outcome);
                Ok(())
            });
        }
        None => eprintln!(
            "Exception in thread {}: {}: {}",
            thread.name().to_string_lossy(),
            crate::status::name(outcome.status).to_string_lossy(),
            outcome.message
        ),
    }
}
