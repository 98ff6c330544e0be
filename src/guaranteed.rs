//! Guaranteed detection metrics from deterministic bounds (GOOD's guaranteed AUC, Bitterwolf et
//! al. NeurIPS 2020, and the FPR95 analogue; issue #14 item 3): every OOD sample scored by a
//! certified lower bound of the float32 detector's S over B_p(x, ε) ∩ [0,1]^n, every ID sample by
//! its clean score (variant `clean-id`) or by a certified upper bound (`certified-id`); the
//! metrics of those scores bound the metrics under any perturbation within ε
//! (proofs/guaranteed_metrics.md). Writes `bounds.csv`, `guaranteed.csv` and `manifest.json`.

use crate::bounds::f32_detector::F32Detector;
use crate::bounds::round::{next_down, next_up};
use crate::bounds::{Ball, Net, Norm};
use crate::data::subset::SubsetSpec;
use crate::error::{Error, Result};
use crate::evidence::{DatasetRecord, Manifest, write_csv_atomic};
use crate::lipschitz::BoundsKind;
use crate::lipschitz::f32_margin::ball_error;
use crate::lipschitz::local::PreBounds;
use crate::lipschitz::radius::energy_bounds_with;
use crate::metrics::{FprRule, detection_metrics_split};
use crate::model::{Classifier, Model};
use crate::score::ScoreKind;
use candle_core::{DType, Device};
use std::path::PathBuf;

/// What to bound and where to write it.
#[derive(Debug, Clone)]
pub struct GuaranteedConfig {
    pub model: PathBuf,
    pub id: String,
    pub ood: Vec<String>,
    pub norm: Norm,
    /// Radii ε > 0 (ε = 0, the clean metrics, is always added).
    pub eps: Vec<f64>,
    pub bounds: BoundsKind,
    pub crown_max_dim: usize,
    pub temperature: f64,
    /// Images per set (0 = all), chosen by `subset`.
    pub limit: usize,
    pub subset: SubsetSpec,
    pub data_root: PathBuf,
    pub out: PathBuf,
}

/// One sample's scores at one radius.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBounds {
    /// The spec as given (`--id`/`--ood`), which `verify` loads again.
    pub spec: String,
    /// The dataset's canonical name.
    pub dataset: String,
    pub index: usize,
    pub is_id: bool,
    pub eps: f64,
    /// The float32 detector's score at the clean input (`oodcert eval`'s score).
    pub score: f64,
    /// Certified bounds of the float32 detector's score over the ball (= `score` at ε = 0).
    pub lower: f64,
    pub upper: f64,
}

/// One row of `guaranteed.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuaranteedRow {
    pub eps: f64,
    pub ood: String,
    /// `clean-id` or `certified-id`.
    pub variant: &'static str,
    pub auroc: f64,
    pub fpr95: f64,
    pub n_id: usize,
    pub n_ood: usize,
}

/// Certified bounds [lo, hi] of the float32 detector's S over `ball`: the exact network's bounds
/// widened by E, the detector's certified float32 error over the ball (proofs/f32_detector.md),
/// rounded outward.
pub fn f32_score_bounds(
    net: &Net,
    det: &F32Detector,
    ball: &Ball,
    pre: PreBounds,
) -> Result<(f64, f64)> {
    let t = det.temperature;
    let (lo, hi) = energy_bounds_with(net, ball, t, pre)?;
    let e = ball_error(det, ball, pre)?;
    let (lo, hi) = (next_down(lo - e), next_up(hi + e));
    if lo.is_nan() || hi.is_nan() {
        return Err(Error::CheckFailed(
            "score bounds over the ball are NaN".into(),
        ));
    }
    Ok((lo, hi))
}

/// Guaranteed AUROC and FPR95 of every OOD set at every radius, both variants, from the per-sample
/// bounds (ID rows and OOD rows of each radius).
pub fn guaranteed_curves(rows: &[SampleBounds], eps: &[f64]) -> Result<Vec<GuaranteedRow>> {
    let mut out = Vec::new();
    let mut oods: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| !r.is_id) {
        if !oods.contains(&r.dataset.as_str()) {
            oods.push(&r.dataset);
        }
    }
    for &e in eps {
        let at: Vec<&SampleBounds> = rows.iter().filter(|r| r.eps == e).collect();
        let clean: Vec<f64> = at.iter().filter(|r| r.is_id).map(|r| r.score).collect();
        let upper: Vec<f64> = at.iter().filter(|r| r.is_id).map(|r| r.upper).collect();
        for &o in &oods {
            let lower: Vec<f64> = at
                .iter()
                .filter(|r| !r.is_id && r.dataset == o)
                .map(|r| r.lower)
                .collect();
            for (variant, id) in [("clean-id", &clean), ("certified-id", &upper)] {
                let m = detection_metrics_split(id, &lower, FprRule::FPR95)?;
                out.push(GuaranteedRow {
                    eps: e,
                    ood: o.to_string(),
                    variant,
                    auroc: m.auroc,
                    fpr95: m.fpr_at_tpr,
                    n_id: id.len(),
                    n_ood: lower.len(),
                });
            }
        }
    }
    Ok(out)
}

