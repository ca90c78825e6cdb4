//! The native hot-plug slot of a root port or switch downstream port: a pure state machine over
//! the port's [`ConfigSpace`] (SltCap/SltCtl/SltSta and LnkSta.DLLLA of the PCI Express
//! capability) plus a little internal state, handing back [`SlotEvents`] as data.
//!
//! Reference: /work/shared/reference/pcie-spec.md §4.1 (registers) and §5 (interrupt rules,
//! Linux pciehp bring-up and state machine, the register choreography an emulator must produce).
//!
//! # Integration contract
//! The owner (the port device) holds one [`Slot`] next to the port's config space and:
//! - builds the PCI Express capability with [`crate::pcie::cap::PcieCapConfig::with_slot`] (the
//!   same [`SlotConfig`]) and creates the slot with [`Slot::new`] at the capability offset;
//! - calls [`Slot::cold_plug`] for a device present at boot (no events, no interrupt);
//! - after **every** guest config write to the port (after [`ConfigSpace::write`]), calls
//!   [`Slot::on_config_write`] with the same `(off, size, val)`;
//! - after any reset of the port's config space, calls [`Slot::reset`];
//! - for operator actions calls [`Slot::insert`] (`device_add`), [`Slot::request_removal`]
//!   (`device_del`: attention button, then wait for the guest), [`Slot::remove_card`] (after
//!   the detach, or a surprise removal), [`Slot::press_button`] (`pcie_abp`), [`Slot::set_mrl`];
//! - turns each [`SlotEvents`] into effects:
//!   - `irq`: send the port's MSI/MSI-X vector (PCI Express Capabilities IMN, 0) — rising edge
//!     of the hot-plug interrupt condition;
//!   - `irq_level`: the new level of the hot-plug interrupt source, for INTx (wire-OR it with
//!     the port's AER and PME sources before driving the pin);
//!   - `power: Some(false)`: the card lost power: make the function(s) below inaccessible
//!     (config reads all-ones, BARs unmapped) and reset them (cold); `Some(true)`: accessible
//!     again;
//!   - `detach_ready`: the guest released a card whose removal was requested: detach the
//!     device(s), then call [`Slot::remove_card`];
//!   - `link`, `emi`, `indicators`, `released`: informational (logs, `info pcie-slots`).
//!
//! # Decisions
//! - **Command Completed** (unless [`SlotConfig::no_command_completed`]): set after *every*
//!   guest write touching Slot Control, including writes that only change enable bits. The spec
//!   counts any Slot Control write as one command, QEMU completes every write, and Linux pciehp
//!   waits for CC after every write (it skips the wait only for Intel parts with the CF118
//!   erratum). Commands complete instantly. With NCCS the CC bit and CCIE are RO 0.
//! - **Writes while a completion is unacknowledged** (CC still set when a new Slot Control write
//!   arrives): accepted and executed; CC stays set, so no new interrupt edge is produced; logged
//!   once per unacknowledged completion (and rate-limited).
//! - **Interrupts** (spec 6.7.3.4): the condition is `HPIE && (SltSta & enabled events)`, pairs
//!   ABP/ABPE, PFD/PFDE, MRLSC/MRLSCE, PDC/PDCE, CC/CCIE, DLLSC/DLLSCE. It is re-evaluated after
//!   every change; `irq` (MSI) fires only on its false→true transition — including a write that
//!   enables an event whose status is already pending (as the spec and QEMU do). While it stays
//!   true no further `irq` is produced; the guest must clear the status bits.
//! - **Slot Status** is a faithful RW1C (QEMU's "revert all event bits if the guest clears a bit
//!   that was not set" quirk is not reproduced).
//! - **Power**: the card is powered iff present, the slot power is on (no power controller, or
//!   PCC = 0) and the MRL (if sensed) is closed. With the MRL open the slot cannot be powered:
//!   with a power controller, opening the MRL forces PCC = 1 and a PCC = 0 write while it is open
//!   is reverted (logged); without one, power simply follows the latch. The link (DLLLA) is up
//!   iff the card is powered and LnkCtl.LD is clear; each change sets DLLSC.
//! - **Release**: the guest has released the slot when it is powered off (PCC = 1, with a power
//!   controller) and the power indicator is off (with one) — the last step of Linux
//!   `remove_board`. `released`/`detach_ready` are reported on the transition into that state
//!   only (QEMU's guard against guests rewriting control of an already-off slot). A slot with
//!   neither a power controller nor a power indicator cannot signal release, so
//!   [`Slot::request_removal`] refuses it.
//! - **device_del** ([`Slot::request_removal`]): refused while the interlock is engaged, while
//!   the power indicator blinks (the guest is inside its 5 s window; another press would cancel
//!   it) and within 5 s of a previous request; if the slot is already released it is ready at
//!   once, with no guest round trip.
//! - **Insertion** sets PDS, PDC and, when the card gets power, DLLLA + DLLSC (Linux enables
//!   DLLSCE; with an attention button it leaves PDCE off). With
//!   [`SlotConfig::press_button_on_insert`] it also raises ABP in the same batch, as QEMU does,
//!   which a slot with a power controller needs (the card has no link until the guest powers it).
//! - **Reset** ([`Slot::reset`]): like QEMU, a populated slot comes back powered (PCC = 0, power
//!   indicator on) and an empty one powered off (PCC = 1, indicator off); attention indicator
//!   off, interlock released, all events cleared, a pending removal request dropped. Presence and
//!   MRL state are physical (HwInit) and survive.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::pci::config::{ConfigSpace, RegSpec, ResetKind};
use crate::pcie::cap::{lnkctl, off, sltcap, sltctl, sltsta, PcieCap};
use crate::pcie::written_bits;

/// How long a removal request stays pending before another one may press the button again
/// (the guest's blink window, like QEMU's `pending_deleted_expires_ms`).
pub const REMOVAL_RETRY: Duration = Duration::from_secs(5);

/// Slot features (SltCap) and behaviour options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotConfig {
    /// Attention Button Present.
    pub attention_button: bool,
    /// Power Controller Present.
    pub power_controller: bool,
    /// MRL Sensor Present.
    pub mrl_sensor: bool,
    /// Attention Indicator Present.
    pub attention_indicator: bool,
    /// Power Indicator Present.
    pub power_indicator: bool,
    /// Hot-Plug Surprise.
    pub hotplug_surprise: bool,
    /// Hot-Plug Capable (false: a fixed slot; operator hot-plug actions are refused).
    pub hotplug: bool,
    /// Electromechanical Interlock Present.
    pub emi: bool,
    /// Physical Slot Number (13 bits).
    pub physical_slot: u16,
    /// No Command Completed Support: never set CC.
    pub no_command_completed: bool,
    /// Raise ABP together with PDC on [`Slot::insert`] (QEMU's way of announcing a hot-add).
    pub press_button_on_insert: bool,
}

impl Default for SlotConfig {
    /// Button, both indicators, surprise, interlock and hot-plug on; power controller, MRL sensor
    /// and NCCS off; slot number 0.
    fn default() -> Self {
        SlotConfig {
            attention_button: true,
            power_controller: false,
            mrl_sensor: false,
            attention_indicator: true,
            power_indicator: true,
            hotplug_surprise: true,
            hotplug: true,
            emi: true,
            physical_slot: 0,
            no_command_completed: false,
            press_button_on_insert: false,
        }
    }
}

/// Slot errors: bad configuration, or an operator action the slot's state refuses.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// Physical slot number wider than 13 bits.
    #[error("physical slot number {0} does not fit in 13 bits (max 8191)")]
    BadSlotNumber(u16),
    /// Hot-plug action on a slot that is not hot-plug capable.
    #[error("slot {slot} is not hot-plug capable")]
    NotHotplugCapable {
        /// Physical slot number.
        slot: u16,
    },
    /// Insertion into an occupied slot.
    #[error("slot {slot} is already occupied")]
    Occupied {
        /// Physical slot number.
        slot: u16,
    },
    /// Removal from an empty slot.
    #[error("slot {slot} is empty")]
    Empty {
        /// Physical slot number.
        slot: u16,
    },
    /// The electromechanical interlock is engaged.
    #[error("slot {slot} is electromechanically locked")]
    Locked {
        /// Physical slot number.
        slot: u16,
    },
    /// The power indicator blinks: the guest is handling a button press.
    #[error("slot {slot}: guest is busy (power indicator blinking)")]
    GuestBusy {
        /// Physical slot number.
        slot: u16,
    },
    /// A removal was requested less than [`REMOVAL_RETRY`] ago.
    #[error("slot {slot}: removal already requested {ago_ms} ms ago")]
    AlreadyPending {
        /// Physical slot number.
        slot: u16,
        /// Milliseconds since the previous request.
        ago_ms: u128,
    },
    /// The slot has no attention button.
    #[error("slot {slot} has no attention button")]
    NoAttentionButton {
        /// Physical slot number.
        slot: u16,
    },
    /// The slot has no MRL sensor.
    #[error("slot {slot} has no MRL sensor")]
    NoMrlSensor {
        /// Physical slot number.
        slot: u16,
    },
    /// The slot has neither a power controller nor a power indicator: the guest cannot signal
    /// that it released the card.
    #[error("slot {slot} has neither a power controller nor a power indicator: the guest cannot release a card")]
    NoReleaseSignal {
        /// Physical slot number.
        slot: u16,
    },
}

