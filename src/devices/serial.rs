//! The ISA 16550A UARTs (COM1-COM4), with QEMU's register semantics (hw/char/serial.c), so that
//! firmware and guest drivers see exactly what they see under QEMU.
//!
//! | offset | read | write |
//! |---|---|---|
//! | 0 | RBR (DLL when LCR.DLAB) | THR (DLL when LCR.DLAB) |
//! | 1 | IER (DLM when LCR.DLAB) | IER, low 4 bits (DLM when LCR.DLAB) |
//! | 2 | IIR | FCR |
//! | 3 | LCR | LCR |
//! | 4 | MCR | MCR, low 5 bits |
//! | 5 | LSR (reading clears OE and BI) | ignored |
//! | 6 | MSR (reading clears the delta bits) | ignored |
//! | 7 | SCR | SCR |
//!
//! Transmission is instantaneous: a byte written to THR goes to the backend (or, in loopback
//! mode, into the receiver) at once, and LSR.THRE/TEMT are set again before the write returns —
//! QEMU's behaviour with a backend that accepts the byte. The 16-byte receive FIFO is filled from
//! the backend only as far as it has room (flow control, as QEMU's `can_receive`), so input is
//! never lost to overruns.
//!
//! Interrupts: the IIR priority order is line status, character timeout, received data, THR
//! empty, modem status. The output line is driven as [`Effect::IsaIrq`] only when its level
//! changes — but every change is reported, so writing THR with THRI enabled lowers and raises
//! the line (a fresh edge per byte, which the edge-triggered ISA IRQ needs). QEMU arms a timer
//! for the character-timeout interrupt; q35dm has no timers on the request path, so the timeout
//! is reported as soon as the FIFO holds fewer bytes than its trigger level and the backend has
//! nothing more to deliver (the line is idle): the guest sees the same interrupt, earlier.
//! Register accesses wider than a byte are split into byte accesses at consecutive offsets.

use std::collections::VecDeque;
use std::sync::Arc;

use thiserror::Error;

use crate::device::{Effect, Effects, PortDevice};
use crate::devices::chardev::{self, CharBackend, InputQueue};
use crate::machine::Machine;
use crate::memory::GuestMemory;
use crate::monitor::qmp::ChardevInfo;
use crate::runtime::LoopHandle;
use crate::state::{Reader, StateError, Writer};

/// Base port and ISA IRQ of COM1-COM4 (QEMU's `isa_serial_io` / `isa_serial_irq`).
pub const COM_PORTS: [(u16, u8); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];
/// Ports each UART decodes.
pub const UART_PORTS: u16 = 8;
/// Receive (and transmit) FIFO depth.
pub const FIFO_LEN: usize = 16;

/// Register offsets.
pub mod reg {
    /// RBR / THR / DLL.
    pub const DATA: u8 = 0;
    /// IER / DLM.
    pub const IER: u8 = 1;
    /// IIR (read) / FCR (write).
    pub const IIR_FCR: u8 = 2;
    /// LCR.
    pub const LCR: u8 = 3;
    /// MCR.
    pub const MCR: u8 = 4;
    /// LSR.
    pub const LSR: u8 = 5;
    /// MSR.
    pub const MSR: u8 = 6;
    /// SCR.
    pub const SCR: u8 = 7;
}

/// IER bits.
pub mod ier {
    /// Received data available.
    pub const RDI: u8 = 0x01;
    /// THR empty.
    pub const THRI: u8 = 0x02;
    /// Receiver line status.
    pub const RLSI: u8 = 0x04;
    /// Modem status.
    pub const MSI: u8 = 0x08;
}

/// IIR values and bits.
pub mod iir {
    /// No interrupt pending.
    pub const NO_INT: u8 = 0x01;
    /// Interrupt id mask.
    pub const ID: u8 = 0x0e;
    /// Modem status.
    pub const MSI: u8 = 0x00;
    /// THR empty.
    pub const THRI: u8 = 0x02;
    /// Received data available.
    pub const RDI: u8 = 0x04;
    /// Receiver line status.
    pub const RLSI: u8 = 0x06;
    /// Character timeout.
    pub const CTI: u8 = 0x0c;
    /// FIFOs enabled (both bits).
    pub const FE: u8 = 0xc0;
}

