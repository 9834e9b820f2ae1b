//! [`MemoryNode`]: the memory-node service. It opens (or creates) the pool, recovers it
//! (pmem FORMAT.md §11), answers the KN RPCs of [`super::proto`] as an [`RpcHandler`], and runs
//! background merge threads that fold committed log entries into the index (sealed blocks, and
//! head blocks as far as their writers have committed).
//!
//! Invariants:
//! - Every RPC that changes the pool (attach, block allocation, merges, indirect cells, the
//!   cluster map) runs under the shared side of a stop gate; [`MemoryNode::shutdown`] takes the
//!   exclusive side before its last merge and the clean-shutdown mark, so no change lands after
//!   the mark of a graceful stop.
//! - After an error that says the pool itself is damaged or unwritable (corruption, an I/O
//!   error), the node records it and stops taking writes: write RPCs are refused with the reason,
//!   background merging ends, and shutdown does not mark the stop clean. Reads (`Hello`, `Stats`,
//!   `GetClusterMap`) keep working so that operators can see what happened. Expected outcomes (no
//!   free block, a stale epoch, an unknown chain) are answers, not failures.
//! - Nothing a client sends can panic the node: requests are decoded with bounds checks, every
//!   chain id is checked against the pool before use, and errors become [`Response::Error`].
//! - Merge threads own nothing but shared handles; they sleep between idle passes with a bounded,
//!   growing back-off and wake at once when the node stops.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dinomo_index::{Index, IndexConfig, IndexError, MergeReport, MergeScope, Merger};
use dinomo_pmem::log::{chain_max_seq, release_unlinked_spares, walk_chain};
use dinomo_pmem::{
    BlockAllocator, BlockId, ChainId, FileOptions, Layout, Pool, PoolConfig, PoolError,
    SharedBackend, cluster_area,
};

use dinomo_control::{ClusterMap, Incarnation, NodeInfo, Owner, slots_of};
use dinomo_pmem::Epoch;

use super::proto::{ALLOC_BLOCKS_MAX, ErrorCode, MnStats, PROTO_VERSION, Request, Response};
use super::sessions::{SessionError, Sessions};
use crate::config::Durability;
use crate::fabric::{PeerId, RpcHandler};

/// Merge threads a node starts unless told otherwise.
pub const MERGE_THREADS_DEFAULT: usize = 1;
/// Merge threads a node may start at most.
pub const MERGE_THREADS_MAX: usize = 16;
/// A merge thread that found nothing to do sleeps this long first, doubling up to
/// [`MERGE_IDLE_SLEEP_MAX`] while it stays idle.
pub const MERGE_IDLE_SLEEP_MIN: Duration = Duration::from_micros(50);
/// The longest idle sleep of a merge thread: how late, at worst, a sealed block starts merging.
pub const MERGE_IDLE_SLEEP_MAX: Duration = Duration::from_millis(10);
/// A merge thread sleeps this long after an error that does not stop the node (no room in the
/// index arena, contention), so that a persistent condition does not spin.
pub const MERGE_ERROR_SLEEP: Duration = Duration::from_millis(100);
/// Chains a startup report lists one by one; the rest are summarised.
pub const REPORT_CHAINS_LISTED_MAX: usize = 16;

const _: () = assert!(MERGE_THREADS_DEFAULT >= 1 && MERGE_THREADS_DEFAULT <= MERGE_THREADS_MAX);
const _: () = assert!(MERGE_IDLE_SLEEP_MIN.as_nanos() <= MERGE_IDLE_SLEEP_MAX.as_nanos());
const _: () = assert!(ALLOC_BLOCKS_MAX >= 1);

/// Whether to open an existing pool file or create one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateMode {
    /// The pool must exist.
    Open,
    /// Create the pool with this configuration if the file is missing or empty; otherwise open it.
    CreateIfMissing(PoolConfig),
    /// Create the pool with this configuration. A file that holds data is refused unless
    /// `overwrite` is set, which destroys what it held.
    Create { config: PoolConfig, overwrite: bool },
}

/// Tunables of a node, whatever its pool lives in.
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    /// Background merge threads ([`MemoryNode::start_background`]); 0 merges only on request.
    pub merge_threads: usize,
    pub index: IndexConfig,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            merge_threads: MERGE_THREADS_DEFAULT,
            index: IndexConfig::default(),
        }
    }
}

/// Configuration of a node whose pool is a file.
#[derive(Debug, Clone)]
pub struct MemnodeConfig {
    pub pool: PathBuf,
    pub create: CreateMode,
    pub durability: Durability,
    pub options: NodeOptions,
}

impl MemnodeConfig {
    /// Opens the existing pool at `pool` with `flush` durability and default options.
    pub fn new(pool: impl Into<PathBuf>) -> MemnodeConfig {
        MemnodeConfig {
            pool: pool.into(),
            create: CreateMode::Open,
            durability: Durability::Flush,
            options: NodeOptions::default(),
        }
    }
}

/// Why a node could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MnError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("invalid memory node configuration: {0}")]
    Config(String),
    #[error("cannot start a merge thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the memory node stopped taking writes after a pool error: {0}")]
    Failed(String),
    #[error("the memory node is already shut down")]
    ShutDown,
}

