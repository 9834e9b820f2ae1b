//! [`Routing`]: where each slot's requests go, as one node sees a cluster map — a core of this
//! node, another node's core (answered with `-MOVED slot host:port`), or nobody — and
//! [`SlotSet`], the slots one core owns.
//!
//! Routing is a pure function of the map and the node's identity ([`Routing::new`]); each worker
//! owns an `Arc<Routing>` and swaps it whole when its control inbox brings a newer one, so a
//! worker never sees half of a map. Building one is O(slot ranges + slots); routing a key is one
//! CRC16 and one array index.

use std::sync::Arc;

use dinomo_control::{ClusterMap, CoreId, Epoch, KnId, Owner, SLOT_COUNT, Slot, slot_of};

/// Where the requests of one slot go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The core of this node with this index.
    Local(u16),
    /// A core of another node: its index in [`Routing::remote_addrs`].
    Remote(u32),
    /// No core serves the slot (the map gives it to a core this node does not know).
    Unowned,
}

/// The slots of one core, as a bit set.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet {
    bits: Box<[u64]>,
}

impl SlotSet {
    const WORDS: usize = SLOT_COUNT as usize / 64;

    /// No slot.
    pub fn empty() -> SlotSet {
        SlotSet {
            bits: vec![0; SlotSet::WORDS].into_boxed_slice(),
        }
    }

    /// Every slot.
    pub fn all() -> SlotSet {
        SlotSet {
            bits: vec![u64::MAX; SlotSet::WORDS].into_boxed_slice(),
        }
    }

