//! Referee 1 for the Q35 chipset: the same HMP script on QEMU 7.2 (`-M q35 -accel tcg -S
//! -nodefaults`) and on q35dm (simulated hypervisor, accesses through the ioreq path), compared
//! step by step. Every difference must match an entry of tests/reference/q35.allow, which gives
//! its reason; unused entries fail too, so the list stays true.

#[path = "support/qmp_client.rs"]
mod qmp_client;
#[path = "support/reference.rs"]
mod reference;

use qmp_client::*;
use reference::*;

fn cf8(h: &mut dyn Hmp, devfn: u32, off: u32) {
    h.hmp(&format!("o /w 0xcf8 0x{:x}", 0x8000_0000 | devfn << 8 | (off & 0xfc)));
}

fn read_width(h: &mut dyn Hmp, t: &mut Transcript, name: &str, devfn: u32, off: u32) {
    cf8(h, devfn, off);
    t.record(format!("{name} cfg {off:#04x} r32"), h.hmp("i /w 0xcfc"));
    for k in [0u32, 2] {
        t.record(format!("{name} cfg {:#04x} r16", off + k), h.hmp(&format!("i /h 0x{:x}", 0xcfc + k)));
    }
    for k in 0..4u32 {
        t.record(format!("{name} cfg {:#04x} r8", off + k), h.hmp(&format!("i /b 0x{:x}", 0xcfc + k)));
    }
}

fn value(out: &str) -> u64 {
    let v = out.rsplit('=').next().unwrap_or("").trim();
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(u64::MAX)
}

/// Writes all-ones and zeros to each dword and reads back, then restores the side's own value.
fn probe_masks(h: &mut dyn Hmp, t: &mut Transcript, name: &str, devfn: u32) {
    for off in (0..0x100u32).step_by(4) {
        cf8(h, devfn, off);
        let orig = value(&h.hmp("i /w 0xcfc"));
        h.hmp("o /w 0xcfc 0xffffffff");
        t.record(format!("{name} mask {off:#04x} ones"), h.hmp("i /w 0xcfc"));
        h.hmp("o /w 0xcfc 0");
        t.record(format!("{name} mask {off:#04x} zeros"), h.hmp("i /w 0xcfc"));
        h.hmp(&format!("o /w 0xcfc 0x{orig:x}"));
        t.record(format!("{name} mask {off:#04x} restored"), h.hmp("i /w 0xcfc"));
    }
}

