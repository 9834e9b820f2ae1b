//! The memory node: the service that owns the pool, recovers it, merges KN logs into the index in
//! the background, and answers the RPCs of [`proto`].

pub mod proto;