/// One chain as recovery found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRecovery {
    pub chain: ChainId,
    /// Linked blocks.
    pub blocks: usize,
    /// Committed bytes not yet merged when the node started (recovery merged them).
    pub unmerged_bytes: u64,
}

/// What opening a pool found and did; callers log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupReport {
    /// The pool file, if the pool is one.
    pub path: Option<PathBuf>,
    /// Whether this start created the pool.
    pub created: bool,
    /// Whether persists reach media (`flush` durability).
    pub persists: bool,
    pub pool_size: u64,
    pub uuid: String,
    pub block_size: u64,
    /// The boot this start began (1 for a new pool).
    pub boot: u64,
    /// Whether the previous incarnation stopped gracefully.
    pub last_stop_clean: bool,
    /// Chains with blocks, with what was left unmerged.
    pub chains: Vec<ChainRecovery>,
    /// What re-merging the chains did.
    pub merged: MergeReport,
    /// Spares handed out but never linked, freed.
    pub released_spares: usize,
    /// Retired blocks freed because the index no longer references them.
    pub freed_retired: u64,
    /// Duplicate index slots removed.
    pub duplicates: usize,
    /// Whether an interrupted resize was finished.
    pub resumed_resize: bool,
    pub blocks_free: u64,
    pub blocks_total: u64,
    pub keys: i64,
    pub recovery_time: Duration,
}

impl StartupReport {
    /// Committed bytes recovery found unmerged, over every chain.
    pub fn unmerged_bytes(&self) -> u64 {
        self.chains.iter().map(|c| c.unmerged_bytes).sum()
    }
}

impl fmt::Display for StartupReport {
    /// Several lines, for a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.path {
            Some(p) => p.display().to_string(),
            None => "(anonymous memory)".to_string(),
        };
        writeln!(
            f,
            "pool {place}{}: {} bytes, uuid {}, log blocks of {} bytes, durability {}",
            if self.created { " (created)" } else { "" },
            self.pool_size,
            self.uuid,
            self.block_size,
            if self.persists { "flush" } else { "memory" },
        )?;
        let last = match (self.created, self.last_stop_clean) {
            (true, _) => "none (new pool)",
            (false, true) => "clean",
            (false, false) => "unclean (crash, kill or power loss)",
        };
        writeln!(f, "boot {}; last stop: {last}", self.boot)?;
        writeln!(
            f,
            "recovered {} chains with {} unmerged bytes",
            self.chains.len(),
            self.unmerged_bytes()
        )?;
        for c in self.chains.iter().take(REPORT_CHAINS_LISTED_MAX) {
            writeln!(
                f,
                "  {}: {} blocks, {} unmerged bytes",
                c.chain, c.blocks, c.unmerged_bytes
            )?;
        }
        if self.chains.len() > REPORT_CHAINS_LISTED_MAX {
            writeln!(
                f,
                "  ... and {} more chains",
                self.chains.len() - REPORT_CHAINS_LISTED_MAX
            )?;
        }
        writeln!(
            f,
            "merged {} entries ({} bytes), unlinked {} blocks, freed {}; released {} unused \
             spares, freed {} retired blocks, removed {} duplicate slots{}",
            self.merged.entries,
            self.merged.bytes,
            self.merged.blocks_unlinked,
            self.merged.blocks_freed,
            self.released_spares,
            self.freed_retired,
            self.duplicates,
            if self.resumed_resize {
                ", finished an interrupted index resize"
            } else {
                ""
            },
        )?;
        write!(
            f,
            "{} keys; {} of {} log blocks free; recovery took {:.1} ms",
            self.keys,
            self.blocks_free,
            self.blocks_total,
            self.recovery_time.as_secs_f64() * 1e3
        )
    }
}

/// What a graceful stop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The last merge of sealed blocks.
    pub merged: MergeReport,
}

/// Counters of a node beyond [`MnStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MnCounters {
    pub rpcs: u64,
    /// RPCs answered with an error (malformed, refused or failed).
    pub rpc_errors: u64,
    pub attaches: u64,
    pub blocks_allocated: u64,
    /// Background passes that merged something.
    pub background_busy_passes: u64,
    pub background_errors: u64,
    pub last_background_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    rpcs: AtomicU64,
    rpc_errors: AtomicU64,
    attaches: AtomicU64,
    blocks_allocated: AtomicU64,
    background_busy_passes: AtomicU64,
    background_errors: AtomicU64,
}

/// What the merge threads share with the node.
#[derive(Debug)]
struct Shared {
    merger: Arc<Merger>,
    counters: Counters,
    /// The first error that stopped the node taking writes.
    failure: Mutex<Option<String>>,
    last_background_error: Mutex<Option<String>>,
    /// Set when the merge threads must end; `wake` interrupts their sleep.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Records an error that stops the node taking writes (the first one is kept).
    fn fail(&self, reason: String) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            *failure = Some(reason);
        }
    }

    /// Sleeps up to `time` unless the node stops; returns whether it is stopping.
    fn sleep(&self, time: Duration) -> bool {
        let stop = lock(&self.stop);
        if *stop {
            return true;
        }
        let (stop, _) = self
            .wake
            .wait_timeout(stop, time)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stop
    }
}

