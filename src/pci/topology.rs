//! The PCI hierarchy: buses, the functions on them, bridges between them, and everything derived
//! from the guest's programming of it.
//!
//! - Buses are objects (the root bus `pcie.0`, one per bridge); their *numbers* come from the
//!   bridges' secondary/subordinate registers, as the guest programs them. A type-1 access to bus
//!   N is routed from the root through the bridge whose [secondary, subordinate] contains N
//!   (QEMU's `pci_find_bus_nr`); a function other than 0 is invisible without function 0.
//! - [`Topology::sync`] recomputes, from the current programming, which SBDFs Xen must send as
//!   `IOREQ_TYPE_PCI_CONFIG` (Xen forwards 0xCFC only for registered SBDFs, so they are
//!   re-registered when a bridge's bus numbers change) and which BARs actually decode: a BAR is
//!   live only if the function decodes it (Command bits) and every bridge above forwards it
//!   (its window contains the BAR and its Command.IO/MEM is on). Changes come out as
//!   [`Effect::MapRange`]/[`Effect::UnmapRange`]. Overlapping BARs: the first one in bus order
//!   wins, the others are not decoded (logged).
//! - INTx: a function's pin is swizzled `(pin + dev) % 4` at each bridge up to the root bus and
//!   wire-ORed per (root device, pin) before `set_pci_intx_level` is raised or lowered.
//! - Secondary Bus Reset (Bridge Control bit 6 rising) resets every function below the bridge.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use thiserror::Error;
use xen_bindings::dm_op::IoRangeKind;

use crate::bus::{Range, RangeMap};
use crate::device::{ones, Effect, Effects, IoRange};
use crate::guest_warn;
use crate::pci::bar::BarKind;
use crate::pci::bridge::{self, breg, BusNumbers, RawWindows, Windows};
use crate::pci::config::{reg, HeaderType, IntxPin, ResetKind};
use crate::pci::device::{PciDevice, PciEffect, PciEffects, PlatformEvent};
use crate::pci::Sbdf;

/// Index of a function in the topology.
pub type NodeId = usize;
/// Index of a bus object.
pub type BusId = usize;

/// The root bus.
pub const ROOT_BUS: BusId = 0;

/// Topology changes that were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// The slot is taken.
    #[error("{bus} slot {dev:02x}.{func:x} is already occupied by {by:?}")]
    Occupied {
        /// Bus name.
        bus: String,
        /// Device.
        dev: u8,
        /// Function.
        func: u8,
        /// Occupant id/name.
        by: String,
    },
    /// The id is in use.
    #[error("device id {0:?} is already in use")]
    DuplicateId(String),
    /// No such bus.
    #[error("no PCI bus {0:?}")]
    NoBus(String),
    /// No such device.
    #[error("no PCI device {0:?}")]
    NoDevice(String),
    /// Only device 0 exists below a PCIe port.
    #[error("bus {bus} is below a PCIe port: only device 0 exists there (asked for {dev:02x})")]
    PortSlot {
        /// Bus name.
        bus: String,
        /// Device asked for.
        dev: u8,
    },
    /// No free slot on the bus.
    #[error("no free slot on bus {0}")]
    Full(String),
}

/// What a BAR-decoded range points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Function.
    pub node: NodeId,
    /// BAR index (6 = ROM).
    pub bar: u8,
    /// Base address of the BAR.
    pub base: u64,
}

/// One function in the hierarchy.
pub struct Node {
    /// The device model of the function.
    pub dev: Box<dyn PciDevice>,
    /// Bus it sits on.
    pub bus: BusId,
    /// `dev << 3 | fn`.
    pub devfn: u8,
    /// qdev-style id ("" if none).
    pub id: String,
    /// The bus behind it (bridges).
    pub child: Option<BusId>,
    /// Powered (a slot's power controller can turn it off: then it reads all-ones and decodes
    /// nothing).
    pub powered: bool,
    intx_root: Option<(u8, u8)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({} {:?} on bus {} devfn {:#x})", self.dev.name(), self.id, self.bus, self.devfn)
    }
}

/// A bus object.
#[derive(Debug)]
pub struct BusInfo {
    /// Name (`pcie.0`, or the id of the bridge above).
    pub name: String,
    /// The bridge above (None for the root bus).
    pub parent: Option<NodeId>,
    /// Only device 0 may exist (below a PCIe root or downstream port).
    pub single_device: bool,
    /// Functions by devfn.
    pub devices: BTreeMap<u8, NodeId>,
}

/// What an access produced for the owner.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Hypervisor effects.
    pub fx: Effects,
    /// Chipset events for the board.
    pub platform: Vec<(NodeId, PlatformEvent)>,
    /// Hot-plug port requests for the board.
    pub port: Vec<(NodeId, crate::pci::device::PortEvent)>,
    /// Functions the guest reset by a Secondary Bus Reset on a bridge above them or by a
    /// Function Level Reset, in order (the board reports them to its reset hook, e.g. to reset
    /// the host function behind a passed-through one).
    pub resets: Vec<(NodeId, ResetKind)>,
}

/// The PCI Express capability of a function, if it has one.
fn pcie_cap(cfg: &crate::pci::config::ConfigSpace) -> Option<crate::pcie::cap::PcieCap> {
    crate::pci::caps::walk_standard(cfg.bytes())
        .find(u16::from(crate::pci::caps::id::EXP))
        .map(crate::pcie::cap::PcieCap::at)
}

/// Whether a config write at `off` left Initiate Function Level Reset set (FLR-capable
/// endpoints; the bit lives in Device Control, so only writes into the capability area count).
fn flr_requested(cfg: &crate::pci::config::ConfigSpace, off: u16) -> bool {
    (0x40..0x100).contains(&off) && pcie_cap(cfg).is_some_and(|c| c.flr_initiated(cfg))
}

