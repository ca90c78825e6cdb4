//! The guest's view of a passed-through function's config space, built from the device's own
//! config bytes and the table in [`super::table`], and the filter every guest config access
//! goes through.
//!
//! The emulated part is an ordinary [`GenericFunction`] (header, BARs sized from the host's
//! resources, the capability chains, MSI and MSI-X state, and the virtual AER capability), so it
//! behaves like every other q35dm function (reset kinds, BAR decode, effects). On top of it a
//! per-byte overlay says which bits are the device's:
//!
//! - **read**: emulated bits come from the generic function, `host` bits from a config read of
//!   the device (one `pread` of the guest's width); the emulated copy is refreshed with what was
//!   read so dumps and `query-pci` show it. A failed device read yields all-ones for those bits.
//! - **write**: the emulated bits go through the generic function's masks; the device gets a
//!   write only if the access covers `host_write`/`host_w1c` bits (or `reserved` ones with
//!   `permissive=on`), computed per bit from a fresh read of the device (no write if that read
//!   fails, XSA-128); every other bit the guest tried to change is dropped and logged
//!   (rate-limited), suggesting `permissive=on` where that would help.
//!
//! The filter only computes device writes ([`HostWrite`]): the caller performs them.

use thiserror::Error;

use crate::pci::bar::{
    BarKind, BarSpec, MAX_IO_ADDR, MAX_MEM32_BAR_SIZE, MAX_MEM64_BAR_SIZE, MAX_PHYS_ADDR, MAX_ROM_SIZE,
};
use crate::pci::caps::{ext_id, walk_extended, walk_standard, CapBlock, CapId};
use crate::pci::config::{ones32, Access, HeaderIds, IntxPin, RegMasks, RegSpec, ResetKind, CONFIG_SPACE_SIZE};
use crate::pci::device::{CapRequest, CapSource, DeviceError, FunctionSpec, GenericFunction, PciEffects};
use crate::pci::msi::MsiConfig;
use crate::pci::msix::MsixConfig;
use crate::pci::Sbdf;
use crate::pcie::aer::{cor, errcap, uncor, Aer, AerConfig, AerErrorSpec, AerInjectError, InjectOutcome};
use crate::pcie::cap::PortType;

use super::host::{HostDevice, HostError, HostResource, PAGE_SIZE};
use super::table::{self, CapLen, ExtLen, ExtPolicy, Field, Init, StdPolicy};

/// Why a host function cannot be presented to the guest.
#[derive(Debug, Error)]
pub enum FilterError {
    /// The host could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Too little config space readable.
    #[error(
        "{addr}: only {len} bytes of config space are readable (need at least 64; q35dm must run as root to read more)"
    )]
    ShortConfig {
        /// Function.
        addr: Sbdf,
        /// Bytes readable.
        len: usize,
    },
    /// The function is not there.
    #[error("{addr}: vendor ID {vendor:#06x}: the function is absent")]
    Absent {
        /// Function.
        addr: Sbdf,
        /// Vendor ID read.
        vendor: u16,
    },
    /// Not a type-0 header.
    #[error("{addr}: header type {value:#04x}: only type-0 functions (endpoints) can be passed through")]
    NotType0 {
        /// Function.
        addr: Sbdf,
        /// Header type register.
        value: u8,
    },
    /// A PCI Express port or bridge.
    #[error("{addr}: PCI Express device/port type {code}: only endpoints (0, 1, 9) can be passed through")]
    NotEndpoint {
        /// Function.
        addr: Sbdf,
        /// Device/port type field.
        code: u8,
    },
    /// A BAR the guest view cannot express.
    #[error("{addr}: BAR {index} (start {start:#x}, end {end:#x}, flags {flags:#x}): {why}")]
    BadBar {
        /// Function.
        addr: Sbdf,
        /// BAR index (6 = ROM).
        index: u8,
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// Flags.
        flags: u64,
        /// Why.
        why: &'static str,
    },
    /// The emulated function could not be built.
    #[error("{addr}: building the guest view: {source}")]
    Build {
        /// Function.
        addr: Sbdf,
        /// Cause.
        source: DeviceError,
    },
}

/// One BAR (or the ROM) of the host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBar {
    /// Index (6 = ROM).
    pub index: u8,
    /// Kind.
    pub kind: BarKind,
    /// Host start address (port or machine address).
    pub start: u64,
    /// Host size.
    pub size: u64,
    /// Size the guest sees: memory BARs are at least a page, so the guest places each in pages
    /// of its own (QEMU does the same).
    pub guest_size: u64,
}

impl HostBar {
    /// Whether its host frames can be mapped into the guest: a memory BAR (or ROM) that starts
    /// on a page and covers whole pages. Otherwise (a sub-page BAR shares its page with
    /// something else, XSA-461) every access is trapped and forwarded within the BAR.
    pub fn direct_mappable(&self) -> bool {
        self.kind.is_mem() && self.start % PAGE_SIZE == 0 && self.size % PAGE_SIZE == 0 && self.size >= PAGE_SIZE
    }
}

