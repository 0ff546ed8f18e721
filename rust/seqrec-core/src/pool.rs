//! The engine's own thread pool, guarded against fork: a child process never touches the parent's pool.
//!
//! A rayon pool created before `fork` (as a PyTorch DataLoader does for its workers) exists in the child's
//! memory without its threads, and work sent to it there waits forever. So the pool remembers the process
//! that built it, and in any other process the engine runs single-threaded instead.

use std::sync::OnceLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: OnceLock<(u32, Option<ThreadPool>)> = OnceLock::new();

/// The pool for this process (None in a forked child, or if it could not be built).
fn pool() -> Option<&'static ThreadPool> {
    let (pid, pool) = POOL.get_or_init(|| {
        // num_threads(0): RAYON_NUM_THREADS if set, else one thread per core.
        (
            std::process::id(),
            ThreadPoolBuilder::new()
                .num_threads(0)
                .thread_name(|i| format!("seqrec-{i}"))
                .build()
                .ok(),
        )
    });
    if *pid == std::process::id() {
        pool.as_ref()
    } else {
        None
    }
}

/// Runs `f(true)` inside the pool when more than one thread is wanted and allowed, else `f(false)`.
/// `f` must use rayon's parallel iterators only when given `true`.
pub fn run<R: Send>(requested: usize, f: impl FnOnce(bool) -> R + Send) -> R {
    if requested != 1 {
        if let Some(p) = pool() {
            if p.current_num_threads() > 1 {
                return p.install(|| f(true));
            }
        }
    }
    f(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn one_thread_runs_inline_and_many_use_the_pool_with_the_same_result() {
        let serial = run(1, |parallel| {
            assert!(!parallel, "one thread asked: never the pool");
            (0..1000u64).map(|x| x * x).sum::<u64>()
        });
        let pooled = run(0, |parallel| {
            if parallel {
                (0..1000u64).into_par_iter().map(|x| x * x).sum::<u64>()
            } else {
                (0..1000u64).map(|x| x * x).sum::<u64>()
            }
        });
        assert_eq!(serial, pooled);
    }

    #[test]
    fn the_pool_belongs_to_this_process() {
        if let Some(p) = pool() {
            assert!(p.current_num_threads() >= 1);
        }
        let (pid, _) = POOL.get().expect("pool() initialised it");
        assert_eq!(*pid, std::process::id());
    }
}
