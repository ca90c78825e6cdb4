//! Advanced Error Reporting: the extended capability (ID 0x0001, version 2, 0x48 bytes, normally
//! at 0x100), error injection into a function, forwarding at each port hop and reception at the
//! root port.
//!
//! Reference: /work/shared/reference/pcie-spec.md §6 (layout, QEMU masks, propagation, FEP and
//! multiple header recording, injection, the Linux consumer) and §7 (interrupts).
//!
//! # Register attributes
//! | reg | attribute |
//! |---|---|
//! | +04 Uncorrectable Status | RW1CS over [`uncor::SUPPORTED`] |
//! | +08 Uncorrectable Mask | RWS over the supported bits; default [`uncor::MASK_DEFAULT`] (Uncorrectable Internal Error, as the spec says) |
//! | +0C Uncorrectable Severity | RWS; default [`uncor::SEVERITY_DEFAULT`] |
//! | +10 Correctable Status | RW1CS over [`cor::SUPPORTED`] |
//! | +14 Correctable Mask | RWS; default ADV_NFAT \| INTERNAL \| HL_OVERFLOW (QEMU) |
//! | +18 Capabilities and Control | FEP ROS; ECRC Gen/Check Capable RO (+ Enable RWS) if configured; MHRC RO (+ MHRE RWS) if the log holds errors; TLP Prefix Log Present ROS |
//! | +1C Header Log (4 DW) | ROS |
//! | +2C Root Error Command | RW (root ports; RO 0 elsewhere) |
//! | +30 Root Error Status | RW1CS bits 6:0, IMN (bits 31:27) RO (HwInit, 0) (root ports) |
//! | +34 Error Source ID | ROS (root ports) |
//! | +38 TLP Prefix Log (4 DW) | ROS |
//!
//! Every status/log register is sticky, so a Secondary Bus Reset, FLR, hot or warm reset keeps the
//! recorded errors (and [`Aer::reset`] keeps the multiple-header queue), while DevCtl, DevSta,
//! Command and Root Error Command go back to their reset values; only a cold reset clears the log.
//!
//! # Integration contract
//! - Build: add [`AerConfig::cap_block`] to the extended chain at 0x100 and create one [`Aer`]
//!   per function with [`Aer::new`]. A port's type-1 header must have Bridge Control SERR Enable
//!   ([`bridge::CTL_SERR`]) writable and Secondary Status Received System Error
//!   ([`bridge::SEC_STATUS_RCV_SERR`]) RW1C.
//! - After **every** guest config write to the function: [`Aer::on_config_write`] (FEP pop,
//!   multiple-header re-arm, and for a root port the Root Error Command/Status interrupt
//!   re-evaluation); apply its [`RootOutcome`].
//! - After a reset of the function's config space: [`Aer::reset`].
//! - Injection (`pcie_aer_inject_error`): resolve the target; if it has no [`Aer`], report
//!   [`AerInjectError::NoAer`]. Otherwise call [`Aer::inject_all`] with the function's requester
//!   ID. Then walk each returned [`AerMessage`] upwards: for each port above the function,
//!   nearest first, call [`hop_forward`] on that port's config space; stop at the first `false`.
//!   At the root port, once `hop_forward` passed, call the root port's [`Aer::root_receive`]
//!   and stop. If the injected function *is* a root port, its own messages go straight to its
//!   [`Aer::root_receive`] (they are not "received on the secondary side"). A hop that is not a
//!   PCI Express port ends the walk.
//! - [`RootOutcome::irq`]: send the root port's MSI/MSI-X vector (Root Error Status IMN, 0);
//!   [`RootOutcome::irq_level`]: the AER source's INTx level (wire-OR with the slot and PME
//!   sources of the same port).
//!
//! # Decisions
//! - Message generation at the detecting function and at each hop follows the spec's Figure 6-3:
//!   ERR_COR needs DevCtl.CERE; ERR_NONFATAL/ERR_FATAL need Command.SERR **or** DevCtl.NFERE /
//!   FERE; Status.Signaled System Error is set when an uncorrectable message is sent with
//!   Command.SERR set. QEMU additionally demands the DevCtl enable even when SERR is set; Linux
//!   sets both, so the difference never shows with Linux guests. Unsupported Requests also need
//!   DevCtl.URRE (or, for the uncorrectable case, Command.SERR), as in QEMU.
//! - A port receiving ERR_NONFATAL/ERR_FATAL from below sets Secondary Status Received System
//!   Error, and forwards any message only with Bridge Control SERR Enable (QEMU).
//! - Advisory non-fatal (`-a`, a non-fatal uncorrectable error): recorded as ADV_NONFATAL
//!   correctable; the uncorrectable status bit is set and the header logged (if that error is
//!   unmasked) even when ADV_NONFATAL is masked; only the ERR_COR is gated by the mask (spec
//!   6.2.3.2.4; QEMU stops at the mask).
//! - Header log without multiple header recording: while the error the First Error Pointer names
//!   is still set, a later error is not logged (the log keeps the first error, as the spec's
//!   FEP semantics require; QEMU overwrites). With MHRE, later errors queue (at most
//!   [`AerConfig::log_max`] ≤ [`AER_LOG_MAX`]); a full queue drops the error and injects a
//!   correctable HL_OVERFLOW after the error's own message.
//! - Header Log and TLP Prefix Log DWs read back exactly as given (DW *n* = header word *n*,
//!   the spec's layout; QEMU stores them byte-swapped). Prefixes are logged only when DevCap2
//!   advertises End-End TLP Prefixes.
//! - System Error via Root Control (SECEE/SENFEE/SEFEE) is not delivered (no platform mechanism
//!   is modelled, as in QEMU); it is logged (rate-limited) and flagged in
//!   [`RootOutcome::system_error`].
//! - Root interrupt (spec 6.2.4.1.2, QEMU): the condition is `RootErrCmd & classes received`,
//!   classes being COR_RCV → COR_EN, NONFATAL_RCV → NONFATAL_EN, FATAL_RCV → FATAL_EN; an MSI
//!   goes out on its false→true transition only, whether caused by a message or by a later
//!   Root Error Command write.

use std::collections::VecDeque;

use thiserror::Error;

use crate::pci::caps::{ext_id, id, walk_extended, walk_standard, CapBlock};
use crate::pci::config::{cmd, reg, status, ConfigSpace, RegSpec, ResetKind};
use crate::pcie::cap::{devctl, devsta, rtctl, PcieCap, PortType};

/// Length of the AER capability.
pub const AER_CAP_LEN: u16 = 0x48;
/// Version built.
pub const AER_VERSION: u8 = 2;
/// Upper bound of the multiple-header-recording queue.
pub const AER_LOG_MAX: u8 = 32;
/// Most errors one [`Aer::inject_all`] call accepts.
pub const MAX_ERRORS_PER_INJECTION: usize = 32;

/// Register offsets relative to the capability.
pub mod off {
    /// Uncorrectable Error Status (32).
    pub const UNCOR_STATUS: u16 = 0x04;
    /// Uncorrectable Error Mask (32).
    pub const UNCOR_MASK: u16 = 0x08;
    /// Uncorrectable Error Severity (32).
    pub const UNCOR_SEVER: u16 = 0x0C;
    /// Correctable Error Status (32).
    pub const COR_STATUS: u16 = 0x10;
    /// Correctable Error Mask (32).
    pub const COR_MASK: u16 = 0x14;
    /// Advanced Error Capabilities and Control (32).
    pub const CAP: u16 = 0x18;
    /// Header Log, 4 DWs.
    pub const HEADER_LOG: u16 = 0x1C;
    /// Root Error Command (32).
    pub const ROOT_COMMAND: u16 = 0x2C;
    /// Root Error Status (32).
    pub const ROOT_STATUS: u16 = 0x30;
    /// Error Source Identification (32).
    pub const ERR_SRC: u16 = 0x34;
    /// TLP Prefix Log, 4 DWs.
    pub const TLP_PREFIX_LOG: u16 = 0x38;
}

/// Uncorrectable error bits.
pub mod uncor {
    /// Data Link Protocol Error.
    pub const DLP: u32 = 1 << 4;
    /// Surprise Down Error.
    pub const SDN: u32 = 1 << 5;
    /// Poisoned TLP.
    pub const POISON_TLP: u32 = 1 << 12;
    /// Flow Control Protocol Error.
    pub const FCP: u32 = 1 << 13;
    /// Completion Timeout.
    pub const COMP_TIME: u32 = 1 << 14;
    /// Completer Abort.
    pub const COMP_ABORT: u32 = 1 << 15;
    /// Unexpected Completion.
    pub const UNX_COMP: u32 = 1 << 16;
    /// Receiver Overflow.
    pub const RX_OVER: u32 = 1 << 17;
    /// Malformed TLP.
    pub const MALF_TLP: u32 = 1 << 18;
    /// ECRC Error.
    pub const ECRC: u32 = 1 << 19;
    /// Unsupported Request.
    pub const UNSUP: u32 = 1 << 20;
    /// ACS Violation.
    pub const ACSV: u32 = 1 << 21;
    /// Uncorrectable Internal Error.
    pub const INTN: u32 = 1 << 22;
    /// MC Blocked TLP.
    pub const MCBTLP: u32 = 1 << 23;
    /// AtomicOp Egress Blocked.
    pub const ATOP_EBLOCKED: u32 = 1 << 24;
    /// TLP Prefix Blocked.
    pub const TLP_PRF_BLOCKED: u32 = 1 << 25;
    /// Every bit this model supports (QEMU `PCI_ERR_UNC_SUPPORTED`).
    pub const SUPPORTED: u32 = 0x03FF_F030;
    /// Default severity (1 = fatal): DLP, SDN, FCP, RX_OVER, MALF_TLP, INTN.
    pub const SEVERITY_DEFAULT: u32 = 0x0046_2030;
    /// Default mask: Uncorrectable Internal Error (spec default 1b).
    pub const MASK_DEFAULT: u32 = INTN;
}

