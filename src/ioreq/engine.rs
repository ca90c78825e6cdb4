//! The ioreq engine: serves the synchronous slots and the buffered ring of one ioreq server.
//!
//! Per event (xen-abi.md §1.2): read the pending ports, unmask each one at once, then for a vCPU
//! port check the slot is READY (otherwise the event is spurious and ignored), copy the request
//! out once, mark it INPROCESS, drain the buffered ring (ordering), decode and execute the copy,
//! write `data`, publish IORESP_READY with release ordering and notify. The device model never
//! writes NONE and never moves a state backwards; every READY request is answered.

use std::sync::atomic::Ordering;

use log::debug;
use thiserror::Error;
use xen_bindings::ioreq::{
    BufIoreq, Ioreq, IOREQ_BUFFER_SLOT_NUM, IOREQ_READ, IOREQ_TYPE_COPY, IOREQ_TYPE_PIO, IOREQ_TYPE_TIMEOFFSET,
    IOREQ_WRITE, STATE_IOREQ_INPROCESS, STATE_IOREQ_READY, STATE_IORESP_READY,
};
use xen_bindings::sys::SysError;

use crate::device::{ones, Effect, Effects, IoHandler};
use crate::ioreq::decode::{decode, Decoded, Dir, IoAccess, Space};
use crate::memory::GuestMemory;
use crate::xen::IoreqServer;
use crate::{guest_error, guest_warn};

/// Failures of the engine itself (not of guest requests, which are always answered).
#[derive(Debug, Error)]
pub enum EngineError {
    /// Reading the event channel failed.
    #[error("reading pending event channels: {0}")]
    Evtchn(#[from] SysError),
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Synchronous requests answered.
    pub sync: u64,
    /// Buffered entries consumed.
    pub buffered: u64,
    /// Requests refused by validation (answered with all-ones / dropped).
    pub rejected: u64,
    /// Events whose slot was not READY.
    pub spurious: u64,
    /// Guest-memory failures during string I/O.
    pub mem_faults: u64,
    /// Config requests logged at start-up.
    pub config_logged: u64,
}

/// Serves one ioreq server.
pub struct Engine {
    server: IoreqServer,
    mem: Box<dyn GuestMemory>,
    fx: Effects,
    ports: Vec<u32>,
    scratch: Vec<u8>,
    /// Counters.
    pub stats: Stats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("server", &self.server).field("stats", &self.stats).finish()
    }
}

impl Engine {
    /// An engine for `server`, using `mem` for guest RAM.
    pub fn new(server: IoreqServer, mem: Box<dyn GuestMemory>) -> Self {
        Self { server, mem, fx: Vec::new(), ports: Vec::new(), scratch: Vec::new(), stats: Stats::default() }
    }

    /// The ioreq server.
    pub fn server(&self) -> &IoreqServer {
        &self.server
    }

    /// The ioreq server, mutably (to claim ranges).
    pub fn server_mut(&mut self) -> &mut IoreqServer {
        &mut self.server
    }

    /// Guest memory.
    pub fn mem(&mut self) -> &mut dyn GuestMemory {
        self.mem.as_mut()
    }

    /// Tears the server down (disable, destroy, unmap, unbind).
    pub fn shutdown(&mut self) {
        if let Err(e) = self.server.teardown() {
            log::warn!("ioreq server teardown: {e}");
        }
    }

    /// Handles every pending event. Returns how many ports fired.
    pub fn process(&mut self, h: &mut dyn IoHandler) -> Result<usize, EngineError> {
        let mut ports = std::mem::take(&mut self.ports);
        ports.clear();
        let sys = self.server.dm().sys().clone();
        let r = sys.evtchn_pending(&mut ports);
        let n = ports.len();
        for &port in &ports {
            if let Err(e) = sys.evtchn_unmask(port) {
                guest_error!("unmasking port {port}: {e}");
            }
            if Some(port) == self.server.buf_port() {
                self.drain_buffered(h);
            } else if let Some(vcpu) = self.server.vcpu_for_port(port) {
                self.serve_vcpu(vcpu, port, h);
            } else {
                guest_warn!("event on port {port}, which belongs to no vCPU of this server");
            }
        }
        self.ports = ports;
        r?;
        Ok(n)
    }

    /// Serves every slot that is READY, whether or not its event arrived (after event-channel
    /// trouble, so no vCPU stays blocked on a lost notification).
    pub fn rescan(&mut self, h: &mut dyn IoHandler) {
        let ports: Vec<(usize, u32)> = self.server.vcpu_ports().iter().copied().enumerate().collect();
        for (vcpu, port) in ports {
            let ready = self.server.page().and_then(|p| p.slot(vcpu)).is_some_and(|s| s.state() == STATE_IOREQ_READY);
            if ready {
                self.serve_vcpu(vcpu, port, h);
            }
        }
        self.drain_buffered(h);
    }

