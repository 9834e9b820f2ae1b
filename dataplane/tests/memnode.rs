//! The memory node in-process: a `MemBackend` pool served over the `local` fabric, with a test
//! writer that commits log batches the way a KN does (staged entries, then one doorbell of data
//! WRITEs and tail WRITEs). Each test checks one RPC's documented behaviour (mn/proto.rs) against
//! the pool and the index, or the node's background merge, failure and shutdown behaviour.
//!
//! Nothing here depends on timing: waits have a deadline only so that a hang fails the test.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dinomo_control::{ClusterMap, CoreId, Incarnation, KnId};
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::fabric::local::{LocalFabric, LocalOptions};
use dinomo_dataplane::fabric::{
    CompletionData, Fabric, QueuePair, Verb, WrId, wait_for, wait_for_until,
};
use dinomo_dataplane::mn::client::{ClientError, MnClient, rpc, rpc_timeout};
use dinomo_dataplane::mn::memnode::{CreateMode, MemnodeConfig, MemoryNode, MnError, NodeOptions};
use dinomo_dataplane::mn::proto::{ErrorCode, PROTO_VERSION, Request, Response};
use dinomo_index::IndexConfig;
use dinomo_pmem::{
    BlockId, BlockState, ChainId, Epoch, Layout, MemBackend, Op, PoolConfig, PoolError,
    SharedBackend,
};
use dinomo_testkit::{ChainWriter, HANG, INCARNATION, MemMn, TempDir, map_of_every_chain};

/// Pool of most tests, with small blocks so that batches cross blocks.
const POOL_BYTES: u64 = 4 << 20;
const BLOCK_BYTES: u64 = 4096;
/// Largest batch the test writer stages.
const BATCH_BYTES_MAX: u64 = 16 << 10;

/// The tests' memory node; its connections say hello as [`INCARNATION`], which the map it
/// claims on the first attach gives every chain.
type Setup = MemMn;

fn options(merge_threads: usize) -> NodeOptions {
    NodeOptions {
        merge_threads,
        index: IndexConfig::default(),
    }
}

fn setup(merge_threads: usize) -> Setup {
    MemMn::new(
        &PoolConfig::small(POOL_BYTES, BLOCK_BYTES),
        options(merge_threads),
    )
}

/// A map of one node, `kn` run by `incarnation`, whose cores write every chain of the pool.
fn map(layout: &Layout, kn: u32, incarnation: Incarnation, epoch: Epoch) -> ClusterMap {
    map_of_every_chain(layout.chain_count, KnId(kn), incarnation, "writer", epoch)
}

/// What the tests ask of their memory node beyond the testkit's.
trait SetupExt {
    fn attach(&self, chain: u32) -> Response;
    fn call(&self, request: Request) -> Response;
    fn refused(&self, request: Request) -> ErrorCode;
    fn value(&self, key: &[u8]) -> Option<Vec<u8>>;
}

impl SetupExt for Setup {
    /// `Attach` of `chain` on a new connection (closed again when this returns).
    fn attach(&self, chain: u32) -> Response {
        call(
            &mut *self.attach_qp(),
            Request::Attach {
                chain: ChainId(chain),
            },
        )
    }
    fn call(&self, request: Request) -> Response {
        call(&mut *self.qp(), request)
    }
    fn refused(&self, request: Request) -> ErrorCode {
        refused(&mut *self.qp(), request)
    }
    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.node
            .index()
            .get(key)
            .expect("lookup")
            .map(|hit| hit.value().to_vec())
    }
}

fn call(qp: &mut dyn QueuePair, request: Request) -> Response {
    rpc(qp, &request).unwrap_or_else(|e| panic!("{request:?} failed: {e}"))
}

fn refused(qp: &mut dyn QueuePair, request: Request) -> ErrorCode {
    match rpc(qp, &request) {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("{request:?} should be refused, got {other:?}"),
    }
}

/// The testkit's chain writer on a connection that may attach any chain; an error fails the
/// test.
struct Writer(ChainWriter);

impl Writer {
    fn attach(s: &Setup, chain: u32) -> Writer {
        Writer(
            ChainWriter::attach(s.attach_qp(), s.layout(), ChainId(chain), BATCH_BYTES_MAX)
                .expect("attach"),
        )
    }

    /// Stages a put; returns the block the entry went to.
    fn put(&mut self, key: &[u8], value: &[u8]) -> BlockId {
        self.0.append(Op::Put, key, value).expect("put")
    }

    fn delete(&mut self, key: &[u8]) -> BlockId {
        self.0.append(Op::Delete, key, b"").expect("delete")
    }

    /// Commits the staged batch; returns when its last WRITE (the commit point) has completed.
    fn commit(&mut self) {
        self.0.commit().expect("commit");
    }

