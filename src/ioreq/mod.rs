//! The ioreq protocol engine: request validation and the per-vCPU / buffered dispatch.

pub mod decode;
pub mod engine;

pub use decode::{DecodeError, Decoded, Dir, IoAccess, Space};
pub use engine::{Engine, EngineError, Stats};
