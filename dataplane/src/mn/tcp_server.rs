//! The MN side of the tcp fabric: the verbs server and its io_uring network loop. The KN side
//! ([`crate::fabric::tcp::TcpFabric`]) and the frame codec ([`crate::fabric::tcp::frame`]) live
//! in the fabric; this module only serves, executing verbs through [`crate::mn::verbs`] and RPCs
//! on the MN's [`RpcPool`].
//!
//! One loop thread owns the listener, every connection and the ring. It keeps at most one
//! receive and one send in flight per connection, an accept on the listener and a read on an
//! eventfd that the RPC threads signal when they have pushed a reply into the loop's channel. A
//! connection's frames are decoded and executed in arrival order as soon as a receive completes;
//! one-sided verbs run inline on the pool (they are copies and single atomics), RPCs go to the
//! RPC thread pool and their replies are sent when they come back.
//!
//! The ring ([`crate::sys::Ring`]) holds the buffer of every operation in flight: a receive takes
//! the connection's `input` and a send its `sending` bytes, and both come back with their
//! completions, so the loop cannot parse input the kernel may still be writing, nor swap output
//! it is still sending. Each connection records which of its two operations are in flight, and
//! is freed only when both have completed (closing one cancels them first), so that no operation
//! names a socket that has been closed and whose descriptor may have been reused. Completions
//! name their connection by slot and generation ([`crate::sys::Slots`]); accepts follow the
//! policy of [`crate::sys::Acceptor`], so running out of descriptors backs off instead of
//! spinning.
//!
//! Each connection moves through `Hello` (only a HELLO frame of bounded size is accepted, within
//! the handshake timeout), `Ready` (verbs), `Draining` (a CLOSE frame is flushed, the write side
//! shut, and input discarded until the peer closes or the drain timeout passes) and `Closing`
//! (waiting for cancelled operations). Nothing a peer sends can make the loop panic or touch
//! another connection; the worst it can do is be dropped.

#![forbid(unsafe_code)]

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dinomo_pmem::SharedBackend;

use crate::fabric::tcp::frame::{self, CloseCode, Request};
use crate::fabric::tcp::{
    TCP_CLOSING_MAX, TCP_CONN_RPCS_DEFAULT, TCP_CONNECTIONS_DEFAULT, TCP_CONNECTIONS_MAX,
    TCP_DRAIN_TIMEOUT, TCP_HANDSHAKE_TIMEOUT_DEFAULT, TCP_OUTPUT_PENDING_BYTES_MAX,
    TCP_RECV_CHUNK_BYTES, TCP_STALL_TIMEOUT_DEFAULT, TCP_TICK,
};
use crate::fabric::{PeerId, RPC_BYTES_MAX, RpcHandler, VerbError, VerbKind};
use crate::mn::rpc_pool::{HandlerService, RPC_THREADS_DEFAULT, RpcPool};
use crate::mn::verbs::{check_range, execute_cas, execute_faa, execute_write};
use crate::sys::{Acceptor, Event, EventFd, Op, Ring, RingMode, SlotId, Slots};

/// The ring slots of the listener and of the eventfd (connections use slots of their own table;
/// operations on fixed slots and on connections never share a kind, so they cannot be confused).
const LISTENER_SLOT: SlotId = SlotId::fixed(0);
const WAKE_SLOT: SlotId = SlotId::fixed(0);

/// Configuration of a [`TcpServer`].
#[derive(Clone)]
pub struct TcpServerConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port; see [`TcpServer::local_addr`]).
    pub bind: SocketAddr,
    /// The cluster token a client must show (1 to 256 bytes).
    pub token: Vec<u8>,
    /// Connections served at once; more are refused with a CLOSE frame.
    pub connections_max: usize,
    /// RPCs in flight per connection before the server stops reading its requests.
    pub conn_rpcs_max: usize,
    /// MN RPC threads (started only with a handler).
    pub rpc_threads: usize,
    /// Time a connection has for its handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may sit mid-frame or not read its responses.
    pub stall_timeout: Duration,
}

