//! [`Engine`]: one KN worker core's key-value engine — the request state machines between a
//! client command and the memory node's pool (DESIGN.md §4).
//!
//! The engine owns everything of its core by value: its queue pair, its cache, its staging log
//! block and mirrors, its unmerged-entry map. It never blocks: [`Engine::submit`] starts a
//! request, [`Engine::poll`] reaps fabric completions and advances every request it can, and
//! finished requests come out as `(tag, reply)` pairs. Many requests are in flight at once.
//!
//! Reads: value in cache (0 round trips) →
//! this core's unmerged log (0) → shortcut in cache (1 READ) → index probe with the cached table
//! header (bucket READ + entry READ). A shortcut whose entry was reclaimed fails its key and
//! checksum check and falls back to the index. A read answered from a remote READ fills the
//! cache only if no write of the key committed meanwhile.
//!
//! Writes: appended to the staging block; one batch is in flight at a time, and writes that
//! arrive meanwhile wait and form the next batch (group commit). A batch is written with one
//! doorbell — the entries, then the tail word(s) — and only when its last WRITE completes is every
//! write in it acknowledged, the cache updated, and the unmerged map pointed at the new entries.
//! New blocks come from the MN by RPC, asked for as soon as the spare is used. Sealed blocks stay
//! mirrored locally until the MN's merge unlinks them; with too many, writes wait.
//!
//! Ordering: operations on one key take effect in arrival order. Each key with work in flight
//! has a queue. A write is admitted at once (writes never wait for reads); a read waits until
//! every write admitted before it has committed — so it never shows a write that could still be
//! lost, and never one that arrived after it; a read-then-write command (SET NX/XX/GET, DEL) also
//! holds the key until its own write is staged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dinomo_index::key_hash;
use dinomo_index::probe::{Hit, Probe, Step, decode_root};
use dinomo_pmem::constants::SUPERBLOCK_LEN;
use dinomo_pmem::entry::decode_entry;
use dinomo_pmem::index_format::{TABLE_HEADER_LEN, TableHeader};
use dinomo_pmem::staging::{EntryLoc, Mirror};
use dinomo_pmem::{AppendError, BlockId, ChainId, Entry, Layout, Op, PoolOffset, Staging, Version};

use crate::cache::{Cache, KeyMap, Lookup, Policy, Shortcut};
use crate::fabric::{
    Completion, CompletionData, QP_IN_FLIGHT_MAX, QueuePair, Verb, VerbError, VerbKind, WrId,
    wait_for,
};
use crate::kn::constants::*;
use crate::kn::stats::{EngineStats, Outcome};
use crate::mn::proto::{Request as MnRequest, Response as MnResponse};

/// The poster's identifier of a request, returned with its reply.
pub type Tag = u64;

/// When a SET writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// A single-key command (multi-key commands are split by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Get {
        key: Vec<u8>,
    },
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        cond: SetCond,
        get: bool,
    },
    Del {
        key: Vec<u8>,
    },
    Exists {
        key: Vec<u8>,
    },
}

impl Command {
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::Del { key }
            | Command::Exists { key } => key,
        }
    }
    fn is_write(&self) -> bool {
        matches!(self, Command::Set { .. } | Command::Del { .. })
    }
    /// Whether the command must read the key before it writes.
    fn reads_before_write(&self) -> bool {
        match self {
            Command::Set { cond, get, .. } => *cond != SetCond::Always || *get,
            Command::Del { .. } => true,
            _ => false,
        }
    }
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// GET, and SET ... GET (the old value).
    Value(Option<Vec<u8>>),
    /// SET that wrote.
    Ok,
    /// SET NX/XX that did not write.
    NotSet,
    /// DEL and EXISTS of one key: 0 or 1.
    Int(i64),
    Error(EngineError),
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("too many requests in flight on this core")]
    Busy,
    #[error("key or value too large: {0}")]
    TooLarge(String),
    #[error("the memory pool is full")]
    PoolFull,
    #[error("this core stopped after a fabric error: {0}")]
    Failed(String),
    #[error("lookup kept racing with index changes")]
    Contended,
}

/// How writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// When the batch is in the pool's memory.
    Memory,
    /// When the batch is flushed to the pool's media.
    Flush,
}

/// Settings of one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub chain: ChainId,
    pub epoch: u32,
    pub session: u64,
    pub cache_policy: Policy,
    pub cache_bytes: usize,
    pub durability: Durability,
    pub batch_bytes_max: u64,
    pub batch_delay: Duration,
    pub value_hint: u32,
}

