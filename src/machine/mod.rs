//! The emulated board: the Q35 chipset (MCH at 00:00.0, ICH9 LPC at 00:1f.0), the PCI hierarchy
//! behind it, and address-space routing for ports, MMIO (MMCONFIG/ECAM, the RCBA block, BARs)
//! and PCI configuration requests.
//!
//! Fixed chipset resources are decoded first, then BARs. Every change of what the board decodes
//! (ECAM moved, PM block enabled, a BAR programmed, a bridge renumbered) leaves as
//! [`Effect::MapRange`]/[`Effect::UnmapRange`] for the engine to claim with the hypervisor.
//!
//! Interrupt routing under Xen: Xen computes the GSI of a root-bus device's INTx itself
//! (`((dev << 2) + (dev >> 3) + pin) & 31) + 16`) and routes its legacy PIC line through four
//! links, link = `(dev + pin) & 3`. ICH9 has eight PIRQs; for root-bus slots 0-24 it rotates INTx
//! over PIRQE-H as `PIRQ(E + (slot + pin) % 4)`, which is exactly Xen's link number. So writes to
//! PIRQE-H_ROUT become `set_pci_link_route(link 0-3)`. PIRQA-D (used by slots 25-31 through the
//! DxxIR registers) are stored and read back but cannot be expressed to Xen: a device in slots
//! 25-31 raises Xen's link `(dev + pin) & 3` like any other, i.e. whatever PIRQE-H route. q35dm
//! places no INTx-raising device there except on the operator's explicit request.

pub mod hotplug;
pub mod q35;

use std::fmt::Write as _;

use xen_bindings::dm_op::{SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};

use crate::bus::{Range, RangeMap};
use crate::device::{ones, Effect, Effects, IoHandler, IoRange, NoMemory, PortDevice};
use crate::guest_warn;
use crate::ioreq::Space;
use crate::memory::GuestMemory;
use crate::pci::config::ResetKind;
use crate::pci::device::{DeviceError, PciDevice, PlatformEvent};
use crate::pci::topology::{NodeId, Outputs, Topology, TopologyError, ROOT_BUS};
use crate::pci::Sbdf;
use crate::state::{self, Reader, StateError, Writer};

pub use q35::MemLayout;

/// Port of the PCI configuration address register.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// First port of the PCI configuration data window.
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// ICH9 reset control register (`RST_CNT`).
pub const RST_CNT: u16 = 0xcf9;

/// Port devices the board implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDev {
    /// 0xCF8-0xCFB: the config-address latch (dword) and, at 0xCF9, RST_CNT (byte).
    ConfigAddress,
    /// 0xCFC-0xCFF: config data. Under Xen, accesses with the enable bit set arrive as
    /// PCI_CONFIG requests; any that arrive as port I/O are served the same way.
    ConfigData,
    /// The ICH9 ACPI PM block at PMBASE (128 bytes).
    PmIo,
    /// A [`PortDevice`] (index into the board's list).
    Device(usize),
}

/// MMIO devices the board implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioDev {
    /// The MMCONFIG window.
    Ecam,
    /// The ICH9 chipset configuration block at RCBA.
    Rcrb,
}

/// What the board serves, for the start-up summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Range claimed with the hypervisor.
    pub range: IoRange,
    /// What answers it.
    pub what: String,
}

/// Behaviour of the ICH9 PM block the device model decodes (PMBASE + offset), as byte masks:
/// `(first, last, rw, w1c)`. Bytes not listed are plain storage (read back what was written):
/// SMI_EN/SMI_STS, the TCO and GPIO registers firmware may probe, none of which has a function
/// under Xen. PM1_STS/PM1_EN (+0..+3) and the PM timer (+8) are emulated by Xen itself and
/// never reach q35dm.
const PM_MASKS: &[(usize, usize, u8, u8)] = &[
    // PM1_CNT low byte: SCI_EN (0), BM_RLD (1); GBL_RLS (2) is write-only.
    (0x04, 0x04, 0x03, 0x00),
    // PM1_CNT high byte: SLP_TYP (12:10) RW; SLP_EN (13) write-only, reads 0.
    (0x05, 0x05, 0x1c, 0x00),
    // GPE0_STS (64 bits): write 1 to clear; nothing in q35dm raises a GPE today, so it reads 0.
    (0x20, 0x27, 0x00, 0xff),
    // GPE0_EN (64 bits): read/write.
    (0x28, 0x2f, 0xff, 0x00),
];

/// `(rw, w1c)` masks of one PM block byte.
fn pm_byte_masks(off: usize) -> (u8, u8) {
    PM_MASKS.iter().find(|(a, b, _, _)| (*a..=*b).contains(&off)).map_or((0xff, 0), |&(_, _, rw, w1c)| (rw, w1c))
}

/// The ACPI PM registers the device model owns (PM1_STS/EN and the PM timer are Xen's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PmRegs {
    bytes: Vec<u8>,
}

/// The board.
pub struct Machine {
    pio: RangeMap<PortDev>,
    mmio: RangeMap<MmioDev>,
    /// The PCI hierarchy.
    pub pci: Topology,
    cf8: u32,
    rst_cnt: u8,
    mch: NodeId,
    lpc: NodeId,
    layout: MemLayout,
    ecam: Option<(u64, u64)>,
    pm_base: Option<u16>,
    pm: PmRegs,
    rcba: Option<u64>,
    pirq: [Option<u8>; 8],
    start: std::time::Instant,
    port_devices: Vec<Box<dyn PortDevice>>,
    reset_hook: Option<ResetHook>,
}