impl TcpServerConfig {
    /// The defaults, listening on `bind` and requiring `token`.
    pub fn new(bind: SocketAddr, token: impl Into<Vec<u8>>) -> TcpServerConfig {
        TcpServerConfig {
            bind,
            token: token.into(),
            connections_max: TCP_CONNECTIONS_DEFAULT,
            conn_rpcs_max: TCP_CONN_RPCS_DEFAULT,
            rpc_threads: RPC_THREADS_DEFAULT,
            handshake_timeout: TCP_HANDSHAKE_TIMEOUT_DEFAULT,
            stall_timeout: TCP_STALL_TIMEOUT_DEFAULT,
        }
    }

    fn validate(&self) -> Result<(), TcpServerError> {
        let bad = |m: String| Err(TcpServerError::Config(m));
        if self.token.is_empty() || self.token.len() > frame::TOKEN_BYTES_MAX {
            return bad(format!(
                "the cluster token must be 1 to {} bytes",
                frame::TOKEN_BYTES_MAX
            ));
        }
        if !(1..=TCP_CONNECTIONS_MAX).contains(&self.connections_max) {
            return bad(format!(
                "connections_max must be 1 to {TCP_CONNECTIONS_MAX}"
            ));
        }
        if !(1..=crate::fabric::QP_IN_FLIGHT_MAX).contains(&self.conn_rpcs_max) {
            return bad("conn_rpcs_max must be 1 to QP_IN_FLIGHT_MAX".into());
        }
        if self.handshake_timeout.is_zero() || self.stall_timeout.is_zero() {
            return bad("timeouts must not be zero".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for TcpServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("TcpServerConfig")
            .field("bind", &self.bind)
            .field("connections_max", &self.connections_max)
            .field("conn_rpcs_max", &self.conn_rpcs_max)
            .field("rpc_threads", &self.rpc_threads)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TcpServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Listen(io::Error),
    #[error("cannot set up io_uring: {0}")]
    Ring(io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
}

/// What a server has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpServerCounters {
    /// Connections accepted into a slot (including those later dropped).
    pub accepted: u64,
    /// Connections refused because the server was at its limit.
    pub refused: u64,
    /// Handshakes that succeeded.
    pub authenticated: u64,
    /// Connections the server dropped: bad handshake, wrong token, garbage, timeouts.
    pub dropped: u64,
    /// Connections that ended because the peer closed or failed.
    pub peer_closed: u64,
    /// Connections open now (handshaking or ready).
    pub open: u64,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    authenticated: AtomicU64,
    dropped: AtomicU64,
    peer_closed: AtomicU64,
    open: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running verbs server; dropping it shuts it down.
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    stats: Arc<Stats>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpServer")
            .field("addr", &self.addr)
            .field("counters", &self.counters())
            .finish()
    }
}

impl TcpServer {
    /// Binds, sets up the ring and starts the loop thread serving `backend`; RPCs go to
    /// `handler` (without one, they complete with `Refused`).
    pub fn start(
        backend: SharedBackend,
        handler: Option<Arc<dyn RpcHandler>>,
        config: TcpServerConfig,
    ) -> Result<TcpServer, TcpServerError> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind).map_err(TcpServerError::Listen)?;
        let addr = listener.local_addr().map_err(TcpServerError::Listen)?;
        let slots = config.connections_max + TCP_CLOSING_MAX;
        // Each slot has at most a receive, a send and two cancels in flight; the listener and
        // the eventfd two more operations and their cancels.
        let entries = (4 * slots + 8).next_power_of_two().min(1 << 14) as u32;
        let wake = Arc::new(EventFd::new().map_err(TcpServerError::Ring)?);
        let pool = match handler {
            Some(h) => Some(
                RpcPool::start(
                    Arc::new(HandlerService(h)),
                    config.rpc_threads,
                    config.connections_max * config.conn_rpcs_max,
                )
                .map_err(TcpServerError::Thread)?,
            ),
            None => None,
        };
        let reply_capacity = config.connections_max * config.conn_rpcs_max;
        let (reply_tx, replies) = crossbeam_channel::bounded(reply_capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let failure = Arc::new(Mutex::new(None));
        let region_len = backend.len();
        let failure_in_loop = Arc::clone(&failure);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let stop_in_loop = Arc::clone(&stop);
        let stats_in_loop = Arc::clone(&stats);
        let wake_in_loop = Arc::clone(&wake);
        let thread = std::thread::Builder::new()
            .name("dinomo-mn-tcp".into())
            .spawn(move || {
                // The ring is created on the thread that submits to it, which a single-issuer
                // ring requires.
                let ring = match Ring::new(entries, RingMode::SingleIssuer) {
                    Ok(ring) => ring,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut server = Loop {
                    ring,
                    listener: Some(listener),
                    acceptor: Acceptor::new(LISTENER_SLOT),
                    wake_in_flight: false,
                    conns: Slots::new(slots),
                    open: 0,
                    ctx: Ctx {
                        backend,
                        region_len,
                        token: config.token.clone(),
                        pool,
                        reply_tx,
                        rpcs_total: 0,
                        reply_capacity,
                        wake: wake_in_loop,
                        conn_rpcs_max: config.conn_rpcs_max,
                    },
                    replies,
                    config,
                    stop: stop_in_loop,
                    stopping: false,
                    stats: stats_in_loop,
                    next_tick: Instant::now() + TCP_TICK,
                    fence_seen: 0,
                };
                if let Err(e) = server.run() {
                    // Operations may still be in flight in a ring that no longer works; the
                    // ring leaks the buffers they name when it is dropped, rather than free
                    // memory the kernel might write.
                    *failure_in_loop
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(e.to_string());
                }
            })
            .map_err(TcpServerError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(TcpServerError::Ring(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(TcpServerError::Ring(io::Error::other(
                    "the loop thread ended before setting up its ring",
                )));
            }
        }
        Ok(TcpServer {
            addr,
            stop,
            wake,
            stats,
            failure,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server has seen so far.
    pub fn counters(&self) -> TcpServerCounters {
        let s = &self.stats;
        TcpServerCounters {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            authenticated: s.authenticated.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            peer_closed: s.peer_closed.load(Ordering::Relaxed),
            open: s.open.load(Ordering::Relaxed),
        }
    }

    /// Why the loop stopped on its own (an io_uring failure), if it did; the server then serves
    /// nothing until it is restarted.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Closes every connection and the listener, stops the RPC threads and waits for the loop.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.signal();
        if let Some(thread) = self.thread.take() {
            // The loop catches nothing that could panic from a peer; a join error would be a
            // bug in the loop, and the server is stopped either way.
            let _ = thread.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hello,
    Ready,
    Draining,
    Closing,
}

struct Conn {
    stream: TcpStream,
    /// The connection's name at the RPC handler, told when the connection is freed.
    peer: PeerId,
    state: State,
    /// Received bytes `input[in_start..in_end]` not yet decoded; the vector's length is what a
    /// receive may fill. While a receive is in flight the ring holds the vector.
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// The bytes being sent (`sending[sent..]` remain; the ring holds them while a send is in
    /// flight, `sending_len` is their length meanwhile) and those queued behind them.
    sending: Vec<u8>,
    sending_len: usize,
    sent: usize,
    queued: Vec<u8>,
    recv_in_flight: bool,
    send_in_flight: bool,
    /// Request decoding waits for output to drain or for an RPC slot.
    paused: bool,
    write_shut: bool,
    rpcs_in_flight: usize,
    /// Counted in `Loop::open` (handshaking or ready, not a refusal being flushed).
    counted: bool,
    opened_at: Instant,
    recv_progress_at: Instant,
    send_progress_at: Instant,
    drain_deadline: Instant,
}

impl Conn {
    fn output_pending(&self) -> usize {
        self.sending_len - self.sent + self.queued.len()
    }
}

/// What the frame handlers need besides the connection: split from `Loop` so that a frame can
/// be handled while the connection is borrowed.
struct Ctx {
    backend: SharedBackend,
    region_len: u64,
    token: Vec<u8>,
    pool: Option<RpcPool>,
    reply_tx: Sender<RpcDone>,
    /// RPCs submitted and not yet drained from the reply channel (over all connections, also
    /// those of connections closed meanwhile); never more than `reply_capacity`, so an RPC
    /// thread's `try_send` cannot find the channel full.
    rpcs_total: usize,
    reply_capacity: usize,
    wake: Arc<EventFd>,
    conn_rpcs_max: usize,
}

struct RpcDone {
    slot: SlotId,
    wr: u64,
    result: Result<Vec<u8>, VerbError>,
}

/// The outcome of handling one frame.
enum Step {
    Next,
    /// Stop decoding without consuming the frame (no RPC slot free).
    Pause,
    /// Drop the connection with this CLOSE frame.
    Fail(CloseCode, String),
}

struct Loop {
    // Dropped first: the ring cancels and reaps what is in flight while the sockets are open.
    ring: Ring,
    listener: Option<TcpListener>,
    acceptor: Acceptor,
    wake_in_flight: bool,
    conns: Slots<Conn>,
    /// Connections handshaking or ready.
    open: usize,
    ctx: Ctx,
    replies: Receiver<RpcDone>,
    config: TcpServerConfig,
    stop: Arc<AtomicBool>,
    stopping: bool,
    stats: Arc<Stats>,
    next_tick: Instant,
    /// The handler's fence generation when the connections were last checked for fences.
    fence_seen: u64,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        self.arm_wake()?;
        let mut events = Vec::with_capacity(256);
        loop {
            if self.stop.load(Ordering::Acquire) && !self.stopping {
                self.begin_stop()?;
            }
            if self.stopping && self.quiet() {
                return Ok(());
            }
            self.ring.submit_and_wait(TCP_TICK)?;
            self.ring.reap(&mut events);
            for event in events.drain(..) {
                self.complete(event)?;
            }
            self.close_fenced()?;
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + TCP_TICK;
                self.tick(now)?;
            }
        }
    }

    /// Whether nothing is left in flight after a stop.
    fn quiet(&self) -> bool {
        !self.acceptor.is_armed() && !self.wake_in_flight && self.conns.is_empty()
    }

    /// Keeps an accept posted (unless stopping, or backing off after running out of
    /// descriptors).
    fn arm_accept(&mut self) -> io::Result<()> {
        if self.stopping {
            return Ok(());
        }
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        // The listener stays open until the accept has completed (it is dropped only after).
        self.acceptor.arm(&mut self.ring, listener)
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_in_flight || self.stopping {
            return Ok(());
        }
        self.ring.read_eventfd(&self.ctx.wake, WAKE_SLOT)?;
        self.wake_in_flight = true;
        Ok(())
    }

    fn begin_stop(&mut self) -> io::Result<()> {
        self.stopping = true;
        self.acceptor.cancel(&mut self.ring)?;
        if self.wake_in_flight {
            self.ring.cancel(Op::Wake, WAKE_SLOT)?;
        }
        for index in self.conns.indexes() {
            if let Some(slot) = self.conns.id_at(index) {
                self.close_now(slot)?;
            }
        }
        Ok(())
    }

    fn complete(&mut self, event: Event) -> io::Result<()> {
        match event {
            Event::Accept { result, .. } => self.accepted(result),
            Event::Wake { .. } => {
                self.wake_in_flight = false;
                self.drain_replies()?;
                self.arm_wake()
            }
            Event::Recv { slot, result, buf } => self.received(slot, result, buf),
            Event::Send { slot, result, buf } => self.sent(slot, result, buf),
            Event::Poll { .. } => Ok(()),
        }
    }

    fn accepted(&mut self, result: Result<TcpStream, i32>) -> io::Result<()> {
        let stream = self.acceptor.complete(result, Instant::now());
        self.arm_accept()?;
        let Some(stream) = stream else {
            return Ok(());
        };
        if self.stopping {
            return Ok(());
        }
        let refuse = self.open >= self.config.connections_max;
        let closing = self.conns.len() - self.open;
        if (refuse && closing >= TCP_CLOSING_MAX) || self.conns.is_full() {
            // No slot to flush a CLOSE frame from: close without a word.
            Stats::bump(&self.stats.refused);
            return Ok(());
        }
        // The server answers with small frames and wants them out at once.
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        let mut conn = Conn {
            stream,
            peer: PeerId::fresh(),
            state: State::Hello,
            input: vec![0; TCP_RECV_CHUNK_BYTES],
            in_start: 0,
            in_end: 0,
            sending: Vec::new(),
            sending_len: 0,
            sent: 0,
            queued: Vec::new(),
            recv_in_flight: false,
            send_in_flight: false,
            paused: false,
            write_shut: false,
            rpcs_in_flight: 0,
            counted: !refuse,
            opened_at: now,
            recv_progress_at: now,
            send_progress_at: now,
            drain_deadline: now,
        };
        if refuse {
            Stats::bump(&self.stats.refused);
            frame::put_close(
                &mut conn.queued,
                CloseCode::TooManyConnections,
                &format!(
                    "the memory node serves at most {} connections",
                    self.config.connections_max
                ),
            );
            conn.state = State::Draining;
            conn.drain_deadline = now + TCP_DRAIN_TIMEOUT;
        }
        let Ok(slot) = self.conns.insert(conn) else {
            // Cannot happen: the table was not full above.
            Stats::bump(&self.stats.refused);
            return Ok(());
        };
        if !refuse {
            self.open += 1;
            Stats::bump(&self.stats.accepted);
            self.stats.open.store(self.open as u64, Ordering::Relaxed);
        }
        self.arm(slot)
    }

    fn received(&mut self, slot: SlotId, result: i32, buf: Vec<u8>) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(slot) else {
            // Operations of freed connections have all completed before the free, so this
            // cannot happen; ignore rather than act on a stranger (its buffer is dropped).
            return Ok(());
        };
        conn.recv_in_flight = false;
        conn.input = buf;
        match conn.state {
            State::Closing => return self.free_if_done(slot),
            State::Draining => {
                // Input after a CLOSE is discarded; end of input ends the drain.
                conn.in_start = 0;
                conn.in_end = 0;
                if result <= 0 && result != -libc::EINTR {
                    return self.close_now(slot);
                }
                return self.arm(slot);
            }
            State::Hello | State::Ready => {}
        }
        if result > 0 {
            conn.in_end += result as usize;
            conn.recv_progress_at = Instant::now();
            self.process(slot);
            self.arm(slot)
        } else if result == -libc::EINTR || result == -libc::EAGAIN {
            self.arm(slot)
        } else {
            Stats::bump(&self.stats.peer_closed);
            self.close_now(slot)
        }
    }

    fn sent(&mut self, slot: SlotId, result: i32, buf: Vec<u8>) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(slot) else {
            // As for receives: cannot happen, and a stranger's completion is ignored.
            return Ok(());
        };
        conn.send_in_flight = false;
        conn.sending = buf;
        if conn.state == State::Closing {
            return self.free_if_done(slot);
        }
        if result > 0 {
            conn.sent += result as usize;
            conn.send_progress_at = Instant::now();
            if conn.paused {
                self.process(slot);
            }
            self.arm(slot)
        } else if result == -libc::EINTR || result == -libc::EAGAIN {
            self.arm(slot)
        } else {
            if conn.state != State::Draining {
                Stats::bump(&self.stats.peer_closed);
            }
            self.close_now(slot)
        }
    }

    /// Decodes and executes the connection's complete frames, in order, until input runs out
    /// or the connection must pause; leaves room in `input` for the next receive.
    fn process(&mut self, slot: SlotId) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.recv_in_flight || !matches!(conn.state, State::Hello | State::Ready) {
            return;
        }
        conn.paused = false;
        let mut need = frame::LEN_BYTES;
        let mut failure = None;
        loop {
            if conn.output_pending() >= TCP_OUTPUT_PENDING_BYTES_MAX {
                conn.paused = true;
                break;
            }
            let avail = &conn.input[conn.in_start..conn.in_end];
            let Some(len) = frame::body_len(avail) else {
                break;
            };
            let limit = if conn.state == State::Hello {
                frame::HELLO_BODY_BYTES_MAX
            } else {
                frame::FRAME_BODY_BYTES_MAX
            };
            if len > limit {
                failure = Some((
                    CloseCode::FrameTooLarge,
                    format!("a frame of {len} bytes exceeds the limit of {limit}"),
                ));
                break;
            }
            if avail.len() < frame::LEN_BYTES + len {
                need = frame::LEN_BYTES + len;
                break;
            }
            let body = &conn.input
                [conn.in_start + frame::LEN_BYTES..conn.in_start + frame::LEN_BYTES + len];
            let step = handle_frame(
                &mut self.ctx,
                &self.stats,
                &mut conn.state,
                &mut conn.rpcs_in_flight,
                &mut conn.queued,
                body,
                slot,
                conn.peer,
            );
            match step {
                Step::Next => conn.in_start += frame::LEN_BYTES + len,
                Step::Pause => {
                    conn.paused = true;
                    break;
                }
                Step::Fail(code, message) => {
                    failure = Some((code, message));
                    break;
                }
            }
        }
        if let Some((code, message)) = failure {
            self.fail(slot, code, &message);
            return;
        }
        // Make room for the rest of a partial frame (or the next one) before the next receive.
        if conn.in_start == conn.in_end {
            conn.in_start = 0;
            conn.in_end = 0;
            if conn.input.len() > 4 * TCP_RECV_CHUNK_BYTES {
                conn.input = vec![0; TCP_RECV_CHUNK_BYTES];
            }
        } else if conn.in_start > 0 {
            conn.input.copy_within(conn.in_start..conn.in_end, 0);
            conn.in_end -= conn.in_start;
            conn.in_start = 0;
        }
        if conn.input.len() < need {
            conn.input.resize(need, 0);
        }
        if conn.in_end == conn.input.len() {
            // A full buffer with no complete frame cannot happen after the resize above, but a
            // receive of zero bytes would read as end of input, so keep room regardless.
            let len = conn.input.len() + TCP_RECV_CHUNK_BYTES;
            conn.input.resize(len, 0);
        }
    }

    /// Posts what the connection needs next: a send of pending output, a receive when it is
    /// reading, the end of a drain.
    fn arm(&mut self, slot: SlotId) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        if conn.state == State::Closing {
            return Ok(());
        }
        if !conn.send_in_flight {
            if conn.sent == conn.sending.len() {
                conn.sending.clear();
                conn.sent = 0;
                std::mem::swap(&mut conn.sending, &mut conn.queued);
                conn.sending_len = conn.sending.len();
                if conn.queued.capacity() > TCP_OUTPUT_PENDING_BYTES_MAX {
                    conn.queued = Vec::new();
                }
            }
            if conn.sent < conn.sending.len() {
                conn.send_in_flight = true;
                conn.send_progress_at = Instant::now();
                let sending = std::mem::take(&mut conn.sending);
                self.ring.send(&conn.stream, sending, conn.sent, slot)?;
            }
        }
        if conn.state == State::Draining
            && !conn.send_in_flight
            && conn.output_pending() == 0
            && !conn.write_shut
        {
            // The CLOSE frame is out: shut the write side so that the peer reads it and then
            // the end of the stream, and wait (discarding input) for it to close.
            conn.write_shut = true;
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
        let reading = match conn.state {
            State::Hello | State::Ready => !conn.paused,
            State::Draining => true,
            State::Closing => false,
        };
        if reading && !conn.recv_in_flight {
            if conn.in_end == conn.input.len() {
                let len = conn.input.len() + TCP_RECV_CHUNK_BYTES;
                conn.input.resize(len, 0);
            }
            conn.recv_in_flight = true;
            conn.recv_progress_at = Instant::now();
            let input = std::mem::take(&mut conn.input);
            self.ring.recv(&conn.stream, input, conn.in_end, slot)?;
        }
        Ok(())
    }

    /// Drops a connection politely: queue a CLOSE frame, flush it, then close.
    fn fail(&mut self, slot: SlotId, code: CloseCode, message: &str) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !matches!(conn.state, State::Hello | State::Ready) {
            return;
        }
        Stats::bump(&self.stats.dropped);
        frame::put_close(&mut conn.queued, code, message);
        conn.state = State::Draining;
        conn.paused = false;
        conn.drain_deadline = Instant::now() + TCP_DRAIN_TIMEOUT.min(self.config.stall_timeout);
        if conn.counted {
            conn.counted = false;
            self.open -= 1;
            self.stats.open.store(self.open as u64, Ordering::Relaxed);
        }
    }

    /// Closes every connection the RPC handler fenced since the last look (one atomic load when
    /// nothing was fenced): a fenced incarnation's verbs must stop reaching the pool.
    fn close_fenced(&mut self) -> io::Result<()> {
        let Some(pool) = &self.ctx.pool else {
            return Ok(());
        };
        let service = std::sync::Arc::clone(pool.service());
        let generation = service.fence_generation();
        if generation == self.fence_seen {
            return Ok(());
        }
        self.fence_seen = generation;
        let fenced: Vec<SlotId> = self
            .conns
            .indexes()
            .filter_map(|index| self.conns.id_at(index))
            .filter(|&slot| {
                self.conns
                    .get(slot)
                    .is_some_and(|c| c.state != State::Closing && service.is_fenced(c.peer))
            })
            .collect();
        for slot in fenced {
            Stats::bump(&self.stats.dropped);
            self.close_now(slot)?;
        }
        Ok(())
    }

    /// Closes a connection at once: shut the socket, cancel its operations, free it when they
    /// have completed.
    fn close_now(&mut self, slot: SlotId) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        if conn.state != State::Closing {
            conn.state = State::Closing;
            let _ = conn.stream.shutdown(Shutdown::Both);
            if conn.counted {
                conn.counted = false;
                self.open -= 1;
                self.stats.open.store(self.open as u64, Ordering::Relaxed);
            }
            let (recv, send) = (conn.recv_in_flight, conn.send_in_flight);
            if recv {
                self.ring.cancel(Op::Recv, slot)?;
            }
            if send {
                self.ring.cancel(Op::Send, slot)?;
            }
        }
        self.free_if_done(slot)
    }

