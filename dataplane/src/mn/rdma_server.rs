//! The MN side of the rdma fabric: [`RdmaServer`] registers the whole pool as one memory region
//! with remote read, write and atomic access, and listens on a small TCP port where each KN queue
//! pair exchanges QP information (LID, GID, QP number, PSN) after showing the cluster token
//! (`fabric/rdma/exchange.rs`); the MN answers with its own QP's information and the
//! region's address, key and length, creates one RC queue pair for that KN queue pair, and keeps
//! it until the TCP connection closes. The MN's CPU does nothing else on the verb path: the NIC
//! executes the verbs and enforces the region's bounds.
//!
//! Invariants: a refused or failed exchange costs only its own connection; at most
//! `connections_max` MN-side queue pairs exist at once; the queue pairs are destroyed before the
//! registration, and the registration before the region it names (field order of the server
//! state). Without an RDMA device, [`RdmaServer::start`] returns an error.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::completion::ExtendedCompletionQueue;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::queue_pair::ExtendedQueuePair;

use crate::fabric::rdma::device::{Endpoint, fresh_psn};
use crate::fabric::rdma::exchange::{
    Welcome, get_hello, hello_bytes_max, put_refusal, put_welcome, read_exchange, write_exchange,
};
use crate::fabric::rdma::{RDMA_EXCHANGE_TIMEOUT, RDMA_EXCHANGE_VERSION, RdmaError};
use crate::fabric::tcp::frame::{TOKEN_BYTES_MAX, constant_time_eq};

/// The pool an [`RdmaServer`] serves: memory a NIC may touch, shared with the KN side (whose
/// queue pairs register their buffer arenas the same way).
pub use crate::fabric::rdma::RdmaRegion;

/// KN queue pairs an MN serves at once by default.
pub const RDMA_CONNECTIONS_DEFAULT: usize = 64;
/// How often the MN's exchange thread looks for new and closed connections.
pub const RDMA_SERVER_TICK: Duration = Duration::from_millis(10);

/// Configuration of an [`RdmaServer`].
#[derive(Clone)]
pub struct RdmaServerConfig {
    /// Where the QP exchange listens.
    pub bind: SocketAddr,
    /// The cluster token a KN must show.
    pub token: Vec<u8>,
    /// The device (the first one if `None`).
    pub device: Option<String>,
    /// The GID index (a RoCE v2 one if `None`).
    pub gid_index: Option<u8>,
    /// KN queue pairs served at once.
    pub connections_max: usize,
}

impl fmt::Debug for RdmaServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaServerConfig")
            .field("bind", &self.bind)
            .field("device", &self.device)
            .field("gid_index", &self.gid_index)
            .field("connections_max", &self.connections_max)
            .finish_non_exhaustive()
    }
}

impl RdmaServerConfig {
    /// The defaults, listening on `bind` and requiring `token`.
    pub fn new(bind: SocketAddr, token: impl Into<Vec<u8>>) -> RdmaServerConfig {
        RdmaServerConfig {
            bind,
            token: token.into(),
            device: None,
            gid_index: None,
            connections_max: RDMA_CONNECTIONS_DEFAULT,
        }
    }

    /// Uses the device named `device`.
    #[must_use]
    pub fn with_device(mut self, device: &str) -> RdmaServerConfig {
        self.device = Some(device.to_owned());
        self
    }
}

/// The MN's RDMA side: the registered pool and the QP-exchange thread.
pub struct RdmaServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for RdmaServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A KN queue pair's MN-side queue pair, kept while its exchange connection is open.
struct Peer {
    stream: TcpStream,
    _qp: ExtendedQueuePair,
    _cq: Arc<ExtendedCompletionQueue>,
}

struct ServerState {
    // Field order matters: the MN-side queue pairs are destroyed first, then the registration,
    // then the region it names.
    peers: Vec<Peer>,
    mr: Arc<MemoryRegion>,
    region: RdmaRegion,
    endpoint: Endpoint,
    token: Vec<u8>,
    connections_max: usize,
}

