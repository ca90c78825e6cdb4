//! QEMU's firmware configuration interface (fw_cfg, hw/nvram/fw_cfg.c) on its x86 I/O ports, which
//! SeaBIOS probes also when it runs under Xen, and direct Linux boot through it: `-kernel`,
//! `-initrd` and `-append` prepared exactly as QEMU's `x86_load_linux` prepares them for the
//! `linuxboot_dma.bin` option ROM.
//!
//! # Interface
//!
//! | port | access | meaning |
//! |---|---|---|
//! | 0x510 | 16-bit write | select an item (key), offset back to 0 |
//! | 0x510, 0x511 | 8-bit read | next byte of the selected item (0 past its end or for no item) |
//! | 0x514-0x51b | 8-bit..32-bit read | the DMA signature `"QEMU CFG"` |
//! | 0x514 | 32-bit write, big-endian | high half of the DMA descriptor address |
//! | 0x518 | 32-bit write, big-endian | low half of the address; starts the transfer |
//!
//! A DMA descriptor in guest RAM is `{be32 control, be32 length, be64 address}`. Control bits:
//! [`dma::ERROR`], [`dma::READ`], [`dma::SKIP`], [`dma::SELECT`] (key in bits 31:16),
//! [`dma::WRITE`]. On completion the device writes the control word back as 0, or with
//! [`dma::ERROR`] set when guest memory could not be accessed or a write was attempted (no item
//! is writable). Reading past an item's end, or an absent item, fills zeros (as QEMU).
//!
//! # Items
//!
//! What QEMU's fw_cfg core always provides (signature, `FW_CFG_ID` with the DMA bit, UUID,
//! NOGRAPHIC, BOOT_MENU, the file directory, `etc/boot-fail-wait`), what QEMU's Xen machine adds
//! (`FW_CFG_NB_CPUS`), plus `MAX_CPUS` and `RAM_SIZE`. With a kernel: the
//! `FW_CFG_{SETUP,KERNEL,INITRD,CMDLINE}_{ADDR,SIZE,DATA}` items, the option ROM as
//! `genroms/linuxboot_dma.bin` and a `bootorder` naming it.
//!
//! # The memory map
//!
//! Under Xen, SeaBIOS copies the E820 map hvmloader built from Xen's, then (its fw_cfg code runs
//! on Xen too) asks fw_cfg for `etc/e820`; only without that file does it read the size of RAM
//! above 4 GiB from CMOS bytes 0x5b-0x5d. Xen's RTC emulates only the clock registers (CMOS
//! indexes 0-13); the NVRAM bytes are the device model's, and QEMU fills them. q35dm does not
//! emulate CMOS NVRAM, so those reads return all-ones and SeaBIOS would add a terabyte of RAM
//! above 4 GiB (seen on real Xen: `RamSizeOver4G: 0x000000ffffff0000 [cmos]`, then the kernel
//! dies). So `etc/e820` is provided with the single entry QEMU also lists first: RAM from 0 to
//! the top of low RAM. SeaBIOS ignores RAM entries that start below the low RAM it already has
//! (address 0 always does), so the file only stops the CMOS probe and never contradicts Xen's
//! map. RAM above 4 GiB is not listed: Xen's map already has it, and q35dm's split of guest RAM
//! around the MMIO hole need not match the one libxl chose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::device::{Effects, PortDevice};
use crate::guest_warn;
use crate::memory::GuestMemory;
use crate::state::{Reader, StateError, Writer};

/// Selector port (16-bit writes).
pub const PORT_SELECTOR: u16 = 0x510;
/// Data port (8-bit reads).
pub const PORT_DATA: u16 = 0x511;
/// First port of the 8-byte DMA address register.
pub const PORT_DMA: u16 = 0x514;
/// `"QEMU CFG"`, read at the DMA ports.
pub const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// File slots (QEMU's default for current machine types): keys 0x20-0x3f.
pub const FILE_SLOTS: u16 = 0x20;
/// Longest file name, without its terminating NUL.
pub const MAX_FILE_NAME: usize = 55;
/// QEMU's default `acpi_data_size` for PC machines, kept free below the top of low RAM when
/// placing the initrd.
pub const ACPI_DATA_SIZE: u64 = 0x20000 + 0x8000;
/// The option ROM that boots the kernel.
pub const LINUXBOOT_ROM: &str = "linuxboot_dma.bin";
/// Directories searched for [`LINUXBOOT_ROM`] after any override.
pub const ROM_DIRS: &[&str] = &["/usr/share/qemu", "/usr/share/seabios", "/usr/lib/qemu", "/usr/local/share/qemu"];
/// Environment variable naming a directory searched first for option ROMs.
pub const ROM_DIR_ENV: &str = "Q35DM_ROM_DIR";

/// Item keys.
pub mod key {
    /// `"QEMU"`.
    pub const SIGNATURE: u16 = 0x00;
    /// Interface version and features.
    pub const ID: u16 = 0x01;
    /// The machine UUID.
    pub const UUID: u16 = 0x02;
    /// RAM size (u64).
    pub const RAM_SIZE: u16 = 0x03;
    /// No graphics (u16).
    pub const NOGRAPHIC: u16 = 0x04;
    /// vCPUs at boot (u16).
    pub const NB_CPUS: u16 = 0x05;
    /// Kernel load address (u32).
    pub const KERNEL_ADDR: u16 = 0x07;
    /// Kernel size (u32).
    pub const KERNEL_SIZE: u16 = 0x08;
    /// Initrd load address (u32).
    pub const INITRD_ADDR: u16 = 0x0a;
    /// Initrd size (u32).
    pub const INITRD_SIZE: u16 = 0x0b;
    /// Boot menu (u16).
    pub const BOOT_MENU: u16 = 0x0e;
    /// Maximum vCPUs (u16).
    pub const MAX_CPUS: u16 = 0x0f;
    /// Kernel image (without the setup part).
    pub const KERNEL_DATA: u16 = 0x11;
    /// Initrd image.
    pub const INITRD_DATA: u16 = 0x12;
    /// Command line address (u32).
    pub const CMDLINE_ADDR: u16 = 0x13;
    /// Command line size with its NUL (u32).
    pub const CMDLINE_SIZE: u16 = 0x14;
    /// Command line, NUL-terminated.
    pub const CMDLINE_DATA: u16 = 0x15;
    /// Real-mode setup address (u32).
    pub const SETUP_ADDR: u16 = 0x16;
    /// Setup size (u32).
    pub const SETUP_SIZE: u16 = 0x17;
    /// Setup code with the patched header.
    pub const SETUP_DATA: u16 = 0x18;
    /// The file directory.
    pub const FILE_DIR: u16 = 0x19;
    /// First file key.
    pub const FILE_FIRST: u16 = 0x20;
    /// The (ignored) write-channel bit.
    pub const WRITE_CHANNEL: u16 = 0x4000;
    /// Architecture-local items.
    pub const ARCH_LOCAL: u16 = 0x8000;
    /// Bits that index the items.
    pub const ENTRY_MASK: u16 = !(WRITE_CHANNEL | ARCH_LOCAL);
}

/// DMA control bits.
pub mod dma {
    /// The transfer failed.
    pub const ERROR: u32 = 0x01;
    /// Copy item bytes to guest memory.
    pub const READ: u32 = 0x02;
    /// Skip item bytes.
    pub const SKIP: u32 = 0x04;
    /// Select the item in bits 31:16 first.
    pub const SELECT: u32 = 0x08;
    /// Copy guest memory into the item.
    pub const WRITE: u32 = 0x10;
}

