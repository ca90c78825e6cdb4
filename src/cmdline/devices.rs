//! `-device` drivers: which ones q35dm emulates, which it accepts without emulating, and the
//! PCI slot syntax of `addr=`.
//!
//! | class | drivers | effect |
//! |---|---|---|
//! | [`DriverClass::Emulated`] | see [`EMULATED`]: `q35dm-root-port`, `q35dm-upstream-port`, `q35dm-downstream-port`, `q35dm-test-endpoint`, `xen-pci-passthrough`, `xen-platform` | built by q35dm, no notice |
//! | [`DriverClass::NotEmulated`] | see [`NOT_EMULATED`]: QEMU display, network, storage, USB, sound, serial, bridge and misc devices, grouped by [`Category`] | accepted; one notice per driver saying what the guest misses |
//! | [`DriverClass::Unknown`] | anything else | accepted with a notice (QEMU would refuse to start) — except names starting with `q35dm-`, which are errors because that namespace is ours and a typo there breaks the topology |
//!
//! libxl only emits drivers from the second row (VGA, NICs, disks, USB, sound, `xen-pvdevice`)
//! and `xen-pci-passthrough` (over QMP); unknown drivers can only come from
//! `device_model_args`, where a notice keeps a guest booting that QEMU would have refused.

use std::fmt;
use std::str::FromStr;

use super::opts::{KvList, ValueError};
use crate::pci::address::Sbdf;

/// Drivers q35dm builds itself, with a short description.
pub const EMULATED: &[(&str, &str)] = &[
    ("q35dm-root-port", "PCIe root port with native hot-plug"),
    ("q35dm-upstream-port", "PCIe switch upstream port"),
    ("q35dm-downstream-port", "PCIe switch downstream port with native hot-plug"),
    ("q35dm-test-endpoint", "synthetic PCIe endpoint for tests"),
    ("xen-pci-passthrough", "host PCI device passed through to the guest"),
    ("xen-platform", "Xen platform PCI device 5853:0001 (PV drivers' unplug and event-channel IRQ)"),
];

/// What a not-emulated driver would have given the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// VGA and other display adapters.
    Display,
    /// Network cards.
    Network,
    /// Disk/CD controllers and disks.
    Storage,
    /// USB controllers and USB devices.
    Usb,
    /// Sound cards and codecs.
    Sound,
    /// virtio-serial and extra serial cards.
    Serial,
    /// QEMU's own PCI(e) bridges and ports (q35dm has its own).
    Bridge,
    /// Anything else QEMU knows.
    Misc,
}

impl Category {
    /// The notice text for a driver of this category.
    pub fn reason(self) -> &'static str {
        match self {
            Category::Display => "not emulated (q35dm has no display); the guest sees no VGA",
            Category::Network => "not emulated (q35dm has no network devices); the guest sees no emulated NIC",
            Category::Storage => "not emulated (q35dm has no disk controllers); the guest sees no emulated disk",
            Category::Usb => "not emulated (q35dm has no USB); the guest sees no USB controller or device",
            Category::Sound => "not emulated (q35dm has no sound); the guest sees no sound device",
            Category::Serial => "not emulated; use -serial for the ISA serial ports q35dm provides",
            Category::Bridge => {
                "not emulated; use q35dm-root-port, q35dm-upstream-port or q35dm-downstream-port instead"
            }
            Category::Misc => "not emulated by q35dm; the guest does not see this device",
        }
    }
}

