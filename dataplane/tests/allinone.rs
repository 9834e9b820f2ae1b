//! The all-in-one wiring as `dinomo serve` and the bench's embedded target run it: a memory node
//! on a pool file and a KVS node over the local fabric. It serves through the embedded API, its
//! stop marks the pool cleanly stopped with every acknowledged write in it, and a second start on
//! the same file recovers them; a pool that cannot be opened is one error naming the file.

use std::time::Duration;

use dinomo_dataplane::allinone::{AllInOne, AllInOneConfig, AllInOneError};
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::kn::embedded::StoreHandle;
use dinomo_dataplane::mn::memnode::{CreateMode, NodeOptions};
use dinomo_pmem::PoolConfig;
use dinomo_testkit::TempDir;
use dinomo_testkit::kn::kn_options;

fn config(dir: &TempDir, create: CreateMode) -> AllInOneConfig {
    AllInOneConfig {
        pool: dir.path("pool"),
        create,
        durability: Durability::Flush,
        memnode: NodeOptions::default(),
        rtt: Duration::ZERO,
        kn: kn_options(2),
    }
}

#[test]
fn serves_stops_cleanly_and_recovers_on_the_next_start() {
    let dir = TempDir::new("allinone");
    let create = CreateMode::CreateIfMissing(PoolConfig::small(32 << 20, 256 << 10));
    let server = AllInOne::start(config(&dir, create.clone())).expect("a first start");
    assert!(server.memnode().startup_report().created);
    assert_eq!(server.node().shared().identity.durability, "flush");
    let store = StoreHandle::new(server.node());
    for i in 0..100 {
        store
            .set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .expect("set");
    }
    // The handles share the node's state, which holds the memory node (and so the pool file's
    // lock) until the last of them is gone.
    drop(store);
    server.stop().expect("a clean stop");

    let server = AllInOne::start(config(&dir, create)).expect("a second start");
    let report = server.memnode().startup_report();
    assert!(report.last_stop_clean && !report.created, "{report}");
    let store = StoreHandle::new(server.node());
    for i in 0..100 {
        assert_eq!(
            store.get(format!("k{i}").as_bytes()).expect("get"),
            Some(format!("v{i}").into_bytes())
        );
    }
    // Dropping stops it too.
    drop(store);
    drop(server);
    let server = AllInOne::start(config(&dir, CreateMode::Open)).expect("a third start");
    assert!(server.memnode().startup_report().last_stop_clean);
}

#[test]
fn a_pool_that_does_not_open_is_one_error_naming_it() {
    let dir = TempDir::new("allinone-missing");
    let e = AllInOne::start(config(&dir, CreateMode::Open)).unwrap_err();
    assert!(matches!(e, AllInOneError::Open { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("cannot open the pool ")
            && text.contains(&*dir.path("pool").to_string_lossy()),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}
