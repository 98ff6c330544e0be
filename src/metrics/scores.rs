//! Validated, sorted score sets: the one O(n log n) step every detection metric starts from.
//!
//! Convention (theory.md §5): a score is the energy S(x) = -T·logsumexp(f(x)/T), larger = more
//! OOD. In-distribution (ID) samples are the positive class by default.

use crate::error::{Error, Result};

/// The ID and OOD energy scores of a detection benchmark, each sorted ascending (most-ID first).
///
/// Built once, then every metric is a linear sweep over it. Scores are finite; `-0.0` is
/// stored as `0.0` so that ties follow IEEE equality, as numpy/sklearn treat them.
#[derive(Debug, Clone, PartialEq)]
pub struct SortedScores {
    id: Vec<f64>,
    ood: Vec<f64>,
}

impl SortedScores {
    /// Validates and sorts the split form: ID scores and OOD scores given separately.
    ///
    /// Errors if either side is empty or any score is NaN or infinite.
    pub fn from_split(id_scores: &[f64], ood_scores: &[f64]) -> Result<Self> {
        let id = sorted_finite(id_scores, "in-distribution")?;
        let ood = sorted_finite(ood_scores, "out-of-distribution")?;
        Ok(Self { id, ood })
    }

    /// Validates and sorts the combined form: one score per sample and whether it is ID.
    ///
    /// Errors on a length mismatch, an empty side, or a NaN/infinite score.
    pub fn from_labelled(scores: &[f64], is_id: &[bool]) -> Result<Self> {
        if scores.len() != is_id.len() {
            return Err(Error::BadInput(format!(
                "metrics: {} scores but {} is_id flags; they must pair up one to one",
                scores.len(),
                is_id.len()
            )));
        }
        let n_id = is_id.iter().filter(|&&b| b).count();
        let mut id = Vec::with_capacity(n_id);
        let mut ood = Vec::with_capacity(scores.len() - n_id);
        for (&s, &b) in scores.iter().zip(is_id) {
            if b { id.push(s) } else { ood.push(s) }
        }
        Self::from_split(&id, &ood)
    }

    /// ID scores, ascending.
    pub fn id(&self) -> &[f64] {
        &self.id
    }

    /// OOD scores, ascending.
    pub fn ood(&self) -> &[f64] {
        &self.ood
    }

    /// Number of ID samples (the positives P of the default convention).
    pub fn n_id(&self) -> usize {
        self.id.len()
    }

    /// Number of OOD samples (the negatives N of the default convention).
    pub fn n_ood(&self) -> usize {
        self.ood.len()
    }
}

/// Copies, checks (non-empty, finite) and sorts one side; `side` names it in errors.
pub(crate) fn sorted_finite(scores: &[f64], side: &str) -> Result<Vec<f64>> {
    if scores.is_empty() {
        return Err(Error::BadInput(format!(
            "metrics: no {side} scores; detection metrics need at least one ID and one OOD sample"
        )));
    }
    let mut out = Vec::with_capacity(scores.len());
    for (i, &s) in scores.iter().enumerate() {
        if !s.is_finite() {
            return Err(Error::BadInput(format!(
                "metrics: {side} score #{i} is {s}; scores must be finite"
            )));
        }
        // -0.0 == 0.0 under IEEE (and for numpy's ties); store one representation.
        out.push(if s == 0.0 { 0.0 } else { s });
    }
    out.sort_unstable_by(f64::total_cmp);
    Ok(out)
}
