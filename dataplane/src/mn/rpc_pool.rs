//! The memory node's RPC thread pool: a small, bounded set of MN threads that answer two-sided
//! requests (hand out log blocks, merge a log, install an indirect cell) off the worker cores.
//!
//! Every fabric backend hands an RPC to an [`RpcPool`] instead of running it where it arrived, so
//! that a slow request (a merge of a whole log chain) never blocks the KN worker that posted it,
//! nor the tcp server's network loop. The reply comes back through a callback that the poster
//! supplies ([`RpcReply`]): the local fabric pushes it into the queue pair's completion inbox, the
//! tcp server into its loop's reply channel. The pool is part of the memory node's serving side
//! even where it runs in a KN's process: the local fabric's in-process memory node, and the rdma
//! fabric's local RPC threads.
//!
//! Invariants: the job queue holds at most the capacity given at start (a full queue refuses the
//! request, it never blocks the poster); every accepted job gets exactly one call of its reply
//! callback, with the service's answer, a [`VerbError::TooLarge`] if the answer exceeds
//! [`RPC_BYTES_MAX`], or a [`VerbError::Refused`] if the service panicked (the thread survives).
//! Dropping the pool lets queued jobs finish, then joins its threads.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::fabric::{PeerId, QP_IN_FLIGHT_MAX, RPC_BYTES_MAX, RpcHandler, VerbError};

/// RPC threads a pool starts unless told otherwise: the MN of this project has few cores, and the
/// original design serves every RPC on one manager thread, which serializes merges.
pub const RPC_THREADS_DEFAULT: usize = 2;
/// RPC threads a pool may start at most.
pub const RPC_THREADS_MAX: usize = 16;
/// Requests waiting for an RPC thread at most, unless told otherwise.
pub const RPC_QUEUE_DEFAULT: usize = 256;

const _: () = assert!(RPC_THREADS_DEFAULT >= 1 && RPC_THREADS_DEFAULT <= RPC_THREADS_MAX);
const _: () = assert!(RPC_QUEUE_DEFAULT >= QP_IN_FLIGHT_MAX);

/// What answers RPCs on the MN side: an [`RpcHandler`] (wrapped in [`HandlerService`]), or
/// something that forwards the request to the MN process and can fail on the way (the tcp
/// forwarder of the local-verbs + tcp-RPC combination).
pub trait RpcService: Send + Sync + 'static {
    /// Answers one request of connection `peer`, or says why it could not be delivered.
    fn call(&self, peer: PeerId, request: &[u8]) -> Result<Vec<u8>, VerbError>;
    /// Connection `peer` is gone.
    fn disconnected(&self, _peer: PeerId) {}
    /// See [`RpcHandler::fence_generation`].
    fn fence_generation(&self) -> u64 {
        0
    }
    /// See [`RpcHandler::is_fenced`].
    fn is_fenced(&self, _peer: PeerId) -> bool {
        false
    }
}

/// An [`RpcHandler`] as an [`RpcService`] that never fails to deliver.
pub struct HandlerService(pub Arc<dyn RpcHandler>);

impl RpcService for HandlerService {
    fn call(&self, peer: PeerId, request: &[u8]) -> Result<Vec<u8>, VerbError> {
        Ok(self.0.handle(peer, request))
    }
    fn disconnected(&self, peer: PeerId) {
        self.0.disconnected(peer);
    }
    fn fence_generation(&self) -> u64 {
        self.0.fence_generation()
    }
    fn is_fenced(&self, peer: PeerId) -> bool {
        self.0.is_fenced(peer)
    }
}

impl fmt::Debug for HandlerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerService")
    }
}

/// Where an RPC's outcome goes; called exactly once, on an RPC thread.
pub type RpcReply = Box<dyn FnOnce(Result<Vec<u8>, VerbError>) + Send>;

struct Job {
    peer: PeerId,
    request: Vec<u8>,
    reply: RpcReply,
}

