//! The memory node: the service that owns the pool, and the serving side of every fabric backend.
//!
//! - [`memnode::MemoryNode`]: opens and recovers the pool, merges KN logs into the index in the
//!   background, and answers the RPCs of [`proto`].
//! - [`verbs`]: checks and executes one-sided verbs on the pool, for every backend that carries
//!   them here (the local fabric in this process, the tcp server).
//! - [`rpc_pool`]: runs RPCs on a bounded pool of MN threads, off the loops that receive them.
//! - [`tcp_server`]: serves verbs and RPCs to KN queue pairs over tcp, on one io_uring loop.
//! - `rdma_server` (feature `rdma`): registers the pool with the NIC and connects one RC queue
//!   pair per KN queue pair; the NIC then executes the verbs.
//! - [`client`]: the KN's blocking helper for the RPCs on slow paths.
//!
//! The initiator side of each backend, and what both sides of one share (the tcp frame codec, the
//! rdma QP exchange), is in [`crate::fabric`].

pub mod client;
pub mod memnode;
pub mod proto;
#[cfg(feature = "rdma")]
pub mod rdma_server;
pub mod rpc_pool;
pub mod sessions;
pub mod tcp_server;
pub mod verbs;
