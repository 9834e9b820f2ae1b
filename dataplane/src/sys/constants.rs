//! Named limits of the event-loop plumbing.

use std::time::Duration;

/// Bits of a slot index in an operation's user data; the other 40 bits hold the operation (8)
/// and the slot's generation (32).
pub const SLOT_INDEX_BITS: u32 = 24;
/// Slots a [`super::Slots`] table holds at most: every index its user data can name.
pub const SLOTS_MAX: usize = 1 << SLOT_INDEX_BITS;
/// How long an accept waits after the previous one found the process or the system out of
/// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): posted again at once, it would fail
/// at once and spin the loop. Connections wait in the listen backlog meanwhile.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// How long a ring that is dropped with operations in flight waits for them after cancelling
/// them; the buffers of operations still in flight then are leaked, never freed under the kernel.
pub const RING_DROP_DRAIN: Duration = Duration::from_secs(1);
/// How long a ring's kernel submission-polling thread stays awake without work.
pub const RING_SQPOLL_IDLE_MS: u32 = 2000;

const _: () = assert!(SLOT_INDEX_BITS + 8 + 32 == 64);
const _: () = assert!(SLOTS_MAX <= u32::MAX as usize);