/// A running memory node.
#[derive(Debug)]
pub struct MemoryNode {
    pool: Arc<Pool>,
    index: Arc<Index>,
    alloc: Arc<BlockAllocator>,
    shared: Arc<Shared>,
    report: StartupReport,
    merge_threads: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `true` once the node is shut down. Write RPCs hold it shared; shutdown exclusively.
    gate: RwLock<bool>,
    /// Attaches run one at a time: each frees the spares of its chain that no block links, which
    /// must not race with another attach of the same chain allocating its first block.
    attach_lock: Mutex<()>,
    /// The stored cluster map, decoded. Map writes hold it from their check to their store, so
    /// the cluster map area is written by one request at a time and never read mid-write.
    map: Mutex<MapState>,
    /// Who is connected as which incarnation. Lock order: `map` before `sessions`.
    sessions: Mutex<Sessions>,
    /// Moves whenever connections are fenced (see [`RpcHandler::fence_generation`]).
    fence_generation: AtomicU64,
    /// The controller lease, judged on this node's monotonic clock. Lock order: `map` before
    /// `lease`.
    lease: Mutex<ControllerLease>,
}

/// The controller lease as the memory node keeps it (volatile but its generation, FORMAT.md §3).
#[derive(Debug, Default)]
struct ControllerLease {
    generation: u64,
    holder: String,
    expires: Option<Instant>,
}

impl ControllerLease {
    /// Whether a controller holds the lease at `now`.
    fn held(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now < at)
    }

    fn answer(&self, now: Instant) -> Response {
        let left = self
            .expires
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        Response::Lease {
            generation: self.generation,
            holder: self.holder.clone(),
            ttl_left_ms: u32::try_from(left.as_millis()).unwrap_or(u32::MAX),
        }
    }
}

/// The stored cluster map as the node holds it.
#[derive(Debug, Default)]
struct MapState {
    /// The stored epoch (`Epoch::ZERO`: none stored).
    epoch: Epoch,
    /// The stored payload, as stored.
    payload: Option<Vec<u8>>,
    /// The decoded map (`None` if none is stored, or the stored one does not decode).
    map: Option<ClusterMap>,
}

impl MapState {
    fn load(pool: &Pool) -> MapState {
        let Some(stored) = cluster_area::read(pool) else {
            return MapState::default();
        };
        MapState {
            // An epoch past 32 bits can only come from damage; it decodes to no map below.
            epoch: Epoch(u32::try_from(stored.epoch).unwrap_or(u32::MAX)),
            map: dinomo_control::decode(&stored.payload).ok(),
            payload: Some(stored.payload),
        }
    }

    /// The node of the map whose cores include `chain`.
    fn chain_owner(&self, chain: ChainId) -> Option<&NodeInfo> {
        self.map
            .as_ref()?
            .nodes()
            .iter()
            .find(|node| node.cores.iter().any(|core| core.chain == chain))
    }
}

impl MemoryNode {
    /// Opens or creates the pool file of `config` and recovers it. Merge threads are not started
    /// yet ([`MemoryNode::start_background`]).
    pub fn open(config: MemnodeConfig) -> Result<Arc<MemoryNode>, MnError> {
        check_options(&config.options)?;
        let options = FileOptions {
            persist: config.durability == Durability::Flush,
            lock: true,
        };
        let started = Instant::now();
        let path = config.pool.as_path();
        let (pool, created) = match &config.create {
            CreateMode::Open => (Pool::open_file(path, options)?, false),
            CreateMode::CreateIfMissing(cfg) => {
                check_pool_config(cfg)?;
                match Pool::create_file(path, cfg, false, options) {
                    Ok(pool) => (pool, true),
                    Err(PoolError::AlreadyExists(_)) => (Pool::open_file(path, options)?, false),
                    Err(e) => return Err(e.into()),
                }
            }
            CreateMode::Create {
                config: cfg,
                overwrite,
            } => {
                check_pool_config(cfg)?;
                (Pool::create_file(path, cfg, *overwrite, options)?, true)
            }
        };
        MemoryNode::start(Arc::new(pool), created, Some(path), started, config.options)
    }

    /// Serves a pool in `backend` (anonymous memory for tests and an all-in-one server): formats
    /// it first with `format` if given, otherwise opens what it holds. Then recovers it.
    pub fn open_backend(
        backend: SharedBackend,
        format: Option<&PoolConfig>,
        options: NodeOptions,
    ) -> Result<Arc<MemoryNode>, MnError> {
        check_options(&options)?;
        let started = Instant::now();
        let pool = match format {
            Some(cfg) => Pool::create(backend, cfg)?,
            None => Pool::open(backend)?,
        };
        MemoryNode::start(Arc::new(pool), format.is_some(), None, started, options)
    }