/// `FW_CFG_ID` bits.
pub mod version {
    /// The port interface.
    pub const TRADITIONAL: u32 = 1;
    /// The DMA interface.
    pub const DMA: u32 = 2;
}

/// Linux boot-protocol header offsets and flags (Documentation/arch/x86/boot.rst).
mod hdr {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const VID_MODE: usize = 0x1fa;
    pub const OLD_CMD_LINE_MAGIC: usize = 0x20;
    pub const OLD_CMD_LINE_OFFSET: usize = 0x22;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const XLOADFLAGS: usize = 0x236;
    pub const MAGIC_HDRS: u32 = 0x5372_6448;
    pub const LOADED_HIGH: u8 = 0x01;
    pub const CAN_USE_HEAP: u8 = 0x80;
    pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 0x02;
    /// QEMU's loader id (high nibble 0xB, revision 0).
    pub const LOADER_QEMU: u8 = 0xb0;
}

/// Why fw_cfg could not be set up.
#[derive(Debug, Error)]
pub enum FwCfgError {
    /// A file could not be read.
    #[error("reading {what} {}: {source}", path.display())]
    Read {
        /// `-kernel`, `-initrd` or `option ROM`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel is not a bzImage.
    #[error("kernel {}: {why}", path.display())]
    Kernel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: LinuxBootError,
    },
    /// `-initrd` without `-kernel`.
    #[error("-initrd {} needs -kernel", .0.display())]
    InitrdWithoutKernel(PathBuf),
    /// The option ROM was not found.
    #[error("-kernel needs QEMU's option ROM {LINUXBOOT_ROM} (package qemu-system-data); not found in {searched} (set {ROM_DIR_ENV} to a directory holding it)")]
    NoRom {
        /// Directories searched.
        searched: String,
    },
    /// The option ROM file is not an option ROM.
    #[error("{}: not a PC option ROM (no 55 AA signature)", .0.display())]
    BadRom(PathBuf),
    /// A file name too long for the directory.
    #[error("fw_cfg file name {0:?} is longer than {MAX_FILE_NAME} bytes")]
    FileName(String),
    /// The same file added twice.
    #[error("fw_cfg file {0:?} added twice")]
    DuplicateFile(String),
    /// More files than slots.
    #[error("fw_cfg holds {FILE_SLOTS} files; {0:?} does not fit")]
    TooManyFiles(String),
    /// Not a key for a data item.
    #[error("fw_cfg key {0:#06x} is not a data item")]
    BadKey(u16),
}

/// What is wrong with a kernel image or its boot parameters.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinuxBootError {
    /// Empty or shorter than its header.
    #[error("file of {0} bytes is too short for a Linux boot header")]
    TooShort(usize),
    /// No `HdrS` signature (multiboot, ELF/PVH and raw images are not supported).
    #[error("no Linux boot header (\"HdrS\" at 0x202): only bzImage kernels are supported")]
    NotBzImage,
    /// The setup part is larger than the file.
    #[error("setup of {setup} bytes is larger than the {size}-byte file (invalid kernel header)")]
    SetupTooLarge {
        /// Setup size from the header.
        setup: usize,
        /// File size.
        size: usize,
    },
    /// The boot protocol cannot take an initrd.
    #[error("boot protocol {0:#06x} is too old to load a ramdisk")]
    TooOldForInitrd(u16),
    /// The initrd does not fit.
    #[error("initrd of {size} bytes is too large (max {max:#x})")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Highest address it could end at.
        max: u64,
    },
    /// A `vga=` value that is not a number, `normal`, `ext` or `ask`.
    #[error("invalid 'vga=' kernel parameter {0:?}")]
    BadVga(String),
}

fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b.get(off).copied().unwrap_or(0), b.get(off + 1).copied().unwrap_or(0)])
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from(get_u16(b, off)) | u32::from(get_u16(b, off + 2)) << 16
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off + v.len()) {
        d.copy_from_slice(v);
    }
}

/// A kernel split and patched for the linuxboot option ROM, as QEMU's `x86_load_linux`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// Boot protocol version (0 for pre-2.00 kernels).
    pub protocol: u16,
    /// Where the ROM puts the setup (real-mode) part.
    pub setup_addr: u32,
    /// The setup part with the patched header.
    pub setup: Vec<u8>,
    /// Where the ROM puts the protected-mode kernel.
    pub kernel_addr: u32,
    /// The protected-mode kernel.
    pub kernel: Vec<u8>,
    /// Where the ROM puts the command line.
    pub cmdline_addr: u32,
    /// The command line with its NUL.
    pub cmdline: Vec<u8>,
    /// Initrd address (a hint: the ROM moves it below the top of RAM it finds) and image.
    pub initrd: Option<(u32, Vec<u8>)>,
}

impl LinuxBoot {
    /// Splits `image` into setup and kernel and patches the setup header for a guest with
    /// `below_4g` bytes of RAM under 4 GiB.
    pub fn prepare(
        mut image: Vec<u8>,
        initrd: Option<Vec<u8>>,
        cmdline: &str,
        below_4g: u64,
    ) -> Result<Self, LinuxBootError> {
        if image.len() < 0x260 {
            return Err(LinuxBootError::TooShort(image.len()));
        }
        if get_u32(&image, hdr::HEADER) != hdr::MAGIC_HDRS {
            return Err(LinuxBootError::NotBzImage);
        }
        let protocol = get_u16(&image, hdr::VERSION);
        let loadflags = image.get(hdr::LOADFLAGS).copied().unwrap_or(0);
        // Where the ROM puts things, by protocol (QEMU's three cases).
        let cmdline_size = (cmdline.len() as u64 + 16) & !15;
        let (real_addr, cmdline_addr, prot_addr): (u64, u64, u64) =
            if protocol < 0x200 || loadflags & hdr::LOADED_HIGH == 0 {
                (0x90000, 0x9a000u64.saturating_sub(cmdline_size), 0x10000)
            } else if protocol < 0x202 {
                (0x90000, 0x9a000u64.saturating_sub(cmdline_size), 0x100000)
            } else {
                (0x10000, 0x20000, 0x100000)
            };
        // Highest address for the initrd.
        let mut initrd_max: u64 =
            if protocol >= 0x20c && get_u16(&image, hdr::XLOADFLAGS) & hdr::XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
                u64::from(u32::MAX)
            } else if protocol >= 0x203 {
                u64::from(get_u32(&image, hdr::INITRD_ADDR_MAX))
            } else {
                0x37ff_ffff
            };
        let ram_top = below_4g.saturating_sub(ACPI_DATA_SIZE);
        if initrd_max >= ram_top {
            initrd_max = ram_top.saturating_sub(1);
        }
        if protocol >= 0x202 {
            put(&mut image, hdr::CMD_LINE_PTR, &(cmdline_addr as u32).to_le_bytes());
        } else {
            put(&mut image, hdr::OLD_CMD_LINE_MAGIC, &0xa33fu16.to_le_bytes());
            put(&mut image, hdr::OLD_CMD_LINE_OFFSET, &(cmdline_addr.saturating_sub(real_addr) as u16).to_le_bytes());
        }
        if let Some(mode) = vga_mode(cmdline)? {
            put(&mut image, hdr::VID_MODE, &mode.to_le_bytes());
        }
        if protocol >= 0x200 {
            put(&mut image, hdr::TYPE_OF_LOADER, &[hdr::LOADER_QEMU]);
        }
        if protocol >= 0x201 {
            put(&mut image, hdr::LOADFLAGS, &[loadflags | hdr::CAN_USE_HEAP]);
            let heap_end = cmdline_addr.saturating_sub(real_addr).saturating_sub(0x200);
            put(&mut image, hdr::HEAP_END_PTR, &(heap_end as u16).to_le_bytes());
        }
        let initrd = match initrd {
            None => None,
            Some(data) => {
                if protocol < 0x200 {
                    return Err(LinuxBootError::TooOldForInitrd(protocol));
                }
                let size = data.len() as u64;
                if size >= initrd_max {
                    return Err(LinuxBootError::InitrdTooLarge { size, max: initrd_max });
                }
                let addr = (initrd_max - size) & !4095;
                let addr32 = u32::try_from(addr).unwrap_or(0);
                put(&mut image, hdr::RAMDISK_IMAGE, &addr32.to_le_bytes());
                put(&mut image, hdr::RAMDISK_SIZE, &(size as u32).to_le_bytes());
                Some((addr32, data))
            }
        };
        let sects = match image.get(hdr::SETUP_SECTS).copied().unwrap_or(0) {
            0 => 4,
            n => usize::from(n),
        };
        let setup_size = (sects + 1) * 512;
        if setup_size > image.len() {
            return Err(LinuxBootError::SetupTooLarge { setup: setup_size, size: image.len() });
        }
        let kernel = image.split_off(setup_size);
        let mut cmd = cmdline.as_bytes().to_vec();
        cmd.push(0);
        Ok(Self {
            protocol,
            setup_addr: real_addr as u32,
            setup: image,
            kernel_addr: prot_addr as u32,
            kernel,
            cmdline_addr: cmdline_addr as u32,
            cmdline: cmd,
            initrd,
        })
    }

    /// Reads and prepares `-kernel`, `-initrd`, `-append`.
    pub fn load(kernel: &Path, initrd: Option<&Path>, cmdline: &str, below_4g: u64) -> Result<Self, FwCfgError> {
        let image = std::fs::read(kernel).map_err(|source| FwCfgError::Read {
            what: "-kernel",
            path: kernel.into(),
            source,
        })?;
        let rd = match initrd {
            Some(p) => {
                Some(std::fs::read(p).map_err(|source| FwCfgError::Read { what: "-initrd", path: p.into(), source })?)
            }
            None => None,
        };
        Self::prepare(image, rd, cmdline, below_4g).map_err(|why| FwCfgError::Kernel { path: kernel.into(), why })
    }
}

