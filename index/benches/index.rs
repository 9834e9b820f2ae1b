//! Benchmarks of the pool-resident index, each against a baseline in the same run:
//!
//! - `lookup`: the index's lookup (the same probe a KN runs remotely, here over local memory)
//!   against `std::collections::HashMap` (the single-threaded bound) and `dashmap` (a concurrent
//!   map) on the same keys;
//! - `upsert`: the merge of a log of new keys into the index (upserts, with their entry reads and
//!   the block bookkeeping) against inserting the same keys into `HashMap` and `dashmap`; its
//!   throughput is the merge rate in entries per second;
//! - before the timed groups: the READs a remote lookup costs at load factors 0.5, 0.75 and 0.9
//!   (counts, printed).
//!
//! `cargo bench -p dinomo-index --bench index`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use dinomo_index::{Index, IndexConfig, MergeScope, Merger, Probe, Step, key_hash};
use dinomo_pmem::{
    BlockAllocator, BlockId, ChainId, Epoch, LogWriter, MemBackend, Pool, PoolConfig, WriterOptions,
};

const KEYS: u32 = 100_000;
const VALUE: usize = 100;

struct Node {
    pool: Arc<Pool>,
    index: Arc<Index>,
    merger: Merger,
    alloc: Arc<BlockAllocator>,
}

fn node(config: IndexConfig) -> Node {
    let size = 512 << 20;
    let cfg = PoolConfig {
        index_arena_len: Some(size / 4),
        ..PoolConfig::small(size, 4 << 20)
    };
    let pool = Arc::new(Pool::create(Arc::new(MemBackend::new(size)), &cfg).expect("pool"));
    let free = (0..pool.layout().block_count).map(BlockId).collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), free));
    let index = Arc::new(Index::open(Arc::clone(&pool), config).expect("index"));
    let merger = Merger::new(Arc::clone(&index), Arc::clone(&alloc));
    Node {
        pool,
        index,
        merger,
        alloc,
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("user:{i:010}").into_bytes()
}

/// Writes `keys` new keys to chain 0 (committed, not merged).
fn write_log(n: &Node, keys: std::ops::Range<u32>) {
    let options = WriterOptions {
        batch_bytes_max: 1 << 20,
        persist: false,
        keep_history: false,
    };
    let mut w =
        LogWriter::attach(Arc::clone(&n.alloc), ChainId(0), Epoch(1), options).expect("writer");
    for i in keys {
        w.put(&key(i), &[1u8; VALUE]).expect("put");
    }
    w.commit().expect("commit");
}

/// READs of a remote lookup of every key in a table filled to `fill` of its slots.
fn reads_at(fill: f64) -> Vec<u32> {
    let n = node(IndexConfig {
        auto_resize: false,
        ..IndexConfig::default()
    });
    let pairs_log2 = 12;
    n.index.resize(pairs_log2).expect("size");
    let keys = ((1u64 << pairs_log2) as f64 * 14.0 * fill) as u32;
    write_log(&n, 0..keys);
    n.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    let table = n.index.tables().0.header;
    (0..keys)
        .map(|i| {
            let k = key(i);
            let mut probe = Probe::new(table, &k, key_hash(&k), key_hash, 128);
            let mut step = probe.start();
            loop {
                match step {
                    Step::Read { off, len } => {
                        let mut buf = vec![0u8; len as usize];
                        n.pool.backend().read(off.get(), &mut buf);
                        step = probe.feed(&buf);
                    }
                    Step::Hit(_) => return probe.reads(),
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect()
}

fn report_reads() {
    println!("READs per remote lookup (bucket-pair READ + entry READ = 2), 4096 pairs:");
    for fill in [0.5, 0.75, 0.9] {
        let reads = reads_at(fill);
        let two = reads.iter().filter(|&&r| r == 2).count();
        let mean = reads.iter().map(|&r| f64::from(r)).sum::<f64>() / reads.len() as f64;
        println!(
            "  load factor {fill:.2}: {} lookups, {:.2}% cost 2 READs, mean {mean:.3} READs, max {}",
            reads.len(),
            100.0 * two as f64 / reads.len() as f64,
            reads.iter().max().copied().unwrap_or(0)
        );
    }
}

fn bench(c: &mut Criterion) {
    report_reads();

    // Lookups of present keys.
    let n = node(IndexConfig::default());
    write_log(&n, 0..KEYS);
    n.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let hash: HashMap<Vec<u8>, u64> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i as u64))
        .collect();
    let dash: DashMap<Vec<u8>, u64> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i as u64))
        .collect();
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("index", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(n.index.get(&keys[i]).expect("get").expect("present"));
        })
    });
    group.bench_function("hashmap", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(hash.get(&keys[i]).expect("present"));
        })
    });
    group.bench_function("dashmap", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(*dash.get(&keys[i]).expect("present"));
        })
    });
    group.finish();

    // Upserts: merging a log of new keys, against inserting them into the maps.
    const BATCH: u32 = 10_000;
    let mut group = c.benchmark_group("upsert");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.sample_size(20);
    group.bench_function("index_merge", |b| {
        b.iter_batched(
            || {
                let n = node(IndexConfig::default());
                n.index.resize(12).expect("size");
                write_log(&n, 0..BATCH);
                n
            },
            |n| {
                let report = n
                    .merger
                    .merge_chain(ChainId(0), MergeScope::All)
                    .expect("merge");
                assert_eq!(report.entries, u64::from(BATCH));
                n
            },
            BatchSize::PerIteration,
        )
    });
    let batch_keys: Vec<Vec<u8>> = (0..BATCH).map(key).collect();
    group.bench_function("hashmap", |b| {
        b.iter_batched(
            || HashMap::with_capacity(BATCH as usize),
            |mut m: HashMap<Vec<u8>, u64>| {
                for (i, k) in batch_keys.iter().enumerate() {
                    m.insert(k.clone(), i as u64);
                }
                m
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dashmap", |b| {
        b.iter_batched(
            || DashMap::with_capacity(BATCH as usize),
            |m: DashMap<Vec<u8>, u64>| {
                for (i, k) in batch_keys.iter().enumerate() {
                    m.insert(k.clone(), i as u64);
                }
                m
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
