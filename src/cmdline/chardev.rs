//! Character devices: `-chardev BACKEND,id=ID,...` and the legacy one-string specs used by
//! `-serial`, `-monitor`, `-qmp` (`pty`, `file:PATH`, `unix:PATH,server=on`, `tcp:H:P`, ...).

use std::path::PathBuf;

use super::opts::{check_id, parse_decimal, KvList, ValueError};

/// Who created a chardev.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChardevOrigin {
    /// An explicit `-chardev`.
    Chardev,
    /// Implied by the N-th `-serial` (its id is `serialN`, as in QEMU).
    Serial(usize),
    /// Implied by `-monitor`/`-qmp`/`-qmp-pretty` (id `compat_monitorN`, as in QEMU).
    Monitor,
    /// Implied by q35dm's own `--qmp`/`--monitor`.
    Native,
}

/// Address of a socket chardev.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddr {
    /// `path=`: a Unix socket path.
    Unix(PathBuf),
    /// `fd=`: an inherited, already bound and listening (or connected) socket.
    Fd(i32),
    /// `host=`,`port=`: TCP.
    Inet {
        /// Host (may be empty: all addresses).
        host: String,
        /// Port or service name.
        port: String,
    },
}

/// A socket chardev.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketChardev {
    /// Where.
    pub addr: SocketAddr,
    /// `server=on`: listen instead of connecting.
    pub server: bool,
    /// `wait=on` (QEMU's default): a server blocks startup until a client connects.
    pub wait: bool,
    /// `telnet=on`.
    pub telnet: bool,
}

/// What a chardev is connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChardevBackend {
    /// A socket.
    Socket(SocketChardev),
    /// A new pseudo-terminal (its path is reported by `query-chardev` as `pty:/dev/pts/N`).
    Pty,
    /// Output appended to / written into a file.
    File {
        /// The file.
        path: PathBuf,
        /// `append=on`.
        append: bool,
    },
    /// q35dm's stdin/stdout.
    Stdio,
    /// Discards output, never has input.
    Null,
    /// Another QEMU backend q35dm does not implement (`vc`, `pipe`, `udp`, `tty`, `spicevmc`,
    /// `ringbuf`, ...); its parameters stay in [`Chardev::props`].
    Other {
        /// The backend name.
        backend: String,
    },
}

impl ChardevBackend {
    /// The QEMU backend name (`socket`, `pty`, `file`, `stdio`, `null`, ...).
    pub fn name(&self) -> &str {
        match self {
            ChardevBackend::Socket(_) => "socket",
            ChardevBackend::Pty => "pty",
            ChardevBackend::File { .. } => "file",
            ChardevBackend::Stdio => "stdio",
            ChardevBackend::Null => "null",
            ChardevBackend::Other { backend } => backend,
        }
    }

    /// True for the backends q35dm implements.
    pub fn is_supported(&self) -> bool {
        !matches!(self, ChardevBackend::Other { .. })
    }
}

/// One character device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chardev {
    /// Its id (label in `query-chardev`).
    pub id: String,
    /// The backend.
    pub backend: ChardevBackend,
    /// `mux=on`: shared by several front ends (e.g. `-serial mon:stdio`).
    pub mux: bool,
    /// Who created it.
    pub origin: ChardevOrigin,
    /// All parameters as given (for explicit `-chardev`: including `backend` and `id`).
    pub props: Vec<(String, String)>,
}

/// Backends QEMU knows (`-chardev help`); anything else is an error, as in QEMU.
const KNOWN_BACKENDS: &[&str] = &[
    "null",
    "socket",
    "udp",
    "file",
    "pipe",
    "pty",
    "stdio",
    "serial",
    "tty",
    "parallel",
    "parport",
    "vc",
    "ringbuf",
    "memory",
    "msmouse",
    "wctablet",
    "braille",
    "testdev",
    "spicevmc",
    "spiceport",
    "dbus",
    "qemu-vdagent",
    "mux",
];

