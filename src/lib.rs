//! q35dm: a Q35 / PCIe device model for Xen HVM guests.
//!
//! See ARCHITECTURE.md for the code map. Everything guest-facing is in this library; the
//! `q35dm` binary (src/main.rs) only parses the command line and wires the pieces together.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod aer_inbox;
pub mod app;
pub mod bus;
pub mod cmdline;
pub mod device;
pub mod devices;
pub mod ioreq;
pub mod jail;
pub mod logging;
pub mod machine;
pub mod memory;
pub mod monitor;
pub mod passthrough;
pub mod pci;
pub mod pcie;
pub mod runtime;
pub mod sim;
pub mod state;
pub mod vm;
pub mod xen;
pub mod xenstore;
pub mod xsctl;
