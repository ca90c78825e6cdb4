//! The guest side: a vCPU that performs port, MMIO and string I/O the way Xen's emulator turns
//! them into ioreqs (`hvmemul_do_io`, `ioreq_server_select`, `ioreq_send`, `wait_for_io`).

use std::time::Instant;

use xen_bindings::ioreq::{
    BufIoreq, Ioreq, IOREQ_BUFFER_SLOT_NUM, IOREQ_READ, IOREQ_TYPE_COPY, IOREQ_TYPE_INVALIDATE, IOREQ_TYPE_PCI_CONFIG,
    IOREQ_TYPE_PIO, IOREQ_TYPE_TIMEOFFSET, IOREQ_WRITE, PAGE_SIZE, STATE_IOREQ_INPROCESS, STATE_IOREQ_NONE,
    STATE_IOREQ_READY, STATE_IORESP_READY,
};
use xen_bindings::ioreq::{HVM_IOREQSRV_BUFIOREQ_ATOMIC, HVM_IOREQSRV_BUFIOREQ_OFF};
use xen_bindings::page::BufferedPage;

use super::{SimError, SimXen, State};

/// One guest access before server selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIo {
    /// `IOREQ_TYPE_PIO` or `IOREQ_TYPE_COPY`.
    pub type_: u8,
    /// Port or guest physical address.
    pub addr: u64,
    /// Element size.
    pub size: u32,
    /// Element count.
    pub count: u32,
    /// `IOREQ_READ` or `IOREQ_WRITE`.
    pub dir: u8,
    /// Value, or guest RAM address when `data_is_ptr`.
    pub data: u64,
    /// `data` points into guest RAM.
    pub data_is_ptr: bool,
    /// Step downwards.
    pub df: bool,
}

enum Target {
    Server { id: u16, type_: u8, addr: u64 },
    Unclaimed,
}

/// A vCPU of the simulated guest. Methods block like a vCPU waiting for its device model.
#[derive(Clone, Debug)]
pub struct SimVcpu {
    xen: SimXen,
    id: u32,
}

const PAGE: u64 = PAGE_SIZE as u64;

impl SimVcpu {
    pub(super) fn new(xen: SimXen, id: u32) -> Self {
        Self { xen, id }
    }

    /// The vCPU number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `in` of `size` bytes.
    pub fn pio_read(&self, port: u16, size: u32) -> Result<u32, SimError> {
        let v = self.io(GuestIo {
            type_: IOREQ_TYPE_PIO,
            addr: u64::from(port),
            size,
            count: 1,
            dir: IOREQ_READ,
            data: 0,
            data_is_ptr: false,
            df: false,
        })?;
        Ok(v as u32)
    }

    /// `out` of `size` bytes.
    pub fn pio_write(&self, port: u16, size: u32, val: u32) -> Result<(), SimError> {
        self.io(GuestIo {
            type_: IOREQ_TYPE_PIO,
            addr: u64::from(port),
            size,
            count: 1,
            dir: IOREQ_WRITE,
            data: u64::from(val),
            data_is_ptr: false,
            df: false,
        })
        .map(|_| ())
    }

    /// An MMIO load.
    pub fn mmio_read(&self, gpa: u64, size: u32) -> Result<u64, SimError> {
        self.io(GuestIo {
            type_: IOREQ_TYPE_COPY,
            addr: gpa,
            size,
            count: 1,
            dir: IOREQ_READ,
            data: 0,
            data_is_ptr: false,
            df: false,
        })
    }

    /// An MMIO store.
    pub fn mmio_write(&self, gpa: u64, size: u32, val: u64) -> Result<(), SimError> {
        self.io(GuestIo {
            type_: IOREQ_TYPE_COPY,
            addr: gpa,
            size,
            count: 1,
            dir: IOREQ_WRITE,
            data: val,
            data_is_ptr: false,
            df: false,
        })
        .map(|_| ())
    }

    /// `rep ins`: `count` reads of `port` stored at `buf` (stepping down with `df`).
    pub fn rep_ins(&self, port: u16, size: u32, count: u32, buf: u64, df: bool) -> Result<(), SimError> {
        self.rep(GuestIo {
            type_: IOREQ_TYPE_PIO,
            addr: u64::from(port),
            size,
            count,
            dir: IOREQ_READ,
            data: buf,
            data_is_ptr: true,
            df,
        })
    }

    /// `rep outs`.
    pub fn rep_outs(&self, port: u16, size: u32, count: u32, buf: u64, df: bool) -> Result<(), SimError> {
        self.rep(GuestIo {
            type_: IOREQ_TYPE_PIO,
            addr: u64::from(port),
            size,
            count,
            dir: IOREQ_WRITE,
            data: buf,
            data_is_ptr: true,
            df,
        })
    }

