//! Thresholds and clip range from in-distribution (and auxiliary) validation data:
//! γ for the base detector (TPR 95% of clean or of noisy ID validation scores), the clip range
//! [a, b] from quantiles of noisy validation scores, and γ' for the smoothed clipped score from the
//! *point estimates* ĝ(x) of ID validation samples (TPR 95%). γ' is a fixed number once chosen:
//! the certificates then hold for the detector "ĝ ≤ γ'", however γ' was picked.

use super::clip::{ClipRange, order_quantile};
use super::engine::{BatchScorer, clean_scores, noisy_scores};
use super::mean_bounds::compensated_sum;
use super::noise::{NoiseKey, NoiseLayout};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::metrics::threshold_at_tpr;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

/// Which ID validation scores set γ of the base detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GammaSource {
    /// Clean scores S(x): the base detector as deployed without noise.
    Clean,
    /// Pooled noisy scores S(x+δ): the base detector as the smoothing uses it.
    Noisy,
}

/// How to calibrate; any `Some` override skips that estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSpec {
    /// Noisy copies per validation sample.
    pub n_cal: u64,
    /// TPR level of every threshold (0.95).
    pub tpr: f64,
    /// Quantile levels (q_a, q_b) for a (ID noisy scores) and b (aux noisy scores, else ID).
    pub clip_quantiles: (f64, f64),
    /// Source of γ.
    pub gamma_source: GammaSource,
    /// Fixed γ.
    pub gamma: Option<f64>,
    /// Fixed [a, b].
    pub clip: Option<ClipRange>,
    /// Fixed γ'.
    pub gamma_smoothed: Option<f64>,
    /// Noise layout of the validation copies.
    pub noise: NoiseLayout,
}

/// The calibrated thresholds, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// γ used by CERTIFY/PREDICT.
    pub gamma: f64,
    /// How γ was set: "given", "clean" or "noisy".
    pub gamma_rule: String,
    /// γ at TPR on clean ID validation scores (when computed).
    pub gamma_clean: Option<f64>,
    /// γ at TPR on pooled noisy ID validation scores (when computed).
    pub gamma_noisy: Option<f64>,
    /// Clip range.
    pub clip: ClipRange,
    /// How [a, b] was set.
    pub clip_rule: String,
    /// γ' of the smoothed clipped score.
    pub gamma_smoothed: f64,
    /// How γ' was set.
    pub gamma_smoothed_rule: String,
    /// t = (γ' - a)/(b - a).
    pub t: f64,
    /// Share of ID validation point estimates accepted by γ' (when computed).
    pub smoothed_tpr: Option<f64>,
}

/// Noisy scores of the first copies of every validation sample, with its own noise key
/// (`calibration/` + dataset name), so validation and test noise never coincide.
#[allow(clippy::too_many_arguments)]
fn pooled_noisy(
    scorer: &dyn BatchScorer,
    ds: &Dataset,
    sigma: f64,
    n_cal: u64,
    seed: u64,
    layout: NoiseLayout,
    batch: usize,
    progress: &ProgressBar,
) -> Result<Vec<Vec<f64>>> {
    let key = NoiseKey::with_layout(seed, &format!("calibration/{}", ds.name), layout);
    let mut out = Vec::with_capacity(ds.len());
    for i in 0..ds.len() {
        let mut s = Vec::with_capacity(n_cal as usize);
        noisy_scores(
            scorer,
            &key,
            i as u64,
            ds.image(i),
            sigma,
            0..n_cal,
            batch,
            progress,
            |b| {
                s.extend_from_slice(b);
                Ok(())
            },
        )?;
        out.push(s);
    }
    Ok(out)
}

