//! The all-in-one wiring: a memory node and a KVS node in one process, the KN reaching the pool
//! over the `local` fabric. `dinomo serve` and the bench's embedded target run [`AllInOne`];
//! the testkit's in-memory memory node and the tests that wire their own use [`local_fabric`].
//!
//! - [`local_fabric`]: the local fabric to a memory node — verbs on its pool, RPCs answered by
//!   the node itself.
//! - [`AllInOne`]: opens (or creates) the pool file, recovers it, starts the merge threads and a
//!   KVS node over the local fabric whose `INFO` shows the memory node's counters;
//!   [`AllInOne::stop`] stops the KN first (every staged write is acknowledged or failed) and then
//!   shuts the memory node down, so the clean-stop mark comes after the last write. Dropping it
//!   does the same, ignoring errors.
//!
//! One [`Durability`] serves both nodes: the KN acknowledges by it and the memory node flushes by
//! it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Durability;
use crate::fabric::RpcHandler;
use crate::fabric::local::{LocalFabric, LocalOptions};
use crate::kn::node::{KnNode, KnOptions, NodeError};
use crate::kn::shared::MnStatsSource;
use crate::mn::memnode::{
    CreateMode, MemnodeConfig, MemoryNode, MnError, NodeOptions, ShutdownReport,
};

/// The local fabric to `memnode`: one-sided verbs on its pool, RPCs answered by the node itself,
/// every completion delayed by `rtt` (zero: at once).
pub fn local_fabric(memnode: &Arc<MemoryNode>, rtt: Duration) -> LocalFabric {
    let handler: Arc<dyn RpcHandler> = memnode.clone();
    LocalFabric::new(
        Arc::clone(memnode.backend()),
        LocalOptions::default()
            .with_rtt(rtt)
            .with_rpc_handler(handler),
    )
}

/// Settings of an [`AllInOne`].
#[derive(Debug, Clone)]
pub struct AllInOneConfig {
    /// The pool file.
    pub pool: PathBuf,
    pub create: CreateMode,
    /// When a write is acknowledged; it replaces the durability in `kn`'s engine settings.
    pub durability: Durability,
    /// The memory node's merge threads and index settings.
    pub memnode: NodeOptions,
    /// Round-trip delay the local fabric injects.
    pub rtt: Duration,
    pub kn: KnOptions,
}

/// Why an [`AllInOne`] did not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AllInOneError {
    #[error("cannot open the pool {}: {source}", .path.display())]
    Open { path: PathBuf, source: MnError },
    #[error("cannot start the memory node's merge threads: {0}")]
    Merge(#[source] MnError),
    #[error("cannot start the KVS node: {0}")]
    Start(#[source] NodeError),
    #[error("stopping the KVS node: {0}")]
    Stop(#[source] NodeError),
    #[error("stopping the memory node: {0}")]
    Shutdown(#[source] MnError),
}

/// A memory node and a KVS node in this process.
pub struct AllInOne {
    memnode: Arc<MemoryNode>,
    /// Present until [`AllInOne::stop`] or drop.
    node: Option<KnNode>,
}

impl std::fmt::Debug for AllInOne {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllInOne")
            .field("boot", &self.memnode.boot())
            .field("node", &self.node)
            .finish()
    }
}

impl AllInOne {
    /// Opens the pool, starts the merge threads and the KVS node. If the KVS node does not
    /// start, the memory node is shut down again (nothing was served, so the stop is clean).
    pub fn start(config: AllInOneConfig) -> Result<AllInOne, AllInOneError> {
        let memnode = MemoryNode::open(MemnodeConfig {
            pool: config.pool.clone(),
            create: config.create,
            durability: config.durability,
            options: config.memnode,
        })
        .map_err(|source| AllInOneError::Open {
            path: config.pool,
            source,
        })?;
        let started = memnode
            .start_background()
            .map_err(AllInOneError::Merge)
            .and_then(|_| {
                let mut options = config.kn;
                options.engine.durability = config.durability;
                let stats: Arc<dyn MnStatsSource> = memnode.clone();
                KnNode::start(&local_fabric(&memnode, config.rtt), options, Some(stats))
                    .map_err(AllInOneError::Start)
            });
        match started {
            Ok(node) => Ok(AllInOne {
                memnode,
                node: Some(node),
            }),
            Err(e) => {
                let _ = memnode.shutdown();
                Err(e)
            }
        }
    }

    /// The memory node: its startup report, counters and failure.
    pub fn memnode(&self) -> &Arc<MemoryNode> {
        &self.memnode
    }

    /// The KVS node.
    pub fn node(&self) -> &KnNode {
        // Only `stop` and `drop` take the node, and both consume `self`.
        self.node
            .as_ref()
            .expect("the KVS node runs until the stop")
    }

    /// Stops the KVS node, then shuts the memory node down (its last merge and clean-stop mark).
    /// The pool file stays open (and locked) until the node's last
    /// [`crate::kn::embedded::StoreHandle`] is dropped too: the handles share the node's state.
    pub fn stop(mut self) -> Result<ShutdownReport, AllInOneError> {
        if let Some(node) = self.node.take() {
            node.stop().map_err(AllInOneError::Stop)?;
        }
        self.memnode.shutdown().map_err(AllInOneError::Shutdown)
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = node.stop();
            let _ = self.memnode.shutdown();
        }
    }
}