    fn start(
        pool: Arc<Pool>,
        created: bool,
        path: Option<&Path>,
        started: Instant,
        options: NodeOptions,
    ) -> Result<Arc<MemoryNode>, MnError> {
        let recovered = dinomo_index::recover(Arc::clone(&pool), options.index)?;
        let layout = *pool.layout();
        let report = StartupReport {
            path: path.map(Path::to_path_buf),
            created,
            persists: pool.backend().persists(),
            pool_size: layout.pool_size,
            uuid: layout.uuid_string(),
            block_size: layout.block_size,
            boot: recovered.report.boot_count,
            last_stop_clean: recovered.report.was_clean,
            chains: recovered
                .report
                .chains
                .iter()
                .map(|c| ChainRecovery {
                    chain: c.chain,
                    blocks: c.blocks.len(),
                    unmerged_bytes: c.unmerged_bytes(),
                })
                .collect(),
            merged: recovered.merged,
            released_spares: recovered.report.released.len(),
            freed_retired: recovered.freed_retired,
            duplicates: recovered.duplicates,
            resumed_resize: recovered.resumed_resize,
            blocks_free: recovered.alloc.free_count() as u64,
            blocks_total: u64::from(layout.block_count),
            keys: recovered.index.keys(),
            recovery_time: started.elapsed(),
        };
        let map = MapState::load(&pool);
        let generation_at_start = pool.controller_generation();
        Ok(Arc::new(MemoryNode {
            pool,
            index: recovered.index,
            alloc: recovered.alloc,
            shared: Arc::new(Shared {
                merger: recovered.merger,
                counters: Counters::default(),
                failure: Mutex::new(None),
                last_background_error: Mutex::new(None),
                stop: Mutex::new(false),
                wake: Condvar::new(),
            }),
            report,
            merge_threads: options.merge_threads,
            threads: Mutex::new(Vec::new()),
            gate: RwLock::new(false),
            attach_lock: Mutex::new(()),
            map: Mutex::new(map),
            sessions: Mutex::new(Sessions::default()),
            fence_generation: AtomicU64::new(0),
            lease: Mutex::new(ControllerLease {
                generation: generation_at_start,
                ..ControllerLease::default()
            }),
        }))
    }

