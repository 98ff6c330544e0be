//! How copies that fail the float32 coupling check count (proofs/smoothing_floating_point.md,
//! "Candidate inputs"): against every bound, or through the score interval over the few adjacent
//! f32 values each ambiguous coordinate can take.

use super::engine::BatchScorer;
use super::noise::NoiseKey;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The most candidate inputs (the product of the ambiguous coordinates' value counts) a copy may
/// have and still be resolved.
pub const MAX_CANDIDATES: usize = 16;

/// The rule for inexact copies (`--coupling`), recorded in manifest.json as `coupling` (absent =
/// count-against, the rule of runs made before the field existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Coupling {
    /// Every inexact copy counts against every bound (score interval [−∞, +∞]).
    CountAgainst,
    /// A copy whose ambiguous coordinates each round to one of a few adjacent f32 values, with
    /// at most [`MAX_CANDIDATES`] candidate inputs in all, gets the score interval [min, max] over
    /// them; others count against every bound.
    #[default]
    Candidates,
}

impl Coupling {
    /// Its flag and manifest value.
    pub fn name(self) -> &'static str {
        match self {
            Coupling::CountAgainst => "count-against",
            Coupling::Candidates => "candidates",
        }
    }

    /// The manifest field: `None` for count-against (so those manifests keep their old bytes).
    pub fn manifest_field(self) -> Option<Coupling> {
        (self != Coupling::CountAgainst).then_some(self)
    }

    /// A score interval that contains the detector's score at the coupled ideal input
    /// fl₃₂(x + σZ) of copy `copy`, whose noisy input scored `v` and failed the exactness check:
    /// [−∞, +∞] under count-against or when unresolvable, else the hull of `v` and the scores of
    /// all candidate inputs (every combination of the ambiguous coordinates' values, scored in
    /// one call whose rows depend on the copy alone, so the result does not depend on the batch).
    #[allow(clippy::too_many_arguments)]
    pub fn inexact_interval(
        self,
        scorer: &dyn BatchScorer,
        key: &NoiseKey,
        index: u64,
        copy: u64,
        sigma: f64,
        x: &[f32],
        v: f64,
    ) -> Result<(f64, f64)> {
        let unresolved = (f64::NEG_INFINITY, f64::INFINITY);
        if self == Coupling::CountAgainst {
            return Ok(unresolved);
        }
        let d = x.len();
        let mut row = vec![0.0f32; d];
        key.add_noise(index, copy, sigma, x, &mut row);
        let Some(amb) = key.ambiguities(index, copy, sigma, x, &row, MAX_CANDIDATES) else {
            return Ok(unresolved);
        };
        let rows: usize = amb.iter().map(|(_, c)| c.len()).product();
        let mut cand = Vec::with_capacity(rows * d);
        for r in 0..rows {
            let start = cand.len();
            cand.extend_from_slice(&row);
            // Mixed-radix digits of r pick one value per ambiguous coordinate.
            let mut q = r;
            for (k, c) in &amb {
                cand[start + k] = c[q % c.len()];
                q /= c.len();
            }
        }
        let s = scorer.score_flat(&cand, rows)?;
        if s.len() != rows || s.iter().any(|t| !t.is_finite()) {
            return Err(Error::CheckFailed(format!(
                "scores of the {rows} candidate inputs of copy {copy}: {s:?} (must be {rows} finite values)"
            )));
        }
        Ok(s.iter().fold((v, v), |(lo, hi), &t| (lo.min(t), hi.max(t))))
    }
}
