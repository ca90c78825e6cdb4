//! Native PCIe passthrough of host functions (`xen-pci-passthrough`), extended capabilities
//! included.
//!
//! | module | does |
//! |---|---|
//! | [`host`] | the host function behind [`host::HostDevice`]: sysfs (`config`, `resource`, `resourceN`, `irq`, `vendor`/`device`, `reset`) under a configurable root, an in-memory fake, read-only discovery |
//! | [`table`] | the virtualisation table (data): header, PM, PCI Express registers; what happens to every standard and extended capability |
//! | [`filter`] | the guest view built from the device and the table; the filter every guest config access goes through |
//! | [`ops`] | the Xen calls as data ([`ops::PtOp`]) and the seam that makes them ([`ops::HostOps`]): real hypercalls through `XenSys` (privcmd, or the simulator in `--accel sim`), or a recorder |
//! | [`device`] | [`device::PassthroughDevice`], a [`crate::pci::device::PciDevice`]: BAR mappings, INTx/MSI/MSI-X bindings, the MSI-X table trap, ordered teardown |
//! | [`fuzz`] | the fuzz entry for the config filter |
//!
//! # Wiring
//! The device factory builds `xen-pci-passthrough` from a [`PtContext`]: the hypervisor seam,
//! the sysfs root and the guest's RAM layout. The binary installs one at start-up with
//! [`install`]; tests may install more under names and select one with the q35dm-only property
//! `x-pt-context=NAME`. Without a context, `device_add xen-pci-passthrough` is refused with an
//! explanation.
//!
//! # Request
//! `xen-pci-passthrough,id=ID,hostaddr=SSSS:BB:DD.F[,addr=D.F][,bus=PORT][,permissive=on]
//! [,multifunction=on]` (libxl sends `permissive` as a JSON boolean; `msitranslate` and
//! `power_mgmt`, which only reach xenstore in libxl, are accepted and ignored).

pub mod device;
pub mod filter;
pub mod fuzz;
pub mod host;
pub mod ops;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use xen_bindings::sys::XenSys;

use crate::devices::{DeviceRequest, DeviceSpecError};
use crate::pci::Sbdf;

pub use device::{AttachError, GuestRanges, PassthroughDevice, PtEnv};
pub use filter::{ConfigFilter, FilterOptions};
pub use host::{HostDevice, MemHost, SysfsDevice, DEFAULT_SYSFS_ROOT};
pub use ops::{HostOps, PtOp, RecordingOps, XenHostOps};

/// The driver name.
pub const DRIVER: &str = "xen-pci-passthrough";
/// Name of the context the binary installs (and requests without `x-pt-context` use).
pub const DEFAULT_CONTEXT: &str = "default";

/// Opens a host function (replaces sysfs, e.g. with [`MemHost`] in tests).
pub type HostOpener = dyn Fn(Sbdf) -> Result<Box<dyn HostDevice>, host::HostError> + Send + Sync;

/// Everything passthrough needs from the running device model.
pub struct PtContext {
    /// The hypervisor seam.
    pub ops: Arc<dyn HostOps>,
    /// Where host functions are found (`<root>/SSSS:BB:DD.F`).
    pub sysfs_root: PathBuf,
    /// Guest RAM `(start, length)` ranges: BARs are never mapped over them.
    pub guest_ram: Vec<(u64, u64)>,
    /// Guest ranges taken by passed-through BARs.
    pub ranges: Arc<GuestRanges>,
    /// Replaces sysfs when set.
    pub opener: Option<Box<HostOpener>>,
}

impl std::fmt::Debug for PtContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PtContext(sysfs {}, RAM {:x?})", self.sysfs_root.display(), self.guest_ram)
    }
}

impl PtContext {
    /// A context making its calls through `ops`, finding hosts under `sysfs_root`.
    pub fn new(ops: Arc<dyn HostOps>, sysfs_root: impl Into<PathBuf>) -> Self {
        Self {
            ops,
            sysfs_root: sysfs_root.into(),
            guest_ram: Vec::new(),
            ranges: Arc::new(GuestRanges::default()),
            opener: None,
        }
    }