/// Called on the loop thread for every function the guest resets by a Secondary Bus Reset on
/// a bridge above it or by a Function Level Reset (see [`Machine::set_reset_hook`]).
pub type ResetHook = Box<dyn FnMut(&mut Machine, NodeId, ResetKind) + Send>;

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Machine({:?}, ecam {:?})", self.pci, self.ecam)
    }
}

fn port_range(start: u16, len: u16) -> Option<Range> {
    Range::new(u64::from(start), u64::from(len))
}

impl Machine {
    /// A Q35 board for a guest with `layout`.
    pub fn new(layout: MemLayout) -> Result<Self, MachineError> {
        let mut pci = Topology::new();
        let mch = pci.add(ROOT_BUS, 0, "", Box::new(q35::Mch::new(layout)?), false)?;
        let lpc = pci.add(ROOT_BUS, 0x1f << 3, "", Box::new(q35::Lpc::new()?), false)?;
        let mut pio = RangeMap::new();
        for (start, len, d) in
            [(PCI_CONFIG_ADDRESS, 4, PortDev::ConfigAddress), (PCI_CONFIG_DATA, 4, PortDev::ConfigData)]
        {
            if let Some(r) = port_range(start, len) {
                pio.insert(r, d).map_err(|e| MachineError::Layout(e.to_string()))?;
            }
        }
        let mut m = Self {
            pio,
            mmio: RangeMap::new(),
            pci,
            cf8: 0,
            rst_cnt: 0,
            mch,
            lpc,
            layout,
            ecam: None,
            pm_base: None,
            pm: PmRegs { bytes: vec![0; 0x80] },
            rcba: None,
            pirq: [None; 8],
            start: std::time::Instant::now(),
            port_devices: Vec::new(),
            reset_hook: None,
        };
        let mut out = Outputs::default();
        m.pci.sync(&mut out);
        Ok(m)
    }

    /// Installs (or with `None` removes) the hook told about every guest-initiated Secondary
    /// Bus Reset or FLR of a function (used by the AER inbox to reset the host function behind a
    /// passed-through one). It runs on the loop thread, during the config write that caused it.
    pub fn set_reset_hook(&mut self, hook: Option<ResetHook>) {
        self.reset_hook = hook;
    }

    /// The guest memory layout.
    pub fn layout(&self) -> MemLayout {
        self.layout
    }

    /// The MMCONFIG window, if enabled.
    pub fn ecam(&self) -> Option<(u64, u64)> {
        self.ecam
    }

    /// PIRQA..H routes as the guest programmed them.
    pub fn pirq_routes(&self) -> [Option<u8>; 8] {
        self.pirq
    }

    /// Every range the board decodes now, with a description.
    pub fn served(&self) -> Vec<Served> {
        let mut v = Vec::new();
        for (r, d) in self.pio.iter() {
            let what = match d {
                PortDev::ConfigAddress => "PCI config address (latch) + ICH9 RST_CNT at 0xcf9",
                PortDev::ConfigData => "PCI config data",
                PortDev::PmIo => "ICH9 ACPI PM block",
                PortDev::Device(i) => self.port_devices.get(*i).map_or("?", |d| d.name()),
            };
            v.push(Served {
                range: IoRange::ports(r.start as u16, u16::try_from(r.len()).unwrap_or(u16::MAX)),
                what: what.into(),
            });
        }
        for (r, d) in self.mmio.iter() {
            let what = match d {
                MmioDev::Ecam => "MMCONFIG (ECAM)",
                MmioDev::Rcrb => "ICH9 chipset configuration (RCBA)",
            };
            v.push(Served { range: IoRange::memory(r.start, r.len()), what: what.into() });
        }
        for (io, r, t) in self.pci.decoded() {
            let name = self.pci.node(t.node).map(|n| n.dev.name().to_string()).unwrap_or_default();
            let range =
                if io { IoRange::ports(r.start as u16, r.len() as u16) } else { IoRange::memory(r.start, r.len()) };
            v.push(Served { range, what: format!("{name} BAR{}", t.bar) });
        }
        for s in self.pci.registered_sbdfs() {
            let name =
                self.pci.find(s).and_then(|n| self.pci.node(n)).map(|n| n.dev.name().to_string()).unwrap_or_default();
            v.push(Served { range: IoRange::pci(s), what: format!("config space of {name}") });
        }
        v
    }

    /// The ranges to claim now.
    pub fn ranges(&self) -> Vec<IoRange> {
        self.served().into_iter().map(|s| s.range).collect()
    }

