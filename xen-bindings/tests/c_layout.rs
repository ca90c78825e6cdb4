//! Acceptance test of the ABI mirror: compiles `tests/c_layout/layout.c` against the installed Xen
//! headers (Debian `libxen-dev`), runs it, and requires its `name value` lines to equal
//! `xen_bindings::layout::layout_table()` entry for entry.
//!
//! Without the headers the test installs `libxen-dev` when it runs as root; otherwise (or if that
//! fails) it fails when `CI=true` and is skipped with a loud notice elsewhere.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use xen_bindings::layout::layout_table;

/// A header that only `libxen-dev` provides.
const PROBE_HEADER: &str = "/usr/include/xen/hvm/ioreq.h";
const C_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c_layout/layout.c");
/// The Rust table must never silently shrink to nothing.
const MIN_ENTRIES: usize = 150;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under CI, otherwise prints a notice that cannot be missed; the caller then returns.
fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("c_layout: {reason}; CI=true, so this is a failure rather than a skip");
    }
    let bar = "!".repeat(100);
    // Written to the stderr handle directly: libtest captures `eprintln!` of passing tests, and a
    // skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!!! c_layout SKIPPED: {reason}\n!!! The Rust ABI mirror was NOT compared with the C headers.\n{bar}\n"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("c_layout: running apt-get {}", args.join(" "));
    Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
}

/// True when the Xen headers are (now) installed.
fn ensure_headers() -> bool {
    if Path::new(PROBE_HEADER).exists() {
        return true;
    }
    if is_root() {
        eprintln!("c_layout: {PROBE_HEADER} is missing; installing libxen-dev");
        if !apt_get(&["install", "-y", "libxen-dev"]) && apt_get(&["update"]) {
            apt_get(&["install", "-y", "libxen-dev"]);
        }
    }
    Path::new(PROBE_HEADER).exists()
}

/// Compiles the C side; `None` (after [`skip_or_fail`]) when there is no C compiler.
fn build_c_probe() -> Option<PathBuf> {
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_layout_probe");
    let out = match Command::new("cc").args(["-std=gnu11", "-Wall", "-Wextra", "-o"]).arg(&exe).arg(C_SOURCE).output() {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            skip_or_fail("no C compiler (`cc`) in PATH");
            return None;
        }
        Err(e) => panic!("c_layout: could not run cc: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "c_layout: compiling {C_SOURCE} against the Xen headers failed ({}); a mirrored name may have left \
         the headers:\n{stderr}",
        out.status
    );
    if !stderr.trim().is_empty() {
        eprintln!("c_layout: compiler warnings:\n{stderr}");
    }
    Some(exe)
}

/// Parses `name value` lines; duplicate names and malformed lines are reported in `problems`.
fn parse_c_output(text: &str, problems: &mut Vec<String>) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = line.split_once(' ').and_then(|(name, v)| v.trim().parse::<u64>().ok().map(|v| (name, v)));
        match parsed {
            Some((name, v)) => {
                if map.insert(name.to_string(), v).is_some() {
                    problems.push(format!("{name}: printed twice by the C program"));
                }
            }
            None => problems.push(format!("C output line {}: cannot parse {line:?}", n + 1)),
        }
    }
    map
}

#[test]
fn rust_layout_matches_c_headers() {
    let rust = layout_table();
    assert!(
        rust.len() > MIN_ENTRIES,
        "layout_table() has only {} entries (expected more than {MIN_ENTRIES})",
        rust.len()
    );

    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        // The mirror is the x86-64 Linux ABI by design; elsewhere the C values legitimately differ.
        let _ = writeln!(std::io::stderr(), "c_layout SKIPPED: the mirrored ABI is x86-64 Linux only");
        return;
    }
    if !ensure_headers() {
        let why = if is_root() {
            "apt-get install libxen-dev did not provide it"
        } else {
            "not root, so not installing libxen-dev"
        };
        skip_or_fail(&format!("{PROBE_HEADER} is missing ({why})"));
        return;
    }
    let Some(exe) = build_c_probe() else { return };
    let out = Command::new(&exe).output().unwrap_or_else(|e| panic!("c_layout: cannot run {}: {e}", exe.display()));
    assert!(out.status.success(), "c_layout: {} exited with {}", exe.display(), out.status);

    let mut problems = Vec::new();
    let c = parse_c_output(&String::from_utf8_lossy(&out.stdout), &mut problems);

    let mut seen = HashSet::new();
    for (name, value) in &rust {
        if !seen.insert(*name) {
            problems.push(format!("{name}: listed twice in layout_table()"));
            continue;
        }
        match c.get(*name) {
            Some(cv) if cv == value => {}
            Some(cv) => problems.push(format!("{name}: rust={value} c={cv}")),
            None => problems.push(format!("{name}: rust={value} c=<missing>")),
        }
    }
    for (name, cv) in &c {
        if !seen.contains(name.as_str()) {
            problems.push(format!("{name}: rust=<missing> c={cv}"));
        }
    }

    assert!(
        problems.is_empty(),
        "c_layout: {} problem(s) between layout_table() ({} entries) and {C_SOURCE} ({} entries):\n{}",
        problems.len(),
        rust.len(),
        c.len(),
        problems.join("\n")
    );
    eprintln!("c_layout: {} entries compared with the C headers, all equal", rust.len());
}
