//! Base address registers: layout and masks, decoding the current mappings from config space, and
//! the map/unmap diff a config write causes.
//!
//! # Sizing
//! Sizing works purely through the masks: a BAR's address bits below its size and its type bits
//! are RO, so a guest writing all-ones reads back `!(size-1) | type bits`. A 64-bit BAR is a pair
//! of dwords, the upper one fully writable up to the size. The ROM BAR's enable bit (0) is RW.
//!
//! # Decoding (what [`BarSet::decode`] reports as mapped)
//! - I/O BARs need Command.IO; memory BARs and the ROM need Command.MEM; the ROM also its enable.
//! - Address 0 is "not decoded" (QEMU `pci_bar_address`).
//! - I/O: the whole range must lie below 0x10000 (x86 port space). The I/O BAR's upper 16 bits are
//!   writable (as in QEMU), so the all-ones sizing pattern always lands above 0xFFFF.
//! - 32-bit memory and ROM: a range ending at 0xFFFF_FFFF is not decoded. Every sizing pattern
//!   lands exactly there (base = `!(size-1)`), so a BAR mid-sizing never maps a garbage range; this
//!   is QEMU's `last_addr >= UINT32_MAX` rule.
//! - 64-bit memory: not decoded if the end overflows, if it lies above [`MAX_PHYS_ADDR`] (52-bit
//!   physical addresses; covers the upper half holding the sizing pattern) or if it ends at
//!   0xFFFF_FFFF (the low half holding the sizing pattern while the upper half is 0, which Linux
//!   produces when it sizes the low dword first; no firmware places a BAR over the flash/APIC area
//!   at the top of 4 GiB).
//!
//! The diff ([`diff`], [`BarSet::refresh`]) lists every unmap before every map, so a swap of two
//! BARs never transiently overlaps in the owner's range maps.

use thiserror::Error;

use crate::pci::config::{cmd, reg, ConfigError, ConfigSpace, HeaderType, RegMasks, RegSpec};

/// Index used for the expansion ROM BAR.
pub const ROM_BAR: u8 = 6;
/// Highest memory address a BAR may decode to (x86-64: 52-bit physical addresses).
pub const MAX_PHYS_ADDR: u64 = (1 << 52) - 1;
/// Largest I/O BAR (spec: 256 bytes).
pub const MAX_IO_BAR_SIZE: u64 = 256;
/// Smallest memory BAR.
pub const MIN_MEM_BAR_SIZE: u64 = 16;
/// Largest 32-bit memory BAR.
pub const MAX_MEM32_BAR_SIZE: u64 = 1 << 31;
/// Largest 64-bit memory BAR.
pub const MAX_MEM64_BAR_SIZE: u64 = 1 << 51;
/// Smallest expansion ROM.
pub const MIN_ROM_SIZE: u64 = 2048;
/// Largest expansion ROM (spec: 16 MiB).
pub const MAX_ROM_SIZE: u64 = 16 << 20;
/// Last address of the x86 port space.
pub const MAX_IO_ADDR: u64 = 0xffff;

const BAR_IO: u32 = 0x1;
const BAR_MEM64: u32 = 0x4;
const BAR_PREFETCH: u32 = 0x8;
const ROM_ENABLE: u32 = 0x1;
const ROM_ADDR_MASK: u32 = 0xffff_f800;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// 32-bit memory.
    Mem32 {
        /// Prefetchable.
        prefetchable: bool,
    },
    /// 64-bit memory (this BAR and the next form a pair).
    Mem64 {
        /// Prefetchable.
        prefetchable: bool,
    },
    /// Expansion ROM.
    Rom,
}

impl BarKind {
    /// Whether it decodes I/O space.
    pub const fn is_io(self) -> bool {
        matches!(self, BarKind::Io)
    }
    /// Whether it decodes memory space (ROM included).
    pub const fn is_mem(self) -> bool {
        !self.is_io()
    }
}

