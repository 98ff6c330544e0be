//! Verifying a `oodcert certify` run: inside each certified ℓ2 radius, PGD on the base energy
//! pushes toward the other decision, then fresh Monte Carlo (new noise) at the attacked point
//! tests whether the smoothed detector (or the smoothed clipped score) confidently disagrees with
//! the certificate. Each certificate holds with probability ≥ 1-α and each fresh test errs with
//! probability ≤ α, so violations are tolerated up to a binomial budget at rate 2α.

use super::attack::{AttackConfig, attack_towards_threshold};
use super::{VerifyRow, VerifySummary, summarise};
use crate::bounds::{Ball, Norm};
use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use crate::lipschitz::empirical::GradOracle;
use crate::model::{Classifier, Model};
use crate::score::{ScoreKind, score_batch};
use crate::smoothing::binomial::clopper_pearson_lower;
use crate::smoothing::manifest::CertifyManifest;
use crate::smoothing::mean_bounds::{hoeffding_lower, hoeffding_upper};
use crate::smoothing::noise::NoiseKey;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Salt that keeps the verification noise independent of the certification noise.
const VERIFY_SALT: u64 = 0x7665_7269_6679_0001;

/// Noisy samples per escalation test: the empirical radius is a point estimate (majority of the
/// base decisions, or the mean clipped score, at the attacked point), not a certificate check.
const ESCALATION_SAMPLES: u64 = 200;

/// Radii (multiples of the certified one) tried for the empirical radius of a smoothing
/// certificate, with a lighter attack than the check inside the radius: one start, 10 steps.
const SMOOTHING_ESCALATION: [f64; 3] = [2.0, 4.0, 8.0];

/// The smallest k with P(Bin(n, p) > k) ≤ `tail`: violations beyond k are evidence of an unsound
/// certificate rather than the α chance the certificates and the fresh tests allow.
pub fn binomial_budget(n: usize, p: f64, tail: f64) -> usize {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    let p = p.min(1.0);
    // Sum the pmf by the recurrence P(k+1) = P(k)·(n-k)/(k+1)·p/(1-p), in log space for k = 0.
    let mut pmf = ((n as f64) * (1.0 - p).ln()).exp();
    let mut cdf = pmf;
    let mut k = 0;
    while 1.0 - cdf > tail && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
        cdf += pmf;
        k += 1;
    }
    k
}

/// The smallest radius m·r, m in [`SMOOTHING_ESCALATION`], at which `crosses` says an attack
/// changed the smoothed decision; NaN when none did.
fn escalate(r: f64, crosses: &dyn Fn(f64) -> Result<bool>) -> Result<f64> {
    for m in SMOOTHING_ESCALATION {
        if crosses(m * r)? {
            return Ok(m * r);
        }
    }
    Ok(f64::NAN)
}

