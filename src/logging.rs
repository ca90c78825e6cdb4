//! Logging: a small stderr logger for the `log` facade, and rate limiting for messages a guest
//! can trigger (at most [`BURST`] per [`WINDOW`] per call site, like Linux's printk_ratelimit;
//! the next message that gets through says how many were suppressed).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Messages allowed per window and call site.
pub const BURST: u32 = 10;
/// Rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Per-call-site limiter state.
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<Option<LimitState>>,
}

#[derive(Debug)]
struct LimitState {
    window_start: Instant,
    emitted: u32,
    suppressed: u64,
}

impl RateLimit {
    /// A limiter (usable in a `static`).
    pub const fn new() -> Self {
        Self { state: Mutex::new(None) }
    }

    /// `Some(n)` if a message may be logged now, `n` being how many were suppressed before it;
    /// `None` if it must be dropped.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let st = g.get_or_insert(LimitState { window_start: now, emitted: 0, suppressed: 0 });
        if now.duration_since(st.window_start) >= WINDOW {
            st.window_start = now;
            st.emitted = 0;
        }
        if st.emitted < BURST {
            st.emitted += 1;
            let s = st.suppressed;
            st.suppressed = 0;
            Some(s)
        } else {
            st.suppressed = st.suppressed.saturating_add(1);
            None
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// `log::warn!` limited per call site; use for anything a guest (or a peer) can trigger.
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)*) => {{
        static LIMIT: $crate::logging::RateLimit = $crate::logging::RateLimit::new();
        if let Some(suppressed) = LIMIT.allow() {
            if suppressed > 0 {
                log::warn!("{} [{} similar messages suppressed]", format_args!($($arg)*), suppressed);
            } else {
                log::warn!($($arg)*);
            }
        }
    }};
}

/// `log::error!` limited per call site.
#[macro_export]
macro_rules! guest_error {
    ($($arg:tt)*) => {{
        static LIMIT: $crate::logging::RateLimit = $crate::logging::RateLimit::new();
        if let Some(suppressed) = LIMIT.allow() {
            if suppressed > 0 {
                log::error!("{} [{} similar messages suppressed]", format_args!($($arg)*), suppressed);
            } else {
                log::error!($($arg)*);
            }
        }
    }};
}

struct StderrLogger {
    level: LevelFilter,
    capture: Option<Mutex<Vec<String>>>,
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = t.as_secs();
        let line = format!(
            "{:02}:{:02}:{:02}.{:03} {:5} {}: {}",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            t.subsec_millis(),
            r.level(),
            r.target(),
            r.args()
        );
        if let Some(c) = &self.capture {
            if let Ok(mut v) = c.lock() {
                v.push(line.clone());
            }
            if r.level() > Level::Warn {
                return;
            }
        }
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

static LOGGER: std::sync::OnceLock<StderrLogger> = std::sync::OnceLock::new();

/// Installs the stderr logger at `level` (first call wins).
pub fn init(level: LevelFilter) {
    let l = LOGGER.get_or_init(|| StderrLogger { level, capture: None });
    if log::set_logger(l).is_ok() {
        log::set_max_level(l.level);
    }
}

/// Installs a logger that also keeps every line in memory (tests assert on log output).
pub fn init_capture(level: LevelFilter) {
    let l = LOGGER.get_or_init(|| StderrLogger { level, capture: Some(Mutex::new(Vec::new())) });
    if log::set_logger(l).is_ok() {
        log::set_max_level(l.level);
    }
}

/// Lines captured so far (empty unless [`init_capture`] was used).
pub fn captured() -> Vec<String> {
    LOGGER.get().and_then(|l| l.capture.as_ref()).and_then(|c| c.lock().ok().map(|v| v.clone())).unwrap_or_default()
}

/// Parses a level name (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppress_then_report() {
        let l = RateLimit::new();
        for _ in 0..BURST {
            assert_eq!(l.allow(), Some(0));
        }
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        // Force the window to expire.
        if let Ok(mut g) = l.state.lock() {
            if let Some(st) = g.as_mut() {
                st.window_start -= WINDOW;
            }
        }
        assert_eq!(l.allow(), Some(2));
    }
}
