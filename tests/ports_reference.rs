//! Referee for the PCIe root and switch ports: the same HMP script on QEMU 7.2 and on q35dm, on
//! the same topology, compared step by step. Every difference must match an entry of
//! tests/reference/ports.allow (label glob, TAB, reason); unused entries fail too.
//!
//! Topology (bus numbers as the script programs them, firmware style):
//!
//! | id | QEMU 7.2 | q35dm | address |
//! |---|---|---|---|
//! | rp1 | pcie-root-port, chassis 1 slot 1 | q35dm-root-port | 00:1c.0 → bus 1-3 |
//! | up1 | x3130-upstream | q35dm-upstream-port | 01:00.0 → bus 2-3 |
//! | dp1 | xio3130-downstream, chassis 1 slot 2 | q35dm-downstream-port | 02:00.0 → bus 3 |
//! | rp2 | pcie-root-port, chassis 1 slot 3 | q35dm-root-port (`power-controller=on` in hp-root-pcp) | 00:1d.0 → bus 4 |
//! | ep1/ep2 | virtio-rng-pci,aer=on | q35dm-test-endpoint | 03:00.0 / 04:00.0 |
//!
//! Scenarios (one test each, each with its own QEMU and q35dm, so one known bug does not hide
//! the others; every label starts with the scenario name and each test checks the allow-list
//! entries of its own scenario for use):
//! - `regs`: every port register at reset, by capability-relative name, and the write masks of
//!   the legacy-space control registers;
//! - `hp-root`, `hp-switch`: a hot-plug round trip through rp2 / dp1 as Linux pciehp drives it
//!   (both sides' default slots: QEMU with a power controller, q35dm without); `hp-root-pcp`:
//!   the same through rp2 with a power controller on both sides;
//! - `aer`: errors injected into ep1 (and rp1, up1), with what Linux enables, read back along
//!   ep1 → dp1 → up1 → rp1; the injection syntax and refusals (reply class only).
//!
//! Choices:
//! - QEMU runs with `-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`: QEMU 7.2's q35
//!   default is ACPI PCI hot-plug, under which the slots never raise native events and
//!   `device_del` waits for an ACPI eject; q35dm (Xen HVM, no ACPI hot-plug) is native only.
//! - The emulated guest follows each side's own Slot Capabilities (it writes PCC only where a
//!   power controller exists), as pciehp does, so both sides run the same labelled steps.
//! - QEMU's endpoint is `virtio-rng-pci,aer=on`: QEMU 7.2's e1000e has AER but a read-only
//!   DevCtl (no error reporting enables), so it never sends a message.
//! - Registers are read through ECAM (`xp`, PCIEXBAR at 0xb0000000) and written through
//!   0xcf8/0xcfc. Neither HMP can write guest-physical memory, so extended config space (AER,
//!   including Root Error Command) is read-only here: the AER status registers are compared;
//!   the root interrupt is covered in-process by tests/pcie_hotplug.rs.
//! - Neither monitor shows a port's MSI, so [`q35dm_port_interrupts_fire_for_linux_pciehp`]
//!   drives q35dm in-process (real engine, simulated hypervisor) through the same round trip
//!   with pciehp's real enables and counts the MSIs.
//! - Capabilities are found by walking the chains on each side; values are labelled by
//!   capability-relative names (`rp1 exp SltCap.PCP`), so layout differences do not cascade.
//!   Slot, link, status and AER status registers are split into named fields, so an allowed
//!   difference in one bit does not hide a change in another.
//! - `PORTS_REFERENCE_DUMP=1` prints both transcripts side by side (with `--nocapture`).

#[path = "support/board.rs"]
mod board;
#[path = "support/qmp_client.rs"]
mod qmp_client;
#[path = "support/reference.rs"]
mod reference;

use std::path::Path;

use qmp_client::*;
use reference::*;

const ECAM: u64 = 0xb000_0000;

/// QEMU 7.2 command line (after `-M q35 -accel tcg -S -nodefaults`).
const QEMU_TOPOLOGY: &[&str] = &[
    "-global",
    "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
    "-device",
    "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0",
    "-device",
    "x3130-upstream,id=up1,bus=rp1",
    "-device",
    "xio3130-downstream,id=dp1,bus=up1,chassis=1,slot=2",
    "-device",
    "pcie-root-port,id=rp2,chassis=1,slot=3,bus=pcie.0,addr=1d.0",
];

/// q35dm command line (QEMU-style `-device`s after the native options `start_q35dm` puts first).
const Q35DM_TOPOLOGY: &[&str] = &[
    "-device",
    "q35dm-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0",
    "-device",
    "q35dm-upstream-port,id=up1,bus=rp1",
    "-device",
    "q35dm-downstream-port,id=dp1,bus=up1,chassis=1,slot=2",
    "-device",
    "q35dm-root-port,id=rp2,chassis=1,slot=3,bus=pcie.0,addr=1d.0",
];

/// The endpoint driver of each side (both PCI Express endpoints with AER at 0x100).
const QEMU_ENDPOINT: &str = "virtio-rng-pci,aer=on";
const Q35DM_ENDPOINT: &str = "q35dm-test-endpoint";

#[derive(Clone, Copy)]
struct Func {
    name: &'static str,
    /// bus << 8 | devfn, as programmed by [`program_buses`].
    bdf: u32,
}

const RP1: Func = Func { name: "rp1", bdf: 0x00e0 };
const UP1: Func = Func { name: "up1", bdf: 0x0100 };
const DP1: Func = Func { name: "dp1", bdf: 0x0200 };
const EP1: Func = Func { name: "ep1", bdf: 0x0300 };
const RP2: Func = Func { name: "rp2", bdf: 0x00e8 };
const EP2: Func = Func { name: "ep2", bdf: 0x0400 };
const PORTS: [Func; 4] = [RP1, UP1, DP1, RP2];

// ------------------------------------------------------------------------------------------
// Register field tables: (name, first bit, width).

type Fields = &'static [(&'static str, u32, u32)];

const EXP_CAPS: Fields = &[("Ver", 0, 4), ("Type", 4, 4), ("Slot", 8, 1), ("IMN", 9, 5), ("Rsvd", 14, 2)];
const DEVCAP: Fields = &[
    ("MPSS", 0, 3),
    ("PhantFn", 3, 2),
    ("ExtTag", 5, 1),
    ("L0sLat", 6, 3),
    ("L1Lat", 9, 3),
    ("RBER", 15, 1),
    ("SPLV", 18, 8),
    ("SPLS", 26, 2),
    ("FLR", 28, 1),
    ("Other", 12, 3),
];
const DEVCTL: Fields = &[
    ("CERE", 0, 1),
    ("NFERE", 1, 1),
    ("FERE", 2, 1),
    ("URRE", 3, 1),
    ("RlxdOrd", 4, 1),
    ("MPS", 5, 3),
    ("ExtTag", 8, 1),
    ("PhantFn", 9, 1),
    ("AuxPwr", 10, 1),
    ("NoSnoop", 11, 1),
    ("MRRS", 12, 3),
    ("BCRE", 15, 1),
];
const DEVSTA: Fields = &[("CED", 0, 1), ("NFED", 1, 1), ("FED", 2, 1), ("URD", 3, 1), ("AuxPD", 4, 1), ("TrPnd", 5, 1)];
const LNKCAP: Fields = &[
    ("SLS", 0, 4),
    ("MLW", 4, 6),
    ("ASPMS", 10, 2),
    ("L0sExit", 12, 3),
    ("L1Exit", 15, 3),
    ("ClkPM", 18, 1),
    ("SDERC", 19, 1),
    ("DLLLARC", 20, 1),
    ("LBNC", 21, 1),
    ("ASPMOC", 22, 1),
    ("PortNum", 24, 8),
];
const LNKCTL: Fields = &[
    ("ASPMC", 0, 2),
    ("RCB", 3, 1),
    ("LD", 4, 1),
    ("RL", 5, 1),
    ("CCC", 6, 1),
    ("ES", 7, 1),
    ("ECPM", 8, 1),
    ("HAWD", 9, 1),
    ("LBMIE", 10, 1),
    ("LABIE", 11, 1),
];
const LNKSTA: Fields =
    &[("CLS", 0, 4), ("NLW", 4, 6), ("LT", 11, 1), ("SLC", 12, 1), ("DLLLA", 13, 1), ("LBMS", 14, 1), ("LABS", 15, 1)];
