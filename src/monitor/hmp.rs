//! HMP commands, with QEMU's syntax and output format so the same scripts drive QEMU and q35dm.

use std::fmt::Write as _;

use crate::vm::{RunState, Vm, VmError};

/// One line of HMP: executes it and returns what QEMU would print (each line `\n`-terminated).
pub fn execute(vm: &Vm, line: &str) -> String {
    match execute_checked(vm, line) {
        Ok(s) => s,
        Err(e) => e,
    }
}

/// Like [`execute`], but tells success (`Ok(output)`) from failure (`Err(message)`).
pub fn execute_checked(vm: &Vm, line: &str) -> Result<String, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(String::new());
    }
    let (cmd, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (line, ""),
    };
    let r = match cmd {
        "help" | "?" => Ok(help()),
        "info" => info(vm, rest),
        "i" => port_in(vm, rest),
        "o" => port_out(vm, rest),
        "xp" => xp(vm, rest),
        "x-dump-config" => dump_config(vm, rest),
        "device_add" => crate::devices::DeviceRequest::parse(rest)
            .map_err(|e| VmError::Invalid(e.to_string()))
            .and_then(|r| vm.device_add(r))
            .map(|()| String::new()),
        "device_del" => vm.device_del(rest, false).map(|_| String::new()),
        "pci_add" => pci_add(vm, rest),
        "pci_del" => pci_del(vm, rest),
        "pcie_abp" => pcie_abp(vm, rest),
        "pcie_aer_inject_error" => vm.aer_inject(rest),
        "x-seccomp-probe" => Ok(seccomp_probe(rest)),
        "cont" | "c" => {
            vm.cont();
            Ok(String::new())
        }
        "stop" => {
            vm.stop();
            Ok(String::new())
        }
        "quit" | "q" => {
            vm.quit();
            Ok(String::new())
        }
        _ => return Err(format!("unknown command: '{cmd}'\n")),
    };
    r.map_err(|e| format!("{e}\n"))
}

const COMMANDS: &[(&str, &str)] = &[
    ("cont|c", "resume emulation"),
    ("device_add driver[,prop=value][,...]", "add device (hot-plug into a root/downstream port slot: bus=<port id>)"),
    ("device_del id", "remove device (attention button; the device goes when the guest releases the slot)"),
    ("help|? [cmd]", "show the help"),
    ("i /fmt addr", "I/O port read"),
    ("info [subcommand]", "show various information about the system state (pci, status, version)"),
    ("o /fmt addr value", "I/O port write"),
    ("pci_add pci_addr=<port id>|auto driver[,prop=value]", "original form of device_add; prints the address"),
    ("pci_del pci_addr=[[domain:]bus:]slot|id", "original form of device_del"),
    ("pcie_abp [chassis.]slot|port-id", "press the attention button of a PCIe slot"),
    (
        "pcie_aer_inject_error [-a] [-c] id <error_status> [<tlp header> [<tlp header prefix>]]",
        "inject pcie aer error (also: [[domain:]bus:]dev.fn is_correctable error_status hdr0..hdr3 [pfx0..pfx3])",
    ),
    ("quit|q", "quit the device model"),
    ("stop", "stop emulation"),
    ("x-dump-config bb:dd.f", "dump the 4 KiB config space of a function in `lspci -xxxx` format"),
    ("xp /fmt addr", "physical memory dump starting at 'addr'"),
];

fn help() -> String {
    let mut s = String::new();
    for (c, d) in COMMANDS {
        let _ = writeln!(s, "{c} -- {d}");
    }
    s
}

