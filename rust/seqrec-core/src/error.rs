//! The one error type of the core crate; the binding crate maps it to Python exceptions.

use std::fmt;

/// Everything that can go wrong in the core, each variant carrying the offending value.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// A size argument (max_len, num_items, number of negatives) that must be positive was not.
    NonPositive { name: &'static str, value: i64 },
    /// CSR offsets that do not start at 0, decrease, or do not end at the number of items.
    BadOffsets { index: usize, message: String },
    /// An item id outside 1..=num_items (0 is padding and never a valid interaction).
    ItemOutOfRange { position: usize, item: i64, num_items: i64 },
    /// A user index outside 0..num_users.
    UserOutOfRange { user: i64, num_users: usize },
    /// A user has interacted with every item, so no negative can be drawn for them.
    NoNegatives { user: i64, num_items: i64 },
    /// A user's unseen items all have zero sampling weight (e.g. popularity of items never trained on).
    ZeroWeightNegatives { user: i64, unseen: i64 },
    /// A sampling weight that is negative or not finite (item -1: all weights sum to zero).
    BadWeight { item: i64, weight: f64 },
    /// An option value outside what the routine accepts.
    BadOption { name: &'static str, message: String },
    /// The engine itself failed (its thread could not start or stopped early, a lock was poisoned).
    Engine { message: String },
    /// Two arrays whose lengths must agree do not.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::NonPositive { name, value } => {
                write!(f, "{name} must be positive, got {value}")
            }
            CoreError::BadOffsets { index, message } => {
                write!(f, "invalid CSR offsets at index {index}: {message}")
            }
            CoreError::ItemOutOfRange {
                position,
                item,
                num_items,
            } => write!(
                f,
                "item id {item} at position {position} is outside 1..={num_items} (0 is reserved for padding)"
            ),
            CoreError::UserOutOfRange { user, num_users } => {
                write!(f, "user index {user} is outside 0..{num_users}")
            }
            CoreError::NoNegatives { user, num_items } => write!(
                f,
                "user {user} has interacted with all {num_items} items: no negative item can be sampled"
            ),
            CoreError::ZeroWeightNegatives { user, unseen } => write!(
                f,
                "user {user} has {unseen} unseen items, but all of them have sampling weight 0 (popularity \
                 sampling gives items with no training interactions weight 0): no negative can be drawn; \
                 use uniform negatives or give every item a positive weight"
            ),
            CoreError::BadWeight { item, weight } => {
                if *item < 0 {
                    write!(
                        f,
                        "sampling weights sum to {weight}: at least one item needs a positive weight"
                    )
                } else {
                    write!(
                        f,
                        "sampling weight of item {item} is {weight}: weights must be finite and non-negative"
                    )
                }
            }
            CoreError::BadOption { name, message } => write!(f, "{name}: {message}"),
            CoreError::Engine { message } => write!(f, "batch engine failure: {message}"),
            CoreError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected length {expected}, got {got}")
            }
        }
    }
}

impl std::error::Error for CoreError {}

pub type Result<T> = std::result::Result<T, CoreError>;

/// Checks that a size argument is positive and returns it as usize.
pub fn positive(name: &'static str, value: i64) -> Result<usize> {
    if value <= 0 {
        return Err(CoreError::NonPositive { name, value });
    }
    usize::try_from(value).map_err(|_| CoreError::NonPositive { name, value })
}
