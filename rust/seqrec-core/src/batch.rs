//! Batch builders: SASRec next-item training batches and sampled-protocol evaluation candidates.

use rayon::prelude::*;

use crate::error::{positive, CoreError, Result};
use crate::rng::Rng;
use crate::sampling::uniform_excluding;
use crate::sequences::Sequences;

/// Output buffers of one SASRec batch, row-major: `inputs` and `positives` are (B, L), `negatives` (B, L, K).
pub struct SasRecBatchMut<'a> {
    pub inputs: &'a mut [i64],
    pub positives: &'a mut [i64],
    pub negatives: &'a mut [i64],
}

/// Fills a SASRec training batch for `users`.
///
/// Row b holds the last `max_len` transitions of user `users[b]`, left-padded with 0: `inputs[t]` is an item
/// and `positives[t]` the one that followed it; `negatives[t, :]` are `k` items drawn uniformly from those
/// the user never interacted with (anywhere in the sequence), 0 on padded positions. Row b draws from its own
/// stream `(seed, b)`, so the batch is the same whatever the number of threads.
pub fn sasrec_batch(
    seqs: &Sequences,
    users: &[i64],
    max_len: i64,
    num_negatives: i64,
    seed: u64,
    out: SasRecBatchMut<'_>,
) -> Result<()> {
    let l = positive("max_len", max_len)?;
    let k = positive("num_negatives", num_negatives)?;
    let users = seqs.check_users(users)?;
    let b = users.len();
    for (what, buf, width) in [
        ("inputs", out.inputs.len(), l),
        ("positives", out.positives.len(), l),
        ("negatives", out.negatives.len(), l * k),
    ] {
        if buf != b * width {
            return Err(CoreError::LengthMismatch { what, expected: b * width, got: buf });
        }
    }
    seqs.check_negatives_exist(&users)?;
    let num_items = seqs.num_items() as u64;
    out.inputs
        .par_chunks_mut(l)
        .zip(out.positives.par_chunks_mut(l))
        .zip(out.negatives.par_chunks_mut(l * k))
        .zip(users.par_iter().enumerate())
        .for_each(|(((inp, pos), neg), (row, &u))| {
            let seq = seqs.sequence(u);
            let seen = seqs.seen(u);
            let n_pairs = seq.len().saturating_sub(1).min(l);
            let pad = l - n_pairs;
            inp[..pad].fill(0);
            pos[..pad].fill(0);
            neg[..pad * k].fill(0);
            let start = seq.len().saturating_sub(n_pairs + 1);
            let mut rng = Rng::for_stream(seed, row as u64);
            for t in 0..n_pairs {
                inp[pad + t] = seq[start + t] as i64;
                pos[pad + t] = seq[start + t + 1] as i64;
                for slot in &mut neg[(pad + t) * k..(pad + t + 1) * k] {
                    *slot = uniform_excluding(&mut rng, num_items, seen) as i64;
                }
            }
        });
    Ok(())
}

/// Fills `out` (B, n) with `n` items per user drawn uniformly, with replacement, from the items the user
/// never interacted with: the candidates of the sampled evaluation protocol. Row b uses stream `(seed, b)`.
pub fn uniform_negatives(seqs: &Sequences, users: &[i64], n: i64, seed: u64, out: &mut [i64]) -> Result<()> {
    let n = positive("n", n)?;
    let users = seqs.check_users(users)?;
    if out.len() != users.len() * n {
        return Err(CoreError::LengthMismatch { what: "out", expected: users.len() * n, got: out.len() });
    }
    seqs.check_negatives_exist(&users)?;
    let num_items = seqs.num_items() as u64;
    out.par_chunks_mut(n).zip(users.par_iter().enumerate()).for_each(|(row_out, (row, &u))| {
        let mut rng = Rng::for_stream(seed, row as u64);
        let seen = seqs.seen(u);
        for slot in row_out.iter_mut() {
            *slot = uniform_excluding(&mut rng, num_items, seen) as i64;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seqs: &Sequences, users: &[i64], l: usize, k: usize, seed: u64) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let b = users.len();
        let (mut i, mut p, mut n) = (vec![-1; b * l], vec![-1; b * l], vec![-1; b * l * k]);
        sasrec_batch(
            seqs,
            users,
            l as i64,
            k as i64,
            seed,
            SasRecBatchMut { inputs: &mut i, positives: &mut p, negatives: &mut n },
        )
        .unwrap();
        (i, p, n)
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
    fn rejects_bad_arguments() {
        let seqs = Sequences::new(&[0, 2], &[1, 2], 2).unwrap();
        let mut buf = vec![0i64; 4];
        let mut b2 = vec![0i64; 4];
        let mut b3 = vec![0i64; 4];
        let r = sasrec_batch(
            &seqs,
            &[0],
            0,
            1,
            0,
            SasRecBatchMut { inputs: &mut buf, positives: &mut b2, negatives: &mut b3 },
        );
        assert!(matches!(r, Err(CoreError::NonPositive { name: "max_len", .. })));
        let r = sasrec_batch(
            &seqs,
            &[0],
            4,
            1,
            0,
            SasRecBatchMut { inputs: &mut buf, positives: &mut b2, negatives: &mut b3 },
        );
        assert!(matches!(r, Err(CoreError::NoNegatives { .. })));
        let mut out = vec![0i64; 3];
        assert!(matches!(uniform_negatives(&seqs, &[5], 3, 0, &mut out), Err(CoreError::UserOutOfRange { .. })));
    }
}