/// QEMU drivers q35dm accepts but does not emulate.
pub const NOT_EMULATED: &[(&str, Category)] = &[
    // Display
    ("cirrus-vga", Category::Display),
    ("isa-cirrus-vga", Category::Display),
    ("VGA", Category::Display),
    ("isa-vga", Category::Display),
    ("secondary-vga", Category::Display),
    ("qxl-vga", Category::Display),
    ("qxl", Category::Display),
    ("vmware-svga", Category::Display),
    ("virtio-vga", Category::Display),
    ("virtio-gpu-pci", Category::Display),
    ("virtio-gpu", Category::Display),
    ("bochs-display", Category::Display),
    ("ati-vga", Category::Display),
    ("ramfb", Category::Display),
    // Network
    ("rtl8139", Category::Network),
    ("e1000", Category::Network),
    ("e1000-82544gc", Category::Network),
    ("e1000-82545em", Category::Network),
    ("e1000e", Category::Network),
    ("igb", Category::Network),
    ("ne2k_pci", Category::Network),
    ("ne2k_isa", Category::Network),
    ("pcnet", Category::Network),
    ("i82550", Category::Network),
    ("i82551", Category::Network),
    ("i82557a", Category::Network),
    ("i82557b", Category::Network),
    ("i82557c", Category::Network),
    ("i82558a", Category::Network),
    ("i82558b", Category::Network),
    ("i82559a", Category::Network),
    ("i82559b", Category::Network),
    ("i82559c", Category::Network),
    ("i82559er", Category::Network),
    ("i82562", Category::Network),
    ("i82801", Category::Network),
    ("virtio-net-pci", Category::Network),
    ("virtio-net", Category::Network),
    ("vmxnet3", Category::Network),
    ("tulip", Category::Network),
    ("usb-net", Category::Network),
    // Storage
    ("lsi53c895a", Category::Storage),
    ("lsi53c810", Category::Storage),
    ("lsi", Category::Storage),
    ("ahci", Category::Storage),
    ("ich9-ahci", Category::Storage),
    ("piix3-ide", Category::Storage),
    ("piix3-ide-xen", Category::Storage),
    ("piix4-ide", Category::Storage),
    ("ide-hd", Category::Storage),
    ("ide-cd", Category::Storage),
    ("ide-drive", Category::Storage),
    ("scsi-hd", Category::Storage),
    ("scsi-cd", Category::Storage),
    ("scsi-disk", Category::Storage),
    ("scsi-block", Category::Storage),
    ("scsi-generic", Category::Storage),
    ("megasas", Category::Storage),
    ("megasas-gen2", Category::Storage),
    ("mptsas1068", Category::Storage),
    ("am53c974", Category::Storage),
    ("dc390", Category::Storage),
    ("pvscsi", Category::Storage),
    ("virtio-blk-pci", Category::Storage),
    ("virtio-blk", Category::Storage),
    ("virtio-scsi-pci", Category::Storage),
    ("virtio-scsi", Category::Storage),
    ("nvme", Category::Storage),
    ("nvme-ns", Category::Storage),
    ("floppy", Category::Storage),
    ("isa-fdc", Category::Storage),
    ("sdhci-pci", Category::Storage),
    ("usb-storage", Category::Storage),
    ("usb-uas", Category::Storage),
    // USB
    ("piix3-usb-uhci", Category::Usb),
    ("piix4-usb-uhci", Category::Usb),
    ("ich9-usb-ehci1", Category::Usb),
    ("ich9-usb-ehci2", Category::Usb),
    ("ich9-usb-uhci1", Category::Usb),
    ("ich9-usb-uhci2", Category::Usb),
    ("ich9-usb-uhci3", Category::Usb),
    ("ich9-usb-uhci4", Category::Usb),
    ("ich9-usb-uhci5", Category::Usb),
    ("ich9-usb-uhci6", Category::Usb),
    ("usb-ehci", Category::Usb),
    ("nec-usb-xhci", Category::Usb),
    ("qemu-xhci", Category::Usb),
    ("pci-ohci", Category::Usb),
    ("usb-tablet", Category::Usb),
    ("usb-mouse", Category::Usb),
    ("usb-kbd", Category::Usb),
    ("usb-wacom-tablet", Category::Usb),
    ("usb-host", Category::Usb),
    ("usb-redir", Category::Usb),
    ("usb-hub", Category::Usb),
    ("usb-serial", Category::Usb),
    ("usb-braille", Category::Usb),
    ("usb-audio", Category::Usb),
    ("usb-ccid", Category::Usb),
    // Sound
    ("ac97", Category::Sound),
    ("AC97", Category::Sound),
    ("adlib", Category::Sound),
    ("cs4231a", Category::Sound),
    ("es1370", Category::Sound),
    ("ES1370", Category::Sound),
    ("gus", Category::Sound),
    ("sb16", Category::Sound),
    ("intel-hda", Category::Sound),
    ("ich9-intel-hda", Category::Sound),
    ("hda-duplex", Category::Sound),
    ("hda-output", Category::Sound),
    ("hda-micro", Category::Sound),
    ("virtio-sound-pci", Category::Sound),
    // Serial
    ("virtio-serial", Category::Serial),
    ("virtio-serial-pci", Category::Serial),
    ("virtserialport", Category::Serial),
    ("virtconsole", Category::Serial),
    ("isa-serial", Category::Serial),
    ("pci-serial", Category::Serial),
    ("pci-serial-2x", Category::Serial),
    ("pci-serial-4x", Category::Serial),
    ("isa-parallel", Category::Serial),
    // Bridges
    ("pcie-root-port", Category::Bridge),
    ("ioh3420", Category::Bridge),
    ("x3130-upstream", Category::Bridge),
    ("xio3130-downstream", Category::Bridge),
    ("pci-bridge", Category::Bridge),
    ("pcie-pci-bridge", Category::Bridge),
    ("i82801b11-bridge", Category::Bridge),
    ("pxb", Category::Bridge),
    ("pxb-pcie", Category::Bridge),
    // Misc
    ("xen-pvdevice", Category::Misc),
    ("vfio-pci", Category::Misc),
    ("virtio-balloon-pci", Category::Misc),
    ("virtio-balloon", Category::Misc),
    ("virtio-rng-pci", Category::Misc),
    ("virtio-rng", Category::Misc),
    ("virtio-keyboard-pci", Category::Misc),
    ("virtio-mouse-pci", Category::Misc),
    ("virtio-tablet-pci", Category::Misc),
    ("virtio-9p-pci", Category::Misc),
    ("vhost-vsock-pci", Category::Misc),
    ("i6300esb", Category::Misc),
    ("ib700", Category::Misc),
    ("pvpanic", Category::Misc),
    ("pvpanic-pci", Category::Misc),
    ("vmcoreinfo", Category::Misc),
    ("vmgenid", Category::Misc),
    ("ivshmem-plain", Category::Misc),
    ("ivshmem-doorbell", Category::Misc),
    ("tpm-tis", Category::Misc),
    ("tpm-crb", Category::Misc),
    ("isa-debugcon", Category::Misc),
    ("isa-debug-exit", Category::Misc),
    ("intel-iommu", Category::Misc),
    ("amd-iommu", Category::Misc),
    ("edu", Category::Misc),
    ("pci-testdev", Category::Misc),
    ("sga", Category::Misc),
    ("hyperv-testdev", Category::Misc),
    ("vmport", Category::Misc),
];

