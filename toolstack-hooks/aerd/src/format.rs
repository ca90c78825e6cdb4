//! The tracefs `format` file of `ras:aer_event`: field layout (offsets, sizes, types) and the
//! `print fmt`, from which the text decoder is built.
//!
//! Layouts seen in the kernel sources (`include/ras/ras_event.h`): until 4.17 the event had
//! `dev_name`, `status`, `severity`; 4.18 added `tlp_header_valid` and `tlp_header[4]`
//! (`dev_name`@8 `__data_loc`, `status`@12 u32, `severity`@16 u8, `tlp_header_valid`@17 u8,
//! `tlp_header`@20 u32[4]) and that record layout is unchanged through 5.10, 6.1 and 6.12; what
//! differs between those kernels' format files is the event `ID`, the signedness the tracing
//! core reports for `__data_loc` fields, and the header array bound (a literal `4`, later
//! `PCIE_STD_MAX_TLP_HEADERLOG`); 2025 patches append a `bus_type` string and change the text
//! to `"%s %s Bus Error: ..."`. Nothing here assumes an offset or a string: both are read from
//! the file.

use std::collections::BTreeMap;

use thiserror::Error;

/// A field of the event record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// C type as printed (`u32`, `unsigned short`, `char[]` for `__data_loc char[]`).
    pub ty: String,
    /// Name (without any `[N]`).
    pub name: String,
    /// Offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Signedness as printed.
    pub signed: bool,
    /// `N` of `name[N]`.
    pub array_len: Option<usize>,
    /// A `__data_loc` (dynamic) field: the record holds `len << 16 | offset`.
    pub data_loc: bool,
}

/// A parsed `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    /// `name:`.
    pub name: String,
    /// `ID:` (the record's `common_type`).
    pub id: u32,
    /// The `common_*` fields.
    pub common: Vec<Field>,
    /// The event's own fields.
    pub fields: Vec<Field>,
    /// The `print fmt:` line (without the prefix).
    pub print_fmt: String,
}

/// A format file or print fmt that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// A line does not parse.
    #[error("format line {line}: {why}: {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
        /// The line (shortened).
        text: String,
    },
    /// A mandatory part is missing.
    #[error("format file has no {0}")]
    Missing(&'static str),
    /// The event lacks a field aerd needs, or it has an unexpected shape.
    #[error("aer_event field {name:?}: {why}")]
    BadField {
        /// The field.
        name: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The print fmt cannot be decoded.
    #[error("print fmt: {0}")]
    PrintFmt(String),
}

fn num_after<'a>(part: &'a str, key: &str) -> Option<&'a str> {
    part.trim().strip_prefix(key).map(str::trim)
}

fn parse_field(line_no: usize, line: &str) -> Result<Field, FormatError> {
    let bad = |why| FormatError::Line { line: line_no, why, text: line.chars().take(120).collect() };
    let body = line.trim().strip_prefix("field:").ok_or_else(|| bad("not a field line"))?;
    let mut parts = body.split(';');
    let decl = parts.next().ok_or_else(|| bad("no declaration"))?.trim();
    let (mut offset, mut size, mut signed) = (None, None, false);
    for p in parts {
        if let Some(v) = num_after(p, "offset:") {
            offset = v.parse::<usize>().ok();
        } else if let Some(v) = num_after(p, "size:") {
            size = v.parse::<usize>().ok();
        } else if let Some(v) = num_after(p, "signed:") {
            signed = v == "1";
        }
    }
    let (offset, size) = (offset.ok_or_else(|| bad("no offset"))?, size.ok_or_else(|| bad("no size"))?);
    let (ty_part, name_part) = decl.rsplit_once(char::is_whitespace).ok_or_else(|| bad("no field name"))?;
    let (name, array_len) = match name_part.split_once('[') {
        Some((n, rest)) => {
            let len = rest.trim_end_matches(']');
            (n.to_string(), Some(len.parse::<usize>().map_err(|_| bad("bad array length"))?))
        }
        None => (name_part.to_string(), None),
    };
    let ty_part = ty_part.trim();
    let (data_loc, ty) = match ty_part.strip_prefix("__data_loc").or_else(|| ty_part.strip_prefix("__rel_loc")) {
        Some(t) => (true, t.trim().to_string()),
        None => (false, ty_part.to_string()),
    };
    if name.is_empty() {
        return Err(bad("empty field name"));
    }
    Ok(Field { ty, name, offset, size, signed, array_len, data_loc })
}

