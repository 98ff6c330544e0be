//! Max-pool rule of the Jacobian bound propagation: the Clarke gradient of a window routes
//! its output gradient g_k to a convex combination of the entries that can be maximal on the
//! traced box, so μᵀg_in = Σ_k g_k·s_k with s_k in [min, max] of μ over the window's candidates.
//! The term max_s g_k·s is convex in g_k and is bounded by its chord over the gradient box
//! (linear in g_k: the routing relaxed linearly, in the spirit of Shi et al. 2022). Windows may
//! overlap: μᵀg_in = Σ_k g_k·Σ_i λ_ki μ_i window by window all the same.

use super::Acc;
use crate::bounds::Interval;
use crate::bounds::max_pool::candidates;

const U4: f64 = 4.0 * f64::EPSILON;

/// μ on the pool input ↦ μ' on the pool output (window gradients in the box `g`), constants
/// and rounding slack added to `acc`.
pub(crate) fn route(
    mu: &[f64],
    pre: &Interval,
    g: &Interval,
    wins: &[Vec<usize>],
    acc: &mut Acc,
) -> Vec<f64> {
    let mut out = vec![0.0; wins.len()];
    for (k, win) in wins.iter().enumerate() {
        let cand = candidates(pre, win);
        let (smin, smax) = cand
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |m, &i| {
                (m.0.min(mu[i]), m.1.max(mu[i]))
            });
        let (gl, gu) = (g.lo[k], g.hi[k]);
        out[k] = if smin == smax {
            smin // every route gives the same coefficient
        } else if gl >= 0.0 {
            smax
        } else if gu <= 0.0 {
            smin
        } else {
            // f(x) = max(x·smin, x·smax) is convex: the line through its values at gl and gu
            // lies above it on [gl, gu]; the intercept is the larger of the two endpoint fits
            // (so a rounded slope keeps both endpoints covered) plus their rounding.
            let f = |x: f64| (x * smin).max(x * smax);
            let (fl, fu) = (f(gl), f(gu));
            let sigma = (fu - fl) / (gu - gl);
            let b = (fl - sigma * gl).max(fu - sigma * gu);
            acc.term(b);
            acc.slack += U4 * (fl.abs() + fu.abs() + (sigma * gl).abs() + (sigma * gu).abs());
            sigma
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// One 2×2 window: every route λ over the candidates and every window gradient in the box
    /// gives μᵀ(λ g) ≤ μ'·g + constants.
    #[test]
    fn routing_relaxation_bounds_every_route() {
        let mut r = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..3000 {
            let lo: Vec<f64> = (0..4).map(|_| r.random::<f64>()).collect();
            let hi: Vec<f64> = lo.iter().map(|l| l + r.random::<f64>() * 0.6).collect();
            let pre = Interval { lo, hi };
            let mu: Vec<f64> = (0..4).map(|_| r.random::<f64>() * 2.0 - 1.0).collect();
            let gl = r.random::<f64>() * 2.0 - 1.0;
            let g = Interval {
                lo: vec![gl],
                hi: vec![gl + r.random::<f64>()],
            };
            let mut acc = Acc::default();
            let m = route(&mu, &pre, &g, &[vec![0, 1, 2, 3]], &mut acc);
            let c = acc.finish();
            let cand = candidates(&pre, &[0, 1, 2, 3]);
            for &i in &cand {
                for k in 0..=10 {
                    let gv = g.lo[0] + (g.hi[0] - g.lo[0]) * k as f64 / 10.0;
                    let lhs = mu[i] * gv;
                    assert!(
                        lhs <= m[0] * gv + c + 1e-12,
                        "route {i}: {lhs} > {}",
                        m[0] * gv + c
                    );
                }
            }
        }
    }
}