    /// A human-readable list of what is served.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for x in self.served() {
            let _ = writeln!(s, "    {:<30} {}", x.range.to_string(), x.what);
        }
        s
    }

    /// Adds a device on fixed ports; its ranges are claimed (effects in `fx`).
    pub fn add_port_device(&mut self, dev: Box<dyn PortDevice>, fx: &mut Effects) -> Result<usize, MachineError> {
        let idx = self.port_devices.len();
        let mut ranges = Vec::new();
        for (start, len) in dev.ports() {
            let r = port_range(start, len)
                .ok_or_else(|| MachineError::Layout(format!("{}: empty port range", dev.name())))?;
            if let Some((old, what)) = self.pio.first_overlap(&r) {
                return Err(MachineError::Layout(format!("{}: ports {r} overlap {old} ({what:?})", dev.name())));
            }
            ranges.push(r);
        }
        for r in &ranges {
            self.pio.insert(*r, PortDev::Device(idx)).map_err(|e| MachineError::Layout(e.to_string()))?;
            fx.push(Effect::MapRange(IoRange::ports(r.start as u16, r.len() as u16)));
        }
        self.port_devices.push(dev);
        Ok(idx)
    }

    /// The first port device of type `T`.
    pub fn port_device_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.port_devices.iter_mut().find_map(|d| d.as_any_mut().downcast_mut::<T>())
    }

    /// Every port device of type `T`, in the order they were added (e.g. all serial ports).
    pub fn port_devices_mut<T: 'static>(&mut self) -> impl Iterator<Item = &mut T> {
        self.port_devices.iter_mut().filter_map(|d| d.as_any_mut().downcast_mut::<T>())
    }

    /// Whether an MMIO access hits something the board emulates.
    pub fn claims_mmio(&self, addr: u64, size: u64) -> bool {
        self.mmio.find_access(addr, size).is_some() || self.pci.claims_mmio(addr, size)
    }

    /// `info pci` text (QEMU's format).
    pub fn info_pci(&self) -> String {
        self.pci.info_pci()
    }

    /// The config space of `sbdf` in `lspci -xxxx` format, if the function exists.
    pub fn dump_config(&self, sbdf: Sbdf) -> Option<String> {
        self.pci.dump_config(sbdf)
    }

    /// Adds a device at `bus`/`devfn` (hot-plug or start-up); effects go to `fx`.
    pub fn add_device(
        &mut self,
        bus_name: &str,
        devfn: Option<u8>,
        id: &str,
        dev: Box<dyn PciDevice>,
        child_single_device: bool,
        fx: &mut Effects,
    ) -> Result<NodeId, MachineError> {
        let bus = self.pci.bus_by_name(bus_name).ok_or_else(|| TopologyError::NoBus(bus_name.into()))?;
        let devfn = match devfn {
            Some(d) => d,
            None => self.pci.free_slot(bus, 1)? << 3,
        };
        let n = self.pci.add(bus, devfn, id, dev, child_single_device)?;
        let mut out = Outputs::default();
        self.pci.sync(&mut out);
        self.apply(out, fx);
        Ok(n)
    }

    /// Resets the whole board (guest reboot).
    pub fn reset(&mut self, fx: &mut Effects) {
        let mut out = Outputs::default();
        self.pci.reset_all(ResetKind::Warm, &mut out);
        self.cf8 = 0;
        self.apply(out, fx);
    }

    /// Turns topology outputs into hypervisor effects, handling chipset events and hot-plug
    /// port requests (which may produce more outputs, handled in turn).
    pub fn apply(&mut self, out: Outputs, fx: &mut Effects) {
        let mut pending = out;
        for _ in 0..64 {
            fx.append(&mut pending.fx);
            for (n, kind) in std::mem::take(&mut pending.resets) {
                if let Some(mut hook) = self.reset_hook.take() {
                    hook(self, n, kind);
                    // Unless the hook installed another one.
                    if self.reset_hook.is_none() {
                        self.reset_hook = Some(hook);
                    }
                }
            }
            for (_, p) in std::mem::take(&mut pending.platform) {
                self.platform(p, fx);
            }
            let ports = std::mem::take(&mut pending.port);
            if ports.is_empty() {
                return;
            }
            for (n, ev) in ports {
                self.port_event(n, ev, &mut pending);
            }
        }
        log::error!("hot-plug event cascade did not settle; dropped");
    }

    fn remap_mmio(&mut self, dev: MmioDev, old: Option<(u64, u64)>, new: Option<(u64, u64)>, fx: &mut Effects) {
        if let Some((b, s)) = old {
            if self.mmio.remove(b).is_ok() {
                fx.push(Effect::UnmapRange(IoRange::memory(b, s)));
            }
        }
        if let Some((b, s)) = new {
            match Range::new(b, s) {
                Some(r) => match self.mmio.insert(r, dev) {
                    Ok(()) => fx.push(Effect::MapRange(IoRange::memory(b, s))),
                    Err(e) => guest_warn!("{dev:?} at {b:#x}: {e}; not decoded"),
                },
                None => guest_warn!("{dev:?} at {b:#x} size {s:#x} wraps the address space; not decoded"),
            }
        }
    }

    fn platform(&mut self, p: PlatformEvent, fx: &mut Effects) {
        match p {
            PlatformEvent::Ecam(new) => {
                let old = self.ecam;
                let new = new.filter(|(b, s)| {
                    let ok = b.checked_add(*s).is_some_and(|end| end <= 1 << 36);
                    if !ok {
                        guest_warn!("MMCONFIG base {b:#x} is beyond the 36-bit address space; not decoded");
                    }
                    ok
                });
                self.remap_mmio(MmioDev::Ecam, old, new, fx);
                self.ecam = new.filter(|(b, _)| self.mmio.find(*b).is_some_and(|(_, d)| *d == MmioDev::Ecam));
            }
            PlatformEvent::Rcba(new) => {
                let old = self.rcba.map(|b| (b, q35::lpc::RCRB_SIZE));
                self.remap_mmio(MmioDev::Rcrb, old, new.map(|b| (b, q35::lpc::RCRB_SIZE)), fx);
                self.rcba = new.filter(|b| self.mmio.find(*b).is_some_and(|(_, d)| *d == MmioDev::Rcrb));
            }
            PlatformEvent::PmIo { base, .. } => {
                if let Some(old) = self.pm_base.take() {
                    if self.pio.remove(u64::from(old)).is_ok() {
                        fx.push(Effect::UnmapRange(IoRange::ports(old, q35::lpc::PM_IO_SIZE)));
                    }
                }
                if let Some(b) = base {
                    match port_range(b, q35::lpc::PM_IO_SIZE).map(|r| self.pio.insert(r, PortDev::PmIo)) {
                        Some(Ok(())) => {
                            self.pm_base = Some(b);
                            fx.push(Effect::MapRange(IoRange::ports(b, q35::lpc::PM_IO_SIZE)));
                        }
                        _ => guest_warn!("PMBASE {b:#x} overlaps another port range; PM block not decoded"),
                    }
                }
            }
            PlatformEvent::PirqRoute { pirq, irq } => {
                if let Some(slot) = self.pirq.get_mut(usize::from(pirq)) {
                    *slot = irq;
                }
                if pirq >= 4 {
                    fx.push(Effect::LinkRoute { link: pirq - 4, irq: irq.unwrap_or(0) });
                } else {
                    log::debug!(
                        "PIRQ{} -> {irq:?}: stored (Xen has four links, fed by PIRQE-H)",
                        (b'A' + pirq) as char
                    );
                }
            }
        }
    }

    fn config(&mut self, sbdf: Sbdf, reg: u16, size: u8, write: Option<u32>, fx: &mut Effects) -> u32 {
        match write {
            None => self.pci.config_read(sbdf, reg, size),
            Some(v) => {
                let mut out = Outputs::default();
                self.pci.config_write(sbdf, reg, size, v, &mut out);
                self.apply(out, fx);
                0
            }
        }
    }

    fn ecam_access(&mut self, addr: u64, size: u8, write: Option<u64>, fx: &mut Effects) -> u64 {
        let Some((base, len)) = self.ecam else { return ones(size) };
        let off = addr.wrapping_sub(base);
        if size == 8 {
            // Split like a 4-byte-max MMIO region: low dword first.
            let lo = self.ecam_access(addr, 4, write.map(|v| v & 0xffff_ffff), fx);
            let hi = self.ecam_access(addr.wrapping_add(4), 4, write.map(|v| v >> 32), fx);
            return lo | hi << 32;
        }
        if off >= len || !matches!(size, 1 | 2 | 4) {
            return ones(size);
        }
        let reg = (off & 0xfff) as u16;
        if u32::from(reg) + u32::from(size) > 0x1000 {
            guest_warn!("ECAM access at {addr:#x} size {size} crosses a function boundary; ignored");
            return ones(size);
        }
        let sbdf = Sbdf::new(0, (off >> 20) as u8, ((off >> 15) & 0x1f) as u8, ((off >> 12) & 7) as u8);
        u64::from(self.config(sbdf, reg, size, write.map(|v| v as u32), fx))
    }

    fn cf8_target(&self, port: u16) -> Option<(Sbdf, u16)> {
        if self.cf8 & 0x8000_0000 == 0 {
            return None;
        }
        let sbdf = Sbdf::from_raw((self.cf8 >> 8) & 0xffff);
        Some((sbdf, ((self.cf8 & 0xfc) as u16) | (port & 3)))
    }

    fn pio_access(
        &mut self,
        dev: PortDev,
        port: u16,
        size: u8,
        write: Option<u64>,
        fx: &mut Effects,
        mem: &mut dyn GuestMemory,
    ) -> u64 {
        match dev {
            PortDev::ConfigAddress => match (port, size, write) {
                (PCI_CONFIG_ADDRESS, 4, Some(v)) => {
                    self.cf8 = v as u32;
                    0
                }
                (RST_CNT, 1, None) => u64::from(self.rst_cnt),
                (RST_CNT, 1, Some(v)) => {
                    // ICH9: bit 2 (RST_CPU) performs the reset; bits 1 (SYS_RST), 3 (FULL_RST) kept.
                    let v = v as u8;
                    self.rst_cnt = v & 0x0a;
                    if v & 0x04 != 0 {
                        log::info!("guest wrote {v:#x} to RST_CNT: reboot");
                        fx.push(Effect::Shutdown(SHUTDOWN_REBOOT));
                    }
                    0
                }
                // Narrower reads see the corresponding bytes of the latched address; narrower
                // writes are ignored (Xen, like the chipset, latches dword writes only).
                (p, s, None) => {
                    (u64::from(self.cf8) >> (8 * u64::from(p.wrapping_sub(PCI_CONFIG_ADDRESS) & 3))) & ones(s)
                }
                _ => 0,
            },
            PortDev::ConfigData => match self.cf8_target(port) {
                Some((sbdf, reg)) => u64::from(self.config(sbdf, reg, size, write.map(|v| v as u32), fx)),
                None => ones(size),
            },
            PortDev::PmIo => {
                let off = usize::from(port.wrapping_sub(self.pm_base.unwrap_or(0)));
                self.pm_access(off, size, write, fx)
            }
            PortDev::Device(i) => match (self.port_devices.get_mut(i), write) {
                (Some(d), None) => d.read(port, size, fx, mem),
                (Some(d), Some(v)) => {
                    d.write(port, size, v, fx, mem);
                    0
                }
                (None, _) => ones(size),
            },
        }
    }

    fn pm_access(&mut self, off: usize, size: u8, write: Option<u64>, fx: &mut Effects) -> u64 {
        let n = usize::from(size);
        let Some(bytes) = self.pm.bytes.get_mut(off..off + n) else { return ones(size) };
        match write {
            None => bytes.iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b)),
            Some(v) => {
                for (i, b) in bytes.iter_mut().enumerate() {
                    let (rw, w1c) = pm_byte_masks(off + i);
                    let new = (v >> (8 * i)) as u8;
                    *b = (*b & !rw & !(w1c & new)) | (new & rw);
                }
                // PM1_CNT at +4: SLP_EN (bit 13) with SLP_TYP (bits 12:10) = 0 is S5 in the Q35
                // DSDT of seabios-patches/ (as in QEMU's); other sleep types are not supported.
                // SLP_EN is write-only: it is acted on here and never stored.
                if off <= 5 && off + n > 5 && (v >> (8 * (5 - off))) & 0x20 != 0 {
                    let cnt = u16::from_le_bytes([
                        self.pm.bytes.get(4).copied().unwrap_or(0),
                        self.pm.bytes.get(5).copied().unwrap_or(0),
                    ]);
                    match (cnt >> 10) & 7 {
                        0 => {
                            log::info!("guest entered S5: power off");
                            fx.push(Effect::Shutdown(SHUTDOWN_POWEROFF));
                        }
                        t => guest_warn!("sleep type {t} requested through PM1_CNT: not supported, ignored"),
                    }
                }
                0
            }
        }
    }

    fn access(
        &mut self,
        space: Space,
        addr: u64,
        size: u8,
        write: Option<u64>,
        fx: &mut Effects,
        mem: &mut dyn GuestMemory,
    ) -> u64 {
        match space {
            Space::PciConfig(sbdf) => u64::from(self.config(sbdf, addr as u16, size, write.map(|v| v as u32), fx)),
            Space::Pio => {
                if let Some((_, d)) = self.pio.find_access(addr, u64::from(size)) {
                    let d = *d;
                    return self.pio_access(d, addr as u16, size, write, fx, mem);
                }
                self.bar_access(true, addr, size, write, fx)
            }
            Space::Mmio => {
                if let Some((r, d)) = self.mmio.find_access(addr, u64::from(size)) {
                    let (d, base) = (*d, r.start);
                    return match d {
                        MmioDev::Ecam => self.ecam_access(addr, size, write, fx),
                        MmioDev::Rcrb => {
                            let lpc = self.lpc;
                            let rcrb =
                                self.pci.node_mut(lpc).and_then(|n| n.dev.as_any_mut().downcast_mut::<q35::Lpc>());
                            match (rcrb, write) {
                                (Some(l), None) => l.rcrb.read(addr - base, size),
                                (Some(l), Some(v)) => {
                                    l.rcrb.write(addr - base, size, v);
                                    0
                                }
                                (None, _) => ones(size),
                            }
                        }
                    };
                }
                self.bar_access(false, addr, size, write, fx)
            }
        }
    }

    fn bar_access(&mut self, io: bool, addr: u64, size: u8, write: Option<u64>, fx: &mut Effects) -> u64 {
        match write {
            None => match self.pci.bar_read(io, addr, size) {
                Some(v) => v,
                None => {
                    guest_warn!("read of unclaimed {} {addr:#x} (size {size})", if io { "port" } else { "address" });
                    ones(size)
                }
            },
            Some(v) => {
                let mut out = Outputs::default();
                if !self.pci.bar_write(io, addr, size, v, &mut out) {
                    guest_warn!(
                        "write of {v:#x} to unclaimed {} {addr:#x} (size {size})",
                        if io { "port" } else { "address" }
                    );
                }
                self.apply(out, fx);
                0
            }
        }
    }

    /// The MCH node.
    pub fn mch(&self) -> NodeId {
        self.mch
    }

    /// The whole device state as a sealed blob (see [`crate::state`]): chipset latches, the PM
    /// block, every function (where it sits, its id, power, and its own state), and every fixed-port
    /// device's state by name.
    pub fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.cf8);
        w.u8(self.rst_cnt);
        w.bytes(&self.pm.bytes);
        let nodes: Vec<_> = self.pci.nodes().collect();
        w.u32(nodes.len() as u32);
        for (_, node) in nodes {
            w.str(self.pci.bus(node.bus).map_or("", |b| b.name.as_str()));
            w.u8(node.devfn);
            w.str(&node.id);
            w.str(node.dev.name());
            w.u8(u8::from(node.powered));
            w.bytes(&node.dev.save_state());
        }
        // Fixed-port devices (UARTs, fw_cfg, ...), by name (a board without any writes nothing).
        if !self.port_devices.is_empty() {
            w.u32(self.port_devices.len() as u32);
            for d in &self.port_devices {
                w.str(d.name());
                w.bytes(&d.save_state());
            }
        }
        state::seal(&w.buf)
    }

    /// Restores [`Machine::save_state`] output. The blob is checked completely (format,
    /// checksum, and that it describes exactly the functions this board has) before anything
    /// changes; then every function re-derives its decode and the board claims what it decodes.
    pub fn load_state(&mut self, blob: &[u8], fx: &mut Effects) -> Result<(), StateError> {
        // A function checks its own part only as it loads it, after others have loaded theirs:
        // if one refuses, go back to the state we had (our own state always loads). Nothing was
        // handed out for the hypervisor yet, so the effects of going back are dropped too.
        let before = self.save_state();
        self.load_state_once(blob, fx).inspect_err(|_| {
            if let Err(e) = self.load_state_once(&before, &mut Vec::new()) {
                log::error!("restoring the state from before a refused load failed: {e}");
            }
        })
    }

    fn load_state_once(&mut self, blob: &[u8], fx: &mut Effects) -> Result<(), StateError> {
        let payload = state::open(blob)?;
        let mut r = Reader::new(payload);
        let cf8 = r.u32()?;
        let rst_cnt = r.u8()?;
        let pm = r.bytes()?.to_vec();
        if pm.len() != self.pm.bytes.len() {
            return Err(StateError::Mismatch(format!("PM block of {} bytes in the blob", pm.len())));
        }
        let count = r.u32()? as usize;
        let mut entries = Vec::new();
        for _ in 0..count {
            let bus = r.str()?;
            let devfn = r.u8()?;
            let id = r.str()?;
            let name = r.str()?;
            let powered = r.u8()? != 0;
            let data = r.bytes()?;
            let node = self
                .pci
                .bus_by_name(&bus)
                .and_then(|b| self.pci.bus(b))
                .and_then(|b| b.devices.get(&devfn).copied())
                .filter(|n| self.pci.node(*n).is_some_and(|x| x.id == id && x.dev.name() == name))
                .ok_or_else(|| {
                    StateError::Mismatch(format!(
                        "{name} {id:?} at {bus} {:02x}.{:x} is not present here (start with the same -device options)",
                        devfn >> 3,
                        devfn & 7
                    ))
                })?;
            if entries.iter().any(|(n, _, _)| *n == node) {
                return Err(StateError::Mismatch(format!("{name} {id:?} appears twice in the blob")));
            }
            entries.push((node, powered, data));
        }
        // Port-device section (absent in blobs written before port devices were saved).
        let mut ports = Vec::new();
        if !r.done() {
            for _ in 0..r.u32()? {
                let name = r.str()?;
                let data = r.bytes()?;
                let i = self.port_devices.iter().position(|d| d.name() == name).ok_or_else(|| {
                    StateError::Mismatch(format!(
                        "port device {name:?} is not present here (start with the same options)"
                    ))
                })?;
                ports.push((i, data));
            }
        }
        if !r.done() {
            return Err(StateError::Mismatch("trailing data after the last device".into()));
        }
        let here = self.pci.nodes().count();
        if here != entries.len() {
            return Err(StateError::Mismatch(format!("{here} functions here, {} in the blob", entries.len())));
        }
        for (i, data) in ports {
            if let Some(d) = self.port_devices.get_mut(i) {
                d.load_state(data)?;
            }
        }
        self.cf8 = cf8;
        self.rst_cnt = rst_cnt;
        self.pm.bytes = pm;
        let mut out = Outputs::default();
        for (n, powered, data) in entries {
            if let Some(node) = self.pci.node_mut(n) {
                node.powered = powered;
                let pfx = node.dev.load_state(data)?;
                self.pci.handle(n, pfx, &mut out);
            }
        }
        self.pci.sync(&mut out);
        self.apply(out, fx);
        Ok(())
    }

    /// `query-pci` in QEMU's shape (every function with `qdev_id`, `slot`, `function`; bridges
    /// with their bus and what is below).
    pub fn query_pci(&self) -> serde_json::Value {
        serde_json::json!([{"bus": 0, "devices": self.query_bus(ROOT_BUS, 0, 0)}])
    }

    fn query_bus(&self, bus: crate::pci::topology::BusId, nr: u8, depth: usize) -> Vec<serde_json::Value> {
        use crate::pci::bridge::{BusNumbers, RawWindows};
        let mut v = Vec::new();
        let Some(b) = self.pci.bus(bus) else { return v };
        for (devfn, n) in &b.devices {
            let Some(node) = self.pci.node(*n) else { continue };
            if !node.powered {
                continue;
            }
            let c = node.dev.config();
            let class = (c.get_u32(0x08) >> 16) as u16;
            let mut d = serde_json::json!({
                "bus": nr, "slot": devfn >> 3, "function": devfn & 7,
                "class_info": {"class": class, "desc": crate::pci::topology::class_name(class).unwrap_or("")},
                "id": {"vendor": c.vendor_id(), "device": c.device_id(),
                       "subsystem-vendor": c.get_u16(0x2c), "subsystem": c.get_u16(0x2e)},
                "qdev_id": node.id,
                "regions": node.dev.function().bars().mapped().iter().map(|m| serde_json::json!({
                    "bar": m.bar, "type": if m.kind == crate::pci::bar::BarKind::Io { "io" } else { "memory" },
                    "address": m.addr, "size": m.size})).collect::<Vec<_>>(),
            });
            if let Some(child) = node.child {
                let bn = BusNumbers::of(c);
                let w = RawWindows::of(c);
                let below = if bn.secondary > nr && depth < 256 {
                    self.query_bus(child, bn.secondary, depth + 1)
                } else {
                    Vec::new()
                };
                d["pci_bridge"] = serde_json::json!({
                    "bus": {"number": bn.primary, "secondary": bn.secondary, "subordinate": bn.subordinate,
                            "io_range": {"base": w.io.0, "limit": w.io.1},
                            "memory_range": {"base": w.mem.0, "limit": w.mem.1},
                            "prefetchable_range": {"base": w.pref.0, "limit": w.pref.1}},
                    "devices": below,
                });
            }
            v.push(d);
        }
        v
    }
}

