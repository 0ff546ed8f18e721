//! `BatchBuilder`: converts Python options and arrays for the core's batch spec, planner and builder.

use std::sync::{Arc, Mutex};

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqrec_core::batch::{build_batch, BatchSpec, Segment, Task};
use seqrec_core::candidate_pool::{CandidatePool, PoolSampling};
use seqrec_core::negatives::{NegativeMode, NegativeSampler};
use seqrec_core::plan::{make_segments, EpochPlan, PlanOptions};
use seqrec_core::prefetch::{check_depth, Prefetcher};
use seqrec_core::{CoreError, Sequences};

use crate::epoch::EpochIterator;
use crate::errors::{contiguous, to_py};
use crate::lend::batch_to_dict;
use crate::store::SequenceStore;

/// (users, ends) of `BatchBuilder.segments`.
type ArrayPair<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// A count option from Python (>= 0) as usize, or the core's error naming it.
fn count(name: &'static str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        to_py(CoreError::BadOption {
            name,
            message: format!("must be >= 0, got {value}"),
        })
    })
}

/// Builds training batches (SASRec or BERT4Rec) with a chosen negative sampler, and whole epochs of them
/// on a background thread. See `seqrec/_core.pyi` for the arguments.
#[pyclass(frozen, module = "seqrec._core")]
pub struct BatchBuilder {
    store: Arc<Sequences>,
    spec: Arc<BatchSpec>,
}

