//! [`PassthroughDevice`]: a host function as a [`PciDevice`] of the board, so it sits on bus 0
//! or behind a root/downstream port like any other function and goes through the same hot-plug
//! machinery.
//!
//! Config accesses go through the [`ConfigFilter`]. Everything that must reach the hypervisor
//! is planned as [`PtOp`]s and carried out through the [`HostOps`] seam, at these moments:
//!
//! | guest action | operations |
//! |---|---|
//! | placed on a bus (attach) | device: decode on (I/O, memory per BAR kinds), MSI/MSI-X off; INTx: `map_pirq(GSI)` + `bind_pt_irq(PCI, bus 0, root device, root pin)` (the pin after the bridge swizzles) |
//! | a BAR starts decoding (Command.IO/MEM + address) | `memory_mapping(add)` of the BAR's host frames except the pages holding the MSI-X table and PBA (trapped), or `ioport_mapping(add)`; ROM: device ROM enable + `memory_mapping(add)` |
//! | a BAR stops decoding or moves | the exact removals of what was added (then the adds for the new place) |
//! | MSI enable / address or data change / disable | `map_pirq(MSI)` + `bind_pt_irq(MSI)` + device MSI enable / `bind_pt_irq` again / device MSI disable + `unbind_pt_irq` + `unmap_pirq` |
//! | MSI-X entry unmasked (MSI-X enabled, function unmasked) | `map_pirq(MSI, entry, table BAR base)` once, `bind_pt_irq(MSI, gtable = guest table address)` with the values written while the entry was masked |
//! | MSI-X enable / function mask | written through to the device's Message Control (Xen tracks it); disable: device off, then unbind and unmap every entry |
//! | reset (FLR, SBR, slot power off, reboot) | interrupts torn down, BARs unmapped (Command clears), sysfs `reset` of the device |
//! | detach (`device_del`, removal) | device bus mastering off and INTx disabled (quiesce), MSI-X/MSI unbind + unmap_pirq, BAR unmaps, INTx unbind + unmap_pirq |
//!
//! Refusals (logged, rate-limited, nothing reaches the hypervisor or the device):
//! a BAR decoding over guest RAM, over another BAR of the function, or over a BAR of another
//! passed-through function; MSI-X table writes never reach the device's table (the guest's table
//! is emulated and translated into bindings); the PBA is read-only; BAR accesses beyond the
//! device's BAR; MSI and MSI-X enabled at once.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use xen_bindings::domctl::{vmsi_x86_gflags, BindPtIrq};

use crate::pci::bar::{BarChange, BarKind, BarMapping, ROM_BAR};
use crate::pci::config::{cmd, reg, IntxPin, ResetKind};
use crate::pci::device::{GenericFunction, PciDevice, PciEffect, PciEffects};
use crate::pci::msix::ENTRY_SIZE;
use crate::pci::Sbdf;
use crate::pcie::aer::{AerErrorSpec, AerInjectError, InjectOutcome};

use super::filter::{ConfigFilter, FilterError, FilterOptions, HostBar};
use super::host::{HostDevice, HostError, PAGE_SIZE};
use super::ops::{HostOps, OpError, PirqSource, PtOp};

/// Attach failures.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The guest view could not be built.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The host could not be prepared.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The hypervisor calls are unavailable.
    #[error("{name}: {source}")]
    Ops {
        /// Device name.
        name: String,
        /// Cause.
        source: OpError,
    },
}

/// Guest address ranges taken by passed-through BARs (shared by every passthrough function of
/// a guest, so two of them cannot map over each other).
#[derive(Debug, Default)]
pub struct GuestRanges {
    taken: Mutex<Vec<(bool, u64, u64, String)>>,
}

impl GuestRanges {
    /// Claims `[start, start+len)` (I/O or memory) for `owner`; the owner of an overlapping
    /// claim otherwise.
    pub fn claim(&self, owner: &str, io: bool, start: u64, len: u64) -> Result<(), String> {
        let mut g = match self.taken.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let end = start.saturating_add(len);
        if let Some((_, _, _, o)) = g.iter().find(|(i, s, e, o)| *i == io && start < *e && *s < end && o != owner) {
            return Err(o.clone());
        }
        g.push((io, start, end, owner.to_string()));
        Ok(())
    }

    /// Releases `owner`'s claim starting at `start`.
    pub fn release(&self, owner: &str, io: bool, start: u64) {
        if let Ok(mut g) = self.taken.lock() {
            g.retain(|(i, s, _, o)| !(*i == io && *s == start && o == owner));
        }
    }
}

/// What a passthrough function needs from its surroundings.
#[derive(Clone)]
pub struct PtEnv {
    /// The hypervisor seam.
    pub ops: Arc<dyn HostOps>,
    /// Guest RAM ranges `(start, length)`: no BAR is ever mapped over them.
    pub guest_ram: Vec<(u64, u64)>,
    /// Ranges taken by passed-through BARs of this guest.
    pub ranges: Arc<GuestRanges>,
}

