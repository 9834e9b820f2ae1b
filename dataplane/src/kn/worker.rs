//! [`Worker`]: one pinned, run-to-completion KN core (DESIGN.md §4).
//!
//! A worker owns its io_uring, its connections, its [`Engine`] (queue pair, cache, staging
//! block) and its inbound queue, all by value; nothing of it is shared or locked. One loop:
//! reap io_uring completions (accepts, receives, sends, the wake-up eventfd, the fabric's
//! readiness), drain the inbound queue, let every connection with new input parse and dispatch
//! its requests, let the engine post and reap fabric verbs and group-commit writes, route the
//! replies, and post sends. When there is nothing to do it sleeps in the ring until a socket, a
//! wake-up, the fabric or the engine's next deadline needs it.
//!
//! A request for a key another core owns goes to that core over its bounded queue and its reply
//! comes back the same way. Messages that do not fit a full queue wait in a per-destination
//! overflow list, bounded by the pipeline and connection limits.
//!
//! Buffers handed to the kernel (receive and send buffers, the eventfd word) stay owned by the
//! worker, unmoved, until their operation completes: a connection being closed is shut down
//! first, and freed only once no operation of it is in flight.

use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::kn::control::{ControlAck, ControlCommand, ControlMessage};
use crate::kn::engine::{Command, Engine, EngineError, Reply, Tag};
use crate::kn::info::{cluster_reply, info_text};
use crate::kn::routing::{Route, Routing};
use crate::kn::session::{Dispatch, Session};
use crate::kn::shared::{CoreSnapshot, Inbound, Shared};
use crate::kn::slab::Slab;
use crate::resp::ReplyWriter;

/// Entries of a worker's ring.
pub const RING_ENTRIES: u32 = 1024;
/// Bytes one receive reads at most.
pub const RECV_BYTES: usize = 64 << 10;
/// Inbound messages handled per loop iteration at most (so connections are not starved).
pub const INBOX_BATCH: usize = 1024;
/// Longest sleep of an idle worker (it re-checks the stop flag this often).
pub const IDLE_SLEEP: Duration = Duration::from_millis(100);
/// Longest sleep of a worker waiting for the fabric without a readiness descriptor.
pub const FABRIC_SLEEP: Duration = Duration::from_micros(50);
/// How often a worker publishes its counters.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);

mod op {
    pub const ACCEPT: u64 = 1;
    pub const RECV: u64 = 2;
    pub const SEND: u64 = 3;
    pub const WAKE: u64 = 4;
    pub const FABRIC: u64 = 5;
}

fn user_data(op: u64, index: usize, generation: u32) -> u64 {
    op | ((index as u64 & 0xFFFF_FFFF) << 8) | (u64::from(generation & 0xFF_FFFF) << 40)
}

fn decode_user_data(data: u64) -> (u64, usize, u32) {
    (
        data & 0xFF,
        ((data >> 8) & 0xFFFF_FFFF) as usize,
        (data >> 40) as u32,
    )
}

// Tags of engine requests: the kind in the top 2 bits.
const TAG_LOCAL: u64 = 0;
const TAG_FOREIGN: u64 = 1 << 62;
const TAG_EMBEDDED: u64 = 2 << 62;
const TAG_KIND: u64 = 3 << 62;

#[derive(Debug)]
struct Part {
    conn: usize,
    generation: u32,
    seq: u64,
    part: u32,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    generation: u32,
    id: u64,
    session: Session,
    recv_buf: Box<[u8]>,
    recv_armed: bool,
    send_buf: Vec<u8>,
    send_off: usize,
    send_armed: bool,
    /// Being closed: no new operations; freed when none is in flight.
    closing: bool,
}

/// The queues a worker drains: requests from other cores and the embedded API, and the
/// control thread's messages (with where their acknowledgements go).
pub struct WorkerQueues {
    pub inbox: Receiver<Inbound>,
    pub control: Receiver<ControlMessage>,
    pub acks: Sender<ControlAck>,
}

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Pin the thread to this CPU.
    pub cpu: Option<usize>,
    /// Kernel-side submission polling (costs a kernel thread per ring; off on small machines).
    pub sqpoll: bool,
}

