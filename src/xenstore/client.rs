//! The client: connection management, the reader thread, request routing, watches and
//! transactions.
//!
//! # Concurrency
//!
//! Any number of threads may call into one [`Xenstore`] (it is `Send + Sync`). A caller
//! registers its request in a table keyed by a fresh `req_id` (with a one-shot channel for the
//! answer), writes the whole message under a writer lock (so messages never interleave), and
//! blocks on its channel. A single reader thread owns the receiving side: it cuts the stream into
//! messages, hands `XS_WATCH_EVENT`s (recognised by type, as their `req_id` is 0) to the watch
//! with that token, and routes every other message to the waiter with the same `req_id`. A watch
//! event arriving between a request and its reply is therefore neither lost nor taken for the
//! reply. Lock order is state, then writer; nobody writes to the socket while holding the state
//! lock, so a xenstored that stops reading cannot block the reader thread.
//!
//! # Reconnect
//!
//! When the connection breaks (EOF, I/O error, protocol violation, request timeout) the reader
//! thread marks the client "connecting" (new requests wait), settles every request in flight, and
//! reconnects with exponential backoff bounded by [`ReconnectPolicy`]. Settling: a plain
//! (non-transaction) request that is safe to repeat (read, directory, get_perms, write, mkdir,
//! rm, set_perms, watch, unwatch, get_domain_path, transaction_start) is sent again, once, on the
//! new connection; anything inside a transaction, or a transaction end, fails with
//! [`XsError::TransactionLost`] (EAGAIN-equivalent, so [`Xenstore::transaction`] restarts it);
//! anything else fails with [`XsError::ConnectionLost`]. After a protocol violation every request
//! in flight fails with [`XsError::Protocol`] instead of being repeated. On the new connection all
//! watches are registered again before any retried request is sent; xenstored fires each once on
//! registration, which tells the owner to re-read what it watches (changes made while
//! disconnected are not otherwise reported). If reconnecting gives up, every pending and future
//! request fails with [`XsError::Disconnected`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use xen_bindings::xs_wire::{errno_from_error_payload, XsdSockmsgType, XENSTORE_PAYLOAD_MAX};

use super::error::{ProtocolError, XsError};
use super::path::{check, PathUse};
use super::perms::Permissions;
use super::wire::{self, Frame, FrameBuf};

/// The Linux xenbus device, tried after the socket.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// The older location of the xenbus device.
pub const XENBUS_PROC: &str = "/proc/xen/xenbus";
/// Default `XENSTORED_RUNDIR`.
pub const DEFAULT_RUNDIR: &str = "/var/run/xenstored";
/// Attempts of [`Xenstore::transaction`] before it gives up with the last EAGAIN.
pub const TRANSACTION_ATTEMPTS: u32 = 16;
/// Restarts of a `DIRECTORY_PART` listing whose node changed in between, before giving up.
const DIRECTORY_PART_RESTARTS: u32 = 8;
/// Bound on the total size of a `DIRECTORY_PART` listing.
const DIRECTORY_PART_MAX: usize = 16 << 20;

/// Where xenstored is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix stream socket.
    Socket(PathBuf),
    /// A character device with the same framing (`/dev/xen/xenbus`).
    Device(PathBuf),
    /// A socket if the path is one, else a device (libxenstore's `get_handle`; used for
    /// `$XENSTORED_PATH`).
    Auto(PathBuf),
}

impl Endpoint {
    /// What libxenstore's `xs_open` tries, in order: `$XENSTORED_PATH` if set (socket or device);
    /// else `${XENSTORED_RUNDIR:-/var/run/xenstored}/socket`, then `/dev/xen/xenbus`, then
    /// `/proc/xen/xenbus`.
    pub fn defaults() -> Vec<Endpoint> {
        if let Some(p) = std::env::var_os("XENSTORED_PATH") {
            return vec![Endpoint::Auto(PathBuf::from(p))];
        }
        let rundir = std::env::var_os("XENSTORED_RUNDIR").map_or_else(|| PathBuf::from(DEFAULT_RUNDIR), PathBuf::from);
        vec![
            Endpoint::Socket(rundir.join("socket")),
            Endpoint::Device(PathBuf::from(XENBUS_DEVICE)),
            Endpoint::Device(PathBuf::from(XENBUS_PROC)),
        ]
    }

    fn connect(&self) -> io::Result<Conn> {
        match self {
            Endpoint::Socket(p) => UnixStream::connect(p).map(Conn::Socket),
            Endpoint::Device(p) => OpenOptions::new().read(true).write(true).open(p).map(Conn::Device),
            Endpoint::Auto(p) => {
                if std::fs::metadata(p)?.file_type().is_socket() {
                    UnixStream::connect(p).map(Conn::Socket)
                } else {
                    OpenOptions::new().read(true).write(true).open(p).map(Conn::Device)
                }
            }
        }
    }
}

/// How hard to try reconnecting after the connection broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Connection attempts before giving up (the first is immediate).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    /// 60 attempts, 10 ms doubling up to 1 s: a little under a minute in all.
    fn default() -> Self {
        Self { max_attempts: 60, initial_backoff: Duration::from_millis(10), max_backoff: Duration::from_secs(1) }
    }
}

/// Client options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a request may wait for its reply (including waiting for a reconnect); `None`
    /// waits forever. When it expires the connection is considered broken and re-established.
    pub request_timeout: Option<Duration>,
    /// Reconnect behaviour.
    pub reconnect: ReconnectPolicy,
}

impl Default for Options {
    /// 30 s request timeout, default reconnect policy.
    fn default() -> Self {
        Self { request_timeout: Some(Duration::from_secs(30)), reconnect: ReconnectPolicy::default() }
    }
}

/// A fired watch: `path` is the node that changed (or the watched node, for the initial fire and
/// when an ancestor was removed); `token` the one given at registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path reported by xenstored.
    pub path: String,
    /// The watch's token.
    pub token: String,
}

#[derive(Debug)]
enum Conn {
    Socket(UnixStream),
    Device(File),
}

