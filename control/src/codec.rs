//! The binary encoding of a [`ClusterMap`], as it is stored in the memory pool.
//!
//! The pool area that holds the map has its own length and checksum, so this format has neither
//! a checksum nor padding; it only has to be compact, versioned and safe to read back from any
//! bytes at all. Every integer is little-endian, and no field is aligned.
//!
//! # Layout, format version 2
//!
//! Header, 28 bytes:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic, the ASCII bytes `DNCM` |
//! | 4 | 2 | format version, 2 (version 1 is still read, see below) |
//! | 6 | 2 | flags, reserved, 0 |
//! | 8 | 8 | epoch (an [`Epoch`]: below 2^32) |
//! | 16 | 4 | length of the whole encoding in bytes, header included |
//! | 20 | 2 | node count `N` (at most [`NODE_COUNT_MAX`]) |
//! | 22 | 2 | slot range count `R` (at most [`SLOT_RANGE_COUNT_MAX`]) |
//! | 24 | 2 | hot key count `H` (at most [`HOT_KEY_COUNT_MAX`]) |
//! | 26 | 2 | pending handover count `P` (at most [`PENDING_MOVES_MAX`]; reserved, 0, in version 1) |
//!
//! Then `N` node records, then `R` slot range records, then `H` hot key records, then `P`
//! pending handover records, and nothing after them.
//!
//! Node record, `16 + L + 8 × C` bytes:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 4 | node id (`KnId`) |
//! | 4 | 2 | host length `L` in bytes (1 to [`HOST_BYTES_MAX`]) |
//! | 6 | 2 | core count `C` (1 to [`NODE_CORE_COUNT_MAX`]) |
//! | 8 | 8 | incarnation (`Incarnation`; 0 = none) |
//! | 16 | `L` | host, UTF-8 |
//! | 16 + `L` | 8 × `C` | core records: core id (2), client port (2), log chain id (4) |
//!
//! Slot range record, 10 bytes, in ascending slot order:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 2 | first slot |
//! | 2 | 2 | last slot, inclusive |
//! | 4 | 4 | owner node id |
//! | 8 | 2 | owner core id |
//!
//! Hot key record, `4 + K + 6 × P` bytes:
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 2 | key length `K` (1 to [`HOT_KEY_BYTES_MAX`]) |
//! | 2 | 2 | replica count `P` (1 to [`HOT_KEY_REPLICA_COUNT_MAX`]) |
//! | 4 | `K` | key |
//! | 4 + `K` | 6 × `P` | replicas: node id (4), core id (2) |
//!
//! Pending handover record, 16 bytes, in ascending slot order: first slot (2), last slot (2),
//! the releasing owner (node id 4, core id 2), the receiving owner (node id 4, core id 2).
//!
//! Format version 1 is version 2 without the incarnation field (node records of `8 + L + 8 × C`
//! bytes). Pools whose map was stored by a version-1 writer are read as maps whose nodes have
//! no incarnation ([`Incarnation::NONE`], never live), and the next map stored is version 2.
//!
//! # Invariants
//!
//! [`encode`] writes only valid maps, and [`decode`] accepts only bytes that decode to a map that
//! passes [`ClusterMap::validate`], with every reserved field zero and no byte left over. Ranges
//! are stored sorted and merged, so each valid map has exactly one encoding and
//! `encode(&decode(bytes)?) == bytes` whenever `decode` succeeds on a version-2 encoding. `decode` never panics; it
//! refuses inputs longer than [`MAP_ENCODED_BYTES_MAX`] up front and checks every count against
//! its limit and against the bytes that remain before it allocates for it.

use crate::constants::{
    CORE_COUNT_MAX, HOST_BYTES_MAX, HOT_KEY_BYTES_MAX, HOT_KEY_COUNT_MAX,
    HOT_KEY_REPLICA_COUNT_MAX, MAP_ENCODED_BYTES_MAX, NODE_CORE_COUNT_MAX, NODE_COUNT_MAX,
    PENDING_MOVES_MAX, SLOT_RANGE_COUNT_MAX,
};
use crate::map::{ClusterMap, CoreInfo, HotKey, MapError, NodeInfo, Owner, SlotMove, SlotRange};
use crate::types::{ChainId, CoreId, Epoch, Incarnation, KnId, Slot};

/// The first four bytes of every encoded map.
pub const MAGIC: [u8; 4] = *b"DNCM";

/// The format version this code writes.
pub const FORMAT_VERSION: u16 = 2;
/// The older format version this code still reads: node records without an incarnation.
pub const FORMAT_VERSION_V1: u16 = 1;

