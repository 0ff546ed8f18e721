//! Negative sampling modes for training batches, each reporting the log-probability of what it drew.

use crate::error::{CoreError, Result};
use crate::rng::Rng;
use crate::sampling::{uniform_unseen, AliasTable, SeenBits};
use crate::sequences::Sequences;

/// Where negatives come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegativeMode {
    /// Uniform over the catalogue (over the user's unseen items when excluding).
    Uniform,
    /// In proportion to training popularity raised to `alpha` (alias table).
    Popularity,
    /// The targets of the other sequences in the batch (uniform over the catalogue when there are none).
    InBatch,
    /// `num_negatives` uniform ones followed by `num_in_batch` in-batch ones.
    Mixed,
}

impl NegativeMode {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "uniform" => Ok(NegativeMode::Uniform),
            "popularity" => Ok(NegativeMode::Popularity),
            "in_batch" => Ok(NegativeMode::InBatch),
            "mixed" => Ok(NegativeMode::Mixed),
            other => Err(CoreError::BadOption {
                name: "negatives",
                message: format!("unknown mode {other:?}; choose uniform, popularity, in_batch or mixed"),
            }),
        }
    }
}

/// A configured negative sampler over one store.
#[derive(Clone, Debug)]
pub struct NegativeSampler {
    pub mode: NegativeMode,
    /// Uniform or popularity negatives per slot (in-batch ones for `InBatch`).
    pub num_negatives: usize,
    /// In-batch negatives per slot, after the uniform ones (`Mixed` only).
    pub num_in_batch: usize,
    /// One set of negatives per sequence instead of one per position.
    pub shared: bool,
    /// Uniform and popularity negatives avoid the user's whole history.
    pub exclude_seen: bool,
    num_items: u64,
    popularity: Option<AliasTable>,
    /// Each item's training frequency (the proposal of in-batch sampling) and its log.
    freq: Vec<f64>,
    log_freq: Vec<f64>,
    /// log of each item's popularity probability (popularity mode).
    log_pop: Vec<f64>,
    /// -ln(num_items): the uniform draw over the catalogue that stands in for in-batch ones in a lone row.
    log_catalogue: f64,
}

impl NegativeSampler {
    pub fn new(
        seqs: &Sequences,
        mode: NegativeMode,
        num_negatives: usize,
        num_in_batch: usize,
        shared: bool,
        exclude_seen: bool,
        alpha: f64,
    ) -> Result<Self> {
        let num_items = seqs.num_items() as u64;
        if num_items < 2 {
            return Err(CoreError::BadOption {
                name: "num_items",
                message: format!("the catalogue has {num_items} item(s): negatives need at least 2"),
            });
        }
        crate::limits::at_most("num_negatives", num_negatives as u64, crate::limits::MAX_NEGATIVES)?;
        crate::limits::at_most("num_in_batch", num_in_batch as u64, crate::limits::MAX_NEGATIVES)?;
        let (uniform_k, batch_k) = match mode {
            NegativeMode::Mixed => (num_negatives, num_in_batch),
            NegativeMode::InBatch => (0, num_negatives),
            _ => (num_negatives, 0),
        };
        if uniform_k + batch_k == 0 {
            return Err(CoreError::NonPositive {
                name: "num_negatives",
                value: 0,
            });
        }
        if mode == NegativeMode::Mixed && (uniform_k == 0 || batch_k == 0) {
            return Err(CoreError::BadOption {
                name: "mixed negatives",
                message: format!("need num_negatives >= 1 and num_in_batch >= 1, got {uniform_k} and {batch_k}"),
            });
        }
        if !alpha.is_finite() || alpha < 0.0 {
            return Err(CoreError::BadOption {
                name: "alpha",
                message: format!("must be finite and >= 0, got {alpha}"),
            });
        }
        let counts = seqs.item_counts();
        let popularity = if mode == NegativeMode::Popularity {
            Some(AliasTable::from_counts(counts, alpha)?)
        } else {
            None
        };
        let total: f64 = counts.iter().map(|&c| c as f64).sum::<f64>().max(1.0);
        let freq: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
        let log_freq = freq.iter().map(|f| f.ln()).collect();
        let log_pop = match &popularity {
            Some(t) => (0..=num_items as i32)
                .map(|i| if i == 0 { f64::NEG_INFINITY } else { t.p(i).ln() })
                .collect(),
            None => Vec::new(),
        };
        Ok(NegativeSampler {
            mode,
            num_negatives: uniform_k,
            num_in_batch: batch_k,
            shared,
            exclude_seen,
            num_items,
            popularity,
            freq,
            log_freq,
            log_pop,
            log_catalogue: -(num_items as f64).ln(),
        })
    }

