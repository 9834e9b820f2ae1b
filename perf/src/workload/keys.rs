//! Key names and deterministic values for the records of a workload.
//!
//! A record is known by its index `0..records`. [`key_name`] turns an index into YCSB's key name:
//! `"user"` followed by the decimal of `fnvhash64(index)` when keys are hashed (YCSB's default
//! `insertorder=hashed`, which scatters consecutive inserts over the key space), or of the index
//! itself when they are ordered. [`key_id`] gives the same choice as an 8-byte integer, for the
//! integer keys of dinomo's own benchmark.
//!
//! [`ValueGenerator`] produces a value of a fixed size from `(seed, index, version)`: the same triple
//! always gives the same bytes, so a reader can check what it got back, and a new version gives new
//! bytes, so an update is visible. It costs one multiply-xorshift step per 8 bytes.

use std::io::Write;

use super::constants::VALUE_BYTES_MAX;
use super::error::WorkloadError;
use super::scrambled::fnvhash64;

/// The prefix of every YCSB key name.
pub const KEY_PREFIX: &[u8] = b"user";

/// How record indices become keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOrder {
    /// Keys are the FNV hash of the index (YCSB `insertorder=hashed`).
    Hashed,
    /// Keys are the index itself (YCSB `insertorder=ordered`).
    Ordered,
}

/// The integer key of record `index`.
pub fn key_id(index: u64, order: KeyOrder) -> u64 {
    match order {
        KeyOrder::Hashed => fnvhash64(index),
        KeyOrder::Ordered => index,
    }
}

/// The YCSB key name of record `index`: `"user"` and the decimal of [`key_id`].
pub fn key_name(index: u64, order: KeyOrder) -> Vec<u8> {
    let mut name = Vec::with_capacity(KEY_PREFIX.len() + 20);
    write_key_name(index, order, &mut name);
    name
}

/// Appends the key name of record `index` to `out`, reusing its allocation.
pub fn write_key_name(index: u64, order: KeyOrder, out: &mut Vec<u8>) {
    out.extend_from_slice(KEY_PREFIX);
    // Formatting into a Vec cannot fail.
    let _ = write!(out, "{}", key_id(index, order));
}

/// One step of the SplitMix64 sequence: advances `state` and returns a well-mixed word.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic values of a fixed size, one per `(index, version)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueGenerator {
    value_bytes: usize,
    seed: u64,
}

impl ValueGenerator {
    /// Values of `value_bytes` bytes, at most [`VALUE_BYTES_MAX`].
    pub fn new(value_bytes: usize, seed: u64) -> Result<Self, WorkloadError> {
        if value_bytes > VALUE_BYTES_MAX {
            return Err(WorkloadError::ValueTooLarge {
                value_bytes,
                value_bytes_max: VALUE_BYTES_MAX,
            });
        }
        Ok(Self { value_bytes, seed })
    }

    /// The size of every value.
    pub fn value_bytes(&self) -> usize {
        self.value_bytes
    }

