//! What both sides of the rdma fabric need of the device: opening it, memory a NIC may read and
//! write ([`RdmaRegion`]), and one RC queue pair with its completion queue and the state changes
//! that connect it to a peer ([`Endpoint`]).
//!
//! Invariant: a registration never outlives the memory it names — every holder of a
//! [`MemoryRegion`] from [`RdmaRegion::register`] also holds the region and drops it later (field
//! order in the MN's server state and in a KN queue pair).

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid, GidType};
use sideway::ibverbs::completion::{ExtendedCompletionQueue, GenericCompletionQueue};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::{DeviceContext, Mtu};
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    ExtendedQueuePair, QueuePair as _, QueuePairAttribute, QueuePairState, SendOperationFlags,
};

use super::exchange::QpInfo;
use super::{RDMA_PORT, RDMA_RD_ATOMIC_MAX, RDMA_SEND_WR_MAX, RdmaError};

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

// SAFETY: the region is plain memory with no thread affinity; Rust code reads and writes it only
// through `copy_out` and `copy_in`, raw copies of ranges that no work request in flight names.
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

    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Registers the region with `pd`.
    pub(crate) fn register(
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
    pub(crate) fn copy_out(&self, offset: usize, len: usize) -> Vec<u8> {
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
    pub(crate) fn copy_in(&self, offset: usize, data: &[u8]) {
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

/// The device resources one side of a connection uses.
pub(crate) struct Endpoint {
    context: Arc<DeviceContext>,
    pub(crate) pd: Arc<ProtectionDomain>,
    gid_index: u8,
    gid: Gid,
    lid: u16,
    mtu: Mtu,
    rd_atomic: u8,
}

impl Endpoint {
    pub(crate) fn open(device: Option<&str>, gid_index: Option<u8>) -> Result<Endpoint, RdmaError> {
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
    pub(crate) fn queue_pair(
        &self,
    ) -> Result<(ExtendedQueuePair, Arc<ExtendedCompletionQueue>), RdmaError> {
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

    pub(crate) fn info(&self, qp: &ExtendedQueuePair, psn: u32) -> QpInfo {
        QpInfo {
            lid: self.lid,
            qpn: qp.qp_number(),
            psn,
            gid: self.gid.raw,
        }
    }

    /// Moves `qp` to RTR and RTS, connected to `remote`.
    pub(crate) fn connect(
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
pub(crate) fn fresh_psn() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(12)) & 0xff_ffff
}
