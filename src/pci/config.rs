//! Configuration space of one PCI function: storage, per-byte register masks, the guest write
//! rule, resets, the standard header table and INTx pin helpers.
//!
//! # Model
//! A [`ConfigSpace`] holds, for every byte, the live value, the reset (init) value and four masks:
//!
//! | mask | meaning | guest write | reset (non-cold) | reset (cold) |
//! |---|---|---|---|---|
//! | none | RO | ignored | init | init |
//! | `wmask` | RW | `new = (old & !w) \| (val & w)` | init | init |
//! | `w1cmask` | RW1C | `new &= !(val & w1c)` | init | init |
//! | `sticky` (+ w/w1c/none) | RWS / RW1CS / ROS | as the base kind | **kept** | init |
//! | `hwinit` | HwInit | ignored (RO) | kept | **kept** |
//!
//! The write rule is QEMU's `pci_default_write_config`, applied per byte (see
//! /work/shared/reference/pcie-spec.md, "Notation"). HwInit bits hold strap-like values set by the
//! model or firmware ([`ConfigSpace::set_u8`] and friends bypass the masks); no reset kind changes
//! them, so a model that fills in e.g. a slot number after construction does not lose it on a
//! power cycle.
//!
//! Register behaviour is data: a register block (the header, a capability) is a table of
//! [`RegSpec`]s applied with [`ConfigSpace::apply_table`]. Unlisted bytes are RO 0; this differs
//! from QEMU, which makes 0x40.. writable scratch by default.
//!
//! # Guest accesses
//! Sizes 1, 2 and 4 are accepted at **any** offset (unaligned and dword-straddling accesses
//! included) as long as the whole access lies inside the function's config size (256 bytes for a
//! conventional function, 4096 for PCI Express). Bytes are processed in ascending order, each
//! with its own masks, and combined little-endian. Any other size, or an access running past
//! the config size, is ignored as a whole: reads return all-ones and writes change nothing, and
//! the caller gets [`Access::Ignored`] so it can log (rate-limited). Guest accesses never return
//! `Result`: they always complete.

use std::fmt;

use thiserror::Error;

/// Config size of a PCI Express function (and of the storage of every [`ConfigSpace`]).
pub const CONFIG_SPACE_SIZE: u16 = 4096;
/// Config size of a conventional PCI function.
pub const LEGACY_CONFIG_SPACE_SIZE: u16 = 256;
/// Size of the standard header (type 0 or 1).
pub const HEADER_SIZE: u16 = 0x40;

/// Standard header register offsets.
pub mod reg {
    /// Vendor ID (16).
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (16).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command (16).
    pub const COMMAND: u16 = 0x04;
    /// Status (16).
    pub const STATUS: u16 = 0x06;
    /// Revision ID (8).
    pub const REVISION_ID: u16 = 0x08;
    /// Class code (24: prog-if, sub-class, base class).
    pub const CLASS_CODE: u16 = 0x09;
    /// Cache line size (8).
    pub const CACHE_LINE_SIZE: u16 = 0x0C;
    /// Latency timer (8).
    pub const LATENCY_TIMER: u16 = 0x0D;
    /// Header type (8; bit 7 = multi-function).
    pub const HEADER_TYPE: u16 = 0x0E;
    /// BIST (8).
    pub const BIST: u16 = 0x0F;
    /// First base address register.
    pub const BAR0: u16 = 0x10;
    /// Cardbus CIS pointer (type 0).
    pub const CARDBUS_CIS: u16 = 0x28;
    /// Subsystem vendor ID (type 0).
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
    /// Subsystem ID (type 0).
    pub const SUBSYSTEM_ID: u16 = 0x2E;
    /// Expansion ROM base address (type 0).
    pub const ROM_ADDRESS: u16 = 0x30;
    /// Capabilities pointer (8).
    pub const CAPABILITY_LIST: u16 = 0x34;
    /// Expansion ROM base address (type 1).
    pub const ROM_ADDRESS_TYPE1: u16 = 0x38;
    /// Interrupt line (8).
    pub const INTERRUPT_LINE: u16 = 0x3C;
    /// Interrupt pin (8).
    pub const INTERRUPT_PIN: u16 = 0x3D;
    /// Min_Gnt (type 0).
    pub const MIN_GNT: u16 = 0x3E;
    /// Max_Lat (type 0).
    pub const MAX_LAT: u16 = 0x3F;
}

/// Command register bits.
pub mod cmd {
    /// I/O space decode.
    pub const IO: u16 = 1 << 0;
    /// Memory space decode.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master enable (MSI/MSI-X writes need it).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Parity error response.
    pub const PARITY: u16 = 1 << 6;
    /// SERR# enable.
    pub const SERR: u16 = 1 << 8;
    /// INTx disable.
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// Bits a guest may write (QEMU `pci_init_wmask`).
    /// (QEMU's command wmask: Parity Error Response is read-only 0, as in its q35 devices.)
    pub const WRITABLE: u16 = IO | MEMORY | BUS_MASTER | SERR | INTX_DISABLE;
}

/// Status register bits.
pub mod status {
    /// Interrupt status (RO, reflects the function's INTx level).
    pub const INTERRUPT: u16 = 1 << 3;
    /// Capabilities list present (RO).
    pub const CAP_LIST: u16 = 1 << 4;
    /// Master data parity error (RW1C).
    pub const MASTER_PARITY: u16 = 1 << 8;
    /// Signaled target abort (RW1C).
    pub const SIG_TARGET_ABORT: u16 = 1 << 11;
    /// Received target abort (RW1C).
    pub const REC_TARGET_ABORT: u16 = 1 << 12;
    /// Received master abort (RW1C).
    pub const REC_MASTER_ABORT: u16 = 1 << 13;
    /// Signaled system error (RW1C).
    pub const SIG_SYSTEM_ERROR: u16 = 1 << 14;
    /// Detected parity error (RW1C).
    pub const DETECTED_PARITY: u16 = 1 << 15;
    /// Bits a guest clears by writing 1 (QEMU `pci_init_w1cmask`).
    pub const W1C: u16 =
        MASTER_PARITY | SIG_TARGET_ABORT | REC_TARGET_ABORT | REC_MASTER_ABORT | SIG_SYSTEM_ERROR | DETECTED_PARITY;
}

/// Which config size a function exposes to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    /// Conventional PCI: 256 bytes.
    Conventional,
    /// PCI Express: 4096 bytes (extended capabilities at 0x100..).
    Express,
}

impl ConfigKind {
    /// Size in bytes.
    pub const fn size(self) -> u16 {
        match self {
            ConfigKind::Conventional => LEGACY_CONFIG_SPACE_SIZE,
            ConfigKind::Express => CONFIG_SPACE_SIZE,
        }
    }
}

/// Header layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HeaderType {
    /// Type 0: endpoint (6 BARs, ROM at 0x30).
    #[default]
    Type0,
    /// Type 1: PCI-to-PCI bridge (2 BARs, ROM at 0x38).
    Type1,
}

