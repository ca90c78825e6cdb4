//! The `q35dm-aerd` binary: command line, start-up failures, and a run against a fake tracefs
//! and the test xenstored (no Xen: `--no-evtchn`), stopped by SIGTERM.

#[path = "../../../tests/support/xenstored.rs"]
mod xenstored;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_q35dm-aerd");

#[test]
fn help_and_bad_arguments() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in ["--tracefs", "--sysfs", "--xenstore", "--sysfs-only", "--queue-limit", "--no-evtchn"] {
        assert!(help.contains(opt), "{opt} in --help");
    }
    for bad in [&["--poll-ms", "1"][..], &["--queue-limit", "0"], &["--frobnicate"]] {
        let out = Command::new(BIN).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    // No xenstored: a clear error and exit status 1, not a panic.
    let out = Command::new(BIN).args(["--xenstore", "/nonexistent/xenstored/socket", "--no-evtchn"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xenstore") && !err.contains("panicked"), "{err}");
}

#[test]
fn forwards_from_a_fake_tracefs_until_sigterm() {
    let xsd = xenstored::FakeXenstored::start_new();
    xsd.write("/libxl/pci/0000-03-00-0/domid", b"4");
    xsd.write("/local/domain/4/name", b"g");
    xsd.write("/local/domain/0/device-model/4/aer/version", b"1");
    let root = std::env::temp_dir().join(format!("q35dm-aerd-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let fmt = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/aer/format-6.12"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("events/ras/aer_event")).unwrap();
    std::fs::write(root.join("events/ras/aer_event/format"), fmt).unwrap();
    let inst = root.join("instances/q35dm-aerd");
    std::fs::create_dir_all(inst.join("events/ras/aer_event")).unwrap();
    std::fs::write(inst.join("events/ras/aer_event/enable"), "0").unwrap();
    nix::unistd::mkfifo(&inst.join("trace_pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut pipe = std::fs::OpenOptions::new().read(true).write(true).open(inst.join("trace_pipe")).unwrap();
    let child = Command::new(BIN)
        .args(["--tracefs", root.to_str().unwrap(), "--xenstore", xsd.socket_path().to_str().unwrap()])
        .args(["--no-evtchn", "--buffer-kb", "0", "--poll-ms", "100"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pipe.write_all(
        b"  irq/27-aerdrv-140 [001] d..1. 10.000001: aer_event: 0000:03:00.0 PCIe Bus Error: severity=Uncorrected, \
          non-fatal, Poisoned TLP, TLP Header={0x4a000001,0x300000f,0xfe000000,0x0}\n\n",
    )
    .unwrap();
    let t = Instant::now();
    while xsd.read_string("/local/domain/0/device-model/4/aer/queue/1").is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "no record");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rec = xsd.read_string("/local/domain/0/device-model/4/aer/queue/1").unwrap();
    assert!(
        rec.starts_with("seq=1 sbdf=0000:03:00.0 sev=nonfatal status=0x00001000 tlp=1 hdr=0x4a000001,0x0300000f,0xfe000000,0x00000000 count=1 time="),
        "{rec}"
    );
    assert_eq!(xsd.read_string("/local/domain/0/device-model/4/aer/next-seq").as_deref(), Some("2"));
    assert_eq!(std::fs::read_to_string(inst.join("events/ras/aer_event/enable")).unwrap().trim(), "1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("q35dm-aerd stopped: 1 events, 1 records"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
