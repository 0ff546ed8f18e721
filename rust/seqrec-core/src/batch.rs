//! Batch builders: SASRec next-item batches, BERT4Rec cloze batches, and sampled-protocol candidates.

use rayon::prelude::*;

use crate::buffers;
use crate::candidate_pool::{history_hits, index_in, CandidatePool};
use crate::error::{positive, CoreError, Result};
use crate::negatives::NegativeSampler;
use crate::pool;
use crate::rng::Rng;
use crate::sampling::{uniform_unseen, with_seen_bits, AliasTable};
use crate::sequences::Sequences;

/// The training objective a batch is built for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Task {
    /// Next-item prediction: `inputs[t]` is an item and `targets[t]` the one that followed it.
    SasRec,
    /// Cloze: each position is replaced by `mask_token` with probability `mask_prob` and must be recovered.
    Bert4Rec { mask_prob: f64, mask_token: i64 },
}

impl Task {
    /// The mask token when none is given: the id after the catalogue's last item (the models' own rule).
    pub fn default_mask_token(num_items: i64) -> i64 {
        num_items + 1
    }

    /// The task named `name` (`sasrec` or `bert4rec`); BERT4Rec masks with `mask_token`, by default
    /// `default_mask_token(num_items)`. A mask token inside the catalogue would hide a real item.
    pub fn parse(name: &str, mask_prob: f64, mask_token: Option<i64>, num_items: i64) -> Result<Self> {
        match name {
            "sasrec" => Ok(Task::SasRec),
            "bert4rec" => {
                let mask_token = mask_token.unwrap_or(Task::default_mask_token(num_items));
                if mask_token >= 1 && mask_token <= num_items {
                    return Err(CoreError::BadOption {
                        name: "mask_token",
                        message: format!(
                            "{mask_token} is a real item id (1..={num_items}); use {}",
                            Task::default_mask_token(num_items)
                        ),
                    });
                }
                Ok(Task::Bert4Rec { mask_prob, mask_token })
            }
            other => Err(CoreError::BadOption {
                name: "task",
                message: format!("must be 'sasrec' or 'bert4rec', got {other:?}"),
            }),
        }
    }
}

/// How to build the batches of one training run.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub task: Task,
    pub max_len: usize,
    /// Pad every batch to `max_len` (the original SASRec) instead of to its longest row.
    pub pad_to_max: bool,
    pub negatives: Option<NegativeSampler>,
    /// One candidate pool for the whole batch instead of per-row negatives (see `with_pool`).
    pub pool: Option<CandidatePool>,
    /// 1: build on the calling thread; anything else: the engine's thread pool.
    pub num_threads: usize,
}

impl BatchSpec {
    pub fn new(
        task: Task,
        max_len: i64,
        pad_to_max: bool,
        negatives: Option<NegativeSampler>,
        num_threads: usize,
    ) -> Result<Self> {
        let max_len = positive("max_len", max_len)?;
        crate::limits::at_most("max_len", max_len as u64, crate::limits::MAX_LEN)?;
        if let Task::Bert4Rec { mask_prob, mask_token } = task {
            if !(mask_prob > 0.0 && mask_prob <= 1.0) {
                return Err(CoreError::BadOption {
                    name: "mask_prob",
                    message: format!("must be in (0, 1], got {mask_prob}"),
                });
            }
            if mask_token < 1 {
                return Err(CoreError::BadOption {
                    name: "mask_token",
                    message: format!("must be positive, got {mask_token}"),
                });
            }
        }
        Ok(BatchSpec {
            task,
            max_len,
            pad_to_max,
            negatives,
            pool: None,
            num_threads,
        })
    }

    /// The same spec scoring every position against one batch-wide pool; per-row negatives must be off.
    pub fn with_pool(mut self, pool: CandidatePool) -> Result<Self> {
        if self.negatives.is_some() {
            return Err(CoreError::BadOption {
                name: "negative_pool",
                message: "a batch-wide pool replaces per-position negatives: build the spec without a sampler".into(),
            });
        }
        self.pool = Some(pool);
        Ok(self)
    }

