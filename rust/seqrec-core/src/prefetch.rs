//! Builds an epoch's batches ahead on a background thread (double buffering) while the model trains.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::batch::{build_batch, Batch, BatchSpec, Segment};
use crate::error::{CoreError, Result};
use crate::rng::derive_seed;
use crate::sequences::Sequences;

/// Iterator over built batches; dropping it stops the producer thread.
pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
    failed_start: Option<String>,
}

/// Batches built ahead: at least one, at most `limits::MAX_PREFETCH` (a channel that large would not fit).
pub fn check_depth(depth: usize) -> Result<usize> {
    Ok(crate::limits::at_most("prefetch", depth as u64, crate::limits::MAX_PREFETCH)?.max(1))
}

impl Prefetcher {
    /// Starts building `batches` in order, at most `depth` ahead. Batch i uses seed `derive_seed(seed, i)`.
    pub fn start(
        seqs: Arc<Sequences>,
        spec: Arc<BatchSpec>,
        batches: Vec<Vec<Segment>>,
        seed: u64,
        depth: usize,
    ) -> Self {
        let remaining = batches.len();
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("seqrec-prefetch".into())
            .spawn(move || {
                for (i, segs) in batches.iter().enumerate() {
                    let built = build_batch(&seqs, &spec, segs, derive_seed(seed, i as u64));
                    let failed = built.is_err();
                    // A closed channel means the consumer is gone: stop quietly.
                    if tx.send(built).is_err() || failed {
                        return;
                    }
                }
            });
        match handle {
            Ok(h) => Prefetcher {
                rx: Some(rx),
                handle: Some(h),
                remaining,
                failed_start: None,
            },
            // No thread: the first call says so, instead of an epoch that silently has no batches.
            Err(e) => Prefetcher {
                rx: None,
                handle: None,
                remaining,
                failed_start: Some(e.to_string()),
            },
        }
    }

    /// The next batch, waiting for the producer if it is behind; None at the end of the epoch. A producer
    /// that could not start or stopped before the epoch's end is an error, never a shorter epoch.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        if let Some(e) = self.failed_start.take() {
            self.remaining = 0;
            return Some(Err(CoreError::Engine {
                message: format!("the batch-building thread could not start: {e}"),
            }));
        }
        let received = match self.rx.as_ref() {
            Some(rx) => rx.recv().ok(),
            None => None,
        };
        match received {
            Some(r) => {
                self.remaining -= 1;
                if r.is_err() {
                    self.remaining = 0;
                }
                Some(r)
            }
            None => {
                let left = self.remaining;
                self.remaining = 0;
                Some(Err(CoreError::Engine {
                    message: format!("the batch-building thread stopped with {left} batch(es) of the epoch unbuilt"),
                }))
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next send fail, so it ends; then reap it.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Task;

    fn setup() -> (Arc<Sequences>, Arc<BatchSpec>, Vec<Vec<Segment>>) {
        let items: Vec<i32> = (1..=40).map(|i| i % 9 + 1).collect();
        let offsets: Vec<i64> = (0..=8).map(|u| u * 5).collect();
        let seqs = Sequences::new(&offsets, &items, 10).unwrap();
        let spec = BatchSpec::new(Task::SasRec, 4, false, None, 1).unwrap();
        let batches = (0..8).map(|u| vec![Segment { user: u, end: 5 }]).collect();
        (Arc::new(seqs), Arc::new(spec), batches)
    }

    #[test]
    fn yields_every_batch_in_order_then_ends() {
        let (seqs, spec, batches) = setup();
        let got: Vec<Vec<i64>> = Prefetcher::start(seqs, spec, batches, 3, 2)
            .map(|b| b.unwrap().users)
            .collect();
        assert_eq!(got, (0..8).map(|u| vec![u]).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_early_stops_the_producer() {
        let (seqs, spec, batches) = setup();
        let mut p = Prefetcher::start(seqs, spec, batches, 3, 1);
        assert!(p.next_batch().unwrap().is_ok());
        drop(p); // joins the producer: a hang here would fail the test by timeout
    }

    #[test]
    fn a_failing_batch_is_reported_and_ends_the_epoch() {
        let (seqs, spec, mut batches) = setup();
        batches[2] = vec![Segment { user: 0, end: 99 }]; // beyond the user's items
        let mut p = Prefetcher::start(seqs, spec, batches, 3, 4);
        assert!(p.next_batch().unwrap().is_ok());
        assert!(p.next_batch().unwrap().is_ok());
        assert!(p.next_batch().unwrap().is_err());
        assert!(p.next_batch().is_none());
    }

    #[test]
    fn a_producer_that_dies_is_an_error_not_a_short_epoch() {
        let (_, _, batches) = setup();
        let (tx, rx) = sync_channel::<Result<Batch>>(1);
        drop(tx); // as if the thread had died before sending anything
        let mut p = Prefetcher {
            rx: Some(rx),
            handle: None,
            remaining: batches.len(),
            failed_start: None,
        };
        let err = p.next_batch().unwrap().unwrap_err();
        assert!(err.to_string().contains("8 batch(es)"), "{err}");
        assert!(p.next_batch().is_none());
        let mut q = Prefetcher {
            rx: None,
            handle: None,
            remaining: 1,
            failed_start: Some("no threads".into()),
        };
        assert!(q
            .next_batch()
            .unwrap()
            .unwrap_err()
            .to_string()
            .contains("could not start"));
    }
}
