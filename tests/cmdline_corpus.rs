//! Command-line corpus: argv lines following libxl's code paths (tools/libs/light/libxl_dm.c,
//! `libxl__build_device_model_args_new`, libxl 4.17–4.21), the probe run, the argv observed
//! from xl 4.17.7, q35dm's own syntax, and malformed lines.
//!
//! Data: `tests/cmdline/NN-name.argv` holds one argument per line (argv\[0\] omitted; lines
//! starting with `#` are comments, so no argument may start with `#`).
//! `tests/cmdline/NN-name.expect` holds `key: value` lines:
//!
//! * scalar keys (compared exactly when present): `style accel probe domid name paused
//!   no_shutdown no_reboot domid_restrict chroot runas incoming memory_mib maxmem_mib
//!   max_ram_below_4g cpus maxcpus machine machine_kind machine_accel xen_platform kernel
//!   initrd append boot vnc display nographic vga keymap acpi usb net_none log_level`;
//! * list keys (the whole list, in order, when at least one line is present; a single `-`
//!   means an empty list): `chardev monitor serial device netdev drive object`;
//! * `notice:` lines: the exact set of notice keys — always checked, no line means none;
//! * `error:` lines: the command line must fail and the message contain each text.
//!
//! On a mismatch the test prints every key of the actual result, in this format.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use q35dm::cmdline::{
    parse_args, ArgStyle, ChardevBackend, DriveSpec, Incoming, Invocation, MachineKind, MonitorMode, RunAs, RunConfig,
    SocketAddr,
};

/// Scalar and list keys the expectation files may use.
const LIST_KEYS: &[&str] = &["chardev", "monitor", "serial", "device", "netdev", "drive", "object"];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("cmdline")
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(str::to_string).collect()
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn chardev_line(id: &str, be: &ChardevBackend, mux: bool) -> String {
    let mut s = format!("{id} {}", be.name());
    match be {
        ChardevBackend::Socket(sock) => {
            match &sock.addr {
                SocketAddr::Unix(p) => write!(s, " unix:{}", p.display()),
                SocketAddr::Fd(fd) => write!(s, " fd:{fd}"),
                SocketAddr::Inet { host, port } => write!(s, " tcp:{host}:{port}"),
            }
            .ok();
            if sock.server {
                s.push_str(" server");
                if !sock.wait {
                    s.push_str(" nowait");
                }
            }
            if sock.telnet {
                s.push_str(" telnet");
            }
        }
        ChardevBackend::File { path, .. } => {
            write!(s, " {}", path.display()).ok();
        }
        _ => {}
    }
    if mux {
        s.push_str(" mux");
    }
    s
}

fn drive_line(d: &DriveSpec) -> String {
    let mut s = format!("if={}", d.interface.as_str());
    if let Some(i) = d.index {
        write!(s, " index={i}").ok();
    }
    if let Some(id) = &d.id {
        write!(s, " id={id}").ok();
    }
    if let Some(f) = &d.file {
        write!(s, " file={}", f.display()).ok();
    }
    if d.cdrom {
        s.push_str(" cdrom");
    }
    if d.readonly {
        s.push_str(" ro");
    }
    s
}

