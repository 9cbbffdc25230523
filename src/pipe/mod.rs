//! Connections: framed byte messages over sockets (Python's `multiprocessing.Pipe` and
//! `Connection`), descriptor passing (`multiprocessing.reduction.send_handle`), and
//! `Listener`/`Client` (`multiprocessing.connection`) with a mutual HMAC-SHA256 authkey
//! handshake.
//!
//! - [`frame`]: the wire format (8-byte little-endian length, then the payload)
//! - [`receiver`]: the receiving state machine (user-space buffer, partial messages)
//! - [`connection`]: [`Connection`] and [`pipe`]
//! - [`address`]: `"unix:/path"`, `"unix:@abstract"`, `"tcp:host:port"`
//! - [`listener`]: [`Listener`] and [`connect`]
//! - [`auth`]: the challenge–response handshake
//! - `sys`: the socket calls underneath

pub mod address;
pub mod auth;
pub mod connection;
pub mod frame;
pub mod listener;
pub mod receiver;
mod sys;

pub use address::Address;
pub use connection::{pipe, Connection};
pub use listener::{connect, Listener};
pub use receiver::Filled;
