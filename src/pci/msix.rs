//! MSI-X capability (ID 0x11): builder, table and PBA emulation, masking and pending delivery.
//!
//! Config side (/work/shared/reference/pcie-spec.md §7): +2 Message Control (table size − 1 in
//! bits 10:0 RO, function mask b14 RW, enable b15 RW); +4 table offset | BIR; +8 PBA offset | BIR
//! (both RO). The enable and function-mask bits live in config space; the table and PBA live here.
//!
//! MMIO side: the table is `table_size` 16-byte entries (address low, address high, data, vector
//! control with bit 0 = mask; the other control bits are RO 0, address bits 1:0 are RO 0); the PBA
//! is one bit per vector in qwords (RO; bits past the table size read 0). Accesses must be 4 or 8
//! bytes and naturally aligned; anything else reads all-ones / is dropped, with a rate-limited
//! warning. Entries (or PBA qwords) past the end read all-ones and ignore writes. Reset (any kind)
//! masks every entry and clears the PBA, as the spec requires.
//!
//! Delivery: [`Msix::trigger`] returns the message when MSI-X is enabled and neither the function
//! nor the vector is masked; when masked it sets the pending bit; when disabled it does nothing.
//! Pending vectors go out when unmasked: [`Msix::table_write`] returns the message when a vector
//! control write unmasks a pending vector, and [`Msix::deliver_pending`] (call it after a config
//! write touching Message Control) returns all deliverable ones.

use thiserror::Error;

use crate::device::ones;
use crate::pci::caps::{id, CapBlock};
use crate::pci::config::{ConfigSpace, RegSpec};
use crate::pci::msi::MsiMessage;

/// Largest table.
pub const MAX_TABLE_SIZE: u16 = 2048;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// Capability length.
pub const CAP_LEN: u16 = 12;

/// Message Control bits.
pub mod ctrl {
    /// Table size − 1.
    pub const TABLE_SIZE_MASK: u16 = 0x07ff;
    /// Function mask.
    pub const FUNCTION_MASK: u16 = 1 << 14;
    /// MSI-X enable.
    pub const ENABLE: u16 = 1 << 15;
}

/// Vector control: mask bit.
pub const VECTOR_MASKED: u32 = 1;

/// What kind of MSI-X capability to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsixConfig {
    /// Number of table entries (1..=2048).
    pub table_size: u16,
    /// BAR holding the table (0-5; the lower index of a 64-bit BAR).
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the PBA.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR (8-byte aligned).
    pub pba_offset: u32,
}

impl MsixConfig {
    /// Table and PBA in one BAR: table at 0, PBA at the next 2 KiB boundary after it (QEMU's
    /// `msix_init_exclusive_bar` layout).
    pub fn exclusive_bar(table_size: u16, bar: u8) -> Self {
        let table_len = u32::from(table_size) * ENTRY_SIZE as u32;
        let pba_offset = table_len.div_ceil(2048).max(1) * 2048;
        MsixConfig { table_size, table_bar: bar, table_offset: 0, pba_bar: bar, pba_offset }
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * ENTRY_SIZE
    }

    /// Bytes of the PBA (whole qwords).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }

    /// Checks sizes, BIRs, alignment and table/PBA overlap.
    pub fn validate(&self) -> Result<(), MsixError> {
        if self.table_size == 0 || self.table_size > MAX_TABLE_SIZE {
            return Err(MsixError::BadTableSize(self.table_size));
        }
        for (what, bar, offset) in
            [("table", self.table_bar, self.table_offset), ("PBA", self.pba_bar, self.pba_offset)]
        {
            if bar > 5 {
                return Err(MsixError::BadBar { what, bar });
            }
            if offset % 8 != 0 {
                return Err(MsixError::Misaligned { what, offset });
            }
        }
        if self.table_bar == self.pba_bar {
            let (t, p) = (u64::from(self.table_offset), u64::from(self.pba_offset));
            if t < p + self.pba_len() && p < t + self.table_len() {
                return Err(MsixError::Overlap { bar: self.table_bar, table: self.table_offset, pba: self.pba_offset });
            }
        }
        Ok(())
    }

