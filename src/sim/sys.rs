//! [`SimSys`]: the device model's privcmd + evtchn handle on the simulated hypervisor.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use xen_bindings::mem::MappedRegion;
use xen_bindings::privcmd::{DM_OP_BUF_MAX_SIZE, DM_OP_MAX_NR_BUFS};
use xen_bindings::sys::{dm_op_name, SysError, SysResult, XenSys};

use super::{DmPort, EvtchnFile, SimXen, DM_DOMID};

/// One device-model process's view of the simulated hypervisor (like an open privcmd fd plus an
/// open evtchn fd). Dropping it closes the evtchn file, which unbinds its ports.
pub struct SimSys {
    xen: SimXen,
    file: Arc<EvtchnFile>,
    privcmd_restrict: Mutex<Option<u16>>,
    evtchn_restrict: Mutex<Option<u16>>,
}

impl std::fmt::Debug for SimSys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimSys({:?})", self.xen)
    }
}

impl SimSys {
    pub(super) fn new(xen: SimXen) -> std::io::Result<Self> {
        Ok(Self {
            xen,
            file: Arc::new(EvtchnFile::new()?),
            privcmd_restrict: Mutex::new(None),
            evtchn_restrict: Mutex::new(None),
        })
    }

    /// The hypervisor this handle talks to.
    pub fn xen(&self) -> &SimXen {
        &self.xen
    }

    fn check_dom(&self, call: &str, dom: u16) -> SysResult<()> {
        if let Ok(g) = self.privcmd_restrict.lock() {
            if let Some(r) = *g {
                if r != dom {
                    return Err(SysError::new(call, libc::EPERM));
                }
            }
        }
        if dom != self.xen.inner.cfg.domid {
            return Err(SysError::new(call, libc::ESRCH));
        }
        Ok(())
    }
}

impl XenSys for SimSys {
    fn dm_op(&self, dom: u16, bufs: &mut [&mut [u8]]) -> SysResult<()> {
        let name = dm_op_name(bufs);
        if bufs.is_empty() {
            // libxendevicemodel's probe: num == 0 succeeds without a hypercall.
            return Ok(());
        }
        if bufs.len() > DM_OP_MAX_NR_BUFS || bufs.iter().any(|b| b.len() > DM_OP_BUF_MAX_SIZE) {
            return Err(SysError::new(name, libc::E2BIG));
        }
        self.check_dom(&name, dom)?;
        self.xen.dm_op(bufs).map_err(|e| SysError::new(name, e))
    }

    fn mmap_resource(&self, dom: u16, type_: u32, id: u32, idx: u32, num: u64) -> SysResult<MappedRegion> {
        let name = "IOCTL_PRIVCMD_MMAP_RESOURCE";
        self.check_dom(name, dom)?;
        self.xen.mmap_resource(type_, id, idx, num).map_err(|e| SysError::new(name, e))
    }

    fn mmap_batch(&self, dom: u16, gfns: &[u64], errs: &mut [i32]) -> SysResult<MappedRegion> {
        let name = "IOCTL_PRIVCMD_MMAPBATCH_V2";
        self.check_dom(name, dom)?;
        if gfns.is_empty() || errs.len() != gfns.len() {
            return Err(SysError::new(name, libc::EINVAL));
        }
        self.xen.mmap_batch(gfns, errs).map_err(|e| SysError::new(name, e))
    }

    fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> SysResult<i64> {
        let name = format!("IOCTL_PRIVCMD_HYPERCALL({op})");
        if self.privcmd_restrict.lock().map(|g| g.is_some()).unwrap_or(true) {
            // Linux: "Disallow arbitrary hypercalls if restricted".
            return Err(SysError::new(name, libc::EPERM));
        }
        self.xen.hypercall(op, leading, buf).map_err(|e| SysError::new(name, e))
    }

    fn privcmd_restrict(&self, dom: u16) -> SysResult<()> {
        let mut g = self.privcmd_restrict.lock().map_err(|_| SysError::new("IOCTL_PRIVCMD_RESTRICT", libc::EIO))?;
        match *g {
            Some(d) if d != dom => Err(SysError::new("IOCTL_PRIVCMD_RESTRICT", libc::EINVAL)),
            _ => {
                *g = Some(dom);
                Ok(())
            }
        }
    }

