//! Diverse Outlier Sampling (Jiang et al., "DOS: Diverse Outlier Sampling for Out-of-Distribution
//! Detection", ICLR 2024): k-means on the L2-normalised features of the whole pool, then from each
//! cluster the most ID-like outlier, the lowest value of the pool's ranking score. DOS ranks by the
//! absent-class probability p_K of its (K+1)-output model; the trainer passes exactly that ranking
//! for an absent-class model (as log-odds, same order, no saturation) and the energy S(x) for a
//! K-output one. The clusters number k = min(num_cluster, B); if fewer than B are non-empty the
//! batch is filled uniformly from the rest of the pool. (The absent-class loss and DOS's objective
//! live with the losses, not here.)

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::greg_plus::{ClusterTrace, cluster_picks};
use super::params::SamplerParams;
use super::pool::CandidatePool;
use super::random::fill_at_random;
use super::selection::Selection;
use crate::bad_input;
use crate::error::Result;

/// DOS selection from `pool` under `seed`: B indices in `low`, one lowest-energy member per
/// non-empty cluster (by cluster label) then the random fill. Errors if the pool holds < B.
pub fn dos(pool: &CandidatePool<'_>, params: &SamplerParams, seed: u64) -> Result<Selection> {
    dos_traced(pool, params, seed).map(|(sel, _)| sel)
}

/// [`dos`] that also returns the clustering (of the whole pool).
pub fn dos_traced(
    pool: &CandidatePool<'_>,
    params: &SamplerParams,
    seed: u64,
) -> Result<(Selection, ClusterTrace)> {
    params.check()?;
    let b = params.batch_size;
    if pool.len() < b {
        return Err(bad_input!(
            "dos: batch of {b} outliers asked from a pool of {} candidates; enlarge the pool or \
             lower the batch size",
            pool.len()
        ));
    }
    let all: Vec<usize> = (0..pool.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (picks, trace) = cluster_picks(pool, &all, params, rng.next_u64())?;
    let mut low: Vec<usize> = picks.into_iter().map(|(lo, _)| lo).collect();
    let fill = fill_at_random(&all, &low, b - low.len(), &mut rng)?;
    low.extend(fill);
    let sel = Selection {
        low,
        high: Vec::new(),
    };
    Ok((sel, trace))
}
