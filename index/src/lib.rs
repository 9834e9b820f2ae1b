//! The pool-resident hash index of dinomo and the merge of operation logs into it.
//!
//! The index maps every key to its newest log entry. It lives in the pool, is written only by the
//! memory node (merge threads, lock-free with compare-and-swap on 8-byte slots, log-free), and is
//! read by compute nodes remotely with one-sided reads through a resumable probe.
