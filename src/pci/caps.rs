//! Capability chains: builders for the standard (0x40..0xFF) and extended (0x100..0xFFF) lists,
//! and walkers that read a chain from untrusted bytes (a passed-through host device).
//!
//! A capability is a [`CapBlock`]: its ID, its length and a register table (offsets relative to
//! the capability) giving its bytes **and** masks. Capability bytes are RO 0 unless the table
//! opens them (QEMU zeroes the wmask over each capability the same way, see
//! /work/shared/reference/pcie-spec.md "Notation"). The builder owns the header bytes: ID and
//! next pointer for standard capabilities, the 32-bit `id | version << 16 | next << 20` header
//! for extended ones; a register table may not touch them.
//!
//! Builders refuse (with [`CapError`]) misaligned placements, placements outside the space, overlap
//! between capabilities and register tables that spill out of their capability. The standard
//! chain is linked in insertion order from the Capabilities Pointer (0x34) and sets
//! Status.CapList. The extended chain must start at 0x100 (that is where software looks): the
//! capability placed there comes first, the others follow in insertion order, and the last
//! header's next is 0.

use std::fmt;

use thiserror::Error;

use crate::pci::config::{reg, status, ConfigError, ConfigSpace, RegSpec, CONFIG_SPACE_SIZE, HEADER_SIZE};

/// Standard capability IDs.
pub mod id {
    /// Power management.
    pub const PM: u8 = 0x01;
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// Vendor specific.
    pub const VENDOR: u8 = 0x09;
    /// Bridge subsystem vendor ID.
    pub const SSVID: u8 = 0x0D;
    /// PCI Express.
    pub const EXP: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// Extended capability IDs.
pub mod ext_id {
    /// Advanced Error Reporting.
    pub const AER: u16 = 0x0001;
    /// Device serial number.
    pub const DSN: u16 = 0x0003;
    /// Vendor specific.
    pub const VENDOR: u16 = 0x000B;
    /// Access control services.
    pub const ACS: u16 = 0x000D;
    /// Alternative routing-ID.
    pub const ARI: u16 = 0x000E;
    /// Downstream port containment.
    pub const DPC: u16 = 0x001D;
}

/// Which list a capability belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapSpace {
    /// 0x40..0x100, byte pointers.
    Standard,
    /// 0x100..0x1000, 12-bit pointers in 32-bit headers.
    Extended,
}

impl CapSpace {
    /// First usable offset.
    pub const fn start(self) -> u16 {
        match self {
            CapSpace::Standard => HEADER_SIZE,
            CapSpace::Extended => 0x100,
        }
    }
    /// One past the last usable offset.
    pub const fn end(self) -> u16 {
        match self {
            CapSpace::Standard => 0x100,
            CapSpace::Extended => CONFIG_SPACE_SIZE,
        }
    }
    /// Bytes of the header the builder writes (ID + next).
    pub const fn header_len(self) -> u16 {
        match self {
            CapSpace::Standard => 2,
            CapSpace::Extended => 4,
        }
    }
}

/// A capability identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapId {
    /// A standard capability.
    Std(u8),
    /// An extended capability with its version (0-15).
    Ext {
        /// ID.
        id: u16,
        /// Version.
        version: u8,
    },
}

impl CapId {
    /// The list it belongs to.
    pub const fn space(self) -> CapSpace {
        match self {
            CapId::Std(_) => CapSpace::Standard,
            CapId::Ext { .. } => CapSpace::Extended,
        }
    }
}

impl fmt::Display for CapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapId::Std(id) => write!(f, "capability {id:#04x}"),
            CapId::Ext { id, version } => write!(f, "extended capability {id:#06x} v{version}"),
        }
    }
}

/// A capability's content: ID, length, and a register table relative to its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapBlock {
    /// Identity.
    pub id: CapId,
    /// Length in bytes (including the header).
    pub len: u16,
    /// Registers (offsets relative to the capability; must not overlap the header).
    pub regs: Vec<RegSpec>,
}

impl CapBlock {
    /// A standard capability of `len` bytes with no registers yet.
    pub fn std(id: u8, len: u16) -> Self {
        CapBlock { id: CapId::Std(id), len, regs: Vec::new() }
    }
    /// An extended capability of `len` bytes with no registers yet.
    pub fn ext(id: u16, version: u8, len: u16) -> Self {
        CapBlock { id: CapId::Ext { id, version }, len, regs: Vec::new() }
    }
    /// Adds a register.
    pub fn reg(mut self, r: RegSpec) -> Self {
        self.regs.push(r);
        self
    }
    /// Adds registers.
    pub fn regs(mut self, r: impl IntoIterator<Item = RegSpec>) -> Self {
        self.regs.extend(r);
        self
    }
}

/// A capability as placed by a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlacedCap {
    /// Identity.
    pub id: CapId,
    /// Offset in config space.
    pub off: u16,
    /// Length.
    pub len: u16,
}

