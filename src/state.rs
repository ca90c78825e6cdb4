//! The device-state blob of `xen-save-devices-state` / `xen-load-devices-state` (what libxl puts
//! into the migration stream as the emulator context and hands back with `-incoming fd:N`).
//!
//! Format, all integers little-endian:
//! ```text
//! magic   "Q35DMST\0"            8 bytes
//! version u32                    (STATE_VERSION)
//! length  u64                    bytes of payload
//! payload                        sections, see Machine::save_state
//! fnv1a64 u64                    over magic..payload
//! ```
//! Loading checks magic, version, length and checksum before anything is changed.

use thiserror::Error;

/// Magic at the start of a blob.
pub const MAGIC: &[u8; 8] = b"Q35DMST\0";
/// Current format version.
pub const STATE_VERSION: u32 = 1;
/// Largest blob accepted (a full 256-bus topology is far below this).
pub const MAX_BLOB: usize = 64 << 20;

/// Why a blob was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a q35dm state blob.
    #[error("not a q35dm device-state blob (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("device-state blob version {found}, this q35dm reads version {STATE_VERSION}")]
    Version {
        /// Version found.
        found: u32,
    },
    /// Length does not match the data.
    #[error(
        "device-state blob is truncated or has trailing data: header says {declared} payload bytes, found {found}"
    )]
    Length {
        /// Declared.
        declared: u64,
        /// Available.
        found: u64,
    },
    /// Checksum mismatch.
    #[error("device-state blob checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum {
        /// Stored.
        stored: u64,
        /// Computed.
        computed: u64,
    },
    /// A field ran past the end of its section.
    #[error("device-state blob truncated at byte {0}")]
    Truncated(usize),
    /// Content that does not fit this device model.
    #[error("device-state blob does not match this machine: {0}")]
    Mismatch(String),
}

/// 64-bit FNV-1a.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Appends little-endian fields.
#[derive(Debug, Default)]
pub struct Writer {
    /// Bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A u8.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Length-prefixed (u32) bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(b);
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

/// Reads fields written by [`Writer`], never past the end.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self.pos.checked_add(n).ok_or(StateError::Truncated(self.pos))?;
        let s = self.data.get(self.pos..end).ok_or(StateError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    /// A u8.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    /// A u16.
    pub fn u16(&mut self) -> Result<u16, StateError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }
    /// A u32.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    /// A u64.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A length-prefixed string.
    pub fn str(&mut self) -> Result<String, StateError> {
        let at = self.pos;
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| StateError::Mismatch(format!("string at byte {at} is not UTF-8")))
    }
    /// Whether everything was read.
    pub fn done(&self) -> bool {
        self.pos == self.data.len()
    }
}

/// Wraps a payload into a blob.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(MAGIC);
    w.u32(STATE_VERSION);
    w.u64(payload.len() as u64);
    w.buf.extend_from_slice(payload);
    let sum = fnv1a64(&w.buf);
    w.u64(sum);
    w.buf
}

/// Checks a blob and returns its payload.
pub fn open(blob: &[u8]) -> Result<&[u8], StateError> {
    if blob.len() < 28 || blob.get(..8) != Some(MAGIC.as_slice()) {
        return Err(StateError::BadMagic);
    }
    let mut r = Reader::new(blob);
    r.take(8)?;
    let version = r.u32()?;
    if version != STATE_VERSION {
        return Err(StateError::Version { found: version });
    }
    let declared = r.u64()?;
    let found = (blob.len() - 28) as u64;
    if declared != found {
        return Err(StateError::Length { declared, found });
    }
    let body_end = blob.len() - 8;
    let stored = Reader::new(blob.get(body_end..).unwrap_or(&[])).u64()?;
    let computed = fnv1a64(blob.get(..body_end).unwrap_or(&[]));
    if stored != computed {
        return Err(StateError::Checksum { stored, computed });
    }
    Ok(blob.get(20..body_end).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_corruption_is_caught() {
        let mut w = Writer::default();
        w.str("rp1");
        w.u64(42);
        let blob = seal(&w.buf);
        assert_eq!(open(&blob).unwrap(), &w.buf[..]);
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(open(&bad), Err(StateError::BadMagic));
        let mut bad = blob.clone();
        bad[8] = 9;
        assert!(matches!(open(&bad), Err(StateError::Version { found: 9 })));
        let mut bad = blob.clone();
        bad[22] ^= 1;
        assert!(matches!(open(&bad), Err(StateError::Checksum { .. })));
        assert!(matches!(open(&blob[..blob.len() - 1]), Err(StateError::Length { .. })));
        assert_eq!(open(b"short"), Err(StateError::BadMagic));
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u16(), Err(StateError::Truncated(2)));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.bytes().is_err(), "a huge length prefix is refused");
    }
}
