//! Softmax head of the Jacobian bound propagation: at the logits the gradient is −p with
//! p = softmax(f/T) in the softmax box ∩ simplex (proofs/lipschitz_softmax_bounds.md), so
//! μᵀ(−p) ≤ max_p (−μ)ᵀp, a fractional knapsack (rounded up by `max_linear_box_simplex`).

use crate::bounds::Interval;
use crate::bounds::softmax::max_linear_box_simplex;

/// A certified upper bound of μᵀ(−p) over p in the box ∩ simplex.
pub(crate) fn upper(mu: &[f64], p: &Interval) -> f64 {
    let neg: Vec<f64> = mu.iter().map(|v| -v).collect();
    max_linear_box_simplex(&neg, p)
}
