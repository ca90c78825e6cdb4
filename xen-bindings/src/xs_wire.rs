//! The xenstore wire protocol: message header, message types, error names and the shared ring.
//!
//! Mirrors `xen/include/public/io/xs_wire.h` (MIT) of Xen 4.17. Over the unix socket and over the
//! ring alike, every message is a 16-byte native-endian [`XsdSockmsg`] followed by `len` payload
//! bytes; errors travel as the errno *name* (`"EINVAL\0"`) in an `XS_ERROR` reply.

use bytemuck::{Pod, Zeroable};

/// `XENSTORE_PAYLOAD_MAX` (xs_wire.h): a longer payload makes xenstored drop the connection.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX` (xs_wire.h).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX` (xs_wire.h).
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `XS_TYPE_COUNT` (`enum xsd_sockmsg_type`, xs_wire.h): one more than the highest 4.17 type.
pub const XS_TYPE_COUNT: u32 = 23;
/// `XS_INVALID` (xs_wire.h): guaranteed never to be a valid type.
pub const XS_INVALID: u32 = 0xffff;

/// `XS_WATCH_PATH` (`enum xs_watch_type`, xs_wire.h): index of the path in a watch event.
pub const XS_WATCH_PATH: u32 = 0;
/// `XS_WATCH_TOKEN` (xs_wire.h): index of the token in a watch event.
pub const XS_WATCH_TOKEN: u32 = 1;

/// `enum xsd_sockmsg_type` (xen/include/public/io/xs_wire.h) as of Xen 4.17. Value 20 (the removed
/// `XS_RESTRICT`) has no variant.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XsdSockmsgType {
    /// `XS_CONTROL` (also `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: sent unsolicited, with `req_id` and `tx_id` 0.
    WatchEvent = 15,
    /// `XS_ERROR`: the payload is an errno name, see [`XSD_ERRORS`].
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (`XS_SET_TARGET + 2`).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
}

impl XsdSockmsgType {
    /// Every 4.17 type, in numeric order.
    pub const ALL: [XsdSockmsgType; 22] = [
        XsdSockmsgType::Control,
        XsdSockmsgType::Directory,
        XsdSockmsgType::Read,
        XsdSockmsgType::GetPerms,
        XsdSockmsgType::Watch,
        XsdSockmsgType::Unwatch,
        XsdSockmsgType::TransactionStart,
        XsdSockmsgType::TransactionEnd,
        XsdSockmsgType::Introduce,
        XsdSockmsgType::Release,
        XsdSockmsgType::GetDomainPath,
        XsdSockmsgType::Write,
        XsdSockmsgType::Mkdir,
        XsdSockmsgType::Rm,
        XsdSockmsgType::SetPerms,
        XsdSockmsgType::WatchEvent,
        XsdSockmsgType::Error,
        XsdSockmsgType::IsDomainIntroduced,
        XsdSockmsgType::Resume,
        XsdSockmsgType::SetTarget,
        XsdSockmsgType::ResetWatches,
        XsdSockmsgType::DirectoryPart,
    ];

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Parses a wire value; `None` for 20 (removed `XS_RESTRICT`), newer types and garbage.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_u32() == v)
    }

    /// The C enumerator name, e.g. `"XS_READ"`.
    pub fn name(self) -> &'static str {
        match self {
            XsdSockmsgType::Control => "XS_CONTROL",
            XsdSockmsgType::Directory => "XS_DIRECTORY",
            XsdSockmsgType::Read => "XS_READ",
            XsdSockmsgType::GetPerms => "XS_GET_PERMS",
            XsdSockmsgType::Watch => "XS_WATCH",
            XsdSockmsgType::Unwatch => "XS_UNWATCH",
            XsdSockmsgType::TransactionStart => "XS_TRANSACTION_START",
            XsdSockmsgType::TransactionEnd => "XS_TRANSACTION_END",
            XsdSockmsgType::Introduce => "XS_INTRODUCE",
            XsdSockmsgType::Release => "XS_RELEASE",
            XsdSockmsgType::GetDomainPath => "XS_GET_DOMAIN_PATH",
            XsdSockmsgType::Write => "XS_WRITE",
            XsdSockmsgType::Mkdir => "XS_MKDIR",
            XsdSockmsgType::Rm => "XS_RM",
            XsdSockmsgType::SetPerms => "XS_SET_PERMS",
            XsdSockmsgType::WatchEvent => "XS_WATCH_EVENT",
            XsdSockmsgType::Error => "XS_ERROR",
            XsdSockmsgType::IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED",
            XsdSockmsgType::Resume => "XS_RESUME",
            XsdSockmsgType::SetTarget => "XS_SET_TARGET",
            XsdSockmsgType::ResetWatches => "XS_RESET_WATCHES",
            XsdSockmsgType::DirectoryPart => "XS_DIRECTORY_PART",
        }
    }
}

