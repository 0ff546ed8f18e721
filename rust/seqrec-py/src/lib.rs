//! seqrec._core: the thin PyO3 layer over seqrec-core. Inputs are read with the GIL held, the work runs
//! without it; every rule (options, sampling, planning, errors) lives in the core, this crate only converts.

mod builder;
mod epoch;
mod errors;
mod lend;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::SequenceStore>()?;
    m.add_class::<builder::BatchBuilder>()?;
    m.add_class::<epoch::EpochIterator>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The core's size limits, so Python-side options can be checked against the same numbers by their own names.
    use seqrec_core::limits::*;
    let limits = pyo3::types::PyDict::new(m.py());
    limits.set_item("num_items", MAX_ITEMS)?;
    limits.set_item("max_len", MAX_LEN)?;
    limits.set_item("num_negatives", MAX_NEGATIVES)?;
    limits.set_item("negative_pool", MAX_POOL)?;
    limits.set_item("batch_size", MAX_BATCH)?;
    limits.set_item("prefetch", MAX_PREFETCH)?;
    limits.set_item("batch_cells", MAX_CELLS)?;
    m.add("LIMITS", limits)?;
    Ok(())
}
