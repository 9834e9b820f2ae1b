//! The fabric: one-sided verbs (READ, WRITE, CAS, FAA) from a KN worker core to the memory
//! node's pool, plus a small two-sided RPC channel for what needs the MN's CPU.
//!
//! A [`QueuePair`] belongs to one worker core and is never shared (as RDMA queue pairs are not).
//! Work requests are posted without blocking, singly or as one doorbell batch; completions are
//! reaped by polling, each carrying its work-request id, a status and, for READ, CAS, FAA and RPC,
//! its result. Verbs posted on one queue pair execute in order (a later WRITE never overtakes an
//! earlier one), which the log's batch commit relies on; their completions may be reaped in any
//! order. At most [`constants::QP_IN_FLIGHT_MAX`] requests are outstanding per queue pair.
//!
//! Backends: [`local`] (the pool mapped in this process, with optional injected round-trip delay
//! and bandwidth cap), [`tcp`] (a verbs server on the MN, one connection per queue pair) and, with
//! the `rdma` cargo feature, `rdma` (RC queue pairs connected through a small TCP exchange). All
//! of them pass the same conformance suite (`dataplane/tests/fabric_conformance.rs`).
//!
//! This module holds the traits and the initiator (KN) side of each backend, with what both sides
//! of a backend share (the tcp frame codec, the rdma device code and QP exchange). The serving
//! side lives with the memory node in [`crate::mn`]: verb execution on the pool
//! ([`crate::mn::verbs`], which the local fabric calls in this process), the RPC thread pool
//! ([`crate::mn::rpc_pool`], which calls an [`RpcHandler`]), the tcp verbs server
//! ([`crate::mn::tcp_server`]) and the rdma server (`mn::rdma_server`). There every verb is
//! checked against the registered region (the whole pool) before it runs: bounds, and 8-byte
//! alignment for CAS and FAA. A bad verb completes with an error status; it never touches memory
//! outside the region.

pub mod constants;
pub mod local;
#[cfg(feature = "rdma")]
pub mod rdma;
pub mod tcp;

use std::fmt;

use dinomo_pmem::PoolOffset;

pub use constants::*;

/// A work-request id, chosen by the poster and returned in its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WrId(pub u64);

/// One connection (queue pair) as the serving side of a fabric names it: unique among the
/// connections of one memory-node process, never reused. The memory node binds it to the
/// incarnation of the KN that opened it (see `mn::sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// A peer id no other connection of this process has had: every fabric and server of a
    /// process draws from one counter, so an MN that serves several fabrics never sees two
    /// connections with one id.
    pub fn fresh() -> PeerId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PeerId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// One work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Read `len` bytes at `remote`.
    Read { remote: PoolOffset, len: u32 },
    /// Write `data` at `remote`; with `persist`, the bytes are persistent (flushed to media) when
    /// the completion arrives.
    Write {
        remote: PoolOffset,
        data: Vec<u8>,
        persist: bool,
    },
    /// Compare-and-swap the 8-aligned word at `remote`; completes with the old value.
    Cas {
        remote: PoolOffset,
        expected: u64,
        new: u64,
    },
    /// Fetch-and-add on the 8-aligned word at `remote`; completes with the old value.
    Faa { remote: PoolOffset, add: u64 },
    /// A two-sided request to the MN's CPU; completes with the reply bytes.
    Rpc { request: Vec<u8> },
}

impl Verb {
    pub fn kind(&self) -> VerbKind {
        match self {
            Verb::Read { .. } => VerbKind::Read,
            Verb::Write { .. } => VerbKind::Write,
            Verb::Cas { .. } => VerbKind::Cas,
            Verb::Faa { .. } => VerbKind::Faa,
            Verb::Rpc { .. } => VerbKind::Rpc,
        }
    }
}

/// The kinds of verbs, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerbKind {
    Read = 0,
    Write = 1,
    Cas = 2,
    Faa = 3,
    Rpc = 4,
}

impl VerbKind {
    pub const ALL: [VerbKind; 5] = [
        VerbKind::Read,
        VerbKind::Write,
        VerbKind::Cas,
        VerbKind::Faa,
        VerbKind::Rpc,
    ];
    pub fn name(self) -> &'static str {
        match self {
            VerbKind::Read => "read",
            VerbKind::Write => "write",
            VerbKind::Cas => "cas",
            VerbKind::Faa => "faa",
            VerbKind::Rpc => "rpc",
        }
    }
}