/// Bounds every chosen sample of the ID and OOD sets at every radius and writes `bounds.csv`,
/// `guaranteed.csv` and `manifest.json` into `cfg.out`.
pub fn run(cfg: &GuaranteedConfig) -> Result<Vec<GuaranteedRow>> {
    let t0 = std::time::Instant::now();
    crate::score::check_temperature(cfg.temperature)?;
    crate::evidence::manifest::check_out_dir(&cfg.out, "guaranteed")?;
    if cfg.ood.is_empty() {
        return Err(Error::BadInput(
            "guaranteed needs at least one --ood set".into(),
        ));
    }
    if let Some(e) = cfg.eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(Error::BadInput(format!(
            "--eps {e}: every radius must be finite and > 0 (ε = 0, the clean metrics, is always included)"
        )));
    }
    crate::data::class_filter::check_disjoint(&cfg.id, &cfg.ood, "--ood")?;
    let device = Device::Cpu;
    let model = Model::load_energy_of_as(
        &cfg.model,
        &device,
        ScoreKind::Energy,
        "--score",
        DType::F64,
    )?;
    let net = Net::from_model(&model)?;
    let det = F32Detector::load(&cfg.model, ScoreKind::Energy, cfg.temperature)?;
    let model32 = Model::load(&cfg.model, &device)?;
    let shape = model.spec().input_shape;
    let pre = match cfg.bounds {
        BoundsKind::Ibp => PreBounds::Ibp,
        BoundsKind::Crown => PreBounds::Crown {
            max_dim: cfg.crown_max_dim,
        },
    };
    let mut eps = vec![0.0];
    eps.extend(cfg.eps.iter().copied());
    let mut rows = Vec::new();
    let mut records = Vec::new();
    let mut subsets = Vec::new();
    for (spec, is_id) in std::iter::once((&cfg.id, true)).chain(cfg.ood.iter().map(|s| (s, false)))
    {
        let s = cfg.subset.apply(
            crate::data::load_as(spec, &cfg.data_root, shape)?,
            cfg.limit,
            "--limit",
        )?;
        s.data.validate()?;
        subsets.push(s.record(cfg.subset, cfg.limit));
        let d = &s.data;
        records.push(DatasetRecord::of(
            d,
            d.len(),
            if is_id { "id-test" } else { "ood-test" },
        ));
        let all: Vec<usize> = (0..d.len()).collect();
        let mut clean = Vec::with_capacity(d.len());
        for chunk in all.chunks(256) {
            let x = d.batch(chunk, &device)?;
            clean.extend(crate::score::score_batch(
                &model32,
                &x,
                ScoreKind::Energy,
                cfg.temperature,
            )?);
        }
        eprintln!(
            "oodcert guaranteed: bounding {} images of {} at ε ∈ {:?} ({})",
            d.len(),
            d.name,
            cfg.eps,
            cfg.norm.name()
        );
        for (i, &score) in clean.iter().enumerate() {
            let center: Vec<f64> = d.image(i).iter().map(|&v| v as f64).collect();
            for &e in &eps {
                let (lower, upper) = if e == 0.0 {
                    (score, score)
                } else {
                    let ball = Ball::new(center.clone(), e, cfg.norm, true)?;
                    f32_score_bounds(&net, &det, &ball, pre)?
                };
                rows.push(SampleBounds {
                    spec: spec.clone(),
                    dataset: d.name.clone(),
                    index: s.indices[i],
                    is_id,
                    eps: e,
                    score,
                    lower,
                    upper,
                });
            }
        }
    }
    let curves = guaranteed_curves(&rows, &eps)?;
    write_outputs(cfg, &rows, &curves)?;
    let config = serde_json::json!({
        "model": cfg.model.display().to_string(), "id": cfg.id, "ood": cfg.ood,
        "norm": cfg.norm.name(), "eps": cfg.eps, "bounds": cfg.bounds,
        "crown_max_dim": cfg.crown_max_dim, "temperature": cfg.temperature, "score": "energy",
        "box": true, "limit": cfg.limit, "subset": cfg.subset, "subsets": subsets,
        "convention": "OOD samples scored by the certified lower bound of the float32 detector's S over B_p(x, eps) ∩ [0,1]^n; ID samples by the clean f32 score (clean-id) or the certified upper bound (certified-id); metrics as `oodcert eval` (ID positive, detector -S, FPR at the first threshold with TPR >= 0.95)",
    });
    let mut man = Manifest::new("guaranteed", config, "cpu");
    man.model_sha256 = Some(crate::evidence::sha256_file(&cfg.model)?);
    man.datasets = records;
    man.add_output(&cfg.out, "bounds.csv")?;
    man.add_output(&cfg.out, "guaranteed.csv")?;
    man.elapsed_s = t0.elapsed().as_secs_f64();
    man.write(&cfg.out)?;
    Ok(curves)
}

