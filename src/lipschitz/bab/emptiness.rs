//! Proof that a branch-and-bound domain is empty by weak duality (a Farkas / Lagrangian
//! certificate). A split neuron j whose earlier ReLUs are all fixed on the domain (split, or
//! stable on its boxes) has an exact affine pre-activation there, z_j(x) = a_jᵀ(x − x₀) + c_j,
//! and the domain lies in {x ∈ B : s_j z_j(x) ≥ 0 ∀j} (s_j = +1 active, −1 inactive). If
//! λ ≥ 0 gives max_{x∈B} Σ_j λ_j s_j z_j(x) < 0, that set is empty. λ is searched in f64
//! (multiplicative weights against the ball's best response); only the final inequality, evaluated with a_j and c_j as
//! outward-rounded boxes, decides. Proof: proofs/lipschitz_bab.md.

use super::domain::{FREE, Problem, state};
use crate::bounds::ibp::Trace;
use crate::bounds::linear_map::affine_image;
use crate::bounds::relu::derivative_set;
use crate::bounds::round::{ABS_FLOOR, dot_err, next_down, next_up};
use crate::bounds::{Interval, Node, Norm};
use crate::error::Result;
use crate::lipschitz::local::grad_backward;

/// s·z(x) ≥ 0 with z(x) = aᵀ(x − x₀) + c, a and c enclosed by boxes.
struct Constraint {
    a: Interval,
    c: (f64, f64),
    s: f64,
}

/// Most rounds of the multiplier search.
const ROUNDS: usize = 4000;

/// The split constraints with exact affine forms on the domain (`dtraces`: its derivative view).
fn constraints(p: &Problem, splits: &[Vec<i8>], dtraces: &[Trace]) -> Result<Vec<Constraint>> {
    let nodes = &p.net.nodes;
    let mut out = Vec::new();
    // z(x₀) under the domain's fixed pattern, as an outward-rounded box.
    let mut x0 = Interval::point(&p.ball.center);
    let mut relu_seen = false;
    for (i, node) in nodes.iter().enumerate() {
        match node {
            Node::Affine(a) => x0 = affine_image(a.op.map(), a.bias.as_deref(), &x0)?,
            Node::Relu => {
                let z = dtraces[i].input();
                // Split neurons, and after the first ReLU layer also the neurons stable on the
                // domain's boxes (on the first, stable means stable on the whole ball: redundant).
                for j in 0..z.len() {
                    let st = match (state(splits, i, j), derivative_set(z.lo[j], z.hi[j])) {
                        (FREE, (1.0, 1.0)) if relu_seen => 1,
                        (FREE, (0.0, 0.0)) if relu_seen => -1,
                        (FREE, _) => continue,
                        (st, _) => st,
                    };
                    let row = if relu_seen {
                        None
                    } else {
                        p.row_cache.get((i, j))
                    };
                    let row = match row {
                        Some(r) => r,
                        None => {
                            let mut e = vec![0.0; z.len()];
                            e[j] = 1.0;
                            let r = grad_backward(&nodes[..i], &dtraces[..i], Interval::point(&e))?;
                            if !relu_seen {
                                p.row_cache.insert((i, j), r.clone());
                            }
                            r
                        }
                    };
                    out.push(Constraint {
                        a: row,
                        c: (x0.lo[j], x0.hi[j]),
                        s: if st > 0 { 1.0 } else { -1.0 },
                    });
                }
                let mut fixed = true;
                for j in 0..z.len() {
                    let d = match derivative_set(z.lo[j], z.hi[j]) {
                        (0.0, 0.0) => 0.0,
                        (1.0, 1.0) => 1.0,
                        _ => {
                            fixed = false;
                            break;
                        }
                    };
                    x0.lo[j] *= d;
                    x0.hi[j] *= d;
                }
                if !fixed {
                    break;
                }
                relu_seen = true;
            }
            _ => break,
        }
    }
    Ok(out)
}

