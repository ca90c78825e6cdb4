//! Operator interfaces: the HMP (human monitor) command language, served on stdio or a unix
//! socket and through QMP's `human-monitor-command`, and QMP itself.

pub mod hmp;
pub mod qmp;
pub mod server;