impl IoHandler for Machine {
    fn read(&mut self, space: Space, addr: u64, size: u8, fx: &mut Effects) -> u64 {
        self.access(space, addr, size, None, fx, &mut NoMemory) & ones(size)
    }

    fn write(&mut self, space: Space, addr: u64, size: u8, data: u64, fx: &mut Effects) {
        self.access(space, addr, size, Some(data), fx, &mut NoMemory);
    }

    fn read_mem(&mut self, space: Space, addr: u64, size: u8, fx: &mut Effects, mem: &mut dyn GuestMemory) -> u64 {
        self.access(space, addr, size, None, fx, mem) & ones(size)
    }

    fn write_mem(&mut self, space: Space, addr: u64, size: u8, data: u64, fx: &mut Effects, mem: &mut dyn GuestMemory) {
        self.access(space, addr, size, Some(data), fx, mem);
    }
}

/// Board construction and change errors.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A device could not be built.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The hierarchy refused a change.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Fixed resources collide.
    #[error("board layout: {0}")]
    Layout(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Machine {
        Machine::new(MemLayout { below_4g: 256 << 20, above_4g: 0 }).unwrap()
    }

    fn cfg_rd(m: &mut Machine, bdf: u32, reg: u32, size: u8) -> u64 {
        let mut fx = Vec::new();
        m.write(Space::Pio, 0xcf8, 4, u64::from(0x8000_0000 | bdf << 8 | (reg & 0xfc)), &mut fx);
        m.read(Space::Pio, 0xcfc + u64::from(reg & 3), size, &mut fx)
    }

    #[test]
    fn q35_functions_answer_through_cf8() {
        let mut m = m();
        assert_eq!(cfg_rd(&mut m, 0, 0, 4), 0x29c0_8086);
        assert_eq!(cfg_rd(&mut m, 0xf8, 0, 4), 0x2918_8086);
        assert_eq!(cfg_rd(&mut m, 0xf8, 0xe, 1), 0x80, "LPC is multi-function");
        assert_eq!(cfg_rd(&mut m, 0x08, 0, 4), 0xffff_ffff, "absent function");
        assert_eq!(cfg_rd(&mut m, 0x100, 0, 4), 0xffff_ffff, "absent bus");
        let regs: Vec<_> = m.pci.registered_sbdfs().collect();
        assert_eq!(regs, vec![Sbdf::new(0, 0, 0, 0), Sbdf::new(0, 0, 0x1f, 0)]);
    }

    #[test]
    fn config_address_latch_reads_back_only_as_dword() {
        let mut m = m();
        let mut fx = Vec::new();
        m.write(Space::Pio, 0xcf8, 4, 0x8000_f840, &mut fx);
        assert_eq!(m.read(Space::Pio, 0xcf8, 4, &mut fx), 0x8000_f840);
        assert_eq!(m.read(Space::Pio, 0xcf8, 2, &mut fx), 0xf840);
        assert_eq!(m.read(Space::Pio, 0xcfa, 2, &mut fx), 0x8000);
        assert_eq!(m.read(Space::Pio, 0xcfb, 1, &mut fx), 0x80);
        m.write(Space::Pio, 0xcf8, 2, 0, &mut fx);
        assert_eq!(m.read(Space::Pio, 0xcf8, 4, &mut fx), 0x8000_f840, "word writes do not latch");
        assert!(fx.is_empty());
    }

    #[test]
    fn rst_cnt_bit2_requests_reboot() {
        let mut m = m();
        let mut fx = Vec::new();
        m.write(Space::Pio, 0xcf9, 1, 0x02, &mut fx);
        assert!(fx.is_empty());
        m.write(Space::Pio, 0xcf9, 1, 0x06, &mut fx);
        assert_eq!(fx, vec![Effect::Shutdown(SHUTDOWN_REBOOT)]);
    }

    #[test]
    fn pciexbar_maps_ecam_and_relocates() {
        let mut m = m();
        let mut fx = Vec::new();
        m.write(Space::PciConfig(Sbdf::new(0, 0, 0, 0)), 0x60, 4, 0xb000_0001, &mut fx);
        assert_eq!(fx, vec![Effect::MapRange(IoRange::memory(0xb000_0000, 256 << 20))]);
        assert_eq!(m.read(Space::Mmio, 0xb000_0000, 4, &mut fx), 0x29c0_8086);
        assert_eq!(m.read(Space::Mmio, 0xb00f_8000, 2, &mut fx), 0x8086, "00:1f.0 via ECAM");
        assert_eq!(m.read(Space::Mmio, 0xb00f_8002, 2, &mut fx), 0x2918);
        assert_eq!(m.read(Space::Mmio, 0xb000_0000, 8, &mut fx), 0x0000_0000_29c0_8086, "8-byte split");
        assert_eq!(m.read(Space::Mmio, 0xb000_0ffe, 4, &mut fx), 0xffff_ffff, "crosses a function");
        assert_eq!(m.read(Space::Mmio, 0xb010_0000, 4, &mut fx), 0xffff_ffff, "bus 1 absent");
        fx.clear();
        m.write(Space::Mmio, 0xb000_0060, 4, 0xe000_0001, &mut fx);
        assert_eq!(
            fx,
            vec![
                Effect::UnmapRange(IoRange::memory(0xb000_0000, 256 << 20)),
                Effect::MapRange(IoRange::memory(0xe000_0000, 256 << 20)),
            ]
        );
        assert!(!m.claims_mmio(0xb000_0000, 4));
        assert_eq!(m.read(Space::Mmio, 0xe000_0000, 4, &mut fx), 0x29c0_8086);
    }

    #[test]
    fn pirq_e_to_h_become_xen_link_routes() {
        let mut m = m();
        let mut fx = Vec::new();
        m.write(Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0)), 0x60, 4, 0x0b0b_0a0a, &mut fx);
        assert!(fx.is_empty(), "PIRQA-D are not expressible to Xen");
        m.write(Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0)), 0x68, 4, 0x0b0b_0a0a, &mut fx);
        assert_eq!(
            fx,
            vec![
                Effect::LinkRoute { link: 0, irq: 10 },
                Effect::LinkRoute { link: 1, irq: 10 },
                Effect::LinkRoute { link: 2, irq: 11 },
                Effect::LinkRoute { link: 3, irq: 11 },
            ]
        );
        assert_eq!(m.pirq_routes(), [Some(10), Some(10), Some(11), Some(11), Some(10), Some(10), Some(11), Some(11)]);
    }

    #[test]
    fn pm_block_and_s5() {
        let mut m = m();
        let mut fx = Vec::new();
        let lpc = Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0));
        m.write(lpc, 0x40, 4, 0xb000, &mut fx);
        m.write(lpc, 0x44, 1, 0x80, &mut fx);
        assert_eq!(fx, vec![Effect::MapRange(IoRange::ports(0xb000, 0x80))]);
        fx.clear();
        m.write(Space::Pio, 0xb004, 2, 0x2000, &mut fx);
        assert_eq!(fx, vec![Effect::Shutdown(SHUTDOWN_POWEROFF)]);
        assert_eq!(m.read(Space::Pio, 0xb004, 2, &mut fx) & 0x2000, 0, "SLP_EN reads 0");
        // SCI_EN sticks (hvmloader checks it); SLP_TYP 5 with SLP_EN is not S5.
        fx.clear();
        m.write(Space::Pio, 0xb004, 2, 0x3401, &mut fx);
        assert!(fx.is_empty(), "{fx:?}");
        assert_eq!(m.read(Space::Pio, 0xb004, 2, &mut fx), 0x1401);
        m.write(Space::Pio, 0xb005, 1, 0x20, &mut fx);
        assert_eq!(fx, vec![Effect::Shutdown(SHUTDOWN_POWEROFF)], "byte write of SLP_EN with SLP_TYP 0");
        // GPE0_STS is write-1-to-clear and reads 0 with nothing pending; GPE0_EN is storage.
        m.write(Space::Pio, 0xb020, 4, 0xffff_ffff, &mut fx);
        assert_eq!(m.read(Space::Pio, 0xb020, 4, &mut fx), 0);
        m.write(Space::Pio, 0xb028, 4, 0x0000_0204, &mut fx);
        assert_eq!(m.read(Space::Pio, 0xb028, 2, &mut fx), 0x0204);
        assert_eq!(m.read(Space::Pio, 0xb024, 8, &mut fx), 0x0000_0204_0000_0000, "straddles STS and EN");
    }

    #[test]
    fn state_round_trip_restores_decode_and_refuses_mismatches() {
        let mut a = m();
        let mut fx = Vec::new();
        let lpc = Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0));
        a.write(Space::PciConfig(Sbdf::new(0, 0, 0, 0)), 0x60, 4, 0xb000_0001, &mut fx);
        a.write(lpc, 0x40, 4, 0xb000, &mut fx);
        a.write(lpc, 0x44, 1, 0x80, &mut fx);
        a.write(lpc, 0x68, 4, 0x0b0b_0a0a, &mut fx);
        a.write(Space::Pio, 0xcf8, 4, 0x8000_0090, &mut fx);
        a.write(Space::Pio, 0xb028, 4, 0x1234_5678, &mut fx);
        let blob = a.save_state();
        let mut b = m();
        let mut fx = Vec::new();
        b.load_state(&blob, &mut fx).unwrap();
        assert!(fx.contains(&Effect::MapRange(IoRange::memory(0xb000_0000, 256 << 20))), "{fx:?}");
        assert!(fx.contains(&Effect::MapRange(IoRange::ports(0xb000, 0x80))));
        assert!(fx.contains(&Effect::LinkRoute { link: 3, irq: 11 }));
        assert_eq!(b.read(Space::Mmio, 0xb00f_8000, 4, &mut fx), 0x2918_8086);
        assert_eq!(b.read(Space::Pio, 0xcf8, 4, &mut fx), 0x8000_0090);
        assert_eq!(b.read(Space::Pio, 0xb028, 4, &mut fx), 0x1234_5678);
        assert_eq!(b.save_state(), blob, "save(load(x)) == x");
        // Corruption and mismatches are refused before anything changes.
        let mut bad = blob.clone();
        let k = bad.len() / 2;
        bad[k] ^= 0x40;
        let mut c = m();
        assert!(matches!(c.load_state(&bad, &mut fx), Err(StateError::Checksum { .. })));
        let mut fx2 = Vec::new();
        c.add_device(
            "pcie.0",
            Some(3 << 3),
            "extra",
            Box::new(crate::pci::bridge::PciBridge::new("br", Default::default()).unwrap()),
            false,
            &mut fx2,
        )
        .unwrap();
        let e = c.load_state(&blob, &mut fx2).unwrap_err();
        assert!(e.to_string().contains("functions here"), "{e}");
        assert!(!c.claims_mmio(0xb000_0000, 4), "nothing applied");
    }

    #[test]
    fn rcba_block() {
        let mut m = m();
        let mut fx = Vec::new();
        m.write(Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0)), 0xf0, 4, 0xfed1_c001, &mut fx);
        assert_eq!(fx, vec![Effect::MapRange(IoRange::memory(0xfed1_c000, 0x4000))]);
        assert_eq!(m.read(Space::Mmio, 0xfed1_f140, 2, &mut fx), 0x3210);
    }
}
