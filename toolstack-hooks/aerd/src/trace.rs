//! Decoding `trace_pipe` lines of `ras:aer_event` with the tables of [`AerPrintFormat`].
//!
//! A line is `<task>-<pid> [<cpu>] <flags> <timestamp>: aer_event: <text>`; the prefix's columns
//! differ between kernels (and trace options), so only the `aer_event: ` marker is relied on;
//! the timestamp is the word before it when it parses. The text is matched piece by piece
//! against the print fmt: literals exactly, the severity against its known strings (longest
//! first: "Uncorrected, non-fatal" contains the ", " separator), the status flags (names split
//! at `|`, a trailing `0x…` for bits without a name, empty for 0) and the header
//! (`{0x…,0x…,0x…,0x…}` or the "not available" text). The kernel also emits
//! `CPU:<n> [LOST <m> EVENTS]` when its buffer overflowed.

use q35dm::aer_inbox::record::{parse_full_sbdf, HostSeverity};
use q35dm::pci::Sbdf;
use thiserror::Error;

use super::format::{AerPrintFormat, Piece, Slot};

/// One decoded line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceLine {
    /// An AER event.
    Event(TraceEvent),
    /// The kernel dropped events (ring buffer overrun).
    Lost {
        /// CPU.
        cpu: u32,
        /// Events lost.
        count: u64,
    },
    /// Empty line (the print fmt ends in "\n", so every event is followed by one).
    Blank,
}

/// An `aer_event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// `dev_name`.
    pub sbdf: Sbdf,
    /// Severity.
    pub severity: HostSeverity,
    /// Status bits.
    pub status: u32,
    /// Header, if valid.
    pub header: Option<[u32; 4]>,
    /// The trace timestamp (seconds), if the prefix had one.
    pub ts: Option<String>,
}

/// A line that cannot be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// Not an aer_event line.
    #[error("not an {0} line")]
    NotEvent(&'static str),
    /// The text does not match the print fmt at some piece.
    #[error("{what} does not match at {at:?}")]
    Mismatch {
        /// What was expected.
        what: String,
        /// The text from there (shortened).
        at: String,
    },
    /// `dev_name` is not an `SSSS:BB:DD.F` address.
    #[error("device name {0:?} is not a PCI address")]
    DevName(String),
    /// A flag name the print fmt does not list.
    #[error("unknown status flag {0:?}")]
    Flag(String),
    /// The header text does not parse.
    #[error("bad TLP header {0:?}")]
    Header(String),
    /// A severity value outside 0-2.
    #[error("severity value {0} unknown")]
    Severity(u8),
}

fn short(s: &str) -> String {
    s.chars().take(48).collect()
}

fn parse_hex(s: &str) -> Option<u64> {
    let h = s.trim().strip_prefix("0x").or_else(|| s.trim().strip_prefix("0X"))?;
    u64::from_str_radix(h, 16).ok()
}

fn parse_lost(line: &str) -> Option<TraceLine> {
    let rest = line.trim().strip_prefix("CPU:")?;
    let (cpu, rest) = rest.split_once(' ')?;
    let n = rest.trim().strip_prefix("[LOST ")?.strip_suffix(" EVENTS]")?;
    Some(TraceLine::Lost { cpu: cpu.parse().ok()?, count: n.parse().ok()? })
}

