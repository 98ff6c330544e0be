//! The diagonal dual bound of the largest value of a convex quadratic over a box (the dual of
//! Shor's SDP relaxation, max ⟨M, Y⟩ s.t. Y ⪰ 0, Y_ii ≤ 1; Nesterov 1998): with θ = c + r∘u,
//! |u_a| ≤ 1, y = (1, u) and any positive weights w, ‖g̃ + Ẽθ‖² = yᵀMy = zᵀ(WMW)z with z = W⁻¹y,
//! so it is at most λ_max(WMW)·Σ_i w_i⁻² — the pair terms bounded jointly, not one by one.
//! Proof: proofs/lipschitz_pattern_gram.md, Claim 5.

use super::pattern_gram::Expansion;
use crate::bounds::round::{ABS_FLOOR, dot_err, next_down, next_up, widen_up};
use crate::lipschitz::cholesky_certificate::lambda_max_by_cholesky;
use nalgebra::DMatrix;

/// Weight-update rounds (each a warm-started Lanczos estimate of the top eigenpair). 20, not 40:
/// on the GReg MLP's BaB the bound at an equal number of domains moved by ≤ 0.2 % from 10 to 200
/// rounds, while the dual was a fifth of a domain's time at 40 (BENCHMARKS.md, "2026-12-07, 16:20 UTC").
const ROUNDS: usize = 20;
/// Lanczos steps per round.
const LANCZOS: usize = 20;
/// The damping exponent of the multiplicative weight update.
const STEP: f64 = 0.25;

/// A certified upper bound of max over the θ box of ‖g̃ + Ẽθ‖₂² (+∞ when it cannot be certified)
/// and the diagonal d used (d_0 for the constant, d_a for θ_a; Σ d·λ is the bound's main part,
/// so d_a is variable a's share).
pub struct DualBound {
    pub value: f64,
    pub d: Vec<f64>,
}

/// Σ coef_j·m_j for m_j ∈ [mid_j ± rad_j]: the float value and a bound on its distance to every
/// such exact sum (Higham's γ_n bound for the float sum, the radii weighted by |coef|).
fn enclose_dot(coef: &[f64], mid: &[f64], rad: &[f64]) -> (f64, f64) {
    let (mut s, mut mag, mut spread) = (0.0, 0.0, 0.0);
    for ((c, m), r) in coef.iter().zip(mid).zip(rad) {
        s += c * m;
        mag += (c * m).abs();
        spread += c.abs() * r;
    }
    let n = coef.len();
    let err = (dot_err(n) * mag + spread) * (1.0 + dot_err(2 * n + 2)) + ABS_FLOOR;
    (s, next_up(err))
}

/// The quadratic form's matrix M (N = m + 1, row-major) in the centred variables y = (1, u),
/// with an entrywise error bound: |M_exact − M̃| ≤ E for every Gram matrix in the enclosure.
fn centred_matrix(x: &Expansion) -> Option<(Vec<f64>, Vec<f64>)> {
    let m = x.vars();
    let w = m + 1;
    let mut c = vec![1.0; w];
    let mut r = vec![0.0; w];
    for (a, &(tl, th)) in x.ranges.iter().enumerate() {
        if !(tl.is_finite() && th.is_finite() && tl <= th) {
            return None;
        }
        let mid = 0.5 * tl + 0.5 * th;
        c[a + 1] = mid;
        // [mid − r, mid + r] ⊇ [tl, th].
        r[a + 1] = next_up(next_up(th - mid).max(next_up(mid - tl)));
    }
    let mut gm = vec![0.0; w * w];
    let mut gr = vec![0.0; w * w];
    for k in 0..w * w {
        let (lo, hi) = (x.gram_lo[k], x.gram_hi[k]);
        if !(lo.is_finite() && hi.is_finite()) {
            return None;
        }
        gm[k] = 0.5 * lo + 0.5 * hi;
        gr[k] = next_up(next_up(hi - gm[k]).max(next_up(gm[k] - lo)));
    }
    // t_i = Σ_j c_j G_ij = ⟨v_i, a⟩ with a = g̃ + Σ c_a ẽ_a.
    let mut t = vec![0.0; w];
    let mut te = vec![0.0; w];
    for i in 0..w {
        (t[i], te[i]) = enclose_dot(&c, &gm[i * w..(i + 1) * w], &gr[i * w..(i + 1) * w]);
    }
    let mut mm = vec![0.0; w * w];
    let mut me = vec![0.0; w * w];
    // M_00 = ‖a‖² = Σ_i c_i t_i.
    (mm[0], me[0]) = enclose_dot(&c, &t, &te);
    let u4 = 4.0 * f64::EPSILON;
    for a in 1..w {
        // M_0a = r_a⟨v_a, a⟩.
        let v = r[a] * t[a];
        let e = next_up(next_up(r[a] * te[a] * (1.0 + u4)) + u4 * v.abs() + ABS_FLOOR);
        (mm[a], me[a]) = (v, e);
        (mm[a * w], me[a * w]) = (v, e);
        for b in a..w {
            // M_ab = r_a r_b G_ab.
            let rr = r[a] * r[b];
            let v = rr * gm[a * w + b];
            let e = next_up(next_up(rr * gr[a * w + b] * (1.0 + u4)) + u4 * v.abs() + ABS_FLOOR);
            (mm[a * w + b], me[a * w + b]) = (v, e);
            (mm[b * w + a], me[b * w + a]) = (v, e);
        }
    }
    Some((mm, me))
}

