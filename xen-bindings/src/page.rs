//! Safe views of the shared ioreq page and the buffered ioreq page inside a [`MappedRegion`].
//!
//! The `state` byte is accessed with acquire/release atomics, every other field with volatile
//! loads and stores; a request is copied out in one go ([`IoreqSlot::snapshot`]) and never read
//! again, which closes the double-fetch hole.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::ioreq::{
    buffered, Ioreq, IOREQ_BUFFER_SLOT_NUM, IOREQ_FLAGS_OFFSET, IOREQ_STATE_MASK, PAGE_SIZE, SHARED_IOPAGE_SLOTS,
};
use crate::mem::{MappedRegion, OutOfBounds};

const SLOT: usize = core::mem::size_of::<Ioreq>();

/// `shared_iopage_t` at `offset` inside a mapping.
#[derive(Clone, Copy, Debug)]
pub struct IoreqPage<'a> {
    region: &'a MappedRegion,
    offset: usize,
}

impl<'a> IoreqPage<'a> {
    /// A view of the page at `offset`; fails if the page does not fit.
    pub fn new(region: &'a MappedRegion, offset: usize) -> Result<Self, OutOfBounds> {
        match offset.checked_add(PAGE_SIZE) {
            Some(end) if end <= region.len() && offset % 8 == 0 => Ok(Self { region, offset }),
            _ => Err(OutOfBounds { offset, len: PAGE_SIZE, size: region.len() }),
        }
    }

    /// The slot of `vcpu`, if the page has one.
    pub fn slot(&self, vcpu: usize) -> Option<IoreqSlot<'a>> {
        if vcpu >= SHARED_IOPAGE_SLOTS {
            return None;
        }
        Some(IoreqSlot { region: self.region, offset: self.offset + vcpu * SLOT })
    }
}

/// One `ioreq_t` slot.
#[derive(Clone, Copy, Debug)]
pub struct IoreqSlot<'a> {
    region: &'a MappedRegion,
    offset: usize,
}

impl IoreqSlot<'_> {
    fn flags_atomic(&self) -> &AtomicU8 {
        // The slot was bounds-checked by IoreqPage::new; offset+30 is inside it.
        match self.region.atomic_u8(self.offset + IOREQ_FLAGS_OFFSET) {
            Ok(a) => a,
            Err(_) => unreachable_slot(),
        }
    }

    /// The `state` field, with acquire ordering: a READY seen here makes the request body visible.
    pub fn state(&self) -> u8 {
        self.flags_atomic().load(Ordering::Acquire) & IOREQ_STATE_MASK
    }

    /// Stores `state` with release ordering, keeping the other bits of the bitfield byte: every
    /// write made before (the response data) is visible before the new state.
    pub fn set_state(&self, state: u8) {
        let a = self.flags_atomic();
        let mut cur = a.load(Ordering::Relaxed);
        loop {
            let new = (cur & !IOREQ_STATE_MASK) | (state & IOREQ_STATE_MASK);
            match a.compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// One copy of the whole slot, made with volatile loads after an acquire fence.
    pub fn snapshot(&self) -> Ioreq {
        std::sync::atomic::fence(Ordering::Acquire);
        let mut w = [0u64; 4];
        for (i, v) in w.iter_mut().enumerate() {
            *v = self.region.read_u64(self.offset + i * 8).unwrap_or(u64::MAX);
        }
        bytemuck::cast(w)
    }

    /// Writes the `data` field (the response value).
    pub fn set_data(&self, data: u64) {
        let _ = self.region.write_u64(self.offset + 8, data);
    }

    /// The `vp_eport` field.
    pub fn vp_eport(&self) -> u32 {
        self.snapshot().vp_eport
    }

    /// Writes a whole request, body first, then the flags byte with release ordering
    /// (what Xen's `ioreq_send` does; used by the simulated hypervisor and by tests).
    pub fn post(&self, req: &Ioreq) {
        let w: [u64; 4] = bytemuck::cast(*req);
        // The last u64 holds vp_eport, pad0, flags and type: write it with the state forced to the
        // current value first, then publish the new flags byte.
        let cur_state = self.flags_atomic().load(Ordering::Relaxed);
        let mut last = w[3].to_le_bytes();
        last[6] = cur_state;
        for (i, v) in w.iter().take(3).enumerate() {
            let _ = self.region.write_u64(self.offset + i * 8, *v);
        }
        let _ = self.region.write_u64(self.offset + 24, u64::from_le_bytes(last));
        self.flags_atomic().store(req.flags, Ordering::Release);
    }

    /// Writes the `vp_eport` field (Xen does this when a server is enabled).
    pub fn set_vp_eport(&self, port: u32) {
        let mut last = self.region.read_u64(self.offset + 24).unwrap_or(0).to_le_bytes();
        last[..4].copy_from_slice(&port.to_le_bytes());
        let _ = self.region.write_u64(self.offset + 24, u64::from_le_bytes(last));
    }
}

#[cold]
fn unreachable_slot() -> ! {
    // IoreqPage::new checked that the whole page is inside the mapping and slot() bounds the index,
    // so this cannot happen; abort loudly rather than read outside the mapping.
    std::process::abort()
}

/// `buffered_iopage_t` at `offset` inside a mapping.
#[derive(Clone, Copy, Debug)]
pub struct BufferedPage<'a> {
    region: &'a MappedRegion,
    offset: usize,
}

