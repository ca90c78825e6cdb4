//! The config-space virtualisation table: for every register of the header, the power
//! management and PCI Express capabilities, which bits the guest sees from the host and which
//! from q35dm's emulated copy, which guest writes reach the device, and what happens to every
//! other capability (standard and extended). Data only: [`super::filter`] interprets it.
//!
//! # Field masks ([`Field`])
//! | mask | meaning |
//! |---|---|
//! | `host` | bits read live from the device; all other bits are **emulated** (served from q35dm's copy, initialised per `init`) |
//! | `host_write` | `host` bits whose guest writes are written to the device |
//! | `host_w1c` | `host` bits that are write-1-to-clear on the device: the guest's 1s are passed, every other such bit is written 0 |
//! | `reserved` | `host` bits written to the device only with `permissive=on` (reserved/unknown bits, XSA-131) |
//! | `rw`, `w1c` | emulated bits the guest may write / clear by writing 1 |
//!
//! A register whose guest-writable bits are all emulated is never written to the device (the
//! XSA-128 rule). Bytes not described by any field or capability in 0x40..0x100 are read from
//! the device and written only with `permissive=on`; bytes of hidden capabilities read 0 and are
//! never written, permissive or not; the extended space is rebuilt entirely (see [`EXT_CAPS`]).
//!
//! Decisions (QEMU `hw/xen/xen_pt_config_init.c` is the reference; deviations are marked):
//! - Command: I/O and memory decode, parity and SERR response, fast back-to-back and INTx
//!   disable are emulated, so a guest can never switch the device's decode or error signalling
//!   (XSA-120/126). Bus master, special cycles, MWI and VGA snoop reach the device (the device
//!   needs bus mastering for DMA and MSI; pciback lets guests control it too). INTx disable
//!   reaches the device through a hook: setting always, clearing only while INTx is bound.
//! - Status: interrupt status, 66 MHz, fast back-to-back, DEVSEL and the error bits are the
//!   device's (the error bits cleared by writing 1, as QEMU); capabilities list is emulated.
//! - PCI Express DevCtl, LnkCtl, DevCtl2, LnkCtl2 are fully emulated (error-reporting enables,
//!   ASPM, payload sizes and completion timeouts never reach the device: XSA-59); DevSta error
//!   bits are emulated too (QEMU passes them; here they belong to the virtual AER capability, so a
//!   guest cannot clear host-observed errors); FLR and phantom functions are hidden in DevCap,
//!   End-End TLP prefixes in DevCap2; LnkSta/LnkSta2 and Transactions Pending are read live.
//! - Power management: the guest's D-state changes stay in the emulated PMCSR (QEMU without
//!   `power_mgmt`); PME is hidden.
//! - Extended capabilities (QEMU exposes none): AER is exposed and **virtualised** (an emulated
//!   AER capability that host errors can be injected into), DSN and vendor-specific ones are
//!   exposed as read-only copies, everything else is hidden; the chain is rebuilt from 0x100
//!   with only the exposed ones.

use crate::pci::caps::ext_id;

/// How the emulated bits of a field start out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The host's value.
    Host,
    /// The host's value with `clear` bits cleared, then `set` bits set.
    HostEdit {
        /// Bits cleared.
        clear: u32,
        /// Bits set.
        set: u32,
    },
    /// A constant.
    Const(u32),
    /// Whatever the generic function put there (capability list bit).
    Keep,
}

/// One register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Name, for logs and tests.
    pub name: &'static str,
    /// Offset (in the header, or relative to the capability).
    pub off: u16,
    /// Width: 1, 2 or 4.
    pub width: u8,
    /// Bits read live from the device.
    pub host: u32,
    /// Device bits the guest writes through.
    pub host_write: u32,
    /// Device bits that are RW1C on the device.
    pub host_w1c: u32,
    /// Device bits written through only with `permissive=on`.
    pub reserved: u32,
    /// Emulated RW bits.
    pub rw: u32,
    /// Emulated RW1C bits.
    pub w1c: u32,
    /// Initial value of the emulated bits.
    pub init: Init,
}