/// Derives the BARs from the host's `resource` lines.
pub fn host_bars(addr: Sbdf, res: &[HostResource]) -> Result<Vec<HostBar>, FilterError> {
    let mut out = Vec::new();
    let mut upper_of: Option<u8> = None;
    for r in res.iter().take(7) {
        let bad = |why| FilterError::BadBar { addr, index: r.index, start: r.start, end: r.end, flags: r.flags, why };
        if upper_of.take().is_some_and(|i| i + 1 == r.index) {
            if r.size() != 0 {
                return Err(bad("follows a 64-bit BAR but is not empty"));
            }
            continue;
        }
        let size = r.size();
        if size == 0 {
            continue;
        }
        if !size.is_power_of_two() {
            return Err(bad("size is not a power of two"));
        }
        if r.end > MAX_PHYS_ADDR {
            return Err(bad("ends beyond the physical address space"));
        }
        let bar = if r.index == 6 {
            if !r.is_mem() || !(2048..=MAX_ROM_SIZE).contains(&size) {
                return Err(bad("not a memory ROM of 2 KiB to 16 MiB"));
            }
            HostBar { index: 6, kind: BarKind::Rom, start: r.start, size, guest_size: size.max(PAGE_SIZE) }
        } else if r.is_io() {
            if !(4..=256).contains(&size) || r.start.checked_add(size - 1).is_none_or(|e| e > MAX_IO_ADDR) {
                return Err(bad("not an I/O BAR of 4 to 256 ports below 0x10000"));
            }
            HostBar { index: r.index, kind: BarKind::Io, start: r.start, size, guest_size: size }
        } else if r.is_mem() {
            let guest_size = size.max(PAGE_SIZE);
            let kind = if r.mem64() {
                if r.index > 4 {
                    return Err(bad("64-bit BAR in the last slot"));
                }
                upper_of = Some(r.index);
                BarKind::Mem64 { prefetchable: r.prefetchable() }
            } else {
                BarKind::Mem32 { prefetchable: r.prefetchable() }
            };
            let max = if r.mem64() { MAX_MEM64_BAR_SIZE } else { MAX_MEM32_BAR_SIZE };
            if guest_size > max {
                return Err(bad("too large for its kind"));
            }
            HostBar { index: r.index, kind, start: r.start, size, guest_size }
        } else {
            return Err(bad("neither I/O nor memory"));
        };
        out.push(bar);
    }
    Ok(out)
}

/// The device's MSI capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiHost {
    /// Offset (host and guest).
    pub off: u16,
    /// 64-bit capable.
    pub addr64: bool,
    /// Length of the device's capability.
    pub host_len: u16,
}

/// The device's MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixHost {
    /// Offset (host and guest).
    pub off: u16,
    /// Table and PBA layout (the guest sees the same).
    pub cfg: MsixConfig,
}

/// How one host capability was treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapView {
    /// Identity (extended ones with the host's version).
    pub id: CapId,
    /// Name from the table.
    pub name: &'static str,
    /// Where it is on the device.
    pub host_off: u16,
    /// Where the guest sees it (`None` = hidden).
    pub guest_off: Option<u16>,
    /// What was done.
    pub treatment: &'static str,
}

/// What the host offers, as far as passthrough is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLayout {
    /// BARs and ROM.
    pub bars: Vec<HostBar>,
    /// MSI.
    pub msi: Option<MsiHost>,
    /// MSI-X.
    pub msix: Option<MsixHost>,
    /// PCI Express capability offset.
    pub pcie: Option<u16>,
    /// Virtual AER capability offset (guest).
    pub aer: Option<u16>,
    /// Interrupt pin (only when the device has a machine IRQ).
    pub pin: Option<IntxPin>,
    /// Machine IRQ (GSI).
    pub irq: u32,
    /// Every capability met and its treatment.
    pub caps: Vec<CapView>,
    /// Problems met (odd chains, capabilities that did not fit).
    pub problems: Vec<String>,
}

impl HostLayout {
    /// The BAR (or ROM) with `index`.
    pub fn bar(&self, index: u8) -> Option<&HostBar> {
        self.bars.iter().find(|b| b.index == index)
    }
}

/// Construction options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// Name for logs.
    pub name: String,
    /// `permissive=on`: reserved and unknown bits are written through (logged).
    pub permissive: bool,
    /// Set the multi-function bit.
    pub multifunction: bool,
}

/// A device write the filter decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostWrite {
    /// Offset.
    pub off: u16,
    /// Size (1, 2 or 4).
    pub size: u8,
    /// Value.
    pub val: u32,
}

/// What a guest write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterWrite {
    /// Effects of the emulated part (BAR decode changes).
    pub fx: PciEffects,
    /// Device writes to perform, in order.
    pub host: Vec<HostWrite>,
    /// Bits the guest tried to change that were dropped.
    pub dropped: u32,
    /// Bits that reached the device only because of `permissive=on`.
    pub permissive: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Overlay {
    host: Vec<u8>,
    host_write: Vec<u8>,
    host_w1c: Vec<u8>,
    reserved: Vec<u8>,
}

impl Overlay {
    fn new() -> Self {
        let n = usize::from(CONFIG_SPACE_SIZE);
        Self { host: vec![0; n], host_write: vec![0; n], host_w1c: vec![0; n], reserved: vec![0; n] }
    }

    fn set(&mut self, off: u16, width: u8, f: &Field) {
        for i in 0..usize::from(width) {
            let o = usize::from(off) + i;
            let b = |m: u32| (m >> (8 * i)) as u8;
            for (v, m) in [
                (&mut self.host, f.host),
                (&mut self.host_write, f.host_write),
                (&mut self.host_w1c, f.host_w1c),
                (&mut self.reserved, f.reserved),
            ] {
                if let Some(x) = v.get_mut(o) {
                    *x = b(m);
                }
            }
        }
    }

