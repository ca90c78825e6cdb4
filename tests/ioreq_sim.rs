//! The whole ioreq path against the simulated hypervisor: vCPU → shared page → event channel →
//! engine → machine → response, for every request kind Xen sends.

mod support;

use std::sync::{Arc, Mutex};

use q35dm::ioreq::Space;
use q35dm::sim::{IrqEvent, Recorded, SimConfig, SimSys};
use support::*;
use xen_bindings::ioreq::{IOREQ_TYPE_COPY, IOREQ_TYPE_PIO};
use xen_bindings::privcmd::IOCTL_PRIVCMD_MMAPBATCH_V2;
use xen_bindings::record::RecordingSys;

fn cfg(vcpus: u32) -> SimConfig {
    SimConfig { nr_vcpus: vcpus, ram_below_4g: 64 << 20, ..Default::default() }
}

#[test]
fn pio_all_widths_round_trip() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    v.pio_write(REGS, 4, 0x4433_2211).unwrap();
    v.pio_write(REGS + 4, 2, 0x6655).unwrap();
    v.pio_write(REGS + 6, 1, 0x77).unwrap();
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 0x11);
    assert_eq!(v.pio_read(REGS + 1, 2).unwrap(), 0x3322);
    assert_eq!(v.pio_read(REGS, 4).unwrap(), 0x4433_2211);
    assert_eq!(v.pio_read(REGS + 4, 4).unwrap(), 0x0077_6655);
    // Unclaimed port: Xen's null handler, never reaches the device model.
    assert_eq!(v.pio_read(0x80, 1).unwrap(), 0xff);
    assert_eq!(v.pio_read(0x80, 4).unwrap(), 0xffff_ffff);
    let (m, e) = h.stop();
    assert_eq!(m.regs[..7], [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
    assert!(m.seen.iter().all(|s| s.space == Space::Pio && s.addr >= u64::from(REGS)));
    assert_eq!(e.stats.sync, 7);
}

#[test]
fn mmio_all_widths_and_partial_claims() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    v.mmio_write(MMIO + 8, 8, 0x8877_6655_4433_2211).unwrap();
    assert_eq!(v.mmio_read(MMIO + 8, 8).unwrap(), 0x8877_6655_4433_2211);
    assert_eq!(v.mmio_read(MMIO + 9, 1).unwrap(), 0x22);
    assert_eq!(v.mmio_read(MMIO + 10, 2).unwrap(), 0x4433);
    assert_eq!(v.mmio_read(MMIO + 12, 4).unwrap(), 0x8877_6655);
    // An access that runs past the claimed page is not routed (Xen needs it wholly inside).
    assert_eq!(v.mmio_read(MMIO + 4094, 4).unwrap(), 0xffff_ffff);
    v.mmio_write(MMIO + 4094, 4, 0).unwrap();
    let (m, _) = h.stop();
    assert_eq!(m.seen.len(), 5, "the straddling accesses never reached the device model");
}

#[test]
fn pci_config_via_cf8_reaches_only_registered_functions() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    // 00:03.0 register 0x40.
    v.pio_write(0xcf8, 4, 0x8000_1840).unwrap();
    assert_eq!(h.sim.pci_cf8(), 0x8000_1840, "Xen latches 4-byte writes to 0xcf8");
    v.pio_write(0xcfc, 4, 0xdead_beef).unwrap();
    assert_eq!(v.pio_read(0xcfc, 4).unwrap(), 0xdead_beef);
    assert_eq!(v.pio_read(0xcfe, 2).unwrap(), 0xdead, "byte lane selects reg+2");
    assert_eq!(v.pio_read(0xcff, 1).unwrap(), 0xde);
    // 00:04.0 is not registered: dropped, all-ones.
    v.pio_write(0xcf8, 4, 0x8000_2000).unwrap();
    assert_eq!(v.pio_read(0xcfc, 4).unwrap(), 0xffff_ffff);
    // Enable bit clear: an ordinary unclaimed port.
    v.pio_write(0xcf8, 4, 0x0000_1840).unwrap();
    assert_eq!(v.pio_read(0xcfc, 4).unwrap(), 0xffff_ffff);
    let (m, _) = h.stop();
    let cfg: Vec<_> = m.seen.iter().filter(|s| matches!(s.space, Space::PciConfig(_))).collect();
    assert_eq!(cfg.len(), 4);
    assert!(cfg.iter().all(|s| s.space == Space::PciConfig(PCI_FN)));
    assert_eq!((cfg[2].addr, cfg[2].size), (0x42, 2));
    assert_eq!((cfg[3].addr, cfg[3].size), (0x43, 1));
    assert_eq!(&m.config[0x40..0x44], &[0xef, 0xbe, 0xad, 0xde]);
}

