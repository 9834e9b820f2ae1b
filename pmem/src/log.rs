//! Log chains in the pool: walking a chain, scanning its entries oldest-first up to the persisted
//! tail, and [`LogWriter`], an in-process writer that commits batches straight to the backend.
//!
//! The walk validates what it reads — bounds, cycles, block identities against the block table,
//! `merged ≤ used ≤ capacity` — and reports damage as [`PoolError::Corrupt`], never by panicking:
//! the bytes came from a file.

use std::collections::HashSet;
use std::sync::Arc;

use crate::alloc::BlockAllocator;
use crate::constants::{BLOCK_MAGIC, CHAIN_BLOCKS_MAX};
use crate::entry::{Entry, EntryIter, Op};
use crate::error::{AppendError, PoolError, Result};
use crate::pool::{BlockIdentity, BlockState, Pool, Tail};
use crate::staging::{CommitPlan, EntryLoc, Mirror, Staging};
use crate::types::{BlockId, ChainId, Epoch, Version};

/// One linked block of a chain, as the walk found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainBlock {
    pub block: BlockId,
    pub tail: Tail,
    pub merged: u64,
    pub identity: BlockIdentity,
    pub state: BlockState,
}

/// Walks chain `c` from its cursor to its head, validating every block.
pub fn walk_chain(pool: &Pool, c: ChainId) -> Result<Vec<ChainBlock>> {
    let mut blocks = Vec::new();
    let mut seen = HashSet::new();
    let mut at = pool.chain_cursor(c)?;
    let capacity = pool.layout().entry_capacity();
    while let Some(b) = at {
        if blocks.len() >= CHAIN_BLOCKS_MAX || !seen.insert(b) {
            return Err(PoolError::Corrupt(format!("{c} loops back to {b}")));
        }
        if b.0 >= pool.layout().block_count {
            return Err(PoolError::Corrupt(format!(
                "{c} links to {b}, outside the pool"
            )));
        }
        let tail = pool.block_tail(b)?;
        let merged = pool.block_merged(b)?;
        let identity = pool.block_identity(b)?;
        let state = pool.block_state(b)?;
        let table_generation = match state {
            BlockState::Reserved { chain, generation }
            | BlockState::Retired { chain, generation }
                if chain == c =>
            {
                generation
            }
            other => {
                return Err(PoolError::Corrupt(format!(
                    "{c} links {b}, but the block table says {other:?}"
                )));
            }
        };
        if identity.magic != BLOCK_MAGIC
            || identity.chain != c
            || identity.generation != table_generation
        {
            return Err(PoolError::Corrupt(format!(
                "{b} in {c} has header {identity:?}, expected chain {c} generation {table_generation}"
            )));
        }
        if u64::from(tail.used) > capacity || merged > u64::from(tail.used) {
            return Err(PoolError::Corrupt(format!(
                "{b} in {c}: merged {merged}, used {}, capacity {capacity}",
                tail.used
            )));
        }
        blocks.push(ChainBlock {
            block: b,
            tail,
            merged,
            identity,
            state,
        });
        at = tail.next;
    }
    Ok(blocks)
}

/// Reads `[from, to)` of block `b`'s entry area.
pub fn read_entry_area(
    pool: &Pool,
    b: BlockId,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    pool.check_block(b)?;
    if from > to || to > pool.layout().entry_capacity() {
        return Err(PoolError::Corrupt(format!(
            "{b}: entry range {from}..{to} out of bounds"
        )));
    }
    buf.clear();
    buf.resize((to - from) as usize, 0);
    pool.backend()
        .read(pool.layout().entry_area_off(b).get() + from, buf);
    Ok(())
}