impl EngineConfig {
    pub fn new(chain: ChainId, epoch: u32) -> EngineConfig {
        EngineConfig {
            chain,
            epoch,
            session: 0,
            cache_policy: Policy::Dac,
            cache_bytes: CACHE_BYTES_DEFAULT,
            durability: Durability::Memory,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            batch_delay: BATCH_DELAY_DEFAULT,
            value_hint: VALUE_HINT_DEFAULT,
        }
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("fabric: {0}")]
    Fabric(#[from] VerbError),
    #[error("the memory node's pool: {0}")]
    Pool(#[from] dinomo_pmem::PoolError),
    #[error("the memory node answered {0}")]
    Unexpected(String),
}

// Work-request ids: the kind in the top 4 bits.
const WR_REQ: u64 = 1;
const WR_COMMIT: u64 = 2;
const WR_ALLOC: u64 = 3;
const WR_CURSOR: u64 = 4;
const WR_ROOT: u64 = 5;
const WR_HEADER: u64 = 6;

fn wr(kind: u64, payload: u64) -> WrId {
    WrId((kind << 60) | (payload & ((1 << 60) - 1)))
}

type ReqId = usize;

#[derive(Debug)]
enum State {
    /// Waiting in its key's queue.
    Queued,
    /// Waiting for the READ of a cached shortcut.
    Shortcut(Shortcut),
    /// Waiting for a READ of an index probe.
    Probe(Box<Probe>),
    /// Waiting for the table header to be refreshed.
    WaitTable,
    /// Waiting for room on the queue pair before its first remote READ.
    WaitQp,
    /// A write staged in a batch, waiting for the batch to commit.
    WaitBatch,
    /// A write waiting to be staged.
    PendingWrite,
}

#[derive(Debug)]
struct Req {
    tag: Tag,
    generation: u32,
    cmd: Command,
    state: State,
    outcome: Outcome,
    round_trips: u32,
    restarts: u32,
    /// A write of the key committed while this read was remote: do not fill the cache.
    dirty: bool,
    /// Holds the key (read-then-write command).
    locked: bool,
    /// An admitted write not yet committed: counted in its key's `writes`.
    counted: bool,
    /// Probe the next table of a running resize.
    use_next: bool,
    /// For read-then-write commands: the value the read found.
    found: Option<Option<Vec<u8>>>,
}

#[derive(Debug)]
struct BatchEntry {
    key: Arc<[u8]>,
    loc: EntryLoc,
    op: Op,
}

#[derive(Debug)]
struct Inflight {
    writers: Vec<ReqId>,
    entries: Vec<BatchEntry>,
    outstanding: usize,
    failure: Option<VerbError>,
}

/// Largest key copy buffer an engine keeps between requests, in bytes.
const KEY_SCRATCH_KEEP: usize = 4096;

/// The newest committed, unmerged entry of a key.
#[derive(Debug, Clone, Copy)]
struct Unmerged {
    loc: EntryLoc,
    op: Op,
}

/// The per-key order of a key with work in flight.
#[derive(Debug, Default)]
struct KeyState {
    /// Admitted writes not yet committed.
    writes: u32,
    /// A read-then-write command holds the key.
    locked: bool,
    /// Requests waiting their turn, in arrival order.
    queue: VecDeque<ReqId>,
}

/// A merge-progress check in flight: the chain's cursor and the merge position of `target`.
#[derive(Debug)]
struct CursorPoll {
    target: BlockId,
    cursor: Option<u64>,
    merged: Option<u64>,
    outstanding: usize,
}

#[derive(Debug)]
enum Refresh {
    Idle,
    Root,
    Headers {
        next: u64,
        got: [Option<TableHeader>; 2],
        outstanding: usize,
    },
}

/// One core's engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    qp: Box<dyn QueuePair>,
    layout: Layout,
    boot: u64,
    cache: Cache,
    staging: Staging,
    next_seq: u64,
    /// Sealed, committed blocks not yet unlinked by the merge, oldest first.
    sealed: VecDeque<Mirror>,
    unmerged: KeyMap<Arc<[u8]>, Unmerged>,
    keys: KeyMap<Box<[u8]>, KeyState>,
    remote_reads: KeyMap<Box<[u8]>, Vec<ReqId>>,
    reqs: Vec<Option<Req>>,
    free: Vec<ReqId>,
    generation: u32,
    live: usize,
    pending_writes: VecDeque<ReqId>,
    /// Reads waiting for room on the queue pair.
    qp_waiters: VecDeque<ReqId>,
    open_batch: u64,
    open_writers: Vec<ReqId>,
    open_entries: Vec<BatchEntry>,
    /// The buffers of the last committed batch, cleared, for the next batch but one.
    spare_writers: Vec<ReqId>,
    spare_entries: Vec<BatchEntry>,
    key_scratch: Vec<u8>,
    open_since: Option<Instant>,
    flush_requested: bool,
    inflight: Option<Inflight>,
    spares: VecDeque<BlockId>,
    spare_rpc: bool,
    pool_full: bool,
    next_spare_retry: Instant,
    cursor_poll: Option<CursorPoll>,
    /// Every committed entry not yet known to be merged, in chain order, with its key.
    unmerged_log: VecDeque<(EntryLoc, Arc<[u8]>)>,
    next_cursor_poll: Instant,
    table: Option<TableHeader>,
    next_table: Option<TableHeader>,
    refresh: Refresh,
    waiting_table: Vec<ReqId>,
    failed: Option<String>,
    done: Vec<(Tag, Reply)>,
    completions: Vec<Completion>,
    stats: EngineStats,
    miss_round_trips: u64,
    misses_counted: u64,
}

impl Engine {
    /// Starts an engine on `qp`: reads the pool's layout, attaches to the chain (the MN merges
    /// what an earlier writer of the chain left), and reads the index's table header. Blocking:
    /// this is the core's start-up, not its loop.
    pub fn attach(mut qp: Box<dyn QueuePair>, cfg: EngineConfig) -> Result<Engine, StartError> {
        let mut others = Vec::new();
        let superblock =
            read_blocking(&mut *qp, PoolOffset(0), SUPERBLOCK_LEN as u32, &mut others)?;
        let layout = Layout::decode(&superblock, qp.region_len())?;
        let request = MnRequest::Attach {
            chain: cfg.chain,
            session: cfg.session,
        };
        let (boot, head, used, next_seq) = match rpc(&mut *qp, &request, &mut others)? {
            MnResponse::Attached {
                boot,
                head,
                used,
                next_seq,
            } => (boot, head, used, next_seq),
            other => return Err(StartError::Unexpected(format!("{other:?} to attach"))),
        };
        let root = read_blocking(&mut *qp, PoolOffset(layout.root_off), 16, &mut others)?;
        let (table_off, next_off) =
            decode_root(&root).ok_or_else(|| StartError::Unexpected("a short root".into()))?;
        let header = |qp: &mut dyn QueuePair,
                      off: u64,
                      others: &mut Vec<Completion>|
         -> Result<TableHeader, StartError> {
            let bytes = read_blocking(qp, PoolOffset(off), TABLE_HEADER_LEN as u32, others)?;
            TableHeader::decode(&bytes)
                .ok_or_else(|| StartError::Unexpected(format!("no table header at {off:#x}")))
        };
        let table = header(&mut *qp, table_off, &mut others)?;
        let next_table = if next_off != 0 && next_off != table_off {
            Some(header(&mut *qp, next_off, &mut others)?)
        } else {
            None
        };
        let staging = Staging::new(&layout, head, used, cfg.batch_bytes_max, true);
        let cache = Cache::new(cfg.cache_policy, cfg.cache_bytes);
        Ok(Engine {
            qp,
            layout,
            boot,
            cache,
            staging,
            next_seq,
            sealed: VecDeque::new(),
            unmerged: KeyMap::default(),
            keys: KeyMap::default(),
            remote_reads: KeyMap::default(),
            reqs: Vec::new(),
            free: Vec::new(),
            generation: 0,
            live: 0,
            pending_writes: VecDeque::new(),
            qp_waiters: VecDeque::new(),
            open_batch: 1,
            open_writers: Vec::new(),
            open_entries: Vec::new(),
            spare_writers: Vec::new(),
            spare_entries: Vec::new(),
            key_scratch: Vec::new(),
            open_since: None,
            flush_requested: false,
            inflight: None,
            spares: VecDeque::new(),
            spare_rpc: false,
            pool_full: false,
            next_spare_retry: Instant::now(),
            cursor_poll: None,
            unmerged_log: VecDeque::new(),
            next_cursor_poll: Instant::now(),
            table: Some(table),
            next_table,
            refresh: Refresh::Idle,
            waiting_table: Vec::new(),
            failed: None,
            done: Vec::new(),
            completions: Vec::with_capacity(POLL_BATCH),
            stats: EngineStats::default(),
            miss_round_trips: 0,
            misses_counted: 0,
            cfg,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// The MN boot this engine attached to.
    pub fn boot(&self) -> u64 {
        self.boot
    }
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    pub fn queue_pair(&self) -> &dyn QueuePair {
        &*self.qp
    }
    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.live
    }
    /// Keys whose newest entry is committed in this core's log but not yet merged into the index.
    pub fn unmerged_keys(&self) -> usize {
        self.unmerged.len()
    }
    /// Sealed blocks waiting for the merge.
    pub fn sealed_blocks(&self) -> usize {
        self.sealed.len()
    }
    /// The fabric error that stopped this core, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }
    /// Whether the engine has nothing to do until a new request arrives.
    pub fn is_idle(&self) -> bool {
        self.live == 0 && self.qp.in_flight() == 0 && self.open_entries.is_empty()
    }
    /// When the engine next needs a poll even without new input (a delayed completion, a batch
    /// deadline, a merge-progress check).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut at = self.qp.next_due();
        if let Some(since) = self.open_since {
            at = Some(at.map_or(since + self.cfg.batch_delay, |a| {
                a.min(since + self.cfg.batch_delay)
            }));
        }
        if !self.sealed.is_empty() || !self.unmerged_log.is_empty() {
            at = Some(at.map_or(self.next_cursor_poll, |a| a.min(self.next_cursor_poll)));
        }
        at
    }

    /// Starts a command. Its reply comes out of a later [`Engine::poll`] (or this one).
    pub fn submit(&mut self, tag: Tag, cmd: Command) {
        if let Some(reason) = &self.failed {
            let reason = reason.clone();
            self.done
                .push((tag, Reply::Error(EngineError::Failed(reason))));
            return;
        }
        if self.live >= ENGINE_REQUESTS_MAX {
            self.done.push((tag, Reply::Error(EngineError::Busy)));
            return;
        }
        match &cmd {
            Command::Get { .. } => self.stats.gets += 1,
            Command::Set { .. } => self.stats.sets += 1,
            Command::Del { .. } => self.stats.dels += 1,
            Command::Exists { .. } => self.stats.exists += 1,
        }
        // Fast path: a read of a key with nothing in flight whose value is cached is answered
        // here, without request state (the order of a key's commands only matters while some
        // are in flight, and a cached value is the newest committed one).
        if let Command::Get { key } = &cmd
            && !self.keys.contains_key(key.as_slice())
            && let Some(value) = self.cache.get_value(key)
        {
            let reply = Reply::Value(Some(value.to_vec()));
            self.stats.ops[Outcome::Value as usize] += 1;
            self.done.push((tag, reply));
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let outcome = if cmd.is_write() {
            Outcome::Write
        } else {
            Outcome::Miss
        };
        let req = Req {
            tag,
            generation: self.generation,
            cmd,
            state: State::Queued,
            outcome,
            round_trips: 0,
            restarts: 0,
            dirty: false,
            locked: false,
            counted: false,
            use_next: false,
            found: None,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.reqs[id] = Some(req);
                id
            }
            None => {
                self.reqs.push(Some(req));
                self.reqs.len() - 1
            }
        };
        self.live += 1;
        self.begin(id);
    }

    /// The caller has no more input for now: commit staged writes without waiting for more.
    pub fn flush_now(&mut self) {
        self.flush_requested = true;
    }

    /// Reaps completions and advances requests; finished ones are appended to `out`. Returns
    /// whether anything happened.
    pub fn poll(&mut self, out: &mut Vec<(Tag, Reply)>) -> bool {
        let mut progressed = false;
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        self.qp.poll(&mut completions, POLL_BATCH);
        for c in completions.drain(..) {
            progressed = true;
            self.on_completion(c);
        }
        self.completions = completions;
        while !self.qp_waiters.is_empty() && self.qp.in_flight() + QP_RESERVED < QP_IN_FLIGHT_MAX {
            if let Some(id) = self.qp_waiters.pop_front()
                && self.reqs[id].is_some()
            {
                self.start_read(id);
            }
        }
        let now = Instant::now();
        self.stage_pending();
        if self.inflight.is_none() && !self.open_entries.is_empty() {
            let deadline = self
                .open_since
                .is_some_and(|s| now >= s + self.cfg.batch_delay);
            if self.flush_requested || deadline {
                self.commit();
            }
        }
        if self.open_entries.is_empty() {
            self.flush_requested = false;
        }
        self.maybe_request_spares();
        self.maybe_poll_cursor(now);
        if !self.done.is_empty() {
            progressed = true;
            out.append(&mut self.done);
        }
        progressed
    }

    // Request lifecycle.

    fn req(&mut self, id: ReqId) -> &mut Req {
        self.reqs[id].as_mut().expect("a live request")
    }

    fn finish(&mut self, id: ReqId, reply: Reply) {
        let Some(req) = self.reqs[id].take() else {
            return;
        };
        if matches!(reply, Reply::Error(_)) {
            self.stats.errors += 1;
        }
        self.stats.ops[req.outcome as usize] += 1;
        self.stats.round_trips[req.outcome as usize] += u64::from(req.round_trips);
        self.done.push((req.tag, reply));
        self.free.push(id);
        self.live -= 1;
        if req.locked || req.counted {
            let key = req.cmd.key();
            if let Some(st) = self.keys.get_mut(key) {
                if req.locked {
                    st.locked = false;
                }
                if req.counted {
                    st.writes -= 1;
                }
            }
            self.advance(key);
        }
    }

    fn begin(&mut self, id: ReqId) {
        let key = self.reqs[id].as_ref().expect("a live request").cmd.key();
        match self.keys.get_mut(key) {
            Some(st) => st.queue.push_back(id),
            None => {
                let mut st = KeyState::default();
                st.queue.push_back(id);
                self.keys.insert(key.into(), st);
            }
        }
        // `advance` may finish the request; it works on a copy of the key (a reused buffer:
        // `begin` is never re-entered).
        let mut scratch = std::mem::take(&mut self.key_scratch);
        scratch.clear();
        scratch.extend_from_slice(key);
        self.req(id).state = State::Queued;
        self.advance(&scratch);
        // Kept for the next request unless an unusually long key grew it.
        if scratch.capacity() <= KEY_SCRATCH_KEEP {
            self.key_scratch = scratch;
        }
    }

    /// Starts the requests at the front of the key's queue that may go now (see the module's
    /// ordering rules), and forgets the key once nothing of it is in flight.
    fn advance(&mut self, key: &[u8]) {
        loop {
            let Some(st) = self.keys.get_mut(key) else {
                return;
            };
            if st.locked {
                return;
            }
            let Some(&front) = st.queue.front() else {
                if st.writes == 0 {
                    self.keys.remove(key);
                }
                return;
            };
            let cmd = &self.reqs[front].as_ref().expect("a queued request").cmd;
            if cmd.is_write() && !cmd.reads_before_write() {
                st.queue.pop_front();
                st.writes += 1;
                let req = self.req(front);
                req.counted = true;
                req.state = State::PendingWrite;
                self.pending_writes.push_back(front);
                continue;
            }
            if st.writes > 0 {
                // Earlier writes are not committed yet: make them commit soon.
                self.flush_requested = true;
                return;
            }
            st.queue.pop_front();
            if cmd.reads_before_write() {
                st.locked = true;
                self.req(front).locked = true;
                self.start_read(front);
                return;
            }
            self.start_read(front);
        }
    }

    // Reads.

    fn start_read(&mut self, id: ReqId) {
        let req = self.reqs[id].as_ref().expect("a live request");
        let is_write = req.cmd.is_write();
        let key = req.cmd.key();
        if let Some(value) = self.cache.get_value(key).map(<[u8]>::to_vec) {
            if !is_write {
                self.req(id).outcome = Outcome::Value;
            }
            self.read_done(id, Some(value));
            return;
        }
        if let Some(u) = self.unmerged.get(key).copied() {
            let value = match u.op {
                Op::Delete => None,
                Op::Put => match self.mirror_value(u.loc) {
                    Some(v) => Some(v),
                    None => {
                        self.fail_engine(format!(
                            "entry {:?} of an unmerged key is not mirrored",
                            u.loc
                        ));
                        return;
                    }
                },
            };
            if !is_write {
                self.req(id).outcome = Outcome::Log;
            }
            self.read_done(id, value);
            return;
        }
        if self.qp.in_flight() + QP_RESERVED >= QP_IN_FLIGHT_MAX {
            // Every read in flight holds at most one verb; wait for one to complete.
            self.req(id).state = State::WaitQp;
            self.qp_waiters.push_back(id);
            return;
        }
        let key: Box<[u8]> = self.req(id).cmd.key().into();
        match self.cache.get(&key) {
            Lookup::Shortcut(sc) => {
                if !is_write {
                    self.req(id).outcome = Outcome::Shortcut;
                }
                if matches!(self.req(id).cmd, Command::Exists { .. }) {
                    // A cached shortcut means the key exists; no need to fetch its value.
                    self.read_done(id, Some(Vec::new()));
                    return;
                }
                self.req(id).state = State::Shortcut(sc);
                self.remote_reads.entry(key).or_default().push(id);
                self.post_req_read(id, PoolOffset(sc.entry_offset), sc.entry_len);
            }
            _ => {
                if !is_write {
                    self.req(id).outcome = Outcome::Miss;
                }
                self.remote_reads.entry(key).or_default().push(id);
                self.start_probe(id);
            }
        }
    }

    fn start_probe(&mut self, id: ReqId) {
        let use_next = self.req(id).use_next;
        let table = if use_next {
            self.next_table.or(self.table)
        } else {
            self.table
        };
        let Some(table) = table else {
            self.req(id).state = State::WaitTable;
            self.waiting_table.push(id);
            self.start_refresh();
            return;
        };
        let key = self.req(id).cmd.key().to_vec();
        let mut probe = Probe::new(table, &key, key_hash(&key), key_hash, self.cfg.value_hint);
        let step = probe.start();
        self.req(id).state = State::Probe(Box::new(probe));
        self.probe_step(id, step);
    }

    fn probe_step(&mut self, id: ReqId, step: Step) {
        match step {
            Step::Read { off, len } => self.post_req_read(id, off, len),
            Step::Hit(hit) => self.probe_done(id, Some(hit)),
            Step::Miss => self.probe_done(id, None),
            Step::Stale | Step::Moved | Step::Retry => {
                self.stats.lookup_restarts += 1;
                let req = self.req(id);
                req.restarts += 1;
                if req.restarts > LOOKUP_RESTARTS_MAX {
                    self.forget_remote_read(id);
                    self.finish(id, Reply::Error(EngineError::Contended));
                    return;
                }
                match step {
                    Step::Retry => self.start_probe(id),
                    Step::Moved => {
                        req.use_next = true;
                        // The next table's header may be unknown, or the resize may be over.
                        self.table = None;
                        self.start_probe(id);
                    }
                    _ => {
                        req.use_next = false;
                        self.table = None;
                        self.start_probe(id);
                    }
                }
            }
        }
    }

    fn probe_done(&mut self, id: ReqId, hit: Option<Hit>) {
        let rts = u64::from(self.req(id).round_trips);
        self.miss_round_trips += rts;
        self.misses_counted += 1;
        if self.misses_counted >= MISS_COST_WINDOW {
            self.cache
                .set_miss_cost(self.miss_round_trips as f64 / self.misses_counted as f64);
            self.miss_round_trips = 0;
            self.misses_counted = 0;
        }
        let dirty = self.forget_remote_read(id);
        let key: Box<[u8]> = self.req(id).cmd.key().into();
        let value = hit.as_ref().map(|h| h.value().to_vec());
        if let Some(hit) = &hit
            && !dirty
            && !self.unmerged.contains_key(&*key)
        {
            let sc = Shortcut {
                entry_offset: hit.entry.get(),
                entry_len: hit.entry_len() as u32,
            };
            self.cache.insert(&key, hit.value(), sc);
        }
        self.read_done(id, value);
    }

    /// Removes `id` from the key's remote readers; returns whether a write committed meanwhile.
    fn forget_remote_read(&mut self, id: ReqId) -> bool {
        let key: Box<[u8]> = self.req(id).cmd.key().into();
        if let Some(list) = self.remote_reads.get_mut(&key) {
            list.retain(|&r| r != id);
            if list.is_empty() {
                self.remote_reads.remove(&key);
            }
        }
        self.req(id).dirty
    }

    fn shortcut_done(&mut self, id: ReqId, sc: Shortcut, bytes: &[u8]) {
        let key: Box<[u8]> = self.req(id).cmd.key().into();
        match decode_entry(bytes) {
            Ok(e) if e.key == &*key && e.op == Op::Put => {
                let value = e.value.to_vec();
                let dirty = self.forget_remote_read(id);
                if !dirty {
                    self.cache.shortcut_filled(&key, &value, sc);
                }
                self.read_done(id, Some(value));
            }
            _ => {
                // The entry's block was reclaimed and reused: go through the index.
                self.stats.shortcut_stale += 1;
                if !self.req(id).dirty {
                    self.cache.remove(&key);
                }
                if !self.req(id).cmd.is_write() {
                    self.req(id).outcome = Outcome::Miss;
                }
                self.start_probe(id);
            }
        }
    }

    /// A read finished with `value` (None: the key is absent).
    fn read_done(&mut self, id: ReqId, value: Option<Vec<u8>>) {
        let req = self.req(id);
        match &req.cmd {
            Command::Get { .. } => self.finish(id, Reply::Value(value)),
            Command::Exists { .. } => self.finish(id, Reply::Int(i64::from(value.is_some()))),
            Command::Set { cond, get, .. } => {
                let exists = value.is_some();
                let write = match cond {
                    SetCond::Always => true,
                    SetCond::IfAbsent => !exists,
                    SetCond::IfPresent => exists,
                };
                if write {
                    req.found = Some(value);
                    req.state = State::PendingWrite;
                    self.pending_writes.push_back(id);
                } else {
                    let reply = if *get {
                        Reply::Value(value)
                    } else {
                        Reply::NotSet
                    };
                    self.stats.no_ops += 1;
                    self.finish(id, reply);
                }
            }
            Command::Del { .. } => {
                if value.is_some() {
                    req.found = Some(value);
                    req.state = State::PendingWrite;
                    self.pending_writes.push_back(id);
                } else {
                    self.stats.no_ops += 1;
                    self.finish(id, Reply::Int(0));
                }
            }
        }
    }

    fn post_req_read(&mut self, id: ReqId, off: PoolOffset, len: u32) {
        let generation = self.req(id).generation;
        let outcome = self.req(id).outcome;
        let verb = Verb::Read { remote: off, len };
        match self
            .qp
            .post(wr(WR_REQ, ((generation as u64) << 32) | id as u64), verb)
        {
            Ok(()) => {
                self.req(id).round_trips += 1;
                self.stats
                    .count_verb(outcome, VerbKind::Read, u64::from(len));
            }
            Err(e) => {
                // A full queue pair cannot happen below the request limit; anything else is fatal.
                self.fail_engine(format!("posting a READ: {e}"));
            }
        }
    }

    // Table header refresh (stale or moved tables).

    fn start_refresh(&mut self) {
        if !matches!(self.refresh, Refresh::Idle) {
            return;
        }
        self.stats.table_refreshes += 1;
        self.refresh = Refresh::Root;
        let verb = Verb::Read {
            remote: PoolOffset(self.layout.root_off),
            len: 16,
        };
        if let Err(e) = self.qp.post(wr(WR_ROOT, 0), verb) {
            self.fail_engine(format!("posting a root READ: {e}"));
        }
    }

    fn on_root(&mut self, bytes: &[u8]) {
        let Some((table, next)) = decode_root(bytes) else {
            self.refresh = Refresh::Idle;
            self.start_refresh();
            return;
        };
        let next = if next == table { 0 } else { next };
        let mut batch = vec![(
            wr(WR_HEADER, 0),
            Verb::Read {
                remote: PoolOffset(table),
                len: TABLE_HEADER_LEN as u32,
            },
        )];
        if next != 0 {
            batch.push((
                wr(WR_HEADER, 1),
                Verb::Read {
                    remote: PoolOffset(next),
                    len: TABLE_HEADER_LEN as u32,
                },
            ));
        }
        let outstanding = batch.len();
        self.refresh = Refresh::Headers {
            next,
            got: [None, None],
            outstanding,
        };
        if let Err(e) = self.qp.post_batch(batch) {
            self.fail_engine(format!("posting header READs: {e}"));
        }
    }

    fn on_header(&mut self, which: usize, bytes: &[u8]) {
        let Refresh::Headers {
            got,
            outstanding,
            next,
            ..
        } = &mut self.refresh
        else {
            return;
        };
        got[which] = TableHeader::decode(bytes);
        *outstanding -= 1;
        if *outstanding > 0 {
            return;
        }
        let (current, next_header, has_next) = (got[0], got[1], *next != 0);
        self.refresh = Refresh::Idle;
        let Some(current) = current else {
            // A header that does not decode: the root moved on while we read it. Again.
            self.start_refresh();
            return;
        };
        if has_next && next_header.is_none() {
            self.start_refresh();
            return;
        }
        self.table = Some(current);
        self.next_table = next_header;
        for id in std::mem::take(&mut self.waiting_table) {
            if self.reqs[id].is_some() {
                self.start_probe(id);
            }
        }
    }

    // Writes.

    /// Stages waiting writes, in order, while there is room; stops at the first that must wait.
    fn stage_pending(&mut self) {
        while let Some(&id) = self.pending_writes.front() {
            if self.inflight.is_some() {
                return;
            }
            if self.sealed.len() >= UNMERGED_BLOCKS_MAX {
                self.stats.backpressure_waits += 1;
                return;
            }
            let version = Version {
                epoch: self.cfg.epoch,
                seq: self.next_seq,
            };
            let (op, key, value): (Op, &[u8], &[u8]) =
                match &self.reqs[id].as_ref().expect("a live request").cmd {
                    Command::Set { key, value, .. } => (Op::Put, key, value),
                    Command::Del { key } => (Op::Delete, key, &[]),
                    _ => unreachable_command(),
                };
            match self.staging.append(op, key, value, version) {
                Ok(loc) => {
                    let key: Arc<[u8]> = key.into();
                    self.pending_writes.pop_front();
                    self.next_seq += 1;
                    self.open_entries.push(BatchEntry {
                        key: key.clone(),
                        loc,
                        op,
                    });
                    self.open_writers.push(id);
                    self.open_since.get_or_insert_with(Instant::now);
                    let req = self.req(id);
                    req.state = State::WaitBatch;
                    if req.locked {
                        // A read-then-write command is now a plain write in a batch: later
                        // commands of the key may go (reads still wait for its commit).
                        req.locked = false;
                        req.counted = true;
                        if let Some(st) = self.keys.get_mut(&*key) {
                            st.locked = false;
                            st.writes += 1;
                        }
                        self.advance(&key);
                    }
                }
                Err(AppendError::NeedBlock) => match self.spares.pop_front() {
                    Some(b) => self.staging.set_spare(b),
                    None => {
                        if self.pool_full && !self.spare_rpc {
                            self.pending_writes.pop_front();
                            self.finish(id, Reply::Error(EngineError::PoolFull));
                            continue;
                        }
                        self.maybe_request_spares();
                        return;
                    }
                },
                Err(AppendError::BatchFull) => {
                    self.flush_requested = true;
                    return;
                }
                Err(e @ (AppendError::KeyTooLong(_) | AppendError::EntryTooLarge { .. })) => {
                    self.pending_writes.pop_front();
                    self.finish(id, Reply::Error(EngineError::TooLarge(e.to_string())));
                }
            }
        }
    }

    fn commit(&mut self) {
        let plan = self.staging.plan(&self.layout);
        if plan.tails.is_empty() {
            return;
        }
        let persist = self.cfg.durability == Durability::Flush;
        let mut batch = Vec::with_capacity(plan.writes.len() + plan.tails.len());
        let mut bytes = 0u64;
        for w in &plan.writes {
            let data = self.staging.bytes(w).to_vec();
            bytes += data.len() as u64;
            batch.push((
                wr(WR_COMMIT, self.open_batch),
                Verb::Write {
                    remote: w.to,
                    data,
                    persist,
                },
            ));
        }
        for &(at, word) in &plan.tails {
            batch.push((
                wr(WR_COMMIT, self.open_batch),
                Verb::Write {
                    remote: at,
                    data: word.to_le_bytes().to_vec(),
                    persist,
                },
            ));
        }
        let verbs = batch.len();
        if let Err(e) = self.qp.post_batch(batch) {
            self.fail_engine(format!("posting a batch: {e}"));
            return;
        }
        self.stats.batches += 1;
        self.stats.batch_entries += self.open_entries.len() as u64;
        self.stats.batch_bytes += bytes;
        self.stats.round_trips[Outcome::Write as usize] += 1;
        self.stats.verbs[Outcome::Write as usize][VerbKind::Write as usize] += verbs as u64;
        self.stats.bytes[Outcome::Write as usize][VerbKind::Write as usize] +=
            bytes + 8 * plan.tails.len() as u64;
        let writers = std::mem::replace(
            &mut self.open_writers,
            std::mem::take(&mut self.spare_writers),
        );
        for &id in &writers {
            self.req(id).state = State::WaitBatch;
        }
        self.inflight = Some(Inflight {
            writers,
            entries: std::mem::replace(
                &mut self.open_entries,
                std::mem::take(&mut self.spare_entries),
            ),
            outstanding: verbs,
            failure: None,
        });
        self.open_batch += 1;
        self.open_since = None;
        self.flush_requested = false;
    }

    fn on_commit_completion(&mut self, result: Result<CompletionData, VerbError>) {
        let Some(inflight) = self.inflight.as_mut() else {
            return;
        };
        inflight.outstanding -= 1;
        if let Err(e) = result {
            inflight.failure.get_or_insert(e);
        }
        if inflight.outstanding > 0 {
            return;
        }
        let Some(batch) = self.inflight.take() else {
            return;
        };
        if let Some(e) = batch.failure {
            self.staging.abort();
            let reason = format!("a batch commit failed: {e}");
            for id in batch.writers {
                self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
            }
            self.fail_engine(reason);
            return;
        }
        if let Some(sealed) = self.staging.committed() {
            self.sealed.push_back(sealed);
            self.stats.block_switches += 1;
            self.next_cursor_poll = Instant::now();
        }
        let Inflight {
            writers,
            mut entries,
            ..
        } = batch;
        for e in entries.drain(..) {
            match e.op {
                Op::Put => {
                    let shortcut = Shortcut {
                        entry_offset: e.loc.pool_offset(&self.layout).get(),
                        entry_len: e.loc.len as u32,
                    };
                    if let Some(entry) = mirrored_entry(&self.staging, &self.sealed, e.loc) {
                        self.cache.insert(&e.key, entry.value, shortcut);
                    }
                }
                Op::Delete => {
                    self.cache.remove(&e.key);
                }
            }
            if let Some(readers) = self.remote_reads.get(&*e.key) {
                for &r in readers {
                    if let Some(req) = self.reqs[r].as_mut() {
                        req.dirty = true;
                    }
                }
            }
            self.unmerged.insert(
                e.key.clone(),
                Unmerged {
                    loc: e.loc,
                    op: e.op,
                },
            );
            self.unmerged_log.push_back((e.loc, e.key));
        }
        if self.spare_entries.capacity() < entries.capacity() {
            self.spare_entries = entries;
        }
        let mut writers = writers;
        for id in writers.drain(..) {
            let reply = match &self.req(id).cmd {
                Command::Set { get: true, .. } => Reply::Value(self.req(id).found.take().flatten()),
                Command::Set { .. } => Reply::Ok,
                Command::Del { .. } => Reply::Int(1),
                _ => unreachable_command(),
            };
            // Finishing a writer lets the reads waiting for it go (they see the cache now).
            self.finish(id, reply);
        }
        if self.spare_writers.capacity() < writers.capacity() {
            self.spare_writers = writers;
        }
    }

    /// The value of a committed entry from this core's mirrors.
    fn mirror_value(&self, loc: EntryLoc) -> Option<Vec<u8>> {
        mirrored_entry(&self.staging, &self.sealed, loc).map(|e| e.value.to_vec())
    }

    fn maybe_request_spares(&mut self) {
        if self.spare_rpc
            || !self.spares.is_empty()
            || self.failed.is_some()
            || !self.staging.needs_spare()
        {
            return;
        }
        if self.pool_full && Instant::now() < self.next_spare_retry {
            return;
        }
        let request = MnRequest::AllocBlocks {
            chain: self.cfg.chain,
            count: SPARES_PER_RPC,
        }
        .encode();
        self.stats
            .count_verb(Outcome::Write, VerbKind::Rpc, request.len() as u64);
        match self.qp.post(wr(WR_ALLOC, 0), Verb::Rpc { request }) {
            Ok(()) => {
                self.spare_rpc = true;
                self.stats.spare_rpcs += 1;
            }
            Err(e) => self.fail_engine(format!("posting a block request: {e}")),
        }
    }

    fn on_alloc(&mut self, result: Result<CompletionData, VerbError>) {
        self.spare_rpc = false;
        match result.map(|d| match d {
            CompletionData::Bytes(b) => MnResponse::decode(&b).map_err(|e| e.to_string()),
            other => Err(format!("{other:?}")),
        }) {
            Ok(Ok(MnResponse::Blocks(blocks))) => {
                self.pool_full = blocks.is_empty();
                self.next_spare_retry = Instant::now() + POOL_FULL_RETRY;
                self.spares.extend(blocks);
                if self.staging.needs_spare()
                    && let Some(b) = self.spares.pop_front()
                {
                    self.staging.set_spare(b);
                }
            }
            Ok(Ok(MnResponse::Error {
                code: crate::mn::proto::ErrorCode::NoSpace,
                ..
            })) => {
                // Ask again later: the merge frees blocks as keys are overwritten or deleted.
                self.pool_full = true;
                self.next_spare_retry = Instant::now() + POOL_FULL_RETRY;
            }
            Ok(Ok(other)) => self.fail_engine(format!(
                "the memory node answered {other:?} to a block request"
            )),
            Ok(Err(e)) => self.fail_engine(format!("a block request: {e}")),
            Err(e) => self.fail_engine(format!("a block request: {e}")),
        }
    }

    // Merge progress.

    fn maybe_poll_cursor(&mut self, now: Instant) {
        if (self.sealed.is_empty() && self.unmerged_log.is_empty())
            || self.cursor_poll.is_some()
            || now < self.next_cursor_poll
            || self.failed.is_some()
        {
            return;
        }
        // The chain's cursor and the merge position in the oldest block this core still holds
        // unmerged entries of (the cursor block, unless the merge has moved past it).
        let target = self
            .unmerged_log
            .front()
            .map_or(self.staging.head().0, |(loc, _)| loc.block);
        let batch = vec![
            (
                wr(WR_CURSOR, 0),
                Verb::Read {
                    remote: self.layout.chain_off(self.cfg.chain),
                    len: 8,
                },
            ),
            (
                wr(WR_CURSOR, 1),
                Verb::Read {
                    remote: self
                        .layout
                        .block_off(target)
                        .add(dinomo_pmem::pool::HEADER_MERGED),
                    len: 8,
                },
            ),
        ];
        match self.qp.post_batch(batch) {
            Ok(()) => {
                self.cursor_poll = Some(CursorPoll {
                    target,
                    cursor: None,
                    merged: None,
                    outstanding: 2,
                });
                self.stats.merge_polls += 1;
            }
            Err(e) => self.fail_engine(format!("posting merge-progress READs: {e}")),
        }
    }

    fn on_cursor(&mut self, which: u64, bytes: &[u8]) {
        let Some(poll) = self.cursor_poll.as_mut() else {
            return;
        };
        let word = <[u8; 8]>::try_from(bytes).map(u64::from_le_bytes).ok();
        if which == 0 {
            poll.cursor = word;
        } else {
            poll.merged = word;
        }
        poll.outstanding -= 1;
        if poll.outstanding > 0 {
            return;
        }
        let Some(poll) = self.cursor_poll.take() else {
            return;
        };
        self.next_cursor_poll = Instant::now() + MERGE_POLL_INTERVAL;
        let Some(cursor) = poll
            .cursor
            .and_then(|l| u32::try_from(l).ok())
            .and_then(BlockId::from_link)
        else {
            return;
        };
        // Sealed blocks are in chain order: those before the cursor are merged and unlinked.
        let mut released = Vec::new();
        if self.sealed.iter().any(|m| m.block == cursor) || self.staging.head().0 == cursor {
            while self.sealed.front().is_some_and(|m| m.block != cursor) {
                if let Some(m) = self.sealed.pop_front() {
                    released.push(m.block);
                }
            }
        }
        self.stats.sealed_released += released.len() as u64;
        // Entries are logged in chain order too: drop those the merge has folded into the index
        // (in released blocks, or below the merge position of the cursor block).
        let merged = if poll.target == cursor {
            poll.merged.unwrap_or(0)
        } else {
            0
        };
        while let Some((loc, _)) = self.unmerged_log.front() {
            let done = released.contains(&loc.block)
                || (loc.block == cursor && loc.offset + loc.len <= merged);
            if !done {
                break;
            }
            let Some((loc, key)) = self.unmerged_log.pop_front() else {
                break;
            };
            if self.unmerged.get(&key).is_some_and(|u| u.loc == loc) {
                self.unmerged.remove(&key);
            }
        }
    }

    // Completions.

    fn on_completion(&mut self, c: Completion) {
        let kind = c.wr.0 >> 60;
        let payload = c.wr.0 & ((1 << 60) - 1);
        match kind {
            WR_REQ => {
                let id = (payload & 0xFFFF_FFFF) as usize;
                let generation = (payload >> 32) as u32;
                let live = self
                    .reqs
                    .get(id)
                    .and_then(|r| r.as_ref())
                    .is_some_and(|r| r.generation == generation);
                if !live {
                    return;
                }
                let bytes = match c.result {
                    Ok(CompletionData::Bytes(b)) => b,
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        self.forget_remote_read(id);
                        let reason = format!("a READ failed: {e}");
                        self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
                        self.fail_engine(reason);
                        return;
                    }
                };
                match std::mem::replace(&mut self.req(id).state, State::Queued) {
                    State::Shortcut(sc) => self.shortcut_done(id, sc, &bytes),
                    State::Probe(mut probe) => {
                        let step = probe.feed(&bytes);
                        self.req(id).state = State::Probe(probe);
                        self.probe_step(id, step);
                    }
                    other => self.req(id).state = other,
                }
            }
            WR_COMMIT => self.on_commit_completion(c.result),
            WR_ALLOC => self.on_alloc(c.result),
            WR_CURSOR => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_cursor(payload & 1, &b),
                Ok(_) => self.on_cursor(payload & 1, &[]),
                Err(e) => self.fail_engine(format!("a merge-progress READ failed: {e}")),
            },
            WR_ROOT => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_root(&b),
                Ok(_) => self.refresh = Refresh::Idle,
                Err(e) => self.fail_engine(format!("a root READ failed: {e}")),
            },
            WR_HEADER => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_header((payload & 1) as usize, &b),
                Ok(_) => self.refresh = Refresh::Idle,
                Err(e) => self.fail_engine(format!("a header READ failed: {e}")),
            },
            _ => {}
        }
    }

    /// Stops the engine after a fabric error: every request still waiting fails, and every
    /// later one too, until the core is restarted (nothing is guessed about an unknown state).
    fn fail_engine(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason.clone());
        }
        let waiting: Vec<ReqId> = (0..self.reqs.len())
            .filter(|&id| {
                self.reqs[id].as_ref().is_some_and(|r| {
                    // Requests whose verbs are still outstanding finish when those complete.
                    !matches!(r.state, State::Shortcut(_) | State::Probe(_))
                        && !self
                            .inflight
                            .as_ref()
                            .is_some_and(|b| b.writers.contains(&id))
                })
            })
            .collect();
        self.pending_writes.clear();
        // Nothing more may start: the requests failed below must not admit the ones behind them.
        self.keys.clear();
        self.open_writers.clear();
        self.open_entries.clear();
        self.staging.abort();
        self.waiting_table.clear();
        for id in waiting {
            self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
        }
    }
}

