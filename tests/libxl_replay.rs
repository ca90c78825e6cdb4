//! libxl's sequences replayed against the real q35dm binary (on the simulated hypervisor, with
//! the fake xenstored standing in for xenstored): the capability probe, start with readiness in
//! xenstore, the post-start QMP calls, cont, and SIGHUP; and the dm_restrict variant with an
//! inherited QMP socket, -S and query-status.

#[path = "support/qmp_client.rs"]
mod qmp_client;
#[path = "support/xenstored.rs"]
mod xenstored;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use qmp_client::Qmp;
use serde_json::json;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("q35dm-replay-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spawn(args: &[String], xs: Option<&std::path::Path>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_q35dm"));
    c.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    if let Some(p) = xs {
        c.env("XENSTORED_PATH", p);
    }
    c.env("XEN_DOMAIN_ID", "7");
    c.spawn().expect("spawn q35dm")
}

fn wait_exit(c: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// libxl_dm.c's argv for a default HVM guest (domid 7), with `--accel sim` mixed in.
fn libxl_argv(dir: &std::path::Path) -> Vec<String> {
    let qmp = dir.join("qmp-libxl-7");
    let stat = dir.join("qmp-libxenstat-7");
    [
        "--accel",
        "sim",
        "--log-level",
        "warn",
        "-xen-domid",
        "7",
        "-no-shutdown",
        "-chardev",
        &format!("socket,id=libxl-cmd,path={},server=on,wait=off", qmp.display()),
        "-mon",
        "chardev=libxl-cmd,mode=control",
        "-chardev",
        &format!("socket,id=libxenstat-cmd,path={},server=on,wait=off", stat.display()),
        "-mon",
        "chardev=libxenstat-cmd,mode=control",
        "-nodefaults",
        "-no-user-config",
        "-name",
        "replay",
        "-vnc",
        "none",
        "-display",
        "none",
        "-serial",
        "pty",
        "-boot",
        "order=cda",
        "-smp",
        "2,maxcpus=2",
        "-net",
        "none",
        "-machine",
        "xenfv,suppress-vmdesc=on",
        "-m",
        "256",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn probe_run_answers_and_quits_promptly() {
    let dir = tmpdir("probe");
    let l = UnixListener::bind(dir.join("qmp-libxl-7")).unwrap();
    fcntl(l.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let args: Vec<String> = [
        "-S",
        "-no-user-config",
        "-nodefaults",
        "-nographic",
        "-machine",
        "none,accel=xen",
        "-chardev",
        &format!("socket,id=libxl-cmd,fd={},server=on,wait=off", l.as_raw_fd()),
        "-mon",
        "chardev=libxl-cmd,mode=control",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t0 = Instant::now();
    let mut c = spawn(&args, None);
    let mut q = Qmp::connect(&dir.join("qmp-libxl-7"), Duration::from_secs(5));
    let r = q.execute("query-command-line-options", json!({}));
    let opts = r["return"].as_array().unwrap();
    let run_with = opts.iter().find(|o| o["option"] == "run-with").expect("run-with advertised");
    let names: Vec<_> =
        run_with["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"chroot") && names.contains(&"user"));
    q.execute("quit", json!({}));
    let st = wait_exit(&mut c, Duration::from_secs(5)).expect("probe exits after quit");
    assert!(st.success());
    assert!(t0.elapsed() < Duration::from_secs(5), "probe took {:?}", t0.elapsed());
}

#[test]
fn default_start_readiness_postconfig_cont_and_sighup() {
    let xs = xenstored::FakeXenstored::start_new();
    let dir = tmpdir("default");
    let args = libxl_argv(&dir);
    let mut c = spawn(&args, Some(xs.socket_path()));
    // libxl waits for device-model/7/state = running (xswait), then connects.
    let start = Instant::now();
    loop {
        if xs.read_string("/local/domain/0/device-model/7/state").as_deref() == Some("running") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "state never became running");
        assert!(c.try_wait().unwrap().is_none(), "q35dm exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // QMP must already listen when state says running: no retry, like libxl.
    let mut q = Qmp::connect(&dir.join("qmp-libxl-7"), Duration::from_millis(1));
    let r = q.execute("query-chardev", json!({}));
    for ch in r["return"].as_array().unwrap() {
        assert!(ch.get("label").is_some() && ch.get("filename").is_some(), "{ch}");
    }
    let r = q.execute("query-vnc", json!({}));
    assert_eq!(r["return"]["enabled"], false);
    drop(q);
    // Repeated connections for each operation, as libxl does; cont twice.
    for _ in 0..2 {
        let mut q = Qmp::connect(&dir.join("qmp-libxl-7"), Duration::from_millis(1));
        assert_eq!(q.execute("cont", json!({}))["return"], json!({}));
    }
    let mut q = Qmp::connect(&dir.join("qmp-libxl-7"), Duration::from_millis(1));
    assert_eq!(q.execute("query-status", json!({}))["return"]["status"], "running");
    let r = q.execute("query-pci", json!({}));
    let devs = r["return"][0]["devices"].as_array().unwrap();
    assert!(devs.iter().all(|d| d.get("qdev_id").is_some()), "every device has qdev_id: {r}");
    // xentop's socket answers too.
    let mut s = Qmp::connect(&dir.join("qmp-libxenstat-7"), Duration::from_millis(1));
    assert_eq!(s.execute("query-blockstats", json!({}))["return"], json!([]));
    // xl destroy: SIGHUP; the device model must go promptly.
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let st = wait_exit(&mut c, Duration::from_secs(2)).expect("exits within 2 s of SIGHUP");
    assert!(st.success(), "{st:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn dm_restrict_variant_with_inherited_socket_and_prelaunch() {
    let xs = xenstored::FakeXenstored::start_new();
    let dir = tmpdir("restrict");
    let l = UnixListener::bind(dir.join("qmp-libxl-7")).unwrap();
    fcntl(l.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let mut args = libxl_argv(&dir);
    let i = args.iter().position(|a| a.starts_with("socket,id=libxl-cmd")).unwrap();
    args[i] = format!("socket,id=libxl-cmd,fd={},server=on,wait=off", l.as_raw_fd());
    args.extend(["-S", "-xen-domid-restrict"].iter().map(|s| s.to_string()));
    let mut c = spawn(&args, Some(xs.socket_path()));
    // libxl connects to the socket it pre-opened at once and asks query-status.
    let mut q = Qmp::connect(&dir.join("qmp-libxl-7"), Duration::from_secs(10));
    assert_eq!(q.execute("query-status", json!({}))["return"]["status"], "prelaunch");
    assert_eq!(q.execute("cont", json!({}))["return"], json!({}));
    assert_eq!(q.execute("query-status", json!({}))["return"]["status"], "running");
    // Restricted: xenstore untouched, like QEMU under -xen-domid-restrict.
    assert_eq!(xs.read_string("/local/domain/0/device-model/7/state"), None);
    drop(q);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_exit(&mut c, Duration::from_secs(2)).is_some());
}

#[test]
fn save_and_restore_device_state_like_libxl() {
    use std::io::Seek;
    let dir = tmpdir("save");
    let args = libxl_argv(&dir);
    let mut c = spawn(&args, None);
    let sock = dir.join("qmp-libxl-7");
    let mut q = Qmp::connect(&sock, Duration::from_secs(10));
    // Guest-visible state worth keeping: MMCONFIG on, PIRQ routes, a config latch.
    for cmd in ["o /w 0xcf8 0x80000060", "o /w 0xcfc 0xb0000001", "o /w 0xcf8 0x8000f868", "o /w 0xcfc 0x0b0b0a0a"] {
        q.hmp(cmd);
    }
    // xl save: stop, add-fd with the save file (fd passed by SCM_RIGHTS), xen-save-devices-state.
    assert_eq!(q.execute("stop", json!({}))["return"], json!({}));
    let save = dir.join("qemu-save.7");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&save).unwrap();
    let fds = [f.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let msg = b"{\"execute\":\"add-fd\",\"id\":1}\r\n";
    nix::sys::socket::sendmsg::<()>(
        q.raw_fd(),
        &[std::io::IoSlice::new(msg)],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    let r = q.read_reply();
    let set = r["return"]["fdset-id"].as_i64().unwrap();
    let r = q.execute("xen-save-devices-state", json!({"filename": format!("/dev/fdset/{set}"), "live": false}));
    assert_eq!(r["return"], json!({}), "{r}");
    drop(q);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_exit(&mut c, Duration::from_secs(2)).unwrap();
    let len = std::fs::metadata(&save).unwrap().len();
    assert!(len > 28, "blob written ({len} bytes)");
    // xl restore: a new device model with -incoming fd:N reading the file.
    let mut rf = std::fs::File::open(&save).unwrap();
    rf.rewind().unwrap();
    fcntl(rf.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let mut args = libxl_argv(&dir);
    args.extend(["-incoming".to_string(), format!("fd:{}", rf.as_raw_fd())]);
    let mut c2 = spawn(&args, None);
    let mut q = Qmp::connect(&sock, Duration::from_secs(10));
    assert_eq!(q.execute("query-status", json!({}))["return"]["status"], "paused");
    assert_eq!(q.hmp("xp /1wx 0xb00f8000").trim(), "00000000b00f8000: 0x29188086", "ECAM restored and claimed");
    assert_eq!(q.hmp("xp /1wx 0xb00f8068").trim(), "00000000b00f8068: 0x0b0b0a0a");
    assert_eq!(q.execute("cont", json!({}))["return"], json!({}));
    // A corrupted blob is refused with a clear error and the device model does not start.
    let mut bytes = std::fs::read(&save).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 1;
    std::fs::write(&save, &bytes).unwrap();
    let bad = std::fs::File::open(&save).unwrap();
    fcntl(bad.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let dir3 = tmpdir("save-bad");
    let mut args = libxl_argv(&dir3);
    args.extend(["-incoming".to_string(), format!("fd:{}", bad.as_raw_fd())]);
    let out = Command::new(env!("CARGO_BIN_EXE_q35dm")).args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&out.stderr));
    drop(q);
    let _ = c2.kill();
    let _ = c2.wait();
}
