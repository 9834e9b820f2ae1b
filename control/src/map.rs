//! The cluster map: which worker core of which compute node owns each slot, at which epoch.
//!
//! A [`ClusterMap`] names the compute nodes, their worker cores (each with its own client port
//! and its own log chain in the memory pool) and, as sorted contiguous ranges, the owner of every
//! slot. It also carries the replica sets of selectively replicated hot keys, empty until that
//! work lands. Ownership changes make a new map with a higher epoch; they never move data, because
//! the data stays in the memory pool.
//!
//! Invariants, checked by [`ClusterMap::validate`] and upheld by every constructor (so the fields
//! are private and a `ClusterMap` in hand is always valid):
//!
//! - every count and length is within the limits in [`crate::constants`];
//! - node ids are distinct; each node has a non-empty host and at least one core; core ids are
//!   distinct within a node; no two cores share a log chain or a `(host, port)` endpoint, and no
//!   core listens on port 0;
//! - the slot ranges are sorted, disjoint, cover every slot, each names an existing core, and no
//!   two neighbouring ranges have the same owner (so equal assignments compare equal);
//! - each hot key is non-empty, appears once, and has a non-empty replica set of distinct,
//!   existing cores.
//!
//! Routing ([`owner_of`], [`slots_of`]) and the comparison of two maps ([`moved_slots`]) are pure
//! functions of the map.

use std::collections::HashSet;
use std::fmt;

use crate::constants::{
    CORE_COUNT_MAX, HOST_BYTES_MAX, HOT_KEY_BYTES_MAX, HOT_KEY_COUNT_MAX,
    HOT_KEY_REPLICA_COUNT_MAX, MAP_ENCODED_BYTES_MAX, NODE_CORE_COUNT_MAX, NODE_COUNT_MAX,
    PENDING_MOVES_MAX, SLOT_RANGE_COUNT_MAX,
};
use crate::types::{ChainId, CoreId, Epoch, Incarnation, KnId, SLOT_COUNT, Slot};

/// A worker core that owns slots: the compute node and the core within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// The compute node.
    pub kn: KnId,
    /// The worker core within the compute node.
    pub core: CoreId,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kn {} core {}", self.kn, self.core)
    }
}

/// One worker core of a compute node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreInfo {
    /// The core's id within its node.
    pub core: CoreId,
    /// The TCP port on which this core serves clients itself.
    pub port: u16,
    /// The core's own log chain in the memory pool.
    pub chain: ChainId,
}

/// A compute node and its worker cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub kn: KnId,
    /// The run of the node that owns its slots and chains ([`Incarnation::NONE`] in maps that
    /// predate incarnations).
    pub incarnation: Incarnation,
    /// The host name or address at which clients reach the node's cores.
    pub host: String,
    /// The node's worker cores.
    pub cores: Vec<CoreInfo>,
}

/// The slots `start..=end`, all owned by `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slot of the range.
    pub start: Slot,
    /// The last slot of the range (inclusive).
    pub end: Slot,
    /// The core that owns every slot of the range.
    pub owner: Owner,
}

impl SlotRange {
    /// Number of slots in the range; zero if it is reversed.
    #[must_use]
    pub fn slot_count(&self) -> usize {
        (usize::from(self.end) + 1).saturating_sub(usize::from(self.start))
    }

    /// Whether `slot` lies in the range.
    #[must_use]
    pub fn contains(&self, slot: Slot) -> bool {
        self.start <= slot && slot <= self.end
    }
}

/// A selectively replicated key and the cores that serve it (reserved: no code fills it yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    /// The full key.
    pub key: Vec<u8>,
    /// The cores that serve reads and writes of the key.
    pub replicas: Vec<Owner>,
}

/// The slots `start..=end` change owner from `from` to `to` between two maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotMove {
    /// The first slot that moves.
    pub start: Slot,
    /// The last slot that moves (inclusive).
    pub end: Slot,
    /// The owner in the older map.
    pub from: Owner,
    /// The owner in the newer map.
    pub to: Owner,
}

impl SlotMove {
    /// Number of slots that move.
    #[must_use]
    pub fn slot_count(&self) -> usize {
        (usize::from(self.end) + 1).saturating_sub(usize::from(self.start))
    }
}

