//! `XEN_DMOP_*` device-model operations.
//!
//! Mirrors `xen/include/public/hvm/dm_op.h` (MIT). Each payload struct is the C struct of the same
//! name without the `xen_dm_op_` prefix; [`XenDmOp`] is `struct xen_dm_op` with its 24-byte union
//! kept as bytes. [`DmOp`] is the typed form used by the device model, and [`DmOp::decode`] is
//! what the simulated hypervisor uses to read an operation exactly as Xen would.

use bytemuck::{Pod, Zeroable};
use thiserror::Error;

/// `XEN_DMOP_create_ioreq_server`.
pub const XEN_DMOP_CREATE_IOREQ_SERVER: u32 = 1;
/// `XEN_DMOP_get_ioreq_server_info`.
pub const XEN_DMOP_GET_IOREQ_SERVER_INFO: u32 = 2;
/// `XEN_DMOP_map_io_range_to_ioreq_server`.
pub const XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER: u32 = 3;
/// `XEN_DMOP_unmap_io_range_from_ioreq_server`.
pub const XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER: u32 = 4;
/// `XEN_DMOP_set_ioreq_server_state`.
pub const XEN_DMOP_SET_IOREQ_SERVER_STATE: u32 = 5;
/// `XEN_DMOP_destroy_ioreq_server`.
pub const XEN_DMOP_DESTROY_IOREQ_SERVER: u32 = 6;
/// `XEN_DMOP_track_dirty_vram`.
pub const XEN_DMOP_TRACK_DIRTY_VRAM: u32 = 7;
/// `XEN_DMOP_set_pci_intx_level`.
pub const XEN_DMOP_SET_PCI_INTX_LEVEL: u32 = 8;
/// `XEN_DMOP_set_isa_irq_level`.
pub const XEN_DMOP_SET_ISA_IRQ_LEVEL: u32 = 9;
/// `XEN_DMOP_set_pci_link_route`.
pub const XEN_DMOP_SET_PCI_LINK_ROUTE: u32 = 10;
/// `XEN_DMOP_modified_memory`.
pub const XEN_DMOP_MODIFIED_MEMORY: u32 = 11;
/// `XEN_DMOP_set_mem_type`.
pub const XEN_DMOP_SET_MEM_TYPE: u32 = 12;
/// `XEN_DMOP_inject_event`.
pub const XEN_DMOP_INJECT_EVENT: u32 = 13;
/// `XEN_DMOP_inject_msi`.
pub const XEN_DMOP_INJECT_MSI: u32 = 14;
/// `XEN_DMOP_map_mem_type_to_ioreq_server`.
pub const XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER: u32 = 15;
/// `XEN_DMOP_remote_shutdown`.
pub const XEN_DMOP_REMOTE_SHUTDOWN: u32 = 16;
/// `XEN_DMOP_relocate_memory`.
pub const XEN_DMOP_RELOCATE_MEMORY: u32 = 17;
/// `XEN_DMOP_pin_memory_cacheattr`.
pub const XEN_DMOP_PIN_MEMORY_CACHEATTR: u32 = 18;
/// `XEN_DMOP_set_irq_level` (Arm).
pub const XEN_DMOP_SET_IRQ_LEVEL: u32 = 19;
/// `XEN_DMOP_nr_vcpus` (Xen >= 4.15).
pub const XEN_DMOP_NR_VCPUS: u32 = 20;

/// `XEN_DMOP_IO_RANGE_PORT`.
pub const XEN_DMOP_IO_RANGE_PORT: u32 = 0;
/// `XEN_DMOP_IO_RANGE_MEMORY`.
pub const XEN_DMOP_IO_RANGE_MEMORY: u32 = 1;
/// `XEN_DMOP_IO_RANGE_PCI`.
pub const XEN_DMOP_IO_RANGE_PCI: u32 = 2;
/// `XEN_DMOP_no_gfns` flag of get_ioreq_server_info.
pub const XEN_DMOP_NO_GFNS: u16 = 1;