    fn free_if_done(&mut self, slot: SlotId) -> io::Result<()> {
        let done = self
            .conns
            .get(slot)
            .is_some_and(|c| c.state == State::Closing && !c.recv_in_flight && !c.send_in_flight);
        if done {
            // Dropping the connection closes its socket; no operation names it now.
            if let (Some(conn), Some(pool)) = (self.conns.remove(slot), &self.ctx.pool) {
                pool.disconnected(conn.peer);
            }
        }
        Ok(())
    }

    fn drain_replies(&mut self) -> io::Result<()> {
        while let Ok(done) = self.replies.try_recv() {
            self.ctx.rpcs_total = self.ctx.rpcs_total.saturating_sub(1);
            let slot = done.slot;
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.state != State::Ready {
                continue;
            }
            conn.rpcs_in_flight = conn.rpcs_in_flight.saturating_sub(1);
            match &done.result {
                Ok(reply) => frame::put_bytes_with(
                    &mut conn.queued,
                    done.wr,
                    VerbKind::Rpc,
                    reply.len(),
                    |dst| dst.copy_from_slice(reply),
                ),
                Err(e) => frame::put_error(&mut conn.queued, done.wr, VerbKind::Rpc, e),
            }
            if conn.paused {
                self.process(slot);
            }
            self.arm(slot)?;
        }
        Ok(())
    }

