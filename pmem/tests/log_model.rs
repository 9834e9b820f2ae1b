//! Property tests of the log and the allocator against simple models: what a chain scan returns
//! is exactly the committed entries in order; allocation never hands out a block twice, and a
//! restart rebuilds the free set the model predicts.

use std::collections::BTreeSet;
use std::sync::Arc;

use dinomo_pmem::log::{for_each_entry, unlink_cursor_block, walk_chain};
use dinomo_pmem::recovery::recover;
use dinomo_pmem::{
    BlockAllocator, BlockId, ChainId, Epoch, LogWriter, MemBackend, Op, Pool, PoolConfig,
    WriterOptions,
};
use proptest::prelude::*;

const POOL: u64 = 512 << 10;
const BLOCK: u64 = 4096;

fn new_pool() -> (Arc<Pool>, Arc<BlockAllocator>) {
    let pool = Arc::new(
        Pool::create(
            Arc::new(MemBackend::new(POOL)),
            &PoolConfig::small(POOL, BLOCK),
        )
        .expect("create"),
    );
    let free = (0..pool.layout().block_count).map(BlockId).collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), free));
    (pool, alloc)
}

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<u8>, usize),
    Delete(Vec<u8>),
    Commit,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop::collection::vec(any::<u8>(), 0..24), 0usize..1500).prop_map(|(k, v)| Step::Put(k, v)),
        2 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Step::Delete),
        2 => Just(Step::Commit),
    ]
}

/// Every entry of the chain, oldest first, from the start of each block to its tail.
fn scan(pool: &Pool, c: ChainId) -> Vec<(Op, Vec<u8>, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for cb in walk_chain(pool, c).expect("walk") {
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
        .expect("scan");
    }
    out
}

