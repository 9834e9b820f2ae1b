//! Property tests of the index and the merge against a `HashMap` model, with the real hash and
//! with a test hash that forces collisions (every key in one of four pairs, sharing tags).

mod common;

use std::collections::HashMap;

use common::*;
use dinomo_index::{KeyHasher, MergeScope};
use dinomo_pmem::ChainId;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Put(u8, u16),
    Delete(u8),
    Commit,
    Merge,
    Resize(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<u8>(), 0u16..600).prop_map(|(k, v)| Step::Put(k, v)),
        3 => any::<u8>().prop_map(Step::Delete),
        2 => Just(Step::Commit),
        2 => Just(Step::Merge),
        1 => (2u32..8).prop_map(Step::Resize),
    ]
}

fn key(k: u8) -> Vec<u8> {
    // Keys of varied lengths, some sharing prefixes.
    let mut key = format!("key:{}", k % 64).into_bytes();
    key.extend(std::iter::repeat_n(b'x', (k / 64) as usize));
    key
}

fn run(steps: &[Step], hasher: KeyHasher) -> Result<(), TestCaseError> {
    let node = node(8 << 20, 16 << 10, config(hasher));
    let mut w = writer(&node, 1, 1);
    // `merged` is what the index must show; `committed` what the next merge will add.
    let mut staged: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut committed: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut merged: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut version = 0u64;
    for s in steps {
        match *s {
            Step::Put(k, len) => {
                version += 1;
                let v = value_for(&key(k), version, len as usize);
                w.put(&key(k), &v).expect("put");
                staged.push((key(k), Some(v)));
            }
            Step::Delete(k) => {
                w.delete(&key(k)).expect("delete");
                staged.push((key(k), None));
            }
            Step::Commit => {
                w.commit().expect("commit");
                committed.append(&mut staged);
            }
            Step::Merge => {
                w.commit().expect("commit");
                committed.append(&mut staged);
                node.merger
                    .merge_chain(ChainId(1), MergeScope::All)
                    .expect("merge");
                for (k, v) in committed.drain(..) {
                    match v {
                        Some(v) => merged.insert(k, v),
                        None => merged.remove(&k),
                    };
                }
            }
            Step::Resize(log2) => {
                node.index.resize(log2).expect("resize");
            }
        }
        if matches!(s, Step::Merge | Step::Resize(_)) {
            for k in 0..=255u8 {
                let got = node.index.get(&key(k)).expect("get");
                let want = merged.get(&key(k));
                prop_assert_eq!(
                    got.as_ref().map(|h| h.value()),
                    want.map(|v| v.as_slice()),
                    "key {:?}",
                    key(k)
                );
            }
            let mut entries: Vec<Vec<u8>> = node
                .index
                .entries()
                .expect("entries")
                .into_iter()
                .map(|e| e.0)
                .collect();
            entries.sort();
            let mut keys: Vec<Vec<u8>> = merged.keys().cloned().collect();
            keys.sort();
            prop_assert_eq!(
                entries,
                keys,
                "every key once, no duplicates, nothing extra"
            );
            prop_assert_eq!(node.index.keys(), merged.len() as i64);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn index_matches_model_with_real_hash(steps in prop::collection::vec(step(), 1..300)) {
        run(&steps, KeyHasher::Xxh3)?;
    }

    #[test]
    fn index_matches_model_with_colliding_hash(steps in prop::collection::vec(step(), 1..300)) {
        run(&steps, KeyHasher::Custom(colliding_hash))?;
    }
}

#[test]
fn many_keys_grow_the_table_and_stay_findable() {
    let node = node(32 << 20, 64 << 10, config(KeyHasher::Xxh3));
    let mut w = writer(&node, 0, 1);
    let start = node.index.tables().0.header.pairs_log2;
    for i in 0..20_000u32 {
        w.put(format!("k{i}").as_bytes(), &i.to_le_bytes())
            .expect("put");
        if i % 1000 == 999 {
            w.commit().expect("commit");
            node.merger
                .merge_chain(ChainId(0), MergeScope::All)
                .expect("merge");
        }
    }
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    assert!(
        node.index.tables().0.header.pairs_log2 > start,
        "the table grew"
    );
    assert_eq!(node.index.keys(), 20_000);
    for i in (0..20_000u32).step_by(7) {
        let hit = node
            .index
            .get(format!("k{i}").as_bytes())
            .expect("get")
            .expect("present");
        assert_eq!(hit.value(), &i.to_le_bytes());
    }
    // Deleting most keys shrinks it again.
    for i in 0..19_500u32 {
        w.delete(format!("k{i}").as_bytes()).expect("delete");
    }
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    assert_eq!(node.index.keys(), 500);
    assert!(node.index.counters().resizes >= 2, "grew and shrank");
    for i in 19_500..20_000u32 {
        assert!(
            node.index
                .get(format!("k{i}").as_bytes())
                .expect("get")
                .is_some()
        );
    }
    assert!(node.index.get(b"k5").expect("get").is_none());
}

#[test]
fn older_entries_never_overwrite_newer_ones_across_chains() {
    let node = node(8 << 20, 16 << 10, config(KeyHasher::Xxh3));
    // Chain 2 writes in a later epoch (after an ownership change) but is merged first.
    let mut old = writer(&node, 1, 1);
    let mut new = writer(&node, 2, 2);
    old.put(b"k", b"old").expect("put");
    old.commit().expect("commit");
    new.put(b"k", b"new").expect("put");
    new.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(2), MergeScope::All)
        .expect("merge");
    node.merger
        .merge_chain(ChainId(1), MergeScope::All)
        .expect("merge");
    assert_eq!(
        node.index.get(b"k").expect("get").expect("present").value(),
        b"new"
    );
    // Re-merging is idempotent.
    node.merger
        .merge_chain(ChainId(1), MergeScope::All)
        .expect("merge");
    node.merger
        .merge_chain(ChainId(2), MergeScope::All)
        .expect("merge");
    assert_eq!(
        node.index.get(b"k").expect("get").expect("present").value(),
        b"new"
    );
    // An older delete does not remove a newer put.
    old.delete(b"k").expect("delete");
    old.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(1), MergeScope::All)
        .expect("merge");
    assert_eq!(
        node.index.get(b"k").expect("get").expect("present").value(),
        b"new"
    );
}

