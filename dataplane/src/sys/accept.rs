//! [`Acceptor`]: accepting connections on a listener through a [`Ring`], with the one policy
//! every event loop follows when an accept fails.
//!
//! At most one accept is in flight per listener. When an accept fails because the process or the
//! system is out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), the next one waits
//! [`ACCEPT_BACKOFF`]: posted at once, it would fail at once and spin the loop, while the
//! connections wait in the listen backlog until descriptors are free again. Any other failure
//! (ECONNABORTED: a peer gave up before it was accepted; EPERM from a firewall rule; EINTR)
//! concerns one connection, so the next accept is posted at once. A cancelled accept (ECANCELED)
//! only happens when the loop is stopping, and the loop posts no other.
//!
//! The loop posts with [`Acceptor::arm`] whenever it may (it does nothing while an accept is in
//! flight or a back-off runs), hands every [`super::Event::Accept`] to [`Acceptor::complete`],
//! and wakes by [`Acceptor::retry_at`] at the latest when a back-off runs.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::constants::ACCEPT_BACKOFF;
use super::{Op, Ring, SlotId};

/// How long to wait before the next accept after one failed with `errno`.
pub fn backoff_after(errno: i32) -> Option<Duration> {
    match errno {
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Some(ACCEPT_BACKOFF),
        _ => None,
    }
}

/// The accepts of one listener, named by one slot in the ring.
#[derive(Debug)]
pub struct Acceptor {
    slot: SlotId,
    armed: bool,
    retry_at: Option<Instant>,
}

impl Acceptor {
    /// An acceptor whose accepts complete as [`super::Event::Accept`] of `slot`.
    pub fn new(slot: SlotId) -> Acceptor {
        Acceptor {
            slot,
            armed: false,
            retry_at: None,
        }
    }

    /// Whether an accept is in flight.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// When a running back-off ends (the loop should look again then).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Posts an accept on `listener`, unless one is in flight or a back-off has not ended.
    pub fn arm(&mut self, ring: &mut Ring, listener: &TcpListener) -> io::Result<()> {
        if self.armed {
            return Ok(());
        }
        // The clock is read only while a back-off runs, not on every call of a busy loop.
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
            self.retry_at = None;
        }
        ring.accept(listener, self.slot)?;
        self.armed = true;
        Ok(())
    }

    /// Takes the outcome of this acceptor's accept, completed at `now`: the new connection, or
    /// `None` after a failure, which decides when [`Acceptor::arm`] posts the next accept.
    pub fn complete(&mut self, result: Result<TcpStream, i32>, now: Instant) -> Option<TcpStream> {
        self.armed = false;
        match result {
            Ok(stream) => Some(stream),
            Err(errno) => {
                self.retry_at = backoff_after(errno).map(|wait| now + wait);
                None
            }
        }
    }

    /// Cancels the accept in flight, if there is one (when the loop stops).
    pub fn cancel(&self, ring: &mut Ring) -> io::Result<()> {
        if self.armed {
            ring.cancel(Op::Accept, self.slot)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Event, RingMode};

    #[test]
    fn only_exhaustion_backs_off() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(backoff_after(errno), Some(ACCEPT_BACKOFF));
        }
        for errno in [
            libc::ECONNABORTED,
            libc::EPERM,
            libc::EINTR,
            libc::ECANCELED,
        ] {
            assert_eq!(backoff_after(errno), None);
        }
    }

    #[test]
    fn a_backoff_holds_the_next_accept_back() {
        let mut ring = Ring::new(8, RingMode::Plain).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut acceptor = Acceptor::new(SlotId::fixed(2));
        // A back-off that ends in an hour: nothing is posted meanwhile.
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(acceptor.complete(Err(libc::EMFILE), later).is_none());
        assert_eq!(acceptor.retry_at(), Some(later + ACCEPT_BACKOFF));
        acceptor.arm(&mut ring, &listener).unwrap();
        assert!(!acceptor.is_armed());
        // Another failure ends the back-off: the next accept goes out at once, and completes.
        assert!(acceptor.complete(Err(libc::ECONNABORTED), later).is_none());
        assert_eq!(acceptor.retry_at(), None);
        acceptor.arm(&mut ring, &listener).unwrap();
        assert!(acceptor.is_armed());
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut events = Vec::new();
        for _ in 0..100 {
            ring.submit_and_wait(Duration::from_millis(100)).unwrap();
            ring.reap(&mut events);
            if !events.is_empty() {
                break;
            }
        }
        let Some(Event::Accept { slot, result }) = events.pop() else {
            panic!("no accept completed: {events:?}");
        };
        assert_eq!(slot, SlotId::fixed(2));
        assert!(acceptor.complete(result, Instant::now()).is_some());
        assert!(!acceptor.is_armed());
    }
}
