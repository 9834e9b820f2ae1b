//! The KN engine against a real memory node over the local fabric: every read path (value,
//! shortcut, unmerged log, index), group-committed writes, block switches and the merge
//! catching up, conditional writes, and the round trips each path costs.

use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::kn::{Command, Outcome, Reply, SetCond};
use dinomo_index::MergeScope;
use dinomo_pmem::ChainId;
use dinomo_testkit::kn::*;

fn value(i: u32, version: u32, len: usize) -> Vec<u8> {
    let mut v = format!("{i}:{version}:").into_bytes();
    v.resize(len, b'x');
    v
}

#[test]
fn writes_then_reads_through_every_path() {
    let mn = memnode(64 << 20, 64 << 10);
    // A tiny cache: most keys fall out of it, so reads take the other paths.
    let mut e = engine(&mn, engine_config(0, Policy::Dac, 8 << 10));
    let n = 2000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let cmds = chunk
            .iter()
            .map(|&i| set(format!("k{i}").as_bytes(), &value(i, 1, 300)))
            .collect();
        assert!(run(&mut e, cmds).iter().all(|r| *r == Reply::Ok));
    }
    assert!(
        e.stats().block_switches > 5,
        "writes spanned several blocks"
    );
    // Everything reads back, from whichever path.
    let replies = run(
        &mut e,
        (0..n).map(|i| get(format!("k{i}").as_bytes())).collect(),
    );
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(*r, Reply::Value(Some(value(i as u32, 1, 300))), "k{i}");
    }
    // Merge everything, drop the local log: reads now come from the cache or the index.
    mn.node
        .merger()
        .merge_chain(ChainId(0), MergeScope::All)
        .expect("merge");
    await_merged(&mut e);
    let replies = run(
        &mut e,
        (0..n).map(|i| get(format!("k{i}").as_bytes())).collect(),
    );
    assert!(
        replies
            .iter()
            .enumerate()
            .all(|(i, r)| *r == Reply::Value(Some(value(i as u32, 1, 300))))
    );
    let s = e.stats();
    assert!(
        s.ops[Outcome::Miss as usize] > 0,
        "index reads happened: {s:?}"
    );
    // A miss costs two dependent round trips (bucket pair, entry) when nothing is stale.
    let misses = s.ops[Outcome::Miss as usize];
    let miss_rts = s.round_trips[Outcome::Miss as usize];
    assert!(
        miss_rts >= 2 * misses && miss_rts <= 2 * misses + misses / 10 + 4,
        "{miss_rts} round trips for {misses} misses"
    );
    assert_eq!(s.round_trips[Outcome::Value as usize], 0);
    assert_eq!(s.round_trips[Outcome::Log as usize], 0);
    assert_eq!(
        s.round_trips[Outcome::Shortcut as usize],
        s.ops[Outcome::Shortcut as usize]
    );
    // Absent keys are misses that find nothing.
    assert_eq!(run(&mut e, vec![get(b"absent")]), vec![Reply::Value(None)]);
}

#[test]
fn overwrites_and_deletes_are_seen_in_order() {
    let mn = memnode(32 << 20, 16 << 10);
    let mut e = engine(&mn, engine_config(1, Policy::Dac, 1 << 20));
    let mut cmds = Vec::new();
    for v in 0..5u32 {
        cmds.push(set(b"k", &value(0, v, 100)));
        cmds.push(get(b"k"));
    }
    cmds.push(del(b"k"));
    cmds.push(get(b"k"));
    cmds.push(del(b"k"));
    let replies = run(&mut e, cmds);
    for v in 0..5usize {
        assert_eq!(replies[2 * v], Reply::Ok);
        assert_eq!(
            replies[2 * v + 1],
            Reply::Value(Some(value(0, v as u32, 100))),
            "a read after a write sees it"
        );
    }
    assert_eq!(
        replies[10..],
        [Reply::Int(1), Reply::Value(None), Reply::Int(0)]
    );
}

