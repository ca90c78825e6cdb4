//! The emulated board: address-space routing for ports, MMIO and PCI configuration, and the
//! devices behind them. The Q35 chipset (MCH, ICH9 LPC, MMCONFIG) and the PCIe hierarchy plug
//! into this.

use std::fmt::Write as _;

use xen_bindings::dm_op::SHUTDOWN_REBOOT;

use crate::bus::{Range, RangeMap};
use crate::device::{ones, Effect, Effects, IoHandler, IoRange};
use crate::guest_warn;
use crate::ioreq::Space;

/// Port of the PCI configuration address register.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// First port of the PCI configuration data window.
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// ICH9 reset control register (`RST_CNT`).
pub const RST_CNT: u16 = 0xcf9;

/// Port-I/O devices the board itself implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDev {
    /// 0xCF8-0xCFB: the config-address latch (dword) and, at 0xCF9, RST_CNT (byte).
    ConfigAddress,
    /// 0xCFC-0xCFF with the enable bit of 0xCF8 clear (Xen sends enabled accesses as PCI_CONFIG).
    ConfigData,
}

/// What the board serves, for the start-up summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Range claimed with the hypervisor.
    pub range: IoRange,
    /// What answers it.
    pub what: String,
}

/// The board.
#[derive(Debug, Default)]
pub struct Machine {
    pio: RangeMap<PortDev>,
    cf8: u32,
    rst_cnt: u8,
}

impl Machine {
    /// A board with the chipset's fixed port devices.
    pub fn new() -> Self {
        let mut pio = RangeMap::new();
        let add = |m: &mut RangeMap<PortDev>, start: u16, len: u16, d| {
            if let Some(r) = Range::new(u64::from(start), u64::from(len)) {
                let _ = m.insert(r, d);
            }
        };
        add(&mut pio, PCI_CONFIG_ADDRESS, 4, PortDev::ConfigAddress);
        add(&mut pio, PCI_CONFIG_DATA, 4, PortDev::ConfigData);
        Self { pio, cf8: 0, rst_cnt: 0 }
    }

    /// Every range the ioreq server must claim, with a description.
    pub fn served(&self) -> Vec<Served> {
        let mut v = Vec::new();
        for (r, d) in self.pio.iter() {
            let what = match d {
                PortDev::ConfigAddress => "PCI config address (latch) + ICH9 RST_CNT at 0xcf9",
                PortDev::ConfigData => "PCI config data (type-1, via Xen PCI_CONFIG ioreqs)",
            };
            v.push(Served {
                range: IoRange::ports(r.start as u16, u16::try_from(r.len()).unwrap_or(u16::MAX)),
                what: what.into(),
            });
        }
        v
    }

    /// Whether an MMIO access of `size` bytes at `addr` hits something the board emulates.
    pub fn claims_mmio(&self, _addr: u64, _size: u64) -> bool {
        false
    }

    /// `info pci` text (QEMU's format).
    pub fn info_pci(&self) -> String {
        String::new()
    }

    /// The 4 KiB config space of `sbdf` in `lspci -xxxx` format, if the function exists.
    pub fn dump_config(&self, _sbdf: crate::pci::Sbdf) -> Option<String> {
        None
    }

    /// The ranges to claim.
    pub fn ranges(&self) -> Vec<IoRange> {
        self.served().into_iter().map(|s| s.range).collect()
    }

    /// A human-readable list of what is served.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for x in self.served() {
            let _ = writeln!(s, "    {:<28} {}", x.range.to_string(), x.what);
        }
        s
    }

    fn pio_read(&mut self, dev: PortDev, port: u16, size: u8) -> u64 {
        match dev {
            PortDev::ConfigAddress if port == PCI_CONFIG_ADDRESS && size == 4 => u64::from(self.cf8),
            PortDev::ConfigAddress if port == RST_CNT && size == 1 => u64::from(self.rst_cnt),
            _ => ones(size),
        }
    }

    fn pio_write(&mut self, dev: PortDev, port: u16, size: u8, val: u64, fx: &mut Effects) {
        match dev {
            PortDev::ConfigAddress if port == PCI_CONFIG_ADDRESS && size == 4 => self.cf8 = val as u32,
            PortDev::ConfigAddress if port == RST_CNT && size == 1 => {
                // ICH9: bit 2 (RST_CPU) performs the reset; bits 1 (SYS_RST) and 3 (FULL_RST) are kept.
                let v = val as u8;
                self.rst_cnt = v & 0x0a;
                if v & 0x04 != 0 {
                    log::info!("guest wrote {v:#x} to RST_CNT: requesting a reboot");
                    fx.push(Effect::Shutdown(SHUTDOWN_REBOOT));
                }
            }
            _ => guest_warn!("write of {val:#x} (size {size}) to port {port:#x} ignored"),
        }
    }
}

impl IoHandler for Machine {
    fn read(&mut self, space: Space, addr: u64, size: u8, _fx: &mut Effects) -> u64 {
        match space {
            Space::Pio => match self.pio.find_access(addr, u64::from(size)).map(|(_, d)| *d) {
                Some(d) => self.pio_read(d, addr as u16, size),
                None => {
                    guest_warn!("read of unclaimed port {addr:#x} (size {size})");
                    ones(size)
                }
            },
            Space::Mmio | Space::PciConfig(_) => ones(size),
        }
    }

    fn write(&mut self, space: Space, addr: u64, size: u8, data: u64, fx: &mut Effects) {
        match space {
            Space::Pio => match self.pio.find_access(addr, u64::from(size)).map(|(_, d)| *d) {
                Some(d) => self.pio_write(d, addr as u16, size, data, fx),
                None => guest_warn!("write to unclaimed port {addr:#x} (size {size})"),
            },
            Space::Mmio | Space::PciConfig(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_address_latch_reads_back_only_as_dword() {
        let mut m = Machine::new();
        let mut fx = Vec::new();
        m.write(Space::Pio, 0xcf8, 4, 0x8000_f840, &mut fx);
        assert_eq!(m.read(Space::Pio, 0xcf8, 4, &mut fx), 0x8000_f840);
        assert_eq!(m.read(Space::Pio, 0xcf8, 2, &mut fx), 0xffff);
        assert_eq!(m.read(Space::Pio, 0xcfa, 1, &mut fx), 0xff);
        assert!(fx.is_empty());
    }

    #[test]
    fn rst_cnt_bit2_requests_reboot() {
        let mut m = Machine::new();
        let mut fx = Vec::new();
        m.write(Space::Pio, 0xcf9, 1, 0x02, &mut fx);
        assert!(fx.is_empty());
        assert_eq!(m.read(Space::Pio, 0xcf9, 1, &mut fx), 0x02);
        m.write(Space::Pio, 0xcf9, 1, 0x06, &mut fx);
        assert_eq!(fx, vec![Effect::Shutdown(SHUTDOWN_REBOOT)]);
    }
}
