//! The Q35 chipset functions: the MCH host bridge (00:00.0, 8086:29c0) and the ICH9 LPC/ISA
//! bridge (00:1f.0, 8086:2918), and the LPC's chipset configuration block (RCBA).
//!
//! Register behaviour is data (one [`RegSpec`] table per function, pcie-spec.md §1); side
//! effects leave as [`PlatformEvent`]s. Where QEMU 7.2 and the Intel datasheet disagree the
//! datasheet wins and the difference is in the differential test's allow-list.
//!
//! Behaviour under Xen, documented:
//! - **PCIEXBAR** (0x60): bit 0 enables the MMCONFIG window, bits 2:1 select 256/128/64 MiB; the
//!   base takes bits 35:28 (256 MiB), 35:27 (128 MiB) or 35:26 (64 MiB), the positions in the
//!   datasheet (QEMU uses 26/25 for the two low bits; with the usual 256 MiB-aligned bases both
//!   agree). Every write recomputes the window: the board unmaps the old range and claims the new
//!   one with the hypervisor (Xen never turns ECAM accesses into PCI_CONFIG, xen-abi.md §4). A
//!   value with the reserved length 11b is stored but ignored, with a log: the window stays as
//!   it was (QEMU's behaviour).
//! - **PAM0-6** are stored and read back. Xen maps 0xC0000-0xFFFFF as RAM for HVM guests and
//!   loads the firmware there itself, so there is no shadowing to switch.
//! - **SMRAM / ESMRAMC**: Xen HVM guests have no SMM. The registers keep their architectural
//!   masks and the D_LCK lock (after which only D_CLS is writable and ESMRAMC is read-only), so
//!   firmware that locks them sees the lock, but nothing is remapped: no SMRAM window, no TSEG
//!   hole. QEMU's own extensions (extended TSEG size at 0x50, SMBASE handshake at 0x9c) are not
//!   offered, so firmware does not try to use SMM.
//! - **TOM / TOUUD / TOLUD** (0xa0 / 0xa2 / 0xb0) report the guest's memory layout read-only:
//!   top of memory in 64 MiB units, top of upper usable DRAM and top of low usable DRAM in MiB
//!   (bits 15:4 of TOLUD = address bits 31:20).

use crate::guest_warn;
use crate::pci::config::{HeaderIds, IntxPin, RegMasks, RegSpec};
use crate::pci::device::{DeviceError, FunctionSpec, GenericFunction, PciDevice, PciEffect, PciEffects, PlatformEvent};
use crate::pci::Sbdf;

/// MCH register offsets.
pub mod mch {
    /// PCI Express Base Address (64-bit).
    pub const PCIEXBAR: u16 = 0x60;
    /// PAM0 (0xF0000-0xFFFFF).
    pub const PAM0: u16 = 0x90;
    /// PAM6.
    pub const PAM6: u16 = 0x96;
    /// Top of memory.
    pub const TOM: u16 = 0xa0;
    /// Top of upper usable DRAM.
    pub const TOUUD: u16 = 0xa2;
    /// Top of low usable DRAM.
    pub const TOLUD: u16 = 0xb0;
    /// System management RAM control.
    pub const SMRAM: u16 = 0x9d;
    /// Extended SMRAM control.
    pub const ESMRAMC: u16 = 0x9e;
    /// SMRAM D_OPEN.
    pub const SMRAM_D_OPEN: u8 = 0x40;
    /// SMRAM D_CLS.
    pub const SMRAM_D_CLS: u8 = 0x20;
    /// SMRAM D_LCK.
    pub const SMRAM_D_LCK: u8 = 0x10;
    /// SMRAM G_SMRAME.
    pub const SMRAM_G_SMRAME: u8 = 0x08;
    /// SMRAM C_BASE_SEG (hard-wired 010b).
    pub const SMRAM_C_BASE_SEG: u8 = 0x02;
    /// ESMRAMC writable bits: H_SMRAME, TSEG_SZ, T_EN.
    pub const ESMRAMC_WMASK: u8 = 0x87;
    /// ESMRAMC reset value (SM_CACHE, SM_L1, SM_L2 read as 1).
    pub const ESMRAMC_RESET: u8 = 0x38;
    /// PCIEXBAR reset value: base 0xB0000000, 256 MiB, disabled (QEMU's default).
    pub const PCIEXBAR_RESET: u64 = 0xb000_0000;
}

