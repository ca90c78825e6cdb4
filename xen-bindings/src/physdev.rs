//! `PHYSDEVOP_*` operations: mapping a machine GSI or MSI of a passed-through device to a pirq of
//! the guest.
//!
//! Mirrors `xen/include/public/physdev.h` (MIT). Issued through `IOCTL_PRIVCMD_HYPERCALL` as
//! `HYPERVISOR_physdev_op(cmd, &arg)` ([`crate::hypercall::HYPERVISOR_PHYSDEV_OP`]); this ABI is
//! stable, unlike domctl.

use bytemuck::{Pod, Zeroable};

/// `PHYSDEVOP_map_pirq` (physdev.h): argument [`PhysdevMapPirq`].
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// `PHYSDEVOP_unmap_pirq` (physdev.h): argument [`PhysdevUnmapPirq`].
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;

/// `MAP_PIRQ_TYPE_MSI` (physdev.h).
pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
/// `MAP_PIRQ_TYPE_GSI` (physdev.h): `index` is the GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
/// `MAP_PIRQ_TYPE_UNKNOWN` (physdev.h).
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
/// `MAP_PIRQ_TYPE_MSI_SEG` (physdev.h): MSI with the PCI segment in the high 16 bits of `bus`.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
/// `MAP_PIRQ_TYPE_MULTI_MSI` (physdev.h): multi-vector MSI; `entry_nr` is the vector count.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// `struct physdev_map_pirq` (xen/include/public/physdev.h), 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PhysdevMapPirq {
    /// Domain that receives the pirq.
    pub domid: u16,
    /// Padding inserted by the C compiler.
    pub pad0: u16,
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub type_: i32,
    /// IN: the GSI for `MAP_PIRQ_TYPE_GSI`; the MSI(-X) entry index, or -1, for MSI types
    /// (ignored for `MULTI_MSI`).
    pub index: i32,
    /// IN: requested pirq, or -1 to let Xen choose. OUT: the pirq.
    pub pirq: i32,
    /// IN: PCI bus; the high 16 bits hold the segment for `MSI_SEG` and `MULTI_MSI`.
    pub bus: i32,
    /// IN: PCI devfn.
    pub devfn: i32,
    /// IN: MSI-X entry number (vector count for `MULTI_MSI`, also OUT there).
    pub entry_nr: i32,
    /// Padding inserted by the C compiler.
    pub pad1: u32,
    /// IN: machine address of the MSI-X table (0 for MSI).
    pub table_base: u64,
}

impl PhysdevMapPirq {
    /// `MAP_PIRQ_TYPE_GSI`: map machine `gsi` to `pirq` of `domid` (pass the GSI itself as `pirq`
    /// for an identity mapping, as libxenctrl does when its caller gives none).
    pub fn new_gsi(domid: u16, gsi: i32, pirq: i32) -> Self {
        Self { domid, type_: MAP_PIRQ_TYPE_GSI, index: gsi, pirq, ..Self::default() }
    }

    /// `MAP_PIRQ_TYPE_MSI_SEG`: map MSI (`table_base` 0) or MSI-X entry `entry_nr` of machine
    /// device `seg:bus:devfn`, letting Xen choose the pirq (`index` and `pirq` -1).
    pub fn new_msi_seg(domid: u16, seg: u16, bus: u8, devfn: u8, entry_nr: i32, table_base: u64) -> Self {
        Self {
            domid,
            type_: MAP_PIRQ_TYPE_MSI_SEG,
            index: -1,
            pirq: -1,
            bus: (i32::from(seg) << 16) | i32::from(bus),
            devfn: i32::from(devfn),
            entry_nr,
            table_base,
            ..Self::default()
        }
    }
}

/// `struct physdev_unmap_pirq` (xen/include/public/physdev.h), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PhysdevUnmapPirq {
    /// Domain that owns the pirq.
    pub domid: u16,
    /// Padding inserted by the C compiler.
    pub pad: u16,
    /// IN: the pirq.
    pub pirq: i32,
}

impl PhysdevUnmapPirq {
    /// Unmaps `pirq` of `domid`.
    pub fn new(domid: u16, pirq: i32) -> Self {
        Self { domid, pad: 0, pirq }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_constructors() {
        assert_eq!(core::mem::size_of::<PhysdevMapPirq>(), 40);
        assert_eq!(core::mem::size_of::<PhysdevUnmapPirq>(), 8);
        let m = PhysdevMapPirq::new_msi_seg(5, 1, 3, 0x10, 2, 0xfeb0_0000);
        assert_eq!((m.bus, m.devfn, m.index, m.pirq), (0x1_0003, 0x10, -1, -1));
        let b = bytemuck::bytes_of(&m);
        assert_eq!(&b[32..40], &0xfeb0_0000u64.to_ne_bytes());
        let g = PhysdevMapPirq::new_gsi(5, 20, 20);
        assert_eq!(&bytemuck::bytes_of(&g)[4..12], &[1, 0, 0, 0, 20, 0, 0, 0]);
    }
}
