//! Native PCIe hot-plug and AER as a Linux guest drives them (pciehp and the AER service
//! driver), through the whole ioreq path on the simulated hypervisor: the test plays the guest
//! with type-1 config cycles, and watches the MSIs and INTx levels the device model raises.

#[path = "support/board.rs"]
mod board;

use std::sync::Arc;

use board::Board;
use q35dm::devices::DeviceRequest;
use q35dm::machine::hotplug::Removal;
use q35dm::sim::IrqEvent;

// Bus numbers the "firmware" assigns: rp1 00:1c.0 -> bus 1 (up1) -> bus 2 (dp1 at 02:00.0) ->
// bus 3 (the slot of dp1); rp2 00:1d.0 -> bus 4.
const RP1: u32 = 0xe0;
const UP1: u32 = 0x100;
const DP1: u32 = 0x200;
const EP: u32 = 0x300;
const RP2: u32 = 0xe8;
const EP2: u32 = 0x400;

// PCIe capability offsets (relative), slot bits (Linux pci_regs.h).
const SLTCTL: u32 = 0x18;
const SLTSTA: u32 = 0x1a;
const LNKSTA: u32 = 0x12;
const ABPE: u32 = 0x1;
const PDCE: u32 = 0x8;
const CCIE: u32 = 0x10;
const HPIE: u32 = 0x20;
const PIC_ON: u32 = 0x100;
const PIC_BLINK: u32 = 0x200;
const PIC_OFF: u32 = 0x300;
const AIC_OFF: u32 = 0xc0;
const PCC: u32 = 0x400;
const EIC: u32 = 0x800;
const DLLSCE: u32 = 0x1000;
const ABP: u32 = 0x1;
const MRLSC: u32 = 0x4;
const PDC: u32 = 0x8;
const CC: u32 = 0x10;
const PDS: u32 = 0x40;
const EIS: u32 = 0x80;
const DLLSC: u32 = 0x100;
const DLLLA: u32 = 0x2000;