impl Conn {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Socket(s) => (&*s).read(buf),
            Conn::Device(f) => (&*f).read(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Socket(s) => (&*s).write_all(buf),
            Conn::Device(f) => (&*f).write_all(buf),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Socket(s) => s.as_fd(),
            Conn::Device(f) => f.as_fd(),
        }
    }
}

/// A successful reply and the connection generation it came on.
#[derive(Debug)]
struct Reply {
    payload: Vec<u8>,
    gen: u64,
}

type ReplyResult = Result<Reply, XsError>;

#[derive(Debug)]
enum Waiter {
    User(SyncSender<ReplyResult>),
    /// Fire-and-forget (watch re-registration, unwatch or abort from `Drop`): the reply is only
    /// logged.
    Internal,
}

#[derive(Debug)]
struct Pending {
    ty: XsdSockmsgType,
    tx_id: u32,
    payload: Vec<u8>,
    /// Safe to send again on a new connection.
    idempotent: bool,
    /// Connection losses this request has been through.
    losses: u32,
    waiter: Waiter,
}

impl Pending {
    fn complete(self, r: ReplyResult) {
        match self.waiter {
            Waiter::User(tx) => {
                let _ = tx.try_send(r);
            }
            Waiter::Internal => {
                if let Err(e) = r {
                    log::debug!("xenstore: internal {} request failed: {e}", self.ty.name());
                }
            }
        }
    }
}

#[derive(Debug)]
struct WatchReg {
    path: String,
    sink: Sender<WatchEvent>,
    /// xenstored acknowledged the registration on the current connection (or it is to be
    /// re-registered on the next one).
    active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Connected,
    Connecting,
    Failed(String),
    Closed,
}

#[derive(Debug)]
struct State {
    link: Link,
    /// Bumped for every new connection.
    gen: u64,
    next_req_id: u32,
    pending: HashMap<u32, Pending>,
    watches: HashMap<String, WatchReg>,
    /// The reader must drop the connection of this generation (timeout or write error).
    drop_gen: Option<u64>,
}

impl State {
    fn alloc_req_id(&mut self) -> u32 {
        loop {
            self.next_req_id = self.next_req_id.wrapping_add(1);
            if self.next_req_id != 0 && !self.pending.contains_key(&self.next_req_id) {
                return self.next_req_id;
            }
        }
    }
}

