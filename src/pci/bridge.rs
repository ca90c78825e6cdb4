//! The type-1 (PCI-to-PCI bridge) header: register table, bus numbers, forwarding windows and
//! Bridge Control, per pcie-spec.md §3 and the masks QEMU's PCIe ports show (probed with
//! `o`/`i` on QEMU 7.2: bus numbers RW; I/O base/limit bits 7:4 RW, 16-bit decode; memory and
//! prefetchable base/limit bits 15:4 RW, prefetchable 64-bit; upper-32 prefetch registers RW;
//! secondary status RW1C; Bridge Control RW 0x5f for PCIe ports, including Secondary Bus Reset).

use crate::bus::Range;
use crate::pci::config::{cmd, reg, ConfigSpace, RegSpec};

/// Type-1 register offsets.
pub mod breg {
    /// Primary bus number.
    pub const PRIMARY_BUS: u16 = 0x18;
    /// Secondary bus number.
    pub const SECONDARY_BUS: u16 = 0x19;
    /// Subordinate bus number.
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    /// Secondary latency timer.
    pub const SEC_LATENCY: u16 = 0x1b;
    /// I/O base.
    pub const IO_BASE: u16 = 0x1c;
    /// I/O limit.
    pub const IO_LIMIT: u16 = 0x1d;
    /// Secondary status.
    pub const SEC_STATUS: u16 = 0x1e;
    /// Memory base.
    pub const MEM_BASE: u16 = 0x20;
    /// Memory limit.
    pub const MEM_LIMIT: u16 = 0x22;
    /// Prefetchable memory base.
    pub const PREF_BASE: u16 = 0x24;
    /// Prefetchable memory limit.
    pub const PREF_LIMIT: u16 = 0x26;
    /// Prefetchable base, upper 32 bits.
    pub const PREF_BASE_UPPER: u16 = 0x28;
    /// Prefetchable limit, upper 32 bits.
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
    /// I/O base, upper 16 bits.
    pub const IO_BASE_UPPER: u16 = 0x30;
    /// I/O limit, upper 16 bits.
    pub const IO_LIMIT_UPPER: u16 = 0x32;
    /// Bridge Control.
    pub const BRIDGE_CONTROL: u16 = 0x3e;
}

/// Bridge Control bits.
pub mod bctl {
    /// Parity Error Response Enable.
    pub const PARITY: u16 = 0x0001;
    /// SERR# Enable (forward system errors from the secondary side).
    pub const SERR: u16 = 0x0002;
    /// ISA Enable.
    pub const ISA: u16 = 0x0004;
    /// VGA Enable.
    pub const VGA: u16 = 0x0008;
    /// VGA 16-bit decode.
    pub const VGA16: u16 = 0x0010;
    /// Master Abort Mode (RO 0 on PCIe).
    pub const MASTER_ABORT: u16 = 0x0020;
    /// Secondary Bus Reset.
    pub const BUS_RESET: u16 = 0x0040;
    /// Writable bits on a PCIe port.
    pub const PCIE_WRITABLE: u16 = PARITY | SERR | ISA | VGA | VGA16 | BUS_RESET;
}

/// Secondary Status RW1C bits (master data parity error, signalled/received target abort,
/// received master abort, received system error, detected parity error).
pub const SEC_STATUS_W1C: u16 = 0xf900;
/// Secondary Status: Received System Error.
pub const SEC_STATUS_RCV_SYSTEM_ERROR: u16 = 0x4000;

