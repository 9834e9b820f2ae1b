//! The dinomo control plane: key slots, the versioned cluster map, membership and the policies that
//! move ownership between compute nodes without moving data.
//!
//! - [`types`]: newtypes for slots, node and core ids, epochs and log chains.
//! - [`constants`]: the named limits on every count and length in a map.
//! - [`slots`]: the key-to-slot function, CRC16 with hash tags as in Redis Cluster.
//! - [`map`]: the cluster map, its invariants, routing and reassignment.
//! - [`codec`]: the versioned binary encoding in which the map is stored in the memory pool.
//! - [`plan`]: which slots move so that a set of owners holds every slot evenly, fewest first.

#![forbid(unsafe_code)]

pub mod codec;
pub mod constants;
pub mod map;
pub mod plan;
pub mod slots;
pub mod types;

#[cfg(test)]
mod strategies;

pub use codec::{decode, encode};
pub use map::{
    ClusterMap, CoreInfo, HotKey, MapError, NodeInfo, Owner, SlotMove, SlotRange, moved_slots,
    owner_of, reassign, reconfigure, slots_of, split_evenly,
};
pub use plan::balance;
pub use slots::{crc16, slot_of};
pub use types::{ChainId, CoreId, Epoch, Incarnation, KnId, SLOT_COUNT, Slot};