    fn serve_vcpu(&mut self, vcpu: usize, port: u32, h: &mut dyn IoHandler) {
        // Copy the request out once; everything below works on the copy.
        let req = {
            let Some(slot) = self.server.page().and_then(|p| p.slot(vcpu)) else {
                return;
            };
            let state = slot.state();
            if state != STATE_IOREQ_READY {
                self.stats.spurious += 1;
                debug!("vCPU {vcpu}: event with slot state {state}, not READY: ignored");
                return;
            }
            let req = slot.snapshot();
            slot.set_state(STATE_IOREQ_INPROCESS);
            req
        };
        // Buffered writes that Xen queued before this request must be seen first.
        self.drain_buffered(h);
        let data = self.handle(h, &req, vcpu);
        self.apply_effects();
        self.stats.sync += 1;
        let Some(slot) = self.server.page().and_then(|p| p.slot(vcpu)) else {
            return;
        };
        let now = slot.state();
        if now != STATE_IOREQ_INPROCESS {
            guest_warn!("vCPU {vcpu}: slot state changed to {now} while its request was handled; answering anyway");
        }
        slot.set_data(data);
        slot.set_state(STATE_IORESP_READY);
        if let Err(e) = self.server.dm().sys().evtchn_notify(port) {
            guest_error!("vCPU {vcpu}: notifying port {port}: {e}");
        }
    }

    /// Decodes and executes one (copied) request; returns the value for `data`. Effects are left
    /// in [`Engine::effects_mut`] for the caller to apply.
    pub fn handle(&mut self, h: &mut dyn IoHandler, req: &Ioreq, vcpu: usize) -> u64 {
        match decode(req) {
            Ok(Decoded::Access(a)) => {
                let v = self.execute(h, &a);
                if let Space::PciConfig(sbdf) = a.space {
                    // The first config cycles show the firmware found the board (and help debugging).
                    if self.stats.config_logged < 16 {
                        self.stats.config_logged += 1;
                        let what = if a.dir == Dir::Read {
                            format!("read {:#x}", v & ones(a.size))
                        } else {
                            format!("write {:#x}", a.data)
                        };
                        log::info!("vCPU {vcpu}: config {sbdf} reg {:#05x} size {}: {what}", a.addr, a.size);
                    }
                }
                v
            }
            Ok(Decoded::Invalidate) => {
                self.mem.invalidate();
                req.data
            }
            Ok(Decoded::TimeOffset(off)) => {
                h.time_offset(off);
                req.data
            }
            Err(e) => {
                self.stats.rejected += 1;
                guest_warn!(
                    "vCPU {vcpu}: refused ioreq (type {} addr {:#x} size {} count {} dir {} ptr {}): {e}",
                    req.type_,
                    req.addr,
                    req.size,
                    req.count,
                    req.dir(),
                    req.data_is_ptr()
                );
                if req.dir() == IOREQ_READ {
                    u64::MAX
                } else {
                    req.data
                }
            }
        }
    }

    /// Executes a validated access (string forms included) and returns the value for `data`.
    /// Used for guest requests and for monitor accesses on real Xen.
    pub fn execute(&mut self, h: &mut dyn IoHandler, a: &IoAccess) -> u64 {
        let size = a.size;
        let mask = ones(size);
        if !a.data_is_ptr {
            let mut last = a.data;
            for i in 0..a.count {
                let addr = a.element_addr(i);
                match a.dir {
                    Dir::Read => last = h.read_mem(a.space, addr, size, &mut self.fx, self.mem.as_mut()) & mask,
                    Dir::Write => h.write_mem(a.space, addr, size, a.data & mask, &mut self.fx, self.mem.as_mut()),
                }
            }
            return if a.dir == Dir::Read { last } else { a.data };
        }
        // String I/O: check the whole RAM buffer is accessible before touching any device, so a
        // bad pointer has no side effect at all.
        let sz = u64::from(size);
        let span = sz * u64::from(a.count);
        let lo = if a.df { a.data.wrapping_sub(span - sz) } else { a.data };
        if lo.checked_add(span).is_none() {
            self.stats.mem_faults += 1;
            guest_warn!("string I/O buffer {:#x}+{span:#x} wraps the address space; request dropped", a.data);
            return a.data;
        }
        self.scratch.resize(span as usize, 0);
        if let Err(e) = self.mem.read(lo, &mut self.scratch) {
            self.stats.mem_faults += 1;
            guest_warn!("string I/O on {:?} {:#x}: {e}; request dropped", a.space, a.addr);
            return a.data;
        }
        for i in 0..a.count {
            let addr = a.element_addr(i);
            let ptr = a.element_ptr(i);
            let mut b = [0u8; 8];
            let bytes = b.get_mut(..size as usize).unwrap_or(&mut []);
            match a.dir {
                Dir::Read => {
                    let v = h.read_mem(a.space, addr, size, &mut self.fx, self.mem.as_mut()) & mask;
                    bytes.copy_from_slice(v.to_le_bytes().get(..size as usize).unwrap_or(&[]));
                    if let Err(e) = self.mem.write(ptr, bytes) {
                        self.stats.mem_faults += 1;
                        guest_warn!("string I/O write-back: {e}");
                        break;
                    }
                }
                Dir::Write => {
                    if let Err(e) = self.mem.read(ptr, bytes) {
                        self.stats.mem_faults += 1;
                        guest_warn!("string I/O fetch: {e}");
                        break;
                    }
                    h.write_mem(a.space, addr, size, u64::from_le_bytes(b), &mut self.fx, self.mem.as_mut());
                }
            }
        }
        a.data
    }