    /// Items a training window holds: SASRec needs one more than its length (the last target).
    pub fn window(&self) -> usize {
        match self.task {
            Task::SasRec => self.max_len + 1,
            Task::Bert4Rec { .. } => self.max_len,
        }
    }

    /// Shortest sequence that yields a training target.
    pub fn min_items(&self) -> usize {
        match self.task {
            Task::SasRec => 2,
            Task::Bert4Rec { .. } => 1,
        }
    }

    /// Expected training targets of a window ending at `end`: every filled position for SASRec; for
    /// BERT4Rec the masked ones, counting the one forced when none is drawn.
    pub fn expected_targets(&self, end: usize) -> f64 {
        let n = self.filled(end) as f64;
        match self.task {
            Task::SasRec => n,
            Task::Bert4Rec { mask_prob, .. } => mask_prob * n + (1.0 - mask_prob).powf(n),
        }
    }

    /// Positions a window ending at `end` fills (before padding).
    pub fn filled(&self, end: usize) -> usize {
        match self.task {
            Task::SasRec => end.saturating_sub(1).min(self.max_len),
            Task::Bert4Rec { .. } => end.min(self.max_len),
        }
    }
}

/// A training sequence: the items of `user` before position `end` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub user: usize,
    pub end: usize,
}

impl Segment {
    /// The segments `users[i][..ends[i]]` (whole sequences when `ends` is None), checked against the store.
    pub fn from_arrays(seqs: &Sequences, users: &[i64], ends: Option<&[i64]>) -> Result<Vec<Segment>> {
        let checked = seqs.check_users(users)?;
        let Some(ends) = ends else {
            return Ok(checked
                .into_iter()
                .map(|u| Segment {
                    user: u,
                    end: seqs.sequence(u).len(),
                })
                .collect());
        };
        if ends.len() != users.len() {
            return Err(CoreError::LengthMismatch {
                what: "ends",
                expected: users.len(),
                got: ends.len(),
            });
        }
        checked
            .into_iter()
            .zip(ends)
            .map(|(u, &end)| {
                let len = seqs.sequence(u).len();
                if end < 0 || end as u64 > len as u64 {
                    return Err(CoreError::BadOption {
                        name: "ends",
                        message: format!("end {end} of user {u} is outside 0..={len}"),
                    });
                }
                Ok(Segment {
                    user: u,
                    end: end as usize,
                })
            })
            .collect()
    }
}

/// One built batch, row-major, owned (so it can cross threads and become numpy arrays without a copy).
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub rows: usize,
    pub width: usize,
    /// Negative slots per row: `width`, or 1 when negatives are shared across the sequence.
    pub slots: usize,
    pub k: usize,
    pub users: Vec<i64>,
    /// Each row's prefix length (its segment's `end`): row r covers `sequence(users[r])[..ends[r]]`.
    pub ends: Vec<i64>,
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
    pub negatives: Vec<i64>,
    pub negatives_logq: Vec<f32>,
    pub targets_logq: Vec<f32>,
    /// Whether the spec has a batch-wide pool (then the fields below are filled).
    pub has_pool: bool,
    /// The batch-wide pool (sorted distinct items) and log P(item in pool), when the spec has one.
    pub pool: Vec<i64>,
    pub pool_logq: Vec<f32>,
    /// (rows, width): where each position's target sits in the pool (-1: not there, or no target).
    pub targets_pool: Vec<i64>,
    /// (row, pool index) pairs of pool items in the row's user's training history (`mask_history`).
    pub pool_hit_rows: Vec<i64>,
    pub pool_hit_cols: Vec<i64>,
}

impl Batch {
    /// Hands the buffers back for the next batch to reuse.
    pub fn recycle(self) {
        buffers::give_i64(self.inputs);
        buffers::give_i64(self.targets);
        buffers::give_i64(self.negatives);
        buffers::give_f32(self.negatives_logq);
        buffers::give_f32(self.targets_logq);
        buffers::give_i64(self.targets_pool);
    }
}

