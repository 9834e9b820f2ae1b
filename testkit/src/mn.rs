//! Memory-node side test support.
//!
//! - [`MemMn`]: a memory node on a fresh in-memory pool (or one a test reopened), served over
//!   the local fabric as `dinomo serve` serves it ([`dinomo_dataplane::allinone::local_fabric`]).
//! - [`map_of_every_chain`] and [`claim_every_chain`]: the map of one node whose cores write
//!   every chain of the pool, and storing it for [`INCARNATION`], so that a test's connections
//!   may attach any chain. It is the one definition of that map for every test.
//! - [`ChainWriter`]: a KN worker's chain writer over any fabric — it stages entries, commits a
//!   batch as one doorbell of the data WRITEs followed by the tail WRITEs, and asks for a spare
//!   block when staging needs one. A batch is acknowledged when its last WRITE has completed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dinomo_control::{ClusterMap, CoreId, Incarnation, KnId};
use dinomo_dataplane::allinone::local_fabric;
use dinomo_dataplane::fabric::local::LocalFabric;
use dinomo_dataplane::fabric::{CompletionData, Fabric, QueuePair, Verb, WrId, wait_for_until};
use dinomo_dataplane::mn::client::{ClientError, MnClient, rpc};
use dinomo_dataplane::mn::memnode::{MemoryNode, NodeOptions};
use dinomo_dataplane::mn::proto::{Request, Response};
use dinomo_pmem::error::AppendError;
use dinomo_pmem::{
    BlockId, ChainId, Epoch, Layout, MemBackend, Op, PoolConfig, SharedBackend, Staging, Version,
};

use crate::{HANG, INCARNATION};

/// Cores a map of one node may have (its ports are 1000 and up).
const CORES_MAX: u32 = 256;
/// The host the claimed map names.
const HOST: &str = "writer";

/// A map of one node, `kn` run by `incarnation` at `host`, whose cores write chains 0 to
/// `chains - 1` (at most [`CORES_MAX`]), core `c` on port `1000 + c`.
pub fn map_of_every_chain(
    chains: u32,
    kn: KnId,
    incarnation: Incarnation,
    host: &str,
    epoch: Epoch,
) -> ClusterMap {
    let cores: Vec<(CoreId, u16, ChainId)> = (0..chains.min(CORES_MAX))
        .map(|c| (CoreId(c as u16), 1000 + c as u16, ChainId(c)))
        .collect();
    ClusterMap::single_node(kn, incarnation, host, &cores, epoch).expect("a valid map")
}

/// Says hello on `qp` as `incarnation` and stores, with the next epoch, the map that gives it
/// the pool's first `chains` chains; returns the stored map.
pub fn claim_every_chain(
    qp: &mut dyn QueuePair,
    chains: u32,
    incarnation: Incarnation,
) -> Result<ClusterMap, ClientError> {
    let mut client = MnClient::new(qp);
    client.hello(incarnation)?;
    client.store_next_map(|epoch| {
        Ok(map_of_every_chain(
            chains,
            KnId(1),
            incarnation,
            HOST,
            epoch,
        ))
    })
}

/// A memory node and the local fabric to it.
pub struct MemMn {
    pub backend: SharedBackend,
    pub node: Arc<MemoryNode>,
    pub fabric: LocalFabric,
    claimed: OnceLock<()>,
}

impl MemMn {
    /// A node on a fresh in-memory pool made with `config`; merge threads are not started.
    pub fn new(config: &PoolConfig, options: NodeOptions) -> MemMn {
        let backend: SharedBackend = Arc::new(MemBackend::new(config.size));
        let node = MemoryNode::open_backend(Arc::clone(&backend), Some(config), options)
            .expect("a new pool opens");
        MemMn::serve(backend, node)
    }

    /// Serves `node`, whose pool is `backend` (a pool a test reopened).
    pub fn serve(backend: SharedBackend, node: Arc<MemoryNode>) -> MemMn {
        let fabric = local_fabric(&node, Duration::ZERO);
        MemMn {
            backend,
            node,
            fabric,
            claimed: OnceLock::new(),
        }
    }

    pub fn layout(&self) -> Layout {
        *self.node.pool().layout()
    }

    /// A new queue pair that said hello as [`INCARNATION`].
    pub fn qp(&self) -> Box<dyn QueuePair> {
        let mut qp = self.fabric.connect().expect("local queue pair");
        MnClient::new(&mut *qp).hello(INCARNATION).expect("hello");
        qp
    }

    /// Stores the map that gives [`INCARNATION`] every chain, the first time it is called.
    pub fn claim(&self) {
        self.claimed.get_or_init(|| {
            let mut qp = self.fabric.connect().expect("local queue pair");
            claim_every_chain(&mut *qp, self.layout().chain_count, INCARNATION)
                .expect("the test map is stored");
        });
    }

