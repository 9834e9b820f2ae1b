//! The `rdma` fabric (cargo feature `rdma`): real one-sided verbs over RoCE or InfiniBand with
//! `sideway`.
//!
//! The MN ([`RdmaServer`]) registers the whole pool as one memory region with remote read, write
//! and atomic access, and listens on a small TCP port where each KN queue pair exchanges QP
//! information (LID, GID, QP number, PSN) after showing the cluster token; the MN answers with
//! its own QP's information and the region's address, key and length, creates one RC queue pair
//! for that KN queue pair, and keeps it until the TCP connection closes. The MN's CPU does
//! nothing else on the verb path.
//!
//! A KN queue pair ([`RdmaQp`]) posts READ, WRITE, CAS and FAA with the `ibv_wr_*` API, one
//! doorbell per batch, every request signaled, and polls its completion queue in `poll`. Local
//! buffers come from a registered arena used as a ring: RC completions of one send queue arrive in
//! posting order, so buffers are freed in the order they were taken. Bounds, alignment and sizes
//! are checked before posting (a bad verb gets an error completion and is never posted, because
//! a remote access error would move the queue pair to its error state); the NIC enforces the
//! region's bounds again on the MN side. A WRITE with `persist` is followed by a READ of its last
//! bytes, and completes when that READ does: the read flushes the write to the MN's memory
//! controller, which makes it persistent where the MN's platform persists what reaches it (ADR
//! with DDIO off for the pool). RPCs go to an [`RpcService`] on local RPC threads, as in the
//! local fabric (for example the tcp forwarder to the MN process).
//!
//! Without an RDMA device, every constructor returns a clear error; nothing here panics on what
//! the device, the peer or the network does. This module compiles everywhere the feature is on,
//! and runs only where a device exists.

use std::collections::VecDeque;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid, GidType};
use sideway::ibverbs::completion::{ExtendedCompletionQueue, GenericCompletionQueue};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::{DeviceContext, Mtu};
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    ExtendedQueuePair, PostSendGuard as _, QueuePair as _, QueuePairAttribute, QueuePairState,
    SendOperationFlags, SetScatterGatherEntry as _, WorkRequestFlags,
};

use super::tcp::frame::{MAGIC, TOKEN_BYTES_MAX, constant_time_eq};
use super::{
    Completion, CompletionData, Fabric, PostError, QP_IN_FLIGHT_MAX, QpCounters, QueuePair,
    RPC_BYTES_MAX, RpcHandler, VERB_BYTES_MAX, Verb, VerbError, VerbKind, WrId, check_batch,
};
use crate::mn::rpc_pool::{
    HandlerService, RPC_QUEUE_DEFAULT, RPC_THREADS_DEFAULT, RpcPool, RpcService,
};
use crate::mn::verbs::{check_range, check_word};

/// The version of the QP-exchange protocol.
pub const RDMA_EXCHANGE_VERSION: u16 = 1;
/// The port of the device the queue pairs use.
pub const RDMA_PORT: u8 = 1;
/// KN queue pairs an MN serves at once by default.
pub const RDMA_CONNECTIONS_DEFAULT: usize = 64;
/// Bytes of a KN queue pair's registered buffer arena by default: room for two of the largest
/// verbs in flight, and many small ones.
pub const RDMA_ARENA_BYTES_DEFAULT: usize = 2 * VERB_BYTES_MAX as usize + (1 << 20);
/// Alignment of arena buffers (a cache line; atomics need 8).
pub const RDMA_ARENA_ALIGN: usize = 64;
/// Send-queue entries per KN queue pair: every request may carry a flushing READ behind it.
pub const RDMA_SEND_WR_MAX: usize = 2 * QP_IN_FLIGHT_MAX;
/// Outstanding READs and atomics per queue pair asked of the device (clamped to what it offers).
pub const RDMA_RD_ATOMIC_MAX: u8 = 16;
/// Time the QP exchange may take.
pub const RDMA_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Completions taken from the completion queue per poll at most.
pub const RDMA_POLL_BATCH_MAX: usize = 64;
/// How often the MN's exchange thread looks for new and closed connections.
pub const RDMA_SERVER_TICK: Duration = Duration::from_millis(10);
/// Longest message of a refused exchange.
const EXCHANGE_MESSAGE_BYTES_MAX: usize = 256;

const _: () = assert!(RDMA_ARENA_BYTES_DEFAULT >= VERB_BYTES_MAX as usize + RDMA_ARENA_ALIGN);
const _: () = assert!(RDMA_SEND_WR_MAX >= 2 * QP_IN_FLIGHT_MAX);
const _: () = assert!(RDMA_ARENA_ALIGN.is_power_of_two() && RDMA_ARENA_ALIGN >= 8);

