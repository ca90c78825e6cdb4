//! Validation of one copied-out `ioreq_t` into a typed access.
//!
//! Runs on the snapshot taken from the shared page, never on the page itself. Everything Xen
//! would never send (and a hostile or buggy peer might) is rejected here with a typed reason, so
//! no device ever sees an impossible size, count or type.

use thiserror::Error;
use xen_bindings::ioreq::{
    Ioreq, IOREQ_READ, IOREQ_TYPE_COPY, IOREQ_TYPE_INVALIDATE, IOREQ_TYPE_PCI_CONFIG, IOREQ_TYPE_PIO,
    IOREQ_TYPE_TIMEOFFSET,
};

use crate::pci::Sbdf;

/// Most elements one request may carry. Xen clips every rep request to one page (4096 elements of
/// one byte at most), so anything larger is not from Xen.
pub const MAX_REP_COUNT: u32 = 4096;

/// Access direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The guest reads; the device model supplies data.
    Read,
    /// The guest writes.
    Write,
}

/// Which address space an access targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Port I/O; `addr` is the port.
    Pio,
    /// Memory-mapped I/O; `addr` is a guest physical address.
    Mmio,
    /// PCI configuration space of one function; `addr` is the register offset.
    PciConfig(Sbdf),
}

/// A validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// Target space.
    pub space: Space,
    /// Port, guest physical address, or config register.
    pub addr: u64,
    /// Bytes per element: 1, 2, 4 or 8 (at most 4 for PIO and PCI config).
    pub size: u8,
    /// Element count, 1..=[`MAX_REP_COUNT`].
    pub count: u32,
    /// Direction.
    pub dir: Dir,
    /// Value (write) or guest physical address of the buffer (`data_is_ptr`).
    pub data: u64,
    /// `data` is a guest-RAM pointer.
    pub data_is_ptr: bool,
    /// Elements step downwards.
    pub df: bool,
}

impl IoAccess {
    /// Address of element `i`: MMIO steps by `size` (downwards with `df`); a port or a config
    /// register stays fixed, as in rep ins/outs.
    pub fn element_addr(&self, i: u32) -> u64 {
        match self.space {
            Space::Mmio => step(self.addr, i, self.size, self.df),
            Space::Pio | Space::PciConfig(_) => self.addr,
        }
    }

    /// Guest-RAM address of element `i` of the `data_is_ptr` buffer.
    pub fn element_ptr(&self, i: u32) -> u64 {
        step(self.data, i, self.size, self.df)
    }
}

/// `base ± i*size`, wrapping like Xen and QEMU do.
pub fn step(base: u64, i: u32, size: u8, df: bool) -> u64 {
    let off = u64::from(i).wrapping_mul(u64::from(size));
    if df {
        base.wrapping_sub(off)
    } else {
        base.wrapping_add(off)
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A port, MMIO or config access.
    Access(IoAccess),
    /// Drop cached guest-memory mappings.
    Invalidate,
    /// RTC offset from Xen (accepted, no device consumes it).
    TimeOffset(u64),
}

/// Why a request was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Size outside {1,2,4,8}.
    #[error("size {0} is not 1, 2, 4 or 8")]
    BadSize(u32),
    /// PIO or PCI config wider than 4 bytes.
    #[error("size {size} is too wide for {what} (max 4)")]
    TooWide {
        /// Access size.
        size: u32,
        /// Space name.
        what: &'static str,
    },
    /// Count of zero or above [`MAX_REP_COUNT`].
    #[error("count {0} is outside 1..={MAX_REP_COUNT}")]
    BadCount(u32),
    /// A port above 0xFFFF (or an access running past it).
    #[error("port {port:#x} with size {size} is outside the 16-bit port space")]
    BadPort {
        /// Port.
        port: u64,
        /// Access size.
        size: u32,
    },
    /// A config register beyond 4 KiB, or an access crossing its end.
    #[error("config register {reg:#x} with size {size} is outside the 4 KiB config space")]
    BadConfigReg {
        /// Register.
        reg: u64,
        /// Access size.
        size: u32,
    },
    /// A type Xen does not send to an ioreq server.
    #[error("unknown ioreq type {0}")]
    UnknownType(u8),
    /// PCI config with a rep count other than 1 and no pointer.
    #[error("PCI config request with count {0} (must be 1)")]
    ConfigCount(u32),
}

