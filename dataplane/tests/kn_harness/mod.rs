//! Set-up shared by the KN tests: a memory node on an in-memory pool, the local fabric to it,
//! and engines or whole nodes on top.

#![allow(dead_code)]

use std::sync::Arc;

use dinomo_control::{ClusterMap, CoreId, Incarnation, KnId};
use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::fabric::Fabric;
use dinomo_dataplane::fabric::local::{LocalFabric, LocalOptions};
use dinomo_dataplane::kn::node::{CONNECTIONS_MAX_DEFAULT, KnNode, KnOptions};
use dinomo_dataplane::kn::{Command, Engine, EngineConfig, Reply, SetCond};
use dinomo_dataplane::mn::client::MnClient;
use dinomo_dataplane::mn::memnode::{MemoryNode, NodeOptions};
use dinomo_dataplane::resp::Limits;
use dinomo_pmem::{ChainId, Epoch, MemBackend, PoolConfig};

pub struct Mn {
    pub node: Arc<MemoryNode>,
    pub fabric: LocalFabric,
}

/// A memory node on a fresh in-memory pool of `size` bytes with `block` byte blocks.
pub fn memnode(size: u64, block: u64) -> Mn {
    let cfg = PoolConfig {
        chain_count: 64,
        ..PoolConfig::small(size, block)
    };
    let node = MemoryNode::open_backend(
        Arc::new(MemBackend::new(size)),
        Some(&cfg),
        NodeOptions::default(),
    )
    .expect("memory node");
    node.start_background().expect("merge threads");
    let fabric = LocalFabric::new(
        Arc::clone(node.backend()),
        LocalOptions::default().with_rpc_handler(node.clone()),
    );
    // The engines of a test write their chains as one incarnation, which the map gives every
    // chain (a KN node started on `mn` claims the slots for itself).
    let mut qp = fabric.connect().expect("qp");
    let mut client = MnClient::new(&mut *qp);
    client.hello(INCARNATION).expect("hello");
    let cores: Vec<(CoreId, u16, ChainId)> = (0..cfg.chain_count)
        .map(|c| (CoreId(c as u16), 1000 + c as u16, ChainId(c)))
        .collect();
    client
        .store_next_map(|epoch| {
            ClusterMap::single_node(KnId(1), INCARNATION, "engines", &cores, epoch)
        })
        .expect("the test map is stored");
    Mn { node, fabric }
}

/// The incarnation of the engines a test attaches.
pub const INCARNATION: Incarnation = Incarnation(0xe461_0001);

pub fn engine_config(chain: u32, policy: Policy, cache_bytes: usize) -> EngineConfig {
    EngineConfig {
        cache_policy: policy,
        cache_bytes,
        incarnation: INCARNATION,
        ..EngineConfig::new(ChainId(chain), Epoch(1))
    }
}

pub fn engine(mn: &Mn, cfg: EngineConfig) -> Engine {
    Engine::attach(mn.fabric.connect().expect("qp"), cfg).expect("engine")
}

/// Runs `cmds` on the engine and polls until every reply is in; replies in submission order.
pub fn run(engine: &mut Engine, cmds: Vec<Command>) -> Vec<Reply> {
    let n = cmds.len();
    for (i, c) in cmds.into_iter().enumerate() {
        engine.submit(i as u64, c);
    }
    engine.flush_now();
    let mut out = Vec::new();
    let mut replies: Vec<Option<Reply>> = vec![None; n];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while replies.iter().any(Option::is_none) {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine did not answer: {} in flight, {} sealed, failure {:?}, stats {:?}",
            engine.in_flight(),
            engine.sealed_blocks(),
            engine.failure(),
            engine.stats()
        );
        engine.flush_now();
        out.clear();
        if !engine.poll(&mut out) {
            std::thread::yield_now();
        }
        for (tag, reply) in out.drain(..) {
            replies[tag as usize] = Some(reply);
        }
    }
    replies.into_iter().map(|r| r.expect("answered")).collect()
}

/// Polls an idle engine until its merge-progress poll has seen every entry it logged merged
/// into the index (as a live worker does between requests), so that reads no longer come from
/// its own log.
pub fn await_merged(engine: &mut Engine) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    while engine.unmerged_keys() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never saw its chain merged: {:?}",
            engine.stats()
        );
        engine.poll(&mut out);
        std::thread::yield_now();
    }
    assert!(out.is_empty(), "no request was in flight");
}

pub fn set(key: &[u8], value: &[u8]) -> Command {
    Command::Set {
        key: key.to_vec(),
        value: value.to_vec(),
        cond: SetCond::Always,
        get: false,
    }
}
pub fn get(key: &[u8]) -> Command {
    Command::Get { key: key.to_vec() }
}
pub fn del(key: &[u8]) -> Command {
    Command::Del { key: key.to_vec() }
}

pub fn kn_options(cores: usize) -> KnOptions {
    KnOptions {
        kn: dinomo_control::KnId(1),
        host: "127.0.0.1".into(),
        base_port: 0,
        cores,
        first_chain: 0,
        engine: EngineConfig {
            durability: Durability::Memory,
            ..EngineConfig::new(ChainId(0), Epoch(1))
        },
        pin: false,
        sqpoll: false,
        requirepass: None,
        limits: Limits::default(),
        connections_max: CONNECTIONS_MAX_DEFAULT,
        listen: true,
    }
}

/// A whole node on `mn`.
pub fn kn(mn: &Mn, options: KnOptions) -> KnNode {
    KnNode::start(&mn.fabric, options, Some(mn.node.clone())).expect("node")
}