/// Why an RDMA component could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    #[error("no RDMA device: {0}")]
    NoDevice(String),
    #[error("RDMA device error: {0}")]
    Device(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("QP exchange failed: {0}")]
    Exchange(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<RdmaError> for VerbError {
    fn from(e: RdmaError) -> VerbError {
        match e {
            RdmaError::Io(e) => VerbError::Disconnected(e.to_string()),
            other => VerbError::Refused(other.to_string()),
        }
    }
}

/// An error with its chain of sources, which is where sideway puts the OS error.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn device_error(what: &str, e: impl std::error::Error) -> RdmaError {
    RdmaError::Device(format!("{what}: {}", chain(&e)))
}

/// The name of the first RDMA device, or why there is none.
pub fn first_device() -> Result<String, RdmaError> {
    let list = DeviceList::new().map_err(|e| RdmaError::NoDevice(chain(&e)))?;
    list.iter()
        .next()
        .map(|d| d.name())
        .ok_or_else(|| RdmaError::NoDevice("the device list is empty".into()))
}

/// Opens the device named `name` (or the first one).
fn open_device(name: Option<&str>) -> Result<Arc<DeviceContext>, RdmaError> {
    let list = DeviceList::new().map_err(|e| RdmaError::NoDevice(chain(&e)))?;
    let device = list
        .iter()
        .find(|d| name.is_none_or(|n| d.name() == n))
        .ok_or_else(|| {
            RdmaError::NoDevice(match name {
                Some(n) => format!("no device named {n}"),
                None => "the device list is empty".into(),
            })
        })?;
    device.open().map_err(|e| device_error("open", e))
}

/// A mapped memory range that a NIC may read and write: the MN's pool, or a KN's buffer arena.
pub struct RdmaRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory with no thread affinity; this module reads and writes it
// only through raw copies of ranges that no work request in flight names.
unsafe impl Send for RdmaRegion {}
// SAFETY: as for Send; shared references hand out no Rust references into the memory.
unsafe impl Sync for RdmaRegion {}

impl fmt::Debug for RdmaRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaRegion")
            .field("len", &self.len)
            .finish()
    }
}

impl RdmaRegion {
    /// `len` bytes of zeroed anonymous memory.
    pub fn anonymous(len: u64) -> Result<RdmaRegion, RdmaError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| RdmaError::Config(format!("a region of {len} bytes")))?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
        // existing memory; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::from_mmap(ptr, len)
    }

    /// The pool file at `path`, mapped shared: the MN process's pool backend maps the same file,
    /// so both see the same bytes.
    pub fn map_file(path: &Path) -> Result<RdmaRegion, RdmaError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| {
                RdmaError::Config(format!("{} is empty or too large", path.display()))
            })?;
        // SAFETY: a shared mapping of an open file at an address of the kernel's choosing touches
        // no existing memory; the file may be closed after mapping; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        Self::from_mmap(ptr, len)
    }

    fn from_mmap(ptr: *mut libc::c_void, len: usize) -> Result<RdmaRegion, RdmaError> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error().into());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| RdmaError::Config("mmap returned a null mapping".into()))?;
        Ok(RdmaRegion { ptr, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the region has no bytes (never true for a constructed region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Registers the region with `pd`.
    fn register(
        &self,
        pd: &Arc<ProtectionDomain>,
        access: AccessFlags,
    ) -> Result<Arc<MemoryRegion>, RdmaError> {
        // SAFETY: the mapping is valid for `len` bytes and outlives the memory region: every
        // holder of the region's registration also holds (and drops later) the region.
        unsafe { pd.reg_mr(self.ptr.as_ptr() as usize, self.len, access) }
            .map_err(|e| device_error("register memory", e))
    }

    /// Copies `len` bytes at `offset` out of the region.
    fn copy_out(&self, offset: usize, len: usize) -> Vec<u8> {
        let len = len.min(self.len.saturating_sub(offset));
        let mut out = vec![0u8; len];
        // SAFETY: `offset + len` is within the mapping (clamped above); the caller names only
        // bytes that no work request in flight writes, and `out` is a fresh allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), len);
        }
        out
    }

    /// Copies `data` into the region at `offset`.
    fn copy_in(&self, offset: usize, data: &[u8]) {
        let len = data.len().min(self.len.saturating_sub(offset));
        // SAFETY: `offset + len` is within the mapping (clamped above); the caller names only
        // bytes that no work request in flight uses.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), len);
        }
    }
}

impl Drop for RdmaRegion {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those of a mapping this value owns; nothing uses it
        // after the drop (registrations are dropped before their region).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// What one side tells the other to connect two RC queue pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QpInfo {
    lid: u16,
    qpn: u32,
    psn: u32,
    gid: [u8; 16],
}

impl QpInfo {
    const BYTES: usize = 2 + 4 + 4 + 16;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lid.to_le_bytes());
        out.extend_from_slice(&self.qpn.to_le_bytes());
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.extend_from_slice(&self.gid);
    }

    fn get(b: &[u8]) -> Option<QpInfo> {
        if b.len() < Self::BYTES {
            return None;
        }
        Some(QpInfo {
            lid: u16::from_le_bytes(b[0..2].try_into().ok()?),
            qpn: u32::from_le_bytes(b[2..6].try_into().ok()?),
            psn: u32::from_le_bytes(b[6..10].try_into().ok()?) & 0xff_ffff,
            gid: b[10..26].try_into().ok()?,
        })
    }
}

