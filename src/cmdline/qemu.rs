//! The QEMU-style argv parser: option table, per-option handling, cross-checks, notices.
//!
//! Like QEMU (`lookup_opt` in system/vl.c): an argument starting with `-` names an option;
//! `--opt` is the same as `-opt`; an option that takes an argument consumes the next argv
//! element verbatim, even if it starts with `-`; `-opt=value` is *not* accepted; an argument
//! not starting with `-` is a disk image (as `-hda`). Unknown options, missing arguments and
//! malformed values are errors naming the option and the value.
//!
//! Exception: a `--name` that is one of q35dm's native long options ([`super::native`]) is set
//! aside for clap, with its value; see the module documentation of [`super`].

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use super::chardev::{self, Chardev, ChardevOrigin, LegacySpec};
use super::config::{
    Boot, DriveIf, DriveSpec, Incoming, MachineKind, Memory, Monitor, MonitorMode, NetdevSpec, Notice, ObjectSpec,
    QemuConfig, RunAs, SerialPort, Smp, Vnc,
};
use super::devices::{self, Category, DeviceSpecParts, DriverClass};
use super::native::NativeOption;
use super::opts::{self, check_id, in_range, parse_bool, parse_decimal, KvList, ValueError};
use super::{CmdlineError, DOMID_FIRST_RESERVED};

/// Maximum number of `-serial` ports (QEMU's `MAX_ISA_SERIAL_PORTS`).
pub const MAX_SERIAL_PORTS: usize = 4;