fn info(vm: &Vm, what: &str) -> Result<String, VmError> {
    match what {
        "status" => Ok(match vm.run_state() {
            RunState::Running => "VM status: running\n".to_string(),
            RunState::Prelaunch => "VM status: paused (prelaunch)\n".to_string(),
            RunState::InMigrate => "VM status: paused (inmigrate)\n".to_string(),
            RunState::Paused => "VM status: paused\n".to_string(),
            RunState::Shutdown => "VM status: paused (shutdown)\n".to_string(),
        }),
        "version" => Ok(format!("{} (q35dm)\n", env!("CARGO_PKG_VERSION"))),
        "pci" => vm.machine(|m| m.info_pci()),
        "pcie-slots" => vm.machine(|m| m.info_pcie_slots()),
        "" => Ok(
            "info pci -- show PCI info\ninfo status -- show the current VM status\ninfo version -- show the version\n"
                .into(),
        ),
        other => Err(VmError::Invalid(format!("unknown info subcommand: '{other}'"))),
    }
}

/// A parsed `/fmt`: count, format letter, unit size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    /// Number of units.
    pub count: u64,
    /// `x`, `d`, `u`, `o` or `c`.
    pub format: char,
    /// 1, 2, 4 or 8.
    pub size: u8,
}

/// Parses `/Nfs` (any order of format and size letters after the count), QEMU style.
pub fn parse_fmt(tok: &str, default_size: u8) -> Result<Fmt, VmError> {
    let body = tok.strip_prefix('/').unwrap_or(tok);
    let digits: String = body.chars().take_while(|c| c.is_ascii_digit()).collect();
    let count = if digits.is_empty() {
        1
    } else {
        digits.parse::<u64>().map_err(|_| VmError::Invalid(format!("invalid count in format: '{digits}'")))?
    };
    let mut fmt = Fmt { count, format: 'x', size: default_size };
    for c in body.chars().skip(digits.len()) {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' => fmt.format = c,
            'b' => fmt.size = 1,
            'h' => fmt.size = 2,
            'w' => fmt.size = 4,
            'g' => fmt.size = 8,
            other => {
                return Err(VmError::Invalid(format!(
                    "invalid char in format: '{other}'\nTry \"help\" for more information"
                )))
            }
        }
    }
    Ok(fmt)
}

/// Parses a number: `0x` hex, `0` octal, or decimal; a leading `-` negates (two's complement).
pub fn parse_num(s: &str) -> Result<u64, VmError> {
    let bad = || VmError::Invalid(format!("invalid number: '{s}'"));
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).map_err(|_| bad())?
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(t.get(1..).unwrap_or(""), 8).map_err(|_| bad())?
    } else {
        t.parse::<u64>().map_err(|_| bad())?
    };
    Ok(if neg { v.wrapping_neg() } else { v })
}

fn split_fmt(args: &str) -> (Option<&str>, Vec<&str>) {
    let mut it = args.split_whitespace().peekable();
    let fmt = match it.peek() {
        Some(t) if t.starts_with('/') => it.next(),
        _ => None,
    };
    (fmt, it.collect())
}

fn port_in(vm: &Vm, args: &str) -> Result<String, VmError> {
    let (f, rest) = split_fmt(args);
    let fmt = match f {
        Some(f) => parse_fmt(f, 4)?,
        None => Fmt { count: 1, format: 'x', size: 4 },
    };
    let [addr] = rest.as_slice() else {
        return Err(VmError::Invalid("usage: i /fmt addr".into()));
    };
    let port = (parse_num(addr)? & 0xffff) as u16;
    let (name, digits) = match fmt.size {
        1 => ("portb", 2),
        2 => ("portw", 4),
        4 => ("portl", 8),
        _ => return Err(VmError::Invalid("invalid size for an I/O port access".into())),
    };
    let v = vm.pio_read(port, fmt.size)?;
    Ok(format!("{name}[0x{port:04x}] = 0x{v:0digits$x}\n"))
}

fn port_out(vm: &Vm, args: &str) -> Result<String, VmError> {
    let (f, rest) = split_fmt(args);
    let fmt = match f {
        Some(f) => parse_fmt(f, 1)?,
        None => Fmt { count: 1, format: 'x', size: 1 },
    };
    let [addr, val] = rest.as_slice() else {
        return Err(VmError::Invalid("usage: o /fmt addr value".into()));
    };
    if fmt.size > 4 {
        return Err(VmError::Invalid("invalid size for an I/O port access".into()));
    }
    let port = (parse_num(addr)? & 0xffff) as u16;
    vm.pio_write(port, fmt.size, parse_num(val)? as u32)?;
    Ok(String::new())
}