/// `struct xsd_sockmsg` (xen/include/public/io/xs_wire.h), 16 bytes, native endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct XsdSockmsg {
    /// `XS_*` ([`XsdSockmsgType`]).
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Payload length (at most [`XENSTORE_PAYLOAD_MAX`]).
    pub len: u32,
}

impl XsdSockmsg {
    /// A header of type `ty`.
    pub fn new(ty: XsdSockmsgType, req_id: u32, tx_id: u32, len: u32) -> Self {
        Self { type_: ty.as_u32(), req_id, tx_id, len }
    }

    /// The type, if it is a known one.
    pub fn msg_type(&self) -> Option<XsdSockmsgType> {
        XsdSockmsgType::from_u32(self.type_)
    }
}

/// The 16 wire bytes of a header.
pub fn encode_header(h: &XsdSockmsg) -> [u8; 16] {
    bytemuck::cast(*h)
}

/// Parses the 16 wire bytes of a header.
pub fn decode_header(b: &[u8; 16]) -> XsdSockmsg {
    bytemuck::cast(*b)
}

/// One entry of the `xsd_errors[]` table (`struct xsd_errors`, xen/include/public/io/xs_wire.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XsdError {
    /// The errno value (Linux numbering on Linux).
    pub errnum: i32,
    /// The errno name sent on the wire.
    pub errstring: &'static str,
}

const fn xsd_error(errnum: i32, errstring: &'static str) -> XsdError {
    XsdError { errnum, errstring }
}

/// `xsd_errors[]` (xs_wire.h), in header order; the first entry (EINVAL) is what both sides fall
/// back to for an untranslatable error.
pub const XSD_ERRORS: [XsdError; 16] = [
    xsd_error(libc::EINVAL, "EINVAL"),
    xsd_error(libc::EACCES, "EACCES"),
    xsd_error(libc::EEXIST, "EEXIST"),
    xsd_error(libc::EISDIR, "EISDIR"),
    xsd_error(libc::ENOENT, "ENOENT"),
    xsd_error(libc::ENOMEM, "ENOMEM"),
    xsd_error(libc::ENOSPC, "ENOSPC"),
    xsd_error(libc::EIO, "EIO"),
    xsd_error(libc::ENOTEMPTY, "ENOTEMPTY"),
    xsd_error(libc::ENOSYS, "ENOSYS"),
    xsd_error(libc::EROFS, "EROFS"),
    xsd_error(libc::EBUSY, "EBUSY"),
    xsd_error(libc::EAGAIN, "EAGAIN"),
    xsd_error(libc::EISCONN, "EISCONN"),
    xsd_error(libc::E2BIG, "E2BIG"),
    xsd_error(libc::EPERM, "EPERM"),
];

/// The errno of an error name from `xsd_errors[]`.
pub fn xsd_error_errno(name: &str) -> Option<i32> {
    XSD_ERRORS.iter().find(|e| e.errstring == name).map(|e| e.errnum)
}

/// The wire name of an errno from `xsd_errors[]`.
pub fn xsd_error_name(errnum: i32) -> Option<&'static str> {
    XSD_ERRORS.iter().find(|e| e.errnum == errnum).map(|e| e.errstring)
}