/// `SHUTDOWN_poweroff` (sched.h).
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot` (sched.h).
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend` (sched.h).
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash` (sched.h).
pub const SHUTDOWN_CRASH: u32 = 3;

/// `__HYPERVISOR_dm_op` (xen.h).
pub const HYPERVISOR_DM_OP: u64 = 41;

/// `XEN_DMOP_PCI_SBDF(s,b,d,f)`: `s << 16 | b << 8 | d << 3 | f`.
pub const fn pci_sbdf(seg: u16, bus: u8, dev: u8, func: u8) -> u32 {
    ((seg as u32) << 16) | ((bus as u32) << 8) | (((dev & 0x1f) as u32) << 3) | ((func & 7) as u32)
}

/// `struct xen_dm_op`: 32 bytes, 8-byte aligned like the C union (it holds `uint64_aligned_t`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct XenDmOp {
    /// `XEN_DMOP_*`.
    pub op: u32,
    /// Must be zero.
    pub pad: u32,
    /// The union `u`.
    pub u: [u8; 24],
}

/// `struct xen_dm_op_create_ioreq_server`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CreateIoreqServer {
    /// IN: `HVM_IOREQSRV_BUFIOREQ_*`.
    pub handle_bufioreq: u8,
    /// Must be zero.
    pub pad: [u8; 3],
    /// OUT: server id.
    pub id: u16,
}

/// `struct xen_dm_op_get_ioreq_server_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GetIoreqServerInfo {
    /// IN: server id.
    pub id: u16,
    /// IN: `XEN_DMOP_no_gfns`.
    pub flags: u16,
    /// OUT: buffered-ioreq event channel port (Xen side).
    pub bufioreq_port: u32,
    /// OUT: gfn of the synchronous page (legacy).
    pub ioreq_gfn: u64,
    /// OUT: gfn of the buffered page (legacy).
    pub bufioreq_gfn: u64,
}

/// `struct xen_dm_op_ioreq_server_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoreqServerRange {
    /// Server id.
    pub id: u16,
    /// Must be zero.
    pub pad: u16,
    /// `XEN_DMOP_IO_RANGE_*`.
    pub type_: u32,
    /// Inclusive start.
    pub start: u64,
    /// Inclusive end.
    pub end: u64,
}

/// `struct xen_dm_op_set_ioreq_server_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetIoreqServerState {
    /// Server id.
    pub id: u16,
    /// 1 = enabled.
    pub enabled: u8,
    /// Must be zero.
    pub pad: u8,
}

/// `struct xen_dm_op_destroy_ioreq_server`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DestroyIoreqServer {
    /// Server id.
    pub id: u16,
    /// Must be zero.
    pub pad: u16,
}

/// `struct xen_dm_op_track_dirty_vram`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TrackDirtyVram {
    /// Number of pages.
    pub nr: u32,
    /// Must be zero.
    pub pad: u32,
    /// First pfn.
    pub first_pfn: u64,
}

/// `struct xen_dm_op_set_pci_intx_level`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetPciIntxLevel {
    /// PCI domain (segment); x86 accepts only 0.
    pub domain: u16,
    /// Bus; x86 accepts only 0.
    pub bus: u8,
    /// Device 0-31.
    pub device: u8,
    /// 0-3 = INTA-INTD.
    pub intx: u8,
    /// 0 or 1.
    pub level: u8,
}

/// `struct xen_dm_op_set_isa_irq_level`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetIsaIrqLevel {
    /// ISA IRQ 0-15.
    pub isa_irq: u8,
    /// 0 or 1.
    pub level: u8,
}

/// `struct xen_dm_op_set_pci_link_route`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetPciLinkRoute {
    /// Link 0-3.
    pub link: u8,
    /// ISA IRQ 1-15, or 0 to disable.
    pub isa_irq: u8,
}

/// `struct xen_dm_op_modified_memory`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ModifiedMemory {
    /// IN: number of extents in buffer 1; OUT: failing index + 1.
    pub nr_extents: u32,
    /// Must be zero.
    pub opaque: u32,
}

/// `struct xen_dm_op_modified_memory_extent` (buffer 1 of modified_memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ModifiedMemoryExtent {
    /// Number of contiguous pages.
    pub nr: u32,
    /// Must be zero.
    pub pad: u32,
    /// First pfn.
    pub first_pfn: u64,
}

