//! Host error → guest error: which guest function, which AER status bits, and a Header Log that
//! speaks of guest addresses and IDs. Pure functions plus [`inject`], which runs on the loop
//! thread and feeds the board's ordinary AER injection (the same propagation as the operator's
//! `pcie_aer_inject_error`: device → ports → root port status, source ID, interrupt).
//!
//! # Status and severity
//! - Correctable host events: every set bit of `status` that the virtual AER capability
//!   supports becomes one correctable error (bits it does not model are counted as ignored).
//! - Uncorrectable host events (non-fatal or fatal): every supported bit becomes one
//!   uncorrectable error; the bit that owns the header log (the first bit in the kernel's
//!   `AER_LOG_TLP_MASKS`: Poisoned TLP, ECRC, UR, Completer Abort, Unexpected Completion,
//!   Malformed TLP) goes first and carries the rewritten header, so it becomes the guest's First
//!   Error Pointer. Fatal or non-fatal is **not** taken from the host: the guest's own
//!   Uncorrectable Error Severity register decides, and its mask registers gate the messages,
//!   exactly as for an operator injection. A host uncorrectable event with `status == 0` (older
//!   kernels trace a fatal endpoint error without reading its status) becomes Uncorrectable
//!   Internal Error.
//!
//! # Header Log rewrite ([`rewrite_header`]); DW*n* is a dword as read with a 32-bit config
//! read, so TLP byte 0 is its most significant byte.
//! - Requester / Completer IDs equal to the host function become the guest function's ID; any
//!   other host ID becomes 0000 (the root complex), so no host topology leaks into the guest.
//! - Memory (and I/O) requests the function *received* (requester is not the function): the
//!   address must fall inside one of the function's host BARs and becomes the same offset in the
//!   guest's BAR; the 3DW/4DW format follows the new address (4DW only above 4 GiB). Outside
//!   every BAR the header is dropped (the error is still injected, without a header).
//! - Memory requests the function *issued* (DMA): the address is already a guest-physical one
//!   (Xen's IOMMU translates it), so it is kept — except writes into the MSI window
//!   0xFEE00000-0xFEEFFFFF, which carry Xen's host MSI address: header dropped.
//! - Completions: Completer ID and Requester ID rewritten as above.
//! - Messages: Requester ID rewritten.
//! - Configuration requests: only dom0 (pciback, q35dm itself) issues them, so such errors are
//!   not forwarded at all ([`Translated::ConfigTlp`]).
//! - Anything else (TLP prefixes, reserved types): header dropped.

use thiserror::Error;

use crate::device::Effects;
use crate::machine::Machine;
use crate::pci::topology::NodeId;
use crate::pci::Sbdf;
use crate::pcie::aer::{cor, uncor, AerErrorSpec};

use super::record::HostAerEvent;

/// One memory (or I/O) BAR of a passed-through function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarWindow {
    /// BAR index (0-5; the lower index of a 64-bit pair).
    pub index: u8,
    /// Host physical base address (or host I/O port).
    pub host_base: u64,
    /// Length in bytes.
    pub len: u64,
    /// The guest's base, if the map knows it; `None`: read from the guest function's decoded
    /// BAR at injection time.
    pub guest_base: Option<u64>,
}

/// Where a host function appears in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestTarget {
    /// The guest function (its topology node).
    pub node: NodeId,
    /// Its BARs, for address rewriting.
    pub bars: Vec<BarWindow>,
}

/// A host reset that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// The map could not reset the host function.
    #[error("resetting host function {host}: {why}")]
    Reset {
        /// The host function.
        host: Sbdf,
        /// What went wrong.
        why: String,
    },
    /// The guest function cannot be addressed yet (its bus has no number).
    #[error("guest function {0} is not reachable (its bus has no number yet)")]
    NotReachable(NodeId),
    /// The board refused the injection.
    #[error("injecting into guest function {node}: {why}")]
    Inject {
        /// The guest function.
        node: NodeId,
        /// The board's error.
        why: String,
    },
}

