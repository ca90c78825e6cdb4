//! A pure-Rust xenstore client (no libxenstore).
//!
//! Speaks the xenstore wire protocol (`xen/include/public/io/xs_wire.h`, via
//! [`xen_bindings::xs_wire`]) over xenstored's unix socket or the `/dev/xen/xenbus` device, tried
//! in that order like libxenstore's `xs_open`. [`Xenstore`] offers read, write, mkdir, rm,
//! directory, permissions, watches (events on channels), transactions with a retrying helper and
//! `GET_DOMAIN_PATH`; it may be used from many threads at once and survives a xenstored restart
//! (see [`client`] for the concurrency and reconnect design).
//!
//! ```no_run
//! use q35dm::xenstore::Xenstore;
//! # fn main() -> Result<(), q35dm::xenstore::XsError> {
//! let xs = Xenstore::open()?;
//! let state = xs.watch("/local/domain/0/device-model/5/command", "dm-command")?;
//! xs.transaction(|tx| tx.write("/local/domain/0/device-model/5/state", "running"))?;
//! let _initial = state.recv();
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod error;
pub mod path;
pub mod perms;
pub mod wire;

pub use client::{Endpoint, Options, ReconnectPolicy, Transaction, Watch, WatchEvent, Xenstore};
pub use error::{ProtocolError, XsError};
pub use path::{validate_path, PathError, PathUse};
pub use perms::{Access, Perm, Permissions};
