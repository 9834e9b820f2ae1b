//! The merge: the MN folds each KN core's log chain into the index, oldest entry first (DESIGN.md
//! §3, "weak processors").
//!
//! A put is an upsert and a delete a remove, both ordered by `(epoch, seq)`, so applying an entry
//! twice, or applying an older entry after a newer one, changes nothing: re-merging after a crash
//! yields the same index. Per block range the merge makes its index updates durable (`sync`),
//! then records `merged_seq` and `merged` (pmem FORMAT.md §6); a sealed block merged to its tail
//! is unlinked from the chain and retired. A retired block whose installed entries have all been
//! superseded is freed — only after the index updates that superseded them are durable, so a
//! crash can never leave the index pointing into a reused block.
//!
//! One merge runs per chain at a time (a per-chain lock); different chains merge in parallel.

use std::sync::Arc;
use std::sync::atomic::fence;

use dinomo_pmem::log::{for_each_entry, unlink_cursor_block};
use dinomo_pmem::pool::{HEADER_INSTALLED, HEADER_SUPERSEDED};
use dinomo_pmem::{BlockAllocator, BlockId, BlockState, ChainId, Op, PoolOffset};

use crate::error::Result;
use crate::index::{Index, Outcome};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

/// How far a merge goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeScope {
    /// Sealed blocks only (the writer's head block is left alone).
    Sealed,
    /// Everything up to the persisted tail, head block included (merge-all, failover, recovery).
    All,
}

/// What one merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub entries: u64,
    pub bytes: u64,
    pub blocks_unlinked: u64,
    pub blocks_freed: u64,
}

impl MergeReport {
    fn add(&mut self, other: MergeReport) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.blocks_unlinked += other.blocks_unlinked;
        self.blocks_freed += other.blocks_freed;
    }
}

/// Counters of the merger.
#[derive(Debug, Default)]
struct Counters {
    entries: AtomicU64,
    puts_applied: AtomicU64,
    deletes_applied: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
    blocks_unlinked: AtomicU64,
    blocks_freed: AtomicU64,
}

/// A snapshot of the merger's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounters {
    pub entries: u64,
    pub puts_applied: u64,
    pub deletes_applied: u64,
    pub skipped: u64,
    pub bytes: u64,
    pub blocks_unlinked: u64,
    pub blocks_freed: u64,
}

/// A background pass looks at every chain of the pool once in this many passes; the others visit
/// only the chains that had a cursor at that sweep or were noted since ([`Merger::note_active`]).
/// A pool has [`dinomo_pmem::constants::CHAIN_COUNT_DEFAULT`] chains and a node writes a few of
/// them, so sweeping all of them on every pass would spend the merge thread on cursor loads.
pub const FULL_SWEEP_EVERY_PASSES: u64 = 64;

/// Folds log chains into the index.
#[derive(Debug)]
pub struct Merger {
    index: Arc<Index>,
    alloc: Arc<BlockAllocator>,
    chain_locks: Vec<Mutex<()>>,
    counters: Counters,
    /// The chains a background pass visits between full sweeps, sorted.
    active: Mutex<Vec<ChainId>>,
    /// Background passes started, which decides when the next full sweep is due.
    passes: AtomicU64,
}

