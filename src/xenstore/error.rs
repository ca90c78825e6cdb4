//! The client's error type.

use std::time::Duration;

use thiserror::Error;
use xen_bindings::xs_wire::{xsd_error_name, XsdSockmsgType, XENSTORE_PAYLOAD_MAX};

use super::path::PathError;

/// Everything a xenstore operation can fail with.
#[derive(Debug, Error)]
pub enum XsError {
    /// xenstored answered `XS_ERROR`; `name` is the errno name it sent (`"ENOENT"`, `"EACCES"`,
    /// `"EAGAIN"`, ...), `errno` the matching Linux errno. Names outside `xsd_errors[]` are
    /// reported as EINVAL, as libxenstore does.
    #[error("xenstored replied {name}")]
    Errno {
        /// The errno value.
        errno: i32,
        /// The errno name from the wire.
        name: &'static str,
    },
    /// The request payload is longer than `XENSTORE_PAYLOAD_MAX`; refused before sending
    /// (xenstored would drop the connection).
    #[error("request payload of {len} bytes exceeds XENSTORE_PAYLOAD_MAX ({XENSTORE_PAYLOAD_MAX})")]
    PayloadTooLarge {
        /// The payload length that was refused.
        len: usize,
    },
    /// The path is not one xenstored would accept; refused before sending.
    #[error("invalid xenstore path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path (possibly truncated for display).
        path: String,
        /// What is wrong with it.
        reason: PathError,
    },
    /// A watch token that cannot be sent (contains NUL) or is already used by another watch of
    /// this client (events are routed by token, so tokens must be unique per client).
    #[error("invalid watch token {token:?}: {reason}")]
    InvalidToken {
        /// The token.
        token: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An argument other than a path or token is invalid (for example an empty permission list).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A value was read successfully but is not UTF-8 (only from the `*_string` helpers).
    #[error("value of {path:?} is not UTF-8")]
    NotUtf8 {
        /// The node.
        path: String,
    },
    /// An I/O error on the initial connection.
    #[error("xenstore I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// xenstored sent something that violates the protocol. The connection is dropped and
    /// re-established; every request in flight on it fails with this error.
    #[error("xenstore protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The connection broke while a request that is not safe to repeat was in flight (or an
    /// idempotent one had already been retried once); its outcome is unknown.
    #[error("connection to xenstored lost while a {op} request was in flight; outcome unknown")]
    ConnectionLost {
        /// The request type, e.g. `"XS_CONTROL"`.
        op: &'static str,
    },
    /// The transaction belonged to a connection that has since been replaced (xenstored
    /// restarted). Equivalent to EAGAIN: [`super::Xenstore::transaction`] retries it.
    #[error("transaction lost: the connection to xenstored was re-established")]
    TransactionLost,
    /// No reply within the configured request timeout. The connection is treated as broken and
    /// re-established.
    #[error("no reply from xenstored within {0:?}")]
    Timeout(Duration),
    /// The client gave up reconnecting (see [`super::ReconnectPolicy`]) or could not connect at
    /// all.
    #[error("xenstored unreachable: {0}")]
    Disconnected(String),
    /// The client is shutting down.
    #[error("xenstore client closed")]
    Closed,
}

impl XsError {
    /// The errno from an `XS_ERROR` reply, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            XsError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True for xenstored's ENOENT.
    pub fn is_enoent(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// True if a transaction should be restarted: xenstored's EAGAIN (a conflict at commit) or a
    /// transaction lost to a reconnect.
    pub fn is_again(&self) -> bool {
        matches!(self, XsError::TransactionLost) || self.errno() == Some(libc::EAGAIN)
    }

    /// The error for an errno from the `xsd_errors[]` table (EINVAL if it is not in it).
    pub(crate) fn from_errno(errno: i32) -> Self {
        match xsd_error_name(errno) {
            Some(name) => XsError::Errno { errno, name },
            None => XsError::Errno { errno: libc::EINVAL, name: "EINVAL" },
        }
    }
}

/// A violation of the wire protocol by the server.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The stream ended in the middle of a message (header or payload).
    #[error("connection closed in the middle of a message ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the message.
        have: usize,
        /// Bytes the message needs.
        need: usize,
    },
    /// A header announced a payload longer than `XENSTORE_PAYLOAD_MAX`.
    #[error("message announces {len} payload bytes (max {XENSTORE_PAYLOAD_MAX})")]
    Oversized {
        /// The announced length.
        len: u32,
    },
    /// A message type the client does not know.
    #[error("unknown message type {0}")]
    UnknownType(u32),
    /// A reply whose `req_id` matches no outstanding request.
    #[error("reply with unexpected req_id {req_id} (type {ty})")]
    UnexpectedReqId {
        /// The req_id received.
        req_id: u32,
        /// Its type.
        ty: u32,
    },
    /// A reply of a different type than the request (and not `XS_ERROR`).
    #[error("reply type {got} to a {expected} request")]
    WrongReplyType {
        /// The request type name.
        expected: &'static str,
        /// The type received.
        got: u32,
    },
    /// A reply or event whose payload does not have the expected shape.
    #[error("malformed {what} payload")]
    Malformed {
        /// Which payload.
        what: &'static str,
    },
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::Malformed`].
    pub(crate) fn malformed(what: &'static str) -> Self {
        ProtocolError::Malformed { what }
    }

    /// A reply type mismatch for a request of type `expected`.
    pub(crate) fn wrong_type(expected: XsdSockmsgType, got: u32) -> Self {
        ProtocolError::WrongReplyType { expected: expected.name(), got }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_helpers() {
        let e = XsError::from_errno(libc::ENOENT);
        assert!(e.is_enoent());
        assert_eq!(e.to_string(), "xenstored replied ENOENT");
        assert!(XsError::from_errno(libc::EAGAIN).is_again());
        assert!(XsError::TransactionLost.is_again());
        assert!(!XsError::Closed.is_again());
        assert_eq!(XsError::from_errno(libc::ETIMEDOUT).errno(), Some(libc::EINVAL));
    }
}
