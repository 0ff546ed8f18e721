//! `EpochIterator`: an epoch's batches as Python sees them, from the core's background builder.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqrec_core::prefetch::Prefetcher;
use seqrec_core::CoreError;

use crate::errors::to_py;
use crate::lend::batch_to_dict;

/// Iterator over an epoch's batches (dicts of numpy arrays); waits for the builder thread without the GIL.
#[pyclass(frozen, module = "seqrec._core")]
pub struct EpochIterator {
    pub(crate) inner: Mutex<Prefetcher>,
    pub(crate) len: usize,
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
            // A thread panicked while holding the lock: the epoch cannot go on, and must not end quietly.
            Err(_) => Some(Err(CoreError::Engine {
                message: "the epoch iterator's lock was poisoned by a failed call".into(),
            })),
        });
        match next {
            None => Ok(None),
            Some(r) => batch_to_dict(py, r.map_err(to_py)?).map(Some),
        }
    }
}
