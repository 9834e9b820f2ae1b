//! Typed errors of the pool: every way a pool file or its contents can be unusable.

use std::path::PathBuf;

/// Why a pool could not be created, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool file {0} does not exist")]
    NotFound(PathBuf),
    #[error("pool file {0} already exists and holds data; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    #[error("pool file {path} is {actual} bytes, shorter than a superblock ({needed} bytes)")]
    TooSmall {
        path: PathBuf,
        actual: u64,
        needed: u64,
    },
    #[error("not a dinomo pool (bad magic)")]
    Foreign,
    #[error("pool format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error(
        "corrupt superblock: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    SuperblockChecksum { stored: u32, computed: u32 },
    #[error("pool is truncated: superblock says {expected} bytes, file has {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error("pool size mismatch: superblock says {expected} bytes, file has {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("invalid pool configuration: {0}")]
    Config(String),
    #[error("corrupt pool: {0}")]
    Corrupt(String),
    #[error("the pool has no free log block")]
    NoFreeBlock,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl PoolError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PoolError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why a log entry could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("key of {0} bytes is longer than the limit of 65535")]
    KeyTooLong(usize),
    #[error("entry of {entry} bytes does not fit in a log block's entry area of {capacity} bytes")]
    EntryTooLarge { entry: u64, capacity: u64 },
    #[error("the batch is full; commit it first")]
    BatchFull,
    #[error("the head block is full and no spare block is reserved")]
    NeedBlock,
}

/// Why bytes in a log block are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry header runs past the committed tail")]
    Truncated,
    #[error("unknown entry op {0}")]
    BadOp(u8),
    #[error("entry flags {0:#x} are not zero")]
    BadFlags(u8),
    #[error("entry checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
}

pub type Result<T, E = PoolError> = std::result::Result<T, E>;