    fn head(&self) -> (BlockId, u64) {
        self.0.head()
    }

    /// One spare block for the chain, handed out and never linked.
    fn spare(&mut self) -> BlockId {
        self.0.spare().expect("a spare block")
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat(i % 40)).into_bytes()
}

fn merged_entries(r: Response) -> u64 {
    match r {
        Response::Merged { entries, .. } => entries,
        other => panic!("expected Merged, got {other:?}"),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn hello_names_the_boot_and_the_pool() {
    let s = setup(0);
    let Response::Hello {
        version,
        boot,
        uuid,
        pool_size,
    } = call(
        &mut *s.fabric.connect().unwrap(),
        Request::Hello {
            version: PROTO_VERSION,
            incarnation: Incarnation::NONE,
        },
    )
    else {
        panic!("expected Hello")
    };
    assert_eq!(version, PROTO_VERSION);
    assert_eq!(boot, 1);
    assert_eq!(uuid, s.layout().uuid);
    assert_eq!(pool_size, POOL_BYTES);
    assert_eq!(
        s.refused(Request::Hello {
            version: PROTO_VERSION + 1,
            incarnation: Incarnation::NONE,
        }),
        ErrorCode::BadRequest
    );
}

#[test]
fn attach_on_an_empty_chain_allocates_a_block() {
    let s = setup(0);
    let free_before = s.node.allocator().free_count();
    let Response::Attached {
        boot,
        head,
        used,
        next_seq,
    } = s.attach(3)
    else {
        panic!("expected Attached")
    };
    assert_eq!((boot, used, next_seq), (1, 0, 1));
    let pool = s.node.pool();
    assert_eq!(pool.chain_cursor(ChainId(3)).unwrap(), Some(head));
    assert!(matches!(
        pool.block_state(head).unwrap(),
        BlockState::Reserved {
            chain: ChainId(3),
            ..
        }
    ));
    assert_eq!(s.node.allocator().free_count(), free_before - 1);
    // The session word of the chain's log table line (FORMAT.md §4).
    let session_off = s.layout().chain_off(ChainId(3)).get() + 8;
    assert_eq!(s.backend.load(session_off), INCARNATION.0);
    // Attaching again reuses the block.
    let Response::Attached { head: again, .. } = s.attach(3) else {
        panic!("expected Attached")
    };
    assert_eq!(again, head);
    assert_eq!(s.node.allocator().free_count(), free_before - 1);
}

#[test]
fn attach_after_writes_continues_the_sequence_and_merges_the_tail() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 0);
    for round in 0..3 {
        for i in 0..40 {
            w.put(&key(i), &value(i, round));
        }
        w.commit();
    }
    w.delete(&key(7));
    w.commit();
    // A spare handed out but never linked: the next attach frees it.
    let spare = [w.spare()];
    let (head, used) = w.head();
    let written = w.0.next_seq() - 1;
    assert_eq!(written, 121);
    assert_eq!(s.value(&key(1)), None, "nothing merged yet");
    // The writer's connection closes: the chain is free for a new session.
    drop(w);

    let Response::Attached {
        head: head2,
        used: used2,
        next_seq,
        ..
    } = s.attach(0)
    else {
        panic!("expected Attached")
    };
    assert_eq!((head2, used2), (head, used));
    assert_eq!(next_seq, written + 1);
    // Merged through the tail: the head block's last entries are visible too.
    for i in 0..40 {
        let expected = (i != 7).then(|| value(i, 2));
        assert_eq!(s.value(&key(i)), expected, "key {i}");
    }
    assert_eq!(s.node.pool().block_merged(head).unwrap(), used);
    assert!(matches!(
        s.node.pool().block_state(spare[0]).unwrap(),
        BlockState::Free { .. }
    ));
    // The chain keeps going after the new session's sequence.
    let mut w2 = Writer::attach(&s, 0);
    assert_eq!(w2.0.next_seq(), written + 1);
    w2.put(&key(7), b"back");
    w2.commit();
    merged_entries(s.call(Request::MergeAll { chain: ChainId(0) }));
    assert_eq!(s.value(&key(7)).as_deref(), Some(&b"back"[..]));
}

