//! The KN side of the rdma fabric: [`RdmaFabric`] hands out queue pairs, each an [`RdmaQp`]
//! connected to its own MN-side queue pair through the QP exchange.
//!
//! A queue pair posts READ, WRITE, CAS and FAA with the `ibv_wr_*` API, one doorbell per batch,
//! every request signaled, and polls its completion queue in `poll`. Local buffers come from a
//! registered arena used as a ring: RC completions of one send queue arrive in posting order, so
//! buffers are freed in the order they were taken. Bounds, alignment and sizes are checked before
//! posting with the memory node's own checks ([`crate::mn::verbs`]): a bad verb gets an error
//! completion and is never posted, because a remote access error would move the queue pair to its
//! error state; the NIC enforces the region's bounds again on the MN side. A WRITE with `persist`
//! is followed by a READ of its last bytes, and completes when that READ does: the read flushes
//! the write to the MN's memory controller, which makes it persistent where the MN's platform
//! persists what reaches it (ADR with DDIO off for the pool). RPCs go to an [`RpcService`] on
//! local RPC threads, as in the local fabric (for example the tcp forwarder to the MN process).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::completion::ExtendedCompletionQueue;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::queue_pair::{
    ExtendedQueuePair, PostSendGuard as _, QueuePair as _, SetScatterGatherEntry as _,
    WorkRequestFlags,
};

use super::device::{Endpoint, RdmaRegion, fresh_psn};
use super::exchange::{
    EXCHANGE_MESSAGE_BYTES_MAX, get_welcome, put_hello, read_exchange, write_exchange,
};
use super::{
    RDMA_ARENA_ALIGN, RDMA_ARENA_BYTES_DEFAULT, RDMA_EXCHANGE_TIMEOUT, RDMA_POLL_BATCH_MAX,
    RDMA_SEND_WR_MAX,
};
use crate::fabric::tcp::frame::TOKEN_BYTES_MAX;
use crate::fabric::{
    Completion, CompletionData, Fabric, PeerId, PostError, QP_IN_FLIGHT_MAX, QpCounters, QueuePair,
    RPC_BYTES_MAX, RpcHandler, VERB_BYTES_MAX, Verb, VerbError, VerbKind, WrId, check_batch,
};
use crate::mn::rpc_pool::{
    HandlerService, RPC_QUEUE_DEFAULT, RPC_THREADS_DEFAULT, RpcPool, RpcService,
};
use crate::mn::verbs::{check_range, check_word};

/// Options of an [`RdmaFabric`].
#[derive(Clone, Default)]
pub struct RdmaOptions {
    /// The device (the first one if `None`).
    pub device: Option<String>,
    /// The GID index (a RoCE v2 one if `None`).
    pub gid_index: Option<u8>,
    /// Registered buffer bytes per queue pair (`RDMA_ARENA_BYTES_DEFAULT` if zero).
    pub arena_bytes: usize,
    /// What answers RPCs; `None` refuses them.
    pub rpc: Option<Arc<dyn RpcService>>,
}

impl fmt::Debug for RdmaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaOptions")
            .field("device", &self.device)
            .field("gid_index", &self.gid_index)
            .field("arena_bytes", &self.arena_bytes)
            .field("rpc", &self.rpc.is_some())
            .finish()
    }
}

impl RdmaOptions {
    /// Uses the device named `device`.
    #[must_use]
    pub fn with_device(mut self, device: &str) -> RdmaOptions {
        self.device = Some(device.to_owned());
        self
    }
    /// Answers RPCs with `handler` on local RPC threads.
    #[must_use]
    pub fn with_rpc_handler(self, handler: Arc<dyn RpcHandler>) -> RdmaOptions {
        self.with_rpc_service(Arc::new(HandlerService(handler)))
    }
    /// Answers RPCs with `service` (for example the tcp forwarder to the MN process).
    #[must_use]
    pub fn with_rpc_service(mut self, service: Arc<dyn RpcService>) -> RdmaOptions {
        self.rpc = Some(service);
        self
    }
}

/// The `rdma` fabric as seen by a KN.
pub struct RdmaFabric {
    addr: SocketAddr,
    token: Vec<u8>,
    options: RdmaOptions,
    endpoint: OnceLock<Result<Arc<Endpoint>, String>>,
    pool: Arc<OnceLock<Result<RpcPool, String>>>,
}