/// ICH9 LPC register offsets.
pub mod lpc {
    /// ACPI PM base address.
    pub const PMBASE: u16 = 0x40;
    /// ACPI control.
    pub const ACPI_CNTL: u16 = 0x44;
    /// PIRQA-D routing.
    pub const PIRQA_ROUT: u16 = 0x60;
    /// PIRQE-H routing.
    pub const PIRQE_ROUT: u16 = 0x68;
    /// General PM configuration 1.
    pub const GEN_PMCON_1: u16 = 0xa0;
    /// Root complex base address.
    pub const RCBA: u16 = 0xf0;
    /// ACPI_CNTL.ACPI_EN.
    pub const ACPI_EN: u8 = 0x80;
    /// GEN_PMCON_1.SMI_LOCK.
    pub const SMI_LOCK: u16 = 0x10;
    /// PIRQx_ROUT.IRQEN (1 = not routed to the 8259).
    pub const PIRQ_DISABLE: u8 = 0x80;
    /// Size of the ACPI PM I/O block.
    pub const PM_IO_SIZE: u16 = 0x80;
    /// Size of the chipset configuration block.
    pub const RCRB_SIZE: u64 = 0x4000;
}

/// QEMU's subsystem IDs on its Q35 functions (Red Hat / QEMU), kept so guests and tools see the
/// same values they know from QEMU.
pub const SUBSYS_VENDOR: u16 = 0x1af4;
/// Subsystem ID.
pub const SUBSYS_ID: u16 = 0x1100;

fn scratch(f: &mut GenericFunction) {
    // QEMU leaves every byte from 0x40 on writable scratch unless a register says otherwise.
    for off in (0x40u16..0x100).step_by(4) {
        let _ = f.config_mut().set_masks(off, 4, RegMasks::rw(0xffff_ffff));
    }
}

/// The guest memory layout the MCH reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemLayout {
    /// RAM below 4 GiB (bytes).
    pub below_4g: u64,
    /// RAM above 4 GiB (bytes).
    pub above_4g: u64,
}

/// The MCH host bridge, 00:00.0.
pub struct Mch {
    f: GenericFunction,
    ecam: Option<(u64, u64)>,
}

/// PCIEXBAR with the reserved length 11b.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PCIEXBAR {0:#x} uses the reserved length 11b")]
pub struct ReservedLength(pub u64);

/// Decodes PCIEXBAR: `Ok(Some((base, size)))` enabled, `Ok(None)` disabled.
pub fn decode_pciexbar(v: u64) -> Result<Option<(u64, u64)>, ReservedLength> {
    let (size, mask): (u64, u64) = match (v >> 1) & 3 {
        0 => (256 << 20, 0xf_f000_0000),
        1 => (128 << 20, 0xf_f800_0000),
        2 => (64 << 20, 0xf_fc00_0000),
        _ => return Err(ReservedLength(v)),
    };
    if v & 1 == 0 {
        return Ok(None);
    }
    Ok(Some((v & mask, size)))
}