/// The bridge part of a type-1 header (IDs, Command, Status and BARs come from
/// [`crate::pci::config::header_regs`] and [`crate::pci::bar`]). Reset state as QEMU's
/// `pci_bridge_disable_base_limit`: every window disabled (base above limit).
pub fn bridge_regs() -> Vec<RegSpec> {
    vec![
        RegSpec::ro(breg::PRIMARY_BUS, 1, 0).rw(0xff),
        RegSpec::ro(breg::SECONDARY_BUS, 1, 0).rw(0xff),
        RegSpec::ro(breg::SUBORDINATE_BUS, 1, 0).rw(0xff),
        RegSpec::ro(breg::SEC_LATENCY, 1, 0).rw(0xff),
        RegSpec::ro(breg::IO_BASE, 1, 0xf0).rw(0xf0),
        RegSpec::ro(breg::IO_LIMIT, 1, 0x00).rw(0xf0),
        RegSpec::ro(breg::SEC_STATUS, 2, 0).w1c(u32::from(SEC_STATUS_W1C)),
        RegSpec::ro(breg::MEM_BASE, 2, 0xfff0).rw(0xfff0),
        RegSpec::ro(breg::MEM_LIMIT, 2, 0x0000).rw(0xfff0),
        RegSpec::ro(breg::PREF_BASE, 2, 0xfff1).rw(0xfff0),
        RegSpec::ro(breg::PREF_LIMIT, 2, 0x0001).rw(0xfff0),
        RegSpec::ro(breg::PREF_BASE_UPPER, 4, 0).rw(0xffff_ffff),
        RegSpec::ro(breg::PREF_LIMIT_UPPER, 4, 0).rw(0xffff_ffff),
        RegSpec::ro(breg::IO_BASE_UPPER, 2, 0),
        RegSpec::ro(breg::IO_LIMIT_UPPER, 2, 0),
        RegSpec::ro(breg::BRIDGE_CONTROL, 2, 0).rw(u32::from(bctl::PCIE_WRITABLE)),
    ]
}

/// Bus numbers of a bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusNumbers {
    /// Primary.
    pub primary: u8,
    /// Secondary.
    pub secondary: u8,
    /// Subordinate.
    pub subordinate: u8,
}

impl BusNumbers {
    /// Reads them from a type-1 config space.
    pub fn of(cfg: &ConfigSpace) -> Self {
        Self {
            primary: cfg.get_u8(breg::PRIMARY_BUS),
            secondary: cfg.get_u8(breg::SECONDARY_BUS),
            subordinate: cfg.get_u8(breg::SUBORDINATE_BUS),
        }
    }

    /// Whether type-1 accesses to bus `nr` are claimed (secondary ≤ nr ≤ subordinate). A bridge
    /// whose secondary number is still 0 (not enumerated) claims nothing.
    pub fn claims(&self, nr: u8) -> bool {
        self.secondary != 0 && self.secondary <= nr && nr <= self.subordinate
    }
}

/// The windows a bridge forwards downstream (inclusive ranges), already gated by Command.IO and
/// Command.MEM; a window whose limit is below its base is closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Windows {
    /// I/O window.
    pub io: Option<Range>,
    /// Non-prefetchable memory window.
    pub mem: Option<Range>,
    /// Prefetchable memory window (64-bit).
    pub pref: Option<Range>,
}

/// Raw window registers, ungated (for `info pci`): (base, limit) pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawWindows {
    /// I/O base and limit (limit includes the low 0xfff).
    pub io: (u64, u64),
    /// Memory base and limit (limit includes the low 0xfffff).
    pub mem: (u64, u64),
    /// Prefetchable base and limit.
    pub pref: (u64, u64),
}

