//! MSI capability (ID 0x05): builder and live logic.
//!
//! All MSI state lives in config space (enable, MME, address, data, mask and pending bits), so
//! resets and snapshots need nothing extra. Layout (/work/shared/reference/pcie-spec.md §7):
//! +2 Message Control (enable b0 RW, MMC[3:1] RO, MME[6:4] RW, 64-bit b7 RO, per-vector mask b8
//! RO); +4 address low (bits 1:0 RO 0); 64-bit: +8 address high, +0xC data; 32-bit: +8 data;
//! then (with per-vector masking) mask and pending (pending is RO to the guest, set by the model).
//!
//! Decisions:
//! - [`Msi::trigger`] on a **disabled** capability returns nothing and sets no pending bit (the
//!   function would be using INTx). On a masked vector it sets the pending bit instead.
//! - Vectors are numbered within the enabled count (`1 << min(MME, MMC)`); a vector at or above it
//!   is dropped. With several vectors, the data's low log2(n) bits are replaced by the vector.
//! - Pending vectors are delivered (and their pending bits cleared) by [`Msi::deliver_pending`],
//!   which a config write touching the capability calls; it only delivers while MSI is enabled.
//! - The 16 upper bits after the data register (extended message data) are RO 0.

use thiserror::Error;

use crate::pci::caps::{id, CapBlock};
use crate::pci::config::{ConfigSpace, RegSpec};

/// An MSI/MSI-X message: a dword write of `data` to `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiMessage {
    /// Address.
    pub addr: u64,
    /// Data.
    pub data: u32,
}

/// Message Control bits.
pub mod ctrl {
    /// MSI enable.
    pub const ENABLE: u16 = 1 << 0;
    /// Multiple Message Capable field.
    pub const MMC_MASK: u16 = 0x7 << 1;
    /// Multiple Message Enable field.
    pub const MME_MASK: u16 = 0x7 << 4;
    /// MME shift.
    pub const MME_SHIFT: u16 = 4;
    /// 64-bit address capable.
    pub const ADDR64: u16 = 1 << 7;
    /// Per-vector masking capable.
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// What kind of MSI capability to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiConfig {
    /// Vectors requested: 1, 2, 4, 8, 16 or 32.
    pub vectors: u8,
    /// 64-bit address capable.
    pub addr64: bool,
    /// Per-vector masking capable.
    pub per_vector_mask: bool,
}

impl Default for MsiConfig {
    fn default() -> Self {
        MsiConfig { vectors: 1, addr64: true, per_vector_mask: false }
    }
}

/// MSI configuration errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MsiError {
    /// Vector count not a power of two in 1..=32.
    #[error("MSI vector count {0} is invalid (expected 1, 2, 4, 8, 16 or 32)")]
    BadVectorCount(u8),
}

impl MsiConfig {
    /// Checks the vector count.
    pub fn validate(&self) -> Result<(), MsiError> {
        if self.vectors == 0 || self.vectors > 32 || !self.vectors.is_power_of_two() {
            return Err(MsiError::BadVectorCount(self.vectors));
        }
        Ok(())
    }

    fn mmc(&self) -> u16 {
        self.vectors.trailing_zeros() as u16
    }

    /// Capability length: 0x0A, 0x0E, 0x14 or 0x18.
    pub fn cap_len(&self) -> u16 {
        match (self.addr64, self.per_vector_mask) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }

    /// Offset of the data register.
    pub fn data_off(&self) -> u16 {
        if self.addr64 {
            0x0c
        } else {
            0x08
        }
    }

    /// Offset of the mask register (meaningful with per-vector masking).
    pub fn mask_off(&self) -> u16 {
        self.data_off() + 4
    }

    /// Offset of the pending register (meaningful with per-vector masking).
    pub fn pending_off(&self) -> u16 {
        self.mask_off() + 4
    }

    fn vector_bits(&self) -> u32 {
        1u32.checked_shl(u32::from(self.vectors)).map_or(u32::MAX, |v| v - 1)
    }

