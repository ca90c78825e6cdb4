//! Unit tests of the command-line front end (style detection, QEMU-style options, errors).

use super::*;

fn argv(s: &[&str]) -> Vec<String> {
    std::iter::once("q35dm").chain(s.iter().copied()).map(str::to_string).collect()
}

fn run(s: &[&str]) -> RunConfig {
    match parse_args(argv(s)) {
        Ok(Invocation::Run(r)) => *r,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn err(s: &[&str]) -> CmdlineError {
    match parse_args(argv(s)) {
        Err(e) => e,
        Ok(other) => panic!("{s:?} parsed: {other:?}"),
    }
}

fn notice_keys(r: &RunConfig) -> Vec<String> {
    r.vm.notices.iter().map(Notice::key).collect()
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn style_detection() {
    assert_eq!(detect_style(&[]), ArgStyle::Native);
    assert_eq!(detect_style(&strings(&["--accel", "sim"])), ArgStyle::Native);
    assert_eq!(detect_style(&strings(&["-xen-domid", "1"])), ArgStyle::Qemu);
    assert_eq!(detect_style(&strings(&["--xen-domid", "1"])), ArgStyle::Qemu);
    assert_eq!(detect_style(&strings(&["--accel", "xen", "-xen-domid", "1"])), ArgStyle::Qemu);
    assert_eq!(detect_style(&strings(&["--accel=xen", "-S"])), ArgStyle::Qemu);
    // Unknown single-dash options are QEMU's to reject.
    assert_eq!(detect_style(&strings(&["-frobnicate"])), ArgStyle::Qemu);
    assert_eq!(detect_style(&strings(&["-h"])), ArgStyle::Native);
    assert_eq!(detect_style(&strings(&["--frobnicate"])), ArgStyle::Native);
    assert_eq!(detect_style(&strings(&["image.raw"])), ArgStyle::Native);
}

#[test]
fn accel_default_and_override() {
    let r = run(&["-xen-domid", "3", "-m", "64"]);
    assert_eq!((r.style, r.accel, r.vm.domid), (ArgStyle::Qemu, Accel::Xen, Some(3)));
    let r = run(&["-xen-domid", "3", "--accel", "sim", "-m", "64"]);
    assert_eq!(r.accel, Accel::Sim);
    assert_eq!(r.native.accel, Some(Accel::Sim));
    let r = run(&["-m", "64"]);
    assert_eq!(r.accel, Accel::Sim);
    // QEMU's -accel is a different option from q35dm's --accel.
    let r = run(&["-accel", "xen", "-m", "64"]);
    assert_eq!((r.accel, r.vm.machine.accel.clone()), (Accel::Sim, vec!["xen".to_string()]));
    let r = run(&["-accel", "kvm", "-m", "64"]);
    assert_eq!(notice_keys(&r), ["-accel kvm"]);
    assert_eq!(err(&["--accel", "xen"]), CmdlineError::MissingDomid);
    assert_eq!(err(&["-m", "64", "--accel", "xen"]), CmdlineError::MissingDomid);
    let r = run(&["--accel", "xen", "--domid", "9"]);
    assert_eq!((r.style, r.accel, r.vm.domid), (ArgStyle::Native, Accel::Xen, Some(9)));
}

#[test]
fn native_options_fold_into_config() {
    let r = run(&["--vcpus", "2", "--memory", "512", "--qmp", "/tmp/q.sock", "--monitor", "stdio", "--domid", "4"]);
    assert_eq!(r.style, ArgStyle::Native);
    assert_eq!(r.vm.smp.map(|s| (s.cpus, s.maxcpus)), Some((2, 2)));
    assert_eq!(r.vm.memory_mib(), Some(512));
    assert_eq!(r.vm.domid, Some(4));
    assert_eq!(r.vm.qmp_monitors().map(|m| m.chardev.as_str()).collect::<Vec<_>>(), [NATIVE_QMP_CHARDEV]);
    let qmp = r.vm.chardev(NATIVE_QMP_CHARDEV).expect("qmp chardev");
    assert_eq!(
        qmp.backend,
        ChardevBackend::Socket(SocketChardev {
            addr: SocketAddr::Unix("/tmp/q.sock".into()),
            server: true,
            wait: false,
            telnet: false
        })
    );
    assert_eq!(r.vm.chardev(NATIVE_MONITOR_CHARDEV).map(|c| &c.backend), Some(&ChardevBackend::Stdio));
    // Same value twice is fine; different values conflict.
    let r = run(&["-xen-domid", "4", "--domid", "4", "-smp", "2", "--vcpus", "2", "-m", "1G", "--memory", "1024"]);
    assert_eq!(r.vm.domid, Some(4));
    assert!(matches!(err(&["-xen-domid", "4", "--domid", "5"]), CmdlineError::Conflict { .. }));
    assert!(matches!(err(&["-smp", "2", "--vcpus", "4"]), CmdlineError::Conflict { .. }));
    assert!(matches!(err(&["-m", "256", "--memory", "512"]), CmdlineError::Conflict { .. }));
}

#[test]
fn native_value_is_not_a_qemu_option_and_vice_versa() {
    // A QEMU option's argument is taken verbatim, even if it looks like a native option.
    let r = run(&["-kernel", "/k", "-append", "--memory", "-m", "64"]);
    assert_eq!(r.vm.append.as_deref(), Some("--memory"));
    assert_eq!(r.native.memory, None);
    // A native option's value is taken verbatim too.
    let r = run(&["-m", "64", "--log-level", "trace"]);
    assert_eq!(r.log_level, Some(LevelFilter::Trace));
    let e = err(&["-m", "64", "--log-level", "chatty"]);
    assert!(matches!(&e, CmdlineError::Native { message } if message.contains("chatty")), "{e}");
}

#[test]
fn help_and_version() {
    for a in [&["--help"][..], &["-h"], &["-help"], &["-xen-domid", "1", "-help", "-bogus"], &["-m", "1", "--help"]] {
        assert!(matches!(parse_args(argv(a)), Ok(Invocation::Help(t)) if t.contains("-xen-domid ARG")), "{a:?}");
    }
    for a in [&["--version"][..], &["-V"], &["-version"]] {
        assert!(matches!(parse_args(argv(a)), Ok(Invocation::Version(t)) if t.starts_with("q35dm ")), "{a:?}");
    }
}

#[test]
fn double_dash_is_a_synonym() {
    let r = run(&["--xen-domid", "2", "--nodefaults", "--m", "128", "-S"]);
    assert_eq!((r.vm.domid, r.vm.nodefaults, r.vm.memory_mib(), r.vm.start_paused), (Some(2), true, Some(128), true));
}

#[test]
fn flags_do_not_take_arguments() {
    // "-S" takes no argument, so "-m" after it is an option.
    let r = run(&["-S", "-m", "64", "-nographic", "-no-shutdown", "-xen-domid-restrict", "-usb"]);
    assert!(r.vm.start_paused && r.vm.no_shutdown && r.vm.restrict.xen_domid_restrict && r.vm.display.nographic);
    assert_eq!(r.vm.memory_mib(), Some(64));
    // A bare word is a disk image, as in QEMU.
    let r = run(&["-m", "64", "disk.img"]);
    assert_eq!(r.vm.drives.first().and_then(|d| d.file.clone()), Some("disk.img".into()));
    assert!(notice_keys(&r).contains(&"-drive if=ide".to_string()));
}

#[test]
fn unknown_option_error() {
    let e = err(&["-xen-domid", "1", "-frobnicate", "x"]);
    assert_eq!(e, CmdlineError::UnknownOption { option: "-frobnicate".into() });
    assert!(e.to_string().contains("-frobnicate"));
    assert_eq!(err(&["-m=256"]), CmdlineError::UnknownOption { option: "-m=256".into() });
    assert_eq!(err(&["-m", "1", "-"]), CmdlineError::UnknownOption { option: "-".into() });
    assert_eq!(err(&["-m", "1", "--bogus"]), CmdlineError::UnknownOption { option: "--bogus".into() });
}

#[test]
fn missing_argument_error() {
    for opt in ["-xen-domid", "-m", "-chardev", "-device", "-serial", "-machine", "-append", "-runas", "-incoming"] {
        let e = err(&["-S", opt]);
        assert_eq!(e, CmdlineError::MissingArgument { option: opt.into() }, "{opt}");
        assert!(e.to_string().contains(opt));
    }
}

fn assert_bad(args: &[&str], option: &str, needle: &str) {
    let e = err(args);
    let msg = e.to_string();
    assert!(matches!(&e, CmdlineError::BadValue { option: o, .. } if o == option), "{args:?}: {e:?}");
    assert!(msg.contains(option) && msg.contains(needle), "{args:?}: {msg}");
}

#[test]
fn bad_numbers() {
    assert_bad(&["-xen-domid", "x1"], "-xen-domid", "\"x1\"");
    assert_bad(&["-xen-domid", "32752"], "-xen-domid", "32752");
    assert_bad(&["-xen-domid", "-1"], "-xen-domid", "\"-1\"");
    assert_bad(&["-smp", "two"], "-smp", "\"two\"");
    assert_bad(&["-smp", "0"], "-smp", "cpus");
    assert_bad(&["-smp", "4,maxcpus=2"], "-smp", "maxcpus");
    assert_bad(&["-smp", "2,cpu=1"], "-smp", "'cpu'");
    assert_bad(&["-incoming", "fd:x"], "-incoming", "\"x\"");
    assert_bad(&["-vnc", "127.0.0.1:0,to=lots"], "-vnc", "\"lots\"");
    assert_bad(&["-chardev", "socket,id=c,fd=three,server=on"], "-chardev", "\"three\"");
    assert_bad(&["-runas", "1000:x"], "-runas", "\"x\"");
}

#[test]
fn bad_memory_sizes() {
    assert_bad(&["-m", "12Q"], "-m", "\"12Q\"");
    assert_bad(&["-m", "lots"], "-m", "\"lots\"");
    assert_bad(&["-m", "0"], "-m", "zero");
    assert_bad(&["-m", "-5"], "-m", "\"-5\"");
    assert_bad(&["-m", "1.5B"], "-m", "1.5B");
    assert_bad(&["-m", "1.5"], "-m", "fraction"); // as QEMU 7.2: a bare fraction has no unit
    assert_bad(&["-m", "256,maxmem=128M"], "-m", "maxmem");
    assert_bad(&["-m", "256,maxmem=1024"], "-m", "maxmem"); // maxmem defaults to bytes
    assert_bad(&["-m", "size="], "-m", "size");
    assert_bad(&["-m", "256,slot=2"], "-m", "'slot'");
    assert_bad(&["-machine", "xenfv,max-ram-below-4g=5G"], "-machine", "4G");
    assert_bad(&["-machine", "xenfv,max-ram-below-4g=3GiB"], "-machine", "3GiB");
}

#[test]
fn memory_forms() {
    let mem = |a: &str| run(&["-m", a]).vm.memory.expect("memory");
    assert_eq!(mem("256").size_bytes, 256 << 20);
    assert_eq!(mem("256M").size_bytes, 256 << 20);
    assert_eq!(mem("1G").size_bytes, 1 << 30);
    assert_eq!(mem("262144k").size_bytes, 256 << 20);
    assert_eq!(mem("size=512").size_mib(), 512);
    assert_eq!(mem("1001k").size_bytes, 126 * 8192); // aligned up to 8 KiB
    assert_eq!(mem("1001k").size_mib(), 1);
    assert_eq!(mem("1.5G").size_bytes, 3 << 29);
    assert_eq!(mem("0x100").size_bytes, 256 << 20); // "0x100" + "M"
    let m = mem("1G,slots=2,maxmem=4G");
    assert_eq!((m.maxmem_bytes, m.slots), (Some(4 << 30), Some(2)));
}

#[test]
fn bad_addr() {
    assert_bad(&["-device", "q35dm-root-port,id=rp1,addr=20.0"], "-device", "\"20.0\"");
    assert_bad(&["-device", "q35dm-root-port,id=rp1,addr=1c.8"], "-device", "\"1c.8\"");
    assert_bad(&["-device", "e1000,addr=xyz"], "-device", "\"xyz\"");
    assert_bad(&["-device", "xen-pci-passthrough,id=pt,hostaddr=03:00"], "-device", "\"03:00\"");
    assert_bad(&["-device", "xen-pci-passthrough,id=pt"], "-device", "'hostaddr'");
    assert_bad(&["-device", "q35dm-root-prot,id=rp1"], "-device", "\"q35dm-root-prot\"");
    assert_bad(&["-device", "e1000,id=0bad"], "-device", "\"0bad\"");
    assert_bad(&["-device", "{\"driver\":\"e1000\"}"], "-device", "JSON");
}

#[test]
fn device_fields() {
    let r = run(&[
        "-device",
        "q35dm-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=1c.0,multifunction=on",
        "-device",
        "xen-pci-passthrough,id=pci-pt-03_00.0,hostaddr=0000:03:00.0,bus=rp1,addr=0",
        "-device",
        "ich9-usb-ehci1,id=usb,addr=0x1d.0x7,multifunction=on",
        "-device",
        "frobnicator,x=1",
    ]);
    let d = r.vm.device("rp1").expect("rp1");
    assert_eq!(d.class, DriverClass::Emulated);
    assert_eq!((d.bus.as_deref(), d.addr), (Some("pcie.0"), Some(DevFn { slot: 0x1c, func: 0 })));
    assert_eq!(d.prop("chassis"), Some("1"));
    assert!(d.multifunction());
    let first_keys: Vec<&str> = d.props.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(first_keys, ["id", "chassis", "slot", "bus", "addr", "multifunction"]);
    let pt = r.vm.device("pci-pt-03_00.0").expect("pt");
    assert_eq!(pt.hostaddr.map(|s| s.to_string()), Some("0000:03:00.0".to_string()));
    assert_eq!(pt.addr, Some(DevFn { slot: 0, func: 0 }));
    assert_eq!(r.vm.device("usb").and_then(|d| d.addr), Some(DevFn { slot: 0x1d, func: 7 }));
    assert_eq!(r.vm.emulated_devices().count(), 2);
    let mut keys = notice_keys(&r);
    keys.sort();
    assert_eq!(keys, ["-device frobnicator", "-device ich9-usb-ehci1"]);
}

#[test]
fn duplicate_ids_and_dangling_references() {
    let e = err(&["-chardev", "pty,id=a", "-chardev", "null,id=a"]);
    assert!(matches!(&e, CmdlineError::DuplicateId { id, .. } if id == "a"), "{e}");
    let e = err(&["-device", "e1000,id=n", "-device", "rtl8139,id=n"]);
    assert!(matches!(&e, CmdlineError::DuplicateId { id, .. } if id == "n"), "{e}");
    let e = err(&["-chardev", "pty,id=serial0", "-serial", "pty"]);
    assert!(matches!(&e, CmdlineError::DuplicateId { id, .. } if id == "serial0"), "{e}");
    let e = err(&["-mon", "chardev=nope,mode=control"]);
    assert_eq!(e, CmdlineError::UnknownReference { option: "-mon".into(), what: "chardev", id: "nope".into() });
    assert!(e.to_string().contains("nope"));
    let e = err(&["-serial", "chardev:nope"]);
    assert!(matches!(e, CmdlineError::UnknownReference { what: "chardev", .. }));
    let e = err(&["-device", "rtl8139,id=nic0,netdev=net0"]);
    assert!(matches!(e, CmdlineError::UnknownReference { what: "netdev", .. }));
    let e = err(&["-device", "ide-cd,drive=ide-5632"]);
    assert!(matches!(e, CmdlineError::UnknownReference { what: "drive", .. }));
    let e = err(&["-mon", "chardev=c,mode=qmp", "-chardev", "pty,id=c"]);
    assert!(e.to_string().contains("\"qmp\""), "{e}");
}

#[test]
fn other_errors() {
    assert_eq!(err(&["-initrd", "/i"]), CmdlineError::Requires { option: "-initrd".into(), requires: "-kernel" });
    assert_eq!(err(&["-append", "x"]), CmdlineError::Requires { option: "-append".into(), requires: "-kernel" });
    assert!(matches!(err(&["-readconfig", "/etc/q.cfg"]), CmdlineError::Unsupported { .. }));
    assert!(matches!(err(&["-machine", "pc,accel=xen", "-accel", "kvm"]), CmdlineError::Conflict { .. }));
    assert_bad(&["-machine", "virt"], "-machine", "\"virt\"");
    assert_bad(&["-machine", "pc,accel=xen:frob"], "-machine", "\"frob\"");
    assert_bad(&["-vga", "fancy"], "-vga", "\"fancy\"");
    assert_bad(&["-display", "x11"], "-display", "\"x11\"");
    assert_bad(&["-vnc", "localhost"], "-vnc", "localhost");
    assert_bad(&["-serial", "ptty"], "-serial", "\"ptty\"");
    assert_bad(&["-boot", "order=cdz"], "-boot", "'z'");
    assert_bad(&["-boot", "order=cdc"], "-boot", "twice");
    assert_bad(&["-run-with", "chroot=/x,group=1"], "-run-with", "'group'");
    assert_bad(&["-uuid", "1234"], "-uuid", "1234");
    assert_bad(&["-netdev", "tap,ifname=x"], "-netdev", "'id'");
    assert_bad(&["-netdev", "tapp,id=n"], "-netdev", "\"tapp\"");
    assert_bad(&["-net", "wifi"], "-net", "\"wifi\"");
    assert_bad(&["-drive", "file=/x,if=usb"], "-drive", "\"usb\"");
    assert_bad(&["-drive", "file=/x,cache=fast"], "-drive", "\"fast\"");
    assert_bad(&["-global", "nodot=1"], "-global", "nodot=1");
    assert_bad(&["-object", "iothread"], "-object", "'id'");
    assert_bad(&["-chardev", "socket,id=c,path=/s,server=perhaps"], "-chardev", "\"perhaps\"");
    assert_bad(&["-incoming", "ftp:host"], "-incoming", "ftp:host");
    let e = err(&["-serial", "pty", "-serial", "pty", "-serial", "pty", "-serial", "pty", "-serial", "null"]);
    assert!(matches!(e, CmdlineError::TooMany { max: 4, .. }), "{e}");
    let bad_utf8 = {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(vec![0x2d, 0xff])
    };
    assert!(matches!(parse_args([OsString::from("q35dm"), bad_utf8]), Err(CmdlineError::NotUtf8 { index: 1, .. })));
}

#[test]
fn serials_and_monitors() {
    let r = run(&[
        "-chardev",
        "socket,id=c0,path=/s,server=on,wait=off",
        "-serial",
        "pty",
        "-serial",
        "none",
        "-serial",
        "chardev:c0",
        "-serial",
        "mon:stdio",
        "-monitor",
        "unix:/tmp/hmp,server,nowait",
        "-qmp",
        "tcp:127.0.0.1:4444,server=on,wait=off",
        "-monitor",
        "none",
    ]);
    let ser: Vec<(usize, &str)> = r.vm.serials.iter().map(|s| (s.index, s.chardev.as_str())).collect();
    assert_eq!(ser, [(0, "serial0"), (1, "c0"), (2, "serial2")]);
    assert!(r.vm.chardev("serial2").is_some_and(|c| c.mux && c.backend == ChardevBackend::Stdio));
    let mons: Vec<(&str, MonitorMode)> = r.vm.monitors.iter().map(|m| (m.chardev.as_str(), m.mode)).collect();
    assert_eq!(
        mons,
        [
            ("serial2", MonitorMode::Readline),
            ("compat_monitor0", MonitorMode::Readline),
            ("compat_monitor1", MonitorMode::Control)
        ]
    );
    assert_eq!(r.vm.chardev("serial0").map(|c| c.origin.clone()), Some(ChardevOrigin::Serial(0)));
    assert!(r.vm.notices.is_empty(), "{:?}", r.vm.notices);
}

#[test]
fn notices_are_reported_once() {
    let r = run(&[
        "-device",
        "cirrus-vga,vgamem_mb=8",
        "-device",
        "cirrus-vga,vgamem_mb=16",
        "-usb",
        "-usb",
        "-k",
        "de",
        "-k",
        "fr",
        "-drive",
        "file=/a,if=ide,index=0",
        "-drive",
        "file=/b,if=ide,index=1",
    ]);
    assert_eq!(notice_keys(&r), ["-device cirrus-vga", "-usb", "-k", "-drive if=ide"]);
    let line = r.vm.notices.first().map(|n| n.to_string()).unwrap_or_default();
    assert_eq!(line, "-device cirrus-vga: not emulated (q35dm has no display); the guest sees no VGA");
}