impl<'a> BufferedPage<'a> {
    /// A view of the page at `offset`; fails if the page does not fit.
    pub fn new(region: &'a MappedRegion, offset: usize) -> Result<Self, OutOfBounds> {
        match offset.checked_add(PAGE_SIZE) {
            Some(end) if end <= region.len() && offset % 8 == 0 => Ok(Self { region, offset }),
            _ => Err(OutOfBounds { offset, len: PAGE_SIZE, size: region.len() }),
        }
    }

    fn a32(&self, off: usize) -> &'a AtomicU32 {
        match self.region.atomic_u32(self.offset + off) {
            Ok(a) => a,
            Err(_) => unreachable_slot(),
        }
    }

    /// `read_pointer`, as an atomic (the consumer advances it with `fetch_add`).
    pub fn read_pointer(&self) -> &'a AtomicU32 {
        self.a32(buffered::READ_POINTER)
    }

    /// `write_pointer`, as an atomic.
    pub fn write_pointer(&self) -> &'a AtomicU32 {
        self.a32(buffered::WRITE_POINTER)
    }

    /// Both pointers as one 64-bit word (read_pointer low, write_pointer high), which Xen
    /// normalises with a cmpxchg when the server uses `HVM_IOREQSRV_BUFIOREQ_ATOMIC`.
    pub fn pointers(&self) -> &'a AtomicU64 {
        match self.region.atomic_u64(self.offset) {
            Ok(a) => a,
            Err(_) => unreachable_slot(),
        }
    }

    /// Slot `ptr % 511`, as a little-endian u64.
    pub fn slot(&self, ptr: u32) -> u64 {
        let idx = (ptr % IOREQ_BUFFER_SLOT_NUM) as usize;
        self.region.read_u64(self.offset + buffered::SLOTS + idx * buffered::SLOT_SIZE).unwrap_or(u64::MAX)
    }

    /// Writes slot `ptr % 511`.
    pub fn set_slot(&self, ptr: u32, raw: u64) {
        let idx = (ptr % IOREQ_BUFFER_SLOT_NUM) as usize;
        let _ = self.region.write_u64(self.offset + buffered::SLOTS + idx * buffered::SLOT_SIZE, raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioreq::*;

    #[test]
    fn post_snapshot_and_state() {
        let m = MappedRegion::anonymous(PAGE_SIZE).expect("anon");
        let page = IoreqPage::new(&m, 0).expect("page");
        assert!(page.slot(128).is_none());
        let s = page.slot(5).expect("slot");
        s.set_vp_eport(77);
        let req = Ioreq {
            addr: 0xcfc,
            data: 0,
            count: 1,
            size: 4,
            vp_eport: 77,
            pad0: 0,
            flags: Ioreq::make_flags(STATE_IOREQ_READY, false, IOREQ_READ, false),
            type_: IOREQ_TYPE_PIO,
        };
        s.post(&req);
        assert_eq!(s.state(), STATE_IOREQ_READY);
        assert_eq!(s.snapshot(), req);
        s.set_data(0x1234);
        s.set_state(STATE_IORESP_READY);
        let got = s.snapshot();
        assert_eq!(got.data, 0x1234);
        assert_eq!(got.state(), STATE_IORESP_READY);
        assert_eq!(got.dir(), IOREQ_READ);
        assert_eq!(s.vp_eport(), 77);
        // Slot 5 starts at byte 160.
        let mut b = [0u8; 8];
        m.read(160, &mut b).expect("r");
        assert_eq!(u64::from_le_bytes(b), 0xcfc);
    }

    #[test]
    fn buffered_pointers_share_one_word() {
        let m = MappedRegion::anonymous(PAGE_SIZE).expect("anon");
        let p = BufferedPage::new(&m, 0).expect("page");
        p.write_pointer().store(5, Ordering::Release);
        p.read_pointer().store(3, Ordering::Release);
        assert_eq!(p.pointers().load(Ordering::Acquire), (5u64 << 32) | 3);
        p.set_slot(511 + 2, 0xabc);
        assert_eq!(p.slot(2), 0xabc);
    }
}
