//! The memory node: the service that owns the pool, recovers it, merges KN logs into the index in
//! the background, and answers the RPCs of [`proto`] ([`memnode::MemoryNode`]), together with the
//! serving side of the fabric: [`verbs`] executes one-sided verbs on the pool for every backend
//! that carries them here, and [`rpc_pool`] runs RPCs on a bounded pool of MN threads, off the
//! loops that receive them. [`tcp_server`] carries verbs and RPCs from KNs over tcp; with the
//! `rdma` feature, `rdma_server` registers the pool with the NIC and connects KN queue pairs.
//! [`client`] is the KN's blocking helper for the RPCs on slow paths.

pub mod client;
pub mod memnode;
pub mod proto;
#[cfg(feature = "rdma")]
pub mod rdma_server;
pub mod rpc_pool;
pub mod tcp_server;
pub mod verbs;