impl fmt::Debug for RdmaFabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaFabric")
            .field("addr", &self.addr)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RdmaFabric {
    /// A fabric whose queue pairs connect through the MN's QP exchange at `addr`.
    pub fn new(addr: SocketAddr, token: impl Into<Vec<u8>>, options: RdmaOptions) -> RdmaFabric {
        RdmaFabric {
            addr,
            token: token.into(),
            options,
            endpoint: OnceLock::new(),
            pool: Arc::new(OnceLock::new()),
        }
    }

    fn endpoint(&self) -> Result<Arc<Endpoint>, VerbError> {
        self.endpoint
            .get_or_init(|| {
                Endpoint::open(self.options.device.as_deref(), self.options.gid_index)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(VerbError::Refused)
    }

    /// A new queue pair of the concrete type.
    pub fn connect_rdma(&self) -> Result<RdmaQp, VerbError> {
        if self.token.len() > TOKEN_BYTES_MAX {
            return Err(VerbError::Refused("the cluster token is too long".into()));
        }
        let endpoint = self.endpoint()?;
        let arena_bytes = match self.options.arena_bytes {
            0 => RDMA_ARENA_BYTES_DEFAULT,
            n => n.max(VERB_BYTES_MAX as usize + RDMA_ARENA_ALIGN),
        };
        let arena = RdmaRegion::anonymous(arena_bytes as u64)?;
        let arena_mr = arena.register(&endpoint.pd, AccessFlags::LocalWrite)?;
        let (mut qp, cq) = endpoint.queue_pair()?;
        let psn = fresh_psn();
        let lost = |e: io::Error| VerbError::Disconnected(format!("{}: {e}", self.addr));
        let mut stream =
            TcpStream::connect_timeout(&self.addr, RDMA_EXCHANGE_TIMEOUT).map_err(lost)?;
        stream
            .set_read_timeout(Some(RDMA_EXCHANGE_TIMEOUT))
            .map_err(lost)?;
        write_exchange(
            &mut stream,
            &put_hello(&self.token, &endpoint.info(&qp, psn)),
        )
        .map_err(lost)?;
        let welcome = get_welcome(&read_exchange(
            &mut stream,
            64 + EXCHANGE_MESSAGE_BYTES_MAX,
        )?)?;
        endpoint.connect(&mut qp, psn, &welcome.info)?;
        let (rpc_tx, rpc_rx) = crossbeam_channel::bounded(QP_IN_FLIGHT_MAX);
        Ok(RdmaQp {
            qp,
            cq,
            arena_mr,
            arena: Arena::new(arena),
            _stream: stream,
            _endpoint: endpoint,
            remote_addr: welcome.addr,
            rkey: welcome.rkey,
            region_len: welcome.len,
            next_seq: 0,
            posted: VecDeque::with_capacity(RDMA_SEND_WR_MAX),
            user_in_flight: 0,
            ready: VecDeque::new(),
            peer: PeerId::fresh(),
            rpc: self.options.rpc.clone(),
            pool: Arc::clone(&self.pool),
            rpc_tx,
            rpc_rx,
            rpcs_waiting: 0,
            lost: None,
            counters: QpCounters::default(),
        })
    }
}

impl Fabric for RdmaFabric {
    fn connect(&self) -> Result<Box<dyn QueuePair>, VerbError> {
        Ok(Box::new(self.connect_rdma()?))
    }
    fn name(&self) -> &'static str {
        "rdma"
    }
}

/// The registered buffer arena of a queue pair, handed out as a ring in posting order.
struct Arena {
    region: RdmaRegion,
    /// Positions grow without wrapping; a buffer lives at `position % len`.
    taken: u64,
    freed: u64,
}

impl Arena {
    fn new(region: RdmaRegion) -> Arena {
        Arena {
            region,
            taken: 0,
            freed: 0,
        }
    }

    fn cap(&self) -> u64 {
        self.region.len()
    }

    /// Where `len` bytes would go, as (start position, end position), without taking them.
    fn plan(&self, at: u64, len: u64) -> Option<(u64, u64)> {
        let cap = self.cap();
        let len = len.max(8).next_multiple_of(RDMA_ARENA_ALIGN as u64);
        let mut start = at.next_multiple_of(RDMA_ARENA_ALIGN as u64);
        // A buffer never wraps around the end: skip to the start of the ring instead.
        if start % cap + len > cap {
            start = start.next_multiple_of(cap);
        }
        let end = start + len;
        (end - self.freed <= cap).then_some((start, end))
    }

    fn offset(&self, position: u64) -> usize {
        (position % self.cap()) as usize
    }
}

/// A request on the send queue, in posting order.
#[derive(Debug)]
struct Posted {
    seq: u64,
    wr: WrId,
    kind: VerbKind,
    /// Arena range of the request (start and end positions).
    start: u64,
    end: u64,
    len: u32,
    /// Its completion is not the user's: a WRITE followed by its flushing READ.
    silent: bool,
}

/// A queue pair of the rdma fabric.
pub struct RdmaQp {
    // Field order matters: the queue pair is destroyed before the completion queue, the arena's
    // registration before the arena.
    qp: ExtendedQueuePair,
    cq: Arc<ExtendedCompletionQueue>,
    arena_mr: Arc<MemoryRegion>,
    arena: Arena,
    _stream: TcpStream,
    _endpoint: Arc<Endpoint>,
    remote_addr: u64,
    rkey: u32,
    region_len: u64,
    next_seq: u64,
    posted: VecDeque<Posted>,
    /// Work requests of the user posted to the device and not yet completed.
    user_in_flight: usize,
    ready: VecDeque<Completion>,
    /// This queue pair's name at the RPC service (and so at the memory node).
    peer: PeerId,
    rpc: Option<Arc<dyn RpcService>>,
    pool: Arc<OnceLock<Result<RpcPool, String>>>,
    rpc_tx: Sender<Completion>,
    rpc_rx: Receiver<Completion>,
    rpcs_waiting: usize,
    lost: Option<String>,
    counters: QpCounters,
}

impl Drop for RdmaQp {
    fn drop(&mut self) {
        if let Some(service) = &self.rpc {
            service.disconnected(self.peer);
        }
    }
}

impl fmt::Debug for RdmaQp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaQp")
            .field("qpn", &self.qp.qp_number())
            .field("in_flight", &self.in_flight())
            .field("lost", &self.lost)
            .finish()
    }
}

