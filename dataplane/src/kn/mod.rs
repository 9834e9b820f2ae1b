//! The KVS node (KN): pinned worker cores, each with its own [`engine::Engine`] (cache, staging
//! log block, queue pair), serving the Redis protocol and the embedded API.

pub mod constants;
pub mod control;
pub mod embedded;
pub mod engine;
pub mod info;
pub mod node;
pub mod routing;
pub mod session;
pub mod shared;
pub mod slab;
pub mod stats;
pub mod worker;

pub use engine::{
    Command, Durability, Engine, EngineConfig, EngineError, Reply, SetCond, StartError, Tag,
};
pub use stats::{EngineStats, Outcome};