    /// The capability block (bytes and masks) for a chain builder.
    pub fn cap_block(&self) -> Result<CapBlock, MsixError> {
        self.validate()?;
        Ok(CapBlock::std(id::MSIX, CAP_LEN)
            .reg(RegSpec::ro(2, 2, u32::from(self.table_size - 1)).rw(u32::from(ctrl::ENABLE | ctrl::FUNCTION_MASK)))
            .reg(RegSpec::ro(4, 4, self.table_offset | u32::from(self.table_bar)))
            .reg(RegSpec::ro(8, 4, self.pba_offset | u32::from(self.pba_bar))))
    }
}

/// MSI-X configuration errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MsixError {
    /// Table size 0 or above 2048.
    #[error("MSI-X table size {0} is invalid (expected 1..=2048)")]
    BadTableSize(u16),
    /// BIR above 5.
    #[error("MSI-X {what} BAR {bar} is invalid (expected 0-5)")]
    BadBar {
        /// "table" or "PBA".
        what: &'static str,
        /// BAR.
        bar: u8,
    },
    /// Offset not 8-byte aligned.
    #[error("MSI-X {what} offset {offset:#x} is not 8-byte aligned")]
    Misaligned {
        /// "table" or "PBA".
        what: &'static str,
        /// Offset.
        offset: u32,
    },
    /// Table and PBA overlap.
    #[error("MSI-X table at {table:#x} and PBA at {pba:#x} overlap in BAR {bar}")]
    Overlap {
        /// BAR.
        bar: u8,
        /// Table offset.
        table: u32,
        /// PBA offset.
        pba: u32,
    },
}

/// One table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsixEntry {
    /// Message address, low dword.
    pub addr_lo: u32,
    /// Message address, high dword.
    pub addr_hi: u32,
    /// Message data.
    pub data: u32,
    /// Vector control (bit 0 = masked).
    pub ctrl: u32,
}

impl Default for MsixEntry {
    fn default() -> Self {
        MsixEntry { addr_lo: 0, addr_hi: 0, data: 0, ctrl: VECTOR_MASKED }
    }
}

impl MsixEntry {
    /// The entry's message.
    pub fn message(&self) -> MsiMessage {
        MsiMessage { addr: (u64::from(self.addr_hi) << 32) | u64::from(self.addr_lo), data: self.data }
    }
    /// Whether the vector is masked.
    pub fn masked(&self) -> bool {
        self.ctrl & VECTOR_MASKED != 0
    }
    fn dword(&self, i: u64) -> u32 {
        match i {
            0 => self.addr_lo,
            1 => self.addr_hi,
            2 => self.data,
            _ => self.ctrl,
        }
    }
    fn set_dword(&mut self, i: u64, v: u32) {
        match i {
            0 => self.addr_lo = v & !0x3,
            1 => self.addr_hi = v,
            2 => self.data = v,
            _ => self.ctrl = v & VECTOR_MASKED,
        }
    }
}

/// Which MSI-X structure a BAR access hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsixRegion {
    /// The vector table.
    Table,
    /// The pending bit array.
    Pba,
}

/// Live MSI-X state of a function whose capability is at `off`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msix {
    off: u16,
    config: MsixConfig,
    entries: Vec<MsixEntry>,
    pba: Vec<u64>,
}

fn access_ok(rel: u64, size: u8) -> bool {
    matches!(size, 4 | 8) && rel % u64::from(size) == 0
}

