//! Scripted HMP sessions run identically on the reference QEMU and on q35dm, and the allow-list
//! check that every difference is known and explained.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// Something that answers HMP command lines.
pub trait Hmp {
    fn hmp(&mut self, line: &str) -> String;
}

impl Hmp for super::qmp_client::Proc {
    fn hmp(&mut self, line: &str) -> String {
        self.qmp.hmp(line)
    }
}

/// Labelled outputs of a session, in order.
#[derive(Default, Debug)]
pub struct Transcript {
    pub steps: Vec<(String, String)>,
}

impl Transcript {
    pub fn record(&mut self, label: impl Into<String>, out: String) {
        self.steps.push((label.into(), out.trim_end().to_string()));
    }
}

/// One allow-list entry: a label glob (`*` matches any run of characters) and its reason.
pub struct Allow {
    pub glob: String,
    pub reason: String,
    pub used: bool,
}

fn glob_match(glob: &str, s: &str) -> bool {
    match glob.split_once('*') {
        None => glob == s,
        Some((head, tail)) => {
            if !s.starts_with(head) {
                return false;
            }
            let rest = &s[head.len()..];
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob_match(tail, &rest[i..]))
        }
    }
}

/// Loads `label-glob <TAB> reason` lines (`#` comments, blank lines ignored). Every entry must
/// have a reason.
pub fn load_allow(path: &Path) -> Vec<Allow> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (g, r) =
                l.split_once('\t').unwrap_or_else(|| panic!("allow-list line without a TAB and reason: {l:?}"));
            assert!(!r.trim().is_empty(), "allow-list entry {g:?} has no reason");
            Allow { glob: g.trim().to_string(), reason: r.trim().to_string(), used: false }
        })
        .collect()
}

/// Compares two transcripts step by step. Returns (allowed differences, unexplained ones);
/// marks allow entries used.
pub fn compare(reference: &Transcript, ours: &Transcript, allow: &mut [Allow]) -> (Vec<String>, Vec<String>) {
    let theirs: BTreeMap<&str, &str> = reference.steps.iter().map(|(l, o)| (l.as_str(), o.as_str())).collect();
    let mut allowed = Vec::new();
    let mut bad = Vec::new();
    assert_eq!(reference.steps.len(), ours.steps.len(), "both sides ran the same script");
    for (label, out) in &ours.steps {
        let q = theirs.get(label.as_str()).copied().unwrap_or("<missing>");
        if q == out {
            continue;
        }
        let line = format!("{label}: qemu={q:?} q35dm={out:?}");
        match allow.iter_mut().find(|a| glob_match(&a.glob, label)) {
            Some(a) => {
                a.used = true;
                allowed.push(format!("{line}  [allowed: {}]", a.reason));
            }
            None => bad.push(line),
        }
    }
    (allowed, bad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::glob_match("mch cfg 0x5*", "mch cfg 0x50 r8"));
        assert!(super::glob_match("*r8", "mch cfg 0x50 r8"));
        assert!(!super::glob_match("lpc*", "mch cfg"));
    }
}