impl EventFormat {
    /// Parses the text of a `format` file.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let (mut name, mut id, mut print_fmt) = (None, None, None);
        let (mut common, mut fields) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if let Some(v) = t.strip_prefix("name:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = t.strip_prefix("ID:") {
                id = Some(v.trim().parse::<u32>().map_err(|_| FormatError::Line {
                    line: i + 1,
                    why: "bad ID",
                    text: t.chars().take(120).collect(),
                })?);
            } else if t.starts_with("field:") {
                let f = parse_field(i + 1, t)?;
                if f.name.starts_with("common_") {
                    common.push(f);
                } else {
                    fields.push(f);
                }
            } else if let Some(v) = t.strip_prefix("print fmt:") {
                print_fmt = Some(v.trim().to_string());
            }
        }
        Ok(Self {
            name: name.ok_or(FormatError::Missing("name"))?,
            id: id.ok_or(FormatError::Missing("ID"))?,
            common,
            fields,
            print_fmt: print_fmt.ok_or(FormatError::Missing("print fmt"))?,
        })
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().chain(&self.common).find(|f| f.name == name)
    }
}

/// Where the AER values sit in a binary record (validated against what aerd understands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AerLayout {
    /// Event ID.
    pub id: u32,
    /// `dev_name` (`__data_loc char[]`).
    pub dev_name: Field,
    /// `status` (4 bytes).
    pub status: Field,
    /// `severity` (1 byte).
    pub severity: Field,
    /// `tlp_header_valid` (1 byte), kernels ≥ 4.18.
    pub tlp_valid: Option<Field>,
    /// `tlp_header` (≥ 4 × u32), kernels ≥ 4.18.
    pub tlp_header: Option<Field>,
    /// Fields aerd does not use (e.g. `bus_type`).
    pub other: Vec<String>,
}

/// A decoded binary record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAer {
    /// `dev_name`.
    pub dev_name: String,
    /// `status`.
    pub status: u32,
    /// `severity`.
    pub severity: u8,
    /// The header, if valid.
    pub header: Option<[u32; 4]>,
}

fn le(rec: &[u8], off: usize, size: usize) -> Option<u64> {
    let b = rec.get(off..off.checked_add(size)?)?;
    Some(b.iter().rev().fold(0u64, |v, x| v << 8 | u64::from(*x)))
}

impl AerLayout {
    /// Checks the fields of an `aer_event` format.
    pub fn from_format(f: &EventFormat) -> Result<Self, FormatError> {
        let get =
            |name: &'static str| f.field(name).cloned().ok_or(FormatError::BadField { name, why: "missing".into() });
        let dev_name = get("dev_name")?;
        if !dev_name.data_loc || dev_name.size != 4 {
            return Err(FormatError::BadField {
                name: "dev_name",
                why: format!("not a __data_loc string: {dev_name:?}"),
            });
        }
        let status = get("status")?;
        if status.size != 4 {
            return Err(FormatError::BadField { name: "status", why: format!("size {}", status.size) });
        }
        let severity = get("severity")?;
        if severity.size != 1 {
            return Err(FormatError::BadField { name: "severity", why: format!("size {}", severity.size) });
        }
        let tlp_valid = f.field("tlp_header_valid").cloned();
        let tlp_header = f.field("tlp_header").cloned();
        if let Some(h) = &tlp_header {
            if h.array_len.is_none_or(|n| n < 4) || h.size < 16 || h.size % 4 != 0 {
                return Err(FormatError::BadField { name: "tlp_header", why: format!("not u32[>=4]: {h:?}") });
            }
        }
        let known = ["dev_name", "status", "severity", "tlp_header_valid", "tlp_header"];
        let other = f.fields.iter().filter(|x| !known.contains(&x.name.as_str())).map(|x| x.name.clone()).collect();
        Ok(Self { id: f.id, dev_name, status, severity, tlp_valid, tlp_header, other })
    }