/// Host function ↔ guest function, implemented by the passthrough code (one per device model,
/// i.e. per guest). Every method runs on the loop thread with the board at hand, so an
/// implementation can simply look at the board's passed-through functions; the inbox serialises
/// the calls.
pub trait HostFunctionMap: Send {
    /// The guest function a host function is given to in this guest, with its BARs; `None` if
    /// this guest does not have it.
    fn guest_target(&self, m: &Machine, host: Sbdf) -> Option<GuestTarget>;
    /// Every host function this guest has (for the ownership check before a host reset).
    fn host_functions(&self, m: &Machine) -> Vec<Sbdf>;
    /// The host function behind a guest function, if it is passed through.
    fn host_function_of(&self, m: &Machine, guest: NodeId) -> Option<Sbdf>;
    /// Resets the host function (pciback `do_flr`, else sysfs `reset`) and re-establishes what
    /// the reset undid (BAR mappings, MSI/MSI-X bindings). Called during the guest's Secondary
    /// Bus Reset / FLR that caused it (from [`Machine::apply`]), after the guest function's own
    /// reset, only if libxl says the host function belongs to this domain.
    fn reset_host_function(&mut self, m: &mut Machine, host: Sbdf) -> Result<(), TranslateError>;
}

/// A guest BAR window with its guest base resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedBar {
    /// Host base.
    pub host_base: u64,
    /// Length.
    pub len: u64,
    /// Guest base.
    pub guest_base: u64,
}

/// What became of a header log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translated {
    /// The rewritten header.
    Header([u32; 4]),
    /// No usable header (the error is injected without one); why.
    Dropped(&'static str),
    /// The TLP was a configuration request (issued by dom0): the error is not forwarded.
    ConfigTlp,
}

const MSI_WINDOW: std::ops::RangeInclusive<u64> = 0xfee0_0000..=0xfeef_ffff;

/// The kernel's `AER_LOG_TLP_MASKS`: errors whose header log is valid.
pub const LOG_TLP_MASKS: u32 =
    uncor::UNSUP | uncor::ECRC | uncor::MALF_TLP | uncor::UNX_COMP | uncor::COMP_ABORT | uncor::POISON_TLP;

fn with_id(word: u32, id: u16) -> u32 {
    (word & 0xffff) | (u32::from(id) << 16)
}

fn translate_addr(addr: u64, bars: &[ResolvedBar]) -> Option<u64> {
    bars.iter().find_map(|b| {
        let off = addr.checked_sub(b.host_base)?;
        (off < b.len).then(|| b.guest_base.checked_add(off)).flatten()
    })
}

/// Rewrites a host Header Log for the guest (see the module docs). `host_rid` / `guest_rid` are
/// the function's requester IDs on each side.
pub fn rewrite_header(h: [u32; 4], host_rid: u16, guest_rid: u16, bars: &[ResolvedBar]) -> Translated {
    let fmt = (h[0] >> 29) & 0x7;
    let ty = (h[0] >> 24) & 0x1f;
    if fmt & 0x4 != 0 {
        return Translated::Dropped("TLP prefix in the header log");
    }
    let four_dw = fmt & 0x1 != 0;
    let map_id = |id: u16| if id == host_rid { guest_rid } else { 0 };
    let requester = (h[1] >> 16) as u16;
    let mut out = h;
    match ty {
        // MRd, MRdLk, MWr, FetchAdd, Swap, CAS.
        0x00 | 0x01 | 0x0c | 0x0d | 0x0e => {
            out[1] = with_id(h[1], map_id(requester));
            let low = if four_dw { h[3] & 3 } else { h[2] & 3 };
            let addr = if four_dw { (u64::from(h[2]) << 32) | u64::from(h[3] & !3) } else { u64::from(h[2] & !3) };
            if requester == host_rid {
                if MSI_WINDOW.contains(&addr) {
                    return Translated::Dropped("MSI write (carries the host's MSI address)");
                }
                return Translated::Header(out);
            }
            let Some(g) = translate_addr(addr, bars) else {
                return Translated::Dropped("address outside the function's BARs");
            };
            if g <= u64::from(u32::MAX) {
                out[0] &= !(1 << 29);
                out[2] = (g as u32 & !3) | low;
                out[3] = if four_dw { 0 } else { h[3] };
            } else {
                out[0] |= 1 << 29;
                out[2] = (g >> 32) as u32;
                out[3] = (g as u32 & !3) | low;
            }
            Translated::Header(out)
        }
        // IO request.
        0x02 => {
            if requester == host_rid {
                return Translated::Dropped("I/O request issued by the function");
            }
            out[1] = with_id(h[1], map_id(requester));
            let addr = u64::from(h[2] & !3);
            match translate_addr(addr, bars).and_then(|g| u32::try_from(g).ok()) {
                Some(g) => {
                    out[2] = (g & !3) | (h[2] & 3);
                    Translated::Header(out)
                }
                None => Translated::Dropped("I/O address outside the function's BARs"),
            }
        }
        // CfgRd0/CfgWr0, CfgRd1/CfgWr1.
        0x04 | 0x05 => Translated::ConfigTlp,
        // Cpl/CplD, CplLk/CplDLk.
        0x0a | 0x0b => {
            out[1] = with_id(h[1], map_id(requester));
            out[2] = with_id(h[2], map_id((h[2] >> 16) as u16));
            Translated::Header(out)
        }
        // Msg/MsgD (routing in the low three bits).
        0x10..=0x17 => {
            out[1] = with_id(h[1], map_id(requester));
            Translated::Header(out)
        }
        _ => Translated::Dropped("unknown TLP type"),
    }
}

