//! Newtypes for the identifiers the control plane hands around.
//!
//! A slot, a compute node, a worker core, an epoch and a log chain are all small integers; wrapping
//! each in its own type means one can never be passed where another is expected. [`Slot`] is the
//! only one with a range restriction (below [`SLOT_COUNT`]), so its field is private and every
//! constructor keeps it in range; the others accept any value of their integer type. `Display`
//! prints the bare number, so the values drop straight into protocol replies such as `-MOVED`.

use std::fmt;

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

/// The version of a cluster map; every change of ownership makes a map with a higher epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch that follows this one, or `None` if the counter is exhausted.
    #[must_use]
    pub const fn next(self) -> Option<Epoch> {
        match self.0.checked_add(1) {
            Some(value) => Some(Epoch(value)),
            None => None,
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies a persistent log chain in the memory pool; each worker core appends to its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub u32);

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
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
        assert_eq!(Epoch(u64::MAX).next(), None);
    }

    #[test]
    fn display_prints_the_bare_number() {
        assert_eq!(Slot::MAX.to_string(), "16383");
        assert_eq!(KnId(3).to_string(), "3");
        assert_eq!(CoreId(2).to_string(), "2");
        assert_eq!(Epoch(9).to_string(), "9");
        assert_eq!(ChainId(11).to_string(), "11");
    }
}
