//! Certified λ_max of a symmetric matrix Ĝ without a full eigen-solve: a power-iteration estimate
//! θ, then a floating-point Cholesky factorisation of H = μI − Ĝ that completes certifies
//! λ_max(Ĝ) ≤ μ + γ_{n+1}‖L‖²_F + u·max_i|μ − ĝ_ii| (Higham 2002, Thm 10.3:
//! LLᵀ = H̃ + ΔH with |ΔH| ≤ γ_{n+1}|L||Lᵀ|; proofs/lipschitz_cholesky_certificate.md).
//! Costs n³/6 multiply-adds instead of the ~15n³ of `operator_norm::verified_lambda_max`.

use crate::bounds::round::{ABS_FLOOR, dot_err, next_up, widen_up};
use nalgebra::DMatrix;

/// Power iterations for the estimate (the certificate does not depend on their accuracy).
const POWER_STEPS: usize = 300;

/// ⟨a, b⟩ with four accumulators (any summation order obeys the γ_n bound used).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        t += x * y;
    }
    t
}

/// A Rayleigh quotient θ ≤ λ_max(g) and its residual norm ‖gv − θv‖ (a deterministic start).
fn power_estimate(g: &DMatrix<f64>) -> (f64, f64) {
    let n = g.nrows();
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.5 * ((i as f64) * 0.618_033_988_75).fract())
        .collect();
    let nv = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    let mut theta = 0.0;
    let mut res = f64::INFINITY;
    let mut w = vec![0.0; n];
    for step in 0..POWER_STEPS {
        // g is symmetric: column j = row j, contiguous in nalgebra's column-major storage.
        let cols = g.as_slice();
        for (j, wj) in w.iter_mut().enumerate() {
            *wj = dot(&cols[j * n..(j + 1) * n], &v);
        }
        theta = dot(&v, &w);
        if step % 10 == 9 || step + 1 == POWER_STEPS {
            res = w
                .iter()
                .zip(&v)
                .map(|(a, b)| (a - theta * b).powi(2))
                .sum::<f64>()
                .sqrt();
            if res <= 1e-7 * theta.abs() {
                break;
            }
        }
        let nw = dot(&w, &w).sqrt();
        if nw.is_nan() || nw <= 0.0 || !nw.is_finite() {
            return (theta, 0.0);
        }
        v.iter_mut().zip(&w).for_each(|(a, b)| *a = b / nw);
    }
    (theta, res)
}

