//! QMP, as libxl speaks it (libxl-contract.md §2-3): greeting advertising QEMU 7.2 (≥ 2.11),
//! capabilities negotiation, `\r\n`-terminated JSON objects, ids echoed verbatim, errors with
//! `class` and `desc`, file descriptors passed with SCM_RIGHTS (`add-fd`, `getfd`), repeated
//! connect/disconnect. Messages over 1 MiB are refused and the connection is closed.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use log::{debug, info, warn};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Map, Value};

use crate::guest_warn;
use crate::monitor::hmp;
use crate::vm::{RunState, Vm};

/// Largest message accepted (libxl's own receive limit).
pub const MAX_MESSAGE: usize = 1 << 20;

/// A QMP error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpError {
    /// `GenericError`, `CommandNotFound`, `DeviceNotActive`, `DeviceNotFound`.
    pub class: &'static str,
    /// Human-readable description.
    pub desc: String,
}

impl QmpError {
    /// `GenericError` with `desc`.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self { class: "GenericError", desc: desc.into() }
    }
    /// `CommandNotFound`.
    pub fn not_found(cmd: &str) -> Self {
        Self { class: "CommandNotFound", desc: format!("The command {cmd} has not been found") }
    }
    /// `DeviceNotFound`.
    pub fn device_not_found(id: &str) -> Self {
        Self { class: "DeviceNotFound", desc: format!("Device '{id}' not found") }
    }
}

/// A character device as `query-chardev` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevInfo {
    /// `label`: the chardev id (`serial0`, `libxl-cmd`, ...).
    pub label: String,
    /// `filename`: QEMU-style, e.g. `pty:/dev/pts/3`, `unix:/path,server=on`, `file:/path`.
    pub filename: String,
}

/// A registered file-descriptor set (`add-fd`).
#[derive(Debug)]
struct FdSet {
    fds: Vec<(i64, OwnedFd, Option<String>)>,
}

/// Hooks for commands whose meaning belongs to other parts of the device model.
pub trait QmpHandlers: Send + Sync {
    /// `device_add` with the raw arguments.
    fn device_add(&self, _args: &Map<String, Value>) -> Result<Value, QmpError> {
        Err(QmpError::generic("device_add is not available in this configuration"))
    }
    /// `device_del`.
    fn device_del(&self, id: &str) -> Result<Value, QmpError> {
        Err(QmpError::device_not_found(id))
    }
    /// `query-pci`.
    fn query_pci(&self) -> Result<Value, QmpError> {
        Ok(json!([{"bus": 0, "devices": []}]))
    }
    /// `xen-save-devices-state`: writes the blob to `fd`.
    fn save_devices_state(&self, _fd: OwnedFd, _live: bool) -> Result<(), QmpError> {
        Err(QmpError::generic("saving device state is not available"))
    }
    /// `xen-load-devices-state`: reads the blob from `path`.
    fn load_devices_state(&self, _path: &str) -> Result<(), QmpError> {
        Err(QmpError::generic("loading device state is not available"))
    }
    /// `xen-set-global-dirty-log`.
    fn set_dirty_log(&self, _enable: bool) -> Result<(), QmpError> {
        Ok(())
    }
    /// Any other command: `None` means CommandNotFound.
    fn other(&self, _cmd: &str, _args: &Map<String, Value>) -> Option<Result<Value, QmpError>> {
        None
    }
}

/// The default hooks (nothing extra).
#[derive(Debug, Default)]
pub struct NoHandlers;
impl QmpHandlers for NoHandlers {}

/// State shared by every QMP listener of the process.
pub struct QmpContext {
    /// The device model.
    pub vm: Arc<Vm>,
    /// What `query-chardev` reports.
    pub chardevs: Mutex<Vec<ChardevInfo>>,
    /// Number of vCPUs (`query-cpus-fast`).
    pub vcpus: u32,
    /// Extra command hooks.
    pub handlers: Box<dyn QmpHandlers>,
    fdsets: Mutex<BTreeMap<i64, FdSet>>,
    next_fd_id: Mutex<i64>,
}

impl std::fmt::Debug for QmpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QmpContext({:?})", self.vm)
    }
}

