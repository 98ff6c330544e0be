//! Linear relaxations of the gradient norm over a box of the gradient (Shi et al. 2022, the
//! norm at the end of the Jacobian graph): ‖g‖₁ = Σ|g_i| ≤ vᵀg + b with the chord of |·| on each
//! sign-uncertain coordinate, and ‖g‖₂² = Σ g_i² ≤ vᵀg + b with the chord of the square
//! ((g − lo)(g − hi) ≤ 0). Both are exact at the box corners and let the linear part vᵀg be
//! bounded jointly by the propagation instead of coordinate by coordinate.

use crate::bounds::Interval;
use crate::bounds::round::{dot_err, next_up};

const U4: f64 = 4.0 * f64::EPSILON;

/// The line above a convex φ on [lo, hi]: slope from the chord, intercept the larger endpoint
/// fit plus the rounding of the fits (a line above a convex function at both ends is above it in
/// between, whatever its slope).
fn chord(phi: impl Fn(f64) -> f64, lo: f64, hi: f64) -> (f64, f64) {
    if lo == hi {
        return (0.0, next_up(phi(lo) * (1.0 + U4)));
    }
    let (fl, fu) = (phi(lo), phi(hi));
    let s = (fu - fl) / (hi - lo);
    let b = (fl - s * lo).max(fu - s * hi);
    (
        s,
        b + U4 * (fl.abs() + fu.abs() + (s * lo).abs() + (s * hi).abs()),
    )
}

/// (v, b) with ‖g‖₁ ≤ vᵀg + b on the box (b rounded up); v_i = ±1 on coordinates of known sign.
pub(crate) fn l1(g: &Interval) -> (Vec<f64>, f64) {
    let n = g.len();
    let mut v = vec![0.0; n];
    let mut b = 0.0;
    for i in 0..n {
        let (lo, hi) = (g.lo[i], g.hi[i]);
        if lo >= 0.0 {
            v[i] = 1.0;
        } else if hi <= 0.0 {
            v[i] = -1.0;
        } else {
            let (s, c) = chord(f64::abs, lo, hi);
            v[i] = s;
            b += c;
        }
    }
    (
        v,
        next_up(b * (1.0 + dot_err(n)) + crate::bounds::round::ABS_FLOOR),
    )
}

/// (v, b) with ‖g‖₂² ≤ vᵀg + b on the box (b rounded up).
pub(crate) fn l2_squared(g: &Interval) -> (Vec<f64>, f64) {
    let n = g.len();
    let mut v = vec![0.0; n];
    let mut b = 0.0;
    let mut mag = 0.0;
    for i in 0..n {
        let (s, c) = chord(|x| x * x, g.lo[i], g.hi[i]);
        v[i] = s;
        b += c;
        mag += c.abs();
    }
    (
        v,
        next_up(b + dot_err(n) * mag + crate::bounds::round::ABS_FLOOR),
    )
}
