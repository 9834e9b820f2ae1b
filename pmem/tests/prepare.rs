//! Preparing a log block of a sparse pool file reserves its disk space (so that a full disk is an
//! error when the block is handed out, not a fault when it is written) and leaves its bytes as
//! they were.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dinomo_pmem::{BlockId, FileOptions, Pool, PoolConfig};

const SIZE: u64 = 64 << 20;
const BLOCK: u64 = 1 << 20;

fn pool_path() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinomo-prepare-{}", std::process::id()));
    fs::create_dir_all(&d).expect("temp dir");
    d.join("pool")
}

/// Bytes of disk the file occupies.
fn allocated(path: &PathBuf) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

#[test]
fn preparing_a_block_backs_it_and_keeps_its_bytes() {
    let path = pool_path();
    let _ = fs::remove_file(&path);
    let options = FileOptions {
        persist: false,
        lock: false,
    };
    let pool =
        Pool::create_file(&path, &PoolConfig::small(SIZE, BLOCK), false, options).expect("create");
    let layout = *pool.layout();
    // The last block: far from the metadata that creation wrote, so still a hole.
    let last = BlockId(layout.block_count - 1);
    let at = layout.block_off(last).0;
    // One word written before preparing must survive it.
    pool.backend().store(at + 4096, 0x0123_4567_89ab_cdef);
    let before = allocated(&path);
    assert!(
        before < SIZE / 2,
        "a new pool file is sparse ({before} of {SIZE} bytes allocated)"
    );
    pool.prepare_block(last).expect("prepare");
    let after = allocated(&path);
    assert!(
        after >= before + BLOCK - 8192,
        "the block's disk space is reserved: {before} -> {after} bytes allocated"
    );
    assert_eq!(pool.backend().load(at + 4096), 0x0123_4567_89ab_cdef);
    let mut rest = vec![0xFFu8; 4096];
    pool.backend().read(at, &mut rest);
    assert!(
        rest.iter().all(|&b| b == 0),
        "the rest of the block reads as zeros"
    );
    // Preparing again is harmless.
    pool.prepare_block(last).expect("prepare again");
    assert_eq!(pool.backend().load(at + 4096), 0x0123_4567_89ab_cdef);
    drop(pool);
    let _ = fs::remove_file(&path);
    if let Some(dir) = path.parent() {
        let _ = fs::remove_dir(dir);
    }
}
