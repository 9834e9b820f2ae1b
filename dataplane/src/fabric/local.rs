//! The `local` fabric: verbs executed on the pool mapping in this process.
//!
//! The KN and the MN share one [`SharedBackend`]: the MN's pool in the same process, or the same
//! pool file mapped by several processes on one host (a model of CXL shared memory). A verb runs
//! on the pool memory when it is posted, in posting order, so a WRITE then a READ posted together
//! on one queue pair sees the write; its completion becomes visible to [`QueuePair::poll`] only
//! once the injected delay has passed: one round trip ([`LocalOptions::rtt`]) after its bytes
//! have crossed a modelled link ([`LocalOptions::link_bytes_per_sec`], shared by every queue pair
//! of one fabric, as a KN's NIC is). Posting never waits for the delay, so one core can keep many
//! verbs in flight, and [`QueuePair::next_due`] tells an idle worker when to look again.
//!
//! RPCs go to an [`RpcService`] on a small pool of MN RPC threads ([`RpcPool`]), started when the
//! first RPC is posted; their completion is due one round trip after posting or when the reply
//! arrives, whichever is later. Without a service, RPCs complete with [`VerbError::Refused`]. The
//! service may be an [`RpcHandler`] in this process or the tcp forwarder
//! ([`super::tcp::TcpRpcForwarder`]) when the MN is another process that maps the same pool file.
//!
//! This module is the initiator's side only: the verbs themselves run through the memory node's
//! [`crate::mn::verbs`], as they do in the tcp server, so every verb is checked (size, bounds,
//! alignment) before it touches memory and a bad verb completes with an error and changes
//! nothing.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dinomo_pmem::SharedBackend;

use super::{
    Completion, CompletionData, Fabric, PeerId, PostError, QP_IN_FLIGHT_MAX, QpCounters, QueuePair,
    RPC_BYTES_MAX, RpcHandler, Verb, VerbError, VerbKind, WrId, check_batch,
};
use crate::mn::rpc_pool::{
    HandlerService, RPC_QUEUE_DEFAULT, RPC_THREADS_DEFAULT, RpcPool, RpcService,
};
use crate::mn::verbs::execute;

/// Round-trip time of a one-hop RDMA fabric, the usual value for `LocalOptions::rtt`.
pub const RDMA_RTT_TYPICAL: Duration = Duration::from_nanos(1_600);

/// Options of a [`LocalFabric`].
#[derive(Clone)]
pub struct LocalOptions {
    /// Delay from posting a doorbell until its completions are visible; zero means at once.
    pub rtt: Duration,
    /// Link bandwidth in bytes per second; a transfer occupies the link for its size over this
    /// rate, so later transfers complete later. `None` means unlimited.
    pub link_bytes_per_sec: Option<u64>,
    /// What answers RPCs; `None` refuses them.
    pub rpc: Option<Arc<dyn RpcService>>,
    /// MN RPC threads (started on the first RPC).
    pub rpc_threads: usize,
}

impl Default for LocalOptions {
    fn default() -> LocalOptions {
        LocalOptions {
            rtt: Duration::ZERO,
            link_bytes_per_sec: None,
            rpc: None,
            rpc_threads: RPC_THREADS_DEFAULT,
        }
    }
}

impl LocalOptions {
    /// Sets the injected round-trip delay.
    #[must_use]
    pub fn with_rtt(mut self, rtt: Duration) -> LocalOptions {
        self.rtt = rtt;
        self
    }
    /// Caps the modelled link's bandwidth.
    #[must_use]
    pub fn with_link_bytes_per_sec(mut self, bytes_per_sec: u64) -> LocalOptions {
        self.link_bytes_per_sec = Some(bytes_per_sec);
        self
    }
    /// Answers RPCs with `handler` on the MN RPC threads.
    #[must_use]
    pub fn with_rpc_handler(self, handler: Arc<dyn RpcHandler>) -> LocalOptions {
        self.with_rpc_service(Arc::new(HandlerService(handler)))
    }
    /// Answers RPCs with `service` (for example a tcp forwarder to the MN process).
    #[must_use]
    pub fn with_rpc_service(mut self, service: Arc<dyn RpcService>) -> LocalOptions {
        self.rpc = Some(service);
        self
    }
}

