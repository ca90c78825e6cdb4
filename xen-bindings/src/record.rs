//! A [`XenSys`] wrapper that records every call with the exact bytes the kernel would receive.
//!
//! This is the seam through which the Xen backend is unit-tested on machines without Xen: wrap
//! the simulated hypervisor (or a scripted fake) and assert on the recorded requests, their
//! ioctl numbers and their argument bytes at the C offsets checked by `tests/c_layout.rs`.

use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use crate::evtchn::*;
use crate::mem::MappedRegion;
use crate::privcmd::*;
use crate::sys::{encode_dm_op, encode_mmap_batch, encode_mmap_resource, SysResult, XenSys};

/// Which device node a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    /// `/dev/xen/privcmd`.
    Privcmd,
    /// `/dev/xen/evtchn`.
    Evtchn,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Device.
    pub dev: Dev,
    /// ioctl request number; 0 for `read`/`write` on the evtchn fd.
    pub request: u32,
    /// Bytes of the ioctl argument struct as passed (pointers included), or the bytes written.
    pub arg: Vec<u8>,
    /// Bytes of the buffers the argument points to, as sent (dm_op: each buffer; mmapbatch: the
    /// gfn array).
    pub payload_in: Vec<Vec<u8>>,
    /// The same buffers after the call (OUT fields).
    pub payload_out: Vec<Vec<u8>>,
    /// Return value, or the negative errno.
    pub result: Result<i64, i32>,
}

/// Records calls to an inner [`XenSys`].
#[derive(Debug)]
pub struct RecordingSys<S> {
    inner: S,
    log: Mutex<Vec<Record>>,
    /// When false, `evtchn_pending`/`evtchn_unmask` are not recorded (they are frequent).
    record_io: bool,
}

impl<S: XenSys> RecordingSys<S> {
    /// Wraps `inner`; event-channel reads and unmasks are recorded too when `record_io`.
    pub fn new(inner: S, record_io: bool) -> Self {
        Self { inner, log: Mutex::new(Vec::new()), record_io }
    }

    /// The calls so far.
    pub fn records(&self) -> Vec<Record> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn push(&self, r: Record) {
        if let Ok(mut l) = self.log.lock() {
            l.push(r);
        }
    }
}

fn res<T: Copy + Into<i64>>(r: &SysResult<T>) -> Result<i64, i32> {
    match r {
        Ok(v) => Ok((*v).into()),
        Err(e) => Err(-e.errno),
    }
}

fn res_unit(r: &SysResult<()>) -> Result<i64, i32> {
    match r {
        Ok(()) => Ok(0),
        Err(e) => Err(-e.errno),
    }
}

impl<S: XenSys> XenSys for RecordingSys<S> {
    fn dm_op(&self, dom: u16, bufs: &mut [&mut [u8]]) -> SysResult<()> {
        let (op, descs) = encode_dm_op(dom, bufs);
        let mut arg = bytemuck::bytes_of(&op).to_vec();
        for d in &descs {
            arg.extend_from_slice(bytemuck::bytes_of(d));
        }
        drop(descs);
        let payload_in = bufs.iter().map(|b| b.to_vec()).collect();
        let r = self.inner.dm_op(dom, bufs);
        let payload_out = bufs.iter().map(|b| b.to_vec()).collect();
        self.push(Record {
            dev: Dev::Privcmd,
            request: IOCTL_PRIVCMD_DM_OP,
            arg,
            payload_in,
            payload_out,
            result: res_unit(&r),
        });
        r
    }

    fn mmap_resource(&self, dom: u16, type_: u32, id: u32, idx: u32, num: u64) -> SysResult<MappedRegion> {
        let r = self.inner.mmap_resource(dom, type_, id, idx, num);
        let addr = r.as_ref().map(|m| m.addr()).unwrap_or(0);
        let arg = bytemuck::bytes_of(&encode_mmap_resource(dom, type_, id, idx, num, addr)).to_vec();
        let result = match &r {
            Ok(_) => Ok(0),
            Err(e) => Err(-e.errno),
        };
        self.push(Record {
            dev: Dev::Privcmd,
            request: IOCTL_PRIVCMD_MMAP_RESOURCE,
            arg,
            payload_in: vec![],
            payload_out: vec![],
            result,
        });
        r
    }

    fn mmap_batch(&self, dom: u16, gfns: &[u64], errs: &mut [i32]) -> SysResult<MappedRegion> {
        let r = self.inner.mmap_batch(dom, gfns, errs);
        let addr = r.as_ref().map(|m| m.addr()).unwrap_or(0);
        let arg = bytemuck::bytes_of(&encode_mmap_batch(dom, gfns, errs, addr)).to_vec();
        let result = match &r {
            Ok(_) => Ok(0),
            Err(e) => Err(-e.errno),
        };
        let payload_in = vec![bytemuck::cast_slice(gfns).to_vec()];
        let payload_out = vec![bytemuck::cast_slice(errs).to_vec()];
        self.push(Record {
            dev: Dev::Privcmd,
            request: IOCTL_PRIVCMD_MMAPBATCH_V2,
            arg,
            payload_in,
            payload_out,
            result,
        });
        r
    }

    fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> SysResult<i64> {
        let mut a = PrivcmdHypercall { op, arg: [0; 5] };
        for (d, s) in a.arg.iter_mut().zip(leading) {
            *d = *s;
        }
        let payload_in = vec![buf.to_vec()];
        let r = self.inner.hypercall(op, leading, buf);
        self.push(Record {
            dev: Dev::Privcmd,
            request: IOCTL_PRIVCMD_HYPERCALL,
            arg: bytemuck::bytes_of(&a).to_vec(),
            payload_in,
            payload_out: vec![buf.to_vec()],
            result: res(&r),
        });
        r
    }

    fn privcmd_restrict(&self, dom: u16) -> SysResult<()> {
        let r = self.inner.privcmd_restrict(dom);
        self.push(Record {
            dev: Dev::Privcmd,
            request: IOCTL_PRIVCMD_RESTRICT,
            arg: dom.to_ne_bytes().to_vec(),
            payload_in: vec![],
            payload_out: vec![],
            result: res_unit(&r),
        });
        r
    }

    fn evtchn_bind_interdomain(&self, remote_dom: u32, remote_port: u32) -> SysResult<u32> {
        let a = IoctlEvtchnBindInterdomain { remote_domain: remote_dom, remote_port };
        let r = self.inner.evtchn_bind_interdomain(remote_dom, remote_port);
        self.push(Record {
            dev: Dev::Evtchn,
            request: IOCTL_EVTCHN_BIND_INTERDOMAIN,
            arg: bytemuck::bytes_of(&a).to_vec(),
            payload_in: vec![],
            payload_out: vec![],
            result: res(&r),
        });
        r
    }

    fn evtchn_bind_unbound_port(&self, remote_dom: u32) -> SysResult<u32> {
        let a = IoctlEvtchnBindUnboundPort { remote_domain: remote_dom };
        let r = self.inner.evtchn_bind_unbound_port(remote_dom);
        self.push(Record {
            dev: Dev::Evtchn,
            request: IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            arg: bytemuck::bytes_of(&a).to_vec(),
            payload_in: vec![],
            payload_out: vec![],
            result: res(&r),
        });
        r
    }

    fn evtchn_unbind(&self, port: u32) -> SysResult<()> {
        let a = IoctlEvtchnUnbind { port };
        let r = self.inner.evtchn_unbind(port);
        self.push(Record {
            dev: Dev::Evtchn,
            request: IOCTL_EVTCHN_UNBIND,
            arg: bytemuck::bytes_of(&a).to_vec(),
            payload_in: vec![],
            payload_out: vec![],
            result: res_unit(&r),
        });
        r
    }

    fn evtchn_notify(&self, port: u32) -> SysResult<()> {
        let a = IoctlEvtchnNotify { port };
        let r = self.inner.evtchn_notify(port);
        if self.record_io {
            self.push(Record {
                dev: Dev::Evtchn,
                request: IOCTL_EVTCHN_NOTIFY,
                arg: bytemuck::bytes_of(&a).to_vec(),
                payload_in: vec![],
                payload_out: vec![],
                result: res_unit(&r),
            });
        }
        r
    }

    fn evtchn_reset(&self) -> SysResult<()> {
        let r = self.inner.evtchn_reset();
        self.push(Record {
            dev: Dev::Evtchn,
            request: IOCTL_EVTCHN_RESET,
            arg: vec![],
            payload_in: vec![],
            payload_out: vec![],
            result: res_unit(&r),
        });
        r
    }

    fn evtchn_restrict_domid(&self, dom: u16) -> SysResult<()> {
        let a = IoctlEvtchnRestrictDomid { domid: dom };
        let r = self.inner.evtchn_restrict_domid(dom);
        self.push(Record {
            dev: Dev::Evtchn,
            request: IOCTL_EVTCHN_RESTRICT_DOMID,
            arg: bytemuck::bytes_of(&a).to_vec(),
            payload_in: vec![],
            payload_out: vec![],
            result: res_unit(&r),
        });
        r
    }

    fn evtchn_pending(&self, out: &mut Vec<u32>) -> SysResult<()> {
        let start = out.len();
        let r = self.inner.evtchn_pending(out);
        if self.record_io {
            let got: Vec<u8> = out.get(start..).unwrap_or(&[]).iter().flat_map(|p| p.to_ne_bytes()).collect();
            self.push(Record {
                dev: Dev::Evtchn,
                request: 0,
                arg: vec![],
                payload_in: vec![],
                payload_out: vec![got],
                result: res_unit(&r),
            });
        }
        r
    }

    fn evtchn_unmask(&self, port: u32) -> SysResult<()> {
        let r = self.inner.evtchn_unmask(port);
        if self.record_io {
            self.push(Record {
                dev: Dev::Evtchn,
                request: 0,
                arg: port.to_ne_bytes().to_vec(),
                payload_in: vec![],
                payload_out: vec![],
                result: res_unit(&r),
            });
        }
        r
    }

    fn evtchn_fd(&self) -> BorrowedFd<'_> {
        self.inner.evtchn_fd()
    }
}
