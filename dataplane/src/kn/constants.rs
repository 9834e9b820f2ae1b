//! Named limits and defaults of a KN.

use std::time::Duration;

/// Requests one engine keeps in flight at most (remote reads, parked reads, staged writes).
pub const ENGINE_REQUESTS_MAX: usize = 16_384;
/// Bytes of a batch at most: a group commit happens when the next write would exceed it.
pub const BATCH_BYTES_MAX_DEFAULT: u64 = 1 << 20;
/// How long a write may wait for its batch to fill when the loop has not drained its input.
pub const BATCH_DELAY_DEFAULT: Duration = Duration::from_micros(200);
/// Value size the first READ of an entry assumes (a longer value costs one more READ).
pub const VALUE_HINT_DEFAULT: u32 = 1024;
/// Sealed blocks whose entries this core keeps locally while the MN merges them; at the limit,
/// writes wait for the merge (backpressure).
pub const UNMERGED_BLOCKS_MAX: usize = 4;
/// Spare blocks asked for in one RPC.
pub const SPARES_PER_RPC: u32 = 2;
/// How often a core with sealed blocks checks the MN's merge progress.
pub const MERGE_POLL_INTERVAL: Duration = Duration::from_micros(500);
/// Restarts of one lookup (stale header, changed slot) before it fails.
pub const LOOKUP_RESTARTS_MAX: u32 = 32;
/// Queue pair slots kept free of reads, for batch commits, RPCs and merge-progress checks.
pub const QP_RESERVED: usize = 16;
/// Completions reaped per poll.
pub const POLL_BATCH: usize = 64;
/// How long a core whose pool is full waits before asking for a block again.
pub const POOL_FULL_RETRY: Duration = Duration::from_millis(50);
/// Default cache budget per core.
pub const CACHE_BYTES_DEFAULT: usize = 64 << 20;
/// Misses averaged before the cache's miss cost is updated.
pub const MISS_COST_WINDOW: u64 = 1024;

const _: () = assert!(UNMERGED_BLOCKS_MAX >= 1);