/// Correctable error bits.
pub mod cor {
    /// Receiver Error.
    pub const RCVR: u32 = 1 << 0;
    /// Bad TLP.
    pub const BAD_TLP: u32 = 1 << 6;
    /// Bad DLLP.
    pub const BAD_DLLP: u32 = 1 << 7;
    /// REPLAY_NUM Rollover.
    pub const REP_ROLL: u32 = 1 << 8;
    /// Replay Timer Timeout.
    pub const REP_TIMER: u32 = 1 << 12;
    /// Advisory Non-Fatal Error.
    pub const ADV_NONFATAL: u32 = 1 << 13;
    /// Corrected Internal Error.
    pub const INTERNAL: u32 = 1 << 14;
    /// Header Log Overflow.
    pub const HL_OVERFLOW: u32 = 1 << 15;
    /// Every bit this model supports (QEMU `PCI_ERR_COR_SUPPORTED`).
    pub const SUPPORTED: u32 = 0xF1C1;
    /// Default mask (QEMU): ADV_NONFATAL | INTERNAL | HL_OVERFLOW.
    pub const MASK_DEFAULT: u32 = ADV_NONFATAL | INTERNAL | HL_OVERFLOW;
}

/// Advanced Error Capabilities and Control bits.
pub mod errcap {
    /// First Error Pointer (bits 4:0).
    pub const FEP: u32 = 0x1F;
    /// ECRC Generation Capable.
    pub const ECRC_GENC: u32 = 1 << 5;
    /// ECRC Generation Enable.
    pub const ECRC_GENE: u32 = 1 << 6;
    /// ECRC Check Capable.
    pub const ECRC_CHKC: u32 = 1 << 7;
    /// ECRC Check Enable.
    pub const ECRC_CHKE: u32 = 1 << 8;
    /// Multiple Header Recording Capable.
    pub const MHRC: u32 = 1 << 9;
    /// Multiple Header Recording Enable.
    pub const MHRE: u32 = 1 << 10;
    /// TLP Prefix Log Present.
    pub const TLP: u32 = 1 << 11;
}

/// Root Error Command bits (also the message severity codes).
pub mod root_cmd {
    /// Correctable Error Reporting Enable.
    pub const COR_EN: u32 = 1 << 0;
    /// Non-Fatal Error Reporting Enable.
    pub const NONFATAL_EN: u32 = 1 << 1;
    /// Fatal Error Reporting Enable.
    pub const FATAL_EN: u32 = 1 << 2;
    /// All three.
    pub const MASK: u32 = 0x7;
}

/// Root Error Status bits.
pub mod root_sta {
    /// ERR_COR Received.
    pub const COR_RCV: u32 = 1 << 0;
    /// Multiple ERR_COR Received.
    pub const MULTI_COR_RCV: u32 = 1 << 1;
    /// ERR_FATAL/NONFATAL Received.
    pub const UNCOR_RCV: u32 = 1 << 2;
    /// Multiple ERR_FATAL/NONFATAL Received.
    pub const MULTI_UNCOR_RCV: u32 = 1 << 3;
    /// First Uncorrectable Fatal.
    pub const FIRST_FATAL: u32 = 1 << 4;
    /// Non-Fatal Error Messages Received.
    pub const NONFATAL_RCV: u32 = 1 << 5;
    /// Fatal Error Messages Received.
    pub const FATAL_RCV: u32 = 1 << 6;
    /// The RW1CS bits.
    pub const REPORT_MASK: u32 = 0x7F;
    /// Advanced Error Interrupt Message Number (bits 31:27).
    pub const IMN: u32 = 0xF800_0000;
    /// Shift of [`IMN`].
    pub const IMN_SHIFT: u32 = 27;
}

/// Type-1 header registers AER forwarding uses.
pub mod bridge {
    /// Secondary Status (16).
    pub const SEC_STATUS: u16 = 0x1E;
    /// Secondary Status: Received System Error (RW1C).
    pub const SEC_STATUS_RCV_SERR: u16 = 1 << 14;
    /// Bridge Control (16).
    pub const BRIDGE_CONTROL: u16 = 0x3E;
    /// Bridge Control: SERR# Enable (RW).
    pub const CTL_SERR: u16 = 1 << 1;
}

/// AER capability configuration errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AerConfigError {
    /// Queue size above [`AER_LOG_MAX`].
    #[error("AER header log queue size {0} exceeds the maximum of 32")]
    LogMaxTooLarge(u8),
    /// A default mask or severity value names unsupported bits.
    #[error("AER {register} default {value:#010x} has unsupported bits {bits:#010x}")]
    BadDefault {
        /// Register name.
        register: &'static str,
        /// Value given.
        value: u32,
        /// The unsupported bits.
        bits: u32,
    },
}

/// What AER capability to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AerConfig {
    /// Multiple header recording queue size (0 = no multiple header recording; max 32).
    pub log_max: u8,
    /// ECRC generation and checking capable.
    pub ecrc: bool,
    /// Uncorrectable Error Mask reset value.
    pub uncor_mask: u32,
    /// Uncorrectable Error Severity reset value.
    pub uncor_severity: u32,
    /// Correctable Error Mask reset value.
    pub cor_mask: u32,
}

impl Default for AerConfig {
    /// Queue of 8 (QEMU's default), ECRC capable, spec/QEMU default masks and severities.
    fn default() -> Self {
        AerConfig {
            log_max: 8,
            ecrc: true,
            uncor_mask: uncor::MASK_DEFAULT,
            uncor_severity: uncor::SEVERITY_DEFAULT,
            cor_mask: cor::MASK_DEFAULT,
        }
    }
}

impl AerConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), AerConfigError> {
        if self.log_max > AER_LOG_MAX {
            return Err(AerConfigError::LogMaxTooLarge(self.log_max));
        }
        for (register, value, supported) in [
            ("uncorrectable mask", self.uncor_mask, uncor::SUPPORTED),
            ("uncorrectable severity", self.uncor_severity, uncor::SUPPORTED),
            ("correctable mask", self.cor_mask, cor::SUPPORTED),
        ] {
            if value & !supported != 0 {
                return Err(AerConfigError::BadDefault { register, value, bits: value & !supported });
            }
        }
        Ok(())
    }

    /// The register table (offsets relative to the capability) for a function of `port_type`
    /// (the root registers are live only on root ports).
    pub fn registers(&self, port_type: PortType) -> Result<Vec<RegSpec>, AerConfigError> {
        self.validate()?;
        let (us, cs) = (uncor::SUPPORTED, cor::SUPPORTED);
        let mut cap_init = 0;
        let mut cap_rw = 0;
        if self.ecrc {
            cap_init |= errcap::ECRC_GENC | errcap::ECRC_CHKC;
            cap_rw |= errcap::ECRC_GENE | errcap::ECRC_CHKE;
        }
        if self.log_max > 0 {
            cap_init |= errcap::MHRC;
            cap_rw |= errcap::MHRE;
        }
        let cap_sticky = errcap::FEP | errcap::ECRC_GENE | errcap::ECRC_CHKE | errcap::MHRE | errcap::TLP;
        let mut regs = vec![
            RegSpec::ro(off::UNCOR_STATUS, 4, 0).w1c(us).sticky(us),
            RegSpec::ro(off::UNCOR_MASK, 4, self.uncor_mask).rw(us).sticky(us),
            RegSpec::ro(off::UNCOR_SEVER, 4, self.uncor_severity).rw(us).sticky(us),
            RegSpec::ro(off::COR_STATUS, 4, 0).w1c(cs).sticky(cs),
            RegSpec::ro(off::COR_MASK, 4, self.cor_mask).rw(cs).sticky(cs),
            RegSpec::ro(off::CAP, 4, cap_init).rw(cap_rw).sticky(cap_sticky),
        ];
        for i in 0..4u16 {
            regs.push(RegSpec::ro(off::HEADER_LOG + 4 * i, 4, 0).sticky(u32::MAX));
            regs.push(RegSpec::ro(off::TLP_PREFIX_LOG + 4 * i, 4, 0).sticky(u32::MAX));
        }
        if port_type == PortType::RootPort {
            regs.extend([
                RegSpec::ro(off::ROOT_COMMAND, 4, 0).rw(root_cmd::MASK),
                RegSpec::ro(off::ROOT_STATUS, 4, 0)
                    .w1c(root_sta::REPORT_MASK)
                    .sticky(root_sta::REPORT_MASK)
                    .hwinit(root_sta::IMN),
                RegSpec::ro(off::ERR_SRC, 4, 0).sticky(u32::MAX),
            ]);
        }
        Ok(regs)
    }

    /// The capability block for an extended chain builder (place it at 0x100).
    pub fn cap_block(&self, port_type: PortType) -> Result<CapBlock, AerConfigError> {
        Ok(CapBlock::ext(ext_id::AER, AER_VERSION, AER_CAP_LEN).regs(self.registers(port_type)?))
    }
}

/// Severity of an error message (values are the Root Error Command enable bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgSeverity {
    /// ERR_COR.
    Correctable,
    /// ERR_NONFATAL.
    NonFatal,
    /// ERR_FATAL.
    Fatal,
}

impl MsgSeverity {
    /// The matching Root Error Command enable bit.
    pub const fn root_cmd_bit(self) -> u32 {
        match self {
            MsgSeverity::Correctable => root_cmd::COR_EN,
            MsgSeverity::NonFatal => root_cmd::NONFATAL_EN,
            MsgSeverity::Fatal => root_cmd::FATAL_EN,
        }
    }
    /// ERR_NONFATAL or ERR_FATAL.
    pub const fn is_uncorrectable(self) -> bool {
        !matches!(self, MsgSeverity::Correctable)
    }
    /// Message name.
    pub const fn name(self) -> &'static str {
        match self {
            MsgSeverity::Correctable => "ERR_COR",
            MsgSeverity::NonFatal => "ERR_NONFATAL",
            MsgSeverity::Fatal => "ERR_FATAL",
        }
    }
}

/// An error message travelling towards the root port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AerMessage {
    /// ERR_COR / ERR_NONFATAL / ERR_FATAL.
    pub severity: MsgSeverity,
    /// Requester ID of the function that detected the error (`bus << 8 | devfn`).
    pub source_id: u16,
}