fn board(extra_rp2: &str) -> Board {
    let reqs: Vec<String> = vec![
        "q35dm-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0".into(),
        "q35dm-upstream-port,id=up1,bus=rp1".into(),
        "q35dm-downstream-port,id=dp1,bus=up1,chassis=1,slot=2".into(),
        format!("q35dm-root-port,id=rp2,chassis=1,slot=3,bus=pcie.0,addr=1d.0{extra_rp2}"),
    ];
    let b = Board::with(256, move |m| {
        for r in &reqs {
            let mut fx = Vec::new();
            m.add_request(&DeviceRequest::parse(r).unwrap(), false, &mut fx).unwrap();
        }
    });
    // Firmware: bus numbers (primary, secondary, subordinate), windows, command.
    b.cfg_write(RP1, 0x18, 4, 0x00_03_01_00);
    b.cfg_write(UP1, 0x18, 4, 0x00_03_02_01);
    b.cfg_write(DP1, 0x18, 4, 0x00_03_03_02);
    b.cfg_write(RP2, 0x18, 4, 0x00_04_04_00);
    for (bdf, base) in [(RP1, 0xfe00u32), (UP1, 0xfe00), (DP1, 0xfe00), (RP2, 0xfd00)] {
        b.cfg_write(bdf, 0x20, 2, base);
        b.cfg_write(bdf, 0x22, 2, base + 0x10);
        b.cfg_write(bdf, 0x04, 2, 0x106); // memory, bus master, SERR
        b.cfg_write(bdf, 0x3e, 2, 0x2); // Bridge Control SERR
    }
    b
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

/// The guest programs the port's MSI (data = `data`) like portdrv does.
fn enable_msi(b: &Board, bdf: u32, data: u32) {
    let msi = cap(b, bdf, 0x05);
    b.cfg_write(bdf, msi + 4, 4, 0xfee0_0000);
    b.cfg_write(bdf, msi + 8, 4, 0);
    b.cfg_write(bdf, msi + 12, 2, data);
    b.cfg_write(bdf, msi + 2, 2, 1);
}

fn msis(b: &Board, data: u32) -> usize {
    b.sim.irq_events().iter().filter(|e| matches!(e, IrqEvent::Msi { data: d, .. } if *d == data)).count()
}

/// pciehp's pcie_enable_notification: events enabled, CC interrupt, HPIE; then W1C everything.
/// An empty slot with a power controller is left powered off (PCC), as pciehp does.
fn pciehp_init(b: &Board, bdf: u32) -> u32 {
    let exp = cap(b, bdf, 0x10);
    let sta = b.cfg_read(bdf, exp + SLTSTA, 2);
    b.cfg_write(bdf, exp + SLTSTA, 2, sta);
    let pcc = if b.cfg_read(bdf, exp + 0x14, 4) & 0x2 != 0 { PCC } else { 0 };
    b.cfg_write(bdf, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | pcc);
    // The write completes a command: CC with an interrupt; the driver acknowledges it.
    assert_ne!(b.cfg_read(bdf, exp + SLTSTA, 2) & CC, 0, "Command Completed after a Slot Control write");
    b.cfg_write(bdf, exp + SLTSTA, 2, CC);
    exp
}

fn hot_add(b: &Board, bus: &str, id: &str) {
    let req = DeviceRequest::parse(&format!("q35dm-test-endpoint,id={id},bus={bus}")).unwrap();
    b.handle.call(move |m, e| m.add_request(&req, true, e.effects_mut()).map(|_| ())).unwrap().unwrap();
}

fn del(b: &Board, id: &str, surprise: bool) -> Removal {
    let id = id.to_string();
    b.handle.call(move |m, e| m.device_del(&id, surprise, e.effects_mut())).unwrap().unwrap()
}

fn abp(b: &Board, chassis: u8, slot: u16) {
    b.handle
        .call(move |m, e| m.press_attention_button(Some(chassis), slot, e.effects_mut()).map(|_| ()))
        .unwrap()
        .unwrap();
}

#[test]
fn hot_add_then_attention_button_removal_like_pciehp() {
    let b = board("");
    enable_msi(&b, DP1, 0x4041);
    let exp = pciehp_init(&b, DP1);
    let base = msis(&b, 0x4041);
    assert_eq!(b.cfg_read(DP1, exp + SLTSTA, 2) & PDS, 0, "empty slot");
    // Operator: device_add into the slot.
    hot_add(&b, "dp1", "ep1");
    assert_eq!(msis(&b, 0x4041), base + 1, "one MSI for the insertion (0->1 of PDC/DLLSC)");
    let sta = b.cfg_read(DP1, exp + SLTSTA, 2);
    assert_eq!(sta & (PDS | PDC | DLLSC), PDS | PDC | DLLSC, "presence + link change: {sta:#x}");
    assert_ne!(b.cfg_read(DP1, exp + LNKSTA, 2) & DLLLA, 0, "Data Link Layer Link Active");
    b.cfg_write(DP1, exp + SLTSTA, 2, sta);
    assert_eq!(b.cfg_read(DP1, exp + SLTSTA, 2) & (PDC | DLLSC), 0, "W1C");
    // pciehp powers the indicator on; the card is enumerated behind the port.
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_ON);
    b.cfg_write(DP1, exp + SLTSTA, 2, CC);
    assert_eq!(b.cfg_read(EP, 0, 4), 0x0005_1b36, "endpoint visible at 03:00.0");
    b.cfg_write(EP, 0x10, 4, 0xfe00_0004);
    b.cfg_write(EP, 0x14, 4, 0);
    b.cfg_write(EP, 0x04, 2, 0x2);
    assert_eq!(b.vcpu().mmio_read(0xfe00_0000, 4).unwrap(), 0x5450_3533, "BAR through three bridges");
    // Attention button: interrupt, ABP; the guest blinks the power indicator, then powers off.
    let before = msis(&b, 0x4041);
    abp(&b, 1, 2);
    assert_eq!(msis(&b, 0x4041), before + 1);
    assert_ne!(b.cfg_read(DP1, exp + SLTSTA, 2) & ABP, 0);
    b.cfg_write(DP1, exp + SLTSTA, 2, ABP);
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_BLINK);
    b.cfg_write(DP1, exp + SLTSTA, 2, CC);
    assert_eq!(b.cfg_read(EP, 0, 4), 0x0005_1b36, "still there while blinking (the 5 s window is the guest's)");
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF);
    // The guest released the slot; a button press is not a removal request, the card stays.
    assert_eq!(b.cfg_read(EP, 0, 4), 0x0005_1b36);
    let view = b.machine(|m| m.info_pcie_slots());
    assert!(view.contains("slot 2: card present") && view.contains("power indicator off"), "{view}");
}