impl HeaderType {
    /// Value of the Header Type register's low 7 bits.
    pub const fn value(self) -> u8 {
        match self {
            HeaderType::Type0 => 0,
            HeaderType::Type1 => 1,
        }
    }
    /// Number of BARs in the header.
    pub const fn bar_count(self) -> u8 {
        match self {
            HeaderType::Type0 => 6,
            HeaderType::Type1 => 2,
        }
    }
    /// Offset of the expansion ROM BAR.
    pub const fn rom_offset(self) -> u16 {
        match self {
            HeaderType::Type0 => reg::ROM_ADDRESS,
            HeaderType::Type1 => reg::ROM_ADDRESS_TYPE1,
        }
    }
}

/// Reset kinds. Only [`ResetKind::Cold`] clears sticky bits; no kind touches HwInit bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetKind {
    /// Power-on (fundamental cold) reset: everything except HwInit back to init values.
    Cold,
    /// Platform reset with power kept (e.g. a guest reboot); sticky bits kept, as on devices
    /// running on auxiliary power.
    Warm,
    /// Hot reset (in-band, e.g. link hot reset); sticky bits kept.
    Hot,
    /// Secondary Bus Reset from the parent bridge; sticky bits kept.
    SecondaryBusReset,
    /// Function Level Reset; sticky bits kept.
    Flr,
}

impl ResetKind {
    /// Whether this kind preserves RWS/RW1CS/ROS bits.
    pub const fn keeps_sticky(self) -> bool {
        !matches!(self, ResetKind::Cold)
    }
}

/// Masks of one register (1, 2 or 4 bytes, little-endian). A bit set in none of them is RO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RegMasks {
    /// RW bits.
    pub wmask: u32,
    /// RW1C bits (must not overlap `wmask`).
    pub w1c: u32,
    /// Sticky bits (may overlap `wmask`/`w1c`: RWS/RW1CS; alone: ROS).
    pub sticky: u32,
    /// HwInit bits (RO to the guest; must not overlap `wmask`/`w1c`).
    pub hwinit: u32,
}

impl RegMasks {
    /// All bits RO.
    pub const RO: RegMasks = RegMasks { wmask: 0, w1c: 0, sticky: 0, hwinit: 0 };

    /// `mask` RW, the rest RO.
    pub const fn rw(mask: u32) -> Self {
        RegMasks { wmask: mask, w1c: 0, sticky: 0, hwinit: 0 }
    }
    /// `mask` RW1C, the rest RO.
    pub const fn w1c(mask: u32) -> Self {
        RegMasks { wmask: 0, w1c: mask, sticky: 0, hwinit: 0 }
    }
    /// `mask` HwInit, the rest RO.
    pub const fn hwinit(mask: u32) -> Self {
        RegMasks { wmask: 0, w1c: 0, sticky: 0, hwinit: mask }
    }
    /// Adds RW bits.
    pub const fn with_rw(mut self, mask: u32) -> Self {
        self.wmask |= mask;
        self
    }
    /// Adds RW1C bits.
    pub const fn with_w1c(mut self, mask: u32) -> Self {
        self.w1c |= mask;
        self
    }
    /// Adds sticky bits.
    pub const fn with_sticky(mut self, mask: u32) -> Self {
        self.sticky |= mask;
        self
    }
    /// Adds HwInit bits.
    pub const fn with_hwinit(mut self, mask: u32) -> Self {
        self.hwinit |= mask;
        self
    }
}

/// One register of a register table: offset (relative to the block), width, init value, masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegSpec {
    /// Offset relative to the block base.
    pub off: u16,
    /// Width in bytes: 1, 2 or 4.
    pub width: u8,
    /// Init (reset) value.
    pub init: u32,
    /// Masks.
    pub masks: RegMasks,
}

impl RegSpec {
    /// A read-only register holding `init`.
    pub const fn ro(off: u16, width: u8, init: u32) -> Self {
        RegSpec { off, width, init, masks: RegMasks::RO }
    }
    /// A register with explicit masks.
    pub const fn new(off: u16, width: u8, init: u32, masks: RegMasks) -> Self {
        RegSpec { off, width, init, masks }
    }
    /// Adds RW bits.
    pub const fn rw(mut self, mask: u32) -> Self {
        self.masks = self.masks.with_rw(mask);
        self
    }
    /// Adds RW1C bits.
    pub const fn w1c(mut self, mask: u32) -> Self {
        self.masks = self.masks.with_w1c(mask);
        self
    }
    /// Adds sticky bits.
    pub const fn sticky(mut self, mask: u32) -> Self {
        self.masks = self.masks.with_sticky(mask);
        self
    }
    /// Adds HwInit bits.
    pub const fn hwinit(mut self, mask: u32) -> Self {
        self.masks = self.masks.with_hwinit(mask);
        self
    }
}

/// Why a guest config access was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Size not 1, 2 or 4.
    BadSize {
        /// Offset.
        off: u16,
        /// Size given.
        size: u8,
    },
    /// The access runs past the config size.
    OutOfRange {
        /// Offset.
        off: u16,
        /// Size.
        size: u8,
        /// Config size of the function.
        limit: u16,
    },
}

impl Ignored {
    /// The value a read returns: all-ones of the access size (32 bits for odd sizes).
    pub const fn all_ones(&self) -> u32 {
        let size = match self {
            Ignored::BadSize { size, .. } | Ignored::OutOfRange { size, .. } => *size,
        };
        ones32(size)
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::BadSize { off, size } => write!(f, "config access at {off:#x} of bad size {size}"),
            Ignored::OutOfRange { off, size, limit } => {
                write!(f, "config access at {off:#x} size {size} runs past config size {limit:#x}")
            }
        }
    }
}

/// Outcome of a guest config access.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The access was performed.
    Applied,
    /// The access was dropped (reads return all-ones).
    Ignored(Ignored),
}

impl Access {
    /// Why it was dropped, if it was.
    pub const fn ignored(self) -> Option<Ignored> {
        match self {
            Access::Applied => None,
            Access::Ignored(i) => Some(i),
        }
    }
    /// Whether it was dropped.
    pub const fn is_ignored(self) -> bool {
        matches!(self, Access::Ignored(_))
    }
}

/// Errors of model-side (setup) operations on a config space.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Width not 1, 2 or 4.
    #[error("register at {off:#x} has bad width {width} (expected 1, 2 or 4)")]
    BadWidth {
        /// Offset.
        off: u16,
        /// Width given.
        width: u8,
    },
    /// The register (or block) does not fit in the config size.
    #[error("register at {off:#x} of {len} bytes runs past config size {limit:#x}")]
    OutOfRange {
        /// Offset (absolute; saturated at u16::MAX if the sum overflowed).
        off: u16,
        /// Length in bytes.
        len: u16,
        /// Config size.
        limit: u16,
    },
    /// A mask or init value has bits beyond the register width.
    #[error("register at {off:#x} (width {width}): {what} {value:#x} has bits beyond the register")]
    TooWide {
        /// Offset.
        off: u16,
        /// Width.
        width: u8,
        /// Which value ("init", "wmask", ...).
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// Bits both RW and RW1C.
    #[error("register at {off:#x}: bits {bits:#x} are both RW and RW1C")]
    RwAndW1c {
        /// Offset.
        off: u16,
        /// Conflicting bits.
        bits: u32,
    },
    /// HwInit bits that the guest could write.
    #[error("register at {off:#x}: HwInit bits {bits:#x} are also guest-writable")]
    HwInitWritable {
        /// Offset.
        off: u16,
        /// Conflicting bits.
        bits: u32,
    },
}

