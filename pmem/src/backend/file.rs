//! [`FileBackend`]: the pool file mapped `MAP_SHARED`, persisted the way the medium needs.
//!
//! On a DAX file (persistent memory) the mapping is made with `MAP_SYNC` and a persist is a
//! cache-line write-back per line — `clwb` where the CPU has it, else `clflushopt`, else
//! `clflush`, chosen at run time from CPUID — followed by `sfence`. On an ordinary file a
//! persist is an `msync` of the pages covering the range. With `persist: false` (the `memory`
//! durability setting) a persist does nothing: the data still survives a crash of the process,
//! because the kernel owns the pages of a shared file mapping, but not a power loss.
//!
//! With `msync`, a flush only records the pages to write back and the next fence writes them all,
//! coalesced, so that the many small flushes of a merge batch cost a few system calls, not one
//! each. A fence holds the record's lock while it syncs, so a fence that returns has synced every
//! page flushed before it, whichever thread flushed it.
//!
//! An `msync` failure cannot be returned through the [`Backend`] trait; it is recorded and
//! every later call to [`FileBackend::failure`] reports it, so the owner stops taking writes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::words::Words;
use super::{Backend, check_range};
use crate::constants::{LINE, PAGE};
use crate::error::PoolError;

/// How to open the pool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist; its size is the pool size.
    Existing,
    /// Create a file of `size` bytes; fail if a non-empty file is already there.
    CreateNew { size: u64 },
    /// Create or truncate the file to `size` bytes, destroying what it held. Only for an
    /// explicit request by the operator.
    Overwrite { size: u64 },
}

/// Options of a file mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Persist writes to media (`flush` durability). When false, persists are no-ops.
    pub persist: bool,
    /// Take an exclusive `flock` on the file, so that two memory nodes never serve one pool.
    pub lock: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            persist: true,
            lock: true,
        }
    }
}

/// How a persist reaches media; chosen when the file is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMethod {
    /// Persists do nothing (`memory` durability).
    None,
    /// `msync` of the covering pages (an ordinary file).
    Msync,
    /// `clwb` per line, then `sfence` (DAX, modern CPUs).
    Clwb,
    /// `clflushopt` per line, then `sfence` (DAX).
    Clflushopt,
    /// `clflush` per line (DAX, old CPUs); `sfence` is harmless after it.
    Clflush,
}

/// A pool file mapped into this process.
pub struct FileBackend {
    path: PathBuf,
    _file: File,
    base: *mut u8,
    len: u64,
    method: FlushMethod,
    failure: Mutex<Option<String>>,
    /// Page ranges flushed but not yet synced (`msync` method), bounded by coalescing.
    pending: Mutex<Vec<(u64, u64)>>,
}

// SAFETY: the mapping is shared memory that is only accessed through atomic words (see
// `words()`), so handing the backend to other threads cannot create a data race; the raw
// pointer is never exposed.
unsafe impl Send for FileBackend {}
// SAFETY: as above: every access to the mapping is an atomic operation.
unsafe impl Sync for FileBackend {}

