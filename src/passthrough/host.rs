//! The host function: what the device model reads and writes of it, behind [`HostDevice`].
//!
//! [`SysfsDevice`] is the real implementation over a sysfs directory
//! `<root>/SSSS:BB:DD.F/` (root default [`DEFAULT_SYSFS_ROOT`], configurable so tests run it
//! against a fake tree):
//!
//! | file | use |
//! |---|---|
//! | `config` | `pread`/`pwrite` at the register offset (the kernel turns them into config cycles; 256 or 4096 bytes, only 64 for non-root readers) |
//! | `resource` | the first 7 lines, `start end flags` in hex: BARs 0-5 and the ROM (linux `resource_show`); size = end-start+1 when start ≠ 0 (QEMU's rule) |
//! | `resourceN` | BAR contents for the accesses q35dm traps instead of mapping (sub-page BARs, the rest of the MSI-X table pages): `mmap` for memory BARs (width-exact volatile accesses), `pread`/`pwrite` for I/O BARs |
//! | `irq` | decimal machine IRQ (GSI) for INTx |
//! | `vendor`, `device` | `0x%04x` IDs (authoritative over the config bytes) |
//! | `reset` | writing `1` resets the function (what libxl uses without pciback's `do_flr`) |
//!
//! [`MemHost`] is an in-memory implementation for unit tests and the fuzz target: it can hold
//! hostile contents and records every write.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use xen_bindings::mem::MappedRegion;

use crate::pci::caps::{walk_extended, walk_standard};
use crate::pci::Sbdf;

/// Where Linux lists PCI functions.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys/bus/pci/devices";
/// Xen's page size (mapping granularity).
pub const PAGE_SIZE: u64 = 4096;

/// `IORESOURCE_*` flag bits of a `resource` line (linux `include/linux/ioport.h`).
pub mod ioresource {
    /// I/O ports.
    pub const IO: u64 = 0x100;
    /// Memory.
    pub const MEM: u64 = 0x200;
    /// Prefetchable memory.
    pub const PREFETCH: u64 = 0x1000;
    /// 64-bit memory BAR.
    pub const MEM_64: u64 = 0x10_0000;
}

/// Host access failures.
#[derive(Debug, Error)]
pub enum HostError {
    /// A sysfs file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No such function under the root.
    #[error("no host PCI function {addr} under {root} (is it bound to pciback and is the sysfs root right?)")]
    NoDevice {
        /// Address.
        addr: Sbdf,
        /// Root searched.
        root: String,
    },
    /// A `resource` line that is not three hex numbers.
    #[error("{path}: line {line} {text:?} is not `start end flags` in hex")]
    BadResourceLine {
        /// File.
        path: String,
        /// Line number (0-based).
        line: usize,
        /// Its text.
        text: String,
    },
    /// Fewer than the 7 lines every PCI function's `resource` has.
    #[error("{path}: {found} resource lines, expected at least 7")]
    TooFewResources {
        /// File.
        path: String,
        /// Lines found.
        found: usize,
    },
    /// A sysfs value that does not parse.
    #[error("{path}: {value:?} is not a valid {what}")]
    BadValue {
        /// File.
        path: String,
        /// What was expected.
        what: &'static str,
        /// The text.
        value: String,
    },
    /// A config access outside what the host file exposes.
    #[error("host config access at {off:#x} of {len} bytes is outside the {size} bytes of {addr}")]
    ConfigRange {
        /// Function.
        addr: Sbdf,
        /// Offset.
        off: u16,
        /// Length.
        len: usize,
        /// Size available.
        size: usize,
    },
    /// A BAR access outside the BAR, to an unimplemented BAR, or of a bad width.
    #[error("host BAR {bar} access at {off:#x} of size {size} refused: {why}")]
    BarAccess {
        /// BAR index.
        bar: u8,
        /// Offset in the BAR.
        off: u64,
        /// Size.
        size: u8,
        /// Why.
        why: &'static str,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> HostError {
    HostError::Io { path: path.display().to_string(), source }
}

/// One line of the `resource` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostResource {
    /// Line number: BAR 0-5, 6 = expansion ROM.
    pub index: u8,
    /// First address.
    pub start: u64,
    /// Last address.
    pub end: u64,
    /// `IORESOURCE_*` flags.
    pub flags: u64,
}