#[test]
fn device_del_waits_for_the_guest_then_removes() {
    let b = board("");
    enable_msi(&b, DP1, 0x4042);
    let exp = pciehp_init(&b, DP1);
    hot_add(&b, "dp1", "ep1");
    let sta = b.cfg_read(DP1, exp + SLTSTA, 2);
    b.cfg_write(DP1, exp + SLTSTA, 2, sta);
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_ON);
    b.cfg_write(DP1, exp + SLTSTA, 2, CC);
    let before = msis(&b, 0x4042);
    assert_eq!(del(&b, "ep1", false), Removal::Requested);
    assert_eq!(msis(&b, 0x4042), before + 1, "device_del presses the button");
    assert_eq!(b.cfg_read(EP, 0, 4), 0x0005_1b36, "not gone until the guest releases it");
    let q = b.machine(|m| m.query_pci());
    assert!(q.to_string().contains("\"ep1\""));
    // Guest: ack, blink, then power indicator off = released -> the device goes.
    b.cfg_write(DP1, exp + SLTSTA, 2, ABP);
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_BLINK);
    b.cfg_write(DP1, exp + SLTSTA, 2, CC);
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF);
    assert_eq!(b.cfg_read(EP, 0, 4), 0xffff_ffff, "gone");
    let sta = b.cfg_read(DP1, exp + SLTSTA, 2);
    assert_eq!(sta & PDS, 0);
    assert_ne!(sta & PDC, 0, "presence change reported");
    assert_eq!(b.cfg_read(DP1, exp + LNKSTA, 2) & DLLLA, 0);
    let q = b.machine(|m| m.query_pci());
    assert!(!q.to_string().contains("\"ep1\""), "query-pci no longer lists it");
    // The id is free again and the slot can take a new card.
    hot_add(&b, "dp1", "ep1");
    assert_eq!(b.cfg_read(EP, 0, 4), 0x0005_1b36);
}