/// One BAR of a function: index (0-5, or [`ROM_BAR`]), kind and size (a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BarSpec {
    /// BAR index (the lower one of a 64-bit pair), or [`ROM_BAR`].
    pub index: u8,
    /// Kind.
    pub kind: BarKind,
    /// Size in bytes.
    pub size: u64,
}

impl BarSpec {
    /// An I/O BAR.
    pub const fn io(index: u8, size: u64) -> Self {
        BarSpec { index, kind: BarKind::Io, size }
    }
    /// A 32-bit memory BAR.
    pub const fn mem32(index: u8, size: u64, prefetchable: bool) -> Self {
        BarSpec { index, kind: BarKind::Mem32 { prefetchable }, size }
    }
    /// A 64-bit memory BAR occupying `index` and `index + 1`.
    pub const fn mem64(index: u8, size: u64, prefetchable: bool) -> Self {
        BarSpec { index, kind: BarKind::Mem64 { prefetchable }, size }
    }
    /// An expansion ROM.
    pub const fn rom(size: u64) -> Self {
        BarSpec { index: ROM_BAR, kind: BarKind::Rom, size }
    }
    /// Number of BAR slots used (2 for 64-bit).
    pub const fn slots(&self) -> u8 {
        match self.kind {
            BarKind::Mem64 { .. } => 2,
            _ => 1,
        }
    }
}

/// A decoded (live) BAR mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BarMapping {
    /// BAR index or [`ROM_BAR`].
    pub bar: u8,
    /// Kind.
    pub kind: BarKind,
    /// Base address (port or memory).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

impl BarMapping {
    /// Last address (inclusive).
    pub fn last(&self) -> u64 {
        self.addr.saturating_add(self.size.saturating_sub(1))
    }
}

/// A change to a function's decoded BARs, for the owner to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarChange {
    /// Start routing `mapping` to the function.
    Map(BarMapping),
    /// Stop routing `mapping` (as previously mapped).
    Unmap(BarMapping),
}

/// BAR layout errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BarError {
    /// Index beyond the header's BARs (or ROM kind/index mismatch).
    #[error("BAR index {index} is invalid for a {header:?} header (kind {kind:?})")]
    BadIndex {
        /// Index.
        index: u8,
        /// Kind.
        kind: BarKind,
        /// Header.
        header: HeaderType,
    },
    /// Size not a power of two or out of bounds.
    #[error("BAR {index} size {size:#x} is invalid: {why}")]
    BadSize {
        /// Index.
        index: u8,
        /// Size.
        size: u64,
        /// Reason.
        why: &'static str,
    },
    /// Two BARs claim one slot.
    #[error("BAR {index} overlaps BAR {other} (slot {slot})")]
    SlotTaken {
        /// Index being added.
        index: u8,
        /// Index already there.
        other: u8,
        /// Contested slot.
        slot: u8,
    },
    /// Writing the registers failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A function's BARs: layout, register offsets, and the mappings last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarSet {
    header: HeaderType,
    specs: Vec<BarSpec>,
    mapped: Vec<BarMapping>,
}

fn check_size(spec: &BarSpec) -> Result<(), BarError> {
    let BarSpec { index, size, kind } = *spec;
    let bad = |why| Err(BarError::BadSize { index, size, why });
    if !size.is_power_of_two() {
        return bad("not a power of two");
    }
    let (min, max) = match kind {
        BarKind::Io => (4, MAX_IO_BAR_SIZE),
        BarKind::Mem32 { .. } => (MIN_MEM_BAR_SIZE, MAX_MEM32_BAR_SIZE),
        BarKind::Mem64 { .. } => (MIN_MEM_BAR_SIZE, MAX_MEM64_BAR_SIZE),
        BarKind::Rom => (MIN_ROM_SIZE, MAX_ROM_SIZE),
    };
    if size < min {
        return bad("below the minimum for its kind");
    }
    if size > max {
        return bad("above the maximum for its kind");
    }
    Ok(())
}

