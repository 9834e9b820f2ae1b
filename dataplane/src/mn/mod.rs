//! The memory node: the service that owns the pool, recovers it, merges KN logs into the index in
//! the background, and answers the RPCs of [`proto`] ([`memnode::MemoryNode`]); [`client`] is the
//! KN's blocking helper for those RPCs on slow paths.

pub mod client;
pub mod memnode;
pub mod proto;
pub mod sessions;
