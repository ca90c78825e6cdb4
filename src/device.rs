//! What the ioreq engine asks of the emulated machine, and the side effects the machine hands
//! back as data for the owner (the engine, which talks to the hypervisor) to apply.

use xen_bindings::dm_op::IoRangeKind;

use crate::ioreq::decode::Space;
use crate::memory::GuestMemory;

/// A range of the guest's address spaces the ioreq server must claim or release with Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoRange {
    /// Port, memory or PCI (SBDF) range.
    pub kind: IoRangeKind,
    /// First address (or SBDF).
    pub start: u64,
    /// Last address (or SBDF), inclusive.
    pub end: u64,
}

impl IoRange {
    /// Ports `[start, start+len-1]`.
    pub fn ports(start: u16, len: u16) -> Self {
        Self { kind: IoRangeKind::Port, start: u64::from(start), end: u64::from(start) + u64::from(len.max(1)) - 1 }
    }
    /// Memory `[start, start+len-1]` (`len` ≥ 1).
    pub fn memory(start: u64, len: u64) -> Self {
        Self { kind: IoRangeKind::Memory, start, end: start.saturating_add(len.max(1) - 1) }
    }
    /// One PCI function.
    pub fn pci(sbdf: crate::pci::Sbdf) -> Self {
        Self { kind: IoRangeKind::Pci, start: u64::from(sbdf.raw()), end: u64::from(sbdf.raw()) }
    }
}

impl std::fmt::Display for IoRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            IoRangeKind::Port => write!(f, "ports {:#06x}-{:#06x}", self.start, self.end),
            IoRangeKind::Memory => write!(f, "mmio {:#x}-{:#x}", self.start, self.end),
            IoRangeKind::Pci => {
                let s = crate::pci::Sbdf::from_raw(self.start as u32);
                if self.start == self.end {
                    write!(f, "pci {s}")
                } else {
                    write!(f, "pci {s}-{}", crate::pci::Sbdf::from_raw(self.end as u32))
                }
            }
        }
    }
}

/// A side effect the hypervisor must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Claim a range for this ioreq server.
    MapRange(IoRange),
    /// Release a range.
    UnmapRange(IoRange),
    /// Drive a root-bus INTx line (`set_pci_intx_level`; device 0-31, intx 0-3 = INTA-D).
    PciIntx {
        /// Device number on bus 0.
        device: u8,
        /// Pin 0-3.
        intx: u8,
        /// Asserted.
        level: bool,
    },
    /// Drive an ISA IRQ (`set_isa_irq_level`).
    IsaIrq {
        /// IRQ 0-15.
        irq: u8,
        /// Asserted.
        level: bool,
    },
    /// Route a PCI link to an ISA IRQ (`set_pci_link_route`; irq 0 disables).
    LinkRoute {
        /// Link 0-3.
        link: u8,
        /// ISA IRQ.
        irq: u8,
    },
    /// Deliver an MSI (`inject_msi`).
    Msi {
        /// Address.
        addr: u64,
        /// Data.
        data: u32,
    },
    /// Shut the guest down (`remote_shutdown`, `SHUTDOWN_*`).
    Shutdown(u32),
}

/// Collected side effects of one access.
pub type Effects = Vec<Effect>;

/// The machine as the ioreq engine sees it. Accesses never fail: a miss reads all-ones and a
/// write to nothing is dropped (the machine logs, rate-limited).
pub trait IoHandler {
    /// A read of `size` bytes; the value is zero-extended (all-ones on a miss, masked to size).
    fn read(&mut self, space: Space, addr: u64, size: u8, fx: &mut Effects) -> u64;
    /// A write of `size` bytes.
    fn write(&mut self, space: Space, addr: u64, size: u8, data: u64, fx: &mut Effects);
    /// A buffered-ioreq `IOREQ_TYPE_TIMEOFFSET` (RTC offset); ignored by default.
    fn time_offset(&mut self, _offset: u64) {}
    /// [`IoHandler::read`] with access to guest RAM (for devices that DMA, e.g. fw_cfg). The
    /// engine always calls this form.
    fn read_mem(&mut self, space: Space, addr: u64, size: u8, fx: &mut Effects, _mem: &mut dyn GuestMemory) -> u64 {
        self.read(space, addr, size, fx)
    }
    /// [`IoHandler::write`] with access to guest RAM.
    fn write_mem(
        &mut self,
        space: Space,
        addr: u64,
        size: u8,
        data: u64,
        fx: &mut Effects,
        _mem: &mut dyn GuestMemory,
    ) {
        self.write(space, addr, size, data, fx)
    }
}

/// Guest memory that does not exist (for accesses made outside any guest context).
#[derive(Debug, Default)]
pub struct NoMemory;

impl GuestMemory for NoMemory {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::memory::GuestMemError> {
        Err(crate::memory::GuestMemError { op: "read", gpa, len: buf.len(), why: "no guest memory here".into() })
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), crate::memory::GuestMemError> {
        Err(crate::memory::GuestMemError { op: "write", gpa, len: buf.len(), why: "no guest memory here".into() })
    }
    fn invalidate(&mut self) {}
}

/// All-ones of `size` bytes (`u64::MAX` for sizes outside 1..=8).
pub fn ones(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// A device on fixed I/O ports (legacy ISA-style devices: UART, fw_cfg, platform ports).
pub trait PortDevice: Send {
    /// Name for logs and the summary.
    fn name(&self) -> &str;
    /// The port ranges it decodes, as (first port, length).
    fn ports(&self) -> Vec<(u16, u16)>;
    /// A read of `size` bytes at `port`.
    fn read(&mut self, port: u16, size: u8, fx: &mut Effects, mem: &mut dyn GuestMemory) -> u64;
    /// A write.
    fn write(&mut self, port: u16, size: u8, val: u64, fx: &mut Effects, mem: &mut dyn GuestMemory);
    /// Downcasting helper.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    /// State for `xen-save-devices-state`.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Restores [`PortDevice::save_state`] output.
    fn load_state(&mut self, _data: &[u8]) -> Result<(), crate::state::StateError> {
        Ok(())
    }
}
