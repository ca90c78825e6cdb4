//! The inbox's xenstore schema and the record format shared by q35dm (consumer) and
//! `q35dm-aerd` (producer). See toolstack-hooks/README.md ("Host AER forwarding") for the
//! operator's view of the same schema.
//!
//! ```text
//! /local/domain/0/device-model/<domid>/aer/
//!     version    "1"                       (q35dm)
//!     port       dom0 event-channel port    (q35dm: IOCTL_EVTCHN_BIND_UNBOUND_PORT, remote dom0)
//!     epoch      "<pid hex>-<ns hex>"       (q35dm: new on every start; tells aerd to re-bind)
//!     next-seq   next sequence number       (aerd, in the transaction that adds records)
//!     ack        last sequence consumed     (q35dm, in the transaction that removes records)
//!     queue/<seq>  one record per node      (aerd adds, q35dm removes after injecting)
//! ```
//!
//! A record is one line of `key=value` words separated by single spaces:
//!
//! ```text
//! seq=17 sbdf=0000:03:00.0 sev=nonfatal status=0x00001000 tlp=1 hdr=0x4a000001,0x0300000f,0xfe000000,0x00000000 count=1 time=1712345678123456789
//! ```
//!
//! `sev` is `correctable`, `nonfatal` or `fatal` (the host kernel's view: trace severity 2, 0,
//! 1); `status` the host COR or UNCOR status bits (hex); `tlp` whether the header log words are
//! valid; `hdr` the four Header Log dwords as read with 32-bit config reads; `count` how many
//! identical host events this record stands for (aerd collapses storms); `time` when aerd saw
//! the event (Unix time, ns). Unknown keys are ignored (forward compatibility); a missing
//! mandatory key, a bad value or a record longer than [`MAX_RECORD_LEN`] is refused.

use std::fmt::Write as _;

use thiserror::Error;

use crate::pci::Sbdf;

/// Version of the schema q35dm writes to `aer/version`.
pub const SCHEMA_VERSION: &str = "1";
/// Longest record accepted.
pub const MAX_RECORD_LEN: usize = 512;

/// The inbox directory of `domid`.
pub fn inbox_dir(domid: u16) -> String {
    format!("/local/domain/0/device-model/{domid}/aer")
}

/// `aer/port`.
pub fn port_path(domid: u16) -> String {
    format!("{}/port", inbox_dir(domid))
}

/// `aer/epoch`.
pub fn epoch_path(domid: u16) -> String {
    format!("{}/epoch", inbox_dir(domid))
}

/// `aer/version`.
pub fn version_path(domid: u16) -> String {
    format!("{}/version", inbox_dir(domid))
}

/// `aer/next-seq`.
pub fn next_seq_path(domid: u16) -> String {
    format!("{}/next-seq", inbox_dir(domid))
}

/// `aer/ack`.
pub fn ack_path(domid: u16) -> String {
    format!("{}/ack", inbox_dir(domid))
}

/// `aer/queue`.
pub fn queue_dir(domid: u16) -> String {
    format!("{}/queue", inbox_dir(domid))
}

/// `aer/queue/<seq>`.
pub fn record_path(domid: u16, seq: u64) -> String {
    format!("{}/queue/{seq}", inbox_dir(domid))
}

/// libxl's owner node of an assigned host function: `/libxl/pci/SSSS-BB-DD-F/domid`.
pub fn libxl_owner_path(host: Sbdf) -> String {
    format!("/libxl/pci/{:04x}-{:02x}-{:02x}-{:x}/domid", host.seg(), host.bus(), host.dev(), host.func())
}

/// Parses the `SSSS-BB-DD-F` directory names under `/libxl/pci`.
pub fn parse_libxl_bdf(name: &str) -> Option<Sbdf> {
    let mut it = name.split('-');
    let (s, b, d, f) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let seg = u16::from_str_radix(s, 16).ok()?;
    let bus = u8::from_str_radix(b, 16).ok()?;
    let dev = u8::from_str_radix(d, 16).ok().filter(|d| *d <= 0x1f)?;
    let func = u8::from_str_radix(f, 16).ok().filter(|f| *f <= 7)?;
    Some(Sbdf::new(seg, bus, dev, func))
}

/// Severity as the host kernel classified the error (`ras:aer_event` severity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostSeverity {
    /// `AER_NONFATAL` (0): uncorrectable, non-fatal.
    NonFatal,
    /// `AER_FATAL` (1).
    Fatal,
    /// `AER_CORRECTABLE` (2).
    Correctable,
}

