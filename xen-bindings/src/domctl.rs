//! `XEN_DOMCTL_*` domain-control operations a device model needs for PCI passthrough.
//!
//! Mirrors `xen/include/public/domctl.h` (MIT). These are what libxenctrl's
//! `xc_domain_memory_mapping`, `xc_domain_ioport_mapping`, `xc_domain_bind_pt_irq`,
//! `xc_domain_update_msi_irq` and the `xc_domain_*_permission` calls issue, through
//! `IOCTL_PRIVCMD_HYPERCALL` with hypercall [`crate::hypercall::HYPERVISOR_DOMCTL`] and a pointer to
//! one [`XenDomctl`] (`struct xen_domctl`) as the only argument. Xen copies the whole struct back
//! afterwards.
//!
//! The domctl ABI is unstable: `interface_version` must equal the hypervisor's
//! `XEN_DOMCTL_INTERFACE_VERSION` exactly or Xen fails the call with -EACCES before looking at
//! anything else. [`DomctlVersion`] lists the versions we know; a caller probes with
//! `XEN_DOMCTL_getdomaininfo` for each of [`DomctlVersion::all`] and keeps the first one that does
//! not fail with EACCES. The sub-structures here are the 4.17 (0x15) layouts, which
//! `tests/c_layout.rs` checks against the installed headers; later versions were not checked.

use bytemuck::{Pod, Zeroable};
use thiserror::Error;

/// `XEN_DOMCTL_getdomaininfo` (domctl.h).
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// `XEN_DOMCTL_irq_permission` (domctl.h).
pub const XEN_DOMCTL_IRQ_PERMISSION: u32 = 19;
/// `XEN_DOMCTL_iomem_permission` (domctl.h).
pub const XEN_DOMCTL_IOMEM_PERMISSION: u32 = 20;
/// `XEN_DOMCTL_ioport_permission` (domctl.h).
pub const XEN_DOMCTL_IOPORT_PERMISSION: u32 = 21;
/// `XEN_DOMCTL_bind_pt_irq` (domctl.h).
pub const XEN_DOMCTL_BIND_PT_IRQ: u32 = 38;
/// `XEN_DOMCTL_memory_mapping` (domctl.h).
pub const XEN_DOMCTL_MEMORY_MAPPING: u32 = 39;
/// `XEN_DOMCTL_ioport_mapping` (domctl.h).
pub const XEN_DOMCTL_IOPORT_MAPPING: u32 = 40;
/// `XEN_DOMCTL_unbind_pt_irq` (domctl.h).
pub const XEN_DOMCTL_UNBIND_PT_IRQ: u32 = 48;

/// `DPCI_ADD_MAPPING` (domctl.h): `add_mapping` value of memory_mapping / ioport_mapping.
pub const DPCI_ADD_MAPPING: u32 = 1;
/// `DPCI_REMOVE_MAPPING` (domctl.h).
pub const DPCI_REMOVE_MAPPING: u32 = 0;

/// `PT_IRQ_TYPE_PCI` (`enum pt_irq_type`, domctl.h): INTx of a passed-through device.
pub const PT_IRQ_TYPE_PCI: u32 = 0;
/// `PT_IRQ_TYPE_ISA` (domctl.h).
pub const PT_IRQ_TYPE_ISA: u32 = 1;
/// `PT_IRQ_TYPE_MSI` (domctl.h): `machine_irq` is the pirq, the guest vector is in `u.msi`.
pub const PT_IRQ_TYPE_MSI: u32 = 2;
/// `PT_IRQ_TYPE_MSI_TRANSLATE` (domctl.h).
pub const PT_IRQ_TYPE_MSI_TRANSLATE: u32 = 3;
/// `PT_IRQ_TYPE_SPI` (domctl.h): Arm only.
pub const PT_IRQ_TYPE_SPI: u32 = 4;