/// The errors to inject for a host event, in order, and the host status bits the virtual AER
/// capability does not model (dropped). `header` is the already rewritten header, if any.
pub fn error_specs(severity_uncorrectable: bool, status: u32, header: Option<[u32; 4]>) -> (Vec<AerErrorSpec>, u32) {
    if !severity_uncorrectable {
        let bits = status & cor::SUPPORTED;
        let specs = (0..32).map(|i| 1u32 << i).filter(|b| bits & b != 0).map(AerErrorSpec::correctable).collect();
        return (specs, status & !cor::SUPPORTED);
    }
    let mut bits = status & uncor::SUPPORTED;
    let ignored = status & !uncor::SUPPORTED;
    if status == 0 {
        bits = uncor::INTN;
    }
    let mut specs = Vec::new();
    let first_logged = (0..32).map(|i| 1u32 << i).find(|b| bits & b & LOG_TLP_MASKS != 0);
    if let Some(b) = first_logged {
        let mut s = AerErrorSpec::uncorrectable(b);
        if let Some(h) = header {
            s = s.with_header(h);
        }
        specs.push(s);
        bits &= !b;
    }
    specs.extend((0..32).map(|i| 1u32 << i).filter(|b| bits & b != 0).map(AerErrorSpec::uncorrectable));
    (specs, ignored)
}

/// What [`inject`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The guest function's address.
    pub guest: Sbdf,
    /// Errors injected.
    pub errors: usize,
    /// The header outcome (`None`: the host header was not valid).
    pub header: Option<Translated>,
    /// Host status bits dropped (not modelled).
    pub ignored_bits: u32,
    /// The board's report (QEMU's `pcie_aer_inject_error` text).
    pub report: String,
}

