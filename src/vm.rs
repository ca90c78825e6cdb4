//! The control-plane view of a running device model: what the monitor, QMP and xenstore handlers
//! act on. Guest-visible accesses made on behalf of an operator (`o`, `i`, `xp`) go through the
//! same path as a guest's: on the simulator through a simulated vCPU and the ioreq page, on real
//! Xen through the engine's request execution.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::ioreq::Space;
use crate::machine::Machine;
use crate::runtime::{LoopGone, LoopHandle};
use crate::sim::{SimError, SimXen};

/// QEMU-style run states, as `query-status` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Started with `-S`, not yet continued.
    Prelaunch,
    /// Running.
    Running,
    /// Stopped by `stop`.
    Paused,
    /// Waiting for `-incoming` state.
    InMigrate,
    /// The guest shut down.
    Shutdown,
}

impl RunState {
    /// The name `query-status` uses.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::InMigrate => "inmigrate",
            RunState::Shutdown => "shutdown",
        }
    }
}

/// Control-plane failures.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VmError {
    /// The event loop is gone.
    #[error(transparent)]
    Gone(#[from] LoopGone),
    /// The simulated vCPU could not complete the access.
    #[error("access failed: {0}")]
    Sim(#[from] SimError),
    /// Nothing answers at this guest-physical address.
    #[error("Cannot access memory")]
    NoMemory,
    /// Bad argument.
    #[error("{0}")]
    Invalid(String),
}

/// A run-state listener.
pub type StateListener = Box<dyn Fn(RunState) + Send>;

/// Handle shared by every control-plane thread.
pub struct Vm {
    handle: LoopHandle<Machine>,
    sim: Option<SimXen>,
    state: Mutex<RunState>,
    quit: AtomicBool,
    /// Called (once) when `quit` is requested.
    on_quit: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Called on every run-state change (xenstore `state`).
    on_state: Mutex<Vec<StateListener>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vm({:?}, sim: {})", self.run_state(), self.sim.is_some())
    }
}

impl Vm {
    /// A control handle on the loop running `Machine`.
    pub fn new(handle: LoopHandle<Machine>, sim: Option<SimXen>, initial: RunState) -> Arc<Self> {
        Arc::new(Self {
            handle,
            sim,
            state: Mutex::new(initial),
            quit: AtomicBool::new(false),
            on_quit: Mutex::new(None),
            on_state: Mutex::new(Vec::new()),
        })
    }

    /// The loop handle.
    pub fn handle(&self) -> &LoopHandle<Machine> {
        &self.handle
    }

    /// The simulator, in sim mode.
    pub fn sim(&self) -> Option<&SimXen> {
        self.sim.as_ref()
    }

