//! The RPC protocol between KNs and the memory node: the requests that need the MN's CPU
//! (DESIGN.md §2). Everything else a KN does to the pool is a one-sided verb.
//!
//! Messages are little-endian binary: a tag byte, then the fields in order; variable-length
//! fields carry a u32 length first. Decoding checks every length against the named limits and
//! against the bytes present, so a malformed message is an error, never a panic or an unbounded
//! allocation. Requests and responses travel as the payload of the fabric's RPC verb.

use dinomo_control::Incarnation;
use dinomo_pmem::{BlockId, ChainId, Epoch, PoolOffset};

/// Version of this protocol, exchanged in `Hello`.
pub const PROTO_VERSION: u16 = 2;
/// Blocks one `AllocBlocks` may ask for.
pub const ALLOC_BLOCKS_MAX: u32 = 8;
/// Chains one `Failover` may name.
pub const FAILOVER_CHAINS_MAX: usize = 4096;
/// Longest key in an indirect-cell request.
pub const KEY_BYTES_MAX: usize = 65_535;
/// Longest cluster map payload.
pub const MAP_BYTES_MAX: usize = 1 << 20;
/// Longest error message.
pub const MESSAGE_BYTES_MAX: usize = 4096;
/// Longest address a controller may give as the lease holder.
pub const HOLDER_BYTES_MAX: usize = 255;
/// Shortest and longest controller lease, in milliseconds.
pub const LEASE_TTL_MS_MIN: u32 = 10;
pub const LEASE_TTL_MS_MAX: u32 = 60_000;

/// A request to the MN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Who are you: the MN's boot and pool identity, and the protocol version. A KN shows its
    /// incarnation, which binds this connection to it (`Incarnation::NONE`: an anonymous
    /// connection, which may read and ask for counters but not attach); a fenced incarnation is
    /// refused.
    Hello {
        version: u16,
        incarnation: Incarnation,
    },
    /// This connection's worker core starts writing chain `chain`. The MN checks that the stored
    /// cluster map gives the chain to this connection's incarnation and that no other live
    /// connection writes it, merges the chain through its persisted tail (so the writer starts
    /// with nothing unmerged), frees spares an earlier writer of the chain never linked,
    /// allocates a first block if the chain has none, records the incarnation in the log table,
    /// and answers with the head block, its `used` and the next sequence number.
    Attach { chain: ChainId },
    /// Hand chain `chain` up to `count` free blocks (RESERVED for it, not yet linked). Only the
    /// connection that attached the chain may ask.
    AllocBlocks { chain: ChainId, count: u32 },
    /// Merge chain `chain` through its persisted tail, head block included; answer when done.
    MergeAll { chain: ChainId },
    /// A KN died: merge each of its chains through its persisted tail; answer when done.
    Failover { chains: Vec<ChainId> },
    /// Put `key` behind an indirect cell (selective replication).
    InstallIndirect { key: Vec<u8> },
    /// Take `key` out from behind its indirect cell.
    RemoveIndirect { key: Vec<u8> },
    /// The cluster map stored in the pool.
    GetClusterMap,
    /// Store a cluster map: a compare-and-swap on the stored map's epoch. The MN decodes and
    /// validates `payload`, whose epoch must follow `expected`, which must be the stored epoch
    /// (`Epoch::ZERO`: none stored). Without a controller, a map may not take slots or chains
    /// from a live incarnation other than the writer's own; the incarnations it drops are
    /// fenced and their chains merged through their persisted tails before the map is
    /// stored.
    ///
    /// `lease` is the writer's controller lease generation (0: the writer is no controller).
    /// While a controller holds an unexpired lease, only it may store maps; it may take slots
    /// from live incarnations (it fences them first).
    PutClusterMap {
        expected: Epoch,
        lease: u64,
        payload: Vec<u8>,
    },
    /// Take the controller lease for `ttl_ms`, as `holder` (the address KNs reach the controller
    /// at): granted with a new, higher generation if nobody holds an unexpired lease.
    AcquireLease { holder: String, ttl_ms: u32 },
    /// Extend the lease of `generation` by `ttl_ms` from now; refused if another generation
    /// took the lease meanwhile.
    RenewLease { generation: u64, ttl_ms: u32 },
    /// Who holds the controller lease (KNs find the controller this way).
    GetLease,
    /// Counters for INFO.
    Stats,
}

/// Counters of the MN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MnStats {
    pub boot: u64,
    pub keys: i64,
    pub merged_entries: u64,
    pub merged_bytes: u64,
    pub blocks_total: u64,
    pub blocks_free: u64,
    pub blocks_unlinked: u64,
    pub blocks_freed: u64,
    pub index_pairs: u64,
    pub index_resizes: u64,
    pub rpcs: u64,
}

