//! Connections and listeners (`weft_connection_*`, `weft_listener_*`, `weft_client_connect`):
//! Python's `multiprocessing.Pipe`, `Connection`, `connection.Listener` and `Client`.

use super::status::{give_bytes, weft_bytes};
use super::{get, out_ptr, publish, Object, Tag};
use crate::pipe::{self, Connection, Filled, Listener};
use crate::status::{guard, guard_value, weft_status, Error, Result, WEFT_BUFFER_TOO_SMALL, WEFT_INVALID_ARGUMENT, WEFT_NULL_ARGUMENT};
use crate::time::Deadline;
use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::IntoRawFd;

/// One end of a connection (Python's `multiprocessing.connection.Connection`): messages of any
/// size, each delivered whole, over a Unix-domain or TCP stream socket. Made by `weft_pipe`,
/// `weft_listener_accept`, `weft_client_connect` or `weft_connection_from_fd`; freed with
/// `weft_connection_free`.
///
/// Thread-safe: one thread may send while another receives; concurrent sends are serialised
/// (frames never interleave), and so are concurrent receives. A connection may be closed while
/// another thread is blocked in a call on it: that call keeps the socket open until it
/// returns, and every later call gives WEFT_CLOSED.
pub struct weft_connection {
    tag: Tag,
    conn: Connection,
}

impl Object for weft_connection {
    const NAME: &'static str = "weft_connection";
    const MAGIC: u64 = 0x7765_6674_636f_6e6e;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

fn give(conn: Connection, out: *mut *mut weft_connection) -> Result<()> {
    publish(weft_connection { tag: Tag::of::<weft_connection>(), conn }, out)
}

/// A listening socket (Python's `multiprocessing.connection.Listener`). Freed with
/// `weft_listener_free`. Thread-safe: several threads may accept at once.
pub struct weft_listener {
    tag: Tag,
    listener: Listener,
    address: CString,
}

impl Object for weft_listener {
    const NAME: &'static str = "weft_listener";
    const MAGIC: u64 = 0x7765_6674_6c73_746e;
    fn tag(&self) -> &Tag {
        &self.tag
    }
}

/// Reads the address argument.
///
/// # Safety
/// `address` must be NULL or a NUL-terminated string.
unsafe fn address_arg(address: *const c_char) -> Result<String> {
    // SAFETY: forwarded contract.
    unsafe { super::opt_str(address, "address") }?.ok_or_else(|| Error::new(WEFT_NULL_ARGUMENT, "address is NULL"))
}

/// Reads an authkey argument: NULL or length 0 means no authentication.
///
/// # Safety
/// `authkey` must point at `len` readable bytes when `len > 0`.
unsafe fn authkey_arg<'a>(authkey: *const c_void, len: usize) -> Result<Option<&'a [u8]>> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    Ok(Some(unsafe { super::bytes(authkey, len, "authkey") }?))
}

/// Creates a connected pair (Python's `Pipe(duplex)`). Duplex: both ends send and receive.
/// Not duplex: `*a` is the read end and `*b` the write end. Both are close-on-exec Unix-domain
/// sockets; free each with `weft_connection_free`. Errors: WEFT_NULL_ARGUMENT, WEFT_OS_ERROR
/// (e.g. at the descriptor limit).
///
/// # Safety
/// `a` and `b` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_pipe(duplex: bool, a: *mut *mut weft_connection, b: *mut *mut weft_connection) -> weft_status {
    guard(|| {
        out_ptr(a, "a")?;
        out_ptr(b, "b")?;
        let (x, y) = pipe::pipe(duplex)?;
        give(x, a)?;
        give(y, b)
    })
}

/// Sends `data[0..len]` as one message (`data` may be NULL when `len` is 0). Blocks until all
/// of it is handed to the kernel (a peer that does not receive can block it; weft cancellation
/// does not interrupt it). Never raises SIGPIPE. Errors: WEFT_NULL_ARGUMENT, WEFT_CLOSED (the
/// connection was closed, or the peer is gone), WEFT_INVALID_STATE (a read-only end),
/// WEFT_OS_ERROR.
///
/// # Safety
/// `c` must be NULL or a handle from weft; `data` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_send(c: *mut weft_connection, data: *const c_void, len: usize) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { get(c) }?;
        // SAFETY: forwarded contract.
        let data = unsafe { super::bytes(data, len, "data") }?;
        c.conn.send(data)
    })
}

