//! Request admission and per-key ordering.
//!
//! Every request in flight lives in one slab ([`Requests`]); its index and a generation form
//! the work-request id of its READs, so a completion finds its request with an array access and
//! a completion for a finished request is recognised and dropped.
//!
//! Ordering: operations on one key take effect in arrival order. Each key with work in flight
//! has a [`KeyState`] with a queue. A write is admitted at once (writes never wait for reads); a
//! read waits until every write admitted before it has committed — so it never shows a write
//! that could still be lost, and never one that arrived after it; a read-then-write command (SET
//! NX/XX/GET, DEL) also holds the key until its own write is staged. A key's state is dropped as
//! soon as nothing of it is in flight, so a key without work in flight costs nothing here.

use std::collections::VecDeque;

use dinomo_control::slot_of;
use dinomo_index::probe::Probe;

use super::{Command, Engine, EngineError, Reply, Tag};
use crate::cache::{KeyMap, Shortcut};
use crate::kn::constants::ENGINE_REQUESTS_MAX;
use crate::kn::slab::Slab;
use crate::kn::stats::Outcome;

/// Largest key copy buffer an engine keeps between requests, in bytes.
const KEY_SCRATCH_KEEP: usize = 4096;

/// A request's index in the slab.
pub(super) type ReqId = usize;

/// Where a request is in its life.
#[derive(Debug)]
pub(super) enum State {
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

/// One request in flight.
#[derive(Debug)]
pub(super) struct Req {
    pub(super) tag: Tag,
    pub(super) generation: u32,
    pub(super) cmd: Command,
    pub(super) state: State,
    pub(super) outcome: Outcome,
    pub(super) round_trips: u32,
    pub(super) restarts: u32,
    /// A write of the key committed while this read was remote: do not fill the cache.
    pub(super) dirty: bool,
    /// Holds the key (read-then-write command).
    pub(super) locked: bool,
    /// An admitted write not yet committed: counted in its key's `writes`.
    pub(super) counted: bool,
    /// Probe the next table of a running resize.
    pub(super) use_next: bool,
    /// For read-then-write commands: the value the read found.
    pub(super) found: Option<Option<Vec<u8>>>,
}

/// The per-key order of a key with work in flight.
#[derive(Debug, Default)]
pub(super) struct KeyState {
    /// Admitted writes not yet committed.
    writes: u32,
    /// A read-then-write command holds the key.
    locked: bool,
    /// Requests waiting their turn, in arrival order.
    queue: VecDeque<ReqId>,
}

/// Every request in flight and the order of each key's requests.
#[derive(Debug, Default)]
pub(super) struct Requests {
    slab: Slab<Req>,
    generation: u32,
    /// Keys with work in flight.
    keys: KeyMap<Box<[u8]>, KeyState>,
    /// Requests with a remote READ of their key in flight (a write of the key that commits
    /// meanwhile marks them dirty).
    remote_reads: KeyMap<Box<[u8]>, Vec<ReqId>>,
    /// Admitted writes waiting to be staged, in order.
    pub(super) pending_writes: VecDeque<ReqId>,
    /// Reads waiting for room on the queue pair.
    pub(super) qp_waiters: VecDeque<ReqId>,
    /// A reused copy of the key being admitted.
    key_scratch: Vec<u8>,
}

impl Requests {
    /// Requests in flight.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// The live request `id`; a bug if it is not live.
    pub(super) fn get(&self, id: ReqId) -> &Req {
        self.slab.get(id).expect("a live request")
    }

    pub(super) fn get_mut(&mut self, id: ReqId) -> &mut Req {
        self.slab.get_mut(id).expect("a live request")
    }

    pub(super) fn is_live(&self, id: ReqId) -> bool {
        self.slab.get(id).is_some()
    }

    /// Whether `id` is live and of `generation` (a completion's request is still the same).
    pub(super) fn is_current(&self, id: ReqId, generation: u32) -> bool {
        self.slab
            .get(id)
            .is_some_and(|r| r.generation == generation)
    }

    /// Whether some request of `key` is in flight.
    pub(super) fn has_key(&self, key: &[u8]) -> bool {
        self.keys.contains_key(key)
    }

    /// Records that `id` reads its key remotely.
    pub(super) fn add_remote_read(&mut self, id: ReqId) {
        let key: Box<[u8]> = self.get(id).cmd.key().into();
        self.remote_reads.entry(key).or_default().push(id);
    }

    /// Removes `id` from its key's remote readers; returns whether a write of the key committed
    /// meanwhile.
    pub(super) fn forget_remote_read(&mut self, id: ReqId) -> bool {
        let req = self.slab.get(id).expect("a live request");
        let key = req.cmd.key();
        if let Some(list) = self.remote_reads.get_mut(key) {
            list.retain(|&r| r != id);
            if list.is_empty() {
                self.remote_reads.remove(key);
            }
        }
        req.dirty
    }

    /// A write of `key` committed: remote reads of it in flight must not fill the cache.
    pub(super) fn mark_dirty(&mut self, key: &[u8]) {
        if let Some(readers) = self.remote_reads.get(key) {
            for &r in readers {
                if let Some(req) = self.slab.get_mut(r) {
                    req.dirty = true;
                }
            }
        }
    }

