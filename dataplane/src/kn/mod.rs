//! The KVS node (KN): pinned worker cores, each with its own [`engine::Engine`] (cache, staging
//! log block, queue pair), serving the Redis protocol and the embedded API.
//!
//! Where each concern lives:
//!
//! - [`node`]: starting a node (claiming its slots in the cluster map, attaching one engine per
//!   core, binding listeners, spawning the workers and the control thread) and stopping it.
//! - [`worker`]: one pinned, run-to-completion loop per core: the io_uring, the connections, the
//!   hand-over of requests between cores, the control inbox.
//! - [`engine`]: the request state machines of one core, one file per concern (admission and
//!   per-key order, the read path, the table header, group commit, the chain, start-up).
//! - [`routing`]: where each slot's requests go, as this node sees a map; the slots a core owns.
//! - [`control`]: the node's control thread and the workers' control inboxes.
//! - [`session`]: one client connection's RESP state, independent of sockets.
//! - [`info`]: `INFO` and `CLUSTER` replies.
//! - [`embedded`]: the API a service that links the dataplane calls.
//! - [`shared`], [`slab`], [`stats`], [`constants`]: what the cores share, the request slab,
//!   counters and named limits.

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

pub use engine::{Command, Engine, EngineConfig, EngineError, Reply, SetCond, StartError, Tag};
pub use stats::{EngineStats, Outcome};
