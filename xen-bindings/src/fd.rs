//! Taking ownership of file descriptors inherited from the parent process (libxl passes the
//! pre-bound QMP socket as `fd=N` and the restore file as `-incoming fd:N`).
//!
//! This is the one place where a raw fd number becomes an owned fd, so it lives in the crate that
//! is allowed `unsafe`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

static ADOPTED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Takes ownership of the inherited descriptor `raw`: checks it is open and not already adopted,
/// and sets close-on-exec. Fails (without touching it) for stdio, negative numbers, closed fds
/// and second adoptions.
pub fn adopt_inherited(raw: i32) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("fd {raw} is not an inherited descriptor")));
    }
    let mut adopted = ADOPTED.lock().map_err(|_| io::Error::other("fd registry poisoned"))?;
    if adopted.contains(&raw) {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("fd {raw} was already taken")));
    }
    // SAFETY: F_GETFD only queries the descriptor table; no memory is touched.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("fd {raw} is not open: {}", io::Error::last_os_error()),
        ));
    }
    // SAFETY: F_SETFD on an open descriptor.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    adopted.push(raw);
    // SAFETY: `raw` is open (checked above), was inherited from our parent, and this registry
    // guarantees it is turned into an `OwnedFd` at most once in this process, so no other owner
    // will close it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Takes ownership of a descriptor the kernel just installed in this process through an
/// `SCM_RIGHTS` control message (recvmsg). Checks it is open; sets close-on-exec.
pub fn adopt_received(raw: i32) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("fd {raw} is negative")));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFD on an open descriptor.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel created this descriptor for us in the recvmsg call that delivered it; the
    // caller passes each received number exactly once, so this is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Ignores SIGXFSZ, so writes past RLIMIT_FSIZE fail with EFBIG instead of killing the process.
pub fn ignore_sigxfsz() -> Result<(), i32> {
    // SAFETY: installing SIG_IGN runs no code in signal context; the old handler is discarded.
    let old = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if old == libc::SIG_ERR {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn adopts_once_and_refuses_closed_or_stdio() {
        let f = std::fs::File::open("/dev/null").expect("open");
        let raw = f.into_raw_fd();
        let owned = adopt_inherited(raw).expect("adopt");
        assert_eq!(owned.as_raw_fd(), raw);
        assert!(adopt_inherited(raw).is_err(), "second adoption refused");
        assert!(adopt_inherited(1).is_err());
        assert!(adopt_inherited(-5).is_err());
        assert!(adopt_inherited(100_000).is_err());
    }
}
