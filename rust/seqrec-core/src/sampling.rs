//! Item samplers: uniform over a user's unseen items, and popularity through an alias table.

use crate::error::{CoreError, Result};
use crate::rng::Rng;

/// Draws a uniform item from `1..=num_items` minus `seen`, where `seen` is sorted, distinct and within range.
///
/// One random draw per sample, no rejection loop: the r-th allowed item is found by binary search over
/// `seen[j] - 1 - j` (the count of allowed items below `seen[j]`), so users who have seen nearly the whole
/// catalogue cost the same as anyone else. The caller guarantees `seen.len() < num_items`.
#[inline]
pub fn uniform_excluding(rng: &mut Rng, num_items: u64, seen: &[i32]) -> i32 {
    let allowed = num_items - seen.len() as u64;
    let r = rng.below(allowed) as i64;
    let mut lo = 0usize;
    let mut hi = seen.len();
    // partition_point on j -> (seen[j] - 1 - j <= r), which is monotone because seen is strictly increasing.
    while lo < hi {
        let mid = (lo + hi) / 2;
        if seen[mid] as i64 - 1 - mid as i64 <= r {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (r + 1 + lo as i64) as i32
}

thread_local! {
    /// One bitset per thread over the catalogue, all zeros between uses (see `with_seen_bits`).
    static SEEN_BITS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f` with a bitset of `seen` over `0..=num_items`, then clears exactly those bits again, so the
/// per-thread buffer costs O(|seen|) per user instead of O(num_items).
pub fn with_seen_bits<R>(seen: &[i32], num_items: usize, f: impl FnOnce(&SeenBits<'_>) -> R) -> R {
    SEEN_BITS.with(|cell| {
        let mut bits = cell.borrow_mut();
        let words = num_items / 64 + 1;
        if bits.len() < words {
            bits.resize(words, 0);
        }
        for &x in seen {
            bits[x as usize >> 6] |= 1u64 << (x & 63);
        }
        let out = f(&SeenBits { bits: &bits });
        for &x in seen {
            bits[x as usize >> 6] = 0;
        }
        out
    })
}

/// A user's seen items as bits, for O(1) membership tests.
pub struct SeenBits<'a> {
    bits: &'a [u64],
}

impl SeenBits<'_> {
    #[inline]
    pub fn contains(&self, x: i32) -> bool {
        self.bits[x as usize >> 6] & (1u64 << (x & 63)) != 0
    }
}

/// Uniform over `1..=num_items` minus the user's items: rejection against the bitset while the user has
/// seen at most half the catalogue (at most 2 draws expected), exact complement indexing beyond that.
#[inline(always)]
pub fn uniform_unseen(rng: &mut Rng, num_items: u64, seen: &[i32], bits: &SeenBits<'_>) -> i32 {
    if (seen.len() as u64) * 2 > num_items {
        return uniform_excluding(rng, num_items, seen);
    }
    loop {
        let x = rng.below(num_items) as i32 + 1;
        if !bits.contains(x) {
            return x;
        }
    }
}

/// Walker's alias table over items `1..=n` (index 0, padding, has weight 0): O(1) draws from any weights.
#[derive(Debug, Clone)]
pub struct AliasTable {
    prob: Vec<f64>,
    alias: Vec<u32>,
    /// Normalised probability of each item, index 0 unused.
    p: Vec<f64>,
}

impl AliasTable {
    /// Builds the table from `weights[i]` for item i (`weights[0]` is ignored). Fails when no item has
    /// positive weight or a weight is negative or not finite.
    pub fn new(weights: &[f64]) -> Result<Self> {
        let n = weights.len().saturating_sub(1);
        if n == 0 {
            return Err(CoreError::NonPositive {
                name: "num_items",
                value: 0,
            });
        }
        if let Some((i, &w)) = weights
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, w)| !w.is_finite() || **w < 0.0)
        {
            return Err(CoreError::BadWeight {
                item: i as i64,
                weight: w,
            });
        }
        let total: f64 = weights[1..].iter().sum();
        if total <= 0.0 {
            return Err(CoreError::BadWeight {
                item: -1,
                weight: total,
            });
        }
        let mut p = vec![0.0; n + 1];
        for i in 1..=n {
            p[i] = weights[i] / total;
        }
        // Vose's method on slots 0..n standing for items 1..=n.
        let mut scaled: Vec<f64> = p[1..].iter().map(|x| x * n as f64).collect();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] = (scaled[l] + scaled[s]) - 1.0;
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (rounding) keep probability 1 of themselves.
        Ok(AliasTable { prob, alias, p })
    }

    /// The popularity proposal: item i in proportion to `counts[i] ** alpha` (items never counted get
    /// weight 0; alpha 0 is uniform over the counted items). `counts[0]` is padding and ignored.
    pub fn from_counts(counts: &[u64], alpha: f64) -> Result<Self> {
        if !alpha.is_finite() || alpha < 0.0 {
            return Err(CoreError::BadOption {
                name: "alpha",
                message: format!("must be finite and >= 0, got {alpha}"),
            });
        }
        let weights: Vec<f64> = counts
            .iter()
            .map(|&c| if c == 0 { 0.0 } else { (c as f64).powf(alpha) })
            .collect();
        AliasTable::new(&weights)
    }

    pub fn num_items(&self) -> usize {
        self.prob.len()
    }

    /// Probability of item `i` (1-based).
    #[inline]
    pub fn p(&self, i: i32) -> f64 {
        self.p[i as usize]
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> i32 {
        let slot = rng.below(self.prob.len() as u64) as usize;
        let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let chosen = if u < self.prob[slot] {
            slot
        } else {
            self.alias[slot] as usize
        };
        chosen as i32 + 1
    }

    /// Total probability of the items in `seen` (sorted, distinct).
    pub fn mass(&self, seen: &[i32]) -> f64 {
        seen.iter().map(|&i| self.p[i as usize]).sum()
    }

    /// Draws from the table restricted to items not in `seen` (sorted, distinct).
    ///
    /// Rejection first; when the user's seen items hold most of the mass that could spin, so after
    /// `MAX_REJECTIONS` misses it draws exactly from the renormalised complement by inverse CDF.
    pub fn sample_excluding(
        &self,
        rng: &mut Rng,
        seen: &[i32],
        seen_mass: f64,
        bits: Option<&SeenBits<'_>>,
    ) -> Option<i32> {
        const MAX_REJECTIONS: usize = 32;
        if seen_mass >= 1.0 - 1e-12 {
            return None;
        }
        for _ in 0..MAX_REJECTIONS {
            let x = self.sample(rng);
            let is_seen = match bits {
                Some(b) => b.contains(x),
                None => seen.binary_search(&x).is_ok(),
            };
            if !is_seen {
                return Some(x);
            }
        }
        let target = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * (1.0 - seen_mass);
        let mut acc = 0.0;
        let mut last = None;
        let mut j = 0;
        for i in 1..=self.prob.len() as i32 {
            if j < seen.len() && seen[j] == i {
                j += 1;
                continue;
            }
            if self.p[i as usize] > 0.0 {
                acc += self.p[i as usize];
                last = Some(i);
                if acc > target {
                    return last;
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_returns_a_seen_item_and_reaches_every_allowed_one() {
        let seen = [1, 2, 5, 6, 9];
        let mut rng = Rng::new(11);
        let mut hits = [0usize; 11];
        for _ in 0..20_000 {
            let x = uniform_excluding(&mut rng, 10, &seen);
            assert!((1..=10).contains(&x));
            assert!(!seen.contains(&x), "sampled seen item {x}");
            hits[x as usize] += 1;
        }
        for item in [3, 4, 7, 8, 10] {
            // 4,000 expected each; 5 standard deviations is about 280.
            assert!((hits[item] as i64 - 4_000).abs() < 300, "{hits:?}");
        }
    }

    #[test]
    fn one_item_left() {
        let seen: Vec<i32> = (1..=9).collect();
        let mut rng = Rng::new(1);
        for _ in 0..10 {
            assert_eq!(uniform_excluding(&mut rng, 10, &seen), 10);
        }
        let seen: Vec<i32> = (2..=10).collect();
        assert_eq!(uniform_excluding(&mut rng, 10, &seen), 1);
    }

    #[test]
    fn bitset_rejection_matches_exclusion_and_leaves_the_buffer_clean() {
        let seen = [2, 3, 64, 65, 127];
        let mut rng = Rng::new(4);
        with_seen_bits(&seen, 130, |bits| {
            for &x in &seen {
                assert!(bits.contains(x));
            }
            assert!(!bits.contains(1) && !bits.contains(66));
            for _ in 0..5_000 {
                let x = uniform_unseen(&mut rng, 130, &seen, bits);
                assert!((1..=130).contains(&x) && !seen.contains(&x));
            }
        });
        with_seen_bits(&[], 130, |bits| assert!((0..=130).all(|x| !bits.contains(x))));
    }

    #[test]
    fn alias_table_follows_weights() {
        let table = AliasTable::new(&[0.0, 1.0, 0.0, 3.0, 6.0]).unwrap();
        let mut rng = Rng::new(5);
        let mut hits = [0usize; 5];
        for _ in 0..100_000 {
            hits[table.sample(&mut rng) as usize] += 1;
        }
        assert_eq!(hits[0], 0);
        assert_eq!(hits[2], 0);
        // expected 10k, 30k, 60k; 5 standard deviations is at most about 800.
        for (i, e) in [(1, 10_000i64), (3, 30_000), (4, 60_000)] {
            assert!((hits[i] as i64 - e).abs() < 800, "{hits:?}");
        }
    }

    #[test]
    fn alias_excluding_falls_back_when_seen_holds_most_mass() {
        let mut w = vec![0.0, 1e-6, 1e-6];
        w.extend(std::iter::repeat_n(1.0, 50)); // items 3..=52 are heavy
        let table = AliasTable::new(&w).unwrap();
        let seen: Vec<i32> = (3..=52).collect();
        let mass = table.mass(&seen);
        let mut rng = Rng::new(9);
        let mut hits = [0usize; 3];
        for _ in 0..2_000 {
            let x = table.sample_excluding(&mut rng, &seen, mass, None).unwrap();
            hits[x as usize] += 1;
        }
        assert!(hits[1] > 800 && hits[2] > 800, "{hits:?}");
        let all: Vec<i32> = (1..=52).collect();
        assert_eq!(table.sample_excluding(&mut rng, &all, table.mass(&all), None), None);
    }

    #[test]
    fn alias_rejects_bad_weights() {
        assert!(AliasTable::new(&[0.0, -1.0]).is_err());
        assert!(AliasTable::new(&[0.0, f64::NAN]).is_err());
        assert!(AliasTable::new(&[0.0, 0.0]).is_err());
        assert!(AliasTable::new(&[0.0]).is_err());
    }
}
