//! The persistent memory pool of a dinomo memory node.
//!
//! This crate owns every persistent byte: the pool file and its superblock, the persistence seam
//! (a [`Backend`] trait with a file-mapped, an anonymous and a crash-simulating implementation),
//! the log-block allocator, the per-core operation logs and the recovery entry point. The on-pool
//! format is specified in `pmem/FORMAT.md`; the code follows that document.
//!
//! The pieces, bottom up: [`backend`] (memory and persistence), [`layout`] (regions and the
//! superblock), [`pool`] (typed access to fixed structures), [`entry`] (log entry codec),
//! [`staging`] (batching entries into a commit plan), [`log`] (chains: walk, scan, write),
//! [`alloc`] (log blocks), [`recovery`], [`cluster_area`] and [`index_format`] (the index's bytes).

pub mod alloc;
pub mod backend;
pub mod cluster_area;
mod codec;
pub mod constants;
pub mod entry;
pub mod error;
pub mod index_format;
pub mod layout;
pub mod log;
pub mod pool;
pub mod recovery;
pub mod staging;
pub mod types;

pub use alloc::BlockAllocator;
pub use backend::{
    Backend, CrashMode, CrashSim, FileBackend, FileOptions, MemBackend, SharedBackend,
};
pub use codec::round_up;
pub use entry::{Entry, Op};
pub use error::{AppendError, EntryError, PoolError};
pub use layout::{Layout, PoolConfig};
pub use log::{LogWriter, WriterOptions};
pub use pool::{BlockState, Pool, Tail};
pub use recovery::{ChainReport, RecoveryReport};
pub use staging::{CommitPlan, EntryLoc, Staging};
pub use types::{BlockId, ChainId, Epoch, PoolOffset, Version};
