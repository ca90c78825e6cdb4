//! PCI Express root ports and switch upstream/downstream ports: type-1 bridges with the PCI
//! Express capability v2 of their type, a native hot-plug slot (root and downstream ports), one
//! MSI vector shared by hot-plug, PME and AER (Interrupt Message Numbers 0), and the AER extended
//! capability at 0x100 (with the root-port registers on root ports).
//!
//! IDs, chosen so that Linux applies no quirk q35dm does not emulate:
//! - root port 1b36:000c, QEMU's generic PCIe root port (Red Hat's PCI ID range for QEMU
//!   devices). An Intel root-port ID would pull in Intel-specific quirks (ACS overrides, errata
//!   work-arounds) that assume real silicon;
//! - switch ports 104c:8232 (upstream) and 104c:8233 (downstream), the TI XIO3130 IDs QEMU's
//!   x3130 switch uses. Linux has no quirk for them (its TI quirks are for 104c:8231, the
//!   XIO2000A PCIe-to-PCI bridge), and guests already know them from QEMU.
//!
//! Interrupts: a slot or AER event edge sends MSI vector 0 when MSI is enabled (and bus
//! mastering on); otherwise INTA# carries the wire-OR of the hot-plug and AER levels.

use crate::pci::bridge::bridge_function;
use crate::pci::config::{HeaderIds, IntxPin, ResetKind};
use crate::pci::device::{
    AerHop, DeviceError, FunctionSpec, GenericFunction, PciDevice, PciEffect, PciEffects, PortEvent,
};
use crate::pci::msi::MsiConfig;
use crate::pcie::aer::{
    hop_forward, Aer, AerConfig, AerErrorSpec, AerInjectError, AerMessage, InjectOutcome, RootOutcome,
};
use crate::pcie::cap::{PcieCapConfig, PortType};
use crate::pcie::slot::{Slot, SlotConfig, SlotError, SlotEvents, SlotView};
use crate::state::{Reader, StateError, Writer};

/// Which port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// Root port.
    Root,
    /// Switch upstream port.
    Upstream,
    /// Switch downstream port.
    Downstream,
}

impl PortKind {
    fn port_type(self) -> PortType {
        match self {
            PortKind::Root => PortType::RootPort,
            PortKind::Upstream => PortType::UpstreamPort,
            PortKind::Downstream => PortType::DownstreamPort,
        }
    }

    /// The `-device` driver name.
    pub fn driver(self) -> &'static str {
        match self {
            PortKind::Root => "q35dm-root-port",
            PortKind::Upstream => "q35dm-upstream-port",
            PortKind::Downstream => "q35dm-downstream-port",
        }
    }

    fn ids(self) -> HeaderIds {
        // The switch ports carry TI XIO3130 IDs, so they also report that part's revisions (as
        // QEMU's x3130-upstream / xio3130-downstream do).
        let (vendor_id, device_id, revision) = match self {
            PortKind::Root => (0x1b36, 0x000c, 0),
            PortKind::Upstream => (0x104c, 0x8232, 2),
            PortKind::Downstream => (0x104c, 0x8233, 1),
        };
        HeaderIds { vendor_id, device_id, revision, class_code: 0x06_04_00, ..Default::default() }
    }
}

/// Construction parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Kind.
    pub kind: PortKind,
    /// Chassis number (operator addressing: `pcie_abp chassis.slot`).
    pub chassis: u8,
    /// Slot features (root and downstream ports; `physical_slot` is the slot number).
    pub slot: SlotConfig,
    /// Port number in LnkCap.
    pub port_number: u8,
    /// Set the multi-function bit (several ports in one slot, as `addr=1c.0..1c.7`).
    pub multifunction: bool,
}

/// A PCIe port.
pub struct PciePort {
    f: GenericFunction,
    kind: PortKind,
    chassis: u8,
    pcie_off: u16,
    slot: Option<Slot>,
    aer: Aer,
    hp_level: bool,
    aer_level: bool,
}

/// Port construction failures.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The function could not be built.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The slot configuration is invalid.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// Capability construction failed.
    #[error("{0}")]
    Cap(String),
}

impl PciePort {
    /// Builds a port.
    pub fn new(name: &str, spec: PortSpec) -> Result<Self, PortError> {
        let pt = spec.kind.port_type();
        let mut cap = PcieCapConfig::new(pt);
        cap.port_number = spec.port_number;
        if spec.kind != PortKind::Upstream {
            cap = cap.with_slot(spec.slot);
        }
        let aer_cfg = AerConfig::default();
        let mut fspec = FunctionSpec::new(name, spec.kind.ids()).express();
        if spec.multifunction {
            fspec = fspec.multifunction();
        }
        let fspec = fspec
            .intx(IntxPin::A)
            .cap(cap.cap_block().map_err(|e| PortError::Cap(e.to_string()))?, None)
            .msi(MsiConfig { vectors: 1, addr64: true, per_vector_mask: true }, None)
            .cap(aer_cfg.cap_block(pt).map_err(|e| PortError::Cap(e.to_string()))?, Some(0x100));
        let f = bridge_function(fspec)?;
        let pcie_off = f
            .find_cap(crate::pci::caps::CapId::Std(crate::pci::caps::id::EXP))
            .ok_or_else(|| PortError::Cap("no PCIe capability".into()))?;
        let aer = Aer::new(0x100, pcie_off, &aer_cfg).map_err(|e| PortError::Cap(e.to_string()))?;
        let slot = match spec.kind {
            PortKind::Upstream => None,
            _ => Some(Slot::new(spec.slot, pcie_off)?),
        };
        Ok(Self { f, kind: spec.kind, chassis: spec.chassis, pcie_off, slot, aer, hp_level: false, aer_level: false })
    }