/// FCR bits.
pub mod fcr {
    /// FIFO enable.
    pub const FE: u8 = 0x01;
    /// Receive FIFO reset.
    pub const RFR: u8 = 0x02;
    /// Transmit FIFO reset.
    pub const XFR: u8 = 0x04;
    /// Bits that stick (enable, DMA mode, trigger level).
    pub const STICKY: u8 = 0xc9;
}

/// LCR bits.
pub mod lcr {
    /// Divisor latch access.
    pub const DLAB: u8 = 0x80;
}

/// MCR bits.
pub mod mcr {
    /// OUT2 (set at reset, as QEMU).
    pub const OUT2: u8 = 0x08;
    /// Loopback.
    pub const LOOP: u8 = 0x10;
    /// Writable bits.
    pub const MASK: u8 = 0x1f;
}

/// LSR bits.
pub mod lsr {
    /// Data ready.
    pub const DR: u8 = 0x01;
    /// Overrun.
    pub const OE: u8 = 0x02;
    /// Parity error.
    pub const PE: u8 = 0x04;
    /// Framing error.
    pub const FE: u8 = 0x08;
    /// Break.
    pub const BI: u8 = 0x10;
    /// THR empty.
    pub const THRE: u8 = 0x20;
    /// Transmitter empty.
    pub const TEMT: u8 = 0x40;
    /// Conditions that raise the line-status interrupt.
    pub const INT_ANY: u8 = OE | PE | FE | BI;
}

/// MSR bits.
pub mod msr {
    /// Clear to send.
    pub const CTS: u8 = 0x10;
    /// Data set ready.
    pub const DSR: u8 = 0x20;
    /// Data carrier detect.
    pub const DCD: u8 = 0x80;
    /// Delta bits.
    pub const ANY_DELTA: u8 = 0x0f;
}

/// The 16550A register model, without any backend: [`Uart::write`] returns the byte to
/// transmit; interrupt level changes go to the effects as [`Effect::IsaIrq`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uart {
    irq: u8,
    divider: u16,
    rbr: u8,
    ier: u8,
    iir: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    msr: u8,
    scr: u8,
    fcr: u8,
    rx: VecDeque<u8>,
    rx_itl: usize,
    thr_ipending: bool,
    timeout_ipending: bool,
    level: bool,
}

impl Uart {
    /// A UART in its reset state, driving ISA IRQ `irq`.
    pub fn new(irq: u8) -> Self {
        Self {
            irq,
            divider: 0x0c,
            rbr: 0,
            ier: 0,
            iir: iir::NO_INT,
            lcr: 0,
            mcr: mcr::OUT2,
            lsr: lsr::TEMT | lsr::THRE,
            msr: msr::DCD | msr::DSR | msr::CTS,
            scr: 0,
            fcr: 0,
            rx: VecDeque::with_capacity(FIFO_LEN),
            rx_itl: 1,
            thr_ipending: false,
            timeout_ipending: false,
            level: false,
        }
    }

    /// The ISA IRQ.
    pub fn irq(&self) -> u8 {
        self.irq
    }

    /// The interrupt line level.
    pub fn level(&self) -> bool {
        self.level
    }

    /// The divisor latch.
    pub fn divider(&self) -> u16 {
        self.divider
    }

    /// Whether loopback mode is on.
    pub fn loopback(&self) -> bool {
        self.mcr & mcr::LOOP != 0
    }

    fn fifo(&self) -> bool {
        self.fcr & fcr::FE != 0
    }

    /// Bytes currently in the receive FIFO (or the RBR).
    pub fn rx_len(&self) -> usize {
        if self.fifo() {
            self.rx.len()
        } else {
            usize::from(self.lsr & lsr::DR != 0)
        }
    }

    fn update_irq(&mut self, fx: &mut Effects) {
        let id = if self.ier & ier::RLSI != 0 && self.lsr & lsr::INT_ANY != 0 {
            iir::RLSI
        } else if self.ier & ier::RDI != 0 && self.timeout_ipending {
            iir::CTI
        } else if self.ier & ier::RDI != 0 && self.lsr & lsr::DR != 0 && (!self.fifo() || self.rx.len() >= self.rx_itl)
        {
            iir::RDI
        } else if self.ier & ier::THRI != 0 && self.thr_ipending {
            iir::THRI
        } else if self.ier & ier::MSI != 0 && self.msr & msr::ANY_DELTA != 0 {
            iir::MSI
        } else {
            iir::NO_INT
        };
        self.iir = id | (self.iir & 0xf0);
        let level = id != iir::NO_INT;
        if level != self.level {
            self.level = level;
            fx.push(Effect::IsaIrq { irq: self.irq, level });
        }
    }