impl QmpContext {
    /// A context for `vm`.
    pub fn new(vm: Arc<Vm>, vcpus: u32, handlers: Box<dyn QmpHandlers>) -> Arc<Self> {
        Arc::new(Self {
            vm,
            chardevs: Mutex::new(Vec::new()),
            vcpus,
            handlers,
            fdsets: Mutex::new(BTreeMap::new()),
            next_fd_id: Mutex::new(0),
        })
    }

    /// Takes the fd registered as `/dev/fdset/N` (the first of its set).
    pub fn take_fdset(&self, path: &str) -> Result<OwnedFd, QmpError> {
        let id: i64 = path
            .strip_prefix("/dev/fdset/")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| QmpError::generic(format!("'{path}' is not a /dev/fdset/N path")))?;
        let mut sets = self.fdsets.lock().map_err(|_| QmpError::generic("fd sets unavailable"))?;
        let set = sets.get_mut(&id).ok_or_else(|| QmpError::generic(format!("fdset {id} does not exist")))?;
        if set.fds.is_empty() {
            return Err(QmpError::generic(format!("fdset {id} is empty")));
        }
        let (_, fd, _) = set.fds.remove(0);
        if set.fds.is_empty() {
            sets.remove(&id);
        }
        Ok(fd)
    }
}

/// The greeting: QEMU 7.2.0, no optional capabilities.
pub fn greeting() -> Value {
    json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                               "package": format!("q35dm {}", env!("CARGO_PKG_VERSION"))},
                   "capabilities": []}})
}

/// One client connection.
pub struct Session {
    ctx: Arc<QmpContext>,
    negotiated: bool,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    named_fds: BTreeMap<String, OwnedFd>,
}

fn reply_ok(id: Option<&Value>, ret: Value) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

fn reply_err(id: Option<&Value>, e: &QmpError) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), json!({"class": e.class, "desc": e.desc}));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

fn arg_str<'a>(args: &'a Map<String, Value>, k: &str) -> Result<&'a str, QmpError> {
    match args.get(k) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(QmpError::generic(format!("Invalid parameter type for '{k}', expected: string"))),
        None => Err(QmpError::generic(format!("Parameter '{k}' is missing"))),
    }
}

fn arg_bool(args: &Map<String, Value>, k: &str) -> Result<Option<bool>, QmpError> {
    match args.get(k) {
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(QmpError::generic(format!("Invalid parameter type for '{k}', expected: boolean"))),
        None => Ok(None),
    }
}

/// What a processed input produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Replies to send, in order.
    pub replies: Vec<Value>,
    /// Close the connection after sending.
    pub close: bool,
}

impl Session {
    /// A session on `ctx`.
    pub fn new(ctx: Arc<QmpContext>) -> Self {
        Self { ctx, negotiated: false, buf: Vec::new(), fds: VecDeque::new(), named_fds: BTreeMap::new() }
    }

    /// Queues file descriptors received with the next command.
    pub fn push_fds(&mut self, fds: impl IntoIterator<Item = OwnedFd>) {
        self.fds.extend(fds);
    }

