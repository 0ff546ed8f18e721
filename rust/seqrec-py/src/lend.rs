//! Batch buffers lent to numpy without a copy, handed back to the engine's pool when numpy frees them.

use numpy::ndarray::{ArrayView, IxDyn};
use numpy::{PyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use seqrec_core::batch::Batch;
use seqrec_core::buffers;
use seqrec_core::CoreError;

use crate::errors::to_py;

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
    let view = ArrayView::from_shape(IxDyn(shape), T::view(&owner.get().data)).map_err(|e| {
        to_py(CoreError::Engine {
            message: format!("batch buffer does not fit shape {shape:?}: {e}"),
        })
    })?;
    // SAFETY: the array holds `owner` as its base object, so the buffer outlives it, and nothing writes to
    // the buffer until `owner` is dropped (then it is only handed back to the pool).
    let array = unsafe { PyArray::borrow_from_array(&view, owner.clone().into_any()) };
    Ok(array.into_any())
}

/// Hands a batch's buffers to numpy (no copy) under the names the Python side uses.
pub fn batch_to_dict(py: Python<'_>, b: Batch) -> PyResult<Bound<'_, PyDict>> {
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
