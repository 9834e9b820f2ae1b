//! Recovery of a memory node's pool (pmem FORMAT.md §11): after this, the index holds every
//! acknowledged write, the allocator's free set is exact, and the merge can resume.
//!
//! Order matters: the chains are inspected and the block states rebuilt first (pmem), then an
//! interrupted resize is finished, duplicate slots removed and every block's counters set from a
//! count of the index's references; only then are the chains re-merged (so the merge's counter
//! updates start from true values), and finally retired blocks the index no longer references
//! are freed.

use std::sync::Arc;

use dinomo_pmem::recovery::RecoveryReport;
use dinomo_pmem::{BlockAllocator, Pool};

use crate::error::Result;
use crate::index::{Index, IndexConfig};
use crate::merge::{MergeReport, MergeScope, Merger};

/// A recovered memory node's state.
#[derive(Debug)]
pub struct Recovered {
    pub index: Arc<Index>,
    pub alloc: Arc<BlockAllocator>,
    pub merger: Arc<Merger>,
    /// What the pool-level recovery found (chains, tails, block states).
    pub report: RecoveryReport,
    /// Whether a resize was finished.
    pub resumed_resize: bool,
    /// Duplicate slots removed.
    pub duplicates: usize,
    /// What re-merging the chains did.
    pub merged: MergeReport,
    /// Retired blocks freed because nothing references them.
    pub freed_retired: u64,
}

/// Recovers `pool` (which must be freshly opened, not served by anyone else).
pub fn recover(pool: Arc<Pool>, config: IndexConfig) -> Result<Recovered> {
    let report = dinomo_pmem::recovery::recover(&pool)?;
    let index = Arc::new(Index::open(Arc::clone(&pool), config)?);
    let resumed_resize = index.finish_interrupted_resize()?;
    let mut superseded = Vec::new();
    let duplicates = index.remove_all_duplicates(&mut superseded)?;
    let references = count_references(&index)?;
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), report.free.clone()));
    let merger = Arc::new(Merger::new(Arc::clone(&index), Arc::clone(&alloc)));
    merger.reset_counters(&references);
    let merged = merger.merge_chains(merger.all_chains(), MergeScope::All)?;
    // Re-count: the merge may have superseded entries of retired blocks.
    let references = count_references(&index)?;
    let freed_retired = merger.free_unreferenced_retired(&references)?;
    Ok(Recovered {
        index,
        alloc,
        merger,
        report,
        resumed_resize,
        duplicates,
        merged,
        freed_retired,
    })
}

/// For every block, how many index slots (or cells) name an entry in it.
pub fn count_references(index: &Index) -> Result<Vec<u64>> {
    let layout = *index.pool().layout();
    let mut refs = vec![0u64; layout.block_count as usize];
    index.for_each_slot(|_, _, entry| {
        if let Some((b, _)) = entry.and_then(|e| layout.locate(e)) {
            refs[b.0 as usize] += 1;
        }
    })?;
    Ok(refs)
}
