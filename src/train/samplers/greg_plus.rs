//! GReg+ energy-based outlier sampling (Sharifi et al., ECCV 2024, §GReg+; method.md steps 2–5):
//! sort the pool by energy and keep ranks [spt, ept); k-means (k = min(num_cluster, B), k-means++,
//! n_init restarts) on the L2-normalised features of the kept candidates; per cluster take the
//! lowest-energy member (feeds L_S) and, two-way, also the highest-energy one (feeds L_∇); fill up
//! to B (and B more two-way) uniformly from the kept ranks, never repeating an index.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster_extremes::cluster_extremes;
use super::kmeans::{KMeansParams, kmeans};
use super::normalise::l2_normalise_rows;
use super::params::SamplerParams;
use super::pool::CandidatePool;
use super::random::fill_at_random;
use super::selection::Selection;
use crate::bad_input;
use crate::error::Result;

/// The kept candidates: pool indices of energy ranks [rank_start, min(rank_end, n)).
pub fn rank_window(pool: &CandidatePool<'_>, params: &SamplerParams) -> Result<Vec<usize>> {
    let n = pool.len();
    let end = params.rank_end.min(n);
    if params.rank_start >= end {
        return Err(bad_input!(
            "greg-plus: energy rank window [{}, {}) is empty for a pool of {n} candidates",
            params.rank_start,
            params.rank_end
        ));
    }
    let ranks = pool.energy_ranks();
    Ok(ranks[params.rank_start..end].to_vec())
}

/// The clustering behind a GReg+ or DOS selection, for diagnostics and checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTrace {
    /// Pool indices that were clustered (the kept rank window, or the whole pool for DOS).
    pub members: Vec<usize>,
    /// k-means label of each member (parallel to `members`).
    pub labels: Vec<usize>,
    /// Number of clusters k = min(num_cluster, B).
    pub k: usize,
}

/// Clusters `members` (pool indices) on their L2-normalised features with k = min(num_cluster, B)
/// and returns, per non-empty cluster in cluster order, the (lowest, highest)-energy pool indices.
pub(crate) fn cluster_picks(
    pool: &CandidatePool<'_>,
    members: &[usize],
    params: &SamplerParams,
    kmeans_seed: u64,
) -> Result<(Vec<(usize, usize)>, ClusterTrace)> {
    let d = pool.dim();
    if d == 0 {
        return Err(bad_input!(
            "{}: the candidate pool has no features (d = 0) to cluster",
            params.kind
        ));
    }
    let m = members.len();
    let z = l2_normalise_rows(&pool.gather_features(members)?, m, d)?;
    let km = KMeansParams {
        k: params.clusters().min(m),
        n_init: params.n_init,
        max_iter: params.max_iter,
        tol: params.tol,
        seed: kmeans_seed,
    };
    let fit = kmeans(&z, m, d, &km)?;
    let energies: Vec<f32> = members.iter().map(|&i| pool.energies()[i]).collect();
    let picks = cluster_extremes(&fit.labels, &energies, km.k)
        .into_iter()
        .flatten()
        .map(|x| (members[x.lowest], members[x.highest]))
        .collect();
    let trace = ClusterTrace {
        members: members.to_vec(),
        labels: fit.labels,
        k: km.k,
    };
    Ok((picks, trace))
}

/// GReg+ selection from `pool` under `seed`: B low-energy indices, plus B high-energy ones when
/// `params.two_way`. Errors if the kept window holds fewer than B (2B two-way) candidates.
pub fn greg_plus(pool: &CandidatePool<'_>, params: &SamplerParams, seed: u64) -> Result<Selection> {
    greg_plus_traced(pool, params, seed).map(|(sel, _)| sel)
}

/// [`greg_plus`] that also returns the clustering. Order within `low` (and `high`): the
/// per-cluster picks, by cluster label, then the random fill.
pub fn greg_plus_traced(
    pool: &CandidatePool<'_>,
    params: &SamplerParams,
    seed: u64,
) -> Result<(Selection, ClusterTrace)> {
    params.check()?;
    let b = params.batch_size;
    let kept = rank_window(pool, params)?;
    let need = params.output_size();
    if kept.len() < need {
        return Err(bad_input!(
            "greg-plus: the energy rank window [{}, {}) keeps {} of {} candidates, fewer than the \
             {need} outliers a batch needs; enlarge the pool or the window",
            params.rank_start,
            params.rank_end,
            kept.len(),
            pool.len()
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (picks, trace) = cluster_picks(pool, &kept, params, rng.next_u64())?;
    let mut sel = Selection::default();
    for (lo, hi) in picks {
        sel.low.push(lo);
        // A one-member cluster has lo == hi; its index is used once, as a low pick.
        if params.two_way && hi != lo {
            sel.high.push(hi);
        }
    }
    let n_low = b - sel.low.len();
    let n_high = if params.two_way {
        b - sel.high.len()
    } else {
        0
    };
    let fill = fill_at_random(&kept, &sel.indices(), n_low + n_high, &mut rng)?;
    sel.low.extend_from_slice(&fill[..n_low]);
    sel.high.extend_from_slice(&fill[n_low..]);
    Ok((sel, trace))
}
