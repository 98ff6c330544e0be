//! Certified operator norms of a linear layer restricted to live rows and columns, ‖M_r A M_c‖
//! with 0/1 diagonal masks (proofs/lipschitz_local_product.md, Claim 2): the exact spectral norm
//! from a sparse Gram matrix within a work budget, else Schur's test √(‖·‖₁‖·‖∞); ℓ∞ and the
//! ℓ2→ℓ∞ head as the largest live row norm. Also the per-row dual norms used by the Lipschitz
//! boxes. Every value is rounded up.

use super::operator_norm::spectral_from_gram;
use crate::bounds::Norm;
use crate::bounds::conv::Conv;
use crate::bounds::dense::Dense;
use crate::bounds::diag::Diag;
use crate::bounds::linear_map::LinearMap;
use crate::bounds::net::LinearOp;
use crate::bounds::round::{dot_err, next_up, widen_up};
use nalgebra::DMatrix;

/// Largest Gram side (live rows or live columns, the smaller) of a restricted dense layer whose
/// eigenvalue we certify, and of a restricted convolution certified without the cheap routes'
/// minimum (certifying costs ~15·side³ flops by the eigen-solver, side³/6 by Cholesky; without a
/// certificate for conv2 one of LeNet's benchmark images went from 301 to 682).
pub const MASKED_GRAM_SIDE: usize = 1024;
/// Largest Gram side certified by a shifted Cholesky factorisation (`cholesky_certificate`,
/// n³/6 multiply-adds: ResNet-18's stem, 3 072 inputs) when the side exceeds [`MASKED_GRAM_SIDE`].
pub const CHOLESKY_GRAM_SIDE: usize = 4096;
/// Largest Gram side of a restricted convolution certified by the eigen-solver route
/// (`operator_norm::spectral_from_gram`, ~15·side³); larger sides use the Cholesky certificate
/// (side³/6 plus a power iteration), whose bound exceeds λ_max by the power iteration's residual.
pub const EIGEN_GRAM_SIDE: usize = 256;
/// Largest number of stored non-zeros of the restricted matrix for the Gram route.
pub const MASKED_MAX_NNZ: usize = 8_000_000;

/// √x rounded up (x ≥ 0 already an upper bound).
fn sqrt_up(x: f64) -> f64 {
    next_up(x.sqrt() * (1.0 + 2.0 * f64::EPSILON))
}

/// 1.0 on live entries, 0.0 elsewhere.
fn indicator(mask: Option<&[bool]>, n: usize) -> Vec<f64> {
    match mask {
        Some(m) => m.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
        None => vec![1.0; n],
    }
}

fn live(mask: Option<&[bool]>, i: usize) -> bool {
    mask.is_none_or(|m| m[i])
}

/// The same layer with every entry squared (|a|² ≥ 0), for row ℓ2 norms by one application.
fn squared(op: &LinearOp) -> LinearOp {
    match op {
        LinearOp::Dense(d) => LinearOp::Dense(Dense {
            w: d.w.iter().map(|v| v * v).collect(),
            ..d.clone()
        }),
        LinearOp::Conv(c) => LinearOp::Conv(Conv {
            k: c.k.iter().map(|v| v * v).collect(),
            ..c.clone()
        }),
        LinearOp::Diag(d) => LinearOp::Diag(Diag {
            scale: d.scale.iter().map(|v| v * v).collect(),
        }),
        // Not used for these (their row norms come from ℓ1 sums).
        LinearOp::AvgPool(_) | LinearOp::Pad(_) => op.clone(),
    }
}