    /// Negatives per slot (the last dimension of the output).
    pub fn width(&self) -> usize {
        self.num_negatives + self.num_in_batch
    }

    pub fn needs_pool(&self) -> bool {
        self.num_in_batch > 0
    }

    /// Per-row constants of user `u`'s row in a batch that holds `others` targets outside this row: with
    /// none, the row's in-batch draws are uniform over the catalogue (see `fill_slot`), and so is their logQ.
    pub fn row_context(&self, seqs: &Sequences, u: usize, others: usize) -> UserContext {
        UserContext {
            in_batch_uniform: self.falls_back(others),
            ..self.user_context(seqs, u)
        }
    }

    /// Whether a row with `others` in-batch candidates outside its own draws its in-batch slots uniformly.
    fn falls_back(&self, others: usize) -> bool {
        self.needs_pool() && others == 0
    }

    /// Per-user constants: log-probability normaliser of the uniform and popularity proposals.
    pub fn user_context(&self, seqs: &Sequences, u: usize) -> UserContext {
        let seen_len = if self.exclude_seen { seqs.seen(u).len() } else { 0 };
        let seen_mass = match (&self.popularity, self.exclude_seen) {
            (Some(t), true) => t.mass(seqs.seen(u)),
            _ => 0.0,
        };
        let allowed = self.num_items - seen_len as u64;
        UserContext {
            allowed,
            seen_mass,
            log_uniform: -(allowed as f64).ln(),
            uniform_mass: 1.0 / allowed as f64,
            log_pop_norm: (1.0 - seen_mass).max(f64::MIN_POSITIVE).ln(),
            in_batch_uniform: false,
        }
    }

    /// Log-probability of `item` under this sampler's proposal (the mixture, in mixed mode), for logQ.
    #[inline]
    pub fn log_q(&self, ctx: &UserContext, item: i32) -> f32 {
        let i = item as usize;
        (match self.mode {
            NegativeMode::Uniform => ctx.log_uniform,
            NegativeMode::Popularity => self.log_pop[i] - ctx.log_pop_norm,
            NegativeMode::InBatch if ctx.in_batch_uniform => self.log_catalogue,
            NegativeMode::InBatch => self.log_freq[i],
            NegativeMode::Mixed => self.log_mixed(ctx, i),
        }) as f32
    }

    // Out of line on purpose: LLVM treats exp and ln as speculatable and would otherwise compute them for
    // every mode inside hot loops.
    #[inline(never)]
    fn log_mixed(&self, ctx: &UserContext, i: usize) -> f64 {
        let (ku, kb) = (self.num_negatives as f64, self.num_in_batch as f64);
        let in_batch = if ctx.in_batch_uniform {
            1.0 / self.num_items as f64
        } else {
            self.freq[i]
        };
        ((ctx.uniform_mass * ku + kb * in_batch) / (ku + kb)).ln()
    }

    /// Writes `log_q` of each of `items` into `logq`, with the mode decided once for the whole slice.
    pub fn fill_log_q(&self, ctx: &UserContext, items: &[i64], logq: &mut [f32]) {
        match self.mode {
            NegativeMode::Uniform => logq.fill(ctx.log_uniform as f32),
            _ => {
                for (q, &x) in logq.iter_mut().zip(items) {
                    *q = self.log_q(ctx, x as i32);
                }
            }
        }
    }