fn xp(vm: &Vm, args: &str) -> Result<String, VmError> {
    let (f, rest) = split_fmt(args);
    let fmt = match f {
        Some(f) => parse_fmt(f, 4)?,
        None => Fmt { count: 1, format: 'x', size: 4 },
    };
    let [addr] = rest.as_slice() else {
        return Err(VmError::Invalid("usage: xp /fmt addr".into()));
    };
    let mut addr = parse_num(addr)?;
    let per_line = if fmt.size == 1 { 8 } else { 16 / u64::from(fmt.size) };
    let mut out = String::new();
    let mut left = fmt.count.min(1 << 20);
    while left > 0 {
        let _ = write!(out, "{addr:016x}:");
        let n = left.min(per_line);
        for _ in 0..n {
            match vm.phys_read(addr, fmt.size) {
                Ok(v) => out.push_str(&format_unit(v, fmt)),
                Err(VmError::NoMemory) => {
                    out.push_str(" Cannot access memory\n");
                    return Ok(out);
                }
                Err(e) => return Err(e),
            }
            addr = addr.wrapping_add(u64::from(fmt.size));
        }
        out.push('\n');
        left -= n;
    }
    Ok(out)
}

fn format_unit(v: u64, f: Fmt) -> String {
    let w = usize::from(f.size) * 2;
    match f.format {
        'd' => {
            let s = match f.size {
                1 => i64::from(v as u8 as i8),
                2 => i64::from(v as u16 as i16),
                4 => i64::from(v as u32 as i32),
                _ => v as i64,
            };
            format!(" {s}")
        }
        'u' => format!(" {v}"),
        'o' => format!(" {v:#o}"),
        'c' => format!(" '{}'", char::from_u32(v as u32).filter(|c| c.is_ascii_graphic()).unwrap_or('.')),
        _ => format!(" 0x{v:0w$x}"),
    }
}

/// Tests the sandbox: `open` tries to open a file (refused with EACCES under the seccomp
/// filter), `socket` creates a socket (not allowed: the filter kills q35dm).
fn seccomp_probe(what: &str) -> String {
    match what.trim() {
        "open" => match std::fs::File::open("/proc/self/status") {
            Ok(_) => "open: allowed\n".into(),
            Err(e) => format!("open: {e}\n"),
        },
        "socket" => match std::net::UdpSocket::bind("127.0.0.1:0") {
            Ok(_) => "socket: allowed\n".into(),
            Err(e) => format!("socket: {e}\n"),
        },
        other => format!("x-seccomp-probe: expected open or socket, got {other:?}\n"),
    }
}

fn pcie_abp(vm: &Vm, args: &str) -> Result<String, VmError> {
    let a = args.trim();
    let bad = || VmError::Invalid(format!("pcie_abp: expected [chassis.]slot or a port id, got {a:?}"));
    if !a.is_empty() && !a.starts_with(|c: char| c.is_ascii_digit()) {
        let (c, s) = vm.slot_of_port(a)?;
        let (c, s) = vm.pcie_abp(Some(c), s)?;
        return Ok(format!("OK chassis {c}, slot {s}\n"));
    }
    let (chassis, slot) = match a.split_once('.') {
        Some((c, s)) => (Some(u8::try_from(parse_num(c)?).map_err(|_| bad())?), s),
        None => (None, a),
    };
    let slot = u16::try_from(parse_num(slot).map_err(|_| bad())?).map_err(|_| bad())?;
    let (c, s) = vm.pcie_abp(chassis, slot)?;
    Ok(format!("OK chassis {c}, slot {s}\n"))
}