/// Upper bounds of each row's dual norm ‖(A M_c)_j‖_q (q = 2 for ℓ2, 1 for ℓ∞), all rows.
pub fn row_dual_norms(op: &LinearOp, cols: Option<&[bool]>, norm: Norm) -> Vec<f64> {
    let map = op.map();
    let m = indicator(cols, map.in_dim());
    let e = dot_err(map.fan_in() + 1);
    match (op, norm) {
        // Pooling / padding: row ℓ1 sums, also an upper bound of the row ℓ2 norms.
        (LinearOp::AvgPool(_) | LinearOp::Pad(_), _) => map
            .apply(&m, true)
            .iter()
            .map(|&s| widen_up(s, e))
            .collect(),
        (_, Norm::L2) => squared(op)
            .map()
            .apply(&m, true)
            .iter()
            .map(|&s| sqrt_up(widen_up(s, e)))
            .collect(),
        (_, Norm::Linf) => map
            .apply(&m, true)
            .iter()
            .map(|&s| widen_up(s, e))
            .collect(),
    }
}

/// The largest live row's dual norm: a certified ‖M_r A M_c‖_{p→∞} (the head rule).
pub fn masked_head(op: &LinearOp, rows: Option<&[bool]>, cols: Option<&[bool]>, norm: Norm) -> f64 {
    row_dual_norms(op, cols, norm)
        .iter()
        .enumerate()
        .filter(|(j, _)| live(rows, *j))
        .fold(0.0, |a, (_, &v)| crate::bounds::round::max_nan(a, v))
}

/// Visits the non-zero entries (column, value) of row `r` of a convolution.
pub(crate) fn conv_row(c: &Conv, r: usize, mut f: impl FnMut(usize, f64)) {
    let hw_out = c.ho * c.wo;
    let (o, i, j) = (r / hw_out, (r % hw_out) / c.wo, r % c.wo);
    for ch in 0..c.c_in {
        for a in 0..c.kh {
            let y = (i * c.stride + a) as isize - c.pad as isize;
            if y < 0 || y >= c.h as isize {
                continue;
            }
            for b in 0..c.kw {
                let x = (j * c.stride + b) as isize - c.pad as isize;
                if x < 0 || x >= c.w as isize {
                    continue;
                }
                let v = c.at(o, ch, a, b);
                if v != 0.0 {
                    f(ch * c.h * c.w + y as usize * c.w + x as usize, v);
                }
            }
        }
    }
}

/// A certified ‖M_r A M_c‖_{p→p}, or +∞ when no certified value fits the work budget. The
/// caller takes the minimum with the unmasked layer's factor.
pub fn masked_norm(op: &LinearOp, rows: Option<&[bool]>, cols: Option<&[bool]>, norm: Norm) -> f64 {
    let map = op.map();
    let (n_out, n_in) = (map.out_dim(), map.in_dim());
    match (op, norm) {
        (LinearOp::Diag(d), _) => d
            .scale
            .iter()
            .enumerate()
            .filter(|(j, _)| live(rows, *j) && live(cols, *j))
            .fold(0.0, |a, (_, s)| crate::bounds::round::max_nan(a, s.abs())),
        (_, Norm::Linf) => masked_head(op, rows, cols, norm),
        // Pools may overlap: Schur's test (for a global pool it equals max_j √live_j / hw).
        (LinearOp::AvgPool(_) | LinearOp::Pad(_), Norm::L2) => schur(op, rows, cols),
        (LinearOp::Dense(d), Norm::L2) => {
            let r: Vec<usize> = (0..n_out).filter(|&j| live(rows, j)).collect();
            let c: Vec<usize> = (0..n_in).filter(|&j| live(cols, j)).collect();
            if r.len().min(c.len()) > MASKED_GRAM_SIDE || r.len() * c.len() > MASKED_MAX_NNZ {
                return schur(op, rows, cols);
            }
            let mut m = Vec::with_capacity(r.len() * c.len());
            for &i in &r {
                let row = d.row(i);
                m.extend(c.iter().map(|&j| row[j]));
            }
            super::operator_norm::spectral_upper(r.len(), c.len(), &m)
        }
        (LinearOp::Conv(cv), Norm::L2) => {
            let n_r = (0..n_out).filter(|&j| live(rows, j)).count();
            let n_c = (0..n_in).filter(|&j| live(cols, j)).count();
            if n_r.min(n_c) > CHOLESKY_GRAM_SIDE || n_r * cv.fan_in() > MASKED_MAX_NNZ {
                return schur(op, rows, cols)
                    .min(frobenius(cv, rows, cols))
                    .min(live_channels(cv, rows, cols));
            }
            let exact = conv_gram_norm(cv, rows, cols, n_r, n_c);
            if n_r.min(n_c) > MASKED_GRAM_SIDE {
                return exact
                    .min(schur(op, rows, cols))
                    .min(frobenius(cv, rows, cols))
                    .min(live_channels(cv, rows, cols));
            }
            exact
        }
    }
}

