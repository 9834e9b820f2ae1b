//! Named limits of the fabric.

/// Requests outstanding per queue pair at most.
pub const QP_IN_FLIGHT_MAX: usize = 256;
/// Largest READ or WRITE payload.
pub const VERB_BYTES_MAX: u64 = 16 << 20;
/// Largest RPC request or reply.
pub const RPC_BYTES_MAX: u64 = 1 << 20;
/// Verbs in one doorbell batch at most.
pub const DOORBELL_VERBS_MAX: usize = 64;

const _: () = assert!(DOORBELL_VERBS_MAX <= QP_IN_FLIGHT_MAX);