/// Size of the header, which holds the length of the whole encoding.
pub const HEADER_BYTES: usize = 28;

/// Offset of the flags field in the header.
const FLAGS_OFFSET: usize = 6;
/// Offset of the pending handover count (a reserved field in version 1).
const HEADER_PENDING_OFFSET: usize = 26;

/// Fixed part of a node record, before the host.
const NODE_RECORD_BYTES: usize = 16;
/// Fixed part of a version-1 node record.
const NODE_RECORD_BYTES_V1: usize = 8;
/// One core inside a node record.
const CORE_RECORD_BYTES: usize = 8;
/// One slot range record.
const RANGE_RECORD_BYTES: usize = 10;
/// Fixed part of a hot key record, before the key.
const HOT_KEY_RECORD_BYTES: usize = 4;
/// One replica inside a hot key record.
const REPLICA_RECORD_BYTES: usize = 6;
/// One pending handover record.
const PENDING_RECORD_BYTES: usize = 16;

/// The longest encoding a valid map can have: every count and length at its limit.
const ENCODED_BYTES_WORST_CASE: usize = HEADER_BYTES
    + NODE_COUNT_MAX * (NODE_RECORD_BYTES + HOST_BYTES_MAX)
    + CORE_COUNT_MAX * CORE_RECORD_BYTES
    + SLOT_RANGE_COUNT_MAX * RANGE_RECORD_BYTES
    + HOT_KEY_COUNT_MAX
        * (HOT_KEY_RECORD_BYTES
            + HOT_KEY_BYTES_MAX
            + HOT_KEY_REPLICA_COUNT_MAX * REPLICA_RECORD_BYTES)
    + PENDING_MOVES_MAX * PENDING_RECORD_BYTES;

// Every valid map must fit the limit, and the limit must fit the header's length field.
const _: () = assert!(ENCODED_BYTES_WORST_CASE <= MAP_ENCODED_BYTES_MAX);
const _: () = assert!(MAP_ENCODED_BYTES_MAX <= u32::MAX as usize);

