//! The index arena's allocator: tables and overflow buckets come from one region of the pool
//! (pmem FORMAT.md §1, §8). Allocation state is volatile; recovery rebuilds it from what the
//! current tables reach (FORMAT.md §11).
//!
//! Space is handed out in 64-byte units by first fit over a sorted list of free extents, which
//! coalesce when freed. Tables retired by a resize are not freed at once: they wait in `retired`
//! until the next resize, so that a remote reader holding an old table's header finds MIGRATED
//! buckets for a whole resize period before the memory can change.

use dinomo_pmem::round_up;

/// One extent of arena memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub off: u64,
    pub len: u64,
}

/// The allocator.
#[derive(Debug)]
pub struct Arena {
    start: u64,
    end: u64,
    /// Free extents, sorted by offset, never adjacent.
    free: Vec<Extent>,
    /// Extents of retired tables waiting for the next resize.
    retired: Vec<Extent>,
}

/// Allocation granularity (one bucket).
pub const UNIT: u64 = 64;

impl Arena {
    /// An arena over `[start, start + len)` with everything in `used` allocated.
    pub fn new(start: u64, len: u64, used: &[Extent]) -> Arena {
        let mut used: Vec<Extent> = used.to_vec();
        used.sort_by_key(|e| e.off);
        let mut free = Vec::new();
        let mut at = start;
        for e in used {
            if e.off > at {
                free.push(Extent {
                    off: at,
                    len: e.off - at,
                });
            }
            at = at.max(e.off + e.len);
        }
        if at < start + len {
            free.push(Extent {
                off: at,
                len: start + len - at,
            });
        }
        Arena {
            start,
            end: start + len,
            free,
            retired: Vec::new(),
        }
    }

    /// Allocates `len` bytes aligned to `align` (a power of two, at least 64).
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let len = round_up(len, UNIT);
        let i = self.free.iter().position(|e| {
            let at = round_up(e.off, align);
            at + len <= e.off + e.len
        })?;
        let e = self.free[i];
        let at = round_up(e.off, align);
        let before = Extent {
            off: e.off,
            len: at - e.off,
        };
        let after = Extent {
            off: at + len,
            len: e.off + e.len - (at + len),
        };
        self.free.remove(i);
        let mut k = i;
        for piece in [before, after] {
            if piece.len > 0 {
                self.free.insert(k, piece);
                k += 1;
            }
        }
        Some(at)
    }

    /// Returns an extent.
    pub fn free(&mut self, off: u64, len: u64) {
        let len = round_up(len, UNIT);
        debug_assert!(off >= self.start && off + len <= self.end);
        let i = self.free.partition_point(|e| e.off < off);
        self.free.insert(i, Extent { off, len });
        // Merge with the neighbours.
        if i + 1 < self.free.len() && self.free[i].off + self.free[i].len == self.free[i + 1].off {
            self.free[i].len += self.free[i + 1].len;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].off + self.free[i - 1].len == self.free[i].off {
            self.free[i - 1].len += self.free[i].len;
            self.free.remove(i);
        }
    }

    /// Parks an extent until [`Arena::release_retired`].
    pub fn retire(&mut self, off: u64, len: u64) {
        self.retired.push(Extent { off, len });
    }

    /// Frees every parked extent (called at the start of a resize: a whole resize period later).
    pub fn release_retired(&mut self) {
        for e in std::mem::take(&mut self.retired) {
            self.free(e.off, e.len);
        }
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|e| e.len).sum()
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_coalesce() {
        let mut a = Arena::new(
            4096,
            4096,
            &[Extent {
                off: 4096,
                len: 256,
            }],
        );
        assert_eq!(a.free_bytes(), 4096 - 256);
        let x = a.alloc(64, 64).expect("space");
        assert_eq!(x, 4096 + 256);
        let y = a.alloc(1024, 128).expect("space");
        assert_eq!(y % 128, 0);
        assert!(y >= x + 64);
        a.free(x, 64);
        a.free(y, 1024);
        assert_eq!(a.free_bytes(), 4096 - 256);
        assert!(
            a.alloc(4096 - 256, 64).is_some(),
            "coalesced back into one extent"
        );
        assert!(a.alloc(64, 64).is_none());
    }

    #[test]
    fn retired_extents_wait() {
        let mut a = Arena::new(0, 1024, &[]);
        let x = a.alloc(512, 64).expect("space");
        a.retire(x, 512);
        assert_eq!(a.free_bytes(), 512);
        a.release_retired();
        assert_eq!(a.free_bytes(), 1024);
    }
}