/// How q35dm treats a `-device` driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverClass {
    /// Built by q35dm.
    Emulated,
    /// A QEMU driver q35dm accepts but does not build.
    NotEmulated(Category),
    /// Not in either table.
    Unknown,
}

impl DriverClass {
    /// Short name for logs and tests: `emulated`, `not-emulated`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverClass::Emulated => "emulated",
            DriverClass::NotEmulated(_) => "not-emulated",
            DriverClass::Unknown => "unknown",
        }
    }
}

/// The prefix of q35dm's own driver names; unknown names with it are errors, not notices.
pub const OWN_PREFIX: &str = "q35dm-";

/// The notice text for an unknown driver.
pub const UNKNOWN_REASON: &str = "unknown device driver; ignored (QEMU would refuse to start)";

/// Classifies a driver name (case-sensitive, as in QEMU).
pub fn classify_driver(driver: &str) -> DriverClass {
    if EMULATED.iter().any(|(n, _)| *n == driver) {
        DriverClass::Emulated
    } else if let Some((_, cat)) = NOT_EMULATED.iter().find(|(n, _)| *n == driver) {
        DriverClass::NotEmulated(*cat)
    } else {
        DriverClass::Unknown
    }
}

/// A PCI slot and function on some bus, as in `-device ...,addr=1c.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevFn {
    /// Slot (device number), 0..=0x1f.
    pub slot: u8,
    /// Function, 0..=7.
    pub func: u8,
}

impl DevFn {
    /// `slot << 3 | func`.
    pub fn devfn(self) -> u8 {
        (self.slot << 3) | self.func
    }

    /// The full address once the bus is known.
    pub fn on_bus(self, seg: u16, bus: u8) -> Sbdf {
        Sbdf::new(seg, bus, self.slot, self.func)
    }
}

impl fmt::Display for DevFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:x}", self.slot, self.func)
    }
}

fn hex_u32(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

impl FromStr for DevFn {
    type Err = ValueError;

    /// QEMU's `pci-devfn` property syntax: `SLOT[.FUNCTION]`, both hex with an optional `0x`
    /// (`1c.0`, `03`, `0x1d.0x7`); slot <= 0x1f, function <= 7.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValueError::BadDevFn { key: "addr".to_string(), value: s.to_string() };
        let (slot, func) = match s.split_once('.') {
            Some((a, b)) => (hex_u32(a).ok_or_else(bad)?, hex_u32(b).ok_or_else(bad)?),
            None => (hex_u32(s).ok_or_else(bad)?, 0),
        };
        if slot > 0x1f || func > 7 {
            return Err(bad());
        }
        Ok(DevFn { slot: u8::try_from(slot).map_err(|_| bad())?, func: u8::try_from(func).map_err(|_| bad())? })
    }
}

