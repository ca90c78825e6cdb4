//! The fallback source: the AER statistics in sysfs (`aer_dev_correctable`,
//! `aer_dev_nonfatal`, `aer_dev_fatal` under `bus/pci/devices/<SSSS:BB:DD.F>/`), polled. Each
//! file has `<Name> <count>` lines (names from the kernel's `aer_*_error_string[]`; unnamed
//! bits as `<array>_bit[<n>] <count>`) and a `TOTAL_…` line. A counter that grew becomes one
//! event with that bit and `count` = the growth; no header log is available. The first poll
//! of a function only records the baseline; a counter that shrank (device reset or replaced)
//! re-baselines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use q35dm::aer_inbox::record::HostSeverity;
use q35dm::pci::Sbdf;
use thiserror::Error;

/// Names of correctable bits (`aer_correctable_error_string[]`).
pub const COR_NAMES: &[(&str, u32)] = &[
    ("RxErr", 0),
    ("BadTLP", 6),
    ("BadDLLP", 7),
    ("Rollover", 8),
    ("Timeout", 12),
    ("NonFatalErr", 13),
    ("CorrIntErr", 14),
    ("HeaderOF", 15),
];

/// Names of uncorrectable bits (`aer_uncorrectable_error_string[]`).
pub const UNCOR_NAMES: &[(&str, u32)] = &[
    ("Undefined", 0),
    ("DLP", 4),
    ("SDES", 5),
    ("TLP", 12),
    ("FCP", 13),
    ("CmpltTO", 14),
    ("CmpltAbrt", 15),
    ("UnxCmplt", 16),
    ("RxOF", 17),
    ("MalfTLP", 18),
    ("ECRC", 19),
    ("UnsupReq", 20),
    ("ACSViol", 21),
    ("UncorrIntErr", 22),
    ("BlockedTLP", 23),
    ("AtomicOpBlocked", 24),
    ("TLPBlockedErr", 25),
    ("PoisonTLPBlocked", 26),
];

/// The three files and their severities.
pub const FILES: [(&str, HostSeverity); 3] = [
    ("aer_dev_correctable", HostSeverity::Correctable),
    ("aer_dev_nonfatal", HostSeverity::NonFatal),
    ("aer_dev_fatal", HostSeverity::Fatal),
];

/// A counters file that cannot be read.
#[derive(Debug, Error)]
pub enum SysfsError {
    /// I/O.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A counter that grew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterEvent {
    /// The function.
    pub sbdf: Sbdf,
    /// Severity (from the file).
    pub severity: HostSeverity,
    /// The bit.
    pub status: u32,
    /// By how much.
    pub count: u64,
}

/// Parses a counters file into `bit → count` (unknown names are skipped).
pub fn parse_counters(text: &str, severity: HostSeverity) -> BTreeMap<u32, u64> {
    let names = if severity == HostSeverity::Correctable { COR_NAMES } else { UNCOR_NAMES };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(name), Some(v)) = (w.next(), w.next()) else { continue };
        let Ok(v) = v.parse::<u64>() else { continue };
        let bit = names.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).or_else(|| {
            let i = name.find("_bit[")?;
            name.get(i + 5..)?.strip_suffix(']')?.parse::<u32>().ok().filter(|b| *b < 32)
        });
        if let Some(b) = bit {
            out.insert(b, v);
        }
    }
    out
}

/// The poller's memory: last counts per function and file.
#[derive(Debug, Default)]
pub struct SysfsPoller {
    root: PathBuf,
    last: BTreeMap<(Sbdf, u8), BTreeMap<u32, u64>>,
}

impl SysfsPoller {
    /// Polls under `root` (normally `/sys`).
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf(), last: BTreeMap::new() }
    }

    /// The device directory of `s`.
    pub fn device_dir(&self, s: Sbdf) -> PathBuf {
        self.root.join("bus/pci/devices").join(s.to_string())
    }

    /// One poll of `functions`: the counters that grew since the last poll. Functions no longer
    /// listed are forgotten. Unreadable files are reported (and skipped).
    pub fn poll(&mut self, functions: &[Sbdf]) -> (Vec<CounterEvent>, Vec<SysfsError>) {
        self.last.retain(|(s, _), _| functions.contains(s));
        let mut events = Vec::new();
        let mut errors = Vec::new();
        for &s in functions {
            for (i, (file, sev)) in FILES.iter().enumerate() {
                let path = self.device_dir(s).join(file);
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(source) => {
                        errors.push(SysfsError::Io { path, source });
                        continue;
                    }
                };
                let now = parse_counters(&text, *sev);
                let key = (s, i as u8);
                if let Some(prev) = self.last.get(&key) {
                    for (bit, n) in &now {
                        let before = prev.get(bit).copied().unwrap_or(0);
                        if *n > before {
                            events.push(CounterEvent { sbdf: s, severity: *sev, status: 1 << bit, count: n - before });
                        }
                    }
                }
                self.last.insert(key, now);
            }
        }
        (events, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse() {
        let t = "RxErr 0\nBadTLP 3\nBadDLLP 0\nRollover 0\nTimeout 0\nNonFatalErr 0\nCorrIntErr 0\nHeaderOF 0\n\
                 dev_cor_errs_bit[9] 2\nTOTAL_ERR_COR 5\n";
        let c = parse_counters(t, HostSeverity::Correctable);
        assert_eq!(c.get(&6), Some(&3));
        assert_eq!(c.get(&9), Some(&2));
        assert_eq!(c.len(), 9);
        let u = parse_counters("TLP 1\nUnsupReq 4\nTOTAL_ERR_NONFATAL 5\n", HostSeverity::NonFatal);
        assert_eq!((u.get(&12), u.get(&20)), (Some(&1), Some(&4)));
    }
}
