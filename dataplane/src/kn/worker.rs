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
//! The ring ([`crate::sys::Ring`]) holds the receive and send buffers of the operations in flight
//! and hands them back with their completions; a connection being closed is shut down first, and
//! freed only once no operation of it is in flight. Completions name their connection by slot
//! and generation ([`crate::sys::Slots`]), so one for a connection freed since is ignored, and
//! accepts follow the policy of [`crate::sys::Acceptor`]. Nothing here needs `unsafe`.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::kn::control::{ControlAck, ControlCommand, ControlMessage};
use crate::kn::engine::{Command, Engine, EngineError, Reply, Tag};
use crate::kn::info::{cluster_reply, info_text};
use crate::kn::routing::{Route, Routing};
use crate::kn::session::{Dispatch, Session};
use crate::kn::shared::{CoreSnapshot, Inbound, Shared};
use crate::kn::slab::Slab;
use crate::resp::ReplyWriter;
use crate::sys::constants::SLOTS_MAX;
use crate::sys::{Acceptor, Event, Ring, RingMode, SlotId, Slots};

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

/// Ring slots of the wake-up eventfd and of the fabric's readiness poll (listener `l` accepts on
/// slot `l`; connections have slots of their own table).
const WAKE_SLOT: SlotId = SlotId::fixed(0);
const FABRIC_SLOT: SlotId = SlotId::fixed(0);

// Tags of engine requests: the kind in the top 2 bits.
const TAG_LOCAL: u64 = 0;
const TAG_FOREIGN: u64 = 1 << 62;
const TAG_EMBEDDED: u64 = 2 << 62;
const TAG_KIND: u64 = 3 << 62;

