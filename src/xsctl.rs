//! Control through xenstore, for toolstacks and shells without QMP.
//!
//! 1. The classic qemu-dm protocol (libxl up to Xen 4.20 with qemu-traditional; docs in
//!    libxl-contract.md §4): `device-model/<domid>/command` = `pci-ins` | `pci-rem` with
//!    `parameter` = `SSSS:BB:DD.F[@VV][,msitranslate=N,power_mgmt=N]`; the device model answers
//!    in `state` (`pci-inserted` + the chosen vdevfn written back to `parameter` as `0x%x`, or
//!    `pci-insert-failed`; `pci-removed`).
//! 2. q35dm's own tree, `device-model/<domid>/q35dm/`: write `args`, then `command` (one of
//!    `device_add`, `device_del`, `pci_add`, `pci_del`, `pcie_abp`, `pcie_aer_inject_error`,
//!    `info`); q35dm runs it exactly like the HMP command of that name, writes `result` (the
//!    output or the error text) and `status` (`ok` or `error`), bumps `seq`, and removes
//!    `command` so the next write triggers again. toolstack-hooks/README.md has examples.
//!
//! Garbage (unknown commands, unparsable parameters, values over the limits) gets an error
//! status and a log line; the device model keeps serving.

use std::sync::Arc;
use std::thread::JoinHandle;

use log::{info, warn};

use crate::guest_warn;
use crate::monitor::hmp;
use crate::vm::Vm;
use crate::xenstore::Xenstore;

/// Commands the q35dm tree accepts.
pub const COMMANDS: &[&str] =
    &["device_add", "device_del", "pci_add", "pci_del", "pcie_abp", "pcie_aer_inject_error", "info"];

/// Longest `args` value acted upon.
pub const MAX_ARGS: usize = 1024;

/// Starts the watcher thread for `device-model/<domid>`.
pub fn spawn(xs: Arc<Xenstore>, vm: Arc<Vm>, domid: u16) -> std::io::Result<JoinHandle<()>> {
    let base = crate::app::dm_path(domid);
    std::thread::Builder::new().name("q35dm-xenstore".into()).spawn(move || run(&xs, &vm, &base))
}

fn read(xs: &Xenstore, path: &str) -> Option<String> {
    xs.read_string(path).ok()
}

fn run(xs: &Xenstore, vm: &Vm, base: &str) {
    let classic = format!("{base}/command");
    let ours = format!("{base}/q35dm/command");
    let (tx, rx) = std::sync::mpsc::channel();
    for (path, token) in [(&classic, "q35dm-classic"), (&ours, "q35dm-ctl")] {
        if let Err(e) = xs.watch_with(path, token, tx.clone()) {
            warn!("xenstore: cannot watch {path}: {e}; xenstore control disabled");
            return;
        }
    }
    info!("xenstore control on {base}/command and {base}/q35dm/");
    while !vm.quitting() {
        // Every event (including the one xenstored fires on registration and after a xenstored
        // restart) re-reads the command node, so nothing is lost and nothing runs twice: a
        // handled command is removed.
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(ev) if ev.token == "q35dm-classic" => classic_command(xs, vm, base),
            Ok(_) => q35dm_command(xs, vm, base),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                warn!("xenstore: watch channel closed; xenstore control stops");
                return;
            }
        }
    }
}

