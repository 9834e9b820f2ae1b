//! The dinomo dataplane: the fabric (one-sided verbs over local memory, TCP and RDMA), the memory
//! node, and the KVS-node workers with their caches and Redis-compatible endpoint.
//!
//! - [`fabric`]: the verbs traits and the initiator (KN) side of each backend.
//! - [`mn`]: the memory node — the pool service and its RPCs, and the serving side of every
//!   backend: verb execution on the pool, the RPC thread pool, the tcp and rdma servers.
//! - [`kn`]: the KVS node — pinned workers, engine, routing, embedded API.
//! - [`allinone`]: a memory node and a KVS node in one process over the local fabric (`dinomo
//!   serve`, the bench's embedded target, the tests).
//! - [`cache`], [`resp`]: the KN's DAC cache and its Redis protocol codec.
//! - [`config`], [`units`]: the settings every layer names the same way (durability; the cache
//!   policy lives with the cache) and the one parser of sizes and durations.
//! - [`sys`]: the io_uring ring, slots, accept policy and eventfd that every event loop (the KN
//!   workers, the tcp verbs server) shares.
//!
//! `unsafe` lives only in `fabric`, `mn` and `sys`.

pub mod allinone;
pub mod cache;
pub mod config;
pub mod fabric;
pub mod kn;
pub mod mn;
pub mod resp;
pub mod sys;
pub mod units;
