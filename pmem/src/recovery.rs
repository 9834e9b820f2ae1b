//! The recovery entry point (FORMAT.md §11, steps 1, 2 and the chain half of 6): open a pool after
//! a crash and report every chain with its persisted tail and merge position, and rebuild the
//! block free set from what the chains link.
//!
//! Blocks the merge retired (unlinked from their chain) may still hold entries the index
//! references; this module cannot know, so it reports them and leaves them RETIRED. The index's
//! recovery frees those it finds unreferenced.

use crate::error::{PoolError, Result};
use crate::log::{ChainBlock, walk_chain};
use crate::pool::{BlockState, Pool};
use crate::types::{BlockId, ChainId};

/// One chain after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub chain: ChainId,
    /// Linked blocks, oldest (the cursor) first, head last. Never empty.
    pub blocks: Vec<ChainBlock>,
}

impl ChainReport {
    /// The persisted tail: head block and its `used`.
    pub fn tail(&self) -> (BlockId, u64) {
        let head = self.blocks[self.blocks.len() - 1];
        (head.block, u64::from(head.tail.used))
    }
    /// Where the merge resumes: cursor block and its `merged`.
    pub fn merge_position(&self) -> (BlockId, u64) {
        let cursor = self.blocks[0];
        (cursor.block, cursor.merged)
    }
    /// Committed bytes not yet merged.
    pub fn unmerged_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .map(|b| u64::from(b.tail.used) - b.merged)
            .sum()
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The boot this recovery started.
    pub boot_count: u64,
    /// Whether the previous incarnation stopped gracefully.
    pub was_clean: bool,
    /// Chains that have at least one block.
    pub chains: Vec<ChainReport>,
    /// Blocks free after recovery.
    pub free: Vec<BlockId>,
    /// Unlinked blocks the merge retired; the index decides whether they are still referenced.
    pub retired: Vec<(BlockId, u32)>,
    /// Blocks handed out but never linked, now freed.
    pub released: Vec<BlockId>,
}

impl RecoveryReport {
    pub fn unmerged_bytes(&self) -> u64 {
        self.chains.iter().map(ChainReport::unmerged_bytes).sum()
    }
}

/// Reads every chain without changing the pool.
pub fn inspect_chains(pool: &Pool) -> Result<Vec<ChainReport>> {
    let mut chains = Vec::new();
    for i in 0..pool.layout().chain_count {
        let chain = ChainId(i);
        let blocks = walk_chain(pool, chain)?;
        if !blocks.is_empty() {
            chains.push(ChainReport { chain, blocks });
        }
    }
    Ok(chains)
}

/// Starts a new boot of `pool` and rebuilds the block states from the chains.
pub fn recover(pool: &Pool) -> Result<RecoveryReport> {
    let was_clean = pool.clean_shutdown();
    let chains = inspect_chains(pool)?;
    let boot_count = pool.begin_boot();
    let block_count = pool.layout().block_count as usize;
    let mut linked = vec![false; block_count];
    for chain in &chains {
        for cb in &chain.blocks {
            linked[cb.block.0 as usize] = true;
        }
    }
    let mut report = RecoveryReport {
        boot_count,
        was_clean,
        chains,
        ..RecoveryReport::default()
    };
    for (i, &is_linked) in linked.iter().enumerate() {
        let b = BlockId(i as u32);
        match (pool.block_state(b)?, is_linked) {
            (BlockState::Free { .. }, false) => report.free.push(b),
            (BlockState::Free { .. }, true) => {
                // walk_chain already refuses this; kept as a second check of the invariant.
                return Err(PoolError::Corrupt(format!("{b} is linked but free")));
            }
            (BlockState::Reserved { .. }, true) => {}
            (BlockState::Reserved { generation, .. }, false) => {
                pool.set_block_state(b, BlockState::Free { generation })?;
                report.free.push(b);
                report.released.push(b);
            }
            (BlockState::Retired { chain, generation }, true) => {
                // The merge crashed between retiring the block and moving the cursor past it.
                pool.set_block_state(b, BlockState::Reserved { chain, generation })?;
            }
            (BlockState::Retired { generation, .. }, false) => report.retired.push((b, generation)),
        }
    }
    Ok(report)
}
