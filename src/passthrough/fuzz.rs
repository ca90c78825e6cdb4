//! Fuzz entry for the passthrough config filter ([`config_filter`]): hostile device contents
//! plus a guest access stream, over an in-memory host ([`MemHost`]) and a recording hypervisor
//! seam ([`RecordingOps`]), with the security invariants checked after every access.
//!
//! Input: byte 0 selects `permissive`; the next 4096 bytes (zero-padded) are the device's config
//! space (vendor forced valid, header type forced 0, so most inputs get past the build); the rest
//! is a stream of 8-byte accesses `[op, off_lo, off_hi, size, v0, v1, v2, v3]`: op % 5 = config
//! read, config write, BAR read, BAR write, reset.
//!
//! Invariants (a panic means a bug):
//! - without `permissive`, the device's config space is written only at Command, Status, the ROM
//!   BAR and the MSI / MSI-X Message Control, and never changes its decode, parity or SERR bits;
//! - the device's MSI-X table is never written;
//! - every memory mapping lies inside the BAR's host frames, outside the MSI-X table and PBA
//!   pages, and outside guest RAM; every port mapping is exactly the I/O BAR;
//! - after the device is dropped, every mapping, pirq and binding made was undone.

use std::sync::Arc;

use crate::pci::config::{IntxPin, ResetKind};
use crate::pci::device::PciDevice;
use crate::pci::Sbdf;

use super::device::{GuestRanges, PassthroughDevice, PtEnv};
use super::filter::FilterOptions;
use super::host::{ioresource, HostResource, MemHost, MemHostWrite, PAGE_SIZE};
use super::ops::{PirqSource, PtOp, RecordingOps};

/// Guest RAM of the fuzzed guest.
pub const RAM: (u64, u64) = (0, 0x8000_0000);

fn resources() -> Vec<HostResource> {
    let r = |index, start: u64, size: u64, flags| HostResource { index, start, end: start + size - 1, flags };
    let none = |index| HostResource { index, start: 0, end: 0, flags: 0 };
    vec![
        r(0, 0xfe00_0000, 0x2_0000, ioresource::MEM),
        none(1),
        r(2, 0xe000, 0x20, ioresource::IO),
        r(3, 0xfe02_0000, 0x4000, ioresource::MEM),
        none(4),
        none(5),
        r(6, 0xfe10_0000, 0x1_0000, ioresource::MEM | ioresource::PREFETCH),
    ]
}

/// Runs one fuzz input (see the module docs).
pub fn config_filter(data: &[u8]) {
    let permissive = data.first().is_some_and(|b| b & 1 != 0);
    let body = data.get(1..).unwrap_or(&[]);
    let mut cfg = vec![0u8; 4096];
    let n = body.len().min(4096);
    if let (Some(dst), Some(src)) = (cfg.get_mut(..n), body.get(..n)) {
        dst.copy_from_slice(src);
    }
    if let Some(b) = cfg.get_mut(0..2) {
        b.copy_from_slice(&0x8086u16.to_le_bytes());
    }
    if let Some(b) = cfg.get_mut(0x0e) {
        *b = 0;
    }
    let stream = body.get(n..).unwrap_or(&[]);
    let res = resources();
    let host = MemHost::new(Sbdf::new(0, 3, 0, 0), cfg, res.clone(), 17);
    let state = host.state();
    let ops = Arc::new(RecordingOps::new());
    let env = PtEnv { ops: ops.clone(), guest_ram: vec![RAM], ranges: Arc::new(GuestRanges::default()) };
    let opts = FilterOptions { name: "fuzz".into(), permissive, multifunction: false };
    let Ok(mut dev) = PassthroughDevice::attach(Box::new(host), &opts, env) else { return };
    dev.placed(Some((3, IntxPin::A)));
    let layout = dev.filter().layout().clone();
    let mut allowed: Vec<(u16, u16)> = vec![(0x04, 0x08), (0x30, 0x34)];
    allowed.extend(layout.msi.map(|m| (m.off + 2, m.off + 4)));
    allowed.extend(layout.msix.map(|m| (m.off + 2, m.off + 4)));
    let mut seen_writes = 0usize;
    let mut last_cmd = command_of(&state);
    for a in stream.chunks_exact(8) {
        let [op, lo, hi, size, v0, v1, v2, v3] = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let off = u16::from_le_bytes([lo, hi]);
        let val = u32::from_le_bytes([v0, v1, v2, v3]);
        let size = [1u8, 2, 4, 8, 3][usize::from(size % 5)];
        match op % 5 {
            0 => {
                let _ = dev.config_read(off & 0x1fff, size);
            }
            1 => {
                let _ = dev.config_write(off & 0x1fff, size, val);
            }
            2 => {
                let _ = dev.bar_read(hi % 8, u64::from(off) * 4, size);
            }
            3 => {
                let _ = dev.bar_write(hi % 8, u64::from(off) * 4, size, u64::from(val));
            }
            _ => {
                let kinds =
                    [ResetKind::Cold, ResetKind::Warm, ResetKind::Hot, ResetKind::SecondaryBusReset, ResetKind::Flr];
                let _ = dev.reset(kinds[usize::from(v0) % kinds.len()]);
            }
        }
        let writes: Vec<MemHostWrite> = state.lock().map(|s| s.writes.clone()).unwrap_or_default();
        for w in writes.iter().skip(seen_writes) {
            check_write(w, &allowed, permissive, &layout, &mut last_cmd);
        }
        seen_writes = writes.len();
        for op in ops.ops() {
            check_op(&op, &res, &layout);
        }
    }
    drop(dev);
    assert_balanced(&ops.ops());
}

