//! Auxiliary-outlier samplers for GReg+ training (method.md, "GReg+ : energy-based sampling"):
//! pure functions of the candidate pool's penultimate features and energies, on host data.
//!
//! [`select`] dispatches on [`SamplerKind`]: `random` (uniform batch), `greedy` (lowest energy),
//! `greg-plus` (rank window + k-means + per-cluster extremes + random fill) and `dos` (Diverse
//! Outlier Sampling). All are deterministic under the `seed` argument; derive one per step with
//! [`step_seed`] so a resumed run draws the same batches.

pub mod cluster_extremes;
mod distances;
pub mod dos;
pub mod greedy;
pub mod greg_plus;
pub mod kind;
pub mod kmeans;
mod kmeans_pp;
mod lloyd;
pub mod normalise;
pub mod params;
pub mod pool;
pub mod random;
pub mod selection;

pub use kind::SamplerKind;
pub use kmeans::{KMeansParams, KMeansResult, kmeans, kmeans_restart, lloyd};
pub use kmeans_pp::local_trials;
pub use normalise::l2_normalise_rows;
pub use params::SamplerParams;
pub use pool::CandidatePool;
pub use selection::Selection;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Selects the outliers to train on from `pool` with the sampler `params.kind`, under `seed`.
/// One-way samplers return B indices in `low`; two-way GReg+ also B in `high`.
pub fn select(params: &SamplerParams, pool: &CandidatePool<'_>, seed: u64) -> Result<Selection> {
    params.check()?;
    match params.kind {
        SamplerKind::Random => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            Ok(Selection {
                low: random::random_batch(pool.len(), params.batch_size, &mut rng)?,
                high: Vec::new(),
            })
        }
        SamplerKind::Greedy => Ok(Selection {
            low: greedy::greedy_lowest_energy(pool, params.batch_size)?,
            high: Vec::new(),
        }),
        SamplerKind::GregPlus => greg_plus::greg_plus(pool, params, seed),
        SamplerKind::Dos => dos::dos(pool, params, seed),
    }
}

/// A per-step seed from a run seed (SplitMix64 finaliser of seed ⊕ golden-ratio·(step+1)), so
/// steps draw independent, reproducible streams.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