#[pymethods]
impl BatchBuilder {
    #[new]
    #[pyo3(signature = (store, max_len, *, task = "sasrec", negatives = "uniform", num_negatives = 1, num_in_batch = 0,
                        shared_negatives = false, exclude_seen = true, alpha = 1.0, mask_prob = 0.2, mask_token = None,
                        pad_to_max = false, num_threads = 0, pool_size = 0, pool_in_batch = false,
                        pool_mask_history = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &SequenceStore,
        max_len: i64,
        task: &str,
        negatives: &str,
        num_negatives: i64,
        num_in_batch: i64,
        shared_negatives: bool,
        exclude_seen: bool,
        alpha: f64,
        mask_prob: f64,
        mask_token: Option<i64>,
        pad_to_max: bool,
        num_threads: usize,
        pool_size: i64,
        pool_in_batch: bool,
        pool_mask_history: bool,
    ) -> PyResult<Self> {
        let seqs = store.inner.clone();
        let task = Task::parse(task, mask_prob, mask_token, seqs.num_items()).map_err(to_py)?;
        let num_negatives = count("num_negatives", num_negatives)?;
        let num_in_batch = count("num_in_batch", num_in_batch)?;
        let pool_size = count("pool_size", pool_size)?;
        let pooled = pool_size > 0 || pool_in_batch;
        let sampler = if negatives == "none" || pooled {
            None
        } else {
            let mode = NegativeMode::parse(negatives).map_err(to_py)?;
            let s = NegativeSampler::new(
                &seqs,
                mode,
                num_negatives,
                num_in_batch,
                shared_negatives,
                exclude_seen,
                alpha,
            );
            Some(s.map_err(to_py)?)
        };
        let mut spec = BatchSpec::new(task, max_len, pad_to_max, sampler, num_threads).map_err(to_py)?;
        if pooled {
            let sampling: PoolSampling = CandidatePool::parse_sampling(negatives).map_err(to_py)?;
            let pool = CandidatePool::new(&seqs, sampling, pool_size, pool_in_batch, pool_mask_history, alpha);
            spec = spec.with_pool(pool.map_err(to_py)?).map_err(to_py)?;
        }
        Ok(BatchBuilder {
            store: seqs,
            spec: Arc::new(spec),
        })
    }

    /// Negatives per slot (0 without a sampler, and with a batch-wide pool).
    #[getter]
    fn num_negatives(&self) -> usize {
        self.spec.negatives.as_ref().map_or(0, |n| n.width())
    }

    /// Sampled items of the batch-wide pool (0 without one).
    #[getter]
    fn pool_size(&self) -> usize {
        self.spec.pool.as_ref().map_or(0, |p| p.size)
    }

    /// The token BERT4Rec batches mask with (None for SASRec batches).
    #[getter]
    fn mask_token(&self) -> Option<i64> {
        match self.spec.task {
            Task::Bert4Rec { mask_token, .. } => Some(mask_token),
            Task::SasRec => None,
        }
    }

    /// Training sequences of `users`: `(users, ends)` int64 arrays, one per user, or with `stride > 0` one
    /// window every `stride` items back from the end of long histories. Users too short are left out.
    #[pyo3(signature = (users, stride = 0))]
    fn segments<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        stride: i64,
    ) -> PyResult<ArrayPair<'py>> {
        let stride = count("stride", stride)?;
        let users = contiguous(&users, "users")?;
        let segs = make_segments(&self.store, &self.spec, users, stride).map_err(to_py)?;
        let (u, e): (Vec<i64>, Vec<i64>) = segs.iter().map(|s| (s.user as i64, s.end as i64)).unzip();
        Ok((PyArray1::from_vec(py, u), PyArray1::from_vec(py, e)))
    }

    /// One batch of the sequences `users[i][:ends[i]]` (whole sequences when `ends` is None), as a dict of
    /// numpy arrays (see the stub). Row b uses random streams derived from (seed, b).
    #[pyo3(signature = (users, ends = None, seed = 0))]
    fn build<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        ends: Option<PyReadonlyArray1<'py, i64>>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let segs = self.to_segments(&users, ends.as_ref())?;
        let (store, spec) = (&*self.store, &*self.spec);
        let batch = py.detach(|| build_batch(store, spec, &segs, seed)).map_err(to_py)?;
        batch_to_dict(py, batch)
    }

    /// The batches of one epoch of the training sequences `(users, ends)`, built on a background thread at
    /// most `prefetch` ahead. Order depends only on (seed, epoch); with `bucket`, batches group sequences of
    /// similar length (within groups of `bucket_batches` batches) and pad only to their longest one; with
    /// `max_tokens > 0` a batch holds as many sequences as fit in that many padded positions.
    ///
    /// With `world > 1` (data-parallel training) only rank `rank`'s share: every `world`-th batch, the same
    /// number on every rank, sampled from a stream of the rank's own.
    #[pyo3(signature = (users, ends, batch_size, seed, epoch, bucket = true, bucket_batches = 64, prefetch = 2, max_tokens = 0, rank = 0, world = 1))]
    #[allow(clippy::too_many_arguments)]
    fn epoch(
        &self,
        users: PyReadonlyArray1<'_, i64>,
        ends: PyReadonlyArray1<'_, i64>,
        batch_size: i64,
        seed: u64,
        epoch: u64,
        bucket: bool,
        bucket_batches: usize,
        prefetch: usize,
        max_tokens: usize,
        rank: usize,
        world: usize,
    ) -> PyResult<EpochIterator> {
        let prefetch = check_depth(prefetch).map_err(to_py)?;
        let options = PlanOptions {
            batch_size,
            bucket,
            bucket_batches,
            max_tokens,
        };
        let plan = self.plan(&users, &ends, options, seed, epoch, rank, world)?;
        let len = plan.batches.len();
        let prefetcher = Prefetcher::start(self.store.clone(), self.spec.clone(), plan.batches, plan.seed, prefetch);
        Ok(EpochIterator {
            inner: Mutex::new(prefetcher),
            len,
        })
    }

    /// How many batches `epoch` would yield with the same arguments (without building any).
    #[pyo3(signature = (users, ends, batch_size, seed, epoch, bucket = true, bucket_batches = 64, max_tokens = 0, rank = 0, world = 1))]
    #[allow(clippy::too_many_arguments)]
    fn num_batches(
        &self,
        users: PyReadonlyArray1<'_, i64>,
        ends: PyReadonlyArray1<'_, i64>,
        batch_size: i64,
        seed: u64,
        epoch: u64,
        bucket: bool,
        bucket_batches: usize,
        max_tokens: usize,
        rank: usize,
        world: usize,
    ) -> PyResult<usize> {
        let options = PlanOptions {
            batch_size,
            bucket,
            bucket_batches,
            max_tokens,
        };
        Ok(self
            .plan(&users, &ends, options, seed, epoch, rank, world)?
            .batches
            .len())
    }

    /// One over the expected targets of an average batch of the epoch (all ranks together): what turns a
    /// batch's summed loss into a per-target mean that weighs every target alike.
    #[pyo3(signature = (users, ends, batch_size, seed, epoch, bucket = true, bucket_batches = 64, max_tokens = 0))]
    #[allow(clippy::too_many_arguments)]
    fn loss_scale(
        &self,
        users: PyReadonlyArray1<'_, i64>,
        ends: PyReadonlyArray1<'_, i64>,
        batch_size: i64,
        seed: u64,
        epoch: u64,
        bucket: bool,
        bucket_batches: usize,
        max_tokens: usize,
    ) -> PyResult<f64> {
        let options = PlanOptions {
            batch_size,
            bucket,
            bucket_batches,
            max_tokens,
        };
        Ok(self.plan(&users, &ends, options, seed, epoch, 0, 1)?.loss_scale())
    }
}

impl BatchBuilder {
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        users: &PyReadonlyArray1<'_, i64>,
        ends: &PyReadonlyArray1<'_, i64>,
        options: PlanOptions,
        seed: u64,
        epoch: u64,
        rank: usize,
        world: usize,
    ) -> PyResult<EpochPlan> {
        let segs = self.to_segments(users, Some(ends))?;
        EpochPlan::new(&self.spec, &segs, options, seed, epoch, rank, world).map_err(to_py)
    }

    fn to_segments(
        &self,
        users: &PyReadonlyArray1<'_, i64>,
        ends: Option<&PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<Vec<Segment>> {
        let users = contiguous(users, "users")?;
        let ends = match ends {
            Some(e) => Some(contiguous(e, "ends")?),
            None => None,
        };
        Segment::from_arrays(&self.store, users, ends).map_err(to_py)
    }
}
