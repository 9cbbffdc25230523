//! What travels between a parent, the fork server and a child: the job a child runs (its
//! target, argument, name, flags and the roles of the descriptors that come with it), the
//! server's reply, and the frames a child and the server write on the result channel.
//!
//! Every message is a frame: a little-endian `u64` length, then that many bytes. Descriptors
//! travel attached (`SCM_RIGHTS`) to a frame's first byte. Decoding checks every length.

use super::target::Located;
use crate::fd;
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_CORRUPTED};
use crate::time::Deadline;
use std::os::fd::{OwnedFd, RawFd};

/// Largest control message (a job's argument bytes included).
pub const MAX_FRAME: u64 = 1 << 40;

/// Tag of a spawned process's first message: run one job.
pub const BOOT_JOB: u8 = b'J';
/// Tag of a spawned process's first message: become the fork server.
pub const BOOT_SERVER: u8 = b'S';

/// A result-channel frame from the child: the task's outcome.
pub const FRAME_OUTCOME: u8 = b'R';
/// A result-channel frame from the fork server: how the child ended.
pub const FRAME_EXIT: u8 = b'X';

/// What a child must run, and with what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The task function.
    pub target: Located,
    /// The task's argument bytes.
    pub arg: Vec<u8>,
    /// The child's process name.
    pub name: String,
    /// Python's `_identity` path of the child ("1:2"), for naming its own children.
    pub identity: String,
    /// The parent's pid (the fork server is not the parent that counts).
    pub parent_pid: i32,
    /// Die with the parent; the lifeline's read end then follows the result channel among the
    /// descriptors.
    pub daemon: bool,
    /// Whether the default space's descriptor follows.
    pub has_space: bool,
    /// How many user descriptors come last.
    pub user_fds: u32,
}

/// Appends `bytes` with a `u64` length prefix.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over a received message; every read is bounds-checked.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(Error::new(WEFT_CORRUPTED, "truncated process message"));
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    /// A little-endian i32.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| Error::new(WEFT_CORRUPTED, "oversized field"))?;
        self.take(n)
    }
    /// Length-prefixed UTF-8.
    pub fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Error::new(WEFT_CORRUPTED, "process message text is not UTF-8"))
    }
}

impl Job {
    /// The message body (without the frame length).
    pub fn encode(&self, tag: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.arg.len());
        out.push(tag);
        put_bytes(&mut out, self.target.object.as_bytes());
        out.extend_from_slice(&self.target.offset.to_le_bytes());
        put_bytes(&mut out, self.target.symbol.as_deref().unwrap_or("").as_bytes());
        for v in self.target.identity {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_bytes(&mut out, &self.arg);
        put_bytes(&mut out, self.name.as_bytes());
        put_bytes(&mut out, self.identity.as_bytes());
        out.extend_from_slice(&self.parent_pid.to_le_bytes());
        out.push(self.daemon as u8 | (self.has_space as u8) << 2);
        out.extend_from_slice(&self.user_fds.to_le_bytes());
        out
    }

    /// Decodes a body whose tag byte was already read.
    pub fn decode(r: &mut Reader<'_>) -> Result<Job> {
        let object = r.string()?;
        let offset = r.u64()?;
        let symbol = r.string()?;
        let mut identity = [0u64; 4];
        for v in &mut identity {
            *v = r.u64()?;
        }
        let arg = r.bytes()?.to_vec();
        let name = r.string()?;
        let ident = r.string()?;
        let parent_pid = r.i32()?;
        let flags = r.u8()?;
        let user_fds = r.u32()?;
        Ok(Job {
            target: Located { object, offset, symbol: (!symbol.is_empty()).then_some(symbol), identity },
            arg,
            name,
            identity: ident,
            parent_pid,
            daemon: flags & 1 != 0,
            has_space: flags & 4 != 0,
            user_fds,
        })
    }

    /// How many descriptors travel with this job.
    pub fn fd_count(&self) -> usize {
        1 + self.daemon as usize + self.has_space as usize + self.user_fds as usize
    }
}

/// Sends one frame carrying `body` and `fds` on the stream socket `sock`.
pub fn send_frame(sock: RawFd, body: &[u8], fds: &[RawFd]) -> Result<()> {
    let mut msg = Vec::with_capacity(8 + body.len());
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(body);
    fd::send_with_fds(sock, &msg, fds, Deadline::Never)
}

/// Receives one frame and up to `max_fds` descriptors from the blocking stream socket `sock`.
/// End of file before a whole frame gives `WEFT_CLOSED`.
pub fn recv_frame(sock: RawFd, max_fds: usize) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut head = [0u8; 8];
    let (n, fds) = fd::recv_with_fds(sock, &mut head, max_fds).map_err(|e| {
        if e.errno == libc::ECONNRESET {
            Error::new(WEFT_CLOSED, "the peer closed the channel")
        } else {
            e
        }
    })?;
    if n == 0 {
        return Err(Error::new(WEFT_CLOSED, "the peer closed the channel"));
    }
    read_exact(sock, &mut head[n..])?;
    let len = u64::from_le_bytes(head);
    if len > MAX_FRAME {
        return Err(Error::new(WEFT_CORRUPTED, format!("process message of {len} bytes is too large")));
    }
    let mut body = vec![0u8; len as usize];
    read_exact(sock, &mut body)?;
    Ok((body, fds))
}

fn read_exact(sock: RawFd, mut buf: &mut [u8]) -> Result<()> {
    while !buf.is_empty() {
        let n = fd::read(sock, buf)?;
        if n == 0 {
            return Err(Error::new(WEFT_CLOSED, "the peer closed the channel mid-message"));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

/// The outcome frame a child writes: tag, status, then the result bytes or the message.
pub fn outcome_frame(status: i32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + payload.len());
    body.push(FRAME_OUTCOME);
    body.extend_from_slice(&status.to_le_bytes());
    body.extend_from_slice(payload);
    body
}

/// The exit frame the fork server writes: tag and the raw wait status pair.
pub fn exit_frame(code: super::ExitStatus) -> Vec<u8> {
    let (kind, value) = match code {
        super::ExitStatus::Code(c) => (0u8, c),
        super::ExitStatus::Signal(s) => (1u8, s),
    };
    let mut body = vec![FRAME_EXIT, kind];
    body.extend_from_slice(&value.to_le_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip() {
        let job = Job {
            target: Located { object: "/lib/x.so".into(), offset: 0x1234, symbol: Some("task".into()), identity: [1, 2, 3, 4] },
            arg: vec![9; 1000],
            name: "Process-3".into(),
            identity: "3".into(),
            parent_pid: 42,
            daemon: true,
            has_space: false,
            user_fds: 2,
        };
        let body = job.encode(BOOT_JOB);
        let mut r = Reader::new(&body);
        assert_eq!(r.u8().unwrap(), BOOT_JOB);
        assert_eq!(Job::decode(&mut r).unwrap(), job);
        assert_eq!(job.fd_count(), 4);
        // Every truncation is refused, never a panic.
        for cut in 0..body.len() {
            let mut r = Reader::new(&body[1..cut.max(1)]);
            assert!(Job::decode(&mut r).is_err() || cut == body.len());
        }
    }
}