impl RdmaServer {
    /// Registers `region` on the device and starts serving QP exchanges.
    pub fn start(region: RdmaRegion, config: RdmaServerConfig) -> Result<RdmaServer, RdmaError> {
        if config.token.is_empty() || config.token.len() > TOKEN_BYTES_MAX {
            return Err(RdmaError::Config(format!(
                "the cluster token must be 1 to {TOKEN_BYTES_MAX} bytes"
            )));
        }
        let endpoint = Endpoint::open(config.device.as_deref(), config.gid_index)?;
        let mr = region.register(
            &endpoint.pd,
            AccessFlags::LocalWrite
                | AccessFlags::RemoteWrite
                | AccessFlags::RemoteRead
                | AccessFlags::RemoteAtomic,
        )?;
        let listener = TcpListener::bind(config.bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = ServerState {
            peers: Vec::new(),
            mr,
            region,
            endpoint,
            token: config.token,
            connections_max: config.connections_max.max(1),
        };
        let stop_in_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("dinomo-mn-rdma".into())
            .spawn(move || state.serve(&listener, &stop_in_thread))?;
        Ok(RdmaServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the QP exchange listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and destroys every MN-side queue pair.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RdmaServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl ServerState {
    fn serve(&mut self, listener: &TcpListener, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, _)) => {
                    // A failed exchange costs only that connection.
                    let _ = self.exchange(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(RDMA_SERVER_TICK);
                }
                Err(_) => std::thread::sleep(RDMA_SERVER_TICK),
            }
            self.reap_closed();
        }
    }

    fn exchange(&mut self, mut stream: TcpStream) -> Result<(), RdmaError> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(RDMA_EXCHANGE_TIMEOUT))?;
        stream.set_write_timeout(Some(RDMA_EXCHANGE_TIMEOUT))?;
        let body = read_exchange(&mut stream, hello_bytes_max())?;
        let refuse = |stream: &mut TcpStream, why: &str| {
            let _ = write_exchange(stream, &put_refusal(why));
            Err(RdmaError::Exchange(why.to_owned()))
        };
        let Some((version, token, remote)) = get_hello(&body) else {
            return refuse(&mut stream, "bad hello");
        };
        if version != RDMA_EXCHANGE_VERSION {
            return refuse(&mut stream, "unsupported exchange version");
        }
        if !constant_time_eq(token, &self.token) {
            return refuse(&mut stream, "wrong cluster token");
        }
        if self.peers.len() >= self.connections_max {
            return refuse(&mut stream, "too many connections");
        }
        let (mut qp, cq) = match self.endpoint.queue_pair() {
            Ok(pair) => pair,
            Err(e) => return refuse(&mut stream, &e.to_string()),
        };
        let psn = fresh_psn();
        if let Err(e) = self.endpoint.connect(&mut qp, psn, &remote) {
            return refuse(&mut stream, &e.to_string());
        }
        let welcome = Welcome {
            info: self.endpoint.info(&qp, psn),
            addr: self.region.addr(),
            rkey: self.mr.rkey(),
            len: self.region.len(),
        };
        write_exchange(&mut stream, &put_welcome(&welcome))?;
        stream.set_nonblocking(true)?;
        self.peers.push(Peer {
            stream,
            _qp: qp,
            _cq: cq,
        });
        Ok(())
    }

    /// Destroys the queue pairs of KNs whose exchange connection has closed.
    fn reap_closed(&mut self) {
        self.peers.retain(|peer| {
            let mut byte = [0u8; 1];
            match peer.stream.peek(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::Fabric;
    use crate::fabric::VerbError;
    use crate::fabric::rdma::{RdmaFabric, RdmaOptions, first_device};

    #[test]
    fn no_device_is_an_error_not_a_panic() {
        if first_device().is_ok() {
            return;
        }
        let region = RdmaRegion::anonymous(1 << 16).unwrap();
        let server = RdmaServer::start(
            region,
            RdmaServerConfig::new("127.0.0.1:0".parse().unwrap(), b"t".to_vec()),
        );
        assert!(matches!(server, Err(RdmaError::NoDevice(_))), "{server:?}");
        let fabric = RdmaFabric::new(
            "127.0.0.1:1".parse().unwrap(),
            b"t".to_vec(),
            RdmaOptions::default(),
        );
        assert!(matches!(fabric.connect(), Err(VerbError::Refused(_))));
    }
}