impl Mch {
    /// The MCH for a guest with `mem`.
    pub fn new(mem: MemLayout) -> Result<Self, DeviceError> {
        let ids = HeaderIds {
            vendor_id: 0x8086,
            device_id: 0x29c0,
            revision: 0,
            class_code: 0x06_00_00,
            subsystem_vendor_id: SUBSYS_VENDOR,
            subsystem_id: SUBSYS_ID,
        };
        let spec = FunctionSpec::new("mch", ids).sbdf_hint(Sbdf::new(0, 0, 0, 0));
        let mut f = GenericFunction::new(spec)?;
        scratch(&mut f);
        let tolud_mib = (mem.below_4g >> 20) as u32;
        let top = if mem.above_4g > 0 { (1u64 << 32) + mem.above_4g } else { mem.below_4g };
        let table = [
            RegSpec::ro(mch::PCIEXBAR, 4, mch::PCIEXBAR_RESET as u32).rw(0xffff_ffff),
            RegSpec::ro(mch::PCIEXBAR + 4, 4, 0).rw(0xffff_ffff),
            RegSpec::ro(mch::SMRAM, 1, u32::from(mch::SMRAM_C_BASE_SEG)).rw(0x78),
            RegSpec::ro(mch::ESMRAMC, 1, u32::from(mch::ESMRAMC_RESET)).rw(u32::from(mch::ESMRAMC_WMASK)),
            RegSpec::ro(0x9c, 1, 0),
            RegSpec::ro(0x50, 2, 0).rw(0xffff),
            RegSpec::ro(mch::TOM, 2, (top >> 26) as u32 & 0x3ff).hwinit(0xffff),
            RegSpec::ro(mch::TOUUD, 2, ((top >> 20) as u32) & 0xffff).hwinit(0xffff),
            RegSpec::ro(mch::TOLUD, 2, (tolud_mib << 4) & 0xfff0).hwinit(0xffff),
        ];
        f.config_mut().apply_table(0, &table).map_err(|source| DeviceError::Config { name: "mch".into(), source })?;
        Ok(Self { f, ecam: None })
    }

    /// The current MMCONFIG window.
    pub fn ecam(&self) -> Option<(u64, u64)> {
        self.ecam
    }

    fn pciexbar(&self) -> u64 {
        u64::from(self.f.config().get_u32(mch::PCIEXBAR)) | u64::from(self.f.config().get_u32(mch::PCIEXBAR + 4)) << 32
    }

    fn update_ecam(&mut self, fx: &mut PciEffects) {
        let new = match decode_pciexbar(self.pciexbar()) {
            Ok(w) => w,
            Err(_) => {
                // Ignored, as QEMU does: the window stays as it was.
                guest_warn!("PCIEXBAR {:#x}: length 11b is reserved; write ignored", self.pciexbar());
                return;
            }
        };
        if new != self.ecam {
            match new {
                Some((b, s)) => log::info!("MMCONFIG window at {b:#x}, {} MiB", s >> 20),
                None => log::info!("MMCONFIG window disabled"),
            }
            self.ecam = new;
            fx.push(PciEffect::Platform(PlatformEvent::Ecam(new)));
        }
    }

    fn smram_write(&mut self, old_smram: u8) {
        let cfg = self.f.config_mut();
        let mut v = cfg.get_u8(mch::SMRAM);
        if old_smram & mch::SMRAM_D_LCK != 0 {
            // Locked: only D_CLS may change; everything else keeps its old value.
            v = (old_smram & !mch::SMRAM_D_CLS) | (v & mch::SMRAM_D_CLS);
        }
        if v & mch::SMRAM_D_LCK != 0 {
            v &= !mch::SMRAM_D_OPEN;
            let _ = cfg.set_masks(mch::SMRAM, 1, RegMasks::rw(u32::from(mch::SMRAM_D_CLS)));
            let _ = cfg.set_masks(mch::ESMRAMC, 1, RegMasks::RO);
        }
        cfg.set_u8(mch::SMRAM, v);
    }
}

