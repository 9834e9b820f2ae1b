//! [`EventFd`]: how other threads wake an event loop that sleeps in its io_uring.
//!
//! The loop keeps one read of the eventfd in its ring ([`super::Ring::read_eventfd`]); a signal
//! completes that read, which ends the loop's wait, and the loop posts a new read. The counter's
//! value means nothing: a signal only says "look at your inbox".

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd: other threads signal it, an event loop keeps a read on it in its io_uring so
/// that a signal wakes the loop from its wait.
#[derive(Debug)]
pub struct EventFd(File);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd(File::from(owned)))
    }

    /// Wakes the loop.
    pub fn signal(&self) {
        // Adding 1 to the counter cannot block until it nears u64::MAX, which the loop's reads
        // (each resets it) keep far away; a failure only delays the loop to its next tick.
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