impl Msix {
    /// Appends the table and PBA to a state blob.
    pub fn save(&self, w: &mut crate::state::Writer) {
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            w.u32(e.addr_lo);
            w.u32(e.addr_hi);
            w.u32(e.data);
            w.u32(e.ctrl);
        }
        w.u32(self.pba.len() as u32);
        for p in &self.pba {
            w.u64(*p);
        }
    }

    /// Restores what [`Msix::save`] wrote; the table size must match.
    pub fn load(&mut self, r: &mut crate::state::Reader<'_>) -> Result<(), crate::state::StateError> {
        let n = r.u32()? as usize;
        if n != self.entries.len() {
            return Err(crate::state::StateError::Mismatch(format!(
                "MSI-X table has {} entries here, {n} in the blob",
                self.entries.len()
            )));
        }
        for e in self.entries.iter_mut() {
            *e = MsixEntry { addr_lo: r.u32()?, addr_hi: r.u32()?, data: r.u32()?, ctrl: r.u32()? };
        }
        let n = r.u32()? as usize;
        if n != self.pba.len() {
            return Err(crate::state::StateError::Mismatch(format!(
                "MSI-X PBA of {} words here, {n} in the blob",
                self.pba.len()
            )));
        }
        for p in self.pba.iter_mut() {
            *p = r.u64()?;
        }
        Ok(())
    }

    /// State for the capability installed at `off` (use the offset the chain builder returned).
    pub fn new(off: u16, config: MsixConfig) -> Result<Self, MsixError> {
        config.validate()?;
        let pba_words = usize::from(config.table_size).div_ceil(64);
        Ok(Msix {
            off,
            config,
            entries: vec![MsixEntry::default(); usize::from(config.table_size)],
            pba: vec![0; pba_words],
        })
    }

    /// Capability offset.
    pub fn offset(&self) -> u16 {
        self.off
    }

    /// Configuration.
    pub fn config(&self) -> &MsixConfig {
        &self.config
    }

    /// Message Control.
    pub fn control(&self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.off.saturating_add(2))
    }

    /// Whether the guest enabled MSI-X.
    pub fn enabled(&self, cfg: &ConfigSpace) -> bool {
        self.control(cfg) & ctrl::ENABLE != 0
    }

    /// Whether the function mask is set.
    pub fn function_masked(&self, cfg: &ConfigSpace) -> bool {
        self.control(cfg) & ctrl::FUNCTION_MASK != 0
    }

    /// Whether a config access `[off, off+size)` touches Message Control.
    pub fn touches_control(&self, off: u16, size: u8) -> bool {
        let (a, b) = (u32::from(off), u32::from(off) + u32::from(size));
        let c = u32::from(self.off) + 2;
        a < c + 2 && c < b
    }

    /// Entry `vector`.
    pub fn entry(&self, vector: u16) -> Option<&MsixEntry> {
        self.entries.get(usize::from(vector))
    }

    /// Whether `vector`'s pending bit is set.
    pub fn is_pending(&self, vector: u16) -> bool {
        let (w, b) = (usize::from(vector / 64), vector % 64);
        self.pba.get(w).is_some_and(|q| (q >> b) & 1 != 0)
    }

    fn set_pending(&mut self, vector: u16, on: bool) {
        let (w, b) = (usize::from(vector / 64), vector % 64);
        if let Some(q) = self.pba.get_mut(w) {
            if on {
                *q |= 1 << b;
            } else {
                *q &= !(1 << b);
            }
        }
    }

    /// Whether `vector` is masked (function mask or its own mask bit).
    pub fn is_masked(&self, cfg: &ConfigSpace, vector: u16) -> bool {
        self.function_masked(cfg) || self.entry(vector).is_none_or(MsixEntry::masked)
    }

    /// Which structure `[off, off+size)` in BAR `bar` falls in, and the offset inside it. The
    /// access must start inside the structure (its width is checked by the handlers).
    pub fn region(&self, bar: u8, off: u64) -> Option<(MsixRegion, u64)> {
        let c = &self.config;
        let inside = |b: u8, start: u32, len: u64| {
            (bar == b).then(|| off.checked_sub(u64::from(start))).flatten().filter(|rel| *rel < len)
        };
        if let Some(rel) = inside(c.table_bar, c.table_offset, c.table_len()) {
            return Some((MsixRegion::Table, rel));
        }
        inside(c.pba_bar, c.pba_offset, c.pba_len()).map(|rel| (MsixRegion::Pba, rel))
    }

    /// A BAR read: `Some(value)` if it hit the table or PBA, `None` if it is not MSI-X's.
    pub fn mmio_read(&self, bar: u8, off: u64, size: u8) -> Option<u64> {
        Some(match self.region(bar, off)? {
            (MsixRegion::Table, rel) => self.table_read(rel, size),
            (MsixRegion::Pba, rel) => self.pba_read(rel, size),
        })
    }

    /// A BAR write: `Some(messages to deliver)` if it hit the table or PBA, `None` otherwise.
    pub fn mmio_write(&mut self, cfg: &ConfigSpace, bar: u8, off: u64, size: u8, val: u64) -> Option<Vec<MsiMessage>> {
        Some(match self.region(bar, off)? {
            (MsixRegion::Table, rel) => self.table_write(cfg, rel, size, val),
            (MsixRegion::Pba, rel) => {
                crate::guest_warn!("msix: write of {size} bytes to PBA offset {rel:#x} ignored (PBA is read-only)");
                Vec::new()
            }
        })
    }

    /// A read of `size` bytes at `rel` within the table.
    pub fn table_read(&self, rel: u64, size: u8) -> u64 {
        if !access_ok(rel, size) {
            crate::guest_warn!("msix: table read at {rel:#x} of size {size} ignored (need aligned 4 or 8 bytes)");
            return ones(size);
        }
        let Some(e) = usize::try_from(rel / ENTRY_SIZE).ok().and_then(|i| self.entries.get(i)) else {
            return ones(size);
        };
        let dw = (rel % ENTRY_SIZE) / 4;
        match size {
            4 => u64::from(e.dword(dw)),
            _ => u64::from(e.dword(dw)) | (u64::from(e.dword(dw + 1)) << 32),
        }
    }

    /// A write of `size` bytes at `rel` within the table. Returns the message of a pending vector
    /// this write unmasked (if MSI-X is enabled and the function unmasked).
    pub fn table_write(&mut self, cfg: &ConfigSpace, rel: u64, size: u8, val: u64) -> Vec<MsiMessage> {
        if !access_ok(rel, size) {
            crate::guest_warn!("msix: table write at {rel:#x} of size {size} ignored (need aligned 4 or 8 bytes)");
            return Vec::new();
        }
        let Some(vector) = u16::try_from(rel / ENTRY_SIZE).ok().filter(|v| *v < self.config.table_size) else {
            crate::guest_warn!("msix: table write at {rel:#x} beyond {} entries ignored", self.config.table_size);
            return Vec::new();
        };
        let dw = (rel % ENTRY_SIZE) / 4;
        let Some(e) = self.entries.get_mut(usize::from(vector)) else {
            return Vec::new();
        };
        e.set_dword(dw, val as u32);
        if size == 8 {
            e.set_dword(dw + 1, (val >> 32) as u32);
        }
        let touched_ctrl = dw == 3 || (size == 8 && dw == 2);
        if touched_ctrl {
            self.deliver_vector(cfg, vector).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// A read of `size` bytes at `rel` within the PBA.
    pub fn pba_read(&self, rel: u64, size: u8) -> u64 {
        if !access_ok(rel, size) {
            crate::guest_warn!("msix: PBA read at {rel:#x} of size {size} ignored (need aligned 4 or 8 bytes)");
            return ones(size);
        }
        let Some(q) = usize::try_from(rel / 8).ok().and_then(|i| self.pba.get(i)) else {
            return ones(size);
        };
        match size {
            4 => (q >> ((rel % 8) * 8)) & 0xffff_ffff,
            _ => *q,
        }
    }

    fn deliver_vector(&mut self, cfg: &ConfigSpace, vector: u16) -> Option<MsiMessage> {
        if !self.enabled(cfg) || self.is_masked(cfg, vector) || !self.is_pending(vector) {
            return None;
        }
        self.set_pending(vector, false);
        self.entry(vector).map(MsixEntry::message)
    }

    /// The function wants to signal `vector`: the message if enabled and unmasked; `None` with
    /// the pending bit set if masked; `None` and nothing recorded if disabled or out of range.
    pub fn trigger(&mut self, cfg: &ConfigSpace, vector: u16) -> Option<MsiMessage> {
        if vector >= self.config.table_size || !self.enabled(cfg) {
            return None;
        }
        if self.is_masked(cfg, vector) {
            self.set_pending(vector, true);
            return None;
        }
        self.entry(vector).map(MsixEntry::message)
    }

    /// Delivers every pending vector that is now deliverable (enabled, function and vector
    /// unmasked), clearing its pending bit.
    pub fn deliver_pending(&mut self, cfg: &ConfigSpace) -> Vec<MsiMessage> {
        if !self.enabled(cfg) || self.function_masked(cfg) {
            return Vec::new();
        }
        (0..self.config.table_size).filter_map(|v| self.deliver_vector(cfg, v)).collect()
    }

    /// Masks every entry and clears the PBA (any reset kind).
    pub fn reset(&mut self) {
        self.entries.fill(MsixEntry::default());
        self.pba.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::caps::CapChainBuilder;
    use crate::pci::config::ConfigKind;

    const OFF: u16 = 0x48;

    fn setup(config: MsixConfig) -> (ConfigSpace, Msix) {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        let mut b = CapChainBuilder::standard();
        let off = b.add_at(OFF, config.cap_block().expect("block")).expect("add");
        b.install(&mut c).expect("install");
        (c, Msix::new(off, config).expect("msix"))
    }

    fn basic(n: u16) -> (ConfigSpace, Msix) {
        setup(MsixConfig::exclusive_bar(n, 0))
    }

    fn set_ctrl(c: &mut ConfigSpace, v: u16) {
        assert!(!c.write(OFF + 2, 2, u32::from(v)).is_ignored());
    }

    /// Programs entry `v` with address 0xfee0_0000 + v*0x1000 and data 0x40+v, unmasked.
    fn program(m: &mut Msix, c: &ConfigSpace, v: u16, masked: bool) {
        let base = u64::from(v) * 16;
        let _ = m.table_write(c, base, 8, 0xfee0_0000 + u64::from(v) * 0x1000);
        let _ = m.table_write(c, base + 8, 4, 0x40 + u64::from(v));
        let _ = m.table_write(c, base + 12, 4, u64::from(masked));
    }

    fn msg(v: u16) -> MsiMessage {
        MsiMessage { addr: 0xfee0_0000 + u64::from(v) * 0x1000, data: 0x40 + u32::from(v) }
    }

    #[test]
    fn msix_cap_layout() {
        let cfg = MsixConfig { table_size: 8, table_bar: 2, table_offset: 0x2000, pba_bar: 4, pba_offset: 0x800 };
        let (c, _) = setup(cfg);
        assert_eq!(c.get_u8(OFF), id::MSIX);
        assert_eq!(c.get_u16(OFF + 2), 7);
        assert_eq!(c.get_u32(OFF + 4), 0x2002);
        assert_eq!(c.get_u32(OFF + 8), 0x804);
    }

    #[test]
    fn msix_control_only_enable_and_mask_writable() {
        let (mut c, _) = basic(4);
        set_ctrl(&mut c, 0xffff);
        assert_eq!(c.get_u16(OFF + 2), 0xc003);
        assert!(!c.write(OFF + 4, 4, 0xffff_ffff).is_ignored());
        assert_eq!(c.get_u32(OFF + 4), 0);
    }

    #[test]
    fn msix_exclusive_bar_layout_places_pba_after_table() {
        assert_eq!(MsixConfig::exclusive_bar(1, 0).pba_offset, 0x800);
        assert_eq!(MsixConfig::exclusive_bar(128, 0).pba_offset, 0x800);
        assert_eq!(MsixConfig::exclusive_bar(129, 0).pba_offset, 0x1000);
        assert_eq!(MsixConfig::exclusive_bar(65, 0).pba_len(), 16);
    }

    #[test]
    fn msix_config_rejects_bad_table_size() {
        for n in [0u16, 2049] {
            let cfg = MsixConfig { table_size: n, ..MsixConfig::exclusive_bar(1, 0) };
            assert_eq!(cfg.validate(), Err(MsixError::BadTableSize(n)));
        }
    }

    #[test]
    fn msix_config_rejects_bad_bir() {
        let cfg = MsixConfig { pba_bar: 6, ..MsixConfig::exclusive_bar(1, 0) };
        assert_eq!(cfg.validate(), Err(MsixError::BadBar { what: "PBA", bar: 6 }));
    }

    #[test]
    fn msix_config_rejects_misaligned_offset() {
        let cfg = MsixConfig { table_offset: 0x1004, ..MsixConfig::exclusive_bar(1, 0) };
        let e = cfg.validate().expect_err("align");
        assert_eq!(e, MsixError::Misaligned { what: "table", offset: 0x1004 });
        assert!(e.to_string().contains("0x1004"), "{e}");
    }

    #[test]
    fn msix_config_rejects_table_pba_overlap() {
        let cfg = MsixConfig { table_size: 4, table_bar: 0, table_offset: 0, pba_bar: 0, pba_offset: 0x38 };
        assert!(matches!(cfg.validate(), Err(MsixError::Overlap { .. })));
        let ok = MsixConfig { pba_offset: 0x40, ..cfg };
        assert_eq!(ok.validate(), Ok(()));
        let other_bar = MsixConfig { pba_bar: 1, ..cfg };
        assert_eq!(other_bar.validate(), Ok(()));
    }

    #[test]
    fn msix_entries_start_masked() {
        let (_, m) = basic(2);
        assert_eq!(m.table_read(12, 4), 1);
        assert_eq!(m.table_read(0, 8), 0);
    }

    #[test]
    fn msix_table_dword_write_reads_back() {
        let (c, mut m) = basic(2);
        let _ = m.table_write(&c, 16, 4, 0xfee0_1000);
        let _ = m.table_write(&c, 20, 4, 0x1);
        let _ = m.table_write(&c, 24, 4, 0x4041);
        assert_eq!(m.table_read(16, 4), 0xfee0_1000);
        assert_eq!(m.table_read(20, 4), 0x1);
        assert_eq!(m.table_read(24, 4), 0x4041);
        assert_eq!(m.entry(1).map(MsixEntry::message), Some(MsiMessage { addr: 0x1_fee0_1000, data: 0x4041 }));
    }

    #[test]
    fn msix_table_qword_write_reads_back() {
        let (c, mut m) = basic(1);
        let _ = m.table_write(&c, 0, 8, 0x0000_0002_fee0_0000);
        let _ = m.table_write(&c, 8, 8, 0x0000_0000_0000_0055);
        assert_eq!(m.table_read(0, 8), 0x0000_0002_fee0_0000);
        assert_eq!(m.table_read(8, 8), 0x55);
        assert_eq!(m.table_read(4, 4), 2);
    }

    #[test]
    fn msix_table_unaligned_access_ignored() {
        let (c, mut m) = basic(1);
        let _ = m.table_write(&c, 2, 4, 0xffff_ffff);
        let _ = m.table_write(&c, 4, 8, u64::MAX);
        assert_eq!(m.table_read(0, 8), 0);
        assert_eq!(m.table_read(2, 4), 0xffff_ffff);
        assert_eq!(m.table_read(4, 8), u64::MAX);
    }

    #[test]
    fn msix_table_narrow_access_ignored() {
        let (c, mut m) = basic(1);
        let _ = m.table_write(&c, 0, 1, 0xff);
        let _ = m.table_write(&c, 0, 2, 0xffff);
        assert_eq!(m.table_read(0, 4), 0);
        assert_eq!(m.table_read(0, 1), 0xff);
        assert_eq!(m.table_read(0, 2), 0xffff);
    }

    #[test]
    fn msix_table_past_size_reads_ones_and_ignores_writes() {
        let (c, mut m) = basic(2);
        let _ = m.table_write(&c, 32, 4, 0x1234);
        assert_eq!(m.table_read(32, 4), 0xffff_ffff);
        assert_eq!(m.table_read(u64::MAX - 7, 8), u64::MAX);
        assert_eq!(m.entry(2), None);
    }

    #[test]
    fn msix_vector_control_reserved_bits_read_only() {
        let (c, mut m) = basic(1);
        let _ = m.table_write(&c, 12, 4, 0xffff_fffe);
        assert_eq!(m.table_read(12, 4), 0);
    }

    #[test]
    fn msix_address_low_bits_read_only() {
        let (c, mut m) = basic(1);
        let _ = m.table_write(&c, 0, 4, 0xfee0_0003);
        assert_eq!(m.table_read(0, 4), 0xfee0_0000);
    }

    #[test]
    fn msix_trigger_when_enabled_and_unmasked_returns_message() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 3, false);
        assert_eq!(m.trigger(&c, 3), Some(msg(3)));
        assert!(!m.is_pending(3));
    }

    #[test]
    fn msix_trigger_when_disabled_does_nothing() {
        let (c, mut m) = basic(4);
        program(&mut m, &c, 0, false);
        assert_eq!(m.trigger(&c, 0), None);
        assert!(!m.is_pending(0));
    }

    #[test]
    fn msix_trigger_out_of_range_does_nothing() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE);
        assert_eq!(m.trigger(&c, 4), None);
        assert_eq!(m.pba_read(0, 8), 0);
    }

    #[test]
    fn msix_trigger_masked_vector_sets_pba_bit() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 2, true);
        assert_eq!(m.trigger(&c, 2), None);
        assert!(m.is_pending(2));
        assert_eq!(m.pba_read(0, 8), 0b100);
    }

    #[test]
    fn msix_trigger_function_masked_sets_pba_bit() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        program(&mut m, &c, 1, false);
        assert_eq!(m.trigger(&c, 1), None);
        assert!(m.is_pending(1));
    }

    #[test]
    fn msix_unmasking_entry_delivers_pending_vector() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 1, true);
        let _ = m.trigger(&c, 1);
        assert_eq!(m.table_write(&c, 16 + 12, 4, 0), vec![msg(1)]);
        assert!(!m.is_pending(1));
    }

    #[test]
    fn msix_unmasking_entry_by_qword_write_delivers_pending_vector() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 0, true);
        let _ = m.trigger(&c, 0);
        assert_eq!(m.table_write(&c, 8, 8, 0x40), vec![msg(0)]);
    }

    #[test]
    fn msix_unmasking_entry_under_function_mask_keeps_pending() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        program(&mut m, &c, 0, true);
        let _ = m.trigger(&c, 0);
        assert!(m.table_write(&c, 12, 4, 0).is_empty());
        assert!(m.is_pending(0));
    }

    #[test]
    fn msix_clearing_function_mask_delivers_all_pending() {
        let (mut c, mut m) = basic(4);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        for v in 0..4 {
            program(&mut m, &c, v, v == 2);
            let _ = m.trigger(&c, v);
        }
        set_ctrl(&mut c, ctrl::ENABLE);
        assert_eq!(m.deliver_pending(&c), vec![msg(0), msg(1), msg(3)]);
        assert!(m.is_pending(2), "its own mask still holds it");
    }

    #[test]
    fn msix_deliver_pending_while_disabled_delivers_nothing() {
        let (mut c, mut m) = basic(1);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 0, true);
        let _ = m.trigger(&c, 0);
        set_ctrl(&mut c, 0);
        let _ = m.table_write(&c, 12, 4, 0);
        assert!(m.deliver_pending(&c).is_empty());
        assert!(m.is_pending(0));
    }

    #[test]
    fn msix_address_write_does_not_deliver() {
        let (mut c, mut m) = basic(1);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        program(&mut m, &c, 0, false);
        let _ = m.trigger(&c, 0);
        set_ctrl(&mut c, ctrl::ENABLE);
        assert!(m.table_write(&c, 0, 4, 0xfee0_0000).is_empty(), "only control writes deliver");
    }

    #[test]
    fn msix_pba_dword_reads_select_half() {
        let (mut c, mut m) = basic(64);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        let _ = m.trigger(&c, 33);
        let _ = m.trigger(&c, 0);
        assert_eq!(m.pba_read(0, 4), 1);
        assert_eq!(m.pba_read(4, 4), 2);
    }

    #[test]
    fn msix_pba_second_qword_for_large_tables() {
        let (mut c, mut m) = basic(100);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        let _ = m.trigger(&c, 99);
        assert_eq!(m.pba_read(8, 8), 1 << 35);
        assert_eq!(m.pba_read(16, 8), u64::MAX, "past the PBA");
    }

    #[test]
    fn msix_pba_bad_width_reads_all_ones() {
        let (_, m) = basic(1);
        assert_eq!(m.pba_read(0, 2), 0xffff);
        assert_eq!(m.pba_read(2, 4), 0xffff_ffff);
    }

    #[test]
    fn msix_pba_write_is_ignored() {
        let (mut c, mut m) = basic(1);
        set_ctrl(&mut c, ctrl::ENABLE | ctrl::FUNCTION_MASK);
        let _ = m.trigger(&c, 0);
        let pba = u64::from(m.config().pba_offset);
        assert_eq!(m.mmio_write(&c, 0, pba, 8, 0), Some(Vec::new()));
        assert!(m.is_pending(0));
    }

    #[test]
    fn msix_mmio_dispatches_by_bar_and_offset() {
        let cfg = MsixConfig { table_size: 2, table_bar: 1, table_offset: 0x1000, pba_bar: 3, pba_offset: 0x100 };
        let (c, mut m) = setup(cfg);
        assert_eq!(m.region(1, 0x1010), Some((MsixRegion::Table, 0x10)));
        assert_eq!(m.region(3, 0x100), Some((MsixRegion::Pba, 0)));
        assert_eq!(m.region(1, 0x1020), None, "past the table");
        assert_eq!(m.region(3, 0x1010), None, "wrong BAR");
        assert_eq!(m.region(1, 0xff8), None, "before the table");
        assert_eq!(m.mmio_write(&c, 1, 0x1018, 4, 0x77), Some(Vec::new()));
        assert_eq!(m.mmio_read(1, 0x1018, 4), Some(0x77));
        assert_eq!(m.mmio_read(0, 0, 4), None);
    }

    #[test]
    fn msix_reset_masks_entries_and_clears_pba() {
        let (mut c, mut m) = basic(2);
        set_ctrl(&mut c, ctrl::ENABLE);
        program(&mut m, &c, 0, true);
        let _ = m.trigger(&c, 0);
        m.reset();
        assert_eq!(m.entry(0), Some(&MsixEntry::default()));
        assert!(!m.is_pending(0));
    }

    #[test]
    fn msix_touches_control_only() {
        let (_, m) = basic(1);
        assert!(m.touches_control(OFF, 4));
        assert!(m.touches_control(OFF + 3, 1));
        assert!(!m.touches_control(OFF + 4, 4));
        assert!(!m.touches_control(OFF, 2));
    }
}