#[test]
fn alloc_blocks_hands_out_distinct_reserved_blocks() {
    let s = setup(0);
    let mut qp = s.attach_qp();
    assert_eq!(
        refused(
            &mut *qp,
            Request::AllocBlocks {
                chain: ChainId(2),
                count: 1
            }
        ),
        ErrorCode::NotOwner,
        "a chain attaches before it asks for spares"
    );
    let Response::Attached { head, .. } = call(&mut *qp, Request::Attach { chain: ChainId(2) })
    else {
        panic!("expected Attached")
    };
    let Response::Blocks(blocks) = call(
        &mut *qp,
        Request::AllocBlocks {
            chain: ChainId(2),
            count: 8,
        },
    ) else {
        panic!("expected Blocks")
    };
    assert_eq!(blocks.len(), 8);
    let distinct: HashSet<BlockId> = blocks.iter().copied().collect();
    assert_eq!(distinct.len(), 8);
    assert!(!distinct.contains(&head));
    let pool = s.node.pool();
    for &b in &blocks {
        assert!(matches!(
            pool.block_state(b).unwrap(),
            BlockState::Reserved {
                chain: ChainId(2),
                ..
            }
        ));
    }
    // Spares are not linked: the chain is still its one head block.
    let chain = dinomo_pmem::log::walk_chain(pool, ChainId(2)).unwrap();
    assert_eq!(chain.len(), 1);
    // The pool runs out: a partial answer first, then NoSpace.
    let mut handed_out = blocks.len() + 1;
    loop {
        match rpc(
            &mut *qp,
            &Request::AllocBlocks {
                chain: ChainId(2),
                count: 8,
            },
        ) {
            Ok(Response::Blocks(more)) => {
                assert!(!more.is_empty() && more.len() <= 8);
                handed_out += more.len();
            }
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::NoSpace), "{e}");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(handed_out as u32, s.layout().block_count);
    assert_eq!(s.node.allocator().free_count(), 0);
    // Running out is an answer, not a failure: the node still takes writes.
    assert!(s.node.failure().is_none());
    assert!(matches!(
        s.call(Request::MergeAll { chain: ChainId(2) }),
        Response::Merged { .. }
    ));
}

#[test]
fn merge_all_makes_entries_visible() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 1);
    for i in 0..200 {
        w.put(&key(i), &value(i, 0));
    }
    w.commit();
    for i in (0..200).step_by(10) {
        w.delete(&key(i));
    }
    w.commit();
    assert_eq!(s.value(&key(1)), None);
    let entries = merged_entries(s.call(Request::MergeAll { chain: ChainId(1) }));
    assert_eq!(entries, 220);
    for i in 0..200 {
        let expected = (i % 10 != 0).then(|| value(i, 0));
        assert_eq!(s.value(&key(i)), expected, "key {i}");
    }
    // Merging again finds nothing new.
    assert_eq!(
        merged_entries(s.call(Request::MergeAll { chain: ChainId(1) })),
        0
    );
    let stats = match s.call(Request::Stats) {
        Response::Stats(stats) => stats,
        other => panic!("expected Stats, got {other:?}"),
    };
    assert_eq!(stats.keys, 180);
    assert_eq!(stats.merged_entries, 220);
    assert!(stats.blocks_unlinked > 0, "200 entries fill several blocks");
    assert_eq!(stats.blocks_total, u64::from(s.layout().block_count));
    assert!(stats.rpcs >= 3);
    assert_eq!(
        s.refused(Request::MergeAll {
            chain: ChainId(999)
        }),
        ErrorCode::BadRequest
    );
}

#[test]
fn failover_merges_several_chains() {
    let s = setup(0);
    let mut writers: Vec<Writer> = (0..3).map(|c| Writer::attach(&s, c)).collect();
    for (c, w) in writers.iter_mut().enumerate() {
        for i in 0..30 {
            w.put(&key(c * 100 + i), &value(i, c));
        }
        w.commit();
    }
    let entries = merged_entries(s.call(Request::Failover {
        chains: vec![ChainId(0), ChainId(1)],
    }));
    assert_eq!(entries, 60);
    for i in 0..30 {
        assert_eq!(s.value(&key(i)), Some(value(i, 0)));
        assert_eq!(s.value(&key(100 + i)), Some(value(i, 1)));
        assert_eq!(s.value(&key(200 + i)), None, "chain 2 was not named");
    }
    assert_eq!(
        s.refused(Request::Failover {
            chains: vec![ChainId(2), ChainId(1 << 20)],
        }),
        ErrorCode::BadRequest
    );
    assert_eq!(
        s.value(&key(200)),
        None,
        "a refused failover merges nothing"
    );
    assert_eq!(
        merged_entries(s.call(Request::Failover { chains: vec![] })),
        0
    );
}

