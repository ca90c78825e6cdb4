//! The AER error name table (QEMU's, which is the Linux aer-inject naming) and the parser for
//! both `pcie_aer_inject_error` argument syntaxes:
//!
//! - QEMU: `[-a] [-c] ID ERR [hdr0 [hdr1 [hdr2 [hdr3 [pfx0 [pfx1 [pfx2 [pfx3]]]]]]]]`
//!   (/work/shared/reference/pcie-spec.md §6.6). `ERR` is an error name or a number; with a
//!   number `-c` makes it correctable; with a name `-c` is an error. The header is valid if
//!   `hdr0` is given, the prefix present if `pfx0` is given; missing words are 0.
//! - Original: `[[domain:]bus:]dev.fn is_correctable error_status hdr0 hdr1 hdr2 hdr3
//!   [pfx0 [pfx1 [pfx2 [pfx3]]]]`, `is_correctable` being `0`/`1` (or `false`/`true`), the four
//!   header words mandatory.
//!
//! Telling them apart: the original form is used when no flag is given, the first word parses as
//! a PCI address and the second is `0`, `1`, `false` or `true`. No valid QEMU-form command looks
//! like that (0 names no error; 1 is bit 0, which is not a supported uncorrectable error, and a
//! correctable one would need `-c`).
//!
//! Decisions:
//! - **Several errors at once**: `ERR` may be a comma-separated list of names and numbers
//!   (`MALF_TLP,ECRC` or `0x40000,BAD_TLP`), and a number with several bits means one error per
//!   bit, in ascending bit order. Names carry their own class (so a list may mix correctable and
//!   uncorrectable names); numbers take the class from `-c` / `is_correctable`. All errors share
//!   the header/prefix words and the `-a` flag. At most [`MAX_ERRORS_PER_INJECTION`] errors.
//! - Names are matched case-insensitively. Numbers follow C `strtoul(..., 0)`: `0x` hex, a
//!   leading `0` octal, else decimal.
//! - In the QEMU form a target word that parses as a PCI address *and* contains `:` is an
//!   address (QEMU device IDs cannot contain `:`); anything else is a device ID.
//! - In the original form a name whose class contradicts `is_correctable` is an error.

use std::fmt;

use thiserror::Error;

use crate::pci::Sbdf;
use crate::pcie::aer::{cor, uncor, AerErrorSpec, MAX_ERRORS_PER_INJECTION};

/// Uncorrectable error names, in bit order.
pub const UNCOR_ERROR_NAMES: [(&str, u32); 16] = [
    ("DLP", uncor::DLP),
    ("SDN", uncor::SDN),
    ("POISON_TLP", uncor::POISON_TLP),
    ("FCP", uncor::FCP),
    ("COMP_TIME", uncor::COMP_TIME),
    ("COMP_ABORT", uncor::COMP_ABORT),
    ("UNX_COMP", uncor::UNX_COMP),
    ("RX_OVER", uncor::RX_OVER),
    ("MALF_TLP", uncor::MALF_TLP),
    ("ECRC", uncor::ECRC),
    ("UNSUP", uncor::UNSUP),
    ("ACSV", uncor::ACSV),
    ("INTN", uncor::INTN),
    ("MCBTLP", uncor::MCBTLP),
    ("ATOP_EBLOCKED", uncor::ATOP_EBLOCKED),
    ("TLP_PRF_BLOCKED", uncor::TLP_PRF_BLOCKED),
];

/// Correctable error names, in bit order.
pub const COR_ERROR_NAMES: [(&str, u32); 8] = [
    ("RCVR", cor::RCVR),
    ("BAD_TLP", cor::BAD_TLP),
    ("BAD_DLLP", cor::BAD_DLLP),
    ("REP_ROLL", cor::REP_ROLL),
    ("REP_TIMER", cor::REP_TIMER),
    ("ADV_NONFATAL", cor::ADV_NONFATAL),
    ("INTERNAL", cor::INTERNAL),
    ("HL_OVERFLOW", cor::HL_OVERFLOW),
];

