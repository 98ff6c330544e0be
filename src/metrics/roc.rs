//! The ROC curve of the default convention (ID positive, detector score -S), its area (AUROC)
//! and the detection error read off it.

use super::scores::SortedScores;
use super::sweep::Sweep;

/// One ROC point: the detector "S ≤ threshold ⇒ ID" and its rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocPoint {
    /// Energy threshold γ; `-inf` for the first point, which accepts nothing.
    pub threshold: f64,
    /// False positive rate: share of OOD samples with S ≤ γ.
    pub fpr: f64,
    /// True positive rate: share of ID samples with S ≤ γ.
    pub tpr: f64,
}

/// The full ROC curve: (0, 0) at γ = -inf, then one point per distinct score value, ascending.
///
/// Equal to sklearn's `roc_curve(is_id, -S, drop_intermediate=False)` with thresholds negated.
pub fn roc_curve(scores: &SortedScores) -> Vec<RocPoint> {
    let (p, n) = (scores.n_id() as f64, scores.n_ood() as f64);
    let mut points = vec![RocPoint {
        threshold: f64::NEG_INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    points.extend(Sweep::new(scores).map(|s| RocPoint {
        threshold: s.threshold,
        fpr: s.ood_le as f64 / n,
        tpr: s.id_le as f64 / p,
    }));
    points
}

/// AUROC = P(S_ID < S_OOD) + ½·P(S_ID = S_OOD) (theory.md §5; sklearn's `roc_auc_score`).
///
/// The trapezoid area is accumulated exactly in integers (twice the area in units of one
/// ID×OOD pair), then divided once, so the result is correctly rounded.
pub fn auroc(scores: &SortedScores) -> f64 {
    let mut twice_area: u128 = 0;
    for s in Sweep::new(scores) {
        let id_below = (s.id_le - s.id_at) as u128;
        twice_area += s.ood_at as u128 * (id_below + s.id_le as u128);
    }
    let pairs = 2 * scores.n_id() as u128 * scores.n_ood() as u128;
    twice_area as f64 / pairs as f64
}

/// Detection error = min over thresholds γ of ½(1 - TPR(γ)) + ½·FPR(γ).
///
/// The minimum is over every ROC point, including "accept nothing" (value ½); it is the error
/// of the best single threshold when ID and OOD are equally likely, and it does not depend on
/// which class is called positive.
pub fn detection_error(scores: &SortedScores) -> f64 {
    let (p, n) = (scores.n_id() as f64, scores.n_ood() as f64);
    Sweep::new(scores)
        .map(|s| 0.5 * (1.0 - s.id_le as f64 / p) + 0.5 * (s.ood_le as f64 / n))
        .fold(0.5, f64::min)
}