    /// The value of record `index` at `version`.
    pub fn value(&self, index: u64, version: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value_bytes);
        self.fill(index, version, &mut out);
        out
    }

    /// Replaces the contents of `out` with the value of record `index` at `version`.
    pub fn fill(&self, index: u64, version: u64, out: &mut Vec<u8>) {
        out.clear();
        let mut state = self.stream_start(index, version);
        let mut chunks = self.value_bytes / 8;
        while chunks > 0 {
            out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
            chunks -= 1;
        }
        let rest = self.value_bytes % 8;
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes()[..rest]);
    }

    /// Whether `bytes` is the value of record `index` at `version`.
    pub fn matches(&self, index: u64, version: u64, bytes: &[u8]) -> bool {
        if bytes.len() != self.value_bytes {
            return false;
        }
        let mut state = self.stream_start(index, version);
        bytes
            .chunks(8)
            .all(|chunk| chunk == &splitmix64(&mut state).to_le_bytes()[..chunk.len()])
    }

    /// The SplitMix64 state that starts the value of `(index, version)`. The three inputs are
    /// folded in through separate mixing steps so that neighbouring indices or versions start far
    /// apart in the sequence.
    fn stream_start(&self, index: u64, version: u64) -> u64 {
        let mut state = self.seed;
        let mut mixed = splitmix64(&mut state);
        mixed ^= index;
        let mut mixed = splitmix64(&mut mixed);
        mixed ^= version;
        splitmix64(&mut mixed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn key_name_ordered_is_user_plus_decimal() {
        assert_eq!(key_name(0, KeyOrder::Ordered), b"user0");
        assert_eq!(key_name(42, KeyOrder::Ordered), b"user42");
        assert_eq!(
            key_name(u64::MAX, KeyOrder::Ordered),
            b"user18446744073709551615"
        );
    }

    #[test]
    fn key_name_hashed_uses_fnvhash64() {
        // fnvhash64(0) = 6284781860667377211 and fnvhash64(42) = 55488592825689361, derived round by
        // round in `scrambled::tests::fnvhash64_matches_hand_derivation`.
        assert_eq!(key_name(0, KeyOrder::Hashed), b"user6284781860667377211");
        assert_eq!(key_name(42, KeyOrder::Hashed), b"user55488592825689361");
        assert_eq!(key_id(42, KeyOrder::Hashed), 55_488_592_825_689_361);
        assert_eq!(key_id(42, KeyOrder::Ordered), 42);
        let mut out = b"old".to_vec();
        out.clear();
        write_key_name(1, KeyOrder::Hashed, &mut out);
        assert_eq!(out, b"user8517097267634966620");
    }

    #[test]
    fn hashed_key_names_are_distinct() {
        let names: HashSet<Vec<u8>> = (0..100_000)
            .map(|i| key_name(i, KeyOrder::Hashed))
            .collect();
        assert_eq!(names.len(), 100_000);
    }

    #[test]
    fn values_are_deterministic_and_sized() {
        for value_bytes in [0, 1, 7, 8, 9, 1006, 4096] {
            let values = ValueGenerator::new(value_bytes, 51).unwrap();
            let value = values.value(3, 0);
            assert_eq!(value.len(), value_bytes);
            assert_eq!(value, values.value(3, 0));
            assert_eq!(
                value,
                ValueGenerator::new(value_bytes, 51).unwrap().value(3, 0)
            );
            assert!(values.matches(3, 0, &value));
            let mut reused = vec![1, 2, 3];
            values.fill(3, 0, &mut reused);
            assert_eq!(reused, value);
        }
    }

    #[test]
    fn values_change_with_version_index_and_seed() {
        let values = ValueGenerator::new(1006, 52).unwrap();
        let original = values.value(3, 0);
        assert_ne!(original, values.value(3, 1));
        assert_ne!(original, values.value(4, 0));
        assert_ne!(original, ValueGenerator::new(1006, 53).unwrap().value(3, 0));
        assert!(!values.matches(3, 1, &original));
        assert!(!values.matches(3, 0, &original[..1005]));
        let mut corrupted = original.clone();
        corrupted[1005] ^= 1;
        assert!(!values.matches(3, 0, &corrupted));
        // Consecutive versions of one record share no 8-byte word at the same offset.
        let next = values.value(3, 1);
        let shared = original
            .chunks(8)
            .zip(next.chunks(8))
            .filter(|(a, b)| a == b)
            .count();
        assert_eq!(shared, 0);
    }

    #[test]
    fn value_size_limit_is_enforced() {
        assert!(ValueGenerator::new(VALUE_BYTES_MAX, 0).is_ok());
        assert_eq!(
            ValueGenerator::new(VALUE_BYTES_MAX + 1, 0).unwrap_err(),
            WorkloadError::ValueTooLarge {
                value_bytes: VALUE_BYTES_MAX + 1,
                value_bytes_max: VALUE_BYTES_MAX
            }
        );
    }
}
