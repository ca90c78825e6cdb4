//! The `q35dm` binary: parse the command line, run the device model.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use q35dm::app::{self, Accel, Options};

/// q35dm: a Q35 / PCIe device model for Xen HVM guests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Hypervisor: `sim` (built-in simulator) or `xen`.
    #[arg(long, value_parser = ["sim", "xen"], default_value = "sim")]
    accel: String,
    /// Guest domain id.
    #[arg(long, default_value_t = 1)]
    domid: u16,
    /// vCPUs (simulator).
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    /// Guest RAM in MiB (simulator).
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// HMP monitor: `stdio` or `unix:PATH` (repeatable).
    #[arg(long)]
    monitor: Vec<String>,
    /// QMP socket path, or `fd=N` for an inherited listening socket (repeatable).
    #[arg(long)]
    qmp: Vec<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let Some(level) = q35dm::logging::parse_level(&a.log_level) else {
        eprintln!("q35dm: --log-level {:?}: expected error, warn, info, debug or trace", a.log_level);
        return ExitCode::from(2);
    };
    q35dm::logging::init(level);
    let mut monitors = Vec::new();
    for m in &a.monitor {
        match m.as_str() {
            "stdio" => monitors.push(app::MonitorSpec::Stdio),
            s => match s.strip_prefix("unix:") {
                Some(p) => monitors.push(app::MonitorSpec::Unix(p.into())),
                None => {
                    eprintln!("q35dm: --monitor {m:?}: expected stdio or unix:PATH");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let mut qmp = Vec::new();
    for q in &a.qmp {
        match q.strip_prefix("fd=").map(str::parse::<i32>) {
            Some(Ok(fd)) => qmp.push(app::QmpSpec::Fd(fd)),
            Some(Err(_)) => {
                eprintln!("q35dm: --qmp {q:?}: expected a path or fd=N");
                return ExitCode::from(2);
            }
            None => qmp.push(app::QmpSpec::Path(q.into())),
        }
    }
    let opts = Options {
        qmp,
        monitors,
        accel: if a.accel == "xen" { Accel::Xen } else { Accel::Sim },
        domid: a.domid,
        vcpus: a.vcpus,
        memory_mib: a.memory,
    };
    match app::run(&opts) {
        Ok(r) => {
            println!("q35dm: stopped ({r:?}), ioreq server destroyed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("q35dm: {e}");
            ExitCode::FAILURE
        }
    }
}
