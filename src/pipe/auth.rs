//! The authkey handshake of listeners and clients (Python's `deliver_challenge` /
//! `answer_challenge`), mutual and with HMAC-SHA256:
//!
//! 1. the listener sends `#CHALLENGE#` and 40 random bytes; the client answers
//!    HMAC(key, client label ‖ nonce); the listener checks it in constant time and replies
//!    `#WELCOME#` or `#FAILURE#`;
//! 2. the same with the roles swapped (server label), so each side knows the other holds the
//!    key. The labels keep one side's answers from ever serving as the other's.
//!
//! Handshake messages are ordinary frames of at most [`MAX_MESSAGE`] bytes; a longer one is
//! rejected from its header, without reading it. Every wait honours the caller's deadline.

use super::connection::Connection;
use super::receiver::Filled;
use super::sys;
use crate::status::{Error, Result, WEFT_AUTH_FAILED, WEFT_INVALID_STATE};
use crate::time::Deadline;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest handshake message accepted.
pub const MAX_MESSAGE: usize = 256;
/// Random bytes of a challenge sent.
const NONCE_LEN: usize = 40;
/// Fewest random bytes a received challenge must have.
const MIN_NONCE_LEN: usize = 32;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const CLIENT_LABEL: &[u8] = b"weft-auth-v1 client answer\0";
const SERVER_LABEL: &[u8] = b"weft-auth-v1 server answer\0";

/// A shared secret; its bytes are overwritten when it is dropped.
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// A copy of `key` (any bytes, any length).
    pub fn new(key: &[u8]) -> AuthKey {
        AuthKey(key.to_vec())
    }

    fn answer(&self, label: &[u8], nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        mac.update(nonce);
        mac
    }
}

