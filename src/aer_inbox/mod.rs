//! Host AER forwarding, guest side: the AER inbox.
//!
//! `q35dm-aerd` (toolstack-hooks/aerd) watches the host kernel's `ras:aer_event` tracepoint
//! and queues every error of a host function passed through to this guest in xenstore, under
//! this device model's node; this module consumes that queue, translates each host error into
//! the guest's view and injects it with the same propagation as an operator's
//! `pcie_aer_inject_error` (device → ports → root port status, source ID, MSI).
//!
//! - Transport ([`record`] has the schema): [`start`] allocates an unbound event-channel port
//!   for dom0 (`IOCTL_EVTCHN_BIND_UNBOUND_PORT`, remote domain 0) and publishes it with a fresh
//!   `epoch` in `/local/domain/0/device-model/<domid>/aer/`. aerd binds to it, adds records
//!   under `aer/queue/<seq>` in a transaction, then notifies. The inbox thread wakes on the
//!   event (and rescans every [`InboxConfig::scan_interval`] anyway), consumes records in
//!   sequence order, injects them, and removes them while raising `aer/ack` in one transaction.
//!   Records stay until acknowledged, so nothing is lost when q35dm restarts (a new epoch tells
//!   aerd to re-bind and notify again; the queue is consumed from `ack`) or aerd restarts (it
//!   continues from `aer/next-seq`). Delivery is at-least-once: a crash between injecting and
//!   acknowledging replays that batch.
//! - Translation ([`translate`]): host SBDF → guest function through a [`HostFunctionMap`] (the
//!   passthrough code implements it); status bits per the guest's masks and severity; header
//!   log rewritten (IDs, BAR addresses).
//! - Storms ([`storm`]): a token bucket per host function; the excess is collapsed into a
//!   counted summary per second (logged, and injected once with the union of its bits).
//! - Recovery: a guest Secondary Bus Reset on a port above a passed-through function, or an
//!   FLR of it, resets the host function through [`HostFunctionMap::reset_host_function`] —
//!   only if libxl's `/libxl/pci/<SSSS-BB-DD-F>/domid` says it belongs to this domain.
//!
//! The inbox needs its own event-channel handle (a second `/dev/xen/evtchn` open): ports on the
//! ioreq engine's handle would be read by the engine's loop.

pub mod consumer;
pub mod record;
pub mod storm;
pub mod translate;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use xen_bindings::sys::{SysError, XenSys};

use crate::machine::Machine;
use crate::runtime::LoopHandle;
use crate::xenstore::{Xenstore, XsError};

pub use consumer::{Handle, InboxStats};
pub use record::{AerRecord, HostAerEvent, HostSeverity, RecordError};
pub use storm::{StormConfig, StormLimiter, Summary, Verdict};
pub use translate::{BarWindow, GuestTarget, HostFunctionMap, TranslateError, Translated};

/// Inbox parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InboxConfig {
    /// Rescan the queue at least this often (covers a lost notification).
    pub scan_interval: Duration,
    /// Records consumed per transaction.
    pub max_batch: usize,
    /// Storm control.
    pub storm: StormConfig,
}

impl Default for InboxConfig {
    /// Rescan every second, 128 records per batch, default storm control.
    fn default() -> Self {
        Self { scan_interval: Duration::from_secs(1), max_batch: 128, storm: StormConfig::default() }
    }
}

/// Why the inbox could not start.
#[derive(Debug, Error)]
pub enum InboxError {
    /// Allocating the event channel failed.
    #[error("AER inbox of domain {domid}: allocating the dom0 event channel: {source}")]
    Evtchn {
        /// The guest.
        domid: u16,
        /// The seam error.
        source: SysError,
    },
    /// Publishing the inbox in xenstore failed.
    #[error("AER inbox of domain {domid}: publishing {path}: {source}")]
    Xenstore {
        /// The guest.
        domid: u16,
        /// The node.
        path: String,
        /// The client error.
        source: XsError,
    },
    /// The event loop is gone.
    #[error("AER inbox of domain {0}: the device-model event loop is not running")]
    LoopGone(u16),
    /// The thread could not be started.
    #[error("AER inbox of domain {domid}: starting its thread: {source}")]
    Thread {
        /// The guest.
        domid: u16,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Starts the AER inbox of `domid` with default parameters: allocates and publishes the event
/// channel, installs the reset hook on the board, and starts the consumer thread. `evtchn`
/// must be a handle of its own (not the ioreq engine's). Stop it with [`Handle::stop`] (or by
/// dropping the handle).
pub fn start(
    xs: Arc<Xenstore>,
    evtchn: Arc<dyn XenSys>,
    domid: u16,
    handle: LoopHandle<Machine>,
    map: Box<dyn HostFunctionMap>,
) -> Result<Handle, InboxError> {
    consumer::start(xs, evtchn, domid, handle, map, InboxConfig::default())
}

/// [`start`] with explicit parameters.
pub fn start_with(
    xs: Arc<Xenstore>,
    evtchn: Arc<dyn XenSys>,
    domid: u16,
    handle: LoopHandle<Machine>,
    map: Box<dyn HostFunctionMap>,
    cfg: InboxConfig,
) -> Result<Handle, InboxError> {
    consumer::start(xs, evtchn, domid, handle, map, cfg)
}
