//! The read path: value in cache (0 round trips) → this core's unmerged log (0) → shortcut in
//! cache (1 READ) → index probe with the cached table header (bucket READ + entry READ).
//!
//! A shortcut whose entry was reclaimed fails its key and checksum check and falls back to the
//! index. A read answered from a remote READ fills the cache only if no write of the key
//! committed meanwhile (the request is then `dirty`). Every read in flight holds at most one
//! verb; past the queue pair's room for reads, reads wait for a completion.

use dinomo_index::key_hash;
use dinomo_index::probe::{Hit, Probe, Step};
use dinomo_pmem::entry::decode_entry;
use dinomo_pmem::{Op, PoolOffset};

use super::requests::{ReqId, State};
use super::{Command, Engine, EngineError, Reply, SetCond, WrKind, wr};
use crate::cache::{Lookup, Shortcut};
use crate::fabric::{QP_IN_FLIGHT_MAX, Verb, VerbKind};
use crate::kn::constants::{LOOKUP_RESTARTS_MAX, MISS_COST_WINDOW, QP_RESERVED};
use crate::kn::stats::Outcome;

/// The measured round trips of index misses, averaged over a window, for the cache's cost model.
#[derive(Debug, Default)]
pub(super) struct MissCost {
    round_trips: u64,
    misses: u64,
}

impl Engine {
    /// Whether the queue pair has room for another read's verb.
    pub(super) fn qp_has_read_room(&self) -> bool {
        self.qp.in_flight() + QP_RESERVED < QP_IN_FLIGHT_MAX
    }

