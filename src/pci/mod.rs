//! PCI: addresses, configuration space, capabilities, BARs, MSI/MSI-X, and the device trait.

pub mod address;
pub mod bar;
pub mod bridge;
pub mod caps;
pub mod config;
pub mod device;
pub mod msi;
pub mod msix;
pub mod topology;

pub use address::Sbdf;
pub use bar::{BarChange, BarKind, BarMapping, BarSet, BarSpec};
pub use caps::{CapBlock, CapChainBuilder, CapId};
pub use config::{ConfigKind, ConfigSpace, HeaderIds, HeaderType, IntxPin, RegMasks, RegSpec, ResetKind};
pub use device::{FunctionSpec, GenericFunction, PciDevice, PciEffect, PciEffects};
pub use msi::{MsiConfig, MsiMessage};
pub use msix::MsixConfig;