const SLTCAP: Fields = &[
    ("ABP", 0, 1),
    ("PCP", 1, 1),
    ("MRLSP", 2, 1),
    ("AIP", 3, 1),
    ("PIP", 4, 1),
    ("HPS", 5, 1),
    ("HPC", 6, 1),
    ("SPLV", 7, 8),
    ("SPLS", 15, 2),
    ("EIP", 17, 1),
    ("NCCS", 18, 1),
    ("PSN", 19, 13),
];
const SLTCTL: Fields = &[
    ("ABPE", 0, 1),
    ("PFDE", 1, 1),
    ("MRLSCE", 2, 1),
    ("PDCE", 3, 1),
    ("CCIE", 4, 1),
    ("HPIE", 5, 1),
    ("AIC", 6, 2),
    ("PIC", 8, 2),
    ("PCC", 10, 1),
    ("EIC", 11, 1),
    ("DLLSCE", 12, 1),
];
const SLTSTA: Fields = &[
    ("ABP", 0, 1),
    ("PFD", 1, 1),
    ("MRLSC", 2, 1),
    ("PDC", 3, 1),
    ("CC", 4, 1),
    ("MRLSS", 5, 1),
    ("PDS", 6, 1),
    ("EIS", 7, 1),
    ("DLLSC", 8, 1),
];
const ROOTCTL: Fields = &[("SECEE", 0, 1), ("SENFEE", 1, 1), ("SEFEE", 2, 1), ("PMEIE", 3, 1), ("CRSSVE", 4, 1)];
const DEVCAP2: Fields = &[
    ("CTRanges", 0, 4),
    ("CTDis", 4, 1),
    ("ARIFwd", 5, 1),
    ("Atomic", 6, 4),
    ("LTR", 11, 1),
    ("TPH", 12, 2),
    ("OBFF", 18, 2),
    ("EFF", 20, 1),
    ("EETLPP", 21, 1),
    ("MaxEETLPP", 22, 2),
];
const DEVCTL2: Fields = &[("CTV", 0, 4), ("CTD", 4, 1), ("ARIFwd", 5, 1), ("Other", 6, 9), ("EETLPPB", 15, 1)];
const LNKCAP2: Fields = &[("SLSV", 1, 7), ("Crosslink", 8, 1)];
const LNKCTL2: Fields = &[("TLS", 0, 4), ("Other", 4, 12)];
const MSICTL: Fields = &[("En", 0, 1), ("MMC", 1, 3), ("MME", 4, 3), ("A64", 7, 1), ("PVM", 8, 1)];
const MSIXCTL: Fields = &[("TS", 0, 11), ("FM", 14, 1), ("En", 15, 1)];
const AERCTL: Fields = &[
    ("FEP", 0, 5),
    ("ECRCGC", 5, 1),
    ("ECRCGE", 6, 1),
    ("ECRCCC", 7, 1),
    ("ECRCCE", 8, 1),
    ("MHRC", 9, 1),
    ("MHRE", 10, 1),
    ("TLPPLP", 11, 1),
];
const ROOTERRSTA: Fields = &[
    ("COR", 0, 1),
    ("MultiCOR", 1, 1),
    ("UNCOR", 2, 1),
    ("MultiUNCOR", 3, 1),
    ("FirstFatal", 4, 1),
    ("NonFatalRcv", 5, 1),
    ("FatalRcv", 6, 1),
    ("IMN", 27, 5),
];
const ERRSRC: Fields = &[("COR", 0, 16), ("UNCOR", 16, 16)];

/// Uncorrectable error bits (AER +0x04/+0x08/+0x0c).
const UNCOR: Fields = &[
    ("DLP", 4, 1),
    ("SDN", 5, 1),
    ("POISON", 12, 1),
    ("FCP", 13, 1),
    ("CmpTO", 14, 1),
    ("CmpAbrt", 15, 1),
    ("UnxCmp", 16, 1),
    ("RxOF", 17, 1),
    ("MalfTLP", 18, 1),
    ("ECRC", 19, 1),
    ("UnsupReq", 20, 1),
    ("ACSViol", 21, 1),
    ("UncorrIntErr", 22, 1),
    ("MCBlkdTLP", 23, 1),
    ("AtomicOpBlk", 24, 1),
    ("TLPBlkdErr", 25, 1),
    ("Other", 26, 6),
];
/// Correctable error bits (AER +0x10/+0x14).
const COR: Fields = &[
    ("RxErr", 0, 1),
    ("BadTLP", 6, 1),
    ("BadDLLP", 7, 1),
    ("Rollover", 8, 1),
    ("Timeout", 12, 1),
    ("AdvNonFatalErr", 13, 1),
    ("CorrIntErr", 14, 1),
    ("HeaderOF", 15, 1),
];

// PCI Express capability register offsets and Slot Control / Status bits.
const EXP_DEVCTL: u32 = 0x08;
const EXP_DEVSTA: u32 = 0x0a;
const EXP_LNKCTL: u32 = 0x10;
const EXP_LNKSTA: u32 = 0x12;
const EXP_SLTCAP: u32 = 0x14;
const EXP_SLTCTL: u32 = 0x18;
const EXP_SLTSTA: u32 = 0x1a;
const EXP_ROOTCTL: u32 = 0x1c;
const EXP_DEVCTL2: u32 = 0x28;
const EXP_LNKCTL2: u32 = 0x30;
const SLTCAP_PCP: u64 = 1 << 1;
const SLTCTL_ABPE: u64 = 1 << 0;
const SLTCTL_PDCE: u64 = 1 << 3;
const SLTCTL_CCIE: u64 = 1 << 4;
const SLTCTL_HPIE: u64 = 1 << 5;
const SLTCTL_AIC: u64 = 3 << 6;
const SLTCTL_AIC_OFF: u64 = 3 << 6;
const SLTCTL_PIC: u64 = 3 << 8;
const SLTCTL_PIC_ON: u64 = 1 << 8;
const SLTCTL_PIC_BLINK: u64 = 2 << 8;
const SLTCTL_PIC_OFF: u64 = 3 << 8;
const SLTCTL_PCC: u64 = 1 << 10;
const SLTCTL_EIC: u64 = 1 << 11;
const SLTCTL_DLLSCE: u64 = 1 << 12;
/// pciehp's notification-enable mask (PDCE|ABPE|PFDE|HPIE|CCIE|DLLSCE).
const SLTCTL_ENABLES: u64 = 0x103f;
/// The RW1C events pciehp handles (ABP|PFD|MRLSC|PDC|CC|DLLSC).
const SLTSTA_EVENTS: u64 = 0x11f;

// ------------------------------------------------------------------------------------------
// One side's session: HMP access, capability lookup, labelled recording.