    /// `rep movs` from MMIO at `mmio` to RAM at `buf`.
    pub fn movs_from_mmio(&self, mmio: u64, buf: u64, size: u32, count: u32, df: bool) -> Result<(), SimError> {
        self.rep(GuestIo {
            type_: IOREQ_TYPE_COPY,
            addr: mmio,
            size,
            count,
            dir: IOREQ_READ,
            data: buf,
            data_is_ptr: true,
            df,
        })
    }

    /// `rep movs` from RAM at `buf` to MMIO at `mmio`.
    pub fn movs_to_mmio(&self, mmio: u64, buf: u64, size: u32, count: u32, df: bool) -> Result<(), SimError> {
        self.rep(GuestIo {
            type_: IOREQ_TYPE_COPY,
            addr: mmio,
            size,
            count,
            dir: IOREQ_WRITE,
            data: buf,
            data_is_ptr: true,
            df,
        })
    }

    /// `rep stos` of `val` into MMIO.
    pub fn stos_mmio(&self, mmio: u64, size: u32, count: u32, val: u64, df: bool) -> Result<(), SimError> {
        self.rep(GuestIo {
            type_: IOREQ_TYPE_COPY,
            addr: mmio,
            size,
            count,
            dir: IOREQ_WRITE,
            data: val,
            data_is_ptr: false,
            df,
        })
    }

    /// Elements of `io` that fit before a page boundary of `base` (at least 1: an element that
    /// straddles two pages is sent alone).
    fn fit(base: u64, size: u64, df: bool) -> u64 {
        let n = if df { (base % PAGE + size) / size } else { (PAGE - base % PAGE) / size };
        n.max(1)
    }

    /// A string instruction, split into page-bounded requests as Xen's emulator does.
    pub fn rep(&self, io: GuestIo) -> Result<(), SimError> {
        let size = u64::from(io.size.max(1));
        let mut left = u64::from(io.count);
        let mut cur = io;
        while left > 0 {
            let mut n = left;
            if cur.type_ == IOREQ_TYPE_COPY {
                n = n.min(Self::fit(cur.addr, size, cur.df));
            }
            if cur.data_is_ptr {
                n = n.min(Self::fit(cur.data, size, cur.df));
            }
            let mut req = cur;
            req.count = n as u32;
            self.io(req)?;
            let step = n * size;
            let adv = |v: u64| if cur.df { v.wrapping_sub(step) } else { v.wrapping_add(step) };
            if cur.type_ == IOREQ_TYPE_COPY {
                cur.addr = adv(cur.addr);
            }
            if cur.data_is_ptr {
                cur.data = adv(cur.data);
            }
            left -= n;
        }
        Ok(())
    }

    fn select(st: &mut State, io: &GuestIo) -> Target {
        let size = u64::from(io.size);
        match io.type_ {
            IOREQ_TYPE_PIO => {
                if io.addr == 0xcf8 && io.size == 4 && io.dir == IOREQ_WRITE && !io.data_is_ptr {
                    st.pci_cf8 = io.data as u32;
                }
                let cf8 = st.pci_cf8;
                if io.addr & !3 == 0xcfc && cf8 & 0x8000_0000 != 0 {
                    let sbdf = (cf8 >> 8) & 0xffff;
                    let reg = u64::from(cf8 & 0xfc) | (io.addr & 3);
                    for (id, s) in st.servers.iter().rev() {
                        if s.enabled && s.pci.contains(&sbdf) {
                            return Target::Server {
                                id: *id,
                                type_: IOREQ_TYPE_PCI_CONFIG,
                                addr: (u64::from(sbdf) << 32) | reg,
                            };
                        }
                    }
                    return Target::Unclaimed;
                }
                for (id, s) in st.servers.iter().rev() {
                    if s.enabled && s.port_ranges.find_access(io.addr, size).is_some() {
                        return Target::Server { id: *id, type_: IOREQ_TYPE_PIO, addr: io.addr };
                    }
                }
                Target::Unclaimed
            }
            _ => {
                let span = size.saturating_mul(u64::from(io.count.max(1)));
                let lo = if io.df { io.addr.wrapping_sub(span - size) } else { io.addr };
                for (id, s) in st.servers.iter().rev() {
                    if s.enabled && s.mem_ranges.find_access(lo, span).is_some() {
                        return Target::Server { id: *id, type_: IOREQ_TYPE_COPY, addr: io.addr };
                    }
                }
                Target::Unclaimed
            }
        }
    }

