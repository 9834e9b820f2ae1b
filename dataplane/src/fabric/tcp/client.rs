//! The KN side of the tcp fabric: a queue pair over one non-blocking connection, and the RPC
//! forwarder built on it.
//!
//! A [`TcpQp`] encodes a doorbell batch into its output buffer and writes as much as the socket
//! takes at once; the rest goes out on later posts and polls, so posting never blocks. `poll`
//! reads what has arrived and decodes whole frames only. Completions are matched to the work
//! requests still outstanding; a frame that matches none, or any undecodable frame, means the
//! server cannot be trusted, so the connection is dropped. Once disconnected, every outstanding
//! request completes with [`VerbError::Disconnected`] and later posts are refused, so that a
//! caller waiting for a completion always gets one.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::frame::{self, CloseCode, Payload, Response};
use super::{TCP_CONNECT_TIMEOUT_DEFAULT, TCP_FORWARD_TIMEOUT_DEFAULT, TCP_RECV_CHUNK_BYTES};
use crate::fabric::{
    Completion, CompletionData, Fabric, PeerId, PostError, QpCounters, QueuePair, Verb, VerbError,
    VerbKind, WrId, check_batch,
};
use crate::mn::rpc_pool::RpcService;

/// The `tcp` fabric as seen by a KN: the MN's address and the cluster token.
#[derive(Clone)]
pub struct TcpFabric {
    addr: SocketAddr,
    token: Arc<[u8]>,
    connect_timeout: Duration,
}

impl fmt::Debug for TcpFabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("TcpFabric")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TcpFabric {
    /// A fabric whose queue pairs connect to the verbs server at `addr` with `token`.
    pub fn new(addr: SocketAddr, token: impl Into<Vec<u8>>) -> TcpFabric {
        TcpFabric {
            addr,
            token: token.into().into(),
            connect_timeout: TCP_CONNECT_TIMEOUT_DEFAULT,
        }
    }

    /// Sets how long connecting and the handshake may take.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> TcpFabric {
        self.connect_timeout = timeout;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new queue pair of the concrete type: connects and completes the handshake (blocking, up
    /// to the connect timeout).
    pub fn connect_tcp(&self) -> Result<TcpQp, VerbError> {
        if self.token.len() > frame::TOKEN_BYTES_MAX {
            return Err(VerbError::Refused(format!(
                "the cluster token is longer than {} bytes",
                frame::TOKEN_BYTES_MAX
            )));
        }
        let lost = |e: io::Error| VerbError::Disconnected(format!("{}: {e}", self.addr));
        let mut stream =
            TcpStream::connect_timeout(&self.addr, self.connect_timeout).map_err(lost)?;
        stream.set_nodelay(true).map_err(lost)?;
        stream
            .set_read_timeout(Some(self.connect_timeout))
            .map_err(lost)?;
        stream
            .set_write_timeout(Some(self.connect_timeout))
            .map_err(lost)?;
        let mut hello = Vec::new();
        frame::put_hello(&mut hello, frame::PROTOCOL_VERSION, &self.token);
        stream.write_all(&hello).map_err(lost)?;
        let region_len = read_welcome(&mut stream).map_err(|e| match e {
            Handshake::Io(e) => lost(e),
            Handshake::Refused(m) => VerbError::Refused(m),
        })?;
        stream.set_read_timeout(None).map_err(lost)?;
        stream.set_write_timeout(None).map_err(lost)?;
        stream.set_nonblocking(true).map_err(lost)?;
        Ok(TcpQp {
            stream,
            region_len,
            out: Vec::new(),
            out_sent: 0,
            input: vec![0; TCP_RECV_CHUNK_BYTES],
            in_start: 0,
            in_end: 0,
            outstanding: HashMap::new(),
            outstanding_count: 0,
            ready: VecDeque::new(),
            lost: None,
            counters: QpCounters::default(),
        })
    }
}

impl Fabric for TcpFabric {
    fn connect(&self) -> Result<Box<dyn QueuePair>, VerbError> {
        Ok(Box::new(self.connect_tcp()?))
    }
    fn name(&self) -> &'static str {
        "tcp"
    }
}

enum Handshake {
    Io(io::Error),
    Refused(String),
}

