//! Precision–recall curves and average precision (AUPR-In, AUPR-Out), as sklearn computes them.

use super::scores::SortedScores;
use super::sweep::{CompensatedSum, Sweep};

/// Which class the precision–recall curve treats as positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positive {
    /// ID positive, detector score -S: a sample is called ID when S ≤ threshold (AUPR-In).
    Id,
    /// OOD positive, detector score S: a sample is called OOD when S ≥ threshold (AUPR-Out).
    Ood,
}

/// One precision–recall point at a distinct score value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrPoint {
    /// Energy threshold (S ≤ it for [`Positive::Id`], S ≥ it for [`Positive::Ood`]).
    pub threshold: f64,
    /// tp / (tp + fp).
    pub precision: f64,
    /// tp / (number of positives).
    pub recall: f64,
}

/// The precision–recall curve, one point per distinct score value, recall non-decreasing.
///
/// Equal to sklearn's `precision_recall_curve` reversed, without its final (precision 1,
/// recall 0) point, which has no threshold.
pub fn pr_curve(scores: &SortedScores, positive: Positive) -> Vec<PrPoint> {
    let (n_id, n_ood) = (scores.n_id(), scores.n_ood());
    match positive {
        Positive::Id => Sweep::new(scores)
            .map(|s| PrPoint {
                threshold: s.threshold,
                precision: s.id_le as f64 / (s.id_le + s.ood_le) as f64,
                recall: s.id_le as f64 / n_id as f64,
            })
            .collect(),
        Positive::Ood => {
            let mut points: Vec<PrPoint> = Sweep::new(scores)
                .map(|s| {
                    let tp = n_ood - (s.ood_le - s.ood_at);
                    let fp = n_id - (s.id_le - s.id_at);
                    PrPoint {
                        threshold: s.threshold,
                        precision: tp as f64 / (tp + fp) as f64,
                        recall: tp as f64 / n_ood as f64,
                    }
                })
                .collect();
            points.reverse();
            points
        }
    }
}

/// Average precision AP = Σₖ (Rₖ - Rₖ₋₁)·Pₖ over distinct thresholds (sklearn's
/// `average_precision_score`, no interpolation).
///
/// [`Positive::Id`] gives AUPR-In (score -S); [`Positive::Ood`] gives AUPR-Out (score S).
pub fn average_precision(scores: &SortedScores, positive: Positive) -> f64 {
    let (n_id, n_ood) = (scores.n_id(), scores.n_ood());
    let mut sum = CompensatedSum::default();
    match positive {
        Positive::Id => {
            for s in Sweep::new(scores) {
                let precision = s.id_le as f64 / (s.id_le + s.ood_le) as f64;
                sum.add(s.id_at as f64 * precision);
            }
            sum.total() / n_id as f64
        }
        Positive::Ood => {
            for s in Sweep::new(scores) {
                let tp = n_ood - (s.ood_le - s.ood_at);
                let fp = n_id - (s.id_le - s.id_at);
                sum.add(s.ood_at as f64 * (tp as f64 / (tp + fp) as f64));
            }
            sum.total() / n_ood as f64
        }
    }
}
