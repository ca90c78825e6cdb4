//! Typed `XEN_DMOP_*` calls for one target domain, through the [`XenSys`] seam.

use std::sync::Arc;

use thiserror::Error;
use xen_bindings::dm_op::*;
use xen_bindings::sys::{SysError, XenSys};

use crate::device::IoRange;

/// A failed device-model operation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DmError {
    /// The hypercall failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Xen answered with something that does not decode.
    #[error("dm_op {op} answer could not be decoded: {why}")]
    BadAnswer {
        /// Op number.
        op: u32,
        /// Reason.
        why: String,
    },
}

/// Device-model operations on one domain.
#[derive(Clone)]
pub struct DeviceModelOps {
    sys: Arc<dyn XenSys>,
    domid: u16,
}

impl std::fmt::Debug for DeviceModelOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceModelOps(dom{})", self.domid)
    }
}

impl DeviceModelOps {
    /// Operations on `domid`.
    pub fn new(sys: Arc<dyn XenSys>, domid: u16) -> Self {
        Self { sys, domid }
    }

    /// The target domain.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// The seam.
    pub fn sys(&self) -> &Arc<dyn XenSys> {
        &self.sys
    }

    /// Issues `op` with optional extra buffers and returns the op as Xen wrote it back.
    pub fn call(&self, op: DmOp, extra: &mut [&mut [u8]]) -> Result<DmOp, DmError> {
        let mut hdr = op.encode();
        let code = hdr.op;
        {
            let h: &mut [u8] = bytemuck::bytes_of_mut(&mut hdr);
            let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(1 + extra.len());
            bufs.push(h);
            for b in extra.iter_mut() {
                bufs.push(b);
            }
            self.sys.dm_op(self.domid, &mut bufs)?;
        }
        DmOp::decode(bytemuck::bytes_of(&hdr)).map_err(|e| DmError::BadAnswer { op: code, why: e.to_string() })
    }

    /// `create_ioreq_server`; returns the server id.
    pub fn create_ioreq_server(&self, handle_bufioreq: u8) -> Result<u16, DmError> {
        match self
            .call(DmOp::CreateIoreqServer(CreateIoreqServer { handle_bufioreq, ..Default::default() }), &mut [])?
        {
            DmOp::CreateIoreqServer(c) => Ok(c.id),
            other => Err(DmError::BadAnswer { op: XEN_DMOP_CREATE_IOREQ_SERVER, why: format!("{other:?}") }),
        }
    }

    /// `get_ioreq_server_info` with `XEN_DMOP_no_gfns`; returns the buffered-ioreq port.
    pub fn get_ioreq_server_info(&self, id: u16) -> Result<GetIoreqServerInfo, DmError> {
        let q = GetIoreqServerInfo { id, flags: XEN_DMOP_NO_GFNS, ..Default::default() };
        match self.call(DmOp::GetIoreqServerInfo(q), &mut [])? {
            DmOp::GetIoreqServerInfo(i) => Ok(i),
            other => Err(DmError::BadAnswer { op: XEN_DMOP_GET_IOREQ_SERVER_INFO, why: format!("{other:?}") }),
        }
    }

    /// `map_io_range_to_ioreq_server`.
    pub fn map_io_range(&self, id: u16, r: IoRange) -> Result<(), DmError> {
        let p = IoreqServerRange { id, pad: 0, type_: r.kind.raw(), start: r.start, end: r.end };
        self.call(DmOp::MapIoRange(p), &mut []).map(|_| ())
    }

    /// `unmap_io_range_from_ioreq_server`.
    pub fn unmap_io_range(&self, id: u16, r: IoRange) -> Result<(), DmError> {
        let p = IoreqServerRange { id, pad: 0, type_: r.kind.raw(), start: r.start, end: r.end };
        self.call(DmOp::UnmapIoRange(p), &mut []).map(|_| ())
    }

    /// `set_ioreq_server_state`.
    pub fn set_ioreq_server_state(&self, id: u16, enabled: bool) -> Result<(), DmError> {
        self.call(DmOp::SetIoreqServerState(SetIoreqServerState { id, enabled: u8::from(enabled), pad: 0 }), &mut [])
            .map(|_| ())
    }

    /// `destroy_ioreq_server`.
    pub fn destroy_ioreq_server(&self, id: u16) -> Result<(), DmError> {
        self.call(DmOp::DestroyIoreqServer(DestroyIoreqServer { id, pad: 0 }), &mut []).map(|_| ())
    }

    /// `set_pci_intx_level`.
    pub fn set_pci_intx_level(&self, device: u8, intx: u8, level: bool) -> Result<(), DmError> {
        let p = SetPciIntxLevel { domain: 0, bus: 0, device, intx, level: u8::from(level) };
        self.call(DmOp::SetPciIntxLevel(p), &mut []).map(|_| ())
    }

    /// `set_isa_irq_level`.
    pub fn set_isa_irq_level(&self, isa_irq: u8, level: bool) -> Result<(), DmError> {
        self.call(DmOp::SetIsaIrqLevel(SetIsaIrqLevel { isa_irq, level: u8::from(level) }), &mut []).map(|_| ())
    }

    /// `set_pci_link_route` (isa_irq 0 disables the link).
    pub fn set_pci_link_route(&self, link: u8, isa_irq: u8) -> Result<(), DmError> {
        self.call(DmOp::SetPciLinkRoute(SetPciLinkRoute { link, isa_irq }), &mut []).map(|_| ())
    }

    /// `inject_msi`.
    pub fn inject_msi(&self, addr: u64, data: u32) -> Result<(), DmError> {
        self.call(DmOp::InjectMsi(InjectMsi { data, pad: 0, addr }), &mut []).map(|_| ())
    }

    /// `modified_memory` for `(first_pfn, nr)` extents.
    pub fn modified_memory(&self, extents: &[(u64, u32)]) -> Result<(), DmError> {
        let ext: Vec<ModifiedMemoryExtent> =
            extents.iter().map(|(pfn, nr)| ModifiedMemoryExtent { nr: *nr, pad: 0, first_pfn: *pfn }).collect();
        let mut bytes: Vec<u8> = bytemuck::cast_slice(&ext).to_vec();
        let n = u32::try_from(ext.len()).unwrap_or(u32::MAX);
        self.call(DmOp::ModifiedMemory(ModifiedMemory { nr_extents: n, opaque: 0 }), &mut [&mut bytes]).map(|_| ())
    }

    /// `remote_shutdown` with a `SHUTDOWN_*` reason.
    pub fn remote_shutdown(&self, reason: u32) -> Result<(), DmError> {
        self.call(DmOp::RemoteShutdown(RemoteShutdown { reason }), &mut []).map(|_| ())
    }

    /// `relocate_memory`.
    pub fn relocate_memory(&self, size: u32, src_gfn: u64, dst_gfn: u64) -> Result<(), DmError> {
        self.call(DmOp::RelocateMemory(RelocateMemory { size, pad: 0, src_gfn, dst_gfn }), &mut []).map(|_| ())
    }

    /// `nr_vcpus` (Xen >= 4.15).
    pub fn nr_vcpus(&self) -> Result<u32, DmError> {
        match self.call(DmOp::NrVcpus(NrVcpus::default()), &mut [])? {
            DmOp::NrVcpus(n) => Ok(n.vcpus),
            other => Err(DmError::BadAnswer { op: XEN_DMOP_NR_VCPUS, why: format!("{other:?}") }),
        }
    }
}
