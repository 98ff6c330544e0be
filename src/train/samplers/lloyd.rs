//! Lloyd's iterations for k-means, following scikit-learn's `_kmeans_single_lloyd`: assign every
//! point to its nearest centre, move each centre to its cluster's mean (f64 sums), re-seed empty
//! clusters from the points farthest from their centres; stop when the labels repeat or the total
//! squared centre shift is ≤ tol·mean per-feature variance; finish with one assignment step.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::distances::{argmin, pairwise_sq_dist};
use super::kmeans::KMeansResult;

/// Absolute stopping threshold: `tol` times the mean per-feature (population) variance of `x`.
pub(crate) fn absolute_tolerance(x: ArrayView2<'_, f64>, tol: f64) -> f64 {
    let (n, d) = x.dim();
    if n == 0 || d == 0 {
        return 0.0;
    }
    let mean = x.sum_axis(Axis(0)) / n as f64;
    let mut var_sum = 0.0;
    for row in x.rows() {
        var_sum += row
            .iter()
            .zip(mean.iter())
            .map(|(&v, &m)| (v - m) * (v - m))
            .sum::<f64>();
    }
    tol * var_sum / (n as f64 * d as f64)
}

/// Nearest-centre labels (first centre on ties) and each point's squared distance to it.
fn assign(
    x: ArrayView2<'_, f64>,
    x_sq: &Array1<f64>,
    c: ArrayView2<'_, f64>,
) -> (Vec<usize>, Vec<f64>) {
    let dist = pairwise_sq_dist(x, x_sq, c);
    dist.rows()
        .into_iter()
        .map(|row| argmin(row.iter().copied()).unwrap_or((0, 0.0)))
        .unzip()
}

/// Cluster means of `labels` (f64 sums), re-seeding empty clusters: the points farthest from their
/// assigned centre (`dist`) move, one per empty cluster, out of clusters that keep ≥ 1 member.
fn update_centres(x: ArrayView2<'_, f64>, labels: &[usize], dist: &[f64], k: usize) -> Array2<f64> {
    let d = x.ncols();
    let mut sums = Array2::<f64>::zeros((k, d));
    let mut counts = vec![0usize; k];
    for (row, &l) in x.rows().into_iter().zip(labels) {
        sums.row_mut(l).scaled_add(1.0, &row);
        counts[l] += 1;
    }
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..labels.len()).collect();
        // Farthest first; ties by index so the choice is deterministic.
        far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        let mut donors = far.into_iter();
        for &j in &empty {
            // A donor always exists: n ≥ k points sit in fewer than k non-empty clusters.
            let Some(p) = donors.by_ref().find(|&p| counts[labels[p]] > 1) else {
                break;
            };
            let old = labels[p];
            sums.row_mut(old).scaled_add(-1.0, &x.row(p));
            counts[old] -= 1;
            sums.row_mut(j).assign(&x.row(p));
            counts[j] = 1;
        }
    }
    for (mut row, &c) in sums.rows_mut().into_iter().zip(&counts) {
        if c > 0 {
            row /= c as f64;
        }
    }
    sums
}

/// Runs Lloyd's algorithm from `centres` (k×d); `tol_abs` is the absolute shift threshold.
pub(crate) fn lloyd_core(
    x: ArrayView2<'_, f64>,
    x_sq: &Array1<f64>,
    mut centres: Array2<f64>,
    max_iter: usize,
    tol_abs: f64,
) -> KMeansResult {
    let (n, d) = x.dim();
    let k = centres.nrows();
    let mut labels_old: Option<Vec<usize>> = None;
    let mut n_iter = 0;
    for it in 0..max_iter {
        n_iter = it + 1;
        let (labels, dist) = assign(x, x_sq, centres.view());
        let new_centres = update_centres(x, &labels, &dist, k);
        let shift: f64 = (&new_centres - &centres).iter().map(|v| v * v).sum();
        centres = new_centres;
        if labels_old.as_ref() == Some(&labels) || shift <= tol_abs {
            break;
        }
        labels_old = Some(labels);
    }
    // Final assignment so that labels are the nearest centres of the returned centroids.
    let (labels, _) = assign(x, x_sq, centres.view());
    // Inertia by the direct formula Σ‖x − c‖² (no cancellation), accumulated in f64.
    let inertia = x
        .rows()
        .into_iter()
        .zip(&labels)
        .map(|(row, &l)| {
            row.iter()
                .zip(centres.row(l).iter())
                .map(|(&a, &b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum();
    KMeansResult {
        labels,
        centroids: centres.iter().copied().collect(),
        inertia,
        n_iter,
        k,
        d,
        n,
    }
}
