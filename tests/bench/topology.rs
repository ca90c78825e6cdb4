//! Builds boards with many buses for the benchmarks.

#![allow(dead_code)]

use q35dm::device::IoHandler;
use q35dm::devices::DeviceRequest;
use q35dm::ioreq::Space;
use q35dm::machine::{Machine, MemLayout};
use q35dm::pci::Sbdf;

/// Device arguments for `buses` buses (1 = root only; otherwise root ports, each with a switch
/// of up to 8 downstream ports, until the count is reached).
pub fn device_args(buses: usize) -> Vec<String> {
    let mut v = Vec::new();
    let mut have = 1;
    let mut rp = 0;
    while have < buses {
        let (slot, func) = (1 + rp / 8, rp % 8);
        let mf = if func == 0 { ",multifunction=on" } else { "" };
        v.push(format!(
            "q35dm-root-port,id=rp{rp},chassis={},slot={},bus=pcie.0,addr={slot:x}.{func}{mf}",
            1 + rp / 200,
            rp + 1
        ));
        have += 1;
        if have < buses {
            v.push(format!("q35dm-upstream-port,id=up{rp},bus=rp{rp}"));
            have += 1;
            let mut d = 0;
            while have < buses && d < 8 {
                v.push(format!(
                    "q35dm-downstream-port,id=dp{rp}_{d},bus=up{rp},chassis={},slot={},addr={d}.0",
                    100 + rp / 200,
                    1000 + rp * 8 + d
                ));
                have += 1;
                d += 1;
            }
        }
        rp += 1;
    }
    v
}

/// Firmware-style depth-first bus numbering through config cycles. Returns the highest bus.
pub fn enumerate(m: &mut Machine) -> u8 {
    fn walk(m: &mut Machine, bus: u8, next: &mut u8) {
        for devfn in 0..=255u8 {
            let s = Sbdf::new(0, bus, devfn >> 3, devfn & 7);
            let mut fx = Vec::new();
            let id = m.read(Space::PciConfig(s), 0, 4, &mut fx);
            if id == 0xffff_ffff {
                continue;
            }
            let ht = m.read(Space::PciConfig(s), 0x0e, 1, &mut fx) & 0x7f;
            if ht == 1 {
                *next += 1;
                let sec = *next;
                m.write(Space::PciConfig(s), 0x18, 4, u64::from(bus) | u64::from(sec) << 8 | 0xff << 16, &mut fx);
                walk(m, sec, next);
                m.write(Space::PciConfig(s), 0x1a, 1, u64::from(*next), &mut fx);
            }
        }
    }
    let mut next = 0;
    walk(m, 0, &mut next);
    next
}

/// A board with `buses` buses, numbered.
pub fn board(buses: usize) -> (Machine, u8) {
    let mut m = Machine::new(MemLayout { below_4g: 256 << 20, above_4g: 0 }).expect("board");
    for a in device_args(buses) {
        let mut fx = Vec::new();
        m.add_request(&DeviceRequest::parse(&a).expect("arg"), false, &mut fx).expect("add");
    }
    let last = enumerate(&mut m);
    (m, last)
}
