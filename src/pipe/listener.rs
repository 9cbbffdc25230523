//! [`Listener`] and [`connect`] (Python's `multiprocessing.connection.Listener` and `Client`):
//! connections made through an address, authenticated with a shared authkey when one is given.

use super::address::Address;
use super::auth::{self, AuthKey};
use super::connection::Connection;
use super::sys;
use crate::fd;
use crate::status::{Error, Result, WEFT_EXISTS, WEFT_NOT_FOUND, WEFT_PERMISSION_DENIED, WEFT_TIMEOUT};
use crate::time::Deadline;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// The time a connection's setup and handshake get when the caller gave timeout 0 (which
/// only means "do not wait for a client to arrive" / "try once").
pub const POLLING_HANDSHAKE_NS: u64 = 5_000_000_000;

/// A listening socket that hands out connections (Python's `Listener`).
///
/// Thread-safe: several threads may accept at once (each connection goes to one of them).
pub struct Listener {
    socket: OwnedFd,
    address: Address,
    key: Option<AuthKey>,
    /// Held for its `Drop`, which removes the socket file.
    #[allow(dead_code)]
    socket_file: Option<SocketFile>,
}

/// The socket file a listener created, removed when the listener is dropped.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    creator: libc::pid_t,
}

impl SocketFile {
    fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
        std::fs::symlink_metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        })
    }
}

