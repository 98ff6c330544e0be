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

    /// Per inexact copy `(copy, v)` of sample `index` (its noisy input scored `v`), an interval
    /// that contains the detector's score at the coupled ideal input fl₃₂(x + σZ): [−∞, +∞]
    /// under count-against or when unresolvable, else the hull of `v` and the scores of all its
    /// candidate inputs (every combination of the ambiguous coordinates' values). The candidate
    /// inputs of all the copies are scored together, in calls of at most [`SCORE_ROWS`] rows
    /// (one call per batch of a run, in practice); each row's score depends on that row alone
    /// under the assumption every certificate makes (a row's float32 score does not depend on
    /// the batch's shape), so the result is a function of each copy's own noise.
    pub fn inexact_intervals(
        self,
        scorer: &dyn BatchScorer,
        key: &NoiseKey,
        index: u64,
        sigma: f64,
        x: &[f32],
        copies: &[(u64, f64)],
    ) -> Result<Vec<(f64, f64)>> {
        let unresolved = (f64::NEG_INFINITY, f64::INFINITY);
        if self == Coupling::CountAgainst {
            return Ok(vec![unresolved; copies.len()]);
        }
        let d = x.len();
        if d == 0 {
            return Err(Error::Internal("candidate inputs of an empty input".into()));
        }
        // Per copy, its candidate rows' range in `cand` (None: unresolved).
        let mut spans = Vec::with_capacity(copies.len());
        let mut cand: Vec<f32> = Vec::new();
        let mut row = vec![0.0f32; d];
        for &(copy, _) in copies {
            let first = cand.len() / d;
            spans.push(
                push_candidates(key, index, copy, sigma, x, &mut row, &mut cand)
                    .map(|n| first..first + n),
            );
        }
        let rows = cand.len() / d;
        let mut scores = Vec::with_capacity(rows);
        for chunk in cand.chunks(SCORE_ROWS * d) {
            let count = chunk.len() / d;
            let s = scorer.score_flat(chunk, count)?;
            if s.len() != count {
                return Err(Error::Internal(format!(
                    "scorer returned {} scores for {count} candidate inputs",
                    s.len()
                )));
            }
            scores.extend(s);
        }
        copies
            .iter()
            .zip(spans)
            .map(|(&(copy, v), span)| {
                let Some(span) = span else {
                    return Ok(unresolved);
                };
                let s = &scores[span];
                if s.iter().any(|t| !t.is_finite()) {
                    return Err(Error::CheckFailed(format!(
                        "scores of the {} candidate inputs of copy {copy}: {s:?} (must be finite)",
                        s.len()
                    )));
                }
                Ok(s.iter().fold((v, v), |(lo, hi), &t| (lo.min(t), hi.max(t))))
            })
            .collect()
    }
}

/// The most candidate rows [`Coupling::inexact_intervals`] scores in one call.
pub const SCORE_ROWS: usize = 1024;

/// Appends the candidate inputs of copy `copy` to `cand` (row-major; `row` is scratch of `x.len()`
/// values) and returns how many; `None` (nothing appended) when the copy is unresolvable.
fn push_candidates(
    key: &NoiseKey,
    index: u64,
    copy: u64,
    sigma: f64,
    x: &[f32],
    row: &mut [f32],
    cand: &mut Vec<f32>,
) -> Option<usize> {
    key.add_noise(index, copy, sigma, x, row);
    let amb = key.ambiguities(index, copy, sigma, x, row, MAX_CANDIDATES)?;
    let rows: usize = amb.iter().map(|(_, c)| c.len()).product();
    cand.reserve(rows * row.len());
    for r in 0..rows {
        let start = cand.len();
        cand.extend_from_slice(row);
        // Mixed-radix digits of r pick one value per ambiguous coordinate.
        let mut q = r;
        for (k, c) in &amb {
            cand[start + k] = c[q % c.len()];
            q /= c.len();
        }
    }
    Some(rows)
}
