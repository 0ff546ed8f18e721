//! Validated per-user item sequences in CSR form, with a sorted copy of each history for exclusion.

use crate::error::{positive, CoreError, Result};

/// Chronological item sequences of every user (CSR) plus each user's distinct items, sorted.
#[derive(Debug, Clone)]
pub struct Sequences {
    offsets: Vec<i64>,
    items: Vec<i32>,
    num_items: i64,
    seen_offsets: Vec<usize>,
    seen_items: Vec<i32>,
    item_counts: Vec<u64>,
}

impl Sequences {
    /// Validates `offsets` (length users + 1, from 0 up to `items.len()`, never decreasing) and
    /// `items` (each in `1..=num_items`), then builds the sorted distinct history of each user.
    pub fn new(offsets: &[i64], items: &[i32], num_items: i64) -> Result<Self> {
        positive("num_items", num_items)?;
        crate::limits::at_most("num_items", num_items as u64, crate::limits::MAX_ITEMS as usize)?;
        if offsets.is_empty() {
            return Err(CoreError::BadOffsets {
                index: 0,
                message: "offsets is empty (it needs num_users + 1 entries)".into(),
            });
        }
        if offsets[0] != 0 {
            return Err(CoreError::BadOffsets {
                index: 0,
                message: format!("first offset must be 0, got {}", offsets[0]),
            });
        }
        for (i, w) in offsets.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(CoreError::BadOffsets {
                    index: i + 1,
                    message: format!("offsets decrease from {} to {}", w[0], w[1]),
                });
            }
        }
        let last = *offsets.last().unwrap_or(&0);
        if last != items.len() as i64 {
            return Err(CoreError::BadOffsets {
                index: offsets.len() - 1,
                message: format!("last offset {last} differs from the number of items {}", items.len()),
            });
        }
        if let Some((position, &item)) = items.iter().enumerate().find(|(_, &x)| x < 1 || x as i64 > num_items) {
            return Err(CoreError::ItemOutOfRange {
                position,
                item: item as i64,
                num_items,
            });
        }
        let mut seen_offsets = Vec::with_capacity(offsets.len());
        let mut seen_items = Vec::with_capacity(items.len());
        seen_offsets.push(0);
        let mut buf: Vec<i32> = Vec::new();
        for w in offsets.windows(2) {
            buf.clear();
            buf.extend_from_slice(&items[w[0] as usize..w[1] as usize]);
            buf.sort_unstable();
            buf.dedup();
            seen_items.extend_from_slice(&buf);
            seen_offsets.push(seen_items.len());
        }
        let mut item_counts = vec![0u64; num_items as usize + 1];
        for &x in items {
            item_counts[x as usize] += 1;
        }
        Ok(Sequences {
            offsets: offsets.to_vec(),
            items: items.to_vec(),
            num_items,
            seen_offsets,
            seen_items,
            item_counts,
        })
    }

    pub fn num_users(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn num_items(&self) -> i64 {
        self.num_items
    }

    pub fn num_interactions(&self) -> usize {
        self.items.len()
    }

    /// Interactions per item, index 0 (padding) always 0.
    pub fn item_counts(&self) -> &[u64] {
        &self.item_counts
    }

    /// The chronological sequence of user `u` (caller has checked the index).
    #[inline]
    pub fn sequence(&self, u: usize) -> &[i32] {
        &self.items[self.offsets[u] as usize..self.offsets[u + 1] as usize]
    }

    /// The sorted distinct items of user `u`.
    #[inline]
    pub fn seen(&self, u: usize) -> &[i32] {
        &self.seen_items[self.seen_offsets[u]..self.seen_offsets[u + 1]]
    }

    /// Converts user indices to usize, failing on the first one out of range.
    pub fn check_users(&self, users: &[i64]) -> Result<Vec<usize>> {
        let n = self.num_users();
        users
            .iter()
            .map(|&u| {
                if u < 0 || u as usize >= n {
                    Err(CoreError::UserOutOfRange { user: u, num_users: n })
                } else {
                    Ok(u as usize)
                }
            })
            .collect()
    }

    /// Fails if any of `users` has seen every item, so no negative exists for them.
    pub fn check_negatives_exist(&self, users: &[usize]) -> Result<()> {
        for &u in users {
            if self.seen(u).len() as i64 >= self.num_items {
                return Err(CoreError::NoNegatives {
                    user: u as i64,
                    num_items: self.num_items,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_sorted_distinct_histories() {
        let s = Sequences::new(&[0, 3, 3, 5], &[4, 2, 4, 1, 3], 5).unwrap();
        assert_eq!(s.num_users(), 3);
        assert_eq!(s.sequence(0), &[4, 2, 4]);
        assert_eq!(s.seen(0), &[2, 4]);
        assert!(s.sequence(1).is_empty());
        assert_eq!(s.seen(2), &[1, 3]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Sequences::new(&[], &[], 3), Err(CoreError::BadOffsets { .. })));
        assert!(matches!(
            Sequences::new(&[1, 2], &[1], 3),
            Err(CoreError::BadOffsets { index: 0, .. })
        ));
        assert!(matches!(
            Sequences::new(&[0, 2, 1], &[1], 3),
            Err(CoreError::BadOffsets { index: 2, .. })
        ));
        assert!(matches!(
            Sequences::new(&[0, 2], &[1], 3),
            Err(CoreError::BadOffsets { .. })
        ));
        assert!(matches!(
            Sequences::new(&[0, 2], &[1, 4], 3),
            Err(CoreError::ItemOutOfRange {
                position: 1,
                item: 4,
                ..
            })
        ));
        assert!(matches!(
            Sequences::new(&[0, 1], &[0], 3),
            Err(CoreError::ItemOutOfRange { item: 0, .. })
        ));
        assert!(matches!(
            Sequences::new(&[0, 1], &[1], 0),
            Err(CoreError::NonPositive { .. })
        ));
        let s = Sequences::new(&[0, 1], &[1], 3).unwrap();
        assert!(matches!(
            s.check_users(&[0, 1]),
            Err(CoreError::UserOutOfRange { user: 1, .. })
        ));
        assert!(matches!(
            s.check_users(&[-1]),
            Err(CoreError::UserOutOfRange { user: -1, .. })
        ));
        let full = Sequences::new(&[0, 2], &[2, 1], 2).unwrap();
        assert!(matches!(
            full.check_negatives_exist(&[0]),
            Err(CoreError::NoNegatives { .. })
        ));
    }
}