/// Capability offsets of one function on one side.
#[derive(Default, Clone, Copy)]
struct Caps {
    exp: Option<u32>,
    msi: Option<u32>,
    msix: Option<u32>,
    aer: Option<u32>,
}

struct Session<'a> {
    h: &'a mut dyn Hmp,
    t: Transcript,
    scenario: &'static str,
    step: String,
}

fn hex_value(out: &str) -> Option<u64> {
    let v = out.lines().next()?.split_once(": ")?.1.split_whitespace().next()?;
    u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()
}

impl<'a> Session<'a> {
    fn new(h: &'a mut dyn Hmp, scenario: &'static str) -> Self {
        Self { h, t: Transcript::default(), scenario, step: String::new() }
    }

    fn step(&mut self, s: impl Into<String>) {
        self.step = s.into();
    }

    fn hmp(&mut self, line: &str) -> String {
        self.h.hmp(line)
    }

    fn rec(&mut self, what: impl std::fmt::Display, value: impl Into<String>) {
        let label = if self.step.is_empty() {
            format!("{} {what}", self.scenario)
        } else {
            format!("{} {}: {what}", self.scenario, self.step)
        };
        self.t.record(label, value.into());
    }

    /// Config read through ECAM (all-ones if nothing answers).
    fn read(&mut self, bdf: u32, off: u32, size: u8) -> u64 {
        let unit = match size {
            1 => 'b',
            2 => 'h',
            _ => 'w',
        };
        let out = self.hmp(&format!("xp /1{unit}x 0x{:x}", ECAM + (u64::from(bdf) << 12) + u64::from(off)));
        hex_value(&out).unwrap_or_else(|| panic!("xp of {bdf:04x}+{off:#x}: {out:?}"))
    }

    /// Config write through 0xcf8/0xcfc (0x00-0xff only).
    fn write(&mut self, bdf: u32, off: u32, size: u8, val: u64) {
        assert!(off < 0x100, "0xcf8/0xcfc reaches only the first 256 bytes");
        self.hmp(&format!("o /w 0xcf8 0x{:x}", 0x8000_0000 | bdf << 8 | (off & 0xfc)));
        let unit = match size {
            1 => 'b',
            2 => 'h',
            _ => 'w',
        };
        self.hmp(&format!("o /{unit} 0x{:x} 0x{val:x}", 0xcfc + (off & 3)));
    }

    /// Read-modify-write of `mask` bits (as Linux `pcie_capability_clear_and_set_word`).
    fn rmw(&mut self, bdf: u32, off: u32, size: u8, mask: u64, val: u64) {
        let old = self.read(bdf, off, size);
        self.write(bdf, off, size, (old & !mask) | (val & mask));
    }

    /// Records `v` as hex, labelled `{f} {what}`.
    fn raw(&mut self, f: Func, what: &str, v: u64, size: u8) {
        let w = usize::from(size) * 2;
        self.rec(format_args!("{} {what}", f.name), format!("{v:#0width$x}", width = w + 2));
    }

    /// Records every field of `v`, labelled `{f} {what}.{field}`.
    fn fields(&mut self, f: Func, what: &str, v: u64, fields: Fields) {
        for (name, lo, width) in fields {
            let x = (v >> lo) & ((1u64 << width) - 1);
            self.rec(format_args!("{} {what}.{name}", f.name), format!("{x:#x}"));
        }
    }

    /// Walks the standard and extended capability chains of `f`; records the lists.
    fn caps(&mut self, f: Func, record: bool) -> Caps {
        let mut c = Caps::default();
        let mut names = Vec::new();
        let mut p = self.read(f.bdf, 0x34, 1) as u32 & 0xfc;
        for _ in 0..48 {
            if p == 0 {
                break;
            }
            let hdr = self.read(f.bdf, p, 2);
            let name = match hdr & 0xff {
                0x01 => "PM".to_string(),
                0x05 => {
                    c.msi = Some(p);
                    "MSI".into()
                }
                0x09 => "VNDR".into(),
                0x0d => "SSVID".into(),
                0x10 => {
                    c.exp = Some(p);
                    "EXP".into()
                }
                0x11 => {
                    c.msix = Some(p);
                    "MSI-X".into()
                }
                id => format!("{id:#04x}"),
            };
            names.push(name);
            p = (hdr >> 8) as u32 & 0xfc;
        }
        let mut ext = Vec::new();
        let mut p = 0x100u32;
        for _ in 0..64 {
            let hdr = self.read(f.bdf, p, 4);
            if hdr == 0 || hdr == 0xffff_ffff {
                break;
            }
            let name = match hdr & 0xffff {
                0x0001 => {
                    c.aer = Some(p);
                    "AER".to_string()
                }
                0x0003 => "DSN".into(),
                0x000d => "ACS".into(),
                0x000e => "ARI".into(),
                id => format!("{id:#06x}"),
            };
            ext.push(format!("{name}v{}", (hdr >> 16) & 0xf));
            p = (hdr >> 20) as u32 & 0xffc;
            if p < 0x100 {
                break;
            }
        }
        if record {
            self.rec(format_args!("{} caps", f.name), names.join(" "));
            self.rec(format_args!("{} ext caps", f.name), ext.join(" "));
        }
        c
    }

    /// Reads a register of capability `at` (if present) and records it as fields (or raw).
    fn cap_reg(&mut self, f: Func, at: Option<u32>, what: &str, rel: u32, size: u8, fields: Option<Fields>) -> u64 {
        let Some(base) = at else {
            match fields {
                Some(fl) => {
                    for (name, _, _) in fl {
                        self.rec(format_args!("{} {what}.{name}", f.name), "absent");
                    }
                }
                None => self.rec(format_args!("{} {what}", f.name), "absent"),
            }
            return 0;
        };
        let v = self.read(f.bdf, base + rel, size);
        match fields {
            Some(fl) => self.fields(f, what, v, fl),
            None => self.raw(f, what, v, size),
        }
        v
    }

    fn exp(&mut self, f: Func, c: Caps, reg: &str, rel: u32, size: u8, fields: Option<Fields>) -> u64 {
        self.cap_reg(f, c.exp, &format!("exp {reg}"), rel, size, fields)
    }

    /// Slot Control, Slot Status, and the port's Interrupt Status (the INTx level of the
    /// hot-plug interrupt when MSI is off).
    fn slot_state(&mut self, f: Func, c: Caps) -> (u64, u64) {
        let ctl = self.exp(f, c, "SltCtl", EXP_SLTCTL, 2, Some(SLTCTL));
        let sta = self.exp(f, c, "SltSta", EXP_SLTSTA, 2, Some(SLTSTA));
        let status = self.read(f.bdf, 0x06, 2);
        self.fields(f, "hdr Status", status, &[("INTx", 3, 1)]);
        (ctl, sta)
    }

    /// pciehp's interrupt handler: read Slot Status and write the events back (W1C).
    fn ack_slot(&mut self, f: Func, c: Caps) {
        let exp = c.exp.expect("port has a PCIe capability");
        let sta = self.read(f.bdf, exp + EXP_SLTSTA, 2) & SLTSTA_EVENTS;
        if sta != 0 {
            self.write(f.bdf, exp + EXP_SLTSTA, 2, sta);
        }
        self.exp(f, c, "SltSta after W1C", EXP_SLTSTA, 2, Some(SLTSTA));
    }

