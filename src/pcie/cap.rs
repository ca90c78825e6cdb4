//! PCI Express Capability (ID 0x10), version 2: register offsets and bits, a builder that returns
//! a [`CapBlock`] with the right masks for every function type, and typed accessors for the live
//! bits ([`PcieCap`]).
//!
//! Layout and attributes: /work/shared/reference/pcie-spec.md §4 (and §4.1 for the slot
//! registers, whose table comes from [`SlotConfig::registers`]).
//!
//! # Register attributes chosen
//! | reg | RW | RW1C | live (model-set) | notes |
//! |---|---|---|---|---|
//! | Capabilities +2 | - | - | IMN (HwInit) | version 2, type, Slot Implemented |
//! | DevCap +4 | - | - | - | MPS, ExtTag, RBER=1, FLR (endpoints) |
//! | DevCtl +8 | CERE NFERE FERE URRE, RO-en, MPS, ExtTag (if cap), NoSnoop, MRRS, BCR/FLR (if FLR) | - | - | spec defaults RO-en=1, NoSnoop=1, MRRS=512 B |
//! | DevSta +A | - | CED NFED FED URD | error bits (AER) | AUXPD/TRPND RO 0 |
//! | LnkCap +C | - | - | - | SLS, MLW, DLLLARC (slot ports), ASPM compliance, port number; no ASPM |
//! | LnkCtl +10 | ASPMC, CCC, ES; RCB (endpoints); LD (root/downstream ports) | - | - | RL is RO 0: retraining completes instantly |
//! | LnkSta +12 | - | - | DLLLA (HwInit) | CLS/NLW = the configured link, LT=0, SLC=1 |
//! | Slot +14..+1B | see [`SlotConfig::registers`] | | PDS, MRLSS (HwInit), EIS | root/downstream ports with a slot |
//! | RootCtl +1C | SECEE SENFEE SEFEE PMEIE | - | - | root ports |
//! | RootCap +1E | - | - | - | CRS Software Visibility **not** supported (see below) |
//! | RootSta +20 | - | PME Status | requester ID, PME Pending | root ports |
//! | DevCap2 +24 | - | - | - | completion timeout ranges/disable, ARI forwarding, EFF+EETLPP |
//! | DevCtl2 +28 | CTV (if ranges), CTD (if supported), ARI fwd (if cap), EETLPPB (ports with prefixes) | - | - | |
//! | LnkCap2 +2C | - | - | - | supported speeds vector up to the configured speed |
//! | LnkCtl2 +30 | Target Link Speed | - | - | init = configured speed |
//!
//! Decisions:
//! - **CRS Software Visibility** is not offered (RootCap.CRSVIS = 0, RootCtl.CRSSVE RO 0): emulated
//!   functions answer config reads at once and never return Configuration Request Retry Status,
//!   so the feature would have nothing to report.
//! - The Data Link Layer Link Active bit and the slot's physical-state bits (PDS, MRLSS) are
//!   HwInit: no reset kind changes them, so the link/presence state survives a port reset until
//!   the model updates it (the slot model recomputes it in [`crate::pcie::slot::Slot::reset`]).
//! - RC-integrated endpoints have no link: LnkCap/LnkCtl/LnkSta and their "2" versions are RO 0
//!   (Linux does not read them for that type either).
//! - ASPM is not advertised (ASPMS = 0), nor Link Bandwidth Notification (LBNC = 0), so no
//!   LBMS/LABS bits can ever be set.

use thiserror::Error;

use crate::pci::caps::{id, CapBlock};
use crate::pci::config::{ConfigSpace, RegSpec};
use crate::pcie::slot::{SlotConfig, SlotError};

/// Length of the version-2 PCI Express capability.
pub const PCIE_CAP_LEN: u16 = 0x3C;
/// Capability version built.
pub const PCIE_CAP_VERSION: u16 = 2;

/// Register offsets relative to the capability.
pub mod off {
    /// PCI Express Capabilities register (16).
    pub const FLAGS: u16 = 0x02;
    /// Device Capabilities (32).
    pub const DEVCAP: u16 = 0x04;
    /// Device Control (16).
    pub const DEVCTL: u16 = 0x08;
    /// Device Status (16).
    pub const DEVSTA: u16 = 0x0A;
    /// Link Capabilities (32).
    pub const LNKCAP: u16 = 0x0C;
    /// Link Control (16).
    pub const LNKCTL: u16 = 0x10;
    /// Link Status (16).
    pub const LNKSTA: u16 = 0x12;
    /// Slot Capabilities (32).
    pub const SLTCAP: u16 = 0x14;
    /// Slot Control (16).
    pub const SLTCTL: u16 = 0x18;
    /// Slot Status (16).
    pub const SLTSTA: u16 = 0x1A;
    /// Root Control (16).
    pub const RTCTL: u16 = 0x1C;
    /// Root Capabilities (16).
    pub const RTCAP: u16 = 0x1E;
    /// Root Status (32).
    pub const RTSTA: u16 = 0x20;
    /// Device Capabilities 2 (32).
    pub const DEVCAP2: u16 = 0x24;
    /// Device Control 2 (16).
    pub const DEVCTL2: u16 = 0x28;
    /// Device Status 2 (16).
    pub const DEVSTA2: u16 = 0x2A;
    /// Link Capabilities 2 (32).
    pub const LNKCAP2: u16 = 0x2C;
    /// Link Control 2 (16).
    pub const LNKCTL2: u16 = 0x30;
    /// Link Status 2 (16).
    pub const LNKSTA2: u16 = 0x32;
    /// Slot Capabilities 2 (32).
    pub const SLTCAP2: u16 = 0x34;
    /// Slot Control 2 (16).
    pub const SLTCTL2: u16 = 0x38;
    /// Slot Status 2 (16).
    pub const SLTSTA2: u16 = 0x3A;
}

/// PCI Express Capabilities register (+0x02) fields.
pub mod flags {
    /// Capability version (bits 3:0).
    pub const VERSION: u16 = 0x000F;
    /// Device/port type (bits 7:4).
    pub const TYPE: u16 = 0x00F0;
    /// Shift of [`TYPE`].
    pub const TYPE_SHIFT: u16 = 4;
    /// Slot Implemented.
    pub const SLOT: u16 = 1 << 8;
    /// Interrupt Message Number (bits 13:9).
    pub const IMN: u16 = 0x3E00;
    /// Shift of [`IMN`].
    pub const IMN_SHIFT: u16 = 9;
}

/// Device Capabilities (+0x04) fields.
pub mod devcap {
    /// Max_Payload_Size Supported (bits 2:0).
    pub const MPS: u32 = 0x7;
    /// Phantom Functions Supported (bits 4:3).
    pub const PHANTOM: u32 = 0x18;
    /// Extended Tag Field Supported.
    pub const EXT_TAG: u32 = 1 << 5;
    /// Endpoint L0s Acceptable Latency (bits 8:6).
    pub const L0S_LAT: u32 = 0x1C0;
    /// Endpoint L1 Acceptable Latency (bits 11:9).
    pub const L1_LAT: u32 = 0xE00;
    /// Role-Based Error Reporting.
    pub const RBER: u32 = 1 << 15;
    /// Captured Slot Power Limit Value (bits 25:18).
    pub const PWR_VAL: u32 = 0x03FC_0000;
    /// Captured Slot Power Limit Scale (bits 27:26).
    pub const PWR_SCL: u32 = 0x0C00_0000;
    /// Function Level Reset Capability.
    pub const FLR: u32 = 1 << 28;
}

