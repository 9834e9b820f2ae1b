//! An engine's settings ([`EngineConfig`]) and why it may fail to start ([`StartError`]).

use std::time::Duration;

use dinomo_control::Incarnation;
use dinomo_pmem::{ChainId, Epoch};

use crate::cache::Policy;
use crate::config::Durability;
use crate::fabric::VerbError;
use crate::kn::constants::{
    BATCH_BYTES_MAX_DEFAULT, BATCH_DELAY_DEFAULT, CACHE_BYTES_DEFAULT, VALUE_HINT_DEFAULT,
};
use crate::mn::client::ClientError;

/// Settings of one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub chain: ChainId,
    /// The epoch this core's entries are written in: the epoch of the map that gave it its
    /// slots.
    pub epoch: Epoch,
    /// The run of the node this core belongs to, shown to the memory node before attaching.
    pub incarnation: Incarnation,
    pub cache_policy: Policy,
    pub cache_bytes: usize,
    pub durability: Durability,
    pub batch_bytes_max: u64,
    pub batch_delay: Duration,
    pub value_hint: u32,
}

impl EngineConfig {
    pub fn new(chain: ChainId, epoch: Epoch) -> EngineConfig {
        EngineConfig {
            chain,
            epoch,
            incarnation: Incarnation::NONE,
            cache_policy: Policy::Dac,
            cache_bytes: CACHE_BYTES_DEFAULT,
            durability: Durability::Memory,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            batch_delay: BATCH_DELAY_DEFAULT,
            value_hint: VALUE_HINT_DEFAULT,
        }
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("fabric: {0}")]
    Fabric(#[from] VerbError),
    #[error(transparent)]
    Mn(#[from] ClientError),
    #[error("the memory node's pool: {0}")]
    Pool(#[from] dinomo_pmem::PoolError),
    #[error("the memory node answered {0}")]
    Unexpected(String),
}
