//! The simulated hypervisor: Xen's side of the ioreq protocol, for `--accel sim` and for tests.
//!
//! It speaks the real protocol, not an abstraction of it:
//! - the device model talks to it through [`SimSys`], the same [`XenSys`] seam as real Xen, with
//!   the same `xen_dm_op` bytes (decoded and checked as `xen/arch/x86/hvm/dm.c` does), the same
//!   `XENMEM_acquire_resource` frame layout and `/dev/xen/evtchn` masking semantics;
//! - ioreq pages and guest RAM are memfds mapped separately by both sides;
//! - vCPUs ([`SimVcpu`]) select a server like `ioreq_server_select` (PORT, MEMORY and PCI SBDF
//!   ranges, newest server first, 0xCF8 latch turning 0xCFC-0xCFF into `IOREQ_TYPE_PCI_CONFIG`
//!   only for registered SBDFs), post into their slot, notify, and sleep until the device model
//!   notifies back, then check the state like `wait_for_io` (going backwards crashes the domain);
//!   unclaimed accesses read all-ones and drop writes;
//! - the buffered ring is written like `ioreq_send_buffered`, with ATOMIC pointer normalisation;
//! - every INTx / ISA IRQ / link route / MSI / shutdown call is recorded for assertions.

mod evtchn;
pub mod pt;
mod sys;
mod vcpu;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use xen_bindings::dm_op::{DmOp, IoRangeKind, XEN_DMOP_NO_GFNS};
use xen_bindings::ioreq::{HVM_IOREQSRV_BUFIOREQ_OFF, PAGE_SIZE};
use xen_bindings::mem::{MappedRegion, SharedMemory};
use xen_bindings::page::IoreqPage;

use crate::bus::{Range, RangeMap};

pub use evtchn::EvtchnFile;
pub use sys::SimSys;
pub use vcpu::{GuestIo, SimVcpu};

/// The device model's own domain.
pub const DM_DOMID: u16 = 0;
/// Xen's limit of ioreq servers per domain (`MAX_NR_IOREQ_SERVERS`).
pub const MAX_SERVERS: usize = 8;
/// Start of RAM above 4 GiB.
pub const HIGH_RAM_START: u64 = 1 << 32;

/// Simulated domain parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Guest domain id.
    pub domid: u16,
    /// vCPUs (slots used in the ioreq page).
    pub nr_vcpus: u32,
    /// RAM from 0 up (bytes).
    pub ram_below_4g: u64,
    /// RAM from 4 GiB up (bytes).
    pub ram_above_4g: u64,
    /// How long a vCPU waits for the device model before reporting a hang.
    pub wait_timeout: Duration,
    /// The `XEN_DOMCTL_INTERFACE_VERSION` the simulated hypervisor speaks (domctls with another
    /// version fail with EACCES, as on Xen); default 0x15 (Xen 4.17).
    pub domctl_version: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            domid: 1,
            nr_vcpus: 2,
            ram_below_4g: 256 << 20,
            ram_above_4g: 0,
            wait_timeout: Duration::from_secs(10),
            domctl_version: xen_bindings::domctl::DomctlVersion::HEADERS.raw(),
        }
    }
}

/// What a guest-side operation ran into.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The device model did not answer in time (a vCPU left blocked).
    #[error("vCPU {vcpu} still blocked after {ms} ms (slot state {state})")]
    Timeout {
        /// vCPU.
        vcpu: u32,
        /// Waited.
        ms: u128,
        /// Slot state seen last.
        state: u8,
    },
    /// Xen would crash the domain (bad state transition, slot busy, ...).
    #[error("domain crashed: {0}")]
    Crashed(String),
    /// Invalid use of the simulator itself.
    #[error("simulator: {0}")]
    Usage(String),
    /// The ring is full or the access is not buffered-capable (`IOREQ_STATUS_UNHANDLED`).
    #[error("buffered ioreq not accepted")]
    Unhandled,
}

