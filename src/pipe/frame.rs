//! The wire format of a connection: every message is an 8-byte little-endian `u64` length
//! followed by that many payload bytes. The length `u64::MAX` (which no real payload can have)
//! marks a descriptor message: no payload, one descriptor attached (`SCM_RIGHTS`) to the
//! header's bytes.

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;

/// The header value of a descriptor message.
const DESCRIPTOR_MARK: u64 = u64::MAX;

/// What a frame header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// A byte message of this many bytes.
    Data(u64),
    /// A descriptor message.
    Descriptor,
}

/// The header of a byte message of `len` bytes.
pub fn data_header(len: usize) -> [u8; HEADER_LEN] {
    (len as u64).to_le_bytes()
}

/// The header of a descriptor message.
pub fn descriptor_header() -> [u8; HEADER_LEN] {
    DESCRIPTOR_MARK.to_le_bytes()
}

/// Decodes a header.
pub fn decode(bytes: [u8; HEADER_LEN]) -> Header {
    match u64::from_le_bytes(bytes) {
        DESCRIPTOR_MARK => Header::Descriptor,
        len => Header::Data(len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(decode(data_header(0)), Header::Data(0));
        assert_eq!(decode(data_header(0x0102_0304)), Header::Data(0x0102_0304));
        assert_eq!(data_header(1), [1, 0, 0, 0, 0, 0, 0, 0], "little-endian");
        assert_eq!(decode(descriptor_header()), Header::Descriptor);
    }
}
