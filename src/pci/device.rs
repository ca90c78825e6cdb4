//! The [`PciDevice`] trait every emulated function implements, the side effects it hands back as
//! data ([`PciEffect`]), and [`GenericFunction`]: a complete function (header, BARs, capabilities,
//! MSI/MSI-X, INTx) built from a [`FunctionSpec`], which devices embed.
//!
//! A config write goes through the masks ([`ConfigSpace::write`]), then the function derives what
//! changed: BAR map/unmap changes if the write touched Command or a BAR, pending MSI/MSI-X
//! vectors that became deliverable, and the INTx line level. The owner (bus/machine) turns
//! [`PciEffect`]s into [`crate::device::Effect`]s and its own range maps.
//!
//! Interrupt rules of [`GenericFunction`]:
//! - [`GenericFunction::signal_msi`] uses MSI-X if enabled, else MSI if enabled, else nothing (the
//!   caller uses INTx). Messages are dropped while Command.BUS_MASTER is clear (an MSI is a memory
//!   write by the function; QEMU drops it the same way).
//! - The INTx line driven is `level && !Command.INTX_DISABLE && !MSI.enable && !MSI-X.enable`
//!   (a function using MSI/MSI-X must not assert INTx); Status.INTERRUPT shows the raw level.
//!   An [`PciEffect::Intx`] is emitted only when the driven level changes.

use std::any::Any;

use thiserror::Error;

use crate::pci::bar::{BarChange, BarError, BarKind, BarSet, BarSpec};
use crate::pci::caps::{CapBlock, CapChainBuilder, CapError, CapId, CapSpace, PlacedCap};
use crate::pci::config::{
    cmd, header_regs, status, Access, ConfigError, ConfigKind, ConfigSpace, HeaderIds, HeaderType, IntxPin, ResetKind,
};
use crate::pci::msi::{Msi, MsiConfig, MsiError, MsiMessage};
use crate::pci::msix::{Msix, MsixConfig, MsixError};
use crate::pci::Sbdf;

/// A side effect of a PCI function access, for the owner to apply.
///
/// More kinds (hot-plug events, AER messages) will be added as ports and passthrough land, so it
/// is deliberately not `Copy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PciEffect {
    /// A BAR started or stopped decoding.
    Bar(BarChange),
    /// Deliver an MSI/MSI-X message.
    Msi {
        /// Address.
        addr: u64,
        /// Data.
        data: u32,
    },
    /// The function's INTx line changed level (before any bridge swizzle).
    Intx {
        /// The function's pin.
        pin: IntxPin,
        /// Asserted.
        level: bool,
    },
    /// A chipset-level change the board must act on (MMCONFIG window, interrupt routing, ...).
    Platform(PlatformEvent),
    /// A hot-plug port asks the board to act on what is below it.
    Port(PortEvent),
}

/// What a PCIe port's slot asks the board to do with the card below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortEvent {
    /// Slot power changed: `false` makes the functions below inaccessible (and resets them).
    Power(bool),
    /// The guest released a card whose removal was requested: detach it now.
    DetachReady,
}

/// What a function did with an AER message coming from below (or from itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AerHop {
    /// Not a PCI Express port: the walk ends.
    NotPort,
    /// A port that did not forward it (gated by its enables).
    Stopped,
    /// A switch port that forwarded it upwards.
    Forward,
    /// A root port that received it (Root Error Status updated, interrupt sent if enabled).
    Delivered,
}

/// Chipset events raised by board devices (MCH, LPC) through their config space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlatformEvent {
    /// The MMCONFIG (ECAM) window: `Some((base, size))` when enabled, `None` when disabled.
    Ecam(Option<(u64, u64)>),
    /// A PIRQ routing register changed: PIRQ index 0-7 (A-H), ISA IRQ or `None` when disabled.
    PirqRoute {
        /// PIRQ index (0 = PIRQA).
        pirq: u8,
        /// Routed ISA IRQ.
        irq: Option<u8>,
    },
    /// The ACPI PM I/O block moved: base port when decoding, `None` when off; SCI IRQ.
    PmIo {
        /// Base port of the 128-byte PM block.
        base: Option<u16>,
        /// SCI interrupt.
        sci_irq: u8,
    },
    /// The chipset configuration block (RCBA) moved: base when enabled.
    Rcba(Option<u64>),
}

impl From<BarChange> for PciEffect {
    fn from(c: BarChange) -> Self {
        PciEffect::Bar(c)
    }
}

impl From<MsiMessage> for PciEffect {
    fn from(m: MsiMessage) -> Self {
        PciEffect::Msi { addr: m.addr, data: m.data }
    }
}

/// Effects of one access, in order (BAR unmaps before maps, then messages, then INTx).
pub type PciEffects = Vec<PciEffect>;

/// A PCI function a bus can host. Every method has a default delegating to the embedded
/// [`GenericFunction`] except the accessors and downcasting helpers.
pub trait PciDevice: Any + Send {
    /// The embedded function.
    fn function(&self) -> &GenericFunction;
    /// The embedded function, mutably.
    fn function_mut(&mut self) -> &mut GenericFunction;
    /// Downcasting helper (`self`).
    fn as_any(&self) -> &dyn Any;
    /// Downcasting helper (`self`).
    fn as_any_mut(&mut self) -> &mut dyn Any;