/// Attacks every certificate of the certify run in `dir` (first `limit` certified rows, 0 = all).
pub fn verify_certify_run(
    dir: &Path,
    model_path: &Path,
    data_root: &Path,
    cfg: &AttackConfig,
    n_fresh: u64,
    limit: usize,
) -> Result<(Vec<VerifyRow>, VerifySummary)> {
    let mpath = dir.join("manifest.json");
    let man = CertifyManifest::read(&mpath)?;
    if crate::evidence::sha256_file(model_path)? != man.model_sha256 {
        return Err(Error::BadInput(format!(
            "{} is not the model this run certified (SHA-256 differs from the manifest); pass the right --model",
            model_path.display()
        )));
    }
    let c = &man.config;
    let kind = ScoreKind::from_name(&c.score)
        .ok_or_else(|| Error::bad_file(&mpath, format!("unknown score `{}`", c.score)))?;
    if !matches!(kind, ScoreKind::Energy | ScoreKind::AbsentClass) {
        return Err(Error::BadInput(
            "verify attacks the energy score (or DOS's absent-class score, as the energy of its \
             K-output view); this run certified another score"
                .into(),
        ));
    }
    let model32 = Model::load_energy_of(model_path, &Device::Cpu, kind, "score")?;
    // From here on the score is the loaded model's energy.
    let kind = ScoreKind::Energy;
    let model = model32.to_dtype(DType::F64)?;
    let shape = model.spec().input_shape;
    let mut sets = HashMap::new();
    for d in man
        .datasets
        .iter()
        .filter(|d| d.role == "id" || d.role == "ood")
    {
        let spec = d.name.split('|').next().unwrap_or(&d.name);
        let ds = crate::data::load_as(spec, data_root, shape)?;
        if ds.sha256 != d.sha256 {
            return Err(Error::BadInput(format!(
                "dataset {} differs from the one certified (SHA-256); re-fetch the data",
                d.name
            )));
        }
        sets.insert(d.name.clone(), ds);
    }
    let oracle = GradOracle::new(&model, c.temperature, 64);
    let cal = &man.calibration;
    let gamma = cal.gamma;
    let [ch, h, w] = shape;
    let dim = ch * h * w;
    // Fresh Monte Carlo at a point: the clean-free base decisions and clipped unit scores.
    let fresh = |x: &[f64], dataset: &str, index: u64, n_fresh: u64| -> Result<(u64, Vec<f64>)> {
        let key = NoiseKey::new(c.seed ^ VERIFY_SALT, &format!("verify/{dataset}"));
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut id_hits = 0;
        let mut units = Vec::with_capacity(n_fresh as usize);
        let chunk = 500u64;
        let mut start = 0;
        while start < n_fresh {
            let m = chunk.min(n_fresh - start);
            let mut buf = vec![0f32; m as usize * dim];
            for j in 0..m {
                let out = &mut buf[j as usize * dim..(j as usize + 1) * dim];
                key.add_noise(index, start + j, c.sigma, &x32, out);
            }
            let t = Tensor::from_vec(buf, (m as usize, ch, h, w), &Device::Cpu)?;
            for s in score_batch(&model32, &t, kind, c.temperature)? {
                id_hits += u64::from(s <= gamma);
                units.push(cal.clip.to_unit(s));
            }
            start += m;
        }
        Ok((id_hits, units))
    };
    let t = CsvTable::read(&dir.join("certify.csv"))?;
    let (cidx, cds, cid, cp, cr, crs) = (
        t.col("idx")?,
        t.col("dataset")?,
        t.col("is_id")?,
        t.col("predict")?,
        t.col("radius")?,
        t.col("radius_score")?,
    );
    let mut rows = vec![];
    let mut certified = 0;
    for line in 0..t.rows.len() {
        let (predict, radius, radius_score) =
            (t.num(line, cp)?, t.num(line, cr)?, t.num(line, crs)?);
        // ≤ 0 (−1 by convention) or NaN: not certified; +∞ would be no radius to attack in.
        if radius == f64::INFINITY || radius_score == f64::INFINITY {
            return Err(Error::bad_file(
                &t.path,
                format!("row {}: an infinite certified radius", line + 2),
            ));
        }
        let detector_certified = radius > 0.0 && predict >= 0.0;
        let score_certified = radius_score > 0.0;
        if !detector_certified && !score_certified {
            continue;
        }
        certified += 1;
        if limit > 0 && certified > limit {
            break;
        }
        let dataset = t.cell(line, cds).to_string();
        let ds = sets.get(&dataset).ok_or_else(|| {
            Error::bad_file(
                &t.path,
                format!("row {}: unknown dataset {dataset}", line + 2),
            )
        })?;
        let index = t.index(line, cidx)?;
        if index as usize >= ds.len() {
            return Err(Error::bad_file(
                &t.path,
                format!("row {}: index {index} out of range", line + 2),
            ));
        }
        let is_id = t.flag(line, cid)?;
        let center: Vec<f64> = ds.image(index as usize).iter().map(|&v| v as f64).collect();
        let mut attack_cfg = *cfg;
        attack_cfg.seed = cfg.seed ^ index;
        let light = AttackConfig {
            steps: cfg.steps.min(10),
            restarts: 1,
            step_frac: 2.5 / cfg.steps.clamp(1, 10) as f64,
            seed: attack_cfg.seed,
        };
        // PGD on the base score toward the other decision inside radius r, then `n` fresh noisy
        // samples at the attacked point: (best score, ID decisions, clipped unit scores).
        let probe = |r: f64, id_side: bool, attack: &AttackConfig, n: u64| {
            let ball = Ball::new(center.clone(), r, Norm::L2, false)?;
            let (best, x) = attack_towards_threshold(&oracle, &ball, id_side, attack)?;
            let (id_hits, units) = fresh(&x, &dataset, index, n)?;
            Ok::<_, Error>((best, id_hits, units))
        };
        if detector_certified {
            // Detector certificate: g(x') = predict on the ball. Push the base score the other way.
            let says_id = predict == 1.0;
            let (best, id_hits, _) = probe(radius, says_id, &attack_cfg, n_fresh)?;
            let opposite = if says_id { n_fresh - id_hits } else { id_hits };
            let violated = clopper_pearson_lower(opposite, n_fresh, c.alpha)? > 0.5;
            // The empirical radius: the smallest multiple of the radius where an attack flips the
            // majority of fresh base decisions.
            let attack_radius = if violated {
                radius
            } else {
                escalate(radius, &|r| {
                    let (_, id_hits, _) = probe(r, says_id, &light, ESCALATION_SAMPLES)?;
                    let opposite = if says_id {
                        ESCALATION_SAMPLES - id_hits
                    } else {
                        id_hits
                    };
                    Ok(2 * opposite > ESCALATION_SAMPLES)
                })?
            };
            rows.push(VerifyRow {
                dataset: dataset.clone(),
                index,
                is_id,
                certificate: "smoothing_detector",
                certified_radius: radius,
                attack_radius,
                best_score: best,
                threshold: gamma,
                violated,
            });
        }
        if score_certified {
            // Score certificate: h(x') < t for ID samples, > t for OOD samples, on the ball.
            let (best, _, units) = probe(radius_score, is_id, &attack_cfg, n_fresh)?;
            let violated = if is_id {
                hoeffding_lower(&units, c.alpha)? > cal.t
            } else {
                hoeffding_upper(&units, c.alpha)? < cal.t
            };
            // The empirical radius: the smallest multiple where the mean clipped score of fresh
            // samples at the attacked point is on the other side of t.
            let attack_radius = if violated {
                radius_score
            } else {
                escalate(radius_score, &|r| {
                    let (_, _, units) = probe(r, is_id, &light, ESCALATION_SAMPLES)?;
                    let mean = units.iter().sum::<f64>() / units.len().max(1) as f64;
                    Ok(if is_id { mean > cal.t } else { mean < cal.t })
                })?
            };
            rows.push(VerifyRow {
                dataset,
                index,
                is_id,
                certificate: "smoothing_score",
                certified_radius: radius_score,
                attack_radius,
                best_score: best,
                threshold: cal.gamma_smoothed,
                violated,
            });
        }
    }
    let allowed = binomial_budget(rows.len(), 2.0 * c.alpha, 1e-3);
    let summary = summarise(&rows, "certify", false, allowed);
    Ok((rows, summary))
}