    /// What opening the pool found and did.
    pub fn startup_report(&self) -> &StartupReport {
        &self.report
    }
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
    /// The pool's memory, to serve one-sided verbs on.
    pub fn backend(&self) -> &SharedBackend {
        self.pool.backend()
    }
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
    pub fn allocator(&self) -> &Arc<BlockAllocator> {
        &self.alloc
    }
    pub fn merger(&self) -> &Arc<Merger> {
        &self.shared.merger
    }
    /// The boot this node serves.
    pub fn boot(&self) -> u64 {
        self.report.boot
    }
    /// Why the node stopped taking writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Starts the background merge threads (as many as configured; none is an allowed choice).
    /// Returns how many run. Calling it again starts nothing more.
    pub fn start_background(&self) -> Result<usize, MnError> {
        let stopped = read_gate(&self.gate);
        if *stopped {
            return Err(MnError::ShutDown);
        }
        let mut threads = lock(&self.threads);
        if !threads.is_empty() {
            return Ok(threads.len());
        }
        for i in 0..self.merge_threads {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("dinomo-mn-merge-{i}"))
                .spawn(move || merge_loop(&shared));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    drop(threads);
                    self.stop_background();
                    return Err(MnError::Thread(e));
                }
            }
        }
        Ok(threads.len())
    }

    /// Stops the merge threads and waits for them.
    fn stop_background(&self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for handle in threads {
            // A merge thread only ends by returning; a join error would be a bug in the merge,
            // and the thread is gone either way.
            let _ = handle.join();
        }
    }

    /// Stops gracefully: ends the merge threads, merges the sealed blocks once more, makes
    /// everything durable and marks the stop clean. After this, write RPCs are refused. A node
    /// that stopped taking writes after a pool error is stopped but not marked clean.
    pub fn shutdown(&self) -> Result<ShutdownReport, MnError> {
        let mut stopped = write_gate(&self.gate);
        if *stopped {
            return Err(MnError::ShutDown);
        }
        *stopped = true;
        self.stop_background();
        if let Some(reason) = self.shared.failure() {
            return Err(MnError::Failed(reason));
        }
        let merger = &self.shared.merger;
        let merged = match merger.merge_chains(merger.all_chains(), MergeScope::All) {
            Ok(merged) => merged,
            Err(e) => {
                let reason = e.to_string();
                self.shared.fail(reason.clone());
                return Err(MnError::Failed(reason));
            }
        };
        self.pool.backend().fence();
        self.pool.mark_clean_shutdown();
        Ok(ShutdownReport { merged })
    }

    /// The counters that `Stats` reports.
    pub fn stats(&self) -> MnStats {
        let merge = self.shared.merger.counters();
        let index = self.index.counters();
        MnStats {
            boot: self.report.boot,
            keys: index.keys,
            merged_entries: merge.entries,
            merged_bytes: merge.bytes,
            blocks_total: u64::from(self.pool.layout().block_count),
            blocks_free: self.alloc.free_count() as u64,
            blocks_unlinked: merge.blocks_unlinked,
            blocks_freed: merge.blocks_freed,
            index_pairs: index.pairs,
            index_resizes: index.resizes,
            rpcs: self.shared.counters.rpcs.load(Ordering::Relaxed),
        }
    }

    /// Counters beyond [`MnStats`].
    pub fn counters(&self) -> MnCounters {
        let c = &self.shared.counters;
        MnCounters {
            rpcs: c.rpcs.load(Ordering::Relaxed),
            rpc_errors: c.rpc_errors.load(Ordering::Relaxed),
            attaches: c.attaches.load(Ordering::Relaxed),
            blocks_allocated: c.blocks_allocated.load(Ordering::Relaxed),
            background_busy_passes: c.background_busy_passes.load(Ordering::Relaxed),
            background_errors: c.background_errors.load(Ordering::Relaxed),
            last_background_error: lock(&self.shared.last_background_error).clone(),
        }
    }

    /// Answers one decoded request of connection `peer`.
    pub fn serve(&self, peer: PeerId, request: &Request) -> Response {
        self.shared.counters.rpcs.fetch_add(1, Ordering::Relaxed);
        let response = match request {
            Request::Hello {
                version,
                incarnation,
            } => self.hello(peer, *version, *incarnation),
            Request::Stats => Response::Stats(self.stats()),
            Request::GetClusterMap => {
                let map = lock(&self.map);
                Response::ClusterMap(map.payload.clone().map(|payload| (map.epoch, payload)))
            }
            Request::Attach { chain } => self.write(|| self.attach(peer, *chain)),
            Request::AllocBlocks { chain, count } => {
                self.write(|| self.alloc_blocks(peer, *chain, *count))
            }
            Request::MergeAll { chain } => self.write(|| {
                self.check_chain(*chain)?;
                let r = self.shared.merger.merge_chain(*chain, MergeScope::All)?;
                Ok(merged(r))
            }),
            Request::Failover { chains } => self.write(|| {
                for &c in chains {
                    self.check_chain(c)?;
                }
                let r = self
                    .shared
                    .merger
                    .merge_chains(chains.iter().copied(), MergeScope::All)?;
                Ok(merged(r))
            }),
            Request::InstallIndirect { key } => {
                self.write(|| Ok(Response::Cell(self.index.install_indirect(key)?)))
            }
            Request::RemoveIndirect { key } => {
                self.write(|| Ok(Response::Removed(self.index.remove_indirect(key)?)))
            }
            Request::PutClusterMap {
                expected,
                lease,
                payload,
            } => self.write(|| self.put_cluster_map(peer, *expected, *lease, payload)),
            Request::AcquireLease { holder, ttl_ms } => {
                self.write(|| self.acquire_lease(holder, *ttl_ms))
            }
            Request::RenewLease { generation, ttl_ms } => self.renew_lease(*generation, *ttl_ms),
            Request::GetLease => lock(&self.lease).answer(Instant::now()),
        };
        if matches!(response, Response::Error { .. }) {
            self.shared
                .counters
                .rpc_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        response
    }

    /// Connection `peer` is gone (its queue pair was dropped or its connection closed): it is no
    /// longer live and the chains it wrote are free to attach.
    pub fn disconnected(&self, peer: PeerId) {
        lock(&self.sessions).disconnect(peer);
    }

    /// Whether some connection is bound to `incarnation`.
    pub fn is_live(&self, incarnation: Incarnation) -> bool {
        lock(&self.sessions).is_live(incarnation)
    }

    /// `AcquireLease` (see [`Request::AcquireLease`]).
    fn acquire_lease(&self, holder: &str, ttl_ms: u32) -> Result<Response, Refusal> {
        let mut lease = lock(&self.lease);
        let now = Instant::now();
        if lease.held(now) {
            let left = lease
                .expires
                .map_or(0, |at| at.saturating_duration_since(now).as_millis());
            return Err(Refusal::Answer(
                ErrorCode::Conflict,
                format!(
                    "the controller lease is held by {} for another {left} ms",
                    lease.holder
                ),
            ));
        }
        let generation = lease.generation.max(self.pool.controller_generation()) + 1;
        // Persisted before it is answered: a generation is never granted twice.
        self.pool.set_controller_generation(generation);
        *lease = ControllerLease {
            generation,
            holder: holder.to_owned(),
            expires: Some(now + Duration::from_millis(u64::from(ttl_ms))),
        };
        Ok(lease.answer(now))
    }

    /// `RenewLease` (see [`Request::RenewLease`]).
    fn renew_lease(&self, generation: u64, ttl_ms: u32) -> Response {
        let mut lease = lock(&self.lease);
        let now = Instant::now();
        if generation == 0 || generation != lease.generation {
            return Response::error(
                ErrorCode::Stale,
                format!(
                    "controller lease {generation} is not the current one ({})",
                    lease.generation
                ),
            );
        }
        lease.expires = Some(now + Duration::from_millis(u64::from(ttl_ms)));
        lease.answer(now)
    }

    fn hello(&self, peer: PeerId, version: u16, incarnation: Incarnation) -> Response {
        if version != PROTO_VERSION {
            return Response::error(
                ErrorCode::BadRequest,
                format!(
                    "protocol version {version} is not supported; this memory node speaks \
                     version {PROTO_VERSION}"
                ),
            );
        }
        if let Err(e) = lock(&self.sessions).bind(peer, incarnation) {
            let code = match e {
                SessionError::Fenced(_) => ErrorCode::Fenced,
                _ => ErrorCode::BadRequest,
            };
            return Response::error(code, e.to_string());
        }
        let layout = self.pool.layout();
        Response::Hello {
            version: PROTO_VERSION,
            boot: self.report.boot,
            uuid: layout.uuid,
            pool_size: layout.pool_size,
        }
    }

    /// Runs a request that changes the pool, unless the node is stopped or failed.
    fn write(&self, op: impl FnOnce() -> Result<Response, Refusal>) -> Response {
        let stopped = read_gate(&self.gate);
        if *stopped {
            return Response::error(ErrorCode::Internal, "the memory node is shutting down");
        }
        if let Some(reason) = self.shared.failure() {
            return Response::error(
                ErrorCode::Internal,
                format!("the memory node stopped taking writes after a pool error: {reason}"),
            );
        }
        match op() {
            Ok(response) => response,
            Err(Refusal::Answer(code, message)) => Response::error(code, message),
            Err(Refusal::Index(e)) => {
                let (code, fatal) = classify(&e);
                if fatal {
                    self.shared.fail(e.to_string());
                }
                Response::error(code, e.to_string())
            }
        }
    }

    fn check_chain(&self, c: ChainId) -> Result<(), Refusal> {
        let chains = self.pool.layout().chain_count;
        if c.0 >= chains {
            return Err(Refusal::Answer(
                ErrorCode::BadRequest,
                format!("{c} is outside the pool's {chains} chains"),
            ));
        }
        Ok(())
    }

    /// `Attach` (see [`Request::Attach`]).
    fn attach(&self, peer: PeerId, c: ChainId) -> Result<Response, Refusal> {
        self.check_chain(c)?;
        let _attach = lock(&self.attach_lock);
        let incarnation = self.claim_chain(peer, c)?;
        self.shared.merger.merge_chain(c, MergeScope::All)?;
        let mut blocks = walk_chain(&self.pool, c).map_err(IndexError::from)?;
        release_unlinked_spares(&self.alloc, c, &blocks).map_err(IndexError::from)?;
        if blocks.is_empty() {
            self.alloc.allocate(c).map_err(IndexError::from)?;
            self.shared
                .counters
                .blocks_allocated
                .fetch_add(1, Ordering::Relaxed);
            blocks = walk_chain(&self.pool, c).map_err(IndexError::from)?;
        }
        let max_seq = chain_max_seq(&self.pool, c, &blocks).map_err(IndexError::from)?;
        let Some(head) = blocks.last() else {
            return Err(IndexError::Corrupt(format!(
                "{c} has no block right after allocating one"
            ))
            .into());
        };
        // The writer appends to its head block next: back it now (see `alloc_blocks`).
        self.pool
            .prepare_block(head.block)
            .map_err(|e| Refusal::Answer(ErrorCode::NoSpace, e))?;
        self.pool
            .set_chain_session(c, incarnation.0)
            .map_err(IndexError::from)?;
        // The chain has a cursor now: background passes visit it from the next one on.
        self.shared.merger.note_active(c);
        self.shared
            .counters
            .attaches
            .fetch_add(1, Ordering::Relaxed);
        Ok(Response::Attached {
            boot: self.report.boot,
            head: head.block,
            used: u64::from(head.tail.used),
            next_seq: max_seq + 1,
        })
    }

    /// `AllocBlocks`: up to `count` blocks; fewer if the pool runs out after the first.
    fn alloc_blocks(&self, peer: PeerId, c: ChainId, count: u32) -> Result<Response, Refusal> {
        self.check_chain(c)?;
        if lock(&self.sessions).attached_by(c) != Some(peer) {
            return Err(Refusal::Answer(
                ErrorCode::NotOwner,
                format!("{c} is not attached by this connection: attach before asking for spares"),
            ));
        }
        if count == 0 || count > ALLOC_BLOCKS_MAX {
            return Err(Refusal::Answer(
                ErrorCode::BadRequest,
                format!("block count {count} is outside 1..={ALLOC_BLOCKS_MAX}"),
            ));
        }
        // An attached chain has a block (attach allocates the first), so this allocation is a
        // spare, never the chain's cursor.
        let mut blocks: Vec<BlockId> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            match self.alloc.allocate(c) {
                Ok(b) => {
                    // Reserve the block's disk space and fault its pages in here, on the memory
                    // node's thread, rather than in the writer's first WRITE (a sparse pool on a
                    // full disk would fault there). A block that cannot be backed goes back.
                    if let Err(e) = self.pool.prepare_block(b) {
                        let _ = self.alloc.free_unlinked(b);
                        if !blocks.is_empty() {
                            break;
                        }
                        return Err(Refusal::Answer(ErrorCode::NoSpace, e));
                    }
                    blocks.push(b);
                }
                Err(PoolError::NoFreeBlock) if !blocks.is_empty() => break,
                Err(e) => return Err(IndexError::from(e).into()),
            }
        }
        self.shared
            .counters
            .blocks_allocated
            .fetch_add(blocks.len() as u64, Ordering::Relaxed);
        Ok(Response::Blocks(blocks))
    }

    /// Checks that the stored map gives chain `c` to `peer`'s incarnation and that no other live
    /// connection writes it, and records `peer` as its writer. Returns the incarnation.
    fn claim_chain(&self, peer: PeerId, c: ChainId) -> Result<Incarnation, Refusal> {
        let map = lock(&self.map);
        let mut sessions = lock(&self.sessions);
        let incarnation = sessions.incarnation(peer);
        if !incarnation.is_some() {
            return Err(Refusal::Answer(
                ErrorCode::NotOwner,
                format!("{c}: this connection did not say hello as a KN incarnation"),
            ));
        }
        if sessions.is_fenced(incarnation) {
            return Err(Refusal::Answer(
                ErrorCode::Fenced,
                SessionError::Fenced(incarnation).to_string(),
            ));
        }
        match map.chain_owner(c) {
            Some(node) if node.incarnation == incarnation => {}
            Some(node) => {
                return Err(Refusal::Answer(
                    ErrorCode::NotOwner,
                    format!(
                        "{c} belongs to kn {} (incarnation {}) in the cluster map of epoch {}, \
                         not to incarnation {incarnation}",
                        node.kn, node.incarnation, map.epoch
                    ),
                ));
            }
            None => {
                return Err(Refusal::Answer(
                    ErrorCode::NotOwner,
                    format!(
                        "{c} is not in the cluster map of epoch {}: a KN writes only the chains \
                         the map gives it",
                        map.epoch
                    ),
                ));
            }
        }
        sessions
            .attach(peer, c)
            .map_err(|e| Refusal::Answer(ErrorCode::Conflict, e.to_string()))?;
        Ok(incarnation)
    }

    /// `PutClusterMap` (see [`Request::PutClusterMap`]): decode and validate, compare the epoch,
    /// refuse to take anything from a live incarnation, fence the incarnations the map drops and
    /// merge their chains through their persisted tails, then store the map (FORMAT.md §10).
    fn put_cluster_map(
        &self,
        peer: PeerId,
        expected: Epoch,
        lease: u64,
        payload: &[u8],
    ) -> Result<Response, Refusal> {
        let mut state = lock(&self.map);
        let controlled = {
            let held = lock(&self.lease);
            let now = Instant::now();
            match (lease, held.held(now)) {
                (0, true) => {
                    return Err(Refusal::Answer(
                        ErrorCode::Conflict,
                        format!(
                            "the controller at {} holds the cluster: a KN registers through it",
                            held.holder
                        ),
                    ));
                }
                (0, false) => false,
                (g, true) if g == held.generation => true,
                (g, _) => {
                    return Err(Refusal::Answer(
                        ErrorCode::Stale,
                        format!(
                            "controller lease {g} is not the valid one (generation {}{})",
                            held.generation,
                            if held.held(now) { "" } else { ", expired" }
                        ),
                    ));
                }
            }
        };
        let max = cluster_area::payload_max(&self.pool);
        if payload.len() as u64 > max {
            return Err(Refusal::Answer(
                ErrorCode::BadRequest,
                format!(
                    "cluster map of {} bytes exceeds the pool's area of {max} bytes",
                    payload.len()
                ),
            ));
        }
        let map = dinomo_control::decode(payload).map_err(|e| {
            Refusal::Answer(ErrorCode::BadRequest, format!("invalid cluster map: {e}"))
        })?;
        if state.epoch != expected {
            return Err(Refusal::Answer(
                ErrorCode::Stale,
                format!(
                    "the stored cluster map has epoch {}, not the expected {expected}",
                    state.epoch
                ),
            ));
        }
        if expected.next() != Some(map.epoch()) {
            return Err(Refusal::Answer(
                ErrorCode::BadRequest,
                format!(
                    "a cluster map after epoch {expected} must have epoch {}, not {}",
                    expected.0.saturating_add(1),
                    map.epoch()
                ),
            ));
        }
        let chain_count = self.pool.layout().chain_count;
        for node in map.nodes() {
            for core in &node.cores {
                if core.chain.0 >= chain_count {
                    return Err(Refusal::Answer(
                        ErrorCode::BadRequest,
                        format!(
                            "kn {} core {} writes {}, outside the pool's {chain_count} chains",
                            node.kn, core.core, core.chain
                        ),
                    ));
                }
            }
        }
        let dropped = match &state.map {
            Some(stored) => {
                let mut sessions = lock(&self.sessions);
                if !controlled {
                    let writer = sessions.incarnation(peer);
                    check_no_live_loss(stored, &map, &sessions, writer)?;
                }
                let dropped: Vec<&NodeInfo> = stored
                    .nodes()
                    .iter()
                    .filter(|old| !map.nodes().iter().any(|n| n.incarnation == old.incarnation))
                    .collect();
                // Fenced before their chains are merged: nothing of theirs can be added after.
                let mut closed = 0;
                for node in &dropped {
                    closed += sessions.fence(node.incarnation).len();
                }
                if closed > 0 {
                    self.fence_generation.fetch_add(1, Ordering::AcqRel);
                }
                dropped
                    .iter()
                    .flat_map(|node| node.cores.iter().map(|core| core.chain))
                    .filter(|&c| c.0 < chain_count)
                    .collect::<Vec<ChainId>>()
            }
            None => Vec::new(),
        };
        if !dropped.is_empty() {
            self.shared
                .merger
                .merge_chains(dropped.iter().copied(), MergeScope::All)?;
        }
        cluster_area::write(&self.pool, u64::from(map.epoch().0), payload)
            .map_err(IndexError::from)?;
        *state = MapState {
            epoch: map.epoch(),
            payload: Some(payload.to_vec()),
            map: Some(map),
        };
        Ok(Response::Stored)
    }
}

