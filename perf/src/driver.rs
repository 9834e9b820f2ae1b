//! The load driver: a load phase, then a closed-loop run phase, against any [`Target`].
//!
//! Both phases open `threads` connections, one thread each, and every connection keeps up to
//! `pipeline` requests outstanding: it fills its window, flushes, waits for at least one reply,
//! accounts for every reply that came, refills, and so on (a closed loop: a new request goes out
//! only when an earlier one has been answered). The load phase SETs every record once, the records
//! split into one contiguous slice per connection. The run phase draws operations from the
//! workload and stops after a given number of operations (split as evenly as possible over the
//! connections) or once a given duration has passed (outstanding requests are still collected).
//!
//! YCSB operations become requests as follows: read is `GET`, update and insert are `SET`, and
//! read-modify-write is a `GET` followed, once its reply is in, by a `SET` of the same key. A
//! read-modify-write is one operation, its latency runs from the `GET` being sent to the `SET` being
//! answered, and it holds one slot of the window throughout.
//!
//! Operation streams: a workload without inserts gives each connection its own clone of the
//! generators and its own random stream (stream `1 + connection`), so a connection's sequence is
//! the same on every run with the same seed. A workload with inserts (D) shares one stream
//! (stream 0) among the connections, because inserted records take consecutive indices from one
//! counter; connections take operations from it in batches of [`SHARED_OPS_BATCH`], so the global
//! sequence is fixed by the seed while the connection that issues each operation is not.
//!
//! Accounting: an operation counts once it is answered. An error reply makes it a failed
//! operation (counted in `errors`, not in the latency histograms, and a failed read-modify-write
//! sends no `SET`); a null reply to a read is a success that found nothing (`nil_replies`). The
//! latencies are recorded in nanoseconds in `hdrhistogram`s. Invariant: the requests a connection
//! has outstanding and its window of pending operations always have the same length, so every
//! reply matches exactly one pending request.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;

use crate::constants::{
    ERROR_SAMPLES_MAX, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS, PIPELINE_MAX, PROGRESS_INTERVAL,
    SHARED_OPS_BATCH, THREADS_MAX, ZIPF_TABLE_CLONE_BYTES_MAX,
};
use crate::target::{Command, Connection, Reply, Target, TargetError};
use crate::workload::{
    KeyDistribution, KeyOrder, Op, ValueGenerator, Workload, WorkloadError, write_key_name,
};

/// Why a phase could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("{what} is {value}; it must be between 1 and {max}")]
    OutOfRange {
        what: &'static str,
        value: usize,
        max: usize,
    },
    #[error("the target sent a reply with no request outstanding")]
    ReplyWithoutRequest,
    #[error("cannot create a latency histogram: {0}")]
    Histogram(String),
    #[error("a connection thread panicked")]
    WorkerPanicked,
}

/// When the run phase stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many operations in all.
    Ops(u64),
    /// Once this much time has passed since the phase started.
    Duration(Duration),
}

/// How many connections and how deep a window each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub threads: usize,
    pub pipeline: usize,
}

impl Concurrency {
    /// Checks the limits in [`crate::constants`].
    pub fn validate(&self) -> Result<(), DriverError> {
        if !(1..=THREADS_MAX).contains(&self.threads) {
            return Err(DriverError::OutOfRange {
                what: "threads",
                value: self.threads,
                max: THREADS_MAX,
            });
        }
        if !(1..=PIPELINE_MAX).contains(&self.pipeline) {
            return Err(DriverError::OutOfRange {
                what: "pipeline",
                value: self.pipeline,
                max: PIPELINE_MAX,
            });
        }
        Ok(())
    }
}

/// A count per YCSB operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts([u64; 4]);

impl OpCounts {
    fn slot(op: Op) -> usize {
        match op {
            Op::Read => 0,
            Op::Update => 1,
            Op::Insert => 2,
            Op::ReadModifyWrite => 3,
        }
    }

