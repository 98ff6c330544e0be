//! The float32 detector users run (`oodcert eval`: candle's f32 forward, then `score.rs`) against
//! the exact network: E(set) ≥ |S₃₂(x') − S(x')| for every float32 input x' of a set
//! (proofs/f32_detector.md), from [`super::f32_forward`] and [`super::f32_energy`].

use super::f32_energy::score_error;
use super::f32_forward::{F32Plan, backward_error, f32_walk_within};
use super::ibp::Trace;
use super::interval::Interval;
use super::net::Net;
use super::round::{next_down, next_up};
use super::softmax::softmax_box;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::score::ScoreKind;
use candle_core::DType;
use std::path::Path;

/// The deployed detector's arithmetic: the scored network (all K+1 outputs for DOS's
/// absent-class score), its f32 rules, the score and its temperature.
#[derive(Debug, Clone)]
pub struct F32Detector {
    pub net: Net,
    pub plan: F32Plan,
    pub kind: ScoreKind,
    pub temperature: f64,
}

impl F32Detector {
    /// From the model the score is computed from (for an absent-class model: its first K logits
    /// for the energy, all K+1 for [`ScoreKind::AbsentClass`]).
    pub fn new(model: &Model, kind: ScoreKind, temperature: f64) -> Result<F32Detector> {
        use crate::model::Classifier;
        let model = model.to_dtype(DType::F64)?;
        // The energy of an absent-class model reads its first K logits (exact narrowing).
        let model = if kind == ScoreKind::Energy && model.has_absent_class() {
            model.id_logits_view()?
        } else {
            model
        };
        let net = Net::from_model(&model)?;
        let plan = F32Plan::new(&model, &net)?;
        Ok(F32Detector {
            net,
            plan,
            kind,
            temperature,
        })
    }

    /// The detector of a model file as `oodcert eval --score KIND` runs it.
    pub fn load(path: &Path, kind: ScoreKind, temperature: f64) -> Result<F32Detector> {
        let dev = candle_core::Device::Cpu;
        let model = match kind {
            ScoreKind::AbsentClass => Model::load_full(path, &dev)?,
            ScoreKind::Energy => Model::load(path, &dev)?,
            other => {
                return Err(Error::BadInput(format!(
                    "no float32 error bound for score `{}`",
                    other.name()
                )));
            }
        };
        F32Detector::new(&model, kind, temperature)
    }

    /// A bound on |S₃₂(x') − S(x')| over every float32 x' in `input` (exact values): +∞ when
    /// the f32 pass might overflow; a NaN anywhere is an error (exit 2), never a number.
    /// The smaller of two sound bounds: the forward one (logit errors through the score's
    /// ℓ∞-Lipschitz dependence) and the backward refinement (the score's own rounding on the
    /// widened logit box plus Σ_j ⟨max|G_j|, ρ_j⟩, proofs/f32_detector.md §2.3).
    pub fn error(&self, input: &Interval) -> Result<f64> {
        self.error_within(input, None)
    }

    /// [`Self::error`] over the float32 points of `input` that also lie in the set `tight` is a
    /// pre-activation trace of (e.g. CROWN's trace of an ℓ2 ball, whose boxes are much tighter
    /// than IBP's on the ball's bounding cube).
    pub fn error_within(&self, input: &Interval, tight: Option<&[Trace]>) -> Result<f64> {
        let w = f32_walk_within(&self.net, &self.plan, input, tight)?;
        let t = self.temperature;
        let forward = score_error(&w.logits, &w.err, self.kind, t)?;
        if w.err.iter().any(|e| e.is_infinite()) {
            return Ok(forward);
        }
        let zw = Interval {
            lo: w
                .logits
                .lo
                .iter()
                .zip(&w.err)
                .map(|(l, e)| next_down(l - e))
                .collect(),
            hi: w
                .logits
                .hi
                .iter()
                .zip(&w.err)
                .map(|(h, e)| next_up(h + e))
                .collect(),
        };
        let k = match self.kind {
            ScoreKind::AbsentClass => zw.len() - 1,
            _ => zw.len(),
        };
        let head = Interval {
            lo: zw.lo[..k].to_vec(),
            hi: zw.hi[..k].to_vec(),
        };
        // ∇_z S = −softmax(z/T) (and +1 for the absent logit of DOS's log-odds).
        let p = softmax_box(&head, t);
        let mut g = Interval {
            lo: p.hi.iter().map(|v| -v).collect(),
            hi: p.lo.iter().map(|v| -v).collect(),
        };
        if k < zw.len() {
            g.lo.push(1.0);
            g.hi.push(1.0);
        }
        let eval = score_error(&zw, &vec![0.0; zw.len()], self.kind, t)?;
        let backward = next_up(eval + backward_error(&self.net, &w, g)?);
        if backward.is_nan() {
            return Err(Error::CheckFailed("f32 error bound is NaN".into()));
        }
        Ok(forward.min(backward))
    }

    /// [`Self::error`] at one point.
    pub fn error_at(&self, x: &[f64]) -> Result<f64> {
        self.error(&Interval::point(x))
    }
}
