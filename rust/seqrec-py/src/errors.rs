//! The one place where core errors become Python exceptions.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;
use seqrec_core::CoreError;

/// Wrapper that lets `?` turn a `CoreError` into a `PyErr` (orphan rule: neither type is ours here).
pub struct PyCoreError(pub CoreError);

impl From<CoreError> for PyCoreError {
    fn from(e: CoreError) -> Self {
        PyCoreError(e)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(e: PyCoreError) -> PyErr {
        // Every core error is a bad value passed in by the caller; the message names that value.
        PyValueError::new_err(e.0.to_string())
    }
}

pub fn to_py(e: CoreError) -> PyErr {
    PyCoreError(e).into()
}
