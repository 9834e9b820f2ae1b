//! Group commit: writes are appended to the staging block; one batch is in flight at a time,
//! and writes that arrive meanwhile wait and form the next batch. A batch is written with one
//! doorbell — the entries, then the tail word(s) — and only when its last WRITE completes is
//! every write in it acknowledged, the cache updated, and the unmerged map pointed at the new
//! entries (FORMAT.md §6: the head block's tail word is the commit point).
//!
//! A batch commits when the worker has drained its input (`flush_now`), when it is full, or when
//! its oldest write has waited `batch_delay`. New blocks come from the MN by RPC, asked for as
//! soon as the spare is used; sealed blocks stay mirrored until the merge unlinks them, and with
//! too many of them writes wait.

use std::sync::Arc;
use std::time::Instant;

use dinomo_pmem::staging::EntryLoc;
use dinomo_pmem::{AppendError, Op, Version};

use super::requests::{ReqId, State};
use super::{Command, Engine, EngineError, Reply, WrKind, wr};
use crate::cache::Shortcut;
use crate::config::Durability;
use crate::fabric::{CompletionData, Verb, VerbError, VerbKind};
use crate::kn::constants::UNMERGED_BLOCKS_MAX;
use crate::kn::stats::Outcome;

#[derive(Debug)]
struct BatchEntry {
    key: Arc<[u8]>,
    loc: EntryLoc,
    op: Op,
}

/// The batch whose WRITEs are in flight.
#[derive(Debug)]
struct Inflight {
    writers: Vec<ReqId>,
    entries: Vec<BatchEntry>,
    outstanding: usize,
    failure: Option<VerbError>,
}

/// The open batch (staged, not yet posted) and the one in flight.
#[derive(Debug)]
pub(super) struct GroupCommit {
    /// Id of the open batch, in its WRITEs' work-request ids.
    open_batch: u64,
    open_writers: Vec<ReqId>,
    open_entries: Vec<BatchEntry>,
    /// The buffers of the last committed batch, cleared, for the next batch but one.
    spare_writers: Vec<ReqId>,
    spare_entries: Vec<BatchEntry>,
    open_since: Option<Instant>,
    /// Commit the open batch at the next poll, without waiting for more writes.
    pub(super) flush_requested: bool,
    inflight: Option<Inflight>,
}

impl GroupCommit {
    pub(super) fn new() -> GroupCommit {
        GroupCommit {
            open_batch: 1,
            open_writers: Vec::new(),
            open_entries: Vec::new(),
            spare_writers: Vec::new(),
            spare_entries: Vec::new(),
            open_since: None,
            flush_requested: false,
            inflight: None,
        }
    }

    /// Whether writes are staged and not yet posted.
    pub(super) fn has_open(&self) -> bool {
        !self.open_entries.is_empty()
    }

    /// When the open batch's delay runs out, if a batch is open.
    pub(super) fn deadline(&self, delay: std::time::Duration) -> Option<Instant> {
        self.open_since.map(|since| since + delay)
    }

    /// Whether `id` is a writer of the batch in flight.
    pub(super) fn in_flight_writer(&self, id: ReqId) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|b| b.writers.contains(&id))
    }

    /// Forgets the open batch (after a failure; its writers are finished by the caller).
    pub(super) fn drop_open(&mut self) {
        self.open_writers.clear();
        self.open_entries.clear();
    }
}

impl Engine {
    /// Commits the open batch if it should go now and nothing is in flight.
    pub(super) fn maybe_commit(&mut self, now: Instant) {
        let batch = &self.batch;
        if batch.inflight.is_none() && batch.has_open() {
            let due = batch
                .deadline(self.cfg.batch_delay)
                .is_some_and(|at| now >= at);
            if batch.flush_requested || due {
                self.commit();
            }
        }
        if !self.batch.has_open() {
            self.batch.flush_requested = false;
        }
    }

    /// Stages waiting writes, in order, while there is room; stops at the first that must wait.
    pub(super) fn stage_pending(&mut self) {
        while let Some(&id) = self.requests.pending_writes.front() {
            if self.batch.inflight.is_some() {
                return;
            }
            if self.chain.sealed.len() >= UNMERGED_BLOCKS_MAX {
                self.stats.backpressure_waits += 1;
                return;
            }
            let version = Version {
                epoch: self.cfg.epoch,
                seq: self.chain.next_seq,
            };
            let (op, key, value): (Op, &[u8], &[u8]) = match &self.requests.get(id).cmd {
                Command::Set { key, value, .. } => (Op::Put, key, value),
                Command::Del { key } => (Op::Delete, key, &[]),
                _ => unreachable_command(),
            };
            match self.chain.staging.append(op, key, value, version) {
                Ok(loc) => {
                    let key: Arc<[u8]> = key.into();
                    self.requests.pending_writes.pop_front();
                    self.chain.next_seq += 1;
                    let batch = &mut self.batch;
                    batch.open_entries.push(BatchEntry {
                        key: key.clone(),
                        loc,
                        op,
                    });
                    batch.open_writers.push(id);
                    batch.open_since.get_or_insert_with(Instant::now);
                    self.requests.get_mut(id).state = State::WaitBatch;
                    if self.requests.unlock_as_write(id) {
                        // A read-then-write command is now a plain write in a batch: later
                        // commands of the key may go (reads still wait for its commit).
                        self.advance(&key);
                    }
                }
                Err(AppendError::NeedBlock) => match self.chain.spares.pop_front() {
                    Some(b) => self.chain.staging.set_spare(b),
                    None => {
                        if self.chain.out_of_blocks() {
                            self.requests.pending_writes.pop_front();
                            self.finish(id, Reply::Error(EngineError::PoolFull));
                            continue;
                        }
                        self.maybe_request_spares();
                        return;
                    }
                },
                Err(AppendError::BatchFull) => {
                    self.batch.flush_requested = true;
                    return;
                }
                Err(e @ (AppendError::KeyTooLong(_) | AppendError::EntryTooLarge { .. })) => {
                    self.requests.pending_writes.pop_front();
                    self.finish(id, Reply::Error(EngineError::TooLarge(e.to_string())));
                }
            }
        }
    }

