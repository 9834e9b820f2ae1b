//! Multi-threaded stress: writers on their own chains, merge threads on overlapping chains,
//! concurrent readers and a resizing thread. Readers only ever see values that were written for
//! the key they asked; the final index equals the model.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::*;
use dinomo_index::{KeyHasher, MergeScope};
use dinomo_pmem::ChainId;

const WRITERS: u32 = 3;
const SHARED_KEYS: u32 = 50;

/// A value names its key and version, so a reader can check it belongs to the key it asked for.
fn value(key: &[u8], version: u32) -> Vec<u8> {
    let mut v = key.to_vec();
    v.push(b'=');
    v.extend_from_slice(version.to_string().as_bytes());
    v.resize(v.len() + (version as usize % 7) * 50, b'.');
    v
}

fn run_stress(hasher: KeyHasher, keys_per_writer: u32) {
    let node = Arc::new(node(96 << 20, 64 << 10, config(hasher)));
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let node = Arc::clone(&node);
        writers.push(thread::spawn(move || {
            // Each writer has its own epoch: shared keys end with the highest epoch's last write.
            let mut w = writer(&node, t, t + 1);
            let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
            for round in 0..6u32 {
                for i in 0..keys_per_writer {
                    let key = format!("w{t}-k{i}").into_bytes();
                    if (i + round) % 11 == 0 && round > 0 {
                        w.delete(&key).expect("delete");
                        model.insert(key, None);
                    } else {
                        let v = value(&key, round * 100_000 + i);
                        w.put(&key, &v).expect("put");
                        model.insert(key, Some(v));
                    }
                    if i % SHARED_KEYS == 0 {
                        let key =
                            format!("shared-{}", (i / SHARED_KEYS) % SHARED_KEYS).into_bytes();
                        let v = value(&key, t * 1_000_000 + round * 10_000 + i);
                        w.put(&key, &v).expect("put");
                        model.insert(key, Some(v));
                    }
                    if i % 40 == 39 {
                        w.commit().expect("commit");
                    }
                }
            }
            w.commit().expect("commit");
            model
        }));
    }
    let mut helpers = Vec::new();
    for m in 0..2u32 {
        let (node, done) = (Arc::clone(&node), Arc::clone(&done));
        helpers.push(thread::spawn(move || {
            let mut i = m;
            while !done.load(Ordering::Relaxed) {
                let chain = ChainId(i % WRITERS);
                let scope = if i % 3 == 0 {
                    MergeScope::All
                } else {
                    MergeScope::Sealed
                };
                node.merger.merge_chain(chain, scope).expect("merge");
                i += 1;
            }
            0u64
        }));
    }
    for r in 0..2u32 {
        let (node, done) = (Arc::clone(&node), Arc::clone(&done));
        helpers.push(thread::spawn(move || {
            let mut i = r;
            let mut found = 0u64;
            let mut last_pass = 0;
            while last_pass < 200 {
                if done.load(Ordering::Relaxed) {
                    last_pass += 1;
                }
                let key = if i % 5 == 0 {
                    format!("shared-{}", i % SHARED_KEYS).into_bytes()
                } else {
                    format!("w{}-k{}", i % WRITERS, (i * 7) % keys_per_writer).into_bytes()
                };
                if let Some(hit) = node.index.get(&key).expect("get") {
                    let v = hit.value();
                    assert!(
                        v.starts_with(&key) && v[key.len()] == b'=',
                        "a value of another key: {key:?}"
                    );
                    found += 1;
                }
                i = i.wrapping_add(13);
            }
            found
        }));
    }
    {
        let (node, done) = (Arc::clone(&node), Arc::clone(&done));
        helpers.push(thread::spawn(move || {
            let mut grow = true;
            let mut resizes = 0u64;
            while !done.load(Ordering::Relaxed) {
                let log2 = node.index.tables().0.header.pairs_log2;
                let target = if grow {
                    log2 + 1
                } else {
                    log2.saturating_sub(1).max(4)
                };
                // With the colliding hash the table may outgrow the arena; that is refused.
                match node.index.try_resize(target) {
                    Ok(true) => resizes += 1,
                    Ok(false) | Err(dinomo_index::IndexError::ArenaFull(_)) => {}
                    Err(e) => panic!("resize: {e}"),
                }
                grow = !grow;
                thread::sleep(std::time::Duration::from_millis(2));
            }
            resizes
        }));
    }
    let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut shared_best: HashMap<Vec<u8>, (u32, Vec<u8>)> = HashMap::new();
    for (t, h) in writers.into_iter().enumerate() {
        for (k, v) in h.join().expect("writer") {
            if k.starts_with(b"shared-") {
                let v = v.expect("shared keys are never deleted");
                // The highest epoch wins; within a writer, its last write (the model keeps it).
                if shared_best.get(&k).is_none_or(|(e, _)| (t as u32) >= *e) {
                    shared_best.insert(k, (t as u32, v));
                }
            } else {
                model.insert(k, v);
            }
        }
    }
    // Merge everything while the helpers still run, then stop them: the readers' last pass
    // runs against the fully merged index.
    node.merger
        .merge_chains((0..WRITERS).map(ChainId), MergeScope::All)
        .expect("final merge");
    done.store(true, Ordering::Relaxed);
    let mut total_found = 0;
    let mut resizes = 0;
    for (i, h) in helpers.into_iter().enumerate() {
        let n = h.join().expect("helper");
        match i {
            2 | 3 => total_found += n,
            4 => resizes = n,
            _ => {}
        }
    }
    node.merger
        .merge_chains((0..WRITERS).map(ChainId), MergeScope::All)
        .expect("final merge");
    for (k, (_, v)) in shared_best {
        model.insert(k, Some(v));
    }
    let live = model.values().filter(|v| v.is_some()).count();
    // The running count may drift by a few when resizes race same-key inserts; the scan is exact.
    assert!(
        (node.index.keys() - live as i64).abs() <= 8,
        "count {} vs {live}",
        node.index.keys()
    );
    for (k, v) in &model {
        let got = node.index.get(k).expect("get");
        assert_eq!(
            got.as_ref().map(|h| h.value()),
            v.as_deref(),
            "key {}",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(
        node.index.entries().expect("entries").len(),
        live,
        "no duplicate slots remain"
    );
    assert!(total_found > 0, "readers found keys");
    assert!(resizes > 0, "resizes ran concurrently");
}

#[test]
fn writers_mergers_readers_and_resizes_agree_with_the_model() {
    // Several runs: each interleaves differently.
    for _ in 0..4 {
        run_stress(KeyHasher::Xxh3, 1500);
    }
}

#[test]
fn the_same_with_forced_collisions() {
    // Every key in one of four pairs: long overflow chains, so fewer keys.
    for _ in 0..4 {
        run_stress(KeyHasher::Custom(colliding_hash), 250);
    }
}
