//! The persistent memory pool of a dinomo memory node.
//!
//! This crate owns every persistent byte: the pool file and its superblock, the persistence seam
//! (a [`Backend`] trait with a file-mapped, an anonymous and a crash-simulating implementation),
//! the log-block allocator, the per-core operation logs and the recovery entry point. The on-pool
//! format is specified in `pmem/FORMAT.md`; the code follows that document.
