//! Newtypes for the identifiers the control plane hands around.
//!
//! A slot, a compute node, a worker core, an incarnation, an epoch and a log chain are all
//! integers; wrapping each in its own type means one can never be passed where another is
//! expected. [`Epoch`] and [`ChainId`] are stored in the pool and defined by `dinomo-pmem`;
//! they are re-exported here. [`Slot`] is the
//! only one with a range restriction (below [`SLOT_COUNT`]), so its field is private and every
//! constructor keeps it in range; the others accept any value of their integer type. `Display`
//! prints the bare number, so the values drop straight into protocol replies such as `-MOVED`.

use std::fmt;

pub use dinomo_pmem::{ChainId, Epoch};

/// Number of slots the keyspace is cut into, as in Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A key slot, always below [`SLOT_COUNT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u16);

impl Slot {
    /// The first slot.
    pub const MIN: Slot = Slot(0);
    /// The last slot.
    pub const MAX: Slot = Slot(SLOT_COUNT - 1);

    /// The slot with this index, or `None` if the index is not below [`SLOT_COUNT`].
    #[must_use]
    pub const fn new(index: u16) -> Option<Slot> {
        if index < SLOT_COUNT {
            Some(Slot(index))
        } else {
            None
        }
    }

    /// The slot a 16-bit key hash falls in: its low 14 bits, as Redis Cluster takes them.
    #[must_use]
    pub const fn from_hash(hash: u16) -> Slot {
        Slot(hash & (SLOT_COUNT - 1))
    }

    /// The slot's index, below [`SLOT_COUNT`].
    #[must_use]
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Every slot in ascending order.
    pub fn all() -> impl DoubleEndedIterator<Item = Slot> + ExactSizeIterator {
        (0..SLOT_COUNT).map(Slot)
    }
}

impl From<Slot> for u16 {
    fn from(slot: Slot) -> u16 {
        slot.0
    }
}

impl From<Slot> for usize {
    fn from(slot: Slot) -> usize {
        usize::from(slot.0)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies a compute node (KN) in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KnId(pub u32);

impl fmt::Display for KnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies a worker core within one compute node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoreId(pub u16);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One run of a compute node: a random, non-zero number a KN process picks when it starts and
/// shows the memory node in its handshake. The cluster map names the incarnation that owns each
/// node's slots and chains, so a restarted or duplicated process (same [`KnId`], another
/// incarnation) can never be mistaken for the one the map names, and a fenced incarnation stays
/// fenced however it reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// No incarnation: what a map of format version 1 records (it predates incarnations), and
    /// what an unbound connection shows. It is never live.
    pub const NONE: Incarnation = Incarnation(0);

    /// Whether this names a real incarnation.
    #[must_use]
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}

impl fmt::Display for Incarnation {
    /// Sixteen hex digits, as logs and error messages print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_new_rejects_indexes_past_the_last_slot() {
        assert_eq!(Slot::new(0), Some(Slot::MIN));
        assert_eq!(Slot::new(16383), Some(Slot::MAX));
        assert_eq!(Slot::new(16384), None);
        assert_eq!(Slot::new(u16::MAX), None);
    }

    #[test]
    fn slot_from_hash_keeps_the_low_fourteen_bits() {
        assert_eq!(Slot::from_hash(0xFFFF).get(), 0x3FFF);
        assert_eq!(Slot::from_hash(0x4001).get(), 1);
        assert_eq!(Slot::from_hash(0x31C3).get(), 0x31C3);
    }

    #[test]
    fn slot_all_lists_every_slot_once_in_order() {
        let all: Vec<u16> = Slot::all().map(Slot::get).collect();
        assert_eq!(all.len(), usize::from(SLOT_COUNT));
        assert!(all.iter().enumerate().all(|(i, &s)| usize::from(s) == i));
    }

    #[test]
    fn epoch_next_stops_at_the_end_of_the_counter() {
        assert_eq!(Epoch(7).next(), Some(Epoch(8)));
        assert_eq!(Epoch(u32::MAX).next(), None);
    }

    #[test]
    fn incarnation_prints_sixteen_hex_digits() {
        assert_eq!(Incarnation(0xab).to_string(), "00000000000000ab");
        assert!(!Incarnation::NONE.is_some());
        assert!(Incarnation(1).is_some());
    }

    #[test]
    fn display_prints_the_bare_number() {
        assert_eq!(Slot::MAX.to_string(), "16383");
        assert_eq!(KnId(3).to_string(), "3");
        assert_eq!(CoreId(2).to_string(), "2");
        assert_eq!(Epoch(9).to_string(), "9");
        assert_eq!(ChainId(11).to_string(), "chain 11");
    }
}