/// One error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AerErrorSpec {
    /// Exactly one bit of [`uncor::SUPPORTED`] or [`cor::SUPPORTED`].
    pub status: u32,
    /// Correctable (status is a [`cor`] bit) or uncorrectable.
    pub correctable: bool,
    /// Record a non-fatal uncorrectable error as advisory (QEMU `-a`).
    pub advisory: bool,
    /// TLP header to log (4 DWs), if valid.
    pub header: Option<[u32; 4]>,
    /// TLP prefix to log (needs a header).
    pub prefix: Option<[u32; 4]>,
}

impl AerErrorSpec {
    /// An uncorrectable error.
    pub const fn uncorrectable(status: u32) -> Self {
        AerErrorSpec { status, correctable: false, advisory: false, header: None, prefix: None }
    }
    /// A correctable error.
    pub const fn correctable(status: u32) -> Self {
        AerErrorSpec { status, correctable: true, advisory: false, header: None, prefix: None }
    }
    /// Adds a TLP header.
    pub const fn with_header(mut self, header: [u32; 4]) -> Self {
        self.header = Some(header);
        self
    }
    /// Adds a TLP prefix.
    pub const fn with_prefix(mut self, prefix: [u32; 4]) -> Self {
        self.prefix = Some(prefix);
        self
    }
    /// Marks it advisory.
    pub const fn advisory(mut self) -> Self {
        self.advisory = true;
        self
    }
    /// Checks the status bit and the header/prefix combination.
    pub fn validate(&self) -> Result<(), AerInjectError> {
        let supported = if self.correctable { cor::SUPPORTED } else { uncor::SUPPORTED };
        if self.status.count_ones() != 1 || self.status & !supported != 0 {
            return Err(AerInjectError::BadStatus { status: self.status, correctable: self.correctable });
        }
        if self.prefix.is_some() && self.header.is_none() {
            return Err(AerInjectError::PrefixWithoutHeader);
        }
        Ok(())
    }
}

/// Injection errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AerInjectError {
    /// The target function has no AER capability.
    #[error("{function}: no AER capability (cannot inject PCIe errors)")]
    NoAer {
        /// Function name.
        function: String,
    },
    /// The target function is not a PCI Express function.
    #[error("{function}: not a PCI Express function")]
    NotExpress {
        /// Function name.
        function: String,
    },
    /// Not exactly one supported bit.
    #[error(
        "error status {status:#010x} is not exactly one supported {} error bit",
        if *correctable { "correctable" } else { "uncorrectable" }
    )]
    BadStatus {
        /// The status given.
        status: u32,
        /// Its class.
        correctable: bool,
    },
    /// A TLP prefix without a header.
    #[error("a TLP prefix needs a TLP header")]
    PrefixWithoutHeader,
    /// Too many errors in one injection.
    #[error("{0} errors in one injection (max 32)")]
    TooManyErrors(usize),
}

/// Finds the PCI Express capability and the AER capability of a function (e.g. for a
/// passed-through device), naming the function in the error.
pub fn locate(cfg: &ConfigSpace, function: &str) -> Result<(u16, u16), AerInjectError> {
    let pcie = walk_standard(cfg.bytes())
        .find(u16::from(id::EXP))
        .ok_or_else(|| AerInjectError::NotExpress { function: function.to_string() })?;
    let aer = walk_extended(cfg.bytes())
        .find(ext_id::AER)
        .ok_or_else(|| AerInjectError::NoAer { function: function.to_string() })?;
    Ok((pcie, aer))
}

/// What an injection did.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InjectOutcome {
    /// Messages the function sent, in order (walk each up the hierarchy).
    pub messages: Vec<AerMessage>,
    /// Errors whose header went into the log or the queue.
    pub recorded: usize,
    /// Errors stopped by a mask (status set, nothing sent).
    pub masked: usize,
    /// Errors lost because the header queue was full (each produced an HL_OVERFLOW).
    pub overflows: usize,
}

/// What the root port's error logic did.
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RootOutcome {
    /// Send the root port's MSI/MSI-X vector (rising edge of the AER interrupt condition).
    pub irq: bool,
    /// New INTx level of the AER source, when it changed.
    pub irq_level: Option<bool>,
    /// Root Control asked for a System Error, which is not delivered (logged).
    pub system_error: bool,
}

impl RootOutcome {
    /// Folds `later` in.
    pub fn merge(&mut self, later: RootOutcome) {
        self.irq |= later.irq;
        self.irq_level = later.irq_level.or(self.irq_level);
        self.system_error |= later.system_error;
    }
}

/// Root Error Status classes → Root Error Command bits.
fn status_to_cmd(status: u32) -> u32 {
    let mut c = 0;
    if status & root_sta::COR_RCV != 0 {
        c |= root_cmd::COR_EN;
    }
    if status & root_sta::NONFATAL_RCV != 0 {
        c |= root_cmd::NONFATAL_EN;
    }
    if status & root_sta::FATAL_RCV != 0 {
        c |= root_cmd::FATAL_EN;
    }
    c
}

/// Whether a function (the detecting one, or a port passing a message on) reports a message of
/// `severity` upstream: Figure 6-3's "all functions" part. Sets Status.Signaled System Error for
/// an uncorrectable message sent with Command.SERR.
fn report_gate(cfg: &mut ConfigSpace, cap: PcieCap, severity: MsgSeverity) -> bool {
    let dc = cap.dev_ctl(cfg);
    let serr = cfg.command() & cmd::SERR != 0;
    let enabled = match severity {
        MsgSeverity::Correctable => dc & devctl::CERE != 0,
        MsgSeverity::NonFatal => serr || dc & devctl::NFERE != 0,
        MsgSeverity::Fatal => serr || dc & devctl::FERE != 0,
    };
    if enabled && severity.is_uncorrectable() && serr {
        cfg.update_u16(reg::STATUS, 0, status::SIG_SYSTEM_ERROR);
    }
    enabled
}

/// One hop of the walk: `port_cfg` is a port (root, switch upstream or downstream) that received
/// `msg` on its secondary side; `pcie_off` is its PCI Express capability. Sets Secondary Status
/// Received System Error for an uncorrectable message, then requires Bridge Control SERR Enable
/// and the port's own reporting gate (see the module docs). Returns whether the message goes on
/// (to the parent port, or into the root port's [`Aer::root_receive`]). A function that is not a
/// PCI Express port stops the message.
pub fn hop_forward(port_cfg: &mut ConfigSpace, pcie_off: u16, msg: &AerMessage) -> bool {
    let cap = PcieCap::at(pcie_off);
    if port_cfg.get_u8(pcie_off) != id::EXP || !cap.port_type(port_cfg).is_some_and(PortType::is_port) {
        return false;
    }
    if msg.severity.is_uncorrectable() {
        port_cfg.update_u16(bridge::SEC_STATUS, 0, bridge::SEC_STATUS_RCV_SERR);
    }
    if port_cfg.get_u16(bridge::BRIDGE_CONTROL) & bridge::CTL_SERR == 0 {
        return false;
    }
    report_gate(port_cfg, cap, msg.severity)
}

/// AER state of one function: capability offsets, the bounded multiple-header queue and (for a
/// root port) the last level of the AER interrupt condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aer {
    aer_off: u16,
    pcie: PcieCap,
    log_max: usize,
    queue: VecDeque<AerErrorSpec>,
    root_level: bool,
}

impl Aer {
    /// AER state for a function whose AER capability sits at `aer_off` (built from `config`)
    /// and PCI Express capability at `pcie_off`.
    pub fn new(aer_off: u16, pcie_off: u16, config: &AerConfig) -> Result<Self, AerConfigError> {
        config.validate()?;
        let log_max = usize::from(config.log_max);
        Ok(Aer {
            aer_off,
            pcie: PcieCap::at(pcie_off),
            log_max,
            queue: VecDeque::with_capacity(log_max),
            root_level: false,
        })
    }

    /// AER capability offset.
    pub fn offset(&self) -> u16 {
        self.aer_off
    }
    /// The function's PCI Express capability.
    pub fn pcie(&self) -> PcieCap {
        self.pcie
    }
    /// Errors waiting in the multiple-header queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Current level of the root AER interrupt condition (root ports).
    pub fn root_irq_level(&self) -> bool {
        self.root_level
    }

    /// Sets the Advanced Error Interrupt Message Number (Root Error Status bits 31:27; low 5
    /// bits of `n`), for a root port using more than one MSI/MSI-X vector. HwInit: kept across
    /// resets.
    pub fn set_root_interrupt_message_number(&self, cfg: &mut ConfigSpace, n: u8) {
        let imn = (u32::from(n) << root_sta::IMN_SHIFT) & root_sta::IMN;
        cfg.update_u32(self.at(off::ROOT_STATUS), root_sta::IMN, imn);
    }

    fn at(&self, rel: u16) -> u16 {
        self.aer_off.saturating_add(rel)
    }
    fn get(&self, cfg: &ConfigSpace, rel: u16) -> u32 {
        cfg.get_u32(self.at(rel))
    }
    fn or(&self, cfg: &mut ConfigSpace, rel: u16, bits: u32) {
        cfg.update_u32(self.at(rel), 0, bits);
    }

    /// Injects errors in order (all are validated first; nothing happens if one is invalid).
    /// `source_id` is the function's requester ID.
    pub fn inject_all(
        &mut self,
        cfg: &mut ConfigSpace,
        errors: &[AerErrorSpec],
        source_id: u16,
    ) -> Result<InjectOutcome, AerInjectError> {
        if errors.len() > MAX_ERRORS_PER_INJECTION {
            return Err(AerInjectError::TooManyErrors(errors.len()));
        }
        errors.iter().try_for_each(AerErrorSpec::validate)?;
        let mut out = InjectOutcome::default();
        for e in errors {
            self.inject_one(cfg, e, source_id, &mut out);
        }
        Ok(out)
    }

    /// Injects one error (QEMU `pcie_aer_inject_error` with the decisions in the module docs).
    pub fn inject(
        &mut self,
        cfg: &mut ConfigSpace,
        error: &AerErrorSpec,
        source_id: u16,
    ) -> Result<InjectOutcome, AerInjectError> {
        self.inject_all(cfg, std::slice::from_ref(error), source_id)
    }