/// `struct xen_dm_op_set_mem_type`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetMemType {
    /// Number of pages.
    pub nr: u32,
    /// `hvmmem_type_t`.
    pub mem_type: u16,
    /// Must be zero.
    pub pad: u16,
    /// First pfn.
    pub first_pfn: u64,
}

/// `struct xen_dm_op_inject_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct InjectEvent {
    /// Target vCPU.
    pub vcpuid: u32,
    /// Vector.
    pub vector: u8,
    /// `XEN_DMOP_EVENT_*`.
    pub type_: u8,
    /// Instruction length.
    pub insn_len: u8,
    /// Must be zero.
    pub pad0: u8,
    /// Error code.
    pub error_code: u32,
    /// Must be zero.
    pub pad1: u32,
    /// CR2 for page faults.
    pub cr2: u64,
}

/// `struct xen_dm_op_inject_msi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct InjectMsi {
    /// MSI data.
    pub data: u32,
    /// Must be zero.
    pub pad: u32,
    /// MSI address (0xFEExxxxx).
    pub addr: u64,
}

/// `struct xen_dm_op_map_mem_type_to_ioreq_server`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MapMemTypeToIoreqServer {
    /// Server id.
    pub id: u16,
    /// Memory type (must be `HVMMEM_ioreq_server`).
    pub type_: u16,
    /// `XEN_DMOP_IOREQ_MEM_ACCESS_*`.
    pub flags: u32,
    /// Must be zero.
    pub opaque: u64,
}

/// `struct xen_dm_op_remote_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RemoteShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct xen_dm_op_relocate_memory`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RelocateMemory {
    /// Number of gfns.
    pub size: u32,
    /// Must be zero.
    pub pad: u32,
    /// Source gfn.
    pub src_gfn: u64,
    /// Destination gfn.
    pub dst_gfn: u64,
}

/// `struct xen_dm_op_pin_memory_cacheattr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PinMemoryCacheattr {
    /// Start gfn.
    pub start: u64,
    /// End gfn.
    pub end: u64,
    /// `XEN_DMOP_MEM_CACHEATTR_*`.
    pub type_: u32,
    /// Must be zero.
    pub pad: u32,
}

/// `struct xen_dm_op_set_irq_level` (Arm).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetIrqLevel {
    /// SPI number.
    pub irq: u32,
    /// 0 or 1.
    pub level: u8,
    /// Must be zero.
    pub pad: [u8; 3],
}

/// `struct xen_dm_op_nr_vcpus`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NrVcpus {
    /// OUT: number of vCPUs.
    pub vcpus: u32,
}

/// The kind of an ioreq-server range, with the typed meaning of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IoRangeKind {
    /// `XEN_DMOP_IO_RANGE_PORT`.
    Port,
    /// `XEN_DMOP_IO_RANGE_MEMORY`.
    Memory,
    /// `XEN_DMOP_IO_RANGE_PCI` (bounds are SBDFs).
    Pci,
}

impl IoRangeKind {
    /// The `XEN_DMOP_IO_RANGE_*` value.
    pub fn raw(self) -> u32 {
        match self {
            IoRangeKind::Port => XEN_DMOP_IO_RANGE_PORT,
            IoRangeKind::Memory => XEN_DMOP_IO_RANGE_MEMORY,
            IoRangeKind::Pci => XEN_DMOP_IO_RANGE_PCI,
        }
    }
    /// Parses a `XEN_DMOP_IO_RANGE_*` value.
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            XEN_DMOP_IO_RANGE_PORT => Some(IoRangeKind::Port),
            XEN_DMOP_IO_RANGE_MEMORY => Some(IoRangeKind::Memory),
            XEN_DMOP_IO_RANGE_PCI => Some(IoRangeKind::Pci),
            _ => None,
        }
    }
}

