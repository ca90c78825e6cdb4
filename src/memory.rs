//! Guest RAM as the device model sees it: the [`GuestMemory`] trait, and [`MapCache`], which
//! maps guest frames on demand with `IOCTL_PRIVCMD_MMAPBATCH_V2` in 1 MiB buckets and keeps a
//! bounded number of them (QEMU's mapcache, simplified).

use std::collections::HashMap;
use std::sync::Arc;

use log::debug;
use thiserror::Error;
use xen_bindings::mem::MappedRegion;
use xen_bindings::sys::XenSys;

use crate::xen::DeviceModelOps;

/// Guest page size.
pub const PAGE: u64 = 4096;
/// Pages per mapping bucket.
pub const BUCKET_PAGES: u64 = 256;
/// Buckets kept mapped at once.
pub const MAX_BUCKETS: usize = 64;

/// A guest-memory access that could not be done.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("guest memory {op} of {len} bytes at {gpa:#x}: {why}")]
pub struct GuestMemError {
    /// "read" or "write".
    pub op: &'static str,
    /// Guest physical address of the failing part.
    pub gpa: u64,
    /// Length requested.
    pub len: usize,
    /// Reason.
    pub why: String,
}

/// Guest RAM access for `data_is_ptr` requests and DMA.
pub trait GuestMemory: Send {
    /// Copies `buf.len()` bytes from guest RAM at `gpa`.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError>;
    /// Copies `buf` into guest RAM at `gpa`.
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemError>;
    /// Drops every cached mapping (`IOREQ_TYPE_INVALIDATE`).
    fn invalidate(&mut self);
    /// Reports writes to the hypervisor as dirty pages while on (`xen-set-global-dirty-log`).
    fn set_log_dirty(&mut self, _on: bool) {}
}

struct Bucket {
    region: MappedRegion,
    valid: [u64; (BUCKET_PAGES / 64) as usize],
    last_use: u64,
}

impl Bucket {
    fn page_ok(&self, page: u64) -> bool {
        let (w, b) = ((page / 64) as usize, page % 64);
        self.valid.get(w).is_some_and(|v| v & (1 << b) != 0)
    }
}

/// On-demand foreign mappings of guest RAM.
pub struct MapCache {
    sys: Arc<dyn XenSys>,
    domid: u16,
    dm: DeviceModelOps,
    buckets: HashMap<u64, Bucket>,
    clock: u64,
    log_dirty: bool,
    /// Mapping calls made (for tests and statistics).
    pub maps: u64,
}

impl std::fmt::Debug for MapCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MapCache(dom{}, {} buckets)", self.domid, self.buckets.len())
    }
}

impl MapCache {
    /// A cache for `domid`.
    pub fn new(sys: Arc<dyn XenSys>, domid: u16) -> Self {
        let dm = DeviceModelOps::new(sys.clone(), domid);
        Self { sys, domid, dm, buckets: HashMap::new(), clock: 0, log_dirty: false, maps: 0 }
    }

    /// Reports every write with `modified_memory` while on (live migration).
    pub fn set_log_dirty(&mut self, on: bool) {
        self.log_dirty = on;
    }

    /// Number of buckets mapped.
    pub fn mapped_buckets(&self) -> usize {
        self.buckets.len()
    }

    fn bucket(&mut self, idx: u64, op: &'static str, gpa: u64, len: usize) -> Result<&Bucket, GuestMemError> {
        self.clock += 1;
        let now = self.clock;
        if !self.buckets.contains_key(&idx) {
            if self.buckets.len() >= MAX_BUCKETS {
                if let Some(old) = self.buckets.iter().min_by_key(|(_, b)| b.last_use).map(|(k, _)| *k) {
                    self.buckets.remove(&old);
                }
            }
            let first = idx.checked_mul(BUCKET_PAGES).ok_or_else(|| GuestMemError {
                op,
                gpa,
                len,
                why: "address out of range".into(),
            })?;
            let gfns: Vec<u64> = (0..BUCKET_PAGES).map(|i| first + i).collect();
            let mut errs = vec![0i32; gfns.len()];
            let region = self.sys.mmap_batch(self.domid, &gfns, &mut errs).map_err(|e| GuestMemError {
                op,
                gpa,
                len,
                why: e.to_string(),
            })?;
            self.maps += 1;
            let mut valid = [0u64; (BUCKET_PAGES / 64) as usize];
            for (i, e) in errs.iter().enumerate() {
                if *e == 0 {
                    if let Some(w) = valid.get_mut(i / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            }
            debug!("mapcache: mapped gfns {first:#x}+{BUCKET_PAGES}");
            self.buckets.insert(idx, Bucket { region, valid, last_use: now });
        }
        let b =
            self.buckets.get_mut(&idx).ok_or_else(|| GuestMemError { op, gpa, len, why: "mapping vanished".into() })?;
        b.last_use = now;
        Ok(b)
    }

    /// Runs `f(region, offset, chunk_start, chunk_len)` for each page-bounded piece.
    fn each_chunk(
        &mut self,
        op: &'static str,
        gpa: u64,
        len: usize,
        mut f: impl FnMut(&MappedRegion, usize, usize, usize) -> Result<(), String>,
    ) -> Result<(), GuestMemError> {
        let total = len as u64;
        if gpa.checked_add(total).is_none() {
            return Err(GuestMemError { op, gpa, len, why: "range wraps past 2^64".into() });
        }
        let mut done = 0u64;
        while done < total {
            let a = gpa + done;
            let pfn = a / PAGE;
            let in_page = PAGE - (a % PAGE);
            let n = in_page.min(total - done);
            let (bidx, bpage) = (pfn / BUCKET_PAGES, pfn % BUCKET_PAGES);
            let b = self.bucket(bidx, op, a, len)?;
            if !b.page_ok(bpage) {
                return Err(GuestMemError { op, gpa: a, len, why: format!("gfn {pfn:#x} is not guest RAM") });
            }
            let off = (bpage * PAGE + a % PAGE) as usize;
            f(&b.region, off, done as usize, n as usize).map_err(|why| GuestMemError { op, gpa: a, len, why })?;
            done += n;
        }
        Ok(())
    }
}

impl GuestMemory for MapCache {
    fn set_log_dirty(&mut self, on: bool) {
        MapCache::set_log_dirty(self, on);
    }

    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let len = buf.len();
        self.each_chunk("read", gpa, len, |r, off, start, n| {
            let dst = buf.get_mut(start..start + n).ok_or("chunk outside buffer")?;
            r.read(off, dst).map_err(|e| e.to_string())
        })
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemError> {
        let len = buf.len();
        self.each_chunk("write", gpa, len, |r, off, start, n| {
            let src = buf.get(start..start + n).ok_or("chunk outside buffer")?;
            r.write(off, src).map_err(|e| e.to_string())
        })?;
        if self.log_dirty && len > 0 {
            let first = gpa / PAGE;
            let last = (gpa + len as u64 - 1) / PAGE;
            let nr = u32::try_from(last - first + 1).unwrap_or(u32::MAX);
            if let Err(e) = self.dm.modified_memory(&[(first, nr)]) {
                crate::guest_warn!("reporting dirty pages {first:#x}+{nr}: {e}");
            }
        }
        Ok(())
    }

    fn invalidate(&mut self) {
        if !self.buckets.is_empty() {
            debug!("mapcache: invalidate ({} buckets dropped)", self.buckets.len());
        }
        self.buckets.clear();
    }
}