/// xᵀy with eight independent partial sums (so the compiler can vectorise it; f64 sums are not
/// reassociated otherwise). Only the heuristic search for the weights uses it: the certified
/// value is computed apart, with its own rounding bounds. Not `cholesky_certificate`'s
/// four-accumulator dot: that one fixes the certificate's bits, and sharing it here cost 15–20 %
/// of the BaB domains per 10 s on 3 of 5 images (measured).
#[inline]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for k in 0..8 {
            acc[k] += a[k] * b[k];
        }
    }
    let tail: f64 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f64>() + tail
}

/// The top Ritz pair of the symmetric `a` (row-major, side w) from `steps` Lanczos steps with
/// full reorthogonalisation started at `v`; `v` becomes the Ritz vector (unit length). An
/// estimate only: the certificate does not depend on it.
fn top_eigen(a: &[f64], w: usize, v: &mut [f64], steps: usize) -> f64 {
    let k = steps.min(w).max(1);
    let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(nv.is_finite() && nv > 0.0) {
        return 0.0;
    }
    let mut q: Vec<Vec<f64>> = vec![v.iter().map(|x| x / nv).collect()];
    let (mut alpha, mut beta) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for j in 0..k {
        let qj = &q[j];
        let mut z: Vec<f64> = a.chunks_exact(w).map(|row| dot(row, qj)).collect();
        alpha.push(dot(qj, &z));
        // Full reorthogonalisation against every earlier vector (twice is enough).
        for _ in 0..2 {
            for qi in &q {
                let c = dot(qi, &z);
                z.iter_mut().zip(qi).for_each(|(p, r)| *p -= c * r);
            }
        }
        let b = z.iter().map(|x| x * x).sum::<f64>().sqrt();
        if j + 1 == k || !(b.is_finite() && b > 1e-12 * alpha[0].abs().max(f64::MIN_POSITIVE)) {
            break;
        }
        beta.push(b);
        q.push(z.iter().map(|x| x / b).collect());
    }
    let m = alpha.len();
    let t = DMatrix::<f64>::from_fn(m, m, |i, j| {
        if i == j {
            alpha[i]
        } else if i + 1 == j {
            beta[i]
        } else if j + 1 == i {
            beta[j]
        } else {
            0.0
        }
    });
    let e = nalgebra::SymmetricEigen::new(t);
    let top = (0..m)
        .max_by(|&x, &y| e.eigenvalues[x].total_cmp(&e.eigenvalues[y]))
        .unwrap_or(0);
    v.iter_mut().for_each(|x| *x = 0.0);
    for (i, qi) in q.iter().enumerate().take(m) {
        let s = e.eigenvectors[(i, top)];
        v.iter_mut().zip(qi).for_each(|(p, r)| *p += s * r);
    }
    let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if nv > 0.0 {
        v.iter_mut().for_each(|x| *x /= nv);
    }
    e.eigenvalues[top]
}

