//! Writing records into a guest's AER inbox and kicking its event channel.
//!
//! Per domain, events wait in a small held list (identical errors merged, `count` summed;
//! bounded by [`MAX_HELD`]) until a transaction appends them as records: it reads `next-seq`,
//! writes `queue/<seq>` for as many as the queue has room for ([`Forwarder::new`]'s
//! `queue_limit` minus the records not yet acknowledged), and advances `next-seq`. Then aerd
//! notifies the port published in `aer/port`, binding to it first (or again, when `aer/epoch`
//! changed because q35dm restarted). Events stay held while the inbox is missing (q35dm not
//! started yet), full, or xenstore fails, and are retried on the next tick.

use std::collections::BTreeMap;
use std::sync::Arc;

use q35dm::aer_inbox::record::{self, AerRecord, HostAerEvent};
use q35dm::xenstore::{Transaction, Xenstore, XsError};
use thiserror::Error;
use xen_bindings::sys::XenSys;

/// Distinct held events per domain; more are merged into one per (function, severity).
pub const MAX_HELD: usize = 256;

/// A delivery that failed (the events stay held).
#[derive(Debug, Error)]
pub enum ForwardError {
    /// xenstore failed.
    #[error("domain {domid}: {what}: {source}")]
    Xs {
        /// The guest.
        domid: u16,
        /// What was being done.
        what: String,
        /// The client error.
        source: XsError,
    },
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Records written.
    pub records: u64,
    /// Host events in those records (sum of counts).
    pub events: u64,
    /// Notifications sent.
    pub notifies: u64,
    /// Event-channel (re)binds.
    pub binds: u64,
    /// Deliveries deferred because the domain has no inbox yet.
    pub no_inbox: u64,
    /// Deliveries deferred because the queue was full.
    pub queue_full: u64,
    /// Deliveries that failed (xenstore).
    pub errors: u64,
    /// Most events held for one domain at once.
    pub held_max: usize,
    /// Events dropped because the domain is gone.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct Binding {
    epoch: String,
    local: u32,
}

/// The writer.
pub struct Forwarder {
    xs: Arc<Xenstore>,
    sys: Option<Arc<dyn XenSys>>,
    queue_limit: u64,
    held: BTreeMap<u16, Vec<HostAerEvent>>,
    bindings: BTreeMap<u16, Binding>,
    stats: ForwardStats,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forwarder(limit {}, {} domains held)", self.queue_limit, self.held.len())
    }
}

enum Appended {
    Written { first: u64, n: usize },
    NoInbox,
}