/// A bounded pool of MN RPC threads serving one [`RpcService`].
pub struct RpcPool {
    service: Arc<dyn RpcService>,
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl RpcPool {
    /// Starts `threads` RPC threads (clamped to `1..=RPC_THREADS_MAX`) with a job queue of
    /// `queue` requests (at least one).
    pub fn start(
        service: Arc<dyn RpcService>,
        threads: usize,
        queue: usize,
    ) -> std::io::Result<RpcPool> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let mut pool = RpcPool {
            service: Arc::clone(&service),
            jobs: Some(tx),
            threads: Vec::new(),
        };
        for i in 0..threads.clamp(1, RPC_THREADS_MAX) {
            let rx = rx.clone();
            let service = Arc::clone(&service);
            let handle = std::thread::Builder::new()
                .name(format!("dinomo-mn-rpc-{i}"))
                .spawn(move || serve(&*service, &rx))?;
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Queues one request; `reply` is called with its outcome on an RPC thread. A full queue
    /// refuses the request at once (and drops `reply` uncalled).
    pub fn try_submit(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        reply: RpcReply,
    ) -> Result<(), VerbError> {
        if request.len() as u64 > RPC_BYTES_MAX {
            return Err(VerbError::TooLarge(request.len() as u64));
        }
        let Some(jobs) = &self.jobs else {
            return Err(VerbError::Refused("the RPC pool is stopped".into()));
        };
        match jobs.try_send(Job {
            peer,
            request,
            reply,
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(VerbError::Refused(
                "the memory node's RPC queue is full".into(),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(VerbError::Refused("the RPC pool is stopped".into()))
            }
        }
    }

    /// Tells the service that connection `peer` is gone (on the caller's thread: it is a
    /// bookkeeping call, never a merge).
    pub fn disconnected(&self, peer: PeerId) {
        self.service.disconnected(peer);
    }

    /// The service this pool serves.
    pub fn service(&self) -> &Arc<dyn RpcService> {
        &self.service
    }

    /// Number of RPC threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl fmt::Debug for RpcPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcPool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Drop for RpcPool {
    fn drop(&mut self) {
        // Closing the queue makes each thread finish the queued jobs and return.
        self.jobs = None;
        for handle in self.threads.drain(..) {
            // A thread only ends by returning (service panics are caught), so a join error
            // cannot carry anything worth re-raising.
            let _ = handle.join();
        }
    }
}

fn serve(service: &dyn RpcService, jobs: &Receiver<Job>) {
    while let Ok(Job {
        peer,
        request,
        reply,
    }) = jobs.recv()
    {
        // A handler that panics on a malformed request is a bug in the handler; the RPC thread
        // survives it and the poster gets an error completion instead of waiting forever.
        let outcome = match catch_unwind(AssertUnwindSafe(|| service.call(peer, &request))) {
            Ok(Ok(answer)) if answer.len() as u64 > RPC_BYTES_MAX => {
                Err(VerbError::TooLarge(answer.len() as u64))
            }
            Ok(outcome) => outcome,
            Err(_) => Err(VerbError::Refused("the RPC handler panicked".into())),
        };
        reply(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl RpcHandler for Echo {
        fn handle(&self, _peer: PeerId, request: &[u8]) -> Vec<u8> {
            if request == b"panic" {
                panic!("test handler asked to panic");
            }
            request.iter().rev().copied().collect()
        }
    }

    fn pool(queue: usize) -> RpcPool {
        RpcPool::start(Arc::new(HandlerService(Arc::new(Echo))), 1, queue).unwrap()
    }

    #[test]
    fn replies_and_survives_a_panicking_handler() {
        let pool = pool(4);
        let (tx, rx) = crossbeam_channel::bounded(4);
        for request in [&b"abc"[..], b"panic", b"xy"] {
            let tx = tx.clone();
            pool.try_submit(
                PeerId(1),
                request.to_vec(),
                Box::new(move |r| tx.send(r).unwrap()),
            )
            .unwrap();
        }
        assert_eq!(rx.recv().unwrap(), Ok(b"cba".to_vec()));
        assert!(matches!(rx.recv().unwrap(), Err(VerbError::Refused(_))));
        assert_eq!(rx.recv().unwrap(), Ok(b"yx".to_vec()));
    }

    #[test]
    fn refuses_oversized_requests() {
        let pool = pool(1);
        let big = vec![0u8; RPC_BYTES_MAX as usize + 1];
        assert_eq!(
            pool.try_submit(PeerId(1), big, Box::new(|_| {})),
            Err(VerbError::TooLarge(RPC_BYTES_MAX + 1))
        );
    }
}