    /// The capability block (bytes and masks) for a chain builder.
    pub fn cap_block(&self) -> Result<CapBlock, MsiError> {
        self.validate()?;
        let mut control = self.mmc() << 1;
        if self.addr64 {
            control |= ctrl::ADDR64;
        }
        if self.per_vector_mask {
            control |= ctrl::PER_VECTOR_MASK;
        }
        let mut cap = CapBlock::std(id::MSI, self.cap_len())
            .reg(RegSpec::ro(2, 2, u32::from(control)).rw(u32::from(ctrl::ENABLE | ctrl::MME_MASK)))
            .reg(RegSpec::ro(4, 4, 0).rw(0xffff_fffc))
            .reg(RegSpec::ro(self.data_off(), 2, 0).rw(0xffff));
        if self.addr64 {
            cap = cap.reg(RegSpec::ro(8, 4, 0).rw(0xffff_ffff));
        }
        if self.per_vector_mask {
            cap = cap.reg(RegSpec::ro(self.mask_off(), 4, 0).rw(self.vector_bits()));
            cap = cap.reg(RegSpec::ro(self.pending_off(), 4, 0));
        }
        Ok(cap)
    }
}

/// Live view of an installed MSI capability at `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msi {
    off: u16,
    config: MsiConfig,
}

impl Msi {
    /// The capability as installed at `off` (use the offset the chain builder returned).
    pub fn new(off: u16, config: MsiConfig) -> Result<Self, MsiError> {
        config.validate()?;
        Ok(Msi { off, config })
    }

    /// Capability offset.
    pub fn offset(&self) -> u16 {
        self.off
    }

    /// Configuration.
    pub fn config(&self) -> &MsiConfig {
        &self.config
    }

    fn at(&self, rel: u16) -> u16 {
        self.off.saturating_add(rel)
    }

    /// Message Control.
    pub fn control(&self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.at(2))
    }

    /// Whether the guest enabled MSI.
    pub fn enabled(&self, cfg: &ConfigSpace) -> bool {
        self.control(cfg) & ctrl::ENABLE != 0
    }

    /// Vectors enabled: `1 << min(MME, MMC)` (MME above MMC is clamped).
    pub fn enabled_vectors(&self, cfg: &ConfigSpace) -> u32 {
        let mme = (self.control(cfg) & ctrl::MME_MASK) >> ctrl::MME_SHIFT;
        1 << mme.min(self.config.mmc())
    }

    /// Whether a config access `[off, off+size)` touches the capability.
    pub fn touches(&self, off: u16, size: u8) -> bool {
        let (a, b) = (u32::from(off), u32::from(off) + u32::from(size));
        a < u32::from(self.off) + u32::from(self.config.cap_len()) && u32::from(self.off) < b
    }

    /// Whether `vector` is masked (never, without per-vector masking).
    pub fn is_masked(&self, cfg: &ConfigSpace, vector: u8) -> bool {
        self.config.per_vector_mask && bit(cfg.get_u32(self.at(self.config.mask_off())), vector)
    }

    /// Whether `vector`'s pending bit is set.
    pub fn is_pending(&self, cfg: &ConfigSpace, vector: u8) -> bool {
        self.config.per_vector_mask && bit(cfg.get_u32(self.at(self.config.pending_off())), vector)
    }

    /// The message for `vector`, if it is within the enabled vectors (regardless of enable/mask).
    pub fn message(&self, cfg: &ConfigSpace, vector: u8) -> Option<MsiMessage> {
        let n = self.enabled_vectors(cfg);
        if u32::from(vector) >= n {
            return None;
        }
        let lo = u64::from(cfg.get_u32(self.at(4)) & !0x3);
        let hi = if self.config.addr64 { u64::from(cfg.get_u32(self.at(8))) } else { 0 };
        let data = u32::from(cfg.get_u16(self.at(self.config.data_off())));
        Some(MsiMessage { addr: (hi << 32) | lo, data: (data & !(n - 1)) | u32::from(vector) })
    }

    fn set_pending(&self, cfg: &mut ConfigSpace, vector: u8, on: bool) {
        let off = self.at(self.config.pending_off());
        let b = 1u32.checked_shl(u32::from(vector)).unwrap_or(0);
        let v = cfg.get_u32(off);
        cfg.set_u32(off, if on { v | b } else { v & !b });
    }

    /// The function wants to signal `vector`: the message if MSI is enabled and the vector
    /// unmasked; `None` (pending bit set) if masked; `None` (nothing recorded) if disabled or the
    /// vector is not enabled.
    pub fn trigger(&self, cfg: &mut ConfigSpace, vector: u8) -> Option<MsiMessage> {
        if !self.enabled(cfg) {
            return None;
        }
        let msg = self.message(cfg, vector)?;
        if self.is_masked(cfg, vector) {
            self.set_pending(cfg, vector, true);
            return None;
        }
        Some(msg)
    }

    /// Delivers every pending, unmasked, enabled vector (clearing its pending bit). Call after a
    /// config write touching the capability.
    pub fn deliver_pending(&self, cfg: &mut ConfigSpace) -> Vec<MsiMessage> {
        if !self.config.per_vector_mask || !self.enabled(cfg) {
            return Vec::new();
        }
        let n = self.enabled_vectors(cfg).min(32) as u8;
        let mut out = Vec::new();
        for v in 0..n {
            if self.is_pending(cfg, v) && !self.is_masked(cfg, v) {
                if let Some(m) = self.message(cfg, v) {
                    self.set_pending(cfg, v, false);
                    out.push(m);
                }
            }
        }
        out
    }
}