impl Field {
    /// Emulated, read-only, a copy of the host's value.
    pub const fn copy(name: &'static str, off: u16, width: u8) -> Self {
        Field { name, off, width, host: 0, host_write: 0, host_w1c: 0, reserved: 0, rw: 0, w1c: 0, init: Init::Host }
    }
    /// Emulated, read-only, the host's value with `clear` bits cleared.
    pub const fn copy_clear(name: &'static str, off: u16, width: u8, clear: u32) -> Self {
        Field { init: Init::HostEdit { clear, set: 0 }, ..Field::copy(name, off, width) }
    }
    /// Emulated, read-only zero.
    pub const fn zero(name: &'static str, off: u16, width: u8) -> Self {
        Field { init: Init::Const(0), ..Field::copy(name, off, width) }
    }
    /// Read live from the device, never written.
    pub const fn live(name: &'static str, off: u16, width: u8, bits: u32) -> Self {
        Field { host: bits, ..Field::zero(name, off, width) }
    }
    /// Emulated with `rw` bits writable, starting from the host's value.
    pub const fn emulated(name: &'static str, off: u16, width: u8, rw: u32) -> Self {
        Field { rw, ..Field::copy(name, off, width) }
    }
}

/// The standard header (0x00-0x3F). BARs, the ROM BAR, the capabilities pointer, header type and
/// interrupt pin are emulated by the generic function (BAR writes never reach the device).
pub const HEADER: &[Field] = &[
    Field::copy("vendor ID", 0x00, 2),
    Field::copy("device ID", 0x02, 2),
    Field {
        name: "command",
        off: 0x04,
        width: 2,
        host: 0xF8BC,
        host_write: 0x003C,
        host_w1c: 0,
        reserved: 0xF880,
        rw: 0x0743,
        w1c: 0,
        init: Init::Const(0),
    },
    Field {
        name: "status",
        off: 0x06,
        width: 2,
        host: 0xFFA8,
        host_write: 0,
        host_w1c: 0xF900,
        reserved: 0,
        rw: 0,
        w1c: 0,
        init: Init::Keep,
    },
    Field::copy("revision ID and class code", 0x08, 4),
    Field { rw: 0xFF, init: Init::Const(0), ..Field::copy("cache line size", 0x0C, 1) },
    Field { rw: 0xFF, init: Init::Const(0), ..Field::copy("latency timer", 0x0D, 1) },
    Field::zero("BIST", 0x0F, 1),
    Field::copy("CardBus CIS pointer", 0x28, 4),
    Field::copy("subsystem IDs", 0x2C, 4),
    Field::zero("reserved 0x35", 0x35, 1),
    Field::zero("reserved 0x36", 0x36, 2),
    Field::zero("reserved 0x38", 0x38, 4),
    Field { rw: 0xFF, init: Init::Const(0), ..Field::copy("interrupt line", 0x3C, 1) },
    Field::copy("Min_Gnt and Max_Lat", 0x3E, 2),
];

/// Power management capability (ID 0x01), 8 bytes.
pub const PM: &[Field] = &[
    // PME clock, aux current and PME support hidden (QEMU emu_mask 0xF9C8).
    Field::copy_clear("PMC", 0x02, 2, 0xF9C8),
    // Power state RW (emulated), No_Soft_Reset = 1, PME_En/PME_Status/data hidden.
    Field { rw: 0x0003, init: Init::Const(0x0008), ..Field::copy("PMCSR", 0x04, 2) },
    Field::zero("PMCSR_BSE and data", 0x06, 2),
];