    /// Marks `[off, off+len)` as read from the device and writable only with permissive.
    fn raw(&mut self, off: u16, len: u16) {
        for o in usize::from(off)..usize::from(off) + usize::from(len) {
            for v in [&mut self.host, &mut self.reserved] {
                if let Some(x) = v.get_mut(o) {
                    *x = 0xff;
                }
            }
        }
    }

    fn mask(v: &[u8], off: u16, size: u8) -> u32 {
        (0..usize::from(size))
            .fold(0, |acc, i| acc | (u32::from(v.get(usize::from(off) + i).copied().unwrap_or(0)) << (8 * i)))
    }
}

fn le(bytes: &[u8], off: u16, width: u8) -> u32 {
    (0..usize::from(width))
        .fold(0, |acc, i| acc | (u32::from(bytes.get(usize::from(off) + i).copied().unwrap_or(0)) << (8 * i)))
}

fn width_mask(width: u8) -> u32 {
    ones32(width)
}

/// The filter of one passed-through function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFilter {
    f: GenericFunction,
    aer: Option<Aer>,
    ov: Overlay,
    permissive: bool,
    layout: HostLayout,
    addr: Sbdf,
}

struct Builder<'a> {
    addr: Sbdf,
    hc: &'a [u8],
    spec: FunctionSpec,
    layout: HostLayout,
    exposed: Vec<(u16, u16)>,
    hidden: Vec<(u16, u16)>,
    raw: Vec<(u16, u16)>,
    fields: Vec<(u16, &'static [Field], u16)>,
    aer_cfg: Option<AerConfig>,
    ext_copies: Vec<(u16, u16)>,
}