fn command_of(state: &std::sync::Mutex<super::host::MemHostState>) -> u16 {
    state.lock().ok().and_then(|s| s.config.get(4..6).map(|b| u16::from_le_bytes([b[0], b[1]]))).unwrap_or(0)
}

fn check_write(
    w: &MemHostWrite,
    allowed: &[(u16, u16)],
    permissive: bool,
    layout: &super::filter::HostLayout,
    last_cmd: &mut u16,
) {
    match w {
        MemHostWrite::Config { off, data } => {
            let end = off.saturating_add(data.len() as u16);
            if !permissive {
                assert!(
                    allowed.iter().any(|(s, e)| *off >= *s && end <= *e),
                    "device config written at {off:#x} ({} bytes) without permissive",
                    data.len()
                );
            }
            if *off <= 4 && end >= 6 {
                let i = usize::from(4 - *off);
                let new =
                    u16::from_le_bytes([data.get(i).copied().unwrap_or(0), data.get(i + 1).copied().unwrap_or(0)]);
                // q35dm turns decode on at attach; it never clears it, and parity/SERR are the host's.
                let fixed = 0x0143u16;
                assert!(
                    new & fixed & *last_cmd == *last_cmd & fixed,
                    "device decode/SERR cleared: {last_cmd:#x} -> {new:#x}"
                );
                if !permissive {
                    assert_eq!(new & 0x0140, *last_cmd & 0x0140, "device parity/SERR changed");
                }
                *last_cmd = new;
            }
        }
        MemHostWrite::Bar { bar, off, size, .. } => {
            if let Some(m) = layout.msix {
                let c = m.cfg;
                let (t0, t1) = (u64::from(c.table_offset), u64::from(c.table_offset) + c.table_len());
                assert!(
                    !(*bar == c.table_bar && *off < t1 && off + u64::from(*size) > t0),
                    "MSI-X table written on the device at {off:#x}"
                );
            }
        }
        MemHostWrite::Reset => {}
    }
}

fn check_op(op: &PtOp, res: &[HostResource], layout: &super::filter::HostLayout) {
    match *op {
        PtOp::MemoryMapping { gfn, mfn, nr, add: true } => {
            let bar = layout
                .bars
                .iter()
                .find(|b| b.kind.is_mem() && mfn >= b.start / PAGE_SIZE && mfn + nr <= (b.start + b.size) / PAGE_SIZE);
            assert!(bar.is_some(), "mapping of mfn {mfn:#x} x{nr} outside every memory BAR");
            let Some(b) = bar else { return };
            let (ram0, ramlen) = RAM;
            assert!(
                gfn + nr <= ram0 / PAGE_SIZE || gfn >= (ram0 + ramlen) / PAGE_SIZE,
                "mapping over guest RAM at gfn {gfn:#x}"
            );
            if let Some(m) = layout.msix {
                let c = m.cfg;
                for (bi, o, l) in [(c.table_bar, c.table_offset, c.table_len()), (c.pba_bar, c.pba_offset, c.pba_len())]
                {
                    if bi == b.index {
                        let first = (b.start + u64::from(o)) / PAGE_SIZE;
                        let last = (b.start + u64::from(o) + l - 1) / PAGE_SIZE;
                        assert!(mfn > last || mfn + nr <= first, "MSI-X table/PBA page mapped (mfn {mfn:#x})");
                    }
                }
            }
        }
        PtOp::IoportMapping { mport, nr, add: true, .. } => {
            assert!(
                res.iter().any(|r| r.is_io() && u64::from(mport) == r.start && u64::from(nr) == r.size()),
                "port mapping {mport:#x} x{nr} is not the I/O BAR"
            );
        }
        PtOp::MapPirq(PirqSource::Msi { host, .. }) => assert_eq!(host, Sbdf::new(0, 3, 0, 0)),
        _ => {}
    }
}