/// Why a work request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerbError {
    #[error("access [{offset:#x}, +{len}) is outside the registered region of {region} bytes")]
    OutOfBounds { offset: u64, len: u64, region: u64 },
    #[error("atomic at {0:#x} is not 8-byte aligned")]
    Misaligned(u64),
    #[error("request of {0} bytes exceeds the limit")]
    TooLarge(u64),
    #[error("the memory node refused the request: {0}")]
    Refused(String),
    #[error("the connection to the memory node is lost: {0}")]
    Disconnected(String),
}

/// What a completed work request returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionData {
    /// WRITE: nothing.
    None,
    /// READ: the bytes; RPC: the reply.
    Bytes(Vec<u8>),
    /// CAS and FAA: the word's old value.
    Word(u64),
}

/// A completion: the request's id and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub wr: WrId,
    pub kind: VerbKind,
    pub result: Result<CompletionData, VerbError>,
}

/// Why a post was refused (nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("{in_flight} requests are in flight, the queue pair's limit")]
    QueueFull { in_flight: usize },
    #[error(transparent)]
    Invalid(#[from] VerbError),
    #[error("the queue pair is disconnected: {0}")]
    Disconnected(String),
}

/// Per-queue-pair counters: verbs and bytes by kind, and doorbells (each doorbell is one round
/// trip: the verbs it carries travel together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QpCounters {
    pub verbs: [u64; 5],
    /// Payload bytes: READ and RPC reply bytes received, WRITE and RPC request bytes sent, 8 per
    /// CAS and FAA.
    pub bytes: [u64; 5],
    pub doorbells: u64,
    pub errors: u64,
}

impl QpCounters {
    pub fn verbs_of(&self, kind: VerbKind) -> u64 {
        self.verbs[kind as usize]
    }
    pub fn bytes_of(&self, kind: VerbKind) -> u64 {
        self.bytes[kind as usize]
    }
    pub fn total_verbs(&self) -> u64 {
        self.verbs.iter().sum()
    }
    /// Counts one posted verb.
    pub fn count_post(&mut self, verb: &Verb) {
        let kind = verb.kind();
        self.verbs[kind as usize] += 1;
        self.bytes[kind as usize] += match verb {
            Verb::Write { data, .. } => data.len() as u64,
            Verb::Rpc { request } => request.len() as u64,
            Verb::Cas { .. } | Verb::Faa { .. } => 8,
            Verb::Read { .. } => 0,
        };
    }
    /// Counts one completion (READ and RPC bytes are counted when they arrive).
    pub fn count_completion(&mut self, c: &Completion) {
        match &c.result {
            Ok(CompletionData::Bytes(b)) if c.kind == VerbKind::Read => {
                self.bytes[VerbKind::Read as usize] += b.len() as u64
            }
            Ok(CompletionData::Bytes(b)) if c.kind == VerbKind::Rpc => {
                self.bytes[VerbKind::Rpc as usize] += b.len() as u64
            }
            Ok(_) => {}
            Err(_) => self.errors += 1,
        }
    }
    /// Counters accumulated since `earlier`.
    pub fn since(&self, earlier: &QpCounters) -> QpCounters {
        let mut d = *self;
        for i in 0..5 {
            d.verbs[i] -= earlier.verbs[i];
            d.bytes[i] -= earlier.bytes[i];
        }
        d.doorbells -= earlier.doorbells;
        d.errors -= earlier.errors;
        d
    }
}

