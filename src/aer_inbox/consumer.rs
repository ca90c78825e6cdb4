//! The inbox thread: waits for aerd's notification (or the rescan timer), consumes the queue in
//! sequence order, injects on the loop thread, acknowledges, and emits storm summaries. Also
//! owns the reset hook (guest SBR / FLR → host reset) and its ownership cache.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use xen_bindings::sys::XenSys;

use crate::logging::RateLimit;
use crate::machine::Machine;
use crate::pci::config::ResetKind;
use crate::pci::topology::NodeId;
use crate::pci::Sbdf;
use crate::runtime::LoopHandle;
use crate::xenstore::{Access, Permissions, Xenstore, XsError};

use super::record::{self, AerRecord, HostAerEvent, HostSeverity};
use super::storm::{StormLimiter, Summary, Verdict};
use super::translate::{self, GuestTarget, HostFunctionMap, Translated};
use super::{InboxConfig, InboxError};

/// How often the inbox thread wakes without events (storm summaries).
const TICK: Duration = Duration::from_millis(250);
/// How often the ownership cache is refreshed.
const OWNERS_REFRESH: Duration = Duration::from_secs(5);

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Records consumed (acknowledged), including refused ones.
    pub records: u64,
    /// Host events those records stood for (sum of `count`).
    pub host_events: u64,
    /// Records injected into the guest.
    pub injected: u64,
    /// Guest errors injected (one per status bit).
    pub errors_injected: u64,
    /// Host events collapsed by storm control (not individually injected).
    pub collapsed: u64,
    /// Storm summaries emitted.
    pub summaries: u64,
    /// Records for host functions this guest does not have.
    pub unassigned: u64,
    /// Records that could not be parsed (removed).
    pub malformed: u64,
    /// Records at or below `ack` found again (removed, not injected).
    pub duplicates: u64,
    /// Errors logged against configuration requests (not forwarded).
    pub config_tlps: u64,
    /// Injections the board refused (function unreachable, no AER capability, ...).
    pub failed: u64,
    /// Event-channel notifications received.
    pub notifications: u64,
    /// Highest sequence number consumed.
    pub last_seq: u64,
    /// Records seen out of sequence order (must stay 0).
    pub order_violations: u64,
    /// Host resets done for guest resets.
    pub host_resets: u64,
    /// Host resets refused (function not owned by this domain) or failed.
    pub host_resets_refused: u64,
}

type SharedMap = Arc<Mutex<Box<dyn HostFunctionMap>>>;
type Owners = Arc<Mutex<BTreeMap<Sbdf, Option<u32>>>>;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running inbox. Dropping it stops the thread, withdraws `aer/port` and `aer/epoch` (the
/// queue stays for the next device model), removes the reset hook and closes the port.
pub struct Handle {
    domid: u16,
    port: u32,
    epoch: String,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<InboxStats>>,
    xs: Arc<Xenstore>,
    sys: Arc<dyn XenSys>,
    loop_handle: LoopHandle<Machine>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "aer_inbox::Handle(dom{}, port {}, epoch {})", self.domid, self.port, self.epoch)
    }
}

