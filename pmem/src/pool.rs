//! [`Pool`]: a validated pool over a backend, with typed access to its fixed structures — the
//! root area, the log table, the block table and log block headers (FORMAT.md §3–§6).
//!
//! Creation writes the whole initial state and commits it with the superblock (FORMAT.md §2), so
//! a half-created pool is never mistaken for a valid one. Opening validates the superblock and
//! never writes: recovery (`crate::recovery`) is a separate, explicit step.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, FileBackend, FileOptions, OpenMode, SharedBackend};
use crate::codec::{get_u32, round_up};
use crate::constants::*;
use crate::error::{PoolError, Result};
use crate::index_format::{PAIR_LEN, SLOTS_PER_BUCKET, TABLE_HEADER_LEN, TableHeader, link_word};
use crate::layout::{Layout, PoolConfig};
use crate::types::{BlockId, ChainId, PoolOffset};

/// Root area field offsets (FORMAT.md §3).
const ROOT_INDEX_TABLE: u64 = 0;
const ROOT_INDEX_NEXT: u64 = 8;
const ROOT_BOOT_COUNT: u64 = 64;
const ROOT_CLEAN_SHUTDOWN: u64 = 72;
const ROOT_CONTROLLER_GENERATION: u64 = 80;
/// Offset in a log table line of the lease word pair of the KN that writes the chain (§4):
/// the incarnation, then the renewal counter.
pub const CHAIN_LEASE_INCARNATION: u64 = 24;
pub const CHAIN_LEASE_COUNTER: u64 = 32;

/// Block header field offsets (FORMAT.md §6).
pub const HEADER_TAIL: u64 = 0;
pub const HEADER_MAGIC: u64 = 8;
pub const HEADER_MERGED: u64 = 64;
pub const HEADER_INSTALLED: u64 = 72;
pub const HEADER_SUPERSEDED: u64 = 80;
pub const HEADER_MERGED_SEQ: u64 = 88;

/// A block's `tail` word: committed bytes and the link to the next-newer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tail {
    pub used: u32,
    pub next: Option<BlockId>,
}

impl Tail {
    pub const fn encode(self) -> u64 {
        let link = match self.next {
            Some(b) => b.to_link(),
            None => 0,
        };
        (self.used as u64) | ((link as u64) << 32)
    }
    pub const fn decode(w: u64) -> Tail {
        Tail {
            used: w as u32,
            next: BlockId::from_link((w >> 32) as u32),
        }
    }
    /// A sealed block never grows again.
    pub const fn sealed(self) -> bool {
        self.next.is_some()
    }
}

/// A block table word (FORMAT.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    Free { generation: u32 },
    Reserved { chain: ChainId, generation: u32 },
    Retired { chain: ChainId, generation: u32 },
}

impl BlockState {
    pub const fn encode(self) -> u64 {
        let (state, chain, generation) = match self {
            BlockState::Free { generation } => (0u64, 0u32, generation),
            BlockState::Reserved { chain, generation } => (1, chain.0, generation),
            BlockState::Retired { chain, generation } => (2, chain.0, generation),
        };
        state | ((chain as u64 & 0xFF_FFFF) << 8) | ((generation as u64) << 32)
    }
    pub fn decode(w: u64) -> Result<BlockState> {
        let chain = ChainId(((w >> 8) & 0xFF_FFFF) as u32);
        let generation = (w >> 32) as u32;
        match w & 0xFF {
            0 => Ok(BlockState::Free { generation }),
            1 => Ok(BlockState::Reserved { chain, generation }),
            2 => Ok(BlockState::Retired { chain, generation }),
            other => Err(PoolError::Corrupt(format!(
                "block table word {w:#x} has unknown state {other}"
            ))),
        }
    }
    pub const fn generation(self) -> u32 {
        match self {
            BlockState::Free { generation }
            | BlockState::Reserved { generation, .. }
            | BlockState::Retired { generation, .. } => generation,
        }
    }
}

/// The MN-written identity of a block incarnation (header line 0, FORMAT.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockIdentity {
    pub magic: u32,
    pub chain: ChainId,
    pub generation: u32,
}