#[test]
fn conditional_writes() {
    let mn = memnode(32 << 20, 16 << 10);
    let mut e = engine(&mn, engine_config(2, Policy::Dac, 1 << 20));
    let c = |key: &[u8], v: &[u8], cond, get| Command::Set {
        key: key.to_vec(),
        value: v.to_vec(),
        cond,
        get,
    };
    let replies = run(
        &mut e,
        vec![
            c(b"a", b"1", SetCond::IfPresent, false),
            c(b"a", b"1", SetCond::IfAbsent, false),
            c(b"a", b"2", SetCond::IfAbsent, false),
            c(b"a", b"3", SetCond::IfPresent, true),
            c(b"a", b"4", SetCond::Always, true),
            get(b"a"),
            Command::Exists { key: b"a".to_vec() },
            Command::Exists { key: b"b".to_vec() },
        ],
    );
    assert_eq!(
        replies,
        vec![
            Reply::NotSet,
            Reply::Ok,
            Reply::NotSet,
            Reply::Value(Some(b"1".to_vec())),
            Reply::Value(Some(b"3".to_vec())),
            Reply::Value(Some(b"4".to_vec())),
            Reply::Int(1),
            Reply::Int(0)
        ]
    );
}

#[test]
fn a_new_engine_on_the_same_chain_sees_everything() {
    let mn = memnode(32 << 20, 16 << 10);
    {
        let mut e = engine(&mn, engine_config(3, Policy::Dac, 1 << 20));
        let cmds = (0..500u32)
            .map(|i| set(format!("k{i}").as_bytes(), &value(i, 7, 200)))
            .collect();
        assert!(run(&mut e, cmds).iter().all(|r| *r == Reply::Ok));
        run(&mut e, vec![del(b"k3")]);
    }
    // The old engine is gone (its core restarted): attach merges its chain.
    let mut e = engine(&mn, engine_config(3, Policy::None, 0));
    let replies = run(
        &mut e,
        (0..500u32)
            .map(|i| get(format!("k{i}").as_bytes()))
            .collect(),
    );
    for (i, r) in replies.iter().enumerate() {
        let want = if i == 3 {
            None
        } else {
            Some(value(i as u32, 7, 200))
        };
        assert_eq!(*r, Reply::Value(want), "k{i}");
    }
    // Sequence numbers continue: a new write wins over the old one.
    run(&mut e, vec![set(b"k1", b"new")]);
    assert_eq!(
        run(&mut e, vec![get(b"k1")]),
        vec![Reply::Value(Some(b"new".to_vec()))]
    );
}

#[test]
fn each_cache_policy_serves_correct_values_and_counts_its_hits() {
    for policy in [
        Policy::Dac,
        Policy::ValueOnly,
        Policy::ShortcutOnly,
        Policy::None,
    ] {
        let mn = memnode(32 << 20, 16 << 10);
        let mut e = engine(&mn, engine_config(4, policy, 256 << 10));
        let cmds = (0..300u32)
            .map(|i| set(format!("k{i}").as_bytes(), &value(i, 1, 500)))
            .collect();
        run(&mut e, cmds);
        mn.node
            .merger()
            .merge_chain(ChainId(4), MergeScope::All)
            .expect("merge");
        // Let the engine see the merge (it drops its local copies once the cursor moves).
        await_merged(&mut e);
        let before = e.stats().clone();
        let replies = run(
            &mut e,
            (0..300u32)
                .map(|i| get(format!("k{i}").as_bytes()))
                .collect(),
        );
        assert!(
            replies
                .iter()
                .enumerate()
                .all(|(i, r)| *r == Reply::Value(Some(value(i as u32, 1, 500)))),
            "{policy:?}"
        );
        let s = e.stats();
        let d = |o: Outcome| s.ops[o as usize] - before.ops[o as usize];
        match policy {
            Policy::None => assert_eq!(
                d(Outcome::Value) + d(Outcome::Shortcut),
                0,
                "no cache, no cache hits"
            ),
            Policy::ValueOnly => {
                assert_eq!(d(Outcome::Shortcut), 0, "value-only never holds a shortcut")
            }
            Policy::ShortcutOnly => {
                assert_eq!(d(Outcome::Value), 0, "shortcut-only never holds a value")
            }
            Policy::Dac => assert!(d(Outcome::Value) + d(Outcome::Shortcut) > 0),
        }
        assert_eq!(
            d(Outcome::Value) + d(Outcome::Shortcut) + d(Outcome::Log) + d(Outcome::Miss),
            300
        );
    }
}