/// Calibrates γ, [a, b] and γ' (see the module doc); `id_val` is needed unless all are given.
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    scorer: &dyn BatchScorer,
    spec: &CalibrationSpec,
    id_val: Option<&Dataset>,
    aux_val: Option<&Dataset>,
    sigma: f64,
    seed: u64,
    batch: usize,
    progress: &ProgressBar,
) -> Result<Calibration> {
    let need_val = spec.gamma.is_none() || spec.clip.is_none() || spec.gamma_smoothed.is_none();
    let id_val = match (need_val, id_val) {
        (false, _) => None,
        (true, Some(d)) => Some(d),
        (true, None) => {
            return Err(Error::BadInput(
                "calibration needs ID validation data (--id-val) unless --gamma, --clip and --gamma-smoothed are all given".into(),
            ));
        }
    };
    if spec.n_cal == 0 && need_val {
        return Err(Error::BadInput("--cal-n must be at least 1".into()));
    }
    let (mut gamma_clean, mut gamma_noisy, mut noisy) = (None, None, Vec::new());
    if let Some(ds) = id_val {
        let mut clean = Vec::with_capacity(ds.len());
        for start in (0..ds.len()).step_by(batch.max(1)) {
            let end = (start + batch).min(ds.len());
            let d = ds.dim();
            clean.extend(clean_scores(
                scorer,
                &ds.images[start * d..end * d],
                end - start,
            )?);
        }
        gamma_clean = Some(threshold_at_tpr(&clean, spec.tpr)?);
        noisy = pooled_noisy(
            scorer, ds, sigma, spec.n_cal, seed, spec.noise, batch, progress,
        )?;
        let pooled: Vec<f64> = noisy.iter().flatten().copied().collect();
        gamma_noisy = Some(threshold_at_tpr(&pooled, spec.tpr)?);
    }
    let (gamma, gamma_rule) = match (spec.gamma, spec.gamma_source, gamma_clean, gamma_noisy) {
        (Some(g), _, _, _) => (g, "given".to_string()),
        (None, GammaSource::Clean, Some(g), _) => {
            (g, format!("clean ID validation scores, TPR {}", spec.tpr))
        }
        (None, GammaSource::Noisy, _, Some(g)) => {
            (g, format!("noisy ID validation scores, TPR {}", spec.tpr))
        }
        _ => return Err(Error::Internal("gamma was not calibrated".into())),
    };
    if !gamma.is_finite() {
        return Err(Error::BadInput(format!(
            "--gamma must be finite, got {gamma}"
        )));
    }
    let (clip, clip_rule) = match spec.clip {
        Some(c) => (c, "given".to_string()),
        None => {
            let (qa, qb) = spec.clip_quantiles;
            let pooled: Vec<f64> = noisy.iter().flatten().copied().collect();
            let a = order_quantile(&pooled, qa)?;
            let (b, src) = match aux_val {
                Some(aux) => {
                    let aux_noisy = pooled_noisy(
                        scorer, aux, sigma, spec.n_cal, seed, spec.noise, batch, progress,
                    )?;
                    let p: Vec<f64> = aux_noisy.into_iter().flatten().collect();
                    (order_quantile(&p, qb)?, format!("aux {}", aux.name))
                }
                None => (order_quantile(&pooled, qb)?, "ID".to_string()),
            };
            let c = ClipRange::new(a, b).map_err(|_| {
                Error::BadInput(format!(
                    "calibrated clip range is empty (a = {a}, b = {b}); choose other --clip-quantiles or give --clip"
                ))
            })?;
            (
                c,
                format!(
                    "a = {qa}-quantile of noisy ID validation scores, b = {qb}-quantile of noisy {src} validation scores"
                ),
            )
        }
    };
    let (gamma_smoothed, rule, smoothed_tpr) = match spec.gamma_smoothed {
        Some(g) => (g, "given".to_string(), None),
        None => {
            let g_hat: Vec<f64> = noisy
                .iter()
                .map(|s| {
                    clip.from_unit(
                        compensated_sum(s.iter().map(|&v| clip.to_unit(v))) / s.len() as f64,
                    )
                })
                .collect();
            let g = threshold_at_tpr(&g_hat, spec.tpr)?;
            let acc = g_hat.iter().filter(|&&v| v <= g).count() as f64 / g_hat.len() as f64;
            (
                g,
                format!(
                    "point estimates of the smoothed clipped score on ID validation data, TPR {}",
                    spec.tpr
                ),
                Some(acc),
            )
        }
    };
    let t = clip.unit_threshold(gamma_smoothed)?;
    Ok(Calibration {
        gamma,
        gamma_rule,
        gamma_clean,
        gamma_noisy,
        clip,
        clip_rule,
        gamma_smoothed,
        gamma_smoothed_rule: rule,
        t,
        smoothed_tpr,
    })
}