impl Builder<'_> {
    fn fits(&self, off: u16, len: u16, end: u16) -> bool {
        let e = u32::from(off) + u32::from(len);
        e <= u32::from(end)
            && !self.exposed.iter().any(|(o, l)| u32::from(off) < u32::from(*o) + u32::from(*l) && u32::from(*o) < e)
    }

    fn push_cap(&mut self, cap: CapSource, at: u16) {
        self.spec.caps.push(CapRequest { at: Some(at), cap });
    }

    fn expose(&mut self, off: u16, len: u16) {
        self.exposed.push((off, len));
    }

    fn pcie_len(&self, off: u16) -> Result<u16, FilterError> {
        let flags = le(self.hc, off + 2, 2) as u16;
        let code = ((flags >> 4) & 0xf) as u8;
        let version = flags & 0xf;
        if !matches!(code, 0 | 1 | 9) {
            return Err(FilterError::NotEndpoint { addr: self.addr, code });
        }
        Ok(match (version, code) {
            (0 | 1, 9) => 0x0C,
            (0 | 1, _) => 0x14,
            _ => 0x3C,
        })
    }

    fn std_caps(&mut self) -> Result<(), FilterError> {
        let walk = walk_standard(self.hc.get(..self.hc.len().min(256)).unwrap_or(&[]));
        self.layout.problems.extend(walk.problems.iter().map(|p| format!("standard capability chain: {p}")));
        for c in &walk.caps {
            let rule = table::std_rule_for(c.id);
            let id = CapId::Std(rule.id);
            let off = c.off;
            let mut view = CapView { id, name: rule.name, host_off: off, guest_off: Some(off), treatment: "exposed" };
            match rule.policy {
                StdPolicy::Fields(fields, len) => {
                    let len = match len {
                        CapLen::Fixed(n) => n,
                        CapLen::Pcie => self.pcie_len(off)?,
                        CapLen::Byte2 => u16::from(self.hc.get(usize::from(off) + 2).copied().unwrap_or(0)),
                    };
                    if !self.fits(off, len, 0x100) {
                        self.layout.problems.push(format!("{} at {off:#x} overlaps or overflows; hidden", rule.name));
                        self.hidden.push((off, 2));
                        view.guest_off = None;
                        view.treatment = "hidden (does not fit)";
                    } else {
                        self.push_cap(CapSource::Block(CapBlock::std(rule.id, len)), off);
                        self.fields.push((off, fields, len));
                        self.expose(off, len);
                        if rule.id == crate::pci::caps::id::EXP {
                            self.layout.pcie = Some(off);
                        }
                        view.treatment = "emulated per table";
                    }
                }
                StdPolicy::Msi => {
                    let flags = le(self.hc, off + 2, 2) as u16;
                    let addr64 = flags & 0x80 != 0;
                    let pvm = flags & 0x100 != 0;
                    let host_len = MsiConfig { vectors: 1, addr64, per_vector_mask: pvm }.cap_len();
                    let virt = MsiConfig { vectors: 1, addr64, per_vector_mask: false };
                    if !self.fits(off, host_len, 0x100) {
                        self.layout.problems.push(format!("MSI at {off:#x} overlaps or overflows; hidden"));
                        self.hidden.push((off, 2));
                        view.guest_off = None;
                        view.treatment = "hidden (does not fit)";
                    } else {
                        self.push_cap(CapSource::Msi(virt), off);
                        self.expose(off, host_len);
                        self.layout.msi = Some(MsiHost { off, addr64, host_len });
                        view.treatment = "emulated (1 vector, no masking), bound through Xen";
                    }
                }
                StdPolicy::Msix => {
                    let ctrl = le(self.hc, off + 2, 2) as u16;
                    let table = le(self.hc, off + 4, 4);
                    let pba = le(self.hc, off + 8, 4);
                    let cfg = MsixConfig {
                        table_size: (ctrl & 0x7ff) + 1,
                        table_bar: (table & 7) as u8,
                        table_offset: table & !7,
                        pba_bar: (pba & 7) as u8,
                        pba_offset: pba & !7,
                    };
                    match self.msix_ok(&cfg) {
                        Err(why) => {
                            self.layout.problems.push(format!("MSI-X at {off:#x}: {why}; hidden"));
                            self.hidden.push((off, 12));
                            view.guest_off = None;
                            view.treatment = "hidden (bad table)";
                        }
                        Ok(()) if !self.fits(off, 12, 0x100) => {
                            self.layout.problems.push(format!("MSI-X at {off:#x} overlaps or overflows; hidden"));
                            self.hidden.push((off, 2));
                            view.guest_off = None;
                            view.treatment = "hidden (does not fit)";
                        }
                        Ok(()) => {
                            self.push_cap(CapSource::Msix(cfg), off);
                            self.expose(off, 12);
                            self.layout.msix = Some(MsixHost { off, cfg });
                            view.treatment = "emulated control, table trapped and translated";
                        }
                    }
                }
                StdPolicy::Raw(len) => {
                    let len = match len {
                        CapLen::Fixed(n) => n,
                        _ => u16::from(self.hc.get(usize::from(off) + 2).copied().unwrap_or(0)).max(3),
                    }
                    .min(0x100u16.saturating_sub(off));
                    if len < 2 || !self.fits(off, len, 0x100) {
                        self.hidden.push((off, 2));
                        view.guest_off = None;
                        view.treatment = "hidden (does not fit)";
                    } else {
                        self.push_cap(CapSource::Block(CapBlock::std(rule.id, len)), off);
                        self.expose(off, len);
                        self.raw.push((off + 2, len - 2));
                        view.treatment = "body read from the device";
                    }
                }
                StdPolicy::Hide(len) => {
                    let len = match len {
                        CapLen::Fixed(n) => n,
                        _ => 4,
                    };
                    self.hidden.push((off, len.min(0x100u16.saturating_sub(off))));
                    view.guest_off = None;
                    view.treatment = "hidden";
                }
            }
            self.layout.caps.push(view);
        }
        Ok(())
    }

    fn msix_ok(&self, c: &MsixConfig) -> Result<(), String> {
        c.validate().map_err(|e| e.to_string())?;
        for (what, bar, off, len) in
            [("table", c.table_bar, c.table_offset, c.table_len()), ("PBA", c.pba_bar, c.pba_offset, c.pba_len())]
        {
            let b = self.layout.bar(bar).ok_or_else(|| format!("{what} in BAR {bar}, which is not implemented"))?;
            if !b.kind.is_mem() || b.kind == BarKind::Rom {
                return Err(format!("{what} in BAR {bar}, which is not a memory BAR"));
            }
            if u64::from(off) + len > b.size {
                return Err(format!(
                    "{what} ends at {:#x}, beyond BAR {bar} of {:#x} bytes",
                    u64::from(off) + len,
                    b.size
                ));
            }
        }
        Ok(())
    }

    fn ext_caps(&mut self) {
        let walk = walk_extended(self.hc);
        self.layout.problems.extend(walk.problems.iter().map(|p| format!("extended capability chain: {p}")));
        // The virtual AER goes first, at 0x100, the copies follow in the device's order.
        let mut order: Vec<_> = walk.caps.iter().filter(|c| c.id == ext_id::AER).take(1).collect();
        order.extend(walk.caps.iter().filter(|c| c.id != ext_id::AER));
        let mut next = 0x100u16;
        for c in order {
            let rule = table::ext_rule_for(c.id);
            let mut view = CapView {
                id: CapId::Ext { id: c.id, version: c.version },
                name: rule.name,
                host_off: c.off,
                guest_off: None,
                treatment: "hidden",
            };
            match rule.policy {
                ExtPolicy::VirtualAer if self.layout.pcie.is_some() && self.aer_cfg.is_none() => {
                    let a = |rel: u16| le(self.hc, c.off + rel, 4);
                    let hcap = a(0x18);
                    let cfg = AerConfig {
                        log_max: if hcap & errcap::MHRC != 0 { 8 } else { 0 },
                        ecrc: hcap & (errcap::ECRC_GENC | errcap::ECRC_CHKC) == (errcap::ECRC_GENC | errcap::ECRC_CHKC),
                        uncor_mask: a(0x08) & uncor::SUPPORTED,
                        uncor_severity: a(0x0C) & uncor::SUPPORTED,
                        cor_mask: a(0x14) & cor::SUPPORTED,
                    };
                    match cfg.cap_block(PortType::Endpoint) {
                        Ok(block) if next == 0x100 => {
                            let len = block.len;
                            self.push_cap(CapSource::Block(block), next);
                            self.aer_cfg = Some(cfg);
                            self.layout.aer = Some(next);
                            view.guest_off = Some(next);
                            view.treatment = "virtualised";
                            next += len.next_multiple_of(4);
                        }
                        _ => {
                            self.layout.problems.push("AER could not be virtualised; hidden".into());
                        }
                    }
                }
                ExtPolicy::Copy(len) => {
                    let len = match len {
                        ExtLen::Fixed(n) => n,
                        ExtLen::Vsec => ((le(self.hc, c.off + 4, 4) >> 20) & 0xfff) as u16,
                    };
                    let len = len.max(4) & !3;
                    let room = CONFIG_SPACE_SIZE.saturating_sub(next);
                    let src_room = CONFIG_SPACE_SIZE.saturating_sub(c.off);
                    if len <= room && len <= src_room {
                        let regs = (4..len).step_by(4).map(|r| RegSpec::ro(r, 4, le(self.hc, c.off + r, 4)));
                        let block = CapBlock::ext(c.id, c.version, len).regs(regs);
                        self.push_cap(CapSource::Block(block), next);
                        self.ext_copies.push((next, len));
                        view.guest_off = Some(next);
                        view.treatment = "read-only copy";
                        next += len;
                    } else {
                        self.layout.problems.push(format!("{} at {:#x} does not fit; hidden", rule.name, c.off));
                    }
                }
                _ => {}
            }
            self.layout.caps.push(view);
        }
    }
}