impl Drop for AuthKey {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, exclusive reference; the volatile write is not elided.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

fn failed(message: &'static str) -> Error {
    Error::new(WEFT_AUTH_FAILED, message)
}

/// Receives one handshake message of at most [`MAX_MESSAGE`] bytes.
fn recv_small(conn: &Connection, deadline: Deadline) -> Result<Vec<u8>> {
    let mut buf = [0u8; MAX_MESSAGE];
    match conn.recv_into(&mut buf, deadline) {
        Ok(Filled::Message(n)) => Ok(buf[..n].to_vec()),
        Ok(Filled::TooSmall(_)) => Err(failed("the peer sent an oversized authentication message")),
        Err(e) if e.code == WEFT_INVALID_STATE => Err(failed("the peer sent a descriptor during authentication")),
        Err(e) => Err(e),
    }
}

/// Challenges the peer, who must answer with `label`.
fn deliver_challenge(conn: &Connection, key: &AuthKey, label: &[u8], deadline: Deadline) -> Result<()> {
    let mut challenge = CHALLENGE.to_vec();
    challenge.resize(CHALLENGE.len() + NONCE_LEN, 0);
    sys::random_bytes(&mut challenge[CHALLENGE.len()..])?;
    conn.send(&challenge)?;
    let answer = recv_small(conn, deadline)?;
    if key.answer(label, &challenge[CHALLENGE.len()..]).verify_slice(&answer).is_err() {
        let _ = conn.send(FAILURE);
        return Err(failed("the peer's answer to the authentication challenge is wrong (a different authkey)"));
    }
    conn.send(WELCOME)
}

/// Answers the peer's challenge with `label` and waits for its verdict.
fn answer_challenge(conn: &Connection, key: &AuthKey, label: &[u8], deadline: Deadline) -> Result<()> {
    let challenge = recv_small(conn, deadline)?;
    let nonce = challenge
        .strip_prefix(CHALLENGE)
        .filter(|n| n.len() >= MIN_NONCE_LEN)
        .ok_or_else(|| failed("the peer did not send a valid authentication challenge"))?;
    conn.send(&key.answer(label, nonce).finalize().into_bytes())?;
    match recv_small(conn, deadline)? {
        v if v == WELCOME => Ok(()),
        v if v == FAILURE => Err(failed("the peer rejected our authkey")),
        _ => Err(failed("the peer sent an unexpected authentication verdict")),
    }
}

/// The listener's side: challenge the client, then answer its challenge.
pub(super) fn serve(conn: &Connection, key: &AuthKey, deadline: Deadline) -> Result<()> {
    deliver_challenge(conn, key, CLIENT_LABEL, deadline)?;
    answer_challenge(conn, key, SERVER_LABEL, deadline)
}

/// The client's side: answer the listener's challenge, then challenge it.
pub(super) fn join(conn: &Connection, key: &AuthKey, deadline: Deadline) -> Result<()> {
    answer_challenge(conn, key, CLIENT_LABEL, deadline)?;
    deliver_challenge(conn, key, SERVER_LABEL, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::pipe;
    use crate::status::{WEFT_TIMEOUT, WEFT_OK};

    fn handshake(server_key: &[u8], client_key: &[u8]) -> (i32, i32) {
        let (a, b) = pipe(true).unwrap();
        let sk = AuthKey::new(server_key);
        let code = |r: Result<()>| r.err().map_or(WEFT_OK, |e| e.code);
        let d = Deadline::from_timeout_ns(10_000_000_000);
        let server = std::thread::spawn(move || code(serve(&a, &sk, d)));
        let client = code(join(&b, &AuthKey::new(client_key), d));
        (server.join().unwrap(), client)
    }

    #[test]
    fn matching_keys_pass_both_ways() {
        assert_eq!(handshake(b"secret", b"secret"), (WEFT_OK, WEFT_OK));
        assert_eq!(handshake(b"", b""), (WEFT_OK, WEFT_OK));
    }

    #[test]
    fn different_keys_fail_on_both_sides() {
        assert_eq!(handshake(b"secret", b"guess"), (WEFT_AUTH_FAILED, WEFT_AUTH_FAILED));
    }

    #[test]
    fn a_server_that_cannot_answer_is_caught_by_the_client() {
        // The client passes phase 1 but gets a wrong answer to its own challenge.
        let (a, b) = pipe(true).unwrap();
        let key = AuthKey::new(b"k");
        let server = std::thread::spawn(move || {
            deliver_challenge(&a, &AuthKey::new(b"k"), CLIENT_LABEL, Deadline::Never).unwrap();
            let challenge = recv_small(&a, Deadline::Never).unwrap();
            // Reflecting the client's own answer label must not work.
            a.send(&AuthKey::new(b"k").answer(CLIENT_LABEL, &challenge[CHALLENGE.len()..]).finalize().into_bytes()).unwrap();
            recv_small(&a, Deadline::Never).unwrap()
        });
        assert_eq!(join(&b, &key, Deadline::Never).unwrap_err().code, WEFT_AUTH_FAILED);
        assert_eq!(server.join().unwrap(), FAILURE);
    }

    #[test]
    fn oversized_or_silent_peers_are_rejected_cheaply() {
        let (a, b) = pipe(true).unwrap();
        // A header announcing 1 GiB: rejected from the header alone.
        crate::fd::send_all(a.fd(), &[&super::super::frame::data_header(1 << 30)], Deadline::Never).unwrap();
        let e = join(&b, &AuthKey::new(b"k"), Deadline::Never).unwrap_err();
        assert_eq!(e.code, WEFT_AUTH_FAILED);
        // A silent peer: the deadline holds.
        let (_c, d) = pipe(true).unwrap();
        let e = join(&d, &AuthKey::new(b"k"), Deadline::from_timeout_ns(20_000_000)).unwrap_err();
        assert_eq!(e.code, WEFT_TIMEOUT);
        // A short challenge is refused.
        let (e1, e2) = pipe(true).unwrap();
        e1.send(b"#CHALLENGE#short").unwrap();
        assert_eq!(join(&e2, &AuthKey::new(b"k"), Deadline::Never).unwrap_err().code, WEFT_AUTH_FAILED);
    }
}
