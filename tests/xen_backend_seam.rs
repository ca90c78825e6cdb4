//! The Xen backend through the ioctl seam: every call the ioreq server makes, in order, with its
//! ioctl number and the argument bytes read at the offsets the C headers give (the same table
//! `xen-bindings/tests/c_layout.rs` checks against gcc).

use std::collections::HashMap;
use std::sync::Arc;

use q35dm::device::IoRange;
use q35dm::pci::Sbdf;
use q35dm::sim::{SimConfig, SimSys, SimXen};
use q35dm::xen::{IoreqServer, ServerOptions};
use xen_bindings::evtchn::*;
use xen_bindings::privcmd::*;
use xen_bindings::record::{Dev, Record, RecordingSys};
use xen_bindings::sys::XenSys;

struct C(HashMap<&'static str, u64>);

impl C {
    fn new() -> Self {
        Self(xen_bindings::layout::layout_table().into_iter().collect())
    }
    fn off(&self, k: &str) -> usize {
        *self.0.get(format!("offsetof:{k}").as_str()).unwrap_or_else(|| panic!("no offsetof:{k}")) as usize
    }
    fn size(&self, k: &str) -> usize {
        *self.0.get(format!("sizeof:{k}").as_str()).unwrap_or_else(|| panic!("no sizeof:{k}")) as usize
    }
    /// Field `f` of dm_op payload struct `s`, read from a `struct xen_dm_op` buffer.
    fn dm(&self, buf: &[u8], s: &str, f: &str, width: usize) -> u64 {
        let at = self.off("xen_dm_op.u") + self.off(&format!("{s}.{f}"));
        le(&buf[at..at + width])
    }
}

fn le(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(x)
}

fn op_of(r: &Record) -> u32 {
    le(&r.payload_in[0][0..4]) as u32
}

fn setup(vcpus: u32) -> (SimXen, Arc<RecordingSys<SimSys>>) {
    let sim =
        SimXen::new(SimConfig { domid: 7, nr_vcpus: vcpus, ram_below_4g: 1 << 20, ..Default::default() }).unwrap();
    let rec = Arc::new(RecordingSys::new(sim.open().unwrap(), true));
    (sim, rec)
}

#[test]
fn create_map_enable_bind_then_teardown_in_order() {
    let c = C::new();
    let (sim, rec) = setup(3);
    let sys: Arc<dyn XenSys> = rec.clone();
    let mut srv = IoreqServer::create(sys, 7, ServerOptions::default()).unwrap();
    srv.map_range(IoRange::ports(0xcf8, 8)).unwrap();
    srv.map_range(IoRange::memory(0xb000_0000, 0x1000_0000)).unwrap();
    srv.map_range(IoRange::pci(Sbdf::new(0, 0, 0x1f, 0))).unwrap();
    let setup_records = rec.records();
    srv.teardown().unwrap();
    let all = rec.records();
    let down = &all[setup_records.len()..];

    // --- creation: DM_OP create_ioreq_server with bufioreq ATOMIC.
    let r = &setup_records[0];
    assert_eq!((r.dev, r.request), (Dev::Privcmd, IOCTL_PRIVCMD_DM_OP));
    assert_eq!(r.request, 0x0010_5005);
    assert_eq!(le(&r.arg[c.off("privcmd_dm_op.dom")..][..2]), 7);
    assert_eq!(le(&r.arg[c.off("privcmd_dm_op.num")..][..2]), 1);
    let desc = c.size("privcmd_dm_op");
    assert_eq!(le(&r.arg[desc + c.off("privcmd_dm_op_buf.size")..][..8]) as usize, c.size("xen_dm_op"));
    assert_eq!(op_of(r), 1);
    assert_eq!(c.dm(&r.payload_in[0], "xen_dm_op_create_ioreq_server", "handle_bufioreq", 1), 2);
    let id = c.dm(&r.payload_out[0], "xen_dm_op_create_ioreq_server", "id", 2);
    assert_eq!(id, u64::from(srv.id()));

    // --- both frames through XENMEM_acquire_resource: buffered page (idx 0) + ioreq page.
    let r = &setup_records[1];
    assert_eq!(r.request, IOCTL_PRIVCMD_MMAP_RESOURCE);
    assert_eq!(r.arg.len(), c.size("privcmd_mmap_resource"));
    assert_eq!(le(&r.arg[c.off("privcmd_mmap_resource.dom")..][..2]), 7);
    assert_eq!(le(&r.arg[c.off("privcmd_mmap_resource.type")..][..4]), 0);
    assert_eq!(le(&r.arg[c.off("privcmd_mmap_resource.id")..][..4]), id);
    assert_eq!(le(&r.arg[c.off("privcmd_mmap_resource.idx")..][..4]), 0);
    assert_eq!(le(&r.arg[c.off("privcmd_mmap_resource.num")..][..8]), 2);
    assert_ne!(le(&r.arg[c.off("privcmd_mmap_resource.addr")..][..8]), 0);

    // --- get_ioreq_server_info with XEN_DMOP_no_gfns (the pages never enter the guest p2m).
    let r = &setup_records[2];
    assert_eq!(op_of(r), 2);
    assert_eq!(c.dm(&r.payload_in[0], "xen_dm_op_get_ioreq_server_info", "flags", 2), 1);
    let bufport = c.dm(&r.payload_out[0], "xen_dm_op_get_ioreq_server_info", "bufioreq_port", 4);
    assert_ne!(bufport, 0);

    // --- nr_vcpus, then enable (vp_eport is published only now), then bind each vCPU's port.
    assert_eq!(op_of(&setup_records[3]), 20);
    assert_eq!(c.dm(&setup_records[3].payload_out[0], "xen_dm_op_nr_vcpus", "vcpus", 4), 3);
    let r = &setup_records[4];
    assert_eq!(op_of(r), 5);
    assert_eq!(c.dm(&r.payload_in[0], "xen_dm_op_set_ioreq_server_state", "enabled", 1), 1);
    let binds: Vec<&Record> = setup_records[5..9].iter().collect();
    for (i, b) in binds.iter().enumerate() {
        assert_eq!((b.dev, b.request), (Dev::Evtchn, IOCTL_EVTCHN_BIND_INTERDOMAIN), "record {}", 5 + i);
        assert_eq!(b.request, 0x0008_4501);
        assert_eq!(le(&b.arg[c.off("ioctl_evtchn_bind_interdomain.remote_domain")..][..4]), 7);
    }
    let remote: Vec<u64> =
        binds.iter().map(|b| le(&b.arg[c.off("ioctl_evtchn_bind_interdomain.remote_port")..][..4])).collect();
    assert_eq!(remote[3], bufport, "the last bind is the buffered port");
    let mut uniq = remote.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 4);
    let locals: Vec<u32> = binds.iter().map(|b| b.result.unwrap() as u32).collect();
    assert_eq!(srv.vcpu_ports().len(), 0, "torn down");

    // --- ranges: PORT, MEMORY, PCI SBDF, inclusive bounds.
    let ranges: Vec<(u64, u64, u64)> = setup_records[9..12]
        .iter()
        .map(|r| {
            assert_eq!(op_of(r), 3);
            let s = "xen_dm_op_ioreq_server_range";
            (
                c.dm(&r.payload_in[0], s, "type", 4),
                c.dm(&r.payload_in[0], s, "start", 8),
                c.dm(&r.payload_in[0], s, "end", 8),
            )
        })
        .collect();
    assert_eq!(ranges, vec![(0, 0xcf8, 0xcff), (1, 0xb000_0000, 0xbfff_ffff), (2, 0xf8, 0xf8)]);
    assert_eq!(setup_records.len(), 12);

    // --- teardown: disable, destroy, then unbind every port.
    assert_eq!(op_of(&down[0]), 5);
    assert_eq!(c.dm(&down[0].payload_in[0], "xen_dm_op_set_ioreq_server_state", "enabled", 1), 0);
    assert_eq!(op_of(&down[1]), 6);
    let unbound: Vec<u32> = down[2..]
        .iter()
        .map(|r| {
            assert_eq!(r.request, IOCTL_EVTCHN_UNBIND);
            le(&r.arg[c.off("ioctl_evtchn_unbind.port")..][..4]) as u32
        })
        .collect();
    assert_eq!(unbound, locals);
    assert!(sim.servers().is_empty());
}

