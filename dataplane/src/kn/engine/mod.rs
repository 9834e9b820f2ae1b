//! [`Engine`]: one KN worker core's key-value engine — the request state machines between a
//! client command and the memory node's pool (DESIGN.md §4).
//!
//! The engine owns everything of its core by value: its queue pair, its cache, its staging log
//! block and mirrors, its unmerged-entry map. It never blocks: [`Engine::submit`] starts a
//! request, [`Engine::poll`] reaps fabric completions and advances every request it can, and
//! finished requests come out as `(tag, reply)` pairs. Many requests are in flight at once.
//!
//! Each concern has its own file, with its state in its own struct:
//!
//! | file | concern | state |
//! | --- | --- | --- |
//! | [`command`] | what is asked and answered | — |
//! | `requests.rs` | admission and per-key ordering | `Requests` (the request slab, key queues) |
//! | `read.rs` | the read path: cache, own log, shortcut, index probe | `MissCost` |
//! | `table.rs` | the cached index table header and its refresh | `TableCache` |
//! | `commit.rs` | group commit of staged writes | `GroupCommit` |
//! | `chain.rs` | the chain: staging block, sealed mirrors, spare blocks, merge progress | `Chain` |
//! | `attach.rs` | start-up against the memory node | — |
//!
//! This file holds the engine itself, its poll loop, the routing of fabric completions to their
//! concern by work-request kind, and the failure rule: after a fabric error the engine stops
//! taking work rather than guess at an unknown state.

mod attach;
mod chain;
pub mod command;
mod commit;
mod config;
mod read;
mod requests;
mod table;

use std::time::Instant;

use dinomo_control::slot_of;
use dinomo_pmem::Layout;

pub use command::{Command, EngineError, Reply, SetCond, Tag};
pub use config::{EngineConfig, StartError};

use crate::cache::Cache;
use crate::fabric::{Completion, CompletionData, QueuePair, WrId};
use crate::kn::constants::POLL_BATCH;
use crate::kn::routing::SlotSet;
use crate::kn::stats::EngineStats;
use chain::Chain;
use commit::GroupCommit;
use read::MissCost;
use requests::{ReqId, Requests, State};
use table::TableCache;

/// What a work request of the engine is for: the top 4 bits of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrKind {
    /// A READ of a request (payload: generation and request id).
    Request = 1,
    /// A WRITE of a batch commit (payload: batch id).
    Commit = 2,
    /// The spare-block RPC.
    Alloc = 3,
    /// A merge-progress READ (payload: which word).
    Cursor = 4,
    /// The root READ of a table refresh.
    Root = 5,
    /// A table header READ (payload: current 0, next 1).
    Header = 6,
}

const WR_PAYLOAD_BITS: u32 = 60;
const WR_PAYLOAD_MASK: u64 = (1 << WR_PAYLOAD_BITS) - 1;

impl WrKind {
    const ALL: [WrKind; 6] = [
        WrKind::Request,
        WrKind::Commit,
        WrKind::Alloc,
        WrKind::Cursor,
        WrKind::Root,
        WrKind::Header,
    ];

    /// The kind of an engine work request (`None` for an id the engine did not post).
    fn of(wr: WrId) -> Option<WrKind> {
        let bits = wr.0 >> WR_PAYLOAD_BITS;
        WrKind::ALL.into_iter().find(|&k| k as u64 == bits)
    }
}

fn wr(kind: WrKind, payload: u64) -> WrId {
    WrId(((kind as u64) << WR_PAYLOAD_BITS) | (payload & WR_PAYLOAD_MASK))
}

/// One core's engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    qp: Box<dyn QueuePair>,
    layout: Layout,
    boot: u64,
    cache: Cache,
    requests: Requests,
    table: TableCache,
    batch: GroupCommit,
    chain: Chain,
    failed: Option<String>,
    /// Finished requests not yet handed out by `poll`.
    done: Vec<(Tag, Reply)>,
    /// The completions of one reap (a reused buffer).
    completions: Vec<Completion>,
    stats: EngineStats,
    miss_cost: MissCost,
    /// The slots this core owns: a request for any other is answered [`Reply::Moved`].
    owned: SlotSet,
}

