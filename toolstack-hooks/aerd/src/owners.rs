//! Which guest owns a host function: libxl's `/libxl/pci/<SSSS-BB-DD-F>/domid`, cached for a
//! short while (aerd also drops the cache whenever `/libxl/pci` changes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use q35dm::aer_inbox::record::{libxl_owner_path, parse_libxl_bdf};
use q35dm::pci::Sbdf;
use q35dm::xenstore::{Xenstore, XsError};
use thiserror::Error;

/// Where libxl records assigned functions.
pub const LIBXL_PCI: &str = "/libxl/pci";

/// An owner lookup that failed for another reason than "no owner".
#[derive(Debug, Error)]
pub enum OwnersError {
    /// xenstore failed.
    #[error("reading {path}: {source}")]
    Xs {
        /// The node.
        path: String,
        /// The client error.
        source: XsError,
    },
}

/// The cache.
#[derive(Debug)]
pub struct Owners {
    ttl: Duration,
    cache: BTreeMap<Sbdf, (Option<u16>, Instant)>,
}

/// Most functions cached.
const MAX_CACHED: usize = 4096;

impl Owners {
    /// A cache keeping answers for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, cache: BTreeMap::new() }
    }

    /// Forgets everything.
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// The domain `host` is assigned to, or `None` if it is assigned to no guest.
    pub fn owner(&mut self, xs: &Xenstore, host: Sbdf) -> Result<Option<u16>, OwnersError> {
        let now = Instant::now();
        if let Some((d, t)) = self.cache.get(&host) {
            if now.duration_since(*t) < self.ttl {
                return Ok(*d);
            }
        }
        let path = libxl_owner_path(host);
        let d = match xs.read_string(&path) {
            Ok(s) => s.trim().parse::<u16>().ok().filter(|d| *d != 0 && *d < 0x7ff0),
            Err(e) if e.is_enoent() => None,
            Err(source) => return Err(OwnersError::Xs { path, source }),
        };
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(host, (d, now));
        Ok(d)
    }
}

/// Every assigned function with its domain (for the sysfs fallback and for start-up).
pub fn assigned(xs: &Xenstore) -> Result<Vec<(Sbdf, u16)>, OwnersError> {
    let names = match xs.directory(LIBXL_PCI) {
        Ok(n) => n,
        Err(e) if e.is_enoent() => return Ok(Vec::new()),
        Err(source) => return Err(OwnersError::Xs { path: LIBXL_PCI.into(), source }),
    };
    let mut out = Vec::new();
    for n in names {
        let Some(s) = parse_libxl_bdf(&n) else { continue };
        let path = libxl_owner_path(s);
        match xs.read_string(&path) {
            Ok(v) => {
                if let Some(d) = v.trim().parse::<u16>().ok().filter(|d| *d != 0 && *d < 0x7ff0) {
                    out.push((s, d));
                }
            }
            Err(e) if e.is_enoent() => {}
            Err(source) => return Err(OwnersError::Xs { path, source }),
        }
    }
    Ok(out)
}
