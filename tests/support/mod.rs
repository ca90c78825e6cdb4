//! Shared helpers for integration tests: a test machine with simple devices, and a harness that
//! runs the real ioreq engine against the simulated hypervisor on its own thread.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use q35dm::device::{ones, Effect, Effects, IoHandler, IoRange};
use q35dm::ioreq::{Engine, Space};
use q35dm::memory::MapCache;
use q35dm::pci::Sbdf;
use q35dm::runtime::{self, LoopHandle};
use q35dm::sim::{SimConfig, SimXen};
use q35dm::xen::{IoreqServer, ServerOptions};
use xen_bindings::sys::XenSys;

/// Ports 0x510-0x51f: a 16-byte register file.
pub const REGS: u16 = 0x510;
/// Port 0x520: reads return a counter (0, 1, 2, ...) truncated to the size; writes are logged.
pub const FIFO: u16 = 0x520;
/// Port 0x524: a write of N emits side effect N (1 INTx assert, 2 INTx deassert, 3 MSI,
/// 4 ISA IRQ 5 high, 5 link 2 -> IRQ 11, 6 shutdown/poweroff).
pub const IRQ_PORT: u16 = 0x524;
/// MMIO scratch page.
pub const MMIO: u64 = 0xfe00_0000;
/// Legacy VGA-window scratch page (below 1 MiB, so Xen can buffer writes to it).
pub const VGA: u64 = 0xa_0000;
/// The test PCI function.
pub const PCI_FN: Sbdf = Sbdf::new(0, 0, 3, 0);

/// One access seen by the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub space: Space,
    pub addr: u64,
    pub size: u8,
    pub write: Option<u64>,
}

type Hook = Box<dyn FnMut(&Seen) + Send>;

/// A machine with a port register file, a counting FIFO port, an MMIO scratch page and one PCI
/// function with a plain 4 KiB config space.
pub struct TestMachine {
    pub regs: [u8; 16],
    pub fifo_next: u64,
    pub fifo_written: Vec<u64>,
    pub mmio: Vec<u8>,
    pub vga: Vec<u8>,
    pub config: Vec<u8>,
    pub seen: Vec<Seen>,
    pub timeoffsets: Vec<u64>,
    pub hook: Option<Hook>,
}

impl Default for TestMachine {
    fn default() -> Self {
        Self {
            regs: [0; 16],
            fifo_next: 0,
            fifo_written: Vec::new(),
            mmio: vec![0; 4096],
            vga: vec![0; 4096],
            config: vec![0; 4096],
            seen: Vec::new(),
            timeoffsets: Vec::new(),
            hook: None,
        }
    }
}

fn get(buf: &[u8], off: usize, size: u8) -> u64 {
    let mut b = [0u8; 8];
    b[..size as usize].copy_from_slice(&buf[off..off + size as usize]);
    u64::from_le_bytes(b)
}

fn put(buf: &mut [u8], off: usize, size: u8, v: u64) {
    buf[off..off + size as usize].copy_from_slice(&v.to_le_bytes()[..size as usize]);
}

impl TestMachine {
    pub fn ranges() -> Vec<IoRange> {
        vec![
            IoRange::ports(REGS, 16),
            IoRange::ports(FIFO, 4),
            IoRange::ports(IRQ_PORT, 1),
            IoRange::memory(MMIO, 4096),
            IoRange::memory(VGA, 4096),
            IoRange::pci(PCI_FN),
        ]
    }

    fn note(&mut self, s: Seen) {
        if let Some(h) = self.hook.as_mut() {
            h(&s);
        }
        self.seen.push(s);
    }
}

impl IoHandler for TestMachine {
    fn read(&mut self, space: Space, addr: u64, size: u8, _fx: &mut Effects) -> u64 {
        self.note(Seen { space, addr, size, write: None });
        match space {
            Space::Pio if (u64::from(REGS)..u64::from(REGS) + 16).contains(&addr) => {
                let off = (addr - u64::from(REGS)) as usize;
                if off + size as usize <= 16 {
                    get(&self.regs, off, size)
                } else {
                    ones(size)
                }
            }
            Space::Pio if addr == u64::from(FIFO) => {
                let v = self.fifo_next;
                self.fifo_next += 1;
                v & ones(size)
            }
            Space::Mmio if (MMIO..MMIO + 4096).contains(&addr) => get(&self.mmio, (addr - MMIO) as usize, size),
            Space::Mmio if (VGA..VGA + 4096).contains(&addr) => get(&self.vga, (addr - VGA) as usize, size),
            Space::PciConfig(s) if s == PCI_FN => get(&self.config, addr as usize, size),
            _ => ones(size),
        }
    }

