//! Address-range maps: which handler owns which port, MMIO or config-space range.
//!
//! A [`RangeMap`] is a `BTreeMap` keyed by range start, so lookup is `O(log n)`; ranges never
//! overlap (insertion refuses overlap with a typed error naming both ranges). An access hits a
//! range only when it lies entirely inside it.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// An inclusive address range `[start, end]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Range {
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
}

impl Range {
    /// `[start, start+len-1]`; `None` for an empty or overflowing range.
    pub fn new(start: u64, len: u64) -> Option<Self> {
        let end = start.checked_add(len.checked_sub(1)?)?;
        Some(Self { start, end })
    }

    /// `[start, end]`; `None` if `end < start`.
    pub fn inclusive(start: u64, end: u64) -> Option<Self> {
        (end >= start).then_some(Self { start, end })
    }

    /// Number of addresses, saturating at `u64::MAX`.
    pub fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }

    /// Never true: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `[addr, addr+size-1]` lies inside.
    pub fn contains_access(&self, addr: u64, size: u64) -> bool {
        match size.checked_sub(1).and_then(|s| addr.checked_add(s)) {
            Some(last) => addr >= self.start && last <= self.end,
            None => false,
        }
    }

    /// Whether two ranges share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Errors of range-map updates.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps an existing one.
    #[error("range {new} overlaps {existing} (owned by {owner})")]
    Overlap {
        /// Range being inserted.
        new: Range,
        /// Range already present.
        existing: Range,
        /// Description of the existing owner.
        owner: String,
    },
    /// No range starts at the given address.
    #[error("no range registered at {0:#x}")]
    NotFound(u64),
}

/// A map from non-overlapping ranges to values.
#[derive(Clone, Debug)]
pub struct RangeMap<T> {
    map: BTreeMap<u64, (Range, T)>,
}

impl<T> Default for RangeMap<T> {
    fn default() -> Self {
        Self { map: BTreeMap::new() }
    }
}

impl<T: fmt::Debug> RangeMap<T> {
    /// Inserts `range → value`, refusing overlap.
    pub fn insert(&mut self, range: Range, value: T) -> Result<(), BusError> {
        if let Some((r, v)) = self.first_overlap(&range) {
            return Err(BusError::Overlap { new: range, existing: *r, owner: format!("{v:?}") });
        }
        self.map.insert(range.start, (range, value));
        Ok(())
    }
}

impl<T> RangeMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry whose range contains `addr`.
    pub fn find(&self, addr: u64) -> Option<(Range, &T)> {
        let (_, (r, v)) = self.map.range(..=addr).next_back()?;
        (addr <= r.end).then_some((*r, v))
    }

    /// The entry whose range contains the whole access `[addr, addr+size-1]`.
    pub fn find_access(&self, addr: u64, size: u64) -> Option<(Range, &T)> {
        let (r, v) = self.find(addr)?;
        r.contains_access(addr, size).then_some((r, v))
    }

    /// Mutable variant of [`RangeMap::find_access`].
    pub fn find_access_mut(&mut self, addr: u64, size: u64) -> Option<(Range, &mut T)> {
        let (_, (r, v)) = self.map.range_mut(..=addr).next_back()?;
        r.contains_access(addr, size).then_some((*r, v))
    }

    /// The first existing range overlapping `range`.
    pub fn first_overlap(&self, range: &Range) -> Option<(&Range, &T)> {
        // Candidates: the range starting at or before range.end with the greatest start, and any
        // range starting inside [range.start, range.end].
        if let Some((_, (r, v))) = self.map.range(..=range.end).next_back() {
            if r.overlaps(range) {
                return Some((r, v));
            }
        }
        None
    }

    /// Removes the range starting at `start`.
    pub fn remove(&mut self, start: u64) -> Result<(Range, T), BusError> {
        self.map.remove(&start).ok_or(BusError::NotFound(start))
    }

    /// Removes every entry for which `f` is true, returning them.
    pub fn remove_where(&mut self, mut f: impl FnMut(&Range, &T) -> bool) -> Vec<(Range, T)> {
        let keys: Vec<u64> = self.map.iter().filter(|(_, (r, v))| f(r, v)).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| self.map.remove(&k)).collect()
    }

    /// Iterates in address order.
    pub fn iter(&self) -> impl Iterator<Item = (Range, &T)> {
        self.map.values().map(|(r, v)| (*r, v))
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> Range {
        Range::inclusive(s, e).expect("range")
    }

    #[test]
    fn find_requires_whole_access_inside() {
        let mut m = RangeMap::new();
        m.insert(r(0x10, 0x1f), "a").expect("insert");
        m.insert(r(0x20, 0x2f), "b").expect("insert");
        assert_eq!(m.find_access(0x1c, 4).map(|x| *x.1), Some("a"));
        assert_eq!(m.find_access(0x1e, 4), None, "straddles a and b");
        assert_eq!(m.find_access(0x2f, 1).map(|x| *x.1), Some("b"));
        assert_eq!(m.find_access(0x30, 1), None);
        assert_eq!(m.find_access(0x0f, 1), None);
        assert_eq!(m.find_access(u64::MAX, 2), None, "overflowing access");
    }

    #[test]
    fn overlap_is_refused_and_named() {
        let mut m = RangeMap::new();
        m.insert(r(0x100, 0x1ff), "dev").expect("insert");
        for bad in [r(0x1ff, 0x200), r(0x0, 0x100), r(0x150, 0x160), r(0x0, 0x1000)] {
            let e = m.insert(bad, "x").expect_err("overlap");
            assert!(e.to_string().contains("dev"), "{e}");
        }
        m.insert(r(0x200, 0x2ff), "next").expect("adjacent is fine");
        assert_eq!(m.len(), 2);
        assert!(m.remove(0x100).is_ok());
        assert_eq!(m.remove(0x100), Err(BusError::NotFound(0x100)));
    }

    #[test]
    fn range_constructors_reject_empty_and_overflow() {
        assert!(Range::new(0, 0).is_none());
        assert!(Range::new(u64::MAX, 2).is_none());
        assert_eq!(Range::new(u64::MAX, 1).map(|r| r.len()), Some(1));
        assert!(Range::inclusive(5, 4).is_none());
    }
}
