//! Small wrappers over system facilities the dataplane's event loops share: the KN worker loop
//! (`kn/worker.rs`) and the MN's tcp verbs server (`mn/tcp_server.rs`) drive their sockets with
//! the same io_uring code.
//!
//! - [`Ring`]: an io_uring that owns the buffers of its operations in flight and hands them back
//!   with their completions ([`Event`]), pushes with one submit when the submission queue is full,
//!   and waits with a timeout, treating the errnos that only end a wait early as no error.
//! - [`Slots`]: generation-checked slots for a loop's connections; every operation names its slot
//!   by (index, generation) in its user data, so a completion for a slot freed and reused since is
//!   recognised and ignored.
//! - [`Acceptor`]: accepts on a listener, with the one policy every loop follows when an accept
//!   fails (a bounded back-off when descriptors or memory run out).
//! - [`EventFd`]: how other threads wake a loop that sleeps in its ring.
//!
//! Invariant: the `unsafe` that io_uring needs stays in this module. A buffer named by an
//! operation in flight is held by the ring and nowhere else until the operation's completion is
//! reaped, so the loops that use the ring need no `unsafe` and cannot touch such a buffer.

pub mod accept;
pub mod constants;
mod eventfd;
pub mod ring;
pub mod slots;

pub use accept::Acceptor;
pub use eventfd::EventFd;
pub use ring::{Event, Op, Ring, RingMode};
pub use slots::{SlotId, Slots};