impl RawWindows {
    /// Decodes the registers as QEMU's `pci_bridge_get_base/limit` do.
    pub fn of(cfg: &ConfigSpace) -> Self {
        let io_base = u64::from(cfg.get_u8(breg::IO_BASE) & 0xf0) << 8
            | if cfg.get_u8(breg::IO_BASE) & 0x0f == 1 { u64::from(cfg.get_u16(breg::IO_BASE_UPPER)) << 16 } else { 0 };
        let io_limit = (u64::from(cfg.get_u8(breg::IO_LIMIT) & 0xf0) << 8 | 0xfff)
            | if cfg.get_u8(breg::IO_LIMIT) & 0x0f == 1 {
                u64::from(cfg.get_u16(breg::IO_LIMIT_UPPER)) << 16
            } else {
                0
            };
        let mem_base = u64::from(cfg.get_u16(breg::MEM_BASE) & 0xfff0) << 16;
        let mem_limit = (u64::from(cfg.get_u16(breg::MEM_LIMIT) & 0xfff0) << 16) | 0xf_ffff;
        let pb = cfg.get_u16(breg::PREF_BASE);
        let pl = cfg.get_u16(breg::PREF_LIMIT);
        let mut pref_base = u64::from(pb & 0xfff0) << 16;
        let mut pref_limit = (u64::from(pl & 0xfff0) << 16) | 0xf_ffff;
        if pb & 0xf == 1 {
            pref_base |= u64::from(cfg.get_u32(breg::PREF_BASE_UPPER)) << 32;
        }
        if pl & 0xf == 1 {
            pref_limit |= u64::from(cfg.get_u32(breg::PREF_LIMIT_UPPER)) << 32;
        }
        Self { io: (io_base, io_limit), mem: (mem_base, mem_limit), pref: (pref_base, pref_limit) }
    }
}

/// The windows as forwarded, honouring Command.IO / Command.MEM.
pub fn windows(cfg: &ConfigSpace) -> Windows {
    let raw = RawWindows::of(cfg);
    let command = cfg.get_u16(reg::COMMAND);
    let io_on = command & cmd::IO != 0;
    let mem_on = command & cmd::MEMORY != 0;
    Windows {
        io: if io_on { Range::inclusive(raw.io.0, raw.io.1) } else { None },
        mem: if mem_on { Range::inclusive(raw.mem.0, raw.mem.1) } else { None },
        pref: if mem_on { Range::inclusive(raw.pref.0, raw.pref.1) } else { None },
    }
}

/// Whether `[addr, addr+size)` is forwarded downstream: an I/O range through the I/O window, a
/// memory range through either memory window.
pub fn forwards(w: &Windows, io: bool, addr: u64, size: u64) -> bool {
    let inside = |r: &Option<Range>| r.is_some_and(|r| r.contains_access(addr, size));
    if io {
        inside(&w.io)
    } else {
        inside(&w.mem) || inside(&w.pref)
    }
}

/// Whether Bridge Control's Secondary Bus Reset went from 0 to 1.
pub fn sbr_rising(old_bctl: u16, new_bctl: u16) -> bool {
    old_bctl & bctl::BUS_RESET == 0 && new_bctl & bctl::BUS_RESET != 0
}

/// Builds a type-1 function from `spec` (its header type is forced to type 1) with the bridge
/// registers of [`bridge_regs`] installed.
pub fn bridge_function(
    spec: crate::pci::device::FunctionSpec,
) -> Result<crate::pci::device::GenericFunction, crate::pci::device::DeviceError> {
    let name = spec.name.clone();
    let mut f = crate::pci::device::GenericFunction::new(spec.header_type(crate::pci::config::HeaderType::Type1))?;
    f.config_mut()
        .apply_table(0, &bridge_regs())
        .map_err(|source| crate::pci::device::DeviceError::Config { name, source })?;
    Ok(f)
}

/// A plain PCI-to-PCI bridge (no capabilities): the type-1 header and nothing else. Used for
/// tests of the hierarchy and as the base the PCIe ports extend.
pub struct PciBridge {
    f: crate::pci::device::GenericFunction,
}

impl PciBridge {
    /// A bridge with `ids` (class is forced to 0604).
    pub fn new(name: &str, ids: crate::pci::config::HeaderIds) -> Result<Self, crate::pci::device::DeviceError> {
        let ids = crate::pci::config::HeaderIds { class_code: 0x06_04_00, ..ids };
        Ok(Self { f: bridge_function(crate::pci::device::FunctionSpec::new(name, ids).express())? })
    }
}