    pub fn insert(&mut self, slot: Slot) {
        let i = usize::from(slot.get());
        self.bits[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn contains(&self, slot: Slot) -> bool {
        let i = usize::from(slot.get());
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// Whether every slot of `self` is in `other`.
    pub fn is_subset(&self, other: &SlotSet) -> bool {
        self.bits.iter().zip(&other.bits).all(|(a, b)| a & !b == 0)
    }
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSet({} slots)", self.len())
    }
}

/// A map as one node routes it.
#[derive(Debug)]
pub struct Routing {
    map: Arc<ClusterMap>,
    kn: KnId,
    routes: Box<[Route]>,
    /// `host:port` of the other nodes' cores that own slots.
    remote_addrs: Vec<String>,
    /// `host:port` of this node's cores, by index.
    local_addrs: Vec<String>,
}

impl Routing {
    /// How node `kn`, whose cores are `cores` (by index), routes `map`.
    pub fn new(map: Arc<ClusterMap>, kn: KnId, cores: &[CoreId]) -> Routing {
        let mut routes = vec![Route::Unowned; usize::from(SLOT_COUNT)].into_boxed_slice();
        let mut remotes: Vec<Owner> = Vec::new();
        let mut remote_addrs = Vec::new();
        for range in map.slots() {
            let owner = range.owner;
            let route = if owner.kn == kn {
                match cores.iter().position(|&c| c == owner.core) {
                    Some(index) => Route::Local(index as u16),
                    None => Route::Unowned,
                }
            } else {
                match map.core(owner) {
                    Some(core) => {
                        let index = match remotes.iter().position(|&o| o == owner) {
                            Some(i) => i,
                            None => {
                                let host = map.node(owner.kn).map_or("", |n| n.host.as_str());
                                remotes.push(owner);
                                remote_addrs.push(format!("{host}:{}", core.port));
                                remotes.len() - 1
                            }
                        };
                        Route::Remote(index as u32)
                    }
                    None => Route::Unowned,
                }
            };
            for slot in usize::from(range.start)..=usize::from(range.end) {
                routes[slot] = route;
            }
        }
        let local_addrs = match map.node(kn) {
            Some(node) => cores
                .iter()
                .map(|&c| {
                    let port = node
                        .cores
                        .iter()
                        .find(|i| i.core == c)
                        .map_or(0, |i| i.port);
                    format!("{}:{port}", node.host)
                })
                .collect(),
            None => Vec::new(),
        };
        Routing {
            map,
            kn,
            routes,
            remote_addrs,
            local_addrs,
        }
    }

    /// The map this routing was built from.
    pub fn map(&self) -> &Arc<ClusterMap> {
        &self.map
    }

    pub fn epoch(&self) -> Epoch {
        self.map.epoch()
    }

    /// The node this routing is for.
    pub fn kn(&self) -> KnId {
        self.kn
    }

    /// The slot of `key` and where it goes.
    #[inline]
    pub fn route(&self, key: &[u8]) -> (Slot, Route) {
        let slot = slot_of(key);
        (slot, self.routes[usize::from(slot.get())])
    }

    /// Where `slot` goes.
    #[inline]
    pub fn route_slot(&self, slot: Slot) -> Route {
        self.routes[usize::from(slot.get())]
    }

    /// The `host:port` a client should ask for `slot` (`None` if nobody serves it).
    pub fn address(&self, slot: Slot) -> Option<&str> {
        match self.route_slot(slot) {
            Route::Local(core) => self.local_addrs.get(usize::from(core)).map(String::as_str),
            Route::Remote(index) => self.remote_addrs.get(index as usize).map(String::as_str),
            Route::Unowned => None,
        }
    }

    /// The slots of this node's core `index`.
    pub fn owned_by(&self, index: usize) -> SlotSet {
        let mut set = SlotSet::empty();
        for slot in Slot::all() {
            if self.route_slot(slot) == Route::Local(index as u16) {
                set.insert(slot);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dinomo_control::{ChainId, CoreInfo, Incarnation, NodeInfo, SlotRange};

    fn two_nodes() -> Arc<ClusterMap> {
        let node = |kn: u32, host: &str| NodeInfo {
            kn: KnId(kn),
            incarnation: Incarnation(u64::from(kn)),
            host: host.into(),
            cores: (0..2)
                .map(|c| CoreInfo {
                    core: CoreId(c),
                    port: 7000 + c,
                    chain: ChainId(kn * 10 + u32::from(c)),
                })
                .collect(),
        };
        let range = |start, end, kn, core| SlotRange {
            start: Slot::new(start).unwrap(),
            end: Slot::new(end).unwrap(),
            owner: Owner {
                kn: KnId(kn),
                core: CoreId(core),
            },
        };
        Arc::new(
            ClusterMap::new(
                Epoch(3),
                vec![node(1, "a"), node(2, "b")],
                vec![
                    range(0, 99, 1, 0),
                    range(100, 199, 2, 1),
                    range(200, 16383, 1, 1),
                ],
                Vec::new(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn slots_route_to_local_cores_or_to_the_other_nodes_address() {
        let routing = Routing::new(two_nodes(), KnId(1), &[CoreId(0), CoreId(1)]);
        let slot = |i| Slot::new(i).unwrap();
        assert_eq!(routing.route_slot(slot(5)), Route::Local(0));
        assert_eq!(routing.route_slot(slot(150)), Route::Remote(0));
        assert_eq!(routing.route_slot(slot(9000)), Route::Local(1));
        assert_eq!(routing.address(slot(150)), Some("b:7001"));
        assert_eq!(routing.address(slot(5)), Some("a:7000"));
        assert_eq!(routing.owned_by(0).len(), 100);
        assert_eq!(routing.owned_by(1).len(), 16384 - 200);
        // A node that runs only core 0 of the map's cores cannot serve core 1's slots.
        let partial = Routing::new(two_nodes(), KnId(1), &[CoreId(0)]);
        assert_eq!(partial.route_slot(slot(9000)), Route::Unowned);
        assert_eq!(partial.address(slot(9000)), None);
    }

    #[test]
    fn a_node_outside_the_map_routes_everything_away() {
        let routing = Routing::new(two_nodes(), KnId(9), &[CoreId(0)]);
        assert!(routing.owned_by(0).is_empty());
        assert_eq!(routing.address(Slot::MIN), Some("a:7000"));
    }

    #[test]
    fn slot_sets() {
        let mut set = SlotSet::empty();
        assert!(set.is_empty());
        set.insert(Slot::MAX);
        set.insert(Slot::MIN);
        assert!(set.contains(Slot::MAX) && !set.contains(Slot::new(1).unwrap()));
        assert_eq!(set.len(), 2);
        assert!(set.is_subset(&SlotSet::all()));
        assert!(!SlotSet::all().is_subset(&set));
        assert_eq!(SlotSet::all().len(), 16384);
    }
}