impl PciDevice for Mch {
    fn function(&self) -> &GenericFunction {
        &self.f
    }
    fn function_mut(&mut self) -> &mut GenericFunction {
        &mut self.f
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        let old_smram = self.f.config().get_u8(mch::SMRAM);
        let mut fx = self.f.config_write(off, size, val);
        let end = u32::from(off) + u32::from(size);
        let hits = |a: u16, len: u16| u32::from(off) < u32::from(a + len) && end > u32::from(a);
        if hits(mch::SMRAM, 1) {
            self.smram_write(old_smram);
        }
        if hits(mch::PCIEXBAR, 8) {
            self.update_ecam(&mut fx);
        }
        fx
    }
    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, crate::state::StateError> {
        let mut fx = self.f.load_state(data)?;
        if self.f.config().get_u8(mch::SMRAM) & mch::SMRAM_D_LCK != 0 {
            let _ = self.f.config_mut().set_masks(mch::SMRAM, 1, RegMasks::rw(u32::from(mch::SMRAM_D_CLS)));
            let _ = self.f.config_mut().set_masks(mch::ESMRAMC, 1, RegMasks::RO);
        }
        self.update_ecam(&mut fx);
        Ok(fx)
    }
    fn reset(&mut self, kind: crate::pci::config::ResetKind) -> PciEffects {
        let mut fx = self.f.reset(kind);
        let _ = self.f.config_mut().set_masks(mch::SMRAM, 1, RegMasks::rw(0x78));
        let _ = self.f.config_mut().set_masks(mch::ESMRAMC, 1, RegMasks::rw(u32::from(mch::ESMRAMC_WMASK)));
        self.update_ecam(&mut fx);
        fx
    }
}

/// The ICH9 LPC bridge, 00:1f.0.
pub struct Lpc {
    f: GenericFunction,
    pirq: [Option<u8>; 8],
    pm: (Option<u16>, u8),
    rcba: Option<u64>,
    /// Chipset configuration registers (D31IR..D25IR, GCS) behind RCBA.
    pub rcrb: Rcrb,
}

/// SCI IRQ for ACPI_CNTL.SCI_IRQ_SEL (datasheet: 0 → 9, 1 → 10, 2 → 11, 4 → 20, 5 → 21,
/// 6 → 22, 7 → 23; 3 is reserved and treated as 9).
pub fn sci_irq(sel: u8) -> u8 {
    match sel & 7 {
        1 => 10,
        2 => 11,
        4 => 20,
        5 => 21,
        6 => 22,
        7 => 23,
        _ => 9,
    }
}

impl Lpc {
    /// A fresh LPC bridge (multi-function: further functions may follow in slot 31).
    pub fn new() -> Result<Self, DeviceError> {
        let ids = HeaderIds {
            vendor_id: 0x8086,
            device_id: 0x2918,
            revision: 2,
            class_code: 0x06_01_00,
            subsystem_vendor_id: SUBSYS_VENDOR,
            subsystem_id: SUBSYS_ID,
        };
        let spec = FunctionSpec::new("ich9-lpc", ids).multifunction().sbdf_hint(Sbdf::new(0, 0, 0x1f, 0));
        let mut f = GenericFunction::new(spec)?;
        scratch(&mut f);
        let mut table = vec![
            RegSpec::ro(lpc::PMBASE, 4, 1).rw(0xff80),
            RegSpec::ro(lpc::ACPI_CNTL, 1, 0).rw(0x87),
            RegSpec::ro(lpc::GEN_PMCON_1, 2, 0).rw(0xffff),
            RegSpec::ro(lpc::RCBA, 4, 0).rw(0xffff_c001),
        ];
        for i in 0..4u16 {
            table.push(RegSpec::ro(lpc::PIRQA_ROUT + i, 1, u32::from(lpc::PIRQ_DISABLE)).rw(0x8f));
            table.push(RegSpec::ro(lpc::PIRQE_ROUT + i, 1, u32::from(lpc::PIRQ_DISABLE)).rw(0x8f));
        }
        f.config_mut()
            .apply_table(0, &table)
            .map_err(|source| DeviceError::Config { name: "ich9-lpc".into(), source })?;
        Ok(Self { f, pirq: [None; 8], pm: (None, 9), rcba: None, rcrb: Rcrb::default() })
    }