fn ram_u32s(h: &Harness, gpa: u64, n: usize) -> Vec<u32> {
    let mut b = vec![0u8; n * 4];
    h.sim.ram_read(gpa, &mut b).unwrap();
    b.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn rep_ins_forward_and_backward_across_pages() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    // 8 dwords starting 2 bytes before a page boundary: one element straddles the boundary.
    v.rep_ins(FIFO, 4, 8, 0x1ffe, false).unwrap();
    assert_eq!(ram_u32s(&h, 0x1ffe, 8), (0..8).collect::<Vec<u32>>());
    // df=1: the buffer grows downwards from 0x3002 across the 0x3000 boundary.
    v.rep_ins(FIFO, 4, 6, 0x3002, true).unwrap();
    let got = ram_u32s(&h, 0x3002 - 5 * 4, 6);
    assert_eq!(got, vec![13, 12, 11, 10, 9, 8]);
    let (m, e) = h.stop();
    assert_eq!(m.fifo_next, 14);
    assert!(e.stats.sync >= 4, "Xen-style clipping split the strings into several requests");
}

#[test]
fn rep_outs_both_directions() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    let words: Vec<u8> = (1u16..=10).flat_map(|w| w.to_le_bytes()).collect();
    h.sim.ram_write(0x4ff8, &words).unwrap(); // crosses 0x5000
    v.rep_outs(FIFO, 2, 10, 0x4ff8, false).unwrap();
    v.rep_outs(FIFO, 2, 10, 0x4ff8 + 18, true).unwrap();
    let (m, _) = h.stop();
    let mut want: Vec<u64> = (1..=10).collect();
    want.extend((1..=10).rev());
    assert_eq!(m.fifo_written, want);
}

#[test]
fn movs_and_stos_with_mmio() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    let src: Vec<u8> = (0..64u8).collect();
    h.sim.ram_write(0x7fe0, &src).unwrap(); // crosses 0x8000
    v.movs_to_mmio(MMIO + 0x100, 0x7fe0, 4, 16, false).unwrap();
    v.movs_from_mmio(MMIO + 0x100, 0x9ff0, 4, 16, false).unwrap(); // RAM crosses 0xa000
    let mut back = vec![0u8; 64];
    h.sim.ram_read(0x9ff0, &mut back).unwrap();
    assert_eq!(back, src);
    // df=1 copy: MMIO and RAM both walk downwards from their last element.
    v.movs_from_mmio(MMIO + 0x100 + 60, 0x20_0000 + 60, 4, 16, true).unwrap();
    let mut back2 = vec![0u8; 64];
    h.sim.ram_read(0x20_0000, &mut back2).unwrap();
    assert_eq!(back2, src);
    v.stos_mmio(MMIO + 0x200, 8, 4, 0x0102_0304_0506_0708, false).unwrap();
    v.stos_mmio(MMIO + 0x300, 2, 4, 0xabcd, true).unwrap();
    let (m, _) = h.stop();
    assert_eq!(&m.mmio[0x100..0x140], &src[..]);
    for i in 0..4 {
        assert_eq!(&m.mmio[0x200 + 8 * i..0x208 + 8 * i], &0x0102_0304_0506_0708u64.to_le_bytes());
    }
    assert_eq!(&m.mmio[0x2fa..0x302], &[0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab]);
}

