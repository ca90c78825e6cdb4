//! Node permissions: `GET_PERMS` / `SET_PERMS` lists such as `n0\0r5\0`.

use std::fmt;

use super::error::{ProtocolError, XsError};

/// What a domain may do with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The wire letter.
    pub fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// Parses a wire letter.
    pub fn from_letter(c: u8) -> Option<Self> {
        match c {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::Both),
            _ => None,
        }
    }
}

/// One entry of a permission list: `access` for `domid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain.
    pub domid: u32,
    /// Its access.
    pub access: Access,
}

impl Perm {
    /// An entry.
    pub const fn new(domid: u32, access: Access) -> Self {
        Self { domid, access }
    }

    /// Parses one wire entry (`r5`); the domid is decimal.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let (&letter, num) = s.split_first()?;
        let access = Access::from_letter(letter)?;
        if num.is_empty() || num.len() > 10 || !num.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let domid = std::str::from_utf8(num).ok()?.parse().ok()?;
        Some(Self { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// A node's permission list. The first entry is special: its domid owns the node (and may
/// always read, write and change permissions) and its access is the default for every domain
/// not listed in `acl`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Owner domid and default access (the first wire entry).
    pub owner: Perm,
    /// Further per-domain entries, in wire order.
    pub acl: Vec<Perm>,
}

impl Permissions {
    /// Owned by `owner`, others get `default`, no further entries.
    pub fn new(owner: u32, default: Access) -> Self {
        Self { owner: Perm::new(owner, default), acl: Vec::new() }
    }

    /// Adds an entry (builder style).
    pub fn with(mut self, domid: u32, access: Access) -> Self {
        self.acl.push(Perm::new(domid, access));
        self
    }

    /// The wire form: every entry followed by a NUL.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for p in std::iter::once(&self.owner).chain(self.acl.iter()) {
            v.extend_from_slice(p.to_string().as_bytes());
            v.push(0);
        }
        v
    }

    /// Parses a `GET_PERMS` reply (NUL-separated entries, the last NUL optional).
    pub fn from_wire(payload: &[u8]) -> Result<Self, XsError> {
        let body = payload.strip_suffix(&[0]).unwrap_or(payload);
        let mut it = body.split(|&b| b == 0);
        let bad = || XsError::Protocol(ProtocolError::malformed("GET_PERMS"));
        let owner = it.next().and_then(Perm::parse).ok_or_else(bad)?;
        let acl = it.map(|s| Perm::parse(s).ok_or_else(bad)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { owner, acl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Permissions::new(0, Access::None).with(5, Access::Read).with(7, Access::Both).with(9, Access::Write);
        let w = p.to_wire();
        assert_eq!(w, b"n0\0r5\0b7\0w9\0");
        assert_eq!(Permissions::from_wire(&w).unwrap(), p);
        assert_eq!(Permissions::from_wire(b"w3").unwrap(), Permissions::new(3, Access::Write));
    }

    #[test]
    fn garbage() {
        for bad in [&b""[..], b"\0", b"x0\0", b"r\0", b"r-1\0", b"r1a\0", b"n0\0\0", b"r99999999999\0"] {
            assert!(Permissions::from_wire(bad).is_err(), "{bad:?}");
        }
    }
}
