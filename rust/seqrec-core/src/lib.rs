//! seqrec-core: the data path of seqrec (sequences, samplers, batch builders) in plain Rust, free of Python.

pub mod batch;
pub mod error;
pub mod rng;
pub mod sampling;
pub mod sequences;

pub use error::{CoreError, Result};
pub use sequences::Sequences;