/// The errno carried by an `XS_ERROR` payload (`"EINVAL\0"`); names outside the table map to
/// EINVAL, as libxenstore does.
pub fn errno_from_error_payload(payload: &[u8]) -> i32 {
    let name = payload.split(|&b| b == 0).next().unwrap_or_default();
    core::str::from_utf8(name).ok().and_then(xsd_error_errno).unwrap_or(libc::EINVAL)
}

/// The `XS_ERROR` payload for `errnum` (name plus NUL); errnos outside the table become
/// `"EINVAL"`, as xenstored does.
pub fn error_reply_payload(errnum: i32) -> Vec<u8> {
    let mut v = xsd_error_name(errnum).unwrap_or("EINVAL").as_bytes().to_vec();
    v.push(0);
    v
}

/// `XENSTORE_RING_SIZE` (xs_wire.h): bytes in each direction of the shared ring.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `MASK_XENSTORE_IDX(idx)` (xs_wire.h): ring offset of a free-running index.
pub const fn mask_xenstore_idx(idx: u32) -> u32 {
    idx & (XENSTORE_RING_SIZE as u32 - 1)
}

/// `XENSTORE_SERVER_FEATURE_RECONNECTION` (xs_wire.h).
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR` (xs_wire.h).
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED` (xs_wire.h): value of `connection`.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT` (xs_wire.h).
pub const XENSTORE_RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_NONE` (xs_wire.h): value of `error`.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM` (xs_wire.h).
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX` (xs_wire.h).
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO` (xs_wire.h).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface` (xen/include/public/io/xs_wire.h), 2076 bytes: the shared
/// xenstore ring page of a domain.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct XenstoreDomainInterface {
    /// Requests to the daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// `XENSTORE_RING_IDX req_cons`.
    pub req_cons: u32,
    /// `req_prod`.
    pub req_prod: u32,
    /// `rsp_cons`.
    pub rsp_cons: u32,
    /// `rsp_prod`.
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*`.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`.
    pub error: u32,
}

impl Default for XenstoreDomainInterface {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip() {
        for (i, t) in XsdSockmsgType::ALL.iter().enumerate() {
            assert_eq!(XsdSockmsgType::from_u32(t.as_u32()), Some(*t));
            assert!(t.name().starts_with("XS_"));
            if i > 0 {
                assert!(XsdSockmsgType::ALL[i - 1].as_u32() < t.as_u32());
            }
        }
        assert_eq!(XsdSockmsgType::from_u32(20), None);
        assert_eq!(XsdSockmsgType::from_u32(XS_TYPE_COUNT), None);
        assert_eq!(XsdSockmsgType::DirectoryPart.as_u32() + 1, XS_TYPE_COUNT);
    }

    #[test]
    fn header_bytes() {
        let h = XsdSockmsg::new(XsdSockmsgType::Read, 7, 0, 12);
        let b = encode_header(&h);
        assert_eq!(&b[..8], &[2, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(decode_header(&b), h);
        assert_eq!(decode_header(&b).msg_type(), Some(XsdSockmsgType::Read));
    }

    #[test]
    fn errors_both_ways() {
        assert_eq!(xsd_error_errno("ENOENT"), Some(libc::ENOENT));
        assert_eq!(xsd_error_name(libc::EAGAIN), Some("EAGAIN"));
        assert_eq!(errno_from_error_payload(b"EACCES\0"), libc::EACCES);
        assert_eq!(errno_from_error_payload(b"EWHATEVER\0"), libc::EINVAL);
        assert_eq!(error_reply_payload(libc::E2BIG), b"E2BIG\0");
        assert_eq!(error_reply_payload(libc::ETIMEDOUT), b"EINVAL\0");
    }

    #[test]
    fn ring() {
        assert_eq!(core::mem::size_of::<XenstoreDomainInterface>(), 2076);
        assert_eq!(mask_xenstore_idx(1025), 1);
        assert_eq!(XenstoreDomainInterface::default().rsp_prod, 0);
    }
}
