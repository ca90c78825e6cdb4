//! The typed result of a QEMU-style command line: [`QemuConfig`] and its parts.

use std::fmt;
use std::path::PathBuf;

use super::chardev::Chardev;
use super::devices::{DevFn, DriverClass};
use crate::pci::address::Sbdf;

/// Something on the command line that q35dm accepts but does not emulate.
///
/// Each distinct [`Notice::key`] is reported once, however often the option appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The option, with its dash: `-device`, `-vnc`, `-k`, ...
    pub option: String,
    /// What it named, if the notice is per value: a driver, a type, an id, `if=ide`, ...
    pub subject: Option<String>,
    /// One line saying what is not done and what the guest sees instead.
    pub reason: String,
}

impl Notice {
    /// `option` or `option subject`: the deduplication key (`-device cirrus-vga`, `-usb`).
    pub fn key(&self) -> String {
        match &self.subject {
            Some(s) => format!("{} {}", self.option, s),
            None => self.option.clone(),
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key(), self.reason)
    }
}

/// How q35dm will drop privileges (`-xen-domid-restrict`, `-chroot`, `-runas`, `-run-with`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrict {
    /// `-xen-domid-restrict`: restrict Xen handles to the guest domain before running it.
    pub xen_domid_restrict: bool,
    /// `-chroot DIR` or `-run-with chroot=DIR` (the last one given).
    pub chroot: Option<PathBuf>,
    /// `-runas USER` or `-run-with user=USER` (the last one given).
    pub runas: Option<RunAs>,
}

/// The `-runas` / `-run-with user=` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// A user name, looked up in the password database.
    User(String),
    /// Numeric `UID:GID` (libxl's `xen-qemuuser-range-base` + domid form).
    Ids {
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
}

/// `-incoming`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// `fd:N`: read the saved device state from inherited fd N (libxl restore).
    Fd(i32),
    /// `defer`: wait for `migrate-incoming`.
    Defer,
    /// Another URI (`tcp:`, `unix:`, `exec:`, `rdma:`, `file:`, `vsock:`), accepted with a notice.
    Uri(String),
}

/// `-m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Initial RAM in bytes (rounded up to 8 KiB, as QEMU does).
    pub size_bytes: u64,
    /// `maxmem=` in bytes.
    pub maxmem_bytes: Option<u64>,
    /// `slots=`.
    pub slots: Option<u64>,
}

impl Memory {
    /// Initial RAM in MiB, rounded up.
    pub fn size_mib(&self) -> u64 {
        self.size_bytes.div_ceil(1 << 20)
    }
}

/// `-smp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Smp {
    /// vCPUs online at start.
    pub cpus: u32,
    /// vCPUs possible (hot-pluggable up to this).
    pub maxcpus: u32,
    /// `sockets=` as given.
    pub sockets: Option<u32>,
    /// `dies=` as given.
    pub dies: Option<u32>,
    /// `clusters=` as given.
    pub clusters: Option<u32>,
    /// `cores=` as given.
    pub cores: Option<u32>,
    /// `threads=` as given.
    pub threads: Option<u32>,
}

/// The machine family named by `-machine TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineKind {
    /// `none`: libxl's capability probe; no guest is run.
    None,
    /// `xenfv[-X.Y]`: i440FX plus the Xen platform device (libxl's default).
    Xenfv,
    /// `pc`, `pc-i440fx-X.Y`: i440FX without the platform device (`xen_platform_pci=0`).
    Pc,
    /// `q35`, `pc-q35-X.Y`.
    Q35,
    /// `xenpv`: backends only, for PV/PVH guests.
    Xenpv,
}

/// `-machine` (all occurrences merged; later values win).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// The family, if a type was given.
    pub kind: Option<MachineKind>,
    /// The type exactly as given (`xenfv`, `pc-q35-9.2`, ...).
    pub type_name: Option<String>,
    /// Accelerators in order of preference, from `-machine accel=a:b`, `-accel` and `-enable-kvm`.
    pub accel: Vec<String>,
    /// `max-ram-below-4g=` in bytes (libxl's `mmio_hole`).
    pub max_ram_below_4g: Option<u64>,
    /// `igd-passthru=on`.
    pub igd_passthru: bool,
    /// Every property as given, except `type`.
    pub props: Vec<(String, String)>,
}

impl Machine {
    /// True if the guest gets the Xen platform PCI device from the machine type (`xenfv`).
    pub fn xen_platform(&self) -> bool {
        self.kind == Some(MachineKind::Xenfv)
    }
}

/// `-mon` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    /// Human monitor.
    Readline,
    /// QMP.
    Control,
}