/// Device Control (+0x08) fields.
pub mod devctl {
    /// Correctable Error Reporting Enable.
    pub const CERE: u16 = 1 << 0;
    /// Non-Fatal Error Reporting Enable.
    pub const NFERE: u16 = 1 << 1;
    /// Fatal Error Reporting Enable.
    pub const FERE: u16 = 1 << 2;
    /// Unsupported Request Reporting Enable.
    pub const URRE: u16 = 1 << 3;
    /// All four error reporting enables.
    pub const ERR_ENABLES: u16 = CERE | NFERE | FERE | URRE;
    /// Enable Relaxed Ordering.
    pub const RELAX_EN: u16 = 1 << 4;
    /// Max_Payload_Size (bits 7:5).
    pub const MPS: u16 = 0x00E0;
    /// Shift of [`MPS`].
    pub const MPS_SHIFT: u16 = 5;
    /// Extended Tag Field Enable.
    pub const EXT_TAG: u16 = 1 << 8;
    /// Phantom Functions Enable.
    pub const PHANTOM: u16 = 1 << 9;
    /// Aux Power PM Enable.
    pub const AUX_PME: u16 = 1 << 10;
    /// Enable No Snoop.
    pub const NOSNOOP_EN: u16 = 1 << 11;
    /// Max_Read_Request_Size (bits 14:12).
    pub const MRRS: u16 = 0x7000;
    /// Shift of [`MRRS`].
    pub const MRRS_SHIFT: u16 = 12;
    /// Initiate Function Level Reset (endpoints) / Bridge Configuration Retry Enable.
    pub const BCR_FLR: u16 = 1 << 15;
}

/// Device Status (+0x0A) fields.
pub mod devsta {
    /// Correctable Error Detected (RW1C).
    pub const CED: u16 = 1 << 0;
    /// Non-Fatal Error Detected (RW1C).
    pub const NFED: u16 = 1 << 1;
    /// Fatal Error Detected (RW1C).
    pub const FED: u16 = 1 << 2;
    /// Unsupported Request Detected (RW1C).
    pub const URD: u16 = 1 << 3;
    /// The four error bits.
    pub const ERRORS: u16 = CED | NFED | FED | URD;
    /// AUX Power Detected (RO).
    pub const AUXPD: u16 = 1 << 4;
    /// Transactions Pending (RO).
    pub const TRPND: u16 = 1 << 5;
}

/// Link Capabilities (+0x0C) fields.
pub mod lnkcap {
    /// Max Link Speed (bits 3:0).
    pub const SLS: u32 = 0xF;
    /// Maximum Link Width (bits 9:4).
    pub const MLW: u32 = 0x3F0;
    /// Shift of [`MLW`].
    pub const MLW_SHIFT: u32 = 4;
    /// ASPM Support (bits 11:10).
    pub const ASPMS: u32 = 0xC00;
    /// L0s Exit Latency (bits 14:12).
    pub const L0SEL: u32 = 0x7000;
    /// L1 Exit Latency (bits 17:15).
    pub const L1EL: u32 = 0x3_8000;
    /// Clock Power Management.
    pub const CLKPM: u32 = 1 << 18;
    /// Surprise Down Error Reporting Capable.
    pub const SDERC: u32 = 1 << 19;
    /// Data Link Layer Link Active Reporting Capable.
    pub const DLLLARC: u32 = 1 << 20;
    /// Link Bandwidth Notification Capability.
    pub const LBNC: u32 = 1 << 21;
    /// ASPM Optionality Compliance.
    pub const ASPM_COMPLIANCE: u32 = 1 << 22;
    /// Port Number (bits 31:24).
    pub const PN: u32 = 0xFF00_0000;
    /// Shift of [`PN`].
    pub const PN_SHIFT: u32 = 24;
}

/// Link Control (+0x10) fields.
pub mod lnkctl {
    /// ASPM Control (bits 1:0).
    pub const ASPMC: u16 = 0x3;
    /// Read Completion Boundary.
    pub const RCB: u16 = 1 << 3;
    /// Link Disable (root/downstream ports).
    pub const LD: u16 = 1 << 4;
    /// Retrain Link (root/downstream ports; always reads 0).
    pub const RL: u16 = 1 << 5;
    /// Common Clock Configuration.
    pub const CCC: u16 = 1 << 6;
    /// Extended Synch.
    pub const ES: u16 = 1 << 7;
    /// Enable Clock Power Management.
    pub const CLKREQ_EN: u16 = 1 << 8;
    /// Hardware Autonomous Width Disable.
    pub const HAWD: u16 = 1 << 9;
    /// Link Bandwidth Management Interrupt Enable.
    pub const LBMIE: u16 = 1 << 10;
    /// Link Autonomous Bandwidth Interrupt Enable.
    pub const LABIE: u16 = 1 << 11;
}

/// Link Status (+0x12) fields.
pub mod lnksta {
    /// Current Link Speed (bits 3:0).
    pub const CLS: u16 = 0xF;
    /// Negotiated Link Width (bits 9:4).
    pub const NLW: u16 = 0x3F0;
    /// Shift of [`NLW`].
    pub const NLW_SHIFT: u16 = 4;
    /// Link Training.
    pub const LT: u16 = 1 << 11;
    /// Slot Clock Configuration.
    pub const SLC: u16 = 1 << 12;
    /// Data Link Layer Link Active.
    pub const DLLLA: u16 = 1 << 13;
    /// Link Bandwidth Management Status.
    pub const LBMS: u16 = 1 << 14;
    /// Link Autonomous Bandwidth Status.
    pub const LABS: u16 = 1 << 15;
}

/// Slot Capabilities (+0x14) fields.
pub mod sltcap {
    /// Attention Button Present.
    pub const ABP: u32 = 1 << 0;
    /// Power Controller Present.
    pub const PCP: u32 = 1 << 1;
    /// MRL Sensor Present.
    pub const MRLSP: u32 = 1 << 2;
    /// Attention Indicator Present.
    pub const AIP: u32 = 1 << 3;
    /// Power Indicator Present.
    pub const PIP: u32 = 1 << 4;
    /// Hot-Plug Surprise.
    pub const HPS: u32 = 1 << 5;
    /// Hot-Plug Capable.
    pub const HPC: u32 = 1 << 6;
    /// Slot Power Limit Value (bits 14:7).
    pub const SPLV: u32 = 0x7F80;
    /// Slot Power Limit Scale (bits 16:15).
    pub const SPLS: u32 = 0x1_8000;
    /// Electromechanical Interlock Present.
    pub const EIP: u32 = 1 << 17;
    /// No Command Completed Support.
    pub const NCCS: u32 = 1 << 18;
    /// Physical Slot Number (bits 31:19).
    pub const PSN: u32 = 0xFFF8_0000;
    /// Shift of [`PSN`].
    pub const PSN_SHIFT: u32 = 19;
    /// Largest physical slot number (13 bits).
    pub const PSN_MAX: u16 = 0x1FFF;
}

/// Slot Control (+0x18) fields.
pub mod sltctl {
    /// Attention Button Pressed Enable.
    pub const ABPE: u16 = 1 << 0;
    /// Power Fault Detected Enable.
    pub const PFDE: u16 = 1 << 1;
    /// MRL Sensor Changed Enable.
    pub const MRLSCE: u16 = 1 << 2;
    /// Presence Detect Changed Enable.
    pub const PDCE: u16 = 1 << 3;
    /// Command Completed Interrupt Enable.
    pub const CCIE: u16 = 1 << 4;
    /// Hot-Plug Interrupt Enable.
    pub const HPIE: u16 = 1 << 5;
    /// Attention Indicator Control (bits 7:6).
    pub const AIC: u16 = 0x00C0;
    /// Shift of [`AIC`].
    pub const AIC_SHIFT: u16 = 6;
    /// Attention indicator on.
    pub const AIC_ON: u16 = 0x0040;
    /// Attention indicator blinking.
    pub const AIC_BLINK: u16 = 0x0080;
    /// Attention indicator off.
    pub const AIC_OFF: u16 = 0x00C0;
    /// Power Indicator Control (bits 9:8).
    pub const PIC: u16 = 0x0300;
    /// Shift of [`PIC`].
    pub const PIC_SHIFT: u16 = 8;
    /// Power indicator on.
    pub const PIC_ON: u16 = 0x0100;
    /// Power indicator blinking.
    pub const PIC_BLINK: u16 = 0x0200;
    /// Power indicator off.
    pub const PIC_OFF: u16 = 0x0300;
    /// Power Controller Control (1 = power off).
    pub const PCC: u16 = 1 << 10;
    /// Electromechanical Interlock Control (write 1 toggles; reads 0).
    pub const EIC: u16 = 1 << 11;
    /// Data Link Layer State Changed Enable.
    pub const DLLSCE: u16 = 1 << 12;
    /// Auto Slot Power Limit Disable.
    pub const ASPL_DISABLE: u16 = 1 << 13;
    /// In-Band PD Disable.
    pub const IBPD_DISABLE: u16 = 1 << 14;
}

