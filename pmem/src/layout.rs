//! The pool's layout: where every region lives (FORMAT.md §1) and the superblock that records it
//! (FORMAT.md §2). A layout is computed once at creation from a [`PoolConfig`] and afterwards only
//! decoded and validated.

use crate::codec::{get_u32, get_u64, put_u32, put_u64, round_up};
use crate::constants::*;
use crate::error::PoolError;
use crate::types::{BlockId, ChainId, PoolOffset};

/// What a new pool should look like. Only `size` has no default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pool size in bytes (a multiple of 4 KiB).
    pub size: u64,
    /// Log block size: a power of two between 4 KiB and 1 GiB.
    pub block_size: u64,
    /// Log chains (KN worker cores that may ever write to this pool).
    pub chain_count: u32,
    /// Indirect cells for selectively replicated keys.
    pub cell_count: u32,
    /// Bytes of the cluster map area (both copies), a multiple of 8 KiB.
    pub cluster_map_len: u64,
    /// Bytes of the index arena; `None` gives it 1/8 of the pool.
    pub index_arena_len: Option<u64>,
}

impl PoolConfig {
    /// The default configuration for a pool of `size` bytes.
    pub fn with_size(size: u64) -> PoolConfig {
        PoolConfig {
            size,
            block_size: BLOCK_SIZE_DEFAULT,
            chain_count: CHAIN_COUNT_DEFAULT,
            cell_count: CELL_COUNT_DEFAULT,
            cluster_map_len: CLUSTER_MAP_LEN_DEFAULT,
            index_arena_len: None,
        }
    }

    /// A small pool for tests: small blocks and few chains so that every region is exercised.
    pub fn small(size: u64, block_size: u64) -> PoolConfig {
        PoolConfig {
            size,
            block_size,
            chain_count: 16,
            cell_count: 64,
            cluster_map_len: 16 << 10,
            index_arena_len: None,
        }
    }
}

/// The decoded superblock: sizes and region offsets of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub pool_size: u64,
    pub uuid: [u8; 16],
    pub created_unix_secs: u64,
    pub block_size: u64,
    pub block_count: u32,
    pub chain_count: u32,
    pub cell_count: u32,
    pub hash_algo: u32,
    pub root_off: u64,
    pub log_table_off: u64,
    pub block_table_off: u64,
    pub cell_table_off: u64,
    pub cluster_map_off: u64,
    pub cluster_map_len: u64,
    pub index_arena_off: u64,
    pub index_arena_len: u64,
    pub blocks_off: u64,
}

fn config_error(what: impl Into<String>) -> PoolError {
    PoolError::Config(what.into())
}

