//! Certified radii for the float32 detector (proofs/f32_detector.md §4): the margin to γ is
//! taken from an enclosure of the exact score at the centre, minus the bound E on the f32
//! evaluation error over the ball; a sample whose margin does not exceed E at the centre is
//! "undecided in float32" and gets radius 0.

use super::local::{Head, PreBounds, fastlip_with};
use super::radius::{energy_bounds_with, lipschitz_radius};
use crate::bounds::energy::energy_bounds;
use crate::bounds::f32_detector::F32Detector;
use crate::bounds::ibp::ibp;
use crate::bounds::round::{next_down, next_up};
use crate::bounds::{Ball, Interval, Net};
use crate::error::{Error, Result};
use crate::score::is_ood;

/// A sample's centre as the certificates see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CentreMargin {
    /// The side of γ: OOD when the score S(x) > γ ([`is_ood`], the one side rule).
    pub ood: bool,
    /// γ.
    pub gamma: f64,
    /// A lower bound on the exact margin: S_lo − γ (OOD) or γ − S_hi (ID), [S_lo, S_hi] ∋ S(x).
    pub exact: f64,
    /// E at the centre: |S₃₂(x) − S(x)| ≤ err.
    pub err: f64,
}

/// The float32 margin rule, the same in lipschitz, certify and verify: a lower bound on the
/// exact margin minus the f32 error bound, rounded down (≤ 0: the f32 detector may decide
/// either way).
pub fn f32_margin(exact_margin: f64, err: f64) -> f64 {
    if exact_margin.is_nan() || err.is_nan() {
        return f64::NAN;
    }
    next_down(exact_margin - err)
}

impl CentreMargin {
    /// The margin left for the float32 detector at the centre.
    pub fn margin(&self) -> f64 {
        f32_margin(self.exact, self.err)
    }

    /// True when the f32 detector's side at x is not certain: margin ≤ 0 (radius 0).
    pub fn undecided(&self) -> bool {
        let m = self.margin();
        m.is_nan() || m <= 0.0
    }
}

/// The centre margin of `x` with computed score `score` (its f64 value decides the side),
/// the exact score enclosed by IBP of the point (outward-rounded) and E from `det`.
pub fn centre_margin(
    net: &Net,
    det: &F32Detector,
    x: &[f64],
    score: f64,
    gamma: f64,
    temperature: f64,
) -> Result<CentreMargin> {
    if !score.is_finite() || !gamma.is_finite() {
        return Err(Error::CheckFailed(format!(
            "score {score} or threshold {gamma} is not finite"
        )));
    }
    let (_, z) = ibp(&net.nodes, Interval::point(x))?;
    let (lo, hi) = energy_bounds(&z, temperature);
    let ood = is_ood(score, gamma);
    let exact = if ood {
        next_down(lo - gamma)
    } else {
        next_down(gamma - hi)
    };
    let err = det.error_at(x)?;
    if exact.is_nan() || err.is_nan() {
        return Err(Error::CheckFailed("centre margin is NaN".into()));
    }
    Ok(CentreMargin {
        ood,
        gamma,
        exact,
        err,
    })
}

/// The Lipschitz certificate for the f32 detector using the ball of radius r:
/// min(r, (m − E_ball(r)) / L(x, r)), L the smaller of FastLip's local and the global bound.
pub fn lipschitz_certify_f32(
    net: &Net,
    det: &F32Detector,
    ball: &Ball,
    centre: &CentreMargin,
    global: f64,
    pre: PreBounds,
) -> Result<f64> {
    if centre.undecided() {
        return Ok(0.0);
    }
    let e = ball_error(det, ball, pre)?;
    let m = f32_margin(centre.exact, e);
    if m.is_nan() || m <= 0.0 {
        return Ok(0.0);
    }
    let local = fastlip_with(net, ball, det.temperature, Head::Box, pre)?.value;
    Ok(lipschitz_radius(m, local.min(global), ball.eps))
}

/// E over the ball: the float32 error bound of the detector with every node's box intersected
/// with the detector network's own pre-activation trace over the ball (IBP or CROWN as `pre`;
/// for an ℓ2 ball far tighter than the bounding cube alone).
pub fn ball_error(det: &F32Detector, ball: &Ball, pre: PreBounds) -> Result<f64> {
    let (traces, _) = crate::lipschitz::local::pre_bounds(&det.net, ball, pre)?;
    det.error_within(&ball.to_box(), Some(&traces))
}

/// The Lipschitz radius for the f32 detector from a known L on the ball of radius `eps`.
pub fn lipschitz_radius_f32(
    det: &F32Detector,
    ball: &Ball,
    centre: &CentreMargin,
    lip: f64,
    pre: PreBounds,
) -> Result<f64> {
    if centre.undecided() {
        return Ok(0.0);
    }
    let e = ball_error(det, ball, pre)?;
    Ok(lipschitz_radius(f32_margin(centre.exact, e), lip, ball.eps))
}

/// The bound-propagation certificate for the f32 detector at radius r: r if
/// S_lo − E > γ (OOD) or S_hi + E ≤ γ (ID) over B(x, r), else 0.
pub fn bound_prop_certify_f32(
    net: &Net,
    det: &F32Detector,
    ball: &Ball,
    centre: &CentreMargin,
    pre: PreBounds,
) -> Result<f64> {
    if centre.undecided() {
        return Ok(0.0);
    }
    let t = det.temperature;
    let (lo, hi) = energy_bounds_with(net, ball, t, pre)?;
    let e = ball_error(det, ball, pre)?;
    Ok(if bound_prop_decides(centre, lo, hi, e)? {
        ball.eps
    } else {
        0.0
    })
}

/// Whether exact-score bounds [lo, hi] over a ball, widened by the ball's f32 error bound `e`,
/// stay on the centre's side of γ: lo − E > γ (OOD) or hi + E ≤ γ (ID), rounded against.
pub fn bound_prop_decides(centre: &CentreMargin, lo: f64, hi: f64, e: f64) -> Result<bool> {
    if lo.is_nan() || hi.is_nan() {
        return Err(Error::CheckFailed(
            "score bounds over the ball are NaN".into(),
        ));
    }
    Ok(if centre.ood {
        next_down(lo - e) > centre.gamma
    } else {
        next_up(hi + e) <= centre.gamma
    })
}