/// Reads the server's answer to HELLO: WELCOME gives the region's size, CLOSE the reason.
fn read_welcome(stream: &mut TcpStream) -> Result<u64, Handshake> {
    let mut prefix = [0u8; frame::LEN_BYTES];
    stream.read_exact(&mut prefix).map_err(Handshake::Io)?;
    let len = u32::from_le_bytes(prefix) as usize;
    // A handshake answer is small; a longer one is not from a dinomo server.
    if len == 0 || len > frame::MESSAGE_BYTES_MAX + 16 {
        return Err(Handshake::Refused(format!(
            "the server's handshake answer of {len} bytes is not a dinomo frame"
        )));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(Handshake::Io)?;
    match frame::decode_response(&body) {
        Ok(Response::Welcome {
            version,
            region_len,
        }) if version == frame::PROTOCOL_VERSION => Ok(region_len),
        Ok(Response::Welcome { version, .. }) => Err(Handshake::Refused(format!(
            "the server speaks protocol version {version}"
        ))),
        Ok(Response::Close { code, message }) => {
            Err(Handshake::Refused(close_reason(code, &message)))
        }
        Ok(other) => Err(Handshake::Refused(format!(
            "unexpected handshake answer {other:?}"
        ))),
        Err(e) => Err(Handshake::Refused(format!("bad handshake answer: {e}"))),
    }
}

fn close_reason(code: u8, message: &str) -> String {
    match CloseCode::from_u8(code) {
        Some(code) => format!("closed by the memory node ({code:?}): {message}"),
        None => format!("closed by the memory node (code {code}): {message}"),
    }
}

/// A queue pair of the tcp fabric: one connection to the verbs server.
pub struct TcpQp {
    stream: TcpStream,
    region_len: u64,
    /// Encoded requests not yet written; `out_sent` bytes of it are already on the wire.
    out: Vec<u8>,
    out_sent: usize,
    /// Received bytes `input[in_start..in_end]` not yet decoded; the vector's length is its
    /// capacity for reads.
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Work requests sent and not yet answered, with their kind, counted per id (an id may be
    /// reused while in flight).
    outstanding: HashMap<u64, (VerbKind, u32)>,
    outstanding_count: usize,
    /// Completions produced on this side: requests too large to send, and those lost with the
    /// connection.
    ready: VecDeque<Completion>,
    /// Why the connection is gone, once it is.
    lost: Option<String>,
    counters: QpCounters,
}

impl fmt::Debug for TcpQp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpQp")
            .field("peer", &self.stream.peer_addr().ok())
            .field("in_flight", &self.in_flight())
            .field("lost", &self.lost)
            .finish()
    }
}

