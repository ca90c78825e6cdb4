//! The xenstore client against the fake xenstored (tests/support/xenstored.rs).

#[path = "support/xenstored.rs"]
mod xenstored;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use q35dm::xenstore::{
    Access, Endpoint, Options, PathError, ProtocolError, ReconnectPolicy, WatchEvent, Xenstore, XsError,
};
use xen_bindings::xs_wire::{encode_header, XsdSockmsg, XsdSockmsgType, XENSTORE_PAYLOAD_MAX};
use xenstored::{FakeXenstored, Garbage, ReplyMode};

const T: Duration = Duration::from_secs(5);

fn opts() -> Options {
    Options {
        request_timeout: Some(Duration::from_secs(10)),
        reconnect: ReconnectPolicy {
            max_attempts: 200,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(50),
        },
    }
}

fn setup() -> (FakeXenstored, Xenstore) {
    q35dm::logging::init(log::LevelFilter::Warn);
    let fake = FakeXenstored::start_new();
    let xs = Xenstore::open_socket(fake.socket_path(), opts()).expect("connect to fake xenstored");
    (fake, xs)
}

fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent { path: path.into(), token: token.into() }
}

fn errno(r: Result<impl std::fmt::Debug, XsError>) -> i32 {
    match r {
        Err(e) => e.errno().unwrap_or_else(|| panic!("not an errno error: {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Waits until `f` holds.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Operations

#[test]
fn read_write_mkdir_rm_directory() {
    let (fake, xs) = setup();
    xs.write("/local/domain/5/name", "guest").unwrap();
    assert_eq!(xs.read("/local/domain/5/name").unwrap(), b"guest");
    assert_eq!(xs.read_string("/local/domain/5/name").unwrap(), "guest");
    assert_eq!(fake.read_string("/local/domain/5/name").as_deref(), Some("guest"));
    // Missing parents were created with empty values.
    assert_eq!(xs.read("/local/domain").unwrap(), b"");

    // Binary and empty values.
    xs.write("/bin", [0u8, 1, 2, 0xff, 0]).unwrap();
    assert_eq!(xs.read("/bin").unwrap(), [0u8, 1, 2, 0xff, 0]);
    assert!(matches!(xs.read_string("/bin"), Err(XsError::NotUtf8 { .. })));
    xs.write("/empty", "").unwrap();
    assert_eq!(xs.read("/empty").unwrap(), b"");

    xs.mkdir("/a/b/c").unwrap();
    xs.mkdir("/a/b/c").unwrap(); // exists: fine
    xs.write("/a/b/c", "v").unwrap();
    xs.mkdir("/a/b/c").unwrap(); // does not clear the value
    assert_eq!(xs.read("/a/b/c").unwrap(), b"v");
    xs.write("/a/b/d", "w").unwrap();
    xs.write("/a/x", "").unwrap();
    let mut d = xs.directory("/a/b").unwrap();
    d.sort();
    assert_eq!(d, ["c", "d"]);
    assert_eq!(xs.directory("/a/b/c").unwrap(), Vec::<String>::new());
    let root = xs.directory("/").unwrap();
    assert!(root.contains(&"tool".to_string()) && root.contains(&"a".to_string()), "{root:?}");

    xs.rm("/a/b").unwrap();
    assert!(xs.read("/a/b/c").unwrap_err().is_enoent());
    assert!(xs.read("/a/b").unwrap_err().is_enoent());
    assert_eq!(xs.directory("/a").unwrap(), ["x"]);
    assert!(fake.read("/a/b/d").is_none());
    // Removing a missing node whose parent exists is fine; with a missing parent it is ENOENT.
    xs.rm("/a/b").unwrap();
    assert_eq!(errno(xs.rm("/a/b/c")), libc::ENOENT);
    assert_eq!(errno(xs.rm("/")), libc::EINVAL);
    assert_eq!(errno(xs.read("/nope")), libc::ENOENT);
    assert_eq!(errno(xs.directory("/nope")), libc::ENOENT);
    assert_eq!(errno(xs.get_perms("/nope")), libc::ENOENT);

    // Relative paths are below /local/domain/0 for a dom0 connection.
    xs.write("device-model/5/state", "running").unwrap();
    assert_eq!(fake.read_string("/local/domain/0/device-model/5/state").as_deref(), Some("running"));
    assert_eq!(xs.read("device-model/5/state").unwrap(), b"running");

    assert_eq!(xs.get_domain_path(7).unwrap(), "/local/domain/7");
    assert_eq!(xs.get_domain_path(0).unwrap(), "/local/domain/0");
    assert_eq!(xs.connection_count(), 1);
    assert!(xs.is_connected());
}

#[test]
fn long_directory_falls_back_to_directory_part() {
    let (fake, xs) = setup();
    // 300 children of 30 bytes: about 9 KiB of names, over one message.
    let names: Vec<String> = (0..300).map(|i| format!("child-with-a-long-name-{i:06}")).collect();
    xs.transaction(|tx| {
        for n in &names {
            tx.write(&format!("/big/{n}"), "")?;
        }
        Ok(())
    })
    .unwrap();
    let got = xs.directory("/big").unwrap();
    assert_eq!(got, names);
    let types = fake.request_types();
    assert!(types.contains(&XsdSockmsgType::DirectoryPart.as_u32()));
}

#[test]
fn permissions_round_trip() {
    let (fake, xs) = setup();
    assert_eq!(xs.get_perms("/").unwrap(), q35dm::xenstore::Permissions::new(0, Access::None));
    xs.write("/local/domain/0/device-model/5/state", "").unwrap();
    let p = q35dm::xenstore::Permissions::new(0, Access::None)
        .with(5, Access::Read)
        .with(6, Access::Write)
        .with(7, Access::Both);
    xs.set_perms("/local/domain/0/device-model/5", &p).unwrap();
    assert_eq!(xs.get_perms("/local/domain/0/device-model/5").unwrap(), p);
    assert_eq!(fake.perms("/local/domain/0/device-model/5").unwrap(), ["n0", "r5", "w6", "b7"]);
    // New children inherit their parent's permissions.
    xs.write("/local/domain/0/device-model/5/new", "x").unwrap();
    assert_eq!(xs.get_perms("/local/domain/0/device-model/5/new").unwrap(), p);
    let owned = q35dm::xenstore::Permissions::new(5, Access::Read);
    xs.set_perms("/local/domain/0/device-model/5/new", &owned).unwrap();
    assert_eq!(xs.get_perms("/local/domain/0/device-model/5/new").unwrap(), owned);
    assert_eq!(errno(xs.set_perms("/missing", &owned)), libc::ENOENT);
}

#[test]
fn bad_paths_are_refused_before_sending() {
    let (fake, xs) = setup();
    let before = fake.requests_received();
    let long_abs = format!("/{}", "a".repeat(3072));
    let long_rel = "a".repeat(2049);
    let cases: &[(&str, PathError)] = &[
        ("", PathError::Empty),
        ("/a/", PathError::TrailingSlash),
        ("/a//b", PathError::DoubleSlash),
        ("/a b", PathError::BadChar(b' ')),
        ("/a\0b", PathError::BadChar(0)),
        ("/a\nb", PathError::BadChar(b'\n')),
        ("/a.b", PathError::BadChar(b'.')),
        ("@introduceDomain", PathError::Special),
        (&long_abs, PathError::TooLong { len: 3073, max: 3072 }),
        (&long_rel, PathError::TooLong { len: 2049, max: 2048 }),
    ];
    for (p, why) in cases {
        match xs.read(p) {
            Err(XsError::InvalidPath { reason, .. }) => assert_eq!(reason, *why, "{p:?}"),
            r => panic!("{p:?}: {r:?}"),
        }
        assert!(matches!(xs.write(p, "v"), Err(XsError::InvalidPath { .. })));
        assert!(matches!(xs.rm(p), Err(XsError::InvalidPath { .. })));
    }
    assert!(matches!(xs.watch("/a//b", "t"), Err(XsError::InvalidPath { .. })));
    assert!(matches!(xs.watch("/ok", "t\0x"), Err(XsError::InvalidToken { .. })));
    assert_eq!(fake.requests_received(), before, "nothing was sent");
    // The server agrees with the client's rules (raw requests bypassing validation).
    let mut raw = std::os::unix::net::UnixStream::connect(fake.socket_path()).unwrap();
    for bad in [&b"/a//b\0"[..], b"/a/\0", b"/a.b\0", b"\0", b"/a\0extra\0"] {
        let (ty, payload) = raw_call(&mut raw, XsdSockmsgType::Read, 0, bad);
        assert_eq!(ty, XsdSockmsgType::Error.as_u32());
        assert_eq!(payload, b"EINVAL\0", "{bad:?}");
    }
}

#[test]
fn payload_limit() {
    let (fake, xs) = setup();
    let path = "/v";
    // path + NUL + value == XENSTORE_PAYLOAD_MAX is fine.
    let fits = vec![b'x'; XENSTORE_PAYLOAD_MAX - path.len() - 1];
    xs.write(path, &fits).unwrap();
    assert_eq!(xs.read(path).unwrap(), fits);
    let before = fake.requests_received();
    let over = vec![b'x'; XENSTORE_PAYLOAD_MAX - path.len()];
    match xs.write(path, &over) {
        Err(XsError::PayloadTooLarge { len }) => assert_eq!(len, XENSTORE_PAYLOAD_MAX + 1),
        r => panic!("{r:?}"),
    }
    assert_eq!(fake.requests_received(), before, "refused locally");
    assert_eq!(xs.read(path).unwrap(), fits);
    assert_eq!(xs.connection_count(), 1);

    // The server drops a connection that announces more than 4096 bytes.
    let mut raw = std::os::unix::net::UnixStream::connect(fake.socket_path()).unwrap();
    let h = XsdSockmsg::new(XsdSockmsgType::Write, 1, 0, 4097);
    use std::io::{Read, Write};
    raw.write_all(&encode_header(&h)).unwrap();
    raw.set_read_timeout(Some(T)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(raw.read(&mut b).unwrap(), 0, "connection closed");
}

fn raw_call(s: &mut std::os::unix::net::UnixStream, ty: XsdSockmsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(T)).unwrap();
    let h = XsdSockmsg::new(ty, 42, tx, payload.len() as u32);
    s.write_all(&encode_header(&h)).unwrap();
    s.write_all(payload).unwrap();
    loop {
        let mut hb = [0u8; 16];
        s.read_exact(&mut hb).unwrap();
        let r = xen_bindings::xs_wire::decode_header(&hb);
        let mut p = vec![0u8; r.len as usize];
        s.read_exact(&mut p).unwrap();
        if r.type_ != XsdSockmsgType::WatchEvent.as_u32() {
            assert_eq!(r.req_id, 42);
            return (r.type_, p);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watches

#[test]
fn watch_fires_initially_and_on_subtree_changes() {
    let (fake, xs) = setup();
    let w = xs.watch("/local/domain/5/device", "dev").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device", "dev")), "initial fire");
    assert_eq!(fake.watches(), [("/local/domain/5/device".to_string(), "dev".to_string())]);

    xs.write("/local/domain/5/device/vif/0/state", "1").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device/vif/0/state", "dev")));
    // A sibling or a parent change does not fire.
    xs.write("/local/domain/5/other", "1").unwrap();
    xs.write("/local/domain/5", "x").unwrap();
    // Changes by someone else do.
    fake.write("/local/domain/5/device", b"v");
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device", "dev")));
    // Removing the node fires; removing an ancestor reports the watched path.
    xs.rm("/local/domain/5/device/vif").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device/vif", "dev")));
    xs.rm("/local/domain/5").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device", "dev")));
    // mkdir of an existing node is no change; set_perms is.
    xs.mkdir("/local/domain/5/device").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device", "dev")));
    xs.mkdir("/local/domain/5/device").unwrap();
    xs.set_perms("/local/domain/5/device", &q35dm::xenstore::Permissions::new(5, Access::Read)).unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/5/device", "dev")));
    assert_eq!(w.recv_timeout(Duration::from_millis(100)), None, "nothing else fired");

    w.unwatch().unwrap();
    assert!(fake.watches().is_empty());
}

#[test]
fn watch_variants() {
    let (fake, xs) = setup();
    // Several watches feeding one channel, told apart by token.
    let (tx, rx) = mpsc::channel();
    xs.watch_with("/a", "ta", tx.clone()).unwrap();
    xs.watch_with("/b", "tb", tx).unwrap();
    let mut initial = vec![rx.recv_timeout(T).unwrap(), rx.recv_timeout(T).unwrap()];
    initial.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(initial, [ev("/a", "ta"), ev("/b", "tb")]);
    xs.write("/b/1", "").unwrap();
    assert_eq!(rx.recv_timeout(T).unwrap(), ev("/b/1", "tb"));
    // Tokens are unique per client.
    assert!(matches!(xs.watch("/c", "ta"), Err(XsError::InvalidToken { .. })));
    // Same path, another token: fine.
    let w2 = xs.watch("/a", "ta2").unwrap();
    assert_eq!(w2.recv_timeout(T), Some(ev("/a", "ta2")));
    xs.unwatch("/a", "ta").unwrap();
    xs.write("/a", "1").unwrap();
    assert_eq!(w2.recv_timeout(T), Some(ev("/a", "ta2")));
    assert_eq!(rx.recv_timeout(Duration::from_millis(100)).ok(), None, "ta unregistered");
    assert_eq!(errno(xs.unwatch("/zzz", "nope")), libc::ENOENT);

    // Relative watches report relative paths.
    let rel = xs.watch("device-model/3", "rel").unwrap();
    assert_eq!(rel.recv_timeout(T), Some(ev("device-model/3", "rel")));
    xs.write("/local/domain/0/device-model/3/state", "running").unwrap();
    assert_eq!(rel.recv_timeout(T), Some(ev("device-model/3/state", "rel")));

    // Special watches fire on registration.
    let sp = xs.watch("@releaseDomain", "rel-dom").unwrap();
    assert_eq!(sp.recv_timeout(T), Some(ev("@releaseDomain", "rel-dom")));

    // Dropping a Watch unregisters it.
    drop(w2);
    drop(rel);
    drop(sp);
    assert!(eventually(|| fake.watches() == [("/b".to_string(), "tb".to_string())]), "{:?}", fake.watches());
}

#[test]
fn event_between_request_and_reply_is_not_a_reply() {
    let (_fake, xs) = setup();
    let w = xs.watch("/n", "n").unwrap();
    assert!(w.recv_timeout(T).is_some());
    // The fake (like xenstored) queues the event caused by a write before the write's reply.
    for i in 0..50 {
        xs.write("/n", i.to_string()).unwrap();
        assert_eq!(xs.read("/n").unwrap(), i.to_string().as_bytes());
        assert_eq!(w.recv_timeout(T), Some(ev("/n", "n")));
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions

#[test]
fn transaction_commit_and_abort() {
    let (fake, xs) = setup();
    xs.write("/t/a", "0").unwrap();
    let w = xs.watch("/t", "t").unwrap();
    assert!(w.recv_timeout(T).is_some());

    let tx = xs.transaction_start().unwrap();
    assert!(tx.id() != 0);
    tx.write("/t/a", "1").unwrap();
    tx.write("/t/b", "2").unwrap();
    assert_eq!(tx.read("/t/a").unwrap(), b"1", "the transaction sees its own writes");
    assert_eq!(xs.read("/t/a").unwrap(), b"0", "others do not");
    assert!(xs.read("/t/b").unwrap_err().is_enoent());
    let mut d = tx.directory("/t").unwrap();
    d.sort();
    assert_eq!(d, ["a", "b"]);
    assert_eq!(w.recv_timeout(Duration::from_millis(50)), None, "no events before commit");
    tx.commit().unwrap();
    assert_eq!(xs.read("/t/a").unwrap(), b"1");
    assert_eq!(xs.read("/t/b").unwrap(), b"2");
    let mut got = vec![w.recv_timeout(T).unwrap().path, w.recv_timeout(T).unwrap().path];
    got.sort();
    assert_eq!(got, ["/t/a", "/t/b"]);

    let tx = xs.transaction_start().unwrap();
    tx.rm("/t/a").unwrap();
    tx.mkdir("/t/c").unwrap();
    tx.set_perms("/t/b", &q35dm::xenstore::Permissions::new(3, Access::Both)).unwrap();
    assert!(tx.read("/t/a").unwrap_err().is_enoent());
    tx.abort().unwrap();
    assert_eq!(xs.read("/t/a").unwrap(), b"1");
    assert!(xs.read("/t/c").unwrap_err().is_enoent());
    assert_eq!(fake.perms("/t/b").unwrap(), ["n0"]);
    assert_eq!(fake.transactions(), 0);

    // Dropping an open transaction aborts it.
    {
        let tx = xs.transaction_start().unwrap();
        tx.write("/t/dropped", "x").unwrap();
        assert_eq!(fake.transactions(), 1);
    }
    assert!(eventually(|| fake.transactions() == 0));
    assert!(xs.read("/t/dropped").unwrap_err().is_enoent());

    // The fake enforces xenstored's 10-transaction quota.
    let txs: Vec<_> = (0..10).map(|_| xs.transaction_start().unwrap()).collect();
    assert_eq!(errno(xs.transaction_start()), libc::ENOSPC);
    drop(txs);
}

#[test]
fn transaction_conflict_and_retry_helper() {
    let (_fake, xs) = setup();
    let other = Xenstore::open_socket(_fake.socket_path(), opts()).unwrap();
    xs.write("/counter", "0").unwrap();

    // A plain conflict: read in the transaction, changed by someone else, commit -> EAGAIN.
    let tx = xs.transaction_start().unwrap();
    assert_eq!(tx.read("/counter").unwrap(), b"0");
    other.write("/counter", "5").unwrap();
    tx.write("/counter", "1").unwrap();
    let e = tx.commit().unwrap_err();
    assert_eq!(e.errno(), Some(libc::EAGAIN));
    assert!(e.is_again());
    assert_eq!(xs.read("/counter").unwrap(), b"5", "the conflicting commit changed nothing");

    // Unrelated nodes do not conflict.
    let tx = xs.transaction_start().unwrap();
    tx.read("/counter").unwrap();
    other.write("/elsewhere", "1").unwrap();
    tx.write("/counter", "6").unwrap();
    tx.commit().unwrap();

    // The helper re-runs the body after a conflict.
    let mut runs = 0;
    let v = xs
        .transaction(|tx| {
            runs += 1;
            let n: u32 = tx.read_string("/counter")?.parse().unwrap();
            if runs == 1 {
                other.write("/counter", "100").unwrap();
            }
            tx.write("/counter", (n + 1).to_string())?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(v, 101);
    assert_eq!(xs.read("/counter").unwrap(), b"101");

    // Concurrent increments from several threads all land.
    let xs = Arc::new(xs);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let xs = xs.clone();
            thread::spawn(move || {
                for _ in 0..10 {
                    xs.transaction(|tx| {
                        let n: u32 = tx.read_string("/counter")?.parse().unwrap();
                        tx.write("/counter", (n + 1).to_string())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(xs.read("/counter").unwrap(), b"141");

    // A non-EAGAIN error from the body aborts and is returned.
    let r: Result<(), _> = xs.transaction(|tx| {
        tx.write("/counter", "999")?;
        tx.read("/does/not/exist").map(drop)
    });
    assert!(r.unwrap_err().is_enoent());
    assert_eq!(xs.read("/counter").unwrap(), b"141");
}

// ---------------------------------------------------------------------------------------------
// Garbage from the server

fn garbage_case(g: Garbage, close_after: bool, check: impl Fn(&XsError) -> bool) {
    let (fake, xs) = setup();
    xs.write("/k", "v").unwrap();
    let w = xs.watch("/k", "k").unwrap();
    assert!(w.recv_timeout(T).is_some());
    fake.inject_next_reply(g.clone(), close_after);
    let e = xs.read("/k").unwrap_err();
    assert!(check(&e), "{g:?}: {e:?}");
    // The client reconnects and keeps working, with its watch re-registered.
    assert_eq!(xs.read("/k").unwrap(), b"v", "{g:?}");
    assert!(xs.connection_count() >= 2, "{g:?}");
    assert_eq!(w.recv_timeout(T), Some(ev("/k", "k")), "re-registration fires once");
    fake.write("/k", b"w");
    assert_eq!(w.recv_timeout(T), Some(ev("/k", "k")));
    assert_eq!(fake.watches().len(), 1);
}

#[test]
fn garbage_truncated_header() {
    garbage_case(Garbage::TruncatedHeader, true, |e| {
        matches!(e, XsError::Protocol(ProtocolError::Truncated { have: 8, need: 16 }))
    });
}

#[test]
fn garbage_truncated_header_then_silence_times_out() {
    q35dm::logging::init(log::LevelFilter::Warn);
    let fake = FakeXenstored::start_new();
    let o = Options { request_timeout: Some(Duration::from_millis(300)), ..opts() };
    let xs = Xenstore::open_socket(fake.socket_path(), o).unwrap();
    xs.write("/k", "v").unwrap();
    fake.inject_next_reply(Garbage::TruncatedHeader, false);
    assert!(matches!(xs.read("/k"), Err(XsError::Timeout(_))));
    assert_eq!(xs.read("/k").unwrap(), b"v");
    assert_eq!(xs.connection_count(), 2);
}

#[test]
fn garbage_wrong_req_id() {
    garbage_case(Garbage::WrongReqId, false, |e| matches!(e, XsError::Protocol(ProtocolError::UnexpectedReqId { .. })));
}

#[test]
fn garbage_unknown_type() {
    garbage_case(Garbage::UnknownType, false, |e| matches!(e, XsError::Protocol(ProtocolError::UnknownType(0x1234))));
}

#[test]
fn garbage_oversized_len() {
    garbage_case(Garbage::OversizedLen, false, |e| {
        matches!(e, XsError::Protocol(ProtocolError::Oversized { len: 0x10000 }))
    });
}

#[test]
fn garbage_wrong_reply_type() {
    garbage_case(Garbage::WrongType, false, |e| {
        matches!(e, XsError::Protocol(ProtocolError::WrongReplyType { expected: "XS_READ", .. }))
    });
}

#[test]
fn garbage_error_names() {
    let (fake, xs) = setup();
    // An XS_ERROR with a name outside xsd_errors[] is EINVAL; the connection stays.
    // Raw replies need the right req_id; the client allocates ids sequentially from 1, and
    // this client has sent nothing yet.
    let mut m = encode_header(&XsdSockmsg::new(XsdSockmsgType::Error, 1, 0, 10)).to_vec();
    m.extend_from_slice(b"EWHATEVER\0");
    fake.inject_next_reply(Garbage::Raw(m), false);
    assert_eq!(errno(xs.read("/x")), libc::EINVAL);
    let mut m = encode_header(&XsdSockmsg::new(XsdSockmsgType::Error, 2, 0, 7)).to_vec();
    m.extend_from_slice(b"EACCES\0");
    fake.inject_next_reply(Garbage::Raw(m), false);
    assert_eq!(errno(xs.read("/x")), libc::EACCES);
    assert_eq!(xs.connection_count(), 1);
    // A malformed watch event is ignored without a reconnect.
    let w = xs.watch("/w", "w").unwrap();
    assert!(w.recv_timeout(T).is_some());
    let mut m = encode_header(&XsdSockmsg::new(XsdSockmsgType::WatchEvent, 0, 0, 3)).to_vec();
    m.extend_from_slice(b"abc");
    let mut reply = encode_header(&XsdSockmsg::new(XsdSockmsgType::Read, 4, 0, 1)).to_vec();
    reply.extend_from_slice(b"z");
    m.extend_from_slice(&reply);
    fake.inject_next_reply(Garbage::Raw(m), false);
    assert_eq!(xs.read("/x").unwrap(), b"z");
    assert_eq!(xs.connection_count(), 1);
    assert_eq!(w.recv_timeout(Duration::from_millis(50)), None);
}

// ---------------------------------------------------------------------------------------------
// xenstored restart

#[test]
fn restart_reregisters_watches() {
    let (fake, xs) = setup();
    xs.write("/local/domain/0/device-model/5/command", "").unwrap();
    let w = xs.watch("/local/domain/0/device-model/5/command", "cmd").unwrap();
    let w2 = xs.watch("@releaseDomain", "rel").unwrap();
    assert!(w.recv_timeout(T).is_some());
    assert!(w2.recv_timeout(T).is_some());

    fake.restart(true);
    // Re-registration fires once (the owner re-reads what it watches).
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/0/device-model/5/command", "cmd")));
    assert_eq!(w2.recv_timeout(T), Some(ev("@releaseDomain", "rel")));
    assert_eq!(
        fake.watches(),
        [
            ("/local/domain/0/device-model/5/command".to_string(), "cmd".to_string()),
            ("@releaseDomain".to_string(), "rel".to_string())
        ]
    );
    assert_eq!(xs.connection_count(), 2);
    // A write after the restart fires the watch: by someone else, and by this client.
    fake.write("/local/domain/0/device-model/5/command", b"stop");
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/0/device-model/5/command", "cmd")));
    xs.write("/local/domain/0/device-model/5/command", "continue").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/0/device-model/5/command", "cmd")));
    assert_eq!(xs.read("/local/domain/0/device-model/5/command").unwrap(), b"continue");

    // A restart that loses the tree: the watch survives, the data does not.
    fake.restart(false);
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/0/device-model/5/command", "cmd")));
    assert!(xs.read("/local/domain/0/device-model/5/command").unwrap_err().is_enoent());
    xs.write("/local/domain/0/device-model/5/command", "again").unwrap();
    assert_eq!(w.recv_timeout(T), Some(ev("/local/domain/0/device-model/5/command", "cmd")));
    assert_eq!(xs.connection_count(), 3);
}

#[test]
fn read_in_flight_is_retried_after_restart() {
    let (fake, xs) = setup();
    xs.write("/x", "42").unwrap();
    let base = fake.requests_received();
    fake.set_reply_mode(ReplyMode::Swallow);
    thread::scope(|s| {
        let h = s.spawn(|| xs.read("/x"));
        assert!(fake.wait_requests(base + 1, T));
        fake.set_reply_mode(ReplyMode::Normal);
        fake.restart(true);
        assert_eq!(h.join().unwrap().unwrap(), b"42");
    });
    assert_eq!(xs.connection_count(), 2);
}

#[test]
fn write_in_flight_is_retried_after_restart() {
    let (fake, xs) = setup();
    let w = xs.watch("/y", "y").unwrap();
    assert!(w.recv_timeout(T).is_some());
    let base = fake.requests_received();
    // xenstored applied the write but died before answering.
    fake.set_reply_mode(ReplyMode::ApplyNoReply);
    thread::scope(|s| {
        let h = s.spawn(|| xs.write("/y", "1"));
        assert!(fake.wait_requests(base + 1, T));
        assert!(eventually(|| fake.read("/y").is_some()));
        fake.set_reply_mode(ReplyMode::Normal);
        fake.restart(true);
        h.join().unwrap().unwrap();
    });
    assert_eq!(xs.read("/y").unwrap(), b"1");
}

#[test]
fn request_retried_only_once() {
    let (fake, xs) = setup();
    let base = fake.requests_received();
    fake.set_reply_mode(ReplyMode::Swallow); // survives restarts until reset
    thread::scope(|s| {
        let h = s.spawn(|| xs.read("/x"));
        assert!(fake.wait_requests(base + 1, T));
        fake.restart(true);
        assert!(fake.wait_requests(base + 2, T), "retried on the new connection");
        fake.restart(true);
        match h.join().unwrap() {
            Err(XsError::ConnectionLost { op }) => assert_eq!(op, "XS_READ"),
            r => panic!("{r:?}"),
        }
    });
    fake.set_reply_mode(ReplyMode::Normal);
    assert!(xs.read("/x").unwrap_err().is_enoent());
}

#[test]
fn transaction_in_flight_fails_with_eagain_equivalent() {
    let (fake, xs) = setup();
    xs.write("/c", "0").unwrap();
    // A commit in flight when xenstored dies: outcome unknown, reported as TransactionLost.
    let tx = xs.transaction_start().unwrap();
    tx.write("/c", "1").unwrap();
    let base = fake.requests_received();
    fake.set_reply_mode(ReplyMode::Swallow);
    thread::scope(|s| {
        let h = s.spawn(move || tx.commit());
        assert!(fake.wait_requests(base + 1, T));
        fake.set_reply_mode(ReplyMode::Normal);
        fake.restart(true);
        let e = h.join().unwrap().unwrap_err();
        assert!(matches!(e, XsError::TransactionLost), "{e:?}");
        assert!(e.is_again());
    });
    // A transaction opened before the restart is dead; its operations fail the same way
    // without being sent (its id means nothing, or something else, to the new xenstored).
    let tx = xs.transaction_start().unwrap();
    fake.restart(true);
    assert!(eventually(|| xs.connection_count() == 3 && xs.is_connected()));
    assert!(matches!(tx.read("/c"), Err(XsError::TransactionLost)));
    assert!(matches!(tx.commit(), Err(XsError::TransactionLost)));

    // The helper restarts a transaction broken by a restart.
    let mut runs = 0;
    xs.transaction(|tx| {
        runs += 1;
        tx.write("/c", "2")?;
        if runs == 1 {
            fake.restart(true);
        }
        tx.write("/c/d", "3")
    })
    .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(xs.read("/c").unwrap(), b"2");
    assert_eq!(xs.read("/c/d").unwrap(), b"3");
}

#[test]
fn xenstored_down_for_a_while() {
    let (fake, xs) = setup();
    xs.write("/z", "1").unwrap();
    fake.stop();
    thread::scope(|s| {
        let h = s.spawn(|| xs.read("/z"));
        thread::sleep(Duration::from_millis(200));
        assert!(!xs.is_connected());
        fake.start();
        assert_eq!(h.join().unwrap().unwrap(), b"1");
    });
    assert!(xs.is_connected());
}

#[test]
fn reconnect_gives_up_after_the_policy() {
    q35dm::logging::init(log::LevelFilter::Warn);
    let fake = FakeXenstored::start_new();
    let o = Options {
        request_timeout: None,
        reconnect: ReconnectPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        },
    };
    let xs = Xenstore::open_socket(fake.socket_path(), o).unwrap();
    xs.write("/z", "1").unwrap();
    let w = xs.watch("/z", "z").unwrap();
    assert!(w.recv_timeout(T).is_some());
    fake.stop();
    assert!(matches!(xs.read("/z"), Err(XsError::Disconnected(_))));
    fake.start();
    assert!(matches!(xs.read("/z"), Err(XsError::Disconnected(_))), "gave up for good");
    assert!(!xs.is_connected());
}

#[test]
fn open_respects_environment() {
    q35dm::logging::init(log::LevelFilter::Warn);
    let fake = FakeXenstored::start_new();
    // Only this test touches these variables.
    std::env::set_var("XENSTORED_PATH", fake.socket_path());
    assert_eq!(Endpoint::defaults(), [Endpoint::Auto(fake.socket_path().to_path_buf())]);
    let xs = Xenstore::open().unwrap();
    xs.write("/env", "1").unwrap();
    drop(xs);
    std::env::remove_var("XENSTORED_PATH");
    std::env::set_var("XENSTORED_RUNDIR", fake.dir());
    let d = Endpoint::defaults();
    assert_eq!(d.first(), Some(&Endpoint::Socket(fake.socket_path().to_path_buf())));
    assert_eq!(d.get(1), Some(&Endpoint::Device("/dev/xen/xenbus".into())));
    let xs = Xenstore::open().unwrap();
    assert_eq!(xs.read("/env").unwrap(), b"1");
    std::env::remove_var("XENSTORED_RUNDIR");
    // Falls through to the next endpoint; nothing answers at all: an error, not a hang.
    let missing = fake.dir().join("nothing-here");
    let xs = Xenstore::connect(
        vec![Endpoint::Socket(missing.clone()), Endpoint::Auto(fake.socket_path().to_path_buf())],
        opts(),
    )
    .unwrap();
    assert_eq!(xs.read("/env").unwrap(), b"1");
    assert!(matches!(
        Xenstore::connect(vec![Endpoint::Socket(missing.clone()), Endpoint::Device(missing)], opts()),
        Err(XsError::Disconnected(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn many_threads() {
    let (fake, xs) = setup();
    let w = xs.watch("/conc", "conc").unwrap();
    assert!(w.recv_timeout(T).is_some());
    const THREADS: usize = 16;
    const OPS: usize = 100;
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let xs = &xs;
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..OPS {
                    let p = format!("/conc/{t}/{i}");
                    xs.write(&p, format!("{t}-{i}")).unwrap();
                    assert_eq!(xs.read(&p).unwrap(), format!("{t}-{i}").as_bytes());
                    if i % 10 == 0 {
                        assert_eq!(xs.directory(&format!("/conc/{t}")).unwrap().len(), i + 1);
                        assert!(xs.read(&format!("/conc/{t}/missing")).unwrap_err().is_enoent());
                    }
                }
            });
        }
    });
    let mut events = 0;
    while w.recv_timeout(Duration::from_millis(200)).is_some() {
        events += 1;
    }
    assert_eq!(events, THREADS * OPS, "one event per write, none lost or taken for a reply");
    assert_eq!(fake.dump("/conc").len(), 1 + THREADS + THREADS * OPS);
    assert_eq!(xs.connection_count(), 1);
}

#[test]
fn many_threads_across_restarts() {
    let (fake, xs) = setup();
    let w = xs.watch("/r", "r").unwrap();
    assert!(w.recv_timeout(T).is_some());
    const THREADS: usize = 8;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut done = 0usize;
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let xs = &xs;
                let stop = &stop;
                s.spawn(move || {
                    let mut ok = 0usize;
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let p = format!("/r/{t}");
                        match xs.write(&p, i.to_string()).and_then(|()| xs.read(&p)) {
                            Ok(v) => {
                                assert_eq!(v, i.to_string().as_bytes(), "never a stale or foreign value");
                                ok += 1;
                            }
                            // Only a request that lived through two connection losses may fail.
                            Err(XsError::ConnectionLost { .. }) => {}
                            Err(e) => panic!("thread {t}: {e:?}"),
                        }
                        i += 1;
                    }
                    ok
                })
            })
            .collect();
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(60));
            fake.restart(true);
        }
        thread::sleep(Duration::from_millis(60));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in handles {
            done += h.join().unwrap();
        }
    });
    assert!(done > THREADS, "work got done ({done})");
    assert_eq!(xs.connection_count(), 6);
    // The watch is still registered exactly once.
    assert_eq!(fake.watches(), [("/r".to_string(), "r".to_string())]);
    while w.try_recv().is_some() {}
    fake.write("/r/final", b"1");
    assert_eq!(w.recv_timeout(T), Some(ev("/r/final", "r")));
}