/// One monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    /// The chardev it runs on.
    pub chardev: String,
    /// Human or QMP.
    pub mode: MonitorMode,
    /// `pretty=on` (QMP only).
    pub pretty: bool,
}

/// One ISA serial port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPort {
    /// Port number (0 = COM1); `query-chardev` reports the chardev of port N as `serialN`.
    pub index: usize,
    /// The chardev behind it.
    pub chardev: String,
}

/// `-boot`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Boot {
    /// `order=` (letters `a`..`p`: a/b floppy, c disk, d CD-ROM, n network).
    pub order: Option<String>,
    /// `once=`.
    pub once: Option<String>,
    /// `menu=`.
    pub menu: Option<bool>,
    /// Everything as given.
    pub props: Vec<(String, String)>,
}

/// One `-device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Driver name.
    pub driver: String,
    /// How q35dm treats it.
    pub class: DriverClass,
    /// `id=`.
    pub id: Option<String>,
    /// `bus=` (a bus name such as `pcie.0` or a port id such as `rp1`).
    pub bus: Option<String>,
    /// `addr=` parsed.
    pub addr: Option<DevFn>,
    /// `hostaddr=` parsed, for `xen-pci-passthrough` (required there).
    pub hostaddr: Option<Sbdf>,
    /// All properties in order, without `driver`.
    pub props: Vec<(String, String)>,
}

impl DeviceSpec {
    /// The last value of a property.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `multifunction=on`.
    pub fn multifunction(&self) -> bool {
        matches!(self.prop("multifunction"), Some("on" | "yes" | "true" | "y"))
    }
}

/// One `-netdev` (or the backend half of `-net`/`-nic`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetdevSpec {
    /// `type=` (`tap`, `user`, `bridge`, ...).
    pub kind: String,
    /// `id=`.
    pub id: String,
    /// All properties in order (including `type` and `id`).
    pub props: Vec<(String, String)>,
}

impl NetdevSpec {
    /// The last value of a property.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `-drive if=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveIf {
    /// `if=none`: a backend for a `-device`.
    None,
    /// IDE (QEMU's default on x86).
    Ide,
    /// SCSI.
    Scsi,
    /// Floppy.
    Floppy,
    /// Parallel flash (firmware).
    Pflash,
    /// MTD.
    Mtd,
    /// SD card.
    Sd,
    /// virtio-blk.
    Virtio,
    /// Xen PV disk.
    Xen,
}

impl DriveIf {
    /// The QEMU spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DriveIf::None => "none",
            DriveIf::Ide => "ide",
            DriveIf::Scsi => "scsi",
            DriveIf::Floppy => "floppy",
            DriveIf::Pflash => "pflash",
            DriveIf::Mtd => "mtd",
            DriveIf::Sd => "sd",
            DriveIf::Virtio => "virtio",
            DriveIf::Xen => "xen",
        }
    }

    /// Parses the QEMU spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "none" => DriveIf::None,
            "ide" => DriveIf::Ide,
            "scsi" => DriveIf::Scsi,
            "floppy" => DriveIf::Floppy,
            "pflash" => DriveIf::Pflash,
            "mtd" => DriveIf::Mtd,
            "sd" => DriveIf::Sd,
            "virtio" => DriveIf::Virtio,
            "xen" => DriveIf::Xen,
            _ => return None,
        })
    }
}

/// One `-drive` (also from `-hda`..`-hdd`, `-cdrom`, `-fda`/`-fdb` and positional images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveSpec {
    /// `id=`.
    pub id: Option<String>,
    /// `file=`.
    pub file: Option<PathBuf>,
    /// `if=` (default IDE).
    pub interface: DriveIf,
    /// `index=`.
    pub index: Option<u32>,
    /// `media=cdrom`.
    pub cdrom: bool,
    /// `format=`.
    pub format: Option<String>,
    /// `readonly=on`.
    pub readonly: bool,
    /// All properties in order.
    pub props: Vec<(String, String)>,
}

/// `-vnc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vnc {
    /// The argument as given.
    pub spec: String,
    /// False for `-vnc none`.
    pub enabled: bool,
    /// The display part (`127.0.0.1:0`, `unix:/path`), if enabled.
    pub display: Option<String>,
    /// `to=` (try displays up to this one).
    pub to: Option<u64>,
    /// `password=on`.
    pub password: bool,
}

/// Display-related options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayConfig {
    /// `-nographic`.
    pub nographic: bool,
    /// The last `-display` type (`none`, `sdl`, ...); `-sdl` counts as `sdl`.
    pub display: Option<String>,
    /// The last `-vnc`.
    pub vnc: Option<Vnc>,
    /// `-spice` given.
    pub spice: bool,
    /// `-vga TYPE`.
    pub vga: Option<String>,
    /// `-k KEYMAP`.
    pub keymap: Option<String>,
}