    /// One access: select a server, post, wait. Unclaimed reads give all-ones.
    pub fn io(&self, io: GuestIo) -> Result<u64, SimError> {
        let target = Self::select(&mut self.xen.lock(), &io);
        match target {
            Target::Unclaimed => self.unclaimed(&io),
            Target::Server { id, type_, addr } => {
                let req = Ioreq {
                    addr,
                    data: io.data,
                    count: io.count,
                    size: io.size,
                    vp_eport: 0,
                    pad0: 0,
                    flags: Ioreq::make_flags(STATE_IOREQ_READY, io.data_is_ptr, io.dir, io.df),
                    type_,
                };
                self.send(id, req)
            }
        }
    }

    fn unclaimed(&self, io: &GuestIo) -> Result<u64, SimError> {
        // hvmemul_do_io with no server: null_handler (writes dropped, reads ~0).
        if io.dir == IOREQ_READ && io.data_is_ptr {
            let ones = vec![0xffu8; io.size as usize];
            for i in 0..u64::from(io.count) {
                let off = i * u64::from(io.size);
                let p = if io.df { io.data.wrapping_sub(off) } else { io.data.wrapping_add(off) };
                self.xen.ram_write(p, &ones)?;
            }
        }
        Ok(if io.dir == IOREQ_READ { u64::MAX >> (64 - 8 * u64::from(io.size.clamp(1, 8))) } else { 0 })
    }