impl Merger {
    pub fn new(index: Arc<Index>, alloc: Arc<BlockAllocator>) -> Merger {
        let chains = index.pool().layout().chain_count as usize;
        Merger {
            index,
            alloc,
            chain_locks: (0..chains).map(|_| Mutex::new(())).collect(),
            counters: Counters::default(),
            active: Mutex::new(Vec::new()),
            passes: AtomicU64::new(0),
        }
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
    pub fn allocator(&self) -> &Arc<BlockAllocator> {
        &self.alloc
    }

    pub fn counters(&self) -> MergeCounters {
        let c = &self.counters;
        MergeCounters {
            entries: c.entries.load(Ordering::Relaxed),
            puts_applied: c.puts_applied.load(Ordering::Relaxed),
            deletes_applied: c.deletes_applied.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            blocks_unlinked: c.blocks_unlinked.load(Ordering::Relaxed),
            blocks_freed: c.blocks_freed.load(Ordering::Relaxed),
        }
    }

    /// Merges chain `c` within `scope`, waiting for a merge of the same chain that is running.
    pub fn merge_chain(&self, c: ChainId, scope: MergeScope) -> Result<MergeReport> {
        self.index.pool().check_chain(c)?;
        let _guard = lock(&self.chain_locks[c.0 as usize]);
        self.merge_locked(c, scope)
    }

    /// Merges chain `c` unless another thread is merging it; `None` if it was busy.
    pub fn try_merge_chain(&self, c: ChainId, scope: MergeScope) -> Result<Option<MergeReport>> {
        self.index.pool().check_chain(c)?;
        let Ok(_guard) = self.chain_locks[c.0 as usize].try_lock() else {
            return Ok(None);
        };
        self.merge_locked(c, scope).map(Some)
    }

    /// Merges every chain within `scope` (recovery, and failover of a whole KN via `chains`).
    pub fn merge_chains(
        &self,
        chains: impl IntoIterator<Item = ChainId>,
        scope: MergeScope,
    ) -> Result<MergeReport> {
        let mut total = MergeReport::default();
        for c in chains {
            total.add(self.merge_chain(c, scope)?);
        }
        Ok(total)
    }

    /// Every chain of the pool.
    pub fn all_chains(&self) -> impl Iterator<Item = ChainId> + use<> {
        (0..self.index.pool().layout().chain_count).map(ChainId)
    }

    /// Whether chain `c` has committed entries waiting (cheap: three word loads).
    pub fn has_work(&self, c: ChainId) -> bool {
        let pool = self.index.pool();
        let Ok(Some(b)) = pool.chain_cursor(c) else {
            return false;
        };
        let (Ok(tail), Ok(merged)) = (pool.block_tail(b), pool.block_merged(b)) else {
            return false;
        };
        tail.sealed() || u64::from(tail.used) > merged
    }

    /// Records that chain `c` has a writer, so background passes visit it before the next full
    /// sweep would find it. Unknown chains are ignored.
    pub fn note_active(&self, c: ChainId) {
        if c.0 >= self.index.pool().layout().chain_count {
            return;
        }
        let mut active = lock(&self.active);
        if let Err(at) = active.binary_search(&c) {
            active.insert(at, c);
        }
    }

    /// One background pass: merges, through its persisted tail, every chain that has committed
    /// entries waiting and is not being merged. The head block is merged too, as far as its
    /// writer has committed, so that the index (and every other core) catches up within one
    /// pass and a writer can drop its local copies early. Every
    /// [`FULL_SWEEP_EVERY_PASSES`]-th pass looks at every chain and remembers those with a
    /// cursor; the passes between visit only those and the ones noted with
    /// [`Merger::note_active`]. Returns what it did.
    pub fn background_pass(&self) -> Result<MergeReport> {
        let pass = self.passes.fetch_add(1, Ordering::Relaxed);
        let chains: Vec<ChainId> = if pass.is_multiple_of(FULL_SWEEP_EVERY_PASSES) {
            let pool = self.index.pool();
            let found: Vec<ChainId> = self
                .all_chains()
                .filter(|&c| !matches!(pool.chain_cursor(c), Ok(None)))
                .collect();
            let mut active = lock(&self.active);
            // Chains noted during the sweep stay; chains without a cursor drop out.
            let mut merged: Vec<ChainId> = found.clone();
            for &c in active.iter() {
                if !matches!(pool.chain_cursor(c), Ok(None)) && found.binary_search(&c).is_err() {
                    merged.push(c);
                }
            }
            merged.sort_unstable();
            *active = merged.clone();
            merged
        } else {
            lock(&self.active).clone()
        };
        let mut total = MergeReport::default();
        for c in chains {
            if self.has_work(c)
                && let Some(r) = self.try_merge_chain(c, MergeScope::All)?
            {
                total.add(r);
            }
        }
        Ok(total)
    }

    fn merge_locked(&self, c: ChainId, scope: MergeScope) -> Result<MergeReport> {
        let pool = Arc::clone(self.index.pool());
        let layout = *pool.layout();
        let mut report = MergeReport::default();
        let mut buf = Vec::new();
        let mut superseded: Vec<PoolOffset> = Vec::new();
        let mut dead_candidates: Vec<BlockId> = Vec::new();
        let mut installed: Vec<BlockId> = Vec::new();
        while let Some(cursor) = pool.chain_cursor(c)? {
            let tail = pool.block_tail(cursor)?;
            let sealed = tail.sealed();
            if !sealed && scope == MergeScope::Sealed {
                break;
            }
            let merged = pool.block_merged(cursor)?;
            let to = u64::from(tail.used);
            if merged < to {
                let mut last_seq = pool.block_merged_seq(cursor)?;
                let entry_base = layout.entry_area_off(cursor);
                for_each_entry(&pool, cursor, merged, to, &mut buf, |offset, entry| {
                    let at = entry_base.add(offset);
                    let outcome = match entry.op {
                        Op::Put => {
                            self.index
                                .upsert(entry.key, at, entry.version, &mut superseded)?
                        }
                        Op::Delete => {
                            self.index
                                .remove(entry.key, at, entry.version, &mut superseded)?
                        }
                    };
                    match (outcome, entry.op) {
                        // An installed put, or a tombstone: the index now names this entry.
                        (Outcome::Applied, Op::Put) | (Outcome::Tombstoned, _) => {
                            installed.push(cursor);
                            self.counters
                                .puts_applied
                                .fetch_add(u64::from(entry.op == Op::Put), Ordering::Relaxed);
                            self.counters
                                .deletes_applied
                                .fetch_add(u64::from(entry.op == Op::Delete), Ordering::Relaxed);
                        }
                        (Outcome::Applied, Op::Delete) => {
                            self.counters
                                .deletes_applied
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        (Outcome::Skipped, _) => {
                            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last_seq = last_seq.max(entry.version.seq);
                    report.entries += 1;
                    Ok::<(), crate::error::IndexError>(())
                })?;
                // The updates of this range are durable before the progress that covers them.
                self.index.sync();
                pool.set_block_merged(cursor, to, last_seq)?;
                report.bytes += to - merged;
                self.count_installed(&installed, &superseded, &mut dead_candidates);
                installed.clear();
                superseded.clear();
            }
            if !sealed {
                break;
            }
            let last_seq = pool.block_merged_seq(cursor)?;
            match unlink_cursor_block(&self.alloc, c, last_seq)? {
                Some((b, _)) => {
                    report.blocks_unlinked += 1;
                    dead_candidates.push(b);
                }
                None => break,
            }
        }
        // Tombstones a resize cleared (in any chain's merge) count as superseded entries now.
        let purged = self.index.take_purged();
        if !purged.is_empty() {
            self.count_installed(&[], &purged, &mut dead_candidates);
        }
        dead_candidates.sort_unstable();
        dead_candidates.dedup();
        for b in dead_candidates {
            if self.free_if_dead(b)? {
                report.blocks_freed += 1;
            }
        }
        let c = &self.counters;
        c.entries.fetch_add(report.entries, Ordering::Relaxed);
        c.bytes.fetch_add(report.bytes, Ordering::Relaxed);
        c.blocks_unlinked
            .fetch_add(report.blocks_unlinked, Ordering::Relaxed);
        c.blocks_freed
            .fetch_add(report.blocks_freed, Ordering::Relaxed);
        Ok(report)
    }

    /// Updates the installed and superseded counters of the blocks involved.
    fn count_installed(
        &self,
        installed: &[BlockId],
        superseded: &[PoolOffset],
        dead_candidates: &mut Vec<BlockId>,
    ) {
        let pool = self.index.pool();
        let backend = pool.backend();
        for &b in installed {
            backend.fetch_add(pool.block_counter_off(b, HEADER_INSTALLED).get(), 1);
        }
        for &entry in superseded {
            if let Some((b, _)) = pool.layout().locate(entry) {
                backend.fetch_add(pool.block_counter_off(b, HEADER_SUPERSEDED).get(), 1);
                dead_candidates.push(b);
            }
        }
    }

    /// Frees `b` if it is retired and nothing it installed is current any more.
    fn free_if_dead(&self, b: BlockId) -> Result<bool> {
        let pool = self.index.pool();
        // Order the counter reads after this thread's counter updates and the retirement, so
        // that of two threads finishing a block's last condition at once, one sees both.
        fence(std::sync::atomic::Ordering::SeqCst);
        let BlockState::Retired { generation, .. } = pool.block_state(b)? else {
            return Ok(false);
        };
        let backend = pool.backend();
        let installed = backend.load(pool.block_counter_off(b, HEADER_INSTALLED).get());
        let superseded = backend.load(pool.block_counter_off(b, HEADER_SUPERSEDED).get());
        if superseded < installed {
            return Ok(false);
        }
        Ok(self.alloc.free_retired(b, generation)?)
    }

    /// Sets every in-use block's counters from a count of the index's references (recovery).
    pub fn reset_counters(&self, references: &[u64]) {
        let pool = self.index.pool();
        let backend = pool.backend();
        for (i, &refs) in references.iter().enumerate() {
            let b = BlockId(i as u32);
            if matches!(pool.block_state(b), Ok(BlockState::Free { .. })) {
                continue;
            }
            backend.store(pool.block_counter_off(b, HEADER_INSTALLED).get(), refs);
            backend.store(pool.block_counter_off(b, HEADER_SUPERSEDED).get(), 0);
        }
    }

    /// Frees retired blocks the index no longer references (recovery step 6).
    pub fn free_unreferenced_retired(&self, references: &[u64]) -> Result<u64> {
        let pool = self.index.pool();
        let mut freed = 0;
        for (i, &refs) in references.iter().enumerate() {
            let b = BlockId(i as u32);
            if let BlockState::Retired { generation, .. } = pool.block_state(b)?
                && refs == 0
                && self.alloc.free_retired(b, generation)?
            {
                freed += 1;
            }
        }
        Ok(freed)
    }
}
