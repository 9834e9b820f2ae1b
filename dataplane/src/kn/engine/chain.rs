//! This core's log chain as the engine sees it: the staging block, the sealed blocks it still
//! mirrors, the committed entries not yet known to be merged, the spare blocks, and the polling
//! of the MN's merge progress.
//!
//! Invariants:
//! - `sealed` holds the committed blocks the merge has not unlinked yet, oldest first; at
//!   [`UNMERGED_BLOCKS_MAX`] writes wait (backpressure).
//! - `unmerged_log` lists every committed entry not yet known to be merged, in chain order, and
//!   `unmerged` maps a key to its newest such entry; both shrink only when a merge-progress poll
//!   shows the merge past an entry, so a read never goes to the index for a key whose newest
//!   entry the index may not have yet.
//! - At most one spare-block RPC and one merge-progress poll are in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use dinomo_pmem::entry::decode_entry;
use dinomo_pmem::staging::{EntryLoc, Mirror};
use dinomo_pmem::{BlockId, Entry, Op, Staging};

use super::{Engine, WrKind, wr};
use crate::cache::KeyMap;
use crate::fabric::{CompletionData, Verb, VerbError, VerbKind};
use crate::kn::constants::{MERGE_POLL_INTERVAL, POOL_FULL_RETRY, SPARES_PER_RPC};
use crate::kn::stats::Outcome;
use crate::mn::proto::{ErrorCode, Request as MnRequest, Response as MnResponse};

#[cfg(doc)]
use crate::kn::constants::UNMERGED_BLOCKS_MAX;

/// The newest committed, unmerged entry of a key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unmerged {
    pub(super) loc: EntryLoc,
    pub(super) op: Op,
}

/// A merge-progress check in flight: the chain's cursor and the merge position of `target`.
#[derive(Debug)]
struct CursorPoll {
    target: BlockId,
    cursor: Option<u64>,
    merged: Option<u64>,
    outstanding: usize,
}

/// The engine's view of its chain.
#[derive(Debug)]
pub(super) struct Chain {
    pub(super) staging: Staging,
    pub(super) next_seq: u64,
    /// Sealed, committed blocks not yet unlinked by the merge, oldest first.
    pub(super) sealed: VecDeque<Mirror>,
    unmerged: KeyMap<Arc<[u8]>, Unmerged>,
    /// Every committed entry not yet known to be merged, in chain order, with its key.
    unmerged_log: VecDeque<(EntryLoc, Arc<[u8]>)>,
    pub(super) spares: VecDeque<BlockId>,
    spare_rpc: bool,
    pub(super) pool_full: bool,
    next_spare_retry: Instant,
    cursor_poll: Option<CursorPoll>,
    pub(super) next_cursor_poll: Instant,
}

impl Chain {
    pub(super) fn new(staging: Staging, next_seq: u64) -> Chain {
        Chain {
            staging,
            next_seq,
            sealed: VecDeque::new(),
            unmerged: KeyMap::default(),
            unmerged_log: VecDeque::new(),
            spares: VecDeque::new(),
            spare_rpc: false,
            pool_full: false,
            next_spare_retry: Instant::now(),
            cursor_poll: None,
            next_cursor_poll: Instant::now(),
        }
    }

    pub(super) fn unmerged_entry(&self, key: &[u8]) -> Option<Unmerged> {
        self.unmerged.get(key).copied()
    }

    pub(super) fn has_unmerged(&self, key: &[u8]) -> bool {
        self.unmerged.contains_key(key)
    }

    /// Keys whose newest entry is committed but not known to be merged.
    pub(super) fn unmerged_keys(&self) -> usize {
        self.unmerged.len()
    }

    /// Whether something committed waits for the merge (the engine then polls its progress).
    pub(super) fn awaits_merge(&self) -> bool {
        !self.sealed.is_empty() || !self.unmerged_log.is_empty()
    }

    /// A committed entry of `key` at `loc`: the key's newest until the merge passes it.
    pub(super) fn note_committed(&mut self, key: Arc<[u8]>, loc: EntryLoc, op: Op) {
        self.unmerged.insert(key.clone(), Unmerged { loc, op });
        self.unmerged_log.push_back((loc, key));
    }

    /// Whether the staging block wants a spare and no request for one is in flight.
    pub(super) fn may_ask_for_spare(&self) -> bool {
        !self.spare_rpc && self.spares.is_empty() && self.staging.needs_spare()
    }

    /// Whether a write that needs a new block must fail: the pool had none, and no request for
    /// one is in flight.
    pub(super) fn out_of_blocks(&self) -> bool {
        self.pool_full && !self.spare_rpc
    }

    /// The value of a committed entry from this core's mirrors.
    pub(super) fn mirror_value(&self, loc: EntryLoc) -> Option<Vec<u8>> {
        self.mirrored_entry(loc).map(|e| e.value.to_vec())
    }