    /// The count of `op`.
    pub fn get(&self, op: Op) -> u64 {
        self.0[Self::slot(op)]
    }

    fn add(&mut self, op: Op, n: u64) {
        self.0[Self::slot(op)] += n;
    }

    /// The sum over all operations.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn merge(&mut self, other: &OpCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// What one phase did.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// From the moment every connection was open to the last reply.
    pub elapsed: Duration,
    /// Operations answered, failed ones included, by operation.
    pub ops: OpCounts,
    /// Operations that got an error reply, by operation.
    pub errors: OpCounts,
    /// Successful reads that found no value.
    pub nil_replies: u64,
    /// The first distinct error texts.
    pub error_samples: Vec<String>,
    /// Requests sent (`GET` and `SET`; a read-modify-write sends two).
    pub requests: u64,
    /// Latency of successful operations, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// The same per operation, indexed like [`Op::ALL`].
    pub latency_ns_by_op: [Histogram<u64>; 4],
}

impl PhaseResult {
    /// Operations answered, failed ones included.
    pub fn ops_total(&self) -> u64 {
        self.ops.total()
    }

    /// Operations that got an error reply.
    pub fn errors_total(&self) -> u64 {
        self.errors.total()
    }

    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            (self.ops_total() - self.errors_total()) as f64 / seconds
        } else {
            0.0
        }
    }

    /// The latency histogram of `op`.
    pub fn latency_of(&self, op: Op) -> &Histogram<u64> {
        &self.latency_ns_by_op[OpCounts::slot(op)]
    }
}

fn histogram() -> Result<Histogram<u64>, DriverError> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .map_err(|error| DriverError::Histogram(error.to_string()))
}

/// A callback the phase calls from the calling thread with the operations answered so far.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64);

/// SETs every record of `workload` (version 0) through `concurrency.threads` connections.
pub fn load(
    target: &dyn Target,
    workload: &Workload,
    concurrency: Concurrency,
    progress: Option<ProgressFn<'_>>,
) -> Result<PhaseResult, DriverError> {
    concurrency.validate()?;
    let parts = concurrency.threads as u64;
    let mut sources = Vec::with_capacity(concurrency.threads);
    for part in 0..parts {
        sources.push(Source::Load(workload.load_keys_part(part, parts)?));
    }
    run_phase(target, workload, concurrency, sources, progress)
}

/// Runs the closed loop until `stop`.
pub fn run(
    target: &dyn Target,
    workload: &Workload,
    concurrency: Concurrency,
    stop: Stop,
    progress: Option<ProgressFn<'_>>,
) -> Result<PhaseResult, DriverError> {
    concurrency.validate()?;
    let threads = concurrency.threads;
    let limits: Vec<Limit> = match stop {
        Stop::Ops(ops) => (0..threads as u64)
            .map(|i| {
                let share = ops / threads as u64 + u64::from(i < ops % threads as u64);
                Limit::Ops(share)
            })
            .collect(),
        Stop::Duration(duration) => vec![Limit::Until(duration); threads],
    };
    let shared = if shares_stream(workload, threads) {
        Some(Mutex::new(SharedStream {
            workload: workload.clone(),
            rng: workload.rng(0),
        }))
    } else {
        None
    };
    let sources = limits
        .into_iter()
        .enumerate()
        .map(|(i, limit)| match &shared {
            Some(stream) => Source::Shared {
                stream,
                buffer: VecDeque::with_capacity(SHARED_OPS_BATCH),
                limit,
            },
            None => Source::Owned {
                workload: Box::new(workload.clone()),
                rng: workload.rng(1 + i as u64),
                limit,
            },
        })
        .collect();
    run_phase(target, workload, concurrency, sources, progress)
}