    fn inject_one(&mut self, cfg: &mut ConfigSpace, e: &AerErrorSpec, source_id: u16, out: &mut InjectOutcome) {
        let ur = !e.correctable && e.status == uncor::UNSUP;
        let mut overflow = false;
        let severity = if e.correctable {
            self.correctable(cfg, e.status, None, ur, out, &mut overflow)
        } else {
            let fatal = self.get(cfg, off::UNCOR_SEVER) & e.status != 0;
            if !fatal && e.advisory {
                self.correctable(cfg, cor::ADV_NONFATAL, Some(e), ur, out, &mut overflow)
            } else {
                self.uncorrectable(cfg, e, fatal, ur, out, &mut overflow)
            }
        };
        if let Some(severity) = severity {
            if report_gate(cfg, self.pcie, severity) {
                out.messages.push(AerMessage { severity, source_id });
            }
        }
        if overflow {
            out.overflows = out.overflows.saturating_add(1);
            crate::guest_warn!(
                "AER header log of requester {source_id:#06x} overflowed; error {:#010x} lost",
                e.status
            );
            let hlo = AerErrorSpec::correctable(cor::HL_OVERFLOW);
            self.inject_one(cfg, &hlo, source_id, out);
        }
    }

    /// Correctable path; `advisory` is the uncorrectable error recorded as advisory non-fatal.
    fn correctable(
        &mut self,
        cfg: &mut ConfigSpace,
        bit: u32,
        advisory: Option<&AerErrorSpec>,
        ur: bool,
        out: &mut InjectOutcome,
        overflow: &mut bool,
    ) -> Option<MsgSeverity> {
        self.pcie.set_dev_sta_bits(cfg, devsta::CED | if ur { devsta::URD } else { 0 });
        self.or(cfg, off::COR_STATUS, bit);
        if let Some(e) = advisory {
            if self.get(cfg, off::UNCOR_MASK) & e.status == 0 {
                *overflow = self.record(cfg, e, out);
            }
            self.or(cfg, off::UNCOR_STATUS, e.status);
        }
        if self.get(cfg, off::COR_MASK) & bit != 0 {
            out.masked = out.masked.saturating_add(1);
            return None;
        }
        let dc = self.pcie.dev_ctl(cfg);
        if ur && dc & devctl::URRE == 0 {
            return None;
        }
        Some(MsgSeverity::Correctable)
    }

    fn uncorrectable(
        &mut self,
        cfg: &mut ConfigSpace,
        e: &AerErrorSpec,
        fatal: bool,
        ur: bool,
        out: &mut InjectOutcome,
        overflow: &mut bool,
    ) -> Option<MsgSeverity> {
        let detected = if fatal { devsta::FED } else { devsta::NFED };
        self.pcie.set_dev_sta_bits(cfg, detected | if ur { devsta::URD } else { 0 });
        if self.get(cfg, off::UNCOR_MASK) & e.status != 0 {
            self.or(cfg, off::UNCOR_STATUS, e.status);
            out.masked = out.masked.saturating_add(1);
            return None;
        }
        *overflow = self.record(cfg, e, out);
        self.or(cfg, off::UNCOR_STATUS, e.status);
        let serr = cfg.command() & cmd::SERR != 0;
        if ur && self.pcie.dev_ctl(cfg) & devctl::URRE == 0 && !serr {
            return None;
        }
        Some(if fatal { MsgSeverity::Fatal } else { MsgSeverity::NonFatal })
    }

    /// Records an unmasked uncorrectable error: into the log if no earlier error is pending,
    /// else into the queue (MHRE) or nowhere (no MHRE). Returns whether the queue overflowed.
    fn record(&mut self, cfg: &mut ConfigSpace, e: &AerErrorSpec, out: &mut InjectOutcome) -> bool {
        let cap = self.get(cfg, off::CAP);
        let fep_bit = 1u32 << (cap & errcap::FEP);
        if self.get(cfg, off::UNCOR_STATUS) & fep_bit != 0 {
            if cap & errcap::MHRE == 0 {
                return false;
            }
            if self.queue.len() >= self.log_max {
                return true;
            }
            self.queue.push_back(*e);
            out.recorded = out.recorded.saturating_add(1);
            return false;
        }
        self.write_log(cfg, e);
        out.recorded = out.recorded.saturating_add(1);
        false
    }

    /// First Error Pointer, header log and prefix log for `e`.
    fn write_log(&self, cfg: &mut ConfigSpace, e: &AerErrorSpec) {
        let mut cap = self.get(cfg, off::CAP) & !(errcap::FEP | errcap::TLP);
        cap |= e.status.trailing_zeros() & errcap::FEP;
        let header = e.header.unwrap_or_default();
        let prefix = match e.prefix {
            Some(p) if e.header.is_some() && self.pcie.tlp_prefix_supported(cfg) => {
                cap |= errcap::TLP;
                p
            }
            _ => [0; 4],
        };
        for (i, (h, p)) in (0u16..).zip(header.into_iter().zip(prefix)) {
            cfg.set_u32(self.at(off::HEADER_LOG + 4 * i), h);
            cfg.set_u32(self.at(off::TLP_PREFIX_LOG + 4 * i), p);
        }
        cfg.set_u32(self.at(off::CAP), cap);
    }

    fn clear_log(&self, cfg: &mut ConfigSpace) {
        cfg.update_u32(self.at(off::CAP), errcap::FEP | errcap::TLP, 0);
        for i in 0..4u16 {
            cfg.set_u32(self.at(off::HEADER_LOG + 4 * i), 0);
            cfg.set_u32(self.at(off::TLP_PREFIX_LOG + 4 * i), 0);
        }
    }

    fn reassert_queued(&self, cfg: &mut ConfigSpace) {
        let bits = self.queue.iter().fold(0, |acc, e| acc | e.status);
        self.or(cfg, off::UNCOR_STATUS, bits);
    }

    /// Whether a config access `[at, at+size)` touches the AER capability.
    pub fn touches(&self, at: u16, size: u8) -> bool {
        let (a, b) = (u32::from(at), u32::from(at) + u32::from(size));
        let s = u32::from(self.aer_off);
        a < s + u32::from(AER_CAP_LEN) && s < b
    }

    /// Call after every guest config write to the function. For writes touching the AER
    /// capability: if the guest cleared the status bit the First Error Pointer names, the next
    /// queued error moves into the log (its and the remaining queued errors' status bits are set
    /// again) or the log is cleared; if that bit is still set and MHRE is on, the queued
    /// errors' status bits are set again (undoing a W1C of them); with MHRE off the queue is
    /// dropped. For a root port it then re-evaluates the AER interrupt (Root Error Command
    /// enabling an already-received class sends an MSI; a W1C of Root Error Status drops the
    /// INTx level).
    pub fn on_config_write(&mut self, cfg: &mut ConfigSpace, at: u16, size: u8) -> RootOutcome {
        if !self.touches(at, size) {
            return RootOutcome::default();
        }
        let cap = self.get(cfg, off::CAP);
        let fep_bit = 1u32 << (cap & errcap::FEP);
        let mhre = cap & errcap::MHRE != 0;
        if !mhre {
            self.queue.clear();
        }
        if self.get(cfg, off::UNCOR_STATUS) & fep_bit == 0 {
            if self.queue.is_empty() {
                self.clear_log(cfg);
            } else {
                self.reassert_queued(cfg);
                if let Some(next) = self.queue.pop_front() {
                    self.write_log(cfg, &next);
                }
            }
        } else if mhre {
            self.reassert_queued(cfg);
        }
        let mut outcome = RootOutcome::default();
        if self.is_root(cfg) {
            self.update_root_level(cfg, &mut outcome);
        }
        outcome
    }

    fn is_root(&self, cfg: &ConfigSpace) -> bool {
        self.pcie.port_type(cfg) == Some(PortType::RootPort)
    }

    fn update_root_level(&mut self, cfg: &ConfigSpace, outcome: &mut RootOutcome) {
        let status = self.get(cfg, off::ROOT_STATUS);
        let command = self.get(cfg, off::ROOT_COMMAND);
        let level = status_to_cmd(status) & command & root_cmd::MASK != 0;
        if level && !self.root_level {
            outcome.irq = true;
        }
        if level != self.root_level {
            outcome.irq_level = Some(level);
        }
        self.root_level = level;
    }

    /// The root port's error logic for a message that reached it (after [`hop_forward`] at the
    /// root port, or straight from its own [`Aer::inject_all`]): Root Error Status (received,
    /// multiple, first fatal, non-fatal/fatal received), Error Source Identification latch,
    /// System Error (not delivered, logged) and the interrupt decision. On a function that is
    /// not a root port this does nothing.
    pub fn root_receive(&mut self, cfg: &mut ConfigSpace, msg: &AerMessage) -> RootOutcome {
        let mut outcome = RootOutcome::default();
        if !self.is_root(cfg) {
            return outcome;
        }
        let mut st = self.get(cfg, off::ROOT_STATUS);
        let mut src = self.get(cfg, off::ERR_SRC);
        let id = u32::from(msg.source_id);
        match msg.severity {
            MsgSeverity::Correctable => {
                if st & root_sta::COR_RCV != 0 {
                    st |= root_sta::MULTI_COR_RCV;
                } else {
                    src = (src & 0xFFFF_0000) | id;
                }
                st |= root_sta::COR_RCV;
            }
            MsgSeverity::NonFatal => st |= root_sta::NONFATAL_RCV,
            MsgSeverity::Fatal => {
                if st & root_sta::UNCOR_RCV == 0 {
                    st |= root_sta::FIRST_FATAL;
                }
                st |= root_sta::FATAL_RCV;
            }
        }
        if msg.severity.is_uncorrectable() {
            if st & root_sta::UNCOR_RCV != 0 {
                st |= root_sta::MULTI_UNCOR_RCV;
            } else {
                src = (src & 0xFFFF) | (id << 16);
            }
            st |= root_sta::UNCOR_RCV;
        }
        cfg.set_u32(self.at(off::ROOT_STATUS), st);
        cfg.set_u32(self.at(off::ERR_SRC), src);
        let se_bit = match msg.severity {
            MsgSeverity::Correctable => rtctl::SECEE,
            MsgSeverity::NonFatal => rtctl::SENFEE,
            MsgSeverity::Fatal => rtctl::SEFEE,
        };
        if self.pcie.root_ctl(cfg) & se_bit != 0 {
            outcome.system_error = true;
            crate::guest_warn!(
                "AER: {} from {:#06x}: System Error requested by Root Control is not delivered",
                msg.severity.name(),
                msg.source_id
            );
        }
        self.update_root_level(cfg, &mut outcome);
        outcome
    }