impl ConfigFilter {
    /// Builds the guest view of `host` (reads its config space, resources and IRQ once).
    pub fn build(host: &dyn HostDevice, opts: &FilterOptions) -> Result<Self, FilterError> {
        let addr = host.addr();
        let len = host.config_len().min(usize::from(CONFIG_SPACE_SIZE));
        if len < 64 {
            return Err(FilterError::ShortConfig { addr, len });
        }
        let mut hc = vec![0u8; len];
        host.config_read(0, &mut hc)?;
        let (vendor, device) = host.ids()?;
        if vendor == 0xffff || le(&hc, 0, 2) == 0xffff {
            return Err(FilterError::Absent { addr, vendor });
        }
        let ht = hc.get(0x0e).copied().unwrap_or(0xff);
        if ht & 0x7f != 0 {
            return Err(FilterError::NotType0 { addr, value: ht });
        }
        let irq = host.irq()?;
        let bars = host_bars(addr, &host.resources()?)?;
        let pin = IntxPin::from_register(hc.get(0x3d).copied().unwrap_or(0)).filter(|_| irq != 0);
        let ids = HeaderIds {
            vendor_id: vendor,
            device_id: device,
            revision: hc.get(8).copied().unwrap_or(0),
            class_code: le(&hc, 9, 3),
            subsystem_vendor_id: le(&hc, 0x2c, 2) as u16,
            subsystem_id: le(&hc, 0x2e, 2) as u16,
        };
        let mut spec = FunctionSpec::new(opts.name.clone(), ids);
        for b in &bars {
            spec = spec.bar(BarSpec { index: b.index, kind: b.kind, size: b.guest_size });
        }
        if let Some(p) = pin {
            spec = spec.intx(p);
        }
        if opts.multifunction {
            spec = spec.multifunction();
        }
        let has_pcie = walk_standard(hc.get(..len.min(256)).unwrap_or(&[])).find(0x10).is_some();
        let express = has_pcie && len >= usize::from(CONFIG_SPACE_SIZE);
        if express {
            spec = spec.express();
        }
        let layout = HostLayout { bars, pin, irq, ..HostLayout::default() };
        let mut b = Builder {
            addr,
            hc: &hc,
            spec,
            layout,
            exposed: Vec::new(),
            hidden: Vec::new(),
            raw: Vec::new(),
            fields: Vec::new(),
            aer_cfg: None,
            ext_copies: Vec::new(),
        };
        b.std_caps()?;
        if express {
            b.ext_caps();
        }
        let Builder { spec, mut layout, exposed, hidden, raw, fields, aer_cfg, .. } = b;
        let mut f = GenericFunction::new(spec).map_err(|source| FilterError::Build { addr, source })?;
        let mut ov = Overlay::new();
        let build_err = |e: crate::pci::config::ConfigError| FilterError::Build {
            addr,
            source: DeviceError::Config { name: opts.name.clone(), source: e },
        };
        for fl in table::HEADER {
            apply_field(&mut f, &mut ov, 0, fl, &hc).map_err(build_err)?;
        }
        for (off, table_fields, clen) in &fields {
            for fl in table_fields.iter().filter(|fl| fl.off + u16::from(fl.width) <= *clen) {
                apply_field(&mut f, &mut ov, *off, fl, &hc).map_err(build_err)?;
            }
        }
        // Unknown bytes of the standard space: neither exposed nor hidden.
        let covered = |o: u16| exposed.iter().chain(&hidden).any(|(s, l)| o >= *s && o < s.saturating_add(*l));
        for o in 0x40..0x100u16 {
            if !covered(o) && usize::from(o) < len {
                ov.raw(o, 1);
            }
        }
        for (o, l) in raw {
            ov.raw(o, l);
        }
        // Hidden capabilities: RO 0 and nothing from the device.
        for (o, l) in &hidden {
            for x in *o..o.saturating_add(*l) {
                if !exposed.iter().any(|(s, el)| x >= *s && x < s.saturating_add(*el)) {
                    for v in [&mut ov.host, &mut ov.host_write, &mut ov.host_w1c, &mut ov.reserved] {
                        if let Some(b) = v.get_mut(usize::from(x)) {
                            *b = 0;
                        }
                    }
                }
            }
        }
        // The live copy starts with the device's bits.
        for o in 0..len.min(usize::from(f.config().size())) {
            let m = ov.host.get(o).copied().unwrap_or(0);
            if m != 0 {
                let cur = f.config().get_u8(o as u16);
                f.config_mut().set_u8(o as u16, (cur & !m) | (hc.get(o).copied().unwrap_or(0) & m));
            }
        }
        let aer = match (aer_cfg, layout.aer, layout.pcie) {
            (Some(cfg), Some(aoff), Some(poff)) => Aer::new(aoff, poff, &cfg).ok(),
            _ => None,
        };
        if aer.is_none() {
            layout.aer = None;
        }
        Ok(Self { f, aer, ov, permissive: opts.permissive, layout, addr })
    }

