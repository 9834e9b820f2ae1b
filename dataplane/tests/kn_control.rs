//! The node's control path: a new map reaches every worker through its control inbox, each
//! worker swaps its routing table whole and acknowledges, and from then on a key whose slot the
//! map gives to another node is answered `-MOVED slot host:port` — by the core the client asked,
//! by the core a request was handed over to, and by the embedded API — while the slots the node
//! keeps are served as before. `CLUSTER SLOTS` and `CLUSTER NODES` describe the new map.

use dinomo_control::{
    ChainId, ClusterMap, CoreId, CoreInfo, Incarnation, KnId, NodeInfo, Owner, Slot, SlotRange,
    slot_of,
};
use dinomo_dataplane::kn::control::ControlError;
use dinomo_dataplane::kn::embedded::{StoreError, StoreHandle};
use dinomo_dataplane::kn::node::{KnNode, NodeError};
use dinomo_testkit::kn::*;

/// The address the map gives the other node's only core.
const ELSEWHERE: &str = "10.9.8.7:7777";

/// `node`'s own map (two cores splitting the slots in half), except that core 1's half, the
/// slots from 8192 on, belongs to a core of another node. (Core 0 keeps its slots unchanged:
/// moving slots between live cores needs the handover of DESIGN.md §5, not just a new map.)
fn map_giving_half_away(node: &KnNode) -> ClusterMap {
    let current = node.routing().map().clone();
    let me = current
        .node(node.shared().identity.kn)
        .expect("in the map")
        .clone();
    let other = NodeInfo {
        kn: KnId(99),
        incarnation: Incarnation(0x99),
        host: "10.9.8.7".into(),
        cores: vec![CoreInfo {
            core: CoreId(0),
            port: 7777,
            chain: ChainId(60),
        }],
    };
    let owner = |kn: KnId, core: u16| Owner {
        kn,
        core: CoreId(core),
    };
    let range = |start: u16, end: u16, owner: Owner| SlotRange {
        start: Slot::new(start).unwrap(),
        end: Slot::new(end).unwrap(),
        owner,
    };
    ClusterMap::new(
        current.epoch().next().unwrap(),
        vec![me.clone(), other],
        vec![
            range(0, 8191, owner(me.kn, 0)),
            range(8192, 16383, owner(KnId(99), 0)),
        ],
        Vec::new(),
    )
    .expect("a valid map")
}

/// A key whose slot is at or past 8192 (`far`) or below it.
fn key(far: bool, n: usize) -> String {
    (0..)
        .map(|i| format!("key-{n}-{i}"))
        .find(|k| (slot_of(k.as_bytes()).get() >= 8192) == far)
        .unwrap()
}

#[test]
fn a_new_map_reaches_every_worker_and_moved_slots_redirect() {
    let mn = memnode(64 << 20, 256 << 10);
    let node = kn(&mn, kn_options(2));
    let addr = node.base_addr().expect("base");
    let mut con = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let (near, far) = (key(false, 0), key(true, 0));
    for k in [&near, &far] {
        let _: () = redis::cmd("SET").arg(k).arg("v").query(&mut con).unwrap();
    }

    let map = map_giving_half_away(&node);
    let epoch = map.epoch();
    node.apply_map(map.clone())
        .expect("every worker acknowledges");
    assert_eq!(node.routing().epoch(), epoch);
    // An older or equal map is refused.
    assert!(matches!(
        node.apply_map(map),
        Err(NodeError::Control(ControlError::StaleMap { .. }))
    ));

    // The kept slots are served as before; the moved one redirects, on the base port and on
    // every core's own port (a core that does not own a slot hands its keys over or redirects).
    let v: Option<String> = redis::cmd("GET").arg(&near).query(&mut con).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let slot = slot_of(far.as_bytes());
    for core_addr in std::iter::once(addr).chain(node.core_addrs().iter().copied()) {
        let mut c = redis::Client::open(format!("redis://{core_addr}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let err = redis::cmd("GET")
            .arg(&far)
            .query::<Option<String>>(&mut c)
            .unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{err}");
        assert!(
            err.to_string().contains(&format!("{slot} {ELSEWHERE}")),
            "{err}"
        );
        let err = redis::cmd("SET")
            .arg(&far)
            .arg("w")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{err}");
    }

    // The embedded API says where the key went.
    let store = StoreHandle::new(&node);
    assert_eq!(store.get(near.as_bytes()), Ok(Some(b"v".to_vec())));
    assert_eq!(
        store.get(far.as_bytes()),
        Err(StoreError::Moved {
            slot,
            owner: Some(ELSEWHERE.into())
        })
    );

    // CLUSTER replies describe the new map: two ranges, one of them elsewhere.
    let slots: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query::<Vec<redis::Value>>(&mut con)
        .unwrap()
        .into_iter()
        .map(|v| match v {
            redis::Value::Array(mut parts) => {
                let endpoint = match parts.pop() {
                    Some(redis::Value::Array(e)) => e,
                    other => panic!("{other:?}"),
                };
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(i) => *i as u16,
                    other => panic!("{other:?}"),
                };
                (int(&parts[0]), int(&parts[1]), endpoint)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        slots.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![(0, 8191), (8192, 16383)]
    );
    assert_eq!(
        slots[1].2[0],
        redis::Value::BulkString(b"10.9.8.7".to_vec())
    );
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con).unwrap();
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert!(
        nodes
            .lines()
            .any(|l| l.contains("10.9.8.7:7777") && l.ends_with(" 8192-16383")),
        "{nodes}"
    );
    assert_eq!(
        nodes.lines().filter(|l| l.contains("myself")).count(),
        1,
        "{nodes}"
    );
}

#[test]
fn an_engine_answers_moved_for_slots_it_does_not_own() {
    let mn = memnode(64 << 20, 256 << 10);
    let mut engine = engine(
        &mn,
        engine_config(0, dinomo_dataplane::cache::Policy::Dac, 1 << 20),
    );
    let (near, far) = (key(false, 1), key(true, 1));
    let mut mine = dinomo_dataplane::kn::routing::SlotSet::empty();
    for slot in Slot::all().filter(|s| s.get() < 8192) {
        mine.insert(slot);
    }
    assert_eq!(
        run(&mut engine, vec![set(far.as_bytes(), b"cached")]),
        vec![dinomo_dataplane::kn::Reply::Ok]
    );
    engine.set_owned(mine);
    let slot = slot_of(far.as_bytes());
    // Even a cached value of a slot the core no longer owns is not served.
    assert_eq!(
        run(
            &mut engine,
            vec![
                get(far.as_bytes()),
                set(far.as_bytes(), b"x"),
                del(far.as_bytes())
            ]
        ),
        vec![
            dinomo_dataplane::kn::Reply::Moved(slot),
            dinomo_dataplane::kn::Reply::Moved(slot),
            dinomo_dataplane::kn::Reply::Moved(slot),
        ]
    );
    assert_eq!(
        run(
            &mut engine,
            vec![set(near.as_bytes(), b"n"), get(near.as_bytes())]
        ),
        vec![
            dinomo_dataplane::kn::Reply::Ok,
            dinomo_dataplane::kn::Reply::Value(Some(b"n".to_vec()))
        ]
    );
    assert_eq!(engine.stats().moved, 3);
}
