//! Bindings for the sequence store and its batch builders.

use numpy::{PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use seqrec_core::batch::{sasrec_batch, uniform_negatives, SasRecBatchMut};
use seqrec_core::Sequences;

use crate::errors::{contiguous, to_py};

/// Per-user item sequences (CSR: int64 `offsets`, int32 `items` with ids in 1..=num_items), validated and
/// copied once, from which training batches and evaluation candidates are built in parallel.
#[pyclass(frozen, module = "seqrec._core")]
pub struct SequenceStore {
    inner: Sequences,
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
        Ok(SequenceStore { inner })
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

    /// SASRec training batch for `users` (int64): `(inputs, positives, negatives)` as int64 arrays of shapes
    /// (B, max_len), (B, max_len) and (B, max_len, num_negatives), left-padded with 0. Negatives are uniform
    /// over the items each user never interacted with. Row b uses the random stream (seed, b).
    #[pyo3(signature = (users, max_len, num_negatives = 1, seed = 0))]
    fn sasrec_batch<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        max_len: i64,
        num_negatives: i64,
        seed: u64,
    ) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray3<i64>>)> {
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
            let out = SasRecBatchMut { inputs: i.as_slice_mut()?, positives: p.as_slice_mut()?, negatives: n.as_slice_mut()? };
            let inner = &self.inner;
            py.detach(|| sasrec_batch(inner, users, max_len, num_negatives, seed, out)).map_err(to_py)?;
        }
        Ok((inputs, positives, negatives))
    }

    /// `n` items per user (int64, shape (B, n)) drawn uniformly with replacement from the items the user never
    /// interacted with: the candidates of the sampled evaluation protocol. Row b uses the stream (seed, b).
    #[pyo3(signature = (users, n, seed = 0))]
    fn uniform_negatives<'py>(
        &self,
        py: Python<'py>,
        users: PyReadonlyArray1<'py, i64>,
        n: i64,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let users = contiguous(&users, "users")?;
        let out = PyArray2::<i64>::zeros(py, [users.len(), n.max(0) as usize], false);
        {
            let mut o = out.readwrite();
            let slice = o.as_slice_mut()?;
            let inner = &self.inner;
            py.detach(|| uniform_negatives(inner, users, n, seed, slice)).map_err(to_py)?;
        }
        Ok(out)
    }
}