    /// Kind.
    pub fn kind(&self) -> PortKind {
        self.kind
    }

    /// Chassis number.
    pub fn chassis(&self) -> u8 {
        self.chassis
    }

    /// Physical slot number, if the port has a slot.
    pub fn slot_number(&self) -> Option<u16> {
        self.slot.as_ref().map(|s| s.config().physical_slot)
    }

    /// Whether the port has a hot-plug capable slot.
    pub fn hotplug_capable(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.config().hotplug)
    }

    /// The slot view (`info pcie-slots`).
    pub fn slot_view(&self) -> Option<SlotView> {
        self.slot.as_ref().map(|s| s.view(self.f.config()))
    }

    /// Offset of the PCI Express capability.
    pub fn pcie_offset(&self) -> u16 {
        self.pcie_off
    }

    fn apply_slot(&mut self, ev: SlotEvents, fx: &mut PciEffects) {
        if let Some(l) = ev.irq_level {
            self.hp_level = l;
        }
        if ev.irq {
            fx.extend(self.f.signal_msi(0));
        }
        if let Some(p) = ev.power {
            fx.push(PciEffect::Port(PortEvent::Power(p)));
        }
        if ev.detach_ready {
            fx.push(PciEffect::Port(PortEvent::DetachReady));
        }
        if ev.indicators {
            if let Some(v) = self.slot_view() {
                log::info!("{}: {v}", self.f.name());
            }
        }
        fx.extend(self.f.set_intx(self.hp_level || self.aer_level));
    }

    fn apply_root(&mut self, o: RootOutcome, fx: &mut PciEffects) {
        if let Some(l) = o.irq_level {
            self.aer_level = l;
        }
        if o.irq {
            fx.extend(self.f.signal_msi(0));
        }
        fx.extend(self.f.set_intx(self.hp_level || self.aer_level));
    }

    fn slot_op(
        &mut self,
        op: impl FnOnce(&mut Slot, &mut crate::pci::config::ConfigSpace) -> Result<SlotEvents, SlotError>,
    ) -> Result<PciEffects, SlotError> {
        let Some(slot) = self.slot.as_mut() else {
            return Err(SlotError::NotHotplugCapable { slot: 0 });
        };
        let ev = op(slot, self.f.config_mut())?;
        let mut fx = Vec::new();
        self.apply_slot(ev, &mut fx);
        Ok(fx)
    }

    /// A card is present at start-up (no events, no interrupt).
    pub fn cold_plug(&mut self) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.cold_plug(c))
    }

    /// Hot insertion (`device_add`).
    pub fn insert(&mut self) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.insert(c))
    }

    /// Attention button (`pcie_abp`).
    pub fn press_button(&mut self) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.press_button(c))
    }

    /// Orderly removal request (`device_del`): the device goes when the guest releases it.
    pub fn request_removal(&mut self, now: std::time::Duration) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.request_removal(c, now))
    }

    /// The card left (after detach, or surprise removal).
    pub fn remove_card(&mut self) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.remove_card(c))
    }

    /// Operator MRL open/close.
    pub fn set_mrl(&mut self, open: bool) -> Result<PciEffects, SlotError> {
        self.slot_op(|s, c| s.set_mrl(c, open))
    }

    /// Whether a removal is pending.
    pub fn removal_pending(&self) -> bool {
        self.slot.as_ref().is_some_and(Slot::removal_pending)
    }
}

impl PciDevice for PciePort {
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
        let mut fx = self.f.config_write(off, size, val);
        if let Some(slot) = self.slot.as_mut() {
            let ev = slot.on_config_write(self.f.config_mut(), off, size, val);
            self.apply_slot(ev, &mut fx);
        }
        let o = self.aer.on_config_write(self.f.config_mut(), off, size);
        self.apply_root(o, &mut fx);
        fx
    }

    fn reset(&mut self, kind: ResetKind) -> PciEffects {
        let mut fx = self.f.reset(kind);
        if let Some(slot) = self.slot.as_mut() {
            let ev = slot.reset(self.f.config_mut(), kind);
            self.apply_slot(ev, &mut fx);
        }
        let o = self.aer.reset(self.f.config_mut(), kind);
        self.apply_root(o, &mut fx);
        fx
    }

    fn aer_inject(&mut self, errors: &[AerErrorSpec], source_id: u16) -> Result<InjectOutcome, AerInjectError> {
        self.aer.inject_all(self.f.config_mut(), errors, source_id)
    }

    fn aer_receive(&mut self, msg: &AerMessage, from_self: bool, fx: &mut PciEffects) -> AerHop {
        if !from_self && !hop_forward(self.f.config_mut(), self.pcie_off, msg) {
            return AerHop::Stopped;
        }
        if self.kind != PortKind::Root {
            return AerHop::Forward;
        }
        let o = self.aer.root_receive(self.f.config_mut(), msg);
        self.apply_root(o, fx);
        AerHop::Delivered
    }

    fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(&self.f.save_state());
        w.u8(u8::from(self.hp_level));
        w.u8(u8::from(self.aer_level));
        w.buf
    }

    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, StateError> {
        let mut r = Reader::new(data);
        let fx = self.f.load_state(r.bytes()?)?;
        self.hp_level = r.u8()? != 0;
        self.aer_level = r.u8()? != 0;
        Ok(fx)
    }
}
