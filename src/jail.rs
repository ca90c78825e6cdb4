//! Privilege reduction after set-up (what xl's `dm_restrict` asks for, docs/designs/
//! qemu-deprivilege.md; security.md §3.3):
//!
//! 1. `IOCTL_PRIVCMD_RESTRICT` and `IOCTL_EVTCHN_RESTRICT_DOMID` bind the Xen handles to the
//!    guest's domain (on real Xen);
//! 2. resource limits: FSIZE 256 KiB, CORE/MSGQUEUE/LOCKS/MEMLOCK 0, NOFILE = what is open now
//!    plus room for QMP connections (SIGXFSZ is ignored so an over-long log fails writes
//!    instead of killing the process);
//! 3. `chroot` into the given (empty) directory;
//! 4. drop to the given uid/gid with no supplementary groups (all threads);
//! 5. `no_new_privs`, then a seccomp allow-list on every thread: what the running device model
//!    needs (I/O on its fds, the Xen ioctls, memory management without `PROT_EXEC`, threads,
//!    time, signals, accepting QMP connections). `open`/`openat` fail with EACCES; any other
//!    syscall kills the process.
//!
//! Passthrough needs domctl/physdev hypercalls, which a restricted privcmd refuses; they are
//! made before the drop or by the toolstack (see toolstack-hooks/README.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use log::info;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{chdir, chroot, setgroups, setresgid, setresuid, Gid, Uid, User};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use thiserror::Error;
use xen_bindings::sys::XenSys;

use crate::cmdline::config::RunAs;

/// What to restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JailSpec {
    /// Restrict the Xen handles to this domain.
    pub restrict_domid: Option<u16>,
    /// Directory to chroot into.
    pub chroot: Option<PathBuf>,
    /// User to become.
    pub runas: Option<RunAs>,
    /// Apply the rlimits.
    pub rlimits: bool,
    /// Install the seccomp allow-list.
    pub seccomp: bool,
}

impl JailSpec {
    /// Whether anything is asked.
    pub fn is_empty(&self) -> bool {
        self.restrict_domid.is_none() && self.chroot.is_none() && self.runas.is_none() && !self.rlimits && !self.seccomp
    }
}

/// A step that failed (the device model must not run half-jailed: the caller exits).
#[derive(Debug, Error)]
pub enum JailError {
    /// Unknown user.
    #[error("-runas {0:?}: no such user")]
    NoUser(String),
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// Step.
        step: String,
        /// Cause.
        source: nix::Error,
    },
    /// A Xen restriction failed.
    #[error("{0}")]
    Xen(String),
    /// Building or installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// Dropping privileges did not stick.
    #[error("privileges were not dropped: {0}")]
    NotDropped(String),
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> JailError {
    let step = step.into();
    move |source| JailError::Sys { step, source }
}

/// Resolves the user (before any chroot hides /etc/passwd).
pub fn resolve(runas: &RunAs) -> Result<(Uid, Gid), JailError> {
    match runas {
        RunAs::Ids { uid, gid } => Ok((Uid::from_raw(*uid), Gid::from_raw(*gid))),
        RunAs::User(name) => {
            let u = User::from_name(name).map_err(sys(format!("looking up user {name:?}")))?;
            let u = u.ok_or_else(|| JailError::NoUser(name.clone()))?;
            Ok((u.uid, u.gid))
        }
    }
}

/// Applies `spec`. Returns a one-line summary.
pub fn apply(spec: &JailSpec, xen: &dyn XenSys) -> Result<String, JailError> {
    let mut done = Vec::new();
    let ids = spec.runas.as_ref().map(resolve).transpose()?;
    if let Some(d) = spec.restrict_domid {
        xen.privcmd_restrict(d).map_err(|e| JailError::Xen(e.to_string()))?;
        xen.evtchn_restrict_domid(d).map_err(|e| JailError::Xen(e.to_string()))?;
        done.push(format!("privcmd+evtchn restricted to domain {d}"));
    }
    if spec.rlimits {
        xen_bindings::fd::ignore_sigxfsz()
            .map_err(|e| JailError::Sys { step: "ignoring SIGXFSZ".into(), source: nix::Error::from_raw(e) })?;
        let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(64);
        let nofile = open + 64;
        for (r, v) in [
            (Resource::RLIMIT_FSIZE, 256 * 1024),
            (Resource::RLIMIT_CORE, 0),
            (Resource::RLIMIT_MSGQUEUE, 0),
            (Resource::RLIMIT_LOCKS, 0),
            (Resource::RLIMIT_MEMLOCK, 0),
            (Resource::RLIMIT_NOFILE, nofile),
        ] {
            let (_, hard) = getrlimit(r).map_err(sys(format!("getrlimit {r:?}")))?;
            let v = v.min(hard);
            setrlimit(r, v, v).map_err(sys(format!("setrlimit {r:?} {v}")))?;
        }
        done.push(format!("rlimits (FSIZE 256K, CORE/MSGQUEUE/LOCKS/MEMLOCK 0, NOFILE {nofile})"));
    }
    if let Some(dir) = &spec.chroot {
        chroot(dir).map_err(sys(format!("chroot {}", dir.display())))?;
        chdir("/").map_err(sys("chdir /"))?;
        done.push(format!("chroot {}", dir.display()));
    }
    if let Some((uid, gid)) = ids {
        setgroups(&[]).map_err(sys("setgroups []"))?;
        setresgid(gid, gid, gid).map_err(sys(format!("setresgid {gid}")))?;
        setresuid(uid, uid, uid).map_err(sys(format!("setresuid {uid}")))?;
        if uid.as_raw() != 0 && setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
            return Err(JailError::NotDropped("root could be regained".into()));
        }
        done.push(format!("uid {uid} gid {gid}, no supplementary groups"));
    }
    if spec.seccomp {
        nix::sys::prctl::set_no_new_privs().map_err(sys("no_new_privs"))?;
        for prog in filters()? {
            seccompiler::apply_filter_all_threads(&prog).map_err(|e| JailError::Seccomp(e.to_string()))?;
        }
        done.push("no_new_privs + seccomp allow-list on all threads".into());
    }
    let s = done.join("; ");
    if !s.is_empty() {
        info!("privileges reduced: {s}");
    }
    Ok(s)
}

