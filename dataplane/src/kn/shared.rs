//! What the worker cores of one KN share: the queues between cores, the routing every worker has
//! acknowledged (for the embedded API and `INFO`), published counters, and the node's identity.
//!
//! Nothing here is on a core's fast path: each worker routes with its own copy of the routing,
//! and the bounded queues carry only requests for another core's keys and the embedded API's
//! requests.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use dinomo_control::{Incarnation, KnId, Owner};

use crate::cache::CacheStats;
use crate::kn::engine::{Command, Reply, Tag};
use crate::kn::routing::Routing;
use crate::kn::stats::EngineStats;
use crate::mn::proto::MnStats;
use crate::resp::Limits;
use crate::sys::EventFd;

/// Messages between cores (and from the embedded API to a core).
#[derive(Debug)]
pub enum Inbound {
    /// A request of a thread that links the dataplane; the reply goes to `reply`.
    Embedded { cmd: Command, reply: Sender<Reply> },
    /// A request for a key this core owns, from core `from`; the reply goes back with `tag`.
    Handover { from: usize, tag: Tag, cmd: Command },
    /// The reply to a handover this core sent.
    HandoverReply { tag: Tag, reply: Reply },
}

/// Capacity of each core's inbound queue.
pub const INBOX_CAPACITY: usize = 8192;

/// One core's published state, for `INFO`.
#[derive(Debug, Clone, Default)]
pub struct CoreSnapshot {
    pub stats: EngineStats,
    pub cache: CacheStats,
    pub connections: usize,
    pub unmerged_keys: usize,
    pub sealed_blocks: usize,
    pub in_flight: usize,
    pub failure: Option<String>,
    pub port: u16,
}

/// Something that can report the memory node's counters (in-process, or cached from RPCs).
pub trait MnStatsSource: Send + Sync {
    fn mn_stats(&self) -> Option<MnStats>;
}

/// Static facts about the node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub kn: KnId,
    pub incarnation: Incarnation,
    pub host: String,
    pub base_port: u16,
    /// Each core's own port.
    pub core_ports: Vec<u16>,
    pub core_ids: Vec<dinomo_control::CoreId>,
    /// The pool's uuid in hex.
    pub pool_uuid: String,
    pub fabric: &'static str,
    pub durability: &'static str,
    pub cache_policy: &'static str,
    pub cache_bytes_per_core: usize,
    pub started: Instant,
}

/// State shared by every worker core of one node.
pub struct Shared {
    pub identity: NodeIdentity,
    /// The routing every worker has acknowledged (workers route with their own copy, which
    /// may be newer while a change is being applied).
    pub(crate) routing: RwLock<Arc<Routing>>,
    pub inboxes: Vec<Sender<Inbound>>,
    pub wakers: Vec<Arc<EventFd>>,
    pub snapshots: Mutex<Vec<CoreSnapshot>>,
    pub stop: AtomicBool,
    pub connections: AtomicUsize,
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub commands: AtomicU64,
    pub client_ids: AtomicU64,
    pub requirepass: Option<Vec<u8>>,
    pub limits: Limits,
    pub connections_max: usize,
    pub mn: Option<Arc<dyn MnStatsSource>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("identity", &self.identity)
            .finish()
    }
}

impl Shared {
    /// The routing every worker has acknowledged.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records `routing` as acknowledged by every worker.
    pub(crate) fn set_routing(&self, routing: Arc<Routing>) {
        *self.routing.write().unwrap_or_else(|p| p.into_inner()) = routing;
    }

    /// Sends a message to core `core` and wakes it; `Err` gives the message back if its queue is
    /// full.
    pub fn send(&self, core: usize, message: Inbound) -> Result<(), Inbound> {
        match self.inboxes[core].try_send(message) {
            Ok(()) => {
                self.wakers[core].signal();
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => Err(m),
        }
    }

    pub fn cores(&self) -> usize {
        self.inboxes.len()
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The sum of every core's counters.
    pub fn totals(&self) -> (EngineStats, CacheStats, Vec<CoreSnapshot>) {
        let snapshots = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut stats = EngineStats::default();
        let mut cache = CacheStats::default();
        for s in &snapshots {
            stats.merge(&s.stats);
            cache.value_hits += s.cache.value_hits;
            cache.shortcut_hits += s.cache.shortcut_hits;
            cache.misses += s.cache.misses;
            cache.promotions += s.cache.promotions;
            cache.demotions += s.cache.demotions;
            cache.evictions += s.cache.evictions;
            cache.used_bytes += s.cache.used_bytes;
            cache.budget_bytes += s.cache.budget_bytes;
            cache.values += s.cache.values;
            cache.shortcuts += s.cache.shortcuts;
        }
        (stats, cache, snapshots)
    }
}

/// The queues of a node's cores: each core's sender (for the others), its receiver, its waker.
pub struct Queues {
    pub senders: Vec<Sender<Inbound>>,
    pub receivers: Vec<Receiver<Inbound>>,
    pub wakers: Vec<Arc<EventFd>>,
}

/// Creates the queues of `cores` cores.
pub fn queues(cores: usize) -> std::io::Result<Queues> {
    let mut q = Queues {
        senders: Vec::new(),
        receivers: Vec::new(),
        wakers: Vec::new(),
    };
    for _ in 0..cores {
        let (s, r) = crossbeam_channel::bounded(INBOX_CAPACITY);
        q.senders.push(s);
        q.receivers.push(r);
        q.wakers.push(Arc::new(EventFd::new()?));
    }
    Ok(q)
}

/// A Redis Cluster node id for a core: 40 hex characters from the pool's uuid (in hex), the
/// node and the core.
pub fn node_id(pool_uuid: &str, owner: Owner) -> String {
    format!("{pool_uuid}{:04x}{:04x}", owner.kn.0 & 0xFFFF, owner.core.0)
}

impl MnStatsSource for crate::mn::memnode::MemoryNode {
    fn mn_stats(&self) -> Option<MnStats> {
        Some(self.stats())
    }
}