impl TcpQp {
    /// Why the connection is lost, if it is.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// Blocks until the socket is readable (completions may have arrived) or `timeout` passes;
    /// for threads that may sleep (the RPC forwarder, tests), not for worker cores.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        if self.lost.is_some() || !self.ready.is_empty() {
            return true;
        }
        let mut fds = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is one valid, initialized pollfd that lives across the call, and the
        // count passed is 1; poll only writes its `revents` field.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        n > 0
    }

    /// Marks the connection lost: every outstanding request completes with `Disconnected`.
    fn lose(&mut self, reason: String) {
        if self.lost.is_some() {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        for (wr, (kind, count)) in self.outstanding.drain() {
            for _ in 0..count {
                self.ready.push_back(Completion {
                    wr: WrId(wr),
                    kind,
                    result: Err(VerbError::Disconnected(reason.clone())),
                });
            }
        }
        self.outstanding_count = 0;
        self.out = Vec::new();
        self.out_sent = 0;
        self.lost = Some(reason);
    }

    /// Writes pending requests until the socket would block.
    fn flush(&mut self) {
        while self.out_sent < self.out.len() && self.lost.is_none() {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(0) => self.lose("the connection to the memory node closed".into()),
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.lose(format!("send to the memory node failed: {e}")),
            }
        }
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
            if self.out.capacity() > 4 * TCP_RECV_CHUNK_BYTES {
                self.out.shrink_to(TCP_RECV_CHUNK_BYTES);
            }
        }
    }

    /// Decodes one complete frame at the front of the input, if there is one. Returns false if
    /// more bytes are needed (after making room for them).
    fn decode_one(&mut self) -> bool {
        let avail = &self.input[self.in_start..self.in_end];
        let Some(len) = frame::body_len(avail) else {
            self.make_room(frame::LEN_BYTES);
            return false;
        };
        if len == 0 || len > frame::FRAME_BODY_BYTES_MAX {
            self.lose(format!("the memory node sent a frame of {len} bytes"));
            return false;
        }
        let total = frame::LEN_BYTES + len;
        if avail.len() < total {
            self.make_room(total);
            return false;
        }
        let body_at = self.in_start + frame::LEN_BYTES;
        self.in_start += total;
        let body = &self.input[body_at..body_at + len];
        let completion = match frame::decode_response(body) {
            Ok(Response::Completion { wr, kind, result }) => Completion {
                wr: WrId(wr),
                kind,
                result: result.map(|p| match p {
                    Payload::None => CompletionData::None,
                    Payload::Bytes(b) => CompletionData::Bytes(b.to_vec()),
                    Payload::Word(w) => CompletionData::Word(w),
                }),
            },
            Ok(Response::Close { code, message }) => {
                self.lose(close_reason(code, &message));
                return false;
            }
            Ok(other) => {
                self.lose(format!("unexpected frame from the memory node: {other:?}"));
                return false;
            }
            Err(e) => {
                self.lose(format!("bad frame from the memory node: {e}"));
                return false;
            }
        };
        match self.outstanding.get_mut(&completion.wr.0) {
            Some((_, count)) if *count > 1 => *count -= 1,
            Some(_) => {
                self.outstanding.remove(&completion.wr.0);
            }
            None => {
                self.lose(format!(
                    "the memory node answered work request {} that is not in flight",
                    completion.wr.0
                ));
                return false;
            }
        }
        self.outstanding_count -= 1;
        self.ready.push_back(completion);
        true
    }

    /// Makes `input` able to hold `total` bytes from `in_start`, moving undecoded bytes to the
    /// front and growing the buffer for a large frame.
    fn make_room(&mut self, total: usize) {
        if self.in_start > 0 {
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.input.len() < total {
            self.input.resize(total, 0);
        } else if self.in_end == 0 && self.input.len() > 4 * TCP_RECV_CHUNK_BYTES {
            self.input = vec![0; TCP_RECV_CHUNK_BYTES];
        }
    }

    /// Reads what the socket has; false when nothing more is there now.
    fn fill(&mut self) -> bool {
        if self.in_end == self.input.len() {
            self.make_room(self.input.len() + TCP_RECV_CHUNK_BYTES);
        }
        loop {
            match self.stream.read(&mut self.input[self.in_end..]) {
                Ok(0) => {
                    self.lose("the memory node closed the connection".into());
                    return false;
                }
                Ok(n) => {
                    self.in_end += n;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lose(format!("receive from the memory node failed: {e}"));
                    return false;
                }
            }
        }
    }
}

impl QueuePair for TcpQp {
    fn post_batch(&mut self, batch: Vec<(WrId, Verb)>) -> Result<(), PostError> {
        if let Some(reason) = &self.lost {
            return Err(PostError::Disconnected(reason.clone()));
        }
        check_batch(self.in_flight(), batch.len())?;
        if batch.is_empty() {
            return Ok(());
        }
        self.counters.doorbells += 1;
        for (wr, verb) in &batch {
            self.counters.count_post(verb);
            if let Err(error) = frame::request_fits(verb) {
                self.ready.push_back(Completion {
                    wr: *wr,
                    kind: verb.kind(),
                    result: Err(error),
                });
                continue;
            }
            frame::put_request(&mut self.out, *wr, verb);
            self.outstanding.entry(wr.0).or_insert((verb.kind(), 0)).1 += 1;
            self.outstanding_count += 1;
        }
        self.flush();
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        if self.lost.is_none() {
            self.flush();
            // Decode what is buffered first; read only when a frame is incomplete, and at most
            // until `max` completions are ready, so a poll does a bounded amount of work.
            while self.lost.is_none() && self.ready.len() < max && self.outstanding_count > 0 {
                if !self.decode_one() && (self.lost.is_some() || !self.fill()) {
                    break;
                }
            }
        }
        let mut n = 0;
        while n < max {
            let Some(c) = self.ready.pop_front() else {
                break;
            };
            self.counters.count_completion(&c);
            out.push(c);
            n += 1;
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.outstanding_count + self.ready.len()
    }

    fn counters(&self) -> QpCounters {
        self.counters
    }

    fn region_len(&self) -> u64 {
        self.region_len
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.stream.as_raw_fd())
    }
}

