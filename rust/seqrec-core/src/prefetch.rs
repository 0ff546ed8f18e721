//! Builds an epoch's batches ahead on a background thread (double buffering) while the model trains.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::batch::{build_batch, Batch, BatchSpec, Segment};
use crate::error::Result;
use crate::rng::derive_seed;
use crate::sequences::Sequences;

/// Iterator over built batches; dropping it stops the producer thread.
pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
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
            })
            .ok();
        Prefetcher {
            rx: Some(rx),
            handle,
            remaining,
        }
    }

    /// The next batch, waiting for the producer if it is behind; None at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(r) => {
                self.remaining -= 1;
                if r.is_err() {
                    self.remaining = 0;
                }
                Some(r)
            }
            Err(_) => {
                self.remaining = 0;
                None
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