/// One worker core.
pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
    engine: Engine,
    inbox: Receiver<Inbound>,
    /// This worker's own routing table, swapped whole by a control message.
    routing: Arc<Routing>,
    control: Receiver<ControlMessage>,
    acks: Sender<ControlAck>,
    ring: IoUring,
    /// The completions of one reap (a reused buffer).
    reaped: Vec<(u64, i32, u32)>,
    listeners: Vec<Arc<TcpListener>>,
    accept_armed: Vec<bool>,
    conns: Slab<Conn>,
    generation: u32,
    local: Slab<Part>,
    foreign: Slab<(usize, Tag)>,
    embedded: Slab<Sender<Reply>>,
    overflow: Vec<VecDeque<Inbound>>,
    done: Vec<(Tag, Reply)>,
    dirty: Vec<usize>,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    fabric_armed: bool,
    last_snapshot: Instant,
    stopping: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("conns", &self.conns.len())
            .finish()
    }
}

/// What a worker's `Dispatch` needs: the parts of the worker a session's requests go to.
struct Ctx<'a> {
    index: usize,
    conn: usize,
    generation: u32,
    client_id: u64,
    shared: &'a Shared,
    routing: &'a Routing,
    engine: &'a mut Engine,
    local: &'a mut Slab<Part>,
    overflow: &'a mut [VecDeque<Inbound>],
    /// Replies decided without the engine (a slot of another node).
    done: &'a mut Vec<(Tag, Reply)>,
}

impl Dispatch for Ctx<'_> {
    fn submit(&mut self, seq: u64, part: u32, cmd: Command) {
        self.shared.commands.fetch_add(1, Ordering::Relaxed);
        let tag = TAG_LOCAL
            | self.local.insert(Part {
                conn: self.conn,
                generation: self.generation,
                seq,
                part,
            }) as u64;
        let owner = match self.routing.route(cmd.key()) {
            (_, Route::Local(core)) => usize::from(core),
            (slot, Route::Remote(_) | Route::Unowned) => {
                self.done.push((tag, Reply::Moved(slot)));
                return;
            }
        };
        if owner == self.index {
            self.engine.submit(tag, cmd);
        } else {
            let message = Inbound::Handover {
                from: self.index,
                tag,
                cmd,
            };
            if self.overflow[owner].is_empty() {
                if let Err(m) = self.shared.send(owner, message) {
                    self.overflow[owner].push_back(m);
                }
            } else {
                self.overflow[owner].push_back(message);
            }
        }
    }
    fn info(&mut self, sections: &[Vec<u8>]) -> String {
        // This core's own counters are current; the others' are at most a snapshot interval old.
        publish_core(self.shared, self.index, self.engine, None);
        info_text(self.shared, sections, self.index)
    }
    fn cluster(&mut self, subcommand: &[u8], w: &mut ReplyWriter<'_>) -> Option<()> {
        cluster_reply(self.shared, self.index, self.routing, subcommand, w)
    }
    fn requirepass(&self) -> Option<&[u8]> {
        self.shared.requirepass.as_deref()
    }
    fn client_id(&self) -> u64 {
        self.client_id
    }
}