/// The `vga=` value of a command line, as QEMU interprets it.
fn vga_mode(cmdline: &str) -> Result<Option<u16>, LinuxBootError> {
    let Some(pos) = cmdline.find("vga=") else { return Ok(None) };
    let v = cmdline.get(pos + 4..).unwrap_or("");
    for (name, mode) in [("normal", 0xffffu16), ("ext", 0xfffe), ("ask", 0xfffd)] {
        if v.starts_with(name) {
            return Ok(Some(mode));
        }
    }
    let word = v.split(' ').next().unwrap_or("");
    let bad = || LinuxBootError::BadVga(word.to_string());
    let n = if let Some(h) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else if word.len() > 1 && word.starts_with('0') {
        u32::from_str_radix(word.get(1..).unwrap_or(""), 8)
    } else {
        word.parse::<u32>()
    }
    .map_err(|_| bad())?;
    Ok(Some(n as u16))
}

/// Finds `name` in `extra` directories first, then [`ROM_DIRS`].
pub fn find_rom(name: &str, extra: &[PathBuf]) -> Result<PathBuf, FwCfgError> {
    let dirs: Vec<PathBuf> = extra.iter().cloned().chain(ROM_DIRS.iter().map(PathBuf::from)).collect();
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| FwCfgError::NoRom {
        searched: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// Reads an option ROM and checks its signature.
pub fn load_rom(path: &Path) -> Result<Vec<u8>, FwCfgError> {
    let data =
        std::fs::read(path).map_err(|source| FwCfgError::Read { what: "option ROM", path: path.into(), source })?;
    if data.get(..2) != Some(&[0x55, 0xaa][..]) {
        return Err(FwCfgError::BadRom(path.into()));
    }
    Ok(data)
}

/// Parses a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`) into its 16 bytes in order.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(hex.get(2 * i..2 * i + 2)?).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Collects items and files, then builds the device.
#[derive(Clone, Debug)]
pub struct FwCfgBuilder {
    items: BTreeMap<u16, Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
}

impl Default for FwCfgBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FwCfgBuilder {
    /// The items QEMU's fw_cfg core always has: signature, ID (with DMA), zero UUID, NOGRAPHIC
    /// and BOOT_MENU off, `etc/boot-fail-wait` = -1 (never reboot on boot failure).
    pub fn new() -> Self {
        let mut b = Self { items: BTreeMap::new(), files: BTreeMap::new() };
        b.items.insert(key::SIGNATURE, b"QEMU".to_vec());
        b.items.insert(key::ID, (version::TRADITIONAL | version::DMA).to_le_bytes().to_vec());
        b.items.insert(key::UUID, vec![0; 16]);
        b.items.insert(key::NOGRAPHIC, 0u16.to_le_bytes().to_vec());
        b.items.insert(key::BOOT_MENU, 0u16.to_le_bytes().to_vec());
        b.files.insert("etc/boot-fail-wait".into(), u32::MAX.to_le_bytes().to_vec());
        b
    }

    /// Sets item `k` (a key below the file range, or an arch-local key; not the directory).
    pub fn item(&mut self, k: u16, data: Vec<u8>) -> Result<&mut Self, FwCfgError> {
        let idx = k & key::ENTRY_MASK;
        if k & key::WRITE_CHANNEL != 0 || k == key::FILE_DIR || idx >= key::FILE_FIRST + FILE_SLOTS {
            return Err(FwCfgError::BadKey(k));
        }
        if k & key::ARCH_LOCAL == 0 && idx >= key::FILE_FIRST {
            return Err(FwCfgError::BadKey(k));
        }
        self.items.insert(k, data);
        Ok(self)
    }

    /// Sets a 16-bit little-endian item.
    pub fn u16(&mut self, k: u16, v: u16) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }

    /// Sets a 32-bit little-endian item.
    pub fn u32(&mut self, k: u16, v: u32) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }

    /// Sets a 64-bit little-endian item.
    pub fn u64(&mut self, k: u16, v: u64) -> Result<&mut Self, FwCfgError> {
        self.item(k, v.to_le_bytes().to_vec())
    }

    /// Adds a named file (replacing one of the same name is refused).
    pub fn file(&mut self, name: &str, data: Vec<u8>) -> Result<&mut Self, FwCfgError> {
        if name.len() > MAX_FILE_NAME || name.is_empty() || name.contains('\0') {
            return Err(FwCfgError::FileName(name.into()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::DuplicateFile(name.into()));
        }
        if self.files.len() >= usize::from(FILE_SLOTS) {
            return Err(FwCfgError::TooManyFiles(name.into()));
        }
        self.files.insert(name.into(), data);
        Ok(self)
    }

    /// Adds the items of a prepared kernel, the option ROM that boots it, and a `bootorder`
    /// that boots it first.
    pub fn linux(&mut self, boot: LinuxBoot, rom: Vec<u8>) -> Result<&mut Self, FwCfgError> {
        let len32 = |v: &[u8]| u32::try_from(v.len()).unwrap_or(u32::MAX);
        if let Some((addr, data)) = boot.initrd {
            self.u32(key::INITRD_ADDR, addr)?.u32(key::INITRD_SIZE, len32(&data))?.item(key::INITRD_DATA, data)?;
        }
        self.u32(key::CMDLINE_ADDR, boot.cmdline_addr)?
            .u32(key::CMDLINE_SIZE, len32(&boot.cmdline))?
            .item(key::CMDLINE_DATA, boot.cmdline)?;
        self.u32(key::KERNEL_ADDR, boot.kernel_addr)?
            .u32(key::KERNEL_SIZE, len32(&boot.kernel))?
            .item(key::KERNEL_DATA, boot.kernel)?;
        self.u32(key::SETUP_ADDR, boot.setup_addr)?
            .u32(key::SETUP_SIZE, len32(&boot.setup))?
            .item(key::SETUP_DATA, boot.setup)?;
        let rom_name = format!("genroms/{LINUXBOOT_ROM}");
        self.file(&rom_name, rom)?;
        let mut order = format!("/rom@{rom_name}").into_bytes();
        order.push(0);
        self.file("bootorder", order)?;
        Ok(self)
    }

    /// The device: files sorted by name get keys from [`key::FILE_FIRST`] on (as QEMU assigns
    /// them), listed in the directory item.
    pub fn build(self) -> FwCfg {
        let mut items = self.items;
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (i, (name, data)) in self.files.into_iter().enumerate() {
            let k = key::FILE_FIRST + i as u16;
            dir.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
            dir.extend_from_slice(&k.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; MAX_FILE_NAME + 1];
            put(&mut n, 0, name.as_bytes());
            dir.extend_from_slice(&n);
            items.insert(k, data);
        }
        items.insert(key::FILE_DIR, dir);
        FwCfg { items, cur: None, off: 0, dma_addr: 0 }
    }
}

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// One `etc/e820` entry as QEMU encodes it: little-endian address, length, type (20 bytes).
pub fn e820_entry(address: u64, length: u64, kind: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&address.to_le_bytes());
    v.extend_from_slice(&length.to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v
}

/// What the board's fw_cfg holds, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwCfgOptions {
    /// vCPUs at boot.
    pub cpus: u16,
    /// Maximum vCPUs.
    pub max_cpus: u16,
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// RAM below 4 GiB in bytes (bounds the initrd).
    pub below_4g: u64,
    /// `-nographic`.
    pub nographic: bool,
    /// `-boot menu=on`.
    pub boot_menu: bool,
    /// `-uuid`.
    pub uuid: Option<[u8; 16]>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
    /// Directories searched first for option ROMs.
    pub rom_dirs: Vec<PathBuf>,
}

