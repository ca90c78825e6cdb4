//! A fake xenstored for tests: the xenstore wire protocol over a unix socket in a temporary
//! directory, served in-process on threads. (Debian's C xenstored and oxenstored both die without
//! a hypervisor, see the reference notes, hence this.)
//!
//! It follows C xenstored 4.17 where it matters to a client:
//! - a tree of nodes with values, permissions (inherited from the parent on creation) and a
//!   generation count; the initial tree is `/`, `/tool`, `/tool/xenstored`, root perms `n0`;
//! - READ, WRITE (creates missing parents), MKDIR (`mkdir -p`, fine if it exists), RM (recursive;
//!   fine if the node is missing but its parent exists, else ENOENT; `/` is EINVAL), DIRECTORY
//!   (E2BIG if the list does not fit one message), DIRECTORY_PART, GET_PERMS, SET_PERMS,
//!   GET_DOMAIN_PATH, WATCH / UNWATCH, TRANSACTION_START / END;
//! - every socket connection is privileged dom0 (relative paths are below `/local/domain/0`,
//!   permissions are stored and reported but not enforced);
//! - paths are checked like `is_valid_nodename()` (EINVAL), arguments like `onearg()` /
//!   `get_strings()` (EINVAL), unknown transaction ids give ENOENT, unknown or unimplemented
//!   message types ENOSYS, at most 10 open transactions per connection (ENOSPC);
//! - a watch fires once on registration (after the ack), then for changes to its node or below
//!   (path = the changed node), and for the removal of an ancestor (path = the watched node);
//!   events are `path\0token\0` with req_id = tx_id = 0 and are queued before the reply to the
//!   request that caused them; relative watches get relative paths; `@` special watches are
//!   accepted but only fire on registration;
//! - transactions work on a snapshot; every node read or written is recorded with its
//!   generation, and commit fails with EAGAIN if any of them changed meanwhile; watches of a
//!   transaction fire at commit;
//! - a header announcing more than 4096 payload bytes kills the connection.
//!
//! Deliberately not implemented: permission enforcement and unprivileged connections, quotas
//! other than the transaction count, XS_CONTROL, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED,
//! RESUME, SET_TARGET, RESET_WATCHES (all ENOSYS), @introduceDomain/@releaseDomain events, the
//! shared-ring transport, live update.
//!
//! Test controls: [`FakeXenstored::restart`] / [`FakeXenstored::stop`] / [`FakeXenstored::start`],
//! inspection ([`FakeXenstored::read`], [`FakeXenstored::dump`], ...), server-side changes
//! ([`FakeXenstored::write`], [`FakeXenstored::rm`]), reply faults
//! ([`FakeXenstored::inject_next_reply`], [`FakeXenstored::set_reply_mode`]) and request
//! counting ([`FakeXenstored::wait_requests`]).

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xen_bindings::xs_wire::{
    decode_header, encode_header, error_reply_payload, XsdSockmsg, XsdSockmsgType, XENSTORE_ABS_PATH_MAX,
    XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX,
};

const DOM0_HOME: &str = "/local/domain/0";
const MAX_TRANSACTIONS: usize = 10;

/// Garbage to send instead of the reply to the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// The first 8 bytes of a reply header.
    TruncatedHeader,
    /// A well-formed "OK" reply with a req_id the client never used.
    WrongReqId,
    /// A reply with type 0x1234 (unknown).
    UnknownType,
    /// A header announcing 0x10000 payload bytes, followed by a few bytes.
    OversizedLen,
    /// A well-formed reply of another type than the request (DIRECTORY_PART, or READ for a
    /// DIRECTORY_PART request).
    WrongType,
    /// These exact bytes.
    Raw(Vec<u8>),
}

/// How the server treats requests (kept across restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    /// Process and reply.
    Normal,
    /// Read requests but neither process nor answer them (a hung xenstored).
    Swallow,
    /// Process requests but drop the reply to the requester (events are still sent).
    ApplyNoReply,
}

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    perms: Vec<String>,
    children: Vec<String>,
    gen: u64,
}