/// PCI Express capability (ID 0x10) of an endpoint; fields past the capability's length (0x14 for
/// a version 1 endpoint, 0x0C for a version 1 integrated endpoint, 0x3C for version 2) are unused.
pub const PCIE: &[Field] = &[
    Field::copy_clear("PCI Express capabilities", 0x02, 2, 0x0100),
    // FLR and phantom functions hidden.
    Field::copy_clear("DevCap", 0x04, 4, (1 << 28) | 0x18),
    // Error reporting enables start off; Initiate FLR is RO 0 (FLR hidden).
    Field { init: Init::HostEdit { clear: 0x800F, set: 0 }, ..Field::emulated("DevCtl", 0x08, 2, 0x7FFF) },
    Field { host: 0x0030, w1c: 0x000F, init: Init::Const(0), ..Field::copy("DevSta", 0x0A, 2) },
    Field::copy("LnkCap", 0x0C, 4),
    Field::emulated("LnkCtl", 0x10, 2, 0x0FC3),
    Field::live("LnkSta", 0x12, 2, 0xFFFF),
    Field::zero("SltCap", 0x14, 4),
    Field::zero("SltCtl", 0x18, 2),
    Field::zero("SltSta", 0x1A, 2),
    Field::zero("RootCtl", 0x1C, 2),
    Field::zero("RootCap", 0x1E, 2),
    Field::zero("RootSta", 0x20, 4),
    // End-End TLP prefixes hidden (the virtual AER logs no prefixes).
    Field::copy_clear("DevCap2", 0x24, 4, (1 << 21) | (3 << 22)),
    Field { init: Init::HostEdit { clear: !0x775F, set: 0 }, ..Field::emulated("DevCtl2", 0x28, 2, 0x775F) },
    Field::zero("DevSta2", 0x2A, 2),
    Field::copy("LnkCap2", 0x2C, 4),
    Field::emulated("LnkCtl2", 0x30, 2, 0xFFFF),
    Field::live("LnkSta2", 0x32, 2, 0xFFFF),
    Field::zero("SltCap2", 0x34, 4),
    Field::zero("SltCtl2", 0x38, 2),
    Field::zero("SltSta2", 0x3A, 2),
];

/// Length of a standard capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapLen {
    /// Fixed.
    Fixed(u16),
    /// In the byte at +2 (vendor-specific).
    Byte2,
    /// By the PCI Express capability version and type.
    Pcie,
}

/// What happens to a standard capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdPolicy {
    /// Exposed; registers per the field table.
    Fields(&'static [Field], CapLen),
    /// Exposed, emulated MSI (one vector, no per-vector masking), bound through Xen.
    Msi,
    /// Exposed, emulated MSI-X control and trapped table, bound through Xen.
    Msix,
    /// Exposed; the body is read live from the device, written only with `permissive=on`.
    Raw(CapLen),
    /// Unlinked; its bytes read 0 and ignore writes, permissive or not.
    Hide(CapLen),
}

/// Rule for one standard capability ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StdCapRule {
    /// Capability ID.
    pub id: u8,
    /// Name.
    pub name: &'static str,
    /// Treatment.
    pub policy: StdPolicy,
}

const fn std_rule(id: u8, name: &'static str, policy: StdPolicy) -> StdCapRule {
    StdCapRule { id, name, policy }
}

