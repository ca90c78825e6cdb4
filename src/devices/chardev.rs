//! Character-device backends for the emulated serial ports: where guest output goes and where
//! guest input comes from (`-serial file:PATH`, `-serial pty`, `stdio`, `null`, and `-chardev`
//! definitions of the same backends).
//!
//! The device-model thread never blocks on a backend:
//!
//! * **Output** goes into a bounded queue ([`OUTPUT_QUEUE_BYTES`]) drained by a writer thread that
//!   does the (possibly blocking) writes. When the queue is full (nobody reads the pty, the disk
//!   stalls) or the writer is gone (the file or terminal failed), bytes are dropped, counted
//!   ([`CharBackend::dropped`]) and reported through a rate-limited warning.
//! * **Input** (pty, stdio) is read by a reader thread into an [`InputQueue`]; the reader then
//!   wakes the device-model thread (the `kick` closure, which queues a job through the loop
//!   handle) so the front end pulls what fits into its receive FIFO. The front end pulls again
//!   whenever the guest makes room, so input is flow-controlled like QEMU's `can_receive`.
//!
//! A pty is put in raw mode (no echo, no line discipline processing), as QEMU does, and its
//! slave side stays open for the lifetime of the backend, so writes never fail with EIO while no
//! terminal client (`xl console`) is attached: they fill the pty buffer, then the queue, then are
//! dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::cmdline::chardev::{Chardev, ChardevBackend, SocketAddr};
use crate::monitor::qmp::ChardevInfo;

/// Guest output held for the writer thread before bytes are dropped.
pub const OUTPUT_QUEUE_BYTES: usize = 64 * 1024;
/// Input held between the reader thread and the front end.
pub const INPUT_QUEUE_BYTES: usize = 4096;
/// How long dropping a backend waits for its writer to drain the queue.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How often reader threads check whether their front end is gone.
const READER_POLL_MS: u16 = 200;