/// Whether the connections must share one operation stream.
fn shares_stream(workload: &Workload, threads: usize) -> bool {
    let config = workload.config();
    if config.spec.insert > 0.0 {
        return true;
    }
    let table_bytes = match config.spec.distribution {
        KeyDistribution::ZipfExact { .. } => config
            .records
            .saturating_add(config.inserts_expected)
            .saturating_mul(8),
        _ => 0,
    };
    table_bytes.saturating_mul(threads as u64 - 1) > ZIPF_TABLE_CLONE_BYTES_MAX
}

/// How many operations a connection may still issue.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Ops(u64),
    /// Until this long after the phase starts; turned into a deadline when it does.
    Until(Duration),
    Deadline(Instant),
}

impl Limit {
    fn start(&mut self, at: Instant) {
        if let Limit::Until(duration) = *self {
            *self = Limit::Deadline(at + duration);
        }
    }

    /// Takes one operation, if the limit allows another.
    fn take(&mut self) -> bool {
        match self {
            Limit::Ops(0) => false,
            Limit::Ops(left) => {
                *left -= 1;
                true
            }
            Limit::Until(_) => true,
            Limit::Deadline(deadline) => Instant::now() < *deadline,
        }
    }

    /// How many operations are worth drawing ahead.
    fn batch(&self) -> usize {
        match *self {
            Limit::Ops(left) => left.min(SHARED_OPS_BATCH as u64) as usize,
            _ => SHARED_OPS_BATCH,
        }
    }
}

struct SharedStream {
    workload: Workload,
    rng: SmallRng,
}

/// Where a connection's operations come from.
enum Source<'a> {
    Load(Range<u64>),
    Owned {
        workload: Box<Workload>,
        rng: SmallRng,
        limit: Limit,
    },
    Shared {
        stream: &'a Mutex<SharedStream>,
        buffer: VecDeque<(Op, u64)>,
        limit: Limit,
    },
}

impl Source<'_> {
    fn start(&mut self, at: Instant) {
        match self {
            Source::Load(_) => {}
            Source::Owned { limit, .. } | Source::Shared { limit, .. } => limit.start(at),
        }
    }

    fn next(&mut self) -> Option<(Op, u64)> {
        match self {
            Source::Load(range) => range.next().map(|index| (Op::Insert, index)),
            Source::Owned {
                workload,
                rng,
                limit,
            } => limit.take().then(|| workload.next_op(rng)),
            Source::Shared {
                stream,
                buffer,
                limit,
            } => {
                if buffer.is_empty() {
                    let batch = limit.batch();
                    // A poisoned stream only means another connection panicked; its state is a
                    // plain generator and still consistent.
                    let mut shared = stream
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let SharedStream { workload, rng } = &mut *shared;
                    buffer.extend((0..batch).map(|_| workload.next_op(rng)));
                }
                if limit.take() {
                    buffer.pop_front()
                } else {
                    None
                }
            }
        }
    }
}

/// Which request of an operation a pending entry waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The only request of a read, update or insert.
    Single,
    /// The `GET` of a read-modify-write.
    RmwRead,
    /// The `SET` of a read-modify-write.
    RmwWrite,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    op: Op,
    stage: Stage,
    index: u64,
    start: Instant,
}

/// What one connection accumulates.
struct Tally {
    ops: OpCounts,
    errors: OpCounts,
    nil_replies: u64,
    error_samples: Vec<String>,
    requests: u64,
    latency_ns: Histogram<u64>,
    latency_ns_by_op: [Histogram<u64>; 4],
}

impl Tally {
    fn new() -> Result<Self, DriverError> {
        Ok(Self {
            ops: OpCounts::default(),
            errors: OpCounts::default(),
            nil_replies: 0,
            error_samples: Vec::new(),
            requests: 0,
            latency_ns: histogram()?,
            latency_ns_by_op: [histogram()?, histogram()?, histogram()?, histogram()?],
        })
    }

