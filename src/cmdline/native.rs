//! q35dm's own options (`--accel`, `--domid`, ...), parsed with clap.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};
use log::LevelFilter;

use super::opts::parse_size;

/// Where the guest comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// The built-in simulated hypervisor (no Xen needed).
    Sim,
    /// A real Xen domain (needs a domain id).
    Xen,
}

impl Accel {
    /// `sim` or `xen`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Sim => "sim",
            Accel::Xen => "xen",
        }
    }
}

/// `--monitor` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorTarget {
    /// The human monitor on stdin/stdout.
    Stdio,
    /// The human monitor on a listening Unix socket.
    Unix(PathBuf),
}

/// q35dm's native options. In QEMU-style command lines they may be mixed in with two dashes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Parser)]
#[command(
    name = "q35dm",
    version,
    about = "A Q35/PCIe device model for Xen HVM guests",
    long_about = "A Q35/PCIe device model for Xen HVM guests.\n\n\
        q35dm also accepts QEMU's command line as emitted by libxl (device_model_override=): if the first \
        argument (after any of the options below) is a single-dash option such as -xen-domid, the whole \
        command line is read QEMU-style; the options below may still be mixed in with two dashes."
)]
pub struct NativeArgs {
    /// Run against a real Xen domain (`xen`) or the built-in simulator (`sim`).
    /// Default: `xen` when QEMU's -xen-domid is given, `sim` otherwise.
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// Guest domain id (same as QEMU's -xen-domid).
    #[arg(long, value_name = "N", value_parser = parse_domid)]
    pub domid: Option<u16>,
    /// Serve QMP on a Unix socket at PATH (in addition to any QEMU-style -qmp/-mon).
    #[arg(long, value_name = "PATH")]
    pub qmp: Option<PathBuf>,
    /// Serve the human monitor on `stdio` or `unix:PATH`.
    #[arg(long, value_name = "stdio|unix:PATH", value_parser = parse_monitor_target)]
    pub monitor: Option<MonitorTarget>,
    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<LevelFilter>,
    /// Number of vCPUs (same as QEMU's -smp N).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=128))]
    pub vcpus: Option<u32>,
    /// Guest RAM; a plain number is MiB, suffixes K/M/G/T are accepted (same as QEMU's -m).
    #[arg(long, value_name = "MIB", value_parser = parse_memory_mib)]
    pub memory: Option<u64>,
    /// Simulator: how long a simulated vCPU waits for an I/O answer before reporting a hang.
    #[arg(long, value_name = "MS")]
    pub sim_wait_timeout_ms: Option<u64>,
    /// Simulator: stop after this many milliseconds (default: run until signalled).
    #[arg(long, value_name = "MS")]
    pub sim_run_ms: Option<u64>,
}

fn parse_domid(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(d) if d < super::DOMID_FIRST_RESERVED => Ok(d),
        _ => Err(format!("{s:?} is not a guest domain id (0..={})", super::DOMID_FIRST_RESERVED - 1)),
    }
}

fn parse_monitor_target(s: &str) -> Result<MonitorTarget, String> {
    if s == "stdio" {
        return Ok(MonitorTarget::Stdio);
    }
    match s.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Ok(MonitorTarget::Unix(PathBuf::from(p))),
        _ => Err(format!("{s:?}: expected stdio or unix:PATH")),
    }
}

fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    crate::logging::parse_level(s).ok_or_else(|| format!("{s:?}: expected off, error, warn, info, debug or trace"))
}

fn parse_memory_mib(s: &str) -> Result<u64, String> {
    let bytes = parse_size("memory", s, 1 << 20).map_err(|e| e.to_string())?;
    if bytes == 0 || bytes % (1 << 20) != 0 {
        return Err(format!("{s:?}: must be a non-zero whole number of MiB"));
    }
    Ok(bytes >> 20)
}

/// How a native long option is spelled on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeOption {
    /// True if it takes a value (`--accel xen` / `--accel=xen`).
    pub takes_value: bool,
}

/// Looks up a long option name (without dashes) among q35dm's native options, including
/// clap's `help` and `version`.
pub fn lookup_long(name: &str) -> Option<NativeOption> {
    if name == "help" || name == "version" {
        return Some(NativeOption { takes_value: false });
    }
    let cmd = NativeArgs::command();
    let found = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .map(|a| NativeOption { takes_value: a.get_action().takes_values() });
    found
}

/// True if `-X` (one letter) is one of clap's short flags (`-h`, `-V`).
pub fn is_short_flag(arg: &str) -> bool {
    matches!(arg, "-h" | "-V")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(lookup_long("accel"), Some(NativeOption { takes_value: true }));
        assert_eq!(lookup_long("sim-run-ms"), Some(NativeOption { takes_value: true }));
        assert_eq!(lookup_long("help"), Some(NativeOption { takes_value: false }));
        assert_eq!(lookup_long("xen-domid"), None);
    }

    #[test]
    fn parses() {
        let a = NativeArgs::try_parse_from([
            "q35dm",
            "--accel",
            "xen",
            "--domid=3",
            "--memory",
            "1G",
            "--vcpus",
            "2",
            "--monitor",
            "unix:/tmp/m",
            "--log-level",
            "debug",
        ])
        .expect("parse");
        assert_eq!(a.accel, Some(Accel::Xen));
        assert_eq!(a.domid, Some(3));
        assert_eq!(a.memory, Some(1024));
        assert_eq!(a.vcpus, Some(2));
        assert_eq!(a.monitor, Some(MonitorTarget::Unix("/tmp/m".into())));
        assert_eq!(a.log_level, Some(LevelFilter::Debug));
        for bad in [
            &["q35dm", "--accel", "kvm"][..],
            &["q35dm", "--domid", "32752"],
            &["q35dm", "--vcpus", "0"],
            &["q35dm", "--memory", "1.5K"],
            &["q35dm", "--monitor", "tcp:1"],
            &["q35dm", "--log-level", "loud"],
        ] {
            assert!(NativeArgs::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
