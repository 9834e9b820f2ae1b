//! Errors of the index.

use dinomo_pmem::PoolError;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("the index arena has no room for {0} more bytes")]
    ArenaFull(u64),
    #[error("no free indirect cell")]
    NoFreeCell,
    #[error("corrupt index: {0}")]
    Corrupt(String),
    #[error("an index operation kept losing races ({0} retries); giving up")]
    Contended(u32),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;
