//! Xen's side of the passthrough hypercalls a device model issues through
//! `IOCTL_PRIVCMD_HYPERCALL`: `XEN_DOMCTL_*` (getdomaininfo, memory/ioport mapping, bind and
//! unbind of pass-through IRQs, permissions) and `PHYSDEVOP_map_pirq` / `PHYSDEVOP_unmap_pirq`.
//!
//! The argument bytes are decoded the way Xen reads them (`xen_bindings::domctl::decode`, the
//! `physdev_map_pirq` layout) and checked like `xen/common/domctl.c`, `xen/arch/x86/domctl.c`,
//! `xen/arch/x86/physdev.c` and `xen/drivers/passthrough/x86/hvm.c` do, on the points that matter
//! to a device model:
//! - `interface_version` must equal the simulated hypervisor's ([`super::SimConfig::domctl_version`])
//!   or the call fails with EACCES before anything else is looked at (the probe relies on this);
//! - the target domain must be the simulated one (ESRCH);
//! - `memory_mapping` takes at most 64 frames per call (E2BIG, as libxenctrl batches them), and a
//!   removal must name frames that are mapped to exactly those machine frames;
//! - a pirq must be mapped before it is bound, and unbound before it is unmapped (EBUSY).
//!
//! Stricter than Xen on purpose (to catch device-model bugs in tests): adding a mapping over
//! guest RAM or over frames/ports already mapped fails with EBUSY.

use std::collections::BTreeMap;

use xen_bindings::domctl::{
    self, BindPtIrq, DecodedDomctl, DomctlPayload, GetDomainInfoHead, XenDomctl, PT_IRQ_TYPE_MSI,
    PT_IRQ_TYPE_MSI_TRANSLATE, XEN_DOMINF_HVM_GUEST, XEN_DOMINF_RUNNING,
};
use xen_bindings::hypercall::{HYPERVISOR_DOMCTL, HYPERVISOR_PHYSDEV_OP};
use xen_bindings::physdev::{
    PhysdevMapPirq, PhysdevUnmapPirq, MAP_PIRQ_TYPE_GSI, MAP_PIRQ_TYPE_MSI, MAP_PIRQ_TYPE_MSI_SEG, PHYSDEVOP_MAP_PIRQ,
    PHYSDEVOP_UNMAP_PIRQ,
};

use super::SimXen;

/// Largest `nr_mfns` Xen accepts in one `XEN_DOMCTL_memory_mapping`.
pub const MAX_MAPPING_BATCH: u64 = 64;
/// First pirq the simulated hypervisor hands out for MSI/MSI-X.
pub const FIRST_MSI_PIRQ: u32 = 0x100;

/// A guest range of frames mapped onto machine frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioMapping {
    /// First guest frame.
    pub gfn: u64,
    /// First machine frame.
    pub mfn: u64,
    /// Frames.
    pub nr: u64,
}

/// Guest ports mapped onto machine ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoportMap {
    /// First guest port.
    pub gport: u32,
    /// First machine port.
    pub mport: u32,
    /// Ports.
    pub nr: u32,
}

/// What a pirq of the guest stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PirqSource {
    /// A machine GSI (INTx).
    Gsi(u32),
    /// MSI (`table_base` 0) or MSI-X entry `entry` of the machine function.
    Msi {
        /// `seg << 16 | bus`.
        bus: u32,
        /// devfn.
        devfn: u32,
        /// MSI-X entry number.
        entry: i32,
        /// Machine address of the MSI-X table BAR (0 for MSI).
        table_base: u64,
    },
}

/// One passthrough hypercall as the simulated hypervisor decoded it, with its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtCall {
    /// A domctl (`payload` is `None` when the bytes could not be decoded).
    Domctl {
        /// `interface_version` spoken.
        version: u32,
        /// Command.
        cmd: u32,
        /// The decoded operation.
        payload: Option<DomctlPayload>,
        /// Return value, or negative errno.
        result: i64,
    },
    /// `PHYSDEVOP_map_pirq` (as received) and the pirq handed out.
    MapPirq {
        /// The argument as received.
        arg: PhysdevMapPirq,
        /// Return value, or negative errno.
        result: i64,
    },
    /// `PHYSDEVOP_unmap_pirq`.
    UnmapPirq {
        /// The argument as received.
        arg: PhysdevUnmapPirq,
        /// Return value, or negative errno.
        result: i64,
    },
    /// Any other physdev op or hypercall (refused with ENOSYS).
    Other {
        /// Hypercall number.
        op: u64,
        /// First argument.
        arg0: u64,
    },
}