/// What to do with an option.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Dedicated handling.
    H(H),
    /// Accepted and ignored: it changes nothing q35dm does.
    Silent,
    /// Accepted, not emulated: one notice with this reason.
    Notice(&'static str),
    /// Known, refused: ignoring it could silently change the configuration.
    Unsupported(&'static str),
}

/// Options with dedicated handling.
#[derive(Clone, Copy, Debug)]
enum H {
    XenDomid,
    XenDomidRestrict,
    NoShutdown,
    NoReboot,
    Paused,
    NoUserConfig,
    NoDefaults,
    NoGraphic,
    Name,
    Uuid,
    Chardev,
    Mon,
    Monitor,
    Qmp,
    QmpPretty,
    Serial,
    Parallel,
    Memory,
    Smp,
    Machine,
    Accel,
    EnableKvm,
    Boot,
    Kernel,
    Initrd,
    Append,
    Device,
    Netdev,
    Net,
    Nic,
    Drive,
    Hd(u32),
    Cdrom,
    Floppy(u32),
    Vnc,
    Display,
    Sdl,
    Vga,
    Spice,
    Keymap,
    Usb,
    UsbDevice,
    SoundHw,
    Incoming,
    Chroot,
    RunAs,
    RunWith,
    NoAcpi,
    Object,
    Global,
    LogFile,
    PidFile,
    Msg,
    Help,
    Version,
}

/// One known option.
#[derive(Clone, Copy, Debug)]
struct OptDef {
    name: &'static str,
    arg: bool,
    act: Act,
}

const fn opt(name: &'static str, arg: bool, act: Act) -> OptDef {
    OptDef { name, arg, act }
}

const NO_DISPLAY: &str = "ignored (q35dm has no display)";
const NO_DISKS: &str = "ignored (q35dm has no disks)";
const XEN_MEMORY: &str = "ignored (Xen owns guest memory)";
const XEN_FIRMWARE: &str = "ignored (under Xen, hvmloader loads the firmware and builds the ACPI/SMBIOS tables)";
const TCG_ONLY: &str = "ignored (TCG-only option; q35dm does not emulate CPUs)";
const NO_QEMU_LOG: &str = "ignored (QEMU log items and trace events do not exist in q35dm; use --log-level)";
const NO_SOUND: &str = "ignored (q35dm has no sound)";

/// Every option q35dm knows, with whether it takes an argument (as in QEMU's qemu-options.hx).
const OPTIONS: &[OptDef] = &[
    // Xen and process control
    opt("xen-domid", true, Act::H(H::XenDomid)),
    opt("xen-domid-restrict", false, Act::H(H::XenDomidRestrict)),
    opt("xen-attach", false, Act::Silent),
    opt("no-shutdown", false, Act::H(H::NoShutdown)),
    opt("no-reboot", false, Act::H(H::NoReboot)),
    opt("S", false, Act::H(H::Paused)),
    opt("no-user-config", false, Act::H(H::NoUserConfig)),
    opt("nodefconfig", false, Act::H(H::NoUserConfig)),
    opt("nodefaults", false, Act::H(H::NoDefaults)),
    opt("name", true, Act::H(H::Name)),
    opt("uuid", true, Act::H(H::Uuid)),
    opt("incoming", true, Act::H(H::Incoming)),
    opt("chroot", true, Act::H(H::Chroot)),
    opt("runas", true, Act::H(H::RunAs)),
    opt("run-with", true, Act::H(H::RunWith)),
    opt("pidfile", true, Act::H(H::PidFile)),
    opt("D", true, Act::H(H::LogFile)),
    opt("msg", true, Act::H(H::Msg)),
    opt("h", false, Act::H(H::Help)),
    opt("help", false, Act::H(H::Help)),
    opt("?", false, Act::H(H::Help)),
    opt("version", false, Act::H(H::Version)),
    opt("daemonize", false, Act::Notice("not supported; q35dm stays in the foreground")),
    opt("preconfig", false, Act::Notice("ignored (q35dm has no preconfig state; the machine is built at startup)")),
    opt("only-migratable", false, Act::Silent),
    opt("enable-sync-profile", false, Act::Silent),
    opt("async-teardown", false, Act::Silent),
    opt("enable-fips", false, Act::Silent),
    opt("sandbox", true, Act::Notice("not implemented; q35dm installs no seccomp filter")),
    opt("overcommit", true, Act::Notice(XEN_MEMORY)),
    opt("compat", true, Act::Silent),
    opt("readconfig", true, Act::Unsupported("configuration files are not read; pass the options on the command line")),
    opt("writeconfig", true, Act::Unsupported("configuration files are not written")),
    opt("set", true, Act::Unsupported("-set is not applied; give the property in the option itself")),
    // Monitors and character devices
    opt("chardev", true, Act::H(H::Chardev)),
    opt("mon", true, Act::H(H::Mon)),
    opt("monitor", true, Act::H(H::Monitor)),
    opt("qmp", true, Act::H(H::Qmp)),
    opt("qmp-pretty", true, Act::H(H::QmpPretty)),
    opt("serial", true, Act::H(H::Serial)),
    opt("parallel", true, Act::H(H::Parallel)),
    opt("debugcon", true, Act::Notice("not emulated (q35dm has no debug console port)")),
    opt("echr", true, Act::Silent),
    // Machine, CPUs, memory
    opt("machine", true, Act::H(H::Machine)),
    opt("M", true, Act::H(H::Machine)),
    opt("accel", true, Act::H(H::Accel)),
    opt("enable-kvm", false, Act::H(H::EnableKvm)),
    opt("cpu", true, Act::Notice("ignored (Xen defines the guest CPU model)")),
    opt("smp", true, Act::H(H::Smp)),
    opt("numa", true, Act::Notice("ignored (q35dm describes no NUMA topology)")),
    opt("m", true, Act::H(H::Memory)),
    opt("mem-path", true, Act::Notice(XEN_MEMORY)),
    opt("mem-prealloc", false, Act::Notice(XEN_MEMORY)),
    opt("no-acpi", false, Act::H(H::NoAcpi)),
    opt("no-hpet", false, Act::Silent),
    opt("rtc", true, Act::Notice("ignored (Xen emulates the RTC)")),
    opt("localtime", false, Act::Notice("ignored (Xen emulates the RTC)")),
    opt("global", true, Act::H(H::Global)),
    opt("object", true, Act::H(H::Object)),
    opt("add-fd", true, Act::Notice("ignored (q35dm keeps no fd sets from the command line)")),
    opt("icount", true, Act::Notice(TCG_ONLY)),
    opt("tb-size", true, Act::Notice(TCG_ONLY)),
    opt("singlestep", false, Act::Notice(TCG_ONLY)),
    opt("plugin", true, Act::Notice(TCG_ONLY)),
    opt("qtest", true, Act::Notice("not supported (q35dm has no qtest accelerator)")),
    opt("qtest-log", true, Act::Notice("not supported (q35dm has no qtest accelerator)")),
    opt("seed", true, Act::Silent),
    opt("realtime", true, Act::Silent),
    opt("gdb", true, Act::Notice("not supported (q35dm has no gdb stub)")),
    opt("s", false, Act::Notice("not supported (q35dm has no gdb stub)")),
    opt("d", true, Act::Notice(NO_QEMU_LOG)),
    opt("dfilter", true, Act::Notice(NO_QEMU_LOG)),
    opt("trace", true, Act::Notice(NO_QEMU_LOG)),
    opt("loadvm", true, Act::Notice("not supported (q35dm has no snapshots)")),
    opt("dump-vmstate", true, Act::Notice("not supported")),
    opt("action", true, Act::Notice("ignored (q35dm's reactions are set by -no-shutdown and -no-reboot)")),
    opt("watchdog", true, Act::Notice("not emulated (q35dm has no watchdog)")),
    opt("watchdog-action", true, Act::Notice("not emulated (q35dm has no watchdog)")),
    // Firmware and boot
    opt("boot", true, Act::H(H::Boot)),
    opt("kernel", true, Act::H(H::Kernel)),
    opt("initrd", true, Act::H(H::Initrd)),
    opt("append", true, Act::H(H::Append)),
    opt("dtb", true, Act::Notice("ignored (x86 guests have no device tree)")),
    opt("bios", true, Act::Notice(XEN_FIRMWARE)),
    opt("L", true, Act::Notice(XEN_FIRMWARE)),
    opt("acpitable", true, Act::Notice(XEN_FIRMWARE)),
    opt("smbios", true, Act::Notice(XEN_FIRMWARE)),
    opt("option-rom", true, Act::Notice("not loaded (q35dm provides no option ROMs)")),
    opt("fw_cfg", true, Act::Notice("ignored (q35dm has no fw_cfg device)")),
    // Devices
    opt("device", true, Act::H(H::Device)),
    opt("netdev", true, Act::H(H::Netdev)),
    opt("net", true, Act::H(H::Net)),
    opt("nic", true, Act::H(H::Nic)),
    opt("drive", true, Act::H(H::Drive)),
    opt("hda", true, Act::H(H::Hd(0))),
    opt("hdb", true, Act::H(H::Hd(1))),
    opt("hdc", true, Act::H(H::Hd(2))),
    opt("hdd", true, Act::H(H::Hd(3))),
    opt("cdrom", true, Act::H(H::Cdrom)),
    opt("fda", true, Act::H(H::Floppy(0))),
    opt("fdb", true, Act::H(H::Floppy(1))),
    opt("blockdev", true, Act::Notice(NO_DISKS)),
    opt("snapshot", false, Act::Notice(NO_DISKS)),
    opt("iscsi", true, Act::Notice(NO_DISKS)),
    opt("mtdblock", true, Act::Notice("not emulated (q35dm has no flash or SD devices)")),
    opt("sd", true, Act::Notice("not emulated (q35dm has no flash or SD devices)")),
    opt("pflash", true, Act::Notice("not emulated (q35dm has no flash or SD devices)")),
    opt("fsdev", true, Act::Notice("not emulated (q35dm has no 9p file sharing)")),
    opt("virtfs", true, Act::Notice("not emulated (q35dm has no 9p file sharing)")),
    opt("tpmdev", true, Act::Notice("not emulated (q35dm has no TPM)")),
    opt("usb", false, Act::H(H::Usb)),
    opt("usbdevice", true, Act::H(H::UsbDevice)),
    opt("soundhw", true, Act::H(H::SoundHw)),
    opt("audiodev", true, Act::Notice(NO_SOUND)),
    opt("audio", true, Act::Notice(NO_SOUND)),
    opt("audio-help", false, Act::Silent),
    // Display
    opt("nographic", false, Act::H(H::NoGraphic)),
    opt("display", true, Act::H(H::Display)),
    opt("vnc", true, Act::H(H::Vnc)),
    opt("sdl", false, Act::H(H::Sdl)),
    opt("curses", false, Act::Notice(NO_DISPLAY)),
    opt("spice", true, Act::H(H::Spice)),
    opt("vga", true, Act::H(H::Vga)),
    opt("k", true, Act::H(H::Keymap)),
    opt("full-screen", false, Act::Notice(NO_DISPLAY)),
    opt("portrait", false, Act::Notice(NO_DISPLAY)),
    opt("rotate", true, Act::Notice(NO_DISPLAY)),
    opt("alt-grab", false, Act::Notice(NO_DISPLAY)),
    opt("ctrl-grab", false, Act::Notice(NO_DISPLAY)),
    opt("g", true, Act::Notice(NO_DISPLAY)),
    opt("win2k-hack", false, Act::Notice("ignored (q35dm has no IDE emulation)")),
    opt("no-fd-bootchk", false, Act::Notice("ignored (q35dm has no floppy emulation)")),
];

fn lookup(name: &str) -> Option<&'static OptDef> {
    OPTIONS.iter().find(|d| d.name == name)
}

/// The QEMU options q35dm accepts: `(name, takes_argument)`, in table order.
pub fn known_options() -> impl Iterator<Item = (&'static str, bool)> {
    OPTIONS.iter().map(|d| (d.name, d.arg))
}

/// True if `name` (without dashes) is a QEMU option q35dm knows.
pub fn is_known_option(name: &str) -> bool {
    lookup(name).is_some()
}

/// Why parsing stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyExit {
    /// `-h`, `-help`, `-?`.
    Help,
    /// `-version`.
    Version,
}

/// The result of [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuParse {
    /// The configuration.
    pub config: QemuConfig,
    /// Native `--options` (with their values) that were mixed in, in order, for clap.
    pub native_args: Vec<String>,
    /// Set if a help/version option stopped parsing (the configuration is then partial).
    pub early_exit: Option<EarlyExit>,
}

