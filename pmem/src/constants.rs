//! Named limits and format constants of the pool, with the assertions that tie them together.

/// Bytes in a cache line: the unit of flushing and of crash simulation.
pub const LINE: u64 = 64;
/// Bytes in a page: regions are aligned to it.
pub const PAGE: u64 = 4096;

/// Superblock magic.
pub const POOL_MAGIC: [u8; 8] = *b"DINOMOPL";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the superblock covered by its checksum (the checksum is the last 4 of them).
pub const SUPERBLOCK_LEN: u64 = 256;
/// Hash algorithm id 1: xxh3-64 with seed 0 over the key bytes.
pub const HASH_XXH3: u32 = 1;

/// Smallest and largest log block sizes; block sizes are powers of two.
pub const BLOCK_SIZE_MIN: u64 = 4096;
pub const BLOCK_SIZE_MAX: u64 = 1 << 30;
/// The default log block size.
pub const BLOCK_SIZE_DEFAULT: u64 = 8 << 20;
/// Bytes of a log block header; entries start after it.
pub const BLOCK_HEADER_LEN: u64 = 128;
/// Magic of a log block header ("DLB1").
pub const BLOCK_MAGIC: u32 = 0x3142_4C44;

/// Bytes of a log entry header.
pub const ENTRY_HEADER_LEN: usize = 24;
/// Longest key an entry can hold (the key length is a u16).
pub const KEY_LEN_MAX: usize = u16::MAX as usize;

/// Chains (KN worker cores that may write) a pool has by default, and at most.
pub const CHAIN_COUNT_DEFAULT: u32 = 1024;
pub const CHAIN_COUNT_MAX: u32 = 1 << 24;
/// Bytes of one log table entry.
pub const LOG_TABLE_ENTRY_LEN: u64 = 64;
/// Indirect cells by default, and bytes per cell.
pub const CELL_COUNT_DEFAULT: u32 = 65_536;
pub const CELL_LEN: u64 = 16;
/// Bytes of the cluster map area (two copies) by default.
pub const CLUSTER_MAP_LEN_DEFAULT: u64 = 2 << 20;
/// Bytes of the header of one cluster map copy.
pub const CLUSTER_MAP_HEADER_LEN: u64 = 16;
/// The index arena gets this fraction (1/N) of the pool when not configured.
pub const INDEX_ARENA_FRACTION: u64 = 8;
/// Smallest index arena.
pub const INDEX_ARENA_MIN: u64 = 64 << 10;

/// Smallest pool: room for the metadata regions and a handful of blocks.
pub const POOL_SIZE_MIN: u64 = 256 << 10;
/// Largest pool: entry offsets are stored in 46 bits of 8-byte units.
pub const POOL_SIZE_MAX: u64 = 1 << 49;

/// Blocks of one chain at most (a guard against cycles when walking a damaged chain).
pub const CHAIN_BLOCKS_MAX: usize = 1 << 20;

const _: () = assert!(BLOCK_SIZE_MIN.is_power_of_two() && BLOCK_SIZE_MAX.is_power_of_two());
const _: () = assert!(BLOCK_HEADER_LEN == 2 * LINE);
const _: () = assert!(SUPERBLOCK_LEN <= PAGE);
const _: () = assert!(BLOCK_SIZE_MIN > BLOCK_HEADER_LEN + ENTRY_HEADER_LEN as u64);
// The tail word keeps `used` in 32 bits, so a block's entry area must fit in a u32.
const _: () = assert!(BLOCK_SIZE_MAX - BLOCK_HEADER_LEN <= u32::MAX as u64);
// The block table keeps the chain id in 24 bits.
const _: () = assert!(CHAIN_COUNT_MAX <= 1 << 24);