impl FileBackend {
    /// Opens (or creates) and maps the pool file.
    pub fn open(
        path: &Path,
        mode: OpenMode,
        options: FileOptions,
    ) -> Result<FileBackend, PoolError> {
        let file = match mode {
            OpenMode::Existing => OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        PoolError::NotFound(path.to_path_buf())
                    } else {
                        PoolError::io(format!("opening {}", path.display()), e)
                    }
                })?,
            OpenMode::CreateNew { .. } => {
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // An empty file (for example one made by `mktemp`) holds nothing to lose.
                        let file = OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(path)
                            .map_err(|e| PoolError::io(format!("opening {}", path.display()), e))?;
                        let len = file
                            .metadata()
                            .map_err(|e| PoolError::io(format!("stat {}", path.display()), e))?
                            .len();
                        if len != 0 {
                            return Err(PoolError::AlreadyExists(path.to_path_buf()));
                        }
                        file
                    }
                    Err(e) => return Err(PoolError::io(format!("creating {}", path.display()), e)),
                }
            }
            OpenMode::Overwrite { .. } => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| PoolError::io(format!("creating {}", path.display()), e))?,
        };
        if options.lock {
            // SAFETY: flock on a valid, owned file descriptor has no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                return Err(PoolError::io(
                    format!(
                        "locking {} (is another memory node serving it?)",
                        path.display()
                    ),
                    err,
                ));
            }
        }
        match mode {
            OpenMode::CreateNew { size } | OpenMode::Overwrite { size } => {
                file.set_len(size)
                    .map_err(|e| PoolError::io(format!("sizing {}", path.display()), e))?;
            }
            OpenMode::Existing => {}
        }
        let len = file
            .metadata()
            .map_err(|e| PoolError::io(format!("stat {}", path.display()), e))?
            .len();
        if len == 0 {
            return Err(PoolError::TooSmall {
                path: path.to_path_buf(),
                actual: 0,
                needed: PAGE,
            });
        }
        if len % 8 != 0 {
            return Err(PoolError::Corrupt(format!(
                "{} is {len} bytes, not a whole number of words",
                path.display()
            )));
        }
        let (base, method) = map(&file, len, options.persist)
            .map_err(|e| PoolError::io(format!("mapping {}", path.display()), e))?;
        Ok(FileBackend {
            path: path.to_path_buf(),
            _file: file,
            base,
            len,
            method,
            failure: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// How persists reach media for this mapping.
    pub fn flush_method(&self) -> FlushMethod {
        self.method
    }

    /// The first persistence failure, if any: after one, nothing written since is known durable.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn memory(&self) -> Words<'_> {
        Words {
            words: self.words(),
            len: self.len,
        }
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is a live mapping of `len` bytes (a multiple of 8), page-aligned and so
        // word-aligned, unmapped only in `drop`, which needs `&mut self`, so it outlives this
        // borrow. `AtomicU64` has the size and alignment of `u64`, and atomics are the right
        // type for memory other threads and processes change concurrently.
        unsafe {
            std::slice::from_raw_parts(self.base.cast::<AtomicU64>(), (self.len / 8) as usize)
        }
    }

    /// The page-aligned range `[start, end)` covering `[off, off + len)`, clamped to the file.
    fn pages_covering(&self, off: u64, len: u64) -> (u64, u64) {
        (
            off / PAGE * PAGE,
            ((off + len).div_ceil(PAGE) * PAGE).min(self.len),
        )
    }

    /// Writes back every recorded page range (the caller holds the record's lock).
    fn sync_pending(&self, pending: &mut Vec<(u64, u64)>) {
        coalesce(pending);
        for (start, end) in pending.drain(..) {
            // SAFETY: [start, end) lies inside the mapping (page-aligned, clamped to len when it
            // was recorded).
            let rc = unsafe {
                libc::msync(
                    self.base.add(start as usize).cast(),
                    (end - start) as usize,
                    libc::MS_SYNC,
                )
            };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                self.record_failure(format!("msync of {}: {err}", self.path.display()));
            }
        }
    }

    fn record_failure(&self, what: String) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(what);
        }
    }
}

/// Flushed page ranges kept before they are coalesced.
const MSYNC_PENDING_MAX: usize = 4096;

/// Sorts and merges overlapping or adjacent ranges.
fn coalesce(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

/// Maps the file shared; tries `MAP_SYNC` first when persisting, to detect DAX.
fn map(file: &File, len: u64, persist: bool) -> std::io::Result<(*mut u8, FlushMethod)> {
    let fd = file.as_raw_fd();
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    if persist {
        // SAFETY: mapping a file we hold open; the kernel validates every argument and returns
        // MAP_FAILED (checked) on error. No existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                prot,
                libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
                fd,
                0,
            )
        };
        if ptr != libc::MAP_FAILED {
            return Ok((ptr.cast(), cache_line_method()));
        }
    }
    // SAFETY: as above.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            prot,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok((
        ptr.cast(),
        if persist {
            FlushMethod::Msync
        } else {
            FlushMethod::None
        },
    ))
}

/// The best cache-line write-back instruction this CPU has.
fn cache_line_method() -> FlushMethod {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 7, sub-leaf 0: EBX bit 24 is CLWB, bit 23 is CLFLUSHOPT.
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        if leaf7.ebx & (1 << 24) != 0 {
            return FlushMethod::Clwb;
        }
        if leaf7.ebx & (1 << 23) != 0 {
            return FlushMethod::Clflushopt;
        }
        FlushMethod::Clflush
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        FlushMethod::Msync
    }
}

impl Drop for FileBackend {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `open`, and no borrow of it can
        // outlive `self`.
        unsafe {
            libc::munmap(self.base.cast(), self.len as usize);
        }
    }
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("method", &self.method)
            .finish()
    }
}

