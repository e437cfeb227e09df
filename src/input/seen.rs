//! The client ids an input has shown so far and the line where each first
//! appeared, for the rule that an id may appear only once — in about five
//! bytes per row, so that memory stays nearly flat however long the file.
//!
//! Membership is a plain bit array for ids below 2^22 (at most 512 KiB,
//! grown only as far as the largest such id seen: a bit test is a fraction
//! of a compressed bitmap's search, which perf put at an eighth of a dry
//! run's reader), and a compressed bitmap for the others. The line of a first appearance is only
//! needed when a duplicate turns up, which is rare: it is found by scanning
//! the ids in the order they came, and once duplicates are common an index
//! is built so that each further one costs O(1).

use std::collections::HashMap;

use roaring::{RoaringBitmap, RoaringTreemap};

/// Linear scans allowed before building an index.
const SCANS_BEFORE_INDEX: u32 = 64;
/// Lines are stored as small deltas, with an absolute line every this many.
const BLOCK: usize = 256;
/// Marks an id in `order` that does not fit in 32 bits (kept in `wide`).
const WIDE: u32 = u32::MAX;
/// Ids below this are kept in `dense`.
const DENSE_IDS: u64 = 1 << 22;

#[derive(Debug, Default)]
pub struct SeenIds {
    /// Ids below [`DENSE_IDS`], one bit each.
    dense: Vec<u64>,
    /// Other ids that fit in 32 bits: a plain bitmap, without the map from the
    /// high 32 bits that the treemap looks up first (most ids fit).
    members: RoaringBitmap,
    /// The other ids.
    wide_members: RoaringTreemap,
    /// Ids in the order first seen.
    order: Vec<u32>,
    /// `(position, id)` for ids that do not fit in `order`.
    wide: Vec<(usize, u64)>,
    lines: LineLog,
    index: Option<HashMap<u64, u64>>,
    scans: u32,
}

impl SeenIds {
    /// Notes that `id` is on `line`. Returns the line where it first
    /// appeared when it was seen before.
    pub fn first_seen(&mut self, id: u64, line: u64) -> Option<u64> {
        let new = if id < DENSE_IDS {
            let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
            if word >= self.dense.len() {
                self.dense.resize(word + 1, 0);
            }
            let new = self.dense[word] & bit == 0;
            self.dense[word] |= bit;
            new
        } else {
            match u32::try_from(id) {
                Ok(narrow) => self.members.insert(narrow),
                Err(_) => self.wide_members.insert(id),
            }
        };
        if new {
            match u32::try_from(id) {
                Ok(narrow) if narrow != WIDE => self.order.push(narrow),
                _ => {
                    self.wide.push((self.order.len(), id));
                    self.order.push(WIDE);
                }
            }
            self.lines.push(line);
            if let Some(index) = &mut self.index {
                index.insert(id, line);
            }
            return None;
        }
        Some(self.line_of(id))
    }

    fn line_of(&mut self, id: u64) -> u64 {
        if self.index.is_none() && self.scans >= SCANS_BEFORE_INDEX {
            let index = self
                .lines
                .iter()
                .enumerate()
                .map(|(i, line)| (self.id_at(i), line))
                .collect();
            self.index = Some(index);
        }
        if let Some(index) = &self.index {
            return index.get(&id).copied().unwrap_or(0);
        }
        self.scans += 1;
        let position = match u32::try_from(id) {
            Ok(narrow) if narrow != WIDE => self.order.iter().position(|&x| x == narrow),
            _ => self.wide.iter().find(|(_, w)| *w == id).map(|(i, _)| *i),
        };
        position.map_or(0, |i| self.lines.get(i))
    }

    fn id_at(&self, i: usize) -> u64 {
        match self.order[i] {
            WIDE => self
                .wide
                .binary_search_by_key(&i, |(p, _)| *p)
                .map_or(0, |k| self.wide[k].1),
            narrow => u64::from(narrow),
        }
    }
}