#[test]
fn values_up_to_a_mebibyte() {
    let mn = memnode(64 << 20, 4 << 20);
    let mut e = engine(&mn, engine_config(5, Policy::Dac, 64 << 20));
    let big = value(1, 1, 1 << 20);
    assert_eq!(run(&mut e, vec![set(b"big", &big)]), vec![Reply::Ok]);
    assert_eq!(
        run(&mut e, vec![get(b"big")]),
        vec![Reply::Value(Some(big.clone()))]
    );
    let mut cold = engine(&mn, engine_config(6, Policy::None, 0));
    mn.node
        .merger()
        .merge_chain(ChainId(5), MergeScope::All)
        .expect("merge");
    assert_eq!(
        run(&mut cold, vec![get(b"big")]),
        vec![Reply::Value(Some(big))],
        "through the index, two READs of the entry"
    );
    // Larger than a block: a clear error, nothing written.
    let huge = vec![0u8; 5 << 20];
    assert!(matches!(
        run(&mut e, vec![set(b"huge", &huge)])[0],
        Reply::Error(_)
    ));
}

#[test]
fn a_shortcut_into_a_reclaimed_block_falls_back_to_the_index() {
    use dinomo_dataplane::cache::Lookup;
    let mn = memnode(4 << 20, 16 << 10);
    // Core A caches only shortcuts; it writes the key and fillers that seal its block.
    let mut a = engine(&mn, engine_config(10, Policy::ShortcutOnly, 1 << 20));
    let mut cmds = vec![set(b"k", b"old")];
    cmds.extend((0..100u32).map(|i| set(format!("a{i}").as_bytes(), &value(i, 1, 200))));
    run(&mut a, cmds);
    let Lookup::Shortcut(sc) = a.cache().peek(b"k") else {
        panic!("A caches a shortcut for k")
    };
    let layout = *mn.node.pool().layout();
    let (block, offset) = layout
        .locate(dinomo_pmem::PoolOffset(sc.entry_offset))
        .expect("an entry offset");
    let generation = mn
        .node
        .pool()
        .block_state(block)
        .expect("state")
        .generation();
    mn.node
        .merger()
        .merge_chain(ChainId(10), MergeScope::All)
        .expect("merge");
    // A learns from its periodic merge-progress poll that "k" is in the index, so its own log no
    // longer answers for it (otherwise the read below would be served from A's log mirror).
    await_merged(&mut a);
    // Core B, after an ownership change (a newer epoch), overwrites everything A wrote, then keeps
    // rewriting its own keys: A's blocks die, are freed, and are reused and overwritten. (A would
    // have dropped its cache when it lost the keys; here it keeps the shortcut on purpose.)
    let mut b = engine(&mn, with_epoch(engine_config(11, Policy::None, 0), 2));
    let mut cmds = vec![set(b"k", b"new")];
    cmds.extend((0..100u32).map(|i| set(format!("a{i}").as_bytes(), &value(i, 2, 200))));
    run(&mut b, cmds);
    let mut round = 0u32;
    loop {
        mn.node
            .merger()
            .merge_chain(ChainId(11), MergeScope::All)
            .expect("merge");
        let pool = mn.node.pool();
        let reused = pool.block_state(block).expect("state").generation() != generation
            && u64::from(pool.block_tail(block).expect("tail").used)
                >= offset + u64::from(sc.entry_len);
        if reused {
            break;
        }
        round += 1;
        assert!(
            round < 2000,
            "A's block was never reused: {:?}",
            mn.node.stats()
        );
        run(
            &mut b,
            (0..50u32)
                .map(|i| set(format!("b{i}").as_bytes(), &value(i, round, 300)))
                .collect(),
        );
    }
    // A still holds its shortcut for "k"; the entry it names is gone, which A detects.
    let before = a.stats().shortcut_stale;
    assert_eq!(
        run(&mut a, vec![get(b"k")]),
        vec![Reply::Value(Some(b"new".to_vec()))]
    );
    assert_eq!(
        a.stats().shortcut_stale,
        before + 1,
        "the stale shortcut was detected"
    );
}

/// Engine settings with another epoch.
fn with_epoch(
    mut cfg: dinomo_dataplane::kn::EngineConfig,
    epoch: u32,
) -> dinomo_dataplane::kn::EngineConfig {
    cfg.epoch = dinomo_pmem::Epoch(epoch);
    cfg
}