/// Validates a snapshot.
pub fn decode(req: &Ioreq) -> Result<Decoded, DecodeError> {
    let dir = if req.dir() == IOREQ_READ { Dir::Read } else { Dir::Write };
    match req.type_ {
        IOREQ_TYPE_INVALIDATE => return Ok(Decoded::Invalidate),
        IOREQ_TYPE_TIMEOFFSET => return Ok(Decoded::TimeOffset(req.data)),
        IOREQ_TYPE_PIO | IOREQ_TYPE_COPY | IOREQ_TYPE_PCI_CONFIG => {}
        t => return Err(DecodeError::UnknownType(t)),
    }
    let size = match req.size {
        s @ (1 | 2 | 4 | 8) => s,
        s => return Err(DecodeError::BadSize(s)),
    };
    if req.count == 0 || req.count > MAX_REP_COUNT {
        return Err(DecodeError::BadCount(req.count));
    }
    let space = match req.type_ {
        IOREQ_TYPE_PIO => {
            if size > 4 {
                return Err(DecodeError::TooWide { size, what: "port I/O" });
            }
            if req.addr.checked_add(u64::from(size) - 1).is_none_or(|last| last > 0xffff) {
                return Err(DecodeError::BadPort { port: req.addr, size });
            }
            Space::Pio
        }
        IOREQ_TYPE_COPY => Space::Mmio,
        _ => {
            if size > 4 {
                return Err(DecodeError::TooWide { size, what: "PCI config" });
            }
            if req.count != 1 && !req.data_is_ptr() {
                return Err(DecodeError::ConfigCount(req.count));
            }
            let reg = req.addr & 0xffff_ffff;
            if reg + u64::from(size) > 4096 {
                return Err(DecodeError::BadConfigReg { reg, size });
            }
            Space::PciConfig(Sbdf::from_raw((req.addr >> 32) as u32))
        }
    };
    let addr = match space {
        Space::PciConfig(_) => req.addr & 0xffff_ffff,
        _ => req.addr,
    };
    Ok(Decoded::Access(IoAccess {
        space,
        addr,
        size: size as u8,
        count: req.count,
        dir,
        data: req.data,
        data_is_ptr: req.data_is_ptr(),
        df: req.df(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_bindings::ioreq::{IOREQ_WRITE, STATE_IOREQ_READY};

    fn req(type_: u8, addr: u64, size: u32, count: u32, dir: u8) -> Ioreq {
        Ioreq {
            addr,
            data: 0,
            count,
            size,
            vp_eport: 0,
            pad0: 0,
            flags: Ioreq::make_flags(STATE_IOREQ_READY, false, dir, false),
            type_,
        }
    }

    #[test]
    fn valid_requests_decode() {
        let d = decode(&req(IOREQ_TYPE_PIO, 0xcf8, 4, 1, IOREQ_WRITE)).expect("pio");
        assert!(matches!(
            d,
            Decoded::Access(IoAccess { space: Space::Pio, addr: 0xcf8, size: 4, dir: Dir::Write, .. })
        ));
        let d = decode(&req(IOREQ_TYPE_PCI_CONFIG, (0xf8u64 << 32) | 0x44, 1, 1, IOREQ_READ)).expect("cfg");
        match d {
            Decoded::Access(a) => {
                assert_eq!(a.space, Space::PciConfig(Sbdf::new(0, 0, 0x1f, 0)));
                assert_eq!(a.addr, 0x44);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(decode(&req(IOREQ_TYPE_INVALIDATE, 0, 4, 0, IOREQ_WRITE)), Ok(Decoded::Invalidate));
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(decode(&req(IOREQ_TYPE_PIO, 0x80, 3, 1, IOREQ_READ)), Err(DecodeError::BadSize(3)));
        assert_eq!(decode(&req(IOREQ_TYPE_COPY, 0x80, 16, 1, IOREQ_READ)), Err(DecodeError::BadSize(16)));
        assert_eq!(
            decode(&req(IOREQ_TYPE_PIO, 0x80, 8, 1, IOREQ_READ)),
            Err(DecodeError::TooWide { size: 8, what: "port I/O" })
        );
        assert_eq!(decode(&req(IOREQ_TYPE_COPY, 0, 4, 0, IOREQ_READ)), Err(DecodeError::BadCount(0)));
        assert_eq!(decode(&req(IOREQ_TYPE_COPY, 0, 4, u32::MAX, IOREQ_READ)), Err(DecodeError::BadCount(u32::MAX)));
        assert_eq!(
            decode(&req(IOREQ_TYPE_PIO, 0xffff, 2, 1, IOREQ_READ)),
            Err(DecodeError::BadPort { port: 0xffff, size: 2 })
        );
        assert_eq!(
            decode(&req(IOREQ_TYPE_PIO, 0x1_0000, 1, 1, IOREQ_READ)),
            Err(DecodeError::BadPort { port: 0x1_0000, size: 1 })
        );
        assert_eq!(decode(&req(5, 0, 4, 1, IOREQ_READ)), Err(DecodeError::UnknownType(5)));
        assert_eq!(
            decode(&req(IOREQ_TYPE_PCI_CONFIG, 0xffe, 4, 1, IOREQ_READ)),
            Err(DecodeError::BadConfigReg { reg: 0xffe, size: 4 })
        );
    }

    #[test]
    fn stepping_wraps() {
        assert_eq!(step(2, 1, 4, true), u64::MAX - 1);
        assert_eq!(step(u64::MAX, 1, 1, false), 0);
        assert_eq!(step(0x1000, 3, 2, false), 0x1006);
    }
}
