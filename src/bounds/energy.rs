//! Bounds on the energy S(z) = −T·logsumexp(z/T) from logit bounds: S is decreasing in every
//! z_k, so S ∈ [−T·lse(u/T), −T·lse(l/T)] on the box (GOOD-style direct certificate), and S is
//! concave, so the tangent S(z₀) − p₀ᵀ(z − z₀) bounds it from above (used by CROWN on S).

use super::interval::Interval;
use super::round::{next_down, next_up};

/// −T·logsumexp(z/T) in f64 (stable).
pub fn energy(z: &[f64], t: f64) -> f64 {
    crate::score::energy_f64(z, t)
}

fn slack(s: f64, k: usize) -> f64 {
    (k as f64 + 8.0) * 8.0 * f64::EPSILON * (s.abs() + 1.0)
}

/// [S_lo, S_hi] ⊇ {S(z) : z ∈ box}, rounded outward.
pub fn energy_bounds(z: &Interval, t: f64) -> (f64, f64) {
    let k = z.len();
    let lo = energy(&z.hi, t);
    let hi = energy(&z.lo, t);
    (next_down(lo - slack(lo, k)), next_up(hi + slack(hi, k)))
}

/// The gradient ∇_z S = −softmax(z/T) at z.
pub fn energy_grad(z: &[f64], t: f64) -> Vec<f64> {
    crate::score::softmax_f64(z, t)
        .into_iter()
        .map(|p| -p)
        .collect()
}
