//! The node's control path: one slow-path control thread per KN, and a bounded control inbox per
//! worker (DESIGN.md §4, §5).
//!
//! The control thread owns the node's control connection to the memory node — bound to the
//! node's incarnation for the node's whole life, so the node stays live at the memory node
//! between its start-up and its workers' attaches — and it is the one place that talks to the
//! memory node (and, with the control plane, to the controller) once the node runs. It fetches
//! the memory node's counters for `INFO` when the memory node is another process, and it applies
//! changes of the cluster map: it sends each worker the new [`Routing`] on that worker's control
//! inbox, waits until every worker has acknowledged, and only then publishes the routing as the
//! node's.
//!
//! A worker drains its control inbox between loop iterations (never in the middle of one), so
//! it swaps its routing table whole, and acknowledges each message by id.
//!
//! Bounds: a worker's inbox holds [`CONTROL_INBOX_CAPACITY`] messages, the acknowledgement
//! channel as many per worker, the control thread's request queue [`CONTROL_REQUESTS_MAX`];
//! an apply waits at most [`CONTROL_ACK_TIMEOUT`] for the workers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::fabric::QueuePair;
use crate::kn::routing::Routing;
use crate::kn::shared::{MnStatsSource, Shared};
use crate::mn::client::MnClient;
use crate::mn::proto::MnStats;

/// Messages a worker's control inbox holds.
pub const CONTROL_INBOX_CAPACITY: usize = 16;
/// Requests waiting for the control thread at most.
pub const CONTROL_REQUESTS_MAX: usize = 16;
/// How long applying a change waits for every worker's acknowledgement.
pub const CONTROL_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the control thread fetches the memory node's counters (when it is remote).
pub const MN_STATS_PERIOD: Duration = Duration::from_secs(1);
/// How long a fetch of the memory node's counters may take.
pub const MN_STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the control thread asks of a worker.
#[derive(Debug, Clone)]
pub enum ControlCommand {
    /// Route with this table from now on (and own exactly its slots for this core).
    Routing(Arc<Routing>),
}

/// One message on a worker's control inbox.
#[derive(Debug, Clone)]
pub struct ControlMessage {
    pub id: u64,
    pub command: ControlCommand,
}

/// A worker's acknowledgement of message `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlAck {
    pub core: usize,
    pub id: u64,
}

/// Why a control request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the node is stopping")]
    Stopping,
    #[error("the map of epoch {new} is not newer than the node's epoch {current}")]
    StaleMap {
        new: dinomo_control::Epoch,
        current: dinomo_control::Epoch,
    },
    #[error("core {0}'s control inbox is full")]
    InboxFull(usize),
    #[error("cores {0:?} did not acknowledge within the deadline")]
    NoAck(Vec<usize>),
    #[error("the control thread has too many requests waiting")]
    Busy,
}

/// The control side of every worker: their inboxes, and the channel their acknowledgements come
/// back on.
pub struct WorkerControl {
    pub inboxes: Vec<Sender<ControlMessage>>,
    pub receivers: Vec<Receiver<ControlMessage>>,
    pub acks: (Sender<ControlAck>, Receiver<ControlAck>),
}

impl WorkerControl {
    pub fn new(cores: usize) -> WorkerControl {
        let (inboxes, receivers) = (0..cores)
            .map(|_| crossbeam_channel::bounded(CONTROL_INBOX_CAPACITY))
            .unzip();
        WorkerControl {
            inboxes,
            receivers,
            acks: crossbeam_channel::bounded(CONTROL_INBOX_CAPACITY * cores.max(1)),
        }
    }
}

/// The memory node's counters, as the control thread last fetched them.
#[derive(Debug, Default)]
pub struct RemoteStats(Mutex<Option<MnStats>>);

impl MnStatsSource for RemoteStats {
    fn mn_stats(&self) -> Option<MnStats> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Request {
    Apply {
        routing: Arc<Routing>,
        reply: Sender<Result<(), ControlError>>,
    },
    Stop,
}

/// The running control thread of a node.
pub struct ControlThread {
    requests: Sender<Request>,
    thread: Option<JoinHandle<()>>,
}

impl ControlThread {
    /// Starts the thread on `qp` (the node's control connection, already bound to its
    /// incarnation); it fetches the memory node's counters into `stats` if given.
    pub fn start(
        qp: Box<dyn QueuePair>,
        shared: Arc<Shared>,
        inboxes: Vec<Sender<ControlMessage>>,
        acks: Receiver<ControlAck>,
        stats: Option<Arc<RemoteStats>>,
    ) -> std::io::Result<ControlThread> {
        let (tx, rx) = crossbeam_channel::bounded(CONTROL_REQUESTS_MAX);
        let mut control = Control {
            qp,
            shared,
            inboxes,
            acks,
            stats,
            next_id: 1,
        };
        let thread = std::thread::Builder::new()
            .name("dinomo-kn-control".into())
            .spawn(move || control.run(&rx))?;
        Ok(ControlThread {
            requests: tx,
            thread: Some(thread),
        })
    }

    /// Makes every worker route with `routing`; returns once all have acknowledged.
    pub fn apply(&self, routing: Arc<Routing>) -> Result<(), ControlError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        match self.requests.try_send(Request::Apply { routing, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ControlError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(ControlError::Stopping),
        }
        answer
            .recv_timeout(CONTROL_ACK_TIMEOUT + MN_STATS_TIMEOUT)
            .unwrap_or(Err(ControlError::Stopping))
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let _ = self
            .requests
            .send_timeout(Request::Stop, CONTROL_ACK_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            // The thread only ends by returning.
            let _ = thread.join();
        }
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Control {
    qp: Box<dyn QueuePair>,
    shared: Arc<Shared>,
    inboxes: Vec<Sender<ControlMessage>>,
    acks: Receiver<ControlAck>,
    stats: Option<Arc<RemoteStats>>,
    next_id: u64,
}

impl Control {
    fn run(&mut self, requests: &Receiver<Request>) {
        let mut next_stats = Instant::now();
        loop {
            if let Some(stats) = &self.stats
                && Instant::now() >= next_stats
            {
                next_stats = Instant::now() + MN_STATS_PERIOD;
                match MnClient::with_timeout(&mut *self.qp, MN_STATS_TIMEOUT).stats() {
                    Ok(s) => *stats.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s),
                    Err(e) => eprintln!("dinomo kn: fetching the memory node's counters: {e}"),
                }
            }
            match requests.recv_timeout(MN_STATS_PERIOD) {
                Ok(Request::Apply { routing, reply }) => {
                    let _ = reply.send(self.apply(routing));
                }
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }

    fn apply(&mut self, routing: Arc<Routing>) -> Result<(), ControlError> {
        let current = self.shared.routing().epoch();
        if routing.epoch() <= current {
            return Err(ControlError::StaleMap {
                new: routing.epoch(),
                current,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let message = ControlMessage {
            id,
            command: ControlCommand::Routing(Arc::clone(&routing)),
        };
        for (core, inbox) in self.inboxes.iter().enumerate() {
            inbox
                .try_send(message.clone())
                .map_err(|_| ControlError::InboxFull(core))?;
            self.shared.wakers[core].signal();
        }
        let deadline = Instant::now() + CONTROL_ACK_TIMEOUT;
        let mut waiting: Vec<usize> = (0..self.inboxes.len()).collect();
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(ack) if ack.id == id => waiting.retain(|&c| c != ack.core),
                // An acknowledgement of an earlier message that timed out.
                Ok(_) => {}
                Err(_) => return Err(ControlError::NoAck(waiting)),
            }
        }
        self.shared.set_routing(routing);
        Ok(())
    }
}