/// A one-sided operation as posted: remote offsets, operands.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read(u64),
    Write(u64, usize),
    Cas(u64, u64, u64),
    Faa(u64, u64),
}

/// A request checked and placed in the arena, ready to post.
struct Planned {
    wr: WrId,
    verb: Verb,
    start: u64,
    end: u64,
    /// The flushing READ behind a persistent WRITE: its arena range.
    flush: Option<(u64, u64)>,
}

impl RdmaQp {
    fn check(&self, verb: &Verb) -> Result<(), VerbError> {
        match verb {
            Verb::Read { remote, len } => {
                check_range(self.region_len, remote.get(), u64::from(*len))
            }
            Verb::Write { remote, data, .. } => {
                check_range(self.region_len, remote.get(), data.len() as u64)
            }
            Verb::Cas { remote, .. } | Verb::Faa { remote, .. } => {
                check_word(self.region_len, remote.get())
            }
            Verb::Rpc { request } if request.len() as u64 > RPC_BYTES_MAX => {
                Err(VerbError::TooLarge(request.len() as u64))
            }
            Verb::Rpc { .. } => Ok(()),
        }
    }

    fn lose(&mut self, reason: String) {
        if self.lost.is_some() {
            return;
        }
        for p in self.posted.drain(..) {
            if !p.silent {
                self.ready.push_back(Completion {
                    wr: p.wr,
                    kind: p.kind,
                    result: Err(VerbError::Disconnected(reason.clone())),
                });
            }
        }
        self.user_in_flight = 0;
        self.lost = Some(reason);
    }