/// `(bit, correctable)` for an error name (case-insensitive).
pub fn lookup_error_name(name: &str) -> Option<(u32, bool)> {
    let find = |table: &[(&str, u32)]| table.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, b)| *b);
    find(&UNCOR_ERROR_NAMES).map(|b| (b, false)).or_else(|| find(&COR_ERROR_NAMES).map(|b| (b, true)))
}

/// The name of a single error bit.
pub fn error_name(bit: u32, correctable: bool) -> Option<&'static str> {
    let table: &[(&'static str, u32)] = if correctable { &COR_ERROR_NAMES } else { &UNCOR_ERROR_NAMES };
    table.iter().find(|(_, b)| *b == bit).map(|(n, _)| *n)
}

/// Which function to inject into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AerTarget {
    /// A device ID (`-device ...,id=X`).
    Id(String),
    /// A PCI address.
    Sbdf(Sbdf),
}

impl fmt::Display for AerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AerTarget::Id(id) => f.write_str(id),
            AerTarget::Sbdf(s) => write!(f, "{s}"),
        }
    }
}

/// Which syntax a command used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectSyntax {
    /// `[-a] [-c] ID ERR [hdr... [pfx...]]`.
    Qemu,
    /// `[[domain:]bus:]dev.fn is_correctable error_status hdr0..hdr3 [pfx...]`.
    Original,
}

/// A parsed injection command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AerInjection {
    /// Target function.
    pub target: AerTarget,
    /// Errors to inject, in order (1..=32).
    pub errors: Vec<AerErrorSpec>,
    /// Syntax used.
    pub syntax: InjectSyntax,
}

/// Parse errors (each names the offending word).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AerParseError {
    /// Nothing given.
    #[error("missing device and error status")]
    Empty,
    /// No error status after the target.
    #[error("missing error status after {0:?}")]
    MissingError(String),
    /// An unknown `-x` flag.
    #[error("unknown flag {0:?} (expected -a or -c)")]
    UnknownFlag(String),
    /// Neither a known error name nor a number.
    #[error("invalid error status {0:?}: not an error name or a number")]
    BadStatus(String),
    /// `-c` with an error name.
    #[error("-c is only valid with a numeric error status, not {0:?}")]
    CorrectableWithName(String),
    /// Original form: a name whose class contradicts `is_correctable`.
    #[error("error {name:?} is {}, but is_correctable says otherwise", if *correctable { "correctable" } else { "uncorrectable" })]
    ClassMismatch {
        /// The name.
        name: String,
        /// Its real class.
        correctable: bool,
    },
    /// A number naming no error bit.
    #[error("error status {0:?} has no error bit set")]
    NoErrorBits(String),
    /// A number with unsupported bits.
    #[error("error status {value:?}: bits {bits:#010x} are not supported {} errors", if *correctable { "correctable" } else { "uncorrectable" })]
    UnsupportedBits {
        /// The word.
        value: String,
        /// The unsupported bits.
        bits: u32,
        /// Class used.
        correctable: bool,
    },
    /// More errors than one injection allows.
    #[error("{0} errors in one injection (max 32)")]
    TooManyErrors(usize),
    /// A header/prefix word that is not a 32-bit number.
    #[error("invalid {what} word {value:?}: not a 32-bit number")]
    BadWord {
        /// "header" or "prefix".
        what: &'static str,
        /// The word.
        value: String,
    },
    /// More than 8 header/prefix words.
    #[error("{0} header/prefix words given (max 4 + 4)")]
    TooManyWords(usize),
    /// Original form with fewer than 4 header words.
    #[error("the original syntax needs 4 header words, {0} given")]
    MissingHeader(usize),
}

