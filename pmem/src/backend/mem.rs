//! [`MemBackend`]: pool memory in anonymous process memory, for tests and benchmarks.
//!
//! It is volatile: `persist` only orders, nothing survives the process. It needs no `unsafe`:
//! the memory is a boxed slice of atomic words.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::words::Words;
use super::{Backend, check_range};

/// Anonymous, volatile pool memory.
pub struct MemBackend {
    words: Box<[AtomicU64]>,
    len: u64,
}

impl MemBackend {
    /// A zeroed backend of `len` bytes (rounded up to a word).
    pub fn new(len: u64) -> MemBackend {
        let count = len.div_ceil(8) as usize;
        let words: Box<[AtomicU64]> = (0..count).map(|_| AtomicU64::new(0)).collect();
        MemBackend { words, len }
    }

    /// A backend holding a copy of `image` (for example the image a simulated crash left).
    pub fn from_image(image: &[u8]) -> MemBackend {
        let backend = MemBackend::new(image.len() as u64);
        backend.write(0, image);
        backend
    }

    /// A copy of the whole memory.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut image = vec![0u8; self.len as usize];
        self.read(0, &mut image);
        image
    }
}

impl fmt::Debug for MemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemBackend")
            .field("len", &self.len)
            .finish()
    }
}

impl MemBackend {
    fn memory(&self) -> Words<'_> {
        Words {
            words: &self.words,
            len: self.len,
        }
    }
}

impl Backend for MemBackend {
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
    }
    fn fence(&self) {
        fence(Ordering::SeqCst);
    }
    fn persists(&self) -> bool {
        false
    }
}