/// Parses QEMU-style arguments (without argv\[0\]). `native` says which `--long` names are
/// q35dm's own and whether they take a value.
pub fn parse(args: &[String], native: impl Fn(&str) -> Option<NativeOption>) -> Result<QemuParse, CmdlineError> {
    let mut b = Builder::default();
    let mut it = args.iter();
    while let Some(tok) = it.next() {
        if let Some(long) = tok.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if let Some(n) = native(name) {
                b.native.push(tok.clone());
                if n.takes_value && !inline {
                    if let Some(v) = it.next() {
                        b.native.push(v.clone());
                    }
                }
                continue;
            }
        }
        let Some(stripped) = tok.strip_prefix('-') else {
            // QEMU: a bare argument is a disk image, as with -hda.
            b.hd(0, tok);
            continue;
        };
        let name = stripped.strip_prefix('-').unwrap_or(stripped);
        let def = lookup(name).ok_or_else(|| CmdlineError::UnknownOption { option: tok.clone() })?;
        let arg = if def.arg {
            Some(it.next().ok_or_else(|| CmdlineError::MissingArgument { option: tok.clone() })?.as_str())
        } else {
            None
        };
        if let Some(exit) = b.apply(def, arg.unwrap_or_default())? {
            return Ok(QemuParse { config: b.cfg, native_args: b.native, early_exit: Some(exit) });
        }
    }
    let native_args = std::mem::take(&mut b.native);
    Ok(QemuParse { config: b.finish()?, native_args, early_exit: None })
}

#[derive(Default)]
struct Builder {
    cfg: QemuConfig,
    native: Vec<String>,
    notice_keys: HashSet<String>,
    serial_count: usize,
    monitor_count: usize,
    machine_accel: Vec<String>,
    accel_opts: Vec<String>,
}

/// A `BadValue` error for option `-name` with argument `value`.
fn bad(name: &str, value: &str, error: ValueError) -> CmdlineError {
    CmdlineError::BadValue { option: format!("-{name}"), value: value.to_string(), error: Box::new(error) }
}

fn reject_json(name: &str, value: &str) -> Result<(), CmdlineError> {
    if value.starts_with('{') {
        return Err(bad(
            name,
            value,
            ValueError::Invalid {
                key: "syntax".into(),
                value: value.to_string(),
                why: "JSON option syntax is not supported; use key=value,...".into(),
            },
        ));
    }
    Ok(())
}

const ACCELERATORS: &[&str] = &["xen", "kvm", "tcg", "qtest", "hvf", "whpx", "hax", "nvmm"];
const NETDEV_TYPES: &[&str] = &[
    "user",
    "tap",
    "bridge",
    "l2tpv3",
    "socket",
    "stream",
    "dgram",
    "vde",
    "vhost-user",
    "vhost-vdpa",
    "hubport",
    "netmap",
    "af-xdp",
    "vmnet-host",
    "vmnet-shared",
    "vmnet-bridged",
];
const DISPLAY_TYPES: &[&str] =
    &["none", "default", "sdl", "gtk", "curses", "egl-headless", "spice-app", "dbus", "cocoa"];
const VGA_TYPES: &[&str] = &["std", "cirrus", "vmware", "qxl", "xenfb", "tcx", "cg3", "virtio", "none"];
const CACHE_MODES: &[&str] = &["none", "writeback", "writethrough", "directsync", "unsafe"];
const NET_NOTICE: &str = "network backend not created (q35dm emulates no NICs)";
const CHARDEV_REF_KEYS: &[&str] = &["chardev", "indev", "outdev", "primary_in", "secondary_in", "notify_dev"];

impl Builder {
    fn notice(&mut self, option: &str, subject: Option<&str>, reason: &str) {
        let n = Notice { option: option.to_string(), subject: subject.map(str::to_string), reason: reason.to_string() };
        if self.notice_keys.insert(n.key()) {
            self.cfg.notices.push(n);
        }
    }

    fn add_chardev(&mut self, name: &str, value: &str, c: Chardev) -> Result<(), CmdlineError> {
        if self.cfg.chardevs.iter().any(|x| x.id == c.id) {
            return Err(CmdlineError::DuplicateId { option: format!("-{name}"), value: value.to_string(), id: c.id });
        }
        self.cfg.chardevs.push(c);
        Ok(())
    }

    fn hd(&mut self, index: u32, file: &str) {
        self.push_drive(DriveSpec {
            id: None,
            file: Some(PathBuf::from(file)),
            interface: DriveIf::Ide,
            index: Some(index),
            cdrom: false,
            format: None,
            readonly: false,
            props: vec![("file".into(), file.into()), ("index".into(), index.to_string())],
        });
    }

    fn push_drive(&mut self, d: DriveSpec) {
        let reason = match d.interface {
            DriveIf::None => None,
            DriveIf::Ide => Some("not emulated (q35dm has no IDE controller); the guest sees no emulated disk"),
            DriveIf::Scsi => Some("not emulated (q35dm has no SCSI controller); the guest sees no emulated disk"),
            DriveIf::Floppy => Some("not emulated (q35dm has no floppy controller)"),
            DriveIf::Virtio => Some("not emulated (q35dm has no virtio-blk)"),
            DriveIf::Xen => Some("not provided (q35dm has no Xen PV disk backend)"),
            DriveIf::Pflash | DriveIf::Mtd | DriveIf::Sd => Some("not emulated (q35dm has no flash or SD devices)"),
        };
        if let Some(r) = reason {
            let subject = format!("if={}", d.interface.as_str());
            self.notice("-drive", Some(&subject), r);
        }
        self.cfg.drives.push(d);
    }