/// Injects `ev` into `target` on the board (loop thread). Config-request errors are skipped
/// (`Ok(None)`).
pub fn inject(
    m: &mut Machine,
    fx: &mut Effects,
    target: &GuestTarget,
    ev: &HostAerEvent,
) -> Result<Option<Injected>, TranslateError> {
    let guest = m.pci.sbdf_of(target.node).ok_or(TranslateError::NotReachable(target.node))?;
    let bars: Vec<ResolvedBar> = {
        let node = m.pci.node(target.node).ok_or(TranslateError::NotReachable(target.node))?;
        target
            .bars
            .iter()
            .filter_map(|w| {
                let guest_base =
                    w.guest_base.or_else(|| node.dev.function().bars().mapping(w.index).map(|b| b.addr))?;
                Some(ResolvedBar { host_base: w.host_base, len: w.len, guest_base })
            })
            .collect()
    };
    let header = ev.header.map(|h| rewrite_header(h, ev.host.bdf(), guest.bdf(), &bars));
    if header == Some(Translated::ConfigTlp) {
        return Ok(None);
    }
    let hdr = match header {
        Some(Translated::Header(h)) => Some(h),
        _ => None,
    };
    let (specs, ignored_bits) = error_specs(ev.severity.is_uncorrectable(), ev.status, hdr);
    if specs.is_empty() {
        return Ok(Some(Injected { guest, errors: 0, header, ignored_bits, report: String::new() }));
    }
    let report = m
        .aer_inject(target.node, &specs, fx)
        .map_err(|e| TranslateError::Inject { node: target.node, why: e.to_string() })?;
    Ok(Some(Injected { guest, errors: specs.len(), header, ignored_bits, report }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: u16 = 0x0300; // 03:00.0
    const GUEST: u16 = 0x0100; // 01:00.0
    const BARS: [ResolvedBar; 2] = [
        ResolvedBar { host_base: 0x38_0000_0000, len: 0x4000, guest_base: 0xfe00_0000 },
        ResolvedBar { host_base: 0xf000_0000, len: 0x1000, guest_base: 0x8_0000_0000 },
    ];

    #[test]
    fn cpu_write_to_a_64bit_bar_becomes_a_3dw_guest_write() {
        // MWr 4DW (fmt 011), requester 00:00.0 (host root complex), address 0x38_0000_0010.
        let h = [0x6000_0001, 0x0000_000f, 0x0000_0038, 0x0000_0010];
        let Translated::Header(g) = rewrite_header(h, HOST, GUEST, &BARS) else { panic!() };
        assert_eq!(g, [0x4000_0001, 0x0000_000f, 0xfe00_0010, 0]);
    }

    #[test]
    fn cpu_read_of_a_32bit_bar_mapped_high_becomes_4dw() {
        // MRd 3DW (fmt 000), requester 00:1c.0 (a host root port), address 0xf000_0100.
        let h = [0x0000_0001, 0x00e0_000f, 0xf000_0100, 0];
        let Translated::Header(g) = rewrite_header(h, HOST, GUEST, &BARS) else { panic!() };
        assert_eq!(g, [0x2000_0001, 0x0000_000f, 0x0000_0008, 0x0000_0100], "host IDs become 0000");
    }

    #[test]
    fn outside_bars_msi_config_and_prefixes() {
        let h = [0x0000_0001, 0x0000_000f, 0x1234_5678, 0];
        assert!(matches!(rewrite_header(h, HOST, GUEST, &BARS), Translated::Dropped(_)));
        // DMA by the function: address kept, requester rewritten.
        let dma = [0x4000_0001, 0x0300_000f, 0x1234_5678, 0];
        assert_eq!(
            rewrite_header(dma, HOST, GUEST, &BARS),
            Translated::Header([0x4000_0001, 0x0100_000f, 0x1234_5678, 0])
        );
        let msi = [0x4000_0001, 0x0300_000f, 0xfee0_1000, 0];
        assert!(matches!(rewrite_header(msi, HOST, GUEST, &BARS), Translated::Dropped(m) if m.contains("MSI")));
        let cfg = [0x0400_0001, 0x0000_000f, 0x0300_0010, 0];
        assert_eq!(rewrite_header(cfg, HOST, GUEST, &BARS), Translated::ConfigTlp);
        let pfx = [0x9000_0000, 0, 0, 0];
        assert!(matches!(rewrite_header(pfx, HOST, GUEST, &BARS), Translated::Dropped(_)));
    }

    #[test]
    fn completion_ids() {
        // CplD from 03:00.0 to requester 00:00.0.
        let h = [0x4a00_0001, 0x0300_0004, 0x0000_0100, 0];
        assert_eq!(
            rewrite_header(h, HOST, GUEST, &BARS),
            Translated::Header([0x4a00_0001, 0x0100_0004, 0x0000_0100, 0])
        );
    }

    #[test]
    fn specs_order_and_unknown_bits() {
        let (s, ign) = error_specs(true, uncor::COMP_TIME | uncor::POISON_TLP | 1, Some([1, 2, 3, 4]));
        assert_eq!(ign, 1, "bit 0 (Undefined) is not modelled");
        assert_eq!(s[0], AerErrorSpec::uncorrectable(uncor::POISON_TLP).with_header([1, 2, 3, 4]));
        assert_eq!(s[1], AerErrorSpec::uncorrectable(uncor::COMP_TIME));
        let (s, _) = error_specs(true, 0, None);
        assert_eq!(s, vec![AerErrorSpec::uncorrectable(uncor::INTN)]);
        let (s, ign) = error_specs(false, cor::BAD_TLP | cor::RCVR | (1 << 20), None);
        assert_eq!(s, vec![AerErrorSpec::correctable(cor::RCVR), AerErrorSpec::correctable(cor::BAD_TLP)]);
        assert_eq!(ign, 1 << 20);
    }
}
