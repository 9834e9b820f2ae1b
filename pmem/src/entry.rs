//! Log entry encoding and decoding (FORMAT.md §7).
//!
//! An entry is written once, before the tail that covers it, and never changed; its checksum is
//! computed when it is encoded and checked whenever it is read back (pair assertions).

use crate::codec::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, round_up};
use crate::constants::{ENTRY_HEADER_LEN, KEY_LEN_MAX};
use crate::error::{AppendError, EntryError};
use crate::types::{Epoch, Version};

/// What an entry does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put = 1,
    Delete = 2,
}

/// Bytes an entry with these lengths occupies, padding included.
#[inline]
pub const fn entry_len(key_len: usize, value_len: usize) -> u64 {
    ENTRY_HEADER_LEN as u64 + round_up((key_len + value_len) as u64, 8)
}

/// A decoded entry borrowing its key and value from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub op: Op,
    pub version: Version,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Bytes the entry occupies, padding included.
    pub len: u64,
    pub checksum: u32,
}

/// Checks the lengths of an entry about to be written.
pub fn check_entry(key: &[u8], value: &[u8], capacity: u64) -> Result<u64, AppendError> {
    if key.len() > KEY_LEN_MAX {
        return Err(AppendError::KeyTooLong(key.len()));
    }
    let len = entry_len(key.len(), value.len());
    if len > capacity || value.len() > u32::MAX as usize {
        return Err(AppendError::EntryTooLarge {
            entry: len,
            capacity,
        });
    }
    Ok(len)
}

/// Encodes an entry into `dst`, which must be exactly `entry_len(key.len(), value.len())` bytes.
/// Returns the checksum.
pub fn encode_entry(dst: &mut [u8], op: Op, key: &[u8], value: &[u8], version: Version) -> u32 {
    debug_assert_eq!(dst.len() as u64, entry_len(key.len(), value.len()));
    let value = if op == Op::Delete { &[][..] } else { value };
    dst[..ENTRY_HEADER_LEN].copy_from_slice(&header_fields(op, key.len(), value.len(), version));
    let body = ENTRY_HEADER_LEN;
    dst[body..body + key.len()].copy_from_slice(key);
    let body_end = body + key.len() + value.len();
    dst[body + key.len()..body_end].copy_from_slice(value);
    dst[body_end..].fill(0);
    seal(dst, body_end)
}

/// Appends an encoded entry to `dst` in one pass (no zero-fill first). Returns the checksum.
pub fn encode_entry_append(
    dst: &mut Vec<u8>,
    op: Op,
    key: &[u8],
    value: &[u8],
    version: Version,
) -> u32 {
    let value = if op == Op::Delete { &[][..] } else { value };
    let len = entry_len(key.len(), value.len()) as usize;
    let start = dst.len();
    dst.reserve(len);
    dst.extend_from_slice(&header_fields(op, key.len(), value.len(), version));
    dst.extend_from_slice(key);
    dst.extend_from_slice(value);
    let sum = seal(
        &mut dst[start..],
        ENTRY_HEADER_LEN + key.len() + value.len(),
    );
    dst.resize(start + len, 0);
    sum
}

/// The header of an entry with a zero checksum field.
fn header_fields(
    op: Op,
    key_len: usize,
    value_len: usize,
    version: Version,
) -> [u8; ENTRY_HEADER_LEN] {
    debug_assert!(key_len <= KEY_LEN_MAX);
    let mut h = [0u8; ENTRY_HEADER_LEN];
    h[4] = op as u8;
    put_u16(&mut h, 6, key_len as u16);
    put_u32(&mut h, 8, value_len as u32);
    put_u32(&mut h, 12, version.epoch.0);
    put_u64(&mut h, 16, version.seq);
    h
}

/// Computes the checksum of an encoded entry whose key and value end at `body_end` and stores
/// it. The checksummed bytes (header tail, key, value) are contiguous, so this is one pass.
fn seal(entry: &mut [u8], body_end: usize) -> u32 {
    let sum = crc32c::crc32c(&entry[4..body_end]);
    put_u32(entry, 0, sum);
    sum
}

/// The header fields of an entry, decoded without looking at key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub checksum: u32,
    pub op: Op,
    pub key_len: usize,
    pub value_len: usize,
    pub version: Version,
}