fn read_u64(tx: &Transaction<'_>, path: &str) -> Result<Option<u64>, XsError> {
    match tx.read_string(path) {
        Ok(s) => Ok(s.trim().parse::<u64>().ok()),
        Err(e) if e.is_enoent() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds `ev` to `held`, merging it with an identical event (or, when full, with one of the same
/// function and severity).
pub fn hold(held: &mut Vec<HostAerEvent>, ev: HostAerEvent) {
    if let Some(h) = held.iter_mut().find(|h| h.same_error(&ev)) {
        h.count = h.count.saturating_add(ev.count);
        return;
    }
    if held.len() < MAX_HELD {
        held.push(ev);
        return;
    }
    match held.iter_mut().find(|h| h.host == ev.host && h.severity == ev.severity) {
        Some(h) => {
            h.status |= ev.status;
            h.header = None;
            h.count = h.count.saturating_add(ev.count);
        }
        None => {
            if let Some(last) = held.last_mut() {
                // Keep the count at least; the details of this one are lost.
                last.count = last.count.saturating_add(ev.count);
            }
        }
    }
}

impl Forwarder {
    /// A writer; `sys` is the event-channel handle (`None`: no notifications, q35dm's periodic
    /// rescan picks the records up).
    pub fn new(xs: Arc<Xenstore>, sys: Option<Arc<dyn XenSys>>, queue_limit: u64) -> Self {
        Self {
            xs,
            sys,
            queue_limit: queue_limit.max(1),
            held: BTreeMap::new(),
            bindings: BTreeMap::new(),
            stats: ForwardStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// Domains with held events.
    pub fn held_domains(&self) -> Vec<u16> {
        self.held.iter().filter(|(_, v)| !v.is_empty()).map(|(d, _)| *d).collect()
    }

    /// Events held for `domid`.
    pub fn held(&self, domid: u16) -> usize {
        self.held.get(&domid).map_or(0, Vec::len)
    }

    /// Queues `events` for `domid` and tries to deliver them.
    pub fn deliver(
        &mut self,
        domid: u16,
        events: impl IntoIterator<Item = HostAerEvent>,
    ) -> Result<usize, ForwardError> {
        let h = self.held.entry(domid).or_default();
        for e in events {
            hold(h, e);
        }
        self.stats.held_max = self.stats.held_max.max(h.len());
        self.flush(domid)
    }

    /// Drops everything held for `domid` (the domain is gone).
    pub fn forget(&mut self, domid: u16) {
        if let Some(h) = self.held.remove(&domid) {
            self.stats.dropped += h.iter().map(|e| u64::from(e.count)).sum::<u64>();
        }
        if let (Some(b), Some(sys)) = (self.bindings.remove(&domid), &self.sys) {
            let _ = sys.evtchn_unbind(b.local);
        }
    }

    /// Appends what is held for `domid` (as much as fits) and notifies. Returns the records
    /// written.
    pub fn flush(&mut self, domid: u16) -> Result<usize, ForwardError> {
        let held = self.held.remove(&domid).unwrap_or_default();
        if held.is_empty() {
            return Ok(0);
        }
        let r = self.append(domid, &held);
        let (written, result) = match r {
            Ok(Appended::Written { first, n }) => {
                let recs = held.get(..n).unwrap_or_default();
                self.stats.records += n as u64;
                self.stats.events += recs.iter().map(|e| u64::from(e.count)).sum::<u64>();
                if n < held.len() {
                    self.stats.queue_full += 1;
                }
                log::debug!("domain {domid}: records {first}..{} queued", first + n as u64);
                (n, Ok(n))
            }
            Ok(Appended::NoInbox) => {
                self.stats.no_inbox += 1;
                (0, Ok(0))
            }
            Err(e) => {
                self.stats.errors += 1;
                (0, Err(e))
            }
        };
        let rest: Vec<HostAerEvent> = held.into_iter().skip(written).collect();
        if !rest.is_empty() {
            self.held.insert(domid, rest);
        }
        if written > 0 {
            self.notify(domid);
        }
        result
    }

    fn append(&self, domid: u16, held: &[HostAerEvent]) -> Result<Appended, ForwardError> {
        let xs_err = |what: &str, source| ForwardError::Xs { domid, what: what.to_string(), source };
        // Read outside the transaction: a stale ack only under-estimates the room.
        let ack = match self.xs.read_string(&record::ack_path(domid)) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.is_enoent() => 0,
            Err(e) => return Err(xs_err("reading ack", e)),
        };
        let limit = self.queue_limit;
        self.xs
            .transaction(|tx| {
                match tx.read(&record::version_path(domid)) {
                    Ok(_) => {}
                    Err(e) if e.is_enoent() => return Ok(Appended::NoInbox),
                    Err(e) => return Err(e),
                }
                let next = match read_u64(tx, &record::next_seq_path(domid))? {
                    Some(n) => n.max(ack + 1),
                    None => {
                        let max_q = match tx.directory(&record::queue_dir(domid)) {
                            Ok(v) => v.iter().filter_map(|n| n.parse::<u64>().ok()).max().unwrap_or(0),
                            Err(e) if e.is_enoent() => 0,
                            Err(e) => return Err(e),
                        };
                        max_q.max(ack) + 1
                    }
                };
                let pending = next.saturating_sub(1).saturating_sub(ack);
                let room = usize::try_from(limit.saturating_sub(pending)).unwrap_or(usize::MAX);
                let n = room.min(held.len());
                for (i, ev) in held.iter().take(n).enumerate() {
                    let seq = next + i as u64;
                    tx.write(&record::record_path(domid, seq), AerRecord { seq, event: *ev }.encode())?;
                }
                tx.write(&record::next_seq_path(domid), (next + n as u64).to_string())?;
                Ok(Appended::Written { first: next, n })
            })
            .map_err(|e| xs_err("appending records", e))
    }

    /// Notifies `domid`'s inbox, binding (again) when its epoch changed. Failures are logged:
    /// q35dm rescans its queue every second anyway.
    pub fn notify(&mut self, domid: u16) {
        let Some(sys) = self.sys.clone() else { return };
        let port = self.xs.read_string(&record::port_path(domid)).ok().and_then(|s| s.trim().parse::<u32>().ok());
        let epoch = self.xs.read_string(&record::epoch_path(domid)).ok();
        let (Some(port), Some(epoch)) = (port, epoch) else {
            // No consumer right now: the records wait for the next q35dm.
            if let Some(b) = self.bindings.remove(&domid) {
                let _ = sys.evtchn_unbind(b.local);
            }
            return;
        };
        let stale = self.bindings.get(&domid).is_none_or(|b| b.epoch != epoch);
        if stale {
            if let Some(b) = self.bindings.remove(&domid) {
                let _ = sys.evtchn_unbind(b.local);
            }
            match sys.evtchn_bind_interdomain(0, port) {
                Ok(local) => {
                    self.stats.binds += 1;
                    log::info!("domain {domid}: bound to AER inbox port {port} (epoch {epoch}) as local port {local}");
                    self.bindings.insert(domid, Binding { epoch, local });
                }
                Err(e) => {
                    q35dm::guest_warn!("domain {domid}: binding to AER inbox port {port}: {e}; q35dm will poll");
                    return;
                }
            }
        }
        if let Some(b) = self.bindings.get(&domid) {
            match sys.evtchn_notify(b.local) {
                Ok(()) => self.stats.notifies += 1,
                Err(e) => {
                    q35dm::guest_warn!("domain {domid}: notifying AER inbox: {e}");
                    self.bindings.remove(&domid);
                }
            }
        }
    }

    /// Whether `domid`'s queue holds records not yet acknowledged.
    pub fn has_pending(&self, domid: u16) -> bool {
        let read = |p: String| self.xs.read_string(&p).ok().and_then(|s| s.trim().parse::<u64>().ok());
        let next = read(record::next_seq_path(domid)).unwrap_or(1);
        let ack = read(record::ack_path(domid)).unwrap_or(0);
        next.saturating_sub(1) > ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use q35dm::aer_inbox::record::HostSeverity;
    use q35dm::pci::Sbdf;

    fn ev(f: u8, status: u32) -> HostAerEvent {
        HostAerEvent {
            host: Sbdf::new(0, 3, 0, f),
            severity: HostSeverity::Correctable,
            status,
            header: None,
            count: 1,
            time_ns: 0,
        }
    }

    #[test]
    fn holding_merges_and_stays_bounded() {
        let mut h = Vec::new();
        for _ in 0..10 {
            hold(&mut h, ev(0, 0x40));
        }
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].count, 10);
        for s in 0..1000u32 {
            hold(&mut h, ev(1, s << 8));
        }
        assert!(h.len() <= MAX_HELD);
        assert_eq!(h.iter().map(|e| u64::from(e.count)).sum::<u64>(), 1010, "no event uncounted");
    }
}
