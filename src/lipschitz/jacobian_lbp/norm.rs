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
    for ((vi, &lo), &hi) in v.iter_mut().zip(&g.lo).zip(&g.hi) {
        if lo >= 0.0 {
            *vi = 1.0;
        } else if hi <= 0.0 {
            *vi = -1.0;
        } else {
            let (s, c) = chord(f64::abs, lo, hi);
            *vi = s;
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
    for ((vi, &lo), &hi) in v.iter_mut().zip(&g.lo).zip(&g.hi) {
        let (s, c) = chord(|x| x * x, lo, hi);
        *vi = s;
        b += c;
        mag += c.abs();
    }
    (
        v,
        next_up(b + dot_err(n) * mag + crate::bounds::round::ABS_FLOOR),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// On random boxes, ‖g‖₁ and ‖g‖₂² at the corners and random points stay below vᵀg + b.
    #[test]
    fn norm_relaxations_bound_the_norms_on_the_box() {
        let mut r = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let n = 1 + (r.random::<f64>() * 5.0) as usize;
            let lo: Vec<f64> = (0..n).map(|_| r.random::<f64>() * 4.0 - 2.0).collect();
            let hi: Vec<f64> = lo.iter().map(|l| l + r.random::<f64>() * 3.0).collect();
            let g = Interval { lo, hi };
            let (v1, b1) = l1(&g);
            let (v2, b2) = l2_squared(&g);
            for k in 0..200 {
                let x: Vec<f64> = (0..n)
                    .map(|i| {
                        let t = if k < 1 << n {
                            (k >> i & 1) as f64
                        } else {
                            r.random::<f64>()
                        };
                        g.lo[i] + (g.hi[i] - g.lo[i]) * t
                    })
                    .collect();
                let dot = |v: &[f64]| v.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
                let n1: f64 = x.iter().map(|v| v.abs()).sum();
                let n2: f64 = x.iter().map(|v| v * v).sum();
                assert!(n1 <= dot(&v1) + b1 + 1e-12, "ℓ1 {n1} > {}", dot(&v1) + b1);
                assert!(n2 <= dot(&v2) + b2 + 1e-12, "ℓ2² {n2} > {}", dot(&v2) + b2);
            }
        }
    }
}