/// One direct mapping made for a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Guest frames onto machine frames.
    Mem {
        /// First guest frame.
        gfn: u64,
        /// First machine frame.
        mfn: u64,
        /// Frames.
        nr: u64,
    },
    /// Guest ports onto machine ports.
    Io {
        /// First guest port.
        gport: u32,
        /// First machine port.
        mport: u32,
        /// Ports.
        nr: u32,
    },
}

impl Run {
    fn op(&self, add: bool) -> PtOp {
        match *self {
            Run::Mem { gfn, mfn, nr } => PtOp::MemoryMapping { gfn, mfn, nr, add },
            Run::Io { gport, mport, nr } => PtOp::IoportMapping { gport, mport, nr, add },
        }
    }
}

/// State of a decoding BAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarState {
    /// Where the guest put it.
    pub guest: BarMapping,
    /// What was mapped directly (empty: trapped, or refused).
    pub runs: Vec<Run>,
    /// Why it was refused, if it was.
    pub refused: Option<String>,
}

/// An interrupt binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The pirq.
    pub pirq: u32,
    /// Guest vector.
    pub gvec: u8,
    /// `XEN_DOMCTL_VMSI_X86_*` flags.
    pub gflags: u32,
    /// Guest address of the MSI-X table (0 for MSI).
    pub gtable: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MsixEntryState {
    pirq: Option<u32>,
    bound: Option<Binding>,
    /// Address and data as written while the entry was masked: what a binding uses.
    latch: (u64, u32),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IntxState {
    pirq: Option<u32>,
    bound: Option<(u8, u8)>,
}

/// Decodes an x86 MSI message into the guest vector, the `gflags` of `XEN_DOMCTL_bind_pt_irq`
/// (QEMU `msi_gflags`: destination ID = address bits 19:12, RH = bit 3, DM = bit 2, delivery
/// mode = data bits 10:8, trigger = data bit 15) and, for the "vector 0" convention of PV-on-HVM
/// guests, the pirq they ask for (extended destination in the high address bits | destination).
pub fn msi_binding(addr: u64, data: u32) -> Result<(u8, u32, Option<u32>), String> {
    let gvec = (data & 0xff) as u8;
    let lo = addr as u32;
    let dest = ((lo >> 12) & 0xff) as u8;
    let gflags = vmsi_x86_gflags(
        dest,
        lo & (1 << 3) != 0,
        lo & (1 << 2) != 0,
        ((data >> 8) & 7) as u8,
        data & (1 << 15) != 0,
        false,
    );
    if gvec == 0 {
        let pirq = ((addr >> 32) as u32 & 0xffff_ff00) | u32::from(dest);
        if pirq == 0 {
            return Err(format!("vector 0 without a pirq (address {addr:#x})"));
        }
        return Ok((0, gflags, Some(pirq)));
    }
    if lo & 0xfff0_0000 != 0xfee0_0000 || addr >> 32 != 0 {
        return Err(format!("address {addr:#x} is outside the 0xfee00000 interrupt window"));
    }
    Ok((gvec, gflags, None))
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    alen > 0 && blen > 0 && a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

/// A passed-through host function.
pub struct PassthroughDevice {
    filter: ConfigFilter,
    host: Box<dyn HostDevice>,
    env: PtEnv,
    bars: BTreeMap<u8, BarState>,
    intx: IntxState,
    msi: Option<Binding>,
    msi_host_on: bool,
    msix: Vec<MsixEntryState>,
    msix_host_on: bool,
    detached: bool,
}

impl std::fmt::Debug for PassthroughDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PassthroughDevice({} <- host {})", self.filter.function().name(), self.host.addr())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    command: u16,
    msi: Option<(bool, u64, u32)>,
    msix_ctrl: u16,
}

impl PassthroughDevice {
    /// Attaches `host`: checks that the hypervisor calls can be made, builds the guest view and
    /// prepares the device (decode on, MSI/MSI-X off). INTx is bound once the board has placed
    /// the function ([`PciDevice::placed`]).
    pub fn attach(host: Box<dyn HostDevice>, opts: &FilterOptions, env: PtEnv) -> Result<Self, AttachError> {
        let how = env.ops.probe().map_err(|source| AttachError::Ops { name: opts.name.clone(), source })?;
        let filter = ConfigFilter::build(host.as_ref(), opts)?;
        let entries = filter.layout().msix.map_or(0, |m| usize::from(m.cfg.table_size));
        let mut d = Self {
            filter,
            host,
            env,
            bars: BTreeMap::new(),
            intx: IntxState::default(),
            msi: None,
            msi_host_on: false,
            msix: vec![MsixEntryState::default(); entries],
            msix_host_on: false,
            detached: false,
        };
        d.prepare_host();
        for c in &d.filter.layout().caps {
            log::info!(
                "{}: host {} {} at {:#x}: {}{}",
                d.name_str(),
                d.host.addr(),
                c.name,
                c.host_off,
                c.treatment,
                c.guest_off.map(|o| format!(" (guest {o:#x})")).unwrap_or_default()
            );
        }
        for p in &d.filter.layout().problems {
            log::warn!("{}: host {}: {p}", d.name_str(), d.host.addr());
        }
        log::info!("{}: host {} attached through {how}", d.name_str(), d.host.addr());
        Ok(d)
    }

    fn name_str(&self) -> String {
        self.filter.function().name().to_string()
    }

    /// The config filter (guest view, layout).
    pub fn filter(&self) -> &ConfigFilter {
        &self.filter
    }

    /// The host function.
    pub fn host_addr(&self) -> Sbdf {
        self.host.addr()
    }

    /// Decoding BARs and what was done with them.
    pub fn bar_states(&self) -> &BTreeMap<u8, BarState> {
        &self.bars
    }

    /// The INTx pirq and guest (device, pin) it is bound to.
    pub fn intx_binding(&self) -> (Option<u32>, Option<(u8, u8)>) {
        (self.intx.pirq, self.intx.bound)
    }

    /// The MSI binding.
    pub fn msi_binding(&self) -> Option<Binding> {
        self.msi
    }

    /// The MSI-X bindings, by entry.
    pub fn msix_bindings(&self) -> Vec<(u16, Binding)> {
        self.msix.iter().enumerate().filter_map(|(i, e)| e.bound.map(|b| (i as u16, b))).collect()
    }

    /// The whole guest view of config space, read through the filter.
    pub fn guest_view(&mut self) -> Vec<u8> {
        self.filter.guest_view(self.host.as_ref())
    }

    fn exec(&self, op: PtOp) -> Result<Option<u32>, OpError> {
        log::debug!("{}: {op}", self.name_str());
        self.env.ops.call(&op)
    }

    fn host_read16(&self, off: u16) -> Option<u16> {
        let mut b = [0u8; 2];
        self.host.config_read(off, &mut b).ok().map(|()| u16::from_le_bytes(b))
    }

    /// Read-modify-write of a 16-bit device register (q35dm's own writes: command bits, MSI and
    /// MSI-X enables). Skipped if the device read fails.
    fn host_update16(&self, off: u16, clear: u16, set: u16) {
        let Some(cur) = self.host_read16(off) else {
            crate::guest_warn!("{}: device register {off:#x} unreadable; not updated", self.name_str());
            return;
        };
        // Never write 1s back into the Status register's RW1C bits by accident.
        let new = (cur & !clear) | set;
        if new != cur {
            if let Err(e) = self.host.config_write(off, &new.to_le_bytes()) {
                crate::guest_warn!("{}: device register {off:#x} write failed: {e}", self.name_str());
            }
        }
    }

    fn prepare_host(&mut self) {
        let mut decode = 0;
        for b in &self.filter.layout().bars {
            decode |= match b.kind {
                BarKind::Io => cmd::IO,
                BarKind::Rom => 0,
                _ => cmd::MEMORY,
            };
        }
        self.host_update16(reg::COMMAND, 0, decode);
        if let Some(m) = self.filter.layout().msi {
            self.host_update16(m.off + 2, 1, 0);
        }
        if let Some(m) = self.filter.layout().msix {
            self.host_update16(m.off + 2, 0x8000, 0);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let f = self.filter.function();
        let msi = f.msi().map(|m| {
            let c = f.config();
            let msg = m.message(c, 0).map_or((0, 0), |x| (x.addr, x.data));
            (m.enabled(c), msg.0, msg.1)
        });
        let msix_ctrl = f.msix().map_or(0, |m| m.control(f.config()));
        Snapshot { command: f.config().command(), msi, msix_ctrl }
    }

    // ---- BARs ------------------------------------------------------------------------------

    fn ram_overlap(&self, addr: u64, size: u64) -> bool {
        self.env.guest_ram.iter().any(|(s, l)| overlaps(addr, size, *s, *l))
    }

    fn trapped_pages(&self, bar: u8) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        if let Some(m) = self.filter.layout().msix {
            let c = m.cfg;
            for (b, off, len) in [(c.table_bar, c.table_offset, c.table_len()), (c.pba_bar, c.pba_offset, c.pba_len())]
            {
                if b == bar && len > 0 {
                    let first = u64::from(off) / PAGE_SIZE;
                    let last = (u64::from(off) + len - 1) / PAGE_SIZE;
                    v.push((first, last));
                }
            }
        }
        v
    }

    fn plan_runs(&self, hb: &HostBar, m: &BarMapping) -> Vec<Run> {
        if hb.kind == BarKind::Io {
            return vec![Run::Io { gport: m.addr as u32, mport: hb.start as u32, nr: hb.size as u32 }];
        }
        if !hb.direct_mappable() {
            return Vec::new();
        }
        let pages = hb.size / PAGE_SIZE;
        let trapped = self.trapped_pages(hb.index);
        let (g0, h0) = (m.addr / PAGE_SIZE, hb.start / PAGE_SIZE);
        let mut runs = Vec::new();
        let mut p = 0;
        while p < pages {
            if let Some((_, last)) = trapped.iter().find(|(f, l)| p >= *f && p <= *l) {
                p = last + 1;
                continue;
            }
            let end = trapped.iter().filter(|(f, _)| *f > p).map(|(f, _)| *f).min().unwrap_or(pages).min(pages);
            runs.push(Run::Mem { gfn: g0 + p, mfn: h0 + p, nr: end - p });
            p = end;
        }
        runs
    }

    fn refuse(&mut self, m: BarMapping, why: String) {
        crate::guest_warn!(
            "{}: BAR {} at {:#x} (size {:#x}) refused: {why}; nothing mapped",
            self.name_str(),
            m.bar,
            m.addr,
            m.size
        );
        self.bars.insert(m.bar, BarState { guest: m, runs: Vec::new(), refused: Some(why) });
    }

    fn set_rom_enable(&self, on: bool) {
        let Some(hb) = self.filter.layout().bar(ROM_BAR).copied() else { return };
        let mut b = [0u8; 4];
        if self.host.config_read(reg::ROM_ADDRESS, &mut b).is_err() {
            return;
        }
        let cur = u32::from_le_bytes(b);
        let mut addr = cur & 0xffff_f800;
        if addr == 0 {
            // The device lost its ROM address (QEMU writes the sysfs one back).
            addr = (hb.start as u32) & 0xffff_f800;
        }
        let new = addr | u32::from(on);
        if new != cur {
            if let Err(e) = self.host.config_write(reg::ROM_ADDRESS, &new.to_le_bytes()) {
                crate::guest_warn!("{}: device ROM enable write failed: {e}", self.name_str());
            }
        }
    }

    fn map_bar(&mut self, m: BarMapping) {
        let name = self.name_str();
        let Some(hb) = self.filter.layout().bar(m.bar).copied() else {
            return self.refuse(m, "the device has no such BAR".into());
        };
        if m.size != hb.guest_size {
            return self.refuse(m, format!("size {:#x} differs from the device's {:#x}", m.size, hb.guest_size));
        }
        let io = hb.kind == BarKind::Io;
        if !io && self.ram_overlap(m.addr, m.size) {
            return self.refuse(m, "it overlaps guest RAM".into());
        }
        let clash = self
            .filter
            .function()
            .bars()
            .mapped()
            .iter()
            .find(|o| o.bar != m.bar && (o.kind == BarKind::Io) == io && overlaps(m.addr, m.size, o.addr, o.size));
        if let Some(o) = clash {
            return self.refuse(m, format!("it overlaps BAR {} at {:#x}", o.bar, o.addr));
        }
        let owner = self.host.addr().to_string();
        if let Err(other) = self.env.ranges.claim(&owner, io, m.addr, m.size) {
            return self.refuse(m, format!("it overlaps a BAR of passed-through host function {other}"));
        }
        let runs = self.plan_runs(&hb, &m);
        if hb.kind == BarKind::Rom && !runs.is_empty() {
            self.set_rom_enable(true);
        }
        let mut done = Vec::new();
        for r in &runs {
            match self.exec(r.op(true)) {
                Ok(_) => done.push(*r),
                Err(e) => {
                    log::error!("{name}: BAR {} at {:#x}: {e}; undoing", m.bar, m.addr);
                    for d in done.iter().rev() {
                        if let Err(e) = self.exec(d.op(false)) {
                            log::error!("{name}: undo {d:?}: {e}");
                        }
                    }
                    self.env.ranges.release(&owner, io, m.addr);
                    if hb.kind == BarKind::Rom {
                        self.set_rom_enable(false);
                    }
                    self.bars.insert(
                        m.bar,
                        BarState { guest: m, runs: Vec::new(), refused: Some(format!("hypervisor refused: {e}")) },
                    );
                    return;
                }
            }
        }
        self.bars.insert(m.bar, BarState { guest: m, runs: done, refused: None });
    }

    fn unmap_bar(&mut self, bar: u8) {
        let Some(st) = self.bars.remove(&bar) else { return };
        let name = self.name_str();
        for r in st.runs.iter().rev() {
            if let Err(e) = self.exec(r.op(false)) {
                log::error!("{name}: removing {r:?} of BAR {bar}: {e}");
            }
        }
        if st.refused.is_none() {
            let owner = self.host.addr().to_string();
            self.env.ranges.release(&owner, st.guest.kind == BarKind::Io, st.guest.addr);
        }
        if st.guest.kind == BarKind::Rom && !st.runs.is_empty() {
            self.set_rom_enable(false);
        }
    }

    fn on_bar_changes(&mut self, fx: &PciEffects) {
        let mut table_moved = false;
        let table_bar = self.filter.layout().msix.map(|m| m.cfg.table_bar);
        for e in fx {
            if let PciEffect::Bar(c) = e {
                match c {
                    BarChange::Unmap(m) => self.unmap_bar(m.bar),
                    BarChange::Map(m) => self.map_bar(*m),
                }
                let bar = match c {
                    BarChange::Unmap(m) | BarChange::Map(m) => m.bar,
                };
                table_moved |= Some(bar) == table_bar;
            }
        }
        if table_moved {
            self.msix_sync();
        }
    }

    // ---- INTx ------------------------------------------------------------------------------

    fn bind_intx(&mut self, dev: u8, pin: IntxPin) {
        let name = self.name_str();
        let gsi = self.filter.layout().irq;
        let pirq = match self.exec(PtOp::MapPirq(PirqSource::Gsi(gsi))) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => {
                log::error!("{name}: map_pirq of GSI {gsi} failed; INTx disabled on the device");
                self.host_update16(reg::COMMAND, 0, cmd::INTX_DISABLE);
                return;
            }
        };
        self.intx.pirq = Some(pirq);
        let b = BindPtIrq::new_pci(pirq, 0, dev, pin.index());
        match self.exec(PtOp::Bind(b)) {
            Ok(_) => {
                self.intx.bound = Some((dev, pin.index()));
                log::info!("{name}: INTx GSI {gsi} = pirq {pirq} bound to guest 00:{dev:02x} {pin}");
            }
            Err(e) => {
                log::error!("{name}: {e}; INTx disabled on the device");
                if let Err(e) = self.exec(PtOp::UnmapPirq(pirq)) {
                    log::error!("{name}: {e}");
                }
                self.intx.pirq = None;
                self.host_update16(reg::COMMAND, 0, cmd::INTX_DISABLE);
            }
        }
    }

    fn unbind_intx(&mut self) {
        let name = self.name_str();
        if let (Some(pirq), Some((dev, intx))) = (self.intx.pirq, self.intx.bound.take()) {
            if let Err(e) = self.exec(PtOp::Unbind(BindPtIrq::new_pci(pirq, 0, dev, intx))) {
                log::error!("{name}: {e}");
            }
        }
        if let Some(pirq) = self.intx.pirq.take() {
            if let Err(e) = self.exec(PtOp::UnmapPirq(pirq)) {
                log::error!("{name}: {e}");
            }
        }
    }

    // ---- MSI -------------------------------------------------------------------------------

    fn msix_enabled(&self) -> bool {
        let f = self.filter.function();
        f.msix().is_some_and(|m| m.enabled(f.config()))
    }

    fn msi_teardown(&mut self) {
        let name = self.name_str();
        if self.msi_host_on {
            if let Some(m) = self.filter.layout().msi {
                self.host_update16(m.off + 2, 1, 0);
            }
            self.msi_host_on = false;
        }
        if let Some(b) = self.msi.take() {
            if let Err(e) = self.exec(PtOp::Unbind(BindPtIrq::new_msi(b.pirq, b.gvec, b.gflags, 0))) {
                log::error!("{name}: {e}");
            }
            if let Err(e) = self.exec(PtOp::UnmapPirq(b.pirq)) {
                log::error!("{name}: {e}");
            }
        }
    }

    fn msi_update(&mut self, before: Option<(bool, u64, u32)>) {
        let name = self.name_str();
        let f = self.filter.function();
        let Some(m) = f.msi() else { return };
        let c = f.config();
        let enabled = m.enabled(c);
        let (addr, data) = m.message(c, 0).map_or((0, 0), |x| (x.addr, x.data));
        let now = Some((enabled, addr, data));
        if now == before && (self.msi.is_some() == enabled) {
            return;
        }
        if !enabled {
            self.msi_teardown();
            return;
        }
        if self.msix_enabled() {
            crate::guest_warn!("{name}: MSI enabled while MSI-X is enabled; MSI not bound");
            return;
        }
        let (gvec, gflags, want) = match msi_binding(addr, data) {
            Ok(x) => x,
            Err(why) => {
                crate::guest_warn!("{name}: MSI not bound: {why}");
                self.msi_teardown();
                return;
            }
        };
        let pirq = match self.msi {
            Some(b) if want.is_none_or(|w| w == b.pirq) => b.pirq,
            _ => {
                self.msi_teardown();
                let src = PirqSource::Msi { host: self.host.addr(), entry: 0, table_base: 0, pirq: want };
                match self.exec(PtOp::MapPirq(src)) {
                    Ok(Some(p)) => p,
                    Ok(None) | Err(_) => {
                        crate::guest_warn!("{name}: map_pirq for MSI failed; MSI not enabled on the device");
                        return;
                    }
                }
            }
        };
        let b = Binding { pirq, gvec, gflags, gtable: 0 };
        if self.msi == Some(b) {
            return;
        }
        match self.exec(PtOp::Bind(BindPtIrq::new_msi(pirq, gvec, gflags, 0))) {
            Ok(_) => {
                self.msi = Some(b);
                if !self.msi_host_on {
                    if let Some(h) = self.filter.layout().msi {
                        self.host_update16(h.off + 2, 0, 1);
                    }
                    self.msi_host_on = true;
                }
            }
            Err(e) => {
                log::error!("{name}: {e}");
                self.msi = None;
                if let Err(e) = self.exec(PtOp::UnmapPirq(pirq)) {
                    log::error!("{name}: {e}");
                }
            }
        }
    }

    // ---- MSI-X -----------------------------------------------------------------------------

    fn msix_entry_values(&self, i: u16) -> Option<(bool, u64, u32)> {
        let e = self.filter.function().msix()?.entry(i)?;
        Some((e.masked(), e.message().addr, e.message().data))
    }

    fn msix_gtable(&self) -> Option<u64> {
        let m = self.filter.layout().msix?;
        let map = self.filter.function().bars().mapping(m.cfg.table_bar)?;
        Some(map.addr + u64::from(m.cfg.table_offset))
    }

    fn msix_teardown(&mut self) {
        let name = self.name_str();
        if self.msix_host_on {
            if let Some(m) = self.filter.layout().msix {
                self.host_update16(m.off + 2, 0xc000, 0);
            }
            self.msix_host_on = false;
        }
        for i in 0..self.msix.len() {
            let e = self.msix.get_mut(i).map(std::mem::take).unwrap_or_default();
            if let Some(b) = e.bound {
                if let Err(err) = self.exec(PtOp::Unbind(BindPtIrq::new_msi(b.pirq, b.gvec, b.gflags, 0))) {
                    log::error!("{name}: MSI-X entry {i}: {err}");
                }
            }
            if let Some(p) = e.pirq {
                if let Err(err) = self.exec(PtOp::UnmapPirq(p)) {
                    log::error!("{name}: MSI-X entry {i}: {err}");
                }
            }
            if let Some(x) = self.msix.get_mut(i) {
                x.latch = e.latch;
            }
        }
    }

    /// Brings the bindings in line with the emulated MSI-X state.
    fn msix_sync(&mut self) {
        let name = self.name_str();
        let Some(host) = self.filter.layout().msix else { return };
        let f = self.filter.function();
        let Some(mx) = f.msix() else { return };
        let enabled = mx.enabled(f.config());
        let fmask = mx.function_masked(f.config());
        if !enabled {
            if self.msix.iter().any(|e| e.pirq.is_some()) || self.msix_host_on {
                self.msix_teardown();
            }
            return;
        }
        if self.msi.is_some() {
            crate::guest_warn!("{name}: MSI-X enabled while MSI is enabled; MSI-X not bound");
            return;
        }
        let gtable = self.msix_gtable();
        let table_base = self.filter.layout().bar(host.cfg.table_bar).map_or(0, |b| b.start);
        if !fmask {
            for i in 0..host.cfg.table_size {
                let Some((masked, _, _)) = self.msix_entry_values(i) else { continue };
                let Some(st) = self.msix.get(usize::from(i)).copied() else { continue };
                if masked {
                    continue;
                }
                let Some(gtable) = gtable else { continue };
                let (addr, data) = st.latch;
                let (gvec, gflags, want) = match msi_binding(addr, data) {
                    Ok(x) => x,
                    Err(why) => {
                        if st.bound.is_none() {
                            crate::guest_warn!("{name}: MSI-X entry {i} not bound: {why}");
                        }
                        continue;
                    }
                };
                let pirq = match st.pirq {
                    Some(p) if want.is_none_or(|w| w == p) => p,
                    _ => {
                        let src = PirqSource::Msi { host: self.host.addr(), entry: i, table_base, pirq: want };
                        match self.exec(PtOp::MapPirq(src)) {
                            Ok(Some(p)) => p,
                            Ok(None) | Err(_) => {
                                crate::guest_warn!("{name}: map_pirq for MSI-X entry {i} failed");
                                continue;
                            }
                        }
                    }
                };
                let b = Binding { pirq, gvec, gflags, gtable };
                if st.bound == Some(b) {
                    continue;
                }
                let r = self.exec(PtOp::Bind(BindPtIrq::new_msi(pirq, gvec, gflags, gtable)));
                if let Some(e) = self.msix.get_mut(usize::from(i)) {
                    e.pirq = Some(pirq);
                    match r {
                        Ok(_) => e.bound = Some(b),
                        Err(err) => {
                            log::error!("{name}: MSI-X entry {i}: {err}");
                            e.bound = None;
                        }
                    }
                }
            }
        }
        if !self.msix_host_on {
            self.msix_host_on = true;
        }
        // Enable and function mask are written through (Xen tracks the device's mask-all).
        let want = mx_ctrl(self.filter.function()) & 0xc000;
        self.host_update16(host.off + 2, 0xc000 & !want, want);
    }

    fn msix_table_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        let name = self.name_str();
        let Some(host) = self.filter.layout().msix else { return Vec::new() };
        let rel = off.wrapping_sub(u64::from(host.cfg.table_offset));
        let idx = u16::try_from(rel / ENTRY_SIZE).unwrap_or(u16::MAX);
        let before = self.msix_entry_values(idx);
        let enabled = self.msix_enabled();
        let fmask = {
            let f = self.filter.function();
            f.msix().is_some_and(|m| m.function_masked(f.config()))
        };
        let _ = self.filter.function_mut().msix_bar_write(bar, off, size, val);
        let after = self.msix_entry_values(idx);
        if let (Some((was_masked, a0, d0)), Some((_, a1, d1))) = (before, after) {
            let active = enabled && !fmask && !was_masked;
            if (a0, d0) != (a1, d1) {
                if active {
                    crate::guest_warn!(
                        "{name}: MSI-X entry {idx} changed while unmasked; the change applies when it is masked and unmasked again"
                    );
                } else if let Some(e) = self.msix.get_mut(usize::from(idx)) {
                    e.latch = (a1, d1);
                }
            }
        }
        self.msix_sync();
        Vec::new()
    }

    // ---- trapped BAR accesses -----------------------------------------------------------------

    fn trap_target(&self, bar: u8, off: u64, size: u8) -> Result<(), String> {
        if let Some(st) = self.bars.get(&bar) {
            if let Some(why) = &st.refused {
                return Err(format!("BAR {bar} is refused ({why})"));
            }
        }
        let hb = self.filter.layout().bar(bar).ok_or_else(|| format!("BAR {bar} does not exist"))?;
        if hb.kind == BarKind::Rom {
            return Err("the ROM is only reachable through its direct mapping".into());
        }
        if off.checked_add(u64::from(size)).is_none_or(|e| e > hb.size) {
            return Err(format!("offset {off:#x} size {size} is beyond the device's {:#x}-byte BAR", hb.size));
        }
        Ok(())
    }

    fn in_pba(&self, bar: u8, off: u64) -> Option<u64> {
        let c = self.filter.layout().msix?.cfg;
        let rel = off.checked_sub(u64::from(c.pba_offset))?;
        (bar == c.pba_bar && rel < c.pba_len()).then_some(rel)
    }

    fn in_table(&self, bar: u8, off: u64) -> bool {
        self.filter.layout().msix.is_some_and(|m| {
            let c = m.cfg;
            bar == c.table_bar && off.checked_sub(u64::from(c.table_offset)).is_some_and(|rel| rel < c.table_len())
        })
    }

    /// Tears everything down in reverse order of setup (idempotent): device quiesced (bus
    /// mastering off, INTx disabled), MSI-X and MSI unbound and unmapped, BARs unmapped, INTx
    /// unbound and unmapped.
    pub fn detach(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        let name = self.name_str();
        self.host_update16(reg::COMMAND, cmd::BUS_MASTER, cmd::INTX_DISABLE);
        self.msix_teardown();
        self.msi_teardown();
        let bars: Vec<u8> = self.bars.keys().rev().copied().collect();
        for b in bars {
            self.unmap_bar(b);
        }
        self.unbind_intx();
        log::info!("{name}: host {} detached", self.host.addr());
    }
}

