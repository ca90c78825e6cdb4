//! Hypercall numbers and reserved domain ids.
//!
//! Mirrors `xen/include/public/xen.h` (MIT) for the hypercalls a device model issues through
//! `IOCTL_PRIVCMD_HYPERCALL` (see [`crate::sys::XenSys::hypercall`]), and the buffer descriptor
//! of the raw `dm_op` hypercall from `xen/include/public/hvm/dm_op.h`.
//!
//! The numbers are the ones C code sees when built with `__XEN_TOOLS__` (or a recent
//! `__XEN_INTERFACE_VERSION__`). Without it `xen.h` maps `__HYPERVISOR_sched_op`,
//! `__HYPERVISOR_event_channel_op` and `__HYPERVISOR_physdev_op` to their pre-3.2 `_compat`
//! numbers (6, 16 and 19), which is never what a dom0 tool wants.

use bytemuck::{Pod, Zeroable};

/// `__HYPERVISOR_memory_op` (xen.h): `XENMEM_*` operations, see [`crate::memory`].
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_sched_op` (xen.h), the non-compat number.
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `__HYPERVISOR_event_channel_op` (xen.h), the non-compat number.
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `__HYPERVISOR_physdev_op` (xen.h), the non-compat number: `PHYSDEVOP_*`, see
/// [`crate::physdev`].
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
/// `__HYPERVISOR_domctl` (xen.h): `XEN_DOMCTL_*`, see [`crate::domctl`].
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `__HYPERVISOR_dm_op` (xen.h); the same constant as [`crate::dm_op::HYPERVISOR_DM_OP`].
pub use crate::dm_op::HYPERVISOR_DM_OP;

/// `DOMID_FIRST_RESERVED` (xen.h): domain ids at or above this are not ordinary domains.
pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
/// `DOMID_SELF` (xen.h): the calling domain.
pub const DOMID_SELF: u16 = 0x7ff0;
/// `DOMID_INVALID` (xen.h). libxendevicemodel probes `IOCTL_PRIVCMD_DM_OP` with it.
pub const DOMID_INVALID: u16 = 0x7ff4;
/// `DOMID_IDLE` (xen.h): the idle domain.
pub const DOMID_IDLE: u16 = 0x7fff;

/// `struct xen_dm_op_buf` / `xen_dm_op_buf_t` (xen/include/public/hvm/dm_op.h): one buffer of
/// the raw `HYPERVISOR_dm_op(domid, nr_bufs, bufs[])` hypercall, 16 bytes on x86-64.
///
/// Device models on Linux do not build these themselves: `IOCTL_PRIVCMD_DM_OP` takes
/// [`crate::privcmd::PrivcmdDmOpBuf`] (same layout) and the kernel builds the hypercall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct XenDmOpBuf {
    /// `XEN_GUEST_HANDLE(void) h`: the buffer address, as seen by the calling domain.
    pub h: u64,
    /// `xen_ulong_t size`.
    pub size: u64,
}

/// The C name of a hypercall number this crate knows, for error messages.
pub fn hypercall_name(op: u64) -> Option<&'static str> {
    Some(match op {
        HYPERVISOR_MEMORY_OP => "__HYPERVISOR_memory_op",
        HYPERVISOR_SCHED_OP => "__HYPERVISOR_sched_op",
        HYPERVISOR_EVENT_CHANNEL_OP => "__HYPERVISOR_event_channel_op",
        HYPERVISOR_PHYSDEV_OP => "__HYPERVISOR_physdev_op",
        HYPERVISOR_DOMCTL => "__HYPERVISOR_domctl",
        HYPERVISOR_DM_OP => "__HYPERVISOR_dm_op",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(HYPERVISOR_DM_OP, 41);
        assert_eq!(hypercall_name(36), Some("__HYPERVISOR_domctl"));
        assert_eq!(hypercall_name(6), None);
        assert_eq!(core::mem::size_of::<XenDmOpBuf>(), 16);
        const { assert!(DOMID_INVALID > DOMID_FIRST_RESERVED && DOMID_SELF == DOMID_FIRST_RESERVED) };
    }
}