/// A backend that could not be opened.
#[derive(Debug, Error)]
pub enum ChardevError {
    /// The output file could not be opened.
    #[error("chardev {id}: opening {}: {source}", path.display())]
    File {
        /// Chardev id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No pseudo-terminal could be allocated or configured.
    #[error("chardev {id}: pseudo-terminal: {what}: {source}")]
    Pty {
        /// Chardev id.
        id: String,
        /// The step that failed.
        what: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// A descriptor could not be duplicated or a thread could not be started.
    #[error("chardev {id}: {what}: {source}")]
    Io {
        /// Chardev id.
        id: String,
        /// The step that failed.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
struct OutState {
    buf: VecDeque<u8>,
    /// The front end is gone: drain and exit.
    closing: bool,
    /// The writer thread has exited (drained, or its sink failed).
    writer_done: bool,
    /// The sink failed: nothing will be written any more.
    failed: bool,
    /// The writer took bytes out of `buf` and is writing them.
    in_flight: bool,
    dropped: u64,
}

#[derive(Debug, Default)]
struct OutQueue {
    state: Mutex<OutState>,
    /// Signalled when bytes arrive or closing is requested (writer waits on it).
    more: Condvar,
    /// Signalled when the writer exits (the dropping side waits on it).
    done: Condvar,
}

/// Bytes from a reader thread to a front end, bounded; see the module documentation.
#[derive(Debug)]
pub struct InputQueue {
    q: Mutex<VecDeque<u8>>,
    space: Condvar,
    pending: AtomicUsize,
    closed: AtomicBool,
}

impl Default for InputQueue {
    fn default() -> Self {
        Self {
            q: Mutex::new(VecDeque::with_capacity(INPUT_QUEUE_BYTES)),
            space: Condvar::new(),
            pending: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }
}

impl InputQueue {
    /// Bytes waiting (cheap: no lock).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes up to `max` bytes (front-end side; never blocks beyond the short queue lock).
    pub fn take(&self, max: usize) -> Vec<u8> {
        if max == 0 || self.pending() == 0 {
            return Vec::new();
        }
        let Ok(mut q) = self.q.lock() else { return Vec::new() };
        let n = max.min(q.len());
        let v: Vec<u8> = q.drain(..n).collect();
        self.pending.store(q.len(), Ordering::Release);
        drop(q);
        self.space.notify_all();
        v
    }

    /// Appends `bytes`, waiting for room (reader side). Returns false once the queue is closed
    /// (the bytes not yet queued are then discarded).
    pub fn push(&self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.is_closed() {
                return false;
            }
            let Ok(mut q) = self.q.lock() else { return false };
            let room = INPUT_QUEUE_BYTES.saturating_sub(q.len());
            if room == 0 {
                // Bounded wait so a closed queue is noticed even without a notification.
                let _ = self.space.wait_timeout(q, Duration::from_millis(u64::from(READER_POLL_MS)));
                continue;
            }
            let n = room.min(bytes.len());
            let (now, rest) = bytes.split_at(n);
            q.extend(now.iter().copied());
            self.pending.store(q.len(), Ordering::Release);
            bytes = rest;
        }
        true
    }

    /// Closes the queue: the reader thread stops at its next check.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.space.notify_all();
    }

    /// Whether [`InputQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// An opened backend, owned by one front end (a serial port).
pub struct CharBackend {
    id: String,
    filename: String,
    out: Option<Arc<OutQueue>>,
    writer: Option<JoinHandle<()>>,
    input: Option<File>,
    /// Descriptors kept open for the lifetime of the backend (the pty slave).
    keep: Vec<OwnedFd>,
}

impl std::fmt::Debug for CharBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CharBackend({} = {})", self.id, self.filename)
    }
}

impl CharBackend {
    /// Opens the backend of chardev `cd`. `stdin_free` tells whether a `stdio` backend may read
    /// stdin (not when a human monitor already does). Backends q35dm does not implement as a
    /// serial backend (sockets, `vc`, `pipe`, ...) discard output, with a warning.
    pub fn open(cd: &Chardev, stdin_free: bool) -> Result<Self, ChardevError> {
        let id = cd.id.clone();
        match &cd.backend {
            ChardevBackend::File { path, append } => Self::file(&id, path, *append),
            ChardevBackend::Pty => Self::pty(&id),
            ChardevBackend::Stdio => {
                let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
                let input = if stdin_free && !cd.mux {
                    let fd = std::io::stdin().as_fd().try_clone_to_owned().map_err(|source| ChardevError::Io {
                        id: id.clone(),
                        what: "duplicating stdin",
                        source,
                    })?;
                    Some(File::from(fd))
                } else {
                    None
                };
                Self::from_parts(&id, "stdio", Some(out), input)
            }
            ChardevBackend::Null => Ok(Self::null(&id, "null")),
            other => {
                log::warn!(
                    "chardev {id}: backend '{}' is not implemented for serial ports; output is discarded",
                    other.name()
                );
                Ok(Self::null(&id, &describe(cd)))
            }
        }
    }

    /// A backend that discards output and never has input.
    pub fn null(id: &str, filename: &str) -> Self {
        Self { id: id.into(), filename: filename.into(), out: None, writer: None, input: None, keep: Vec::new() }
    }

    /// Output appended to (`append`) or written over (QEMU's default) the file at `path`.
    pub fn file(id: &str, path: &Path, append: bool) -> Result<Self, ChardevError> {
        let mut o = OpenOptions::new();
        o.create(true);
        if append {
            o.append(true);
        } else {
            o.write(true).truncate(true);
        }
        let f = o.open(path).map_err(|source| ChardevError::File { id: id.into(), path: path.into(), source })?;
        Self::from_parts(id, &format!("file:{}", path.display()), Some(Box::new(f)), None)
    }

    /// A new pseudo-terminal in raw mode; its slave path is reported as `pty:/dev/pts/N`.
    pub fn pty(id: &str) -> Result<Self, ChardevError> {
        let err = |what| move |source| ChardevError::Pty { id: id.into(), what, source };
        let p = nix::pty::openpty(None, None).map_err(err("openpty"))?;
        let mut t = nix::sys::termios::tcgetattr(&p.slave).map_err(err("tcgetattr"))?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&p.slave, nix::sys::termios::SetArg::TCSANOW, &t).map_err(err("tcsetattr"))?;
        let path = nix::unistd::ttyname(&p.slave).map_err(err("ttyname"))?;
        let reader = p.master.try_clone().map_err(|source| ChardevError::Io {
            id: id.into(),
            what: "duplicating the pty master",
            source,
        })?;
        let mut b = Self::from_parts(
            id,
            &format!("pty:{}", path.display()),
            Some(Box::new(File::from(p.master))),
            Some(File::from(reader)),
        )?;
        b.keep.push(p.slave);
        log::info!("char device {id} redirected to {}", path.display());
        Ok(b)
    }

    /// A backend over arbitrary output and input (tests, custom sinks). `filename` is what
    /// `query-chardev` reports.
    pub fn from_parts(
        id: &str,
        filename: &str,
        out: Option<Box<dyn Write + Send>>,
        input: Option<File>,
    ) -> Result<Self, ChardevError> {
        let mut b = Self::null(id, filename);
        b.input = input;
        if let Some(sink) = out {
            let q = Arc::new(OutQueue::default());
            let q2 = q.clone();
            let name = format!("q35dm-out-{id}");
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || writer_thread(q2, sink))
                .map_err(|source| ChardevError::Io { id: id.into(), what: "starting the output thread", source })?;
            b.out = Some(q);
            b.writer = Some(h);
        }
        Ok(b)
    }

