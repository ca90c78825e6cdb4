//! The Xen calls of passthrough as data ([`PtOp`]), the seam that carries them out
//! ([`HostOps`]), and its implementations: [`XenHostOps`] (the real hypercalls through any
//! [`XenSys`], i.e. `/dev/xen/privcmd` on Xen or the simulated hypervisor in `--accel sim`) and
//! [`RecordingOps`] (in-memory, for unit tests and the fuzz target).
//!
//! | op | hypercall (what libxenctrl's wrapper would issue) |
//! |---|---|
//! | [`PtOp::MemoryMapping`] | domctl 39 `XEN_DOMCTL_memory_mapping` (`xc_domain_memory_mapping`): batches of at most 64 frames, positive return = partial progress, continued |
//! | [`PtOp::IoportMapping`] | domctl 40 `XEN_DOMCTL_ioport_mapping` |
//! | [`PtOp::MapPirq`] | physdev_op 13 `PHYSDEVOP_map_pirq`: `MAP_PIRQ_TYPE_GSI` with pirq = GSI (`xc_physdev_map_pirq`), or `MAP_PIRQ_TYPE_MSI_SEG` with index -1 (`xc_physdev_map_pirq_msi`) |
//! | [`PtOp::UnmapPirq`] | physdev_op 14 `PHYSDEVOP_unmap_pirq` |
//! | [`PtOp::Bind`] / [`PtOp::Unbind`] | domctl 38 / 48 `XEN_DOMCTL_{bind,unbind}_pt_irq` (`xc_domain_bind_pt_pci_irq`, `xc_domain_update_msi_irq`, `xc_domain_unbind_*`) |
//!
//! The domctl ABI is versioned: [`XenHostOps`] probes the running hypervisor once with
//! `XEN_DOMCTL_getdomaininfo` at each known `interface_version`, newest first (0x18, 0x17,
//! 0x16, 0x15), and keeps the first one Xen does not refuse with EACCES (Xen compares the version
//! before anything else, `xen/common/domctl.c`). A restricted privcmd (dm_restrict) refuses
//! every hypercall with EPERM: then passthrough is unavailable and says so.

use std::sync::{Arc, Mutex};

use thiserror::Error;
use xen_bindings::domctl::{self, BindPtIrq, DomctlPayload, DomctlVersion, IoportMapping, MemoryMapping};
use xen_bindings::hypercall::{HYPERVISOR_DOMCTL, HYPERVISOR_PHYSDEV_OP};
use xen_bindings::physdev::{PhysdevMapPirq, PhysdevUnmapPirq, PHYSDEVOP_MAP_PIRQ, PHYSDEVOP_UNMAP_PIRQ};
use xen_bindings::sys::{SysError, XenSys};

use crate::pci::Sbdf;

/// Frames per `XEN_DOMCTL_memory_mapping` call (Xen refuses more with E2BIG; libxenctrl uses
/// the same batch).
pub const MAPPING_BATCH: u64 = 64;

/// What a pirq is requested for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PirqSource {
    /// The function's INTx machine IRQ (identity pirq, as `xc_physdev_map_pirq` asks).
    Gsi(u32),
    /// MSI (entry 0, table base 0) or MSI-X entry `entry` with the machine address of the table
    /// BAR; `pirq` is a pirq the guest asked for (the PV-on-HVM "vector 0" convention) or `None`
    /// to let Xen choose.
    Msi {
        /// Host function.
        host: Sbdf,
        /// MSI-X entry (0 for MSI).
        entry: u16,
        /// Machine address of the BAR holding the MSI-X table (0 for MSI).
        table_base: u64,
        /// Requested pirq.
        pirq: Option<u32>,
    },
}

