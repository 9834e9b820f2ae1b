//! Newtypes for the pool's addresses and handles, so that they can never be swapped by accident.

use std::fmt;

/// A byte offset from the start of the pool. The pool never stores virtual addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PoolOffset(pub u64);

impl PoolOffset {
    pub const fn get(self) -> u64 {
        self.0
    }
    #[must_use]
    pub const fn add(self, bytes: u64) -> PoolOffset {
        PoolOffset(self.0 + bytes)
    }
}

impl fmt::Display for PoolOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{:#x}", self.0)
    }
}

/// The index of a log block in the block area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The encoding used in `next` and `cursor` fields: index + 1, so that 0 means "none".
    pub const fn to_link(self) -> u32 {
        self.0 + 1
    }
    pub const fn from_link(link: u32) -> Option<BlockId> {
        if link == 0 {
            None
        } else {
            Some(BlockId(link - 1))
        }
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block#{}", self.0)
    }
}

/// A log chain: the operation log of one KN worker core, headed in the log table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub u32);

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain {}", self.0)
    }
}

/// The version of the cluster map, and the epoch every log entry is written in.
///
/// Every change of ownership makes a map with a higher epoch, and a key's new owner writes its
/// entries with the new map's epoch, so entries of one key order by `(epoch, seq)` across
/// owners (FORMAT.md §7). Entries store it in 4 bytes; FORMAT.md §7 argues why 32 bits are
/// enough, and [`Epoch::next`] refuses to wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The epoch of an empty pool, before any map is stored.
    pub const ZERO: Epoch = Epoch(0);

    /// The epoch that follows this one, or `None` if the counter is exhausted.
    #[must_use]
    pub const fn next(self) -> Option<Epoch> {
        match self.0.checked_add(1) {
            Some(value) => Some(Epoch(value)),
            None => None,
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The order of a key's writes: cluster epoch first, then the writing chain's sequence number.
/// A newer write of a key always compares greater (FORMAT.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub epoch: Epoch,
    pub seq: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}