/// max_{‖v‖_p ≤ 1} gᵀv = ‖g‖_q and a maximiser v.
fn dual(g: &[f64], norm: Norm) -> (f64, Vec<f64>) {
    match norm {
        Norm::L2 => {
            let n = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let v = g
                .iter()
                .map(|x| if n > 0.0 { x / n } else { 0.0 })
                .collect();
            (n, v)
        }
        Norm::Linf => (
            g.iter().map(|x| x.abs()).sum(),
            g.iter().map(|x| x.signum()).collect(),
        ),
    }
}

/// Multipliers λ ≥ 0 for a certificate, searched in f64 on the midpoints as a zero-sum game:
/// λ (on the simplex, over the constraints scaled to ‖a_j‖_q = 1) plays multiplicative weights
/// against the ball's best response x = x₀ + ε·v; the value min_λ max_x Σ λ_j h_j(x) is < 0
/// exactly when the set is empty (minimax, B compact convex). Returns the best λ (unscaled) as
/// soon as it certifies in f64, or None when the averaged response is a point of the ball that
/// satisfies every constraint (then no certificate exists) or the rounds run out.
fn search(cs: &[Constraint], eps: f64, norm: Norm) -> Option<Vec<f64>> {
    let m = cs.len();
    let n = cs[0].a.len();
    let mid = |b: &Interval, k: usize| 0.5 * b.lo[k] + 0.5 * b.hi[k];
    let mut a: Vec<Vec<f64>> = Vec::with_capacity(m);
    let mut c: Vec<f64> = Vec::with_capacity(m);
    let mut scale: Vec<f64> = Vec::with_capacity(m);
    for con in cs {
        let row: Vec<f64> = (0..n).map(|k| con.s * mid(&con.a, k)).collect();
        let q = norm.dual_norm(&row);
        let k = if q > 0.0 { 1.0 / q } else { 1.0 };
        a.push(row.iter().map(|v| v * k).collect());
        c.push(con.s * (0.5 * con.c.0 + 0.5 * con.c.1) * k);
        scale.push(k);
    }
    let unscale = |lam: &[f64]| lam.iter().zip(&scale).map(|(l, k)| l * k).collect();
    let mut lam = vec![1.0 / m as f64; m];
    let mut vbar = vec![0.0; n];
    let range = c.iter().fold(0.0f64, |r, v| r.max(v.abs())) + eps;
    let eta0 = (2.0 * (m as f64).ln().max(1.0)).sqrt() / range;
    for t in 1..=ROUNDS {
        let mut g = vec![0.0; n];
        for (l, row) in lam.iter().zip(&a) {
            g.iter_mut().zip(row).for_each(|(g, r)| *g += l * r);
        }
        let (gn, v) = dual(&g, norm);
        let phi = lam.iter().zip(&c).map(|(l, c)| l * c).sum::<f64>() + eps * gn;
        if phi < 0.0 {
            return Some(unscale(&lam));
        }
        let w = 1.0 / t as f64;
        vbar.iter_mut()
            .zip(&v)
            .for_each(|(b, v)| *b += w * (v - *b));
        // h_j at the best response and at the averaged one.
        let (mut worst_avg, mut h) = (f64::INFINITY, Vec::with_capacity(m));
        for (row, cj) in a.iter().zip(&c) {
            let (mut hv, mut hb) = (0.0, 0.0);
            for k in 0..n {
                hv += row[k] * v[k];
                hb += row[k] * vbar[k];
            }
            h.push(cj + eps * hv);
            worst_avg = worst_avg.min(cj + eps * hb);
        }
        if worst_avg > 0.0 {
            return None;
        }
        let eta = eta0 / (t as f64).sqrt();
        lam.iter_mut()
            .zip(&h)
            .for_each(|(l, hj)| *l *= (-eta * hj).exp());
        let tot: f64 = lam.iter().sum();
        if !(tot.is_finite() && tot > 0.0) {
            return None;
        }
        lam.iter_mut().for_each(|l| *l /= tot);
    }
    None
}

