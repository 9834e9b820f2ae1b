//! Planning ownership changes: which slots move so that a set of owners holds every slot in
//! even shares, moving as few slots as possible.
//!
//! [`balance`] is the one planner; a join (new owners added to the set), a leave or a failover
//! (owners taken out of it) and a rebalance (the same set) are all a call of it. It is a pure
//! function of the map and the owner set, so the controller's decisions are reproducible and the
//! planner is tested on its own.
//!
//! Minimality: every slot of an owner outside the set must move; beyond those, an owner in the
//! set gives up only what it holds above its target, and the targets are handed out so that the
//! owners holding most keep most (the `r` owners with the most slots get the `q + 1` shares when
//! 16384 = `q·n + r`). No plan that ends with even shares moves fewer slots. Surplus slots are
//! taken from the end of an owner's last ranges and free slots are handed out in slot order, so
//! ranges stay few. Cost: O(slots) time and memory (a 16384-entry owner array).

use crate::map::{ClusterMap, MapError, Owner, SlotRange};
use crate::types::{SLOT_COUNT, Slot};

/// The changes (for [`crate::reassign`] / [`crate::reconfigure`]) that leave every slot with one
/// of `owners`, each holding ⌊16384/n⌋ or ⌈16384/n⌉ slots, moving as few slots as possible.
/// Owners may be listed in any order; duplicates count once.
///
/// # Errors
///
/// [`MapError::NoOwners`] for an empty set, [`MapError::TooManyOwners`] for more owners than
/// slots.
pub fn balance(map: &ClusterMap, owners: &[Owner]) -> Result<Vec<SlotRange>, MapError> {
    let mut owners: Vec<Owner> = owners.to_vec();
    owners.sort();
    owners.dedup();
    let n = owners.len();
    if n == 0 {
        return Err(MapError::NoOwners);
    }
    let total = usize::from(SLOT_COUNT);
    if n > total {
        return Err(MapError::TooManyOwners { count: n });
    }
    let mut by_slot: Vec<Option<usize>> = vec![None; total];
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); n];
    for range in map.slots() {
        let member = owners.binary_search(&range.owner).ok();
        let span = usize::from(range.start)..=usize::from(range.end);
        by_slot[span.clone()].fill(member);
        if let Some(m) = member {
            held[m].extend(span);
        }
    }
    // Targets: the owners holding most get the larger shares.
    let (q, r) = (total / n, total % n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| held[b].len().cmp(&held[a].len()).then(a.cmp(&b)));
    let mut target = vec![q; n];
    for &m in order.iter().take(r) {
        target[m] = q + 1;
    }
    // Free slots: every slot outside the set, and each owner's surplus from its highest slots.
    for m in 0..n {
        let keep = held[m].len().min(target[m]);
        for slot in held[m].split_off(keep) {
            by_slot[slot] = None;
        }
    }
    let mut need: Vec<usize> = (0..n)
        .map(|m| target[m].saturating_sub(held[m].len()))
        .collect();
    let mut next = 0;
    let mut changes: Vec<SlotRange> = Vec::new();
    for (slot, member) in by_slot.iter().enumerate() {
        if member.is_some() {
            continue;
        }
        while next < n && need[next] == 0 {
            next += 1;
        }
        // The free slots are exactly as many as the shares still missing.
        let Some(remaining) = need.get_mut(next) else {
            break;
        };
        *remaining -= 1;
        let owner = owners[next];
        let slot = Slot::new(slot as u16).unwrap_or(Slot::MAX);
        match changes.last_mut() {
            Some(last) if last.owner == owner && usize::from(last.end) + 1 == usize::from(slot) => {
                last.end = slot;
            }
            _ => changes.push(SlotRange {
                start: slot,
                end: slot,
                owner,
            }),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{CoreInfo, NodeInfo, moved_slots, reconfigure};
    use crate::strategies;
    use crate::types::{ChainId, CoreId, Epoch, Incarnation, KnId};
    use proptest::prelude::*;

    fn node(kn: u32, cores: u16) -> NodeInfo {
        NodeInfo {
            kn: KnId(kn),
            incarnation: Incarnation(u64::from(kn)),
            host: format!("kn{kn}"),
            cores: (0..cores)
                .map(|c| CoreInfo {
                    core: CoreId(c),
                    port: 7000 + c,
                    chain: ChainId(kn * 100 + u32::from(c)),
                })
                .collect(),
        }
    }

    fn owners_of(nodes: &[NodeInfo]) -> Vec<Owner> {
        nodes
            .iter()
            .flat_map(|n| {
                n.cores.iter().map(|c| Owner {
                    kn: n.kn,
                    core: c.core,
                })
            })
            .collect()
    }

    fn counts(map: &ClusterMap, owners: &[Owner]) -> Vec<usize> {
        owners
            .iter()
            .map(|&o| {
                map.slots()
                    .iter()
                    .filter(|r| r.owner == o)
                    .map(SlotRange::slot_count)
                    .sum()
            })
            .collect()
    }

    /// `n` nodes of `cores` cores each, with the slots split evenly.
    fn cluster(n: u32, cores: u16) -> ClusterMap {
        let nodes: Vec<NodeInfo> = (1..=n).map(|kn| node(kn, cores)).collect();
        let owners = owners_of(&nodes);
        let slots = crate::map::split_evenly(&owners).unwrap();
        ClusterMap::new(Epoch(1), nodes, slots, Vec::new()).unwrap()
    }

    #[test]
    fn adding_a_fourth_node_to_three_moves_a_quarter_of_the_slots() {
        let map = cluster(3, 2);
        let mut nodes = map.nodes().to_vec();
        nodes.push(node(4, 2));
        let owners = owners_of(&nodes);
        let changes = balance(&map, &owners).unwrap();
        let new = reconfigure(&map, nodes, &changes).unwrap();
        let moved: usize = moved_slots(&map, &new).iter().map(|m| m.slot_count()).sum();
        assert_eq!(moved, 4096, "exactly the new node's share moves");
        for c in counts(&new, &owners) {
            assert!((2048..=2048).contains(&c), "{c}");
        }
        // Every move goes to the new node.
        assert!(moved_slots(&map, &new).iter().all(|m| m.to.kn == KnId(4)));
    }

    #[test]
    fn a_leaving_node_gives_its_slots_to_the_others_and_nobody_else_moves() {
        let map = cluster(4, 1);
        let remaining: Vec<Owner> = owners_of(&map.nodes()[..3]);
        let changes = balance(&map, &remaining).unwrap();
        let nodes = map.nodes()[..3].to_vec();
        let new = reconfigure(&map, nodes, &changes).unwrap();
        let moves = moved_slots(&map, &new);
        assert!(moves.iter().all(|m| m.from.kn == KnId(4)));
        assert_eq!(moves.iter().map(|m| m.slot_count()).sum::<usize>(), 4096);
        let c = counts(&new, &remaining);
        assert!(c.iter().all(|&n| n == 5461 || n == 5462), "{c:?}");
    }

    #[test]
    fn a_balanced_map_moves_nothing_and_an_empty_set_is_refused() {
        let map = cluster(2, 3);
        let owners = owners_of(map.nodes());
        assert!(balance(&map, &owners).unwrap().is_empty());
        assert_eq!(balance(&map, &[]), Err(MapError::NoOwners));
    }

    fn minimal_moves(map: &ClusterMap, owners: &[Owner]) -> usize {
        let mut owners = owners.to_vec();
        owners.sort();
        owners.dedup();
        let n = owners.len();
        let (q, r) = (16384 / n, 16384 % n);
        let mut held: Vec<usize> = counts(map, &owners);
        held.sort_unstable_by(|a, b| b.cmp(a));
        let outside = 16384 - held.iter().sum::<usize>();
        let surplus: usize = held
            .iter()
            .enumerate()
            .map(|(i, &h)| h.saturating_sub(if i < r { q + 1 } else { q }))
            .sum();
        outside + surplus
    }

    proptest! {
        #[test]
        fn balance_leaves_even_shares_with_the_fewest_moves(
            map in strategies::cluster_map(),
            keep in proptest::collection::vec(any::<bool>(), 16),
            extra in 0u16..4,
        ) {
            // Owners: some of the map's, plus up to three cores of a new node.
            let mut owners: Vec<Owner> = map
                .owners()
                .zip(keep.iter().cycle())
                .filter(|(_, k)| **k)
                .map(|(o, _)| o)
                .collect();
            let mut nodes = map.nodes().to_vec();
            if extra > 0 {
                let newcomer = NodeInfo {
                    kn: KnId(u32::MAX),
                    incarnation: Incarnation(u64::MAX),
                    host: "newcomer".into(),
                    cores: (0..extra)
                        .map(|c| CoreInfo { core: CoreId(c), port: 1 + c, chain: ChainId(u32::MAX - u32::from(c)) })
                        .collect(),
                };
                prop_assume!(map.node(KnId(u32::MAX)).is_none());
                prop_assume!(map.nodes().iter().all(|n| n.cores.iter().all(|c| c.chain.0 < u32::MAX - 8)));
                owners.extend(owners_of(std::slice::from_ref(&newcomer)));
                nodes.push(newcomer);
            }
            prop_assume!(!owners.is_empty());
            let changes = balance(&map, &owners).unwrap();
            let new = reconfigure(&map, nodes, &changes).unwrap();
            let n = owners.len();
            for c in counts(&new, &owners) {
                prop_assert!(c == 16384 / n || c == 16384 / n + 1, "{} of {}", c, n);
            }
            let moved: usize = moved_slots(&map, &new).iter().map(|m| m.slot_count()).sum();
            prop_assert_eq!(moved, minimal_moves(&map, &owners));
        }
    }
}
