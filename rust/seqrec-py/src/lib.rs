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
    Ok(())
}