impl HostResource {
    /// Size: `end - start + 1`, or 0 for an unassigned resource (start 0, QEMU's rule).
    pub fn size(&self) -> u64 {
        if self.start == 0 || self.end < self.start {
            0
        } else {
            (self.end - self.start).saturating_add(1)
        }
    }
    /// I/O ports.
    pub fn is_io(&self) -> bool {
        self.flags & ioresource::IO != 0
    }
    /// Memory.
    pub fn is_mem(&self) -> bool {
        self.flags & ioresource::MEM != 0
    }
    /// Prefetchable.
    pub fn prefetchable(&self) -> bool {
        self.flags & ioresource::PREFETCH != 0
    }
    /// 64-bit memory BAR.
    pub fn mem64(&self) -> bool {
        self.flags & ioresource::MEM_64 != 0
    }
}

/// Parses a `resource` file: at least 7 lines of `start end flags` (hex, `0x` optional); the
/// first 7 are returned (index 0-6). `path` names the file in errors.
pub fn parse_resource(path: &str, text: &str) -> Result<Vec<HostResource>, HostError> {
    let mut out = Vec::new();
    for (line, l) in text.lines().enumerate().take(7) {
        let bad = || HostError::BadResourceLine { path: path.to_string(), line, text: l.to_string() };
        let nums: Vec<u64> = l
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x").trim_start_matches("0X"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [start, end, flags] = nums.as_slice() else { return Err(bad()) };
        out.push(HostResource { index: line as u8, start: *start, end: *end, flags: *flags });
    }
    if out.len() < 7 {
        return Err(HostError::TooFewResources { path: path.to_string(), found: out.len() });
    }
    Ok(out)
}

/// Parses a sysfs hex value such as `0x8086`.
pub fn parse_hex(path: &str, what: &'static str, text: &str) -> Result<u64, HostError> {
    let t = text.trim();
    u64::from_str_radix(t.trim_start_matches("0x"), 16).map_err(|_| HostError::BadValue {
        path: path.to_string(),
        what,
        value: t.to_string(),
    })
}

/// What q35dm needs of a host function.
pub trait HostDevice: Send {
    /// Its address on the host.
    fn addr(&self) -> Sbdf;
    /// Bytes of config space the host exposes (64, 256 or 4096).
    fn config_len(&self) -> usize;
    /// Reads `buf.len()` bytes of config space at `off`.
    fn config_read(&self, off: u16, buf: &mut [u8]) -> Result<(), HostError>;
    /// Writes `data` to config space at `off` (one config cycle of that width).
    fn config_write(&self, off: u16, data: &[u8]) -> Result<(), HostError>;
    /// The BARs and ROM as the host kernel assigned them (7 entries).
    fn resources(&self) -> Result<Vec<HostResource>, HostError>;
    /// The machine IRQ (GSI) of the function's INTx (0 = none).
    fn irq(&self) -> Result<u32, HostError>;
    /// Vendor and device ID.
    fn ids(&self) -> Result<(u16, u16), HostError>;
    /// Resets the function.
    fn reset(&self) -> Result<(), HostError>;
    /// Reads `size` bytes (1, 2, 4, 8; naturally aligned) at `off` inside BAR `bar`.
    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> Result<u64, HostError>;
    /// Writes `size` bytes at `off` inside BAR `bar`.
    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> Result<(), HostError>;
}

fn check_bar_access(res: Option<&HostResource>, bar: u8, off: u64, size: u8) -> Result<HostResource, HostError> {
    let bad = |why| HostError::BarAccess { bar, off, size, why };
    let r = res.copied().filter(|r| r.size() > 0).ok_or_else(|| bad("the BAR is not implemented"))?;
    if !matches!(size, 1 | 2 | 4 | 8) || off % u64::from(size) != 0 {
        return Err(bad("bad width or misaligned"));
    }
    if off.checked_add(u64::from(size)).is_none_or(|e| e > r.size()) {
        return Err(bad("beyond the end of the BAR"));
    }
    Ok(r)
}

enum BarFile {
    Mem(MappedRegion),
    Io(File),
}

/// A host function through sysfs.
pub struct SysfsDevice {
    addr: Sbdf,
    dir: PathBuf,
    config: File,
    config_len: usize,
    writable: bool,
    resources: Vec<HostResource>,
    bars: BTreeMap<u8, BarFile>,
}