/// Without a controller, a map may change nothing of a live incarnation but the writer's own:
/// each other node of `stored` that some connection is bound to must be in `new` unchanged,
/// with the same slots.
fn check_no_live_loss(
    stored: &ClusterMap,
    new: &ClusterMap,
    sessions: &Sessions,
    writer: Incarnation,
) -> Result<(), Refusal> {
    for node in stored.nodes() {
        if !sessions.is_live(node.incarnation) || node.incarnation == writer {
            continue;
        }
        let kept = new.node(node.kn) == Some(node)
            && node.cores.iter().all(|core| {
                let owner = Owner {
                    kn: node.kn,
                    core: core.core,
                };
                slots_of(stored, owner) == slots_of(new, owner)
            });
        if !kept {
            let port = node.cores.first().map_or(0, |c| c.port);
            return Err(Refusal::Answer(
                ErrorCode::Conflict,
                format!(
                    "kn {} (incarnation {}) at {}:{port} is live and owns slots in the cluster map \
                     of epoch {}; stop it first (moving slots between live nodes needs the \
                     controller)",
                    node.kn,
                    node.incarnation,
                    node.host,
                    stored.epoch()
                ),
            ));
        }
    }
    Ok(())
}

impl RpcHandler for MemoryNode {
    fn handle(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        match Request::decode(request) {
            Ok(request) => self.serve(peer, &request).encode(),
            Err(e) => {
                let c = &self.shared.counters;
                c.rpcs.fetch_add(1, Ordering::Relaxed);
                c.rpc_errors.fetch_add(1, Ordering::Relaxed);
                Response::error(ErrorCode::BadRequest, format!("malformed request: {e}")).encode()
            }
        }
    }