/// The device resources one side of a connection uses.
struct Endpoint {
    context: Arc<DeviceContext>,
    pd: Arc<ProtectionDomain>,
    gid_index: u8,
    gid: Gid,
    lid: u16,
    mtu: Mtu,
    rd_atomic: u8,
}

impl Endpoint {
    fn open(device: Option<&str>, gid_index: Option<u8>) -> Result<Endpoint, RdmaError> {
        let context = open_device(device)?;
        let pd = context
            .alloc_pd()
            .map_err(|e| device_error("allocate a protection domain", e))?;
        let port = context
            .query_port(RDMA_PORT)
            .map_err(|e| device_error("query the port", e))?;
        let gid_index = match gid_index {
            Some(i) => i,
            None => {
                // Prefer a RoCE v2 GID that is not link-local, then any valid one.
                let table = context
                    .query_gid_table()
                    .map_err(|e| device_error("query the GID table", e))?;
                let pick = table
                    .iter()
                    .find(|g| g.gid_type() == GidType::RoceV2 && !g.gid().is_unicast_link_local())
                    .or_else(|| table.iter().find(|g| !g.gid().is_zero()));
                pick.map(|g| g.gid_index()).unwrap_or(0).min(255) as u8
            }
        };
        let gid = context
            .query_gid(RDMA_PORT, u32::from(gid_index))
            .map_err(|e| device_error("query the GID", e))?;
        let device_attr = context
            .query_device()
            .map_err(|e| device_error("query the device", e))?;
        let rd_atomic = device_attr
            .max_qp_rd_atom()
            .clamp(1, i32::from(RDMA_RD_ATOMIC_MAX)) as u8;
        Ok(Endpoint {
            context,
            pd,
            gid_index,
            gid,
            lid: port.lid(),
            mtu: port.active_mtu(),
            rd_atomic,
        })
    }

    /// A fresh RC queue pair in the INIT state with its own completion queue.
    fn queue_pair(&self) -> Result<(ExtendedQueuePair, Arc<ExtendedCompletionQueue>), RdmaError> {
        let mut cq_builder = self.context.create_cq_builder();
        cq_builder.setup_cqe(RDMA_SEND_WR_MAX as u32);
        let cq = cq_builder
            .build_ex()
            .map_err(|e| device_error("create a completion queue", e))?;
        let mut builder = self.pd.create_qp_builder();
        builder
            .setup_max_send_wr(RDMA_SEND_WR_MAX as u32)
            .setup_max_recv_wr(1)
            .setup_max_send_sge(1)
            .setup_max_recv_sge(1)
            .setup_max_inline_data(0)
            .setup_send_cq(GenericCompletionQueue::from(Arc::clone(&cq)))
            .setup_recv_cq(GenericCompletionQueue::from(Arc::clone(&cq)))
            .setup_send_ops_flags(
                SendOperationFlags::Read
                    | SendOperationFlags::Write
                    | SendOperationFlags::AtomicCompareAndSwap
                    | SendOperationFlags::AtomicFetchAndAdd,
            );
        let mut qp = builder
            .build_ex()
            .map_err(|e| device_error("create a queue pair", e))?;
        let mut attr = QueuePairAttribute::new();
        attr.setup_state(QueuePairState::Init)
            .setup_pkey_index(0)
            .setup_port(RDMA_PORT)
            .setup_access_flags(
                AccessFlags::LocalWrite
                    | AccessFlags::RemoteWrite
                    | AccessFlags::RemoteRead
                    | AccessFlags::RemoteAtomic,
            );
        qp.modify(&attr)
            .map_err(|e| device_error("move the queue pair to INIT", e))?;
        Ok((qp, cq))
    }

    fn info(&self, qp: &ExtendedQueuePair, psn: u32) -> QpInfo {
        QpInfo {
            lid: self.lid,
            qpn: qp.qp_number(),
            psn,
            gid: self.gid.raw,
        }
    }

