//! A small blocking QMP client, and launchers for the reference QEMU and for the q35dm binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A connected, negotiated QMP client.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    pub greeting: Value,
    next_id: u64,
}

impl Qmp {
    /// Connects (retrying until `timeout`), reads the greeting and negotiates.
    pub fn connect(path: &Path, timeout: Duration) -> Self {
        Self::connect_polling(path, timeout, Duration::from_millis(20))
    }

    /// Like `connect`, retrying every `interval` (benchmarks use a fine interval so that the
    /// polling step does not dominate what they measure).
    pub fn connect_polling(path: &Path, timeout: Duration, interval: Duration) -> Self {
        let mut q = Self::connect_raw_polling(path, timeout, interval);
        let r = q.execute("qmp_capabilities", json!({}));
        assert!(r.get("return").is_some(), "qmp_capabilities: {r}");
        q
    }

    /// Connects and reads the greeting only.
    pub fn connect_raw(path: &Path, timeout: Duration) -> Self {
        Self::connect_raw_polling(path, timeout, Duration::from_millis(20))
    }

    /// Connects (retrying every `interval` until `timeout`) and reads the greeting only.
    pub fn connect_raw_polling(path: &Path, timeout: Duration, interval: Duration) -> Self {
        let start = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < timeout => {
                    let _ = e;
                    std::thread::sleep(interval);
                }
                Err(e) => panic!("connect {}: {e}", path.display()),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let greeting: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("greeting {line:?}: {e}"));
        Self { r, w: s, greeting, next_id: 1 }
    }

    /// The socket's fd (for sendmsg with SCM_RIGHTS).
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.w.as_raw_fd()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    /// Reads the next non-event message.
    pub fn read_reply(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed");
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"));
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    /// Executes a command and returns the whole reply object.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"execute": cmd, "arguments": args, "id": id});
        self.send_raw(format!("{msg}\r\n").as_bytes());
        let r = self.read_reply();
        assert_eq!(r.get("id"), Some(&json!(id)), "id echo: {r}");
        r
    }

    /// Runs an HMP command line and returns its output.
    pub fn hmp(&mut self, line: &str) -> String {
        let r = self.execute("human-monitor-command", json!({"command-line": line}));
        match r.get("return") {
            Some(Value::String(s)) => s.clone(),
            _ => panic!("hmp {line:?}: {r}"),
        }
    }
}

fn tmp_sock(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("q35dm-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("qmp-{:x}.sock", Instant::now().elapsed().as_nanos() ^ (tag.len() as u128)))
}

/// A running process with a QMP socket, killed on drop.
pub struct Proc {
    pub child: Child,
    pub qmp: Qmp,
    pub sock: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// Whether the reference QEMU is installed; with CI=true its absence is a failure.
pub fn qemu_available() -> bool {
    let ok = Command::new("qemu-system-x86_64").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("qemu-system-x86_64 is missing and CI=true: run tests/run.sh as root to install it");
        }
        eprintln!("!!! qemu-system-x86_64 not installed: reference comparison SKIPPED (tests/run.sh installs it)");
    }
    ok
}

/// Starts QEMU 7.2 as the reference: `-M q35 -accel tcg -S -nodefaults -display none` + `extra`.
pub fn start_qemu(tag: &str, extra: &[&str]) -> Proc {
    let sock = tmp_sock(&format!("qemu-{tag}"));
    let mut args: Vec<String> = ["-M", "q35", "-accel", "tcg", "-S", "-nodefaults", "-display", "none", "-qmp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("unix:{},server=on,wait=off", sock.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new("qemu-system-x86_64").args(&args).stdin(Stdio::null()).spawn().expect("start qemu");
    let qmp = Qmp::connect(&sock, Duration::from_secs(20));
    Proc { child, qmp, sock }
}

/// Starts the q35dm binary on the simulator with a QMP socket and extra arguments.
pub fn start_q35dm(tag: &str, extra: &[&str]) -> Proc {
    let sock = tmp_sock(&format!("q35dm-{tag}"));
    let mut args: Vec<String> = vec!["--accel".into(), "sim".into(), "--log-level".into(), "warn".into()];
    args.push("--qmp".into());
    args.push(sock.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new(env!("CARGO_BIN_EXE_q35dm"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start q35dm");
    let qmp = Qmp::connect(&sock, Duration::from_secs(20));
    Proc { child, qmp, sock }
}