/// A typed device-model operation: one variant per `XEN_DMOP_*` the device model uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmOp {
    /// create_ioreq_server.
    CreateIoreqServer(CreateIoreqServer),
    /// get_ioreq_server_info.
    GetIoreqServerInfo(GetIoreqServerInfo),
    /// map_io_range_to_ioreq_server.
    MapIoRange(IoreqServerRange),
    /// unmap_io_range_from_ioreq_server.
    UnmapIoRange(IoreqServerRange),
    /// set_ioreq_server_state.
    SetIoreqServerState(SetIoreqServerState),
    /// destroy_ioreq_server.
    DestroyIoreqServer(DestroyIoreqServer),
    /// track_dirty_vram (buffer 1: OUT bitmap).
    TrackDirtyVram(TrackDirtyVram),
    /// set_pci_intx_level.
    SetPciIntxLevel(SetPciIntxLevel),
    /// set_isa_irq_level.
    SetIsaIrqLevel(SetIsaIrqLevel),
    /// set_pci_link_route.
    SetPciLinkRoute(SetPciLinkRoute),
    /// modified_memory (buffer 1: extents).
    ModifiedMemory(ModifiedMemory),
    /// set_mem_type.
    SetMemType(SetMemType),
    /// inject_event.
    InjectEvent(InjectEvent),
    /// inject_msi.
    InjectMsi(InjectMsi),
    /// map_mem_type_to_ioreq_server.
    MapMemTypeToIoreqServer(MapMemTypeToIoreqServer),
    /// remote_shutdown.
    RemoteShutdown(RemoteShutdown),
    /// relocate_memory.
    RelocateMemory(RelocateMemory),
    /// pin_memory_cacheattr.
    PinMemoryCacheattr(PinMemoryCacheattr),
    /// set_irq_level (Arm).
    SetIrqLevel(SetIrqLevel),
    /// nr_vcpus.
    NrVcpus(NrVcpus),
}

/// Why a `xen_dm_op` buffer could not be decoded (the errno Xen would return is in the text).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Buffer 0 is shorter than `offsetof(u) + op_size[op]` (Xen: -EFAULT).
    #[error("dm_op buffer of {len} bytes is too short for op {op} (needs {need}); Xen returns EFAULT")]
    Short {
        /// The op number.
        op: u32,
        /// Bytes supplied.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Unknown op (Xen: -EOPNOTSUPP).
    #[error("unknown dm_op {0}; Xen returns EOPNOTSUPP")]
    UnknownOp(u32),
    /// Non-zero `pad` in the header (Xen: -EINVAL).
    #[error("dm_op header pad is {0:#x}, must be 0; Xen returns EINVAL")]
    Pad(u32),
}

fn put<T: Pod>(op: u32, payload: &T) -> XenDmOp {
    let mut u = [0u8; 24];
    let bytes = bytemuck::bytes_of(payload);
    u[..bytes.len()].copy_from_slice(bytes);
    XenDmOp { op, pad: 0, u }
}

fn get<T: Pod>(u: &[u8; 24]) -> T {
    bytemuck::pod_read_unaligned(&u[..core::mem::size_of::<T>()])
}

impl DmOp {
    /// The `XEN_DMOP_*` number.
    pub fn op(&self) -> u32 {
        self.encode().op
    }

    /// Encodes as `struct xen_dm_op` (buffer 0 of the hypercall).
    pub fn encode(&self) -> XenDmOp {
        match self {
            DmOp::CreateIoreqServer(p) => put(XEN_DMOP_CREATE_IOREQ_SERVER, p),
            DmOp::GetIoreqServerInfo(p) => put(XEN_DMOP_GET_IOREQ_SERVER_INFO, p),
            DmOp::MapIoRange(p) => put(XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER, p),
            DmOp::UnmapIoRange(p) => put(XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER, p),
            DmOp::SetIoreqServerState(p) => put(XEN_DMOP_SET_IOREQ_SERVER_STATE, p),
            DmOp::DestroyIoreqServer(p) => put(XEN_DMOP_DESTROY_IOREQ_SERVER, p),
            DmOp::TrackDirtyVram(p) => put(XEN_DMOP_TRACK_DIRTY_VRAM, p),
            DmOp::SetPciIntxLevel(p) => put(XEN_DMOP_SET_PCI_INTX_LEVEL, p),
            DmOp::SetIsaIrqLevel(p) => put(XEN_DMOP_SET_ISA_IRQ_LEVEL, p),
            DmOp::SetPciLinkRoute(p) => put(XEN_DMOP_SET_PCI_LINK_ROUTE, p),
            DmOp::ModifiedMemory(p) => put(XEN_DMOP_MODIFIED_MEMORY, p),
            DmOp::SetMemType(p) => put(XEN_DMOP_SET_MEM_TYPE, p),
            DmOp::InjectEvent(p) => put(XEN_DMOP_INJECT_EVENT, p),
            DmOp::InjectMsi(p) => put(XEN_DMOP_INJECT_MSI, p),
            DmOp::MapMemTypeToIoreqServer(p) => put(XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER, p),
            DmOp::RemoteShutdown(p) => put(XEN_DMOP_REMOTE_SHUTDOWN, p),
            DmOp::RelocateMemory(p) => put(XEN_DMOP_RELOCATE_MEMORY, p),
            DmOp::PinMemoryCacheattr(p) => put(XEN_DMOP_PIN_MEMORY_CACHEATTR, p),
            DmOp::SetIrqLevel(p) => put(XEN_DMOP_SET_IRQ_LEVEL, p),
            DmOp::NrVcpus(p) => put(XEN_DMOP_NR_VCPUS, p),
        }
    }

