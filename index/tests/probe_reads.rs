//! How many READs a remote lookup costs, counted (not timed): at load factor 0.75 at least 95% of
//! lookups of present keys cost one READ of the bucket pair and one READ of the entry.

mod common;

use std::sync::Arc;

use common::*;
use dinomo_index::{IndexConfig, KeyHasher, MergeScope, Probe, Step, key_hash};
use dinomo_pmem::ChainId;

/// Loads `fill × capacity` keys into a table of `2^pairs_log2` pairs (no resizing) and returns the
/// READs of one remote lookup of each key.
pub fn reads_per_lookup(pairs_log2: u32, fill: f64) -> Vec<u32> {
    let config = IndexConfig {
        auto_resize: false,
        ..common::config(KeyHasher::Xxh3)
    };
    let node = node(256 << 20, 1 << 20, config);
    node.index.resize(pairs_log2).expect("size the table");
    let keys = ((1u64 << pairs_log2) as f64 * 14.0 * fill) as u32;
    let mut w = writer(&node, 0, 1);
    for i in 0..keys {
        w.put(format!("key:{i:08}").as_bytes(), &[7u8; 100])
            .expect("put");
    }
    w.commit().expect("commit");
    node.merger
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    assert_eq!(node.index.keys(), i64::from(keys));
    let table = node.index.tables().0.header;
    let backend = Arc::clone(node.pool.backend());
    (0..keys)
        .map(|i| {
            let key = format!("key:{i:08}").into_bytes();
            let mut probe = Probe::new(table, &key, key_hash(&key), key_hash, 128);
            let mut step = probe.start();
            loop {
                match step {
                    Step::Read { off, len } => {
                        let mut buf = vec![0u8; len as usize];
                        backend.read(off.get(), &mut buf);
                        step = probe.feed(&buf);
                    }
                    Step::Hit(_) => return probe.reads(),
                    other => panic!("a present key probed to {other:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn two_reads_for_95_percent_of_lookups_at_load_factor_075() {
    let reads = reads_per_lookup(12, 0.75);
    let two = reads.iter().filter(|&&r| r == 2).count();
    let share = two as f64 / reads.len() as f64;
    assert!(reads.iter().all(|&r| r >= 2));
    assert!(
        share >= 0.95,
        "{:.2}% of lookups took one bucket READ and one entry READ",
        share * 100.0
    );
}