fn script(h: &mut dyn Hmp) -> Transcript {
    let mut t = Transcript::default();
    // 1. Full config space of the MCH and the LPC at every width, before anything is written.
    for (name, devfn) in [("mch", 0u32), ("lpc", 0xf8)] {
        for off in (0..0x100u32).step_by(4) {
            read_width(h, &mut t, name, devfn, off);
        }
    }
    // 2. The config address register: dword read back, narrower reads.
    h.hmp("o /w 0xcf8 0x80001234");
    t.record("cf8 r32", h.hmp("i /w 0xcf8"));
    t.record("cf8 r8", h.hmp("i /b 0xcf8"));
    t.record("cf8 r16", h.hmp("i /h 0xcfa"));
    // 3. Absent functions and buses.
    for (label, devfn) in
        [("00:01.0", 0x08u32), ("00:1f.2", 0xfa), ("00:1f.3", 0xfb), ("00:1f.7", 0xff), ("05:00.0", 0x500)]
    {
        cf8(h, devfn, 0);
        t.record(format!("absent {label} r32"), h.hmp("i /w 0xcfc"));
        cf8(h, devfn, 0x3c);
        t.record(format!("absent {label} r8"), h.hmp("i /b 0xcfe"));
    }
    // Enable bit clear: 0xcfc is an ordinary (unclaimed) port.
    h.hmp("o /w 0xcf8 0x00000000");
    t.record("cfc without enable", h.hmp("i /w 0xcfc"));
    // 4. PCIEXBAR: disabled at reset, then enabled, relocated, resized, reserved, disabled.
    t.record("ecam before enable", h.hmp("xp /1wx 0xb0000000"));
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xb0000001");
    t.record("ecam 256M mch", h.hmp("xp /4wx 0xb0000000"));
    t.record("ecam 256M lpc", h.hmp("xp /4wx 0xb00f8000"));
    t.record("ecam 256M lpc 0x60", h.hmp("xp /4wx 0xb00f8060"));
    t.record("ecam 256M absent 00:01.0", h.hmp("xp /1wx 0xb0008000"));
    t.record("ecam 256M absent bus 1", h.hmp("xp /2wx 0xb0100000"));
    t.record("ecam 256M bus 255", h.hmp("xp /1wx 0xbff00000"));
    t.record("ecam 256M mch ext 0x100", h.hmp("xp /1wx 0xb0000100"));
    t.record("ecam 256M 8-byte", h.hmp("xp /1gx 0xb0000000"));
    t.record("ecam 256M unaligned 2", h.hmp("xp /1hx 0xb0000001"));
    t.record("ecam 256M unaligned 4", h.hmp("xp /1wx 0xb0000002"));
    t.record("ecam 256M bytes", h.hmp("xp /8bx 0xb00f8000"));
    t.record("ecam 256M words", h.hmp("xp /4hx 0xb00f8000"));
    // Writes through ECAM reach config space.
    h.hmp("xp /1wx 0xb0000090");
    cf8(h, 0, 0x90);
    h.hmp("o /w 0xcfc 0x11223330");
    t.record("pam via cf8 then ecam", h.hmp("xp /2wx 0xb0000090"));
    // Relocate to 0xe0000000: the old window disappears.
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xe0000001");
    t.record("ecam relocated old", h.hmp("xp /1wx 0xb0000000"));
    t.record("ecam relocated new", h.hmp("xp /1wx 0xe0000000"));
    t.record("ecam relocated lpc", h.hmp("xp /1wx 0xe00f8000"));
    // 128 MiB and 64 MiB windows.
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xe0000003");
    t.record("ecam 128M inside", h.hmp("xp /1wx 0xe00f8000"));
    t.record("ecam 128M beyond", h.hmp("xp /1wx 0xe8000000"));
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xe0000005");
    t.record("ecam 64M inside", h.hmp("xp /1wx 0xe0000000"));
    t.record("ecam 64M beyond", h.hmp("xp /1wx 0xe4000000"));
    // Reserved length: ignored (window off).
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xe0000007");
    t.record("ecam reserved length", h.hmp("xp /1wx 0xe0000000"));
    t.record("pciexbar reserved readback", h.hmp("i /w 0xcfc"));
    // High base (bit 32 set).
    cf8(h, 0, 0x64);
    h.hmp("o /w 0xcfc 0x1");
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0x00000001");
    t.record("ecam above 4G", h.hmp("xp /1wx 0x100000000"));
    cf8(h, 0, 0x64);
    h.hmp("o /w 0xcfc 0x0");
    cf8(h, 0, 0x60);
    h.hmp("o /w 0xcfc 0xb0000000");
    t.record("ecam disabled", h.hmp("xp /1wx 0xb0000000"));
    // 5. PAM registers: every value, read back.
    for (i, v) in [0x00u32, 0x11, 0x22, 0x33, 0x30, 0x03, 0x12].iter().enumerate() {
        cf8(h, 0, 0x90);
        h.hmp(&format!("o /b 0x{:x} 0x{v:x}", 0xcfc + (i as u32 % 4)));
    }
    cf8(h, 0, 0x90);
    t.record("pam 0x90", h.hmp("i /w 0xcfc"));
    cf8(h, 0, 0x94);
    t.record("pam 0x94", h.hmp("i /w 0xcfc"));
    // 6. Write masks of every dword (RO, RW, RW1C, locks), and the state they leave.
    probe_masks(h, &mut t, "mch", 0);
    probe_masks(h, &mut t, "lpc", 0xf8);
    t
}

#[test]
fn q35_chipset_matches_qemu_or_the_allow_list() {
    if !qemu_available() {
        return;
    }
    let mut q = start_qemu("q35ref", &[]);
    let mut d = start_q35dm("q35ref", &[]);
    let theirs = script(&mut q);
    let ours = script(&mut d);
    let mut allow = load_allow(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/q35.allow")));
    let (allowed, bad) = compare(&theirs, &ours, &mut allow);
    eprintln!("{} steps compared, {} allowed differences:", ours.steps.len(), allowed.len());
    for a in &allowed {
        eprintln!("  {a}");
    }
    let unused: Vec<_> = allow.iter().filter(|a| !a.used).map(|a| a.glob.clone()).collect();
    assert!(bad.is_empty(), "{} unexplained differences:\n{}", bad.len(), bad.join("\n"));
    assert!(unused.is_empty(), "allow-list entries that no longer match a difference: {unused:?}");
    assert!(ours.steps.len() > 1200, "{} steps", ours.steps.len());
}
