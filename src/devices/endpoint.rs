//! `q35dm-test-endpoint`: a small PCI Express endpoint to plug into slots, so hot-plug, MSI and
//! AER can be exercised without passthrough.
//!
//! IDs 1b36:0005 ("QEMU PCI test device", class 00ff "unassigned"): no Linux driver binds it and
//! no quirk applies, so the guest only enumerates it, assigns its BAR and reports its errors.
//!
//! BAR0 (64-bit, non-prefetchable, 16 KiB) is a register file:
//! | offset | register |
//! |---|---|
//! | 0x000 | ID: `0x54503533` ("Q35TP" signature, read-only) |
//! | 0x004 | revision (read-only 1) |
//! | 0x008 | doorbell: a write raises MSI vector 0 (or asserts INTA# without MSI) |
//! | 0x00c | INTx level (write 0/1) |
//! | 0x010-0x3fff | scratch, read/write at any width |
//!
//! Capabilities: PCI Express (Endpoint, FLR), MSI (1 vector, 64-bit, maskable), AER at 0x100.
//! `multifunction=on` sets the multi-function bit so more functions can share the slot.

use crate::pci::bar::BarSpec;
use crate::pci::config::{HeaderIds, IntxPin, ResetKind};
use crate::pci::device::{DeviceError, FunctionSpec, GenericFunction, PciDevice, PciEffects};
use crate::pci::msi::MsiConfig;
use crate::pcie::aer::{Aer, AerConfig, AerErrorSpec, AerInjectError, InjectOutcome};
use crate::pcie::cap::{PcieCapConfig, PortType};
use crate::state::{Reader, StateError, Writer};

/// BAR0 size.
pub const REGS_SIZE: u64 = 0x4000;
/// Signature at offset 0.
pub const SIGNATURE: u32 = 0x5450_3533;

/// The test endpoint.
pub struct TestEndpoint {
    f: GenericFunction,
    aer: Aer,
    regs: Vec<u8>,
}

impl TestEndpoint {
    /// A function; `multifunction` sets the header bit.
    pub fn new(name: &str, multifunction: bool) -> Result<Self, DeviceError> {
        let ids = HeaderIds {
            vendor_id: 0x1b36,
            device_id: 0x0005,
            revision: 1,
            class_code: 0x00_ff_00,
            subsystem_vendor_id: 0x1b36,
            subsystem_id: 0x0005,
        };
        let mut cap = PcieCapConfig::new(PortType::Endpoint);
        cap.flr = true;
        let aer_cfg = AerConfig::default();
        let err = |e: String| DeviceError::Other { name: name.to_string(), why: e };
        let mut spec = FunctionSpec::new(name, ids)
            .express()
            .bar(BarSpec::mem64(0, REGS_SIZE, false))
            .intx(IntxPin::A)
            .cap(cap.cap_block().map_err(|e| err(e.to_string()))?, None)
            .msi(MsiConfig { vectors: 1, addr64: true, per_vector_mask: true }, None)
            .cap(aer_cfg.cap_block(PortType::Endpoint).map_err(|e| err(e.to_string()))?, Some(0x100));
        if multifunction {
            spec = spec.multifunction();
        }
        let f = GenericFunction::new(spec)?;
        let pcie = f
            .find_cap(crate::pci::caps::CapId::Std(crate::pci::caps::id::EXP))
            .ok_or_else(|| err("no PCIe capability".into()))?;
        let aer = Aer::new(0x100, pcie, &aer_cfg).map_err(|e| err(e.to_string()))?;
        Ok(Self { f, aer, regs: vec![0; REGS_SIZE as usize] })
    }

    fn reg_read(&self, off: u64, size: u8) -> u64 {
        match off {
            0 if size == 4 => u64::from(SIGNATURE),
            4 if size == 4 => 1,
            _ => {
                let o = off as usize;
                let Some(b) = self.regs.get(o..o + usize::from(size)) else { return u64::MAX };
                b.iter().rev().fold(0, |v, x| v << 8 | u64::from(*x))
            }
        }
    }
}

impl PciDevice for TestEndpoint {
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

    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> u64 {
        if bar != 0 || off.checked_add(u64::from(size)).is_none_or(|e| e > REGS_SIZE) {
            return u64::MAX;
        }
        self.reg_read(off, size)
    }

    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        if bar != 0 || off.checked_add(u64::from(size)).is_none_or(|e| e > REGS_SIZE) {
            return Vec::new();
        }
        match off {
            0..=7 => Vec::new(),
            8 => {
                let mut fx = self.f.signal_msi(0);
                if fx.is_empty() {
                    fx = self.f.set_intx(true);
                }
                fx
            }
            0xc => self.f.set_intx(val & 1 != 0),
            _ => {
                let o = off as usize;
                if let Some(b) = self.regs.get_mut(o..o + usize::from(size)) {
                    for (i, x) in b.iter_mut().enumerate() {
                        *x = (val >> (8 * i)) as u8;
                    }
                }
                Vec::new()
            }
        }
    }

    fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        let fx = self.f.config_write(off, size, val);
        let _ = self.aer.on_config_write(self.f.config_mut(), off, size);
        fx
    }

    fn reset(&mut self, kind: ResetKind) -> PciEffects {
        let fx = self.f.reset(kind);
        let _ = self.aer.reset(self.f.config_mut(), kind);
        if kind == ResetKind::Cold {
            self.regs.iter_mut().for_each(|b| *b = 0);
        }
        fx
    }

    fn aer_inject(&mut self, errors: &[AerErrorSpec], source_id: u16) -> Result<InjectOutcome, AerInjectError> {
        self.aer.inject_all(self.f.config_mut(), errors, source_id)
    }

    fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(&self.f.save_state());
        w.bytes(&self.regs);
        w.buf
    }

    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, StateError> {
        let mut r = Reader::new(data);
        let fx = self.f.load_state(r.bytes()?)?;
        let regs = r.bytes()?;
        if regs.len() != self.regs.len() {
            return Err(StateError::Mismatch("test endpoint register file size".into()));
        }
        self.regs.copy_from_slice(regs);
        Ok(fx)
    }
}