/// One passthrough call to the hypervisor, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtOp {
    /// Map (`add`) or unmap `nr` machine frames at `mfn` into the guest at `gfn`.
    MemoryMapping {
        /// First guest frame.
        gfn: u64,
        /// First machine frame.
        mfn: u64,
        /// Frames.
        nr: u64,
        /// Add or remove.
        add: bool,
    },
    /// Let guest ports `gport..` reach machine ports `mport..` (or stop).
    IoportMapping {
        /// First guest port.
        gport: u32,
        /// First machine port.
        mport: u32,
        /// Ports.
        nr: u32,
        /// Add or remove.
        add: bool,
    },
    /// Map a machine interrupt to a pirq of the guest; the call returns the pirq.
    MapPirq(PirqSource),
    /// Unmap a pirq.
    UnmapPirq(u32),
    /// Bind a pirq to guest INTx or a guest MSI vector (again: update an MSI binding).
    Bind(BindPtIrq),
    /// Unbind it.
    Unbind(BindPtIrq),
}

impl std::fmt::Display for PtOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PtOp::MemoryMapping { gfn, mfn, nr, add } => {
                write!(f, "memory_mapping {} gfn {gfn:#x} <- mfn {mfn:#x} x{nr}", if *add { "add" } else { "remove" })
            }
            PtOp::IoportMapping { gport, mport, nr, add } => {
                write!(f, "ioport_mapping {} ports {gport:#x} <- {mport:#x} x{nr}", if *add { "add" } else { "remove" })
            }
            PtOp::MapPirq(PirqSource::Gsi(g)) => write!(f, "map_pirq GSI {g}"),
            PtOp::MapPirq(PirqSource::Msi { host, entry, table_base, pirq }) => {
                write!(f, "map_pirq MSI {host} entry {entry} table {table_base:#x} pirq {pirq:?}")
            }
            PtOp::UnmapPirq(p) => write!(f, "unmap_pirq {p}"),
            PtOp::Bind(b) => write!(f, "bind_pt_irq pirq {} type {}", b.machine_irq, b.irq_type),
            PtOp::Unbind(b) => write!(f, "unbind_pt_irq pirq {} type {}", b.machine_irq, b.irq_type),
        }
    }
}

/// A failed passthrough call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The hypervisor (or the driver) refused.
    #[error("{op}: {source}")]
    Sys {
        /// The operation.
        op: String,
        /// Cause.
        source: SysError,
    },
    /// No known domctl interface version is accepted.
    #[error("the hypervisor accepts none of the domctl interface versions {tried} (is it a Xen 4.17-4.22?)")]
    NoDomctlVersion {
        /// Versions tried.
        tried: String,
    },
    /// privcmd is restricted to the guest (dm_restrict): no domctl/physdev possible.
    #[error(
        "{op}: privcmd is restricted (dm_restrict): passthrough needs domctl/physdev hypercalls, \
         which Linux refuses on a restricted handle"
    )]
    Restricted {
        /// The operation.
        op: String,
    },
    /// The call made no progress or returned nonsense.
    #[error("{op}: unexpected return value {value}")]
    Unexpected {
        /// The operation.
        op: String,
        /// Returned value.
        value: i64,
    },
    /// An injected failure (tests).
    #[error("{op}: refused ({why})")]
    Refused {
        /// The operation.
        op: String,
        /// Why.
        why: String,
    },
}

/// The seam through which passthrough reaches the hypervisor.
pub trait HostOps: Send + Sync {
    /// Carries out `op`; returns the pirq for [`PtOp::MapPirq`], `None` otherwise.
    fn call(&self, op: &PtOp) -> Result<Option<u32>, OpError>;
    /// Checks that the calls can be made at all (domctl version probe); a description for logs.
    fn probe(&self) -> Result<String, OpError>;
}

/// The real hypercalls, through a [`XenSys`] (privcmd on Xen, the simulator in sim mode).
pub struct XenHostOps {
    sys: Arc<dyn XenSys>,
    domid: u16,
    version: Mutex<Option<DomctlVersion>>,
}

impl std::fmt::Debug for XenHostOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XenHostOps(dom{})", self.domid)
    }
}

impl XenHostOps {
    /// Hypercalls on `domid` through `sys`.
    pub fn new(sys: Arc<dyn XenSys>, domid: u16) -> Self {
        Self { sys, domid, version: Mutex::new(None) }
    }