/// One row's negatives, their log-probabilities and the targets' log-probabilities, with the row index.
type RowBuffers<'a> = (usize, ((&'a mut [i64], &'a mut [f32]), &'a mut [f32]));

/// Builds the batch of `segments` with random streams `(seed, row)`; identical for any number of threads.
pub fn build_batch(seqs: &Sequences, spec: &BatchSpec, segments: &[Segment], seed: u64) -> Result<Batch> {
    let n_users = seqs.num_users();
    for s in segments {
        if s.user >= n_users {
            return Err(CoreError::UserOutOfRange {
                user: s.user as i64,
                num_users: n_users,
            });
        }
        let len = seqs.sequence(s.user).len();
        if s.end > len {
            return Err(CoreError::BadOption {
                name: "ends",
                message: format!("end {} is beyond user {}'s {} items", s.end, s.user, len),
            });
        }
    }
    if let Some(neg) = &spec.negatives {
        if neg.exclude_seen && neg.num_negatives > 0 {
            let users: Vec<usize> = segments.iter().map(|s| s.user).collect();
            seqs.check_negatives_exist(&users)?;
        }
    }
    let rows = segments.len();
    let width = if spec.pad_to_max {
        spec.max_len
    } else {
        segments.iter().map(|s| spec.filled(s.end)).max().unwrap_or(0).max(1)
    };
    let (k, slots) = match &spec.negatives {
        Some(n) => (n.width(), if n.shared { 1 } else { width }),
        None => (0, 0),
    };
    // Sizes come from user options (batch size, max_len, negatives): never let a product wrap or an
    // allocation abort; each buffer stays under limits::MAX_CELLS.
    let cells = crate::limits::cells("batch", rows, width)?;
    let neg_cells = crate::limits::cells("negatives", rows, crate::limits::cells("negatives", slots, k)?)?;
    let mut b = Batch {
        rows,
        width,
        slots,
        k,
        users: segments.iter().map(|s| s.user as i64).collect(),
        ends: segments.iter().map(|s| s.end as i64).collect(),
        inputs: buffers::take_i64(cells),
        targets: buffers::take_i64(cells),
        negatives: buffers::take_i64(neg_cells),
        negatives_logq: buffers::take_f32(neg_cells),
        targets_logq: buffers::take_f32(if k > 0 || spec.pool.is_some() { cells } else { 0 }),
        ..Batch::default()
    };
    // Waking the pool costs tens of microseconds: below this much work one thread is faster.
    const PARALLEL_MIN_WORK: usize = 1 << 17;
    let threads = if cells.saturating_mul(k + 1) < PARALLEL_MIN_WORK {
        1
    } else {
        spec.num_threads
    };
    pool::run(threads, |parallel| -> Result<()> {
        let fill = |(row, (inp, tgt)): (usize, (&mut [i64], &mut [i64]))| {
            fill_sequence(seqs, spec, segments[row], Rng::for_stream(seed, row as u64), inp, tgt)
        };
        if parallel {
            b.inputs
                .par_chunks_mut(width)
                .zip(b.targets.par_chunks_mut(width))
                .enumerate()
                .for_each(fill);
        } else {
            b.inputs
                .chunks_mut(width)
                .zip(b.targets.chunks_mut(width))
                .enumerate()
                .for_each(fill);
        }
        let Some(neg) = &spec.negatives else { return Ok(()) };
        // The in-batch pool: every row's targets, row-major, so a row's own block is contiguous.
        let mut pool_items: Vec<i32> = Vec::new();
        let mut blocks = Vec::with_capacity(rows);
        if neg.needs_pool() {
            for t in b.targets.chunks(width) {
                let start = pool_items.len();
                pool_items.extend(t.iter().filter(|&&x| x != 0).map(|&x| x as i32));
                blocks.push((start, pool_items.len() - start));
            }
        } else {
            blocks.resize(rows, (0, 0));
        }
        let sample_row = |(row, ((ni, nq), tq)): RowBuffers<'_>| -> Result<()> {
            ni.fill(0);
            nq.fill(0.0);
            tq.fill(0.0);
            let u = segments[row].user;
            // A row that holds all of the batch's targets draws its in-batch negatives uniformly instead.
            let ctx = neg.row_context(seqs, u, pool_items.len() - blocks[row].1);
            // Stream (seed, rows + row): independent of the stream that masked this row.
            let mut rng = Rng::for_stream(seed, (rows + row) as u64);
            let tgt = &b.targets[row * width..(row + 1) * width];
            let first = tgt.iter().position(|&t| t != 0).unwrap_or(width);
            neg.fill_log_q(&ctx, &tgt[first..], &mut tq[first..]);
            if matches!(spec.task, Task::Bert4Rec { .. }) {
                // Cloze rows have unmasked positions among the targets: they carry no log-probability.
                for (t, q) in tgt.iter().zip(tq.iter_mut()) {
                    if *t == 0 {
                        *q = 0.0;
                    }
                }
            }
            let seen: &[i32] = if neg.exclude_seen { seqs.seen(u) } else { &[] };
            with_seen_bits(seen, seqs.num_items() as usize, |bits| -> Result<()> {
                if neg.fill_row_uniform(&mut rng, &ctx, seen, bits, tgt, ni, nq) {
                    return Ok(());
                }
                if neg.shared {
                    if tgt.iter().any(|&t| t != 0) {
                        neg.fill_slot(&mut rng, seqs, u, &ctx, &pool_items, blocks[row], bits, ni, nq)?;
                    }
                    return Ok(());
                }
                for (t, (si, sq)) in tgt.iter().zip(ni.chunks_mut(k).zip(nq.chunks_mut(k))) {
                    if *t != 0 {
                        neg.fill_slot(&mut rng, seqs, u, &ctx, &pool_items, blocks[row], bits, si, sq)?;
                    }
                }
                Ok(())
            })
        };
        let (neg_items, neg_logq, tgt_logq) = (&mut b.negatives, &mut b.negatives_logq, &mut b.targets_logq);
        if parallel {
            neg_items
                .par_chunks_mut(slots * k)
                .zip(neg_logq.par_chunks_mut(slots * k))
                .zip(tgt_logq.par_chunks_mut(width))
                .enumerate()
                .try_for_each(sample_row)
        } else {
            neg_items
                .chunks_mut(slots * k)
                .zip(neg_logq.chunks_mut(slots * k))
                .zip(tgt_logq.chunks_mut(width))
                .enumerate()
                .try_for_each(sample_row)
        }
    })?;
    if let Some(pool) = &spec.pool {
        fill_pool(seqs, pool, segments, seed, &mut b);
    }
    Ok(b)
}