    fn sample_error(samples: &mut Vec<String>, text: &str) {
        if samples.len() < ERROR_SAMPLES_MAX && !samples.iter().any(|s| s == text) {
            samples.push(text.to_owned());
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.ops.merge(&other.ops);
        self.errors.merge(&other.errors);
        self.nil_replies += other.nil_replies;
        self.requests += other.requests;
        for text in &other.error_samples {
            Self::sample_error(&mut self.error_samples, text);
        }
        // Histograms built with the same bounds always add.
        let _ = self.latency_ns.add(&other.latency_ns);
        for (mine, theirs) in self
            .latency_ns_by_op
            .iter_mut()
            .zip(&other.latency_ns_by_op)
        {
            let _ = mine.add(theirs);
        }
    }
}

/// One connection's loop state. It lives on the connection's thread only.
struct Worker<'t> {
    connection: Box<dyn Connection + 't>,
    pipeline: usize,
    key_order: KeyOrder,
    values: ValueGenerator,
    key: Vec<u8>,
    value: Vec<u8>,
    /// The version of the next value written; load writes version 0.
    version: u64,
    pending: VecDeque<Pending>,
    replies: Vec<Reply>,
    tally: Tally,
}

impl Worker<'_> {
    fn send_get(&mut self, index: u64) -> Result<(), DriverError> {
        self.key.clear();
        write_key_name(index, self.key_order, &mut self.key);
        self.connection.send(Command::Get { key: &self.key })?;
        self.tally.requests += 1;
        Ok(())
    }

    fn send_set(&mut self, index: u64, version: u64) -> Result<(), DriverError> {
        self.key.clear();
        write_key_name(index, self.key_order, &mut self.key);
        self.values.fill(index, version, &mut self.value);
        self.connection.send(Command::Set {
            key: &self.key,
            value: &self.value,
        })?;
        self.tally.requests += 1;
        Ok(())
    }

    fn next_version(&mut self, load: bool) -> u64 {
        if load {
            return 0;
        }
        self.version += 1;
        self.version
    }

    /// Sends the first request of an operation and queues it as pending; the caller sets its start
    /// time when the batch it belongs to is complete.
    fn issue(&mut self, op: Op, index: u64, load: bool) -> Result<(), DriverError> {
        let stage = match op {
            Op::Read => {
                self.send_get(index)?;
                Stage::Single
            }
            Op::ReadModifyWrite => {
                self.send_get(index)?;
                Stage::RmwRead
            }
            Op::Update | Op::Insert => {
                let version = self.next_version(load);
                self.send_set(index, version)?;
                Stage::Single
            }
        };
        self.pending.push_back(Pending {
            op,
            stage,
            index,
            start: Instant::now(),
        });
        Ok(())
    }

    /// Counts a finished operation.
    fn complete(&mut self, pending: Pending, reply: &Reply, now: Instant) {
        let tally = &mut self.tally;
        tally.ops.add(pending.op, 1);
        match reply {
            Reply::Error(text) => {
                tally.errors.add(pending.op, 1);
                Tally::sample_error(&mut tally.error_samples, text);
            }
            _ => {
                if *reply == Reply::Nil {
                    tally.nil_replies += 1;
                }
                let ns = now.saturating_duration_since(pending.start).as_nanos();
                let ns = u64::try_from(ns)
                    .unwrap_or(u64::MAX)
                    .clamp(1, LATENCY_NS_MAX);
                tally.latency_ns.saturating_record(ns);
                tally.latency_ns_by_op[OpCounts::slot(pending.op)].saturating_record(ns);
            }
        }
    }

    /// Runs the closed loop over `source` until it is exhausted (or `abort` is set) and every
    /// outstanding request is answered.
    fn drive(
        &mut self,
        source: &mut Source<'_>,
        load: bool,
        abort: &AtomicBool,
        answered: &AtomicU64,
    ) -> Result<(), DriverError> {
        let mut exhausted = false;
        loop {
            if !exhausted && !abort.load(Ordering::Relaxed) {
                let first_new = self.pending.len();
                while self.pending.len() < self.pipeline {
                    let Some((op, index)) = source.next() else {
                        exhausted = true;
                        break;
                    };
                    self.issue(op, index, load)?;
                }
                // The new requests leave together at the flush below; their latency starts there,
                // not while the batch was being encoded.
                let sent = Instant::now();
                for pending in self.pending.range_mut(first_new..) {
                    pending.start = sent;
                }
            }
            if self.pending.is_empty() {
                return Ok(());
            }
            self.connection.flush()?;
            let mut replies = std::mem::take(&mut self.replies);
            replies.clear();
            let received = self.connection.recv(&mut replies, self.pipeline);
            let now = Instant::now();
            let mut finished = 0;
            let result = received.map_err(DriverError::from).and_then(|_| {
                for reply in replies.drain(..) {
                    let pending = self
                        .pending
                        .pop_front()
                        .ok_or(DriverError::ReplyWithoutRequest)?;
                    match (pending.stage, &reply) {
                        (Stage::RmwRead, Reply::Error(_))
                        | (Stage::Single | Stage::RmwWrite, _) => {
                            self.complete(pending, &reply, now);
                            finished += 1;
                        }
                        (Stage::RmwRead, _) => {
                            let version = self.next_version(load);
                            self.send_set(pending.index, version)?;
                            self.pending.push_back(Pending {
                                stage: Stage::RmwWrite,
                                ..pending
                            });
                        }
                    }
                }
                Ok(())
            });
            self.replies = replies;
            answered.fetch_add(finished, Ordering::Relaxed);
            result?;
        }
    }
}