/// Every key of a parsed command line, as the expectation files spell it.
fn summarize(r: &RunConfig) -> BTreeMap<&'static str, Vec<String>> {
    let vm = &r.vm;
    let mut m: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut one = |k: &'static str, v: String| {
        m.insert(k, vec![v]);
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    one("style", if r.style == ArgStyle::Qemu { "qemu" } else { "native" }.to_string());
    one("accel", r.accel.as_str().to_string());
    one("probe", yes(r.is_probe()));
    one("domid", opt(vm.domid.map(|d| d.to_string())));
    one("name", opt(vm.name.clone()));
    one("paused", yes(vm.start_paused));
    one("no_shutdown", yes(vm.no_shutdown));
    one("no_reboot", yes(vm.no_reboot));
    one("domid_restrict", yes(vm.restrict.xen_domid_restrict));
    one("chroot", opt(vm.restrict.chroot.as_ref().map(|p| p.display().to_string())));
    one(
        "runas",
        opt(vm.restrict.runas.as_ref().map(|r| match r {
            RunAs::User(u) => format!("user {u}"),
            RunAs::Ids { uid, gid } => format!("ids {uid}:{gid}"),
        })),
    );
    one(
        "incoming",
        opt(vm.incoming.as_ref().map(|i| match i {
            Incoming::Fd(fd) => format!("fd:{fd}"),
            Incoming::Defer => "defer".to_string(),
            Incoming::Uri(u) => u.clone(),
        })),
    );
    one("memory_mib", opt(vm.memory_mib().map(|v| v.to_string())));
    one("maxmem_mib", opt(vm.memory.and_then(|m| m.maxmem_bytes).map(|b| (b >> 20).to_string())));
    one("max_ram_below_4g", opt(vm.machine.max_ram_below_4g.map(|v| v.to_string())));
    one("cpus", opt(vm.smp.map(|s| s.cpus.to_string())));
    one("maxcpus", opt(vm.smp.map(|s| s.maxcpus.to_string())));
    one("machine", opt(vm.machine.type_name.clone()));
    one(
        "machine_kind",
        opt(vm.machine.kind.map(|k| {
            match k {
                MachineKind::None => "none",
                MachineKind::Xenfv => "xenfv",
                MachineKind::Pc => "pc",
                MachineKind::Q35 => "q35",
                MachineKind::Xenpv => "xenpv",
            }
            .to_string()
        })),
    );
    one("machine_accel", if vm.machine.accel.is_empty() { "-".to_string() } else { vm.machine.accel.join(",") });
    one("xen_platform", yes(vm.machine.xen_platform()));
    one("kernel", opt(vm.kernel.as_ref().map(|p| p.display().to_string())));
    one("initrd", opt(vm.initrd.as_ref().map(|p| p.display().to_string())));
    one("append", opt(vm.append.clone()));
    one("boot", opt(vm.boot.as_ref().and_then(|b| b.order.clone())));
    one(
        "vnc",
        opt(vm.display.vnc.as_ref().map(|v| match &v.display {
            Some(d) => {
                let mut s = d.clone();
                if let Some(to) = v.to {
                    write!(s, " to={to}").ok();
                }
                if v.password {
                    s.push_str(" password");
                }
                s
            }
            None => "none".to_string(),
        })),
    );
    one("display", opt(vm.display.display.clone()));
    one("nographic", yes(vm.display.nographic));
    one("vga", opt(vm.display.vga.clone()));
    one("keymap", opt(vm.display.keymap.clone()));
    one("acpi", yes(vm.acpi));
    one("usb", yes(vm.usb));
    one("net_none", yes(vm.net_none));
    one("log_level", opt(r.log_level.map(|l| l.to_string().to_lowercase())));
    m.insert("chardev", vm.chardevs.iter().map(|c| chardev_line(&c.id, &c.backend, c.mux)).collect());
    m.insert(
        "monitor",
        vm.monitors
            .iter()
            .map(|x| {
                let mode = if x.mode == MonitorMode::Control { "control" } else { "readline" };
                format!("{} {mode}{}", x.chardev, if x.pretty { " pretty" } else { "" })
            })
            .collect(),
    );
    m.insert("serial", vm.serials.iter().map(|s| format!("{} {}", s.index, s.chardev)).collect());
    m.insert(
        "device",
        vm.devices
            .iter()
            .map(|d| {
                let mut s = format!("{} {}", d.driver, d.class.as_str());
                for (k, v) in [("id", &d.id), ("bus", &d.bus)] {
                    if let Some(v) = v {
                        write!(s, " {k}={v}").ok();
                    }
                }
                if let Some(a) = d.addr {
                    write!(s, " addr={a}").ok();
                }
                if let Some(h) = d.hostaddr {
                    write!(s, " hostaddr={h}").ok();
                }
                s
            })
            .collect(),
    );
    m.insert(
        "netdev",
        vm.netdevs
            .iter()
            .map(|n| match n.prop("ifname") {
                Some(i) => format!("{} {} ifname={i}", n.kind, n.id),
                None => format!("{} {}", n.kind, n.id),
            })
            .collect(),
    );
    m.insert("drive", vm.drives.iter().map(drive_line).collect());
    m.insert("object", vm.objects.iter().map(|o| format!("{} {}", o.qom_type, o.id)).collect());
    m.insert("notice", vm.notices.iter().map(|n| n.key()).collect());
    m
}

