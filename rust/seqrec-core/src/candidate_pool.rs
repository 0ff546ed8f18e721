//! One set of negatives for a whole batch (a sampled softmax's candidate pool), with inclusion
//! probabilities for logQ correction.
//!
//! Every target position of the batch is scored against the same pool, so the model's work is one
//! (T, D) x (D, P) product however many positions there are. The pool is a set (sorted, distinct): each
//! candidate's correction is the log of the probability that it is in the set, which is what makes the
//! sampled softmax over a set consistent with the full one (with the whole catalogue in the pool every
//! probability is 1 and the loss is exactly full cross-entropy).

use std::collections::HashSet;

use crate::error::{CoreError, Result};
use crate::rng::Rng;
use crate::sampling::AliasTable;
use crate::sequences::Sequences;

/// How the pool's sampled part is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSampling {
    /// `size` distinct items, uniformly without replacement.
    Uniform,
    /// `size` draws in proportion to training counts ** alpha (with replacement; duplicates merge).
    Popularity,
}

/// A configured batch-wide candidate pool over one store.
#[derive(Clone, Debug)]
pub struct CandidatePool {
    pub sampling: PoolSampling,
    /// Draws of the sampled part.
    pub size: usize,
    /// Join the batch's own targets (mixed negative sampling, Yang et al. 2020).
    pub in_batch: bool,
    /// Report which pool items each row's user has in their training history, so the loss can mask them.
    pub mask_history: bool,
    num_items: u64,
    popularity: Option<AliasTable>,
    /// Each item's share of training interactions: the chance that one target is that item.
    freq: Vec<f64>,
}

/// The pool of one batch.
#[derive(Clone, Debug, Default)]
pub struct PoolDraw {
    /// Sorted distinct item ids.
    pub items: Vec<i64>,
    /// log P(item in the pool), per item.
    pub logq: Vec<f32>,
}

impl CandidatePool {
    /// `uniform` or `popularity` (the names the options use).
    pub fn parse_sampling(name: &str) -> Result<PoolSampling> {
        match name {
            "uniform" => Ok(PoolSampling::Uniform),
            "popularity" => Ok(PoolSampling::Popularity),
            other => Err(CoreError::BadOption {
                name: "negatives",
                message: format!("a batch-wide pool is drawn 'uniform' or 'popularity', got {other:?}"),
            }),
        }
    }

    pub fn new(
        seqs: &Sequences,
        sampling: PoolSampling,
        size: usize,
        in_batch: bool,
        mask_history: bool,
        alpha: f64,
    ) -> Result<Self> {
        let num_items = seqs.num_items() as u64;
        crate::limits::at_most("negative_pool", size as u64, crate::limits::MAX_POOL)?;
        if size == 0 && !in_batch {
            return Err(CoreError::BadOption {
                name: "negative_pool",
                message: "the pool needs sampled items (size >= 1) or the batch's targets (in_batch)".into(),
            });
        }
        // A uniform pool as large as the catalogue is the catalogue (the softmax is then exactly full CE):
        // a larger size means the same.
        let size = if sampling == PoolSampling::Uniform {
            size.min(num_items as usize)
        } else {
            size
        };
        if !alpha.is_finite() || alpha < 0.0 {
            return Err(CoreError::BadOption {
                name: "alpha",
                message: format!("must be finite and >= 0, got {alpha}"),
            });
        }
        let counts = seqs.item_counts();
        let popularity = match sampling {
            PoolSampling::Popularity => Some(AliasTable::from_counts(counts, alpha)?),
            PoolSampling::Uniform => None,
        };
        let total = counts.iter().map(|&c| c as f64).sum::<f64>().max(1.0);
        let freq = counts.iter().map(|&c| c as f64 / total).collect();
        Ok(CandidatePool {
            sampling,
            size,
            in_batch,
            mask_history,
            num_items,
            popularity,
            freq,
        })
    }

    /// Probability that the sampled part holds `item`.
    fn sampled_inclusion(&self, item: usize) -> f64 {
        match &self.popularity {
            None => self.size as f64 / self.num_items as f64,
            // 1 - (1 - p)^size, written to keep precision for tiny p.
            Some(t) => -((self.size as f64) * (-t.p(item as i32)).ln_1p()).exp_m1(),
        }
    }

