//! Little-endian encode/decode helpers shared by every on-disk structure.
//!
//! Encoding appends to a `Vec<u8>`; decoding consumes a `&mut &[u8]` and fails
//! with [`DecodeError`] instead of panicking on short or malformed input.

use thiserror::Error;

/// Why bytes could not be decoded. Always means corruption or a foreign file:
/// the caller attaches where (segment, offset) the bytes came from.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated: needed {needed} bytes, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("bad magic")]
    Magic,
    #[error("unsupported format version {0}")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    #[error("{0} does not decompress to its length and checksum")]
    Damaged(&'static str),
}

pub type DecodeResult<T> = Result<T, DecodeError>;

pub fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}
pub fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub fn put_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Takes `n` bytes from the front of `input`.
pub fn take<'a>(input: &mut &'a [u8], n: usize) -> DecodeResult<&'a [u8]> {
    if input.len() < n {
        return Err(DecodeError::Truncated {
            needed: n,
            available: input.len(),
        });
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> DecodeResult<[u8; N]> {
    let bytes = take(input, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

pub fn get_u8(input: &mut &[u8]) -> DecodeResult<u8> {
    Ok(take_array::<1>(input)?[0])
}
pub fn get_u16(input: &mut &[u8]) -> DecodeResult<u16> {
    Ok(u16::from_le_bytes(take_array(input)?))
}
pub fn get_u32(input: &mut &[u8]) -> DecodeResult<u32> {
    Ok(u32::from_le_bytes(take_array(input)?))
}
pub fn get_u64(input: &mut &[u8]) -> DecodeResult<u64> {
    Ok(u64::from_le_bytes(take_array(input)?))
}
pub fn get_i64(input: &mut &[u8]) -> DecodeResult<i64> {
    Ok(i64::from_le_bytes(take_array(input)?))
}
pub fn get_bytes<const N: usize>(input: &mut &[u8]) -> DecodeResult<[u8; N]> {
    take_array(input)
}

/// Reads a u32 at a fixed position of a buffer known to be long enough.
pub fn u32_at(buf: &[u8], pos: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[pos..pos + 4]);
    u32::from_le_bytes(b)
}

/// Checks that a CRC32C stored in a structure matches its bytes.
pub fn verify_crc(stored: u32, bytes: &[u8]) -> DecodeResult<()> {
    let computed = crc32c::crc32c(bytes);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut buf = Vec::new();
        put_u8(&mut buf, 7);
        put_u16(&mut buf, 0xBEEF);
        put_u32(&mut buf, 0xDEAD_BEEF);
        put_u64(&mut buf, u64::MAX - 1);
        put_i64(&mut buf, -5);
        let mut input = &buf[..];
        assert_eq!(get_u8(&mut input).unwrap(), 7);
        assert_eq!(get_u16(&mut input).unwrap(), 0xBEEF);
        assert_eq!(get_u32(&mut input).unwrap(), 0xDEAD_BEEF);
        assert_eq!(get_u64(&mut input).unwrap(), u64::MAX - 1);
        assert_eq!(get_i64(&mut input).unwrap(), -5);
        assert!(input.is_empty());
        assert_eq!(
            get_u32(&mut input),
            Err(DecodeError::Truncated {
                needed: 4,
                available: 0
            })
        );
    }
}