/// Parses a number like C `strtoul(s, .., 0)`: `0x`/`0X` hex, leading `0` octal, else decimal.
pub fn parse_u32(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (s.get(1..)?, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

fn split_bits(word: &str, value: u32, correctable: bool, out: &mut Vec<(u32, bool)>) -> Result<(), AerParseError> {
    if value == 0 {
        return Err(AerParseError::NoErrorBits(word.to_string()));
    }
    let supported = if correctable { cor::SUPPORTED } else { uncor::SUPPORTED };
    if value & !supported != 0 {
        return Err(AerParseError::UnsupportedBits { value: word.to_string(), bits: value & !supported, correctable });
    }
    out.extend((0..32).map(|i| 1u32 << i).filter(|b| value & b != 0).map(|b| (b, correctable)));
    Ok(())
}

/// The class a status word's names must have (original form) or `None` (QEMU form, where names
/// decide and `-c` with a name is an error).
enum NameRule {
    Qemu { c_flag: bool },
    Original { correctable: bool },
}

fn parse_status(word: &str, rule: &NameRule) -> Result<Vec<(u32, bool)>, AerParseError> {
    let mut out = Vec::new();
    for item in word.split(',') {
        if let Some((bit, class)) = lookup_error_name(item) {
            match rule {
                NameRule::Qemu { c_flag: true } => return Err(AerParseError::CorrectableWithName(item.to_string())),
                NameRule::Original { correctable } if *correctable != class => {
                    return Err(AerParseError::ClassMismatch { name: item.to_string(), correctable: class });
                }
                _ => out.push((bit, class)),
            }
        } else {
            let value = parse_u32(item).ok_or_else(|| AerParseError::BadStatus(item.to_string()))?;
            let correctable = match rule {
                NameRule::Qemu { c_flag } => *c_flag,
                NameRule::Original { correctable } => *correctable,
            };
            split_bits(item, value, correctable, &mut out)?;
        }
        if out.len() > MAX_ERRORS_PER_INJECTION {
            return Err(AerParseError::TooManyErrors(out.len()));
        }
    }
    Ok(out)
}

/// TLP header and prefix words, each present or not.
type TlpWords = (Option<[u32; 4]>, Option<[u32; 4]>);

fn parse_words(words: &[&str]) -> Result<TlpWords, AerParseError> {
    if words.len() > 8 {
        return Err(AerParseError::TooManyWords(words.len()));
    }
    let mut vals = [0u32; 8];
    for (i, (slot, w)) in vals.iter_mut().zip(words).enumerate() {
        let what = if i < 4 { "header" } else { "prefix" };
        *slot = parse_u32(w).ok_or_else(|| AerParseError::BadWord { what, value: (*w).to_string() })?;
    }
    let [h0, h1, h2, h3, p0, p1, p2, p3] = vals;
    let header = (!words.is_empty()).then_some([h0, h1, h2, h3]);
    let prefix = (words.len() > 4).then_some([p0, p1, p2, p3]);
    Ok((header, prefix))
}

fn correctable_word(w: &str) -> Option<bool> {
    match w {
        "0" => Some(false),
        "1" => Some(true),
        _ if w.eq_ignore_ascii_case("false") => Some(false),
        _ if w.eq_ignore_ascii_case("true") => Some(true),
        _ => None,
    }
}

fn build(
    target: AerTarget,
    errors: Vec<(u32, bool)>,
    advisory: bool,
    (header, prefix): TlpWords,
    syntax: InjectSyntax,
) -> AerInjection {
    let errors = errors
        .into_iter()
        .map(|(status, correctable)| AerErrorSpec { status, correctable, advisory, header, prefix })
        .collect();
    AerInjection { target, errors, syntax }
}

/// Parses the arguments of `pcie_aer_inject_error` (either syntax, see the module docs).
pub fn parse_aer_injection(args: &str) -> Result<AerInjection, AerParseError> {
    let words: Vec<&str> = args.split_whitespace().collect();
    parse_aer_injection_words(&words)
}

/// Like [`parse_aer_injection`], on words already split.
pub fn parse_aer_injection_words(words: &[&str]) -> Result<AerInjection, AerParseError> {
    let (mut advisory, mut c_flag) = (false, false);
    let mut rest = words;
    while let Some((first, tail)) = rest.split_first() {
        if !first.starts_with('-') {
            break;
        }
        match *first {
            "-a" => advisory = true,
            "-c" => c_flag = true,
            other => return Err(AerParseError::UnknownFlag(other.to_string())),
        }
        rest = tail;
    }
    let flagged = rest.len() != words.len();
    let (target_word, rest) = rest.split_first().ok_or(AerParseError::Empty)?;
    let (status_word, rest) =
        rest.split_first().ok_or_else(|| AerParseError::MissingError((*target_word).to_string()))?;
    let address = target_word.parse::<Sbdf>().ok();

    if let (false, Some(sbdf), Some(correctable)) = (flagged, address, correctable_word(status_word)) {
        let (err_word, hdr_words) =
            rest.split_first().ok_or_else(|| AerParseError::MissingError((*status_word).to_string()))?;
        if hdr_words.len() < 4 {
            return Err(AerParseError::MissingHeader(hdr_words.len()));
        }
        let errors = parse_status(err_word, &NameRule::Original { correctable })?;
        let words = parse_words(hdr_words)?;
        return Ok(build(AerTarget::Sbdf(sbdf), errors, false, words, InjectSyntax::Original));
    }

    let target = match address {
        Some(sbdf) if target_word.contains(':') => AerTarget::Sbdf(sbdf),
        _ => AerTarget::Id((*target_word).to_string()),
    };
    let errors = parse_status(status_word, &NameRule::Qemu { c_flag })?;
    let words = parse_words(rest)?;
    Ok(build(target, errors, advisory, words, InjectSyntax::Qemu))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(status: u32, correctable: bool) -> AerErrorSpec {
        AerErrorSpec { status, correctable, advisory: false, header: None, prefix: None }
    }

    #[test]
    fn name_table_covers_every_supported_bit_once() {
        let u = UNCOR_ERROR_NAMES.iter().fold(0, |acc, (_, b)| {
            assert_eq!(acc & b, 0);
            acc | b
        });
        assert_eq!(u, uncor::SUPPORTED);
        let c = COR_ERROR_NAMES.iter().fold(0, |acc, (_, b)| {
            assert_eq!(acc & b, 0);
            acc | b
        });
        assert_eq!(c, cor::SUPPORTED);
        assert_eq!(lookup_error_name("malf_tlp"), Some((uncor::MALF_TLP, false)));
        assert_eq!(lookup_error_name("HL_OVERFLOW"), Some((cor::HL_OVERFLOW, true)));
        assert_eq!(lookup_error_name("TRAIN"), None);
        assert_eq!(error_name(uncor::UNSUP, false), Some("UNSUP"));
        assert_eq!(error_name(cor::RCVR, true), Some("RCVR"));
        assert_eq!(error_name(cor::RCVR, false), None);
    }

    #[test]
    fn qemu_syntax_with_name() {
        let inj = parse_aer_injection("rp1 MALF_TLP").expect("parse");
        assert_eq!(inj.target, AerTarget::Id("rp1".into()));
        assert_eq!(inj.errors, vec![one(uncor::MALF_TLP, false)]);
        assert_eq!(inj.syntax, InjectSyntax::Qemu);
        let inj = parse_aer_injection("nic0 BAD_TLP").expect("parse");
        assert_eq!(inj.errors, vec![one(cor::BAD_TLP, true)], "name decides the class");
    }

    #[test]
    fn qemu_syntax_with_number_and_flags() {
        let inj = parse_aer_injection("-a -c dev 0x40").expect("parse");
        assert_eq!(inj.errors, vec![AerErrorSpec { advisory: true, ..one(cor::BAD_TLP, true) }]);
        let inj = parse_aer_injection("dev 0x100000").expect("parse");
        assert_eq!(inj.errors, vec![one(uncor::UNSUP, false)]);
        let inj = parse_aer_injection("dev 010000").expect("octal");
        assert_eq!(inj.errors, vec![one(uncor::POISON_TLP, false)]);
        let inj = parse_aer_injection("dev 4096").expect("decimal");
        assert_eq!(inj.errors, vec![one(uncor::POISON_TLP, false)]);
    }

    #[test]
    fn qemu_syntax_c_with_name_is_an_error() {
        assert_eq!(parse_aer_injection("-c dev RCVR"), Err(AerParseError::CorrectableWithName("RCVR".into())));
    }

    #[test]
    fn qemu_syntax_header_and_prefix_words() {
        let inj = parse_aer_injection("dev ECRC 1 2 3 4 5 6").expect("parse");
        let e = inj.errors.first().copied().expect("one");
        assert_eq!(e.header, Some([1, 2, 3, 4]));
        assert_eq!(e.prefix, Some([5, 6, 0, 0]));
        let inj = parse_aer_injection("dev ECRC 0xa").expect("parse");
        assert_eq!(inj.errors.first().and_then(|e| e.header), Some([0xa, 0, 0, 0]), "QEMU pads missing words");
        assert_eq!(inj.errors.first().and_then(|e| e.prefix), None);
        let inj = parse_aer_injection("dev ECRC").expect("parse");
        assert_eq!(inj.errors.first().and_then(|e| e.header), None);
        assert_eq!(parse_aer_injection("dev ECRC 1 2 3 4 5 6 7 8 9"), Err(AerParseError::TooManyWords(9)));
        assert_eq!(
            parse_aer_injection("dev ECRC 1 zz"),
            Err(AerParseError::BadWord { what: "header", value: "zz".into() })
        );
        assert_eq!(
            parse_aer_injection("dev ECRC 1 2 3 4 -5"),
            Err(AerParseError::BadWord { what: "prefix", value: "-5".into() })
        );
        assert!(matches!(parse_aer_injection("dev ECRC 0x100000000"), Err(AerParseError::BadWord { .. })));
    }

    #[test]
    fn qemu_syntax_target_address_needs_a_colon() {
        let inj = parse_aer_injection("0000:03:00.0 ECRC").expect("parse");
        assert_eq!(inj.target, AerTarget::Sbdf(Sbdf::new(0, 3, 0, 0)));
        let inj = parse_aer_injection("03:00.0 ECRC").expect("parse");
        assert_eq!(inj.target, AerTarget::Sbdf(Sbdf::new(0, 3, 0, 0)));
        let inj = parse_aer_injection("a.0 ECRC").expect("parse");
        assert_eq!(inj.target, AerTarget::Id("a.0".into()));
        assert_eq!(inj.target.to_string(), "a.0");
        assert_eq!(AerTarget::Sbdf(Sbdf::new(0, 3, 0, 0)).to_string(), "0000:03:00.0");
    }

    #[test]
    fn several_errors_from_bits_and_lists() {
        let inj = parse_aer_injection("dev 0x00041000").expect("bits");
        assert_eq!(inj.errors, vec![one(uncor::POISON_TLP, false), one(uncor::MALF_TLP, false)]);
        let inj = parse_aer_injection("dev MALF_TLP,bad_tlp,0x80000 1 2 3 4").expect("list");
        let got: Vec<(u32, bool)> = inj.errors.iter().map(|e| (e.status, e.correctable)).collect();
        assert_eq!(got, vec![(uncor::MALF_TLP, false), (cor::BAD_TLP, true), (uncor::ECRC, false)]);
        assert!(inj.errors.iter().all(|e| e.header == Some([1, 2, 3, 4])));
        let many = vec!["RCVR"; 33].join(",");
        assert_eq!(parse_aer_injection(&format!("dev {many}")), Err(AerParseError::TooManyErrors(33)));
        let thirty_two = vec!["RCVR"; 32].join(",");
        assert_eq!(parse_aer_injection(&format!("dev {thirty_two}")).map(|i| i.errors.len()), Ok(32));
    }

    #[test]
    fn bad_status_words_are_named() {
        assert_eq!(parse_aer_injection("dev NOPE"), Err(AerParseError::BadStatus("NOPE".into())));
        assert_eq!(parse_aer_injection("dev 0x0"), Err(AerParseError::NoErrorBits("0x0".into())));
        let e = parse_aer_injection("dev 0x3").expect_err("bits");
        assert_eq!(e, AerParseError::UnsupportedBits { value: "0x3".into(), bits: 3, correctable: false });
        assert_eq!(e.to_string(), "error status \"0x3\": bits 0x00000003 are not supported uncorrectable errors");
        assert!(matches!(parse_aer_injection("-c dev 0x10000"), Err(AerParseError::UnsupportedBits { .. })));
        assert_eq!(parse_aer_injection("dev ,"), Err(AerParseError::BadStatus(String::new())));
    }

    #[test]
    fn missing_words_and_flags() {
        assert_eq!(parse_aer_injection(""), Err(AerParseError::Empty));
        assert_eq!(parse_aer_injection("-a"), Err(AerParseError::Empty));
        assert_eq!(parse_aer_injection("dev"), Err(AerParseError::MissingError("dev".into())));
        assert_eq!(parse_aer_injection("-x dev ECRC"), Err(AerParseError::UnknownFlag("-x".into())));
    }

    #[test]
    fn original_syntax_is_recognized() {
        let inj = parse_aer_injection("00:1c.0 0 0x40000 0x4a000001 2 3 4").expect("parse");
        assert_eq!(inj.syntax, InjectSyntax::Original);
        assert_eq!(inj.target, AerTarget::Sbdf(Sbdf::new(0, 0, 0x1c, 0)));
        assert_eq!(
            inj.errors,
            vec![AerErrorSpec { header: Some([0x4a00_0001, 2, 3, 4]), ..one(uncor::MALF_TLP, false) }]
        );
        let inj = parse_aer_injection("0001:02:03.4 1 0x41 1 2 3 4 5 6 7 8").expect("parse");
        assert_eq!(inj.target, AerTarget::Sbdf(Sbdf::new(1, 2, 3, 4)));
        let got: Vec<u32> = inj.errors.iter().map(|e| e.status).collect();
        assert_eq!(got, vec![cor::RCVR, cor::BAD_TLP]);
        assert!(inj.errors.iter().all(|e| e.correctable && e.prefix == Some([5, 6, 7, 8])));
        let inj = parse_aer_injection("3.0 true BAD_DLLP 0 0 0 0").expect("name");
        assert_eq!(inj.errors.first().map(|e| e.status), Some(cor::BAD_DLLP));
    }

    #[test]
    fn original_syntax_requires_four_header_words() {
        assert_eq!(parse_aer_injection("00:1c.0 0 0x40000 1 2 3"), Err(AerParseError::MissingHeader(3)));
        assert_eq!(parse_aer_injection("00:1c.0 0"), Err(AerParseError::MissingError("0".into())));
    }

    #[test]
    fn original_syntax_name_class_must_match() {
        let e = parse_aer_injection("00:1c.0 1 MALF_TLP 0 0 0 0").expect_err("class");
        assert_eq!(e, AerParseError::ClassMismatch { name: "MALF_TLP".into(), correctable: false });
        assert!(e.to_string().contains("uncorrectable"), "{e}");
    }

    #[test]
    fn flags_force_the_qemu_syntax() {
        // With -c, "1" is the RCVR bit of the QEMU form, not is_correctable.
        let inj = parse_aer_injection("-c 00:1c.0 1").expect("parse");
        assert_eq!(inj.syntax, InjectSyntax::Qemu);
        assert_eq!(inj.errors, vec![one(cor::RCVR, true)]);
    }

    #[test]
    fn parse_u32_follows_strtoul_base_zero() {
        assert_eq!(parse_u32("0"), Some(0));
        assert_eq!(parse_u32("0x1F"), Some(31));
        assert_eq!(parse_u32("0X10"), Some(16));
        assert_eq!(parse_u32("017"), Some(15));
        assert_eq!(parse_u32("42"), Some(42));
        assert_eq!(parse_u32("0x"), None);
        assert_eq!(parse_u32("08"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("+1"), None);
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32(""), None);
    }

    #[test]
    fn random_words_never_panic() {
        let vocab =
            ["-a", "-c", "-z", "dev", "00:1c.0", "3.0", "0", "1", "0x40000", "ECRC", "RCVR,ECRC", "x", ",", "017"];
        let mut x: u64 = 0x1357_9bdf_2468_ace0;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 12) as usize;
            let words: Vec<&str> = (0..n).map(|i| vocab[((x >> (i * 4)) % vocab.len() as u64) as usize]).collect();
            if let Ok(inj) = parse_aer_injection_words(&words) {
                assert!(!inj.errors.is_empty() && inj.errors.len() <= MAX_ERRORS_PER_INJECTION);
                assert!(inj.errors.iter().all(|e| e.validate().is_ok()), "{words:?}");
            }
        }
    }
}
