//! [`KnNode`]: a running KVS node — one pinned worker thread per core, each with its own queue
//! pair, engine and RESP endpoint, sharing only the routing table and the queues between cores.
//!
//! Cores are picked from the machine's topology (hwloc: one processing unit per physical core,
//! in topology order); where hwloc finds nothing, the CPUs the process may run on are used in
//! order; where that fails too, workers run unpinned. Core `i` listens on `base_port + 1 + i`
//! and every core also accepts on `base_port`, which spreads connections over the cores.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use dinomo_control::{ClusterMap, CoreId, Incarnation, KnId, MapError};
use dinomo_pmem::{ChainId, Epoch};

use crate::config::Named;
use crate::fabric::{Fabric, VerbError};
use crate::kn::control::{ControlError, ControlThread, RemoteStats, WorkerControl};
use crate::kn::engine::{Engine, EngineConfig, StartError};
use crate::kn::routing::Routing;
use crate::kn::shared::{CoreSnapshot, MnStatsSource, NodeIdentity, Shared, queues};
use crate::kn::worker::{Worker, WorkerOptions, WorkerQueues};
use crate::mn::client::{ClientError, MnClient};
use crate::mn::proto::ErrorCode;
use crate::resp::Limits;

/// Connections a node accepts by default (Redis's `maxclients`).
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct KnOptions {
    pub kn: KnId,
    /// Address clients use (and the listeners bind).
    pub host: String,
    /// Base port (0: ephemeral ports for every listener, as tests use).
    pub base_port: u16,
    pub cores: usize,
    /// The first log chain; core `i` writes chain `first_chain + i`.
    pub first_chain: u32,
    /// Engine settings shared by every core (its chain is set per core).
    pub engine: EngineConfig,
    /// Pin worker threads to CPUs.
    pub pin: bool,
    pub sqpoll: bool,
    pub requirepass: Option<Vec<u8>>,
    pub limits: Limits,
    pub connections_max: usize,
    /// Serve RESP on TCP (false: embedded use only).
    pub listen: bool,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("core {core}: {source}")]
    Engine { core: usize, source: StartError },
    #[error("fabric: {0}")]
    Fabric(#[from] VerbError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    /// Another node is live and owns the slots this one would take.
    #[error("{0}")]
    Conflict(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A running node.
pub struct KnNode {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    control: Option<ControlThread>,
    base_addr: Option<SocketAddr>,
    core_addrs: Vec<SocketAddr>,
    cpus: Vec<Option<usize>>,
}

impl std::fmt::Debug for KnNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnNode")
            .field("base", &self.base_addr)
            .field("cores", &self.core_addrs)
            .finish()
    }
}

