//! Message framing: encoding requests and cutting a received byte stream into messages.

use xen_bindings::xs_wire::{decode_header, encode_header, XsdSockmsg, XsdSockmsgType, XENSTORE_PAYLOAD_MAX};

use super::error::{ProtocolError, XsError};

/// Size of the wire header.
pub const HEADER_LEN: usize = 16;

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header as received.
    pub header: XsdSockmsg,
    /// The payload (`header.len` bytes).
    pub payload: Vec<u8>,
}

/// Encodes a message; refuses payloads over `XENSTORE_PAYLOAD_MAX`.
pub fn encode(ty: XsdSockmsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    if payload.len() > XENSTORE_PAYLOAD_MAX {
        return Err(XsError::PayloadTooLarge { len: payload.len() });
    }
    let len = u32::try_from(payload.len()).map_err(|_| XsError::PayloadTooLarge { len: payload.len() })?;
    let mut v = Vec::with_capacity(HEADER_LEN.saturating_add(payload.len()));
    v.extend_from_slice(&encode_header(&XsdSockmsg::new(ty, req_id, tx_id, len)));
    v.extend_from_slice(payload);
    Ok(v)
}

/// Joins NUL-terminated strings (each followed by a NUL) and an optional raw tail.
pub fn join(parts: &[&[u8]], tail: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
        v.push(0);
    }
    if let Some(t) = tail {
        v.extend_from_slice(t);
    }
    v
}

/// Reassembles messages from a byte stream. The buffer never holds more than one partial
/// message plus what the last read brought.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet a complete message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next complete message, if any. A header announcing more than
    /// `XENSTORE_PAYLOAD_MAX` bytes is an error (the stream cannot be trusted after it).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let Some(hb) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(hb);
        let header = decode_header(&raw);
        let len = usize::try_from(header.len).map_err(|_| ProtocolError::Oversized { len: header.len })?;
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(ProtocolError::Oversized { len: header.len });
        }
        let total = HEADER_LEN.checked_add(len).ok_or(ProtocolError::Oversized { len: header.len })?;
        let Some(payload) = self.buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.buf.drain(..total);
        Ok(Some(Frame { header, payload }))
    }

    /// The error for a stream that ended now: `None` if it ended between messages.
    pub fn eof_error(&self) -> Option<ProtocolError> {
        if self.buf.is_empty() {
            return None;
        }
        let need = match self.buf.get(..HEADER_LEN) {
            Some(hb) => {
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(hb);
                let len = usize::try_from(decode_header(&raw).len).unwrap_or(usize::MAX);
                HEADER_LEN.saturating_add(len)
            }
            None => HEADER_LEN,
        };
        Some(ProtocolError::Truncated { have: self.buf.len(), need })
    }
}

/// Splits a NUL-separated string list (`a\0b\0`; the final NUL is optional) into its strings.
/// An empty payload is an empty list.
pub fn split_strings(payload: &[u8]) -> Vec<&[u8]> {
    if payload.is_empty() {
        return Vec::new();
    }
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    body.split(|&b| b == 0).collect()
}

/// The bytes before the first NUL (all of them if there is none).
pub fn until_nul(payload: &[u8]) -> &[u8] {
    payload.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_reassemble_byte_by_byte() {
        let a = encode(XsdSockmsgType::Read, 7, 0, b"/a\0").unwrap();
        let b = encode(XsdSockmsgType::Write, 8, 3, b"/b\0xyz").unwrap();
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut fb = FrameBuf::new();
        let mut got = Vec::new();
        for byte in stream {
            fb.push(&[byte]);
            while let Some(f) = fb.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header, XsdSockmsg::new(XsdSockmsgType::Read, 7, 0, 3));
        assert_eq!(got[0].payload, b"/a\0");
        assert_eq!(got[1].header.tx_id, 3);
        assert_eq!(got[1].payload, b"/b\0xyz");
        assert_eq!(fb.pending(), 0);
        assert_eq!(fb.eof_error(), None);
    }

    #[test]
    fn limits_and_truncation() {
        assert!(encode(XsdSockmsgType::Write, 1, 0, &[b'a'; XENSTORE_PAYLOAD_MAX]).is_ok());
        assert!(matches!(
            encode(XsdSockmsgType::Write, 1, 0, &[b'a'; XENSTORE_PAYLOAD_MAX + 1]),
            Err(XsError::PayloadTooLarge { len }) if len == XENSTORE_PAYLOAD_MAX + 1
        ));
        let mut fb = FrameBuf::new();
        fb.push(&encode_header(&XsdSockmsg { type_: 2, req_id: 1, tx_id: 0, len: u32::MAX }));
        assert_eq!(fb.next_frame(), Err(ProtocolError::Oversized { len: u32::MAX }));
        let mut fb = FrameBuf::new();
        fb.push(&[1, 2, 3]);
        assert_eq!(fb.next_frame(), Ok(None));
        assert_eq!(fb.eof_error(), Some(ProtocolError::Truncated { have: 3, need: 16 }));
        let mut fb = FrameBuf::new();
        fb.push(&encode(XsdSockmsgType::Read, 1, 0, b"abcdef").unwrap()[..18]);
        assert_eq!(fb.next_frame(), Ok(None));
        assert_eq!(fb.eof_error(), Some(ProtocolError::Truncated { have: 18, need: 22 }));
    }

    #[test]
    fn strings() {
        assert!(split_strings(b"").is_empty());
        assert_eq!(split_strings(b"a\0bc\0"), vec![&b"a"[..], b"bc"]);
        assert_eq!(split_strings(b"a\0bc"), vec![&b"a"[..], b"bc"]);
        assert_eq!(until_nul(b"12\0"), b"12");
        assert_eq!(join(&[b"/p", b"tok"], None), b"/p\0tok\0");
        assert_eq!(join(&[b"/p"], Some(b"v")), b"/p\0v");
    }
}
