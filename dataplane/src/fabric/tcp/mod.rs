//! The `tcp` fabric: a verbs server on the memory node and one connection per queue pair.
//!
//! This module is the KN side and what both sides share: the frame codec and the limits below.
//! The MN runs a [`TcpServer`](crate::mn::tcp_server::TcpServer) whose network loop is one
//! thread driving an io_uring (accept, recv, send and an eventfd read for RPC replies); it
//! executes one-sided verbs on its pool in arrival order per connection, hands RPCs to the MN's
//! RPC thread pool and answers every work request by its id (RPC replies may overtake verbs).
//! Each KN queue pair ([`TcpQp`]) holds its own non-blocking connection, pipelines requests (a
//! doorbell batch is one `write`) and never blocks in `poll`. The wire format is in [`frame`] and
//! specified in `fabric/FRAMES.md`.
//!
//! Invariants at the boundary: the server answers nothing but a handshake until the client has
//! shown the cluster token (compared in constant time); every frame, connection count, RPC in
//! flight and output queue is bounded by the limits below; a peer that sends garbage, stalls
//! mid-frame or stops reading is dropped without affecting other connections; a bad verb gets an
//! error completion, never a write outside the region.
//!
//! [`TcpRpcForwarder`] lets another backend (the local fabric over a shared pool file) send its
//! RPCs to the MN process over this protocol.

mod client;
pub mod frame;

use std::time::Duration;

pub use client::{TcpFabric, TcpQp, TcpRpcForwarder};

/// Connections a server serves at once unless configured otherwise; one more is refused with a
/// CLOSE frame.
pub const TCP_CONNECTIONS_DEFAULT: usize = 64;
/// Largest connection limit a configuration may ask for (it sizes the io_uring).
pub const TCP_CONNECTIONS_MAX: usize = 1024;
/// Connections being refused or dropped (flushing their CLOSE frame) at once, beyond the limit;
/// past this, extra connections are closed without a word.
pub const TCP_CLOSING_MAX: usize = 16;
/// RPCs in flight per connection by default; past this the server stops reading the
/// connection's requests until a reply is sent.
pub const TCP_CONN_RPCS_DEFAULT: usize = 8;
/// A connection has this long to complete its handshake by default.
pub const TCP_HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// A connection may sit this long mid-frame, or not read its responses, by default.
pub const TCP_STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// A dropped connection's CLOSE frame gets this long at most to be delivered.
pub const TCP_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the server looks for stalled connections; the timeouts above are this precise.
pub const TCP_TICK: Duration = Duration::from_millis(20);
/// The client gives up connecting (and the handshake) after this long by default.
pub const TCP_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Bytes read per receive at least (both sides): the receive buffer's size between large frames.
pub const TCP_RECV_CHUNK_BYTES: usize = 64 << 10;
/// The server stops reading a connection's requests while this many response bytes wait to be
/// sent, so a client that does not read cannot grow the server's memory.
pub const TCP_OUTPUT_PENDING_BYTES_MAX: usize = 4 << 20;
/// How long the RPC forwarder waits for a reply by default (a merge RPC can take a while).
pub const TCP_FORWARD_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

const _: () = assert!(TCP_CONNECTIONS_DEFAULT <= TCP_CONNECTIONS_MAX);
// The server keeps its connections in a slot table, whose indexes the ring's user data names.
const _: () = assert!(TCP_CONNECTIONS_MAX + TCP_CLOSING_MAX <= crate::sys::constants::SLOTS_MAX);
const _: () = assert!(TCP_RECV_CHUNK_BYTES >= frame::HELLO_BODY_BYTES_MAX + frame::LEN_BYTES);
const _: () = assert!(TCP_OUTPUT_PENDING_BYTES_MAX >= TCP_RECV_CHUNK_BYTES);