/// `XEN_DOMCTL_VMSI_X86_DEST_ID_MASK` (domctl.h): destination APIC id in `gflags`.
pub const XEN_DOMCTL_VMSI_X86_DEST_ID_MASK: u32 = 0x00_00ff;
/// `XEN_DOMCTL_VMSI_X86_RH_MASK` (domctl.h): redirection hint.
pub const XEN_DOMCTL_VMSI_X86_RH_MASK: u32 = 0x00_0100;
/// `XEN_DOMCTL_VMSI_X86_DM_MASK` (domctl.h): destination mode (1 = logical).
pub const XEN_DOMCTL_VMSI_X86_DM_MASK: u32 = 0x00_0200;
/// `XEN_DOMCTL_VMSI_X86_DELIV_MASK` (domctl.h): delivery mode (bits 12-14).
pub const XEN_DOMCTL_VMSI_X86_DELIV_MASK: u32 = 0x00_7000;
/// `XEN_DOMCTL_VMSI_X86_TRIG_MASK` (domctl.h): trigger mode (1 = level).
pub const XEN_DOMCTL_VMSI_X86_TRIG_MASK: u32 = 0x00_8000;
/// `XEN_DOMCTL_VMSI_X86_UNMASKED` (domctl.h): the guest has the vector unmasked.
pub const XEN_DOMCTL_VMSI_X86_UNMASKED: u32 = 0x01_0000;

/// `XEN_DOMINF_dying` (domctl.h): bit of `xen_domctl_getdomaininfo.flags`.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_hvm_guest` (domctl.h).
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `XEN_DOMINF_shutdown` (domctl.h).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused` (domctl.h).
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_blocked` (domctl.h).
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `XEN_DOMINF_running` (domctl.h).
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `XEN_DOMINF_shutdownshift` (domctl.h): the guest's shutdown code sits at this shift.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `XEN_DOMINF_shutdownmask` (domctl.h): mask of the shutdown code after shifting.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;

/// Size of the union `u` of `struct xen_domctl` (its `uint8_t pad[128]` member).
pub const XEN_DOMCTL_UNION_SIZE: usize = 128;

/// A `XEN_DOMCTL_INTERFACE_VERSION` (domctl.h) this crate knows how to speak.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomctlVersion {
    /// 0x15: Xen 4.17 (the version of the Debian 12 headers the layout test uses).
    Xen417 = 0x15,
    /// 0x16: Xen 4.18.
    Xen418 = 0x16,
    /// 0x17: Xen 4.19, 4.20 and 4.21.
    Xen419 = 0x17,
    /// 0x18: Xen 4.22.
    Xen422 = 0x18,
}

impl DomctlVersion {
    /// Every known version, newest first: the probe order.
    pub const ALL: [DomctlVersion; 4] =
        [DomctlVersion::Xen422, DomctlVersion::Xen419, DomctlVersion::Xen418, DomctlVersion::Xen417];

    /// The version of the installed C headers that `tests/c_layout.rs` compares against.
    pub const HEADERS: DomctlVersion = DomctlVersion::Xen417;

    /// Every known version, newest first: the order in which to probe a hypervisor.
    pub fn all() -> &'static [DomctlVersion] {
        &Self::ALL
    }

    /// The `interface_version` value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// Parses an `interface_version` value.
    pub fn from_raw(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.raw() == v)
    }

    /// The version a given Xen release speaks (`xl info` / `XENVER_version`), if known.
    pub fn for_xen(major: u32, minor: u32) -> Option<Self> {
        match (major, minor) {
            (4, 17) => Some(DomctlVersion::Xen417),
            (4, 18) => Some(DomctlVersion::Xen418),
            (4, 19..=21) => Some(DomctlVersion::Xen419),
            (4, 22) => Some(DomctlVersion::Xen422),
            _ => None,
        }
    }

    /// The Xen releases that speak this version, for messages.
    pub fn xen_releases(self) -> &'static str {
        match self {
            DomctlVersion::Xen417 => "4.17",
            DomctlVersion::Xen418 => "4.18",
            DomctlVersion::Xen419 => "4.19-4.21",
            DomctlVersion::Xen422 => "4.22",
        }
    }
}

impl core::fmt::Display for DomctlVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x} (Xen {})", self.raw(), self.xen_releases())
    }
}

/// `struct xen_domctl_memory_mapping` (xen/include/public/domctl.h), 32 bytes: map (or unmap)
/// `nr_mfns` machine frames at `first_mfn` into the guest at `first_gfn`.
///
/// Xen returns 0 when done, a positive count when it made partial progress (call again with the
/// inputs advanced by that many frames), -E2BIG when `nr_mfns` is too large.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MemoryMapping {
    /// First guest frame.
    pub first_gfn: u64,
    /// First machine frame.
    pub first_mfn: u64,
    /// Number of frames (> 0).
    pub nr_mfns: u64,
    /// [`DPCI_ADD_MAPPING`] or [`DPCI_REMOVE_MAPPING`].
    pub add_mapping: u32,
    /// `padding`: must be zero.
    pub padding: u32,
}