/// Receives the next message into a new buffer `*out` (free with `weft_bytes_free`). Waits up
/// to `timeout_ns` (0 tries once, WEFT_FOREVER waits); a weft thread asked to cancel stops
/// waiting. A timeout in the middle of a message loses nothing: the next receive continues it.
/// Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK, WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_CLOSED (the
/// connection was closed, or the peer closed it and every complete message was received; a
/// message cut off by the peer's death is never delivered), WEFT_INVALID_STATE (a write-only
/// end, or the next message is a descriptor: use `weft_connection_recv_fd`), WEFT_NO_MEMORY,
/// WEFT_OS_ERROR.
///
/// # Safety
/// `c` must be NULL or a handle from weft; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_recv(c: *mut weft_connection, timeout_ns: u64, out: *mut *mut weft_bytes) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let c = unsafe { get(c) }?;
        let data = c.conn.recv(Deadline::from_timeout_ns(timeout_ns))?;
        give_bytes(data, out)
    })
}

/// Receives the next message into `buf[0..cap]` (`buf` may be NULL when `cap` is 0) and its
/// length into `*len`. When the message is larger than `cap`, returns WEFT_BUFFER_TOO_SMALL
/// with the needed size in `*len` (the one failure that writes `*len`), and the message stays
/// unread: the next receive gets it whole. Waits and fails as `weft_connection_recv`.
///
/// # Safety
/// `c` must be NULL or a handle from weft; `buf` must have `cap` writable bytes; `len`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_recv_into(
    c: *mut weft_connection,
    buf: *mut c_void,
    cap: usize,
    timeout_ns: u64,
    len: *mut usize,
) -> weft_status {
    guard(|| {
        out_ptr(len, "len")?;
        // SAFETY: forwarded contract.
        let c = unsafe { get(c) }?;
        // SAFETY: forwarded contract.
        let buf = unsafe { super::bytes_mut(buf, cap, "buf") }?;
        let filled = c.conn.recv_into(buf, Deadline::from_timeout_ns(timeout_ns))?;
        let n = match filled {
            Filled::Message(n) | Filled::TooSmall(n) => n,
        };
        // SAFETY: checked non-null.
        unsafe { len.write(n) };
        match filled {
            Filled::Message(_) => Ok(()),
            Filled::TooSmall(_) => {
                Err(Error::new(WEFT_BUFFER_TOO_SMALL, format!("the next message has {n} bytes; the buffer has {cap}")))
            }
        }
    })
}

/// Waits up to `timeout_ns` until a receive would find something (Python's `poll`): a whole
/// message already received into weft's buffer, new bytes of a message, or end of file (then a
/// receive gives WEFT_CLOSED). Returns WEFT_OK when so. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_WOULD_BLOCK (timeout 0), WEFT_TIMEOUT, WEFT_CANCELLED, WEFT_CLOSED (the connection was
/// closed), WEFT_INVALID_STATE (a write-only end).
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_poll(c: *mut weft_connection, timeout_ns: u64) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.conn.poll(Deadline::from_timeout_ns(timeout_ns)))
}

/// The connection's socket descriptor (Python's `fileno()`): for an event loop, or to hand the
/// connection to a child process. It stays owned by the connection. Bytes this process has
/// already read into weft's buffer are not visible to another process through it: pass a
/// connection before receiving on it. -1 for NULL, an invalid handle or a closed connection.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_fd(c: *const weft_connection) -> c_int {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(c) }.map_or(-1, |c| c.conn.fd()))
}

/// True when this end receives (every end but the write end of a one-way pair). False for
/// NULL or an invalid handle.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_readable(c: *const weft_connection) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(c) }.is_ok_and(|c| c.conn.readable()))
}

/// True when this end sends (every end but the read end of a one-way pair). False for NULL or
/// an invalid handle.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_writable(c: *const weft_connection) -> bool {
    // SAFETY: forwarded contract.
    guard_value(false, || unsafe { get(c) }.is_ok_and(|c| c.conn.writable()))
}

