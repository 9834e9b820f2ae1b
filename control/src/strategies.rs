//! Proptest strategies shared by the unit tests: valid cluster maps of varied shape.
//!
//! The strategies draw raw material (ids, cut points, owner picks) and build maps from it
//! deterministically, so every value they produce is valid by construction and shrinks well.

use std::collections::BTreeSet;

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::map::{ClusterMap, CoreInfo, HotKey, NodeInfo, Owner, SlotMove, SlotRange};
use crate::types::{ChainId, CoreId, Epoch, Incarnation, KnId, SLOT_COUNT, Slot};

/// Up to this many extra cut points split the keyspace into at most one more range than this.
const CUT_COUNT_MAX: usize = 48;

/// Between one and four nodes of one to four cores, with distinct ports and chains.
pub(crate) fn nodes() -> impl Strategy<Value = Vec<NodeInfo>> {
    (
        btree_set(any::<u32>(), 1..=4),
        vec(btree_set(any::<u16>(), 1..=4), 4),
        vec("[a-z0-9.-]{1,12}", 4),
        1u16..=60000,
        any::<u32>(),
    )
        .prop_map(|(kns, cores, hosts, port_base, chain_base)| {
            let mut next_port = port_base;
            let mut next_chain = chain_base;
            kns.into_iter()
                .zip(cores)
                .zip(hosts)
                .map(|((kn, core_ids), host)| NodeInfo {
                    kn: KnId(kn),
                    // Distinct per node, and sometimes none (a map of format version 1).
                    incarnation: Incarnation(u64::from(kn) * u64::from(kn % 3 != 0)),
                    host,
                    cores: core_ids
                        .into_iter()
                        .map(|core| {
                            // At most sixteen cores, so the port stays below 60017.
                            let info = CoreInfo {
                                core: CoreId(core),
                                port: next_port,
                                chain: ChainId(next_chain),
                            };
                            next_port += 1;
                            next_chain = next_chain.wrapping_add(1);
                            info
                        })
                        .collect(),
                })
                .collect()
        })
}

/// Raw material for an assignment of slots: cut points and, per piece, a pick among the owners.
pub(crate) fn assignment() -> impl Strategy<Value = (BTreeSet<u16>, Vec<Index>)> {
    (
        btree_set(1..SLOT_COUNT, 0..=CUT_COUNT_MAX),
        vec(any::<Index>(), CUT_COUNT_MAX + 1),
    )
}

/// Every core of `nodes`, in order.
pub(crate) fn owners_of(nodes: &[NodeInfo]) -> Vec<Owner> {
    nodes
        .iter()
        .flat_map(|node| {
            node.cores.iter().map(|core| Owner {
                kn: node.kn,
                core: core.core,
            })
        })
        .collect()
}

/// Cuts the keyspace at `cuts` and gives piece `i` the owner `picks[i]` chooses.
pub(crate) fn ranges(owners: &[Owner], cuts: &BTreeSet<u16>, picks: &[Index]) -> Vec<SlotRange> {
    let mut starts: Vec<u16> = vec![0];
    starts.extend(cuts.iter().copied());
    let mut ends: Vec<u16> = cuts.iter().map(|&cut| cut - 1).collect();
    ends.push(SLOT_COUNT - 1);
    starts
        .into_iter()
        .zip(ends)
        .zip(picks)
        .map(|((start, end), pick)| SlotRange {
            start: Slot::new(start).expect("cut points are slots"),
            end: Slot::new(end).expect("cut points are slots"),
            owner: owners[pick.index(owners.len())],
        })
        .collect()
}

/// Up to three hot keys with one to three distinct replicas each.
fn hot_keys(owners: &[Owner], raw: Vec<(Vec<u8>, Vec<Index>)>) -> Vec<HotKey> {
    let mut seen = BTreeSet::new();
    raw.into_iter()
        .filter(|(key, _)| seen.insert(key.clone()))
        .map(|(key, picks)| {
            let mut replicas: Vec<Owner> = Vec::new();
            for pick in picks {
                let owner = owners[pick.index(owners.len())];
                if !replicas.contains(&owner) {
                    replicas.push(owner);
                }
            }
            HotKey { key, replicas }
        })
        .collect()
}

/// An arbitrary valid map.
pub(crate) fn cluster_map() -> impl Strategy<Value = ClusterMap> {
    (
        nodes(),
        assignment(),
        vec(
            (vec(any::<u8>(), 1..=32), vec(any::<Index>(), 1..=3)),
            0..=3,
        ),
        any::<u32>(),
        vec((any::<Index>(), any::<Index>()), 0..=4),
    )
        .prop_map(|(nodes, (cuts, picks), hot_raw, epoch, pending_raw)| {
            let owners = owners_of(&nodes);
            let slots = ranges(&owners, &cuts, &picks);
            let hot = hot_keys(&owners, hot_raw);
            let map = ClusterMap::new(Epoch(epoch), nodes, slots, hot)
                .expect("strategy builds valid maps");
            // Some ranges are handovers in progress from another owner.
            let mut pending: Vec<SlotMove> = Vec::new();
            for (range_pick, from_pick) in pending_raw {
                let range = map.slots()[range_pick.index(map.slots().len())];
                let from = owners[from_pick.index(owners.len())];
                if from != range.owner && !pending.iter().any(|m| m.start == range.start) {
                    pending.push(SlotMove {
                        start: range.start,
                        end: range.end,
                        from,
                        to: range.owner,
                    });
                }
            }
            map.with_pending(pending)
                .expect("strategy builds valid maps")
        })
}

/// Two valid maps over the same nodes with independent assignments.
pub(crate) fn map_pair() -> impl Strategy<Value = (ClusterMap, ClusterMap)> {
    (nodes(), assignment(), assignment(), any::<u32>()).prop_map(
        |(nodes, (cuts_a, picks_a), (cuts_b, picks_b), epoch)| {
            let owners = owners_of(&nodes);
            let a = ClusterMap::new(
                Epoch(epoch),
                nodes.clone(),
                ranges(&owners, &cuts_a, &picks_a),
                Vec::new(),
            )
            .expect("strategy builds valid maps");
            let b = ClusterMap::new(
                Epoch(epoch.wrapping_add(1)),
                nodes,
                ranges(&owners, &cuts_b, &picks_b),
                Vec::new(),
            )
            .expect("strategy builds valid maps");
            (a, b)
        },
    )
}