impl fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOptions")
            .field("rtt", &self.rtt)
            .field("link_bytes_per_sec", &self.link_bytes_per_sec)
            .field("rpc", &self.rpc.is_some())
            .field("rpc_threads", &self.rpc_threads)
            .finish()
    }
}

/// Bytes a verb puts on the link (payload only; headers are in the round trip).
fn link_bytes(verb: &Verb) -> u64 {
    match verb {
        Verb::Read { len, .. } => u64::from(*len),
        Verb::Write { data, .. } => data.len() as u64,
        Verb::Cas { .. } | Verb::Faa { .. } => 8,
        Verb::Rpc { request } => request.len() as u64,
    }
}

/// The modelled link of one fabric: the time until which it is busy, in nanoseconds since
/// `epoch`, moved forward atomically by every transfer.
struct Link {
    bytes_per_sec: u64,
    epoch: Instant,
    busy_until_ns: AtomicU64,
}

impl Link {
    /// Occupies the link with `bytes` starting no earlier than `now`; returns when the transfer
    /// ends.
    fn transfer(&self, now: Instant, bytes: u64) -> Instant {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let cost_ns = (u128::from(bytes) * 1_000_000_000 / u128::from(self.bytes_per_sec.max(1)))
            .min(u128::from(u64::MAX / 4)) as u64;
        let mut end_ns = 0;
        // The closure always returns Some, so the update cannot fail.
        let _ = self
            .busy_until_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                end_ns = busy.max(now_ns).saturating_add(cost_ns);
                Some(end_ns)
            });
        self.epoch + Duration::from_nanos(end_ns)
    }
}

struct Shared {
    backend: SharedBackend,
    rtt: Duration,
    link: Option<Link>,
    rpc: Option<Arc<dyn RpcService>>,
    rpc_threads: usize,
    pool: OnceLock<Result<RpcPool, String>>,
}

impl Shared {
    fn pool(&self) -> Result<&RpcPool, VerbError> {
        let Some(service) = &self.rpc else {
            return Err(VerbError::Refused("no RPC handler on this fabric".into()));
        };
        let pool = self.pool.get_or_init(|| {
            RpcPool::start(Arc::clone(service), self.rpc_threads, RPC_QUEUE_DEFAULT)
                .map_err(|e| format!("cannot start the RPC threads: {e}"))
        });
        pool.as_ref().map_err(|e| VerbError::Refused(e.clone()))
    }

    fn immediate(&self) -> bool {
        self.rtt.is_zero() && self.link.is_none()
    }
}

/// The `local` fabric over a [`SharedBackend`].
#[derive(Clone)]
pub struct LocalFabric {
    shared: Arc<Shared>,
}

impl LocalFabric {
    /// A fabric whose queue pairs reach `backend` with the delays of `options`.
    pub fn new(backend: SharedBackend, options: LocalOptions) -> LocalFabric {
        let link = options.link_bytes_per_sec.map(|bytes_per_sec| Link {
            bytes_per_sec: bytes_per_sec.max(1),
            epoch: Instant::now(),
            busy_until_ns: AtomicU64::new(0),
        });
        LocalFabric {
            shared: Arc::new(Shared {
                backend,
                rtt: options.rtt,
                link,
                rpc: options.rpc,
                rpc_threads: options.rpc_threads,
                pool: OnceLock::new(),
            }),
        }
    }

    /// A new queue pair of the concrete type.
    pub fn connect_local(&self) -> LocalQp {
        let (rpc_tx, rpc_rx) = crossbeam_channel::bounded(QP_IN_FLIGHT_MAX);
        LocalQp {
            peer: PeerId::fresh(),
            fence_seen: 0,
            fenced: false,
            shared: Arc::clone(&self.shared),
            timed: VecDeque::with_capacity(QP_IN_FLIGHT_MAX),
            rpc_tx,
            rpc_rx,
            rpc_ready: Vec::new(),
            rpcs_waiting: 0,
            counters: QpCounters::default(),
        }
    }

    /// The pool this fabric reaches.
    pub fn backend(&self) -> &SharedBackend {
        &self.shared.backend
    }
}

