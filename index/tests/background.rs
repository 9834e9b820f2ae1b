//! Which chains a background pass merges: every chain with a cursor at a full sweep (every
//! `FULL_SWEEP_EVERY_PASSES`-th pass, the first included), and in the passes between only those
//! and the chains noted with `Merger::note_active`.

mod common;

use common::*;
use dinomo_index::{FULL_SWEEP_EVERY_PASSES, KeyHasher};

fn put_one(w: &mut dinomo_pmem::LogWriter, key: &str) {
    w.put(key.as_bytes(), b"value").expect("put");
    w.commit().expect("commit");
}

#[test]
fn passes_between_sweeps_visit_known_and_noted_chains_only() {
    let node = node(64 << 20, 1 << 20, config(KeyHasher::Xxh3));
    let mut first = writer(&node, 3, 1);
    put_one(&mut first, "first");

    // Pass 0 is a full sweep: it finds chain 3 without being told.
    let r = node.merger.background_pass().expect("pass");
    assert_eq!(r.entries, 1);
    assert!(node.index.get(b"first").expect("get").is_some());

    // A chain that appears after the sweep and is not noted waits for the next sweep.
    let mut late = writer(&node, 7, 1);
    put_one(&mut late, "late");
    let r = node.merger.background_pass().expect("pass");
    assert_eq!(r.entries, 0);
    assert!(node.index.get(b"late").expect("get").is_none());

    // A known chain keeps being merged between sweeps.
    put_one(&mut first, "first-again");
    let r = node.merger.background_pass().expect("pass");
    assert_eq!(r.entries, 1);
    assert!(node.index.get(b"first-again").expect("get").is_some());

    // A noted chain is merged by the very next pass.
    let mut noted = writer(&node, 9, 1);
    put_one(&mut noted, "noted");
    node.merger.note_active(dinomo_pmem::ChainId(9));
    let r = node.merger.background_pass().expect("pass");
    assert_eq!(r.entries, 1);
    assert!(node.index.get(b"noted").expect("get").is_some());
    assert!(node.index.get(b"late").expect("get").is_none());

    // Noting a chain the pool does not have changes nothing.
    node.merger.note_active(dinomo_pmem::ChainId(u32::MAX));

    // The next full sweep picks the unnoted chain up.
    let mut merged_late = false;
    for _ in 0..FULL_SWEEP_EVERY_PASSES {
        let r = node.merger.background_pass().expect("pass");
        if r.entries > 0 {
            merged_late = true;
            break;
        }
    }
    assert!(
        merged_late,
        "a full sweep within {FULL_SWEEP_EVERY_PASSES} passes"
    );
    assert!(node.index.get(b"late").expect("get").is_some());
}