    /// Draws the pool of a batch whose target positions are `targets` (0 = no target), from `rng`.
    pub fn draw(&self, rng: &mut Rng, targets: &[i64]) -> PoolDraw {
        let mut items: Vec<i64> = Vec::with_capacity(self.size + if self.in_batch { targets.len() } else { 0 });
        match &self.popularity {
            Some(t) => items.extend((0..self.size).map(|_| t.sample(rng) as i64)),
            None => uniform_distinct(rng, self.num_items, self.size, &mut items),
        }
        let mut num_targets = 0usize;
        if self.in_batch {
            for &t in targets.iter().filter(|&&t| t != 0) {
                items.push(t);
                num_targets += 1;
            }
        }
        items.sort_unstable();
        items.dedup();
        let logq = items.iter().map(|&i| self.log_inclusion(i, num_targets)).collect();
        PoolDraw { items, logq }
    }

    /// log P(item in the pool) for an item that may not be in it (the targets' correction).
    /// The pool holds an item when its sampled part does (probability a) or one of the batch's
    /// `num_targets` targets is it (b = 1 - (1 - f)^T, in-batch pools only).
    pub fn log_inclusion(&self, item: i64, num_targets: usize) -> f32 {
        let a = self.sampled_inclusion(item as usize);
        let b = if self.in_batch && num_targets > 0 {
            -((num_targets as f64) * (-self.freq[item as usize]).ln_1p()).exp_m1()
        } else {
            0.0
        };
        (1.0 - (1.0 - a) * (1.0 - b)).max(f64::MIN_POSITIVE).ln() as f32
    }
}

/// `k` distinct items of 1..=n, uniformly (Floyd's algorithm: k draws, no O(n) buffer), appended to `out`.
fn uniform_distinct(rng: &mut Rng, n: u64, k: usize, out: &mut Vec<i64>) {
    let k = k as u64;
    if k == 0 {
        return;
    }
    let mut chosen: HashSet<u64> = HashSet::with_capacity(k as usize * 2);
    for j in (n - k + 1)..=n {
        let t = rng.below(j) + 1; // uniform in 1..=j
        let x = if chosen.contains(&t) { j } else { t };
        chosen.insert(x);
        out.push(x as i64);
    }
}

/// Position of `item` in the sorted pool, or -1.
pub fn index_in(pool: &[i64], item: i64) -> i64 {
    pool.binary_search(&item).map_or(-1, |i| i as i64)
}