impl BarSet {
    /// Validates `specs` for `header`: indices within the header (a 64-bit BAR needs the next
    /// slot too), no slot used twice, ROM only as [`ROM_BAR`], sizes powers of two within bounds.
    pub fn new(header: HeaderType, specs: &[BarSpec]) -> Result<Self, BarError> {
        let mut taken: Vec<(u8, u8)> = Vec::new(); // (slot, owner index)
        for s in specs {
            let is_rom = matches!(s.kind, BarKind::Rom);
            let in_range = if is_rom {
                s.index == ROM_BAR
            } else {
                u16::from(s.index) + u16::from(s.slots()) <= u16::from(header.bar_count())
            };
            if !in_range {
                return Err(BarError::BadIndex { index: s.index, kind: s.kind, header });
            }
            check_size(s)?;
            for slot in s.index..s.index.saturating_add(s.slots()) {
                if let Some((_, other)) = taken.iter().find(|(t, _)| *t == slot) {
                    return Err(BarError::SlotTaken { index: s.index, other: *other, slot });
                }
                taken.push((slot, s.index));
            }
        }
        let mut specs = specs.to_vec();
        specs.sort_by_key(|s| s.index);
        Ok(BarSet { header, specs, mapped: Vec::new() })
    }

    /// Header layout.
    pub fn header(&self) -> HeaderType {
        self.header
    }

    /// The BARs, by index.
    pub fn specs(&self) -> &[BarSpec] {
        &self.specs
    }

    /// The BAR at `index` (the lower index of a 64-bit pair).
    pub fn spec(&self, index: u8) -> Option<&BarSpec> {
        self.specs.iter().find(|s| s.index == index)
    }

    /// Config offset of BAR `index` (or the ROM), if the header has it.
    pub fn reg_offset(&self, index: u8) -> Option<u16> {
        if index == ROM_BAR {
            Some(self.header.rom_offset())
        } else if index < self.header.bar_count() {
            Some(reg::BAR0 + 4 * u16::from(index))
        } else {
            None
        }
    }

    /// Writes type bits (init values) and sizing masks into `cfg`.
    pub fn install(&self, cfg: &mut ConfigSpace) -> Result<(), BarError> {
        for s in &self.specs {
            let Some(off) = self.reg_offset(s.index) else {
                continue;
            };
            let addr_mask = !(s.size - 1);
            match s.kind {
                BarKind::Io => {
                    cfg.apply_reg(off, &RegSpec::new(0, 4, BAR_IO, RegMasks::rw(addr_mask as u32 & !0x3)))?;
                }
                BarKind::Mem32 { prefetchable } => {
                    let init = if prefetchable { BAR_PREFETCH } else { 0 };
                    cfg.apply_reg(off, &RegSpec::new(0, 4, init, RegMasks::rw(addr_mask as u32 & !0xf)))?;
                }
                BarKind::Mem64 { prefetchable } => {
                    let init = BAR_MEM64 | if prefetchable { BAR_PREFETCH } else { 0 };
                    cfg.apply_reg(off, &RegSpec::new(0, 4, init, RegMasks::rw(addr_mask as u32 & !0xf)))?;
                    cfg.apply_reg(off + 4, &RegSpec::new(0, 4, 0, RegMasks::rw((addr_mask >> 32) as u32)))?;
                }
                BarKind::Rom => {
                    let wm = (addr_mask as u32 & ROM_ADDR_MASK) | ROM_ENABLE;
                    cfg.apply_reg(off, &RegSpec::new(0, 4, 0, RegMasks::rw(wm)))?;
                }
            }
        }
        Ok(())
    }

    /// Whether a config access `[off, off+size)` touches the Command register or any BAR
    /// register (so the mappings may have changed).
    pub fn touches(&self, off: u16, size: u8) -> bool {
        let (a, b) = (u32::from(off), u32::from(off) + u32::from(size));
        let hit = |lo: u16, len: u32| a < u32::from(lo) + len && u32::from(lo) < b;
        hit(reg::COMMAND, 2)
            || self.specs.iter().any(|s| self.reg_offset(s.index).is_some_and(|o| hit(o, 4 * u32::from(s.slots()))))
    }