#[derive(Debug)]
struct Writer {
    gen: u64,
    conn: Arc<Conn>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<Endpoint>,
    opts: Options,
    state: Mutex<State>,
    /// Signalled when `state.link` changes.
    link_changed: Condvar,
    writer: Mutex<Option<Writer>>,
    shutdown: AtomicBool,
    wake_tx: UnixStream,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A transaction id with the connection generation it belongs to.
type TxRef = Option<(u32, u64)>;

/// How a connection ended.
enum Loss {
    /// EOF between messages, or an I/O error: requests may be retried.
    Clean(String),
    /// The server broke the protocol: requests in flight fail.
    Protocol(ProtocolError),
    /// The client is closing.
    Shutdown,
}

impl Inner {
    fn wake(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Asks the reader to drop connection `gen` (the current one if `None`), if still current.
    fn request_drop(&self, gen: Option<u64>) {
        let mut st = lock(&self.state);
        if st.link == Link::Connected && gen.is_none_or(|g| g == st.gen) {
            st.drop_gen = Some(st.gen);
            // Nothing more goes out on the doomed connection: new requests wait for the next.
            st.link = Link::Connecting;
            *lock(&self.writer) = None;
        }
        drop(st);
        self.wake();
    }

    /// Writes a registered request if the connection it was registered on is still current
    /// (otherwise the reader has already settled it).
    fn transmit(&self, gen: u64, msg: &[u8]) {
        let mut w = lock(&self.writer);
        let failed = match w.as_mut() {
            Some(wr) if wr.gen == gen => wr.conn.write_all(msg).err(),
            _ => None,
        };
        drop(w);
        if let Some(e) = failed {
            crate::guest_warn!("xenstore: write failed: {e}; reconnecting");
            self.request_drop(Some(gen));
        }
    }

    /// Sends a request and waits for its reply.
    fn call(&self, ty: XsdSockmsgType, tx: TxRef, payload: Vec<u8>, idempotent: bool) -> ReplyResult {
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::PayloadTooLarge { len: payload.len() });
        }
        let deadline = self.opts.request_timeout.map(|t| (t, Instant::now().checked_add(t)));
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let tx_id = tx.map_or(0, |(id, _)| id);
        let mut st = lock(&self.state);
        loop {
            match &st.link {
                Link::Connected => break,
                Link::Failed(m) => return Err(XsError::Disconnected(m.clone())),
                Link::Closed => return Err(XsError::Closed),
                Link::Connecting => match deadline {
                    Some((t, Some(d))) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(XsError::Timeout(t));
                        }
                        st = self.link_changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    _ => st = self.link_changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                },
            }
        }
        if let Some((_, tgen)) = tx {
            if tgen != st.gen {
                return Err(XsError::TransactionLost);
            }
        }
        let req_id = st.alloc_req_id();
        let msg = wire::encode(ty, req_id, tx_id, &payload)?;
        let gen = st.gen;
        st.pending
            .insert(req_id, Pending { ty, tx_id, payload, idempotent, losses: 0, waiter: Waiter::User(reply_tx) });
        drop(st);
        self.transmit(gen, &msg);
        let res = match deadline {
            Some((t, Some(d))) => match reply_rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Timeout) => Err(XsError::Timeout(t)),
                Err(RecvTimeoutError::Disconnected) => Err(XsError::Closed),
            },
            _ => match reply_rx.recv() {
                Ok(r) => return r,
                Err(_) => Err(XsError::Closed),
            },
        };
        // Timed out: withdraw the request, unless the answer raced in.
        let removed = lock(&self.state).pending.remove(&req_id).is_some();
        if !removed {
            if let Ok(r) = reply_rx.try_recv() {
                return r;
            }
        }
        if matches!(res, Err(XsError::Timeout(_))) {
            crate::guest_warn!("xenstore: {} request timed out; reconnecting", ty.name());
            self.request_drop(None);
        }
        res
    }

    /// Sends a request whose reply nobody waits for (best effort; nothing is sent while
    /// disconnected or for a transaction of an older connection).
    fn send_internal(&self, ty: XsdSockmsgType, tx: TxRef, payload: Vec<u8>) {
        let mut st = lock(&self.state);
        if st.link != Link::Connected || tx.is_some_and(|(_, g)| g != st.gen) {
            return;
        }
        let req_id = st.alloc_req_id();
        let tx_id = tx.map_or(0, |(id, _)| id);
        let Ok(msg) = wire::encode(ty, req_id, tx_id, &payload) else {
            return;
        };
        let gen = st.gen;
        st.pending
            .insert(req_id, Pending { ty, tx_id, payload, idempotent: false, losses: 0, waiter: Waiter::Internal });
        drop(st);
        self.transmit(gen, &msg);
    }

    // ---- operations ----

    fn read(&self, tx: TxRef, path: &str) -> Result<Vec<u8>, XsError> {
        check(path, PathUse::Node)?;
        Ok(self.call(XsdSockmsgType::Read, tx, wire::join(&[path.as_bytes()], None), true)?.payload)
    }

    fn write(&self, tx: TxRef, path: &str, value: &[u8]) -> Result<(), XsError> {
        check(path, PathUse::Node)?;
        self.call(XsdSockmsgType::Write, tx, wire::join(&[path.as_bytes()], Some(value)), true).map(drop)
    }

    fn simple(&self, ty: XsdSockmsgType, tx: TxRef, path: &str) -> Result<(), XsError> {
        check(path, PathUse::Node)?;
        self.call(ty, tx, wire::join(&[path.as_bytes()], None), true).map(drop)
    }

    fn directory(&self, tx: TxRef, path: &str) -> Result<Vec<String>, XsError> {
        check(path, PathUse::Node)?;
        match self.call(XsdSockmsgType::Directory, tx, wire::join(&[path.as_bytes()], None), true) {
            Ok(r) => names(&r.payload),
            Err(e) if e.errno() == Some(libc::E2BIG) => self.directory_part(tx, path),
            Err(e) => Err(e),
        }
    }

    /// libxenstore's `xs_directory_part`: fetches a long child list piecewise, restarting if the
    /// node's generation changes in between.
    fn directory_part(&self, tx: TxRef, path: &str) -> Result<Vec<String>, XsError> {
        let mut restarts = 0u32;
        'restart: loop {
            let mut gen: Option<Vec<u8>> = None;
            let mut strings: Vec<u8> = Vec::new();
            loop {
                let off = strings.len().to_string();
                let payload = wire::join(&[path.as_bytes(), off.as_bytes()], None);
                let r = match self.call(XsdSockmsgType::DirectoryPart, tx, payload, true) {
                    Ok(r) => r.payload,
                    Err(e) if e.errno() == Some(libc::ENOSYS) => return Err(XsError::from_errno(libc::E2BIG)),
                    Err(e) => return Err(e),
                };
                let g = wire::until_nul(&r);
                let rest = r.get(g.len().saturating_add(1)..).unwrap_or_default();
                match &gen {
                    None => gen = Some(g.to_vec()),
                    Some(prev) if prev.as_slice() != g => {
                        restarts = restarts.saturating_add(1);
                        if restarts > DIRECTORY_PART_RESTARTS {
                            return Err(XsError::from_errno(libc::EAGAIN));
                        }
                        continue 'restart;
                    }
                    Some(_) => {}
                }
                if strings.len().saturating_add(rest.len()) > DIRECTORY_PART_MAX {
                    return Err(XsError::Protocol(ProtocolError::malformed("DIRECTORY_PART (too long)")));
                }
                if rest.is_empty() {
                    return Err(XsError::Protocol(ProtocolError::malformed("DIRECTORY_PART")));
                }
                strings.extend_from_slice(rest);
                let n = strings.len();
                let ended = n <= 1 || strings.get(n.saturating_sub(2)) == Some(&0);
                if ended {
                    // Drop the terminating empty string.
                    let body = strings.strip_suffix(&[0]).unwrap_or(&strings);
                    return names(body);
                }
            }
        }
    }

    fn get_perms(&self, tx: TxRef, path: &str) -> Result<Permissions, XsError> {
        check(path, PathUse::Node)?;
        let r = self.call(XsdSockmsgType::GetPerms, tx, wire::join(&[path.as_bytes()], None), true)?;
        Permissions::from_wire(&r.payload)
    }

    fn set_perms(&self, tx: TxRef, path: &str, perms: &Permissions) -> Result<(), XsError> {
        check(path, PathUse::Node)?;
        let mut payload = wire::join(&[path.as_bytes()], None);
        payload.extend_from_slice(&perms.to_wire());
        self.call(XsdSockmsgType::SetPerms, tx, payload, true).map(drop)
    }

    fn watch(&self, path: &str, token: &str, sink: Sender<WatchEvent>) -> Result<(), XsError> {
        check(path, PathUse::Watch)?;
        if token.as_bytes().contains(&0) {
            return Err(XsError::InvalidToken { token: token.to_owned(), reason: "contains NUL" });
        }
        let payload = wire::join(&[path.as_bytes(), token.as_bytes()], None);
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::PayloadTooLarge { len: payload.len() });
        }
        {
            let mut st = lock(&self.state);
            if st.watches.contains_key(token) {
                return Err(XsError::InvalidToken { token: token.to_owned(), reason: "already in use by this client" });
            }
            // Registered before sending so that an initial event overtaking the ack is delivered.
            st.watches.insert(token.to_owned(), WatchReg { path: path.to_owned(), sink, active: false });
        }
        match self.call(XsdSockmsgType::Watch, None, payload, true) {
            Ok(_) => Ok(()),
            Err(e) => {
                lock(&self.state).watches.remove(token);
                Err(e)
            }
        }
    }

    fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        check(path, PathUse::Watch)?;
        let known = {
            let mut st = lock(&self.state);
            match st.watches.get(token) {
                Some(w) if w.path == path => st.watches.remove(token).is_some(),
                _ => false,
            }
        };
        let payload = wire::join(&[path.as_bytes(), token.as_bytes()], None);
        match self.call(XsdSockmsgType::Unwatch, None, payload, true) {
            // Retried after a reconnect (or never re-registered): gone is gone.
            Err(e) if known && e.is_enoent() => Ok(()),
            r => r.map(drop),
        }
    }

    fn unwatch_detached(&self, path: &str, token: &str) {
        let removed = {
            let mut st = lock(&self.state);
            match st.watches.get(token) {
                Some(w) if w.path == path => st.watches.remove(token).is_some(),
                _ => false,
            }
        };
        if removed {
            self.send_internal(XsdSockmsgType::Unwatch, None, wire::join(&[path.as_bytes(), token.as_bytes()], None));
        }
    }

    // ---- reader side ----

    /// Installs a new connection: bumps the generation, re-registers watches, resends the
    /// requests kept over the loss, and lets waiting callers go.
    fn install(&self, conn: Arc<Conn>) {
        let mut st = lock(&self.state);
        st.gen = st.gen.wrapping_add(1);
        let gen = st.gen;
        st.drop_gen = None;
        // Requests kept over the loss, to be sent after the watches are registered again.
        let mut resend = Vec::new();
        for (id, p) in st.pending.iter() {
            if let Ok(m) = wire::encode(p.ty, *id, p.tx_id, &p.payload) {
                resend.push(m);
            }
        }
        let mut msgs = Vec::new();
        let rereg: Vec<(String, String)> =
            st.watches.iter().filter(|(_, w)| w.active).map(|(t, w)| (w.path.clone(), t.clone())).collect();
        for (path, token) in rereg {
            let payload = wire::join(&[path.as_bytes(), token.as_bytes()], None);
            let req_id = st.alloc_req_id();
            if let Ok(m) = wire::encode(XsdSockmsgType::Watch, req_id, 0, &payload) {
                msgs.push(m);
                st.pending.insert(
                    req_id,
                    Pending {
                        ty: XsdSockmsgType::Watch,
                        tx_id: 0,
                        payload,
                        idempotent: false,
                        losses: 0,
                        waiter: Waiter::Internal,
                    },
                );
            }
        }
        msgs.extend(resend);
        st.link = Link::Connected;
        let mut w = lock(&self.writer);
        *w = Some(Writer { gen, conn });
        drop(st);
        self.link_changed.notify_all();
        let mut failed = None;
        if let Some(wr) = w.as_ref() {
            for m in &msgs {
                if let Err(e) = wr.conn.write_all(m) {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(w);
        if let Some(e) = failed {
            crate::guest_warn!("xenstore: write failed after reconnect: {e}");
            self.request_drop(Some(gen));
        }
    }

    /// Settles everything in flight after the connection was lost.
    fn settle(&self, loss: &Loss) {
        let mut st = lock(&self.state);
        *lock(&self.writer) = None;
        st.drop_gen = None;
        if matches!(loss, Loss::Shutdown) {
            st.link = Link::Closed;
        } else if st.link == Link::Connected {
            st.link = Link::Connecting;
        }
        if matches!(loss, Loss::Shutdown) {
            st.watches.clear();
        }
        let mut keep = HashMap::new();
        for (id, mut p) in st.pending.drain() {
            if matches!(p.waiter, Waiter::Internal) {
                continue;
            }
            let err = match loss {
                Loss::Shutdown => XsError::Closed,
                Loss::Protocol(e) => XsError::Protocol(e.clone()),
                Loss::Clean(_) if p.tx_id != 0 || p.ty == XsdSockmsgType::TransactionEnd => XsError::TransactionLost,
                Loss::Clean(_) if p.idempotent && p.losses == 0 => {
                    p.losses = 1;
                    keep.insert(id, p);
                    continue;
                }
                Loss::Clean(_) => XsError::ConnectionLost { op: p.ty.name() },
            };
            p.complete(Err(err));
        }
        st.pending = keep;
        drop(st);
        self.link_changed.notify_all();
    }

    /// Gives up: fails everything.
    fn fail(&self, msg: String) {
        let mut st = lock(&self.state);
        if st.link != Link::Closed {
            st.link = Link::Failed(msg.clone());
        }
        for (_, p) in st.pending.drain() {
            p.complete(Err(XsError::Disconnected(msg.clone())));
        }
        // Closing the event channels tells watch owners that no more events will come.
        st.watches.clear();
        drop(st);
        self.link_changed.notify_all();
    }

    /// Handles one received message; an error means the connection can no longer be trusted.
    fn dispatch(&self, f: Frame, gen: u64) -> Result<(), ProtocolError> {
        let ty = f.header.msg_type().ok_or(ProtocolError::UnknownType(f.header.type_))?;
        if ty == XsdSockmsgType::WatchEvent {
            self.deliver_event(&f.payload);
            return Ok(());
        }
        let mut st = lock(&self.state);
        let Some(p) = st.pending.remove(&f.header.req_id) else {
            if st.drop_gen == Some(gen) {
                // A late answer to a request that timed out; the connection is going anyway.
                return Ok(());
            }
            return Err(ProtocolError::UnexpectedReqId { req_id: f.header.req_id, ty: f.header.type_ });
        };
        if ty == XsdSockmsgType::Error {
            let errno = errno_from_error_payload(&f.payload);
            if p.ty == XsdSockmsgType::Watch {
                if let Waiter::Internal = p.waiter {
                    crate::guest_error!(
                        "xenstore: re-registering watch {:?} failed: errno {errno}",
                        String::from_utf8_lossy(wire::until_nul(&p.payload))
                    );
                }
            }
            drop(st);
            p.complete(Err(XsError::from_errno(errno)));
            return Ok(());
        }
        if ty != p.ty {
            // Left for `settle`, which fails it (and the rest) once new requests are held back.
            let e = ProtocolError::wrong_type(p.ty, f.header.type_);
            st.pending.insert(f.header.req_id, p);
            return Err(e);
        }
        if ty == XsdSockmsgType::Watch {
            let parts = wire::split_strings(&p.payload);
            if let Some(tok) = parts.get(1).and_then(|t| std::str::from_utf8(t).ok()) {
                if let Some(w) = st.watches.get_mut(tok) {
                    w.active = true;
                }
            }
        }
        drop(st);
        p.complete(Ok(Reply { payload: f.payload, gen }));
        Ok(())
    }

    fn deliver_event(&self, payload: &[u8]) {
        let parts = wire::split_strings(payload);
        let (Some(path), Some(token)) = (parts.first(), parts.get(1)) else {
            crate::guest_warn!("xenstore: malformed watch event ignored ({} bytes)", payload.len());
            return;
        };
        let (Ok(path), Ok(token)) = (std::str::from_utf8(path), std::str::from_utf8(token)) else {
            crate::guest_warn!("xenstore: watch event with non-UTF-8 path or token ignored");
            return;
        };
        let st = lock(&self.state);
        match st.watches.get(token) {
            Some(w) => {
                let _ = w.sink.send(WatchEvent { path: path.to_owned(), token: token.to_owned() });
            }
            None => log::debug!("xenstore: event for unknown token {token:?} (path {path:?}) dropped"),
        }
    }

    /// Serves one connection until it is lost or the client closes.
    fn serve(&self, conn: &Conn, wake_rx: &UnixStream, gen: u64) -> Loss {
        let mut fb = FrameBuf::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                return Loss::Shutdown;
            }
            if lock(&self.state).drop_gen == Some(gen) {
                return Loss::Clean("connection dropped by the client".into());
            }
            let (conn_ready, wake_ready) = {
                let mut fds =
                    [PollFd::new(conn.fd(), PollFlags::POLLIN), PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Loss::Clean(format!("poll: {e}")),
                }
                let [c, w] = fds;
                (c.any().unwrap_or(true), w.any().unwrap_or(true))
            };
            if wake_ready {
                drain(wake_rx);
            }
            if !conn_ready {
                continue;
            }
            match conn.read(&mut buf) {
                Ok(0) => {
                    return match fb.eof_error() {
                        Some(e) => {
                            crate::guest_warn!("xenstore: {e}");
                            Loss::Protocol(e)
                        }
                        None => Loss::Clean("xenstored closed the connection".into()),
                    };
                }
                Ok(n) => fb.push(buf.get(..n).unwrap_or_default()),
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => continue,
                Err(e) => return Loss::Clean(format!("read: {e}")),
            }
            loop {
                match fb.next_frame() {
                    Ok(Some(f)) => {
                        if let Err(e) = self.dispatch(f, gen) {
                            crate::guest_warn!("xenstore: protocol error from xenstored: {e}; reconnecting");
                            return Loss::Protocol(e);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        crate::guest_warn!("xenstore: protocol error from xenstored: {e}; reconnecting");
                        return Loss::Protocol(e);
                    }
                }
            }
        }
    }

    /// Connects to the first endpoint that answers.
    fn connect_any(&self) -> Result<Conn, String> {
        let mut errs = Vec::new();
        for ep in &self.endpoints {
            match ep.connect() {
                Ok(c) => return Ok(c),
                Err(e) => errs.push(format!("{ep:?}: {e}")),
            }
        }
        Err(if errs.is_empty() { "no endpoint configured".into() } else { errs.join("; ") })
    }

    /// Reconnects with backoff; `None` if the client closes or the policy gives up.
    fn reconnect(&self, wake_rx: &UnixStream) -> Option<Arc<Conn>> {
        let pol = self.opts.reconnect;
        let mut delay = pol.initial_backoff;
        let mut last = String::from("no attempt made");
        for attempt in 0..pol.max_attempts {
            if self.shutdown.load(Ordering::Acquire) {
                return None;
            }
            if attempt > 0 {
                sleep_or_wake(wake_rx, delay);
                if self.shutdown.load(Ordering::Acquire) {
                    return None;
                }
                delay = delay.saturating_mul(2).min(pol.max_backoff);
            }
            match self.connect_any() {
                Ok(c) => {
                    log::info!("xenstore: reconnected after {} attempt(s)", attempt.saturating_add(1));
                    let c = Arc::new(c);
                    self.install(c.clone());
                    return Some(c);
                }
                Err(e) => {
                    log::debug!("xenstore: reconnect attempt {} failed: {e}", attempt.saturating_add(1));
                    last = e;
                }
            }
        }
        crate::guest_error!("xenstore: giving up reconnecting after {} attempts: {last}", pol.max_attempts);
        self.fail(last);
        None
    }

    fn reader_main(self: Arc<Self>, wake_rx: UnixStream, first: Arc<Conn>) {
        let mut conn = Some(first);
        loop {
            let c = match conn.take() {
                Some(c) => c,
                None => match self.reconnect(&wake_rx) {
                    Some(c) => c,
                    None => {
                        if self.shutdown.load(Ordering::Acquire) {
                            self.settle(&Loss::Shutdown);
                        }
                        return;
                    }
                },
            };
            let gen = lock(&self.state).gen;
            let loss = self.serve(&c, &wake_rx, gen);
            drop(c);
            if let Loss::Clean(why) = &loss {
                crate::guest_warn!("xenstore: connection lost ({why}); reconnecting");
            }
            self.settle(&loss);
            if matches!(loss, Loss::Shutdown) {
                return;
            }
        }
    }
}

fn drain(s: &UnixStream) {
    let mut b = [0u8; 64];
    while let Ok(n) = (&*s).read(&mut b) {
        if n == 0 {
            break;
        }
    }
}

/// Sleeps for `d` unless woken.
fn sleep_or_wake(wake_rx: &UnixStream, d: Duration) {
    let t = PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
    if let Ok(n) = poll(&mut fds, t) {
        if n > 0 {
            drain(wake_rx);
        }
    }
}

/// Parses a child list.
fn names(payload: &[u8]) -> Result<Vec<String>, XsError> {
    wire::split_strings(payload)
        .into_iter()
        .map(|s| String::from_utf8(s.to_vec()).map_err(|_| XsError::Protocol(ProtocolError::malformed("DIRECTORY"))))
        .collect()
}

fn utf8(path: &str, v: Vec<u8>) -> Result<String, XsError> {
    String::from_utf8(v).map_err(|_| XsError::NotUtf8 { path: path.to_owned() })
}

/// A xenstore connection. Cheap to share between threads by reference (`&Xenstore` or
/// `Arc<Xenstore>`); see the module documentation for the concurrency and reconnect design.
/// Dropping it closes the connection and stops its reader thread.
#[derive(Debug)]
pub struct Xenstore {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
}

impl Xenstore {
    /// Connects like libxenstore's `xs_open` ([`Endpoint::defaults`]) with default options.
    pub fn open() -> Result<Self, XsError> {
        Self::connect(Endpoint::defaults(), Options::default())
    }

    /// Connects to the unix socket at `path`.
    pub fn open_socket(path: impl Into<PathBuf>, opts: Options) -> Result<Self, XsError> {
        Self::connect(vec![Endpoint::Socket(path.into())], opts)
    }

    /// Connects to the first of `endpoints` that answers (the same list is used to reconnect).
    pub fn connect(endpoints: Vec<Endpoint>, opts: Options) -> Result<Self, XsError> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let inner = Arc::new(Inner {
            endpoints,
            opts,
            state: Mutex::new(State {
                link: Link::Connecting,
                gen: 0,
                next_req_id: 0,
                pending: HashMap::new(),
                watches: HashMap::new(),
                drop_gen: None,
            }),
            link_changed: Condvar::new(),
            writer: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            wake_tx,
        });
        let conn = Arc::new(inner.connect_any().map_err(XsError::Disconnected)?);
        inner.install(conn.clone());
        let reader_inner = inner.clone();
        let reader = std::thread::Builder::new()
            .name("xenstore-reader".into())
            .spawn(move || reader_inner.reader_main(wake_rx, conn))?;
        Ok(Self { inner, reader: Some(reader) })
    }

    /// True while a connection is established.
    pub fn is_connected(&self) -> bool {
        lock(&self.inner.state).link == Link::Connected
    }

    /// How many connections have been established so far (1 before any reconnect).
    pub fn connection_count(&self) -> u64 {
        lock(&self.inner.state).gen
    }

    /// `XS_READ`: the node's value.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.inner.read(None, path)
    }

    /// `XS_READ` of a UTF-8 value.
    pub fn read_string(&self, path: &str) -> Result<String, XsError> {
        utf8(path, self.read(path)?)
    }

    /// `XS_WRITE`: sets the value, creating missing parents.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> Result<(), XsError> {
        self.inner.write(None, path, value.as_ref())
    }

    /// `XS_MKDIR`: creates the node (and parents) with an empty value; fine if it exists.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.inner.simple(XsdSockmsgType::Mkdir, None, path)
    }

    /// `XS_RM`: removes the node and everything below it (fine if it is already gone but its
    /// parent exists).
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.inner.simple(XsdSockmsgType::Rm, None, path)
    }

    /// `XS_DIRECTORY`: the children's names (falling back to `XS_DIRECTORY_PART` for lists
    /// longer than one message).
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        self.inner.directory(None, path)
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms(&self, path: &str) -> Result<Permissions, XsError> {
        self.inner.get_perms(None, path)
    }

    /// `XS_SET_PERMS`.
    pub fn set_perms(&self, path: &str, perms: &Permissions) -> Result<(), XsError> {
        self.inner.set_perms(None, path, perms)
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn get_domain_path(&self, domid: u32) -> Result<String, XsError> {
        let r = self.inner.call(
            XsdSockmsgType::GetDomainPath,
            None,
            wire::join(&[domid.to_string().as_bytes()], None),
            true,
        )?;
        String::from_utf8(wire::until_nul(&r.payload).to_vec())
            .map_err(|_| XsError::Protocol(ProtocolError::malformed("GET_DOMAIN_PATH")))
    }

    /// `XS_WATCH` with a fresh channel. The watch fires once right away (xenstored does that on
    /// every registration, including the re-registration after a reconnect), then for every
    /// change of `path` or anything below it, and for the removal of an ancestor. Tokens must be
    /// unique per client. Dropping the [`Watch`] unregisters it.
    pub fn watch(&self, path: &str, token: &str) -> Result<Watch, XsError> {
        let (tx, rx) = mpsc::channel();
        self.inner.watch(path, token, tx)?;
        Ok(Watch {
            path: path.to_owned(),
            token: token.to_owned(),
            rx,
            inner: Arc::downgrade(&self.inner),
            active: true,
        })
    }

    /// `XS_WATCH` delivering into an existing channel (several watches may share one; tell them
    /// apart by token). Undo with [`Xenstore::unwatch`].
    pub fn watch_with(&self, path: &str, token: &str, sink: Sender<WatchEvent>) -> Result<(), XsError> {
        self.inner.watch(path, token, sink)
    }

    /// `XS_UNWATCH`; no further events are delivered for `token` once this returns.
    pub fn unwatch(&self, path: &str, token: &str) -> Result<(), XsError> {
        self.inner.unwatch(path, token)
    }

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start(&self) -> Result<Transaction<'_>, XsError> {
        let r = self.inner.call(XsdSockmsgType::TransactionStart, None, vec![0], true)?;
        let id = std::str::from_utf8(wire::until_nul(&r.payload))
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&id| id != 0)
            .ok_or(XsError::Protocol(ProtocolError::malformed("TRANSACTION_START")))?;
        Ok(Transaction { xs: self, id, gen: r.gen, finished: false })
    }

    /// Runs `f` in a transaction and commits it, restarting the whole transaction when the
    /// commit (or any operation in it) fails with EAGAIN or [`XsError::TransactionLost`], at
    /// most [`TRANSACTION_ATTEMPTS`] times. Any other error from `f` aborts the transaction and
    /// is returned. `f` may run several times, so it must not have other side effects.
    pub fn transaction<T, F>(&self, mut f: F) -> Result<T, XsError>
    where
        F: FnMut(&Transaction<'_>) -> Result<T, XsError>,
    {
        let mut last = XsError::from_errno(libc::EAGAIN);
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10))));
            }
            let tx = self.transaction_start()?;
            let r = match f(&tx) {
                Ok(v) => tx.commit().map(|()| v),
                Err(e) => {
                    let _ = tx.abort();
                    Err(e)
                }
            };
            match r {
                Err(e) if e.is_again() => {
                    log::debug!("xenstore: transaction attempt {} failed ({e}); retrying", attempt.saturating_add(1));
                    last = e;
                }
                r => return r,
            }
        }
        Err(last)
    }
}

