//! Bindings for the sequence store, the batch builder and its prefetching epoch iterator.

use std::sync::{Arc, Mutex};

use numpy::ndarray::{ArrayView, IxDyn};
use numpy::{PyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqrec_core::batch::{
    build_batch, sampled_candidates, sasrec_batch, Batch, BatchSpec, SasRecBatchMut, Segment, Task,
};
use seqrec_core::buffers;
use seqrec_core::candidate_pool::{CandidatePool, PoolSampling};
use seqrec_core::negatives::{NegativeMode, NegativeSampler};
use seqrec_core::plan::{make_segments, plan_epoch, shard};
use seqrec_core::prefetch::Prefetcher;
use seqrec_core::sampling::AliasTable;
use seqrec_core::Sequences;

use crate::errors::{contiguous, to_py};

/// (users, ends) of `BatchBuilder.segments`.
type ArrayPair<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// (inputs, positives, negatives) of `SequenceStore.sasrec_batch`.
type SasRecArrays<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray3<i64>>,
);

/// Per-user item sequences (CSR: int64 `offsets`, int32 `items` with ids in 1..=num_items), validated and
/// copied once, from which training batches and evaluation candidates are built in parallel.
#[pyclass(frozen, module = "seqrec._core")]
pub struct SequenceStore {
    inner: Arc<Sequences>,
}

#[pymethods]
impl SequenceStore {
    #[new]
    fn new(
        py: Python<'_>,
        offsets: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, i32>,
        num_items: i64,
    ) -> PyResult<Self> {
        let offsets = contiguous(&offsets, "offsets")?;
        let items = contiguous(&items, "items")?;
        let inner = py.detach(|| Sequences::new(offsets, items, num_items)).map_err(to_py)?;
        Ok(SequenceStore { inner: Arc::new(inner) })
    }

    #[getter]
    fn num_users(&self) -> usize {
        self.inner.num_users()
    }

    #[getter]
    fn num_items(&self) -> i64 {
        self.inner.num_items()
    }

    #[getter]
    fn num_interactions(&self) -> usize {
        self.inner.num_interactions()
    }

    /// Interactions per item (int64, shape (num_items + 1,), entry 0 for padding).
    fn item_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_vec(py, self.inner.item_counts().iter().map(|&c| c as i64).collect())
    }

    /// SASRec training batch for `users` (int64): `(inputs, positives, negatives)` as int64 arrays of shapes
    /// (B, max_len), (B, max_len) and (B, max_len, num_negatives), left-padded with 0. Negatives are uniform
    /// over the items each user never interacted with.
    #[pyo3(signature = (users, max_len, num_negatives = 1, seed = 0))]
    fn sasrec_batch<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        max_len: i64,
        num_negatives: i64,
        seed: u64,
    ) -> PyResult<SasRecArrays<'py>> {
        let users = contiguous(&users, "users")?;
        let b = users.len();
        // Sizes are checked by the core before anything is written; clamp here only to allocate safely.
        let l = max_len.max(0) as usize;
        let k = num_negatives.max(0) as usize;
        let inputs = PyArray2::<i64>::zeros(py, [b, l], false);
        let positives = PyArray2::<i64>::zeros(py, [b, l], false);
        let negatives = PyArray3::<i64>::zeros(py, [b, l, k], false);
        {
            let mut i = inputs.readwrite();
            let mut p = positives.readwrite();
            let mut n = negatives.readwrite();
            let out = SasRecBatchMut {
                inputs: i.as_slice_mut()?,
                positives: p.as_slice_mut()?,
                negatives: n.as_slice_mut()?,
            };
            let inner = &*self.inner;
            py.detach(|| sasrec_batch(inner, users, max_len, num_negatives, seed, out))
                .map_err(to_py)?;
        }
        Ok((inputs, positives, negatives))
    }

    /// `n` items per user (int64, shape (B, n)) drawn uniformly with replacement from the items the user
    /// never interacted with: the candidates of the sampled evaluation protocol.
    #[pyo3(signature = (users, n, seed = 0))]
    fn uniform_negatives<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        n: i64,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        self.candidates(py, users, n, None, seed)
    }

    /// Like `uniform_negatives`, but drawn in proportion to `item_counts ** alpha` (this store's counts).
    #[pyo3(signature = (users, n, seed = 0, alpha = 1.0))]
    fn popularity_negatives<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        n: i64,
        seed: u64,
        alpha: f64,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        if !alpha.is_finite() || alpha < 0.0 {
            return Err(PyValueError::new_err(format!(
                "alpha must be finite and >= 0, got {alpha}"
            )));
        }
        let weights: Vec<f64> = self
            .inner
            .item_counts()
            .iter()
            .map(|&c| if c == 0 { 0.0 } else { (c as f64).powf(alpha) })
            .collect();
        let table = AliasTable::new(&weights).map_err(to_py)?;
        self.candidates(py, users, n, Some(&table), seed)
    }
}