    pub(super) fn start_read(&mut self, id: ReqId) {
        let req = self.requests.get(id);
        let is_write = req.cmd.is_write();
        let key = req.cmd.key();
        if let Some(value) = self.cache.get_value(key).map(<[u8]>::to_vec) {
            if !is_write {
                self.requests.get_mut(id).outcome = Outcome::Value;
            }
            self.read_done(id, Some(value));
            return;
        }
        if let Some(u) = self.chain.unmerged_entry(key) {
            let value = match u.op {
                Op::Delete => None,
                Op::Put => match self.chain.mirror_value(u.loc) {
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
                self.requests.get_mut(id).outcome = Outcome::Log;
            }
            self.read_done(id, value);
            return;
        }
        if !self.qp_has_read_room() {
            // Every read in flight holds at most one verb; wait for one to complete.
            self.requests.get_mut(id).state = State::WaitQp;
            self.requests.qp_waiters.push_back(id);
            return;
        }
        let lookup = match self.cache.get(self.requests.get(id).cmd.key()) {
            Lookup::Shortcut(sc) => Some(sc),
            _ => None,
        };
        match lookup {
            Some(sc) => {
                let req = self.requests.get_mut(id);
                if !is_write {
                    req.outcome = Outcome::Shortcut;
                }
                if matches!(req.cmd, Command::Exists { .. }) {
                    // A cached shortcut means the key exists; no need to fetch its value.
                    self.read_done(id, Some(Vec::new()));
                    return;
                }
                req.state = State::Shortcut(sc);
                self.requests.add_remote_read(id);
                self.post_req_read(id, PoolOffset(sc.entry_offset), sc.entry_len);
            }
            None => {
                if !is_write {
                    self.requests.get_mut(id).outcome = Outcome::Miss;
                }
                self.requests.add_remote_read(id);
                self.start_probe(id);
            }
        }
    }

    /// Starts (or restarts) the index probe of request `id` with the cached table header; waits
    /// for a refresh when none is cached.
    pub(super) fn start_probe(&mut self, id: ReqId) {
        let use_next = self.requests.get(id).use_next;
        let Some(table) = self.table.for_probe(use_next) else {
            self.requests.get_mut(id).state = State::WaitTable;
            self.table.waiting.push(id);
            self.start_refresh();
            return;
        };
        let key = self.requests.get(id).cmd.key().to_vec();
        let mut probe = Probe::new(table, &key, key_hash(&key), key_hash, self.cfg.value_hint);
        let step = probe.start();
        self.requests.get_mut(id).state = State::Probe(Box::new(probe));
        self.probe_step(id, step);
    }

    fn probe_step(&mut self, id: ReqId, step: Step) {
        match step {
            Step::Read { off, len } => self.post_req_read(id, off, len),
            Step::Hit(hit) => self.probe_done(id, Some(hit)),
            Step::Miss => self.probe_done(id, None),
            Step::Stale | Step::Moved | Step::Retry => {
                self.stats.lookup_restarts += 1;
                let req = self.requests.get_mut(id);
                req.restarts += 1;
                if req.restarts > LOOKUP_RESTARTS_MAX {
                    self.requests.forget_remote_read(id);
                    self.finish(id, Reply::Error(EngineError::Contended));
                    return;
                }
                match step {
                    Step::Retry => {}
                    Step::Moved => {
                        req.use_next = true;
                        // The next table's header may be unknown, or the resize may be over.
                        self.table.invalidate();
                    }
                    _ => {
                        req.use_next = false;
                        self.table.invalidate();
                    }
                }
                self.start_probe(id);
            }
        }
    }

    fn probe_done(&mut self, id: ReqId, hit: Option<Hit>) {
        let round_trips = u64::from(self.requests.get(id).round_trips);
        self.miss_cost.round_trips += round_trips;
        self.miss_cost.misses += 1;
        if self.miss_cost.misses >= MISS_COST_WINDOW {
            self.cache
                .set_miss_cost(self.miss_cost.round_trips as f64 / self.miss_cost.misses as f64);
            self.miss_cost = MissCost::default();
        }
        let dirty = self.requests.forget_remote_read(id);
        let value = hit.as_ref().map(|h| h.value().to_vec());
        if let Some(hit) = &hit {
            let key = self.requests.get(id).cmd.key();
            if !dirty && !self.chain.has_unmerged(key) {
                let sc = Shortcut {
                    entry_offset: hit.entry.get(),
                    entry_len: hit.entry_len() as u32,
                };
                self.cache.insert(key, hit.value(), sc);
            }
        }
        self.read_done(id, value);
    }

    fn shortcut_done(&mut self, id: ReqId, sc: Shortcut, bytes: &[u8]) {
        let key = self.requests.get(id).cmd.key();
        match decode_entry(bytes) {
            Ok(e) if e.key == key && e.op == Op::Put => {
                let value = e.value.to_vec();
                let dirty = self.requests.forget_remote_read(id);
                if !dirty {
                    self.cache
                        .shortcut_filled(self.requests.get(id).cmd.key(), &value, sc);
                }
                self.read_done(id, Some(value));
            }
            _ => {
                // The entry's block was reclaimed and reused: go through the index.
                self.stats.shortcut_stale += 1;
                let req = self.requests.get_mut(id);
                if !req.dirty {
                    self.cache.remove(req.cmd.key());
                }
                if !req.cmd.is_write() {
                    req.outcome = Outcome::Miss;
                }
                self.start_probe(id);
            }
        }
    }

    /// A read finished with `value` (None: the key is absent): answer it, or go on to the write
    /// of a read-then-write command.
    pub(super) fn read_done(&mut self, id: ReqId, value: Option<Vec<u8>>) {
        let req = self.requests.get_mut(id);
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
                    self.requests.pending_writes.push_back(id);
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
                    self.requests.pending_writes.push_back(id);
                } else {
                    self.stats.no_ops += 1;
                    self.finish(id, Reply::Int(0));
                }
            }
        }
    }

    fn post_req_read(&mut self, id: ReqId, off: PoolOffset, len: u32) {
        let req = self.requests.get(id);
        let (generation, outcome) = (req.generation, req.outcome);
        let verb = Verb::Read { remote: off, len };
        let id_word = (u64::from(generation) << 32) | id as u64;
        match self.qp.post(wr(WrKind::Request, id_word), verb) {
            Ok(()) => {
                self.requests.get_mut(id).round_trips += 1;
                self.stats
                    .count_verb(outcome, VerbKind::Read, u64::from(len));
            }
            Err(e) => {
                // A full queue pair cannot happen below the request limit; anything else is fatal.
                self.fail_engine(format!("posting a READ: {e}"));
            }
        }
    }

    /// The completion of a request's READ (`payload` names the request and its generation).
    pub(super) fn on_read(
        &mut self,
        payload: u64,
        result: Result<crate::fabric::CompletionData, crate::fabric::VerbError>,
    ) {
        let id = (payload & 0xFFFF_FFFF) as usize;
        let generation = (payload >> 32) as u32;
        if !self.requests.is_current(id, generation) {
            return;
        }
        let bytes = match result {
            Ok(crate::fabric::CompletionData::Bytes(b)) => b,
            Ok(_) => Vec::new(),
            Err(e) => {
                self.requests.forget_remote_read(id);
                let reason = format!("a READ failed: {e}");
                self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
                self.fail_engine(reason);
                return;
            }
        };
        match std::mem::replace(&mut self.requests.get_mut(id).state, State::Queued) {
            State::Shortcut(sc) => self.shortcut_done(id, sc, &bytes),
            State::Probe(mut probe) => {
                let step = probe.feed(&bytes);
                self.requests.get_mut(id).state = State::Probe(probe);
                self.probe_step(id, step);
            }
            other => self.requests.get_mut(id).state = other,
        }
    }

    /// Starts the reads that waited for room on the queue pair, while there is room.
    pub(super) fn resume_qp_waiters(&mut self) {
        while !self.requests.qp_waiters.is_empty() && self.qp_has_read_room() {
            if let Some(id) = self.requests.qp_waiters.pop_front()
                && self.requests.is_live(id)
            {
                self.start_read(id);
            }
        }
    }
}