/// Parses the parameters of one `-chardev`. Returns the id and backend.
pub fn from_kv(kv: &KvList) -> Result<(String, ChardevBackend), ValueError> {
    let backend = kv.require("backend")?;
    let id = kv.require("id")?;
    check_id("id", id)?;
    if !KNOWN_BACKENDS.contains(&backend) {
        return Err(ValueError::BadChoice {
            key: "backend".to_string(),
            value: backend.to_string(),
            accepted: KNOWN_BACKENDS.join(", "),
        });
    }
    let be = match backend {
        "socket" => ChardevBackend::Socket(socket_from_kv(kv)?),
        "pty" => ChardevBackend::Pty,
        "stdio" => ChardevBackend::Stdio,
        "null" => ChardevBackend::Null,
        "file" => ChardevBackend::File {
            path: PathBuf::from(non_empty(kv, "path")?),
            append: kv.get_bool("append")?.unwrap_or(false),
        },
        other => {
            match other {
                "pipe" | "serial" | "tty" | "parallel" | "parport" => {
                    non_empty(kv, "path")?;
                }
                "spicevmc" | "spiceport" => {
                    non_empty(kv, "name")?;
                }
                _ => {}
            }
            ChardevBackend::Other { backend: other.to_string() }
        }
    };
    Ok((id.to_string(), be))
}

fn non_empty<'a>(kv: &'a KvList, key: &str) -> Result<&'a str, ValueError> {
    let v = kv.require(key)?;
    if v.is_empty() {
        return Err(ValueError::Invalid {
            key: key.to_string(),
            value: String::new(),
            why: "must not be empty".into(),
        });
    }
    Ok(v)
}

fn socket_from_kv(kv: &KvList) -> Result<SocketChardev, ValueError> {
    let path = kv.get("path");
    let fd = kv.get("fd");
    let host = kv.get("host");
    let given: Vec<&str> =
        [("path", path), ("fd", fd), ("host", host)].iter().filter(|(_, v)| v.is_some()).map(|(k, _)| *k).collect();
    if given.len() > 1 {
        return Err(ValueError::Invalid {
            key: given.join("+"),
            value: kv.get(given.first().copied().unwrap_or("path")).unwrap_or_default().to_string(),
            why: "socket address: give only one of path=, fd= and host=/port=".into(),
        });
    }
    let addr = if let Some(p) = path {
        if p.is_empty() {
            return Err(ValueError::Invalid {
                key: "path".into(),
                value: String::new(),
                why: "must not be empty".into(),
            });
        }
        SocketAddr::Unix(PathBuf::from(p))
    } else if let Some(f) = fd {
        let n = parse_decimal("fd", f)?;
        SocketAddr::Fd(i32::try_from(n).map_err(|_| ValueError::OutOfRange {
            key: "fd".into(),
            value: f.to_string(),
            range: "a file descriptor number".into(),
        })?)
    } else if let Some(port) = kv.get("port") {
        SocketAddr::Inet { host: host.unwrap_or_default().to_string(), port: port.to_string() }
    } else if host.is_some() {
        return Err(ValueError::MissingKey { key: "port".into() });
    } else {
        return Err(ValueError::MissingKey { key: "path, fd or host/port".into() });
    };
    Ok(SocketChardev {
        addr,
        server: kv.get_bool("server")?.unwrap_or(false),
        wait: kv.get_bool("wait")?.unwrap_or(true),
        telnet: kv.get_bool("telnet")?.unwrap_or(false),
    })
}

/// A legacy one-string chardev spec, as taken by `-serial`, `-monitor`, `-qmp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegacySpec {
    /// `none`: no device.
    None,
    /// `chardev:ID`: an existing `-chardev`.
    Existing(String),
    /// A new chardev; `mux_monitor` for the `mon:` prefix (a readline monitor shares it).
    New {
        /// The backend.
        backend: ChardevBackend,
        /// Parameters as QEMU would have set them (`backend`, `path`, `server`, ...).
        props: Vec<(String, String)>,
        /// `mon:SPEC`.
        mux_monitor: bool,
    },
}