/// Why the MN refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest = 1,
    NoSpace = 2,
    Corrupt = 3,
    /// An expected epoch that is not the stored one.
    Stale = 4,
    Internal = 5,
    /// A map change that would take slots or chains from a live incarnation, or a chain another
    /// live connection writes.
    Conflict = 6,
    /// The cluster map does not give the chain to this connection's incarnation.
    NotOwner = 7,
    /// The incarnation was fenced.
    Fenced = 8,
}

/// The MN's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Hello {
        version: u16,
        boot: u64,
        uuid: [u8; 16],
        pool_size: u64,
    },
    Attached {
        boot: u64,
        head: BlockId,
        used: u64,
        next_seq: u64,
    },
    Blocks(Vec<BlockId>),
    Merged {
        entries: u64,
        bytes: u64,
        blocks_unlinked: u64,
        blocks_freed: u64,
    },
    Cell(Option<PoolOffset>),
    Removed(bool),
    ClusterMap(Option<(Epoch, Vec<u8>)>),
    /// The controller lease: its generation (0: never granted), holder, and how long it has left
    /// (0: expired).
    Lease {
        generation: u64,
        holder: String,
        ttl_left_ms: u32,
    },
    Stored,
    Stats(MnStats),
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("message truncated")]
    Truncated,
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("bad field: {0}")]
    Bad(&'static str),
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.at.checked_add(n).ok_or(ProtoError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(ProtoError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(
            self.take(2)?
                .try_into()
                .map_err(|_| ProtoError::Truncated)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| ProtoError::Truncated)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| ProtoError::Truncated)?,
        ))
    }
    fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, ProtoError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(ProtoError::TooLong { what, len, max });
        }
        Ok(self.take(len)?.to_vec())
    }
    fn string(&mut self, what: &'static str, max: usize) -> Result<String, ProtoError> {
        String::from_utf8(self.bytes(what, max)?).map_err(|_| ProtoError::Bad("not UTF-8"))
    }
    fn ttl(&mut self) -> Result<u32, ProtoError> {
        let ttl = self.u32()?;
        if !(LEASE_TTL_MS_MIN..=LEASE_TTL_MS_MAX).contains(&ttl) {
            return Err(ProtoError::Bad("lease time"));
        }
        Ok(ttl)
    }
    fn end(&self) -> Result<(), ProtoError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            n => Err(ProtoError::Trailing(n)),
        }
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            Request::Hello {
                version,
                incarnation,
            } => w.u8(1).u16(*version).u64(incarnation.0),
            Request::Attach { chain } => w.u8(2).u32(chain.0),
            Request::AllocBlocks { chain, count } => w.u8(3).u32(chain.0).u32(*count),
            Request::MergeAll { chain } => w.u8(4).u32(chain.0),
            Request::Failover { chains } => {
                w.u8(5).u32(chains.len() as u32);
                for c in chains {
                    w.u32(c.0);
                }
                &mut w
            }
            Request::InstallIndirect { key } => w.u8(6).bytes(key),
            Request::RemoveIndirect { key } => w.u8(7).bytes(key),
            Request::GetClusterMap => w.u8(8),
            Request::PutClusterMap {
                expected,
                lease,
                payload,
            } => w.u8(9).u32(expected.0).u64(*lease).bytes(payload),
            Request::AcquireLease { holder, ttl_ms } => {
                w.u8(11).bytes(holder.as_bytes()).u32(*ttl_ms)
            }
            Request::RenewLease { generation, ttl_ms } => w.u8(12).u64(*generation).u32(*ttl_ms),
            Request::GetLease => w.u8(13),
            Request::Stats => w.u8(10),
        };
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Request, ProtoError> {
        let mut r = Reader { b, at: 0 };
        let req = match r.u8()? {
            1 => Request::Hello {
                version: r.u16()?,
                incarnation: Incarnation(r.u64()?),
            },
            2 => Request::Attach {
                chain: ChainId(r.u32()?),
            },
            3 => {
                let chain = ChainId(r.u32()?);
                let count = r.u32()?;
                if count == 0 || count > ALLOC_BLOCKS_MAX {
                    return Err(ProtoError::Bad("block count"));
                }
                Request::AllocBlocks { chain, count }
            }
            4 => Request::MergeAll {
                chain: ChainId(r.u32()?),
            },
            5 => {
                let n = r.u32()? as usize;
                if n > FAILOVER_CHAINS_MAX {
                    return Err(ProtoError::TooLong {
                        what: "chain list",
                        len: n,
                        max: FAILOVER_CHAINS_MAX,
                    });
                }
                let mut chains = Vec::with_capacity(n.min(b.len() / 4));
                for _ in 0..n {
                    chains.push(ChainId(r.u32()?));
                }
                Request::Failover { chains }
            }
            6 => Request::InstallIndirect {
                key: r.bytes("key", KEY_BYTES_MAX)?,
            },
            7 => Request::RemoveIndirect {
                key: r.bytes("key", KEY_BYTES_MAX)?,
            },
            8 => Request::GetClusterMap,
            9 => Request::PutClusterMap {
                expected: Epoch(r.u32()?),
                lease: r.u64()?,
                payload: r.bytes("cluster map", MAP_BYTES_MAX)?,
            },
            11 => Request::AcquireLease {
                holder: r.string("lease holder", HOLDER_BYTES_MAX)?,
                ttl_ms: r.ttl()?,
            },
            12 => Request::RenewLease {
                generation: r.u64()?,
                ttl_ms: r.ttl()?,
            },
            13 => Request::GetLease,
            10 => Request::Stats,
            tag => return Err(ProtoError::UnknownTag(tag)),
        };
        r.end()?;
        Ok(req)
    }
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        let mut message = message.into();
        if message.len() > MESSAGE_BYTES_MAX {
            let mut cut = MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Response::Error { code, message }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            Response::Hello {
                version,
                boot,
                uuid,
                pool_size,
            } => {
                w.u8(1).u16(*version).u64(*boot);
                w.0.extend_from_slice(uuid);
                w.u64(*pool_size)
            }
            Response::Attached {
                boot,
                head,
                used,
                next_seq,
            } => w.u8(2).u64(*boot).u32(head.0).u64(*used).u64(*next_seq),
            Response::Blocks(blocks) => {
                w.u8(3).u32(blocks.len() as u32);
                for b in blocks {
                    w.u32(b.0);
                }
                &mut w
            }
            Response::Merged {
                entries,
                bytes,
                blocks_unlinked,
                blocks_freed,
            } => w
                .u8(4)
                .u64(*entries)
                .u64(*bytes)
                .u64(*blocks_unlinked)
                .u64(*blocks_freed),
            Response::Cell(cell) => w.u8(5).u64(cell.map_or(0, |c| c.get())),
            Response::Removed(removed) => w.u8(6).u8(u8::from(*removed)),
            Response::ClusterMap(None) => w.u8(7).u8(0),
            Response::ClusterMap(Some((epoch, payload))) => {
                w.u8(7).u8(1).u32(epoch.0).bytes(payload)
            }
            Response::Stored => w.u8(8),
            Response::Stats(s) => w
                .u8(9)
                .u64(s.boot)
                .u64(s.keys as u64)
                .u64(s.merged_entries)
                .u64(s.merged_bytes)
                .u64(s.blocks_total)
                .u64(s.blocks_free)
                .u64(s.blocks_unlinked)
                .u64(s.blocks_freed)
                .u64(s.index_pairs)
                .u64(s.index_resizes)
                .u64(s.rpcs),
            Response::Error { code, message } => w.u8(10).u8(*code as u8).bytes(message.as_bytes()),
            Response::Lease {
                generation,
                holder,
                ttl_left_ms,
            } => w
                .u8(11)
                .u64(*generation)
                .bytes(holder.as_bytes())
                .u32(*ttl_left_ms),
        };
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Response, ProtoError> {
        let mut r = Reader { b, at: 0 };
        let resp = match r.u8()? {
            1 => {
                let version = r.u16()?;
                let boot = r.u64()?;
                let uuid: [u8; 16] = r.take(16)?.try_into().map_err(|_| ProtoError::Truncated)?;
                Response::Hello {
                    version,
                    boot,
                    uuid,
                    pool_size: r.u64()?,
                }
            }
            2 => Response::Attached {
                boot: r.u64()?,
                head: BlockId(r.u32()?),
                used: r.u64()?,
                next_seq: r.u64()?,
            },
            3 => {
                let n = r.u32()?;
                if n > ALLOC_BLOCKS_MAX {
                    return Err(ProtoError::TooLong {
                        what: "block list",
                        len: n as usize,
                        max: ALLOC_BLOCKS_MAX as usize,
                    });
                }
                let mut blocks = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    blocks.push(BlockId(r.u32()?));
                }
                Response::Blocks(blocks)
            }
            4 => Response::Merged {
                entries: r.u64()?,
                bytes: r.u64()?,
                blocks_unlinked: r.u64()?,
                blocks_freed: r.u64()?,
            },
            5 => Response::Cell(match r.u64()? {
                0 => None,
                off => Some(PoolOffset(off)),
            }),
            6 => Response::Removed(r.u8()? != 0),
            7 => match r.u8()? {
                0 => Response::ClusterMap(None),
                1 => Response::ClusterMap(Some((
                    Epoch(r.u32()?),
                    r.bytes("cluster map", MAP_BYTES_MAX)?,
                ))),
                _ => return Err(ProtoError::Bad("cluster map presence")),
            },
            8 => Response::Stored,
            9 => Response::Stats(MnStats {
                boot: r.u64()?,
                keys: r.u64()? as i64,
                merged_entries: r.u64()?,
                merged_bytes: r.u64()?,
                blocks_total: r.u64()?,
                blocks_free: r.u64()?,
                blocks_unlinked: r.u64()?,
                blocks_freed: r.u64()?,
                index_pairs: r.u64()?,
                index_resizes: r.u64()?,
                rpcs: r.u64()?,
            }),
            10 => {
                let code = match r.u8()? {
                    1 => ErrorCode::BadRequest,
                    2 => ErrorCode::NoSpace,
                    3 => ErrorCode::Corrupt,
                    4 => ErrorCode::Stale,
                    6 => ErrorCode::Conflict,
                    7 => ErrorCode::NotOwner,
                    8 => ErrorCode::Fenced,
                    _ => ErrorCode::Internal,
                };
                let message =
                    String::from_utf8_lossy(&r.bytes("message", MESSAGE_BYTES_MAX)?).into_owned();
                Response::Error { code, message }
            }
            11 => Response::Lease {
                generation: r.u64()?,
                holder: r.string("lease holder", HOLDER_BYTES_MAX)?,
                ttl_left_ms: r.u32()?,
            },
            tag => return Err(ProtoError::UnknownTag(tag)),
        };
        r.end()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let requests = vec![
            Request::Hello {
                version: 1,
                incarnation: Incarnation(0xfeed),
            },
            Request::Attach { chain: ChainId(3) },
            Request::AllocBlocks {
                chain: ChainId(1),
                count: 2,
            },
            Request::MergeAll { chain: ChainId(7) },
            Request::Failover {
                chains: vec![ChainId(1), ChainId(2)],
            },
            Request::InstallIndirect {
                key: b"hot".to_vec(),
            },
            Request::RemoveIndirect { key: vec![] },
            Request::GetClusterMap,
            Request::PutClusterMap {
                expected: Epoch(5),
                lease: 9,
                payload: vec![1, 2, 3],
            },
            Request::AcquireLease {
                holder: "127.0.0.1:7100".into(),
                ttl_ms: 500,
            },
            Request::RenewLease {
                generation: 3,
                ttl_ms: LEASE_TTL_MS_MAX,
            },
            Request::GetLease,
            Request::Stats,
        ];
        for r in requests {
            assert_eq!(Request::decode(&r.encode()), Ok(r.clone()));
        }
        let responses = vec![
            Response::Hello {
                version: 1,
                boot: 4,
                uuid: [9; 16],
                pool_size: 1 << 30,
            },
            Response::Attached {
                boot: 4,
                head: BlockId(8),
                used: 4096,
                next_seq: 77,
            },
            Response::Blocks(vec![BlockId(1), BlockId(2)]),
            Response::Merged {
                entries: 1,
                bytes: 2,
                blocks_unlinked: 3,
                blocks_freed: 4,
            },
            Response::Cell(Some(PoolOffset(4096))),
            Response::Cell(None),
            Response::Removed(true),
            Response::ClusterMap(None),
            Response::ClusterMap(Some((Epoch(3), vec![7; 10]))),
            Response::error(ErrorCode::Conflict, "live"),
            Response::Lease {
                generation: 4,
                holder: "c:1".into(),
                ttl_left_ms: 0,
            },
            Response::error(ErrorCode::NotOwner, "not yours"),
            Response::error(ErrorCode::Fenced, "fenced"),
            Response::Stored,
            Response::Stats(MnStats {
                keys: -1,
                rpcs: 5,
                ..MnStats::default()
            }),
            Response::error(ErrorCode::NoSpace, "full"),
        ];
        for r in responses {
            assert_eq!(Response::decode(&r.encode()), Ok(r.clone()));
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(Request::decode(&[]), Err(ProtoError::Truncated));
        assert_eq!(Request::decode(&[42]), Err(ProtoError::UnknownTag(42)));
        assert_eq!(
            Request::decode(&[3, 0, 0, 0, 0, 9, 0, 0, 0]),
            Err(ProtoError::Bad("block count"))
        );
        assert!(matches!(
            Request::decode(&[5, 255, 255, 255, 255]),
            Err(ProtoError::TooLong { .. })
        ));
        assert!(matches!(
            Request::decode(&[6, 0, 0, 1, 0]),
            Err(ProtoError::TooLong { .. })
        ));
        assert_eq!(Request::decode(&[8, 0]), Err(ProtoError::Trailing(1)));
        assert_eq!(
            Request::decode(&[12, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
            Err(ProtoError::Bad("lease time"))
        );
        // Arbitrary bytes never panic.
        let mut state = 7u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
