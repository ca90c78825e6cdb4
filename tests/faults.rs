//! Faults the device model must survive (security.md §3.2): event-channel read errors (events
//! lost), persistent event-channel failure (the guest is shut down, nothing left blocked), and
//! an AER storm with bounded memory and rate-limited logs.

mod support;

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use q35dm::sim::{Recorded, SimConfig, SimSys};
use support::*;
use xen_bindings::mem::MappedRegion;
use xen_bindings::sys::{SysError, SysResult, XenSys};

/// SimSys with injectable event-channel read failures that also lose the pending events.
struct FaultySys {
    inner: SimSys,
    fail_reads: Arc<AtomicU32>,
}

impl XenSys for FaultySys {
    fn dm_op(&self, dom: u16, bufs: &mut [&mut [u8]]) -> SysResult<()> {
        self.inner.dm_op(dom, bufs)
    }
    fn mmap_resource(&self, dom: u16, t: u32, id: u32, idx: u32, num: u64) -> SysResult<MappedRegion> {
        self.inner.mmap_resource(dom, t, id, idx, num)
    }
    fn mmap_batch(&self, dom: u16, gfns: &[u64], errs: &mut [i32]) -> SysResult<MappedRegion> {
        self.inner.mmap_batch(dom, gfns, errs)
    }
    fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> SysResult<i64> {
        self.inner.hypercall(op, leading, buf)
    }
    fn privcmd_restrict(&self, dom: u16) -> SysResult<()> {
        self.inner.privcmd_restrict(dom)
    }
    fn evtchn_bind_interdomain(&self, d: u32, p: u32) -> SysResult<u32> {
        self.inner.evtchn_bind_interdomain(d, p)
    }
    fn evtchn_bind_unbound_port(&self, d: u32) -> SysResult<u32> {
        self.inner.evtchn_bind_unbound_port(d)
    }
    fn evtchn_unbind(&self, p: u32) -> SysResult<()> {
        self.inner.evtchn_unbind(p)
    }
    fn evtchn_notify(&self, p: u32) -> SysResult<()> {
        self.inner.evtchn_notify(p)
    }
    fn evtchn_reset(&self) -> SysResult<()> {
        if self.fail_reads.load(Ordering::SeqCst) == u32::MAX {
            return Err(SysError::new("IOCTL_EVTCHN_RESET", libc::EIO));
        }
        self.inner.evtchn_reset()
    }
    fn evtchn_restrict_domid(&self, d: u16) -> SysResult<()> {
        self.inner.evtchn_restrict_domid(d)
    }
    fn evtchn_pending(&self, out: &mut Vec<u32>) -> SysResult<()> {
        let left = self.fail_reads.load(Ordering::SeqCst);
        if left == u32::MAX {
            // A broken fd: readable, but every read fails.
            return Err(SysError::new("read /dev/xen/evtchn", libc::EFBIG));
        }
        if left > 0 {
            self.fail_reads.store(left - 1, Ordering::SeqCst);
            // The ports are consumed (and stay masked) but never delivered: lost events.
            let mut lost = Vec::new();
            self.inner.evtchn_pending(&mut lost)?;
            for p in lost {
                let _ = self.inner.evtchn_unmask(p);
            }
            return Err(SysError::new("read /dev/xen/evtchn", libc::EIO));
        }
        self.inner.evtchn_pending(out)
    }
    fn evtchn_unmask(&self, p: u32) -> SysResult<()> {
        self.inner.evtchn_unmask(p)
    }
    fn evtchn_fd(&self) -> BorrowedFd<'_> {
        self.inner.evtchn_fd()
    }
}

fn harness(fail: Arc<AtomicU32>) -> Harness {
    let cfg = SimConfig { nr_vcpus: 2, ram_below_4g: 16 << 20, ..Default::default() };
    Harness::with_sys(cfg, move |sim| Arc::new(FaultySys { inner: sim.open().unwrap(), fail_reads: fail }))
}

#[test]
fn lost_events_are_recovered_and_no_vcpu_stays_blocked() {
    let fail = Arc::new(AtomicU32::new(0));
    let h = harness(fail.clone());
    let v = h.sim.vcpu(0);
    v.pio_write(REGS, 4, 0x1111).unwrap();
    for i in 0..20u32 {
        fail.store(3, Ordering::SeqCst);
        v.pio_write(REGS, 4, i).unwrap();
        assert_eq!(v.pio_read(REGS, 4).unwrap(), i, "round {i}");
    }
    let (_, e) = h.stop();
    assert!(e.stats.sync >= 41);
    assert!(h.sim.crashed().is_none());
    assert!(!h.sim.recorded().contains(&Recorded::Shutdown(xen_bindings::dm_op::SHUTDOWN_CRASH)));
}

#[test]
fn persistent_event_channel_failure_shuts_the_guest_down() {
    let fail = Arc::new(AtomicU32::new(0));
    let h = harness(fail.clone());
    let v = h.sim.vcpu(0);
    fail.store(u32::MAX, Ordering::SeqCst);
    // This request's event is lost for good; the device model gives up after its retries.
    let _ = std::thread::spawn(move || v.pio_read(REGS, 4));
    let t = std::time::Instant::now();
    while !h.sim.recorded().contains(&Recorded::Shutdown(xen_bindings::dm_op::SHUTDOWN_CRASH)) {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "no shutdown");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

#[path = "support/board.rs"]
mod board;

#[test]
fn aer_storm_keeps_memory_and_logs_bounded() {
    let b = board::Board::with(128, |m| {
        for r in ["q35dm-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0", "q35dm-test-endpoint,id=ep1,bus=rp1"]
        {
            let mut fx = Vec::new();
            m.add_request(&q35dm::devices::DeviceRequest::parse(r).unwrap(), false, &mut fx).unwrap();
        }
    });
    b.cfg_write(0xe0, 0x18, 4, 0x00_01_01_00);
    let storm = |n: u32| {
        b.handle
            .call(move |m, e| {
                let ep = m.pci.find_by_id("ep1").unwrap();
                let errs = [
                    q35dm::pcie::aer::AerErrorSpec::uncorrectable(0x1000).with_header([1, 2, 3, 4]),
                    q35dm::pcie::aer::AerErrorSpec::correctable(0x40),
                ];
                for _ in 0..n {
                    let _ = m.aer_inject(ep, &errs, e.effects_mut());
                    e.apply_effects();
                }
            })
            .unwrap()
    };
    storm(10_000);
    let logs_before = q35dm::logging::captured().len();
    let before = rss_kib();
    let t = std::time::Instant::now();
    storm(100_000);
    let took = t.elapsed();
    let growth = rss_kib().saturating_sub(before);
    let logs = q35dm::logging::captured().len() - logs_before;
    eprintln!("10^5 injections in {took:?}, RSS growth {growth} KiB, {logs} log lines");
    assert!(growth < 1024, "RSS grew by {growth} KiB");
    assert!(logs < 100, "{logs} log lines");
    assert!(took < std::time::Duration::from_secs(20));
}