    /// Feeds received bytes; returns the replies for every complete message.
    pub fn feed(&mut self, data: &[u8]) -> Output {
        let mut out = Output::default();
        self.buf.extend_from_slice(data);
        loop {
            // Skip whitespace between messages.
            let skip = self.buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            self.buf.drain(..skip);
            if self.buf.is_empty() {
                break;
            }
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    let r = self.handle(v);
                    out.replies.push(r);
                    if self.ctx.vm.quitting() {
                        out.close = true;
                        break;
                    }
                }
                Some(Err(e)) if e.is_eof() => {
                    if self.buf.len() > MAX_MESSAGE {
                        guest_warn!("QMP: message over {MAX_MESSAGE} bytes; closing the connection");
                        out.replies.push(reply_err(None, &QmpError::generic("message too large (limit 1 MiB)")));
                        out.close = true;
                        self.buf.clear();
                    }
                    break;
                }
                Some(Err(e)) => {
                    guest_warn!("QMP: malformed JSON: {e}");
                    out.replies.push(reply_err(None, &QmpError::generic(format!("JSON parse error, {e}"))));
                    // Resynchronise at the next line.
                    match self.buf.iter().position(|b| *b == b'\n') {
                        Some(p) => drop(self.buf.drain(..=p)),
                        None => self.buf.clear(),
                    }
                }
                None => break,
            }
        }
        out
    }

    fn handle(&mut self, v: Value) -> Value {
        let Value::Object(mut m) = v else {
            return reply_err(None, &QmpError::generic("QMP input must be a JSON object"));
        };
        let id = m.remove("id");
        let cmd = match m.remove("execute").or_else(|| m.remove("exec-oob")) {
            Some(Value::String(s)) => s,
            Some(_) => {
                return reply_err(id.as_ref(), &QmpError::generic("QMP input member 'execute' must be a string"))
            }
            None => return reply_err(id.as_ref(), &QmpError::generic("QMP input lacks member 'execute'")),
        };
        let args = match m.remove("arguments") {
            None => Map::new(),
            Some(Value::Object(a)) => a,
            Some(_) => {
                return reply_err(id.as_ref(), &QmpError::generic("QMP input member 'arguments' must be an object"))
            }
        };
        if let Some(k) = m.keys().next() {
            return reply_err(id.as_ref(), &QmpError::generic(format!("QMP input member '{k}' is unexpected")));
        }
        debug!("QMP <- {cmd} {}", Value::Object(args.clone()));
        let r = if !self.negotiated && cmd != "qmp_capabilities" {
            Err(QmpError {
                class: "CommandNotFound",
                desc: format!("Expecting capabilities negotiation with 'qmp_capabilities' (got '{cmd}')"),
            })
        } else {
            self.dispatch(&cmd, &args)
        };
        match r {
            Ok(ret) => reply_ok(id.as_ref(), ret),
            Err(e) => {
                if e.class != "CommandNotFound" {
                    info!("QMP {cmd}: {}", e.desc);
                }
                reply_err(id.as_ref(), &e)
            }
        }
    }

    fn dispatch(&mut self, cmd: &str, args: &Map<String, Value>) -> Result<Value, QmpError> {
        let ctx = self.ctx.clone();
        let vm = &ctx.vm;
        match cmd {
            "qmp_capabilities" => {
                if self.negotiated {
                    return Err(QmpError {
                        class: "CommandNotFound",
                        desc: "Capabilities negotiation is already complete, command ignored".into(),
                    });
                }
                self.negotiated = true;
                Ok(json!({}))
            }
            "query-status" => {
                let s = vm.run_state();
                Ok(json!({"status": s.name(), "singlestep": false, "running": s == RunState::Running}))
            }
            "cont" => {
                vm.cont();
                Ok(json!({}))
            }
            "stop" => {
                vm.stop();
                Ok(json!({}))
            }
            "quit" => {
                vm.quit();
                Ok(json!({}))
            }
            "query-version" => Ok(json!({"qemu": {"micro": 0, "minor": 2, "major": 7},
                                         "package": format!("q35dm {}", env!("CARGO_PKG_VERSION"))})),
            "query-name" => Ok(json!({})),
            "query-chardev" => {
                let c = ctx.chardevs.lock().map(|c| c.clone()).unwrap_or_default();
                Ok(Value::Array(
                    c.iter()
                        .map(|c| json!({"label": c.label, "filename": c.filename, "frontend-open": true}))
                        .collect(),
                ))
            }
            "query-vnc" => Ok(json!({"enabled": false})),
            "query-pci" => ctx.handlers.query_pci(),
            "device_add" => ctx.handlers.device_add(args),
            "device_del" => ctx.handlers.device_del(arg_str(args, "id")?),
            "query-cpus-fast" => Ok(Value::Array(
                (0..ctx.vcpus)
                    .map(|i| {
                        json!({"cpu-index": i, "qom-path": format!("/machine/unattached/device[{i}]"),
                                    "thread-id": 0, "target": "x86_64",
                                    "props": {"core-id": 0, "thread-id": 0, "socket-id": i}})
                    })
                    .collect(),
            )),
            "query-hotpluggable-cpus" => Ok(Value::Array(
                (0..ctx.vcpus)
                    .map(|i| {
                        json!({"type": "qemu64-x86_64-cpu", "vcpus-count": 1,
                                    "props": {"core-id": 0, "thread-id": 0, "socket-id": i},
                                    "qom-path": format!("/machine/unattached/device[{i}]")})
                    })
                    .collect(),
            )),
            "xen-set-global-dirty-log" => {
                let en = arg_bool(args, "enable")?.ok_or_else(|| QmpError::generic("Parameter 'enable' is missing"))?;
                ctx.handlers.set_dirty_log(en)?;
                Ok(json!({}))
            }
            "xen-save-devices-state" => {
                let f = arg_str(args, "filename")?;
                let live = arg_bool(args, "live")?.unwrap_or(false);
                let fd = if f.starts_with("/dev/fdset/") {
                    ctx.take_fdset(f)?
                } else {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(f)
                        .map_err(|e| QmpError::generic(format!("Could not open '{f}': {e}")))?
                        .into()
                };
                ctx.handlers.save_devices_state(fd, live)?;
                Ok(json!({}))
            }
            "xen-load-devices-state" => {
                ctx.handlers.load_devices_state(arg_str(args, "filename")?)?;
                Ok(json!({}))
            }
            "human-monitor-command" => {
                let line = arg_str(args, "command-line")?;
                Ok(Value::String(hmp::execute(vm, line)))
            }
            "query-command-line-options" => Ok(json!([
                {"option": "run-with", "parameters": [{"name": "chroot", "type": "string"},
                                                      {"name": "user", "type": "string"}]}
            ])),
            "add-fd" => {
                let fd = self
                    .fds
                    .pop_front()
                    .ok_or_else(|| QmpError::generic("No file descriptor supplied via SCM_RIGHTS"))?;
                let opaque = match args.get("opaque") {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => None,
                };
                let mut next = ctx.next_fd_id.lock().map_err(|_| QmpError::generic("fd sets unavailable"))?;
                let set_id = match args.get("fdset-id").and_then(Value::as_i64) {
                    Some(i) => i,
                    None => {
                        *next += 1;
                        *next - 1
                    }
                };
                let raw = i64::from(fd.as_raw_fd());
                let mut sets = ctx.fdsets.lock().map_err(|_| QmpError::generic("fd sets unavailable"))?;
                sets.entry(set_id).or_insert_with(|| FdSet { fds: Vec::new() }).fds.push((raw, fd, opaque));
                Ok(json!({"fdset-id": set_id, "fd": raw}))
            }
            "remove-fd" => {
                let set_id = args
                    .get("fdset-id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| QmpError::generic("Parameter 'fdset-id' is missing"))?;
                let mut sets = ctx.fdsets.lock().map_err(|_| QmpError::generic("fd sets unavailable"))?;
                match args.get("fd").and_then(Value::as_i64) {
                    Some(fd) => {
                        let set = sets.get_mut(&set_id).ok_or_else(|| {
                            QmpError::generic(format!("File descriptor named 'fdset-id:{set_id}' not found"))
                        })?;
                        set.fds.retain(|(r, _, _)| *r != fd);
                    }
                    None => {
                        sets.remove(&set_id).ok_or_else(|| {
                            QmpError::generic(format!("File descriptor named 'fdset-id:{set_id}' not found"))
                        })?;
                    }
                }
                Ok(json!({}))
            }
            "query-fdsets" => {
                let sets = ctx.fdsets.lock().map_err(|_| QmpError::generic("fd sets unavailable"))?;
                Ok(Value::Array(
                    sets.iter()
                        .map(|(id, s)| {
                            json!({"fdset-id": id, "fds": s.fds.iter().map(|(r, _, o)| match o {
                            Some(o) => json!({"fd": r, "opaque": o}),
                            None => json!({"fd": r}),
                        }).collect::<Vec<_>>()})
                        })
                        .collect(),
                ))
            }
            "getfd" => {
                let name = arg_str(args, "fdname")?.to_string();
                let fd = self
                    .fds
                    .pop_front()
                    .ok_or_else(|| QmpError::generic("No file descriptor supplied via SCM_RIGHTS"))?;
                self.named_fds.insert(name, fd);
                Ok(json!({}))
            }
            "closefd" => {
                let name = arg_str(args, "fdname")?;
                self.named_fds
                    .remove(name)
                    .ok_or_else(|| QmpError::generic(format!("File descriptor named '{name}' not found")))?;
                Ok(json!({}))
            }
            // libxenstat (xentop) asks these on its own socket; q35dm has no block devices.
            "query-block" | "query-blockstats" => Ok(json!([])),
            "query-commands" => Ok(Value::Array(COMMANDS.iter().map(|c| json!({"name": c})).collect())),
            other => ctx.handlers.other(other, args).unwrap_or_else(|| Err(QmpError::not_found(other))),
        }
    }
}