    /// What the binary needs: hypercalls on `domid` through `sys` (privcmd, or the simulated
    /// hypervisor's handle in sim mode), hosts under `sysfs_root` (default
    /// [`DEFAULT_SYSFS_ROOT`]), and the guest's RAM split as [`crate::app::ram_layout`] gives it.
    pub fn for_guest(
        sys: Arc<dyn XenSys>,
        domid: u16,
        sysfs_root: Option<PathBuf>,
        ram_below_4g: u64,
        ram_above_4g: u64,
    ) -> Self {
        let ops = Arc::new(XenHostOps::new(sys, domid));
        Self::new(ops, sysfs_root.unwrap_or_else(|| PathBuf::from(DEFAULT_SYSFS_ROOT)))
            .with_guest_ram(guest_ram(ram_below_4g, ram_above_4g))
    }

    /// Sets the guest RAM ranges.
    pub fn with_guest_ram(mut self, ram: Vec<(u64, u64)>) -> Self {
        self.guest_ram = ram;
        self
    }

    /// Opens hosts with `f` instead of sysfs.
    pub fn with_opener(
        mut self,
        f: impl Fn(Sbdf) -> Result<Box<dyn HostDevice>, host::HostError> + Send + Sync + 'static,
    ) -> Self {
        self.opener = Some(Box::new(f));
        self
    }

    fn open(&self, addr: Sbdf) -> Result<Box<dyn HostDevice>, host::HostError> {
        match &self.opener {
            Some(f) => f(addr),
            None => Ok(Box::new(SysfsDevice::open(&self.sysfs_root, addr)?)),
        }
    }

    fn env(&self) -> PtEnv {
        PtEnv { ops: self.ops.clone(), guest_ram: self.guest_ram.clone(), ranges: self.ranges.clone() }
    }
}

/// Guest RAM ranges of the Q35 layout: `[0, below)` and `[4 GiB, 4 GiB + above)`.
pub fn guest_ram(ram_below_4g: u64, ram_above_4g: u64) -> Vec<(u64, u64)> {
    let mut v = vec![(0, ram_below_4g)];
    if ram_above_4g > 0 {
        v.push((1 << 32, ram_above_4g));
    }
    v
}

static CONTEXTS: Mutex<BTreeMap<String, Arc<PtContext>>> = Mutex::new(BTreeMap::new());

fn contexts() -> std::sync::MutexGuard<'static, BTreeMap<String, Arc<PtContext>>> {
    match CONTEXTS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Installs the context requests use by default (the binary does this at start-up).
pub fn install(ctx: PtContext) -> Arc<PtContext> {
    install_named(DEFAULT_CONTEXT, ctx)
}

/// Installs a context under `name` (selected with `x-pt-context=NAME`); replaces any previous.
pub fn install_named(name: &str, ctx: PtContext) -> Arc<PtContext> {
    let c = Arc::new(ctx);
    contexts().insert(name.to_string(), c.clone());
    c
}

/// Removes the context `name`.
pub fn uninstall(name: &str) {
    contexts().remove(name);
}

/// The context `name`.
pub fn context(name: &str) -> Option<Arc<PtContext>> {
    contexts().get(name).cloned()
}

/// Why a passthrough request failed.
#[derive(Debug, Error)]
pub enum PassthroughError {
    /// A required property is missing.
    #[error("xen-pci-passthrough: property {0} is required")]
    Missing(&'static str),
    /// A property value is wrong.
    #[error("xen-pci-passthrough: property {prop}={value:?}: {why}")]
    BadProp {
        /// Property.
        prop: String,
        /// Value.
        value: String,
        /// Why.
        why: String,
    },
    /// No context to build the device with.
    #[error(
        "xen-pci-passthrough: passthrough context {0:?} is not set up (the device model installs it at \
         start-up; see toolstack-hooks/README.md)"
    )]
    NoContext(String),
    /// The host function could not be opened.
    #[error("xen-pci-passthrough: {0}")]
    Host(#[from] host::HostError),
    /// Attaching failed.
    #[error("xen-pci-passthrough: {0}")]
    Attach(#[from] AttachError),
}

impl From<PassthroughError> for DeviceSpecError {
    fn from(e: PassthroughError) -> Self {
        match e {
            PassthroughError::Missing(prop) => DeviceSpecError::Missing { driver: DRIVER.into(), prop },
            PassthroughError::NoContext(_) => DeviceSpecError::Unsupported(e.to_string()),
            other => DeviceSpecError::Build(other.to_string()),
        }
    }
}

/// A parsed `xen-pci-passthrough` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtRequest {
    /// Host function.
    pub host: Sbdf,
    /// `permissive=on`.
    pub permissive: bool,
    /// `multifunction=on`.
    pub multifunction: bool,
    /// Context name.
    pub context: String,
    /// Device name (the id, or the driver).
    pub name: String,
}