impl Handle {
    /// The dom0 event-channel port published in `aer/port`.
    pub fn port(&self) -> u32 {
        self.port
    }
    /// The epoch published in `aer/epoch`.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }
    /// A snapshot of the counters.
    pub fn stats(&self) -> InboxStats {
        *lock(&self.stats)
    }
    /// Stops the inbox (see the type's docs).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Release);
        let _ = (&self.wake).write(&[1]);
        let _ = t.join();
        let (domid, epoch) = (self.domid, self.epoch.clone());
        let withdrawn = self.xs.transaction(|tx| {
            if tx.read(&record::epoch_path(domid)).ok().as_deref() == Some(epoch.as_bytes()) {
                tx.rm(&record::port_path(domid))?;
                tx.rm(&record::epoch_path(domid))?;
            }
            Ok(())
        });
        if let Err(e) = withdrawn {
            log::warn!("AER inbox of domain {domid}: withdrawing {}: {e}", record::port_path(domid));
        }
        let _ = self.loop_handle.call(|m, _| m.set_reset_hook(None));
        if let Err(e) = self.sys.evtchn_unbind(self.port) {
            log::debug!("AER inbox of domain {domid}: {e}");
        }
        log::info!("AER inbox of domain {domid} stopped");
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn new_epoch() -> String {
    format!("{:x}-{:x}", std::process::id(), record::now_ns())
}

/// See [`super::start_with`].
pub(super) fn start(
    xs: Arc<Xenstore>,
    sys: Arc<dyn XenSys>,
    domid: u16,
    loop_handle: LoopHandle<Machine>,
    map: Box<dyn HostFunctionMap>,
    cfg: InboxConfig,
) -> Result<Handle, InboxError> {
    let port = sys.evtchn_bind_unbound_port(0).map_err(|source| InboxError::Evtchn { domid, source })?;
    let epoch = new_epoch();
    let dir = record::inbox_dir(domid);
    let published = xs.transaction(|tx| {
        tx.mkdir(&dir)?;
        // dom0 only: the guest (or anyone else) may neither read nor write the inbox.
        tx.set_perms(&dir, &Permissions::new(0, Access::None))?;
        tx.write(&record::version_path(domid), record::SCHEMA_VERSION)?;
        tx.write(&record::port_path(domid), port.to_string())?;
        tx.write(&record::epoch_path(domid), &epoch)?;
        Ok(())
    });
    if let Err(source) = published {
        let _ = sys.evtchn_unbind(port);
        return Err(InboxError::Xenstore { domid, path: dir, source });
    }
    let map: SharedMap = Arc::new(Mutex::new(map));
    let owners: Owners = Arc::new(Mutex::new(BTreeMap::new()));
    let stats = Arc::new(Mutex::new(InboxStats::default()));
    refresh_owners(&xs, &loop_handle, &map, &owners);
    let hook = reset_hook(domid, map.clone(), owners.clone(), stats.clone());
    if loop_handle.call(move |m, _| m.set_reset_hook(Some(hook))).is_err() {
        let _ = sys.evtchn_unbind(port);
        return Err(InboxError::LoopGone(domid));
    }
    let (wake_rx, wake) = UnixStream::pair().map_err(|source| InboxError::Thread { domid, source })?;
    let _ = wake_rx.set_nonblocking(true);
    let stop = Arc::new(AtomicBool::new(false));
    let mut inbox = Inbox {
        domid,
        cfg,
        xs: xs.clone(),
        sys: sys.clone(),
        port,
        loop_handle: loop_handle.clone(),
        map,
        owners,
        stats: stats.clone(),
        limiter: StormLimiter::new(cfg.storm),
        wake_rx,
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("q35dm-aer-inbox-{domid}"))
        .spawn(move || inbox.run())
        .map_err(|source| InboxError::Thread { domid, source })?;
    log::info!("AER inbox of domain {domid} on dom0 event-channel port {port} (epoch {epoch}) at {dir}");
    Ok(Handle { domid, port, epoch, stop, wake, thread: Some(thread), stats, xs, sys, loop_handle })
}

fn refresh_owners(xs: &Xenstore, loop_handle: &LoopHandle<Machine>, map: &SharedMap, owners: &Owners) {
    let m2 = map.clone();
    let Ok(hosts) = loop_handle.call(move |m, _| lock(&m2).host_functions(m)) else { return };
    let mut fresh = BTreeMap::new();
    for h in hosts {
        let owner = match xs.read_string(&record::libxl_owner_path(h)) {
            Ok(s) => s.trim().parse::<u32>().ok(),
            Err(e) if e.is_enoent() => None,
            Err(e) => {
                crate::guest_warn!("AER inbox: reading {}: {e}", record::libxl_owner_path(h));
                // Keep what we knew.
                lock(owners).get(&h).copied().flatten()
            }
        };
        fresh.insert(h, owner);
    }
    *lock(owners) = fresh;
}

/// The hook the board calls for every guest SBR / FLR of a function (loop thread).
fn reset_hook(domid: u16, map: SharedMap, owners: Owners, stats: Arc<Mutex<InboxStats>>) -> crate::machine::ResetHook {
    Box::new(move |machine: &mut Machine, node: NodeId, kind: ResetKind| {
        let mut m = lock(&map);
        let Some(host) = m.host_function_of(machine, node) else { return };
        let owner = lock(&owners).get(&host).copied().flatten();
        if owner != Some(u32::from(domid)) {
            lock(&stats).host_resets_refused += 1;
            crate::guest_warn!(
                "guest {kind:?} of {node}: host function {host} is owned by {} per /libxl/pci, not domain {domid}; \
                 host not reset",
                owner.map_or_else(|| "no domain".to_string(), |d| format!("domain {d}"))
            );
            return;
        }
        match m.reset_host_function(machine, host) {
            Ok(()) => {
                lock(&stats).host_resets += 1;
                log::info!("guest {kind:?} of {node}: host function {host} reset");
            }
            Err(e) => {
                lock(&stats).host_resets_refused += 1;
                crate::guest_error!("guest {kind:?} of {node}: {e}");
            }
        }
    })
}

struct Inbox {
    domid: u16,
    cfg: InboxConfig,
    xs: Arc<Xenstore>,
    sys: Arc<dyn XenSys>,
    port: u32,
    loop_handle: LoopHandle<Machine>,
    map: SharedMap,
    owners: Owners,
    stats: Arc<Mutex<InboxStats>>,
    limiter: StormLimiter,
    wake_rx: UnixStream,
    stop: Arc<AtomicBool>,
}

static INJECT_LOG: RateLimit = RateLimit::new();

impl Inbox {
    fn run(&mut self) {
        let mut last_scan: Option<Instant> = None;
        let mut last_owners = Instant::now();
        let mut pending_ports = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let (ev, _) = self.wait();
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let mut notified = false;
            if ev {
                pending_ports.clear();
                if let Err(e) = self.sys.evtchn_pending(&mut pending_ports) {
                    crate::guest_warn!("AER inbox of domain {}: {e}", self.domid);
                    let _ = self.sys.evtchn_reset();
                }
                for p in &pending_ports {
                    let _ = self.sys.evtchn_unmask(*p);
                    notified |= *p == self.port;
                }
                if notified {
                    lock(&self.stats).notifications += 1;
                }
            }
            let now = Instant::now();
            if notified || last_scan.is_none_or(|t| now.duration_since(t) >= self.cfg.scan_interval) {
                last_scan = Some(now);
                // Drain: batches until the queue is empty (or trouble).
                for _ in 0..1024 {
                    match self.scan() {
                        Ok(true) if !self.stop.load(Ordering::Acquire) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            crate::guest_warn!("AER inbox of domain {}: {e}; retrying", self.domid);
                            break;
                        }
                    }
                }
            }
            for s in self.limiter.due(Instant::now()) {
                self.summary(&s);
            }
            if now.duration_since(last_owners) >= OWNERS_REFRESH {
                last_owners = now;
                refresh_owners(&self.xs, &self.loop_handle, &self.map, &self.owners);
            }
        }
    }

    /// Waits for the event channel, the stop pipe or the tick. Returns (event channel ready,
    /// woken).
    fn wait(&self) -> (bool, bool) {
        let fd = self.sys.evtchn_fd();
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN), PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::Error::EINTR {
                crate::guest_warn!("AER inbox: poll: {e}");
                std::thread::sleep(TICK);
            }
            return (false, false);
        }
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let (ev, wk) = (ready(0), ready(1));
        if wk {
            let mut b = [0u8; 16];
            let _ = (&self.wake_rx).read(&mut b);
        }
        (ev, wk)
    }

    /// One batch; `Ok(true)` if more records are waiting.
    fn scan(&mut self) -> Result<bool, ScanError> {
        let d = self.domid;
        let ack = match self.xs.read_string(&record::ack_path(d)) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.is_enoent() => 0,
            Err(e) => return Err(ScanError::Xs(record::ack_path(d), e)),
        };
        let names = match self.xs.directory(&record::queue_dir(d)) {
            Ok(n) => n,
            Err(e) if e.is_enoent() => return Ok(false),
            Err(e) => return Err(ScanError::Xs(record::queue_dir(d), e)),
        };
        // Records at or above `next-seq` were not written by aerd: garbage, never acknowledged
        // (a bogus high sequence number must not make later records look like duplicates).
        // Read after the listing: aerd adds records and advances next-seq in one transaction,
        // so every record listed is below the value read now.
        let next_seq = match self.xs.read_string(&record::next_seq_path(d)) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(u64::MAX),
            Err(e) if e.is_enoent() => u64::MAX,
            Err(e) => return Err(ScanError::Xs(record::next_seq_path(d), e)),
        };
        let mut garbage = Vec::new();
        let mut seqs: Vec<u64> = Vec::with_capacity(names.len());
        for n in names {
            match n.parse::<u64>() {
                Ok(s) if s < next_seq && s > 0 => seqs.push(s),
                _ => garbage.push(n),
            }
        }
        seqs.sort_unstable();
        let more = seqs.len() > self.cfg.max_batch;
        seqs.truncate(self.cfg.max_batch);
        let mut done: Vec<u64> = Vec::with_capacity(seqs.len());
        let mut records = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if seq <= ack {
                lock(&self.stats).duplicates += 1;
                done.push(seq);
                continue;
            }
            match self.xs.read(&record::record_path(d, seq)) {
                Ok(raw) => match AerRecord::parse(seq, &raw) {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        crate::guest_warn!("AER inbox of domain {d}: {}: {e}; dropped", record::record_path(d, seq));
                        lock(&self.stats).malformed += 1;
                        done.push(seq);
                    }
                },
                Err(e) if e.is_enoent() => {}
                Err(e) => return Err(ScanError::Xs(record::record_path(d, seq), e)),
            }
        }
        // Where each host function is in the guest (looked up on the loop thread).
        let hosts: BTreeSet<Sbdf> = records.iter().map(|r| r.event.host).collect();
        let targets = self.targets(hosts)?;
        let now = Instant::now();
        let mut jobs: Vec<(u64, GuestTarget, HostAerEvent)> = Vec::new();
        {
            let mut st = lock(&self.stats);
            for r in &records {
                if r.seq <= st.last_seq {
                    st.order_violations += 1;
                }
                st.last_seq = st.last_seq.max(r.seq);
                st.records += 1;
                st.host_events = st.host_events.saturating_add(u64::from(r.event.count));
                done.push(r.seq);
                match targets.get(&r.event.host).cloned().flatten() {
                    None => {
                        st.unassigned += 1;
                        crate::guest_warn!(
                            "AER inbox of domain {d}: record {} for host function {}, which this guest does not \
                             have; dropped",
                            r.seq,
                            r.event.host
                        );
                    }
                    Some(t) => match self.limiter.admit(&r.event, now) {
                        Verdict::Inject => {
                            st.collapsed += u64::from(r.event.count.saturating_sub(1));
                            jobs.push((r.seq, t, r.event));
                        }
                        Verdict::Collapse => st.collapsed += u64::from(r.event.count),
                    },
                }
            }
        }
        if !jobs.is_empty() {
            self.inject(jobs)?;
        }
        for g in garbage {
            let p = format!("{}/{g}", record::queue_dir(d));
            crate::guest_warn!("AER inbox of domain {d}: {p} is not a record; removed");
            lock(&self.stats).malformed += 1;
            let _ = self.xs.rm(&p);
        }
        if let Some(max) = done.iter().copied().max() {
            let path = record::ack_path(d);
            self.xs
                .transaction(|tx| {
                    for s in &done {
                        tx.rm(&record::record_path(d, *s))?;
                    }
                    let cur = tx.read_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
                    tx.write(&path, cur.max(max).to_string())
                })
                .map_err(|e| ScanError::Xs(path, e))?;
        }
        Ok(more)
    }

    fn targets(&self, hosts: BTreeSet<Sbdf>) -> Result<BTreeMap<Sbdf, Option<GuestTarget>>, ScanError> {
        if hosts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let map = self.map.clone();
        self.loop_handle
            .call(move |m, _| {
                let map = lock(&map);
                hosts.into_iter().map(|h| (h, map.guest_target(m, h))).collect()
            })
            .map_err(|_| ScanError::LoopGone)
    }

    fn inject(&self, jobs: Vec<(u64, GuestTarget, HostAerEvent)>) -> Result<(), ScanError> {
        let results = self
            .loop_handle
            .call(move |m, e| {
                jobs.into_iter()
                    .map(|(seq, t, ev)| (seq, ev, translate::inject(m, e.effects_mut(), &t, &ev)))
                    .collect::<Vec<_>>()
            })
            .map_err(|_| ScanError::LoopGone)?;
        let d = self.domid;
        let mut st = lock(&self.stats);
        for (seq, ev, r) in results {
            let latency_ms = record::now_ns().saturating_sub(ev.time_ns) as f64 / 1e6;
            match r {
                Ok(Some(inj)) => {
                    st.injected += 1;
                    st.errors_injected += inj.errors as u64;
                    if let Some(suppressed) = INJECT_LOG.allow() {
                        let hdr = match inj.header {
                            None => "no header".to_string(),
                            Some(Translated::Header(h)) => {
                                format!("header {:08x} {:08x} {:08x} {:08x}", h[0], h[1], h[2], h[3])
                            }
                            Some(Translated::Dropped(why)) => format!("header dropped: {why}"),
                            Some(Translated::ConfigTlp) => "config TLP".to_string(),
                        };
                        log::info!(
                            "host AER #{seq} {} {} status {:#010x} (x{}) -> guest {} ({} error(s), {hdr}{}), \
                             {latency_ms:.1} ms after aerd saw it{}",
                            ev.host,
                            ev.severity.name(),
                            ev.status,
                            ev.count,
                            inj.guest,
                            inj.errors,
                            if inj.ignored_bits != 0 {
                                format!(", host bits {:#x} not modelled", inj.ignored_bits)
                            } else {
                                String::new()
                            },
                            if suppressed > 0 {
                                format!(" [{suppressed} similar lines suppressed]")
                            } else {
                                String::new()
                            }
                        );
                    }
                }
                Ok(None) => {
                    st.config_tlps += 1;
                    crate::guest_warn!(
                        "host AER #{seq} {} status {:#010x}: logged against a configuration request (dom0's); \
                         not forwarded",
                        ev.host,
                        ev.status
                    );
                }
                Err(e) => {
                    st.failed += 1;
                    crate::guest_warn!("host AER #{seq} {} (domain {d}): {e}", ev.host);
                }
            }
        }
        Ok(())
    }

    fn summary(&mut self, s: &Summary) {
        let d = self.domid;
        lock(&self.stats).summaries += 1;
        log::warn!(
            "AER storm on host function {} (domain {d}): {} error(s) collapsed in {} ms (correctable {:#x}, \
             uncorrectable {:#x})",
            s.host,
            s.collapsed,
            s.over.as_millis(),
            s.cor,
            s.uncor
        );
        let Ok(targets) = self.targets(BTreeSet::from([s.host])) else { return };
        let Some(target) = targets.get(&s.host).cloned().flatten() else { return };
        let mut jobs = Vec::new();
        let base = HostAerEvent {
            host: s.host,
            severity: HostSeverity::Correctable,
            status: s.cor,
            header: None,
            count: 1,
            time_ns: record::now_ns(),
        };
        if s.cor != 0 {
            jobs.push((0, target.clone(), base));
        }
        if s.uncor != 0 {
            let sev = s.uncor_severity.unwrap_or(HostSeverity::NonFatal);
            jobs.push((0, target, HostAerEvent { severity: sev, status: s.uncor, ..base }));
        }
        if !jobs.is_empty() {
            if let Err(e) = self.inject(jobs) {
                crate::guest_warn!("AER storm summary for {}: {e}", s.host);
            }
        }
    }
}

/// A scan that must be retried later.
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("{0}: {1}")]
    Xs(String, XsError),
    #[error("the device-model event loop is not running")]
    LoopGone,
}