#[derive(Clone, Debug)]
struct Tree {
    nodes: HashMap<String, Node>,
    next_gen: u64,
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn base_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_child(child: &str, parent: &str) -> bool {
    child == parent || parent == "/" || (child.starts_with(parent) && child.as_bytes().get(parent.len()) == Some(&b'/'))
}

impl Tree {
    fn new() -> Self {
        let mut t = Tree { nodes: HashMap::new(), next_gen: 1 };
        let g = t.bump();
        t.nodes.insert("/".into(), Node { value: Vec::new(), perms: vec!["n0".into()], children: Vec::new(), gen: g });
        t.create("/tool/xenstored", Vec::new(), &mut Vec::new());
        t
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        g
    }

    fn gen_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.gen)
    }

    /// Creates `path` (and missing parents), new nodes inheriting their parent's permissions.
    /// `touched` collects every pre-existing node modified (parents) and created.
    fn create(&mut self, path: &str, value: Vec<u8>, touched: &mut Vec<String>) {
        let Some(parent) = parent_of(path) else { return };
        if !self.nodes.contains_key(parent) {
            self.create(parent, Vec::new(), touched);
        }
        let g = self.bump();
        let perms = match self.nodes.get_mut(parent) {
            Some(p) => {
                p.children.push(base_of(path).to_owned());
                p.gen = g;
                p.perms.clone()
            }
            None => vec!["n0".into()],
        };
        touched.push(parent.to_owned());
        touched.push(path.to_owned());
        self.nodes.insert(path.to_owned(), Node { value, perms, children: Vec::new(), gen: g });
    }

    fn write(&mut self, path: &str, value: Vec<u8>, touched: &mut Vec<String>) {
        let g = self.bump();
        if let Some(n) = self.nodes.get_mut(path) {
            n.value = value;
            n.gen = g;
            touched.push(path.to_owned());
        } else {
            self.create(path, value, touched);
        }
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.get(&p) {
                for c in n.children.iter().rev() {
                    stack.push(if p == "/" { format!("/{c}") } else { format!("{p}/{c}") });
                }
                out.push(p);
            }
        }
        out
    }

    /// Removes `path` and below; `Ok(false)` if it did not exist but its parent does.
    fn rm(&mut self, path: &str, touched: &mut Vec<String>) -> Result<bool, i32> {
        if path == "/" {
            return Err(libc::EINVAL);
        }
        if !self.nodes.contains_key(path) {
            return match parent_of(path) {
                Some(p) if self.nodes.contains_key(p) => Ok(false),
                _ => Err(libc::ENOENT),
            };
        }
        for p in self.subtree(path) {
            self.nodes.remove(&p);
            touched.push(p);
        }
        let g = self.bump();
        if let Some(parent) = parent_of(path) {
            if let Some(p) = self.nodes.get_mut(parent) {
                let name = base_of(path);
                p.children.retain(|c| c != name);
                p.gen = g;
            }
            touched.push(parent.to_owned());
        }
        Ok(true)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Vec<String>),
}

#[derive(Debug)]
struct Tx {
    /// The transaction's view (a snapshot of the tree at start, plus its own changes).
    tree: Tree,
    /// Generation of every node at start.
    base: HashMap<String, u64>,
    /// Every node the transaction read or wrote (its first access always sees the start state).
    accessed: BTreeSet<String>,
    ops: Vec<Op>,
    fires: Vec<(String, bool)>,
}

#[derive(Debug)]
struct WatchEntry {
    /// As given (relative or absolute or special).
    given: String,
    /// Canonical absolute path (or the special name).
    canon: String,
    token: String,
}

#[derive(Debug)]
struct ConnState {
    stream: UnixStream,
    watches: Vec<WatchEntry>,
    txs: HashMap<u32, Tx>,
    next_tx: u32,
}