    /// The character-timeout condition, evaluated when the receiver changed: bytes below the
    /// trigger level and nothing more arriving (see the module documentation).
    fn rearm_timeout(&mut self) {
        self.timeout_ipending = self.fifo() && !self.rx.is_empty() && self.rx.len() < self.rx_itl;
    }

    /// How many bytes the receiver takes now (0 in loopback mode: the input is disconnected).
    pub fn can_receive(&self) -> usize {
        if self.loopback() {
            0
        } else if self.fifo() {
            FIFO_LEN.saturating_sub(self.rx.len())
        } else {
            usize::from(self.lsr & lsr::DR == 0)
        }
    }

    fn receive1(&mut self, b: u8) {
        if self.fifo() {
            if self.rx.len() < FIFO_LEN {
                self.rx.push_back(b);
            } else {
                self.lsr |= lsr::OE;
            }
        } else {
            if self.lsr & lsr::DR != 0 {
                self.lsr |= lsr::OE;
            }
            self.rbr = b;
        }
        self.lsr |= lsr::DR;
    }

    /// Bytes arriving from the line (callers respect [`Uart::can_receive`]; more overrun).
    pub fn receive(&mut self, bytes: &[u8], fx: &mut Effects) {
        if bytes.is_empty() {
            return;
        }
        for b in bytes {
            self.receive1(*b);
        }
        self.rearm_timeout();
        self.update_irq(fx);
    }

    /// Transmits the byte in THR: out to the line (returned) or, in loopback, into the receiver.
    fn xmit(&mut self, b: u8, fx: &mut Effects) -> Option<u8> {
        self.lsr |= lsr::THRE;
        if !self.thr_ipending {
            self.thr_ipending = true;
            self.update_irq(fx);
        }
        let out = if self.loopback() {
            self.receive(&[b], fx);
            None
        } else {
            Some(b)
        };
        self.lsr |= lsr::TEMT;
        out
    }

