//! `loom` models of the index's lock-free protocol: every interleaving (within a preemption
//! bound) of two inserts into one bucket, insert against delete, a reader against a writer, and
//! a writer against a resize. Run with
//! `RUSTFLAGS="--cfg dinomo_loom" cargo test -p dinomo-index --test loom --release`.
//!
//! The index reaches pool memory through the pmem `Backend` trait, so the models give it a
//! backend whose words in the index's region (root and arena) are `loom` atomics, created on
//! first touch from a prepared pool image; the rest of the pool (superblock, log entries written
//! before the model starts) is plain memory that no modelled thread changes.

#![cfg(dinomo_loom)]

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use dinomo_index::{Index, IndexConfig, KeyHasher, Outcome};
use dinomo_pmem::{
    Backend, BlockAllocator, BlockId, ChainId, Epoch, LogWriter, MemBackend, Pool, PoolConfig,
    PoolOffset, Version, WriterOptions,
};
use loom::sync::atomic::{AtomicU64, Ordering};

struct LoomBackend {
    len: u64,
    plain: Mutex<Vec<u8>>,
    hot: Range<u64>,
    words: Mutex<HashMap<u64, Arc<AtomicU64>>>,
}

impl fmt::Debug for LoomBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoomBackend")
    }
}

impl LoomBackend {
    fn new(image: &[u8], hot: Range<u64>) -> LoomBackend {
        LoomBackend {
            len: image.len() as u64,
            plain: Mutex::new(image.to_vec()),
            hot,
            words: Mutex::new(HashMap::new()),
        }
    }
    fn word(&self, at: u64) -> Arc<AtomicU64> {
        // No std lock may be held across a loom operation (creating a loom atomic can switch
        // threads, and a switched-out thread must not hold a lock another one needs). Hot words
        // never change in `plain`, so racing creations start from the same value; the first one
        // into the map wins.
        if let Some(w) = self.words.lock().unwrap().get(&at) {
            return Arc::clone(w);
        }
        let initial = {
            let plain = self.plain.lock().unwrap();
            let mut b = [0u8; 8];
            b.copy_from_slice(&plain[at as usize..at as usize + 8]);
            u64::from_le_bytes(b)
        };
        let fresh = Arc::new(AtomicU64::new(initial));
        Arc::clone(self.words.lock().unwrap().entry(at).or_insert(fresh))
    }
    fn is_hot(&self, at: u64) -> bool {
        self.hot.contains(&at)
    }
}

impl Backend for LoomBackend {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, off: u64, dst: &mut [u8]) {
        // Word by word, so that a modelled bucket read is 8 or 16 atomic loads, not 128.
        let mut i = 0usize;
        while i < dst.len() {
            let at = off + i as u64;
            let w = at / 8 * 8;
            let bytes = if self.is_hot(w) {
                self.word(w).load(Ordering::Relaxed).to_le_bytes()
            } else {
                let plain = self.plain.lock().unwrap();
                let mut b = [0u8; 8];
                b.copy_from_slice(&plain[w as usize..w as usize + 8]);
                b
            };
            let from = (at - w) as usize;
            let n = (8 - from).min(dst.len() - i);
            dst[i..i + n].copy_from_slice(&bytes[from..from + n]);
            i += n;
        }
    }
    fn write(&self, off: u64, src: &[u8]) {
        let mut i = 0usize;
        while i < src.len() {
            let at = off + i as u64;
            let w = at / 8 * 8;
            let from = (at - w) as usize;
            let n = (8 - from).min(src.len() - i);
            if self.is_hot(w) {
                let word = self.word(w);
                let mut b = word.load(Ordering::Relaxed).to_le_bytes();
                b[from..from + n].copy_from_slice(&src[i..i + n]);
                word.store(u64::from_le_bytes(b), Ordering::Relaxed);
            } else {
                self.plain.lock().unwrap()[at as usize..at as usize + n]
                    .copy_from_slice(&src[i..i + n]);
            }
            i += n;
        }
    }
    fn load(&self, off: u64) -> u64 {
        if self.is_hot(off) {
            return self.word(off).load(Ordering::Acquire);
        }
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        u64::from_le_bytes(b)
    }
    fn store(&self, off: u64, value: u64) {
        if self.is_hot(off) {
            return self.word(off).store(value, Ordering::Release);
        }
        self.write(off, &value.to_le_bytes());
    }
    fn compare_exchange(&self, off: u64, current: u64, new: u64) -> Result<u64, u64> {
        assert!(
            self.is_hot(off),
            "a modelled CAS outside the index region at {off:#x}"
        );
        self.word(off)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    fn fetch_add(&self, off: u64, add: u64) -> u64 {
        assert!(
            self.is_hot(off),
            "a modelled FAA outside the index region at {off:#x}"
        );
        self.word(off).fetch_add(add, Ordering::AcqRel)
    }
    fn flush(&self, _off: u64, _len: u64) {}
    fn fence(&self) {}
}