#[test]
fn indirect_cells_install_and_remove() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 0);
    w.put(b"hot", b"v1");
    w.commit();
    assert_eq!(
        s.call(Request::InstallIndirect {
            key: b"hot".to_vec()
        }),
        Response::Cell(None),
        "a key not yet merged has no entry to put behind a cell"
    );
    merged_entries(s.call(Request::MergeAll { chain: ChainId(0) }));
    let Response::Cell(Some(cell)) = s.call(Request::InstallIndirect {
        key: b"hot".to_vec(),
    }) else {
        panic!("expected a cell")
    };
    let hit = s.node.index().get(b"hot").unwrap().expect("still readable");
    assert_eq!(hit.cell, Some(cell));
    assert_eq!(hit.value(), b"v1");
    // The cell names the entry (FORMAT.md §9).
    assert_eq!(s.backend.load(cell.get()), hit.entry.get());
    assert_eq!(
        s.call(Request::InstallIndirect {
            key: b"hot".to_vec()
        }),
        Response::Cell(Some(cell)),
        "installing twice returns the same cell"
    );
    assert_eq!(
        s.call(Request::RemoveIndirect {
            key: b"hot".to_vec()
        }),
        Response::Removed(true)
    );
    let hit = s.node.index().get(b"hot").unwrap().expect("still readable");
    assert_eq!((hit.cell, hit.value()), (None, &b"v1"[..]));
    assert_eq!(s.backend.load(cell.get()), 0, "the cell is free again");
    assert_eq!(
        s.call(Request::RemoveIndirect {
            key: b"hot".to_vec()
        }),
        Response::Removed(false)
    );
    assert_eq!(
        s.call(Request::RemoveIndirect {
            key: b"cold".to_vec()
        }),
        Response::Removed(false)
    );
}

/// Stores `map` with `expected` as the stored epoch.
fn put_map(qp: &mut dyn QueuePair, expected: u32, map: &ClusterMap) -> Result<Response, ErrorCode> {
    match rpc(
        qp,
        &Request::PutClusterMap {
            lease: 0,
            expected: Epoch(expected),
            payload: dinomo_control::encode(map),
        },
    ) {
        Ok(response) => Ok(response),
        Err(ClientError::Refused { code, .. }) => Err(code),
        Err(e) => panic!("PutClusterMap failed: {e}"),
    }
}

#[test]
fn cluster_map_is_a_compare_and_swap_of_validated_maps() {
    let s = setup(0);
    let layout = s.layout();
    let mut qp = s.qp();
    assert_eq!(s.call(Request::GetClusterMap), Response::ClusterMap(None));
    let one = map(&layout, 1, INCARNATION, Epoch(1));
    assert_eq!(put_map(&mut *qp, 0, &one), Ok(Response::Stored));
    assert_eq!(
        s.call(Request::GetClusterMap),
        Response::ClusterMap(Some((Epoch(1), dinomo_control::encode(&one))))
    );
    // The expected epoch must be the stored one, and the map's the next.
    let two = map(&layout, 1, INCARNATION, Epoch(2));
    assert_eq!(put_map(&mut *qp, 0, &two), Err(ErrorCode::Stale));
    assert_eq!(put_map(&mut *qp, 2, &two), Err(ErrorCode::Stale));
    let three = map(&layout, 1, INCARNATION, Epoch(3));
    assert_eq!(put_map(&mut *qp, 1, &three), Err(ErrorCode::BadRequest));
    // The payload must decode to a valid map whose chains the pool has.
    for payload in [b"not a map".to_vec(), Vec::new()] {
        assert_eq!(
            s.refused(Request::PutClusterMap {
                lease: 0,
                expected: Epoch(1),
                payload
            }),
            ErrorCode::BadRequest
        );
    }
    let outside = ClusterMap::single_node(
        KnId(1),
        INCARNATION,
        "writer",
        &[(CoreId(0), 1000, ChainId(layout.chain_count))],
        Epoch(2),
    )
    .unwrap();
    assert_eq!(put_map(&mut *qp, 1, &outside), Err(ErrorCode::BadRequest));
    let area = layout.cluster_map_len;
    assert_eq!(
        s.refused(Request::PutClusterMap {
            lease: 0,
            expected: Epoch(1),
            payload: vec![1; area as usize]
        }),
        ErrorCode::BadRequest
    );
    assert_eq!(put_map(&mut *qp, 1, &two), Ok(Response::Stored));
    assert_eq!(
        s.call(Request::GetClusterMap),
        Response::ClusterMap(Some((Epoch(2), dinomo_control::encode(&two)))),
        "refused maps changed nothing"
    );
}

