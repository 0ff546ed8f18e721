//! Epoch planning: which training sequences exist (with sliding windows) and how they group into batches.

use crate::batch::{BatchSpec, Segment};
use crate::error::{positive, CoreError, Result};
use crate::rng::{derive_seed, Rng};
use crate::sequences::Sequences;

/// The training sequences of `users`: one per user ending at its last item, or with `stride > 0`, windows
/// ending every `stride` items back from the end, so long histories train on all their transitions.
/// Users too short to give a target are left out.
pub fn make_segments(seqs: &Sequences, spec: &BatchSpec, users: &[i64], stride: usize) -> Result<Vec<Segment>> {
    let users = seqs.check_users(users)?;
    let window = spec.window();
    let min_items = spec.min_items();
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let mut end = seqs.sequence(u).len();
        if end < min_items {
            continue;
        }
        loop {
            out.push(Segment { user: u, end });
            // end > window >= stride's useful range: `end - stride` cannot wrap once end > stride.
            if stride == 0 || end <= window || end <= stride || end - stride < min_items {
                break;
            }
            end -= stride;
        }
    }
    Ok(out)
}

/// Shuffles `segments` for `epoch` and cuts them into batches.
///
/// With `bucket`, the shuffled list is cut into groups of `bucket_batches * batch_size` sequences, each
/// group sorted by length, so that a batch holds sequences of similar length and pads little; the order of
/// the batches is then shuffled. Batches hold `batch_size` sequences, or with `max_tokens > 0` as many as
/// fit in `max_tokens` padded positions (at least one): long sequences come in small batches and short
/// ones in large batches, so every step sees about the same number of targets, which keeps the gradient
/// scale steady from step to step. Everything depends only on (seed, epoch).
#[allow(clippy::too_many_arguments)]
pub fn plan_epoch(
    spec: &BatchSpec,
    segments: &[Segment],
    batch_size: i64,
    bucket: bool,
    bucket_batches: usize,
    max_tokens: usize,
    seed: u64,
    epoch: u64,
) -> Result<Vec<Vec<Segment>>> {
    let batch_size = positive("batch_size", batch_size)?;
    let batch_size = crate::limits::at_most("batch_size", batch_size as u64, crate::limits::MAX_BATCH)?;
    crate::limits::at_most("max_tokens", max_tokens as u64, crate::limits::MAX_CELLS)?;
    let mut rng = Rng::for_stream(derive_seed(seed, epoch), u64::MAX);
    let mut order: Vec<Segment> = segments.to_vec();
    shuffle(&mut rng, &mut order);
    let group = if bucket {
        batch_size
            .checked_mul(bucket_batches.max(1))
            .ok_or_else(|| CoreError::BadOption {
                name: "batch_size",
                message: format!("{batch_size} x {bucket_batches} bucket batches overflows"),
            })?
    } else {
        order.len().max(1)
    };
    let mut batches: Vec<Vec<Segment>> = Vec::new();
    for chunk in order.chunks_mut(group) {
        if bucket {
            chunk.sort_by_key(|s| std::cmp::Reverse(spec.filled(s.end)));
        }
        if max_tokens == 0 {
            batches.extend(chunk.chunks(batch_size).map(|c| c.to_vec()));
            continue;
        }
        let mut current: Vec<Segment> = Vec::new();
        let mut width = 0;
        for &s in chunk.iter() {
            let w = width.max(spec.filled(s.end).max(1));
            if !current.is_empty() && (current.len() + 1) * w > max_tokens {
                batches.push(std::mem::take(&mut current));
                width = 0;
            }
            width = width.max(spec.filled(s.end).max(1));
            current.push(s);
        }
        if !current.is_empty() {
            batches.push(current);
        }
    }
    if bucket {
        shuffle(&mut rng, &mut batches);
    }
    Ok(batches)
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// How one epoch is cut into batches (the options of `plan_epoch`).
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    pub batch_size: i64,
    pub bucket: bool,
    pub bucket_batches: usize,
    pub max_tokens: usize,
}

