//! Both certificates of one input from one Monte Carlo run: copies 0..n0 select CERTIFY's guess,
//! copies n0..n0+n estimate (Cohen et al. 2019); the same n copies give the clipped-score bounds
//! (Hoeffding and CDF-based, Kumar et al. 2020) and the Φ⁻¹-Lipschitz radii (theory.md §3–4).

use super::clip::ClipRange;
use super::cohen::{Decision, certify_from_counts, guess_from_counts, predict_with_undecided};
use super::coupling::Coupling;
use super::engine::{BatchScorer, noisy_score_intervals, noisy_scores};
use super::lemma::{radius_above, radius_below};
use super::mean_bounds::{cdf_lower, cdf_upper, compensated_sum, hoeffding_lower, hoeffding_upper};
use super::noise::{NoiseKey, NoiseLayout};
use super::record::CertifyRecord;
use crate::error::{Error, Result};
use indicatif::ProgressBar;

/// The most noisy copies per sample, n0 + n: 2⁵³, so that every count converts to f64 exactly
/// (Clopper–Pearson and the score bounds compute in f64).
pub const MAX_COPIES: u64 = 1 << 53;

/// The Monte Carlo parameters of a certification run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothingParams {
    /// Noise level σ (pixel units, ℓ2).
    pub sigma: f64,
    /// Selection samples of CERTIFY.
    pub n0: u64,
    /// Estimation samples.
    pub n: u64,
    /// Failure probability of each certificate, 0 < α ≤ ½.
    pub alpha: f64,
    /// Noisy copies per forward pass.
    pub batch: usize,
    /// Noise layout (`--noise-layout`).
    pub noise: NoiseLayout,
    /// How copies that fail the float32 coupling check count (`--coupling`).
    pub coupling: Coupling,
}

impl SmoothingParams {
    /// Validates σ > 0, n0 ≥ 1, n ≥ 1, 0 < α ≤ ½, batch ≥ 1.
    pub fn check(&self) -> Result<()> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::BadInput(format!(
                "--sigma must be finite and > 0, got {}",
                self.sigma
            )));
        }
        if self.n0 == 0 || self.n == 0 {
            return Err(Error::BadInput(format!(
                "--n0 and --n must be at least 1, got {} and {}",
                self.n0, self.n
            )));
        }
        if self.n0.checked_add(self.n).is_none_or(|t| t > MAX_COPIES) {
            return Err(Error::BadInput(format!(
                "--n0 + --n must be at most 2^53 (counts stay exact in f64), got {} + {}",
                self.n0, self.n
            )));
        }
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(Error::BadInput(format!(
                "--alpha must lie in (0, 0.5], got {}",
                self.alpha
            )));
        }
        if self.batch == 0 {
            return Err(Error::BadInput("--batch must be at least 1".into()));
        }
        Ok(())
    }
}

/// The thresholds the certificates refer to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// γ of the base detector: ID iff S ≤ γ.
    pub gamma: f64,
    /// γ' of the smoothed clipped score: ID iff ĝ ≤ γ'.
    pub gamma_smoothed: f64,
    /// The clip range [a, b].
    pub clip: ClipRange,
}

/// One input to certify.
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a> {
    /// Canonical dataset name (written to the CSV).
    pub dataset: &'a str,
    /// The dataset's noise key.
    pub key: &'a NoiseKey,
    /// Index in the dataset (the noise stream).
    pub index: u64,
    /// Class label or -1.
    pub label: i64,
    /// Ground-truth role; picks which one-sided score bound certifies the sample.
    pub is_id: bool,
    /// The pixels.
    pub x: &'a [f32],
    /// The clean score S(x).
    pub clean_score: f64,
}