impl SlotConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), SlotError> {
        if self.physical_slot > sltcap::PSN_MAX {
            return Err(SlotError::BadSlotNumber(self.physical_slot));
        }
        Ok(())
    }

    /// The Slot Capabilities value.
    pub fn sltcap(&self) -> u32 {
        let flags = [
            (self.attention_button, sltcap::ABP),
            (self.power_controller, sltcap::PCP),
            (self.mrl_sensor, sltcap::MRLSP),
            (self.attention_indicator, sltcap::AIP),
            (self.power_indicator, sltcap::PIP),
            (self.hotplug && self.hotplug_surprise, sltcap::HPS),
            (self.hotplug, sltcap::HPC),
            (self.emi, sltcap::EIP),
            (self.no_command_completed, sltcap::NCCS),
        ];
        let bits = flags.iter().filter(|(on, _)| *on).fold(0, |acc, (_, b)| acc | b);
        bits | ((u32::from(self.physical_slot) << sltcap::PSN_SHIFT) & sltcap::PSN)
    }

    /// Slot Control bits the guest may write. EIC is not among them: it is a write-1 pulse
    /// detected from the written value by [`Slot::on_config_write`], and always reads 0.
    pub fn sltctl_wmask(&self) -> u16 {
        let mut w = sltctl::PDCE | sltctl::HPIE | sltctl::DLLSCE;
        let opt = [
            (self.attention_button, sltctl::ABPE),
            (self.mrl_sensor, sltctl::MRLSCE),
            (!self.no_command_completed, sltctl::CCIE),
            (self.attention_indicator, sltctl::AIC),
            (self.power_indicator, sltctl::PIC),
            (self.power_controller, sltctl::PCC),
        ];
        for (on, bit) in opt {
            if on {
                w |= bit;
            }
        }
        w
    }

    /// Slot Control reset value of an empty slot: indicators off, power off.
    pub fn sltctl_init(&self) -> u16 {
        let mut v = 0;
        if self.attention_indicator {
            v |= sltctl::AIC_OFF;
        }
        if self.power_indicator {
            v |= sltctl::PIC_OFF;
        }
        if self.power_controller {
            v |= sltctl::PCC;
        }
        v
    }

    /// Slot Status bits the guest clears by writing 1 (the events this slot can raise).
    pub fn sltsta_w1c(&self) -> u16 {
        let mut w = sltsta::PDC | sltsta::DLLSC;
        let opt = [
            (self.attention_button, sltsta::ABP),
            (self.power_controller, sltsta::PFD),
            (self.mrl_sensor, sltsta::MRLSC),
            (!self.no_command_completed, sltsta::CC),
        ];
        for (on, bit) in opt {
            if on {
                w |= bit;
            }
        }
        w
    }

    /// The three slot registers (offsets relative to the PCI Express capability). PDS and MRLSS
    /// are HwInit: physical state no reset changes.
    pub fn registers(&self) -> Result<Vec<RegSpec>, SlotError> {
        self.validate()?;
        let mut hwinit = sltsta::PDS;
        if self.mrl_sensor {
            hwinit |= sltsta::MRLSS;
        }
        Ok(vec![
            RegSpec::ro(off::SLTCAP, 4, self.sltcap()),
            RegSpec::ro(off::SLTCTL, 2, u32::from(self.sltctl_init())).rw(u32::from(self.sltctl_wmask())),
            RegSpec::ro(off::SLTSTA, 2, 0).w1c(u32::from(self.sltsta_w1c())).hwinit(u32::from(hwinit)),
        ])
    }

    /// Whether the guest can signal release (power controller or power indicator).
    pub fn can_signal_release(&self) -> bool {
        self.power_controller || self.power_indicator
    }
}

/// An indicator state (AIC/PIC encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Indicator {
    /// 01b.
    On,
    /// 10b.
    Blink,
    /// 11b.
    Off,
    /// 00b (reserved encoding).
    Reserved,
}

impl Indicator {
    /// Decodes a 2-bit field value.
    pub const fn from_bits(bits: u16) -> Self {
        match bits & 3 {
            1 => Indicator::On,
            2 => Indicator::Blink,
            3 => Indicator::Off,
            _ => Indicator::Reserved,
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Indicator::On => "on",
            Indicator::Blink => "blink",
            Indicator::Off => "off",
            Indicator::Reserved => "reserved",
        })
    }
}

/// What a slot operation did, for the owner to apply (see the module docs).
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlotEvents {
    /// Send the port's MSI/MSI-X vector now (rising edge of the hot-plug interrupt condition).
    pub irq: bool,
    /// New level of the hot-plug interrupt source (INTx), when it changed.
    pub irq_level: Option<bool>,
    /// The card's power changed: `false` = make the function(s) inaccessible and reset them,
    /// `true` = accessible again.
    pub power: Option<bool>,
    /// LnkSta.DLLLA changed.
    pub link: Option<bool>,
    /// The guest released a card whose removal was requested: detach it, then call
    /// [`Slot::remove_card`].
    pub detach_ready: bool,
    /// The guest put a populated slot into the released state (whether or not a removal was
    /// requested).
    pub released: bool,
    /// The electromechanical interlock toggled (new state: engaged).
    pub emi: Option<bool>,
    /// An indicator changed.
    pub indicators: bool,
}

impl SlotEvents {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == SlotEvents::default()
    }
    /// Folds `later` into `self` (edges OR together, the latest level/state wins).
    pub fn merge(&mut self, later: SlotEvents) {
        self.irq |= later.irq;
        self.irq_level = later.irq_level.or(self.irq_level);
        self.power = later.power.or(self.power);
        self.link = later.link.or(self.link);
        self.detach_ready |= later.detach_ready;
        self.released |= later.released;
        self.emi = later.emi.or(self.emi);
        self.indicators |= later.indicators;
    }
}

/// MRL state for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Latch {
    /// MRL open.
    Open,
    /// MRL closed.
    Closed,
}

/// A snapshot of a slot for `info pcie-slots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotView {
    /// Physical slot number.
    pub physical_slot: u16,
    /// Hot-plug capable.
    pub hotplug: bool,
    /// A card is present.
    pub present: bool,
    /// Slot power is on (PCC = 0 or no power controller, and the MRL closed).
    pub power: bool,
    /// LnkSta.DLLLA.
    pub link_active: bool,
    /// Power indicator (if present).
    pub power_indicator: Option<Indicator>,
    /// Attention indicator (if present).
    pub attention_indicator: Option<Indicator>,
    /// MRL (if sensed).
    pub latch: Option<Latch>,
    /// Interlock engaged (if present).
    pub emi: Option<bool>,
    /// A removal request is pending.
    pub removal_pending: bool,
}

impl fmt::Display for SlotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool, y: &'static str, n: &'static str| if b { y } else { n };
        write!(
            f,
            "slot {}: {}, power {}, link {}",
            self.physical_slot,
            yn(self.present, "card present", "empty"),
            yn(self.power, "on", "off"),
            yn(self.link_active, "up", "down")
        )?;
        if let Some(i) = self.power_indicator {
            write!(f, ", power indicator {i}")?;
        }
        if let Some(i) = self.attention_indicator {
            write!(f, ", attention indicator {i}")?;
        }
        if let Some(l) = self.latch {
            write!(f, ", latch {}", yn(l == Latch::Open, "open", "closed"))?;
        }
        if let Some(e) = self.emi {
            write!(f, ", interlock {}", yn(e, "engaged", "released"))?;
        }
        if !self.hotplug {
            f.write_str(", not hot-plug capable")?;
        }
        if self.removal_pending {
            f.write_str(", removal pending")?;
        }
        Ok(())
    }
}

/// A hot-plug slot (see the module docs for the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    config: SlotConfig,
    cap: PcieCap,
    /// Last value of the hot-plug interrupt condition.
    notified: bool,
    /// Slot Control after the last processed write (to detect transitions).
    last_ctl: u16,
    /// When the pending removal was requested.
    removal: Option<Duration>,
    /// A write-while-CC-set was logged and CC has not been cleared since.
    overlap_logged: bool,
    /// Last reported "card present and powered".
    card_powered: bool,
}