impl EntryHeader {
    /// Decodes the 24-byte header; checks op and flags but not the checksum.
    pub fn decode(b: &[u8]) -> Result<EntryHeader, EntryError> {
        if b.len() < ENTRY_HEADER_LEN {
            return Err(EntryError::Truncated);
        }
        let op = match b[4] {
            1 => Op::Put,
            2 => Op::Delete,
            other => return Err(EntryError::BadOp(other)),
        };
        if b[5] != 0 {
            return Err(EntryError::BadFlags(b[5]));
        }
        Ok(EntryHeader {
            checksum: get_u32(b, 0),
            op,
            key_len: usize::from(get_u16(b, 6)),
            value_len: get_u32(b, 8) as usize,
            version: Version {
                epoch: Epoch(get_u32(b, 12)),
                seq: get_u64(b, 16),
            },
        })
    }
    /// Bytes the whole entry occupies.
    pub fn len(&self) -> u64 {
        entry_len(self.key_len, self.value_len)
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Decodes and verifies the entry at the start of `b` (which may hold more bytes after it).
pub fn decode_entry(b: &[u8]) -> Result<Entry<'_>, EntryError> {
    let h = EntryHeader::decode(b)?;
    if h.op == Op::Delete && h.value_len != 0 {
        return Err(EntryError::BadFlags(b[5]));
    }
    let len = h.len();
    if (b.len() as u64) < len {
        return Err(EntryError::Truncated);
    }
    let key = &b[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + h.key_len];
    let value = &b[ENTRY_HEADER_LEN + h.key_len..ENTRY_HEADER_LEN + h.key_len + h.value_len];
    let computed = crc32c::crc32c(&b[4..ENTRY_HEADER_LEN + h.key_len + h.value_len]);
    if computed != h.checksum {
        return Err(EntryError::Checksum {
            stored: h.checksum,
            computed,
        });
    }
    Ok(Entry {
        op: h.op,
        version: h.version,
        key,
        value,
        len,
        checksum: h.checksum,
    })
}

/// Iterates the entries packed in `bytes` (the part of an entry area below its tail), yielding
/// each entry with its offset; `base` is the entry-area offset of `bytes[0]`. Stops at the first
/// invalid entry, which it yields as an error.
pub struct EntryIter<'a> {
    bytes: &'a [u8],
    base: u64,
    at: usize,
    failed: bool,
}

impl<'a> EntryIter<'a> {
    pub fn new(bytes: &'a [u8], base: u64) -> EntryIter<'a> {
        EntryIter {
            bytes,
            base,
            at: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<(u64, Entry<'a>), (u64, EntryError)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let offset = self.base + self.at as u64;
        match decode_entry(&self.bytes[self.at..]) {
            Ok(entry) => {
                self.at += entry.len as usize;
                Some(Ok((offset, entry)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err((offset, e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(op: Op, key: &[u8], value: &[u8], seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; entry_len(key.len(), value.len()) as usize];
        encode_entry(
            &mut b,
            op,
            key,
            value,
            Version {
                epoch: Epoch(3),
                seq,
            },
        );
        b
    }

    #[test]
    fn round_trip_and_padding() {
        let b = encode(Op::Put, b"key", b"hello", 7);
        assert_eq!(b.len(), 24 + 8);
        let e = decode_entry(&b).expect("valid");
        assert_eq!(
            (e.op, e.key, e.value, e.version),
            (
                Op::Put,
                &b"key"[..],
                &b"hello"[..],
                Version {
                    epoch: Epoch(3),
                    seq: 7
                }
            )
        );
        let d = encode(Op::Delete, b"", b"ignored", 8);
        let e = decode_entry(&d).expect("valid");
        assert_eq!((e.op, e.key, e.value), (Op::Delete, &b""[..], &b""[..]));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        // 8 + 15 bytes of key and value leave one byte of padding at the end.
        let b = encode(Op::Put, b"some key", b"some value byte", 42);
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut damaged = b.clone();
                damaged[byte] ^= 1 << bit;
                let result = decode_entry(&damaged);
                // Flipping padding bits is the only change that leaves a valid entry.
                let in_padding = byte >= 24 + 8 + 15;
                assert_eq!(result.is_ok(), in_padding, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn iterator_stops_at_damage() {
        let mut bytes = encode(Op::Put, b"a", b"1", 1);
        bytes.extend(encode(Op::Put, b"b", b"2", 2));
        let second = bytes.len();
        bytes.extend(encode(Op::Put, b"c", b"3", 3));
        bytes[second + 25] ^= 0xFF; // the value byte of the third entry
        let items: Vec<_> = EntryIter::new(&bytes, 100).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(
            matches!(items[2], Err((off, EntryError::Checksum { .. })) if off == 100 + second as u64)
        );
    }
}