fn mx_ctrl(f: &GenericFunction) -> u16 {
    f.msix().map_or(0, |m| m.control(f.config()))
}

impl PciDevice for PassthroughDevice {
    fn function(&self) -> &GenericFunction {
        self.filter.function()
    }
    fn function_mut(&mut self) -> &mut GenericFunction {
        self.filter.function_mut()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn config_read(&mut self, off: u16, size: u8) -> u32 {
        self.filter.read(self.host.as_ref(), off, size)
    }

    fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        if self.detached {
            return Vec::new();
        }
        let before = self.snapshot();
        let w = self.filter.write(self.host.as_ref(), off, size, val);
        for h in &w.host {
            let bytes = h.val.to_le_bytes();
            if let Err(e) = self.host.config_write(h.off, bytes.get(..usize::from(h.size)).unwrap_or(&[])) {
                crate::guest_warn!("{}: device config write at {:#x} failed: {e}", self.name_str(), h.off);
            }
        }
        let fx = w.fx;
        self.on_bar_changes(&fx);
        let now = self.snapshot();
        let intx = |c: u16| c & cmd::INTX_DISABLE != 0;
        if intx(before.command) != intx(now.command) {
            if intx(now.command) {
                self.host_update16(reg::COMMAND, 0, cmd::INTX_DISABLE);
            } else if self.intx.bound.is_some() {
                self.host_update16(reg::COMMAND, cmd::INTX_DISABLE, 0);
            }
        }
        if now.msi != before.msi {
            self.msi_update(before.msi);
        }
        if now.msix_ctrl != before.msix_ctrl {
            self.msix_sync();
        }
        fx
    }

    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> u64 {
        let name = self.name_str();
        if self.in_table(bar, off) {
            return self.filter.function().msix_bar_read(bar, off, size).unwrap_or_else(|| crate::device::ones(size));
        }
        if self.in_pba(bar, off).is_some() {
            // The pending bits are the device's (Xen masks and unmasks the vectors).
            return self.host.bar_read(bar, off, size).unwrap_or_else(|_| crate::device::ones(size));
        }
        match self.trap_target(bar, off, size) {
            Ok(()) => self.host.bar_read(bar, off, size).unwrap_or_else(|e| {
                crate::guest_warn!("{name}: {e}");
                crate::device::ones(size)
            }),
            Err(why) => {
                crate::guest_warn!("{name}: read of BAR {bar} offset {off:#x}: {why}; all-ones");
                crate::device::ones(size)
            }
        }
    }

    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        let name = self.name_str();
        if self.detached {
            return Vec::new();
        }
        if self.in_table(bar, off) {
            return self.msix_table_write(bar, off, size, val);
        }
        if let Some(rel) = self.in_pba(bar, off) {
            crate::guest_warn!("{name}: write to the MSI-X PBA at {rel:#x} refused (read-only)");
            return Vec::new();
        }
        match self.trap_target(bar, off, size) {
            Ok(()) => {
                if let Err(e) = self.host.bar_write(bar, off, size, val) {
                    crate::guest_warn!("{name}: {e}");
                }
            }
            Err(why) => crate::guest_warn!("{name}: write of BAR {bar} offset {off:#x}: {why}; dropped"),
        }
        Vec::new()
    }

    fn reset(&mut self, kind: ResetKind) -> PciEffects {
        self.msix_teardown();
        self.msi_teardown();
        let fx = self.filter.reset(kind);
        self.on_bar_changes(&fx);
        if !self.detached {
            if let Err(e) = self.host.reset() {
                log::warn!("{}: resetting host {}: {e}", self.name_str(), self.host.addr());
            }
            self.prepare_host();
        }
        fx
    }

    fn aer_inject(&mut self, errors: &[AerErrorSpec], source_id: u16) -> Result<InjectOutcome, AerInjectError> {
        self.filter.aer_inject(errors, source_id)
    }

    fn placed(&mut self, root_intx: Option<(u8, IntxPin)>) {
        if self.intx.pirq.is_some() || self.detached {
            return;
        }
        match (self.filter.layout().pin, root_intx) {
            (Some(_), Some((dev, pin))) => self.bind_intx(dev, pin),
            _ => log::info!("{}: no INTx (no pin or no machine IRQ)", self.name_str()),
        }
    }

    fn load_state(&mut self, _data: &[u8]) -> Result<PciEffects, crate::state::StateError> {
        Err(crate::state::StateError::Mismatch(format!(
            "{}: a passed-through device cannot be restored from a saved state",
            self.name_str()
        )))
    }
}

