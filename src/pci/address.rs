//! PCI addresses: segment, bus, device, function.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A PCI function address, packed as Xen's `XEN_DMOP_PCI_SBDF`: `seg<<16 | bus<<8 | dev<<3 | fn`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sbdf(u32);

impl Sbdf {
    /// Builds from parts (device is masked to 5 bits, function to 3).
    pub const fn new(seg: u16, bus: u8, dev: u8, func: u8) -> Self {
        Self(((seg as u32) << 16) | ((bus as u32) << 8) | (((dev & 0x1f) as u32) << 3) | ((func & 7) as u32))
    }
    /// From the packed form.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
    /// The packed form.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Segment.
    pub const fn seg(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// Bus.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Device (0-31).
    pub const fn dev(self) -> u8 {
        ((self.0 >> 3) & 0x1f) as u8
    }
    /// Function (0-7).
    pub const fn func(self) -> u8 {
        (self.0 & 7) as u8
    }
    /// `dev<<3 | fn`.
    pub const fn devfn(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    /// Requester ID: `bus<<8 | devfn`.
    pub const fn bdf(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
    /// The same slot, another function.
    pub const fn with_func(self, func: u8) -> Self {
        Self((self.0 & !7) | (func & 7) as u32)
    }
}

impl fmt::Display for Sbdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.seg(), self.bus(), self.dev(), self.func())
    }
}

impl fmt::Debug for Sbdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A malformed PCI address.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid PCI address {input:?}: {why} (expected [[SSSS:]BB:]DD.F in hex)")]
pub struct ParseSbdfError {
    /// The text given.
    pub input: String,
    /// What was wrong.
    pub why: &'static str,
}

impl FromStr for Sbdf {
    type Err = ParseSbdfError;

    /// Parses `SSSS:BB:DD.F`, `BB:DD.F` or `DD.F` (hex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ParseSbdfError { input: s.to_string(), why };
        let (head, func) = s.rsplit_once('.').ok_or_else(|| err("missing '.F'"))?;
        let func = u8::from_str_radix(func, 16).map_err(|_| err("bad function"))?;
        if func > 7 {
            return Err(err("function above 7"));
        }
        let parts: Vec<&str> = head.split(':').collect();
        let (seg, bus, dev) = match parts.as_slice() {
            [d] => ("0", "0", *d),
            [b, d] => ("0", *b, *d),
            [s, b, d] => (*s, *b, *d),
            _ => return Err(err("too many ':'")),
        };
        let seg = u16::from_str_radix(seg, 16).map_err(|_| err("bad segment"))?;
        let bus = u8::from_str_radix(bus, 16).map_err(|_| err("bad bus"))?;
        let dev = u8::from_str_radix(dev, 16).map_err(|_| err("bad device"))?;
        if dev > 0x1f {
            return Err(err("device above 1f"));
        }
        Ok(Sbdf::new(seg, bus, dev, func))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_matches_xen() {
        let s = Sbdf::new(0, 0, 0x1f, 3);
        assert_eq!(s.raw(), xen_bindings::dm_op::pci_sbdf(0, 0, 0x1f, 3));
        assert_eq!((s.bus(), s.dev(), s.func(), s.devfn()), (0, 0x1f, 3, 0xfb));
        assert_eq!(s.to_string(), "0000:00:1f.3");
    }

    #[test]
    fn parse_forms() {
        assert_eq!("0000:03:00.1".parse(), Ok(Sbdf::new(0, 3, 0, 1)));
        assert_eq!("03:1f.7".parse(), Ok(Sbdf::new(0, 3, 0x1f, 7)));
        assert_eq!("1f.0".parse(), Ok(Sbdf::new(0, 0, 0x1f, 0)));
        assert!("00:20.0".parse::<Sbdf>().is_err());
        assert!("00:1f.8".parse::<Sbdf>().is_err());
        let e = "zz".parse::<Sbdf>().expect_err("bad");
        assert!(e.to_string().contains("\"zz\""));
    }
}
