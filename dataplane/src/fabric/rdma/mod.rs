//! The `rdma` fabric (cargo feature `rdma`): real one-sided verbs over RoCE or InfiniBand with
//! `sideway`.
//!
//! This module is the KN side and what both sides share. The MN's side is
//! [`RdmaServer`](crate::mn::rdma_server::RdmaServer): it registers the whole pool as one memory
//! region with remote read, write and atomic access, and for each KN queue pair that shows the
//! cluster token on its small TCP port it creates one RC queue pair and answers with its
//! information and the region's address, key and length. After that the MN's CPU does nothing on
//! the verb path.
//!
//! - `qp`: a KN queue pair ([`RdmaQp`]) and the fabric that connects them ([`RdmaFabric`]).
//! - `device`: what both sides need of the device — opening it, one RC queue pair with its
//!   completion queue and the state changes that connect it (`Endpoint`), and memory a
//!   NIC may touch ([`RdmaRegion`]: the MN's pool, or a KN queue pair's buffer arena).
//! - `exchange`: the QP exchange both sides speak over TCP (LID, GID, QP number, PSN after the
//!   cluster token; specified in `fabric/FRAMES.md`), encoded and decoded in one place.
//!
//! Without an RDMA device, every constructor returns a clear error; nothing here panics on what
//! the device, the peer or the network does. This module compiles everywhere the feature is on,
//! and runs only where a device exists.

pub(crate) mod device;
pub(crate) mod exchange;
mod qp;

use std::io;
use std::time::Duration;

use super::{QP_IN_FLIGHT_MAX, VERB_BYTES_MAX, VerbError};

pub use device::{RdmaRegion, first_device};
pub use qp::{RdmaFabric, RdmaOptions, RdmaQp};

/// The version of the QP-exchange protocol.
pub const RDMA_EXCHANGE_VERSION: u16 = 1;
/// The port of the device the queue pairs use.
pub const RDMA_PORT: u8 = 1;
/// Bytes of a KN queue pair's registered buffer arena by default: room for two of the largest
/// verbs in flight, and many small ones.
pub const RDMA_ARENA_BYTES_DEFAULT: usize = 2 * VERB_BYTES_MAX as usize + (1 << 20);
/// Alignment of arena buffers (a cache line; atomics need 8).
pub const RDMA_ARENA_ALIGN: usize = 64;
/// Send-queue entries per KN queue pair: every request may carry a flushing READ behind it.
pub const RDMA_SEND_WR_MAX: usize = 2 * QP_IN_FLIGHT_MAX;
/// Outstanding READs and atomics per queue pair asked of the device (clamped to what it offers).
pub const RDMA_RD_ATOMIC_MAX: u8 = 16;
/// Time the QP exchange may take.
pub const RDMA_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Completions taken from the completion queue per poll at most.
pub const RDMA_POLL_BATCH_MAX: usize = 64;

const _: () = assert!(RDMA_ARENA_BYTES_DEFAULT >= VERB_BYTES_MAX as usize + RDMA_ARENA_ALIGN);
const _: () = assert!(RDMA_SEND_WR_MAX >= 2 * QP_IN_FLIGHT_MAX);
const _: () = assert!(RDMA_ARENA_ALIGN.is_power_of_two() && RDMA_ARENA_ALIGN >= 8);

/// Why an RDMA component could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    #[error("no RDMA device: {0}")]
    NoDevice(String),
    #[error("RDMA device error: {0}")]
    Device(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("QP exchange failed: {0}")]
    Exchange(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<RdmaError> for VerbError {
    fn from(e: RdmaError) -> VerbError {
        match e {
            RdmaError::Io(e) => VerbError::Disconnected(e.to_string()),
            other => VerbError::Refused(other.to_string()),
        }
    }
}