    /// PIRQ routing: the ISA IRQ of PIRQA..H, `None` where disabled.
    pub fn pirq_routes(&self) -> [Option<u8>; 8] {
        self.pirq
    }

    /// PM I/O base (when ACPI_EN) and SCI IRQ.
    pub fn pm_io(&self) -> (Option<u16>, u8) {
        self.pm
    }

    /// The RCBA window, when enabled.
    pub fn rcba(&self) -> Option<u64> {
        self.rcba
    }

    fn route_of(v: u8) -> Option<u8> {
        // IRQEN set, or an IRQ the 8259 cannot take, means not routed.
        let irq = v & 0x0f;
        (v & lpc::PIRQ_DISABLE == 0 && matches!(irq, 3..=7 | 9..=12 | 14 | 15)).then_some(irq)
    }

    fn update(&mut self, fx: &mut PciEffects) {
        let cfg = self.f.config();
        for i in 0..8u8 {
            let off = if i < 4 { lpc::PIRQA_ROUT + u16::from(i) } else { lpc::PIRQE_ROUT + u16::from(i - 4) };
            let r = Self::route_of(cfg.get_u8(off));
            if let Some(slot) = self.pirq.get_mut(usize::from(i)) {
                if *slot != r {
                    *slot = r;
                    fx.push(PciEffect::Platform(PlatformEvent::PirqRoute { pirq: i, irq: r }));
                }
            }
        }
        let cntl = cfg.get_u8(lpc::ACPI_CNTL);
        let base = (cntl & lpc::ACPI_EN != 0).then(|| (cfg.get_u32(lpc::PMBASE) & 0xff80) as u16).filter(|b| *b != 0);
        let pm = (base, sci_irq(cntl));
        if pm != self.pm {
            self.pm = pm;
            fx.push(PciEffect::Platform(PlatformEvent::PmIo { base: pm.0, sci_irq: pm.1 }));
        }
        let r = cfg.get_u32(lpc::RCBA);
        let rcba = (r & 1 != 0).then_some(u64::from(r & 0xffff_c000)).filter(|b| *b != 0);
        if rcba != self.rcba {
            self.rcba = rcba;
            fx.push(PciEffect::Platform(PlatformEvent::Rcba(rcba)));
        }
    }
}

impl PciDevice for Lpc {
    fn function(&self) -> &GenericFunction {
        &self.f
    }
    fn function_mut(&mut self) -> &mut GenericFunction {
        &mut self.f
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        let locked = self.f.config().get_u16(lpc::GEN_PMCON_1) & lpc::SMI_LOCK != 0;
        let mut fx = self.f.config_write(off, size, val);
        if locked {
            // SMI_LOCK is write-once: it stays set until reset.
            self.f.config_mut().update_u16(lpc::GEN_PMCON_1, 0, lpc::SMI_LOCK);
        }
        self.update(&mut fx);
        fx
    }
    fn reset(&mut self, kind: crate::pci::config::ResetKind) -> PciEffects {
        let mut fx = self.f.reset(kind);
        self.rcrb = Rcrb::default();
        self.update(&mut fx);
        fx
    }
    fn save_state(&self) -> Vec<u8> {
        let mut w = crate::state::Writer::default();
        w.bytes(&self.f.save_state());
        for r in self.rcrb.regs {
            w.u16(r);
        }
        w.u32(self.rcrb.gcs);
        w.buf
    }
    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, crate::state::StateError> {
        let mut r = crate::state::Reader::new(data);
        let mut fx = self.f.load_state(r.bytes()?)?;
        for x in self.rcrb.regs.iter_mut() {
            *x = r.u16()?;
        }
        self.rcrb.gcs = r.u32()?;
        self.update(&mut fx);
        Ok(fx)
    }
}