#[cfg(test)]
mod tests {
    use super::{binomial_budget, escalate};
    use std::cell::RefCell;

    #[test]
    fn escalation_returns_the_first_radius_that_changes_the_decision() {
        let tried = RefCell::new(vec![]);
        let at = |threshold: f64| {
            tried.borrow_mut().clear();
            escalate(0.5, &|r| {
                tried.borrow_mut().push(r);
                Ok(r >= threshold)
            })
            .unwrap()
        };
        assert_eq!(at(1.0), 1.0);
        assert_eq!(*tried.borrow(), vec![1.0]);
        assert_eq!(at(1.9), 2.0);
        assert_eq!(*tried.borrow(), vec![1.0, 2.0]);
        assert!(at(10.0).is_nan(), "no change within 8× is NaN");
        assert_eq!(*tried.borrow(), vec![1.0, 2.0, 4.0]);
    }

    #[test]
    fn budget_is_a_binomial_upper_quantile() {
        assert_eq!(binomial_budget(0, 0.01, 1e-3), 0);
        assert_eq!(binomial_budget(100, 0.0, 1e-3), 0);
        // Bin(1000, 0.002): mean 2; P(X > 8) ≈ 2.4e-4 ≤ 1e-3 < P(X > 7) ≈ 1.1e-3.
        assert_eq!(binomial_budget(1000, 0.002, 1e-3), 8);
        // Tiny n: P(Bin(10, 0.002) > 0) ≈ 0.02 > 1e-3, P(> 1) ≈ 1.8e-4.
        assert_eq!(binomial_budget(10, 0.002, 1e-3), 1);
    }
}
