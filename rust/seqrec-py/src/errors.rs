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

/// The array's data as a slice, or a `ValueError` naming the argument when it is not C-contiguous.
pub fn contiguous<'a, T: numpy::Element>(
    array: &'a numpy::PyReadonlyArray1<'_, T>,
    name: &str,
) -> pyo3::PyResult<&'a [T]> {
    array.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a C-contiguous array (pass np.ascontiguousarray({name}))"
        ))
    })
}
