//! Objects that live either in private memory or in a space, behind one C type ("private or
//! shared, same API", DESIGN.md §2), and the helpers every shared type's `_new_in`, `_open`,
//! `_token` and `_from_token` share.

use super::space::{required_name, space_or_default, weft_space};
use crate::space::shared::{SharedPod, SharedRef, Typed};
use crate::status::Result;
use std::ffi::{c_char, c_void};

/// A private `P` or a shared `S` in a space.
#[derive(Debug)]
pub(crate) enum Placed<P, S: SharedPod> {
    /// In this process's memory.
    Private(P),
    /// In a space.
    Shared(Typed<S>),
}

impl<P, S: SharedPod> Placed<P, S> {
    /// The shared reference, for tokens; `None` for a private object.
    pub(crate) fn shared(&self) -> Option<&SharedRef> {
        match self {
            Placed::Private(_) => None,
            Placed::Shared(t) => Some(t.shared()),
        }
    }
}

/// Evaluates `$body` with `$x` bound to the private or the shared object (which have methods
/// of the same names).
macro_rules! on_placed {
    ($placed:expr, $x:ident => $body:expr) => {
        match &$placed {
            $crate::capi::placed::Placed::Private($x) => $body,
            $crate::capi::placed::Placed::Shared(t) => {
                let $x = t.get();
                $body
            }
        }
    };
}
pub(crate) use on_placed;

/// Creates a shared object of `kind` holding `value` in `space` (NULL: the default space),
/// named `name` (NULL: unnamed).
///
/// # Safety
/// `space` must be NULL or a handle from weft; `name` NULL or a NUL-terminated string.
pub(crate) unsafe fn create_in<S: SharedPod>(
    space: *const weft_space,
    name: *const c_char,
    kind: u32,
    value: S,
) -> Result<Typed<S>> {
    // SAFETY: forwarded contracts.
    let (h, name) = unsafe { (space_or_default(space)?, super::opt_str(name, "name")?) };
    create_in_handle(h, name.as_deref(), kind, value)
}

/// Creates a shared object of `kind` holding `value` in the space `h`, named `name`.
pub(crate) fn create_in_handle<S: SharedPod>(
    h: std::sync::Arc<crate::space::handle::SpaceHandle>,
    name: Option<&str>,
    kind: u32,
    value: S,
) -> Result<Typed<S>> {
    let mut value = Some(value);
    let mut init = |p: *mut u8| {
        // SAFETY: `p` is a fresh payload of size_of::<S>() bytes, 64-aligned (>= align of S per
        // SharedPod), not yet reachable by any other thread or process.
        unsafe { (p as *mut S).write(value.take().expect("init runs once")) };
        Ok(())
    };
    let r = SharedRef::create(h, kind, std::mem::size_of::<S>() as u64, name, &mut init)?;
    Typed::new(r)
}

/// Opens the shared object `name` of `kind` in `space` (NULL: the default space).
///
/// # Safety
/// As [`create_in`], `name` required.
pub(crate) unsafe fn open_in<S: SharedPod>(space: *const weft_space, name: *const c_char, kind: u32) -> Result<Typed<S>> {
    // SAFETY: forwarded contracts.
    let (h, name) = unsafe { (space_or_default(space)?, required_name(name)?) };
    Typed::new(SharedRef::open(h, &name, kind, Some(std::mem::size_of::<S>() as u64))?)
}

/// Opens the shared object of `kind` a token designates.
///
/// # Safety
/// `token` must point at `len` readable bytes.
pub(crate) unsafe fn from_token<S: SharedPod>(token: *const c_void, len: usize, kind: u32) -> Result<Typed<S>> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { super::bytes(token, len, "token") }?;
    Typed::new(SharedRef::from_token(bytes, kind, Some(std::mem::size_of::<S>() as u64))?)
}