impl Drop for Xenstore {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Release);
        {
            let mut st = lock(&self.inner.state);
            st.link = Link::Closed;
        }
        self.inner.link_changed.notify_all();
        self.inner.wake();
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// A registered watch with its own event channel. Dropping it unregisters the watch (without
/// waiting for xenstored's answer); [`Watch::unwatch`] does so and reports the result.
#[derive(Debug)]
pub struct Watch {
    path: String,
    token: String,
    rx: Receiver<WatchEvent>,
    inner: Weak<Inner>,
    active: bool,
}

impl Watch {
    /// The watched path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The next event, waiting for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<WatchEvent> {
        self.rx.try_recv().ok()
    }

    /// The next event; `None` once the client is gone.
    pub fn recv(&self) -> Option<WatchEvent> {
        self.rx.recv().ok()
    }

    /// The channel, for `select`-style use.
    pub fn receiver(&self) -> &Receiver<WatchEvent> {
        &self.rx
    }

    /// Unregisters the watch and waits for xenstored's answer.
    pub fn unwatch(mut self) -> Result<(), XsError> {
        self.active = false;
        match self.inner.upgrade() {
            Some(inner) => inner.unwatch(&self.path, &self.token),
            None => Err(XsError::Closed),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.active {
            if let Some(inner) = self.inner.upgrade() {
                inner.unwatch_detached(&self.path, &self.token);
            }
        }
    }
}

