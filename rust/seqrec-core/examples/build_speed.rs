//! Times `build_batch` on an ML-1M-shaped store without Python in the way: `cargo run --release --example build_speed`.

use std::time::Instant;

use seqrec_core::batch::{build_batch, BatchSpec, Segment, Task};
use seqrec_core::negatives::{NegativeMode, NegativeSampler};
use seqrec_core::rng::Rng;
use seqrec_core::Sequences;

fn main() {
    let (users, items, mean) = (6040usize, 3416i64, 165u64);
    let mut rng = Rng::new(0);
    let mut offsets = vec![0i64];
    let mut seq = Vec::new();
    for _ in 0..users {
        let n = 20 + rng.below(2 * (mean - 20));
        for _ in 0..n {
            seq.push(rng.below(items as u64) as i32 + 1);
        }
        offsets.push(seq.len() as i64);
    }
    let store = Sequences::new(&offsets, &seq, items).unwrap();
    let segs: Vec<Segment> = (0..128)
        .map(|i| Segment {
            user: i * 37 % users,
            end: store.sequence(i * 37 % users).len(),
        })
        .collect();
    for (name, neg) in [
        ("none", None),
        (
            "uniform",
            Some(NegativeSampler::new(&store, NegativeMode::Uniform, 1, 0, false, true, 1.0).unwrap()),
        ),
        (
            "uniform-noexcl",
            Some(NegativeSampler::new(&store, NegativeMode::Uniform, 1, 0, false, false, 1.0).unwrap()),
        ),
    ] {
        let spec = BatchSpec::new(Task::SasRec, 200, true, neg, 1).unwrap();
        let reps = 2000;
        let t = Instant::now();
        let mut sink = 0i64;
        for r in 0..reps {
            let b = build_batch(&store, &spec, &segs, r).unwrap();
            sink += b.negatives.first().copied().unwrap_or(0);
            b.recycle();
        }
        println!(
            "{name}: {:.1} us/batch ({sink})",
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        );
    }
}
