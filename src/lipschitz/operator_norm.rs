//! Sound upper bounds on operator norms of the linear layers.
//!
//! - ℓ2 of a dense matrix R: the Gram matrix Ĝ = fl(RRᵀ) (or RᵀR, the smaller side d), whose
//!   distance to the exact G is ≤ γ_k‖R‖²_F (Higham Thm 3.5); then an a-posteriori enclosure of
//!   λ_max(Ĝ) that does not trust the eigen-solver: with its eigenvectors X, B = XᵀĜX and
//!   C = XᵀX (both with elementwise rounding margins), ‖C − I‖_F ≤ δ < 1 gives
//!   λ_max(Ĝ) ≤ max(Gershgorin(B), 0)/(1 − δ), because yᵀĜy/yᵀy = zᵀBz/zᵀCz for y = Xz
//!   (proofs/lipschitz_operator_norms.md).
//! - ℓ∞→ℓ∞ of a matrix: the largest absolute row sum (exact, rounded up).
//! - ℓ2 of a convolution with zero padding and any stride: ≤ √(kh·kw)·min‖Rᵢ‖₂ over four
//!   reshapings of the kernel (Singla & Feizi 2021; proof in proofs/lipschitz_operator_norms.md),
//!   or the exact spectral norm of the unrolled matrix when it is small.

use crate::bounds::conv::Conv;
use crate::bounds::linear_map::LinearMap;
use crate::bounds::round::{ABS_FLOOR, dot_err, next_down, next_up, widen_up};
use nalgebra::DMatrix;

/// A certified ‖R‖₂ for R row-major `(rows, cols)`.
pub fn spectral_upper(rows: usize, cols: usize, r: &[f64]) -> f64 {
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    // G = RRᵀ or RᵀR (the smaller side) by nalgebra's blocked product; any summation order
    // obeys the γ_k error bound used below.
    let m = DMatrix::from_row_slice(rows, cols, r);
    let (d, k, g) = if rows <= cols {
        (rows, cols, &m * m.transpose())
    } else {
        (cols, rows, m.transpose() * &m)
    };
    // Symmetrise exactly (the solver reads one triangle; both are the same dot products).
    let g = DMatrix::from_fn(d, d, |i, j| if i <= j { g[(i, j)] } else { g[(j, i)] });
    let frob2: f64 = widen_up(r.iter().map(|v| v * v).sum::<f64>(), dot_err(r.len()));
    spectral_from_gram(&g, k, frob2)
}

/// A certified ‖R‖₂ from a computed Gram matrix `g` (RRᵀ or RᵀR, symmetric as stored) whose
/// entries are sums of at most `k` products (any order), and `frob2` ≥ ‖R‖²_F: the computed
/// Ĝ is within γ_k‖R‖²_F of the exact Gram (Higham Thm 3.5), whose λ_max is ‖R‖₂².
pub fn spectral_from_gram(g: &DMatrix<f64>, k: usize, frob2: f64) -> f64 {
    let lam = verified_lambda_max(g);
    let eta = dot_err(k) * frob2;
    let bound = next_up(next_up(lam + eta).sqrt() * (1.0 + 2.0 * f64::EPSILON));
    // Never above the Frobenius norm (itself a certified bound).
    bound.min(next_up(frob2.sqrt() * (1.0 + 2.0 * f64::EPSILON)))
}