/// All-ones of `size` bytes as a u32 (0xffff_ffff for sizes outside 1..=3).
pub const fn ones32(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        3 => 0xff_ffff,
        _ => 0xffff_ffff,
    }
}

const fn width_mask(width: u8) -> u32 {
    match width {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// Per-byte masks of one byte (see [`ConfigSpace::byte_masks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ByteMasks {
    /// RW bits.
    pub wmask: u8,
    /// RW1C bits.
    pub w1c: u8,
    /// Sticky bits.
    pub sticky: u8,
    /// HwInit bits.
    pub hwinit: u8,
}

/// Config space of one function: live values, init values and per-byte masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    kind: ConfigKind,
    data: Vec<u8>,
    init: Vec<u8>,
    wmask: Vec<u8>,
    w1cmask: Vec<u8>,
    sticky: Vec<u8>,
    hwinit: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Live,
    Both,
}

impl ConfigSpace {
    /// An all-zero, all-RO config space of the given kind.
    pub fn new(kind: ConfigKind) -> Self {
        let n = usize::from(kind.size());
        ConfigSpace {
            kind,
            data: vec![0; n],
            init: vec![0; n],
            wmask: vec![0; n],
            w1cmask: vec![0; n],
            sticky: vec![0; n],
            hwinit: vec![0; n],
        }
    }

    /// Conventional or Express.
    pub fn kind(&self) -> ConfigKind {
        self.kind
    }

    /// Config size in bytes (256 or 4096).
    pub fn size(&self) -> u16 {
        self.kind.size()
    }

    /// The live bytes (length = config size), e.g. for [`crate::pci::caps::walk_standard`].
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn check_access(&self, off: u16, size: u8) -> Option<Ignored> {
        if !matches!(size, 1 | 2 | 4) {
            return Some(Ignored::BadSize { off, size });
        }
        if u32::from(off) + u32::from(size) > u32::from(self.size()) {
            return Some(Ignored::OutOfRange { off, size, limit: self.size() });
        }
        None
    }

    fn check_reg(&self, off: u16, width: u8) -> Result<(), ConfigError> {
        if !matches!(width, 1 | 2 | 4) {
            return Err(ConfigError::BadWidth { off, width });
        }
        self.check_block(off, u16::from(width))
    }

    fn check_block(&self, off: u16, len: u16) -> Result<(), ConfigError> {
        if u32::from(off) + u32::from(len) > u32::from(self.size()) {
            return Err(ConfigError::OutOfRange { off, len, limit: self.size() });
        }
        Ok(())
    }

    /// Guest read of `size` bytes at `off` (see the module docs for the access rules).
    pub fn read(&self, off: u16, size: u8) -> (u32, Access) {
        match self.check_access(off, size) {
            Some(ig) => (ig.all_ones(), Access::Ignored(ig)),
            None => (self.get_le(&self.data, off, size), Access::Applied),
        }
    }

    /// Guest write of the low `size` bytes of `val` at `off`, through the masks.
    pub fn write(&mut self, off: u16, size: u8, val: u32) -> Access {
        if let Some(ig) = self.check_access(off, size) {
            return Access::Ignored(ig);
        }
        for (i, b) in val.to_le_bytes().into_iter().take(usize::from(size)).enumerate() {
            let idx = usize::from(off) + i;
            let w = self.wmask.get(idx).copied().unwrap_or(0);
            let c = self.w1cmask.get(idx).copied().unwrap_or(0);
            if let Some(d) = self.data.get_mut(idx) {
                let new = (*d & !w) | (b & w);
                *d = new & !(b & c);
            }
        }
        Access::Applied
    }

    /// Resets live values per `kind` (see [`ResetKind`]).
    pub fn reset(&mut self, kind: ResetKind) {
        let keep_sticky = kind.keeps_sticky();
        let iter = self.data.iter_mut().zip(&self.init).zip(&self.sticky).zip(&self.hwinit);
        for (((d, i), s), h) in iter {
            let keep = h | if keep_sticky { *s } else { 0 };
            *d = (*d & keep) | (i & !keep);
        }
    }

    fn get_le(&self, v: &[u8], off: u16, n: u8) -> u32 {
        (0..usize::from(n.min(4))).fold(0u32, |acc, i| {
            let b = v.get(usize::from(off) + i).copied().unwrap_or(0xff);
            acc | (u32::from(b) << (8 * i))
        })
    }

    fn set_le(&mut self, off: u16, n: u8, val: u32, target: Target) {
        for (i, b) in val.to_le_bytes().into_iter().take(usize::from(n)).enumerate() {
            let idx = usize::from(off) + i;
            if let Some(d) = self.data.get_mut(idx) {
                *d = b;
            }
            if target == Target::Both {
                if let Some(d) = self.init.get_mut(idx) {
                    *d = b;
                }
            }
        }
    }

    /// Model-side read of one byte (0xff outside the config size).
    pub fn get_u8(&self, off: u16) -> u8 {
        self.data.get(usize::from(off)).copied().unwrap_or(0xff)
    }
    /// Model-side read of a little-endian u16 (bytes outside read 0xff).
    pub fn get_u16(&self, off: u16) -> u16 {
        self.get_le(&self.data, off, 2) as u16
    }
    /// Model-side read of a little-endian u32 (bytes outside read 0xff).
    pub fn get_u32(&self, off: u16) -> u32 {
        self.get_le(&self.data, off, 4)
    }
    /// Init (reset) value of a byte.
    pub fn default_u8(&self, off: u16) -> u8 {
        self.init.get(usize::from(off)).copied().unwrap_or(0xff)
    }
    /// Init (reset) value of a u16.
    pub fn default_u16(&self, off: u16) -> u16 {
        self.get_le(&self.init, off, 2) as u16
    }
    /// Init (reset) value of a u32.
    pub fn default_u32(&self, off: u16) -> u32 {
        self.get_le(&self.init, off, 4)
    }

    /// Model-side write of a live byte, bypassing masks (bytes outside the config size are dropped).
    pub fn set_u8(&mut self, off: u16, val: u8) {
        self.set_le(off, 1, u32::from(val), Target::Live);
    }
    /// Model-side write of a live u16, bypassing masks.
    pub fn set_u16(&mut self, off: u16, val: u16) {
        self.set_le(off, 2, u32::from(val), Target::Live);
    }
    /// Model-side write of a live u32, bypassing masks.
    pub fn set_u32(&mut self, off: u16, val: u32) {
        self.set_le(off, 4, val, Target::Live);
    }
    /// Sets both the live and the init value of a byte.
    pub fn set_default_u8(&mut self, off: u16, val: u8) {
        self.set_le(off, 1, u32::from(val), Target::Both);
    }
    /// Sets both the live and the init value of a u16.
    pub fn set_default_u16(&mut self, off: u16, val: u16) {
        self.set_le(off, 2, u32::from(val), Target::Both);
    }
    /// Sets both the live and the init value of a u32.
    pub fn set_default_u32(&mut self, off: u16, val: u32) {
        self.set_le(off, 4, val, Target::Both);
    }
    /// Model-side read-modify-write of a live u16: clears `clear`, then sets `set`.
    pub fn update_u16(&mut self, off: u16, clear: u16, set: u16) {
        let v = (self.get_u16(off) & !clear) | set;
        self.set_u16(off, v);
    }
    /// Model-side read-modify-write of a live u32: clears `clear`, then sets `set`.
    pub fn update_u32(&mut self, off: u16, clear: u32, set: u32) {
        let v = (self.get_u32(off) & !clear) | set;
        self.set_u32(off, v);
    }
    /// Read-modify-write of both the live and the init value of a u16.
    pub fn update_default_u16(&mut self, off: u16, clear: u16, set: u16) {
        let live = (self.get_u16(off) & !clear) | set;
        let init = (self.default_u16(off) & !clear) | set;
        self.set_le(off, 2, u32::from(init), Target::Both);
        self.set_u16(off, live);
    }