    /// Handles one option; returns `Some` to stop parsing (help/version).
    fn apply(&mut self, def: &OptDef, a: &str) -> Result<Option<EarlyExit>, CmdlineError> {
        let name = def.name;
        let kv = |implied: Option<&str>| KvList::parse(a, implied).map_err(|e| bad(name, a, e));
        let h = match def.act {
            Act::H(h) => h,
            Act::Silent => return Ok(None),
            Act::Notice(reason) => {
                self.notice(&format!("-{name}"), None, reason);
                return Ok(None);
            }
            Act::Unsupported(reason) => {
                return Err(CmdlineError::Unsupported { option: format!("-{name}"), reason });
            }
        };
        let c = &mut self.cfg;
        match h {
            H::XenDomid => {
                let n = parse_decimal("domid", a)
                    .and_then(|n| in_range("domid", a, n, 0, u64::from(DOMID_FIRST_RESERVED) - 1))
                    .map_err(|e| bad(name, a, e))?;
                c.domid = Some(u16::try_from(n).map_err(|_| bad(name, a, out_of_range("domid", a)))?);
            }
            H::XenDomidRestrict => c.restrict.xen_domid_restrict = true,
            H::NoShutdown => c.no_shutdown = true,
            H::NoReboot => c.no_reboot = true,
            H::Paused => c.start_paused = true,
            H::NoUserConfig => c.no_user_config = true,
            H::NoDefaults => c.nodefaults = true,
            H::NoGraphic => c.display.nographic = true,
            H::NoAcpi => c.acpi = false,
            H::Kernel => c.kernel = Some(PathBuf::from(a)),
            H::Initrd => c.initrd = Some(PathBuf::from(a)),
            H::Append => c.append = Some(a.to_string()),
            H::LogFile => c.log_file = Some(PathBuf::from(a)),
            H::PidFile => c.pidfile = Some(PathBuf::from(a)),
            H::Help => return Ok(Some(EarlyExit::Help)),
            H::Version => return Ok(Some(EarlyExit::Version)),
            H::Name => {
                let l = kv(Some("guest"))?;
                l.check_keys(&["guest", "process", "debug-threads"]).map_err(|e| bad(name, a, e))?;
                l.get_bool("debug-threads").map_err(|e| bad(name, a, e))?;
                self.cfg.name = l.get("guest").map(str::to_string);
            }
            H::Uuid => {
                if !is_uuid(a) {
                    return Err(bad(
                        name,
                        a,
                        ValueError::Invalid {
                            key: "uuid".into(),
                            value: a.into(),
                            why: "expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex)".into(),
                        },
                    ));
                }
                c.uuid = Some(a.to_string());
            }
            H::Chardev => {
                reject_json(name, a)?;
                let l = kv(Some("backend"))?;
                let (id, backend) = chardev::from_kv(&l).map_err(|e| bad(name, a, e))?;
                let mux = l.get_bool("mux").map_err(|e| bad(name, a, e))?.unwrap_or(false);
                let cd = Chardev { id, backend, mux, origin: ChardevOrigin::Chardev, props: l.into_items() };
                self.add_chardev(name, a, cd)?;
            }
            H::Mon => {
                let l = kv(Some("chardev"))?;
                l.check_keys(&["chardev", "mode", "pretty", "id"]).map_err(|e| bad(name, a, e))?;
                let chardev = l.require("chardev").map_err(|e| bad(name, a, e))?.to_string();
                let mode = match l.get_choice("mode", &["readline", "control"]).map_err(|e| bad(name, a, e))? {
                    Some("control") => MonitorMode::Control,
                    _ => MonitorMode::Readline,
                };
                let pretty = l.get_bool("pretty").map_err(|e| bad(name, a, e))?.unwrap_or(false);
                self.cfg.monitors.push(Monitor { chardev, mode, pretty });
            }
            H::Monitor => self.legacy_monitor(name, a, MonitorMode::Readline, false)?,
            H::Qmp => self.legacy_monitor(name, a, MonitorMode::Control, false)?,
            H::QmpPretty => self.legacy_monitor(name, a, MonitorMode::Control, true)?,
            H::Serial => self.serial(name, a)?,
            H::Parallel => {
                if chardev::parse_legacy(a).map_err(|e| bad(name, a, e))? != LegacySpec::None {
                    self.notice("-parallel", None, "not emulated (q35dm has no parallel port)");
                }
            }
            H::Memory => self.memory(name, a)?,
            H::Smp => self.smp(name, a)?,
            H::Machine => self.machine(name, a)?,
            H::Accel => {
                let l = kv(Some("accel"))?;
                let acc = l.require("accel").map_err(|e| bad(name, a, e))?;
                let acc = accelerator(acc).map_err(|e| bad(name, a, e))?;
                self.accel_opts.push(acc);
            }
            H::EnableKvm => self.accel_opts.push("kvm".to_string()),
            H::Boot => self.boot(name, a)?,
            H::Device => self.device(name, a)?,
            H::Netdev => {
                reject_json(name, a)?;
                let l = kv(Some("type"))?;
                let kind = l.get_choice("type", NETDEV_TYPES).map_err(|e| bad(name, a, e))?;
                let kind = kind.ok_or_else(|| bad(name, a, ValueError::MissingKey { key: "type".into() }))?.to_string();
                let id = l.require("id").and_then(|v| check_id("id", v)).map_err(|e| bad(name, a, e))?.to_string();
                if self.cfg.netdevs.iter().any(|n| n.id == id) {
                    return Err(CmdlineError::DuplicateId { option: "-netdev".into(), value: a.into(), id });
                }
                self.notice("-netdev", Some(&kind), NET_NOTICE);
                self.cfg.netdevs.push(NetdevSpec { kind, id, props: l.into_items() });
            }
            H::Net | H::Nic => {
                let l = kv(Some("type"))?;
                let kind = l.require("type").map_err(|e| bad(name, a, e))?;
                let is_net = matches!(h, H::Net);
                if kind == "none" {
                    self.cfg.net_none = true;
                } else if is_net && kind == "nic" {
                    self.notice("-net", Some("nic"), Category::Network.reason());
                } else if NETDEV_TYPES.contains(&kind) {
                    let reason = if is_net { NET_NOTICE } else { Category::Network.reason() };
                    self.notice(&format!("-{name}"), Some(kind), reason);
                } else {
                    let mut accepted = vec!["none"];
                    if is_net {
                        accepted.push("nic");
                    }
                    accepted.extend_from_slice(NETDEV_TYPES);
                    return Err(bad(
                        name,
                        a,
                        ValueError::BadChoice { key: "type".into(), value: kind.into(), accepted: accepted.join(", ") },
                    ));
                }
            }
            H::Drive => self.drive(name, a)?,
            H::Hd(i) => self.hd(i, a),
            H::Cdrom => {
                self.push_drive(DriveSpec {
                    id: None,
                    file: Some(PathBuf::from(a)),
                    interface: DriveIf::Ide,
                    index: Some(2),
                    cdrom: true,
                    format: None,
                    readonly: true,
                    props: vec![
                        ("file".into(), a.into()),
                        ("index".into(), "2".into()),
                        ("media".into(), "cdrom".into()),
                    ],
                });
            }
            H::Floppy(i) => {
                self.push_drive(DriveSpec {
                    id: None,
                    file: Some(PathBuf::from(a)),
                    interface: DriveIf::Floppy,
                    index: Some(i),
                    cdrom: false,
                    format: None,
                    readonly: false,
                    props: vec![("file".into(), a.into()), ("index".into(), i.to_string())],
                });
            }
            H::Vnc => self.vnc(name, a)?,
            H::Display => {
                reject_json(name, a)?;
                if let Some(rest) = a.strip_prefix("vnc") {
                    // QEMU's legacy "-display vnc=<display>".
                    let Some(spec) = rest.strip_prefix('=') else {
                        return Err(bad(
                            name,
                            a,
                            ValueError::Invalid {
                                key: "type".into(),
                                value: a.into(),
                                why: "VNC requires a display argument vnc=<display>".into(),
                            },
                        ));
                    };
                    self.vnc(name, spec)?;
                    self.cfg.display.display = Some("vnc".to_string());
                } else {
                    let l = kv(Some("type"))?;
                    let t = l.get_choice("type", DISPLAY_TYPES).map_err(|e| bad(name, a, e))?;
                    let t = t.ok_or_else(|| bad(name, a, ValueError::MissingKey { key: "type".into() }))?.to_string();
                    if t != "none" {
                        self.notice("-display", Some(&t), "not provided (q35dm has no display)");
                    }
                    self.cfg.display.display = Some(t);
                }
            }
            H::Sdl => {
                c.display.display = Some("sdl".to_string());
                self.notice("-sdl", None, "not provided (q35dm has no display)");
            }
            H::Vga => {
                if !VGA_TYPES.contains(&a) {
                    return Err(bad(
                        name,
                        a,
                        ValueError::BadChoice { key: "vga".into(), value: a.into(), accepted: VGA_TYPES.join(", ") },
                    ));
                }
                c.display.vga = Some(a.to_string());
                if a != "none" {
                    self.notice("-vga", Some(a), Category::Display.reason());
                }
            }
            H::Spice => {
                kv(None)?;
                c.display.spice = true;
                self.notice("-spice", None, "not provided (q35dm has no SPICE server); SPICE clients cannot connect");
            }
            H::Keymap => {
                c.display.keymap = Some(a.to_string());
                self.notice("-k", None, "ignored (q35dm has no display or keyboard input)");
            }
            H::Usb => {
                c.usb = true;
                self.notice("-usb", None, Category::Usb.reason());
            }
            H::UsbDevice => {
                let dev = a.split(':').next().unwrap_or_default();
                if dev.is_empty() {
                    return Err(bad(name, a, empty("usbdevice")));
                }
                self.notice("-usbdevice", Some(dev), Category::Usb.reason());
            }
            H::SoundHw => {
                if a.is_empty() || a.split(',').any(str::is_empty) {
                    return Err(bad(name, a, empty("soundhw")));
                }
                for card in a.split(',') {
                    self.notice("-soundhw", Some(card), Category::Sound.reason());
                }
            }
            H::Incoming => self.incoming(name, a)?,
            H::Chroot => {
                if a.is_empty() {
                    return Err(bad(name, a, empty("chroot")));
                }
                c.restrict.chroot = Some(PathBuf::from(a));
            }
            H::RunAs => c.restrict.runas = Some(parse_runas(a).map_err(|e| bad(name, a, e))?),
            H::RunWith => {
                let l = kv(None)?;
                l.check_keys(&["async-teardown", "chroot", "user", "exit-with-parent"]).map_err(|e| bad(name, a, e))?;
                l.get_bool("async-teardown").map_err(|e| bad(name, a, e))?;
                l.get_bool("exit-with-parent").map_err(|e| bad(name, a, e))?;
                if let Some(dir) = l.get("chroot") {
                    if dir.is_empty() {
                        return Err(bad(name, a, empty("chroot")));
                    }
                    self.cfg.restrict.chroot = Some(PathBuf::from(dir));
                }
                if let Some(u) = l.get("user") {
                    self.cfg.restrict.runas = Some(parse_runas(u).map_err(|e| bad(name, a, e))?);
                }
            }
            H::Object => {
                reject_json(name, a)?;
                let l = kv(Some("qom-type"))?;
                let qom_type = l.require("qom-type").map_err(|e| bad(name, a, e))?.to_string();
                let id = l.require("id").and_then(|v| check_id("id", v)).map_err(|e| bad(name, a, e))?.to_string();
                if self.cfg.objects.iter().any(|o| o.id == id) {
                    return Err(CmdlineError::DuplicateId { option: "-object".into(), value: a.into(), id });
                }
                let reason = match qom_type.as_str() {
                    "filter-mirror" | "filter-redirector" | "filter-rewriter" | "colo-compare" => {
                        "not created (q35dm has no COLO network proxy)"
                    }
                    "iothread" => "ignored (q35dm has no iothreads)",
                    t if t.starts_with("memory-backend-") => XEN_MEMORY,
                    _ => "not created (q35dm has no objects of this type)",
                };
                self.notice("-object", Some(&qom_type), reason);
                self.cfg.objects.push(ObjectSpec { qom_type, id, props: l.into_items() });
            }
            H::Global => {
                let driver = parse_global(a).map_err(|e| bad(name, a, e))?;
                self.notice("-global", Some(&driver), "ignored (q35dm does not apply -global property defaults)");
            }
            H::Msg => {
                let l = kv(None)?;
                l.check_keys(&["timestamp", "guest-name"]).map_err(|e| bad(name, a, e))?;
                l.get_bool("timestamp").map_err(|e| bad(name, a, e))?;
                l.get_bool("guest-name").map_err(|e| bad(name, a, e))?;
            }
        }
        Ok(None)
    }

