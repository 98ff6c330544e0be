//! Detection metrics for energy scores (theory.md §5), equal to sklearn's to rounding.
//!
//! Input convention: a score is the energy S(x) = -T·logsumexp(f(x)/T), larger = more OOD;
//! `is_id` marks in-distribution samples. Default convention: ID is the positive class and
//! the detector score is -S (as in the energy-OOD and GReg code). Every metric costs one sort
//! of each side ([`SortedScores`]) and a linear sweep over the distinct score values.
//!
//! - FPR@TPR t (FPR@95 for t = 0.95): three named conventions, [`FprConvention`].
//! - AUROC = P(S_ID < S_OOD) + ½·P(tie) = sklearn `roc_auc_score`; the same for every convention.
//! - AUPR-In = `average_precision_score(is_id, -S)`; AUPR-Out = `average_precision_score(is_ood, S)`.
//! - Detection error = min over thresholds of ½(1 - TPR) + ½·FPR.

mod accuracy;
mod fpr_at_tpr;
mod precision_recall;
mod roc;
mod scores;
mod sweep;
pub mod synthetic;

pub use accuracy::id_accuracy;
pub use fpr_at_tpr::{FprConvention, FprRule, fpr_at_tpr, threshold_at_tpr};
pub use precision_recall::{Positive, PrPoint, average_precision, pr_curve};
pub use roc::{RocPoint, auroc, detection_error, roc_curve};
pub use scores::SortedScores;
pub use sweep::{Sweep, SweepStep};

use crate::error::Result;

/// The standard OOD detection summary of one (ID, OOD) score pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectionMetrics {
    /// How `fpr_at_tpr` was read (convention and TPR level t).
    pub rule: FprRule,
    /// FPR at TPR t under `rule` (FPR@95 when t = 0.95).
    pub fpr_at_tpr: f64,
    /// Area under the ROC curve, ties counted ½.
    pub auroc: f64,
    /// Average precision with ID positive, score -S.
    pub aupr_in: f64,
    /// Average precision with OOD positive, score S.
    pub aupr_out: f64,
    /// min over thresholds of ½(1 - TPR) + ½·FPR.
    pub detection_error: f64,
}

impl DetectionMetrics {
    /// All metrics from already sorted scores.
    pub fn from_sorted(scores: &SortedScores, rule: FprRule) -> Result<Self> {
        Ok(Self {
            rule,
            fpr_at_tpr: fpr_at_tpr(scores, rule)?,
            auroc: auroc(scores),
            aupr_in: average_precision(scores, Positive::Id),
            aupr_out: average_precision(scores, Positive::Ood),
            detection_error: detection_error(scores),
        })
    }
}

/// All metrics from per-sample scores and ID flags. Errors on a length mismatch, an empty ID or
/// OOD side, a NaN/infinite score or a TPR level outside (0, 1].
pub fn detection_metrics(
    scores: &[f64],
    is_id: &[bool],
    rule: FprRule,
) -> Result<DetectionMetrics> {
    rule.validate()?;
    DetectionMetrics::from_sorted(&SortedScores::from_labelled(scores, is_id)?, rule)
}

/// All metrics from the split form (ID scores, OOD scores); errors as [`detection_metrics`].
pub fn detection_metrics_split(
    id_scores: &[f64],
    ood_scores: &[f64],
    rule: FprRule,
) -> Result<DetectionMetrics> {
    rule.validate()?;
    DetectionMetrics::from_sorted(&SortedScores::from_split(id_scores, ood_scores)?, rule)
}