    /// The emulated function.
    pub fn function(&self) -> &GenericFunction {
        &self.f
    }
    /// The emulated function, mutably.
    pub fn function_mut(&mut self) -> &mut GenericFunction {
        &mut self.f
    }
    /// What the host offers and how each capability was treated.
    pub fn layout(&self) -> &HostLayout {
        &self.layout
    }
    /// Whether `permissive=on`.
    pub fn permissive(&self) -> bool {
        self.permissive
    }
    /// Bits of `[off, off+size)` read from the device.
    pub fn host_mask(&self, off: u16, size: u8) -> u32 {
        Overlay::mask(&self.ov.host, off, size)
    }
    /// Bits of `[off, off+size)` a guest write may change on the device (RW1C included;
    /// reserved bits only with permissive).
    pub fn host_writable_mask(&self, off: u16, size: u8) -> u32 {
        let mut m = Overlay::mask(&self.ov.host_write, off, size) | Overlay::mask(&self.ov.host_w1c, off, size);
        if self.permissive {
            m |= Overlay::mask(&self.ov.reserved, off, size);
        }
        m
    }

    /// A guest config read.
    pub fn read(&mut self, host: &dyn HostDevice, off: u16, size: u8) -> u32 {
        let (v, access) = self.f.config().read(off, size);
        if let Access::Ignored(why) = access {
            crate::guest_warn!("{}: {why} ignored", self.f.name());
            return v;
        }
        let hm = self.host_mask(off, size);
        if hm == 0 {
            return v;
        }
        let mut buf = [0u8; 4];
        let Some(b) = buf.get_mut(..usize::from(size)) else { return v };
        match host.config_read(off, b) {
            Ok(()) => {
                let h = le(&buf, 0, size);
                for i in 0..size {
                    let o = off + u16::from(i);
                    let m = (hm >> (8 * i)) as u8;
                    let cur = self.f.config().get_u8(o);
                    self.f.config_mut().set_u8(o, (cur & !m) | ((h >> (8 * i)) as u8 & m));
                }
                (v & !hm) | (h & hm)
            }
            Err(e) => {
                crate::guest_warn!("{}: device config read at {off:#x} failed ({e}); reads as all-ones", self.f.name());
                v | hm
            }
        }
    }

    /// A guest config write: the emulated part's effects and the device writes to make.
    pub fn write(&mut self, host: &dyn HostDevice, off: u16, size: u8, val: u32) -> FilterWrite {
        let mut out = FilterWrite::default();
        if let Access::Ignored(why) = self.f.config().read(off, size).1 {
            crate::guest_warn!("{}: {why} ignored", self.f.name());
            return out;
        }
        let wm = width_mask(size);
        let val = val & wm;
        let hw = Overlay::mask(&self.ov.host_write, off, size);
        let w1c = Overlay::mask(&self.ov.host_w1c, off, size);
        let res = Overlay::mask(&self.ov.reserved, off, size);
        let pass = hw | if self.permissive { res } else { 0 };
        // Reserved and unknown bits the guest tried to change (judged against what it reads
        // now) are dropped and logged; plain read-only bits are ignored silently, as hardware
        // ignores them.
        let tried = if self.permissive {
            0
        } else {
            let current = self.read(host, off, size);
            (val ^ current) & res & wm
        };
        if pass != 0 || val & w1c != 0 {
            // Only the bytes carrying pass-through bits are written, in naturally aligned
            // pieces, each merged with a fresh read of the device (XSA-128).
            let bytes = pass | w1c;
            let has = |i: u8| (bytes >> (8 * u32::from(i))) & 0xff != 0;
            let mut i = 0u8;
            while i < size {
                if !has(i) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < size && has(j) {
                    j += 1;
                }
                let mut o = i;
                while o < j {
                    let abs = off + u16::from(o);
                    let s = [4u8, 2, 1].into_iter().find(|s| abs % u16::from(*s) == 0 && o + s <= j).unwrap_or(1);
                    let (shift, m) = (8 * u32::from(o), width_mask(s));
                    let (p, c, v, rs) =
                        ((pass >> shift) & m, (w1c >> shift) & m, (val >> shift) & m, (res >> shift) & m);
                    let mut buf = [0u8; 4];
                    match buf.get_mut(..usize::from(s)).map(|b| host.config_read(abs, b)) {
                        Some(Ok(())) => {
                            let cur = le(&buf, 0, s);
                            let new = ((cur & !p) & !c) | (v & p) | (v & c);
                            if new != cur || v & c != 0 {
                                out.host.push(HostWrite { off: abs, size: s, val: new });
                            }
                            if self.permissive {
                                out.permissive |= ((new ^ cur) & rs) << shift;
                            }
                        }
                        _ => crate::guest_warn!(
                            "{}: device config read at {abs:#x} failed; write of {val:#x} not passed to the device",
                            self.f.name()
                        ),
                    }
                    o += s;
                }
                i = j;
            }
        }
        if tried != 0 {
            out.dropped = tried;
            let hint =
                if !self.permissive && tried & res != 0 { " (permissive=on would pass reserved bits)" } else { "" };
            crate::guest_warn!(
                "{}: config write of {val:#x} at {off:#x} size {size}: bits {tried:#x} are read-only, reserved or hidden; dropped{hint}",
                self.f.name()
            );
        }
        if out.permissive != 0 {
            crate::guest_warn!(
                "{}: permissive=on: config write of {val:#x} at {off:#x} passes bits {:#x} to the device",
                self.f.name(),
                out.permissive
            );
        }
        out.fx = self.f.config_write(off, size, val);
        if let Some(a) = self.aer.as_mut() {
            let _ = a.on_config_write(self.f.config_mut(), off, size);
        }
        out
    }