impl FwCfgOptions {
    /// Builds the device (reads the kernel, initrd and option ROM).
    pub fn build(&self) -> Result<FwCfg, FwCfgError> {
        let mut b = FwCfgBuilder::new();
        b.file("etc/e820", e820_entry(0, self.below_4g, E820_RAM))?;
        b.u16(key::NB_CPUS, self.cpus.max(1))?
            .u16(key::MAX_CPUS, self.max_cpus.max(self.cpus).max(1))?
            .u64(key::RAM_SIZE, self.ram_bytes)?
            .u16(key::NOGRAPHIC, u16::from(self.nographic))?
            .u16(key::BOOT_MENU, u16::from(self.boot_menu))?;
        if let Some(u) = self.uuid {
            b.item(key::UUID, u.to_vec())?;
        }
        match (&self.kernel, &self.initrd) {
            (None, Some(rd)) => return Err(FwCfgError::InitrdWithoutKernel(rd.clone())),
            (None, None) => {}
            (Some(k), rd) => {
                let rom_path = find_rom(LINUXBOOT_ROM, &self.rom_dirs)?;
                let rom = load_rom(&rom_path)?;
                let boot = LinuxBoot::load(k, rd.as_deref(), self.append.as_deref().unwrap_or(""), self.below_4g)?;
                log::info!(
                    "fw_cfg: kernel {} (boot protocol {:#06x}, {} + {} bytes){}, option ROM {}",
                    k.display(),
                    boot.protocol,
                    boot.setup.len(),
                    boot.kernel.len(),
                    boot.initrd
                        .as_ref()
                        .map(|(a, d)| format!(", initrd {} bytes at {a:#x}", d.len()))
                        .unwrap_or_default(),
                    rom_path.display()
                );
                b.linux(boot, rom)?;
            }
        }
        Ok(b.build())
    }
}

/// The fw_cfg device on ports 0x510-0x511 and 0x514-0x51b.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    /// The selected item (normalised key), `None` after selecting an invalid key.
    cur: Option<u16>,
    off: usize,
    dma_addr: u64,
}

/// Zeros for filling guest memory when reading past an item (bounded chunks, no allocation).
static ZEROS: [u8; 65536] = [0; 65536];

impl FwCfg {
    /// Item `k`, if present.
    pub fn item(&self, k: u16) -> Option<&[u8]> {
        self.items.get(&k).map(Vec::as_slice)
    }

    /// File `name`: its key and contents.
    pub fn file(&self, name: &str) -> Option<(u16, &[u8])> {
        let dir = self.items.get(&key::FILE_DIR)?;
        let count = u32::from_be_bytes(dir.get(..4)?.try_into().ok()?) as usize;
        (0..count).find_map(|i| {
            let e = dir.get(4 + i * 64..4 + (i + 1) * 64)?;
            let n = e.get(8..)?;
            let end = n.iter().position(|c| *c == 0).unwrap_or(n.len());
            if n.get(..end)? != name.as_bytes() {
                return None;
            }
            let k = u16::from_be_bytes([*e.get(4)?, *e.get(5)?]);
            Some((k, self.items.get(&k).map(Vec::as_slice).unwrap_or(&[])))
        })
    }

    /// Selects key `k`, as the selector port does.
    pub fn select(&mut self, k: u16) {
        self.off = 0;
        self.cur = if k & key::ENTRY_MASK >= key::FILE_FIRST + FILE_SLOTS {
            None
        } else {
            Some(k & (key::ENTRY_MASK | key::ARCH_LOCAL))
        };
    }

