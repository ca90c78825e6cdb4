//! The Xen side of the device model: device-model operations and the ioreq server, over the
//! [`xen_bindings::sys::XenSys`] seam (real devices or the simulated hypervisor).

pub mod dm;
pub mod server;

pub use dm::{DeviceModelOps, DmError};
pub use server::{IoreqServer, ServerError, ServerOptions};