impl HostSeverity {
    /// From the tracepoint's numeric severity.
    pub fn from_trace(v: u64) -> Option<Self> {
        match v {
            0 => Some(Self::NonFatal),
            1 => Some(Self::Fatal),
            2 => Some(Self::Correctable),
            _ => None,
        }
    }
    /// The word used in records.
    pub fn name(self) -> &'static str {
        match self {
            Self::NonFatal => "nonfatal",
            Self::Fatal => "fatal",
            Self::Correctable => "correctable",
        }
    }
    /// Parses [`HostSeverity::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nonfatal" => Some(Self::NonFatal),
            "fatal" => Some(Self::Fatal),
            "correctable" => Some(Self::Correctable),
            _ => None,
        }
    }
    /// Whether the status bits are Uncorrectable Error Status bits.
    pub fn is_uncorrectable(self) -> bool {
        self != Self::Correctable
    }
}

/// One host AER event (or a run of identical ones, `count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostAerEvent {
    /// The host function whose AER registers reported it.
    pub host: Sbdf,
    /// The host's classification.
    pub severity: HostSeverity,
    /// COR or UNCOR status bits (per `severity`).
    pub status: u32,
    /// Header Log words, if valid.
    pub header: Option<[u32; 4]>,
    /// Identical host events this stands for (at least 1).
    pub count: u32,
    /// When the forwarder saw it (Unix time, ns).
    pub time_ns: u64,
}

impl HostAerEvent {
    /// Whether two events are the same error (everything but count and time).
    pub fn same_error(&self, o: &Self) -> bool {
        self.host == o.host && self.severity == o.severity && self.status == o.status && self.header == o.header
    }
}

/// A queued record: an event with its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AerRecord {
    /// Sequence number (1, 2, ...; per inbox).
    pub seq: u64,
    /// The event.
    pub event: HostAerEvent,
}

/// A record that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Longer than [`MAX_RECORD_LEN`].
    #[error("record of {0} bytes (max {MAX_RECORD_LEN})")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("record is not UTF-8")]
    NotUtf8,
    /// A mandatory key is missing.
    #[error("record has no {0:?}")]
    Missing(&'static str),
    /// A word is not `key=value`.
    #[error("record word {0:?} is not key=value")]
    BadWord(String),
    /// A value does not parse.
    #[error("record key {key:?} has a bad value {value:?}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// The `seq` inside does not match the node name.
    #[error("record seq {inside} does not match its node {node}")]
    SeqMismatch {
        /// From the node name.
        node: u64,
        /// From the record.
        inside: u64,
    },
}

fn hex_u32(s: &str) -> Option<u32> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if h.is_empty() || h.len() > 8 {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

impl AerRecord {
    /// The one-line form stored in `queue/<seq>`.
    pub fn encode(&self) -> String {
        let e = &self.event;
        let mut s = format!(
            "seq={} sbdf={} sev={} status={:#010x} tlp={}",
            self.seq,
            e.host,
            e.severity.name(),
            e.status,
            u8::from(e.header.is_some())
        );
        let h = e.header.unwrap_or_default();
        let _ = write!(s, " hdr={:#010x},{:#010x},{:#010x},{:#010x}", h[0], h[1], h[2], h[3]);
        let _ = write!(s, " count={} time={}", e.count.max(1), e.time_ns);
        s
    }

    /// Parses a record read from `queue/<node_seq>`.
    pub fn parse(node_seq: u64, raw: &[u8]) -> Result<Self, RecordError> {
        if raw.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(raw.len()));
        }
        let text = std::str::from_utf8(raw).map_err(|_| RecordError::NotUtf8)?;
        let (mut seq, mut sbdf, mut sev, mut status, mut tlp, mut hdr, mut count, mut time) =
            (None, None, None, None, None, None, None, None);
        for word in text.split_ascii_whitespace() {
            let (k, v) = word.split_once('=').ok_or_else(|| RecordError::BadWord(word.chars().take(32).collect()))?;
            let bad = |key: &'static str| RecordError::BadValue { key, value: v.chars().take(64).collect() };
            match k {
                "seq" => seq = Some(v.parse::<u64>().map_err(|_| bad("seq"))?),
                "sbdf" => sbdf = Some(parse_full_sbdf(v).ok_or_else(|| bad("sbdf"))?),
                "sev" => sev = Some(HostSeverity::parse(v).ok_or_else(|| bad("sev"))?),
                "status" => status = Some(hex_u32(v).ok_or_else(|| bad("status"))?),
                "tlp" => {
                    tlp = Some(match v {
                        "0" => false,
                        "1" => true,
                        _ => return Err(bad("tlp")),
                    })
                }
                "hdr" => {
                    let words: Vec<Option<u32>> = v.split(',').map(hex_u32).collect();
                    match words.as_slice() {
                        [Some(a), Some(b), Some(c), Some(d)] => hdr = Some([*a, *b, *c, *d]),
                        _ => return Err(bad("hdr")),
                    }
                }
                "count" => count = Some(v.parse::<u32>().ok().filter(|c| *c > 0).ok_or_else(|| bad("count"))?),
                "time" => time = Some(v.parse::<u64>().map_err(|_| bad("time"))?),
                _ => {}
            }
        }
        let seq = seq.ok_or(RecordError::Missing("seq"))?;
        if seq != node_seq {
            return Err(RecordError::SeqMismatch { node: node_seq, inside: seq });
        }
        let tlp = tlp.unwrap_or(false);
        let header = match (tlp, hdr) {
            (true, Some(h)) => Some(h),
            (true, None) => return Err(RecordError::Missing("hdr")),
            (false, _) => None,
        };
        Ok(AerRecord {
            seq,
            event: HostAerEvent {
                host: sbdf.ok_or(RecordError::Missing("sbdf"))?,
                severity: sev.ok_or(RecordError::Missing("sev"))?,
                status: status.ok_or(RecordError::Missing("status"))?,
                header,
                count: count.unwrap_or(1),
                time_ns: time.unwrap_or(0),
            },
        })
    }
}

