//! One ioreq server: creation, page mapping, event channels, ranges, and ordered teardown.
//!
//! Set-up follows the order Xen requires (xen-abi.md §2.3, QEMU `xen_do_ioreq_register`):
//! create (buffered ring ATOMIC) → map both pages with `XENMEM_acquire_resource` →
//! `get_ioreq_server_info(no_gfns)` for the buffered port → enable (Xen publishes each vCPU's
//! `vp_eport` in its slot only now) → bind one interdomain event channel per vCPU and one for the
//! buffered ring. Ranges are claimed afterwards as devices appear. Teardown is the reverse:
//! disable, destroy (which also drops the ranges), unmap, unbind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use log::{debug, info, warn};
use thiserror::Error;
use xen_bindings::ioreq::{HVM_IOREQSRV_BUFIOREQ_ATOMIC, HVM_IOREQSRV_BUFIOREQ_OFF, PAGE_SIZE, SHARED_IOPAGE_SLOTS};
use xen_bindings::mem::MappedRegion;
use xen_bindings::page::{BufferedPage, IoreqPage};
use xen_bindings::sys::{SysError, XenSys};

use crate::device::IoRange;
use crate::xen::dm::{DeviceModelOps, DmError};

/// `XENMEM_resource_ioreq_server`.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u32 = 0;
/// Domain of the device model itself (dom0 for a local device model).
pub const DM_DOMID: u32 = 0;

/// Errors while setting up or changing an ioreq server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A DM_OP failed.
    #[error("{what}: {source}")]
    Dm {
        /// Step that failed.
        what: String,
        /// Cause.
        source: DmError,
    },
    /// An ioctl failed.
    #[error("{what}: {source}")]
    Sys {
        /// Step that failed.
        what: String,
        /// Cause.
        source: SysError,
    },
    /// Xen reported an impossible vCPU count.
    #[error("domain reports {0} vCPUs; an ioreq page has {SHARED_IOPAGE_SLOTS} slots")]
    TooManyVcpus(u32),
    /// A slot's event-channel port is zero after enabling.
    #[error("vCPU {vcpu} has no event channel (vp_eport 0) after enabling the server")]
    NoPort {
        /// vCPU.
        vcpu: usize,
    },
    /// The mapped region is smaller than the pages.
    #[error("acquire_resource mapping of {0} bytes is too small")]
    ShortMapping(usize),
}

/// Creation options.
#[derive(Clone, Copy, Debug)]
pub struct ServerOptions {
    /// Ask for the buffered ring (`HVM_IOREQSRV_BUFIOREQ_ATOMIC`).
    pub bufioreq: bool,
    /// vCPU count if known (otherwise `XEN_DMOP_nr_vcpus`).
    pub nr_vcpus: Option<u32>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { bufioreq: true, nr_vcpus: None }
    }
}

/// A live ioreq server.
pub struct IoreqServer {
    dm: DeviceModelOps,
    id: u16,
    pages: Option<MappedRegion>,
    sync_offset: usize,
    buf_offset: Option<usize>,
    vcpu_ports: Vec<u32>,
    port_to_vcpu: HashMap<u32, usize>,
    buf_port: Option<u32>,
    ranges: BTreeSet<IoRange>,
    enabled: bool,
    destroyed: bool,
}

impl std::fmt::Debug for IoreqServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoreqServer")
            .field("domid", &self.dm.domid())
            .field("id", &self.id)
            .field("vcpu_ports", &self.vcpu_ports)
            .field("buf_port", &self.buf_port)
            .field("ranges", &self.ranges.len())
            .finish()
    }
}