#[test]
fn dead_blocks_are_freed_and_sealed_blocks_unlinked() {
    let node = node(8 << 20, 4096, config(KeyHasher::Xxh3));
    let mut w = writer(&node, 0, 1);
    let free_at_start = node.alloc.free_count();
    // Overwrite the same few keys many times: old blocks hold only superseded entries.
    for round in 0..200u32 {
        for k in 0..4u32 {
            w.put(format!("k{k}").as_bytes(), &vec![round as u8; 500])
                .expect("put");
        }
        w.commit().expect("commit");
        if round % 10 == 9 {
            node.merger
                .merge_chain(ChainId(0), MergeScope::Sealed)
                .expect("merge");
        }
    }
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    let counters = node.merger.counters();
    assert!(counters.blocks_unlinked > 50, "{counters:?}");
    assert!(counters.blocks_freed > 40, "{counters:?}");
    assert!(
        free_at_start - node.alloc.free_count() < 10,
        "blocks come back: {} of {free_at_start} free",
        node.alloc.free_count()
    );
    for k in 0..4u32 {
        assert_eq!(
            node.index
                .get(format!("k{k}").as_bytes())
                .expect("get")
                .expect("present")
                .value(),
            &vec![199u8; 500][..]
        );
    }
}

#[test]
fn indirect_cells_install_and_remove() {
    let node = node(8 << 20, 16 << 10, config(KeyHasher::Xxh3));
    let mut w = writer(&node, 0, 1);
    w.put(b"hot", b"v1").expect("put");
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    let free = node.index.free_cells();
    let cell = node
        .index
        .install_indirect(b"hot")
        .expect("install")
        .expect("key exists");
    assert_eq!(node.index.free_cells(), free - 1);
    let hit = node.index.get(b"hot").expect("get").expect("present");
    assert_eq!((hit.value(), hit.cell), (&b"v1"[..], Some(cell)));
    // A merged update goes through the cell.
    w.put(b"hot", b"v2").expect("put");
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    assert_eq!(
        node.index
            .get(b"hot")
            .expect("get")
            .expect("present")
            .value(),
        b"v2"
    );
    assert!(node.index.remove_indirect(b"hot").expect("remove"));
    assert_eq!(node.index.free_cells(), free);
    let hit = node.index.get(b"hot").expect("get").expect("present");
    assert_eq!((hit.value(), hit.cell), (&b"v2"[..], None));
    assert!(
        node.index
            .install_indirect(b"absent")
            .expect("install")
            .is_none()
    );
}
