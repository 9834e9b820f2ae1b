//! KN-side test support: a [`MemMn`] ready for engines, engines attached as [`INCARNATION`],
//! commands run through an engine until every reply is in, and whole nodes over the local fabric.

use std::time::{Duration, Instant};

use dinomo_dataplane::cache::Policy;
use dinomo_dataplane::config::Durability;
use dinomo_dataplane::fabric::Fabric;
use dinomo_dataplane::kn::node::{CONNECTIONS_MAX_DEFAULT, KnNode, KnOptions};
use dinomo_dataplane::kn::{Command, Engine, EngineConfig, Reply, SetCond};
use dinomo_dataplane::mn::memnode::NodeOptions;
use dinomo_dataplane::resp::Limits;
use dinomo_pmem::{ChainId, Epoch, PoolConfig};

use crate::{INCARNATION, MemMn};

/// Chains of a [`memnode`] pool.
const CHAINS: u32 = 64;
/// How long an engine may take to answer.
const ENGINE_WAIT: Duration = Duration::from_secs(10);

/// A memory node on a fresh in-memory pool of `size` bytes with `block` byte blocks, its merge
/// threads running, and every chain given to [`INCARNATION`] (a KN node started on it claims the
/// slots for itself).
pub fn memnode(size: u64, block: u64) -> MemMn {
    let mn = MemMn::new(
        &PoolConfig {
            chain_count: CHAINS,
            ..PoolConfig::small(size, block)
        },
        NodeOptions::default(),
    );
    mn.node.start_background().expect("merge threads");
    mn.claim();
    mn
}

/// Engine settings for `chain` as [`INCARNATION`].
pub fn engine_config(chain: u32, policy: Policy, cache_bytes: usize) -> EngineConfig {
    EngineConfig {
        cache_policy: policy,
        cache_bytes,
        incarnation: INCARNATION,
        ..EngineConfig::new(ChainId(chain), Epoch(1))
    }
}

pub fn engine(mn: &MemMn, cfg: EngineConfig) -> Engine {
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
    let deadline = Instant::now() + ENGINE_WAIT;
    while replies.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
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
    let deadline = Instant::now() + ENGINE_WAIT;
    let mut out = Vec::new();
    while engine.unmerged_keys() > 0 {
        assert!(
            Instant::now() < deadline,
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

/// Options of a node with `cores` unpinned cores on ephemeral loopback ports.
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

/// A whole node on `mn`, its `INFO` showing `mn`'s counters.
pub fn kn(mn: &MemMn, options: KnOptions) -> KnNode {
    KnNode::start(&mn.fabric, options, Some(mn.node.clone())).expect("node")
}
