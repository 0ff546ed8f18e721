//! seqrec._core: the thin PyO3 layer over seqrec-core. Inputs are read with the GIL held, the work runs without it.

mod batch;
mod errors;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<batch::SequenceStore>()?;
    m.add_class::<batch::BatchBuilder>()?;
    m.add_class::<batch::EpochIterator>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