impl Slot {
    /// A slot whose PCI Express capability sits at `pcie_off` (built with the same `config`).
    pub fn new(config: SlotConfig, pcie_off: u16) -> Result<Self, SlotError> {
        config.validate()?;
        Ok(Slot {
            config,
            cap: PcieCap::at(pcie_off),
            notified: false,
            last_ctl: config.sltctl_init(),
            removal: None,
            overlap_logged: false,
            card_powered: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SlotConfig {
        &self.config
    }
    /// The PCI Express capability the slot lives in.
    pub fn cap(&self) -> PcieCap {
        self.cap
    }
    /// Current level of the hot-plug interrupt condition (for INTx).
    pub fn irq_level(&self) -> bool {
        self.notified
    }
    /// Whether a removal request is pending.
    pub fn removal_pending(&self) -> bool {
        self.removal.is_some()
    }
    /// Whether a card is present.
    pub fn present(&self, cfg: &ConfigSpace) -> bool {
        self.cap.presence(cfg)
    }
    /// Whether the card is present and powered (its functions are accessible).
    pub fn card_powered(&self, cfg: &ConfigSpace) -> bool {
        self.present(cfg) && self.slot_power_on(cfg)
    }

    fn n(&self) -> u16 {
        self.config.physical_slot
    }

    fn slot_power_on(&self, cfg: &ConfigSpace) -> bool {
        let pcc_on = !self.config.power_controller || self.cap.slot_ctl(cfg) & sltctl::PCC == 0;
        let latched = !self.config.mrl_sensor || !self.cap.mrl_open(cfg);
        pcc_on && latched
    }

    fn released(&self, ctl: u16) -> bool {
        self.config.can_signal_release()
            && (!self.config.power_controller || ctl & sltctl::PCC != 0)
            && (!self.config.power_indicator || ctl & sltctl::PIC == sltctl::PIC_OFF)
    }

    /// Brings power and link in line with the registers; `raise` sets DLLSC on a link change.
    fn sync(&mut self, cfg: &mut ConfigSpace, ev: &mut SlotEvents, raise: bool) {
        let powered = self.card_powered(cfg);
        if powered != self.card_powered {
            self.card_powered = powered;
            ev.power = Some(powered);
        }
        let link = powered && cfg.get_u16(self.cap.reg(off::LNKCTL)) & lnkctl::LD == 0;
        if self.cap.set_dll_link_active(cfg, link) {
            ev.link = Some(link);
            if raise {
                self.cap.set_slot_events(cfg, sltsta::DLLSC);
            }
        }
    }

    /// Re-evaluates the hot-plug interrupt condition.
    fn update_irq(&mut self, cfg: &ConfigSpace, ev: &mut SlotEvents) {
        let ctl = self.cap.slot_ctl(cfg);
        let sta = self.cap.slot_sta(cfg);
        let mut enabled = ctl & (sltctl::ABPE | sltctl::PFDE | sltctl::MRLSCE | sltctl::PDCE | sltctl::CCIE);
        if ctl & sltctl::DLLSCE != 0 {
            enabled |= sltsta::DLLSC;
        }
        let now = ctl & sltctl::HPIE != 0 && sta & enabled & sltsta::EVENTS != 0;
        if now && !self.notified {
            ev.irq = true;
        }
        if now != self.notified {
            ev.irq_level = Some(now);
        }
        self.notified = now;
        if sta & sltsta::CC == 0 {
            self.overlap_logged = false;
        }
    }

    fn raise(&mut self, cfg: &mut ConfigSpace, events: u16, ev: &mut SlotEvents) {
        self.cap.set_slot_events(cfg, events);
        self.update_irq(cfg, ev);
    }

    fn require_hotplug(&self) -> Result<(), SlotError> {
        if self.config.hotplug {
            Ok(())
        } else {
            Err(SlotError::NotHotplugCapable { slot: self.n() })
        }
    }

    /// A card present at boot: PDS, power on (PCC = 0), power indicator on, link up; no events
    /// and no interrupt. Returns the power/link changes.
    pub fn cold_plug(&mut self, cfg: &mut ConfigSpace) -> Result<SlotEvents, SlotError> {
        if self.present(cfg) {
            return Err(SlotError::Occupied { slot: self.n() });
        }
        self.cap.set_presence(cfg, true);
        self.power_up_defaults(cfg);
        let mut ev = SlotEvents::default();
        self.sync(cfg, &mut ev, false);
        self.last_ctl = self.cap.slot_ctl(cfg);
        Ok(ev)
    }

    /// Slot Control as the platform leaves a populated slot: power on, power indicator on.
    fn power_up_defaults(&self, cfg: &mut ConfigSpace) {
        let mut set = 0;
        let mut clear = 0;
        if self.config.power_controller && !(self.config.mrl_sensor && self.cap.mrl_open(cfg)) {
            clear |= sltctl::PCC;
        }
        if self.config.power_indicator {
            clear |= sltctl::PIC;
            set |= sltctl::PIC_ON;
        }
        self.cap.update_slot_ctl(cfg, clear, set);
    }

    /// Hot insertion (`device_add`): PDS and PDC; DLLLA and DLLSC if the card gets power; ABP
    /// too with [`SlotConfig::press_button_on_insert`]. The owner attaches the device before or
    /// after this call; it is accessible iff the result says `power: Some(true)`.
    pub fn insert(&mut self, cfg: &mut ConfigSpace) -> Result<SlotEvents, SlotError> {
        self.require_hotplug()?;
        if self.present(cfg) {
            return Err(SlotError::Occupied { slot: self.n() });
        }
        self.cap.set_presence(cfg, true);
        let mut ev = SlotEvents::default();
        self.sync(cfg, &mut ev, true);
        let mut events = sltsta::PDC;
        if self.config.press_button_on_insert && self.config.attention_button {
            events |= sltsta::ABP;
        }
        self.raise(cfg, events, &mut ev);
        Ok(ev)
    }

    /// The operator presses the attention button (`pcie_abp`): ABP and its interrupt. Nothing
    /// else: the guest decides what a press means.
    pub fn press_button(&mut self, cfg: &mut ConfigSpace) -> Result<SlotEvents, SlotError> {
        if !self.config.attention_button {
            return Err(SlotError::NoAttentionButton { slot: self.n() });
        }
        let mut ev = SlotEvents::default();
        self.raise(cfg, sltsta::ABP, &mut ev);
        Ok(ev)
    }

    /// Orderly removal (`device_del`): presses the attention button and remembers the request;
    /// the guest then blinks the power indicator for 5 s and powers the slot off, which
    /// [`Slot::on_config_write`] reports as `detach_ready`. If the slot is already released,
    /// `detach_ready` is reported at once. `now` is any monotonic clock (for the 5 s retry rule).
    pub fn request_removal(&mut self, cfg: &mut ConfigSpace, now: Duration) -> Result<SlotEvents, SlotError> {
        let slot = self.n();
        self.require_hotplug()?;
        if !self.present(cfg) {
            return Err(SlotError::Empty { slot });
        }
        if !self.config.can_signal_release() {
            return Err(SlotError::NoReleaseSignal { slot });
        }
        if self.cap.emi_engaged(cfg) {
            return Err(SlotError::Locked { slot });
        }
        let mut ev = SlotEvents::default();
        if self.released(self.cap.slot_ctl(cfg)) {
            self.removal = Some(now);
            ev.detach_ready = true;
            return Ok(ev);
        }
        if self.config.power_indicator && self.cap.slot_ctl(cfg) & sltctl::PIC == sltctl::PIC_BLINK {
            return Err(SlotError::GuestBusy { slot });
        }
        if let Some(at) = self.removal {
            let ago = now.saturating_sub(at);
            if ago < REMOVAL_RETRY {
                return Err(SlotError::AlreadyPending { slot, ago_ms: ago.as_millis() });
            }
        }
        if !self.config.attention_button {
            return Err(SlotError::NoAttentionButton { slot });
        }
        self.removal = Some(now);
        self.raise(cfg, sltsta::ABP, &mut ev);
        Ok(ev)
    }

    /// Forgets a pending removal request (e.g. the owner gave up waiting).
    pub fn cancel_removal(&mut self) {
        self.removal = None;
    }

    /// The card leaves the slot: after `detach_ready` (the owner has detached it), or a surprise
    /// removal (the owner detaches it now). PDS = 0 and PDC; if the link was up, DLLLA = 0 and
    /// DLLSC; `power: Some(false)` if the card was powered. Refused while the interlock is
    /// engaged.
    pub fn remove_card(&mut self, cfg: &mut ConfigSpace) -> Result<SlotEvents, SlotError> {
        self.require_hotplug()?;
        if !self.present(cfg) {
            return Err(SlotError::Empty { slot: self.n() });
        }
        if self.cap.emi_engaged(cfg) {
            return Err(SlotError::Locked { slot: self.n() });
        }
        self.cap.set_presence(cfg, false);
        self.removal = None;
        let mut ev = SlotEvents::default();
        self.sync(cfg, &mut ev, true);
        self.raise(cfg, sltsta::PDC, &mut ev);
        Ok(ev)
    }

    /// The operator opens or closes the MRL: MRLSS and MRLSC (if it changed). Opening removes
    /// slot power (forcing PCC = 1 with a power controller); closing restores it only without a
    /// power controller (with one, the guest powers the slot on again).
    pub fn set_mrl(&mut self, cfg: &mut ConfigSpace, open: bool) -> Result<SlotEvents, SlotError> {
        if !self.config.mrl_sensor {
            return Err(SlotError::NoMrlSensor { slot: self.n() });
        }
        let mut ev = SlotEvents::default();
        if self.cap.mrl_open(cfg) == open {
            return Ok(ev);
        }
        self.cap.set_mrl_open(cfg, open);
        if open && self.config.power_controller {
            self.cap.update_slot_ctl(cfg, 0, sltctl::PCC);
            self.last_ctl = self.cap.slot_ctl(cfg);
        }
        self.sync(cfg, &mut ev, true);
        self.raise(cfg, sltsta::MRLSC, &mut ev);
        Ok(ev)
    }

    /// Call after every guest config write to the port (after [`ConfigSpace::write`]), with the
    /// same arguments. Executes Slot Control commands (power, indicators, interlock), completes
    /// them, follows LnkCtl.LD, and re-evaluates the interrupt.
    pub fn on_config_write(&mut self, cfg: &mut ConfigSpace, at: u16, size: u8, val: u32) -> SlotEvents {
        let mut ev = SlotEvents::default();
        let ctl_hit = written_bits(self.cap.reg(off::SLTCTL), 2, at, size, val);
        let sta_hit = self.cap.touches(off::SLTSTA, 2, at, size);
        let lnk_hit = self.cap.touches(off::LNKCTL, 2, at, size);
        if ctl_hit.is_none() && !sta_hit && !lnk_hit {
            return ev;
        }
        if sta_hit {
            // The W1C part of the write acts before a command in the same write completes, so
            // clearing CC and issuing a command in one dword write is a new 0->1 edge.
            self.update_irq(cfg, &mut ev);
        }
        if let Some((written, bytes)) = ctl_hit {
            self.command(cfg, written & bytes, &mut ev);
        } else {
            self.sync(cfg, &mut ev, true);
        }
        self.update_irq(cfg, &mut ev);
        ev
    }

    /// One Slot Control write (`written` = the value written to the register's bytes).
    fn command(&mut self, cfg: &mut ConfigSpace, written: u32, ev: &mut SlotEvents) {
        let slot = self.n();
        let cc_enabled = !self.config.no_command_completed;
        if cc_enabled && self.cap.slot_sta(cfg) & sltsta::CC != 0 && !self.overlap_logged {
            self.overlap_logged = true;
            crate::guest_warn!(
                "pcie slot {slot}: Slot Control written before the previous command completion was acknowledged; \
                 executing it (Command Completed stays set)"
            );
        }
        if self.config.emi && written & u32::from(sltctl::EIC) != 0 {
            let engaged = !self.cap.emi_engaged(cfg);
            self.cap.set_emi_engaged(cfg, engaged);
            ev.emi = Some(engaged);
        }
        if self.config.power_controller
            && self.config.mrl_sensor
            && self.cap.mrl_open(cfg)
            && self.cap.slot_ctl(cfg) & sltctl::PCC == 0
        {
            self.cap.update_slot_ctl(cfg, 0, sltctl::PCC);
            crate::guest_warn!("pcie slot {slot}: power-on refused while the MRL is open");
        }
        let ctl = self.cap.slot_ctl(cfg);
        let old = self.last_ctl;
        if (ctl ^ old) & (sltctl::AIC | sltctl::PIC) != 0 {
            ev.indicators = true;
        }
        self.sync(cfg, ev, true);
        if self.present(cfg) && self.released(ctl) && !self.released(old) {
            ev.released = true;
            ev.detach_ready = self.removal.is_some();
        }
        if cc_enabled {
            self.cap.set_slot_events(cfg, sltsta::CC);
        }
        self.last_ctl = ctl;
    }

    /// Call after the port's config space was reset (any kind): restores the slot's power and
    /// indicator state for its occupancy (see the module docs), drops the interrupt and any
    /// pending removal request. Returns the power/link/level changes (never an `irq` edge).
    pub fn reset(&mut self, cfg: &mut ConfigSpace, _kind: ResetKind) -> SlotEvents {
        if self.present(cfg) {
            self.power_up_defaults(cfg);
        }
        self.removal = None;
        self.overlap_logged = false;
        self.last_ctl = self.cap.slot_ctl(cfg);
        let mut ev = SlotEvents::default();
        self.sync(cfg, &mut ev, false);
        self.update_irq(cfg, &mut ev);
        ev
    }

    /// A snapshot for display.
    pub fn view(&self, cfg: &ConfigSpace) -> SlotView {
        let ctl = self.cap.slot_ctl(cfg);
        let c = &self.config;
        SlotView {
            physical_slot: c.physical_slot,
            hotplug: c.hotplug,
            present: self.present(cfg),
            power: self.slot_power_on(cfg),
            link_active: self.cap.dll_link_active(cfg),
            power_indicator: c.power_indicator.then(|| Indicator::from_bits((ctl & sltctl::PIC) >> sltctl::PIC_SHIFT)),
            attention_indicator: c
                .attention_indicator
                .then(|| Indicator::from_bits((ctl & sltctl::AIC) >> sltctl::AIC_SHIFT)),
            latch: c.mrl_sensor.then(|| if self.cap.mrl_open(cfg) { Latch::Open } else { Latch::Closed }),
            emi: c.emi.then(|| self.cap.emi_engaged(cfg)),
            removal_pending: self.removal.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::caps::CapChainBuilder;
    use crate::pci::config::{ConfigKind, RegMasks};
    use crate::pcie::cap::{PcieCapConfig, PortType};

    const OFF: u16 = 0x40;
    const CTL: u16 = OFF + off::SLTCTL;
    const STA: u16 = OFF + off::SLTSTA;
    /// What Linux pciehp enables with an attention button present.
    const LINUX_ENABLES: u16 = sltctl::DLLSCE | sltctl::ABPE | sltctl::HPIE | sltctl::CCIE;

    struct Port {
        cfg: ConfigSpace,
        slot: Slot,
    }

    impl Port {
        fn new(config: SlotConfig) -> Self {
            let mut cfg = ConfigSpace::new(ConfigKind::Express);
            let mut b = CapChainBuilder::standard();
            let cap = PcieCapConfig::new(PortType::RootPort).with_slot(config).cap_block().expect("block");
            let off = b.add_at(OFF, cap).expect("add");
            b.install(&mut cfg).expect("install");
            Port { cfg, slot: Slot::new(config, off).expect("slot") }
        }
        fn write(&mut self, at: u16, size: u8, val: u32) -> SlotEvents {
            assert!(!self.cfg.write(at, size, val).is_ignored());
            self.slot.on_config_write(&mut self.cfg, at, size, val)
        }
        /// A read-modify-write of Slot Control, like pciehp's `pcie_write_cmd`.
        fn cmd(&mut self, value: u16, mask: u16) -> SlotEvents {
            let v = (self.ctl() & !mask) | (value & mask);
            self.write(CTL, 2, u32::from(v))
        }
        fn ack(&mut self, bits: u16) -> SlotEvents {
            self.write(STA, 2, u32::from(bits))
        }
        fn ctl(&self) -> u16 {
            self.cfg.get_u16(CTL)
        }
        fn sta(&self) -> u16 {
            self.cfg.get_u16(STA)
        }
        fn link(&self) -> bool {
            self.slot.cap().dll_link_active(&self.cfg)
        }
        /// Linux bring-up: clear events, enable notification, ack the completion.
        fn linux_init(&mut self) {
            let _ = self.ack(sltsta::EVENTS);
            let ev = self.cmd(LINUX_ENABLES, LINUX_ENABLES | sltctl::PDCE | sltctl::PFDE);
            assert!(ev.irq, "the enabling write completes with an interrupt");
            let _ = self.ack(sltsta::CC);
        }
    }

    fn port() -> Port {
        Port::new(SlotConfig { physical_slot: 5, ..SlotConfig::default() })
    }

    fn pcp_port() -> Port {
        Port::new(SlotConfig { power_controller: true, physical_slot: 6, ..SlotConfig::default() })
    }

    fn mrl_port() -> Port {
        Port::new(SlotConfig { power_controller: true, mrl_sensor: true, physical_slot: 7, ..SlotConfig::default() })
    }

    #[test]
    fn default_config_has_button_indicators_surprise_and_emi() {
        let c = SlotConfig::default();
        let cap = c.sltcap();
        for bit in [sltcap::ABP, sltcap::AIP, sltcap::PIP, sltcap::HPS, sltcap::HPC, sltcap::EIP] {
            assert_ne!(cap & bit, 0, "{bit:#x}");
        }
        for bit in [sltcap::PCP, sltcap::MRLSP, sltcap::NCCS] {
            assert_eq!(cap & bit, 0, "{bit:#x}");
        }
    }

    #[test]
    fn sltcap_encodes_physical_slot_number_and_is_read_only() {
        let mut p = Port::new(SlotConfig { physical_slot: 0x1abc, ..SlotConfig::default() });
        assert_eq!(p.slot.cap().slot_cap(&p.cfg) >> sltcap::PSN_SHIFT, 0x1abc);
        let v = p.slot.cap().slot_cap(&p.cfg);
        let _ = p.write(OFF + off::SLTCAP, 4, 0);
        assert_eq!(p.slot.cap().slot_cap(&p.cfg), v);
    }

    #[test]
    fn slot_number_above_13_bits_is_refused() {
        let c = SlotConfig { physical_slot: 0x2000, ..SlotConfig::default() };
        assert_eq!(Slot::new(c, OFF), Err(SlotError::BadSlotNumber(0x2000)));
        assert!(SlotError::BadSlotNumber(0x2000).to_string().contains("8192"));
    }

    #[test]
    fn sltctl_mask_follows_features() {
        let p = port();
        let w = p.cfg.reg_masks(CTL, 2).wmask as u16;
        assert_eq!(
            w,
            sltctl::ABPE | sltctl::PDCE | sltctl::CCIE | sltctl::HPIE | sltctl::AIC | sltctl::PIC | sltctl::DLLSCE
        );
        let p = mrl_port();
        let w = p.cfg.reg_masks(CTL, 2).wmask as u16;
        assert_ne!(w & sltctl::PCC, 0);
        assert_ne!(w & sltctl::MRLSCE, 0);
        assert_eq!(w & (sltctl::PFDE | sltctl::EIC), 0, "PFD not modelled; EIC is a pulse");
        let bare = SlotConfig {
            attention_button: false,
            attention_indicator: false,
            power_indicator: false,
            no_command_completed: true,
            ..SlotConfig::default()
        };
        assert_eq!(bare.sltctl_wmask(), sltctl::PDCE | sltctl::HPIE | sltctl::DLLSCE);
    }

    #[test]
    fn sltctl_reset_value_of_an_empty_slot_has_indicators_and_power_off() {
        let p = pcp_port();
        assert_eq!(p.ctl(), sltctl::AIC_OFF | sltctl::PIC_OFF | sltctl::PCC);
        let p = port();
        assert_eq!(p.ctl(), sltctl::AIC_OFF | sltctl::PIC_OFF);
    }

    #[test]
    fn sltsta_masks_events_w1c_and_state_hwinit() {
        let p = mrl_port();
        let m = p.cfg.reg_masks(STA, 2);
        assert_eq!(m, RegMasks::w1c(u32::from(sltsta::EVENTS)).with_hwinit(u32::from(sltsta::PDS | sltsta::MRLSS)));
        let p = port();
        let m = p.cfg.reg_masks(STA, 2);
        assert_eq!(m.w1c as u16, sltsta::ABP | sltsta::PDC | sltsta::CC | sltsta::DLLSC);
    }

    #[test]
    fn slot_status_w1c_clears_only_written_bits() {
        let mut p = port();
        p.slot.cap().set_slot_events(&mut p.cfg, sltsta::ABP | sltsta::PDC | sltsta::DLLSC);
        let _ = p.ack(sltsta::PDC);
        assert_eq!(p.sta(), sltsta::ABP | sltsta::DLLSC);
        let _ = p.ack(sltsta::CC);
        assert_eq!(p.sta(), sltsta::ABP | sltsta::DLLSC, "clearing an unset bit changes nothing");
        let _ = p.ack(0);
        assert_eq!(p.sta(), sltsta::ABP | sltsta::DLLSC);
        let _ = p.ack(0xffff);
        assert_eq!(p.sta(), 0);
    }

    #[test]
    fn slot_status_state_bits_are_read_only() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.ack(0xffff);
        assert_eq!(p.sta() & sltsta::PDS, sltsta::PDS);
        let mut q = port();
        let _ = q.write(STA, 2, u32::from(sltsta::PDS | sltsta::EIS | sltsta::MRLSS));
        assert_eq!(q.sta(), 0, "guest cannot set state bits");
    }

    #[test]
    fn cold_plug_powers_the_slot_without_events() {
        let mut p = pcp_port();
        let ev = p.slot.cold_plug(&mut p.cfg).expect("plug");
        assert_eq!(ev.power, Some(true));
        assert_eq!(ev.link, Some(true));
        assert!(!ev.irq);
        assert_eq!(p.sta() & sltsta::EVENTS, 0);
        assert_eq!(p.ctl() & (sltctl::PCC | sltctl::PIC), sltctl::PIC_ON);
        assert!(p.link());
        assert_eq!(p.slot.cold_plug(&mut p.cfg), Err(SlotError::Occupied { slot: 6 }));
    }

    #[test]
    fn every_slot_control_write_sets_command_completed() {
        let mut p = port();
        let _ = p.write(CTL, 2, u32::from(p.ctl()));
        assert_ne!(p.sta() & sltsta::CC, 0, "even a write that changes nothing is a command");
        let _ = p.ack(sltsta::CC);
        let _ = p.cmd(sltctl::PDCE, sltctl::PDCE);
        assert_ne!(p.sta() & sltsta::CC, 0, "enable-only write completes too");
    }

    #[test]
    fn byte_write_to_slot_control_is_a_command_but_status_only_write_is_not() {
        let mut p = port();
        let _ = p.write(CTL + 1, 1, u32::from(p.ctl() >> 8));
        assert_ne!(p.sta() & sltsta::CC, 0);
        let _ = p.ack(sltsta::CC);
        let _ = p.write(STA, 2, 0);
        assert_eq!(p.sta() & sltsta::CC, 0);
        let _ = p.write(OFF + off::SLTCAP, 4, 0);
        assert_eq!(p.sta() & sltsta::CC, 0);
    }

    #[test]
    fn no_command_completed_slot_never_sets_cc() {
        let mut p = Port::new(SlotConfig { no_command_completed: true, ..SlotConfig::default() });
        assert_ne!(p.slot.cap().slot_cap(&p.cfg) & sltcap::NCCS, 0);
        let ev = p.cmd(0xffff, 0xffff);
        assert_eq!(p.sta() & sltsta::CC, 0);
        assert_eq!(p.ctl() & sltctl::CCIE, 0, "CCIE is RO 0");
        assert!(!ev.irq);
    }

    #[test]
    fn cc_interrupt_needs_ccie_and_hpie() {
        let mut p = port();
        assert!(!p.cmd(sltctl::CCIE, sltctl::CCIE).irq, "HPIE off");
        let _ = p.ack(sltsta::CC);
        assert!(!p.cmd(sltctl::HPIE, sltctl::HPIE | sltctl::CCIE).irq, "CCIE off");
        let _ = p.ack(sltsta::CC);
        let ev = p.cmd(sltctl::HPIE | sltctl::CCIE, sltctl::HPIE | sltctl::CCIE);
        assert!(ev.irq);
        assert_eq!(ev.irq_level, Some(true));
    }

    #[test]
    fn interrupt_only_on_rising_edge_of_enabled_status() {
        let mut p = port();
        p.linux_init();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.slot.press_button(&mut p.cfg).expect("abp");
        assert!(ev.irq);
        let ev = p.slot.press_button(&mut p.cfg).expect("abp");
        assert!(!ev.irq, "condition already true: no new message");
        let ev = p.ack(sltsta::ABP);
        assert_eq!(ev.irq_level, Some(false));
        assert!(p.slot.press_button(&mut p.cfg).expect("abp").irq, "re-armed after the clear");
    }

    #[test]
    fn masked_event_raises_no_interrupt_until_enabled() {
        let mut p = port();
        let _ = p.cmd(sltctl::HPIE, sltctl::HPIE);
        let _ = p.ack(sltsta::CC);
        let ev = p.slot.press_button(&mut p.cfg).expect("abp");
        assert!(!ev.irq, "ABPE off");
        assert_ne!(p.sta() & sltsta::ABP, 0, "status latched anyway");
        let ev = p.cmd(sltctl::ABPE, sltctl::ABPE);
        assert!(ev.irq, "enabling a pending event is a 0->1 transition of the condition");
    }

    #[test]
    fn enabling_hpie_with_pending_event_interrupts() {
        let mut p = port();
        let _ = p.cmd(sltctl::ABPE, sltctl::ABPE);
        let _ = p.ack(sltsta::CC);
        let _ = p.slot.press_button(&mut p.cfg).expect("abp");
        let ev = p.cmd(sltctl::HPIE, sltctl::HPIE);
        assert!(ev.irq);
        let ev = p.cmd(0, sltctl::HPIE);
        assert_eq!(ev.irq_level, Some(false), "disabling HPIE drops the INTx level");
        assert!(!ev.irq);
    }

    #[test]
    fn write_while_command_pending_is_executed_and_cc_stays_set() {
        let mut p = port();
        p.linux_init();
        let ev = p.cmd(sltctl::PIC_ON, sltctl::PIC);
        assert!(ev.irq);
        // The guest issues another command without acknowledging the completion.
        let ev = p.cmd(sltctl::AIC_ON, sltctl::AIC);
        assert!(!ev.irq, "CC already set: no new edge");
        assert!(ev.indicators);
        assert_eq!(p.ctl() & sltctl::AIC, sltctl::AIC_ON, "the command was executed");
        assert_ne!(p.sta() & sltsta::CC, 0);
        assert!(p.slot.overlap_logged);
        let _ = p.ack(sltsta::CC);
        assert!(!p.slot.overlap_logged, "re-armed once acknowledged");
    }

    #[test]
    fn dword_write_clearing_cc_and_issuing_a_command_interrupts_again() {
        let mut p = port();
        p.linux_init();
        let _ = p.cmd(sltctl::PIC_ON, sltctl::PIC);
        let v = u32::from((p.ctl() & !sltctl::PIC) | sltctl::PIC_BLINK) | (u32::from(sltsta::CC) << 16);
        let ev = p.write(CTL, 4, v);
        assert!(ev.irq, "CC cleared then set again by the same write");
        assert!(!p.slot.overlap_logged);
    }

    #[test]
    fn insert_sets_presence_link_and_interrupts_via_dllsc() {
        let mut p = port();
        p.linux_init();
        let ev = p.slot.insert(&mut p.cfg).expect("insert");
        assert!(ev.irq, "DLLSCE enabled by Linux");
        assert_eq!(ev.power, Some(true));
        assert_eq!(ev.link, Some(true));
        assert_eq!(p.sta() & (sltsta::PDS | sltsta::PDC | sltsta::DLLSC | sltsta::ABP), 0x148);
        assert!(p.link());
        assert_eq!(p.slot.insert(&mut p.cfg), Err(SlotError::Occupied { slot: 5 }));
    }

    #[test]
    fn insert_with_button_announcement_raises_abp_too() {
        let mut p = Port::new(SlotConfig { press_button_on_insert: true, ..SlotConfig::default() });
        let _ = p.slot.insert(&mut p.cfg).expect("insert");
        assert_ne!(p.sta() & sltsta::ABP, 0);
        assert_ne!(p.sta() & sltsta::PDC, 0);
    }

    #[test]
    fn insert_into_unpowered_slot_has_no_link_until_guest_powers_on() {
        let mut p = pcp_port();
        p.linux_init();
        let ev = p.slot.insert(&mut p.cfg).expect("insert");
        assert_eq!(ev.power, None, "slot power is off");
        assert_eq!(ev.link, None);
        assert!(!ev.irq, "PDCE off (button present), no DLLSC");
        assert!(!p.slot.card_powered(&p.cfg));
        let ev = p.cmd(0, sltctl::PCC);
        assert_eq!(ev.power, Some(true));
        assert_eq!(ev.link, Some(true));
        assert_ne!(p.sta() & sltsta::DLLSC, 0);
        assert!(p.link());
    }

    #[test]
    fn insert_on_fixed_slot_is_refused() {
        let mut p = Port::new(SlotConfig { hotplug: false, ..SlotConfig::default() });
        assert_eq!(p.slot.insert(&mut p.cfg), Err(SlotError::NotHotplugCapable { slot: 0 }));
        assert_eq!(p.slot.cap().slot_cap(&p.cfg) & (sltcap::HPC | sltcap::HPS), 0);
        let _ = p.slot.cold_plug(&mut p.cfg).expect("cold plug still works");
        assert!(p.slot.remove_card(&mut p.cfg).is_err());
        assert!(p.slot.request_removal(&mut p.cfg, Duration::ZERO).is_err());
    }

    #[test]
    fn abp_then_guest_power_off_reports_detach_ready() {
        // Default slot (no power controller): Linux signals release with the power indicator.
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let ev = p.slot.request_removal(&mut p.cfg, Duration::from_secs(100)).expect("request");
        assert!(ev.irq);
        assert!(!ev.detach_ready);
        assert!(p.slot.removal_pending());
        let _ = p.ack(sltsta::ABP);
        // pciehp_handle_button_press: blink, attention off.
        let ev = p.cmd(sltctl::PIC_BLINK | sltctl::AIC_OFF, sltctl::PIC | sltctl::AIC);
        assert!(!ev.detach_ready && ev.indicators);
        let _ = p.ack(sltsta::CC);
        // 5 s later remove_board: power indicator off.
        let ev = p.cmd(sltctl::PIC_OFF, sltctl::PIC);
        assert!(ev.detach_ready);
        assert!(ev.released);
        assert_eq!(ev.power, None, "no power controller: the model never cuts power itself");
        assert!(p.slot.present(&p.cfg), "the model does not remove the card itself");
        let _ = p.ack(sltsta::CC);
        let ev = p.slot.remove_card(&mut p.cfg).expect("remove");
        assert_eq!(ev.link, Some(false));
        assert_eq!(ev.power, Some(false));
        assert!(ev.irq, "DLLSC with DLLSCE");
        assert_eq!(p.sta() & (sltsta::PDS | sltsta::PDC | sltsta::DLLSC), sltsta::PDC | sltsta::DLLSC);
        assert!(!p.slot.removal_pending());
    }

    #[test]
    fn abp_then_guest_power_off_with_power_controller() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let _ = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        let _ = p.ack(sltsta::ABP);
        let _ = p.cmd(sltctl::PIC_BLINK | sltctl::AIC_OFF, sltctl::PIC | sltctl::AIC);
        let _ = p.ack(sltsta::CC);
        // remove_board: PCC=1 first...
        let ev = p.cmd(sltctl::PCC, sltctl::PCC);
        assert_eq!(ev.power, Some(false), "function must become inaccessible");
        assert_eq!(ev.link, Some(false));
        assert!(!ev.detach_ready, "power indicator still blinking");
        assert_ne!(p.sta() & sltsta::DLLSC, 0);
        let _ = p.ack(sltsta::CC | sltsta::DLLSC);
        // ...then, a second later, the power indicator off.
        let ev = p.cmd(sltctl::PIC_OFF, sltctl::PIC);
        assert!(ev.detach_ready);
        let ev = p.slot.remove_card(&mut p.cfg).expect("remove");
        assert_eq!(ev.power, None, "already unpowered");
        assert_eq!(ev.link, None);
    }

    #[test]
    fn guest_button_cancel_does_not_release() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let _ = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        let _ = p.cmd(sltctl::PIC_BLINK, sltctl::PIC);
        // Operator presses again within 5 s: Linux cancels, power indicator back on.
        let _ = p.slot.press_button(&mut p.cfg).expect("abp");
        let ev = p.cmd(sltctl::PIC_ON | sltctl::AIC_OFF, sltctl::PIC | sltctl::AIC);
        assert!(!ev.detach_ready && !ev.released);
        assert!(p.slot.removal_pending(), "request still pending until cancelled");
        p.slot.cancel_removal();
        assert!(!p.slot.removal_pending());
    }

    #[test]
    fn guest_release_without_request_is_reported_but_not_detach_ready() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.cmd(sltctl::PCC | sltctl::PIC_OFF, sltctl::PCC | sltctl::PIC);
        assert!(ev.released);
        assert!(!ev.detach_ready);
        assert_eq!(ev.power, Some(false));
    }

    #[test]
    fn rewriting_an_already_released_slot_reports_nothing() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        let ev = p.cmd(sltctl::PCC | sltctl::PIC_OFF, sltctl::PCC | sltctl::PIC);
        assert!(ev.detach_ready);
        let ev = p.cmd(sltctl::PCC | sltctl::PIC_OFF | sltctl::AIC_ON, sltctl::PCC | sltctl::PIC | sltctl::AIC);
        assert!(!ev.detach_ready && !ev.released, "no new transition");
    }