    /// Enforces the timeouts and retries an accept postponed by a back-off.
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        self.arm_accept()?;
        for index in self.conns.indexes() {
            let Some(slot) = self.conns.id_at(index) else {
                continue;
            };
            let Some(conn) = self.conns.get(slot) else {
                continue;
            };
            let stalled_reading = conn.recv_in_flight
                && conn.in_end > conn.in_start
                && now.duration_since(conn.recv_progress_at) > self.config.stall_timeout;
            let stalled_writing = conn.send_in_flight
                && now.duration_since(conn.send_progress_at) > self.config.stall_timeout;
            match conn.state {
                State::Hello
                    if now.duration_since(conn.opened_at) > self.config.handshake_timeout =>
                {
                    self.fail(slot, CloseCode::Timeout, "no handshake in time");
                    self.arm(slot)?;
                }
                State::Hello | State::Ready if stalled_writing => {
                    // It does not read its responses, so a CLOSE frame would not reach it.
                    Stats::bump(&self.stats.dropped);
                    self.close_now(slot)?;
                }
                State::Hello | State::Ready if stalled_reading => {
                    self.fail(slot, CloseCode::Timeout, "stalled in the middle of a frame");
                    self.arm(slot)?;
                }
                State::Draining if now >= conn.drain_deadline => self.close_now(slot)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Handles one complete frame of a connection in `Hello` or `Ready`.
#[expect(
    clippy::too_many_arguments,
    reason = "the connection's fields are passed apart so that its input can stay borrowed"
)]
fn handle_frame(
    ctx: &mut Ctx,
    stats: &Stats,
    state: &mut State,
    rpcs_in_flight: &mut usize,
    out: &mut Vec<u8>,
    body: &[u8],
    slot: SlotId,
    peer: PeerId,
) -> Step {
    let request = match frame::decode_request(body) {
        Ok(r) => r,
        Err(e) if *state == State::Hello => {
            return Step::Fail(CloseCode::BadHello, format!("bad handshake: {e}"));
        }
        Err(e) => return Step::Fail(CloseCode::Protocol, e.to_string()),
    };
    if *state == State::Hello {
        let Request::Hello { version, token } = request else {
            return Step::Fail(
                CloseCode::Unauthenticated,
                "a verb before the handshake".into(),
            );
        };
        if version != frame::PROTOCOL_VERSION {
            return Step::Fail(
                CloseCode::Version,
                format!(
                    "the memory node speaks protocol version {}, not {version}",
                    frame::PROTOCOL_VERSION
                ),
            );
        }
        if !frame::constant_time_eq(token, &ctx.token) {
            return Step::Fail(CloseCode::Token, "wrong cluster token".into());
        }
        *state = State::Ready;
        Stats::bump(&stats.authenticated);
        frame::put_welcome(out, frame::PROTOCOL_VERSION, ctx.region_len);
        return Step::Next;
    }
    let backend = &*ctx.backend;
    match request {
        Request::Hello { .. } => {
            return Step::Fail(CloseCode::Protocol, "a second handshake".into());
        }
        Request::Read { wr, remote, len } => {
            match check_range(ctx.region_len, remote, u64::from(len)) {
                Ok(()) => frame::put_bytes_with(out, wr, VerbKind::Read, len as usize, |dst| {
                    backend.read(remote, dst);
                }),
                Err(e) => frame::put_error(out, wr, VerbKind::Read, &e),
            }
        }
        Request::Write {
            wr,
            remote,
            persist,
            data,
        } => match execute_write(backend, remote, data, persist) {
            Ok(()) => frame::put_done(out, wr, VerbKind::Write),
            Err(e) => frame::put_error(out, wr, VerbKind::Write, &e),
        },
        Request::Cas {
            wr,
            remote,
            expected,
            new,
        } => match execute_cas(backend, remote, expected, new) {
            Ok(old) => frame::put_word(out, wr, VerbKind::Cas, old),
            Err(e) => frame::put_error(out, wr, VerbKind::Cas, &e),
        },
        Request::Faa { wr, remote, add } => match execute_faa(backend, remote, add) {
            Ok(old) => frame::put_word(out, wr, VerbKind::Faa, old),
            Err(e) => frame::put_error(out, wr, VerbKind::Faa, &e),
        },
        Request::Rpc { wr, request } => {
            if *rpcs_in_flight >= ctx.conn_rpcs_max {
                return Step::Pause;
            }
            let refused = |out: &mut Vec<u8>, e: VerbError| {
                frame::put_error(out, wr, VerbKind::Rpc, &e);
                Step::Next
            };
            let Some(pool) = &ctx.pool else {
                return refused(
                    out,
                    VerbError::Refused("no RPC handler on the memory node".into()),
                );
            };
            if request.len() as u64 > RPC_BYTES_MAX {
                return refused(out, VerbError::TooLarge(request.len() as u64));
            }
            if ctx.rpcs_total >= ctx.reply_capacity {
                return refused(
                    out,
                    VerbError::Refused("the memory node's RPC queue is full".into()),
                );
            }
            let tx = ctx.reply_tx.clone();
            let wake = Arc::clone(&ctx.wake);
            let reply = Box::new(move |result: Result<Vec<u8>, VerbError>| {
                // The channel holds `reply_capacity` replies and at most that many RPCs are
                // outstanding, so this only fails once the loop is gone.
                let _ = tx.try_send(RpcDone { slot, wr, result });
                wake.signal();
            });
            match pool.try_submit(peer, request.to_vec(), reply) {
                Ok(()) => {
                    *rpcs_in_flight += 1;
                    ctx.rpcs_total += 1;
                }
                Err(e) => return refused(out, e),
            }
        }
    }
    Step::Next
}