impl Layout {
    /// Lays out a new pool.
    pub fn compute(
        cfg: &PoolConfig,
        uuid: [u8; 16],
        created_unix_secs: u64,
    ) -> Result<Layout, PoolError> {
        if cfg.size < POOL_SIZE_MIN || cfg.size > POOL_SIZE_MAX || !cfg.size.is_multiple_of(PAGE) {
            return Err(config_error(format!(
                "pool size {} must be a multiple of 4 KiB between {} and {} bytes",
                cfg.size, POOL_SIZE_MIN, POOL_SIZE_MAX
            )));
        }
        if !cfg.block_size.is_power_of_two()
            || !(BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&cfg.block_size)
        {
            return Err(config_error(format!(
                "block size {} must be a power of two between {} and {} bytes",
                cfg.block_size, BLOCK_SIZE_MIN, BLOCK_SIZE_MAX
            )));
        }
        if cfg.chain_count == 0 || cfg.chain_count > CHAIN_COUNT_MAX {
            return Err(config_error(format!(
                "chain count {} must be 1..={CHAIN_COUNT_MAX}",
                cfg.chain_count
            )));
        }
        if cfg.cluster_map_len < 8192 || !cfg.cluster_map_len.is_multiple_of(8192) {
            return Err(config_error("cluster map area must be a multiple of 8 KiB"));
        }
        let root_off = PAGE;
        let log_table_off = root_off + PAGE;
        let log_table_len = round_up(u64::from(cfg.chain_count) * LOG_TABLE_ENTRY_LEN, PAGE);
        let block_table_off = log_table_off + log_table_len;
        // The block table is sized for the most blocks the pool could hold; the exact count is
        // known only once the other regions are placed, and it can only be smaller.
        let blocks_upper = cfg.size / cfg.block_size;
        let block_table_len = round_up(blocks_upper.max(1) * 8, PAGE);
        let cell_table_off = block_table_off + block_table_len;
        let cell_table_len = round_up(u64::from(cfg.cell_count) * CELL_LEN, PAGE).max(PAGE);
        let cluster_map_off = cell_table_off + cell_table_len;
        let index_arena_off = cluster_map_off + cfg.cluster_map_len;
        let index_arena_len = match cfg.index_arena_len {
            Some(len) => len,
            None => round_up((cfg.size / INDEX_ARENA_FRACTION).max(INDEX_ARENA_MIN), PAGE),
        };
        if index_arena_len < INDEX_ARENA_MIN || index_arena_len % PAGE != 0 {
            return Err(config_error(format!(
                "index arena of {index_arena_len} bytes must be a multiple of 4 KiB of at least {INDEX_ARENA_MIN}"
            )));
        }
        let blocks_align = cfg.block_size.min(2 << 20);
        let blocks_off = round_up(index_arena_off + index_arena_len, blocks_align);
        if blocks_off >= cfg.size {
            return Err(config_error(format!(
                "pool of {} bytes has no room for log blocks after {blocks_off} bytes of metadata",
                cfg.size
            )));
        }
        let block_count = (cfg.size - blocks_off) / cfg.block_size;
        if block_count < 2 {
            return Err(config_error(format!(
                "pool of {} bytes holds {block_count} log blocks of {} bytes; at least 2 are needed",
                cfg.size, cfg.block_size
            )));
        }
        if block_count > u64::from(u32::MAX - 1) {
            return Err(config_error("too many log blocks; use larger blocks"));
        }
        let layout = Layout {
            pool_size: cfg.size,
            uuid,
            created_unix_secs,
            block_size: cfg.block_size,
            block_count: block_count as u32,
            chain_count: cfg.chain_count,
            cell_count: cfg.cell_count,
            hash_algo: HASH_XXH3,
            root_off,
            log_table_off,
            block_table_off,
            cell_table_off,
            cluster_map_off,
            cluster_map_len: cfg.cluster_map_len,
            index_arena_off,
            index_arena_len,
            blocks_off,
        };
        layout.check_regions()?;
        Ok(layout)
    }

