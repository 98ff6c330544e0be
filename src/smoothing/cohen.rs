//! The smoothed detector of Cohen, Rosenfeld & Kolter (2019) with two outcomes: the base detector
//! says ID iff S(x) ≤ γ; g(x) is the outcome h(x+δ) takes with the larger probability. CERTIFY
//! gives g(x) with an ℓ2 radius σ·Φ⁻¹(p_lo); PREDICT gives g(x) or abstains (theory.md §3).

use super::binomial::{binomial_test_two_sided, clopper_pearson_lower};
use super::lemma::shrink_radius;
use super::normal::phi_inv;
use crate::error::Result;

/// A detection outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// In-distribution: S ≤ γ.
    Id,
    /// Out-of-distribution: S > γ.
    Ood,
}

impl Decision {
    /// The CSV code: 1 = ID, 0 = OOD (abstentions are written as -1 elsewhere).
    pub fn code(self) -> i64 {
        match self {
            Decision::Id => 1,
            Decision::Ood => 0,
        }
    }

    /// The base detector's decision for a score: ID iff `score ≤ gamma` ([`crate::score::is_ood`],
    /// the side rule every tool shares).
    pub fn of_score(score: f64, gamma: f64) -> Decision {
        if crate::score::is_ood(score, gamma) {
            Decision::Ood
        } else {
            Decision::Id
        }
    }

    /// Decision of the ground-truth role.
    pub fn of_role(is_id: bool) -> Decision {
        if is_id { Decision::Id } else { Decision::Ood }
    }
}

/// The outcome of CERTIFY for one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohenCertificate {
    /// The guess from the n0 selection samples (the outcome counted in the n estimation samples).
    pub guess: Decision,
    /// `Some(guess)` when certified, `None` when CERTIFY abstains (p_lo ≤ ½).
    pub prediction: Option<Decision>,
    /// Hits of the guess among the n estimation samples.
    pub count: u64,
    /// One-sided (1-α) Clopper–Pearson lower bound on P(h(x+δ) = guess).
    pub p_lo: f64,
    /// Certified ℓ2 radius σ·Φ⁻¹(p_lo) (0 when abstaining).
    pub radius: f64,
}

/// The guess of CERTIFY from the selection counts: the majority outcome among `n0` (OOD on a tie).
pub fn guess_from_counts(id_hits: u64, n0: u64) -> Decision {
    if 2 * id_hits > n0 {
        Decision::Id
    } else {
        Decision::Ood
    }
}

/// CERTIFY (Cohen et al. 2019, Alg. 1, two outcomes) from `count` hits of `guess` among `n`
/// fresh samples: p_lo = Beta quantile B(α; count, n-count+1); abstain when p_lo ≤ ½, else
/// radius σ·Φ⁻¹(p_lo) (shrunk by a relative 1e-9 against rounding).
pub fn certify_from_counts(
    guess: Decision,
    count: u64,
    n: u64,
    alpha: f64,
    sigma: f64,
) -> Result<CohenCertificate> {
    let p_lo = clopper_pearson_lower(count, n, alpha)?;
    let (prediction, radius) = if p_lo > 0.5 {
        (Some(guess), shrink_radius(sigma * phi_inv(p_lo)))
    } else {
        (None, 0.0)
    };
    Ok(CohenCertificate {
        guess,
        prediction,
        count,
        p_lo,
        radius,
    })
}

/// PREDICT (Cohen et al. 2019, Alg. 1) from `id_hits` ID outcomes among `n` samples: the majority
/// outcome if the two-sided binomial test against ½ rejects at level α, else abstain (`None`).
/// Returns the decision and the p-value.
pub fn predict_from_counts(id_hits: u64, n: u64, alpha: f64) -> Result<(Option<Decision>, f64)> {
    let p_value = binomial_test_two_sided(id_hits, n)?;
    // Compare with a relative margin so a p-value rounded low cannot flip an abstention.
    let decision = if p_value * (1.0 + 1e-9) <= alpha {
        Some(if 2 * id_hits > n {
            Decision::Id
        } else {
            Decision::Ood
        })
    } else {
        None
    };
    Ok((decision, p_value))
}