impl MemoryMapping {
    /// A mapping request; `add` selects [`DPCI_ADD_MAPPING`] or [`DPCI_REMOVE_MAPPING`].
    pub fn new(first_gfn: u64, first_mfn: u64, nr_mfns: u64, add: bool) -> Self {
        let add_mapping = if add { DPCI_ADD_MAPPING } else { DPCI_REMOVE_MAPPING };
        Self { first_gfn, first_mfn, nr_mfns, add_mapping, padding: 0 }
    }
}

/// `struct xen_domctl_ioport_mapping` (xen/include/public/domctl.h), 16 bytes: let guest ports
/// `first_gport..` reach machine ports `first_mport..` directly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoportMapping {
    /// First guest port.
    pub first_gport: u32,
    /// First machine port.
    pub first_mport: u32,
    /// Number of ports.
    pub nr_ports: u32,
    /// [`DPCI_ADD_MAPPING`] or [`DPCI_REMOVE_MAPPING`].
    pub add_mapping: u32,
}

impl IoportMapping {
    /// A mapping request; `add` selects [`DPCI_ADD_MAPPING`] or [`DPCI_REMOVE_MAPPING`].
    pub fn new(first_gport: u32, first_mport: u32, nr_ports: u32, add: bool) -> Self {
        let add_mapping = if add { DPCI_ADD_MAPPING } else { DPCI_REMOVE_MAPPING };
        Self { first_gport, first_mport, nr_ports, add_mapping }
    }
}

/// `struct xen_domctl_irq_permission` (xen/include/public/domctl.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IrqPermission {
    /// The pirq.
    pub pirq: u32,
    /// 1 = allow, 0 = revoke.
    pub allow_access: u8,
    /// `pad[3]`.
    pub pad: [u8; 3],
}

/// `struct xen_domctl_iomem_permission` (xen/include/public/domctl.h), 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IomemPermission {
    /// First machine frame.
    pub first_mfn: u64,
    /// Number of frames (> 0).
    pub nr_mfns: u64,
    /// Non-zero = allow, 0 = revoke.
    pub allow_access: u8,
    /// Padding inserted by the C compiler.
    pub pad: [u8; 7],
}

/// `struct xen_domctl_ioport_permission` (xen/include/public/domctl.h), 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoportPermission {
    /// First machine port.
    pub first_port: u32,
    /// Number of ports.
    pub nr_ports: u32,
    /// Non-zero = allow, 0 = revoke.
    pub allow_access: u8,
    /// Padding inserted by the C compiler.
    pub pad: [u8; 3],
}

/// The `isa` member of the union in `struct xen_domctl_bind_pt_irq` (domctl.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PtIrqIsa {
    /// Guest ISA IRQ.
    pub isa_irq: u8,
}

/// The `pci` member of the union in `struct xen_domctl_bind_pt_irq` (domctl.h): the guest INTx
/// the machine IRQ is delivered as.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PtIrqPci {
    /// Guest bus (0 on x86 HVM).
    pub bus: u8,
    /// Guest device (0-31).
    pub device: u8,
    /// 0-3 = INTA-INTD.
    pub intx: u8,
}

/// The `msi` member of the union in `struct xen_domctl_bind_pt_irq` (domctl.h), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PtIrqMsi {
    /// Guest vector.
    pub gvec: u8,
    /// Padding inserted by the C compiler.
    pub pad: [u8; 3],
    /// `XEN_DOMCTL_VMSI_X86_*` fields, see [`vmsi_x86_gflags`].
    pub gflags: u32,
    /// Guest physical address of the MSI-X table, 0 for MSI.
    pub gtable: u64,
}

/// The `spi` member of the union in `struct xen_domctl_bind_pt_irq` (domctl.h; Arm).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PtIrqSpi {
    /// SPI number (32-1019).
    pub spi: u16,
}

/// Size of the union `u` of `struct xen_domctl_bind_pt_irq`.
pub const BIND_PT_IRQ_UNION_SIZE: usize = 16;

