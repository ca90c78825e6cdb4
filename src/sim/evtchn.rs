//! A simulated `/dev/xen/evtchn` file: a pipe carries fired ports to the reader, exactly like the
//! kernel's per-fd ring; each port is masked when it fires and unmasked when the reader writes it
//! back; an event on a masked port stays pending and fires on unmask.
//!
//! Dom0-to-dom0 ("loopback") inter-domain channels, as two dom0 processes use them (q35dm's AER
//! inbox allocates an unbound port for dom0, `q35dm-aerd` binds to it): Xen lets a domain bind
//! an inter-domain channel to one of its own unbound ports (`evtchn_bind_interdomain` with
//! `rd == ld`). [`loopback_bind`] links the new port with the unbound one, [`loopback_notify`]
//! raises the peer, and [`loopback_close`] returns the peer to the unbound state (Xen's
//! `evtchn_close` sets the remote end back to `ECS_UNBOUND`), so it can be bound again.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use super::{DmPort, State, DM_DOMID};

#[derive(Debug, Default, Clone, Copy)]
struct PortState {
    masked: bool,
    pending: bool,
}

/// One open evtchn "file".
#[derive(Debug)]
pub struct EvtchnFile {
    rd: UnixStream,
    wr: UnixStream,
    ports: Mutex<BTreeMap<u32, PortState>>,
}

impl EvtchnFile {
    /// A new file with no ports.
    pub fn new() -> io::Result<Self> {
        let (rd, wr) = UnixStream::pair()?;
        rd.set_nonblocking(true)?;
        wr.set_nonblocking(true)?;
        Ok(Self { rd, wr, ports: Mutex::new(BTreeMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, PortState>> {
        match self.ports.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds a bound port (unmasked, nothing pending).
    pub fn add(&self, port: u32) {
        self.lock().insert(port, PortState::default());
    }

    /// Removes a port; false if it was not bound here.
    pub fn remove(&self, port: u32) -> bool {
        self.lock().remove(&port).is_some()
    }

    /// Whether the port is bound to this file.
    pub fn has(&self, port: u32) -> bool {
        self.lock().contains_key(&port)
    }

    fn push(&self, port: u32) {
        // The socket buffer holds far more than the number of ports that can be unmasked at once.
        if let Err(e) = (&self.wr).write_all(&port.to_ne_bytes()) {
            log::error!("sim evtchn: queueing port {port} failed: {e}");
        }
    }

    /// An event arrives for `port`: queue it (masking it) or leave it pending if masked.
    pub fn fire(&self, port: u32) {
        let mut g = self.lock();
        let Some(st) = g.get_mut(&port) else { return };
        if st.masked {
            st.pending = true;
        } else {
            st.masked = true;
            drop(g);
            self.push(port);
        }
    }

    /// The reader writes `port` back: unmask, and re-fire if an event came in meanwhile.
    pub fn unmask(&self, port: u32) -> bool {
        let mut g = self.lock();
        let Some(st) = g.get_mut(&port) else { return false };
        if st.pending {
            st.pending = false;
            st.masked = true;
            drop(g);
            self.push(port);
        } else {
            st.masked = false;
        }
        true
    }

    /// Non-blocking read of every queued port.
    pub fn read_pending(&self, out: &mut Vec<u32>) -> io::Result<()> {
        let mut buf = [0u8; 256];
        loop {
            match (&self.rd).read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    for c in buf.get(..n - n % 4).unwrap_or(&[]).chunks_exact(4) {
                        out.push(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                    }
                    if n < buf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops everything queued (`IOCTL_EVTCHN_RESET`).
    pub fn reset(&self) {
        let mut v = Vec::new();
        let _ = self.read_pending(&mut v);
        for st in self.lock().values_mut() {
            *st = PortState::default();
        }
    }

    /// The readable end (for `poll`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.rd.as_fd()
    }
}

/// `IOCTL_EVTCHN_BIND_INTERDOMAIN` to dom0's own port `remote_port` (which must be an unbound
/// dom0 port that dom0 may bind): a new port in `file` linked with it. Returns the new local port
/// or an errno (EINVAL like Xen for a port that is not unbound or not for dom0).
pub(super) fn loopback_bind(st: &mut State, file: &Arc<EvtchnFile>, remote_port: u32) -> Result<u32, i32> {
    let ok = st.dm_ports.get(&remote_port).is_some_and(|p| p.peer.is_none() && p.remote_dom == DM_DOMID);
    if !ok || st.dom0_links.contains_key(&remote_port) {
        return Err(libc::EINVAL);
    }
    let local = st.next_dm_port;
    st.next_dm_port += 1;
    file.add(local);
    st.dm_ports.insert(local, DmPort { file: file.clone(), peer: None, remote_dom: DM_DOMID });
    st.dom0_links.insert(local, remote_port);
    st.dom0_links.insert(remote_port, local);
    Ok(local)
}

/// `EVTCHNOP_send` on a dom0 port: if it is one end of a loopback channel, the other end fires.
/// Returns whether `port` is a loopback end.
pub(super) fn loopback_notify(st: &State, port: u32) -> bool {
    let Some(peer) = st.dom0_links.get(&port) else { return false };
    if let Some(p) = st.dm_ports.get(peer) {
        p.file.fire(*peer);
    }
    true
}

/// The dom0 port `port` is closed: its loopback peer, if any, goes back to unbound.
pub(super) fn loopback_close(st: &mut State, port: u32) {
    if let Some(peer) = st.dom0_links.remove(&port) {
        st.dom0_links.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_follows_linux_semantics() {
        let f = EvtchnFile::new().expect("file");
        f.add(40);
        f.fire(40);
        f.fire(40); // masked now: stays pending
        let mut v = Vec::new();
        f.read_pending(&mut v).expect("read");
        assert_eq!(v, vec![40]);
        assert!(f.unmask(40));
        v.clear();
        f.read_pending(&mut v).expect("read");
        assert_eq!(v, vec![40], "pending event fires on unmask");
        assert!(f.unmask(40));
        v.clear();
        f.read_pending(&mut v).expect("read");
        assert!(v.is_empty());
        f.fire(99); // not bound here: ignored
        assert!(!f.unmask(99));
    }
}
