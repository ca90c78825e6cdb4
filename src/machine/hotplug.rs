//! Board-level operations on the PCIe hierarchy: adding devices (at start-up, or hot through a
//! port's slot), orderly and surprise removal, the attention button, slot power, `info
//! pcie-slots`, and AER injection with propagation up to the root port.
//!
//! Hot-plug happens only through the native slot of a root or downstream port. The root bus
//! `pcie.0` has no hot-plug controller (Xen HVM guests get no ACPI PCI hot-plug for Q35), so
//! devices there are start-up only.

use std::fmt::Write as _;

use crate::device::Effects;
use crate::devices::ports::PciePort;
use crate::devices::{self, DeviceRequest, DeviceSpecError};
use crate::pci::device::{AerHop, PciEffects, PortEvent};
use crate::pci::topology::{NodeId, Outputs, TopologyError};
use crate::pci::Sbdf;
use crate::pcie::aer::{AerErrorSpec, AerInjectError};
use crate::pcie::slot::SlotError;

use super::{Machine, MachineError};

/// What `device_del` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The attention button was pressed; the device goes once the guest releases the slot.
    Requested,
    /// Removed at once (surprise removal).
    Removed,
}

/// Hot-plug errors.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// The request itself is bad.
    #[error(transparent)]
    Spec(#[from] DeviceSpecError),
    /// The board refused.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The slot refused.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// AER injection refused.
    #[error(transparent)]
    Aer(#[from] AerInjectError),
    /// Anything else, explained.
    #[error("{0}")]
    Refused(String),
}

impl From<TopologyError> for HotplugError {
    fn from(e: TopologyError) -> Self {
        HotplugError::Machine(MachineError::Topology(e))
    }
}

impl Machine {
    fn port_mut(&mut self, n: NodeId) -> Option<&mut PciePort> {
        self.pci.node_mut(n).and_then(|x| x.dev.as_any_mut().downcast_mut::<PciePort>())
    }

    fn port(&self, n: NodeId) -> Option<&PciePort> {
        self.pci.node(n).and_then(|x| x.dev.as_any().downcast_ref::<PciePort>())
    }

    /// The port above the bus `n` sits on, if that bus is a port's slot.
    fn slot_port_of(&self, n: NodeId) -> Option<NodeId> {
        let bus = self.pci.node(n)?.bus;
        let up = self.pci.bus(bus)?.parent?;
        self.port(up).filter(|p| p.slot_view().is_some()).map(|_| up)
    }

    fn port_fx(&mut self, port: NodeId, fx: PciEffects, out: &mut Outputs) {
        if self.pci.handle(port, fx, out) {
            self.pci.sync(out);
        }
    }

    /// Adds a device described by `req`. At start-up (`hot == false`) a device below a port's
    /// slot is cold-plugged (present, powered, no interrupt); hot (`device_add`) it goes through
    /// the slot's insertion sequence.
    pub fn add_request(&mut self, req: &DeviceRequest, hot: bool, fx: &mut Effects) -> Result<NodeId, HotplugError> {
        let bus_name = req.bus.clone().unwrap_or_else(|| "pcie.0".into());
        let bus = self.pci.bus_by_name(&bus_name).ok_or_else(|| TopologyError::NoBus(bus_name.clone()))?;
        let parent = self.pci.bus(bus).and_then(|b| b.parent);
        let slot_port = parent.filter(|p| self.port(*p).is_some_and(|x| x.slot_view().is_some()));
        if hot {
            match slot_port {
                Some(p) if self.port(p).is_some_and(PciePort::hotplug_capable) => {}
                Some(_) => return Err(HotplugError::Refused(format!("the slot of {bus_name} is not hot-plug capable (hotplug=off)"))),
                None => {
                    return Err(HotplugError::Refused(format!(
                        "bus {bus_name} has no hot-plug slot: hot-add devices behind a q35dm-root-port or q35dm-downstream-port"
                    )))
                }
            }
        }
        let created = devices::create(req)?;
        let single = self.pci.bus(bus).is_some_and(|b| b.single_device);
        let devfn = match req.devfn {
            Some(d) => d,
            None if single => 0,
            None => self.pci.free_slot(bus, if bus == crate::pci::topology::ROOT_BUS { 1 } else { 0 })? << 3,
        };
        let id = req.id.clone().unwrap_or_default();
        let n = self.pci.add(bus, devfn, &id, created.dev, created.child_single_device)?;
        let mut out = Outputs::default();
        if let (Some(p), 0) = (slot_port, devfn & 7) {
            let r = match self.port_mut(p) {
                Some(port) if hot => port.insert(),
                Some(port) => port.cold_plug(),
                None => Ok(Vec::new()),
            };
            match r {
                Ok(pfx) => {
                    self.port_fx(p, pfx, &mut out);
                    // A slot whose power is off (power controller) holds the card unpowered.
                    if self.port(p).and_then(PciePort::slot_view).is_some_and(|v| !v.power) {
                        self.pci.set_powered(n, false, &mut out);
                    }
                }
                Err(e) => {
                    let mut o2 = Outputs::default();
                    let _ = self.pci.remove(n, &mut o2);
                    return Err(e.into());
                }
            }
        }
        self.pci.sync(&mut out);
        self.apply(out, fx);
        log::info!(
            "{} {:?} added on {bus_name} at {:02x}.{:x}{}",
            req.driver,
            id,
            devfn >> 3,
            devfn & 7,
            if hot { " (hot-plug)" } else { "" }
        );
        Ok(n)
    }

    /// `device_del`: an orderly removal through the slot (attention button, then the guest powers
    /// the slot off and the device goes), or a surprise removal when `surprise` or when the slot
    /// cannot signal release.
    pub fn device_del(&mut self, id: &str, surprise: bool, fx: &mut Effects) -> Result<Removal, HotplugError> {
        let n = self.pci.find_by_id(id).ok_or_else(|| TopologyError::NoDevice(id.into()))?;
        let port = self.slot_port_of(n).ok_or_else(|| {
            HotplugError::Refused(format!(
                "device {id:?} is not in a hot-plug slot (only devices behind root/downstream ports can be removed)"
            ))
        })?;
        if self.pci.node(n).is_some_and(|x| x.devfn & 7 != 0) {
            return Err(HotplugError::Refused(format!(
                "{id:?} is function >0 of a card: remove function 0 to remove the card"
            )));
        }
        if !self.port(port).is_some_and(PciePort::hotplug_capable) {
            return Err(HotplugError::Refused(format!("the slot holding {id:?} is not hot-plug capable")));
        }
        let now = self.start.elapsed();
        let mut out = Outputs::default();
        if !surprise {
            match self.port_mut(port).map(|p| p.request_removal(now)) {
                Some(Ok(pfx)) => {
                    self.port_fx(port, pfx, &mut out);
                    self.apply(out, fx);
                    return Ok(Removal::Requested);
                }
                Some(Err(SlotError::NoReleaseSignal { .. })) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
        self.detach_below(port, &mut out)?;
        self.apply(out, fx);
        Ok(Removal::Removed)
    }

    /// Removes everything below `port` and tells its slot the card is gone.
    fn detach_below(&mut self, port: NodeId, out: &mut Outputs) -> Result<(), HotplugError> {
        let child =
            self.pci.node(port).and_then(|x| x.child).ok_or_else(|| HotplugError::Refused("not a bridge".into()))?;
        // The slot must let the card go first (it refuses while the interlock is engaged):
        // removing the functions of a card the slot keeps would leave Presence Detect set
        // over an empty bus.
        let pfx = match self.port_mut(port) {
            Some(p) => p.remove_card()?,
            None => Vec::new(),
        };
        let below: Vec<NodeId> = self.pci.bus(child).map(|b| b.devices.values().copied().collect()).unwrap_or_default();
        for k in below {
            let id = self.pci.node(k).map(|x| x.id.clone()).unwrap_or_default();
            self.pci.remove(k, out)?;
            log::info!("device {id:?} removed");
        }
        self.port_fx(port, pfx, out);
        self.pci.sync(out);
        Ok(())
    }

    /// Handles a port's requests (slot power, detach). Called from [`Machine::apply`].
    pub(crate) fn port_event(&mut self, port: NodeId, ev: PortEvent, out: &mut Outputs) {
        match ev {
            PortEvent::Power(on) => {
                let child = self.pci.node(port).and_then(|x| x.child);
                let below: Vec<NodeId> = child
                    .and_then(|c| self.pci.bus(c))
                    .map(|b| b.devices.values().copied().collect())
                    .unwrap_or_default();
                for k in below {
                    self.pci.set_powered(k, on, out);
                }
            }
            PortEvent::DetachReady => {
                if let Err(e) = self.detach_below(port, out) {
                    log::error!("detaching below port {port}: {e}");
                }
            }
        }
    }

    /// The port addressed as `[chassis.]slot`.
    pub fn find_slot(&self, chassis: Option<u8>, slot: u16) -> Option<NodeId> {
        self.pci
            .nodes()
            .filter_map(|(n, _)| self.port(n).map(|p| (n, p)))
            .find(|(_, p)| p.slot_number() == Some(slot) && chassis.is_none_or(|c| c == p.chassis()))
            .map(|(n, _)| n)
    }

    /// `(chassis, physical slot)` of the hot-plug port with qdev id `id`.
    pub fn slot_of_port(&self, id: &str) -> Option<(u8, u16)> {
        let n = self.pci.find_by_id(id)?;
        let p = self.port(n)?;
        Some((p.chassis(), p.slot_number()?))
    }

    /// `pcie_abp [chassis.]slot`: presses the attention button; returns (chassis, slot).
    pub fn press_attention_button(
        &mut self,
        chassis: Option<u8>,
        slot: u16,
        fx: &mut Effects,
    ) -> Result<(u8, u16), HotplugError> {
        let n = self.find_slot(chassis, slot).ok_or_else(|| {
            HotplugError::Refused(match chassis {
                Some(c) => format!("no PCIe slot {slot} in chassis {c}"),
                None => format!("no PCIe slot {slot}"),
            })
        })?;
        let c = self.port(n).map_or(0, PciePort::chassis);
        let pfx = self.port_mut(n).map(PciePort::press_button).transpose()?.unwrap_or_default();
        let mut out = Outputs::default();
        self.port_fx(n, pfx, &mut out);
        self.apply(out, fx);
        Ok((c, slot))
    }

    /// Operator MRL (latch) open/close on `[chassis.]slot`.
    pub fn set_latch(
        &mut self,
        chassis: Option<u8>,
        slot: u16,
        open: bool,
        fx: &mut Effects,
    ) -> Result<(), HotplugError> {
        let n = self.find_slot(chassis, slot).ok_or_else(|| HotplugError::Refused(format!("no PCIe slot {slot}")))?;
        let pfx = self.port_mut(n).map(|p| p.set_mrl(open)).transpose()?.unwrap_or_default();
        let mut out = Outputs::default();
        self.port_fx(n, pfx, &mut out);
        self.apply(out, fx);
        Ok(())
    }

    /// The id of the first port whose hot-plug slot is empty (for `pci_add auto`).
    pub fn first_free_slot_bus(&self) -> Option<String> {
        self.pci
            .nodes()
            .filter(|(n, _)| {
                self.port(*n).is_some_and(|p| p.hotplug_capable() && p.slot_view().is_some_and(|v| !v.present))
            })
            .map(|(_, x)| x.id.clone())
            .find(|id| !id.is_empty())
    }

    /// `info pcie-slots`.
    pub fn info_pcie_slots(&self) -> String {
        let mut s = String::new();
        for (n, node) in self.pci.nodes() {
            let Some(p) = self.port(n) else { continue };
            let Some(v) = p.slot_view() else { continue };
            let at = self.pci.sbdf_of(n).map_or_else(|| "unnumbered".to_string(), |x| x.to_string());
            let card = node
                .child
                .and_then(|c| self.pci.bus(c))
                .and_then(|b| b.devices.get(&0))
                .and_then(|k| self.pci.node(*k))
                .map(|k| if k.id.is_empty() { k.dev.name().to_string() } else { k.id.clone() });
            let _ = writeln!(
                s,
                "chassis {} {v} [{} {:?} at {at}{}]",
                p.chassis(),
                p.kind().driver(),
                node.id,
                card.map(|c| format!(", card {c:?}")).unwrap_or_default()
            );
        }
        if s.is_empty() {
            s.push_str("no PCIe hot-plug slots\n");
        }
        s
    }

    /// Injects `errors` into the function `target` and propagates each resulting message up to
    /// the root port (which raises its interrupt if the guest enabled it). Returns the text
    /// QEMU's `pcie_aer_inject_error` prints.
    pub fn aer_inject(
        &mut self,
        target: NodeId,
        errors: &[AerErrorSpec],
        fx: &mut Effects,
    ) -> Result<String, HotplugError> {
        let sbdf: Sbdf = self
            .pci
            .sbdf_of(target)
            .ok_or_else(|| HotplugError::Refused("the function is not reachable yet (its bus has no number)".into()))?;
        let (name, root_bus) = {
            let node = self.pci.node(target).ok_or_else(|| TopologyError::NoDevice(target.to_string()))?;
            // QEMU prints the root bus path: segment and root bus number.
            (
                if node.id.is_empty() { node.dev.name().to_string() } else { node.id.clone() },
                format!("{:04x}:00", sbdf.seg()),
            )
        };
        let outcome = self
            .pci
            .node_mut(target)
            .ok_or_else(|| TopologyError::NoDevice(target.to_string()))?
            .dev
            .aer_inject(errors, sbdf.bdf())?;
        let mut out = Outputs::default();
        for msg in &outcome.messages {
            let mut cur = target;
            let mut pfx = Vec::new();
            let own = self.pci.node_mut(target).map(|x| x.dev.aer_receive(msg, true, &mut pfx));
            self.port_fx(target, pfx, &mut out);
            if own == Some(AerHop::Delivered) {
                continue;
            }
            for _ in 0..=256 {
                let Some(up) = self.pci.node(cur).and_then(|x| self.pci.bus(x.bus)).and_then(|b| b.parent) else {
                    crate::guest_warn!("AER message from {sbdf} reached the root complex without a root port; dropped");
                    break;
                };
                let mut pfx = Vec::new();
                let hop = self.pci.node_mut(up).map_or(AerHop::NotPort, |x| x.dev.aer_receive(msg, false, &mut pfx));
                self.port_fx(up, pfx, &mut out);
                match hop {
                    AerHop::Forward => cur = up,
                    AerHop::Delivered | AerHop::Stopped | AerHop::NotPort => break,
                }
            }
        }
        self.apply(out, fx);
        Ok(format!(
            "OK id: {name} root bus: {root_bus}, bus: {:x} devfn: {:x}.{:x}\n",
            sbdf.bus(),
            sbdf.dev(),
            sbdf.func()
        ))
    }
}
