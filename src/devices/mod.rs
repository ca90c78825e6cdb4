//! Emulated devices that plug into the board: PCIe ports and the test endpoint; the factory that
//! turns a `-device` / `device_add` description into one.

pub mod chardev;
pub mod endpoint;
pub mod fwcfg;
pub mod ports;
pub mod serial;
pub mod xen_platform;

use thiserror::Error;

use crate::pci::device::PciDevice;
use crate::pcie::slot::SlotConfig;
use ports::{PciePort, PortKind, PortSpec};

/// A device description (from `-device`, QMP `device_add`, HMP or xenstore).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Driver.
    pub driver: String,
    /// `id=`.
    pub id: Option<String>,
    /// `bus=`.
    pub bus: Option<String>,
    /// `addr=` as devfn.
    pub devfn: Option<u8>,
    /// Other properties, in order.
    pub props: Vec<(String, String)>,
}

impl DeviceRequest {
    /// The last value of a property.
    pub fn prop(&self, k: &str) -> Option<&str> {
        self.props.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str, default: bool) -> Result<bool, DeviceSpecError> {
        match self.prop(k) {
            None => Ok(default),
            Some("on" | "yes" | "true" | "y" | "1") => Ok(true),
            Some("off" | "no" | "false" | "n" | "0") => Ok(false),
            Some(v) => Err(DeviceSpecError::BadProp {
                driver: self.driver.clone(),
                prop: k.into(),
                value: v.into(),
                why: "expected on/off",
            }),
        }
    }

    fn num(&self, k: &str) -> Result<Option<u64>, DeviceSpecError> {
        match self.prop(k) {
            None => Ok(None),
            Some(v) => {
                let p = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v.parse(),
                };
                p.map(Some).map_err(|_| DeviceSpecError::BadProp {
                    driver: self.driver.clone(),
                    prop: k.into(),
                    value: v.into(),
                    why: "expected a number",
                })
            }
        }
    }
}

impl DeviceRequest {
    /// From a `-device` parsed by the command line.
    pub fn from_spec(d: &crate::cmdline::config::DeviceSpec) -> Self {
        DeviceRequest {
            driver: d.driver.clone(),
            id: d.id.clone(),
            bus: d.bus.clone(),
            devfn: d.addr.map(|a| a.devfn()),
            props: d.props.iter().filter(|(k, _)| !matches!(k.as_str(), "id" | "bus" | "addr")).cloned().collect(),
        }
    }

    /// From HMP's `driver,prop=value,...` (QEMU's `-device` syntax).
    pub fn parse(text: &str) -> Result<Self, DeviceSpecError> {
        let mut parts = text.split(',');
        let driver = parts.next().unwrap_or("").trim().to_string();
        if driver.is_empty() {
            return Err(DeviceSpecError::Missing { driver: "device_add".into(), prop: "driver" });
        }
        let mut props = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, "on"));
            props.push((k.trim().to_string(), v.trim().to_string()));
        }
        Self::from_props(driver, props)
    }

    /// From a driver and properties (QMP `device_add` arguments, stringified).
    pub fn from_props(driver: String, props: Vec<(String, String)>) -> Result<Self, DeviceSpecError> {
        let mut r = DeviceRequest { driver, ..Default::default() };
        for (k, v) in props {
            match k.as_str() {
                "id" => r.id = Some(v),
                "bus" => r.bus = Some(v),
                "addr" => {
                    let d: crate::cmdline::devices::DevFn = v.parse().map_err(|_| DeviceSpecError::BadProp {
                        driver: r.driver.clone(),
                        prop: "addr".into(),
                        value: v.clone(),
                        why: "expected SLOT[.FN] in hex (e.g. 1c.0)",
                    })?;
                    r.devfn = Some(d.devfn());
                }
                _ => r.props.push((k, v)),
            }
        }
        Ok(r)
    }
}

