//! The tracefs side: find tracefs, create aerd's own instance with `ras:aer_event` enabled,
//! and read its text `trace_pipe`.
//!
//! The instance is left in place when aerd exits: the kernel keeps recording into it, so the
//! events that happen while aerd restarts are read by the next aerd (up to the instance's
//! buffer size; an overrun shows up as `[LOST n EVENTS]`, which aerd logs).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use thiserror::Error;

use super::format::{AerLayout, AerPrintFormat, EventFormat, FormatError};

/// Where the event lives below tracefs (and below an instance).
pub const EVENT_DIR: &str = "events/ras/aer_event";

/// Why the tracepoint cannot be used.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// No tracefs found.
    #[error("no tracefs (tried {0})")]
    NoTracefs(String),
    /// The kernel has no `ras:aer_event` (CONFIG_PCIEAER / CONFIG_RAS off).
    #[error("{0} does not exist (kernel without the ras:aer_event tracepoint?)")]
    NoTracepoint(PathBuf),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The format file is not usable.
    #[error("{path}: {source}")]
    Format {
        /// The format file.
        path: PathBuf,
        /// Why.
        source: FormatError,
    },
}

/// Finds tracefs: `explicit` if given; else `/sys/kernel/tracing` when populated; else a
/// tracefs mount point from `/proc/mounts`; else `/sys/kernel/debug/tracing`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, TracefsError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let std_path = Path::new("/sys/kernel/tracing");
    if std_path.join("events").is_dir() {
        return Ok(std_path.to_path_buf());
    }
    if let Ok(m) = std::fs::read_to_string("/proc/mounts") {
        for line in m.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let (Some(dir), Some(&"tracefs")) = (w.get(1), w.get(2)) {
                return Ok(PathBuf::from(dir));
            }
        }
    }
    let dbg = Path::new("/sys/kernel/debug/tracing");
    if dbg.join("events").is_dir() {
        return Ok(dbg.to_path_buf());
    }
    Err(TracefsError::NoTracefs("/sys/kernel/tracing, /proc/mounts, /sys/kernel/debug/tracing".into()))
}

/// aerd's tracefs instance, set up.
#[derive(Debug)]
pub struct Instance {
    /// `<tracefs>/instances/<name>`.
    pub dir: PathBuf,
    /// The parsed format file.
    pub format: EventFormat,
    /// The record layout.
    pub layout: AerLayout,
    /// The text decoder.
    pub decoder: AerPrintFormat,
}

fn write_file(path: &Path, v: &str) -> Result<(), TracefsError> {
    std::fs::write(path, v).map_err(|source| TracefsError::Io { what: "writing", path: path.to_path_buf(), source })
}

/// Creates (or reuses) `instances/<name>` under `root`, parses the event's format, enables it
/// in the instance and turns the instance's tracing on. `buffer_kb` sets the instance's
/// per-CPU buffer.
pub fn setup(root: &Path, name: &str, buffer_kb: Option<u32>) -> Result<Instance, TracefsError> {
    let global = root.join(EVENT_DIR).join("format");
    if !global.exists() {
        return Err(TracefsError::NoTracepoint(global));
    }
    let dir = root.join("instances").join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => return Err(TracefsError::Io { what: "creating", path: dir, source }),
    }
    let inst_format = dir.join(EVENT_DIR).join("format");
    let fpath = if inst_format.exists() { inst_format } else { global };
    let text = std::fs::read_to_string(&fpath).map_err(|source| TracefsError::Io {
        what: "reading",
        path: fpath.clone(),
        source,
    })?;
    let format = EventFormat::parse(&text).map_err(|source| TracefsError::Format { path: fpath.clone(), source })?;
    let layout =
        AerLayout::from_format(&format).map_err(|source| TracefsError::Format { path: fpath.clone(), source })?;
    let decoder =
        AerPrintFormat::from_format(&format).map_err(|source| TracefsError::Format { path: fpath.clone(), source })?;
    if let Some(kb) = buffer_kb {
        let p = dir.join("buffer_size_kb");
        if let Err(e) = write_file(&p, &kb.to_string()) {
            log::warn!("{e}; keeping the instance's buffer size");
        }
    }
    write_file(&dir.join(EVENT_DIR).join("enable"), "1")?;
    let on = dir.join("tracing_on");
    if on.exists() {
        write_file(&on, "1")?;
    }
    Ok(Instance { dir, format, layout, decoder })
}

/// The instance's `trace_pipe`, opened non-blocking (read with [`LineReader`]).
pub fn open_pipe(inst: &Instance) -> Result<File, TracefsError> {
    let p = inst.dir.join("trace_pipe");
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&p)
        .map_err(|source| TracefsError::Io { what: "opening", path: p, source })
}

/// Longest line kept (longer ones are dropped up to the next newline).
pub const MAX_LINE: usize = 4096;

/// Cuts a non-blocking pipe into lines with bounded memory.
#[derive(Debug)]
pub struct LineReader {
    file: File,
    buf: Vec<u8>,
    discarding: bool,
}

/// What one [`LineReader::read`] produced.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Complete lines.
    pub lines: Vec<String>,
    /// Overlong lines dropped.
    pub dropped: u64,
    /// End of file (a FIFO without writer).
    pub eof: bool,
}

impl LineReader {
    /// Wraps an opened pipe.
    pub fn new(file: File) -> Self {
        Self { file, buf: Vec::with_capacity(MAX_LINE), discarding: false }
    }

    /// Waits up to `timeout` for data, then reads what is there (at most `max_lines` lines).
    pub fn read(&mut self, timeout: std::time::Duration, max_lines: usize) -> std::io::Result<Chunk> {
        let mut out = Chunk::default();
        {
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(timeout).unwrap_or(PollTimeout::NONE)) {
                Ok(0) => return Ok(out),
                Ok(_) => {}
                Err(nix::Error::EINTR) => return Ok(out),
                Err(e) => return Err(std::io::Error::from(e)),
            }
        }
        let mut tmp = [0u8; 16384];
        while out.lines.len() < max_lines {
            let n = match self.file.read(&mut tmp) {
                Ok(0) => {
                    out.eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for &b in tmp.get(..n).unwrap_or_default() {
                if b == b'\n' {
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        out.lines.push(String::from_utf8_lossy(&self.buf).into_owned());
                    }
                    self.buf.clear();
                } else if !self.discarding {
                    if self.buf.len() >= MAX_LINE {
                        self.buf.clear();
                        self.discarding = true;
                        out.dropped += 1;
                    } else {
                        self.buf.push(b);
                    }
                }
            }
        }
        Ok(out)
    }
}
