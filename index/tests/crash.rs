//! Crash tests of the index and the merge: a workload of batch commits, merges (inserts,
//! updates, deletes, overflow buckets) and resizes runs on the crash-simulating backend and is
//! crashed at every fence. Recovery must then show exactly the acknowledged writes: every batch
//! whose commit completed, and nothing torn.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use common::*;
use dinomo_index::{IndexConfig, KeyHasher, MergeScope, recover};
use dinomo_pmem::{Backend, BlockState, ChainId, CrashMode, CrashSim, Pool, PoolError};

const POOL: u64 = 2 << 20;
const BLOCK: u64 = 8 << 10;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

struct Run {
    creation_fences: u64,
    /// Per batch: the model after it, and the fence count when its commit returned.
    after_batch: Vec<(Model, u64)>,
}

fn config() -> IndexConfig {
    // Collisions put keys in shared pairs and overflow buckets; no automatic resizes, so the
    // workload's explicit resizes happen at the same fences every run.
    IndexConfig {
        auto_resize: false,
        ..common::config(KeyHasher::Custom(colliding_hash))
    }
}

fn workload(sim: Arc<CrashSim>) -> Run {
    let backend: Arc<dyn Backend> = sim.clone();
    let node = node_on(backend, BLOCK, config());
    let creation_fences = sim.fence_count();
    let mut w = writer(&node, 0, 1);
    let mut model = Model::new();
    let mut after_batch = Vec::new();
    for batch in 0..8u32 {
        for j in 0..6u32 {
            let key = format!("k{}", (batch * 5 + j * 3) % 23).into_bytes();
            if (batch + j) % 5 == 4 {
                w.delete(&key).expect("delete");
                model.remove(&key);
            } else {
                let value = value_for(
                    &key,
                    u64::from(batch * 10 + j),
                    200 + (batch * 131 + j * 71) as usize % 900,
                );
                w.put(&key, &value).expect("put");
                model.insert(key, value);
            }
        }
        w.commit().expect("commit");
        after_batch.push((model.clone(), sim.fence_count()));
        node.merger
            .merge_chain(
                ChainId(0),
                if batch % 2 == 0 {
                    MergeScope::All
                } else {
                    MergeScope::Sealed
                },
            )
            .expect("merge");
        if batch == 3 {
            let log2 = node.index.tables().0.header.pairs_log2;
            node.index.resize(log2 + 1).expect("grow");
        }
        if batch == 6 {
            let log2 = node.index.tables().0.header.pairs_log2;
            node.index.resize(log2 - 1).expect("shrink");
        }
    }
    Run {
        creation_fences,
        after_batch,
    }
}

fn check(image: &[u8], run: &Run, k: u64) {
    let backend: Arc<dyn Backend> = Arc::new(CrashSim::from_image(image));
    let pool = match Pool::open(backend) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            assert!(
                k <= run.creation_fences,
                "crash at fence {k}: pool does not open: {e}"
            );
            assert!(
                matches!(e, PoolError::Foreign | PoolError::SuperblockChecksum { .. }),
                "{e}"
            );
            return;
        }
    };
    let recovered = recover(Arc::clone(&pool), config())
        .unwrap_or_else(|e| panic!("crash at fence {k}: recovery failed: {e}"));
    let mut got = Model::new();
    for (key, _, _) in recovered.index.entries().expect("entries") {
        let hit = recovered
            .index
            .get(&key)
            .expect("get")
            .expect("listed key is found");
        assert!(
            got.insert(key, hit.value().to_vec()).is_none(),
            "crash at fence {k}: a key listed twice"
        );
    }
    let durable = run
        .after_batch
        .iter()
        .filter(|(_, fence)| *fence < k)
        .count();
    let matches = |m: usize| {
        if m == 0 {
            got.is_empty()
        } else {
            got == run.after_batch[m - 1].0
        }
    };
    assert!(
        matches(durable) || (durable < run.after_batch.len() && matches(durable + 1)),
        "crash at fence {k}: index after recovery is not the state after {durable} (or {}) batches\n got {:?}\n want {:?}",
        durable + 1,
        got.iter()
            .map(|(k, v)| (
                String::from_utf8_lossy(k).into_owned(),
                v.len(),
                v.first().copied()
            ))
            .collect::<Vec<_>>(),
        run.after_batch[durable.max(1) - 1]
            .0
            .iter()
            .map(|(k, v)| (
                String::from_utf8_lossy(k).into_owned(),
                v.len(),
                v.first().copied()
            ))
            .collect::<Vec<_>>()
    );
    // No block is both free and in use.
    let free: HashSet<_> = recovered.alloc.free_blocks().into_iter().collect();
    let refs = dinomo_index::recovery::count_references(&recovered.index).expect("refs");
    for (i, &r) in refs.iter().enumerate() {
        let b = dinomo_pmem::BlockId(i as u32);
        if r > 0 {
            assert!(
                !free.contains(&b),
                "crash at fence {k}: {b} is referenced but free"
            );
            assert!(!matches!(pool.block_state(b), Ok(BlockState::Free { .. })));
        }
    }
    for chain in dinomo_pmem::recovery::inspect_chains(&pool).expect("chains") {
        for cb in chain.blocks {
            assert!(
                !free.contains(&cb.block),
                "crash at fence {k}: linked {} is free",
                cb.block
            );
        }
    }
    // The recovered node keeps working.
    let node = Node {
        pool: Arc::clone(&pool),
        alloc: recovered.alloc,
        index: recovered.index,
        merger: recovered.merger,
    };
    let mut w = writer(&node, 0, 2);
    w.put(b"after", b"crash").expect("put");
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    assert_eq!(
        node.index
            .get(b"after")
            .expect("get")
            .expect("present")
            .value(),
        b"crash"
    );
}

fn crash_everywhere(mode: impl Fn(u64) -> CrashMode, stride: u64) {
    let clean = Arc::new(CrashSim::new(POOL));
    let run = workload(Arc::clone(&clean));
    let total = clean.fence_count();
    assert!(
        total > run.creation_fences + 50,
        "workload has {total} fences"
    );
    let mut k = 1;
    while k <= total + 1 {
        let sim = Arc::new(CrashSim::new(POOL));
        sim.arm(k, mode(k));
        workload(Arc::clone(&sim));
        let image = sim
            .take_crash_image()
            .unwrap_or_else(|| sim.crash_image_now(mode(k)));
        check(&image, &run, k);
        k += stride;
    }
}

#[test]
fn crash_at_every_fence_dropping_unflushed_lines() {
    crash_everywhere(|_| CrashMode::DropUnflushed, 1);
}

#[test]
fn crash_at_every_fence_keeping_unflushed_lines() {
    crash_everywhere(|_| CrashMode::KeepUnflushed, 1);
}

#[test]
fn crash_at_every_fence_with_random_unflushed_subsets() {
    for seed in 0..3u64 {
        crash_everywhere(
            |k| CrashMode::Random {
                seed: seed * 1_000_003 + k * 7919,
            },
            1,
        );
    }
}
