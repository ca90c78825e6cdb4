//! The ioreq protocol between Xen and a device model.
//!
//! Mirrors `xen/include/public/hvm/ioreq.h` (MIT) and the `HVM_IOREQSRV_BUFIOREQ_*` constants of
//! `xen/include/public/hvm/hvm_op.h`. Layouts are checked against the C headers by
//! `tests/c_layout.rs`.

use bytemuck::{Pod, Zeroable};

/// `IOREQ_READ` (ioreq.h): the guest reads, the device model supplies `data`.
pub const IOREQ_READ: u8 = 1;
/// `IOREQ_WRITE` (ioreq.h).
pub const IOREQ_WRITE: u8 = 0;

/// `STATE_IOREQ_NONE` (ioreq.h): the slot is free. Only Xen writes this value.
pub const STATE_IOREQ_NONE: u8 = 0;
/// `STATE_IOREQ_READY` (ioreq.h): Xen posted a request.
pub const STATE_IOREQ_READY: u8 = 1;
/// `STATE_IOREQ_INPROCESS` (ioreq.h): the device model is working on it.
pub const STATE_IOREQ_INPROCESS: u8 = 2;
/// `STATE_IORESP_READY` (ioreq.h): the device model answered.
pub const STATE_IORESP_READY: u8 = 3;

/// `IOREQ_TYPE_PIO` (ioreq.h): port I/O.
pub const IOREQ_TYPE_PIO: u8 = 0;
/// `IOREQ_TYPE_COPY` (ioreq.h): MMIO.
pub const IOREQ_TYPE_COPY: u8 = 1;
/// `IOREQ_TYPE_PCI_CONFIG` (ioreq.h): `addr = SBDF << 32 | reg`.
pub const IOREQ_TYPE_PCI_CONFIG: u8 = 2;
/// `IOREQ_TYPE_TIMEOFFSET` (ioreq.h): RTC offset broadcast (buffered only).
pub const IOREQ_TYPE_TIMEOFFSET: u8 = 7;
/// `IOREQ_TYPE_INVALIDATE` (ioreq.h): drop cached guest-memory mappings.
pub const IOREQ_TYPE_INVALIDATE: u8 = 8;

/// `IOREQ_BUFFER_SLOT_NUM` (ioreq.h): slots in the buffered ring.
pub const IOREQ_BUFFER_SLOT_NUM: u32 = 511;

/// Bytes in one ioreq page (`XEN_PAGE_SIZE` on x86).
pub const PAGE_SIZE: usize = 4096;
/// Number of `ioreq_t` slots in the shared page (`shared_iopage.vcpu_ioreq[]`, indexed by vCPU id).
pub const SHARED_IOPAGE_SLOTS: usize = PAGE_SIZE / core::mem::size_of::<Ioreq>();

/// `HVM_IOREQSRV_BUFIOREQ_OFF` (hvm_op.h).
pub const HVM_IOREQSRV_BUFIOREQ_OFF: u8 = 0;
/// `HVM_IOREQSRV_BUFIOREQ_LEGACY` (hvm_op.h).
pub const HVM_IOREQSRV_BUFIOREQ_LEGACY: u8 = 1;
/// `HVM_IOREQSRV_BUFIOREQ_ATOMIC` (hvm_op.h): Xen normalises the ring pointers with a 64-bit cmpxchg.
pub const HVM_IOREQSRV_BUFIOREQ_ATOMIC: u8 = 2;

/// Byte offset of the state/flags bitfield byte inside `ioreq_t`.
pub const IOREQ_FLAGS_OFFSET: usize = 30;
/// Mask of `state` in the bitfield byte (bits 0-3).
pub const IOREQ_STATE_MASK: u8 = 0x0f;
/// `data_is_ptr` bit in the bitfield byte.
pub const IOREQ_DATA_IS_PTR: u8 = 0x10;
/// `dir` bit in the bitfield byte (1 = read).
pub const IOREQ_DIR_READ: u8 = 0x20;
/// `df` (direction flag) bit in the bitfield byte.
pub const IOREQ_DF: u8 = 0x40;

/// `struct ioreq` / `ioreq_t` (ioreq.h), 32 bytes.
///
/// The C bitfield `state:4, data_is_ptr:1, dir:1, df:1, _pad1:1` is the byte `flags` at offset 30
/// (GCC allocates bitfields from the least significant bit on x86).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ioreq {
    /// Port, guest physical address, or `SBDF << 32 | reg`.
    pub addr: u64,
    /// Value, or a guest physical address when `data_is_ptr`.
    pub data: u64,
    /// Repetition count.
    pub count: u32,
    /// Bytes per element.
    pub size: u32,
    /// Xen-side event channel port of this vCPU.
    pub vp_eport: u32,
    /// `_pad0`.
    pub pad0: u16,
    /// Bitfield byte: state, data_is_ptr, dir, df.
    pub flags: u8,
    /// `IOREQ_TYPE_*`.
    pub type_: u8,
}