/// Capability-chain construction errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CapError {
    /// Not dword aligned.
    #[error("{id} at {off:#x} is not dword aligned")]
    Misaligned {
        /// Capability.
        id: CapId,
        /// Offset.
        off: u16,
    },
    /// Below the start of its space.
    #[error("{id} at {off:#x} is below {min:#x}")]
    BelowStart {
        /// Capability.
        id: CapId,
        /// Offset.
        off: u16,
        /// First allowed offset.
        min: u16,
    },
    /// Runs past the end of its space.
    #[error("{id} at {off:#x} of {len:#x} bytes runs past {limit:#x}")]
    Overflow {
        /// Capability.
        id: CapId,
        /// Offset.
        off: u16,
        /// Length.
        len: u16,
        /// End of the space.
        limit: u16,
    },
    /// Overlaps a capability already placed.
    #[error("{id} at {off:#x} (len {len:#x}) overlaps {other} at {other_off:#x}")]
    Overlap {
        /// Capability being added.
        id: CapId,
        /// Its offset.
        off: u16,
        /// Its length.
        len: u16,
        /// Capability already there.
        other: CapId,
        /// Its offset.
        other_off: u16,
    },
    /// Shorter than its header.
    #[error("{id} has length {len:#x}, shorter than its {min}-byte header")]
    TooShort {
        /// Capability.
        id: CapId,
        /// Length.
        len: u16,
        /// Header length.
        min: u16,
    },
    /// A register overlaps the header.
    #[error("{id}: register at +{reg_off:#x} overlaps the capability header")]
    RegInHeader {
        /// Capability.
        id: CapId,
        /// Register offset (relative).
        reg_off: u16,
    },
    /// A register spills out of the capability.
    #[error("{id}: register at +{reg_off:#x} (width {width}) lies outside its {len:#x} bytes")]
    RegOutside {
        /// Capability.
        id: CapId,
        /// Register offset (relative).
        reg_off: u16,
        /// Register width.
        width: u8,
        /// Capability length.
        len: u16,
    },
    /// Added to the builder of the other list.
    #[error("{id} cannot go in the {space:?} list")]
    WrongSpace {
        /// Capability.
        id: CapId,
        /// The builder's list.
        space: CapSpace,
    },
    /// Extended capability version above 15.
    #[error("{id}: version {version} does not fit in 4 bits")]
    BadVersion {
        /// Capability.
        id: CapId,
        /// Version.
        version: u8,
    },
    /// No free spot for automatic placement.
    #[error("no room for {id} of {len:#x} bytes")]
    NoRoom {
        /// Capability.
        id: CapId,
        /// Length.
        len: u16,
    },
    /// Extended capabilities on a conventional (256-byte) function.
    #[error("{id} needs a PCI Express (4 KiB) config space")]
    NeedsExpress {
        /// Capability.
        id: CapId,
    },
    /// No extended capability at 0x100, where the chain must start.
    #[error("extended capability chain has nothing at {start:#x}, where it must start")]
    NoChainStart {
        /// 0x100.
        start: u16,
    },
    /// Writing the registers failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Builds one capability list. Validation happens in [`CapChainBuilder::add_at`]; nothing is
/// written until [`CapChainBuilder::install`].
#[derive(Clone, Debug)]
pub struct CapChainBuilder {
    space: CapSpace,
    caps: Vec<(u16, CapBlock)>,
}

impl CapChainBuilder {
    /// An empty builder for `space`.
    pub fn new(space: CapSpace) -> Self {
        CapChainBuilder { space, caps: Vec::new() }
    }
    /// An empty standard-list builder.
    pub fn standard() -> Self {
        Self::new(CapSpace::Standard)
    }
    /// An empty extended-list builder.
    pub fn extended() -> Self {
        Self::new(CapSpace::Extended)
    }