    /// Request `id`'s write is staged: if it is a read-then-write command holding its key, it
    /// lets go of the key and counts as an uncommitted write of it. Returns whether it held the
    /// key (later commands of the key may then go; reads still wait for the commit).
    pub(super) fn unlock_as_write(&mut self, id: ReqId) -> bool {
        let req = self.slab.get_mut(id).expect("a live request");
        if !req.locked {
            return false;
        }
        req.locked = false;
        req.counted = true;
        let key = req.cmd.key();
        if let Some(st) = self.keys.get_mut(key) {
            st.locked = false;
            st.writes += 1;
        }
        true
    }

    /// Ids of the requests that satisfy `pred`.
    pub(super) fn ids_where(&self, mut pred: impl FnMut(ReqId, &Req) -> bool) -> Vec<ReqId> {
        self.slab
            .indexes()
            .filter(|&id| self.slab.get(id).is_some_and(|r| pred(id, r)))
            .collect()
    }

    /// Forgets every key's order: nothing queued behind may start any more.
    pub(super) fn clear_order(&mut self) {
        self.pending_writes.clear();
        self.keys.clear();
    }
}

impl Engine {
    /// Starts a command. Its reply comes out of a later [`Engine::poll`] (or this one).
    pub fn submit(&mut self, tag: Tag, cmd: Command) {
        if let Some(reason) = &self.failed {
            let reason = reason.clone();
            self.done
                .push((tag, Reply::Error(EngineError::Failed(reason))));
            return;
        }
        let slot = slot_of(cmd.key());
        if !self.owned.contains(slot) {
            self.stats.moved += 1;
            self.done.push((tag, Reply::Moved(slot)));
            return;
        }
        if self.requests.len() >= ENGINE_REQUESTS_MAX {
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
            && !self.requests.has_key(key)
            && let Some(value) = self.cache.get_value(key)
        {
            let reply = Reply::Value(Some(value.to_vec()));
            self.stats.ops[Outcome::Value as usize] += 1;
            self.done.push((tag, reply));
            return;
        }
        let requests = &mut self.requests;
        requests.generation = requests.generation.wrapping_add(1);
        let outcome = if cmd.is_write() {
            Outcome::Write
        } else {
            Outcome::Miss
        };
        let id = requests.slab.insert(Req {
            tag,
            generation: requests.generation,
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
        });
        self.begin(id);
    }

    /// Queues a new request behind its key's earlier ones and starts what may start.
    fn begin(&mut self, id: ReqId) {
        let requests = &mut self.requests;
        let key = requests.slab.get(id).expect("a live request").cmd.key();
        match requests.keys.get_mut(key) {
            Some(st) => st.queue.push_back(id),
            None => {
                let mut st = KeyState::default();
                st.queue.push_back(id);
                requests.keys.insert(key.into(), st);
            }
        }
        // `advance` may finish the request; it works on a copy of the key (a reused buffer:
        // `begin` is never re-entered).
        let mut scratch = std::mem::take(&mut requests.key_scratch);
        scratch.clear();
        scratch.extend_from_slice(key);
        self.advance(&scratch);
        // Kept for the next request unless an unusually long key grew it.
        if scratch.capacity() <= KEY_SCRATCH_KEEP {
            self.requests.key_scratch = scratch;
        }
    }

    /// Starts the requests at the front of the key's queue that may go now (see the module's
    /// ordering rules), and forgets the key once nothing of it is in flight.
    pub(super) fn advance(&mut self, key: &[u8]) {
        loop {
            let requests = &mut self.requests;
            let Some(st) = requests.keys.get_mut(key) else {
                return;
            };
            if st.locked {
                return;
            }
            let Some(&front) = st.queue.front() else {
                if st.writes == 0 {
                    requests.keys.remove(key);
                }
                return;
            };
            let cmd = &requests.slab.get(front).expect("a queued request").cmd;
            if cmd.is_write() && !cmd.reads_before_write() {
                st.queue.pop_front();
                st.writes += 1;
                let req = requests.slab.get_mut(front).expect("a queued request");
                req.counted = true;
                req.state = State::PendingWrite;
                requests.pending_writes.push_back(front);
                continue;
            }
            if st.writes > 0 {
                // Earlier writes are not committed yet: make them commit soon.
                self.batch.flush_requested = true;
                return;
            }
            st.queue.pop_front();
            if cmd.reads_before_write() {
                st.locked = true;
                requests.get_mut(front).locked = true;
                self.start_read(front);
                return;
            }
            self.start_read(front);
        }
    }

    /// Ends request `id` with `reply`, counts it, and lets its key's next requests go.
    pub(super) fn finish(&mut self, id: ReqId, reply: Reply) {
        let Some(req) = self.requests.slab.remove(id) else {
            return;
        };
        if matches!(reply, Reply::Error(_)) {
            self.stats.errors += 1;
        }
        self.stats.ops[req.outcome as usize] += 1;
        self.stats.round_trips[req.outcome as usize] += u64::from(req.round_trips);
        self.done.push((req.tag, reply));
        if req.locked || req.counted {
            let key = req.cmd.key();
            if let Some(st) = self.requests.keys.get_mut(key) {
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
}
