//! The Xen platform PCI device (`xen-platform`, 5853:0001) and the legacy unplug protocol on its
//! fixed I/O ports 0x10-0x1f, as QEMU's hw/i386/xen/xen_platform.c.
//!
//! Guests find their PV drivers' anchor here: Linux's `xen-platform-pci` driver takes grant-table
//! space from BAR1 and, without a vector callback, routes the event-channel upcall through the
//! device's INTA (which Xen itself drives: the device model never asserts it). Before that, early
//! boot code (arch/x86/xen/platform-pci-unplug.c) talks to the fixed ports:
//!
//! | port | access | read | write |
//! |---|---|---|---|
//! | 0x10 | byte | platform flags | platform flags (bit 0: ROM lock) |
//! | 0x10 | word | magic 0x49d2 | unplug mask (1 IDE/SCSI disks, 2 NICs, 4 aux IDE, 8 NVMe) |
//! | 0x10 | dword | all-ones | PV driver build number |
//! | 0x12 | byte | protocol version 1 | one byte of the driver log (a line per `\n`) |
//! | 0x12 | word | 0xffff | PV product number (3 = Linux) |
//!
//! q35dm emulates no IDE, SCSI, NVMe disks or NICs, so unplug requests are acknowledged (and
//! logged): there is nothing to remove. The ROM lock (making 0xc0000-0xfffff read-only through
//! Xen) is recorded and reads back, but not applied: q35dm does not change guest memory types.
//!
//! BAR0 (I/O, 256 bytes): byte 0 is the platform flags again, byte 8 the log port; other bytes
//! read all-ones. BAR1 (16 MiB prefetchable memory) is space for the guest to map grant tables
//! into: reads of unpopulated parts return 0 and writes are dropped, as in QEMU.

use std::sync::{Arc, Mutex};

use crate::device::{Effects, PortDevice};
use crate::machine::{Machine, MachineError};
use crate::memory::GuestMemory;
use crate::pci::bar::BarSpec;
use crate::pci::config::{HeaderIds, IntxPin};
use crate::pci::device::{DeviceError, FunctionSpec, GenericFunction, PciDevice, PciEffects};
use crate::pci::topology::NodeId;
use crate::state::{Reader, StateError, Writer};

/// The driver name (`-device xen-platform`).
pub const DRIVER: &str = "xen-platform";
/// XenSource's PCI vendor id.
pub const VENDOR_XEN: u16 = 0x5853;
/// The platform device id.
pub const DEVICE_PLATFORM: u16 = 0x0001;
/// Where `-machine xenfv` puts it: slot 2, the first free slot after i440FX's host bridge and
/// PIIX3 when there is no VGA (libxl's `vga="none"`, `nographic`), as in QEMU.
pub const DEFAULT_DEVFN: u8 = 2 << 3;
/// First fixed port.
pub const FIXED_IO_BASE: u16 = 0x10;
/// Fixed ports decoded (QEMU's "xen-fixed" region).
pub const FIXED_IO_LEN: u16 = 16;
/// What a word read of port 0x10 returns.
pub const MAGIC: u16 = 0x49d2;
/// The unplug protocol version (byte read of port 0x12).
pub const PROTOCOL_VERSION: u8 = 1;
/// BAR0 size.
pub const IO_BAR_SIZE: u64 = 0x100;
/// BAR1 size.
pub const MMIO_BAR_SIZE: u64 = 16 << 20;
/// Longest driver-log line kept before it is flushed.
pub const LOG_LINE_MAX: usize = 4095;

/// Unplug mask bits (port 0x10, word write).
pub mod unplug {
    /// All IDE and SCSI disks.
    pub const IDE_SCSI_DISKS: u16 = 1;
    /// All NICs.
    pub const ALL_NICS: u16 = 2;
    /// IDE disks except the primary master.
    pub const AUX_IDE_DISKS: u16 = 4;
    /// NVMe disks.
    pub const NVME_DISKS: u16 = 8;
}