impl Worker {
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        mut engine: Engine,
        queues: WorkerQueues,
        listeners: Vec<Arc<TcpListener>>,
        options: &WorkerOptions,
    ) -> io::Result<Worker> {
        let routing = shared.routing();
        engine.set_owned(routing.owned_by(index));
        let mut builder = IoUring::builder();
        if options.sqpoll {
            builder.setup_sqpoll(2000);
        }
        let ring = builder
            .build(RING_ENTRIES)
            .or_else(|_| IoUring::new(RING_ENTRIES))?;
        let cores = shared.cores();
        Ok(Worker {
            index,
            engine,
            inbox: queues.inbox,
            routing,
            control: queues.control,
            acks: queues.acks,
            ring,
            reaped: Vec::new(),
            accept_armed: vec![false; listeners.len()],
            listeners,
            conns: Slab::default(),
            generation: 0,
            local: Slab::default(),
            foreign: Slab::default(),
            embedded: Slab::default(),
            overflow: (0..cores).map(|_| VecDeque::new()).collect(),
            done: Vec::new(),
            dirty: Vec::new(),
            wake_buf: Box::new([0u8; 8]),
            wake_armed: false,
            fabric_armed: false,
            last_snapshot: Instant::now(),
            stopping: false,
            shared,
        })
    }

    /// Runs the loop until the node stops; then finishes in-flight requests (writes included)
    /// and closes every connection.
    pub fn run(mut self) -> io::Result<()> {
        loop {
            if self.shared.stopping() && !self.stopping {
                self.stopping = true;
            }
            if self.stopping && self.quiet() {
                self.publish();
                return Ok(());
            }
            self.arm_fixed()?;
            self.wait()?;
            self.reap()?;
            self.drain_control();
            self.drain_inbox();
            self.process_sessions();
            self.run_engine();
            self.flush_overflow();
            self.post_io()?;
            if self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
                self.publish();
            }
        }
    }

    /// Whether a stopping worker has finished everything it started.
    fn quiet(&self) -> bool {
        self.engine.is_idle()
            && self.done.is_empty()
            && self.overflow.iter().all(VecDeque::is_empty)
            && self.local.is_empty()
            && self.foreign.is_empty()
            && self.conns.indexes().all(|i| {
                self.conns
                    .get(i)
                    .is_some_and(|c| !c.send_armed && !c.session.has_output())
            })
    }

    fn busy(&self) -> bool {
        !self.done.is_empty()
            || !self.dirty.is_empty()
            || !self.inbox.is_empty()
            || !self.control.is_empty()
            || self.overflow.iter().any(|o| !o.is_empty())
    }

    /// Sleeps in the ring until something needs the worker (or not at all if it is busy).
    fn wait(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let (want, timeout) = if self.busy() {
            (0, Duration::ZERO)
        } else if !self.engine.is_idle() {
            let until = self
                .engine
                .next_wakeup()
                .map(|t| t.saturating_duration_since(now));
            let cap = if self.fabric_armed {
                IDLE_SLEEP
            } else {
                FABRIC_SLEEP
            };
            (1, until.unwrap_or(cap).min(cap))
        } else {
            let until = self
                .engine
                .next_wakeup()
                .map(|t| t.saturating_duration_since(now));
            // An idle core still wakes to publish its counters (INFO reads them).
            (
                1,
                until
                    .unwrap_or(IDLE_SLEEP)
                    .min(IDLE_SLEEP)
                    .min(SNAPSHOT_INTERVAL),
            )
        };
        let result = if want == 0 || timeout.is_zero() {
            self.ring.submit()
        } else {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(want, &args)
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Pushes an entry, submitting first if the submission queue is full.
    ///
    /// # Safety
    /// Every buffer the entry names must stay valid and unmoved until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: the caller keeps the entry's buffers alive until completion.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("the submission queue stays full"))
    }

    /// Keeps the accepts, the wake-up read and the fabric readiness poll armed.
    fn arm_fixed(&mut self) -> io::Result<()> {
        if !self.stopping {
            for l in 0..self.listeners.len() {
                if !self.accept_armed[l] {
                    let fd = self.listeners[l].as_raw_fd();
                    let entry = opcode::Accept::new(
                        types::Fd(fd),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(user_data(op::ACCEPT, l, 0));
                    // SAFETY: the accept names no buffer; the listener outlives the ring (both
                    // are owned by the worker, and the ring is dropped first).
                    unsafe { self.push(&entry) }?;
                    self.accept_armed[l] = true;
                }
            }
        }
        if !self.wake_armed {
            let fd = self.shared.wakers[self.index].raw();
            let entry = opcode::Read::new(types::Fd(fd), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(user_data(op::WAKE, 0, 0));
            // SAFETY: `wake_buf` is a heap box owned by the worker and used only by this read;
            // the worker (and so the box) lives until the ring is dropped.
            unsafe { self.push(&entry) }?;
            self.wake_armed = true;
        }
        if !self.fabric_armed
            && !self.engine.is_idle()
            && let Some(fd) = self.engine.queue_pair().wake_fd()
        {
            let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(user_data(op::FABRIC, 0, 0));
            // SAFETY: a poll names no buffer.
            unsafe { self.push(&entry) }?;
            self.fabric_armed = true;
        }
        Ok(())
    }

    fn reap(&mut self) -> io::Result<()> {
        let mut completions = std::mem::take(&mut self.reaped);
        completions.clear();
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, result, flags) in &completions {
            let _ = cqueue::more(flags);
            let (kind, index, generation) = decode_user_data(data);
            match kind {
                op::ACCEPT => self.on_accept(index, result),
                op::RECV => self.on_recv(index, generation, result),
                op::SEND => self.on_send(index, generation, result)?,
                op::WAKE => self.wake_armed = false,
                op::FABRIC => self.fabric_armed = false,
                _ => {}
            }
        }
        self.reaped = completions;
        Ok(())
    }

    fn on_accept(&mut self, listener: usize, result: i32) {
        if let Some(armed) = self.accept_armed.get_mut(listener) {
            *armed = false;
        }
        if result < 0 {
            return;
        }
        // SAFETY: a successful accept returns a new descriptor that nothing else owns.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
        if self.stopping
            || self.shared.connections.load(Ordering::Relaxed) >= self.shared.connections_max
        {
            self.shared
                .connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.shared
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        self.generation = self.generation.wrapping_add(1) & 0xFF_FFFF;
        let conn = Conn {
            stream,
            generation: self.generation,
            id: self.shared.client_ids.fetch_add(1, Ordering::Relaxed) + 1,
            session: Session::new(self.shared.limits, self.shared.requirepass.is_some()),
            recv_buf: vec![0u8; RECV_BYTES].into_boxed_slice(),
            recv_armed: false,
            send_buf: Vec::new(),
            send_off: 0,
            send_armed: false,
            closing: false,
        };
        let index = self.conns.insert(conn);
        self.dirty.push(index);
    }

    fn on_recv(&mut self, index: usize, generation: u32, result: i32) {
        let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        conn.recv_armed = false;
        if result <= 0 {
            // The peer closed its side, or the connection failed.
            self.begin_close(index);
            return;
        }
        let n = result as usize;
        // A session that refuses the bytes queues an error reply and closes after sending it.
        let _ = conn.session.feed(&conn.recv_buf[..n]);
        self.dirty.push(index);
    }

    fn on_send(&mut self, index: usize, generation: u32, result: i32) -> io::Result<()> {
        let Some(conn) = self
            .conns
            .get_mut(index)
            .filter(|c| c.generation == generation)
        else {
            return Ok(());
        };
        conn.send_armed = false;
        if result <= 0 {
            self.begin_close(index);
            return Ok(());
        }
        conn.send_off += result as usize;
        if conn.send_off >= conn.send_buf.len() {
            conn.send_buf.clear();
            conn.send_off = 0;
        }
        self.dirty.push(index);
        Ok(())
    }

    /// Shuts the connection down (so that its pending operations complete) and frees it once
    /// nothing of it is in flight.
    fn begin_close(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
        }
        if conn.recv_armed || conn.send_armed {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if self.conns.remove(index).is_some() {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Applies the control thread's messages, each whole, and acknowledges them.
    fn drain_control(&mut self) {
        while let Ok(message) = self.control.try_recv() {
            match message.command {
                ControlCommand::Routing(routing) => {
                    self.engine.set_owned(routing.owned_by(self.index));
                    self.routing = routing;
                }
            }
            // The acknowledgement channel holds more than can be outstanding; a failure means
            // the control thread is gone, and then nobody waits for it.
            let _ = self.acks.try_send(ControlAck {
                core: self.index,
                id: message.id,
            });
        }
    }

    fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            let Ok(message) = self.inbox.try_recv() else {
                break;
            };
            match message {
                Inbound::Embedded { cmd, reply } => {
                    let tag = TAG_EMBEDDED | self.embedded.insert(reply) as u64;
                    self.engine.submit(tag, cmd);
                }
                Inbound::Handover { from, tag, cmd } => {
                    let local = TAG_FOREIGN | self.foreign.insert((from, tag)) as u64;
                    self.engine.submit(local, cmd);
                }
                Inbound::HandoverReply { tag, reply } => self.done.push((tag, reply)),
            }
        }
    }

    fn process_sessions(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for index in dirty {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.closing {
                continue;
            }
            let mut ctx = Ctx {
                index: self.index,
                conn: index,
                generation: conn.generation,
                client_id: conn.id,
                shared: &self.shared,
                routing: &self.routing,
                engine: &mut self.engine,
                local: &mut self.local,
                overflow: &mut self.overflow,
                done: &mut self.done,
            };
            conn.session.process(&mut ctx);
            self.dirty_out(index);
        }
    }

    /// Remembers that a connection may have output or want input (handled in `post_io`).
    fn dirty_out(&mut self, index: usize) {
        if !self.dirty.contains(&index) {
            self.dirty.push(index);
        }
    }

    fn run_engine(&mut self) {
        self.engine.flush_now();
        let mut out = std::mem::take(&mut self.done);
        self.engine.poll(&mut out);
        for (tag, reply) in out.drain(..) {
            self.route(tag, reply);
        }
        self.done = out;
    }

    fn route(&mut self, tag: Tag, reply: Reply) {
        let index = (tag & !TAG_KIND) as usize;
        match tag & TAG_KIND {
            TAG_LOCAL => {
                let Some(part) = self.local.remove(index) else {
                    return;
                };
                if let Some(conn) = self
                    .conns
                    .get_mut(part.conn)
                    .filter(|c| c.generation == part.generation)
                {
                    conn.session
                        .complete(part.seq, part.part, reply, &self.routing);
                    self.dirty_out(part.conn);
                }
            }
            TAG_FOREIGN => {
                let Some((from, their_tag)) = self.foreign.remove(index) else {
                    return;
                };
                self.overflow[from].push_back(Inbound::HandoverReply {
                    tag: their_tag,
                    reply,
                });
            }
            TAG_EMBEDDED => {
                if let Some(sender) = self.embedded.remove(index) {
                    let _ = sender.send(reply);
                }
            }
            _ => {}
        }
    }

    fn flush_overflow(&mut self) {
        for core in 0..self.overflow.len() {
            while let Some(message) = self.overflow[core].pop_front() {
                if let Err(m) = self.shared.send(core, message) {
                    self.overflow[core].push_front(m);
                    break;
                }
            }
        }
    }

    /// Posts sends of ready output and receives for connections that want input; frees
    /// connections that are done.
    fn post_io(&mut self) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut again = Vec::new();
        for index in dirty {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if !conn.send_armed && conn.send_buf.is_empty() && conn.session.has_output() {
                conn.send_buf = conn.session.take_output();
                conn.send_off = 0;
            }
            if !conn.send_armed && conn.send_off < conn.send_buf.len() {
                let rest = &conn.send_buf[conn.send_off..];
                let entry = opcode::Send::new(
                    types::Fd(conn.stream.as_raw_fd()),
                    rest.as_ptr(),
                    rest.len() as u32,
                )
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(op::SEND, index, conn.generation));
                conn.send_armed = true;
                // SAFETY: `send_buf` is owned by the connection and neither modified nor freed
                // while the send is armed (the connection is freed only with nothing armed).
                unsafe { self.push(&entry) }?;
            }
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            let finished_output =
                !conn.send_armed && conn.send_buf.is_empty() && !conn.session.has_output();
            if (conn.closing || conn.session.is_closing()) && finished_output {
                self.begin_close(index);
                continue;
            }
            if conn.closing {
                self.begin_close(index);
                continue;
            }
            if conn.session.wants_input() && conn.session.has_unparsed_input() {
                // Requests held back by the pipeline limit: parse them in the next round.
                again.push(index);
            }
            if !conn.recv_armed && conn.session.wants_input() && !self.stopping {
                let entry = opcode::Recv::new(
                    types::Fd(conn.stream.as_raw_fd()),
                    conn.recv_buf.as_mut_ptr(),
                    RECV_BYTES as u32,
                )
                .build()
                .user_data(user_data(op::RECV, index, conn.generation));
                conn.recv_armed = true;
                // SAFETY: `recv_buf` is a boxed slice owned by the connection, never reallocated,
                // and the connection is freed only with nothing armed.
                unsafe { self.push(&entry) }?;
            }
        }
        self.dirty.extend(again);
        Ok(())
    }

    /// Publishes this core's counters for `INFO`.
    fn publish(&mut self) {
        self.last_snapshot = Instant::now();
        publish_core(
            &self.shared,
            self.index,
            &self.engine,
            Some(self.conns.len()),
        );
    }
}

/// Replies to an embedded request whose core could not take it.
pub fn busy_reply() -> Reply {
    Reply::Error(EngineError::Busy)
}

/// Publishes core `index`'s counters for `INFO` (`connections`: `None` keeps the last count).
fn publish_core(shared: &Shared, index: usize, engine: &Engine, connections: Option<usize>) {
    let mut all = shared.snapshots.lock().unwrap_or_else(|p| p.into_inner());
    let Some(slot) = all.get_mut(index) else {
        return;
    };
    *slot = CoreSnapshot {
        stats: engine.stats().clone(),
        cache: engine.cache().stats(),
        connections: connections.unwrap_or(slot.connections),
        unmerged_keys: engine.unmerged_keys(),
        sealed_blocks: engine.sealed_blocks(),
        in_flight: engine.in_flight(),
        failure: engine.failure().map(str::to_owned),
        port: shared.identity.core_ports.get(index).copied().unwrap_or(0),
    };
}