    fn evtchn_bind_interdomain(&self, remote_dom: u32, remote_port: u32) -> SysResult<u32> {
        let name = format!("IOCTL_EVTCHN_BIND_INTERDOMAIN(dom {remote_dom}, port {remote_port})");
        if let Ok(g) = self.evtchn_restrict.lock() {
            if g.is_some_and(|d| u32::from(d) != remote_dom) {
                return Err(SysError::new(name, libc::EINVAL));
            }
        }
        if remote_dom == u32::from(DM_DOMID) && remote_dom != u32::from(self.xen.inner.cfg.domid) {
            // A loopback channel to another dom0 process's unbound port.
            let mut st = self.xen.lock();
            return super::evtchn::loopback_bind(&mut st, &self.file, remote_port).map_err(|e| SysError::new(name, e));
        }
        if remote_dom != u32::from(self.xen.inner.cfg.domid) {
            return Err(SysError::new(name, libc::ESRCH));
        }
        let mut st = self.xen.lock();
        let local = st.next_dm_port;
        let gp = st.guest_ports.get_mut(&remote_port).ok_or_else(|| SysError::new(name.clone(), libc::EINVAL))?;
        if gp.remote_dom != DM_DOMID || gp.bound_to.is_some() {
            return Err(SysError::new(name, libc::EINVAL));
        }
        gp.bound_to = Some(local);
        let pending = std::mem::take(&mut gp.pending);
        st.next_dm_port += 1;
        self.file.add(local);
        st.dm_ports.insert(
            local,
            DmPort { file: self.file.clone(), peer: Some(remote_port), remote_dom: self.xen.inner.cfg.domid },
        );
        if pending {
            self.file.fire(local);
        }
        Ok(local)
    }

    fn evtchn_bind_unbound_port(&self, remote_dom: u32) -> SysResult<u32> {
        let name = "IOCTL_EVTCHN_BIND_UNBOUND_PORT";
        let rd = u16::try_from(remote_dom).map_err(|_| SysError::new(name, libc::EINVAL))?;
        let mut st = self.xen.lock();
        let local = st.next_dm_port;
        st.next_dm_port += 1;
        self.file.add(local);
        st.dm_ports.insert(local, DmPort { file: self.file.clone(), peer: None, remote_dom: rd });
        Ok(local)
    }

    fn evtchn_unbind(&self, port: u32) -> SysResult<()> {
        let mut st = self.xen.lock();
        match st.dm_ports.get(&port) {
            Some(dp) if Arc::ptr_eq(&dp.file, &self.file) => {}
            _ => return Err(SysError::new(format!("IOCTL_EVTCHN_UNBIND({port})"), libc::ENOTCONN)),
        }
        if let Some(dp) = st.dm_ports.remove(&port) {
            if let Some(gp) = dp.peer.and_then(|p| st.guest_ports.get_mut(&p)) {
                gp.bound_to = None;
            }
        }
        super::evtchn::loopback_close(&mut st, port);
        self.file.remove(port);
        Ok(())
    }

    fn evtchn_notify(&self, port: u32) -> SysResult<()> {
        let mut st = self.xen.lock();
        let peer = match st.dm_ports.get(&port) {
            Some(dp) if Arc::ptr_eq(&dp.file, &self.file) => dp.peer,
            _ => return Err(SysError::new(format!("IOCTL_EVTCHN_NOTIFY({port})"), libc::ENOTCONN)),
        };
        if super::evtchn::loopback_notify(&st, port) {
            return Ok(());
        }
        if let Some(gp) = peer.and_then(|p| st.guest_ports.get_mut(&p)) {
            gp.kicks = gp.kicks.wrapping_add(1);
        }
        drop(st);
        self.xen.inner.cv.notify_all();
        Ok(())
    }

    fn evtchn_reset(&self) -> SysResult<()> {
        self.file.reset();
        Ok(())
    }

    fn evtchn_restrict_domid(&self, dom: u16) -> SysResult<()> {
        let mut g = self.evtchn_restrict.lock().map_err(|_| SysError::new("IOCTL_EVTCHN_RESTRICT_DOMID", libc::EIO))?;
        *g = Some(dom);
        Ok(())
    }

    fn evtchn_pending(&self, out: &mut Vec<u32>) -> SysResult<()> {
        self.file.read_pending(out).map_err(|e| SysError::new("read evtchn", e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn evtchn_unmask(&self, port: u32) -> SysResult<()> {
        if self.file.unmask(port) {
            Ok(())
        } else {
            Err(SysError::new(format!("unmask evtchn port {port}"), libc::EINVAL))
        }
    }

    fn evtchn_fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }
}

impl Drop for SimSys {
    fn drop(&mut self) {
        // Closing the evtchn fd unbinds all of its ports.
        let mut st = self.xen.lock();
        let mine: Vec<u32> =
            st.dm_ports.iter().filter(|(_, d)| Arc::ptr_eq(&d.file, &self.file)).map(|(p, _)| *p).collect();
        for p in mine {
            if let Some(dp) = st.dm_ports.remove(&p) {
                if let Some(gp) = dp.peer.and_then(|x| st.guest_ports.get_mut(&x)) {
                    gp.bound_to = None;
                }
            }
            super::evtchn::loopback_close(&mut st, p);
        }
    }
}