/// `struct xen_domctl_bind_pt_irq` (xen/include/public/domctl.h), 24 bytes, used by both
/// `XEN_DOMCTL_bind_pt_irq` and `XEN_DOMCTL_unbind_pt_irq`.
///
/// The C union `u` (members `isa`, `pci`, `msi`, `spi`) is kept as bytes; build it with the
/// typed constructors and read it back with the `as_*` accessors, which check `irq_type`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BindPtIrq {
    /// Machine IRQ (GSI) for PCI/ISA, the pirq for MSI.
    pub machine_irq: u32,
    /// `PT_IRQ_TYPE_*` (`enum pt_irq_type`).
    pub irq_type: u32,
    /// The union `u`.
    pub u: [u8; BIND_PT_IRQ_UNION_SIZE],
}

fn union_with<T: Pod>(member: &T) -> [u8; BIND_PT_IRQ_UNION_SIZE] {
    let mut u = [0u8; BIND_PT_IRQ_UNION_SIZE];
    let b = bytemuck::bytes_of(member);
    u[..b.len()].copy_from_slice(b);
    u
}

impl BindPtIrq {
    /// `PT_IRQ_TYPE_PCI`: deliver `machine_irq` as INTx `intx` of guest device `bus:device`.
    pub fn new_pci(machine_irq: u32, bus: u8, device: u8, intx: u8) -> Self {
        let u = union_with(&PtIrqPci { bus, device, intx });
        Self { machine_irq, irq_type: PT_IRQ_TYPE_PCI, u }
    }

    /// `PT_IRQ_TYPE_ISA`: deliver `machine_irq` as guest ISA IRQ `isa_irq`.
    pub fn new_isa(machine_irq: u32, isa_irq: u8) -> Self {
        Self { machine_irq, irq_type: PT_IRQ_TYPE_ISA, u: union_with(&PtIrqIsa { isa_irq }) }
    }

    /// `PT_IRQ_TYPE_MSI`: deliver `pirq` as guest vector `gvec` (what `xc_domain_update_msi_irq`
    /// builds). `gflags` comes from [`vmsi_x86_gflags`]; `gtable` is the guest address of the
    /// MSI-X table, or 0 for MSI.
    pub fn new_msi(pirq: u32, gvec: u8, gflags: u32, gtable: u64) -> Self {
        let u = union_with(&PtIrqMsi { gvec, pad: [0; 3], gflags, gtable });
        Self { machine_irq: pirq, irq_type: PT_IRQ_TYPE_MSI, u }
    }

    /// `PT_IRQ_TYPE_MSI_TRANSLATE`: as [`BindPtIrq::new_msi`] with the translate type.
    pub fn new_msi_translate(pirq: u32, gvec: u8, gflags: u32, gtable: u64) -> Self {
        Self { irq_type: PT_IRQ_TYPE_MSI_TRANSLATE, ..Self::new_msi(pirq, gvec, gflags, gtable) }
    }

    /// `PT_IRQ_TYPE_SPI` (Arm).
    pub fn new_spi(machine_irq: u32, spi: u16) -> Self {
        Self { machine_irq, irq_type: PT_IRQ_TYPE_SPI, u: union_with(&PtIrqSpi { spi }) }
    }

    fn member<T: Pod>(&self) -> T {
        bytemuck::pod_read_unaligned(&self.u[..core::mem::size_of::<T>()])
    }

    /// The `pci` member, if `irq_type` is `PT_IRQ_TYPE_PCI`.
    pub fn as_pci(&self) -> Option<PtIrqPci> {
        (self.irq_type == PT_IRQ_TYPE_PCI).then(|| self.member())
    }

    /// The `isa` member, if `irq_type` is `PT_IRQ_TYPE_ISA`.
    pub fn as_isa(&self) -> Option<PtIrqIsa> {
        (self.irq_type == PT_IRQ_TYPE_ISA).then(|| self.member())
    }

    /// The `msi` member, if `irq_type` is `PT_IRQ_TYPE_MSI` or `PT_IRQ_TYPE_MSI_TRANSLATE`.
    pub fn as_msi(&self) -> Option<PtIrqMsi> {
        matches!(self.irq_type, PT_IRQ_TYPE_MSI | PT_IRQ_TYPE_MSI_TRANSLATE).then(|| self.member())
    }