/// Why a device could not be created.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceSpecError {
    /// Unknown driver.
    #[error("device driver {0:?} is not emulated by q35dm (emulated: q35dm-root-port, q35dm-upstream-port, q35dm-downstream-port, q35dm-test-endpoint, xen-platform, xen-pci-passthrough)")]
    UnknownDriver(String),
    /// Bad property.
    #[error("{driver}: property {prop}={value:?}: {why}")]
    BadProp {
        /// Driver.
        driver: String,
        /// Property.
        prop: String,
        /// Value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// Property required.
    #[error("{driver}: property {prop} is required")]
    Missing {
        /// Driver.
        driver: String,
        /// Property.
        prop: &'static str,
    },
    /// Building failed.
    #[error("{0}")]
    Build(String),
    /// Not available yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A created device and how it joins the hierarchy.
pub struct Created {
    /// The device.
    pub dev: Box<dyn PciDevice>,
    /// Its child bus (if a bridge) holds only device 0 (PCIe root and downstream ports).
    pub child_single_device: bool,
}

/// Builds a device from a request.
pub fn create(req: &DeviceRequest) -> Result<Created, DeviceSpecError> {
    let name = req.id.clone().unwrap_or_else(|| req.driver.clone());
    let port = |kind: PortKind| -> Result<Created, DeviceSpecError> {
        let defaults = SlotConfig::default();
        let power_controller = req.flag("power-controller", defaults.power_controller)?;
        let slot = SlotConfig {
            attention_button: req.flag("attn-button", defaults.attention_button)?,
            power_controller,
            // A card inserted into a slot with a power controller stays unpowered (no link, so no
            // DLLSC); pciehp enables ABPE rather than PDCE on a slot with a button, so the insertion
            // must also press the button (as QEMU does) or the guest never hears of it.
            press_button_on_insert: req.flag("abp-on-insert", power_controller)?,
            mrl_sensor: req.flag("mrl-sensor", defaults.mrl_sensor)?,
            attention_indicator: req.flag("attn-indicator", defaults.attention_indicator)?,
            power_indicator: req.flag("power-indicator", defaults.power_indicator)?,
            hotplug_surprise: req.flag("surprise", defaults.hotplug_surprise)?,
            emi: req.flag("emi", defaults.emi)?,
            hotplug: req.flag("hotplug", defaults.hotplug)?,
            physical_slot: req.num("slot")?.unwrap_or(0) as u16,
            ..defaults
        };
        let chassis = req.num("chassis")?.unwrap_or(0);
        if chassis > 255 {
            return Err(DeviceSpecError::BadProp {
                driver: req.driver.clone(),
                prop: "chassis".into(),
                value: chassis.to_string(),
                why: "must be 0-255",
            });
        }
        if slot.physical_slot > 8191 {
            return Err(DeviceSpecError::BadProp {
                driver: req.driver.clone(),
                prop: "slot".into(),
                value: slot.physical_slot.to_string(),
                why: "must be 0-8191",
            });
        }
        let spec = PortSpec {
            kind,
            chassis: chassis as u8,
            slot,
            port_number: req.num("port")?.unwrap_or(0) as u8,
            multifunction: req.flag("multifunction", false)?,
        };
        let p = PciePort::new(&name, spec).map_err(|e| DeviceSpecError::Build(e.to_string()))?;
        Ok(Created { dev: Box::new(p), child_single_device: kind != PortKind::Upstream })
    };
    match req.driver.as_str() {
        "q35dm-root-port" => port(PortKind::Root),
        "q35dm-upstream-port" => port(PortKind::Upstream),
        "q35dm-downstream-port" => port(PortKind::Downstream),
        "q35dm-test-endpoint" => {
            let mf = req.flag("multifunction", false)?;
            let e = endpoint::TestEndpoint::new(&name, mf).map_err(|e| DeviceSpecError::Build(e.to_string()))?;
            Ok(Created { dev: Box::new(e), child_single_device: false })
        }
        xen_platform::DRIVER => {
            let p = xen_platform::XenPlatform::new(&name).map_err(|e| DeviceSpecError::Build(e.to_string()))?;
            Ok(Created { dev: Box::new(p), child_single_device: false })
        }
        "xen-pci-passthrough" => {
            Ok(Created { dev: Box::new(crate::passthrough::create(req)?), child_single_device: false })
        }
        other => Err(DeviceSpecError::UnknownDriver(other.to_string())),
    }
}
