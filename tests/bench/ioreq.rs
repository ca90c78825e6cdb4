//! Micro-benchmarks of the device model's own work per ioreq (decode + dispatch + effects),
//! with 1, 32 and 256 buses populated, and of the full simulated round trip.
//!
//! `cargo bench --bench ioreq`

#[path = "topology.rs"]
mod topology;

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use q35dm::ioreq::Engine;
use q35dm::memory::MapCache;
use q35dm::sim::{SimConfig, SimXen};
use q35dm::xen::{IoreqServer, ServerOptions};
use xen_bindings::ioreq::*;
use xen_bindings::sys::XenSys;

fn engine() -> (SimXen, Engine) {
    let sim = SimXen::new(SimConfig { nr_vcpus: 1, ram_below_4g: 64 << 20, ..Default::default() }).unwrap();
    let sys: Arc<dyn XenSys> = Arc::new(sim.open().unwrap());
    let server = IoreqServer::create(sys.clone(), 1, ServerOptions { bufioreq: true, nr_vcpus: Some(1) }).unwrap();
    let e = Engine::new(server, Box::new(MapCache::new(sys, 1)));
    (sim, e)
}

fn req(type_: u8, addr: u64, size: u32, dir: u8, data: u64) -> Ioreq {
    Ioreq {
        addr,
        data,
        count: 1,
        size,
        vp_eport: 0,
        pad0: 0,
        flags: Ioreq::make_flags(STATE_IOREQ_READY, false, dir, false),
        type_,
    }
}

fn per_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("dm_work_per_ioreq");
    for buses in [1usize, 32, 256] {
        let (mut m, last) = topology::board(buses);
        let (_sim, mut e) = engine();
        for r in m.ranges() {
            e.server_mut().map_range(r).unwrap();
        }
        // Enable MMCONFIG at 0xb0000000.
        let en = req(IOREQ_TYPE_PCI_CONFIG, 0x60, 4, IOREQ_WRITE, 0xb000_0001);
        e.handle(&mut m, &en, 0);
        e.apply_effects();
        // The function on the highest-numbered bus (the deepest lookup).
        let cfg_addr = u64::from(q35dm::pci::Sbdf::new(0, last, 0, 0).raw()) << 32;
        let cfg = req(IOREQ_TYPE_PCI_CONFIG, cfg_addr, 4, IOREQ_READ, 0);
        g.bench_with_input(BenchmarkId::new("pci_config_read", buses), &cfg, |b, r| {
            b.iter(|| black_box(e.handle(&mut m, black_box(r), 0)))
        });
        let ecam = req(IOREQ_TYPE_COPY, 0xb000_0000 + (u64::from(last) << 20), 4, IOREQ_READ, 0);
        g.bench_with_input(BenchmarkId::new("ecam_mmio_read", buses), &ecam, |b, r| {
            b.iter(|| black_box(e.handle(&mut m, black_box(r), 0)))
        });
        let pio = req(IOREQ_TYPE_PIO, 0xcf8, 4, IOREQ_READ, 0);
        g.bench_with_input(BenchmarkId::new("port_read", buses), &pio, |b, r| {
            b.iter(|| black_box(e.handle(&mut m, black_box(r), 0)))
        });
        // Buffered writes: fill the ring through the simulated hypervisor, time the drain.
        let v = _sim.vcpu(0);
        g.bench_function(BenchmarkId::new("buffered_write_x256", buses), |b| {
            b.iter_batched(
                || {
                    for i in 0..256u32 {
                        v.buffered_write(IOREQ_TYPE_PIO, 0xcf8, 4, u64::from(0x8000_0000 | i)).unwrap();
                    }
                },
                |()| e.drain_buffered(&mut m),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let (m, _) = topology::board(32);
    let (sim, mut e) = engine();
    for r in m.ranges() {
        e.server_mut().map_range(r).unwrap();
    }
    let (handle, join) = q35dm::runtime::spawn(m, e).unwrap();
    let v = sim.vcpu(0);
    assert_eq!(v.pio_read(0xcf8, 4).unwrap(), 0, "served by the device model, not Xen's null handler");
    c.bench_function("sim_round_trip_port_read", |b| b.iter(|| black_box(v.pio_read(0xcf8, 4).unwrap())));
    handle.stop();
    let _ = join.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = per_request, round_trip
}
criterion_main!(benches);
