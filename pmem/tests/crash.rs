//! Crash tests: a workload of batch appends with block switches runs on the crash-simulating
//! backend and is crashed at every fence, with unflushed lines dropped, kept, or kept at random.
//! After each crash the pool is recovered and must show every batch whose durability point
//! completed, intact, and nothing torn: the visible entries are always whole batches.

use std::sync::Arc;

use dinomo_pmem::log::{for_each_entry, walk_chain};
use dinomo_pmem::recovery::recover;
use dinomo_pmem::{
    Backend, BlockAllocator, BlockId, ChainId, CrashMode, CrashSim, Epoch, LogWriter, Op, Pool,
    PoolConfig, PoolError, WriterOptions,
};

const POOL: u64 = 320 << 10;
const BLOCK: u64 = 4096;
const CHAIN: ChainId = ChainId(1);

type Record = (Op, Vec<u8>, Vec<u8>, u64);

struct Run {
    creation_fences: u64,
    /// Per batch: its entries and the fence count when its commit returned.
    batches: Vec<(Vec<Record>, u64)>,
}

fn options() -> WriterOptions {
    WriterOptions {
        batch_bytes_max: 1 << 20,
        persist: true,
        keep_history: false,
    }
}

fn workload(sim: Arc<CrashSim>) -> Run {
    let backend: Arc<dyn Backend> = sim.clone();
    let pool = Arc::new(Pool::create(backend, &PoolConfig::small(POOL, BLOCK)).expect("create"));
    let creation_fences = sim.fence_count();
    let free = (0..pool.layout().block_count).map(BlockId).collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), free));
    let mut writer = LogWriter::attach(alloc, CHAIN, Epoch(1), options()).expect("attach");
    let mut batches = Vec::new();
    for batch in 0..14u32 {
        let mut entries = Vec::new();
        for j in 0..(batch % 4 + 1) {
            let key = format!("key-{batch}-{j}").into_bytes();
            let value =
                vec![(batch * 7 + j) as u8; 100 + (batch as usize * 377 + j as usize * 91) % 1900];
            let (_, version) = writer.put(&key, &value).expect("put");
            entries.push((Op::Put, key, value, version.seq));
        }
        if batch % 3 == 2 {
            let key = format!("key-{}-0", batch - 1).into_bytes();
            let (_, version) = writer.delete(&key).expect("delete");
            entries.push((Op::Delete, key, Vec::new(), version.seq));
        }
        writer.commit().expect("commit");
        batches.push((entries, sim.fence_count()));
    }
    Run {
        creation_fences,
        batches,
    }
}

fn scan(pool: &Pool) -> Vec<Record> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for cb in walk_chain(pool, CHAIN).expect("walk") {
        for_each_entry(
            pool,
            cb.block,
            0,
            u64::from(cb.tail.used),
            &mut buf,
            |_, e| {
                out.push((e.op, e.key.to_vec(), e.value.to_vec(), e.version.seq));
                Ok::<(), dinomo_pmem::PoolError>(())
            },
        )
        .expect("no torn or corrupt entry below a persisted tail");
    }
    out
}

/// Checks one crash image; returns how many batches were visible.
fn check_image(image: &[u8], run: &Run, crash_fence: u64) -> Option<usize> {
    let pool = match Pool::open(Arc::new(CrashSim::from_image(image))) {
        Ok(pool) => pool,
        Err(e) => {
            assert!(
                crash_fence <= run.creation_fences,
                "crash at fence {crash_fence} after creation finished, yet the pool does not open: {e}"
            );
            assert!(
                matches!(e, PoolError::Foreign | PoolError::SuperblockChecksum { .. }),
                "{e}"
            );
            return None;
        }
    };
    recover(&pool).expect("recovery succeeds");
    let visible = scan(&pool);
    let durable = run
        .batches
        .iter()
        .filter(|(_, fence)| *fence < crash_fence)
        .count();
    // The visible entries must be exactly the first m batches, whole, with m ≥ durable.
    let mut expected = Vec::new();
    let mut m = 0;
    while expected.len() < visible.len() {
        assert!(
            m < run.batches.len(),
            "more entries visible than were ever written"
        );
        expected.extend(run.batches[m].0.iter().cloned());
        m += 1;
    }
    assert_eq!(
        visible, expected,
        "crash at fence {crash_fence}: visible entries are not whole batches"
    );
    assert!(
        m >= durable,
        "crash at fence {crash_fence}: {durable} batches were durable, only {m} visible"
    );
    assert!(
        m <= durable + 1,
        "a batch whose commit had not begun is visible"
    );

    // The recovered pool takes new writes that continue the sequence.
    let pool = Arc::new(pool);
    let report_free = (0..pool.layout().block_count)
        .map(BlockId)
        .filter(|b| {
            matches!(
                pool.block_state(*b),
                Ok(dinomo_pmem::BlockState::Free { .. })
            )
        })
        .collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), report_free));
    let mut writer =
        LogWriter::attach(alloc, CHAIN, Epoch(2), options()).expect("attach after recovery");
    let (_, version) = writer.put(b"after", b"recovery").expect("put");
    writer.commit().expect("commit");
    assert!(
        visible.iter().all(|e| e.3 < version.seq),
        "sequence numbers went backwards"
    );
    let again = scan(&pool);
    assert_eq!(&again[..visible.len()], &visible[..]);
    assert_eq!(again.last().map(|e| e.1.as_slice()), Some(&b"after"[..]));
    Some(m)
}

fn crash_everywhere(mode_for: impl Fn(u64) -> CrashMode) {
    let clean = Arc::new(CrashSim::new(POOL));
    let run = workload(Arc::clone(&clean));
    let total = clean.fence_count();
    assert!(
        total > run.creation_fences + 20,
        "the workload should have many fences, has {total}"
    );
    // Block switches happened: the chain spans several blocks.
    let pool = Pool::open(Arc::new(CrashSim::from_image(&clean.current_image()))).expect("open");
    assert!(walk_chain(&pool, CHAIN).expect("walk").len() >= 4);
    let mut seen_partial = 0;
    for k in 1..=total + 1 {
        let sim = Arc::new(CrashSim::new(POOL));
        sim.arm(k, mode_for(k));
        let run_k = workload(Arc::clone(&sim));
        assert_eq!(
            run_k.batches.iter().map(|b| b.1).collect::<Vec<_>>(),
            run.batches.iter().map(|b| b.1).collect::<Vec<_>>()
        );
        let image = sim
            .take_crash_image()
            .unwrap_or_else(|| sim.crash_image_now(mode_for(k)));
        if let Some(m) = check_image(&image, &run, k)
            && m > 0
            && m < run.batches.len()
        {
            seen_partial += 1;
        }
    }
    assert!(seen_partial > 0, "some crash points fall between batches");
}

#[test]
fn crash_at_every_fence_dropping_unflushed_lines() {
    crash_everywhere(|_| CrashMode::DropUnflushed);
}

#[test]
fn crash_at_every_fence_keeping_unflushed_lines() {
    crash_everywhere(|_| CrashMode::KeepUnflushed);
}

#[test]
fn crash_at_every_fence_with_random_unflushed_subsets() {
    for seed in 0..4u64 {
        crash_everywhere(|k| CrashMode::Random {
            seed: seed * 1_000_003 + k,
        });
    }
}