/// `pci_add pci_addr=<port id>|auto <driver>[,props]`: the original syntax. `auto` lets the
/// board choose (the first free hot-plug slot).
fn pci_add(vm: &Vm, args: &str) -> Result<String, VmError> {
    let mut it = args.split_whitespace();
    let addr = it.next().unwrap_or("");
    let addr = addr.strip_prefix("pci_addr=").unwrap_or(addr);
    let dev = it
        .next()
        .ok_or_else(|| VmError::Invalid("usage: pci_add pci_addr=<port id>|auto <driver>[,prop=value]".into()))?;
    let mut req = crate::devices::DeviceRequest::parse(dev).map_err(|e| VmError::Invalid(e.to_string()))?;
    if addr != "auto" {
        req.bus = Some(addr.to_string());
    } else if req.bus.is_none() {
        req.bus = vm.machine(|m| m.first_free_slot_bus())?;
    }
    let id = match req.id.clone() {
        Some(i) => i,
        None => {
            let i = format!(
                "pci-add-{}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
            );
            req.id = Some(i.clone());
            i
        }
    };
    vm.device_add(req)?;
    let s = vm.machine(move |m| m.pci.find_by_id(&id).and_then(|n| m.pci.sbdf_of(n)))?;
    Ok(match s {
        Some(s) => format!("OK domain {}, bus {}, slot {}, function {}\n", s.seg(), s.bus(), s.dev(), s.func()),
        None => "OK (bus not numbered yet)\n".to_string(),
    })
}

/// `pci_del pci_addr=[[domain:]bus:]slot` or an id.
fn pci_del(vm: &Vm, args: &str) -> Result<String, VmError> {
    let a = args.trim();
    let a = a.strip_prefix("pci_addr=").unwrap_or(a);
    let id = if a.contains(':') || a.contains('.') {
        let text = if a.contains('.') { a.to_string() } else { format!("{a}.0") };
        let sbdf: crate::pci::Sbdf =
            text.parse().map_err(|e: crate::pci::address::ParseSbdfError| VmError::Invalid(e.to_string()))?;
        vm.machine(move |m| m.pci.find(sbdf).and_then(|n| m.pci.node(n)).map(|n| n.id.clone()))?
            .filter(|i| !i.is_empty())
            .ok_or_else(|| VmError::Invalid(format!("no device with an id at {sbdf}")))?
    } else {
        a.to_string()
    };
    vm.device_del(&id, false)?;
    Ok("OK\n".into())
}

fn dump_config(vm: &Vm, args: &str) -> Result<String, VmError> {
    let sbdf: crate::pci::Sbdf =
        args.trim().parse().map_err(|e: crate::pci::address::ParseSbdfError| VmError::Invalid(e.to_string()))?;
    vm.machine(move |m| m.dump_config(sbdf))?.ok_or_else(|| VmError::Invalid(format!("no PCI function at {sbdf}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_parsing_matches_qemu() {
        assert_eq!(parse_fmt("/4wx", 4).unwrap(), Fmt { count: 4, format: 'x', size: 4 });
        assert_eq!(parse_fmt("/xb", 4).unwrap(), Fmt { count: 1, format: 'x', size: 1 });
        assert_eq!(parse_fmt("/2gd", 4).unwrap(), Fmt { count: 2, format: 'd', size: 8 });
        let e = parse_fmt("/q", 4).unwrap_err().to_string();
        assert!(e.starts_with("invalid char in format: 'q'"), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0xcf8").unwrap(), 0xcf8);
        assert_eq!(parse_num("10").unwrap(), 10);
        assert_eq!(parse_num("010").unwrap(), 8);
        assert_eq!(parse_num("-1").unwrap(), u64::MAX);
        assert!(parse_num("0xzz").is_err());
    }

    #[test]
    fn units_format_like_qemu() {
        assert_eq!(format_unit(0x80, Fmt { count: 1, format: 'x', size: 1 }), " 0x80");
        assert_eq!(format_unit(0x29c08086, Fmt { count: 1, format: 'x', size: 4 }), " 0x29c08086");
        assert_eq!(format_unit(0xff, Fmt { count: 1, format: 'd', size: 1 }), " -1");
    }
}
