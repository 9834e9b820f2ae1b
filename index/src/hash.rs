//! Key hashing. The index places keys by a 64-bit hash of the full key: the low bits pick the
//! bucket pair, the top 16 bits are the slot tag (pmem FORMAT.md §8). The hash must be stable
//! across builds and machines because placement is persistent, so it is xxh3-64 with seed 0.
//! Tests can substitute a deliberately bad hash to force collisions.

/// How keys are hashed.
#[derive(Clone, Copy)]
pub enum KeyHasher {
    /// xxh3-64, seed 0 (pool hash algorithm 1).
    Xxh3,
    /// A test hash (for forcing collisions); never used with a pool that outlives the test.
    Custom(fn(&[u8]) -> u64),
}

impl KeyHasher {
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        match self {
            KeyHasher::Xxh3 => xxhash_rust::xxh3::xxh3_64(key),
            KeyHasher::Custom(f) => f(key),
        }
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyHasher::Xxh3 => f.write_str("xxh3"),
            KeyHasher::Custom(_) => f.write_str("custom"),
        }
    }
}

/// The pool's hash of a key (xxh3-64, seed 0): what a KN computes before probing.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}