    /// The chardev id (`serial0`, ...).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What `query-chardev` reports as `filename` (`pty:/dev/pts/3`, `file:/path`, `stdio`, ...).
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The pty slave path, for a pty backend.
    pub fn pty_path(&self) -> Option<&str> {
        self.filename.strip_prefix("pty:")
    }

    /// The `query-chardev` entry.
    pub fn info(&self) -> ChardevInfo {
        ChardevInfo { label: self.id.clone(), filename: self.filename.clone() }
    }

    /// Queues one byte of guest output (never blocks beyond the short queue lock).
    pub fn write_byte(&self, b: u8) {
        let Some(q) = &self.out else { return };
        let Ok(mut s) = q.state.lock() else { return };
        if s.failed || s.buf.len() >= OUTPUT_QUEUE_BYTES {
            s.dropped = s.dropped.saturating_add(1);
            let (dropped, failed) = (s.dropped, s.failed);
            drop(s);
            crate::guest_warn!(
                "chardev {}: guest output dropped ({dropped} bytes so far): {}",
                self.id,
                if failed { "the backend failed" } else { "nobody is reading it" }
            );
            return;
        }
        let was_empty = s.buf.is_empty();
        s.buf.push_back(b);
        drop(s);
        if was_empty {
            q.more.notify_one();
        }
    }

    /// Bytes of output dropped so far.
    pub fn dropped(&self) -> u64 {
        self.out.as_ref().and_then(|q| q.state.lock().ok().map(|s| s.dropped)).unwrap_or(0)
    }

    /// Waits up to `timeout` until every queued byte has been handed to the sink. Returns whether
    /// the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(q) = &self.out else { return true };
        let deadline = Instant::now() + timeout;
        let Ok(mut s) = q.state.lock() else { return false };
        // The writer empties `buf` before writing; wait until it is idle again.
        loop {
            if (s.buf.is_empty() && !s.in_flight) || s.failed || s.writer_done {
                return s.buf.is_empty();
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match q.done.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return false,
            }
        }
    }

    /// Takes the input side, for [`spawn_reader`] (once).
    pub fn take_input(&mut self) -> Option<File> {
        self.input.take()
    }

    /// Whether the backend has an input side not yet taken.
    pub fn has_input(&self) -> bool {
        self.input.is_some()
    }
}