    /// The common case in one tight loop: per-position uniform negatives excluding a user who has seen at
    /// most half the catalogue. Draws exactly what `fill_slot` would; returns false when it does not apply.
    #[allow(clippy::too_many_arguments)]
    pub fn fill_row_uniform(
        &self,
        rng: &mut Rng,
        ctx: &UserContext,
        seen: &[i32],
        bits: &SeenBits<'_>,
        targets: &[i64],
        items: &mut [i64],
        logq: &mut [f32],
    ) -> bool {
        if self.mode != NegativeMode::Uniform || self.shared || (seen.len() as u64) * 2 > self.num_items {
            return false;
        }
        let k = self.num_negatives;
        let q = ctx.log_uniform as f32;
        for (t, (si, sq)) in targets
            .iter()
            .zip(items.chunks_exact_mut(k).zip(logq.chunks_exact_mut(k)))
        {
            if *t == 0 {
                continue;
            }
            for slot in si.iter_mut() {
                *slot = uniform_unseen(rng, self.num_items, seen, bits) as i64;
            }
            sq.fill(q);
        }
        true
    }

    /// Fills one slot (`items`, `logq` of length `width()`) for user `u`; `pool` holds the batch's targets
    /// outside this row's own (`pool_skip` = (start, len) of this row's block); `bits` are the user's items
    /// (empty unless excluding). The logQ follows what was drawn: with no other row's target in `pool`, the
    /// in-batch slots are uniform over the catalogue whatever `ctx` says.
    #[allow(clippy::too_many_arguments)]
    pub fn fill_slot(
        &self,
        rng: &mut Rng,
        seqs: &Sequences,
        u: usize,
        ctx: &UserContext,
        pool: &[i32],
        pool_skip: (usize, usize),
        bits: &SeenBits<'_>,
        items: &mut [i64],
        logq: &mut [f32],
    ) -> Result<()> {
        let seen = seqs.seen(u);
        for slot in items[..self.num_negatives].iter_mut() {
            let x = match (&self.popularity, self.exclude_seen) {
                (Some(t), true) => {
                    t.sample_excluding(rng, seen, ctx.seen_mass, Some(bits))
                        .ok_or(CoreError::ZeroWeightNegatives {
                            user: u as i64,
                            unseen: (self.num_items as i64).saturating_sub(seen.len() as i64),
                        })?
                }
                (Some(t), false) => t.sample(rng),
                (None, true) => uniform_unseen(rng, self.num_items, seen, bits),
                (None, false) => rng.below(self.num_items) as i32 + 1,
            };
            *slot = x as i64;
        }
        let others = pool.len() - pool_skip.1;
        let ctx = &UserContext {
            in_batch_uniform: self.falls_back(others),
            ..*ctx
        };
        for slot in items[self.num_negatives..].iter_mut() {
            let x = if others == 0 {
                // A batch whose only targets are this row's: fall back to a uniform draw (`ctx` says so).
                rng.below(self.num_items) as i32 + 1
            } else {
                let mut j = rng.below(others as u64) as usize;
                if j >= pool_skip.0 {
                    j += pool_skip.1;
                }
                pool[j]
            };
            *slot = x as i64;
        }
        self.fill_log_q(ctx, items, logq);
        Ok(())
    }
}

/// What a sampler needs to know of one user, computed once per row.
#[derive(Clone, Copy, Debug)]
pub struct UserContext {
    pub allowed: u64,
    pub seen_mass: f64,
    pub log_uniform: f64,
    pub uniform_mass: f64,
    pub log_pop_norm: f64,
    /// The row is its batch's only holder of targets: in-batch draws are uniform over the catalogue.
    pub in_batch_uniform: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::with_seen_bits;

    fn store() -> Sequences {
        // 3 users over 12 items, uneven counts; items 11 and 12 never trained.
        let offsets = vec![0i64, 5, 8, 12];
        let items = vec![1i32, 2, 3, 1, 4, 1, 5, 6, 2, 7, 8, 9];
        Sequences::new(&offsets, &items, 12).unwrap()
    }

    /// Sum over `items` of the proposal's probability for user `u`.
    fn mass(s: &NegativeSampler, seqs: &Sequences, u: usize, items: impl Iterator<Item = i32>) -> f64 {
        let ctx = s.user_context(seqs, u);
        items.map(|i| (s.log_q(&ctx, i) as f64).exp()).sum()
    }

