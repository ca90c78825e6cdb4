//! Command line: QEMU-compatible (as launched by xl/libxl via `device_model_override=`) and
//! q35dm's own options.
//!
//! # Which parser
//!
//! [`parse_args`] reads argv (argv\[0\] is the program and is skipped) and picks a style with
//! [`detect_style`]:
//!
//! 1. Leading q35dm native long options (`--accel`, `--domid`, `--qmp`, `--monitor`,
//!    `--log-level`, `--vcpus`, `--memory`, `--sim-*`, `--help`, `--version`; see
//!    [`NativeArgs`]) are skipped, with their values.
//! 2. The next argument decides:
//!    * `-X` with one dash (other than clap's own `-h`/`-V`) → **QEMU style**. Unknown
//!      single-dash names are then reported as unknown QEMU options.
//!    * `--X` where `X` is a known QEMU option (QEMU accepts `--opt` for `-opt`) → **QEMU style**.
//!    * anything else, or nothing → **native style**: clap parses everything.
//!
//! In QEMU style, q35dm's native options may still be mixed in anywhere an option may stand,
//! **with two dashes**: a `--name` that is a native option is always q35dm's (so `--accel xen`
//! is q35dm's accelerator choice and `--monitor stdio` q35dm's monitor), while the one-dash
//! forms `-accel`, `-monitor`, `-qmp` are QEMU's. The value of a QEMU option is never taken
//! for a native option (`-append --memory` appends the text `--memory`).
//!
//! # Accelerator
//!
//! `--accel` picks the backend: [`Accel::Xen`] (a real domain) or [`Accel::Sim`] (the built-in
//! simulator). Default: `xen` if QEMU's `-xen-domid` was given, else `sim`. `xen` without a
//! domain id is an error. QEMU's own `-accel`/`-machine accel=` only end up in
//! [`Machine::accel`] (anything but `xen` gets a notice).
//!
//! # Native options folded into the configuration
//!
//! `--domid`, `--vcpus`, `--memory` fill [`QemuConfig::domid`], [`QemuConfig::smp`],
//! [`QemuConfig::memory`] (an error if the QEMU-style value differs); `--qmp PATH` adds a
//! listening Unix-socket chardev `q35dm-qmp` with a QMP monitor; `--monitor` adds chardev
//! `q35dm-monitor` with a human monitor. So consumers read one [`QemuConfig`] in both styles.
//!
//! # Notices
//!
//! Options q35dm accepts without emulating (VGA, NICs, disks, USB, sound, SPICE, VNC, keymap,
//! the i440FX machine types, unknown `-device` drivers, ...) are listed in
//! [`QemuConfig::notices`], once per [`Notice::key`]; the driver classification is in
//! [`devices`]. Unknown options, missing arguments and malformed values are
//! [`CmdlineError`]s naming the option and the value.

pub mod chardev;
pub mod config;
pub mod devices;
pub mod native;
pub mod opts;
pub mod qemu;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use log::LevelFilter;
use thiserror::Error;

pub use chardev::{Chardev, ChardevBackend, ChardevOrigin, SocketAddr, SocketChardev};
pub use config::{
    Boot, DeviceSpec, DisplayConfig, DriveIf, DriveSpec, Incoming, Machine, MachineKind, Memory, Monitor, MonitorMode,
    NetdevSpec, Notice, ObjectSpec, QemuConfig, Restrict, RunAs, SerialPort, Smp, Vnc,
};
pub use devices::{classify_driver, Category, DevFn, DriverClass};
pub use native::{Accel, MonitorTarget, NativeArgs};
pub use opts::{KvList, ValueError};

/// First reserved Xen domain id (`DOMID_FIRST_RESERVED`); guest ids are below it.
pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

/// Chardev id used for `--qmp PATH`.
pub const NATIVE_QMP_CHARDEV: &str = "q35dm-qmp";
/// Chardev id used for `--monitor`.
pub const NATIVE_MONITOR_CHARDEV: &str = "q35dm-monitor";