/// D^{-1/2} M D^{-1/2}, row-major.
fn scaled(mm: &[f64], d: &[f64]) -> Vec<f64> {
    let w = d.len();
    let s: Vec<f64> = d.iter().map(|v| 1.0 / v.sqrt()).collect();
    let mut a = vec![0.0; w * w];
    for i in 0..w {
        for j in 0..w {
            a[i * w + j] = s[i] * s[j] * mm[i * w + j];
        }
    }
    a
}

/// The diagonal dual bound of the expansion's quadratic part (see the module doc): weights
/// improved by a multiplicative update towards the stationarity condition v_i² = d_i/Σd of the
/// top eigenvector v, then the best weights certified (Cholesky λ_max, entrywise errors by
/// Weyl's inequality through the Frobenius norm).
pub fn box_quadratic_dual(x: &Expansion) -> DualBound {
    let fail = DualBound {
        value: f64::INFINITY,
        d: Vec::new(),
    };
    let Some((mm, me)) = centred_matrix(x) else {
        return fail;
    };
    let w = x.vars() + 1;
    // Start: d_i = Σ_j |M_ij| (then D − M is diagonally dominant, λ ≤ 1).
    let rows: Vec<f64> = (0..w)
        .map(|i| mm[i * w..(i + 1) * w].iter().map(|v| v.abs()).sum())
        .collect();
    let total: f64 = rows.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return fail;
    }
    let floor = 1e-9 * total / w as f64;
    let mut d: Vec<f64> = rows.iter().map(|v| v.max(floor)).collect();
    let mut v = vec![1.0 / (w as f64).sqrt(); w];
    let mut best = (f64::INFINITY, d.clone());
    for _ in 0..ROUNDS {
        let a = scaled(&mm, &d);
        let lam = top_eigen(&a, w, &mut v, LANCZOS);
        let s: f64 = d.iter().sum();
        let f = lam * s;
        if f < best.0 {
            best = (f, d.clone());
        }
        // Towards v_i² = d_i / s: grow d_i where the worst direction leans on it, else shrink.
        for (di, vi) in d.iter_mut().zip(&v) {
            let ratio = (s * vi * vi / *di).clamp(0.25, 4.0);
            *di = (*di * ratio.powf(STEP)).max(floor);
        }
    }
    let d = best.1;
    // Certify with w_i = 1/√d_i (any positive floats are valid weights; anything else, e.g. a
    // d_i that overflowed, gives no certificate).
    let wt: Vec<f64> = d.iter().map(|v| 1.0 / v.sqrt()).collect();
    if !wt.iter().all(|v| v.is_finite() && *v > 0.0) {
        return fail;
    }
    let mut a = DMatrix::<f64>::zeros(w, w);
    let mut fro2 = 0.0;
    for i in 0..w {
        for j in 0..w {
            let ww = wt[i] * wt[j];
            let val = ww * mm[i * w + j];
            let err = next_up(
                ww * me[i * w + j] * (1.0 + 4.0 * f64::EPSILON)
                    + 4.0 * f64::EPSILON * val.abs()
                    + ABS_FLOOR,
            );
            a[(i, j)] = val;
            fro2 += err * err;
        }
    }
    let fro = next_up(widen_up(fro2, dot_err(w * w)).sqrt() * (1.0 + 4.0 * f64::EPSILON));
    let lam = lambda_max_by_cholesky(&a).max(0.0);
    // Σ_i w_i⁻² rounded up: ‖z‖² = Σ y_i²/w_i² with y_0 = 1, |y_a| ≤ 1.
    let inv = wt.iter().map(|v| next_up(1.0 / next_down(v * v)));
    let s = widen_up(inv.clone().sum::<f64>(), dot_err(w));
    let value = next_up(next_up(lam + fro) * s * (1.0 + 4.0 * f64::EPSILON));
    DualBound {
        value: if value.is_nan() { f64::INFINITY } else { value },
        d: d.iter().map(|v| v * lam).collect(),
    }
}
