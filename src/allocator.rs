//! The process allocator's one tuning (mimalloc, the global allocator of the `oodcert` binary
//! and of the benches): keep freed memory instead of returning it to the kernel a second later.
//! Candle allocates a fresh buffer for every op; a training step with second-order gradients
//! enabled holds gigabytes of them, and each return to the kernel made the next op fault the
//! pages in again, zeroed (half of a ResNet-18 step's kernel time; BENCHMARKS.md, Inference).

use std::os::raw::{c_int, c_long};

/// `mi_option_purge_delay` in `mi_option_e` of mimalloc v3 (what libmimalloc-sys builds by
/// default) and v2.
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// The default purge delays (ms) of mimalloc v3 and v2: checked before anything is set, so that a
/// different option layout (or a delay set by `MIMALLOC_PURGE_DELAY`) is left alone.
const DEFAULT_PURGE_DELAYS: [c_long; 2] = [1000, 10];

unsafe extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Tells mimalloc never to purge freed memory (it is reused by later allocations; peak memory is
/// unchanged). Returns whether the option was set; call once at start-up, before other threads.
pub fn keep_freed_memory() -> bool {
    // Referencing the crate links mimalloc's C library, where the two functions live.
    let _ = mimalloc::MiMalloc;
    // SAFETY: plain C calls on mimalloc's option table (an int index and a long value); the
    // index is validated by its default value before it is written.
    unsafe {
        if !DEFAULT_PURGE_DELAYS.contains(&mi_option_get(MI_OPTION_PURGE_DELAY)) {
            return false;
        }
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        mi_option_get(MI_OPTION_PURGE_DELAY) == -1
    }
}

#[cfg(test)]
mod tests {
    /// Fails when the linked mimalloc's option layout is not v2's (then the tuning is skipped
    /// silently in the binary, and this module needs updating).
    #[test]
    fn purge_delay_is_found_and_set() {
        assert!(super::keep_freed_memory());
    }
}