fn write_outputs(
    cfg: &GuaranteedConfig,
    rows: &[SampleBounds],
    curves: &[GuaranteedRow],
) -> Result<()> {
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| Error::io(format!("creating {}", cfg.out.display()), e))?;
    let e = |e: csv::Error| Error::Internal(e.to_string());
    let f = |v: f64| format!("{v:e}");
    write_csv_atomic(&cfg.out.join("bounds.csv"), |w| {
        w.write_record([
            "spec", "dataset", "index", "is_id", "eps", "score", "lower", "upper",
        ])
        .map_err(e)?;
        for r in rows {
            w.write_record([
                r.spec.clone(),
                r.dataset.clone(),
                r.index.to_string(),
                u8::from(r.is_id).to_string(),
                r.eps.to_string(),
                f(r.score),
                f(r.lower),
                f(r.upper),
            ])
            .map_err(e)?;
        }
        Ok(())
    })?;
    write_csv_atomic(&cfg.out.join("guaranteed.csv"), |w| {
        w.write_record([
            "norm", "eps", "ood", "variant", "auroc", "fpr95", "n_id", "n_ood",
        ])
        .map_err(e)?;
        for r in curves {
            w.write_record([
                cfg.norm.name().to_string(),
                r.eps.to_string(),
                r.ood.clone(),
                r.variant.to_string(),
                r.auroc.to_string(),
                r.fpr95.to_string(),
                r.n_id.to_string(),
                r.n_ood.to_string(),
            ])
            .map_err(e)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(is_id: bool, set: &str, eps: f64, score: f64, lower: f64, upper: f64) -> SampleBounds {
        SampleBounds {
            spec: set.into(),
            dataset: set.into(),
            index: 0,
            is_id,
            eps,
            score,
            lower,
            upper,
        }
    }

    #[test]
    fn curves_use_lower_bounds_for_ood_and_clean_or_upper_for_id() {
        // ID scores -3, -2; OOD clean 0, 1 but lower bounds -2.5, 1 at ε = 0.1.
        let rows = vec![
            row(true, "id", 0.0, -3.0, -3.0, -3.0),
            row(true, "id", 0.0, -2.0, -2.0, -2.0),
            row(false, "o", 0.0, 0.0, 0.0, 0.0),
            row(false, "o", 0.0, 1.0, 1.0, 1.0),
            row(true, "id", 0.1, -3.0, -3.5, -2.8),
            row(true, "id", 0.1, -2.0, -2.2, -1.0),
            row(false, "o", 0.1, 0.0, -2.5, 0.5),
            row(false, "o", 0.1, 1.0, 1.0, 1.5),
        ];
        let c = guaranteed_curves(&rows, &[0.0, 0.1]).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].auroc, c[0].variant), (1.0, "clean-id"));
        assert_eq!(c[1].auroc, 1.0);
        // clean-id at 0.1: OOD {-2.5, 1} vs ID {-3, -2}: pairs won 3 of 4.
        assert_eq!((c[2].variant, c[2].auroc), ("clean-id", 0.75));
        // certified-id: ID {-2.8, -1}: OOD -2.5 beats only -2.8 → 3 of 4 again; 1 beats both.
        assert_eq!((c[3].variant, c[3].auroc), ("certified-id", 0.75));
        assert!(c[2].fpr95 >= c[0].fpr95);
    }
}
