//! seqrec-core: the data path of seqrec (sequences, samplers, batch builders) in plain Rust, free of Python.

pub mod batch;
pub mod buffers;
pub mod candidate_pool;
pub mod error;
pub mod limits;
pub mod negatives;
pub mod plan;
pub mod pool;
pub mod prefetch;
pub mod rng;
pub mod sampling;
pub mod sequences;

pub use error::{CoreError, Result};
pub use sequences::Sequences;