/// Draws the batch's pool from stream (seed, u64::MAX), which no row uses, and locates every target in it.
fn fill_pool(seqs: &Sequences, pool: &CandidatePool, segments: &[Segment], seed: u64, b: &mut Batch) {
    let draw = pool.draw(&mut Rng::for_stream(seed, u64::MAX), &b.targets);
    let num_targets = b.targets.iter().filter(|&&t| t != 0).count();
    let mut where_ = buffers::take_i64(b.targets.len());
    for ((w, q), &t) in where_.iter_mut().zip(b.targets_logq.iter_mut()).zip(&b.targets) {
        if t == 0 {
            *w = -1;
            *q = 0.0;
        } else {
            *w = index_in(&draw.items, t);
            *q = pool.log_inclusion(t, num_targets);
        }
    }
    if pool.mask_history {
        let users: Vec<usize> = segments.iter().map(|s| s.user).collect();
        (b.pool_hit_rows, b.pool_hit_cols) = history_hits(seqs, &users, &draw.items);
    }
    b.has_pool = true;
    b.targets_pool = where_;
    b.pool = draw.items;
    b.pool_logq = draw.logq;
}

/// Writes one left-padded row: SASRec shifted pairs, or BERT4Rec masked inputs with their labels.
fn fill_sequence(seqs: &Sequences, spec: &BatchSpec, seg: Segment, mut rng: Rng, inp: &mut [i64], tgt: &mut [i64]) {
    // Buffers are recycled: every row writes all of its positions, padding included.
    inp.fill(0);
    tgt.fill(0);
    let seq = &seqs.sequence(seg.user)[..seg.end];
    let width = inp.len();
    let n = spec.filled(seg.end).min(width);
    let pad = width - n;
    match spec.task {
        Task::SasRec => {
            let start = seq.len().saturating_sub(n + 1);
            for t in 0..n {
                inp[pad + t] = seq[start + t] as i64;
                tgt[pad + t] = seq[start + t + 1] as i64;
            }
        }
        Task::Bert4Rec { mask_prob, mask_token } => {
            let window = &seq[seq.len() - n..];
            let mut masked = 0;
            for (t, &x) in window.iter().enumerate() {
                let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                if u < mask_prob {
                    inp[pad + t] = mask_token;
                    tgt[pad + t] = x as i64;
                    masked += 1;
                } else {
                    inp[pad + t] = x as i64;
                }
            }
            // Every sequence trains on at least one position: the most recent, as evaluation asks for.
            if masked == 0 && n > 0 {
                tgt[width - 1] = inp[width - 1];
                inp[width - 1] = mask_token;
            }
        }
    }
}