impl Drop for PassthroughDevice {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_messages_become_gflags_like_qemu() {
        // dest 3, logical, RH, lowest priority, level, vector 0x41.
        let (gvec, gflags, pirq) = msi_binding(0xfee0_300c, 0x8141).expect("valid");
        assert_eq!((gvec, pirq), (0x41, None));
        assert_eq!(gflags, 3 | 0x100 | 0x200 | 0x1000 | 0x8000);
        assert!(msi_binding(0xfed0_0000, 0x41).is_err(), "outside the interrupt window");
        assert!(msi_binding(0x1_fee0_0000, 0x41).is_err());
        assert_eq!(msi_binding(0x0000_0100_fee3_4000, 0).map(|x| x.2), Ok(Some(0x100 | 0x34)), "vector 0 = pirq");
        assert!(msi_binding(0xfee0_0000, 0).is_err());
    }

    #[test]
    fn guest_ranges_refuse_overlap_between_owners() {
        let r = GuestRanges::default();
        r.claim("a", false, 0x1000, 0x1000).expect("free");
        assert_eq!(r.claim("b", false, 0x1800, 0x100), Err("a".to_string()));
        r.claim("b", true, 0x1800, 0x100).expect("ports are another space");
        r.release("a", false, 0x1000);
        r.claim("b", false, 0x1800, 0x100).expect("released");
    }
}