/// Standard capabilities; any other ID is [`UNKNOWN_STD`].
pub const STD_CAPS: &[StdCapRule] = &[
    std_rule(0x01, "Power Management", StdPolicy::Fields(PM, CapLen::Fixed(8))),
    std_rule(0x02, "AGP", StdPolicy::Hide(CapLen::Fixed(12))),
    std_rule(0x03, "Vital Product Data", StdPolicy::Hide(CapLen::Fixed(8))),
    std_rule(0x04, "Slot Identification", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x05, "MSI", StdPolicy::Msi),
    std_rule(0x06, "CompactPCI Hot Swap", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x07, "PCI-X", StdPolicy::Hide(CapLen::Fixed(8))),
    std_rule(0x08, "HyperTransport", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x09, "Vendor Specific", StdPolicy::Raw(CapLen::Byte2)),
    std_rule(0x0A, "Debug Port", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x0B, "CompactPCI Central Resource Control", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x0C, "PCI Hot-Plug (SHPC)", StdPolicy::Hide(CapLen::Fixed(8))),
    std_rule(0x0D, "Bridge Subsystem Vendor ID", StdPolicy::Hide(CapLen::Fixed(8))),
    std_rule(0x0E, "AGP 8x", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x0F, "Secure Device", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x10, "PCI Express", StdPolicy::Fields(PCIE, CapLen::Pcie)),
    std_rule(0x11, "MSI-X", StdPolicy::Msix),
    std_rule(0x12, "SATA Data/Index", StdPolicy::Hide(CapLen::Fixed(8))),
    std_rule(0x13, "Advanced Features", StdPolicy::Hide(CapLen::Fixed(6))),
    std_rule(0x14, "Enhanced Allocation", StdPolicy::Hide(CapLen::Fixed(4))),
    std_rule(0x15, "Flattening Portal Bridge", StdPolicy::Hide(CapLen::Fixed(4))),
];

/// Rule for standard capability IDs not in [`STD_CAPS`]: unlinked, header dword hidden.
pub const UNKNOWN_STD: StdCapRule = std_rule(0, "unknown", StdPolicy::Hide(CapLen::Fixed(4)));

/// The rule for standard capability `id`.
pub fn std_rule_for(id: u16) -> StdCapRule {
    STD_CAPS.iter().find(|r| u16::from(r.id) == id).copied().unwrap_or(StdCapRule { id: id as u8, ..UNKNOWN_STD })
}

/// Length of an exposed extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtLen {
    /// Fixed.
    Fixed(u16),
    /// From the vendor-specific header at +4 (bits 31:20).
    Vsec,
}

/// What happens to an extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtPolicy {
    /// An emulated AER capability (version 2, 0x48 bytes) at 0x100; host errors are injected
    /// into it, guest writes never reach the device's AER registers.
    VirtualAer,
    /// A read-only copy of the device's capability.
    Copy(ExtLen),
    /// Not in the guest's chain.
    Hide,
}

/// Rule for one extended capability ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapRule {
    /// Capability ID.
    pub id: u16,
    /// Name.
    pub name: &'static str,
    /// Treatment.
    pub policy: ExtPolicy,
}

const fn ext_rule(id: u16, name: &'static str, policy: ExtPolicy) -> ExtCapRule {
    ExtCapRule { id, name, policy }
}

/// Extended capabilities; any other ID is hidden.
pub const EXT_CAPS: &[ExtCapRule] = &[
    ext_rule(ext_id::AER, "Advanced Error Reporting", ExtPolicy::VirtualAer),
    ext_rule(0x0002, "Virtual Channel", ExtPolicy::Hide),
    ext_rule(ext_id::DSN, "Device Serial Number", ExtPolicy::Copy(ExtLen::Fixed(0x0C))),
    ext_rule(0x0004, "Power Budgeting", ExtPolicy::Hide),
    ext_rule(0x0005, "Root Complex Link Declaration", ExtPolicy::Hide),
    ext_rule(0x0008, "Multi-Function Virtual Channel", ExtPolicy::Hide),
    ext_rule(0x0009, "Virtual Channel (MFVC)", ExtPolicy::Hide),
    ext_rule(ext_id::VENDOR, "Vendor-Specific", ExtPolicy::Copy(ExtLen::Vsec)),
    ext_rule(ext_id::ACS, "Access Control Services", ExtPolicy::Hide),
    ext_rule(ext_id::ARI, "Alternative Routing-ID", ExtPolicy::Hide),
    ext_rule(0x000F, "Address Translation Services", ExtPolicy::Hide),
    ext_rule(0x0010, "SR-IOV", ExtPolicy::Hide),
    ext_rule(0x0013, "Page Request", ExtPolicy::Hide),
    ext_rule(0x0015, "Resizable BAR", ExtPolicy::Hide),
    ext_rule(0x0017, "TPH Requester", ExtPolicy::Hide),
    ext_rule(0x0018, "Latency Tolerance Reporting", ExtPolicy::Hide),
    ext_rule(0x0019, "Secondary PCI Express", ExtPolicy::Hide),
    ext_rule(0x001B, "PASID", ExtPolicy::Hide),
    ext_rule(ext_id::DPC, "Downstream Port Containment", ExtPolicy::Hide),
    ext_rule(0x001E, "L1 PM Substates", ExtPolicy::Hide),
    ext_rule(0x001F, "Precision Time Measurement", ExtPolicy::Hide),
];