    /// Decodes one binary record (the bytes after the ring buffer's event header), using the
    /// offsets of the format file. `None` if it is not an aer_event or is truncated.
    pub fn decode_raw(&self, rec: &[u8]) -> Option<RawAer> {
        let ty = le(rec, 0, 2)?;
        if ty != u64::from(self.id) {
            return None;
        }
        let loc = le(rec, self.dev_name.offset, 4)?;
        let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
        let name = rec.get(off..off.checked_add(len)?)?;
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        let status = le(rec, self.status.offset, 4)? as u32;
        let severity = le(rec, self.severity.offset, 1)? as u8;
        let valid = match &self.tlp_valid {
            Some(f) => le(rec, f.offset, 1)? != 0,
            None => false,
        };
        let header = match (&self.tlp_header, valid) {
            (Some(h), true) => {
                let mut w = [0u32; 4];
                for (i, x) in w.iter_mut().enumerate() {
                    *x = le(rec, h.offset + 4 * i, 4)? as u32;
                }
                Some(w)
            }
            _ => None,
        };
        Some(RawAer { dev_name: String::from_utf8_lossy(name).into_owned(), status, severity, header })
    }
}

/// What one `%s` of the print fmt carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `__get_str(dev_name)`.
    DevName,
    /// Another string field (e.g. `bus_type`): one word.
    Word,
    /// The severity text.
    Severity,
    /// The status flags.
    Status,
    /// The TLP header (`{0x..,..}` or the "not available" text).
    Header,
}

/// A piece of the printed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// A value.
    Slot(Slot),
}

/// The decoder built from the print fmt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AerPrintFormat {
    /// The line, piece by piece.
    pub pieces: Vec<Piece>,
    /// Severity text → tracepoint severity value (0 non-fatal, 1 fatal, 2 correctable).
    pub severities: Vec<(String, u8)>,
    /// The severity value whose status bits are correctable ones.
    pub correctable_severity: u8,
    /// Correctable flag names → bits.
    pub cor_flags: BTreeMap<String, u32>,
    /// Uncorrectable flag names → bits.
    pub uncor_flags: BTreeMap<String, u32>,
    /// The text printed when the header is not valid.
    pub no_header: String,
}

/// Splits `s` at top-level commas (outside quotes, parentheses and braces).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    let mut cur = String::new();
    for c in s.chars() {
        if in_str {
            cur.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c);
            }
            '(' | '{' | '[' => {
                depth += 1;
                cur.push(c);
            }
            ')' | '}' | ']' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The C string literals in `s`, unescaped, in order.
fn strings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '"' {
            continue;
        }
        let mut lit = String::new();
        while let Some(c) = it.next() {
            match c {
                '"' => break,
                '\\' => match it.next() {
                    Some('n') => lit.push('\n'),
                    Some('t') => lit.push('\t'),
                    Some(o) => lit.push(o),
                    None => break,
                },
                o => lit.push(o),
            }
        }
        out.push(lit);
    }
    out
}

/// Evaluates a C integer constant expression of the kinds the kernel's macros expand to:
/// literals (hex, octal, decimal, with U/L suffixes), parentheses, `<<`, `>>`, `|`, `+`.
pub fn eval_const(s: &str) -> Option<u64> {
    let toks = tokenize(s)?;
    let mut pos = 0;
    let v = expr_or(&toks, &mut pos)?;
    (pos == toks.len()).then_some(v)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(u64),
    Op(&'static str),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = *b.get(i)?;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b.get(i)?.is_ascii_alphanumeric() {
                i += 1;
            }
            let lit = s.get(start..i)?.trim_end_matches(['u', 'U', 'l', 'L']);
            let v = if let Some(h) = lit.strip_prefix("0x").or_else(|| lit.strip_prefix("0X")) {
                u64::from_str_radix(h, 16).ok()?
            } else if lit.len() > 1 && lit.starts_with('0') {
                u64::from_str_radix(lit.get(1..)?, 8).ok()?
            } else {
                lit.parse().ok()?
            };
            out.push(Tok::Num(v));
        } else {
            let two = s.get(i..i + 2);
            let op = match (two, c) {
                (Some("<<"), _) => "<<",
                (Some(">>"), _) => ">>",
                (_, b'|') => "|",
                (_, b'+') => "+",
                (_, b'(') => "(",
                (_, b')') => ")",
                _ => return None,
            };
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    Some(out)
}

fn expr_or(t: &[Tok], p: &mut usize) -> Option<u64> {
    let mut v = expr_add(t, p)?;
    while t.get(*p) == Some(&Tok::Op("|")) {
        *p += 1;
        v |= expr_add(t, p)?;
    }
    Some(v)
}