    #[test]
    fn every_mode_logq_is_a_normalised_proposal() {
        let seqs = store();
        for exclude in [true, false] {
            for (mode, alpha) in [
                (NegativeMode::Uniform, 1.0),
                (NegativeMode::Popularity, 1.0),
                (NegativeMode::Popularity, 0.5),
            ] {
                let s = NegativeSampler::new(&seqs, mode, 3, 0, false, exclude, alpha).unwrap();
                for u in 0..3 {
                    let seen = seqs.seen(u).to_vec();
                    let support = (1..=12).filter(|i| !exclude || !seen.contains(i));
                    let m = if mode == NegativeMode::Popularity {
                        // popularity never proposes untrained items
                        mass(&s, &seqs, u, support.filter(|&i| seqs.item_counts()[i as usize] > 0))
                    } else {
                        mass(&s, &seqs, u, support)
                    };
                    assert!(
                        (m - 1.0).abs() < 1e-5,
                        "{mode:?} alpha {alpha} exclude {exclude} user {u}: {m}"
                    );
                }
            }
        }
        let in_batch = NegativeSampler::new(&seqs, NegativeMode::InBatch, 2, 0, false, false, 1.0).unwrap();
        assert!((mass(&in_batch, &seqs, 0, 1..=10) - 1.0).abs() < 1e-5);
        let mixed = NegativeSampler::new(&seqs, NegativeMode::Mixed, 3, 1, false, false, 1.0).unwrap();
        assert!((mass(&mixed, &seqs, 1, 1..=12) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn uniform_logq_is_minus_log_of_the_allowed_items() {
        let seqs = store();
        let s = NegativeSampler::new(&seqs, NegativeMode::Uniform, 3, 0, false, true, 1.0).unwrap();
        let ctx = s.user_context(&seqs, 0); // user 0 saw 4 distinct items of 12
        assert_eq!(ctx.allowed, 8);
        assert!((s.log_q(&ctx, 9) as f64 - (-(8f64).ln())).abs() < 1e-6);
    }

    #[test]
    fn a_lone_rows_in_batch_draws_are_uniform_and_their_logq_says_so() {
        // User 0 saw 1..=4 and is the batch's only row: its own targets are the whole in-batch pool.
        let seqs = store();
        let pool = [2i32, 3, 1, 4];
        for mode in [NegativeMode::InBatch, NegativeMode::Mixed] {
            let s = NegativeSampler::new(&seqs, mode, 4, 4, false, true, 1.0).unwrap();
            let ctx = s.row_context(&seqs, 0, 0);
            // In-batch draws uniform over 12 items; mixed adds the uniform part over user 0's 8 unseen items.
            let expected = match mode {
                NegativeMode::InBatch => -(12f64).ln(),
                _ => ((4.0 / 8.0 + 4.0 / 12.0) / 8.0f64).ln(),
            } as f32;
            let (mut items, mut logq) = (vec![0i64; s.width()], vec![0f32; s.width()]);
            let mut hits = [0usize; 13];
            with_seen_bits(seqs.seen(0), 12, |bits| {
                for seed in 0..3000 {
                    let mut rng = Rng::new(seed);
                    s.fill_slot(&mut rng, &seqs, 0, &ctx, &pool, (0, 4), bits, &mut items, &mut logq)
                        .unwrap();
                    for &x in &items[s.num_negatives..] {
                        hits[x as usize] += 1;
                    }
                    assert!(logq.iter().all(|&q| (q - expected).abs() < 1e-6), "{mode:?}: {logq:?}");
                }
            });
            // 12,000 draws, 1,000 expected per item; 5 standard deviations is about 150.
            assert!(hits[1..].iter().all(|&h| h.abs_diff(1000) < 150), "{mode:?}: {hits:?}");
            assert!(
                (s.log_q(&ctx, 1) - expected).abs() < 1e-6,
                "the target's logQ is the same proposal's"
            );
            // With another row's targets in the pool, the proposal is the training frequency again.
            let busy = s.row_context(&seqs, 0, 3);
            assert!(!busy.in_batch_uniform && s.log_q(&busy, 11) != expected);
        }
    }

    #[test]
    fn rejects_bad_settings() {
        let seqs = store();
        assert!(NegativeSampler::new(&seqs, NegativeMode::Uniform, 0, 0, false, true, 1.0).is_err());
        assert!(NegativeSampler::new(&seqs, NegativeMode::Mixed, 2, 0, false, true, 1.0).is_err());
        assert!(NegativeSampler::new(&seqs, NegativeMode::Popularity, 2, 0, false, true, -1.0).is_err());
        assert!(NegativeMode::parse("nope").is_err());
    }
}