impl Ioreq {
    /// The `state` bitfield.
    pub fn state(&self) -> u8 {
        self.flags & IOREQ_STATE_MASK
    }
    /// Sets the `state` bitfield, keeping the other flags.
    pub fn set_state(&mut self, state: u8) {
        self.flags = (self.flags & !IOREQ_STATE_MASK) | (state & IOREQ_STATE_MASK);
    }
    /// The `data_is_ptr` bit.
    pub fn data_is_ptr(&self) -> bool {
        self.flags & IOREQ_DATA_IS_PTR != 0
    }
    /// The `dir` bit: `IOREQ_READ` or `IOREQ_WRITE`.
    pub fn dir(&self) -> u8 {
        u8::from(self.flags & IOREQ_DIR_READ != 0)
    }
    /// The `df` bit: elements step downwards when set.
    pub fn df(&self) -> bool {
        self.flags & IOREQ_DF != 0
    }
    /// Builds the flags byte from its parts.
    pub fn make_flags(state: u8, data_is_ptr: bool, dir: u8, df: bool) -> u8 {
        (state & IOREQ_STATE_MASK)
            | if data_is_ptr { IOREQ_DATA_IS_PTR } else { 0 }
            | if dir == IOREQ_READ { IOREQ_DIR_READ } else { 0 }
            | if df { IOREQ_DF } else { 0 }
    }
}

/// Byte offsets of `buffered_iopage_t` (ioreq.h): `read_pointer`, `write_pointer`, then 511 slots.
pub mod buffered {
    /// Offset of `read_pointer` (u32).
    pub const READ_POINTER: usize = 0;
    /// Offset of `write_pointer` (u32).
    pub const WRITE_POINTER: usize = 4;
    /// Offset of `buf_ioreq[0]`.
    pub const SLOTS: usize = 8;
    /// Size of one `buf_ioreq_t`.
    pub const SLOT_SIZE: usize = 8;
}

/// `buf_ioreq_t` (ioreq.h): `type:8, pad:1, dir:1, size:2, addr:20, data:32`, read as a
/// little-endian u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufIoreq {
    /// `IOREQ_TYPE_*`.
    pub type_: u8,
    /// `IOREQ_READ` / `IOREQ_WRITE`.
    pub dir: u8,
    /// log2 of the access size (0 = 1 byte .. 3 = 8 bytes).
    pub size_log2: u8,
    /// Low 20 bits of the address.
    pub addr: u32,
    /// Low 32 bits of data (the high half of an 8-byte write is in the next slot).
    pub data: u32,
}

impl BufIoreq {
    /// Decodes one slot.
    pub fn decode(raw: u64) -> Self {
        Self {
            type_: (raw & 0xff) as u8,
            dir: ((raw >> 9) & 1) as u8,
            size_log2: ((raw >> 10) & 3) as u8,
            addr: ((raw >> 12) & 0xf_ffff) as u32,
            data: (raw >> 32) as u32,
        }
    }
    /// Encodes one slot (the simulated hypervisor writes the ring with this).
    pub fn encode(&self) -> u64 {
        u64::from(self.type_)
            | (u64::from(self.dir & 1) << 9)
            | (u64::from(self.size_log2 & 3) << 10)
            | (u64::from(self.addr & 0xf_ffff) << 12)
            | (u64::from(self.data) << 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioreq_is_32_bytes_and_page_has_128_slots() {
        assert_eq!(core::mem::size_of::<Ioreq>(), 32);
        assert_eq!(SHARED_IOPAGE_SLOTS, 128);
    }

    #[test]
    fn flags_round_trip() {
        let mut r = Ioreq { flags: Ioreq::make_flags(STATE_IOREQ_READY, true, IOREQ_READ, true), ..Default::default() };
        assert_eq!(r.state(), STATE_IOREQ_READY);
        assert!(r.data_is_ptr() && r.df());
        assert_eq!(r.dir(), IOREQ_READ);
        r.set_state(STATE_IORESP_READY);
        assert_eq!(r.state(), STATE_IORESP_READY);
        assert!(r.data_is_ptr() && r.df());
    }

    #[test]
    fn buf_ioreq_round_trip() {
        let b = BufIoreq { type_: 1, dir: 0, size_log2: 3, addr: 0xa_bcde, data: 0xdead_beef };
        assert_eq!(BufIoreq::decode(b.encode()), b);
        // type in bits 0-7, size in 10-11, addr in 12-31, data in 32-63
        assert_eq!(b.encode(), 0xdead_beef_abcd_e001 | (3 << 10));
    }
}
