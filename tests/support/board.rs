//! The real Q35 board served by the real engine on the simulated hypervisor.

#![allow(dead_code)]

use std::sync::Arc;

use q35dm::app::{self, Accel, Options};
use q35dm::machine::{Machine, MemLayout};
use q35dm::runtime::{self, LoopHandle};
use q35dm::sim::{SimVcpu, SimXen};

pub struct Board {
    pub sim: SimXen,
    pub handle: LoopHandle<Machine>,
    join: Option<runtime::LoopThread<Machine>>,
}

impl Board {
    pub fn new(memory_mib: u64) -> Self {
        Self::with(memory_mib, |_| {})
    }

    /// Builds the board, lets `setup` add devices before serving starts.
    pub fn with(memory_mib: u64, setup: impl FnOnce(&mut Machine)) -> Self {
        q35dm::logging::init_capture(log::LevelFilter::Debug);
        let opts = Options { accel: Accel::Sim, vcpus: 2, memory_mib, ..Options::default() };
        let backend = app::open_backend(&opts).expect("backend");
        let (below_4g, above_4g) = app::ram_layout(memory_mib);
        let mut m = Machine::new(MemLayout { below_4g, above_4g }).expect("board");
        setup(&mut m);
        let engine = app::start(&opts, &backend, &m).expect("start");
        let (handle, join) = runtime::spawn(m, engine).expect("spawn");
        Self { sim: backend.sim.clone().expect("sim"), handle, join: Some(join) }
    }

    pub fn vcpu(&self) -> SimVcpu {
        self.sim.vcpu(0)
    }

    /// Type-1 config read through 0xcf8/0xcfc.
    pub fn cfg_read(&self, bdf: u32, reg: u32, size: u32) -> u32 {
        let v = self.vcpu();
        v.pio_write(0xcf8, 4, 0x8000_0000 | bdf << 8 | (reg & 0xfc)).unwrap();
        v.pio_read(0xcfc + (reg & 3) as u16, size).unwrap()
    }

    pub fn cfg_write(&self, bdf: u32, reg: u32, size: u32, val: u32) {
        let v = self.vcpu();
        v.pio_write(0xcf8, 4, 0x8000_0000 | bdf << 8 | (reg & 0xfc)).unwrap();
        v.pio_write(0xcfc + (reg & 3) as u16, size, val).unwrap();
    }

    pub fn machine<R: Send + 'static>(&self, f: impl FnOnce(&mut Machine) -> R + Send + 'static) -> R {
        self.handle.call(move |m, _| f(m)).expect("loop alive")
    }

    pub fn stop(mut self) -> Machine {
        self.handle.stop();
        let (m, _, r) = self.join.take().unwrap().join().expect("loop thread");
        r.expect("loop");
        m
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(j) = self.join.take() {
            self.handle.stop();
            let _ = j.join();
        }
    }
}

pub fn arc(b: Board) -> Arc<Board> {
    Arc::new(b)
}