    fn validate(&self, off: u16, width: u8, init: u32, m: &RegMasks) -> Result<(), ConfigError> {
        self.check_reg(off, width)?;
        let wm = width_mask(width);
        for (what, value) in
            [("init", init), ("wmask", m.wmask), ("w1c", m.w1c), ("sticky", m.sticky), ("hwinit", m.hwinit)]
        {
            if value & !wm != 0 {
                return Err(ConfigError::TooWide { off, width, what, value });
            }
        }
        if m.wmask & m.w1c != 0 {
            return Err(ConfigError::RwAndW1c { off, bits: m.wmask & m.w1c });
        }
        if m.hwinit & (m.wmask | m.w1c) != 0 {
            return Err(ConfigError::HwInitWritable { off, bits: m.hwinit & (m.wmask | m.w1c) });
        }
        Ok(())
    }

    fn store_masks(&mut self, off: u16, width: u8, m: &RegMasks) {
        let bytes = [m.wmask, m.w1c, m.sticky, m.hwinit].map(u32::to_le_bytes);
        let [w, c, s, h] = bytes;
        for i in 0..usize::from(width) {
            let idx = usize::from(off) + i;
            let pairs =
                [(&mut self.wmask, &w), (&mut self.w1cmask, &c), (&mut self.sticky, &s), (&mut self.hwinit, &h)];
            for (dst, src) in pairs {
                if let (Some(d), Some(b)) = (dst.get_mut(idx), src.get(i)) {
                    *d = *b;
                }
            }
        }
    }

    /// Sets the masks of the register at `off` (width 1, 2 or 4), leaving values alone.
    pub fn set_masks(&mut self, off: u16, width: u8, masks: RegMasks) -> Result<(), ConfigError> {
        self.validate(off, width, 0, &masks)?;
        self.store_masks(off, width, &masks);
        Ok(())
    }

    /// Masks of the register at `off` (bytes outside the config size contribute 0).
    pub fn reg_masks(&self, off: u16, width: u8) -> RegMasks {
        RegMasks {
            wmask: self.get_le_masked(&self.wmask, off, width),
            w1c: self.get_le_masked(&self.w1cmask, off, width),
            sticky: self.get_le_masked(&self.sticky, off, width),
            hwinit: self.get_le_masked(&self.hwinit, off, width),
        }
    }

    fn get_le_masked(&self, v: &[u8], off: u16, width: u8) -> u32 {
        (0..usize::from(width.min(4))).fold(0u32, |acc, i| {
            let b = v.get(usize::from(off) + i).copied().unwrap_or(0);
            acc | (u32::from(b) << (8 * i))
        })
    }

    /// Masks of one byte.
    pub fn byte_masks(&self, off: u16) -> ByteMasks {
        let idx = usize::from(off);
        let g = |v: &Vec<u8>| v.get(idx).copied().unwrap_or(0);
        ByteMasks { wmask: g(&self.wmask), w1c: g(&self.w1cmask), sticky: g(&self.sticky), hwinit: g(&self.hwinit) }
    }

    /// Applies one register spec at `base + spec.off`: sets init and live value and masks.
    pub fn apply_reg(&mut self, base: u16, spec: &RegSpec) -> Result<(), ConfigError> {
        let off = base.checked_add(spec.off).ok_or(ConfigError::OutOfRange {
            off: u16::MAX,
            len: u16::from(spec.width),
            limit: self.size(),
        })?;
        self.validate(off, spec.width, spec.init, &spec.masks)?;
        self.set_le(off, spec.width, spec.init, Target::Both);
        self.store_masks(off, spec.width, &spec.masks);
        Ok(())
    }

    /// Applies a register table at `base`. Every entry is validated before any is applied.
    pub fn apply_table(&mut self, base: u16, table: &[RegSpec]) -> Result<(), ConfigError> {
        for spec in table {
            let off = base.checked_add(spec.off).ok_or(ConfigError::OutOfRange {
                off: u16::MAX,
                len: u16::from(spec.width),
                limit: self.size(),
            })?;
            self.validate(off, spec.width, spec.init, &spec.masks)?;
        }
        table.iter().try_for_each(|spec| self.apply_reg(base, spec))
    }

    /// Makes `[off, off+len)` RO zero (values, init values and masks).
    pub fn clear(&mut self, off: u16, len: u16) -> Result<(), ConfigError> {
        self.check_block(off, len)?;
        let range = usize::from(off)..usize::from(off) + usize::from(len);
        for v in
            [&mut self.data, &mut self.init, &mut self.wmask, &mut self.w1cmask, &mut self.sticky, &mut self.hwinit]
        {
            if let Some(s) = v.get_mut(range.clone()) {
                s.fill(0);
            }
        }
        Ok(())
    }

    /// Vendor ID.
    pub fn vendor_id(&self) -> u16 {
        self.get_u16(reg::VENDOR_ID)
    }
    /// Device ID.
    pub fn device_id(&self) -> u16 {
        self.get_u16(reg::DEVICE_ID)
    }
    /// Command register.
    pub fn command(&self) -> u16 {
        self.get_u16(reg::COMMAND)
    }
    /// Status register.
    pub fn status(&self) -> u16 {
        self.get_u16(reg::STATUS)
    }
    /// Header type (low 7 bits), or `None` for a reserved value.
    pub fn header_type(&self) -> Option<HeaderType> {
        match self.get_u8(reg::HEADER_TYPE) & 0x7f {
            0 => Some(HeaderType::Type0),
            1 => Some(HeaderType::Type1),
            _ => None,
        }
    }
    /// Interrupt pin, if the function has one.
    pub fn interrupt_pin(&self) -> Option<IntxPin> {
        IntxPin::from_register(self.get_u8(reg::INTERRUPT_PIN))
    }
}

/// IDs of a function's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HeaderIds {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code: `base << 16 | sub << 8 | prog_if` (only the low 24 bits are used).
    pub class_code: u32,
    /// Subsystem vendor ID (type 0 only).
    pub subsystem_vendor_id: u16,
    /// Subsystem ID (type 0 only).
    pub subsystem_id: u16,
}