/// Increasing line numbers, one byte each in the usual case.
#[derive(Debug, Default)]
struct LineLog {
    /// The line of every `BLOCK`-th entry.
    checkpoints: Vec<u64>,
    /// The step from the entry before; 0 when the step did not fit (see `far`)
    /// and at each checkpoint.
    steps: Vec<u8>,
    /// `(position, line)` for entries whose step did not fit in a byte.
    far: Vec<(usize, u64)>,
    last: u64,
}

impl LineLog {
    fn push(&mut self, line: u64) {
        let i = self.steps.len();
        if i.is_multiple_of(BLOCK) {
            self.checkpoints.push(line);
            self.steps.push(0);
        } else {
            match u8::try_from(line.wrapping_sub(self.last)) {
                Ok(step) if step > 0 => self.steps.push(step),
                _ => {
                    self.far.push((i, line));
                    self.steps.push(0);
                }
            }
        }
        self.last = line;
    }

    /// Every line, in order, in one pass.
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let mut line = 0;
        let mut far = self.far.iter().peekable();
        self.steps.iter().enumerate().map(move |(i, &step)| {
            line = if i.is_multiple_of(BLOCK) {
                self.checkpoints[i / BLOCK]
            } else if step == 0 {
                far.find(|(p, _)| *p == i).map_or(line, |(_, l)| *l)
            } else {
                line + u64::from(step)
            };
            line
        })
    }

    fn get(&self, i: usize) -> u64 {
        let block = i / BLOCK;
        let mut line = self.checkpoints[block];
        for j in block * BLOCK + 1..=i {
            line = match self.steps[j] {
                0 => self
                    .far
                    .binary_search_by_key(&j, |(p, _)| *p)
                    .map_or(line, |k| self.far[k].1),
                step => line + u64::from(step),
            };
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_of_duplicates() {
        let mut seen = SeenIds::default();
        assert_eq!(seen.first_seen(7, 2), None);
        assert_eq!(seen.first_seen(u64::MAX, 3), None);
        assert_eq!(seen.first_seen(u64::from(u32::MAX), 900), None);
        assert_eq!(seen.first_seen(8, 1_000_000), None);
        assert_eq!(seen.first_seen(7, 1_000_001), Some(2));
        assert_eq!(seen.first_seen(u64::MAX, 1_000_002), Some(3));
        assert_eq!(seen.first_seen(u64::from(u32::MAX), 1_000_003), Some(900));
        assert_eq!(seen.first_seen(8, 1_000_004), Some(1_000_000));
    }

    #[test]
    fn many_rows_and_many_duplicates() {
        let mut seen = SeenIds::default();
        let mut line = 1;
        let mut lines = Vec::new();
        for id in 0..5_000u64 {
            line += 1 + (id % 7) * 100; // steps of 1 and of several hundred
            lines.push(line);
            assert_eq!(seen.first_seen(id * 3, line), None);
        }
        // More duplicates than scans allowed: the index takes over midway.
        for id in (0..5_000u64).rev().step_by(17) {
            line += 1;
            assert_eq!(seen.first_seen(id * 3, line), Some(lines[id as usize]));
        }
        assert!(seen.index.is_some());
        assert_eq!(
            seen.lines.iter().collect::<Vec<_>>()[..lines.len()],
            lines[..]
        );
        assert_eq!(seen.first_seen(999_999, line + 1), None);
        assert_eq!(seen.first_seen(999_999, line + 2), Some(line + 1));
    }

    #[test]
    fn ids_on_both_sides_of_the_bit_array() {
        let mut seen = SeenIds::default();
        let ids = [0, 63, 64, DENSE_IDS - 1, DENSE_IDS, DENSE_IDS + 1, 1 << 32];
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(seen.first_seen(*id, i as u64 + 2), None, "{id}");
        }
        for (i, id) in ids.iter().enumerate().rev() {
            assert_eq!(seen.first_seen(*id, 100), Some(i as u64 + 2), "{id}");
        }
        assert_eq!(seen.dense.len() as u64, DENSE_IDS / 64);
    }
}
