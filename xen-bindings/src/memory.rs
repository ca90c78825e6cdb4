//! `XENMEM_acquire_resource`: the hypercall behind `IOCTL_PRIVCMD_MMAP_RESOURCE`.
//!
//! Mirrors `xen/include/public/memory.h` (MIT). A Linux device model never issues this itself:
//! `IOCTL_PRIVCMD_MMAP_RESOURCE` ([`crate::privcmd::PrivcmdMmapResource`]) takes the same
//! `type`/`id`/frame numbers and the kernel builds the hypercall. The struct is here so the
//! simulated hypervisor and the tests speak the real layout.

use bytemuck::{Pod, Zeroable};

/// `XENMEM_acquire_resource` (memory.h): `HYPERVISOR_memory_op(XENMEM_acquire_resource, &arg)`.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `XENMEM_resource_ioreq_server` (memory.h): the pages of an ioreq server; `id` is its id.
pub const XENMEM_RESOURCE_IOREQ_SERVER: u32 = 0;
/// `XENMEM_resource_grant_table` (memory.h).
pub const XENMEM_RESOURCE_GRANT_TABLE: u32 = 1;
/// `XENMEM_resource_vmtrace_buf` (memory.h).
pub const XENMEM_RESOURCE_VMTRACE_BUF: u32 = 2;

/// `XENMEM_resource_ioreq_server_frame_bufioreq` (memory.h): frame 0 is the buffered ioreq page
/// (absent when the server was created with `HVM_IOREQSRV_BUFIOREQ_OFF`).
pub const XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ: u32 = 0;

/// `XENMEM_resource_ioreq_server_frame_ioreq(n)` (memory.h): frame of synchronous ioreq page `n`
/// (Xen hands out only `n = 0`).
pub const fn xenmem_resource_ioreq_server_frame_ioreq(n: u32) -> u32 {
    1 + n
}

/// `struct xen_mem_acquire_resource` (xen/include/public/memory.h), 32 bytes on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct XenMemAcquireResource {
    /// IN: domain whose resource is mapped.
    pub domid: u16,
    /// IN: `XENMEM_resource_*` (a `uint16_t` here, a `__u32` in privcmd).
    pub type_: u16,
    /// IN: type-specific id (the ioreq server id).
    pub id: u32,
    /// IN/OUT: number of frames; with `frame_list` NULL and 0 frames, Xen returns the resource
    /// size here.
    pub nr_frames: u32,
    /// Must be zero (was the `XENMEM_rsrc_acq_caller_owned` output flag in older versions).
    pub pad: u32,
    /// IN: first frame index.
    pub frame: u64,
    /// `XEN_GUEST_HANDLE(xen_pfn_t) frame_list`: address (in the caller's address space) of an
    /// array of `nr_frames` `xen_pfn_t`; 0 for NULL. A PV caller gets MFNs back in it; an HVM or
    /// PVH caller fills in the GFNs where the frames are to appear.
    pub frame_list: u64,
}

impl XenMemAcquireResource {
    /// Acquire `nr_frames` frames of ioreq server `id` of `domid`, starting at `frame`.
    pub fn ioreq_server(domid: u16, id: u16, frame: u32, nr_frames: u32, frame_list: u64) -> Self {
        Self {
            domid,
            type_: XENMEM_RESOURCE_IOREQ_SERVER as u16,
            id: u32::from(id),
            nr_frames,
            pad: 0,
            frame: u64::from(frame),
            frame_list,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_frames() {
        assert_eq!(core::mem::size_of::<XenMemAcquireResource>(), 32);
        assert_eq!(xenmem_resource_ioreq_server_frame_ioreq(0), 1);
        let r = XenMemAcquireResource::ioreq_server(3, 2, XENMEM_RESOURCE_IOREQ_SERVER_FRAME_BUFIOREQ, 2, 0x1000);
        let b = bytemuck::bytes_of(&r);
        assert_eq!(&b[..12], &[3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&b[24..32], &0x1000u64.to_ne_bytes());
    }
}