/// Slot Status (+0x1A) fields.
pub mod sltsta {
    /// Attention Button Pressed (RW1C).
    pub const ABP: u16 = 1 << 0;
    /// Power Fault Detected (RW1C).
    pub const PFD: u16 = 1 << 1;
    /// MRL Sensor Changed (RW1C).
    pub const MRLSC: u16 = 1 << 2;
    /// Presence Detect Changed (RW1C).
    pub const PDC: u16 = 1 << 3;
    /// Command Completed (RW1C).
    pub const CC: u16 = 1 << 4;
    /// MRL Sensor State (RO; 1 = open).
    pub const MRLSS: u16 = 1 << 5;
    /// Presence Detect State (RO).
    pub const PDS: u16 = 1 << 6;
    /// Electromechanical Interlock Status (RO; 1 = engaged).
    pub const EIS: u16 = 1 << 7;
    /// Data Link Layer State Changed (RW1C).
    pub const DLLSC: u16 = 1 << 8;
    /// Every event bit.
    pub const EVENTS: u16 = ABP | PFD | MRLSC | PDC | CC | DLLSC;
}

/// Root Control (+0x1C) fields.
pub mod rtctl {
    /// System Error on Correctable Error Enable.
    pub const SECEE: u16 = 1 << 0;
    /// System Error on Non-Fatal Error Enable.
    pub const SENFEE: u16 = 1 << 1;
    /// System Error on Fatal Error Enable.
    pub const SEFEE: u16 = 1 << 2;
    /// PME Interrupt Enable.
    pub const PMEIE: u16 = 1 << 3;
    /// CRS Software Visibility Enable.
    pub const CRSSVE: u16 = 1 << 4;
}

/// Root Capabilities (+0x1E) fields.
pub mod rtcap {
    /// CRS Software Visibility.
    pub const CRSVIS: u16 = 1 << 0;
}

/// Root Status (+0x20) fields.
pub mod rtsta {
    /// PME Requester ID (bits 15:0).
    pub const PME_RID: u32 = 0xFFFF;
    /// PME Status (RW1C).
    pub const PME: u32 = 1 << 16;
    /// PME Pending (RO).
    pub const PENDING: u32 = 1 << 17;
}

/// Device Capabilities 2 (+0x24) fields.
pub mod devcap2 {
    /// Completion Timeout Ranges Supported (bits 3:0).
    pub const COMP_TMOUT_RANGES: u32 = 0xF;
    /// Completion Timeout Disable Supported.
    pub const COMP_TMOUT_DIS: u32 = 1 << 4;
    /// ARI Forwarding Supported.
    pub const ARI: u32 = 1 << 5;
    /// Extended Fmt Field Supported.
    pub const EFF: u32 = 1 << 20;
    /// End-End TLP Prefix Supported.
    pub const EETLPP: u32 = 1 << 21;
    /// Max End-End TLP Prefixes (bits 23:22) (0 = 4).
    pub const EE_PREFIX_MAX: u32 = 0xC0_0000;
}

/// Device Control 2 (+0x28) fields.
pub mod devctl2 {
    /// Completion Timeout Value (bits 3:0).
    pub const COMP_TIMEOUT: u16 = 0xF;
    /// Completion Timeout Disable.
    pub const COMP_TMOUT_DIS: u16 = 1 << 4;
    /// ARI Forwarding Enable.
    pub const ARI: u16 = 1 << 5;
    /// End-End TLP Prefix Blocking.
    pub const EETLPPB: u16 = 1 << 15;
}

/// Link Capabilities 2 (+0x2C) fields.
pub mod lnkcap2 {
    /// Supported Link Speeds Vector (bits 7:1).
    pub const SLSV: u32 = 0xFE;
    /// Crosslink Supported.
    pub const CROSSLINK: u32 = 1 << 8;
}

/// Link Control 2 (+0x30) fields.
pub mod lnkctl2 {
    /// Target Link Speed (bits 3:0).
    pub const TLS: u16 = 0xF;
    /// Enter Compliance.
    pub const ENTER_COMP: u16 = 1 << 4;
    /// Hardware Autonomous Speed Disable.
    pub const HASD: u16 = 1 << 5;
}

/// Device/port type (PCI Express Capabilities (bits 7:4)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortType {
    /// PCI Express Endpoint (0).
    Endpoint,
    /// Legacy PCI Express Endpoint (1).
    LegacyEndpoint,
    /// Root Port of a Root Complex (4).
    RootPort,
    /// Upstream Port of a Switch (5).
    UpstreamPort,
    /// Downstream Port of a Switch (6).
    DownstreamPort,
    /// Root Complex Integrated Endpoint (9).
    RcIntegratedEndpoint,
}

impl PortType {
    /// The 4-bit type code.
    pub const fn code(self) -> u8 {
        match self {
            PortType::Endpoint => 0,
            PortType::LegacyEndpoint => 1,
            PortType::RootPort => 4,
            PortType::UpstreamPort => 5,
            PortType::DownstreamPort => 6,
            PortType::RcIntegratedEndpoint => 9,
        }
    }
    /// The type for a 4-bit code (`None` for types this model does not build).
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(PortType::Endpoint),
            1 => Some(PortType::LegacyEndpoint),
            4 => Some(PortType::RootPort),
            5 => Some(PortType::UpstreamPort),
            6 => Some(PortType::DownstreamPort),
            9 => Some(PortType::RcIntegratedEndpoint),
            _ => None,
        }
    }
    /// Whether the function has a link (everything but RC-integrated endpoints).
    pub const fn has_link(self) -> bool {
        !matches!(self, PortType::RcIntegratedEndpoint)
    }
    /// Root ports and switch downstream ports: the ones that may have a slot.
    pub const fn is_downstream_facing(self) -> bool {
        matches!(self, PortType::RootPort | PortType::DownstreamPort)
    }
    /// Any port (type-1 header): root, switch upstream or switch downstream.
    pub const fn is_port(self) -> bool {
        matches!(self, PortType::RootPort | PortType::UpstreamPort | PortType::DownstreamPort)
    }
    /// Any endpoint kind.
    pub const fn is_endpoint(self) -> bool {
        matches!(self, PortType::Endpoint | PortType::LegacyEndpoint | PortType::RcIntegratedEndpoint)
    }
}

/// Link speed (Max Link Speed / Current Link Speed encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkSpeed {
    /// 2.5 GT/s (1).
    Gt2_5,
    /// 5 GT/s (2).
    Gt5,
    /// 8 GT/s (3).
    Gt8,
    /// 16 GT/s (4).
    Gt16,
    /// 32 GT/s (5).
    Gt32,
    /// 64 GT/s (6).
    Gt64,
}

impl LinkSpeed {
    /// The register encoding (1-6).
    pub const fn code(self) -> u8 {
        match self {
            LinkSpeed::Gt2_5 => 1,
            LinkSpeed::Gt5 => 2,
            LinkSpeed::Gt8 => 3,
            LinkSpeed::Gt16 => 4,
            LinkSpeed::Gt32 => 5,
            LinkSpeed::Gt64 => 6,
        }
    }
    /// The speed for an encoding.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(LinkSpeed::Gt2_5),
            2 => Some(LinkSpeed::Gt5),
            3 => Some(LinkSpeed::Gt8),
            4 => Some(LinkSpeed::Gt16),
            5 => Some(LinkSpeed::Gt32),
            6 => Some(LinkSpeed::Gt64),
            _ => None,
        }
    }
    /// Supported Link Speeds Vector of LnkCap2: every speed up to and including this one.
    pub const fn speeds_vector(self) -> u32 {
        // bit 1 = 2.5 GT/s ... bit code = self
        ((1u32 << (self.code() + 1)) - 1) & lnkcap2::SLSV
    }
}

