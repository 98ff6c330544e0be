//! Pairwise squared Euclidean distances by the expansion ‖x−c‖² = ‖x‖² − 2x·c + ‖c‖² (one GEMM).

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Squared row norms ‖x_i‖² of an n×d matrix.
pub(crate) fn row_sq_norms(x: ArrayView2<'_, f64>) -> Array1<f64> {
    x.map_axis(Axis(1), |r| r.dot(&r))
}

/// n×k matrix of ‖x_i − c_j‖², clamped at 0 (the expansion can round slightly below zero).
pub(crate) fn pairwise_sq_dist(
    x: ArrayView2<'_, f64>,
    x_sq: &Array1<f64>,
    c: ArrayView2<'_, f64>,
) -> Array2<f64> {
    let c_sq = row_sq_norms(c);
    let mut g = x.dot(&c.t());
    for (mut row, &xs) in g.axis_iter_mut(Axis(0)).zip(x_sq.iter()) {
        for (v, &cs) in row.iter_mut().zip(c_sq.iter()) {
            *v = (xs + cs - 2.0 * *v).max(0.0);
        }
    }
    g
}

/// Dot product of f32 rows with 32 independent f32 accumulators (lets the compiler vectorise it),
/// summed in f64.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f64 {
    const L: usize = 32;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

#[inline(always)]
fn sq_dist_to_few_body(
    x: &[f32],
    x_sq: &[f64],
    d: usize,
    c: &[&[f32]],
    c_sq: &[f64],
    out: &mut [f64],
) {
    let t = c.len();
    for ((row, &xs), o) in x.chunks_exact(d).zip(x_sq).zip(out.chunks_exact_mut(t)) {
        for ((v, cr), &cs) in o.iter_mut().zip(c).zip(c_sq) {
            *v = (xs + cs - 2.0 * dot(row, cr)).max(0.0);
        }
    }
}

/// The same loop compiled for AVX2 (4 f64 lanes), chosen at run time.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_to_few_avx2(
    x: &[f32],
    x_sq: &[f64],
    d: usize,
    c: &[&[f32]],
    c_sq: &[f64],
    out: &mut [f64],
) {
    sq_dist_to_few_body(x, x_sq, d, c, c_sq, out)
}

/// Squared norms of the rows of `x` (n×d row-major f32) with the same f32 [`dot`] as
/// [`sq_dist_to_few`], so that a row's distance to itself comes out exactly 0.
pub(crate) fn sq_norms(x: &[f32], d: usize) -> Vec<f64> {
    if d == 0 {
        return Vec::new();
    }
    x.chunks_exact(d).map(|r| dot(r, r)).collect()
}

/// ‖x_i − c_t‖² for all rows of `x` (n×d row-major f32, squared norms `x_sq`) and a few centres
/// `c` (t ≪ k, squared norms `c_sq` from [`sq_norms`]): n×t, row-major. Streams `x` once with direct dot products, which beats a GEMM's packing when t is
/// small (k-means++ candidates); uses AVX2 when the CPU has it (same arithmetic order, so the
/// same results either way).
pub(crate) fn sq_dist_to_few(
    x: &[f32],
    x_sq: &[f64],
    d: usize,
    c: &[&[f32]],
    c_sq: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; x_sq.len() * c.len()];
    if d == 0 {
        return out;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was just detected.
        unsafe { sq_dist_to_few_avx2(x, x_sq, d, c, c_sq, &mut out) };
        return out;
    }
    sq_dist_to_few_body(x, x_sq, d, c, c_sq, &mut out);
    out
}

/// Index of the smallest entry (the first one on ties); `None` for an empty row.
pub(crate) fn argmin(row: impl IntoIterator<Item = f64>) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (j, v) in row.into_iter().enumerate() {
        if best.is_none_or(|(_, b)| v < b) {
            best = Some((j, v));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn expansion_matches_direct_distances() {
        let x = array![[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]];
        let c = array![[1.0, 1.0], [0.0, -2.0]];
        let d = pairwise_sq_dist(x.view(), &row_sq_norms(x.view()), c.view());
        for i in 0..3 {
            for j in 0..2 {
                let direct: f64 = (0..2).map(|t| (x[[i, t]] - c[[j, t]]).powi(2)).sum();
                assert!((d[[i, j]] - direct).abs() < 1e-12, "{i},{j}");
            }
        }
    }

    #[test]
    fn few_centre_distances_match_direct_and_vanish_on_self() {
        let d = 37; // not a multiple of the 32 accumulators: exercises the tail
        let x: Vec<f32> = (0..5 * d)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x_sq = sq_norms(&x, d);
        let c: Vec<&[f32]> = vec![&x[2 * d..3 * d], &x[4 * d..5 * d]];
        let out = sq_dist_to_few(&x, &x_sq, d, &c, &[x_sq[2], x_sq[4]]);
        for i in 0..5 {
            for (t, ct) in c.iter().enumerate() {
                let direct: f64 = (0..d)
                    .map(|j| (f64::from(x[i * d + j]) - f64::from(ct[j])).powi(2))
                    .sum();
                assert!((out[i * 2 + t] - direct).abs() < 1e-5, "{i},{t}");
            }
        }
        assert_eq!(out[2 * 2], 0.0);
        assert_eq!(out[4 * 2 + 1], 0.0);
    }

    #[test]
    fn argmin_takes_first_of_ties() {
        assert_eq!(argmin([3.0, 1.0, 1.0, 2.0]), Some((1, 1.0)));
        assert_eq!(argmin(std::iter::empty()), None);
    }
}