/// The simulated hypervisor's passthrough state for the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PtSimState {
    /// Direct MMIO mappings, in the order they were made.
    pub mmio: Vec<MmioMapping>,
    /// Direct port mappings.
    pub ioports: Vec<IoportMap>,
    /// Mapped pirqs.
    pub pirqs: BTreeMap<u32, PirqSource>,
    /// Bound pirqs and their binding.
    pub bindings: BTreeMap<u32, BindPtIrq>,
    /// `iomem`/`ioport`/`irq` permission calls seen (`cmd`, first, count, allow).
    pub permissions: Vec<(u32, u64, u64, bool)>,
    /// Every call, in order.
    pub calls: Vec<PtCall>,
}

impl PtSimState {
    /// Frames of guest memory currently mapped to machine frames, as `(gfn, mfn)` pairs.
    pub fn mapped_frames(&self) -> Vec<(u64, u64)> {
        self.mmio.iter().flat_map(|m| (0..m.nr).map(move |i| (m.gfn + i, m.mfn + i))).collect()
    }
}

fn overlaps(a: u64, an: u64, b: u64, bn: u64) -> bool {
    an > 0 && bn > 0 && a < b.saturating_add(bn) && b < a.saturating_add(an)
}

impl SimXen {
    /// A snapshot of the passthrough state (mappings, pirqs, bindings, calls).
    pub fn passthrough(&self) -> PtSimState {
        self.lock().pt.clone()
    }

    /// Takes (and clears) the recorded passthrough calls.
    pub fn take_pt_calls(&self) -> Vec<PtCall> {
        std::mem::take(&mut self.lock().pt.calls)
    }

    fn overlaps_ram(&self, gfn: u64, nr: u64) -> bool {
        let c = &self.inner.cfg;
        let page = xen_bindings::ioreq::PAGE_SIZE as u64;
        let low = c.ram_below_4g / page;
        let high = (super::HIGH_RAM_START / page, c.ram_above_4g / page);
        overlaps(gfn, nr, 0, low) || overlaps(gfn, nr, high.0, high.1)
    }

    /// `IOCTL_PRIVCMD_HYPERCALL(op, leading..., &buf)` on the simulated hypervisor: domctl and
    /// physdev_op are served, anything else is ENOSYS. Returns Xen's return value or an errno.
    pub(super) fn hypercall(&self, op: u64, leading: &[u64], buf: &mut [u8]) -> Result<i64, i32> {
        match op {
            HYPERVISOR_DOMCTL => self.domctl(buf),
            HYPERVISOR_PHYSDEV_OP => self.physdev(leading.first().copied().unwrap_or(u64::MAX), buf),
            _ => {
                self.lock().pt.calls.push(PtCall::Other { op, arg0: leading.first().copied().unwrap_or(0) });
                Err(libc::ENOSYS)
            }
        }
    }