    fn decode_one(&self, cfg: &ConfigSpace, s: &BarSpec, command: u16) -> Option<BarMapping> {
        let off = self.reg_offset(s.index)?;
        let raw = u64::from(cfg.get_u32(off));
        let align = !(s.size - 1);
        let (addr, max_last) = match s.kind {
            BarKind::Io => {
                if command & cmd::IO == 0 {
                    return None;
                }
                (raw & !0x3 & align, MAX_IO_ADDR)
            }
            BarKind::Mem32 { .. } => {
                if command & cmd::MEMORY == 0 {
                    return None;
                }
                (raw & !0xf & align, 0xffff_fffe)
            }
            BarKind::Rom => {
                if command & cmd::MEMORY == 0 || raw & u64::from(ROM_ENABLE) == 0 {
                    return None;
                }
                (raw & u64::from(ROM_ADDR_MASK) & align, 0xffff_fffe)
            }
            BarKind::Mem64 { .. } => {
                if command & cmd::MEMORY == 0 {
                    return None;
                }
                let hi = u64::from(cfg.get_u32(off.checked_add(4)?));
                ((hi << 32 | raw) & !0xf & align, MAX_PHYS_ADDR)
            }
        };
        let last = addr.checked_add(s.size - 1)?;
        if addr == 0 || last > max_last || last == 0xffff_ffff {
            return None;
        }
        Some(BarMapping { bar: s.index, kind: s.kind, addr, size: s.size })
    }

    /// The mappings `cfg` currently decodes (see the module docs for the rules), by index.
    pub fn decode(&self, cfg: &ConfigSpace) -> Vec<BarMapping> {
        let command = cfg.command();
        self.specs.iter().filter_map(|s| self.decode_one(cfg, s, command)).collect()
    }

    /// The mappings last reported by [`BarSet::refresh`].
    pub fn mapped(&self) -> &[BarMapping] {
        &self.mapped
    }

    /// The mapping of BAR `index` last reported, if mapped.
    pub fn mapping(&self, index: u8) -> Option<&BarMapping> {
        self.mapped.iter().find(|m| m.bar == index)
    }

    /// Decodes `cfg`, returns the changes since the last refresh, and remembers the new state.
    pub fn refresh(&mut self, cfg: &ConfigSpace) -> Vec<BarChange> {
        let new = self.decode(cfg);
        let changes = diff(&self.mapped, &new);
        self.mapped = new;
        changes
    }
}

