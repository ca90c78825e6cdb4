//! Linux `/dev/xen/evtchn` ioctls.
//!
//! Mirrors Linux `include/uapi/xen/evtchn.h` as shipped by Xen in
//! `tools/include/xen-sys/Linux/evtchn.h` (installed as `<xen/sys/evtchn.h>`).
//!
//! Semantics: when an event fires the kernel masks the port and queues it; `read()` returns whole
//! `u32` ports; writing a port back unmasks it.

use bytemuck::{Pod, Zeroable};

use crate::privcmd::{ioc, IOC_NONE};

/// `struct ioctl_evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnBindVirq {
    /// VIRQ number.
    pub virq: u32,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnBindInterdomain {
    /// Remote domain.
    pub remote_domain: u32,
    /// Remote port.
    pub remote_port: u32,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnBindUnboundPort {
    /// Domain allowed to bind the other end.
    pub remote_domain: u32,
}

/// `struct ioctl_evtchn_unbind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnUnbind {
    /// Local port.
    pub port: u32,
}

/// `struct ioctl_evtchn_notify`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnNotify {
    /// Local port.
    pub port: u32,
}

/// `struct ioctl_evtchn_restrict_domid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoctlEvtchnRestrictDomid {
    /// Domain.
    pub domid: u16,
}

/// `IOCTL_EVTCHN_BIND_VIRQ`.
pub const IOCTL_EVTCHN_BIND_VIRQ: u32 = ioc(IOC_NONE, b'E', 0, core::mem::size_of::<IoctlEvtchnBindVirq>());
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 =
    ioc(IOC_NONE, b'E', 1, core::mem::size_of::<IoctlEvtchnBindInterdomain>());
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u32 =
    ioc(IOC_NONE, b'E', 2, core::mem::size_of::<IoctlEvtchnBindUnboundPort>());
/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_NONE, b'E', 3, core::mem::size_of::<IoctlEvtchnUnbind>());
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_NONE, b'E', 4, core::mem::size_of::<IoctlEvtchnNotify>());
/// `IOCTL_EVTCHN_RESET`.
pub const IOCTL_EVTCHN_RESET: u32 = ioc(IOC_NONE, b'E', 5, 0);
/// `IOCTL_EVTCHN_RESTRICT_DOMID`.
pub const IOCTL_EVTCHN_RESTRICT_DOMID: u32 = ioc(IOC_NONE, b'E', 6, core::mem::size_of::<IoctlEvtchnRestrictDomid>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_reference() {
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x0004_4502);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
        assert_eq!(IOCTL_EVTCHN_RESET, 0x0000_4505);
        assert_eq!(IOCTL_EVTCHN_RESTRICT_DOMID, 0x0002_4506);
    }
}