impl fmt::Debug for LocalFabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFabric")
            .field("region", &self.shared.backend.len())
            .field("rtt", &self.shared.rtt)
            .field(
                "link_bytes_per_sec",
                &self.shared.link.as_ref().map(|l| l.bytes_per_sec),
            )
            .field("rpc", &self.shared.rpc.is_some())
            .finish()
    }
}

impl Fabric for LocalFabric {
    fn connect(&self) -> Result<Box<dyn QueuePair>, VerbError> {
        Ok(Box::new(self.connect_local()))
    }
    fn name(&self) -> &'static str {
        "local"
    }
}

/// A completion waiting for its due time.
#[derive(Debug)]
struct Timed {
    due: Instant,
    completion: Completion,
}

/// An RPC's reply on its way back from an RPC thread.
#[derive(Debug)]
struct RpcDone {
    due: Instant,
    completion: Completion,
}

/// A queue pair of the local fabric.
pub struct LocalQp {
    /// This queue pair's name at the memory node.
    peer: PeerId,
    /// The fence generation last checked, and whether this queue pair was fenced.
    fence_seen: u64,
    fenced: bool,
    shared: Arc<Shared>,
    /// Completions of one-sided verbs, in posting order; due times never decrease along it.
    timed: VecDeque<Timed>,
    rpc_tx: Sender<RpcDone>,
    rpc_rx: Receiver<RpcDone>,
    /// RPC replies that have arrived and wait for their due time.
    rpc_ready: Vec<Timed>,
    /// RPCs posted whose reply has not arrived.
    rpcs_waiting: usize,
    counters: QpCounters,
}

impl Drop for LocalQp {
    fn drop(&mut self) {
        // The memory node forgets this connection: its incarnation may no longer be live, and
        // the chain it wrote is free.
        if let Some(service) = &self.shared.rpc {
            service.disconnected(self.peer);
        }
    }
}

impl fmt::Debug for LocalQp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalQp")
            .field("in_flight", &self.in_flight())
            .field("counters", &self.counters)
            .finish()
    }
}

impl LocalQp {
    /// Refuses every post once the memory node has fenced this queue pair's incarnation: like a
    /// closed connection, nothing of it reaches the pool any more.
    fn check_fenced(&mut self) -> Result<(), PostError> {
        if !self.fenced
            && let Some(service) = &self.shared.rpc
        {
            let generation = service.fence_generation();
            if generation != self.fence_seen {
                self.fence_seen = generation;
                self.fenced = service.is_fenced(self.peer);
            }
        }
        if self.fenced {
            return Err(PostError::Disconnected(
                "the memory node fenced this connection".into(),
            ));
        }
        Ok(())
    }

    fn post_rpc(&mut self, wr: WrId, request: Vec<u8>, due: Instant) {
        let refused = |error: VerbError| Timed {
            due,
            completion: Completion {
                wr,
                kind: VerbKind::Rpc,
                result: Err(error),
            },
        };
        if request.len() as u64 > RPC_BYTES_MAX {
            self.push_timed(refused(VerbError::TooLarge(request.len() as u64)));
            return;
        }
        let pool = match self.shared.pool() {
            Ok(pool) => pool,
            Err(error) => {
                self.push_timed(refused(error));
                return;
            }
        };
        let tx = self.rpc_tx.clone();
        let reply = Box::new(move |result: Result<Vec<u8>, VerbError>| {
            let done = RpcDone {
                due: due.max(Instant::now()),
                completion: Completion {
                    wr,
                    kind: VerbKind::Rpc,
                    result: result.map(CompletionData::Bytes),
                },
            };
            // The inbox holds QP_IN_FLIGHT_MAX replies, more than can be outstanding, so this
            // only fails when the queue pair is gone, and then nobody wants the reply.
            let _ = tx.try_send(done);
        });
        match pool.try_submit(self.peer, request, reply) {
            Ok(()) => self.rpcs_waiting += 1,
            Err(error) => self.push_timed(refused(error)),
        }
    }

    fn push_timed(&mut self, mut timed: Timed) {
        // Keeps due times monotone along the queue, so that `poll` can stop at the first one
        // that is not due yet.
        if let Some(last) = self.timed.back() {
            timed.due = timed.due.max(last.due);
        }
        self.timed.push_back(timed);
    }