    /// One Slot Control command: read-modify-write, then record Control/Status and acknowledge
    /// Command Completed (and anything else pending) as pciehp does.
    /// Without `issue`, only the same registers are read (the step exists on both sides).
    fn slot_cmd(&mut self, f: Func, c: Caps, mask: u64, val: u64, issue: bool) {
        let exp = c.exp.expect("port has a PCIe capability");
        if issue {
            self.rmw(f.bdf, exp + EXP_SLTCTL, 2, mask, val);
        }
        self.slot_state(f, c);
        self.ack_slot(f, c);
    }

    /// Whether config reads of the card's function 0 answer.
    fn card(&mut self, card: Func) {
        let v = self.read(card.bdf, 0, 4);
        self.rec(format_args!("{} answers", card.name), if v == 0xffff_ffff { "no" } else { "yes" });
    }

    fn info_pci_lists(&mut self, card: Func) {
        let out = self.hmp("info pci");
        let listed = out.contains(&format!("id \"{}\"", card.name));
        self.rec(format_args!("info pci lists {}", card.name), if listed { "yes" } else { "no" });
    }

    /// Classifies a monitor reply: the two monitors word things differently.
    fn reply(&mut self, what: &str, out: &str) {
        let o = out.trim().to_ascii_lowercase();
        let class = if o.is_empty() {
            "ok (silent)"
        } else if o.starts_with("ok id:") {
            "ok (injected)"
        } else if o.contains("not found") || o.contains("no pci device") || o.contains("invalid or device not found") {
            "error: no such device"
        } else if o.contains("locked") || o.contains("interlock") {
            "error: interlock engaged"
        } else if o.contains("already in the process") || o.contains("already requested") || o.contains("busy") {
            "error: removal in progress"
        } else if o.contains("doesn't support pci express") || o.contains("no aer") || o.contains("advanced error") {
            "error: no AER"
        } else if o.contains("invalid error status") || o.contains("invalid argument") || o.contains("not supported") {
            "error: bad error status"
        } else {
            "error: other"
        };
        self.rec(format_args!("{what} reply"), class);
        eprintln!("[{}] {what}: {}", self.scenario, out.trim());
    }
}

/// Enables ECAM and programs the bus numbers through type-1 config cycles (0xcf8/0xcfc), as
/// firmware does.
fn program_buses(s: &mut Session) {
    s.write(0, 0x60, 4, 0xb000_0001); // PCIEXBAR: 256 MiB at 0xb0000000, enabled
    s.write(RP1.bdf, 0x18, 4, 0x03_01_00);
    s.write(RP2.bdf, 0x18, 4, 0x04_04_00);
    s.write(UP1.bdf, 0x18, 4, 0x03_02_01);
    s.write(DP1.bdf, 0x18, 4, 0x03_03_02);
}

// ------------------------------------------------------------------------------------------
// Scenario 1: every port register at reset, and the write masks of the legacy-space ones.

fn port_registers(s: &mut Session, f: Func) {
    let c = s.caps(f, true);
    for (name, off, size) in [
        ("VendorDevice", 0x00, 4),
        ("Command", 0x04, 2),
        ("Status", 0x06, 2),
        ("Revision", 0x08, 1),
        ("Class", 0x09, 3),
        ("HeaderType", 0x0e, 1),
        ("BAR0", 0x10, 4),
        ("BAR1", 0x14, 4),
        ("BusNumbers", 0x18, 4),
        ("IoBaseLimit", 0x1c, 2),
        ("SecStatus", 0x1e, 2),
        ("MemBaseLimit", 0x20, 4),
        ("PrefBaseLimit", 0x24, 4),
        ("PrefBaseUpper", 0x28, 4),
        ("PrefLimitUpper", 0x2c, 4),
        ("IoUpper", 0x30, 4),
        ("ExpRom", 0x38, 4),
        ("IntLine", 0x3c, 1),
        ("IntPin", 0x3d, 1),
        ("BridgeCtl", 0x3e, 2),
    ] {
        let v = s.read(f.bdf, off, size.min(4));
        let v = if size == 3 { s.read(f.bdf, 0x08, 4) >> 8 } else { v };
        s.raw(f, &format!("hdr {name}"), v, size);
    }
    s.exp(f, c, "Caps", 0x02, 2, Some(EXP_CAPS));
    s.exp(f, c, "DevCap", 0x04, 4, Some(DEVCAP));
    s.exp(f, c, "DevCtl", EXP_DEVCTL, 2, Some(DEVCTL));
    s.exp(f, c, "DevSta", EXP_DEVSTA, 2, Some(DEVSTA));
    s.exp(f, c, "LnkCap", 0x0c, 4, Some(LNKCAP));
    s.exp(f, c, "LnkCtl", EXP_LNKCTL, 2, Some(LNKCTL));
    s.exp(f, c, "LnkSta", EXP_LNKSTA, 2, Some(LNKSTA));
    if f.name != "up1" {
        s.exp(f, c, "SltCap", EXP_SLTCAP, 4, Some(SLTCAP));
        s.slot_state(f, c);
    }
    if f.name.starts_with("rp") {
        s.exp(f, c, "RootCtl", EXP_ROOTCTL, 2, Some(ROOTCTL));
        s.exp(f, c, "RootCap", 0x1e, 2, None);
        s.exp(f, c, "RootSta", 0x20, 4, None);
    }
    s.exp(f, c, "DevCap2", 0x24, 4, Some(DEVCAP2));
    s.exp(f, c, "DevCtl2", EXP_DEVCTL2, 2, Some(DEVCTL2));
    s.exp(f, c, "DevSta2", 0x2a, 2, None);
    s.exp(f, c, "LnkCap2", 0x2c, 4, Some(LNKCAP2));
    s.exp(f, c, "LnkCtl2", EXP_LNKCTL2, 2, Some(LNKCTL2));
    s.exp(f, c, "LnkSta2", 0x32, 2, None);
    s.exp(f, c, "SltCap2", 0x34, 4, None);
    s.exp(f, c, "SltCtl2", 0x38, 2, None);
    s.exp(f, c, "SltSta2", 0x3a, 2, None);
    s.cap_reg(f, c.msi, "msi MsgCtl", 2, 2, Some(MSICTL));
    s.cap_reg(f, c.msix, "msix MsgCtl", 2, 2, Some(MSIXCTL));
    aer_registers(s, f, c, f.name.starts_with("rp"), true);
}

/// The AER capability of `f`: status, masks, severity, control, header log, root registers.
fn aer_registers(s: &mut Session, f: Func, c: Caps, root: bool, all: bool) {
    let Some(aer) = c.aer else {
        s.rec(format_args!("{} aer", f.name), "absent");
        return;
    };
    let reg = |s: &mut Session, name: &str, rel: u32, fl: Option<Fields>| -> u64 {
        let v = s.read(f.bdf, aer + rel, 4);
        match fl {
            Some(fl) => s.fields(f, &format!("aer {name}"), v, fl),
            None => s.raw(f, &format!("aer {name}"), v, 4),
        }
        v
    };
    reg(s, "UncorSta", 0x04, Some(UNCOR));
    if all {
        reg(s, "UncorMask", 0x08, Some(UNCOR));
        reg(s, "UncorSev", 0x0c, Some(UNCOR));
    }
    reg(s, "CorSta", 0x10, Some(COR));
    if all {
        reg(s, "CorMask", 0x14, Some(COR));
    }
    reg(s, "CapCtl", 0x18, Some(AERCTL));
    for i in 0..4 {
        reg(s, &format!("HdrLog{i}"), 0x1c + 4 * i, None);
    }
    if root {
        reg(s, "RootErrCmd", 0x2c, None);
        reg(s, "RootErrSta", 0x30, Some(ROOTERRSTA));
        reg(s, "ErrSrcId", 0x34, Some(ERRSRC));
    }
}