/// Parses a legacy spec (QEMU `qemu_chr_parse_compat`, plus the `none`, `chardev:` and `mon:`
/// prefixes handled by its callers).
pub fn parse_legacy(spec: &str) -> Result<LegacySpec, ValueError> {
    if spec == "none" {
        return Ok(LegacySpec::None);
    }
    if let Some(id) = spec.strip_prefix("chardev:") {
        check_id("chardev", id)?;
        return Ok(LegacySpec::Existing(id.to_string()));
    }
    let (mux_monitor, body) = match spec.strip_prefix("mon:") {
        Some(b) => (true, b),
        None => (false, spec),
    };
    let bad = |why: &str| ValueError::Invalid { key: "chardev spec".into(), value: spec.to_string(), why: why.into() };
    let simple = |name: &str| KvList::from_pairs([("backend", name)]);
    let kv: KvList = match body {
        "null" | "pty" | "stdio" | "msmouse" | "braille" | "testdev" | "vc" => simple(body),
        _ if body.starts_with("vc:") => simple("vc"),
        _ => {
            if let Some(p) = body.strip_prefix("file:") {
                KvList::from_pairs([("backend", "file"), ("path", p)])
            } else if let Some(p) = body.strip_prefix("pipe:") {
                KvList::from_pairs([("backend", "pipe"), ("path", p)])
            } else if let Some(rest) = body.strip_prefix("unix:") {
                let mut items = vec![("backend".to_string(), "socket".to_string())];
                items.extend(KvList::parse(rest, Some("path"))?.into_items());
                KvList::from_pairs(items)
            } else if let Some((scheme, rest)) = body
                .strip_prefix("tcp:")
                .map(|r| ("tcp", r))
                .or_else(|| body.strip_prefix("telnet:").map(|r| ("telnet", r)))
            {
                let (addr, opts) = rest.split_once(',').unwrap_or((rest, ""));
                let (host, port) = addr.rsplit_once(':').unwrap_or(("", addr));
                if port.is_empty() {
                    return Err(bad("expected tcp:[HOST]:PORT"));
                }
                let mut items = vec![
                    ("backend".to_string(), "socket".to_string()),
                    ("host".to_string(), host.to_string()),
                    ("port".to_string(), port.to_string()),
                ];
                if scheme == "telnet" {
                    items.push(("telnet".to_string(), "on".to_string()));
                }
                items.extend(KvList::parse(opts, None)?.into_items());
                KvList::from_pairs(items)
            } else if let Some(rest) = body.strip_prefix("udp:") {
                KvList::from_pairs([("backend", "udp"), ("spec", rest)])
            } else if body.starts_with("/dev/parport") {
                KvList::from_pairs([("backend", "parallel"), ("path", body)])
            } else if body.starts_with("/dev/") {
                KvList::from_pairs([("backend", "tty"), ("path", body)])
            } else {
                return Err(bad("not a character device (expected none, null, pty, stdio, vc, file:PATH, pipe:PATH, \
                     unix:PATH[,...], tcp:HOST:PORT[,...], telnet:HOST:PORT[,...], udp:..., /dev/..., \
                     chardev:ID or mon:SPEC)"));
            }
        }
    };
    let backend = match kv.get("backend").unwrap_or_default() {
        "socket" => ChardevBackend::Socket(socket_from_kv(&kv)?),
        "pty" => ChardevBackend::Pty,
        "stdio" => ChardevBackend::Stdio,
        "null" => ChardevBackend::Null,
        "file" => ChardevBackend::File { path: PathBuf::from(non_empty(&kv, "path")?), append: false },
        other => {
            if matches!(other, "pipe" | "tty" | "parallel") {
                non_empty(&kv, "path")?;
            }
            ChardevBackend::Other { backend: other.to_string() }
        }
    };
    Ok(LegacySpec::New { backend, props: kv.into_items(), mux_monitor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cd(s: &str) -> Result<(String, ChardevBackend), ValueError> {
        from_kv(&KvList::parse(s, Some("backend")).expect("syntax"))
    }

    #[test]
    fn libxl_sockets() {
        let (id, be) = cd("socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-1,server=on,wait=off").expect("ok");
        assert_eq!(id, "libxl-cmd");
        assert_eq!(
            be,
            ChardevBackend::Socket(SocketChardev {
                addr: SocketAddr::Unix("/var/run/xen/qmp-libxl-1".into()),
                server: true,
                wait: false,
                telnet: false
            })
        );
        let (_, be) = cd("socket,id=libxl-cmd,fd=7,server=on,wait=off").expect("ok");
        assert!(matches!(be, ChardevBackend::Socket(SocketChardev { addr: SocketAddr::Fd(7), .. })));
        let (_, be) = cd("socket,id=c,host=10.0.0.1,port=9000,server=on,wait=off").expect("ok");
        assert!(matches!(
            be,
            ChardevBackend::Socket(SocketChardev { addr: SocketAddr::Inet { .. }, server: true, .. })
        ));
        // Legacy bare flags.
        let (_, be) = cd("socket,id=m,path=/s,server,nowait").expect("ok");
        assert!(matches!(be, ChardevBackend::Socket(SocketChardev { server: true, wait: false, .. })));
    }

    #[test]
    fn chardev_errors_name_the_problem() {
        let e = cd("socket,path=/s").expect_err("no id");
        assert!(e.to_string().contains("'id'"), "{e}");
        let e = cd("sokket,id=a").expect_err("bad backend");
        assert!(e.to_string().contains("\"sokket\""), "{e}");
        let e = cd("socket,id=a,fd=x").expect_err("bad fd");
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = cd("socket,id=a,fd=3,path=/s").expect_err("two addresses");
        assert!(e.to_string().contains("only one"), "{e}");
        assert!(cd("socket,id=a").is_err());
        assert!(cd("file,id=a").is_err());
        assert!(cd("spicevmc,id=a").is_err());
        assert!(cd("pty,id=1a").is_err());
        assert!(cd("socket,id=a,path=/s,server=maybe").is_err());
    }

    #[test]
    fn legacy_specs() {
        assert_eq!(parse_legacy("none"), Ok(LegacySpec::None));
        assert_eq!(parse_legacy("chardev:foo"), Ok(LegacySpec::Existing("foo".into())));
        let LegacySpec::New { backend, mux_monitor, .. } = parse_legacy("pty").expect("ok") else {
            panic!("pty");
        };
        assert_eq!((backend, mux_monitor), (ChardevBackend::Pty, false));
        let LegacySpec::New { backend, .. } = parse_legacy("file:/tmp/a,b.log").expect("ok") else {
            panic!("file");
        };
        assert_eq!(backend, ChardevBackend::File { path: "/tmp/a,b.log".into(), append: false });
        let LegacySpec::New { backend, .. } = parse_legacy("unix:/run/s,server=on,wait=off").expect("ok") else {
            panic!("unix");
        };
        assert_eq!(
            backend,
            ChardevBackend::Socket(SocketChardev {
                addr: SocketAddr::Unix("/run/s".into()),
                server: true,
                wait: false,
                telnet: false
            })
        );
        let LegacySpec::New { backend, .. } = parse_legacy("tcp::4444,server,nowait").expect("ok") else {
            panic!("tcp");
        };
        assert_eq!(
            backend,
            ChardevBackend::Socket(SocketChardev {
                addr: SocketAddr::Inet { host: String::new(), port: "4444".into() },
                server: true,
                wait: false,
                telnet: false
            })
        );
        let LegacySpec::New { backend, mux_monitor, .. } = parse_legacy("mon:stdio").expect("ok") else {
            panic!("mon");
        };
        assert_eq!((backend, mux_monitor), (ChardevBackend::Stdio, true));
        let LegacySpec::New { backend, .. } = parse_legacy("/dev/ttyS0").expect("ok") else {
            panic!("tty");
        };
        assert_eq!(backend, ChardevBackend::Other { backend: "tty".into() });
        for bad in ["ptyy", "file:", "tcp:host:", "chardev:", "unix:", "foo:bar"] {
            let e = parse_legacy(bad).expect_err(bad);
            let _ = e.to_string();
        }
    }
}