/// Changes from `old` to `new` mappings: an unmap for every old mapping not present unchanged in
/// `new`, then a map for every new mapping not present unchanged in `old` (all unmaps first).
pub fn diff(old: &[BarMapping], new: &[BarMapping]) -> Vec<BarChange> {
    let unmaps = old.iter().filter(|m| !new.contains(m)).map(|m| BarChange::Unmap(*m));
    let maps = new.iter().filter(|m| !old.contains(m)).map(|m| BarChange::Map(*m));
    unmaps.chain(maps).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{header_regs, ConfigKind, HeaderIds};

    fn cfg_with(header: HeaderType, specs: &[BarSpec]) -> (ConfigSpace, BarSet) {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        c.apply_table(0, &header_regs(&HeaderIds::default(), header, false, None)).expect("hdr");
        let bars = BarSet::new(header, specs).expect("bars");
        bars.install(&mut c).expect("install");
        (c, bars)
    }

    fn w(c: &mut ConfigSpace, off: u16, val: u32) {
        assert!(!c.write(off, 4, val).is_ignored());
    }

    fn enable(c: &mut ConfigSpace, bits: u16) {
        assert!(!c.write(reg::COMMAND, 2, u32::from(bits)).is_ignored());
    }

    fn map(bar: u8, kind: BarKind, addr: u64, size: u64) -> BarMapping {
        BarMapping { bar, kind, addr, size }
    }

    const M32: BarKind = BarKind::Mem32 { prefetchable: false };
    const M64P: BarKind = BarKind::Mem64 { prefetchable: true };

    #[test]
    fn bar_sizing_returns_size_mask() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xffff_ffff);
        assert_eq!(c.read(0x10, 4).0, 0xffff_f000);
    }

    #[test]
    fn bar_sizing_keeps_prefetch_bit() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(1, 0x10_0000, true)]);
        w(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(c.get_u32(0x14), 0xfff0_0008);
    }

    #[test]
    fn bar_type_bits_are_read_only() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x4000, true)]);
        w(&mut c, 0x10, 0);
        assert_eq!(c.get_u32(0x10), 0xc);
    }

    #[test]
    fn io_bar_sizing_returns_size_mask_and_io_bit() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::io(2, 0x20)]);
        w(&mut c, 0x18, 0xffff_ffff);
        assert_eq!(c.get_u32(0x18), 0xffff_ffe1);
    }

    #[test]
    fn mem64_bar_sizing_spans_the_pair() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(2, 0x2_0000, false)]);
        w(&mut c, 0x18, 0xffff_ffff);
        w(&mut c, 0x1c, 0xffff_ffff);
        assert_eq!(c.get_u32(0x18), 0xfffe_0004);
        assert_eq!(c.get_u32(0x1c), 0xffff_ffff);
    }

    #[test]
    fn mem64_bar_above_4g_size_has_read_only_low_address() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x2_0000_0000, true)]);
        w(&mut c, 0x10, 0xffff_ffff);
        w(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(c.get_u32(0x10), 0x0000_000c);
        assert_eq!(c.get_u32(0x14), 0xffff_fffe);
    }

    #[test]
    fn rom_sizing_keeps_enable_bit_writable() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::rom(0x1_0000)]);
        w(&mut c, 0x30, 0xffff_fffe);
        assert_eq!(c.get_u32(0x30), 0xffff_0000);
        w(&mut c, 0x30, 0xffff_ffff);
        assert_eq!(c.get_u32(0x30), 0xffff_0001);
    }

    #[test]
    fn unimplemented_bar_reads_zero_after_sizing() {
        let (mut c, _) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(c.get_u32(0x14), 0);
    }

    #[test]
    fn type1_rom_lives_at_0x38() {
        let (mut c, bars) = cfg_with(HeaderType::Type1, &[BarSpec::rom(0x800)]);
        assert_eq!(bars.reg_offset(ROM_BAR), Some(0x38));
        w(&mut c, 0x38, 0xffff_ffff);
        assert_eq!(c.get_u32(0x38), 0xffff_f801);
        assert_eq!(c.get_u32(0x30), 0);
    }

    #[test]
    fn decode_requires_command_memory() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xfe00_0000);
        assert!(bars.decode(&c).is_empty());
        enable(&mut c, cmd::MEMORY);
        assert_eq!(bars.decode(&c), vec![map(0, M32, 0xfe00_0000, 0x1000)]);
    }

    #[test]
    fn decode_io_requires_command_io() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::io(0, 0x40)]);
        w(&mut c, 0x10, 0xc000);
        enable(&mut c, cmd::MEMORY);
        assert!(bars.decode(&c).is_empty());
        enable(&mut c, cmd::IO);
        assert_eq!(bars.decode(&c), vec![map(0, BarKind::Io, 0xc000, 0x40)]);
    }

    #[test]
    fn decode_rom_requires_enable_bit() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::rom(0x1_0000)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x30, 0xfeb0_0000);
        assert!(bars.decode(&c).is_empty());
        w(&mut c, 0x30, 0xfeb0_0001);
        assert_eq!(bars.decode(&c), vec![map(ROM_BAR, BarKind::Rom, 0xfeb0_0000, 0x1_0000)]);
    }

    #[test]
    fn decode_rom_requires_command_memory() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::rom(0x1_0000)]);
        w(&mut c, 0x30, 0xfeb0_0001);
        enable(&mut c, cmd::IO);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_address_zero() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false), BarSpec::io(1, 4)]);
        enable(&mut c, cmd::MEMORY | cmd::IO);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_mem32_sizing_pattern() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_largest_mem32_sizing_pattern() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x8000_0000, false)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_ffff);
        assert_eq!(c.get_u32(0x10), 0x8000_0000);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_accepts_mem32_just_below_4g_top() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_e000);
        assert_eq!(bars.decode(&c), vec![map(0, M32, 0xffff_e000, 0x1000)]);
    }

    #[test]
    fn decode_rejects_rom_sizing_pattern_with_enable() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::rom(0x800)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x30, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_io_sizing_pattern() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::io(0, 0x100)]);
        enable(&mut c, cmd::IO);
        w(&mut c, 0x10, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_io_above_64k() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::io(0, 0x10)]);
        enable(&mut c, cmd::IO);
        w(&mut c, 0x10, 0x1_0000);
        assert!(bars.decode(&c).is_empty());
        w(&mut c, 0x10, 0xfff0);
        assert_eq!(bars.decode(&c), vec![map(0, BarKind::Io, 0xfff0, 0x10)], "ending at 0xffff is fine");
    }

    #[test]
    fn decode_rejects_mem64_full_sizing_pattern() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x4000, true)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_ffff);
        w(&mut c, 0x14, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_mem64_low_half_sizing_with_high_zero() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x4000, true)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_mem64_high_half_sizing() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x4000, true)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xe000_0000);
        w(&mut c, 0x14, 0xffff_ffff);
        assert!(bars.decode(&c).is_empty());
    }

    #[test]
    fn decode_rejects_mem64_above_physical_limit() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x4000, false)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x14, 0x0010_0000); // 1 << 52
        w(&mut c, 0x10, 0);
        assert!(bars.decode(&c).is_empty());
        w(&mut c, 0x14, 0x000f_ffff);
        w(&mut c, 0x10, 0xffff_c000);
        assert_eq!(bars.decode(&c).len(), 1, "last byte exactly at the limit");
    }

    #[test]
    fn decode_mem64_above_4g() {
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(4, 0x10_0000, true)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x20, 0x0010_000c);
        w(&mut c, 0x24, 0x8);
        assert_eq!(bars.decode(&c), vec![map(4, M64P, 0x8_0010_0000, 0x10_0000)]);
    }

    #[test]
    fn decode_mem64_top_of_window_with_low_dword_all_ones_pattern() {
        // A 4 KiB BAR allocated at the very top of a 64-bit window: low dword 0xfffff000.
        let (mut c, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x1000, false)]);
        enable(&mut c, cmd::MEMORY);
        w(&mut c, 0x10, 0xffff_f000);
        w(&mut c, 0x14, 0xf);
        assert_eq!(bars.decode(&c), vec![map(0, BarKind::Mem64 { prefetchable: false }, 0xf_ffff_f000, 0x1000)]);
    }

    #[test]
    fn refresh_maps_on_enable() {
        let (mut c, mut bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xfe00_0000);
        assert!(bars.refresh(&c).is_empty());
        enable(&mut c, cmd::MEMORY);
        assert_eq!(bars.refresh(&c), vec![BarChange::Map(map(0, M32, 0xfe00_0000, 0x1000))]);
        assert_eq!(bars.mapping(0), Some(&map(0, M32, 0xfe00_0000, 0x1000)));
    }

    #[test]
    fn refresh_unmaps_on_disable() {
        let (mut c, mut bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xfe00_0000);
        enable(&mut c, cmd::MEMORY);
        let _ = bars.refresh(&c);
        enable(&mut c, 0);
        assert_eq!(bars.refresh(&c), vec![BarChange::Unmap(map(0, M32, 0xfe00_0000, 0x1000))]);
        assert!(bars.mapped().is_empty());
    }

    #[test]
    fn refresh_move_unmaps_then_maps() {
        let (mut c, mut bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xfe00_0000);
        enable(&mut c, cmd::MEMORY);
        let _ = bars.refresh(&c);
        w(&mut c, 0x10, 0xfe10_0000);
        assert_eq!(
            bars.refresh(&c),
            vec![BarChange::Unmap(map(0, M32, 0xfe00_0000, 0x1000)), BarChange::Map(map(0, M32, 0xfe10_0000, 0x1000))]
        );
    }

    #[test]
    fn refresh_sizing_while_decoding_unmaps_then_restore_maps() {
        let (mut c, mut bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem32(0, 0x1000, false)]);
        w(&mut c, 0x10, 0xfe00_0000);
        enable(&mut c, cmd::MEMORY);
        let _ = bars.refresh(&c);
        w(&mut c, 0x10, 0xffff_ffff);
        assert_eq!(bars.refresh(&c), vec![BarChange::Unmap(map(0, M32, 0xfe00_0000, 0x1000))]);
        w(&mut c, 0x10, 0xfe00_0000);
        assert_eq!(bars.refresh(&c), vec![BarChange::Map(map(0, M32, 0xfe00_0000, 0x1000))]);
    }

    #[test]
    fn refresh_without_change_is_empty() {
        let (mut c, mut bars) = cfg_with(HeaderType::Type0, &[BarSpec::io(0, 0x10)]);
        w(&mut c, 0x10, 0xc000);
        enable(&mut c, cmd::IO);
        assert_eq!(bars.refresh(&c).len(), 1);
        assert!(bars.refresh(&c).is_empty());
    }

    #[test]
    fn diff_lists_all_unmaps_before_maps() {
        let a = map(0, M32, 0x1000, 0x1000);
        let b = map(1, M32, 0x2000, 0x1000);
        let a2 = map(0, M32, 0x2000, 0x1000);
        let b2 = map(1, M32, 0x1000, 0x1000);
        assert_eq!(
            diff(&[a, b], &[a2, b2]),
            vec![BarChange::Unmap(a), BarChange::Unmap(b), BarChange::Map(a2), BarChange::Map(b2)]
        );
    }

    #[test]
    fn touches_command_and_bar_registers_only() {
        let (_, bars) = cfg_with(HeaderType::Type0, &[BarSpec::mem64(0, 0x1000, false), BarSpec::rom(0x800)]);
        assert!(bars.touches(0x04, 2));
        assert!(bars.touches(0x03, 2), "unaligned into Command");
        assert!(bars.touches(0x14, 4), "upper half of the pair");
        assert!(bars.touches(0x33, 1));
        assert!(!bars.touches(0x06, 2));
        assert!(!bars.touches(0x18, 4), "unimplemented BAR 2");
        assert!(!bars.touches(0x3c, 4));
    }

    #[test]
    fn new_rejects_non_power_of_two_size() {
        let e = BarSet::new(HeaderType::Type0, &[BarSpec::mem32(0, 0x3000, false)]).expect_err("size");
        assert!(matches!(e, BarError::BadSize { index: 0, size: 0x3000, .. }), "{e:?}");
        assert!(e.to_string().contains("0x3000"), "{e}");
    }

    #[test]
    fn new_rejects_tiny_memory_bar() {
        let e = BarSet::new(HeaderType::Type0, &[BarSpec::mem32(0, 8, false)]).expect_err("size");
        assert!(matches!(e, BarError::BadSize { size: 8, .. }), "{e:?}");
    }

    #[test]
    fn new_rejects_io_bar_above_256() {
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::io(0, 512)]).is_err());
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::io(0, 256)]).is_ok());
    }

    #[test]
    fn new_rejects_huge_mem32_bar() {
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::mem32(0, 1 << 32, false)]).is_err());
    }

    #[test]
    fn new_rejects_rom_size_out_of_bounds() {
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::rom(1024)]).is_err());
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::rom(32 << 20)]).is_err());
    }

    #[test]
    fn new_rejects_index_beyond_header() {
        let e = BarSet::new(HeaderType::Type0, &[BarSpec::mem32(6, 0x1000, false)]).expect_err("index");
        assert!(matches!(e, BarError::BadIndex { index: 6, .. }), "{e:?}");
        assert!(BarSet::new(HeaderType::Type1, &[BarSpec::mem32(2, 0x1000, false)]).is_err());
    }

    #[test]
    fn new_rejects_mem64_in_last_slot() {
        assert!(BarSet::new(HeaderType::Type0, &[BarSpec::mem64(5, 0x1000, false)]).is_err());
        assert!(BarSet::new(HeaderType::Type1, &[BarSpec::mem64(1, 0x1000, false)]).is_err());
        assert!(BarSet::new(HeaderType::Type1, &[BarSpec::mem64(0, 0x1000, false)]).is_ok());
    }

    #[test]
    fn new_rejects_rom_kind_at_bar_index() {
        let bad = BarSpec { index: 0, kind: BarKind::Rom, size: 0x800 };
        assert!(BarSet::new(HeaderType::Type0, &[bad]).is_err());
        let bad = BarSpec { index: ROM_BAR, kind: M32, size: 0x1000 };
        assert!(BarSet::new(HeaderType::Type0, &[bad]).is_err());
    }

    #[test]
    fn new_rejects_bar_on_upper_half_of_pair() {
        let e =
            BarSet::new(HeaderType::Type0, &[BarSpec::mem64(0, 0x1000, false), BarSpec::io(1, 4)]).expect_err("slot");
        assert_eq!(e, BarError::SlotTaken { index: 1, other: 0, slot: 1 });
    }

    #[test]
    fn new_rejects_duplicate_index() {
        let e =
            BarSet::new(HeaderType::Type0, &[BarSpec::io(3, 4), BarSpec::mem32(3, 0x1000, false)]).expect_err("dup");
        assert!(matches!(e, BarError::SlotTaken { slot: 3, .. }), "{e:?}");
    }

    #[test]
    fn specs_are_sorted_by_index() {
        let bars =
            BarSet::new(HeaderType::Type0, &[BarSpec::rom(0x800), BarSpec::io(4, 4), BarSpec::mem32(1, 0x1000, false)])
                .expect("bars");
        assert_eq!(bars.specs().iter().map(|s| s.index).collect::<Vec<_>>(), vec![1, 4, ROM_BAR]);
        assert_eq!(bars.spec(4).map(|s| s.kind), Some(BarKind::Io));
    }

    #[test]
    fn all_bar_kinds_decode_together() {
        let (mut c, mut bars) = cfg_with(
            HeaderType::Type0,
            &[
                BarSpec::io(0, 0x20),
                BarSpec::mem32(1, 0x1000, false),
                BarSpec::mem64(2, 0x4000, true),
                BarSpec::rom(0x800),
            ],
        );
        w(&mut c, 0x10, 0xc001);
        w(&mut c, 0x14, 0xfebf_0000);
        w(&mut c, 0x18, 0x0000_000c);
        w(&mut c, 0x1c, 0x1);
        w(&mut c, 0x30, 0xfeb8_0001);
        enable(&mut c, cmd::IO | cmd::MEMORY);
        let ch = bars.refresh(&c);
        assert_eq!(
            ch,
            vec![
                BarChange::Map(map(0, BarKind::Io, 0xc000, 0x20)),
                BarChange::Map(map(1, M32, 0xfebf_0000, 0x1000)),
                BarChange::Map(map(2, M64P, 0x1_0000_0000, 0x4000)),
                BarChange::Map(map(ROM_BAR, BarKind::Rom, 0xfeb8_0000, 0x800)),
            ]
        );
    }

    #[test]
    fn mapping_last_is_inclusive() {
        assert_eq!(map(0, M32, 0x1000, 0x1000).last(), 0x1fff);
    }
}