/// A pool: a backend plus its validated layout.
#[derive(Debug)]
pub struct Pool {
    backend: SharedBackend,
    layout: Layout,
}

impl Pool {
    /// Formats `backend` as a new pool. The backend must be exactly `cfg.size` bytes.
    pub fn create(backend: SharedBackend, cfg: &PoolConfig) -> Result<Pool> {
        if backend.len() != cfg.size {
            return Err(PoolError::Config(format!(
                "backend is {} bytes but the configuration asks for {}",
                backend.len(),
                cfg.size
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let layout = Layout::compute(cfg, random_uuid(), now)?;
        // Step 2 of FORMAT.md §2: zero and initialise every metadata region, then persist.
        backend.zero(0, PAGE);
        let table = initial_table(&layout);
        let metadata_end = table.pairs_off.0 + table.pairs_len();
        backend.zero(layout.root_off, layout.index_arena_off - layout.root_off);
        backend.zero(
            layout.index_arena_off,
            metadata_end - layout.index_arena_off,
        );
        backend.write(layout.index_arena_off, &table.encode());
        let empty_link = link_word(table.version, None);
        for p in 0..table.pairs() {
            let pair = table.pair_off(p).0;
            for bucket in [pair, pair + PAIR_LEN / 2] {
                backend.store(bucket + SLOTS_PER_BUCKET as u64 * 8, empty_link);
            }
        }
        backend.store(layout.root_off + ROOT_INDEX_TABLE, layout.index_arena_off);
        backend.persist(layout.root_off, metadata_end - layout.root_off);
        // Step 3: the superblock is the commit point of creation.
        backend.write(0, &layout.encode());
        backend.persist(0, SUPERBLOCK_LEN);
        Ok(Pool { backend, layout })
    }

    /// Opens and validates an existing pool. Writes nothing.
    pub fn open(backend: SharedBackend) -> Result<Pool> {
        let len = backend.len();
        if len < PAGE {
            return Err(PoolError::TooSmall {
                path: Default::default(),
                actual: len,
                needed: PAGE,
            });
        }
        let mut sb = [0u8; SUPERBLOCK_LEN as usize];
        backend.read(0, &mut sb);
        if sb.iter().all(|&b| b == 0) {
            return Err(PoolError::Foreign);
        }
        let layout = Layout::decode(&sb, len)?;
        let pool = Pool { backend, layout };
        pool.index_table_header().ok_or_else(|| {
            PoolError::Corrupt(format!(
                "the root names an index table at {} that is not a valid table header",
                PoolOffset(pool.index_table())
            ))
        })?;
        Ok(pool)
    }

    /// Creates a pool file. Fails if a non-empty file exists unless `overwrite` is set.
    pub fn create_file(
        path: &Path,
        cfg: &PoolConfig,
        overwrite: bool,
        options: FileOptions,
    ) -> Result<Pool> {
        let mode = if overwrite {
            OpenMode::Overwrite { size: cfg.size }
        } else {
            OpenMode::CreateNew { size: cfg.size }
        };
        let backend = FileBackend::open(path, mode, options)?;
        Pool::create(Arc::new(backend), cfg)
    }

    /// Opens an existing pool file.
    pub fn open_file(path: &Path, options: FileOptions) -> Result<Pool> {
        let backend = FileBackend::open(path, OpenMode::Existing, options)?;
        let len = backend.len();
        if len < PAGE {
            return Err(PoolError::TooSmall {
                path: path.to_path_buf(),
                actual: len,
                needed: PAGE,
            });
        }
        Pool::open(Arc::new(backend))
    }

    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Readies block `b` to be written (see [`Backend::prepare`]): its disk space reserved and
    /// its pages faulted in, so that the writer it is handed to takes neither a full-disk fault
    /// nor page faults on it.
    pub fn prepare_block(&self, b: BlockId) -> std::result::Result<(), String> {
        self.backend
            .prepare(self.layout.block_off(b).0, self.layout.block_size)
    }

    /// Persists a range through the backend.
    pub fn persist(&self, off: PoolOffset, len: u64) {
        self.backend.persist(off.0, len);
    }

    // Root area.

    /// Offset of the current index table header.
    pub fn index_table(&self) -> u64 {
        self.backend.load(self.layout.root_off + ROOT_INDEX_TABLE)
    }
    /// Offset of the table a resize migrates into, 0 when none.
    pub fn index_next(&self) -> u64 {
        self.backend.load(self.layout.root_off + ROOT_INDEX_NEXT)
    }
    /// Where the root's index line is (a KN reads these 16 bytes to find the index).
    pub fn index_root_off(&self) -> PoolOffset {
        PoolOffset(self.layout.root_off + ROOT_INDEX_TABLE)
    }
    /// Sets the current index table and persists it.
    pub fn set_index_table(&self, table: u64) {
        self.store_persist(self.layout.root_off + ROOT_INDEX_TABLE, table);
    }
    /// Sets (or clears, with 0) the resize target and persists it.
    pub fn set_index_next(&self, table: u64) {
        self.store_persist(self.layout.root_off + ROOT_INDEX_NEXT, table);
    }
    /// Reads and validates the header of the table at `off`.
    pub fn table_header_at(&self, off: u64) -> Option<TableHeader> {
        let arena =
            self.layout.index_arena_off..self.layout.index_arena_off + self.layout.index_arena_len;
        if !off.is_multiple_of(64) || !arena.contains(&off) || off + TABLE_HEADER_LEN > arena.end {
            return None;
        }
        let mut b = [0u8; TABLE_HEADER_LEN as usize];
        self.backend.read(off, &mut b);
        let header = TableHeader::decode(&b)?;
        (header.pairs_off.0 >= arena.start
            && header
                .pairs_off
                .0
                .checked_add(header.pairs_len())
                .is_some_and(|end| end <= arena.end))
        .then_some(header)
    }
    /// The current index table's header.
    pub fn index_table_header(&self) -> Option<TableHeader> {
        self.table_header_at(self.index_table())
    }
    pub fn boot_count(&self) -> u64 {
        self.backend.load(self.layout.root_off + ROOT_BOOT_COUNT)
    }
    pub fn clean_shutdown(&self) -> bool {
        self.backend
            .load(self.layout.root_off + ROOT_CLEAN_SHUTDOWN)
            == 1
    }
    /// Marks the start of a serving incarnation: bumps the boot count and clears the clean flag.
    pub fn begin_boot(&self) -> u64 {
        let boot = self.boot_count() + 1;
        self.store_persist(self.layout.root_off + ROOT_BOOT_COUNT, boot);
        self.store_persist(self.layout.root_off + ROOT_CLEAN_SHUTDOWN, 0);
        boot
    }
    /// Records a graceful stop.
    pub fn mark_clean_shutdown(&self) {
        self.store_persist(self.layout.root_off + ROOT_CLEAN_SHUTDOWN, 1);
    }
    /// The generation of the last controller lease granted on this pool (0: never).
    pub fn controller_generation(&self) -> u64 {
        self.backend
            .load(self.layout.root_off + ROOT_CONTROLLER_GENERATION)
    }
    /// Records (persisted) that a controller lease of `generation` was granted.
    pub fn set_controller_generation(&self, generation: u64) {
        self.store_persist(
            self.layout.root_off + ROOT_CONTROLLER_GENERATION,
            generation,
        );
    }
    /// The lease words of chain `c`'s writer: its incarnation and renewal counter (§4).
    pub fn chain_lease(&self, c: ChainId) -> Result<(u64, u64)> {
        self.check_chain(c)?;
        let line = self.layout.chain_off(c).0;
        Ok((
            self.backend.load(line + CHAIN_LEASE_INCARNATION),
            self.backend.load(line + CHAIN_LEASE_COUNTER),
        ))
    }

    // Log table.

    /// The chain's oldest linked block.
    pub fn chain_cursor(&self, c: ChainId) -> Result<Option<BlockId>> {
        self.check_chain(c)?;
        let link = self.backend.load(self.layout.chain_off(c).0);
        let block = u32::try_from(link)
            .ok()
            .and_then(BlockId::from_link)
            .filter(|b| b.0 < self.layout.block_count);
        match (link, block) {
            (0, _) => Ok(None),
            (_, Some(b)) => Ok(Some(b)),
            (_, None) => Err(PoolError::Corrupt(format!(
                "{c} cursor {link:#x} names no block"
            ))),
        }
    }
    /// Moves the chain's cursor and persists it.
    pub fn set_chain_cursor(&self, c: ChainId, block: Option<BlockId>) -> Result<()> {
        self.check_chain(c)?;
        self.store_persist(
            self.layout.chain_off(c).0,
            block.map_or(0, |b| u64::from(b.to_link())),
        );
        Ok(())
    }
    /// Sets the chain's cursor if the chain has none; returns whether it did.
    pub fn init_chain_cursor(&self, c: ChainId, block: BlockId) -> Result<bool> {
        self.check_chain(c)?;
        let off = self.layout.chain_off(c).0;
        let won = self
            .backend
            .compare_exchange(off, 0, u64::from(block.to_link()))
            .is_ok();
        if won {
            self.backend.persist(off, 8);
        }
        Ok(won)
    }
    /// Records who attached to the chain (diagnostic).
    pub fn set_chain_session(&self, c: ChainId, session: u64) -> Result<()> {
        self.check_chain(c)?;
        self.store_persist(self.layout.chain_off(c).0 + 8, session);
        Ok(())
    }
    pub fn check_chain(&self, c: ChainId) -> Result<()> {
        if c.0 >= self.layout.chain_count {
            return Err(PoolError::Config(format!(
                "{c} is outside the pool's {} chains",
                self.layout.chain_count
            )));
        }
        Ok(())
    }

    // Block table and headers.

    pub fn check_block(&self, b: BlockId) -> Result<()> {
        if b.0 >= self.layout.block_count {
            return Err(PoolError::Corrupt(format!(
                "{b} is outside the pool's {} blocks",
                self.layout.block_count
            )));
        }
        Ok(())
    }
    pub fn block_state(&self, b: BlockId) -> Result<BlockState> {
        self.check_block(b)?;
        BlockState::decode(self.backend.load(self.layout.block_table_word(b).0))
    }
    /// Writes a block table word and persists it.
    pub fn set_block_state(&self, b: BlockId, state: BlockState) -> Result<()> {
        self.check_block(b)?;
        self.store_persist(self.layout.block_table_word(b).0, state.encode());
        Ok(())
    }
    /// Compare-and-swaps a block table word (persisting on success).
    pub fn cas_block_state(&self, b: BlockId, from: BlockState, to: BlockState) -> Result<bool> {
        self.check_block(b)?;
        let off = self.layout.block_table_word(b).0;
        let won = self
            .backend
            .compare_exchange(off, from.encode(), to.encode())
            .is_ok();
        if won {
            self.backend.persist(off, 8);
        }
        Ok(won)
    }
    pub fn block_tail(&self, b: BlockId) -> Result<Tail> {
        self.check_block(b)?;
        Ok(Tail::decode(
            self.backend.load(self.layout.block_off(b).0 + HEADER_TAIL),
        ))
    }
    /// Stores a block's tail word and persists it (a local writer's commit point).
    pub fn set_block_tail(&self, b: BlockId, tail: Tail) -> Result<()> {
        self.check_block(b)?;
        self.store_persist(self.layout.block_off(b).0 + HEADER_TAIL, tail.encode());
        Ok(())
    }
    pub fn block_identity(&self, b: BlockId) -> Result<BlockIdentity> {
        self.check_block(b)?;
        let mut line = [0u8; 24];
        self.backend.read(self.layout.block_off(b).0, &mut line);
        Ok(BlockIdentity {
            magic: get_u32(&line, 8),
            chain: ChainId(get_u32(&line, 12)),
            generation: get_u32(&line, 16),
        })
    }
    /// Writes a fresh header for a new incarnation of block `b` and persists it.
    pub fn init_block_header(&self, b: BlockId, chain: ChainId, generation: u32) -> Result<()> {
        self.check_block(b)?;
        let mut header = [0u8; BLOCK_HEADER_LEN as usize];
        header[8..12].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
        header[12..16].copy_from_slice(&chain.0.to_le_bytes());
        header[16..20].copy_from_slice(&generation.to_le_bytes());
        let off = self.layout.block_off(b).0;
        self.backend.write(off, &header);
        self.backend.persist(off, BLOCK_HEADER_LEN);
        Ok(())
    }
    /// Bytes of block `b` merged into the index.
    pub fn block_merged(&self, b: BlockId) -> Result<u64> {
        self.check_block(b)?;
        Ok(self
            .backend
            .load(self.layout.block_off(b).0 + HEADER_MERGED))
    }
    /// Records merge progress in block `b`: the sequence number of the last merged entry, then
    /// the merged offset, each persisted (a crash between them leaves an old `merged`, which
    /// only makes the merge repeat idempotent work).
    pub fn set_block_merged(&self, b: BlockId, merged: u64, last_seq: u64) -> Result<()> {
        self.check_block(b)?;
        let base = self.layout.block_off(b).0;
        self.store_persist(base + HEADER_MERGED_SEQ, last_seq);
        self.store_persist(base + HEADER_MERGED, merged);
        Ok(())
    }
    /// The sequence number of block `b`'s last merged entry.
    pub fn block_merged_seq(&self, b: BlockId) -> Result<u64> {
        self.check_block(b)?;
        Ok(self
            .backend
            .load(self.layout.block_off(b).0 + HEADER_MERGED_SEQ))
    }
    /// Offset of one of block `b`'s counters (`HEADER_INSTALLED` or `HEADER_SUPERSEDED`).
    pub fn block_counter_off(&self, b: BlockId, field: u64) -> PoolOffset {
        self.layout.block_off(b).add(field)
    }

    fn store_persist(&self, off: u64, value: u64) {
        self.backend.store(off, value);
        self.backend.persist(off, 8);
    }
}

/// The initial, empty index table: placed at the start of the arena, sized to leave room for
/// growth and overflow buckets.
fn initial_table(layout: &Layout) -> TableHeader {
    let budget = layout.index_arena_len / 8;
    let mut pairs_log2 = 0u32;
    while pairs_log2 < 10 && (PAIR_LEN << (pairs_log2 + 1)) <= budget {
        pairs_log2 += 1;
    }
    TableHeader {
        version: 1,
        pairs_log2,
        hash_algo: layout.hash_algo,
        pairs_off: PoolOffset(round_up(
            layout.index_arena_off + TABLE_HEADER_LEN,
            PAIR_LEN,
        )),
    }
}

/// A random version-4 uuid from the kernel's generator (falling back to the clock).
fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    // SAFETY: getrandom writes at most `uuid.len()` bytes into the buffer we own.
    let got = unsafe { libc::getrandom(uuid.as_mut_ptr().cast(), uuid.len(), 0) };
    if got != uuid.len() as isize {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        uuid.copy_from_slice(&nanos.to_le_bytes());
        uuid[0] ^= std::process::id() as u8;
    }
    uuid[6] = (uuid[6] & 0x0F) | 0x40;
    uuid[8] = (uuid[8] & 0x3F) | 0x80;
    uuid
}

impl Pool {
    /// The highest sequence number of the chain's unlinked blocks (FORMAT.md §4).
    pub fn chain_seq_floor(&self, c: ChainId) -> Result<u64> {
        self.check_chain(c)?;
        Ok(self.backend.load(self.layout.chain_off(c).0 + 16))
    }
    /// Raises the chain's sequence floor and persists it.
    pub fn set_chain_seq_floor(&self, c: ChainId, seq: u64) -> Result<()> {
        self.check_chain(c)?;
        let off = self.layout.chain_off(c).0 + 16;
        if seq > self.backend.load(off) {
            self.store_persist(off, seq);
        }
        Ok(())
    }
}