/// The ICH9 chipset configuration registers the guest uses (behind RCBA): the device interrupt
/// routes D31IR..D25IR (a 4-bit PIRQ number per INTA..INTD) and GCS. Everything else in the
/// 16 KiB block reads 0 and ignores writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rcrb {
    regs: [u16; 7],
    gcs: u32,
}

impl Default for Rcrb {
    fn default() -> Self {
        // DxxIR reset 0x3210: INTA→PIRQA .. INTD→PIRQD; D30IR is read-only 0. GCS: NO_REBOOT.
        Self { regs: [0x3210, 0, 0x3210, 0x3210, 0x3210, 0x3210, 0x3210], gcs: 0x20 }
    }
}

/// DxxIR offsets in slot order 31, 30, 29, 28, 27, 26, 25.
const DXXIR: [(u64, u8); 7] =
    [(0x3140, 31), (0x3142, 30), (0x3144, 29), (0x3146, 28), (0x3148, 27), (0x314c, 26), (0x3150, 25)];

impl Rcrb {
    /// A read of `size` bytes at `off` in the block.
    pub fn read(&self, off: u64, size: u8) -> u64 {
        let mut v = 0u64;
        for i in 0..u64::from(size) {
            v |= u64::from(self.read_byte(off + i)) << (8 * i);
        }
        v
    }

    fn read_byte(&self, off: u64) -> u8 {
        for (k, (base, _)) in DXXIR.iter().enumerate() {
            if off == *base || off == *base + 1 {
                let r = self.regs.get(k).copied().unwrap_or(0);
                return (r >> (8 * (off - base))) as u8;
            }
        }
        if (0x3410..0x3414).contains(&off) {
            return (self.gcs >> (8 * (off - 0x3410))) as u8;
        }
        0
    }

    /// A write.
    pub fn write(&mut self, off: u64, size: u8, val: u64) {
        for i in 0..u64::from(size) {
            let b = (val >> (8 * i)) as u8;
            let o = off + i;
            for (k, (base, slot)) in DXXIR.iter().enumerate() {
                if *slot == 30 {
                    continue;
                }
                if o == *base || o == *base + 1 {
                    if let Some(r) = self.regs.get_mut(k) {
                        let sh = 8 * (o - base);
                        *r = (*r & !(0xff << sh)) | (u16::from(b) << sh);
                        // Only values 0-7 (PIRQA-H) are meaningful per nibble.
                        *r &= 0x7777;
                    }
                }
            }
            if (0x3410..0x3414).contains(&o) {
                let sh = 8 * (o - 0x3410);
                self.gcs = (self.gcs & !(0xff << sh)) | (u32::from(b) << sh);
            }
        }
    }