/// Platform flag: the option-ROM area is read-only.
pub const FLAG_ROM_LOCK: u8 = 1;

/// State shared by the PCI function and its fixed ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformState {
    /// Platform flags.
    pub flags: u8,
    /// Every unplug bit requested so far.
    pub unplugged: u16,
    /// PV product number the guest reported (3 = Linux).
    pub product: Option<u16>,
    /// PV driver build number the guest reported.
    pub build: Option<u32>,
    log: Vec<u8>,
}

impl PlatformState {
    fn set_flags(&mut self, v: u8) {
        let v = v & FLAG_ROM_LOCK;
        if v != self.flags {
            log::info!(
                "xen-platform: guest {} the option-ROM area (recorded; q35dm leaves memory types to Xen)",
                if v != 0 { "locks" } else { "unlocks" }
            );
        }
        self.flags = v;
    }

    fn log_byte(&mut self, b: u8) {
        if b == b'\n' || self.log.len() >= LOG_LINE_MAX {
            static LIMIT: crate::logging::RateLimit = crate::logging::RateLimit::new();
            if let Some(n) = LIMIT.allow() {
                let line = String::from_utf8_lossy(&self.log);
                if n > 0 {
                    log::info!("xen-platform: guest driver log: {line:?} [{n} lines suppressed]");
                } else {
                    log::info!("xen-platform: guest driver log: {line:?}");
                }
            }
            self.log.clear();
            if b == b'\n' {
                return;
            }
        }
        self.log.push(b);
    }

    fn unplug(&mut self, mask: u16) {
        self.unplugged |= mask;
        let mut what = Vec::new();
        for (bit, name) in [
            (unplug::IDE_SCSI_DISKS, "IDE/SCSI disks"),
            (unplug::ALL_NICS, "NICs"),
            (unplug::AUX_IDE_DISKS, "auxiliary IDE disks"),
            (unplug::NVME_DISKS, "NVMe disks"),
        ] {
            if mask & bit != 0 {
                what.push(name);
            }
        }
        log::info!(
            "xen-platform: guest requests unplug {mask:#x} ({}): q35dm emulates none of them, nothing to remove",
            if what.is_empty() { "nothing".to_string() } else { what.join(", ") }
        );
    }

    /// A fixed-port read (`addr` relative to 0x10).
    pub fn fixed_read(&self, addr: u16, size: u8) -> u64 {
        match (size, addr) {
            (1, 0) => u64::from(self.flags),
            (1, 2) => u64::from(PROTOCOL_VERSION),
            (1, _) => 0xff,
            (2, 0) => u64::from(MAGIC),
            (2, _) => 0xffff,
            _ => crate::device::ones(size),
        }
    }

    /// A fixed-port write (`addr` relative to 0x10).
    pub fn fixed_write(&mut self, addr: u16, size: u8, val: u64) {
        match (size, addr) {
            (1, 0) => self.set_flags(val as u8),
            (1, 2) => self.log_byte(val as u8),
            (2, 0) => self.unplug(val as u16),
            (2, 2) => {
                let p = val as u16;
                self.product = Some(p);
                log::info!(
                    "xen-platform: PV drivers loaded in the guest: product {p}{}",
                    match p {
                        1 => " (Citrix Windows PV drivers)",
                        3 => " (Linux)",
                        _ => "",
                    }
                );
            }
            (4, 0) => {
                self.build = Some(val as u32);
                log::debug!("xen-platform: PV driver build {val:#x}");
            }
            _ => crate::guest_warn!(
                "xen-platform: ignored write of {val:#x} (size {size}) to port {:#x}",
                FIXED_IO_BASE + addr
            ),
        }
    }
}

/// The PCI function.
pub struct XenPlatform {
    f: GenericFunction,
    state: Arc<Mutex<PlatformState>>,
}

