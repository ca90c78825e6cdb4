//! Wiring: choose the hypervisor (real Xen or the simulator), create the ioreq server, build the
//! board, print what is served, and run the event loop until a signal or a stop request.

use std::sync::Arc;

use log::info;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use thiserror::Error;
use xen_bindings::sys::{LinuxSys, SysError, XenSys};

use crate::cmdline::chardev::{ChardevBackend, SocketAddr};
use crate::cmdline::config::MonitorMode;
use crate::cmdline::{Accel as CmdAccel, RunConfig};
use crate::ioreq::Engine;
use crate::machine::Machine;
use crate::memory::MapCache;
use crate::monitor;
use crate::monitor::qmp::{self, NoHandlers, QmpContext, QmpError, QmpHandlers};
use crate::runtime::{event_loop, ExitReason, LoopError};
use crate::sim::{SimConfig, SimXen};
use crate::vm::{RunState, Vm};
use crate::xen::{IoreqServer, ServerError, ServerOptions};
use crate::xenstore::Xenstore;

/// Which hypervisor to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// The in-process simulated hypervisor.
    Sim,
    /// Real Xen through /dev/xen/privcmd and /dev/xen/evtchn.
    Xen,
}

/// Highest guest RAM address below 4 GiB on the Q35 board (QEMU's q35 default: RAM stops at
/// 0xB0000000 so the MMCONFIG window and the PCI hole fit below 4 GiB).
pub const LOWMEM_MAX: u64 = 0xb000_0000;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Hypervisor.
    pub accel: Accel,
    /// Guest domain.
    pub domid: u16,
    /// vCPUs (the simulator creates this many; on Xen the hypervisor says).
    pub vcpus: u32,
    /// Guest RAM in MiB (simulator).
    pub memory_mib: u64,
    /// HMP monitors to serve.
    pub monitors: Vec<MonitorSpec>,
    /// QMP sockets to serve.
    pub qmp: Vec<QmpSpec>,
    /// `-S`: report `prelaunch` until `cont`.
    pub start_paused: bool,
    /// `-xen-domid-restrict`: no xenstore (libxl then talks QMP only).
    pub restricted: bool,
    /// Privilege reduction after set-up (`-xen-domid-restrict`, `-chroot`, `-runas`, `-run-with`).
    pub jail: crate::jail::JailSpec,
    /// `-incoming fd:N`: device state to load at start (libxl restore).
    pub incoming_fd: Option<i32>,
    /// Devices from `-device`, in order.
    pub devices: Vec<crate::devices::DeviceRequest>,
    /// The chardevs of `-serial`, in order: the first is COM1 (0x3f8, IRQ 4), then COM2-COM4.
    pub serials: Vec<crate::cmdline::chardev::Chardev>,
    /// Every chardev of the command line, in order (what `query-chardev` lists).
    pub chardevs: Vec<crate::cmdline::chardev::Chardev>,
    /// fw_cfg contents: `-kernel`/`-initrd`/`-append`, vCPUs, RAM, `-nographic`, `-uuid`.
    pub fw_cfg: crate::devices::fwcfg::FwCfgOptions,
    /// Add the Xen platform PCI device at 00:02.0 (`-machine xenfv`).
    pub xen_platform: bool,
}

/// Where a QMP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QmpSpec {
    /// Bind this path (a stale socket file is removed first).
    Path(std::path::PathBuf),
    /// An inherited, already listening socket.
    Fd(i32),
}

/// Where an HMP monitor listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorSpec {
    /// stdin/stdout.
    Stdio,
    /// A unix socket path.
    Unix(std::path::PathBuf),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accel: Accel::Sim,
            domid: 1,
            vcpus: 2,
            memory_mib: 256,
            monitors: Vec::new(),
            qmp: Vec::new(),
            start_paused: false,
            restricted: false,
            jail: crate::jail::JailSpec::default(),
            incoming_fd: None,
            devices: Vec::new(),
            serials: Vec::new(),
            chardevs: Vec::new(),
            fw_cfg: crate::devices::fwcfg::FwCfgOptions::default(),
            xen_platform: false,
        }
    }
}