fn render(m: &BTreeMap<&'static str, Vec<String>>) -> String {
    let mut s = String::new();
    for (k, vs) in m {
        for v in vs {
            writeln!(s, "{k}: {v}").ok();
        }
    }
    s
}

/// Checks one case; returns the problems found.
fn check_case(name: &str, args: &[String], expect: &[String]) -> Vec<String> {
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in expect {
        let Some((k, v)) = line.split_once(':') else {
            return vec![format!("{name}: malformed expectation line {line:?}")];
        };
        want.entry(k.trim().to_string()).or_default().push(v.trim().to_string());
    }
    let argv: Vec<String> = std::iter::once("q35dm".to_string()).chain(args.iter().cloned()).collect();
    let result = parse_args(argv);
    let mut problems = Vec::new();
    if let Some(needles) = want.get("error") {
        match result {
            Err(e) => {
                let msg = e.to_string();
                for n in needles {
                    if !msg.contains(n.as_str()) {
                        problems.push(format!("{name}: error {msg:?} does not contain {n:?}"));
                    }
                }
            }
            Ok(other) => problems.push(format!("{name}: expected an error, got {other:?}")),
        }
        if want.len() > 1 {
            problems.push(format!("{name}: error cases take only error: lines"));
        }
        return problems;
    }
    let run = match result {
        Ok(Invocation::Run(r)) => r,
        other => return vec![format!("{name}: expected a run configuration, got {other:?}")],
    };
    let got = summarize(&run);
    for (k, vs) in &want {
        let Some(actual) = got.get(k.as_str()) else {
            problems.push(format!("{name}: unknown expectation key {k:?}"));
            continue;
        };
        if k == "notice" {
            continue;
        }
        if !LIST_KEYS.contains(&k.as_str()) && vs.len() != 1 {
            problems.push(format!("{name}: scalar key {k:?} given {} times", vs.len()));
        }
        let empty_list = LIST_KEYS.contains(&k.as_str()) && vs.len() == 1 && vs[0] == "-";
        if empty_list {
            if !actual.is_empty() {
                problems.push(format!("{name}: {k}: expected none, got {actual:?}"));
            }
        } else if actual != vs {
            problems.push(format!("{name}: {k}: expected {vs:?}, got {actual:?}"));
        }
    }
    let want_notices: BTreeSet<&String> = want.get("notice").map(|v| v.iter().collect()).unwrap_or_default();
    let got_notices: BTreeSet<&String> = got.get("notice").map(|v| v.iter().collect()).unwrap_or_default();
    for missing in want_notices.difference(&got_notices) {
        problems.push(format!("{name}: notice missing: {missing}"));
    }
    for extra in got_notices.difference(&want_notices) {
        problems.push(format!("{name}: unexpected notice: {extra}"));
    }
    let all_notices: Vec<&String> = got.get("notice").map(|v| v.iter().collect()).unwrap_or_default();
    if all_notices.len() != got_notices.len() {
        problems.push(format!("{name}: a notice was reported twice: {all_notices:?}"));
    }
    if !problems.is_empty() {
        problems.push(format!("{name}: actual result:\n{}", render(&got)));
    }
    problems
}

fn cases() -> Vec<(String, PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for entry in fs::read_dir(corpus_dir()).expect("tests/cmdline") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "argv") {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let expect = path.with_extension("expect");
            v.push((name, path, expect));
        }
    }
    v.sort();
    v
}

#[test]
fn corpus() {
    let cases = cases();
    let mut problems = Vec::new();
    let mut ok_cases = 0;
    let mut error_cases = 0;
    for (name, argv, expect) in &cases {
        if !expect.exists() {
            problems.push(format!("{name}: no {}", expect.display()));
            continue;
        }
        let exp = read_lines(expect);
        if exp.iter().any(|l| l.starts_with("error:")) {
            error_cases += 1;
        } else {
            ok_cases += 1;
        }
        problems.extend(check_case(name, &read_lines(argv), &exp));
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(ok_cases >= 30, "only {ok_cases} successful cases");
    assert!(error_cases >= 5, "only {error_cases} error cases");
}

#[test]
fn every_expectation_has_an_argv() {
    for entry in fs::read_dir(corpus_dir()).expect("tests/cmdline") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "expect") {
            assert!(path.with_extension("argv").exists(), "{} has no .argv", path.display());
        }
    }
}