    fn current(&self) -> &[u8] {
        self.cur.and_then(|k| self.items.get(&k)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The next byte of the selected item (0 past its end).
    pub fn read_byte(&mut self) -> u8 {
        match self.current().get(self.off).copied() {
            Some(b) => {
                self.off += 1;
                b
            }
            None => 0,
        }
    }

    /// Runs the DMA descriptor at `desc` in guest memory.
    pub fn dma_transfer(&mut self, desc: u64, mem: &mut dyn GuestMemory) {
        let mut raw = [0u8; 16];
        if desc.checked_add(16).is_none() || mem.read(desc, &mut raw).is_err() {
            guest_warn!("fw_cfg: DMA descriptor at {desc:#x} is not in guest RAM");
            let _ = mem.write(desc, &dma::ERROR.to_be_bytes());
            return;
        }
        let be32 = |o: usize| raw.get(o..o + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map_or(0, u32::from_be_bytes);
        let control = be32(0);
        let mut length = u64::from(be32(4));
        let mut address = u64::from(be32(8)) << 32 | u64::from(be32(12));
        if control & dma::SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        #[derive(PartialEq)]
        enum Op {
            Read,
            Write,
            Skip,
        }
        let op = if control & dma::READ != 0 {
            Op::Read
        } else if control & dma::WRITE != 0 {
            Op::Write
        } else if control & dma::SKIP != 0 {
            Op::Skip
        } else {
            length = 0;
            Op::Skip
        };
        let mut status = 0u32;
        while length > 0 && status & dma::ERROR == 0 {
            let avail = self.current().len().saturating_sub(self.off) as u64;
            let len = if avail == 0 { length } else { length.min(avail) };
            if address.checked_add(len).is_none() {
                guest_warn!("fw_cfg: DMA of {len:#x} bytes at {address:#x} wraps the address space");
                status |= dma::ERROR;
                break;
            }
            match op {
                Op::Write => {
                    guest_warn!("fw_cfg: DMA write to item {:?}: no item is writable", self.cur);
                    status |= dma::ERROR;
                }
                Op::Read if avail == 0 => {
                    let mut done = 0u64;
                    while done < len {
                        let n = (len - done).min(ZEROS.len() as u64) as usize;
                        if mem.write(address + done, ZEROS.get(..n).unwrap_or(&[])).is_err() {
                            status |= dma::ERROR;
                            break;
                        }
                        done += n as u64;
                    }
                }
                Op::Read => {
                    let n = len as usize;
                    let src = self.current().get(self.off..self.off + n).unwrap_or(&[]);
                    if mem.write(address, src).is_err() {
                        status |= dma::ERROR;
                    }
                }
                Op::Skip => {}
            }
            if status & dma::ERROR != 0 && op != Op::Write {
                guest_warn!("fw_cfg: DMA to {address:#x} ({len:#x} bytes) is not in guest RAM");
            }
            if avail > 0 {
                self.off += len as usize;
            }
            address += len;
            length -= len;
        }
        if mem.write(desc, &status.to_be_bytes()).is_err() {
            guest_warn!("fw_cfg: cannot write the DMA status back to {desc:#x}");
        }
    }
}

impl PortDevice for FwCfg {
    fn name(&self) -> &str {
        "fw_cfg (QEMU firmware configuration, DMA)"
    }

    fn ports(&self) -> Vec<(u16, u16)> {
        vec![(PORT_SELECTOR, 2), (PORT_DMA, 8)]
    }

    fn read(&mut self, port: u16, size: u8, _fx: &mut Effects, _mem: &mut dyn GuestMemory) -> u64 {
        match port {
            PORT_SELECTOR | PORT_DATA if size == 1 => u64::from(self.read_byte()),
            PORT_SELECTOR | PORT_DATA => 0,
            _ => {
                let off = usize::from(port.wrapping_sub(PORT_DMA));
                (0..usize::from(size))
                    .map(|i| u64::from(DMA_SIGNATURE.get(off + i).copied().unwrap_or(0)) << (8 * i))
                    .fold(0, |a, b| a | b)
            }
        }
    }

    fn write(&mut self, port: u16, size: u8, val: u64, _fx: &mut Effects, mem: &mut dyn GuestMemory) {
        match (port, size) {
            (PORT_SELECTOR, 2) => self.select(val as u16),
            // Data-port writes are ignored (QEMU dropped the legacy write interface in 2.4).
            (PORT_SELECTOR | PORT_DATA, 1) => {}
            (PORT_DMA, 4) => self.dma_addr = u64::from((val as u32).swap_bytes()) << 32,
            (p, 4) if p == PORT_DMA + 4 => {
                let desc = self.dma_addr | u64::from((val as u32).swap_bytes());
                self.dma_addr = 0;
                self.dma_transfer(desc, mem);
            }
            (PORT_DMA, 8) => {
                self.dma_addr = 0;
                self.dma_transfer(val.swap_bytes(), mem);
            }
            _ => guest_warn!("fw_cfg: ignored write of {val:#x} (size {size}) to port {port:#x}"),
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn save_state(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(self.cur.unwrap_or(0xffff));
        w.u32(u32::try_from(self.off).unwrap_or(u32::MAX));
        w.u64(self.dma_addr);
        w.buf
    }

    fn load_state(&mut self, data: &[u8]) -> Result<(), StateError> {
        let mut r = Reader::new(data);
        let cur = r.u16()?;
        let off = r.u32()? as usize;
        let dma_addr = r.u64()?;
        if !r.done() {
            return Err(StateError::Mismatch("fw_cfg: trailing state".into()));
        }
        self.select(cur);
        if cur == 0xffff {
            self.cur = None;
        }
        self.off = off;
        self.dma_addr = dma_addr;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NoMemory;
    use crate::memory::GuestMemError;

    /// Guest RAM `[base, base+len)`.
    struct Ram {
        base: u64,
        bytes: Vec<u8>,
    }

    impl Ram {
        fn new(base: u64, len: usize) -> Self {
            Self { base, bytes: vec![0xcc; len] }
        }
        fn range(&mut self, gpa: u64, len: usize, op: &'static str) -> Result<std::ops::Range<usize>, GuestMemError> {
            let err = || GuestMemError { op, gpa, len, why: "not RAM".into() };
            let s = usize::try_from(gpa.checked_sub(self.base).ok_or_else(err)?).map_err(|_| err())?;
            let e = s.checked_add(len).filter(|e| *e <= self.bytes.len()).ok_or_else(err)?;
            Ok(s..e)
        }
        fn at(&self, gpa: u64, len: usize) -> &[u8] {
            let s = (gpa - self.base) as usize;
            &self.bytes[s..s + len]
        }
        fn put(&mut self, gpa: u64, data: &[u8]) {
            let s = (gpa - self.base) as usize;
            self.bytes[s..s + data.len()].copy_from_slice(data);
        }
        fn desc(&mut self, at: u64, control: u32, length: u32, address: u64) {
            let mut d = Vec::new();
            d.extend_from_slice(&control.to_be_bytes());
            d.extend_from_slice(&length.to_be_bytes());
            d.extend_from_slice(&address.to_be_bytes());
            self.put(at, &d);
        }
        fn status(&self, at: u64) -> u32 {
            u32::from_be_bytes(self.at(at, 4).try_into().unwrap())
        }
    }

    impl GuestMemory for Ram {
        fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
            let r = self.range(gpa, buf.len(), "read")?;
            buf.copy_from_slice(&self.bytes[r]);
            Ok(())
        }
        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), GuestMemError> {
            let r = self.range(gpa, buf.len(), "write")?;
            self.bytes[r].copy_from_slice(buf);
            Ok(())
        }
        fn invalidate(&mut self) {}
    }

    fn sel(f: &mut FwCfg, k: u16) {
        f.write(PORT_SELECTOR, 2, u64::from(k), &mut Vec::new(), &mut NoMemory);
    }

    fn rd(f: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n).map(|_| f.read(PORT_DATA, 1, &mut Vec::new(), &mut NoMemory) as u8).collect()
    }

    /// Starts a DMA as SeaBIOS does: `outl(cpu_to_be32(addr), 0x518)` (high half left 0).
    fn kick(f: &mut FwCfg, desc: u64, mem: &mut Ram) {
        f.write(PORT_DMA, 4, u64::from(((desc >> 32) as u32).swap_bytes()), &mut Vec::new(), mem);
        f.write(PORT_DMA + 4, 4, u64::from((desc as u32).swap_bytes()), &mut Vec::new(), mem);
    }

    fn dev() -> FwCfg {
        FwCfgOptions { cpus: 2, max_cpus: 4, ram_bytes: 256 << 20, below_4g: 256 << 20, ..Default::default() }
            .build()
            .unwrap()
    }

    #[test]
    fn signature_id_and_items_through_the_ports() {
        let mut f = dev();
        assert_eq!(f.ports(), vec![(0x510, 2), (0x514, 8)]);
        sel(&mut f, key::SIGNATURE);
        assert_eq!(rd(&mut f, 6), b"QEMU\0\0", "zeros past the end");
        sel(&mut f, key::ID);
        assert_eq!(rd(&mut f, 4), [3, 0, 0, 0], "traditional + DMA");
        sel(&mut f, key::NB_CPUS);
        assert_eq!(rd(&mut f, 2), [2, 0]);
        sel(&mut f, key::MAX_CPUS);
        assert_eq!(rd(&mut f, 2), [4, 0]);
        sel(&mut f, key::RAM_SIZE);
        assert_eq!(rd(&mut f, 8), (256u64 << 20).to_le_bytes());
        // Port 0x510 reads data too (QEMU's combined region); re-selecting rewinds.
        sel(&mut f, key::SIGNATURE);
        assert_eq!(f.read(PORT_SELECTOR, 1, &mut Vec::new(), &mut NoMemory), u64::from(b'Q'));
        sel(&mut f, key::SIGNATURE);
        assert_eq!(rd(&mut f, 1), b"Q");
        // Absent and invalid keys read zeros; byte writes to the data port change nothing.
        sel(&mut f, key::KERNEL_SIZE);
        assert_eq!(rd(&mut f, 4), [0; 4], "no kernel");
        sel(&mut f, 0x7fff);
        assert_eq!(rd(&mut f, 2), [0; 2]);
        f.write(PORT_DATA, 1, 0x55, &mut Vec::new(), &mut NoMemory);
        sel(&mut f, key::SIGNATURE | key::WRITE_CHANNEL);
        assert_eq!(rd(&mut f, 4), b"QEMU", "the write-channel bit is ignored");
    }

    #[test]
    fn dma_signature_reads_in_address_order() {
        let mut f = dev();
        let mut fx = Vec::new();
        let w = f.read(PORT_DMA, 4, &mut fx, &mut NoMemory) as u32;
        assert_eq!(w.to_le_bytes(), *b"QEMU");
        let w = f.read(PORT_DMA + 4, 4, &mut fx, &mut NoMemory) as u32;
        assert_eq!(w.to_le_bytes(), *b" CFG");
        assert_eq!(f.read(PORT_DMA + 1, 1, &mut fx, &mut NoMemory), u64::from(b'E'));
    }

    #[test]
    fn file_directory_is_sorted_big_endian() {
        let mut b = FwCfgBuilder::new();
        b.file("opt/zzz", vec![1, 2, 3]).unwrap();
        b.file("bootorder", b"/rom@x\0".to_vec()).unwrap();
        let mut f = b.build();
        sel(&mut f, key::FILE_DIR);
        let n = u32::from_be_bytes(rd(&mut f, 4).try_into().unwrap());
        assert_eq!(n, 3);
        let mut names = Vec::new();
        for i in 0..n {
            let e = rd(&mut f, 64);
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let k = u16::from_be_bytes(e[4..6].try_into().unwrap());
            assert_eq!(&e[6..8], &[0, 0]);
            assert_eq!(k, key::FILE_FIRST + i as u16, "keys follow the sorted order");
            let name = String::from_utf8(e[8..].iter().take_while(|c| **c != 0).copied().collect()).unwrap();
            let data = f.file(&name).unwrap().1.to_vec();
            assert_eq!(size as usize, data.len());
            names.push(name);
        }
        assert_eq!(names, ["bootorder", "etc/boot-fail-wait", "opt/zzz"]);
        let (k, d) = f.file("etc/boot-fail-wait").unwrap();
        assert_eq!(d, &[0xff; 4]);
        sel(&mut f, k);
        assert_eq!(rd(&mut f, 4), [0xff; 4]);
        // Builder limits.
        let mut b = FwCfgBuilder::new();
        assert!(matches!(b.file(&"x".repeat(56), vec![]), Err(FwCfgError::FileName(_))));
        assert!(b.file(&"x".repeat(55), vec![]).is_ok());
        assert!(matches!(b.file(&"x".repeat(55), vec![]), Err(FwCfgError::DuplicateFile(_))));
        for i in 0..30 {
            b.file(&format!("f{i}"), vec![]).unwrap();
        }
        assert!(matches!(b.file("one-too-many", vec![]), Err(FwCfgError::TooManyFiles(_))));
        assert!(matches!(b.item(key::FILE_DIR, vec![]), Err(FwCfgError::BadKey(0x19))));
        assert!(matches!(b.item(0x25, vec![]), Err(FwCfgError::BadKey(0x25))));
        assert!(b.item(key::ARCH_LOCAL | 3, vec![1]).is_ok());
    }

    #[test]
    fn dma_read_select_skip_and_status() {
        let mut f = dev();
        let mut ram = Ram::new(0x1000, 0x4000);
        // Select + read the signature into RAM.
        ram.desc(0x1000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::READ, 4, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.at(0x2000, 4), b"QEMU");
        assert_eq!(ram.status(0x1000), 0, "control cleared on success");
        // Skip two bytes of the ID, then read past its end: zeros fill the rest.
        ram.desc(0x1000, u32::from(key::ID) << 16 | dma::SELECT | dma::SKIP, 2, 0);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.status(0x1000), 0);
        ram.desc(0x1000, dma::READ, 8, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.at(0x2000, 8), &[0, 0, 0, 0, 0, 0, 0, 0], "ID bytes 2-3 are 0, then zero fill");
        ram.desc(0x1000, u32::from(key::ID) << 16 | dma::SELECT | dma::READ, 4, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.at(0x2000, 4), &[3, 0, 0, 0]);
        // The port interface continues where DMA left off.
        ram.desc(0x1000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::READ, 1, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(rd(&mut f, 3), b"EMU");
        // No operation bit: nothing moves, status 0.
        ram.put(0x2000, &[0xee; 4]);
        ram.desc(0x1000, u32::from(key::SIGNATURE) << 16 | dma::SELECT, 4, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.at(0x2000, 4), &[0xee; 4]);
        assert_eq!(ram.status(0x1000), 0);
    }

    #[test]
    fn dma_bad_addresses_set_the_error_bit_without_panicking() {
        let mut f = dev();
        let mut ram = Ram::new(0x1000, 0x4000);
        // Destination outside RAM.
        ram.desc(0x1000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::READ, 4, 0x10_0000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.status(0x1000), dma::ERROR);
        // Destination straddling the end of RAM.
        ram.desc(0x1000, u32::from(key::FILE_DIR) << 16 | dma::SELECT | dma::READ, 64, 0x4ff0);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.status(0x1000), dma::ERROR);
        // A zero fill that wraps the address space.
        ram.desc(0x1000, 0x7fff << 16 | dma::SELECT | dma::READ, 0x100, u64::MAX - 0x10);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.status(0x1000), dma::ERROR);
        // Writes are refused.
        ram.desc(0x1000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::WRITE, 4, 0x2000);
        kick(&mut f, 0x1000, &mut ram);
        assert_eq!(ram.status(0x1000), dma::ERROR);
        sel(&mut f, key::SIGNATURE);
        assert_eq!(rd(&mut f, 4), b"QEMU", "item unchanged");
        // Descriptor outside RAM, or wrapping: nothing to write back to, no panic.
        kick(&mut f, 0x9000_0000, &mut ram);
        kick(&mut f, u64::MAX - 7, &mut ram);
        f.write(PORT_DMA, 8, 0xffff_ffff_ffff_fff8u64.swap_bytes(), &mut Vec::new(), &mut ram);
        // Odd-sized DMA register writes are ignored.
        f.write(PORT_DMA, 2, 0x1234, &mut Vec::new(), &mut ram);
    }

    #[test]
    fn dma_address_halves_combine_then_reset() {
        let mut f = dev();
        let mut ram = Ram::new(0x1_0000_0000, 0x2000);
        ram.desc(0x1_0000_0000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::READ, 4, 0x1_0000_1000);
        kick(&mut f, 0x1_0000_0000, &mut ram);
        assert_eq!(ram.at(0x1_0000_1000, 4), b"QEMU", "high half from 0x514");
        assert_eq!(f.dma_addr, 0, "the address resets after each transfer");
    }

    #[test]
    fn state_round_trips() {
        let mut f = dev();
        sel(&mut f, key::SIGNATURE);
        rd(&mut f, 2);
        let blob = f.save_state();
        let mut g = dev();
        g.load_state(&blob).unwrap();
        assert_eq!(rd(&mut g, 2), b"MU");
        sel(&mut f, 0x7fff);
        let mut h = dev();
        h.load_state(&f.save_state()).unwrap();
        assert_eq!(h.cur, None);
        assert!(h.load_state(&blob[..3]).is_err());
    }

    /// A minimal protocol-2.15 bzImage: 4 setup sectors + 1 boot sector, then a kernel.
    fn synthetic(protocol: u16, loadflags: u8, sects: u8, kernel_len: usize) -> Vec<u8> {
        let setup = (usize::from(if sects == 0 { 4 } else { sects }) + 1) * 512;
        let mut v = vec![0u8; setup + kernel_len];
        v[hdr::SETUP_SECTS] = sects;
        v[0x1fe] = 0x55;
        v[0x1ff] = 0xaa;
        v[hdr::HEADER..hdr::HEADER + 4].copy_from_slice(b"HdrS");
        v[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&protocol.to_le_bytes());
        v[hdr::LOADFLAGS] = loadflags;
        v[hdr::INITRD_ADDR_MAX..hdr::INITRD_ADDR_MAX + 4].copy_from_slice(&0x37ff_ffffu32.to_le_bytes());
        for (i, b) in v[setup..].iter_mut().enumerate() {
            *b = i as u8;
        }
        v
    }

    #[test]
    fn linux_header_patching_modern_protocol() {
        let img = synthetic(0x20f, hdr::LOADED_HIGH, 4, 10_000);
        let initrd = vec![7u8; 5000];
        let b = LinuxBoot::prepare(img.clone(), Some(initrd.clone()), "console=ttyS0 quiet", 256 << 20).unwrap();
        assert_eq!(b.protocol, 0x20f);
        assert_eq!((b.setup_addr, b.kernel_addr, b.cmdline_addr), (0x10000, 0x100000, 0x20000));
        assert_eq!(b.setup.len(), 5 * 512);
        assert_eq!(b.kernel, img[5 * 512..], "the kernel is the file after the setup sectors");
        assert_eq!(b.cmdline, b"console=ttyS0 quiet\0");
        let s = &b.setup;
        assert_eq!(s[hdr::TYPE_OF_LOADER], 0xb0);
        assert_eq!(s[hdr::LOADFLAGS], hdr::LOADED_HIGH | hdr::CAN_USE_HEAP);
        assert_eq!(get_u16(s, hdr::HEAP_END_PTR), 0xfe00, "cmdline - setup - 0x200");
        assert_eq!(get_u32(s, hdr::CMD_LINE_PTR), 0x20000);
        // initrd: below min(initrd_addr_max, RAM top - ACPI data) and page aligned.
        let (addr, data) = b.initrd.clone().unwrap();
        assert_eq!(data, initrd);
        let max = (256u64 << 20) - ACPI_DATA_SIZE - 1;
        assert_eq!(u64::from(addr), (max - 5000) & !4095);
        assert_eq!(get_u32(s, hdr::RAMDISK_IMAGE), addr);
        assert_eq!(get_u32(s, hdr::RAMDISK_SIZE), 5000);
        // Through fw_cfg, the way the ROM reads it.
        let mut fb = FwCfgBuilder::new();
        fb.linux(b, vec![0x55, 0xaa, 1]).unwrap();
        let mut f = fb.build();
        let u32_item = |f: &mut FwCfg, k| {
            sel(f, k);
            u32::from_le_bytes(rd(f, 4).try_into().unwrap())
        };
        assert_eq!(u32_item(&mut f, key::SETUP_ADDR), 0x10000);
        assert_eq!(u32_item(&mut f, key::SETUP_SIZE), 5 * 512);
        assert_eq!(u32_item(&mut f, key::KERNEL_ADDR), 0x100000);
        assert_eq!(u32_item(&mut f, key::KERNEL_SIZE), 10_000);
        assert_eq!(u32_item(&mut f, key::CMDLINE_ADDR), 0x20000);
        assert_eq!(u32_item(&mut f, key::CMDLINE_SIZE), 20);
        assert_eq!(u32_item(&mut f, key::INITRD_SIZE), 5000);
        assert_eq!(f.file("bootorder").unwrap().1, b"/rom@genroms/linuxboot_dma.bin\0");
        assert_eq!(f.file("genroms/linuxboot_dma.bin").unwrap().1, &[0x55, 0xaa, 1]);
        sel(&mut f, key::SETUP_DATA);
        let setup = rd(&mut f, 5 * 512);
        assert_eq!(setup[0x202..0x206], *b"HdrS");
        assert_eq!(setup[hdr::TYPE_OF_LOADER], 0xb0);
    }

    #[test]
    fn linux_header_patching_old_protocols_and_limits() {
        // Not loaded high: everything low, old command-line protocol, setup_sects 0 means 4.
        let b = LinuxBoot::prepare(synthetic(0x201, 0, 0, 100), None, "x", 64 << 20).unwrap();
        assert_eq!((b.setup_addr, b.kernel_addr), (0x90000, 0x10000));
        assert_eq!(b.cmdline_addr, 0x9a000 - 16);
        assert_eq!(b.setup.len(), 5 * 512);
        assert_eq!(get_u16(&b.setup, hdr::OLD_CMD_LINE_MAGIC), 0xa33f);
        assert_eq!(u32::from(get_u16(&b.setup, hdr::OLD_CMD_LINE_OFFSET)), 0xa000 - 16);
        assert_eq!(get_u32(&b.setup, hdr::CMD_LINE_PTR), 0, "no cmd_line_ptr before 2.02");
        assert_eq!(get_u16(&b.setup, hdr::HEAP_END_PTR), 0xa000 - 16 - 0x200);
        // High but ancient.
        let b = LinuxBoot::prepare(synthetic(0x200, 1, 4, 100), None, "", 64 << 20).unwrap();
        assert_eq!((b.setup_addr, b.kernel_addr), (0x90000, 0x100000));
        assert_eq!(b.setup[hdr::LOADFLAGS], 1, "no heap flag before 2.01");
        // Protocol 2.02: initrd_addr_max is not in the header yet (0x37ffffff assumed).
        let b = LinuxBoot::prepare(synthetic(0x202, 1, 4, 100), Some(vec![1; 4096]), "", 2 << 30).unwrap();
        assert_eq!(b.initrd.unwrap().0, (0x37ff_ffff - 4096) & !4095);
        // 64-bit capable kernels are bounded by RAM.
        let mut img = synthetic(0x20c, 1, 4, 100);
        img[hdr::XLOADFLAGS] = 0x03;
        let b = LinuxBoot::prepare(img, Some(vec![1; 4096]), "", 0xb000_0000).unwrap();
        assert_eq!(u64::from(b.initrd.unwrap().0), (0xb000_0000 - ACPI_DATA_SIZE - 1 - 4096) & !4095);
        // Errors name the problem.
        assert_eq!(LinuxBoot::prepare(vec![0; 100], None, "", 1 << 30), Err(LinuxBootError::TooShort(100)));
        assert_eq!(LinuxBoot::prepare(vec![0; 4096], None, "", 1 << 30), Err(LinuxBootError::NotBzImage));
        let mut big = synthetic(0x20f, 1, 4, 0);
        big[hdr::SETUP_SECTS] = 200;
        assert!(matches!(LinuxBoot::prepare(big, None, "", 1 << 30), Err(LinuxBootError::SetupTooLarge { .. })));
        let e = LinuxBoot::prepare(synthetic(0x20f, 1, 4, 10), Some(vec![0; 8 << 20]), "", 8 << 20).unwrap_err();
        assert!(matches!(e, LinuxBootError::InitrdTooLarge { size: 0x80_0000, .. }), "{e}");
        let e = LinuxBoot::prepare(synthetic(0x100, 1, 4, 10), Some(vec![0; 10]), "", 1 << 30).unwrap_err();
        assert_eq!(e, LinuxBootError::TooOldForInitrd(0x100));
    }

    #[test]
    fn vga_parameter() {
        let vga = |c: &str| {
            let b = LinuxBoot::prepare(synthetic(0x20f, 1, 4, 10), None, c, 1 << 30)?;
            Ok::<u16, LinuxBootError>(get_u16(&b.setup, hdr::VID_MODE))
        };
        assert_eq!(vga("quiet"), Ok(0));
        assert_eq!(vga("vga=normal"), Ok(0xffff));
        assert_eq!(vga("a vga=ext b"), Ok(0xfffe));
        assert_eq!(vga("vga=ask"), Ok(0xfffd));
        assert_eq!(vga("vga=0x317 quiet"), Ok(0x317));
        assert_eq!(vga("vga=791"), Ok(791));
        assert_eq!(vga("vga=017"), Ok(15));
        assert_eq!(vga("vga=0"), Ok(0));
        assert_eq!(vga("vga=foo"), Err(LinuxBootError::BadVga("foo".into())));
    }

    /// SeaBIOS under Xen: `etc/e820` present (so no CMOS probe), one RAM entry at 0 (ignored).
    #[test]
    fn e820_file_lists_only_low_ram() {
        let f = dev();
        let (_, e) = f.file("etc/e820").unwrap();
        assert_eq!(e.len(), 20);
        assert_eq!(u64::from_le_bytes(e[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_le_bytes(e[8..16].try_into().unwrap()), 256 << 20);
        assert_eq!(u32::from_le_bytes(e[16..20].try_into().unwrap()), E820_RAM);
    }

    #[test]
    fn uuid_parsing() {
        let u = parse_uuid("12345678-9abc-def0-1122-334455667788").unwrap();
        assert_eq!(u[0], 0x12);
        assert_eq!(u[15], 0x88);
        assert_eq!(parse_uuid("1234"), None);
        assert_eq!(parse_uuid("12345678-9abc-def0-1122-33445566778g"), None);
    }

    fn real_kernel() -> Option<PathBuf> {
        let mut c: Vec<PathBuf> = vec!["/tmp/q35dm-xen-e2e/out/vmlinuz".into()];
        if let Ok(rd) = std::fs::read_dir("/boot") {
            c.extend(rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains("vmlinuz")));
        }
        c.into_iter().find(|p| std::fs::File::open(p).is_ok())
    }

    /// A real bzImage (the e2e bed's guest kernel or the host's), read back as the ROM reads it.
    #[test]
    fn real_bzimage_loads_like_qemu() {
        let Some(k) = real_kernel() else {
            eprintln!("no bzImage on this machine; skipped");
            return;
        };
        let raw = std::fs::read(&k).unwrap();
        let b = LinuxBoot::load(&k, None, "console=ttyS0,115200 panic=-1 quiet", 256 << 20).unwrap();
        assert!(b.protocol >= 0x20c, "a modern kernel: {:#x}", b.protocol);
        let sects = match raw[0x1f1] {
            0 => 4,
            n => usize::from(n),
        };
        assert_eq!(b.setup.len(), (sects + 1) * 512);
        assert_eq!(b.setup.len() + b.kernel.len(), raw.len());
        assert_eq!(b.kernel, raw[b.setup.len()..]);
        assert_eq!((b.setup_addr, b.kernel_addr, b.cmdline_addr), (0x10000, 0x100000, 0x20000));
        assert_eq!(b.setup[0x210], 0xb0);
        assert_ne!(b.setup[0x211] & 0x81, 0, "LOADED_HIGH and CAN_USE_HEAP");
        assert_eq!(get_u16(&b.setup, 0x224), 0xfe00);
        assert_eq!(get_u32(&b.setup, 0x228), 0x20000);
        // Everything except the patched fields is the file's.
        let patched = [0x210..0x212, 0x224..0x226, 0x228..0x22c];
        for (i, (a, c)) in raw.iter().zip(&b.setup).enumerate() {
            if !patched.iter().any(|r| r.contains(&i)) {
                assert_eq!(a, c, "byte {i:#x} changed");
            }
        }
    }

    #[test]
    fn options_need_the_rom_only_with_a_kernel() {
        let dir = std::env::temp_dir().join(format!("q35dm-fwcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kpath = dir.join("bzImage");
        std::fs::write(&kpath, synthetic(0x20f, 1, 4, 64)).unwrap();
        let rom = dir.join(LINUXBOOT_ROM);
        std::fs::write(&rom, [0x55, 0xaa, 1, 0xcb]).unwrap();
        let o = FwCfgOptions {
            cpus: 1,
            kernel: Some(kpath.clone()),
            append: Some("root=/dev/ram0".into()),
            below_4g: 256 << 20,
            rom_dirs: vec![dir.clone()],
            nographic: true,
            uuid: parse_uuid("00000000-0000-0000-0000-000000000001"),
            ..Default::default()
        };
        let mut f = o.build().unwrap();
        assert_eq!(f.file("genroms/linuxboot_dma.bin").unwrap().1, &[0x55, 0xaa, 1, 0xcb], "override first");
        sel(&mut f, key::NOGRAPHIC);
        assert_eq!(rd(&mut f, 2), [1, 0]);
        sel(&mut f, key::UUID);
        assert_eq!(rd(&mut f, 16)[15], 1);
        sel(&mut f, key::CMDLINE_DATA);
        assert_eq!(rd(&mut f, 15), b"root=/dev/ram0\0");
        // A broken ROM, a missing kernel and -initrd alone are clear errors.
        std::fs::write(&rom, b"MZ").unwrap();
        let e = o.build().unwrap_err();
        assert!(matches!(e, FwCfgError::BadRom(_)), "{e}");
        let e = FwCfgOptions { kernel: Some(dir.join("nope")), rom_dirs: vec![dir.clone()], ..o.clone() };
        std::fs::write(&rom, [0x55, 0xaa]).unwrap();
        let e = e.build().unwrap_err();
        assert!(e.to_string().contains("-kernel") && e.to_string().contains("nope"), "{e}");
        let e = FwCfgOptions { kernel: None, initrd: Some(kpath.clone()), ..Default::default() }.build().unwrap_err();
        assert!(matches!(e, FwCfgError::InitrdWithoutKernel(_)));
        // No kernel: no ROM needed, no boot items.
        let mut f = FwCfgOptions { rom_dirs: vec!["/nonexistent".into()], ..Default::default() }.build().unwrap();
        assert!(f.file("etc/e820").is_some());
        assert!(f.file("bootorder").is_none());
        sel(&mut f, key::SETUP_SIZE);
        assert_eq!(rd(&mut f, 4), [0; 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_rom_is_a_clear_error() {
        let e = find_rom("q35dm-no-such-rom.bin", &["/nonexistent-rom-dir".into()]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/nonexistent-rom-dir") && s.contains("/usr/share/qemu") && s.contains(ROM_DIR_ENV), "{s}");
    }

    /// QEMU's own ROM, when installed, is found and valid.
    #[test]
    fn system_linuxboot_rom() {
        match find_rom(LINUXBOOT_ROM, &[]) {
            Ok(p) => assert_eq!(load_rom(&p).unwrap()[..2], [0x55, 0xaa]),
            Err(e) => eprintln!("{e}; skipped"),
        }
    }
}