/// The committed entry at `loc`, from the staging block's mirror or a sealed block's (a free
/// function over the two fields, so that callers may hold other fields of the engine mutably).
fn mirrored_entry<'a>(
    staging: &'a Staging,
    sealed: &'a VecDeque<Mirror>,
    loc: EntryLoc,
) -> Option<Entry<'a>> {
    let mirror = staging
        .mirror(loc.block)
        .or_else(|| sealed.iter().find(|m| m.block == loc.block))?;
    decode_entry(mirror.get(loc.offset, loc.len)?).ok()
}

fn unreachable_command() -> ! {
    // Only SET and DEL are ever queued as writes (see `begin` and `read_done`).
    panic!("a read command in the write queue")
}

/// Posts a READ and waits for it (start-up only).
fn read_blocking(
    qp: &mut dyn QueuePair,
    off: PoolOffset,
    len: u32,
    others: &mut Vec<Completion>,
) -> Result<Vec<u8>, VerbError> {
    let id = WrId(u64::MAX - 1);
    qp.post(id, Verb::Read { remote: off, len })
        .map_err(|e| VerbError::Refused(e.to_string()))?;
    match wait_for(qp, id, others).result? {
        CompletionData::Bytes(b) => Ok(b),
        other => Err(VerbError::Refused(format!(
            "a READ completed with {other:?}"
        ))),
    }
}

/// Sends an RPC to the MN and waits for its answer (start-up and control paths only).
pub(crate) fn rpc(
    qp: &mut dyn QueuePair,
    request: &MnRequest,
    others: &mut Vec<Completion>,
) -> Result<MnResponse, StartError> {
    let id = WrId(u64::MAX);
    qp.post(
        id,
        Verb::Rpc {
            request: request.encode(),
        },
    )
    .map_err(|e| VerbError::Refused(e.to_string()))?;
    let bytes = match wait_for(qp, id, others).result? {
        CompletionData::Bytes(b) => b,
        other => {
            return Err(StartError::Unexpected(format!(
                "an RPC completed with {other:?}"
            )));
        }
    };
    match MnResponse::decode(&bytes) {
        Ok(MnResponse::Error { code, message }) => {
            Err(StartError::Unexpected(format!("error {code:?}: {message}")))
        }
        Ok(response) => Ok(response),
        Err(e) => Err(StartError::Unexpected(format!("an undecodable reply: {e}"))),
    }
}