/// Makes a connection of an inherited or passed descriptor `fd`, a connected stream socket
/// (Unix-domain or TCP) whose peer speaks weft's framing; `readable`/`writable` say which
/// directions this end uses (at least one). On success the connection owns `fd` (and makes it
/// close-on-exec); on failure `fd` is left alone. Errors: WEFT_NULL_ARGUMENT,
/// WEFT_INVALID_ARGUMENT (negative, not open, not a connected stream socket, or neither
/// direction).
///
/// # Safety
/// `out` must be NULL or writable; on success nothing else may close `fd`.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_from_fd(fd: c_int, readable: bool, writable: bool, out: *mut *mut weft_connection) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        if fd < 0 {
            return Err(Error::new(WEFT_INVALID_ARGUMENT, format!("fd {fd} is negative")));
        }
        // SAFETY: the caller hands `fd` over on success.
        let conn = unsafe { Connection::from_raw_fd(fd, readable, writable) }?;
        give(conn, out)
    })
}

/// Sends a duplicate of descriptor `fd` over the connection (Python's
/// `multiprocessing.reduction.send_handle`) as a message of its own; `fd` stays open in the
/// caller. The receiver gets it with `weft_connection_recv_fd`. Blocks as
/// `weft_connection_send`. Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (`fd` is not
/// open), WEFT_UNSUPPORTED (a TCP connection), WEFT_CLOSED, WEFT_INVALID_STATE (a read-only
/// end), WEFT_OS_ERROR.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_send_fd(c: *mut weft_connection, fd: c_int) -> weft_status {
    // SAFETY: forwarded contract.
    guard(|| unsafe { get(c) }?.conn.send_fd(fd))
}

/// Receives the next message, which must carry a descriptor (sent by
/// `weft_connection_send_fd`), as a new close-on-exec descriptor in `*fd` that the caller
/// owns. Waits and fails as `weft_connection_recv`; WEFT_INVALID_STATE when the next message
/// is a byte message (it stays unread), WEFT_OS_ERROR when the kernel could not deliver the
/// descriptor (this process at its descriptor limit; the message is consumed).
///
/// # Safety
/// `c` must be NULL or a handle from weft; `fd` writable.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_recv_fd(c: *mut weft_connection, timeout_ns: u64, fd: *mut c_int) -> weft_status {
    guard(|| {
        out_ptr(fd, "fd")?;
        // SAFETY: forwarded contract.
        let c = unsafe { get(c) }?;
        let got = c.conn.recv_fd(Deadline::from_timeout_ns(timeout_ns))?;
        // SAFETY: checked non-null.
        unsafe { fd.write(got.into_raw_fd()) };
        Ok(())
    })
}

/// Closes the connection's socket (the peer sees end of file once no other process holds
/// it) and drops anything buffered. The handle stays valid: every later call on it gives
/// WEFT_CLOSED, `weft_connection_fd` gives -1, and closing again returns WEFT_OK. Still free it
/// with `weft_connection_free`. Errors: WEFT_NULL_ARGUMENT.
///
/// # Safety
/// `c` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_connection_close(c: *mut weft_connection) -> weft_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { get(c) }?.conn.close();
        Ok(())
    })
}

/// Frees a connection, closing it if needed. NULL is a no-op.
///
/// # Safety
/// `c` must be NULL or a handle from weft, not used afterwards (nor concurrently).
#[no_mangle]
pub unsafe extern "C" fn weft_connection_free(c: *mut weft_connection) {
    // SAFETY: forwarded contract.
    unsafe { super::free(c) }
}

/// Listens at `address` (Python's `Listener`): `"unix:/path/to/sock"` (a socket file, removed
/// when the listener is freed by the process that created it, if it is still the same file),
/// `"unix:@name"` (the abstract namespace, no file), `"tcp:HOST:PORT"` (IPv4, `[IPv6]` or a
/// host name; port 0 picks a free port — `weft_listener_address` tells which). With an authkey
/// (`authkey[0..authkey_len]`, copied; NULL or length 0 for none) every client must prove it
/// holds the same key, and the listener proves it too (HMAC-SHA256 challenge-response). On
/// success `*out` receives the listener (free with `weft_listener_free`). Errors:
/// WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad address), WEFT_EXISTS (the socket file
/// exists, or the address is in use), WEFT_NOT_FOUND (the directory or host does not exist),
/// WEFT_PERMISSION_DENIED, WEFT_OS_ERROR.
///
/// # Safety
/// `address` must be NULL or a NUL-terminated string; `authkey` must point at `authkey_len`
/// readable bytes; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_listener_new(
    address: *const c_char,
    authkey: *const c_void,
    authkey_len: usize,
    out: *mut *mut weft_listener,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let address = unsafe { address_arg(address) }?;
        // SAFETY: forwarded contract.
        let key = unsafe { authkey_arg(authkey, authkey_len) }?;
        let listener = Listener::bind(&address, key)?;
        let address = CString::new(listener.address().to_string()).unwrap_or_default();
        publish(weft_listener { tag: Tag::of::<weft_listener>(), listener, address }, out)
    })
}

