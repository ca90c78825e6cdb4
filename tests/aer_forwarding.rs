//! Host AER forwarding without Xen: `q35dm-aerd` reads a fake tracefs (format files of Linux
//! 5.10, 6.1, 6.12 and a patched layout; `trace_pipe` is a FIFO) or fake sysfs counters, finds
//! owners in the test xenstored, queues records in the guest's AER inbox and notifies through the
//! simulated hypervisor's event channels; q35dm's inbox injects them into a q35dm-test-endpoint
//! behind a root port of the real board, served by the real engine. The test plays the guest
//! (Linux's AER setup) and reads the AER registers through ECAM.

#[path = "support/board.rs"]
mod board;
#[path = "support/xenstored.rs"]
mod xenstored;

#[path = "../toolstack-hooks/aerd/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod aerd;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use board::Board;
use q35dm::aer_inbox::record::{self, HostSeverity};
use q35dm::aer_inbox::{self, BarWindow, GuestTarget, HostFunctionMap, InboxConfig, StormConfig, TranslateError};
use q35dm::devices::DeviceRequest;
use q35dm::machine::Machine;
use q35dm::pci::topology::NodeId;
use q35dm::pci::Sbdf;
use q35dm::sim::IrqEvent;
use q35dm::xenstore::{Options, Xenstore};
use xen_bindings::sys::XenSys;
use xenstored::FakeXenstored;

use aerd::daemon::{Config, DaemonHandle, Source};
use aerd::format::{AerLayout, AerPrintFormat, EventFormat};
use aerd::trace::{render, TraceLine};

const DOMID: u16 = 1;
// Guest config addresses (bus << 8 | dev << 3 | fn): rp1 00:1c.0 -> bus 1, rp2 00:1d.0 -> bus 2.
const RP1: u32 = 0xe0;
const EP1: u32 = 0x100;
const RP2: u32 = 0xe8;
const EP2: u32 = 0x200;
const ECAM: u64 = 0xb000_0000;
const RP1_MSI: u32 = 0x4050;
// Host functions.
const H1: &str = "0000:03:00.0"; // -> ep1, domain 1
const H2: &str = "0000:03:00.1"; // -> ep2 in the map, but libxl says domain 7
const H_NOT_MAPPED: &str = "0000:04:00.0"; // domain 1 per libxl, unknown to the map
const H_NO_GUEST: &str = "0000:05:00.0"; // no libxl entry
const HOST_BAR: u64 = 0x38_0000_0000;
const GUEST_BAR: u32 = 0xfe00_0000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aer").join(name))
        .expect("fixture")
}