    /// Call after the function's config space was reset: a cold reset also empties the
    /// multiple-header queue (the sticky log it belongs to is gone); other kinds keep it. For a
    /// root port the interrupt level is re-evaluated (Root Error Command is not sticky).
    pub fn reset(&mut self, cfg: &mut ConfigSpace, kind: ResetKind) -> RootOutcome {
        if !kind.keeps_sticky() {
            self.queue.clear();
        }
        let mut outcome = RootOutcome::default();
        self.update_root_level(cfg, &mut outcome);
        outcome.irq = false;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::caps::CapChainBuilder;
    use crate::pci::config::{header_regs, ConfigKind, HeaderIds, HeaderType, RegMasks};
    use crate::pcie::cap::{off as poff, PcieCapConfig};

    const PCIE: u16 = 0x40;
    const AER: u16 = 0x100;

    /// A function of `t` with the standard header (bridge SERR/RcvSysErr opened on ports), the
    /// PCI Express capability at 0x40 and AER at 0x100.
    fn function(t: PortType, config: AerConfig) -> (ConfigSpace, Aer) {
        let mut c = ConfigSpace::new(ConfigKind::Express);
        let ht = if t.is_port() { HeaderType::Type1 } else { HeaderType::Type0 };
        c.apply_table(0, &header_regs(&HeaderIds::default(), ht, false, None)).expect("hdr");
        if t.is_port() {
            c.apply_reg(bridge::SEC_STATUS, &RegSpec::ro(0, 2, 0).w1c(u32::from(bridge::SEC_STATUS_RCV_SERR)))
                .expect("sec");
            c.apply_reg(bridge::BRIDGE_CONTROL, &RegSpec::ro(0, 2, 0).rw(u32::from(bridge::CTL_SERR))).expect("bctl");
        }
        let mut s = CapChainBuilder::standard();
        s.add_at(PCIE, PcieCapConfig::new(t).cap_block().expect("pcie")).expect("add");
        s.install(&mut c).expect("std");
        let mut e = CapChainBuilder::extended();
        e.add_at(AER, config.cap_block(t).expect("aer")).expect("add");
        e.install(&mut c).expect("ext");
        (c, Aer::new(AER, PCIE, &config).expect("aer state"))
    }

    fn ep() -> (ConfigSpace, Aer) {
        function(PortType::Endpoint, AerConfig::default())
    }

    fn w(c: &mut ConfigSpace, at: u16, size: u8, val: u32) {
        assert!(!c.write(at, size, val).is_ignored());
    }

    /// What Linux does: all four reporting enables.
    fn enable_reporting(c: &mut ConfigSpace) {
        w(c, PCIE + poff::DEVCTL, 2, u32::from(devctl::ERR_ENABLES));
    }

    fn rd(c: &ConfigSpace, rel: u16) -> u32 {
        c.get_u32(AER + rel)
    }

    fn devsta(c: &ConfigSpace) -> u16 {
        c.get_u16(PCIE + poff::DEVSTA)
    }

    const SRC: u16 = 0x0300;

    #[test]
    fn capability_header_and_size() {
        let (c, _) = ep();
        assert_eq!(c.get_u32(AER), 0x0002_0001, "ID 1, version 2, last in chain");
        assert_eq!(locate(&c, "ep"), Ok((PCIE, AER)));
    }

    #[test]
    fn register_masks_match_the_spec_attributes() {
        let (c, _) = function(PortType::RootPort, AerConfig::default());
        let (us, cs) = (uncor::SUPPORTED, cor::SUPPORTED);
        assert_eq!(c.reg_masks(AER + off::UNCOR_STATUS, 4), RegMasks::w1c(us).with_sticky(us));
        assert_eq!(c.reg_masks(AER + off::UNCOR_MASK, 4), RegMasks::rw(us).with_sticky(us));
        assert_eq!(c.reg_masks(AER + off::UNCOR_SEVER, 4), RegMasks::rw(us).with_sticky(us));
        assert_eq!(c.reg_masks(AER + off::COR_STATUS, 4), RegMasks::w1c(cs).with_sticky(cs));
        assert_eq!(c.reg_masks(AER + off::COR_MASK, 4), RegMasks::rw(cs).with_sticky(cs));
        let capm = c.reg_masks(AER + off::CAP, 4);
        assert_eq!(capm.wmask, errcap::ECRC_GENE | errcap::ECRC_CHKE | errcap::MHRE);
        assert_eq!(capm.sticky & (errcap::FEP | errcap::TLP), errcap::FEP | errcap::TLP);
        for i in 0..4 {
            assert_eq!(c.reg_masks(AER + off::HEADER_LOG + 4 * i, 4), RegMasks::RO.with_sticky(u32::MAX));
            assert_eq!(c.reg_masks(AER + off::TLP_PREFIX_LOG + 4 * i, 4), RegMasks::RO.with_sticky(u32::MAX));
        }
        assert_eq!(c.reg_masks(AER + off::ROOT_COMMAND, 4), RegMasks::rw(7));
        assert_eq!(
            c.reg_masks(AER + off::ROOT_STATUS, 4),
            RegMasks::w1c(0x7f).with_sticky(0x7f).with_hwinit(root_sta::IMN)
        );
        assert_eq!(c.reg_masks(AER + off::ERR_SRC, 4), RegMasks::RO.with_sticky(u32::MAX));
    }

    #[test]
    fn default_values_match_spec_and_qemu() {
        let (c, _) = ep();
        assert_eq!(rd(&c, off::UNCOR_MASK), uncor::INTN);
        assert_eq!(rd(&c, off::UNCOR_SEVER), 0x0046_2030);
        assert_eq!(rd(&c, off::COR_MASK), 0xE000);
        assert_eq!(rd(&c, off::CAP), errcap::ECRC_GENC | errcap::ECRC_CHKC | errcap::MHRC);
    }

    #[test]
    fn root_registers_are_read_only_zero_on_non_root_functions() {
        for t in [PortType::Endpoint, PortType::DownstreamPort, PortType::UpstreamPort] {
            let (mut c, _) = function(t, AerConfig::default());
            for rel in [off::ROOT_COMMAND, off::ROOT_STATUS, off::ERR_SRC] {
                w(&mut c, AER + rel, 4, 0xffff_ffff);
                assert_eq!(rd(&c, rel), 0, "{t:?} {rel:#x}");
            }
        }
    }

    #[test]
    fn unsupported_status_bits_are_read_only() {
        let (mut c, _) = ep();
        w(&mut c, AER + off::UNCOR_MASK, 4, 0xffff_ffff);
        assert_eq!(rd(&c, off::UNCOR_MASK), uncor::SUPPORTED);
        w(&mut c, AER + off::COR_MASK, 4, 0xffff_ffff);
        assert_eq!(rd(&c, off::COR_MASK), cor::SUPPORTED);
        w(&mut c, AER + off::CAP, 4, 0xffff_ffff);
        assert_eq!(rd(&c, off::CAP), 0x7e0, "FEP and TLP not writable");
    }

    #[test]
    fn config_without_ecrc_or_queue_has_read_only_control() {
        let cfg = AerConfig { ecrc: false, log_max: 0, ..AerConfig::default() };
        let (mut c, _) = function(PortType::Endpoint, cfg);
        assert_eq!(rd(&c, off::CAP), 0);
        w(&mut c, AER + off::CAP, 4, 0xffff_ffff);
        assert_eq!(rd(&c, off::CAP), 0);
    }

    #[test]
    fn config_validation_names_bad_values() {
        let e = AerConfig { log_max: 33, ..AerConfig::default() }.validate().expect_err("max");
        assert_eq!(e, AerConfigError::LogMaxTooLarge(33));
        let e = AerConfig { uncor_mask: 1, ..AerConfig::default() }.validate().expect_err("bit 0");
        assert_eq!(e, AerConfigError::BadDefault { register: "uncorrectable mask", value: 1, bits: 1 });
        assert!(e.to_string().contains("0x00000001"), "{e}");
        assert!(AerConfig { cor_mask: 2, ..AerConfig::default() }.cap_block(PortType::Endpoint).is_err());
        assert!(Aer::new(AER, PCIE, &AerConfig { log_max: 40, ..AerConfig::default() }).is_err());
    }

    #[test]
    fn correctable_error_sets_status_devsta_and_sends_err_cor() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let out = a.inject(&mut c, &AerErrorSpec::correctable(cor::BAD_TLP), SRC).expect("inject");
        assert_eq!(out.messages, vec![AerMessage { severity: MsgSeverity::Correctable, source_id: SRC }]);
        assert_eq!(rd(&c, off::COR_STATUS), cor::BAD_TLP);
        assert_eq!(devsta(&c), devsta::CED);
        assert_eq!(rd(&c, off::UNCOR_STATUS), 0);
    }

