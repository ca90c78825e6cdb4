//! Storm control: per host function, a token bucket decides which events are injected; the
//! rest are collapsed into a counted summary that is logged (and, with the union of their
//! status bits, injected once) per summary period. Memory is bounded by the number of host
//! functions the guest has ([`StormConfig::max_functions`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::pci::Sbdf;

use super::record::{HostAerEvent, HostSeverity};

/// Storm-control parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StormConfig {
    /// Injections allowed back to back per host function.
    pub burst: u32,
    /// Sustained injections per second per host function.
    pub per_sec: f64,
    /// How often collapsed events are summarised.
    pub summary_period: Duration,
    /// Host functions tracked at once (more are collapsed wholesale into one bucket).
    pub max_functions: usize,
}

impl Default for StormConfig {
    /// 16 back to back, 16/s sustained, a summary per second, 64 functions.
    fn default() -> Self {
        Self { burst: 16, per_sec: 16.0, summary_period: Duration::from_secs(1), max_functions: 64 }
    }
}

/// The decision for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Inject it.
    Inject,
    /// Counted into the next summary.
    Collapse,
}

/// Events collapsed for one host function during one period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The host function.
    pub host: Sbdf,
    /// Host events collapsed (including the repeats folded into injected records).
    pub collapsed: u64,
    /// Union of the correctable status bits of the events not injected.
    pub cor: u32,
    /// Union of the uncorrectable status bits of the events not injected.
    pub uncor: u32,
    /// The worst host severity among the uncorrectable ones.
    pub uncor_severity: Option<HostSeverity>,
    /// Length of the period.
    pub over: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    since: Instant,
    collapsed: u64,
    cor: u32,
    uncor: u32,
    uncor_severity: Option<HostSeverity>,
}

/// The limiter.
#[derive(Debug)]
pub struct StormLimiter {
    cfg: StormConfig,
    buckets: BTreeMap<Sbdf, Bucket>,
}

/// Stand-in key once `max_functions` buckets exist.
const OVERFLOW_KEY: Sbdf = Sbdf::from_raw(u32::MAX);

impl StormLimiter {
    /// A limiter.
    pub fn new(cfg: StormConfig) -> Self {
        Self { cfg, buckets: BTreeMap::new() }
    }

    /// Functions currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Decides for `ev` at `now`.
    pub fn admit(&mut self, ev: &HostAerEvent, now: Instant) -> Verdict {
        let key = if self.buckets.contains_key(&ev.host) || self.buckets.len() < self.cfg.max_functions {
            ev.host
        } else {
            OVERFLOW_KEY
        };
        let cfg = self.cfg;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(cfg.burst),
            last: now,
            since: now,
            collapsed: 0,
            cor: 0,
            uncor: 0,
            uncor_severity: None,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * cfg.per_sec).min(f64::from(cfg.burst));
        b.last = now;
        let repeats = u64::from(ev.count.max(1));
        if b.tokens >= 1.0 && key != OVERFLOW_KEY {
            b.tokens -= 1.0;
            b.collapsed = b.collapsed.saturating_add(repeats - 1);
            return Verdict::Inject;
        }
        b.collapsed = b.collapsed.saturating_add(repeats);
        if ev.severity.is_uncorrectable() {
            b.uncor |= ev.status;
            // Fatal is worse than non-fatal.
            let fatal = b.uncor_severity == Some(HostSeverity::Fatal) || ev.severity == HostSeverity::Fatal;
            b.uncor_severity = Some(if fatal { HostSeverity::Fatal } else { HostSeverity::NonFatal });
        } else {
            b.cor |= ev.status;
        }
        Verdict::Collapse
    }

    /// Summaries of the periods that ended by `now` (and forgets idle functions).
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let period = self.cfg.summary_period;
        let mut out = Vec::new();
        self.buckets.retain(|host, b| {
            let over = now.saturating_duration_since(b.since);
            if over < period {
                return true;
            }
            if b.collapsed > 0 {
                out.push(Summary {
                    host: *host,
                    collapsed: b.collapsed,
                    cor: b.cor,
                    uncor: b.uncor,
                    uncor_severity: b.uncor_severity,
                    over,
                });
            }
            let idle = now.saturating_duration_since(b.last) > period.saturating_mul(10);
            b.since = now;
            b.collapsed = 0;
            b.cor = 0;
            b.uncor = 0;
            b.uncor_severity = None;
            !idle
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(count: u32) -> HostAerEvent {
        HostAerEvent {
            host: Sbdf::new(0, 3, 0, 0),
            severity: HostSeverity::Correctable,
            status: 0x40,
            header: None,
            count,
            time_ns: 0,
        }
    }

    #[test]
    fn burst_then_collapse_then_summary() {
        let cfg = StormConfig { burst: 4, per_sec: 2.0, summary_period: Duration::from_secs(1), max_functions: 2 };
        let mut l = StormLimiter::new(cfg);
        let t0 = Instant::now();
        let v: Vec<Verdict> = (0..10).map(|_| l.admit(&ev(1), t0)).collect();
        assert_eq!(v.iter().filter(|v| **v == Verdict::Inject).count(), 4);
        assert!(l.due(t0 + Duration::from_millis(500)).is_empty(), "period not over");
        let s = l.due(t0 + Duration::from_secs(1));
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].collapsed, s[0].cor, s[0].uncor), (6, 0x40, 0));
        // Tokens refill at 2/s.
        assert_eq!(l.admit(&ev(5), t0 + Duration::from_secs(2)), Verdict::Inject);
        let s = l.due(t0 + Duration::from_secs(3));
        assert_eq!(s[0].collapsed, 4, "repeats folded into an injected record are counted");
        // Idle functions are forgotten.
        let _ = l.due(t0 + Duration::from_secs(60));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn bounded_number_of_functions() {
        let cfg = StormConfig { max_functions: 2, ..StormConfig::default() };
        let mut l = StormLimiter::new(cfg);
        let t0 = Instant::now();
        for f in 0..8 {
            let mut e = ev(1);
            e.host = Sbdf::new(0, 3, f, 0);
            let _ = l.admit(&e, t0);
        }
        assert!(l.tracked() <= 3);
    }
}
