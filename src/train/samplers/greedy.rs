//! Greedy sampling: the B lowest-energy candidates (the most ID-like outliers).

use super::pool::CandidatePool;
use crate::bad_input;
use crate::error::Result;

/// The `b` candidates of lowest energy, by ascending energy (ties by index).
pub fn greedy_lowest_energy(pool: &CandidatePool<'_>, b: usize) -> Result<Vec<usize>> {
    if b > pool.len() {
        return Err(bad_input!(
            "greedy sampler: batch of {b} outliers asked from a pool of {} candidates; \
             enlarge the pool or lower the batch size",
            pool.len()
        ));
    }
    let mut ranks = pool.energy_ranks();
    ranks.truncate(b);
    Ok(ranks)
}