    /// Name for logs.
    fn name(&self) -> &str {
        self.function().name()
    }
    /// Where the device would like to sit, if it cares.
    fn sbdf_hint(&self) -> Option<Sbdf> {
        self.function().sbdf_hint()
    }
    /// The config space.
    fn config(&self) -> &ConfigSpace {
        self.function().config()
    }
    /// A guest config read (all-ones for a bad access, which is logged).
    fn config_read(&mut self, off: u16, size: u8) -> u32 {
        self.function().config_read(off, size)
    }
    /// A guest config write; returns its effects.
    fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        self.function_mut().config_write(off, size, val)
    }
    /// A guest read of `size` bytes at `off` in BAR `bar` (index 0-5, or 6 for the ROM).
    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> u64 {
        self.function_mut().bar_read(bar, off, size)
    }
    /// A guest write to BAR `bar`; returns its effects.
    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        self.function_mut().bar_write(bar, off, size, val)
    }
    /// Resets the function; returns the effects (BAR unmaps, INTx deassert).
    fn reset(&mut self, kind: ResetKind) -> PciEffects {
        self.function_mut().reset(kind)
    }
    /// Injects AER errors into this function (`pcie_aer_inject_error`); functions without an
    /// AER capability refuse.
    fn aer_inject(
        &mut self,
        _errors: &[crate::pcie::aer::AerErrorSpec],
        _source_id: u16,
    ) -> Result<crate::pcie::aer::InjectOutcome, crate::pcie::aer::AerInjectError> {
        Err(crate::pcie::aer::AerInjectError::NoAer { function: self.name().to_string() })
    }
    /// An AER message arriving from the secondary side (or, `from_self`, raised by this port);
    /// interrupt effects go to `fx`.
    fn aer_receive(&mut self, _msg: &crate::pcie::aer::AerMessage, _from_self: bool, _fx: &mut PciEffects) -> AerHop {
        AerHop::NotPort
    }
    /// Called once by the topology right after the function was added to a bus: `root_intx` is
    /// the root-bus device number and pin its INTx pin arrives at after the bridge swizzles
    /// (`None` without a pin). Functions whose interrupts the hypervisor delivers itself
    /// (passthrough: `XEN_DOMCTL_bind_pt_irq` needs the guest device and pin) act on it; the
    /// default does nothing.
    fn placed(&mut self, _root_intx: Option<(u8, IntxPin)>) {}
    /// The function's state for `xen-save-devices-state` (config space, MSI-X table, INTx level,
    /// plus whatever the device adds).
    fn save_state(&self) -> Vec<u8> {
        self.function().save_state()
    }
    /// Restores [`PciDevice::save_state`] output and re-derives everything from it (BAR
    /// decode, chipset windows); returns the effects of the new state.
    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, crate::state::StateError> {
        self.function_mut().load_state(data)
    }
}

/// Where a capability goes, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapSource {
    /// MSI (live logic provided by [`GenericFunction`]).
    Msi(MsiConfig),
    /// MSI-X (live logic provided by [`GenericFunction`]; table/PBA served from its BARs).
    Msix(MsixConfig),
    /// Any other capability (standard or extended by its [`CapId`]); the embedding device
    /// implements its behaviour.
    Block(CapBlock),
}

/// A capability request: fixed offset or automatic placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapRequest {
    /// Fixed offset, or `None` for the lowest free spot.
    pub at: Option<u16>,
    /// What.
    pub cap: CapSource,
}

/// Everything needed to build a [`GenericFunction`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Name for logs.
    pub name: String,
    /// Preferred address.
    pub sbdf_hint: Option<Sbdf>,
    /// IDs and class.
    pub ids: HeaderIds,
    /// Header type (type 1 leaves the bridge registers RO 0 for the bridge code to open).
    pub header_type: HeaderType,
    /// Multi-function bit.
    pub multifunction: bool,
    /// Conventional (256 bytes) or Express (4 KiB).
    pub kind: ConfigKind,
    /// BARs (including the ROM as [`crate::pci::bar::ROM_BAR`]).
    pub bars: Vec<BarSpec>,
    /// INTx pin, if any.
    pub intx_pin: Option<IntxPin>,
    /// Capabilities. Chain order: fixed-offset ones first, then auto-placed ones, each group in
    /// this order (the extended chain always starts at 0x100).
    pub caps: Vec<CapRequest>,
}

impl FunctionSpec {
    /// A type-0, conventional, single-function spec with no BARs, pin or capabilities.
    pub fn new(name: impl Into<String>, ids: HeaderIds) -> Self {
        FunctionSpec {
            name: name.into(),
            sbdf_hint: None,
            ids,
            header_type: HeaderType::Type0,
            multifunction: false,
            kind: ConfigKind::Conventional,
            bars: Vec::new(),
            intx_pin: None,
            caps: Vec::new(),
        }
    }
    /// Makes it a PCI Express (4 KiB config) function.
    pub fn express(mut self) -> Self {
        self.kind = ConfigKind::Express;
        self
    }
    /// Sets the header type.
    pub fn header_type(mut self, h: HeaderType) -> Self {
        self.header_type = h;
        self
    }
    /// Sets the multi-function bit.
    pub fn multifunction(mut self) -> Self {
        self.multifunction = true;
        self
    }
    /// Sets the preferred address.
    pub fn sbdf_hint(mut self, sbdf: Sbdf) -> Self {
        self.sbdf_hint = Some(sbdf);
        self
    }
    /// Adds a BAR.
    pub fn bar(mut self, b: BarSpec) -> Self {
        self.bars.push(b);
        self
    }
    /// Sets the INTx pin.
    pub fn intx(mut self, pin: IntxPin) -> Self {
        self.intx_pin = Some(pin);
        self
    }
    /// Adds MSI (auto-placed unless `at`).
    pub fn msi(mut self, config: MsiConfig, at: Option<u16>) -> Self {
        self.caps.push(CapRequest { at, cap: CapSource::Msi(config) });
        self
    }
    /// Adds MSI-X (auto-placed unless `at`).
    pub fn msix(mut self, config: MsixConfig, at: Option<u16>) -> Self {
        self.caps.push(CapRequest { at, cap: CapSource::Msix(config) });
        self
    }
    /// Adds another capability (auto-placed unless `at`).
    pub fn cap(mut self, block: CapBlock, at: Option<u16>) -> Self {
        self.caps.push(CapRequest { at, cap: CapSource::Block(block) });
        self
    }
}

