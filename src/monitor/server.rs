//! HMP over a byte stream (stdio, or each connection of a unix socket), with QEMU's banner and
//! `(qemu) ` prompt so existing tooling works unchanged.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use log::{info, warn};

use crate::monitor::hmp;
use crate::vm::Vm;

/// The greeting QEMU prints on a readline monitor.
pub const BANNER: &str = "QEMU 7.2.0 monitor - type 'help' for more information\n";
/// The prompt.
pub const PROMPT: &str = "(qemu) ";

/// Serves one HMP session until EOF or `quit`.
pub fn serve<R: BufRead, W: Write>(vm: &Vm, mut r: R, mut w: W) -> io::Result<()> {
    w.write_all(BANNER.as_bytes())?;
    w.write_all(PROMPT.as_bytes())?;
    w.flush()?;
    let mut line = String::new();
    loop {
        line.clear();
        // Bound a line to 64 KiB so a peer cannot grow memory without limit.
        let n = io::Read::take(&mut r, 64 * 1024).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let out = hmp::execute(vm, &line);
        w.write_all(out.as_bytes())?;
        if vm.quitting() {
            return w.flush();
        }
        w.write_all(PROMPT.as_bytes())?;
        w.flush()?;
    }
}

/// Serves HMP on stdin/stdout in a thread.
pub fn spawn_stdio(vm: Arc<Vm>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("q35dm-hmp-stdio".into()).spawn(move || {
        let stdin = io::stdin();
        if let Err(e) = serve(&vm, stdin.lock(), io::stdout()) {
            warn!("stdio monitor: {e}");
        }
    })
}

/// Listens on a unix socket (removing a stale file first) and serves each connection in turn.
pub fn spawn_unix(vm: Arc<Vm>, path: &Path) -> io::Result<JoinHandle<()>> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    info!("HMP monitor on {}", path.display());
    std::thread::Builder::new().name("q35dm-hmp".into()).spawn(move || {
        for c in l.incoming() {
            match c {
                Ok(s) => {
                    let r = match s.try_clone() {
                        Ok(r) => r,
                        Err(e) => {
                            warn!("HMP connection: {e}");
                            continue;
                        }
                    };
                    if let Err(e) = serve(&vm, BufReader::new(r), s) {
                        warn!("HMP connection ended: {e}");
                    }
                    if vm.quitting() {
                        return;
                    }
                }
                Err(e) => warn!("HMP accept: {e}"),
            }
        }
    })
}