#[test]
fn a_map_may_not_take_the_slots_of_a_live_incarnation() {
    let s = setup(0);
    let layout = s.layout();
    // `INCARNATION` is live while its connection is open.
    let mut owner = s.qp();
    let mine = map(&layout, 1, INCARNATION, Epoch(1));
    assert_eq!(put_map(&mut *owner, 0, &mine), Ok(Response::Stored));
    let other = Incarnation(0x0e11);
    let mut rival = s.fabric.connect().unwrap();
    MnClient::new(&mut *rival).hello(other).unwrap();
    let theirs = map(&layout, 2, other, Epoch(2));
    assert_eq!(put_map(&mut *rival, 1, &theirs), Err(ErrorCode::Conflict));
    // The same kn id with another incarnation (a second process with the same --kn-id) too.
    let restart = map(&layout, 1, other, Epoch(2));
    assert_eq!(put_map(&mut *rival, 1, &restart), Err(ErrorCode::Conflict));
    // A map that keeps the live node as it is may be stored.
    assert_eq!(
        put_map(&mut *rival, 1, &mine_at(&mine, 2)),
        Ok(Response::Stored)
    );
    // Once the owner's connection is gone it is not live: its slots may be taken, and it is
    // fenced — it can never say hello again.
    drop(owner);
    assert!(!s.node.is_live(INCARNATION));
    let taken = map(&layout, 2, other, Epoch(3));
    assert_eq!(put_map(&mut *rival, 2, &taken), Ok(Response::Stored));
    assert_eq!(
        refused(
            &mut *s.fabric.connect().unwrap(),
            Request::Hello {
                version: PROTO_VERSION,
                incarnation: INCARNATION
            }
        ),
        ErrorCode::Fenced
    );
}

/// `map` again at another epoch.
fn mine_at(map: &ClusterMap, epoch: u32) -> ClusterMap {
    ClusterMap::new(
        Epoch(epoch),
        map.nodes().to_vec(),
        map.slots().to_vec(),
        map.hot_keys().to_vec(),
    )
    .unwrap()
}

#[test]
fn attach_checks_the_chain_owner_in_the_map() {
    let s = setup(0);
    let layout = s.layout();
    // No map: nobody owns a chain.
    assert_eq!(
        s.refused(Request::Attach { chain: ChainId(0) }),
        ErrorCode::NotOwner
    );
    let other = Incarnation(0x0e11);
    let mut qp = s.fabric.connect().unwrap();
    MnClient::new(&mut *qp).hello(other).unwrap();
    let theirs = map(&layout, 2, other, Epoch(1));
    assert_eq!(put_map(&mut *qp, 0, &theirs), Ok(Response::Stored));
    // A connection of another incarnation, or of none, may not write the chain.
    assert_eq!(
        s.refused(Request::Attach { chain: ChainId(0) }),
        ErrorCode::NotOwner
    );
    let mut anonymous = s.fabric.connect().unwrap();
    assert_eq!(
        refused(&mut *anonymous, Request::Attach { chain: ChainId(0) }),
        ErrorCode::NotOwner
    );
    // The owner may, on one connection at a time.
    assert!(matches!(
        call(&mut *qp, Request::Attach { chain: ChainId(0) }),
        Response::Attached { .. }
    ));
    let mut second = s.fabric.connect().unwrap();
    MnClient::new(&mut *second).hello(other).unwrap();
    assert_eq!(
        refused(&mut *second, Request::Attach { chain: ChainId(0) }),
        ErrorCode::Conflict
    );
    // Spares go to the connection that attached the chain only.
    assert_eq!(
        refused(
            &mut *second,
            Request::AllocBlocks {
                chain: ChainId(0),
                count: 1
            }
        ),
        ErrorCode::NotOwner
    );
    drop(qp);
    assert!(matches!(
        call(&mut *second, Request::Attach { chain: ChainId(0) }),
        Response::Attached { .. }
    ));
}

#[test]
fn taking_over_from_a_dead_incarnation_merges_its_chains_first() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 3);
    for i in 0..20 {
        w.put(&key(i), &value(i, 0));
    }
    w.commit();
    assert_eq!(s.value(&key(0)), None, "nothing merged yet");
    drop(w);
    // A new incarnation takes every slot: the dead one's committed entries are in the index
    // before the map that gives its chains away is stored.
    let other = Incarnation(0x0e11);
    let mut qp = s.fabric.connect().unwrap();
    MnClient::new(&mut *qp).hello(other).unwrap();
    let layout = s.layout();
    MnClient::new(&mut *qp)
        .store_next_map(|epoch| Ok(map(&layout, 2, other, epoch)))
        .unwrap();
    for i in 0..20 {
        assert_eq!(s.value(&key(i)), Some(value(i, 0)), "key {i}");
    }
}

