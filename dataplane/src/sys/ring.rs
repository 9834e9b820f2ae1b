//! [`Ring`]: one event loop's io_uring, holding the buffers of its operations in flight.
//!
//! Memory safety with io_uring rests on one rule: a buffer named by an operation in flight is
//! neither touched, moved, resized nor freed until that operation's completion has been reaped.
//! The ring keeps the rule by ownership. A receive or a send takes its buffer (a `Vec<u8>`) by
//! value and holds it until it reaps the operation's completion, which hands the buffer back in
//! its [`Event`]; an eventfd read goes into a word the ring owns and never reads. A loop therefore
//! cannot parse a buffer the kernel may still be writing, or grow one it is still sending: the
//! loop does not have it. Moving a vector moves only its header, so handing buffers to the ring
//! and back costs no allocation and no copy.
//!
//! Every operation names a slot ([`SlotId`]): its user data packs (operation, slot index,
//! generation), and its completion comes back as an [`Event`] with that slot, which the loop
//! checks against its [`super::Slots`]. At most one receive, one send and one eventfd read are in
//! flight per slot index — the loops need no more, and it lets the ring find a buffer by its
//! slot — and a second one is refused with an error. Accepts go through [`super::Acceptor`].
//!
//! A push that finds the submission queue full submits once and pushes again (an error if the
//! queue is still full). [`Ring::submit_and_wait`] waits with a timeout; ETIME, EINTR, EBUSY and
//! EAGAIN only end a wait early and are not errors. A ring dropped with buffers in flight cancels
//! those operations and waits for them for at most [`RING_DROP_DRAIN`]; buffers whose completion
//! it does not see (the ring failed, the kernel did not answer) are leaked rather than freed under
//! the kernel.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::constants::{RING_DROP_DRAIN, RING_SQPOLL_IDLE_MS, SLOT_INDEX_BITS};
use super::{EventFd, SlotId};

/// What an operation in the ring is, in the low byte of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    /// A read of an eventfd.
    Wake = 4,
    /// A wait for a descriptor to become readable.
    Poll = 5,
    Cancel = 6,
}

impl Op {
    fn from_byte(byte: u8) -> Option<Op> {
        Some(match byte {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Wake,
            5 => Op::Poll,
            6 => Op::Cancel,
            _ => return None,
        })
    }
}

/// User data of an operation on `slot`: generation, slot index and operation, so that a
/// completion can never be attributed to a later value in the same slot.
fn user_data(op: Op, slot: SlotId) -> u64 {
    (u64::from(slot.generation()) << (8 + SLOT_INDEX_BITS))
        | ((slot.index() as u64) << 8)
        | op as u64
}

fn split_user_data(data: u64) -> (Option<Op>, Option<SlotId>) {
    let index = ((data >> 8) & ((1 << SLOT_INDEX_BITS) - 1)) as usize;
    let generation = (data >> (8 + SLOT_INDEX_BITS)) as u32;
    (
        Op::from_byte(data as u8),
        SlotId::from_parts(index, generation),
    )
}

/// A finished operation, with the buffer it held.
#[derive(Debug)]
pub enum Event {
    /// An accept on the listener of `slot` finished: a new connection, or the errno it failed
    /// with (positive). Pass it to the slot's [`super::Acceptor`].
    Accept {
        slot: SlotId,
        result: Result<TcpStream, i32>,
    },
    /// A receive finished: `result` is the number of bytes written after the `start` it was
    /// posted with (0 at the end of the stream), or a negative errno.
    Recv {
        slot: SlotId,
        result: i32,
        buf: Vec<u8>,
    },
    /// A send finished: `result` is the number of bytes sent from the `start` it was posted with,
    /// or a negative errno.
    Send {
        slot: SlotId,
        result: i32,
        buf: Vec<u8>,
    },
    /// An eventfd read finished: the eventfd was signalled (or the read failed or was cancelled).
    Wake { slot: SlotId },
    /// A readiness poll finished.
    Poll { slot: SlotId },
}

/// How a ring is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingMode {
    /// A plain ring.
    Plain,
    /// A kernel thread polls the submission queue (a kernel thread per ring).
    SqPoll,
    /// Only the creating thread submits, and the kernel runs completion work only when that
    /// thread waits (single issuer, deferred task work): no interruptions between waits.
    SingleIssuer,
}

/// Buffers the ring holds for the operations in flight on one slot index, with the generation of
/// the slot each operation names.
#[derive(Default)]
struct Lent {
    recv: Option<(u32, Vec<u8>)>,
    send: Option<(u32, Vec<u8>)>,
    /// A read of an eventfd into `word` is in flight.
    wake: Option<u32>,
    /// Where eventfd reads of this slot index go: allocated once, written only by the kernel.
    word: Option<Box<[u8; 8]>>,
}

