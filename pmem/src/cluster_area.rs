//! The cluster map area (FORMAT.md §10): two checksummed copies of an opaque payload, so that a
//! crash while writing one leaves the other intact. The `control` crate defines the payload.

use crate::codec::{get_u32, get_u64, put_u32, put_u64};
use crate::constants::CLUSTER_MAP_HEADER_LEN;
use crate::error::{PoolError, Result};
use crate::pool::Pool;

/// A stored cluster map: its epoch and encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMap {
    pub epoch: u64,
    pub payload: Vec<u8>,
}

fn copy_len(pool: &Pool) -> u64 {
    pool.layout().cluster_map_len / 2
}

/// The largest payload the area holds.
pub fn payload_max(pool: &Pool) -> u64 {
    copy_len(pool) - CLUSTER_MAP_HEADER_LEN
}

fn read_copy(pool: &Pool, i: u64) -> Option<StoredMap> {
    let base = pool.layout().cluster_map_off + i * copy_len(pool);
    let mut header = [0u8; CLUSTER_MAP_HEADER_LEN as usize];
    pool.backend().read(base, &mut header);
    let epoch = get_u64(&header, 0);
    let len = u64::from(get_u32(&header, 8));
    if epoch == 0 || len > payload_max(pool) {
        return None;
    }
    let mut payload = vec![0u8; len as usize];
    pool.backend()
        .read(base + CLUSTER_MAP_HEADER_LEN, &mut payload);
    let stored = get_u32(&header, 12);
    (checksum(&header, &payload) == stored).then_some(StoredMap { epoch, payload })
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = [0u8; CLUSTER_MAP_HEADER_LEN as usize];
    h[..12].copy_from_slice(&header[..12]);
    crc32c::crc32c_append(crc32c::crc32c(&h), payload)
}

/// The newest valid stored map, if any.
pub fn read(pool: &Pool) -> Option<StoredMap> {
    let a = read_copy(pool, 0);
    let b = read_copy(pool, 1);
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.epoch > a.epoch { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Stores a map with `epoch` (which must be greater than the stored one) in the older copy.
pub fn write(pool: &Pool, epoch: u64, payload: &[u8]) -> Result<()> {
    if payload.len() as u64 > payload_max(pool) {
        return Err(PoolError::Config(format!(
            "cluster map of {} bytes exceeds the area's {} bytes",
            payload.len(),
            payload_max(pool)
        )));
    }
    let a = read_copy(pool, 0).map(|m| m.epoch);
    let b = read_copy(pool, 1).map(|m| m.epoch);
    let newest = a.into_iter().chain(b).max();
    if epoch == 0 || newest.is_some_and(|n| epoch <= n) {
        return Err(PoolError::Config(format!(
            "cluster map epoch {epoch} is not newer than {newest:?}"
        )));
    }
    let target = match (a, b) {
        (None, _) => 0,
        (_, None) => 1,
        (Some(a), Some(b)) => u64::from(b < a),
    };
    let base = pool.layout().cluster_map_off + target * copy_len(pool);
    let mut header = [0u8; CLUSTER_MAP_HEADER_LEN as usize];
    put_u64(&mut header, 0, epoch);
    put_u32(&mut header, 8, payload.len() as u32);
    let sum = checksum(&header, payload);
    put_u32(&mut header, 12, sum);
    pool.backend().write(base + CLUSTER_MAP_HEADER_LEN, payload);
    pool.backend().write(base, &header);
    pool.backend()
        .persist(base, CLUSTER_MAP_HEADER_LEN + payload.len() as u64);
    Ok(())
}