impl std::fmt::Debug for SysfsDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SysfsDevice({})", self.dir.display())
    }
}

impl SysfsDevice {
    /// The directory of `addr` under `root`.
    pub fn dir_of(root: &Path, addr: Sbdf) -> PathBuf {
        root.join(addr.to_string())
    }

    fn open_impl(root: &Path, addr: Sbdf, writable: bool) -> Result<Self, HostError> {
        let dir = Self::dir_of(root, addr);
        if !dir.is_dir() {
            return Err(HostError::NoDevice { addr, root: root.display().to_string() });
        }
        let cpath = dir.join("config");
        let config = OpenOptions::new().read(true).write(writable).open(&cpath).map_err(|e| io_err(&cpath, e))?;
        let config_len = usize::try_from(config.metadata().map_err(|e| io_err(&cpath, e))?.len()).unwrap_or(0);
        let rpath = dir.join("resource");
        let text = std::fs::read_to_string(&rpath).map_err(|e| io_err(&rpath, e))?;
        let resources = parse_resource(&rpath.display().to_string(), &text)?;
        Ok(Self { addr, dir, config, config_len: config_len.min(4096), writable, resources, bars: BTreeMap::new() })
    }

    /// Opens `addr` under `root` for passthrough (config read/write).
    pub fn open(root: &Path, addr: Sbdf) -> Result<Self, HostError> {
        Self::open_impl(root, addr, true)
    }

    /// Opens `addr` under `root` read-only (discovery; every write fails).
    pub fn open_read_only(root: &Path, addr: Sbdf) -> Result<Self, HostError> {
        Self::open_impl(root, addr, false)
    }

    /// The sysfs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_text(&self, name: &str) -> Result<(String, String), HostError> {
        let p = self.dir.join(name);
        let t = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
        Ok((p.display().to_string(), t))
    }

    /// The class code (`class` file), for discovery.
    pub fn class(&self) -> Result<u32, HostError> {
        let (p, t) = self.read_text("class")?;
        Ok(parse_hex(&p, "class code", &t)? as u32)
    }

    fn bar_file(&mut self, bar: u8, res: &HostResource) -> Result<&BarFile, HostError> {
        if !self.bars.contains_key(&bar) {
            let p = self.dir.join(format!("resource{bar}"));
            let f = OpenOptions::new().read(true).write(self.writable).open(&p).map_err(|e| io_err(&p, e))?;
            let bf = if res.is_io() {
                BarFile::Io(f)
            } else {
                let len = usize::try_from(res.size().div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE))
                    .map_err(|_| HostError::BarAccess { bar, off: 0, size: 0, why: "BAR too large to map" })?;
                let m = MappedRegion::map_shared(std::os::fd::AsFd::as_fd(&f), 0, len).map_err(|e| io_err(&p, e))?;
                BarFile::Mem(m)
            };
            self.bars.insert(bar, bf);
        }
        self.bars.get(&bar).ok_or(HostError::BarAccess { bar, off: 0, size: 0, why: "BAR file vanished" })
    }
}

impl HostDevice for SysfsDevice {
    fn addr(&self) -> Sbdf {
        self.addr
    }

    fn config_len(&self) -> usize {
        self.config_len
    }

    fn config_read(&self, off: u16, buf: &mut [u8]) -> Result<(), HostError> {
        if usize::from(off) + buf.len() > self.config_len {
            return Err(HostError::ConfigRange { addr: self.addr, off, len: buf.len(), size: self.config_len });
        }
        self.config.read_exact_at(buf, u64::from(off)).map_err(|e| io_err(&self.dir.join("config"), e))
    }

    fn config_write(&self, off: u16, data: &[u8]) -> Result<(), HostError> {
        if usize::from(off) + data.len() > self.config_len {
            return Err(HostError::ConfigRange { addr: self.addr, off, len: data.len(), size: self.config_len });
        }
        self.config.write_all_at(data, u64::from(off)).map_err(|e| io_err(&self.dir.join("config"), e))
    }

    fn resources(&self) -> Result<Vec<HostResource>, HostError> {
        Ok(self.resources.clone())
    }

    fn irq(&self) -> Result<u32, HostError> {
        let (p, t) = self.read_text("irq")?;
        t.trim().parse().map_err(|_| HostError::BadValue { path: p, what: "IRQ number", value: t.trim().into() })
    }