/// The certified norm (Singla–Feizi reshapings, `operator_norm::conv_l2_upper`) of the
/// convolution restricted to the channels with a live row (output) or column (input):
/// M_r C M_c = M_r C' M_c with C' the kernel whose other channels are zero, and ‖M C' M‖ ≤ ‖C'‖
/// = ‖the smaller convolution‖. +∞ when every channel is live (the caller's cap is the same).
fn live_channels(c: &Conv, rows: Option<&[bool]>, cols: Option<&[bool]>) -> f64 {
    let (hw_in, hw_out) = (c.h * c.w, c.ho * c.wo);
    let outs: Vec<usize> = (0..c.c_out)
        .filter(|&o| (0..hw_out).any(|i| live(rows, o * hw_out + i)))
        .collect();
    let ins: Vec<usize> = (0..c.c_in)
        .filter(|&ch| (0..hw_in).any(|i| live(cols, ch * hw_in + i)))
        .collect();
    if outs.is_empty() || ins.is_empty() {
        return 0.0;
    }
    if outs.len() == c.c_out && ins.len() == c.c_in {
        return f64::INFINITY;
    }
    let mut k = Vec::with_capacity(outs.len() * ins.len() * c.kh * c.kw);
    for &o in &outs {
        for &ch in &ins {
            for a in 0..c.kh {
                for b in 0..c.kw {
                    k.push(c.at(o, ch, a, b));
                }
            }
        }
    }
    let sub = Conv {
        c_out: outs.len(),
        c_in: ins.len(),
        k,
        ..c.clone()
    };
    super::operator_norm::conv_l2_upper(&sub).0
}

/// Schur's test: ‖B‖₂ ≤ √(max row ℓ1 · max column ℓ1) of B = M_r A M_c.
fn schur(op: &LinearOp, rows: Option<&[bool]>, cols: Option<&[bool]>) -> f64 {
    let map = op.map();
    let row_l1 = map.apply(&indicator(cols, map.in_dim()), true);
    let col_l1 = map.apply_t(&indicator(rows, map.out_dim()), true);
    let mr = (0..row_l1.len())
        .filter(|&j| live(rows, j))
        .fold(0.0, |a: f64, j| crate::bounds::round::max_nan(a, row_l1[j]));
    let mc = (0..col_l1.len())
        .filter(|&j| live(cols, j))
        .fold(0.0, |a: f64, j| crate::bounds::round::max_nan(a, col_l1[j]));
    let mr = widen_up(mr, dot_err(map.fan_in() + 1));
    let mc = widen_up(mc, dot_err(map.fan_out() + 1));
    sqrt_up(next_up(mr * mc))
}

/// ‖M_r C M_c‖_F of a convolution, rounded up.
fn frobenius(c: &Conv, rows: Option<&[bool]>, cols: Option<&[bool]>) -> f64 {
    let sq = squared(&LinearOp::Conv(c.clone()));
    let per_row = sq.map().apply(&indicator(cols, c.in_dim()), true);
    let s: f64 = (0..per_row.len())
        .filter(|&j| live(rows, j))
        .map(|j| per_row[j])
        .sum();
    sqrt_up(widen_up(s, dot_err(c.fan_in() + per_row.len() + 1)))
}