impl Backend for FileBackend {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, off: u64, dst: &mut [u8]) {
        self.memory().read(off, dst);
    }
    fn write(&self, off: u64, src: &[u8]) {
        self.memory().write(off, src);
    }
    fn load(&self, off: u64) -> u64 {
        self.memory().load(off)
    }
    fn store(&self, off: u64, value: u64) {
        self.memory().store(off, value);
    }
    fn compare_exchange(&self, off: u64, current: u64, new: u64) -> Result<u64, u64> {
        self.memory().compare_exchange(off, current, new)
    }
    fn fetch_add(&self, off: u64, add: u64) -> u64 {
        self.memory().fetch_add(off, add)
    }
    fn flush(&self, off: u64, len: u64) {
        check_range(self.len, off, len);
        if len == 0 {
            return;
        }
        match self.method {
            FlushMethod::None => {}
            FlushMethod::Msync => {
                let (start, end) = self.pages_covering(off, len);
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                match pending.last_mut() {
                    Some(last) if start <= last.1 && end >= last.0 => {
                        *last = (last.0.min(start), last.1.max(end));
                    }
                    _ => pending.push((start, end)),
                }
                if pending.len() >= MSYNC_PENDING_MAX {
                    // Too many scattered pages: write them back now rather than grow the record.
                    self.sync_pending(&mut pending);
                }
            }
            FlushMethod::Clwb | FlushMethod::Clflushopt | FlushMethod::Clflush => {
                let mut line = off / LINE * LINE;
                while line < off + len {
                    // SAFETY: `line` is inside the mapping (checked range, rounded down to a line
                    // that starts inside it); the write-back instructions do not change memory
                    // contents, and the CPU supports the chosen one (CPUID, at map time).
                    unsafe { write_back(self.method, self.base.add(line as usize)) };
                    line += LINE;
                }
            }
        }
    }
    fn fence(&self) {
        match self.method {
            FlushMethod::Clwb | FlushMethod::Clflushopt | FlushMethod::Clflush => {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: sfence only orders stores; SSE is baseline on x86-64.
                unsafe {
                    std::arch::x86_64::_mm_sfence()
                };
            }
            FlushMethod::Msync => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                self.sync_pending(&mut pending);
            }
            FlushMethod::None => fence(Ordering::SeqCst),
        }
    }
    fn persists(&self) -> bool {
        self.method != FlushMethod::None
    }
    fn prepare(&self, off: u64, len: u64) -> Result<(), String> {
        check_range(self.len, off, len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: fallocate with mode 0 on an owned, open descriptor only allocates disk blocks
        // for holes in the range (inside the file's size); it never changes the file's bytes.
        let rc = unsafe {
            libc::fallocate(
                self._file.as_raw_fd(),
                0,
                off as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // A file system without fallocate keeps the range sparse; anything else (ENOSPC,
            // EDQUOT, EIO) means the range cannot be backed and must not be handed out.
            if !matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
            ) {
                return Err(format!(
                    "reserving {len} bytes of {} at offset {off}: {err}",
                    self.path.display()
                ));
            }
        }
        if self.method != FlushMethod::None {
            // Pre-faulting writable dirties every page of the range at once; where persists
            // are write-backs, those pages would then compete for the disk with them.
            return Ok(());
        }
        let (start, end) = self.pages_covering(off, len);
        // SAFETY: [start, end) is page-aligned and inside the live mapping; MADV_POPULATE_WRITE
        // only faults the pages in writable, as a write would, without changing their contents.
        // It may fail (kernels before 5.14); the pages then fault when first written instead.
        unsafe {
            libc::madvise(
                self.base.add(start as usize).cast(),
                (end - start) as usize,
                libc::MADV_POPULATE_WRITE,
            );
        }
        Ok(())
    }
}

/// Writes one line back to media.
///
/// # Safety
/// `p` must point into a live mapping, and the CPU must support the instruction `method` names.
#[cfg(target_arch = "x86_64")]
unsafe fn write_back(method: FlushMethod, p: *mut u8) {
    // SAFETY: the caller guarantees `p` is mapped and the instruction is supported; none of
    // these instructions modify memory or registers other than flags-free cache state.
    unsafe {
        match method {
            FlushMethod::Clwb => {
                std::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags))
            }
            FlushMethod::Clflushopt => {
                std::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags))
            }
            _ => std::arch::x86_64::_mm_clflush(p),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn write_back(_method: FlushMethod, _p: *mut u8) {}