    #[test]
    fn removal_request_of_released_slot_is_ready_at_once() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.cmd(sltctl::PCC | sltctl::PIC_OFF, sltctl::PCC | sltctl::PIC);
        let _ = p.ack(sltsta::EVENTS);
        let ev = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        assert!(ev.detach_ready);
        assert_eq!(p.sta() & sltsta::ABP, 0, "no button press needed");
    }

    #[test]
    fn removal_request_refusals() {
        let mut p = port();
        assert_eq!(p.slot.request_removal(&mut p.cfg, Duration::ZERO), Err(SlotError::Empty { slot: 5 }));
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.slot.request_removal(&mut p.cfg, Duration::from_secs(10)).expect("first");
        let e = p.slot.request_removal(&mut p.cfg, Duration::from_millis(12_500)).expect_err("repeat");
        assert_eq!(e, SlotError::AlreadyPending { slot: 5, ago_ms: 2500 });
        assert!(e.to_string().contains("2500 ms"), "{e}");
        assert!(p.slot.request_removal(&mut p.cfg, Duration::from_secs(15)).is_ok(), "after 5 s: press again");
        let _ = p.cmd(sltctl::PIC_BLINK, sltctl::PIC);
        assert_eq!(p.slot.request_removal(&mut p.cfg, Duration::from_secs(30)), Err(SlotError::GuestBusy { slot: 5 }));
        let _ = p.cmd(sltctl::PIC_ON, sltctl::PIC);
        let _ = p.write(CTL, 2, u32::from(p.ctl() | sltctl::EIC));
        assert_eq!(p.slot.request_removal(&mut p.cfg, Duration::from_secs(40)), Err(SlotError::Locked { slot: 5 }));
    }

    #[test]
    fn removal_request_needs_a_way_to_signal_release() {
        let mut p = Port::new(SlotConfig {
            power_indicator: false,
            power_controller: false,
            physical_slot: 9,
            ..SlotConfig::default()
        });
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        assert_eq!(p.slot.request_removal(&mut p.cfg, Duration::ZERO), Err(SlotError::NoReleaseSignal { slot: 9 }));
        let mut q = Port::new(SlotConfig { attention_button: false, physical_slot: 3, ..SlotConfig::default() });
        let _ = q.slot.cold_plug(&mut q.cfg).expect("plug");
        let _ = q.cmd(sltctl::PIC_ON, sltctl::PIC);
        assert_eq!(q.slot.request_removal(&mut q.cfg, Duration::ZERO), Err(SlotError::NoAttentionButton { slot: 3 }));
    }

    #[test]
    fn surprise_removal_clears_presence_and_link_immediately() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let ev = p.slot.remove_card(&mut p.cfg).expect("surprise");
        assert!(ev.irq);
        assert_eq!(ev.power, Some(false));
        assert_eq!(ev.link, Some(false));
        assert!(!p.slot.present(&p.cfg));
        assert!(!p.link());
        assert_eq!(p.sta() & sltsta::EVENTS, sltsta::PDC | sltsta::DLLSC);
        assert_eq!(p.slot.remove_card(&mut p.cfg), Err(SlotError::Empty { slot: 5 }));
        // Linux then disables the slot: power indicator off. Nothing left to detach.
        let ev = p.cmd(sltctl::PIC_OFF, sltctl::PIC);
        assert!(!ev.released && !ev.detach_ready);
    }

    #[test]
    fn surprise_removal_refused_while_interlock_engaged() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.write(CTL, 2, u32::from(p.ctl() | sltctl::EIC));
        assert_eq!(ev.emi, Some(true));
        assert_eq!(p.slot.remove_card(&mut p.cfg), Err(SlotError::Locked { slot: 5 }));
    }

    #[test]
    fn eic_write_toggles_eis_and_reads_zero() {
        let mut p = port();
        let ev = p.write(CTL, 2, u32::from(sltctl::EIC));
        assert_eq!(ev.emi, Some(true));
        assert_ne!(p.sta() & sltsta::EIS, 0);
        assert_eq!(p.ctl() & sltctl::EIC, 0);
        let _ = p.write(CTL, 2, 0);
        assert_ne!(p.sta() & sltsta::EIS, 0, "writing 0 does nothing");
        let ev = p.write(CTL + 1, 1, u32::from(sltctl::EIC >> 8));
        assert_eq!(ev.emi, Some(false), "byte write toggles back");
        assert_eq!(p.sta() & sltsta::EIS, 0);
    }

    #[test]
    fn eic_is_ignored_without_interlock() {
        let mut p = Port::new(SlotConfig { emi: false, ..SlotConfig::default() });
        let ev = p.write(CTL, 2, u32::from(sltctl::EIC));
        assert_eq!(ev.emi, None);
        assert_eq!(p.sta() & sltsta::EIS, 0);
    }

    #[test]
    fn power_controller_off_then_on_cycles_the_function() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.cmd(sltctl::PCC, sltctl::PCC);
        assert_eq!(ev.power, Some(false));
        assert!(!p.slot.card_powered(&p.cfg));
        let ev = p.cmd(0, sltctl::PCC);
        assert_eq!(ev.power, Some(true));
        assert_eq!(ev.link, Some(true));
        let ev = p.cmd(0, sltctl::PCC);
        assert_eq!(ev.power, None, "no change, no event");
    }

    #[test]
    fn powering_off_an_empty_slot_is_harmless() {
        let mut p = pcp_port();
        let _ = p.cmd(0, sltctl::PCC);
        let ev = p.cmd(sltctl::PCC, sltctl::PCC);
        assert_eq!(ev.power, None);
        assert_eq!(ev.link, None);
        assert!(!ev.released, "nothing to release");
    }

    #[test]
    fn pcc_is_read_only_without_power_controller() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.cmd(sltctl::PCC, sltctl::PCC);
        assert_eq!(p.ctl() & sltctl::PCC, 0);
        assert_eq!(ev.power, None);
    }

    #[test]
    fn mrl_open_and_close_raise_mrlsc() {
        let mut p = mrl_port();
        let _ = p.cmd(sltctl::MRLSCE | sltctl::HPIE, sltctl::MRLSCE | sltctl::HPIE);
        let _ = p.ack(sltsta::CC);
        let ev = p.slot.set_mrl(&mut p.cfg, true).expect("open");
        assert!(ev.irq);
        assert_eq!(p.sta() & (sltsta::MRLSS | sltsta::MRLSC), sltsta::MRLSS | sltsta::MRLSC);
        let ev = p.slot.set_mrl(&mut p.cfg, true).expect("again");
        assert!(ev.is_empty(), "no change, no event");
        let _ = p.ack(sltsta::MRLSC);
        let ev = p.slot.set_mrl(&mut p.cfg, false).expect("close");
        assert!(ev.irq);
        assert_eq!(p.sta() & (sltsta::MRLSS | sltsta::MRLSC), sltsta::MRLSC);
        assert_eq!(p.slot.view(&p.cfg).latch, Some(Latch::Closed));
    }

    #[test]
    fn mrl_open_cuts_power_and_refuses_power_on() {
        let mut p = mrl_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.slot.set_mrl(&mut p.cfg, true).expect("open");
        assert_eq!(ev.power, Some(false));
        assert_eq!(ev.link, Some(false));
        assert_ne!(p.ctl() & sltctl::PCC, 0, "power controller forced off");
        let ev = p.cmd(0, sltctl::PCC);
        assert_eq!(ev.power, None);
        assert_ne!(p.ctl() & sltctl::PCC, 0, "PCC=0 reverted while the MRL is open");
        assert_ne!(p.sta() & sltsta::CC, 0, "the command still completes");
        let ev = p.slot.set_mrl(&mut p.cfg, false).expect("close");
        assert_eq!(ev.power, None, "the guest must power on again");
        let ev = p.cmd(0, sltctl::PCC);
        assert_eq!(ev.power, Some(true));
    }

    #[test]
    fn mrl_without_power_controller_gates_power_directly() {
        let mut p = Port::new(SlotConfig { mrl_sensor: true, ..SlotConfig::default() });
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        assert_eq!(p.slot.set_mrl(&mut p.cfg, true).expect("open").power, Some(false));
        assert_eq!(p.slot.set_mrl(&mut p.cfg, false).expect("close").power, Some(true));
    }

    #[test]
    fn mrl_on_slot_without_sensor_is_refused() {
        let mut p = port();
        assert_eq!(p.slot.set_mrl(&mut p.cfg, true), Err(SlotError::NoMrlSensor { slot: 5 }));
    }

    #[test]
    fn press_button_on_slot_without_button_is_refused() {
        let mut p = Port::new(SlotConfig { attention_button: false, ..SlotConfig::default() });
        assert_eq!(p.slot.press_button(&mut p.cfg), Err(SlotError::NoAttentionButton { slot: 0 }));
    }

    #[test]
    fn link_disable_brings_the_link_down_and_up() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let ev = p.write(OFF + off::LNKCTL, 2, u32::from(lnkctl::LD));
        assert_eq!(ev.link, Some(false));
        assert!(ev.irq, "DLLSC");
        assert_eq!(ev.power, None, "still powered");
        let _ = p.ack(sltsta::DLLSC);
        let ev = p.write(OFF + off::LNKCTL, 2, 0);
        assert_eq!(ev.link, Some(true));
    }

    #[test]
    fn unrelated_config_writes_are_ignored() {
        let mut p = port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let ev = p.write(OFF + off::DEVCTL, 2, 0xf);
        assert!(ev.is_empty());
        let ev = p.write(0x04, 2, 0x7);
        assert!(ev.is_empty());
        assert_eq!(p.sta() & sltsta::CC, 0);
    }

    #[test]
    fn reset_restores_power_state_by_occupancy_and_clears_events() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        p.linux_init();
        let _ = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        let _ = p.write(CTL, 2, u32::from(p.ctl() | sltctl::EIC));
        assert!(p.slot.irq_level());
        p.cfg.reset(ResetKind::Hot);
        let ev = p.slot.reset(&mut p.cfg, ResetKind::Hot);
        assert_eq!(ev.irq_level, Some(false));
        assert!(!ev.irq);
        assert_eq!(ev.power, None, "populated slot stays powered");
        assert!(p.slot.present(&p.cfg), "presence is physical");
        assert!(p.link());
        assert_eq!(p.ctl(), sltctl::AIC_OFF | sltctl::PIC_ON);
        assert_eq!(p.sta(), sltsta::PDS, "events and EIS cleared");
        assert!(!p.slot.removal_pending());
        let mut q = pcp_port();
        q.cfg.reset(ResetKind::Cold);
        let ev = q.slot.reset(&mut q.cfg, ResetKind::Cold);
        assert!(ev.is_empty());
        assert_eq!(q.ctl(), sltctl::AIC_OFF | sltctl::PIC_OFF | sltctl::PCC, "empty slot: power off");
    }

    #[test]
    fn reset_after_guest_power_off_powers_a_populated_slot_again() {
        let mut p = pcp_port();
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.cmd(sltctl::PCC, sltctl::PCC);
        p.cfg.reset(ResetKind::Warm);
        let ev = p.slot.reset(&mut p.cfg, ResetKind::Warm);
        assert_eq!(ev.power, Some(true));
        assert_eq!(ev.link, Some(true));
    }

    #[test]
    fn view_reports_everything_for_info_pcie_slots() {
        let mut p = Port::new(SlotConfig {
            power_controller: true,
            mrl_sensor: true,
            physical_slot: 12,
            ..SlotConfig::default()
        });
        let _ = p.slot.cold_plug(&mut p.cfg).expect("plug");
        let _ = p.slot.request_removal(&mut p.cfg, Duration::ZERO).expect("request");
        let v = p.slot.view(&p.cfg);
        assert_eq!(
            v,
            SlotView {
                physical_slot: 12,
                hotplug: true,
                present: true,
                power: true,
                link_active: true,
                power_indicator: Some(Indicator::On),
                attention_indicator: Some(Indicator::Off),
                latch: Some(Latch::Closed),
                emi: Some(false),
                removal_pending: true,
            }
        );
        let s = v.to_string();
        assert_eq!(
            s,
            "slot 12: card present, power on, link up, power indicator on, attention indicator off, \
             latch closed, interlock released, removal pending"
        );
        let q = Port::new(SlotConfig {
            attention_indicator: false,
            power_indicator: false,
            emi: false,
            hotplug: false,
            ..SlotConfig::default()
        });
        assert_eq!(q.slot.view(&q.cfg).to_string(), "slot 0: empty, power on, link down, not hot-plug capable");
    }

    #[test]
    fn indicator_decoding() {
        assert_eq!(Indicator::from_bits(1), Indicator::On);
        assert_eq!(Indicator::from_bits(2), Indicator::Blink);
        assert_eq!(Indicator::from_bits(3), Indicator::Off);
        assert_eq!(Indicator::from_bits(0), Indicator::Reserved);
        assert_eq!(Indicator::Blink.to_string(), "blink");
    }

    #[test]
    fn events_merge_keeps_edges_and_latest_state() {
        let mut a = SlotEvents { irq: true, power: Some(false), irq_level: Some(true), ..SlotEvents::default() };
        a.merge(SlotEvents { link: Some(true), irq_level: Some(false), detach_ready: true, ..SlotEvents::default() });
        assert!(a.irq && a.detach_ready);
        assert_eq!((a.power, a.link, a.irq_level), (Some(false), Some(true), Some(false)));
        assert!(SlotEvents::default().is_empty());
    }

    #[test]
    fn full_linux_like_hotplug_cycle() {
        let mut p = port();
        p.linux_init();
        // device_add
        let ev = p.slot.insert(&mut p.cfg).expect("insert");
        assert!(ev.irq);
        let _ = p.ack(sltsta::PDC | sltsta::DLLSC);
        // board_added: clear LD, PIC blink, link check, PIC on
        let _ = p.write(OFF + off::LNKCTL, 2, 0);
        let _ = p.cmd(sltctl::PIC_BLINK, sltctl::PIC);
        let _ = p.ack(sltsta::CC);
        assert!(p.link());
        let _ = p.cmd(sltctl::PIC_ON | sltctl::AIC_OFF, sltctl::PIC | sltctl::AIC);
        let _ = p.ack(sltsta::CC);
        // device_del
        let ev = p.slot.request_removal(&mut p.cfg, Duration::from_secs(1)).expect("del");
        assert!(ev.irq);
        let _ = p.ack(sltsta::ABP);
        let _ = p.cmd(sltctl::PIC_BLINK | sltctl::AIC_OFF, sltctl::PIC | sltctl::AIC);
        let _ = p.ack(sltsta::CC);
        let ev = p.cmd(sltctl::PIC_OFF, sltctl::PIC);
        assert!(ev.detach_ready);
        let _ = p.ack(sltsta::CC);
        let ev = p.slot.remove_card(&mut p.cfg).expect("remove");
        assert!(ev.irq);
        let _ = p.ack(sltsta::PDC | sltsta::DLLSC);
        assert!(!p.slot.irq_level());
        // and again
        let ev = p.slot.insert(&mut p.cfg).expect("re-insert");
        assert!(ev.irq && ev.power == Some(true));
    }

    #[test]
    fn random_guest_and_operator_traffic_keeps_invariants() {
        let mut p = Port::new(SlotConfig {
            power_controller: true,
            mrl_sensor: true,
            physical_slot: 1,
            ..SlotConfig::default()
        });
        let mut x: u64 = 0x5eed_1234_abcd_ef01;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = match x % 9 {
                0 => p.slot.insert(&mut p.cfg).unwrap_or_default(),
                1 => p.slot.remove_card(&mut p.cfg).unwrap_or_default(),
                2 => p.slot.press_button(&mut p.cfg).unwrap_or_default(),
                3 => p.slot.set_mrl(&mut p.cfg, x & 0x100 != 0).unwrap_or_default(),
                4 => p.slot.request_removal(&mut p.cfg, Duration::from_millis(i * 100)).unwrap_or_default(),
                5 => p.slot.reset(&mut p.cfg, ResetKind::Hot),
                _ => {
                    let at = OFF + 0x10 + (x >> 8) as u16 % 0x10;
                    let size = [1u8, 2, 4][((x >> 16) % 3) as usize];
                    let _ = p.cfg.write(at, size, (x >> 32) as u32);
                    p.slot.on_config_write(&mut p.cfg, at, size, (x >> 32) as u32)
                }
            };
            let sta = p.sta();
            let ctl = p.ctl();
            // The link is up exactly when a powered card sits in a latched slot with LD clear.
            let ld = p.cfg.get_u16(OFF + off::LNKCTL) & lnkctl::LD != 0;
            let expect_link = sta & sltsta::PDS != 0 && ctl & sltctl::PCC == 0 && sta & sltsta::MRLSS == 0 && !ld;
            assert_eq!(p.link(), expect_link, "iteration {i}");
            assert_eq!(ctl & sltctl::EIC, 0);
            assert!(!(sta & sltsta::MRLSS != 0 && ctl & sltctl::PCC == 0), "no power with MRL open");
            let enabled = (ctl & 0x1f) | if ctl & sltctl::DLLSCE != 0 { sltsta::DLLSC } else { 0 };
            let cond = ctl & sltctl::HPIE != 0 && sta & enabled & sltsta::EVENTS != 0;
            assert_eq!(p.slot.irq_level(), cond, "level tracks the condition");
        }
    }
}
