//! `q35dm-aerd`: see the library documentation and toolstack-hooks/README.md.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use q35dm::xenstore::{Endpoint, Options, Xenstore};
use q35dm_aerd::daemon::{self, Config};
use xen_bindings::sys::{LinuxSys, XenSys};

/// Forwards host PCIe AER errors of passed-through functions to their guests' q35dm.
#[derive(Debug, Parser)]
#[command(name = "q35dm-aerd", version)]
struct Cli {
    /// tracefs mount point (default: /sys/kernel/tracing, else from /proc/mounts).
    #[arg(long, value_name = "DIR")]
    tracefs: Option<PathBuf>,
    /// sysfs root, for the counter fallback.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs: PathBuf,
    /// xenstored socket or device (default: $XENSTORED_PATH, the usual socket, /dev/xen/xenbus).
    #[arg(long, value_name = "PATH")]
    xenstore: Option<PathBuf>,
    /// Name of aerd's tracefs instance.
    #[arg(long, default_value = "q35dm-aerd")]
    instance: String,
    /// Per-CPU buffer of the instance in KiB (0: leave the kernel's).
    #[arg(long, default_value_t = 1024)]
    buffer_kb: u32,
    /// Poll the sysfs counters instead of using the tracepoint.
    #[arg(long)]
    sysfs_only: bool,
    /// sysfs poll interval and retry tick, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
    /// Unacknowledged records allowed per guest before further events are collapsed.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    queue_limit: u64,
    /// Do not notify event channels (q35dm then finds records by its 1 s rescan).
    #[arg(long)]
    no_evtchn: bool,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = q35dm::logging::parse_level(&cli.log_level).unwrap_or(log::LevelFilter::Info);
    q35dm::logging::init(level);
    let signals = match q35dm::app::termination_signals() {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoints = match &cli.xenstore {
        Some(p) => vec![Endpoint::Auto(p.clone())],
        None => Endpoint::defaults(),
    };
    let xs = match Xenstore::connect(endpoints, Options::default()) {
        Ok(x) => Arc::new(x),
        Err(e) => {
            log::error!("xenstore: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sys: Option<Arc<dyn XenSys>> = if cli.no_evtchn {
        None
    } else {
        match LinuxSys::open() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                log::warn!("{e}; running without event-channel notifications (q35dm polls every second)");
                None
            }
        }
    };
    let cfg = Config {
        tracefs: cli.tracefs,
        sysfs: cli.sysfs,
        instance: cli.instance,
        buffer_kb: (cli.buffer_kb > 0).then_some(cli.buffer_kb),
        poll_interval: Duration::from_millis(cli.poll_ms),
        queue_limit: cli.queue_limit,
        force_sysfs: cli.sysfs_only,
    };
    let d = match daemon::start(cfg, xs, sys) {
        Ok(d) => d,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("q35dm-aerd running ({:?})", d.source());
    loop {
        match signals.read_signal() {
            Ok(Some(s)) => {
                log::info!("signal {}: stopping", s.ssi_signo);
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => {
                log::error!("signalfd: {e}");
                break;
            }
        }
    }
    let st = d.stats();
    d.stop();
    log::info!(
        "q35dm-aerd stopped: {} events, {} records, {} unassigned, {} undecodable, {} lost by the kernel",
        st.events,
        st.forward.records,
        st.unassigned,
        st.undecodable,
        st.lost
    );
    ExitCode::SUCCESS
}