/// Max_Payload_Size / Max_Read_Request_Size encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayloadSize {
    /// 128 bytes (0).
    B128,
    /// 256 bytes (1).
    B256,
    /// 512 bytes (2).
    B512,
    /// 1024 bytes (3).
    B1024,
    /// 2048 bytes (4).
    B2048,
    /// 4096 bytes (5).
    B4096,
}

impl PayloadSize {
    /// The 3-bit encoding.
    pub const fn code(self) -> u8 {
        match self {
            PayloadSize::B128 => 0,
            PayloadSize::B256 => 1,
            PayloadSize::B512 => 2,
            PayloadSize::B1024 => 3,
            PayloadSize::B2048 => 4,
            PayloadSize::B4096 => 5,
        }
    }
    /// Size in bytes.
    pub const fn bytes(self) -> u16 {
        128 << self.code()
    }
}

/// Link widths the Maximum Link Width field may take.
pub const LINK_WIDTHS: [u8; 7] = [1, 2, 4, 8, 12, 16, 32];

/// Errors of [`PcieCapConfig`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PcieCapError {
    /// Link width not one of [`LINK_WIDTHS`].
    #[error("link width x{0} is invalid (expected 1, 2, 4, 8, 12, 16 or 32)")]
    BadLinkWidth(u8),
    /// A slot requested on a function that is not a root or downstream port.
    #[error("a {0:?} cannot implement a slot (only root ports and switch downstream ports can)")]
    SlotNotAllowed(PortType),
    /// FLR requested on a port.
    #[error("a {0:?} cannot advertise Function Level Reset (endpoints only)")]
    FlrNotAllowed(PortType),
    /// ARI forwarding requested on a function that does not forward.
    #[error("a {0:?} cannot advertise ARI forwarding (root and downstream ports only)")]
    AriNotAllowed(PortType),
    /// Completion timeout ranges value above 4 bits.
    #[error("completion timeout ranges {0:#x} do not fit in 4 bits")]
    BadCompletionTimeoutRanges(u8),
    /// Link active reporting requested on a function that is not a root or downstream port.
    #[error("a {0:?} cannot report Data Link Layer Link Active (root and downstream ports only)")]
    LinkActiveReportingNotAllowed(PortType),
    /// The slot configuration is invalid.
    #[error(transparent)]
    Slot(#[from] SlotError),
}

/// What PCI Express capability to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcieCapConfig {
    /// Device/port type.
    pub port_type: PortType,
    /// Max_Payload_Size Supported (DevCap).
    pub max_payload: PayloadSize,
    /// Extended Tag Field Supported (DevCap) and its enable writable (DevCtl).
    pub ext_tag: bool,
    /// Function Level Reset capable (endpoints only).
    pub flr: bool,
    /// Max (and current) link speed.
    pub link_speed: LinkSpeed,
    /// Max (and negotiated) link width.
    pub link_width: u8,
    /// Port number (LnkCap (bits 31:24)).
    pub port_number: u8,
    /// Data Link Layer Link Active Reporting Capable (root/downstream ports). Defaults to "has a
    /// slot"; a slot-less port that enables it must keep LnkSta.DLLLA up to date itself
    /// ([`PcieCap::set_dll_link_active`]), since Linux then waits for the bit after a reset.
    pub link_active_reporting: bool,
    /// The slot (root/downstream ports only). Set it with [`PcieCapConfig::with_slot`], which
    /// also turns on [`PcieCapConfig::link_active_reporting`]: without it the slot has no
    /// DLLLA/DLLSC, and a Linux guest with an attention button (PDCE left off) only notices a
    /// hot-add through ABP ([`SlotConfig::press_button_on_insert`]).
    pub slot: Option<SlotConfig>,
    /// Completion Timeout Ranges Supported (DevCap2 (bits 3:0)); 0 = not supported.
    pub completion_timeout_ranges: u8,
    /// Completion Timeout Disable Supported.
    pub completion_timeout_disable: bool,
    /// ARI forwarding supported (root/downstream ports).
    pub ari_forwarding: bool,
    /// End-End TLP prefixes supported (DevCap2 EFF + EETLPP); AER logs TLP prefixes only then.
    pub tlp_prefix: bool,
}

impl PcieCapConfig {
    /// Defaults for `port_type`: MPS 128 B, 16 GT/s x16, ARI forwarding on root/downstream ports,
    /// TLP prefixes supported, no slot, no FLR, no completion timeout ranges.
    pub fn new(port_type: PortType) -> Self {
        PcieCapConfig {
            port_type,
            max_payload: PayloadSize::B128,
            ext_tag: false,
            flr: false,
            link_speed: LinkSpeed::Gt16,
            link_width: 16,
            port_number: 0,
            link_active_reporting: false,
            slot: None,
            completion_timeout_ranges: 0,
            completion_timeout_disable: false,
            ari_forwarding: port_type.is_downstream_facing(),
            tlp_prefix: true,
        }
    }

    /// Adds a slot (and turns on link active reporting, which a hot-plug slot needs).
    pub fn with_slot(mut self, slot: SlotConfig) -> Self {
        self.slot = Some(slot);
        self.link_active_reporting = true;
        self
    }

    /// Sets the link.
    pub fn with_link(mut self, speed: LinkSpeed, width: u8) -> Self {
        self.link_speed = speed;
        self.link_width = width;
        self
    }

    /// Checks the combination.
    pub fn validate(&self) -> Result<(), PcieCapError> {
        let t = self.port_type;
        if !LINK_WIDTHS.contains(&self.link_width) {
            return Err(PcieCapError::BadLinkWidth(self.link_width));
        }
        if let Some(slot) = &self.slot {
            if !t.is_downstream_facing() {
                return Err(PcieCapError::SlotNotAllowed(t));
            }
            slot.validate()?;
        }
        if self.flr && !t.is_endpoint() {
            return Err(PcieCapError::FlrNotAllowed(t));
        }
        if self.ari_forwarding && !t.is_downstream_facing() {
            return Err(PcieCapError::AriNotAllowed(t));
        }
        if self.link_active_reporting && !t.is_downstream_facing() {
            return Err(PcieCapError::LinkActiveReportingNotAllowed(t));
        }
        if self.completion_timeout_ranges > 0xF {
            return Err(PcieCapError::BadCompletionTimeoutRanges(self.completion_timeout_ranges));
        }
        Ok(())
    }

    fn flags(&self) -> u16 {
        let mut v = PCIE_CAP_VERSION | (u16::from(self.port_type.code()) << flags::TYPE_SHIFT);
        if self.slot.is_some() {
            v |= flags::SLOT;
        }
        v
    }

    fn devcap(&self) -> u32 {
        let mut v = u32::from(self.max_payload.code()) | devcap::RBER;
        if self.ext_tag {
            v |= devcap::EXT_TAG;
        }
        if self.flr {
            v |= devcap::FLR;
        }
        v
    }

    fn devctl_wmask(&self) -> u16 {
        let mut w = devctl::ERR_ENABLES | devctl::RELAX_EN | devctl::MPS | devctl::NOSNOOP_EN | devctl::MRRS;
        if self.ext_tag {
            w |= devctl::EXT_TAG;
        }
        if self.flr {
            w |= devctl::BCR_FLR;
        }
        w
    }

    fn lnkcap(&self) -> u32 {
        let mut v = u32::from(self.link_speed.code())
            | (u32::from(self.link_width) << lnkcap::MLW_SHIFT)
            | lnkcap::ASPM_COMPLIANCE
            | (u32::from(self.port_number) << lnkcap::PN_SHIFT);
        if self.link_active_reporting {
            v |= lnkcap::DLLLARC;
        }
        v
    }

    fn lnkctl_wmask(&self) -> u16 {
        let mut w = lnkctl::ASPMC | lnkctl::CCC | lnkctl::ES;
        if self.port_type.is_endpoint() {
            w |= lnkctl::RCB;
        }
        if self.port_type.is_downstream_facing() {
            w |= lnkctl::LD;
        }
        w
    }

