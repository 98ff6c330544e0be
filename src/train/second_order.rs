//! Second-order differentiation in candle: the exact gradient penalty by autograd differentiates
//! ∇ₓS (itself a reverse pass) w.r.t. the weights, which candle only supports on a thread that read
//! `CANDLE_GRAD_DO_NOT_DETACH` set at its first backward pass (read once per thread). That setting
//! keeps the graph of every gradient, so nothing of a reverse pass is freed before its gradients
//! are dropped (a ResNet-18 CE step at batch 128: 10 GB instead of 3.4 GB, BENCHMARKS.md). The
//! binary therefore leaves it off on the main thread and runs only the steps that need it on a
//! thread of their own ([`run`]); detaching changes no value, only which graph is kept.

use crate::error::{Error, Result};
use crate::model::{DOUBLE_BACKPROP_ENV, double_backprop_enabled, double_backprop_probe};

/// Stack of the second-order thread: candle walks the graph recursively, and a double-backprop
/// graph is about twice as deep as the forward's (the main thread has 8 MiB).
const STACK_BYTES: usize = 64 << 20;

/// Unless the user set the variable (then every thread follows it): fixes this thread's setting
/// to first-order only (candle detaches gradients here), then sets the variable so that threads
/// created later, [`run`]'s among them, get second-order gradients.
///
/// # Safety
/// Must run before any other thread exists (mutating the environment races with concurrent
/// reads): call it first thing in `main`.
pub unsafe fn configure_at_startup() {
    if std::env::var_os(DOUBLE_BACKPROP_ENV).is_some() {
        return;
    }
    // Scalar ops only: runs on this thread, starts no thread pool. Its value does not matter; the
    // call fixes the setting of this thread (the variable is unset: off).
    let _ = double_backprop_probe();
    // SAFETY: the caller guarantees the process is still single-threaded.
    unsafe { std::env::set_var(DOUBLE_BACKPROP_ENV, "1") };
}

/// Runs `f` here, or, when `needed` and this thread has no second-order gradients, on a new thread
/// that has them (after [`require`] there); errors and panics of `f` come back to the caller.
pub fn run<T: Send>(needed: bool, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if !needed || double_backprop_enabled()? {
        return f();
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("oodcert-second-order".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, || {
                require()?;
                f()
            })
            .map_err(|e| Error::Internal(format!("starting the second-order thread: {e}")))?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Errors unless second-order gradients flow on this thread (never trains silently without them).
pub fn require() -> Result<()> {
    if double_backprop_enabled()? {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "second-order gradients are unavailable on this thread (self-test d/dw(dy/dx) for y=(w·x)² gave 0, expected 24): unset {DOUBLE_BACKPROP_ENV} or set it to 1; refusing to train the gradient penalty without them"
        )))
    }
}