impl Lent {
    /// Where the buffer of a receive or a send is held.
    fn buffer(&mut self, op: Op) -> &mut Option<(u32, Vec<u8>)> {
        if op == Op::Recv {
            &mut self.recv
        } else {
            &mut self.send
        }
    }

    /// Forgets the record of `op`, whose entry the kernel never saw (dropping its buffer).
    fn release(&mut self, op: Op) {
        match op {
            Op::Recv => self.recv = None,
            Op::Send => self.send = None,
            _ => self.wake = None,
        }
    }
}

/// An io_uring for one event loop thread.
pub struct Ring {
    ring: IoUring,
    /// By slot index.
    lent: Vec<Lent>,
    /// Operations in flight that hold a buffer in `lent`.
    lent_ops: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("lent_ops", &self.lent_ops)
            .finish_non_exhaustive()
    }
}

/// The length of a buffer as io_uring takes it.
fn len_u32(len: usize) -> u32 {
    len.min(u32::MAX as usize) as u32
}

impl Ring {
    /// A ring of `entries` submission entries, set up as `mode` asks where the kernel can, and as
    /// a plain ring otherwise. A [`RingMode::SingleIssuer`] ring must be created on the thread
    /// that uses it.
    pub fn new(entries: u32, mode: RingMode) -> io::Result<Ring> {
        let mut builder = IoUring::builder();
        match mode {
            RingMode::Plain => {}
            RingMode::SqPoll => {
                builder.setup_sqpoll(RING_SQPOLL_IDLE_MS);
            }
            RingMode::SingleIssuer => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
        }
        let ring = builder.build(entries).or_else(|_| IoUring::new(entries))?;
        Ok(Ring {
            ring,
            lent: Vec::new(),
            lent_ops: 0,
        })
    }