impl KnNode {
    /// Starts the node: stores a new cluster map (epoch after the stored one), attaches one
    /// engine per core, binds the listeners and spawns the workers.
    pub fn start(
        fabric: &dyn Fabric,
        options: KnOptions,
        mn: Option<Arc<dyn MnStatsSource>>,
    ) -> Result<KnNode, NodeError> {
        if options.cores == 0 {
            return Err(NodeError::Setup("a node needs at least one core".into()));
        }
        // Listeners first: their ports go into the cluster map.
        let (base, per_core) = if options.listen {
            bind_listeners(&options)?
        } else {
            (None, Vec::new())
        };
        let base_addr = base.as_ref().map(|l| l.local_addr()).transpose()?;
        let core_addrs: Vec<SocketAddr> = per_core
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()?;
        let ports: Vec<u16> = if options.listen {
            core_addrs.iter().map(SocketAddr::port).collect()
        } else {
            (0..options.cores).map(|i| 10_000 + i as u16).collect()
        };
        let core_ids: Vec<CoreId> = (0..options.cores).map(|i| CoreId(i as u16)).collect();

        // The cluster map: this incarnation takes every slot with a new epoch, so that its writes
        // order after every earlier one; the memory node refuses if a live node owns slots.
        // The control connection stays bound to the incarnation for the node's whole life (the
        // control thread owns it), so the node is live from here on.
        let incarnation = fresh_incarnation();
        let mut control_qp = fabric.connect()?;
        let (map, uuid) = claim_slots(&mut *control_qp, &options, incarnation, &core_ids, &ports)?;
        let map_epoch = map.epoch();
        let routing = Arc::new(Routing::new(Arc::new(map), options.kn, &core_ids));

        let mut engines = Vec::new();
        for core in 0..options.cores {
            let qp = fabric.connect()?;
            let mut cfg = options.engine.clone();
            cfg.chain = ChainId(options.first_chain + core as u32);
            cfg.epoch = map_epoch;
            cfg.incarnation = incarnation;
            engines.push(
                Engine::attach(qp, cfg).map_err(|source| NodeError::Engine { core, source })?,
            );
        }

        let crate::kn::shared::Queues {
            senders,
            receivers,
            wakers,
        } = queues(options.cores)?;
        let WorkerControl {
            inboxes: control_inboxes,
            receivers: control_receivers,
            acks: (ack_tx, ack_rx),
        } = WorkerControl::new(options.cores);
        let remote_stats = mn.is_none().then(|| Arc::new(RemoteStats::default()));
        let mn = mn.or_else(|| {
            remote_stats
                .clone()
                .map(|s| -> Arc<dyn MnStatsSource> { s })
        });
        let identity = NodeIdentity {
            kn: options.kn,
            incarnation,
            host: options.host.clone(),
            base_port: base_addr.map_or(0, |a| a.port()),
            core_ports: ports.clone(),
            core_ids: core_ids.clone(),
            pool_uuid: uuid.iter().map(|b| format!("{b:02x}")).collect(),
            fabric: fabric.name(),
            durability: options.engine.durability.name(),
            cache_policy: options.engine.cache_policy.name(),
            cache_bytes_per_core: options.engine.cache_bytes,
            started: Instant::now(),
        };
        let shared = Arc::new(Shared {
            identity,
            routing: RwLock::new(routing),
            inboxes: senders,
            wakers,
            snapshots: Mutex::new(vec![CoreSnapshot::default(); options.cores]),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            client_ids: AtomicU64::new(0),
            requirepass: options.requirepass.clone(),
            limits: options.limits,
            connections_max: options.connections_max,
            mn,
        });

        let cpus = if options.pin {
            pick_cpus(options.cores)
        } else {
            vec![None; options.cores]
        };
        let base = base.map(Arc::new);
        let mut threads = Vec::new();
        let queues = receivers
            .into_iter()
            .zip(control_receivers)
            .map(|(inbox, control)| WorkerQueues {
                inbox,
                control,
                acks: ack_tx.clone(),
            });
        for (core, ((engine, queues), own)) in engines
            .into_iter()
            .zip(queues)
            .zip(
                per_core
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .enumerate()
        {
            let mut listeners = Vec::new();
            if let Some(own) = own {
                listeners.push(Arc::new(own));
            }
            if let Some(base) = &base {
                listeners.push(Arc::clone(base));
            }
            let worker_options = WorkerOptions {
                cpu: cpus[core],
                sqpoll: options.sqpoll,
            };
            let worker = Worker::new(
                core,
                Arc::clone(&shared),
                engine,
                queues,
                listeners,
                &worker_options,
            )?;
            let cpu = cpus[core];
            let handle = std::thread::Builder::new()
                .name(format!("dinomo-core-{core}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    worker.run()
                })?;
            threads.push(handle);
        }
        let control = ControlThread::start(
            control_qp,
            Arc::clone(&shared),
            control_inboxes,
            ack_rx,
            remote_stats,
        )?;
        Ok(KnNode {
            shared,
            threads,
            control: Some(control),
            base_addr,
            core_addrs,
            cpus,
        })
    }

    /// This run's incarnation (the memory node knows the node by it).
    pub fn incarnation(&self) -> Incarnation {
        self.shared.identity.incarnation
    }

    /// The routing every worker has acknowledged.
    pub fn routing(&self) -> Arc<Routing> {
        self.shared.routing()
    }

    /// Makes every worker route by `map` (which must be newer than the node's) and own exactly
    /// the slots it gives them; returns once every worker has acknowledged. This changes
    /// routing only: moving a slot between owners safely is the handover of DESIGN.md §5, which
    /// the control plane drives around it.
    pub fn apply_map(&self, map: ClusterMap) -> Result<(), NodeError> {
        let routing = Arc::new(Routing::new(
            Arc::new(map),
            self.shared.identity.kn,
            &self.shared.identity.core_ids,
        ));
        self.control
            .as_ref()
            .ok_or(ControlError::Stopping)?
            .apply(routing)
            .map_err(NodeError::from)
    }

    /// The address that spreads connections over the cores.
    pub fn base_addr(&self) -> Option<SocketAddr> {
        self.base_addr
    }
    /// Each core's own address.
    pub fn core_addrs(&self) -> &[SocketAddr] {
        &self.core_addrs
    }
    /// The CPU each worker is pinned to.
    pub fn cpus(&self) -> &[Option<usize>] {
        &self.cpus
    }
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets every core finish what it started (acknowledging or failing every
    /// write it staged), and joins the workers.
    pub fn stop(mut self) -> Result<(), NodeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), NodeError> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(mut control) = self.control.take() {
            control.stop();
        }
        for w in &self.shared.wakers {
            w.signal();
        }
        let mut first_error = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(NodeError::Io(e));
                }
                Err(_) => {
                    first_error.get_or_insert(NodeError::Setup("a worker thread panicked".into()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for KnNode {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn bind_listeners(
    options: &KnOptions,
) -> Result<(Option<TcpListener>, Vec<TcpListener>), NodeError> {
    let bind = |port: u16| {
        let addr = format!("{}:{}", options.host, port);
        TcpListener::bind(&addr).map_err(|source| NodeError::Bind { addr, source })
    };
    let base = bind(options.base_port)?;
    let mut cores = Vec::new();
    for i in 0..options.cores {
        let port = if options.base_port == 0 {
            0
        } else {
            options.base_port.checked_add(1 + i as u16).ok_or_else(|| {
                NodeError::Setup(format!("no port for core {i} after {}", options.base_port))
            })?
        };
        cores.push(bind(port)?);
    }
    Ok((Some(base), cores))
}

fn single_node_map(
    options: &KnOptions,
    incarnation: Incarnation,
    cores: &[CoreId],
    ports: &[u16],
    epoch: Epoch,
) -> Result<ClusterMap, MapError> {
    let spec: Vec<(CoreId, u16, ChainId)> = cores
        .iter()
        .zip(ports)
        .enumerate()
        .map(|(i, (&c, &p))| (c, p, ChainId(options.first_chain + i as u32)))
        .collect();
    ClusterMap::single_node(options.kn, incarnation, &options.host, &spec, epoch)
}

/// Says hello as `incarnation` and stores a map that gives this node every slot, with the epoch
/// after the stored one. Returns the stored map and the pool's uuid. The memory node refuses
/// with [`NodeError::Conflict`] if a live node owns slots.
fn claim_slots(
    qp: &mut dyn crate::fabric::QueuePair,
    options: &KnOptions,
    incarnation: Incarnation,
    cores: &[CoreId],
    ports: &[u16],
) -> Result<(ClusterMap, [u8; 16]), NodeError> {
    let mut client = MnClient::new(qp);
    let failed = |e: ClientError| match e {
        ClientError::Refused {
            code: ErrorCode::Conflict,
            message,
        } => NodeError::Conflict(message),
        other => NodeError::Setup(other.to_string()),
    };
    let uuid = client.hello(incarnation).map_err(failed)?.uuid;
    let map = client
        .store_next_map(|epoch| single_node_map(options, incarnation, cores, ports, epoch))
        .map_err(failed)?;
    Ok((map, uuid))
}

/// A new incarnation: random, never zero. Each start of a node is a new incarnation.
pub fn fresh_incarnation() -> Incarnation {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` seeds its keys from the operating system's randomness; the time and the
    // process id make two values of one process differ even if the keys repeated.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    Incarnation(hasher.finish().max(1))
}

/// One CPU per worker: hwloc's physical cores in topology order (one processing unit each),
/// else the CPUs this process may use, else none (unpinned).
pub fn pick_cpus(cores: usize) -> Vec<Option<usize>> {
    let mut cpus = hwloc_cpus();
    if cpus.is_empty() {
        cpus = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
    }
    (0..cores)
        .map(|i| (!cpus.is_empty()).then(|| cpus[i % cpus.len()]))
        .collect()
}

fn hwloc_cpus() -> Vec<usize> {
    use hwlocality::Topology;
    use hwlocality::object::types::ObjectType;
    let Ok(topology) = Topology::new() else {
        return Vec::new();
    };
    topology
        .objects_with_type(ObjectType::Core)
        .filter_map(|core| {
            core.cpuset()
                .and_then(|set| set.first_set())
                .map(usize::from)
        })
        .collect()
}