/// The typed fields of one `-device`, before it joins the configuration.
pub(super) struct DeviceSpecParts {
    pub(super) driver: String,
    pub(super) class: DriverClass,
    pub(super) id: Option<String>,
    pub(super) bus: Option<String>,
    pub(super) addr: Option<DevFn>,
    pub(super) hostaddr: Option<Sbdf>,
}

/// Checks and types the parameters of one `-device` (implied key `driver`): the driver
/// name, `id` (a QEMU identifier), `addr` ([`DevFn`]), and for `xen-pci-passthrough` the
/// required `hostaddr` ([`Sbdf`]). Unknown drivers in q35dm's own namespace are errors.
pub(super) fn parts_from_kv(kv: &KvList) -> Result<DeviceSpecParts, ValueError> {
    let driver = kv.require("driver")?;
    if driver.is_empty() {
        return Err(ValueError::Invalid {
            key: "driver".into(),
            value: String::new(),
            why: "must not be empty".into(),
        });
    }
    let class = classify_driver(driver);
    if class == DriverClass::Unknown && driver.starts_with(OWN_PREFIX) {
        let own: Vec<&str> = EMULATED.iter().map(|(n, _)| *n).filter(|n| n.starts_with(OWN_PREFIX)).collect();
        return Err(ValueError::BadChoice { key: "driver".into(), value: driver.into(), accepted: own.join(", ") });
    }
    let id = kv.get_id("id")?.map(str::to_string);
    let addr = kv.get("addr").map(str::parse::<DevFn>).transpose()?;
    let hostaddr = if driver == "xen-pci-passthrough" {
        let v = kv.require("hostaddr")?;
        Some(v.parse::<Sbdf>().map_err(|e| ValueError::BadHostAddr {
            key: "hostaddr".into(),
            value: v.into(),
            why: e.why,
        })?)
    } else {
        None
    };
    Ok(DeviceSpecParts {
        driver: driver.to_string(),
        class,
        id,
        bus: kv.get("bus").map(str::to_string),
        addr,
        hostaddr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devfn_forms() {
        assert_eq!("1c.0".parse(), Ok(DevFn { slot: 0x1c, func: 0 }));
        assert_eq!("0x1d.0x7".parse(), Ok(DevFn { slot: 0x1d, func: 7 }));
        assert_eq!("03".parse(), Ok(DevFn { slot: 3, func: 0 }));
        assert_eq!("0x3".parse(), Ok(DevFn { slot: 3, func: 0 }));
        assert_eq!("1F.7".parse(), Ok(DevFn { slot: 0x1f, func: 7 }));
        let d: DevFn = "1d.2".parse().expect("ok");
        assert_eq!(d.devfn(), 0xea);
        assert_eq!(d.to_string(), "1d.2");
        assert_eq!(d.on_bus(0, 3).to_string(), "0000:03:1d.2");
    }

    #[test]
    fn devfn_rejects() {
        for bad in ["", ".", "20.0", "1f.8", "x", "1c.", ".1", "1c.0.0", "0x", "-1", "1c:0"] {
            let e = bad.parse::<DevFn>().expect_err(bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify_driver("q35dm-root-port"), DriverClass::Emulated);
        assert_eq!(classify_driver("xen-pci-passthrough"), DriverClass::Emulated);
        assert_eq!(classify_driver("cirrus-vga"), DriverClass::NotEmulated(Category::Display));
        assert_eq!(classify_driver("vga"), DriverClass::Unknown, "QEMU names are case-sensitive");
        assert_eq!(classify_driver("rtl8139"), DriverClass::NotEmulated(Category::Network));
        assert_eq!(classify_driver("frobnicator"), DriverClass::Unknown);
    }

    #[test]
    fn tables_have_no_duplicates_or_overlap() {
        let mut all: Vec<&str> = EMULATED.iter().map(|(n, _)| *n).chain(NOT_EMULATED.iter().map(|(n, _)| *n)).collect();
        let len = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), len);
        assert!(NOT_EMULATED.iter().all(|(n, _)| !n.starts_with(OWN_PREFIX)));
    }
}
