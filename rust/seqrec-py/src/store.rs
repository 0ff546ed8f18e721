//! `SequenceStore`: validated per-user sequences, and the sampled protocol's evaluation candidates.

use std::sync::Arc;

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use seqrec_core::batch::{check_candidates, sampled_candidates};
use seqrec_core::sampling::AliasTable;
use seqrec_core::Sequences;

use crate::errors::{contiguous, to_py};

/// Per-user item sequences (CSR: int64 `offsets`, int32 `items` with ids in 1..=num_items), validated and
/// copied once, from which training batches and evaluation candidates are built in parallel.
#[pyclass(frozen, module = "seqrec._core")]
pub struct SequenceStore {
    pub(crate) inner: Arc<Sequences>,
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
        let table = AliasTable::from_counts(self.inner.item_counts(), alpha).map_err(to_py)?;
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
        let width = check_candidates(users.len(), n).map_err(to_py)?; // before allocating (B, n)
        let out = PyArray2::<i64>::zeros(py, [users.len(), width], false);
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