impl Drop for SocketFile {
    /// Unlinks the file, but only in the process that created it and only while it is still
    /// the same file (not one that somebody else put there since).
    fn drop(&mut self) {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } == self.creator && Self::identity(&self.path) == Some((self.dev, self.ino)) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A new non-blocking, close-on-exec stream socket of `family`.
fn new_socket(family: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: socket(2) has no memory effects.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(Error::last_os("socket"));
    }
    // SAFETY: the kernel just returned `fd` to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Maps a failed `bind`/`connect` errno to a status.
fn address_error(call: &str, address: &Address, e: i32) -> Error {
    let text = std::io::Error::from_raw_os_error(e);
    let (code, what) = match e {
        libc::EADDRINUSE => (WEFT_EXISTS, "the address is in use"),
        libc::ECONNREFUSED | libc::ENOENT => (WEFT_NOT_FOUND, "nothing listens there"),
        libc::EACCES | libc::EPERM => (WEFT_PERMISSION_DENIED, "permission denied"),
        libc::ETIMEDOUT => (WEFT_TIMEOUT, "the connection attempt timed out"),
        _ => return Error::os(&format!("{call}({address})"), e),
    };
    Error::new(code, format!("{call}({address}): {what} ({text})")).with_errno(e)
}

fn nodelay(socket: &OwnedFd) -> Result<()> {
    sys::setsockopt_int(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)")
}

impl Listener {
    /// Binds and listens at `address` (see [`Address::parse`]; TCP port 0 picks a free port,
    /// and [`address`](Self::address) reports the one chosen). With `authkey`, every accepted
    /// connection must pass the handshake. A socket file created here is removed when the
    /// listener is dropped by this process. Errors: `WEFT_INVALID_ARGUMENT`, `WEFT_EXISTS`
    /// (the socket file exists or the address is in use), `WEFT_NOT_FOUND` (its directory does
    /// not exist), `WEFT_PERMISSION_DENIED`, `WEFT_OS_ERROR`.
    pub fn bind(address: &str, authkey: Option<&[u8]>) -> Result<Listener> {
        let mut address = Address::parse(address)?;
        let socket = new_socket(address.family())?;
        let raw = socket.as_raw_fd();
        if let Address::Tcp(_) = address {
            sys::setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")?;
        }
        let (sa, len) = address.to_sockaddr();
        // SAFETY: `sa` holds a valid address of `len` bytes.
        if unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_storage).cast(), len) } != 0 {
            let e = errno();
            let e = if e == libc::ENOENT { Error::new(WEFT_NOT_FOUND, format!("bind({address}): the directory does not exist")).with_errno(e) } else { address_error("bind", &address, e) };
            return Err(e);
        }
        let socket_file = match &address {
            Address::Unix(path) => SocketFile::identity(path).map(|(dev, ino)| SocketFile {
                path: path.clone(),
                dev,
                ino,
                // SAFETY: getpid has no preconditions.
                creator: unsafe { libc::getpid() },
            }),
            _ => None,
        };
        // SAFETY: listen(2) has no memory effects.
        if unsafe { libc::listen(raw, libc::SOMAXCONN) } != 0 {
            return Err(Error::last_os("listen"));
        }
        if let Address::Tcp(_) = address {
            // SAFETY: all-zero is a valid sockaddr_storage; getsockname writes at most `len`.
            let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `sa`/`len` are writable and describe the storage's size.
            if unsafe { libc::getsockname(raw, (&mut sa as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
                return Err(Error::last_os("getsockname"));
            }
            if let Some(actual) = Address::tcp_from_sockaddr(&sa) {
                address = Address::Tcp(actual);
            }
        }
        Ok(Listener { socket, address, key: authkey.map(AuthKey::new), socket_file })
    }

    /// The address clients connect to (with the actual port for TCP port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The listening socket's descriptor: readable when a client is waiting to be accepted.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Accepts the next client, waiting until `deadline` for one to arrive; with an authkey,
    /// then runs the handshake within the same deadline (within [`POLLING_HANDSHAKE_NS`] when
    /// the deadline is `Now`). A client that fails is dropped and its error returned; the
    /// listener keeps working. Errors: `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`,
    /// `WEFT_AUTH_FAILED`, `WEFT_CLOSED` (the client left during the handshake),
    /// `WEFT_OS_ERROR` (e.g. at the descriptor limit).
    pub fn accept(&self, deadline: Deadline) -> Result<Connection> {
        let socket = loop {
            fd::wait_ready(self.fd(), libc::POLLIN, deadline, "no client is waiting to connect")?;
            // SAFETY: no address is requested; accept4 has no other memory effects.
            let s = unsafe { libc::accept4(self.fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if s >= 0 {
                // SAFETY: the kernel just returned `s` to us.
                break unsafe { OwnedFd::from_raw_fd(s) };
            }
            match errno() {
                // Another thread took the client, or it left before being accepted.
                libc::EAGAIN | libc::EINTR | libc::ECONNABORTED | libc::EPROTO => {}
                e => return Err(Error::os("accept4", e)),
            }
        };
        let unix = !matches!(self.address, Address::Tcp(_));
        if !unix {
            nodelay(&socket)?;
        }
        let conn = Connection::new(socket, true, true, unix);
        if let Some(key) = &self.key {
            auth::serve(&conn, key, setup_deadline(deadline))?;
        }
        Ok(conn)
    }
}

/// The deadline for setting up a connection: the caller's, or a bounded one for timeout 0.
fn setup_deadline(deadline: Deadline) -> Deadline {
    if deadline == Deadline::Now {
        Deadline::from_timeout_ns(POLLING_HANDSHAKE_NS)
    } else {
        deadline
    }
}

/// Connects to a listener at `address` (Python's `Client`), then, with `authkey`, runs the
/// handshake; both within `deadline` ([`POLLING_HANDSHAKE_NS`] when it is `Now`). Both sides
/// must agree on whether an authkey is used. Errors: `WEFT_INVALID_ARGUMENT`,
/// `WEFT_NOT_FOUND` (nothing listens there), `WEFT_PERMISSION_DENIED`, `WEFT_TIMEOUT`,
/// `WEFT_CANCELLED`, `WEFT_AUTH_FAILED`, `WEFT_CLOSED`, `WEFT_OS_ERROR`.
pub fn connect(address: &str, authkey: Option<&[u8]>, deadline: Deadline) -> Result<Connection> {
    let address = Address::parse(address)?;
    let deadline = setup_deadline(deadline);
    let socket = new_socket(address.family())?;
    let raw = socket.as_raw_fd();
    let (sa, len) = address.to_sockaddr();
    loop {
        // SAFETY: `sa` holds a valid address of `len` bytes.
        if unsafe { libc::connect(raw, (&sa as *const libc::sockaddr_storage).cast(), len) } == 0 {
            break;
        }
        match errno() {
            libc::EINPROGRESS | libc::EINTR => {
                fd::wait_ready(raw, libc::POLLOUT, deadline, "timed out connecting")?;
                match sys::socket_error(raw)? {
                    0 => break,
                    e => return Err(address_error("connect", &address, e)),
                }
            }
            // A Unix listener's backlog is full: try again shortly.
            libc::EAGAIN => {
                let (nap, _) = deadline.capped(1_000_000);
                fd::poll(&mut [], nap)?;
                if deadline.expired() {
                    return Err(Error::timeout("timed out connecting: the listener's backlog stayed full"));
                }
            }
            e => return Err(address_error("connect", &address, e)),
        }
    }
    fd::set_nonblocking(raw, false)?;
    let unix = !matches!(address, Address::Tcp(_));
    if !unix {
        nodelay(&socket)?;
    }
    let conn = Connection::new(socket, true, true, unix);
    if let Some(key) = authkey {
        auth::join(&conn, &AuthKey::new(key), deadline)?;
    }
    Ok(conn)
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listener({})", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{WEFT_AUTH_FAILED, WEFT_WOULD_BLOCK};

    fn unique(tag: &str) -> String {
        // SAFETY: getpid has no preconditions.
        format!("weft-test-{}-{tag}", unsafe { libc::getpid() })
    }

    fn serve_once(l: &Listener, deadline: Deadline) -> Result<Vec<u8>> {
        let c = l.accept(deadline)?;
        let m = c.recv(Deadline::Never)?;
        c.send(&m)?;
        Ok(m)
    }

    fn talk(address: &str, key: Option<&[u8]>) -> Result<Vec<u8>> {
        let c = connect(address, key, Deadline::from_timeout_ns(10_000_000_000))?;
        c.send(b"hi")?;
        c.recv(Deadline::Never)
    }

    #[test]
    fn unix_abstract_and_tcp_round_trips() {
        let dir = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sock");
        for addr in [format!("unix:{}", path.display()), format!("unix:@{}", unique("abs")), "tcp:127.0.0.1:0".to_owned()] {
            let l = Listener::bind(&addr, None).unwrap();
            let actual = l.address().to_string();
            assert_eq!(l.accept(Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
            let client = std::thread::spawn(move || talk(&actual, None).unwrap());
            assert_eq!(serve_once(&l, Deadline::Never).unwrap(), b"hi");
            assert_eq!(client.join().unwrap(), b"hi");
        }
        assert!(!path.exists(), "the socket file is removed with its listener");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn existing_paths_and_ports_are_refused() {
        let path = std::env::temp_dir().join(unique("exists"));
        std::fs::write(&path, b"").unwrap();
        let e = Listener::bind(&format!("unix:{}", path.display()), None).unwrap_err();
        assert_eq!(e.code, WEFT_EXISTS);
        assert!(path.exists(), "a file the listener did not create stays");
        std::fs::remove_file(&path).unwrap();
        let l = Listener::bind("tcp:127.0.0.1:0", None).unwrap();
        assert_eq!(Listener::bind(&l.address().to_string(), None).unwrap_err().code, WEFT_EXISTS);
        let gone = format!("unix:@{}", unique("nobody"));
        assert_eq!(connect(&gone, None, Deadline::Never).unwrap_err().code, WEFT_NOT_FOUND);
    }

    #[test]
    fn authkeys_are_checked_and_the_listener_survives_a_bad_client() {
        let l = Listener::bind("tcp:127.0.0.1:0", Some(b"right")).unwrap();
        let addr = l.address().to_string();
        let client = std::thread::spawn(move || (talk(&addr, Some(b"wrong")).unwrap_err().code, talk(&addr, Some(b"right")).unwrap()));
        assert_eq!(l.accept(Deadline::Never).unwrap_err().code, WEFT_AUTH_FAILED);
        assert_eq!(serve_once(&l, Deadline::Never).unwrap(), b"hi");
        assert_eq!(client.join().unwrap(), (WEFT_AUTH_FAILED, b"hi".to_vec()));
    }
}