    /// Runs `f` on the machine (on the loop thread) and returns its result.
    pub fn machine<R: Send + 'static>(&self, f: impl FnOnce(&mut Machine) -> R + Send + 'static) -> Result<R, VmError> {
        Ok(self.handle.call(move |m, _| f(m))?)
    }

    /// Current run state.
    pub fn run_state(&self) -> RunState {
        self.state.lock().map(|g| *g).unwrap_or(RunState::Running)
    }

    /// Sets the run state and tells the listeners.
    pub fn set_run_state(&self, s: RunState) {
        if let Ok(mut g) = self.state.lock() {
            if *g == s {
                return;
            }
            *g = s;
        }
        if let Ok(l) = self.on_state.lock() {
            for f in l.iter() {
                f(s);
            }
        }
    }

    /// Registers a run-state listener.
    pub fn on_state_change(&self, f: impl Fn(RunState) + Send + 'static) {
        if let Ok(mut l) = self.on_state.lock() {
            l.push(Box::new(f));
        }
    }

    /// Registers what `quit` does (stop the loop, exit).
    pub fn on_quit(&self, f: impl FnOnce() + Send + 'static) {
        if let Ok(mut g) = self.on_quit.lock() {
            *g = Some(Box::new(f));
        }
    }

    /// `quit`: stops the device model.
    pub fn quit(&self) {
        if self.quit.swap(true, Ordering::SeqCst) {
            return;
        }
        let f = self.on_quit.lock().ok().and_then(|mut g| g.take());
        match f {
            Some(f) => f(),
            None => self.handle.stop(),
        }
    }

    /// Whether `quit` was requested.
    pub fn quitting(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    /// `cont`: idempotent.
    pub fn cont(&self) {
        self.set_run_state(RunState::Running);
    }

    /// `stop`.
    pub fn stop(&self) {
        self.set_run_state(RunState::Paused);
    }

    /// `device_add` (hot-plug through a slot).
    pub fn device_add(&self, req: crate::devices::DeviceRequest) -> Result<(), VmError> {
        self.handle
            .call(move |m, e| m.add_request(&req, true, e.effects_mut()).map(|_| ()))?
            .map_err(|e| VmError::Invalid(e.to_string()))
    }

    /// `device_del`.
    pub fn device_del(&self, id: &str, surprise: bool) -> Result<crate::machine::hotplug::Removal, VmError> {
        let id = id.to_string();
        self.handle
            .call(move |m, e| m.device_del(&id, surprise, e.effects_mut()))?
            .map_err(|e| VmError::Invalid(e.to_string()))
    }

    /// `(chassis, slot)` of the hot-plug port with qdev id `id`.
    pub fn slot_of_port(&self, id: &str) -> Result<(u8, u16), VmError> {
        let key = id.to_string();
        self.handle
            .call(move |m, _| m.slot_of_port(&key))?
            .ok_or_else(|| VmError::Invalid(format!("no PCIe port with a hot-plug slot has id {id:?}")))
    }

    /// `pcie_abp`.
    pub fn pcie_abp(&self, chassis: Option<u8>, slot: u16) -> Result<(u8, u16), VmError> {
        self.handle
            .call(move |m, e| m.press_attention_button(chassis, slot, e.effects_mut()))?
            .map_err(|e| VmError::Invalid(e.to_string()))
    }

    /// `pcie_aer_inject_error` with QEMU's or the original syntax.
    pub fn aer_inject(&self, args: &str) -> Result<String, VmError> {
        let inj = crate::pcie::aer_parse::parse_aer_injection(args).map_err(|e| VmError::Invalid(e.to_string()))?;
        self.handle.call(move |m, e| {
            let n = match &inj.target {
                crate::pcie::aer_parse::AerTarget::Id(id) => m.pci.find_by_id(id),
                crate::pcie::aer_parse::AerTarget::Sbdf(s) => m.pci.find(*s),
            }
            .ok_or_else(|| VmError::Invalid(format!("device {} not found", inj.target)))?;
            m.aer_inject(n, &inj.errors, e.effects_mut()).map_err(|e| VmError::Invalid(e.to_string()))
        })?
    }

    /// A port read of `size` bytes, as a guest vCPU would do it.
    pub fn pio_read(&self, port: u16, size: u8) -> Result<u32, VmError> {
        match &self.sim {
            Some(sim) => Ok(sim.vcpu(0).pio_read(port, u32::from(size))?),
            None => {
                let v = self.handle.call(move |m, e| e.monitor_access(m, Space::Pio, u64::from(port), size, None))?;
                Ok(v as u32)
            }
        }
    }

    /// A port write.
    pub fn pio_write(&self, port: u16, size: u8, val: u32) -> Result<(), VmError> {
        match &self.sim {
            Some(sim) => Ok(sim.vcpu(0).pio_write(port, u32::from(size), val)?),
            None => {
                self.handle
                    .call(move |m, e| e.monitor_access(m, Space::Pio, u64::from(port), size, Some(u64::from(val))))?;
                Ok(())
            }
        }
    }

    /// A guest-physical read of `size` bytes: RAM, or MMIO the device model claims. Anything else
    /// is "Cannot access memory", as in QEMU.
    pub fn phys_read(&self, addr: u64, size: u8) -> Result<u64, VmError> {
        let mut b = [0u8; 8];
        let n = usize::from(size).min(8);
        if let Some(sim) = &self.sim {
            if sim.ram_read(addr, b.get_mut(..n).unwrap_or(&mut [])).is_ok() {
                return Ok(u64::from_le_bytes(b));
            }
            if !self.machine(move |m| m.claims_mmio(addr, u64::from(size)))? {
                return Err(VmError::NoMemory);
            }
            return Ok(sim.vcpu(0).mmio_read(addr, u32::from(size))?);
        }
        self.handle.call(move |m, e| {
            if m.claims_mmio(addr, u64::from(size)) {
                return Ok(e.monitor_access(m, Space::Mmio, addr, size, None));
            }
            let mut b = [0u8; 8];
            match e.mem().read(addr, b.get_mut(..n).unwrap_or(&mut [])) {
                Ok(()) => Ok(u64::from_le_bytes(b)),
                Err(_) => Err(VmError::NoMemory),
            }
        })?
    }

    /// A guest-physical write.
    pub fn phys_write(&self, addr: u64, size: u8, val: u64) -> Result<(), VmError> {
        let n = usize::from(size).min(8);
        let bytes = val.to_le_bytes();
        if let Some(sim) = &self.sim {
            if sim.ram_write(addr, bytes.get(..n).unwrap_or(&[])).is_ok() {
                return Ok(());
            }
            if !self.machine(move |m| m.claims_mmio(addr, u64::from(size)))? {
                return Err(VmError::NoMemory);
            }
            return Ok(sim.vcpu(0).mmio_write(addr, u32::from(size), val)?);
        }
        self.handle.call(move |m, e| {
            if m.claims_mmio(addr, u64::from(size)) {
                e.monitor_access(m, Space::Mmio, addr, size, Some(val));
                return Ok(());
            }
            e.mem().write(addr, bytes.get(..n).unwrap_or(&[])).map_err(|_| VmError::NoMemory)
        })?
    }
}