#[test]
fn without_buffered_ring_only_the_ioreq_frame_is_mapped() {
    let c = C::new();
    let (_sim, rec) = setup(1);
    let sys: Arc<dyn XenSys> = rec.clone();
    let srv = IoreqServer::create(sys, 7, ServerOptions { bufioreq: false, nr_vcpus: Some(1) }).unwrap();
    let r = rec.records();
    assert_eq!(c.dm(&r[0].payload_in[0], "xen_dm_op_create_ioreq_server", "handle_bufioreq", 1), 0);
    assert_eq!(le(&r[1].arg[c.off("privcmd_mmap_resource.idx")..][..4]), 1);
    assert_eq!(le(&r[1].arg[c.off("privcmd_mmap_resource.num")..][..8]), 1);
    assert!(srv.buf_port().is_none());
    assert!(srv.buffered().is_none());
    assert!(srv.page().is_some());
}

#[test]
fn failures_name_the_step_and_leave_nothing_behind() {
    let (sim, rec) = setup(1);
    let sys: Arc<dyn XenSys> = rec.clone();
    // Wrong domain: Xen answers ESRCH on the very first call.
    let e = IoreqServer::create(sys.clone(), 9, ServerOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("creating an ioreq server for domain 9") && msg.contains("create_ioreq_server"), "{msg}");
    // Restricted to another domain: EPERM.
    rec.privcmd_restrict(3).unwrap();
    let e = IoreqServer::create(sys, 7, ServerOptions::default()).unwrap_err();
    assert!(e.to_string().contains("Operation not permitted"), "{e}");
    assert!(sim.servers().is_empty());
}

#[test]
fn range_errors_are_reported_with_the_range() {
    let (_sim, rec) = setup(1);
    let sys: Arc<dyn XenSys> = rec;
    let mut srv = IoreqServer::create(sys.clone(), 7, ServerOptions::default()).unwrap();
    srv.map_range(IoRange::ports(0x60, 1)).unwrap();
    srv.map_range(IoRange::ports(0x60, 1)).unwrap(); // idempotent
                                                     // An overlapping claim is refused by Xen with EEXIST.
    let e = srv.map_range(IoRange::ports(0x5f, 4)).unwrap_err();
    assert!(e.to_string().contains("ports 0x005f-0x0062") && e.to_string().contains("File exists"), "{e}");
}

#[test]
fn real_devices_are_absent_here_and_the_error_says_so() {
    match xen_bindings::sys::LinuxSys::open() {
        Ok(_) => eprintln!("note: /dev/xen exists on this machine; skipping the absence check"),
        Err(e) => assert!(e.to_string().contains("/dev/xen/privcmd"), "{e}"),
    }
}