/// Calls `f(block, offset, entry)` for every entry of `b` in `[from, to)`, oldest first.
/// A damaged entry below the tail is corruption.
pub fn for_each_entry<E: From<PoolError>>(
    pool: &Pool,
    b: BlockId,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(u64, &Entry<'_>) -> Result<(), E>,
) -> Result<(), E> {
    read_entry_area(pool, b, from, to, buf)?;
    for item in EntryIter::new(buf, from) {
        match item {
            Ok((offset, entry)) => f(offset, &entry)?,
            Err((offset, e)) => {
                return Err(PoolError::Corrupt(format!(
                    "{b} offset {offset}, below the committed tail: {e}"
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The greatest sequence number a chain has used (0 for a new chain).
pub fn chain_max_seq(pool: &Pool, c: ChainId, blocks: &[ChainBlock]) -> Result<u64> {
    let mut max = pool.chain_seq_floor(c)?;
    let mut buf = Vec::new();
    for cb in blocks {
        for_each_entry(
            pool,
            cb.block,
            0,
            u64::from(cb.tail.used),
            &mut buf,
            |_, e| {
                max = max.max(e.version.seq);
                Ok::<(), PoolError>(())
            },
        )?;
    }
    Ok(max)
}

/// Frees the RESERVED blocks of chain `c` that the chain does not link: spares handed to an
/// earlier writer of the chain that never used them.
pub fn release_unlinked_spares(
    alloc: &BlockAllocator,
    c: ChainId,
    linked: &[ChainBlock],
) -> Result<u32> {
    let pool = alloc.pool();
    let linked: HashSet<BlockId> = linked.iter().map(|cb| cb.block).collect();
    let mut released = 0;
    for i in 0..pool.layout().block_count {
        let b = BlockId(i);
        if let BlockState::Reserved { chain, .. } = pool.block_state(b)?
            && chain == c
            && !linked.contains(&b)
            && alloc.free_unlinked(b)?
        {
            released += 1;
        }
    }
    Ok(released)
}

/// Executes a commit plan with backend stores; `persist` chooses `flush` durability.
pub fn execute_plan(pool: &Pool, staging: &Staging, plan: &CommitPlan, persist: bool) {
    let backend = pool.backend();
    for w in &plan.writes {
        let bytes = staging.bytes(w);
        backend.write(w.to.get(), bytes);
        if persist {
            backend.flush(w.to.get(), bytes.len() as u64);
        }
    }
    if persist && !plan.writes.is_empty() {
        backend.fence();
    }
    for &(at, word) in &plan.tails {
        backend.store(at.get(), word);
        if persist {
            backend.persist(at.get(), 8);
        }
    }
}

/// Options of a [`LogWriter`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Largest batch in bytes (a commit happens when the next entry would exceed it).
    pub batch_bytes_max: u64,
    /// Persist every commit to media (`flush` durability).
    pub persist: bool,
    /// Keep committed bytes in local mirrors (for reading unmerged entries locally).
    pub keep_history: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            batch_bytes_max: 1 << 20,
            persist: true,
            keep_history: false,
        }
    }
}

/// An in-process writer of one chain: stages entries and commits them straight to the backend.
#[derive(Debug)]
pub struct LogWriter {
    pool: Arc<Pool>,
    alloc: Arc<BlockAllocator>,
    chain: ChainId,
    epoch: Epoch,
    next_seq: u64,
    options: WriterOptions,
    staging: Staging,
    sealed: Vec<Mirror>,
}

impl LogWriter {
    /// Attaches to chain `c`, continuing after its persisted tail (allocating its first block if
    /// it has none). Entries get `epoch` and sequence numbers after every one the chain has used.
    pub fn attach(
        alloc: Arc<BlockAllocator>,
        c: ChainId,
        epoch: Epoch,
        options: WriterOptions,
    ) -> Result<LogWriter> {
        let pool = Arc::clone(alloc.pool());
        let mut blocks = walk_chain(&pool, c)?;
        release_unlinked_spares(&alloc, c, &blocks)?;
        if blocks.is_empty() {
            alloc.allocate(c)?;
            blocks = walk_chain(&pool, c)?;
        }
        let max_seq = chain_max_seq(&pool, c, &blocks)?;
        let head = blocks
            .last()
            .ok_or_else(|| PoolError::Corrupt(format!("{c} has no head after allocation")))?;
        let staging = Staging::new(
            pool.layout(),
            head.block,
            u64::from(head.tail.used),
            options.batch_bytes_max,
            options.keep_history,
        );
        Ok(LogWriter {
            pool,
            alloc,
            chain: c,
            epoch,
            next_seq: max_seq + 1,
            options,
            staging,
            sealed: Vec::new(),
        })
    }

    pub fn chain(&self) -> ChainId {
        self.chain
    }
    /// The head block and its committed `used`.
    pub fn head(&self) -> (BlockId, u64) {
        self.staging.head()
    }
    /// The sequence number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Stages a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(EntryLoc, Version), AppendOrPool> {
        self.append(Op::Put, key, value)
    }
    /// Stages a delete.
    pub fn delete(&mut self, key: &[u8]) -> Result<(EntryLoc, Version), AppendOrPool> {
        self.append(Op::Delete, key, &[])
    }

    fn append(
        &mut self,
        op: Op,
        key: &[u8],
        value: &[u8],
    ) -> Result<(EntryLoc, Version), AppendOrPool> {
        let version = Version {
            epoch: self.epoch,
            seq: self.next_seq,
        };
        loop {
            match self.staging.append(op, key, value, version) {
                Ok(loc) => {
                    self.next_seq += 1;
                    return Ok((loc, version));
                }
                Err(AppendError::NeedBlock) => {
                    let b = self.alloc.allocate(self.chain)?;
                    self.staging.set_spare(b);
                }
                Err(AppendError::BatchFull) => self.commit()?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Commits the staged batch: when this returns, every staged entry is durable (FORMAT.md §6).
    pub fn commit(&mut self) -> Result<()> {
        let plan = self.staging.plan(self.pool.layout());
        if plan.tails.is_empty() {
            return Ok(());
        }
        execute_plan(&self.pool, &self.staging, &plan, self.options.persist);
        if let Some(sealed) = self.staging.committed() {
            self.sealed.push(sealed);
        }
        Ok(())
    }

    /// Mirrors of sealed blocks kept since the last call (with `keep_history`).
    pub fn take_sealed(&mut self) -> Vec<Mirror> {
        std::mem::take(&mut self.sealed)
    }
}

/// An append failed for a reason of the entry or of the pool.
#[derive(Debug, thiserror::Error)]
pub enum AppendOrPool {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Unlinks the chain's cursor block if it is sealed and fully merged (FORMAT.md §5, unlink):
/// retires it, raises the chain's sequence floor to `block_max_seq`, then moves the cursor to
/// the next block. Returns the unlinked block and its generation, or `None` if the cursor block
/// is the head or not fully merged.
pub fn unlink_cursor_block(
    alloc: &BlockAllocator,
    c: ChainId,
    block_max_seq: u64,
) -> Result<Option<(BlockId, u32)>> {
    let pool = alloc.pool();
    let Some(cursor) = pool.chain_cursor(c)? else {
        return Ok(None);
    };
    let tail = pool.block_tail(cursor)?;
    let Some(next) = tail.next else {
        return Ok(None);
    };
    if pool.block_merged(cursor)? < u64::from(tail.used) {
        return Ok(None);
    }
    alloc.retire(cursor)?;
    pool.set_chain_seq_floor(c, block_max_seq)?;
    pool.set_chain_cursor(c, Some(next))?;
    Ok(Some((cursor, pool.block_state(cursor)?.generation())))
}
