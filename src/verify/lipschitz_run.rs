//! Verifying a `oodcert lipschitz` run: for every sample with a positive certified radius (the
//! Lipschitz route and the bound-propagation route), PGD on S inside that ball may not move the
//! score across γ, and the float32 detector (batch of two: the centre and the attack's point
//! rounded to f32) may not decide the other side. These certificates are deterministic: one
//! crossing is a violation.

use super::attack::{AttackConfig, attack_towards_threshold};
use super::{VerifyRow, VerifySummary, summarise};
use crate::bounds::{Ball, Norm};
use crate::error::{Error, Result};
use crate::evidence::{CsvTable, Manifest};
use crate::lipschitz::empirical::GradOracle;
use crate::model::{Classifier, Model};
use crate::score::{ScoreKind, is_ood};
use candle_core::{DType, Device};
use std::path::Path;

/// Radii, as multiples of the certified one, tried after it to see how far the certificate is
/// from an actual decision change.
pub const ESCALATION: [f64; 5] = [1.25, 1.5, 2.0, 4.0, 8.0];

/// A string of a run manifest's `config`, or an error naming the file and the key.
pub(super) fn config_str<'a>(m: &'a Manifest, key: &str, path: &Path) -> Result<&'a str> {
    m.config[key]
        .as_str()
        .ok_or_else(|| Error::bad_file(path, format!("manifest config lacks `{key}`")))
}

/// A number of a run manifest's `config`, or an error naming the file and the key.
pub(super) fn config_f64(m: &Manifest, key: &str, path: &Path) -> Result<f64> {
    m.config[key]
        .as_f64()
        .ok_or_else(|| Error::bad_file(path, format!("manifest config lacks numeric `{key}`")))
}

/// Attacks every certificate of the lipschitz run in `dir` (first `limit` rows, 0 = all).
pub fn verify_lipschitz_run(
    dir: &Path,
    model_override: Option<&Path>,
    data_root: &Path,
    cfg: &AttackConfig,
    limit: usize,
) -> Result<(Vec<VerifyRow>, VerifySummary)> {
    let mpath = dir.join("manifest.json");
    let man = Manifest::read(&mpath)?;
    let model_path = match model_override {
        Some(p) => p.to_path_buf(),
        None => config_str(&man, "model", &mpath)?.into(),
    };
    let model_sha = crate::evidence::sha256_file(&model_path)?;
    if man.model_sha256.as_deref().is_some_and(|h| h != model_sha) {
        return Err(Error::BadInput(format!(
            "{} is not the model this run certified (SHA-256 differs from the manifest)",
            model_path.display()
        )));
    }
    let norm = match config_str(&man, "norm", &mpath)? {
        "l2" => Norm::L2,
        "linf" => Norm::Linf,
        o => return Err(Error::bad_file(&mpath, format!("unknown norm `{o}`"))),
    };
    let unit_box = man.config["box"].as_bool().unwrap_or(false);
    let gamma = config_f64(&man, "threshold", &mpath)?;
    let temperature = config_f64(&man, "temperature", &mpath)?;
    // Runs made before `--score` existed bounded the energy.
    let name = man.config["score"].as_str().unwrap_or("energy");
    let kind = ScoreKind::from_name(name)
        .ok_or_else(|| Error::bad_file(&mpath, format!("unknown score `{name}`")))?;
    let model = Model::load_energy_of_as(&model_path, &Device::Cpu, kind, "score", DType::F64)?;
    let data = crate::data::load_as(
        config_str(&man, "data", &mpath)?,
        data_root,
        model.spec().input_shape,
    )?;
    let oracle = GradOracle::new(&model, temperature, 64);
    // The float32 detector the radii certify (proofs/f32_detector.md), as `oodcert eval` runs it.
    let (model32, kind32) = match kind {
        ScoreKind::AbsentClass => (Model::load_full(&model_path, &Device::Cpu)?, kind),
        _ => (Model::load(&model_path, &Device::Cpu)?, ScoreKind::Energy),
    };
    let shape = model32.spec().input_shape;
    // f32 scores of the centre and of the attack's point (when that f32 point is in the ball).
    let f32_scores = |pts: &[Vec<f32>]| -> Result<Vec<f64>> {
        let flat: Vec<f32> = pts.iter().flatten().copied().collect();
        let x = candle_core::Tensor::from_vec(
            flat,
            (pts.len(), shape[0], shape[1], shape[2]),
            &Device::Cpu,
        )?;
        crate::score::score_batch(&model32, &x, kind32, temperature)
    };
    let t = CsvTable::read(&dir.join("lipschitz.csv"))?;
    let (ci, cid, cs) = (t.col("index")?, t.col("is_id")?, t.col("score")?);
    let cr = [
        ("lipschitz", t.col("radius_lipschitz")?),
        ("bound_prop", t.col("radius_bound_prop")?),
    ];
    let mut rows = vec![];
    let n_rows = if limit > 0 {
        limit.min(t.rows.len())
    } else {
        t.rows.len()
    };
    for line in 0..n_rows {
        let index = t.index(line, ci)? as usize;
        if index >= data.len() {
            return Err(Error::bad_file(
                &t.path,
                format!("row {}: index {index} beyond {}", line + 2, data.name),
            ));
        }
        let score = t.finite(line, cs)?;
        let is_id = t.flag(line, cid)?;
        let center: Vec<f64> = data.image(index).iter().map(|&v| v as f64).collect();
        let id_side = !is_ood(score, gamma);
        let crosses = |s: f64| is_ood(s, gamma) == id_side;
        for (name, c) in cr {
            let r = t.radius(line, c)?;
            // Zero (or NaN) radius: nothing certified, nothing to attack.
            if r.is_nan() || r <= 0.0 {
                continue;
            }
            let ball = Ball::new(center.clone(), r, norm, unit_box)?;
            let attack = |radius: f64| -> Result<f64> {
                let ball = ball.with_eps(radius);
                Ok(attack_towards_threshold(&oracle, &ball, id_side, cfg)?.0)
            };
            let (best, point) = attack_towards_threshold(&oracle, &ball, id_side, cfg)?;
            // The float32 detector at the centre and at the attack's point rounded to f32 (if
            // still inside the ball: the certificate is about float32 inputs in it).
            let mut pts: Vec<Vec<f32>> = vec![center.iter().map(|&v| v as f32).collect()];
            let p32: Vec<f32> = point.iter().map(|&v| v as f32).collect();
            let d: Vec<f64> = p32
                .iter()
                .zip(&center)
                .map(|(&a, c)| a as f64 - c)
                .collect();
            let in_box = !unit_box || p32.iter().all(|v| (0.0..=1.0).contains(v));
            if norm.norm(&d) < r && in_box {
                pts.push(p32);
            }
            let f32_crosses = f32_scores(&pts)?.into_iter().any(crosses);
            let mut attack_radius = if crosses(best) || f32_crosses {
                r
            } else {
                f64::NAN
            };
            if attack_radius.is_nan() {
                for m in ESCALATION {
                    if crosses(attack(m * r)?) {
                        attack_radius = m * r;
                        break;
                    }
                }
            }
            rows.push(VerifyRow {
                dataset: data.name.clone(),
                index: index as u64,
                is_id,
                certificate: name,
                certified_radius: r,
                attack_radius,
                best_score: best,
                threshold: gamma,
                violated: crosses(best) || f32_crosses,
            });
        }
    }
    let summary = summarise(&rows, "lipschitz", true, 0);
    Ok((rows, summary))
}
