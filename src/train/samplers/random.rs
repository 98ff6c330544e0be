//! Uniform sampling without replacement: the random auxiliary batch (no selection), and the
//! random fill GReg+ and DOS use when the clusters yield fewer than B picks.

use std::collections::HashSet;

use rand::Rng;
use rand::seq::index;

use crate::bad_input;
use crate::error::Result;

/// `b` distinct indices drawn uniformly from 0..n, in draw order.
pub fn random_batch<R: Rng + ?Sized>(n: usize, b: usize, rng: &mut R) -> Result<Vec<usize>> {
    if b > n {
        return Err(bad_input!(
            "random sampler: batch of {b} outliers asked from a pool of {n} candidates; \
             enlarge the pool or lower the batch size"
        ));
    }
    Ok(index::sample(rng, n, b).into_vec())
}

/// `count` distinct members of `candidates` not in `excluded`, drawn uniformly, in draw order.
/// `candidates` must not repeat an index.
pub fn fill_at_random<R: Rng + ?Sized>(
    candidates: &[usize],
    excluded: &[usize],
    count: usize,
    rng: &mut R,
) -> Result<Vec<usize>> {
    let excluded: HashSet<usize> = excluded.iter().copied().collect();
    let free: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| !excluded.contains(i))
        .collect();
    if count > free.len() {
        return Err(bad_input!(
            "random fill: {count} more outliers needed but only {} unselected candidates remain",
            free.len()
        ));
    }
    Ok(index::sample(rng, free.len(), count)
        .into_iter()
        .map(|j| free[j])
        .collect())
}
