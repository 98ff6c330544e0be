//! Affine rule of the Jacobian bound propagation (dense, convolution, average pool, batch-norm
//! and normalisation alike): the gradient at an affine node's input is g_in = Aᵀ g_out, so a
//! linear form μᵀg_in equals (Aμ)ᵀg_out exactly (Shi et al. 2022, the linear Jacobian operator).

use super::Acc;
use crate::bounds::net::LinearOp;
use crate::bounds::round::dot_err;
use crate::lipschitz::jacobian_ops::apply_sparse;

/// μ ↦ Aμ, the coefficients on the gradient at the node's output. Rounding: fl(Aμ) is within
/// γ|A||μ| of Aμ and |g_out| ≤ M, so the computed form errs by ≤ γ|μ|ᵀ(|A|ᵀM); `wt` is |A|ᵀM
/// (computed with |A| rounded too, hence the factor 2 in the budget).
pub(crate) fn forward_coef(op: &LinearOp, mu: &[f64], wt: &[f64], acc: &mut Acc) -> Vec<f64> {
    let map = op.map();
    let e = 2.0 * dot_err(map.fan_in().max(map.fan_out()));
    let s: f64 = mu.iter().zip(wt).map(|(m, w)| m.abs() * w).sum();
    acc.slack += e * s;
    // A sparse μ (a unit row, or early levels of one) skips the zero columns; the order of the
    // sums does not change the rounding budget.
    if mu.iter().filter(|v| **v != 0.0).count() * 4 < mu.len() {
        apply_sparse(op, mu)
    } else {
        map.apply(mu, false)
    }
}