    /// Resets the emulated part; returns its effects (BAR unmaps).
    pub fn reset(&mut self, kind: ResetKind) -> PciEffects {
        let fx = self.f.reset(kind);
        if let Some(a) = self.aer.as_mut() {
            let _ = a.reset(self.f.config_mut(), kind);
        }
        fx
    }

    /// Injects errors into the virtual AER capability (host errors forwarded to the guest, or
    /// `pcie_aer_inject_error`).
    pub fn aer_inject(&mut self, errors: &[AerErrorSpec], source_id: u16) -> Result<InjectOutcome, AerInjectError> {
        match self.aer.as_mut() {
            Some(a) => a.inject_all(self.f.config_mut(), errors, source_id),
            None => Err(AerInjectError::NoAer { function: self.f.name().to_string() }),
        }
    }

    /// The whole guest view (every dword read through the filter), e.g. for `lspci -F`.
    pub fn guest_view(&mut self, host: &dyn HostDevice) -> Vec<u8> {
        let n = self.f.config().size();
        let mut out = Vec::with_capacity(usize::from(n));
        for off in (0..n).step_by(4) {
            out.extend_from_slice(&self.read(host, off, 4).to_le_bytes());
        }
        out
    }

    /// The host address.
    pub fn addr(&self) -> Sbdf {
        self.addr
    }
}

