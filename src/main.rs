//! The `q35dm` binary: parse the command line (QEMU-compatible argv as libxl passes it, or
//! q35dm's own `--options`), run the device model.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use q35dm::app;
use q35dm::cmdline::{self, Invocation};

fn main() -> ExitCode {
    let inv = match cmdline::parse_args(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("q35dm: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = match inv {
        Invocation::Help(t) | Invocation::Version(t) => {
            print!("{t}");
            return ExitCode::SUCCESS;
        }
        Invocation::Run(cfg) => cfg,
    };
    q35dm::logging::init(cfg.log_level.unwrap_or(log::LevelFilter::Info));
    for n in &cfg.vm.notices {
        log::warn!("{n}");
    }
    match app::run_config(&cfg) {
        Ok(r) => {
            log::info!("q35dm: stopped ({r:?})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("q35dm: {e}");
            ExitCode::FAILURE
        }
    }
}