    fn post_rpc(&mut self, wr: WrId, request: Vec<u8>) {
        let refused = |e: VerbError| Completion {
            wr,
            kind: VerbKind::Rpc,
            result: Err(e),
        };
        let Some(service) = &self.rpc else {
            self.ready.push_back(refused(VerbError::Refused(
                "no RPC handler on this fabric".into(),
            )));
            return;
        };
        let pool = self.pool.get_or_init(|| {
            RpcPool::start(Arc::clone(service), RPC_THREADS_DEFAULT, RPC_QUEUE_DEFAULT)
                .map_err(|e| format!("cannot start the RPC threads: {e}"))
        });
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                self.ready.push_back(refused(VerbError::Refused(e.clone())));
                return;
            }
        };
        let tx = self.rpc_tx.clone();
        let reply = Box::new(move |result: Result<Vec<u8>, VerbError>| {
            // The inbox holds more replies than can be outstanding; a failure means the queue
            // pair is gone.
            let _ = tx.try_send(Completion {
                wr,
                kind: VerbKind::Rpc,
                result: result.map(CompletionData::Bytes),
            });
        });
        match pool.try_submit(self.peer, request, reply) {
            Ok(()) => self.rpcs_waiting += 1,
            Err(e) => self.ready.push_back(refused(e)),
        }
    }

    /// Posts the planned requests as one doorbell.
    fn post_planned(&mut self, planned: Vec<Planned>) -> Result<(), String> {
        let lkey = self.arena_mr.lkey();
        let rkey = self.rkey;
        let base = self.arena.region.addr();
        let mut wrs = Vec::with_capacity(planned.len() * 2);
        for p in planned {
            let local = base + self.arena.offset(p.start) as u64;
            let (op, kind, len) = match p.verb {
                Verb::Read { remote, len } => (Op::Read(remote.get()), VerbKind::Read, len),
                Verb::Write { remote, data, .. } => {
                    self.arena.region.copy_in(self.arena.offset(p.start), &data);
                    (
                        Op::Write(remote.get(), data.len()),
                        VerbKind::Write,
                        data.len() as u32,
                    )
                }
                Verb::Cas {
                    remote,
                    expected,
                    new,
                } => (Op::Cas(remote.get(), expected, new), VerbKind::Cas, 8),
                Verb::Faa { remote, add } => (Op::Faa(remote.get(), add), VerbKind::Faa, 8),
                Verb::Rpc { .. } => continue,
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.posted.push_back(Posted {
                seq,
                wr: p.wr,
                kind,
                start: p.start,
                end: p.end,
                len,
                silent: p.flush.is_some(),
            });
            self.user_in_flight += 1;
            wrs.push((seq, op, local, len));
            if let (Some((start, end)), Op::Write(remote, written)) = (p.flush, op) {
                // Read back the last bytes written: the READ completes only after the WRITE has
                // reached the MN's memory, and its completion stands for the WRITE's.
                let tail = written.min(8) as u64;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.posted.push_back(Posted {
                    seq,
                    wr: p.wr,
                    kind: VerbKind::Write,
                    start,
                    end,
                    len: 0,
                    silent: false,
                });
                let flush_local = base + self.arena.offset(start) as u64;
                wrs.push((
                    seq,
                    Op::Read(remote + written as u64 - tail),
                    flush_local,
                    tail as u32,
                ));
            }
        }
        let remote_base = self.remote_addr;
        let mut guard = self.qp.start_post_send();
        for (seq, op, local, len) in wrs {
            let handle = guard.construct_wr(seq, WorkRequestFlags::Signaled);
            let buffer = match op {
                Op::Read(at) => handle.setup_read(rkey, remote_base + at),
                Op::Write(at, _) => handle.setup_write(rkey, remote_base + at),
                Op::Cas(at, expected, new) => {
                    handle.setup_atomic_compare_swap(rkey, remote_base + at, expected, new)
                }
                Op::Faa(at, add) => handle.setup_atomic_fetch_add(rkey, remote_base + at, add),
            };
            // SAFETY: `local..local + len` is an arena buffer taken for this request alone, in
            // memory registered as `lkey`; nothing touches it until the request's completion is
            // reaped, and the arena outlives the queue pair (field order of `RdmaQp`).
            unsafe { buffer.setup_sge(lkey, local, len) };
        }
        guard
            .post()
            .map_err(|e| format!("post to the device failed: {e}"))
    }

    fn reap(&mut self) {
        let mut done: Vec<(u64, u32)> = Vec::new();
        if let Ok(poller) = self.cq.start_poll() {
            for wc in poller.take(RDMA_POLL_BATCH_MAX) {
                done.push((wc.wr_id(), wc.status()));
            }
        }
        for (seq, status) in done {
            let Some(front) = self.posted.pop_front() else {
                self.lose(format!("a completion for request {seq} that is not posted"));
                return;
            };
            if front.seq != seq {
                self.lose(format!(
                    "completion {seq} arrived while {} was expected",
                    front.seq
                ));
                return;
            }
            self.arena.freed = front.end;
            if status != 0 {
                // The queue pair is in its error state: everything behind fails too.
                let reason = format!("the device completed request {seq} with status {status}");
                if !front.silent {
                    self.user_in_flight = self.user_in_flight.saturating_sub(1);
                    self.ready.push_back(Completion {
                        wr: front.wr,
                        kind: front.kind,
                        result: Err(VerbError::Disconnected(reason.clone())),
                    });
                }
                self.lose(reason);
                return;
            }
            if front.silent {
                continue;
            }
            self.user_in_flight = self.user_in_flight.saturating_sub(1);
            let offset = self.arena.offset(front.start);
            let result = match front.kind {
                VerbKind::Read => Ok(CompletionData::Bytes(
                    self.arena.region.copy_out(offset, front.len as usize),
                )),
                VerbKind::Cas | VerbKind::Faa => {
                    let bytes = self.arena.region.copy_out(offset, 8);
                    Ok(CompletionData::Word(u64::from_ne_bytes(
                        bytes.try_into().unwrap_or([0; 8]),
                    )))
                }
                VerbKind::Write | VerbKind::Rpc => Ok(CompletionData::None),
            };
            self.ready.push_back(Completion {
                wr: front.wr,
                kind: front.kind,
                result,
            });
        }
    }
}