/// Exact-spectral route for a convolution: the restricted matrix's Gram on its smaller side,
/// accumulated from the sparse rows (each entry a sum of at most n_r or n_c products).
fn conv_gram_norm(
    c: &Conv,
    rows: Option<&[bool]>,
    cols: Option<&[bool]>,
    n_r: usize,
    n_c: usize,
) -> f64 {
    if n_r == 0 || n_c == 0 {
        return 0.0;
    }
    // Compact column indices.
    let mut col_ix = vec![usize::MAX; c.in_dim()];
    let mut k = 0;
    for (j, ix) in col_ix.iter_mut().enumerate() {
        if live(cols, j) {
            *ix = k;
            k += 1;
        }
    }
    // Sparse rows (compact column, value).
    let mut sparse: Vec<Vec<(usize, f64)>> = Vec::with_capacity(n_r);
    for r in (0..c.out_dim()).filter(|&r| live(rows, r)) {
        let mut v = Vec::new();
        conv_row(c, r, |j, a| {
            if col_ix[j] != usize::MAX {
                v.push((col_ix[j], a));
            }
        });
        sparse.push(v);
    }
    let frob2 = widen_up(
        sparse.iter().flatten().map(|(_, a)| a * a).sum::<f64>(),
        dot_err(n_r * c.fan_in()),
    );
    let (g, terms) = sparse_gram(sparse, n_r, n_c);
    let side = g.nrows();
    if side > EIGEN_GRAM_SIDE {
        super::cholesky_certificate::spectral_from_gram_by_cholesky(&g, terms, frob2)
    } else {
        spectral_from_gram(&g, terms, frob2)
    }
}

