//! Path validation, mirroring xenstored's `is_valid_nodename()` so that garbage is refused with
//! a typed error before it reaches the wire.

use thiserror::Error;
use xen_bindings::xs_wire::{XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};

use super::error::XsError;

/// Why a path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PathError {
    /// The empty string.
    #[error("empty path")]
    Empty,
    /// Longer than `XENSTORE_ABS_PATH_MAX` (absolute) or `XENSTORE_REL_PATH_MAX` (relative).
    #[error("path of {len} bytes is longer than {max}")]
    TooLong {
        /// The path length in bytes.
        len: usize,
        /// The applicable limit.
        max: usize,
    },
    /// A byte outside `[A-Za-z0-9-/_@]` (NUL included).
    #[error("invalid character {0:#04x}")]
    BadChar(u8),
    /// Ends in `/` (only `/` itself may).
    #[error("trailing '/'")]
    TrailingSlash,
    /// Contains `//`.
    #[error("empty path component ('//')")]
    DoubleSlash,
    /// A `@` special path where only nodes are allowed, or a malformed special path.
    #[error("special '@' path not allowed here")]
    Special,
}

/// What a path is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathUse {
    /// A node (read, write, ...): absolute (`/...`) or relative to the connection's home.
    Node,
    /// A watch: like [`PathUse::Node`], or a special path such as `@introduceDomain`.
    Watch,
}

/// Checks `path` against xenstored's rules: absolute (`/...`) or relative (no leading `/`,
/// relative to `/local/domain/<own domid>`), at most `XENSTORE_ABS_PATH_MAX` /
/// `XENSTORE_REL_PATH_MAX` bytes, characters `[A-Za-z0-9-/_@]`, no `//`, no trailing `/` except
/// for `/` itself. Watch paths may instead be special `@name` paths.
pub fn validate_path(path: &str, usage: PathUse) -> Result<(), PathError> {
    let b = path.as_bytes();
    let first = *b.first().ok_or(PathError::Empty)?;
    let special = first == b'@';
    let absolute = first == b'/';
    let max = if absolute || special { XENSTORE_ABS_PATH_MAX } else { XENSTORE_REL_PATH_MAX };
    if b.len() > max {
        return Err(PathError::TooLong { len: b.len(), max });
    }
    if let Some(&c) = b.iter().find(|&&c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@'))) {
        return Err(PathError::BadChar(c));
    }
    if special {
        // xenstored's special watch paths are "@name" with a plain name.
        if usage != PathUse::Watch || b.len() < 2 || b.iter().skip(1).any(|&c| c == b'/' || c == b'@') {
            return Err(PathError::Special);
        }
        return Ok(());
    }
    if b.len() > 1 && b.last() == Some(&b'/') {
        return Err(PathError::TrailingSlash);
    }
    if !absolute && b == b"/" {
        return Err(PathError::TrailingSlash);
    }
    if b.windows(2).any(|w| w == b"//") {
        return Err(PathError::DoubleSlash);
    }
    Ok(())
}

/// [`validate_path`] with the error wrapped in [`XsError::InvalidPath`] (the path in the error
/// is cut to 128 bytes).
pub(crate) fn check(path: &str, usage: PathUse) -> Result<(), XsError> {
    validate_path(path, usage).map_err(|reason| {
        let shown: String = path.chars().take(128).collect();
        XsError::InvalidPath { path: shown, reason }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths() {
        for p in
            ["/", "/local/domain/0", "device-model/5/state", "/a-b_c@d", "x", "/local/domain/0/backend/vbd/1/51712"]
        {
            assert_eq!(validate_path(p, PathUse::Node), Ok(()), "{p}");
        }
        assert_eq!(validate_path("@introduceDomain", PathUse::Watch), Ok(()));
        assert_eq!(validate_path("@releaseDomain", PathUse::Watch), Ok(()));
    }

    #[test]
    fn bad_paths() {
        assert_eq!(validate_path("", PathUse::Node), Err(PathError::Empty));
        assert_eq!(validate_path("/a/", PathUse::Node), Err(PathError::TrailingSlash));
        assert_eq!(validate_path("a/", PathUse::Node), Err(PathError::TrailingSlash));
        assert_eq!(validate_path("/a//b", PathUse::Node), Err(PathError::DoubleSlash));
        assert_eq!(validate_path("/a b", PathUse::Node), Err(PathError::BadChar(b' ')));
        assert_eq!(validate_path("/a\0b", PathUse::Node), Err(PathError::BadChar(0)));
        assert_eq!(validate_path("/a.b", PathUse::Node), Err(PathError::BadChar(b'.')));
        assert_eq!(validate_path("/ä", PathUse::Node), Err(PathError::BadChar(0xc3)));
        assert_eq!(validate_path("@introduceDomain", PathUse::Node), Err(PathError::Special));
        assert_eq!(validate_path("@", PathUse::Watch), Err(PathError::Special));
        assert_eq!(validate_path("@a/b", PathUse::Watch), Err(PathError::Special));
    }

    #[test]
    fn length_limits() {
        let abs = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX - 1));
        assert_eq!(validate_path(&abs, PathUse::Node), Ok(()));
        let abs = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
        assert_eq!(
            validate_path(&abs, PathUse::Node),
            Err(PathError::TooLong { len: XENSTORE_ABS_PATH_MAX + 1, max: XENSTORE_ABS_PATH_MAX })
        );
        let rel = "a".repeat(XENSTORE_REL_PATH_MAX);
        assert_eq!(validate_path(&rel, PathUse::Node), Ok(()));
        let rel = "a".repeat(XENSTORE_REL_PATH_MAX + 1);
        assert!(matches!(validate_path(&rel, PathUse::Node), Err(PathError::TooLong { .. })));
        let e = check(&rel, PathUse::Node).unwrap_err();
        assert!(matches!(e, XsError::InvalidPath { ref path, .. } if path.len() == 128));
    }
}