/// The address clients connect to, such as `"tcp:127.0.0.1:40123"` (with the actual port when
/// port 0 was asked for). Valid while the listener lives. NULL for NULL or an invalid handle.
///
/// # Safety
/// `l` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_listener_address(l: *const weft_listener) -> *const c_char {
    // SAFETY: forwarded contract.
    guard_value(std::ptr::null(), || unsafe { get(l) }.map_or(std::ptr::null(), |l| l.address.as_ptr()))
}

/// The listening socket's descriptor (owned by the listener): it polls readable when a client
/// is waiting, for event loops. -1 for NULL or an invalid handle.
///
/// # Safety
/// `l` must be NULL or a handle from weft.
#[no_mangle]
pub unsafe extern "C" fn weft_listener_fd(l: *const weft_listener) -> c_int {
    // SAFETY: forwarded contract.
    guard_value(-1, || unsafe { get(l) }.map_or(-1, |l| l.listener.fd()))
}

/// Accepts the next client (Python's `Listener.accept`) into `*out` (free with
/// `weft_connection_free`). Waits up to `timeout_ns` for a client to arrive (0: only one that
/// is already waiting; a weft thread asked to cancel stops waiting); with an authkey, the
/// handshake must also finish within the timeout (within 5 s for timeout 0). A client that
/// fails the handshake is disconnected and its failure returned; the listener keeps working,
/// so call again for the next client. A client that connects and stays silent delays the
/// handshake until the timeout. Errors: WEFT_NULL_ARGUMENT, WEFT_WOULD_BLOCK, WEFT_TIMEOUT,
/// WEFT_CANCELLED, WEFT_AUTH_FAILED (the client's key differs), WEFT_CLOSED (the client left
/// during the handshake), WEFT_OS_ERROR.
///
/// # Safety
/// `l` must be NULL or a handle from weft; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_listener_accept(l: *mut weft_listener, timeout_ns: u64, out: *mut *mut weft_connection) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let l = unsafe { get(l) }?;
        let conn = l.listener.accept(Deadline::from_timeout_ns(timeout_ns))?;
        give(conn, out)
    })
}

/// Frees a listener: closes its socket (connections it accepted stay open) and removes the
/// socket file it created. NULL is a no-op.
///
/// # Safety
/// `l` must be NULL or a handle from weft, not used afterwards (nor concurrently).
#[no_mangle]
pub unsafe extern "C" fn weft_listener_free(l: *mut weft_listener) {
    // SAFETY: forwarded contract.
    unsafe { super::free(l) }
}

/// Connects to the listener at `address` (Python's `Client`; addresses as for
/// `weft_listener_new`) into `*out` (free with `weft_connection_free`). With an authkey
/// (NULL or length 0 for none) the handshake proves both sides hold the same key; the
/// listener must use an authkey exactly when the client does. Connecting and the handshake
/// finish within `timeout_ns` (timeout 0 allows 5 s, as connecting cannot be done in one
/// try). Errors: WEFT_NULL_ARGUMENT, WEFT_INVALID_ARGUMENT (bad address), WEFT_NOT_FOUND
/// (nothing listens there), WEFT_PERMISSION_DENIED, WEFT_TIMEOUT, WEFT_CANCELLED,
/// WEFT_AUTH_FAILED (the listener's key differs), WEFT_CLOSED, WEFT_OS_ERROR.
///
/// # Safety
/// `address` must be NULL or a NUL-terminated string; `authkey` must point at `authkey_len`
/// readable bytes; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn weft_client_connect(
    address: *const c_char,
    authkey: *const c_void,
    authkey_len: usize,
    timeout_ns: u64,
    out: *mut *mut weft_connection,
) -> weft_status {
    guard(|| {
        out_ptr(out, "out")?;
        // SAFETY: forwarded contract.
        let address = unsafe { address_arg(address) }?;
        // SAFETY: forwarded contract.
        let key = unsafe { authkey_arg(authkey, authkey_len) }?;
        let conn = pipe::connect(&address, key, Deadline::from_timeout_ns(timeout_ns))?;
        give(conn, out)
    })
}