    fn sys_err(op: &str, e: SysError) -> OpError {
        if e.errno == libc::EPERM {
            OpError::Restricted { op: op.to_string() }
        } else {
            OpError::Sys { op: op.to_string(), source: e }
        }
    }

    /// The domctl interface version of the running hypervisor (probed once).
    pub fn domctl_version(&self) -> Result<DomctlVersion, OpError> {
        let mut g = match self.version.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = *g {
            return Ok(v);
        }
        for v in DomctlVersion::all() {
            let d = domctl::encode(*v, self.domid, DomctlPayload::GetDomainInfo);
            let mut buf = bytemuck::bytes_of(&d).to_vec();
            match self.sys.hypercall(HYPERVISOR_DOMCTL, &[], &mut buf) {
                Err(e) if e.errno == libc::EACCES => continue,
                Err(e) if e.errno == libc::EPERM => {
                    return Err(OpError::Restricted { op: "XEN_DOMCTL_getdomaininfo".into() })
                }
                // Anything else (success, or the domain not existing) means the version passed.
                _ => {
                    log::info!("passthrough: hypervisor speaks domctl interface version {v}");
                    *g = Some(*v);
                    return Ok(*v);
                }
            }
        }
        let tried: Vec<String> = DomctlVersion::all().iter().map(|v| format!("{:#x}", v.raw())).collect();
        Err(OpError::NoDomctlVersion { tried: tried.join(", ") })
    }

    fn domctl(&self, payload: DomctlPayload) -> Result<i64, OpError> {
        let v = self.domctl_version()?;
        let name = domctl::domctl_name(payload.cmd()).unwrap_or("XEN_DOMCTL_?");
        let d = domctl::encode(v, self.domid, payload);
        let mut buf = bytemuck::bytes_of(&d).to_vec();
        self.sys.hypercall(HYPERVISOR_DOMCTL, &[], &mut buf).map_err(|e| Self::sys_err(name, e))
    }

    fn memory_mapping(&self, gfn: u64, mfn: u64, nr: u64, add: bool) -> Result<(), OpError> {
        let op = "XEN_DOMCTL_memory_mapping";
        let mut done = 0u64;
        while done < nr {
            let n = (nr - done).min(MAPPING_BATCH);
            let r = self.domctl(DomctlPayload::MemoryMapping(MemoryMapping::new(
                gfn.wrapping_add(done),
                mfn.wrapping_add(done),
                n,
                add,
            )))?;
            match u64::try_from(r) {
                Ok(0) => done += n,
                Ok(p) if p < n => done += p,
                _ => return Err(OpError::Unexpected { op: op.into(), value: r }),
            }
        }
        Ok(())
    }

    fn physdev(&self, cmd: u32, name: &str, buf: &mut [u8]) -> Result<i64, OpError> {
        self.sys.hypercall(HYPERVISOR_PHYSDEV_OP, &[u64::from(cmd)], buf).map_err(|e| Self::sys_err(name, e))
    }
}