    fn drain_rpc_inbox(&mut self) {
        while let Ok(done) = self.rpc_rx.try_recv() {
            self.rpcs_waiting = self.rpcs_waiting.saturating_sub(1);
            self.rpc_ready.push(Timed {
                due: done.due,
                completion: done.completion,
            });
        }
    }
}

impl QueuePair for LocalQp {
    fn post_batch(&mut self, batch: Vec<(WrId, Verb)>) -> Result<(), PostError> {
        check_batch(self.in_flight(), batch.len())?;
        if batch.is_empty() {
            return Ok(());
        }
        self.check_fenced()?;
        self.counters.doorbells += 1;
        let now = Instant::now();
        for (wr, verb) in batch {
            self.counters.count_post(&verb);
            let sent = match &self.shared.link {
                Some(link) => link.transfer(now, link_bytes(&verb)),
                None => now,
            };
            let due = sent + self.shared.rtt;
            let kind = verb.kind();
            if let Verb::Rpc { request } = verb {
                self.post_rpc(wr, request, due);
                continue;
            }
            let result = execute(&*self.shared.backend, &verb);
            self.push_timed(Timed {
                due,
                completion: Completion { wr, kind, result },
            });
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let immediate = self.shared.immediate();
        let now = if immediate || (self.timed.is_empty() && self.rpcs_waiting == 0) {
            None
        } else {
            Some(Instant::now())
        };
        let mut n = 0;
        while n < max {
            match self.timed.front() {
                Some(t) if now.is_none_or(|now| t.due <= now) => {}
                _ => break,
            }
            let Some(t) = self.timed.pop_front() else {
                break;
            };
            self.counters.count_completion(&t.completion);
            out.push(t.completion);
            n += 1;
        }
        if self.rpcs_waiting > 0 || !self.rpc_ready.is_empty() {
            self.drain_rpc_inbox();
            let now = Instant::now();
            let mut i = 0;
            while i < self.rpc_ready.len() && n < max {
                if immediate || self.rpc_ready[i].due <= now {
                    let t = self.rpc_ready.swap_remove(i);
                    self.counters.count_completion(&t.completion);
                    out.push(t.completion);
                    n += 1;
                } else {
                    i += 1;
                }
            }
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.timed.len() + self.rpc_ready.len() + self.rpcs_waiting
    }

    fn counters(&self) -> QpCounters {
        self.counters
    }

    fn region_len(&self) -> u64 {
        self.shared.backend.len()
    }

    fn next_due(&self) -> Option<Instant> {
        let verbs = self.timed.front().map(|t| t.due);
        let rpcs = self.rpc_ready.iter().map(|t| t.due).min();
        match (verbs, rpcs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use dinomo_pmem::{MemBackend, PoolOffset};

    use super::*;

    #[test]
    fn link_serializes_transfers() {
        let link = Link {
            bytes_per_sec: 1_000_000_000,
            epoch: Instant::now(),
            busy_until_ns: AtomicU64::new(0),
        };
        let now = link.epoch;
        let first = link.transfer(now, 1_000);
        let second = link.transfer(now, 1_000);
        assert_eq!(first - now, Duration::from_micros(1));
        assert_eq!(second - now, Duration::from_micros(2));
    }

    #[test]
    fn delay_holds_completions_back_without_blocking_the_poster() {
        let backend: SharedBackend = Arc::new(MemBackend::new(4096));
        let fabric = LocalFabric::new(
            Arc::clone(&backend),
            LocalOptions::default().with_rtt(Duration::from_secs(3600)),
        );
        let mut qp = fabric.connect_local();
        qp.post(
            WrId(1),
            Verb::Write {
                remote: PoolOffset(8),
                data: vec![7; 8],
                persist: false,
            },
        )
        .unwrap();
        // The verb ran at post time, but its completion is an hour away.
        assert_eq!(backend.load(8), u64::from_le_bytes([7; 8]));
        let mut out = Vec::new();
        assert_eq!(qp.poll(&mut out, 8), 0);
        assert_eq!(qp.in_flight(), 1);
        assert!(qp.next_due().is_some_and(|due| due > Instant::now()));
    }
}