    /// Size of the payload Xen copies for `op` (`op_size[]` in `xen/arch/x86/hvm/dm.c`).
    pub fn payload_size(op: u32) -> Option<usize> {
        use core::mem::size_of;
        Some(match op {
            XEN_DMOP_CREATE_IOREQ_SERVER => size_of::<CreateIoreqServer>(),
            XEN_DMOP_GET_IOREQ_SERVER_INFO => size_of::<GetIoreqServerInfo>(),
            XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER | XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER => {
                size_of::<IoreqServerRange>()
            }
            XEN_DMOP_SET_IOREQ_SERVER_STATE => size_of::<SetIoreqServerState>(),
            XEN_DMOP_DESTROY_IOREQ_SERVER => size_of::<DestroyIoreqServer>(),
            XEN_DMOP_TRACK_DIRTY_VRAM => size_of::<TrackDirtyVram>(),
            XEN_DMOP_SET_PCI_INTX_LEVEL => size_of::<SetPciIntxLevel>(),
            XEN_DMOP_SET_ISA_IRQ_LEVEL => size_of::<SetIsaIrqLevel>(),
            XEN_DMOP_SET_PCI_LINK_ROUTE => size_of::<SetPciLinkRoute>(),
            XEN_DMOP_MODIFIED_MEMORY => size_of::<ModifiedMemory>(),
            XEN_DMOP_SET_MEM_TYPE => size_of::<SetMemType>(),
            XEN_DMOP_INJECT_EVENT => size_of::<InjectEvent>(),
            XEN_DMOP_INJECT_MSI => size_of::<InjectMsi>(),
            XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER => size_of::<MapMemTypeToIoreqServer>(),
            XEN_DMOP_REMOTE_SHUTDOWN => size_of::<RemoteShutdown>(),
            XEN_DMOP_RELOCATE_MEMORY => size_of::<RelocateMemory>(),
            XEN_DMOP_PIN_MEMORY_CACHEATTR => size_of::<PinMemoryCacheattr>(),
            XEN_DMOP_SET_IRQ_LEVEL => size_of::<SetIrqLevel>(),
            XEN_DMOP_NR_VCPUS => size_of::<NrVcpus>(),
            _ => return None,
        })
    }

