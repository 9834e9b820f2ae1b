//! The on-pool encoding of the index (FORMAT.md §8): table headers, bucket slots and link words.
//! The algorithms that use them live in the `index` crate; the bytes are specified here, beside
//! every other persistent byte.

use crate::codec::{get_u32, get_u64, put_u32, put_u64};
use crate::types::PoolOffset;

/// Table header magic.
pub const TABLE_MAGIC: [u8; 8] = *b"DIDXTB01";
/// Bytes of a table header.
pub const TABLE_HEADER_LEN: u64 = 64;
/// Bytes of a bucket (one line) and of a pair.
pub const BUCKET_LEN: u64 = 64;
pub const PAIR_LEN: u64 = 128;
/// Slot words per bucket; the eighth word is the link.
pub const SLOTS_PER_BUCKET: usize = 7;
/// Largest table: 2^40 pairs.
pub const PAIRS_LOG2_MAX: u32 = 40;

/// The slot or link word's FROZEN bit.
pub const FROZEN: u64 = 1 << 63;
/// A slot's INDIRECT bit.
pub const INDIRECT: u64 = 1 << 62;
/// A link word's MIGRATED bit.
pub const MIGRATED: u64 = 1 << 62;
const TAG_SHIFT: u32 = 46;
const TAG_MASK: u64 = 0xFFFF;
const OFFSET_MASK: u64 = (1 << 46) - 1;

/// The tag a key with hash `h` carries in its slot: the top 16 bits of the hash.
#[inline]
pub const fn tag_of(h: u64) -> u16 {
    (h >> 48) as u16
}

/// Builds a slot word naming the entry (or cell, with `indirect`) at `off`.
#[inline]
pub const fn slot_word(tag: u16, off: PoolOffset, indirect: bool) -> u64 {
    debug_assert!(off.0.is_multiple_of(8) && off.0 != 0);
    ((tag as u64) << TAG_SHIFT) | ((off.0 / 8) & OFFSET_MASK) | if indirect { INDIRECT } else { 0 }
}

/// A decoded slot word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub frozen: bool,
    pub indirect: bool,
    pub tag: u16,
    /// `None` when the slot is empty.
    pub target: Option<PoolOffset>,
}

impl Slot {
    #[inline]
    pub const fn decode(w: u64) -> Slot {
        let off = (w & OFFSET_MASK) * 8;
        Slot {
            frozen: w & FROZEN != 0,
            indirect: w & INDIRECT != 0,
            tag: ((w >> TAG_SHIFT) & TAG_MASK) as u16,
            target: if off == 0 {
                None
            } else {
                Some(PoolOffset(off))
            },
        }
    }
}

/// The 16-bit tag of table version `version` carried by its link words: never 0, so zeroed
/// memory never looks like a bucket of any table.
#[inline]
pub const fn version_tag(version: u64) -> u16 {
    (version.wrapping_sub(1) % 0xFFFF + 1) as u16
}

/// Builds a link word for a table of version `version`.
#[inline]
pub const fn link_word(version: u64, next: Option<PoolOffset>) -> u64 {
    let off = match next {
        Some(o) => (o.0 / 8) & OFFSET_MASK,
        None => 0,
    };
    ((version_tag(version) as u64) << TAG_SHIFT) | off
}

/// A decoded link word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub frozen: bool,
    pub migrated: bool,
    pub version_tag: u16,
    pub next: Option<PoolOffset>,
}

impl Link {
    #[inline]
    pub const fn decode(w: u64) -> Link {
        let off = (w & OFFSET_MASK) * 8;
        Link {
            frozen: w & FROZEN != 0,
            migrated: w & MIGRATED != 0,
            version_tag: ((w >> TAG_SHIFT) & TAG_MASK) as u16,
            next: if off == 0 {
                None
            } else {
                Some(PoolOffset(off))
            },
        }
    }
    /// Whether this link belongs to a table of version `version`.
    #[inline]
    pub const fn belongs_to(&self, version: u64) -> bool {
        self.version_tag == version_tag(version)
    }
}

/// A table header (FORMAT.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableHeader {
    pub version: u64,
    pub pairs_log2: u32,
    pub hash_algo: u32,
    pub pairs_off: PoolOffset,
}

impl TableHeader {
    /// Number of bucket pairs.
    pub const fn pairs(&self) -> u64 {
        1 << self.pairs_log2
    }
    /// Bytes of the pair array.
    pub const fn pairs_len(&self) -> u64 {
        self.pairs() * PAIR_LEN
    }
    /// Where pair `p` starts.
    pub const fn pair_off(&self, p: u64) -> PoolOffset {
        PoolOffset(self.pairs_off.0 + p * PAIR_LEN)
    }
    /// The pair a key with hash `h` lives in.
    pub const fn pair_of(&self, h: u64) -> u64 {
        h & (self.pairs() - 1)
    }

    pub fn encode(&self) -> [u8; TABLE_HEADER_LEN as usize] {
        let mut b = [0u8; TABLE_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&TABLE_MAGIC);
        put_u64(&mut b, 8, self.version);
        put_u32(&mut b, 16, self.pairs_log2);
        put_u32(&mut b, 20, self.hash_algo);
        put_u64(&mut b, 24, self.pairs_off.0);
        let sum = crc32c::crc32c(&b[..60]);
        put_u32(&mut b, 60, sum);
        b
    }

    /// Decodes a header; `None` if the bytes are not a valid header (torn, freed or foreign).
    pub fn decode(b: &[u8]) -> Option<TableHeader> {
        if b.len() < TABLE_HEADER_LEN as usize || b[0..8] != TABLE_MAGIC {
            return None;
        }
        if crc32c::crc32c(&b[..60]) != get_u32(b, 60) {
            return None;
        }
        let header = TableHeader {
            version: get_u64(b, 8),
            pairs_log2: get_u32(b, 16),
            hash_algo: get_u32(b, 20),
            pairs_off: PoolOffset(get_u64(b, 24)),
        };
        if header.pairs_log2 > PAIRS_LOG2_MAX || !header.pairs_off.0.is_multiple_of(PAIR_LEN) {
            return None;
        }
        Some(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_and_link_round_trip() {
        let w = slot_word(0xBEEF, PoolOffset(0x1234_5678), false);
        let s = Slot::decode(w);
        assert_eq!(
            (s.frozen, s.indirect, s.tag, s.target),
            (false, false, 0xBEEF, Some(PoolOffset(0x1234_5678)))
        );
        let s = Slot::decode(w | FROZEN);
        assert!(s.frozen);
        assert!(Slot::decode(0).target.is_none());
        let l = Link::decode(link_word(0x1_0003, Some(PoolOffset(4096))) | MIGRATED);
        assert!(
            l.migrated && !l.frozen && l.belongs_to(0x1_0003) && l.next == Some(PoolOffset(4096))
        );
        assert!(!l.belongs_to(3));
        assert_ne!(version_tag(0xFFFF), 0);
        assert_eq!(version_tag(1), version_tag(0x1_0000));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = TableHeader {
            version: 9,
            pairs_log2: 10,
            hash_algo: 1,
            pairs_off: PoolOffset(1 << 20),
        };
        let mut b = h.encode();
        assert_eq!(TableHeader::decode(&b), Some(h));
        b[9] ^= 1;
        assert_eq!(TableHeader::decode(&b), None);
    }
}
