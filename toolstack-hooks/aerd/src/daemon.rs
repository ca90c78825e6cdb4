//! The daemon: a source thread (tracefs `trace_pipe`, or the sysfs poller), a watch thread, and
//! the main thread that decodes, finds owners and forwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use q35dm::aer_inbox::record::{self, HostAerEvent};
use q35dm::pci::Sbdf;
use q35dm::xenstore::{WatchEvent, Xenstore};
use thiserror::Error;
use xen_bindings::sys::XenSys;

use super::format::AerPrintFormat;
use super::forward::{ForwardStats, Forwarder};
use super::owners::{self, Owners, LIBXL_PCI};
use super::sysfs::SysfsPoller;
use super::trace::TraceLine;
use super::tracefs::{self, LineReader};

/// Configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// tracefs mount (`None`: find it).
    pub tracefs: Option<PathBuf>,
    /// sysfs root (normally `/sys`).
    pub sysfs: PathBuf,
    /// Name of aerd's tracefs instance.
    pub instance: String,
    /// Per-CPU buffer of the instance (KiB); `None` leaves the kernel's default.
    pub buffer_kb: Option<u32>,
    /// Poll interval of the sysfs fallback, and the retry tick.
    pub poll_interval: Duration,
    /// Records allowed in one inbox before aerd collapses further events.
    pub queue_limit: u64,
    /// Skip tracefs, poll sysfs.
    pub force_sysfs: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tracefs: None,
            sysfs: PathBuf::from("/sys"),
            instance: "q35dm-aerd".into(),
            buffer_kb: Some(1024),
            poll_interval: Duration::from_secs(1),
            queue_limit: 256,
            force_sysfs: false,
        }
    }
}

/// Which source is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The tracepoint.
    Tracefs,
    /// The sysfs counters.
    Sysfs,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AerdStats {
    /// trace_pipe lines read.
    pub lines: u64,
    /// AER events decoded (or counter increments, for sysfs).
    pub events: u64,
    /// Lines that could not be decoded.
    pub undecodable: u64,
    /// Events the kernel reported lost.
    pub lost: u64,
    /// Events of functions no guest owns.
    pub unassigned: u64,
    /// Forwarding counters.
    pub forward: ForwardStats,
}

/// Start-up failures.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// A thread could not be started.
    #[error("starting the {what} thread: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The xenstore watch could not be set.
    #[error("watching {path}: {source}")]
    Watch {
        /// The path.
        path: String,
        /// Why.
        source: q35dm::xenstore::XsError,
    },
}

enum Msg {
    Lines(Vec<String>, u64),
    Counters(Vec<HostAerEvent>),
    Watch(WatchEvent),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running daemon.
pub struct DaemonHandle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Mutex<AerdStats>>,
    source: Source,
}

impl std::fmt::Debug for DaemonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DaemonHandle({:?})", self.source)
    }
}

impl DaemonHandle {
    /// The source in use.
    pub fn source(&self) -> Source {
        self.source
    }
    /// A snapshot of the counters.
    pub fn stats(&self) -> AerdStats {
        *lock(&self.stats)
    }
    /// Stops every thread (the tracefs instance stays, see [`super::tracefs`]).
    pub fn stop(mut self) {
        self.shutdown();
    }
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the daemon. `sys` is the event-channel handle (`None`: no notifications).
pub fn start(cfg: Config, xs: Arc<Xenstore>, sys: Option<Arc<dyn XenSys>>) -> Result<DaemonHandle, DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(AerdStats::default()));
    let (tx, rx) = mpsc::sync_channel::<Msg>(64);
    let mut threads = Vec::new();

    // Watches: libxl's assignments, and each inbox's epoch (added as domains appear).
    let (wtx, wrx) = mpsc::channel::<WatchEvent>();
    xs.watch_with(LIBXL_PCI, "aerd-libxl", wtx.clone())
        .map_err(|source| DaemonError::Watch { path: LIBXL_PCI.into(), source })?;
    {
        let tx = tx.clone();
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("aerd-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        match wrx.recv_timeout(Duration::from_millis(200)) {
                            Ok(ev) => {
                                if tx.send(Msg::Watch(ev)).is_err() {
                                    return;
                                }
                            }
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .map_err(|source| DaemonError::Thread { what: "watch", source })?,
        );
    }

    // Source.
    let mut decoder = None;
    let source = if cfg.force_sysfs {
        log::warn!("sysfs polling requested: AER counters of assigned functions every {:?}", cfg.poll_interval);
        Source::Sysfs
    } else {
        match tracefs::locate(cfg.tracefs.as_deref()).and_then(|root| {
            let inst = tracefs::setup(&root, &cfg.instance, cfg.buffer_kb)?;
            let pipe = tracefs::open_pipe(&inst)?;
            Ok((inst, pipe))
        }) {
            Ok((inst, pipe)) => {
                log::info!(
                    "listening to ras:aer_event (ID {}, fields {:?}) in {}",
                    inst.layout.id,
                    inst.format.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                    inst.dir.display()
                );
                decoder = Some(inst.decoder);
                let tx = tx.clone();
                let stop = stop.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("aerd-trace".into())
                        .spawn(move || trace_reader(LineReader::new(pipe), &tx, &stop))
                        .map_err(|source| DaemonError::Thread { what: "trace", source })?,
                );
                Source::Tracefs
            }
            Err(e) => {
                log::warn!(
                    "host AER tracepoint unusable ({e}); falling back to polling the sysfs AER counters of \
                     assigned functions every {:?} (no TLP headers)",
                    cfg.poll_interval
                );
                Source::Sysfs
            }
        }
    };
    if source == Source::Sysfs {
        let tx = tx.clone();
        let stop = stop.clone();
        let xs = xs.clone();
        let mut poller = SysfsPoller::new(&cfg.sysfs);
        let every = cfg.poll_interval;
        threads.push(
            std::thread::Builder::new()
                .name("aerd-sysfs".into())
                .spawn(move || sysfs_poller(&mut poller, &xs, &tx, &stop, every))
                .map_err(|source| DaemonError::Thread { what: "sysfs", source })?,
        );
    }
    drop(tx);

    let mut main = Main {
        xs: xs.clone(),
        fwd: Forwarder::new(xs, sys, cfg.queue_limit),
        owners: Owners::new(Duration::from_secs(5)),
        decoder,
        stats: stats.clone(),
        watched: BTreeSet::new(),
        wtx,
        tick: cfg.poll_interval,
    };
    main.startup();
    {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("aerd-main".into())
                .spawn(move || main.run(&rx, &stop))
                .map_err(|source| DaemonError::Thread { what: "main", source })?,
        );
    }
    Ok(DaemonHandle { stop, threads, stats, source })
}