/// One worker core's connection to the memory node.
pub trait QueuePair: Send + fmt::Debug {
    /// Posts one request as its own doorbell.
    fn post(&mut self, wr: WrId, verb: Verb) -> Result<(), PostError> {
        self.post_batch(vec![(wr, verb)])
    }
    /// Posts several requests as one doorbell batch (one round trip). All or none are posted.
    fn post_batch(&mut self, batch: Vec<(WrId, Verb)>) -> Result<(), PostError>;
    /// Appends up to `max` completions to `out`; returns how many. Never blocks.
    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize;
    /// Requests posted and not yet reaped.
    fn in_flight(&self) -> usize;
    /// Counters so far.
    fn counters(&self) -> QpCounters;
    /// The size of the registered region (the pool).
    fn region_len(&self) -> u64;
    /// When the next completion is due, if the backend knows (local fabric with delay): a worker
    /// with nothing else to do may sleep until then.
    fn next_due(&self) -> Option<std::time::Instant> {
        None
    }
    /// A file descriptor that becomes readable when completions may be ready (TCP), so that an
    /// idle worker can wait for it in its event loop instead of spinning.
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// Something that hands out queue pairs to worker cores.
pub trait Fabric: Send + Sync + fmt::Debug {
    /// A new queue pair (one per worker core).
    fn connect(&self) -> Result<Box<dyn QueuePair>, VerbError>;
    /// The backend's name ("local", "tcp", "rdma").
    fn name(&self) -> &'static str;
}

/// Checks a doorbell batch against the queue pair's limits (shared by every backend).
pub(crate) fn check_batch(in_flight: usize, batch_len: usize) -> Result<(), PostError> {
    if batch_len > DOORBELL_VERBS_MAX {
        return Err(PostError::Invalid(VerbError::Refused(format!(
            "a doorbell carries at most {DOORBELL_VERBS_MAX} verbs, not {batch_len}"
        ))));
    }
    if in_flight + batch_len > QP_IN_FLIGHT_MAX {
        return Err(PostError::QueueFull { in_flight });
    }
    Ok(())
}

/// The MN's side of the RPC channel: runs on the MN's RPC threads, never on a worker core.
pub trait RpcHandler: Send + Sync + 'static {
    /// Answers one request of connection `peer`. Malformed requests get an error reply, never a
    /// panic.
    fn handle(&self, peer: PeerId, request: &[u8]) -> Vec<u8>;
    /// Connection `peer` is gone; it sends nothing more (a request of it still queued may yet
    /// arrive, and must find the peer gone).
    fn disconnected(&self, _peer: PeerId) {}
    /// A counter that moves whenever some connection is fenced: a server that sees it move asks
    /// [`RpcHandler::is_fenced`] about each of its connections and closes the fenced ones, so
    /// that a fenced incarnation's verbs stop reaching the pool.
    fn fence_generation(&self) -> u64 {
        0
    }
    /// Whether connection `peer` was fenced.
    fn is_fenced(&self, _peer: PeerId) -> bool {
        false
    }
}

/// Blocks (polling) until the completion of `wr` arrives; other completions reaped meanwhile are
/// appended to `others`. A completion of `wr` already in `others` (reaped by an earlier call) is
/// taken from there first. For slow paths only (start-up, control commands, tests); a caller that
/// cannot rule out a request that never completes uses [`wait_for_until`].
pub fn wait_for(qp: &mut dyn QueuePair, wr: WrId, others: &mut Vec<Completion>) -> Completion {
    loop {
        // A far deadline, renewed: the wait ends only when the completion arrives.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        if let Some(c) = wait_for_until(qp, wr, others, deadline) {
            return c;
        }
    }
}

/// Like [`wait_for`], but gives up at `deadline` and returns `None` (the request may still
/// complete later; its completion then arrives through a later poll of `qp`).
pub fn wait_for_until(
    qp: &mut dyn QueuePair,
    wr: WrId,
    others: &mut Vec<Completion>,
    deadline: std::time::Instant,
) -> Option<Completion> {
    // Completions reaped per poll.
    const POLL_BATCH: usize = 64;
    // Empty polls in a row before the wait starts sleeping between polls, and how long it sleeps:
    // short waits stay responsive, long ones (a merge RPC) do not burn a core.
    const SPINS_BEFORE_SLEEP: u32 = 64;
    const IDLE_SLEEP: std::time::Duration = std::time::Duration::from_micros(100);
    if let Some(i) = others.iter().position(|c| c.wr == wr) {
        return Some(others.remove(i));
    }
    let mut buf = Vec::with_capacity(POLL_BATCH);
    let mut idle_polls = 0u32;
    loop {
        buf.clear();
        if qp.poll(&mut buf, POLL_BATCH) == 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            idle_polls = idle_polls.saturating_add(1);
            match qp.next_due() {
                Some(due) if due > now => {
                    std::thread::sleep((due - now).min(deadline - now).min(IDLE_SLEEP));
                }
                _ if idle_polls > SPINS_BEFORE_SLEEP => {
                    std::thread::sleep(IDLE_SLEEP.min(deadline - now));
                }
                _ => std::thread::yield_now(),
            }
            continue;
        }
        idle_polls = 0;
        let mut found = None;
        for c in buf.drain(..) {
            if c.wr == wr && found.is_none() {
                found = Some(c);
            } else {
                others.push(c);
            }
        }
        if found.is_some() {
            return found;
        }
    }
}