/// Writes all-ones (`ones`) and zeros to a legacy-space register and reads back, then restores.
fn probe_mask(s: &mut Session, f: Func, what: &str, off: u32, size: u8, ones: u64) {
    let orig = s.read(f.bdf, off, size);
    s.write(f.bdf, off, size, ones);
    let v = s.read(f.bdf, off, size);
    s.raw(f, &format!("mask {what} ones"), v, size);
    s.write(f.bdf, off, size, 0);
    let v = s.read(f.bdf, off, size);
    s.raw(f, &format!("mask {what} zeros"), v, size);
    s.write(f.bdf, off, size, orig);
    let v = s.read(f.bdf, off, size);
    s.raw(f, &format!("mask {what} restored"), v, size);
}

fn regs_script(h: &mut dyn Hmp) -> Transcript {
    let mut s = Session::new(h, "regs");
    program_buses(&mut s);
    for f in PORTS {
        port_registers(&mut s, f);
    }
    s.step("masks");
    for f in PORTS {
        let c = s.caps(f, false);
        let exp = c.exp.unwrap_or_else(|| panic!("{}: no PCIe capability: {:x}", f.name, s.read(f.bdf, 0, 4)));
        probe_mask(&mut s, f, "hdr Command", 0x04, 2, 0xffff);
        probe_mask(&mut s, f, "hdr IoBaseLimit", 0x1c, 2, 0xffff);
        probe_mask(&mut s, f, "hdr MemBaseLimit", 0x20, 4, 0xffff_ffff);
        probe_mask(&mut s, f, "hdr PrefBaseLimit", 0x24, 4, 0xffff_ffff);
        probe_mask(&mut s, f, "hdr PrefBaseUpper", 0x28, 4, 0xffff_ffff);
        probe_mask(&mut s, f, "hdr PrefLimitUpper", 0x2c, 4, 0xffff_ffff);
        probe_mask(&mut s, f, "hdr IoUpper", 0x30, 4, 0xffff_ffff);
        probe_mask(&mut s, f, "hdr IntLine", 0x3c, 1, 0xff);
        // Everything but Secondary Bus Reset (bit 6), which would reset the hierarchy below.
        probe_mask(&mut s, f, "hdr BridgeCtl", 0x3e, 2, 0xffbf);
        // Not bit 15: Initiate FLR on functions that have it (QEMU's x3130-upstream does).
        probe_mask(&mut s, f, "exp DevCtl", exp + EXP_DEVCTL, 2, 0x7fff);
        // Everything but Link Disable and Retrain Link, which would act on the link.
        probe_mask(&mut s, f, "exp LnkCtl", exp + EXP_LNKCTL, 2, 0xffcf);
        if f.name.starts_with("rp") {
            probe_mask(&mut s, f, "exp RootCtl", exp + EXP_ROOTCTL, 2, 0xffff);
        }
        probe_mask(&mut s, f, "exp DevCtl2", exp + EXP_DEVCTL2, 2, 0xffff);
        probe_mask(&mut s, f, "exp LnkCtl2", exp + EXP_LNKCTL2, 2, 0xffff);
        match c.msi {
            Some(msi) => probe_mask(&mut s, f, "msi MsgCtl", msi + 2, 2, 0xffff),
            None => {
                for k in ["ones", "zeros", "restored"] {
                    s.rec(format_args!("{} mask msi MsgCtl {k}", f.name), "absent");
                }
            }
        }
    }
    s.t
}

// ------------------------------------------------------------------------------------------
// Scenario 2: a hot-plug round trip through a slot, as Linux pciehp drives it.

fn hotplug_script(h: &mut dyn Hmp, scenario: &'static str, endpoint: &str, port: Func, card: Func) -> Transcript {
    let mut s = Session::new(h, scenario);
    program_buses(&mut s);
    let c = s.caps(port, false);
    let exp = c.exp.expect("PCIe capability");
    let pcp = s.read(port.bdf, exp + EXP_SLTCAP, 4) & SLTCAP_PCP != 0;
    let lnksta = |s: &mut Session| s.exp(port, c, "LnkSta", EXP_LNKSTA, 2, Some(LNKSTA));

    // portdrv: bus mastering, and MSI where both sides have it (the switch ports; QEMU's generic
    // root port has MSI-X only, whose table HMP cannot program, so rp2 stays on INTx and its
    // Interrupt Status shows the hot-plug interrupt level).
    s.rmw(port.bdf, 0x04, 2, 0x6, 0x6);
    if port.name == "dp1" {
        let msi = c.msi.expect("dp1 has MSI on both sides");
        s.write(port.bdf, msi + 4, 4, 0xfee0_0000);
        s.write(port.bdf, msi + 8, 4, 0);
        s.write(port.bdf, msi + 12, 2, 0x4055);
        s.rmw(port.bdf, msi + 2, 2, 1, 1);
    }
    s.cap_reg(port, c.msi, "msi MsgCtl", 2, 2, Some(&MSICTL[..1]));

    s.step("reset");
    s.slot_state(port, c);
    lnksta(&mut s);
    s.card(card);

    // pcie_init: clear every event with one W1C write.
    s.step("init");
    s.write(port.bdf, exp + EXP_SLTSTA, 2, SLTSTA_EVENTS);
    s.slot_state(port, c);

    // Enable notification and set the indicators (one command).
    s.step("enable");
    s.slot_cmd(
        port,
        c,
        SLTCTL_ENABLES | SLTCTL_PIC | SLTCTL_AIC,
        SLTCTL_PDCE | SLTCTL_ABPE | SLTCTL_CCIE | SLTCTL_HPIE | SLTCTL_DLLSCE | SLTCTL_PIC_ON | SLTCTL_AIC_OFF,
        true,
    );

    s.step("device_add");
    let out = s.hmp(&format!("device_add {endpoint},id={},bus={}", card.name, port.name));
    s.reply("device_add", &out);
    s.slot_state(port, c);
    lnksta(&mut s);
    s.exp(port, c, "DevSta", EXP_DEVSTA, 2, Some(DEVSTA));
    s.card(card);
    s.info_pci_lists(card);

    // The interrupt handler acknowledges the events; DevSta and the link bits too.
    s.step("add ack");
    s.ack_slot(port, c);
    s.write(port.bdf, exp + EXP_DEVSTA, 2, 0xf);
    s.exp(port, c, "DevSta after W1C", EXP_DEVSTA, 2, Some(DEVSTA));
    s.write(port.bdf, exp + EXP_LNKSTA, 2, 0xc000);
    lnksta(&mut s);

    // board_added: power on (if there is a power controller), blink, check the link, on.
    s.step("power on");
    s.slot_cmd(port, c, SLTCTL_PCC, 0, pcp);
    s.card(card);
    s.step("blink");
    s.slot_cmd(port, c, SLTCTL_PIC, SLTCTL_PIC_BLINK, true);
    s.step("link check");
    lnksta(&mut s);
    s.card(card);
    s.step("indicators on");
    s.slot_cmd(port, c, SLTCTL_PIC | SLTCTL_AIC, SLTCTL_PIC_ON | SLTCTL_AIC_OFF, true);
    s.card(card);
    s.info_pci_lists(card);

    // device_del: the attention button.
    s.step("device_del");
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del", &out);
    s.slot_state(port, c);
    s.card(card);
    s.info_pci_lists(card);
    s.step("del ack");
    s.ack_slot(port, c);
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del again", &out);

    // pciehp_handle_button_press: blink (attention off); 5 s later remove_board.
    s.step("button blink");
    s.slot_cmd(port, c, SLTCTL_PIC | SLTCTL_AIC, SLTCTL_PIC_BLINK | SLTCTL_AIC_OFF, true);
    s.card(card);
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del while blinking", &out);
    s.step("power off");
    s.slot_cmd(port, c, SLTCTL_PCC, SLTCTL_PCC, pcp);
    s.card(card);
    s.info_pci_lists(card);
    s.step("indicator off");
    s.slot_cmd(port, c, SLTCTL_PIC, SLTCTL_PIC_OFF, true);
    lnksta(&mut s);
    s.card(card);
    s.info_pci_lists(card);

    s.step("gone");
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del", &out);
    s.slot_state(port, c);

    // The slot is reusable: a second insertion.
    s.step("re-add");
    let out = s.hmp(&format!("device_add {endpoint},id={},bus={}", card.name, port.name));
    s.reply("device_add", &out);
    s.slot_state(port, c);
    lnksta(&mut s);
    s.info_pci_lists(card);
    s.ack_slot(port, c);

    // Which event enables are writable: all of them, then back.
    s.step("enables all");
    let before = s.read(port.bdf, exp + EXP_SLTCTL, 2);
    s.slot_cmd(port, c, SLTCTL_ENABLES, SLTCTL_ENABLES, true);
    s.step("enables restored");
    s.slot_cmd(port, c, SLTCTL_ENABLES, before, true);

    // The electromechanical interlock: EIC toggles EIS, and an engaged interlock refuses removal.
    s.step("interlock on");
    s.slot_cmd(port, c, SLTCTL_EIC, SLTCTL_EIC, true);
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del while locked", &out);
    s.card(card);
    s.info_pci_lists(card);
    s.step("interlock off");
    s.slot_cmd(port, c, SLTCTL_EIC, SLTCTL_EIC, true);
    // The slot was never re-enabled by the guest (power indicator off): removal is immediate.
    s.step("del unlocked");
    let out = s.hmp(&format!("device_del {}", card.name));
    s.reply("device_del", &out);
    s.slot_state(port, c);
    s.card(card);
    s.info_pci_lists(card);
    s.t
}