    fn lnksta(&self) -> u16 {
        u16::from(self.link_speed.code()) | (u16::from(self.link_width) << lnksta::NLW_SHIFT) | lnksta::SLC
    }

    fn devcap2(&self) -> u32 {
        let mut v = u32::from(self.completion_timeout_ranges & 0xF);
        if self.completion_timeout_disable {
            v |= devcap2::COMP_TMOUT_DIS;
        }
        if self.ari_forwarding {
            v |= devcap2::ARI;
        }
        if self.tlp_prefix {
            v |= devcap2::EFF | devcap2::EETLPP;
        }
        v
    }

    fn devctl2_wmask(&self) -> u16 {
        let mut w = 0;
        if self.completion_timeout_ranges != 0 {
            w |= devctl2::COMP_TIMEOUT;
        }
        if self.completion_timeout_disable {
            w |= devctl2::COMP_TMOUT_DIS;
        }
        if self.ari_forwarding {
            w |= devctl2::ARI;
        }
        if self.tlp_prefix && self.port_type.is_port() {
            w |= devctl2::EETLPPB;
        }
        w
    }

    /// The register table (offsets relative to the capability).
    pub fn registers(&self) -> Result<Vec<RegSpec>, PcieCapError> {
        self.validate()?;
        let mut regs = vec![
            RegSpec::ro(off::FLAGS, 2, u32::from(self.flags())).hwinit(u32::from(flags::IMN)),
            RegSpec::ro(off::DEVCAP, 4, self.devcap()),
            RegSpec::ro(
                off::DEVCTL,
                2,
                u32::from(
                    devctl::RELAX_EN | devctl::NOSNOOP_EN | (u16::from(PayloadSize::B512.code()) << devctl::MRRS_SHIFT),
                ),
            )
            .rw(u32::from(self.devctl_wmask())),
            RegSpec::ro(off::DEVSTA, 2, 0).w1c(u32::from(devsta::ERRORS)),
            RegSpec::ro(off::DEVCAP2, 4, self.devcap2()),
            RegSpec::ro(off::DEVCTL2, 2, 0).rw(u32::from(self.devctl2_wmask())),
            RegSpec::ro(off::DEVSTA2, 2, 0),
        ];
        if self.port_type.has_link() {
            regs.extend([
                RegSpec::ro(off::LNKCAP, 4, self.lnkcap()),
                RegSpec::ro(off::LNKCTL, 2, 0).rw(u32::from(self.lnkctl_wmask())),
                RegSpec::ro(off::LNKSTA, 2, u32::from(self.lnksta())).hwinit(u32::from(lnksta::DLLLA)),
                RegSpec::ro(off::LNKCAP2, 4, self.link_speed.speeds_vector()),
                RegSpec::ro(off::LNKCTL2, 2, u32::from(self.link_speed.code())).rw(u32::from(lnkctl2::TLS)),
                RegSpec::ro(off::LNKSTA2, 2, 0),
            ]);
        }
        if let Some(slot) = &self.slot {
            regs.extend(slot.registers()?);
        }
        if self.port_type == PortType::RootPort {
            let rw = rtctl::SECEE | rtctl::SENFEE | rtctl::SEFEE | rtctl::PMEIE;
            regs.extend([
                RegSpec::ro(off::RTCTL, 2, 0).rw(u32::from(rw)),
                RegSpec::ro(off::RTCAP, 2, 0),
                RegSpec::ro(off::RTSTA, 4, 0).w1c(rtsta::PME),
            ]);
        }
        Ok(regs)
    }

    /// The capability block for a standard chain builder.
    pub fn cap_block(&self) -> Result<CapBlock, PcieCapError> {
        Ok(CapBlock::std(id::EXP, PCIE_CAP_LEN).regs(self.registers()?))
    }
}

/// Typed view of an installed PCI Express capability at a config offset. All methods take the
/// function's [`ConfigSpace`]; setters are model-side (they bypass the guest masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PcieCap {
    off: u16,
}

impl PcieCap {
    /// The capability installed at `off` (the offset the chain builder returned).
    pub const fn at(off: u16) -> Self {
        PcieCap { off }
    }

    /// Capability offset.
    pub const fn offset(self) -> u16 {
        self.off
    }

    /// Absolute offset of the register at `rel`.
    pub const fn reg(self, rel: u16) -> u16 {
        self.off.saturating_add(rel)
    }

    /// Whether a config access `[at, at+size)` overlaps the register `[rel, rel+width)`.
    pub fn touches(self, rel: u16, width: u16, at: u16, size: u8) -> bool {
        let (a, b) = (u32::from(at), u32::from(at) + u32::from(size));
        let r = u32::from(self.reg(rel));
        a < r + u32::from(width) && r < b
    }