#[test]
fn surprise_removal_and_unplug_during_io() {
    let b = Arc::new(board(""));
    enable_msi(&b, DP1, 0x4043);
    let exp = pciehp_init(&b, DP1);
    hot_add(&b, "dp1", "ep1");
    b.cfg_write(EP, 0x10, 4, 0xfe00_0004);
    b.cfg_write(EP, 0x14, 4, 0);
    b.cfg_write(EP, 0x04, 2, 0x2);
    // vCPU 1 hammers the BAR while the device is ripped out: every access is answered.
    let b2 = b.clone();
    let t = std::thread::spawn(move || {
        let v = b2.sim.vcpu(1);
        let (mut hits, mut ones) = (0, 0);
        for _ in 0..3000 {
            match v.mmio_read(0xfe00_0000, 4).expect("every request answered") {
                0x5450_3533 => hits += 1,
                0xffff_ffff => ones += 1,
                other => panic!("garbage {other:#x}"),
            }
        }
        (hits, ones)
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(del(&b, "ep1", true), Removal::Removed);
    let (hits, ones) = t.join().unwrap();
    assert_eq!(hits + ones, 3000);
    assert!(ones > 0, "after removal the BAR is gone");
    let sta = b.cfg_read(DP1, exp + SLTSTA, 2);
    assert_eq!(sta & (PDS | PDC), PDC);
    assert!(b.sim.crashed().is_none());
}

#[test]
fn power_controller_really_powers_the_card() {
    let b = board(",power-controller=on");
    let exp = pciehp_init(&b, RP2);
    // With a power controller the slot starts off; insertion gives presence but no link.
    hot_add(&b, "rp2", "ep2");
    let sta = b.cfg_read(RP2, exp + SLTSTA, 2);
    assert_ne!(sta & PDS, 0);
    assert_eq!(b.cfg_read(RP2, exp + LNKSTA, 2) & DLLLA, 0, "no power, no link");
    assert_eq!(b.cfg_read(EP2, 0, 4), 0xffff_ffff, "unpowered card does not answer");
    b.cfg_write(RP2, exp + SLTSTA, 2, sta);
    // Guest powers it on (PCC = 0).
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_ON);
    assert_ne!(b.cfg_read(RP2, exp + LNKSTA, 2) & DLLLA, 0);
    assert_eq!(b.cfg_read(EP2, 0, 4), 0x0005_1b36);
    b.cfg_write(EP2, 0x3c, 1, 0x0b);
    // Power off: the function is reset and disappears; power on again: it is back, reset.
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | PCC);
    assert_eq!(b.cfg_read(EP2, 0, 4), 0xffff_ffff);
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_ON);
    assert_eq!(b.cfg_read(EP2, 0x3c, 1), 0, "power cycle reset the function");
    // Powering off an empty slot is harmless.
    assert_eq!(del(&b, "ep2", true), Removal::Removed);
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | PCC);
    assert!(b.sim.crashed().is_none());
}

#[test]
fn mrl_and_interlock() {
    let b = board(",mrl-sensor=on,power-controller=on");
    enable_msi(&b, RP2, 0x4044);
    let exp = pciehp_init(&b, RP2);
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | PCC | 0x4); // + MRLSCE
    b.cfg_write(RP2, exp + SLTSTA, 2, CC);
    let before = msis(&b, 0x4044);
    b.handle.call(|m, e| m.set_latch(Some(1), 3, true, e.effects_mut())).unwrap().unwrap();
    assert_ne!(b.cfg_read(RP2, exp + SLTSTA, 2) & MRLSC, 0);
    assert_eq!(msis(&b, 0x4044), before + 1, "MRL change interrupt");
    b.cfg_write(RP2, exp + SLTSTA, 2, MRLSC);
    b.handle.call(|m, e| m.set_latch(Some(1), 3, false, e.effects_mut())).unwrap().unwrap();
    assert_ne!(b.cfg_read(RP2, exp + SLTSTA, 2) & MRLSC, 0);
    // Electromechanical interlock: EIC toggles EIS.
    let eis = b.cfg_read(RP2, exp + SLTSTA, 2) & EIS;
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | PCC | EIC);
    assert_ne!(b.cfg_read(RP2, exp + SLTSTA, 2) & EIS, eis);
    b.cfg_write(RP2, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_OFF | PCC | EIC);
    assert_eq!(b.cfg_read(RP2, exp + SLTSTA, 2) & EIS, eis);
    let view = b.machine(|m| m.info_pcie_slots());
    assert!(view.contains("latch closed"), "{view}");
}