    /// The list this builder fills.
    pub fn space(&self) -> CapSpace {
        self.space
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    fn check(&self, off: u16, cap: &CapBlock) -> Result<(), CapError> {
        let id = cap.id;
        let space = self.space;
        if id.space() != space {
            return Err(CapError::WrongSpace { id, space });
        }
        if let CapId::Ext { version, .. } = id {
            if version > 0xf {
                return Err(CapError::BadVersion { id, version });
            }
        }
        if cap.len < space.header_len() {
            return Err(CapError::TooShort { id, len: cap.len, min: space.header_len() });
        }
        if off % 4 != 0 {
            return Err(CapError::Misaligned { id, off });
        }
        if off < space.start() {
            return Err(CapError::BelowStart { id, off, min: space.start() });
        }
        if u32::from(off) + u32::from(cap.len) > u32::from(space.end()) {
            return Err(CapError::Overflow { id, off, len: cap.len, limit: space.end() });
        }
        for r in &cap.regs {
            if r.off < space.header_len() {
                return Err(CapError::RegInHeader { id, reg_off: r.off });
            }
            if !matches!(r.width, 1 | 2 | 4) || u32::from(r.off) + u32::from(r.width) > u32::from(cap.len) {
                return Err(CapError::RegOutside { id, reg_off: r.off, width: r.width, len: cap.len });
            }
        }
        let end = u32::from(off) + u32::from(cap.len);
        for (o, other) in &self.caps {
            let oend = u32::from(*o) + u32::from(other.len);
            if u32::from(off) < oend && u32::from(*o) < end {
                return Err(CapError::Overlap { id, off, len: cap.len, other: other.id, other_off: *o });
            }
        }
        Ok(())
    }

    /// Places `cap` at `off`; returns `off`.
    pub fn add_at(&mut self, off: u16, cap: CapBlock) -> Result<u16, CapError> {
        self.check(off, &cap)?;
        self.caps.push((off, cap));
        Ok(off)
    }

    /// Places `cap` at the lowest free dword-aligned offset; returns it.
    pub fn add(&mut self, cap: CapBlock) -> Result<u16, CapError> {
        for off in (self.space.start()..self.space.end()).step_by(4) {
            match self.check(off, &cap) {
                Ok(()) => return self.add_at(off, cap),
                Err(CapError::Overlap { .. } | CapError::Overflow { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CapError::NoRoom { id: cap.id, len: cap.len })
    }

    /// What has been placed so far, in chain order.
    pub fn placed(&self) -> Vec<PlacedCap> {
        self.ordered().into_iter().map(|(off, c)| PlacedCap { id: c.id, off: *off, len: c.len }).collect()
    }

    fn ordered(&self) -> Vec<&(u16, CapBlock)> {
        match self.space {
            CapSpace::Standard => self.caps.iter().collect(),
            CapSpace::Extended => {
                let start = self.space.start();
                self.caps
                    .iter()
                    .filter(|(o, _)| *o == start)
                    .chain(self.caps.iter().filter(|(o, _)| *o != start))
                    .collect()
            }
        }
    }

    /// Writes the chain into `cfg`: clears each capability's bytes to RO 0, writes the headers,
    /// then applies each register table. For the standard list it also sets the Capabilities
    /// Pointer and Status.CapList (as reset defaults). An empty builder writes nothing.
    /// Install each list once per config space.
    pub fn install(self, cfg: &mut ConfigSpace) -> Result<Vec<PlacedCap>, CapError> {
        let order = self.ordered();
        let Some((head, head_cap)) = order.first() else {
            return Ok(Vec::new());
        };
        if self.space == CapSpace::Extended {
            if cfg.size() < CONFIG_SPACE_SIZE {
                return Err(CapError::NeedsExpress { id: head_cap.id });
            }
            if *head != self.space.start() {
                return Err(CapError::NoChainStart { start: self.space.start() });
            }
        }
        // Validate every register table against the config space before writing anything.
        for (off, cap) in &order {
            let mut probe = ConfigSpace::new(cfg.kind());
            probe.apply_table(*off, &cap.regs)?;
        }
        let nexts = order.iter().skip(1).map(|(o, _)| *o).chain(std::iter::once(0));
        for ((off, cap), next) in order.iter().zip(nexts) {
            cfg.clear(*off, cap.len)?;
            match cap.id {
                CapId::Std(id) => {
                    cfg.set_default_u8(*off, id);
                    cfg.set_default_u8(off.saturating_add(1), next as u8);
                }
                CapId::Ext { id, version } => {
                    let hdr = u32::from(id) | (u32::from(version & 0xf) << 16) | (u32::from(next) << 20);
                    cfg.set_default_u32(*off, hdr);
                }
            }
            cfg.apply_table(*off, &cap.regs)?;
        }
        if self.space == CapSpace::Standard {
            cfg.set_default_u8(reg::CAPABILITY_LIST, *head as u8);
            cfg.update_default_u16(reg::STATUS, 0, status::CAP_LIST);
        }
        Ok(order.into_iter().map(|(off, c)| PlacedCap { id: c.id, off: *off, len: c.len }).collect())
    }
}

/// A capability found by a walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FoundCap {
    /// ID (standard IDs are 8-bit).
    pub id: u16,
    /// Offset.
    pub off: u16,
    /// Version (extended capabilities; 0 for standard ones).
    pub version: u8,
}

/// Something wrong with a chain a walker followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainProblem {
    /// A pointer had its reserved low two bits set; they were masked off and the walk went on.
    ReservedPointerBits {
        /// Where the pointer was read (0x34 or a capability offset).
        at: u16,
        /// The raw pointer.
        ptr: u16,
    },
    /// A pointer below the start of the list; the walk stopped.
    PointerBelowStart {
        /// Where the pointer was read.
        at: u16,
        /// The pointer.
        ptr: u16,
    },
    /// A pointer to a header that does not fit in the bytes given; the walk stopped.
    PointerOutOfRange {
        /// Where the pointer was read.
        at: u16,
        /// The pointer.
        ptr: u16,
        /// Bytes available.
        limit: u16,
    },
    /// A pointer back to a capability already visited; the walk stopped.
    Loop {
        /// Where the pointer was read.
        at: u16,
        /// The pointer.
        ptr: u16,
    },
    /// A header that reads as all-ones (device gone, or hostile); the walk stopped.
    InvalidHeader {
        /// Offset of the header.
        at: u16,
    },
    /// Fewer bytes than the list needs (standard walk: the header itself).
    Truncated {
        /// Bytes available.
        len: usize,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::ReservedPointerBits { at, ptr } => {
                write!(f, "pointer {ptr:#x} at {at:#x} has reserved bits set")
            }
            ChainProblem::PointerBelowStart { at, ptr } => {
                write!(f, "pointer {ptr:#x} at {at:#x} is below the list start")
            }
            ChainProblem::PointerOutOfRange { at, ptr, limit } => {
                write!(f, "pointer {ptr:#x} at {at:#x} is beyond the {limit:#x} bytes available")
            }
            ChainProblem::Loop { at, ptr } => write!(f, "pointer {ptr:#x} at {at:#x} loops back"),
            ChainProblem::InvalidHeader { at } => write!(f, "all-ones capability header at {at:#x}"),
            ChainProblem::Truncated { len } => write!(f, "only {len} bytes of config space"),
        }
    }
}

/// Result of walking a chain: what was found (in chain order) and what was wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainWalk {
    /// Capabilities, in chain order.
    pub caps: Vec<FoundCap>,
    /// Problems met (the walk stops at the first fatal one).
    pub problems: Vec<ChainProblem>,
}

impl ChainWalk {
    /// Offset of the first capability with `id`.
    pub fn find(&self, id: u16) -> Option<u16> {
        self.caps.iter().find(|c| c.id == id).map(|c| c.off)
    }
    /// Whether no problem was met.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn byte_at(bytes: &[u8], off: u16) -> Option<u8> {
    bytes.get(usize::from(off)).copied()
}

