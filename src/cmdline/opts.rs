//! QEMU option strings and value syntaxes.
//!
//! [`KvList`] parses `key=value,key=value` the way QEMU's `QemuOpts` does
//! (util/qemu-option.c, `opts_do_parse`):
//!
//! * elements are separated by `,`; inside a value `,,` stands for a literal `,`;
//! * if the first element has no `=` before its first `,`, it is the value of the option's
//!   *implied* key (`-device e1000,mac=...` → `driver=e1000`), when the option has one;
//! * any other element without `=` is a boolean flag: `server` → `server=on`, and the
//!   deprecated short form `nowait` → `wait=off`;
//! * a key may repeat; the last occurrence wins ([`KvList::get`]);
//! * a trailing `,` is ignored.
//!
//! The value syntaxes follow QEMU too: numbers as `strtoull(.., 0)` (decimal, `0x` hex,
//! leading-`0` octal), booleans `on/off/yes/no/true/false/y/n`, sizes as `qemu_strtosz`
//! (decimal with an optional fraction, or `0x` hex, then one of `B K M G T P E`,
//! case-insensitive, powers of 1024).

use thiserror::Error;

/// A malformed value inside an option argument. Every variant names the offending key and
/// text; [`super::CmdlineError::BadValue`] adds the option it came from.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// An element with an empty name (`,x=1` or `=1`).
    #[error("empty parameter name in {input:?}")]
    EmptyKey {
        /// The whole option string.
        input: String,
    },
    /// A required key is absent.
    #[error("missing required parameter '{key}'")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A key the option does not have.
    #[error("unknown parameter '{key}' (accepted: {accepted})")]
    UnknownKey {
        /// The key.
        key: String,
        /// The accepted keys, comma-separated.
        accepted: String,
    },
    /// Not a number.
    #[error("{key}={value:?} is not a number")]
    BadNumber {
        /// The key.
        key: String,
        /// The text.
        value: String,
    },
    /// A number outside the accepted range.
    #[error("{key}={value:?} is out of range (expected {range})")]
    OutOfRange {
        /// The key.
        key: String,
        /// The text.
        value: String,
        /// The accepted range, human readable.
        range: String,
    },
    /// Not a size.
    #[error("{key}={value:?} is not a size ({why})")]
    BadSize {
        /// The key.
        key: String,
        /// The text.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Not a boolean.
    #[error("{key}={value:?} is not a boolean (expected on or off)")]
    BadBool {
        /// The key.
        key: String,
        /// The text.
        value: String,
    },
    /// Not one of a fixed set of words.
    #[error("{key}={value:?} is not one of: {accepted}")]
    BadChoice {
        /// The key.
        key: String,
        /// The text.
        value: String,
        /// The accepted words, comma-separated.
        accepted: String,
    },
    /// Not a PCI slot/function (`addr=`).
    #[error(
        "{key}={value:?} is not a PCI device address (expected SLOT[.FUNCTION] in hex, slot <= 1f, function <= 7)"
    )]
    BadDevFn {
        /// The key.
        key: String,
        /// The text.
        value: String,
    },
    /// Not a host PCI address (`hostaddr=`).
    #[error("{key}={value:?} is not a host PCI address ({why}; expected [[SSSS:]BB:]DD.F in hex)")]
    BadHostAddr {
        /// The key.
        key: String,
        /// The text.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Not a QEMU identifier.
    #[error("{key}={value:?} is not a valid identifier (a letter, then letters, digits, '-', '.' or '_')")]
    BadId {
        /// The key.
        key: String,
        /// The text.
        value: String,
    },
    /// Anything else; `why` says what.
    #[error("{key}={value:?}: {why}")]
    Invalid {
        /// The key (or a description of the position).
        key: String,
        /// The text.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// An ordered `key=value` list parsed from a QEMU option string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvList {
    items: Vec<(String, String)>,
}

impl KvList {
    /// Parses `input`; `implied` is the key of an implied first element, if the option has one.
    pub fn parse(input: &str, implied: Option<&str>) -> Result<Self, ValueError> {
        let mut items = Vec::new();
        let mut first = implied;
        let mut rest = input;
        while !rest.is_empty() {
            let name_len = rest.find(['=', ',']).unwrap_or(rest.len());
            let (name, tail) = rest.split_at_checked(name_len).unwrap_or((rest, ""));
            let (key, value, after) = if let Some(v) = tail.strip_prefix('=') {
                let (value, after) = take_value(v);
                (name.to_string(), value, after)
            } else if let Some(k) = first {
                let (value, after) = take_value(rest);
                (k.to_string(), value, after)
            } else {
                let (key, value) = match name.strip_prefix("no") {
                    Some(stripped) if !stripped.is_empty() => (stripped.to_string(), "off".to_string()),
                    _ => (name.to_string(), "on".to_string()),
                };
                (key, value, tail)
            };
            if key.is_empty() {
                return Err(ValueError::EmptyKey { input: input.to_string() });
            }
            items.push((key, value));
            first = None;
            rest = after.strip_prefix(',').unwrap_or(after);
        }
        Ok(Self { items })
    }

    /// Builds a list from pairs (for synthesised options).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { items: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// All elements in order.
    pub fn items(&self) -> &[(String, String)] {
        &self.items
    }

    /// Consumes the list.
    pub fn into_items(self) -> Vec<(String, String)> {
        self.items
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True if `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| k == key)
    }

    /// The value of `key`, or [`ValueError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&str, ValueError> {
        self.get(key).ok_or_else(|| ValueError::MissingKey { key: key.to_string() })
    }

    /// Fails with [`ValueError::UnknownKey`] on the first key not in `allowed`.
    pub fn check_keys(&self, allowed: &[&str]) -> Result<(), ValueError> {
        match self.items.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ValueError::UnknownKey { key: k.clone(), accepted: allowed.join(", ") }),
            None => Ok(()),
        }
    }

    /// `key` as a QEMU boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ValueError> {
        self.get(key).map(|v| parse_bool(key, v)).transpose()
    }

    /// `key` as a QEMU number (`strtoull` base 0).
    pub fn get_number(&self, key: &str) -> Result<Option<u64>, ValueError> {
        self.get(key).map(|v| parse_number(key, v)).transpose()
    }

    /// `key` as a size in bytes; a bare number is scaled by `default_unit` (1 for bytes,
    /// 1 MiB for QEMU's `-m`).
    pub fn get_size(&self, key: &str, default_unit: u64) -> Result<Option<u64>, ValueError> {
        self.get(key).map(|v| parse_size(key, v, default_unit)).transpose()
    }

    /// `key` as a QEMU identifier (see [`check_id`]).
    pub fn get_id(&self, key: &str) -> Result<Option<&str>, ValueError> {
        match self.get(key) {
            Some(v) => check_id(key, v).map(Some),
            None => Ok(None),
        }
    }

    /// `key` as one of `choices`.
    pub fn get_choice(&self, key: &str, choices: &[&str]) -> Result<Option<&str>, ValueError> {
        match self.get(key) {
            Some(v) if choices.contains(&v) => Ok(Some(v)),
            Some(v) => {
                Err(ValueError::BadChoice { key: key.to_string(), value: v.to_string(), accepted: choices.join(", ") })
            }
            None => Ok(None),
        }
    }
}

