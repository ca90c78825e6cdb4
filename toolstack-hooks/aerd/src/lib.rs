//! `q35dm-aerd`: forwards host PCIe AER errors of passed-through functions to the q35dm device
//! model of the guest that owns them.
//!
//! - Source: a private tracefs instance (`instances/<name>`) with `ras:aer_event` enabled; the
//!   event's `format` file is parsed at run time ([`format`]) and the instance's text
//!   `trace_pipe` is decoded with it ([`trace`], [`tracefs`]). Without the tracepoint (no
//!   tracefs, no CONFIG_PCIEAER, not root) it says so once and polls the sysfs
//!   `aer_dev_correctable` / `aer_dev_nonfatal` / `aer_dev_fatal` counters of the assigned
//!   functions instead ([`sysfs`]; no header log there).
//! - Owner: libxl's `/libxl/pci/<SSSS-BB-DD-F>/domid`; functions of no guest are logged and
//!   ignored ([`owners`]).
//! - Transport: records in the guest's AER inbox in xenstore, one transaction per batch, then a
//!   notification on the inbox's event channel ([`forward`]; the schema is
//!   `q35dm::aer_inbox::record`, documented in toolstack-hooks/README.md).
//!
//! Why the text `trace_pipe` and not `per_cpu/cpuN/trace_pipe_raw`: the kernel merges the
//! per-CPU buffers in timestamp order into one pipe, which is exactly the order the inbox
//! promises the guest; one blocking, pollable file needs no `buffer_percent` tuning and no
//! ring-buffer page decoding; and every value the event carries is recoverable from the text
//! because the decoding tables (severity strings, the status flag names with their bit values,
//! the header array format, the position of each field in the line) are taken from the running
//! kernel's `print fmt`, not hard-coded. The binary layout (offsets/sizes/types) is parsed too
//! ([`format::AerLayout`]) to validate the event and to decode raw records where needed.
//!
//! Module paths here never use `crate::` so that tests can include this library as a module.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod daemon;
pub mod format;
pub mod forward;
pub mod owners;
pub mod sysfs;
pub mod trace;
pub mod tracefs;