/// The rule for extended capability `id`.
pub fn ext_rule_for(id: u16) -> ExtCapRule {
    EXT_CAPS.iter().find(|r| r.id == id).copied().unwrap_or(ext_rule(id, "unknown", ExtPolicy::Hide))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width_mask(w: u8) -> u32 {
        match w {
            1 => 0xff,
            2 => 0xffff,
            _ => 0xffff_ffff,
        }
    }

    fn check(table: &[Field]) {
        for f in table {
            let wm = width_mask(f.width);
            assert!(matches!(f.width, 1 | 2 | 4), "{}: width", f.name);
            for (what, m) in [
                ("host", f.host),
                ("host_write", f.host_write),
                ("host_w1c", f.host_w1c),
                ("reserved", f.reserved),
                ("rw", f.rw),
                ("w1c", f.w1c),
            ] {
                assert_eq!(m & !wm, 0, "{}: {what} wider than the register", f.name);
            }
            assert_eq!(f.host_write & !f.host, 0, "{}: writes through bits it does not read", f.name);
            assert_eq!(f.host_w1c & !f.host, 0, "{}: RW1C device bits must be device bits", f.name);
            assert_eq!(f.reserved & !f.host, 0, "{}: reserved bits must be device bits", f.name);
            assert_eq!(f.host_write & (f.host_w1c | f.reserved), 0, "{}: overlapping device masks", f.name);
            assert_eq!((f.rw | f.w1c) & f.host, 0, "{}: emulated bits that are device bits", f.name);
            assert_eq!(f.rw & f.w1c, 0, "{}: RW and RW1C", f.name);
        }
        for (i, a) in table.iter().enumerate() {
            for b in table.iter().skip(i + 1) {
                let (a0, a1) = (a.off, a.off + u16::from(a.width));
                let (b0, b1) = (b.off, b.off + u16::from(b.width));
                assert!(a1 <= b0 || b1 <= a0, "{} overlaps {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn tables_are_consistent() {
        check(HEADER);
        check(PM);
        check(PCIE);
        assert!(PM.iter().chain(PCIE).all(|f| f.off >= 2), "capability headers belong to the chain builder");
    }

    #[test]
    fn command_never_passes_decode_or_error_bits() {
        let c = HEADER.iter().find(|f| f.name == "command").expect("command");
        for bit in [0u32, 1, 6, 8, 10] {
            assert_eq!(c.host_write & (1 << bit), 0, "bit {bit} must not reach the device");
        }
        assert_ne!(c.host_write & 0x4, 0, "bus master reaches the device");
    }

    #[test]
    fn rules_cover_every_treatment() {
        assert_eq!(std_rule_for(0x05).policy, StdPolicy::Msi);
        assert_eq!(std_rule_for(0x77).policy, UNKNOWN_STD.policy);
        assert_eq!(ext_rule_for(ext_id::AER).policy, ExtPolicy::VirtualAer);
        assert_eq!(ext_rule_for(0x0010).policy, ExtPolicy::Hide);
        assert_eq!(ext_rule_for(0x7777).policy, ExtPolicy::Hide);
    }
}