    /// A guest read of register `off` (0-7).
    pub fn read(&mut self, off: u8, fx: &mut Effects) -> u8 {
        match off & 7 {
            reg::DATA if self.lcr & lcr::DLAB != 0 => self.divider as u8,
            reg::DATA => {
                let v = if self.fifo() {
                    let v = self.rx.pop_front().unwrap_or(0);
                    if self.rx.is_empty() {
                        self.lsr &= !(lsr::DR | lsr::BI);
                    }
                    self.rearm_timeout();
                    v
                } else {
                    self.lsr &= !(lsr::DR | lsr::BI);
                    self.rbr
                };
                self.update_irq(fx);
                v
            }
            reg::IER if self.lcr & lcr::DLAB != 0 => (self.divider >> 8) as u8,
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let v = self.iir;
                if v & iir::ID == iir::THRI {
                    self.thr_ipending = false;
                    self.update_irq(fx);
                }
                v
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let v = self.lsr;
                if self.lsr & (lsr::BI | lsr::OE) != 0 {
                    self.lsr &= !(lsr::BI | lsr::OE);
                    self.update_irq(fx);
                }
                v
            }
            reg::MSR => {
                if self.loopback() {
                    // The modem outputs loop back to the inputs: OUT2->DCD, OUT1->RI, RTS->CTS,
                    // DTR->DSR.
                    ((self.mcr & 0x0c) << 4) | ((self.mcr & 0x02) << 3) | ((self.mcr & 0x01) << 5)
                } else {
                    let v = self.msr;
                    if self.msr & msr::ANY_DELTA != 0 {
                        self.msr &= 0xf0;
                        self.update_irq(fx);
                    }
                    v
                }
            }
            _ => self.scr,
        }
    }

    /// A guest write of register `off`; returns the byte to send to the line, if any.
    pub fn write(&mut self, off: u8, val: u8, fx: &mut Effects) -> Option<u8> {
        match off & 7 {
            reg::DATA if self.lcr & lcr::DLAB != 0 => {
                self.divider = (self.divider & 0xff00) | u16::from(val);
                None
            }
            reg::DATA => {
                self.thr_ipending = false;
                self.lsr &= !(lsr::THRE | lsr::TEMT);
                self.update_irq(fx);
                self.xmit(val, fx)
            }
            reg::IER if self.lcr & lcr::DLAB != 0 => {
                self.divider = (self.divider & 0x00ff) | u16::from(val) << 8;
                None
            }
            reg::IER => {
                let changed = (self.ier ^ val) & 0x0f;
                self.ier = val & 0x0f;
                // Enabling THRI while THR is empty raises the interrupt even if reading IIR had
                // cleared it (not in the datasheet; Windows and Linux's THRE test rely on it).
                if changed & ier::THRI != 0 {
                    self.thr_ipending = self.ier & ier::THRI != 0 && self.lsr & lsr::THRE != 0;
                }
                if changed != 0 {
                    self.update_irq(fx);
                }
                None
            }
            reg::IIR_FCR => {
                let mut val = val;
                if (val ^ self.fcr) & fcr::FE != 0 {
                    val |= fcr::XFR | fcr::RFR;
                }
                if val & fcr::RFR != 0 {
                    self.lsr &= !(lsr::DR | lsr::BI);
                    self.timeout_ipending = false;
                    self.rx.clear();
                }
                if val & fcr::XFR != 0 {
                    self.lsr |= lsr::THRE;
                    self.thr_ipending = true;
                }
                self.fcr = val & fcr::STICKY;
                if self.fcr & fcr::FE != 0 {
                    self.iir |= iir::FE;
                    self.rx_itl = match self.fcr & 0xc0 {
                        0x00 => 1,
                        0x40 => 4,
                        0x80 => 8,
                        _ => 14,
                    };
                } else {
                    self.iir &= !iir::FE;
                }
                self.update_irq(fx);
                None
            }
            reg::LCR => {
                self.lcr = val;
                None
            }
            reg::MCR => {
                self.mcr = val & mcr::MASK;
                None
            }
            reg::LSR | reg::MSR => None,
            _ => {
                self.scr = val;
                None
            }
        }
    }

    /// Register state for save/restore.
    pub fn save(&self, w: &mut Writer) {
        w.u8(self.irq);
        w.u16(self.divider);
        for b in [self.rbr, self.ier, self.iir, self.lcr, self.mcr, self.lsr, self.msr, self.scr, self.fcr] {
            w.u8(b);
        }
        w.bytes(&self.rx.iter().copied().collect::<Vec<_>>());
        w.u8(self.rx_itl as u8);
        w.u8(u8::from(self.thr_ipending) | u8::from(self.timeout_ipending) << 1 | u8::from(self.level) << 2);
    }

    /// Restores [`Uart::save`] output.
    pub fn load(&mut self, r: &mut Reader<'_>) -> Result<(), StateError> {
        let irq = r.u8()?;
        if irq != self.irq {
            return Err(StateError::Mismatch(format!("UART on IRQ {irq} in the blob, IRQ {} here", self.irq)));
        }
        let divider = r.u16()?;
        let mut regs = [0u8; 9];
        for b in regs.iter_mut() {
            *b = r.u8()?;
        }
        let rx = r.bytes()?;
        if rx.len() > FIFO_LEN {
            return Err(StateError::Mismatch(format!("UART receive FIFO of {} bytes", rx.len())));
        }
        let itl = usize::from(r.u8()?);
        if ![1, 4, 8, 14].contains(&itl) {
            return Err(StateError::Mismatch(format!("UART FIFO trigger level {itl}")));
        }
        let flags = r.u8()?;
        let [rbr, ier_, iir_, lcr_, mcr_, lsr_, msr_, scr, fcr_] = regs;
        self.divider = divider;
        self.rbr = rbr;
        self.ier = ier_ & 0x0f;
        self.iir = iir_;
        self.lcr = lcr_;
        self.mcr = mcr_ & mcr::MASK;
        self.lsr = lsr_;
        self.msr = msr_;
        self.scr = scr;
        self.fcr = fcr_ & fcr::STICKY;
        self.rx = rx.iter().copied().collect();
        self.rx_itl = itl;
        self.thr_ipending = flags & 1 != 0;
        self.timeout_ipending = flags & 2 != 0;
        self.level = flags & 4 != 0;
        Ok(())
    }
}

/// A serial port that cannot be created.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SerialError {
    /// Only COM1-COM4 exist.
    #[error("serial port index {0} is out of range (COM1-COM4: 0-3)")]
    Index(usize),
}