    fn legacy_monitor(&mut self, name: &str, a: &str, mode: MonitorMode, pretty: bool) -> Result<(), CmdlineError> {
        let spec = chardev::parse_legacy(a).map_err(|e| bad(name, a, e))?;
        match spec {
            LegacySpec::None => {}
            LegacySpec::Existing(id) => {
                self.cfg.monitors.push(Monitor { chardev: id, mode, pretty });
                self.monitor_count += 1;
            }
            LegacySpec::New { backend, props, mux_monitor } => {
                let id = format!("compat_monitor{}", self.monitor_count);
                self.monitor_count += 1;
                self.add_chardev(
                    name,
                    a,
                    Chardev { id: id.clone(), backend, mux: mux_monitor, origin: ChardevOrigin::Monitor, props },
                )?;
                if mux_monitor && mode != MonitorMode::Readline {
                    self.cfg.monitors.push(Monitor { chardev: id.clone(), mode: MonitorMode::Readline, pretty: false });
                }
                self.cfg.monitors.push(Monitor { chardev: id, mode, pretty });
            }
        }
        Ok(())
    }

    fn serial(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        let spec = chardev::parse_legacy(a).map_err(|e| bad(name, a, e))?;
        if spec == LegacySpec::None {
            return Ok(());
        }
        let index = self.serial_count;
        if index >= MAX_SERIAL_PORTS {
            return Err(CmdlineError::TooMany { option: "-serial".into(), value: a.into(), max: MAX_SERIAL_PORTS });
        }
        self.serial_count += 1;
        let chardev = match spec {
            LegacySpec::Existing(id) => id,
            LegacySpec::New { backend, props, mux_monitor } => {
                let id = format!("serial{index}");
                self.add_chardev(
                    name,
                    a,
                    Chardev { id: id.clone(), backend, mux: mux_monitor, origin: ChardevOrigin::Serial(index), props },
                )?;
                if mux_monitor {
                    self.cfg.monitors.push(Monitor { chardev: id.clone(), mode: MonitorMode::Readline, pretty: false });
                }
                id
            }
            LegacySpec::None => return Ok(()),
        };
        self.cfg.serials.push(SerialPort { index, chardev });
        Ok(())
    }

