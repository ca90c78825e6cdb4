//! QMP protocol details against the real binary: greeting, negotiation, id echo, framing,
//! errors, oversize messages, repeated connections, fd passing.

#[path = "support/qmp_client.rs"]
mod qmp_client;

use std::io::{IoSlice, Read};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use qmp_client::*;
use serde_json::json;

#[test]
fn greeting_negotiation_and_id_echo() {
    let mut p = start_q35dm("greet", &[]);
    let v = &p.qmp.greeting["QMP"]["version"]["qemu"];
    let (maj, min) = (v["major"].as_u64().unwrap(), v["minor"].as_u64().unwrap());
    assert!((maj, min) >= (2, 11), "libxl needs >= 2.11, got {maj}.{min}");
    // Second qmp_capabilities is refused like QEMU does.
    let r = p.qmp.execute("qmp_capabilities", json!({}));
    assert_eq!(r["error"]["class"], "CommandNotFound");
    // Any JSON id is echoed verbatim.
    p.qmp.send_raw(b"{\"execute\":\"query-status\",\"id\":2020831488}\r\n");
    let r = p.qmp.read_reply();
    assert_eq!(r["id"], json!(2020831488u64));
    assert_eq!(r["return"]["status"], "running");
    p.qmp.send_raw(b"{\"execute\":\"cont\",\"id\":{\"a\":[1,2]}}");
    let r = p.qmp.read_reply();
    assert_eq!(r["id"], json!({"a": [1, 2]}));
    let r = p.qmp.execute("no-such-command", json!({}));
    assert_eq!(r["error"]["class"], "CommandNotFound");
    assert!(r["error"]["desc"].as_str().unwrap().contains("no-such-command"));
}

#[test]
fn commands_before_negotiation_and_bad_input_are_errors_not_crashes() {
    let p = start_q35dm("bad", &[]);
    let mut q = Qmp::connect_raw(&p.sock, Duration::from_secs(5));
    q.send_raw(b"{\"execute\":\"query-status\",\"id\":1}\r\n");
    let r = q.read_reply();
    assert_eq!(r["error"]["class"], "CommandNotFound");
    assert!(r["error"]["desc"].as_str().unwrap().contains("qmp_capabilities"));
    q.send_raw(b"{\"execute\":\"qmp_capabilities\"}\r\n");
    q.read_reply();
    // Malformed JSON: an error, then the session goes on.
    q.send_raw(b"{\"execute\": }\r\n");
    assert_eq!(q.read_reply()["error"]["class"], "GenericError");
    // Wrong types.
    q.send_raw(b"[1,2,3]\r\n");
    assert_eq!(q.read_reply()["error"]["class"], "GenericError");
    q.send_raw(b"{\"execute\":42}\r\n");
    assert_eq!(q.read_reply()["error"]["class"], "GenericError");
    q.send_raw(b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":7},\"id\":9}\r\n");
    let r = q.read_reply();
    assert_eq!((r["id"].as_u64(), r["error"]["class"].as_str()), (Some(9), Some("GenericError")));
    q.send_raw(b"{\"execute\":\"xen-set-global-dirty-log\",\"arguments\":{\"enable\":\"yes\"}}\r\n");
    assert_eq!(q.read_reply()["error"]["class"], "GenericError");
    let r = q.execute("query-status", json!({}));
    assert_eq!(r["return"]["status"], "running");
}

#[test]
fn oversized_message_closes_only_that_connection() {
    let p = start_q35dm("big", &[]);
    let mut q = Qmp::connect(&p.sock, Duration::from_secs(5));
    let mut big = b"{\"execute\":\"query-status\",\"arguments\":{\"x\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1_100_000));
    q.send_raw(&big);
    let r = q.read_reply();
    assert_eq!(r["error"]["class"], "GenericError");
    assert!(r["error"]["desc"].as_str().unwrap().contains("too large"));
    // The server keeps serving new connections.
    let mut q2 = Qmp::connect(&p.sock, Duration::from_secs(5));
    assert_eq!(q2.execute("query-status", json!({}))["return"]["status"], "running");
}

#[test]
fn repeated_connect_disconnect() {
    let p = start_q35dm("repeat", &[]);
    for i in 0..30 {
        let mut q = Qmp::connect(&p.sock, Duration::from_secs(5));
        let r = q.execute("query-vnc", json!({}));
        assert_eq!(r["return"]["enabled"], false, "round {i}");
    }
}

#[test]
fn fd_passing_with_add_fd() {
    let p = start_q35dm("fds", &[]);
    let mut q = Qmp::connect(&p.sock, Duration::from_secs(5));
    // No fd attached: error.
    assert_eq!(q.execute("add-fd", json!({}))["error"]["class"], "GenericError");
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    let msg = b"{\"execute\":\"add-fd\",\"arguments\":{\"opaque\":\"test\"},\"id\":77}\r\n";
    // libxl attaches the fd to the first byte of the command.
    let fds = [wr.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(q.raw_fd(), &[IoSlice::new(&msg[..1])], &cmsg, MsgFlags::empty(), None).unwrap();
    drop(wr);
    q.send_raw(&msg[1..]);
    let r = q.read_reply();
    assert_eq!(r["id"], 77, "{r}");
    let set = r["return"]["fdset-id"].as_i64().unwrap();
    let r = q.execute("query-fdsets", json!({}));
    assert_eq!(r["return"][0]["fdset-id"], set);
    assert_eq!(r["return"][0]["fds"][0]["opaque"], "test");
    // xen-save-devices-state writes into the passed fd (here: not available yet -> error, but the
    // fd is consumed and closed, so our end sees EOF).
    let _ = q.execute("xen-save-devices-state", json!({"filename": format!("/dev/fdset/{set}"), "live": false}));
    rd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let _ = rd.read_to_end(&mut sink);
}