/// Errors building a function.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// Device-specific construction failure.
    #[error("{name}: {why}")]
    Other {
        /// Function name.
        name: String,
        /// What went wrong.
        why: String,
    },
    /// Config space setup failed.
    #[error("{name}: {source}")]
    Config {
        /// Function name.
        name: String,
        /// Cause.
        source: ConfigError,
    },
    /// A capability could not be placed.
    #[error("{name}: {source}")]
    Cap {
        /// Function name.
        name: String,
        /// Cause.
        source: CapError,
    },
    /// The BAR layout is invalid.
    #[error("{name}: {source}")]
    Bar {
        /// Function name.
        name: String,
        /// Cause.
        source: BarError,
    },
    /// The MSI configuration is invalid.
    #[error("{name}: {source}")]
    Msi {
        /// Function name.
        name: String,
        /// Cause.
        source: MsiError,
    },
    /// The MSI-X configuration is invalid.
    #[error("{name}: {source}")]
    Msix {
        /// Function name.
        name: String,
        /// Cause.
        source: MsixError,
    },
    /// MSI or MSI-X requested twice.
    #[error("{name}: {what} requested twice")]
    Duplicate {
        /// Function name.
        name: String,
        /// "MSI" or "MSI-X".
        what: &'static str,
    },
    /// The MSI-X table or PBA names an unusable BAR.
    #[error("{name}: MSI-X {what} is in BAR {bar}, which {why}")]
    MsixBar {
        /// Function name.
        name: String,
        /// "table" or "PBA".
        what: &'static str,
        /// BAR index.
        bar: u8,
        /// Reason.
        why: &'static str,
    },
    /// The MSI-X table or PBA does not fit in its BAR.
    #[error("{name}: MSI-X {what} ends at {end:#x}, beyond BAR {bar} of {size:#x} bytes")]
    MsixOutsideBar {
        /// Function name.
        name: String,
        /// "table" or "PBA".
        what: &'static str,
        /// BAR index.
        bar: u8,
        /// End offset.
        end: u64,
        /// BAR size.
        size: u64,
    },
}

/// How the function currently signals interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqMode {
    /// MSI-X enabled.
    Msix,
    /// MSI enabled.
    Msi,
    /// Neither: INTx (if the function has a pin).
    Intx,
}

/// A complete PCI function: config space with the standard header, BARs, capabilities, MSI and
/// MSI-X, INTx. Implements [`PciDevice`] itself; devices embed it and override what they need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenericFunction {
    name: String,
    sbdf_hint: Option<Sbdf>,
    cfg: ConfigSpace,
    bars: BarSet,
    msi: Option<Msi>,
    msix: Option<Msix>,
    caps: Vec<PlacedCap>,
    intx_pin: Option<IntxPin>,
    intx_level: bool,
    intx_out: bool,
}

fn check_msix_bar(
    name: &str,
    bars: &BarSet,
    what: &'static str,
    bar: u8,
    start: u32,
    len: u64,
) -> Result<(), DeviceError> {
    let err = |why| DeviceError::MsixBar { name: name.to_string(), what, bar, why };
    let spec = bars.spec(bar).ok_or_else(|| err("is not implemented"))?;
    if !matches!(spec.kind, BarKind::Mem32 { .. } | BarKind::Mem64 { .. }) {
        return Err(err("is not a memory BAR"));
    }
    let end = u64::from(start) + len;
    if end > spec.size {
        return Err(DeviceError::MsixOutsideBar { name: name.to_string(), what, bar, end, size: spec.size });
    }
    Ok(())
}

impl GenericFunction {
    /// Builds the function: header, BARs, then capabilities (see [`FunctionSpec::caps`]).
    pub fn new(spec: FunctionSpec) -> Result<Self, DeviceError> {
        let name = spec.name;
        let cfg_err = |source| DeviceError::Config { name: name.clone(), source };
        let cap_err = |source| DeviceError::Cap { name: name.clone(), source };
        let mut cfg = ConfigSpace::new(spec.kind);
        cfg.apply_table(0, &header_regs(&spec.ids, spec.header_type, spec.multifunction, spec.intx_pin))
            .map_err(cfg_err)?;
        let bars = BarSet::new(spec.header_type, &spec.bars)
            .map_err(|source| DeviceError::Bar { name: name.clone(), source })?;
        bars.install(&mut cfg).map_err(|source| DeviceError::Bar { name: name.clone(), source })?;

        let mut std = CapChainBuilder::standard();
        let mut ext = CapChainBuilder::extended();
        let (mut msi, mut msix) = (None, None);
        let (fixed, auto): (Vec<_>, Vec<_>) = spec.caps.into_iter().partition(|r| r.at.is_some());
        for req in fixed.into_iter().chain(auto) {
            let (block, space) = match &req.cap {
                CapSource::Msi(c) => {
                    if msi.is_some() {
                        return Err(DeviceError::Duplicate { name: name.clone(), what: "MSI" });
                    }
                    (
                        c.cap_block().map_err(|source| DeviceError::Msi { name: name.clone(), source })?,
                        CapSpace::Standard,
                    )
                }
                CapSource::Msix(c) => {
                    if msix.is_some() {
                        return Err(DeviceError::Duplicate { name: name.clone(), what: "MSI-X" });
                    }
                    let block = c.cap_block().map_err(|source| DeviceError::Msix { name: name.clone(), source })?;
                    check_msix_bar(&name, &bars, "table", c.table_bar, c.table_offset, c.table_len())?;
                    check_msix_bar(&name, &bars, "PBA", c.pba_bar, c.pba_offset, c.pba_len())?;
                    (block, CapSpace::Standard)
                }
                CapSource::Block(b) => (b.clone(), b.id.space()),
            };
            let builder = if space == CapSpace::Standard { &mut std } else { &mut ext };
            let off = match req.at {
                Some(at) => builder.add_at(at, block),
                None => builder.add(block),
            }
            .map_err(cap_err)?;
            match req.cap {
                CapSource::Msi(c) => {
                    msi = Some(Msi::new(off, c).map_err(|source| DeviceError::Msi { name: name.clone(), source })?);
                }
                CapSource::Msix(c) => {
                    msix = Some(Msix::new(off, c).map_err(|source| DeviceError::Msix { name: name.clone(), source })?);
                }
                CapSource::Block(_) => {}
            }
        }
        let mut caps = std.install(&mut cfg).map_err(cap_err)?;
        caps.extend(ext.install(&mut cfg).map_err(cap_err)?);
        Ok(GenericFunction {
            name,
            sbdf_hint: spec.sbdf_hint,
            cfg,
            bars,
            msi,
            msix,
            caps,
            intx_pin: spec.intx_pin,
            intx_level: false,
            intx_out: false,
        })
    }

    /// Name for logs.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Preferred address.
    pub fn sbdf_hint(&self) -> Option<Sbdf> {
        self.sbdf_hint
    }
    /// The config space.
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    /// The config space, for model-side changes (call [`GenericFunction::resync`] afterwards if
    /// they may affect BARs, Command or INTx).
    pub fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    /// The BARs and their current mappings.
    pub fn bars(&self) -> &BarSet {
        &self.bars
    }
    /// The MSI capability, if any.
    pub fn msi(&self) -> Option<&Msi> {
        self.msi.as_ref()
    }
    /// The MSI-X state, if any.
    pub fn msix(&self) -> Option<&Msix> {
        self.msix.as_ref()
    }
    /// Capabilities as placed (standard chain, then extended chain).
    pub fn caps(&self) -> &[PlacedCap] {
        &self.caps
    }
    /// Offset of the first capability with `id`.
    pub fn find_cap(&self, id: CapId) -> Option<u16> {
        self.caps.iter().find(|c| c.id == id).map(|c| c.off)
    }
    /// The INTx pin, if any.
    pub fn intx_pin(&self) -> Option<IntxPin> {
        self.intx_pin
    }
    /// The INTx level currently driven (after gating).
    pub fn intx_output(&self) -> bool {
        self.intx_out
    }