impl XenPlatform {
    /// The device, named `name`.
    pub fn new(name: &str) -> Result<Self, DeviceError> {
        let ids = HeaderIds {
            vendor_id: VENDOR_XEN,
            device_id: DEVICE_PLATFORM,
            revision: 1,
            class_code: 0xff_80_00,
            subsystem_vendor_id: VENDOR_XEN,
            subsystem_id: DEVICE_PLATFORM,
        };
        let spec = FunctionSpec::new(name, ids)
            .bar(BarSpec::io(0, IO_BAR_SIZE))
            .bar(BarSpec::mem32(1, MMIO_BAR_SIZE, true))
            .intx(IntxPin::A);
        Ok(Self { f: GenericFunction::new(spec)?, state: Arc::new(Mutex::new(PlatformState::default())) })
    }

    /// The fixed-port device sharing this function's state, to add with
    /// [`Machine::add_port_device`].
    pub fn fixed_ports(&self) -> XenPlatformPorts {
        XenPlatformPorts { state: self.state.clone() }
    }

    /// A copy of the shared state.
    pub fn state(&self) -> PlatformState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut PlatformState) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }
}

impl PciDevice for XenPlatform {
    fn function(&self) -> &GenericFunction {
        &self.f
    }
    fn function_mut(&mut self) -> &mut GenericFunction {
        &mut self.f
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> u64 {
        match bar {
            // Byte-wide registers (wider reads are composed of byte reads, as QEMU).
            0 => (0..u64::from(size.min(8)))
                .map(|i| {
                    let b = if off.checked_add(i) == Some(0) { self.with(|s| s.flags).unwrap_or(0) } else { 0xff };
                    u64::from(b) << (8 * i)
                })
                .fold(0, |a, b| a | b),
            1 => 0,
            _ => crate::device::ones(size),
        }
    }

    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> PciEffects {
        match bar {
            0 => {
                for i in 0..u64::from(size.min(8)) {
                    let b = (val >> (8 * i)) as u8;
                    match off.checked_add(i) {
                        Some(0) => {
                            self.with(|s| s.set_flags(b));
                        }
                        Some(8) => {
                            self.with(|s| s.log_byte(b));
                        }
                        _ => {}
                    }
                }
            }
            1 => log::trace!("xen-platform: write of {val:#x} to unpopulated BAR1 offset {off:#x} dropped"),
            _ => {}
        }
        Vec::new()
    }

    fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(&self.f.save_state());
        let s = self.state();
        w.u8(s.flags);
        w.u16(s.unplugged);
        w.buf
    }

    fn load_state(&mut self, data: &[u8]) -> Result<PciEffects, StateError> {
        let mut r = Reader::new(data);
        let fx = self.f.load_state(r.bytes()?)?;
        let flags = r.u8()?;
        let unplugged = r.u16()?;
        if !r.done() {
            return Err(StateError::Mismatch("xen-platform: trailing state".into()));
        }
        self.with(|s| {
            s.flags = flags & FLAG_ROM_LOCK;
            s.unplugged = unplugged;
        });
        Ok(fx)
    }
}

/// The fixed ports 0x10-0x1f of a [`XenPlatform`].
#[derive(Debug)]
pub struct XenPlatformPorts {
    state: Arc<Mutex<PlatformState>>,
}

impl PortDevice for XenPlatformPorts {
    fn name(&self) -> &str {
        "Xen platform unplug ports"
    }

    fn ports(&self) -> Vec<(u16, u16)> {
        vec![(FIXED_IO_BASE, FIXED_IO_LEN)]
    }

    fn read(&mut self, port: u16, size: u8, _fx: &mut Effects, _mem: &mut dyn GuestMemory) -> u64 {
        let addr = port.wrapping_sub(FIXED_IO_BASE);
        self.state.lock().map(|s| s.fixed_read(addr, size)).unwrap_or_else(|_| crate::device::ones(size))
    }