/// One `-object`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSpec {
    /// `qom-type`.
    pub qom_type: String,
    /// `id=`.
    pub id: String,
    /// All properties in order (including `qom-type` and `id`).
    pub props: Vec<(String, String)>,
}

/// Everything a QEMU-style command line said, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuConfig {
    /// `-xen-domid`.
    pub domid: Option<u16>,
    /// `-name` (the `guest=` part).
    pub name: Option<String>,
    /// `-uuid`.
    pub uuid: Option<String>,
    /// Privilege dropping.
    pub restrict: Restrict,
    /// `-S`: do not start vCPUs until QMP `cont`.
    pub start_paused: bool,
    /// `-no-shutdown`: on guest poweroff, stop instead of exiting.
    pub no_shutdown: bool,
    /// `-no-reboot`: treat guest reset as poweroff.
    pub no_reboot: bool,
    /// `-incoming`.
    pub incoming: Option<Incoming>,
    /// `-m`.
    pub memory: Option<Memory>,
    /// `-smp`.
    pub smp: Option<Smp>,
    /// `-machine`/`-M`/`-accel`.
    pub machine: Machine,
    /// Every chardev: explicit, and those implied by `-serial`/`-monitor`/`-qmp`.
    pub chardevs: Vec<Chardev>,
    /// Every monitor: `-mon`, `-monitor`, `-qmp`, `-qmp-pretty`, `mon:` serials.
    pub monitors: Vec<Monitor>,
    /// ISA serial ports in order.
    pub serials: Vec<SerialPort>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
    /// `-boot`.
    pub boot: Option<Boot>,
    /// `-device` in order.
    pub devices: Vec<DeviceSpec>,
    /// `-netdev` in order.
    pub netdevs: Vec<NetdevSpec>,
    /// `-net none`.
    pub net_none: bool,
    /// `-drive` and its shorthands, in order.
    pub drives: Vec<DriveSpec>,
    /// Display options.
    pub display: DisplayConfig,
    /// False after `-no-acpi` or `-machine acpi=off`.
    pub acpi: bool,
    /// `-usb`.
    pub usb: bool,
    /// `-object` in order.
    pub objects: Vec<ObjectSpec>,
    /// `-nodefaults`.
    pub nodefaults: bool,
    /// `-no-user-config`.
    pub no_user_config: bool,
    /// `-D FILE`: where QEMU would write its debug log.
    pub log_file: Option<PathBuf>,
    /// `-pidfile FILE`.
    pub pidfile: Option<PathBuf>,
    /// Options accepted without being emulated, once each, in order of first appearance.
    pub notices: Vec<Notice>,
}

impl Default for QemuConfig {
    fn default() -> Self {
        Self {
            domid: None,
            name: None,
            uuid: None,
            restrict: Restrict::default(),
            start_paused: false,
            no_shutdown: false,
            no_reboot: false,
            incoming: None,
            memory: None,
            smp: None,
            machine: Machine::default(),
            chardevs: Vec::new(),
            monitors: Vec::new(),
            serials: Vec::new(),
            kernel: None,
            initrd: None,
            append: None,
            boot: None,
            devices: Vec::new(),
            netdevs: Vec::new(),
            net_none: false,
            drives: Vec::new(),
            display: DisplayConfig::default(),
            acpi: true,
            usb: false,
            objects: Vec::new(),
            nodefaults: false,
            no_user_config: false,
            log_file: None,
            pidfile: None,
            notices: Vec::new(),
        }
    }
}

impl QemuConfig {
    /// True for libxl's capability probe (`-machine none`): answer QMP and exit, run nothing.
    pub fn is_probe(&self) -> bool {
        self.machine.kind == Some(MachineKind::None)
    }

    /// The chardev with this id.
    pub fn chardev(&self, id: &str) -> Option<&Chardev> {
        self.chardevs.iter().find(|c| c.id == id)
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| d.id.as_deref() == Some(id))
    }

    /// Devices q35dm emulates, in order.
    pub fn emulated_devices(&self) -> impl Iterator<Item = &DeviceSpec> {
        self.devices.iter().filter(|d| d.class == DriverClass::Emulated)
    }

    /// QMP monitors (mode=control), in order.
    pub fn qmp_monitors(&self) -> impl Iterator<Item = &Monitor> {
        self.monitors.iter().filter(|m| m.mode == MonitorMode::Control)
    }

    /// RAM in MiB, if `-m` was given.
    pub fn memory_mib(&self) -> Option<u64> {
        self.memory.map(|m| m.size_mib())
    }
}
