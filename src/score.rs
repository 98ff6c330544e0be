//! Detector scores from logits, all oriented so that larger = more OOD, and their input gradients.
//!
//! Energy (Liu et al. 2020): S(x) = -T·logsumexp(f(x)/T). MSP (Hendrycks & Gimpel 2017) and max-logit
//! (Hendrycks et al. 2022) are negated so every score here follows the energy's orientation.

use crate::error::{Error, Result};
use crate::model::Classifier;
use candle_core::{D, DType, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Which detector score to compute; every variant is "larger = more OOD".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// S = -T·logsumexp(z/T).
    Energy,
    /// -max_k softmax(z)_k.
    Msp,
    /// -max_k z_k.
    Maxlogit,
    /// DOS's absent-class score (Jiang et al., ICLR 2024) of a (K+1)-output model, as log-odds:
    /// z_K − T·logsumexp(z_{<K}/T) = T·logit(softmax(z/T)_K), strictly increasing in the
    /// absent-class probability p_K that DOS thresholds (at T = 1 exactly log p_K/(1 − p_K)).
    AbsentClass,
}

impl ScoreKind {
    /// Lower-case name as used on the command line and in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Energy => "energy",
            ScoreKind::Msp => "msp",
            ScoreKind::Maxlogit => "maxlogit",
            ScoreKind::AbsentClass => "absent-class",
        }
    }

    /// The kind [`Self::name`] names (as recorded in manifests), if any.
    pub fn from_name(name: &str) -> Option<ScoreKind> {
        [Self::Energy, Self::Msp, Self::Maxlogit, Self::AbsentClass]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// The side of γ the detector puts a score on: OOD when S > γ, ID when S ≤ γ. The one side
/// rule of every tool (lipschitz, certify, verify).
pub fn is_ood(score: f64, gamma: f64) -> bool {
    score > gamma
}

/// Checks a temperature: finite and > 0.
pub fn check_temperature(t: f64) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "temperature must be finite and > 0, got {t}"
        )))
    }
}

/// Energy S = -T·logsumexp(z/T) of logits `(n, K)`, as `(n,)`; differentiable (second order too).
pub fn energy(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    check_temperature(temperature)?;
    if temperature == 1.0 {
        return Ok(logits.log_sum_exp(D::Minus1)?.neg()?);
    }
    Ok((logits
        .affine(1.0 / temperature, 0.0)?
        .log_sum_exp(D::Minus1)?
        * (-temperature))?)
}

/// The chosen score of logits `(n, K)`, as `(n,)`, larger = more OOD. For
/// [`ScoreKind::AbsentClass`] the logits are `(n, K+1)` with the absent class last.
pub fn score(logits: &Tensor, kind: ScoreKind, temperature: f64) -> Result<Tensor> {
    match kind {
        ScoreKind::Energy => energy(logits, temperature),
        ScoreKind::Msp => Ok(candle_nn::ops::softmax(logits, D::Minus1)?
            .max(D::Minus1)?
            .neg()?),
        ScoreKind::Maxlogit => Ok(logits.max(D::Minus1)?.neg()?),
        ScoreKind::AbsentClass => absent_class_log_odds(logits, temperature),
    }
}

/// z_K + S_T(z_{<K}) = z_K − T·logsumexp(z_{<K}/T) of logits `(n, K+1)` (absent class last):
/// T times the log-odds of softmax(z/T)_K, DOS's absent-class probability.
pub fn absent_class_log_odds(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    let k1 = logits.dim(D::Minus1)?;
    if k1 < 3 {
        return Err(Error::BadInput(format!(
            "the absent-class score needs K + 1 ≥ 3 logits (absent class last), got {k1}"
        )));
    }
    let z_abs = logits.narrow(1, k1 - 1, 1)?.squeeze(1)?;
    Ok((z_abs + energy(&logits.narrow(1, 0, k1 - 1)?, temperature)?)?)
}

/// The logits `kind` is computed from: for an absent-class model, all K+1 for
/// [`ScoreKind::AbsentClass`] and the K in-distribution ones otherwise; an error for
/// `AbsentClass` on a model without an absent class.
pub fn scored_logits(model: &dyn Classifier, logits: Tensor, kind: ScoreKind) -> Result<Tensor> {
    match (kind, model.has_absent_class()) {
        (ScoreKind::AbsentClass, true) => Ok(logits),
        (ScoreKind::AbsentClass, false) => Err(Error::BadInput(
            "score `absent-class` needs the absent-class output of a DOS model \
             (`model.absent_class = true`); this model has none (tools other than \
             `oodcert eval` read an absent-class model file as its K in-distribution logits)"
                .into(),
        )),
        (_, has) => crate::model::absent_class::id_logits(&logits, has),
    }
}

/// Scores of a batch `(n,c,h,w)` in evaluation mode, as f64 on the host.
///
/// Errors (never silently continues) when a logit is NaN or infinite.
pub fn score_batch(
    model: &dyn Classifier,
    x: &Tensor,
    kind: ScoreKind,
    temperature: f64,
) -> Result<Vec<f64>> {
    score_logits(model, model.logits_no_grad(x)?, kind, temperature)
}