fn bit(word: u32, n: u8) -> bool {
    word.checked_shr(u32::from(n)).is_some_and(|v| v & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::caps::CapChainBuilder;
    use crate::pci::config::{ConfigKind, ResetKind};

    const OFF: u16 = 0x50;

    fn setup(config: MsiConfig) -> (ConfigSpace, Msi) {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        let mut b = CapChainBuilder::standard();
        let off = b.add_at(OFF, config.cap_block().expect("block")).expect("add");
        b.install(&mut c).expect("install");
        (c, Msi::new(off, config).expect("msi"))
    }

    fn cfg64(vectors: u8, pvm: bool) -> MsiConfig {
        MsiConfig { vectors, addr64: true, per_vector_mask: pvm }
    }

    fn w(c: &mut ConfigSpace, off: u16, size: u8, val: u32) {
        assert!(!c.write(off, size, val).is_ignored());
    }

    /// Programs address/data and enables with `mme`.
    fn program(c: &mut ConfigSpace, m: &Msi, mme: u16) {
        w(c, OFF + 4, 4, 0xfee0_1000);
        if m.config().addr64 {
            w(c, OFF + 8, 4, 0x1);
        }
        w(c, OFF + m.config().data_off(), 2, 0x4060);
        w(c, OFF + 2, 2, u32::from(ctrl::ENABLE | (mme << ctrl::MME_SHIFT)));
    }

    #[test]
    fn msi_cap_32bit_layout() {
        let (c, _) = setup(MsiConfig { vectors: 1, addr64: false, per_vector_mask: false });
        assert_eq!(c.get_u8(OFF), id::MSI);
        assert_eq!(c.get_u16(OFF + 2), 0);
        assert_eq!(MsiConfig { vectors: 1, addr64: false, per_vector_mask: false }.cap_len(), 0x0a);
    }

    #[test]
    fn msi_cap_64bit_masked_layout() {
        let config = cfg64(4, true);
        let (c, _) = setup(config);
        assert_eq!(c.get_u16(OFF + 2), ctrl::ADDR64 | ctrl::PER_VECTOR_MASK | (2 << 1));
        assert_eq!(
            (config.cap_len(), config.data_off(), config.mask_off(), config.pending_off()),
            (0x18, 0xc, 0x10, 0x14)
        );
    }

    #[test]
    fn msi_cap_32bit_masked_offsets() {
        let config = MsiConfig { vectors: 2, addr64: false, per_vector_mask: true };
        assert_eq!(
            (config.cap_len(), config.data_off(), config.mask_off(), config.pending_off()),
            (0x14, 8, 0xc, 0x10)
        );
    }

    #[test]
    fn msi_mmc_is_read_only_and_mme_writable() {
        let (mut c, _) = setup(cfg64(8, false));
        w(&mut c, OFF + 2, 2, 0xffff);
        assert_eq!(c.get_u16(OFF + 2), ctrl::ADDR64 | (3 << 1) | ctrl::MME_MASK | ctrl::ENABLE);
    }

    #[test]
    fn msi_address_low_bits_are_read_only() {
        let (mut c, _) = setup(cfg64(1, false));
        w(&mut c, OFF + 4, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(OFF + 4), 0xffff_fffc);
    }

    #[test]
    fn msi_extended_data_is_read_only() {
        let (mut c, _) = setup(cfg64(1, false));
        w(&mut c, OFF + 0xc, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(OFF + 0xc), 0x0000_ffff);
    }

    #[test]
    fn msi_mask_bits_limited_to_vectors() {
        let (mut c, _) = setup(cfg64(4, true));
        w(&mut c, OFF + 0x10, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(OFF + 0x10), 0xf);
    }

    #[test]
    fn msi_mask_bits_for_32_vectors_all_writable() {
        let (mut c, _) = setup(cfg64(32, true));
        w(&mut c, OFF + 0x10, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(OFF + 0x10), 0xffff_ffff);
    }

    #[test]
    fn msi_pending_is_read_only_to_guest() {
        let (mut c, m) = setup(cfg64(1, true));
        c.set_u32(OFF + 0x14, 1);
        w(&mut c, OFF + 0x14, 4, 0);
        assert!(m.is_pending(&c, 0));
    }

    #[test]
    fn msi_message_64bit() {
        let (mut c, m) = setup(cfg64(1, false));
        program(&mut c, &m, 0);
        assert_eq!(m.message(&c, 0), Some(MsiMessage { addr: 0x1_fee0_1000, data: 0x4060 }));
    }

    #[test]
    fn msi_message_32bit() {
        let (mut c, m) = setup(MsiConfig { vectors: 1, addr64: false, per_vector_mask: false });
        program(&mut c, &m, 0);
        assert_eq!(m.message(&c, 0), Some(MsiMessage { addr: 0xfee0_1000, data: 0x4060 }));
    }

    #[test]
    fn msi_multi_vector_data_low_bits_are_the_vector() {
        let (mut c, m) = setup(cfg64(8, false));
        program(&mut c, &m, 3);
        assert_eq!(m.enabled_vectors(&c), 8);
        assert_eq!(m.message(&c, 5).map(|x| x.data), Some(0x4065));
        assert_eq!(m.message(&c, 0).map(|x| x.data), Some(0x4060));
    }

    #[test]
    fn msi_mme_above_mmc_is_clamped() {
        let (mut c, m) = setup(cfg64(2, false));
        program(&mut c, &m, 5);
        assert_eq!(m.enabled_vectors(&c), 2);
        assert_eq!(m.message(&c, 2), None);
    }

    #[test]
    fn msi_trigger_when_enabled_returns_message() {
        let (mut c, m) = setup(cfg64(1, true));
        program(&mut c, &m, 0);
        assert_eq!(m.trigger(&mut c, 0), Some(MsiMessage { addr: 0x1_fee0_1000, data: 0x4060 }));
    }

    #[test]
    fn msi_trigger_when_disabled_returns_none_and_sets_no_pending() {
        let (mut c, m) = setup(cfg64(1, true));
        w(&mut c, OFF + 0x10, 4, 1);
        assert_eq!(m.trigger(&mut c, 0), None);
        assert!(!m.is_pending(&c, 0));
    }

    #[test]
    fn msi_trigger_when_masked_sets_pending() {
        let (mut c, m) = setup(cfg64(4, true));
        program(&mut c, &m, 2);
        w(&mut c, OFF + 0x10, 4, 0b0100);
        assert_eq!(m.trigger(&mut c, 2), None);
        assert!(m.is_pending(&c, 2));
        assert_eq!(c.get_u32(OFF + 0x14), 0b0100);
    }

    #[test]
    fn msi_trigger_vector_beyond_enabled_is_dropped() {
        let (mut c, m) = setup(cfg64(4, true));
        program(&mut c, &m, 0);
        w(&mut c, OFF + 0x10, 4, 0xf);
        assert_eq!(m.trigger(&mut c, 1), None);
        assert_eq!(m.trigger(&mut c, 200), None);
        assert_eq!(c.get_u32(OFF + 0x14), 0, "no pending for a vector that is not enabled");
    }

    #[test]
    fn msi_deliver_pending_on_unmask() {
        let (mut c, m) = setup(cfg64(4, true));
        program(&mut c, &m, 2);
        w(&mut c, OFF + 0x10, 4, 0b0110);
        let _ = m.trigger(&mut c, 1);
        let _ = m.trigger(&mut c, 2);
        w(&mut c, OFF + 0x10, 4, 0b0100);
        assert_eq!(m.deliver_pending(&mut c), vec![MsiMessage { addr: 0x1_fee0_1000, data: 0x4061 }]);
        assert!(!m.is_pending(&c, 1));
        assert!(m.is_pending(&c, 2), "still masked");
    }

    #[test]
    fn msi_deliver_pending_while_masked_delivers_nothing() {
        let (mut c, m) = setup(cfg64(1, true));
        program(&mut c, &m, 0);
        w(&mut c, OFF + 0x10, 4, 1);
        let _ = m.trigger(&mut c, 0);
        assert!(m.deliver_pending(&mut c).is_empty());
        assert!(m.is_pending(&c, 0));
    }

    #[test]
    fn msi_deliver_pending_waits_for_enable() {
        let (mut c, m) = setup(cfg64(1, true));
        program(&mut c, &m, 0);
        w(&mut c, OFF + 0x10, 4, 1);
        let _ = m.trigger(&mut c, 0);
        w(&mut c, OFF + 2, 2, 0);
        w(&mut c, OFF + 0x10, 4, 0);
        assert!(m.deliver_pending(&mut c).is_empty(), "disabled");
        w(&mut c, OFF + 2, 2, u32::from(ctrl::ENABLE));
        assert_eq!(m.deliver_pending(&mut c).len(), 1);
    }

    #[test]
    fn msi_without_masking_never_masks_or_pends() {
        let (mut c, m) = setup(cfg64(1, false));
        program(&mut c, &m, 0);
        assert!(!m.is_masked(&c, 0));
        assert!(m.trigger(&mut c, 0).is_some());
        assert!(m.deliver_pending(&mut c).is_empty());
    }

    #[test]
    fn msi_reset_disables_and_clears_pending() {
        let (mut c, m) = setup(cfg64(1, true));
        program(&mut c, &m, 0);
        w(&mut c, OFF + 0x10, 4, 1);
        let _ = m.trigger(&mut c, 0);
        c.reset(ResetKind::Flr);
        assert!(!m.enabled(&c));
        assert!(!m.is_pending(&c, 0));
        assert!(!m.is_masked(&c, 0));
    }

    #[test]
    fn msi_config_rejects_bad_vector_counts() {
        for v in [0u8, 3, 64] {
            let cfg = MsiConfig { vectors: v, ..MsiConfig::default() };
            assert_eq!(cfg.cap_block(), Err(MsiError::BadVectorCount(v)));
        }
        assert!(MsiError::BadVectorCount(3).to_string().contains('3'));
    }

    #[test]
    fn msi_touches_covers_capability_only() {
        let (_, m) = setup(cfg64(1, true));
        assert!(m.touches(OFF, 1));
        assert!(m.touches(OFF + 0x17, 1));
        assert!(m.touches(OFF - 2, 4));
        assert!(!m.touches(OFF + 0x18, 4));
        assert!(!m.touches(OFF - 4, 4));
    }
}
