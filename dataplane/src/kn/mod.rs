//! The KVS node (KN): pinned worker cores, each with its own [`engine::Engine`] (cache, staging
//! log block, queue pair), serving the Redis protocol and the embedded API.

pub mod constants;
pub mod engine;
pub mod session;
pub mod stats;

pub use engine::{
    Command, Durability, Engine, EngineConfig, EngineError, Reply, SetCond, StartError, Tag,
};
pub use stats::{EngineStats, Outcome};
