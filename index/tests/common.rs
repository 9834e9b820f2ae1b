//! Shared set-up of the index tests: a pool on some backend, an allocator, an index, a merger,
//! and writers for log chains.

#![allow(dead_code)]

use std::sync::Arc;

use dinomo_index::{Index, IndexConfig, KeyHasher, Merger};
use dinomo_pmem::{
    Backend, BlockAllocator, BlockId, ChainId, Epoch, LogWriter, MemBackend, Pool, PoolConfig,
    WriterOptions,
};

pub struct Node {
    pub pool: Arc<Pool>,
    pub alloc: Arc<BlockAllocator>,
    pub index: Arc<Index>,
    pub merger: Arc<Merger>,
}

pub fn config(hasher: KeyHasher) -> IndexConfig {
    IndexConfig {
        hasher,
        ..IndexConfig::default()
    }
}

/// A fresh pool of `size` bytes with `block` byte log blocks.
pub fn node_on(backend: Arc<dyn Backend>, block: u64, config: IndexConfig) -> Node {
    let size = backend.len();
    let cfg = PoolConfig {
        index_arena_len: Some(size / 4),
        ..PoolConfig::small(size, block)
    };
    let pool = Arc::new(Pool::create(backend, &cfg).expect("create pool"));
    let free = (0..pool.layout().block_count).map(BlockId).collect();
    let alloc = Arc::new(BlockAllocator::new(Arc::clone(&pool), free));
    let index = Arc::new(Index::open(Arc::clone(&pool), config).expect("open index"));
    let merger = Arc::new(Merger::new(Arc::clone(&index), Arc::clone(&alloc)));
    Node {
        pool,
        alloc,
        index,
        merger,
    }
}

pub fn node(size: u64, block: u64, config: IndexConfig) -> Node {
    node_on(Arc::new(MemBackend::new(size)), block, config)
}

pub fn writer(node: &Node, chain: u32, epoch: u32) -> LogWriter {
    let options = WriterOptions {
        batch_bytes_max: 1 << 20,
        persist: true,
        keep_history: false,
    };
    LogWriter::attach(
        Arc::clone(&node.alloc),
        ChainId(chain),
        Epoch(epoch),
        options,
    )
    .expect("attach")
}

/// A hash that puts every key in one of four places: maximal collisions in pairs and tags.
pub fn colliding_hash(key: &[u8]) -> u64 {
    let h = key.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
    (h % 4).wrapping_mul(0x0001_0000_0000_0001) | ((h % 4) << 48)
}

pub fn value_for(key: &[u8], version: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(version)
                .wrapping_add(key.len() as u64) as u8
        })
        .collect()
}