fn expr_add(t: &[Tok], p: &mut usize) -> Option<u64> {
    let mut v = expr_shift(t, p)?;
    while t.get(*p) == Some(&Tok::Op("+")) {
        *p += 1;
        v = v.checked_add(expr_shift(t, p)?)?;
    }
    Some(v)
}

fn expr_shift(t: &[Tok], p: &mut usize) -> Option<u64> {
    let mut v = atom(t, p)?;
    loop {
        match t.get(*p) {
            Some(Tok::Op("<<")) => {
                *p += 1;
                let n = u32::try_from(atom(t, p)?).ok().filter(|n| *n < 64)?;
                v = v.checked_shl(n)?;
            }
            Some(Tok::Op(">>")) => {
                *p += 1;
                let n = u32::try_from(atom(t, p)?).ok().filter(|n| *n < 64)?;
                v = v.checked_shr(n)?;
            }
            _ => return Some(v),
        }
    }
}

fn atom(t: &[Tok], p: &mut usize) -> Option<u64> {
    match t.get(*p)? {
        Tok::Num(n) => {
            *p += 1;
            Some(*n)
        }
        Tok::Op("(") => {
            *p += 1;
            let v = expr_or(t, p)?;
            if t.get(*p) != Some(&Tok::Op(")")) {
                return None;
            }
            *p += 1;
            Some(v)
        }
        Tok::Op(_) => None,
    }
}

/// The `{mask, "name"}` pairs of one `__print_flags(...)` / `__print_symbolic(...)` call.
fn table(call: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut rest = call;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        let inner = &rest[start + 1..start + end];
        let parts = split_top(inner);
        if let (Some(v), Some(n)) = (parts.first().and_then(|e| eval_const(e)), strings(inner).into_iter().next()) {
            out.push((v, n));
        }
        rest = &rest[start + end + 1..];
    }
    out
}

/// Finds the argument text of the call `name(` starting in `s` (balanced parentheses).
fn calls<'a>(s: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find(name) {
        let start = from + i + name.len();
        let mut depth = 0i32;
        let mut end = None;
        for (j, c) in s[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + j + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(e) = end else { break };
        out.push(&s[start..e]);
        from = e;
    }
    out
}

fn severity_table(arg: &str) -> Result<Vec<(String, u8)>, FormatError> {
    // __print_symbolic(REC->severity, {0, "..."}, ...)
    if let Some(call) = calls(arg, "__print_symbolic").into_iter().next() {
        let t: Vec<(String, u8)> =
            table(call).into_iter().filter_map(|(v, n)| u8::try_from(v).ok().map(|v| (n, v))).collect();
        if t.is_empty() {
            return Err(FormatError::PrintFmt("severity __print_symbolic without entries".into()));
        }
        return Ok(t);
    }
    // REC->severity == 2 ? "Corrected" : REC->severity == 1 ? "Fatal" : "Uncorrected, non-fatal"
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find("REC->severity") {
        rest = &rest[i + "REC->severity".len()..];
        let Some(r) = rest.trim_start().strip_prefix("==") else { continue };
        let (num, tail) = r.split_once('?').ok_or_else(|| FormatError::PrintFmt("severity ?: without '?'".into()))?;
        let v = eval_const(num).and_then(|v| u8::try_from(v).ok());
        let s = strings(tail).into_iter().next();
        if let (Some(v), Some(s)) = (v, s) {
            out.push((s, v));
        }
        rest = tail;
    }
    let all = strings(arg);
    if let Some(last) = all.last() {
        if !out.iter().any(|(s, _)| s == last) {
            // The final "else" text: every other value; the kernel only uses 0 (AER_NONFATAL).
            let used: Vec<u8> = out.iter().map(|(_, v)| *v).collect();
            let v = (0..=2).find(|v| !used.contains(v)).unwrap_or(0);
            out.push((last.clone(), v));
        }
    }
    if out.is_empty() {
        return Err(FormatError::PrintFmt("no severity strings".into()));
    }
    Ok(out)
}