/// Reads a value up to the next single `,`, turning `,,` into `,`; returns it and the rest
/// (starting at the separating `,`, or empty).
fn take_value(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == ',' {
            if matches!(chars.peek(), Some((_, ','))) {
                chars.next();
                out.push(',');
                continue;
            }
            return (out, s.get(i..).unwrap_or_default());
        }
        out.push(c);
    }
    (out, "")
}

/// Escapes `,` as `,,` so that `s` can be embedded as one value of an option string.
pub fn escape_value(s: &str) -> String {
    s.replace(',', ",,")
}

/// QEMU boolean: `on yes true y` / `off no false n`.
pub fn parse_bool(key: &str, value: &str) -> Result<bool, ValueError> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(ValueError::BadBool { key: key.to_string(), value: value.to_string() }),
    }
}

/// QEMU number: unsigned, `0x` hex, leading-`0` octal, else decimal (`strtoull(.., 0)`).
pub fn parse_number(key: &str, value: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::BadNumber { key: key.to_string(), value: value.to_string() };
    let (digits, radix) = if let Some(h) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        (h, 16)
    } else {
        match value.strip_prefix('0') {
            Some(o) if !o.is_empty() => (o, 8),
            _ => (value, 10),
        }
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| ValueError::OutOfRange {
        key: key.to_string(),
        value: value.to_string(),
        range: "a 64-bit number".to_string(),
    })
}

/// A strict decimal number (as used for file descriptors and domain ids).
pub fn parse_decimal(key: &str, value: &str) -> Result<u64, ValueError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::BadNumber { key: key.to_string(), value: value.to_string() });
    }
    value.parse().map_err(|_| ValueError::OutOfRange {
        key: key.to_string(),
        value: value.to_string(),
        range: "a 64-bit number".to_string(),
    })
}

/// Checks a number against an inclusive range.
pub fn in_range(key: &str, value: &str, n: u64, min: u64, max: u64) -> Result<u64, ValueError> {
    if n < min || n > max {
        return Err(ValueError::OutOfRange {
            key: key.to_string(),
            value: value.to_string(),
            range: format!("{min}..={max}"),
        });
    }
    Ok(n)
}