/// Every command this server answers (besides handler extensions).
pub const COMMANDS: &[&str] = &[
    "add-fd",
    "closefd",
    "cont",
    "device_add",
    "device_del",
    "getfd",
    "human-monitor-command",
    "qmp_capabilities",
    "query-block",
    "query-blockstats",
    "query-chardev",
    "query-command-line-options",
    "query-commands",
    "query-cpus-fast",
    "query-fdsets",
    "query-hotpluggable-cpus",
    "query-name",
    "query-pci",
    "query-status",
    "query-version",
    "query-vnc",
    "quit",
    "remove-fd",
    "stop",
    "xen-load-devices-state",
    "xen-save-devices-state",
    "xen-set-global-dirty-log",
];

fn send(stream: &mut UnixStream, v: &Value) -> io::Result<()> {
    let mut s = v.to_string();
    s.push_str("\r\n");
    stream.write_all(s.as_bytes())
}

/// Serves one connection until EOF, error or quit.
pub fn serve_connection(ctx: Arc<QmpContext>, mut stream: UnixStream) -> io::Result<()> {
    send(&mut stream, &greeting())?;
    let mut sess = Session::new(ctx.clone());
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
    loop {
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(m) => m,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut fds = Vec::new();
            if let Ok(cms) = msg.cmsgs() {
                for c in cms {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for r in raw {
                            match xen_bindings::fd::adopt_received(r) {
                                Ok(fd) => fds.push(fd),
                                Err(e) => warn!("QMP: received fd {r} could not be taken: {e}"),
                            }
                        }
                    }
                }
            }
            (msg.bytes, fds)
        };
        if n == 0 {
            return Ok(());
        }
        sess.push_fds(fds);
        let out = sess.feed(buf.get(..n).unwrap_or(&[]));
        for r in &out.replies {
            debug!("QMP -> {r}");
            send(&mut stream, r)?;
        }
        if out.close {
            return Ok(());
        }
    }
}