// ------------------------------------------------------------------------------------------
// Scenario 3: AER injection into the endpoint below the switch, propagation to rp1.

const COMMAND_SERR: u64 = 1 << 8;
const BRIDGE_CTL_SERR: u64 = 1 << 1;

/// The registers an error changes, everywhere on the path.
fn aer_snapshot(s: &mut Session, caps: &[(Func, Caps)]) {
    for &(f, c) in caps {
        let st = s.read(f.bdf, 0x06, 2);
        s.fields(f, "hdr Status", st, &[("SigSysErr", 14, 1), ("DetParErr", 15, 1), ("RcvMAbort", 13, 1)]);
        if f.name != "ep1" {
            let ss = s.read(f.bdf, 0x1e, 2);
            s.fields(f, "hdr SecStatus", ss, &[("RcvSysErr", 14, 1), ("DetParErr", 15, 1), ("RcvMAbort", 13, 1)]);
        }
        s.exp(f, c, "DevSta", EXP_DEVSTA, 2, Some(DEVSTA));
        aer_registers(s, f, c, f.name == "rp1", false);
    }
}

fn aer_script(h: &mut dyn Hmp) -> Transcript {
    let mut s = Session::new(h, "aer");
    program_buses(&mut s);
    let path = [EP1, DP1, UP1, RP1];
    let caps: Vec<(Func, Caps)> = path.iter().map(|&f| (f, s.caps(f, false))).collect();

    // What Linux sets up: SERR in Command and Bridge Control, the DevCtl reporting enables.
    // (Root Error Command lives in extended config space, which HMP cannot write.)
    s.step("enables");
    for &(f, c) in &caps {
        s.rmw(f.bdf, 0x04, 2, COMMAND_SERR, COMMAND_SERR);
        if f.name != "ep1" {
            s.rmw(f.bdf, 0x3e, 2, BRIDGE_CTL_SERR, BRIDGE_CTL_SERR);
        }
        let exp = c.exp.expect("PCIe capability");
        s.rmw(f.bdf, exp + EXP_DEVCTL, 2, 0xf, 0xf);
        let v = s.read(f.bdf, 0x04, 2);
        s.fields(f, "hdr Command", v, &[("SERR", 8, 1)]);
        if f.name != "ep1" {
            let v = s.read(f.bdf, 0x3e, 2);
            s.fields(f, "hdr BridgeCtl", v, &[("SERR", 1, 1)]);
        }
        let v = s.read(f.bdf, exp + EXP_DEVCTL, 2);
        s.fields(f, "exp DevCtl", v, &DEVCTL[..4]);
    }
    s.step("before");
    aer_snapshot(&mut s, &caps);
    s.step("ep1 at reset");
    let ep = caps[0].1;
    aer_registers(&mut s, EP1, ep, false, true);

    for (step, cmd) in [
        // A correctable error by number (-c makes a number correctable): Bad TLP.
        ("cor", "pcie_aer_inject_error -c ep1 0x40"),
        // A non-fatal uncorrectable error with a TLP header.
        ("poison", "pcie_aer_inject_error ep1 POISON_TLP 0x4a000001 0x0100000f 0xfee00000 0x12345678"),
        // A fatal one (default severity) while the first is still logged.
        ("malf", "pcie_aer_inject_error ep1 MALF_TLP 0x40000004 0x0300000f 0xfebf0000 0"),
        // A second correctable error, by name.
        ("cor2", "pcie_aer_inject_error ep1 BAD_DLLP"),
        // A correctable error masked by default (Corrected Internal Error).
        ("cor masked", "pcie_aer_inject_error ep1 INTERNAL"),
        // The root port's own error.
        ("rp1 own", "pcie_aer_inject_error -c rp1 0x1"),
        // An error of the upstream port (travels rp1-ward only).
        ("up1", "pcie_aer_inject_error up1 COMP_ABORT"),
    ] {
        s.step(step);
        let out = s.hmp(cmd);
        s.reply(cmd, &out);
        aer_snapshot(&mut s, &caps);
    }

    // DevSta, Status and Secondary Status are W1C in legacy config space: clear them.
    s.step("w1c");
    for &(f, c) in &caps {
        let exp = c.exp.expect("PCIe capability");
        s.write(f.bdf, exp + EXP_DEVSTA, 2, 0xf);
        s.write(f.bdf, 0x06, 2, 0xf900);
        if f.name != "ep1" {
            s.write(f.bdf, 0x1e, 2, 0xf900);
        }
    }
    aer_snapshot(&mut s, &caps);

    // Uncorrectable Internal Error: its default mask differs (reported in the allow-list).
    s.step("intn");
    let out = s.hmp("pcie_aer_inject_error ep1 INTN");
    s.reply("pcie_aer_inject_error ep1 INTN", &out);
    aer_snapshot(&mut s, &caps);

    // Only Command.SERR, no DevCtl enable, on the endpoint: spec Figure 6-3 vs QEMU.
    // (Status and Secondary Status cleared first, so the hops it reaches show.)
    s.step("serr only");
    for &(f, _) in &caps {
        s.write(f.bdf, 0x06, 2, 0xf900);
        if f.name != "ep1" {
            s.write(f.bdf, 0x1e, 2, 0xf900);
        }
    }
    let exp = ep.exp.expect("PCIe capability");
    s.rmw(EP1.bdf, exp + EXP_DEVCTL, 2, 0xf, 0);
    let out = s.hmp("pcie_aer_inject_error ep1 UNX_COMP");
    s.reply("pcie_aer_inject_error ep1 UNX_COMP", &out);
    aer_snapshot(&mut s, &caps);

    // Argument syntax and refusals: compare the class of the reply only.
    s.step("syntax");
    for cmd in [
        "pcie_aer_inject_error ep1 BAD_TLP",
        "pcie_aer_inject_error -c ep1 BAD_TLP",
        "pcie_aer_inject_error -c ep1 POISON_TLP",
        "pcie_aer_inject_error ep1 0x1000",
        "pcie_aer_inject_error ep1 0x1",
        "pcie_aer_inject_error ep1 0x3000",
        "pcie_aer_inject_error ep1 BAD_TLP,RCVR",
        "pcie_aer_inject_error ep1 NO_SUCH_ERROR",
        "pcie_aer_inject_error nosuch POISON_TLP",
        // A function without AER: the LPC bridge (no id on either side, so by address).
        "pcie_aer_inject_error 00:1f.0 POISON_TLP",
    ] {
        let out = s.hmp(cmd);
        s.reply(cmd, &out);
    }
    s.t
}