/// One COM port: the UART, its backend, and the input queue its reader thread fills.
pub struct Serial {
    name: String,
    index: usize,
    base: u16,
    uart: Uart,
    backend: CharBackend,
    input: Arc<InputQueue>,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serial({}, {:#x}, {:?})", self.name, self.base, self.backend)
    }
}

impl Serial {
    /// COM`index+1` (0 = COM1 at 0x3f8, IRQ 4) on `backend`.
    pub fn com(index: usize, backend: CharBackend) -> Result<Self, SerialError> {
        let (base, irq) = *COM_PORTS.get(index).ok_or(SerialError::Index(index))?;
        Ok(Self {
            name: format!("COM{} 16550A UART ({}, IRQ {irq})", index + 1, backend.id()),
            index,
            base,
            uart: Uart::new(irq),
            backend,
            input: Arc::new(InputQueue::default()),
        })
    }

    /// Port index (0 = COM1); `query-chardev` reports its backend as `serial<index>`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// First port.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// The register model.
    pub fn uart(&self) -> &Uart {
        &self.uart
    }

    /// The backend.
    pub fn backend(&self) -> &CharBackend {
        &self.backend
    }

    /// The `query-chardev` entry of its backend.
    pub fn chardev_info(&self) -> ChardevInfo {
        self.backend.info()
    }

    /// The queue the backend's reader fills (tests may push into it directly).
    pub fn input_queue(&self) -> Arc<InputQueue> {
        self.input.clone()
    }

    /// Moves queued input into the receiver, as far as it has room; interrupt changes go to
    /// `fx`. Called on the device-model thread when the reader signals input and whenever the
    /// guest makes room.
    pub fn pull_input(&mut self, fx: &mut Effects) {
        let room = self.uart.can_receive();
        if room == 0 || self.input.pending() == 0 {
            return;
        }
        let bytes = self.input.take(room);
        self.uart.receive(&bytes, fx);
    }

    fn read_byte(&mut self, off: u8, fx: &mut Effects) -> u8 {
        let v = self.uart.read(off, fx);
        if off == reg::DATA && self.input.pending() > 0 {
            self.pull_input(fx);
        }
        v
    }

    fn write_byte(&mut self, off: u8, val: u8, fx: &mut Effects) {
        if let Some(b) = self.uart.write(off, val, fx) {
            self.backend.write_byte(b);
        }
        if off == reg::MCR || off == reg::IIR_FCR {
            // Leaving loopback or resetting the FIFO may make room for waiting input.
            self.pull_input(fx);
        }
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        self.input.close();
    }
}

impl PortDevice for Serial {
    fn name(&self) -> &str {
        &self.name
    }

    fn ports(&self) -> Vec<(u16, u16)> {
        vec![(self.base, UART_PORTS)]
    }

    fn read(&mut self, port: u16, size: u8, fx: &mut Effects, _mem: &mut dyn GuestMemory) -> u64 {
        let off = port.wrapping_sub(self.base);
        (0..u16::from(size.min(8)))
            .map(|i| u64::from(self.read_byte((off.wrapping_add(i) & 7) as u8, fx)) << (8 * i))
            .fold(0, |a, b| a | b)
    }

    fn write(&mut self, port: u16, size: u8, val: u64, fx: &mut Effects, _mem: &mut dyn GuestMemory) {
        let off = port.wrapping_sub(self.base);
        for i in 0..u16::from(size.min(8)) {
            self.write_byte((off.wrapping_add(i) & 7) as u8, (val >> (8 * i)) as u8, fx);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.uart.save(&mut w);
        w.buf
    }

    fn load_state(&mut self, data: &[u8]) -> Result<(), StateError> {
        let mut r = Reader::new(data);
        let mut u = Uart::new(self.uart.irq());
        u.load(&mut r)?;
        if !r.done() {
            return Err(StateError::Mismatch(format!("{}: trailing state", self.name)));
        }
        self.uart = u;
        Ok(())
    }
}

/// Starts the reader threads of every serial port whose backend has input (pty, stdio): each
/// queues what it reads and runs [`Serial::pull_input`] on the device-model thread through
/// `handle`. Returns how many were started.
pub fn start_input(machine: &mut Machine, handle: &LoopHandle<Machine>) -> std::io::Result<usize> {
    let mut n = 0;
    for s in machine.port_devices_mut::<Serial>() {
        let Some(input) = s.backend.take_input() else { continue };
        let index = s.index;
        let h = handle.clone();
        let kick = Box::new(move || {
            h.call(move |m, e| {
                if let Some(s) = m.port_devices_mut::<Serial>().find(|s| s.index == index) {
                    s.pull_input(e.effects_mut());
                }
            })
            .is_ok()
        });
        drop(chardev::spawn_reader(s.backend.id(), input, s.input.clone(), kick)?);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NoMemory;

    fn irq(level: bool) -> Effect {
        Effect::IsaIrq { irq: 4, level }
    }

    #[test]
    fn reset_state_matches_qemu() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        assert_eq!(u.read(reg::LSR, &mut fx), lsr::THRE | lsr::TEMT);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::NO_INT);
        assert_eq!(u.read(reg::MCR, &mut fx), mcr::OUT2);
        assert_eq!(u.read(reg::MSR, &mut fx), 0xb0, "DCD | DSR | CTS");
        assert_eq!(u.read(reg::IER, &mut fx), 0);
        assert_eq!(u.divider(), 12, "9600 baud");
        assert!(fx.is_empty());
    }

