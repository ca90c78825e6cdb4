//! PCI Express building blocks, as pure library code over a function's
//! [`ConfigSpace`](crate::pci::config::ConfigSpace):
//!
//! - [`cap`]: the PCI Express Capability (ID 0x10, v2) builder for every function type and typed
//!   accessors for its live bits;
//! - [`slot`]: the native hot-plug slot of a root/downstream port as a state machine that hands
//!   back [`slot::SlotEvents`] as data;
//! - [`aer`]: the AER extended capability (ID 0x0001, v2), error injection, per-hop forwarding
//!   and root-port reception;
//! - [`aer_parse`]: the error name table and the `pcie_aer_inject_error` argument parser.
//!
//! Nothing here talks to the hypervisor or owns a device: the port/function owner calls these
//! after each config write or operator action and turns the returned events into MSI/INTx,
//! device detach and power effects. The integration contract is spelled out on
//! [`slot::Slot`] and in the [`aer`] module docs.
//!
//! Reference: /work/shared/reference/pcie-spec.md §4-§7.

pub mod aer;
pub mod aer_parse;
pub mod cap;
pub mod slot;

pub use aer::{Aer, AerConfig, AerErrorSpec, AerInjectError, AerMessage, InjectOutcome, MsgSeverity, RootOutcome};
pub use aer_parse::{parse_aer_injection, AerInjection, AerParseError, AerTarget, InjectSyntax};
pub use cap::{LinkSpeed, PayloadSize, PcieCap, PcieCapConfig, PcieCapError, PortType};
pub use slot::{Indicator, Latch, Slot, SlotConfig, SlotError, SlotEvents, SlotView};

/// The part of a guest config write `(at, size, val)` that lands in the register
/// `[reg, reg + width)` (width ≤ 4): `(value, byte_mask)` with both aligned to the register, or
/// `None` if the write does not touch it.
pub(crate) fn written_bits(reg: u16, width: u16, at: u16, size: u8, val: u32) -> Option<(u32, u32)> {
    let (mut value, mut mask) = (0u32, 0u32);
    for (i, byte) in (0u32..).zip(val.to_le_bytes().into_iter().take(usize::from(size.min(4)))) {
        let abs = u32::from(at) + i;
        let Some(pos) = abs.checked_sub(u32::from(reg)) else {
            continue;
        };
        if pos >= u32::from(width.min(4)) {
            continue;
        }
        value |= u32::from(byte) << (8 * pos);
        mask |= 0xff << (8 * pos);
    }
    (mask != 0).then_some((value, mask))
}

#[cfg(test)]
mod tests {
    use super::written_bits;

    #[test]
    fn written_bits_extracts_overlapping_bytes() {
        assert_eq!(written_bits(0x58, 2, 0x58, 2, 0x1234), Some((0x1234, 0xffff)));
        assert_eq!(written_bits(0x58, 2, 0x58, 4, 0xabcd_1234), Some((0x1234, 0xffff)));
        assert_eq!(written_bits(0x5a, 2, 0x58, 4, 0xabcd_1234), Some((0xabcd, 0xffff)));
        assert_eq!(written_bits(0x58, 2, 0x59, 1, 0x08), Some((0x0800, 0xff00)));
        assert_eq!(written_bits(0x58, 2, 0x57, 2, 0xff01), Some((0x00ff, 0x00ff)));
        assert_eq!(written_bits(0x58, 2, 0x54, 4, 0xffff_ffff), None);
        assert_eq!(written_bits(0x58, 2, 0x5a, 2, 0xffff), None);
        assert_eq!(written_bits(0xfffe, 2, u16::MAX, 4, 0xffff_ffff), Some((0xff00, 0xff00)));
    }
}