// ------------------------------------------------------------------------------------------
// Running a scenario on both sides and refereeing it.

fn args(base: &[&'static str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// The scenarios (label prefixes) the allow-list may name; `hp-*` entries apply to every
/// hot-plug scenario and must be used by each of them.
const SCENARIOS: [&str; 7] = ["regs ", "hp-root ", "hp-root-pcp ", "hp-switch ", "hp-* ", "aer ", "aer-text "];

type Script<'a> = &'a (dyn Fn(&mut dyn Hmp, bool) -> Transcript + Sync);

/// Runs `script` on QEMU (`true`) and on q35dm (`false`) in parallel, then referees.
fn referee(scenario: &'static str, qemu_args: &[String], q35dm_args: &[String], script: Script) {
    if !qemu_available() {
        return;
    }
    let (theirs, ours) = std::thread::scope(|sc| {
        let q = sc.spawn(|| {
            let a: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
            let mut q = start_qemu(scenario, &a);
            script(&mut q, true)
        });
        let a: Vec<&str> = q35dm_args.iter().map(String::as_str).collect();
        let mut d = start_q35dm(scenario, &a);
        let ours = script(&mut d, false);
        (q.join().expect("QEMU side"), ours)
    });
    let mut allow = load_allow(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/ports.allow")));
    for a in &allow {
        assert!(
            SCENARIOS.iter().any(|p| a.glob.starts_with(p)),
            "allow-list entry {:?} must start with its scenario name",
            a.glob
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (label, _) in &ours.steps {
        assert!(seen.insert(label), "{scenario}: label {label:?} recorded twice (compare() keys by label)");
    }
    if let Some(i) = (0..theirs.steps.len().max(ours.steps.len()))
        .find(|&i| theirs.steps.get(i).map(|x| &x.0) != ours.steps.get(i).map(|x| &x.0))
    {
        panic!(
            "{scenario}: the two sides ran different scripts from step {i}: qemu {:?} q35dm {:?}",
            theirs.steps.get(i),
            ours.steps.get(i)
        );
    }
    if std::env::var_os("PORTS_REFERENCE_DUMP").is_some() {
        for ((label, q), (_, d)) in theirs.steps.iter().zip(&ours.steps) {
            eprintln!("{label}: qemu={q:?} q35dm={d:?}");
        }
    }
    let (allowed, bad) = compare(&theirs, &ours, &mut allow);
    eprintln!("{scenario}: {} steps compared, {} allowed differences:", ours.steps.len(), allowed.len());
    for a in &allowed {
        eprintln!("  {a}");
    }
    let mine =
        |g: &str| g.starts_with(&format!("{scenario} ")) || (scenario.starts_with("hp-") && g.starts_with("hp-* "));
    let unused: Vec<_> = allow.iter().filter(|a| !a.used && mine(&a.glob)).map(|a| a.glob.clone()).collect();
    assert!(bad.is_empty(), "{scenario}: {} unexplained differences:\n{}", bad.len(), bad.join("\n"));
    assert!(unused.is_empty(), "{scenario}: allow-list entries that no longer match a difference: {unused:?}");
}

#[test]
fn port_registers_match_qemu_or_the_allow_list() {
    referee("regs", &args(QEMU_TOPOLOGY, &[]), &args(Q35DM_TOPOLOGY, &[]), &|h, _| {
        let t = regs_script(h);
        assert!(t.steps.len() > 700, "{} steps", t.steps.len());
        t
    });
}

fn endpoint(qemu: bool) -> &'static str {
    if qemu {
        QEMU_ENDPOINT
    } else {
        Q35DM_ENDPOINT
    }
}

/// Root-level slot, both sides' defaults (QEMU: power controller; q35dm: none).
#[test]
fn root_port_hotplug_matches_qemu_or_the_allow_list() {
    referee("hp-root", &args(QEMU_TOPOLOGY, &[]), &args(Q35DM_TOPOLOGY, &[]), &|h, qemu| {
        hotplug_script(h, "hp-root", endpoint(qemu), RP2, EP2)
    });
}

/// Root-level slot with a power controller on both sides (q35dm `power-controller=on`).
#[test]
fn root_port_with_power_controller_hotplug_matches_qemu_or_the_allow_list() {
    let mut d = args(Q35DM_TOPOLOGY, &[]);
    let last = d.last_mut().expect("rp2");
    last.push_str(",power-controller=on");
    referee("hp-root-pcp", &args(QEMU_TOPOLOGY, &[]), &d, &|h, qemu| {
        hotplug_script(h, "hp-root-pcp", endpoint(qemu), RP2, EP2)
    });
}

/// Switch-level slot, both sides' defaults.
#[test]
fn downstream_port_hotplug_matches_qemu_or_the_allow_list() {
    referee("hp-switch", &args(QEMU_TOPOLOGY, &[]), &args(Q35DM_TOPOLOGY, &[]), &|h, qemu| {
        hotplug_script(h, "hp-switch", endpoint(qemu), DP1, EP1)
    });
}

#[test]
fn aer_injection_matches_qemu_or_the_allow_list() {
    let q = format!("{QEMU_ENDPOINT},id=ep1,bus=dp1");
    let d = format!("{Q35DM_ENDPOINT},id=ep1,bus=dp1");
    referee("aer", &args(QEMU_TOPOLOGY, &["-device", &q]), &args(Q35DM_TOPOLOGY, &["-device", &d]), &|h, _| {
        aer_script(h)
    });
}

/// The text of a successful injection, which hotplug.rs promises in QEMU's format
/// (`OK id: ... root bus: ..., bus: ... devfn: ...`).
#[test]
fn aer_injection_reply_text_matches_qemu() {
    let q = format!("{QEMU_ENDPOINT},id=ep1,bus=dp1");
    let d = format!("{Q35DM_ENDPOINT},id=ep1,bus=dp1");
    referee("aer-text", &args(QEMU_TOPOLOGY, &["-device", &q]), &args(Q35DM_TOPOLOGY, &["-device", &d]), &|h, _| {
        let mut s = Session::new(h, "aer-text");
        program_buses(&mut s);
        for cmd in ["pcie_aer_inject_error -c ep1 0x40", "pcie_aer_inject_error rp1 POISON_TLP"] {
            let out = s.hmp(cmd);
            s.rec(cmd, out.trim().to_string());
        }
        s.t
    });
}

// ------------------------------------------------------------------------------------------
// The port's MSI, which neither monitor shows: q35dm in-process (real engine, simulated
// hypervisor), driven exactly as Linux pciehp enables a slot. tests/pcie_hotplug.rs covers
// the MSI paths with PDCE enabled; these use pciehp's real choice (PDCE off when the slot has
// an attention button, pcie_enable_notification), which is what a guest runs.

fn linux_board(rp2_extra: &'static str) -> board::Board {
    let board = board::Board::with(256, move |m| {
        for spec in Q35DM_TOPOLOGY.iter().skip(1).step_by(2) {
            let spec = if spec.contains("id=rp2") { format!("{spec}{rp2_extra}") } else { spec.to_string() };
            let req = q35dm::devices::DeviceRequest::parse(&spec).expect("device spec");
            m.add_request(&req, false, &mut Vec::new()).expect("cold-plug");
        }
    });
    // Firmware: ECAM, bus numbers; portdrv: bus mastering (MSI needs it).
    board.cfg_write(0, 0x60, 4, 0xb000_0001);
    for (f, buses) in [(RP1, 0x03_01_00u32), (RP2, 0x04_04_00), (UP1, 0x03_02_01), (DP1, 0x03_03_02)] {
        board.cfg_write(f.bdf, 0x18, 4, buses);
        board.cfg_write(f.bdf, 0x04, 2, 0x4);
    }
    board
}

fn board_cap(b: &board::Board, bdf: u32, id: u32) -> u32 {
    let mut p = b.cfg_read(bdf, 0x34, 1);
    for _ in 0..48 {
        if p == 0 {
            break;
        }
        if b.cfg_read(bdf, p, 1) == id {
            return p;
        }
        p = b.cfg_read(bdf, p + 1, 1);
    }
    panic!("{bdf:#x}: no capability {id:#x}");
}

fn port_msis(b: &board::Board, data: u32) -> usize {
    b.sim.irq_events().iter().filter(|e| matches!(e, q35dm::sim::IrqEvent::Msi { data: d, .. } if *d == data)).count()
}

/// portdrv + pciehp bring-up on `port`: one MSI vector (data `data`), then pcie_init's W1C of
/// every event and pcie_enable_notification (DLLSCE|HPIE|CCIE, plus ABPE if the slot has an
/// attention button, else PDCE), acknowledging the Command Completed. Returns the PCIe cap.
fn pciehp_bring_up(b: &board::Board, port: Func, data: u32) -> u32 {
    let msi = board_cap(b, port.bdf, 0x05);
    b.cfg_write(port.bdf, msi + 4, 4, 0xfee0_0000);
    b.cfg_write(port.bdf, msi + 8, 4, 0);
    b.cfg_write(port.bdf, msi + 12, 2, data);
    b.cfg_write(port.bdf, msi + 2, 2, 1);
    let exp = board_cap(b, port.bdf, 0x10);
    b.cfg_write(port.bdf, exp + EXP_SLTSTA, 2, SLTSTA_EVENTS as u32);
    let abp = b.cfg_read(port.bdf, exp + EXP_SLTCAP, 4) & 1 != 0;
    let events = if abp { SLTCTL_ABPE } else { SLTCTL_PDCE };
    let ctl = b.cfg_read(port.bdf, exp + EXP_SLTCTL, 2);
    let new = (u64::from(ctl) & !SLTCTL_ENABLES) | events | SLTCTL_DLLSCE | SLTCTL_HPIE | SLTCTL_CCIE;
    b.cfg_write(port.bdf, exp + EXP_SLTCTL, 2, new as u32);
    assert_eq!(port_msis(b, data), 1, "{}: the enabling command completes with an interrupt", port.name);
    let sta = b.cfg_read(port.bdf, exp + EXP_SLTSTA, 2);
    b.cfg_write(port.bdf, exp + EXP_SLTSTA, 2, sta & SLTSTA_EVENTS as u32);
    exp
}

fn board_hot_add(b: &board::Board, port: Func, card: Func) {
    let req = q35dm::devices::DeviceRequest::parse(&format!("{Q35DM_ENDPOINT},id={},bus={}", card.name, port.name))
        .expect("device_add spec");
    b.handle
        .call(move |m, e| m.add_request(&req, true, e.effects_mut()).map(|_| ()))
        .expect("loop")
        .expect("device_add");
}

/// The hot-plug round trip of the differential, at the switch-level slot (no power controller):
/// every step a Linux guest waits for raises the port's MSI.
#[test]
fn q35dm_port_interrupts_fire_for_linux_pciehp() {
    let b = linux_board("");
    let data = 0x4071;
    let exp = pciehp_bring_up(&b, DP1, data);
    // device_add: PDC + DLLSC; with pciehp's enables (ABPE, not PDCE) DLLSC carries it.
    board_hot_add(&b, DP1, EP1);
    assert_eq!(port_msis(&b, data), 2, "hot-add interrupts through DLLSC");
    let sta = b.cfg_read(DP1.bdf, exp + EXP_SLTSTA, 2);
    b.cfg_write(DP1.bdf, exp + EXP_SLTSTA, 2, sta & SLTSTA_EVENTS as u32);
    // Indicators (commands) interrupt through CC.
    let ctl = b.cfg_read(DP1.bdf, exp + EXP_SLTCTL, 2);
    b.cfg_write(DP1.bdf, exp + EXP_SLTCTL, 2, (ctl & !0x3c0) | 0x1c0);
    assert_eq!(port_msis(&b, data), 3, "Command Completed interrupts");
    b.cfg_write(DP1.bdf, exp + EXP_SLTSTA, 2, 0x10);
    // device_del: the attention button.
    let id = EP1.name;
    b.handle.call(move |m, e| m.device_del(id, false, e.effects_mut())).expect("loop").expect("device_del");
    assert_eq!(port_msis(&b, data), 4, "device_del presses the attention button");
    assert_ne!(b.cfg_read(DP1.bdf, exp + EXP_SLTSTA, 2) & 1, 0, "ABP");
    b.cfg_write(DP1.bdf, exp + EXP_SLTSTA, 2, 1);
    // The guest releases the slot (power indicator off): the card goes, with an interrupt.
    let ctl = b.cfg_read(DP1.bdf, exp + EXP_SLTCTL, 2);
    b.cfg_write(DP1.bdf, exp + EXP_SLTCTL, 2, (ctl & !0x300) | 0x300);
    assert_eq!(b.cfg_read(EP1.bdf, 0, 4), 0xffff_ffff, "the card is gone");
    assert_eq!(port_msis(&b, data), 5, "removal (PDC/DLLSC/CC) interrupts");
    assert!(b.sim.crashed().is_none());
}

/// The same hot-add into a root port with a power controller (QEMU's default slot). QEMU
/// raises ABP|PDC, so pciehp (ABPE on) is told; q35dm raises PDC only, which pciehp never
/// enables when the slot has an attention button, and the unpowered card has no link (no DLLSC).
#[test]
fn q35dm_power_controlled_slot_hot_add_interrupts_linux_pciehp() {
    let b = linux_board(",power-controller=on");
    let data = 0x4072;
    let exp = pciehp_bring_up(&b, RP2, data);
    board_hot_add(&b, RP2, EP2);
    let sta = b.cfg_read(RP2.bdf, exp + EXP_SLTSTA, 2);
    assert_eq!(
        port_msis(&b, data),
        2,
        "hot-add into a powered-off slot must interrupt pciehp (SltSta {sta:#06x}: QEMU raises ABP|PDC)"
    );
}