impl AerPrintFormat {
    /// Builds the decoder from the event's print fmt.
    pub fn from_format(f: &EventFormat) -> Result<Self, FormatError> {
        let pf = f.print_fmt.trim();
        let fmt = strings(pf).into_iter().next().ok_or_else(|| FormatError::PrintFmt("no format string".into()))?;
        // Arguments: everything after the format string literal.
        let close = {
            let mut esc = false;
            let mut idx = None;
            for (i, c) in pf.char_indices().skip(1) {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    idx = Some(i);
                    break;
                }
            }
            idx.ok_or_else(|| FormatError::PrintFmt("unterminated format string".into()))?
        };
        let args = split_top(pf[close + 1..].trim_start_matches([',', ' ']));
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = fmt.chars().peekable();
        let mut n = 0usize;
        let (mut severities, mut cor_flags, mut uncor_flags) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        let (mut correctable_severity, mut no_header) = (2u8, "Not available".to_string());
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                lit.push('%');
                continue;
            }
            // Skip flags/width/length up to the conversion letter.
            let mut conv = None;
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() && !matches!(d, 'l' | 'h' | 'z') {
                    conv = Some(d);
                    break;
                }
            }
            if conv != Some('s') {
                return Err(FormatError::PrintFmt(format!("conversion %{} not supported", conv.unwrap_or('?'))));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            let arg = args.get(n).ok_or_else(|| FormatError::PrintFmt("fewer arguments than %s".into()))?;
            n += 1;
            let slot = if arg.contains("__get_str(dev_name)") {
                Slot::DevName
            } else if arg.contains("__print_flags") {
                let fl = calls(arg, "__print_flags");
                let (Some(a), Some(b)) = (fl.first(), fl.get(1)) else {
                    return Err(FormatError::PrintFmt("status needs a correctable and an uncorrectable table".into()));
                };
                // "REC->severity == 2 ? __print_flags(cor) : __print_flags(uncor)".
                if let Some(cond) = arg.split('?').next().and_then(|c| c.split("==").nth(1)) {
                    correctable_severity = eval_const(cond).and_then(|v| u8::try_from(v).ok()).unwrap_or(2);
                }
                for (v, name) in table(a) {
                    cor_flags.insert(name, u32::try_from(v).unwrap_or(0));
                }
                for (v, name) in table(b) {
                    uncor_flags.insert(name, u32::try_from(v).unwrap_or(0));
                }
                Slot::Status
            } else if arg.contains("REC->severity") {
                severities = severity_table(arg)?;
                Slot::Severity
            } else if arg.contains("tlp_header") {
                if let Some(s) = strings(arg).into_iter().next() {
                    no_header = s;
                }
                Slot::Header
            } else {
                Slot::Word
            };
            pieces.push(Piece::Slot(slot));
        }
        let lit = lit.trim_end_matches(['\n', ' ']).to_string();
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        for need in [Slot::DevName, Slot::Severity, Slot::Status] {
            if !pieces.contains(&Piece::Slot(need.clone())) {
                return Err(FormatError::PrintFmt(format!("no {need:?} in {fmt:?}")));
            }
        }
        if cor_flags.is_empty() || uncor_flags.is_empty() {
            return Err(FormatError::PrintFmt("empty status flag tables".into()));
        }
        // Longest first, so "Uncorrected, non-fatal" is tried before a shorter prefix.
        severities.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Ok(Self { pieces, severities, correctable_severity, cor_flags, uncor_flags, no_header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_expressions() {
        assert_eq!(eval_const("0x00000040"), Some(0x40));
        assert_eq!(eval_const("(1UL << 6)"), Some(0x40));
        assert_eq!(eval_const("((((1UL))) << (12))"), Some(0x1000));
        assert_eq!(eval_const("0x1 | 0x2"), Some(3));
        assert_eq!(eval_const("010"), Some(8));
        assert_eq!(eval_const("1 << 64"), None);
        assert_eq!(eval_const("foo"), None);
        assert_eq!(eval_const("(1"), None);
    }

    #[test]
    fn field_lines() {
        let f = parse_field(1, "\tfield:__data_loc char[] dev_name;\toffset:8;\tsize:4;\tsigned:1;").unwrap();
        assert_eq!((f.name.as_str(), f.ty.as_str(), f.offset, f.size, f.data_loc), ("dev_name", "char[]", 8, 4, true));
        let f = parse_field(1, "\tfield:u32 tlp_header[4];\toffset:20;\tsize:16;\tsigned:0;").unwrap();
        assert_eq!((f.array_len, f.size), (Some(4), 16));
        assert!(parse_field(3, "\tfield:u32 x;\tsize:4;").unwrap_err().to_string().contains("line 3"));
    }
}