fn apply_field(
    f: &mut GenericFunction,
    ov: &mut Overlay,
    base: u16,
    fl: &Field,
    hc: &[u8],
) -> Result<(), crate::pci::config::ConfigError> {
    let off = base.saturating_add(fl.off);
    let wm = width_mask(fl.width);
    let host = le(hc, off, fl.width);
    let emul = !fl.host & wm;
    let init = match fl.init {
        Init::Host => host,
        Init::HostEdit { clear, set } => (host & !clear) | set,
        Init::Const(v) => v,
        Init::Keep => f.config().get_u32(off) & wm,
    } & emul;
    let masks = RegMasks::rw(fl.rw & emul).with_w1c(fl.w1c & emul);
    f.config_mut().apply_reg(off, &RegSpec::new(0, fl.width, init, masks))?;
    ov.set(off, fl.width, fl);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passthrough::host::{ioresource, MemHost};
    use crate::pci::caps::id;

    fn mem(index: u8, start: u64, size: u64, flags: u64) -> HostResource {
        HostResource { index, start, end: start + size - 1, flags: flags | ioresource::MEM }
    }

    /// A small PCIe endpoint: PM at 0x40, MSI at 0x50, PCIe at 0x70, MSI-X at 0xb0, a VPD at
    /// 0xd0 (hidden), AER at 0x100 and SR-IOV at 0x140 (hidden).
    fn host() -> MemHost {
        let mut c = vec![0u8; 4096];
        let mut put = |o: usize, v: &[u8]| c[o..o + v.len()].copy_from_slice(v);
        put(0, &[0x86, 0x80, 0x21, 0x15]);
        put(0x04, &[0x06, 0x01, 0x10, 0x00]);
        put(0x08, &[0x01, 0x00, 0x00, 0x02]);
        put(0x2c, &[0x86, 0x80, 0x01, 0x00]);
        put(0x34, &[0x40]);
        put(0x3d, &[0x01]);
        put(0x40, &[0x01, 0x50, 0x03, 0xc8, 0x08, 0x00]);
        put(0x50, &[0x05, 0x70, 0x80, 0x01]);
        put(0x70, &[0x10, 0xb0, 0x02, 0x00, 0x00, 0x80, 0x00, 0x10]);
        put(0x82, &[0x11, 0x00]); // LnkSta
        put(0xb0, &[0x11, 0xd0, 0x09, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00]);
        put(0xd0, &[0x03, 0x00]);
        put(0x100, &[0x01, 0x00, 0x02, 0x14]);
        put(0x140, &[0x10, 0x00, 0x01, 0x00]);
        let none = |index| HostResource { index, start: 0, end: 0, flags: 0 };
        let res = vec![mem(0, 0xfe00_0000, 0x2_0000, 0), none(1), none(2), mem(3, 0xfe02_0000, 0x4000, 0)];
        MemHost::new(Sbdf::new(0, 3, 0, 0), c, res, 17)
    }

    fn filter(h: &MemHost, permissive: bool) -> ConfigFilter {
        ConfigFilter::build(h, &FilterOptions { name: "pt".into(), permissive, multifunction: false }).expect("build")
    }

    #[test]
    fn chains_are_rebuilt_without_hidden_caps() {
        let h = host();
        let mut f = filter(&h, false);
        let view = f.guest_view(&h);
        let s = walk_standard(&view);
        assert!(s.is_clean(), "{:?}", s.problems);
        let ids: Vec<u16> = s.caps.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![u16::from(id::PM), u16::from(id::MSI), u16::from(id::EXP), u16::from(id::MSIX)]);
        let e = walk_extended(&view);
        assert_eq!(e.caps.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ext_id::AER]);
        assert_eq!(view[0xd0], 0, "hidden VPD reads 0");
        assert!(f.layout().caps.iter().any(|c| c.name == "SR-IOV" && c.guest_off.is_none()));
    }

    fn apply(h: &MemHost, w: &FilterWrite) {
        for x in &w.host {
            h.config_write(x.off, &x.val.to_le_bytes()[..usize::from(x.size)]).expect("write");
        }
    }

    #[test]
    fn command_decode_bits_stay_virtual() {
        let h = host();
        let mut f = filter(&h, false);
        let w = f.write(&h, 0x04, 2, 0x0000);
        // Clearing MEM/IO is emulated; bus master (host bit 2) goes to the device.
        assert_eq!(w.host, vec![HostWrite { off: 4, size: 1, val: 0x02 }], "only the byte with bus master");
        apply(&h, &w);
        let w = f.write(&h, 0x04, 2, 0xf807);
        assert_eq!(w.dropped, 0xf800, "reserved bits dropped");
        assert_eq!(w.host, vec![HostWrite { off: 4, size: 1, val: 0x06 }], "only bus master set");
        apply(&h, &w);
        let w = f.write(&h, 0x04, 2, 0x0404);
        assert_eq!(w.dropped, 0);
        assert_eq!(f.function().config().command() & 0x0403, 0x0400, "INTx disable emulated");
    }

    #[test]
    fn permissive_passes_reserved_bits() {
        let h = host();
        let mut f = filter(&h, true);
        let w = f.write(&h, 0x04, 2, 0x0906);
        assert_eq!(w.permissive, 0x0800);
        assert_eq!(w.host, vec![HostWrite { off: 4, size: 2, val: 0x0906 & 0xf8bc | 0x0102 & !0xf8bc }]);
        let w = f.write(&h, 0xd0, 1, 0xff);
        assert!(w.host.is_empty(), "hidden capabilities are never written, even permissive");
    }

    #[test]
    fn status_error_bits_clear_on_the_device_only_when_asked() {
        let h = host();
        h.state().lock().unwrap().config[6..8].copy_from_slice(&0x4810u16.to_le_bytes());
        let mut f = filter(&h, false);
        let w = f.write(&h, 0x06, 2, 0x0800);
        assert_eq!(w.host, vec![HostWrite { off: 7, size: 1, val: 0x08 }], "only bit 11 is written as 1");
        assert_eq!(w.dropped, 0, "RO bits written 0 are not an error");
        let w = f.write(&h, 0x06, 2, 0x0000);
        assert!(w.host.is_empty(), "writing zeros clears nothing");
    }

    #[test]
    fn pcie_devctl_is_emulated_and_lnksta_live() {
        let h = host();
        let mut f = filter(&h, false);
        let w = f.write(&h, 0x78, 2, 0x000f);
        assert!(w.host.is_empty(), "error reporting enables never reach the device");
        assert_eq!(f.read(&h, 0x78, 2) & 0xf, 0xf);
        h.state().lock().unwrap().config[0x82] = 0x22;
        assert_eq!(f.read(&h, 0x82, 1), 0x22, "link status is live");
        assert_eq!(f.read(&h, 0x74, 4) & (1 << 28), 0, "FLR hidden");
    }

    #[test]
    fn unknown_bytes_are_read_through_but_not_written() {
        let h = host();
        h.state().lock().unwrap().config[0xe0] = 0x5a;
        let mut f = filter(&h, false);
        assert_eq!(f.read(&h, 0xe0, 1), 0x5a);
        let w = f.write(&h, 0xe0, 1, 0x00);
        assert!(w.host.is_empty());
        assert_eq!(w.dropped, 0x5a);
    }

    #[test]
    fn failed_device_reads_are_all_ones_and_block_writes() {
        let h = host();
        let mut f = filter(&h, false);
        h.state().lock().unwrap().gone = true;
        assert_eq!(f.read(&h, 0x06, 2) & 0xffa8, 0xffa8);
        let w = f.write(&h, 0x04, 2, 0x0004);
        assert!(w.host.is_empty());
    }

    #[test]
    fn bridges_and_ports_are_refused() {
        let h = host();
        h.state().lock().unwrap().config[0x0e] = 0x01;
        let e = ConfigFilter::build(&h, &FilterOptions::default()).expect_err("bridge");
        assert!(e.to_string().contains("header type 0x01"), "{e}");
        let h = host();
        h.state().lock().unwrap().config[0x72] = 0x42;
        let e = ConfigFilter::build(&h, &FilterOptions::default()).expect_err("port");
        assert!(e.to_string().contains("type 4"), "{e}");
    }

    #[test]
    fn odd_bars_are_refused_with_their_values() {
        let r = vec![HostResource { index: 0, start: 0xfe00_0000, end: 0xfe00_2fff, flags: ioresource::MEM }];
        let e = host_bars(Sbdf::new(0, 1, 0, 0), &r).expect_err("not a power of two");
        assert!(e.to_string().contains("0xfe002fff"), "{e}");
        let r = vec![HostResource { index: 0, start: u64::MAX - 0xfff, end: u64::MAX, flags: ioresource::MEM }];
        let e = host_bars(Sbdf::new(0, 1, 0, 0), &r).expect_err("top of the address space");
        assert!(e.to_string().contains("physical address space"), "{e}");
    }
}
