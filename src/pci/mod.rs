//! PCI: addresses, configuration space, devices and buses.

pub mod address;

pub use address::Sbdf;