/// The scores of a batch of `model`'s logits `(n, K)` (what [`score_batch`] does after the
/// forward pass).
pub fn score_logits(
    model: &dyn Classifier,
    logits: Tensor,
    kind: ScoreKind,
    temperature: f64,
) -> Result<Vec<f64>> {
    check_finite_logits(&logits)?;
    let logits = scored_logits(model, logits, kind)?;
    to_f64_vec(&score(&logits, kind, temperature)?)
}

/// Scores `(n,)` and input gradients ∇ₓscore `(n,c,h,w)` of a batch, in evaluation mode.
///
/// Samples are independent in eval mode, so ∇ of Σᵢ score(xᵢ) w.r.t. x gives every per-sample gradient
/// in one backward pass. The returned gradient is detached.
pub fn score_and_input_grad(
    model: &dyn Classifier,
    x: &Tensor,
    kind: ScoreKind,
    temperature: f64,
) -> Result<(Tensor, Tensor)> {
    let xv = Var::from_tensor(&x.detach())?;
    let logits = model.logits(xv.as_tensor())?;
    check_finite_logits(&logits)?;
    let logits = scored_logits(model, logits, kind)?;
    let s = score(&logits, kind, temperature)?;
    let grads = s.sum_all()?.backward()?;
    let g = grads
        .get(xv.as_tensor())
        .ok_or_else(|| Error::Internal("score does not depend on the input".into()))?
        .detach();
    Ok((s.detach(), g))
}

/// Per-sample ℓ_q norms of a batch of gradients `(n, …)`; q = 2, 1 or ∞ (`f64::INFINITY`).
pub fn per_sample_norm(g: &Tensor, q: f64) -> Result<Vec<f64>> {
    let n = g.dim(0)?;
    let flat = g.to_dtype(DType::F64)?.reshape((n, ()))?;
    let v = if q == 2.0 {
        flat.sqr()?.sum(1)?.sqrt()?
    } else if q == 1.0 {
        flat.abs()?.sum(1)?
    } else if q.is_infinite() {
        flat.abs()?.max(1)?
    } else {
        return Err(Error::BadInput(format!(
            "unsupported dual norm q = {q} (use 1, 2 or inf)"
        )));
    };
    Ok(v.to_vec1::<f64>()?)
}

/// Errors with the offending sample when any logit is NaN or ±∞: the model file cannot score
/// that input, which is bad input (exit 2), not a failed certificate.
pub fn check_finite_logits(logits: &Tensor) -> Result<()> {
    let v = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    for (i, row) in v.iter().enumerate() {
        if let Some(k) = row.iter().position(|z| !z.is_finite()) {
            return Err(Error::BadInput(format!(
                "model produced a non-finite logit ({}) for sample {i} of the batch, class {k}: the model cannot score this input (check its weights and normalisation)",
                row[k]
            )));
        }
    }
    Ok(())
}

fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Energy of one logit vector in f64 on the host: -T·logsumexp(z/T), computed stably.
pub fn energy_f64(logits: &[f64], temperature: f64) -> f64 {
    let m = logits
        .iter()
        .map(|z| z / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = logits.iter().map(|z| (z / temperature - m).exp()).sum();
    -temperature * (m + s.ln())
}

/// softmax(z/T) of one row of logits in f64 (∇_z S = −softmax(z/T)).
pub fn softmax_f64(logits: &[f64], temperature: f64) -> Vec<f64> {
    let m = logits.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = logits
        .iter()
        .map(|v| ((v - m) / temperature).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn score_names_round_trip() {
        for k in [
            ScoreKind::Energy,
            ScoreKind::Msp,
            ScoreKind::Maxlogit,
            ScoreKind::AbsentClass,
        ] {
            assert_eq!(ScoreKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ScoreKind::from_name("Energy"), None);
    }

    fn logits() -> Tensor {
        Tensor::new(
            &[[1.0f64, 2.0, 3.0], [-5.0, 0.0, 10.0], [0.0, 0.0, 0.0]],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn energy_matches_host_formula_at_several_temperatures() {
        let z = logits();
        let rows = z.to_vec2::<f64>().unwrap();
        for t in [0.5, 1.0, 2.0, 1000.0] {
            let e = energy(&z, t).unwrap().to_vec1::<f64>().unwrap();
            for (r, got) in rows.iter().zip(&e) {
                let want = energy_f64(r, t);
                assert!((got - want).abs() < 1e-12, "T={t}: {got} vs {want}");
            }
        }
        // Three equal logits: S = -log 3 at T = 1.
        let e = energy(&z, 1.0).unwrap().to_vec1::<f64>().unwrap();
        assert!((e[2] + 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn msp_and_maxlogit_are_negated_maxima() {
        let z = logits();
        let msp = score(&z, ScoreKind::Msp, 1.0)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let ml = score(&z, ScoreKind::Maxlogit, 1.0)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(ml, vec![-3.0, -10.0, 0.0]);
        assert!((msp[2] + 1.0 / 3.0).abs() < 1e-12);
        let p0 = 3f64.exp() / (1f64.exp() + 2f64.exp() + 3f64.exp());
        assert!((msp[0] + p0).abs() < 1e-12);
    }

    #[test]
    fn energy_is_stable_for_huge_logits() {
        let z = Tensor::new(&[[1e4f32, 0.0], [-1e4, -1e4]], &Device::Cpu).unwrap();
        let e = energy(&z, 1.0).unwrap().to_vec1::<f32>().unwrap();
        assert!((e[0] + 1e4).abs() < 1e-2, "{e:?}");
        assert!((e[1] - (1e4 - 2f32.ln())).abs() < 1e-1, "{e:?}");
    }

    #[test]
    fn bad_temperature_is_an_error() {
        assert!(energy(&logits(), 0.0).is_err());
        assert!(energy(&logits(), f64::NAN).is_err());
    }

    #[test]
    fn nan_logits_are_reported() {
        let z = Tensor::new(&[[1.0f32, f32::NAN]], &Device::Cpu).unwrap();
        let err = check_finite_logits(&z).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = err.to_string();
        assert!(err.contains("sample 0") && err.contains("class 1"), "{err}");
    }

    #[test]
    fn input_gradient_of_a_linear_model_is_minus_w_transpose_p() {
        use crate::model::{Arch, Model, ModelSpec};
        // Normalise → Flatten → Linear: z = W (x − μ)/σ + b, so ∇ₓS = −Wᵀp / σ (theory.md §1).
        let spec = ModelSpec {
            arch: Arch::Mlp { hidden: vec![] },
            input_shape: [1, 2, 3],
            num_classes: 4,
            mean: vec![0.25],
            std: vec![0.5],
        };
        let model = Model::init(spec, &Device::Cpu, DType::F64, 42).unwrap();
        let w = model.classifier().weight().to_vec2::<f64>().unwrap();
        let x = Tensor::new(
            &[
                [[[0.1f64, 0.9, 0.3], [0.7, 0.2, 0.5]]],
                [[[1.0, 0.0, 0.4], [0.6, 0.8, 0.05]]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        for t in [1.0, 3.0] {
            let (s, g) = score_and_input_grad(&model, &x, ScoreKind::Energy, t).unwrap();
            let logits = model.logits(&x).unwrap().to_vec2::<f64>().unwrap();
            let g = g.flatten_from(1).unwrap().to_vec2::<f64>().unwrap();
            let s = s.to_vec1::<f64>().unwrap();
            for i in 0..2 {
                assert!((s[i] - energy_f64(&logits[i], t)).abs() < 1e-12);
                let m = logits[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits[i].iter().map(|z| ((z - m) / t).exp()).collect();
                let sum: f64 = e.iter().sum();
                for j in 0..6 {
                    let want: f64 = -(0..4).map(|k| w[k][j] * e[k] / sum).sum::<f64>() / 0.5;
                    assert!(
                        (g[i][j] - want).abs() < 1e-12,
                        "T={t} sample {i} pixel {j}: {} vs {want}",
                        g[i][j]
                    );
                }
            }
        }
    }

    #[test]
    fn absent_class_score_is_the_log_odds_of_the_last_softmax_entry() {
        let z = Tensor::new(
            &[[1.0f64, 2.0, 0.5], [-3.0, 0.0, 4.0], [0.0, 0.0, 60.0]],
            &Device::Cpu,
        )
        .unwrap();
        let s = score(&z, ScoreKind::AbsentClass, 1.0)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for (row, got) in z.to_vec2::<f64>().unwrap().iter().zip(&s) {
            // log p_K/(1 − p_K) = z_K − log Σ_{k<K} e^{z_k}.
            let want = row[2] - (row[0].exp() + row[1].exp()).ln();
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // p_K rounds to 1 in f64 for the last row; the log-odds stay finite and ordered.
        assert!(s[2].is_finite() && s[2] > s[1] && s[1] > s[0]);
        // T scales the log-odds of the tempered softmax: z_K − T·logsumexp(z_{<K}/T).
        let s2 = score(&z, ScoreKind::AbsentClass, 2.0)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!((s2[0] - (0.5 - 2.0 * ((0.5f64).exp() + 1f64.exp()).ln())).abs() < 1e-12);
        let two = Tensor::new(&[[1.0f64, 2.0]], &Device::Cpu).unwrap();
        assert!(score(&two, ScoreKind::AbsentClass, 1.0).is_err());
    }

    #[test]
    fn norms() {
        let g = Tensor::new(&[[3.0f64, -4.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        assert_eq!(per_sample_norm(&g, 2.0).unwrap(), vec![5.0, 2f64.sqrt()]);
        assert_eq!(per_sample_norm(&g, 1.0).unwrap(), vec![7.0, 2.0]);
        assert_eq!(per_sample_norm(&g, f64::INFINITY).unwrap(), vec![4.0, 1.0]);
        assert!(per_sample_norm(&g, 3.0).is_err());
    }
}