/// A certified upper bound on the largest eigenvalue of the symmetric matrix `g` (as stored),
/// from an approximate eigen-decomposition checked a posteriori (no trust in the solver):
/// λ_max(g) ≤ max(Gershgorin(XᵀgX), 0) / (1 − ‖XᵀX − I‖_F). Infinite when the check fails.
pub fn verified_lambda_max(g: &DMatrix<f64>) -> f64 {
    let d = g.nrows();
    if d == 0 {
        return 0.0;
    }
    let x = g.clone().symmetric_eigen().eigenvectors;
    let xa = x.abs();
    let ga = g.abs();
    // Each entry of a product of two d-term dot products is within 2·dot_err(d)·(|A||B|) of the
    // exact one (one rounding chain per factor); the magnitudes |X|ᵀ|G||X| and |X|ᵀ|X| are
    // themselves rounded, so they are widened before use.
    let e2 = next_up(2.0 * dot_err(d) * (1.0 + dot_err(d)));
    let b = x.transpose() * (g * &x);
    let mb = xa.transpose() * (&ga * &xa);
    let c = x.transpose() * &x;
    let mc = xa.transpose() * &xa;
    let widen = |m: f64| widen_up(m, 2.0 * dot_err(d));
    // Gershgorin on B with every entry's error added on its unfavourable side.
    let mut gersh = f64::NEG_INFINITY;
    for i in 0..d {
        let mut row = b[(i, i)] + e2 * widen(mb[(i, i)]);
        let mut mag = row.abs();
        for j in 0..d {
            if j != i {
                let t = b[(i, j)].abs() + e2 * widen(mb[(i, j)]);
                row += t;
                mag += t;
            }
        }
        // The sum's own rounding error is at most dot_err(2d)·Σ|terms|.
        gersh = gersh.max(next_up(row + dot_err(2 * d) * mag + ABS_FLOOR));
    }
    // δ ≥ ‖C − I‖_F.
    let mut sq = 0.0;
    for i in 0..d {
        for j in 0..d {
            let exact = if i == j { 1.0 } else { 0.0 };
            let dev = (c[(i, j)] - exact).abs() + e2 * widen(mc[(i, j)]);
            sq += dev * dev;
        }
    }
    let delta = next_up(widen_up(sq, dot_err(d * d)).sqrt() * (1.0 + 2.0 * f64::EPSILON));
    if delta.is_nan() || delta >= 0.5 || !gersh.is_finite() {
        return f64::INFINITY;
    }
    next_up(gersh.max(0.0) / next_down(1.0 - delta))
}

/// A certified ‖R‖_{∞→∞} = max_i Σ_j |R_ij|.
pub fn linf_upper(rows: usize, cols: usize, r: &[f64]) -> f64 {
    (0..rows)
        .map(|i| {
            widen_up(
                r[i * cols..(i + 1) * cols].iter().map(|v| v.abs()).sum(),
                dot_err(cols),
            )
        })
        .fold(0.0, f64::max)
}

/// A certified ‖R‖_{2→∞} = max_i ‖R_i‖₂ (largest row norm).
pub fn l2_to_linf_upper(rows: usize, cols: usize, r: &[f64]) -> f64 {
    (0..rows)
        .map(|i| {
            let s: f64 = r[i * cols..(i + 1) * cols].iter().map(|v| v * v).sum();
            next_up(widen_up(s, dot_err(cols)).sqrt() * (1.0 + 2.0 * f64::EPSILON))
        })
        .fold(0.0, f64::max)
}

/// The dense matrix of a linear map (column by column), for small maps only.
pub fn unroll(map: &dyn LinearMap) -> Vec<f64> {
    let (m, n) = (map.out_dim(), map.in_dim());
    let mut a = vec![0.0; m * n];
    let mut e = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        let col = map.apply(&e, false);
        for i in 0..m {
            a[i * n + j] = col[i];
        }
        e[j] = 0.0;
    }
    a
}

/// The dense `(out, in)` matrix of a convolution, built from the kernel (O(out·fan_in)).
pub fn unroll_conv(conv: &Conv) -> Vec<f64> {
    let n = conv.in_dim();
    let (hw_in, hw_out) = (conv.h * conv.w, conv.ho * conv.wo);
    let mut a = vec![0.0; conv.out_dim() * n];
    for o in 0..conv.c_out {
        for i in 0..conv.ho {
            for j in 0..conv.wo {
                let row = (o * hw_out + i * conv.wo + j) * n;
                for c in 0..conv.c_in {
                    for ka in 0..conv.kh {
                        let y = (i * conv.stride + ka) as isize - conv.pad as isize;
                        if y < 0 || y >= conv.h as isize {
                            continue;
                        }
                        for kb in 0..conv.kw {
                            let x = (j * conv.stride + kb) as isize - conv.pad as isize;
                            if x < 0 || x >= conv.w as isize {
                                continue;
                            }
                            a[row + c * hw_in + y as usize * conv.w + x as usize] =
                                conv.at(o, c, ka, kb);
                        }
                    }
                }
            }
        }
    }
    a
}

