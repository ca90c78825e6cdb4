//! MSI, MSI-X and INTx of a PCI function on the Q35 board reach the hypervisor as
//! inject_msi / set_pci_intx_level calls, through the real engine and the simulated hypervisor.

#[path = "support/board.rs"]
mod board;

use board::Board;
use q35dm::pci::bar::BarSpec;
use q35dm::pci::config::{HeaderIds, IntxPin};
use q35dm::pci::device::{FunctionSpec, GenericFunction};
use q35dm::pci::msi::MsiConfig;
use q35dm::pci::msix::MsixConfig;
use q35dm::pci::topology::Outputs;
use q35dm::sim::IrqEvent;

fn board() -> Board {
    Board::with(128, |m| {
        let ids = HeaderIds { vendor_id: 0x1b36, device_id: 0x99, class_code: 0xff_00_00, ..Default::default() };
        let spec = FunctionSpec::new("irqdev", ids)
            .express()
            .bar(BarSpec::mem32(0, 0x1000, false))
            .intx(IntxPin::A)
            .msi(MsiConfig { vectors: 1, addr64: true, per_vector_mask: true }, None)
            .msix(MsixConfig::exclusive_bar(2, 0), None);
        let f = GenericFunction::new(spec).unwrap();
        let mut fx = Vec::new();
        m.add_device("pcie.0", Some(5 << 3), "irqdev", Box::new(f), false, &mut fx).unwrap();
    })
}

/// Runs `f` on the function at 00:05.0 and applies its effects like a device would.
fn on_dev(b: &Board, f: impl FnOnce(&mut GenericFunction) -> q35dm::pci::device::PciEffects + Send + 'static) {
    b.handle
        .call(move |m, e| {
            let n = m.pci.find(q35dm::pci::Sbdf::new(0, 0, 5, 0)).unwrap();
            let fx = f(m.pci.node_mut(n).unwrap().dev.function_mut());
            let mut out = Outputs::default();
            if m.pci.handle(n, fx, &mut out) {
                m.pci.sync(&mut out);
            }
            m.apply(out, e.effects_mut());
        })
        .unwrap();
}

fn cap(b: &Board, id: u8) -> u32 {
    let mut p = b.cfg_read(0x28, 0x34, 1);
    while p != 0 {
        if b.cfg_read(0x28, p, 1) == u32::from(id) {
            return p;
        }
        p = b.cfg_read(0x28, p + 1, 1);
    }
    panic!("no capability {id:#x}");
}

#[test]
fn intx_level_follows_the_function() {
    let b = board();
    on_dev(&b, |f| f.set_intx(true));
    on_dev(&b, |f| f.set_intx(false));
    assert_eq!(
        b.sim.irq_events(),
        vec![IrqEvent::PciIntx { device: 5, intx: 0, level: 1 }, IrqEvent::PciIntx { device: 5, intx: 0, level: 0 }]
    );
    // INTx Disable in Command masks the line.
    b.cfg_write(0x28, 0x04, 2, 0x400);
    on_dev(&b, |f| f.set_intx(true));
    assert_eq!(b.sim.irq_events().len(), 2);
}

#[test]
fn msi_is_injected_and_masking_defers_it() {
    let b = board();
    let msi = cap(&b, 0x05);
    b.cfg_write(0x28, msi + 4, 4, 0xfee0_0000);
    b.cfg_write(0x28, msi + 8, 4, 0);
    b.cfg_write(0x28, msi + 12, 2, 0x4041);
    b.cfg_write(0x28, msi + 2, 2, 1); // enable
    on_dev(&b, |f| f.signal_msi(0));
    assert!(b.sim.irq_events().is_empty(), "bus mastering is off: no MSI");
    b.cfg_write(0x28, 0x04, 2, 0x4); // bus master
    on_dev(&b, |f| f.signal_msi(0));
    assert_eq!(b.sim.irq_events(), vec![IrqEvent::Msi { addr: 0xfee0_0000, data: 0x4041 }]);
    // Mask vector 0, signal: pending; unmask: delivered by the config write itself.
    b.cfg_write(0x28, msi + 16, 4, 1);
    on_dev(&b, |f| f.signal_msi(0));
    assert_eq!(b.sim.irq_events().len(), 1);
    b.cfg_write(0x28, msi + 16, 4, 0);
    assert_eq!(b.sim.irq_events().len(), 2);
}

#[test]
fn msix_table_lives_in_its_bar_and_delivers() {
    let b = board();
    let msix = cap(&b, 0x11);
    b.cfg_write(0x28, 0x10, 4, 0xfe00_0000);
    b.cfg_write(0x28, 0x04, 2, 0x6); // memory + bus master
    let v = b.vcpu();
    // Entry 1: address, data, unmask.
    v.mmio_write(0xfe00_0010, 4, 0xfee0_1000).unwrap();
    v.mmio_write(0xfe00_0014, 4, 0).unwrap();
    v.mmio_write(0xfe00_0018, 4, 0x4055).unwrap();
    v.mmio_write(0xfe00_001c, 4, 0).unwrap();
    assert_eq!(v.mmio_read(0xfe00_0018, 4).unwrap(), 0x4055);
    b.cfg_write(0x28, msix + 2, 2, 0x8000); // MSI-X enable
    on_dev(&b, |f| f.signal_msi(1));
    assert_eq!(b.sim.irq_events(), vec![IrqEvent::Msi { addr: 0xfee0_1000, data: 0x4055 }]);
    // Function mask: pending bit in the PBA, delivered on unmask.
    b.cfg_write(0x28, msix + 2, 2, 0xc000);
    on_dev(&b, |f| f.signal_msi(1));
    let pba_off = b.cfg_read(0x28, msix + 8, 4) & !7;
    assert_eq!(v.mmio_read(0xfe00_0000 + u64::from(pba_off), 4).unwrap() & 2, 2);
    b.cfg_write(0x28, msix + 2, 2, 0x8000);
    assert_eq!(b.sim.irq_events().len(), 2);
}