    /// Moves `qp` to RTR and RTS, connected to `remote`.
    fn connect(
        &self,
        qp: &mut ExtendedQueuePair,
        local_psn: u32,
        remote: &QpInfo,
    ) -> Result<(), RdmaError> {
        let mut attr = QueuePairAttribute::new();
        attr.setup_state(QueuePairState::ReadyToReceive)
            .setup_path_mtu(self.mtu)
            .setup_dest_qp_num(remote.qpn)
            .setup_rq_psn(remote.psn)
            .setup_max_dest_read_atomic(self.rd_atomic)
            .setup_min_rnr_timer(12);
        let mut ah = AddressHandleAttribute::new();
        ah.setup_dest_lid(remote.lid)
            .setup_port(RDMA_PORT)
            .setup_service_level(0)
            .setup_grh_src_gid_index(self.gid_index)
            .setup_grh_dest_gid(&Gid { raw: remote.gid })
            .setup_grh_hop_limit(64);
        attr.setup_address_vector(&ah);
        qp.modify(&attr)
            .map_err(|e| device_error("move the queue pair to RTR", e))?;
        let mut attr = QueuePairAttribute::new();
        attr.setup_state(QueuePairState::ReadyToSend)
            .setup_sq_psn(local_psn)
            .setup_timeout(14)
            .setup_retry_cnt(7)
            .setup_rnr_retry(7)
            .setup_max_read_atomic(self.rd_atomic);
        qp.modify(&attr)
            .map_err(|e| device_error("move the queue pair to RTS", e))
    }
}

/// A starting packet sequence number that differs between queue pairs and runs.
fn fresh_psn() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(12)) & 0xff_ffff
}

// ---- The QP exchange over TCP (see FRAMES.md) ----

fn write_exchange(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame)
}

fn read_exchange(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, RdmaError> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(RdmaError::Exchange(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

fn hello_bytes_max() -> usize {
    4 + 2 + 2 + TOKEN_BYTES_MAX + QpInfo::BYTES
}

/// The KN's request: magic, version, token, its QP's information.
fn put_hello(token: &[u8], info: &QpInfo) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RDMA_EXCHANGE_VERSION.to_le_bytes());
    out.extend_from_slice(&(token.len() as u16).to_le_bytes());
    out.extend_from_slice(token);
    info.put(&mut out);
    out
}

fn get_hello(body: &[u8]) -> Option<(u16, &[u8], QpInfo)> {
    if body.get(..4)? != MAGIC {
        return None;
    }
    let version = u16::from_le_bytes(body.get(4..6)?.try_into().ok()?);
    let token_len = usize::from(u16::from_le_bytes(body.get(6..8)?.try_into().ok()?));
    let token = body.get(8..8 + token_len)?;
    let rest = body.get(8 + token_len..)?;
    if rest.len() != QpInfo::BYTES {
        return None;
    }
    Some((version, token, QpInfo::get(rest)?))
}

/// The MN's answer: status 0, its QP's information and the region; or a status and a reason.
struct Welcome {
    info: QpInfo,
    addr: u64,
    rkey: u32,
    len: u64,
}

fn put_welcome(w: &Welcome) -> Vec<u8> {
    let mut out = vec![0u8];
    w.info.put(&mut out);
    out.extend_from_slice(&w.addr.to_le_bytes());
    out.extend_from_slice(&w.rkey.to_le_bytes());
    out.extend_from_slice(&w.len.to_le_bytes());
    out
}

fn put_refusal(message: &str) -> Vec<u8> {
    let mut out = vec![1u8];
    let mut end = message.len().min(EXCHANGE_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&message.as_bytes()[..end]);
    out
}

fn get_welcome(body: &[u8]) -> Result<Welcome, RdmaError> {
    match body.split_first() {
        Some((0, rest)) if rest.len() == QpInfo::BYTES + 8 + 4 + 8 => {
            let info = QpInfo::get(rest).ok_or_else(|| RdmaError::Exchange("bad answer".into()))?;
            let r = &rest[QpInfo::BYTES..];
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            Ok(Welcome {
                info,
                addr: word(&r[0..8]),
                rkey: u32::from_le_bytes(r[8..12].try_into().unwrap_or([0; 4])),
                len: word(&r[12..20]),
            })
        }
        Some((_, rest)) => Err(RdmaError::Exchange(format!(
            "refused by the memory node: {}",
            String::from_utf8_lossy(rest)
        ))),
        None => Err(RdmaError::Exchange("an empty answer".into())),
    }
}

// ---- The MN side ----

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

// ---- The KN side ----

/// Options of an [`RdmaFabric`].
#[derive(Clone, Default)]
pub struct RdmaOptions {
    /// The device (the first one if `None`).
    pub device: Option<String>,
    /// The GID index (a RoCE v2 one if `None`).
    pub gid_index: Option<u8>,
    /// Registered buffer bytes per queue pair (`RDMA_ARENA_BYTES_DEFAULT` if zero).
    pub arena_bytes: usize,
    /// What answers RPCs; `None` refuses them.
    pub rpc: Option<Arc<dyn RpcService>>,
}

impl fmt::Debug for RdmaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaOptions")
            .field("device", &self.device)
            .field("gid_index", &self.gid_index)
            .field("arena_bytes", &self.arena_bytes)
            .field("rpc", &self.rpc.is_some())
            .finish()
    }
}

