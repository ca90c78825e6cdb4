//! PCI: addresses, configuration space, capabilities, BARs, MSI/MSI-X, and the device trait.

pub mod address;
pub mod bar;
pub mod caps;
pub mod config;
pub mod device;
pub mod msi;
pub mod msix;

pub use address::Sbdf;
