//! [`MnClient`]: the one blocking client of the MN — its RPCs ([`super::proto`]) and the few
//! one-sided READs a start-up needs — for slow paths: start-up, a node's control thread, tools
//! and tests. Never for a worker core's loop, which posts RPCs like any other verb and reaps them
//! with its other completions.
//!
//! Every call waits with a deadline, so a memory node that never answers makes the call fail
//! with [`ClientError::Timeout`] instead of hanging. A `Response::Error` from the node becomes
//! [`ClientError::Refused`] with its code, and an answer of the wrong kind
//! [`ClientError::Unexpected`], so callers match on one error type. The queue pair must have
//! nothing else in flight when a call starts; after a timeout the request may still be answered
//! later, so the queue pair is best dropped.

use std::time::{Duration, Instant};

use dinomo_control::{ClusterMap, Incarnation, MapError};
use dinomo_pmem::{ChainId, Epoch, PoolOffset};

use super::proto::{ErrorCode, ProtoError, Request, Response};
use crate::fabric::{
    Completion, CompletionData, PostError, QueuePair, Verb, VerbError, WrId, wait_for_until,
};

/// How long a call waits for its answer by default: generous, because `MergeAll` and
/// `Failover` merge whole chains before they answer.
pub const RPC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// The work-request id the client posts with.
pub const CLIENT_WR: WrId = WrId(u64::MAX);
/// Map stores [`MnClient::store_next_map`] tries at most when other writers get in between.
pub const MAP_STORE_ATTEMPTS_MAX: usize = 8;

