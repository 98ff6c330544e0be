//! Verifying a `oodcert guaranteed` run: for every sample and radius ε > 0, PGD inside
//! B_p(x, ε) ∩ [0,1]^n may not push S below the certified lower bound (OOD rows) or above the
//! certified upper bound (ID rows), neither in exact arithmetic nor for the float32 detector at
//! the centre and at the attack's point rounded to f32. The bounds are deterministic: one
//! crossing is a violation.

use super::attack::{AttackConfig, attack_towards_threshold};
use super::lipschitz_run::{config_f64, config_str};
use super::{VerifyRow, VerifySummary, summarise};
use crate::bounds::{Ball, Norm};
use crate::error::{Error, Result};
use crate::evidence::{CsvTable, Manifest};
use crate::lipschitz::empirical::GradOracle;
use crate::model::{Classifier, Model};
use crate::score::ScoreKind;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Attacks every bound of the guaranteed run in `dir` (first `limit` rows of bounds.csv, 0 = all).
pub fn verify_guaranteed_run(
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
    if man.model_sha256.as_deref() != Some(&crate::evidence::sha256_file(&model_path)?) {
        return Err(Error::BadInput(format!(
            "{} is not the model this run bounded (SHA-256 differs from the manifest)",
            model_path.display()
        )));
    }
    let norm = match config_str(&man, "norm", &mpath)? {
        "l2" => Norm::L2,
        "linf" => Norm::Linf,
        o => return Err(Error::bad_file(&mpath, format!("unknown norm `{o}`"))),
    };
    let temperature = config_f64(&man, "temperature", &mpath)?;
    let model = Model::load_energy_of_as(
        &model_path,
        &Device::Cpu,
        ScoreKind::Energy,
        "score",
        DType::F64,
    )?;
    let model32 = Model::load(&model_path, &Device::Cpu)?;
    let shape = model.spec().input_shape;
    let oracle = GradOracle::new(&model, temperature, 64);
    let f32_scores = |pts: &[Vec<f32>]| -> Result<Vec<f64>> {
        let flat: Vec<f32> = pts.iter().flatten().copied().collect();
        let x = Tensor::from_vec(
            flat,
            (pts.len(), shape[0], shape[1], shape[2]),
            &Device::Cpu,
        )?;
        crate::score::score_batch(&model32, &x, ScoreKind::Energy, temperature)
    };
    let t = CsvTable::read(&dir.join("bounds.csv"))?;
    let (csp, cds, ci, cid, ce) = (
        t.col("spec")?,
        t.col("dataset")?,
        t.col("index")?,
        t.col("is_id")?,
        t.col("eps")?,
    );
    let (clo, chi) = (t.col("lower")?, t.col("upper")?);
    let mut sets: HashMap<String, crate::data::Dataset> = HashMap::new();
    let n_rows = if limit > 0 {
        limit.min(t.rows.len())
    } else {
        t.rows.len()
    };
    let mut rows = vec![];
    for line in 0..n_rows {
        let eps = t.num(line, ce)?;
        if eps <= 0.0 {
            continue;
        }
        let spec = t.cell(line, csp).to_string();
        if !sets.contains_key(&spec) {
            sets.insert(spec.clone(), crate::data::load_as(&spec, data_root, shape)?);
        }
        let data = &sets[&spec];
        let index = t.index(line, ci)? as usize;
        if index >= data.len() {
            return Err(Error::bad_file(
                &t.path,
                format!("row {}: index {index} beyond {}", line + 2, data.name),
            ));
        }
        let is_id = t.flag(line, cid)?;
        // OOD rows: the lower bound, attacked by lowering S; ID rows: the upper bound, by raising it.
        let (bound, increase) = if is_id {
            (t.num(line, chi)?, true)
        } else {
            (t.num(line, clo)?, false)
        };
        let beaten = |s: f64| if increase { s > bound } else { s < bound };
        let center: Vec<f64> = data.image(index).iter().map(|&v| v as f64).collect();
        let ball = Ball::new(center.clone(), eps, norm, true)?;
        let (best, point) = attack_towards_threshold(&oracle, &ball, increase, cfg)?;
        let mut pts: Vec<Vec<f32>> = vec![center.iter().map(|&v| v as f32).collect()];
        let p32: Vec<f32> = point.iter().map(|&v| v as f32).collect();
        let d: Vec<f64> = p32
            .iter()
            .zip(&center)
            .map(|(&a, c)| a as f64 - c)
            .collect();
        if norm.norm(&d) <= eps && p32.iter().all(|v| (0.0..=1.0).contains(v)) {
            pts.push(p32);
        }
        let f32_beaten = f32_scores(&pts)?.into_iter().any(beaten);
        let violated = beaten(best) || f32_beaten;
        rows.push(VerifyRow {
            dataset: t.cell(line, cds).to_string(),
            index: index as u64,
            is_id,
            certificate: if is_id {
                "guaranteed_upper"
            } else {
                "guaranteed_lower"
            },
            certified_radius: eps,
            attack_radius: if violated { eps } else { f64::NAN },
            best_score: best,
            threshold: bound,
            violated,
        });
    }
    Ok((rows.clone(), summarise(&rows, "guaranteed", true, 0)))
}
