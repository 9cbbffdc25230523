//! Thread-local storage with destructors (Python's `threading.local`, pthread keys).
//!
//! A [`Local`] maps each thread to one pointer-sized value. A thread's values are destroyed
//! when it exits — before its join returns, for weft threads — and all remaining values are
//! destroyed when the `Local` itself is dropped. Destructors that set new values are run
//! again, up to four rounds, as pthreads does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Destructor for a non-null value.
pub type Destructor = Box<dyn Fn(usize) + Send + Sync>;

struct Inner {
    values: Mutex<HashMap<u64, usize>>,
    destructor: Option<Destructor>,
}

/// A thread-local slot. Thread-safe: each thread sees its own value.
pub struct Local(Arc<Inner>);

static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);
const DESTRUCTOR_ROUNDS: usize = 4;

struct ThreadSlot {
    id: u64,
    locals: RefCell<Vec<Weak<Inner>>>,
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.run_exit();
    }
}

impl ThreadSlot {
    fn run_exit(&self) {
        for _ in 0..DESTRUCTOR_ROUNDS {
            let locals = std::mem::take(&mut *self.locals.borrow_mut());
            if locals.is_empty() {
                return;
            }
            for l in locals.iter().filter_map(Weak::upgrade) {
                let v = l.values.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
                if let (Some(v), Some(d)) = (v, &l.destructor) {
                    if v != 0 {
                        d(v);
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Set once the thread stores a value, so threads that never do skip `SLOT` (whose
    /// first use registers a thread-exit destructor with the C library).
    static USED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SLOT: ThreadSlot = ThreadSlot { id: NEXT_SLOT.fetch_add(1, Ordering::Relaxed), locals: RefCell::new(Vec::new()) };
}

/// Runs the calling thread's destructors now (weft threads call it before they report done).
pub(crate) fn run_thread_exit() {
    if USED.try_with(|u| u.get()).unwrap_or(false) {
        let _ = SLOT.try_with(|s| s.run_exit());
    }
}

impl Local {
    /// A slot whose non-null values are passed to `destructor` when destroyed.
    pub fn new(destructor: Option<Destructor>) -> Local {
        Local(Arc::new(Inner { values: Mutex::new(HashMap::new()), destructor }))
    }

    /// The calling thread's value (0 when unset).
    pub fn get(&self) -> usize {
        SLOT.try_with(|s| *self.0.values.lock().unwrap_or_else(|e| e.into_inner()).get(&s.id).unwrap_or(&0))
            .unwrap_or(0)
    }

    /// Sets the calling thread's value; a different previous non-null value is destroyed,
    /// except when the new value is null (clearing never destroys).
    /// Returns false during thread teardown, when the value cannot be stored.
    pub fn set(&self, value: usize) -> bool {
        let _ = USED.try_with(|u| u.set(true));
        let old = SLOT.try_with(|s| {
            let old = self.0.values.lock().unwrap_or_else(|e| e.into_inner()).insert(s.id, value);
            if old.is_none() {
                s.locals.borrow_mut().push(Arc::downgrade(&self.0));
            }
            old
        });
        match old {
            Ok(Some(o)) if o != 0 && value != 0 && o != value => {
                if let Some(d) = &self.0.destructor {
                    d(o);
                }
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let values: Vec<usize> = self.0.values.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, v)| v).collect();
        if let Some(d) = &self.0.destructor {
            values.into_iter().filter(|&v| v != 0).for_each(d);
        }
    }
}
