//! [`BlockAllocator`]: hands out and takes back log blocks, crash-consistently (FORMAT.md §5).
//!
//! The free set is volatile and rebuilt by recovery from the pool; the block table records each
//! block's state so that recovery can tell an abandoned allocation (RESERVED, unlinked) from a
//! block the merge retired (RETIRED, possibly still referenced by the index).
//! Freed blocks are reused in FIFO order, so a just-freed block is the last to be overwritten
//! (a reader holding a stale shortcut into it is then most likely to find the old bytes or fail
//! the entry check, never a plausible stranger).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::error::{PoolError, Result};
use crate::pool::{BlockState, Pool};
use crate::types::{BlockId, ChainId};

/// Counters of an allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    pub allocated: u64,
    pub freed: u64,
    pub free_now: u64,
}

/// The pool's log block allocator.
#[derive(Debug)]
pub struct BlockAllocator {
    pool: Arc<Pool>,
    free: Mutex<VecDeque<BlockId>>,
    stats: Mutex<AllocStats>,
}

impl BlockAllocator {
    /// An allocator whose free set is `free` (from recovery, or every block of a new pool).
    pub fn new(pool: Arc<Pool>, free: Vec<BlockId>) -> BlockAllocator {
        let free_now = free.len() as u64;
        BlockAllocator {
            pool,
            free: Mutex::new(free.into()),
            stats: Mutex::new(AllocStats {
                free_now,
                ..AllocStats::default()
            }),
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Hands a block to chain `c` (FORMAT.md §5, allocation steps 1–4).
    pub fn allocate(&self, c: ChainId) -> Result<BlockId> {
        self.pool.check_chain(c)?;
        let b = self.lock_free().pop_front().ok_or(PoolError::NoFreeBlock)?;
        let result = self.initialise(b, c);
        if result.is_err() {
            self.lock_free().push_front(b);
        }
        result?;
        let mut stats = self.lock_stats();
        stats.allocated += 1;
        stats.free_now -= 1;
        Ok(b)
    }

    fn initialise(&self, b: BlockId, c: ChainId) -> Result<()> {
        let previous = self.pool.block_state(b)?;
        let BlockState::Free { generation } = previous else {
            return Err(PoolError::Corrupt(format!(
                "{b} is on the free list but the table says {previous:?}"
            )));
        };
        let generation = generation.wrapping_add(1);
        self.pool.init_block_header(b, c, generation)?;
        self.pool.set_block_state(
            b,
            BlockState::Reserved {
                chain: c,
                generation,
            },
        )?;
        self.pool.init_chain_cursor(c, b)?;
        Ok(())
    }

    /// Marks a block the merge is about to unlink (FORMAT.md §5, unlink). Must precede the
    /// cursor move.
    pub fn retire(&self, b: BlockId) -> Result<()> {
        match self.pool.block_state(b)? {
            BlockState::Reserved { chain, generation } => self
                .pool
                .set_block_state(b, BlockState::Retired { chain, generation }),
            BlockState::Retired { .. } => Ok(()),
            state => Err(PoolError::Corrupt(format!(
                "retiring {b}, which is {state:?}"
            ))),
        }
    }

    /// Frees a RETIRED block of generation `generation`; false if another thread already did or
    /// the block is not in that state.
    pub fn free_retired(&self, b: BlockId, generation: u32) -> Result<bool> {
        let BlockState::Retired {
            chain,
            generation: g,
        } = self.pool.block_state(b)?
        else {
            return Ok(false);
        };
        if g != generation {
            return Ok(false);
        }
        let won = self.pool.cas_block_state(
            b,
            BlockState::Retired { chain, generation },
            BlockState::Free { generation },
        )?;
        if won {
            self.push_free(b);
        }
        Ok(won)
    }

    /// Frees a RESERVED block that its chain never linked (a writer that re-attached drops the
    /// spare it was given by an earlier incarnation).
    pub fn free_unlinked(&self, b: BlockId) -> Result<bool> {
        let BlockState::Reserved { chain, generation } = self.pool.block_state(b)? else {
            return Ok(false);
        };
        let won = self.pool.cas_block_state(
            b,
            BlockState::Reserved { chain, generation },
            BlockState::Free { generation },
        )?;
        if won {
            self.push_free(b);
        }
        Ok(won)
    }

    fn push_free(&self, b: BlockId) {
        self.lock_free().push_back(b);
        let mut stats = self.lock_stats();
        stats.freed += 1;
        stats.free_now += 1;
    }

    /// Blocks free right now.
    pub fn free_count(&self) -> usize {
        self.lock_free().len()
    }

    /// A copy of the free set (tests and diagnostics).
    pub fn free_blocks(&self) -> Vec<BlockId> {
        self.lock_free().iter().copied().collect()
    }

    pub fn stats(&self) -> AllocStats {
        *self.lock_stats()
    }

    fn lock_free(&self) -> std::sync::MutexGuard<'_, VecDeque<BlockId>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn lock_stats(&self) -> std::sync::MutexGuard<'_, AllocStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}
