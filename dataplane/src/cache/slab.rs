//! The storage under the cache: a slab of entries that refer to each other by index, and the
//! intrusive recency list threaded through it.
//!
//! Entries live in one `Vec` and link to their neighbours by `u32` index, so the recency lists need
//! neither pointers nor `unsafe`. A freed slot joins a free chain threaded through the vacant slots
//! themselves and is reused before the vector grows, so the vector's length never exceeds the
//! largest number of entries cached at once, which the byte budget bounds.
//!
//! Invariants: an index handed out by [`Slab::insert`] names a live entry until [`Slab::remove`]
//! returns it; a live entry is linked into at most one [`List`]; a list's `head` is its most
//! recently used entry and its `tail` the least recently used one, and `len` counts its entries.

use std::sync::Arc;

use super::Shortcut;

/// The index that stands for "no entry" in links and chains. No live entry can have it, because
/// [`Slab::insert`] refuses to grow that far.
pub(super) const NIL: u32 = u32::MAX;

/// One cached key: a value with its shortcut, or a shortcut alone.
pub(super) struct Node {
    /// The key, shared with the hash map that finds this entry, so its bytes are stored once.
    pub(super) key: Arc<[u8]>,
    /// The cached value; `None` when only the shortcut is cached.
    pub(super) value: Option<Box<[u8]>>,
    /// Where the key's newest log entry lives in the pool.
    pub(super) shortcut: Shortcut,
    /// Reads that found this key, starting at 1 when it entered the cache. For a shortcut under
    /// the adaptive policy this is its frequency; a value carries it along so that a demoted value
    /// keeps the frequency it earned.
    pub(super) hits: u64,
    /// Arrival order among shortcuts of equal frequency, so the frequency order breaks ties
    /// oldest first.
    pub(super) seq: u64,
    /// Neighbour towards the head of the list this entry is in, or [`NIL`].
    pub(super) prev: u32,
    /// Neighbour towards the tail of the list this entry is in, or [`NIL`].
    pub(super) next: u32,
}

impl Node {
    pub(super) fn new(key: Arc<[u8]>, value: Option<Box<[u8]>>, shortcut: Shortcut) -> Node {
        Node {
            key,
            value,
            shortcut,
            hits: 1,
            seq: 0,
            prev: NIL,
            next: NIL,
        }
    }
}

/// A slot of the slab: a live entry, or a vacant slot that points at the next vacant one.
enum Slot {
    Live(Node),
    Vacant { next_vacant: u32 },
}

/// Bytes of one slab slot, for the cache's per-entry overhead.
pub(super) const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Entries addressed by `u32` index, with vacant slots reused first.
pub(super) struct Slab {
    slots: Vec<Slot>,
    /// First vacant slot, or [`NIL`] when every slot is live.
    vacant_head: u32,
    live: usize,
}

impl Slab {
    pub(super) const fn new() -> Slab {
        Slab {
            slots: Vec::new(),
            vacant_head: NIL,
            live: 0,
        }
    }

    /// Stores `node` and returns its index.
    ///
    /// Panics only if more than `u32::MAX - 1` entries are live, which the cache rules out by
    /// clamping its budget to [`super::BUDGET_BYTES_MAX`].
    pub(super) fn insert(&mut self, node: Node) -> u32 {
        self.live += 1;
        if self.vacant_head != NIL {
            let index = self.vacant_head;
            let slot = &mut self.slots[index as usize];
            let Slot::Vacant { next_vacant } = *slot else {
                unreachable!("the vacant chain of the cache slab reached a live slot");
            };
            self.vacant_head = next_vacant;
            *slot = Slot::Live(node);
            return index;
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&index| index != NIL)
            .expect("the budget clamp keeps the cache slab below u32::MAX entries");
        self.slots.push(Slot::Live(node));
        index
    }

    /// Takes the entry at `index` out and makes its slot vacant.
    pub(super) fn remove(&mut self, index: u32) -> Node {
        let vacant = Slot::Vacant {
            next_vacant: self.vacant_head,
        };
        match std::mem::replace(&mut self.slots[index as usize], vacant) {
            Slot::Live(node) => {
                self.vacant_head = index;
                self.live -= 1;
                node
            }
            Slot::Vacant { .. } => unreachable!("removed a vacant slot of the cache slab"),
        }
    }

    /// The live entry at `index`, or `None` if the slot is vacant or beyond the end.
    pub(super) fn get(&self, index: u32) -> Option<&Node> {
        match self.slots.get(index as usize) {
            Some(Slot::Live(node)) => Some(node),
            _ => None,
        }
    }

    /// The live entry at `index`. The cache only follows indices it holds in its map or lists, so
    /// a vacant slot here is a broken invariant, not an expected outcome.
    pub(super) fn node(&self, index: u32) -> &Node {
        self.get(index).expect("a cache index names a live entry")
    }

    pub(super) fn node_mut(&mut self, index: u32) -> &mut Node {
        match self.slots.get_mut(index as usize) {
            Some(Slot::Live(node)) => node,
            _ => panic!("a cache index names a live entry"),
        }
    }

