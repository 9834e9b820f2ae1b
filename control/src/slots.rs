//! Key-to-slot routing: CRC16 of the key, honouring hash tags, exactly as Redis Cluster computes it.
//!
//! Both functions are pure and total: every byte string, including the empty one, has a slot, and
//! the slot is always below [`SLOT_COUNT`](crate::types::SLOT_COUNT). Matching Redis bit for bit
//! lets cluster-aware Redis clients route to dinomo cores without knowing they are not Redis.

use crate::types::Slot;

/// The CCITT polynomial x^16 + x^12 + x^5 + 1, used unreflected (the XMODEM variant).
const CRC16_POLY: u16 = 0x1021;

/// CRC of every one-byte message, so the checksum advances a whole byte per table lookup.
const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        // The table index is the byte that enters the register's top; shift it through eight
        // rounds of polynomial division.
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ CRC16_POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// CRC16-XMODEM of `bytes`: polynomial 0x1021, initial value 0, no reflection, no final XOR.
#[must_use]
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let index = usize::from((crc >> 8) as u8 ^ byte);
        (crc << 8) ^ CRC16_TABLE[index]
    })
}

/// The part of `key` that decides its slot.
///
/// If the key has a `{` and, somewhere after the first `{`, a `}` with at least one byte between
/// them, only the bytes between the first `{` and the first `}` after it count; otherwise the whole
/// key does. This lets an application put related keys in one slot by sharing a tag.
#[must_use]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after_open = &key[open + 1..];
    match after_open.iter().position(|&b| b == b'}') {
        // An empty tag ("{}") does not count as a tag, so the whole key is hashed.
        Some(0) | None => key,
        Some(close) => &after_open[..close],
    }
}

/// The slot that owns `key`.
#[must_use]
pub fn slot_of(key: &[u8]) -> Slot {
    Slot::from_hash(crc16(hash_tag(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit-at-a-time CRC16-XMODEM, the textbook definition the table must agree with.
    fn crc16_bitwise(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &byte in bytes {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc16_matches_the_xmodem_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slot_of_matches_redis_cluster_keyslot() {
        assert_eq!(slot_of(b"foo").get(), 12182);
        assert_eq!(slot_of(b"somekey").get(), 11058);
        assert_eq!(slot_of(b"foo{hash_tag}").get(), 2515);
        assert_eq!(slot_of(b"123456789").get(), 0x31C3);
        assert_eq!(slot_of(b"").get(), 0);
    }

    #[test]
    fn keys_sharing_a_hash_tag_share_a_slot() {
        assert_eq!(
            slot_of(b"{user1000}.following"),
            slot_of(b"{user1000}.followers")
        );
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
    }

    #[test]
    fn an_empty_tag_hashes_the_whole_key() {
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(
            slot_of(b"foo{}{bar}"),
            Slot::from_hash(crc16(b"foo{}{bar}"))
        );
    }

    #[test]
    fn the_tag_runs_from_the_first_open_brace_to_the_next_close_brace() {
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(slot_of(b"foo{bar}{zap}"), slot_of(b"bar"));
    }

    #[test]
    fn keys_without_a_complete_tag_hash_whole() {
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo}bar{"), b"foo}bar{");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"{a}"), b"a");
    }

    proptest! {
        #[test]
        fn table_crc_agrees_with_bitwise_crc(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(crc16(&bytes), crc16_bitwise(&bytes));
        }

        #[test]
        fn a_tagged_key_lands_in_its_tags_slot(
            prefix in proptest::collection::vec(any::<u8>().prop_filter("no open brace", |&b| b != b'{'), 0..16),
            tag in proptest::collection::vec(any::<u8>().prop_filter("no close brace", |&b| b != b'}'), 1..16),
            suffix in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut key = prefix;
            key.push(b'{');
            key.extend_from_slice(&tag);
            key.push(b'}');
            key.extend_from_slice(&suffix);
            prop_assert_eq!(hash_tag(&key), &tag[..]);
            prop_assert_eq!(slot_of(&key), slot_of(&tag));
        }

        #[test]
        fn every_key_has_a_slot_in_range(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(slot_of(&key).get() < crate::types::SLOT_COUNT);
        }
    }
}
