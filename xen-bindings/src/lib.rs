//! The Xen public ABI and the Linux privcmd/evtchn interfaces a user-space device model needs,
//! in pure Rust: no C library is linked and nothing is generated at build time.
//!
//! Every struct cites the C header it mirrors; `tests/c_layout.rs` compiles a C program against
//! the installed Xen headers and compares every size, offset and ioctl number with this crate.
//! This is the only crate of the workspace that contains `unsafe`; each block carries a
//! `// SAFETY:` comment.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod dm_op;
pub mod domctl;
pub mod evtchn;
pub mod fd;
pub mod hypercall;
pub mod ioreq;
pub mod layout;
pub mod mem;
pub mod memory;
pub mod page;
pub mod physdev;
pub mod privcmd;
pub mod record;
pub mod sys;
pub mod xs_wire;
