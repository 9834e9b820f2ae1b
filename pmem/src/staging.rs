//! [`Staging`]: the writer side of a log chain — entries staged in local memory, then committed
//! to the pool as a batch whose durability point is one tail-word store (FORMAT.md §6).
//!
//! Staging does no I/O. It lays entries out in a local mirror of the head block's entry area and
//! produces a [`CommitPlan`]: the data writes and tail stores to perform, in order. The in-process
//! [`crate::log::LogWriter`] executes a plan with backend stores; a KN worker executes it with
//! fabric WRITEs on its queue pair. Either way the caller reports back with
//! [`Staging::committed`] once the plan's last tail store is durable.
//!
//! Invariants: entries of a batch go to the head block until one does not fit; from then on they
//! go to the spare block (at most one switch per batch, so chain order is entry order); the
//! mirror of a block holds exactly the bytes the pool holds below its committed `used`, plus the
//! staged batch.

use crate::entry::{Op, check_entry, encode_entry_append};
use crate::error::AppendError;
use crate::layout::Layout;
use crate::pool::{HEADER_TAIL, Tail};
use crate::types::{BlockId, PoolOffset, Version};

/// Where an appended entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryLoc {
    pub block: BlockId,
    /// Offset in the block's entry area.
    pub offset: u64,
    /// Bytes, padding included.
    pub len: u64,
}

impl EntryLoc {
    /// The entry's pool offset.
    pub fn pool_offset(&self, layout: &Layout) -> PoolOffset {
        layout.entry_area_off(self.block).add(self.offset)
    }
}

/// A block's entry area as this writer knows it.
#[derive(Debug)]
pub struct Mirror {
    pub block: BlockId,
    /// Entry-area offset of `bytes[0]`.
    pub base: u64,
    /// Committed bytes (the pool's `used`).
    pub used: u64,
    /// Bytes from `base` through the staged batch.
    pub bytes: Vec<u8>,
}

impl Mirror {
    fn new(block: BlockId, used: u64) -> Mirror {
        Mirror {
            block,
            base: used,
            used,
            bytes: Vec::new(),
        }
    }
    /// End of committed plus staged bytes, as an entry-area offset.
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
    /// The bytes of `[offset, offset + len)` if this mirror holds them.
    pub fn get(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = offset.checked_sub(self.base)? as usize;
        self.bytes.get(start..start + len as usize)
    }
}

/// One data write of a plan: `staging bytes` → pool offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataWrite {
    pub to: PoolOffset,
    /// Which mirror: 0 = head, 1 = the block being switched to.
    pub mirror: usize,
    pub range: std::ops::Range<usize>,
}

/// What a commit must do, in this order: the data writes, then the tail stores (the last one is
/// the batch's commit point).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitPlan {
    pub writes: Vec<DataWrite>,
    pub tails: Vec<(PoolOffset, u64)>,
}

/// A chain writer's staged state.
#[derive(Debug)]
pub struct Staging {
    capacity: u64,
    batch_bytes_max: u64,
    keep_history: bool,
    head: Mirror,
    spare: Option<BlockId>,
    /// The spare block's mirror once this batch switched into it.
    next: Option<Mirror>,
    staged_entries: usize,
}

impl Staging {
    /// A writer whose head block is `head` with `used` committed bytes. With `keep_history`, the
    /// mirrors keep committed bytes (a KN reads its unmerged entries from them); without, they
    /// hold only the current batch.
    pub fn new(
        layout: &Layout,
        head: BlockId,
        used: u64,
        batch_bytes_max: u64,
        keep_history: bool,
    ) -> Staging {
        Staging {
            capacity: layout.entry_capacity(),
            batch_bytes_max,
            keep_history,
            head: Mirror::new(head, used),
            spare: None,
            next: None,
            staged_entries: 0,
        }
    }

