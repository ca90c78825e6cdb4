//! Hostile or impossible requests: each is answered (reads all-ones), logged once (rate-limited),
//! touches nothing, and leaves no vCPU blocked.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use q35dm::sim::SimConfig;
use support::*;
use xen_bindings::ioreq::*;

fn cfg() -> SimConfig {
    SimConfig { nr_vcpus: 2, ram_below_4g: 16 << 20, ..Default::default() }
}

fn raw(type_: u8, addr: u64, size: u32, count: u32, dir: u8, data: u64, ptr: bool) -> Ioreq {
    Ioreq {
        addr,
        data,
        count,
        size,
        vp_eport: 0,
        pad0: 0,
        flags: Ioreq::make_flags(STATE_IOREQ_READY, ptr, dir, false),
        type_,
    }
}

fn log_lines(needle: &str) -> usize {
    q35dm::logging::captured().iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn impossible_sizes_counts_and_types_are_answered_and_touch_nothing() {
    let h = Harness::new(cfg());
    let v = h.sim.vcpu(0);
    let p = u64::from(REGS);
    let cases = [
        ("size 3", raw(IOREQ_TYPE_PIO, p, 3, 1, IOREQ_READ, 0, false)),
        ("size 16", raw(IOREQ_TYPE_COPY, MMIO, 16, 1, IOREQ_READ, 0, false)),
        ("PIO size 8", raw(IOREQ_TYPE_PIO, p, 8, 1, IOREQ_READ, 0, false)),
        ("count 0", raw(IOREQ_TYPE_COPY, MMIO, 4, 0, IOREQ_READ, 0, false)),
        ("count 2^32-1", raw(IOREQ_TYPE_PIO, u64::from(FIFO), 1, u32::MAX, IOREQ_READ, 0x1000, true)),
        ("unknown type", raw(5, p, 4, 1, IOREQ_READ, 0, false)),
        ("port beyond 0xffff", raw(IOREQ_TYPE_PIO, 0x1_0000, 1, 1, IOREQ_READ, 0, false)),
        (
            "config reg beyond 4K",
            raw(IOREQ_TYPE_PCI_CONFIG, (u64::from(PCI_FN.raw()) << 32) | 0xffe, 4, 1, IOREQ_READ, 0, false),
        ),
    ];
    for (what, req) in cases {
        let data = v.send(h.server_id, req).unwrap_or_else(|e| panic!("{what}: vCPU left blocked or crashed: {e}"));
        assert_eq!(data, u64::MAX, "{what}: a refused read answers all-ones");
    }
    // Refused writes are dropped too.
    v.send(h.server_id, raw(IOREQ_TYPE_PIO, p, 3, 1, IOREQ_WRITE, 0xff, false)).unwrap();
    // The slot is usable again and the machine saw nothing.
    assert_eq!(v.pio_read(REGS, 4).unwrap(), 0);
    let (m, e) = h.stop();
    assert_eq!(m.seen.len(), 1, "only the final valid read reached the machine: {:?}", m.seen);
    assert_eq!(e.stats.rejected, 9);
    assert!(log_lines("refused ioreq") >= 1);
    assert!(h.sim.crashed().is_none());
}

#[test]
fn rejection_logs_are_rate_limited() {
    let h = Harness::new(cfg());
    let v = h.sim.vcpu(1);
    let before = log_lines("refused ioreq");
    for _ in 0..200 {
        v.send(h.server_id, raw(IOREQ_TYPE_COPY, MMIO, 3, 1, IOREQ_READ, 0, false)).unwrap();
    }
    let (_, e) = h.stop();
    assert_eq!(e.stats.rejected, 200);
    let logged = log_lines("refused ioreq") - before;
    assert!(logged <= q35dm::logging::BURST as usize + 1, "{logged} log lines for 200 refusals");
}

#[test]
fn data_pointer_outside_guest_ram_has_no_side_effect() {
    let h = Harness::new(cfg());
    let v = h.sim.vcpu(0);
    // rep ins of 4 dwords into 0xf000_0000 (not RAM): the FIFO must not even be read.
    let d = v.send(h.server_id, raw(IOREQ_TYPE_PIO, u64::from(FIFO), 4, 4, IOREQ_READ, 0xf000_0000, true)).unwrap();
    assert_eq!(d, 0xf000_0000);
    // rep movs from RAM that ends beyond RAM (16 MiB): nothing written to MMIO.
    let end = 16 << 20;
    v.send(h.server_id, raw(IOREQ_TYPE_COPY, MMIO, 4, 4, IOREQ_WRITE, end - 8, true)).unwrap();
    // A pointer that wraps around 2^64 with df=1.
    let mut wrap = raw(IOREQ_TYPE_COPY, MMIO, 4, 4, IOREQ_READ, 4, true);
    wrap.flags |= IOREQ_DF;
    v.send(h.server_id, wrap).unwrap();
    let (m, e) = h.stop();
    assert!(m.seen.is_empty(), "{:?}", m.seen);
    assert_eq!(m.fifo_next, 0);
    assert_eq!(e.stats.mem_faults, 3);
}

#[test]
fn event_on_a_slot_that_is_not_ready_is_ignored() {
    let h = Harness::new(cfg());
    h.sim.notify_vcpu_port(h.server_id, 0).unwrap();
    h.sim.notify_vcpu_port(h.server_id, 1).unwrap();
    // Still serving.
    let v = h.sim.vcpu(0);
    v.pio_write(REGS, 1, 7).unwrap();
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 7);
    let (m, e) = h.stop();
    assert_eq!(e.stats.spurious, 2);
    assert_eq!(m.seen.len(), 2);
    assert!(h.sim.crashed().is_none());
}