fn assert_balanced(ops: &[PtOp]) {
    let mut maps: Vec<(u64, u64, u64)> = Vec::new();
    let mut ports: Vec<(u32, u32, u32)> = Vec::new();
    let mut bound: Vec<u32> = Vec::new();
    let mut pirqs: Vec<u32> = Vec::new();
    let mut next = 0x100u32;
    for op in ops {
        match *op {
            PtOp::MemoryMapping { gfn, mfn, nr, add: true } => maps.push((gfn, mfn, nr)),
            PtOp::MemoryMapping { gfn, mfn, nr, add: false } => {
                let i = maps.iter().position(|m| *m == (gfn, mfn, nr));
                assert!(i.is_some(), "removal of a mapping never made: gfn {gfn:#x}");
                if let Some(i) = i {
                    maps.remove(i);
                }
            }
            PtOp::IoportMapping { gport, mport, nr, add: true } => ports.push((gport, mport, nr)),
            PtOp::IoportMapping { gport, mport, nr, add: false } => ports.retain(|p| *p != (gport, mport, nr)),
            PtOp::MapPirq(PirqSource::Gsi(g)) => pirqs.push(g),
            PtOp::MapPirq(PirqSource::Msi { pirq, .. }) => {
                let p = pirq.unwrap_or_else(|| {
                    let p = next;
                    next += 1;
                    p
                });
                pirqs.push(p);
            }
            PtOp::UnmapPirq(p) => {
                assert!(!bound.contains(&p), "pirq {p} unmapped while bound");
                pirqs.retain(|x| *x != p);
            }
            PtOp::Bind(b) => {
                if !bound.contains(&b.machine_irq) {
                    bound.push(b.machine_irq);
                }
            }
            PtOp::Unbind(b) => bound.retain(|x| *x != b.machine_irq),
        }
    }
    assert!(maps.is_empty(), "mappings left after detach: {maps:x?}");
    assert!(ports.is_empty(), "port mappings left after detach: {ports:x?}");
    assert!(bound.is_empty(), "bindings left after detach: {bound:?}");
    assert!(pirqs.is_empty(), "pirqs left after detach: {pirqs:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_inputs_are_fine() {
        config_filter(&[]);
        config_filter(&[1]);
        config_filter(&[0; 100]);
    }

    #[test]
    fn pseudo_random_streams_keep_the_invariants() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..24 {
            let mut data = vec![(round & 1) as u8];
            // A valid-ish PCIe endpoint with caps (so the stream reaches MSI/MSI-X), then noise.
            let mut cfg = crate::passthrough::fuzz::tests::endpoint_config();
            for b in cfg.iter_mut().skip(0x40) {
                if next() % 16 == 0 {
                    *b = next() as u8;
                }
            }
            data.extend_from_slice(&cfg);
            for _ in 0..400 {
                let v = next();
                let op = (v % 5) as u8;
                let off: u16 = match v >> 8 & 3 {
                    0 => 0x04,
                    1 => 0x10 + ((v >> 16) as u16 % 0x30),
                    2 => 0x50 + ((v >> 16) as u16 % 0x70),
                    _ => (v >> 16) as u16,
                };
                data.push(op);
                data.extend_from_slice(&off.to_le_bytes());
                data.push((v >> 32) as u8);
                data.extend_from_slice(&((v >> 24) as u32).to_le_bytes());
            }
            config_filter(&data);
        }
    }

    /// An endpoint with PM, MSI (64-bit, maskable), PCIe v2, MSI-X (BAR3) and AER.
    pub(super) fn endpoint_config() -> Vec<u8> {
        let mut c = vec![0u8; 4096];
        let mut put = |o: usize, v: &[u8]| c[o..o + v.len()].copy_from_slice(v);
        put(0, &[0x86, 0x80, 0x21, 0x15, 0x06, 0x01, 0x10, 0x00, 0x01, 0x00, 0x00, 0x02]);
        put(0x34, &[0x40]);
        put(0x3d, &[0x01]);
        put(0x40, &[0x01, 0x50, 0x03, 0xc8]);
        put(0x50, &[0x05, 0x70, 0x80, 0x01]);
        put(0x70, &[0x10, 0xa0, 0x02, 0x00, 0x00, 0x80, 0x00, 0x10]);
        put(0xa0, &[0x11, 0x00, 0x09, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00]);
        put(0x100, &[0x01, 0x00, 0x02, 0x00]);
        c
    }
}