#[derive(Debug)]
struct Store {
    tree: Tree,
    conns: HashMap<u64, ConnState>,
    requests: u64,
    mode: ReplyMode,
    inject: Option<(Garbage, bool)>,
    /// Every request type received, in order (for assertions).
    log: Vec<(u64, u32, Vec<u8>)>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    got_request: Condvar,
    next_conn: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake daemon. Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct FakeXenstored {
    shared: Arc<Shared>,
    dir: PathBuf,
    socket: PathBuf,
    acceptor: Mutex<Option<(JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>>,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl FakeXenstored {
    /// Starts a daemon listening on `<tmp>/q35dm-fake-xenstored-<pid>-<n>/socket`.
    pub fn start_new() -> Self {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("q35dm-fake-xenstored-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create fake xenstored dir");
        let socket = dir.join("socket");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                tree: Tree::new(),
                conns: HashMap::new(),
                requests: 0,
                mode: ReplyMode::Normal,
                inject: None,
                log: Vec::new(),
            }),
            got_request: Condvar::new(),
            next_conn: AtomicU64::new(1),
            threads: Mutex::new(Vec::new()),
        });
        let s = FakeXenstored { shared, dir, socket, acceptor: Mutex::new(None) };
        s.start();
        s
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory (usable as `XENSTORED_RUNDIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Binds the socket (again) and accepts connections.
    pub fn start(&self) {
        let mut acc = lock(&self.acceptor);
        if acc.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).expect("bind fake xenstored socket");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let shared = self.shared.clone();
        let h = std::thread::Builder::new()
            .name("fake-xenstored-accept".into())
            .spawn(move || {
                for s in listener.incoming() {
                    if stop2.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    let Ok(w) = s.try_clone() else { continue };
                    let _ = w.set_write_timeout(Some(Duration::from_secs(5)));
                    lock(&shared.store)
                        .conns
                        .insert(id, ConnState { stream: w, watches: Vec::new(), txs: HashMap::new(), next_tx: 1 });
                    let sh = shared.clone();
                    let h = std::thread::Builder::new()
                        .name(format!("fake-xenstored-conn{id}"))
                        .spawn(move || serve_conn(sh, id, s))
                        .expect("spawn conn thread");
                    lock(&shared.threads).push(h);
                }
            })
            .expect("spawn acceptor");
        *acc = Some((h, stop));
    }

    /// Stops accepting, drops every connection (their transactions and watches die with them)
    /// and removes the socket: xenstored is down. The tree is kept.
    pub fn stop(&self) {
        if let Some((h, stop)) = lock(&self.acceptor).take() {
            stop.store(true, Ordering::Release);
            let _ = UnixStream::connect(&self.socket);
            let _ = h.join();
        }
        {
            let mut st = lock(&self.shared.store);
            for (_, c) in st.conns.drain() {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
        let threads: Vec<_> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// xenstored restarts: [`stop`](Self::stop), optionally forget the tree, [`start`](Self::start)
    /// on the same path.
    pub fn restart(&self, keep_tree: bool) {
        self.stop();
        if !keep_tree {
            lock(&self.shared.store).tree = Tree::new();
        }
        self.start();
    }

    /// Sends `g` instead of the reply to the next request (which is not processed); then closes
    /// that connection if `close_after`.
    pub fn inject_next_reply(&self, g: Garbage, close_after: bool) {
        lock(&self.shared.store).inject = Some((g, close_after));
    }

    /// Sets how requests are treated.
    pub fn set_reply_mode(&self, m: ReplyMode) {
        lock(&self.shared.store).mode = m;
    }

    /// Requests received so far (all connections, also swallowed ones).
    pub fn requests_received(&self) -> u64 {
        lock(&self.shared.store).requests
    }

    /// Waits until at least `n` requests were received in all; false on timeout.
    pub fn wait_requests(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.store);
        while st.requests < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.shared.got_request.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Types of the requests received so far, in order (`XsdSockmsgType` values).
    pub fn request_types(&self) -> Vec<u32> {
        lock(&self.shared.store).log.iter().map(|(_, t, _)| *t).collect()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        lock(&self.shared.store).conns.len()
    }

    /// Registered watches of all connections, as (path as given, token), sorted.
    pub fn watches(&self) -> Vec<(String, String)> {
        let st = lock(&self.shared.store);
        let mut v: Vec<_> =
            st.conns.values().flat_map(|c| c.watches.iter().map(|w| (w.given.clone(), w.token.clone()))).collect();
        v.sort();
        v
    }

    /// Open transactions of all connections.
    pub fn transactions(&self) -> usize {
        lock(&self.shared.store).conns.values().map(|c| c.txs.len()).sum()
    }

    /// A node's value.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.shared.store).tree.nodes.get(path).map(|n| n.value.clone())
    }

    /// A node's value as a string (lossy).
    pub fn read_string(&self, path: &str) -> Option<String> {
        self.read(path).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// A node's permission entries (`["n0", "r5"]`).
    pub fn perms(&self, path: &str) -> Option<Vec<String>> {
        lock(&self.shared.store).tree.nodes.get(path).map(|n| n.perms.clone())
    }

    /// A node's children in creation order.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        lock(&self.shared.store).tree.nodes.get(path).map(|n| n.children.clone())
    }

    /// The subtree at `path`, parents first: (path, value).
    pub fn dump(&self, path: &str) -> Vec<(String, Vec<u8>)> {
        let st = lock(&self.shared.store);
        st.tree
            .subtree(path)
            .into_iter()
            .filter_map(|p| st.tree.nodes.get(&p).map(|n| (p.clone(), n.value.clone())))
            .collect()
    }

    /// [`dump`](Self::dump) as `path = "value"` lines.
    pub fn dump_string(&self, path: &str) -> String {
        self.dump(path).into_iter().map(|(p, v)| format!("{p} = {:?}\n", String::from_utf8_lossy(&v))).collect()
    }

    /// Writes as another (dom0) client would, firing watches.
    pub fn write(&self, path: &str, value: &[u8]) {
        let mut st = lock(&self.shared.store);
        st.tree.write(path, value.to_vec(), &mut Vec::new());
        fire(&mut st, path, false);
    }

    /// Removes as another client would, firing watches.
    pub fn rm(&self, path: &str) {
        let mut st = lock(&self.shared.store);
        if let Ok(true) = st.tree.rm(path, &mut Vec::new()) {
            fire(&mut st, path, true);
        }
    }
}

impl Drop for FakeXenstored {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn message(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let h = XsdSockmsg { type_: ty, req_id, tx_id, len: payload.len() as u32 };
    let mut v = encode_header(&h).to_vec();
    v.extend_from_slice(payload);
    v
}

fn send(st: &mut Store, conn: u64, bytes: &[u8]) {
    let broken = match st.conns.get(&conn) {
        Some(c) => (&c.stream).write_all(bytes).is_err(),
        None => false,
    };
    if broken {
        if let Some(c) = st.conns.remove(&conn) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }
}

/// Fires the watches matching a change of `path` (C xenstored `fire_watches`).
fn fire(st: &mut Store, path: &str, recurse: bool) {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (id, c) in &st.conns {
        for w in &c.watches {
            if w.canon.starts_with('@') {
                continue;
            }
            let shown = if is_child(path, &w.canon) {
                path.to_owned()
            } else if recurse && is_child(&w.canon, path) {
                w.canon.clone()
            } else {
                continue;
            };
            out.push((*id, event_payload(w, &shown)));
        }
    }
    for (id, payload) in out {
        send(st, id, &message(XsdSockmsgType::WatchEvent.as_u32(), 0, 0, &payload));
    }
}

fn event_payload(w: &WatchEntry, path: &str) -> Vec<u8> {
    let shown = if w.given.starts_with('/') || w.given.starts_with('@') {
        path
    } else {
        path.strip_prefix(DOM0_HOME).map(|p| p.trim_start_matches('/')).unwrap_or(path)
    };
    let mut v = shown.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(w.token.as_bytes());
    v.push(0);
    v
}

fn serve_conn(shared: Arc<Shared>, id: u64, mut s: UnixStream) {
    loop {
        let mut hb = [0u8; 16];
        if s.read_exact(&mut hb).is_err() {
            break;
        }
        let h = decode_header(&hb);
        if h.len as usize > XENSTORE_PAYLOAD_MAX {
            // "Client tried to feed us ..." -> the connection is dropped.
            break;
        }
        let mut payload = vec![0u8; h.len as usize];
        if s.read_exact(&mut payload).is_err() {
            break;
        }
        let mut st = lock(&shared.store);
        if !st.conns.contains_key(&id) {
            break;
        }
        st.requests += 1;
        st.log.push((id, h.type_, payload.clone()));
        shared.got_request.notify_all();
        if let Some((g, close)) = st.inject.take() {
            send(&mut st, id, &garbage(&g, &h));
            if close {
                if let Some(c) = st.conns.remove(&id) {
                    let _ = c.stream.shutdown(Shutdown::Both);
                }
                break;
            }
            continue;
        }
        match st.mode {
            ReplyMode::Swallow => continue,
            ReplyMode::Normal | ReplyMode::ApplyNoReply => {}
        }
        let (reply, after) = process(&mut st, id, &h, &payload);
        let (ty, body) = match reply {
            Ok((ty, body)) => (ty, body),
            Err(errno) => (XsdSockmsgType::Error.as_u32(), error_reply_payload(errno)),
        };
        if st.mode == ReplyMode::Normal {
            send(&mut st, id, &message(ty, h.req_id, h.tx_id, &body));
        }
        if let Some(ev) = after {
            send(&mut st, id, &message(XsdSockmsgType::WatchEvent.as_u32(), 0, 0, &ev));
        }
    }
    let mut st = lock(&shared.store);
    if let Some(c) = st.conns.remove(&id) {
        let _ = c.stream.shutdown(Shutdown::Both);
    }
}

fn garbage(g: &Garbage, req: &XsdSockmsg) -> Vec<u8> {
    match g {
        Garbage::TruncatedHeader => message(req.type_, req.req_id, req.tx_id, b"OK\0")[..8].to_vec(),
        Garbage::WrongReqId => message(req.type_, req.req_id.wrapping_add(1000), req.tx_id, b"OK\0"),
        Garbage::UnknownType => message(0x1234, req.req_id, req.tx_id, b"OK\0"),
        Garbage::OversizedLen => {
            let h = XsdSockmsg { type_: req.type_, req_id: req.req_id, tx_id: req.tx_id, len: 0x10000 };
            let mut v = encode_header(&h).to_vec();
            v.extend_from_slice(&[0x55; 32]);
            v
        }
        Garbage::WrongType => {
            let ty = if req.type_ == XsdSockmsgType::DirectoryPart.as_u32() {
                XsdSockmsgType::Read
            } else {
                XsdSockmsgType::DirectoryPart
            };
            message(ty.as_u32(), req.req_id, req.tx_id, b"OK\0")
        }
        Garbage::Raw(b) => b.clone(),
    }
}

/// C xenstored `is_valid_nodename()` plus canonicalisation of relative paths (dom0).
fn canonical(path: &str, allow_special: bool) -> Result<String, i32> {
    if path.is_empty() {
        return Err(libc::EINVAL);
    }
    let valid_chars = path.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@'));
    if !valid_chars {
        return Err(libc::EINVAL);
    }
    if let Some(name) = path.strip_prefix('@') {
        return if allow_special && !name.is_empty() && !name.contains(['/', '@']) {
            Ok(path.to_owned())
        } else {
            Err(libc::EINVAL)
        };
    }
    let abs = if path.starts_with('/') {
        if path.len() > XENSTORE_ABS_PATH_MAX {
            return Err(libc::EINVAL);
        }
        path.to_owned()
    } else {
        if path.len() > XENSTORE_REL_PATH_MAX {
            return Err(libc::EINVAL);
        }
        format!("{DOM0_HOME}/{path}")
    };
    if (abs.ends_with('/') && abs != "/") || abs.contains("//") {
        return Err(libc::EINVAL);
    }
    Ok(abs)
}

/// `onearg()`: the payload must be exactly one NUL-terminated string.
fn onearg(p: &[u8]) -> Result<&str, i32> {
    match p.split_last() {
        Some((0, body)) if !body.contains(&0) => std::str::from_utf8(body).map_err(|_| libc::EINVAL),
        _ => Err(libc::EINVAL),
    }
}

/// `get_strings()`: the NUL-terminated strings at the start of the payload (an unterminated
/// tail is not a string).
fn strings(p: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = p.split(|&b| b == 0).collect();
    v.pop(); // the part after the last NUL
    v
}

fn valid_perm(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'w' | b'r' | b'b' | b'n')) && s.len() > 1 && s[1..].iter().all(u8::is_ascii_digit)
}

type Reply = Result<(u32, Vec<u8>), i32>;

fn ok() -> Reply {
    Ok((0, b"OK\0".to_vec()))
}

/// Handles one request. Returns the reply (type 0 = the request's own type) and an event to
/// send after it (the initial watch fire).
fn process(st: &mut Store, conn: u64, h: &XsdSockmsg, p: &[u8]) -> (Reply, Option<Vec<u8>>) {
    let Some(ty) = h.msg_type() else {
        return (Err(libc::ENOSYS), None);
    };
    let mut after = None;
    let r = match ty {
        XsdSockmsgType::TransactionStart => tx_start(st, conn, h),
        XsdSockmsgType::TransactionEnd => tx_end(st, conn, h, p),
        XsdSockmsgType::Watch => watch(st, conn, h, p, &mut after),
        XsdSockmsgType::Unwatch => unwatch(st, conn, h, p),
        XsdSockmsgType::GetDomainPath => onearg(p).and_then(|d| {
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
                return Err(libc::EINVAL);
            }
            let domid: u32 = d.parse().map_err(|_| libc::EINVAL)?;
            Ok((0, format!("/local/domain/{domid}\0").into_bytes()))
        }),
        XsdSockmsgType::Read
        | XsdSockmsgType::Write
        | XsdSockmsgType::Mkdir
        | XsdSockmsgType::Rm
        | XsdSockmsgType::Directory
        | XsdSockmsgType::DirectoryPart
        | XsdSockmsgType::GetPerms
        | XsdSockmsgType::SetPerms => node_op(st, conn, h, ty, p),
        _ => Err(libc::ENOSYS),
    };
    let r = r.map(|(t, b)| (if t == 0 { ty.as_u32() } else { t }, b));
    (r, after)
}

fn tx_start(st: &mut Store, conn: u64, h: &XsdSockmsg) -> Reply {
    if h.tx_id != 0 {
        return Err(libc::EBUSY);
    }
    let tree = st.tree.clone();
    let base = tree.nodes.iter().map(|(p, n)| (p.clone(), n.gen)).collect();
    let c = st.conns.get_mut(&conn).ok_or(libc::EINVAL)?;
    if c.txs.len() >= MAX_TRANSACTIONS {
        return Err(libc::ENOSPC);
    }
    let mut id = c.next_tx;
    while id == 0 || c.txs.contains_key(&id) {
        id = id.wrapping_add(1);
    }
    c.next_tx = id.wrapping_add(1);
    c.txs.insert(id, Tx { tree, base, accessed: BTreeSet::new(), ops: Vec::new(), fires: Vec::new() });
    Ok((0, format!("{id}\0").into_bytes()))
}

fn tx_end(st: &mut Store, conn: u64, h: &XsdSockmsg, p: &[u8]) -> Reply {
    let c = st.conns.get_mut(&conn).ok_or(libc::EINVAL)?;
    if !c.txs.contains_key(&h.tx_id) {
        return Err(libc::ENOENT);
    }
    let commit = match onearg(p)? {
        "T" => true,
        "F" => false,
        _ => return Err(libc::EINVAL),
    };
    let Some(tx) = c.txs.remove(&h.tx_id) else { return Err(libc::ENOENT) };
    if !commit {
        return ok();
    }
    if tx.accessed.iter().any(|path| st.tree.gen_of(path) != tx.base.get(path).copied()) {
        return Err(libc::EAGAIN);
    }
    let mut scratch = Vec::new();
    for op in tx.ops {
        match op {
            Op::Write(path, v) => st.tree.write(&path, v, &mut scratch),
            Op::Mkdir(path) => {
                if !st.tree.nodes.contains_key(&path) {
                    st.tree.create(&path, Vec::new(), &mut scratch);
                }
            }
            Op::Rm(path) => {
                let _ = st.tree.rm(&path, &mut scratch);
            }
            Op::SetPerms(path, perms) => {
                let g = st.tree.bump();
                if let Some(n) = st.tree.nodes.get_mut(&path) {
                    n.perms = perms;
                    n.gen = g;
                }
            }
        }
    }
    for (path, recurse) in tx.fires {
        fire(st, &path, recurse);
    }
    ok()
}

fn check_tx(st: &Store, conn: u64, h: &XsdSockmsg) -> Result<(), i32> {
    if h.tx_id != 0 && !st.conns.get(&conn).is_some_and(|c| c.txs.contains_key(&h.tx_id)) {
        return Err(libc::ENOENT);
    }
    Ok(())
}

fn watch(st: &mut Store, conn: u64, h: &XsdSockmsg, p: &[u8], after: &mut Option<Vec<u8>>) -> Reply {
    check_tx(st, conn, h)?;
    let v = strings(p);
    if v.len() < 2 {
        return Err(libc::EINVAL);
    }
    let given = std::str::from_utf8(v[0]).map_err(|_| libc::EINVAL)?.to_owned();
    let token = std::str::from_utf8(v[1]).map_err(|_| libc::EINVAL)?.to_owned();
    let canon = canonical(&given, true)?;
    let c = st.conns.get_mut(&conn).ok_or(libc::EINVAL)?;
    if c.watches.iter().any(|w| w.canon == canon && w.token == token) {
        return Err(libc::EEXIST);
    }
    let w = WatchEntry { given: given.clone(), canon, token };
    // "We fire once up front: simplifies clients and restart."
    *after = Some(event_payload(&w, &w.canon));
    c.watches.push(w);
    ok()
}

fn unwatch(st: &mut Store, conn: u64, h: &XsdSockmsg, p: &[u8]) -> Reply {
    check_tx(st, conn, h)?;
    let v = strings(p);
    if v.len() < 2 {
        return Err(libc::EINVAL);
    }
    let given = std::str::from_utf8(v[0]).map_err(|_| libc::EINVAL)?;
    let token = std::str::from_utf8(v[1]).map_err(|_| libc::EINVAL)?;
    let canon = canonical(given, true)?;
    let c = st.conns.get_mut(&conn).ok_or(libc::EINVAL)?;
    let before = c.watches.len();
    c.watches.retain(|w| !(w.canon == canon && w.token == token));
    if c.watches.len() == before {
        return Err(libc::ENOENT);
    }
    ok()
}

fn node_op(st: &mut Store, conn: u64, h: &XsdSockmsg, ty: XsdSockmsgType, p: &[u8]) -> Reply {
    check_tx(st, conn, h)?;
    // Take the transaction out while working on it.
    let mut tx = if h.tx_id != 0 { st.conns.get_mut(&conn).and_then(|c| c.txs.remove(&h.tx_id)) } else { None };
    let mut fires = Vec::new();
    let r = node_op_in(&mut st.tree, tx.as_mut(), ty, p, &mut fires);
    match tx {
        Some(tx) => {
            if let Some(c) = st.conns.get_mut(&conn) {
                c.txs.insert(h.tx_id, tx);
            }
        }
        None => {
            for (path, recurse) in fires {
                fire(st, &path, recurse);
            }
        }
    }
    r
}

fn node_op_in(
    main: &mut Tree,
    mut tx: Option<&mut Tx>,
    ty: XsdSockmsgType,
    p: &[u8],
    fires: &mut Vec<(String, bool)>,
) -> Reply {
    // The path is the first string; WRITE's value and the other arguments follow it.
    let nul = p.iter().position(|&b| b == 0).ok_or(libc::EINVAL)?;
    let path = std::str::from_utf8(&p[..nul]).map_err(|_| libc::EINVAL)?;
    let rest = &p[nul + 1..];
    let path = canonical(path, false)?;
    let tree: &mut Tree = match tx.as_deref_mut() {
        Some(t) => &mut t.tree,
        None => main,
    };
    let mut touched: Vec<String> = Vec::new();
    let mut op = None;
    let mut fire_this = None;
    let reply = match ty {
        XsdSockmsgType::Read | XsdSockmsgType::GetPerms | XsdSockmsgType::Directory => {
            if !rest.is_empty() {
                return Err(libc::EINVAL);
            }
            touched.push(path.clone());
            match tree.nodes.get(&path) {
                None => Err(libc::ENOENT),
                Some(n) => match ty {
                    XsdSockmsgType::Read => Ok((0, n.value.clone())),
                    XsdSockmsgType::GetPerms => {
                        Ok((0, n.perms.iter().flat_map(|s| s.bytes().chain(std::iter::once(0))).collect()))
                    }
                    _ => {
                        let body: Vec<u8> =
                            n.children.iter().flat_map(|s| s.bytes().chain(std::iter::once(0))).collect();
                        if body.len() > XENSTORE_PAYLOAD_MAX {
                            Err(libc::E2BIG)
                        } else {
                            Ok((0, body))
                        }
                    }
                },
            }
        }
        XsdSockmsgType::DirectoryPart => {
            let args = strings(rest);
            let off: usize = match args.as_slice() {
                [o] => std::str::from_utf8(o).ok().and_then(|s| s.parse().ok()).ok_or(libc::EINVAL)?,
                _ => return Err(libc::EINVAL),
            };
            touched.push(path.clone());
            match tree.nodes.get(&path) {
                None => Err(libc::ENOENT),
                Some(n) => {
                    let all: Vec<u8> = n.children.iter().flat_map(|s| s.bytes().chain(std::iter::once(0))).collect();
                    let mut body = format!("{}\0", n.gen).into_bytes();
                    if off >= all.len() {
                        body.push(0);
                    } else {
                        // Whole names only, as many as fit.
                        let room = XENSTORE_PAYLOAD_MAX - body.len() - 1;
                        let mut end = off;
                        for (i, &b) in all.iter().enumerate().skip(off) {
                            if b == 0 {
                                if i + 1 - off > room {
                                    break;
                                }
                                end = i + 1;
                            }
                        }
                        if end == off {
                            return Err(libc::E2BIG);
                        }
                        body.extend_from_slice(&all[off..end]);
                        if end == all.len() {
                            body.push(0);
                        }
                    }
                    Ok((0, body))
                }
            }
        }
        XsdSockmsgType::Write => {
            tree.write(&path, rest.to_vec(), &mut touched);
            op = Some(Op::Write(path.clone(), rest.to_vec()));
            fire_this = Some((path.clone(), false));
            ok()
        }
        XsdSockmsgType::Mkdir => {
            if !rest.is_empty() {
                return Err(libc::EINVAL);
            }
            if tree.nodes.contains_key(&path) {
                touched.push(path.clone());
            } else {
                tree.create(&path, Vec::new(), &mut touched);
                op = Some(Op::Mkdir(path.clone()));
                fire_this = Some((path.clone(), false));
            }
            ok()
        }
        XsdSockmsgType::Rm => {
            if !rest.is_empty() {
                return Err(libc::EINVAL);
            }
            touched.push(path.clone());
            match tree.rm(&path, &mut touched) {
                Ok(true) => {
                    op = Some(Op::Rm(path.clone()));
                    fire_this = Some((path.clone(), true));
                    ok()
                }
                Ok(false) => ok(),
                Err(e) => Err(e),
            }
        }
        XsdSockmsgType::SetPerms => {
            let perms = strings(rest);
            if perms.is_empty() || !perms.iter().all(|s| valid_perm(s)) {
                return Err(libc::EINVAL);
            }
            let perms: Vec<String> = perms.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            touched.push(path.clone());
            let g = tree.bump();
            match tree.nodes.get_mut(&path) {
                None => Err(libc::ENOENT),
                Some(n) => {
                    n.perms = perms.clone();
                    n.gen = g;
                    op = Some(Op::SetPerms(path.clone(), perms));
                    fire_this = Some((path.clone(), false));
                    ok()
                }
            }
        }
        _ => Err(libc::ENOSYS),
    };
    match tx {
        Some(t) => {
            t.accessed.extend(touched);
            if let Some(o) = op {
                t.ops.push(o);
            }
            if let Some(f) = fire_this {
                t.fires.push(f);
            }
        }
        None => {
            if let Some(f) = fire_this {
                fires.push(f);
            }
        }
    }
    reply
}