fn u32_at(bytes: &[u8], off: u16) -> Option<u32> {
    let s = bytes.get(usize::from(off)..usize::from(off) + 4)?;
    let mut b = [0u8; 4];
    b.copy_from_slice(s);
    Some(u32::from_le_bytes(b))
}

fn limit_of(bytes: &[u8], cap: u16) -> u16 {
    u16::try_from(bytes.len()).unwrap_or(u16::MAX).min(cap)
}

/// Walks the standard list of `bytes` (a function's config space, any length). Empty if
/// Status.CapList is clear. Never panics and always terminates: each dword is visited at most once.
pub fn walk_standard(bytes: &[u8]) -> ChainWalk {
    let mut w = ChainWalk::default();
    let (Some(st), Some(ptr)) = (byte_at(bytes, reg::STATUS), byte_at(bytes, reg::CAPABILITY_LIST)) else {
        w.problems.push(ChainProblem::Truncated { len: bytes.len() });
        return w;
    };
    if u16::from(st) & status::CAP_LIST == 0 {
        return w;
    }
    let limit = limit_of(bytes, 0x100);
    let mut visited = [false; 64];
    let mut at = reg::CAPABILITY_LIST;
    let mut ptr = u16::from(ptr);
    loop {
        if ptr & 3 != 0 {
            w.problems.push(ChainProblem::ReservedPointerBits { at, ptr });
            ptr &= !3;
        }
        if ptr == 0 {
            break;
        }
        if ptr < HEADER_SIZE {
            w.problems.push(ChainProblem::PointerBelowStart { at, ptr });
            break;
        }
        if ptr + 2 > limit {
            w.problems.push(ChainProblem::PointerOutOfRange { at, ptr, limit });
            break;
        }
        match visited.get_mut(usize::from(ptr / 4)) {
            Some(v) if !*v => *v = true,
            _ => {
                w.problems.push(ChainProblem::Loop { at, ptr });
                break;
            }
        }
        let (Some(cid), Some(next)) = (byte_at(bytes, ptr), byte_at(bytes, ptr + 1)) else {
            w.problems.push(ChainProblem::PointerOutOfRange { at, ptr, limit });
            break;
        };
        if cid == 0xff {
            w.problems.push(ChainProblem::InvalidHeader { at: ptr });
            break;
        }
        w.caps.push(FoundCap { id: u16::from(cid), off: ptr, version: 0 });
        at = ptr;
        ptr = u16::from(next);
    }
    w
}