/// PREDICT when some of the `n` copies are undecided (neither surely ID nor surely OOD: copies of
/// the float32 coupling that could not be resolved). The side is the majority of `est_id` (every
/// copy's own outcome); the test counts the undecided copies *against* that side (`sure_id` ID
/// hits, or n − `sure_ood`). A decision for the other side would count them *for* it, so it is
/// replaced by an abstention: every returned decision is backed by surely-decided copies only.
pub fn predict_with_undecided(
    est_id: u64,
    sure_id: u64,
    sure_ood: u64,
    n: u64,
    alpha: f64,
) -> Result<(Option<Decision>, f64)> {
    let side = if 2 * est_id >= n {
        Decision::Id
    } else {
        Decision::Ood
    };
    let id_for_test = if side == Decision::Id {
        sure_id
    } else {
        n - sure_ood
    };
    let (test, p_value) = predict_from_counts(id_for_test, n, alpha)?;
    Ok((test.filter(|d| *d == side), p_value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoothing::normal::phi;

    /// Undecided copies never count for the returned side: 400 undecided of 1000 with 300 sure on
    /// each side is no decision (the old rule returned OOD from n − sure_id = 700), while a real
    /// majority of sure copies on either side still decides.
    #[test]
    fn predict_with_undecided_never_counts_undecided_copies_for_its_answer() {
        let (d, _) = predict_with_undecided(500, 300, 300, 1000, 0.001).unwrap();
        assert_eq!(d, None);
        let (d, _) = predict_with_undecided(499, 300, 300, 1000, 0.001).unwrap();
        assert_eq!(d, None);
        assert_eq!(
            predict_with_undecided(900, 890, 100, 1000, 0.001)
                .unwrap()
                .0,
            Some(Decision::Id)
        );
        assert_eq!(
            predict_with_undecided(100, 110, 880, 1000, 0.001)
                .unwrap()
                .0,
            Some(Decision::Ood)
        );
        // Without undecided copies it is PREDICT itself.
        for id in [0u64, 400, 480, 520, 600, 1000] {
            assert_eq!(
                predict_with_undecided(id, id, 1000 - id, 1000, 0.001).unwrap(),
                predict_from_counts(id, 1000, 0.001).unwrap()
            );
        }
    }

    #[test]
    fn certify_matches_hand_computation() {
        // 1000 of 1000 hits at α = 0.001: p_lo = 0.001^(1/1000), radius σ·Φ⁻¹(p_lo).
        let c = certify_from_counts(Decision::Id, 1000, 1000, 0.001, 0.5).unwrap();
        let p = 0.001f64.powf(1e-3);
        assert!((c.p_lo - p).abs() < 1e-8);
        assert!((phi(c.radius / 0.5) - p).abs() < 1e-8);
        assert_eq!(c.prediction, Some(Decision::Id));
        let a = certify_from_counts(Decision::Ood, 520, 1000, 0.001, 0.5).unwrap();
        assert_eq!(a.prediction, None);
        assert_eq!(a.radius, 0.0);
    }

    #[test]
    fn predict_abstains_on_close_counts() {
        assert_eq!(predict_from_counts(52, 100, 0.05).unwrap().0, None);
        assert_eq!(
            predict_from_counts(80, 100, 0.05).unwrap().0,
            Some(Decision::Id)
        );
        assert_eq!(
            predict_from_counts(3, 100, 0.05).unwrap().0,
            Some(Decision::Ood)
        );
        assert_eq!(guess_from_counts(5, 10), Decision::Ood);
        assert_eq!(guess_from_counts(6, 10), Decision::Id);
    }
}
