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
        write!(f, "chain#{}", self.0)
    }
}

/// The order of a key's writes: cluster epoch first, then the writing chain's sequence number.
/// A newer write of a key always compares greater (FORMAT.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub epoch: u32,
    pub seq: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}