    /// How interrupts are signalled right now.
    pub fn irq_mode(&self) -> IrqMode {
        if self.msix.as_ref().is_some_and(|m| m.enabled(&self.cfg)) {
            IrqMode::Msix
        } else if self.msi.as_ref().is_some_and(|m| m.enabled(&self.cfg)) {
            IrqMode::Msi
        } else {
            IrqMode::Intx
        }
    }

    fn push_messages(&self, msgs: Vec<MsiMessage>, fx: &mut PciEffects) {
        if msgs.is_empty() {
            return;
        }
        if self.cfg.command() & cmd::BUS_MASTER == 0 {
            log::debug!("{}: {} MSI message(s) dropped: bus mastering disabled", self.name, msgs.len());
            return;
        }
        fx.extend(msgs.into_iter().map(PciEffect::from));
    }

    fn update_intx(&mut self, fx: &mut PciEffects) {
        let Some(pin) = self.intx_pin else {
            return;
        };
        let gated = self.cfg.command() & cmd::INTX_DISABLE != 0 || self.irq_mode() != IrqMode::Intx;
        let out = self.intx_level && !gated;
        if out != self.intx_out {
            self.intx_out = out;
            fx.push(PciEffect::Intx { pin, level: out });
        }
    }

    /// A guest config read (all-ones for a bad access, which is logged, rate-limited).
    pub fn config_read(&self, off: u16, size: u8) -> u32 {
        let (v, access) = self.cfg.read(off, size);
        if let Access::Ignored(why) = access {
            crate::guest_warn!("{}: {why} ignored", self.name);
        }
        v
    }

    /// A guest config write: masks, then BAR changes, MSI/MSI-X deliveries and INTx level.
    pub fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
        if let Access::Ignored(why) = self.cfg.write(off, size, val) {
            crate::guest_warn!("{}: {why} ignored", self.name);
            return Vec::new();
        }
        let mut fx = Vec::new();
        if self.bars.touches(off, size) {
            fx.extend(self.bars.refresh(&self.cfg).into_iter().map(PciEffect::Bar));
        }
        let mut msgs = Vec::new();
        if let Some(msi) = self.msi.filter(|m| m.touches(off, size)) {
            msgs.extend(msi.deliver_pending(&mut self.cfg));
        }
        if let Some(msix) = self.msix.as_mut().filter(|m| m.touches_control(off, size)) {
            msgs.extend(msix.deliver_pending(&self.cfg));
        }
        self.push_messages(msgs, &mut fx);
        self.update_intx(&mut fx);
        fx
    }

    /// MSI-X table/PBA read, if `(bar, off)` falls in them.
    pub fn msix_bar_read(&self, bar: u8, off: u64, size: u8) -> Option<u64> {
        self.msix.as_ref()?.mmio_read(bar, off, size)
    }

    /// MSI-X table/PBA write, if `(bar, off)` falls in them.
    pub fn msix_bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> Option<PciEffects> {
        let msgs = self.msix.as_mut()?.mmio_write(&self.cfg, bar, off, size, val)?;
        let mut fx = Vec::new();
        self.push_messages(msgs, &mut fx);
        Some(fx)
    }

    /// A BAR read: MSI-X table/PBA if it hits them, otherwise all-ones (logged).
    pub fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> u64 {
        self.msix_bar_read(bar, off, size).unwrap_or_else(|| {
            crate::guest_warn!("{}: read of BAR {bar} offset {off:#x} size {size} hits nothing", self.name);
            crate::device::ones(size)
        })
    }

    /// A BAR write: MSI-X table/PBA if it hits them, otherwise dropped (logged).
    pub fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        self.msix_bar_write(bar, off, size, val).unwrap_or_else(|| {
            crate::guest_warn!("{}: write to BAR {bar} offset {off:#x} size {size} hits nothing", self.name);
            Vec::new()
        })
    }

    /// Signals interrupt `vector` by MSI-X if enabled, else MSI if enabled; returns the message
    /// effect (empty if masked, which sets the pending bit, or if neither is enabled, or if bus
    /// mastering is off).
    pub fn signal_msi(&mut self, vector: u16) -> PciEffects {
        let msg = match self.irq_mode() {
            IrqMode::Msix => self.msix.as_mut().and_then(|m| m.trigger(&self.cfg, vector)),
            IrqMode::Msi => {
                let v = u8::try_from(vector).ok();
                self.msi.and_then(|m| v.and_then(|v| m.trigger(&mut self.cfg, v)))
            }
            IrqMode::Intx => None,
        };
        let mut fx = Vec::new();
        self.push_messages(msg.into_iter().collect(), &mut fx);
        fx
    }

    /// Sets the function's INTx level (Status.INTERRUPT follows it); returns an
    /// [`PciEffect::Intx`] if the driven line changes.
    pub fn set_intx(&mut self, level: bool) -> PciEffects {
        self.intx_level = level;
        let (clear, set) = if level { (0, status::INTERRUPT) } else { (status::INTERRUPT, 0) };
        self.cfg.update_u16(crate::pci::config::reg::STATUS, clear, set);
        let mut fx = Vec::new();
        self.update_intx(&mut fx);
        fx
    }

    /// Re-derives BAR mappings and the INTx line after model-side config changes.
    pub fn resync(&mut self) -> PciEffects {
        let mut fx: PciEffects = self.bars.refresh(&self.cfg).into_iter().map(PciEffect::Bar).collect();
        self.update_intx(&mut fx);
        fx
    }

    /// Config space bytes, MSI-X table and PBA, INTx level.
    pub fn save_state(&self) -> Vec<u8> {
        let mut w = crate::state::Writer::default();
        let size = usize::from(self.cfg.size()).min(self.cfg.bytes().len());
        w.bytes(self.cfg.bytes().get(..size).unwrap_or(&[]));
        w.u8(u8::from(self.msix.is_some()));
        if let Some(m) = &self.msix {
            m.save(&mut w);
        }
        w.u8(u8::from(self.intx_level));
        w.buf
    }

    /// Restores [`GenericFunction::save_state`] output (the masks stay those of this build) and
    /// resynchronises BAR decode and INTx.
    pub fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, crate::state::StateError> {
        use crate::state::StateError;
        let mut r = crate::state::Reader::new(data);
        let bytes = r.bytes()?;
        if bytes.len() != usize::from(self.cfg.size()) {
            return Err(StateError::Mismatch(format!(
                "{}: config space of {} bytes here, {} in the blob",
                self.name,
                self.cfg.size(),
                bytes.len()
            )));
        }
        let has_msix = r.u8()? != 0;
        if has_msix != self.msix.is_some() {
            return Err(StateError::Mismatch(format!("{}: MSI-X presence differs", self.name)));
        }
        if let Some(m) = self.msix.as_mut() {
            m.load(&mut r)?;
        }
        let level = r.u8()? != 0;
        for (i, b) in bytes.iter().enumerate() {
            self.cfg.set_u8(i as u16, *b);
        }
        self.intx_level = level;
        Ok(self.resync())
    }

    /// Resets config space per `kind`, masks all MSI-X vectors, drops the INTx level; returns
    /// BAR unmaps and the INTx deassert, if any.
    pub fn reset(&mut self, kind: ResetKind) -> PciEffects {
        self.cfg.reset(kind);
        if let Some(m) = self.msix.as_mut() {
            m.reset();
        }
        self.intx_level = false;
        self.resync()
    }
}

