//! Bad input against the Q35 board, through the whole ioreq path: each has a defined result and
//! leaves the device model serving.

#[path = "support/board.rs"]
mod board;

use board::Board;
use q35dm::pci::bar::BarSpec;
use q35dm::pci::config::HeaderIds;
use q35dm::pci::device::{FunctionSpec, GenericFunction};
use xen_bindings::dm_op::IoRangeKind;

const MCH: u32 = 0x00;
const LPC: u32 = 0xf8;

#[test]
fn writes_to_read_only_bits_change_nothing() {
    let b = Board::new(128);
    for off in [0x00u32, 0x08, 0x2c, 0x34] {
        let before = b.cfg_read(MCH, off, 4);
        b.cfg_write(MCH, off, 4, 0xffff_ffff);
        assert_eq!(b.cfg_read(MCH, off, 4), before, "MCH {off:#x}");
        let before = b.cfg_read(LPC, off, 4);
        b.cfg_write(LPC, off, 4, 0xffff_ffff);
        assert_eq!(b.cfg_read(LPC, off, 4), before, "LPC {off:#x}");
    }
    // Header type and class of the LPC, byte by byte.
    b.cfg_write(LPC, 0x0e, 1, 0);
    assert_eq!(b.cfg_read(LPC, 0x0e, 1), 0x80);
}

#[test]
fn one_writes_to_bits_that_are_not_w1c_do_not_clear_them() {
    let b = Board::new(128);
    // PMBASE bit 0 (RTE) is RO 1: writing 1 or 0 leaves it.
    b.cfg_write(LPC, 0x40, 4, 0xb001);
    b.cfg_write(LPC, 0x40, 4, 0xb000);
    assert_eq!(b.cfg_read(LPC, 0x40, 4), 0xb001);
    // Status of the MCH: writing ones to RO/W1C bits that are 0 sets nothing.
    b.cfg_write(MCH, 0x04, 4, 0xffff_0000);
    assert_eq!(b.cfg_read(MCH, 0x06, 2), 0);
    // ESMRAMC's read-as-one bits stay set whatever is written.
    b.cfg_write(MCH, 0x9e, 1, 0);
    assert_eq!(b.cfg_read(MCH, 0x9e, 1) & 0x38, 0x38);
}

#[test]
fn ecam_edge_cases() {
    let b = Board::new(128);
    let v = b.vcpu();
    // Before PCIEXBAR is enabled the window is not claimed: Xen's null handler answers.
    assert_eq!(v.mmio_read(0xb000_0000, 4).unwrap(), 0xffff_ffff);
    b.cfg_write(MCH, 0x60, 4, 0xb000_0005); // 64 MiB
    assert_eq!(v.mmio_read(0xb000_0000, 4).unwrap(), 0x29c0_8086);
    // Beyond the 64 MiB window: not claimed any more.
    assert_eq!(v.mmio_read(0xb400_0000, 4).unwrap(), 0xffff_ffff);
    // Unaligned and 8-byte accesses: byte-wise inside the function, split in dwords.
    assert_eq!(v.mmio_read(0xb000_0001, 2).unwrap(), 0xc080);
    assert_eq!(v.mmio_read(0xb000_0000, 8).unwrap(), 0x0000_0000_29c0_8086);
    assert_eq!(v.mmio_read(0xb000_00fe, 4).unwrap(), 0xffff_ffff, "runs past a conventional function");
    assert_eq!(v.mmio_read(0xb000_0100, 4).unwrap(), 0xffff_ffff, "extended space of a conventional function");
    // 8-byte write through ECAM lands in two dwords.
    v.mmio_write(0xb000_0090, 8, 0x3333_3333_1111_1110).unwrap();
    assert_eq!(b.cfg_read(MCH, 0x90, 4), 0x1111_1110);
    assert_eq!(b.cfg_read(MCH, 0x94, 4), 0x3333_3333);
    // Absent functions read all-ones; writes to them vanish.
    assert_eq!(v.mmio_read(0xb000_8000, 4).unwrap(), 0xffff_ffff);
    v.mmio_write(0xb000_8004, 4, 7).unwrap();
    // Reserved length: ignored, the window stays.
    b.cfg_write(MCH, 0x60, 4, 0xb000_0007);
    assert_eq!(v.mmio_read(0xb000_0000, 4).unwrap(), 0x29c0_8086);
    let ranges = b.sim.server_ranges(0);
    assert!(ranges.contains(&(IoRangeKind::Memory, 0xb000_0000, 0xb3ff_ffff)), "{ranges:?}");
}

#[test]
fn overlapping_bar_programming_is_defined() {
    let b = Board::with(128, |m| {
        for (slot, dev) in [(3u8, 0x11u16), (4, 0x12)] {
            let ids = HeaderIds { vendor_id: 0x1b36, device_id: dev, class_code: 0xff_00_00, ..Default::default() };
            let f = GenericFunction::new(
                FunctionSpec::new(format!("scratch{dev:x}"), ids).bar(BarSpec::mem32(0, 0x1000, false)),
            )
            .unwrap();
            let mut fx = Vec::new();
            m.add_device("pcie.0", Some(slot << 3), &format!("s{slot}"), Box::new(f), false, &mut fx).unwrap();
        }
    });
    for bdf in [0x18u32, 0x20] {
        b.cfg_write(bdf, 0x10, 4, 0xfe00_0000);
        b.cfg_write(bdf, 0x04, 2, 2);
    }
    let ranges = b.sim.server_ranges(0);
    let mem: Vec<_> = ranges.iter().filter(|r| r.0 == IoRangeKind::Memory).collect();
    assert_eq!(mem, vec![&(IoRangeKind::Memory, 0xfe00_0000, 0xfe00_0fff)], "claimed once, by the first BAR");
    // Both functions keep answering config cycles; the guest can fix its programming.
    b.cfg_write(0x20, 0x10, 4, 0xfe00_1000);
    let ranges = b.sim.server_ranges(0);
    assert!(ranges.contains(&(IoRangeKind::Memory, 0xfe00_1000, 0xfe00_1fff)), "{ranges:?}");
    // Sizing a BAR (all-ones) unmaps it rather than mapping garbage.
    b.cfg_write(0x18, 0x10, 4, 0xffff_ffff);
    assert_eq!(b.cfg_read(0x18, 0x10, 4), 0xffff_f000);
    let ranges = b.sim.server_ranges(0);
    assert!(!ranges.iter().any(|r| r.0 == IoRangeKind::Memory && r.1 == 0xfe00_0000), "{ranges:?}");
    assert!(b.sim.crashed().is_none());
}