/// One rank's batches of one epoch, with the seed they are built from and the epoch's target statistics.
#[derive(Clone, Debug)]
pub struct EpochPlan {
    /// This rank's batches, in order.
    pub batches: Vec<Vec<Segment>>,
    /// Batch i is built from `derive_seed(seed, i)`: derived from (seed, epoch) and, when sharded, the rank.
    pub seed: u64,
    /// Batches of the whole epoch, all ranks together.
    pub total_batches: usize,
    /// Expected training targets of the whole epoch (see `BatchSpec::expected_targets`).
    pub expected_targets: f64,
}

impl EpochPlan {
    /// Rank `rank`'s share of epoch `epoch` of `segments`.
    pub fn new(
        spec: &BatchSpec,
        segments: &[Segment],
        options: PlanOptions,
        seed: u64,
        epoch: u64,
        rank: usize,
        world: usize,
    ) -> Result<Self> {
        let all = plan_epoch(
            spec,
            segments,
            options.batch_size,
            options.bucket,
            options.bucket_batches,
            options.max_tokens,
            seed,
            epoch,
        )?;
        let total_batches = all.len();
        let expected_targets = segments.iter().map(|s| spec.expected_targets(s.end)).sum();
        let batches = shard(all, rank, world)?;
        let mut seed = derive_seed(seed, epoch);
        if world > 1 {
            seed = derive_seed(seed, rank as u64);
        }
        Ok(EpochPlan {
            batches,
            seed,
            total_batches,
            expected_targets,
        })
    }

    /// One over the targets of an average batch of the whole epoch: the factor that turns a batch's summed
    /// loss into a per-target mean that weighs every target alike, whatever its batch's size (the same on
    /// every rank).
    pub fn loss_scale(&self) -> f64 {
        self.total_batches as f64 / self.expected_targets.max(1e-9)
    }
}

