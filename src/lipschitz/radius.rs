//! Certified radii (theory.md §2): with margin m = |γ − S(x)| and L(x, ε) a certified local
//! Lipschitz bound on B(x, ε), every x' with ‖x' − x‖ < ε* = min(ε, m/L) gets the decision of x.
//! The bound-propagation route certifies B(x, r) directly when the bounds of S over it stay on
//! x's side of γ. Both are searched over ε by bisection: every radius evaluated yields a valid
//! certificate, and the largest one is kept.

use crate::bounds::round::next_down;

/// ε* = min(ε, m / L), rounded down (0 when L is not finite or m ≤ 0).
pub fn lipschitz_radius(margin: f64, lip: f64, eps: f64) -> f64 {
    if !(margin > 0.0) || !lip.is_finite() {
        return 0.0;
    }
    if lip <= 0.0 {
        return eps;
    }
    eps.min(next_down(margin / lip))
}

/// Bisection over r ∈ (0, r_max] for the largest certifiable radius. `certify(r)` returns a
/// radius certified using the ball of radius r (≤ r, or 0). Returns the best radius found.
pub fn search_radius(
    mut certify: impl FnMut(f64) -> crate::error::Result<f64>,
    r_max: f64,
    iters: usize,
) -> crate::error::Result<f64> {
    if !(r_max > 0.0) {
        return Ok(0.0);
    }
    let mut best = certify(r_max)?;
    if best >= r_max {
        return Ok(r_max);
    }
    let (mut lo, mut hi) = (0.0, r_max);
    for _ in 0..iters {
        let mid = 0.5 * (lo + hi);
        let c = certify(mid)?;
        best = best.max(c);
        if c >= mid {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(best)
}