/// Cholesky of μI − g in floating point; on success, an upper bound of the error terms:
/// γ_{n+1}‖L‖²_F + u·max_i|μ − g_ii| + an underflow floor (None when a pivot is not positive).
fn shifted_cholesky_slack(g: &DMatrix<f64>, mu: f64) -> Option<f64> {
    let n = g.nrows();
    // Row-major lower triangle: l[i*n + k], k ≤ i.
    let mut l = vec![0.0f64; n * n];
    let mut diag_err = 0.0f64;
    for i in 0..n {
        for j in 0..=i {
            let h = if i == j {
                let h = mu - g[(i, i)];
                diag_err = diag_err.max(h.abs());
                h
            } else {
                -g[(i, j)]
            };
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let s = h - dot(ri, rj);
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let frob2 = widen_up(
        l.iter().map(|v| v * v).sum::<f64>(),
        dot_err(n * (n + 1) / 2),
    );
    if !frob2.is_finite() {
        return None;
    }
    let chol = next_up(dot_err(n + 1) * frob2);
    // |fl(μ − g_ii) − (μ − g_ii)| ≤ u·|fl(μ − g_ii)|·(1 + u); underflow: ≤ n·ABS_FLOOR in norm.
    let sub = next_up(f64::EPSILON * diag_err);
    Some(next_up(chol + sub + n as f64 * ABS_FLOOR))
}

/// A certified upper bound of λ_max of the symmetric matrix `g` (as stored): +∞ when no shift
/// tried admits a Cholesky factorisation or an entry is not finite.
pub fn lambda_max_by_cholesky(g: &DMatrix<f64>) -> f64 {
    let n = g.nrows();
    if n == 0 {
        return 0.0;
    }
    if g.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (theta, res) = power_estimate(g);
    let scale = g
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    // First shift just above θ + residual (usually λ_max when the iteration has converged to the
    // top eigenvector), then wider ones.
    let mut mu = next_up((theta + res).max(0.0) + 1e-9 * scale);
    for _ in 0..6 {
        if let Some(slack) = shifted_cholesky_slack(g, mu) {
            return next_up(mu + slack);
        }
        mu = next_up(mu + (0.02 * mu).max(2.0 * res).max(1e-6 * scale));
    }
    f64::INFINITY
}

/// A certified ‖R‖₂ from a computed Gram matrix `g` as in `operator_norm::spectral_from_gram`
/// (entries sums of at most `k` products, `frob2` ≥ ‖R‖²_F), λ_max certified by Cholesky.
pub fn spectral_from_gram_by_cholesky(g: &DMatrix<f64>, k: usize, frob2: f64) -> f64 {
    let lam = lambda_max_by_cholesky(g);
    let eta = dot_err(k) * frob2;
    let bound = next_up(next_up(lam + eta).sqrt() * (1.0 + 2.0 * f64::EPSILON));
    bound.min(next_up(frob2.sqrt() * (1.0 + 2.0 * f64::EPSILON)))
}

/// A certified ‖R‖₂ for R row-major `(rows, cols)` (as `operator_norm::spectral_upper`, the
/// Gram's λ_max certified by Cholesky).
pub fn spectral_upper_by_cholesky(rows: usize, cols: usize, r: &[f64]) -> f64 {
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let m = DMatrix::from_row_slice(rows, cols, r);
    let (d, k, g) = if rows <= cols {
        (rows, cols, &m * m.transpose())
    } else {
        (cols, rows, m.transpose() * &m)
    };
    let g = DMatrix::from_fn(d, d, |i, j| if i <= j { g[(i, j)] } else { g[(j, i)] });
    let frob2 = widen_up(r.iter().map(|v| v * v).sum::<f64>(), dot_err(r.len()));
    spectral_from_gram_by_cholesky(&g, k, frob2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lipschitz::operator_norm::verified_lambda_max;

    fn gram(rows: usize, cols: usize, seed: u64) -> DMatrix<f64> {
        let r = DMatrix::from_fn(rows, cols, |i, j| {
            (((i * 31 + j * 17) as f64 + seed as f64 * 0.37) * 0.731).sin()
        });
        let g = r.transpose() * &r;
        DMatrix::from_fn(
            cols,
            cols,
            |i, j| if i <= j { g[(i, j)] } else { g[(j, i)] },
        )
    }

    #[test]
    fn cholesky_certificate_encloses_lambda_max_tightly() {
        for (rows, cols, seed) in [(40, 30, 0), (25, 60, 1), (200, 150, 2), (5, 5, 3)] {
            let g = gram(rows, cols, seed);
            let exact = g.clone().symmetric_eigen().eigenvalues.max();
            let v = lambda_max_by_cholesky(&g);
            assert!(v >= exact, "{v} < {exact}");
            assert!(v <= exact * 1.001 + 1e-9, "{v} ≫ {exact}");
            assert!(v <= verified_lambda_max(&g) * 1.001 + 1e-9);
        }
    }

    #[test]
    fn spectral_by_cholesky_matches_the_eigen_route() {
        let r: Vec<f64> = (0..35 * 12).map(|i| ((i as f64) * 0.377).cos()).collect();
        let a = spectral_upper_by_cholesky(35, 12, &r);
        let b = crate::lipschitz::operator_norm::spectral_upper(35, 12, &r);
        let exact = DMatrix::from_row_slice(35, 12, &r).singular_values().max();
        assert!(a >= exact && a <= exact * 1.0005, "{a} vs {exact}");
        assert!((a - b).abs() <= 1e-3 * b);
    }

    #[test]
    fn a_shift_below_lambda_max_is_refused() {
        let g = gram(30, 20, 4);
        let exact = g.clone().symmetric_eigen().eigenvalues.max();
        assert!(shifted_cholesky_slack(&g, exact * 0.999).is_none());
        assert!(shifted_cholesky_slack(&g, exact * 1.001).is_some());
    }

    #[test]
    fn non_finite_and_empty_matrices() {
        assert_eq!(lambda_max_by_cholesky(&DMatrix::zeros(0, 0)), 0.0);
        let mut g = gram(6, 4, 5);
        g[(1, 2)] = f64::NAN;
        assert_eq!(lambda_max_by_cholesky(&g), f64::INFINITY);
        // The zero matrix: λ_max = 0, certified by a tiny positive shift.
        let z = lambda_max_by_cholesky(&DMatrix::zeros(3, 3));
        assert!((0.0..1e-200).contains(&z));
    }
}