impl RdmaOptions {
    /// Uses the device named `device`.
    #[must_use]
    pub fn with_device(mut self, device: &str) -> RdmaOptions {
        self.device = Some(device.to_owned());
        self
    }
    /// Answers RPCs with `handler` on local RPC threads.
    #[must_use]
    pub fn with_rpc_handler(self, handler: Arc<dyn RpcHandler>) -> RdmaOptions {
        self.with_rpc_service(Arc::new(HandlerService(handler)))
    }
    /// Answers RPCs with `service` (for example the tcp forwarder to the MN process).
    #[must_use]
    pub fn with_rpc_service(mut self, service: Arc<dyn RpcService>) -> RdmaOptions {
        self.rpc = Some(service);
        self
    }
}

/// The `rdma` fabric as seen by a KN.
pub struct RdmaFabric {
    addr: SocketAddr,
    token: Vec<u8>,
    options: RdmaOptions,
    endpoint: OnceLock<Result<Arc<Endpoint>, String>>,
    pool: Arc<OnceLock<Result<RpcPool, String>>>,
}

impl fmt::Debug for RdmaFabric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaFabric")
            .field("addr", &self.addr)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RdmaFabric {
    /// A fabric whose queue pairs connect through the MN's QP exchange at `addr`.
    pub fn new(addr: SocketAddr, token: impl Into<Vec<u8>>, options: RdmaOptions) -> RdmaFabric {
        RdmaFabric {
            addr,
            token: token.into(),
            options,
            endpoint: OnceLock::new(),
            pool: Arc::new(OnceLock::new()),
        }
    }

    fn endpoint(&self) -> Result<Arc<Endpoint>, VerbError> {
        self.endpoint
            .get_or_init(|| {
                Endpoint::open(self.options.device.as_deref(), self.options.gid_index)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(VerbError::Refused)
    }

    /// A new queue pair of the concrete type.
    pub fn connect_rdma(&self) -> Result<RdmaQp, VerbError> {
        if self.token.len() > TOKEN_BYTES_MAX {
            return Err(VerbError::Refused("the cluster token is too long".into()));
        }
        let endpoint = self.endpoint()?;
        let arena_bytes = match self.options.arena_bytes {
            0 => RDMA_ARENA_BYTES_DEFAULT,
            n => n.max(VERB_BYTES_MAX as usize + RDMA_ARENA_ALIGN),
        };
        let arena = RdmaRegion::anonymous(arena_bytes as u64)?;
        let arena_mr = arena.register(&endpoint.pd, AccessFlags::LocalWrite)?;
        let (mut qp, cq) = endpoint.queue_pair()?;
        let psn = fresh_psn();
        let lost = |e: io::Error| VerbError::Disconnected(format!("{}: {e}", self.addr));
        let mut stream =
            TcpStream::connect_timeout(&self.addr, RDMA_EXCHANGE_TIMEOUT).map_err(lost)?;
        stream
            .set_read_timeout(Some(RDMA_EXCHANGE_TIMEOUT))
            .map_err(lost)?;
        write_exchange(
            &mut stream,
            &put_hello(&self.token, &endpoint.info(&qp, psn)),
        )
        .map_err(lost)?;
        let welcome = get_welcome(&read_exchange(
            &mut stream,
            64 + EXCHANGE_MESSAGE_BYTES_MAX,
        )?)?;
        endpoint.connect(&mut qp, psn, &welcome.info)?;
        let (rpc_tx, rpc_rx) = crossbeam_channel::bounded(QP_IN_FLIGHT_MAX);
        Ok(RdmaQp {
            qp,
            cq,
            arena_mr,
            arena: Arena::new(arena),
            _stream: stream,
            _endpoint: endpoint,
            remote_addr: welcome.addr,
            rkey: welcome.rkey,
            region_len: welcome.len,
            next_seq: 0,
            posted: VecDeque::with_capacity(RDMA_SEND_WR_MAX),
            user_in_flight: 0,
            ready: VecDeque::new(),
            rpc: self.options.rpc.clone(),
            pool: Arc::clone(&self.pool),
            rpc_tx,
            rpc_rx,
            rpcs_waiting: 0,
            lost: None,
            counters: QpCounters::default(),
        })
    }
}

impl Fabric for RdmaFabric {
    fn connect(&self) -> Result<Box<dyn QueuePair>, VerbError> {
        Ok(Box::new(self.connect_rdma()?))
    }
    fn name(&self) -> &'static str {
        "rdma"
    }
}

/// The registered buffer arena of a queue pair, handed out as a ring in posting order.
struct Arena {
    region: RdmaRegion,
    /// Positions grow without wrapping; a buffer lives at `position % len`.
    taken: u64,
    freed: u64,
}

impl Arena {
    fn new(region: RdmaRegion) -> Arena {
        Arena {
            region,
            taken: 0,
            freed: 0,
        }
    }

    fn cap(&self) -> u64 {
        self.region.len()
    }

    /// Where `len` bytes would go, as (start position, end position), without taking them.
    fn plan(&self, at: u64, len: u64) -> Option<(u64, u64)> {
        let cap = self.cap();
        let len = len.max(8).next_multiple_of(RDMA_ARENA_ALIGN as u64);
        let mut start = at.next_multiple_of(RDMA_ARENA_ALIGN as u64);
        // A buffer never wraps around the end: skip to the start of the ring instead.
        if start % cap + len > cap {
            start = start.next_multiple_of(cap);
        }
        let end = start + len;
        (end - self.freed <= cap).then_some((start, end))
    }

    fn offset(&self, position: u64) -> usize {
        (position % self.cap()) as usize
    }
}

/// A request on the send queue, in posting order.
#[derive(Debug)]
struct Posted {
    seq: u64,
    wr: WrId,
    kind: VerbKind,
    /// Arena range of the request (start and end positions).
    start: u64,
    end: u64,
    len: u32,
    /// Its completion is not the user's: a WRITE followed by its flushing READ.
    silent: bool,
}

/// A queue pair of the rdma fabric.
pub struct RdmaQp {
    // Field order matters: the queue pair is destroyed before the completion queue, the arena's
    // registration before the arena.
    qp: ExtendedQueuePair,
    cq: Arc<ExtendedCompletionQueue>,
    arena_mr: Arc<MemoryRegion>,
    arena: Arena,
    _stream: TcpStream,
    _endpoint: Arc<Endpoint>,
    remote_addr: u64,
    rkey: u32,
    region_len: u64,
    next_seq: u64,
    posted: VecDeque<Posted>,
    /// Work requests of the user posted to the device and not yet completed.
    user_in_flight: usize,
    ready: VecDeque<Completion>,
    rpc: Option<Arc<dyn RpcService>>,
    pool: Arc<OnceLock<Result<RpcPool, String>>>,
    rpc_tx: Sender<Completion>,
    rpc_rx: Receiver<Completion>,
    rpcs_waiting: usize,
    lost: Option<String>,
    counters: QpCounters,
}

impl fmt::Debug for RdmaQp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaQp")
            .field("qpn", &self.qp.qp_number())
            .field("in_flight", &self.in_flight())
            .field("lost", &self.lost)
            .finish()
    }
}