/// Sends RPCs to the MN's tcp server and waits for the replies: the RPC path of a fabric whose
/// verbs go elsewhere (the local fabric over a pool file that the MN process maps too, or
/// RDMA). It runs on RPC threads, which may block. Each local queue pair (`peer`) gets its own
/// connection, opened at its first RPC and closed when the queue pair is gone, so that the
/// memory node sees one peer per queue pair (a queue pair's incarnation binds its connection).
/// A connection that fails or times out is dropped, and with it that binding.
pub struct TcpRpcForwarder {
    fabric: TcpFabric,
    timeout: Duration,
    /// Each peer's connection; its lock serializes the peer's RPCs.
    conns: Mutex<HashMap<PeerId, Arc<Mutex<Option<TcpQp>>>>>,
    next_wr: AtomicU64,
}

impl fmt::Debug for TcpRpcForwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpRpcForwarder")
            .field("fabric", &self.fabric)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TcpRpcForwarder {
    /// A forwarder to the server of `fabric`.
    pub fn new(fabric: TcpFabric) -> TcpRpcForwarder {
        TcpRpcForwarder {
            fabric,
            timeout: TCP_FORWARD_TIMEOUT_DEFAULT,
            conns: Mutex::new(HashMap::new()),
            next_wr: AtomicU64::new(0),
        }
    }

    /// Sets how long a forwarded RPC may take.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> TcpRpcForwarder {
        self.timeout = timeout;
        self
    }

    fn slot(&self, peer: PeerId) -> Arc<Mutex<Option<TcpQp>>> {
        let mut conns = self
            .conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(conns.entry(peer).or_default())
    }

    /// One RPC on `qp`; `Err` with `keep == false` means the connection is unusable now.
    fn forward(&self, qp: &mut TcpQp, request: &[u8]) -> (Result<Vec<u8>, VerbError>, bool) {
        let wr = WrId(self.next_wr.fetch_add(1, Ordering::Relaxed));
        let posted = qp.post(
            wr,
            Verb::Rpc {
                request: request.to_vec(),
            },
        );
        if let Err(e) = posted {
            let e = match e {
                PostError::Invalid(e) => e,
                other => VerbError::Disconnected(other.to_string()),
            };
            return (Err(e), false);
        }
        let deadline = Instant::now() + self.timeout;
        let mut out = Vec::with_capacity(1);
        loop {
            if qp.poll(&mut out, 1) == 1 {
                let c = out.remove(0);
                let keep = !matches!(c.result, Err(VerbError::Disconnected(_)));
                let result = match c.result {
                    Ok(CompletionData::Bytes(reply)) => Ok(reply),
                    Ok(other) => Err(VerbError::Refused(format!(
                        "the memory node answered an RPC with {other:?}"
                    ))),
                    Err(e) => Err(e),
                };
                return (result, keep);
            }
            let now = Instant::now();
            if now >= deadline {
                // The reply may still come; this connection is dropped so it cannot be
                // mistaken for the answer to a later request.
                let e = VerbError::Refused(format!(
                    "no RPC reply from the memory node within {:?}",
                    self.timeout
                ));
                return (Err(e), false);
            }
            qp.wait_readable(deadline - now);
        }
    }
}

impl RpcService for TcpRpcForwarder {
    fn call(&self, peer: PeerId, request: &[u8]) -> Result<Vec<u8>, VerbError> {
        let slot = self.slot(peer);
        let mut conn = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let qp = match conn.as_mut() {
            Some(qp) => qp,
            None => conn.insert(self.fabric.connect_tcp()?),
        };
        let (result, keep) = self.forward(qp, request);
        if !keep {
            *conn = None;
        }
        result
    }

    fn disconnected(&self, peer: PeerId) {
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&peer);
    }
}