    /// The `spi` member, if `irq_type` is `PT_IRQ_TYPE_SPI`.
    pub fn as_spi(&self) -> Option<PtIrqSpi> {
        (self.irq_type == PT_IRQ_TYPE_SPI).then(|| self.member())
    }
}

/// Packs the `gflags` of a `PT_IRQ_TYPE_MSI` binding from the fields of an x86 MSI message, using
/// the `XEN_DOMCTL_VMSI_X86_*` masks (domctl.h): destination id, redirection hint, destination
/// mode (logical), delivery mode (0-7), trigger mode (level) and the guest's mask state.
pub fn vmsi_x86_gflags(
    dest_id: u8,
    redirection_hint: bool,
    dest_mode_logical: bool,
    delivery_mode: u8,
    level_triggered: bool,
    unmasked: bool,
) -> u32 {
    let bit = |b: bool, mask: u32| if b { mask } else { 0 };
    (u32::from(dest_id) & XEN_DOMCTL_VMSI_X86_DEST_ID_MASK)
        | bit(redirection_hint, XEN_DOMCTL_VMSI_X86_RH_MASK)
        | bit(dest_mode_logical, XEN_DOMCTL_VMSI_X86_DM_MASK)
        | ((u32::from(delivery_mode) << XEN_DOMCTL_VMSI_X86_DELIV_MASK.trailing_zeros())
            & XEN_DOMCTL_VMSI_X86_DELIV_MASK)
        | bit(level_triggered, XEN_DOMCTL_VMSI_X86_TRIG_MASK)
        | bit(unmasked, XEN_DOMCTL_VMSI_X86_UNMASKED)
}

/// The first 8 bytes of `struct xen_domctl_getdomaininfo` (xen/include/public/domctl.h): the
/// only part a device model reads. The rest of the struct differs between versions and is not
/// mirrored; the sizeof of this prefix is therefore not a C sizeof.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GetDomainInfoHead {
    /// OUT: the domain (also echoed in `xen_domctl.domain`).
    pub domain: u16,
    /// `pad1`.
    pub pad1: u16,
    /// OUT: `XEN_DOMINF_*`.
    pub flags: u32,
}

/// `struct xen_domctl` / `xen_domctl_t` (xen/include/public/domctl.h), 144 bytes: the header
/// (`cmd`, `interface_version`, `domain`, `_pad[3]`) and the union `u`, kept as its 128 bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// `XEN_DOMCTL_INTERFACE_VERSION` of the hypervisor, see [`DomctlVersion`].
    pub interface_version: u32,
    /// Target domain.
    pub domain: u16,
    /// `_pad[3]`.
    pub pad: [u16; 3],
    /// The union `u`.
    pub u: [u8; XEN_DOMCTL_UNION_SIZE],
}

impl Default for XenDomctl {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl XenDomctl {
    /// Reads the union as `T` (a sub-structure such as [`MemoryMapping`] or
    /// [`GetDomainInfoHead`]); `None` if `T` is larger than the union.
    pub fn payload<T: Pod>(&self) -> Option<T> {
        self.u.get(..core::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned)
    }

    /// Writes `member` at the start of the union (the rest is left alone); `false` if it does not
    /// fit. The simulated hypervisor answers `getdomaininfo` with this.
    pub fn set_payload<T: Pod>(&mut self, member: &T) -> bool {
        let b = bytemuck::bytes_of(member);
        match self.u.get_mut(..b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                true
            }
            None => false,
        }
    }
}

/// The domctl operations this crate mirrors, with their sub-structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomctlPayload {
    /// `XEN_DOMCTL_getdomaininfo`: no input; Xen fills `struct xen_domctl_getdomaininfo`.
    GetDomainInfo,
    /// `XEN_DOMCTL_irq_permission`.
    IrqPermission(IrqPermission),
    /// `XEN_DOMCTL_iomem_permission`.
    IomemPermission(IomemPermission),
    /// `XEN_DOMCTL_ioport_permission`.
    IoportPermission(IoportPermission),
    /// `XEN_DOMCTL_bind_pt_irq`.
    BindPtIrq(BindPtIrq),
    /// `XEN_DOMCTL_unbind_pt_irq`.
    UnbindPtIrq(BindPtIrq),
    /// `XEN_DOMCTL_memory_mapping`.
    MemoryMapping(MemoryMapping),
    /// `XEN_DOMCTL_ioport_mapping`.
    IoportMapping(IoportMapping),
}

