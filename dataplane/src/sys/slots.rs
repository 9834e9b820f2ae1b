//! Generation-checked slots: where an event loop keeps the connections its operations name.
//!
//! Every operation an event loop gives its ring names a slot by [`SlotId`], an index and the
//! slot's generation at the time, and the ring packs both into the operation's user data. A
//! slot's generation changes each time its value is removed, so a completion that arrives after
//! its connection was freed and the slot reused carries an old generation: [`Slots::get`] does
//! not find it, and the loop ignores the completion instead of acting on a stranger.
//!
//! Invariants: every index is below the table's capacity, which is at most [`SLOTS_MAX`] (what
//! the user data can name); an id finds at most one value, the one inserted when it was handed
//! out, and never finds another until that slot's generation wraps around (2^32 reuses of one
//! slot). Freed slots are reused last-freed first, and storage grows only as values arrive.

use std::ops::Range;

use super::constants::SLOTS_MAX;

/// Names one slot of a [`Slots`] table (or a fixed slot of a loop: a listener, its eventfd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId {
    /// Below [`SLOTS_MAX`], so that it fits the user data.
    index: u32,
    generation: u32,
}

impl SlotId {
    /// A slot that is never freed, such as a loop's listener or eventfd; its generation is 0.
    pub const fn fixed(index: u16) -> SlotId {
        SlotId {
            index: index as u32,
            generation: 0,
        }
    }

    pub fn index(self) -> usize {
        self.index as usize
    }

    pub fn generation(self) -> u32 {
        self.generation
    }

    /// The id that `index` and `generation` name, if the index fits the user data.
    pub(super) fn from_parts(index: usize, generation: u32) -> Option<SlotId> {
        (index < SLOTS_MAX).then_some(SlotId {
            index: index as u32,
            generation,
        })
    }
}

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values stored by slot, each found only by the id it was inserted with.
#[derive(Debug)]
pub struct Slots<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
    capacity: usize,
}

impl<T> Slots<T> {
    /// A table of at most `capacity` values (clamped to [`SLOTS_MAX`]).
    pub fn new(capacity: usize) -> Slots<T> {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            capacity: capacity.min(SLOTS_MAX),
        }
    }

    /// Stores `value` in a free slot; hands it back if every slot is taken.
    pub fn insert(&mut self, value: T) -> Result<SlotId, T> {
        let index = match self.free.pop() {
            Some(index) => index as usize,
            None if self.entries.len() < self.capacity => {
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                });
                self.entries.len() - 1
            }
            None => return Err(value),
        };
        let entry = &mut self.entries[index];
        entry.value = Some(value);
        self.len += 1;
        // `index` is below `capacity`, which is at most SLOTS_MAX.
        Ok(SlotId {
            index: index as u32,
            generation: entry.generation,
        })
    }

    /// Removes the value `id` names; a later value in the same slot gets a new generation.
    pub fn remove(&mut self, id: SlotId) -> Option<T> {
        let entry = self.entries.get_mut(id.index())?;
        if entry.generation != id.generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }

    /// The value `id` names, if it is still there.
    pub fn get(&self, id: SlotId) -> Option<&T> {
        self.entries
            .get(id.index())
            .filter(|e| e.generation == id.generation)?
            .value
            .as_ref()
    }

    /// The value `id` names, if it is still there.
    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut T> {
        self.entries
            .get_mut(id.index())
            .filter(|e| e.generation == id.generation)?
            .value
            .as_mut()
    }

    /// The id of the value at `index`, if there is one: with [`Slots::indexes`], a way to visit
    /// every value while changing the table.
    pub fn id_at(&self, index: usize) -> Option<SlotId> {
        let entry = self.entries.get(index)?;
        entry.value.as_ref()?;
        SlotId::from_parts(index, entry.generation)
    }

    /// Every index a value may have now.
    pub fn indexes(&self) -> Range<usize> {
        0..self.entries.len()
    }

    /// The values, in index order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether an insert would be refused.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_to_its_old_id() {
        let mut s = Slots::new(2);
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_eq!(s.insert("full"), Err("full"));
        assert!(s.is_full());
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c").unwrap();
        assert_eq!(c.index(), a.index());
        assert_ne!(c, a);
        assert_eq!(
            (s.get(a), s.get(c), s.get(b)),
            (None, Some(&"c"), Some(&"b"))
        );
        assert_eq!(s.remove(a), None);
        assert_eq!(s.id_at(a.index()), Some(c));
        assert_eq!(s.values().copied().collect::<Vec<_>>(), ["c", "b"]);
        assert_eq!((s.len(), s.indexes()), (2, 0..2));
    }

    #[test]
    fn capacity_is_clamped_to_what_user_data_can_name() {
        let s = Slots::<()>::new(usize::MAX);
        assert_eq!(s.capacity, SLOTS_MAX);
        assert_eq!(SlotId::from_parts(SLOTS_MAX, 0), None);
        assert!(SlotId::from_parts(SLOTS_MAX - 1, u32::MAX).is_some());
    }
}