    fn write(&mut self, port: u16, size: u8, val: u64, _fx: &mut Effects, _mem: &mut dyn GuestMemory) {
        let addr = port.wrapping_sub(FIXED_IO_BASE);
        if let Ok(mut s) = self.state.lock() {
            s.fixed_write(addr, size, val);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Adds the fixed ports of the platform function at `node` (after `Machine::add_request` created
/// it); effects go to `fx`.
pub fn attach_fixed_ports(machine: &mut Machine, node: NodeId, fx: &mut Effects) -> Result<(), MachineError> {
    let ports = machine
        .pci
        .node_mut(node)
        .and_then(|n| n.dev.as_any_mut().downcast_mut::<XenPlatform>())
        .map(|p| p.fixed_ports())
        .ok_or_else(|| MachineError::Layout("xen-platform: the function is not a Xen platform device".into()))?;
    machine.add_port_device(Box::new(ports), fx)?;
    Ok(())
}

/// Adds the platform device as `-machine xenfv` does: at 00:02.0 (or the first free slot if 2 is
/// taken), with its fixed ports.
pub fn install(machine: &mut Machine, fx: &mut Effects) -> Result<NodeId, String> {
    let taken = machine.pci.find(crate::pci::Sbdf::new(0, 0, DEFAULT_DEVFN >> 3, 0)).is_some();
    let req = crate::devices::DeviceRequest {
        driver: DRIVER.into(),
        id: Some(DRIVER.into()),
        devfn: (!taken).then_some(DEFAULT_DEVFN),
        ..Default::default()
    };
    let n = machine.add_request(&req, false, fx).map_err(|e| format!("{DRIVER}: {e}"))?;
    attach_fixed_ports(machine, n, fx).map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NoMemory;

    #[test]
    fn ids_class_bars_and_pin() {
        let d = XenPlatform::new("xen-platform").unwrap();
        let c = d.config();
        assert_eq!(c.vendor_id(), 0x5853);
        assert_eq!(c.device_id(), 0x0001);
        assert_eq!(c.get_u8(0x08), 1, "revision");
        assert_eq!(c.get_u32(0x08) >> 8, 0xff8000, "class ff80, prog-if 0");
        assert_eq!(c.get_u16(0x2c), 0x5853);
        assert_eq!(c.get_u16(0x2e), 0x0001);
        assert_eq!(c.get_u8(0x3d), 1, "INTA");
        let specs = d.function().bars().specs().to_vec();
        assert_eq!(specs, vec![BarSpec::io(0, 0x100), BarSpec::mem32(1, 16 << 20, true)]);
        assert_eq!(c.get_u32(0x10) & 3, 1, "BAR0 is I/O");
        assert_eq!(c.get_u32(0x14) & 0xf, 0x8, "BAR1 is 32-bit prefetchable memory");
    }

    #[test]
    fn bar_sizing_through_config_space() {
        let mut d = XenPlatform::new("xen-platform").unwrap();
        d.config_write(0x10, 4, 0xffff_ffff);
        assert_eq!(d.config_read(0x10, 4) & 0xffff_fffc, 0xffff_ff00, "256 bytes of I/O");
        d.config_write(0x14, 4, 0xffff_ffff);
        assert_eq!(d.config_read(0x14, 4) & 0xffff_fff0, 0xff00_0000, "16 MiB");
    }

    #[test]
    fn unplug_protocol_as_linux_drives_it() {
        let d = XenPlatform::new("xen-platform").unwrap();
        let mut p = d.fixed_ports();
        assert_eq!(p.ports(), vec![(0x10, 16)]);
        let mut fx = Vec::new();
        let m = &mut NoMemory;
        // check_platform_magic(): magic, protocol, product, build, magic again.
        assert_eq!(p.read(0x10, 2, &mut fx, m), 0x49d2);
        assert_eq!(p.read(0x12, 1, &mut fx, m), 1);
        p.write(0x12, 2, 3, &mut fx, m);
        p.write(0x10, 4, 1, &mut fx, m);
        assert_eq!(p.read(0x10, 2, &mut fx, m), 0x49d2, "not blacklisted");
        // xen_unplug_emulated_devices(): disks and NICs.
        p.write(0x10, 2, u64::from(unplug::IDE_SCSI_DISKS | unplug::ALL_NICS), &mut fx, m);
        let s = d.state();
        assert_eq!(s.unplugged, 3);
        assert_eq!(s.product, Some(3));
        assert_eq!(s.build, Some(1));
        assert!(fx.is_empty());
        // Other reads.
        assert_eq!(p.read(0x11, 1, &mut fx, m), 0xff);
        assert_eq!(p.read(0x12, 2, &mut fx, m), 0xffff);
        assert_eq!(p.read(0x10, 4, &mut fx, m), 0xffff_ffff);
        assert_eq!(p.read(0x10, 1, &mut fx, m), 0, "flags");
    }

    #[test]
    fn flags_are_shared_between_ports_and_bar0_and_log_lines_flush() {
        let mut d = XenPlatform::new("xen-platform").unwrap();
        let mut p = d.fixed_ports();
        let mut fx = Vec::new();
        p.write(0x10, 1, 0xff, &mut fx, &mut NoMemory);
        assert_eq!(p.read(0x10, 1, &mut fx, &mut NoMemory), 1, "only the ROM-lock bit sticks");
        assert_eq!(d.bar_read(0, 0, 1), 1);
        assert_eq!(d.bar_read(0, 0, 2), 0xff01, "byte-wide: offset 1 reads all-ones");
        assert_eq!(d.bar_read(0, 4, 1), 0xff);
        d.bar_write(0, 0, 1, 0);
        assert_eq!(p.read(0x10, 1, &mut fx, &mut NoMemory), 0);
        assert_eq!(d.bar_read(1, 0x1000, 4), 0, "unpopulated MMIO reads 0");
        assert!(d.bar_write(1, 0, 4, 0x1234).is_empty());
        for c in b"hello\n" {
            p.write(0x12, 1, u64::from(*c), &mut fx, &mut NoMemory);
        }
        for c in b"bar" {
            d.bar_write(0, 8, 1, u64::from(*c));
        }
        assert_eq!(d.state().log, b"bar", "the first line was flushed, the second is pending");
        for _ in 0..LOG_LINE_MAX + 10 {
            p.write(0x12, 1, u64::from(b'x'), &mut fx, &mut NoMemory);
        }
        assert!(d.state().log.len() <= LOG_LINE_MAX, "bounded");
    }

    #[test]
    fn state_round_trip() {
        let a = XenPlatform::new("xen-platform").unwrap();
        a.fixed_ports().write(0x10, 1, 1, &mut Vec::new(), &mut NoMemory);
        a.fixed_ports().write(0x10, 2, 2, &mut Vec::new(), &mut NoMemory);
        let blob = a.save_state();
        let mut b = XenPlatform::new("xen-platform").unwrap();
        b.load_state(&blob).unwrap();
        assert_eq!(b.state().flags, 1);
        assert_eq!(b.state().unplugged, 2);
        assert!(b.load_state(&blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn installs_at_slot_2_with_its_ports() {
        let mut m = Machine::new(crate::machine::MemLayout { below_4g: 256 << 20, above_4g: 0 }).unwrap();
        let mut fx = Vec::new();
        install(&mut m, &mut fx).unwrap();
        assert!(m.pci.find(crate::pci::Sbdf::new(0, 0, 2, 0)).is_some());
        assert!(m.describe().contains("Xen platform unplug ports"), "{}", m.describe());
        use crate::device::IoHandler;
        assert_eq!(m.read(crate::ioreq::Space::Pio, 0x10, 2, &mut fx), 0x49d2);
        // A second one cannot take the same fixed ports.
        assert!(install(&mut m, &mut fx).is_err());
    }
}