impl Engine {
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
        self.requests.len()
    }
    /// Keys whose newest entry is committed in this core's log but not yet merged into the index.
    pub fn unmerged_keys(&self) -> usize {
        self.chain.unmerged_keys()
    }
    /// Sealed blocks waiting for the merge.
    pub fn sealed_blocks(&self) -> usize {
        self.chain.sealed.len()
    }
    /// The fabric error that stopped this core, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }
    /// Whether the engine has nothing to do until a new request arrives.
    pub fn is_idle(&self) -> bool {
        self.requests.len() == 0 && self.qp.in_flight() == 0 && !self.batch.has_open()
    }
    /// When the engine next needs a poll even without new input (a delayed completion, a batch
    /// deadline, a merge-progress check).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let candidates = [
            self.qp.next_due(),
            self.batch.deadline(self.cfg.batch_delay),
            self.chain
                .awaits_merge()
                .then_some(self.chain.next_cursor_poll),
        ];
        candidates.into_iter().flatten().min()
    }

    /// The slots this core owns.
    pub fn owned(&self) -> &SlotSet {
        &self.owned
    }

    /// From now on this core owns `slots` (it owned every slot since [`Engine::attach`]):
    /// requests for others are answered [`Reply::Moved`], and the cache forgets their keys.
    /// Requests already admitted finish as they are; moving a slot safely between owners is
    /// the handover of DESIGN.md §5, which waits for them and merges first.
    pub fn set_owned(&mut self, slots: SlotSet) {
        if !self.owned.is_subset(&slots) {
            self.cache.retain(|key| slots.contains(slot_of(key)));
        }
        self.owned = slots;
    }

    /// The caller has no more input for now: commit staged writes without waiting for more.
    pub fn flush_now(&mut self) {
        self.batch.flush_requested = true;
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
        self.resume_qp_waiters();
        let now = Instant::now();
        self.stage_pending();
        self.maybe_commit(now);
        self.maybe_request_spares();
        self.maybe_poll_cursor(now);
        if !self.done.is_empty() {
            progressed = true;
            out.append(&mut self.done);
        }
        progressed
    }

    /// Routes a completion to its concern by the kind in its work-request id.
    fn on_completion(&mut self, c: Completion) {
        let payload = c.wr.0 & WR_PAYLOAD_MASK;
        let Some(kind) = WrKind::of(c.wr) else {
            return;
        };
        match kind {
            WrKind::Request => self.on_read(payload, c.result),
            WrKind::Commit => self.on_commit_completion(c.result),
            WrKind::Alloc => self.on_alloc(c.result),
            WrKind::Cursor => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_cursor(payload & 1, &b),
                Ok(_) => self.on_cursor(payload & 1, &[]),
                Err(e) => self.fail_engine(format!("a merge-progress READ failed: {e}")),
            },
            WrKind::Root => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_root(&b),
                Ok(_) => self.table.abandon(),
                Err(e) => self.fail_engine(format!("a root READ failed: {e}")),
            },
            WrKind::Header => match c.result {
                Ok(CompletionData::Bytes(b)) => self.on_header((payload & 1) as usize, &b),
                Ok(_) => self.table.abandon(),
                Err(e) => self.fail_engine(format!("a header READ failed: {e}")),
            },
        }
    }

    /// Stops the engine after a fabric error: every request still waiting fails, and every
    /// later one too, until the core is restarted (nothing is guessed about an unknown state).
    fn fail_engine(&mut self, reason: String) {
        if self.failed.is_none() {
            self.failed = Some(reason.clone());
        }
        let batch = &self.batch;
        let waiting: Vec<ReqId> = self.requests.ids_where(|id, r| {
            // Requests whose verbs are still outstanding finish when those complete.
            !matches!(r.state, State::Shortcut(_) | State::Probe(_)) && !batch.in_flight_writer(id)
        });
        // Nothing more may start: the requests failed below must not admit the ones behind them.
        self.requests.clear_order();
        self.batch.drop_open();
        self.chain.staging.abort();
        self.table.waiting.clear();
        for id in waiting {
            self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
        }
    }
}