impl SequenceStore {
    fn candidates<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        n: i64,
        table: Option<&AliasTable>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let users = contiguous(&users, "users")?;
        let out = PyArray2::<i64>::zeros(py, [users.len(), n.max(0) as usize], false);
        {
            let mut o = out.readwrite();
            let slice = o.as_slice_mut()?;
            let inner = &*self.inner;
            py.detach(|| sampled_candidates(inner, users, n, table, seed, slice))
                .map_err(to_py)?;
        }
        Ok(out)
    }
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
        let task = match task {
            "sasrec" => Task::SasRec,
            "bert4rec" => Task::Bert4Rec {
                mask_prob,
                mask_token: mask_token.unwrap_or(seqs.num_items() + 1),
            },
            other => {
                return Err(PyValueError::new_err(format!(
                    "task must be 'sasrec' or 'bert4rec', got {other:?}"
                )))
            }
        };
        if num_negatives < 0 || num_in_batch < 0 || pool_size < 0 {
            return Err(PyValueError::new_err(format!(
                "num_negatives, num_in_batch and pool_size must be >= 0, got {num_negatives}, {num_in_batch} and {pool_size}"
            )));
        }
        let pooled = pool_size > 0 || pool_in_batch;
        let pool = if pooled {
            let sampling = match negatives {
                "uniform" => PoolSampling::Uniform,
                "popularity" => PoolSampling::Popularity,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "negatives: a batch-wide pool is drawn 'uniform' or 'popularity', got {other:?}"
                    )))
                }
            };
            Some(
                CandidatePool::new(&seqs, sampling, pool_size as usize, pool_in_batch, pool_mask_history, alpha)
                    .map_err(to_py)?,
            )
        } else {
            None
        };
        let sampler = if negatives == "none" || pooled {
            None
        } else {
            let mode = NegativeMode::parse(negatives).map_err(to_py)?;
            Some(
                NegativeSampler::new(
                    &seqs,
                    mode,
                    num_negatives as usize,
                    num_in_batch as usize,
                    shared_negatives,
                    exclude_seen,
                    alpha,
                )
                .map_err(to_py)?,
            )
        };
        let mut spec = BatchSpec::new(task, max_len, pad_to_max, sampler, num_threads).map_err(to_py)?;
        if let Some(p) = pool {
            spec = spec.with_pool(p).map_err(to_py)?;
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

    /// Training sequences of `users`: `(users, ends)` int64 arrays, one per user, or with `stride > 0` one
    /// window every `stride` items back from the end of long histories. Users too short are left out.
    #[pyo3(signature = (users, stride = 0))]
    fn segments<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        stride: i64,
    ) -> PyResult<ArrayPair<'py>> {
        if stride < 0 {
            return Err(PyValueError::new_err(format!("stride must be >= 0, got {stride}")));
        }
        let users = contiguous(&users, "users")?;
        let segs = make_segments(&self.store, &self.spec, users, stride as usize).map_err(to_py)?;
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
        let batches = self.plan(
            &users,
            &ends,
            batch_size,
            bucket,
            bucket_batches,
            max_tokens,
            seed,
            epoch,
            rank,
            world,
        )?;
        let len = batches.len();
        let mut seed = seqrec_core::rng::derive_seed(seed, epoch);
        if world > 1 {
            seed = seqrec_core::rng::derive_seed(seed, rank as u64);
        }
        let prefetcher = Prefetcher::start(self.store.clone(), self.spec.clone(), batches, seed, prefetch);
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
        Ok(self
            .plan(
                &users,
                &ends,
                batch_size,
                bucket,
                bucket_batches,
                max_tokens,
                seed,
                epoch,
                rank,
                world,
            )?
            .len())
    }
}

