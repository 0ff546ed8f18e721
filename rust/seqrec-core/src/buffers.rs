//! Recycled output buffers: a batch's arrays come back here when Python frees them, so building the next
//! batch writes into memory that is already mapped instead of page-faulting fresh allocations.

use std::sync::Mutex;

/// Buffers kept per element type; more are freed normally.
const KEEP: usize = 32;

static I64: Mutex<Vec<Vec<i64>>> = Mutex::new(Vec::new());
static F32: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

fn take<T: Copy + Default>(pool: &Mutex<Vec<Vec<T>>>, len: usize) -> Vec<T> {
    let reused = pool.lock().ok().and_then(|mut p| {
        let i = p.iter().position(|v| v.capacity() >= len)?;
        Some(p.swap_remove(i))
    });
    match reused {
        Some(mut v) => {
            // Old contents stay: callers overwrite every element (rows zero their own slices, in parallel).
            v.truncate(len);
            v.resize(len, T::default());
            v
        }
        None => vec![T::default(); len],
    }
}

fn give<T>(pool: &Mutex<Vec<Vec<T>>>, v: Vec<T>) {
    if v.capacity() == 0 {
        return;
    }
    if let Ok(mut p) = pool.lock() {
        if p.len() < KEEP {
            p.push(v);
        }
    }
}

/// A `Vec<i64>` of `len` whose contents are unspecified (a returned buffer when one is large enough).
pub fn take_i64(len: usize) -> Vec<i64> {
    take(&I64, len)
}

/// A `Vec<f32>` of `len` whose contents are unspecified (a returned buffer when one is large enough).
pub fn take_f32(len: usize) -> Vec<f32> {
    take(&F32, len)
}

/// Returns a buffer for reuse.
pub fn give_i64(v: Vec<i64>) {
    give(&I64, v)
}

/// Returns a buffer for reuse.
pub fn give_f32(v: Vec<f32>) {
    give(&F32, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_have_the_asked_length() {
        let mut v = take_i64(100);
        v.iter_mut().for_each(|x| *x = 7);
        let ptr = v.as_ptr();
        give_i64(v);
        let w = take_i64(50);
        assert_eq!(w.len(), 50);
        assert_eq!(take_f32(30).len(), 30);
        // Another test may have taken it first; when it is ours, the memory is the same.
        if w.as_ptr() == ptr {
            assert!(w.capacity() >= 100);
        }
    }
}