/// A one-sided operation as posted: remote offsets, operands.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read(u64),
    Write(u64, usize),
    Cas(u64, u64, u64),
    Faa(u64, u64),
}

/// A request checked and placed in the arena, ready to post.
struct Planned {
    wr: WrId,
    verb: Verb,
    start: u64,
    end: u64,
    /// The flushing READ behind a persistent WRITE: its arena range.
    flush: Option<(u64, u64)>,
}

impl RdmaQp {
    fn check(&self, verb: &Verb) -> Result<(), VerbError> {
        match verb {
            Verb::Read { remote, len } => {
                check_range(self.region_len, remote.get(), u64::from(*len))
            }
            Verb::Write { remote, data, .. } => {
                check_range(self.region_len, remote.get(), data.len() as u64)
            }
            Verb::Cas { remote, .. } | Verb::Faa { remote, .. } => {
                check_word(self.region_len, remote.get())
            }
            Verb::Rpc { request } if request.len() as u64 > RPC_BYTES_MAX => {
                Err(VerbError::TooLarge(request.len() as u64))
            }
            Verb::Rpc { .. } => Ok(()),
        }
    }

    fn lose(&mut self, reason: String) {
        if self.lost.is_some() {
            return;
        }
        for p in self.posted.drain(..) {
            if !p.silent {
                self.ready.push_back(Completion {
                    wr: p.wr,
                    kind: p.kind,
                    result: Err(VerbError::Disconnected(reason.clone())),
                });
            }
        }
        self.user_in_flight = 0;
        self.lost = Some(reason);
    }

