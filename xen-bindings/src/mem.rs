//! Shared memory mappings: the only place where raw pointers to memory that another party writes
//! concurrently (Xen, the guest, or the simulated hypervisor) are dereferenced.
//!
//! Every access is volatile or atomic; nothing hands out `&T`/`&mut T` to plain data inside a
//! mapping, so a concurrent writer can never break Rust's aliasing rules.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

use thiserror::Error;

/// An access outside a mapping.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("access of {len} bytes at offset {offset:#x} is outside a mapping of {size:#x} bytes")]
pub struct OutOfBounds {
    /// Requested offset.
    pub offset: usize,
    /// Requested length.
    pub len: usize,
    /// Mapping size.
    pub size: usize,
}

/// An owned `mmap` region, unmapped on drop.
#[derive(Debug)]
pub struct MappedRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory; all accesses through this type are volatile or atomic and
// bounds-checked, so sharing it between threads cannot cause data races in the Rust sense.
unsafe impl Send for MappedRegion {}
// SAFETY: see `Send`; no method hands out non-atomic references.
unsafe impl Sync for MappedRegion {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).unwrap_or(4096)
}

impl MappedRegion {
    fn mmap(len: usize, prot: libc::c_int, flags: libc::c_int, fd: libc::c_int, offset: u64) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero-length mapping"));
        }
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping offset too large"))?;
        // SAFETY: a fresh mapping at an address chosen by the kernel (no MAP_FIXED) cannot alias
        // any existing Rust object; the result is checked for MAP_FAILED.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len })
    }

    /// Private anonymous read/write memory (zero-filled).
    pub fn anonymous(len: usize) -> io::Result<Self> {
        Self::mmap(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// An inaccessible reservation; parts are filled in with [`MappedRegion::map_fixed_shared`].
    /// Touching an unfilled part faults, so callers must track which parts are valid.
    pub fn reserve(len: usize) -> io::Result<Self> {
        Self::mmap(len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
    }

    /// A shared read/write mapping of `len` bytes of `fd` at `offset` (a memfd, or
    /// `/dev/xen/privcmd` before `MMAP_RESOURCE`/`MMAPBATCH_V2` populate it).
    pub fn map_shared(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Self> {
        Self::mmap(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), offset)
    }

    /// Replaces `[region_offset, region_offset+len)` of this mapping with a shared mapping of
    /// `fd` at `file_offset`.
    pub fn map_fixed_shared(
        &self,
        region_offset: usize,
        fd: BorrowedFd<'_>,
        file_offset: u64,
        len: usize,
    ) -> io::Result<()> {
        self.check(region_offset, len).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let ps = page_size();
        if region_offset % ps != 0 || len % ps != 0 || file_offset % ps as u64 != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "map_fixed_shared needs page-aligned arguments"));
        }
        let off = libc::off_t::try_from(file_offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: the target range lies inside this mapping (checked above), which we own; no Rust
        // reference into it exists (all access is volatile/atomic through `self`), so replacing the
        // pages with MAP_FIXED cannot invalidate anything.
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().add(region_offset).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (zero-length mappings cannot be created).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start address, for ioctls that take a user virtual address.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds { offset, len, size: self.len }),
        }
    }

    /// Copies bytes out of the mapping with volatile loads.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        let base = self.ptr.as_ptr();
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: offset+i < len (checked above); volatile byte loads from mapped memory.
            *b = unsafe { base.add(offset + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies bytes into the mapping with volatile stores.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        let base = self.ptr.as_ptr();
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: offset+i < len (checked above); volatile byte stores into mapped memory.
            unsafe { base.add(offset + i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Volatile little-endian u64 load at an 8-byte aligned offset.
    pub fn read_u64(&self, offset: usize) -> Result<u64, OutOfBounds> {
        self.check_aligned(offset, 8)?;
        // SAFETY: in bounds and 8-byte aligned (the mapping is page aligned).
        Ok(unsafe { self.ptr.as_ptr().add(offset).cast::<u64>().read_volatile() })
    }

    /// Volatile u64 store at an 8-byte aligned offset.
    pub fn write_u64(&self, offset: usize, v: u64) -> Result<(), OutOfBounds> {
        self.check_aligned(offset, 8)?;
        // SAFETY: in bounds and 8-byte aligned.
        unsafe { self.ptr.as_ptr().add(offset).cast::<u64>().write_volatile(v) };
        Ok(())
    }

    /// One volatile load of exactly `size` bytes (1, 2, 4 or 8) at a naturally aligned offset,
    /// zero-extended: a device register read must be a single access of the guest's width, never
    /// split into bytes (passed-through BARs mapped from sysfs `resourceN`).
    pub fn read_sized(&self, offset: usize, size: u8) -> Result<u64, OutOfBounds> {
        let n = usize::from(size);
        self.check_aligned(offset, n.max(1))?;
        let p = self.ptr.as_ptr();
        // SAFETY: [offset, offset+size) is inside the mapping and naturally aligned (checked
        // above; the mapping itself is page aligned); each arm is one volatile load of its width.
        let v = unsafe {
            match size {
                1 => u64::from(p.add(offset).read_volatile()),
                2 => u64::from(p.add(offset).cast::<u16>().read_volatile()),
                4 => u64::from(p.add(offset).cast::<u32>().read_volatile()),
                8 => p.add(offset).cast::<u64>().read_volatile(),
                _ => return Err(OutOfBounds { offset, len: n, size: self.len }),
            }
        };
        Ok(v)
    }

    /// One volatile store of the low `size` bytes (1, 2, 4 or 8) of `v` at a naturally aligned
    /// offset (see [`MappedRegion::read_sized`]).
    pub fn write_sized(&self, offset: usize, size: u8, v: u64) -> Result<(), OutOfBounds> {
        let n = usize::from(size);
        self.check_aligned(offset, n.max(1))?;
        let p = self.ptr.as_ptr();
        // SAFETY: as in `read_sized`: in bounds, naturally aligned, one volatile store of the
        // access width (the truncating casts keep exactly the bytes being stored).
        unsafe {
            match size {
                1 => p.add(offset).write_volatile(v as u8),
                2 => p.add(offset).cast::<u16>().write_volatile(v as u16),
                4 => p.add(offset).cast::<u32>().write_volatile(v as u32),
                8 => p.add(offset).cast::<u64>().write_volatile(v),
                _ => return Err(OutOfBounds { offset, len: n, size: self.len }),
            }
        }
        Ok(())
    }

    fn check_aligned(&self, offset: usize, size: usize) -> Result<(), OutOfBounds> {
        self.check(offset, size)?;
        if offset % size != 0 {
            return Err(OutOfBounds { offset, len: size, size: self.len });
        }
        Ok(())
    }

    /// The byte at `offset` as an atomic.
    pub fn atomic_u8(&self, offset: usize) -> Result<&AtomicU8, OutOfBounds> {
        self.check(offset, 1)?;
        // SAFETY: in bounds; AtomicU8 has alignment 1; the memory lives as long as `self`, and all
        // other accesses to it are atomic or volatile.
        Ok(unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(offset)) })
    }

    /// The aligned u32 at `offset` as an atomic.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, OutOfBounds> {
        self.check_aligned(offset, 4)?;
        // SAFETY: in bounds and 4-byte aligned; lifetime tied to `self`.
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) })
    }

    /// The aligned u64 at `offset` as an atomic.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, OutOfBounds> {
        self.check_aligned(offset, 8)?;
        // SAFETY: in bounds and 8-byte aligned; lifetime tied to `self`.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) })
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: we own the mapping [ptr, ptr+len) and nothing borrows it any more (borrows of
        // atomics are tied to `&self`).
        let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if rc != 0 {
            log::warn!("munmap of {} bytes failed: {}", self.len, io::Error::last_os_error());
        }
    }
}

