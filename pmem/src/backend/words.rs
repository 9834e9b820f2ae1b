//! Copies between local buffers and shared pool memory seen as a slice of atomic words.
//!
//! Pool memory is shared with other threads, other processes and (on the fabric) remote peers,
//! so it is only ever touched through atomics: bulk copies are relaxed word loads and stores,
//! which compile to plain moves on x86-64 but keep concurrent access free of data races.
//! Bytes at unaligned edges are merged into their word with a compare-and-swap loop so that a
//! neighbouring write to the same word is never lost. Ordering comes from the callers' acquire
//! and release word operations (a tail store publishes the entries written before it).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_range, check_word};

/// Pool memory seen as words: what the mapped and the anonymous backends share. Every access
/// checks its range against `len` first (a caller's bug panics; nothing outside is touched).
pub(crate) struct Words<'a> {
    pub words: &'a [AtomicU64],
    pub len: u64,
}

impl Words<'_> {
    pub fn read(&self, off: u64, dst: &mut [u8]) {
        check_range(self.len, off, dst.len() as u64);
        read(self.words, off, dst);
    }
    pub fn write(&self, off: u64, src: &[u8]) {
        check_range(self.len, off, src.len() as u64);
        write(self.words, off, src);
    }
    fn word(&self, off: u64) -> &AtomicU64 {
        check_word(self.len, off);
        &self.words[(off / 8) as usize]
    }
    pub fn load(&self, off: u64) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }
    pub fn store(&self, off: u64, value: u64) {
        self.word(off).store(value, Ordering::Release);
    }
    pub fn compare_exchange(&self, off: u64, current: u64, new: u64) -> Result<u64, u64> {
        self.word(off)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    pub fn fetch_add(&self, off: u64, add: u64) -> u64 {
        self.word(off).fetch_add(add, Ordering::AcqRel)
    }
}

/// Reads `dst.len()` bytes at byte offset `off` of `words`.
pub(crate) fn read(words: &[AtomicU64], off: u64, dst: &mut [u8]) {
    let head = (((8 - off % 8) % 8) as usize).min(dst.len());
    let (head_dst, rest) = dst.split_at_mut(head);
    if head > 0 {
        let bytes = words[(off / 8) as usize]
            .load(Ordering::Relaxed)
            .to_le_bytes();
        let in_word = (off % 8) as usize;
        head_dst.copy_from_slice(&bytes[in_word..in_word + head]);
    }
    let first = ((off + head as u64) / 8) as usize;
    let n = rest.len() / 8;
    let (body, tail) = rest.split_at_mut(n * 8);
    for (w, chunk) in words[first..first + n].iter().zip(body.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    if !tail.is_empty() {
        let bytes = words[first + n].load(Ordering::Relaxed).to_le_bytes();
        let len = tail.len();
        tail.copy_from_slice(&bytes[..len]);
    }
}

/// Writes `src` at byte offset `off` of `words`.
pub(crate) fn write(words: &[AtomicU64], off: u64, src: &[u8]) {
    let head = (((8 - off % 8) % 8) as usize).min(src.len());
    if head > 0 {
        merge(&words[(off / 8) as usize], (off % 8) as usize, &src[..head]);
    }
    let rest = &src[head..];
    let first = ((off + head as u64) / 8) as usize;
    let n = rest.len() / 8;
    let chunks = rest.chunks_exact(8);
    let tail = chunks.remainder();
    for (w, chunk) in words[first..first + n].iter().zip(chunks) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        w.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        merge(&words[first + n], 0, tail);
    }
}

/// Replaces `bytes.len()` bytes of one word, starting at byte `at` of it, without disturbing
/// the others even if another thread writes them concurrently.
fn merge(word: &AtomicU64, at: usize, bytes: &[u8]) {
    let mut current = word.load(Ordering::Relaxed);
    loop {
        let mut b = current.to_le_bytes();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        match word.compare_exchange_weak(
            current,
            u64::from_le_bytes(b),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn unaligned_round_trip_keeps_neighbours() {
        let w = words(8);
        write(&w, 0, &[0xAA; 64]);
        write(&w, 3, b"hello, pool memory");
        let mut back = [0u8; 18];
        read(&w, 3, &mut back);
        assert_eq!(&back, b"hello, pool memory");
        let mut all = [0u8; 64];
        read(&w, 0, &mut all);
        assert_eq!(&all[..3], &[0xAA; 3]);
        assert_eq!(&all[21..], &[0xAA; 43]);
    }

    #[test]
    fn every_offset_and_length_round_trips() {
        let w = words(6);
        for off in 0..16u64 {
            for len in 0..30usize {
                write(&w, 0, &[0x11; 48]);
                let src: Vec<u8> = (0..len as u8)
                    .map(|i| i.wrapping_mul(7).wrapping_add(1))
                    .collect();
                write(&w, off, &src);
                let mut all = [0u8; 48];
                read(&w, 0, &mut all);
                let o = off as usize;
                assert!(
                    all[..o].iter().all(|&b| b == 0x11),
                    "before, off {off} len {len}"
                );
                assert_eq!(&all[o..o + len], &src[..], "off {off} len {len}");
                assert!(
                    all[o + len..].iter().all(|&b| b == 0x11),
                    "after, off {off} len {len}"
                );
                let mut back = vec![0u8; len];
                read(&w, off, &mut back);
                assert_eq!(back, src);
            }
        }
    }
}