    fn write(&mut self, space: Space, addr: u64, size: u8, data: u64, fx: &mut Effects) {
        self.note(Seen { space, addr, size, write: Some(data) });
        match space {
            Space::Pio if (u64::from(REGS)..u64::from(REGS) + 16).contains(&addr) => {
                let off = (addr - u64::from(REGS)) as usize;
                if off + size as usize <= 16 {
                    put(&mut self.regs, off, size, data);
                }
            }
            Space::Pio if addr == u64::from(FIFO) => self.fifo_written.push(data),
            Space::Pio if addr == u64::from(IRQ_PORT) => fx.push(match data {
                1 => Effect::PciIntx { device: 3, intx: 0, level: true },
                2 => Effect::PciIntx { device: 3, intx: 0, level: false },
                3 => Effect::Msi { addr: 0xfee0_0000, data: 0x4041 },
                4 => Effect::IsaIrq { irq: 5, level: true },
                5 => Effect::LinkRoute { link: 2, irq: 11 },
                _ => Effect::Shutdown(0),
            }),
            Space::Mmio if (MMIO..MMIO + 4096).contains(&addr) => {
                put(&mut self.mmio, (addr - MMIO) as usize, size, data)
            }
            Space::Mmio if (VGA..VGA + 4096).contains(&addr) => put(&mut self.vga, (addr - VGA) as usize, size, data),
            Space::PciConfig(s) if s == PCI_FN => put(&mut self.config, addr as usize, size, data),
            _ => {}
        }
    }

    fn time_offset(&mut self, offset: u64) {
        self.timeoffsets.push(offset);
    }
}

/// The real engine serving a [`TestMachine`] on the simulated hypervisor.
pub struct Harness {
    pub sim: SimXen,
    pub sys: Arc<dyn XenSys>,
    pub server_id: u16,
    pub handle: LoopHandle<TestMachine>,
    join: Mutex<Option<runtime::LoopThread<TestMachine>>>,
}

impl Harness {
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_sys(cfg, |sim| Arc::new(sim.open().expect("open sim")))
    }

    /// Like `new`, with a custom seam built on the simulator (e.g. a recorder).
    pub fn with_sys(cfg: SimConfig, make: impl FnOnce(&SimXen) -> Arc<dyn XenSys>) -> Self {
        q35dm::logging::init_capture(log::LevelFilter::Debug);
        let sim = SimXen::new(cfg).expect("sim");
        let sys = make(&sim);
        let domid = sim.config().domid;
        let mut server = IoreqServer::create(sys.clone(), domid, ServerOptions::default()).expect("create server");
        for r in TestMachine::ranges() {
            server.map_range(r).expect("map range");
        }
        let server_id = server.id();
        let engine = Engine::new(server, Box::new(MapCache::new(sys.clone(), domid)));
        let (handle, join) = runtime::spawn(TestMachine::default(), engine).expect("spawn");
        Self { sim, sys, server_id, handle, join: Mutex::new(Some(join)) }
    }

    /// Runs `f` on the machine (on the loop thread).
    pub fn machine<R: Send + 'static>(&self, f: impl FnOnce(&mut TestMachine) -> R + Send + 'static) -> R {
        self.handle.call(move |m, _| f(m)).expect("loop alive")
    }

    /// Engine statistics.
    pub fn stats(&self) -> q35dm::ioreq::Stats {
        self.handle.call(|_, e| e.stats).expect("loop alive")
    }

    /// Stops the loop and returns the machine and engine.
    pub fn stop(&self) -> (TestMachine, Engine) {
        self.handle.stop();
        let j = self.join.lock().unwrap().take().expect("not yet stopped");
        let (m, e, r) = j.join().expect("loop thread panicked");
        r.expect("loop error");
        (m, e)
    }
}