    /// The head block and its committed `used`.
    pub fn head(&self) -> (BlockId, u64) {
        (self.head.block, self.head.used)
    }
    /// The block this writer will switch into when the head is full.
    pub fn spare(&self) -> Option<BlockId> {
        self.spare
    }
    /// Hands the writer a block reserved for its chain.
    pub fn set_spare(&mut self, block: BlockId) {
        debug_assert!(self.spare.is_none());
        self.spare = Some(block);
    }
    /// Whether the writer has no spare block (it should ask for one before it needs it).
    pub fn needs_spare(&self) -> bool {
        self.spare.is_none()
    }
    /// Entries staged since the last commit.
    pub fn staged_entries(&self) -> usize {
        self.staged_entries
    }
    /// Bytes staged since the last commit.
    pub fn staged_bytes(&self) -> u64 {
        (self.head.end() - self.head.used) + self.next.as_ref().map_or(0, |m| m.end())
    }
    /// The mirrors, head first: a KN looks up its unmerged entries here.
    pub fn mirrors(&self) -> impl Iterator<Item = &Mirror> {
        std::iter::once(&self.head).chain(self.next.iter())
    }
    /// The mirror of `block`, if this writer holds it.
    pub fn mirror(&self, block: BlockId) -> Option<&Mirror> {
        self.mirrors().find(|m| m.block == block)
    }

    /// Stages one entry. `NeedBlock` asks for a spare block; `BatchFull` asks for a commit.
    pub fn append(
        &mut self,
        op: Op,
        key: &[u8],
        value: &[u8],
        version: Version,
    ) -> Result<EntryLoc, AppendError> {
        let value = if op == Op::Delete { &[][..] } else { value };
        let len = check_entry(key, value, self.capacity)?;
        if self.staged_entries > 0 && self.staged_bytes() + len > self.batch_bytes_max {
            return Err(AppendError::BatchFull);
        }
        let target = if let Some(next) = self.next.as_mut() {
            if next.end() + len > self.capacity {
                return Err(AppendError::BatchFull);
            }
            next
        } else if self.head.end() + len <= self.capacity {
            &mut self.head
        } else {
            let Some(spare) = self.spare else {
                return Err(AppendError::NeedBlock);
            };
            self.next.insert(Mirror::new(spare, 0))
        };
        let offset = target.end();
        encode_entry_append(&mut target.bytes, op, key, value, version);
        self.staged_entries += 1;
        Ok(EntryLoc {
            block: target.block,
            offset,
            len,
        })
    }

    /// The writes that commit the staged batch (FORMAT.md §6, batch commit).
    pub fn plan(&self, layout: &Layout) -> CommitPlan {
        let mut plan = CommitPlan::default();
        let head_start = (self.head.used - self.head.base) as usize;
        if head_start < self.head.bytes.len() {
            plan.writes.push(DataWrite {
                to: layout.entry_area_off(self.head.block).add(self.head.used),
                mirror: 0,
                range: head_start..self.head.bytes.len(),
            });
        }
        if let Some(next) = &self.next {
            plan.writes.push(DataWrite {
                to: layout.entry_area_off(next.block),
                mirror: 1,
                range: 0..next.bytes.len(),
            });
            let tail = Tail {
                used: next.end() as u32,
                next: None,
            };
            plan.tails
                .push((layout.block_off(next.block).add(HEADER_TAIL), tail.encode()));
        }
        let head_tail = Tail {
            used: self.head.end() as u32,
            next: self.next.as_ref().map(|m| m.block),
        };
        if self.next.is_some() || head_start < self.head.bytes.len() {
            plan.tails.push((
                layout.block_off(self.head.block).add(HEADER_TAIL),
                head_tail.encode(),
            ));
        }
        plan
    }

    /// The bytes a data write of a plan carries.
    pub fn bytes(&self, write: &DataWrite) -> &[u8] {
        let mirror = if write.mirror == 0 {
            &self.head
        } else {
            self.next.as_ref().unwrap_or(&self.head)
        };
        &mirror.bytes[write.range.clone()]
    }