    /// The superblock bytes, checksum included.
    pub fn encode(&self) -> [u8; SUPERBLOCK_LEN as usize] {
        let mut b = [0u8; SUPERBLOCK_LEN as usize];
        b[0..8].copy_from_slice(&POOL_MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u32(&mut b, 12, SUPERBLOCK_LEN as u32);
        put_u64(&mut b, 16, self.pool_size);
        b[24..40].copy_from_slice(&self.uuid);
        put_u64(&mut b, 40, self.created_unix_secs);
        put_u64(&mut b, 48, self.block_size);
        put_u32(&mut b, 56, self.block_count);
        put_u32(&mut b, 60, self.chain_count);
        put_u32(&mut b, 64, self.cell_count);
        put_u32(&mut b, 68, self.hash_algo);
        put_u64(&mut b, 72, self.root_off);
        put_u64(&mut b, 80, self.log_table_off);
        put_u64(&mut b, 88, self.block_table_off);
        put_u64(&mut b, 96, self.cell_table_off);
        put_u64(&mut b, 104, self.cluster_map_off);
        put_u64(&mut b, 112, self.cluster_map_len);
        put_u64(&mut b, 120, self.index_arena_off);
        put_u64(&mut b, 128, self.index_arena_len);
        put_u64(&mut b, 136, self.blocks_off);
        let sum = crc32c::crc32c(&b[..SUPERBLOCK_LEN as usize - 4]);
        put_u32(&mut b, SUPERBLOCK_LEN as usize - 4, sum);
        b
    }

    /// Decodes and validates a superblock read from a pool of `actual_len` bytes.
    pub fn decode(b: &[u8], actual_len: u64) -> Result<Layout, PoolError> {
        if b.len() < SUPERBLOCK_LEN as usize {
            return Err(PoolError::Corrupt("superblock read is short".into()));
        }
        if b[0..8] != POOL_MAGIC {
            return Err(PoolError::Foreign);
        }
        let version = get_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(PoolError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u64::from(get_u32(b, 12)) != SUPERBLOCK_LEN {
            return Err(PoolError::Corrupt(format!(
                "superblock length field is {}",
                get_u32(b, 12)
            )));
        }
        let stored = get_u32(b, SUPERBLOCK_LEN as usize - 4);
        let computed = crc32c::crc32c(&b[..SUPERBLOCK_LEN as usize - 4]);
        if stored != computed {
            return Err(PoolError::SuperblockChecksum { stored, computed });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[24..40]);
        let layout = Layout {
            pool_size: get_u64(b, 16),
            uuid,
            created_unix_secs: get_u64(b, 40),
            block_size: get_u64(b, 48),
            block_count: get_u32(b, 56),
            chain_count: get_u32(b, 60),
            cell_count: get_u32(b, 64),
            hash_algo: get_u32(b, 68),
            root_off: get_u64(b, 72),
            log_table_off: get_u64(b, 80),
            block_table_off: get_u64(b, 88),
            cell_table_off: get_u64(b, 96),
            cluster_map_off: get_u64(b, 104),
            cluster_map_len: get_u64(b, 112),
            index_arena_off: get_u64(b, 120),
            index_arena_len: get_u64(b, 128),
            blocks_off: get_u64(b, 136),
        };
        if actual_len < layout.pool_size {
            return Err(PoolError::Truncated {
                expected: layout.pool_size,
                actual: actual_len,
            });
        }
        if actual_len > layout.pool_size {
            return Err(PoolError::SizeMismatch {
                expected: layout.pool_size,
                actual: actual_len,
            });
        }
        layout.check_regions()?;
        Ok(layout)
    }

    /// Checks that the regions are in order, aligned, inside the pool and consistent.
    fn check_regions(&self) -> Result<(), PoolError> {
        let corrupt = |what: String| Err(PoolError::Corrupt(what));
        if self.hash_algo != HASH_XXH3 {
            return corrupt(format!("unknown hash algorithm {}", self.hash_algo));
        }
        if !self.block_size.is_power_of_two()
            || !(BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&self.block_size)
        {
            return corrupt(format!("block size {} out of range", self.block_size));
        }
        if self.chain_count == 0 || self.chain_count > CHAIN_COUNT_MAX {
            return corrupt(format!("chain count {} out of range", self.chain_count));
        }
        if self.block_count < 2 {
            return corrupt(format!("block count {} is too small", self.block_count));
        }
        let regions: [(&str, u64, Option<u64>, u64); 8] = [
            ("root", self.root_off, Some(PAGE), PAGE),
            (
                "log table",
                self.log_table_off,
                u64::from(self.chain_count).checked_mul(LOG_TABLE_ENTRY_LEN),
                PAGE,
            ),
            (
                "block table",
                self.block_table_off,
                u64::from(self.block_count).checked_mul(8),
                PAGE,
            ),
            (
                "cell table",
                self.cell_table_off,
                u64::from(self.cell_count).checked_mul(CELL_LEN),
                PAGE,
            ),
            (
                "cluster map",
                self.cluster_map_off,
                Some(self.cluster_map_len),
                PAGE,
            ),
            (
                "index arena",
                self.index_arena_off,
                Some(self.index_arena_len),
                PAGE,
            ),
            (
                "log blocks",
                self.blocks_off,
                u64::from(self.block_count).checked_mul(self.block_size),
                self.block_size.min(2 << 20),
            ),
            ("end", self.pool_size, Some(0), 1),
        ];
        let mut previous_end = PAGE; // the superblock page
        for (name, off, len, align) in regions {
            let Some(len) = len else {
                return corrupt(format!("{name} size overflows"));
            };
            if off % align != 0 {
                return corrupt(format!("{name} at {off:#x} is not aligned to {align}"));
            }
            if off < previous_end {
                return corrupt(format!("{name} at {off:#x} overlaps the region before it"));
            }
            let Some(end) = off.checked_add(len) else {
                return corrupt(format!("{name} ends past 2^64"));
            };
            if end > self.pool_size {
                return corrupt(format!(
                    "{name} ends at {end:#x}, past the pool's {:#x} bytes",
                    self.pool_size
                ));
            }
            previous_end = end;
        }
        if self.cluster_map_len < 8192 || !self.cluster_map_len.is_multiple_of(8192) {
            return corrupt(format!(
                "cluster map area of {} bytes",
                self.cluster_map_len
            ));
        }
        if self.index_arena_len < INDEX_ARENA_MIN {
            return corrupt(format!("index arena of {} bytes", self.index_arena_len));
        }
        Ok(())
    }

    /// Bytes of a block's entry area.
    pub fn entry_capacity(&self) -> u64 {
        self.block_size - BLOCK_HEADER_LEN
    }

    /// Where block `b` starts.
    pub fn block_off(&self, b: BlockId) -> PoolOffset {
        PoolOffset(self.blocks_off + u64::from(b.0) * self.block_size)
    }

    /// Where block `b`'s entry area starts.
    pub fn entry_area_off(&self, b: BlockId) -> PoolOffset {
        self.block_off(b).add(BLOCK_HEADER_LEN)
    }

    /// The block and entry-area offset of a pool offset inside some block's entry area.
    pub fn locate(&self, off: PoolOffset) -> Option<(BlockId, u64)> {
        let rel = off.0.checked_sub(self.blocks_off)?;
        let b = rel / self.block_size;
        if b >= u64::from(self.block_count) {
            return None;
        }
        let within = rel % self.block_size;
        let in_area = within.checked_sub(BLOCK_HEADER_LEN)?;
        Some((BlockId(b as u32), in_area))
    }

    /// Where chain `c`'s log table entry is.
    pub fn chain_off(&self, c: ChainId) -> PoolOffset {
        PoolOffset(self.log_table_off + u64::from(c.0) * LOG_TABLE_ENTRY_LEN)
    }

    /// Where block `b`'s block table word is.
    pub fn block_table_word(&self, b: BlockId) -> PoolOffset {
        PoolOffset(self.block_table_off + u64::from(b.0) * 8)
    }

    /// Where indirect cell `i` is.
    pub fn cell_off(&self, i: u32) -> PoolOffset {
        PoolOffset(self.cell_table_off + u64::from(i) * CELL_LEN)
    }

    /// The uuid as text.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_round_trips() {
        let layout =
            Layout::compute(&PoolConfig::with_size(1 << 30), [7; 16], 42).expect("valid config");
        let bytes = layout.encode();
        assert_eq!(Layout::decode(&bytes, 1 << 30).expect("decodes"), layout);
        assert!(layout.block_count >= 100);
        assert_eq!(layout.blocks_off % (2 << 20), 0);
    }

    #[test]
    fn bad_configs_are_rejected() {
        for cfg in [
            PoolConfig::with_size(1000),
            PoolConfig {
                block_size: 5000,
                ..PoolConfig::with_size(1 << 30)
            },
            PoolConfig {
                chain_count: 0,
                ..PoolConfig::with_size(1 << 30)
            },
            PoolConfig::with_size(16 << 20), // room for less than two 8 MiB blocks
        ] {
            assert!(
                matches!(Layout::compute(&cfg, [0; 16], 0), Err(PoolError::Config(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn locate_inverts_entry_offsets() {
        let layout = Layout::compute(&PoolConfig::small(1 << 20, 4096), [0; 16], 0).expect("valid");
        let b = BlockId(3);
        let off = layout.entry_area_off(b).add(40);
        assert_eq!(layout.locate(off), Some((b, 40)));
        assert_eq!(
            layout.locate(layout.block_off(b)),
            None,
            "a header is not an entry"
        );
        assert_eq!(layout.locate(PoolOffset(0)), None);
    }
}