/// The register table of the standard header (QEMU masks): IDs/class RO; Command RW
/// [`cmd::WRITABLE`]; Status RW1C [`status::W1C`]; cache line size RW; latency timer and BIST RO 0;
/// header type RO (bit 7 = `multifunction`); Interrupt Line RW; Interrupt Pin RO = `pin`; and for
/// type 0 the subsystem IDs RO. BARs, ROM, the capability pointer and (type 1) the bridge
/// registers stay RO 0 here: [`crate::pci::bar`] and [`crate::pci::caps`] open them.
pub fn header_regs(ids: &HeaderIds, header: HeaderType, multifunction: bool, pin: Option<IntxPin>) -> Vec<RegSpec> {
    let ht = header.value() | if multifunction { 0x80 } else { 0 };
    let pin = pin.map_or(0, IntxPin::register_value);
    let mut v = vec![
        RegSpec::ro(reg::VENDOR_ID, 2, u32::from(ids.vendor_id)),
        RegSpec::ro(reg::DEVICE_ID, 2, u32::from(ids.device_id)),
        RegSpec::ro(reg::COMMAND, 2, 0).rw(u32::from(cmd::WRITABLE)),
        RegSpec::ro(reg::STATUS, 2, 0).w1c(u32::from(status::W1C)),
        RegSpec::ro(reg::REVISION_ID, 4, ((ids.class_code & 0xff_ffff) << 8) | u32::from(ids.revision)),
        RegSpec::ro(reg::CACHE_LINE_SIZE, 1, 0).rw(0xff),
        RegSpec::ro(reg::LATENCY_TIMER, 1, 0),
        RegSpec::ro(reg::HEADER_TYPE, 1, u32::from(ht)),
        RegSpec::ro(reg::BIST, 1, 0),
        RegSpec::ro(reg::INTERRUPT_LINE, 1, 0).rw(0xff),
        RegSpec::ro(reg::INTERRUPT_PIN, 1, u32::from(pin)),
    ];
    if header == HeaderType::Type0 {
        v.push(RegSpec::ro(reg::SUBSYSTEM_VENDOR_ID, 2, u32::from(ids.subsystem_vendor_id)));
        v.push(RegSpec::ro(reg::SUBSYSTEM_ID, 2, u32::from(ids.subsystem_id)));
    }
    v
}

/// An INTx pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntxPin {
    /// INTA#.
    A,
    /// INTB#.
    B,
    /// INTC#.
    C,
    /// INTD#.
    D,
}

impl IntxPin {
    /// Pin from an index 0-3 (taken modulo 4).
    pub const fn from_index(i: u8) -> Self {
        match i % 4 {
            0 => IntxPin::A,
            1 => IntxPin::B,
            2 => IntxPin::C,
            _ => IntxPin::D,
        }
    }
    /// Index 0-3 (A-D), as `Effect::PciIntx::intx` expects.
    pub const fn index(self) -> u8 {
        match self {
            IntxPin::A => 0,
            IntxPin::B => 1,
            IntxPin::C => 2,
            IntxPin::D => 3,
        }
    }
    /// Interrupt Pin register encoding (1-4).
    pub const fn register_value(self) -> u8 {
        self.index() + 1
    }
    /// From the Interrupt Pin register (0 or above 4 = no pin).
    pub const fn from_register(v: u8) -> Option<Self> {
        match v {
            1..=4 => Some(IntxPin::from_index(v - 1)),
            _ => None,
        }
    }
    /// The standard bridge swizzle: the pin this one appears as on the parent bus, for a device
    /// in slot `dev` of the secondary bus: `(pin + dev) % 4`.
    pub const fn swizzle(self, dev: u8) -> Self {
        IntxPin::from_index(self.index() + dev % 4)
    }
}

impl fmt::Display for IntxPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            IntxPin::A => 'A',
            IntxPin::B => 'B',
            IntxPin::C => 'C',
            IntxPin::D => 'D',
        };
        write!(f, "INT{c}")
    }
}