impl HostOps for XenHostOps {
    fn call(&self, op: &PtOp) -> Result<Option<u32>, OpError> {
        match *op {
            PtOp::MemoryMapping { gfn, mfn, nr, add } => self.memory_mapping(gfn, mfn, nr, add).map(|_| None),
            PtOp::IoportMapping { gport, mport, nr, add } => {
                self.domctl(DomctlPayload::IoportMapping(IoportMapping::new(gport, mport, nr, add))).map(|_| None)
            }
            PtOp::MapPirq(src) => {
                let arg = match src {
                    PirqSource::Gsi(gsi) => {
                        let g = i32::try_from(gsi).map_err(|_| OpError::Unexpected {
                            op: "PHYSDEVOP_map_pirq".into(),
                            value: i64::from(gsi),
                        })?;
                        PhysdevMapPirq::new_gsi(self.domid, g, g)
                    }
                    PirqSource::Msi { host, entry, table_base, pirq } => {
                        let mut m = PhysdevMapPirq::new_msi_seg(
                            self.domid,
                            host.seg(),
                            host.bus(),
                            host.devfn(),
                            i32::from(entry),
                            table_base,
                        );
                        if let Some(p) = pirq.and_then(|p| i32::try_from(p).ok()) {
                            m.pirq = p;
                        }
                        m
                    }
                };
                let mut buf = bytemuck::bytes_of(&arg).to_vec();
                self.physdev(PHYSDEVOP_MAP_PIRQ, "PHYSDEVOP_map_pirq", &mut buf)?;
                let out: PhysdevMapPirq =
                    bytemuck::pod_read_unaligned(buf.get(..std::mem::size_of::<PhysdevMapPirq>()).unwrap_or(&[0; 40]));
                u32::try_from(out.pirq)
                    .map(Some)
                    .map_err(|_| OpError::Unexpected { op: "PHYSDEVOP_map_pirq".into(), value: i64::from(out.pirq) })
            }
            PtOp::UnmapPirq(p) => {
                let pirq = i32::try_from(p)
                    .map_err(|_| OpError::Unexpected { op: "PHYSDEVOP_unmap_pirq".into(), value: i64::from(p) })?;
                let arg = PhysdevUnmapPirq::new(self.domid, pirq);
                let mut buf = bytemuck::bytes_of(&arg).to_vec();
                self.physdev(PHYSDEVOP_UNMAP_PIRQ, "PHYSDEVOP_unmap_pirq", &mut buf).map(|_| None)
            }
            PtOp::Bind(b) => self.domctl(DomctlPayload::BindPtIrq(b)).map(|_| None),
            PtOp::Unbind(b) => self.domctl(DomctlPayload::UnbindPtIrq(b)).map(|_| None),
        }
    }

    fn probe(&self) -> Result<String, OpError> {
        self.domctl_version().map(|v| format!("Xen hypercalls on dom{}, domctl interface {v}", self.domid))
    }
}

/// Which operations a [`RecordingOps`] makes fail.
type FailWhen = Box<dyn Fn(&PtOp) -> bool + Send>;

/// Records operations and hands out pirqs, without any hypervisor (unit tests, fuzzing). A
/// failure can be injected for operations matching a predicate.
#[derive(Default)]
pub struct RecordingOps {
    log: Mutex<Vec<PtOp>>,
    next_pirq: Mutex<u32>,
    fail: Mutex<Option<FailWhen>>,
}

impl std::fmt::Debug for RecordingOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordingOps({} ops)", self.ops().len())
    }
}

impl RecordingOps {
    /// An empty recorder.
    pub fn new() -> Self {
        Self { log: Mutex::new(Vec::new()), next_pirq: Mutex::new(0x100), fail: Mutex::new(None) }
    }

    /// The operations so far.
    pub fn ops(&self) -> Vec<PtOp> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Takes (and clears) the operations so far.
    pub fn take(&self) -> Vec<PtOp> {
        self.log.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }

    /// Makes operations matching `pred` fail from now on.
    pub fn fail_when(&self, pred: impl Fn(&PtOp) -> bool + Send + 'static) {
        if let Ok(mut g) = self.fail.lock() {
            *g = Some(Box::new(pred));
        }
    }
}

impl HostOps for RecordingOps {
    fn call(&self, op: &PtOp) -> Result<Option<u32>, OpError> {
        if let Ok(mut l) = self.log.lock() {
            l.push(*op);
        }
        if self.fail.lock().ok().and_then(|g| g.as_ref().map(|f| f(op))).unwrap_or(false) {
            return Err(OpError::Refused { op: op.to_string(), why: "injected failure".into() });
        }
        match op {
            PtOp::MapPirq(PirqSource::Gsi(g)) => Ok(Some(*g)),
            PtOp::MapPirq(PirqSource::Msi { pirq: Some(p), .. }) => Ok(Some(*p)),
            PtOp::MapPirq(_) => {
                let mut n = self
                    .next_pirq
                    .lock()
                    .map_err(|_| OpError::Refused { op: op.to_string(), why: "poisoned".into() })?;
                let p = *n;
                *n = n.wrapping_add(1);
                Ok(Some(p))
            }
            _ => Ok(None),
        }
    }

    fn probe(&self) -> Result<String, OpError> {
        Ok("recording operations (no hypervisor)".into())
    }
}