impl DomctlPayload {
    /// The `XEN_DOMCTL_*` command number.
    pub fn cmd(&self) -> u32 {
        match self {
            DomctlPayload::GetDomainInfo => XEN_DOMCTL_GETDOMAININFO,
            DomctlPayload::IrqPermission(_) => XEN_DOMCTL_IRQ_PERMISSION,
            DomctlPayload::IomemPermission(_) => XEN_DOMCTL_IOMEM_PERMISSION,
            DomctlPayload::IoportPermission(_) => XEN_DOMCTL_IOPORT_PERMISSION,
            DomctlPayload::BindPtIrq(_) => XEN_DOMCTL_BIND_PT_IRQ,
            DomctlPayload::UnbindPtIrq(_) => XEN_DOMCTL_UNBIND_PT_IRQ,
            DomctlPayload::MemoryMapping(_) => XEN_DOMCTL_MEMORY_MAPPING,
            DomctlPayload::IoportMapping(_) => XEN_DOMCTL_IOPORT_MAPPING,
        }
    }
}

/// The C name of a `XEN_DOMCTL_*` command this crate mirrors, for error messages.
pub fn domctl_name(cmd: u32) -> Option<&'static str> {
    Some(match cmd {
        XEN_DOMCTL_GETDOMAININFO => "XEN_DOMCTL_getdomaininfo",
        XEN_DOMCTL_IRQ_PERMISSION => "XEN_DOMCTL_irq_permission",
        XEN_DOMCTL_IOMEM_PERMISSION => "XEN_DOMCTL_iomem_permission",
        XEN_DOMCTL_IOPORT_PERMISSION => "XEN_DOMCTL_ioport_permission",
        XEN_DOMCTL_BIND_PT_IRQ => "XEN_DOMCTL_bind_pt_irq",
        XEN_DOMCTL_UNBIND_PT_IRQ => "XEN_DOMCTL_unbind_pt_irq",
        XEN_DOMCTL_MEMORY_MAPPING => "XEN_DOMCTL_memory_mapping",
        XEN_DOMCTL_IOPORT_MAPPING => "XEN_DOMCTL_ioport_mapping",
        _ => return None,
    })
}

/// Builds the `struct xen_domctl` for `payload` on domain `domid`, speaking `version`.
pub fn encode(version: DomctlVersion, domid: u16, payload: DomctlPayload) -> XenDomctl {
    let mut d =
        XenDomctl { cmd: payload.cmd(), interface_version: version.raw(), domain: domid, ..XenDomctl::default() };
    let fits = match &payload {
        DomctlPayload::GetDomainInfo => true,
        DomctlPayload::IrqPermission(p) => d.set_payload(p),
        DomctlPayload::IomemPermission(p) => d.set_payload(p),
        DomctlPayload::IoportPermission(p) => d.set_payload(p),
        DomctlPayload::BindPtIrq(p) | DomctlPayload::UnbindPtIrq(p) => d.set_payload(p),
        DomctlPayload::MemoryMapping(p) => d.set_payload(p),
        DomctlPayload::IoportMapping(p) => d.set_payload(p),
    };
    debug_assert!(fits, "every mirrored sub-structure fits in the 128-byte union");
    d
}

/// A `struct xen_domctl` decoded the way Xen reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedDomctl {
    /// The `interface_version` the caller spoke.
    pub version: DomctlVersion,
    /// Target domain.
    pub domain: u16,
    /// The operation.
    pub payload: DomctlPayload,
}

/// Why a `struct xen_domctl` could not be decoded; [`DomctlDecodeError::errno`] is what Xen would
/// return.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DomctlDecodeError {
    /// The buffer is shorter than `struct xen_domctl` (Xen: -EFAULT from `copy_from_guest`).
    #[error("domctl buffer of {len} bytes is shorter than struct xen_domctl ({need}); Xen returns EFAULT")]
    Short {
        /// Bytes supplied.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An `interface_version` this crate does not know (Xen: -EACCES unless it is its own).
    #[error("domctl interface_version {0:#x} is unknown; Xen returns EACCES unless it is its own")]
    UnknownVersion(u32),
    /// A command this crate does not mirror.
    #[error("domctl command {0} is not mirrored by this crate")]
    UnknownCmd(u32),
}