fn suffix_mul(c: char) -> Option<u32> {
    match c.to_ascii_uppercase() {
        'B' => Some(0),
        'K' => Some(1),
        'M' => Some(2),
        'G' => Some(3),
        'T' => Some(4),
        'P' => Some(5),
        'E' => Some(6),
        _ => None,
    }
}

/// Splits `s` after its leading characters that satisfy `pred`.
fn split_while(s: &str, pred: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s.find(|c: char| !pred(c)).unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

/// QEMU size (`qemu_strtosz`): `N[.F][SUFFIX]` or `0xH[SUFFIX]`, suffixes `B K M G T P E`
/// (any case, powers of 1024). A value without a suffix is multiplied by `default_unit`.
/// A fraction needs a unit larger than one byte; the result is rounded to the nearest byte.
pub fn parse_size(key: &str, value: &str, default_unit: u64) -> Result<u64, ValueError> {
    let bad = |why| ValueError::BadSize { key: key.to_string(), value: value.to_string(), why };
    let (int_part, rest) = split_while(value, |c| c.is_ascii_digit());
    if int_part.is_empty() {
        return Err(bad(if value.starts_with('-') { "negative" } else { "expected a number" }));
    }
    let hex = if int_part == "0" { rest.strip_prefix('x').or_else(|| rest.strip_prefix('X')) } else { None };
    let (mut int, frac, rest): (u128, Option<&str>, &str) = if let Some(h) = hex {
        let (digits, rest) = split_while(h, |c| c.is_ascii_hexdigit());
        if digits.is_empty() {
            return Err(bad("expected hex digits after 0x"));
        }
        if rest.starts_with('.') {
            return Err(bad("hex with a fraction"));
        }
        (u128::from_str_radix(digits, 16).map_err(|_| bad("too large"))?, None, rest)
    } else {
        let int = int_part.parse::<u128>().map_err(|_| bad("too large"))?;
        match rest.strip_prefix('.') {
            Some(after_dot) => {
                let (f, rest) = split_while(after_dot, |c| c.is_ascii_digit());
                (int, Some(f), rest)
            }
            None => (int, None, rest),
        }
    };
    let mut chars = rest.chars();
    let (unit, rest): (u128, &str) = match chars.next().and_then(suffix_mul) {
        Some(p) => (1024u128.pow(p), chars.as_str()),
        None => (u128::from(default_unit), rest),
    };
    if !rest.is_empty() {
        return Err(bad("unknown suffix (expected B, K, M, G, T, P or E)"));
    }
    int = int.checked_mul(unit).ok_or_else(|| bad("too large"))?;
    if let Some(f) = frac.filter(|f| f.bytes().any(|c| c != b'0')) {
        if unit == 1 {
            return Err(bad("a fraction needs a unit"));
        }
        // Exact: frac digits / 10^n * unit, rounded half up. Long fractions are cut at 18
        // digits, far below one byte for any unit up to EiB.
        let f = f.get(..18).unwrap_or(f);
        let num: u128 = f.parse().map_err(|_| bad("bad fraction"))?;
        let den: u128 = 10u128.pow(u32::try_from(f.len()).map_err(|_| bad("bad fraction"))?);
        int += (num * unit + den / 2) / den;
    }
    u64::try_from(int).map_err(|_| bad("too large"))
}

/// QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.`, `_`.
pub fn check_id<'a>(key: &str, value: &'a str) -> Result<&'a str, ValueError> {
    let mut chars = value.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(value)
    } else {
        Err(ValueError::BadId { key: key.to_string(), value: value.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str, implied: Option<&str>) -> Vec<(String, String)> {
        KvList::parse(s, implied).expect("parse").into_items()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn implied_first_key() {
        assert_eq!(
            kv("xenfv,suppress-vmdesc=on", Some("type")),
            pairs(&[("type", "xenfv"), ("suppress-vmdesc", "on")])
        );
        assert_eq!(kv("type=pc,accel=xen", Some("type")), pairs(&[("type", "pc"), ("accel", "xen")]));
        // Only the first element can be implied.
        assert_eq!(kv("a=1,b", Some("type")), pairs(&[("a", "1"), ("b", "on")]));
        assert_eq!(kv("2", Some("cpus")), pairs(&[("cpus", "2")]));
    }

    #[test]
    fn flags_and_no_prefix() {
        assert_eq!(
            kv("socket,id=m,path=/s,server,nowait", Some("backend")),
            pairs(&[("backend", "socket"), ("id", "m"), ("path", "/s"), ("server", "on"), ("wait", "off")])
        );
        // Without an implied key the first bare element is a flag too.
        assert_eq!(kv("server", None), pairs(&[("server", "on")]));
        // "no" alone is a flag named "no".
        assert_eq!(kv("no", None), pairs(&[("no", "on")]));
    }

    #[test]
    fn comma_escaping() {
        assert_eq!(kv("file=/a,,b,format=raw", None), pairs(&[("file", "/a,b"), ("format", "raw")]));
        assert_eq!(kv("x,,y,k=v", Some("driver")), pairs(&[("driver", "x,y"), ("k", "v")]));
        assert_eq!(kv("a=,,,,", None), pairs(&[("a", ",,")]));
        assert_eq!(kv("a=1,", None), pairs(&[("a", "1")]));
        assert_eq!(kv("a=b=c", None), pairs(&[("a", "b=c")]));
        assert_eq!(kv("a=", None), pairs(&[("a", "")]));
        assert_eq!(escape_value("a,b"), "a,,b");
        assert_eq!(kv(&format!("p={}", escape_value("x,y,,z")), None), pairs(&[("p", "x,y,,z")]));
    }

    #[test]
    fn empty_names_rejected() {
        assert!(matches!(KvList::parse(",a=1", None), Err(ValueError::EmptyKey { .. })));
        assert!(matches!(KvList::parse("=1", Some("type")), Err(ValueError::EmptyKey { .. })));
        assert!(KvList::parse("", Some("type")).expect("empty").is_empty());
    }

    #[test]
    fn last_value_wins_and_accessors() {
        let l = KvList::parse("a=1,b=on,a=0x10,c=yes", None).expect("parse");
        assert_eq!(l.get("a"), Some("0x10"));
        assert_eq!(l.get_number("a"), Ok(Some(16)));
        assert_eq!(l.get_bool("b"), Ok(Some(true)));
        assert_eq!(l.get_bool("c"), Ok(Some(true)));
        assert_eq!(l.get_bool("zz"), Ok(None));
        assert!(matches!(l.get_bool("a"), Err(ValueError::BadBool { .. })));
        assert!(matches!(l.require("zz"), Err(ValueError::MissingKey { .. })));
        let e = l.check_keys(&["a", "b"]).expect_err("c unknown");
        assert!(e.to_string().contains("'c'"), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("n", "10"), Ok(10));
        assert_eq!(parse_number("n", "0x1f"), Ok(31));
        assert_eq!(parse_number("n", "010"), Ok(8));
        assert_eq!(parse_number("n", "0"), Ok(0));
        for bad in ["", "-1", "1a", "0x", "09", " 1", "+1"] {
            assert!(parse_number("n", bad).is_err(), "{bad:?}");
        }
        assert!(matches!(parse_number("n", "99999999999999999999"), Err(ValueError::OutOfRange { .. })));
        assert_eq!(parse_decimal("fd", "23"), Ok(23));
        assert!(parse_decimal("fd", "0x3").is_err());
    }

    #[test]
    fn sizes() {
        const M: u64 = 1 << 20;
        assert_eq!(parse_size("size", "256", M), Ok(256 * M));
        assert_eq!(parse_size("size", "256M", M), Ok(256 * M));
        assert_eq!(parse_size("size", "256m", M), Ok(256 * M));
        assert_eq!(parse_size("size", "1G", M), Ok(1024 * M));
        assert_eq!(parse_size("size", "1g", 1), Ok(1024 * M));
        assert_eq!(parse_size("size", "262144k", M), Ok(256 * M));
        assert_eq!(parse_size("size", "262144K", M), Ok(256 * M));
        assert_eq!(parse_size("size", "1.5G", M), Ok(1536 * M));
        assert_eq!(parse_size("size", "1.k", 1), Ok(1024));
        assert_eq!(parse_size("size", "0.5", M), Ok(M / 2));
        assert_eq!(parse_size("size", "1T", 1), Ok(1 << 40));
        assert_eq!(parse_size("size", "1E", 1), Ok(1 << 60));
        assert_eq!(parse_size("size", "3221225472", 1), Ok(3 << 30));
        assert_eq!(parse_size("size", "4096B", M), Ok(4096));
        assert_eq!(parse_size("size", "0x100000", 1), Ok(M));
        assert_eq!(parse_size("size", "0x10M", 1), Ok(16 * M));
        assert_eq!(parse_size("size", "1.0", 1), Ok(1));
        for bad in ["", "M", "-1", "1Q", "12MB", "1.5", "0x1.5", "0x", "1 M", "16E", "1e3"] {
            let e = parse_size("size", bad, 1).expect_err(bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn ids() {
        assert!(check_id("id", "libxl-cmd").is_ok());
        assert!(check_id("id", "pci-pt-03_00.0").is_ok());
        assert!(check_id("id", "a").is_ok());
        for bad in ["", "0abc", "-a", "a b", "a,b", "a:b"] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bools() {
        for t in ["on", "yes", "true", "y"] {
            assert_eq!(parse_bool("k", t), Ok(true));
        }
        for f in ["off", "no", "false", "n"] {
            assert_eq!(parse_bool("k", f), Ok(false));
        }
        assert!(parse_bool("k", "1").is_err());
    }
}
