//! Batched back-substitution through a linear layer (the CROWN backward step, Zhang et al. 2018,
//! eq. 6): a block of query rows Λ (n × out, row-major) becomes ΛA (n × in). Dense layers are
//! one GEMM; a convolution's adjoint is, per row, the GEMM Yᵀ·K over patches followed by col2im,
//! or a scatter of the row's non-zero entries when it is sparse (rows of unit queries are).
//!
//! Rounding: every entry of ΛA is a sum of at most `fan_out` products in some order (GEMM
//! blocking, FMA, and col2im's accumulation of patches only change the order and the number of
//! roundings, never the number of terms), so |fl(ΛA) − ΛA| ≤ γ_fan_out |Λ||A| entrywise, the
//! bound the CROWN slack accounts for (proofs/lipschitz_crown.md).

use super::conv::Conv;
use super::net::LinearOp;
use crate::error::{Error, Result};
use crate::model::layers::gemm::{Mat, gemm_into};

/// ΛA for `n` rows Λ of length `op.map().out_dim()`, stored row-major in `lam`.
pub fn backsub(op: &LinearOp, lam: &[f64], n: usize) -> Result<Vec<f64>> {
    let map = op.map();
    let (out, inp) = (map.out_dim(), map.in_dim());
    if lam.len() != n * out {
        return Err(Error::Internal(format!(
            "back-substitution: {} values for {n} rows of length {out}",
            lam.len()
        )));
    }
    match op {
        LinearOp::Dense(d) => {
            let mut dst = vec![0.0; n * inp];
            gemm_into(
                &mut dst,
                Mat::row_major(lam, n, out),
                Mat::row_major(&d.w, out, inp),
                false,
                false,
            )?;
            Ok(dst)
        }
        LinearOp::Conv(c) => {
            let mut dst = vec![0.0; n * inp];
            let mut patches = vec![0.0; c.ho * c.wo * c.c_in * c.kh * c.kw];
            for (y, x) in lam.chunks_exact(out).zip(dst.chunks_exact_mut(inp)) {
                let nnz = y.iter().filter(|v| **v != 0.0).count();
                if nnz == 0 {
                    continue;
                }
                if 8 * nnz < out {
                    conv_t_scatter(c, y, x);
                } else {
                    conv_t_gemm(c, y, x, &mut patches)?;
                }
            }
            Ok(dst)
        }
        LinearOp::Diag(_) | LinearOp::AvgPool(_) | LinearOp::Pad(_) => {
            let mut dst = Vec::with_capacity(n * inp);
            for y in lam.chunks_exact(out) {
                dst.extend(map.apply_t(y, false));
            }
            Ok(dst)
        }
    }
}

/// x += Kᵀ-scatter of the non-zero entries of y (output position (o, i, j) adds y·K[o, ·, ·, ·]
/// to the input window it sees).
fn conv_t_scatter(c: &Conv, y: &[f64], x: &mut [f64]) {
    let (hw_in, hw_out) = (c.h * c.w, c.ho * c.wo);
    let (s, p) = (c.stride, c.pad);
    for (idx, &v) in y.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        let (o, q) = (idx / hw_out, idx % hw_out);
        let (i, j) = (q / c.wo, q % c.wo);
        for ch in 0..c.c_in {
            for a in 0..c.kh {
                let Some(xi) = (i * s + a).checked_sub(p).filter(|&r| r < c.h) else {
                    continue;
                };
                for b in 0..c.kw {
                    let Some(xj) = (j * s + b).checked_sub(p).filter(|&r| r < c.w) else {
                        continue;
                    };
                    x[ch * hw_in + xi * c.w + xj] += c.at(o, ch, a, b) * v;
                }
            }
        }
    }
}

/// x = col2im(Yᵀ K): patches (ho·wo × c_in·kh·kw) by one GEMM, then each tap added to the input
/// pixel it sees (taps in the padding dropped).
fn conv_t_gemm(c: &Conv, y: &[f64], x: &mut [f64], patches: &mut [f64]) -> Result<()> {
    let hw_out = c.ho * c.wo;
    let taps = c.c_in * c.kh * c.kw;
    gemm_into(
        patches,
        Mat::row_major(y, c.c_out, hw_out).t(),
        Mat::row_major(&c.k, c.c_out, taps),
        false,
        false,
    )?;
    let s = c.stride;
    for ch in 0..c.c_in {
        for a in 0..c.kh {
            let (i0, i1) = c.range(a, c.h, c.ho);
            for b in 0..c.kw {
                let (j0, j1) = c.range(b, c.w, c.wo);
                let t = (ch * c.kh + a) * c.kw + b;
                for i in i0..i1 {
                    let row = ch * c.h * c.w + (i * s + a - c.pad) * c.w;
                    for j in j0..j1 {
                        x[row + j * s + b - c.pad] += patches[(i * c.wo + j) * taps + t];
                    }
                }
            }
        }
    }
    Ok(())
}
