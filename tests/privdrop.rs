//! dm_restrict as libxl asks for it (`-xen-domid-restrict -chroot DIR -runas UID:GID`), checked
//! from outside through /proc after the device model is up (simulated hypervisor), then the
//! seccomp allow-list: `open` refused with EACCES, a forbidden syscall kills the process.

#[path = "support/qmp_client.rs"]
mod qmp_client;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qmp_client::Qmp;
use serde_json::json;

fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string()).unwrap_or_default()
}

#[test]
fn restricted_device_model_is_jailed_and_sandboxed() {
    if !nix::unistd::Uid::effective().is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the privilege-drop test needs root (CI=true)");
        }
        eprintln!("!!! not root: privilege-drop test SKIPPED");
        return;
    }
    let dir = std::env::temp_dir().join(format!("q35dm-jail-{}", std::process::id()));
    let root = dir.join("qemu-root-7");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&root).unwrap();
    let qmp = dir.join("qmp-libxl-7");
    let args = [
        "-xen-domid",
        "7",
        "-xen-domid-restrict",
        "-chroot",
        root.to_str().unwrap(),
        "-runas",
        "65534:65534",
        "-S",
        "-chardev",
        &format!("socket,id=libxl-cmd,path={},server=on,wait=off", qmp.display()),
        "-mon",
        "chardev=libxl-cmd,mode=control",
        "-nodefaults",
        "-machine",
        "xenfv",
        "-m",
        "128",
        "--accel",
        "sim",
        "--log-level",
        "info",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_q35dm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut q = Qmp::connect(&qmp, Duration::from_secs(10));
    // The drop happens right after set-up; wait for it to be visible.
    let t = Instant::now();
    while status_field(pid, "Seccomp:") != "2" {
        assert!(t.elapsed() < Duration::from_secs(10), "seccomp never installed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status_field(pid, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Gid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Groups:"), "");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/root")).unwrap(), root);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let lim = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().rev().nth(2).unwrap_or("").to_string())
    };
    assert_eq!(lim("Max file size").as_deref(), Some("262144"), "{limits}");
    assert_eq!(lim("Max core file size").as_deref(), Some("0"), "{limits}");
    assert_eq!(lim("Max locked memory").as_deref(), Some("0"), "{limits}");
    // Open fds: only sockets, memfds (ioreq pages, guest RAM), anonymous inodes, stdio.
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap();
        let t = target.to_string_lossy();
        assert!(
            t.starts_with("socket:")
                || t.starts_with("/memfd:")
                || t.starts_with("anon_inode:")
                || t.starts_with("pipe:")
                || t == "/dev/null",
            "unexpected open file {t}"
        );
    }
    // Still serving after the drop.
    assert_eq!(q.execute("query-status", json!({}))["return"]["status"], "prelaunch");
    assert_eq!(q.execute("cont", json!({}))["return"], json!({}));
    assert!(q.hmp("info pci").contains("Host bridge"));
    assert!(q.hmp("xp /1wx 0x1000").starts_with("0000000000001000:"));
    // open is refused, not fatal.
    let r = q.hmp("x-seccomp-probe open");
    assert!(r.contains("Permission denied"), "{r}");
    // A syscall outside the allow-list kills the process with SIGSYS.
    q.send_raw(
        b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"x-seccomp-probe socket\"}}\r\n",
    );
    let t = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not killed");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(st.signal(), Some(libc::SIGSYS), "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