    /// Posts the open batch as one doorbell: its entries, then the tail words.
    fn commit(&mut self) {
        let plan = self.chain.staging.plan(&self.layout);
        if plan.tails.is_empty() {
            return;
        }
        let persist = self.cfg.durability == Durability::Flush;
        let id = self.batch.open_batch;
        let mut verbs = Vec::with_capacity(plan.writes.len() + plan.tails.len());
        let mut bytes = 0u64;
        for w in &plan.writes {
            let data = self.chain.staging.bytes(w).to_vec();
            bytes += data.len() as u64;
            verbs.push((
                wr(WrKind::Commit, id),
                Verb::Write {
                    remote: w.to,
                    data,
                    persist,
                },
            ));
        }
        for &(at, word) in &plan.tails {
            verbs.push((
                wr(WrKind::Commit, id),
                Verb::Write {
                    remote: at,
                    data: word.to_le_bytes().to_vec(),
                    persist,
                },
            ));
        }
        let count = verbs.len();
        if let Err(e) = self.qp.post_batch(verbs) {
            self.fail_engine(format!("posting a batch: {e}"));
            return;
        }
        let batch = &mut self.batch;
        self.stats.batches += 1;
        self.stats.batch_entries += batch.open_entries.len() as u64;
        self.stats.batch_bytes += bytes;
        self.stats.round_trips[Outcome::Write as usize] += 1;
        self.stats.verbs[Outcome::Write as usize][VerbKind::Write as usize] += count as u64;
        self.stats.bytes[Outcome::Write as usize][VerbKind::Write as usize] +=
            bytes + 8 * plan.tails.len() as u64;
        let writers = std::mem::replace(
            &mut batch.open_writers,
            std::mem::take(&mut batch.spare_writers),
        );
        let entries = std::mem::replace(
            &mut batch.open_entries,
            std::mem::take(&mut batch.spare_entries),
        );
        for &id in &writers {
            self.requests.get_mut(id).state = State::WaitBatch;
        }
        batch.inflight = Some(Inflight {
            writers,
            entries,
            outstanding: count,
            failure: None,
        });
        batch.open_batch += 1;
        batch.open_since = None;
        batch.flush_requested = false;
    }

    /// One WRITE of the batch in flight completed; after its last, the batch is committed (or
    /// failed) and its writers are answered.
    pub(super) fn on_commit_completion(&mut self, result: Result<CompletionData, VerbError>) {
        let Some(inflight) = self.batch.inflight.as_mut() else {
            return;
        };
        inflight.outstanding -= 1;
        if let Err(e) = result {
            inflight.failure.get_or_insert(e);
        }
        if inflight.outstanding > 0 {
            return;
        }
        let Some(committed) = self.batch.inflight.take() else {
            return;
        };
        if let Some(e) = committed.failure {
            self.chain.staging.abort();
            let reason = format!("a batch commit failed: {e}");
            for id in committed.writers {
                self.finish(id, Reply::Error(EngineError::Failed(reason.clone())));
            }
            self.fail_engine(reason);
            return;
        }
        if let Some(sealed) = self.chain.staging.committed() {
            self.chain.sealed.push_back(sealed);
            self.stats.block_switches += 1;
            self.chain.next_cursor_poll = Instant::now();
        }
        let Inflight {
            mut writers,
            mut entries,
            ..
        } = committed;
        for e in entries.drain(..) {
            match e.op {
                Op::Put => {
                    let shortcut = Shortcut {
                        entry_offset: e.loc.pool_offset(&self.layout).get(),
                        entry_len: e.loc.len as u32,
                    };
                    if let Some(entry) = self.chain.mirrored_entry(e.loc) {
                        self.cache.insert(&e.key, entry.value, shortcut);
                    }
                }
                Op::Delete => {
                    self.cache.remove(&e.key);
                }
            }
            self.requests.mark_dirty(&e.key);
            self.chain.note_committed(e.key, e.loc, e.op);
        }
        if self.batch.spare_entries.capacity() < entries.capacity() {
            self.batch.spare_entries = entries;
        }
        for id in writers.drain(..) {
            let req = self.requests.get_mut(id);
            let reply = match &req.cmd {
                Command::Set { get: true, .. } => Reply::Value(req.found.take().flatten()),
                Command::Set { .. } => Reply::Ok,
                Command::Del { .. } => Reply::Int(1),
                _ => unreachable_command(),
            };
            // Finishing a writer lets the reads waiting for it go (they see the cache now).
            self.finish(id, reply);
        }
        if self.batch.spare_writers.capacity() < writers.capacity() {
            self.batch.spare_writers = writers;
        }
    }
}

fn unreachable_command() -> ! {
    // Only SET and DEL are ever queued as writes (see `advance` and `read_done`).
    panic!("a read command in the write queue")
}