/// The hierarchy.
#[derive(Default)]
pub struct Topology {
    nodes: Vec<Option<Node>>,
    buses: Vec<Option<BusInfo>>,
    sbdfs: BTreeSet<u32>,
    mmio: RangeMap<Target>,
    pio: RangeMap<Target>,
    intx: BTreeMap<(u8, u8), u32>,
    /// Bus number -> bus object, rebuilt by [`Topology::sync`] (so config routing is O(1)
    /// however many buses exist); `None` while stale.
    bus_cache: Option<Box<[Option<BusId>; 256]>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Topology({} functions, {} buses)",
            self.nodes.iter().flatten().count(),
            self.buses.iter().flatten().count()
        )
    }
}

/// Class names as QEMU's `info pci` prints them.
pub fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        0x0100 => "SCSI controller",
        0x0101 => "IDE controller",
        0x0106 => "SATA controller",
        0x0200 => "Ethernet controller",
        0x0300 => "VGA controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0604 => "PCI bridge",
        0x0680 => "Bridge",
        0x0880 => "System peripheral",
        0x0c03 => "USB controller",
        0x0c05 => "SMBus",
        0xff00 => "Unassigned class",
        _ => return None,
    })
}

impl Topology {
    /// A topology with an empty root bus named `pcie.0`.
    pub fn new() -> Self {
        let mut t = Self::default();
        t.buses.push(Some(BusInfo {
            name: "pcie.0".into(),
            parent: None,
            single_device: false,
            devices: BTreeMap::new(),
        }));
        t
    }

    /// A bus by name.
    pub fn bus_by_name(&self, name: &str) -> Option<BusId> {
        self.buses.iter().position(|b| b.as_ref().is_some_and(|b| b.name == name))
    }

    /// A bus.
    pub fn bus(&self, b: BusId) -> Option<&BusInfo> {
        self.buses.get(b).and_then(Option::as_ref)
    }

    /// A function.
    pub fn node(&self, n: NodeId) -> Option<&Node> {
        self.nodes.get(n).and_then(Option::as_ref)
    }

    /// A function, mutably.
    pub fn node_mut(&mut self, n: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(n).and_then(Option::as_mut)
    }

