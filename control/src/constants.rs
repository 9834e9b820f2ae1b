//! Named limits of the control plane, in one place.
//!
//! Every count and length in a cluster map is bounded here. [`crate::map::ClusterMap::validate`]
//! enforces the limits, so a map that validates always encodes within
//! [`MAP_ENCODED_BYTES_MAX`], and [`crate::codec::decode`] checks each count against its limit
//! before it allocates anything. The `const` assertions below (and those in the codec on the
//! encoded sizes) fail the build if the limits stop agreeing with each other.

use crate::types::SLOT_COUNT;

/// Most compute nodes a cluster map may name.
pub const NODE_COUNT_MAX: usize = 256;

/// Most worker cores one compute node may run.
pub const NODE_CORE_COUNT_MAX: usize = 256;

/// Most worker cores in the whole cluster.
pub const CORE_COUNT_MAX: usize = 4096;

/// Longest host name or address of a compute node, in bytes (a DNS name has at most 253).
pub const HOST_BYTES_MAX: usize = 255;

/// Most slot ranges a map may hold: one per slot, when no two neighbouring slots share an owner.
pub const SLOT_RANGE_COUNT_MAX: usize = SLOT_COUNT as usize;

/// Most selectively replicated keys a map may hold.
pub const HOT_KEY_COUNT_MAX: usize = 256;

/// Longest selectively replicated key, in bytes.
pub const HOT_KEY_BYTES_MAX: usize = 512;

/// Most worker cores in one hot key's replica set.
pub const HOT_KEY_REPLICA_COUNT_MAX: usize = 8;

/// Most handovers in progress a map may record.
pub const PENDING_MOVES_MAX: usize = 4096;

/// Largest encoding of a cluster map, in bytes; the pool area that stores the map must hold this.
pub const MAP_ENCODED_BYTES_MAX: usize = 512 * 1024;

// A node that runs the most cores must fit in a cluster, and the cluster limit must be reachable.
const _: () = assert!(NODE_CORE_COUNT_MAX <= CORE_COUNT_MAX);
const _: () = assert!(CORE_COUNT_MAX <= NODE_COUNT_MAX * NODE_CORE_COUNT_MAX);

// An even split must be able to give every core of the largest cluster at least one slot.
const _: () = assert!(CORE_COUNT_MAX <= SLOT_COUNT as usize);

// A replica set names distinct cores, so it can never be larger than the cluster.
const _: () = assert!(HOT_KEY_REPLICA_COUNT_MAX <= CORE_COUNT_MAX);
const _: () = assert!(HOT_KEY_REPLICA_COUNT_MAX >= 1);