/// A command line q35dm cannot run with.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    /// An option q35dm does not know.
    #[error("unknown option '{option}'")]
    UnknownOption {
        /// The argument as given.
        option: String,
    },
    /// An option that takes an argument came last.
    #[error("option '{option}' requires an argument")]
    MissingArgument {
        /// The option as given.
        option: String,
    },
    /// A malformed argument.
    #[error("{option} {value:?}: {error}")]
    BadValue {
        /// The option.
        option: String,
        /// Its whole argument.
        value: String,
        /// What is wrong.
        error: Box<ValueError>,
    },
    /// Two objects of one kind with the same id.
    #[error("{option} {value:?}: duplicate id '{id}'")]
    DuplicateId {
        /// The option.
        option: String,
        /// Its whole argument.
        value: String,
        /// The id.
        id: String,
    },
    /// A reference to a chardev, netdev or drive that was not defined.
    #[error("{option}: {what} '{id}' is not defined")]
    UnknownReference {
        /// The option holding the reference.
        option: String,
        /// `chardev`, `netdev` or `drive`.
        what: &'static str,
        /// The id referred to.
        id: String,
    },
    /// More occurrences than there are devices.
    #[error("{option} {value:?}: too many (at most {max})")]
    TooMany {
        /// The option.
        option: String,
        /// The argument of the one too many.
        value: String,
        /// The limit.
        max: usize,
    },
    /// An option that only makes sense with another one.
    #[error("{option} requires {requires}")]
    Requires {
        /// The option.
        option: String,
        /// What it needs.
        requires: &'static str,
    },
    /// Two options that contradict each other.
    #[error("conflicting options: {first} and {second}")]
    Conflict {
        /// The first one, with its value.
        first: String,
        /// The second one, with its value.
        second: String,
    },
    /// A known QEMU option q35dm refuses.
    #[error("option '{option}' is not supported by q35dm: {reason}")]
    Unsupported {
        /// The option.
        option: String,
        /// Why.
        reason: &'static str,
    },
    /// `--accel xen` without a domain id.
    #[error("--accel xen needs a domain id (-xen-domid N or --domid N)")]
    MissingDomid,
    /// An argument that is not UTF-8.
    #[error("argument {index} is not valid UTF-8: {lossy:?}")]
    NotUtf8 {
        /// Position in argv.
        index: usize,
        /// The argument with invalid bytes replaced.
        lossy: String,
    },
    /// clap rejected the native options (the message names the option and value).
    #[error("{message}")]
    Native {
        /// clap's message, without colours.
        message: String,
    },
}

/// Which syntax the command line used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgStyle {
    /// QEMU's (`-xen-domid 5 -m 1024 ...`), possibly with native `--options` mixed in.
    Qemu,
    /// q35dm's own (`--accel sim --vcpus 2`).
    Native,
}

/// A command line ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// The syntax used.
    pub style: ArgStyle,
    /// Xen or the simulator.
    pub accel: Accel,
    /// `--log-level`.
    pub log_level: Option<LevelFilter>,
    /// The native options as given (in QEMU style, only those mixed in).
    pub native: NativeArgs,
    /// The machine configuration, with the native options folded in.
    pub vm: QemuConfig,
}

impl RunConfig {
    /// True for libxl's capability probe (`-machine none`).
    pub fn is_probe(&self) -> bool {
        self.vm.is_probe()
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run the device model.
    Run(Box<RunConfig>),
    /// Print this text on stdout and exit successfully (`--help`, `-h`, `-help`).
    Help(String),
    /// Print this text on stdout and exit successfully (`--version`, `-V`, `-version`).
    Version(String),
}

/// Picks the syntax of `args` (argv without argv\[0\]); see the module documentation.
pub fn detect_style(args: &[String]) -> ArgStyle {
    let mut it = args.iter();
    while let Some(tok) = it.next() {
        if let Some(long) = tok.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if let Some(n) = native::lookup_long(name) {
                if n.takes_value && !inline {
                    it.next();
                }
                continue;
            }
            return if !inline && qemu::is_known_option(name) { ArgStyle::Qemu } else { ArgStyle::Native };
        }
        return if tok.len() > 1 && tok.starts_with('-') && !native::is_short_flag(tok) {
            ArgStyle::Qemu
        } else {
            ArgStyle::Native
        };
    }
    ArgStyle::Native
}