impl BatchBuilder {
    /// Rank `rank`'s batches of an epoch: `plan_epoch` over the checked `(users, ends)`, then `shard`.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        users: &PyReadonlyArray1<'_, i64>,
        ends: &PyReadonlyArray1<'_, i64>,
        batch_size: i64,
        bucket: bool,
        bucket_batches: usize,
        max_tokens: usize,
        seed: u64,
        epoch: u64,
        rank: usize,
        world: usize,
    ) -> PyResult<Vec<Vec<Segment>>> {
        let segs = self.to_segments(users, Some(ends))?;
        let batches = plan_epoch(
            &self.spec,
            &segs,
            batch_size,
            bucket,
            bucket_batches,
            max_tokens,
            seed,
            epoch,
        )
        .map_err(to_py)?;
        shard(batches, rank, world).map_err(to_py)
    }

    fn to_segments(
        &self,
        users: &PyReadonlyArray1<'_, i64>,
        ends: Option<&PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<Vec<Segment>> {
        let users = contiguous(users, "users")?;
        let checked = self.store.check_users(users).map_err(to_py)?;
        match ends {
            None => Ok(checked
                .iter()
                .map(|&u| Segment {
                    user: u,
                    end: self.store.sequence(u).len(),
                })
                .collect()),
            Some(e) => {
                let e = contiguous(e, "ends")?;
                if e.len() != users.len() {
                    return Err(PyValueError::new_err(format!(
                        "ends has {} entries for {} users",
                        e.len(),
                        users.len()
                    )));
                }
                checked
                    .iter()
                    .zip(e)
                    .map(|(&u, &end)| {
                        if end < 0 {
                            Err(PyValueError::new_err(format!("end {end} of user {u} is negative")))
                        } else {
                            Ok(Segment {
                                user: u,
                                end: end as usize,
                            })
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Iterator over an epoch's batches (dicts of numpy arrays); waits for the builder thread without the GIL.
#[pyclass(frozen, module = "seqrec._core")]
pub struct EpochIterator {
    inner: Mutex<Prefetcher>,
    len: usize,
}

#[pymethods]
impl EpochIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let next = py.detach(|| match self.inner.lock() {
            Ok(mut p) => p.next_batch(),
            Err(_) => None,
        });
        match next {
            None => Ok(None),
            Some(r) => batch_to_dict(py, r.map_err(to_py)?).map(Some),
        }
    }
}

/// A batch buffer of either element type.
enum Owned {
    I64(Vec<i64>),
    F32(Vec<f32>),
}

/// Element types whose batch buffers are recycled.
trait Recycle: numpy::Element + Sized {
    fn own(v: Vec<Self>) -> Owned;
    fn view(o: &Owned) -> &[Self];
}

impl Recycle for i64 {
    fn own(v: Vec<Self>) -> Owned {
        Owned::I64(v)
    }
    fn view(o: &Owned) -> &[Self] {
        match o {
            Owned::I64(v) => v,
            Owned::F32(_) => &[],
        }
    }
}

impl Recycle for f32 {
    fn own(v: Vec<Self>) -> Owned {
        Owned::F32(v)
    }
    fn view(o: &Owned) -> &[Self] {
        match o {
            Owned::F32(v) => v,
            Owned::I64(_) => &[],
        }
    }
}

/// Owner of a batch buffer lent to numpy: when the last array viewing it is freed, the buffer goes back
/// to the engine's pool for the next batch.
#[pyclass(frozen, module = "seqrec._core")]
pub struct RecycledBuffer {
    data: Owned,
}

impl Drop for RecycledBuffer {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.data, Owned::I64(Vec::new())) {
            Owned::I64(v) => buffers::give_i64(v),
            Owned::F32(v) => buffers::give_f32(v),
        }
    }
}

/// A numpy array of `shape` over `data`, without a copy; the buffer returns to the pool when it is freed.
fn lend<'py, T: Recycle>(py: Python<'py>, data: Vec<T>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let owner = Bound::new(py, RecycledBuffer { data: T::own(data) })?;
    let view = ArrayView::from_shape(IxDyn(shape), T::view(&owner.get().data))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    // SAFETY: the array holds `owner` as its base object, so the buffer outlives it, and nothing writes to
    // the buffer until `owner` is dropped (then it is only handed back to the pool).
    let array = unsafe { PyArray::borrow_from_array(&view, owner.clone().into_any()) };
    Ok(array.into_any())
}

/// Hands a batch's buffers to numpy (no copy) under the names the Python side uses.
fn batch_to_dict(py: Python<'_>, b: Batch) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let (rows, width, slots, k) = (b.rows, b.width, b.slots, b.k);
    d.set_item("users", PyArray1::from_vec(py, b.users))?;
    d.set_item("ends", PyArray1::from_vec(py, b.ends))?;
    d.set_item("inputs", lend(py, b.inputs, &[rows, width])?)?;
    d.set_item("targets", lend(py, b.targets, &[rows, width])?)?;
    if k > 0 {
        d.set_item("negatives", lend(py, b.negatives, &[rows, slots, k])?)?;
        d.set_item("negatives_logq", lend(py, b.negatives_logq, &[rows, slots, k])?)?;
        d.set_item("targets_logq", lend(py, b.targets_logq, &[rows, width])?)?;
    } else if b.has_pool {
        d.set_item("pool", PyArray1::from_vec(py, b.pool))?;
        d.set_item("pool_logq", PyArray1::from_vec(py, b.pool_logq))?;
        d.set_item("targets_logq", lend(py, b.targets_logq, &[rows, width])?)?;
        d.set_item("targets_pool", lend(py, b.targets_pool, &[rows, width])?)?;
        d.set_item("pool_hit_rows", PyArray1::from_vec(py, b.pool_hit_rows))?;
        d.set_item("pool_hit_cols", PyArray1::from_vec(py, b.pool_hit_cols))?;
    }
    Ok(d)
}