    /// Decodes buffer 0 of a dm_op hypercall with Xen's checks (`dm_op()` in
    /// `xen/arch/x86/hvm/dm.c`): length, known op, zero header pad.
    pub fn decode(buf: &[u8]) -> Result<DmOp, DecodeError> {
        let op = buf.get(0..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(u32::MAX);
        let size = Self::payload_size(op).ok_or(DecodeError::UnknownOp(op))?;
        let need = 8 + size;
        if buf.len() < need {
            return Err(DecodeError::Short { op, len: buf.len(), need });
        }
        let mut raw = [0u8; 32];
        let n = buf.len().min(32);
        raw[..n].copy_from_slice(&buf[..n]);
        let hdr: XenDmOp = bytemuck::pod_read_unaligned(&raw);
        if hdr.pad != 0 {
            return Err(DecodeError::Pad(hdr.pad));
        }
        let u = &hdr.u;
        Ok(match op {
            XEN_DMOP_CREATE_IOREQ_SERVER => DmOp::CreateIoreqServer(get(u)),
            XEN_DMOP_GET_IOREQ_SERVER_INFO => DmOp::GetIoreqServerInfo(get(u)),
            XEN_DMOP_MAP_IO_RANGE_TO_IOREQ_SERVER => DmOp::MapIoRange(get(u)),
            XEN_DMOP_UNMAP_IO_RANGE_FROM_IOREQ_SERVER => DmOp::UnmapIoRange(get(u)),
            XEN_DMOP_SET_IOREQ_SERVER_STATE => DmOp::SetIoreqServerState(get(u)),
            XEN_DMOP_DESTROY_IOREQ_SERVER => DmOp::DestroyIoreqServer(get(u)),
            XEN_DMOP_TRACK_DIRTY_VRAM => DmOp::TrackDirtyVram(get(u)),
            XEN_DMOP_SET_PCI_INTX_LEVEL => DmOp::SetPciIntxLevel(get(u)),
            XEN_DMOP_SET_ISA_IRQ_LEVEL => DmOp::SetIsaIrqLevel(get(u)),
            XEN_DMOP_SET_PCI_LINK_ROUTE => DmOp::SetPciLinkRoute(get(u)),
            XEN_DMOP_MODIFIED_MEMORY => DmOp::ModifiedMemory(get(u)),
            XEN_DMOP_SET_MEM_TYPE => DmOp::SetMemType(get(u)),
            XEN_DMOP_INJECT_EVENT => DmOp::InjectEvent(get(u)),
            XEN_DMOP_INJECT_MSI => DmOp::InjectMsi(get(u)),
            XEN_DMOP_MAP_MEM_TYPE_TO_IOREQ_SERVER => DmOp::MapMemTypeToIoreqServer(get(u)),
            XEN_DMOP_REMOTE_SHUTDOWN => DmOp::RemoteShutdown(get(u)),
            XEN_DMOP_RELOCATE_MEMORY => DmOp::RelocateMemory(get(u)),
            XEN_DMOP_PIN_MEMORY_CACHEATTR => DmOp::PinMemoryCacheattr(get(u)),
            XEN_DMOP_SET_IRQ_LEVEL => DmOp::SetIrqLevel(get(u)),
            XEN_DMOP_NR_VCPUS => DmOp::NrVcpus(get(u)),
            other => return Err(DecodeError::UnknownOp(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let ops = [
            DmOp::CreateIoreqServer(CreateIoreqServer { handle_bufioreq: 2, ..Default::default() }),
            DmOp::MapIoRange(IoreqServerRange { id: 3, pad: 0, type_: 2, start: 0x18, end: 0x18 }),
            DmOp::InjectMsi(InjectMsi { data: 0x4041, pad: 0, addr: 0xfee0_0000 }),
            DmOp::NrVcpus(NrVcpus { vcpus: 4 }),
        ];
        for op in ops {
            let bytes = op.encode();
            assert_eq!(DmOp::decode(bytemuck::bytes_of(&bytes)), Ok(op));
        }
    }

    #[test]
    fn decode_rejects_like_xen() {
        let mut hdr = DmOp::NrVcpus(NrVcpus::default()).encode();
        hdr.pad = 1;
        assert_eq!(DmOp::decode(bytemuck::bytes_of(&hdr)), Err(DecodeError::Pad(1)));
        hdr.pad = 0;
        assert!(matches!(DmOp::decode(&bytemuck::bytes_of(&hdr)[..10]), Err(DecodeError::Short { .. })));
        hdr.op = 99;
        assert_eq!(DmOp::decode(bytemuck::bytes_of(&hdr)), Err(DecodeError::UnknownOp(99)));
    }

    #[test]
    fn sbdf_packing() {
        assert_eq!(pci_sbdf(0, 0, 0x1f, 0), 0xf8);
        assert_eq!(pci_sbdf(1, 2, 3, 4), 0x1021c);
    }
}