/// Why a cluster map is invalid, or why bytes are not an encoded cluster map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// More slot ranges than [`SLOT_RANGE_COUNT_MAX`] (only an encoding can claim this).
    #[error("the map claims {count} slot ranges, more than the limit of {SLOT_RANGE_COUNT_MAX}")]
    TooManyRanges { count: usize },
    /// More nodes than [`NODE_COUNT_MAX`].
    #[error("the map names {count} compute nodes, more than the limit of {NODE_COUNT_MAX}")]
    TooManyNodes { count: usize },
    /// More cores in the cluster than [`CORE_COUNT_MAX`].
    #[error("the map names {count} worker cores, more than the limit of {CORE_COUNT_MAX}")]
    TooManyCores { count: usize },
    /// More cores on one node than [`NODE_CORE_COUNT_MAX`].
    #[error("kn {kn} runs {count} worker cores, more than the limit of {NODE_CORE_COUNT_MAX}")]
    TooManyNodeCores { kn: KnId, count: usize },
    /// A node with no cores could own nothing.
    #[error("kn {kn} has no worker cores")]
    NodeWithoutCores { kn: KnId },
    /// A node with no host could not be reached.
    #[error("kn {kn} has an empty host")]
    HostEmpty { kn: KnId },
    /// A host longer than [`HOST_BYTES_MAX`].
    #[error("kn {kn} has a host of {bytes} bytes, more than the limit of {HOST_BYTES_MAX}")]
    HostTooLong { kn: KnId, bytes: usize },
    /// Two nodes with one id.
    #[error("kn {kn} appears twice")]
    DuplicateKn { kn: KnId },
    #[error("incarnation {incarnation} runs two nodes")]
    DuplicateIncarnation { incarnation: Incarnation },
    /// Two cores with one id on one node.
    #[error("{owner} appears twice")]
    DuplicateCore { owner: Owner },
    /// A core whose client port is 0, where no client can connect.
    #[error("{owner} has client port 0")]
    PortZero { owner: Owner },
    /// Two cores that would listen on one endpoint.
    #[error("two cores listen on {host}:{port}")]
    DuplicatePort { host: String, port: u16 },
    /// Two cores that would append to one log chain.
    #[error("{chain} belongs to two cores")]
    DuplicateChain { chain: ChainId },
    /// A slot range whose end comes before its start.
    #[error("slot range {start}..={end} ends before it starts")]
    RangeReversed { start: Slot, end: Slot },
    /// A slot range that starts before the range listed ahead of it.
    #[error("the slot range starting at slot {slot} is out of order")]
    RangesOutOfOrder { slot: Slot },
    /// A slot that no range covers.
    #[error("slot {slot} has no owner")]
    SlotUnowned { slot: Slot },
    /// A slot that two ranges cover.
    #[error("slot {slot} has more than one owner")]
    SlotOwnedTwice { slot: Slot },
    /// Two touching ranges with one owner, which must be stored as one range.
    #[error("the slot range starting at slot {slot} has the same owner as the range before it")]
    RangesNotMerged { slot: Slot },
    /// An owner or replica that names no core of any node in the map.
    #[error("{owner} is not a core of any node in the map")]
    UnknownOwner { owner: Owner },
    /// Slots cannot be split among no owners.
    #[error("there are no owners to split the slots among")]
    NoOwners,
    /// More owners than slots, so some would get none.
    #[error("{count} owners cannot each get one of the {SLOT_COUNT} slots")]
    TooManyOwners { count: usize },
    /// More hot keys than [`HOT_KEY_COUNT_MAX`].
    #[error("the map names {count} hot keys, more than the limit of {HOT_KEY_COUNT_MAX}")]
    TooManyHotKeys { count: usize },
    /// A hot key of zero bytes.
    #[error("a hot key is empty")]
    HotKeyEmpty,
    /// A hot key longer than [`HOT_KEY_BYTES_MAX`].
    #[error("a hot key has {bytes} bytes, more than the limit of {HOT_KEY_BYTES_MAX}")]
    HotKeyTooLong { bytes: usize },
    /// One key listed twice among the hot keys.
    #[error("hot key \"{}\" appears twice", .key.escape_ascii())]
    DuplicateHotKey { key: Vec<u8> },
    /// A hot key that no core serves.
    #[error("hot key \"{}\" has no replicas", .key.escape_ascii())]
    HotKeyWithoutReplicas { key: Vec<u8> },
    /// A replica set larger than [`HOT_KEY_REPLICA_COUNT_MAX`].
    #[error(
        "hot key \"{}\" has {count} replicas, more than the limit of {HOT_KEY_REPLICA_COUNT_MAX}",
        .key.escape_ascii()
    )]
    TooManyReplicas { key: Vec<u8>, count: usize },
    /// One core listed twice in a replica set.
    #[error("hot key \"{}\" lists {owner} twice", .key.escape_ascii())]
    DuplicateReplica { key: Vec<u8>, owner: Owner },
    /// The epoch counter has no next value.
    #[error("the epoch counter is exhausted")]
    EpochOverflow,
    #[error(
        "the map has {count} handovers in progress, more than the limit of {PENDING_MOVES_MAX}"
    )]
    TooManyPending { count: usize },
    #[error("the handover starting at slot {slot} overlaps the one before it")]
    PendingOverlap { slot: Slot },
    #[error("slot {slot} of a handover in progress belongs to another owner than the handover's")]
    PendingNotOwned { slot: Slot },
    #[error("the handover starting at slot {slot} moves slots to their own owner")]
    PendingToSelf { slot: Slot },
    #[error("epoch {value} at byte {offset} does not fit in 32 bits")]
    EpochOutOfRange { offset: usize, value: u64 },
    /// An encoding longer than [`MAP_ENCODED_BYTES_MAX`].
    #[error("{bytes} bytes are more than the {MAP_ENCODED_BYTES_MAX} an encoded map may have")]
    TooLarge { bytes: usize },
    /// The bytes end in the middle of a field.
    #[error("the encoded map is cut short at byte {offset}")]
    Truncated { offset: usize },
    /// The bytes do not start with the map's magic number.
    #[error("the bytes do not start with the cluster map magic (found {found:02x?})")]
    BadMagic { found: [u8; 4] },
    /// A format version this code does not read.
    #[error("cluster map format version {version} is not supported")]
    UnsupportedVersion { version: u16 },
    /// A reserved field that is not zero, so it may mean something this code does not know.
    #[error("the reserved field at byte {offset} is not zero")]
    ReservedNotZero { offset: usize },
    /// The length in the header disagrees with the number of bytes given.
    #[error("the header says the map has {header} bytes, but {actual} were given")]
    LengthMismatch { header: u32, actual: usize },
    /// Bytes left over after the last record the header announces.
    #[error("the records end at byte {offset}, before the end of the encoded map")]
    TrailingBytes { offset: usize },
    /// A slot number that is not below [`SLOT_COUNT`].
    #[error("slot number {value} at byte {offset} is not below {SLOT_COUNT}")]
    SlotOutOfRange { offset: usize, value: u16 },
    /// A host that is not UTF-8.
    #[error("the host of kn {kn} is not UTF-8")]
    HostNotUtf8 { kn: KnId },
}

/// The versioned assignment of every slot to a worker core. See the module documentation for
/// the invariants every value upholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMap {
    epoch: Epoch,
    nodes: Vec<NodeInfo>,
    slots: Vec<SlotRange>,
    hot_keys: Vec<HotKey>,
    /// Handovers in progress: ranges whose owner (`to`) may not serve them until `from` has
    /// released them or has been fenced (DESIGN.md §5).
    pending: Vec<SlotMove>,
}

impl ClusterMap {
    /// A map from its parts. The slot ranges may come in any order and touching ranges with one
    /// owner are merged; everything else must already satisfy the invariants.
    ///
    /// # Errors
    ///
    /// The first invariant the parts break, as [`ClusterMap::validate`] reports it.
    pub fn new(
        epoch: Epoch,
        nodes: Vec<NodeInfo>,
        mut slots: Vec<SlotRange>,
        hot_keys: Vec<HotKey>,
    ) -> Result<ClusterMap, MapError> {
        slots.sort_by_key(|range| range.start);
        let slots = merge_touching(slots);
        ClusterMap::from_canonical_parts(epoch, nodes, slots, hot_keys, Vec::new())
    }

    /// This map with `pending` as its handovers in progress (sorted by slot here).
    ///
    /// # Errors
    ///
    /// The first invariant the pending moves break ([`MapError::TooManyPending`],
    /// [`MapError::PendingOverlap`], [`MapError::PendingNotOwned`], [`MapError::PendingToSelf`],
    /// [`MapError::UnknownOwner`]).
    pub fn with_pending(mut self, mut pending: Vec<SlotMove>) -> Result<ClusterMap, MapError> {
        pending.sort_by_key(|m| m.start);
        self.pending = pending;
        self.validate()?;
        Ok(self)
    }

