//! [`Index`]: the pool-resident hash index, as the memory node sees it (pmem FORMAT.md §8).
//!
//! Writers are the MN's merge threads. Every update is one compare-and-swap of one 8-byte word
//! (a slot, a link, or an indirect cell's target) followed by a flush of its line; a batch of
//! updates becomes durable at the next [`Index::sync`] (a fence), which the merge issues before
//! it records merge progress. No update needs a lock or a log: each word is old or new after a
//! crash, and every intermediate state is a valid index.
//!
//! Concurrency rules:
//! - A key is found by reading every slot of its pair (and overflow chains) whose tag matches
//!   and comparing the entry's key. Its current entry is the match with the greatest
//!   `(epoch, seq)`; an update never installs an entry older than the current one.
//! - An insert claims an empty slot by CAS, then removes any other slot of the same key that a
//!   concurrent insert claimed (the older one loses).
//! - A resize freezes each pair (the FROZEN bit on every slot and link, by CAS), copies it into
//!   the next table by upsert, then marks it MIGRATED. A writer whose CAS meets a FROZEN word
//!   helps migrate the pair and carries on in the next table; a writer that meets MIGRATED goes
//!   straight there. At most one resize runs at a time.
//! - Retired tables stay MIGRATED for a whole resize period before the arena reuses them, and
//!   reused memory carries another version tag, so a remote reader with an old header always
//!   learns that it is stale.

use std::sync::Arc;

use dinomo_pmem::constants::{CELL_LEN, ENTRY_HEADER_LEN};
use dinomo_pmem::entry::{EntryHeader, Op};
use dinomo_pmem::index_format::{
    BUCKET_LEN, FROZEN, INDIRECT, Link, MIGRATED, PAIR_LEN, PAIRS_LOG2_MAX, SLOTS_PER_BUCKET, Slot,
    TABLE_HEADER_LEN, TableHeader, link_word, slot_word, tag_of,
};
use dinomo_pmem::{Pool, PoolOffset, SharedBackend, Version};

use crate::arena::{Arena, Extent};
use crate::error::{IndexError, Result};
use crate::hash::KeyHasher;
use crate::probe::{Hit, Probe, Step};
use crate::sync::{AtomicI64, AtomicU64, Mutex, Ordering, RwLock, lock, read, write};

/// Offset of the link word in a bucket.
const LINK: u64 = SLOTS_PER_BUCKET as u64 * 8;
/// Slots in a pair.
const PAIR_SLOTS: u64 = 2 * SLOTS_PER_BUCKET as u64;
/// Attempts of one update before it reports contention (each failed attempt lost a CAS race to
/// another writer, which made progress).
pub const UPDATE_ATTEMPTS_MAX: u32 = 10_000;
/// A table header plus padding before the pair array (so the pairs are 128-aligned).
const TABLE_PREFIX: u64 = PAIR_LEN;
/// Overflow buckets one chain may hold before it is considered damaged.
const CHAIN_BUCKETS_MAX: usize = 1 << 16;
/// The value size a local lookup's entry read assumes.
const LOCAL_VALUE_HINT: u32 = 1024;
/// Restarts of one local lookup before it reports contention.
const LOOKUP_RESTARTS_MAX: u32 = 1_000;
/// Pairs a resize copies between two fences.
const MIGRATE_CHUNK_PAIRS: u64 = 256;

/// Tunables of the index.
#[derive(Debug, Clone, Copy)]
pub struct IndexConfig {
    /// Grow when keys exceed this fraction of the slots.
    pub grow_load: f64,
    /// Shrink when keys fall below this fraction of the slots.
    pub shrink_load: f64,
    /// Never shrink below 2^this pairs.
    pub min_pairs_log2: u32,
    /// Resize automatically as keys come and go.
    pub auto_resize: bool,
    pub hasher: KeyHasher,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            grow_load: 0.8,
            shrink_load: 0.05,
            min_pairs_log2: 4,
            auto_resize: true,
            hasher: KeyHasher::Xxh3,
        }
    }
}

/// A table: where its header is, and the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub off: u64,
    pub header: TableHeader,
}

impl Table {
    fn bytes(&self) -> u64 {
        TABLE_PREFIX + self.header.pairs_len()
    }
    fn capacity(&self) -> u64 {
        self.header.pairs() * PAIR_SLOTS
    }
    fn buckets(&self, pair: u64) -> [u64; 2] {
        let p = self.header.pair_off(pair).get();
        [p, p + BUCKET_LEN]
    }
}

/// Counters of the index.
#[derive(Debug, Default)]
pub struct IndexStats {
    pub inserts: AtomicU64,
    pub updates: AtomicU64,
    pub removes: AtomicU64,
    pub stale_skipped: AtomicU64,
    pub cas_retries: AtomicU64,
    pub overflow_buckets: AtomicU64,
    pub resizes: AtomicU64,
    pub migration_helps: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounters {
    pub keys: i64,
    pub inserts: u64,
    pub updates: u64,
    pub removes: u64,
    pub stale_skipped: u64,
    pub cas_retries: u64,
    pub overflow_buckets: u64,
    pub resizes: u64,
    pub migration_helps: u64,
    pub pairs: u64,
    pub version: u64,
}

/// A slot that holds the key, with what it resolves to.
#[derive(Debug, Clone, Copy)]
struct Found {
    at: u64,
    word: u64,
    entry: PoolOffset,
    version: Version,
    /// A delete entry: a tombstone (see `try_remove`).
    op: Op,
    cell: Option<u64>,
}

#[derive(Debug, Default)]
struct Scan {
    found: Vec<Found>,
    empty: Option<(u64, u64)>,
    /// The link word at the end of the first bucket's chain (where an overflow bucket goes).
    chain_end: Option<(u64, u64)>,
    frozen: bool,
    migrated: bool,
    overflow: Vec<u64>,
}

enum Attempt<T> {
    Done(T),
    /// A CAS lost a race: look again.
    Again,
    /// The pair is being migrated: help, then use the next table.
    Frozen,
    /// The pair lives in the next table.
    Migrated,
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The update took effect: an upsert's entry is now the key's current one, a remove removed.
    Applied,
    /// The key already has this entry or a newer one (or, for a remove, no entry): no change.
    Skipped,
    /// A remove in the target table of a running resize: the key's slot now names the delete
    /// entry (a tombstone), so that a late copy of the key's older entry cannot resurrect it.
    /// Tombstones are cleared when the resize ends.
    Tombstoned,
}

/// The index.
pub struct Index {
    pool: Arc<Pool>,
    backend: SharedBackend,
    config: IndexConfig,
    /// The current table and, during a resize, the next one.
    tables: Mutex<(Table, Option<Table>)>,
    arena: Mutex<Arena>,
    resize_lock: Mutex<()>,
    /// Held (shared) by every update for as long as it may touch a table it took from a snapshot;
    /// taken exclusively before retired tables are reused, so that no update of this process
    /// still works on memory that is about to become another table.
    reclaim_gate: RwLock<()>,
    free_cells: Mutex<Vec<u32>>,
    keys: AtomicI64,
    /// Tombstones written during the running resize.
    tombstones: AtomicU64,
    /// Entries whose tombstones were cleared: the merge updates their blocks' counters.
    purged: Mutex<Vec<PoolOffset>>,
    stats: IndexStats,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("tables", &*lock(&self.tables))
            .field("keys", &self.keys())
            .finish()
    }
}