#[test]
fn malformed_requests_get_errors() {
    let s = setup(0);
    let mut qp = s.qp();
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![42],
        vec![2, 0, 0],
        vec![3, 0, 0, 0, 0, 9, 0, 0, 0],
        vec![5, 255, 255, 255, 255],
        vec![8, 0],
    ];
    // Random bytes, seeded: none may panic the node or go unanswered.
    let mut state = 0x5EED_u64;
    for len in 0..300 {
        cases.push(
            (0..len % 64)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect(),
        );
    }
    let mut others = Vec::new();
    for (i, request) in cases.iter().enumerate() {
        qp.post(
            WrId(i as u64),
            Verb::Rpc {
                request: request.clone(),
            },
        )
        .unwrap();
        let c = wait_for(&mut *qp, WrId(i as u64), &mut others);
        let Ok(CompletionData::Bytes(reply)) = c.result else {
            panic!("case {i}: {:?}", c.result)
        };
        let response = Response::decode(&reply).expect("the node's replies decode");
        if i < 7 {
            assert!(
                matches!(
                    response,
                    Response::Error {
                        code: ErrorCode::BadRequest,
                        ..
                    }
                ),
                "case {i}: {response:?}"
            );
        }
    }
    assert!(others.is_empty());
    // Well-formed requests that name things the pool does not have.
    for request in [
        Request::Attach { chain: ChainId(16) },
        Request::AllocBlocks {
            chain: ChainId(u32::MAX),
            count: 1,
        },
    ] {
        assert_eq!(refused(&mut *qp, request), ErrorCode::BadRequest);
    }
    assert!(s.node.counters().rpc_errors >= 9);
    assert!(
        s.node.failure().is_none(),
        "bad requests do not fail the node"
    );
    // The node still serves.
    assert!(matches!(s.attach(15), Response::Attached { .. }));
}

#[test]
fn background_merge_folds_every_committed_entry() {
    let s = setup(1);
    assert_eq!(s.node.start_background().unwrap(), 1);
    assert_eq!(s.node.start_background().unwrap(), 1, "started once");
    let mut w = Writer::attach(&s, 4);
    let mut blocks = Vec::new();
    // Fill three blocks, so that at least two are sealed.
    while blocks.iter().collect::<HashSet<_>>().len() < 3 {
        let i = blocks.len();
        blocks.push(w.put(&key(i), &value(i, 0)));
        w.commit();
        assert!(i < 10_000, "the chain never grew to three blocks");
    }
    let (head, used) = w.head();
    assert_eq!(blocks.last(), Some(&head));
    // Sealed blocks are merged and unlinked; the head block is merged as far as it is committed.
    wait_until("the background merge to reach the tail", || {
        s.node.pool().chain_cursor(ChainId(4)).unwrap() == Some(head)
            && s.node.pool().block_merged(head).unwrap() == used
    });
    let stats = s.node.stats();
    assert!(stats.blocks_unlinked >= 2, "{stats:?}");
    assert!(s.node.counters().background_busy_passes >= 1);
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(s.value(&key(i)), Some(value(i, 0)), "key {i} in {b}");
    }
    s.node.shutdown().unwrap();
}

#[test]
fn shutdown_marks_a_clean_stop_and_refuses_writes() {
    let s = setup(1);
    s.node.start_background().unwrap();
    let mut w = Writer::attach(&s, 0);
    for i in 0..100 {
        w.put(&key(i), &value(i, 0));
    }
    w.commit();
    assert!(!s.node.pool().clean_shutdown());
    s.node.shutdown().expect("a graceful stop");
    assert!(s.node.pool().clean_shutdown());
    assert!(matches!(s.node.shutdown(), Err(MnError::ShutDown)));
    assert!(matches!(s.node.start_background(), Err(MnError::ShutDown)));
    assert_eq!(
        s.refused(Request::AllocBlocks {
            chain: ChainId(0),
            count: 1
        }),
        ErrorCode::Internal
    );
    // Reads still work.
    assert!(matches!(s.call(Request::Stats), Response::Stats(_)));
    let backend = Arc::clone(&s.backend);
    drop(s);

    // The next boot sees the clean stop and everything written.
    let node = MemoryNode::open_backend(Arc::clone(&backend), None, options(0)).unwrap();
    let report = node.startup_report().clone();
    assert!(report.last_stop_clean && !report.created, "{report}");
    assert_eq!(report.boot, 2);
    assert!(report.to_string().contains("last stop: clean"), "{report}");
    for i in 0..100 {
        let hit = node.index().get(&key(i)).unwrap().expect("recovered");
        assert_eq!(hit.value(), value(i, 0));
    }
    // A node dropped without shutdown is an unclean stop.
    drop(node);
    let node = MemoryNode::open_backend(backend, None, options(0)).unwrap();
    let report = node.startup_report();
    assert!(!report.last_stop_clean, "{report}");
    assert_eq!(report.boot, 3);
    assert!(report.to_string().contains("last stop: unclean"));
}

#[test]
fn recovery_merges_what_the_last_boot_left() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 5);
    for i in 0..150 {
        w.put(&key(i), &value(i, 1));
    }
    w.commit();
    let backend = Arc::clone(&s.backend);
    drop(w);
    drop(s);
    let node = MemoryNode::open_backend(backend, None, options(0)).unwrap();
    let report = node.startup_report();
    assert_eq!(report.chains.len(), 1);
    assert_eq!(report.chains[0].chain, ChainId(5));
    assert!(report.unmerged_bytes() > 0);
    assert_eq!(report.merged.entries, 150);
    assert_eq!(report.keys, 150);
    for i in 0..150 {
        assert_eq!(
            node.index()
                .get(&key(i))
                .unwrap()
                .map(|h| h.value().to_vec()),
            Some(value(i, 1))
        );
    }
}