fn dm_err(what: impl Into<String>) -> impl FnOnce(DmError) -> ServerError {
    let what = what.into();
    move |source| ServerError::Dm { what, source }
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(SysError) -> ServerError {
    let what = what.into();
    move |source| ServerError::Sys { what, source }
}

impl IoreqServer {
    /// Creates, maps, enables and binds a server for `domid`.
    pub fn create(sys: Arc<dyn XenSys>, domid: u16, opts: ServerOptions) -> Result<Self, ServerError> {
        let dm = DeviceModelOps::new(sys, domid);
        let handling = if opts.bufioreq { HVM_IOREQSRV_BUFIOREQ_ATOMIC } else { HVM_IOREQSRV_BUFIOREQ_OFF };
        let id =
            dm.create_ioreq_server(handling).map_err(dm_err(format!("creating an ioreq server for domain {domid}")))?;
        info!(
            "domain {domid}: ioreq server {id} created (buffered ring {})",
            if opts.bufioreq { "atomic" } else { "off" }
        );
        let mut s = Self {
            dm,
            id,
            pages: None,
            sync_offset: 0,
            buf_offset: None,
            vcpu_ports: Vec::new(),
            port_to_vcpu: HashMap::new(),
            buf_port: None,
            ranges: BTreeSet::new(),
            enabled: false,
            destroyed: false,
        };
        // On any failure below, Drop tears down what exists.
        s.setup(opts)?;
        Ok(s)
    }

    fn setup(&mut self, opts: ServerOptions) -> Result<(), ServerError> {
        let domid = self.dm.domid();
        let sys = self.dm.sys().clone();
        // Frame 0 is the buffered page, frame 1 the synchronous page (ioreq_server_get_frame).
        let (first, num) = if opts.bufioreq { (0, 2) } else { (1, 1) };
        let region = sys
            .mmap_resource(domid, XENMEM_RESOURCE_IOREQ_SERVER, u32::from(self.id), first, num)
            .map_err(sys_err(format!("mapping ioreq server {} pages", self.id)))?;
        if region.len() < (num as usize) * PAGE_SIZE {
            return Err(ServerError::ShortMapping(region.len()));
        }
        if opts.bufioreq {
            self.buf_offset = Some(0);
            self.sync_offset = PAGE_SIZE;
        }
        self.pages = Some(region);
        let info = self.dm.get_ioreq_server_info(self.id).map_err(dm_err("querying the ioreq server"))?;
        let nr = match opts.nr_vcpus {
            Some(n) => n,
            None => self.dm.nr_vcpus().map_err(dm_err("querying the vCPU count"))?,
        };
        if nr == 0 || nr as usize > SHARED_IOPAGE_SLOTS {
            return Err(ServerError::TooManyVcpus(nr));
        }
        self.dm.set_ioreq_server_state(self.id, true).map_err(dm_err("enabling the ioreq server"))?;
        self.enabled = true;
        for vcpu in 0..nr as usize {
            let remote = self.page().and_then(|p| p.slot(vcpu)).map(|s| s.vp_eport()).unwrap_or(0);
            if remote == 0 {
                return Err(ServerError::NoPort { vcpu });
            }
            let local = sys
                .evtchn_bind_interdomain(u32::from(domid), remote)
                .map_err(sys_err(format!("binding vCPU {vcpu}'s event channel (remote port {remote})")))?;
            debug!("vCPU {vcpu}: remote port {remote} -> local port {local}");
            self.vcpu_ports.push(local);
            self.port_to_vcpu.insert(local, vcpu);
        }
        if opts.bufioreq {
            let local = sys.evtchn_bind_interdomain(u32::from(domid), info.bufioreq_port).map_err(sys_err(format!(
                "binding the buffered-ioreq event channel (remote port {})",
                info.bufioreq_port
            )))?;
            self.buf_port = Some(local);
        }
        Ok(())
    }

    /// Server id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Target domain.
    pub fn domid(&self) -> u16 {
        self.dm.domid()
    }

    /// Device-model operations on the target domain.
    pub fn dm(&self) -> &DeviceModelOps {
        &self.dm
    }

    /// Number of vCPUs served.
    pub fn nr_vcpus(&self) -> usize {
        self.vcpu_ports.len()
    }

    /// Local event-channel port of each vCPU.
    pub fn vcpu_ports(&self) -> &[u32] {
        &self.vcpu_ports
    }

    /// Local port of the buffered ring.
    pub fn buf_port(&self) -> Option<u32> {
        self.buf_port
    }

    /// The vCPU a local port belongs to.
    pub fn vcpu_for_port(&self, port: u32) -> Option<usize> {
        self.port_to_vcpu.get(&port).copied()
    }

    /// The synchronous ioreq page.
    pub fn page(&self) -> Option<IoreqPage<'_>> {
        self.pages.as_ref().and_then(|r| IoreqPage::new(r, self.sync_offset).ok())
    }

    /// The buffered page.
    pub fn buffered(&self) -> Option<BufferedPage<'_>> {
        let off = self.buf_offset?;
        self.pages.as_ref().and_then(|r| BufferedPage::new(r, off).ok())
    }

    /// Ranges currently claimed.
    pub fn ranges(&self) -> impl Iterator<Item = &IoRange> {
        self.ranges.iter()
    }

    /// Claims a range (idempotent for a range already claimed).
    pub fn map_range(&mut self, r: IoRange) -> Result<(), ServerError> {
        if self.ranges.contains(&r) {
            return Ok(());
        }
        self.dm.map_io_range(self.id, r).map_err(dm_err(format!("claiming {r}")))?;
        self.ranges.insert(r);
        Ok(())
    }

    /// Releases a range previously claimed.
    pub fn unmap_range(&mut self, r: IoRange) -> Result<(), ServerError> {
        if !self.ranges.remove(&r) {
            warn!("releasing {r}, which this server never claimed");
            return Ok(());
        }
        self.dm.unmap_io_range(self.id, r).map_err(dm_err(format!("releasing {r}")))
    }

    /// Disables and destroys the server, unmaps its pages and unbinds its ports. Idempotent; every
    /// step is attempted even if an earlier one fails, and the first error is returned.
    pub fn teardown(&mut self) -> Result<(), ServerError> {
        if self.destroyed {
            return Ok(());
        }
        self.destroyed = true;
        let mut first: Option<ServerError> = None;
        if self.enabled {
            if let Err(e) = self.dm.set_ioreq_server_state(self.id, false) {
                warn!("disabling ioreq server {}: {e}", self.id);
                first.get_or_insert(dm_err("disabling the ioreq server")(e));
            }
            self.enabled = false;
        }
        if let Err(e) = self.dm.destroy_ioreq_server(self.id) {
            warn!("destroying ioreq server {}: {e}", self.id);
            first.get_or_insert(dm_err("destroying the ioreq server")(e));
        }
        self.ranges.clear();
        self.pages = None;
        let sys = self.dm.sys().clone();
        for p in self.vcpu_ports.drain(..).chain(self.buf_port.take()) {
            if let Err(e) = sys.evtchn_unbind(p) {
                warn!("unbinding port {p}: {e}");
                first.get_or_insert(sys_err("unbinding event channels")(e));
            }
        }
        self.port_to_vcpu.clear();
        info!("domain {}: ioreq server {} destroyed", self.dm.domid(), self.id);
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for IoreqServer {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            warn!("tearing down ioreq server on drop: {e}");
        }
    }
}