    /// The committed entry at `loc`, from the staging block's mirror or a sealed block's.
    pub(super) fn mirrored_entry(&self, loc: EntryLoc) -> Option<Entry<'_>> {
        let mirror = self
            .staging
            .mirror(loc.block)
            .or_else(|| self.sealed.iter().find(|m| m.block == loc.block))?;
        decode_entry(mirror.get(loc.offset, loc.len)?).ok()
    }
}

impl Engine {
    pub(super) fn maybe_request_spares(&mut self) {
        if !self.chain.may_ask_for_spare() || self.failed.is_some() {
            return;
        }
        if self.chain.pool_full && Instant::now() < self.chain.next_spare_retry {
            return;
        }
        let request = MnRequest::AllocBlocks {
            chain: self.cfg.chain,
            count: SPARES_PER_RPC,
        }
        .encode();
        self.stats
            .count_verb(Outcome::Write, VerbKind::Rpc, request.len() as u64);
        match self.qp.post(wr(WrKind::Alloc, 0), Verb::Rpc { request }) {
            Ok(()) => {
                self.chain.spare_rpc = true;
                self.stats.spare_rpcs += 1;
            }
            Err(e) => self.fail_engine(format!("posting a block request: {e}")),
        }
    }

    pub(super) fn on_alloc(&mut self, result: Result<CompletionData, VerbError>) {
        let chain = &mut self.chain;
        chain.spare_rpc = false;
        match result.map(|d| match d {
            CompletionData::Bytes(b) => MnResponse::decode(&b).map_err(|e| e.to_string()),
            other => Err(format!("{other:?}")),
        }) {
            Ok(Ok(MnResponse::Blocks(blocks))) => {
                chain.pool_full = blocks.is_empty();
                chain.next_spare_retry = Instant::now() + POOL_FULL_RETRY;
                chain.spares.extend(blocks);
                if chain.staging.needs_spare()
                    && let Some(b) = chain.spares.pop_front()
                {
                    chain.staging.set_spare(b);
                }
            }
            Ok(Ok(MnResponse::Error {
                code: ErrorCode::NoSpace,
                ..
            })) => {
                // Ask again later: the merge frees blocks as keys are overwritten or deleted.
                chain.pool_full = true;
                chain.next_spare_retry = Instant::now() + POOL_FULL_RETRY;
            }
            Ok(Ok(other)) => self.fail_engine(format!(
                "the memory node answered {other:?} to a block request"
            )),
            Ok(Err(e)) => self.fail_engine(format!("a block request: {e}")),
            Err(e) => self.fail_engine(format!("a block request: {e}")),
        }
    }

    pub(super) fn maybe_poll_cursor(&mut self, now: Instant) {
        let chain = &self.chain;
        if !chain.awaits_merge()
            || chain.cursor_poll.is_some()
            || now < chain.next_cursor_poll
            || self.failed.is_some()
        {
            return;
        }
        // The chain's cursor and the merge position in the oldest block this core still holds
        // unmerged entries of (the cursor block, unless the merge has moved past it).
        let target = chain
            .unmerged_log
            .front()
            .map_or(chain.staging.head().0, |(loc, _)| loc.block);
        let batch = vec![
            (
                wr(WrKind::Cursor, 0),
                Verb::Read {
                    remote: self.layout.chain_off(self.cfg.chain),
                    len: 8,
                },
            ),
            (
                wr(WrKind::Cursor, 1),
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
                self.chain.cursor_poll = Some(CursorPoll {
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

    pub(super) fn on_cursor(&mut self, which: u64, bytes: &[u8]) {
        let chain = &mut self.chain;
        let Some(poll) = chain.cursor_poll.as_mut() else {
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
        let Some(poll) = chain.cursor_poll.take() else {
            return;
        };
        chain.next_cursor_poll = Instant::now() + MERGE_POLL_INTERVAL;
        let Some(cursor) = poll
            .cursor
            .and_then(|l| u32::try_from(l).ok())
            .and_then(BlockId::from_link)
        else {
            return;
        };
        // Sealed blocks are in chain order: those before the cursor are merged and unlinked.
        let mut released = Vec::new();
        if chain.sealed.iter().any(|m| m.block == cursor) || chain.staging.head().0 == cursor {
            while chain.sealed.front().is_some_and(|m| m.block != cursor) {
                if let Some(m) = chain.sealed.pop_front() {
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
        while let Some((loc, _)) = chain.unmerged_log.front() {
            let done = released.contains(&loc.block)
                || (loc.block == cursor && loc.offset + loc.len <= merged);
            if !done {
                break;
            }
            let Some((loc, key)) = chain.unmerged_log.pop_front() else {
                break;
            };
            if chain.unmerged.get(&key).is_some_and(|u| u.loc == loc) {
                chain.unmerged.remove(&key);
            }
        }
    }
}
