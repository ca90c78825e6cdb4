//! Linux `/dev/xen/privcmd` ioctls.
//!
//! Mirrors Linux `include/uapi/xen/privcmd.h` as shipped by Xen in
//! `tools/include/xen-sys/Linux/privcmd.h` (installed as `<xen/sys/privcmd.h>`).
//! Pointers are kept as `u64` so the structs are plain data; on x86-64 they have the C layout.

use bytemuck::{Pod, Zeroable};

/// `_IOC_NONE`.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)` from `<asm-generic/ioctl.h>`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32 & 0x3fff) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `privcmd_hypercall_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PrivcmdHypercall {
    /// Hypercall number.
    pub op: u64,
    /// Arguments.
    pub arg: [u64; 5],
}

/// `privcmd_mmapbatch_v2_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PrivcmdMmapBatchV2 {
    /// Number of pages.
    pub num: u32,
    /// Target domain.
    pub dom: u16,
    /// Padding inserted by the C compiler.
    pub pad: u16,
    /// Virtual address of the (already mmap'ed) destination.
    pub addr: u64,
    /// `const xen_pfn_t *arr`.
    pub arr: u64,
    /// `int *err`.
    pub err: u64,
}

/// `privcmd_dm_op_buf_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PrivcmdDmOpBuf {
    /// `void *uptr`.
    pub uptr: u64,
    /// `size_t size`.
    pub size: u64,
}

/// `privcmd_dm_op_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PrivcmdDmOp {
    /// Target domain.
    pub dom: u16,
    /// Number of buffers.
    pub num: u16,
    /// Padding inserted by the C compiler.
    pub pad: u32,
    /// `const privcmd_dm_op_buf_t *ubufs`.
    pub ubufs: u64,
}

/// `privcmd_mmap_resource_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PrivcmdMmapResource {
    /// Target domain.
    pub dom: u16,
    /// Padding inserted by the C compiler.
    pub pad: u16,
    /// `XENMEM_resource_*`.
    pub type_: u32,
    /// Resource id (the ioreq server id).
    pub id: u32,
    /// First frame.
    pub idx: u32,
    /// Number of frames.
    pub num: u64,
    /// Virtual address of the (already mmap'ed) destination.
    pub addr: u64,
}

/// `IOCTL_PRIVCMD_HYPERCALL`.
pub const IOCTL_PRIVCMD_HYPERCALL: u32 = ioc(IOC_NONE, b'P', 0, core::mem::size_of::<PrivcmdHypercall>());
/// `IOCTL_PRIVCMD_MMAPBATCH_V2`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 = ioc(IOC_NONE, b'P', 4, core::mem::size_of::<PrivcmdMmapBatchV2>());
/// `IOCTL_PRIVCMD_DM_OP`.
pub const IOCTL_PRIVCMD_DM_OP: u32 = ioc(IOC_NONE, b'P', 5, core::mem::size_of::<PrivcmdDmOp>());
/// `IOCTL_PRIVCMD_RESTRICT` (argument: `domid_t`).
pub const IOCTL_PRIVCMD_RESTRICT: u32 = ioc(IOC_NONE, b'P', 6, core::mem::size_of::<u16>());
/// `IOCTL_PRIVCMD_MMAP_RESOURCE`.
pub const IOCTL_PRIVCMD_MMAP_RESOURCE: u32 = ioc(IOC_NONE, b'P', 7, core::mem::size_of::<PrivcmdMmapResource>());

/// Linux's default `dm_op_max_nr_bufs` module parameter.
pub const DM_OP_MAX_NR_BUFS: usize = 16;
/// Linux's default `dm_op_buf_max_size` module parameter.
pub const DM_OP_BUF_MAX_SIZE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_reference() {
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        assert_eq!(IOCTL_PRIVCMD_DM_OP, 0x0010_5005);
        assert_eq!(IOCTL_PRIVCMD_RESTRICT, 0x0002_5006);
        assert_eq!(IOCTL_PRIVCMD_MMAP_RESOURCE, 0x0020_5007);
    }
}
