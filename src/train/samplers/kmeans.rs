//! k-means clustering (Lloyd 1982) with greedy k-means++ seeding and `n_init` restarts, keeping the
//! restart of lowest inertia — the algorithm of scikit-learn's `KMeans(algorithm="lloyd")`.
//!
//! Determinism: restart r draws its seeding from `ChaCha8Rng::seed_from_u64(seed)` on stream r,
//! so a restart does not depend on how many others run. The distance GEMM may use different SIMD
//! kernels on different CPUs, so results are bit-identical per machine, not across machines.

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::distances::row_sq_norms;
use super::kmeans_pp::kmeans_plus_plus;
use super::lloyd::{absolute_tolerance, lloyd_core};
use crate::bad_input;
use crate::error::Result;

/// Parameters of [`kmeans`]; `check()` validates them (linfa style).
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansParams {
    /// Number of clusters k (1 ≤ k ≤ n).
    pub k: usize,
    /// Number of k-means++ restarts; the lowest-inertia one is kept (≥ 1).
    pub n_init: usize,
    /// Maximum Lloyd iterations per restart (≥ 1).
    pub max_iter: usize,
    /// Relative tolerance: stop when Σ_j ‖Δc_j‖² ≤ tol · mean per-feature variance (scikit-learn).
    pub tol: f64,
    /// Seed of the ChaCha8 stream that drives the seeding.
    pub seed: u64,
}

impl KMeansParams {
    /// scikit-learn's defaults (n_init 3 as in GReg+, max_iter 300, tol 1e-4) for `k` clusters.
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            n_init: 3,
            max_iter: 300,
            tol: 1e-4,
            seed,
        }
    }

    /// Validates the parameters that do not depend on the data.
    pub fn check(&self) -> Result<()> {
        if self.k == 0 {
            return Err(bad_input!("k-means: k must be at least 1, got 0"));
        }
        if self.n_init == 0 {
            return Err(bad_input!("k-means: n_init must be at least 1, got 0"));
        }
        if self.max_iter == 0 {
            return Err(bad_input!("k-means: max_iter must be at least 1, got 0"));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(bad_input!(
                "k-means: tol must be finite and ≥ 0, got {}",
                self.tol
            ));
        }
        Ok(())
    }
}

/// A fitted clustering: labels in 0..k, centroids k×d row-major, inertia Σ_i ‖x_i − c_{label_i}‖².
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// Cluster of each point (its nearest centroid, first on ties).
    pub labels: Vec<usize>,
    /// Centroids, k rows of d values, row-major.
    pub centroids: Vec<f64>,
    /// Sum of squared distances of the points to their centroids (f64).
    pub inertia: f64,
    /// Lloyd iterations run by the kept restart.
    pub n_iter: usize,
    /// Number of clusters.
    pub k: usize,
    /// Feature dimension.
    pub d: usize,
    /// Number of points.
    pub n: usize,
}

impl KMeansResult {
    /// Centroid `j` as a slice of d values (`None` if j ≥ k).
    pub fn centroid(&self, j: usize) -> Option<&[f64]> {
        self.centroids.get(j * self.d..(j + 1) * self.d)
    }
}

/// Validates an n×d row-major feature matrix (sizes, finiteness) and widens it to f64.
pub(crate) fn features_f64(features: &[f32], n: usize, d: usize) -> Result<Array2<f64>> {
    if n == 0 {
        return Err(bad_input!("k-means: no points (n = 0)"));
    }
    if d == 0 {
        return Err(bad_input!(
            "k-means: feature dimension d must be at least 1"
        ));
    }
    let len = n
        .checked_mul(d)
        .ok_or_else(|| bad_input!("k-means: n·d = {n}·{d} overflows"))?;
    if features.len() != len {
        return Err(bad_input!(
            "k-means: features hold {} values, expected n·d = {n}·{d} = {len}",
            features.len()
        ));
    }
    if let Some(i) = features.iter().position(|v| !v.is_finite()) {
        return Err(bad_input!(
            "k-means: feature value {} at point {}, dimension {} is not finite",
            features[i],
            i / d,
            i % d
        ));
    }
    let wide: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
    Array2::from_shape_vec((n, d), wide).map_err(|e| bad_input!("k-means: {e}"))
}