/// An interrupt-related call the device model made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqEvent {
    /// `set_pci_intx_level`.
    PciIntx {
        /// Device.
        device: u8,
        /// Pin.
        intx: u8,
        /// Level.
        level: u8,
    },
    /// `set_isa_irq_level`.
    IsaIrq {
        /// IRQ.
        irq: u8,
        /// Level.
        level: u8,
    },
    /// `set_pci_link_route`.
    LinkRoute {
        /// Link.
        link: u8,
        /// ISA IRQ.
        irq: u8,
    },
    /// `inject_msi`.
    Msi {
        /// Address.
        addr: u64,
        /// Data.
        data: u32,
    },
}

/// A guest-side event-channel port (in the simulated domain's port space).
#[derive(Debug)]
struct GuestPort {
    /// Domain allowed to bind the other end.
    remote_dom: u16,
    /// Local port of the device model's end, once bound.
    bound_to: Option<u32>,
    /// Fired before anyone bound it.
    pending: bool,
    /// Wake-ups delivered to the vCPU waiting on this port.
    kicks: u64,
}

/// A port in the device model's (dom0's) port space.
#[derive(Debug)]
struct DmPort {
    file: Arc<EvtchnFile>,
    /// The guest port at the other end (interdomain), if any.
    peer: Option<u32>,
    /// For unbound ports: the domain that may bind the other end.
    #[allow(dead_code)]
    remote_dom: u16,
}

#[derive(Debug)]
struct Server {
    bufioreq: u8,
    _mem: SharedMemory,
    /// Xen's mapping of the two frames: buffered page at 0, synchronous page at 4096.
    map: MappedRegion,
    enabled: bool,
    legacy_gfns: bool,
    ports: Vec<u32>,
    buf_port: Option<u32>,
    port_ranges: RangeMap<()>,
    mem_ranges: RangeMap<()>,
    pci: BTreeSet<u32>,
}

impl Server {
    fn sync_page(&self) -> Option<IoreqPage<'_>> {
        IoreqPage::new(&self.map, PAGE_SIZE).ok()
    }
}

/// Every dm_op the device model issued that changes interrupt or domain state, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// An interrupt call.
    Irq(IrqEvent),
    /// `remote_shutdown`.
    Shutdown(u32),
    /// `modified_memory` extents `(first_pfn, nr)`.
    ModifiedMemory(Vec<(u64, u32)>),
    /// `relocate_memory`.
    Relocate {
        /// Pages.
        size: u32,
        /// From.
        src_gfn: u64,
        /// To.
        dst_gfn: u64,
    },
}

#[derive(Debug, Default)]
struct State {
    servers: BTreeMap<u16, Server>,
    guest_ports: BTreeMap<u32, GuestPort>,
    next_guest_port: u32,
    dm_ports: BTreeMap<u32, DmPort>,
    next_dm_port: u32,
    /// Loopback inter-domain channels between two dom0 files (`local port -> peer local port`,
    /// both directions), see [`evtchn`].
    dom0_links: BTreeMap<u32, u32>,
    pci_cf8: u32,
    recorded: Vec<Recorded>,
    crashed: Option<String>,
    dm_ops: u64,
    pt: pt::PtSimState,
}

struct Inner {
    cfg: SimConfig,
    ram: SharedMemory,
    ram_map: MappedRegion,
    st: Mutex<State>,
    cv: Condvar,
    vcpu_locks: Vec<Mutex<()>>,
}

/// The simulated hypervisor for one guest domain. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SimXen {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimXen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimXen(dom{}, {} vCPUs)", self.inner.cfg.domid, self.inner.cfg.nr_vcpus)
    }
}