    fn memory(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        const MIB: u64 = 1 << 20;
        let l = KvList::parse(a, Some("size")).map_err(|e| bad(name, a, e))?;
        l.check_keys(&["size", "slots", "maxmem"]).map_err(|e| bad(name, a, e))?;
        let s = l.require("size").map_err(|e| bad(name, a, e))?;
        if s.is_empty() {
            return Err(bad(name, a, empty("size")));
        }
        // QEMU first parses the size with bytes as the default unit (so "1.5" is rejected), then
        // appends "M" to a size ending in a digit; maxmem keeps bytes as the default unit.
        opts::parse_size("size", s, 1).map_err(|e| bad(name, a, e))?;
        let unit = if s.ends_with(|c: char| c.is_ascii_digit()) { MIB } else { 1 };
        let size = opts::parse_size("size", s, unit).map_err(|e| bad(name, a, e))?;
        if size == 0 {
            return Err(bad(
                name,
                a,
                ValueError::Invalid { key: "size".into(), value: s.into(), why: "memory size must not be zero".into() },
            ));
        }
        let size = size.checked_next_multiple_of(8192).ok_or_else(|| bad(name, a, out_of_range("size", s)))?;
        let maxmem = l.get_size("maxmem", 1).map_err(|e| bad(name, a, e))?;
        if let Some(m) = maxmem {
            if m < size {
                return Err(bad(
                    name,
                    a,
                    ValueError::Invalid {
                        key: "maxmem".into(),
                        value: l.get("maxmem").unwrap_or_default().into(),
                        why: format!("must be at least the initial memory size ({size} bytes)"),
                    },
                ));
            }
        }
        let slots = l.get_number("slots").map_err(|e| bad(name, a, e))?;
        self.cfg.memory = Some(Memory { size_bytes: size, maxmem_bytes: maxmem, slots });
        Ok(())
    }

    fn smp(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        let l = KvList::parse(a, Some("cpus")).map_err(|e| bad(name, a, e))?;
        l.check_keys(&[
            "cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads", "books", "drawers", "modules",
        ])
        .map_err(|e| bad(name, a, e))?;
        let num = |k: &str| -> Result<Option<u32>, CmdlineError> {
            match l.get_number(k).map_err(|e| bad(name, a, e))? {
                None => Ok(None),
                Some(n) => {
                    let v = l.get(k).unwrap_or_default();
                    let n = in_range(k, v, n, 1, u64::from(u32::MAX)).map_err(|e| bad(name, a, e))?;
                    Ok(Some(u32::try_from(n).map_err(|_| bad(name, a, out_of_range(k, v)))?))
                }
            }
        };
        let (cpus, maxcpus) = (num("cpus")?, num("maxcpus")?);
        let (sockets, dies, clusters, cores, threads) =
            (num("sockets")?, num("dies")?, num("clusters")?, num("cores")?, num("threads")?);
        let topo = [sockets, dies, clusters, cores, threads];
        let topo_product = if topo.iter().any(Option::is_some) {
            topo.iter().try_fold(1u32, |acc, v| acc.checked_mul(v.unwrap_or(1)))
        } else {
            None
        };
        let cpus = cpus.or(maxcpus).or(topo_product).unwrap_or(1);
        let maxcpus = maxcpus.unwrap_or(cpus);
        if cpus > maxcpus {
            return Err(bad(
                name,
                a,
                ValueError::Invalid {
                    key: "maxcpus".into(),
                    value: maxcpus.to_string(),
                    why: format!("must be at least cpus ({cpus})"),
                },
            ));
        }
        self.cfg.smp = Some(Smp { cpus, maxcpus, sockets, dies, clusters, cores, threads });
        Ok(())
    }

    fn machine(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        reject_json(name, a)?;
        let l = KvList::parse(a, Some("type")).map_err(|e| bad(name, a, e))?;
        for (k, v) in l.items() {
            match k.as_str() {
                "type" => {
                    let kind = machine_kind(v).map_err(|e| bad(name, a, e))?;
                    self.cfg.machine.kind = Some(kind);
                    self.cfg.machine.type_name = Some(v.clone());
                    continue;
                }
                "accel" => {
                    self.machine_accel =
                        v.split(':').map(accelerator).collect::<Result<Vec<_>, _>>().map_err(|e| bad(name, a, e))?;
                }
                "max-ram-below-4g" => {
                    let n = opts::parse_size(k, v, 1).map_err(|e| bad(name, a, e))?;
                    if n > 1 << 32 {
                        return Err(bad(
                            name,
                            a,
                            ValueError::OutOfRange { key: k.clone(), value: v.clone(), range: "at most 4G".into() },
                        ));
                    }
                    self.cfg.machine.max_ram_below_4g = Some(n);
                }
                "igd-passthru" => self.cfg.machine.igd_passthru = parse_bool(k, v).map_err(|e| bad(name, a, e))?,
                "acpi" => {
                    self.cfg.acpi = match v.as_str() {
                        "auto" => true,
                        _ => parse_bool(k, v).map_err(|e| bad(name, a, e))?,
                    }
                }
                "suppress-vmdesc" | "usb" | "graphics" | "vmport" | "hpet" | "smm" if v != "auto" => {
                    parse_bool(k, v).map_err(|e| bad(name, a, e))?;
                }
                _ => {}
            }
            self.cfg.machine.props.push((k.clone(), v.clone()));
        }
        Ok(())
    }

    fn boot(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        let l = KvList::parse(a, Some("order")).map_err(|e| bad(name, a, e))?;
        l.check_keys(&["order", "once", "menu", "splash", "splash-time", "reboot-timeout", "strict"])
            .map_err(|e| bad(name, a, e))?;
        for key in ["order", "once"] {
            if let Some(v) = l.get(key) {
                check_boot_devices(key, v).map_err(|e| bad(name, a, e))?;
            }
        }
        let menu = l.get_bool("menu").map_err(|e| bad(name, a, e))?;
        l.get_bool("strict").map_err(|e| bad(name, a, e))?;
        l.get_number("splash-time").map_err(|e| bad(name, a, e))?;
        l.get_number("reboot-timeout").map_err(|e| bad(name, a, e))?;
        self.cfg.boot = Some(Boot {
            order: l.get("order").map(str::to_string),
            once: l.get("once").map(str::to_string),
            menu,
            props: l.into_items(),
        });
        Ok(())
    }

    fn device(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        reject_json(name, a)?;
        let l = KvList::parse(a, Some("driver")).map_err(|e| bad(name, a, e))?;
        let parts = devices::parts_from_kv(&l).map_err(|e| bad(name, a, e))?;
        let DeviceSpecParts { driver, class, id, bus, addr, hostaddr } = parts;
        match class {
            DriverClass::Emulated => {}
            DriverClass::NotEmulated(cat) => self.notice("-device", Some(&driver), cat.reason()),
            DriverClass::Unknown => self.notice("-device", Some(&driver), devices::UNKNOWN_REASON),
        }
        if let Some(id) = &id {
            if self.cfg.devices.iter().any(|d| d.id.as_ref() == Some(id)) {
                return Err(CmdlineError::DuplicateId { option: "-device".into(), value: a.into(), id: id.clone() });
            }
        }
        let props = l.into_items().into_iter().filter(|(k, _)| k != "driver").collect();
        self.cfg.devices.push(super::config::DeviceSpec { driver, class, id, bus, addr, hostaddr, props });
        Ok(())
    }

