//! A small blocking client of the MN RPCs ([`super::proto`]) for slow paths — start-up, control
//! commands, tools and tests — never for a worker core's loop, which posts RPCs like any other
//! verb and reaps them with its other completions.
//!
//! Every call waits with a deadline, so a memory node that never answers makes the call fail
//! with [`ClientError::Timeout`] instead of hanging. A `Response::Error` from the node becomes
//! [`ClientError::Refused`] with its code, so callers match on one error type.

use std::time::{Duration, Instant};

use super::proto::{ErrorCode, ProtoError, Request, Response};
use crate::fabric::{
    Completion, CompletionData, PostError, QueuePair, Verb, VerbError, WrId, wait_for_until,
};

/// How long [`rpc`] waits for a reply: generous, because `MergeAll` and `Failover` merge whole
/// chains before they answer.
pub const RPC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// The work-request id [`rpc`] and [`rpc_timeout`] post with.
pub const RPC_WR: WrId = WrId(u64::MAX);

/// Why an RPC did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the queue pair has {0} requests in flight; a blocking RPC needs it idle")]
    Busy(usize),
    #[error("cannot post the RPC: {0}")]
    Post(#[from] PostError),
    #[error("no reply from the memory node before the deadline")]
    Timeout,
    #[error("the RPC failed: {0}")]
    Verb(#[from] VerbError),
    #[error("the RPC completed without reply bytes ({0:?})")]
    NoReply(CompletionData),
    #[error("malformed reply from the memory node: {0}")]
    Malformed(#[from] ProtoError),
    #[error("the memory node refused the request ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
}

impl ClientError {
    /// The node's error code, if the node answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Sends `request` on `qp`, which must have nothing else in flight, and waits up to
/// [`RPC_TIMEOUT_DEFAULT`] for the answer.
pub fn rpc(qp: &mut dyn QueuePair, request: &Request) -> Result<Response, ClientError> {
    rpc_timeout(qp, request, RPC_TIMEOUT_DEFAULT)
}

/// [`rpc`] with a timeout of its own. After a timeout the request may still be answered later,
/// so the queue pair is best dropped.
pub fn rpc_timeout(
    qp: &mut dyn QueuePair,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let in_flight = qp.in_flight();
    if in_flight != 0 {
        return Err(ClientError::Busy(in_flight));
    }
    let mut others = Vec::new();
    rpc_with(qp, RPC_WR, request, Instant::now() + timeout, &mut others)
}

/// Sends `request` as work request `wr` on a queue pair that may have other requests in flight,
/// and waits until `deadline`; their completions reaped meanwhile go to `others` (and one of
/// `wr` already there is taken from it).
pub fn rpc_with(
    qp: &mut dyn QueuePair,
    wr: WrId,
    request: &Request,
    deadline: Instant,
    others: &mut Vec<Completion>,
) -> Result<Response, ClientError> {
    qp.post(
        wr,
        Verb::Rpc {
            request: request.encode(),
        },
    )?;
    let completion = wait_for_until(qp, wr, others, deadline).ok_or(ClientError::Timeout)?;
    match completion.result? {
        CompletionData::Bytes(reply) => match Response::decode(&reply)? {
            Response::Error { code, message } => Err(ClientError::Refused { code, message }),
            response => Ok(response),
        },
        other => Err(ClientError::NoReply(other)),
    }
}
