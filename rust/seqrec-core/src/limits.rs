//! Upper bounds on sizes that come from users, so that a typo or a hostile value is an error naming the
//! option, never an allocation that aborts the process or an arithmetic wrap.

use crate::error::{CoreError, Result};

/// Catalogue size: item counts, bitsets and alias tables are O(items).
pub const MAX_ITEMS: i64 = 1 << 27;
/// Positions of one sequence.
pub const MAX_LEN: usize = 1 << 16;
/// Negatives per slot, and sampled-protocol candidates per user.
pub const MAX_NEGATIVES: usize = 1 << 20;
/// Sampled items of a batch-wide pool.
pub const MAX_POOL: usize = 1 << 24;
/// Sequences per batch.
pub const MAX_BATCH: usize = 1 << 22;
/// Batches built ahead of the consumer.
pub const MAX_PREFETCH: usize = 1 << 12;
/// Elements of any one batch buffer (16 GiB of int64).
pub const MAX_CELLS: usize = 1 << 31;

/// `value` as usize when it lies in 0..=limit, else `BadOption` naming `name` and the limit.
pub fn at_most(name: &'static str, value: u64, limit: usize) -> Result<usize> {
    if value > limit as u64 {
        return Err(CoreError::BadOption {
            name,
            message: format!("{value} is above the limit of {limit}"),
        });
    }
    Ok(value as usize)
}

/// `a * b`, or `BadOption` naming `name` when it overflows or exceeds `MAX_CELLS`.
pub fn cells(name: &'static str, a: usize, b: usize) -> Result<usize> {
    match a.checked_mul(b) {
        Some(n) if n <= MAX_CELLS => Ok(n),
        _ => Err(CoreError::BadOption {
            name,
            message: format!("{a} x {b} elements is above the limit of {MAX_CELLS} per batch buffer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_option() {
        assert_eq!(at_most("prefetch", 8, MAX_PREFETCH).unwrap(), 8);
        let e = at_most("prefetch", 1 << 62, MAX_PREFETCH).unwrap_err().to_string();
        assert!(e.contains("prefetch") && e.contains("4096"), "{e}");
        assert!(cells("batch", usize::MAX, 2).is_err());
        assert!(cells("batch", 1 << 15, 1 << 16).is_ok());
        assert!(cells("batch", 1 << 16, 1 << 16).is_err());
    }
}
