//! Listener and client addresses as strings: `"unix:/path/to/sock"` (a socket file),
//! `"unix:@name"` (Linux's abstract namespace: no file), `"tcp:HOST:PORT"` with an IPv4
//! address, a bracketed IPv6 address (`"tcp:[::1]:PORT"`) or a host name (its first address).

use crate::status::{Error, Result, WEFT_NOT_FOUND};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Longest Unix socket path or abstract name (`sun_path` holds 108 bytes, one for the NUL or
/// the abstract marker).
const MAX_UNIX_LEN: usize = 107;

/// Where `sun_path` starts in a `sockaddr_un`.
fn sun_path_offset() -> usize {
    // SAFETY: all-zero is a valid sockaddr_un; only addresses are compared.
    let un: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    un.sun_path.as_ptr() as usize - (&un as *const libc::sockaddr_un as usize)
}

/// A parsed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix-domain socket file.
    Unix(PathBuf),
    /// A name in the abstract Unix-domain namespace (without the leading `@`).
    Abstract(Vec<u8>),
    /// A TCP endpoint.
    Tcp(SocketAddr),
}

impl Address {
    /// Parses `"unix:/path"`, `"unix:@name"` or `"tcp:host:port"`. Errors:
    /// `WEFT_INVALID_ARGUMENT` (unknown scheme, empty or too long name, bad port),
    /// `WEFT_NOT_FOUND` (a host name that does not resolve).
    pub fn parse(s: &str) -> Result<Address> {
        if let Some(rest) = s.strip_prefix("unix:") {
            let (name, abstract_ns) = match rest.strip_prefix('@') {
                Some(name) => (name, true),
                None => (rest, false),
            };
            if name.is_empty() || name.len() > MAX_UNIX_LEN || name.contains('\0') {
                return Err(Error::invalid(format!(
                    "bad Unix socket address {s:?}: the name must have 1 to {MAX_UNIX_LEN} bytes and no NUL"
                )));
            }
            return Ok(if abstract_ns { Address::Abstract(name.as_bytes().to_vec()) } else { Address::Unix(PathBuf::from(name)) });
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            if let Ok(a) = rest.parse::<SocketAddr>() {
                return Ok(Address::Tcp(a));
            }
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| Error::invalid(format!("bad TCP address {s:?}: expected tcp:HOST:PORT")))?;
            let port: u16 = port.parse().map_err(|_| Error::invalid(format!("bad TCP port in {s:?}")))?;
            if host.is_empty() || host.starts_with('[') {
                return Err(Error::invalid(format!("bad TCP host in {s:?}")));
            }
            let first = (host, port).to_socket_addrs().ok().and_then(|mut all| all.next());
            return first.map(Address::Tcp).ok_or_else(|| Error::new(WEFT_NOT_FOUND, format!("cannot resolve the host of {s:?}")));
        }
        Err(Error::invalid(format!("bad address {s:?}: expected unix:/path, unix:@name or tcp:host:port")))
    }

    /// The socket address family.
    pub(super) fn family(&self) -> libc::c_int {
        match self {
            Address::Unix(_) | Address::Abstract(_) => libc::AF_UNIX,
            Address::Tcp(SocketAddr::V4(_)) => libc::AF_INET,
            Address::Tcp(SocketAddr::V6(_)) => libc::AF_INET6,
        }
    }

    /// The kernel's form of the address.
    pub(super) fn to_sockaddr(&self) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match self {
            Address::Unix(_) | Address::Abstract(_) => {
                // SAFETY: sockaddr_storage is larger than and as aligned as sockaddr_un.
                let un = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
                un.sun_family = libc::AF_UNIX as libc::sa_family_t;
                let (skip, name) = match self {
                    Address::Unix(p) => (0, p.as_os_str().as_bytes()),
                    Address::Abstract(n) => (1, n.as_slice()),
                    Address::Tcp(_) => unreachable!(),
                };
                for (dst, &b) in un.sun_path[skip..].iter_mut().zip(name) {
                    *dst = b as libc::c_char;
                }
                let path_offset = sun_path_offset();
                // A path includes its NUL; an abstract name is exactly its bytes.
                path_offset + skip + name.len() + (1 - skip)
            }
            Address::Tcp(SocketAddr::V4(a)) => {
                // SAFETY: sockaddr_storage is larger than and as aligned as sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            Address::Tcp(SocketAddr::V6(a)) => {
                // SAFETY: sockaddr_storage is larger than and as aligned as sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    /// A TCP address from the kernel's form (`getsockname`).
    pub(super) fn tcp_from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Abstract(n) => write!(f, "unix:@{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::WEFT_INVALID_ARGUMENT;

    #[test]
    fn parses_and_prints() {
        for s in ["unix:/tmp/x.sock", "unix:rel/x", "unix:@weft-test", "tcp:127.0.0.1:0", "tcp:[::1]:8080"] {
            assert_eq!(Address::parse(s).unwrap().to_string(), s);
        }
        assert!(Address::parse("tcp:localhost:80").unwrap().family() != libc::AF_UNIX);
        let long = format!("unix:/{}", "a".repeat(MAX_UNIX_LEN));
        for bad in ["", "unix:", "unix:@", "udp:1.2.3.4:5", "tcp:1.2.3.4", "tcp:1.2.3.4:99999", "tcp::80", "tcp:[::1:80", &long] {
            assert_eq!(Address::parse(bad).unwrap_err().code, WEFT_INVALID_ARGUMENT, "{bad:?}");
        }
    }

    #[test]
    fn sockaddr_lengths() {
        let off = sun_path_offset() as libc::socklen_t;
        assert_eq!(Address::parse("unix:/ab").unwrap().to_sockaddr().1, off + 4);
        assert_eq!(Address::parse("unix:@ab").unwrap().to_sockaddr().1, off + 3);
        let (s, _) = Address::parse("tcp:[::1]:7").unwrap().to_sockaddr();
        assert_eq!(Address::tcp_from_sockaddr(&s).unwrap().to_string(), "[::1]:7");
        let (s, _) = Address::parse("tcp:10.1.2.3:9").unwrap().to_sockaddr();
        assert_eq!(Address::tcp_from_sockaddr(&s).unwrap().to_string(), "10.1.2.3:9");
    }
}
