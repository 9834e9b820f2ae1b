//! The pool-resident hash index of dinomo and the merge of operation logs into it.
//!
//! The index maps every key to its newest log entry. It lives in the pool (pmem FORMAT.md §8), is
//! written only by the memory node (merge threads, lock-free with compare-and-swap on 8-byte
//! slots, log-free), and is read by compute nodes remotely with one-sided reads through a
//! resumable [`probe::Probe`].
//!
//! Modules: [`index`] (the table, updates, resize, indirect cells), [`probe`] (lookups as a
//! resumable state machine over raw bytes), [`merge`] (folding log chains into the index),
//! [`recovery`] (rebuilding a memory node after a crash), [`arena`] (allocation of index memory)
//! and [`hash`].

pub mod arena;
pub mod error;
pub mod hash;
pub mod index;
pub mod merge;
pub mod probe;
pub mod recovery;
mod sync;

pub use error::{IndexError, Result};
pub use hash::{KeyHasher, key_hash};
pub use index::{Index, IndexConfig, Outcome, Table};
pub use merge::{FULL_SWEEP_EVERY_PASSES, MergeReport, MergeScope, Merger};
pub use probe::{Hit, Probe, Step};
pub use recovery::{Recovered, recover};
