//! Every way a pool file can be unusable gets its own typed error, never a panic, and a file is
//! never overwritten unless creation is asked for explicitly.

use std::fs;
use std::path::{Path, PathBuf};

use dinomo_pmem::{FileOptions, Pool, PoolConfig, PoolError};

const SIZE: u64 = 1 << 20;

fn options() -> FileOptions {
    FileOptions {
        persist: false,
        lock: false,
    }
}

/// A fresh directory for one test, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dir() -> Scratch {
    let d = std::env::temp_dir().join(format!(
        "dinomo-badfile-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    fs::create_dir_all(&d).expect("temp dir");
    Scratch(d)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn make_pool(path: &Path) {
    Pool::create_file(path, &PoolConfig::small(SIZE, 4096), false, options()).expect("create");
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).expect("read");
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).expect("write");
}

fn reseal_superblock(path: &Path) {
    let mut data = fs::read(path).expect("read");
    let sum = crc32c::crc32c(&data[..252]);
    data[252..256].copy_from_slice(&sum.to_le_bytes());
    fs::write(path, data).expect("write");
}

#[test]
fn missing_file() {
    let scratch_p = dir();
    let p = scratch_p.join("absent.pool");
    assert!(matches!(Pool::open_file(&p, options()), Err(PoolError::NotFound(q)) if q == p));
}

#[test]
fn empty_and_tiny_files() {
    let d = dir();
    let empty = d.join("empty.pool");
    fs::write(&empty, b"").expect("write");
    assert!(matches!(
        Pool::open_file(&empty, options()),
        Err(PoolError::TooSmall { actual: 0, .. })
    ));
    let tiny = d.join("tiny.pool");
    fs::write(&tiny, [0u8; 96]).expect("write");
    assert!(matches!(
        Pool::open_file(&tiny, options()),
        Err(PoolError::TooSmall { actual: 96, .. })
    ));
}

#[test]
fn foreign_and_zero_files() {
    let d = dir();
    let zeros = d.join("zeros.pool");
    fs::write(&zeros, vec![0u8; SIZE as usize]).expect("write");
    assert!(matches!(
        Pool::open_file(&zeros, options()),
        Err(PoolError::Foreign)
    ));
    let text = d.join("text.pool");
    fs::write(&text, "this is a text file, not a pool\n".repeat(1000)).expect("write");
    let err = Pool::open_file(&text, options()).expect_err("not a pool");
    assert!(
        matches!(err, PoolError::Foreign | PoolError::Corrupt(_)),
        "{err}"
    );
}

#[test]
fn corrupt_superblock_checksum() {
    let scratch_p = dir();
    let p = scratch_p.join("corrupt.pool");
    make_pool(&p);
    patch(&p, 50, &[0xFF]);
    let err = Pool::open_file(&p, options()).expect_err("corrupt");
    assert!(matches!(err, PoolError::SuperblockChecksum { .. }), "{err}");
    assert!(err.to_string().contains("checksum"));
}

#[test]
fn unsupported_version() {
    let scratch_p = dir();
    let p = scratch_p.join("future.pool");
    make_pool(&p);
    patch(&p, 8, &7u32.to_le_bytes());
    reseal_superblock(&p);
    assert!(matches!(
        Pool::open_file(&p, options()),
        Err(PoolError::UnsupportedVersion {
            found: 7,
            supported: 1
        })
    ));
}

#[test]
fn truncated_and_extended_files() {
    let d = dir();
    let p = d.join("truncated.pool");
    make_pool(&p);
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_len(SIZE / 2))
        .expect("truncate");
    assert!(matches!(
        Pool::open_file(&p, options()),
        Err(PoolError::Truncated { expected: SIZE, actual }) if actual == SIZE / 2
    ));
    let q = d.join("extended.pool");
    make_pool(&q);
    fs::OpenOptions::new()
        .write(true)
        .open(&q)
        .and_then(|f| f.set_len(SIZE + 4096))
        .expect("extend");
    assert!(matches!(
        Pool::open_file(&q, options()),
        Err(PoolError::SizeMismatch { .. })
    ));
}

#[test]
fn inconsistent_regions_are_corruption() {
    let scratch_p = dir();
    let p = scratch_p.join("regions.pool");
    make_pool(&p);
    // Point the log blocks before the index arena (region overlap).
    patch(&p, 136, &8192u64.to_le_bytes());
    reseal_superblock(&p);
    assert!(matches!(
        Pool::open_file(&p, options()),
        Err(PoolError::Corrupt(_))
    ));
}

#[test]
fn damaged_index_root_is_corruption() {
    let scratch_p = dir();
    let p = scratch_p.join("root.pool");
    make_pool(&p);
    patch(&p, 4096, &12345u64.to_le_bytes());
    let err = Pool::open_file(&p, options()).expect_err("bad root");
    assert!(
        matches!(err, PoolError::Corrupt(ref m) if m.contains("index table")),
        "{err}"
    );
}

#[test]
fn creation_never_overwrites_unless_asked() {
    let scratch_p = dir();
    let p = scratch_p.join("existing.pool");
    fs::write(&p, b"precious data").expect("write");
    let err = Pool::create_file(&p, &PoolConfig::small(SIZE, 4096), false, options())
        .expect_err("exists");
    assert!(matches!(err, PoolError::AlreadyExists(_)));
    assert_eq!(fs::read(&p).expect("read"), b"precious data");
    // An existing pool is not overwritten either.
    let scratch_q = dir();
    let q = scratch_q.join("pool.pool");
    make_pool(&q);
    let before = fs::read(&q).expect("read");
    assert!(matches!(
        Pool::create_file(&q, &PoolConfig::small(SIZE, 4096), false, options()),
        Err(PoolError::AlreadyExists(_))
    ));
    assert_eq!(fs::read(&q).expect("read"), before);
    // Explicit overwrite makes a fresh pool with a new uuid.
    let uuid_before = Pool::open_file(&q, options()).expect("open").layout().uuid;
    let fresh =
        Pool::create_file(&q, &PoolConfig::small(SIZE, 4096), true, options()).expect("overwrite");
    assert_ne!(fresh.layout().uuid, uuid_before);
}

#[test]
fn an_empty_file_may_be_created_into() {
    let scratch_p = dir();
    let p = scratch_p.join("mktemp.pool");
    fs::write(&p, b"").expect("write");
    Pool::create_file(&p, &PoolConfig::small(SIZE, 4096), false, options())
        .expect("create into empty file");
    Pool::open_file(&p, options()).expect("reopen");
}

#[test]
fn second_memory_node_cannot_lock_the_pool() {
    let scratch_p = dir();
    let p = scratch_p.join("locked.pool");
    let locking = FileOptions {
        persist: false,
        lock: true,
    };
    let _first =
        Pool::create_file(&p, &PoolConfig::small(SIZE, 4096), false, locking).expect("create");
    let err = Pool::open_file(&p, locking).expect_err("already locked");
    assert!(err.to_string().contains("another memory node"), "{err}");
}

#[test]
fn random_superblock_bytes_never_panic() {
    let scratch_p = dir();
    let p = scratch_p.join("fuzz.pool");
    make_pool(&p);
    let original = fs::read(&p).expect("read");
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    for _ in 0..300 {
        let mut data = original.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % 256) as usize;
            data[at] = (state >> 32) as u8;
        }
        fs::write(&p, &data).expect("write");
        // Either it opens (the change was harmless or resealed by chance) or it is an error.
        let _ = Pool::open_file(&p, options());
    }
}
