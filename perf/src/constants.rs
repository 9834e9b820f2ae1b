//! Named limits of the `dinomo-bench` load driver.
//!
//! Every bound that the driver, its RESP client or its server launcher can run into lives here, so
//! that the limits are read in one place and their relations are checked when the crate compiles.
//! The workload generators keep their own limits in [`crate::workload::constants`].

use std::time::Duration;

use crate::workload::constants::VALUE_BYTES_MAX;

/// The most connections (one thread each) a run opens.
pub const THREADS_MAX: usize = 1024;

/// The most requests one connection keeps outstanding.
pub const PIPELINE_MAX: usize = 4096;

/// How many operations a connection takes at once from a stream shared by every connection (the
/// stream of a workload that inserts). Larger batches lock the stream less often; smaller ones
/// leave fewer drawn-but-unused operations when a timed run stops.
pub const SHARED_OPS_BATCH: usize = 64;

/// Above this many bytes of exact-zipf table per extra connection, the connections share one
/// operation stream instead of each cloning the table.
pub const ZIPF_TABLE_CLONE_BYTES_MAX: u64 = 256 << 20;

/// The longest line of a RESP reply header, simple string or error; longer is malformed.
pub const RESP_LINE_BYTES_MAX: usize = 64 << 10;

/// The largest bulk string a reply may carry: a value of the largest size the generators make,
/// or an `INFO` text, with room to spare.
pub const RESP_BULK_BYTES_MAX: usize = VALUE_BYTES_MAX + (1 << 20);

/// The most elements of one RESP aggregate (array, set, push, map pairs).
pub const RESP_AGGREGATE_LEN_MAX: usize = 1 << 20;

/// How deeply RESP aggregates may nest.
pub const RESP_DEPTH_MAX: usize = 32;

/// The first size of a connection's receive buffer; it grows up to [`RECEIVE_BUFFER_BYTES_MAX`].
pub const RECEIVE_BUFFER_BYTES_INITIAL: usize = 64 << 10;

/// The largest a connection's receive buffer grows: one whole bulk reply plus its header.
pub const RECEIVE_BUFFER_BYTES_MAX: usize = RESP_BULK_BYTES_MAX + RESP_LINE_BYTES_MAX;

/// How long a connection waits for a reply before it gives up on the server.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest error text kept from one error reply.
pub const ERROR_TEXT_BYTES_MAX: usize = 256;

/// How many distinct error texts a report keeps as samples.
pub const ERROR_SAMPLES_MAX: usize = 8;

/// The highest latency the histograms record; slower operations are recorded as this value.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Significant decimal digits of the latency histograms.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// How often the progress bar is refreshed while a phase runs.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// How long a started server may take to accept connections and answer `PING`.
pub const SERVER_START_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How often a starting server is probed.
pub const SERVER_PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// How often a server start is retried on a new port when the server exits before it accepts
/// (another process may have taken the free port in between).
pub const SERVER_START_ATTEMPTS_MAX: u32 = 3;

/// How much of a failed server's log an error message quotes.
pub const SERVER_LOG_TAIL_BYTES: usize = 4 << 10;

/// The most rounds of `compare`.
pub const COMPARE_ROUNDS_MAX: usize = 100;

/// The most points one sweep runs.
pub const SWEEP_POINTS_MAX: usize = 10_000;

// A reply header must fit in the receive buffer next to the largest bulk string.
const _: () = assert!(RECEIVE_BUFFER_BYTES_MAX >= RESP_BULK_BYTES_MAX + RESP_LINE_BYTES_MAX);
const _: () = assert!(RECEIVE_BUFFER_BYTES_INITIAL <= RECEIVE_BUFFER_BYTES_MAX);
// A value the generators make must fit in one bulk reply.
const _: () = assert!(RESP_BULK_BYTES_MAX > VALUE_BYTES_MAX);
const _: () = assert!(SHARED_OPS_BATCH >= 1 && PIPELINE_MAX >= 1 && THREADS_MAX >= 1);
const _: () = assert!(SERVER_START_ATTEMPTS_MAX >= 1);
const _: () = assert!(LATENCY_SIGNIFICANT_DIGITS <= 5);