    fn post_rpc(&mut self, wr: WrId, request: Vec<u8>) {
        let refused = |e: VerbError| Completion {
            wr,
            kind: VerbKind::Rpc,
            result: Err(e),
        };
        let Some(service) = &self.rpc else {
            self.ready.push_back(refused(VerbError::Refused(
                "no RPC handler on this fabric".into(),
            )));
            return;
        };
        let pool = self.pool.get_or_init(|| {
            RpcPool::start(Arc::clone(service), RPC_THREADS_DEFAULT, RPC_QUEUE_DEFAULT)
                .map_err(|e| format!("cannot start the RPC threads: {e}"))
        });
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                self.ready.push_back(refused(VerbError::Refused(e.clone())));
                return;
            }
        };
        let tx = self.rpc_tx.clone();
        let reply = Box::new(move |result: Result<Vec<u8>, VerbError>| {
            // The inbox holds more replies than can be outstanding; a failure means the queue
            // pair is gone.
            let _ = tx.try_send(Completion {
                wr,
                kind: VerbKind::Rpc,
                result: result.map(CompletionData::Bytes),
            });
        });
        match pool.try_submit(request, reply) {
            Ok(()) => self.rpcs_waiting += 1,
            Err(e) => self.ready.push_back(refused(e)),
        }
    }

    /// Posts the planned requests as one doorbell.
    fn post_planned(&mut self, planned: Vec<Planned>) -> Result<(), String> {
        let lkey = self.arena_mr.lkey();
        let rkey = self.rkey;
        let base = self.arena.region.addr();
        let mut wrs = Vec::with_capacity(planned.len() * 2);
        for p in planned {
            let local = base + self.arena.offset(p.start) as u64;
            let (op, kind, len) = match p.verb {
                Verb::Read { remote, len } => (Op::Read(remote.get()), VerbKind::Read, len),
                Verb::Write { remote, data, .. } => {
                    self.arena.region.copy_in(self.arena.offset(p.start), &data);
                    (
                        Op::Write(remote.get(), data.len()),
                        VerbKind::Write,
                        data.len() as u32,
                    )
                }
                Verb::Cas {
                    remote,
                    expected,
                    new,
                } => (Op::Cas(remote.get(), expected, new), VerbKind::Cas, 8),
                Verb::Faa { remote, add } => (Op::Faa(remote.get(), add), VerbKind::Faa, 8),
                Verb::Rpc { .. } => continue,
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.posted.push_back(Posted {
                seq,
                wr: p.wr,
                kind,
                start: p.start,
                end: p.end,
                len,
                silent: p.flush.is_some(),
            });
            self.user_in_flight += 1;
            wrs.push((seq, op, local, len));
            if let (Some((start, end)), Op::Write(remote, written)) = (p.flush, op) {
                // Read back the last bytes written: the READ completes only after the WRITE has
                // reached the MN's memory, and its completion stands for the WRITE's.
                let tail = written.min(8) as u64;
                let seq = self.next_seq;
                self.next_seq += 1;
                self.posted.push_back(Posted {
                    seq,
                    wr: p.wr,
                    kind: VerbKind::Write,
                    start,
                    end,
                    len: 0,
                    silent: false,
                });
                let flush_local = base + self.arena.offset(start) as u64;
                wrs.push((
                    seq,
                    Op::Read(remote + written as u64 - tail),
                    flush_local,
                    tail as u32,
                ));
            }
        }
        let remote_base = self.remote_addr;
        let mut guard = self.qp.start_post_send();
        for (seq, op, local, len) in wrs {
            let handle = guard.construct_wr(seq, WorkRequestFlags::Signaled);
            let buffer = match op {
                Op::Read(at) => handle.setup_read(rkey, remote_base + at),
                Op::Write(at, _) => handle.setup_write(rkey, remote_base + at),
                Op::Cas(at, expected, new) => {
                    handle.setup_atomic_compare_swap(rkey, remote_base + at, expected, new)
                }
                Op::Faa(at, add) => handle.setup_atomic_fetch_add(rkey, remote_base + at, add),
            };
            // SAFETY: `local..local + len` is an arena buffer taken for this request alone, in
            // memory registered as `lkey`; nothing touches it until the request's completion is
            // reaped, and the arena outlives the queue pair (field order of `RdmaQp`).
            unsafe { buffer.setup_sge(lkey, local, len) };
        }
        guard
            .post()
            .map_err(|e| format!("post to the device failed: {e}"))
    }

    fn reap(&mut self) {
        let mut done: Vec<(u64, u32)> = Vec::new();
        if let Ok(poller) = self.cq.start_poll() {
            for wc in poller.take(RDMA_POLL_BATCH_MAX) {
                done.push((wc.wr_id(), wc.status()));
            }
        }
        for (seq, status) in done {
            let Some(front) = self.posted.pop_front() else {
                self.lose(format!("a completion for request {seq} that is not posted"));
                return;
            };
            if front.seq != seq {
                self.lose(format!(
                    "completion {seq} arrived while {} was expected",
                    front.seq
                ));
                return;
            }
            self.arena.freed = front.end;
            if status != 0 {
                // The queue pair is in its error state: everything behind fails too.
                let reason = format!("the device completed request {seq} with status {status}");
                if !front.silent {
                    self.user_in_flight = self.user_in_flight.saturating_sub(1);
                    self.ready.push_back(Completion {
                        wr: front.wr,
                        kind: front.kind,
                        result: Err(VerbError::Disconnected(reason.clone())),
                    });
                }
                self.lose(reason);
                return;
            }
            if front.silent {
                continue;
            }
            self.user_in_flight = self.user_in_flight.saturating_sub(1);
            let offset = self.arena.offset(front.start);
            let result = match front.kind {
                VerbKind::Read => Ok(CompletionData::Bytes(
                    self.arena.region.copy_out(offset, front.len as usize),
                )),
                VerbKind::Cas | VerbKind::Faa => {
                    let bytes = self.arena.region.copy_out(offset, 8);
                    Ok(CompletionData::Word(u64::from_ne_bytes(
                        bytes.try_into().unwrap_or([0; 8]),
                    )))
                }
                VerbKind::Write | VerbKind::Rpc => Ok(CompletionData::None),
            };
            self.ready.push_back(Completion {
                wr: front.wr,
                kind: front.kind,
                result,
            });
        }
    }
}