/// Rank `rank`'s share of an epoch's batches for data-parallel training over `world` processes: every
/// `world`-th batch from `rank`, the same number on every rank (DDP steps in lockstep, so up to
/// `world - 1` batches of the epoch are left out). Together the shares are disjoint.
pub fn shard(batches: Vec<Vec<Segment>>, rank: usize, world: usize) -> Result<Vec<Vec<Segment>>> {
    if world == 0 || rank >= world {
        return Err(CoreError::BadOption {
            name: "rank",
            message: format!("rank {rank} must lie in 0..world ({world})"),
        });
    }
    let per_rank = batches.len() / world;
    Ok(batches.into_iter().skip(rank).step_by(world).take(per_rank).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Task;

    #[test]
    fn shards_are_disjoint_equal_and_cover_all_but_the_remainder() {
        let batches: Vec<Vec<Segment>> = (0..11).map(|u| vec![Segment { user: u, end: 1 }]).collect();
        let shards: Vec<Vec<Vec<Segment>>> = (0..3).map(|r| shard(batches.clone(), r, 3).unwrap()).collect();
        assert!(shards.iter().all(|s| s.len() == 3));
        let mut users: Vec<usize> = shards.iter().flatten().map(|b| b[0].user).collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), 9);
        assert_eq!(shard(batches.clone(), 0, 1).unwrap().len(), 11);
        assert!(shard(batches.clone(), 3, 3).is_err());
        assert!(shard(batches, 0, 0).is_err());
    }

    #[test]
    fn a_stride_longer_than_the_window_ends_instead_of_wrapping() {
        let items: Vec<i32> = (1..=60).collect();
        let seqs = Sequences::new(&[0, 60], &items, 60).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 50, false, None, 1).unwrap();
        let ends: Vec<usize> = make_segments(&seqs, &spec, &[0], 61)
            .unwrap()
            .iter()
            .map(|s| s.end)
            .collect();
        assert_eq!(ends, vec![60]);
    }

    #[test]
    fn huge_batch_sizes_are_an_error_not_a_wrap() {
        let seqs = Sequences::new(&[0, 3], &[1, 2, 3], 3).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 5, false, None, 1).unwrap();
        let segs = make_segments(&seqs, &spec, &[0], 0).unwrap();
        assert!(plan_epoch(&spec, &segs, 1 << 58, true, 64, 0, 1, 0).is_err());
    }

    #[test]
    fn epoch_plan_carries_its_seed_and_target_statistics() {
        let items: Vec<i32> = (1..=30).map(|i| i % 9 + 1).collect();
        let seqs = Sequences::new(&[0, 10, 12, 30], &items, 10).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 8, false, None, 1).unwrap();
        let segs = make_segments(&seqs, &spec, &[0, 1, 2], 0).unwrap();
        let options = PlanOptions {
            batch_size: 1,
            bucket: false,
            bucket_batches: 1,
            max_tokens: 0,
        };
        let plan = EpochPlan::new(&spec, &segs, options, 7, 2, 0, 1).unwrap();
        assert_eq!(plan.total_batches, 3);
        // SASRec targets: min(end - 1, max_len) = 8, 1, 8.
        assert_eq!(plan.expected_targets, 17.0);
        assert!((plan.loss_scale() - 3.0 / 17.0).abs() < 1e-12);
        assert_eq!(plan.seed, derive_seed(7, 2));
        let r1 = EpochPlan::new(&spec, &segs, options, 7, 2, 1, 2).unwrap();
        assert_eq!(r1.batches.len(), 1);
        assert_eq!(r1.seed, derive_seed(derive_seed(7, 2), 1));
        assert_eq!(r1.total_batches, 3);
    }

    #[test]
    fn windows_cover_every_transition_once() {
        let items: Vec<i32> = (1..=23).collect();
        let seqs = Sequences::new(&[0, 23], &items, 30).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 5, false, None, 1).unwrap();
        let segs = make_segments(&seqs, &spec, &[0], 5).unwrap();
        let ends: Vec<usize> = segs.iter().map(|s| s.end).collect();
        assert_eq!(ends, vec![23, 18, 13, 8, 3]);
        // targets of a window ending at e are positions e-5..e-1 (0-based), clipped at 1.
        let mut covered = vec![0; 23];
        for e in ends {
            for c in &mut covered[e.saturating_sub(5).max(1)..e] {
                *c += 1;
            }
        }
        assert_eq!(covered[0], 0);
        assert!(covered[1..].iter().all(|&c| c == 1), "{covered:?}");
    }

    #[test]
    fn every_segment_once_and_buckets_are_tight() {
        let mut offsets = vec![0i64];
        let mut items = vec![];
        for u in 0..200 {
            let n = 2 + (u * 37 % 50);
            items.extend((0..n).map(|i| i % 90 + 1));
            offsets.push(items.len() as i64);
        }
        let seqs = Sequences::new(&offsets, &items, 90).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 60, false, None, 1).unwrap();
        let users: Vec<i64> = (0..200).collect();
        let segs = make_segments(&seqs, &spec, &users, 0).unwrap();
        let plain = plan_epoch(&spec, &segs, 20, false, 8, 0, 1, 0).unwrap();
        let bucketed = plan_epoch(&spec, &segs, 20, true, 8, 0, 1, 0).unwrap();
        for plan in [&plain, &bucketed] {
            let mut seen: Vec<usize> = plan.iter().flatten().map(|s| s.user).collect();
            seen.sort();
            assert_eq!(seen, (0..200).collect::<Vec<_>>());
        }
        let waste = |plan: &Vec<Vec<Segment>>| -> usize {
            plan.iter()
                .map(|b| {
                    let w = b.iter().map(|s| spec.filled(s.end)).max().unwrap();
                    b.iter().map(|s| w - spec.filled(s.end)).sum::<usize>()
                })
                .sum()
        };
        assert!(
            waste(&bucketed) * 3 < waste(&plain),
            "{} vs {}",
            waste(&bucketed),
            waste(&plain)
        );
        assert_eq!(plan_epoch(&spec, &segs, 20, true, 8, 0, 1, 0).unwrap(), bucketed);
        assert_ne!(plan_epoch(&spec, &segs, 20, true, 8, 0, 1, 1).unwrap(), bucketed);
        // A token budget: every batch within it (or a single sequence), every segment once.
        let budgeted = plan_epoch(&spec, &segs, 20, true, 8, 300, 1, 0).unwrap();
        let mut seen: Vec<usize> = budgeted.iter().flatten().map(|s| s.user).collect();
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        for b in &budgeted {
            let w = b.iter().map(|s| spec.filled(s.end)).max().unwrap();
            assert!(b.len() == 1 || b.len() * w <= 300, "{} x {}", b.len(), w);
        }
    }
}
