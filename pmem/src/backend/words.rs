//! Copies between local buffers and shared pool memory seen as a slice of atomic words.
//!
//! Pool memory is shared with other threads, other processes and (on the fabric) remote peers,
//! so it is only ever touched through atomics: bulk copies are relaxed word loads and stores,
//! which compile to plain moves on x86-64 but keep concurrent access free of data races.
//! Bytes at unaligned edges are merged into their word with a compare-and-swap loop so that a
//! neighbouring write to the same word is never lost. Ordering comes from the callers' acquire
//! and release word operations (a tail store publishes the entries written before it).

use std::sync::atomic::{AtomicU64, Ordering};

/// Reads `dst.len()` bytes at byte offset `off` of `words`.
pub(crate) fn read(words: &[AtomicU64], off: u64, dst: &mut [u8]) {
    let mut at = off;
    let mut out = 0usize;
    let end = off + dst.len() as u64;
    while at < end {
        let word_index = (at / 8) as usize;
        let in_word = (at % 8) as usize;
        let take = (8 - in_word).min((end - at) as usize);
        let bytes = words[word_index].load(Ordering::Relaxed).to_le_bytes();
        if take == 8 {
            dst[out..out + 8].copy_from_slice(&bytes);
        } else {
            dst[out..out + take].copy_from_slice(&bytes[in_word..in_word + take]);
        }
        at += take as u64;
        out += take;
    }
}

/// Writes `src` at byte offset `off` of `words`.
pub(crate) fn write(words: &[AtomicU64], off: u64, src: &[u8]) {
    let mut at = off;
    let mut inp = 0usize;
    let end = off + src.len() as u64;
    while at < end {
        let word_index = (at / 8) as usize;
        let in_word = (at % 8) as usize;
        let take = (8 - in_word).min((end - at) as usize);
        if take == 8 {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&src[inp..inp + 8]);
            words[word_index].store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        } else {
            let word = &words[word_index];
            let mut current = word.load(Ordering::Relaxed);
            loop {
                let mut bytes = current.to_le_bytes();
                bytes[in_word..in_word + take].copy_from_slice(&src[inp..inp + take]);
                match word.compare_exchange_weak(
                    current,
                    u64::from_le_bytes(bytes),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(seen) => current = seen,
                }
            }
        }
        at += take as u64;
        inp += take;
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
}