#[test]
fn after_a_pool_error_the_node_stops_taking_writes() {
    let s = setup(0);
    let mut w = Writer::attach(&s, 0);
    w.put(b"k", b"v");
    w.commit();
    // Damage the checksum of a committed entry (FORMAT.md §7): only a media fault or a bug
    // can do that, and the merge reports it as corruption.
    let (head, _) = w.head();
    let checksum_off = s.layout().entry_area_off(head).get();
    s.backend.write(checksum_off, &[0xEE; 4]);
    assert_eq!(
        s.refused(Request::MergeAll { chain: ChainId(0) }),
        ErrorCode::Corrupt
    );
    let failure = s.node.failure().expect("the node records the failure");
    assert!(failure.contains("corrupt"), "{failure}");
    // Writes elsewhere are refused too, with the reason; reads go on.
    let mut qp = s.qp();
    match rpc(&mut *qp, &Request::Attach { chain: ChainId(1) }) {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("stopped taking writes"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(s.call(Request::Stats), Response::Stats(_)));
    assert!(matches!(s.node.shutdown(), Err(MnError::Failed(_))));
    assert!(
        !s.node.pool().clean_shutdown(),
        "a failed node is not marked clean"
    );
}

fn file_config(path: &Path, create: CreateMode) -> MemnodeConfig {
    MemnodeConfig {
        pool: path.to_path_buf(),
        create,
        durability: Durability::Memory,
        options: options(0),
    }
}

#[test]
fn pool_files_are_created_opened_and_never_overwritten_by_accident() {
    let dir = TempDir::new("files");
    let path = dir.path("pool");
    let cfg = PoolConfig::small(POOL_BYTES, BLOCK_BYTES);
    let missing = MemoryNode::open(file_config(&path, CreateMode::Open));
    assert!(
        matches!(missing, Err(MnError::Pool(PoolError::NotFound(_)))),
        "{missing:?}"
    );
    // A bad size is refused before the file is touched.
    let bad = MemoryNode::open(file_config(
        &path,
        CreateMode::Create {
            config: PoolConfig::small(POOL_BYTES + 1, BLOCK_BYTES),
            overwrite: false,
        },
    ));
    assert!(matches!(bad, Err(MnError::Pool(PoolError::Config(_)))));
    assert!(!path.exists());

    let node = MemoryNode::open(file_config(&path, CreateMode::CreateIfMissing(cfg.clone())))
        .expect("created");
    assert!(node.startup_report().created);
    let uuid = node.startup_report().uuid.clone();
    // Two memory nodes never serve one pool.
    let second = MemoryNode::open(file_config(&path, CreateMode::Open));
    assert!(second.is_err());
    node.shutdown().unwrap();
    drop(node);

    let exists = MemoryNode::open(file_config(
        &path,
        CreateMode::Create {
            config: cfg.clone(),
            overwrite: false,
        },
    ));
    assert!(
        matches!(exists, Err(MnError::Pool(PoolError::AlreadyExists(_)))),
        "{exists:?}"
    );
    let node = MemoryNode::open(file_config(&path, CreateMode::CreateIfMissing(cfg.clone())))
        .expect("opened");
    let report = node.startup_report();
    assert!(!report.created && report.last_stop_clean && report.uuid == uuid);
    assert_eq!(report.boot, 2);
    drop(node);

    let node = MemoryNode::open(file_config(
        &path,
        CreateMode::Create {
            config: cfg,
            overwrite: true,
        },
    ))
    .expect("overwritten on request");
    assert!(node.startup_report().created);
    assert_ne!(node.startup_report().uuid, uuid);
    assert_eq!(node.startup_report().boot, 1);
}

#[test]
fn waits_take_reaped_completions_and_honour_deadlines() {
    let backend: SharedBackend = Arc::new(MemBackend::new(POOL_BYTES));
    // Completions are due one round trip after posting; a long one stands for a request that
    // does not complete in time.
    let slow = LocalFabric::new(
        Arc::clone(&backend),
        LocalOptions::default().with_rtt(Duration::from_secs(3600)),
    );
    let mut qp = slow.connect().unwrap();
    let read = |at: u64| Verb::Read {
        remote: dinomo_pmem::PoolOffset(at),
        len: 8,
    };
    qp.post(WrId(1), read(0)).unwrap();
    let mut others = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(20);
    assert_eq!(
        wait_for_until(&mut *qp, WrId(1), &mut others, deadline),
        None
    );
    assert!(Instant::now() >= deadline);
    assert!(matches!(
        rpc_timeout(&mut *qp, &Request::Stats, Duration::from_millis(1)),
        Err(ClientError::Busy(1))
    ));

    // A completion reaped by an earlier wait is found in `others`.
    let fast = LocalFabric::new(backend, LocalOptions::default());
    let mut qp = fast.connect().unwrap();
    qp.post_batch(vec![(WrId(1), read(0)), (WrId(2), read(8))])
        .unwrap();
    let mut others = Vec::new();
    assert_eq!(wait_for(&mut *qp, WrId(2), &mut others).wr, WrId(2));
    assert_eq!(others.len(), 1, "the first READ was reaped on the way");
    assert_eq!(qp.in_flight(), 0);
    let deadline = Instant::now() + HANG;
    let first = wait_for_until(&mut *qp, WrId(1), &mut others, deadline);
    assert_eq!(first.map(|c| c.wr), Some(WrId(1)));
    assert!(others.is_empty());

    // An RPC to a fabric without a handler is refused, and the refusal is typed.
    assert!(matches!(
        rpc(&mut *qp, &Request::Stats),
        Err(ClientError::Verb(_))
    ));
}

#[test]
fn the_controller_lease_has_one_holder_at_a_time_and_rising_generations() {
    let s = setup(0);
    let mut qp = s.qp();
    let mut client = MnClient::new(&mut *qp);
    assert!(!client.lease().unwrap().is_held());
    let first = client.acquire_lease("10.0.0.1:7100", 200).unwrap();
    assert_eq!(
        (first.generation, first.holder.as_str()),
        (1, "10.0.0.1:7100")
    );
    assert!(first.is_held());
    // A second controller waits: the lease is held.
    let refused = client.acquire_lease("10.0.0.2:7100", 200).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Conflict), "{refused}");
    assert!(refused.to_string().contains("10.0.0.1:7100"), "{refused}");
    // The holder renews; another generation may not.
    assert!(client.renew_lease(1, 200).unwrap().is_held());
    assert_eq!(
        client.renew_lease(7, 200).unwrap_err().code(),
        Some(ErrorCode::Stale)
    );
    // Once it lapses, the standby takes it with a higher generation, and the old holder's
    // renewals and map stores are refused.
    std::thread::sleep(Duration::from_millis(250));
    assert!(!client.lease().unwrap().is_held());
    let second = client.acquire_lease("10.0.0.2:7100", 10_000).unwrap();
    assert_eq!(second.generation, 2);
    assert_eq!(
        client.renew_lease(1, 200).unwrap_err().code(),
        Some(ErrorCode::Stale)
    );
    assert_eq!(s.node.pool().controller_generation(), 2, "persisted");
    let layout = s.layout();
    let map = map(&layout, 1, INCARNATION, Epoch(1));
    for lease in [1, 0] {
        let e = client
            .put_cluster_map(Epoch::ZERO, lease, dinomo_control::encode(&map))
            .unwrap_err();
        assert!(
            matches!(e.code(), Some(ErrorCode::Stale | ErrorCode::Conflict)),
            "lease {lease}: {e}"
        );
    }
    client
        .put_cluster_map(Epoch::ZERO, 2, dinomo_control::encode(&map))
        .unwrap();
}