impl SimXen {
    /// A new domain with zeroed RAM.
    pub fn new(cfg: SimConfig) -> std::io::Result<Self> {
        if cfg.nr_vcpus == 0 || cfg.nr_vcpus as usize > xen_bindings::ioreq::SHARED_IOPAGE_SLOTS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} vCPUs (1..=128 supported)", cfg.nr_vcpus),
            ));
        }
        if cfg.ram_below_4g % PAGE_SIZE as u64 != 0
            || cfg.ram_above_4g % PAGE_SIZE as u64 != 0
            || cfg.ram_below_4g > HIGH_RAM_START
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "RAM sizes must be page multiples, low RAM <= 4 GiB",
            ));
        }
        let total = (cfg.ram_below_4g + cfg.ram_above_4g).max(PAGE_SIZE as u64);
        let ram = SharedMemory::new("q35dm-sim-guest-ram", total)?;
        let len = usize::try_from(total).map_err(|_| std::io::Error::other("RAM too large"))?;
        let ram_map = ram.map(0, len)?;
        let vcpu_locks = (0..cfg.nr_vcpus).map(|_| Mutex::new(())).collect();
        let st = State { next_guest_port: 5, next_dm_port: 40, ..Default::default() };
        Ok(Self { inner: Arc::new(Inner { cfg, ram, ram_map, st: Mutex::new(st), cv: Condvar::new(), vcpu_locks }) })
    }

    /// The domain parameters.
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// Opens a device-model handle (privcmd + evtchn) on this hypervisor.
    pub fn open(&self) -> std::io::Result<SimSys> {
        SimSys::new(self.clone())
    }

    /// A vCPU of the guest.
    pub fn vcpu(&self, id: u32) -> SimVcpu {
        SimVcpu::new(self.clone(), id)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.inner.st.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Interrupt and domain calls recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// Takes (and clears) the recorded calls.
    pub fn take_recorded(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().recorded)
    }

    /// Interrupt calls recorded so far.
    pub fn irq_events(&self) -> Vec<IrqEvent> {
        self.lock()
            .recorded
            .iter()
            .filter_map(|r| match r {
                Recorded::Irq(i) => Some(i.clone()),
                _ => None,
            })
            .collect()
    }

    /// Why the domain crashed, if it did.
    pub fn crashed(&self) -> Option<String> {
        self.lock().crashed.clone()
    }

    /// Number of dm_ops served.
    pub fn dm_op_count(&self) -> u64 {
        self.lock().dm_ops
    }

    /// Ids of live ioreq servers.
    pub fn servers(&self) -> Vec<u16> {
        self.lock().servers.keys().copied().collect()
    }

    /// Ranges a server claimed, as `(kind, start, end)`.
    pub fn server_ranges(&self, id: u16) -> Vec<(IoRangeKind, u64, u64)> {
        let st = self.lock();
        let Some(s) = st.servers.get(&id) else { return Vec::new() };
        let mut v: Vec<_> = s.port_ranges.iter().map(|(r, _)| (IoRangeKind::Port, r.start, r.end)).collect();
        v.extend(s.mem_ranges.iter().map(|(r, _)| (IoRangeKind::Memory, r.start, r.end)));
        v.extend(s.pci.iter().map(|p| (IoRangeKind::Pci, u64::from(*p), u64::from(*p))));
        v
    }

    /// Whether a server is enabled.
    pub fn server_enabled(&self, id: u16) -> bool {
        self.lock().servers.get(&id).is_some_and(|s| s.enabled)
    }

    /// The latched 0xCF8 value.
    pub fn pci_cf8(&self) -> u32 {
        self.lock().pci_cf8
    }

    fn ram_offset(&self, gpa: u64, len: u64) -> Option<usize> {
        let c = &self.inner.cfg;
        let last = gpa.checked_add(len.checked_sub(1)?)?;
        if last < c.ram_below_4g {
            return usize::try_from(gpa).ok();
        }
        if gpa >= HIGH_RAM_START && last < HIGH_RAM_START + c.ram_above_4g {
            return usize::try_from(gpa - HIGH_RAM_START + c.ram_below_4g).ok();
        }
        None
    }

    /// Offset in the RAM memfd of guest frame `gfn`, if it is RAM.
    fn gfn_offset(&self, gfn: u64) -> Option<u64> {
        let gpa = gfn.checked_mul(PAGE_SIZE as u64)?;
        self.ram_offset(gpa, PAGE_SIZE as u64).map(|o| o as u64)
    }

    /// Writes guest RAM (what the guest's CPU would do). Fails outside RAM.
    pub fn ram_write(&self, gpa: u64, data: &[u8]) -> Result<(), SimError> {
        if data.is_empty() {
            return Ok(());
        }
        let off =
            self.ram_offset(gpa, data.len() as u64).ok_or_else(|| SimError::Usage(format!("{gpa:#x} is not RAM")))?;
        self.inner.ram_map.write(off, data).map_err(|e| SimError::Usage(e.to_string()))
    }

    /// Reads guest RAM.
    pub fn ram_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), SimError> {
        if buf.is_empty() {
            return Ok(());
        }
        let off =
            self.ram_offset(gpa, buf.len() as u64).ok_or_else(|| SimError::Usage(format!("{gpa:#x} is not RAM")))?;
        self.inner.ram_map.read(off, buf).map_err(|e| SimError::Usage(e.to_string()))
    }

    fn alloc_guest_port(st: &mut State, remote_dom: u16) -> u32 {
        let p = st.next_guest_port;
        st.next_guest_port += 1;
        st.guest_ports.insert(p, GuestPort { remote_dom, bound_to: None, pending: false, kicks: 0 });
        p
    }

    /// Xen raises a guest-side port: deliver to the bound device-model file, or leave pending.
    fn raise_guest_port(st: &mut State, port: u32) {
        let Some(gp) = st.guest_ports.get_mut(&port) else { return };
        match gp.bound_to {
            Some(local) => {
                if let Some(dp) = st.dm_ports.get(&local) {
                    dp.file.fire(local);
                }
            }
            None => gp.pending = true,
        }
    }

    /// Sends an event on vCPU `vcpu`'s port of server `id` without posting anything (a spurious
    /// event, for tests of the device model's state checks).
    pub fn notify_vcpu_port(&self, id: u16, vcpu: u32) -> Result<(), SimError> {
        let mut st = self.lock();
        let port = st
            .servers
            .get(&id)
            .and_then(|s| s.ports.get(vcpu as usize).copied())
            .ok_or_else(|| SimError::Usage(format!("no server {id} / vCPU {vcpu}")))?;
        Self::raise_guest_port(&mut st, port);
        Ok(())
    }

    /// Sends an event on the buffered port of server `id`.
    pub fn notify_buffered(&self, id: u16) -> Result<(), SimError> {
        let mut st = self.lock();
        let port = st
            .servers
            .get(&id)
            .and_then(|s| s.buf_port)
            .ok_or_else(|| SimError::Usage(format!("server {id} has no buffered ring")))?;
        Self::raise_guest_port(&mut st, port);
        Ok(())
    }

    /// Runs `f` on server `id`'s buffered page (tests use it to corrupt the ring).
    pub fn with_buffered_page<R>(
        &self,
        id: u16,
        f: impl FnOnce(xen_bindings::page::BufferedPage<'_>) -> R,
    ) -> Result<R, SimError> {
        let st = self.lock();
        let s = st.servers.get(&id).ok_or_else(|| SimError::Usage(format!("no server {id}")))?;
        let p = xen_bindings::page::BufferedPage::new(&s.map, 0).map_err(|e| SimError::Usage(e.to_string()))?;
        Ok(f(p))
    }

    /// Runs `f` on vCPU `vcpu`'s slot of server `id` (tests use it to tamper with a request).
    pub fn with_slot<R>(
        &self,
        id: u16,
        vcpu: u32,
        f: impl FnOnce(xen_bindings::page::IoreqSlot<'_>) -> R,
    ) -> Result<R, SimError> {
        let st = self.lock();
        let s = st.servers.get(&id).ok_or_else(|| SimError::Usage(format!("no server {id}")))?;
        let slot = s
            .sync_page()
            .and_then(|p| p.slot(vcpu as usize))
            .ok_or_else(|| SimError::Usage(format!("no slot {vcpu}")))?;
        Ok(f(slot))
    }

    // ---------------------------------------------------------------- dm_op, as Xen executes it

    fn dm_op(&self, bufs: &mut [&mut [u8]]) -> Result<(), i32> {
        let op = {
            let b0 = bufs.first().ok_or(libc::EINVAL)?;
            DmOp::decode(b0).map_err(|e| match e {
                xen_bindings::dm_op::DecodeError::Short { .. } => libc::EFAULT,
                xen_bindings::dm_op::DecodeError::UnknownOp(_) => libc::EOPNOTSUPP,
                xen_bindings::dm_op::DecodeError::Pad(_) => libc::EINVAL,
            })?
        };
        let mut st = self.lock();
        st.dm_ops += 1;
        let out = self.exec(&mut st, op, bufs)?;
        if let Some(out) = out {
            let enc = out.encode();
            let bytes = bytemuck::bytes_of(&enc);
            if let Some(b0) = bufs.first_mut() {
                let n = b0.len().min(bytes.len());
                b0[..n].copy_from_slice(&bytes[..n]);
            }
        }
        Ok(())
    }

    fn exec(&self, st: &mut State, op: DmOp, bufs: &mut [&mut [u8]]) -> Result<Option<DmOp>, i32> {
        use DmOp::*;
        let cfg = &self.inner.cfg;
        match op {
            CreateIoreqServer(mut c) => {
                if c.pad != [0; 3] {
                    return Err(libc::EINVAL);
                }
                if c.handle_bufioreq > xen_bindings::ioreq::HVM_IOREQSRV_BUFIOREQ_ATOMIC {
                    return Err(libc::EINVAL);
                }
                let id = (0..MAX_SERVERS as u16).find(|i| !st.servers.contains_key(i)).ok_or(libc::ENOSPC)?;
                let mem = SharedMemory::new("q35dm-sim-ioreq-pages", 2 * PAGE_SIZE as u64).map_err(|_| libc::ENOMEM)?;
                let map = mem.map(0, 2 * PAGE_SIZE).map_err(|_| libc::ENOMEM)?;
                let ports = (0..cfg.nr_vcpus).map(|_| Self::alloc_guest_port(st, DM_DOMID)).collect();
                let buf_port =
                    (c.handle_bufioreq != HVM_IOREQSRV_BUFIOREQ_OFF).then(|| Self::alloc_guest_port(st, DM_DOMID));
                st.servers.insert(
                    id,
                    Server {
                        bufioreq: c.handle_bufioreq,
                        _mem: mem,
                        map,
                        enabled: false,
                        legacy_gfns: false,
                        ports,
                        buf_port,
                        port_ranges: RangeMap::new(),
                        mem_ranges: RangeMap::new(),
                        pci: BTreeSet::new(),
                    },
                );
                c.id = id;
                Ok(Some(CreateIoreqServer(c)))
            }
            GetIoreqServerInfo(mut g) => {
                let s = st.servers.get_mut(&g.id).ok_or(libc::ENOENT)?;
                g.bufioreq_port = s.buf_port.unwrap_or(0);
                if g.flags & XEN_DMOP_NO_GFNS == 0 {
                    // Legacy path: the pages would be placed in the guest p2m; afterwards
                    // acquire_resource is refused (ioreq_server_alloc_mfn returns -EPERM).
                    s.legacy_gfns = true;
                    g.ioreq_gfn = 0xfeff0;
                    g.bufioreq_gfn = 0xfeff1;
                }
                Ok(Some(GetIoreqServerInfo(g)))
            }
            MapIoRange(r) | UnmapIoRange(r) => {
                let map = matches!(op, MapIoRange(_));
                if r.pad != 0 || r.start > r.end {
                    return Err(libc::EINVAL);
                }
                let s = st.servers.get_mut(&r.id).ok_or(libc::ENOENT)?;
                let kind = IoRangeKind::from_raw(r.type_).ok_or(libc::EINVAL)?;
                let range = Range::inclusive(r.start, r.end).ok_or(libc::EINVAL)?;
                match (kind, map) {
                    (IoRangeKind::Pci, true) => {
                        if r.start != r.end {
                            // libxendevicemodel registers single functions; keep Xen's rangeset
                            // semantics simple and accept singletons only.
                            return Err(libc::EINVAL);
                        }
                        if !s.pci.insert(r.start as u32) {
                            return Err(libc::EEXIST);
                        }
                    }
                    (IoRangeKind::Pci, false) => {
                        if !s.pci.remove(&(r.start as u32)) {
                            return Err(libc::ENOENT);
                        }
                    }
                    (k, true) => {
                        let m = if k == IoRangeKind::Port { &mut s.port_ranges } else { &mut s.mem_ranges };
                        if k == IoRangeKind::Port && r.end > 0xffff {
                            return Err(libc::EINVAL);
                        }
                        m.insert(range, ()).map_err(|_| libc::EEXIST)?;
                    }
                    (k, false) => {
                        let m = if k == IoRangeKind::Port { &mut s.port_ranges } else { &mut s.mem_ranges };
                        match m.find(r.start) {
                            Some((found, _)) if found == range => {
                                let _ = m.remove(r.start);
                            }
                            _ => return Err(libc::ENOENT),
                        }
                    }
                }
                Ok(None)
            }
            SetIoreqServerState(s) => {
                if s.pad != 0 {
                    return Err(libc::EINVAL);
                }
                let srv = st.servers.get_mut(&s.id).ok_or(libc::ENOENT)?;
                srv.enabled = s.enabled != 0;
                if srv.enabled {
                    // ioreq_server_enable -> ioreq_update_evtchn: publish vp_eport per slot.
                    if let Some(page) = srv.sync_page() {
                        for (v, p) in srv.ports.iter().enumerate() {
                            if let Some(slot) = page.slot(v) {
                                slot.set_vp_eport(*p);
                            }
                        }
                    }
                }
                Ok(None)
            }
            DestroyIoreqServer(d) => {
                if d.pad != 0 {
                    return Err(libc::EINVAL);
                }
                let srv = st.servers.remove(&d.id).ok_or(libc::ENOENT)?;
                for p in srv.ports.iter().chain(srv.buf_port.iter()) {
                    if let Some(gp) = st.guest_ports.remove(p) {
                        if let Some(local) = gp.bound_to {
                            if let Some(dp) = st.dm_ports.get_mut(&local) {
                                dp.peer = None;
                            }
                        }
                    }
                }
                self.inner.cv.notify_all();
                Ok(None)
            }
            SetPciIntxLevel(p) => {
                if p.domain != 0 || p.bus != 0 || p.device > 31 || p.intx > 3 || p.level > 1 {
                    return Err(libc::EINVAL);
                }
                st.recorded.push(Recorded::Irq(IrqEvent::PciIntx { device: p.device, intx: p.intx, level: p.level }));
                Ok(None)
            }
            SetIsaIrqLevel(p) => {
                if p.isa_irq > 15 || p.level > 1 {
                    return Err(libc::EINVAL);
                }
                st.recorded.push(Recorded::Irq(IrqEvent::IsaIrq { irq: p.isa_irq, level: p.level }));
                Ok(None)
            }
            SetPciLinkRoute(p) => {
                if p.link > 3 || p.isa_irq > 15 {
                    return Err(libc::EINVAL);
                }
                st.recorded.push(Recorded::Irq(IrqEvent::LinkRoute { link: p.link, irq: p.isa_irq }));
                Ok(None)
            }
            InjectMsi(m) => {
                if m.pad != 0 {
                    return Err(libc::EINVAL);
                }
                st.recorded.push(Recorded::Irq(IrqEvent::Msi { addr: m.addr, data: m.data }));
                Ok(None)
            }
            ModifiedMemory(m) => {
                if m.opaque != 0 {
                    return Err(libc::EINVAL);
                }
                let ext_buf = bufs.get(1).ok_or(libc::EINVAL)?;
                let n = m.nr_extents as usize;
                if ext_buf.len() < n.saturating_mul(16) {
                    return Err(libc::EINVAL);
                }
                let mut v = Vec::new();
                for (i, c) in ext_buf.chunks_exact(16).take(n).enumerate() {
                    let e: xen_bindings::dm_op::ModifiedMemoryExtent = bytemuck::pod_read_unaligned(c);
                    let ok = e.pad == 0
                        && (0..u64::from(e.nr))
                            .all(|k| e.first_pfn.checked_add(k).and_then(|g| self.gfn_offset(g)).is_some());
                    if !ok {
                        // Xen stops at extent i and copies nothing back on error.
                        log::debug!("sim: modified_memory extent {i} is not RAM");
                        return Err(libc::EINVAL);
                    }
                    v.push((e.first_pfn, e.nr));
                }
                st.recorded.push(Recorded::ModifiedMemory(v));
                Ok(Some(ModifiedMemory(m)))
            }
            RemoteShutdown(r) => {
                st.recorded.push(Recorded::Shutdown(r.reason));
                Ok(None)
            }
            RelocateMemory(r) => {
                if r.pad != 0 {
                    return Err(libc::EINVAL);
                }
                st.recorded.push(Recorded::Relocate { size: r.size, src_gfn: r.src_gfn, dst_gfn: r.dst_gfn });
                Ok(None)
            }
            NrVcpus(mut n) => {
                n.vcpus = cfg.nr_vcpus;
                Ok(Some(NrVcpus(n)))
            }
            // Not needed by this device model; Xen would act, the simulator refuses loudly.
            TrackDirtyVram(_)
            | SetMemType(_)
            | InjectEvent(_)
            | MapMemTypeToIoreqServer(_)
            | PinMemoryCacheattr(_)
            | SetIrqLevel(_) => Err(libc::EOPNOTSUPP),
        }
    }

    fn mmap_resource(&self, type_: u32, id: u32, idx: u32, num: u64) -> Result<MappedRegion, i32> {
        if type_ != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        let st = self.lock();
        let id = u16::try_from(id).map_err(|_| libc::ENOENT)?;
        let s = st.servers.get(&id).ok_or(libc::ENOENT)?;
        if s.legacy_gfns {
            return Err(libc::EPERM);
        }
        if idx == 0 && s.bufioreq == HVM_IOREQSRV_BUFIOREQ_OFF {
            return Err(libc::ENOENT);
        }
        if num == 0 || u64::from(idx) + num > 2 {
            return Err(libc::EINVAL);
        }
        s._mem.map(u64::from(idx) * PAGE_SIZE as u64, num as usize * PAGE_SIZE).map_err(|_| libc::ENOMEM)
    }

    fn mmap_batch(&self, gfns: &[u64], errs: &mut [i32]) -> Result<MappedRegion, i32> {
        let region = MappedRegion::reserve(gfns.len() * PAGE_SIZE).map_err(|_| libc::ENOMEM)?;
        let mut i = 0;
        while i < gfns.len() {
            let Some(off) = self.gfn_offset(gfns[i]) else {
                errs[i] = -libc::EINVAL;
                i += 1;
                continue;
            };
            // Extend a run of frames that are contiguous both in the guest and in the memfd.
            let mut n = 1;
            while i + n < gfns.len()
                && gfns[i + n] == gfns[i] + n as u64
                && self.gfn_offset(gfns[i + n]) == Some(off + (n * PAGE_SIZE) as u64)
            {
                n += 1;
            }
            region
                .map_fixed_shared(i * PAGE_SIZE, self.inner.ram.fd(), off, n * PAGE_SIZE)
                .map_err(|_| libc::ENOMEM)?;
            for e in errs.iter_mut().skip(i).take(n) {
                *e = 0;
            }
            i += n;
        }
        Ok(region)
    }
}

#[cfg(test)]
mod tests;