    fn drive(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        let l = KvList::parse(a, None).map_err(|e| bad(name, a, e))?;
        let e = |err| bad(name, a, err);
        let interface = match l.get("if") {
            None => DriveIf::Ide,
            Some(v) => DriveIf::from_name(v).ok_or_else(|| {
                e(ValueError::BadChoice {
                    key: "if".into(),
                    value: v.into(),
                    accepted: "none, ide, scsi, floppy, pflash, mtd, sd, virtio, xen".into(),
                })
            })?,
        };
        let cdrom = l.get_choice("media", &["disk", "cdrom"]).map_err(e)? == Some("cdrom");
        let index = match l.get_number("index").map_err(e)? {
            Some(n) => {
                Some(u32::try_from(n).map_err(|_| e(out_of_range("index", l.get("index").unwrap_or_default())))?)
            }
            None => None,
        };
        let readonly = match l.get_bool("readonly").map_err(e)? {
            Some(r) => r,
            None => l.get_bool("read-only").map_err(e)?.unwrap_or(false),
        };
        l.get_choice("cache", CACHE_MODES).map_err(e)?;
        let id = l.get_id("id").map_err(e)?.map(str::to_string);
        if let Some(id) = &id {
            if self.cfg.drives.iter().any(|d| d.id.as_ref() == Some(id)) {
                return Err(CmdlineError::DuplicateId { option: "-drive".into(), value: a.into(), id: id.clone() });
            }
        }
        let file = l.get("file").map(PathBuf::from);
        let format = l.get("format").map(str::to_string);
        self.push_drive(DriveSpec { id, file, interface, index, cdrom, format, readonly, props: l.into_items() });
        Ok(())
    }

    fn vnc(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        let l = KvList::parse(a, Some("vnc")).map_err(|e| bad(name, a, e))?;
        let display = l.require("vnc").map_err(|e| bad(name, a, e))?;
        let enabled = display != "none";
        if enabled {
            let ok = match display.strip_prefix("unix:") {
                Some(path) => !path.is_empty(),
                None => display.rsplit_once(':').is_some_and(|(_, n)| parse_decimal("display", n).is_ok()),
            };
            if !ok {
                return Err(bad(
                    name,
                    a,
                    ValueError::Invalid {
                        key: "display".into(),
                        value: display.into(),
                        why: "expected [HOST]:DISPLAY, unix:PATH or none".into(),
                    },
                ));
            }
        }
        let to = l.get_number("to").map_err(|e| bad(name, a, e))?;
        let password = l.get_bool("password").map_err(|e| bad(name, a, e))?.unwrap_or(false);
        let vnc = Vnc { spec: a.to_string(), enabled, display: enabled.then(|| display.to_string()), to, password };
        self.cfg.display.vnc = Some(vnc);
        if enabled {
            self.notice("-vnc", None, "VNC server not provided (q35dm has no display)");
        }
        Ok(())
    }

    fn incoming(&mut self, name: &str, a: &str) -> Result<(), CmdlineError> {
        reject_json(name, a)?;
        let inc = if a == "defer" {
            Incoming::Defer
        } else if let Some(fd) = a.strip_prefix("fd:") {
            let n = parse_decimal("fd", fd).map_err(|e| bad(name, a, e))?;
            Incoming::Fd(i32::try_from(n).map_err(|_| bad(name, a, out_of_range("fd", fd)))?)
        } else {
            let scheme = a.split_once(':').map(|(s, _)| s).unwrap_or_default();
            if !["tcp", "unix", "exec", "rdma", "file", "vsock"].contains(&scheme) {
                return Err(bad(
                    name,
                    a,
                    ValueError::Invalid {
                        key: "uri".into(),
                        value: a.into(),
                        why: "expected fd:N, defer, tcp:..., unix:..., exec:..., rdma:..., file:... or vsock:..."
                            .into(),
                    },
                ));
            }
            Incoming::Uri(a.to_string())
        };
        match &inc {
            Incoming::Fd(_) => {}
            Incoming::Defer => {
                self.notice("-incoming", Some("defer"), "not supported (q35dm restores only from fd:N, as libxl does)")
            }
            Incoming::Uri(u) => {
                let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or_default().to_string();
                self.notice("-incoming", Some(&scheme), "not supported (q35dm restores only from fd:N, as libxl does)");
            }
        }
        self.cfg.incoming = Some(inc);
        Ok(())
    }

    /// Cross-checks and notices that need the whole command line.
    fn finish(mut self) -> Result<QemuConfig, CmdlineError> {
        // -initrd/-append need -kernel (QEMU's qemu_validate_options).
        if self.cfg.kernel.is_none() {
            if self.cfg.initrd.is_some() {
                return Err(CmdlineError::Requires { option: "-initrd".into(), requires: "-kernel" });
            }
            if self.cfg.append.is_some() {
                return Err(CmdlineError::Requires { option: "-append".into(), requires: "-kernel" });
            }
        }
        // Accelerators.
        if !self.machine_accel.is_empty() && !self.accel_opts.is_empty() {
            return Err(CmdlineError::Conflict {
                first: format!("-machine accel={}", self.machine_accel.join(":")),
                second: format!("-accel {}", self.accel_opts.join(" -accel ")),
            });
        }
        let accel = if self.accel_opts.is_empty() {
            std::mem::take(&mut self.machine_accel)
        } else {
            std::mem::take(&mut self.accel_opts)
        };
        for acc in &accel {
            if acc != "xen" {
                self.notice("-accel", Some(acc), "ignored (q35dm runs on Xen or on its simulator, see --accel)");
            }
        }
        self.cfg.machine.accel = accel;
        // Machine type.
        if let (Some(kind), Some(t)) = (self.cfg.machine.kind, self.cfg.machine.type_name.clone()) {
            let reason = match kind {
                MachineKind::Xenfv => Some(
                    "i440FX/PIIX3 chipset not emulated; q35dm presents a Q35/ICH9 chipset (with the Xen platform device)",
                ),
                MachineKind::Pc => Some("i440FX/PIIX3 chipset not emulated; q35dm presents a Q35/ICH9 chipset"),
                MachineKind::Xenpv => Some("PV backends not provided (q35dm serves HVM guests only)"),
                MachineKind::None | MachineKind::Q35 => None,
            };
            if let Some(r) = reason {
                self.notice("-machine", Some(&t), r);
            }
        }
        if self.cfg.machine.igd_passthru {
            self.notice("-machine", Some("igd-passthru"), "not supported (q35dm has no IGD passthrough quirks)");
        }
        self.check_references()?;
        self.chardev_notices();
        self.drive_notices();
        Ok(self.cfg)
    }