impl QueuePair for RdmaQp {
    fn post_batch(&mut self, batch: Vec<(WrId, Verb)>) -> Result<(), PostError> {
        if let Some(reason) = &self.lost {
            return Err(PostError::Disconnected(reason.clone()));
        }
        check_batch(self.in_flight(), batch.len())?;
        if batch.is_empty() {
            return Ok(());
        }
        // Plan every buffer first, so that the batch is posted whole or not at all.
        let mut at = self.arena.taken;
        let mut planned = Vec::with_capacity(batch.len());
        let mut local = Vec::new();
        let mut rpcs = Vec::new();
        for (wr, verb) in batch {
            if let Err(e) = self.check(&verb) {
                let kind = verb.kind();
                local.push((
                    verb,
                    Completion {
                        wr,
                        kind,
                        result: Err(e),
                    },
                ));
                continue;
            }
            let len = match &verb {
                Verb::Read { len, .. } => u64::from(*len),
                Verb::Write { data, .. } => data.len() as u64,
                Verb::Cas { .. } | Verb::Faa { .. } => 8,
                Verb::Rpc { .. } => {
                    rpcs.push((wr, verb));
                    continue;
                }
            };
            let Some((start, end)) = self.arena.plan(at, len) else {
                return Err(PostError::QueueFull {
                    in_flight: self.in_flight(),
                });
            };
            at = end;
            let flush = match &verb {
                Verb::Write {
                    data,
                    persist: true,
                    ..
                } if !data.is_empty() => {
                    let Some(range) = self.arena.plan(at, 8) else {
                        return Err(PostError::QueueFull {
                            in_flight: self.in_flight(),
                        });
                    };
                    at = range.1;
                    Some(range)
                }
                _ => None,
            };
            planned.push(Planned {
                wr,
                verb,
                start,
                end,
                flush,
            });
        }
        self.counters.doorbells += 1;
        for p in &planned {
            self.counters.count_post(&p.verb);
        }
        for (verb, completion) in local {
            self.counters.count_post(&verb);
            self.ready.push_back(completion);
        }
        for (wr, verb) in rpcs {
            self.counters.count_post(&verb);
            if let Verb::Rpc { request } = verb {
                self.post_rpc(wr, request);
            }
        }
        if !planned.is_empty() {
            self.arena.taken = at;
            if let Err(reason) = self.post_planned(planned) {
                self.lose(reason);
            }
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        if self.lost.is_none() && !self.posted.is_empty() {
            self.reap();
        }
        while let Ok(c) = self.rpc_rx.try_recv() {
            self.rpcs_waiting = self.rpcs_waiting.saturating_sub(1);
            self.ready.push_back(c);
        }
        let mut n = 0;
        while n < max {
            let Some(c) = self.ready.pop_front() else {
                break;
            };
            self.counters.count_completion(&c);
            out.push(c);
            n += 1;
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.user_in_flight + self.ready.len() + self.rpcs_waiting
    }

    fn counters(&self) -> QpCounters {
        self.counters
    }

    fn region_len(&self) -> u64 {
        self.region_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_hands_out_a_ring_in_order() {
        let region = RdmaRegion::anonymous(4096).unwrap();
        let mut arena = Arena::new(region);
        let (a, a_end) = arena.plan(arena.taken, 1000).unwrap();
        assert_eq!(a, 0);
        arena.taken = a_end;
        let (b, b_end) = arena.plan(arena.taken, 3000).unwrap();
        arena.taken = b_end;
        assert_eq!(b, 1024);
        // Full until the first buffer is freed; a buffer never wraps around the end.
        assert_eq!(arena.plan(arena.taken, 100), None);
        arena.freed = a_end;
        let (c, _) = arena.plan(arena.taken, 512).unwrap();
        assert_eq!(arena.offset(c), 0);
        assert_eq!(arena.plan(arena.taken, 2000), None);
    }
}