/// (row, pool index) of every pool item in each row's user's training history (`users[row]`).
pub fn history_hits(seqs: &Sequences, users: &[usize], pool: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    for (row, &u) in users.iter().enumerate() {
        for &x in seqs.seen(u) {
            let j = index_in(pool, x as i64);
            if j >= 0 {
                rows.push(row as i64);
                cols.push(j);
            }
        }
    }
    (rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Sequences {
        // 3 users over 10 items; item 1 is the most popular.
        let offsets = vec![0i64, 4, 7, 10];
        let items = vec![1i32, 2, 3, 1, 1, 4, 5, 1, 6, 7];
        Sequences::new(&offsets, &items, 10).unwrap()
    }

    #[test]
    fn uniform_pool_is_distinct_sorted_and_whole_at_full_size() {
        let s = store();
        let pool = CandidatePool::new(&s, PoolSampling::Uniform, 10, false, false, 1.0).unwrap();
        let d = pool.draw(&mut Rng::new(1), &[]);
        assert_eq!(d.items, (1..=10).collect::<Vec<i64>>());
        assert!(
            d.logq.iter().all(|&q| q == 0.0),
            "every item is certain to be in a full pool"
        );
        let pool = CandidatePool::new(&s, PoolSampling::Uniform, 4, false, false, 1.0).unwrap();
        for seed in 0..50 {
            let d = pool.draw(&mut Rng::new(seed), &[]);
            assert_eq!(d.items.len(), 4);
            assert!(d.items.windows(2).all(|w| w[0] < w[1]));
            assert!(d.items.iter().all(|&i| (1..=10).contains(&i)));
            let expected = (0.4f64).ln() as f32;
            assert!(d.logq.iter().all(|&q| (q - expected).abs() < 1e-6));
        }
    }

    #[test]
    fn uniform_inclusion_frequency_is_k_over_n() {
        let s = store();
        let pool = CandidatePool::new(&s, PoolSampling::Uniform, 3, false, false, 1.0).unwrap();
        let mut hits = [0usize; 11];
        let draws = 20_000;
        for seed in 0..draws {
            for &i in &pool.draw(&mut Rng::new(seed), &[]).items {
                hits[i as usize] += 1;
            }
        }
        // Each item is in the pool with probability 0.3; 4 standard errors is about 0.013.
        for (i, &h) in hits.iter().enumerate().skip(1) {
            let f = h as f64 / draws as f64;
            assert!((f - 0.3).abs() < 0.013, "item {i}: inclusion {f}");
        }
    }

    #[test]
    fn in_batch_targets_join_and_logq_combines_both_sources() {
        let s = store();
        let pool = CandidatePool::new(&s, PoolSampling::Uniform, 2, true, false, 1.0).unwrap();
        let targets = [0, 9, 9, 0, 8];
        let d = pool.draw(&mut Rng::new(3), &targets);
        assert!(d.items.contains(&9) && d.items.contains(&8));
        // Item 9 has no training count, so only the sampled part can hold it: log(2 / 10).
        let j = index_in(&d.items, 9) as usize;
        assert!((d.logq[j] - (0.2f64).ln() as f32).abs() < 1e-6);
        // Item 1 holds 4 of 10 interactions: with 3 targets, 1 - (1 - 0.2)(1 - 0.6^3).
        let expected = (1.0 - 0.8 * 0.6f64.powi(3)).ln() as f32;
        assert!((pool.log_inclusion(1, 3) - expected).abs() < 1e-6);
        let only_batch = CandidatePool::new(&s, PoolSampling::Uniform, 0, true, false, 1.0).unwrap();
        assert_eq!(only_batch.draw(&mut Rng::new(0), &targets).items, vec![8, 9]);
    }

    #[test]
    fn popularity_pool_follows_counts() {
        let s = store();
        let pool = CandidatePool::new(&s, PoolSampling::Popularity, 2, false, false, 1.0).unwrap();
        let mut hits = [0usize; 11];
        let draws = 20_000;
        for seed in 0..draws {
            let d = pool.draw(&mut Rng::new(seed), &[]);
            for (&i, &q) in d.items.iter().zip(&d.logq) {
                hits[i as usize] += 1;
                assert!((q - pool.log_inclusion(i, 0)).abs() < 1e-6);
            }
        }
        // Item 1: p = 0.4, inclusion 1 - 0.6^2 = 0.64; items 8..10 never trained: never drawn.
        let f1 = hits[1] as f64 / draws as f64;
        assert!((f1 - 0.64).abs() < 0.014, "item 1: {f1}");
        assert_eq!(hits[8] + hits[9] + hits[10], 0);
    }

    #[test]
    fn rejects_impossible_pools_and_caps_uniform_ones_at_the_catalogue() {
        let s = store();
        let capped = CandidatePool::new(&s, PoolSampling::Uniform, 11, false, false, 1.0).unwrap();
        assert_eq!(capped.size, 10);
        assert_eq!(capped.draw(&mut Rng::new(0), &[]).items, (1..=10).collect::<Vec<i64>>());
        assert!(CandidatePool::new(&s, PoolSampling::Uniform, 0, false, false, 1.0).is_err());
        assert!(CandidatePool::new(&s, PoolSampling::Popularity, 5, false, false, f64::NAN).is_err());
    }

    #[test]
    fn history_hits_name_each_seen_pool_item() {
        let s = store();
        let pool = vec![1i64, 4, 6, 9];
        let (rows, cols) = history_hits(&s, &[0, 1, 2], &pool);
        // user 0 saw 1; user 1 saw 1, 4; user 2 saw 1, 6.
        assert_eq!(rows, vec![0, 1, 1, 2, 2]);
        assert_eq!(cols, vec![0, 0, 1, 0, 2]);
    }
}