#[test]
fn a_controller_may_take_the_slots_of_a_live_incarnation_which_is_then_fenced() {
    let s = setup(0);
    let layout = s.layout();
    let mut w = Writer::attach(&s, 0);
    w.put(b"fenced-key", b"acknowledged");
    w.commit();
    assert!(s.node.is_live(INCARNATION));
    let mut qp = s.fabric.connect().unwrap();
    let mut client = MnClient::new(&mut *qp);
    let lease = client.acquire_lease("controller", 10_000).unwrap();
    let stored = client.cluster_map().unwrap().unwrap().0;
    let other = Incarnation(0xc0ffee);
    let next = map(&layout, 2, other, stored.next().unwrap());
    client
        .put_cluster_map(stored, lease.generation, dinomo_control::encode(&next))
        .unwrap();
    // The live writer was fenced: its connection takes nothing more, and its acknowledged
    // write was merged before the map changed.
    assert!(!s.node.is_live(INCARNATION));
    assert_eq!(
        s.value(b"fenced-key").as_deref(),
        Some(&b"acknowledged"[..])
    );
    let refused = w.0.qp().post(
        WrId(999),
        Verb::Write {
            remote: dinomo_pmem::PoolOffset(layout.blocks_off),
            data: vec![1; 8],
            persist: false,
        },
    );
    assert!(refused.is_err(), "a fenced connection posts nothing");
}