/// Most QMP clients served at once per listener; more wait in the backlog.
pub const MAX_CLIENTS: usize = 8;

/// Serves a listening socket, each connection on its own thread (so a stuck client cannot block
/// libxl's next connection), until `quit` was requested.
pub fn spawn(ctx: Arc<QmpContext>, listener: UnixListener, name: &str) -> io::Result<JoinHandle<()>> {
    let name = name.to_string();
    std::thread::Builder::new().name(format!("q35dm-qmp-{name}")).spawn(move || {
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for c in listener.incoming() {
            if ctx.vm.quitting() {
                return;
            }
            match c {
                Ok(s) => {
                    while active.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CLIENTS {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (ctx2, active2, name2) = (ctx.clone(), active.clone(), name.clone());
                    let r = std::thread::Builder::new().name("q35dm-qmp-conn".into()).spawn(move || {
                        if let Err(e) = serve_connection(ctx2, s) {
                            debug!("QMP {name2}: connection ended: {e}");
                        }
                        active2.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    });
                    if let Err(e) = r {
                        warn!("QMP: cannot start a connection thread: {e}");
                        active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    warn!("QMP {name}: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    })
}

/// Binds `path` for QMP, removing a stale socket file first (the probe run leaves one behind).
pub fn bind_path(path: &std::path::Path) -> io::Result<UnixListener> {
    if let Ok(md) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if md.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ));
        }
    }
    UnixListener::bind(path)
}

/// Takes an inherited listening socket (`-chardev socket,fd=N,server=on`).
pub fn adopt_listener(fd: i32) -> io::Result<UnixListener> {
    let owned = xen_bindings::fd::adopt_inherited(fd)?;
    Ok(UnixListener::from(owned))
}