/// Largest unrolled matrix (entries) whose exact spectral norm we compute.
pub const UNROLL_MAX_ENTRIES: usize = 2_000_000;
/// Largest Gram side of an unrolled matrix.
pub const UNROLL_MAX_SIDE: usize = 1024;
/// Largest Gram side for the two mixed reshapings of a kernel.
pub const RESHAPE_MAX_GRAM: usize = 1024;

/// How much work the convolution bound may spend: the largest Gram side for the mixed
/// reshapings (R3, R4) and for the unrolled matrix. Larger sides cost O(side³) but are tighter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NormBudget {
    pub reshape_max_gram: usize,
    pub unroll_max_side: usize,
}

impl Default for NormBudget {
    fn default() -> Self {
        Self {
            reshape_max_gram: RESHAPE_MAX_GRAM,
            unroll_max_side: UNROLL_MAX_SIDE,
        }
    }
}

/// A certified ℓ2 operator norm of a convolution and the rule that produced it.
pub fn conv_l2_upper(conv: &Conv) -> (f64, String) {
    conv_l2_upper_with(conv, NormBudget::default())
}

/// [`conv_l2_upper`] within a work budget.
pub fn conv_l2_upper_with(conv: &Conv, budget: NormBudget) -> (f64, String) {
    let (co, ci, kh, kw) = (conv.c_out, conv.c_in, conv.kh, conv.kw);
    let at = |o: usize, c: usize, a: usize, b: usize| conv.at(o, c, a, b);
    let mut best = f64::INFINITY;
    let mut rule = String::new();
    let mut consider = |v: f64, name: &str| {
        if v < best {
            best = v;
            rule = name.to_string();
        }
    };
    let scale = next_up(((kh * kw) as f64).sqrt() * (1.0 + 2.0 * f64::EPSILON));
    // R1: c_out × (c_in·kh·kw) — the kernel's own layout.
    consider(
        next_up(scale * spectral_upper(co, ci * kh * kw, &conv.k)),
        "singla-feizi R1 (cout x cin*kh*kw)",
    );
    // R2: (c_out·kh·kw) × c_in.
    let mut r2 = Vec::with_capacity(co * kh * kw * ci);
    for o in 0..co {
        for a in 0..kh {
            for b in 0..kw {
                for c in 0..ci {
                    r2.push(at(o, c, a, b));
                }
            }
        }
    }
    consider(
        next_up(scale * spectral_upper(co * kh * kw, ci, &r2)),
        "singla-feizi R2 (cout*kh*kw x cin)",
    );
    // R3: (kh·c_out) × (kw·c_in), block (a, b) = K[:, :, a, b].
    if (kh * co).min(kw * ci) <= budget.reshape_max_gram {
        let mut r3 = Vec::with_capacity(kh * co * kw * ci);
        for a in 0..kh {
            for o in 0..co {
                for b in 0..kw {
                    for c in 0..ci {
                        r3.push(at(o, c, a, b));
                    }
                }
            }
        }
        consider(
            next_up(scale * spectral_upper(kh * co, kw * ci, &r3)),
            "singla-feizi R3 (kh*cout x kw*cin)",
        );
    }
    // R4: (kw·c_out) × (kh·c_in), block (b, a) = K[:, :, a, b].
    if (kw * co).min(kh * ci) <= budget.reshape_max_gram {
        let mut r4 = Vec::with_capacity(kw * co * kh * ci);
        for b in 0..kw {
            for o in 0..co {
                for a in 0..kh {
                    for c in 0..ci {
                        r4.push(at(o, c, a, b));
                    }
                }
            }
        }
        consider(
            next_up(scale * spectral_upper(kw * co, kh * ci, &r4)),
            "singla-feizi R4 (kw*cout x kh*cin)",
        );
    }
    let (m, n) = (conv.out_dim(), conv.in_dim());
    if m * n <= UNROLL_MAX_ENTRIES && m.min(n) <= budget.unroll_max_side {
        consider(
            spectral_upper(m, n, &unroll_conv(conv)),
            "exact SVD of the unrolled matrix",
        );
    }
    (best, rule)
}