#[test]
fn slot_changed_mid_request_uses_the_snapshot() {
    let h = Arc::new(Harness::new(cfg()));
    let sim = h.sim.clone();
    let id = h.server_id;
    let tampered = Arc::new(Mutex::new(false));
    let t2 = tampered.clone();
    h.machine(move |m| {
        m.hook = Some(Box::new(move |s| {
            if s.addr == u64::from(REGS) + 8 {
                // While the device model works on the request, the other side rewrites the slot.
                sim.with_slot(id, 0, |slot| {
                    let mut evil = slot.snapshot();
                    evil.addr = 0xdead;
                    evil.size = 3;
                    evil.type_ = 9;
                    evil.set_state(STATE_IOREQ_READY);
                    slot.post(&evil);
                })
                .unwrap();
                *t2.lock().unwrap() = true;
            }
        }))
    });
    let v = h.sim.vcpu(0);
    v.pio_write(REGS + 8, 4, 0x1234_5678).unwrap();
    assert!(*tampered.lock().unwrap());
    // The next request on the same vCPU works: the state machine was not corrupted.
    assert_eq!(v.pio_read(REGS + 8, 4).unwrap(), 0x1234_5678);
    let h = Arc::try_unwrap(h).ok().expect("only owner");
    let (m, _) = h.stop();
    assert_eq!(m.seen.len(), 2);
    assert_eq!((m.seen[0].addr, m.seen[0].size, m.seen[0].write), (u64::from(REGS) + 8, 4, Some(0x1234_5678)));
    assert!(log_lines("slot state changed") >= 1);
}

#[test]
fn corrupt_buffered_ring_is_discarded_and_recovers() {
    let h = Harness::new(cfg());
    let v = h.sim.vcpu(0);
    // write_pointer - read_pointer > 511.
    h.sim
        .with_buffered_page(h.server_id, |p| {
            let rp = p.read_pointer().load(Ordering::SeqCst);
            p.write_pointer().store(rp + 600, Ordering::SeqCst);
        })
        .unwrap();
    h.sim.notify_buffered(h.server_id).unwrap();
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 0, "sync requests still served");
    // Half a quad-word: an 8-byte entry with only one slot published.
    h.sim
        .with_buffered_page(h.server_id, |p| {
            let rp = p.read_pointer().load(Ordering::SeqCst);
            let b = BufIoreq { type_: IOREQ_TYPE_COPY, dir: IOREQ_WRITE, size_log2: 3, addr: VGA as u32, data: 1 };
            p.set_slot(rp, b.encode());
            p.write_pointer().store(rp + 1, Ordering::SeqCst);
        })
        .unwrap();
    h.sim.notify_buffered(h.server_id).unwrap();
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 0);
    // A read entry (Xen only buffers writes) is skipped.
    h.sim
        .with_buffered_page(h.server_id, |p| {
            let rp = p.read_pointer().load(Ordering::SeqCst);
            let b = BufIoreq { type_: IOREQ_TYPE_COPY, dir: IOREQ_READ, size_log2: 2, addr: VGA as u32, data: 1 };
            p.set_slot(rp, b.encode());
            p.write_pointer().store(rp + 1, Ordering::SeqCst);
        })
        .unwrap();
    h.sim.notify_buffered(h.server_id).unwrap();
    // The ring works normally afterwards.
    v.buffered_write(IOREQ_TYPE_COPY, VGA + 16, 4, 0xabcd).unwrap();
    assert_eq!(v.pio_read(REGS, 1).unwrap(), 0);
    let (m, e) = h.stop();
    let mmio: Vec<_> = m.seen.iter().filter(|s| s.space == q35dm::ioreq::Space::Mmio).collect();
    assert_eq!(mmio.len(), 1, "only the valid buffered write reached the machine: {mmio:?}");
    assert_eq!(mmio[0].write, Some(0xabcd));
    assert_eq!(e.stats.rejected, 3);
    assert!(log_lines("buffered ring corrupt") >= 1);
    assert!(log_lines("half a quad-word") >= 1);
}