    #[test]
    fn correctable_masked_sets_status_without_message() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let out = a.inject(&mut c, &AerErrorSpec::correctable(cor::INTERNAL), SRC).expect("inject");
        assert!(out.messages.is_empty());
        assert_eq!(out.masked, 1);
        assert_eq!(rd(&c, off::COR_STATUS), cor::INTERNAL);
        assert_eq!(devsta(&c), devsta::CED, "DevSta regardless of the mask");
    }

    #[test]
    fn correctable_without_cere_sends_nothing() {
        let (mut c, mut a) = ep();
        let out = a.inject(&mut c, &AerErrorSpec::correctable(cor::RCVR), SRC).expect("inject");
        assert!(out.messages.is_empty());
        assert_eq!(out.masked, 0);
        assert_eq!(rd(&c, off::COR_STATUS), cor::RCVR);
    }

    #[test]
    fn correctable_status_is_rw1c() {
        let (mut c, mut a) = ep();
        let _ = a.inject(&mut c, &AerErrorSpec::correctable(cor::RCVR), SRC).expect("a");
        let _ = a.inject(&mut c, &AerErrorSpec::correctable(cor::BAD_DLLP), SRC).expect("b");
        w(&mut c, AER + off::COR_STATUS, 4, cor::RCVR);
        assert_eq!(rd(&c, off::COR_STATUS), cor::BAD_DLLP);
    }

    #[test]
    fn uncorrectable_nonfatal_logs_header_and_sends_err_nonfatal() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let hdr = [0x4a00_0001, 0x0100_000f, 0xfee0_0000, 0x1234_5678];
        let e = AerErrorSpec::uncorrectable(uncor::POISON_TLP).with_header(hdr);
        let out = a.inject(&mut c, &e, SRC).expect("inject");
        assert_eq!(out.messages, vec![AerMessage { severity: MsgSeverity::NonFatal, source_id: SRC }]);
        assert_eq!(out.recorded, 1);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::POISON_TLP);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 12);
        for (i, h) in (0u16..).zip(hdr) {
            assert_eq!(c.read(AER + off::HEADER_LOG + 4 * i, 4).0, h, "DW {i} reads back as given");
        }
        assert_eq!(devsta(&c), devsta::NFED);
    }

    #[test]
    fn uncorrectable_fatal_by_severity_sends_err_fatal() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::MALF_TLP), SRC).expect("inject");
        assert_eq!(out.messages.first().map(|m| m.severity), Some(MsgSeverity::Fatal));
        assert_eq!(devsta(&c), devsta::FED);
        // Severity is guest-programmable.
        w(&mut c, AER + off::UNCOR_SEVER, 4, 0);
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::DLP), SRC).expect("inject");
        assert_eq!(out.messages.first().map(|m| m.severity), Some(MsgSeverity::NonFatal));
    }

    #[test]
    fn uncorrectable_masked_sets_status_without_message() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let e = AerErrorSpec::uncorrectable(uncor::INTN).with_header([1, 2, 3, 4]);
        let out = a.inject(&mut c, &e, SRC).expect("inject");
        assert!(out.messages.is_empty());
        assert_eq!((out.masked, out.recorded), (1, 0));
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::INTN);
        assert_eq!(rd(&c, off::HEADER_LOG), 0, "masked errors are not logged");
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 0);
        assert_eq!(devsta(&c), devsta::FED, "DevSta regardless of the mask");
    }

    #[test]
    fn uncorrectable_without_enables_sends_nothing_but_serr_alone_sends() {
        let (mut c, mut a) = ep();
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::COMP_TIME), SRC).expect("inject");
        assert!(out.messages.is_empty());
        assert_eq!(c.status() & status::SIG_SYSTEM_ERROR, 0);
        w(&mut c, reg::COMMAND, 2, u32::from(cmd::SERR));
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::COMP_ABORT), SRC).expect("inject");
        assert_eq!(out.messages.len(), 1, "Command.SERR enables ERR_NONFATAL/FATAL (spec Figure 6-3)");
        assert_ne!(c.status() & status::SIG_SYSTEM_ERROR, 0);
    }

    #[test]
    fn devctl_enable_without_serr_does_not_signal_system_error() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ECRC), SRC).expect("inject");
        assert_eq!(c.status() & status::SIG_SYSTEM_ERROR, 0);
    }

    #[test]
    fn unsupported_request_needs_urre() {
        let (mut c, mut a) = ep();
        w(&mut c, PCIE + poff::DEVCTL, 2, u32::from(devctl::NFERE));
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::UNSUP), SRC).expect("inject");
        assert!(out.messages.is_empty(), "URRE off");
        assert_eq!(devsta(&c), devsta::NFED | devsta::URD);
        w(&mut c, PCIE + poff::DEVCTL, 2, u32::from(devctl::NFERE | devctl::URRE));
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::UNSUP), SRC).expect("inject");
        assert_eq!(out.messages.len(), 1);
    }

    #[test]
    fn advisory_nonfatal_is_reported_as_correctable() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        w(&mut c, AER + off::COR_MASK, 4, 0);
        let e = AerErrorSpec::uncorrectable(uncor::UNX_COMP).advisory().with_header([9, 8, 7, 6]);
        let out = a.inject(&mut c, &e, SRC).expect("inject");
        assert_eq!(out.messages, vec![AerMessage { severity: MsgSeverity::Correctable, source_id: SRC }]);
        assert_eq!(rd(&c, off::COR_STATUS), cor::ADV_NONFATAL);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::UNX_COMP);
        assert_eq!(rd(&c, off::HEADER_LOG), 9);
        assert_eq!(devsta(&c), devsta::CED);
    }

    #[test]
    fn advisory_with_masked_anfe_still_records_the_uncorrectable_error() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let e = AerErrorSpec::uncorrectable(uncor::UNX_COMP).advisory();
        let out = a.inject(&mut c, &e, SRC).expect("inject");
        assert!(out.messages.is_empty(), "ADV_NONFATAL masked by default");
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::UNX_COMP);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 16);
    }

    #[test]
    fn advisory_flag_is_ignored_for_fatal_errors() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        let out = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::DLP).advisory(), SRC).expect("inject");
        assert_eq!(out.messages.first().map(|m| m.severity), Some(MsgSeverity::Fatal));
        assert_eq!(rd(&c, off::COR_STATUS), 0);
    }

    #[test]
    fn bad_status_values_are_refused() {
        let (mut c, mut a) = ep();
        for e in [
            AerErrorSpec::uncorrectable(0),
            AerErrorSpec::uncorrectable(uncor::DLP | uncor::SDN),
            AerErrorSpec::uncorrectable(1),
            AerErrorSpec::correctable(uncor::DLP),
        ] {
            let err = a.inject(&mut c, &e, SRC).expect_err("bad");
            assert!(matches!(err, AerInjectError::BadStatus { .. }), "{err:?}");
        }
        let err = AerInjectError::BadStatus { status: 3, correctable: true };
        assert_eq!(err.to_string(), "error status 0x00000003 is not exactly one supported correctable error bit");
        let e = AerErrorSpec::uncorrectable(uncor::DLP).with_prefix([1, 2, 3, 4]);
        assert_eq!(a.inject(&mut c, &e, SRC), Err(AerInjectError::PrefixWithoutHeader));
        assert_eq!(rd(&c, off::UNCOR_STATUS), 0, "nothing injected");
    }

    #[test]
    fn inject_all_is_all_or_nothing_and_bounded() {
        let (mut c, mut a) = ep();
        let list = [AerErrorSpec::correctable(cor::RCVR), AerErrorSpec::uncorrectable(0)];
        assert!(a.inject_all(&mut c, &list, SRC).is_err());
        assert_eq!(rd(&c, off::COR_STATUS), 0);
        let many = vec![AerErrorSpec::correctable(cor::RCVR); 33];
        assert_eq!(a.inject_all(&mut c, &many, SRC), Err(AerInjectError::TooManyErrors(33)));
    }

    #[test]
    fn tlp_prefix_logged_only_when_supported() {
        let (mut c, mut a) = ep();
        let e = AerErrorSpec::uncorrectable(uncor::TLP_PRF_BLOCKED).with_header([1, 2, 3, 4]).with_prefix([5, 6, 7, 8]);
        let _ = a.inject(&mut c, &e, SRC).expect("inject");
        assert_ne!(rd(&c, off::CAP) & errcap::TLP, 0);
        assert_eq!(rd(&c, off::TLP_PREFIX_LOG + 12), 8);
        // Without End-End TLP prefix support, nothing is logged.
        let mut c = ConfigSpace::new(ConfigKind::Express);
        let mut s = CapChainBuilder::standard();
        let pcfg = PcieCapConfig { tlp_prefix: false, ..PcieCapConfig::new(PortType::Endpoint) };
        s.add_at(PCIE, pcfg.cap_block().expect("pcie")).expect("add");
        s.install(&mut c).expect("std");
        let mut x = CapChainBuilder::extended();
        x.add_at(AER, AerConfig::default().cap_block(PortType::Endpoint).expect("aer")).expect("add");
        x.install(&mut c).expect("ext");
        let mut a = Aer::new(AER, PCIE, &AerConfig::default()).expect("aer");
        let _ = a.inject(&mut c, &e, SRC).expect("inject");
        assert_eq!(rd(&c, off::CAP) & errcap::TLP, 0);
        assert_eq!(rd(&c, off::TLP_PREFIX_LOG), 0);
        assert_eq!(rd(&c, off::HEADER_LOG), 1);
    }

    #[test]
    fn without_mhre_first_error_header_is_kept() {
        let (mut c, mut a) = ep();
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ECRC).with_header([1, 1, 1, 1]), SRC).expect("a");
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ACSV).with_header([2, 2, 2, 2]), SRC).expect("b");
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 19);
        assert_eq!(rd(&c, off::HEADER_LOG), 1);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::ECRC | uncor::ACSV);
        assert_eq!(a.queued(), 0);
        // Clearing the first error clears the log.
        w(&mut c, AER + off::UNCOR_STATUS, 4, uncor::ECRC);
        let _ = a.on_config_write(&mut c, AER + off::UNCOR_STATUS, 4);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 0);
        assert_eq!(rd(&c, off::HEADER_LOG), 0);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::ACSV);
    }

    fn enable_mhre(c: &mut ConfigSpace) {
        w(c, AER + off::CAP, 4, errcap::MHRE);
    }

    #[test]
    fn multiple_header_recording_pops_on_fep_clear() {
        let (mut c, mut a) = ep();
        enable_mhre(&mut c);
        for (bit, h) in [(uncor::ECRC, 1u32), (uncor::ACSV, 2), (uncor::ECRC, 3)] {
            let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(bit).with_header([h; 4]), SRC).expect("inject");
        }
        assert_eq!(a.queued(), 2);
        assert_eq!(rd(&c, off::HEADER_LOG), 1);
        // The guest clears everything; the first queued error moves in and status is re-set.
        w(&mut c, AER + off::UNCOR_STATUS, 4, 0xffff_ffff);
        let _ = a.on_config_write(&mut c, AER + off::UNCOR_STATUS, 4);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 21);
        assert_eq!(rd(&c, off::HEADER_LOG), 2);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::ACSV | uncor::ECRC, "queued errors re-asserted");
        assert_eq!(a.queued(), 1);
        // A W1C of a queued error's bit while the FEP error is still set is undone.
        w(&mut c, AER + off::UNCOR_STATUS, 4, uncor::ECRC);
        let _ = a.on_config_write(&mut c, AER + off::UNCOR_STATUS, 4);
        assert_eq!(rd(&c, off::UNCOR_STATUS), uncor::ACSV | uncor::ECRC);
        w(&mut c, AER + off::UNCOR_STATUS, 4, uncor::ACSV);
        let _ = a.on_config_write(&mut c, AER + off::UNCOR_STATUS, 4);
        assert_eq!(rd(&c, off::HEADER_LOG), 3);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 19);
        assert_eq!(a.queued(), 0);
        w(&mut c, AER + off::UNCOR_STATUS, 4, uncor::ECRC);
        let _ = a.on_config_write(&mut c, AER + off::UNCOR_STATUS, 4);
        assert_eq!(rd(&c, off::UNCOR_STATUS), 0);
        assert_eq!(rd(&c, off::HEADER_LOG), 0, "log cleared when the queue is empty");
    }

    #[test]
    fn fep_pop_ignores_writes_elsewhere() {
        let (mut c, mut a) = ep();
        enable_mhre(&mut c);
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ECRC), SRC).expect("a");
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ACSV), SRC).expect("b");
        w(&mut c, reg::COMMAND, 2, 0);
        let _ = a.on_config_write(&mut c, reg::COMMAND, 2);
        assert_eq!(a.queued(), 1);
    }

    #[test]
    fn clearing_mhre_drops_the_queue() {
        let (mut c, mut a) = ep();
        enable_mhre(&mut c);
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ECRC), SRC).expect("a");
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ACSV), SRC).expect("b");
        w(&mut c, AER + off::CAP, 4, 0);
        let _ = a.on_config_write(&mut c, AER + off::CAP, 4);
        assert_eq!(a.queued(), 0);
        assert_eq!(rd(&c, off::CAP) & errcap::FEP, 19, "the logged error stays");
    }

    #[test]
    fn full_queue_overflows_into_hl_overflow() {
        let cfg = AerConfig { log_max: 2, ..AerConfig::default() };
        let (mut c, mut a) = function(PortType::Endpoint, cfg);
        enable_reporting(&mut c);
        enable_mhre(&mut c);
        w(&mut c, AER + off::COR_MASK, 4, 0);
        let errs = [uncor::ECRC, uncor::ACSV, uncor::UNX_COMP, uncor::COMP_ABORT].map(AerErrorSpec::uncorrectable);
        let out = a.inject_all(&mut c, &errs, SRC).expect("inject");
        assert_eq!(out.recorded, 3);
        assert_eq!(out.overflows, 1);
        assert_eq!(a.queued(), 2);
        assert_eq!(rd(&c, off::COR_STATUS), cor::HL_OVERFLOW);
        let sev: Vec<MsgSeverity> = out.messages.iter().map(|m| m.severity).collect();
        assert_eq!(
            sev,
            vec![
                MsgSeverity::NonFatal,
                MsgSeverity::NonFatal,
                MsgSeverity::NonFatal,
                MsgSeverity::NonFatal,
                MsgSeverity::Correctable
            ],
            "HL_OVERFLOW follows the lost error's own message"
        );
    }

    #[test]
    fn hop_forward_requires_bridge_serr_and_sets_received_system_error() {
        let (mut c, _) = function(PortType::DownstreamPort, AerConfig::default());
        enable_reporting(&mut c);
        let msg = AerMessage { severity: MsgSeverity::Fatal, source_id: SRC };
        assert!(!hop_forward(&mut c, PCIE, &msg), "BridgeCtl.SERR off");
        assert_ne!(c.get_u16(bridge::SEC_STATUS) & bridge::SEC_STATUS_RCV_SERR, 0);
        w(&mut c, bridge::BRIDGE_CONTROL, 2, u32::from(bridge::CTL_SERR));
        assert!(hop_forward(&mut c, PCIE, &msg));
        w(&mut c, bridge::SEC_STATUS, 2, u32::from(bridge::SEC_STATUS_RCV_SERR));
        let cor_msg = AerMessage { severity: MsgSeverity::Correctable, source_id: SRC };
        assert!(hop_forward(&mut c, PCIE, &cor_msg));
        assert_eq!(c.get_u16(bridge::SEC_STATUS), 0, "ERR_COR does not set Received System Error");
    }

    #[test]
    fn hop_forward_requires_the_ports_devctl_enable() {
        let (mut c, _) = function(PortType::UpstreamPort, AerConfig::default());
        w(&mut c, bridge::BRIDGE_CONTROL, 2, u32::from(bridge::CTL_SERR));
        for sev in [MsgSeverity::Correctable, MsgSeverity::NonFatal, MsgSeverity::Fatal] {
            assert!(!hop_forward(&mut c, PCIE, &AerMessage { severity: sev, source_id: SRC }), "{sev:?}");
        }
        w(&mut c, PCIE + poff::DEVCTL, 2, u32::from(devctl::CERE));
        assert!(hop_forward(&mut c, PCIE, &AerMessage { severity: MsgSeverity::Correctable, source_id: SRC }));
        assert!(!hop_forward(&mut c, PCIE, &AerMessage { severity: MsgSeverity::Fatal, source_id: SRC }));
        w(&mut c, reg::COMMAND, 2, u32::from(cmd::SERR));
        assert!(hop_forward(&mut c, PCIE, &AerMessage { severity: MsgSeverity::Fatal, source_id: SRC }));
        assert_ne!(c.status() & status::SIG_SYSTEM_ERROR, 0);
    }

    #[test]
    fn hop_forward_stops_at_non_ports_and_non_express_functions() {
        let (mut c, _) = ep();
        enable_reporting(&mut c);
        assert!(!hop_forward(&mut c, PCIE, &AerMessage { severity: MsgSeverity::Correctable, source_id: SRC }));
        let mut plain = ConfigSpace::new(ConfigKind::Conventional);
        assert!(!hop_forward(&mut plain, PCIE, &AerMessage { severity: MsgSeverity::Correctable, source_id: SRC }));
    }

    fn root() -> (ConfigSpace, Aer) {
        let (mut c, a) = function(PortType::RootPort, AerConfig::default());
        enable_reporting(&mut c);
        w(&mut c, bridge::BRIDGE_CONTROL, 2, u32::from(bridge::CTL_SERR));
        (c, a)
    }

    fn msg(severity: MsgSeverity, source_id: u16) -> AerMessage {
        AerMessage { severity, source_id }
    }

    #[test]
    fn root_receive_correctable_latches_source_and_multiple() {
        let (mut c, mut a) = root();
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 0x0100));
        assert_eq!(rd(&c, off::ROOT_STATUS), root_sta::COR_RCV);
        assert_eq!(rd(&c, off::ERR_SRC), 0x0100);
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 0x0200));
        assert_eq!(rd(&c, off::ROOT_STATUS), root_sta::COR_RCV | root_sta::MULTI_COR_RCV);
        assert_eq!(rd(&c, off::ERR_SRC), 0x0100, "first source kept");
    }

    #[test]
    fn root_receive_uncorrectable_sets_first_fatal_and_multiple() {
        let (mut c, mut a) = root();
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 0x0308));
        assert_eq!(rd(&c, off::ROOT_STATUS), root_sta::UNCOR_RCV | root_sta::FIRST_FATAL | root_sta::FATAL_RCV);
        assert_eq!(rd(&c, off::ERR_SRC), 0x0308_0000);
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::NonFatal, 0x0400));
        assert_eq!(
            rd(&c, off::ROOT_STATUS),
            root_sta::UNCOR_RCV
                | root_sta::FIRST_FATAL
                | root_sta::FATAL_RCV
                | root_sta::NONFATAL_RCV
                | root_sta::MULTI_UNCOR_RCV
        );
        assert_eq!(rd(&c, off::ERR_SRC), 0x0308_0000);
        let (mut c, mut a) = root();
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::NonFatal, 0x0400));
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 0x0500));
        assert_eq!(rd(&c, off::ROOT_STATUS) & root_sta::FIRST_FATAL, 0, "first uncorrectable was non-fatal");
    }

    #[test]
    fn root_interrupt_only_on_enabled_rising_edge() {
        let (mut c, mut a) = root();
        let o = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 1));
        assert!(!o.irq, "Root Error Command off");
        w(&mut c, AER + off::ROOT_COMMAND, 4, root_cmd::MASK);
        let o = a.on_config_write(&mut c, AER + off::ROOT_COMMAND, 4);
        assert!(o.irq, "enabling an already-received class sends an MSI");
        assert_eq!(o.irq_level, Some(true));
        let o = a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 2));
        assert!(!o.irq, "condition already true");
        // Linux's aer_irq: W1C what it read.
        let st = rd(&c, off::ROOT_STATUS);
        w(&mut c, AER + off::ROOT_STATUS, 4, st);
        let o = a.on_config_write(&mut c, AER + off::ROOT_STATUS, 4);
        assert_eq!(o.irq_level, Some(false));
        assert!(!o.irq);
        let o = a.root_receive(&mut c, &msg(MsgSeverity::NonFatal, 3));
        assert!(o.irq);
    }

    #[test]
    fn root_interrupt_needs_the_matching_class_enable() {
        let (mut c, mut a) = root();
        w(&mut c, AER + off::ROOT_COMMAND, 4, root_cmd::FATAL_EN);
        let _ = a.on_config_write(&mut c, AER + off::ROOT_COMMAND, 4);
        assert!(!a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 1)).irq);
        assert!(!a.root_receive(&mut c, &msg(MsgSeverity::NonFatal, 1)).irq);
        assert!(a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 1)).irq);
    }

    #[test]
    fn root_status_imn_is_read_only_and_kept() {
        let (mut c, mut a) = root();
        a.set_root_interrupt_message_number(&mut c, 0x21);
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 1));
        w(&mut c, AER + off::ROOT_STATUS, 4, 0xffff_ffff);
        assert_eq!(rd(&c, off::ROOT_STATUS), 1 << root_sta::IMN_SHIFT);
        c.reset(ResetKind::Cold);
        assert_eq!(rd(&c, off::ROOT_STATUS), 1 << root_sta::IMN_SHIFT);
    }

    #[test]
    fn system_error_via_root_control_is_flagged_not_delivered() {
        let (mut c, mut a) = root();
        w(&mut c, PCIE + poff::RTCTL, 2, u32::from(rtctl::SEFEE));
        let o = a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 1));
        assert!(o.system_error);
        assert!(!o.irq);
        let o = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 1));
        assert!(!o.system_error, "SECEE off");
    }

    #[test]
    fn root_receive_on_a_non_root_does_nothing() {
        let (mut c, mut a) = function(PortType::DownstreamPort, AerConfig::default());
        let o = a.root_receive(&mut c, &msg(MsgSeverity::Fatal, 1));
        assert_eq!(o, RootOutcome::default());
        assert_eq!(rd(&c, off::ROOT_STATUS), 0);
    }

    #[test]
    fn error_propagates_endpoint_to_switch_to_root_port() {
        // endpoint 03:00.0 below DSP 02:00.0 below USP 01:00.0 below RP 00:1c.0
        let (mut e, mut ea) = ep();
        enable_reporting(&mut e);
        let mut hops: Vec<ConfigSpace> = [PortType::DownstreamPort, PortType::UpstreamPort]
            .into_iter()
            .map(|t| {
                let (mut c, _) = function(t, AerConfig::default());
                enable_reporting(&mut c);
                w(&mut c, bridge::BRIDGE_CONTROL, 2, u32::from(bridge::CTL_SERR));
                c
            })
            .collect();
        let (mut rp, mut ra) = root();
        w(&mut rp, AER + off::ROOT_COMMAND, 4, root_cmd::MASK);
        let _ = ra.on_config_write(&mut rp, AER + off::ROOT_COMMAND, 4);
        let out = ea.inject(&mut e, &AerErrorSpec::uncorrectable(uncor::MALF_TLP), SRC).expect("inject");
        let mut irq = false;
        for m in &out.messages {
            let mut passed = true;
            for h in hops.iter_mut() {
                if !hop_forward(h, PCIE, m) {
                    passed = false;
                    break;
                }
            }
            if passed && hop_forward(&mut rp, PCIE, m) {
                irq |= ra.root_receive(&mut rp, m).irq;
            }
        }
        assert!(irq);
        assert_eq!(rd(&rp, off::ERR_SRC) >> 16, u32::from(SRC));
        for h in &hops {
            assert_ne!(h.get_u16(bridge::SEC_STATUS) & bridge::SEC_STATUS_RCV_SERR, 0);
        }
        // A switch port with SERR forwarding off stops it.
        if let Some(first) = hops.first_mut() {
            w(first, bridge::BRIDGE_CONTROL, 2, 0);
            let m = AerMessage { severity: MsgSeverity::Fatal, source_id: SRC };
            assert!(!hop_forward(first, PCIE, &m));
        }
    }

    #[test]
    fn secondary_bus_reset_keeps_sticky_aer_state_and_clears_the_rest() {
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        enable_mhre(&mut c);
        w(&mut c, AER + off::UNCOR_MASK, 4, 0);
        let hdr = AerErrorSpec::uncorrectable(uncor::ECRC).with_header([7, 7, 7, 7]);
        let _ = a.inject(&mut c, &hdr, SRC).expect("a");
        let _ = a.inject(&mut c, &AerErrorSpec::uncorrectable(uncor::ACSV), SRC).expect("b");
        let _ = a.inject(&mut c, &AerErrorSpec::correctable(cor::RCVR), SRC).expect("c");
        for kind in [ResetKind::SecondaryBusReset, ResetKind::Flr, ResetKind::Hot, ResetKind::Warm] {
            let mut c2 = c.clone();
            let mut a2 = a.clone();
            c2.reset(kind);
            let _ = a2.reset(&mut c2, kind);
            assert_eq!(rd(&c2, off::UNCOR_STATUS), uncor::ECRC | uncor::ACSV, "{kind:?}");
            assert_eq!(rd(&c2, off::COR_STATUS), cor::RCVR);
            assert_eq!(rd(&c2, off::UNCOR_MASK), 0, "RWS kept");
            assert_eq!(rd(&c2, off::CAP) & (errcap::FEP | errcap::MHRE), 19 | errcap::MHRE);
            assert_eq!(rd(&c2, off::HEADER_LOG), 7);
            assert_eq!(a2.queued(), 1);
            assert_eq!(devsta(&c2), 0, "DevSta is not sticky");
            assert_eq!(c2.get_u16(PCIE + poff::DEVCTL) & devctl::ERR_ENABLES, 0, "DevCtl back to defaults");
        }
        c.reset(ResetKind::Cold);
        let _ = a.reset(&mut c, ResetKind::Cold);
        assert_eq!(rd(&c, off::UNCOR_STATUS), 0);
        assert_eq!(rd(&c, off::HEADER_LOG), 0);
        assert_eq!(rd(&c, off::UNCOR_MASK), uncor::MASK_DEFAULT);
        assert_eq!(a.queued(), 0);
    }

    #[test]
    fn root_reset_drops_root_command_and_the_interrupt_level() {
        let (mut c, mut a) = root();
        w(&mut c, AER + off::ROOT_COMMAND, 4, root_cmd::MASK);
        let _ = a.on_config_write(&mut c, AER + off::ROOT_COMMAND, 4);
        let _ = a.root_receive(&mut c, &msg(MsgSeverity::Correctable, 1));
        assert!(a.root_irq_level());
        c.reset(ResetKind::Hot);
        let o = a.reset(&mut c, ResetKind::Hot);
        assert_eq!(o.irq_level, Some(false));
        assert!(!o.irq);
        assert_eq!(rd(&c, off::ROOT_STATUS), root_sta::COR_RCV, "status is sticky");
        assert_eq!(rd(&c, off::ROOT_COMMAND), 0);
    }

    #[test]
    fn no_aer_error_names_the_function() {
        let c = ConfigSpace::new(ConfigKind::Express);
        assert_eq!(locate(&c, "nic0"), Err(AerInjectError::NotExpress { function: "nic0".into() }));
        let mut c = ConfigSpace::new(ConfigKind::Express);
        c.apply_table(0, &header_regs(&HeaderIds::default(), HeaderType::Type0, false, None)).expect("hdr");
        let mut s = CapChainBuilder::standard();
        s.add_at(PCIE, PcieCapConfig::new(PortType::Endpoint).cap_block().expect("pcie")).expect("add");
        s.install(&mut c).expect("std");
        let e = locate(&c, "nic0").expect_err("no aer");
        assert_eq!(e, AerInjectError::NoAer { function: "nic0".into() });
        assert_eq!(e.to_string(), "nic0: no AER capability (cannot inject PCIe errors)");
    }

    #[test]
    fn burst_of_100k_injections_keeps_memory_and_logs_bounded() {
        crate::logging::init_capture(log::LevelFilter::Warn);
        let (mut c, mut a) = ep();
        enable_reporting(&mut c);
        enable_mhre(&mut c);
        w(&mut c, AER + off::COR_MASK, 4, 0);
        let (mut rp, mut ra) = root();
        w(&mut rp, PCIE + poff::RTCTL, 2, u32::from(rtctl::SECEE | rtctl::SENFEE | rtctl::SEFEE));
        let kinds = [
            AerErrorSpec::uncorrectable(uncor::ECRC).with_header([1, 2, 3, 4]),
            AerErrorSpec::uncorrectable(uncor::MALF_TLP),
            AerErrorSpec::correctable(cor::BAD_TLP),
            AerErrorSpec::uncorrectable(uncor::UNX_COMP).advisory(),
        ];
        let mut messages = 0usize;
        let mut overflows = 0usize;
        for i in 0..100_000usize {
            let e = kinds[i % kinds.len()];
            let out = a.inject(&mut c, &e, SRC).expect("inject");
            assert!(out.messages.len() <= 2);
            overflows += out.overflows;
            for m in &out.messages {
                messages += 1;
                let _ = ra.root_receive(&mut rp, m);
            }
            assert!(a.queued() <= 8, "queue bounded by log_max");
        }
        assert_eq!(a.queued(), 8);
        assert!(overflows > 70_000, "3 of 4 kinds record a header: {overflows}");
        assert!(messages > 100_000);
        assert!(a.queue.capacity() <= 64, "no growth beyond the bound");
        let lines = crate::logging::captured();
        for marker in ["overflowed", "System Error requested"] {
            let n = lines.iter().filter(|l| l.contains(marker)).count();
            assert!(n <= 2 * crate::logging::BURST as usize + 2, "{marker}: {n} lines");
        }
    }

    #[test]
    fn random_guest_writes_and_injections_never_panic() {
        let (mut c, mut a) = root();
        let mut x: u64 = 0xfeed_face_dead_beef;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                let at = AER + (x >> 8) as u16 % AER_CAP_LEN;
                let size = [1u8, 2, 4][((x >> 20) % 3) as usize];
                let _ = c.write(at, size, (x >> 32) as u32);
                let _ = a.on_config_write(&mut c, at, size);
            } else {
                let bit = 1u32 << ((x >> 8) % 32);
                let e =
                    if x & 0x10000 != 0 { AerErrorSpec::correctable(bit) } else { AerErrorSpec::uncorrectable(bit) };
                if let Ok(out) = a.inject(&mut c, &e, (x >> 40) as u16) {
                    for m in &out.messages {
                        let _ = a.root_receive(&mut c, m);
                    }
                }
            }
            assert!(a.queued() <= 8);
            let level = rd(&c, off::ROOT_COMMAND) & status_to_cmd(rd(&c, off::ROOT_STATUS)) != 0;
            assert_eq!(a.root_irq_level(), level);
        }
    }
}