impl Index {
    /// Opens the index of `pool`: reads the root, rebuilds the arena's allocation from the
    /// tables it reaches, counts the keys and finds the free indirect cells. A resize that a
    /// crash interrupted is left for [`Index::finish_interrupted_resize`].
    pub fn open(pool: Arc<Pool>, config: IndexConfig) -> Result<Index> {
        let backend = Arc::clone(pool.backend());
        let table_off = pool.index_table();
        let current = table_at(&pool, table_off)?;
        let next = match pool.index_next() {
            0 => None,
            off if off == table_off => {
                // A crash between the two root stores that end a resize: it had finished.
                pool.set_index_next(0);
                None
            }
            off => Some(table_at(&pool, off)?),
        };
        let layout = *pool.layout();
        let index = Index {
            arena: Mutex::new(Arena::new(
                layout.index_arena_off,
                layout.index_arena_len,
                &[],
            )),
            pool,
            backend,
            config,
            tables: Mutex::new((current, next)),
            resize_lock: Mutex::new(()),
            reclaim_gate: RwLock::new(()),
            free_cells: Mutex::new(Vec::new()),
            keys: AtomicI64::new(0),
            tombstones: AtomicU64::new(0),
            purged: Mutex::new(Vec::new()),
            stats: IndexStats::default(),
        };
        index.rebuild_volatile_state()?;
        Ok(index)
    }

    /// Rebuilds the arena allocation, the key count and the free cell list from the pool.
    fn rebuild_volatile_state(&self) -> Result<()> {
        let (current, next) = *lock(&self.tables);
        let mut used = Vec::new();
        let mut keys = 0i64;
        let mut referenced_cells = std::collections::HashSet::new();
        for table in std::iter::once(current).chain(next) {
            used.push(Extent {
                off: table.off,
                len: table.bytes(),
            });
            for pair in 0..table.header.pairs() {
                for bucket in table.buckets(pair) {
                    let chain = self.chain(table, bucket)?;
                    for &b in &chain {
                        if b != bucket {
                            used.push(Extent {
                                off: b,
                                len: BUCKET_LEN,
                            });
                        }
                        for i in 0..SLOTS_PER_BUCKET as u64 {
                            let slot = Slot::decode(self.backend.load(b + i * 8));
                            if let Some(target) = slot.target {
                                // During a resize a key is in both tables; count the current one.
                                if table == current {
                                    keys += 1;
                                }
                                if slot.indirect {
                                    referenced_cells.insert(target.get());
                                }
                            }
                        }
                    }
                }
            }
        }
        let layout = *self.pool.layout();
        *lock(&self.arena) = Arena::new(layout.index_arena_off, layout.index_arena_len, &used);
        self.keys.store(keys, Ordering::Relaxed);
        let mut free = Vec::new();
        for i in (0..layout.cell_count).rev() {
            let off = layout.cell_off(i).get();
            if !referenced_cells.contains(&off) {
                if self.backend.load(off) != 0 || self.backend.load(off + 8) != 0 {
                    // A cell no slot names: an install or remove was interrupted (FORMAT.md §9).
                    self.backend.store(off, 0);
                    self.backend.store(off + 8, 0);
                    self.backend.flush(off, CELL_LEN);
                }
                free.push(i);
            }
        }
        self.backend.fence();
        *lock(&self.free_cells) = free;
        Ok(())
    }