/// Opens the connections, runs every source on its own connection and thread, and merges what
/// they counted.
fn run_phase(
    target: &dyn Target,
    workload: &Workload,
    concurrency: Concurrency,
    sources: Vec<Source<'_>>,
    progress: Option<ProgressFn<'_>>,
) -> Result<PhaseResult, DriverError> {
    let load = matches!(sources.first(), Some(Source::Load(_)));
    let barrier = Barrier::new(sources.len() + 1);
    let abort = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let config = workload.config();
    let values = *workload.values();

    let (started, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .map(|mut source| {
                let (barrier, abort, answered) = (&barrier, &abort, &answered);
                scope.spawn(move || -> Result<(Tally, Instant, Instant), DriverError> {
                    // Every thread reaches the barrier, connected or not, so that a failed connect
                    // cannot leave the others waiting.
                    let prepared = Tally::new().and_then(|tally| {
                        let connection = target.connect(concurrency.pipeline)?;
                        Ok(Worker {
                            connection,
                            pipeline: concurrency.pipeline,
                            key_order: config.key_order,
                            values,
                            key: Vec::with_capacity(32),
                            value: Vec::with_capacity(config.value_bytes),
                            version: 0,
                            pending: VecDeque::with_capacity(concurrency.pipeline),
                            replies: Vec::with_capacity(concurrency.pipeline),
                            tally,
                        })
                    });
                    if prepared.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    barrier.wait();
                    let mut worker = prepared?;
                    let began = Instant::now();
                    source.start(began);
                    let result = worker.drive(&mut source, load, abort, answered);
                    let finished = Instant::now();
                    if result.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    result.map(|()| (worker.tally, began, finished))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut progress = progress;
        while !handles.iter().all(|h| h.is_finished()) {
            if let Some(report) = progress.as_mut() {
                report(answered.load(Ordering::Relaxed));
            }
            std::thread::sleep(PROGRESS_INTERVAL);
        }
        if let Some(report) = progress.as_mut() {
            report(answered.load(Ordering::Relaxed));
        }
        let outcomes: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(DriverError::WorkerPanicked)))
            .collect();
        (started, outcomes)
    });

    let mut total = Tally::new()?;
    // The phase runs from the first connection's start to the last one's end, as the connection
    // threads saw them: this thread may be scheduled out past the barrier while they run.
    let mut span: Option<(Instant, Instant)> = None;
    for outcome in outcomes {
        let (tally, began, finished) = outcome?;
        total.merge(&tally);
        span = Some(match span {
            Some((first, last)) => (first.min(began), last.max(finished)),
            None => (began, finished),
        });
    }
    let (started, last) = span.unwrap_or((started, started));
    Ok(PhaseResult {
        elapsed: last.saturating_duration_since(started),
        ops: total.ops,
        errors: total.errors,
        nil_replies: total.nil_replies,
        error_samples: total.error_samples,
        requests: total.requests,
        latency_ns: total.latency_ns,
        latency_ns_by_op: total.latency_ns_by_op,
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-process target that answers at once from a map, counts what it is sent, and records
    //! the deepest window any connection reached.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;
    use crate::info::DinomoStats;

    #[derive(Default)]
    pub struct FakeTarget {
        pub store: Mutex<HashMap<Vec<u8>, usize>>,
        pub gets: AtomicU64,
        pub sets: AtomicU64,
        pub in_flight_max_seen: AtomicUsize,
        /// Every `fail_sets_every`-th SET (counted over the whole target) gets an error reply.
        pub fail_sets_every: Option<u64>,
        /// Every GET gets an error reply.
        pub fail_gets: bool,
        /// Every command, in the order one connection sent it (for single-connection runs).
        pub log: Mutex<Vec<(bool, Vec<u8>)>>,
    }

    pub struct FakeConnection<'a> {
        target: &'a FakeTarget,
        queue: VecDeque<Reply>,
        in_flight_max: usize,
    }

    impl Target for FakeTarget {
        fn label(&self) -> String {
            "fake".into()
        }
        fn connect(&self, in_flight_max: usize) -> Result<Box<dyn Connection + '_>, TargetError> {
            Ok(Box::new(FakeConnection {
                target: self,
                queue: VecDeque::new(),
                in_flight_max,
            }))
        }
        fn stats(&self) -> Result<Option<DinomoStats>, TargetError> {
            Ok(None)
        }
    }

    impl Connection for FakeConnection<'_> {
        fn send(&mut self, command: Command<'_>) -> Result<(), TargetError> {
            if self.queue.len() >= self.in_flight_max {
                return Err(TargetError::InFlightFull {
                    in_flight: self.queue.len(),
                });
            }
            let target = self.target;
            let reply = match command {
                Command::Get { key } => {
                    target.gets.fetch_add(1, Ordering::Relaxed);
                    target.log.lock().unwrap().push((false, key.to_vec()));
                    if target.fail_gets {
                        Reply::Error("ERR get refused".into())
                    } else {
                        match target.store.lock().unwrap().get(key) {
                            Some(&len) => Reply::Value { len },
                            None => Reply::Nil,
                        }
                    }
                }
                Command::Set { key, value } => {
                    let n = target.sets.fetch_add(1, Ordering::Relaxed) + 1;
                    target.log.lock().unwrap().push((true, key.to_vec()));
                    if target
                        .fail_sets_every
                        .is_some_and(|every| n.is_multiple_of(every))
                    {
                        Reply::Error("ERR set refused".into())
                    } else {
                        target
                            .store
                            .lock()
                            .unwrap()
                            .insert(key.to_vec(), value.len());
                        Reply::Done
                    }
                }
            };
            self.queue.push_back(reply);
            target
                .in_flight_max_seen
                .fetch_max(self.queue.len(), Ordering::Relaxed);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), TargetError> {
            Ok(())
        }
        fn recv(&mut self, replies: &mut Vec<Reply>, max: usize) -> Result<usize, TargetError> {
            let n = self.queue.len().min(max);
            replies.extend(self.queue.drain(..n));
            Ok(n)
        }
        fn in_flight(&self) -> usize {
            self.queue.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    use super::fake::FakeTarget;
    use super::*;
    use crate::workload::{WorkloadConfig, WorkloadSpec, Ycsb};

    fn workload(letter: Ycsb, records: u64, inserts_expected: u64) -> Workload {
        Workload::new(WorkloadConfig {
            value_bytes: 16,
            seed: 9,
            inserts_expected,
            ..WorkloadConfig::new(records, WorkloadSpec::ycsb(letter).unwrap())
        })
        .unwrap()
    }

    fn both(threads: usize, pipeline: usize) -> Concurrency {
        Concurrency { threads, pipeline }
    }

    #[test]
    fn load_sets_every_record_once() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::A, 1000, 0);
        let result = load(&target, &workload, both(3, 8), None).unwrap();
        assert_eq!(result.ops.get(Op::Insert), 1000);
        assert_eq!(result.ops_total(), 1000);
        assert_eq!(result.errors_total(), 0);
        assert_eq!(target.sets.load(Ordering::Relaxed), 1000);
        assert_eq!(target.store.lock().unwrap().len(), 1000);
        assert_eq!(result.latency_ns.len(), 1000);
    }

    #[test]
    fn closed_loop_counts_every_operation_and_fills_the_window() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::A, 500, 0);
        load(&target, &workload, both(2, 4), None).unwrap();
        target.in_flight_max_seen.store(0, Ordering::Relaxed);
        let gets_before = target.gets.load(Ordering::Relaxed);
        let sets_before = target.sets.load(Ordering::Relaxed);
        let mut last_progress = 0;
        let mut progress = |done: u64| last_progress = done;
        let result = run(
            &target,
            &workload,
            both(3, 5),
            Stop::Ops(5000),
            Some(&mut progress),
        )
        .unwrap();
        assert_eq!(result.ops_total(), 5000);
        assert_eq!(last_progress, 5000);
        let (reads, updates) = (result.ops.get(Op::Read), result.ops.get(Op::Update));
        assert_eq!(reads + updates, 5000);
        assert!(
            reads > 2000 && updates > 2000,
            "{reads} reads, {updates} updates"
        );
        assert_eq!(target.gets.load(Ordering::Relaxed) - gets_before, reads);
        assert_eq!(target.sets.load(Ordering::Relaxed) - sets_before, updates);
        assert_eq!(result.requests, 5000);
        assert_eq!(target.in_flight_max_seen.load(Ordering::Relaxed), 5);
        assert_eq!(result.latency_ns.len(), 5000);
        assert_eq!(result.latency_of(Op::Read).len(), reads);
        assert_eq!(result.nil_replies, 0);
    }

    #[test]
    fn read_modify_write_is_one_operation_of_two_requests() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::F, 200, 0);
        load(&target, &workload, both(1, 8), None).unwrap();
        let (gets_before, sets_before) = (
            target.gets.load(Ordering::Relaxed),
            target.sets.load(Ordering::Relaxed),
        );
        let result = run(&target, &workload, both(2, 3), Stop::Ops(1000), None).unwrap();
        let (reads, rmws) = (
            result.ops.get(Op::Read),
            result.ops.get(Op::ReadModifyWrite),
        );
        assert_eq!(reads + rmws, 1000);
        assert!(rmws > 300);
        assert_eq!(
            target.gets.load(Ordering::Relaxed) - gets_before,
            reads + rmws
        );
        assert_eq!(target.sets.load(Ordering::Relaxed) - sets_before, rmws);
        assert_eq!(result.requests, reads + 2 * rmws);
        assert!(target.in_flight_max_seen.load(Ordering::Relaxed) <= 8);
    }

    #[test]
    fn a_failed_read_modify_write_sends_no_set() {
        let target = FakeTarget {
            fail_gets: true,
            ..FakeTarget::default()
        };
        let workload = workload(Ycsb::F, 100, 0);
        let result = run(&target, &workload, both(1, 4), Stop::Ops(300), None).unwrap();
        assert_eq!(result.ops_total(), 300);
        assert_eq!(result.errors_total(), 300);
        assert_eq!(target.sets.load(Ordering::Relaxed), 0);
        assert_eq!(result.latency_ns.len(), 0);
        assert_eq!(result.error_samples, vec!["ERR get refused".to_owned()]);
        assert_eq!(result.ops_per_sec(), 0.0);
    }

    #[test]
    fn error_replies_are_failed_operations() {
        let target = FakeTarget {
            fail_sets_every: Some(7),
            ..FakeTarget::default()
        };
        let workload = workload(Ycsb::A, 100, 0);
        let result = run(&target, &workload, both(2, 4), Stop::Ops(700), None).unwrap();
        let sets = target.sets.load(Ordering::Relaxed);
        assert_eq!(result.ops_total(), 700);
        assert_eq!(result.errors.get(Op::Update), sets / 7);
        assert_eq!(result.errors.get(Op::Read), 0);
        assert_eq!(result.latency_ns.len(), 700 - sets / 7);
        // Nothing was loaded, so only records updated earlier in the run can be found.
        assert!(result.nil_replies > 0);
        assert!(result.nil_replies <= result.ops.get(Op::Read));
    }

    #[test]
    fn inserts_take_fresh_records_once_across_connections() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::D, 300, 0);
        load(&target, &workload, both(2, 4), None).unwrap();
        let result = run(&target, &workload, both(3, 4), Stop::Ops(4000), None).unwrap();
        let inserts = result.ops.get(Op::Insert);
        assert!(inserts > 100);
        assert_eq!(result.ops_total(), 4000);
        // Every insert wrote a new key, so the store grew by exactly the inserts.
        assert_eq!(target.store.lock().unwrap().len() as u64, 300 + inserts);
    }

    #[test]
    fn a_single_connection_run_is_reproducible() {
        let commands = |seed_run: u64| {
            let target = FakeTarget::default();
            let workload = workload(Ycsb::B, 1000, 0);
            run(&target, &workload, both(1, 7), Stop::Ops(2000), None).unwrap();
            let _ = seed_run;
            target.log.into_inner().unwrap()
        };
        let first = commands(0);
        assert_eq!(first.len(), 2000);
        assert_eq!(first, commands(1));
        let distinct: HashSet<_> = first.iter().map(|(_, key)| key).collect();
        assert!(distinct.len() > 50);
    }

    #[test]
    fn timed_runs_stop() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::C, 100, 0);
        let result = run(
            &target,
            &workload,
            both(2, 4),
            Stop::Duration(Duration::from_millis(50)),
            None,
        )
        .unwrap();
        assert!(result.ops_total() > 0);
        assert_eq!(result.ops_total(), target.gets.load(Ordering::Relaxed));
        let timed_d = workload_d_timed(&target);
        assert!(timed_d > 0);
    }

    fn workload_d_timed(target: &FakeTarget) -> u64 {
        let workload = workload(Ycsb::D, 100, 0);
        run(
            target,
            &workload,
            both(2, 2),
            Stop::Duration(Duration::from_millis(20)),
            None,
        )
        .unwrap()
        .ops_total()
    }

    #[test]
    fn fewer_operations_than_connections() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::C, 100, 0);
        let result = run(&target, &workload, both(4, 2), Stop::Ops(3), None).unwrap();
        assert_eq!(result.ops_total(), 3);
        let result = run(&target, &workload, both(4, 2), Stop::Ops(0), None).unwrap();
        assert_eq!(result.ops_total(), 0);
    }

    #[test]
    fn limits_are_checked() {
        let target = FakeTarget::default();
        let workload = workload(Ycsb::C, 10, 0);
        for bad in [
            both(0, 1),
            both(1, 0),
            both(THREADS_MAX + 1, 1),
            both(1, PIPELINE_MAX + 1),
        ] {
            assert!(matches!(
                run(&target, &workload, bad, Stop::Ops(1), None),
                Err(DriverError::OutOfRange { .. })
            ));
        }
    }
}