fn q35dm_command(xs: &Xenstore, vm: &Vm, base: &str) {
    let dir = format!("{base}/q35dm");
    let Some(cmd) = read(xs, &format!("{dir}/command")).filter(|c| !c.is_empty()) else { return };
    let args = read(xs, &format!("{dir}/args")).unwrap_or_default();
    let (status, result) = if !COMMANDS.contains(&cmd.as_str()) {
        guest_warn!("xenstore {dir}/command = {cmd:?}: unknown command");
        ("error", format!("unknown command {cmd:?} (expected one of: {})", COMMANDS.join(", ")))
    } else if args.len() > MAX_ARGS || args.contains('\n') {
        guest_warn!("xenstore {dir}/args: {} bytes or multi-line; refused", args.len());
        ("error", format!("args must be one line of at most {MAX_ARGS} bytes"))
    } else {
        info!("xenstore: {cmd} {args}");
        match hmp::execute_checked(vm, &format!("{cmd} {args}")) {
            Ok(out) => ("ok", out.trim_end().to_string()),
            Err(e) => ("error", e.trim_end().to_string()),
        }
    };
    let seq = read(xs, &format!("{dir}/seq")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
    let r = xs.transaction(|tx| {
        tx.write(&format!("{dir}/result"), result.as_bytes())?;
        tx.write(&format!("{dir}/status"), status.as_bytes())?;
        tx.write(&format!("{dir}/seq"), seq.to_string().as_bytes())?;
        tx.rm(&format!("{dir}/command"))
    });
    if let Err(e) = r {
        warn!("xenstore: writing the result of {cmd}: {e}");
    }
}

/// `SSSS:BB:DD.F[@VV][,opts]` → (host address, requested vdevfn).
pub fn parse_classic_parameter(p: &str) -> Result<(crate::pci::Sbdf, Option<u8>), String> {
    let head = p.split(',').next().unwrap_or("");
    let (addr, vslot) = match head.split_once('@') {
        Some((a, v)) => (a, Some(u8::from_str_radix(v, 16).map_err(|_| format!("bad vdevfn {v:?} in {p:?}"))?)),
        None => (head, None),
    };
    let sbdf: crate::pci::Sbdf = addr.parse().map_err(|e: crate::pci::address::ParseSbdfError| e.to_string())?;
    Ok((sbdf, vslot))
}

fn classic_command(xs: &Xenstore, vm: &Vm, base: &str) {
    let Some(cmd) = read(xs, &format!("{base}/command")).filter(|c| !c.is_empty()) else { return };
    let param = read(xs, &format!("{base}/parameter")).unwrap_or_default();
    let state_path = format!("{base}/state");
    let state = match cmd.as_str() {
        "pci-ins" => match parse_classic_parameter(&param) {
            Ok((host, vdevfn)) => {
                let mut req = crate::devices::DeviceRequest {
                    driver: "xen-pci-passthrough".into(),
                    id: Some(format!("pci-pt-{:02x}_{:02x}.{:x}", host.bus(), host.dev(), host.func())),
                    devfn: vdevfn,
                    ..Default::default()
                };
                req.props.push(("hostaddr".into(), host.to_string()));
                match vm.device_add(req) {
                    Ok(()) => {
                        let id = format!("pci-pt-{:02x}_{:02x}.{:x}", host.bus(), host.dev(), host.func());
                        let devfn = vm
                            .machine(move |m| m.pci.find_by_id(&id).and_then(|n| m.pci.node(n)).map(|n| n.devfn))
                            .ok()
                            .flatten()
                            .unwrap_or(0);
                        let _ = xs.write(&format!("{base}/parameter"), format!("0x{devfn:x}"));
                        "pci-inserted"
                    }
                    Err(e) => {
                        warn!("xenstore pci-ins {param}: {e}");
                        "pci-insert-failed"
                    }
                }
            }
            Err(e) => {
                guest_warn!("xenstore pci-ins: {e}");
                "pci-insert-failed"
            }
        },
        "pci-rem" => match parse_classic_parameter(&param) {
            Ok((host, _)) => {
                let id = format!("pci-pt-{:02x}_{:02x}.{:x}", host.bus(), host.dev(), host.func());
                if let Err(e) = vm.device_del(&id, false) {
                    warn!("xenstore pci-rem {param}: {e}");
                }
                "pci-removed"
            }
            Err(e) => {
                guest_warn!("xenstore pci-rem: {e}");
                "pci-removed"
            }
        },
        other => {
            guest_warn!("xenstore {base}/command = {other:?}: not a qemu-dm command (pci-ins, pci-rem)");
            return;
        }
    };
    let _ = xs.write(&state_path, state);
    let _ = xs.rm(&format!("{base}/command"));
}