    #[test]
    fn dlab_switches_to_the_divisor_latch() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        u.write(reg::LCR, 0x83, &mut fx);
        assert_eq!(u.write(reg::DATA, 0x01, &mut fx), None, "DLL, not THR");
        u.write(reg::IER, 0x02, &mut fx);
        assert_eq!(u.divider(), 0x0201);
        assert_eq!(u.read(reg::DATA, &mut fx), 0x01);
        assert_eq!(u.read(reg::IER, &mut fx), 0x02);
        u.write(reg::LCR, 0x03, &mut fx);
        assert_eq!(u.read(reg::IER, &mut fx), 0, "IER untouched by DLM writes");
        assert_eq!(u.read(reg::LCR, &mut fx), 0x03);
        assert_eq!(u.write(reg::DATA, b'A', &mut fx), Some(b'A'));
        assert!(fx.is_empty(), "no interrupt enabled");
    }

    #[test]
    fn ier_keeps_four_bits_and_scratch_round_trips() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        u.write(reg::IER, 0xff, &mut fx);
        assert_eq!(u.read(reg::IER, &mut fx), 0x0f);
        u.write(reg::SCR, 0x5a, &mut fx);
        assert_eq!(u.read(reg::SCR, &mut fx), 0x5a);
        u.write(reg::MCR, 0xff, &mut fx);
        assert_eq!(u.read(reg::MCR, &mut fx), 0x1f);
        u.write(reg::LSR, 0, &mut fx);
        assert_eq!(u.read(reg::LSR, &mut fx) & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT, "LSR read-only");
    }

    #[test]
    fn thre_interrupt_edges_per_byte() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        u.write(reg::IER, ier::THRI, &mut fx);
        assert_eq!(fx, vec![irq(true)], "enabling THRI with THR empty interrupts at once");
        assert_eq!(u.read(reg::IIR_FCR, &mut fx) & 0x0f, iir::THRI);
        assert_eq!(fx, vec![irq(true), irq(false)], "reading IIR acknowledges THRE");
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::NO_INT);
        fx.clear();
        assert_eq!(u.write(reg::DATA, b'x', &mut fx), Some(b'x'));
        assert_eq!(fx, vec![irq(true)], "the byte leaves at once; THRE raises the line");
        fx.clear();
        // With the line still high a new byte lowers and raises it: a fresh edge.
        u.write(reg::DATA, b'y', &mut fx);
        assert_eq!(fx, vec![irq(false), irq(true)]);
        let l = u.read(reg::LSR, &mut fx);
        assert_eq!(l & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT, "LSR THRE and TEMT after a write");
        fx.clear();
        u.write(reg::IER, 0, &mut fx);
        assert_eq!(fx, vec![irq(false)]);
        fx.clear();
        u.write(reg::IER, 0, &mut fx);
        assert!(fx.is_empty(), "only level changes are reported");
    }

    #[test]
    fn receive_without_fifo_and_overrun() {
        let mut u = Uart::new(3);
        let mut fx = Vec::new();
        u.write(reg::IER, ier::RDI | ier::RLSI, &mut fx);
        assert!(fx.is_empty());
        assert_eq!(u.can_receive(), 1);
        u.receive(b"a", &mut fx);
        assert_eq!(fx, vec![Effect::IsaIrq { irq: 3, level: true }]);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::RDI);
        assert_eq!(u.can_receive(), 0);
        u.receive(b"b", &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::RLSI, "line status outranks data");
        let l = u.read(reg::LSR, &mut fx);
        assert_eq!(l & (lsr::OE | lsr::DR), lsr::OE | lsr::DR);
        assert_eq!(u.read(reg::LSR, &mut fx) & lsr::OE, 0, "reading LSR clears OE");
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::RDI);
        assert_eq!(u.read(reg::DATA, &mut fx), b'b');
        assert_eq!(u.read(reg::LSR, &mut fx) & lsr::DR, 0);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::NO_INT);
        assert_eq!(fx.last(), Some(&Effect::IsaIrq { irq: 3, level: false }));
    }

    #[test]
    fn fifo_trigger_level_timeout_and_iir_bits() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        // Linux's 16550A set-up: FIFO on, trigger at 8, both FIFOs reset.
        u.write(reg::IIR_FCR, 0x87, &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::FE | iir::NO_INT, "IIR reports the FIFOs (16550A)");
        u.write(reg::IER, ier::RDI, &mut fx);
        assert_eq!(u.can_receive(), FIFO_LEN);
        u.receive(b"abc", &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::FE | iir::CTI, "below the trigger: character timeout");
        u.receive(b"defgh", &mut fx);
        assert_eq!(u.rx_len(), 8);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::FE | iir::RDI, "at the trigger level");
        let mut got = Vec::new();
        while u.read(reg::LSR, &mut fx) & lsr::DR != 0 {
            got.push(u.read(reg::DATA, &mut fx));
        }
        assert_eq!(got, b"abcdefgh");
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::FE | iir::NO_INT);
        assert!(!u.level());
        // A full FIFO takes no more; forcing more overruns without overwriting.
        u.receive(&[b'x'; FIFO_LEN], &mut fx);
        assert_eq!(u.can_receive(), 0);
        u.receive(b"z", &mut fx);
        assert_ne!(u.read(reg::LSR, &mut fx) & lsr::OE, 0);
        assert_eq!(u.rx_len(), FIFO_LEN);
        // Receive-FIFO reset empties it.
        u.write(reg::IIR_FCR, 0x83, &mut fx);
        assert_eq!(u.rx_len(), 0);
        assert_eq!(u.read(reg::LSR, &mut fx) & lsr::DR, 0);
        // Disabling the FIFO clears the IIR bits.
        u.write(reg::IIR_FCR, 0, &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx) & iir::FE, 0);
    }

    #[test]
    fn iir_priorities() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        u.write(reg::IER, 0x0f, &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::THRI, "only THRE pending");
        u.write(reg::IER, 0x0f, &mut fx);
        u.receive(b"a", &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::RDI, "data outranks THRE");
        u.receive(b"b", &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::RLSI, "line status outranks data");
        u.read(reg::LSR, &mut fx);
        u.read(reg::DATA, &mut fx);
        // THRE was acknowledged by the first IIR read; re-enabling THRI re-arms it.
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::NO_INT);
        u.write(reg::IER, 0x0d, &mut fx);
        u.write(reg::IER, 0x0f, &mut fx);
        assert_eq!(u.read(reg::IIR_FCR, &mut fx), iir::THRI);
    }

    #[test]
    fn loopback_echoes_and_maps_modem_lines() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        // Linux's autoconfig check: MCR = LOOP | OUT2 | RTS reads MSR 0x90.
        u.write(reg::MCR, mcr::LOOP | 0x0a, &mut fx);
        assert_eq!(u.read(reg::MSR, &mut fx) & 0xf0, 0x90);
        u.write(reg::MCR, mcr::LOOP | 0x05, &mut fx);
        assert_eq!(u.read(reg::MSR, &mut fx) & 0xf0, 0x60, "OUT1 -> RI, DTR -> DSR");
        assert_eq!(u.can_receive(), 0, "line input is disconnected in loopback");
        assert_eq!(u.write(reg::DATA, b'q', &mut fx), None, "not sent to the line");
        assert_ne!(u.read(reg::LSR, &mut fx) & lsr::DR, 0);
        assert_eq!(u.read(reg::DATA, &mut fx), b'q');
        u.write(reg::MCR, 0x0b, &mut fx);
        assert_eq!(u.read(reg::MSR, &mut fx), 0xb0, "back to the fixed modem status");
    }

    #[test]
    fn state_round_trips() {
        let mut u = Uart::new(4);
        let mut fx = Vec::new();
        u.write(reg::IIR_FCR, 0xc7, &mut fx);
        u.write(reg::IER, 0x03, &mut fx);
        u.write(reg::SCR, 0x77, &mut fx);
        u.receive(b"xyz", &mut fx);
        let mut w = Writer::default();
        u.save(&mut w);
        let mut v = Uart::new(4);
        v.load(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(u, v);
        let mut bad = Uart::new(3);
        assert!(bad.load(&mut Reader::new(&w.buf)).is_err(), "another IRQ");
        assert!(Uart::new(4).load(&mut Reader::new(&w.buf[..5])).is_err(), "truncated");
    }

    #[test]
    fn serial_port_device_sends_bytes_to_its_backend() {
        let p = std::env::temp_dir().join(format!("q35dm-serial-unit-{}", std::process::id()));
        let b = CharBackend::file("serial0", &p, false).unwrap();
        let mut s = Serial::com(0, b).unwrap();
        assert_eq!(s.ports(), vec![(0x3f8, 8)]);
        assert!(s.name().contains("COM1"));
        let mut fx = Vec::new();
        for c in b"hi\n" {
            s.write(0x3f8, 1, u64::from(*c), &mut fx, &mut NoMemory);
        }
        // A word write covers THR and IER (QEMU splits wide accesses into bytes).
        s.write(0x3f8, 2, u64::from(b'!') | 0x0200, &mut fx, &mut NoMemory);
        assert_eq!(s.read(0x3f9, 1, &mut fx, &mut NoMemory), 0x02);
        assert_eq!(fx, vec![Effect::IsaIrq { irq: 4, level: true }]);
        assert!(s.backend().flush(std::time::Duration::from_secs(5)));
        assert_eq!(std::fs::read(&p).unwrap(), b"hi\n!");
        let _ = std::fs::remove_file(&p);
        assert!(Serial::com(4, CharBackend::null("x", "null")).is_err());
        assert_eq!(Serial::com(1, CharBackend::null("x", "null")).unwrap().ports(), vec![(0x2f8, 8)]);
    }

    #[test]
    fn serial_pulls_input_as_the_guest_makes_room() {
        let mut s = Serial::com(0, CharBackend::null("serial0", "null")).unwrap();
        let mut fx = Vec::new();
        s.write(0x3f9, 1, u64::from(ier::RDI), &mut fx, &mut NoMemory);
        let q = s.input_queue();
        assert!(q.push(b"hello"));
        s.pull_input(&mut fx);
        assert_eq!(fx, vec![irq(true)], "data arrives, the line rises");
        assert_eq!(s.uart().rx_len(), 1, "no FIFO: one byte at a time");
        let mut got = Vec::new();
        while s.read(0x3fd, 1, &mut fx, &mut NoMemory) & u64::from(lsr::DR) != 0 {
            got.push(s.read(0x3f8, 1, &mut fx, &mut NoMemory) as u8);
        }
        assert_eq!(got, b"hello", "each read pulls the next byte, nothing overruns");
        assert_eq!(fx.last(), Some(&irq(false)));
        assert_eq!(q.pending(), 0);
        // With the FIFO on, up to 16 bytes come at once.
        s.write(0x3fa, 1, 0x07, &mut fx, &mut NoMemory);
        assert!(q.push(&[b'x'; 20]));
        s.pull_input(&mut fx);
        assert_eq!(s.uart().rx_len(), FIFO_LEN);
        assert_eq!(q.pending(), 4);
    }

    #[test]
    fn serial_state_via_port_device_trait() {
        let mut a = Serial::com(0, CharBackend::null("serial0", "null")).unwrap();
        let mut fx = Vec::new();
        a.write(0x3fb, 1, 0x03, &mut fx, &mut NoMemory);
        a.write(0x3f9, 1, 0x01, &mut fx, &mut NoMemory);
        let blob = a.save_state();
        let mut b = Serial::com(0, CharBackend::null("serial0", "null")).unwrap();
        b.load_state(&blob).unwrap();
        assert_eq!(b.uart(), a.uart());
        let mut c = Serial::com(1, CharBackend::null("serial1", "null")).unwrap();
        assert!(c.load_state(&blob).is_err(), "COM2 is on IRQ 3");
        let mut long = blob.clone();
        long.push(0);
        assert!(b.load_state(&long).is_err());
    }
}