    /// Posts exactly `req` (state forced to READY, `vp_eport` filled in) into this vCPU's slot of
    /// server `id`, notifies, and waits for the response like `wait_for_io`. Returns `data`.
    pub fn send(&self, id: u16, req: Ioreq) -> Result<u64, SimError> {
        let lock = self
            .xen
            .inner
            .vcpu_locks
            .get(self.id as usize)
            .ok_or_else(|| SimError::Usage(format!("no vCPU {}", self.id)))?;
        let _serial = match lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let timeout = self.xen.inner.cfg.wait_timeout;
        let start = Instant::now();
        let mut st = self.xen.lock();
        if let Some(c) = &st.crashed {
            return Err(SimError::Crashed(c.clone()));
        }
        let (port, kicks0) = {
            let s = st.servers.get(&id).ok_or_else(|| SimError::Usage(format!("no server {id}")))?;
            let port = *s.ports.get(self.id as usize).ok_or_else(|| SimError::Usage(format!("no vCPU {}", self.id)))?;
            let slot = s
                .sync_page()
                .and_then(|p| p.slot(self.id as usize))
                .ok_or_else(|| SimError::Usage("no slot".into()))?;
            let snap = slot.snapshot();
            if snap.state() != STATE_IOREQ_NONE || snap.vp_eport != port {
                let why = format!(
                    "device model set bad IO state/event channel on vCPU {} (state {}, vp_eport {} != {port})",
                    self.id,
                    snap.state(),
                    snap.vp_eport
                );
                st.crashed = Some(why.clone());
                return Err(SimError::Crashed(why));
            }
            let mut r = req;
            r.vp_eport = port;
            r.set_state(STATE_IOREQ_READY);
            slot.post(&r);
            (port, st.guest_ports.get(&port).map(|g| g.kicks).unwrap_or(0))
        };
        SimXen::raise_guest_port(&mut st, port);
        let mut seen_kicks = kicks0;
        let mut prev = STATE_IOREQ_READY;
        loop {
            let kicks = st.guest_ports.get(&port).map(|g| g.kicks);
            let Some(kicks) = kicks else {
                return Err(SimError::Usage(format!("server {id} was destroyed while vCPU {} waited", self.id)));
            };
            if kicks != seen_kicks {
                seen_kicks = kicks;
                let s = st.servers.get(&id).ok_or_else(|| SimError::Usage(format!("server {id} vanished")))?;
                let slot = s
                    .sync_page()
                    .and_then(|p| p.slot(self.id as usize))
                    .ok_or_else(|| SimError::Usage("no slot".into()))?;
                let state = slot.state();
                match state {
                    STATE_IORESP_READY => {
                        let data = slot.snapshot().data;
                        slot.set_state(STATE_IOREQ_NONE);
                        return Ok(data);
                    }
                    STATE_IOREQ_READY | STATE_IOREQ_INPROCESS if state >= prev => prev = state,
                    _ => {
                        let why = format!("vCPU {}: ioreq state went from {prev} to {state}", self.id);
                        st.crashed = Some(why.clone());
                        return Err(SimError::Crashed(why));
                    }
                }
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                let state = st
                    .servers
                    .get(&id)
                    .and_then(|s| s.sync_page())
                    .and_then(|p| p.slot(self.id as usize))
                    .map(|s| s.state())
                    .unwrap_or(0xff);
                return Err(SimError::Timeout { vcpu: self.id, ms: elapsed.as_millis(), state });
            }
            st = match self.xen.inner.cv.wait_timeout(st, timeout - elapsed) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Broadcasts `IOREQ_TYPE_INVALIDATE` to every enabled server on this vCPU's slot.
    pub fn invalidate(&self) -> Result<(), SimError> {
        let ids: Vec<u16> = self.xen.lock().servers.iter().filter(|(_, s)| s.enabled).map(|(i, _)| *i).collect();
        for id in ids {
            let req = Ioreq {
                addr: 0,
                data: !0,
                count: 0,
                size: 4,
                vp_eport: 0,
                pad0: 0,
                flags: Ioreq::make_flags(STATE_IOREQ_READY, false, IOREQ_WRITE, false),
                type_: IOREQ_TYPE_INVALIDATE,
            };
            self.send(id, req)?;
        }
        Ok(())
    }

    /// A buffered write (`ioreq_send_buffered`): for stdvga-style MMIO or port writes below
    /// 1 MiB. `Err(Unhandled)` when no buffered-capable server claims it or the ring is full.
    pub fn buffered_write(&self, type_: u8, addr: u64, size: u32, data: u64) -> Result<(), SimError> {
        let io = GuestIo { type_, addr, size, count: 1, dir: IOREQ_WRITE, data, data_is_ptr: false, df: false };
        let mut st = self.xen.lock();
        let id = match Self::select(&mut st, &io) {
            Target::Server { id, type_: t, .. } if t == type_ => id,
            _ => return Err(SimError::Unhandled),
        };
        if addr >= 1 << 20 {
            return Err(SimError::Unhandled);
        }
        Self::push_buffered(&mut st, id, type_, addr as u32, size, data)
    }

    /// The `IOREQ_TYPE_TIMEOFFSET` broadcast (8 bytes, two slots) to every buffered server.
    pub fn send_timeoffset(&self, offset: u64) -> Result<(), SimError> {
        let mut st = self.xen.lock();
        let ids: Vec<u16> = st
            .servers
            .iter()
            .filter(|(_, s)| s.enabled && s.bufioreq != HVM_IOREQSRV_BUFIOREQ_OFF)
            .map(|(i, _)| *i)
            .collect();
        for id in ids {
            Self::push_buffered(&mut st, id, IOREQ_TYPE_TIMEOFFSET, 0, 8, offset)?;
        }
        Ok(())
    }

    fn push_buffered(st: &mut State, id: u16, type_: u8, addr: u32, size: u32, data: u64) -> Result<(), SimError> {
        let s = st.servers.get(&id).ok_or(SimError::Unhandled)?;
        if s.bufioreq == HVM_IOREQSRV_BUFIOREQ_OFF {
            return Err(SimError::Unhandled);
        }
        let size_log2 = match size {
            1 => 0,
            2 => 1,
            4 => 2,
            8 => 3,
            _ => return Err(SimError::Usage(format!("buffered size {size}"))),
        };
        let qw = u32::from(size == 8);
        let pg = BufferedPage::new(&s.map, 0).map_err(|e| SimError::Usage(e.to_string()))?;
        let rp = pg.read_pointer().load(std::sync::atomic::Ordering::Acquire);
        let wp = pg.write_pointer().load(std::sync::atomic::Ordering::Acquire);
        if wp.wrapping_sub(rp) >= IOREQ_BUFFER_SLOT_NUM - qw {
            return Err(SimError::Unhandled);
        }
        let b = BufIoreq { type_, dir: IOREQ_WRITE, size_log2, addr, data: data as u32 };
        pg.set_slot(wp, b.encode());
        if qw == 1 {
            let hi = BufIoreq { data: (data >> 32) as u32, ..b };
            pg.set_slot(wp.wrapping_add(1), hi.encode());
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        pg.write_pointer().fetch_add(qw + 1, std::sync::atomic::Ordering::Release);
        // Canonicalise the pointers (ATOMIC handling) so they never overflow.
        let mut tries = qw;
        while s.bufioreq == HVM_IOREQSRV_BUFIOREQ_ATOMIC && tries < IOREQ_BUFFER_SLOT_NUM {
            tries += 1;
            let old = pg.pointers().load(std::sync::atomic::Ordering::Acquire);
            let (orp, owp) = (old as u32, (old >> 32) as u32);
            if orp < IOREQ_BUFFER_SLOT_NUM {
                break;
            }
            let n = orp / IOREQ_BUFFER_SLOT_NUM;
            let new = u64::from(orp - n * IOREQ_BUFFER_SLOT_NUM)
                | (u64::from(owp.wrapping_sub(n * IOREQ_BUFFER_SLOT_NUM)) << 32);
            let _ = pg.pointers().compare_exchange(
                old,
                new,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            );
        }
        if let Some(p) = s.buf_port {
            SimXen::raise_guest_port(st, p);
        }
        Ok(())
    }
}
