//! The lookup as a resumable probe over raw pool bytes, so that a KN can run it remotely with
//! one-sided READs and the MN can run it over local memory — the same code either way.
//!
//! A probe asks for bytes (`Step::Read`), is fed them (`Probe::feed`) and either asks again or
//! answers. With the table header cached, a lookup is one 128-byte READ of the key's bucket pair
//! and one READ of the entry (the entry READ guesses the value size; a longer value costs one
//! more READ). Overflow buckets cost one READ each.
//!
//! Remote reads are not atomic beyond a word, and the MN changes the index concurrently, so the
//! probe validates everything it reads:
//! - a link word from another table version (`Stale`: the cached header is out of date, because
//!   the table was retired and its memory reused) or with MIGRATED set (`Moved`: this pair lives
//!   in the next table now) stops the probe;
//! - every entry is checked in full (checksum) before it is believed; an entry that fails, or
//!   whose key does not hash to this pair and tag, means the slot changed under the reader (the
//!   entry was superseded and its block reclaimed): the probe answers `Retry`;
//! - a key found in two slots of the buckets read (a transient state of concurrent inserts)
//!   resolves to the entry with the greater `(epoch, seq)`. Overflow chains are read only when the
//!   key is not in its home pair: the index inserts into the home pair first, and a key written
//!   by two chains at once (the only source of duplicates) is never read by its new owner before
//!   the old owner's log is merged.

use dinomo_pmem::constants::ENTRY_HEADER_LEN;
use dinomo_pmem::entry::{EntryHeader, Op, decode_entry};
use dinomo_pmem::index_format::{
    BUCKET_LEN, Link, PAIR_LEN, SLOTS_PER_BUCKET, Slot, TableHeader, tag_of,
};
use dinomo_pmem::{PoolOffset, Version};

/// Bytes of an indirect cell a probe reads.
pub const CELL_READ_LEN: u32 = 16;
/// Largest entry a probe will read (bounds a READ driven by a header that may be garbage).
pub const PROBE_ENTRY_MAX: u64 = 1 << 30;
/// Overflow buckets a probe follows at most before it gives up as `Retry` (a cycle or garbage).
pub const PROBE_OVERFLOW_MAX: u32 = 1 << 16;

/// What the probe wants next, or its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read `len` bytes at `off` and feed them back.
    Read { off: PoolOffset, len: u32 },
    /// The key's newest entry.
    Hit(Hit),
    /// The key is not in the index.
    Miss,
    /// The cached table header is stale: re-read the root and the header, then start again.
    Stale,
    /// The key's pair has moved to the next table (a resize): probe the next table.
    Moved,
    /// Something changed under the probe: start again with the same table.
    Retry,
}

/// A found entry, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Where the entry is (the shortcut a KN caches).
    pub entry: PoolOffset,
    /// The entry's bytes, header included.
    pub bytes: Vec<u8>,
    pub version: Version,
    pub key_len: usize,
    pub value_len: usize,
    /// The indirect cell the key goes through, for a selectively replicated key.
    pub cell: Option<PoolOffset>,
}

impl Hit {
    pub fn value(&self) -> &[u8] {
        &self.bytes
            [ENTRY_HEADER_LEN + self.key_len..ENTRY_HEADER_LEN + self.key_len + self.value_len]
    }
    pub fn entry_len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    target: PoolOffset,
    indirect: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Buckets {
        count: usize,
    },
    Cell,
    Entry {
        target: PoolOffset,
        cell: Option<PoolOffset>,
    },
    Done,
}

/// One lookup in progress.
#[derive(Debug, Clone)]
pub struct Probe {
    key: Box<[u8]>,
    hash: u64,
    table: TableHeader,
    hasher: fn(&[u8]) -> u64,
    value_hint: u32,
    state: State,
    pending_buckets: Vec<PoolOffset>,
    candidates: Vec<Candidate>,
    next_candidate: usize,
    best: Option<Hit>,
    best_is_delete: bool,
    reads: u32,
    overflow_reads: u32,
}

impl Probe {
    /// A probe of `table` for `key`, whose hash is `hash` (computed with `hasher`, which the
    /// probe also uses to tell collisions from reclaimed entries). `value_hint` is the value
    /// size the entry READ assumes.
    pub fn new(
        table: TableHeader,
        key: &[u8],
        hash: u64,
        hasher: fn(&[u8]) -> u64,
        value_hint: u32,
    ) -> Probe {
        Probe {
            key: key.into(),
            hash,
            table,
            hasher,
            value_hint,
            state: State::Buckets { count: 2 },
            pending_buckets: Vec::new(),
            candidates: Vec::new(),
            next_candidate: 0,
            best: None,
            best_is_delete: false,
            reads: 0,
            overflow_reads: 0,
        }
    }

    /// The first step: read the key's bucket pair.
    pub fn start(&mut self) -> Step {
        self.state = State::Buckets { count: 2 };
        self.read(
            self.table.pair_off(self.table.pair_of(self.hash)),
            PAIR_LEN as u32,
        )
    }