    /// The plan's tail stores are durable: the batch is committed. Returns the mirror of a
    /// block that was sealed by this batch, for a writer that keeps history.
    pub fn committed(&mut self) -> Option<Mirror> {
        self.staged_entries = 0;
        self.head.used = self.head.end();
        let sealed = self.next.take().map(|mut next| {
            next.used = next.end();
            self.spare = None;
            std::mem::replace(&mut self.head, next)
        });
        if !self.keep_history {
            self.head.base = self.head.used;
            self.head.bytes.clear();
        }
        sealed.filter(|_| self.keep_history)
    }

    /// Drops the staged batch (it was never made durable and will not be acknowledged).
    pub fn abort(&mut self) {
        self.staged_entries = 0;
        let keep = (self.head.used - self.head.base) as usize;
        self.head.bytes.truncate(keep);
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::decode_entry;
    use crate::layout::PoolConfig;
    use crate::types::Epoch;

    fn layout() -> Layout {
        Layout::compute(&PoolConfig::small(1 << 20, 4096), [0; 16], 0).expect("valid")
    }

    fn v(seq: u64) -> Version {
        Version {
            epoch: Epoch(1),
            seq,
        }
    }

    #[test]
    fn batch_in_one_block_is_one_write_and_one_tail() {
        let layout = layout();
        let mut s = Staging::new(&layout, BlockId(2), 64, 1 << 20, true);
        let a = s.append(Op::Put, b"a", b"1", v(1)).expect("fits");
        let b = s.append(Op::Delete, b"b", b"", v(2)).expect("fits");
        assert_eq!((a.offset, b.offset), (64, 64 + 32));
        let plan = s.plan(&layout);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.writes[0].to, layout.entry_area_off(BlockId(2)).add(64));
        assert_eq!(
            plan.tails,
            vec![(
                layout.block_off(BlockId(2)),
                Tail {
                    used: 64 + 64,
                    next: None
                }
                .encode()
            )]
        );
        assert!(s.committed().is_none());
        assert_eq!(s.head(), (BlockId(2), 128));
        let bytes = s
            .mirror(BlockId(2))
            .and_then(|m| m.get(a.offset, a.len))
            .expect("kept");
        assert_eq!(decode_entry(bytes).expect("valid").key, b"a");
    }

    #[test]
    fn full_head_needs_spare_then_switches_once() {
        let layout = layout();
        let cap = layout.entry_capacity();
        let mut s = Staging::new(&layout, BlockId(0), cap - 40, 1 << 20, false);
        assert_eq!(
            s.append(Op::Put, b"k", &[0; 100], v(1)),
            Err(AppendError::NeedBlock)
        );
        s.set_spare(BlockId(5));
        let loc = s
            .append(Op::Put, b"k", &[0; 100], v(1))
            .expect("goes to the spare");
        assert_eq!((loc.block, loc.offset), (BlockId(5), 0));
        // A small entry that would fit in the head must still follow in the spare.
        let small = s.append(Op::Put, b"s", b"", v(2)).expect("fits");
        assert_eq!(small.block, BlockId(5));
        let plan = s.plan(&layout);
        assert_eq!(plan.writes.len(), 1, "nothing new for the head block");
        assert_eq!(plan.tails.len(), 2);
        assert_eq!(
            Tail::decode(plan.tails[1].1),
            Tail {
                used: (cap - 40) as u32,
                next: Some(BlockId(5))
            }
        );
        s.committed();
        assert_eq!(s.head().0, BlockId(5));
        assert!(s.needs_spare());
    }

    #[test]
    fn oversized_and_overfull_are_refused() {
        let layout = layout();
        let mut s = Staging::new(&layout, BlockId(0), 0, 100, false);
        assert!(matches!(
            s.append(Op::Put, b"k", &vec![0; 5000], v(1)),
            Err(AppendError::EntryTooLarge { .. })
        ));
        s.append(Op::Put, b"k", &[0; 60], v(1))
            .expect("first entry always fits the batch");
        assert_eq!(
            s.append(Op::Put, b"k", &[0; 60], v(2)),
            Err(AppendError::BatchFull)
        );
    }
}