impl PciDevice for GenericFunction {
    fn function(&self) -> &GenericFunction {
        self
    }
    fn function_mut(&mut self) -> &mut GenericFunction {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::bar::{BarMapping, ROM_BAR};
    use crate::pci::caps::{ext_id, id, walk_extended, walk_standard};
    use crate::pci::config::{reg, RegSpec};
    use crate::pci::msi::ctrl as msi_ctrl;
    use crate::pci::msix::ctrl as msix_ctrl;

    fn ids() -> HeaderIds {
        HeaderIds {
            vendor_id: 0x1b36,
            device_id: 0x0010,
            revision: 1,
            class_code: 0x01_08_02,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        }
    }

    fn nvme_like() -> GenericFunction {
        let spec = FunctionSpec::new("nvme0", ids())
            .express()
            .bar(BarSpec::mem64(0, 0x4000, false))
            .bar(BarSpec::mem32(2, 0x1000, false))
            .bar(BarSpec::io(4, 0x20))
            .bar(BarSpec::rom(0x8000))
            .intx(IntxPin::A)
            .msi(MsiConfig { vectors: 4, addr64: true, per_vector_mask: true }, None)
            .msix(MsixConfig { table_size: 4, table_bar: 2, table_offset: 0, pba_bar: 2, pba_offset: 0x800 }, None)
            .cap(CapBlock::ext(ext_id::DSN, 1, 0x0c).reg(RegSpec::ro(4, 4, 0xdead_beef)), None);
        GenericFunction::new(spec).expect("build")
    }

    fn w(f: &mut GenericFunction, off: u16, size: u8, val: u32) -> PciEffects {
        f.config_write(off, size, val)
    }

    fn msi_off(f: &GenericFunction) -> u16 {
        f.msi().map(Msi::offset).expect("msi")
    }

    fn msix_off(f: &GenericFunction) -> u16 {
        f.msix().map(Msix::offset).expect("msix")
    }

    #[test]
    fn generic_function_exposes_header_ids() {
        let mut f = nvme_like();
        assert_eq!(f.config_read(0, 4), 0x0010_1b36);
        assert_eq!(f.config_read(0x08, 4), 0x0108_0201);
        assert_eq!(f.config_read(0x2c, 4), 0x1100_1af4);
        assert_eq!(f.config_read(reg::INTERRUPT_PIN, 1), 1);
        assert_eq!(PciDevice::config_read(&mut f, 0x0e, 1), 0);
    }

    #[test]
    fn generic_function_caps_are_walkable() {
        let f = nvme_like();
        let s = walk_standard(f.config().bytes());
        assert!(s.is_clean());
        assert_eq!(s.caps.iter().map(|c| c.id).collect::<Vec<_>>(), vec![u16::from(id::MSI), u16::from(id::MSIX)]);
        let e = walk_extended(f.config().bytes());
        assert_eq!(e.find(ext_id::DSN), Some(0x100));
        assert_eq!(f.find_cap(CapId::Std(id::MSIX)), Some(msix_off(&f)));
    }

    #[test]
    fn generic_function_fixed_caps_keep_their_offsets() {
        let spec = FunctionSpec::new("f", ids())
            .msi(MsiConfig::default(), None)
            .cap(CapBlock::std(id::VENDOR, 8), Some(0x40))
            .msix(MsixConfig::exclusive_bar(2, 0), Some(0x80))
            .bar(BarSpec::mem32(0, 0x1000, false));
        let f = GenericFunction::new(spec).expect("build");
        assert_eq!(f.find_cap(CapId::Std(id::VENDOR)), Some(0x40));
        assert_eq!(f.find_cap(CapId::Std(id::MSIX)), Some(0x80));
        assert_eq!(f.find_cap(CapId::Std(id::MSI)), Some(0x48));
    }

    #[test]
    fn conventional_function_hides_extended_space() {
        let f = GenericFunction::new(FunctionSpec::new("f", ids())).expect("build");
        assert_eq!(f.config_read(0x100, 4), 0xffff_ffff);
        assert_eq!(f.config().size(), 256);
    }

    #[test]
    fn extended_cap_on_conventional_function_is_refused() {
        let spec = FunctionSpec::new("f", ids()).cap(CapBlock::ext(ext_id::AER, 2, 0x48), None);
        let e = GenericFunction::new(spec).expect_err("conventional");
        assert!(matches!(e, DeviceError::Cap { source: CapError::NeedsExpress { .. }, .. }), "{e:?}");
        assert!(e.to_string().starts_with("f: "), "{e}");
    }

    #[test]
    fn bad_config_access_is_ignored() {
        let mut f = nvme_like();
        assert_eq!(f.config_read(0x02, 3), 0xff_ffff);
        assert!(w(&mut f, reg::COMMAND, 8, 0xffff).is_empty());
        assert_eq!(f.config().command(), 0);
        assert_eq!(f.config_read(0x1000, 4), 0xffff_ffff);
    }

    #[test]
    fn command_memory_enable_maps_memory_bars() {
        let mut f = nvme_like();
        assert!(w(&mut f, 0x10, 4, 0xfe00_0000).is_empty(), "decode off: nothing");
        let _ = w(&mut f, 0x14, 4, 0);
        let _ = w(&mut f, 0x18, 4, 0xfe10_0000);
        let fx = w(&mut f, reg::COMMAND, 2, u32::from(cmd::MEMORY));
        assert_eq!(
            fx,
            vec![
                PciEffect::Bar(BarChange::Map(BarMapping {
                    bar: 0,
                    kind: BarKind::Mem64 { prefetchable: false },
                    addr: 0xfe00_0000,
                    size: 0x4000
                })),
                PciEffect::Bar(BarChange::Map(BarMapping {
                    bar: 2,
                    kind: BarKind::Mem32 { prefetchable: false },
                    addr: 0xfe10_0000,
                    size: 0x1000
                })),
            ]
        );
    }

    #[test]
    fn bar_move_while_decoding_unmaps_then_maps() {
        let mut f = nvme_like();
        let _ = w(&mut f, 0x20, 4, 0xc000);
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::IO));
        let fx = w(&mut f, 0x20, 4, 0xd000);
        let io = |addr| BarMapping { bar: 4, kind: BarKind::Io, addr, size: 0x20 };
        assert_eq!(fx, vec![PciEffect::Bar(BarChange::Unmap(io(0xc000))), PciEffect::Bar(BarChange::Map(io(0xd000)))]);
    }

    #[test]
    fn rom_enable_maps_rom() {
        let mut f = nvme_like();
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::MEMORY));
        let fx = w(&mut f, reg::ROM_ADDRESS, 4, 0xfeb0_0001);
        assert_eq!(
            fx,
            vec![PciEffect::Bar(BarChange::Map(BarMapping {
                bar: ROM_BAR,
                kind: BarKind::Rom,
                addr: 0xfeb0_0000,
                size: 0x8000
            }))]
        );
    }

    #[test]
    fn write_elsewhere_produces_no_bar_effects() {
        let mut f = nvme_like();
        let _ = w(&mut f, 0x18, 4, 0xfe10_0000);
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::MEMORY));
        assert!(w(&mut f, reg::INTERRUPT_LINE, 1, 11).is_empty());
    }

    #[test]
    fn reset_unmaps_bars() {
        let mut f = nvme_like();
        let _ = w(&mut f, 0x18, 4, 0xfe10_0000);
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::MEMORY));
        let fx = f.reset(ResetKind::Flr);
        assert!(matches!(fx.as_slice(), [PciEffect::Bar(BarChange::Unmap(m))] if m.addr == 0xfe10_0000), "{fx:?}");
        assert!(f.bars().mapped().is_empty());
        assert_eq!(f.config().get_u32(0x18), 0);
    }

    fn enable_msi(f: &mut GenericFunction, mme: u16) {
        let o = msi_off(f);
        let _ = w(f, o + 4, 4, 0xfee0_0000);
        let _ = w(f, o + 0xc, 2, 0x4020);
        let _ = w(f, o + 2, 2, u32::from(msi_ctrl::ENABLE | (mme << msi_ctrl::MME_SHIFT)));
    }

    #[test]
    fn signal_msi_sends_msi_message() {
        let mut f = nvme_like();
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::BUS_MASTER));
        enable_msi(&mut f, 2);
        assert_eq!(f.irq_mode(), IrqMode::Msi);
        assert_eq!(f.signal_msi(3), vec![PciEffect::Msi { addr: 0xfee0_0000, data: 0x4023 }]);
    }

    #[test]
    fn signal_msi_needs_bus_master() {
        let mut f = nvme_like();
        enable_msi(&mut f, 0);
        assert!(f.signal_msi(0).is_empty());
    }

    #[test]
    fn signal_msi_without_msi_or_msix_does_nothing() {
        let mut f = nvme_like();
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::BUS_MASTER));
        assert_eq!(f.irq_mode(), IrqMode::Intx);
        assert!(f.signal_msi(0).is_empty());
    }

    #[test]
    fn msi_pending_is_delivered_by_unmasking_config_write() {
        let mut f = nvme_like();
        let _ = w(&mut f, reg::COMMAND, 2, u32::from(cmd::BUS_MASTER));
        enable_msi(&mut f, 0);
        let o = msi_off(&f);
        let _ = w(&mut f, o + 0x10, 4, 1);
        assert!(f.signal_msi(0).is_empty());
        let fx = w(&mut f, o + 0x10, 4, 0);
        assert_eq!(fx, vec![PciEffect::Msi { addr: 0xfee0_0000, data: 0x4020 }]);
        assert!(w(&mut f, o + 0x10, 4, 0).is_empty(), "delivered once");
    }

    fn enable_msix(f: &mut GenericFunction, ctl: u16) {
        let o = msix_off(f);
        let _ = w(f, reg::COMMAND, 2, u32::from(cmd::BUS_MASTER | cmd::MEMORY));
        let _ = w(f, o + 2, 2, u32::from(ctl));
    }

    #[test]
    fn msix_table_is_served_from_its_bar() {
        let mut f = nvme_like();
        assert!(f.bar_write(2, 0x10, 8, 0x0000_0000_fee0_2000).is_empty());
        assert_eq!(f.bar_read(2, 0x10, 4), 0xfee0_2000);
        assert_eq!(f.bar_read(2, 0x1c, 4), 1, "still masked");
        assert_eq!(f.bar_read(2, 0x800, 8), 0, "PBA");
        assert_eq!(f.bar_read(2, 0x400, 4), 0xffff_ffff, "between table and PBA: nothing");
        assert_eq!(f.bar_read(0, 0, 4), 0xffff_ffff, "other BAR: nothing");
    }

    #[test]
    fn msix_takes_priority_over_msi() {
        let mut f = nvme_like();
        enable_msi(&mut f, 0);
        enable_msix(&mut f, msix_ctrl::ENABLE);
        assert_eq!(f.irq_mode(), IrqMode::Msix);
        let _ = f.bar_write(2, 0, 8, 0xfee0_3000);
        let _ = f.bar_write(2, 8, 8, 0x77);
        assert_eq!(f.signal_msi(0), vec![PciEffect::Msi { addr: 0xfee0_3000, data: 0x77 }]);
    }

    #[test]
    fn msix_unmask_via_bar_write_delivers_pending() {
        let mut f = nvme_like();
        enable_msix(&mut f, msix_ctrl::ENABLE);
        let _ = f.bar_write(2, 0x10, 8, 0xfee0_1000);
        let _ = f.bar_write(2, 0x18, 4, 0x55);
        assert!(f.signal_msi(1).is_empty(), "masked → pending");
        assert_eq!(f.bar_read(2, 0x800, 8), 0b10);
        assert_eq!(f.bar_write(2, 0x1c, 4, 0), vec![PciEffect::Msi { addr: 0xfee0_1000, data: 0x55 }]);
        assert_eq!(f.bar_read(2, 0x800, 8), 0);
    }

    #[test]
    fn msix_function_unmask_via_config_write_delivers_pending() {
        let mut f = nvme_like();
        enable_msix(&mut f, msix_ctrl::ENABLE | msix_ctrl::FUNCTION_MASK);
        let _ = f.bar_write(2, 0, 8, 0xfee0_0000);
        let _ = f.bar_write(2, 8, 8, 0x21);
        assert!(f.signal_msi(0).is_empty());
        let o = msix_off(&f);
        let fx = w(&mut f, o + 2, 2, u32::from(msix_ctrl::ENABLE));
        assert_eq!(fx, vec![PciEffect::Msi { addr: 0xfee0_0000, data: 0x21 }]);
    }

    #[test]
    fn reset_masks_msix_table() {
        let mut f = nvme_like();
        let _ = f.bar_write(2, 0xc, 4, 0);
        let _ = f.reset(ResetKind::Hot);
        assert_eq!(f.bar_read(2, 0xc, 4), 1);
    }

    #[test]
    fn intx_assert_and_deassert_emit_effects() {
        let mut f = nvme_like();
        assert_eq!(f.set_intx(true), vec![PciEffect::Intx { pin: IntxPin::A, level: true }]);
        assert!(f.set_intx(true).is_empty(), "no change, no effect");
        assert_eq!(f.set_intx(false), vec![PciEffect::Intx { pin: IntxPin::A, level: false }]);
    }

    #[test]
    fn status_interrupt_bit_follows_level() {
        let mut f = nvme_like();
        let _ = f.set_intx(true);
        assert_ne!(f.config().status() & status::INTERRUPT, 0);
        let _ = f.set_intx(false);
        assert_eq!(f.config().status() & status::INTERRUPT, 0);
    }

    #[test]
    fn intx_disable_gates_the_line() {
        let mut f = nvme_like();
        let _ = f.set_intx(true);
        let fx = w(&mut f, reg::COMMAND, 2, u32::from(cmd::INTX_DISABLE));
        assert_eq!(fx, vec![PciEffect::Intx { pin: IntxPin::A, level: false }]);
        assert_ne!(f.config().status() & status::INTERRUPT, 0, "status still shows the level");
        let fx = w(&mut f, reg::COMMAND, 2, 0);
        assert_eq!(fx, vec![PciEffect::Intx { pin: IntxPin::A, level: true }]);
    }

    #[test]
    fn intx_suppressed_while_msi_enabled() {
        let mut f = nvme_like();
        enable_msi(&mut f, 0);
        assert!(f.set_intx(true).is_empty());
        assert!(!f.intx_output());
    }

    #[test]
    fn enabling_msi_deasserts_intx() {
        let mut f = nvme_like();
        let _ = f.set_intx(true);
        let o = msi_off(&f);
        let fx = w(&mut f, o + 2, 2, u32::from(msi_ctrl::ENABLE));
        assert_eq!(fx, vec![PciEffect::Intx { pin: IntxPin::A, level: false }]);
        let fx = w(&mut f, o + 2, 2, 0);
        assert_eq!(fx, vec![PciEffect::Intx { pin: IntxPin::A, level: true }], "level still held");
    }

    #[test]
    fn msix_in_upper_half_of_64bit_bar_is_refused() {
        let spec = FunctionSpec::new("f", ids())
            .bar(BarSpec::mem64(0, 0x1000, false))
            .msix(MsixConfig::exclusive_bar(1, 1), None);
        let e = GenericFunction::new(spec).expect_err("upper half");
        assert!(matches!(e, DeviceError::MsixBar { bar: 1, why: "is not implemented", .. }), "{e:?}");
    }

    #[test]
    fn msix_in_64bit_bar_is_accepted() {
        let spec = FunctionSpec::new("f", ids())
            .bar(BarSpec::mem64(2, 0x1000, true))
            .msix(MsixConfig::exclusive_bar(8, 2), None);
        let mut f = GenericFunction::new(spec).expect("build");
        assert_eq!(f.bar_read(2, 0xc, 4), 1);
    }

    #[test]
    fn effects_convert_from_bar_changes_and_messages() {
        let m = BarMapping { bar: 0, kind: BarKind::Io, addr: 0xc000, size: 4 };
        assert_eq!(PciEffect::from(BarChange::Map(m)), PciEffect::Bar(BarChange::Map(m)));
        assert_eq!(PciEffect::from(MsiMessage { addr: 1, data: 2 }), PciEffect::Msi { addr: 1, data: 2 });
    }

    #[test]
    fn function_without_pin_never_drives_intx() {
        let mut f = GenericFunction::new(FunctionSpec::new("f", ids())).expect("build");
        assert!(f.set_intx(true).is_empty());
    }

    #[test]
    fn reset_deasserts_intx() {
        let mut f = nvme_like();
        let _ = f.set_intx(true);
        assert_eq!(f.reset(ResetKind::Cold), vec![PciEffect::Intx { pin: IntxPin::A, level: false }]);
        assert_eq!(f.config().status() & status::INTERRUPT, 0);
    }

    #[test]
    fn resync_after_model_side_change_reports_mapping() {
        let mut f = nvme_like();
        f.config_mut().set_u32(0x18, 0xfe20_0000);
        f.config_mut().set_u16(reg::COMMAND, cmd::MEMORY);
        let fx = f.resync();
        assert!(matches!(fx.as_slice(), [PciEffect::Bar(BarChange::Map(m))] if m.addr == 0xfe20_0000), "{fx:?}");
    }

    #[test]
    fn msix_in_missing_bar_is_refused() {
        let spec = FunctionSpec::new("f", ids()).msix(MsixConfig::exclusive_bar(1, 3), None);
        let e = GenericFunction::new(spec).expect_err("bar");
        assert!(matches!(e, DeviceError::MsixBar { bar: 3, what: "table", .. }), "{e:?}");
    }

    #[test]
    fn msix_in_io_bar_is_refused() {
        let spec = FunctionSpec::new("f", ids()).bar(BarSpec::io(0, 0x100)).msix(MsixConfig::exclusive_bar(1, 0), None);
        let e = GenericFunction::new(spec).expect_err("io");
        assert!(e.to_string().contains("not a memory BAR"), "{e}");
    }

    #[test]
    fn msix_pba_outside_bar_is_refused() {
        let spec = FunctionSpec::new("f", ids())
            .bar(BarSpec::mem32(0, 0x800, false))
            .msix(MsixConfig::exclusive_bar(1, 0), None);
        let e = GenericFunction::new(spec).expect_err("outside");
        assert!(matches!(e, DeviceError::MsixOutsideBar { what: "PBA", end: 0x808, size: 0x800, .. }), "{e:?}");
    }

    #[test]
    fn duplicate_msi_is_refused() {
        let spec = FunctionSpec::new("f", ids()).msi(MsiConfig::default(), None).msi(MsiConfig::default(), None);
        assert!(matches!(GenericFunction::new(spec), Err(DeviceError::Duplicate { what: "MSI", .. })));
    }

    #[test]
    fn bad_bar_layout_is_refused() {
        let spec = FunctionSpec::new("f", ids()).bar(BarSpec::mem32(0, 0x1001, false));
        assert!(matches!(GenericFunction::new(spec), Err(DeviceError::Bar { .. })));
    }

    #[test]
    fn overlapping_fixed_caps_are_refused() {
        let spec = FunctionSpec::new("f", ids())
            .cap(CapBlock::std(id::VENDOR, 0x10), Some(0x40))
            .msi(MsiConfig::default(), Some(0x48));
        assert!(matches!(GenericFunction::new(spec), Err(DeviceError::Cap { source: CapError::Overlap { .. }, .. })));
    }

    #[test]
    fn type1_function_has_bridge_header_type() {
        let spec = FunctionSpec::new("rp", ids()).express().header_type(HeaderType::Type1).multifunction();
        let f = GenericFunction::new(spec).expect("build");
        assert_eq!(f.config().get_u8(reg::HEADER_TYPE), 0x81);
        assert_eq!(f.config().get_u32(0x2c), 0, "no subsystem IDs in a type-1 header");
    }

    #[test]
    fn sticky_cap_bits_survive_flr_but_not_cold_reset() {
        let aer = CapBlock::ext(ext_id::AER, 2, 0x48).reg(RegSpec::ro(4, 4, 0).w1c(0x10).sticky(0x10));
        let mut f = GenericFunction::new(FunctionSpec::new("f", ids()).express().cap(aer, None)).expect("build");
        f.config_mut().set_u32(0x104, 0x10);
        let _ = f.reset(ResetKind::Flr);
        assert_eq!(f.config().get_u32(0x104), 0x10);
        let _ = f.reset(ResetKind::Cold);
        assert_eq!(f.config().get_u32(0x104), 0);
    }

    struct Wrapper {
        inner: GenericFunction,
        writes: usize,
    }

    impl PciDevice for Wrapper {
        fn function(&self) -> &GenericFunction {
            &self.inner
        }
        fn function_mut(&mut self) -> &mut GenericFunction {
            &mut self.inner
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
        fn config_write(&mut self, off: u16, size: u8, val: u32) -> PciEffects {
            self.writes += 1;
            self.inner.config_write(off, size, val)
        }
    }

    #[test]
    fn trait_objects_delegate_and_downcast() {
        let spec = FunctionSpec::new("wrapped", ids()).sbdf_hint(Sbdf::new(0, 0, 3, 0)).bar(BarSpec::io(0, 0x10));
        let mut devs: Vec<Box<dyn PciDevice>> = vec![
            Box::new(Wrapper { inner: GenericFunction::new(spec).expect("build"), writes: 0 }),
            Box::new(nvme_like()),
        ];
        let d = devs.first_mut().expect("first");
        assert_eq!(d.name(), "wrapped");
        assert_eq!(d.sbdf_hint(), Some(Sbdf::new(0, 0, 3, 0)));
        let _ = d.config_write(0x10, 4, 0xc000);
        let fx = d.config_write(reg::COMMAND, 2, u32::from(cmd::IO));
        assert_eq!(fx.len(), 1);
        assert_eq!(d.config().get_u32(0x10), 0xc001);
        assert_eq!(d.bar_read(0, 0, 4), 0xffff_ffff);
        assert_eq!(d.reset(ResetKind::Hot).len(), 1);
        assert_eq!(d.as_any().downcast_ref::<Wrapper>().map(|w| w.writes), Some(2));
        assert!(d.as_any_mut().downcast_mut::<GenericFunction>().is_none());
        let g = devs.get(1).and_then(|d| d.as_any().downcast_ref::<GenericFunction>());
        assert_eq!(g.map(GenericFunction::name), Some("nvme0"));
    }

    #[test]
    fn random_guest_traffic_never_panics_and_keeps_ids() {
        let mut f = nvme_like();
        let mut x: u64 = 0xdead_beef_cafe_f00d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = [1u8, 2, 4, 3, 8, 0][((x >> 40) % 6) as usize];
            match x % 4 {
                0 => {
                    let _ = f.config_write((x >> 16) as u16 % 0x1004, size, (x >> 32) as u32);
                }
                1 => {
                    let _ = f.config_read((x >> 16) as u16, size);
                }
                2 => {
                    let _ = f.bar_write(((x >> 8) % 8) as u8, (x >> 20) % 0x1000, size, x);
                }
                _ => {
                    let _ = f.signal_msi(((x >> 8) % 40) as u16);
                    let _ = f.set_intx(x & 0x100 != 0);
                }
            }
        }
        assert_eq!(f.config().vendor_id(), 0x1b36);
        assert!(walk_standard(f.config().bytes()).is_clean());
        for m in f.bars().mapped() {
            assert!(m.addr != 0 && m.last() != 0xffff_ffff);
        }
    }
}
