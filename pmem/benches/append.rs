//! Batch append and scan throughput of the operation log, against a plain `memcpy` of the same
//! bytes in the same run.
//!
//! `cargo bench -p dinomo-pmem --bench append` — compare `append/log_batch` with
//! `append/memcpy` (same bytes, same sizes): the ratio of their times is the cost of encoding,
//! checksumming and publishing entries over copying them.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dinomo_pmem::entry::entry_len;
use dinomo_pmem::log::{execute_plan, for_each_entry};
use dinomo_pmem::{BlockId, MemBackend, Op, Pool, PoolConfig, Staging, Version};

const VALUE_LEN: usize = 1024;
const KEY_LEN: usize = 16;
const BATCH: usize = 64;
const BLOCK: u64 = 8 << 20;

fn pool() -> Arc<Pool> {
    let size = 64 << 20;
    let cfg = PoolConfig {
        block_size: BLOCK,
        ..PoolConfig::with_size(size)
    };
    Arc::new(Pool::create(Arc::new(MemBackend::new(size)), &cfg).expect("pool"))
}

fn bench_append(c: &mut Criterion) {
    let pool = pool();
    let layout = *pool.layout();
    let value = vec![0x5Au8; VALUE_LEN];
    let entry = entry_len(KEY_LEN, VALUE_LEN);
    let batch_bytes = entry * BATCH as u64;
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(batch_bytes));

    // One batch: encode 64 entries (header, checksum, key, value) into the staging mirror, then
    // copy them to the pool and publish the tail, as a commit does.
    let block = BlockId(0);
    let mut staging = Staging::new(&layout, block, 0, 1 << 20, false);
    let mut seq = 0u64;
    // Starts a fresh block when the next batch would not fit, then stages one batch.
    let stage_batch = |staging: &mut Staging, seq: &mut u64| {
        if staging.head().1 + batch_bytes > layout.entry_capacity() {
            *staging = Staging::new(&layout, block, 0, 1 << 20, false);
        }
        for i in 0..BATCH {
            *seq += 1;
            let mut key = [0u8; KEY_LEN];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            staging
                .append(
                    Op::Put,
                    &key,
                    &value,
                    Version {
                        epoch: dinomo_pmem::Epoch(1),
                        seq: *seq,
                    },
                )
                .expect("fits");
        }
    };
    group.bench_function("log_batch", |b| {
        b.iter(|| {
            stage_batch(&mut staging, &mut seq);
            let plan = staging.plan(&layout);
            execute_plan(&pool, &staging, &plan, false);
            staging.committed();
        })
    });

    // The KN's share alone: encode 64 entries into the staging mirror, without the copy into
    // the pool (which an RDMA NIC or the memory node does).
    let mut staging = Staging::new(&layout, block, 0, 1 << 20, false);
    group.bench_function("encode", |b| {
        b.iter(|| {
            stage_batch(&mut staging, &mut seq);
            let plan = staging.plan(&layout);
            black_box(&plan);
            staging.committed();
        })
    });

    // The same bytes copied with memcpy into a block-sized destination, at advancing offsets.
    let source = vec![0x5Au8; batch_bytes as usize];
    let mut dest = vec![0u8; BLOCK as usize];
    let mut at = 0usize;
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            if at + source.len() > dest.len() {
                at = 0;
            }
            dest[at..at + source.len()].copy_from_slice(black_box(&source));
            at += source.len();
            black_box(&dest);
        })
    });

    // memcpy plus a CRC32C of the same bytes: the least work an append that checksums its
    // entries can do; the distance from log_batch to this is the log's own overhead.
    let mut at = 0usize;
    group.bench_function("memcpy_crc32c", |b| {
        b.iter(|| {
            if at + source.len() > dest.len() {
                at = 0;
            }
            dest[at..at + source.len()].copy_from_slice(black_box(&source));
            black_box(crc32c::crc32c(&dest[at..at + source.len()]));
            at += source.len();
        })
    });

    // The copy into pool memory alone (word-atomic stores), without encoding.
    let base = layout.entry_area_off(BlockId(1)).get();
    let mut at = 0u64;
    group.bench_function("pool_write", |b| {
        b.iter(|| {
            if at + batch_bytes > layout.entry_capacity() {
                at = 0;
            }
            pool.backend().write(base + at, black_box(&source));
            at += batch_bytes;
        })
    });
    group.finish();

    // Scan: decode and verify every entry of a full block.
    let mut staging = Staging::new(&layout, BlockId(2), 0, u64::MAX, false);
    let mut count = 0u64;
    while staging
        .append(
            Op::Put,
            &count.to_le_bytes(),
            &value,
            Version {
                epoch: dinomo_pmem::Epoch(1),
                seq: count + 1,
            },
        )
        .is_ok()
    {
        count += 1;
    }
    let plan = staging.plan(&layout);
    execute_plan(&pool, &staging, &plan, false);
    staging.committed();
    let used = staging.head().1;
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(used));
    let mut buf = Vec::new();
    group.bench_function("block", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for_each_entry(&pool, BlockId(2), 0, used, &mut buf, |_, e| {
                n += e.value.len() as u64;
                Ok::<(), dinomo_pmem::PoolError>(())
            })
            .expect("scan");
            assert_eq!(n, count * VALUE_LEN as u64);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