    /// A queue pair that may attach any chain ([`MemMn::claim`], then [`MemMn::qp`]).
    pub fn attach_qp(&self) -> Box<dyn QueuePair> {
        self.claim();
        self.qp()
    }
}

/// A KN worker's chain writer. Its errors are sentences for the test's failure message.
pub struct ChainWriter {
    qp: Box<dyn QueuePair>,
    layout: Layout,
    chain: ChainId,
    staging: Staging,
    next_seq: u64,
    next_wr: u64,
}

fn call(qp: &mut dyn QueuePair, request: Request) -> Result<Response, String> {
    rpc(qp, &request).map_err(|e| format!("{request:?}: {e}"))
}

impl ChainWriter {
    /// Attaches `chain` on `qp` (a connection whose incarnation the map gives the chain) of the
    /// pool with `layout`; batches hold at most `batch_bytes_max` bytes.
    pub fn attach(
        mut qp: Box<dyn QueuePair>,
        layout: Layout,
        chain: ChainId,
        batch_bytes_max: u64,
    ) -> Result<ChainWriter, String> {
        let Response::Attached {
            head,
            used,
            next_seq,
            ..
        } = call(&mut *qp, Request::Attach { chain })?
        else {
            return Err("Attach answered with something else".into());
        };
        Ok(ChainWriter {
            staging: Staging::new(&layout, head, used, batch_bytes_max, false),
            qp,
            layout,
            chain,
            next_seq,
            next_wr: 0,
        })
    }

    /// Stages an entry (committing the batch first when it is full); returns the block the
    /// entry went to.
    pub fn append(&mut self, op: Op, key: &[u8], value: &[u8]) -> Result<BlockId, String> {
        loop {
            let version = Version {
                epoch: Epoch(1),
                seq: self.next_seq,
            };
            match self.staging.append(op, key, value, version) {
                Ok(at) => {
                    self.next_seq += 1;
                    return Ok(at.block);
                }
                Err(AppendError::NeedBlock) => {
                    let spare = self.spare()?;
                    self.staging.set_spare(spare);
                }
                Err(AppendError::BatchFull) => self.commit()?,
                Err(e) => return Err(format!("append: {e}")),
            }
        }
    }

    /// Commits the staged batch as one doorbell; `Ok` once its last WRITE (the commit point) has
    /// completed. Nothing staged is nothing to do.
    pub fn commit(&mut self) -> Result<(), String> {
        let plan = self.staging.plan(&self.layout);
        if plan.tails.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        for w in &plan.writes {
            batch.push(Verb::Write {
                remote: w.to,
                data: self.staging.bytes(w).to_vec(),
                persist: true,
            });
        }
        for &(at, word) in &plan.tails {
            batch.push(Verb::Write {
                remote: at,
                data: word.to_le_bytes().to_vec(),
                persist: true,
            });
        }
        let first = self.next_wr + 1;
        self.next_wr += batch.len() as u64;
        let ids: Vec<WrId> = (first..=self.next_wr).map(WrId).collect();
        self.qp
            .post_batch(ids.iter().copied().zip(batch).collect())
            .map_err(|e| format!("post: {e}"))?;
        let mut others = Vec::new();
        let deadline = Instant::now() + HANG;
        // The last WRITE is the commit point; the others executed before it.
        for &wr in ids.iter().rev() {
            let c = wait_for_until(&mut *self.qp, wr, &mut others, deadline)
                .ok_or("a WRITE never completed")?;
            if c.result != Ok(CompletionData::None) {
                return Err(format!("WRITE {wr:?}: {:?}", c.result));
            }
        }
        if !others.is_empty() {
            return Err(format!("completions of no WRITE of the batch: {others:?}"));
        }
        self.staging.committed();
        Ok(())
    }

    /// One spare block for the chain, handed out and not linked yet.
    pub fn spare(&mut self) -> Result<BlockId, String> {
        let Response::Blocks(blocks) = call(
            &mut *self.qp,
            Request::AllocBlocks {
                chain: self.chain,
                count: 1,
            },
        )?
        else {
            return Err("AllocBlocks answered with something else".into());
        };
        blocks.first().copied().ok_or_else(|| "no block".into())
    }

    /// The head block and the bytes committed to it.
    pub fn head(&self) -> (BlockId, u64) {
        self.staging.head()
    }

    /// The sequence number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The writer's connection, for a test that posts on it directly.
    pub fn qp(&mut self) -> &mut dyn QueuePair {
        &mut *self.qp
    }
}