    /// A map from parts that must satisfy every invariant as they are, ranges already sorted and
    /// merged. The decoder uses this so that each valid map has exactly one encoding.
    pub(crate) fn from_canonical_parts(
        epoch: Epoch,
        nodes: Vec<NodeInfo>,
        slots: Vec<SlotRange>,
        hot_keys: Vec<HotKey>,
        pending: Vec<SlotMove>,
    ) -> Result<ClusterMap, MapError> {
        let map = ClusterMap {
            epoch,
            nodes,
            slots,
            hot_keys,
            pending,
        };
        map.validate()?;
        Ok(map)
    }

    /// A one-node cluster, run by `incarnation`, whose cores split the slots evenly, in the order
    /// given, as contiguous ranges (see [`split_evenly`]). Each core is `(core id, client port,
    /// log chain)`.
    ///
    /// # Errors
    ///
    /// [`MapError::NodeWithoutCores`] for no cores, otherwise the first invariant broken.
    pub fn single_node(
        kn: KnId,
        incarnation: Incarnation,
        host: &str,
        cores: &[(CoreId, u16, ChainId)],
        epoch: Epoch,
    ) -> Result<ClusterMap, MapError> {
        if cores.is_empty() {
            return Err(MapError::NodeWithoutCores { kn });
        }
        let node = NodeInfo {
            kn,
            incarnation,
            host: host.to_owned(),
            cores: cores
                .iter()
                .map(|&(core, port, chain)| CoreInfo { core, port, chain })
                .collect(),
        };
        let owners: Vec<Owner> = cores
            .iter()
            .map(|&(core, _, _)| Owner { kn, core })
            .collect();
        let slots = split_evenly(&owners)?;
        ClusterMap::new(epoch, vec![node], slots, Vec::new())
    }

    /// The map's epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The compute nodes, in the order the map was built with.
    #[must_use]
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The slot ranges, sorted by start, covering every slot once.
    #[must_use]
    pub fn slots(&self) -> &[SlotRange] {
        &self.slots
    }

    /// The selectively replicated keys and their replica sets.
    #[must_use]
    pub fn hot_keys(&self) -> &[HotKey] {
        &self.hot_keys
    }

    /// The handovers in progress, in slot order.
    #[must_use]
    pub fn pending(&self) -> &[SlotMove] {
        &self.pending
    }

    /// The pending handover that covers `slot`, if any.
    #[must_use]
    pub fn pending_at(&self, slot: Slot) -> Option<&SlotMove> {
        let after = self.pending.partition_point(|m| m.start <= slot);
        let m = self.pending.get(after.checked_sub(1)?)?;
        (m.start <= slot && slot <= m.end).then_some(m)
    }