impl AerPrintFormat {
    /// Decodes one line of the instance's `trace_pipe`.
    pub fn decode_line(&self, line: &str) -> Result<TraceLine, TraceError> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return Ok(TraceLine::Blank);
        }
        if let Some(l) = parse_lost(line) {
            return Ok(l);
        }
        const MARK: &str = "aer_event: ";
        let at = line.find(MARK).ok_or(TraceError::NotEvent("aer_event"))?;
        let ts = line
            .get(..at)
            .and_then(|p| p.split_whitespace().last())
            .map(|w| w.trim_end_matches(':'))
            .filter(|w| w.parse::<f64>().is_ok())
            .map(str::to_string);
        let mut text = line.get(at + MARK.len()..).unwrap_or_default();
        let (mut dev, mut sev, mut status_txt, mut header) = (None, None, None, None);
        let mut i = 0;
        while let Some(p) = self.pieces.get(i) {
            i += 1;
            match p {
                Piece::Lit(l) => {
                    let l = l.as_str();
                    text = text
                        .strip_prefix(l)
                        .or_else(|| text.strip_prefix(l.trim_end()))
                        .ok_or_else(|| TraceError::Mismatch { what: format!("{l:?}"), at: short(text) })?;
                }
                Piece::Slot(Slot::Severity) => {
                    let (s, v) = self
                        .severities
                        .iter()
                        .find(|(s, _)| text.starts_with(s.as_str()))
                        .ok_or_else(|| TraceError::Mismatch { what: "a severity".into(), at: short(text) })?;
                    sev = Some(*v);
                    text = text.get(s.len()..).unwrap_or_default();
                }
                Piece::Slot(slot) => {
                    // Up to the next literal (or the end of the line for the last piece).
                    let value = match self.pieces.get(i) {
                        Some(Piece::Lit(next)) => {
                            let n = text.find(next.as_str()).or_else(|| {
                                let t = next.trim_end();
                                (!t.is_empty()).then(|| text.find(t)).flatten()
                            });
                            match n {
                                Some(n) => {
                                    let (v, rest) = text.split_at(n);
                                    text = rest;
                                    v
                                }
                                None => {
                                    return Err(TraceError::Mismatch { what: format!("{next:?}"), at: short(text) })
                                }
                            }
                        }
                        _ => std::mem::take(&mut text).trim_end(),
                    };
                    match slot {
                        Slot::DevName => dev = Some(value),
                        Slot::Status => status_txt = Some(value),
                        Slot::Header => header = Some(value),
                        Slot::Word | Slot::Severity => {}
                    }
                }
            }
        }
        let dev = dev.unwrap_or_default();
        let sbdf = parse_full_sbdf(dev).ok_or_else(|| TraceError::DevName(short(dev)))?;
        let sev = sev.unwrap_or(0);
        let severity = HostSeverity::from_trace(u64::from(sev)).ok_or(TraceError::Severity(sev))?;
        let table = if sev == self.correctable_severity { &self.cor_flags } else { &self.uncor_flags };
        let mut status = 0u32;
        for name in status_txt.unwrap_or_default().split('|').map(str::trim).filter(|n| !n.is_empty()) {
            match table.get(name) {
                Some(bit) => status |= bit,
                None => match parse_hex(name).and_then(|v| u32::try_from(v).ok()) {
                    Some(v) => status |= v,
                    None => return Err(TraceError::Flag(short(name))),
                },
            }
        }
        let header = match header.map(str::trim) {
            None => None,
            Some(h) if h == self.no_header => None,
            Some(h) => {
                let inner = h
                    .strip_prefix('{')
                    .and_then(|x| x.strip_suffix('}'))
                    .ok_or_else(|| TraceError::Header(short(h)))?;
                let words: Vec<u32> = inner
                    .split(',')
                    .map(|w| parse_hex(w).and_then(|v| u32::try_from(v).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| TraceError::Header(short(h)))?;
                match words.as_slice() {
                    [a, b, c, d, ..] => Some([*a, *b, *c, *d]),
                    _ => return Err(TraceError::Header(short(h))),
                }
            }
        };
        Ok(TraceLine::Event(TraceEvent { sbdf, severity, status, header, ts }))
    }
}

/// Renders an event the way the kernel would (`trace_print_flags_seq`, `trace_print_array_seq`):
/// for tests and for the fake tracefs.
pub fn render(f: &AerPrintFormat, sbdf: &str, severity: u8, status: u32, header: Option<[u32; 4]>) -> String {
    let mut out = String::new();
    for p in &f.pieces {
        match p {
            Piece::Lit(l) => out.push_str(l),
            Piece::Slot(Slot::DevName) => out.push_str(sbdf),
            Piece::Slot(Slot::Word) => out.push_str("PCIe"),
            Piece::Slot(Slot::Severity) => {
                let s = f.severities.iter().find(|(_, v)| *v == severity).map(|(s, _)| s.as_str()).unwrap_or("?");
                out.push_str(s);
            }
            Piece::Slot(Slot::Status) => {
                let table = if severity == f.correctable_severity { &f.cor_flags } else { &f.uncor_flags };
                let mut by_bit: Vec<(&u32, &String)> = table.iter().map(|(n, b)| (b, n)).collect();
                by_bit.sort();
                let mut left = status;
                let mut names = Vec::new();
                for (bit, name) in by_bit {
                    if *bit != 0 && left & bit == *bit {
                        names.push(name.clone());
                        left &= !bit;
                    }
                }
                if left != 0 {
                    names.push(format!("{left:#x}"));
                }
                out.push_str(&names.join("|"));
            }
            Piece::Slot(Slot::Header) => match header {
                Some(h) => out.push_str(&format!("{{{:#x},{:#x},{:#x},{:#x}}}", h[0], h[1], h[2], h[3])),
                None => out.push_str(&f.no_header),
            },
        }
    }
    out
}