    /// Pushes one entry, submitting once first if the submission queue is full.
    ///
    /// # Safety
    ///
    /// Every buffer the entry names must stay valid, unmoved, and neither read nor written by
    /// Rust code until the entry's completion has been reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: the caller guarantees that the entry's buffers outlive its completion.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("the submission queue stays full"))
    }

    fn lent_at(&mut self, slot: SlotId) -> &mut Lent {
        let index = slot.index();
        if self.lent.len() <= index {
            self.lent.resize_with(index + 1, Lent::default);
        }
        &mut self.lent[index]
    }

    /// Receives from `fd` into `buf[start..]` (the vector's length bounds what a receive may
    /// fill; an empty range receives nothing and reads as the end of the stream). The buffer
    /// comes back in the [`Event::Recv`] of `slot`.
    pub fn recv(
        &mut self,
        fd: &impl AsFd,
        buf: Vec<u8>,
        start: usize,
        slot: SlotId,
    ) -> io::Result<()> {
        self.transfer(Op::Recv, fd.as_fd().as_raw_fd(), buf, start, slot)
    }

    /// Sends `buf[start..]` on `fd` (without SIGPIPE). The buffer comes back in the
    /// [`Event::Send`] of `slot`.
    pub fn send(
        &mut self,
        fd: &impl AsFd,
        buf: Vec<u8>,
        start: usize,
        slot: SlotId,
    ) -> io::Result<()> {
        self.transfer(Op::Send, fd.as_fd().as_raw_fd(), buf, start, slot)
    }

    /// A receive into, or a send from, `buf[start..]`.
    fn transfer(
        &mut self,
        op: Op,
        fd: RawFd,
        mut buf: Vec<u8>,
        start: usize,
        slot: SlotId,
    ) -> io::Result<()> {
        let Some(range) = buf.get_mut(start..) else {
            return Err(io::Error::other("a transfer past the end of its buffer"));
        };
        let (ptr, len) = (range.as_mut_ptr(), len_u32(range.len()));
        let entry = if op == Op::Recv {
            opcode::Recv::new(types::Fd(fd), ptr, len).build()
        } else {
            opcode::Send::new(types::Fd(fd), ptr.cast_const(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        };
        let held = self.lent_at(slot).buffer(op);
        if held.is_some() {
            return Err(io::Error::other(format!(
                "a {op:?} is already in flight on this slot"
            )));
        }
        // Moving the vector into `lent` leaves its heap buffer, which the entry names, in place.
        *held = Some((slot.generation(), buf));
        // SAFETY: the receive writes (the send reads) `buf[start..]`, the heap buffer of a vector
        // that the ring now holds in `lent` and gives up only when it reaps this operation's
        // completion (or leaks, if it never sees it); nothing touches or moves it meanwhile.
        unsafe { self.push_lending(&entry.user_data(user_data(op, slot)), op, slot) }
    }

    /// Reads `eventfd`, so that a signal of it completes with an [`Event::Wake`] of `slot`.
    pub fn read_eventfd(&mut self, eventfd: &EventFd, slot: SlotId) -> io::Result<()> {
        let lent = self.lent_at(slot);
        if lent.wake.is_some() {
            return Err(io::Error::other(
                "an eventfd read is already in flight on this slot",
            ));
        }
        let word = lent.word.get_or_insert_with(|| Box::new([0; 8]));
        let entry = opcode::Read::new(types::Fd(eventfd.raw()), word.as_mut_ptr(), 8)
            .build()
            .user_data(user_data(Op::Wake, slot));
        lent.wake = Some(slot.generation());
        // SAFETY: the read writes the 8 bytes of this slot index's boxed word, which the ring
        // holds as long as it lives (leaking it if a read may still be in flight when it is
        // dropped) and never reads; no second read into it is posted while this one is in flight.
        unsafe { self.push_lending(&entry, Op::Wake, slot) }
    }

    /// Pushes the entry of an operation `op` on `slot` whose memory is already recorded in
    /// `lent`, and counts it; if the push fails, the kernel never saw the entry and the record
    /// is dropped.
    ///
    /// # Safety
    ///
    /// As for [`Ring::push`]: the memory the entry names must be what `lent` holds for it.
    unsafe fn push_lending(
        &mut self,
        entry: &squeue::Entry,
        op: Op,
        slot: SlotId,
    ) -> io::Result<()> {
        self.lent_ops += 1;
        // SAFETY: the caller guarantees that the entry names only memory held in `lent`.
        let pushed = unsafe { self.push(entry) };
        if pushed.is_err() {
            self.lent[slot.index()].release(op);
            self.lent_ops -= 1;
        }
        pushed
    }

    /// Waits for `fd` to become readable; completes with an [`Event::Poll`] of `slot`.
    pub fn poll_readable(&mut self, fd: RawFd, slot: SlotId) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(user_data(Op::Poll, slot));
        // SAFETY: a poll names no buffer.
        unsafe { self.push(&entry) }
    }

    /// Accepts a connection on `listener` (close-on-exec); completes with an [`Event::Accept`]
    /// of `slot`.
    pub(super) fn accept(&mut self, listener: &TcpListener, slot: SlotId) -> io::Result<()> {
        let entry = opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(user_data(Op::Accept, slot));
        // SAFETY: the accept names no buffer (null address and length pointers).
        unsafe { self.push(&entry) }
    }

    /// Asks the kernel to cancel the operation `op` on `slot`, if it is still in flight; the
    /// operation then completes (with ECANCELED, or with its result if it was already done).
    pub fn cancel(&mut self, op: Op, slot: SlotId) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data(op, slot))
            .build()
            .user_data(user_data(Op::Cancel, slot));
        // SAFETY: a cancel names no buffer, only the user data of the operation to cancel.
        unsafe { self.push(&entry) }
    }

    /// Submits what is queued and, unless `timeout` is zero, waits up to `timeout` for a
    /// completion. ETIME (the timeout), EINTR (a signal), EBUSY (completions must be reaped
    /// first) and EAGAIN (the kernel is short of resources for now) end the wait without error.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let result = if timeout.is_zero() {
            self.ring.submit()
        } else {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
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

    /// Appends an [`Event`] for every completion waiting in the ring to `out`, handing back the
    /// buffers of finished operations. Completions of cancels are consumed silently.
    pub fn reap(&mut self, out: &mut Vec<Event>) {
        for cqe in self.ring.completion() {
            let result = cqe.result();
            let (Some(op), Some(slot)) = split_user_data(cqe.user_data()) else {
                continue;
            };
            let lent = self.lent.get_mut(slot.index());
            let event = match op {
                Op::Accept if result >= 0 => {
                    // SAFETY: a successful accept returns a new descriptor that nothing else
                    // owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(result) };
                    Event::Accept {
                        slot,
                        result: Ok(TcpStream::from(fd)),
                    }
                }
                Op::Accept => Event::Accept {
                    slot,
                    result: Err(-result),
                },
                Op::Recv | Op::Send => {
                    // At most one of each is in flight per slot index: this is its buffer.
                    let Some((_, buf)) = lent.and_then(|l| l.buffer(op).take()) else {
                        continue;
                    };
                    self.lent_ops -= 1;
                    if op == Op::Recv {
                        Event::Recv { slot, result, buf }
                    } else {
                        Event::Send { slot, result, buf }
                    }
                }
                Op::Wake => {
                    if lent.and_then(|l| l.wake.take()).is_none() {
                        continue;
                    }
                    self.lent_ops -= 1;
                    Event::Wake { slot }
                }
                Op::Poll => Event::Poll { slot },
                Op::Cancel => continue,
            };
            out.push(event);
        }
    }

    /// The user data of every operation that holds a buffer.
    fn lending_ops(&self) -> Vec<u64> {
        let mut ops = Vec::with_capacity(self.lent_ops);
        for (index, lent) in self.lent.iter().enumerate() {
            let held = [
                (Op::Recv, lent.recv.as_ref().map(|(g, _)| *g)),
                (Op::Send, lent.send.as_ref().map(|(g, _)| *g)),
                (Op::Wake, lent.wake),
            ];
            for (op, generation) in held {
                if let Some(slot) = generation.and_then(|g| SlotId::from_parts(index, g)) {
                    ops.push(user_data(op, slot));
                }
            }
        }
        ops
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.lent_ops == 0 {
            return;
        }
        // Cancel what holds a buffer and reap it, so that the buffers can be freed.
        for target in self.lending_ops() {
            let entry = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(Op::Cancel, SlotId::fixed(0)));
            // SAFETY: a cancel names no buffer.
            if unsafe { self.push(&entry) }.is_err() {
                break;
            }
        }
        let deadline = Instant::now() + RING_DROP_DRAIN;
        let mut events = Vec::new();
        while self.lent_ops > 0 {
            let now = Instant::now();
            if now >= deadline || self.submit_and_wait(deadline - now).is_err() {
                break;
            }
            self.reap(&mut events);
            events.clear();
        }
        if self.lent_ops > 0 {
            // The kernel may still write these buffers: never free them.
            std::mem::forget(std::mem::take(&mut self.lent));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::sys::constants::SLOTS_MAX;

    #[test]
    fn user_data_round_trips() {
        for (op, index, generation) in [
            (Op::Recv, 0, 1),
            (Op::Send, SLOTS_MAX - 1, u32::MAX),
            (Op::Accept, 3, 0),
            (Op::Wake, 0, 0),
            (Op::Poll, 1, 2),
            (Op::Cancel, 7, 9),
        ] {
            let slot = SlotId::from_parts(index, generation).unwrap();
            assert_eq!(split_user_data(user_data(op, slot)), (Some(op), Some(slot)));
        }
        assert_eq!(split_user_data(0xff).0, None);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn next_event(ring: &mut Ring) -> Event {
        let mut events = Vec::new();
        for _ in 0..100 {
            ring.submit_and_wait(Duration::from_millis(100)).unwrap();
            ring.reap(&mut events);
            if let Some(event) = events.pop() {
                return event;
            }
        }
        panic!("no completion");
    }

    #[test]
    fn buffers_come_back_with_their_completions() {
        let mut ring = Ring::new(8, RingMode::Plain).unwrap();
        let (mut client, server) = pair();
        let slot = SlotId::from_parts(5, 7).unwrap();
        let mut buf = vec![0u8; 8];
        buf[..2].copy_from_slice(b"ab");
        ring.recv(&server, buf, 2, slot).unwrap();
        let err = ring.recv(&server, vec![0; 4], 0, slot).unwrap_err();
        assert!(err.to_string().contains("already in flight"), "{err}");
        client.write_all(b"cd").unwrap();
        match next_event(&mut ring) {
            Event::Recv {
                slot: s,
                result,
                buf,
            } => {
                assert_eq!((s, result), (slot, 2));
                assert_eq!(&buf[..4], b"abcd");
            }
            other => panic!("{other:?}"),
        }
        ring.send(&server, b"xyz".to_vec(), 1, slot).unwrap();
        match next_event(&mut ring) {
            Event::Send {
                slot: s,
                result,
                buf,
            } => {
                assert_eq!((s, result, &buf[..]), (slot, 2, &b"xyz"[..]));
            }
            other => panic!("{other:?}"),
        }
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"yz");
    }

    #[test]
    fn a_cancelled_receive_gives_its_buffer_back() {
        let mut ring = Ring::new(8, RingMode::Plain).unwrap();
        let (_client, server) = pair();
        let slot = SlotId::fixed(1);
        ring.recv(&server, vec![0; 16], 0, slot).unwrap();
        ring.cancel(Op::Recv, slot).unwrap();
        match next_event(&mut ring) {
            Event::Recv { result, buf, .. } => {
                assert_eq!((result, buf.len()), (-libc::ECANCELED, 16));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ring.lent_ops, 0);
        // A receive in flight at drop is cancelled and reaped before its buffer is freed.
        ring.recv(&server, vec![0; 16], 0, slot).unwrap();
        drop(ring);
    }

    #[test]
    fn a_signal_completes_the_eventfd_read() {
        let mut ring = Ring::new(8, RingMode::SingleIssuer).unwrap();
        let eventfd = EventFd::new().unwrap();
        let slot = SlotId::fixed(0);
        ring.read_eventfd(&eventfd, slot).unwrap();
        assert!(ring.read_eventfd(&eventfd, slot).is_err());
        eventfd.signal();
        assert!(matches!(next_event(&mut ring), Event::Wake { slot: s } if s == slot));
        ring.read_eventfd(&eventfd, slot).unwrap();
    }
}