    /// The PIRQ (0-7) a root-bus device's pin uses: slots 25-31 per DxxIR (slot 30 is fixed to
    /// PIRQE-H), other slots rotate over PIRQE-H (QEMU's `ich9_cc_init`).
    pub fn pirq_of(&self, slot: u8, pin: IntxPin) -> u8 {
        let p = pin.index();
        if slot == 30 {
            return 4 + p;
        }
        for (k, (_, s)) in DXXIR.iter().enumerate() {
            if *s == slot {
                return ((self.regs.get(k).copied().unwrap_or(0) >> (4 * p)) & 7) as u8;
            }
        }
        4 + ((slot + p) % 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::ResetKind;

    fn platform(fx: &PciEffects) -> Vec<PlatformEvent> {
        fx.iter()
            .filter_map(|e| match e {
                PciEffect::Platform(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mch_ids_and_reset_values_match_qemu() {
        let mut m = Mch::new(MemLayout { below_4g: 256 << 20, above_4g: 0 }).unwrap();
        assert_eq!(m.config_read(0, 4), 0x29c0_8086);
        assert_eq!(m.config_read(8, 4), 0x0600_0000);
        assert_eq!(m.config_read(0x2c, 4), 0x1100_1af4);
        assert_eq!(m.config_read(0x60, 4), 0xb000_0000);
        assert_eq!(m.config_read(0x9c, 4), 0x0038_0200);
        assert!(m.ecam().is_none());
    }

    #[test]
    fn pciexbar_enable_relocate_disable() {
        let mut m = Mch::new(MemLayout::default()).unwrap();
        let fx = m.config_write(0x60, 4, 0xb000_0001);
        assert_eq!(platform(&fx), vec![PlatformEvent::Ecam(Some((0xb000_0000, 256 << 20)))]);
        // SeaBIOS style: low=0, high, low=addr|EN.
        let fx = m.config_write(0x60, 4, 0);
        assert_eq!(platform(&fx), vec![PlatformEvent::Ecam(None)]);
        m.config_write(0x64, 4, 0);
        let fx = m.config_write(0x60, 4, 0xe000_0000 | 0b101); // 64 MiB at 0xe0000000
        assert_eq!(platform(&fx), vec![PlatformEvent::Ecam(Some((0xe000_0000, 64 << 20)))]);
        let fx = m.config_write(0x60, 4, 0xe000_0000 | 0b111);
        assert!(platform(&fx).is_empty(), "reserved length is ignored");
        assert_eq!(m.ecam(), Some((0xe000_0000, 64 << 20)));
        let fx = m.config_write(0x60, 4, 0xe000_0000);
        assert_eq!(platform(&fx), vec![PlatformEvent::Ecam(None)]);
        let fx = m.config_write(0x64, 1, 0x01);
        assert!(platform(&fx).is_empty(), "writes that change nothing emit nothing");
        let fx = m.config_write(0x60, 4, 0x1);
        assert_eq!(platform(&fx), vec![PlatformEvent::Ecam(Some((0x1_0000_0000, 256 << 20)))]);
    }

    #[test]
    fn decode_pciexbar_sizes() {
        assert_eq!(decode_pciexbar(0xb000_0001), Ok(Some((0xb000_0000, 256 << 20))));
        assert_eq!(decode_pciexbar(0xb800_0003), Ok(Some((0xb800_0000, 128 << 20))));
        assert_eq!(decode_pciexbar(0xbc00_0005), Ok(Some((0xbc00_0000, 64 << 20))));
        assert_eq!(decode_pciexbar(0xb000_0000), Ok(None));
        assert_eq!(decode_pciexbar(0xb000_0007), Err(ReservedLength(0xb000_0007)));
    }

    #[test]
    fn smram_lock_behaves_like_the_chipset() {
        let mut m = Mch::new(MemLayout::default()).unwrap();
        m.config_write(0x9c, 4, 0xffff_ffff);
        assert_eq!(m.config_read(0x9d, 1), 0x3a, "D_OPEN cleared by D_LCK");
        assert_eq!(m.config_read(0x9e, 1), 0xbf);
        m.config_write(0x9c, 4, 0);
        assert_eq!(m.config_read(0x9d, 1), 0x1a, "only D_CLS writable after lock");
        assert_eq!(m.config_read(0x9e, 1), 0xbf, "ESMRAMC read-only after lock");
        m.reset(ResetKind::Cold);
        assert_eq!(m.config_read(0x9d, 1), 0x02);
        m.config_write(0x9d, 1, 0x48);
        assert_eq!(m.config_read(0x9d, 1), 0x4a);
    }

    #[test]
    fn memory_layout_registers_are_read_only() {
        let mut m = Mch::new(MemLayout { below_4g: 0xb000_0000, above_4g: 1 << 30 }).unwrap();
        assert_eq!(m.config_read(mch::TOLUD, 2), 0xb000 >> 4 << 4);
        assert_eq!(m.config_read(mch::TOLUD, 2), 0xb00 << 4);
        assert_eq!(m.config_read(mch::TOUUD, 2), ((5u64 << 30) >> 20) as u32);
        assert_eq!(m.config_read(mch::TOM, 2), ((5u64 << 30) >> 26) as u32);
        m.config_write(mch::TOLUD, 2, 0);
        assert_eq!(m.config_read(mch::TOLUD, 2), 0xb00 << 4);
    }

    #[test]
    fn pam_and_scratch_read_back() {
        let mut m = Mch::new(MemLayout::default()).unwrap();
        m.config_write(0x90, 4, 0x3333_3330);
        assert_eq!(m.config_read(0x90, 4), 0x3333_3330);
        m.config_write(0xfc, 4, 0x1234_5678);
        assert_eq!(m.config_read(0xfc, 4), 0x1234_5678);
    }

    #[test]
    fn lpc_pirq_routing_events() {
        let mut l = Lpc::new().unwrap();
        assert_eq!(l.config_read(0x60, 4), 0x8080_8080);
        let fx = l.config_write(0x68, 4, 0x0b0b_0a0a);
        assert_eq!(
            platform(&fx),
            (4..8)
                .map(|i| PlatformEvent::PirqRoute { pirq: i, irq: Some(if i < 6 { 10 } else { 11 }) })
                .collect::<Vec<_>>()
        );
        let fx = l.config_write(0x68, 1, 0x8a);
        assert_eq!(platform(&fx), vec![PlatformEvent::PirqRoute { pirq: 4, irq: None }]);
        assert_eq!(l.config_read(0x68, 1), 0x8a);
        l.config_write(0x60, 1, 0xff);
        assert_eq!(l.config_read(0x60, 1), 0x8f, "reserved bits 6:4 read 0");
    }

    #[test]
    fn lpc_pm_block_follows_acpi_en() {
        let mut l = Lpc::new().unwrap();
        let fx = l.config_write(0x40, 4, 0xb000);
        assert!(platform(&fx).is_empty(), "PMBASE alone does not decode");
        assert_eq!(l.config_read(0x40, 4), 0xb001, "RTE reads 1");
        let fx = l.config_write(0x44, 1, 0x80);
        assert_eq!(platform(&fx), vec![PlatformEvent::PmIo { base: Some(0xb000), sci_irq: 9 }]);
        let fx = l.config_write(0x44, 1, 0x81);
        assert_eq!(platform(&fx), vec![PlatformEvent::PmIo { base: Some(0xb000), sci_irq: 10 }]);
        let fx = l.config_write(0x44, 1, 0x01);
        assert_eq!(platform(&fx), vec![PlatformEvent::PmIo { base: None, sci_irq: 10 }]);
    }

    #[test]
    fn smi_lock_is_write_once() {
        let mut l = Lpc::new().unwrap();
        l.config_write(0xa0, 2, 0x10);
        l.config_write(0xa0, 2, 0);
        assert_eq!(l.config_read(0xa0, 2), 0x10);
        l.reset(ResetKind::Warm);
        assert_eq!(l.config_read(0xa0, 2), 0);
    }

    #[test]
    fn rcba_and_rcrb() {
        let mut l = Lpc::new().unwrap();
        let fx = l.config_write(0xf0, 4, 0xfed1_c001);
        assert_eq!(platform(&fx), vec![PlatformEvent::Rcba(Some(0xfed1_c000))]);
        assert_eq!(l.rcrb.read(0x3140, 2), 0x3210);
        assert_eq!(l.rcrb.read(0x3410, 4), 0x20);
        assert_eq!(l.rcrb.pirq_of(31, IntxPin::B), 1);
        l.rcrb.write(0x3140, 2, 0x0123);
        assert_eq!(l.rcrb.pirq_of(31, IntxPin::A), 3);
        assert_eq!(l.rcrb.pirq_of(30, IntxPin::A), 4);
        l.rcrb.write(0x3142, 2, 0xffff);
        assert_eq!(l.rcrb.read(0x3142, 2), 0, "D30IR is read-only");
        assert_eq!(l.rcrb.pirq_of(3, IntxPin::A), 7);
        assert_eq!(l.rcrb.pirq_of(4, IntxPin::A), 4);
    }
}
