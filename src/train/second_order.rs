//! Second-order differentiation in candle: the exact gradient penalty differentiates ‖∇ₓS‖ w.r.t.
//! the weights, which candle only supports when `CANDLE_GRAD_DO_NOT_DETACH` is set before a thread's
//! first backward pass (read once per thread). Without it the penalty would silently add no
//! gradient, so the binary sets it at start-up and training self-tests before using the penalty.

use crate::error::{Error, Result};
use crate::model::{DOUBLE_BACKPROP_ENV, double_backprop_enabled};

/// Sets the flag unless the user set it.
///
/// # Safety
/// Must run before any other thread exists (mutating the environment races with concurrent
/// reads): call it first thing in `main`.
pub unsafe fn enable_at_startup() {
    if std::env::var_os(DOUBLE_BACKPROP_ENV).is_none() {
        // SAFETY: the caller guarantees the process is still single-threaded.
        unsafe { std::env::set_var(DOUBLE_BACKPROP_ENV, "1") };
    }
}

/// Errors unless second-order gradients flow on this thread (never trains silently without them).
pub fn require() -> Result<()> {
    if double_backprop_enabled()? {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "second-order gradients are unavailable on this thread (self-test d/dw(dy/dx) for y=(w·x)² gave 0, expected 24): start oodcert with {DOUBLE_BACKPROP_ENV}=1 in the environment; refusing to train the gradient penalty without them"
        )))
    }
}
