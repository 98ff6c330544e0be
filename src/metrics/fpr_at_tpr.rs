//! FPR at a TPR level (FPR@95 for t = 0.95) under three named conventions, and the detector
//! threshold γ that accepts a share t of ID samples.

use super::scores::SortedScores;
use super::sweep::{Sweep, SweepStep};
use crate::error::{Error, Result};

/// How "the FPR at TPR t" is read off the curve. Public code disagrees; we never pick silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FprConvention {
    /// ID positive, score -S: FPR at the first distinct threshold (sweeping from most-ID to
    /// least-ID) where TPR ≥ t — sklearn's `roc_curve(..., drop_intermediate=False)` followed by
    /// `fpr[argmax(tpr >= t)]`. The default (theory.md §5).
    First,
    /// ID positive, score -S: the energy-OOD/GReg `fpr_and_fdr_at_recall` rule — among the
    /// thresholds up to the first one reaching full recall, the one whose recall is nearest t
    /// (`argmin |recall - t|`, |·| in f64; on a tie the later threshold of the sweep wins, i.e.
    /// the larger FPR), so TPR may be below t.
    Nearest,
    /// OpenOOD: OOD positive, score S, TPR = share of OOD flagged, FPR = share of ID flagged,
    /// `fpr[argmax(tpr >= t)]` on sklearn's default `roc_curve` (drop_intermediate=True, which
    /// removes collinear equal-step points; with untied scores this equals `First` with roles
    /// swapped).
    OodPositive,
}

impl FprConvention {
    /// A one-line statement of the convention, for logs and reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::First => {
                "ID positive, detector score -S, FPR at the first threshold where TPR >= t"
            }
            Self::Nearest => {
                "ID positive, detector score -S, FPR where recall is nearest t (energy-OOD/GReg code)"
            }
            Self::OodPositive => {
                "OOD positive, detector score S, FPR over ID where TPR over OOD first >= t (OpenOOD)"
            }
        }
    }
}

/// A TPR level t ∈ (0, 1] and the convention used to read the FPR there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FprRule {
    /// The convention.
    pub convention: FprConvention,
    /// The TPR level t (0.95 for FPR@95).
    pub tpr: f64,
}

impl FprRule {
    /// FPR@95 with the default convention.
    pub const FPR95: FprRule = FprRule {
        convention: FprConvention::First,
        tpr: 0.95,
    };

    /// Checks that the TPR level lies in (0, 1].
    pub fn validate(&self) -> Result<()> {
        check_tpr_level(self.tpr)
    }
}

/// Errors unless 0 < t ≤ 1.
fn check_tpr_level(t: f64) -> Result<()> {
    if t > 0.0 && t <= 1.0 {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "metrics: TPR level {t} is outside (0, 1]"
        )))
    }
}

/// The FPR at TPR `rule.tpr` under `rule.convention` (see [`FprConvention`]).
pub fn fpr_at_tpr(scores: &SortedScores, rule: FprRule) -> Result<f64> {
    rule.validate()?;
    let t = rule.tpr;
    let (p, n) = (scores.n_id() as f64, scores.n_ood() as f64);
    let fpr = match rule.convention {
        FprConvention::First => Sweep::new(scores)
            .find(|s| s.id_le as f64 / p >= t)
            .map(|s| s.ood_le as f64 / n),
        FprConvention::Nearest => Some(nearest_recall_fpr(scores, t)),
        FprConvention::OodPositive => ood_positive_fpr(scores, t),
    };
    // The last sweep step has TPR = 1 ≥ t, so every branch finds a point.
    fpr.ok_or_else(|| Error::Internal("metrics: no ROC point reaches the TPR level".into()))
}

/// `fpr_and_fdr_at_recall` (energy-OOD/GReg code), step for step: recall = tps/P at each
/// distinct threshold up to the first with tps = P; cutoff = argmin |recall - t| over them in
/// reverse order (first minimum wins, i.e. the one nearest full recall); FPR = fps/N there.
/// (That code also appends a point with recall 1 and fps 0 after the reversed list; it can never
/// win, because the reversed list starts with recall exactly 1 and ties go to the first.)
fn nearest_recall_fpr(scores: &SortedScores, t: f64) -> f64 {
    let (p, n) = (scores.n_id(), scores.n_ood() as f64);
    let mut best = (f64::INFINITY, 0usize);
    for s in Sweep::new(scores) {
        let distance = (s.id_le as f64 / p as f64 - t).abs();
        if distance <= best.0 {
            best = (distance, s.ood_le);
        }
        if s.id_le == p {
            break;
        }
    }
    best.1 as f64 / n
}

/// OpenOOD's rule: sklearn `roc_curve(is_ood, S)` with its default point dropping, then
/// `fpr[argmax(tpr >= t)]`. Points run from high S to low S; a point strictly inside a run of
/// equal (OOD, ID) count increments is dropped (zero second difference of both counts).
fn ood_positive_fpr(scores: &SortedScores, t: f64) -> Option<f64> {
    let (p, n) = (scores.n_id(), scores.n_ood());
    let steps: Vec<SweepStep> = Sweep::new(scores).collect();
    let m = steps.len();
    let increment = |k: usize| {
        let s = &steps[m - 1 - k];
        (s.ood_at, s.id_at)
    };
    let (mut tp, mut fp) = (0usize, 0usize);
    for k in 0..m {
        let (d_tp, d_fp) = increment(k);
        tp += d_tp;
        fp += d_fp;
        let kept = m <= 2 || k == 0 || k == m - 1 || increment(k) != increment(k + 1);
        if kept && tp as f64 / n as f64 >= t {
            return Some(fp as f64 / p as f64);
        }
    }
    None
}

/// The detector threshold γ on S that accepts (S ≤ γ ⇒ ID) at least a share t of ID samples.
///
/// γ is the k-th smallest ID score, k the smallest count with k/n ≥ t (compared in f64, as
/// sklearn's `tpr >= t`), i.e. the ROC threshold the `First` convention stops at. Ties with γ
/// are accepted, so the accepted share can exceed t. O(n) by selection; errors on an empty or
/// non-finite input or t ∉ (0, 1].
pub fn threshold_at_tpr(id_scores: &[f64], t: f64) -> Result<f64> {
    check_tpr_level(t)?;
    let len = id_scores.len();
    if len == 0 {
        return Err(Error::BadInput(
            "metrics: no in-distribution scores to set a threshold from".into(),
        ));
    }
    if let Some((i, s)) = id_scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(Error::BadInput(format!(
            "metrics: in-distribution score #{i} is {s}; scores must be finite"
        )));
    }
    let n = len as f64;
    // Start from ceil(t·n), then settle the f64 comparison exactly.
    let mut k = ((t * n).ceil() as usize).clamp(1, len);
    while k > 1 && (k - 1) as f64 / n >= t {
        k -= 1;
    }
    while k < len && (k as f64 / n) < t {
        k += 1;
    }
    let mut work = id_scores.to_vec();
    let (_, &mut gamma, _) = work.select_nth_unstable_by(k - 1, f64::total_cmp);
    Ok(if gamma == 0.0 { 0.0 } else { gamma })
}