    /// The buckets of the chain starting at `bucket` (itself first), validated.
    fn chain(&self, table: Table, bucket: u64) -> Result<Vec<u64>> {
        let mut out = vec![bucket];
        let mut at = bucket;
        loop {
            let link = Link::decode(self.backend.load(at + LINK));
            if !link.belongs_to(table.header.version) {
                return Err(IndexError::Corrupt(format!(
                    "bucket {at:#x} carries version tag {} in table version {}",
                    link.version_tag, table.header.version
                )));
            }
            let Some(next) = link.next else {
                return Ok(out);
            };
            let layout = self.pool.layout();
            let arena = layout.index_arena_off..layout.index_arena_off + layout.index_arena_len;
            if !next.get().is_multiple_of(BUCKET_LEN)
                || !arena.contains(&next.get())
                || out.len() >= CHAIN_BUCKETS_MAX
            {
                return Err(IndexError::Corrupt(format!(
                    "bucket {at:#x} links to {next}"
                )));
            }
            out.push(next.get());
            at = next.get();
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.config.hasher.hash(key)
    }
    /// Keys in the index, as counted by the updates: exact while no resize runs concurrently with
    /// inserts of one key from two chains (each such race can leave the count one off until the
    /// next open). It drives resizing; [`Index::entries`] is the exact answer.
    pub fn keys(&self) -> i64 {
        self.keys.load(Ordering::Relaxed)
    }
    /// The current table and the resize target.
    pub fn tables(&self) -> (Table, Option<Table>) {
        *lock(&self.tables)
    }
    pub fn counters(&self) -> IndexCounters {
        let (t, _) = self.tables();
        let s = &self.stats;
        IndexCounters {
            keys: self.keys(),
            inserts: s.inserts.load(Ordering::Relaxed),
            updates: s.updates.load(Ordering::Relaxed),
            removes: s.removes.load(Ordering::Relaxed),
            stale_skipped: s.stale_skipped.load(Ordering::Relaxed),
            cas_retries: s.cas_retries.load(Ordering::Relaxed),
            overflow_buckets: s.overflow_buckets.load(Ordering::Relaxed),
            resizes: s.resizes.load(Ordering::Relaxed),
            migration_helps: s.migration_helps.load(Ordering::Relaxed),
            pairs: t.header.pairs(),
            version: t.header.version,
        }
    }

    /// Makes every update flushed so far durable.
    pub fn sync(&self) {
        self.backend.fence();
    }

    // Reading.

    /// Reads the entry at `target` far enough to compare keys: its header and version if its
    /// key is `key`. Offsets that do not name a plausible entry resolve to `None`.
    fn entry_of(&self, target: PoolOffset, key: &[u8]) -> Option<(Version, Op)> {
        let layout = self.pool.layout();
        let (_, in_area) = layout.locate(target)?;
        let need = ENTRY_HEADER_LEN as u64 + key.len() as u64;
        if in_area + need > layout.entry_capacity() {
            return None;
        }
        let mut buf = [0u8; ENTRY_HEADER_LEN + 64];
        let mut owned;
        let bytes: &mut [u8] = if need as usize <= buf.len() {
            &mut buf[..need as usize]
        } else {
            owned = vec![0u8; need as usize];
            &mut owned
        };
        self.backend.read(target.get(), bytes);
        let header = EntryHeader::decode(bytes).ok()?;
        (header.key_len == key.len() && &bytes[ENTRY_HEADER_LEN..] == key)
            .then_some((header.version, header.op))
    }

    /// Resolves a slot to its entry (through the cell for an indirect slot).
    fn resolve(&self, slot: Slot) -> Option<(PoolOffset, Option<u64>)> {
        let target = slot.target?;
        if !slot.indirect {
            return Some((target, None));
        }
        let layout = self.pool.layout();
        let cells =
            layout.cell_table_off..layout.cell_table_off + u64::from(layout.cell_count) * CELL_LEN;
        if !cells.contains(&target.get()) || !(target.get() - cells.start).is_multiple_of(CELL_LEN)
        {
            return None;
        }
        let entry = self.backend.load(target.get());
        (entry != 0).then_some((PoolOffset(entry), Some(target.get())))
    }

    /// Scans the key's pair for an update; `Err` carries the attempt's answer when the pair is
    /// frozen or has moved to the next table.
    fn scan_for_update<T>(
        &self,
        table: Table,
        key: &[u8],
        h: u64,
    ) -> Result<Result<Scan, Attempt<T>>> {
        let scan = self.scan(table, key, h)?;
        Ok(if scan.migrated {
            Err(Attempt::Migrated)
        } else if scan.frozen {
            Err(Attempt::Frozen)
        } else {
            Ok(scan)
        })
    }

    /// Reads the key's pair (and chains) in `table`.
    fn scan(&self, table: Table, key: &[u8], h: u64) -> Result<Scan> {
        let tag = tag_of(h);
        let mut scan = Scan::default();
        // Inserts go to the emptier home bucket of the pair, so both fill evenly and overflow
        // buckets (an extra READ for remote readers) are needed only when both are full.
        let mut home_free = [0usize; 2];
        let mut home_empty: [Option<(u64, u64)>; 2] = [None, None];
        let mut overflow_empty: Option<(u64, u64)> = None;
        for (k, bucket) in table
            .buckets(table.header.pair_of(h))
            .into_iter()
            .enumerate()
        {
            let mut at = bucket;
            let mut hops = 0usize;
            loop {
                let link_word_value = self.backend.load(at + LINK);
                let link = Link::decode(link_word_value);
                if !link.belongs_to(table.header.version) {
                    return Err(IndexError::Corrupt(format!(
                        "bucket {at:#x} is not part of table {}",
                        table.header.version
                    )));
                }
                if link.migrated {
                    scan.migrated = true;
                    return Ok(scan);
                }
                scan.frozen |= link.frozen;
                let mut free_here = 0;
                for i in 0..SLOTS_PER_BUCKET as u64 {
                    let w = self.backend.load(at + i * 8);
                    if w & FROZEN != 0 {
                        scan.frozen = true;
                    }
                    let slot = Slot::decode(w);
                    match slot.target {
                        Some(_) if slot.tag == tag => {
                            if let Some((entry, cell)) = self.resolve(slot)
                                && let Some((version, op)) = self.entry_of(entry, key)
                            {
                                scan.found.push(Found {
                                    at: at + i * 8,
                                    word: w,
                                    entry,
                                    version,
                                    op,
                                    cell,
                                });
                            }
                        }
                        Some(_) => {}
                        None if w & FROZEN == 0 => {
                            free_here += 1;
                            if at != bucket {
                                overflow_empty.get_or_insert((at + i * 8, w));
                            } else {
                                home_empty[k].get_or_insert((at + i * 8, w));
                            }
                        }
                        None => {}
                    }
                }
                if at == bucket {
                    home_free[k] = free_here;
                } else {
                    scan.overflow.push(at);
                }
                match link.next {
                    Some(next) => {
                        hops += 1;
                        if hops > CHAIN_BUCKETS_MAX {
                            return Err(IndexError::Corrupt(format!(
                                "overflow chain from {bucket:#x} is too long"
                            )));
                        }
                        at = next.get();
                    }
                    None => {
                        if k == 0 {
                            scan.chain_end = Some((at + LINK, link_word_value));
                        }
                        break;
                    }
                }
            }
        }
        let home = if home_free[1] > home_free[0] { 1 } else { 0 };
        scan.empty = home_empty[home].or(home_empty[1 - home]).or(overflow_empty);
        Ok(scan)
    }

    /// Looks a key up in the MN's own memory (the same probe a KN runs remotely).
    pub fn get(&self, key: &[u8]) -> Result<Option<Hit>> {
        let h = self.hash(key);
        let hasher = match self.config.hasher {
            KeyHasher::Xxh3 => crate::hash::key_hash as fn(&[u8]) -> u64,
            KeyHasher::Custom(f) => f,
        };
        let mut use_next = false;
        for _ in 0..LOOKUP_RESTARTS_MAX {
            let (current, next) = self.tables();
            let table = match (use_next, next) {
                (true, Some(n)) => n,
                _ => current,
            };
            let mut probe = Probe::new(table.header, key, h, hasher, LOCAL_VALUE_HINT);
            let mut step = probe.start();
            let mut buf = Vec::new();
            loop {
                match step {
                    Step::Read { off, len } => {
                        buf.resize(len as usize, 0);
                        if off
                            .get()
                            .checked_add(u64::from(len))
                            .is_none_or(|end| end > self.backend.len())
                        {
                            // A garbage offset: treat as a changed slot.
                            step = Step::Retry;
                            continue;
                        }
                        self.backend.read(off.get(), &mut buf);
                        step = probe.feed(&buf);
                    }
                    Step::Hit(hit) => return Ok(Some(hit)),
                    Step::Miss => return Ok(None),
                    Step::Moved => {
                        use_next = true;
                        break;
                    }
                    Step::Stale | Step::Retry => {
                        use_next = false;
                        break;
                    }
                }
            }
        }
        Err(IndexError::Contended(LOOKUP_RESTARTS_MAX))
    }

    // Writing.

    /// Makes `entry` (a put of `key` with `version`) the key's current entry unless the key
    /// already has a newer one. Entries it replaces are appended to `superseded`.
    pub fn upsert(
        &self,
        key: &[u8],
        entry: PoolOffset,
        version: Version,
        superseded: &mut Vec<PoolOffset>,
    ) -> Result<Outcome> {
        let h = self.hash(key);
        let word = slot_word(tag_of(h), entry, false);
        let applied = self.with_tables(h, |table, _| {
            self.try_put(table, key, h, word, entry, version, superseded, false)
        })?;
        self.maybe_grow();
        Ok(applied)
    }

    /// Removes `key` if its current entry is older than `version`, the version of the delete entry
    /// at `delete_entry`. The entry it removes is appended to `superseded`.
    pub fn remove(
        &self,
        key: &[u8],
        delete_entry: PoolOffset,
        version: Version,
        superseded: &mut Vec<PoolOffset>,
    ) -> Result<Outcome> {
        let h = self.hash(key);
        let applied = self.with_tables(h, |table, target| {
            self.try_remove(table, key, h, delete_entry, version, superseded, target)
        })?;
        self.maybe_shrink();
        Ok(applied)
    }

    /// Runs `attempt` against the right table, retrying lost races and following resizes.
    ///
    /// Every round starts from a fresh snapshot of (current, next). The next table is used only
    /// for a pair that the current table says has moved (MIGRATED, or FROZEN and then migrated by
    /// this thread's help), never on an older snapshot's word: a key's pair must have left the old
    /// table before anyone changes it in the new one.
    fn with_tables<T>(
        &self,
        h: u64,
        mut attempt: impl FnMut(Table, bool) -> Result<Attempt<T>>,
    ) -> Result<T> {
        let _gate = read(&self.reclaim_gate);
        for _ in 0..UPDATE_ATTEMPTS_MAX {
            let (current, next) = self.tables();
            let moved = match attempt(current, false)? {
                Attempt::Done(t) => return Ok(t),
                Attempt::Again => false,
                Attempt::Frozen => match next {
                    Some(n) => {
                        self.help_migrate(current, n, current.header.pair_of(h))?;
                        true
                    }
                    // The resize that froze the pair finished after the snapshot.
                    None => false,
                },
                Attempt::Migrated => next.is_some(),
            };
            if moved && let Some(n) = next {
                // If the next table is itself frozen or moved on, a later resize started
                // after this snapshot: the fresh snapshot of the next round sorts it out.
                if let Attempt::Done(t) = attempt(n, true)? {
                    return Ok(t);
                }
            }
            self.stats.cas_retries.fetch_add(1, Ordering::Relaxed);
        }
        Err(IndexError::Contended(UPDATE_ATTEMPTS_MAX))
    }

    fn flush_word(&self, at: u64) {
        self.backend.flush(at, 8);
    }

    #[allow(clippy::too_many_arguments)]
    fn try_put(
        &self,
        table: Table,
        key: &[u8],
        h: u64,
        word: u64,
        entry: PoolOffset,
        version: Version,
        superseded: &mut Vec<PoolOffset>,
        migrating: bool,
    ) -> Result<Attempt<Outcome>> {
        let scan = match self.scan_for_update(table, key, h)? {
            Ok(scan) => scan,
            Err(moved) => return Ok(moved),
        };
        let newest = scan.found.iter().copied().max_by_key(|f| f.version);
        if let Some(cur) = newest {
            if cur.entry == entry || version <= cur.version {
                self.stats.stale_skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(Attempt::Done(Outcome::Skipped));
            }
            match cur.cell {
                Some(cell) => {
                    // A replicated key: the cell names the entry.
                    if self
                        .backend
                        .compare_exchange(cell, cur.entry.get(), entry.get())
                        .is_err()
                    {
                        return Ok(Attempt::Again);
                    }
                    self.flush_word(cell);
                }
                None => {
                    if self
                        .backend
                        .compare_exchange(cur.at, cur.word, word)
                        .is_err()
                    {
                        return Ok(Attempt::Again);
                    }
                    self.flush_word(cur.at);
                }
            }
            superseded.push(cur.entry);
            self.remove_duplicates(&scan.found, cur.at, superseded);
            if cur.op == Op::Delete && !migrating {
                // The key came back after a delete that left a tombstone.
                self.keys.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.updates.fetch_add(1, Ordering::Relaxed);
            return Ok(Attempt::Done(Outcome::Applied));
        }
        // A new key: claim an empty slot, or link an overflow bucket.
        match scan.empty {
            Some((at, old)) => {
                if self.backend.compare_exchange(at, old, word).is_err() {
                    return Ok(Attempt::Again);
                }
                self.flush_word(at);
            }
            None => {
                let Some((link_at, link_old)) = scan.chain_end else {
                    return Err(IndexError::Corrupt("a pair without a chain end".into()));
                };
                let bucket = self.alloc_overflow(table, word)?;
                let linked = link_word(table.header.version, Some(PoolOffset(bucket)));
                if self
                    .backend
                    .compare_exchange(link_at, link_old, linked)
                    .is_err()
                {
                    lock(&self.arena).free(bucket, BUCKET_LEN);
                    return Ok(Attempt::Again);
                }
                self.flush_word(link_at);
                self.stats.overflow_buckets.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !migrating {
            // A copy made by a resize is not a new key.
            self.keys.fetch_add(1, Ordering::Relaxed);
            self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        }
        // A concurrent insert of the same key may have claimed another slot: keep the newer.
        let after = self.scan(table, key, h)?;
        if after.found.len() > 1 && !after.frozen && !after.migrated {
            let newest = after
                .found
                .iter()
                .copied()
                .max_by_key(|f| f.version)
                .map(|f| f.at);
            let ours_won =
                newest.is_some_and(|at| after.found.iter().any(|f| f.at == at && f.entry == entry));
            if let Some(keep) = newest {
                self.remove_duplicates(&after.found, keep, superseded);
            }
            if !ours_won {
                return Ok(Attempt::Done(Outcome::Skipped));
            }
        }
        Ok(Attempt::Done(Outcome::Applied))
    }

    /// Clears every slot in `found` except the one at `keep`; their entries are superseded.
    fn remove_duplicates(&self, found: &[Found], keep: u64, superseded: &mut Vec<PoolOffset>) {
        for f in found.iter().filter(|f| f.at != keep) {
            if self.backend.compare_exchange(f.at, f.word, 0).is_ok() {
                self.flush_word(f.at);
                self.keys.fetch_sub(1, Ordering::Relaxed);
                superseded.push(f.entry);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn try_remove(
        &self,
        table: Table,
        key: &[u8],
        h: u64,
        delete_entry: PoolOffset,
        version: Version,
        superseded: &mut Vec<PoolOffset>,
        resize_target: bool,
    ) -> Result<Attempt<Outcome>> {
        let scan = match self.scan_for_update(table, key, h)? {
            Ok(scan) => scan,
            Err(moved) => return Ok(moved),
        };
        let Some(cur) = scan.found.iter().copied().max_by_key(|f| f.version) else {
            return Ok(Attempt::Done(Outcome::Skipped));
        };
        if version <= cur.version || cur.op == Op::Delete {
            self.stats.stale_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(Attempt::Done(Outcome::Skipped));
        }
        // In a resize's target table, a helper that copied the pair before this remove may still
        // be about to insert the key's old entry; a tombstone (newer) makes that copy a no-op.
        let replacement = if resize_target {
            slot_word(tag_of(h), delete_entry, false)
        } else {
            0
        };
        if self
            .backend
            .compare_exchange(cur.at, cur.word, replacement)
            .is_err()
        {
            return Ok(Attempt::Again);
        }
        self.flush_word(cur.at);
        if let Some(cell) = cur.cell {
            self.release_cell(cell);
        }
        self.keys.fetch_sub(1, Ordering::Relaxed);
        self.stats.removes.fetch_add(1, Ordering::Relaxed);
        superseded.push(cur.entry);
        self.remove_duplicates(&scan.found, cur.at, superseded);
        if resize_target {
            self.tombstones.fetch_add(1, Ordering::Relaxed);
            return Ok(Attempt::Done(Outcome::Tombstoned));
        }
        Ok(Attempt::Done(Outcome::Applied))
    }

    fn alloc_overflow(&self, table: Table, word: u64) -> Result<u64> {
        let bucket = lock(&self.arena)
            .alloc(BUCKET_LEN, BUCKET_LEN)
            .ok_or(IndexError::ArenaFull(BUCKET_LEN))?;
        let mut bytes = [0u8; BUCKET_LEN as usize];
        bytes[0..8].copy_from_slice(&word.to_le_bytes());
        bytes[LINK as usize..]
            .copy_from_slice(&link_word(table.header.version, None).to_le_bytes());
        self.backend.write(bucket, &bytes);
        self.backend.persist(bucket, BUCKET_LEN);
        Ok(bucket)
    }

    // Resizing.

    fn maybe_grow(&self) {
        if !self.config.auto_resize {
            return;
        }
        let (t, next) = self.tables();
        if next.is_none()
            && self.keys() as f64 > self.config.grow_load * t.capacity() as f64
            && t.header.pairs_log2 < PAIRS_LOG2_MAX
        {
            // A full arena leaves the table as it is: overflow buckets still take inserts.
            let _ = self.try_resize(t.header.pairs_log2 + 1);
        }
    }

    fn maybe_shrink(&self) {
        if !self.config.auto_resize {
            return;
        }
        let (t, next) = self.tables();
        if next.is_none()
            && t.header.pairs_log2 > self.config.min_pairs_log2
            && (self.keys() as f64) < self.config.shrink_load * t.capacity() as f64
        {
            let _ = self.try_resize(t.header.pairs_log2 - 1);
        }
    }

    /// Resizes unless another resize is running; returns whether this call resized.
    pub fn try_resize(&self, pairs_log2: u32) -> Result<bool> {
        let Ok(_guard) = self.resize_lock.try_lock() else {
            return Ok(false);
        };
        self.resize_locked(pairs_log2)?;
        Ok(true)
    }

    /// Resizes to `2^pairs_log2` pairs, waiting for a running resize first.
    pub fn resize(&self, pairs_log2: u32) -> Result<()> {
        let _guard = lock(&self.resize_lock);
        self.resize_locked(pairs_log2)
    }

    /// Completes a resize that a crash interrupted (recovery step 3).
    pub fn finish_interrupted_resize(&self) -> Result<bool> {
        let _guard = lock(&self.resize_lock);
        let (current, next) = self.tables();
        let Some(next) = next else { return Ok(false) };
        self.migrate_all(current, next)?;
        Ok(true)
    }

    /// Starts a resize without migrating: allocates and publishes the next table, so that the
    /// pairs move as writers meet them, and a later [`Index::finish_interrupted_resize`] (or
    /// `resize`) completes it. Model checks use it to race only the migration against writers.
    pub fn begin_resize(&self, pairs_log2: u32) -> Result<()> {
        let _guard = lock(&self.resize_lock);
        if self.tables().1.is_some() {
            return Ok(());
        }
        self.start_resize(pairs_log2).map(|_| ())
    }

    fn resize_locked(&self, pairs_log2: u32) -> Result<()> {
        let (current, next) = self.start_resize(pairs_log2)?;
        self.migrate_all(current, next)
    }

    /// Allocates, initialises and publishes the next table (or finds the one a crash left);
    /// returns the current and the next table.
    fn start_resize(&self, pairs_log2: u32) -> Result<(Table, Table)> {
        if pairs_log2 > PAIRS_LOG2_MAX {
            return Err(IndexError::Corrupt(format!(
                "a table of 2^{pairs_log2} pairs is too large"
            )));
        }
        let (current, pending) = self.tables();
        if let Some(next) = pending {
            return Ok((current, next));
        }
        let header = TableHeader {
            version: current.header.version + 1,
            pairs_log2,
            hash_algo: current.header.hash_algo,
            pairs_off: PoolOffset(0),
        };
        let bytes = TABLE_PREFIX + header.pairs_len();
        let off = {
            // Tables retired by the previous resize have waited a whole resize period for remote
            // readers; the gate also waits out every update of this process that began before.
            let _gate = write(&self.reclaim_gate);
            let mut arena = lock(&self.arena);
            arena.release_retired();
            arena
                .alloc(bytes, PAIR_LEN)
                .ok_or(IndexError::ArenaFull(bytes))?
        };
        let header = TableHeader {
            pairs_off: PoolOffset(off + TABLE_PREFIX),
            ..header
        };
        let next = Table { off, header };
        // Initialise: zeroed slots, link words with the new version tag, then the header.
        self.backend.zero(off, bytes);
        let empty_link = link_word(header.version, None);
        for pair in 0..header.pairs() {
            for bucket in next.buckets(pair) {
                self.backend.store(bucket + LINK, empty_link);
            }
        }
        self.backend.write(off, &header.encode());
        self.backend.persist(off, bytes);
        self.pool.set_index_next(off);
        lock(&self.tables).1 = Some(next);
        Ok((current, next))
    }

    /// Migrates every pair of `current` into `next`, then makes `next` current. Pairs are copied
    /// in chunks, each made durable by one fence before its pairs are marked MIGRATED.
    fn migrate_all(&self, current: Table, next: Table) -> Result<()> {
        let pairs = current.header.pairs();
        let mut start = 0;
        while start < pairs {
            let end = (start + MIGRATE_CHUNK_PAIRS).min(pairs);
            for pair in start..end {
                self.copy_pair(current, next, pair)?;
            }
            self.backend.fence();
            for pair in start..end {
                self.mark_migrated(current, pair);
            }
            start = end;
        }
        self.backend.fence();
        // Collect the old table's overflow buckets before it is retired (its chains are frozen).
        let mut overflow = Vec::new();
        for pair in 0..current.header.pairs() {
            for bucket in current.buckets(pair) {
                overflow.extend(self.chain(current, bucket)?.into_iter().skip(1));
            }
        }
        self.pool.set_index_table(next.off);
        self.pool.set_index_next(0);
        *lock(&self.tables) = (next, None);
        let mut arena = lock(&self.arena);
        arena.retire(current.off, current.bytes());
        for b in overflow {
            arena.retire(b, BUCKET_LEN);
        }
        drop(arena);
        self.stats.resizes.fetch_add(1, Ordering::Relaxed);
        self.purge_tombstones(next)?;
        Ok(())
    }

    /// Clears the tombstones a resize left in its target (now the current table). The write gate
    /// first waits out every update that began before the switch — every helper that might still
    /// copy into the table — so no tombstone is needed any more.
    fn purge_tombstones(&self, table: Table) -> Result<()> {
        drop(write(&self.reclaim_gate));
        if self.tombstones.swap(0, Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut purged = Vec::new();
        for pair in 0..table.header.pairs() {
            for bucket in table.buckets(pair) {
                for b in self.chain(table, bucket)? {
                    for i in 0..SLOTS_PER_BUCKET as u64 {
                        let at = b + i * 8;
                        let w = self.backend.load(at);
                        let slot = Slot::decode(w);
                        let Some((entry, None)) = self.resolve(slot) else {
                            continue;
                        };
                        if let Some((_, _, Op::Delete)) = self.entry_key(entry) {
                            // A concurrent put may have replaced it: then the CAS fails, rightly.
                            if self.backend.compare_exchange(at, w, 0).is_ok() {
                                self.flush_word(at);
                                purged.push(entry);
                            }
                        }
                    }
                }
            }
        }
        self.backend.fence();
        lock(&self.purged).extend(purged);
        Ok(())
    }

    /// Takes the entries whose tombstones were cleared (the merge counts them as superseded).
    pub fn take_purged(&self) -> Vec<PoolOffset> {
        std::mem::take(&mut *lock(&self.purged))
    }

    /// Freezes pair `pair` of `from`, copies it into `to`, and marks it MIGRATED (what a writer
    /// that meets a frozen pair does). Idempotent, and safe to run from several threads at once.
    fn help_migrate(&self, from: Table, to: Table, pair: u64) -> Result<()> {
        if self.is_migrated(from, pair) {
            return Ok(());
        }
        self.stats.migration_helps.fetch_add(1, Ordering::Relaxed);
        self.copy_pair(from, to, pair)?;
        // The copies must be durable before the pair says it has moved: after a crash, a MIGRATED
        // pair is never migrated again, and no log replay covers entries merged long ago.
        self.backend.fence();
        self.mark_migrated(from, pair);
        Ok(())
    }

    fn is_migrated(&self, table: Table, pair: u64) -> bool {
        table
            .buckets(pair)
            .iter()
            .all(|b| Link::decode(self.backend.load(b + LINK)).migrated)
    }

    /// Freezes every word of the pair's chains (a frozen link can no longer grow its chain) and
    /// copies every occupied slot into `to` by upsert, so that concurrent helpers and later
    /// writers agree. The copies are flushed, not fenced.
    fn copy_pair(&self, from: Table, to: Table, pair: u64) -> Result<()> {
        if self.is_migrated(from, pair) {
            return Ok(());
        }
        let mut words = Vec::new();
        for bucket in from.buckets(pair) {
            let mut at = bucket;
            for _ in 0..=CHAIN_BUCKETS_MAX {
                for i in 0..=SLOTS_PER_BUCKET as u64 {
                    let w = freeze(&*self.backend, at + i * 8);
                    if i < SLOTS_PER_BUCKET as u64 {
                        words.push(w);
                    }
                }
                match Link::decode(self.backend.load(at + LINK)).next {
                    Some(next) => at = next.get(),
                    None => break,
                }
            }
        }
        for w in words {
            let slot = Slot::decode(w & !FROZEN);
            let Some((entry, _)) = self.resolve(slot) else {
                continue;
            };
            let Some((key, version, _)) = self.entry_key(entry) else {
                continue;
            };
            let h = self.hash(&key);
            let word = w & !FROZEN;
            let mut ignored = Vec::new();
            let mut tries = 0;
            loop {
                match self.try_put(to, &key, h, word, entry, version, &mut ignored, true)? {
                    Attempt::Done(_) => break,
                    // Lost a race with another helper or a writer in the new table.
                    Attempt::Again => {
                        tries += 1;
                        if tries > UPDATE_ATTEMPTS_MAX {
                            return Err(IndexError::Contended(tries));
                        }
                    }
                    // A later resize froze the target: it could only start once this resize had
                    // migrated every pair, this one included, so the copy is done.
                    Attempt::Frozen | Attempt::Migrated if self.is_migrated(from, pair) => {
                        return Ok(());
                    }
                    Attempt::Frozen | Attempt::Migrated => {
                        return Err(IndexError::Corrupt(
                            "the resize target is being resized before its source moved".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets MIGRATED on both link words of the pair (flushed; the caller fences).
    fn mark_migrated(&self, from: Table, pair: u64) {
        for bucket in from.buckets(pair) {
            let at = bucket + LINK;
            let mut w = self.backend.load(at);
            while w & MIGRATED == 0 {
                match self.backend.compare_exchange(at, w, w | MIGRATED) {
                    Ok(_) => break,
                    Err(seen) => w = seen,
                }
            }
            self.flush_word(at);
        }
    }

    /// The key and version of the entry at `entry`, if it is a plausible entry.
    fn entry_key(&self, entry: PoolOffset) -> Option<(Vec<u8>, Version, Op)> {
        let layout = self.pool.layout();
        let (_, in_area) = layout.locate(entry)?;
        let mut header = [0u8; ENTRY_HEADER_LEN];
        if in_area + ENTRY_HEADER_LEN as u64 > layout.entry_capacity() {
            return None;
        }
        self.backend.read(entry.get(), &mut header);
        let h = EntryHeader::decode(&header).ok()?;
        if in_area + ENTRY_HEADER_LEN as u64 + h.key_len as u64 > layout.entry_capacity() {
            return None;
        }
        let mut key = vec![0u8; h.key_len];
        self.backend
            .read(entry.get() + ENTRY_HEADER_LEN as u64, &mut key);
        Some((key, h.version, h.op))
    }

    // Indirect cells (FORMAT.md §9).

    /// Puts `key` behind an indirect cell; returns the cell's offset (the existing one if the key
    /// already has one), or `None` if the key is not in the index.
    pub fn install_indirect(&self, key: &[u8]) -> Result<Option<PoolOffset>> {
        let h = self.hash(key);
        self.with_tables(h, |table, _| {
            let scan = match self.scan_for_update(table, key, h)? {
                Ok(scan) => scan,
                Err(moved) => return Ok(moved),
            };
            let Some(cur) = scan.found.iter().copied().max_by_key(|f| f.version) else {
                return Ok(Attempt::Done(None));
            };
            if let Some(cell) = cur.cell {
                return Ok(Attempt::Done(Some(PoolOffset(cell))));
            }
            let i = lock(&self.free_cells).pop().ok_or(IndexError::NoFreeCell)?;
            let cell = self.pool.layout().cell_off(i).get();
            self.backend.store(cell, cur.entry.get());
            self.backend.store(cell + 8, h);
            self.backend.persist(cell, CELL_LEN);
            let word = slot_word(tag_of(h), PoolOffset(cell), true);
            if self
                .backend
                .compare_exchange(cur.at, cur.word, word)
                .is_err()
            {
                self.clear_cell(cell);
                lock(&self.free_cells).push(i);
                return Ok(Attempt::Again);
            }
            self.backend.persist(cur.at, 8);
            Ok(Attempt::Done(Some(PoolOffset(cell))))
        })
    }

    /// Takes `key` out from behind its indirect cell: the slot names the cell's entry again.
    /// Returns whether the key had a cell.
    pub fn remove_indirect(&self, key: &[u8]) -> Result<bool> {
        let h = self.hash(key);
        self.with_tables(h, |table, _| {
            let scan = match self.scan_for_update(table, key, h)? {
                Ok(scan) => scan,
                Err(moved) => return Ok(moved),
            };
            let Some(cur) = scan.found.iter().copied().find(|f| f.cell.is_some()) else {
                return Ok(Attempt::Done(false));
            };
            let Some(cell) = cur.cell else {
                return Ok(Attempt::Done(false));
            };
            let word = slot_word(tag_of(h), cur.entry, false);
            if self
                .backend
                .compare_exchange(cur.at, cur.word, word)
                .is_err()
            {
                return Ok(Attempt::Again);
            }
            self.backend.persist(cur.at, 8);
            self.release_cell(cell);
            Ok(Attempt::Done(true))
        })
    }

    fn clear_cell(&self, cell: u64) {
        self.backend.store(cell, 0);
        self.backend.store(cell + 8, 0);
        self.backend.persist(cell, CELL_LEN);
    }

    fn release_cell(&self, cell: u64) {
        self.clear_cell(cell);
        let layout = self.pool.layout();
        let i = ((cell - layout.cell_table_off) / CELL_LEN) as u32;
        lock(&self.free_cells).push(i);
    }

    /// Free indirect cells.
    pub fn free_cells(&self) -> usize {
        lock(&self.free_cells).len()
    }

    // Whole-table walks (recovery, tests).

    /// Calls `f(slot_offset, slot, entry)` for every occupied slot of the current table.
    pub fn for_each_slot(&self, mut f: impl FnMut(u64, Slot, Option<PoolOffset>)) -> Result<()> {
        let (table, _) = self.tables();
        for pair in 0..table.header.pairs() {
            for bucket in table.buckets(pair) {
                for b in self.chain(table, bucket)? {
                    for i in 0..SLOTS_PER_BUCKET as u64 {
                        let w = self.backend.load(b + i * 8);
                        let slot = Slot::decode(w & !FROZEN);
                        if slot.target.is_some() {
                            f(b + i * 8, slot, self.resolve(slot).map(|(e, _)| e));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every key of the index with its current entry and version (recovery and tests; O(keys)).
    /// Tombstones are not keys.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, PoolOffset, Version)>> {
        let mut out = Vec::new();
        self.for_each_slot(|_, _, entry| {
            if let Some((key, version, Op::Put)) = entry.and_then(|e| self.entry_key(e)) {
                out.push((key, entry.unwrap_or_default(), version));
            }
        })?;
        Ok(out)
    }

    /// Removes duplicate slots of one key, keeping the newest, and every tombstone (recovery step
    /// 5). Returns how many slots were cleared; their entries are appended to `superseded`.
    pub fn remove_all_duplicates(&self, superseded: &mut Vec<PoolOffset>) -> Result<usize> {
        let (table, _) = self.tables();
        let mut cleared = 0;
        let mut clear = |f: &Found, superseded: &mut Vec<PoolOffset>| {
            if self.backend.compare_exchange(f.at, f.word, 0).is_ok() {
                self.flush_word(f.at);
                if f.op == Op::Put {
                    self.keys.fetch_sub(1, Ordering::Relaxed);
                }
                superseded.push(f.entry);
                cleared += 1;
            }
        };
        for pair in 0..table.header.pairs() {
            let mut seen: Vec<(Vec<u8>, Found)> = Vec::new();
            for bucket in table.buckets(pair) {
                for b in self.chain(table, bucket)? {
                    for i in 0..SLOTS_PER_BUCKET as u64 {
                        let at = b + i * 8;
                        let w = self.backend.load(at);
                        let Some((entry, cell)) = self.resolve(Slot::decode(w)) else {
                            continue;
                        };
                        let Some((key, version, op)) = self.entry_key(entry) else {
                            continue;
                        };
                        let found = Found {
                            at,
                            word: w,
                            entry,
                            version,
                            op,
                            cell,
                        };
                        match seen.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, best)) => {
                                let loser = if found.version > best.version {
                                    std::mem::replace(best, found)
                                } else {
                                    found
                                };
                                clear(&loser, superseded);
                            }
                            None => seen.push((key, found)),
                        }
                    }
                }
            }
            for (_, f) in seen.iter().filter(|(_, f)| f.op == Op::Delete) {
                clear(f, superseded);
            }
        }
        self.backend.fence();
        self.tombstones.store(0, Ordering::Relaxed);
        Ok(cleared)
    }
}

/// Sets the FROZEN bit of the word at `at`; returns the frozen word.
fn freeze(backend: &dyn dinomo_pmem::Backend, at: u64) -> u64 {
    let mut w = backend.load(at);
    loop {
        if w & FROZEN != 0 {
            return w;
        }
        match backend.compare_exchange(at, w, w | FROZEN) {
            Ok(_) => return w | FROZEN,
            Err(seen) => w = seen,
        }
    }
}

/// Reads and validates the table header at `off`.
fn table_at(pool: &Pool, off: u64) -> Result<Table> {
    let header = pool.table_header_at(off).ok_or_else(|| {
        IndexError::Corrupt(format!(
            "no valid index table header at {}",
            PoolOffset(off)
        ))
    })?;
    if !header.pairs_off.get().is_multiple_of(PAIR_LEN)
        || header.pairs_off.get() < off + TABLE_HEADER_LEN
    {
        return Err(IndexError::Corrupt(format!(
            "table at {off:#x} has its pairs at {}",
            header.pairs_off
        )));
    }
    Ok(Table { off, header })
}

/// Whether a slot word names an indirect cell.
pub fn is_indirect(word: u64) -> bool {
    word & INDIRECT != 0
}