    /// PCI Express Capabilities register.
    pub fn flags(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::FLAGS))
    }
    /// Device/port type (`None` for a code this model does not build).
    pub fn port_type(self, cfg: &ConfigSpace) -> Option<PortType> {
        PortType::from_code(((self.flags(cfg) & flags::TYPE) >> flags::TYPE_SHIFT) as u8)
    }
    /// Capability version.
    pub fn version(self, cfg: &ConfigSpace) -> u8 {
        (self.flags(cfg) & flags::VERSION) as u8
    }
    /// Slot Implemented.
    pub fn slot_implemented(self, cfg: &ConfigSpace) -> bool {
        self.flags(cfg) & flags::SLOT != 0
    }
    /// Interrupt Message Number (hot-plug, PME and bandwidth notification vector).
    pub fn interrupt_message_number(self, cfg: &ConfigSpace) -> u8 {
        ((self.flags(cfg) & flags::IMN) >> flags::IMN_SHIFT) as u8
    }
    /// Sets the Interrupt Message Number (low 5 bits of `n`).
    pub fn set_interrupt_message_number(self, cfg: &mut ConfigSpace, n: u8) {
        cfg.update_u16(self.reg(off::FLAGS), flags::IMN, (u16::from(n) << flags::IMN_SHIFT) & flags::IMN);
    }

    /// Device Capabilities.
    pub fn dev_cap(self, cfg: &ConfigSpace) -> u32 {
        cfg.get_u32(self.reg(off::DEVCAP))
    }
    /// Device Control.
    pub fn dev_ctl(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::DEVCTL))
    }
    /// Device Status.
    pub fn dev_sta(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::DEVSTA))
    }
    /// Sets Device Status bits (e.g. error detected bits).
    pub fn set_dev_sta_bits(self, cfg: &mut ConfigSpace, bits: u16) {
        cfg.update_u16(self.reg(off::DEVSTA), 0, bits);
    }
    /// Whether the guest wrote Initiate Function Level Reset (FLR-capable endpoints).
    pub fn flr_initiated(self, cfg: &ConfigSpace) -> bool {
        self.dev_cap(cfg) & devcap::FLR != 0 && self.dev_ctl(cfg) & devctl::BCR_FLR != 0
    }
    /// Clears Initiate Function Level Reset (call after performing the FLR; the bit reads 0).
    pub fn clear_flr(self, cfg: &mut ConfigSpace) {
        cfg.update_u16(self.reg(off::DEVCTL), devctl::BCR_FLR, 0);
    }

    /// Link Capabilities.
    pub fn link_cap(self, cfg: &ConfigSpace) -> u32 {
        cfg.get_u32(self.reg(off::LNKCAP))
    }
    /// Link Control.
    pub fn link_ctl(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::LNKCTL))
    }
    /// Link Status.
    pub fn link_sta(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::LNKSTA))
    }
    /// Whether the port reports Data Link Layer Link Active.
    pub fn link_active_reporting(self, cfg: &ConfigSpace) -> bool {
        self.link_cap(cfg) & lnkcap::DLLLARC != 0
    }
    /// LnkSta.DLLLA.
    pub fn dll_link_active(self, cfg: &ConfigSpace) -> bool {
        self.link_sta(cfg) & lnksta::DLLLA != 0
    }
    /// Sets LnkSta.DLLLA; returns whether it changed. Ignored (returns false) when the port does
    /// not advertise Data Link Layer Link Active Reporting (the bit is then reserved).
    pub fn set_dll_link_active(self, cfg: &mut ConfigSpace, active: bool) -> bool {
        if !self.link_active_reporting(cfg) || self.dll_link_active(cfg) == active {
            return false;
        }
        let (clear, set) = if active { (0, lnksta::DLLLA) } else { (lnksta::DLLLA, 0) };
        cfg.update_u16(self.reg(off::LNKSTA), clear, set);
        true
    }
    /// LnkCtl.LD (Link Disable) as written by the guest.
    pub fn link_disabled(self, cfg: &ConfigSpace) -> bool {
        self.link_ctl(cfg) & lnkctl::LD != 0
    }

    /// Slot Capabilities.
    pub fn slot_cap(self, cfg: &ConfigSpace) -> u32 {
        cfg.get_u32(self.reg(off::SLTCAP))
    }
    /// Slot Control.
    pub fn slot_ctl(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::SLTCTL))
    }
    /// Slot Status.
    pub fn slot_sta(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::SLTSTA))
    }
    /// Model-side read-modify-write of Slot Control.
    pub fn update_slot_ctl(self, cfg: &mut ConfigSpace, clear: u16, set: u16) {
        cfg.update_u16(self.reg(off::SLTCTL), clear, set);
    }
    /// Model-side read-modify-write of Slot Status.
    pub fn update_slot_sta(self, cfg: &mut ConfigSpace, clear: u16, set: u16) {
        cfg.update_u16(self.reg(off::SLTSTA), clear, set);
    }
    /// Sets Slot Status event bits (they stay until the guest clears them).
    pub fn set_slot_events(self, cfg: &mut ConfigSpace, events: u16) {
        self.update_slot_sta(cfg, 0, events & sltsta::EVENTS);
    }
    /// SltSta.PDS.
    pub fn presence(self, cfg: &ConfigSpace) -> bool {
        self.slot_sta(cfg) & sltsta::PDS != 0
    }
    /// Sets SltSta.PDS (no event; see [`crate::pcie::slot::Slot`] for the hot-plug sequence).
    pub fn set_presence(self, cfg: &mut ConfigSpace, present: bool) {
        self.set_sta_bit(cfg, sltsta::PDS, present);
    }
    /// SltSta.MRLSS (true = latch open).
    pub fn mrl_open(self, cfg: &ConfigSpace) -> bool {
        self.slot_sta(cfg) & sltsta::MRLSS != 0
    }
    /// Sets SltSta.MRLSS (no event).
    pub fn set_mrl_open(self, cfg: &mut ConfigSpace, open: bool) {
        self.set_sta_bit(cfg, sltsta::MRLSS, open);
    }
    /// SltSta.EIS (true = interlock engaged).
    pub fn emi_engaged(self, cfg: &ConfigSpace) -> bool {
        self.slot_sta(cfg) & sltsta::EIS != 0
    }
    /// Sets SltSta.EIS.
    pub fn set_emi_engaged(self, cfg: &mut ConfigSpace, engaged: bool) {
        self.set_sta_bit(cfg, sltsta::EIS, engaged);
    }
    fn set_sta_bit(self, cfg: &mut ConfigSpace, bit: u16, on: bool) {
        let (clear, set) = if on { (0, bit) } else { (bit, 0) };
        self.update_slot_sta(cfg, clear, set);
    }

    /// Root Control.
    pub fn root_ctl(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::RTCTL))
    }
    /// Root Status.
    pub fn root_sta(self, cfg: &ConfigSpace) -> u32 {
        cfg.get_u32(self.reg(off::RTSTA))
    }
    /// A PME message from `requester` reached this root port. Latches the requester ID and PME
    /// Status if PME Status was clear (returns whether that raised the interrupt condition:
    /// PMEIE set); if PME Status was already set, only PME Pending is set (the requester of a
    /// pending PME is not kept: one level of pending, no queue).
    pub fn signal_pme(self, cfg: &mut ConfigSpace, requester: u16) -> bool {
        let sta = self.root_sta(cfg);
        if sta & rtsta::PME != 0 {
            cfg.update_u32(self.reg(off::RTSTA), 0, rtsta::PENDING);
            return false;
        }
        cfg.update_u32(self.reg(off::RTSTA), rtsta::PME_RID | rtsta::PENDING, rtsta::PME | u32::from(requester));
        self.root_ctl(cfg) & rtctl::PMEIE != 0
    }
    /// Level of the PME interrupt condition (PME Status && PMEIE), for INTx.
    pub fn pme_irq_level(self, cfg: &ConfigSpace) -> bool {
        self.root_sta(cfg) & rtsta::PME != 0 && self.root_ctl(cfg) & rtctl::PMEIE != 0
    }

    /// Device Capabilities 2.
    pub fn dev_cap2(self, cfg: &ConfigSpace) -> u32 {
        cfg.get_u32(self.reg(off::DEVCAP2))
    }
    /// Device Control 2.
    pub fn dev_ctl2(self, cfg: &ConfigSpace) -> u16 {
        cfg.get_u16(self.reg(off::DEVCTL2))
    }
    /// Whether the guest enabled ARI forwarding.
    pub fn ari_forwarding_enabled(self, cfg: &ConfigSpace) -> bool {
        self.dev_ctl2(cfg) & devctl2::ARI != 0
    }
    /// Whether End-End TLP prefixes are supported (AER then logs them).
    pub fn tlp_prefix_supported(self, cfg: &ConfigSpace) -> bool {
        self.dev_cap2(cfg) & devcap2::EETLPP != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::caps::{walk_standard, CapChainBuilder};
    use crate::pci::config::{ConfigKind, RegMasks, ResetKind};

    const OFF: u16 = 0x40;

    fn build(config: &PcieCapConfig) -> (ConfigSpace, PcieCap) {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        let mut b = CapChainBuilder::standard();
        let off = b.add_at(OFF, config.cap_block().expect("block")).expect("add");
        b.install(&mut c).expect("install");
        (c, PcieCap::at(off))
    }

    fn wr(c: &mut ConfigSpace, rel: u16, size: u8, val: u32) {
        assert!(!c.write(OFF + rel, size, val).is_ignored());
    }

    fn rp_with_slot() -> PcieCapConfig {
        PcieCapConfig::new(PortType::RootPort).with_slot(SlotConfig::default())
    }

    #[test]
    fn every_port_type_builds_a_version_2_capability() {
        for t in [
            PortType::Endpoint,
            PortType::LegacyEndpoint,
            PortType::RootPort,
            PortType::UpstreamPort,
            PortType::DownstreamPort,
            PortType::RcIntegratedEndpoint,
        ] {
            let (c, cap) = build(&PcieCapConfig::new(t));
            assert_eq!(c.get_u8(OFF), id::EXP);
            assert_eq!(cap.version(&c), 2, "{t:?}");
            assert_eq!(cap.port_type(&c), Some(t));
            assert!(!cap.slot_implemented(&c));
            assert_eq!(cap.interrupt_message_number(&c), 0);
            let walk = walk_standard(c.bytes());
            assert_eq!(walk.find(u16::from(id::EXP)), Some(OFF));
        }
    }

    #[test]
    fn port_type_codes_roundtrip() {
        for code in 0..16u8 {
            if let Some(t) = PortType::from_code(code) {
                assert_eq!(t.code(), code);
            }
        }
        assert_eq!(PortType::from_code(7), None);
        assert_eq!(PortType::RootPort.code(), 4);
        assert_eq!(PortType::RcIntegratedEndpoint.code(), 9);
    }

    #[test]
    fn flags_register_is_read_only_and_imn_survives_reset() {
        let (mut c, cap) = build(&rp_with_slot());
        let before = cap.flags(&c);
        assert_eq!(before, 0x0142, "v2, type 4, slot");
        wr(&mut c, off::FLAGS, 2, 0xffff);
        assert_eq!(cap.flags(&c), before);
        cap.set_interrupt_message_number(&mut c, 3);
        assert_eq!(cap.interrupt_message_number(&c), 3);
        c.reset(ResetKind::Cold);
        assert_eq!(cap.interrupt_message_number(&c), 3, "IMN is HwInit");
        cap.set_interrupt_message_number(&mut c, 0xff);
        assert_eq!(cap.interrupt_message_number(&c), 0x1f);
    }

    #[test]
    fn devcap_advertises_mps_rber_and_optional_flr() {
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.max_payload = PayloadSize::B512;
        cfg.flr = true;
        cfg.ext_tag = true;
        let (c, cap) = build(&cfg);
        let v = cap.dev_cap(&c);
        assert_eq!(v & devcap::MPS, 2);
        assert_ne!(v & devcap::RBER, 0);
        assert_ne!(v & devcap::FLR, 0);
        assert_ne!(v & devcap::EXT_TAG, 0);
        let (c, cap) = build(&PcieCapConfig::new(PortType::RootPort));
        assert_eq!(cap.dev_cap(&c), devcap::RBER, "128 B, no FLR, no ext tag");
    }

    #[test]
    fn devctl_masks_and_spec_defaults() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::Endpoint));
        assert_eq!(cap.dev_ctl(&c), devctl::RELAX_EN | devctl::NOSNOOP_EN | 0x2000, "RO, NS, MRRS 512");
        wr(&mut c, off::DEVCTL, 2, 0xffff);
        assert_eq!(cap.dev_ctl(&c), 0x7fff & !(devctl::EXT_TAG | devctl::PHANTOM | devctl::AUX_PME));
        wr(&mut c, off::DEVCTL, 2, 0);
        assert_eq!(cap.dev_ctl(&c), 0);
        c.reset(ResetKind::Hot);
        assert_eq!(cap.dev_ctl(&c), devctl::RELAX_EN | devctl::NOSNOOP_EN | 0x2000, "not sticky");
    }

    #[test]
    fn devctl_flr_bit_writable_only_with_flr_capability() {
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.flr = true;
        let (mut c, cap) = build(&cfg);
        wr(&mut c, off::DEVCTL, 2, u32::from(devctl::BCR_FLR));
        assert!(cap.flr_initiated(&c));
        cap.clear_flr(&mut c);
        assert!(!cap.flr_initiated(&c));
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::Endpoint));
        wr(&mut c, off::DEVCTL, 2, u32::from(devctl::BCR_FLR));
        assert!(!cap.flr_initiated(&c));
        assert_eq!(cap.dev_ctl(&c) & devctl::BCR_FLR, 0);
    }

    #[test]
    fn devsta_error_bits_are_w1c_and_others_read_only() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::Endpoint));
        cap.set_dev_sta_bits(&mut c, devsta::ERRORS);
        wr(&mut c, off::DEVSTA, 2, u32::from(devsta::CED | devsta::URD));
        assert_eq!(cap.dev_sta(&c), devsta::NFED | devsta::FED);
        wr(&mut c, off::DEVSTA, 2, 0xffff);
        assert_eq!(cap.dev_sta(&c), 0, "guest never sets AUXPD/TRPND");
        assert_eq!(c.reg_masks(OFF + off::DEVSTA, 2), RegMasks::w1c(0xf));
    }

    #[test]
    fn lnkcap_encodes_speed_width_port_and_dlllarc_for_slots() {
        let mut cfg = rp_with_slot().with_link(LinkSpeed::Gt8, 4);
        cfg.port_number = 7;
        let (c, cap) = build(&cfg);
        let v = cap.link_cap(&c);
        assert_eq!(v & lnkcap::SLS, 3);
        assert_eq!((v & lnkcap::MLW) >> lnkcap::MLW_SHIFT, 4);
        assert_eq!(v >> lnkcap::PN_SHIFT, 7);
        assert_ne!(v & lnkcap::DLLLARC, 0);
        assert_eq!(v & (lnkcap::ASPMS | lnkcap::LBNC | lnkcap::SDERC), 0);
        let (c, cap) = build(&PcieCapConfig::new(PortType::DownstreamPort));
        assert_eq!(cap.link_cap(&c) & lnkcap::DLLLARC, 0, "slot-less port: not by default");
    }

    #[test]
    fn lnksta_reports_the_configured_link_and_dllla_is_model_set() {
        let (mut c, cap) = build(&rp_with_slot().with_link(LinkSpeed::Gt5, 8));
        let v = cap.link_sta(&c);
        assert_eq!(v & lnksta::CLS, 2);
        assert_eq!((v & lnksta::NLW) >> lnksta::NLW_SHIFT, 8);
        assert_eq!(v & lnksta::LT, 0);
        assert!(!cap.dll_link_active(&c));
        assert!(cap.set_dll_link_active(&mut c, true));
        assert!(!cap.set_dll_link_active(&mut c, true), "no change");
        assert!(cap.dll_link_active(&c));
        wr(&mut c, off::LNKSTA, 2, 0xffff);
        assert_eq!(cap.link_sta(&c), v | lnksta::DLLLA, "LnkSta is RO to the guest");
        c.reset(ResetKind::Cold);
        assert!(cap.dll_link_active(&c), "DLLLA is HwInit: kept across resets");
    }

    #[test]
    fn dllla_cannot_be_set_without_reporting_capability() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::Endpoint));
        assert!(!cap.set_dll_link_active(&mut c, true));
        assert!(!cap.dll_link_active(&c));
    }

    #[test]
    fn lnkctl_masks_per_port_type() {
        let cases = [
            (PortType::RootPort, lnkctl::ASPMC | lnkctl::CCC | lnkctl::ES | lnkctl::LD),
            (PortType::DownstreamPort, lnkctl::ASPMC | lnkctl::CCC | lnkctl::ES | lnkctl::LD),
            (PortType::UpstreamPort, lnkctl::ASPMC | lnkctl::CCC | lnkctl::ES),
            (PortType::Endpoint, lnkctl::ASPMC | lnkctl::RCB | lnkctl::CCC | lnkctl::ES),
            (PortType::LegacyEndpoint, lnkctl::ASPMC | lnkctl::RCB | lnkctl::CCC | lnkctl::ES),
        ];
        for (t, mask) in cases {
            let (mut c, cap) = build(&PcieCapConfig::new(t));
            wr(&mut c, off::LNKCTL, 2, 0xffff);
            assert_eq!(cap.link_ctl(&c), mask, "{t:?}");
        }
    }

    #[test]
    fn retrain_link_reads_zero() {
        let (mut c, cap) = build(&rp_with_slot());
        wr(&mut c, off::LNKCTL, 2, u32::from(lnkctl::RL));
        assert_eq!(cap.link_ctl(&c) & lnkctl::RL, 0);
    }

    #[test]
    fn link_disable_is_tracked() {
        let (mut c, cap) = build(&rp_with_slot());
        wr(&mut c, off::LNKCTL, 2, u32::from(lnkctl::LD));
        assert!(cap.link_disabled(&c));
        c.reset(ResetKind::Hot);
        assert!(!cap.link_disabled(&c));
    }

    #[test]
    fn rc_integrated_endpoint_has_no_link_registers() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::RcIntegratedEndpoint));
        for (rel, size) in
            [(off::LNKCAP, 4u8), (off::LNKCTL, 2), (off::LNKSTA, 2), (off::LNKCAP2, 4), (off::LNKCTL2, 2)]
        {
            wr(&mut c, rel, size, 0xffff_ffff);
            assert_eq!(c.get_u32(OFF + rel) & crate::pci::config::ones32(size), 0, "{rel:#x}");
        }
        assert_eq!(cap.link_sta(&c), 0);
    }

    #[test]
    fn lnkcap2_vector_and_lnkctl2_target_speed() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::Endpoint).with_link(LinkSpeed::Gt8, 1));
        assert_eq!(c.get_u32(cap.reg(off::LNKCAP2)), 0b1110);
        assert_eq!(c.get_u16(cap.reg(off::LNKCTL2)), 3);
        wr(&mut c, off::LNKCTL2, 2, 0xffff);
        assert_eq!(c.get_u16(cap.reg(off::LNKCTL2)), 0xf);
        wr(&mut c, off::LNKSTA2, 2, 0xffff);
        assert_eq!(c.get_u16(cap.reg(off::LNKSTA2)), 0);
        assert_eq!(LinkSpeed::Gt2_5.speeds_vector(), 0b10);
        assert_eq!(LinkSpeed::Gt64.speeds_vector(), 0b111_1110);
    }

    #[test]
    fn link_speed_codes_roundtrip() {
        for code in 1..=6u8 {
            assert_eq!(LinkSpeed::from_code(code).map(LinkSpeed::code), Some(code));
        }
        assert_eq!(LinkSpeed::from_code(0), None);
        assert_eq!(PayloadSize::B4096.bytes(), 4096);
    }

    #[test]
    fn slot_registers_only_with_a_slot() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::RootPort));
        wr(&mut c, off::SLTCTL, 4, 0xffff_ffff);
        assert_eq!(cap.slot_cap(&c), 0);
        assert_eq!(cap.slot_ctl(&c), 0);
        assert_eq!(cap.slot_sta(&c), 0);
        let (c, cap) = build(&rp_with_slot());
        assert_ne!(cap.slot_cap(&c) & sltcap::HPC, 0);
        assert!(cap.slot_implemented(&c));
    }

    #[test]
    fn presence_mrl_and_emi_setters() {
        let (mut c, cap) = build(&rp_with_slot());
        cap.set_presence(&mut c, true);
        assert!(cap.presence(&c));
        cap.set_mrl_open(&mut c, true);
        assert!(cap.mrl_open(&c));
        cap.set_emi_engaged(&mut c, true);
        assert!(cap.emi_engaged(&c));
        cap.set_presence(&mut c, false);
        cap.set_mrl_open(&mut c, false);
        cap.set_emi_engaged(&mut c, false);
        assert_eq!(cap.slot_sta(&c), 0);
        cap.set_slot_events(&mut c, 0xffff);
        assert_eq!(cap.slot_sta(&c), sltsta::EVENTS);
    }

    #[test]
    fn root_registers_only_on_root_ports() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::RootPort));
        wr(&mut c, off::RTCTL, 2, 0xffff);
        assert_eq!(cap.root_ctl(&c), rtctl::SECEE | rtctl::SENFEE | rtctl::SEFEE | rtctl::PMEIE);
        wr(&mut c, off::RTCAP, 2, 0xffff);
        assert_eq!(c.get_u16(cap.reg(off::RTCAP)), 0, "no CRS software visibility");
        c.reset(ResetKind::Hot);
        assert_eq!(cap.root_ctl(&c), 0);
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::DownstreamPort));
        wr(&mut c, off::RTCTL, 2, 0xffff);
        assert_eq!(cap.root_ctl(&c), 0);
    }

    #[test]
    fn pme_status_latches_requester_and_is_w1c() {
        let (mut c, cap) = build(&PcieCapConfig::new(PortType::RootPort));
        assert!(!cap.signal_pme(&mut c, 0x0100), "PMEIE off: no interrupt");
        assert_eq!(cap.root_sta(&c), rtsta::PME | 0x0100);
        assert!(!cap.signal_pme(&mut c, 0x0200));
        assert_eq!(cap.root_sta(&c), rtsta::PME | rtsta::PENDING | 0x0100, "second PME only pends");
        wr(&mut c, off::RTSTA, 4, 0xffff_ffff);
        assert_eq!(cap.root_sta(&c), rtsta::PENDING | 0x0100, "only PME Status is W1C");
        wr(&mut c, off::RTCTL, 2, u32::from(rtctl::PMEIE));
        assert!(cap.signal_pme(&mut c, 0x0300));
        assert_eq!(cap.root_sta(&c), rtsta::PME | 0x0300);
        assert!(cap.pme_irq_level(&c));
    }

    #[test]
    fn devcap2_and_devctl2_for_downstream_ports() {
        let mut cfg = PcieCapConfig::new(PortType::DownstreamPort);
        cfg.completion_timeout_ranges = 0xf;
        cfg.completion_timeout_disable = true;
        let (mut c, cap) = build(&cfg);
        let v = cap.dev_cap2(&c);
        assert_eq!(v & 0x3f, 0x3f, "ranges, disable, ARI forwarding");
        assert_ne!(v & devcap2::EETLPP, 0);
        assert_ne!(v & devcap2::EFF, 0);
        wr(&mut c, off::DEVCTL2, 2, 0xffff);
        assert_eq!(cap.dev_ctl2(&c), 0x3f | devctl2::EETLPPB);
        assert!(cap.ari_forwarding_enabled(&c));
        c.reset(ResetKind::Flr);
        assert!(!cap.ari_forwarding_enabled(&c));
    }

    #[test]
    fn devctl2_is_read_only_without_features() {
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.tlp_prefix = false;
        let (mut c, cap) = build(&cfg);
        wr(&mut c, off::DEVCTL2, 2, 0xffff);
        assert_eq!(cap.dev_ctl2(&c), 0);
        assert_eq!(cap.dev_cap2(&c), 0);
        assert!(!cap.tlp_prefix_supported(&c));
    }

    #[test]
    fn config_validation_names_bad_values() {
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.link_width = 3;
        assert_eq!(cfg.validate(), Err(PcieCapError::BadLinkWidth(3)));
        assert!(PcieCapError::BadLinkWidth(3).to_string().contains("x3"));
        let cfg = PcieCapConfig::new(PortType::UpstreamPort).with_slot(SlotConfig::default());
        assert!(matches!(cfg.cap_block(), Err(PcieCapError::SlotNotAllowed(PortType::UpstreamPort))));
        let mut cfg = PcieCapConfig::new(PortType::RootPort);
        cfg.flr = true;
        assert_eq!(cfg.validate(), Err(PcieCapError::FlrNotAllowed(PortType::RootPort)));
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.ari_forwarding = true;
        assert_eq!(cfg.validate(), Err(PcieCapError::AriNotAllowed(PortType::Endpoint)));
        let mut cfg = PcieCapConfig::new(PortType::Endpoint);
        cfg.completion_timeout_ranges = 0x10;
        assert_eq!(cfg.validate(), Err(PcieCapError::BadCompletionTimeoutRanges(0x10)));
        let mut cfg = PcieCapConfig::new(PortType::UpstreamPort);
        cfg.link_active_reporting = true;
        assert_eq!(cfg.validate(), Err(PcieCapError::LinkActiveReportingNotAllowed(PortType::UpstreamPort)));
        let bad_slot = SlotConfig { physical_slot: 0x2000, ..SlotConfig::default() };
        let cfg = PcieCapConfig::new(PortType::RootPort).with_slot(bad_slot);
        assert!(matches!(cfg.validate(), Err(PcieCapError::Slot(_))));
    }

    #[test]
    fn touches_detects_overlap_with_a_register() {
        let cap = PcieCap::at(OFF);
        assert!(cap.touches(off::SLTCTL, 2, OFF + 0x18, 2));
        assert!(cap.touches(off::SLTCTL, 2, OFF + 0x16, 4));
        assert!(cap.touches(off::SLTSTA, 2, OFF + 0x18, 4));
        assert!(!cap.touches(off::SLTCTL, 2, OFF + 0x1a, 2));
        assert!(!cap.touches(off::SLTCTL, 2, OFF + 0x14, 4));
        assert!(!PcieCap::at(u16::MAX).touches(0x3a, 2, 0, 4), "no overflow");
    }

    #[test]
    fn random_guest_writes_never_break_read_only_fields() {
        let (mut c, cap) = build(&rp_with_slot());
        let flags = cap.flags(&c);
        let lnkcap = cap.link_cap(&c);
        let sltcap = cap.slot_cap(&c);
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let rel = (x % 0x3c) as u16;
            let size = [1u8, 2, 4][((x >> 20) % 3) as usize];
            let _ = c.write(OFF + rel, size, (x >> 32) as u32);
        }
        assert_eq!(cap.flags(&c), flags);
        assert_eq!(cap.link_cap(&c), lnkcap);
        assert_eq!(cap.slot_cap(&c), sltcap);
        assert!(!cap.presence(&c), "guest cannot fake presence");
        assert!(!cap.dll_link_active(&c), "guest cannot fake the link");
    }
}