    fn disconnected(&self, peer: PeerId) {
        MemoryNode::disconnected(self, peer);
    }

    fn fence_generation(&self) -> u64 {
        self.fence_generation.load(Ordering::Acquire)
    }

    fn is_fenced(&self, peer: PeerId) -> bool {
        lock(&self.sessions).is_fenced_peer(peer)
    }
}

impl Drop for MemoryNode {
    fn drop(&mut self) {
        // Dropping without `shutdown` is an unclean stop: the threads end, nothing is marked.
        self.stop_background();
    }
}

/// Why a write request was not done: an answer for the client, or an error of the pool or the
/// index (classified by [`classify`]).
enum Refusal {
    Answer(ErrorCode, String),
    Index(IndexError),
}

impl From<IndexError> for Refusal {
    fn from(e: IndexError) -> Refusal {
        Refusal::Index(e)
    }
}

/// The error code for `e`, and whether it means the pool is damaged or unwritable (the node then
/// stops taking writes). Running out of room, a bad argument and contention are not.
fn classify(e: &IndexError) -> (ErrorCode, bool) {
    match e {
        IndexError::Pool(PoolError::NoFreeBlock)
        | IndexError::ArenaFull(_)
        | IndexError::NoFreeCell => (ErrorCode::NoSpace, false),
        IndexError::Pool(PoolError::Config(_)) => (ErrorCode::BadRequest, false),
        IndexError::Contended(_) => (ErrorCode::Internal, false),
        _ => (ErrorCode::Corrupt, true),
    }
}