    /// The node with id `kn`, if the map names it.
    #[must_use]
    pub fn node(&self, kn: KnId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|node| node.kn == kn)
    }

    /// The core `owner` names, if the map has it; its port tells a client where to go.
    #[must_use]
    pub fn core(&self, owner: Owner) -> Option<&CoreInfo> {
        self.node(owner.kn)?
            .cores
            .iter()
            .find(|core| core.core == owner.core)
    }

    /// Every core of every node, in node order and then core order.
    pub fn owners(&self) -> impl Iterator<Item = Owner> + '_ {
        self.nodes.iter().flat_map(|node| {
            node.cores.iter().map(|core| Owner {
                kn: node.kn,
                core: core.core,
            })
        })
    }

    /// Checks every invariant listed in the module documentation.
    ///
    /// A map built by this crate always passes; the decoder calls this on what it reads, and
    /// callers may call it again as a pair assertion before storing a map.
    ///
    /// # Errors
    ///
    /// The first broken invariant found, checking nodes, then slot ranges, then hot keys.
    pub fn validate(&self) -> Result<(), MapError> {
        let owners = self.validate_nodes()?;
        self.validate_slots(&owners)?;
        self.validate_hot_keys(&owners)?;
        self.validate_pending(&owners)
    }

    fn validate_pending(&self, owners: &HashSet<Owner>) -> Result<(), MapError> {
        if self.pending.len() > PENDING_MOVES_MAX {
            return Err(MapError::TooManyPending {
                count: self.pending.len(),
            });
        }
        let mut next_free: usize = 0;
        for m in &self.pending {
            if m.start > m.end {
                return Err(MapError::RangeReversed {
                    start: m.start,
                    end: m.end,
                });
            }
            if usize::from(m.start) < next_free {
                return Err(MapError::PendingOverlap { slot: m.start });
            }
            next_free = usize::from(m.end) + 1;
            if m.from == m.to {
                return Err(MapError::PendingToSelf { slot: m.start });
            }
            for owner in [m.from, m.to] {
                if !owners.contains(&owner) {
                    return Err(MapError::UnknownOwner { owner });
                }
            }
            // Every slot of the move belongs to its destination.
            let first = self.slots.partition_point(|r| r.end < m.start);
            for range in self.slots[first..].iter().take_while(|r| r.start <= m.end) {
                if range.owner != m.to {
                    return Err(MapError::PendingNotOwned {
                        slot: range.start.max(m.start),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks the nodes and cores and returns the set of every core, for the owner checks.
    fn validate_nodes(&self) -> Result<HashSet<Owner>, MapError> {
        if self.nodes.len() > NODE_COUNT_MAX {
            return Err(MapError::TooManyNodes {
                count: self.nodes.len(),
            });
        }
        // Count the cores before hashing any of them, so the work below stays bounded.
        let core_count: usize = self.nodes.iter().map(|node| node.cores.len()).sum();
        if core_count > CORE_COUNT_MAX {
            return Err(MapError::TooManyCores { count: core_count });
        }
        let mut kns = HashSet::with_capacity(self.nodes.len());
        let mut incarnations = HashSet::with_capacity(self.nodes.len());
        let mut owners = HashSet::with_capacity(core_count);
        let mut endpoints = HashSet::with_capacity(core_count);
        let mut chains = HashSet::with_capacity(core_count);
        for node in &self.nodes {
            let kn = node.kn;
            if !kns.insert(kn) {
                return Err(MapError::DuplicateKn { kn });
            }
            if node.incarnation.is_some() && !incarnations.insert(node.incarnation) {
                return Err(MapError::DuplicateIncarnation {
                    incarnation: node.incarnation,
                });
            }
            if node.host.is_empty() {
                return Err(MapError::HostEmpty { kn });
            }
            if node.host.len() > HOST_BYTES_MAX {
                return Err(MapError::HostTooLong {
                    kn,
                    bytes: node.host.len(),
                });
            }
            if node.cores.is_empty() {
                return Err(MapError::NodeWithoutCores { kn });
            }
            if node.cores.len() > NODE_CORE_COUNT_MAX {
                return Err(MapError::TooManyNodeCores {
                    kn,
                    count: node.cores.len(),
                });
            }
            for core in &node.cores {
                let owner = Owner {
                    kn,
                    core: core.core,
                };
                if !owners.insert(owner) {
                    return Err(MapError::DuplicateCore { owner });
                }
                if core.port == 0 {
                    return Err(MapError::PortZero { owner });
                }
                // Ports clash only on one host: several nodes may use the same port numbers on
                // different machines. Hosts are compared as written, without name resolution.
                if !endpoints.insert((node.host.as_str(), core.port)) {
                    return Err(MapError::DuplicatePort {
                        host: node.host.clone(),
                        port: core.port,
                    });
                }
                // Chains live in the one shared pool, so they must be distinct cluster-wide.
                if !chains.insert(core.chain) {
                    return Err(MapError::DuplicateChain { chain: core.chain });
                }
            }
        }
        Ok(owners)
    }

    /// Checks that the ranges are sorted, merged, name known cores and cover every slot once.
    fn validate_slots(&self, owners: &HashSet<Owner>) -> Result<(), MapError> {
        // Order first, so an unsorted list is reported as such rather than as the gap or overlap
        // it looks like when read in order.
        for pair in self.slots.windows(2) {
            if let [before, after] = pair
                && after.start < before.start
            {
                return Err(MapError::RangesOutOfOrder { slot: after.start });
            }
        }
        // The index of the first slot not yet covered; past the last slot once all are.
        let mut next_uncovered: usize = 0;
        let mut previous: Option<&SlotRange> = None;
        for range in &self.slots {
            if range.start > range.end {
                return Err(MapError::RangeReversed {
                    start: range.start,
                    end: range.end,
                });
            }
            if !owners.contains(&range.owner) {
                return Err(MapError::UnknownOwner { owner: range.owner });
            }
            let start = usize::from(range.start);
            if start < next_uncovered {
                return Err(MapError::SlotOwnedTwice { slot: range.start });
            }
            if start > next_uncovered {
                return Err(MapError::SlotUnowned {
                    slot: slot_at(next_uncovered),
                });
            }
            if previous.is_some_and(|p| p.owner == range.owner) {
                return Err(MapError::RangesNotMerged { slot: range.start });
            }
            next_uncovered = usize::from(range.end) + 1;
            previous = Some(range);
        }
        if next_uncovered < usize::from(SLOT_COUNT) {
            return Err(MapError::SlotUnowned {
                slot: slot_at(next_uncovered),
            });
        }
        Ok(())
    }

    /// Checks the hot keys and their replica sets.
    fn validate_hot_keys(&self, owners: &HashSet<Owner>) -> Result<(), MapError> {
        if self.hot_keys.len() > HOT_KEY_COUNT_MAX {
            return Err(MapError::TooManyHotKeys {
                count: self.hot_keys.len(),
            });
        }
        let mut keys = HashSet::with_capacity(self.hot_keys.len());
        for hot in &self.hot_keys {
            if hot.key.is_empty() {
                return Err(MapError::HotKeyEmpty);
            }
            if hot.key.len() > HOT_KEY_BYTES_MAX {
                return Err(MapError::HotKeyTooLong {
                    bytes: hot.key.len(),
                });
            }
            if !keys.insert(hot.key.as_slice()) {
                return Err(MapError::DuplicateHotKey {
                    key: hot.key.clone(),
                });
            }
            if hot.replicas.is_empty() {
                return Err(MapError::HotKeyWithoutReplicas {
                    key: hot.key.clone(),
                });
            }
            if hot.replicas.len() > HOT_KEY_REPLICA_COUNT_MAX {
                return Err(MapError::TooManyReplicas {
                    key: hot.key.clone(),
                    count: hot.replicas.len(),
                });
            }
            for (index, &owner) in hot.replicas.iter().enumerate() {
                if !owners.contains(&owner) {
                    return Err(MapError::UnknownOwner { owner });
                }
                // Replica sets are at most a handful of cores, so a quadratic scan is cheapest.
                if hot.replicas[..index].contains(&owner) {
                    return Err(MapError::DuplicateReplica {
                        key: hot.key.clone(),
                        owner,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The slot at `index`, which the caller keeps below [`SLOT_COUNT`]; an index past the end
/// clamps to the last slot rather than panic, since only an internal bug could produce one.
fn slot_at(index: usize) -> Slot {
    u16::try_from(index)
        .ok()
        .and_then(Slot::new)
        .unwrap_or(Slot::MAX)
}

/// Merges each range into the one before it when they touch and have the same owner. Ranges
/// that overlap or are reversed are left alone for validation to report.
fn merge_touching(slots: Vec<SlotRange>) -> Vec<SlotRange> {
    let mut merged: Vec<SlotRange> = Vec::with_capacity(slots.len());
    for range in slots {
        if let Some(last) = merged.last_mut() {
            let touches = usize::from(last.end) + 1 == usize::from(range.start);
            if touches
                && last.owner == range.owner
                && last.start <= last.end
                && range.start <= range.end
            {
                last.end = range.end;
                continue;
            }
        }
        merged.push(range);
    }
    merged
}

/// The core that owns `slot`, found by binary search over the ranges.
///
/// Every slot of a valid map has an owner, so this returns `None` only for a map that broke its
/// invariants; routing code can treat that as "ask the controller" rather than panic.
#[must_use]
pub fn owner_of(map: &ClusterMap, slot: Slot) -> Option<Owner> {
    let after = map.slots.partition_point(|range| range.start <= slot);
    let range = map.slots.get(after.checked_sub(1)?)?;
    range.contains(slot).then_some(range.owner)
}

/// The slot ranges `owner` owns, in ascending order, as `(first, last)` inclusive pairs.
#[must_use]
pub fn slots_of(map: &ClusterMap, owner: Owner) -> Vec<(Slot, Slot)> {
    map.slots
        .iter()
        .filter(|range| range.owner == owner)
        .map(|range| (range.start, range.end))
        .collect()
}

/// Splits all slots among `owners`, in the order given, one contiguous range each.
///
/// Owner `i` of `n` gets the slots from the one nearest `i * 16384 / n` up to the one before the
/// one nearest `(i + 1) * 16384 / n`, which is how Redis Cluster splits slots among masters
/// (three masters get 0..=5460, 5461..=10922 and 10923..=16383). Rounding each boundary to the
/// nearest slot keeps the range sizes within one of each other.
///
/// # Errors
///
/// [`MapError::NoOwners`] for no owners, [`MapError::TooManyOwners`] for more owners than slots.
pub fn split_evenly(owners: &[Owner]) -> Result<Vec<SlotRange>, MapError> {
    let count = owners.len();
    if count == 0 {
        return Err(MapError::NoOwners);
    }
    if count > usize::from(SLOT_COUNT) {
        return Err(MapError::TooManyOwners { count });
    }
    let total = usize::from(SLOT_COUNT);
    // floor(i * total / count + 1/2), in integers: the slot nearest i/count of the way through,
    // rounding halves up. Both products stay below 2^29, far inside usize.
    let boundary = |i: usize| (2 * i * total + count) / (2 * count);
    let mut ranges = Vec::with_capacity(count);
    for (i, &owner) in owners.iter().enumerate() {
        // Each boundary is at least one slot past the one before, because count <= total.
        ranges.push(SlotRange {
            start: slot_at(boundary(i)),
            end: slot_at(boundary(i + 1) - 1),
            owner,
        });
    }
    Ok(ranges)
}

/// A map in which each range of `changes` has its new owner, with the epoch bumped. Changes apply
/// in order, so a later change wins over an earlier one for a slot both name. The nodes and hot
/// keys stay as they are; see [`reconfigure`] to change the nodes as well.
///
/// # Errors
///
/// [`MapError::RangeReversed`] for a reversed change, [`MapError::EpochOverflow`], or the first
/// invariant the new map breaks (typically [`MapError::UnknownOwner`]).
pub fn reassign(map: &ClusterMap, changes: &[SlotRange]) -> Result<ClusterMap, MapError> {
    reconfigure(map, map.nodes.clone(), changes)
}

/// A map with the node list `nodes` and each range of `changes` given its new owner, with the
/// epoch bumped: one step for a join (new node plus the slots it takes) or a leave (node gone
/// plus its slots handed over), so no intermediate map names a missing core. The hot keys are
/// kept, so a leaving node must first be dropped from every replica set.
///
/// # Errors
///
/// As for [`reassign`].
pub fn reconfigure(
    map: &ClusterMap,
    nodes: Vec<NodeInfo>,
    changes: &[SlotRange],
) -> Result<ClusterMap, MapError> {
    let epoch = map.epoch.next().ok_or(MapError::EpochOverflow)?;
    // Expand to one owner per slot, apply the changes, and cut the result back into ranges. This
    // costs 128 KiB for a moment on the control path and makes overlapping changes trivial.
    let mut owner_by_slot: Vec<Owner> = Vec::with_capacity(usize::from(SLOT_COUNT));
    for range in &map.slots {
        owner_by_slot.extend(std::iter::repeat_n(range.owner, range.slot_count()));
    }
    for change in changes {
        if change.start > change.end {
            return Err(MapError::RangeReversed {
                start: change.start,
                end: change.end,
            });
        }
        if let Some(slots) =
            owner_by_slot.get_mut(usize::from(change.start)..=usize::from(change.end))
        {
            slots.fill(change.owner);
        }
    }
    let mut slots = Vec::new();
    let mut start: usize = 0;
    for run in owner_by_slot.chunk_by(|a, b| a == b) {
        let Some(&owner) = run.first() else {
            continue;
        };
        let end = start + run.len() - 1;
        slots.push(SlotRange {
            start: slot_at(start),
            end: slot_at(end),
            owner,
        });
        start = end + 1;
    }
    ClusterMap::new(epoch, nodes, slots, map.hot_keys.clone())
}

/// The slots whose owner differs between `old` and `new`, as maximal ranges in ascending order,
/// each with its old and new owner.
///
/// This walks both range lists together, so it costs O(ranges of old + ranges of new).
#[must_use]
pub fn moved_slots(old: &ClusterMap, new: &ClusterMap) -> Vec<SlotMove> {
    let mut moves = Vec::new();
    let mut old_ranges = old.slots.iter().peekable();
    let mut new_ranges = new.slots.iter().peekable();
    // Both lists cover every slot in order, so the current range of each always contains the
    // first slot not yet compared, and their overlap runs to the nearer of the two ends.
    while let (Some(a), Some(b)) = (old_ranges.peek(), new_ranges.peek()) {
        let start = a.start.max(b.start);
        let end = a.end.min(b.end);
        if a.owner != b.owner {
            // Neighbouring overlaps never share both owners, because one of the two maps changes
            // range between them and its neighbouring ranges have different owners; so each
            // overlap is a maximal move by itself.
            moves.push(SlotMove {
                start,
                end,
                from: a.owner,
                to: b.owner,
            });
        }
        if a.end == end {
            old_ranges.next();
        }
        if b.end == end {
            new_ranges.next();
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn slot(index: u16) -> Slot {
        Slot::new(index).expect("test slots are in range")
    }

    fn owner(kn: u32, core: u16) -> Owner {
        Owner {
            kn: KnId(kn),
            core: CoreId(core),
        }
    }

    fn range(start: u16, end: u16, owner: Owner) -> SlotRange {
        SlotRange {
            start: slot(start),
            end: slot(end),
            owner,
        }
    }

    fn node(kn: u32, host: &str, cores: &[(u16, u16, u32)]) -> NodeInfo {
        NodeInfo {
            kn: KnId(kn),
            incarnation: Incarnation(u64::from(kn) << 8),
            host: host.to_owned(),
            cores: cores
                .iter()
                .map(|&(core, port, chain)| CoreInfo {
                    core: CoreId(core),
                    port,
                    chain: ChainId(chain),
                })
                .collect(),
        }
    }

    /// Two nodes of two cores, each core owning a quarter of the slots, and one hot key.
    fn two_node_map() -> ClusterMap {
        ClusterMap::new(
            Epoch(3),
            vec![
                node(1, "10.0.0.1", &[(0, 7000, 10), (1, 7001, 11)]),
                node(2, "10.0.0.2", &[(0, 7000, 20), (1, 7001, 21)]),
            ],
            vec![
                range(0, 4095, owner(1, 0)),
                range(4096, 8191, owner(1, 1)),
                range(8192, 12287, owner(2, 0)),
                range(12288, 16383, owner(2, 1)),
            ],
            vec![HotKey {
                key: b"hot".to_vec(),
                replicas: vec![owner(1, 0), owner(2, 1)],
            }],
        )
        .expect("the fixture is valid")
    }

    /// Runs `validate` on `two_node_map` after `change`, bypassing the normalising constructor.
    fn validate_after(change: impl FnOnce(&mut ClusterMap)) -> Result<(), MapError> {
        let mut map = two_node_map();
        change(&mut map);
        map.validate()
    }

    /// The owner of every slot, read range by range: the model the routing functions must match.
    fn owner_by_slot(map: &ClusterMap) -> Vec<Owner> {
        let mut owners = Vec::new();
        for range in map.slots() {
            for _ in usize::from(range.start)..=usize::from(range.end) {
                owners.push(range.owner);
            }
        }
        owners
    }

    #[test]
    fn single_node_splits_three_cores_like_redis_cluster() {
        let cores = [
            (CoreId(0), 7000, ChainId(0)),
            (CoreId(1), 7001, ChainId(1)),
            (CoreId(2), 7002, ChainId(2)),
        ];
        let map = ClusterMap::single_node(KnId(9), Incarnation(1), "127.0.0.1", &cores, Epoch(1))
            .unwrap();
        assert_eq!(
            map.slots(),
            [
                range(0, 5460, owner(9, 0)),
                range(5461, 10922, owner(9, 1)),
                range(10923, 16383, owner(9, 2)),
            ]
        );
        assert_eq!(map.epoch(), Epoch(1));
    }

    #[test]
    fn single_node_needs_a_core() {
        assert_eq!(
            ClusterMap::single_node(KnId(1), Incarnation(1), "h", &[], Epoch(0)),
            Err(MapError::NodeWithoutCores { kn: KnId(1) })
        );
    }

    #[test]
    fn split_evenly_needs_between_one_owner_and_one_per_slot() {
        assert_eq!(split_evenly(&[]), Err(MapError::NoOwners));
        let too_many = vec![owner(1, 0); usize::from(SLOT_COUNT) + 1];
        assert_eq!(
            split_evenly(&too_many),
            Err(MapError::TooManyOwners { count: 16385 })
        );
        let one_each: Vec<Owner> = (0..SLOT_COUNT).map(|core| owner(1, core)).collect();
        let ranges = split_evenly(&one_each).unwrap();
        assert!(ranges.iter().all(|r| r.slot_count() == 1));
    }

    #[test]
    fn owner_of_finds_the_range_at_its_edges() {
        let map = two_node_map();
        assert_eq!(owner_of(&map, slot(0)), Some(owner(1, 0)));
        assert_eq!(owner_of(&map, slot(4095)), Some(owner(1, 0)));
        assert_eq!(owner_of(&map, slot(4096)), Some(owner(1, 1)));
        assert_eq!(owner_of(&map, slot(12287)), Some(owner(2, 0)));
        assert_eq!(owner_of(&map, Slot::MAX), Some(owner(2, 1)));
        assert_eq!(slots_of(&map, owner(2, 0)), [(slot(8192), slot(12287))]);
        assert_eq!(slots_of(&map, owner(3, 0)), []);
    }

    #[test]
    fn lookups_by_owner_find_the_core_and_its_port() {
        let map = two_node_map();
        assert_eq!(map.core(owner(2, 1)).map(|core| core.port), Some(7001));
        assert_eq!(map.core(owner(2, 2)), None);
        assert_eq!(map.node(KnId(1)).map(|n| n.host.as_str()), Some("10.0.0.1"));
        assert_eq!(map.owners().count(), 4);
    }

    #[test]
    fn new_sorts_and_merges_touching_ranges_of_one_owner() {
        let map = ClusterMap::new(
            Epoch(0),
            vec![node(1, "h", &[(0, 1, 1), (1, 2, 2)])],
            vec![
                range(9000, 16383, owner(1, 0)),
                range(100, 8999, owner(1, 1)),
                range(0, 99, owner(1, 1)),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            map.slots(),
            [range(0, 8999, owner(1, 1)), range(9000, 16383, owner(1, 0))]
        );
    }

    #[test]
    fn same_port_on_different_hosts_is_allowed() {
        assert_eq!(two_node_map().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_too_many_nodes() {
        let nodes: Vec<NodeInfo> = (0..=256u32)
            .map(|kn| node(kn, "h", &[(0, 1000 + kn as u16, kn)]))
            .collect();
        assert_eq!(
            validate_after(|m| m.nodes = nodes),
            Err(MapError::TooManyNodes { count: 257 })
        );
    }

    #[test]
    fn validate_rejects_too_many_cores_in_the_cluster() {
        let nodes: Vec<NodeInfo> = (0..17u32)
            .map(|kn| {
                let cores: Vec<(u16, u16, u32)> = (0..256u16)
                    .map(|core| (core, core + 1, kn * 256 + u32::from(core)))
                    .collect();
                node(kn, &format!("host{kn}"), &cores)
            })
            .collect();
        assert_eq!(
            validate_after(|m| m.nodes = nodes),
            Err(MapError::TooManyCores { count: 17 * 256 })
        );
    }

    #[test]
    fn validate_rejects_too_many_cores_on_one_node() {
        let cores: Vec<(u16, u16, u32)> = (0..257u16)
            .map(|core| (core, core + 1, u32::from(core)))
            .collect();
        assert_eq!(
            validate_after(|m| m.nodes = vec![node(5, "h", &cores)]),
            Err(MapError::TooManyNodeCores {
                kn: KnId(5),
                count: 257
            })
        );
    }

    #[test]
    fn validate_rejects_a_node_without_cores() {
        assert_eq!(
            validate_after(|m| m.nodes[1].cores.clear()),
            Err(MapError::NodeWithoutCores { kn: KnId(2) })
        );
    }

    #[test]
    fn validate_rejects_an_empty_host() {
        assert_eq!(
            validate_after(|m| m.nodes[0].host.clear()),
            Err(MapError::HostEmpty { kn: KnId(1) })
        );
    }

    #[test]
    fn validate_rejects_a_host_over_the_limit() {
        assert_eq!(
            validate_after(|m| m.nodes[0].host = "a".repeat(HOST_BYTES_MAX + 1)),
            Err(MapError::HostTooLong {
                kn: KnId(1),
                bytes: HOST_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn validate_rejects_a_duplicate_node_id() {
        assert_eq!(
            validate_after(|m| m.nodes[1].kn = KnId(1)),
            Err(MapError::DuplicateKn { kn: KnId(1) })
        );
    }

    #[test]
    fn validate_rejects_a_duplicate_core_id() {
        assert_eq!(
            validate_after(|m| m.nodes[0].cores[1].core = CoreId(0)),
            Err(MapError::DuplicateCore { owner: owner(1, 0) })
        );
    }

    #[test]
    fn validate_rejects_port_zero() {
        assert_eq!(
            validate_after(|m| m.nodes[1].cores[0].port = 0),
            Err(MapError::PortZero { owner: owner(2, 0) })
        );
    }

    #[test]
    fn validate_rejects_a_duplicate_endpoint() {
        assert_eq!(
            validate_after(|m| m.nodes[0].cores[1].port = 7000),
            Err(MapError::DuplicatePort {
                host: "10.0.0.1".to_owned(),
                port: 7000
            })
        );
        // Two nodes on one host must use different ports.
        assert_eq!(
            validate_after(|m| m.nodes[1].host = "10.0.0.1".to_owned()),
            Err(MapError::DuplicatePort {
                host: "10.0.0.1".to_owned(),
                port: 7000
            })
        );
    }

    #[test]
    fn validate_rejects_a_duplicate_chain() {
        assert_eq!(
            validate_after(|m| m.nodes[1].cores[1].chain = ChainId(10)),
            Err(MapError::DuplicateChain { chain: ChainId(10) })
        );
    }

    #[test]
    fn validate_rejects_a_reversed_range() {
        assert_eq!(
            validate_after(|m| m.slots[1] = range(8191, 4096, owner(1, 1))),
            Err(MapError::RangeReversed {
                start: slot(8191),
                end: slot(4096)
            })
        );
    }

    #[test]
    fn validate_rejects_ranges_out_of_order() {
        assert_eq!(
            validate_after(|m| m.slots.swap(1, 2)),
            Err(MapError::RangesOutOfOrder { slot: slot(4096) })
        );
        assert_eq!(
            validate_after(|m| m.slots.swap(0, 3)),
            Err(MapError::RangesOutOfOrder { slot: slot(4096) })
        );
    }

    #[test]
    fn validate_rejects_an_unowned_slot() {
        assert_eq!(
            validate_after(|m| m.slots[1].start = slot(4100)),
            Err(MapError::SlotUnowned { slot: slot(4096) })
        );
        assert_eq!(
            validate_after(|m| m.slots[3].end = slot(16382)),
            Err(MapError::SlotUnowned { slot: Slot::MAX })
        );
        assert_eq!(
            validate_after(|m| m.slots.clear()),
            Err(MapError::SlotUnowned { slot: Slot::MIN })
        );
    }

    #[test]
    fn validate_rejects_a_slot_owned_twice() {
        assert_eq!(
            validate_after(|m| m.slots[2].start = slot(8000)),
            Err(MapError::SlotOwnedTwice { slot: slot(8000) })
        );
    }

    #[test]
    fn validate_rejects_touching_ranges_of_one_owner() {
        assert_eq!(
            validate_after(|m| m.slots[1].owner = owner(1, 0)),
            Err(MapError::RangesNotMerged { slot: slot(4096) })
        );
    }

    #[test]
    fn validate_rejects_an_unknown_owner() {
        assert_eq!(
            validate_after(|m| m.slots[2].owner = owner(2, 9)),
            Err(MapError::UnknownOwner { owner: owner(2, 9) })
        );
        assert_eq!(
            validate_after(|m| m.hot_keys[0].replicas[1] = owner(7, 0)),
            Err(MapError::UnknownOwner { owner: owner(7, 0) })
        );
    }

    #[test]
    fn validate_rejects_too_many_hot_keys() {
        let hot: Vec<HotKey> = (0..=HOT_KEY_COUNT_MAX)
            .map(|i| HotKey {
                key: i.to_le_bytes().to_vec(),
                replicas: vec![owner(1, 0)],
            })
            .collect();
        assert_eq!(
            validate_after(|m| m.hot_keys = hot),
            Err(MapError::TooManyHotKeys {
                count: HOT_KEY_COUNT_MAX + 1
            })
        );
    }

    #[test]
    fn validate_rejects_bad_hot_keys() {
        assert_eq!(
            validate_after(|m| m.hot_keys[0].key.clear()),
            Err(MapError::HotKeyEmpty)
        );
        assert_eq!(
            validate_after(|m| m.hot_keys[0].key = vec![b'k'; HOT_KEY_BYTES_MAX + 1]),
            Err(MapError::HotKeyTooLong {
                bytes: HOT_KEY_BYTES_MAX + 1
            })
        );
        assert_eq!(
            validate_after(|m| m.hot_keys.push(m.hot_keys[0].clone())),
            Err(MapError::DuplicateHotKey {
                key: b"hot".to_vec()
            })
        );
        assert_eq!(
            validate_after(|m| m.hot_keys[0].replicas.clear()),
            Err(MapError::HotKeyWithoutReplicas {
                key: b"hot".to_vec()
            })
        );
        assert_eq!(
            validate_after(|m| m.hot_keys[0].replicas = vec![owner(1, 0); 9]),
            Err(MapError::TooManyReplicas {
                key: b"hot".to_vec(),
                count: 9
            })
        );
        assert_eq!(
            validate_after(|m| m.hot_keys[0].replicas.push(owner(1, 0))),
            Err(MapError::DuplicateReplica {
                key: b"hot".to_vec(),
                owner: owner(1, 0)
            })
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let error = MapError::DuplicateReplica {
            key: b"h\x00t".to_vec(),
            owner: owner(1, 2),
        };
        assert_eq!(
            error.to_string(),
            "hot key \"h\\x00t\" lists kn 1 core 2 twice"
        );
        assert_eq!(
            MapError::TooManyNodes { count: 300 }.to_string(),
            "the map names 300 compute nodes, more than the limit of 256"
        );
    }

    #[test]
    fn reassign_bumps_the_epoch_and_moves_only_the_named_slots() {
        let map = two_node_map();
        let new = reassign(&map, &[range(4000, 4200, owner(2, 1))]).unwrap();
        assert_eq!(new.epoch(), Epoch(4));
        assert_eq!(
            new.slots(),
            [
                range(0, 3999, owner(1, 0)),
                range(4000, 4200, owner(2, 1)),
                range(4201, 8191, owner(1, 1)),
                range(8192, 12287, owner(2, 0)),
                range(12288, 16383, owner(2, 1)),
            ]
        );
        assert_eq!(new.nodes(), map.nodes());
        assert_eq!(new.hot_keys(), map.hot_keys());
        assert_eq!(
            moved_slots(&map, &new),
            [
                SlotMove {
                    start: slot(4000),
                    end: slot(4095),
                    from: owner(1, 0),
                    to: owner(2, 1)
                },
                SlotMove {
                    start: slot(4096),
                    end: slot(4200),
                    from: owner(1, 1),
                    to: owner(2, 1)
                },
            ]
        );
    }

    #[test]
    fn reassign_with_no_changes_only_bumps_the_epoch() {
        let map = two_node_map();
        let new = reassign(&map, &[]).unwrap();
        assert_eq!(new.epoch(), Epoch(4));
        assert_eq!(new.slots(), map.slots());
        assert_eq!(moved_slots(&map, &new), []);
    }

    #[test]
    fn reassign_rejects_bad_changes() {
        let map = two_node_map();
        assert_eq!(
            reassign(&map, &[range(0, 10, owner(3, 0))]),
            Err(MapError::UnknownOwner { owner: owner(3, 0) })
        );
        assert_eq!(
            reassign(&map, &[range(10, 0, owner(1, 0))]),
            Err(MapError::RangeReversed {
                start: slot(10),
                end: slot(0)
            })
        );
        let mut last = map.clone();
        last.epoch = Epoch(u32::MAX);
        assert_eq!(reassign(&last, &[]), Err(MapError::EpochOverflow));
    }

    #[test]
    fn reconfigure_joins_and_leaves_in_one_step() {
        let map = two_node_map();
        let mut nodes = map.nodes().to_vec();
        nodes.push(node(3, "10.0.0.3", &[(0, 7000, 30)]));
        let joined = reconfigure(&map, nodes, &[range(12288, 16383, owner(3, 0))]).unwrap();
        assert_eq!(owner_of(&joined, Slot::MAX), Some(owner(3, 0)));
        assert_eq!(joined.epoch(), Epoch(4));

        // Node 2 leaves: it must be dropped from the hot key's replicas first, and its slots must
        // move in the same step, or the map would name a missing core.
        let without_two: Vec<NodeInfo> = joined
            .nodes()
            .iter()
            .filter(|n| n.kn != KnId(2))
            .cloned()
            .collect();
        assert_eq!(
            reconfigure(
                &joined,
                without_two.clone(),
                &[range(8192, 12287, owner(3, 0))]
            ),
            Err(MapError::UnknownOwner { owner: owner(2, 1) })
        );
        let mut trimmed = joined.clone();
        trimmed.hot_keys[0].replicas.retain(|r| r.kn != KnId(2));
        assert_eq!(
            reconfigure(&trimmed, without_two.clone(), &[]),
            Err(MapError::UnknownOwner { owner: owner(2, 0) })
        );
        let left = reconfigure(&trimmed, without_two, &[range(8192, 12287, owner(3, 0))]).unwrap();
        assert_eq!(left.nodes().len(), 2);
        assert_eq!(slots_of(&left, owner(3, 0)), [(slot(8192), Slot::MAX)]);
    }

    /// Single-node maps of `n` cores with arbitrary distinct core ids.
    fn single_node_cores() -> impl Strategy<Value = Vec<(CoreId, u16, ChainId)>> {
        (1usize..=64)
            .prop_flat_map(|n| proptest::collection::btree_set(any::<u16>(), n))
            .prop_map(|ids| {
                (0u16..)
                    .zip(ids)
                    .map(|(i, id)| (CoreId(id), 7000 + i, ChainId(u32::from(i))))
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn single_node_gives_each_core_one_balanced_contiguous_range(cores in single_node_cores()) {
            let map = ClusterMap::single_node(KnId(1), Incarnation(1), "h", &cores, Epoch(0)).unwrap();
            prop_assert_eq!(map.validate(), Ok(()));
            let mut owners_per_slot = vec![0usize; usize::from(SLOT_COUNT)];
            let mut sizes = Vec::new();
            let mut next_start = 0usize;
            for &(core, _, _) in &cores {
                let ranges = slots_of(&map, Owner { kn: KnId(1), core });
                // One range per core, in the order the cores were given.
                prop_assert_eq!(ranges.len(), 1);
                let (start, end) = ranges[0];
                prop_assert_eq!(usize::from(start), next_start);
                next_start = usize::from(end) + 1;
                sizes.push(usize::from(end) - usize::from(start) + 1);
                for count in &mut owners_per_slot[usize::from(start)..=usize::from(end)] {
                    *count += 1;
                }
            }
            prop_assert!(owners_per_slot.iter().all(|&count| count == 1));
            let smallest = sizes.iter().min().copied().unwrap_or(0);
            let largest = sizes.iter().max().copied().unwrap_or(0);
            prop_assert!(largest - smallest <= 1, "sizes {smallest}..={largest}");
        }

        #[test]
        fn owner_of_agrees_with_slots_of(map in strategies::cluster_map()) {
            let mut covered = vec![None; usize::from(SLOT_COUNT)];
            for owner in map.owners() {
                for (start, end) in slots_of(&map, owner) {
                    for cell in &mut covered[usize::from(start)..=usize::from(end)] {
                        prop_assert_eq!(*cell, None, "a slot of {}..={} is listed twice", start, end);
                        *cell = Some(owner);
                    }
                }
            }
            for slot in Slot::all() {
                prop_assert_eq!(owner_of(&map, slot), covered[usize::from(slot)]);
                prop_assert!(covered[usize::from(slot)].is_some());
            }
        }

        #[test]
        fn moved_slots_are_exactly_the_slots_whose_owner_differs(
            (old, new) in strategies::map_pair()
        ) {
            let before = owner_by_slot(&old);
            let after = owner_by_slot(&new);
            let mut expected = Vec::new();
            for index in 0..usize::from(SLOT_COUNT) {
                if before[index] != after[index] {
                    expected.push((index, before[index], after[index]));
                }
            }
            let moves = moved_slots(&old, &new);
            let mut actual = Vec::new();
            for m in &moves {
                for index in usize::from(m.start)..=usize::from(m.end) {
                    actual.push((index, m.from, m.to));
                }
            }
            prop_assert_eq!(actual, expected);
            // Moves are maximal: touching moves never share both owners.
            for pair in moves.windows(2) {
                let touching = usize::from(pair[0].end) + 1 == usize::from(pair[1].start);
                prop_assert!(
                    !(touching && pair[0].from == pair[1].from && pair[0].to == pair[1].to)
                );
            }
        }

        #[test]
        fn reassign_matches_a_per_slot_model(
            map in strategies::cluster_map(),
            raw in vec((0..SLOT_COUNT, 0..SLOT_COUNT, any::<Index>()), 0..6),
        ) {
            prop_assume!(map.epoch() < Epoch(u32::MAX));
            let owners: Vec<Owner> = map.owners().collect();
            let changes: Vec<SlotRange> = raw
                .iter()
                .map(|&(a, b, pick)| range(a.min(b), a.max(b), owners[pick.index(owners.len())]))
                .collect();
            let mut model = owner_by_slot(&map);
            for change in &changes {
                model[usize::from(change.start)..=usize::from(change.end)].fill(change.owner);
            }
            let new = reassign(&map, &changes).unwrap();
            prop_assert_eq!(new.epoch(), Epoch(map.epoch().0 + 1));
            prop_assert_eq!(owner_by_slot(&new), model);
            prop_assert_eq!(new.validate(), Ok(()));
        }
    }
}