#[derive(Debug)]
struct Part {
    conn: SlotId,
    seq: u64,
    part: u32,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    id: u64,
    session: Session,
    /// `RECV_BYTES` long; held by the ring while a receive is armed.
    recv_buf: Vec<u8>,
    recv_armed: bool,
    /// Held by the ring while a send is armed.
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
    // Dropped before the connections: the ring cancels and reaps what is in flight while their
    // sockets are open.
    ring: Ring,
    /// The completions of one reap (a reused buffer).
    reaped: Vec<Event>,
    listeners: Vec<Arc<TcpListener>>,
    acceptors: Vec<Acceptor>,
    conns: Slots<Conn>,
    local: Slab<Part>,
    foreign: Slab<(usize, Tag)>,
    embedded: Slab<Sender<Reply>>,
    overflow: Vec<VecDeque<Inbound>>,
    done: Vec<(Tag, Reply)>,
    dirty: Vec<SlotId>,
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
    conn: SlotId,
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
        let mode = if options.sqpoll {
            RingMode::SqPoll
        } else {
            RingMode::Plain
        };
        let ring = Ring::new(RING_ENTRIES, mode)?;
        let acceptors = (0..listeners.len())
            .map(|l| u16::try_from(l).map(|l| Acceptor::new(SlotId::fixed(l))))
            .collect::<Result<_, _>>()
            .map_err(|_| io::Error::other("more listeners than ring slots"))?;
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
            acceptors,
            listeners,
            conns: Slots::new(SLOTS_MAX),
            local: Slab::default(),
            foreign: Slab::default(),
            embedded: Slab::default(),
            overflow: (0..cores).map(|_| VecDeque::new()).collect(),
            done: Vec::new(),
            dirty: Vec::new(),
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
            && self
                .conns
                .values()
                .all(|c| !c.send_armed && !c.session.has_output())
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
        let timeout = if self.busy() {
            Duration::ZERO
        } else if !self.engine.is_idle() {
            let until = self.next_wakeup().map(|t| t.saturating_duration_since(now));
            let cap = if self.fabric_armed {
                IDLE_SLEEP
            } else {
                FABRIC_SLEEP
            };
            until.unwrap_or(cap).min(cap)
        } else {
            let until = self.next_wakeup().map(|t| t.saturating_duration_since(now));
            // An idle core still wakes to publish its counters (INFO reads them).
            until
                .unwrap_or(IDLE_SLEEP)
                .min(IDLE_SLEEP)
                .min(SNAPSHOT_INTERVAL)
        };
        self.ring.submit_and_wait(timeout)
    }

    /// When the engine's next deadline or the end of an accept back-off needs the worker (a
    /// stopping worker posts no accepts, so it does not wake for them).
    fn next_wakeup(&self) -> Option<Instant> {
        let accept = if self.stopping {
            None
        } else {
            self.acceptors.iter().filter_map(Acceptor::retry_at).min()
        };
        match (self.engine.next_wakeup(), accept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps the accepts, the wake-up read and the fabric readiness poll armed.
    fn arm_fixed(&mut self) -> io::Result<()> {
        if !self.stopping {
            for (acceptor, listener) in self.acceptors.iter_mut().zip(&self.listeners) {
                // The listener outlives the ring (both are owned by the worker, and the ring is
                // dropped first).
                acceptor.arm(&mut self.ring, listener)?;
            }
        }
        if !self.wake_armed {
            self.ring
                .read_eventfd(&self.shared.wakers[self.index], WAKE_SLOT)?;
            self.wake_armed = true;
        }
        if !self.fabric_armed
            && !self.engine.is_idle()
            && let Some(fd) = self.engine.queue_pair().wake_fd()
        {
            self.ring.poll_readable(fd, FABRIC_SLOT)?;
            self.fabric_armed = true;
        }
        Ok(())
    }

    fn reap(&mut self) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.reaped);
        self.ring.reap(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Accept { slot, result } => self.on_accept(slot.index(), result),
                Event::Recv { slot, result, buf } => self.on_recv(slot, result, buf),
                Event::Send { slot, result, buf } => self.on_send(slot, result, buf)?,
                Event::Wake { .. } => self.wake_armed = false,
                Event::Poll { .. } => self.fabric_armed = false,
            }
        }
        self.reaped = events;
        Ok(())
    }

    fn on_accept(&mut self, listener: usize, result: Result<TcpStream, i32>) {
        let Some(acceptor) = self.acceptors.get_mut(listener) else {
            return;
        };
        let Some(stream) = acceptor.complete(result, Instant::now()) else {
            return;
        };
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
        let conn = Conn {
            stream,
            id: self.shared.client_ids.fetch_add(1, Ordering::Relaxed) + 1,
            session: Session::new(self.shared.limits, self.shared.requirepass.is_some()),
            recv_buf: vec![0u8; RECV_BYTES],
            recv_armed: false,
            send_buf: Vec::new(),
            send_off: 0,
            send_armed: false,
            closing: false,
        };
        let Ok(id) = self.conns.insert(conn) else {
            // Every slot the ring can name is taken.
            self.shared
                .connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.shared
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        self.dirty.push(id);
    }

    fn on_recv(&mut self, id: SlotId, result: i32, buf: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.recv_armed = false;
        conn.recv_buf = buf;
        if result <= 0 {
            // The peer closed its side, or the connection failed.
            self.begin_close(id);
            return;
        }
        let n = (result as usize).min(conn.recv_buf.len());
        // A session that refuses the bytes queues an error reply and closes after sending it.
        let _ = conn.session.feed(&conn.recv_buf[..n]);
        self.dirty.push(id);
    }

    fn on_send(&mut self, id: SlotId, result: i32, buf: Vec<u8>) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(id) else {
            return Ok(());
        };
        conn.send_armed = false;
        conn.send_buf = buf;
        if result <= 0 {
            self.begin_close(id);
            return Ok(());
        }
        conn.send_off += result as usize;
        if conn.send_off >= conn.send_buf.len() {
            conn.send_buf.clear();
            conn.send_off = 0;
        }
        self.dirty.push(id);
        Ok(())
    }

    /// Shuts the connection down (so that its pending operations complete) and frees it once
    /// nothing of it is in flight.
    fn begin_close(&mut self, id: SlotId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
        }
        if conn.recv_armed || conn.send_armed {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if self.conns.remove(id).is_some() {
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
        for id in dirty {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if conn.closing {
                continue;
            }
            let mut ctx = Ctx {
                index: self.index,
                conn: id,
                client_id: conn.id,
                shared: &self.shared,
                routing: &self.routing,
                engine: &mut self.engine,
                local: &mut self.local,
                overflow: &mut self.overflow,
                done: &mut self.done,
            };
            conn.session.process(&mut ctx);
            self.dirty_out(id);
        }
    }

    /// Remembers that a connection may have output or want input (handled in `post_io`).
    fn dirty_out(&mut self, id: SlotId) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
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
                if let Some(conn) = self.conns.get_mut(part.conn) {
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
        for id in dirty {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if !conn.send_armed && conn.send_buf.is_empty() && conn.session.has_output() {
                conn.send_buf = conn.session.take_output();
                conn.send_off = 0;
            }
            if !conn.send_armed && conn.send_off < conn.send_buf.len() {
                conn.send_armed = true;
                let send_buf = std::mem::take(&mut conn.send_buf);
                self.ring.send(&conn.stream, send_buf, conn.send_off, id)?;
            }
            let finished_output =
                !conn.send_armed && conn.send_buf.is_empty() && !conn.session.has_output();
            if (conn.closing || conn.session.is_closing()) && finished_output {
                self.begin_close(id);
                continue;
            }
            if conn.closing {
                self.begin_close(id);
                continue;
            }
            if conn.session.wants_input() && conn.session.has_unparsed_input() {
                // Requests held back by the pipeline limit: parse them in the next round.
                again.push(id);
            }
            if !conn.recv_armed && conn.session.wants_input() && !self.stopping {
                conn.recv_armed = true;
                let recv_buf = std::mem::take(&mut conn.recv_buf);
                self.ring.recv(&conn.stream, recv_buf, 0, id)?;
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