// Counts and lengths are stored in 16 bits, so every limit on them must fit.
const _: () = assert!(NODE_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(SLOT_RANGE_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(HOT_KEY_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(HOST_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(NODE_CORE_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(HOT_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(HOT_KEY_REPLICA_COUNT_MAX <= u16::MAX as usize);
const _: () = assert!(PENDING_MOVES_MAX <= u16::MAX as usize);

/// The number of bytes [`encode`] writes for `map`.
#[must_use]
pub fn encoded_len(map: &ClusterMap) -> usize {
    let nodes: usize = map
        .nodes()
        .iter()
        .map(|node| NODE_RECORD_BYTES + node.host.len() + node.cores.len() * CORE_RECORD_BYTES)
        .sum();
    let hot_keys: usize = map
        .hot_keys()
        .iter()
        .map(|hot| HOT_KEY_RECORD_BYTES + hot.key.len() + hot.replicas.len() * REPLICA_RECORD_BYTES)
        .sum();
    HEADER_BYTES
        + nodes
        + map.slots().len() * RANGE_RECORD_BYTES
        + hot_keys
        + map.pending().len() * PENDING_RECORD_BYTES
}

/// The encoding of `map`, at most [`MAP_ENCODED_BYTES_MAX`] bytes long.
#[must_use]
pub fn encode(map: &ClusterMap) -> Vec<u8> {
    // Pair assertion with the check in `decode`: a map is valid on the way in as well as out.
    debug_assert_eq!(map.validate(), Ok(()));
    let total = encoded_len(map);
    let mut out = Vec::with_capacity(total);

    out.extend_from_slice(&MAGIC);
    put_u16(&mut out, FORMAT_VERSION);
    put_u16(&mut out, 0);
    put_u64(&mut out, u64::from(map.epoch().0));
    put_u32(&mut out, fit_u32(total));
    put_u16(&mut out, fit_u16(map.nodes().len()));
    put_u16(&mut out, fit_u16(map.slots().len()));
    put_u16(&mut out, fit_u16(map.hot_keys().len()));
    put_u16(&mut out, fit_u16(map.pending().len()));

    for node in map.nodes() {
        put_u32(&mut out, node.kn.0);
        put_u16(&mut out, fit_u16(node.host.len()));
        put_u16(&mut out, fit_u16(node.cores.len()));
        put_u64(&mut out, node.incarnation.0);
        out.extend_from_slice(node.host.as_bytes());
        for core in &node.cores {
            put_u16(&mut out, core.core.0);
            put_u16(&mut out, core.port);
            put_u32(&mut out, core.chain.0);
        }
    }
    for range in map.slots() {
        put_u16(&mut out, range.start.get());
        put_u16(&mut out, range.end.get());
        put_owner(&mut out, range.owner);
    }
    for hot in map.hot_keys() {
        put_u16(&mut out, fit_u16(hot.key.len()));
        put_u16(&mut out, fit_u16(hot.replicas.len()));
        out.extend_from_slice(&hot.key);
        for &replica in &hot.replicas {
            put_owner(&mut out, replica);
        }
    }
    for m in map.pending() {
        put_u16(&mut out, m.start.get());
        put_u16(&mut out, m.end.get());
        put_owner(&mut out, m.from);
        put_owner(&mut out, m.to);
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// The length of the whole encoding that starts with `bytes`, read from its first
/// [`HEADER_BYTES`] bytes, so that a reader of the pool area knows how much more to fetch.
///
/// # Errors
///
/// [`MapError::Truncated`] for fewer than [`HEADER_BYTES`] bytes, the header errors [`decode`]
/// reports, [`MapError::TooLarge`] for a length over [`MAP_ENCODED_BYTES_MAX`], and
/// [`MapError::LengthMismatch`] for a length shorter than the header itself.
pub fn peek_encoded_len(bytes: &[u8]) -> Result<usize, MapError> {
    let header = read_header(&mut Reader::new(bytes))?;
    let total = usize::try_from(header.total_bytes).unwrap_or(usize::MAX);
    if total > MAP_ENCODED_BYTES_MAX {
        return Err(MapError::TooLarge { bytes: total });
    }
    if total < HEADER_BYTES {
        return Err(MapError::LengthMismatch {
            header: header.total_bytes,
            actual: bytes.len(),
        });
    }
    Ok(total)
}

/// The map `bytes` encode.
///
/// # Errors
///
/// [`MapError::TooLarge`], a header error ([`MapError::BadMagic`],
/// [`MapError::UnsupportedVersion`], [`MapError::ReservedNotZero`], [`MapError::LengthMismatch`]),
/// [`MapError::Truncated`] or [`MapError::TrailingBytes`] when the records disagree with the
/// length, a count or length over its limit, [`MapError::SlotOutOfRange`],
/// [`MapError::HostNotUtf8`], or the first invariant the decoded map breaks.
pub fn decode(bytes: &[u8]) -> Result<ClusterMap, MapError> {
    if bytes.len() > MAP_ENCODED_BYTES_MAX {
        return Err(MapError::TooLarge { bytes: bytes.len() });
    }
    let mut reader = Reader::new(bytes);
    let header = read_header(&mut reader)?;
    if usize::try_from(header.total_bytes).ok() != Some(bytes.len()) {
        return Err(MapError::LengthMismatch {
            header: header.total_bytes,
            actual: bytes.len(),
        });
    }

    let node_count = usize::from(header.node_count);
    if node_count > NODE_COUNT_MAX {
        return Err(MapError::TooManyNodes { count: node_count });
    }
    let range_count = usize::from(header.range_count);
    if range_count > SLOT_RANGE_COUNT_MAX {
        return Err(MapError::TooManyRanges { count: range_count });
    }
    let hot_key_count = usize::from(header.hot_key_count);
    if hot_key_count > HOT_KEY_COUNT_MAX {
        return Err(MapError::TooManyHotKeys {
            count: hot_key_count,
        });
    }

    let mut nodes = Vec::with_capacity(reader.capacity_for(node_count, NODE_RECORD_BYTES_V1));
    let mut core_count_total: usize = 0;
    for _ in 0..node_count {
        let node = read_node(&mut reader, header.version, &mut core_count_total)?;
        nodes.push(node);
    }

    let mut slots = Vec::with_capacity(reader.capacity_for(range_count, RANGE_RECORD_BYTES));
    for _ in 0..range_count {
        let start = read_slot(&mut reader)?;
        let end = read_slot(&mut reader)?;
        let owner = read_owner(&mut reader)?;
        slots.push(SlotRange { start, end, owner });
    }

    let mut hot_keys = Vec::with_capacity(reader.capacity_for(hot_key_count, HOT_KEY_RECORD_BYTES));
    for _ in 0..hot_key_count {
        hot_keys.push(read_hot_key(&mut reader)?);
    }

    let pending_count = usize::from(header.pending_count);
    if pending_count > PENDING_MOVES_MAX {
        return Err(MapError::TooManyPending {
            count: pending_count,
        });
    }
    let mut pending = Vec::with_capacity(reader.capacity_for(pending_count, PENDING_RECORD_BYTES));
    for _ in 0..pending_count {
        let start = read_slot(&mut reader)?;
        let end = read_slot(&mut reader)?;
        let from = read_owner(&mut reader)?;
        let to = read_owner(&mut reader)?;
        pending.push(SlotMove {
            start,
            end,
            from,
            to,
        });
    }
    if pending.windows(2).any(|w| w[1].start < w[0].start) {
        return Err(MapError::PendingOverlap {
            slot: pending.iter().map(|m| m.start).min().unwrap_or(Slot::MIN),
        });
    }

    if reader.remaining() != 0 {
        return Err(MapError::TrailingBytes {
            offset: reader.offset,
        });
    }
    ClusterMap::from_canonical_parts(header.epoch, nodes, slots, hot_keys, pending)
}

/// The fixed fields of the header.
struct Header {
    version: u16,
    epoch: Epoch,
    total_bytes: u32,
    node_count: u16,
    range_count: u16,
    hot_key_count: u16,
    pending_count: u16,
}

fn read_header(reader: &mut Reader<'_>) -> Result<Header, MapError> {
    let magic = reader.array::<4>()?;
    if magic != MAGIC {
        return Err(MapError::BadMagic { found: magic });
    }
    let version = reader.u16()?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_V1 {
        return Err(MapError::UnsupportedVersion { version });
    }
    if reader.u16()? != 0 {
        return Err(MapError::ReservedNotZero {
            offset: FLAGS_OFFSET,
        });
    }
    let epoch_offset = reader.offset;
    let epoch = reader.u64()?;
    let epoch = u32::try_from(epoch)
        .map(Epoch)
        .map_err(|_| MapError::EpochOutOfRange {
            offset: epoch_offset,
            value: epoch,
        })?;
    let total_bytes = reader.u32()?;
    let node_count = reader.u16()?;
    let range_count = reader.u16()?;
    let hot_key_count = reader.u16()?;
    let pending_count = reader.u16()?;
    if version == FORMAT_VERSION_V1 && pending_count != 0 {
        return Err(MapError::ReservedNotZero {
            offset: HEADER_PENDING_OFFSET,
        });
    }
    debug_assert_eq!(reader.offset, HEADER_BYTES);
    Ok(Header {
        version,
        epoch,
        total_bytes,
        node_count,
        range_count,
        hot_key_count,
        pending_count,
    })
}

/// Reads one node record, adding its cores to `core_count_total` so the cluster-wide limit is
/// enforced before the cores are stored.
fn read_node(
    reader: &mut Reader<'_>,
    version: u16,
    core_count_total: &mut usize,
) -> Result<NodeInfo, MapError> {
    let kn = KnId(reader.u32()?);
    let host_len = usize::from(reader.u16()?);
    let core_count = usize::from(reader.u16()?);
    let incarnation = if version == FORMAT_VERSION_V1 {
        Incarnation::NONE
    } else {
        Incarnation(reader.u64()?)
    };
    if host_len > HOST_BYTES_MAX {
        return Err(MapError::HostTooLong {
            kn,
            bytes: host_len,
        });
    }
    if core_count > NODE_CORE_COUNT_MAX {
        return Err(MapError::TooManyNodeCores {
            kn,
            count: core_count,
        });
    }
    *core_count_total += core_count;
    if *core_count_total > CORE_COUNT_MAX {
        return Err(MapError::TooManyCores {
            count: *core_count_total,
        });
    }
    let host = std::str::from_utf8(reader.take(host_len)?)
        .map_err(|_| MapError::HostNotUtf8 { kn })?
        .to_owned();
    let mut cores = Vec::with_capacity(reader.capacity_for(core_count, CORE_RECORD_BYTES));
    for _ in 0..core_count {
        let core = CoreId(reader.u16()?);
        let port = reader.u16()?;
        let chain = ChainId(reader.u32()?);
        cores.push(CoreInfo { core, port, chain });
    }
    Ok(NodeInfo {
        kn,
        incarnation,
        host,
        cores,
    })
}

fn read_hot_key(reader: &mut Reader<'_>) -> Result<HotKey, MapError> {
    let key_len = usize::from(reader.u16()?);
    let replica_count = usize::from(reader.u16()?);
    if key_len > HOT_KEY_BYTES_MAX {
        return Err(MapError::HotKeyTooLong { bytes: key_len });
    }
    let key = reader.take(key_len)?.to_vec();
    if replica_count > HOT_KEY_REPLICA_COUNT_MAX {
        return Err(MapError::TooManyReplicas {
            key,
            count: replica_count,
        });
    }
    let mut replicas = Vec::with_capacity(reader.capacity_for(replica_count, REPLICA_RECORD_BYTES));
    for _ in 0..replica_count {
        replicas.push(read_owner(reader)?);
    }
    Ok(HotKey { key, replicas })
}

fn read_slot(reader: &mut Reader<'_>) -> Result<Slot, MapError> {
    let offset = reader.offset;
    let value = reader.u16()?;
    Slot::new(value).ok_or(MapError::SlotOutOfRange { offset, value })
}

fn read_owner(reader: &mut Reader<'_>) -> Result<Owner, MapError> {
    let kn = KnId(reader.u32()?);
    let core = CoreId(reader.u16()?);
    Ok(Owner { kn, core })
}

/// A cursor over untrusted bytes whose reads fail, rather than panic, past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    /// How many of `count` records of at least `record_bytes` bytes could still follow, so a
    /// count that the bytes cannot back is never allocated for.
    fn capacity_for(&self, count: usize, record_bytes: usize) -> usize {
        count.min(self.remaining() / record_bytes)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], MapError> {
        let truncated = MapError::Truncated {
            offset: self.offset,
        };
        let end = self.offset.checked_add(len).ok_or(truncated.clone())?;
        let field = self.bytes.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MapError> {
        let field = self.take(N)?;
        field.try_into().map_err(|_| MapError::Truncated {
            offset: self.offset,
        })
    }

    fn u16(&mut self) -> Result<u16, MapError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, MapError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, MapError> {
        self.array().map(u64::from_le_bytes)
    }
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_owner(out: &mut Vec<u8>, owner: Owner) {
    put_u32(out, owner.kn.0);
    put_u16(out, owner.core.0);
}

/// A count or length of a valid map as a 16-bit field. The limits in `constants` all fit (see
/// the assertions above), so this fails only if a map skipped validation, which the private
/// fields of `ClusterMap` rule out.
fn fit_u16(value: usize) -> u16 {
    u16::try_from(value).expect("a valid map's counts and lengths fit in 16 bits")
}

/// The length of a valid map's encoding as the header's 32-bit field; see [`fit_u16`].
fn fit_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a valid map's encoding fits in 32 bits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// One node, kn 7 (incarnation 0x0102) on host "h", with cores 0 and 1 splitting the slots
    /// in half, at epoch 5.
    fn small_map() -> ClusterMap {
        ClusterMap::single_node(
            KnId(7),
            Incarnation(0x0102),
            "h",
            &[(CoreId(0), 7000, ChainId(1)), (CoreId(1), 7001, ChainId(2))],
            Epoch(5),
        )
        .expect("the fixture is valid")
    }

    /// `small_map` encoded by hand from the layout in the module documentation.
    const SMALL_MAP_BYTES: [u8; 81] = [
        b'D', b'N', b'C', b'M', // magic
        2, 0, // format version
        0, 0, // flags
        5, 0, 0, 0, 0, 0, 0, 0, // epoch
        81, 0, 0, 0, // total length
        1, 0, // node count
        2, 0, // slot range count
        0, 0, // hot key count
        0, 0, // reserved
        7, 0, 0, 0, // node: kn
        1, 0, // host length
        2, 0, // core count
        2, 1, 0, 0, 0, 0, 0, 0,    // incarnation
        b'h', // host
        0, 0, 0x58, 0x1B, 1, 0, 0, 0, // core 0, port 7000, chain 1
        1, 0, 0x59, 0x1B, 2, 0, 0, 0, // core 1, port 7001, chain 2
        0x00, 0x00, 0xFF, 0x1F, 7, 0, 0, 0, 0, 0, // slots 0..=8191 to kn 7 core 0
        0x00, 0x20, 0xFF, 0x3F, 7, 0, 0, 0, 1, 0, // slots 8192..=16383 to kn 7 core 1
    ];

    /// `small_map` as a version-1 writer stored it: no incarnation in the node record.
    const SMALL_MAP_BYTES_V1: [u8; 73] = [
        b'D', b'N', b'C', b'M', 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 73, 0, 0, 0, 1, 0, 2, 0, 0, 0,
        0, 0, 7, 0, 0, 0, 1, 0, 2, 0, b'h', 0, 0, 0x58, 0x1B, 1, 0, 0, 0, 1, 0, 0x59, 0x1B, 2, 0,
        0, 0, 0x00, 0x00, 0xFF, 0x1F, 7, 0, 0, 0, 0, 0, 0x00, 0x20, 0xFF, 0x3F, 7, 0, 0, 0, 1, 0,
    ];

    /// Offset of the second range's owner core id in `SMALL_MAP_BYTES`.
    const SECOND_RANGE_CORE_OFFSET: usize = 79;

    fn patched(offset: usize, bytes: &[u8]) -> Vec<u8> {
        let mut out = SMALL_MAP_BYTES.to_vec();
        out[offset..offset + bytes.len()].copy_from_slice(bytes);
        out
    }

    /// A map with every kind of record: two nodes, several ranges and two hot keys.
    fn full_map() -> ClusterMap {
        let owner = |kn, core| Owner {
            kn: KnId(kn),
            core: CoreId(core),
        };
        let range = |start, end, owner| SlotRange {
            start: Slot::new(start).unwrap(),
            end: Slot::new(end).unwrap(),
            owner,
        };
        ClusterMap::new(
            Epoch(u32::MAX - 1),
            vec![
                NodeInfo {
                    kn: KnId(u32::MAX),
                    incarnation: Incarnation(u64::MAX),
                    host: "kn-ä.example".to_owned(),
                    cores: vec![CoreInfo {
                        core: CoreId(u16::MAX),
                        port: u16::MAX,
                        chain: ChainId(u32::MAX),
                    }],
                },
                NodeInfo {
                    kn: KnId(0),
                    incarnation: Incarnation::NONE,
                    host: "127.0.0.1".to_owned(),
                    cores: vec![
                        CoreInfo {
                            core: CoreId(0),
                            port: 1,
                            chain: ChainId(0),
                        },
                        CoreInfo {
                            core: CoreId(3),
                            port: 2,
                            chain: ChainId(3),
                        },
                    ],
                },
            ],
            vec![
                range(0, 0, owner(0, 3)),
                range(1, 100, owner(u32::MAX, u16::MAX)),
                range(101, 16383, owner(0, 0)),
            ],
            vec![
                HotKey {
                    key: b"{user}:1".to_vec(),
                    replicas: vec![owner(0, 3), owner(u32::MAX, u16::MAX)],
                },
                HotKey {
                    key: vec![0, 255],
                    replicas: vec![owner(0, 0)],
                },
            ],
        )
        .expect("the fixture is valid")
    }

    #[test]
    fn encode_writes_the_documented_layout() {
        let map = small_map();
        assert_eq!(encode(&map), SMALL_MAP_BYTES);
        assert_eq!(encoded_len(&map), SMALL_MAP_BYTES.len());
        assert_eq!(decode(&SMALL_MAP_BYTES), Ok(map));
    }

    #[test]
    fn a_version_one_map_reads_without_incarnations() {
        let mut expected = small_map();
        expected = ClusterMap::new(
            expected.epoch(),
            expected
                .nodes()
                .iter()
                .map(|node| NodeInfo {
                    incarnation: Incarnation::NONE,
                    ..node.clone()
                })
                .collect(),
            expected.slots().to_vec(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(decode(&SMALL_MAP_BYTES_V1), Ok(expected.clone()));
        // It is stored again in the current format.
        assert_eq!(encode(&expected)[4], 2);
    }

    #[test]
    fn pending_handovers_round_trip_and_are_validated() {
        let map = small_map();
        let (a, b) = (map.slots()[0].owner, map.slots()[1].owner);
        let moving = SlotMove {
            start: Slot::new(9000).unwrap(),
            end: Slot::new(9999).unwrap(),
            from: a,
            to: b,
        };
        let with = map.clone().with_pending(vec![moving]).unwrap();
        let bytes = encode(&with);
        assert_eq!(bytes.len(), SMALL_MAP_BYTES.len() + 16);
        assert_eq!(decode(&bytes), Ok(with.clone()));
        assert_eq!(with.pending_at(Slot::new(9500).unwrap()), Some(&moving));
        assert_eq!(with.pending_at(Slot::new(8999).unwrap()), None);
        // The slots must belong to the destination, and a move goes somewhere else.
        let wrong = SlotMove {
            from: b,
            to: a,
            ..moving
        };
        assert_eq!(
            map.clone().with_pending(vec![wrong]),
            Err(MapError::PendingNotOwned {
                slot: Slot::new(9000).unwrap()
            })
        );
        let to_self = SlotMove { from: b, ..moving };
        assert_eq!(
            map.clone().with_pending(vec![to_self]),
            Err(MapError::PendingToSelf {
                slot: Slot::new(9000).unwrap()
            })
        );
        let overlap = SlotMove {
            start: Slot::new(9999).unwrap(),
            end: Slot::new(10_000).unwrap(),
            ..moving
        };
        assert_eq!(
            map.with_pending(vec![moving, overlap]),
            Err(MapError::PendingOverlap {
                slot: Slot::new(9999).unwrap()
            })
        );
    }

    #[test]
    fn a_map_with_every_kind_of_record_round_trips() {
        let map = full_map();
        let bytes = encode(&map);
        assert_eq!(bytes.len(), encoded_len(&map));
        assert_eq!(peek_encoded_len(&bytes[..HEADER_BYTES]), Ok(bytes.len()));
        assert_eq!(decode(&bytes), Ok(map));
    }

    #[test]
    fn every_cut_short_encoding_is_refused() {
        let bytes = encode(&full_map());
        for len in 0..bytes.len() {
            let result = decode(&bytes[..len]);
            assert!(
                matches!(
                    result,
                    Err(MapError::Truncated { .. } | MapError::LengthMismatch { .. })
                ),
                "prefix of {len} bytes gave {result:?}"
            );
        }
    }

    #[test]
    fn decode_refuses_a_bad_header() {
        assert_eq!(
            decode(&patched(0, b"DNCX")),
            Err(MapError::BadMagic { found: *b"DNCX" })
        );
        assert_eq!(
            decode(&patched(4, &[3, 0])),
            Err(MapError::UnsupportedVersion { version: 3 })
        );
        assert_eq!(
            decode(&patched(12, &[1, 0, 0, 0])),
            Err(MapError::EpochOutOfRange {
                offset: 8,
                value: (1 << 32) + 5
            })
        );
        assert_eq!(
            decode(&patched(6, &[0, 1])),
            Err(MapError::ReservedNotZero { offset: 6 })
        );
        // A pending count that the bytes do not back; in version 1 the field is reserved.
        assert_eq!(
            decode(&patched(26, &[1, 0])),
            Err(MapError::Truncated { offset: 81 })
        );
        let mut v1 = SMALL_MAP_BYTES_V1.to_vec();
        v1[26] = 1;
        assert_eq!(decode(&v1), Err(MapError::ReservedNotZero { offset: 26 }));
        assert_eq!(
            decode(&patched(16, &[80, 0, 0, 0])),
            Err(MapError::LengthMismatch {
                header: 80,
                actual: 81
            })
        );
        assert_eq!(decode(&[]), Err(MapError::Truncated { offset: 0 }));
    }

    #[test]
    fn decode_refuses_input_over_the_size_limit_before_reading_it() {
        let bytes = vec![0u8; MAP_ENCODED_BYTES_MAX + 1];
        assert_eq!(
            decode(&bytes),
            Err(MapError::TooLarge {
                bytes: MAP_ENCODED_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn decode_refuses_counts_over_their_limits() {
        assert_eq!(
            decode(&patched(20, &[1, 1])),
            Err(MapError::TooManyNodes { count: 257 })
        );
        assert_eq!(
            decode(&patched(22, &[1, 0x40])),
            Err(MapError::TooManyRanges { count: 16385 })
        );
        assert_eq!(
            decode(&patched(24, &[1, 1])),
            Err(MapError::TooManyHotKeys { count: 257 })
        );
        assert_eq!(
            decode(&patched(32, &[0, 1])),
            Err(MapError::HostTooLong {
                kn: KnId(7),
                bytes: 256
            })
        );
        assert_eq!(
            decode(&patched(34, &[1, 1])),
            Err(MapError::TooManyNodeCores {
                kn: KnId(7),
                count: 257
            })
        );
    }

    #[test]
    fn decode_refuses_a_hot_key_record_over_its_limits() {
        let map = full_map();
        let bytes = encode(&map);
        // The last hot key record is 4 + 2 + 6 bytes: lengths, key [0, 255], one replica.
        let record = bytes.len() - 12;
        let mut long_key = bytes.clone();
        long_key[record..record + 2].copy_from_slice(&513u16.to_le_bytes());
        assert_eq!(
            decode(&long_key),
            Err(MapError::HotKeyTooLong { bytes: 513 })
        );
        let mut many = bytes;
        many[record + 2..record + 4].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(
            decode(&many),
            Err(MapError::TooManyReplicas {
                key: vec![0, 255],
                count: 9
            })
        );
    }

    #[test]
    fn decode_refuses_bad_fields() {
        assert_eq!(
            decode(&patched(44, &[0xFF])),
            Err(MapError::HostNotUtf8 { kn: KnId(7) })
        );
        assert_eq!(
            decode(&patched(73, &[0x00, 0x40])),
            Err(MapError::SlotOutOfRange {
                offset: 73,
                value: 16384
            })
        );
    }

    #[test]
    fn decode_refuses_bytes_after_the_last_record() {
        let mut bytes = SMALL_MAP_BYTES.to_vec();
        bytes.push(0);
        bytes[16] = 82;
        assert_eq!(decode(&bytes), Err(MapError::TrailingBytes { offset: 81 }));
    }

    #[test]
    fn decode_refuses_an_encoding_of_an_invalid_map() {
        assert_eq!(
            decode(&patched(SECOND_RANGE_CORE_OFFSET, &[0, 0])),
            Err(MapError::RangesNotMerged {
                slot: Slot::new(8192).unwrap()
            })
        );
        assert_eq!(
            decode(&patched(SECOND_RANGE_CORE_OFFSET, &[2, 0])),
            Err(MapError::UnknownOwner {
                owner: Owner {
                    kn: KnId(7),
                    core: CoreId(2)
                }
            })
        );
        // Port 7001 becomes 7000, the first core's port on the same host.
        assert_eq!(
            decode(&patched(55, &[0x58])),
            Err(MapError::DuplicatePort {
                host: "h".to_owned(),
                port: 7000
            })
        );
    }

    #[test]
    fn peek_encoded_len_reads_the_header_alone() {
        assert_eq!(peek_encoded_len(&SMALL_MAP_BYTES[..HEADER_BYTES]), Ok(81));
        assert_eq!(
            peek_encoded_len(&SMALL_MAP_BYTES[..HEADER_BYTES - 1]),
            Err(MapError::Truncated { offset: 26 })
        );
        let mut header = SMALL_MAP_BYTES[..HEADER_BYTES].to_vec();
        header[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            peek_encoded_len(&header),
            Err(MapError::TooLarge {
                bytes: u32::MAX as usize
            })
        );
        header[16..20].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            peek_encoded_len(&header),
            Err(MapError::LengthMismatch {
                header: 3,
                actual: HEADER_BYTES
            })
        );
    }

    /// Whatever `decode` makes of `bytes`, it must not panic, and what it accepts must be a valid
    /// map whose encoding is exactly `bytes` if they are of the current version (the format has
    /// one encoding per map).
    fn check_decode_is_total_and_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(map) = decode(bytes) {
            prop_assert_eq!(map.validate(), Ok(()));
            if bytes[4..6] == FORMAT_VERSION.to_le_bytes() {
                prop_assert_eq!(encode(&map), bytes);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(map in strategies::cluster_map()) {
            let bytes = encode(&map);
            prop_assert_eq!(bytes.len(), encoded_len(&map));
            prop_assert!(bytes.len() <= MAP_ENCODED_BYTES_MAX);
            prop_assert_eq!(decode(&bytes), Ok(map));
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
            check_decode_is_total_and_canonical(&bytes)?;
        }

        #[test]
        fn decode_never_panics_on_arbitrary_records_after_a_good_header(
            epoch in any::<u32>(),
            counts in (0u16..4, 0u16..40, 0u16..4),
            body in vec(any::<u8>(), 0..1024),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes.extend_from_slice(&[0, 0]);
            bytes.extend_from_slice(&u64::from(epoch).to_le_bytes());
            let total = u32::try_from(HEADER_BYTES + body.len()).unwrap();
            bytes.extend_from_slice(&total.to_le_bytes());
            bytes.extend_from_slice(&counts.0.to_le_bytes());
            bytes.extend_from_slice(&counts.1.to_le_bytes());
            bytes.extend_from_slice(&counts.2.to_le_bytes());
            bytes.extend_from_slice(&[0, 0]);
            bytes.extend_from_slice(&body);
            check_decode_is_total_and_canonical(&bytes)?;
        }

        #[test]
        fn decode_never_panics_on_a_damaged_encoding(
            map in strategies::cluster_map(),
            damage in vec((any::<Index>(), any::<u8>()), 1..8),
            cut in any::<Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = encode(&map);
            for (at, value) in damage {
                let index = at.index(bytes.len());
                bytes[index] ^= value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            check_decode_is_total_and_canonical(&bytes)?;
        }
    }
}