impl Drop for CharBackend {
    fn drop(&mut self) {
        let Some(q) = self.out.take() else { return };
        let Ok(mut s) = q.state.lock() else { return };
        s.closing = true;
        q.more.notify_all();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !s.writer_done {
            let now = Instant::now();
            if now >= deadline {
                log::warn!("chardev {}: output not drained at exit ({} bytes left)", self.id, s.buf.len());
                return;
            }
            match q.done.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return,
            }
        }
        drop(s);
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn writer_thread(q: Arc<OutQueue>, mut sink: Box<dyn Write + Send>) {
    let mut chunk: Vec<u8> = Vec::with_capacity(4096);
    loop {
        {
            let Ok(mut s) = q.state.lock() else { return };
            while s.buf.is_empty() && !s.closing {
                // Woken by the notification; the timeout only bounds a missed wake-up.
                s = match q.more.wait_timeout(s, Duration::from_secs(1)) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
            if s.buf.is_empty() {
                s.writer_done = true;
                drop(s);
                q.done.notify_all();
                return;
            }
            chunk.clear();
            chunk.extend(s.buf.drain(..));
            s.in_flight = true;
        }
        let r = sink.write_all(&chunk).and_then(|()| sink.flush());
        let Ok(mut s) = q.state.lock() else { return };
        s.in_flight = false;
        if let Err(e) = r {
            log::error!("serial output backend failed: {e}; further output is dropped");
            s.failed = true;
            s.writer_done = true;
            s.dropped = s.dropped.saturating_add(s.buf.len() as u64);
            s.buf.clear();
            drop(s);
            q.done.notify_all();
            return;
        }
        drop(s);
        q.done.notify_all();
    }
}

/// Starts a thread that reads `input` into `queue` and calls `kick` after each batch (`kick`
/// returns false once the device model is gone). The thread ends at end of input, on a read
/// error, when the queue is closed, or when `kick` fails.
pub fn spawn_reader(
    id: &str,
    input: File,
    queue: Arc<InputQueue>,
    mut kick: Box<dyn FnMut() -> bool + Send>,
) -> std::io::Result<JoinHandle<()>> {
    let id = id.to_string();
    std::thread::Builder::new().name(format!("q35dm-in-{id}")).spawn(move || {
        let mut input = input;
        let mut buf = [0u8; 256];
        loop {
            if queue.is_closed() {
                return;
            }
            let mut fds = [nix::poll::PollFd::new(input.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(READER_POLL_MS)) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::warn!("chardev {id}: polling input: {e}; input stops");
                    return;
                }
            }
            let n = match input.read(&mut buf) {
                Ok(0) => {
                    log::debug!("chardev {id}: end of input");
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    // A pty whose last client closed; ours keeps the slave open, so this is rare.
                    std::thread::sleep(Duration::from_millis(u64::from(READER_POLL_MS)));
                    continue;
                }
                Err(e) => {
                    log::warn!("chardev {id}: reading input: {e}; input stops");
                    return;
                }
            };
            if !queue.push(buf.get(..n).unwrap_or(&[])) || !kick() {
                return;
            }
        }
    })
}

/// `query-chardev` `filename` for a chardev that is not opened as a serial backend (monitor
/// sockets and the like), in QEMU's style.
pub fn describe(cd: &Chardev) -> String {
    match &cd.backend {
        ChardevBackend::Socket(s) => {
            let server = if s.server { ",server=on" } else { "" };
            match &s.addr {
                SocketAddr::Unix(p) => format!("unix:{}{server}", p.display()),
                SocketAddr::Fd(fd) => format!("fd:{fd}{server}"),
                SocketAddr::Inet { host, port } => format!("tcp:{host}:{port}{server}"),
            }
        }
        ChardevBackend::Pty => "pty".into(),
        ChardevBackend::File { path, .. } => format!("file:{}", path.display()),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("q35dm-chardev-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn file_backend_writes_and_reports_its_name() {
        let p = tmp("file");
        std::fs::write(&p, b"old contents\n").unwrap();
        let b = CharBackend::file("serial0", &p, false).unwrap();
        assert_eq!(b.filename(), format!("file:{}", p.display()));
        assert_eq!(b.info().label, "serial0");
        for c in b"hello\n" {
            b.write_byte(*c);
        }
        assert!(b.flush(Duration::from_secs(5)));
        drop(b);
        assert_eq!(std::fs::read(&p).unwrap(), b"hello\n", "truncated, as QEMU's file backend");
        let b = CharBackend::file("serial0", &p, true).unwrap();
        b.write_byte(b'x');
        drop(b);
        assert_eq!(std::fs::read(&p).unwrap(), b"hello\nx", "append=on appends; drop drains");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn unopenable_file_is_a_clear_error() {
        let e = CharBackend::file("serial0", Path::new("/nonexistent-dir/x.log"), false).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("serial0") && s.contains("/nonexistent-dir/x.log"), "{s}");
    }

    /// A sink that blocks forever (a pty nobody reads): output is dropped and counted, the
    /// caller never blocks.
    #[test]
    fn full_queue_drops_without_blocking() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(false).unwrap();
        // Fill the socket buffer so the writer thread blocks in write.
        let b = CharBackend::from_parts("serial1", "test", Some(Box::new(a)), None).unwrap();
        let t = Instant::now();
        let total = OUTPUT_QUEUE_BYTES * 16;
        for i in 0..total {
            b.write_byte(i as u8);
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never blocks");
        assert!(b.dropped() > 0, "bytes beyond the bound are dropped");
        assert!(b.dropped() <= total as u64);
        // Dropping gives up after DRAIN_TIMEOUT instead of hanging.
        let t = Instant::now();
        drop(b);
        assert!(t.elapsed() < DRAIN_TIMEOUT + Duration::from_secs(2));
    }

    #[test]
    fn failed_sink_counts_drops() {
        let (a, b_end) = UnixStream::pair().unwrap();
        drop(b_end);
        let b = CharBackend::from_parts("serial2", "test", Some(Box::new(a)), None).unwrap();
        b.write_byte(b'a');
        let t = Instant::now();
        while b.dropped() == 0 && t.elapsed() < Duration::from_secs(5) {
            b.write_byte(b'b');
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(b.dropped() > 0, "a broken pipe stops output and counts the rest");
    }

    #[test]
    fn pty_backend_is_raw_and_round_trips() {
        let mut b = CharBackend::pty("serial0").unwrap();
        let path = b.pty_path().unwrap().to_string();
        assert!(path.starts_with("/dev/pts/"), "{path}");
        assert!(b.filename().starts_with("pty:/dev/pts/"));
        // A client (xl console) opens the slave: it sees guest output unmodified (raw mode).
        let mut client = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for c in b"a\nb" {
            b.write_byte(*c);
        }
        let mut got = [0u8; 3];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"a\nb", "no \\n -> \\r\\n translation");
        // What the client types reaches the input queue, and nothing is echoed back.
        let q = Arc::new(InputQueue::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let input = b.take_input().unwrap();
        let _h = spawn_reader(
            "serial0",
            input,
            q.clone(),
            Box::new(move || {
                let _ = tx.send(());
                true
            }),
        )
        .unwrap();
        client.write_all(b"ls\r").unwrap();
        let mut seen = Vec::new();
        let t = Instant::now();
        while seen.len() < 3 && t.elapsed() < Duration::from_secs(5) {
            let _ = rx.recv_timeout(Duration::from_millis(100));
            seen.extend(q.take(16));
        }
        assert_eq!(seen, b"ls\r", "input passes raw (no CR->LF)");
        q.close();
    }

    #[test]
    fn input_queue_is_bounded_and_closable() {
        let q = Arc::new(InputQueue::default());
        assert!(q.push(&[1u8; INPUT_QUEUE_BYTES]));
        assert_eq!(q.pending(), INPUT_QUEUE_BYTES);
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.push(&[2u8; 10]));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "a full queue makes the reader wait");
        assert_eq!(q.take(10), vec![1u8; 10]);
        assert!(h.join().unwrap());
        assert_eq!(q.pending(), INPUT_QUEUE_BYTES);
        let q3 = q.clone();
        let h = std::thread::spawn(move || q3.push(&[3u8; 10]));
        q.close();
        assert!(!h.join().unwrap(), "closing releases a waiting reader");
    }

    #[test]
    fn open_from_the_command_line_config() {
        use crate::cmdline::chardev::ChardevOrigin;
        let cd = |backend| Chardev {
            id: "serial0".into(),
            backend,
            mux: false,
            origin: ChardevOrigin::Serial(0),
            props: Vec::new(),
        };
        let b = CharBackend::open(&cd(ChardevBackend::Null), true).unwrap();
        assert_eq!((b.filename(), b.has_input()), ("null", false));
        b.write_byte(b'x');
        assert_eq!(b.dropped(), 0, "null discards without counting");
        let b = CharBackend::open(&cd(ChardevBackend::Other { backend: "vc".into() }), true).unwrap();
        assert_eq!(b.filename(), "vc", "unsupported backends discard output");
        let p = tmp("open");
        let b = CharBackend::open(&cd(ChardevBackend::File { path: p.clone(), append: false }), true).unwrap();
        assert_eq!(b.filename(), format!("file:{}", p.display()));
        drop(b);
        let b = CharBackend::open(&cd(ChardevBackend::Pty), true).unwrap();
        assert!(b.pty_path().is_some() && b.has_input());
        let mut m = cd(ChardevBackend::Stdio);
        m.mux = true;
        assert!(!CharBackend::open(&m, true).unwrap().has_input(), "a muxed stdio leaves stdin to the monitor");
        assert!(!CharBackend::open(&cd(ChardevBackend::Stdio), false).unwrap().has_input());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn describe_matches_qemu_style() {
        use crate::cmdline::chardev::{ChardevOrigin, SocketChardev};
        let cd = Chardev {
            id: "libxl-cmd".into(),
            backend: ChardevBackend::Socket(SocketChardev {
                addr: SocketAddr::Unix("/run/q.sock".into()),
                server: true,
                wait: false,
                telnet: false,
            }),
            mux: false,
            origin: ChardevOrigin::Chardev,
            props: Vec::new(),
        };
        assert_eq!(describe(&cd), "unix:/run/q.sock,server=on");
    }
}