/// The Gram matrix of a sparse `n_r × n_c` matrix R (rows of (column, value)) on its smaller side —
/// RᵀR (side n_c) from the rows, or RRᵀ (side n_r) from the columns — with the number of outer
/// products summed (the other side, for the dot-product error bound). Upper triangle accumulated,
/// then mirrored exactly (the same sums on both sides).
pub(super) fn sparse_gram(
    rows: Vec<Vec<(usize, f64)>>,
    n_r: usize,
    n_c: usize,
) -> (DMatrix<f64>, usize) {
    let (side, terms, vecs) = if n_c <= n_r {
        (n_c, n_r, rows)
    } else {
        let mut colv: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n_c];
        for (i, row) in rows.iter().enumerate() {
            for &(j, a) in row {
                colv[j].push((i, a));
            }
        }
        (n_r, n_c, colv)
    };
    let mut g = DMatrix::<f64>::zeros(side, side);
    for v in &vecs {
        for &(a, x) in v {
            for &(b, y) in v {
                if a <= b {
                    g[(a, b)] += x * y;
                }
            }
        }
    }
    for a in 0..side {
        for b in 0..a {
            g[(a, b)] = g[(b, a)];
        }
    }
    (g, terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lipschitz::operator_norm::{spectral_upper, unroll_conv};

    fn conv() -> Conv {
        Conv {
            c_out: 3,
            c_in: 2,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            h: 5,
            w: 4,
            ho: 5,
            wo: 4,
            k: (0..54).map(|i| ((i as f64) * 0.731).sin()).collect(),
        }
    }

    /// The restricted matrix's norm computed densely, the reference for the masked routes.
    fn dense_ref(c: &Conv, rows: &[bool], cols: &[bool]) -> f64 {
        let a = unroll_conv(c);
        let a = &a;
        let n = c.in_dim();
        let r: Vec<usize> = (0..c.out_dim()).filter(|&i| rows[i]).collect();
        let k: Vec<usize> = (0..n).filter(|&j| cols[j]).collect();
        let m: Vec<f64> = r
            .iter()
            .flat_map(|&i| k.iter().map(move |&j| a[i * n + j]))
            .collect();
        spectral_upper(r.len(), k.len(), &m)
    }

    #[test]
    fn masked_conv_norms_match_the_dense_restriction() {
        let c = conv();
        let op = LinearOp::Conv(c.clone());
        for seed in 0..6u64 {
            let rows: Vec<bool> = (0..c.out_dim())
                .map(|i| !(i as u64 * 7 + seed).is_multiple_of(3))
                .collect();
            let cols: Vec<bool> = (0..c.in_dim())
                .map(|i| !(i as u64 * 5 + seed * 3).is_multiple_of(2 + seed))
                .collect();
            let exact = dense_ref(&c, &rows, &cols);
            let v = masked_norm(&op, Some(&rows), Some(&cols), Norm::L2);
            assert!(
                v >= exact * (1.0 - 1e-12) && v <= exact * (1.0 + 1e-9),
                "{v} vs {exact}"
            );
            let s = schur(&op, Some(&rows), Some(&cols));
            let f = frobenius(&c, Some(&rows), Some(&cols));
            assert!(s >= exact * (1.0 - 1e-12) && f >= exact * (1.0 - 1e-12));
        }
        // Nothing masked: the unrolled matrix's norm.
        let all = masked_norm(&op, None, None, Norm::L2);
        let full = spectral_upper(c.out_dim(), c.in_dim(), &unroll_conv(&c));
        assert!((all - full).abs() <= 1e-9 * full);
    }

    /// A restricted convolution whose Gram side exceeds [`MASKED_GRAM_SIDE`] goes through the
    /// Cholesky certificate: at least a power iteration's lower bound, within 1.2 % of the
    /// eigen-solver route, and below the cheap routes.
    #[test]
    fn large_restricted_conv_is_certified_by_cholesky() {
        let c = Conv {
            c_out: 2,
            c_in: 1,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            h: 36,
            w: 36,
            ho: 36,
            wo: 36,
            k: (0..18).map(|i| ((i as f64) * 1.37).sin()).collect(),
        };
        let op = LinearOp::Conv(c.clone());
        let rows: Vec<bool> = (0..c.out_dim()).map(|i| i % 7 != 2).collect();
        let cols: Vec<bool> = (0..c.in_dim()).map(|j| j % 9 != 4).collect();
        assert!(cols.iter().filter(|b| **b).count() > MASKED_GRAM_SIDE);
        let v = masked_norm(&op, Some(&rows), Some(&cols), Norm::L2);
        // Power iteration on the restricted matrix (a lower bound of its norm).
        let a = unroll_conv(&c);
        let n = c.in_dim();
        let mut x: Vec<f64> = (0..n)
            .map(|j| if cols[j] { 1.0 + (j % 5) as f64 } else { 0.0 })
            .collect();
        let mut sigma = 0.0;
        for _ in 0..600 {
            let y: Vec<f64> = (0..c.out_dim())
                .map(|i| {
                    if rows[i] {
                        (0..n).map(|j| a[i * n + j] * x[j]).sum()
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut z = vec![0.0; n];
            for i in 0..c.out_dim() {
                for j in 0..n {
                    if cols[j] {
                        z[j] += a[i * n + j] * y[i];
                    }
                }
            }
            let nz = z.iter().map(|t| t * t).sum::<f64>().sqrt();
            let nx = x.iter().map(|t| t * t).sum::<f64>().sqrt();
            sigma = (nz / nx).sqrt();
            x = z.iter().map(|t| t / nz).collect();
        }
        assert!(v >= sigma, "{v} < power-iteration lower bound {sigma}");
        // The eigen-solver route on the same restriction (tight to ~1e-9).
        let tight = dense_ref(&c, &rows, &cols);
        // The shift grows in steps of 2 % of λ after a failed factorisation: ≤ ~1 % in the norm.
        assert!(
            v >= tight * (1.0 - 1e-9) && v <= tight * 1.012,
            "{v} vs {tight}"
        );
        assert!(
            v <= schur(&op, Some(&rows), Some(&cols))
                && v <= frobenius(&c, Some(&rows), Some(&cols))
        );
    }
}
