//! Crash tests of the memory node's cluster-map compare-and-swap: a workload stores three maps —
//! the first node's, a takeover by a second incarnation once the first is gone (which fences the
//! first and merges its chain before the map is stored), and a change of the second's own entry
//! — on the crash-simulating backend, and is crashed at every fence. After recovery the stored
//! map is always one of the maps written, whole (it decodes, and is byte for byte one of them),
//! never older than the last store that returned, and at most one newer; and every write the
//! first node acknowledged is in the index.

use std::sync::Arc;
use std::time::Duration;

use dinomo_control::{ClusterMap, Incarnation, KnId};
use dinomo_dataplane::allinone::local_fabric;
use dinomo_dataplane::fabric::{Fabric, PeerId};
use dinomo_dataplane::mn::client::MnClient;
use dinomo_dataplane::mn::memnode::{MemoryNode, NodeOptions};
use dinomo_dataplane::mn::proto::{Request, Response};
use dinomo_pmem::{Backend, CrashMode, CrashSim, Epoch, Layout, PoolConfig};
use dinomo_testkit::INCARNATION;
use dinomo_testkit::kn::{engine_config, run, set};

const POOL: u64 = 4 << 20;
const BLOCK: u64 = 16 << 10;
const KEYS: usize = 12;

fn options() -> NodeOptions {
    // No background merge: the workload's fences are the same in every run.
    NodeOptions {
        merge_threads: 0,
        ..NodeOptions::default()
    }
}

/// The maps of the workload: one node whose cores write the pool's first eight chains; the
/// host tells the maps of one incarnation apart.
fn map(layout: &Layout, kn: u32, incarnation: Incarnation, host: &str, epoch: Epoch) -> ClusterMap {
    dinomo_testkit::map_of_every_chain(
        layout.chain_count.min(8),
        KnId(kn),
        incarnation,
        host,
        epoch,
    )
}

struct Run {
    creation_fences: u64,
    /// Each stored map's payload and the fence count when its store returned.
    maps: Vec<(Vec<u8>, u64)>,
    /// The fence count when the first node's writes were acknowledged.
    writes_acked: u64,
}

fn workload(sim: Arc<CrashSim>) -> Run {
    let backend: Arc<dyn Backend> = sim.clone();
    let cfg = PoolConfig::small(POOL, BLOCK);
    let node = MemoryNode::open_backend(Arc::clone(&backend), Some(&cfg), options())
        .expect("a new pool opens");
    let creation_fences = sim.fence_count();
    let layout = *node.pool().layout();
    let fabric = local_fabric(&node, Duration::ZERO);
    let mut maps = Vec::new();

    // The first node stores its map and writes through an engine of its incarnation.
    let mut first = fabric.connect().unwrap();
    let mut client = MnClient::new(&mut *first);
    client.hello(INCARNATION).unwrap();
    let one = client
        .store_next_map(|e| Ok(map(&layout, 1, INCARNATION, "one", e)))
        .unwrap();
    maps.push((dinomo_control::encode(&one), sim.fence_count()));
    // Flush durability: an acknowledged write survives the simulated power loss.
    let cfg = dinomo_dataplane::kn::EngineConfig {
        durability: dinomo_dataplane::config::Durability::Flush,
        ..engine_config(0, dinomo_dataplane::cache::Policy::Dac, 1 << 20)
    };
    let mut engine = dinomo_dataplane::kn::Engine::attach(fabric.connect().unwrap(), cfg).unwrap();
    let writes: Vec<_> = (0..KEYS)
        .map(|i| set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes()))
        .collect();
    run(&mut engine, writes);
    let writes_acked = sim.fence_count();
    // The engine asks for a spare block in the background: let that finish, so that every run
    // has the same fences.
    let mut out = Vec::new();
    while !engine.is_idle() {
        engine.poll(&mut out);
        std::thread::yield_now();
    }
    drop(engine);
    drop(first);

    // A second incarnation takes every slot: the first is fenced and its chain merged.
    let other = Incarnation(0x5ec0_0002);
    let mut second = fabric.connect().unwrap();
    let mut client = MnClient::new(&mut *second);
    client.hello(other).unwrap();
    let two = client
        .store_next_map(|e| Ok(map(&layout, 2, other, "two", e)))
        .unwrap();
    maps.push((dinomo_control::encode(&two), sim.fence_count()));
    let three = client
        .store_next_map(|e| Ok(map(&layout, 2, other, "three", e)))
        .unwrap();
    maps.push((dinomo_control::encode(&three), sim.fence_count()));
    Run {
        creation_fences,
        maps,
        writes_acked,
    }
}

fn check(image: &[u8], run: &Run, k: u64) {
    let backend: Arc<dyn Backend> = Arc::new(CrashSim::from_image(image));
    let node = match MemoryNode::open_backend(backend, None, options()) {
        Ok(node) => node,
        Err(e) => {
            assert!(
                k <= run.creation_fences,
                "crash at fence {k}: the pool does not open: {e}"
            );
            return;
        }
    };
    let stored = match node.serve(PeerId::fresh(), &Request::GetClusterMap) {
        Response::ClusterMap(stored) => stored,
        other => panic!("crash at fence {k}: {other:?}"),
    };
    let done = run.maps.iter().filter(|(_, fence)| *fence < k).count();
    let index = match &stored {
        None => 0,
        Some((epoch, payload)) => {
            let map = dinomo_control::decode(payload)
                .unwrap_or_else(|e| panic!("crash at fence {k}: a torn map: {e}"));
            assert_eq!(map.epoch(), *epoch, "crash at fence {k}");
            let i = run
                .maps
                .iter()
                .position(|(written, _)| written == payload)
                .unwrap_or_else(|| panic!("crash at fence {k}: a map that was never written"));
            i + 1
        }
    };
    assert!(
        index == done || index == done + 1,
        "crash at fence {k}: map {index} after {done} stores had returned"
    );
    if k > run.writes_acked {
        for i in 0..KEYS {
            let hit = node
                .index()
                .get(format!("k{i}").as_bytes())
                .expect("lookup")
                .unwrap_or_else(|| panic!("crash at fence {k}: acknowledged k{i} is lost"));
            assert_eq!(hit.value(), format!("v{i}").as_bytes());
        }
    }
}

#[test]
fn the_stored_map_is_old_or_new_at_every_fence() {
    let reference = Arc::new(CrashSim::new(POOL));
    let full = workload(Arc::clone(&reference));
    let fences = reference.fence_count();
    assert!(full.maps.len() == 3 && fences > full.creation_fences);
    for k in 1..=fences {
        for mode in [
            CrashMode::DropUnflushed,
            CrashMode::KeepUnflushed,
            CrashMode::Random { seed: k },
        ] {
            let sim = Arc::new(CrashSim::new(POOL));
            sim.arm(k, mode);
            let run = workload(Arc::clone(&sim));
            assert_eq!(run.maps, full.maps, "the workload is deterministic");
            let image = sim.take_crash_image().expect("the armed fence was reached");
            check(&image, &run, k);
        }
    }
}