/// An upper bound, rounded outward, of max_{x∈B} Σ_j λ_j s_j z_j(x) for every a_j, c_j in their
/// boxes (B the ball without the pixel box, a superset).
fn certified_max(cs: &[Constraint], lam: &[f64], eps: f64, norm: Norm) -> f64 {
    let m = cs.len();
    let n = cs[0].a.len();
    let e = dot_err(m);
    let mut gmax = vec![0.0; n];
    for (k, gk) in gmax.iter_mut().enumerate() {
        let (mut lo, mut hi, mut mag) = (0.0, 0.0, 0.0);
        for (c, l) in cs.iter().zip(lam) {
            let (u, w) = (l * c.s * c.a.lo[k], l * c.s * c.a.hi[k]);
            lo += u.min(w);
            hi += u.max(w);
            mag += u.abs().max(w.abs());
        }
        let lo = next_down(lo - e * mag - ABS_FLOOR);
        let hi = next_up(hi + e * mag + ABS_FLOOR);
        *gk = lo.abs().max(hi.abs());
    }
    let lin = next_up(eps * norm.dual_norm_up(&gmax));
    let (mut cst, mut mag) = (0.0, 0.0);
    for (c, l) in cs.iter().zip(lam) {
        let v = if c.s > 0.0 { l * c.c.1 } else { -(l * c.c.0) };
        cst += v;
        mag += v.abs();
    }
    let cst = next_up(cst + e * mag + ABS_FLOOR);
    next_up(next_up(cst + lin) + 2.0 * f64::EPSILON * (cst.abs() + lin))
}

/// True when a certificate proves that no point of the ball lies in the domain.
pub(crate) fn proven_empty(p: &Problem, splits: &[Vec<i8>], dtraces: &[Trace]) -> Result<bool> {
    let cs = constraints(p, splits, dtraces)?;
    if cs.is_empty() {
        return Ok(false);
    }
    Ok(match search(&cs, p.ball.eps, p.ball.norm) {
        Some(lam) => certified_max(&cs, &lam, p.ball.eps, p.ball.norm) < 0.0,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// s·(a·x + c) ≥ 0 with point boxes, in 2-D.
    fn con(a: [f64; 2], c: f64, s: f64) -> Constraint {
        Constraint {
            a: Interval::point(&a),
            c: (c, c),
            s,
        }
    }

    /// On the unit ℓ2 / ℓ∞ ball at 0: x₁ ≥ 0.5 is satisfiable (max of x₁ − 0.5 is 0.5: the ball
    /// term matters), x₁ ≥ 1.5 is not (max −0.5), and the certified maximum brackets the exact
    /// one from above within rounding.
    #[test]
    fn certified_max_is_the_exact_maximum_rounded_up() {
        for norm in [Norm::L2, Norm::Linf] {
            for (c, exact) in [(-0.5, 0.5), (-1.5, -0.5)] {
                let cs = [con([1.0, 0.0], c, 1.0)];
                let m = certified_max(&cs, &[1.0], 1.0, norm);
                assert!(m >= exact && m <= exact + 1e-12, "{norm:?} {c}: {m}");
            }
            // Inactive: −(x₁ + x₂ − 3) ≥ 0 … max of −(x₁ + x₂) + 3 over the ball.
            let cs = [con([1.0, 1.0], -3.0, -1.0)];
            let exact = 3.0 + if norm == Norm::L2 { 2f64.sqrt() } else { 2.0 };
            let m = certified_max(&cs, &[1.0], 1.0, norm);
            assert!(m >= exact && m <= exact + 1e-12, "{norm:?}: {m}");
        }
    }

    /// x₁ ≥ 0.3 and x₁ ≤ −0.3 are each satisfiable in the unit ball but not together: the search
    /// finds the certificate (λ ∝ (1, 1): value −0.3); x₁ ≥ 0.3 and x₂ ≥ 0.3 together are
    /// satisfiable, so no certificate is returned.
    #[test]
    fn search_certifies_a_joint_contradiction_only() {
        for norm in [Norm::L2, Norm::Linf] {
            let cs = [con([1.0, 0.0], -0.3, 1.0), con([1.0, 0.0], 0.3, -1.0)];
            let lam = search(&cs, 1.0, norm).expect("certificate");
            assert!(certified_max(&cs, &lam, 1.0, norm) < 0.0);
            let cs = [con([1.0, 0.0], -0.3, 1.0), con([0.0, 1.0], -0.3, 1.0)];
            assert!(search(&cs, 1.0, norm).is_none());
        }
    }
}