    /// One past the highest index ever handed out; every live index is below it.
    pub(super) fn end_index(&self) -> u32 {
        // `insert` never lets the length reach `NIL`, so it fits.
        self.slots.len() as u32
    }

    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Drops every entry. The vector keeps its allocation: it was within the budget when it grew.
    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.vacant_head = NIL;
        self.live = 0;
    }
}

/// A doubly linked recency list over slab entries: `head` is the most recently used entry.
pub(super) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    pub(super) const fn new() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The most recently used entry.
    #[cfg(test)]
    pub(super) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// The least recently used entry.
    pub(super) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Links `index`, which must not be in any list, in as the most recently used entry.
    pub(super) fn push_front(&mut self, slab: &mut Slab, index: u32) {
        let old_head = self.head;
        let node = slab.node_mut(index);
        debug_assert!(node.prev == NIL && node.next == NIL, "entry already linked");
        node.prev = NIL;
        node.next = old_head;
        if old_head == NIL {
            self.tail = index;
        } else {
            slab.node_mut(old_head).prev = index;
        }
        self.head = index;
        self.len += 1;
    }

    /// Unlinks `index`, which must be in this list, and clears its links.
    pub(super) fn unlink(&mut self, slab: &mut Slab, index: u32) {
        let node = slab.node_mut(index);
        let (prev, next) = (node.prev, node.next);
        node.prev = NIL;
        node.next = NIL;
        if prev == NIL {
            debug_assert_eq!(self.head, index, "unlinked an entry of another list");
            self.head = next;
        } else {
            slab.node_mut(prev).next = next;
        }
        if next == NIL {
            debug_assert_eq!(self.tail, index, "unlinked an entry of another list");
            self.tail = prev;
        } else {
            slab.node_mut(next).prev = prev;
        }
        self.len -= 1;
    }

    /// Marks `index`, which must be in this list, as the most recently used entry.
    pub(super) fn move_to_front(&mut self, slab: &mut Slab, index: u32) {
        if self.head != index {
            self.unlink(slab, index);
            self.push_front(slab, index);
        }
    }

    pub(super) fn clear(&mut self) {
        *self = List::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &[u8]) -> Node {
        Node::new(
            Arc::from(key),
            None,
            Shortcut {
                entry_offset: 0,
                entry_len: 0,
            },
        )
    }

    /// Walks the list from head to tail, checking the back links on the way.
    fn keys_in_order(list: &List, slab: &Slab) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut prev = NIL;
        let mut at = list.head;
        while at != NIL {
            let node = slab.node(at);
            assert_eq!(node.prev, prev, "back link of {at}");
            keys.push(node.key.to_vec());
            prev = at;
            at = node.next;
        }
        assert_eq!(list.tail, prev, "tail");
        assert_eq!(list.len(), keys.len(), "len");
        keys
    }

    #[test]
    fn slab_reuses_vacant_slots_before_growing() {
        let mut slab = Slab::new();
        let a = slab.insert(node(b"a"));
        let b = slab.insert(node(b"b"));
        let c = slab.insert(node(b"c"));
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(&*slab.remove(b).key, b"b");
        assert_eq!(&*slab.remove(a).key, b"a");
        assert!(slab.get(a).is_none());
        assert_eq!(slab.live(), 1);
        // Last freed, first reused; the vector does not grow while slots are vacant.
        assert_eq!(slab.insert(node(b"d")), a);
        assert_eq!(slab.insert(node(b"e")), b);
        assert_eq!(slab.insert(node(b"f")), 3);
        assert_eq!(slab.end_index(), 4);
        assert_eq!(&*slab.node(b).key, b"e");
        slab.clear();
        assert_eq!(slab.live(), 0);
        assert_eq!(slab.insert(node(b"g")), 0);
    }

    #[test]
    fn list_keeps_recency_order_through_moves_and_unlinks() {
        let mut slab = Slab::new();
        let mut list = List::new();
        let indices: Vec<u32> = [b"a", b"b", b"c", b"d"]
            .into_iter()
            .map(|key| {
                let index = slab.insert(node(key));
                list.push_front(&mut slab, index);
                index
            })
            .collect();
        let order = |list: &List, slab: &Slab| keys_in_order(list, slab).concat();
        assert_eq!(order(&list, &slab), b"dcba");
        assert_eq!(list.tail(), Some(indices[0]));

        list.move_to_front(&mut slab, indices[0]);
        assert_eq!(order(&list, &slab), b"adcb");
        list.move_to_front(&mut slab, indices[0]);
        assert_eq!(order(&list, &slab), b"adcb");

        list.unlink(&mut slab, indices[2]);
        assert_eq!(order(&list, &slab), b"adb");
        list.unlink(&mut slab, indices[1]);
        assert_eq!(order(&list, &slab), b"ad");
        list.unlink(&mut slab, indices[0]);
        assert_eq!(order(&list, &slab), b"d");
        assert_eq!(list.head(), list.tail());
        list.unlink(&mut slab, indices[3]);
        assert_eq!(list.head(), None);
        assert_eq!(list.tail(), None);
        assert_eq!(list.len(), 0);
    }
}
