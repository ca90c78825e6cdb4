//! q35dm (`--accel sim`) side by side with QEMU 7.2 (`-M q35 -accel tcg -S -nodefaults`) on the
//! same topology: Q35, 32 root ports, one switch with 8 downstream ports. For each, the median of
//! RUNS runs (default 5) of: exec → QMP greeting answered (capabilities negotiated), VmRSS once
//! ready, and the time of 10^4 `xp` ECAM reads through the monitor (human-monitor-command).
//!
//! `cargo bench --bench side_by_side`   (needs qemu-system-x86_64; tests/run.sh installs it)

#[path = "../support/qmp_client.rs"]
mod qmp_client;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qmp_client::Qmp;
use serde_json::json;

const XP_READS: usize = 10_000;

fn topology(q35dm: bool) -> Vec<String> {
    let (rp, up, dp) = if q35dm {
        ("q35dm-root-port", "q35dm-upstream-port", "q35dm-downstream-port")
    } else {
        ("pcie-root-port", "x3130-upstream", "xio3130-downstream")
    };
    let mut v = Vec::new();
    for i in 0..32u32 {
        let (slot, func) = (1 + i / 8, i % 8);
        let mf = if func == 0 { ",multifunction=on" } else { "" };
        v.push("-device".into());
        v.push(format!("{rp},id=rp{i},chassis=1,slot={},bus=pcie.0,addr={slot:x}.{func}{mf}", i + 1));
    }
    v.push("-device".into());
    v.push(format!("{up},id=up0,bus=rp0"));
    for d in 0..8u32 {
        v.push("-device".into());
        v.push(format!("{dp},id=dp{d},bus=up0,chassis=2,slot={},addr={d}.0", d + 1));
    }
    v
}

struct Sample {
    ready: Duration,
    rss_kib: u64,
    xp: Duration,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn run_once(q35dm: bool, n: usize) -> Sample {
    let sock = std::env::temp_dir().join(format!("q35dm-sbs-{}-{}-{n}.sock", std::process::id(), q35dm));
    let _ = std::fs::remove_file(&sock);
    let mut cmd = if q35dm {
        let mut c = Command::new(env!("CARGO_BIN_EXE_q35dm"));
        c.args(topology(true));
        c.args(["--accel", "sim", "--log-level", "error", "--qmp"]).arg(&sock);
        c
    } else {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-M", "q35", "-accel", "tcg", "-S", "-nodefaults", "-display", "none", "-qmp"]);
        c.arg(format!("unix:{},server=on,wait=off", sock.display()));
        c.args(topology(false));
        c
    };
    let t0 = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let mut q = Qmp::connect_polling(&sock, Duration::from_secs(60), Duration::from_micros(200));
    let ready = t0.elapsed();
    let rss = rss_kib(child.id());
    // MMCONFIG on at 0xb0000000, then read the downstream ports' config space through it.
    q.hmp("o /w 0xcf8 0x80000060");
    q.hmp("o /w 0xcfc 0xb0000001");
    let t1 = Instant::now();
    for i in 0..XP_READS {
        let addr = 0xb000_0000u64 + ((i as u64 % 32) << 12);
        let _ = q.execute("human-monitor-command", json!({"command-line": format!("xp /1wx 0x{addr:x}")}));
    }
    let xp = t1.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&sock);
    Sample { ready, rss_kib: rss, xp }
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !qmp_client::qemu_available() {
        return;
    }
    let runs: usize = std::env::var("RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    let mut rows = Vec::new();
    for q35dm in [false, true] {
        let samples: Vec<Sample> = (0..runs).map(|n| run_once(q35dm, n)).collect();
        rows.push((
            median(samples.iter().map(|s| s.ready).collect()),
            median(samples.iter().map(|s| s.rss_kib).collect()),
            median(samples.iter().map(|s| s.xp).collect()),
        ));
    }
    let (q, d) = (rows[0], rows[1]);
    println!("Q35 + 32 root ports + switch with 8 downstream ports; median of {runs} runs");
    println!("{:<34} {:>14} {:>14} {:>12}", "", "QEMU 7.2", "q35dm (sim)", "q35dm/QEMU");
    println!(
        "{:<34} {:>11.1} ms {:>11.1} ms {:>12.3}",
        "exec -> QMP greeting answered",
        q.0.as_secs_f64() * 1e3,
        d.0.as_secs_f64() * 1e3,
        d.0.as_secs_f64() / q.0.as_secs_f64()
    );
    println!("{:<34} {:>10} KiB {:>10} KiB {:>12.3}", "VmRSS once ready", q.1, d.1, d.1 as f64 / q.1 as f64);
    println!(
        "{:<34} {:>11.1} ms {:>11.1} ms {:>12.3}",
        format!("{XP_READS} xp ECAM reads (HMP via QMP)"),
        q.2.as_secs_f64() * 1e3,
        d.2.as_secs_f64() * 1e3,
        d.2.as_secs_f64() / q.2.as_secs_f64()
    );
}