/// Walks the extended list of `bytes` from 0x100. Empty (and clean) if `bytes` is shorter than
/// 0x104 (a conventional function) or the header at 0x100 is 0. Never panics and always
/// terminates: each dword is visited at most once.
pub fn walk_extended(bytes: &[u8]) -> ChainWalk {
    let mut w = ChainWalk::default();
    let start = CapSpace::Extended.start();
    let limit = limit_of(bytes, CONFIG_SPACE_SIZE);
    let Some(first) = u32_at(bytes, start) else {
        return w;
    };
    if first == 0 {
        return w;
    }
    let mut visited = [false; 1024];
    let mut at = start;
    let mut ptr = start;
    loop {
        match visited.get_mut(usize::from(ptr / 4)) {
            Some(v) if !*v => *v = true,
            _ => {
                w.problems.push(ChainProblem::Loop { at, ptr });
                break;
            }
        }
        let Some(hdr) = u32_at(bytes, ptr) else {
            w.problems.push(ChainProblem::PointerOutOfRange { at, ptr, limit });
            break;
        };
        if hdr == u32::MAX {
            w.problems.push(ChainProblem::InvalidHeader { at: ptr });
            break;
        }
        w.caps.push(FoundCap { id: (hdr & 0xffff) as u16, off: ptr, version: ((hdr >> 16) & 0xf) as u8 });
        let raw = (hdr >> 20) as u16;
        at = ptr;
        ptr = raw;
        if ptr & 3 != 0 {
            w.problems.push(ChainProblem::ReservedPointerBits { at, ptr });
            ptr &= !3;
        }
        if ptr == 0 {
            break;
        }
        if ptr < start {
            w.problems.push(ChainProblem::PointerBelowStart { at, ptr });
            break;
        }
        if u32::from(ptr) + 4 > u32::from(limit) {
            w.problems.push(ChainProblem::PointerOutOfRange { at, ptr, limit });
            break;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{ConfigKind, RegMasks};

    fn express() -> ConfigSpace {
        ConfigSpace::new(ConfigKind::Express)
    }

    fn std_cap(id: u8, len: u16) -> CapBlock {
        CapBlock::std(id, len)
    }

    #[test]
    fn std_chain_links_in_insertion_order() {
        let mut b = CapChainBuilder::standard();
        b.add_at(0x80, std_cap(id::EXP, 0x3c)).expect("exp");
        b.add_at(0x40, std_cap(id::MSI, 0x18)).expect("msi");
        let mut c = express();
        b.install(&mut c).expect("install");
        assert_eq!(c.get_u8(0x34), 0x80);
        assert_eq!((c.get_u8(0x80), c.get_u8(0x81)), (id::EXP, 0x40));
        assert_eq!((c.get_u8(0x40), c.get_u8(0x41)), (id::MSI, 0));
    }

    #[test]
    fn std_chain_sets_cap_list_as_default() {
        let mut b = CapChainBuilder::standard();
        b.add(std_cap(id::PM, 8)).expect("pm");
        let mut c = express();
        b.install(&mut c).expect("install");
        assert_ne!(c.status() & status::CAP_LIST, 0);
        c.reset(crate::pci::config::ResetKind::Cold);
        assert_ne!(c.status() & status::CAP_LIST, 0, "survives reset");
        assert_eq!(c.get_u8(0x34), 0x40);
    }

    #[test]
    fn empty_std_chain_leaves_cap_list_clear() {
        let mut c = express();
        let placed = CapChainBuilder::standard().install(&mut c).expect("install");
        assert!(placed.is_empty());
        assert_eq!(c.status() & status::CAP_LIST, 0);
        assert_eq!(c.get_u8(0x34), 0);
    }

    #[test]
    fn std_cap_below_0x40_is_refused() {
        let e = CapChainBuilder::standard().add_at(0x3c, std_cap(1, 8)).expect_err("below");
        assert_eq!(e, CapError::BelowStart { id: CapId::Std(1), off: 0x3c, min: 0x40 });
        assert!(e.to_string().contains("0x3c"), "{e}");
    }

    #[test]
    fn std_cap_misaligned_is_refused() {
        let e = CapChainBuilder::standard().add_at(0x42, std_cap(1, 8)).expect_err("align");
        assert_eq!(e, CapError::Misaligned { id: CapId::Std(1), off: 0x42 });
    }

    #[test]
    fn std_cap_past_0x100_is_refused() {
        let e = CapChainBuilder::standard().add_at(0xf8, std_cap(1, 0x10)).expect_err("overflow");
        assert_eq!(e, CapError::Overflow { id: CapId::Std(1), off: 0xf8, len: 0x10, limit: 0x100 });
    }

    #[test]
    fn std_cap_ending_at_0x100_is_accepted() {
        assert_eq!(CapChainBuilder::standard().add_at(0xf8, std_cap(1, 8)), Ok(0xf8));
    }

    #[test]
    fn std_cap_overlap_is_refused_naming_both() {
        let mut b = CapChainBuilder::standard();
        b.add_at(0x40, std_cap(id::MSI, 0x18)).expect("msi");
        let e = b.add_at(0x54, std_cap(id::EXP, 0x3c)).expect_err("overlap");
        assert!(matches!(e, CapError::Overlap { off: 0x54, other_off: 0x40, .. }), "{e:?}");
        let s = e.to_string();
        assert!(s.contains("0x54") && s.contains("0x40") && s.contains("0x05") && s.contains("0x10"), "{s}");
    }

    #[test]
    fn std_cap_adjacent_is_accepted() {
        let mut b = CapChainBuilder::standard();
        b.add_at(0x40, std_cap(id::MSI, 0x18)).expect("msi");
        assert_eq!(b.add_at(0x58, std_cap(id::EXP, 0x3c)), Ok(0x58));
    }

    #[test]
    fn std_auto_placement_packs_dword_aligned() {
        let mut b = CapChainBuilder::standard();
        assert_eq!(b.add(std_cap(id::MSI, 0x0a)), Ok(0x40));
        assert_eq!(b.add(std_cap(id::MSIX, 0x0c)), Ok(0x4c));
        assert_eq!(b.add(std_cap(id::EXP, 0x3c)), Ok(0x58));
    }

    #[test]
    fn std_auto_placement_skips_fixed_caps() {
        let mut b = CapChainBuilder::standard();
        b.add_at(0x44, std_cap(id::PM, 8)).expect("pm");
        assert_eq!(b.add(std_cap(id::MSI, 0x0a)), Ok(0x4c));
        assert_eq!(b.add(std_cap(id::VENDOR, 4)), Ok(0x40));
    }

    #[test]
    fn std_auto_placement_reports_no_room() {
        let mut b = CapChainBuilder::standard();
        b.add(std_cap(id::VENDOR, 0xb0)).expect("big");
        let e = b.add(std_cap(id::MSI, 0x18)).expect_err("full");
        assert_eq!(e, CapError::NoRoom { id: CapId::Std(id::MSI), len: 0x18 });
    }

    #[test]
    fn std_cap_shorter_than_header_is_refused() {
        let e = CapChainBuilder::standard().add(std_cap(1, 1)).expect_err("short");
        assert!(matches!(e, CapError::TooShort { len: 1, min: 2, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_in_std_builder_is_refused() {
        let e = CapChainBuilder::standard().add(CapBlock::ext(ext_id::AER, 2, 0x48)).expect_err("space");
        assert!(matches!(e, CapError::WrongSpace { space: CapSpace::Standard, .. }), "{e:?}");
    }

    #[test]
    fn cap_bytes_default_read_only() {
        let mut c = express();
        c.apply_reg(0x40, &RegSpec::ro(0, 4, 0).rw(0xffff_ffff)).expect("pre-existing scratch");
        let mut b = CapChainBuilder::standard();
        b.add_at(0x40, std_cap(id::VENDOR, 8)).expect("cap");
        b.install(&mut c).expect("install");
        let _ = c.write(0x40, 4, 0xffff_ffff);
        let _ = c.write(0x44, 4, 0xffff_ffff);
        assert_eq!(c.get_u32(0x40), u32::from(id::VENDOR));
        assert_eq!(c.get_u32(0x44), 0);
    }

    #[test]
    fn cap_register_table_opens_bits() {
        let cap = std_cap(id::VENDOR, 8).reg(RegSpec::ro(4, 2, 0x11).rw(0xff00)).reg(RegSpec::ro(6, 2, 0).w1c(0xffff));
        let mut b = CapChainBuilder::standard();
        let off = b.add(cap).expect("cap");
        let mut c = express();
        b.install(&mut c).expect("install");
        assert_eq!(c.reg_masks(off + 4, 2), RegMasks::rw(0xff00));
        let _ = c.write(off + 4, 2, 0xabcd);
        assert_eq!(c.get_u16(off + 4), 0xab11);
        assert_eq!(c.reg_masks(off + 6, 2), RegMasks::w1c(0xffff));
    }

    #[test]
    fn cap_header_bytes_are_read_only() {
        let mut b = CapChainBuilder::standard();
        b.add(std_cap(id::PM, 8)).expect("pm");
        b.add(std_cap(id::MSI, 0x0a)).expect("msi");
        let mut c = express();
        b.install(&mut c).expect("install");
        let _ = c.write(0x40, 2, 0);
        assert_eq!(c.get_u16(0x40), 0x4801);
    }

    #[test]
    fn cap_register_in_header_is_refused() {
        let cap = std_cap(id::VENDOR, 8).reg(RegSpec::ro(1, 1, 0).rw(0xff));
        let e = CapChainBuilder::standard().add(cap).expect_err("header");
        assert_eq!(e, CapError::RegInHeader { id: CapId::Std(id::VENDOR), reg_off: 1 });
    }

    #[test]
    fn cap_register_outside_length_is_refused() {
        let cap = std_cap(id::VENDOR, 8).reg(RegSpec::ro(6, 4, 0));
        let e = CapChainBuilder::standard().add(cap).expect_err("outside");
        assert_eq!(e, CapError::RegOutside { id: CapId::Std(id::VENDOR), reg_off: 6, width: 4, len: 8 });
    }

    #[test]
    fn cap_register_with_bad_masks_fails_install_without_writing() {
        let cap = std_cap(id::VENDOR, 8).reg(RegSpec::ro(4, 2, 0).rw(1).w1c(1));
        let mut b = CapChainBuilder::standard();
        b.add(cap).expect("geometry ok");
        let mut c = express();
        let e = b.install(&mut c).expect_err("masks");
        assert!(matches!(e, CapError::Config(ConfigError::RwAndW1c { off: 0x44, .. })), "{e:?}");
        assert_eq!(c.get_u8(0x40), 0, "nothing written");
        assert_eq!(c.status() & status::CAP_LIST, 0);
    }

    #[test]
    fn ext_chain_writes_headers_and_terminates() {
        let mut b = CapChainBuilder::extended();
        b.add_at(0x100, CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        b.add_at(0x148, CapBlock::ext(ext_id::ACS, 1, 8)).expect("acs");
        let mut c = express();
        let placed = b.install(&mut c).expect("install");
        assert_eq!(c.get_u32(0x100), 0x1482_0001);
        assert_eq!(c.get_u32(0x148), 0x0001_000d);
        assert_eq!(placed.len(), 2);
    }

    #[test]
    fn ext_chain_starts_at_0x100_even_if_added_later() {
        let mut b = CapChainBuilder::extended();
        b.add_at(0x200, CapBlock::ext(ext_id::DSN, 1, 0x0c)).expect("dsn");
        b.add_at(0x100, CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        let mut c = express();
        b.install(&mut c).expect("install");
        assert_eq!(c.get_u32(0x100) >> 20, 0x200);
        assert_eq!(c.get_u32(0x200) >> 20, 0);
    }

    #[test]
    fn ext_auto_placement_starts_at_0x100() {
        let mut b = CapChainBuilder::extended();
        assert_eq!(b.add(CapBlock::ext(ext_id::AER, 2, 0x48)), Ok(0x100));
        assert_eq!(b.add(CapBlock::ext(ext_id::ACS, 1, 8)), Ok(0x148));
    }

    #[test]
    fn ext_chain_without_cap_at_0x100_is_refused() {
        let mut b = CapChainBuilder::extended();
        b.add_at(0x140, CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        let e = b.install(&mut express()).expect_err("start");
        assert_eq!(e, CapError::NoChainStart { start: 0x100 });
    }

    #[test]
    fn ext_cap_below_0x100_is_refused() {
        let e = CapChainBuilder::extended().add_at(0xfc, CapBlock::ext(1, 1, 8)).expect_err("below");
        assert!(matches!(e, CapError::BelowStart { off: 0xfc, min: 0x100, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_misaligned_is_refused() {
        let e = CapChainBuilder::extended().add_at(0x102, CapBlock::ext(1, 1, 8)).expect_err("align");
        assert!(matches!(e, CapError::Misaligned { off: 0x102, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_past_4k_is_refused() {
        let e = CapChainBuilder::extended().add_at(0xff8, CapBlock::ext(1, 1, 0x10)).expect_err("overflow");
        assert!(matches!(e, CapError::Overflow { off: 0xff8, limit: 0x1000, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_overlap_is_refused() {
        let mut b = CapChainBuilder::extended();
        b.add_at(0x100, CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        let e = b.add_at(0x144, CapBlock::ext(ext_id::ACS, 1, 8)).expect_err("overlap");
        assert!(matches!(e, CapError::Overlap { other_off: 0x100, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_on_conventional_function_is_refused() {
        let mut b = CapChainBuilder::extended();
        b.add(CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        let e = b.install(&mut ConfigSpace::new(ConfigKind::Conventional)).expect_err("conventional");
        assert!(matches!(e, CapError::NeedsExpress { .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_version_above_15_is_refused() {
        let e = CapChainBuilder::extended().add(CapBlock::ext(1, 16, 8)).expect_err("version");
        assert!(matches!(e, CapError::BadVersion { version: 16, .. }), "{e:?}");
    }

    #[test]
    fn ext_register_in_header_is_refused() {
        let cap = CapBlock::ext(1, 1, 8).reg(RegSpec::ro(2, 2, 0));
        let e = CapChainBuilder::extended().add(cap).expect_err("header");
        assert!(matches!(e, CapError::RegInHeader { reg_off: 2, .. }), "{e:?}");
    }

    #[test]
    fn ext_cap_masks_are_applied_with_sticky() {
        let cap = CapBlock::ext(ext_id::AER, 2, 0x48).reg(RegSpec::ro(4, 4, 0).w1c(0x03ff_f030).sticky(0x03ff_f030));
        let mut b = CapChainBuilder::extended();
        b.add(cap).expect("aer");
        let mut c = express();
        b.install(&mut c).expect("install");
        c.set_u32(0x104, 0x10);
        c.reset(crate::pci::config::ResetKind::SecondaryBusReset);
        assert_eq!(c.get_u32(0x104), 0x10);
        let _ = c.write(0x104, 4, 0x10);
        assert_eq!(c.get_u32(0x104), 0);
    }

    #[test]
    fn empty_ext_builder_installs_nothing_even_on_conventional() {
        let mut c = ConfigSpace::new(ConfigKind::Conventional);
        assert_eq!(CapChainBuilder::extended().install(&mut c), Ok(Vec::new()));
    }

    #[test]
    fn placed_lists_chain_order() {
        let mut b = CapChainBuilder::extended();
        b.add_at(0x180, CapBlock::ext(3, 1, 0xc)).expect("a");
        b.add_at(0x100, CapBlock::ext(1, 2, 0x48)).expect("b");
        let offs: Vec<u16> = b.placed().iter().map(|p| p.off).collect();
        assert_eq!(offs, vec![0x100, 0x180]);
    }

    // ---- walkers ----

    fn built() -> ConfigSpace {
        let mut c = express();
        let mut s = CapChainBuilder::standard();
        s.add_at(0x60, std_cap(id::MSI, 0x18)).expect("msi");
        s.add_at(0x90, std_cap(id::EXP, 0x3c)).expect("exp");
        s.install(&mut c).expect("std");
        let mut e = CapChainBuilder::extended();
        e.add_at(0x100, CapBlock::ext(ext_id::AER, 2, 0x48)).expect("aer");
        e.add_at(0x148, CapBlock::ext(ext_id::ACS, 1, 8)).expect("acs");
        e.install(&mut c).expect("ext");
        c
    }

    fn raw_std(ptr: u8) -> Vec<u8> {
        let mut v = vec![0u8; 256];
        if let Some(b) = v.get_mut(6) {
            *b = 0x10;
        }
        if let Some(b) = v.get_mut(0x34) {
            *b = ptr;
        }
        v
    }

    fn put(v: &mut [u8], off: usize, bytes: &[u8]) {
        if let Some(s) = v.get_mut(off..off + bytes.len()) {
            s.copy_from_slice(bytes);
        }
    }

    #[test]
    fn walk_standard_finds_built_chain() {
        let w = walk_standard(built().bytes());
        assert!(w.is_clean(), "{:?}", w.problems);
        assert_eq!(
            w.caps,
            vec![FoundCap { id: 5, off: 0x60, version: 0 }, FoundCap { id: 0x10, off: 0x90, version: 0 }]
        );
        assert_eq!(w.find(0x10), Some(0x90));
        assert_eq!(w.find(0x11), None);
    }

    #[test]
    fn walk_standard_with_cap_list_clear_is_empty() {
        let mut v = raw_std(0x40);
        put(&mut v, 6, &[0]);
        let w = walk_standard(&v);
        assert!(w.caps.is_empty() && w.is_clean());
    }

    #[test]
    fn walk_standard_detects_loop() {
        let mut v = raw_std(0x40);
        put(&mut v, 0x40, &[1, 0x50]);
        put(&mut v, 0x50, &[5, 0x40]);
        let w = walk_standard(&v);
        assert_eq!(w.caps.len(), 2);
        assert_eq!(w.problems, vec![ChainProblem::Loop { at: 0x50, ptr: 0x40 }]);
    }

    #[test]
    fn walk_standard_detects_self_loop() {
        let mut v = raw_std(0x40);
        put(&mut v, 0x40, &[1, 0x40]);
        let w = walk_standard(&v);
        assert_eq!(w.caps.len(), 1);
        assert_eq!(w.problems, vec![ChainProblem::Loop { at: 0x40, ptr: 0x40 }]);
    }

    #[test]
    fn walk_standard_stops_at_pointer_into_header() {
        let mut v = raw_std(0x40);
        put(&mut v, 0x40, &[1, 0x10]);
        let w = walk_standard(&v);
        assert_eq!(w.caps.len(), 1);
        assert_eq!(w.problems, vec![ChainProblem::PointerBelowStart { at: 0x40, ptr: 0x10 }]);
    }

    #[test]
    fn walk_standard_masks_reserved_pointer_bits() {
        let mut v = raw_std(0x43);
        put(&mut v, 0x40, &[1, 0x52]);
        put(&mut v, 0x50, &[5, 0]);
        let w = walk_standard(&v);
        assert_eq!(w.caps.iter().map(|c| c.off).collect::<Vec<_>>(), vec![0x40, 0x50]);
        assert_eq!(
            w.problems,
            vec![
                ChainProblem::ReservedPointerBits { at: 0x34, ptr: 0x43 },
                ChainProblem::ReservedPointerBits { at: 0x40, ptr: 0x52 }
            ]
        );
    }

    #[test]
    fn walk_standard_stops_at_all_ones_id() {
        let mut v = raw_std(0x40);
        put(&mut v, 0x40, &[0xff, 0xff]);
        let w = walk_standard(&v);
        assert!(w.caps.is_empty());
        assert_eq!(w.problems, vec![ChainProblem::InvalidHeader { at: 0x40 }]);
    }

    #[test]
    fn walk_standard_of_all_ones_device_terminates() {
        let w = walk_standard(&[0xffu8; 256]);
        assert!(w.caps.is_empty());
        assert_eq!(w.problems.last(), Some(&ChainProblem::InvalidHeader { at: 0xfc }));
    }

    #[test]
    fn walk_standard_reports_truncated_buffer() {
        let w = walk_standard(&[0u8; 8]);
        assert_eq!(w.problems, vec![ChainProblem::Truncated { len: 8 }]);
    }

    #[test]
    fn walk_standard_pointer_beyond_short_buffer() {
        let mut v = raw_std(0x80);
        v.truncate(0x80);
        let w = walk_standard(&v);
        assert_eq!(w.problems, vec![ChainProblem::PointerOutOfRange { at: 0x34, ptr: 0x80, limit: 0x80 }]);
    }

    #[test]
    fn walk_standard_longest_chain_terminates() {
        // Every dword from 0x40 points to the next: 48 capabilities, no problem.
        let mut v = raw_std(0x40);
        for off in (0x40..0x100).step_by(4) {
            let next = if off == 0xfc { 0 } else { off + 4 };
            put(&mut v, off, &[9, next as u8]);
        }
        let w = walk_standard(&v);
        assert_eq!(w.caps.len(), 48);
        assert!(w.is_clean());
    }

    #[test]
    fn walk_extended_finds_built_chain() {
        let w = walk_extended(built().bytes());
        assert!(w.is_clean(), "{:?}", w.problems);
        assert_eq!(
            w.caps,
            vec![FoundCap { id: 1, off: 0x100, version: 2 }, FoundCap { id: 0xd, off: 0x148, version: 1 }]
        );
    }

    #[test]
    fn walk_extended_zero_header_is_empty() {
        let w = walk_extended(&[0u8; 4096]);
        assert!(w.caps.is_empty() && w.is_clean());
    }

    #[test]
    fn walk_extended_conventional_bytes_are_empty() {
        let w = walk_extended(&[0xffu8; 256]);
        assert!(w.caps.is_empty() && w.is_clean());
    }

    #[test]
    fn walk_extended_all_ones_header_stops() {
        let w = walk_extended(&[0xffu8; 4096]);
        assert!(w.caps.is_empty());
        assert_eq!(w.problems, vec![ChainProblem::InvalidHeader { at: 0x100 }]);
    }

    #[test]
    fn walk_extended_detects_loop() {
        let mut v = vec![0u8; 4096];
        put(&mut v, 0x100, &(0x2000_0001u32).to_le_bytes());
        put(&mut v, 0x200, &(0x1000_0002u32).to_le_bytes());
        let w = walk_extended(&v);
        assert_eq!(w.caps.len(), 2);
        assert_eq!(w.problems, vec![ChainProblem::Loop { at: 0x200, ptr: 0x100 }]);
    }

    #[test]
    fn walk_extended_stops_at_pointer_below_0x100() {
        let mut v = vec![0u8; 4096];
        put(&mut v, 0x100, &(0x0400_0001u32).to_le_bytes());
        let w = walk_extended(&v);
        assert_eq!(w.caps.len(), 1);
        assert_eq!(w.problems, vec![ChainProblem::PointerBelowStart { at: 0x100, ptr: 0x40 }]);
    }

    #[test]
    fn walk_extended_stops_at_pointer_beyond_buffer() {
        let mut v = vec![0u8; 0x200];
        put(&mut v, 0x100, &(0x3000_0001u32).to_le_bytes());
        let w = walk_extended(&v);
        assert_eq!(w.caps.len(), 1);
        assert_eq!(w.problems, vec![ChainProblem::PointerOutOfRange { at: 0x100, ptr: 0x300, limit: 0x200 }]);
    }

    #[test]
    fn walk_extended_masks_reserved_pointer_bits() {
        let mut v = vec![0u8; 4096];
        put(&mut v, 0x100, &(0x2030_0001u32).to_le_bytes()); // next = 0x203
        put(&mut v, 0x200, &(0x0000_000du32).to_le_bytes());
        let w = walk_extended(&v);
        assert_eq!(w.caps.iter().map(|c| c.off).collect::<Vec<_>>(), vec![0x100, 0x200]);
        assert_eq!(w.problems, vec![ChainProblem::ReservedPointerBits { at: 0x100, ptr: 0x203 }]);
    }

    #[test]
    fn walk_extended_longest_chain_terminates() {
        let mut v = vec![0u8; 4096];
        for off in (0x100u32..0x1000).step_by(4) {
            let next = if off == 0xffc { 0 } else { off + 4 };
            put(&mut v, off as usize, &((next << 20) | 0x1_000b).to_le_bytes());
        }
        let w = walk_extended(&v);
        assert_eq!(w.caps.len(), 960);
        assert!(w.is_clean());
    }

    #[test]
    fn walkers_never_panic_on_random_bytes() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let len = [0usize, 7, 0x40, 0x100, 0x104, 0x800, 0x1000][round % 7];
            let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards interesting chains: set CapList and keep pointers in range.
            put(&mut v, 6, &[0x10]);
            let s = walk_standard(&v);
            let e = walk_extended(&v);
            assert!(s.caps.len() <= 48 && e.caps.len() <= 960);
        }
    }

    #[test]
    fn chain_problem_display_names_offsets() {
        let s = ChainProblem::Loop { at: 0x50, ptr: 0x40 }.to_string();
        assert!(s.contains("0x50") && s.contains("0x40"), "{s}");
    }
}
