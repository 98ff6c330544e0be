//! The input sets certificates talk about: the ℓ_p ball B_p(x, ε), p ∈ {2, ∞}, optionally
//! intersected with the valid pixel box [0, 1]^n.

use super::interval::Interval;
use super::round::{next_down, next_up};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The perturbation norm ℓ_p; its dual ℓ_q measures gradients (ℓ2 ↔ ℓ2, ℓ∞ ↔ ℓ1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    L2,
    Linf,
}

impl Norm {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Norm::L2 => "l2",
            Norm::Linf => "linf",
        }
    }

    /// The exponent q of the dual norm (2 or 1).
    pub fn dual_q(self) -> f64 {
        match self {
            Norm::L2 => 2.0,
            Norm::Linf => 1.0,
        }
    }

    /// ‖v‖_p.
    pub fn norm(self, v: &[f64]) -> f64 {
        match self {
            Norm::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
            Norm::Linf => v.iter().fold(0.0, |m, x| m.max(x.abs())),
        }
    }

    /// ‖v‖_q of the dual norm, rounded up (used on certified bounds). For ℓ2 the squares of
    /// entries below ≈ 10⁻¹⁵⁴ lose relative precision (subnormal) or vanish: √n·2⁻⁵¹⁰ bounds
    /// what they can miss (each |xᵢ| < 2⁻⁵¹¹ whose square is lost or inexact contributes at most
    /// 2⁻¹⁰²² to ‖v‖², plus the subnormal rounding of at most 2⁻¹⁰⁷⁴ per square).
    pub fn dual_norm_up(self, v: &[f64]) -> f64 {
        let n = v.len();
        match self {
            Norm::L2 => l2_up(v.iter().map(|x| x * x).sum::<f64>(), n),
            Norm::Linf => {
                let raw = v.iter().map(|x| x.abs()).sum::<f64>();
                super::round::widen_up(raw, super::round::dot_err(n))
            }
        }
    }

    /// ‖v‖_q of the dual norm (plain, for empirical values).
    pub fn dual_norm(self, v: &[f64]) -> f64 {
        match self {
            Norm::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
            Norm::Linf => v.iter().map(|x| x.abs()).sum::<f64>(),
        }
    }
}

/// ‖v‖₂ rounded up from `sum_sq`, a float sum of the n squares vᵢ² in any order: the sum's
/// rounding (γ_n), the square root's, and √n·2⁻⁵¹⁰ for the squares that underflowed (see
/// [`Norm::dual_norm_up`], its ℓ2 case).
pub(crate) fn l2_up(sum_sq: f64, n: usize) -> f64 {
    let tiny = (n as f64).sqrt() * 2f64.powi(-510);
    super::round::widen_up(sum_sq.sqrt() + tiny, super::round::dot_err(n))
}

/// B_p(center, ε) (∩ [0,1]^n when `unit_box`).
#[derive(Debug, Clone)]
pub struct Ball {
    pub center: Vec<f64>,
    pub eps: f64,
    pub norm: Norm,
    pub unit_box: bool,
}

impl Ball {
    /// A ball; ε must be finite and ≥ 0, the centre finite (and in [0,1] when `unit_box`).
    pub fn new(center: Vec<f64>, eps: f64, norm: Norm, unit_box: bool) -> Result<Ball> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::BadInput(format!(
                "ball radius must be finite and ≥ 0, got {eps}"
            )));
        }
        if center.iter().any(|v| !v.is_finite()) {
            return Err(Error::BadInput("ball centre has a non-finite entry".into()));
        }
        if unit_box && center.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::BadInput(
                "ball centre must lie in [0,1] when intersected with the pixel box".into(),
            ));
        }
        Ok(Ball {
            center,
            eps,
            norm,
            unit_box,
        })
    }

    /// The same ball with another radius.
    pub fn with_eps(&self, eps: f64) -> Ball {
        Ball {
            eps,
            ..self.clone()
        }
    }

    /// A box containing the set (rounded outward): [x − ε, x + ε] (∩ [0, 1]).
    pub fn to_box(&self) -> Interval {
        let lo = self.center.iter().map(|c| {
            let l = next_down(c - self.eps);
            if self.unit_box { l.max(0.0) } else { l }
        });
        let hi = self.center.iter().map(|c| {
            let h = next_up(c + self.eps);
            if self.unit_box { h.min(1.0) } else { h }
        });
        Interval {
            lo: lo.collect(),
            hi: hi.collect(),
        }
    }

    /// A lower bound of min aᵀx over the set (rounded down): aᵀx₀ − ε‖a‖_q, and for the box
    /// intersection also the box minimum Σ min(aᵢlᵢ, aᵢuᵢ); the larger of the two.
    pub fn min_linear(&self, a: &[f64]) -> f64 {
        let b = self.unit_box.then(|| self.to_box());
        self.min_linear_in(a, b.as_ref())
    }

    /// [`Ball::min_linear`] with the set's box (`to_box()`, needed only when `unit_box`) computed
    /// once by the caller: many rows are concretised over the same ball.
    #[allow(clippy::needless_range_loop)]
    pub fn min_linear_in(&self, a: &[f64], unit_box: Option<&Interval>) -> f64 {
        let n = a.len();
        let e = super::round::dot_err(n);
        let dot: f64 = a.iter().zip(&self.center).map(|(a, x)| a * x).sum();
        let mag: f64 = a.iter().zip(&self.center).map(|(a, x)| (a * x).abs()).sum();
        let qn = self.norm.dual_norm_up(a);
        let ball = next_down(dot - e * mag - next_up(self.eps * qn) - super::round::ABS_FLOOR);
        let b = match unit_box {
            Some(b) if self.unit_box => b,
            _ => return ball,
        };
        let mut s = 0.0;
        let mut m = 0.0;
        for i in 0..n {
            let v = (a[i] * b.lo[i]).min(a[i] * b.hi[i]);
            s += v;
            m += v.abs();
        }
        let boxed = next_down(s - e * m - super::round::ABS_FLOOR);
        ball.max(boxed)
    }

    /// The nearest-ish point of the set to `y`: the ℓ_p projection onto the ball, then clipping
    /// to [0, 1] (clipping keeps the point in the ball because the centre is in the box).
    pub fn project(&self, y: &mut [f64]) {
        match self.norm {
            Norm::Linf => {
                for (v, c) in y.iter_mut().zip(&self.center) {
                    *v = v.clamp(c - self.eps, c + self.eps);
                }
            }
            Norm::L2 => {
                let d: f64 = y
                    .iter()
                    .zip(&self.center)
                    .map(|(v, c)| (v - c) * (v - c))
                    .sum::<f64>()
                    .sqrt();
                if d > self.eps {
                    // Shrink a hair more than needed so rounding never leaves the ball.
                    let k = self.eps / d * (1.0 - 4.0 * f64::EPSILON);
                    for (v, c) in y.iter_mut().zip(&self.center) {
                        *v = c + (*v - c) * k;
                    }
                }
            }
        }
        if self.unit_box {
            for v in y.iter_mut() {
                *v = v.clamp(0.0, 1.0);
            }
        }
    }

    /// True when `y` lies in the set.
    pub fn contains(&self, y: &[f64]) -> bool {
        let d: Vec<f64> = y.iter().zip(&self.center).map(|(a, b)| a - b).collect();
        self.norm.norm(&d) <= self.eps
            && (!self.unit_box || y.iter().all(|v| (0.0..=1.0).contains(v)))
    }
}