impl DomctlDecodeError {
    /// The positive errno to fail the hypercall with: Xen's answer for a short buffer or a
    /// foreign version, and ENOSYS (Xen's answer to a command it does not know) for commands
    /// this crate does not mirror.
    pub fn errno(&self) -> i32 {
        match self {
            DomctlDecodeError::Short { .. } => libc::EFAULT,
            DomctlDecodeError::UnknownVersion(_) => libc::EACCES,
            DomctlDecodeError::UnknownCmd(_) => libc::ENOSYS,
        }
    }
}

/// Reads a sub-structure that is known to fit in the union.
fn sub<T: Pod>(d: &XenDomctl) -> T {
    bytemuck::pod_read_unaligned(&d.u[..core::mem::size_of::<T>()])
}

/// Decodes the hypercall buffer of a domctl (the simulated hypervisor's side of [`encode`]).
/// Like Xen, the header `_pad` is not checked.
pub fn decode(buf: &[u8]) -> Result<DecodedDomctl, DomctlDecodeError> {
    let need = core::mem::size_of::<XenDomctl>();
    let bytes = buf.get(..need).ok_or(DomctlDecodeError::Short { len: buf.len(), need })?;
    let d: XenDomctl = bytemuck::pod_read_unaligned(bytes);
    let version =
        DomctlVersion::from_raw(d.interface_version).ok_or(DomctlDecodeError::UnknownVersion(d.interface_version))?;
    let payload = match d.cmd {
        XEN_DOMCTL_GETDOMAININFO => DomctlPayload::GetDomainInfo,
        XEN_DOMCTL_IRQ_PERMISSION => DomctlPayload::IrqPermission(sub(&d)),
        XEN_DOMCTL_IOMEM_PERMISSION => DomctlPayload::IomemPermission(sub(&d)),
        XEN_DOMCTL_IOPORT_PERMISSION => DomctlPayload::IoportPermission(sub(&d)),
        XEN_DOMCTL_BIND_PT_IRQ => DomctlPayload::BindPtIrq(sub(&d)),
        XEN_DOMCTL_UNBIND_PT_IRQ => DomctlPayload::UnbindPtIrq(sub(&d)),
        XEN_DOMCTL_MEMORY_MAPPING => DomctlPayload::MemoryMapping(sub(&d)),
        XEN_DOMCTL_IOPORT_MAPPING => DomctlPayload::IoportMapping(sub(&d)),
        other => return Err(DomctlDecodeError::UnknownCmd(other)),
    };
    Ok(DecodedDomctl { version, domain: d.domain, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<XenDomctl>(), 144);
        assert_eq!(core::mem::align_of::<XenDomctl>(), 8);
        assert_eq!(core::mem::size_of::<BindPtIrq>(), 24);
        assert_eq!(core::mem::size_of::<MemoryMapping>(), 32);
        assert_eq!(core::mem::size_of::<IoportMapping>(), 16);
    }

    #[test]
    fn versions() {
        assert_eq!(DomctlVersion::all()[0], DomctlVersion::Xen422);
        assert_eq!(DomctlVersion::all().last(), Some(&DomctlVersion::Xen417));
        assert!(DomctlVersion::all().windows(2).all(|w| w[0].raw() > w[1].raw()));
        for v in DomctlVersion::all() {
            assert_eq!(DomctlVersion::from_raw(v.raw()), Some(*v));
        }
        assert_eq!(DomctlVersion::from_raw(0x14), None);
        assert_eq!(DomctlVersion::for_xen(4, 17).map(DomctlVersion::raw), Some(0x15));
        assert_eq!(DomctlVersion::for_xen(4, 18).map(DomctlVersion::raw), Some(0x16));
        assert_eq!(DomctlVersion::for_xen(4, 20).map(DomctlVersion::raw), Some(0x17));
        assert_eq!(DomctlVersion::for_xen(4, 22).map(DomctlVersion::raw), Some(0x18));
        assert_eq!(DomctlVersion::for_xen(4, 16), None);
        assert_eq!(DomctlVersion::Xen419.to_string(), "0x17 (Xen 4.19-4.21)");
    }

    #[test]
    fn bind_pt_irq_union() {
        let b = BindPtIrq::new_pci(16, 0, 5, 1);
        assert_eq!(&b.u[..4], &[0, 5, 1, 0]);
        assert_eq!(b.as_pci(), Some(PtIrqPci { bus: 0, device: 5, intx: 1 }));
        assert_eq!(b.as_msi(), None);

        let gflags = vmsi_x86_gflags(3, false, true, 1, true, true);
        assert_eq!(gflags, 3 | 0x200 | 0x1000 | 0x8000 | 0x10000);
        let m = BindPtIrq::new_msi(55, 0x41, gflags, 0xfebf_0000);
        let bytes = bytemuck::bytes_of(&m);
        assert_eq!(bytes[8], 0x41);
        assert_eq!(&bytes[12..16], &gflags.to_ne_bytes());
        assert_eq!(&bytes[16..24], &0xfebf_0000u64.to_ne_bytes());
        assert_eq!(m.as_msi().map(|x| (x.gvec, x.gflags, x.gtable)), Some((0x41, gflags, 0xfebf_0000)));
        assert_eq!(BindPtIrq::new_msi_translate(1, 2, 3, 4).as_msi().map(|x| x.gvec), Some(2));
        assert_eq!(BindPtIrq::new_isa(4, 4).as_isa(), Some(PtIrqIsa { isa_irq: 4 }));
        assert_eq!(BindPtIrq::new_spi(40, 40).as_spi(), Some(PtIrqSpi { spi: 40 }));
    }

    #[test]
    fn encode_decode_round_trip() {
        let payloads = [
            DomctlPayload::GetDomainInfo,
            DomctlPayload::MemoryMapping(MemoryMapping::new(0xf0000, 0xe0000, 16, true)),
            DomctlPayload::IoportMapping(IoportMapping::new(0xc000, 0xe000, 0x20, false)),
            DomctlPayload::BindPtIrq(BindPtIrq::new_pci(17, 0, 3, 0)),
            DomctlPayload::UnbindPtIrq(BindPtIrq::new_msi(60, 0x30, 0, 0)),
            DomctlPayload::IrqPermission(IrqPermission { pirq: 17, allow_access: 1, pad: [0; 3] }),
            DomctlPayload::IomemPermission(IomemPermission { first_mfn: 1, nr_mfns: 2, allow_access: 1, pad: [0; 7] }),
            DomctlPayload::IoportPermission(IoportPermission {
                first_port: 1,
                nr_ports: 2,
                allow_access: 1,
                pad: [0; 3],
            }),
        ];
        for p in payloads {
            let d = encode(DomctlVersion::Xen418, 7, p);
            assert_eq!(d.interface_version, 0x16);
            assert!(domctl_name(d.cmd).is_some());
            let got = decode(bytemuck::bytes_of(&d)).expect("decodes");
            assert_eq!(got, DecodedDomctl { version: DomctlVersion::Xen418, domain: 7, payload: p });
        }
    }

    #[test]
    fn decode_rejects_like_xen() {
        let mut d = encode(DomctlVersion::Xen417, 1, DomctlPayload::GetDomainInfo);
        let e = decode(&bytemuck::bytes_of(&d)[..100]).expect_err("short");
        assert_eq!(e.errno(), libc::EFAULT);
        d.interface_version = 0x99;
        assert_eq!(decode(bytemuck::bytes_of(&d)), Err(DomctlDecodeError::UnknownVersion(0x99)));
        d.interface_version = 0x15;
        d.cmd = 1;
        assert_eq!(decode(bytemuck::bytes_of(&d)).map_err(|e| e.errno()), Err(libc::ENOSYS));
    }

    #[test]
    fn getdomaininfo_head() {
        let mut d = encode(DomctlVersion::Xen417, 3, DomctlPayload::GetDomainInfo);
        assert!(d.set_payload(&GetDomainInfoHead { domain: 3, pad1: 0, flags: XEN_DOMINF_HVM_GUEST }));
        let h: GetDomainInfoHead = d.payload().expect("fits");
        assert_eq!(h.flags & XEN_DOMINF_HVM_GUEST, XEN_DOMINF_HVM_GUEST);
        assert!(d.payload::<[u8; 256]>().is_none());
        assert!(!d.set_payload(&[0u8; 256]));
    }
}