/// Every key lands in the same pair with the same tag: only the full-key comparison tells them
/// apart, which is the hardest case for the slot protocol.
fn same_place(_key: &[u8]) -> u64 {
    0x1234_0000_0000_0000
}

struct Prepared {
    image: Vec<u8>,
    hot: Range<u64>,
    /// Entry offsets by name: "a1" is key "a" written with seq 1, and so on.
    entries: HashMap<&'static str, (PoolOffset, Version)>,
}

fn config() -> IndexConfig {
    IndexConfig {
        auto_resize: false,
        hasher: KeyHasher::Custom(same_place),
        ..IndexConfig::default()
    }
}

/// A small pool whose index is one pair, with the named entries written to a log and `present`
/// already in the index.
fn prepare(present: &[&'static str]) -> Prepared {
    let size = 256 << 10;
    let backend = Arc::new(MemBackend::new(size));
    let pool =
        Arc::new(Pool::create(backend.clone(), &PoolConfig::small(size, 4096)).expect("pool"));
    let free = (0..pool.layout().block_count).map(BlockId).collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), free));
    let mut w =
        LogWriter::attach(alloc, ChainId(0), Epoch(1), WriterOptions::default()).expect("writer");
    let mut entries = HashMap::new();
    // In log order: puts a1 b1 c1 a2, then "a-" (a delete of "a"), then the put a3.
    for name in ["a1", "b1", "c1", "a2", "a-", "a3"] {
        let (loc, version) = if name == "a-" {
            w.delete(b"a").expect("delete")
        } else {
            w.put(&name.as_bytes()[..1], name.as_bytes()).expect("put")
        };
        entries.insert(name, (loc.pool_offset(pool.layout()), version));
    }
    w.commit().expect("commit");
    // The index uses loom's primitives in this build, so even single-threaded set-up runs
    // inside a (trivial, one-execution) model.
    let (pool2, entries2, present) = (Arc::clone(&pool), entries.clone(), present.to_vec());
    loom::model(move || {
        let index = Index::open(Arc::clone(&pool2), config()).expect("index");
        if index.tables().0.header.pairs_log2 != 0 {
            index.resize(0).expect("one pair");
        }
        for name in &present {
            let (off, version) = entries2[name];
            let outcome = index
                .upsert(&name.as_bytes()[..1], off, version, &mut Vec::new())
                .expect("upsert");
            assert_eq!(outcome, Outcome::Applied);
        }
    });
    let layout = *pool.layout();
    let hot = layout.root_off..layout.root_off + 4096;
    let arena = layout.index_arena_off..layout.index_arena_off + layout.index_arena_len;
    Prepared {
        image: backend.snapshot(),
        hot: hot.start.min(arena.start)..arena.end.max(hot.end),
        entries,
    }
}