    /// Consumes everything in the buffered ring.
    pub fn drain_buffered(&mut self, h: &mut dyn IoHandler) {
        let mut budget = 2 * IOREQ_BUFFER_SLOT_NUM;
        loop {
            let Some(pg) = self.server.buffered() else { return };
            if budget == 0 {
                return;
            }
            budget -= 1;
            // One atomic load of both pointers gives a consistent pair even while Xen normalises.
            let both = pg.pointers().load(Ordering::Acquire);
            let (rp, wp) = (both as u32, (both >> 32) as u32);
            if rp == wp {
                return;
            }
            let avail = wp.wrapping_sub(rp);
            if avail > IOREQ_BUFFER_SLOT_NUM {
                self.stats.rejected += 1;
                guest_error!(
                    "buffered ring corrupt: write_pointer {wp} - read_pointer {rp} = {avail} > {IOREQ_BUFFER_SLOT_NUM}; discarding it"
                );
                pg.read_pointer().fetch_add(avail, Ordering::Release);
                return;
            }
            let b = BufIoreq::decode(pg.slot(rp));
            let size: u8 = 1 << b.size_log2;
            let mut data = u64::from(b.data);
            let mut used = 1;
            if size == 8 {
                if avail < 2 {
                    self.stats.rejected += 1;
                    guest_error!(
                        "buffered ring: 8-byte entry at {rp} has only one slot (half a quad-word); discarding it"
                    );
                    pg.read_pointer().fetch_add(avail, Ordering::Release);
                    return;
                }
                data |= u64::from(BufIoreq::decode(pg.slot(rp.wrapping_add(1))).data) << 32;
                used = 2;
            }
            let _ = pg;
            match (b.type_, b.dir) {
                (IOREQ_TYPE_TIMEOFFSET, _) => h.time_offset(data),
                (IOREQ_TYPE_PIO, IOREQ_WRITE) if size <= 4 => {
                    h.write_mem(Space::Pio, u64::from(b.addr), size, data, &mut self.fx, self.mem.as_mut())
                }
                (IOREQ_TYPE_COPY, IOREQ_WRITE) => {
                    h.write_mem(Space::Mmio, u64::from(b.addr), size, data, &mut self.fx, self.mem.as_mut())
                }
                (t, d) => {
                    self.stats.rejected += 1;
                    guest_warn!("buffered ring: entry type {t} dir {d} size {size} at {:#x} is not a write Xen buffers; skipped", b.addr);
                }
            }
            self.stats.buffered += 1;
            self.apply_effects();
            if let Some(pg) = self.server.buffered() {
                pg.read_pointer().fetch_add(used, Ordering::Release);
            }
        }
    }

    /// Applies the side effects collected from the machine.
    pub fn apply_effects(&mut self) {
        if self.fx.is_empty() {
            return;
        }
        let fx = std::mem::take(&mut self.fx);
        for e in &fx {
            self.apply(e);
        }
        self.fx = fx;
        self.fx.clear();
    }

    /// Applies one effect.
    pub fn apply(&mut self, e: &Effect) {
        let r = match *e {
            Effect::MapRange(r) => self.server.map_range(r).map_err(|e| e.to_string()),
            Effect::UnmapRange(r) => self.server.unmap_range(r).map_err(|e| e.to_string()),
            Effect::PciIntx { device, intx, level } => {
                self.server.dm().set_pci_intx_level(device, intx, level).map_err(|e| e.to_string())
            }
            Effect::IsaIrq { irq, level } => self.server.dm().set_isa_irq_level(irq, level).map_err(|e| e.to_string()),
            Effect::LinkRoute { link, irq } => {
                self.server.dm().set_pci_link_route(link, irq).map_err(|e| e.to_string())
            }
            Effect::Msi { addr, data } => self.server.dm().inject_msi(addr, data).map_err(|e| e.to_string()),
            Effect::Shutdown(reason) => {
                log::info!("guest requested shutdown (reason {reason})");
                self.server.dm().remote_shutdown(reason).map_err(|e| e.to_string())
            }
        };
        if let Err(msg) = r {
            guest_error!("applying {e:?}: {msg}");
        }
    }

    /// Collected effects not yet applied (for callers that run machine code outside a request).
    pub fn effects_mut(&mut self) -> &mut Effects {
        &mut self.fx
    }

    /// Performs a monitor access through the same execution path as a guest request.
    pub fn monitor_access(
        &mut self,
        h: &mut dyn IoHandler,
        space: Space,
        addr: u64,
        size: u8,
        write: Option<u64>,
    ) -> u64 {
        let a = IoAccess {
            space,
            addr,
            size,
            count: 1,
            dir: if write.is_some() { Dir::Write } else { Dir::Read },
            data: write.unwrap_or(0),
            data_is_ptr: false,
            df: false,
        };
        let v = self.execute(h, &a);
        self.apply_effects();
        v
    }
}