#[test]
fn buffered_writes_with_quad_words_and_wraparound() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    let mut expected = Vec::new();
    // 1300 entries, a third of them 8-byte (two slots): the ring (511 slots) wraps several times.
    // The engine drains as it goes; when the ring is momentarily full the write is refused
    // (IOREQ_STATUS_UNHANDLED) and retried, as Xen falls back to a synchronous request.
    for i in 0..1300u64 {
        let (size, val) = match i % 3 {
            0 => (8u32, 0x1111_0000_0000_0000 | i),
            1 => (4, i),
            _ => (2, i & 0xffff),
        };
        let off = (i % 64) * 8;
        let mut tries = 0;
        loop {
            match v.buffered_write(IOREQ_TYPE_COPY, VGA + off, size, val) {
                Ok(()) => break,
                Err(q35dm::sim::SimError::Unhandled) if tries < 100_000 => {
                    tries += 1;
                    std::thread::yield_now()
                }
                Err(e) => panic!("entry {i}: {e}"),
            }
        }
        expected.push((VGA + off, size as u8, val));
    }
    v.buffered_write(IOREQ_TYPE_PIO, u64::from(REGS), 1, 0x5a).unwrap();
    // Above 1 MiB nothing is buffered (the ring has 20 address bits).
    assert_eq!(v.buffered_write(IOREQ_TYPE_COPY, MMIO, 4, 1), Err(q35dm::sim::SimError::Unhandled));
    v.send_timeoffset(0x1234_5678_9abc_def0).unwrap();
    // A synchronous request drains the ring first, so everything is visible after it.
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 0x5a);
    let (m, e) = h.stop();
    let got: Vec<_> =
        m.seen.iter().filter(|s| s.space == Space::Mmio).map(|s| (s.addr, s.size, s.write.unwrap())).collect();
    assert_eq!(got, expected, "every buffered write, in order");
    assert_eq!(m.timeoffsets, vec![0x1234_5678_9abc_def0]);
    assert_eq!(e.stats.buffered, 1302);
    let (rp, wp) = h
        .sim
        .with_buffered_page(h.server_id, |p| {
            (
                p.read_pointer().load(std::sync::atomic::Ordering::SeqCst),
                p.write_pointer().load(std::sync::atomic::Ordering::SeqCst),
            )
        })
        .unwrap();
    assert_eq!(rp, wp);
    // Xen normalises the pair on each write while read_pointer >= 511, so after 1300+ entries
    // (several laps of the 511-slot ring) the pointers stay below two laps.
    assert!(rp < 2 * 511, "ATOMIC handling keeps the pointers normalised (rp={rp})");
}

#[test]
fn invalidate_drops_guest_mappings() {
    let slot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let h = Harness::with_sys(cfg(1), move |sim| {
        let r = Arc::new(RecordingSys::new(sim.open().unwrap(), false));
        *s2.lock().unwrap() = Some(r.clone());
        r
    });
    let rec: Arc<RecordingSys<SimSys>> = slot.lock().unwrap().clone().unwrap();
    let batches = || rec.records().iter().filter(|r| r.request == IOCTL_PRIVCMD_MMAPBATCH_V2).count();
    let v = h.sim.vcpu(0);
    v.rep_ins(FIFO, 1, 4, 0x1000, false).unwrap();
    v.rep_ins(FIFO, 1, 4, 0x1004, false).unwrap();
    assert_eq!(batches(), 1, "the second string reuses the cached mapping");
    v.invalidate().unwrap();
    v.rep_ins(FIFO, 1, 4, 0x1008, false).unwrap();
    assert_eq!(batches(), 2, "INVALIDATE dropped the mapping, so it was mapped again");
    let mut b = [0u8; 12];
    h.sim.ram_read(0x1000, &mut b).unwrap();
    assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // The INVALIDATE request itself reached no device.
    let (m, e) = h.stop();
    assert_eq!(m.seen.len(), 12);
    assert_eq!(e.stats.sync, 4);
}

#[test]
fn several_vcpus_at_once() {
    let h = Arc::new(Harness::new(cfg(4)));
    let threads: Vec<_> = (0..4u32)
        .map(|id| {
            let h = h.clone();
            std::thread::spawn(move || {
                let v = h.sim.vcpu(id);
                let port = REGS + (id as u16) * 4;
                for i in 0..500u32 {
                    let val = (id << 24) | i;
                    v.pio_write(port, 4, val).unwrap();
                    assert_eq!(v.pio_read(port, 4).unwrap(), val);
                    v.mmio_write(MMIO + u64::from(id) * 8, 8, u64::from(val)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = h.stats();
    assert_eq!(stats.sync, 4 * 500 * 3);
    let (m, _) = h.stop();
    for id in 0..4u32 {
        let off = id as usize * 4;
        assert_eq!(u32::from_le_bytes(m.regs[off..off + 4].try_into().unwrap()), (id << 24) | 499);
    }
}

#[test]
fn side_effects_reach_the_hypervisor() {
    let h = Harness::new(cfg(1));
    let v = h.sim.vcpu(0);
    for n in 1..=6 {
        v.pio_write(IRQ_PORT, 1, n).unwrap();
    }
    h.stop();
    assert_eq!(
        h.sim.recorded(),
        vec![
            Recorded::Irq(IrqEvent::PciIntx { device: 3, intx: 0, level: 1 }),
            Recorded::Irq(IrqEvent::PciIntx { device: 3, intx: 0, level: 0 }),
            Recorded::Irq(IrqEvent::Msi { addr: 0xfee0_0000, data: 0x4041 }),
            Recorded::Irq(IrqEvent::IsaIrq { irq: 5, level: 1 }),
            Recorded::Irq(IrqEvent::LinkRoute { link: 2, irq: 11 }),
            Recorded::Shutdown(0),
        ]
    );
}