/// Like `prepare`, then publishes the next table of a resize to `2^log2` pairs (not migrated).
fn prepare_resizing(present: &[&'static str], log2: u32) -> Prepared {
    let mut p = prepare(present);
    let image = std::mem::take(&mut p.image);
    let backend = Arc::new(MemBackend::from_image(&image));
    let started = Arc::new(Mutex::new(None));
    let (b, out) = (Arc::clone(&backend), Arc::clone(&started));
    loom::model(move || {
        let pool = Arc::new(Pool::open(b.clone()).expect("pool"));
        let index = Index::open(pool, config()).expect("index");
        index.begin_resize(log2).expect("begin resize");
        *out.lock().unwrap() = Some(());
    });
    assert!(started.lock().unwrap().is_some());
    p.image = backend.snapshot();
    p
}

fn open(p: &Prepared) -> Arc<Index> {
    let backend = Arc::new(LoomBackend::new(&p.image, p.hot.clone()));
    let pool = Arc::new(Pool::open(backend).expect("pool"));
    Arc::new(Index::open(pool, config()).expect("index"))
}

fn value(index: &Index, key: &str) -> Option<Vec<u8>> {
    index
        .get(key.as_bytes())
        .expect("get")
        .map(|h| h.value().to_vec())
}

fn builder() -> loom::model::Builder {
    builder_with(2)
}

fn builder_with(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.max_branches = 1_000_000;
    if let Some(n) = std::env::var("DINOMO_LOOM_MAX_PERMUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        b.max_permutations = Some(n);
    }
    b
}

/// The resize models are too large to explore exhaustively in CI: by default they stop after
/// `RESIZE_EXECUTIONS` executions (loom's depth-first order). `DINOMO_LOOM_EXHAUSTIVE=1` lifts the
/// cap (hours); `DINOMO_LOOM_RESIZE_PREEMPTIONS` sets the preemption bound (default 2).
const RESIZE_EXECUTIONS: usize = 20_000;

fn resize_builder() -> loom::model::Builder {
    let bound = std::env::var("DINOMO_LOOM_RESIZE_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut b = builder_with(bound);
    if std::env::var_os("DINOMO_LOOM_EXHAUSTIVE").is_none() && b.max_permutations.is_none() {
        b.max_permutations = Some(RESIZE_EXECUTIONS);
    }
    b
}

#[test]
fn two_inserts_into_one_bucket() {
    let p = Arc::new(prepare(&[]));
    builder().check(move || {
        let index = open(&p);
        let handles: Vec<_> = ["a1", "b1"]
            .into_iter()
            .map(|name| {
                let (index, (off, version)) = (Arc::clone(&index), p.entries[name]);
                loom::thread::spawn(move || {
                    index
                        .upsert(&name.as_bytes()[..1], off, version, &mut Vec::new())
                        .expect("upsert")
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("thread"), Outcome::Applied);
        }
        assert_eq!(value(&index, "a").as_deref(), Some(&b"a1"[..]));
        assert_eq!(value(&index, "b").as_deref(), Some(&b"b1"[..]));
        assert_eq!(index.entries().expect("entries").len(), 2);
    });
}

#[test]
fn two_inserts_of_one_key_keep_the_newer() {
    let p = Arc::new(prepare(&[]));
    builder().check(move || {
        let index = open(&p);
        let handles: Vec<_> = ["a1", "a2"]
            .into_iter()
            .map(|name| {
                let (index, (off, version)) = (Arc::clone(&index), p.entries[name]);
                loom::thread::spawn(move || {
                    index
                        .upsert(b"a", off, version, &mut Vec::new())
                        .expect("upsert")
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(value(&index, "a").as_deref(), Some(&b"a2"[..]));
        assert_eq!(
            index.entries().expect("entries").len(),
            1,
            "the older duplicate is gone"
        );
    });
}

#[test]
fn insert_against_delete() {
    let p = Arc::new(prepare(&["a1"]));
    builder().check(move || {
        let index = open(&p);
        let (b_off, b_v) = p.entries["b1"];
        let (a_off, a_v) = p.entries["a-"];
        let i1 = Arc::clone(&index);
        let t1 = loom::thread::spawn(move || {
            i1.upsert(b"b", b_off, b_v, &mut Vec::new())
                .expect("upsert")
        });
        let i2 = Arc::clone(&index);
        let t2 = loom::thread::spawn(move || {
            i2.remove(b"a", a_off, a_v, &mut Vec::new())
                .expect("remove")
        });
        assert_eq!(t1.join().expect("thread"), Outcome::Applied);
        assert_eq!(t2.join().expect("thread"), Outcome::Applied);
        assert_eq!(value(&index, "a"), None);
        assert_eq!(value(&index, "b").as_deref(), Some(&b"b1"[..]));
    });
}

#[test]
fn update_against_an_older_delete_of_the_same_key() {
    let p = Arc::new(prepare(&["a1"]));
    builder().check(move || {
        let index = open(&p);
        let (a3, v3) = p.entries["a3"];
        let (del, vdel) = p.entries["a-"];
        let i1 = Arc::clone(&index);
        let t1 =
            loom::thread::spawn(move || i1.upsert(b"a", a3, v3, &mut Vec::new()).expect("upsert"));
        let i2 = Arc::clone(&index);
        let t2 = loom::thread::spawn(move || {
            i2.remove(b"a", del, vdel, &mut Vec::new()).expect("remove")
        });
        t1.join().expect("thread");
        t2.join().expect("thread");
        // Whatever the order, the newest operation (the put of a3) wins over the older delete.
        assert_eq!(value(&index, "a").as_deref(), Some(&b"a3"[..]));
    });
}

#[test]
fn reader_against_writer() {
    let p = Arc::new(prepare(&["a1", "b1"]));
    builder().check(move || {
        let index = open(&p);
        let (a2, v2) = p.entries["a2"];
        let i1 = Arc::clone(&index);
        let writer =
            loom::thread::spawn(move || i1.upsert(b"a", a2, v2, &mut Vec::new()).expect("upsert"));
        let i2 = Arc::clone(&index);
        let reader = loom::thread::spawn(move || (value(&i2, "a"), value(&i2, "b")));
        writer.join().expect("thread");
        let (a, b) = reader.join().expect("thread");
        assert!(
            matches!(a.as_deref(), Some(b"a1") | Some(b"a2")),
            "a reader sees the old or the new value, never nothing: {a:?}"
        );
        assert_eq!(
            b.as_deref(),
            Some(&b"b1"[..]),
            "an unrelated key is unaffected"
        );
        assert_eq!(value(&index, "a").as_deref(), Some(&b"a2"[..]));
    });
}

/// The migration of a resize (one pair into a table of two) against one update of the writer:
/// either a delete (the tombstone case: a late copy must not undo it) or an insert. The next
/// table is allocated and published before the model starts; the model races the migration,
/// the table switch and the tombstone purge against the writer.
fn writer_against_resize(delete: bool) {
    let p = Arc::new(prepare_resizing(&["a1", "b1"], 1));
    resize_builder().check(move || {
        let index = open(&p);
        let (c1, vc) = p.entries["c1"];
        let (del, vdel) = p.entries["a-"];
        let i1 = Arc::clone(&index);
        let resizer =
            loom::thread::spawn(move || assert!(i1.finish_interrupted_resize().expect("resize")));
        let i2 = Arc::clone(&index);
        let writer = loom::thread::spawn(move || {
            if delete {
                i2.remove(b"a", del, vdel, &mut Vec::new()).expect("remove");
            } else {
                i2.upsert(b"c", c1, vc, &mut Vec::new()).expect("upsert");
            }
        });
        resizer.join().expect("thread");
        writer.join().expect("thread");
        assert_eq!(index.tables().0.header.pairs_log2, 1);
        let mut want: Vec<Vec<u8>> = vec![b"b".to_vec()];
        if delete {
            assert_eq!(
                value(&index, "a"),
                None,
                "the delete is not undone by a late copy"
            );
        } else {
            assert_eq!(value(&index, "a").as_deref(), Some(&b"a1"[..]));
            assert_eq!(value(&index, "c").as_deref(), Some(&b"c1"[..]));
            want = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        }
        assert_eq!(value(&index, "b").as_deref(), Some(&b"b1"[..]));
        let mut keys: Vec<Vec<u8>> = index
            .entries()
            .expect("entries")
            .into_iter()
            .map(|e| e.0)
            .collect();
        keys.sort();
        assert_eq!(keys, want, "every key once after the resize");
    });
}

#[test]
fn delete_against_resize() {
    writer_against_resize(true);
}

#[test]
fn insert_against_resize() {
    writer_against_resize(false);
}