    /// A function by qdev id.
    pub fn find_by_id(&self, id: &str) -> Option<NodeId> {
        if id.is_empty() {
            return None;
        }
        self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.id == id))
    }

    /// Every function, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// A free device number on `bus` (first fit from `from`).
    pub fn free_slot(&self, bus: BusId, from: u8) -> Result<u8, TopologyError> {
        let b = self.bus(bus).ok_or_else(|| TopologyError::NoBus(bus.to_string()))?;
        let last = if b.single_device { 0 } else { 31 };
        (from..=last).find(|d| !b.devices.contains_key(&(d << 3))).ok_or_else(|| TopologyError::Full(b.name.clone()))
    }

    /// Adds a function at `devfn` on `bus`. A type-1 function gets a child bus named after `id`
    /// (or its name); `single_device` marks that child bus as below a PCIe port. The caller runs
    /// [`Topology::sync`] afterwards.
    pub fn add(
        &mut self,
        bus: BusId,
        devfn: u8,
        id: &str,
        dev: Box<dyn PciDevice>,
        child_single_device: bool,
    ) -> Result<NodeId, TopologyError> {
        if !id.is_empty() && self.find_by_id(id).is_some() {
            return Err(TopologyError::DuplicateId(id.into()));
        }
        let b = self.bus(bus).ok_or_else(|| TopologyError::NoBus(bus.to_string()))?;
        if b.single_device && devfn >> 3 != 0 {
            return Err(TopologyError::PortSlot { bus: b.name.clone(), dev: devfn >> 3 });
        }
        if let Some(by) = b.devices.get(&devfn).and_then(|n| self.node(*n)) {
            return Err(TopologyError::Occupied {
                bus: b.name.clone(),
                dev: devfn >> 3,
                func: devfn & 7,
                by: if by.id.is_empty() { by.dev.name().to_string() } else { by.id.clone() },
            });
        }
        let is_bridge = dev.config().header_type() == Some(HeaderType::Type1);
        let nid = self.nodes.len();
        let child = if is_bridge {
            let name = if id.is_empty() { format!("{}.{nid}", dev.name()) } else { id.to_string() };
            self.buses.push(Some(BusInfo {
                name,
                parent: Some(nid),
                single_device: child_single_device,
                devices: BTreeMap::new(),
            }));
            Some(self.buses.len() - 1)
        } else {
            None
        };
        self.bus_cache = None;
        self.nodes.push(Some(Node { dev, bus, devfn, id: id.into(), child, powered: true, intx_root: None }));
        if let Some(b) = self.buses.get_mut(bus).and_then(Option::as_mut) {
            b.devices.insert(devfn, nid);
        }
        let pin = self.node(nid).and_then(|n| n.dev.config().interrupt_pin());
        let root = pin.and_then(|p| self.root_intx(nid, p));
        if let Some(n) = self.node_mut(nid) {
            n.dev.placed(root);
        }
        Ok(nid)
    }

    /// Removes a function and everything below it; returns the removed device models (children
    /// first). The caller runs [`Topology::sync`] afterwards; INTx lines they held are released.
    pub fn remove(&mut self, n: NodeId, out: &mut Outputs) -> Result<Vec<Box<dyn PciDevice>>, TopologyError> {
        let node = self.node(n).ok_or_else(|| TopologyError::NoDevice(n.to_string()))?;
        let (bus, devfn, child) = (node.bus, node.devfn, node.child);
        self.bus_cache = None;
        let mut removed = Vec::new();
        if let Some(c) = child {
            let below: Vec<NodeId> = self.bus(c).map(|b| b.devices.values().copied().collect()).unwrap_or_default();
            for k in below {
                removed.extend(self.remove(k, out)?);
            }
            if let Some(slot) = self.buses.get_mut(c) {
                *slot = None;
            }
        }
        self.release_intx(n, out);
        if let Some(b) = self.buses.get_mut(bus).and_then(Option::as_mut) {
            b.devices.remove(&devfn);
        }
        if let Some(node) = self.nodes.get_mut(n).and_then(Option::take) {
            removed.push(node.dev);
        }
        Ok(removed)
    }

    /// The bus object carrying bus number `nr`, routing from the root as type-1 cycles do.
    pub fn find_bus_nr(&self, nr: u8) -> Option<BusId> {
        match &self.bus_cache {
            Some(c) => c.get(usize::from(nr)).copied().flatten(),
            None => self.walk_bus_nr(nr),
        }
    }

    fn walk_bus_nr(&self, nr: u8) -> Option<BusId> {
        let mut cur = ROOT_BUS;
        if nr == 0 {
            return Some(cur);
        }
        for _ in 0..=256 {
            let b = self.bus(cur)?;
            let mut next = None;
            for n in b.devices.values() {
                let Some(node) = self.node(*n) else { continue };
                let Some(child) = node.child else { continue };
                if !node.powered {
                    continue;
                }
                let bn = BusNumbers::of(node.dev.config());
                if bn.claims(nr) {
                    if bn.secondary == nr {
                        return Some(child);
                    }
                    next = Some(child);
                    break;
                }
            }
            cur = next?;
        }
        None
    }

    /// The function a config access for `sbdf` reaches, if any (segment 0 only; functions other
    /// than 0 only when function 0 exists; powered functions only).
    pub fn find(&self, sbdf: Sbdf) -> Option<NodeId> {
        if sbdf.seg() != 0 {
            return None;
        }
        let b = self.bus(self.find_bus_nr(sbdf.bus())?)?;
        if sbdf.func() != 0 && !b.devices.contains_key(&(sbdf.devfn() & !7)) {
            return None;
        }
        let n = *b.devices.get(&sbdf.devfn())?;
        self.node(n).filter(|x| x.powered).map(|_| n)
    }

    /// The bus number of a bus object (0 for the root, the parent bridge's secondary otherwise;
    /// `None` while unassigned).
    pub fn bus_number(&self, bus: BusId) -> Option<u8> {
        let b = self.bus(bus)?;
        match b.parent {
            None => Some(0),
            Some(p) => {
                let s = BusNumbers::of(self.node(p)?.dev.config()).secondary;
                (s != 0).then_some(s)
            }
        }
    }

    /// The current address of a function, if it is reachable.
    pub fn sbdf_of(&self, n: NodeId) -> Option<Sbdf> {
        let node = self.node(n)?;
        let nr = self.bus_number(node.bus)?;
        let s = Sbdf::new(0, nr, node.devfn >> 3, node.devfn & 7);
        (self.find(s) == Some(n)).then_some(s)
    }

    /// A guest config read.
    pub fn config_read(&mut self, sbdf: Sbdf, off: u16, size: u8) -> u32 {
        match self.find(sbdf).and_then(|n| self.node_mut(n)) {
            Some(node) => node.dev.config_read(off, size),
            None => ones(size) as u32,
        }
    }

    /// A guest config write.
    pub fn config_write(&mut self, sbdf: Sbdf, off: u16, size: u8, val: u32, out: &mut Outputs) {
        let Some(n) = self.find(sbdf) else {
            return;
        };
        let Some(node) = self.node_mut(n) else { return };
        let is_bridge = node.child.is_some();
        let old_bctl = node.dev.config().get_u16(breg::BRIDGE_CONTROL);
        let fx = node.dev.config_write(off, size, val);
        let new_bctl = node.dev.config().get_u16(breg::BRIDGE_CONTROL);
        let flr = !is_bridge && flr_requested(node.dev.config(), off);
        let mut rebuild = self.handle(n, fx, out);
        if flr {
            log::info!("{sbdf}: function level reset");
            self.reset_node(n, ResetKind::Flr, out);
            if let Some(node) = self.node_mut(n) {
                if let Some(cap) = pcie_cap(node.dev.config()) {
                    cap.clear_flr(node.dev.function_mut().config_mut());
                }
            }
            rebuild = true;
        }
        if is_bridge {
            let end = u32::from(off) + u32::from(size);
            let touches = |a: u16, b: u16| u32::from(off) < u32::from(b) && end > u32::from(a);
            if touches(reg::COMMAND, reg::COMMAND + 2) || touches(0x18, 0x34) || touches(0x3e, 0x40) {
                rebuild = true;
            }
            if bridge::sbr_rising(old_bctl, new_bctl) {
                log::info!("{sbdf}: secondary bus reset");
                self.reset_below(n, ResetKind::SecondaryBusReset, out);
                rebuild = true;
            }
        }
        if rebuild {
            self.sync(out);
        }
    }

    /// Applies a function's effects; returns whether the decode maps need rebuilding.
    pub fn handle(&mut self, n: NodeId, fx: PciEffects, out: &mut Outputs) -> bool {
        let mut rebuild = false;
        for e in fx {
            match e {
                PciEffect::Bar(_) => rebuild = true,
                PciEffect::Msi { addr, data } => out.fx.push(Effect::Msi { addr, data }),
                PciEffect::Intx { pin, level } => self.set_intx(n, pin, level, out),
                PciEffect::Platform(p) => out.platform.push((n, p)),
                PciEffect::Port(p) => out.port.push((n, p)),
            }
        }
        rebuild
    }

    /// Root-bus device and pin a function's pin arrives at after the bridge swizzles.
    pub fn root_intx(&self, n: NodeId, pin: IntxPin) -> Option<(u8, IntxPin)> {
        let (mut node, mut pin) = (n, pin);
        for _ in 0..=256 {
            let nd = self.node(node)?;
            match self.bus(nd.bus)?.parent {
                None => return Some((nd.devfn >> 3, pin)),
                Some(up) => {
                    pin = pin.swizzle(nd.devfn >> 3);
                    node = up;
                }
            }
        }
        None
    }

    fn set_intx(&mut self, n: NodeId, pin: IntxPin, level: bool, out: &mut Outputs) {
        if !level {
            self.release_intx(n, out);
            return;
        }
        let Some((dev, rp)) = self.root_intx(n, pin) else { return };
        let key = (dev, rp.index());
        let Some(node) = self.node_mut(n) else { return };
        if node.intx_root == Some(key) {
            return;
        }
        let previous = node.intx_root.replace(key);
        if previous.is_some() {
            // The pin cannot move while asserted; release the stale one defensively.
            node.intx_root = previous;
            self.release_intx(n, out);
            if let Some(node) = self.node_mut(n) {
                node.intx_root = Some(key);
            }
        }
        let c = self.intx.entry(key).or_insert(0);
        *c += 1;
        if *c == 1 {
            out.fx.push(Effect::PciIntx { device: key.0, intx: key.1, level: true });
        }
    }

    fn release_intx(&mut self, n: NodeId, out: &mut Outputs) {
        let Some(key) = self.node_mut(n).and_then(|nd| nd.intx_root.take()) else { return };
        if let Some(c) = self.intx.get_mut(&key) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.intx.remove(&key);
                out.fx.push(Effect::PciIntx { device: key.0, intx: key.1, level: false });
            }
        }
    }

    /// Resets every function below bridge `n` (not `n` itself).
    pub fn reset_below(&mut self, n: NodeId, kind: ResetKind, out: &mut Outputs) {
        let Some(child) = self.node(n).and_then(|x| x.child) else { return };
        let below: Vec<NodeId> = self.bus(child).map(|b| b.devices.values().copied().collect()).unwrap_or_default();
        for k in below {
            self.reset_node(k, kind, out);
            self.reset_below(k, kind, out);
        }
    }

    /// Resets one function (a Secondary Bus Reset or FLR is also reported in
    /// [`Outputs::resets`]).
    pub fn reset_node(&mut self, n: NodeId, kind: ResetKind, out: &mut Outputs) {
        if let Some(node) = self.node_mut(n) {
            let fx = node.dev.reset(kind);
            self.handle(n, fx, out);
            if matches!(kind, ResetKind::SecondaryBusReset | ResetKind::Flr) {
                out.resets.push((n, kind));
            }
        }
        self.release_intx(n, out);
    }

    /// Resets the whole hierarchy.
    pub fn reset_all(&mut self, kind: ResetKind, out: &mut Outputs) {
        let all: Vec<NodeId> = self.nodes().map(|(i, _)| i).collect();
        for n in all {
            self.reset_node(n, kind, out);
        }
        self.sync(out);
    }

    /// Powers a function (and what is below it) on or off.
    pub fn set_powered(&mut self, n: NodeId, on: bool, out: &mut Outputs) {
        let Some(node) = self.node_mut(n) else { return };
        if node.powered == on {
            return;
        }
        node.powered = on;
        self.bus_cache = None;
        if !on {
            self.reset_node(n, ResetKind::Cold, out);
            self.reset_below(n, ResetKind::Cold, out);
        }
        self.sync(out);
    }

    /// Recomputes registered SBDFs, decoded BARs and the bus-number table from the current
    /// programming.
    pub fn sync(&mut self, out: &mut Outputs) {
        self.bus_cache = None;
        let mut cache = Box::new([None; 256]);
        for (nr, slot) in cache.iter_mut().enumerate() {
            *slot = self.walk_bus_nr(nr as u8);
        }
        self.bus_cache = Some(cache);
        let mut sbdfs = BTreeSet::new();
        let mut bars: Vec<(bool, Range, Target)> = Vec::new();
        let mut stack: Vec<Windows> = Vec::new();
        self.walk(ROOT_BUS, 0, &mut stack, &mut sbdfs, &mut bars, 0);
        // Config registrations.
        for s in self.sbdfs.difference(&sbdfs) {
            out.fx.push(Effect::UnmapRange(IoRange::pci(Sbdf::from_raw(*s))));
        }
        for s in sbdfs.difference(&self.sbdfs) {
            out.fx.push(Effect::MapRange(IoRange::pci(Sbdf::from_raw(*s))));
        }
        self.sbdfs = sbdfs;
        // BAR decode.
        let want: BTreeSet<(bool, u64, u64, Target)> =
            bars.iter().map(|(io, r, t)| (*io, r.start, r.end, *t)).collect();
        let have: BTreeSet<(bool, u64, u64, Target)> = self
            .pio
            .iter()
            .map(|(r, t)| (true, r.start, r.end, *t))
            .chain(self.mmio.iter().map(|(r, t)| (false, r.start, r.end, *t)))
            .collect();
        for (io, start, end, _) in have.difference(&want) {
            let map = if *io { &mut self.pio } else { &mut self.mmio };
            let _ = map.remove(*start);
            out.fx.push(Effect::UnmapRange(IoRange {
                kind: if *io { IoRangeKind::Port } else { IoRangeKind::Memory },
                start: *start,
                end: *end,
            }));
        }
        for (io, start, end, t) in want.difference(&have) {
            let Some(r) = Range::inclusive(*start, *end) else { continue };
            let map = if *io { &mut self.pio } else { &mut self.mmio };
            match map.insert(r, *t) {
                Ok(()) => out.fx.push(Effect::MapRange(IoRange {
                    kind: if *io { IoRangeKind::Port } else { IoRangeKind::Memory },
                    start: *start,
                    end: *end,
                })),
                Err(e) => guest_warn!("BAR{} of function {} not decoded: {e}", t.bar, t.node),
            }
        }
    }

    fn walk(
        &self,
        bus: BusId,
        nr: u8,
        stack: &mut Vec<Windows>,
        sbdfs: &mut BTreeSet<u32>,
        bars: &mut Vec<(bool, Range, Target)>,
        depth: usize,
    ) {
        if depth > 256 {
            return;
        }
        let Some(b) = self.bus(bus) else { return };
        for (devfn, n) in &b.devices {
            if devfn & 7 != 0 && !b.devices.contains_key(&(devfn & !7)) {
                continue;
            }
            let Some(node) = self.node(*n) else { continue };
            if !node.powered {
                continue;
            }
            sbdfs.insert(Sbdf::new(0, nr, devfn >> 3, devfn & 7).raw());
            for m in node.dev.function().bars().mapped() {
                let io = m.kind == BarKind::Io;
                if stack.iter().all(|w| bridge::forwards(w, io, m.addr, m.size)) {
                    if let Some(r) = Range::new(m.addr, m.size) {
                        bars.push((io, r, Target { node: *n, bar: m.bar, base: m.addr }));
                    }
                }
            }
            if let Some(child) = node.child {
                let bn = BusNumbers::of(node.dev.config());
                // A child bus numbered at or below its parent would loop: not forwarded.
                if bn.secondary > nr {
                    stack.push(bridge::windows(node.dev.config()));
                    self.walk(child, bn.secondary, stack, sbdfs, bars, depth + 1);
                    stack.pop();
                }
            }
        }
    }

    /// Whether a BAR decodes `[addr, addr+size)`.
    pub fn claims_mmio(&self, addr: u64, size: u64) -> bool {
        self.mmio.find_access(addr, size).is_some()
    }

    /// Whether a BAR decodes the ports.
    pub fn claims_pio(&self, port: u64, size: u64) -> bool {
        self.pio.find_access(port, size).is_some()
    }

    /// A read through a decoded BAR.
    pub fn bar_read(&mut self, io: bool, addr: u64, size: u8) -> Option<u64> {
        let map = if io { &self.pio } else { &self.mmio };
        let (_, t) = map.find_access(addr, u64::from(size))?;
        let t = *t;
        let node = self.node_mut(t.node)?;
        Some(node.dev.bar_read(t.bar, addr - t.base, size))
    }

    /// A write through a decoded BAR. Returns false if nothing decodes it.
    pub fn bar_write(&mut self, io: bool, addr: u64, size: u8, val: u64, out: &mut Outputs) -> bool {
        let map = if io { &self.pio } else { &self.mmio };
        let Some((_, t)) = map.find_access(addr, u64::from(size)) else { return false };
        let t = *t;
        let Some(node) = self.node_mut(t.node) else { return false };
        let fx = node.dev.bar_write(t.bar, addr - t.base, size, val);
        if self.handle(t.node, fx, out) {
            self.sync(out);
        }
        true
    }

    /// SBDFs currently registered for config ioreqs.
    pub fn registered_sbdfs(&self) -> impl Iterator<Item = Sbdf> + '_ {
        self.sbdfs.iter().map(|s| Sbdf::from_raw(*s))
    }

    /// Decoded BAR ranges (`true` = I/O).
    pub fn decoded(&self) -> Vec<(bool, Range, Target)> {
        self.pio.iter().map(|(r, t)| (true, r, *t)).chain(self.mmio.iter().map(|(r, t)| (false, r, *t))).collect()
    }

    /// `info pci` in QEMU's format (reachable functions, bridges followed by what is below).
    pub fn info_pci(&self) -> String {
        let mut s = String::new();
        self.info_bus(ROOT_BUS, 0, &mut s, 0);
        s
    }

    fn info_bus(&self, bus: BusId, nr: u8, s: &mut String, depth: usize) {
        let Some(b) = self.bus(bus) else { return };
        if depth > 256 {
            return;
        }
        for (devfn, n) in &b.devices {
            let Some(node) = self.node(*n) else { continue };
            if !node.powered || (devfn & 7 != 0 && !b.devices.contains_key(&(devfn & !7))) {
                continue;
            }
            let c = node.dev.config();
            let _ = writeln!(s, "  Bus {:2}, device {:3}, function {}:", nr, devfn >> 3, devfn & 7);
            let class = (c.get_u32(reg::REVISION_ID) >> 16) as u16;
            let cname = class_name(class).map(str::to_string).unwrap_or_else(|| format!("Class {class:04x}"));
            let _ = writeln!(s, "    {cname}: PCI device {:04x}:{:04x}", c.vendor_id(), c.device_id());
            let header = c.header_type();
            if header == Some(HeaderType::Type0) {
                let _ = writeln!(s, "      PCI subsystem {:04x}:{:04x}", c.get_u16(0x2c), c.get_u16(0x2e));
            }
            if let Some(pin) = c.interrupt_pin() {
                let _ =
                    writeln!(s, "      IRQ {}, pin {}", c.get_u8(reg::INTERRUPT_LINE), (b'A' + pin.index()) as char);
            }
            if header == Some(HeaderType::Type1) {
                let bn = BusNumbers::of(c);
                let w = RawWindows::of(c);
                let _ = writeln!(s, "      BUS {}.", bn.primary);
                let _ = writeln!(s, "      secondary bus {}.", bn.secondary);
                let _ = writeln!(s, "      subordinate bus {}.", bn.subordinate);
                let _ = writeln!(s, "      IO range [0x{:04x}, 0x{:04x}]", w.io.0, w.io.1);
                let _ = writeln!(s, "      memory range [0x{:08x}, 0x{:08x}]", w.mem.0, w.mem.1);
                let _ = writeln!(s, "      prefetchable memory range [0x{:08x}, 0x{:08x}]", w.pref.0, w.pref.1);
            }
            let mapped = node.dev.function().bars().mapped();
            for spec in node.dev.function().bars().specs() {
                if spec.index == crate::pci::bar::ROM_BAR {
                    continue;
                }
                let m = mapped.iter().find(|m| m.bar == spec.index);
                let addr = m.map_or(u64::MAX, |m| m.addr);
                let last = addr.wrapping_add(spec.size.wrapping_sub(1));
                let _ = match spec.kind {
                    BarKind::Io => writeln!(s, "      BAR{}: I/O at 0x{addr:04x} [0x{last:04x}].", spec.index),
                    BarKind::Mem32 { prefetchable } | BarKind::Mem64 { prefetchable } => writeln!(
                        s,
                        "      BAR{}: {} bit{} memory at 0x{addr:08x} [0x{last:08x}].",
                        spec.index,
                        if matches!(spec.kind, BarKind::Mem64 { .. }) { 64 } else { 32 },
                        if prefetchable { " prefetchable" } else { "" }
                    ),
                    BarKind::Rom => Ok(()),
                };
            }
            let _ = writeln!(s, "      id \"{}\"", node.id);
            if let Some(child) = node.child {
                let bn = BusNumbers::of(c);
                if bn.secondary > nr {
                    self.info_bus(child, bn.secondary, s, depth + 1);
                }
            }
        }
    }

    /// The config space of `sbdf` in `lspci -xxxx` format (input for `lspci -F`).
    pub fn dump_config(&self, sbdf: Sbdf) -> Option<String> {
        let node = self.node(self.find(sbdf)?)?;
        let c = node.dev.config();
        let class = (c.get_u32(reg::REVISION_ID) >> 16) as u16;
        let cname = class_name(class).map(str::to_string).unwrap_or_else(|| format!("Class {class:04x}"));
        let mut s =
            format!("{:02x}:{:02x}.{:x} {cname}: q35dm {}\n", sbdf.bus(), sbdf.dev(), sbdf.func(), node.dev.name());
        let bytes = c.bytes();
        let len = usize::from(c.size()).min(bytes.len());
        for (i, chunk) in bytes.get(..len).unwrap_or(&[]).chunks(16).enumerate() {
            let off = i * 16;
            if off < 0x100 {
                let _ = write!(s, "{off:02x}:");
            } else {
                let _ = write!(s, "{off:03x}:");
            }
            for b in chunk {
                let _ = write!(s, " {b:02x}");
            }
            s.push('\n');
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::bar::BarSpec;
    use crate::pci::bridge::PciBridge;
    use crate::pci::config::{cmd, HeaderIds};
    use crate::pci::device::{FunctionSpec, GenericFunction};

    fn ids(dev: u16) -> HeaderIds {
        HeaderIds { vendor_id: 0x1234, device_id: dev, class_code: 0x02_00_00, ..Default::default() }
    }

    fn endpoint(dev: u16) -> Box<dyn PciDevice> {
        let spec = FunctionSpec::new(format!("ep{dev:x}"), ids(dev))
            .express()
            .bar(BarSpec::mem32(0, 0x1000, false))
            .bar(BarSpec::io(1, 0x20))
            .intx(IntxPin::A);
        Box::new(GenericFunction::new(spec).unwrap())
    }

    fn bridge() -> Box<dyn PciDevice> {
        Box::new(PciBridge::new("br", ids(0xb)).unwrap())
    }

    fn w(t: &mut Topology, s: Sbdf, off: u16, size: u8, v: u32) -> Outputs {
        let mut out = Outputs::default();
        t.config_write(s, off, size, v, &mut out);
        out
    }

    fn maps(out: &Outputs) -> Vec<Effect> {
        out.fx.iter().filter(|e| matches!(e, Effect::MapRange(_) | Effect::UnmapRange(_))).cloned().collect()
    }

    /// root: 00:02.0 bridge -> bus "b1": 00.0 bridge -> bus "b2": 00.0 endpoint
    fn two_level() -> (Topology, NodeId, NodeId, NodeId) {
        let mut t = Topology::new();
        let b1 = t.add(ROOT_BUS, 2 << 3, "b1", bridge(), true).unwrap();
        let bus1 = t.bus_by_name("b1").unwrap();
        let b2 = t.add(bus1, 0, "b2", bridge(), true).unwrap();
        let bus2 = t.bus_by_name("b2").unwrap();
        let ep = t.add(bus2, 0, "ep", endpoint(0xe), false).unwrap();
        let mut out = Outputs::default();
        t.sync(&mut out);
        (t, b1, b2, ep)
    }

    #[test]
    fn type1_routing_follows_bus_numbers() {
        let (mut t, b1, b2, ep) = two_level();
        let ep_at = |bus| Sbdf::new(0, bus, 0, 0);
        assert_eq!(t.find(ep_at(2)), None, "nothing numbered yet");
        let out = w(&mut t, Sbdf::new(0, 0, 2, 0), breg::PRIMARY_BUS, 4, 0x00_05_01_00);
        assert!(maps(&out).contains(&Effect::MapRange(IoRange::pci(Sbdf::new(0, 1, 0, 0)))), "b2 appears on bus 1");
        assert_eq!(t.find(Sbdf::new(0, 1, 0, 0)), Some(b2));
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::PRIMARY_BUS, 4, 0x00_05_02_01);
        assert_eq!(t.find(ep_at(2)), Some(ep));
        assert_eq!(t.config_read(ep_at(2), 0, 4), 0x000e_1234);
        assert_eq!(t.config_read(ep_at(3), 0, 4), 0xffff_ffff);
        assert_eq!(t.sbdf_of(ep), Some(ep_at(2)));
        // Renumber: the endpoint moves to bus 4 and Xen must learn the new SBDF.
        let out = w(&mut t, Sbdf::new(0, 1, 0, 0), breg::SECONDARY_BUS, 1, 4);
        let m = maps(&out);
        assert!(m.contains(&Effect::UnmapRange(IoRange::pci(ep_at(2)))));
        assert!(m.contains(&Effect::MapRange(IoRange::pci(ep_at(4)))));
        assert_eq!(t.find(ep_at(4)), Some(ep));
        // A subordinate below the secondary claims nothing.
        w(&mut t, Sbdf::new(0, 0, 2, 0), breg::SUBORDINATE_BUS, 1, 0);
        assert_eq!(t.find(Sbdf::new(0, 1, 0, 0)), None);
        let _ = b1;
    }

    #[test]
    fn only_device_zero_below_a_port_and_fn0_gates_others() {
        let mut t = Topology::new();
        t.add(ROOT_BUS, 3 << 3, "rp", bridge(), true).unwrap();
        let bus = t.bus_by_name("rp").unwrap();
        assert!(matches!(t.add(bus, 1 << 3, "x", endpoint(1), false), Err(TopologyError::PortSlot { .. })));
        let f1 = t.add(ROOT_BUS, (5 << 3) | 1, "f1", endpoint(1), false).unwrap();
        assert_eq!(t.find(Sbdf::new(0, 0, 5, 1)), None, "function 1 without function 0 is invisible");
        t.add(ROOT_BUS, 5 << 3, "f0", endpoint(0), false).unwrap();
        assert_eq!(t.find(Sbdf::new(0, 0, 5, 1)), Some(f1));
        assert!(matches!(t.add(ROOT_BUS, 5 << 3, "dup", endpoint(0), false), Err(TopologyError::Occupied { .. })));
        assert!(matches!(t.add(ROOT_BUS, 6 << 3, "f0", endpoint(0), false), Err(TopologyError::DuplicateId(_))));
    }

    fn program_ep_bar(t: &mut Topology, s: Sbdf, addr: u32) {
        w(t, s, 0x10, 4, addr);
        w(t, s, 0x14, 4, 0xc001);
        w(t, s, reg::COMMAND, 2, u32::from(cmd::MEMORY | cmd::IO));
    }

    #[test]
    fn bars_behind_bridges_decode_only_through_open_windows() {
        let (mut t, _, _, _) = two_level();
        w(&mut t, Sbdf::new(0, 0, 2, 0), breg::PRIMARY_BUS, 4, 0x00_05_01_00);
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::PRIMARY_BUS, 4, 0x00_05_02_01);
        let ep = Sbdf::new(0, 2, 0, 0);
        program_ep_bar(&mut t, ep, 0xfe00_0000);
        assert!(!t.claims_mmio(0xfe00_0000, 4), "bridge windows closed");
        for s in [Sbdf::new(0, 0, 2, 0), Sbdf::new(0, 1, 0, 0)] {
            w(&mut t, s, breg::MEM_BASE, 2, 0xfe00);
            w(&mut t, s, breg::MEM_LIMIT, 2, 0xfe00);
            w(&mut t, s, breg::IO_BASE, 1, 0xc0);
            w(&mut t, s, breg::IO_LIMIT, 1, 0xc0);
        }
        assert!(!t.claims_mmio(0xfe00_0000, 4), "bridge Command.MEM still off");
        w(&mut t, Sbdf::new(0, 0, 2, 0), reg::COMMAND, 2, u32::from(cmd::MEMORY | cmd::IO));
        let out = w(&mut t, Sbdf::new(0, 1, 0, 0), reg::COMMAND, 2, u32::from(cmd::MEMORY | cmd::IO));
        assert!(maps(&out).contains(&Effect::MapRange(IoRange::memory(0xfe00_0000, 0x1000))));
        assert!(maps(&out).contains(&Effect::MapRange(IoRange::ports(0xc000, 0x20))));
        assert!(t.claims_mmio(0xfe00_0ffc, 4));
        // Shrinking the upper window (limit below base) kills the decode again.
        let out = w(&mut t, Sbdf::new(0, 0, 2, 0), breg::MEM_LIMIT, 2, 0);
        assert!(maps(&out).contains(&Effect::UnmapRange(IoRange::memory(0xfe00_0000, 0x1000))));
        assert!(!t.claims_mmio(0xfe00_0000, 4));
    }

    #[test]
    fn overlapping_bars_first_wins_and_nothing_panics() {
        let mut t = Topology::new();
        t.add(ROOT_BUS, 3 << 3, "a", endpoint(1), false).unwrap();
        t.add(ROOT_BUS, 4 << 3, "b", endpoint(2), false).unwrap();
        program_ep_bar(&mut t, Sbdf::new(0, 0, 3, 0), 0xfe00_0000);
        let out = Outputs::default();
        drop(out);
        let mut out = Outputs::default();
        t.config_write(Sbdf::new(0, 0, 4, 0), 0x10, 4, 0xfe00_0000, &mut out);
        t.config_write(Sbdf::new(0, 0, 4, 0), 0x14, 4, 0xc101, &mut out);
        t.config_write(Sbdf::new(0, 0, 4, 0), reg::COMMAND, 2, u32::from(cmd::MEMORY | cmd::IO), &mut out);
        let mmio: Vec<_> = t.decoded().into_iter().filter(|(io, _, _)| !io).collect();
        assert_eq!(mmio.len(), 1, "the second BAR on the same range is not decoded");
        assert!(t.claims_pio(0xc100, 4), "its non-overlapping I/O BAR still decodes");
        // Moving it away makes it decode.
        t.config_write(Sbdf::new(0, 0, 4, 0), 0x10, 4, 0xfe10_0000, &mut out);
        assert!(t.claims_mmio(0xfe10_0000, 4));
    }

    #[test]
    fn intx_is_swizzled_and_wire_ored() {
        let mut t = Topology::new();
        let br = t.add(ROOT_BUS, 3 << 3, "br", bridge(), false).unwrap();
        let bus = t.bus_by_name("br").unwrap();
        let a = t.add(bus, 1 << 3, "a", endpoint(1), false).unwrap();
        let b = t.add(bus, 5 << 3, "b", endpoint(2), false).unwrap();
        assert_eq!(t.root_intx(a, IntxPin::A), Some((3, IntxPin::B)));
        assert_eq!(t.root_intx(b, IntxPin::A), Some((3, IntxPin::B)), "(0 + 5) % 4 = 1 as well");
        let mut out = Outputs::default();
        t.handle(a, vec![PciEffect::Intx { pin: IntxPin::A, level: true }], &mut out);
        t.handle(b, vec![PciEffect::Intx { pin: IntxPin::A, level: true }], &mut out);
        t.handle(a, vec![PciEffect::Intx { pin: IntxPin::A, level: false }], &mut out);
        assert_eq!(out.fx, vec![Effect::PciIntx { device: 3, intx: 1, level: true }], "still held by b");
        t.handle(b, vec![PciEffect::Intx { pin: IntxPin::A, level: false }], &mut out);
        assert_eq!(out.fx.last(), Some(&Effect::PciIntx { device: 3, intx: 1, level: false }));
        // Removing a device that holds the line releases it.
        let mut out = Outputs::default();
        t.handle(a, vec![PciEffect::Intx { pin: IntxPin::A, level: true }], &mut out);
        t.remove(br, &mut out).unwrap();
        assert_eq!(out.fx.last(), Some(&Effect::PciIntx { device: 3, intx: 1, level: false }));
        assert!(t.bus_by_name("br").is_none());
    }

    #[test]
    fn secondary_bus_reset_resets_below_only() {
        let (mut t, _, _, _) = two_level();
        w(&mut t, Sbdf::new(0, 0, 2, 0), breg::PRIMARY_BUS, 4, 0x00_05_01_00);
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::PRIMARY_BUS, 4, 0x00_05_02_01);
        w(&mut t, Sbdf::new(0, 2, 0, 0), reg::INTERRUPT_LINE, 1, 0x0b);
        w(&mut t, Sbdf::new(0, 0, 2, 0), reg::INTERRUPT_LINE, 1, 0x0a);
        // SBR on the lower bridge: the endpoint is reset, bridges keep their state.
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::BRIDGE_CONTROL, 2, u32::from(bridge::bctl::BUS_RESET));
        assert_eq!(t.config_read(Sbdf::new(0, 2, 0, 0), reg::INTERRUPT_LINE, 1), 0);
        assert_eq!(t.config_read(Sbdf::new(0, 0, 2, 0), reg::INTERRUPT_LINE, 1), 0x0a);
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::BRIDGE_CONTROL, 2, 0);
        // SBR on the upper bridge resets the lower bridge too (its bus numbers go back to 0).
        w(&mut t, Sbdf::new(0, 0, 2, 0), breg::BRIDGE_CONTROL, 2, u32::from(bridge::bctl::BUS_RESET));
        assert_eq!(t.find(Sbdf::new(0, 2, 0, 0)), None);
    }

    #[test]
    fn powered_off_functions_read_all_ones_and_decode_nothing() {
        let mut t = Topology::new();
        let a = t.add(ROOT_BUS, 3 << 3, "a", endpoint(1), false).unwrap();
        program_ep_bar(&mut t, Sbdf::new(0, 0, 3, 0), 0xfe00_0000);
        assert!(t.claims_mmio(0xfe00_0000, 4));
        let mut out = Outputs::default();
        t.set_powered(a, false, &mut out);
        assert_eq!(t.config_read(Sbdf::new(0, 0, 3, 0), 0, 4), 0xffff_ffff);
        assert!(!t.claims_mmio(0xfe00_0000, 4));
        assert!(maps(&out).contains(&Effect::UnmapRange(IoRange::pci(Sbdf::new(0, 0, 3, 0)))));
        t.set_powered(a, true, &mut out);
        assert_eq!(t.config_read(Sbdf::new(0, 0, 3, 0), 0, 4), 0x0001_1234);
        assert!(!t.claims_mmio(0xfe00_0000, 4), "power-on reset cleared the BAR");
    }

    #[test]
    fn info_pci_lists_bridges_and_what_is_below() {
        let (mut t, _, _, _) = two_level();
        w(&mut t, Sbdf::new(0, 0, 2, 0), breg::PRIMARY_BUS, 4, 0x00_05_01_00);
        w(&mut t, Sbdf::new(0, 1, 0, 0), breg::PRIMARY_BUS, 4, 0x00_05_02_01);
        let s = t.info_pci();
        assert!(s.contains("  Bus  0, device   2, function 0:\n    PCI bridge: PCI device 1234:000b\n"), "{s}");
        assert!(s.contains("      secondary bus 1.\n      subordinate bus 5.\n"), "{s}");
        assert!(
            s.contains("  Bus  2, device   0, function 0:\n    Ethernet controller: PCI device 1234:000e\n"),
            "{s}"
        );
        assert!(s.contains("      BAR0: 32 bit memory at 0xffffffffffffffff [0x00000ffe].\n"), "{s}");
        assert!(s.contains("      BAR1: I/O at 0xffffffffffffffff [0x001e].\n"), "{s}");
        assert!(s.contains("      id \"ep\"\n"), "{s}");
        let d = t.dump_config(Sbdf::new(0, 2, 0, 0)).unwrap();
        assert!(d.starts_with("02:00.0 Ethernet controller: q35dm epe\n00: 34 12 0e 00"), "{d}");
        assert!(d.contains("\nff0: "), "4 KiB for an Express function");
    }
}