fn merged(r: MergeReport) -> Response {
    Response::Merged {
        entries: r.entries,
        bytes: r.bytes,
        blocks_unlinked: r.blocks_unlinked,
        blocks_freed: r.blocks_freed,
    }
}

/// One merge thread: background passes until the node stops or fails, sleeping with a growing,
/// bounded back-off while there is nothing to merge.
fn merge_loop(shared: &Shared) {
    let mut idle = MERGE_IDLE_SLEEP_MIN;
    loop {
        if *lock(&shared.stop) || shared.failure().is_some() {
            return;
        }
        let pause = match shared.merger.background_pass() {
            Ok(r) if r.entries > 0 || r.blocks_unlinked > 0 || r.blocks_freed > 0 => {
                shared
                    .counters
                    .background_busy_passes
                    .fetch_add(1, Ordering::Relaxed);
                idle = MERGE_IDLE_SLEEP_MIN;
                continue;
            }
            Ok(_) => {
                let pause = idle;
                idle = (idle * 2).min(MERGE_IDLE_SLEEP_MAX);
                pause
            }
            Err(e) => {
                shared
                    .counters
                    .background_errors
                    .fetch_add(1, Ordering::Relaxed);
                *lock(&shared.last_background_error) = Some(e.to_string());
                if classify(&e).1 {
                    shared.fail(format!("background merge: {e}"));
                    return;
                }
                MERGE_ERROR_SLEEP
            }
        };
        if shared.sleep(pause) {
            return;
        }
    }
}

fn check_options(options: &NodeOptions) -> Result<(), MnError> {
    if options.merge_threads > MERGE_THREADS_MAX {
        return Err(MnError::Config(format!(
            "{} merge threads exceed the limit of {MERGE_THREADS_MAX}",
            options.merge_threads
        )));
    }
    Ok(())
}

/// Refuses a pool configuration before any file is touched, so that a bad size never leaves a
/// half-made pool file behind.
fn check_pool_config(cfg: &PoolConfig) -> Result<(), MnError> {
    Layout::compute(cfg, [0; 16], 0)?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent at every point a panic could occur.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_gate(g: &RwLock<bool>) -> std::sync::RwLockReadGuard<'_, bool> {
    g.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_gate(g: &RwLock<bool>) -> std::sync::RwLockWriteGuard<'_, bool> {
    g.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