fn flag(prop: &str, v: &str) -> Result<bool, PassthroughError> {
    match v {
        "on" | "yes" | "true" | "y" | "1" => Ok(true),
        "off" | "no" | "false" | "n" | "0" => Ok(false),
        _ => Err(PassthroughError::BadProp { prop: prop.into(), value: v.into(), why: "expected on/off".into() }),
    }
}

/// Parses the properties of a request.
pub fn parse_request(req: &DeviceRequest) -> Result<PtRequest, PassthroughError> {
    let mut host = None;
    let mut r = PtRequest {
        host: Sbdf::default(),
        permissive: false,
        multifunction: false,
        context: DEFAULT_CONTEXT.into(),
        name: req.id.clone().unwrap_or_else(|| DRIVER.to_string()),
    };
    for (k, v) in &req.props {
        match k.as_str() {
            "hostaddr" => {
                host = Some(v.parse::<Sbdf>().map_err(|e| PassthroughError::BadProp {
                    prop: k.clone(),
                    value: v.clone(),
                    why: e.to_string(),
                })?)
            }
            "permissive" => r.permissive = flag(k, v)?,
            "multifunction" => r.multifunction = flag(k, v)?,
            "x-pt-context" => r.context = v.clone(),
            "msitranslate" | "power_mgmt" => {
                flag(k, v)?;
                log::info!("{DRIVER}: {k}={v} accepted and ignored (QEMU ignores it too)");
            }
            _ => {
                return Err(PassthroughError::BadProp {
                    prop: k.clone(),
                    value: v.clone(),
                    why: "unknown property (accepted: hostaddr, permissive, multifunction, addr, bus, id)".into(),
                })
            }
        }
    }
    r.host = host.ok_or(PassthroughError::Missing("hostaddr"))?;
    Ok(r)
}

/// Builds the device for a request (the device factory's `xen-pci-passthrough` arm).
pub fn create(req: &DeviceRequest) -> Result<PassthroughDevice, PassthroughError> {
    let r = parse_request(req)?;
    let ctx = context(&r.context).ok_or_else(|| PassthroughError::NoContext(r.context.clone()))?;
    let host = ctx.open(r.host)?;
    let opts = FilterOptions { name: r.name.clone(), permissive: r.permissive, multifunction: r.multifunction };
    if r.permissive {
        log::warn!("{}: permissive=on: unknown and reserved config bits of host {} are writable", r.name, r.host);
    }
    Ok(PassthroughDevice::attach(host, &opts, ctx.env())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(props: &[(&str, &str)]) -> DeviceRequest {
        DeviceRequest {
            driver: DRIVER.into(),
            id: Some("pci-pt-03_00.0".into()),
            props: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn libxl_requests_parse() {
        let r = parse_request(&req(&[("hostaddr", "0000:03:00.0"), ("permissive", "on")])).expect("ok");
        assert_eq!((r.host, r.permissive, r.name.as_str()), (Sbdf::new(0, 3, 0, 0), true, "pci-pt-03_00.0"));
        let e = parse_request(&req(&[])).expect_err("no hostaddr");
        assert!(matches!(e, PassthroughError::Missing("hostaddr")));
        let e = parse_request(&req(&[("hostaddr", "03:00")])).expect_err("bad");
        assert!(e.to_string().contains("\"03:00\""), "{e}");
        let e = parse_request(&req(&[("hostaddr", "03:00.0"), ("rombar", "0")])).expect_err("unknown");
        assert!(e.to_string().contains("rombar"), "{e}");
    }

    #[test]
    fn missing_context_is_explained() {
        let e = create(&req(&[("hostaddr", "03:00.0"), ("x-pt-context", "nope")])).expect_err("no context");
        let s = DeviceSpecError::from(e).to_string();
        assert!(s.contains("\"nope\"") && s.contains("not set up"), "{s}");
    }

    #[test]
    fn guest_ram_layout() {
        assert_eq!(guest_ram(0x8000_0000, 0), vec![(0, 0x8000_0000)]);
        assert_eq!(guest_ram(0xb000_0000, 1 << 30), vec![(0, 0xb000_0000), (1 << 32, 1 << 30)]);
    }
}