fn sbdf(s: &str) -> Sbdf {
    s.parse().expect("sbdf")
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

fn tmpdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("q35dm-aer-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// The map the passthrough code will provide, for test endpoints.
struct TestMap {
    entries: Vec<(Sbdf, NodeId)>,
    resets: Arc<Mutex<Vec<Sbdf>>>,
    delay: Duration,
}

impl HostFunctionMap for TestMap {
    fn guest_target(&self, _m: &Machine, host: Sbdf) -> Option<GuestTarget> {
        std::thread::sleep(self.delay);
        let (_, node) = self.entries.iter().find(|(h, _)| *h == host)?;
        Some(GuestTarget {
            node: *node,
            bars: vec![BarWindow { index: 0, host_base: HOST_BAR, len: 0x4000, guest_base: None }],
        })
    }
    fn host_functions(&self, _m: &Machine) -> Vec<Sbdf> {
        self.entries.iter().map(|(h, _)| *h).collect()
    }
    fn host_function_of(&self, _m: &Machine, guest: NodeId) -> Option<Sbdf> {
        self.entries.iter().find(|(_, n)| *n == guest).map(|(h, _)| *h)
    }
    fn reset_host_function(&mut self, _m: &mut Machine, host: Sbdf) -> Result<(), TranslateError> {
        self.resets.lock().unwrap().push(host);
        Ok(())
    }
}

struct Env {
    xsd: FakeXenstored,
    board: Board,
    tracefs: PathBuf,
    sysfs: PathBuf,
    pipe: Option<File>,
    decoder: Option<AerPrintFormat>,
    resets: Arc<Mutex<Vec<Sbdf>>>,
    ts: f64,
}

fn cap(b: &Board, bdf: u32, id: u32) -> u32 {
    let mut p = b.cfg_read(bdf, 0x34, 1);
    for _ in 0..48 {
        if p == 0 {
            break;
        }
        if b.cfg_read(bdf, p, 1) == id {
            return p;
        }
        p = b.cfg_read(bdf, p + 1, 1);
    }
    panic!("{bdf:#x}: no capability {id:#x}");
}

fn ecam(b: &Board, bdf: u32, reg: u32) -> u32 {
    b.vcpu().mmio_read(ECAM | u64::from(bdf) << 12 | u64::from(reg), 4).unwrap() as u32
}

fn ecam_write(b: &Board, bdf: u32, reg: u32, v: u32) {
    b.vcpu().mmio_write(ECAM | u64::from(bdf) << 12 | u64::from(reg), 4, u64::from(v)).unwrap();
}

fn msis(b: &Board, data: u32) -> usize {
    b.sim.irq_events().iter().filter(|e| matches!(e, IrqEvent::Msi { data: d, .. } if *d == data)).count()
}

/// The guest: firmware bus numbers and windows, then Linux's AER setup (DevCtl enables, SERR,
/// Bridge Control SERR, Root Error Command, the root port's MSI).
fn board() -> Board {
    let reqs = [
        "q35dm-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0",
        "q35dm-test-endpoint,id=ep1,bus=rp1",
        "q35dm-root-port,id=rp2,chassis=1,slot=2,bus=pcie.0,addr=1d.0",
        "q35dm-test-endpoint,id=ep2,bus=rp2",
    ];
    let b = Board::with(256, move |m| {
        for r in reqs {
            let mut fx = Vec::new();
            m.add_request(&DeviceRequest::parse(r).unwrap(), false, &mut fx).unwrap();
        }
    });
    b.cfg_write(RP1, 0x18, 4, 0x00_01_01_00);
    b.cfg_write(RP2, 0x18, 4, 0x00_02_02_00);
    for (rp, ep, base) in [(RP1, EP1, 0xfe00u32), (RP2, EP2, 0xfd00)] {
        b.cfg_write(rp, 0x20, 2, base);
        b.cfg_write(rp, 0x22, 2, base + 0x10);
        b.cfg_write(rp, 0x04, 2, 0x106);
        b.cfg_write(rp, 0x3e, 2, 0x2);
        b.cfg_write(ep, 0x10, 4, base << 16);
        b.cfg_write(ep, 0x14, 4, 0);
        b.cfg_write(ep, 0x04, 2, 0x106);
        for f in [rp, ep] {
            let exp = cap(&b, f, 0x10);
            let ctl = b.cfg_read(f, exp + 8, 2);
            b.cfg_write(f, exp + 8, 2, ctl | 0xf);
        }
    }
    let msi = cap(&b, RP1, 0x05);
    b.cfg_write(RP1, msi + 4, 4, 0xfee0_0000);
    b.cfg_write(RP1, msi + 8, 4, 0);
    b.cfg_write(RP1, msi + 12, 2, RP1_MSI);
    b.cfg_write(RP1, msi + 2, 2, 1);
    b.cfg_write(0, 0x60, 4, 0xb000_0001);
    for rp in [RP1, RP2] {
        ecam_write(&b, rp, 0x12c, 7);
    }
    b
}

impl Env {
    /// `format`: the fixture for the fake tracefs, or `None` for a kernel without the event.
    fn new(format: Option<&str>) -> Env {
        let xsd = FakeXenstored::start_new();
        xsd.write(&format!("/local/domain/{DOMID}/name"), b"guest");
        for (h, d) in [(H1, 1u16), (H2, 7), (H_NOT_MAPPED, 1)] {
            xsd.write(&record::libxl_owner_path(sbdf(h)), d.to_string().as_bytes());
        }
        let tracefs = tmpdir("tracefs");
        let sysfs = tmpdir("sysfs");
        let mut pipe = None;
        let mut decoder = None;
        std::fs::create_dir_all(tracefs.join("instances")).unwrap();
        if let Some(f) = format {
            let text = fixture(f);
            std::fs::create_dir_all(tracefs.join("events/ras/aer_event")).unwrap();
            std::fs::write(tracefs.join("events/ras/aer_event/format"), &text).unwrap();
            let inst = tracefs.join("instances/q35dm-aerd");
            std::fs::create_dir_all(inst.join("events/ras/aer_event")).unwrap();
            std::fs::write(inst.join("events/ras/aer_event/enable"), "0").unwrap();
            std::fs::write(inst.join("tracing_on"), "0").unwrap();
            nix::unistd::mkfifo(&inst.join("trace_pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
            // Read-write: the FIFO keeps what is written while no aerd reads (like the kernel's
            // buffer of the instance) and never reports EOF.
            pipe = Some(OpenOptions::new().read(true).write(true).open(inst.join("trace_pipe")).unwrap());
            decoder = Some(AerPrintFormat::from_format(&EventFormat::parse(&text).unwrap()).unwrap());
        }
        Env { xsd, board: board(), tracefs, sysfs, pipe, decoder, resets: Arc::new(Mutex::new(Vec::new())), ts: 1234.5 }
    }

    fn xs(&self) -> Arc<Xenstore> {
        Arc::new(Xenstore::open_socket(self.xsd.socket_path(), Options::default()).unwrap())
    }

    fn evtchn(&self) -> Arc<dyn XenSys> {
        Arc::new(self.board.sim.open().unwrap())
    }

    fn map(&self, delay: Duration) -> TestMap {
        let (ep1, ep2) = self.board.machine(|m| (m.pci.find_by_id("ep1").unwrap(), m.pci.find_by_id("ep2").unwrap()));
        TestMap { entries: vec![(sbdf(H1), ep1), (sbdf(H2), ep2)], resets: self.resets.clone(), delay }
    }

    fn inbox(&self, cfg: InboxConfig, delay: Duration) -> aer_inbox::Handle {
        aer_inbox::start_with(
            self.xs(),
            self.evtchn(),
            DOMID,
            self.board.handle.clone(),
            Box::new(self.map(delay)),
            cfg,
        )
        .unwrap()
    }

    fn aerd_cfg(&self) -> Config {
        Config {
            tracefs: Some(self.tracefs.clone()),
            sysfs: self.sysfs.clone(),
            instance: "q35dm-aerd".into(),
            buffer_kb: None,
            poll_interval: Duration::from_millis(100),
            queue_limit: 64,
            force_sysfs: false,
        }
    }

    fn aerd(&self) -> DaemonHandle {
        aerd::daemon::start(self.aerd_cfg(), self.xs(), Some(self.evtchn())).unwrap()
    }

    /// The kernel prints one event: the line, then the empty line its "\n" makes.
    fn line(&mut self, dev: &str, severity: u8, status: u32, header: Option<[u32; 4]>) -> String {
        self.ts += 0.000_013;
        let text = render(self.decoder.as_ref().unwrap(), dev, severity, status, header);
        format!("     irq/27-aerdrv-140     [001] d..1. {:12.6}: aer_event: {text}\n\n", self.ts)
    }

    fn emit(&mut self, dev: &str, severity: u8, status: u32, header: Option<[u32; 4]>) {
        let l = self.line(dev, severity, status, header);
        self.pipe.as_mut().unwrap().write_all(l.as_bytes()).unwrap();
    }

    fn queue_len(&self) -> usize {
        self.xsd.children(&record::queue_dir(DOMID)).map_or(0, |c| c.len())
    }

    fn ack(&self) -> u64 {
        self.xsd.read_string(&record::ack_path(DOMID)).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

#[test]
fn format_files_of_5_10_6_1_6_12_and_the_bus_type_patch() {
    for (name, id, bus_type) in [
        ("format-5.10", 1086, false),
        ("format-6.1", 1221, false),
        ("format-6.12", 1402, false),
        ("format-patch-bus-type", 1533, true),
    ] {
        let f = EventFormat::parse(&fixture(name)).unwrap();
        assert_eq!((f.name.as_str(), f.id, f.common.len()), ("aer_event", id, 4), "{name}");
        let l = AerLayout::from_format(&f).unwrap();
        let off = if bus_type { 4 } else { 0 };
        assert_eq!(l.status.offset, 12 + off, "{name}");
        assert_eq!(l.severity.offset, 16 + off, "{name}");
        assert_eq!(l.tlp_header.as_ref().unwrap().offset, 20 + off, "{name}");
        assert_eq!(l.other, if bus_type { vec!["bus_type".to_string()] } else { vec![] }, "{name}");
        // A binary record built at the format's offsets decodes.
        let mut rec = vec![0u8; 64];
        rec[0..2].copy_from_slice(&(id as u16).to_le_bytes());
        rec[l.status.offset..l.status.offset + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        rec[l.severity.offset] = 1;
        rec[l.tlp_valid.as_ref().unwrap().offset] = 1;
        for i in 0..4 {
            let o = l.tlp_header.as_ref().unwrap().offset + 4 * i;
            rec[o..o + 4].copy_from_slice(&(0x10 + i as u32).to_le_bytes());
        }
        let name_off = 48u32;
        rec[48..61].copy_from_slice(b"0000:03:00.0\0");
        rec[l.dev_name.offset..l.dev_name.offset + 4].copy_from_slice(&(13 << 16 | name_off).to_le_bytes());
        let raw = l.decode_raw(&rec).unwrap();
        assert_eq!((raw.dev_name.as_str(), raw.status, raw.severity), ("0000:03:00.0", 0x1000, 1));
        assert_eq!(raw.header, Some([0x10, 0x11, 0x12, 0x13]));
        rec[0] ^= 1;
        assert_eq!(l.decode_raw(&rec), None, "another event ID");
        assert_eq!(l.decode_raw(&rec[..10]), None, "truncated");

        // Text: everything the event carries comes back from its printed line.
        let d = AerPrintFormat::from_format(&f).unwrap();
        assert_eq!(d.cor_flags.get("Bad TLP"), Some(&0x40), "{name}");
        assert_eq!(d.uncor_flags.get("TLP Prefix Blocked Error"), Some(&0x0200_0000), "{name}");
        for (sev, status, hdr) in [
            (2u8, 0x40u32, None),
            (2, 0x41 | 0x10_0000, None), // two named bits and one without a name
            (0, 0x1000, Some([0x4a00_0001, 0x0300_000f, 0xfe00_0000, 0])),
            (1, 0x20, None),
            (1, 0, None), // fatal without status (older kernels)
            (0, 0x0410_0000, Some([0, 0, 0, 0])),
        ] {
            let text = render(&d, H1, sev, status, hdr);
            let line = format!("  kworker/3:1-99  [003] d..1.  77.000001: aer_event: {text}");
            let TraceLine::Event(e) = d.decode_line(&line).unwrap() else { panic!("{line}") };
            assert_eq!((e.sbdf, e.status, e.header), (sbdf(H1), status, hdr), "{name}: {line}");
            assert_eq!(e.severity, HostSeverity::from_trace(u64::from(sev)).unwrap());
            assert_eq!(e.ts.as_deref(), Some("77.000001"));
        }
        assert_eq!(d.decode_line("CPU:2 [LOST 17 EVENTS]").unwrap(), TraceLine::Lost { cpu: 2, count: 17 });
        assert_eq!(d.decode_line("").unwrap(), TraceLine::Blank);
        for bad in [
            "no marker here",
            "x: aer_event: 0000:03:00.0 PCIe Bus Error: severity=Sideways, x, TLP Header=Not available",
            "x: aer_event: 03:00.0 PCIe Bus Error: severity=Corrected, Bad TLP, TLP Header=Not available",
            "x: aer_event: 0000:03:00.0 PCIe Bus Error: severity=Corrected, Bad Tea, TLP Header=Not available",
            "x: aer_event: 0000:03:00.0 PCIe Bus Error: severity=Fatal, Poisoned TLP, TLP Header={0x1,zz}",
            "x: aer_event: \u{1F600}",
        ] {
            assert!(d.decode_line(bad).is_err(), "{name}: accepted {bad:?}");
        }
    }
    // Garbage format files are refused with a reason, not a panic.
    assert!(EventFormat::parse("name: aer_event\nID: x\n").unwrap_err().to_string().contains("bad ID"));
    let no_status = fixture("format-6.1").replace("field:u32 status;", "field:u32 sts;");
    let e = AerLayout::from_format(&EventFormat::parse(&no_status).unwrap()).unwrap_err();
    assert!(e.to_string().contains("status"), "{e}");
    let no_flags = fixture("format-6.1").replace("__print_flags", "__print_nothing");
    assert!(AerPrintFormat::from_format(&EventFormat::parse(&no_flags).unwrap()).is_err());
}

#[test]
fn sim_loopback_event_channel_between_two_dom0_handles() {
    let b = board();
    let q = b.sim.open().unwrap();
    let a = b.sim.open().unwrap();
    let port = q.evtchn_bind_unbound_port(0).unwrap();
    let local = a.evtchn_bind_interdomain(0, port).unwrap();
    assert!(a.evtchn_bind_interdomain(0, port).is_err(), "already bound");
    a.evtchn_notify(local).unwrap();
    let mut v = Vec::new();
    q.evtchn_pending(&mut v).unwrap();
    assert_eq!(v, vec![port]);
    q.evtchn_unmask(port).unwrap();
    // The binder closes: the port is unbound again and can be bound by the next process.
    drop(a);
    let a2 = b.sim.open().unwrap();
    let l2 = a2.evtchn_bind_interdomain(0, port).unwrap();
    a2.evtchn_notify(l2).unwrap();
    v.clear();
    q.evtchn_pending(&mut v).unwrap();
    assert_eq!(v, vec![port]);
    // The allocator closes: notifying the other end is silently dropped (ECS_UNBOUND).
    drop(q);
    a2.evtchn_notify(l2).unwrap();
}

#[test]
fn correctable_nonfatal_and_fatal_errors_reach_the_guest() {
    let mut env = Env::new(Some("format-6.1"));
    let inbox = env.inbox(InboxConfig::default(), Duration::ZERO);
    let d = env.aerd();
    assert_eq!(d.source(), Source::Tracefs);
    let enable = std::fs::read_to_string(env.tracefs.join("instances/q35dm-aerd/events/ras/aer_event/enable")).unwrap();
    assert_eq!(enable.trim(), "1", "aerd enabled the event in its own instance");
    let b = &env.board;
    let msi0 = msis(b, RP1_MSI);

    // Correctable Bad TLP.
    env.emit(H1, 2, 0x40, None);
    wait_for("the correctable error", Duration::from_secs(10), || inbox.stats().injected >= 1);
    let b = &env.board;
    assert_ne!(ecam(b, EP1, 0x110) & 0x40, 0, "COR_STATUS Bad TLP at the guest function");
    let rsta = ecam(b, RP1, 0x130);
    assert_eq!(rsta & 1, 1, "ERR_COR received at the root port: {rsta:#x}");
    assert_eq!(ecam(b, RP1, 0x134) & 0xffff, 0x0100, "source ID is the guest's 01:00.0, not the host's 03:00.0");
    assert_eq!(msis(b, RP1_MSI), msi0 + 1, "AER interrupt");
    ecam_write(b, RP1, 0x130, rsta); // Linux's aer_irq

    // Non-fatal Poisoned TLP with a header: a CPU write (4DW, host root complex 00:00.0 as
    // requester) to the host BAR becomes a 3DW write to the guest BAR.
    let hdr = [0x6000_0001, 0x0000_000f, (HOST_BAR >> 32) as u32, 0x0000_0010];
    env.emit(H1, 0, 0x1000, Some(hdr));
    wait_for("the non-fatal error", Duration::from_secs(10), || inbox.stats().injected >= 2);
    let b = &env.board;
    assert_ne!(ecam(b, EP1, 0x104) & 0x1000, 0, "UNCOR_STATUS Poisoned TLP");
    let log: Vec<u32> = (0..4).map(|i| ecam(b, EP1, 0x11c + 4 * i)).collect();
    assert_eq!(log, vec![0x4000_0001, 0x0000_000f, GUEST_BAR | 0x10, 0], "header log in guest terms");
    let rsta = ecam(b, RP1, 0x130);
    assert_eq!(rsta & 0x64, 0x24, "ERR_NONFATAL received, not fatal: {rsta:#x}");
    assert_eq!(ecam(b, RP1, 0x134) >> 16, 0x0100);
    ecam_write(b, RP1, 0x130, rsta);
    ecam_write(b, EP1, 0x104, 0x1000);

    // Fatal on the host: the guest's own severity register decides. Completion Timeout is
    // non-fatal by default...
    env.emit(H1, 1, 0x4000, None);
    wait_for("the fatal error", Duration::from_secs(10), || inbox.stats().injected >= 3);
    let b = &env.board;
    let rsta = ecam(b, RP1, 0x130);
    assert_eq!(rsta & 0x64, 0x24, "guest severity says non-fatal: {rsta:#x}");
    ecam_write(b, RP1, 0x130, rsta);
    ecam_write(b, EP1, 0x104, 0x4000);
    // ... until the guest makes it fatal.
    let sev = ecam(b, EP1, 0x10c);
    ecam_write(b, EP1, 0x10c, sev | 0x4000);
    env.emit(H1, 1, 0x4000, None);
    wait_for("the second fatal error", Duration::from_secs(10), || inbox.stats().injected >= 4);
    let b = &env.board;
    let rsta = ecam(b, RP1, 0x130);
    assert_eq!(rsta & 0x44, 0x44, "ERR_FATAL received: {rsta:#x}");
    ecam_write(b, RP1, 0x130, rsta);

    // A correctable error the guest masked: status recorded, no message.
    let mask = ecam(b, EP1, 0x114);
    ecam_write(b, EP1, 0x114, mask | 1);
    let msi1 = msis(b, RP1_MSI);
    env.emit(H1, 2, 0x1, None);
    wait_for("the masked error", Duration::from_secs(10), || inbox.stats().injected >= 5);
    let b = &env.board;
    assert_eq!(ecam(b, EP1, 0x110) & 1, 1, "COR_STATUS Receiver Error");
    assert_eq!(ecam(b, RP1, 0x130) & 1, 0, "masked: no ERR_COR");
    assert_eq!(msis(b, RP1_MSI), msi1);

    // An error logged against a configuration request (dom0's) is not forwarded.
    env.emit(H1, 0, 0x10_0000, Some([0x0400_0001, 0x0000_000f, 0x0300_0010, 0]));
    wait_for("the config-TLP error", Duration::from_secs(10), || inbox.stats().config_tlps == 1);
    assert_eq!(ecam(&env.board, EP1, 0x104) & 0x10_0000, 0, "UR not injected");

    let st = inbox.stats();
    assert_eq!((st.records, st.last_seq, st.order_violations, st.failed), (6, 6, 0, 0), "{st:?}");
    assert_eq!(env.ack(), 6);
    assert_eq!(env.queue_len(), 0, "records removed once acknowledged");
    assert!(st.notifications >= 1, "woken by the event channel: {st:?}");
    let a = d.stats();
    assert_eq!((a.events, a.undecodable, a.forward.records), (6, 0, 6), "{a:?}");
    // The inbox is dom0's only.
    assert_eq!(env.xsd.perms(&record::inbox_dir(DOMID)).unwrap()[0], "n0");
    assert_eq!(env.xsd.read_string(&record::port_path(DOMID)).unwrap(), inbox.port().to_string());
    let port_path = record::port_path(DOMID);
    inbox.stop();
    assert!(env.xsd.read(&port_path).is_none(), "port withdrawn at stop");
    d.stop();
}

#[test]
fn unknown_unassigned_and_malformed_input_is_dropped_with_a_log() {
    let mut env = Env::new(Some("format-6.12"));
    let inbox = env.inbox(InboxConfig::default(), Duration::ZERO);
    let d = env.aerd();
    // No guest owns it: aerd logs and drops it.
    env.emit(H_NO_GUEST, 2, 0x40, None);
    // libxl gives it to domain 1, but this device model does not have it.
    env.emit(H_NOT_MAPPED, 0, 0x1000, None);
    // Lines the decoder refuses.
    env.pipe.as_mut().unwrap().write_all(b"garbage without marker\nx: aer_event: 0000:zz PCIe Bus Error\n").unwrap();
    // Bytes that are not a line at all: an endless line is cut, not buffered forever.
    let long = vec![b'A'; 10_000];
    env.pipe.as_mut().unwrap().write_all(&long).unwrap();
    env.pipe.as_mut().unwrap().write_all(b"\n").unwrap();
    env.emit(H1, 2, 0x80, None);
    wait_for("the good event", Duration::from_secs(10), || inbox.stats().injected == 1);
    wait_for("the unassigned record", Duration::from_secs(10), || inbox.stats().unassigned == 1);
    let a = d.stats();
    assert_eq!(a.unassigned, 1, "{a:?}");
    assert_eq!(a.undecodable, 3, "two bad lines and one overlong: {a:?}");
    assert_eq!(a.forward.records, 2, "{a:?}");
    // Garbage written into the queue by someone else: removed, counted, never acknowledged.
    env.xsd.write(&record::next_seq_path(DOMID), b"4");
    env.xsd.write(&format!("{}/999", record::queue_dir(DOMID)), b"seq=999 sbdf=0000:03:00.0 sev=fatal status=0x1");
    env.xsd.write(&format!("{}/x", record::queue_dir(DOMID)), b"junk");
    env.xsd.write(&format!("{}/3", record::queue_dir(DOMID)), &[0xff; 700]);
    wait_for("the garbage to go", Duration::from_secs(10), || env.queue_len() == 0);
    let st = inbox.stats();
    assert_eq!(st.malformed, 3, "{st:?}");
    assert_eq!(env.ack(), 3, "the bogus 999 did not move ack");
    // Later records still flow.
    env.emit(H1, 2, 0x80, None);
    wait_for("the next event", Duration::from_secs(10), || inbox.stats().injected == 2);
    assert_eq!(inbox.stats().last_seq, 4);
    let logs = q35dm::logging::captured();
    assert!(logs.iter().any(|l| l.contains("not assigned to any guest")), "aerd says why it drops");
    assert!(logs.iter().any(|l| l.contains("which this guest does not have")), "q35dm says why it drops");
    d.stop();
    inbox.stop();
}

#[test]
fn ten_thousand_events_per_second_stay_bounded_and_are_summarised() {
    let mut env = Env::new(Some("format-5.10"));
    let inbox = env.inbox(
        InboxConfig {
            storm: StormConfig { burst: 16, per_sec: 16.0, ..StormConfig::default() },
            ..InboxConfig::default()
        },
        Duration::ZERO,
    );
    let d = env.aerd();
    let msi0 = msis(&env.board, RP1_MSI);
    let kinds: [(u8, u32, Option<[u32; 4]>); 3] = [(2, 0x40, None), (2, 0x1, None), (0, 0x1000, None)];
    let lines: Vec<String> = (0..100)
        .map(|i| {
            let (s, st, h) = kinds[i % 3];
            env.line(H1, s, st, h)
        })
        .collect();
    let chunk: String = lines.concat();
    let mut pipe = env.pipe.take().unwrap();
    let t0 = Instant::now();
    let max_queue = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (max_queue, stop) = (max_queue.clone(), stop.clone());
        let sock = env.xsd.socket_path().to_path_buf();
        std::thread::spawn(move || {
            let xs = Xenstore::open_socket(sock, Options::default()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = xs.directory(&record::queue_dir(DOMID)).map_or(0, |v| v.len());
                let mut m = max_queue.lock().unwrap();
                *m = (*m).max(n);
                drop(m);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // 2 s at 10^4 events/s: 100 events every 10 ms.
    for tick in 0..200u32 {
        pipe.write_all(chunk.as_bytes()).unwrap();
        let due = t0 + Duration::from_millis(10 * u64::from(tick + 1));
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
    let written = t0.elapsed();
    assert!(written < Duration::from_secs(6), "aerd kept up with the writer: {written:?}");
    wait_for("all 20000 host events accounted for", Duration::from_secs(30), || inbox.stats().host_events == 20_000);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    let st = inbox.stats();
    let a = d.stats();
    assert_eq!(a.events, 20_000, "{a:?}");
    assert_eq!(a.forward.events, 20_000, "{a:?}");
    assert!(a.forward.records < 2_000, "aerd collapsed identical events into counted records: {a:?}");
    let mq = *max_queue.lock().unwrap();
    assert!(mq <= 64, "queue bounded by aerd's limit: {mq}");
    let bound = 16.0 + 16.0 * (elapsed + 1.0) + 3.0 * (elapsed + 1.0);
    assert!((st.injected as f64) <= bound, "{} injections in {elapsed:.1} s (bound {bound}): {st:?}", st.injected);
    assert!(st.summaries >= 1 && st.collapsed > 10_000, "{st:?}");
    assert!(msis(&env.board, RP1_MSI) - msi0 < 10, "one interrupt per new condition, not per error");
    assert!(
        q35dm::logging::captured().iter().any(|l| l.contains("AER storm on host function 0000:03:00.0")),
        "a counted summary is logged"
    );
    assert_eq!(st.order_violations, 0);
    assert_eq!(env.ack(), st.last_seq, "every record acknowledged");
    env.pipe = Some(pipe);
    d.stop();
    inbox.stop();
}

#[test]
fn q35dm_restart_mid_queue_loses_nothing() {
    let mut env = Env::new(Some("format-6.12"));
    let d = env.aerd();
    // A slow first device model: 30 ms per record, 4 records per batch.
    let first = env.inbox(InboxConfig { max_batch: 4, ..InboxConfig::default() }, Duration::from_millis(30));
    for i in 0..40u32 {
        env.emit(H1, 0, 0x1000, Some([0x4000_0001, 0x0300_000f, 0x1000_0000 + (i << 4), 0]));
    }
    wait_for("aerd to queue all 40", Duration::from_secs(10), || d.stats().forward.records == 40);
    wait_for("the first q35dm to consume some", Duration::from_secs(10), || first.stats().records >= 8);
    let port1 = first.port();
    first.stop();
    let acked = env.ack();
    assert!((8..40).contains(&acked), "stopped mid-queue at {acked}");
    // Exactly the unacknowledged records are still there.
    let mut left: Vec<u64> =
        env.xsd.children(&record::queue_dir(DOMID)).unwrap().iter().map(|s| s.parse().unwrap()).collect();
    left.sort();
    assert_eq!(left, (acked + 1..=40).collect::<Vec<_>>());
    // The restarted device model publishes a new epoch; aerd re-binds and kicks it.
    let binds = d.stats().forward.binds;
    let second = env.inbox(InboxConfig::default(), Duration::ZERO);
    wait_for("the rest", Duration::from_secs(10), || env.ack() == 40 && env.queue_len() == 0);
    let st = second.stats();
    assert_eq!(st.records, 40 - acked, "{st:?}");
    assert_eq!((st.duplicates, st.order_violations), (0, 0));
    wait_for("aerd to re-bind", Duration::from_secs(10), || d.stats().forward.binds > binds);
    // New events go to the new port.
    env.emit(H1, 2, 0x40, None);
    wait_for("a new event", Duration::from_secs(10), || second.stats().records == 40 - acked + 1);
    assert!(second.stats().notifications >= 1);
    let _ = port1;
    second.stop();
    d.stop();
}

#[test]
fn aerd_restart_continues_the_sequence_and_reads_what_happened_meanwhile() {
    let mut env = Env::new(Some("format-5.10"));
    let inbox = env.inbox(InboxConfig::default(), Duration::ZERO);
    let d = env.aerd();
    for i in 0..5u32 {
        env.emit(H1, 2, 1 << [0, 6, 7, 8, 12][i as usize], None);
    }
    wait_for("five records", Duration::from_secs(10), || inbox.stats().records == 5);
    d.stop();
    // While aerd is down the kernel keeps recording into aerd's instance.
    for _ in 0..5 {
        env.emit(H1, 0, 0x1000, None);
        env.emit(H1, 2, 0x40, None);
    }
    let d2 = env.aerd();
    wait_for("the events of the gap", Duration::from_secs(10), || inbox.stats().host_events == 15);
    let st = inbox.stats();
    assert_eq!(st.last_seq, env.ack());
    assert_eq!((st.duplicates, st.order_violations, st.malformed), (0, 0, 0), "{st:?}");
    assert!(st.last_seq > 5, "sequence continued from next-seq: {st:?}");
    assert_eq!(env.xsd.read_string(&record::next_seq_path(DOMID)).unwrap(), (st.last_seq + 1).to_string());
    assert!(d2.stats().forward.binds >= 1, "the new aerd bound the inbox port itself");
    d2.stop();
    inbox.stop();
}

#[test]
fn without_the_tracepoint_aerd_polls_sysfs_and_says_so_once() {
    let env = Env::new(None);
    let dev = env.sysfs.join("bus/pci/devices").join(H1);
    std::fs::create_dir_all(&dev).unwrap();
    let counters = |bad_tlp: u32, tlp: u32| {
        std::fs::write(
            dev.join("aer_dev_correctable"),
            format!(
                "RxErr 0\nBadTLP {bad_tlp}\nBadDLLP 0\nRollover 0\nTimeout 0\nNonFatalErr 0\nCorrIntErr 0\nHeaderOF 0\n\
                 TOTAL_ERR_COR {bad_tlp}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dev.join("aer_dev_nonfatal"),
            format!("Undefined 0\nDLP 0\nTLP {tlp}\nTOTAL_ERR_NONFATAL {tlp}\n"),
        )
        .unwrap();
        std::fs::write(dev.join("aer_dev_fatal"), "Undefined 0\nDLP 0\nTOTAL_ERR_FATAL 0\n").unwrap();
    };
    counters(4, 0); // history before aerd: not forwarded
    let inbox = env.inbox(InboxConfig::default(), Duration::ZERO);
    let d = env.aerd();
    assert_eq!(d.source(), Source::Sysfs);
    std::thread::sleep(Duration::from_millis(300));
    counters(6, 1);
    wait_for("the counter increments", Duration::from_secs(10), || inbox.stats().host_events == 3);
    let b = &env.board;
    assert_ne!(ecam(b, EP1, 0x110) & 0x40, 0, "Bad TLP");
    assert_ne!(ecam(b, EP1, 0x104) & 0x1000, 0, "Poisoned TLP (non-fatal counter)");
    std::thread::sleep(Duration::from_millis(300));
    let said = q35dm::logging::captured()
        .iter()
        .filter(|l| l.contains("falling back to polling the sysfs AER counters"))
        .count();
    assert_eq!(said, 1);
    d.stop();
    inbox.stop();
}

#[test]
fn guest_sbr_and_flr_reset_the_host_function_only_for_this_domain() {
    let env = Env::new(Some("format-6.1"));
    let inbox = env.inbox(InboxConfig::default(), Duration::ZERO);
    let b = &env.board;
    // Secondary Bus Reset on the guest root port above ep1 (Linux: set, wait, clear).
    let bctl = b.cfg_read(RP1, 0x3e, 2);
    b.cfg_write(RP1, 0x3e, 2, bctl | 0x40);
    b.cfg_write(RP1, 0x3e, 2, bctl);
    assert_eq!(*env.resets.lock().unwrap(), vec![sbdf(H1)]);
    // FLR of ep1.
    let exp = cap(b, EP1, 0x10);
    let ctl = b.cfg_read(EP1, exp + 8, 2);
    b.cfg_write(EP1, exp + 8, 2, ctl | 0x8000);
    assert_eq!(*env.resets.lock().unwrap(), vec![sbdf(H1), sbdf(H1)]);
    assert_eq!(b.cfg_read(EP1, exp + 8, 2) & 0x8000, 0, "Initiate FLR reads 0");
    // ep2's host function belongs to domain 7 per libxl: the guest's SBR does not reach it.
    let bctl = b.cfg_read(RP2, 0x3e, 2);
    b.cfg_write(RP2, 0x3e, 2, bctl | 0x40);
    b.cfg_write(RP2, 0x3e, 2, bctl);
    assert_eq!(env.resets.lock().unwrap().len(), 2);
    let st = inbox.stats();
    assert_eq!((st.host_resets, st.host_resets_refused), (2, 1), "{st:?}");
    // Without the inbox, guest resets stay virtual.
    inbox.stop();
    let bctl = b.cfg_read(RP1, 0x3e, 2);
    b.cfg_write(RP1, 0x3e, 2, bctl | 0x40);
    b.cfg_write(RP1, 0x3e, 2, bctl);
    assert_eq!(env.resets.lock().unwrap().len(), 2);
}
