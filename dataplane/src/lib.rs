//! The dinomo dataplane: the fabric (one-sided verbs over local memory, TCP and RDMA), the
//! memory-node server, and the KVS-node workers with their caches and Redis-compatible endpoint.

pub mod cache;
pub mod fabric;
pub mod kn;
pub mod mn;
pub mod resp;
pub mod sys;