/// Parses exactly `SSSS:BB:DD.F` (the kernel's `pci_name()`, four hex digits of segment).
pub fn parse_full_sbdf(s: &str) -> Option<Sbdf> {
    let b = s.as_bytes();
    if b.len() != 12 || b.get(4) != Some(&b':') || b.get(7) != Some(&b':') || b.get(10) != Some(&b'.') {
        return None;
    }
    s.parse::<Sbdf>().ok()
}

/// Current Unix time in ns (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> HostAerEvent {
        HostAerEvent {
            host: Sbdf::new(0, 3, 0, 0),
            severity: HostSeverity::NonFatal,
            status: 0x1000,
            header: Some([0x4a00_0001, 0x0300_000f, 0xfe00_0000, 0]),
            count: 3,
            time_ns: 42,
        }
    }

    #[test]
    fn round_trip() {
        let r = AerRecord { seq: 17, event: ev() };
        let s = r.encode();
        assert_eq!(
            s,
            "seq=17 sbdf=0000:03:00.0 sev=nonfatal status=0x00001000 tlp=1 \
             hdr=0x4a000001,0x0300000f,0xfe000000,0x00000000 count=3 time=42"
        );
        assert_eq!(AerRecord::parse(17, s.as_bytes()), Ok(r));
        let mut no_hdr = r;
        no_hdr.event.header = None;
        assert_eq!(AerRecord::parse(17, no_hdr.encode().as_bytes()), Ok(no_hdr));
    }

    #[test]
    fn refusals_name_the_problem() {
        let good = AerRecord { seq: 5, event: ev() }.encode();
        assert_eq!(AerRecord::parse(6, good.as_bytes()), Err(RecordError::SeqMismatch { node: 6, inside: 5 }));
        assert!(matches!(AerRecord::parse(1, b"seq=1 sbdf=zz"), Err(RecordError::BadValue { key: "sbdf", .. })));
        assert_eq!(AerRecord::parse(1, b"seq=1 junk"), Err(RecordError::BadWord("junk".into())));
        assert_eq!(AerRecord::parse(1, b"seq=1 sbdf=0000:03:00.0"), Err(RecordError::Missing("sev")));
        assert_eq!(AerRecord::parse(1, &[0xff; 4]), Err(RecordError::NotUtf8));
        assert_eq!(AerRecord::parse(1, &[b'a'; 600]), Err(RecordError::TooLong(600)));
        let e = AerRecord::parse(1, b"seq=1 sbdf=0000:03:00.0 sev=fatal status=0x10 tlp=1").unwrap_err();
        assert_eq!(e, RecordError::Missing("hdr"));
        assert!(e.to_string().contains("hdr"));
        // Unknown keys are ignored; count defaults to 1.
        let r = AerRecord::parse(2, b"seq=2 sbdf=0000:03:00.1 sev=correctable status=0x40 tlp=0 future=x").unwrap();
        assert_eq!((r.event.count, r.event.header, r.event.status), (1, None, 0x40));
    }

    #[test]
    fn libxl_names() {
        let s = Sbdf::new(0, 3, 0x1f, 7);
        assert_eq!(libxl_owner_path(s), "/libxl/pci/0000-03-1f-7/domid");
        assert_eq!(parse_libxl_bdf("0000-03-1f-7"), Some(s));
        assert_eq!(parse_libxl_bdf("0000-03-20-7"), None);
        assert_eq!(parse_libxl_bdf("0000-03-1f"), None);
        assert_eq!(parse_full_sbdf("0000:03:00.0"), Some(Sbdf::new(0, 3, 0, 0)));
        assert_eq!(parse_full_sbdf("03:00.0"), None);
    }
}