/// Prepared data shared by all restarts.
struct Prepared {
    x: Array2<f64>,
    x_sq: Array1<f64>,
    tol_abs: f64,
}

fn prepare(features: &[f32], n: usize, d: usize, params: &KMeansParams) -> Result<Prepared> {
    params.check()?;
    let x = features_f64(features, n, d)?;
    if params.k > n {
        return Err(bad_input!(
            "k-means: k = {} clusters exceed the n = {n} points",
            params.k
        ));
    }
    let x_sq = row_sq_norms(x.view());
    let tol_abs = absolute_tolerance(x.view(), params.tol);
    Ok(Prepared { x, x_sq, tol_abs })
}

fn run_restart(
    features: &[f32],
    p: &Prepared,
    params: &KMeansParams,
    restart: usize,
) -> KMeansResult {
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(restart as u64);
    let (n, d) = p.x.dim();
    let init = kmeans_plus_plus(features, n, d, params.k, &mut rng);
    lloyd_core(p.x.view(), &p.x_sq, init, params.max_iter, p.tol_abs)
}

/// Clusters n points of dimension d (`features` row-major, f32) into k clusters: k-means++ then
/// Lloyd, `n_init` times, returning the lowest-inertia restart (the first on ties).
pub fn kmeans(features: &[f32], n: usize, d: usize, params: &KMeansParams) -> Result<KMeansResult> {
    let p = prepare(features, n, d, params)?;
    let mut best: Option<KMeansResult> = None;
    for restart in 0..params.n_init {
        let r = run_restart(features, &p, params, restart);
        if best.as_ref().is_none_or(|b| r.inertia < b.inertia) {
            best = Some(r);
        }
    }
    best.ok_or_else(|| crate::error::Error::Internal("k-means ran no restart".into()))
}

/// Restart `restart` of [`kmeans`] alone (`params.n_init` is ignored); `kmeans` keeps the best of
/// restarts 0..n_init. Exposed so the choice of the best restart can be checked.
pub fn kmeans_restart(
    features: &[f32],
    n: usize,
    d: usize,
    params: &KMeansParams,
    restart: usize,
) -> Result<KMeansResult> {
    let p = prepare(features, n, d, params)?;
    Ok(run_restart(features, &p, params, restart))
}

/// Lloyd's algorithm alone from given initial centroids (k×d row-major), e.g. to compare with
/// scikit-learn's `KMeans(init=centroids, n_init=1)`; `tol` is relative as in [`KMeansParams`].
pub fn lloyd(
    features: &[f32],
    n: usize,
    d: usize,
    init_centroids: &[f64],
    max_iter: usize,
    tol: f64,
) -> Result<KMeansResult> {
    let k = init_centroids.len().checked_div(d).unwrap_or(0);
    if k == 0 || k * d != init_centroids.len() {
        return Err(bad_input!(
            "k-means: {} initial centroid values do not form rows of d = {d}",
            init_centroids.len()
        ));
    }
    if let Some(v) = init_centroids.iter().find(|v| !v.is_finite()) {
        return Err(bad_input!(
            "k-means: initial centroid value {v} is not finite"
        ));
    }
    let params = KMeansParams {
        k,
        n_init: 1,
        max_iter,
        tol,
        seed: 0,
    };
    let p = prepare(features, n, d, &params)?;
    let init = Array2::from_shape_vec((k, d), init_centroids.to_vec())
        .map_err(|e| bad_input!("k-means: {e}"))?;
    Ok(lloyd_core(p.x.view(), &p.x_sq, init, max_iter, p.tol_abs))
}
