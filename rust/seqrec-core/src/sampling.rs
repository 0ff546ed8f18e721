//! Negative samplers: uniform over the items a user never interacted with.

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
}