/// An open transaction. Operations see the transaction's view; nothing is visible to others
/// until [`Transaction::commit`]. Dropping it without committing aborts it.
#[derive(Debug)]
pub struct Transaction<'a> {
    xs: &'a Xenstore,
    id: u32,
    gen: u64,
    finished: bool,
}

impl Transaction<'_> {
    fn tx(&self) -> TxRef {
        Some((self.id, self.gen))
    }

    /// The transaction id xenstored assigned.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `XS_READ` in the transaction.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        self.xs.inner.read(self.tx(), path)
    }

    /// `XS_READ` of a UTF-8 value in the transaction.
    pub fn read_string(&self, path: &str) -> Result<String, XsError> {
        utf8(path, self.read(path)?)
    }

    /// `XS_WRITE` in the transaction.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> Result<(), XsError> {
        self.xs.inner.write(self.tx(), path, value.as_ref())
    }

    /// `XS_MKDIR` in the transaction.
    pub fn mkdir(&self, path: &str) -> Result<(), XsError> {
        self.xs.inner.simple(XsdSockmsgType::Mkdir, self.tx(), path)
    }

    /// `XS_RM` in the transaction.
    pub fn rm(&self, path: &str) -> Result<(), XsError> {
        self.xs.inner.simple(XsdSockmsgType::Rm, self.tx(), path)
    }

    /// `XS_DIRECTORY` in the transaction.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        self.xs.inner.directory(self.tx(), path)
    }

    /// `XS_GET_PERMS` in the transaction.
    pub fn get_perms(&self, path: &str) -> Result<Permissions, XsError> {
        self.xs.inner.get_perms(self.tx(), path)
    }

    /// `XS_SET_PERMS` in the transaction.
    pub fn set_perms(&self, path: &str, perms: &Permissions) -> Result<(), XsError> {
        self.xs.inner.set_perms(self.tx(), path, perms)
    }

    fn end(&mut self, commit: bool) -> Result<(), XsError> {
        self.finished = true;
        let payload = if commit { b"T\0".to_vec() } else { b"F\0".to_vec() };
        self.xs.inner.call(XsdSockmsgType::TransactionEnd, self.tx(), payload, false).map(drop)
    }

    /// Commits. EAGAIN (a conflict) or [`XsError::TransactionLost`] mean: run it again.
    pub fn commit(mut self) -> Result<(), XsError> {
        self.end(true)
    }

    /// Aborts.
    pub fn abort(mut self) -> Result<(), XsError> {
        self.end(false)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.xs.inner.send_internal(XsdSockmsgType::TransactionEnd, self.tx(), b"F\0".to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use xen_bindings::xs_wire::{decode_header, encode_header, XsdSockmsg};

    fn bare_inner() -> (Arc<Inner>, UnixStream) {
        let (wake_tx, wake_rx) = UnixStream::pair().unwrap();
        let inner = Arc::new(Inner {
            endpoints: Vec::new(),
            opts: Options::default(),
            state: Mutex::new(State {
                link: Link::Connected,
                gen: 1,
                next_req_id: 0,
                pending: HashMap::new(),
                watches: HashMap::new(),
                drop_gen: None,
            }),
            link_changed: Condvar::new(),
            writer: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            wake_tx,
        });
        (inner, wake_rx)
    }

    fn pend(inner: &Inner, ty: XsdSockmsgType, tx_id: u32, idempotent: bool) -> Receiver<ReplyResult> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut st = lock(&inner.state);
        let id = st.alloc_req_id();
        st.pending.insert(id, Pending { ty, tx_id, payload: vec![0], idempotent, losses: 0, waiter: Waiter::User(tx) });
        rx
    }

    #[test]
    fn req_ids_skip_zero_and_ids_in_use() {
        let (inner, _w) = bare_inner();
        let mut st = lock(&inner.state);
        st.next_req_id = u32::MAX - 1;
        assert_eq!(st.alloc_req_id(), u32::MAX);
        let (tx, _rx) = mpsc::sync_channel(1);
        st.pending.insert(
            1,
            Pending {
                ty: XsdSockmsgType::Read,
                tx_id: 0,
                payload: Vec::new(),
                idempotent: true,
                losses: 0,
                waiter: Waiter::User(tx),
            },
        );
        assert_eq!(st.alloc_req_id(), 2);
    }

    #[test]
    fn settle_matrix() {
        let (inner, _w) = bare_inner();
        let read = pend(&inner, XsdSockmsgType::Read, 0, true);
        let in_tx = pend(&inner, XsdSockmsgType::Read, 7, true);
        let end = pend(&inner, XsdSockmsgType::TransactionEnd, 7, false);
        let control = pend(&inner, XsdSockmsgType::Control, 0, false);
        inner.send_internal(XsdSockmsgType::Unwatch, None, vec![0]);
        assert_eq!(lock(&inner.state).pending.len(), 5);
        inner.settle(&Loss::Clean("test".into()));
        assert!(read.try_recv().is_err(), "kept for a retry");
        assert!(matches!(in_tx.try_recv(), Ok(Err(XsError::TransactionLost))));
        assert!(matches!(end.try_recv(), Ok(Err(XsError::TransactionLost))));
        assert!(matches!(control.try_recv(), Ok(Err(XsError::ConnectionLost { op: "XS_CONTROL" }))));
        {
            let st = lock(&inner.state);
            assert_eq!(st.link, Link::Connecting);
            assert_eq!(st.pending.len(), 1, "internal requests are dropped");
            assert_eq!(st.pending.values().next().map(|p| p.losses), Some(1));
        }
        // A second loss fails the retried request.
        inner.settle(&Loss::Clean("again".into()));
        assert!(matches!(read.try_recv(), Ok(Err(XsError::ConnectionLost { op: "XS_READ" }))));
        // After a protocol violation nothing is retried.
        lock(&inner.state).link = Link::Connected;
        let read = pend(&inner, XsdSockmsgType::Read, 0, true);
        inner.settle(&Loss::Protocol(ProtocolError::UnknownType(99)));
        assert!(matches!(read.try_recv(), Ok(Err(XsError::Protocol(ProtocolError::UnknownType(99))))));
        // Giving up fails everything, and new requests, and closes watch channels.
        let read = pend(&inner, XsdSockmsgType::Read, 0, true);
        let (sink, events) = mpsc::channel();
        lock(&inner.state).watches.insert("t".into(), WatchReg { path: "/p".into(), sink, active: true });
        inner.fail("gone".into());
        assert!(matches!(read.try_recv(), Ok(Err(XsError::Disconnected(_)))));
        assert!(matches!(inner.read(None, "/x"), Err(XsError::Disconnected(_))));
        assert!(events.recv().is_err());
    }

    #[test]
    fn stale_transaction_is_not_sent() {
        let (inner, _w) = bare_inner();
        assert!(matches!(inner.read(Some((3, 0)), "/x"), Err(XsError::TransactionLost)));
        assert!(lock(&inner.state).pending.is_empty());
    }

    /// A scripted server: answers each request through `f` (None: close the connection).
    fn scripted(f: impl Fn(usize, XsdSockmsg, Vec<u8>) -> Option<Vec<u8>> + Send + 'static) -> (PathBuf, TempDir) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("q35dm-xs-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let mut count = 0;
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                loop {
                    let mut hb = [0u8; 16];
                    if s.read_exact(&mut hb).is_err() {
                        break;
                    }
                    let h = decode_header(&hb);
                    let mut p = vec![0u8; h.len as usize];
                    if s.read_exact(&mut p).is_err() {
                        break;
                    }
                    count += 1;
                    match f(count, h, p) {
                        Some(out) => {
                            if s.write_all(&out).is_err() {
                                break;
                            }
                        }
                        None => break,
                    }
                }
                if count >= 1000 {
                    return;
                }
            }
        });
        drop(h); // detached: blocks in accept until the test process ends
        (path, TempDir(dir))
    }

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn msg(ty: XsdSockmsgType, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(&XsdSockmsg::new(ty, req_id, 0, payload.len() as u32)).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn non_idempotent_request_in_flight_reports_connection_lost() {
        // Request 1 (XS_CONTROL) dies with the connection; afterwards reads are answered.
        let (path, _h) =
            scripted(|n, h, _| if n == 1 { None } else { Some(msg(XsdSockmsgType::Read, h.req_id, b"v")) });
        let xs = Xenstore::open_socket(&path, Options::default()).unwrap();
        let r = xs.inner.call(XsdSockmsgType::Control, None, b"print\0".to_vec(), false);
        assert!(matches!(r, Err(XsError::ConnectionLost { op: "XS_CONTROL" })), "{r:?}");
        assert_eq!(xs.read("/x").unwrap(), b"v");
        assert_eq!(xs.connection_count(), 2);
    }

    #[test]
    fn events_overtaking_replies_are_routed_by_type() {
        // Every reply is preceded by an event whose req_id equals the request's.
        let (path, _h) = scripted(|_, h, p| {
            let ty = h.msg_type().unwrap();
            let mut out = msg(XsdSockmsgType::WatchEvent, h.req_id, b"/w/x\0tok\0");
            let body: &[u8] = if ty == XsdSockmsgType::Read { b"value" } else { b"OK\0" };
            let _ = p;
            out.extend_from_slice(&msg(ty, h.req_id, body));
            Some(out)
        });
        let xs = Xenstore::open_socket(&path, Options::default()).unwrap();
        let w = xs.watch("/w", "tok").unwrap();
        for _ in 0..10 {
            assert_eq!(xs.read("/w/x").unwrap(), b"value");
        }
        let mut n = 0;
        while let Some(e) = w.try_recv() {
            assert_eq!(e, WatchEvent { path: "/w/x".into(), token: "tok".into() });
            n += 1;
        }
        assert_eq!(n, 11);
        assert_eq!(xs.connection_count(), 1);
    }
}