/// Anonymous shared memory (a memfd) that several mappings, possibly in several processes, can
/// share: the simulated hypervisor's ioreq pages and guest RAM.
#[derive(Debug)]
pub struct SharedMemory {
    fd: OwnedFd,
    len: u64,
}

impl SharedMemory {
    /// Creates a sealed-size memfd of `len` bytes named `name` (visible in /proc/PID/fd).
    pub fn new(name: &str, len: u64) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd name contains NUL"))?;
        // SAFETY: `cname` is a valid NUL-terminated string; the flags are valid.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let l =
            libc::off_t::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd too large"))?;
        // SAFETY: ftruncate on an fd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), l) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, len })
    }

    /// The file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the memfd has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps `len` bytes at `offset`.
    pub fn map(&self, offset: u64, len: usize) -> io::Result<MappedRegion> {
        MappedRegion::map_shared(self.fd(), offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_memfd_alias() {
        let shm = SharedMemory::new("t", 8192).expect("memfd");
        let a = shm.map(0, 8192).expect("map a");
        let b = shm.map(4096, 4096).expect("map b");
        a.write_u64(4096 + 8, 0x1122_3344_5566_7788).expect("w");
        assert_eq!(b.read_u64(8), Ok(0x1122_3344_5566_7788));
        b.atomic_u8(30).expect("a8").store(7, std::sync::atomic::Ordering::Release);
        let mut x = [0u8; 1];
        a.read(4096 + 30, &mut x).expect("r");
        assert_eq!(x[0], 7);
    }

    #[test]
    fn bounds_and_alignment_are_checked() {
        let m = MappedRegion::anonymous(4096).expect("anon");
        assert!(m.read_u64(4090).is_err());
        assert!(m.read_u64(4).is_err());
        assert!(m.write(4095, &[1, 2]).is_err());
        assert!(m.atomic_u32(2).is_err());
        let mut b = [0u8; 2];
        assert!(m.read(usize::MAX, &mut b).is_err());
    }

    #[test]
    fn sized_accesses_are_single_and_checked() {
        let m = MappedRegion::anonymous(4096).expect("anon");
        m.write_sized(8, 4, 0x1_1223_3445).expect("w4");
        assert_eq!(m.read_sized(8, 4), Ok(0x1223_3445));
        assert_eq!(m.read_sized(8, 2), Ok(0x3445));
        assert_eq!(m.read_sized(9, 1), Ok(0x34));
        m.write_sized(16, 8, u64::MAX).expect("w8");
        assert_eq!(m.read_sized(16, 8), Ok(u64::MAX));
        assert!(m.read_sized(9, 2).is_err(), "misaligned");
        assert!(m.read_sized(8, 3).is_err(), "bad size");
        assert!(m.write_sized(4092, 8, 0).is_err(), "past the end");
        assert!(m.read_sized(usize::MAX - 1, 2).is_err());
    }

    #[test]
    fn reservation_filled_by_fixed_mapping() {
        let shm = SharedMemory::new("t", 4096).expect("memfd");
        shm.map(0, 4096).expect("m").write(0, b"abcd").expect("w");
        let r = MappedRegion::reserve(3 * 4096).expect("reserve");
        r.map_fixed_shared(4096, shm.fd(), 0, 4096).expect("fixed");
        let mut b = [0u8; 4];
        r.read(4096, &mut b).expect("r");
        assert_eq!(&b, b"abcd");
    }
}