impl crate::pci::device::PciDevice for PciBridge {
    fn function(&self) -> &crate::pci::device::GenericFunction {
        &self.f
    }
    fn function_mut(&mut self) -> &mut crate::pci::device::GenericFunction {
        &mut self.f
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::ConfigKind;

    fn bridge() -> ConfigSpace {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        c.apply_table(0, &bridge_regs()).expect("table");
        c.apply_reg(0, &RegSpec::ro(reg::COMMAND, 2, 0).rw(u32::from(cmd::WRITABLE))).expect("cmd");
        c
    }

    #[test]
    fn reset_windows_are_closed_like_qemu() {
        let c = bridge();
        let raw = RawWindows::of(&c);
        assert_eq!(raw.io, (0xf000, 0x0fff));
        assert_eq!(raw.mem, (0xfff0_0000, 0x000f_ffff));
        assert_eq!(raw.pref, (0xfff0_0000, 0x000f_ffff));
        let mut c = c;
        let _ = c.write(reg::COMMAND, 2, 3);
        assert_eq!(windows(&c), Windows::default());
    }

    #[test]
    fn windows_decode_and_gate_on_command() {
        let mut c = bridge();
        let _ = c.write(breg::IO_BASE, 1, 0x10);
        let _ = c.write(breg::IO_LIMIT, 1, 0x20);
        let _ = c.write(breg::MEM_BASE, 2, 0xfe00);
        let _ = c.write(breg::MEM_LIMIT, 2, 0xfe10);
        let _ = c.write(breg::PREF_BASE, 2, 0x8000);
        let _ = c.write(breg::PREF_LIMIT, 2, 0x8ff0);
        let _ = c.write(breg::PREF_BASE_UPPER, 4, 1);
        let _ = c.write(breg::PREF_LIMIT_UPPER, 4, 1);
        assert_eq!(windows(&c), Windows::default(), "Command.IO/MEM off");
        let _ = c.write(reg::COMMAND, 2, u32::from(cmd::IO | cmd::MEMORY));
        let w = windows(&c);
        assert_eq!(w.io, Range::inclusive(0x1000, 0x2fff));
        assert_eq!(w.mem, Range::inclusive(0xfe00_0000, 0xfe1f_ffff));
        assert_eq!(w.pref, Range::inclusive(0x1_8000_0000, 0x1_8fff_ffff));
        assert!(forwards(&w, true, 0x2ff0, 0x10));
        assert!(!forwards(&w, true, 0x2ff8, 0x10));
        assert!(forwards(&w, false, 0x1_8000_0000, 0x1000));
        assert!(!forwards(&w, false, 0xfe20_0000, 4));
    }

    #[test]
    fn masks_match_qemu_probe() {
        let mut c = bridge();
        for off in [0x18u16, 0x1c, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x3c] {
            let _ = c.write(off, 4, 0xffff_ffff);
        }
        assert_eq!(c.get_u32(0x18), 0xffff_ffff);
        assert_eq!(c.get_u32(0x1c), 0x0000_f0f0, "io base/limit bits 7:4, secondary status W1C");
        assert_eq!(c.get_u32(0x20), 0xfff0_fff0);
        assert_eq!(c.get_u32(0x24), 0xfff1_fff1);
        assert_eq!(c.get_u32(0x28), 0xffff_ffff);
        assert_eq!(c.get_u32(0x30), 0);
        assert_eq!(c.get_u16(0x3e), bctl::PCIE_WRITABLE);
    }

    #[test]
    fn bus_claims_need_an_assigned_secondary() {
        let mut c = bridge();
        assert!(!BusNumbers::of(&c).claims(0));
        let _ = c.write(breg::PRIMARY_BUS, 4, 0x00_05_02_00);
        let b = BusNumbers::of(&c);
        assert!(b.claims(2) && b.claims(5) && !b.claims(1) && !b.claims(6));
    }

    #[test]
    fn sbr_edge() {
        assert!(sbr_rising(0, bctl::BUS_RESET | bctl::SERR));
        assert!(!sbr_rising(bctl::BUS_RESET, bctl::BUS_RESET));
        assert!(!sbr_rising(bctl::BUS_RESET, 0));
    }
}