/// Start-up and run-time failures.
#[derive(Debug, Error)]
pub enum AppError {
    /// Opening the Xen devices failed.
    #[error("{0}")]
    Sys(#[from] SysError),
    /// The simulator could not be created.
    #[error("starting the simulated hypervisor: {0}")]
    Sim(std::io::Error),
    /// Setting up the ioreq server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Signal handling could not be set up.
    #[error("setting up signal handling: {0}")]
    Signals(nix::Error),
    /// The event loop failed.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// The board could not be built.
    #[error("building the board: {0}")]
    Machine(String),
    /// Other I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Splits `memory_mib` into RAM below and above 4 GiB.
pub fn ram_layout(memory_mib: u64) -> (u64, u64) {
    let total = memory_mib.saturating_mul(1 << 20);
    let below = total.min(LOWMEM_MAX);
    (below, total - below)
}

/// Blocks the termination signals in this thread (do it before any thread is spawned, so every
/// thread inherits the mask) and returns a signalfd for them.
pub fn termination_signals() -> Result<SignalFd, AppError> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    set.thread_block().map_err(AppError::Signals)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(AppError::Signals)
}

/// The backend handle, keeping the simulator alive in sim mode.
pub struct Backend {
    /// The seam the ioreq server uses.
    pub sys: Arc<dyn XenSys>,
    /// The simulator, in sim mode.
    pub sim: Option<SimXen>,
}

/// Opens the hypervisor for `opts`.
pub fn open_backend(opts: &Options) -> Result<Backend, AppError> {
    match opts.accel {
        Accel::Xen => Ok(Backend { sys: Arc::new(LinuxSys::open()?), sim: None }),
        Accel::Sim => {
            let (below, above) = ram_layout(opts.memory_mib);
            let sim = SimXen::new(SimConfig {
                domid: opts.domid,
                nr_vcpus: opts.vcpus,
                ram_below_4g: below,
                ram_above_4g: above,
                ..SimConfig::default()
            })
            .map_err(AppError::Sim)?;
            let sys = Arc::new(sim.open().map_err(AppError::Sim)?);
            Ok(Backend { sys, sim: Some(sim) })
        }
    }
}

/// Creates the server and claims the board's ranges.
pub fn start(opts: &Options, backend: &Backend, machine: &Machine) -> Result<Engine, AppError> {
    let nr = match opts.accel {
        Accel::Sim => Some(opts.vcpus),
        Accel::Xen => None,
    };
    let mut server =
        IoreqServer::create(backend.sys.clone(), opts.domid, ServerOptions { bufioreq: true, nr_vcpus: nr })?;
    for r in machine.ranges() {
        server.map_range(r)?;
    }
    Ok(Engine::new(server, Box::new(MapCache::new(backend.sys.clone(), opts.domid))))
}

/// The start-up summary.
pub fn summary(opts: &Options, engine: &Engine, machine: &Machine) -> String {
    let s = engine.server();
    let hv = match opts.accel {
        Accel::Sim => "simulated hypervisor (--accel sim)",
        Accel::Xen => "Xen (--accel xen)",
    };
    let (below, above) = ram_layout(opts.memory_mib);
    let mut out = format!("q35dm {} on {hv}\n", env!("CARGO_PKG_VERSION"));
    out += &format!(
        "  domain {}, {} vCPU(s), RAM {} MiB below 4 GiB + {} MiB above\n",
        opts.domid,
        s.nr_vcpus(),
        below >> 20,
        above >> 20
    );
    out += &format!(
        "  ioreq server {}: vCPU event channels {:?}, buffered ring on port {}\n",
        s.id(),
        s.vcpu_ports(),
        s.buf_port().map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    out += "  serving:\n";
    out += &machine.describe();
    out += "  Ctrl-C, SIGTERM or SIGHUP stops q35dm.\n";
    out
}

/// Builds [`Options`] from a parsed command line.
pub fn options_from(cfg: &RunConfig) -> Result<Options, AppError> {
    let vm = &cfg.vm;
    let accel = match cfg.accel {
        CmdAccel::Sim => Accel::Sim,
        CmdAccel::Xen => Accel::Xen,
    };
    let mut o = Options {
        accel,
        domid: vm.domid.unwrap_or(1),
        vcpus: vm.smp.as_ref().map_or(1, |s| s.cpus.max(1)),
        memory_mib: vm.memory_mib().unwrap_or(256),
        ..Options::default()
    };
    if cfg.native.vcpus.is_none() && vm.smp.is_none() && accel == Accel::Sim {
        o.vcpus = 2;
    }
    o.start_paused = vm.start_paused;
    o.restricted = vm.restrict.xen_domid_restrict;
    let r = &vm.restrict;
    let any = r.xen_domid_restrict || r.chroot.is_some() || r.runas.is_some();
    o.jail = crate::jail::JailSpec {
        restrict_domid: r.xen_domid_restrict.then_some(o.domid),
        chroot: r.chroot.clone(),
        runas: r.runas.clone(),
        rlimits: any,
        seccomp: any,
    };
    o.devices = vm.emulated_devices().map(crate::devices::DeviceRequest::from_spec).collect();
    o.serials = vm.serials.iter().filter_map(|s| vm.chardev(&s.chardev).cloned()).collect();
    o.chardevs = vm.chardevs.clone();
    o.xen_platform = vm.machine.xen_platform();
    o.fw_cfg = fw_cfg_options(vm, o.vcpus, o.memory_mib);
    if let Some(crate::cmdline::config::Incoming::Fd(fd)) = vm.incoming {
        o.incoming_fd = Some(fd);
    }
    for m in &vm.monitors {
        let Some(ch) = vm.chardev(&m.chardev) else { continue };
        match (&m.mode, &ch.backend) {
            (MonitorMode::Control, ChardevBackend::Socket(sock)) if sock.server => match &sock.addr {
                SocketAddr::Unix(p) => o.qmp.push(QmpSpec::Path(p.clone())),
                SocketAddr::Fd(fd) => o.qmp.push(QmpSpec::Fd(*fd)),
                SocketAddr::Inet { .. } => log::warn!("QMP on TCP ({}) is not served; use a unix socket", ch.id),
            },
            (MonitorMode::Readline, ChardevBackend::Stdio) => o.monitors.push(MonitorSpec::Stdio),
            (MonitorMode::Readline, ChardevBackend::Socket(sock)) if sock.server => match &sock.addr {
                SocketAddr::Unix(p) => o.monitors.push(MonitorSpec::Unix(p.clone())),
                _ => log::warn!("monitor on {}: only unix sockets and stdio are served", ch.id),
            },
            (mode, b) => log::warn!("{mode:?} monitor on chardev {} ({}): backend not served", ch.id, b.name()),
        }
    }
    Ok(o)
}

/// What fw_cfg tells the firmware, from the command line (`Q35DM_ROM_DIR` names a directory
/// searched first for the option ROM that boots `-kernel`).
pub fn fw_cfg_options(
    vm: &crate::cmdline::QemuConfig,
    vcpus: u32,
    memory_mib: u64,
) -> crate::devices::fwcfg::FwCfgOptions {
    let cpus = u16::try_from(vcpus).unwrap_or(u16::MAX);
    crate::devices::fwcfg::FwCfgOptions {
        cpus,
        max_cpus: vm.smp.as_ref().map_or(cpus, |s| u16::try_from(s.maxcpus).unwrap_or(u16::MAX)),
        ram_bytes: memory_mib.saturating_mul(1 << 20),
        below_4g: ram_layout(memory_mib).0,
        nographic: vm.display.nographic,
        boot_menu: vm.boot.as_ref().and_then(|b| b.menu).unwrap_or(false),
        uuid: vm.uuid.as_deref().and_then(crate::devices::fwcfg::parse_uuid),
        kernel: vm.kernel.clone(),
        initrd: vm.initrd.clone(),
        append: vm.append.clone(),
        rom_dirs: std::env::var_os(crate::devices::fwcfg::ROM_DIR_ENV)
            .map(std::path::PathBuf::from)
            .into_iter()
            .collect(),
    }
}

/// Adds the board's legacy devices: the Xen platform device (`xenfv`), the serial ports on their
/// backends (files and ptys are opened here, before any privilege drop) and fw_cfg (reading the
/// kernel, initrd and option ROM). Returns the `query-chardev` list: every chardev, serial
/// backends with their real `filename` (`pty:/dev/pts/N`, `file:PATH`).
pub fn install_legacy_devices(
    opts: &Options,
    machine: &mut Machine,
) -> Result<Vec<crate::monitor::qmp::ChardevInfo>, AppError> {
    use crate::devices::{chardev, serial, xen_platform};
    let mut ignored = Vec::new();
    if opts.xen_platform {
        xen_platform::install(machine, &mut ignored).map_err(AppError::Machine)?;
    }
    let stdin_free = !opts.monitors.contains(&MonitorSpec::Stdio);
    let mut opened = std::collections::BTreeMap::new();
    for (i, cd) in opts.serials.iter().enumerate() {
        let b = chardev::CharBackend::open(cd, stdin_free).map_err(|e| AppError::Machine(format!("-serial: {e}")))?;
        if let Some(p) = b.pty_path() {
            // QEMU's message (some tools read it from stderr).
            eprintln!("char device redirected to {p} (label {})", cd.id);
        }
        opened.insert(cd.id.clone(), b.info());
        let s = serial::Serial::com(i, b).map_err(|e| AppError::Machine(format!("-serial: {e}")))?;
        machine.add_port_device(Box::new(s), &mut ignored).map_err(|e| AppError::Machine(e.to_string()))?;
    }
    let fw = opts.fw_cfg.build().map_err(|e| AppError::Machine(format!("fw_cfg: {e}")))?;
    machine.add_port_device(Box::new(fw), &mut ignored).map_err(|e| AppError::Machine(e.to_string()))?;
    Ok(opts
        .chardevs
        .iter()
        .map(|cd| {
            opened.remove(&cd.id).unwrap_or_else(|| crate::monitor::qmp::ChardevInfo {
                label: cd.id.clone(),
                filename: chardev::describe(cd),
            })
        })
        .collect())
}

/// Runs the device model described by a parsed command line (or answers libxl's probe).
pub fn run_config(cfg: &RunConfig) -> Result<ExitReason, AppError> {
    let opts = options_from(cfg)?;
    if cfg.is_probe() {
        return run_probe(&opts);
    }
    run(&opts)
}

/// libxl's capability probe (`-machine none`): serve QMP on the given socket until `quit` (or a
/// signal), without touching any hypervisor.
pub fn run_probe(opts: &Options) -> Result<ExitReason, AppError> {
    let signals = termination_signals()?;
    let (lp, handle) = event_loop::<Machine>()?;
    let vm = Vm::new(handle.clone(), None, RunState::Prelaunch);
    let qctx = QmpContext::new(vm.clone(), 0, Box::new(NoHandlers));
    for q in &opts.qmp {
        let l = match q {
            QmpSpec::Path(p) => qmp::bind_path(p)?,
            QmpSpec::Fd(fd) => qmp::adopt_listener(*fd)?,
        };
        drop(qmp::spawn(qctx.clone(), l, "probe")?);
    }
    info!("capability probe: answering QMP until quit");
    let read = || signals.read_signal().ok().flatten().map(|s| s.ssi_signo as i32);
    let sfd = std::os::fd::AsFd::as_fd(&signals);
    Ok(lp.run_idle(Some((sfd, &read)))?)
}

/// QMP commands that act on the board.
pub struct DmHandlers {
    /// The device model.
    pub vm: Arc<Vm>,
}

impl QmpHandlers for DmHandlers {
    fn query_pci(&self) -> Result<serde_json::Value, QmpError> {
        self.vm.machine(|m| m.query_pci()).map_err(|e| QmpError::generic(e.to_string()))
    }

    fn save_devices_state(&self, fd: std::os::fd::OwnedFd, _live: bool) -> Result<(), QmpError> {
        let blob = self.vm.machine(|m| m.save_state()).map_err(|e| QmpError::generic(e.to_string()))?;
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, &blob)
            .map_err(|e| QmpError::generic(format!("writing device state: {e}")))?;
        info!("saved device state ({} bytes)", blob.len());
        Ok(())
    }

    fn load_devices_state(&self, path: &str) -> Result<(), QmpError> {
        let blob = std::fs::read(path).map_err(|e| QmpError::generic(format!("reading {path}: {e}")))?;
        self.vm
            .handle()
            .call(move |m, e| m.load_state(&blob, e.effects_mut()))
            .map_err(|e| QmpError::generic(e.to_string()))?
            .map_err(|e| QmpError::generic(e.to_string()))
    }

    fn device_add(&self, args: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Value, QmpError> {
        let mut driver = None;
        let mut props = Vec::new();
        for (k, v) in args {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => {
                    if *b {
                        "on".into()
                    } else {
                        "off".into()
                    }
                }
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(QmpError::generic(format!("Invalid parameter type for '{k}': {other}"))),
            };
            if k == "driver" {
                driver = Some(s);
            } else {
                props.push((k.clone(), s));
            }
        }
        let driver = driver.ok_or_else(|| QmpError::generic("Parameter 'driver' is missing"))?;
        let req =
            crate::devices::DeviceRequest::from_props(driver, props).map_err(|e| QmpError::generic(e.to_string()))?;
        self.vm.device_add(req).map_err(|e| QmpError::generic(e.to_string()))?;
        Ok(serde_json::json!({}))
    }

    fn device_del(&self, id: &str) -> Result<serde_json::Value, QmpError> {
        match self.vm.device_del(id, false) {
            Ok(_) => Ok(serde_json::json!({})),
            Err(e) if e.to_string().starts_with("no PCI device") => Err(QmpError::device_not_found(id)),
            Err(e) => Err(QmpError::generic(e.to_string())),
        }
    }

    fn other(
        &self,
        cmd: &str,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Result<serde_json::Value, QmpError>> {
        let num = |k: &str| args.get(k).and_then(serde_json::Value::as_u64);
        Some(match cmd {
            "x-pcie-abp" => {
                let Some(slot) = num("slot") else {
                    return Some(Err(QmpError::generic("Parameter 'slot' is missing")));
                };
                self.vm
                    .pcie_abp(num("chassis").map(|c| c as u8), slot as u16)
                    .map(|(c, s)| serde_json::json!({"chassis": c, "slot": s}))
                    .map_err(|e| QmpError::generic(e.to_string()))
            }
            "x-query-pcie-slots" => self
                .vm
                .machine(|m| m.info_pcie_slots())
                .map(serde_json::Value::String)
                .map_err(|e| QmpError::generic(e.to_string())),
            "pcie-aer-inject-error" => {
                let s = |k: &str| args.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
                let b = |k: &str| args.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
                let (Some(id), Some(status)) =
                    (s("id"), s("error_status").or_else(|| num("error_status").map(|n| n.to_string())))
                else {
                    return Some(Err(QmpError::generic("Parameters 'id' and 'error_status' are required")));
                };
                let mut words = Vec::new();
                if b("advisory_non_fatal") {
                    words.push("-a".to_string());
                }
                if b("correctable") {
                    words.push("-c".to_string());
                }
                words.push(id);
                words.push(status);
                for k in ["header0", "header1", "header2", "header3", "prefix0", "prefix1", "prefix2", "prefix3"] {
                    if let Some(v) = num(k) {
                        words.push(format!("{v:#x}"));
                    }
                }
                self.vm
                    .aer_inject(&words.join(" "))
                    .map(serde_json::Value::String)
                    .map_err(|e| QmpError::generic(e.to_string()))
            }
            _ => return None,
        })
    }

    fn set_dirty_log(&self, enable: bool) -> Result<(), QmpError> {
        self.vm.handle().call(move |_, e| e.mem().set_log_dirty(enable)).map_err(|e| QmpError::generic(e.to_string()))
    }
}

/// The xenstore directory libxl watches for this device model.
pub fn dm_path(domid: u16) -> String {
    format!("/local/domain/0/device-model/{domid}")
}

/// Connects to xenstore (on Xen; in sim mode only when `XENSTORED_PATH` names one) and keeps
/// `device-model/<domid>/state` equal to the run state: `running` once QMP listens and the guest
/// runs, `prelaunch` under `-S` until `cont`. Not done under `-xen-domid-restrict` (as QEMU).
fn publish_state(opts: &Options, vm: &Arc<Vm>) -> Option<Arc<Xenstore>> {
    if opts.restricted {
        return None;
    }
    if opts.accel == Accel::Sim && std::env::var_os("XENSTORED_PATH").is_none() {
        return None;
    }
    let xs = match Xenstore::open() {
        Ok(x) => Arc::new(x),
        Err(e) => {
            log::error!("xenstore: {e}; libxl will not see the device model become ready");
            return None;
        }
    };
    let path = format!("{}/state", dm_path(opts.domid));
    if let Err(e) = xs.write(&path, vm.run_state().name()) {
        log::error!("writing {path}: {e}");
    }
    let xs2 = xs.clone();
    vm.on_state_change(move |s| {
        if let Err(e) = xs2.write(&path, s.name()) {
            log::error!("writing {path}: {e}");
        }
    });
    info!("xenstore: {} = {}", dm_path(opts.domid), vm.run_state().name());
    Some(xs)
}

/// Runs the device model until a termination signal.
pub fn run(opts: &Options) -> Result<ExitReason, AppError> {
    let signals = termination_signals()?;
    let backend = open_backend(opts)?;
    let (below_4g, above_4g) = ram_layout(opts.memory_mib);
    let mut machine =
        Machine::new(crate::machine::MemLayout { below_4g, above_4g }).map_err(|e| AppError::Machine(e.to_string()))?;
    let chardev_infos = install_legacy_devices(opts, &mut machine)?;
    for d in &opts.devices {
        let mut ignored = Vec::new();
        let err = |e: String| {
            AppError::Machine(format!(
                "-device {}{}: {e}",
                d.driver,
                d.id.as_deref().map(|i| format!(",id={i}")).unwrap_or_default()
            ))
        };
        let n = machine.add_request(d, false, &mut ignored).map_err(|e| err(e.to_string()))?;
        if d.driver == crate::devices::xen_platform::DRIVER {
            crate::devices::xen_platform::attach_fixed_ports(&mut machine, n, &mut ignored)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    let mut engine = start(opts, &backend, &machine)?;
    if let Some(fd) = opts.incoming_fd {
        let f = std::fs::File::from(xen_bindings::fd::adopt_inherited(fd)?);
        let mut blob = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, crate::state::MAX_BLOB as u64), &mut blob)?;
        machine
            .load_state(&blob, engine.effects_mut())
            .map_err(|e| AppError::Machine(format!("-incoming fd:{fd}: {e}")))?;
        engine.apply_effects();
        info!("restored device state ({} bytes) from fd {fd}", blob.len());
    }
    print!("{}", summary(opts, &engine, &machine));
    let (lp, handle) = event_loop::<Machine>()?;
    crate::devices::serial::start_input(&mut machine, &handle)?;
    let initial = if opts.incoming_fd.is_some() {
        RunState::Paused
    } else if opts.start_paused {
        RunState::Prelaunch
    } else {
        RunState::Running
    };
    let vm = Vm::new(handle, backend.sim.clone(), initial);
    let qctx = QmpContext::new(vm.clone(), engine.server().nr_vcpus() as u32, Box::new(DmHandlers { vm: vm.clone() }));
    if let Ok(mut c) = qctx.chardevs.lock() {
        *c = chardev_infos;
    }
    for q in &opts.qmp {
        let (l, name) = match q {
            QmpSpec::Path(p) => (qmp::bind_path(p)?, p.display().to_string()),
            QmpSpec::Fd(fd) => (qmp::adopt_listener(*fd)?, format!("fd{fd}")),
        };
        info!("QMP on {name}");
        drop(qmp::spawn(qctx.clone(), l, &name)?);
    }
    let xs = publish_state(opts, &vm);
    if let Some(x) = &xs {
        drop(crate::xsctl::spawn(x.clone(), vm.clone(), opts.domid)?);
    }
    for m in &opts.monitors {
        match m {
            MonitorSpec::Stdio => drop(monitor::server::spawn_stdio(vm.clone())?),
            MonitorSpec::Unix(p) => drop(monitor::server::spawn_unix(vm.clone(), p)?),
        }
    }
    if !opts.jail.is_empty() {
        // Everything is open and bound: drop what is no longer needed before serving the guest.
        crate::jail::apply(&opts.jail, backend.sys.as_ref())
            .map_err(|e| AppError::Machine(format!("privilege reduction: {e}")))?;
    }
    let read = || signals.read_signal().ok().flatten().map(|s| s.ssi_signo as i32);
    let sfd = std::os::fd::AsFd::as_fd(&signals);
    let r = lp.run(&mut machine, &mut engine, Some((sfd, &read)));
    engine.shutdown();
    let reason = r?;
    info!("q35dm stopped ({reason:?})");
    Ok(reason)
}
