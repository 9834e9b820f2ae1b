//! The persistence seam: every access of pool code to pool memory goes through [`Backend`].
//!
//! A backend is a flat byte range with word atomics and explicit persistence. Three backends
//! exist: [`FileBackend`] (a `MAP_SHARED` mapping of the pool file, persisted with cache-line
//! flushes on DAX or `msync` otherwise), [`MemBackend`] (anonymous memory for tests and benches)
//! and [`CrashSim`] (keeps a durable image, counts fences, and produces the image a crash would
//! leave at any fence).
//!
//! Invariants every backend keeps: word operations take 8-aligned offsets; `load`/`store`/CAS/FAA
//! are atomic and ordered (acquire/release); `read`/`write` are not atomic as a whole but never
//! tear an aligned word; an offset outside the backend is a bug in the caller and panics rather
//! than touching memory outside the pool (callers that take offsets from outside — the fabric's
//! serving side — check them first and answer with an error).

mod crash;
mod file;
mod mem;
mod words;

pub use crash::{CrashMode, CrashSim, CrashSimStats};
pub use file::{FileBackend, FileOptions, FlushMethod, OpenMode};
pub use mem::MemBackend;

use std::fmt;
use std::sync::Arc;

/// A shared handle to a backend: the pool, the index and the fabric all hold one.
pub type SharedBackend = Arc<dyn Backend>;

/// Byte-addressed persistent memory with word atomics.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the backend has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `dst.len()` bytes starting at `off` into `dst`.
    fn read(&self, off: u64, dst: &mut [u8]);
    /// Copies `src` to `off`. Not persistent until flushed and fenced.
    fn write(&self, off: u64, src: &[u8]);
    /// Atomic acquire load of the word at `off` (8-aligned).
    fn load(&self, off: u64) -> u64;
    /// Atomic release store of the word at `off` (8-aligned).
    fn store(&self, off: u64, value: u64);
    /// Atomic compare-and-swap of the word at `off`; returns the previous value either way
    /// (`Ok` if it was `current` and is now `new`).
    fn compare_exchange(&self, off: u64, current: u64, new: u64) -> Result<u64, u64>;
    /// Atomic fetch-and-add of the word at `off`; returns the previous value.
    fn fetch_add(&self, off: u64, add: u64) -> u64;
    /// Starts writing back the lines covering `[off, off + len)` to media.
    fn flush(&self, off: u64, len: u64);
    /// Waits until every flush issued before it has reached media.
    fn fence(&self);
    /// Flush, then fence: the range is persistent when this returns.
    fn persist(&self, off: u64, len: u64) {
        self.flush(off, len);
        self.fence();
    }
    /// Readies `[off, off + len)` for writing soon, without changing its contents: a file
    /// backend reserves the file's disk blocks under the range (so that a full disk is an error
    /// here, not a fault when the mapping is written) and, when it does not persist by writing
    /// pages back, pre-faults its pages writable (so that the writer does not take the faults).
    /// Memory backends have nothing to do.
    fn prepare(&self, off: u64, len: u64) -> Result<(), String> {
        check_range(self.len(), off, len);
        Ok(())
    }
    /// Whether `persist` does anything: false when the backend is volatile by choice
    /// (`memory` durability), in which case callers may skip building flush ranges.
    fn persists(&self) -> bool {
        true
    }
    /// Writes zeros over `[off, off + len)`.
    fn zero(&self, off: u64, len: u64) {
        // Small enough for the stacks of model-checking threads.
        const CHUNK: usize = 4096;
        let zeros = [0u8; CHUNK];
        let mut at = off;
        let end = off + len;
        while at < end {
            let n = (end - at).min(CHUNK as u64) as usize;
            self.write(at, &zeros[..n]);
            at += n as u64;
        }
    }
}

/// Panics unless `[off, off + len)` lies inside a backend of `size` bytes.
#[inline]
#[track_caller]
pub(crate) fn check_range(size: u64, off: u64, len: u64) {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= size),
        "pool access [{off:#x}, +{len:#x}) outside a pool of {size:#x} bytes"
    );
}

/// Panics unless the word at `off` is aligned and inside the backend.
#[inline]
#[track_caller]
pub(crate) fn check_word(size: u64, off: u64) {
    assert!(
        off.is_multiple_of(8),
        "pool word access at unaligned offset {off:#x}"
    );
    check_range(size, off, 8);
}
