//! The devices a Linux guest needs to boot on Xen — the COM ports, fw_cfg with direct kernel
//! boot, the Xen platform device — driven through the real engine on the simulated hypervisor
//! (the test plays the guest: firmware and kernel accesses as vCPU port I/O, DMA descriptors in
//! guest RAM), and the q35dm binary started with libxl's arguments, checked through QMP.

#[path = "support/board.rs"]
mod board;
#[path = "support/qmp_client.rs"]
mod qmp_client;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use board::Board;
use q35dm::app::{self, Options};
use q35dm::cmdline::chardev::{Chardev, ChardevBackend, ChardevOrigin};
use q35dm::devices::fwcfg::{self, dma, key};
use q35dm::devices::serial::Serial;
use q35dm::monitor::qmp::ChardevInfo;
use q35dm::sim::IrqEvent;
use serde_json::json;

const COM1: u16 = 0x3f8;
const COM2: u16 = 0x2f8;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("q35dm-boot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn serial_chardev(i: usize, backend: ChardevBackend) -> Chardev {
    Chardev { id: format!("serial{i}"), backend, mux: false, origin: ChardevOrigin::Serial(i), props: Vec::new() }
}

/// The board with the legacy devices `opts` asks for; returns what `query-chardev` would list.
fn board_with(opts: Options) -> (Board, Vec<ChardevInfo>) {
    let mut infos = Vec::new();
    let b = Board::with(256, |m| infos = app::install_legacy_devices(&opts, m).expect("legacy devices"));
    (b, infos)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn isa_irqs(b: &Board, irq: u8) -> Vec<u8> {
    b.sim
        .irq_events()
        .into_iter()
        .filter_map(|e| match e {
            IrqEvent::IsaIrq { irq: i, level } if i == irq => Some(level),
            _ => None,
        })
        .collect()
}

#[test]
fn guest_hello_on_com1_lands_in_the_file_backend() {
    let log = tmp("com1.log");
    let cd = serial_chardev(0, ChardevBackend::File { path: log.clone(), append: false });
    let (b, infos) = board_with(Options { serials: vec![cd.clone()], chardevs: vec![cd], ..Options::default() });
    assert_eq!(infos, vec![ChardevInfo { label: "serial0".into(), filename: format!("file:{}", log.display()) }]);
    let v = b.vcpu();
    // Linux's polled console path: wait for THRE, write THR.
    for c in b"hello" {
        assert_ne!(v.pio_read(COM1 + 5, 1).unwrap() & 0x20, 0, "THRE");
        v.pio_write(COM1, 1, u32::from(*c)).unwrap();
    }
    // `rep outsb` from guest RAM (string I/O through the engine).
    b.sim.ram_write(0x8000, b", world\n").unwrap();
    v.rep_outs(COM1, 1, 8, 0x8000, false).unwrap();
    assert_eq!(v.pio_read(COM1 + 5, 1).unwrap() & 0x60, 0x60, "THRE and TEMT: the bytes left at once");
    assert!(isa_irqs(&b, 4).is_empty(), "no interrupt enabled, none raised");
    let flushed = b.machine(|m| m.port_device_mut::<Serial>().unwrap().backend().flush(Duration::from_secs(5)));
    assert!(flushed);
    assert_eq!(std::fs::read(&log).unwrap(), b"hello, world\n");
    // Dropping the board drains the backend too.
    v.pio_write(COM1, 1, u32::from(b'!')).unwrap();
    drop(b.stop());
    assert_eq!(std::fs::read(&log).unwrap(), b"hello, world\n!");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn thre_interrupts_reach_the_hypervisor_as_isa_irq_edges() {
    let cds = vec![serial_chardev(0, ChardevBackend::Null), serial_chardev(1, ChardevBackend::Null)];
    let (b, _) = board_with(Options { serials: cds.clone(), chardevs: cds, ..Options::default() });
    let v = b.vcpu();
    // Linux's interrupt-driven transmit on COM2 (IRQ 3): FIFO on, THRI on.
    v.pio_write(COM2 + 2, 1, 0x07).unwrap();
    v.pio_write(COM2 + 1, 1, 0x02).unwrap();
    assert_eq!(isa_irqs(&b, 3), vec![1], "THR empty: the line rises");
    assert_eq!(v.pio_read(COM2 + 2, 1).unwrap(), 0xc2, "IIR: FIFOs on, THRE interrupt");
    assert_eq!(isa_irqs(&b, 3), vec![1, 0], "reading IIR acknowledges it");
    for c in b"ab" {
        v.pio_write(COM2, 1, u32::from(*c)).unwrap();
    }
    assert_eq!(isa_irqs(&b, 3), vec![1, 0, 1, 0, 1], "a fresh edge per byte, only level changes");
    v.pio_write(COM2 + 1, 1, 0).unwrap();
    assert_eq!(isa_irqs(&b, 3), vec![1, 0, 1, 0, 1, 0]);
    assert!(isa_irqs(&b, 4).is_empty(), "COM1 untouched");
}

#[test]
fn pty_input_reaches_the_guest_with_a_receive_interrupt() {
    let cd = serial_chardev(0, ChardevBackend::Pty);
    let (b, infos) = board_with(Options { serials: vec![cd.clone()], chardevs: vec![cd], ..Options::default() });
    let path = infos[0].filename.strip_prefix("pty:").expect("pty:/dev/pts/N").to_string();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    let h = b.handle.clone();
    assert_eq!(b.machine(move |m| q35dm::devices::serial::start_input(m, &h).unwrap()), 1);
    let v = b.vcpu();
    // FIFO on with trigger level 8, then the receive interrupt on.
    v.pio_write(COM1 + 2, 1, 0x87).unwrap();
    v.pio_write(COM1 + 1, 1, 0x01).unwrap();
    // `xl console` attaches and types.
    let mut console = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    console.write_all(b"root\r").unwrap();
    wait_for("the receive interrupt", || isa_irqs(&b, 4) == vec![1]);
    let mut got = Vec::new();
    wait_for("five bytes", || {
        while v.pio_read(COM1 + 5, 1).unwrap() & 1 != 0 {
            got.push(v.pio_read(COM1, 1).unwrap() as u8);
        }
        got.len() >= 5
    });
    assert_eq!(got, b"root\r");
    assert_eq!(v.pio_read(COM1 + 2, 1).unwrap() & 0x0f, 0x01, "nothing pending");
    assert_eq!(isa_irqs(&b, 4).last(), Some(&0));
    // Guest output reaches the console.
    for c in b"# " {
        v.pio_write(COM1, 1, u32::from(*c)).unwrap();
    }
    let mut out = [0u8; 2];
    console.read_exact(&mut out).unwrap();
    assert_eq!(&out, b"# ");
}

fn fw_cfg_select(b: &Board, k: u16) {
    b.vcpu().pio_write(fwcfg::PORT_SELECTOR, 2, u32::from(k)).unwrap();
}

fn fw_cfg_bytes(b: &Board, n: usize) -> Vec<u8> {
    (0..n).map(|_| b.vcpu().pio_read(fwcfg::PORT_DATA, 1).unwrap() as u8).collect()
}

/// One DMA transfer as SeaBIOS starts it: descriptor at `desc`, `outl(cpu_to_be32(desc), 0x518)`.
fn fw_cfg_dma(b: &Board, desc: u64, control: u32, len: u32, addr: u64) -> u32 {
    let mut d = Vec::new();
    d.extend_from_slice(&control.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&addr.to_be_bytes());
    b.sim.ram_write(desc, &d).unwrap();
    b.vcpu().pio_write(fwcfg::PORT_DMA + 4, 4, (desc as u32).swap_bytes()).unwrap();
    let mut st = [0u8; 4];
    b.sim.ram_read(desc, &mut st).unwrap();
    u32::from_be_bytes(st)
}

fn read_entry(b: &Board, k: u16, len: u32, at: u64) -> Vec<u8> {
    assert_eq!(fw_cfg_dma(b, 0x7000, u32::from(k) << 16 | dma::SELECT | dma::READ, len, at), 0);
    let mut v = vec![0u8; len as usize];
    b.sim.ram_read(at, &mut v).unwrap();
    v
}

fn le32(v: &[u8]) -> u32 {
    u32::from_le_bytes(v[..4].try_into().unwrap())
}

/// Finds a file in the directory as SeaBIOS does: count, then 64-byte big-endian entries.
fn find_file(b: &Board, name: &str) -> Option<(u16, u32)> {
    fw_cfg_select(b, key::FILE_DIR);
    let n = u32::from_be_bytes(fw_cfg_bytes(b, 4).try_into().unwrap());
    (0..n).find_map(|_| {
        let e = fw_cfg_bytes(b, 64);
        let fname: Vec<u8> = e[8..].iter().take_while(|c| **c != 0).copied().collect();
        (fname == name.as_bytes())
            .then(|| (u16::from_be_bytes([e[4], e[5]]), u32::from_be_bytes(e[..4].try_into().unwrap())))
    })
}

#[test]
fn fw_cfg_signature_id_and_files_through_port_io() {
    let (b, _) = board_with(Options { fw_cfg: fw_opts(2), ..Options::default() });
    fw_cfg_select(&b, key::SIGNATURE);
    assert_eq!(fw_cfg_bytes(&b, 4), b"QEMU");
    // SeaBIOS without DMA reads items with `rep insb`.
    fw_cfg_select(&b, key::ID);
    b.vcpu().rep_ins(fwcfg::PORT_DATA, 1, 4, 0x9000, false).unwrap();
    let mut id = [0u8; 4];
    b.sim.ram_read(0x9000, &mut id).unwrap();
    assert_eq!(u32::from_le_bytes(id), 3, "DMA supported");
    let sig = b.vcpu().pio_read(fwcfg::PORT_DMA, 4).unwrap();
    assert_eq!(sig.to_le_bytes(), *b"QEMU");
    fw_cfg_select(&b, key::NB_CPUS);
    assert_eq!(fw_cfg_bytes(&b, 2), [2, 0]);
    let (k, size) = find_file(&b, "etc/boot-fail-wait").expect("etc/boot-fail-wait");
    assert_eq!(size, 4);
    fw_cfg_select(&b, k);
    assert_eq!(fw_cfg_bytes(&b, 4), [0xff; 4]);
    assert!(find_file(&b, "bootorder").is_none(), "no kernel, no boot order");
    // SeaBIOS reads `etc/e820` instead of CMOS; its one entry (low RAM at 0) is one SeaBIOS
    // skips under Xen, whose map it already has.
    let (k, size) = find_file(&b, "etc/e820").expect("etc/e820");
    assert_eq!(size, 20);
    let e = read_entry(&b, k, 20, 0x9000);
    assert_eq!(u64::from_le_bytes(e[..8].try_into().unwrap()), 0);
    assert_eq!(u64::from_le_bytes(e[8..16].try_into().unwrap()), 256 << 20);
    assert_eq!(le32(&e[16..]), 1);
}

fn fw_opts(cpus: u16) -> fwcfg::FwCfgOptions {
    fwcfg::FwCfgOptions { cpus, ram_bytes: 256 << 20, below_4g: 256 << 20, ..Default::default() }
}

#[test]
fn fw_cfg_dma_lands_in_guest_ram_and_bad_addresses_set_the_error_bit() {
    let (b, _) = board_with(Options { fw_cfg: fw_opts(1), ..Options::default() });
    assert_eq!(read_entry(&b, key::SIGNATURE, 4, 0x10000), b"QEMU");
    // A read that crosses pages and runs past the item: zero filled.
    b.sim.ram_write(0x10ffe, &[0xaa; 8]).unwrap();
    assert_eq!(read_entry(&b, key::ID, 8, 0x10ffe), [3, 0, 0, 0, 0, 0, 0, 0]);
    // Destination outside guest RAM: error bit, no crash, the device keeps working.
    let st = fw_cfg_dma(&b, 0x7000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::READ, 4, 0xf000_0000);
    assert_eq!(st, dma::ERROR);
    let st = fw_cfg_dma(&b, 0x7000, u32::from(key::SIGNATURE) << 16 | dma::SELECT | dma::WRITE, 4, 0x10000);
    assert_eq!(st, dma::ERROR, "nothing is writable");
    // A descriptor outside RAM.
    b.vcpu().pio_write(fwcfg::PORT_DMA + 4, 4, 0xf000_0000u32.swap_bytes()).unwrap();
    assert_eq!(read_entry(&b, key::SIGNATURE, 4, 0x10000), b"QEMU");
    assert!(b.sim.crashed().is_none());
}

/// A small bzImage (boot protocol 2.15): 4 setup sectors, then a recognisable kernel body.
fn synthetic_bzimage() -> Vec<u8> {
    let mut v = vec![0u8; 5 * 512 + 70_000];
    v[0x1f1] = 4;
    v[0x1fe] = 0x55;
    v[0x1ff] = 0xaa;
    v[0x202..0x206].copy_from_slice(b"HdrS");
    v[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    v[0x211] = 0x01;
    v[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    v[0x236] = 0x03;
    for (i, b) in v[5 * 512..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    v
}

/// A directory with a stand-in for QEMU's option ROM (its contents do not matter here).
fn rom_dir(tag: &str) -> PathBuf {
    let d = tmp(&format!("roms-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    let mut rom = vec![0u8; 1536];
    rom[..3].copy_from_slice(&[0x55, 0xaa, 3]);
    std::fs::write(d.join(fwcfg::LINUXBOOT_ROM), rom).unwrap();
    d
}

/// Plays linuxboot_dma.bin: reads every boot item by DMA into guest RAM where they say.
#[test]
fn direct_linux_boot_as_the_option_rom_loads_it() {
    let kernel_path = tmp("bzImage");
    let kernel = synthetic_bzimage();
    std::fs::write(&kernel_path, &kernel).unwrap();
    let initrd_path = tmp("initrd");
    let initrd: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&initrd_path, &initrd).unwrap();
    let roms = rom_dir("boot");
    let cmdline = "console=ttyS0,115200 panic=-1 quiet";
    let fw = fwcfg::FwCfgOptions {
        kernel: Some(kernel_path.clone()),
        initrd: Some(initrd_path.clone()),
        append: Some(cmdline.into()),
        rom_dirs: vec![roms.clone()],
        ..fw_opts(1)
    };
    let (b, _) = board_with(Options { fw_cfg: fw, ..Options::default() });
    // SeaBIOS: the ROM is in genroms/ and boots first.
    let (k, size) = find_file(&b, "genroms/linuxboot_dma.bin").expect("option ROM");
    assert_eq!(size, 1536);
    assert_eq!(read_entry(&b, k, 3, 0x9000), [0x55, 0xaa, 3]);
    let (k, size) = find_file(&b, "bootorder").unwrap();
    assert_eq!(read_entry(&b, k, size, 0x9000), b"/rom@genroms/linuxboot_dma.bin\0");
    // The ROM.
    let u32_at = |k| le32(&read_entry(&b, k, 4, 0x6000));
    let setup_addr = u32_at(key::SETUP_ADDR);
    let setup_size = u32_at(key::SETUP_SIZE);
    assert_eq!((setup_addr, setup_size), (0x10000, 5 * 512));
    read_entry(&b, key::SETUP_DATA, setup_size, u64::from(setup_addr));
    let initrd_addr = u32_at(key::INITRD_ADDR);
    let initrd_size = u32_at(key::INITRD_SIZE);
    assert_eq!(initrd_size as usize, initrd.len());
    assert_eq!(initrd_addr % 4096, 0);
    assert!(u64::from(initrd_addr) + u64::from(initrd_size) <= (256 << 20) - fwcfg::ACPI_DATA_SIZE);
    read_entry(&b, key::INITRD_DATA, initrd_size, u64::from(initrd_addr));
    let kernel_addr = u32_at(key::KERNEL_ADDR);
    let kernel_size = u32_at(key::KERNEL_SIZE);
    assert_eq!((kernel_addr, kernel_size as usize), (0x100000, kernel.len() - 5 * 512));
    read_entry(&b, key::KERNEL_DATA, kernel_size, u64::from(kernel_addr));
    let cmdline_addr = u32_at(key::CMDLINE_ADDR);
    let cmdline_size = u32_at(key::CMDLINE_SIZE);
    assert_eq!((cmdline_addr, cmdline_size as usize), (0x20000, cmdline.len() + 1));
    read_entry(&b, key::CMDLINE_DATA, cmdline_size, u64::from(cmdline_addr));
    // Guest RAM now holds what the kernel's boot code expects.
    let ram = |at: u64, n: usize| {
        let mut v = vec![0u8; n];
        b.sim.ram_read(at, &mut v).unwrap();
        v
    };
    let hdr = ram(0x10000, 0x260);
    assert_eq!(&hdr[0x202..0x206], b"HdrS");
    assert_eq!(hdr[0x210], 0xb0, "type_of_loader: QEMU");
    assert_eq!(hdr[0x211], 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(u16::from_le_bytes([hdr[0x224], hdr[0x225]]), 0xfe00, "heap_end_ptr");
    assert_eq!(le32(&hdr[0x228..]), 0x20000, "cmd_line_ptr");
    assert_eq!(le32(&hdr[0x218..]), initrd_addr, "ramdisk_image");
    assert_eq!(le32(&hdr[0x21c..]), initrd_size, "ramdisk_size");
    assert_eq!(ram(0x100000, kernel.len() - 5 * 512), kernel[5 * 512..]);
    assert_eq!(ram(u64::from(initrd_addr), initrd.len()), initrd);
    assert_eq!(ram(0x20000, cmdline.len() + 1), format!("{cmdline}\0").as_bytes());
    drop(b);
    for p in [&kernel_path, &initrd_path] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&roms);
}

#[test]
fn xenfv_platform_device_at_slot_2_and_the_unplug_ports() {
    let (b, _) = board_with(Options { xen_platform: true, ..Options::default() });
    let bdf = 2 << 3;
    assert_eq!(b.cfg_read(bdf, 0, 4), 0x0001_5853);
    assert_eq!(b.cfg_read(bdf, 8, 4), 0xff80_0001, "class ff80, revision 1");
    assert_eq!(b.cfg_read(bdf, 0x2c, 4), 0x0001_5853);
    assert_eq!(b.cfg_read(bdf, 0x3d, 1), 1, "INTA");
    // Firmware sizes and places BAR0, enables I/O; Linux's platform_pci reads the flags there.
    b.cfg_write(bdf, 0x10, 4, 0xffff_ffff);
    assert_eq!(b.cfg_read(bdf, 0x10, 4), 0xffff_ff01);
    b.cfg_write(bdf, 0x10, 4, 0xc000);
    b.cfg_write(bdf, 4, 2, 0x0003);
    let v = b.vcpu();
    assert_eq!(v.pio_read(0xc000, 1).unwrap(), 0);
    // Linux's check_platform_magic() and unplug.
    assert_eq!(v.pio_read(0x10, 2).unwrap(), 0x49d2);
    assert_eq!(v.pio_read(0x12, 1).unwrap(), 1);
    v.pio_write(0x12, 2, 3).unwrap();
    v.pio_write(0x10, 4, 1).unwrap();
    assert_eq!(v.pio_read(0x10, 2).unwrap(), 0x49d2);
    v.pio_write(0x10, 2, 3).unwrap();
    let st = b.machine(|m| {
        let n = m.pci.find(q35dm::pci::Sbdf::new(0, 0, 2, 0)).unwrap();
        let d = m.pci.node_mut(n).unwrap().dev.as_any_mut();
        d.downcast_mut::<q35dm::devices::xen_platform::XenPlatform>().unwrap().state()
    });
    assert_eq!((st.unplugged, st.product, st.build), (3, Some(3), Some(1)));
    assert!(b.sim.irq_events().is_empty(), "the device model never drives the platform INTx");
}

#[test]
fn uart_and_fw_cfg_state_survive_save_and_restore() {
    let cds = vec![serial_chardev(0, ChardevBackend::Null)];
    let opts = Options { serials: cds.clone(), chardevs: cds, fw_cfg: fw_opts(1), ..Options::default() };
    let (b, _) = board_with(opts.clone());
    let v = b.vcpu();
    v.pio_write(COM1 + 3, 1, 0x83).unwrap();
    // 115200 baud.
    v.pio_write(COM1, 1, 0x01).unwrap();
    v.pio_write(COM1 + 3, 1, 0x03).unwrap();
    v.pio_write(COM1 + 7, 1, 0x5a).unwrap();
    fw_cfg_select(&b, key::SIGNATURE);
    fw_cfg_bytes(&b, 2);
    let blob = b.machine(|m| m.save_state());
    drop(b);
    let (b2, _) = board_with(opts);
    b2.machine(move |m| m.load_state(&blob, &mut Vec::new())).unwrap();
    let v = b2.vcpu();
    assert_eq!(v.pio_read(COM1 + 7, 1).unwrap(), 0x5a);
    assert_eq!(v.pio_read(COM1 + 3, 1).unwrap(), 0x03);
    v.pio_write(COM1 + 3, 1, 0x83).unwrap();
    assert_eq!(v.pio_read(COM1, 1).unwrap(), 0x01, "divisor restored");
    assert_eq!(fw_cfg_bytes(&b2, 2), b"MU", "fw_cfg continues where it was");
    // A board without the UART refuses the blob.
    let (b3, _) = board_with(Options::default());
    let blob = b2.machine(|m| m.save_state());
    let e = b3.machine(move |m| m.load_state(&blob, &mut Vec::new())).unwrap_err();
    assert!(e.to_string().contains("COM1"), "{e}");
}

/// The q35dm binary as libxl starts it (`-serial`, `-machine xenfv`, `-kernel`, ...).
fn start_binary(tag: &str, extra: &[&str], rom_dir: &Path) -> (std::process::Child, qmp_client::Qmp, PathBuf) {
    let sock = tmp(&format!("{tag}.qmp"));
    let child = Command::new(env!("CARGO_BIN_EXE_q35dm"))
        .args(["--accel", "sim", "--log-level", "warn", "--qmp"])
        .arg(&sock)
        .args(extra)
        .env(fwcfg::ROM_DIR_ENV, rom_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start q35dm");
    let q = qmp_client::Qmp::connect(&sock, Duration::from_secs(20));
    (child, q, sock)
}

#[test]
fn binary_with_libxl_arguments_reports_chardevs_and_serves_the_devices() {
    let log = tmp("bin-serial1.log");
    let kernel_path = tmp("bin-bzImage");
    std::fs::write(&kernel_path, synthetic_bzimage()).unwrap();
    let roms = rom_dir("bin");
    let (mut child, mut q, sock) = start_binary(
        "bin",
        &[
            "-serial",
            "pty",
            "-serial",
            &format!("file:{}", log.display()),
            "-machine",
            "xenfv,suppress-vmdesc=on",
            "-kernel",
            kernel_path.to_str().unwrap(),
            "-append",
            "console=ttyS0",
            "-nographic",
        ],
        &roms,
    );
    let r = q.execute("query-chardev", json!({}));
    let list = r["return"].as_array().unwrap_or_else(|| panic!("{r}"));
    let find = |label: &str| {
        list.iter()
            .find(|c| c["label"] == label)
            .and_then(|c| c["filename"].as_str())
            .unwrap_or_else(|| panic!("no {label} in {r}"))
            .to_string()
    };
    let pty = find("serial0");
    assert!(pty.starts_with("pty:/dev/pts/"), "{pty}");
    assert_eq!(find("serial1"), format!("file:{}", log.display()));
    // What `xl console` would see: COM1 output on the pty.
    let mut console = std::fs::OpenOptions::new().read(true).write(true).open(&pty[4..]).unwrap();
    let hmp = |q: &mut qmp_client::Qmp, line: &str| {
        let r = q.execute("human-monitor-command", json!({"command-line": line}));
        r["return"].as_str().unwrap_or_else(|| panic!("{line}: {r}")).to_string()
    };
    for c in b"ok" {
        hmp(&mut q, &format!("o 0x3f8 {c:#x}"));
    }
    let mut got = [0u8; 2];
    console.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ok");
    // COM2 into the file.
    for c in b"hi\n" {
        hmp(&mut q, &format!("o 0x2f8 {c:#x}"));
    }
    wait_for("COM2 output in the file", || std::fs::read(&log).unwrap_or_default() == b"hi\n");
    // fw_cfg and the platform device.
    hmp(&mut q, "o /h 0x510 0");
    let sig: Vec<String> = (0..4).map(|_| hmp(&mut q, "i /b 0x511")).collect();
    assert!(sig[0].contains("= 0x51") && sig[3].contains("= 0x55"), "{sig:?}");
    assert!(hmp(&mut q, "i /h 0x10").contains("= 0x49d2"));
    let pci = q.execute("query-pci", json!({}));
    let devs = pci["return"][0]["devices"].as_array().unwrap();
    assert!(
        devs.iter().any(|d| d["slot"] == 2 && d["id"]["vendor"] == 0x5853 && d["id"]["device"] == 1),
        "xen-platform at 00:02.0: {pci}"
    );
    let _ = child.kill();
    let _ = child.wait();
    for p in [&log, &kernel_path, &sock] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&roms);
}

#[test]
fn binary_refuses_a_kernel_it_cannot_boot() {
    let bad = tmp("not-a-kernel");
    std::fs::write(&bad, vec![0u8; 8192]).unwrap();
    let roms = rom_dir("bad");
    let out = Command::new(env!("CARGO_BIN_EXE_q35dm"))
        .args(["--accel", "sim", "-kernel"])
        .arg(&bad)
        .env(fwcfg::ROM_DIR_ENV, &roms)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HdrS") && err.contains(bad.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_file(&bad);
    let _ = std::fs::remove_dir_all(&roms);
}
