//! The seam between the device model and the hypervisor: one method per privcmd/evtchn ioctl (or
//! mmap/read/write on those devices).
//!
//! [`LinuxSys`] issues the real ioctls on `/dev/xen/privcmd` and `/dev/xen/evtchn`. The simulated
//! hypervisor (`q35dm::sim`) implements the same trait and interprets the same argument bytes the
//! way Xen would; [`crate::record::RecordingSys`] wraps either and records every call with the
//! exact argument bytes the kernel would see.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytemuck::Pod;
use thiserror::Error;

use crate::evtchn::*;
use crate::mem::MappedRegion;
use crate::privcmd::*;

/// A failed hypervisor or driver call, with the errno the kernel or Xen returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{call} failed: {}", io::Error::from_raw_os_error(*.errno))]
pub struct SysError {
    /// What was called, e.g. `IOCTL_PRIVCMD_DM_OP(create_ioreq_server)`.
    pub call: String,
    /// Positive errno value.
    pub errno: i32,
}

impl SysError {
    /// Builds an error for `call` with `errno`.
    pub fn new(call: impl Into<String>, errno: i32) -> Self {
        Self { call: call.into(), errno }
    }
    fn last(call: impl Into<String>) -> Self {
        Self::new(call, io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Result of a seam call.
pub type SysResult<T> = Result<T, SysError>;

/// Everything the device model asks of `/dev/xen/privcmd` and `/dev/xen/evtchn`.
pub trait XenSys: Send + Sync {
    /// `IOCTL_PRIVCMD_DM_OP`: `bufs[0]` is a `struct xen_dm_op`; Xen copies OUT fields back.
    fn dm_op(&self, dom: u16, bufs: &mut [&mut [u8]]) -> SysResult<()>;
    /// `mmap` of privcmd followed by `IOCTL_PRIVCMD_MMAP_RESOURCE` (`XENMEM_acquire_resource`).
    fn mmap_resource(&self, dom: u16, type_: u32, id: u32, idx: u32, num: u64) -> SysResult<MappedRegion>;
    /// `mmap` of privcmd followed by `IOCTL_PRIVCMD_MMAPBATCH_V2`; per-page errors land in `errs`
    /// (negative errno, 0 = mapped). Pages with an error must not be touched.
    fn mmap_batch(&self, dom: u16, gfns: &[u64], errs: &mut [i32]) -> SysResult<MappedRegion>;
    /// `IOCTL_PRIVCMD_HYPERCALL` of hypercall `op` with arguments `leading..., &buf` (the buffer
    /// is placed in hypercall-safe memory and copied back afterwards). Returns Xen's return value.
    fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> SysResult<i64>;
    /// `IOCTL_PRIVCMD_RESTRICT`.
    fn privcmd_restrict(&self, dom: u16) -> SysResult<()>;
    /// `IOCTL_EVTCHN_BIND_INTERDOMAIN`; returns the local port.
    fn evtchn_bind_interdomain(&self, remote_dom: u32, remote_port: u32) -> SysResult<u32>;
    /// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`; returns the new local port.
    fn evtchn_bind_unbound_port(&self, remote_dom: u32) -> SysResult<u32>;
    /// `IOCTL_EVTCHN_UNBIND`.
    fn evtchn_unbind(&self, port: u32) -> SysResult<()>;
    /// `IOCTL_EVTCHN_NOTIFY` on a local port.
    fn evtchn_notify(&self, port: u32) -> SysResult<()>;
    /// `IOCTL_EVTCHN_RESET`.
    fn evtchn_reset(&self) -> SysResult<()>;
    /// `IOCTL_EVTCHN_RESTRICT_DOMID`.
    fn evtchn_restrict_domid(&self, dom: u16) -> SysResult<()>;
    /// Non-blocking `read` of the evtchn fd: appends every pending (now masked) port to `out`.
    fn evtchn_pending(&self, out: &mut Vec<u32>) -> SysResult<()>;
    /// `write` of a port to the evtchn fd: unmasks it.
    fn evtchn_unmask(&self, port: u32) -> SysResult<()>;
    /// The evtchn fd, readable when ports are pending (for `poll`).
    fn evtchn_fd(&self) -> BorrowedFd<'_>;
}

/// Builds the `privcmd_dm_op` argument and its buffer descriptors exactly as passed to the kernel.
/// The descriptor vector must outlive the ioctl (`op.ubufs` points into it).
pub fn encode_dm_op(dom: u16, bufs: &mut [&mut [u8]]) -> (PrivcmdDmOp, Vec<PrivcmdDmOpBuf>) {
    let descs: Vec<PrivcmdDmOpBuf> =
        bufs.iter_mut().map(|b| PrivcmdDmOpBuf { uptr: b.as_mut_ptr() as u64, size: b.len() as u64 }).collect();
    let op =
        PrivcmdDmOp { dom, num: u16::try_from(descs.len()).unwrap_or(u16::MAX), pad: 0, ubufs: descs.as_ptr() as u64 };
    (op, descs)
}

/// Builds the `privcmd_mmap_resource` argument.
pub fn encode_mmap_resource(dom: u16, type_: u32, id: u32, idx: u32, num: u64, addr: u64) -> PrivcmdMmapResource {
    PrivcmdMmapResource { dom, pad: 0, type_, id, idx, num, addr }
}

/// Builds the `privcmd_mmapbatch_v2` argument.
pub fn encode_mmap_batch(dom: u16, gfns: &[u64], errs: &mut [i32], addr: u64) -> PrivcmdMmapBatchV2 {
    PrivcmdMmapBatchV2 {
        num: u32::try_from(gfns.len()).unwrap_or(u32::MAX),
        dom,
        pad: 0,
        addr,
        arr: gfns.as_ptr() as u64,
        err: errs.as_mut_ptr() as u64,
    }
}

/// Default device paths.
pub const PRIVCMD_PATH: &str = "/dev/xen/privcmd";
/// Default evtchn path.
pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";
/// Hypercall buffer device (Linux >= 4.18).
pub const HYPERCALL_PATH: &str = "/dev/xen/hypercall";

/// The real Linux devices.
#[derive(Debug)]
pub struct LinuxSys {
    privcmd: File,
    evtchn: File,
    hypercall_dev: Option<PathBuf>,
}

fn open_dev(path: &Path, nonblock: bool) -> SysResult<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(libc::O_CLOEXEC | if nonblock { libc::O_NONBLOCK } else { 0 });
    o.open(path).map_err(|e| {
        SysError::new(
            format!(
                "open {} (is this dom0 with the Xen {} driver loaded?)",
                path.display(),
                path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ),
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })
}

fn ioctl_arg<T: Pod>(fd: BorrowedFd<'_>, name: &str, req: u32, arg: &mut T) -> SysResult<i32> {
    // SAFETY: `req` is one of the privcmd/evtchn requests whose argument type is `T` (the caller
    // pairs them; the sizes are encoded in `req` and checked against C by the layout test); `arg`
    // is a valid, exclusively borrowed `T` for the duration of the call. Pointers embedded in `T`
    // refer to buffers the caller keeps alive across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::c_ulong::from(req), (arg as *mut T).cast::<libc::c_void>()) };
    if rc < 0 {
        return Err(SysError::last(name));
    }
    Ok(rc)
}

impl LinuxSys {
    /// Opens the default devices.
    pub fn open() -> SysResult<Self> {
        Self::open_at(Path::new(PRIVCMD_PATH), Path::new(EVTCHN_PATH))
    }

    /// Opens the given device nodes.
    pub fn open_at(privcmd: &Path, evtchn: &Path) -> SysResult<Self> {
        let privcmd = open_dev(privcmd, false)?;
        let evtchn = open_dev(evtchn, true)?;
        let hypercall_dev = Path::new(HYPERCALL_PATH).exists().then(|| PathBuf::from(HYPERCALL_PATH));
        Ok(Self { privcmd, evtchn, hypercall_dev })
    }

    fn hypercall_region(&self, len: usize) -> SysResult<MappedRegion> {
        let len = len.div_ceil(4096).max(1) * 4096;
        if let Some(p) = &self.hypercall_dev {
            let f = open_dev(p, false)?;
            return MappedRegion::map_shared(f.as_fd(), 0, len)
                .map_err(|e| SysError::new("mmap /dev/xen/hypercall", e.raw_os_error().unwrap_or(libc::EIO)));
        }
        let r = MappedRegion::anonymous(len)
            .map_err(|e| SysError::new("mmap hypercall buffer", e.raw_os_error().unwrap_or(libc::EIO)))?;
        // SAFETY: mlock on memory we own; failure is reported and harmless.
        if unsafe { libc::mlock(r.addr() as *const libc::c_void, r.len()) } != 0 {
            return Err(SysError::last("mlock hypercall buffer"));
        }
        Ok(r)
    }
}

impl XenSys for LinuxSys {
    fn dm_op(&self, dom: u16, bufs: &mut [&mut [u8]]) -> SysResult<()> {
        let (mut op, descs) = encode_dm_op(dom, bufs);
        let name = dm_op_name(bufs);
        ioctl_arg(self.privcmd.as_fd(), &name, IOCTL_PRIVCMD_DM_OP, &mut op)?;
        drop(descs);
        Ok(())
    }

    fn mmap_resource(&self, dom: u16, type_: u32, id: u32, idx: u32, num: u64) -> SysResult<MappedRegion> {
        let len = usize::try_from(num)
            .ok()
            .and_then(|n| n.checked_mul(4096))
            .ok_or_else(|| SysError::new(format!("IOCTL_PRIVCMD_MMAP_RESOURCE of {num} frames"), libc::EINVAL))?;
        let region = MappedRegion::map_shared(self.privcmd.as_fd(), 0, len)
            .map_err(|e| SysError::new("mmap /dev/xen/privcmd", e.raw_os_error().unwrap_or(libc::EIO)))?;
        let mut arg = encode_mmap_resource(dom, type_, id, idx, num, region.addr());
        ioctl_arg(self.privcmd.as_fd(), "IOCTL_PRIVCMD_MMAP_RESOURCE", IOCTL_PRIVCMD_MMAP_RESOURCE, &mut arg)?;
        Ok(region)
    }

    fn mmap_batch(&self, dom: u16, gfns: &[u64], errs: &mut [i32]) -> SysResult<MappedRegion> {
        if errs.len() != gfns.len() || gfns.is_empty() {
            return Err(SysError::new("IOCTL_PRIVCMD_MMAPBATCH_V2 (bad array lengths)", libc::EINVAL));
        }
        let region = MappedRegion::map_shared(self.privcmd.as_fd(), 0, gfns.len() * 4096)
            .map_err(|e| SysError::new("mmap /dev/xen/privcmd", e.raw_os_error().unwrap_or(libc::EIO)))?;
        let mut arg = encode_mmap_batch(dom, gfns, errs, region.addr());
        match ioctl_arg(self.privcmd.as_fd(), "IOCTL_PRIVCMD_MMAPBATCH_V2", IOCTL_PRIVCMD_MMAPBATCH_V2, &mut arg) {
            Ok(_) => Ok(region),
            // Per-page failures (paged out) are reported in errs.
            Err(e) if e.errno == libc::ENOENT => Ok(region),
            Err(e) => Err(e),
        }
    }

    fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> SysResult<i64> {
        if leading.len() > 4 {
            return Err(SysError::new(format!("hypercall {op} with {} arguments", leading.len() + 1), libc::EINVAL));
        }
        let region = self.hypercall_region(buf.len())?;
        region.write(0, buf).map_err(|_| SysError::new("hypercall buffer", libc::EINVAL))?;
        let mut arg = PrivcmdHypercall { op, arg: [0; 5] };
        arg.arg[..leading.len()].copy_from_slice(leading);
        arg.arg[leading.len()] = region.addr();
        let name = format!("IOCTL_PRIVCMD_HYPERCALL({op})");
        let rc = ioctl_arg(self.privcmd.as_fd(), &name, IOCTL_PRIVCMD_HYPERCALL, &mut arg);
        region.read(0, buf).map_err(|_| SysError::new("hypercall buffer", libc::EINVAL))?;
        rc.map(i64::from)
    }

    fn privcmd_restrict(&self, dom: u16) -> SysResult<()> {
        let mut d = dom;
        ioctl_arg(self.privcmd.as_fd(), "IOCTL_PRIVCMD_RESTRICT", IOCTL_PRIVCMD_RESTRICT, &mut d).map(|_| ())
    }

    fn evtchn_bind_interdomain(&self, remote_dom: u32, remote_port: u32) -> SysResult<u32> {
        let mut a = IoctlEvtchnBindInterdomain { remote_domain: remote_dom, remote_port };
        let name = format!("IOCTL_EVTCHN_BIND_INTERDOMAIN(dom {remote_dom}, port {remote_port})");
        ioctl_arg(self.evtchn.as_fd(), &name, IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut a).map(|p| p as u32)
    }

    fn evtchn_bind_unbound_port(&self, remote_dom: u32) -> SysResult<u32> {
        let mut a = IoctlEvtchnBindUnboundPort { remote_domain: remote_dom };
        ioctl_arg(self.evtchn.as_fd(), "IOCTL_EVTCHN_BIND_UNBOUND_PORT", IOCTL_EVTCHN_BIND_UNBOUND_PORT, &mut a)
            .map(|p| p as u32)
    }

    fn evtchn_unbind(&self, port: u32) -> SysResult<()> {
        let mut a = IoctlEvtchnUnbind { port };
        ioctl_arg(self.evtchn.as_fd(), "IOCTL_EVTCHN_UNBIND", IOCTL_EVTCHN_UNBIND, &mut a).map(|_| ())
    }

    fn evtchn_notify(&self, port: u32) -> SysResult<()> {
        let mut a = IoctlEvtchnNotify { port };
        ioctl_arg(self.evtchn.as_fd(), "IOCTL_EVTCHN_NOTIFY", IOCTL_EVTCHN_NOTIFY, &mut a).map(|_| ())
    }

    fn evtchn_reset(&self) -> SysResult<()> {
        // SAFETY: IOCTL_EVTCHN_RESET takes no argument.
        let rc = unsafe { libc::ioctl(self.evtchn.as_raw_fd(), libc::c_ulong::from(IOCTL_EVTCHN_RESET), 0) };
        if rc < 0 {
            return Err(SysError::last("IOCTL_EVTCHN_RESET"));
        }
        Ok(())
    }

    fn evtchn_restrict_domid(&self, dom: u16) -> SysResult<()> {
        let mut a = IoctlEvtchnRestrictDomid { domid: dom };
        ioctl_arg(self.evtchn.as_fd(), "IOCTL_EVTCHN_RESTRICT_DOMID", IOCTL_EVTCHN_RESTRICT_DOMID, &mut a).map(|_| ())
    }

    fn evtchn_pending(&self, out: &mut Vec<u32>) -> SysResult<()> {
        use std::io::Read;
        let mut buf = [0u8; 4 * 64];
        loop {
            match (&self.evtchn).read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    for c in buf[..n - n % 4].chunks_exact(4) {
                        out.push(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                    }
                    if n < buf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SysError::new("read /dev/xen/evtchn", e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
    }

    fn evtchn_unmask(&self, port: u32) -> SysResult<()> {
        use std::io::Write;
        (&self.evtchn)
            .write_all(&port.to_ne_bytes())
            .map_err(|e| SysError::new(format!("unmask evtchn port {port}"), e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn evtchn_fd(&self) -> BorrowedFd<'_> {
        self.evtchn.as_fd()
    }
}

/// A readable name for the dm_op in `bufs[0]`, for error messages.
pub fn dm_op_name(bufs: &[&mut [u8]]) -> String {
    let op = bufs.first().and_then(|b| b.get(0..4)).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let n = match op {
        Some(1) => "create_ioreq_server",
        Some(2) => "get_ioreq_server_info",
        Some(3) => "map_io_range_to_ioreq_server",
        Some(4) => "unmap_io_range_from_ioreq_server",
        Some(5) => "set_ioreq_server_state",
        Some(6) => "destroy_ioreq_server",
        Some(7) => "track_dirty_vram",
        Some(8) => "set_pci_intx_level",
        Some(9) => "set_isa_irq_level",
        Some(10) => "set_pci_link_route",
        Some(11) => "modified_memory",
        Some(12) => "set_mem_type",
        Some(13) => "inject_event",
        Some(14) => "inject_msi",
        Some(15) => "map_mem_type_to_ioreq_server",
        Some(16) => "remote_shutdown",
        Some(17) => "relocate_memory",
        Some(18) => "pin_memory_cacheattr",
        Some(19) => "set_irq_level",
        Some(20) => "nr_vcpus",
        _ => "unknown",
    };
    format!("IOCTL_PRIVCMD_DM_OP({n})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_xen_names_the_device() {
        let e = LinuxSys::open_at(Path::new("/nonexistent/xen/privcmd"), Path::new("/nonexistent/evtchn"))
            .expect_err("no xen here");
        assert_eq!(e.errno, libc::ENOENT);
        assert!(e.to_string().contains("/nonexistent/xen/privcmd"), "{e}");
    }

    #[test]
    fn dm_op_encoding_points_at_buffers() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 16];
        let pa = a.as_ptr() as u64;
        let mut bufs: [&mut [u8]; 2] = [&mut a, &mut b];
        let (op, descs) = encode_dm_op(7, &mut bufs);
        assert_eq!((op.dom, op.num), (7, 2));
        assert_eq!(op.ubufs, descs.as_ptr() as u64);
        assert_eq!(descs[0], PrivcmdDmOpBuf { uptr: pa, size: 32 });
        assert_eq!(descs[1].size, 16);
    }
}