/// Why a call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the queue pair has {0} requests in flight; a blocking call needs it idle")]
    Busy(usize),
    #[error("cannot post the request: {0}")]
    Post(#[from] PostError),
    #[error("no reply from the memory node before the deadline")]
    Timeout,
    #[error("the request failed: {0}")]
    Verb(#[from] VerbError),
    #[error("the request completed without reply bytes ({0:?})")]
    NoReply(CompletionData),
    #[error("malformed reply from the memory node: {0}")]
    Malformed(#[from] ProtoError),
    #[error("the memory node refused the request ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the memory node answered {got} to {asked}")]
    Unexpected { asked: &'static str, got: String },
    #[error("the cluster map to store is invalid: {0}")]
    Map(#[from] MapError),
    #[error("the cluster map kept changing while a new one was stored ({0} tries)")]
    MapContended(usize),
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

/// The answer to `Attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    pub boot: u64,
    pub head: dinomo_pmem::BlockId,
    pub used: u64,
    pub next_seq: u64,
}

/// The controller lease as the memory node answers about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// 0: never granted.
    pub generation: u64,
    pub holder: String,
    /// Zero once expired.
    pub ttl_left: Duration,
}

impl Lease {
    /// Whether a controller holds the lease now.
    pub fn is_held(&self) -> bool {
        self.generation != 0 && !self.ttl_left.is_zero()
    }
}

/// The answer to `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnHello {
    pub boot: u64,
    pub uuid: [u8; 16],
    pub pool_size: u64,
}

/// A blocking client over a borrowed, idle queue pair; every call waits at most `timeout`.
pub struct MnClient<'q> {
    qp: &'q mut dyn QueuePair,
    timeout: Duration,
}

impl<'q> MnClient<'q> {
    /// A client whose calls wait up to [`RPC_TIMEOUT_DEFAULT`].
    pub fn new(qp: &'q mut dyn QueuePair) -> MnClient<'q> {
        MnClient::with_timeout(qp, RPC_TIMEOUT_DEFAULT)
    }

    pub fn with_timeout(qp: &'q mut dyn QueuePair, timeout: Duration) -> MnClient<'q> {
        MnClient { qp, timeout }
    }

    /// The size of the registered region (the pool).
    pub fn region_len(&self) -> u64 {
        self.qp.region_len()
    }

    /// Sends `request` and waits for the answer.
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let bytes = self.exchange(Verb::Rpc {
            request: request.encode(),
        })?;
        match Response::decode(&bytes)? {
            Response::Error { code, message } => Err(ClientError::Refused { code, message }),
            response => Ok(response),
        }
    }

    /// Reads `len` bytes of the pool at `offset` with one READ.
    pub fn read(&mut self, offset: PoolOffset, len: u32) -> Result<Vec<u8>, ClientError> {
        self.exchange(Verb::Read {
            remote: offset,
            len,
        })
    }

    /// `Hello`: the node's boot and pool identity. It binds this connection to `incarnation`
    /// (`Incarnation::NONE`: an anonymous connection, which may not attach chains).
    pub fn hello(&mut self, incarnation: Incarnation) -> Result<MnHello, ClientError> {
        let request = Request::Hello {
            version: super::proto::PROTO_VERSION,
            incarnation,
        };
        match self.call(&request)? {
            Response::Hello {
                boot,
                uuid,
                pool_size,
                ..
            } => Ok(MnHello {
                boot,
                uuid,
                pool_size,
            }),
            other => Err(unexpected("hello", &other)),
        }
    }

    /// `Attach`: starts writing `chain` (the connection must have said hello as the incarnation
    /// the cluster map gives the chain to).
    pub fn attach(&mut self, chain: ChainId) -> Result<Attached, ClientError> {
        match self.call(&Request::Attach { chain })? {
            Response::Attached {
                boot,
                head,
                used,
                next_seq,
            } => Ok(Attached {
                boot,
                head,
                used,
                next_seq,
            }),
            other => Err(unexpected("attach", &other)),
        }
    }

    /// The stored cluster map: its epoch and payload, if one is stored.
    pub fn cluster_map(&mut self) -> Result<Option<(Epoch, Vec<u8>)>, ClientError> {
        match self.call(&Request::GetClusterMap)? {
            Response::ClusterMap(map) => Ok(map),
            other => Err(unexpected("a map request", &other)),
        }
    }

    /// Stores a cluster map if the stored one still has epoch `expected`, as the holder of
    /// controller lease `lease` (0: no controller; see [`Request::PutClusterMap`]).
    pub fn put_cluster_map(
        &mut self,
        expected: Epoch,
        lease: u64,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        match self.call(&Request::PutClusterMap {
            expected,
            lease,
            payload,
        })? {
            Response::Stored => Ok(()),
            other => Err(unexpected("storing the map", &other)),
        }
    }

    /// Stores the map `build` makes for the epoch after the stored one, reading the stored epoch
    /// again when another writer stored a map in between (up to [`MAP_STORE_ATTEMPTS_MAX`]
    /// times). Returns the stored map.
    pub fn store_next_map(
        &mut self,
        mut build: impl FnMut(Epoch) -> Result<ClusterMap, MapError>,
    ) -> Result<ClusterMap, ClientError> {
        for _ in 0..MAP_STORE_ATTEMPTS_MAX {
            let stored = self.cluster_map()?.map_or(Epoch::ZERO, |(epoch, _)| epoch);
            let map = build(stored.next().ok_or(MapError::EpochOverflow)?)?;
            match self.put_cluster_map(stored, 0, dinomo_control::encode(&map)) {
                Ok(()) => return Ok(map),
                Err(e) if e.code() == Some(ErrorCode::Stale) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::MapContended(MAP_STORE_ATTEMPTS_MAX))
    }

    /// Takes the controller lease as `holder` for `ttl_ms`.
    pub fn acquire_lease(&mut self, holder: &str, ttl_ms: u32) -> Result<Lease, ClientError> {
        self.lease_call(
            "a lease request",
            &Request::AcquireLease {
                holder: holder.to_owned(),
                ttl_ms,
            },
        )
    }

    /// Extends lease `generation` by `ttl_ms`.
    pub fn renew_lease(&mut self, generation: u64, ttl_ms: u32) -> Result<Lease, ClientError> {
        self.lease_call(
            "a lease renewal",
            &Request::RenewLease { generation, ttl_ms },
        )
    }

    /// Who holds the controller lease.
    pub fn lease(&mut self) -> Result<Lease, ClientError> {
        self.lease_call("a lease query", &Request::GetLease)
    }

    fn lease_call(&mut self, asked: &'static str, request: &Request) -> Result<Lease, ClientError> {
        match self.call(request)? {
            Response::Lease {
                generation,
                holder,
                ttl_left_ms,
            } => Ok(Lease {
                generation,
                holder,
                ttl_left: Duration::from_millis(u64::from(ttl_left_ms)),
            }),
            other => Err(unexpected(asked, &other)),
        }
    }

    /// The node's counters.
    pub fn stats(&mut self) -> Result<super::proto::MnStats, ClientError> {
        match self.call(&Request::Stats)? {
            Response::Stats(stats) => Ok(stats),
            other => Err(unexpected("a stats request", &other)),
        }
    }

    /// Posts one verb as [`CLIENT_WR`] and waits for its bytes.
    fn exchange(&mut self, verb: Verb) -> Result<Vec<u8>, ClientError> {
        let in_flight = self.qp.in_flight();
        if in_flight != 0 {
            return Err(ClientError::Busy(in_flight));
        }
        let deadline = Instant::now() + self.timeout;
        self.qp.post(CLIENT_WR, verb)?;
        // The queue pair was idle, so nothing else can complete meanwhile.
        let mut others: Vec<Completion> = Vec::new();
        let completion = wait_for_until(self.qp, CLIENT_WR, &mut others, deadline)
            .ok_or(ClientError::Timeout)?;
        match completion.result? {
            CompletionData::Bytes(bytes) => Ok(bytes),
            other => Err(ClientError::NoReply(other)),
        }
    }
}

fn unexpected(asked: &'static str, got: &Response) -> ClientError {
    ClientError::Unexpected {
        asked,
        got: format!("{got:?}"),
    }
}

/// Sends `request` on `qp`, which must have nothing else in flight, and waits up to
/// [`RPC_TIMEOUT_DEFAULT`] for the answer.
pub fn rpc(qp: &mut dyn QueuePair, request: &Request) -> Result<Response, ClientError> {
    MnClient::new(qp).call(request)
}

/// [`rpc`] with a timeout of its own.
pub fn rpc_timeout(
    qp: &mut dyn QueuePair,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    MnClient::with_timeout(qp, timeout).call(request)
}