impl QueuePair for RdmaQp {
    fn post_batch(&mut self, batch: Vec<(WrId, Verb)>) -> Result<(), PostError> {
        if let Some(reason) = &self.lost {
            return Err(PostError::Disconnected(reason.clone()));
        }
        check_batch(self.in_flight(), batch.len())?;
        if batch.is_empty() {
            return Ok(());
        }
        // Plan every buffer first, so that the batch is posted whole or not at all.
        let mut at = self.arena.taken;
        let mut planned = Vec::with_capacity(batch.len());
        let mut local = Vec::new();
        let mut rpcs = Vec::new();
        for (wr, verb) in batch {
            if let Err(e) = self.check(&verb) {
                let kind = verb.kind();
                local.push((
                    verb,
                    Completion {
                        wr,
                        kind,
                        result: Err(e),
                    },
                ));
                continue;
            }
            let len = match &verb {
                Verb::Read { len, .. } => u64::from(*len),
                Verb::Write { data, .. } => data.len() as u64,
                Verb::Cas { .. } | Verb::Faa { .. } => 8,
                Verb::Rpc { .. } => {
                    rpcs.push((wr, verb));
                    continue;
                }
            };
            let Some((start, end)) = self.arena.plan(at, len) else {
                return Err(PostError::QueueFull {
                    in_flight: self.in_flight(),
                });
            };
            at = end;
            let flush = match &verb {
                Verb::Write {
                    data,
                    persist: true,
                    ..
                } if !data.is_empty() => {
                    let Some(range) = self.arena.plan(at, 8) else {
                        return Err(PostError::QueueFull {
                            in_flight: self.in_flight(),
                        });
                    };
                    at = range.1;
                    Some(range)
                }
                _ => None,
            };
            planned.push(Planned {
                wr,
                verb,
                start,
                end,
                flush,
            });
        }
        self.counters.doorbells += 1;
        for p in &planned {
            self.counters.count_post(&p.verb);
        }
        for (verb, completion) in local {
            self.counters.count_post(&verb);
            self.ready.push_back(completion);
        }
        for (wr, verb) in rpcs {
            self.counters.count_post(&verb);
            if let Verb::Rpc { request } = verb {
                self.post_rpc(wr, request);
            }
        }
        if !planned.is_empty() {
            self.arena.taken = at;
            if let Err(reason) = self.post_planned(planned) {
                self.lose(reason);
            }
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        if self.lost.is_none() && !self.posted.is_empty() {
            self.reap();
        }
        while let Ok(c) = self.rpc_rx.try_recv() {
            self.rpcs_waiting = self.rpcs_waiting.saturating_sub(1);
            self.ready.push_back(c);
        }
        let mut n = 0;
        while n < max {
            let Some(c) = self.ready.pop_front() else {
                break;
            };
            self.counters.count_completion(&c);
            out.push(c);
            n += 1;
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.user_in_flight + self.ready.len() + self.rpcs_waiting
    }

    fn counters(&self) -> QpCounters {
        self.counters
    }

    fn region_len(&self) -> u64 {
        self.region_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_messages_round_trip() {
        let info = QpInfo {
            lid: 7,
            qpn: 0x12_3456,
            psn: 0xab_cdef,
            gid: [3; 16],
        };
        let hello = put_hello(b"token", &info);
        assert_eq!(
            get_hello(&hello),
            Some((RDMA_EXCHANGE_VERSION, &b"token"[..], info))
        );
        assert_eq!(get_hello(&hello[..hello.len() - 1]), None);
        let welcome = put_welcome(&Welcome {
            info,
            addr: 0x7f00_0000_0000,
            rkey: 99,
            len: 1 << 30,
        });
        let back = get_welcome(&welcome).unwrap();
        assert_eq!(
            (back.info, back.addr, back.rkey, back.len),
            (info, 0x7f00_0000_0000, 99, 1 << 30)
        );
        assert!(
            matches!(get_welcome(&put_refusal("no")), Err(RdmaError::Exchange(m)) if m.contains("no"))
        );
        assert!(get_welcome(&[]).is_err());
    }

    #[test]
    fn arena_hands_out_a_ring_in_order() {
        let region = RdmaRegion::anonymous(4096).unwrap();
        let mut arena = Arena::new(region);
        let (a, a_end) = arena.plan(arena.taken, 1000).unwrap();
        assert_eq!(a, 0);
        arena.taken = a_end;
        let (b, b_end) = arena.plan(arena.taken, 3000).unwrap();
        arena.taken = b_end;
        assert_eq!(b, 1024);
        // Full until the first buffer is freed; a buffer never wraps around the end.
        assert_eq!(arena.plan(arena.taken, 100), None);
        arena.freed = a_end;
        let (c, _) = arena.plan(arena.taken, 512).unwrap();
        assert_eq!(arena.offset(c), 0);
        assert_eq!(arena.plan(arena.taken, 2000), None);
    }

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