/// Runs CERTIFY, PREDICT and the score certificate on one input (time column left at 0).
pub fn certify_sample(
    scorer: &dyn BatchScorer,
    p: &SmoothingParams,
    th: &Thresholds,
    s: SampleRef<'_>,
    progress: &ProgressBar,
) -> Result<CertifyRecord> {
    let t = th.clip.unit_threshold(th.gamma_smoothed)?;
    let mut sel_id = 0u64;
    noisy_scores(
        scorer,
        s.key,
        s.index,
        s.x,
        p.sigma,
        0..p.n0,
        p.batch,
        progress,
        |sc| {
            sel_id += sc
                .iter()
                .filter(|&&v| !crate::score::is_ood(v, th.gamma))
                .count() as u64;
            Ok(())
        },
    )?;
    // Each copy carries an interval [lo, hi] that contains the score at the coupled ideal input
    // fl₃₂(x + σZ) (proofs/smoothing_floating_point.md): [v, v] when exact, the hull of the
    // candidate inputs' scores when resolved, [−∞, +∞] otherwise. A copy counts as ID only when
    // hi is ID and as OOD only when lo is OOD, and takes to_unit(lo) in the lower score bounds
    // and to_unit(hi) in the upper ones (to_unit is monotone, ±∞ ↦ 0, 1).
    let (mut est_id, mut sure_id, mut sure_ood) = (0u64, 0u64, 0u64);
    let mut h = Vec::with_capacity(p.n as usize);
    let mut h_for_lo = Vec::with_capacity(p.n as usize);
    let mut h_for_hi = Vec::with_capacity(p.n as usize);
    let copies = p.n0..p.n0 + p.n;
    noisy_score_intervals(
        scorer,
        s.key,
        s.index,
        s.x,
        p.sigma,
        copies,
        p.batch,
        p.coupling,
        progress,
        |sc, iv| {
            for (&v, &(lo, hi)) in sc.iter().zip(iv) {
                est_id += u64::from(!crate::score::is_ood(v, th.gamma));
                sure_id += u64::from(!crate::score::is_ood(hi, th.gamma));
                sure_ood += u64::from(crate::score::is_ood(lo, th.gamma));
                h.push(th.clip.to_unit(v));
                h_for_lo.push(th.clip.to_unit(lo));
                h_for_hi.push(th.clip.to_unit(hi));
            }
            Ok(())
        },
    )?;

    let role = Decision::of_role(s.is_id);
    let guess = guess_from_counts(sel_id, p.n0);
    let count = if guess == Decision::Id {
        sure_id
    } else {
        sure_ood
    };
    let cert = certify_from_counts(guess, count, p.n, p.alpha, p.sigma)?;
    // PREDICT, undecided copies counted against the majority (and never for the answer).
    let (test, p_value) = predict_with_undecided(est_id, sure_id, sure_ood, p.n, p.alpha)?;

    let mean = compensated_sum(h.iter().copied()) / h.len() as f64;
    let (hl_h, hh_h) = (
        hoeffding_lower(&h_for_lo, p.alpha)?,
        hoeffding_upper(&h_for_hi, p.alpha)?,
    );
    // Both sorts at once (values equal under total_cmp have the same bits, so any sort of
    // either vector gives the same result).
    rayon::join(
        || h_for_lo.sort_unstable_by(f64::total_cmp),
        || h_for_hi.sort_unstable_by(f64::total_cmp),
    );
    let (h_lo, h_hi) = (
        cdf_lower(&h_for_lo, p.alpha)?,
        cdf_upper(&h_for_hi, p.alpha)?,
    );
    let role_radius = |lo: f64, hi: f64| -> f64 {
        let r = if s.is_id {
            radius_below(hi, t, p.sigma)
        } else {
            radius_above(lo, t, p.sigma)
        };
        r.unwrap_or(-1.0)
    };
    let score_mean = th.clip.from_unit(mean);
    Ok(CertifyRecord {
        idx: s.index,
        label: s.label,
        predict: cert.prediction.map_or(-1, Decision::code),
        radius: cert.radius,
        correct: u8::from(cert.prediction == Some(role)),
        time: 0.0,
        dataset: s.dataset.to_string(),
        is_id: u8::from(s.is_id),
        score: s.clean_score,
        n: p.n,
        count,
        p_lo: cert.p_lo,
        p_value,
        predict_test: test.map_or(-1, Decision::code),
        score_mean,
        score_lo: th.clip.from_unit(h_lo) - display_margin(&th.clip),
        score_hi: th.clip.from_unit(h_hi) + display_margin(&th.clip),
        h_lo,
        h_hi,
        predict_score: i64::from(score_mean <= th.gamma_smoothed),
        radius_score: role_radius(h_lo, h_hi),
        h_lo_hoeffding: hl_h,
        h_hi_hoeffding: hh_h,
        radius_score_hoeffding: role_radius(hl_h, hh_h),
    })
}

/// Bound on the rounding error of a + (b - a)·h for h ∈ [0,1] (a few ulps of |a| + |b|), by which
/// the score-unit bounds are moved outward.
fn display_margin(c: &ClipRange) -> f64 {
    4.0 * f64::EPSILON * (c.lo.abs() + c.hi.abs())
}