/// A certified ℓ∞→ℓ∞ norm of a convolution: max_o Σ_{c,a,b} |K[o,c,a,b]| (≥ every row sum).
pub fn conv_linf_upper(conv: &Conv) -> f64 {
    linf_upper(conv.c_out, conv.c_in * conv.kh * conv.kw, &conv.k)
}

#[cfg(test)]
mod tests {
    use super::verified_lambda_max;

    #[test]
    fn verified_lambda_max_is_an_upper_bound_and_tight() {
        use nalgebra::DMatrix;
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for (n, k) in [(1, 3), (5, 9), (40, 25), (120, 300)] {
            let r = DMatrix::from_fn(n, k, |_, _| rnd());
            let g = &r * r.transpose();
            let g = DMatrix::from_fn(n, n, |i, j| if i <= j { g[(i, j)] } else { g[(j, i)] });
            let exact = r.singular_values().max().powi(2);
            let ub = verified_lambda_max(&g);
            assert!(ub >= exact, "n={n}: bound {ub} below λ_max {exact}");
            assert!(
                ub <= exact * (1.0 + 1e-9) + 1e-12,
                "n={n}: bound {ub} loose vs {exact}"
            );
        }
        // Indefinite and negative-definite symmetric matrices: still an upper bound.
        let m = DMatrix::from_row_slice(3, 3, &[-2.0, 1.0, 0.0, 1.0, -3.0, 0.5, 0.0, 0.5, -1.0]);
        let top = m.clone().symmetric_eigenvalues().max();
        assert!(verified_lambda_max(&m) >= top.max(0.0));
    }

    use super::*;

    #[test]
    fn spectral_of_known_matrices() {
        // diag(3, 1) rotated: singular values 3 and 1.
        let (c, s) = (0.6f64, 0.8f64);
        let r = [3.0 * c, -3.0 * s, 1.0 * s, 1.0 * c];
        let v = spectral_upper(2, 2, &r);
        assert!((3.0..3.0 * (1.0 + 1e-10)).contains(&v), "{v}");
        // A wide rank-one matrix u vᵀ: ‖·‖₂ = ‖u‖‖v‖.
        let u = [1.0, 2.0];
        let w = [3.0, 0.0, 4.0];
        let r: Vec<f64> = u
            .iter()
            .flat_map(|a| w.iter().map(move |b| a * b))
            .collect();
        let v = spectral_upper(2, 3, &r);
        let exact = 5f64.sqrt() * 5.0;
        assert!(v >= exact && v < exact * (1.0 + 1e-10));
        let vt = spectral_upper(
            3,
            2,
            &(0..6).map(|i| r[(i % 2) * 3 + i / 2]).collect::<Vec<_>>(),
        );
        assert!(vt >= exact && vt < exact * (1.0 + 1e-10));
        assert!(linf_upper(2, 3, &r) >= 14.0);
        assert!(l2_to_linf_upper(2, 3, &r) >= 10.0 && l2_to_linf_upper(2, 3, &r) < 10.0 + 1e-9);
    }
}

#[cfg(test)]
mod unroll_tests {
    use super::*;

    #[test]
    fn unrolled_conv_equals_applying_it() {
        let conv = Conv {
            c_out: 2,
            c_in: 3,
            kh: 3,
            kw: 2,
            stride: 2,
            pad: 1,
            h: 5,
            w: 4,
            ho: 3,
            wo: 3,
            k: (0..36).map(|i| (i as f64 * 0.37).sin()).collect(),
        };
        assert_eq!(conv.ho, (5 + 2 - 3) / 2 + 1);
        assert_eq!(conv.wo, (4 + 2 - 2) / 2 + 1);
        assert_eq!(unroll(&conv), unroll_conv(&conv));
    }
}