fn value(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seed) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scan_returns_exactly_the_committed_entries(steps in prop::collection::vec(step(), 1..120)) {
        let (pool, alloc) = new_pool();
        let c = ChainId(3);
        let options = WriterOptions { batch_bytes_max: 6000, persist: true, keep_history: false };
        let mut writer = LogWriter::attach(Arc::clone(&alloc), c, Epoch(1), options).expect("attach");
        let mut committed = Vec::new();
        let mut staged = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Put(k, len) => {
                    let v = value(*len, i);
                    let (_, version) = writer.put(k, &v).expect("put");
                    staged.push((Op::Put, k.clone(), v, version.seq));
                }
                Step::Delete(k) => {
                    let (_, version) = writer.delete(k).expect("delete");
                    staged.push((Op::Delete, k.clone(), Vec::new(), version.seq));
                }
                Step::Commit => {
                    writer.commit().expect("commit");
                    committed.append(&mut staged);
                }
            }
            // A full batch commits by itself; everything before the last entry is then durable.
            let visible = scan(&pool, c);
            prop_assert!(visible.len() >= committed.len());
            let all: Vec<_> = committed.iter().chain(staged.iter()).cloned().collect();
            prop_assert_eq!(&visible[..], &all[..visible.len()], "the scan is a prefix of what was written");
        }
        writer.commit().expect("commit");
        committed.append(&mut staged);
        prop_assert_eq!(scan(&pool, c), committed.clone());
        // Sequence numbers increase along the chain, and a new writer continues after them.
        prop_assert!(committed.windows(2).all(|w| w[0].3 < w[1].3));
        drop(writer);
        let writer = LogWriter::attach(alloc, c, Epoch(1), options).expect("reattach");
        prop_assert_eq!(writer.next_seq(), committed.last().map_or(1, |e| e.3 + 1));
    }

    #[test]
    fn allocation_matches_the_model_and_survives_restart(ops in prop::collection::vec((0u32..3, 0u8..4), 1..200)) {
        let (pool, alloc) = new_pool();
        let total = pool.layout().block_count as usize;
        let mut in_use: BTreeSet<BlockId> = BTreeSet::new();
        let mut writers: Vec<Option<LogWriter>> = (0..3).map(|_| None).collect();
        let mut next_key = 0u64;
        for (chain, action) in ops {
            let c = ChainId(chain);
            let slot = &mut writers[chain as usize];
            match action {
                // Write a few blocks' worth of entries (forces allocations and block switches).
                0 | 1 => {
                    let w = match slot {
                        Some(w) => w,
                        None => slot.insert(LogWriter::attach(Arc::clone(&alloc), c, Epoch(1), WriterOptions::default()).expect("attach")),
                    };
                    for _ in 0..3 {
                        next_key += 1;
                        match w.put(&next_key.to_le_bytes(), &[7u8; 1500]) {
                            Ok(_) => {}
                            Err(dinomo_pmem::log::AppendOrPool::Pool(dinomo_pmem::PoolError::NoFreeBlock)) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    w.commit().expect("commit");
                }
                // Pretend the merge folded everything: unlink and free sealed blocks.
                2 => {
                    let blocks = walk_chain(&pool, c).expect("walk");
                    for cb in &blocks {
                        pool.set_block_merged(cb.block, u64::from(cb.tail.used), 0).expect("merged");
                    }
                    while let Some((b, generation)) = unlink_cursor_block(&alloc, c, 0).expect("unlink") {
                        prop_assert!(alloc.free_retired(b, generation).expect("free"));
                        prop_assert!(!alloc.free_retired(b, generation).expect("second free"), "one winner");
                    }
                }
                // Drop the writer (its spare, if any, is released at the next attach).
                _ => *slot = None,
            }
            // The model: in use = every linked block plus reserved spares.
            in_use.clear();
            for i in 0..3 {
                for cb in walk_chain(&pool, ChainId(i)).expect("walk") {
                    prop_assert!(in_use.insert(cb.block), "a block is in two chains");
                }
                if let Some(Some(spare)) = writers[i as usize].as_ref().map(|w| w.staging().spare()) {
                    prop_assert!(in_use.insert(spare), "a spare is also linked");
                }
            }
            let free: BTreeSet<BlockId> = alloc.free_blocks().into_iter().collect();
            prop_assert!(free.is_disjoint(&in_use), "no block is both free and in use");
            prop_assert_eq!(free.len() + in_use.len() + orphans(&pool, &free, &in_use), total);
        }
        // Restart: recovery frees unlinked spares, keeps linked blocks.
        drop(writers);
        let mut image = vec![0u8; pool.backend().len() as usize];
        pool.backend().read(0, &mut image);
        let reopened = Pool::open(Arc::new(MemBackend::from_image(&image))).expect("reopen");
        let report = recover(&reopened).expect("recover");
        let linked: BTreeSet<BlockId> = report.chains.iter().flat_map(|c| c.blocks.iter().map(|b| b.block)).collect();
        let free: BTreeSet<BlockId> = report.free.iter().copied().collect();
        prop_assert!(free.is_disjoint(&linked));
        prop_assert_eq!(free.len() + linked.len() + report.retired.len(), total, "nothing leaks");
    }
}

/// Blocks neither free nor linked nor a live spare: RESERVED spares of dropped writers, waiting
/// for their chain's next attach. The model counts them so that the sum is exact.
fn orphans(pool: &Pool, free: &BTreeSet<BlockId>, in_use: &BTreeSet<BlockId>) -> usize {
    (0..pool.layout().block_count)
        .map(BlockId)
        .filter(|b| !free.contains(b) && !in_use.contains(b))
        .inspect(|b| {
            let state = pool.block_state(*b).expect("state");
            assert!(
                matches!(state, dinomo_pmem::BlockState::Reserved { .. }),
                "{b} is {state:?}"
            );
        })
        .count()
}

/// The writer's commits touch only the `tail` word of a block header: the fields the memory node
/// owns (merge position, counters) survive every commit, including a block switch.
#[test]
fn commits_never_clobber_the_memory_nodes_header_fields() {
    use dinomo_pmem::pool::{
        HEADER_INSTALLED, HEADER_MERGED, HEADER_MERGED_SEQ, HEADER_SUPERSEDED,
    };
    let (pool, alloc) = new_pool();
    let c = ChainId(2);
    let mut w = LogWriter::attach(Arc::clone(&alloc), c, Epoch(1), WriterOptions::default())
        .expect("attach");
    let sentinel = |field: u64| 0x5EED_0000 + field;
    let mut stamped = BTreeSet::new();
    for round in 0..40u32 {
        // The memory node's view of every block the chain has, stamped before the commit.
        for cb in walk_chain(&pool, c).expect("walk") {
            if stamped.insert(cb.block) {
                for field in [HEADER_INSTALLED, HEADER_SUPERSEDED, HEADER_MERGED_SEQ] {
                    pool.backend().store(
                        pool.block_counter_off(cb.block, field).get(),
                        sentinel(field),
                    );
                }
            }
        }
        w.put(&round.to_le_bytes(), &[round as u8; 700])
            .expect("put");
        w.commit().expect("commit");
    }
    assert!(stamped.len() >= 4, "the writer switched blocks");
    for b in stamped {
        for field in [HEADER_INSTALLED, HEADER_SUPERSEDED, HEADER_MERGED_SEQ] {
            assert_eq!(
                pool.backend().load(pool.block_counter_off(b, field).get()),
                sentinel(field),
                "{b} field {field}"
            );
        }
        assert_eq!(
            pool.backend()
                .load(pool.block_counter_off(b, HEADER_MERGED).get()),
            0,
            "{b}: merged untouched"
        );
    }
}