/// The candidates per user of the sampled protocol, checked before anything is allocated for `users` rows.
pub fn check_candidates(users: usize, n: i64) -> Result<usize> {
    let n = positive("n", n)?;
    let n = crate::limits::at_most("n", n as u64, crate::limits::MAX_NEGATIVES)?;
    crate::limits::cells("candidates", users, n)?;
    Ok(n)
}

/// Evaluation candidates of the sampled protocol: `n` items per user, with replacement, from the items the
/// user never interacted with, uniformly (`popularity` None) or by popularity. Row b uses stream (seed, b).
pub fn sampled_candidates(
    seqs: &Sequences,
    users: &[i64],
    n: i64,
    popularity: Option<&AliasTable>,
    seed: u64,
    out: &mut [i64],
) -> Result<()> {
    let n = check_candidates(users.len(), n)?;
    let users = seqs.check_users(users)?;
    if out.len() != users.len() * n {
        return Err(CoreError::LengthMismatch {
            what: "out",
            expected: users.len() * n,
            got: out.len(),
        });
    }
    seqs.check_negatives_exist(&users)?;
    let num_items = seqs.num_items() as u64;
    pool::run(0, |parallel| {
        let fill = |(row, row_out): (usize, &mut [i64])| -> Result<()> {
            let u = users[row];
            let mut rng = Rng::for_stream(seed, row as u64);
            let seen = seqs.seen(u);
            let mass = popularity.map_or(0.0, |t| t.mass(seen));
            with_seen_bits(seen, num_items as usize, |bits| -> Result<()> {
                for slot in row_out.iter_mut() {
                    *slot = match popularity {
                        None => uniform_unseen(&mut rng, num_items, seen, bits),
                        Some(t) => t.sample_excluding(&mut rng, seen, mass, Some(bits)).ok_or(
                            CoreError::ZeroWeightNegatives {
                                user: u as i64,
                                unseen: (num_items as i64).saturating_sub(seen.len() as i64),
                            },
                        )?,
                    } as i64;
                }
                Ok(())
            })
        };
        if parallel {
            out.par_chunks_mut(n).enumerate().try_for_each(fill)
        } else {
            out.chunks_mut(n).enumerate().try_for_each(fill)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negatives::{NegativeMode, NegativeSampler};

    /// A SASRec batch padded to `l` of whole sequences, with `k` uniform negatives per position from items
    /// the user never saw: (inputs, targets, negatives).
    fn build(seqs: &Sequences, users: &[i64], l: usize, k: usize, seed: u64) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let sampler = NegativeSampler::new(seqs, NegativeMode::Uniform, k, 0, false, true, 1.0).unwrap();
        let spec = BatchSpec::new(Task::SasRec, l as i64, true, Some(sampler), 0).unwrap();
        let segs = Segment::from_arrays(seqs, users, None).unwrap();
        let b = build_batch(seqs, &spec, &segs, seed).unwrap();
        (b.inputs, b.targets, b.negatives)
    }

    #[test]
    fn shifts_pads_and_truncates() {
        let seqs = Sequences::new(&[0, 5, 7, 8], &[1, 2, 3, 4, 5, 6, 7, 8], 20).unwrap();
        let (i, p, n) = build(&seqs, &[0, 1, 2], 3, 2, 0);
        assert_eq!(i, vec![2, 3, 4, 0, 0, 6, 0, 0, 0]);
        assert_eq!(p, vec![3, 4, 5, 0, 0, 7, 0, 0, 0]);
        for (t, &x) in n.iter().enumerate() {
            let (row, pos) = (t / 6, (t % 6) / 2);
            let padded = p[row * 3 + pos] == 0;
            assert_eq!(x == 0, padded, "negative {x} at row {row} pos {pos}");
            if !padded {
                assert!(!seqs.seen(row).contains(&(x as i32)));
            }
        }
    }

    #[test]
    fn same_seed_same_batch_other_seed_other_negatives() {
        let items: Vec<i32> = (0..300).map(|x| (x % 97) + 1).collect();
        let offsets: Vec<i64> = (0..=30).map(|u| u * 10).collect();
        let seqs = Sequences::new(&offsets, &items, 100).unwrap();
        let users: Vec<i64> = (0..30).collect();
        let a = build(&seqs, &users, 8, 3, 42);
        let b = build(&seqs, &users, 8, 3, 42);
        let c = build(&seqs, &users, 8, 3, 43);
        assert_eq!(a, b);
        assert_eq!(a.0, c.0);
        assert_ne!(a.2, c.2);
    }

    #[test]
    fn threads_do_not_change_the_batch() {
        // Large enough (rows x width x (k + 1) over PARALLEL_MIN_WORK) that the pool really runs it.
        let (users, len) = (3000usize, 40usize);
        let items: Vec<i32> = (0..users * len).map(|x| (x * 7 % 499) as i32 + 1).collect();
        let offsets: Vec<i64> = (0..=users).map(|u| (u * len) as i64).collect();
        let seqs = Sequences::new(&offsets, &items, 500).unwrap();
        let segs: Vec<Segment> = (0..users)
            .map(|u| Segment {
                user: u,
                end: 5 + u % 35,
            })
            .collect();
        for mode in [NegativeMode::Uniform, NegativeMode::Mixed] {
            let sampler = NegativeSampler::new(&seqs, mode, 2, 2, false, true, 1.0).unwrap();
            let one = BatchSpec::new(Task::SasRec, 30, false, Some(sampler.clone()), 1).unwrap();
            let all = BatchSpec::new(Task::SasRec, 30, false, Some(sampler), 0).unwrap();
            let a = build_batch(&seqs, &one, &segs, 3).unwrap();
            let b = build_batch(&seqs, &all, &segs, 3).unwrap();
            assert!(a.rows * a.width * (a.k + 1) >= 1 << 17);
            assert_eq!(
                (a.inputs, a.negatives, a.negatives_logq),
                (b.inputs, b.negatives, b.negatives_logq)
            );
        }
    }

    #[test]
    fn bert_masks_at_least_one_position() {
        let seqs = Sequences::new(&[0, 4], &[1, 2, 3, 4], 10).unwrap();
        let spec = BatchSpec::new(
            Task::Bert4Rec {
                mask_prob: 1e-9,
                mask_token: 11,
            },
            6,
            false,
            None,
            1,
        )
        .unwrap();
        let b = build_batch(&seqs, &spec, &[Segment { user: 0, end: 4 }], 0).unwrap();
        assert_eq!(b.width, 4);
        assert_eq!(b.inputs, vec![1, 2, 3, 11]);
        assert_eq!(b.targets, vec![0, 0, 0, 4]);
    }

    #[test]
    fn a_one_row_in_batch_batch_reports_the_uniform_logq_it_drew_from() {
        // Items 6..=10 never occur in training: their frequency is 0, so a frequency logQ would be -inf.
        let seqs = Sequences::new(&[0, 5], &[1, 2, 3, 4, 5], 10).unwrap();
        let sampler = NegativeSampler::new(&seqs, NegativeMode::InBatch, 50, 0, false, true, 1.0).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 4, true, Some(sampler), 1).unwrap();
        let b = build_batch(&seqs, &spec, &[Segment { user: 0, end: 5 }], 0).unwrap();
        assert!(b.negatives.iter().any(|&x| x > 5), "the case this test is about");
        let q = -(10f64).ln() as f32;
        assert!(b.negatives_logq.iter().all(|&x| (x - q).abs() < 1e-6));
        assert!(b.targets_logq.iter().all(|&x| (x - q).abs() < 1e-6));
    }

    #[test]
    fn popularity_candidates_of_zero_weight_items_say_so() {
        // Items 3..=5 never occur, so their popularity is 0: user 0 has unseen items, none drawable.
        let seqs = Sequences::new(&[0, 2], &[1, 2], 5).unwrap();
        let table = AliasTable::from_counts(seqs.item_counts(), 1.0).unwrap();
        let mut out = vec![0i64; 4];
        let r = sampled_candidates(&seqs, &[0], 4, Some(&table), 0, &mut out);
        assert_eq!(r, Err(CoreError::ZeroWeightNegatives { user: 0, unseen: 3 }));
    }

    #[test]
    fn rejects_bad_arguments() {
        let seqs = Sequences::new(&[0, 2], &[1, 2], 2).unwrap();
        assert!(matches!(
            BatchSpec::new(Task::SasRec, 0, true, None, 1),
            Err(CoreError::NonPositive { name: "max_len", .. })
        ));
        let sampler = NegativeSampler::new(&seqs, NegativeMode::Uniform, 1, 0, false, true, 1.0).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 4, true, Some(sampler), 1).unwrap();
        let r = build_batch(&seqs, &spec, &[Segment { user: 0, end: 2 }], 0);
        assert!(matches!(r, Err(CoreError::NoNegatives { .. })));
        assert!(matches!(
            Segment::from_arrays(&seqs, &[0], Some(&[3])),
            Err(CoreError::BadOption { name: "ends", .. })
        ));
        assert!(matches!(
            Segment::from_arrays(&seqs, &[0, 0], Some(&[1])),
            Err(CoreError::LengthMismatch { what: "ends", .. })
        ));
        let mut out = vec![0i64; 3];
        assert!(matches!(
            sampled_candidates(&seqs, &[5], 3, None, 0, &mut out),
            Err(CoreError::UserOutOfRange { .. })
        ));
        let one = Sequences::new(&[0, 1], &[1], 1).unwrap();
        assert!(NegativeSampler::new(&one, NegativeMode::Uniform, 1, 0, false, true, 1.0).is_err());
        assert!(Task::parse("gpt", 0.2, None, 5).is_err());
        assert!(matches!(
            Task::parse("bert4rec", 0.2, Some(3), 5),
            Err(CoreError::BadOption { name: "mask_token", .. })
        ));
        assert_eq!(
            Task::parse("bert4rec", 0.2, None, 5).unwrap(),
            Task::Bert4Rec {
                mask_prob: 0.2,
                mask_token: 6
            }
        );
    }
}