#[test]
fn slot_control_while_a_command_is_pending_and_refusals() {
    let b = board("");
    let exp = pciehp_init(&b, DP1);
    // Two commands without acknowledging CC in between: both execute, CC stays set.
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_BLINK);
    b.cfg_write(DP1, exp + SLTCTL, 2, ABPE | PDCE | CCIE | HPIE | DLLSCE | AIC_OFF | PIC_ON);
    assert_ne!(b.cfg_read(DP1, exp + SLTSTA, 2) & CC, 0);
    assert_eq!(b.cfg_read(DP1, exp + SLTCTL, 2) & 0x300, PIC_ON, "the second command took effect");
    // Operator errors are refused with clear messages.
    let e = b
        .handle
        .call(|m, e| {
            let r = DeviceRequest::parse("q35dm-test-endpoint,id=x,bus=up1").unwrap();
            m.add_request(&r, true, e.effects_mut()).map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("no hot-plug slot"), "{e}");
    hot_add(&b, "dp1", "a");
    let e = b
        .handle
        .call(|m, e| {
            let r = DeviceRequest::parse("q35dm-test-endpoint,id=b,bus=dp1").unwrap();
            m.add_request(&r, true, e.effects_mut()).map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("occupied"), "{e}");
    let e = b.handle.call(|m, e| m.device_del("nope", false, e.effects_mut())).unwrap().unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = b.handle.call(|m, e| m.device_del("rp1", false, e.effects_mut())).unwrap().unwrap_err();
    assert!(e.to_string().contains("not in a hot-plug slot"), "{e}");
}

fn aer_enable_path(b: &Board) {
    // What Linux does: DevCtl error reporting enables on every function, SERR in Command,
    // Bridge Control SERR on every bridge (done in board()), Root Error Command on the root port.
    for bdf in [RP1, UP1, DP1, EP] {
        let exp = cap(b, bdf, 0x10);
        let ctl = b.cfg_read(bdf, exp + 8, 2);
        b.cfg_write(bdf, exp + 8, 2, ctl | 0xf);
    }
    b.cfg_write(EP, 0x04, 2, 0x106);
    // Root Error Command = COR|NONFATAL|FATAL (AER at 0x100, +0x2c); needs ECAM.
    b.cfg_write(0, 0x60, 4, 0xb000_0001);
    b.vcpu().mmio_write(0xb000_0000 | (RP1 as u64) << 12 | 0x12c, 4, 7).unwrap();
}

fn ecam(b: &Board, bdf: u32, reg: u32) -> u32 {
    b.vcpu().mmio_read(0xb000_0000 | u64::from(bdf) << 12 | u64::from(reg), 4).unwrap() as u32
}

fn inject(b: &Board, args: &str) -> Result<String, String> {
    let a = args.to_string();
    b.handle
        .call(move |m, e| {
            let inj = q35dm::pcie::aer_parse::parse_aer_injection(&a).map_err(|e| e.to_string())?;
            let n = match &inj.target {
                q35dm::pcie::aer_parse::AerTarget::Id(id) => m.pci.find_by_id(id),
                q35dm::pcie::aer_parse::AerTarget::Sbdf(s) => m.pci.find(*s),
            }
            .ok_or("no such device")?;
            m.aer_inject(n, &inj.errors, e.effects_mut()).map_err(|e| e.to_string())
        })
        .unwrap()
}

#[test]
fn aer_errors_travel_through_the_switch_to_the_root_port() {
    let b = board("");
    enable_msi(&b, RP1, 0x4050);
    hot_add(&b, "dp1", "ep1");
    aer_enable_path(&b);
    let before = msis(&b, 0x4050);
    let out = inject(&b, "-c ep1 0x40").unwrap(); // BAD_TLP (correctable)
    assert_eq!(out, "OK id: ep1 root bus: 0000:00, bus: 3 devfn: 0.0\n");
    assert_eq!(ecam(&b, EP, 0x110) & 0x40, 0x40, "COR_STATUS at the endpoint");
    let rsta = ecam(&b, RP1, 0x130);
    assert_eq!(rsta & 1, 1, "ERR_COR received: {rsta:#x}");
    assert_eq!(ecam(&b, RP1, 0x134) & 0xffff, 0x0300, "Error Source ID = 03:00.0");
    assert_eq!(msis(&b, 0x4050), before + 1, "AER interrupt from the root port");
    // Linux's aer_irq writes back what it read; only then can the next class interrupt (the
    // interrupt follows the 0->1 edge of "an enabled class is pending", as in QEMU).
    b.vcpu().mmio_write(0xb000_0000 | (RP1 as u64) << 12 | 0x130, 4, u64::from(rsta)).unwrap();
    // Uncorrectable (POISON_TLP is non-fatal by default) with a TLP header.
    let out = inject(&b, "ep1 POISON_TLP 0x4a000001 0x0300000f 0xfe000000 0x0").unwrap();
    assert!(out.starts_with("OK id: ep1"), "{out}");
    assert_ne!(ecam(&b, EP, 0x104) & 0x1000, 0, "UNCOR_STATUS POISON_TLP");
    assert_eq!(ecam(&b, EP, 0x11c), 0x4a00_0001, "header log DW0 as given");
    let rsta = ecam(&b, RP1, 0x130);
    assert_ne!(rsta & 0x4, 0, "ERR_NONFATAL/FATAL received: {rsta:#x}");
    assert_ne!(rsta & 0x20, 0, "non-fatal message received");
    assert_eq!(ecam(&b, RP1, 0x134) >> 16, 0x0300);
    assert_eq!(msis(&b, 0x4050), before + 2);
    // The switch downstream port saw a system error on its secondary side.
    assert_ne!(b.cfg_read(DP1, 0x1e, 2) & 0x4000, 0, "Received System Error");
    // Linux's aer_irq clears Root Error Status by writing back what it read.
    b.vcpu().mmio_write(0xb000_0000 | (RP1 as u64) << 12 | 0x130, 4, u64::from(rsta)).unwrap();
    assert_eq!(ecam(&b, RP1, 0x130) & 0x7f, 0);
}

#[test]
fn aer_gating_and_refusals() {
    let b = board("");
    hot_add(&b, "dp1", "ep1");
    // Nothing enabled by the guest: status recorded, no message reaches the root port.
    inject(&b, "-c ep1 0x1").unwrap();
    b.cfg_write(0, 0x60, 4, 0xb000_0001);
    assert_eq!(ecam(&b, EP, 0x110) & 1, 1);
    assert_eq!(ecam(&b, RP1, 0x130) & 0x7f, 0, "no DevCtl enables: no ERR_COR");
    // Injection into a function without AER: a clear error.
    let e = inject(&b, "00:1f.0 0 0x1000 0 0 0 0").unwrap_err();
    assert!(e.contains("no AER capability"), "{e}");
    // Unknown names and bad syntax.
    assert!(inject(&b, "ep1 NO_SUCH_ERROR").is_err());
    assert!(inject(&b, "").is_err());
    // The original syntax: [[domain:]bus:]dev.fn is_correctable error_status hdr0..hdr3.
    aer_enable_path(&b);
    let out = inject(&b, "03:00.0 1 0x40 0 0 0 0").unwrap();
    assert!(out.contains("bus: 3 devfn: 0.0"), "{out}");
}

#[test]
fn aer_burst_is_bounded() {
    let b = board("");
    hot_add(&b, "dp1", "ep1");
    aer_enable_path(&b);
    let t = std::time::Instant::now();
    let n = b
        .handle
        .call(|m, e| {
            let ep = m.pci.find_by_id("ep1").unwrap();
            let errs = [q35dm::pcie::aer::AerErrorSpec::uncorrectable(0x1000).with_header([1, 2, 3, 4])];
            let mut ok = 0;
            for _ in 0..100_000 {
                if m.aer_inject(ep, &errs, e.effects_mut()).is_ok() {
                    ok += 1;
                }
                e.apply_effects();
            }
            ok
        })
        .unwrap();
    assert_eq!(n, 100_000);
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    // The root port raised one interrupt per new (0->1) condition, not 10^5.
    let msi = b.sim.irq_events().len();
    assert!(msi < 10, "{msi} interrupts for a burst");
    let logged = q35dm::logging::captured().iter().filter(|l| l.contains("AER") || l.contains("aer")).count();
    assert!(logged < 200, "{logged} log lines for 10^5 injections");
}