    /// READs asked for so far (each is one dependent round trip).
    pub fn reads(&self) -> u32 {
        self.reads
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    fn read(&mut self, off: PoolOffset, len: u32) -> Step {
        self.reads += 1;
        Step::Read { off, len }
    }

    /// Feeds the bytes of the last `Read`.
    pub fn feed(&mut self, bytes: &[u8]) -> Step {
        match self.state {
            State::Buckets { count } => {
                if bytes.len() < count * BUCKET_LEN as usize {
                    return Step::Retry;
                }
                for b in 0..count {
                    let bucket = &bytes[b * BUCKET_LEN as usize..(b + 1) * BUCKET_LEN as usize];
                    if let Some(step) = self.scan_bucket(bucket) {
                        self.state = State::Done;
                        return step;
                    }
                }
                self.next_bucket_or_candidates()
            }
            State::Cell => {
                if bytes.len() < 8 {
                    return Step::Retry;
                }
                let target = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
                let cell = self.candidates[self.next_candidate - 1].target;
                if target == 0 || target % 8 != 0 {
                    // The cell is being installed or removed: look again.
                    return Step::Retry;
                }
                self.state = State::Entry {
                    target: PoolOffset(target),
                    cell: Some(cell),
                };
                let len = self.guess_len();
                self.read(PoolOffset(target), len)
            }
            State::Entry { target, cell } => self.feed_entry(target, cell, bytes),
            State::Done => Step::Retry,
        }
    }

    fn guess_len(&self) -> u32 {
        (ENTRY_HEADER_LEN as u64 + self.key.len() as u64 + u64::from(self.value_hint))
            .next_multiple_of(8) as u32
    }

    /// Scans one bucket's words; returns an answer if the probe must stop.
    fn scan_bucket(&mut self, bucket: &[u8]) -> Option<Step> {
        let word =
            |i: usize| u64::from_le_bytes(bucket[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let link = Link::decode(word(SLOTS_PER_BUCKET));
        if !link.belongs_to(self.table.version) {
            return Some(Step::Stale);
        }
        if link.migrated {
            return Some(Step::Moved);
        }
        let tag = tag_of(self.hash);
        for i in 0..SLOTS_PER_BUCKET {
            let slot = Slot::decode(word(i));
            if let Some(target) = slot.target
                && slot.tag == tag
            {
                self.candidates.push(Candidate {
                    target,
                    indirect: slot.indirect,
                });
            }
        }
        if let Some(next) = link.next {
            self.pending_buckets.push(next);
        }
        None
    }

    fn next_bucket_or_candidates(&mut self) -> Step {
        // The candidates of the buckets read so far come first: a key found in its home pair
        // costs no READ of the overflow chains.
        self.next_candidate_step()
    }

    fn next_candidate_step(&mut self) -> Step {
        let Some(&c) = self.candidates.get(self.next_candidate) else {
            if self.best.is_none()
                && let Some(next) = self.pending_buckets.pop()
            {
                // Not in the buckets read so far: follow the overflow chains.
                self.overflow_reads += 1;
                if self.overflow_reads > PROBE_OVERFLOW_MAX {
                    return Step::Retry;
                }
                self.state = State::Buckets { count: 1 };
                return self.read(next, BUCKET_LEN as u32);
            }
            self.state = State::Done;
            return match self.best.take() {
                Some(hit) if !self.best_is_delete => Step::Hit(hit),
                _ => Step::Miss,
            };
        };
        self.next_candidate += 1;
        if c.indirect {
            self.state = State::Cell;
            self.read(c.target, CELL_READ_LEN)
        } else {
            self.state = State::Entry {
                target: c.target,
                cell: None,
            };
            let len = self.guess_len();
            self.read(c.target, len)
        }
    }

    fn feed_entry(&mut self, target: PoolOffset, cell: Option<PoolOffset>, bytes: &[u8]) -> Step {
        let Ok(header) = EntryHeader::decode(bytes) else {
            return Step::Retry;
        };
        let need = header.len();
        if need > PROBE_ENTRY_MAX {
            return Step::Retry;
        }
        if (bytes.len() as u64) < need {
            // The value is longer than the guess: read the whole entry.
            return self.read(target, need as u32);
        }
        let Ok(entry) = decode_entry(bytes) else {
            return Step::Retry;
        };
        if entry.key != &*self.key {
            // A different key in a slot with our tag: legitimate only if that key hashes to this
            // pair and tag; otherwise the slot moved on and its old entry's block was reused.
            let other = (self.hasher)(entry.key);
            let same_place = self.table.pair_of(other) == self.table.pair_of(self.hash)
                && tag_of(other) == tag_of(self.hash);
            if !same_place {
                return Step::Retry;
            }
            return self.next_candidate_step();
        }
        let newer = self.best.as_ref().is_none_or(|b| entry.version > b.version);
        if newer {
            self.best_is_delete = entry.op == Op::Delete;
            self.best = Some(Hit {
                entry: target,
                bytes: bytes[..need as usize].to_vec(),
                version: entry.version,
                key_len: entry.key.len(),
                value_len: entry.value.len(),
                cell,
            });
        }
        self.next_candidate_step()
    }
}

/// Decodes the root's index line (16 bytes at `Pool::index_root_off`): the current table's
/// header offset and the resize target's (0 when none).
pub fn decode_root(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < 16 {
        return None;
    }
    let table = u64::from_le_bytes(bytes[0..8].try_into().ok()?);
    let next = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((table, next))
}