fn trace_reader(mut r: LineReader, tx: &SyncSender<Msg>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match r.read(Duration::from_millis(200), 4096) {
            Ok(chunk) => {
                if chunk.eof {
                    // A FIFO without writer (tests); the real trace_pipe never ends.
                    std::thread::sleep(Duration::from_millis(20));
                }
                if (!chunk.lines.is_empty() || chunk.dropped > 0)
                    && tx.send(Msg::Lines(chunk.lines, chunk.dropped)).is_err()
                {
                    return;
                }
            }
            Err(e) => {
                q35dm::guest_warn!("reading trace_pipe: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn sysfs_poller(p: &mut SysfsPoller, xs: &Xenstore, tx: &SyncSender<Msg>, stop: &AtomicBool, every: Duration) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50).min(every));
            continue;
        }
        next = Instant::now() + every;
        let functions: Vec<Sbdf> = match owners::assigned(xs) {
            Ok(v) => v.into_iter().map(|(s, _)| s).collect(),
            Err(e) => {
                q35dm::guest_warn!("listing assigned functions: {e}");
                continue;
            }
        };
        let (events, errors) = p.poll(&functions);
        for e in errors {
            // No such file: the function has no AER capability (the attributes are only
            // visible with one) or is gone; nothing to poll there.
            let super::sysfs::SysfsError::Io { source, .. } = &e;
            if source.kind() != std::io::ErrorKind::NotFound {
                q35dm::guest_warn!("{e}");
            }
        }
        let now = record::now_ns();
        let evs: Vec<HostAerEvent> = events
            .into_iter()
            .map(|c| HostAerEvent {
                host: c.sbdf,
                severity: c.severity,
                status: c.status,
                header: None,
                count: u32::try_from(c.count).unwrap_or(u32::MAX),
                time_ns: now,
            })
            .collect();
        if !evs.is_empty() && tx.send(Msg::Counters(evs)).is_err() {
            return;
        }
    }
}

struct Main {
    xs: Arc<Xenstore>,
    fwd: Forwarder,
    owners: Owners,
    decoder: Option<AerPrintFormat>,
    stats: Arc<Mutex<AerdStats>>,
    watched: BTreeSet<u16>,
    wtx: mpsc::Sender<WatchEvent>,
    tick: Duration,
}

impl Main {
    /// Watches the inboxes of the domains that have functions, and kicks those with records
    /// waiting (a previous aerd may have died between writing and notifying).
    fn startup(&mut self) {
        let doms: BTreeSet<u16> = match owners::assigned(&self.xs) {
            Ok(v) => v.into_iter().map(|(_, d)| d).collect(),
            Err(e) => {
                log::warn!("listing assigned functions: {e}");
                BTreeSet::new()
            }
        };
        for d in doms {
            self.watch_domain(d);
            if self.fwd.has_pending(d) {
                self.fwd.notify(d);
            }
        }
    }

    fn watch_domain(&mut self, d: u16) {
        if self.watched.contains(&d) {
            return;
        }
        let path = record::epoch_path(d);
        match self.xs.watch_with(&path, &format!("aerd-epoch-{d}"), self.wtx.clone()) {
            Ok(()) => {
                self.watched.insert(d);
            }
            Err(e) => q35dm::guest_warn!("watching {path}: {e}"),
        }
    }

    fn run(&mut self, rx: &Receiver<Msg>, stop: &AtomicBool) {
        let mut last_tick = Instant::now();
        while !stop.load(Ordering::Acquire) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Lines(lines, dropped)) => self.lines(lines, dropped),
                Ok(Msg::Counters(evs)) => {
                    lock(&self.stats).events += evs.len() as u64;
                    self.forward(evs);
                }
                Ok(Msg::Watch(ev)) => self.watch_event(&ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(100)),
            }
            if last_tick.elapsed() >= self.tick {
                last_tick = Instant::now();
                self.retry();
            }
            lock(&self.stats).forward = self.fwd.stats();
        }
        // What the source already read is written before exiting.
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Lines(lines, dropped) => self.lines(lines, dropped),
                Msg::Counters(evs) => self.forward(evs),
                Msg::Watch(_) => {}
            }
        }
        lock(&self.stats).forward = self.fwd.stats();
    }

    fn lines(&mut self, lines: Vec<String>, dropped: u64) {
        let Some(dec) = &self.decoder else { return };
        let now = record::now_ns();
        let mut evs = Vec::new();
        let (mut bad, mut lost, mut n) = (dropped, 0u64, 0u64);
        for l in &lines {
            match dec.decode_line(l) {
                Ok(TraceLine::Event(e)) => {
                    n += 1;
                    evs.push(HostAerEvent {
                        host: e.sbdf,
                        severity: e.severity,
                        status: e.status,
                        header: e.header,
                        count: 1,
                        time_ns: now,
                    });
                }
                Ok(TraceLine::Lost { cpu, count }) => {
                    lost += count;
                    q35dm::guest_warn!(
                        "the kernel lost {count} trace events on CPU {cpu} (aerd's instance buffer overran)"
                    );
                }
                Ok(TraceLine::Blank) => {}
                Err(e) => {
                    bad += 1;
                    q35dm::guest_warn!(
                        "trace_pipe line not decoded ({e}): {:?}",
                        l.chars().take(160).collect::<String>()
                    );
                }
            }
        }
        {
            let mut st = lock(&self.stats);
            st.lines += lines.len() as u64;
            st.events += n;
            st.undecodable += bad;
            st.lost += lost;
        }
        self.forward(evs);
    }

    fn forward(&mut self, evs: Vec<HostAerEvent>) {
        let mut by_dom: BTreeMap<u16, Vec<HostAerEvent>> = BTreeMap::new();
        for e in evs {
            match self.owners.owner(&self.xs, e.host) {
                Ok(Some(d)) => by_dom.entry(d).or_default().push(e),
                Ok(None) => {
                    lock(&self.stats).unassigned += u64::from(e.count);
                    q35dm::guest_warn!(
                        "host AER {} {} status {:#010x} on {}: not assigned to any guest (no {}); ignored",
                        e.severity.name(),
                        if e.header.is_some() { "with header" } else { "without header" },
                        e.status,
                        e.host,
                        record::libxl_owner_path(e.host)
                    );
                }
                Err(err) => {
                    q35dm::guest_warn!("owner of {}: {err}; event dropped", e.host);
                }
            }
        }
        for (d, evs) in by_dom {
            self.watch_domain(d);
            if let Err(e) = self.fwd.deliver(d, evs) {
                q35dm::guest_warn!("{e}; retrying");
            }
        }
    }

    fn watch_event(&mut self, ev: &WatchEvent) {
        if ev.token == "aerd-libxl" {
            self.owners.invalidate();
            return;
        }
        let Some(d) = ev.token.strip_prefix("aerd-epoch-").and_then(|d| d.parse::<u16>().ok()) else { return };
        // q35dm (re)started or went away: re-bind and kick it if records wait.
        if self.fwd.has_pending(d) || self.fwd.held(d) > 0 {
            let _ = self.fwd.flush(d);
            self.fwd.notify(d);
        }
    }

    fn retry(&mut self) {
        for d in self.fwd.held_domains() {
            let alive = match self.xs.read(&format!("/local/domain/{d}")) {
                Ok(_) => true,
                Err(e) => !e.is_enoent(),
            };
            if !alive {
                log::info!("domain {d} is gone; dropping its held AER events");
                self.fwd.forget(d);
                let _ = self.xs.unwatch(&record::epoch_path(d), &format!("aerd-epoch-{d}"));
                self.watched.remove(&d);
                continue;
            }
            if let Err(e) = self.fwd.flush(d) {
                q35dm::guest_warn!("{e}; retrying");
            }
        }
    }
}