    fn ids(&self) -> Result<(u16, u16), HostError> {
        let (pv, v) = self.read_text("vendor")?;
        let (pd, d) = self.read_text("device")?;
        let vendor = u16::try_from(parse_hex(&pv, "vendor ID", &v)?).map_err(|_| HostError::BadValue {
            path: pv,
            what: "vendor ID",
            value: v.trim().into(),
        })?;
        let device = u16::try_from(parse_hex(&pd, "device ID", &d)?).map_err(|_| HostError::BadValue {
            path: pd,
            what: "device ID",
            value: d.trim().into(),
        })?;
        Ok((vendor, device))
    }

    fn reset(&self) -> Result<(), HostError> {
        let p = self.dir.join("reset");
        std::fs::write(&p, b"1").map_err(|e| io_err(&p, e))
    }

    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> Result<u64, HostError> {
        let r = check_bar_access(self.resources.get(usize::from(bar)), bar, off, size)?;
        let path = self.dir.join(format!("resource{bar}"));
        match self.bar_file(bar, &r)? {
            BarFile::Mem(m) => {
                let o = usize::try_from(off).map_err(|_| HostError::BarAccess { bar, off, size, why: "offset" })?;
                m.read_sized(o, size).map_err(|_| HostError::BarAccess { bar, off, size, why: "outside the mapping" })
            }
            BarFile::Io(f) => {
                let mut b = [0u8; 8];
                let n = usize::from(size);
                f.read_exact_at(&mut b[..n], off).map_err(|e| io_err(&path, e))?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> Result<(), HostError> {
        let r = check_bar_access(self.resources.get(usize::from(bar)), bar, off, size)?;
        let path = self.dir.join(format!("resource{bar}"));
        match self.bar_file(bar, &r)? {
            BarFile::Mem(m) => {
                let o = usize::try_from(off).map_err(|_| HostError::BarAccess { bar, off, size, why: "offset" })?;
                m.write_sized(o, size, val).map_err(|_| HostError::BarAccess {
                    bar,
                    off,
                    size,
                    why: "outside the mapping",
                })
            }
            BarFile::Io(f) => {
                let b = val.to_le_bytes();
                f.write_all_at(b.get(..usize::from(size)).unwrap_or(&[]), off).map_err(|e| io_err(&path, e))
            }
        }
    }
}

/// A host write recorded by [`MemHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemHostWrite {
    /// Config write.
    Config {
        /// Offset.
        off: u16,
        /// Bytes.
        data: Vec<u8>,
    },
    /// BAR write.
    Bar {
        /// BAR.
        bar: u8,
        /// Offset.
        off: u64,
        /// Size.
        size: u8,
        /// Value.
        val: u64,
    },
    /// A reset.
    Reset,
}

/// Shared state of a [`MemHost`] (tests keep a clone to look inside after handing the host to a
/// device).
#[derive(Debug, Default)]
pub struct MemHostState {
    /// Config bytes.
    pub config: Vec<u8>,
    /// BAR contents by index.
    pub bars: BTreeMap<u8, Vec<u8>>,
    /// Writes, in order.
    pub writes: Vec<MemHostWrite>,
    /// Make every config access fail (a device that went away).
    pub gone: bool,
}

/// An in-memory host function.
#[derive(Clone, Debug)]
pub struct MemHost {
    addr: Sbdf,
    resources: Vec<HostResource>,
    irq: u32,
    ids: (u16, u16),
    state: Arc<Mutex<MemHostState>>,
}

impl MemHost {
    /// A function at `addr` with `config` (any length up to 4096), `resources` (padded to 7),
    /// machine IRQ `irq`. BAR contents are zero-filled buffers of each memory/I/O BAR's size (at
    /// most 1 MiB each, for tests).
    pub fn new(addr: Sbdf, config: Vec<u8>, resources: Vec<HostResource>, irq: u32) -> Self {
        let mut res: Vec<HostResource> = resources.into_iter().take(7).collect();
        while res.len() < 7 {
            res.push(HostResource { index: res.len() as u8, start: 0, end: 0, flags: 0 });
        }
        let mut bars = BTreeMap::new();
        for r in &res {
            if r.size() > 0 && r.index < 6 {
                bars.insert(r.index, vec![0; usize::try_from(r.size().min(1 << 20)).unwrap_or(0)]);
            }
        }
        let ids = (
            u16::from_le_bytes([config.first().copied().unwrap_or(0xff), config.get(1).copied().unwrap_or(0xff)]),
            u16::from_le_bytes([config.get(2).copied().unwrap_or(0xff), config.get(3).copied().unwrap_or(0xff)]),
        );
        let mut cfg = config;
        cfg.truncate(4096);
        Self {
            addr,
            resources: res,
            irq,
            ids,
            state: Arc::new(Mutex::new(MemHostState { config: cfg, bars, ..Default::default() })),
        }
    }

    /// The shared state.
    pub fn state(&self) -> Arc<Mutex<MemHostState>> {
        self.state.clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemHostState) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

impl HostDevice for MemHost {
    fn addr(&self) -> Sbdf {
        self.addr
    }
    fn config_len(&self) -> usize {
        self.with(|s| s.config.len())
    }
    fn config_read(&self, off: u16, buf: &mut [u8]) -> Result<(), HostError> {
        let addr = self.addr;
        self.with(|s| {
            let size = s.config.len();
            let range = usize::from(off)..usize::from(off) + buf.len();
            match s.config.get(range).filter(|_| !s.gone) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(HostError::ConfigRange { addr, off, len: buf.len(), size }),
            }
        })
    }
    fn config_write(&self, off: u16, data: &[u8]) -> Result<(), HostError> {
        let addr = self.addr;
        self.with(|s| {
            let size = s.config.len();
            s.writes.push(MemHostWrite::Config { off, data: data.to_vec() });
            let gone = s.gone;
            match s.config.get_mut(usize::from(off)..usize::from(off) + data.len()).filter(|_| !gone) {
                Some(dst) => {
                    dst.copy_from_slice(data);
                    Ok(())
                }
                None => Err(HostError::ConfigRange { addr, off, len: data.len(), size }),
            }
        })
    }
    fn resources(&self) -> Result<Vec<HostResource>, HostError> {
        Ok(self.resources.clone())
    }
    fn irq(&self) -> Result<u32, HostError> {
        Ok(self.irq)
    }
    fn ids(&self) -> Result<(u16, u16), HostError> {
        Ok(self.ids)
    }
    fn reset(&self) -> Result<(), HostError> {
        self.with(|s| s.writes.push(MemHostWrite::Reset));
        Ok(())
    }
    fn bar_read(&mut self, bar: u8, off: u64, size: u8) -> Result<u64, HostError> {
        check_bar_access(self.resources.get(usize::from(bar)), bar, off, size)?;
        self.with(|s| {
            let buf = s.bars.get(&bar).ok_or(HostError::BarAccess { bar, off, size, why: "no backing" })?;
            let o = usize::try_from(off).unwrap_or(usize::MAX);
            let src = buf.get(o..o.saturating_add(usize::from(size))).ok_or(HostError::BarAccess {
                bar,
                off,
                size,
                why: "beyond the backing",
            })?;
            Ok(src.iter().rev().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
        })
    }
    fn bar_write(&mut self, bar: u8, off: u64, size: u8, val: u64) -> Result<(), HostError> {
        check_bar_access(self.resources.get(usize::from(bar)), bar, off, size)?;
        self.with(|s| {
            s.writes.push(MemHostWrite::Bar { bar, off, size, val });
            let buf = s.bars.get_mut(&bar).ok_or(HostError::BarAccess { bar, off, size, why: "no backing" })?;
            let o = usize::try_from(off).unwrap_or(usize::MAX);
            let dst = buf.get_mut(o..o.saturating_add(usize::from(size))).ok_or(HostError::BarAccess {
                bar,
                off,
                size,
                why: "beyond the backing",
            })?;
            for (i, b) in dst.iter_mut().enumerate() {
                *b = (val >> (8 * i)) as u8;
            }
            Ok(())
        })
    }
}

/// What discovery found about one host function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSummary {
    /// Address.
    pub addr: Sbdf,
    /// Vendor ID (sysfs).
    pub vendor: u16,
    /// Device ID (sysfs).
    pub device: u16,
    /// Class code (sysfs).
    pub class: u32,
    /// Machine IRQ.
    pub irq: u32,
    /// Bytes of config space readable.
    pub config_len: usize,
    /// BARs and ROM with a non-zero size.
    pub resources: Vec<HostResource>,
    /// Standard capability IDs, in chain order.
    pub caps: Vec<u16>,
    /// Extended capability IDs, in chain order.
    pub ext_caps: Vec<u16>,
    /// Problems met walking the chains (a host device is untrusted).
    pub problems: Vec<String>,
}

/// Describes one function under `root` without writing anything.
pub fn describe(root: &Path, addr: Sbdf) -> Result<HostSummary, HostError> {
    let d = SysfsDevice::open_read_only(root, addr)?;
    let (vendor, device) = d.ids()?;
    let class = d.class()?;
    let irq = d.irq()?;
    let mut cfg = vec![0u8; d.config_len()];
    d.config_read(0, &mut cfg)?;
    let std = walk_standard(&cfg);
    let ext = walk_extended(&cfg);
    let problems = std.problems.iter().chain(&ext.problems).map(ToString::to_string).collect();
    Ok(HostSummary {
        addr,
        vendor,
        device,
        class,
        irq,
        config_len: cfg.len(),
        resources: d.resources()?.into_iter().filter(|r| r.size() > 0).collect(),
        caps: std.caps.iter().map(|c| c.id).collect(),
        ext_caps: ext.caps.iter().map(|c| c.id).collect(),
        problems,
    })
}

/// Every function under `root` whose directory name is a PCI address, sorted; read-only.
pub fn discover(root: &Path) -> Result<Vec<Result<HostSummary, HostError>>, HostError> {
    let rd = std::fs::read_dir(root).map_err(|e| io_err(root, e))?;
    let mut addrs: Vec<Sbdf> =
        rd.filter_map(Result::ok).filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect();
    addrs.sort();
    Ok(addrs.into_iter().map(|a| describe(root, a)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines_parse_like_qemu() {
        let text = "0x00000000fe000000 0x00000000fe01ffff 0x0000000000040200\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x000000000000e000 0x000000000000e01f 0x0000000000040101\n\
                    0x0000004000000000 0x000000400007ffff 0x0000000000140204\n\
                    0x0 0x0 0x0\n0x0 0x0 0x0\n0x00000000fe100000 0x00000000fe17ffff 0x0000000000046200\n\
                    0x0 0x0 0x0\n";
        let r = parse_resource("resource", text).expect("parses");
        assert_eq!(r.len(), 7);
        assert_eq!((r[0].size(), r[0].is_mem(), r[0].mem64()), (0x20000, true, false));
        assert_eq!(r[1].size(), 0);
        assert_eq!((r[2].size(), r[2].is_io()), (0x20, true));
        assert_eq!((r[3].size(), r[3].mem64(), r[3].prefetchable()), (0x80000, true, false));
        assert_eq!((r[6].index, r[6].size()), (6, 0x80000));
    }

    #[test]
    fn bad_resource_files_name_the_value() {
        let e = parse_resource("/x/resource", "0x0 0x0\n").expect_err("two fields");
        assert!(e.to_string().contains("\"0x0 0x0\""), "{e}");
        let e = parse_resource("/x/resource", "0x0 0x0 0x0\n").expect_err("one line");
        assert!(e.to_string().contains("1 resource lines"), "{e}");
        let e = parse_resource("/x/resource", "zz 0 0\n").expect_err("hex");
        assert!(e.to_string().contains("zz"), "{e}");
    }

    #[test]
    fn mem_host_bounds_bar_accesses() {
        let res = vec![HostResource { index: 0, start: 0xfe00_0000, end: 0xfe00_000f, flags: ioresource::MEM }];
        let mut h = MemHost::new(Sbdf::new(0, 3, 0, 0), vec![0; 256], res, 0);
        h.bar_write(0, 8, 8, 0x1122_3344_5566_7788).expect("in range");
        assert_eq!(h.bar_read(0, 8, 4).expect("read"), 0x5566_7788);
        assert!(h.bar_read(0, 16, 4).is_err(), "beyond the 16-byte BAR");
        assert!(h.bar_read(0, 2, 4).is_err(), "misaligned");
        assert!(h.bar_read(1, 0, 4).is_err(), "unimplemented BAR");
        assert!(h.config_read(250, &mut [0; 8]).is_err());
    }
}