/// Parses a full argv (argv\[0\] first).
pub fn parse_args<I, T>(argv: I) -> Result<Invocation, CmdlineError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args = Vec::new();
    for (index, a) in argv.into_iter().enumerate() {
        let a: OsString = a.into();
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => return Err(CmdlineError::NotUtf8 { index, lossy: bad.to_string_lossy().into_owned() }),
        }
    }
    let (prog, rest) = match args.split_first() {
        Some((p, r)) => (p.clone(), r),
        None => ("q35dm".to_string(), &[][..]),
    };
    let style = detect_style(rest);
    let (vm, native_args, from_xen_domid) = match style {
        ArgStyle::Qemu => {
            let parsed = qemu::parse(rest, native::lookup_long)?;
            match parsed.early_exit {
                Some(qemu::EarlyExit::Help) => return Ok(Invocation::Help(help_text())),
                Some(qemu::EarlyExit::Version) => return Ok(Invocation::Version(version_text())),
                None => {}
            }
            let from_xen_domid = parsed.config.domid.is_some();
            (parsed.config, parsed.native_args, from_xen_domid)
        }
        ArgStyle::Native => (QemuConfig::default(), rest.to_vec(), false),
    };
    let native = match NativeArgs::try_parse_from(std::iter::once(prog).chain(native_args)) {
        Ok(n) => n,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Invocation::Help(help_text()))
                }
                ErrorKind::DisplayVersion => Ok(Invocation::Version(version_text())),
                _ => Err(CmdlineError::Native { message: e.to_string().trim_end().to_string() }),
            }
        }
    };
    let accel = native.accel.unwrap_or(if from_xen_domid { Accel::Xen } else { Accel::Sim });
    let vm = fold_native(vm, &native)?;
    if accel == Accel::Xen && vm.domid.is_none() {
        return Err(CmdlineError::MissingDomid);
    }
    Ok(Invocation::Run(Box::new(RunConfig { style, accel, log_level: native.log_level, native, vm })))
}

/// Applies `--domid`, `--vcpus`, `--memory`, `--qmp`, `--monitor` to the configuration.
fn fold_native(mut vm: QemuConfig, n: &NativeArgs) -> Result<QemuConfig, CmdlineError> {
    if let Some(d) = n.domid {
        match vm.domid {
            Some(q) if q != d => {
                return Err(CmdlineError::Conflict { first: format!("-xen-domid {q}"), second: format!("--domid {d}") })
            }
            _ => vm.domid = Some(d),
        }
    }
    if let Some(v) = n.vcpus {
        match vm.smp {
            Some(s) if s.cpus != v => {
                return Err(CmdlineError::Conflict {
                    first: format!("-smp {}", s.cpus),
                    second: format!("--vcpus {v}"),
                })
            }
            Some(_) => {}
            None => vm.smp = Some(Smp { cpus: v, maxcpus: v, ..Smp::default() }),
        }
    }
    if let Some(mib) = n.memory {
        match vm.memory {
            Some(m) if m.size_bytes != mib << 20 => {
                return Err(CmdlineError::Conflict {
                    first: format!("-m {}M", m.size_mib()),
                    second: format!("--memory {mib}"),
                })
            }
            Some(_) => {}
            None => vm.memory = Some(Memory { size_bytes: mib << 20, maxmem_bytes: None, slots: None }),
        }
    }
    let add = |vm: &mut QemuConfig, id: &str, backend: ChardevBackend, mode: MonitorMode, flag: &str| {
        if vm.chardev(id).is_some() {
            return Err(CmdlineError::Conflict { first: format!("-chardev id={id}"), second: flag.to_string() });
        }
        vm.chardevs.push(Chardev {
            id: id.to_string(),
            backend,
            mux: false,
            origin: ChardevOrigin::Native,
            props: Vec::new(),
        });
        vm.monitors.push(Monitor { chardev: id.to_string(), mode, pretty: false });
        Ok(())
    };
    let listen = |p: &PathBuf| {
        ChardevBackend::Socket(SocketChardev {
            addr: SocketAddr::Unix(p.clone()),
            server: true,
            wait: false,
            telnet: false,
        })
    };
    if let Some(p) = &n.qmp {
        add(&mut vm, NATIVE_QMP_CHARDEV, listen(p), MonitorMode::Control, "--qmp")?;
    }
    match &n.monitor {
        Some(MonitorTarget::Stdio) => {
            add(&mut vm, NATIVE_MONITOR_CHARDEV, ChardevBackend::Stdio, MonitorMode::Readline, "--monitor")?
        }
        Some(MonitorTarget::Unix(p)) => {
            add(&mut vm, NATIVE_MONITOR_CHARDEV, listen(p), MonitorMode::Readline, "--monitor")?
        }
        None => {}
    }
    Ok(vm)
}

/// The `--help` text: clap's, plus the QEMU options accepted.
pub fn help_text() -> String {
    let mut s = NativeArgs::command().render_long_help().to_string();
    s.push_str("\nQEMU-style options accepted (those marked ARG take an argument):\n");
    let mut line = String::from(" ");
    for (name, arg) in qemu::known_options() {
        let item = if arg { format!(" -{name} ARG") } else { format!(" -{name}") };
        if line.len() + item.len() > 100 {
            s.push_str(&line);
            s.push('\n');
            line = String::from(" ");
        }
        line.push_str(&item);
    }
    s.push_str(&line);
    s.push('\n');
    s
}

/// The `--version` text.
pub fn version_text() -> String {
    format!("q35dm {}\n", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests;