fn cond(arg: u8, op: SeccompCmpOp, len: SeccompCmpArgLen, v: u64) -> Result<SeccompCondition, JailError> {
    SeccompCondition::new(arg, len, op, v).map_err(|e| JailError::Seccomp(e.to_string()))
}

/// The seccomp filters: the allow-list (anything else kills the process), and in front of it
/// one that refuses `open`/`openat` with EACCES. The kernel runs every filter and the strictest
/// result wins (KILL > ERRNO > ALLOW), so the opens are allowed by the first and refused by the
/// second.
pub fn filters() -> Result<Vec<BpfProgram>, JailError> {
    use libc::*;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let always = [
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_lseek,
        SYS_close,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_poll,
        SYS_ppoll,
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_epoll_ctl,
        SYS_futex,
        SYS_sched_yield,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_clock_gettime,
        SYS_gettimeofday,
        SYS_getpid,
        SYS_gettid,
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_munmap,
        SYS_mremap,
        SYS_madvise,
        SYS_brk,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_sigaltstack,
        SYS_tgkill,
        SYS_exit,
        SYS_exit_group,
        SYS_accept,
        SYS_accept4,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_shutdown,
        SYS_getsockopt,
        SYS_fcntl,
        SYS_dup,
        SYS_dup3,
        SYS_clone,
        SYS_clone3,
        SYS_set_robust_list,
        SYS_rseq,
        SYS_prctl,
        SYS_sched_getaffinity,
        SYS_getrandom,
        SYS_membarrier,
        SYS_restart_syscall,
        SYS_eventfd2,
        SYS_getrlimit,
        SYS_prlimit64,
        SYS_ioctl,
        SYS_fsync,
        SYS_fdatasync,
        SYS_kill,
        SYS_open,
        SYS_openat,
    ];
    for s in always {
        rules.insert(s, Vec::new());
    }
    // Memory mappings, never executable.
    let no_exec = || -> Result<Vec<SeccompRule>, JailError> {
        Ok(vec![SeccompRule::new(vec![cond(2, SeccompCmpOp::MaskedEq(PROT_EXEC as u64), SeccompCmpArgLen::Dword, 0)?])
            .map_err(|e| JailError::Seccomp(e.to_string()))?])
    };
    rules.insert(SYS_mmap, no_exec()?);
    rules.insert(SYS_mprotect, no_exec()?);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into().map_err(|e: seccompiler::BackendError| JailError::Seccomp(e.to_string()))?,
    )
    .map_err(|e| JailError::Seccomp(e.to_string()))?;
    let arch = || -> Result<seccompiler::TargetArch, JailError> {
        std::env::consts::ARCH.try_into().map_err(|e: seccompiler::BackendError| JailError::Seccomp(e.to_string()))
    };
    let allow: BpfProgram = f.try_into().map_err(|e: seccompiler::BackendError| JailError::Seccomp(e.to_string()))?;
    let mut opens: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    opens.insert(SYS_open, Vec::new());
    opens.insert(SYS_openat, Vec::new());
    let deny_open = SeccompFilter::new(opens, SeccompAction::Allow, SeccompAction::Errno(EACCES as u32), arch()?)
        .map_err(|e| JailError::Seccomp(e.to_string()))?;
    let deny: BpfProgram =
        deny_open.try_into().map_err(|e: seccompiler::BackendError| JailError::Seccomp(e.to_string()))?;
    // The open filter goes first: once the allow-list is installed, seccomp(2) itself is no
    // longer allowed.
    Ok(vec![deny, allow])
}