    fn check_references(&self) -> Result<(), CmdlineError> {
        let c = &self.cfg;
        let chardev_ids: HashSet<&str> = c.chardevs.iter().map(|x| x.id.as_str()).collect();
        let netdev_ids: HashSet<&str> = c.netdevs.iter().map(|x| x.id.as_str()).collect();
        let drive_ids: HashSet<&str> = c.drives.iter().filter_map(|x| x.id.as_deref()).collect();
        let missing = |option: &str, what: &'static str, id: &str| CmdlineError::UnknownReference {
            option: option.to_string(),
            what,
            id: id.to_string(),
        };
        for m in &c.monitors {
            if !chardev_ids.contains(m.chardev.as_str()) {
                return Err(missing("-mon", "chardev", &m.chardev));
            }
        }
        for s in &c.serials {
            if !chardev_ids.contains(s.chardev.as_str()) {
                return Err(missing("-serial", "chardev", &s.chardev));
            }
        }
        for d in &c.devices {
            for (k, v) in &d.props {
                let ok = match k.as_str() {
                    "chardev" => chardev_ids.contains(v.as_str()),
                    "netdev" => netdev_ids.contains(v.as_str()),
                    "drive" => drive_ids.contains(v.as_str()),
                    _ => true,
                };
                if !ok {
                    return Err(missing("-device", key_what(k), v));
                }
            }
        }
        for o in &c.objects {
            for (k, v) in &o.props {
                let ok = match k.as_str() {
                    "netdev" => netdev_ids.contains(v.as_str()),
                    k if CHARDEV_REF_KEYS.contains(&k) => chardev_ids.contains(v.as_str()),
                    _ => true,
                };
                if !ok {
                    return Err(missing("-object", key_what(k), v));
                }
            }
        }
        for n in &c.netdevs {
            if let Some(v) = n.prop("chardev") {
                if !chardev_ids.contains(v) {
                    return Err(missing("-netdev", "chardev", v));
                }
            }
        }
        Ok(())
    }

    fn chardev_notices(&mut self) {
        let c = &self.cfg;
        let mut used: BTreeSet<String> = BTreeSet::new();
        let mut frontends: BTreeSet<String> = BTreeSet::new();
        for m in &c.monitors {
            used.insert(m.chardev.clone());
            frontends.insert(m.chardev.clone());
        }
        for s in &c.serials {
            used.insert(s.chardev.clone());
            frontends.insert(s.chardev.clone());
        }
        let props = c
            .devices
            .iter()
            .flat_map(|d| d.props.iter())
            .chain(c.objects.iter().flat_map(|o| o.props.iter()))
            .chain(c.netdevs.iter().flat_map(|n| n.props.iter()));
        for (k, v) in props {
            if CHARDEV_REF_KEYS.contains(&k.as_str()) {
                used.insert(v.clone());
            }
        }
        let mut out = Vec::new();
        for cd in &c.chardevs {
            if !used.contains(&cd.id) {
                let reason = if cd.id.starts_with("libxl-channel") {
                    "not connected (xl channels need QEMU's Xen console backend, which q35dm does not provide)"
                } else {
                    "not connected (no monitor, serial port or device uses it)"
                };
                out.push((cd.id.clone(), reason.to_string()));
            } else if frontends.contains(&cd.id) && !cd.backend.is_supported() {
                out.push((
                    cd.id.clone(),
                    format!(
                        "backend '{}' not implemented by q35dm; its monitor or serial port is not connected",
                        cd.backend.name()
                    ),
                ));
            }
        }
        for (id, reason) in out {
            self.notice("-chardev", Some(&id), &reason);
        }
    }

    fn drive_notices(&mut self) {
        let used: HashSet<String> =
            self.cfg.devices.iter().filter_map(|d| d.prop("drive")).map(str::to_string).collect();
        let unused: Vec<String> = self
            .cfg
            .drives
            .iter()
            .filter(|d| d.interface == DriveIf::None)
            .filter(|d| !d.id.as_ref().is_some_and(|id| used.contains(id)))
            .map(|d| d.id.clone().unwrap_or_else(|| "if=none".to_string()))
            .collect();
        for subject in unused {
            self.notice("-drive", Some(&subject), "not used by any device");
        }
    }
}

fn key_what(k: &str) -> &'static str {
    match k {
        "netdev" => "netdev",
        "drive" => "drive",
        _ => "chardev",
    }
}

fn out_of_range(key: &str, value: &str) -> ValueError {
    ValueError::OutOfRange { key: key.to_string(), value: value.to_string(), range: "a smaller number".into() }
}

fn empty(key: &str) -> ValueError {
    ValueError::Invalid { key: key.to_string(), value: String::new(), why: "must not be empty".into() }
}

fn accelerator(s: &str) -> Result<String, ValueError> {
    if ACCELERATORS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(ValueError::BadChoice { key: "accel".into(), value: s.into(), accepted: ACCELERATORS.join(", ") })
    }
}

fn machine_kind(t: &str) -> Result<MachineKind, ValueError> {
    let versioned = |prefix: &str| t.strip_prefix(prefix).is_some_and(|v| !v.is_empty());
    Ok(match t {
        "none" => MachineKind::None,
        "xenfv" => MachineKind::Xenfv,
        "xenpv" => MachineKind::Xenpv,
        "pc" => MachineKind::Pc,
        "q35" => MachineKind::Q35,
        _ if versioned("xenfv-") => MachineKind::Xenfv,
        _ if versioned("pc-i440fx-") => MachineKind::Pc,
        _ if versioned("pc-q35-") => MachineKind::Q35,
        _ => {
            return Err(ValueError::BadChoice {
                key: "type".into(),
                value: t.into(),
                accepted: "none, xenfv[-X.Y], pc, pc-i440fx-X.Y, q35, pc-q35-X.Y, xenpv".into(),
            })
        }
    })
}

fn check_boot_devices(key: &str, v: &str) -> Result<(), ValueError> {
    let mut seen = HashSet::new();
    for ch in v.chars() {
        if !('a'..='p').contains(&ch) {
            return Err(ValueError::Invalid {
                key: key.into(),
                value: v.into(),
                why: format!("invalid boot device '{ch}' (expected letters a..p)"),
            });
        }
        if !seen.insert(ch) {
            return Err(ValueError::Invalid {
                key: key.into(),
                value: v.into(),
                why: format!("boot device '{ch}' given twice"),
            });
        }
    }
    Ok(())
}

/// `-runas`: `UID:GID` (decimal) or a user name.
fn parse_runas(s: &str) -> Result<RunAs, ValueError> {
    if s.is_empty() {
        return Err(empty("user"));
    }
    match s.split_once(':') {
        Some((u, g)) => Ok(RunAs::Ids {
            uid: u32::try_from(parse_decimal("uid", u)?).map_err(|_| out_of_range("uid", u))?,
            gid: u32::try_from(parse_decimal("gid", g)?).map_err(|_| out_of_range("gid", g))?,
        }),
        None => Ok(RunAs::User(s.to_string())),
    }
}

/// `-global DRIVER.PROP=VALUE` or `-global driver=D,property=P,value=V`; returns the driver.
fn parse_global(s: &str) -> Result<String, ValueError> {
    if s.starts_with("driver=") {
        let l = KvList::parse(s, None)?;
        l.check_keys(&["driver", "property", "value"])?;
        let d = l.require("driver")?;
        l.require("property")?;
        l.require("value")?;
        return Ok(d.to_string());
    }
    let invalid = || ValueError::Invalid {
        key: "global".into(),
        value: s.into(),
        why: "expected DRIVER.PROPERTY=VALUE or driver=D,property=P,value=V".into(),
    };
    let (lhs, _) = s.split_once('=').ok_or_else(invalid)?;
    let (driver, prop) = lhs.split_once('.').ok_or_else(invalid)?;
    if driver.is_empty() || prop.is_empty() {
        return Err(invalid());
    }
    Ok(driver.to_string())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromStr for RunAs {
    type Err = ValueError;

    /// `UID:GID` (decimal) or a user name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_runas(s)
    }
}