/// The pin a device's `pin` shows up as after crossing `path` bridges, where `path` lists the
/// device numbers from the device's own slot upwards (one swizzle per bridge crossed).
pub fn swizzle_path(pin: IntxPin, path: &[u8]) -> IntxPin {
    path.iter().fold(pin, |p, &dev| p.swizzle(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(ConfigKind::Express)
    }

    fn with_reg(spec: RegSpec) -> ConfigSpace {
        let mut c = space();
        c.apply_reg(0x40, &spec).expect("apply");
        c
    }

    fn rd(c: &ConfigSpace, off: u16, size: u8) -> u32 {
        let (v, a) = c.read(off, size);
        assert_eq!(a, Access::Applied, "read {off:#x}/{size}");
        v
    }

    fn wr(c: &mut ConfigSpace, off: u16, size: u8, val: u32) {
        assert_eq!(c.write(off, size, val), Access::Applied, "write {off:#x}/{size}");
    }

    #[test]
    fn new_space_reads_zero() {
        let c = space();
        assert_eq!(rd(&c, 0, 4), 0);
        assert_eq!(rd(&c, 0xffc, 4), 0);
    }

    #[test]
    fn new_space_is_read_only() {
        let mut c = space();
        wr(&mut c, 0x40, 4, 0xffff_ffff);
        assert_eq!(rd(&c, 0x40, 4), 0);
    }

    #[test]
    fn express_size_is_4k() {
        assert_eq!(space().size(), 4096);
        assert_eq!(space().bytes().len(), 4096);
    }

    #[test]
    fn conventional_read_beyond_256_is_ignored_all_ones() {
        let c = ConfigSpace::new(ConfigKind::Conventional);
        let (v, a) = c.read(0x100, 4);
        assert_eq!(v, 0xffff_ffff);
        assert_eq!(a, Access::Ignored(Ignored::OutOfRange { off: 0x100, size: 4, limit: 0x100 }));
    }

    #[test]
    fn conventional_write_beyond_256_is_ignored() {
        let mut c = ConfigSpace::new(ConfigKind::Conventional);
        assert!(c.write(0x100, 1, 0xff).is_ignored());
        assert_eq!(c.get_u8(0x100), 0xff, "model view outside the space is all-ones");
    }

    #[test]
    fn express_read_at_4k_is_ignored() {
        let (v, a) = space().read(0x1000, 1);
        assert_eq!(v, 0xff);
        assert!(a.is_ignored());
    }

    #[test]
    fn read_combines_bytes_little_endian() {
        let mut c = space();
        c.set_u32(0x40, 0x4433_2211);
        assert_eq!(rd(&c, 0x40, 4), 0x4433_2211);
        assert_eq!(rd(&c, 0x41, 2), 0x3322);
        assert_eq!(rd(&c, 0x43, 1), 0x44);
    }

    #[test]
    fn rw_bits_take_written_value() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).rw(0xffff_ffff));
        wr(&mut c, 0x40, 4, 0xdead_beef);
        assert_eq!(rd(&c, 0x40, 4), 0xdead_beef);
    }

    #[test]
    fn ro_bits_ignore_writes() {
        let mut c = with_reg(RegSpec::ro(0, 2, 0x1234));
        wr(&mut c, 0x40, 2, 0xffff);
        assert_eq!(rd(&c, 0x40, 2), 0x1234);
    }

    #[test]
    fn partial_wmask_mixes_old_and_new_bits() {
        let mut c = with_reg(RegSpec::ro(0, 1, 0xa5).rw(0x0f));
        wr(&mut c, 0x40, 1, 0x3c);
        assert_eq!(rd(&c, 0x40, 1), 0xac);
    }

    #[test]
    fn w1c_clears_only_bits_written_as_one() {
        let mut c = with_reg(RegSpec::ro(0, 2, 0).w1c(0xffff));
        c.set_u16(0x40, 0x0f0f);
        wr(&mut c, 0x40, 2, 0x0101);
        assert_eq!(rd(&c, 0x40, 2), 0x0e0e);
    }

    #[test]
    fn w1c_writing_zero_keeps_bits() {
        let mut c = with_reg(RegSpec::ro(0, 2, 0).w1c(0xffff));
        c.set_u16(0x40, 0x8001);
        wr(&mut c, 0x40, 2, 0);
        assert_eq!(rd(&c, 0x40, 2), 0x8001);
    }

    #[test]
    fn w1c_cannot_set_bits() {
        let mut c = with_reg(RegSpec::ro(0, 1, 0).w1c(0xff));
        wr(&mut c, 0x40, 1, 0xff);
        assert_eq!(rd(&c, 0x40, 1), 0);
    }

    #[test]
    fn rw_and_w1c_bits_coexist_in_one_register() {
        let mut c = with_reg(RegSpec::ro(0, 2, 0).rw(0x00ff).w1c(0xff00));
        c.set_u16(0x40, 0xf000);
        wr(&mut c, 0x40, 2, 0x1055);
        assert_eq!(rd(&c, 0x40, 2), 0xe055);
    }

    #[test]
    fn byte_write_touches_one_byte() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).rw(0xffff_ffff));
        wr(&mut c, 0x42, 1, 0xab);
        assert_eq!(rd(&c, 0x40, 4), 0x00ab_0000);
    }

    #[test]
    fn write_ignores_value_bits_above_size() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).rw(0xffff_ffff));
        wr(&mut c, 0x40, 1, 0xffff_ff12);
        assert_eq!(rd(&c, 0x40, 4), 0x12);
    }

    #[test]
    fn unaligned_word_write_spans_two_registers_bytewise() {
        // Command high byte (RW bits 0x05 → INTX_DISABLE|SERR) and Status low byte (RO).
        let mut c = space();
        c.apply_table(0, &header_regs(&HeaderIds::default(), HeaderType::Type0, false, None)).expect("hdr");
        c.set_u8(reg::STATUS, 0x10);
        wr(&mut c, 0x05, 2, 0xffff);
        assert_eq!(c.command(), 0x0500);
        assert_eq!(c.get_u8(reg::STATUS), 0x10);
    }

    #[test]
    fn dword_write_straddling_dword_boundary_applies_each_byte() {
        let mut c = space();
        c.apply_reg(0x40, &RegSpec::ro(0, 4, 0).rw(0xff00_0000)).expect("a");
        c.apply_reg(0x44, &RegSpec::ro(0, 4, 0).rw(0x0000_00ff)).expect("b");
        wr(&mut c, 0x42, 4, 0x4433_2211);
        assert_eq!(c.get_u32(0x40), 0x2200_0000);
        assert_eq!(c.get_u32(0x44), 0x0000_0033);
    }

    #[test]
    fn dword_read_straddling_dword_boundary() {
        let mut c = space();
        c.set_u32(0x40, 0x4433_2211);
        c.set_u32(0x44, 0x8877_6655);
        assert_eq!(rd(&c, 0x43, 4), 0x7766_5544);
    }

    #[test]
    fn bad_size_read_returns_all_ones_and_ignored() {
        let c = space();
        for (size, ones) in [(0u8, 0xffff_ffffu32), (3, 0xff_ffff), (8, 0xffff_ffff)] {
            let (v, a) = c.read(0x40, size);
            assert_eq!(v, ones, "size {size}");
            assert_eq!(a, Access::Ignored(Ignored::BadSize { off: 0x40, size }));
        }
    }

    #[test]
    fn bad_size_write_is_ignored() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).rw(0xffff_ffff));
        assert!(c.write(0x40, 3, 0xffff_ffff).is_ignored());
        assert!(c.write(0x40, 8, 0xffff_ffff).is_ignored());
        assert_eq!(c.get_u32(0x40), 0);
    }

    #[test]
    fn access_running_past_end_is_ignored_as_a_whole() {
        let mut c = ConfigSpace::new(ConfigKind::Conventional);
        c.apply_reg(0xfc, &RegSpec::ro(0, 4, 0).rw(0xffff_ffff)).expect("apply");
        let a = c.write(0xfe, 4, 0xffff_ffff);
        assert_eq!(a, Access::Ignored(Ignored::OutOfRange { off: 0xfe, size: 4, limit: 0x100 }));
        assert_eq!(c.get_u32(0xfc), 0, "no partial write");
        assert_eq!(c.read(0xfe, 4).0, 0xffff_ffff);
    }

    #[test]
    fn access_ending_exactly_at_end_is_applied() {
        let mut c = space();
        c.apply_reg(0xffc, &RegSpec::ro(0, 4, 0).rw(0xffff_ffff)).expect("apply");
        wr(&mut c, 0xffc, 4, 0x1234_5678);
        assert_eq!(rd(&c, 0xffc, 4), 0x1234_5678);
    }

    #[test]
    fn access_at_u16_max_does_not_overflow() {
        let mut c = space();
        assert!(c.read(u16::MAX, 4).1.is_ignored());
        assert!(c.write(u16::MAX, 4, 0).is_ignored());
    }

    #[test]
    fn ignored_display_names_offset_and_size() {
        let s = Ignored::OutOfRange { off: 0xfe, size: 4, limit: 0x100 }.to_string();
        assert!(s.contains("0xfe") && s.contains("size 4") && s.contains("0x100"), "{s}");
        let s = Ignored::BadSize { off: 0x10, size: 3 }.to_string();
        assert!(s.contains("0x10") && s.contains("bad size 3"), "{s}");
    }

    #[test]
    fn cold_reset_restores_all_init_values() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0x11).rw(0xff).sticky(0xff));
        wr(&mut c, 0x40, 1, 0x22);
        c.set_u8(0x41, 0x33);
        c.reset(ResetKind::Cold);
        assert_eq!(c.get_u32(0x40), 0x11);
    }

    #[test]
    fn non_cold_resets_restore_non_sticky_bits() {
        for kind in [ResetKind::Warm, ResetKind::Hot, ResetKind::SecondaryBusReset, ResetKind::Flr] {
            let mut c = with_reg(RegSpec::ro(0, 2, 0x0001).rw(0xffff));
            wr(&mut c, 0x40, 2, 0xbeef);
            c.reset(kind);
            assert_eq!(c.get_u16(0x40), 0x0001, "{kind:?}");
        }
    }

    #[test]
    fn hot_reset_keeps_rws_bits() {
        let mut c = with_reg(RegSpec::ro(0, 2, 0).rw(0xffff).sticky(0x00ff));
        wr(&mut c, 0x40, 2, 0xabcd);
        c.reset(ResetKind::Hot);
        assert_eq!(c.get_u16(0x40), 0x00cd);
    }

    #[test]
    fn flr_keeps_rw1cs_bits() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).w1c(0xffff_ffff).sticky(0x0000_0010));
        c.set_u32(0x40, 0x0000_0011);
        c.reset(ResetKind::Flr);
        assert_eq!(c.get_u32(0x40), 0x10);
        wr(&mut c, 0x40, 4, 0x10);
        assert_eq!(c.get_u32(0x40), 0, "still W1C after reset");
    }

    #[test]
    fn secondary_bus_reset_keeps_ros_bits() {
        let mut c = with_reg(RegSpec::ro(0, 1, 0).sticky(0x1f));
        c.set_u8(0x40, 0xff);
        c.reset(ResetKind::SecondaryBusReset);
        assert_eq!(c.get_u8(0x40), 0x1f);
    }

    #[test]
    fn warm_reset_keeps_sticky_bits() {
        let mut c = with_reg(RegSpec::ro(0, 1, 0).rw(0xff).sticky(0xff));
        wr(&mut c, 0x40, 1, 0x5a);
        c.reset(ResetKind::Warm);
        assert_eq!(c.get_u8(0x40), 0x5a);
    }

    #[test]
    fn cold_reset_clears_sticky_bits() {
        let mut c = with_reg(RegSpec::ro(0, 1, 0).rw(0xff).sticky(0xff));
        wr(&mut c, 0x40, 1, 0x5a);
        c.reset(ResetKind::Cold);
        assert_eq!(c.get_u8(0x40), 0);
    }

    #[test]
    fn hwinit_bits_are_not_guest_writable() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0x1234).hwinit(0xffff));
        wr(&mut c, 0x40, 4, 0);
        assert_eq!(c.get_u32(0x40), 0x1234);
    }

    #[test]
    fn hwinit_bits_survive_cold_reset() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0).hwinit(0xfff8_0000));
        c.set_u32(0x40, 0x0028_0005); // model sets a "slot number" after construction
        c.reset(ResetKind::Cold);
        assert_eq!(c.get_u32(0x40), 0x0028_0000, "HwInit kept, plain RO bits back to init");
    }

    #[test]
    fn reset_kind_sticky_rule() {
        assert!(!ResetKind::Cold.keeps_sticky());
        for k in [ResetKind::Warm, ResetKind::Hot, ResetKind::SecondaryBusReset, ResetKind::Flr] {
            assert!(k.keeps_sticky(), "{k:?}");
        }
    }

    #[test]
    fn apply_reg_rejects_rw_and_w1c_overlap() {
        let e = space().apply_reg(0x40, &RegSpec::ro(0, 2, 0).rw(0x00f0).w1c(0x0030)).expect_err("conflict");
        assert_eq!(e, ConfigError::RwAndW1c { off: 0x40, bits: 0x30 });
        assert!(e.to_string().contains("0x30"), "{e}");
    }

    #[test]
    fn apply_reg_rejects_writable_hwinit() {
        let e = space().apply_reg(0x40, &RegSpec::ro(0, 2, 0).rw(0x1).hwinit(0x3)).expect_err("conflict");
        assert_eq!(e, ConfigError::HwInitWritable { off: 0x40, bits: 0x1 });
    }

    #[test]
    fn apply_reg_rejects_mask_wider_than_register() {
        let e = space().apply_reg(0x40, &RegSpec::ro(0, 1, 0).rw(0x100)).expect_err("wide");
        assert_eq!(e, ConfigError::TooWide { off: 0x40, width: 1, what: "wmask", value: 0x100 });
    }

    #[test]
    fn apply_reg_rejects_init_wider_than_register() {
        let e = space().apply_reg(0x40, &RegSpec::ro(0, 2, 0x1_0000)).expect_err("wide");
        assert!(matches!(e, ConfigError::TooWide { what: "init", .. }), "{e:?}");
    }

    #[test]
    fn apply_reg_rejects_bad_width() {
        let e = space().apply_reg(0x40, &RegSpec::ro(0, 3, 0)).expect_err("width");
        assert_eq!(e, ConfigError::BadWidth { off: 0x40, width: 3 });
    }

    #[test]
    fn apply_reg_rejects_register_past_end() {
        let e = ConfigSpace::new(ConfigKind::Conventional).apply_reg(0xfe, &RegSpec::ro(0, 4, 0)).expect_err("range");
        assert_eq!(e, ConfigError::OutOfRange { off: 0xfe, len: 4, limit: 0x100 });
    }

    #[test]
    fn apply_reg_rejects_offset_overflow() {
        let e = space().apply_reg(0xffff, &RegSpec::ro(2, 1, 0)).expect_err("overflow");
        assert!(matches!(e, ConfigError::OutOfRange { .. }), "{e:?}");
    }

    #[test]
    fn apply_table_is_all_or_nothing() {
        let mut c = space();
        let t = [RegSpec::ro(0, 4, 0x1234), RegSpec::ro(4, 3, 0)];
        assert!(c.apply_table(0x40, &t).is_err());
        assert_eq!(c.get_u32(0x40), 0, "first entry not applied");
    }

    #[test]
    fn set_u32_bypasses_masks() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0));
        c.set_u32(0x40, 0xcafe_f00d);
        assert_eq!(rd(&c, 0x40, 4), 0xcafe_f00d);
    }

    #[test]
    fn set_u32_does_not_change_reset_value() {
        let mut c = with_reg(RegSpec::ro(0, 4, 7));
        c.set_u32(0x40, 9);
        c.reset(ResetKind::Flr);
        assert_eq!(c.get_u32(0x40), 7);
    }

    #[test]
    fn set_default_changes_reset_value() {
        let mut c = with_reg(RegSpec::ro(0, 2, 7));
        c.set_default_u16(0x40, 9);
        c.set_u16(0x40, 1);
        c.reset(ResetKind::Cold);
        assert_eq!(c.get_u16(0x40), 9);
        assert_eq!(c.default_u16(0x40), 9);
    }

    #[test]
    fn update_default_u16_sets_live_and_init_bits() {
        let mut c = space();
        c.set_default_u16(reg::STATUS, 0x0001);
        c.set_u16(reg::STATUS, 0x0101);
        c.update_default_u16(reg::STATUS, 0x0001, 0x0010);
        assert_eq!(c.get_u16(reg::STATUS), 0x0110);
        assert_eq!(c.default_u16(reg::STATUS), 0x0010);
    }

    #[test]
    fn update_u32_clears_then_sets() {
        let mut c = space();
        c.set_u32(0x40, 0xff00);
        c.update_u32(0x40, 0x0f00, 0x0001);
        assert_eq!(c.get_u32(0x40), 0xf001);
    }

    #[test]
    fn model_write_beyond_size_is_dropped() {
        let mut c = ConfigSpace::new(ConfigKind::Conventional);
        c.set_u32(0xfe, 0x4433_2211);
        assert_eq!(c.get_u16(0xfe), 0x2211);
        assert_eq!(c.get_u32(0xfe), 0xffff_2211);
    }

    #[test]
    fn set_masks_keeps_values() {
        let mut c = space();
        c.set_u8(0x40, 0x55);
        c.set_masks(0x40, 1, RegMasks::rw(0xf0)).expect("masks");
        assert_eq!(c.get_u8(0x40), 0x55);
        wr(&mut c, 0x40, 1, 0xa0);
        assert_eq!(c.get_u8(0x40), 0xa5);
    }

    #[test]
    fn reg_masks_reports_what_was_set() {
        let m = RegMasks::rw(0x00ff).with_w1c(0xff00).with_sticky(0x0f0f);
        let c = with_reg(RegSpec::new(0, 2, 0, m));
        assert_eq!(c.reg_masks(0x40, 2), m);
        assert_eq!(c.byte_masks(0x41), ByteMasks { wmask: 0, w1c: 0xff, sticky: 0x0f, hwinit: 0 });
    }

    #[test]
    fn clear_makes_range_ro_zero() {
        let mut c = with_reg(RegSpec::ro(0, 4, 0x1234).rw(0xffff_ffff).sticky(0xff));
        c.clear(0x40, 4).expect("clear");
        assert_eq!(c.get_u32(0x40), 0);
        assert_eq!(c.reg_masks(0x40, 4), RegMasks::RO);
        wr(&mut c, 0x40, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(0x40), 0);
    }

    #[test]
    fn clear_rejects_range_past_end() {
        assert!(ConfigSpace::new(ConfigKind::Conventional).clear(0xf0, 0x20).is_err());
    }

    fn header(pin: Option<IntxPin>, mf: bool) -> ConfigSpace {
        let ids = HeaderIds {
            vendor_id: 0x8086,
            device_id: 0x29c0,
            revision: 2,
            class_code: 0x06_04_00,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        };
        let mut c = space();
        c.apply_table(0, &header_regs(&ids, HeaderType::Type0, mf, pin)).expect("hdr");
        c
    }

    #[test]
    fn header_ids_are_readable_and_ro() {
        let mut c = header(None, false);
        wr(&mut c, 0, 4, 0);
        assert_eq!(rd(&c, 0, 4), 0x29c0_8086);
        assert_eq!(rd(&c, 0x08, 4), 0x0604_0002);
        assert_eq!(rd(&c, 0x2c, 4), 0x1100_1af4);
    }

    #[test]
    fn header_command_wmask_matches_qemu() {
        let mut c = header(None, false);
        wr(&mut c, reg::COMMAND, 2, 0xffff);
        // Probed on QEMU 7.2 (MCH, LPC, pcie-root-port): `o` 0xffffffff to 0x04 reads 0x0507.
        assert_eq!(c.command(), 0x0507);
    }

    #[test]
    fn header_status_error_bits_are_w1c() {
        let mut c = header(None, false);
        c.set_u16(reg::STATUS, 0xf910);
        wr(&mut c, reg::STATUS, 2, 0xffff);
        assert_eq!(c.status(), 0x0010, "CapList (RO) stays, error bits cleared");
    }

    #[test]
    fn header_type_reports_multifunction() {
        assert_eq!(header(None, true).get_u8(reg::HEADER_TYPE), 0x80);
        assert_eq!(header(None, false).header_type(), Some(HeaderType::Type0));
    }

    #[test]
    fn header_interrupt_line_rw_pin_ro() {
        let mut c = header(Some(IntxPin::B), false);
        wr(&mut c, reg::INTERRUPT_LINE, 2, 0xffff);
        assert_eq!(c.get_u8(reg::INTERRUPT_LINE), 0xff);
        assert_eq!(c.get_u8(reg::INTERRUPT_PIN), 2);
        assert_eq!(c.interrupt_pin(), Some(IntxPin::B));
    }

    #[test]
    fn header_without_pin_reads_zero() {
        let c = header(None, false);
        assert_eq!(c.get_u8(reg::INTERRUPT_PIN), 0);
        assert_eq!(c.interrupt_pin(), None);
    }

    #[test]
    fn header_bars_and_bist_default_read_only_zero() {
        let mut c = header(None, false);
        for off in (0x10..0x28).step_by(4).chain([0x30, 0x0c]) {
            wr(&mut c, off, 4, 0xffff_ffff);
        }
        for off in (0x10u16..0x28).step_by(4).chain([0x30]) {
            assert_eq!(c.get_u32(off), 0, "{off:#x}");
        }
        assert_eq!(rd(&c, 0x0c, 4), 0x0000_00ff, "only cache line size writable");
    }

    #[test]
    fn header_reset_clears_command_and_line() {
        let mut c = header(Some(IntxPin::A), false);
        wr(&mut c, reg::COMMAND, 2, 0x7);
        wr(&mut c, reg::INTERRUPT_LINE, 1, 11);
        c.reset(ResetKind::Hot);
        assert_eq!(c.command(), 0);
        assert_eq!(c.get_u8(reg::INTERRUPT_LINE), 0);
        assert_eq!(c.vendor_id(), 0x8086);
    }

    #[test]
    fn header_type1_has_no_subsystem_ids() {
        let ids = HeaderIds { subsystem_vendor_id: 0xffff, subsystem_id: 0xffff, ..HeaderIds::default() };
        let mut c = space();
        c.apply_table(0, &header_regs(&ids, HeaderType::Type1, false, None)).expect("hdr");
        assert_eq!(c.get_u32(0x2c), 0);
        assert_eq!(c.header_type(), Some(HeaderType::Type1));
    }

    #[test]
    fn header_type_layout_helpers() {
        assert_eq!((HeaderType::Type0.bar_count(), HeaderType::Type0.rom_offset()), (6, 0x30));
        assert_eq!((HeaderType::Type1.bar_count(), HeaderType::Type1.rom_offset()), (2, 0x38));
    }

    #[test]
    fn intx_swizzle_rotates_by_device_number() {
        assert_eq!(IntxPin::A.swizzle(0), IntxPin::A);
        assert_eq!(IntxPin::A.swizzle(1), IntxPin::B);
        assert_eq!(IntxPin::D.swizzle(1), IntxPin::A);
        assert_eq!(IntxPin::C.swizzle(31), IntxPin::B);
        assert_eq!(IntxPin::B.swizzle(255), IntxPin::A);
    }

    #[test]
    fn intx_swizzle_path_applies_each_bridge() {
        assert_eq!(swizzle_path(IntxPin::A, &[1, 2]), IntxPin::D);
        assert_eq!(swizzle_path(IntxPin::B, &[]), IntxPin::B);
    }

    #[test]
    fn intx_pin_register_roundtrip() {
        for p in [IntxPin::A, IntxPin::B, IntxPin::C, IntxPin::D] {
            assert_eq!(IntxPin::from_register(p.register_value()), Some(p));
        }
        assert_eq!(IntxPin::from_register(0), None);
        assert_eq!(IntxPin::from_register(5), None);
        assert_eq!(IntxPin::C.to_string(), "INTC");
    }

    #[test]
    fn random_access_stream_respects_masks() {
        // Property: with a fixed mask layout, guest writes never change RO bits and never set W1C bits.
        let mut c = header(Some(IntxPin::A), false);
        c.apply_reg(0x40, &RegSpec::ro(0, 4, 0x0f0f_0000).rw(0x0000_ffff).w1c(0xffff_0000)).expect("reg");
        let ro_snapshot: Vec<(u16, u8)> =
            (0..0x1000u16).filter(|&o| c.byte_masks(o) == ByteMasks::default()).map(|o| (o, c.get_u8(o))).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % 0x1010) as u16;
            let size = [1u8, 2, 4, 3, 8][((x >> 20) % 5) as usize];
            let _ = c.write(off, size, (x >> 32) as u32);
            let _ = c.read(off, size);
            assert_eq!(c.get_u32(0x40) & 0xf0f0_0000, 0, "W1C bits never set by the guest");
        }
        for (o, v) in ro_snapshot {
            assert_eq!(c.get_u8(o), v, "RO byte {o:#x} changed");
        }
    }
}
