//! ReLU rule of the Jacobian bound propagation: the backward step g_in = u ⊙ g_out with
//! u = relu'(z) a Clarke derivative of the pre-activation z. Each bilinear term μ·u·g is bounded
//! above by a McCormick plane in (u, g) over u ∈ [0, 1], g ∈ [g_lo, g_hi] (the gradient box at
//! the ReLU output), and the u term by a linear relaxation of the step function in z (Shi et al.,
//! NeurIPS 2022, §4: the ReLU-derivative and multiplication relaxations), so the z terms are later
//! back-substituted to the input through the forward network.

use super::{Acc, Plane};
use crate::bounds::Interval;
use crate::bounds::relu::derivative_set;

const U4: f64 = 4.0 * f64::EPSILON;

/// An upper bound of c·u over the Clarke derivatives u of relu at z ∈ [zl, zu] (zl ≤ 0 ≤ zu):
/// (α, k) with c·u ≤ α·z + k. For c ≥ 0 the upper lines of the step are u ≤ 1 and, when
/// zl < 0, u ≤ (z − zl)/(−zl) (through (zl, 0) and (0, 1)); for c < 0 the lower lines u ≥ 0 and,
/// when zu > 0, u ≥ z/zu (through (0, 0) and (zu, 1)). The line is taken when it encloses less
/// area between itself and the step than the constant.
pub(crate) fn step_upper(c: f64, zl: f64, zu: f64) -> (f64, f64) {
    if c >= 0.0 {
        if zl < 0.0 && zu < -zl {
            (-c / zl, c)
        } else {
            (0.0, c)
        }
    } else if zu > 0.0 && -zl < zu {
        (c / zu, 0.0)
    } else {
        (0.0, 0.0)
    }
}

/// μ (coefficients on the gradient at the ReLU input) ↦ μ' on the gradient at its output and α
/// on the pre-activation z, with the constants and rounding slack added to `acc`:
/// μᵀ(u ⊙ g) ≤ μ'ᵀg + αᵀz + constants for every u admissible at z and g in the box `g`.
pub(crate) fn bilinear(
    mu: &[f64],
    z: &Interval,
    g: &Interval,
    plane: Plane,
    acc: &mut Acc,
) -> (Vec<f64>, Vec<f64>) {
    let n = mu.len();
    let mut out = vec![0.0; n];
    let mut alpha = vec![0.0; n];
    for j in 0..n {
        let a = mu[j];
        if a == 0.0 {
            continue;
        }
        let (zl, zu) = (z.lo[j], z.hi[j]);
        match derivative_set(zl, zu) {
            (1.0, 1.0) => out[j] = a,
            (0.0, 0.0) => {}
            _ => {
                let (gl, gu) = (g.lo[j], g.hi[j]);
                let one = match plane {
                    Plane::Adaptive => zu >= -zl,
                    Plane::Zero => false,
                    Plane::One => true,
                };
                // Plane "zero" (tight at u = 0): a·u·g ≤ max(a·gl, a·gu)·u.
                // Plane "one" (tight at u = 1): a·u·g ≤ a·g + m·u − m, m = min(a·gl, a·gu),
                // because the difference is (1 − u)(a·g − m) ≥ 0.
                let (cg, cu, k) = if one {
                    let m = (a * gl).min(a * gu);
                    (a, m, -m)
                } else {
                    (0.0, (a * gl).max(a * gu), 0.0)
                };
                let (al, kc) = step_upper(cu, zl, zu);
                out[j] = cg;
                alpha[j] = al;
                acc.term(k);
                acc.term(kc);
                // fl(a·g_end), fl(c/z_end): one rounding each, |u| ≤ 1, |z| ≤ max(|zl|, |zu|).
                let mz = zl.abs().max(zu.abs());
                acc.slack += U4 * (al.abs() * mz + 2.0 * cu.abs() + k.abs());
            }
        }
    }
    (out, alpha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// For random coefficients and boxes, every admissible (z, u, g) — u the step's value, or
    /// any u ∈ [0, 1] at z = 0 — satisfies μ·u·g ≤ μ'·g + α·z + (constants), for each plane
    /// policy; stable neurons are exact.
    #[test]
    fn bilinear_relaxation_bounds_every_admissible_triple() {
        let mut r = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..2000 {
            let zl = r.random::<f64>() * 4.0 - 3.0;
            let zu = zl + r.random::<f64>() * 4.0;
            let zu = if r.random::<f64>() < 0.1 {
                0.0f64.max(zl)
            } else {
                zu
            };
            let gl = r.random::<f64>() * 4.0 - 2.0;
            let gu = gl + r.random::<f64>() * 3.0;
            let a = r.random::<f64>() * 4.0 - 2.0;
            for plane in [Plane::Adaptive, Plane::Zero, Plane::One] {
                let mut acc = Acc::default();
                let z = Interval {
                    lo: vec![zl],
                    hi: vec![zu],
                };
                let g = Interval {
                    lo: vec![gl],
                    hi: vec![gu],
                };
                let (m, al) = bilinear(&[a], &z, &g, plane, &mut acc);
                let c = acc.finish();
                for k in 0..=20 {
                    for l in 0..=20 {
                        let zv = zl + (zu - zl) * k as f64 / 20.0;
                        let gv = gl + (gu - gl) * l as f64 / 20.0;
                        let us: Vec<f64> = if zv > 0.0 {
                            vec![1.0]
                        } else if zv < 0.0 {
                            vec![0.0]
                        } else {
                            vec![0.0, 0.5, 1.0]
                        };
                        for u in us {
                            let lhs = a * u * gv;
                            let rhs = m[0] * gv + al[0] * zv + c;
                            assert!(
                                lhs <= rhs + 1e-12 * (1.0 + lhs.abs()),
                                "{plane:?} a {a} z [{zl}, {zu}] g [{gl}, {gu}] at ({zv}, {u}, {gv}): {lhs} > {rhs}"
                            );
                        }
                    }
                }
            }
        }
    }
}