    fn domctl(&self, buf: &mut [u8]) -> Result<i64, i32> {
        let raw_version = buf.get(4..8).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let raw_cmd = buf.get(0..4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let decoded = domctl::decode(buf);
        let r = match &decoded {
            Err(e @ domctl::DomctlDecodeError::Short { .. }) => Err(e.errno()),
            // Xen compares the version right after copying the struct in, so an unknown (or
            // foreign) version is EACCES even for commands it does not know.
            _ if raw_version != self.inner.cfg.domctl_version => Err(libc::EACCES),
            Err(e) => Err(e.errno()),
            Ok(d) => self.domctl_op(d, buf),
        };
        let payload = decoded.ok().map(|d| d.payload);
        let result = r.unwrap_or_else(|e| -i64::from(e));
        self.lock().pt.calls.push(PtCall::Domctl { version: raw_version, cmd: raw_cmd, payload, result });
        r
    }

    fn domctl_op(&self, d: &DecodedDomctl, buf: &mut [u8]) -> Result<i64, i32> {
        let domid = self.inner.cfg.domid;
        if d.domain != domid {
            return Err(libc::ESRCH);
        }
        let mut st = self.lock();
        match d.payload {
            DomctlPayload::GetDomainInfo => {
                let mut out: XenDomctl =
                    bytemuck::pod_read_unaligned(buf.get(..std::mem::size_of::<XenDomctl>()).ok_or(libc::EFAULT)?);
                let head =
                    GetDomainInfoHead { domain: domid, pad1: 0, flags: XEN_DOMINF_HVM_GUEST | XEN_DOMINF_RUNNING };
                out.set_payload(&head);
                if let Some(dst) = buf.get_mut(..std::mem::size_of::<XenDomctl>()) {
                    dst.copy_from_slice(bytemuck::bytes_of(&out));
                }
                Ok(0)
            }
            DomctlPayload::MemoryMapping(m) => {
                if m.nr_mfns == 0 || m.padding != 0 {
                    return Err(libc::EINVAL);
                }
                if m.nr_mfns > MAX_MAPPING_BATCH {
                    return Err(libc::E2BIG);
                }
                if m.first_gfn.checked_add(m.nr_mfns).is_none() || m.first_mfn.checked_add(m.nr_mfns).is_none() {
                    return Err(libc::EINVAL);
                }
                let (gfn, mfn, nr) = (m.first_gfn, m.first_mfn, m.nr_mfns);
                if m.add_mapping == domctl::DPCI_ADD_MAPPING {
                    if self.overlaps_ram(gfn, nr) || st.pt.mmio.iter().any(|x| overlaps(gfn, nr, x.gfn, x.nr)) {
                        return Err(libc::EBUSY);
                    }
                    st.pt.mmio.push(MmioMapping { gfn, mfn, nr });
                } else {
                    let exact = st.pt.mmio.iter().position(|x| x.gfn == gfn && x.mfn == mfn && x.nr == nr);
                    match exact {
                        Some(i) => {
                            st.pt.mmio.remove(i);
                        }
                        None => {
                            // A removal may also cover part of a larger mapping made earlier.
                            let Some(i) = st.pt.mmio.iter().position(|x| {
                                gfn >= x.gfn && gfn + nr <= x.gfn + x.nr && mfn.wrapping_sub(x.mfn) == gfn - x.gfn
                            }) else {
                                return Err(libc::EINVAL);
                            };
                            let x = st.pt.mmio.remove(i);
                            let head = gfn - x.gfn;
                            if head > 0 {
                                st.pt.mmio.push(MmioMapping { gfn: x.gfn, mfn: x.mfn, nr: head });
                            }
                            let tail = x.nr - head - nr;
                            if tail > 0 {
                                st.pt.mmio.push(MmioMapping { gfn: gfn + nr, mfn: mfn + nr, nr: tail });
                            }
                        }
                    }
                }
                Ok(0)
            }
            DomctlPayload::IoportMapping(m) => {
                if m.nr_ports == 0
                    || u64::from(m.first_gport) + u64::from(m.nr_ports) > 0x1_0000
                    || u64::from(m.first_mport) + u64::from(m.nr_ports) > 0x1_0000
                {
                    return Err(libc::EINVAL);
                }
                let (g, mp, n) = (m.first_gport, m.first_mport, m.nr_ports);
                if m.add_mapping == domctl::DPCI_ADD_MAPPING {
                    let clash = st
                        .pt
                        .ioports
                        .iter()
                        .any(|x| overlaps(u64::from(g), u64::from(n), u64::from(x.gport), u64::from(x.nr)));
                    if clash {
                        return Err(libc::EBUSY);
                    }
                    st.pt.ioports.push(IoportMap { gport: g, mport: mp, nr: n });
                } else {
                    let i = st
                        .pt
                        .ioports
                        .iter()
                        .position(|x| x.gport == g && x.mport == mp && x.nr == n)
                        .ok_or(libc::EINVAL)?;
                    st.pt.ioports.remove(i);
                }
                Ok(0)
            }
            DomctlPayload::BindPtIrq(b) => {
                if !st.pt.pirqs.contains_key(&b.machine_irq) {
                    return Err(libc::EINVAL);
                }
                let is_msi = matches!(b.irq_type, PT_IRQ_TYPE_MSI | PT_IRQ_TYPE_MSI_TRANSLATE);
                if let Some(old) = st.pt.bindings.get(&b.machine_irq) {
                    // Re-binding an MSI pirq updates it (xc_domain_update_msi_irq); INTx twice is
                    // refused.
                    if !is_msi || old.irq_type != b.irq_type {
                        return Err(libc::EBUSY);
                    }
                }
                st.pt.bindings.insert(b.machine_irq, b);
                Ok(0)
            }
            DomctlPayload::UnbindPtIrq(b) => match st.pt.bindings.get(&b.machine_irq) {
                Some(old) if old.irq_type == b.irq_type => {
                    st.pt.bindings.remove(&b.machine_irq);
                    Ok(0)
                }
                _ => Err(libc::EINVAL),
            },
            DomctlPayload::IrqPermission(p) => {
                st.pt.permissions.push((d.payload.cmd(), u64::from(p.pirq), 1, p.allow_access != 0));
                Ok(0)
            }
            DomctlPayload::IomemPermission(p) => {
                st.pt.permissions.push((d.payload.cmd(), p.first_mfn, p.nr_mfns, p.allow_access != 0));
                Ok(0)
            }
            DomctlPayload::IoportPermission(p) => {
                st.pt.permissions.push((
                    d.payload.cmd(),
                    u64::from(p.first_port),
                    u64::from(p.nr_ports),
                    p.allow_access != 0,
                ));
                Ok(0)
            }
        }
    }

    fn physdev(&self, cmd: u64, buf: &mut [u8]) -> Result<i64, i32> {
        let domid = self.inner.cfg.domid;
        match u32::try_from(cmd).unwrap_or(u32::MAX) {
            PHYSDEVOP_MAP_PIRQ => {
                let n = std::mem::size_of::<PhysdevMapPirq>();
                let mut arg: PhysdevMapPirq = bytemuck::pod_read_unaligned(buf.get(..n).ok_or(libc::EFAULT)?);
                let r = self.map_pirq(domid, &mut arg);
                if r.is_ok() {
                    if let Some(dst) = buf.get_mut(..n) {
                        dst.copy_from_slice(bytemuck::bytes_of(&arg));
                    }
                }
                let result = r.map_or_else(|e| -i64::from(e), |_| 0);
                self.lock().pt.calls.push(PtCall::MapPirq { arg, result });
                r.map(|_| 0)
            }
            PHYSDEVOP_UNMAP_PIRQ => {
                let n = std::mem::size_of::<PhysdevUnmapPirq>();
                let arg: PhysdevUnmapPirq = bytemuck::pod_read_unaligned(buf.get(..n).ok_or(libc::EFAULT)?);
                let mut st = self.lock();
                let r = if arg.domid != domid {
                    Err(libc::ESRCH)
                } else {
                    match u32::try_from(arg.pirq) {
                        Ok(p) if st.pt.bindings.contains_key(&p) => Err(libc::EBUSY),
                        Ok(p) if st.pt.pirqs.remove(&p).is_some() => Ok(0),
                        _ => Err(libc::EINVAL),
                    }
                };
                st.pt.calls.push(PtCall::UnmapPirq { arg, result: r.unwrap_or_else(|e| -i64::from(e)) });
                r
            }
            other => {
                self.lock().pt.calls.push(PtCall::Other { op: HYPERVISOR_PHYSDEV_OP, arg0: u64::from(other) });
                Err(libc::ENOSYS)
            }
        }
    }

    fn map_pirq(&self, domid: u16, arg: &mut PhysdevMapPirq) -> Result<(), i32> {
        if arg.domid != domid {
            return Err(libc::ESRCH);
        }
        let mut st = self.lock();
        let (source, wanted) = match arg.type_ {
            MAP_PIRQ_TYPE_GSI => {
                let gsi = u32::try_from(arg.index).map_err(|_| libc::EINVAL)?;
                (PirqSource::Gsi(gsi), u32::try_from(arg.pirq).ok())
            }
            MAP_PIRQ_TYPE_MSI | MAP_PIRQ_TYPE_MSI_SEG => (
                PirqSource::Msi {
                    bus: u32::try_from(arg.bus).map_err(|_| libc::EINVAL)?,
                    devfn: u32::try_from(arg.devfn).map_err(|_| libc::EINVAL)?,
                    entry: arg.entry_nr,
                    table_base: arg.table_base,
                },
                u32::try_from(arg.pirq).ok(),
            ),
            _ => return Err(libc::EINVAL),
        };
        // The same source mapped again returns its pirq (map_domain_pirq does the same).
        if let Some((p, _)) = st.pt.pirqs.iter().find(|(_, s)| **s == source) {
            arg.pirq = i32::try_from(*p).map_err(|_| libc::EINVAL)?;
            return Ok(());
        }
        let pirq = match wanted {
            Some(p) if st.pt.pirqs.contains_key(&p) => return Err(libc::EEXIST),
            Some(p) => p,
            None => (FIRST_MSI_PIRQ..).find(|p| !st.pt.pirqs.contains_key(p)).ok_or(libc::ENOSPC)?,
        };
        st.pt.pirqs.insert(pirq, source);
        arg.pirq = i32::try_from(pirq).map_err(|_| libc::EINVAL)?;
        Ok(())
    }
}
