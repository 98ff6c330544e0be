//! Scoring whole datasets with a model: per-sample scores, predictions and ID accuracy, in batches.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::score::{self, ScoreKind};
use candle_core::{D, DType, Device};
use indicatif::ProgressBar;

/// Per-sample results of one dataset.
#[derive(Debug, Clone)]
pub struct ScoredSet {
    pub name: String,
    pub sha256: String,
    /// Original dataset index of each sample (the `index` column of scores.csv).
    pub indices: Vec<usize>,
    pub labels: Vec<i64>,
    /// The detector score (larger = more OOD).
    pub scores: Vec<f64>,
    /// Arg-max class of the logits.
    pub predictions: Vec<i64>,
}

impl ScoredSet {
    /// Share of labelled samples classified correctly; None when no sample has a label.
    pub fn accuracy(&self) -> Option<f64> {
        let labelled: Vec<_> = self
            .labels
            .iter()
            .zip(&self.predictions)
            .filter(|(l, _)| **l >= 0)
            .collect();
        if labelled.is_empty() {
            return None;
        }
        let ok = labelled.iter().filter(|(l, p)| l == p).count();
        Some(ok as f64 / labelled.len() as f64)
    }
}

/// Scores every image of `d` in batches of `batch` (evaluation mode); errors on NaN logits.
pub fn score_dataset(
    model: &dyn Classifier,
    d: &Dataset,
    kind: ScoreKind,
    temperature: f64,
    batch: usize,
    device: &Device,
    pb: &ProgressBar,
) -> Result<ScoredSet> {
    if d.shape != model.spec().input_shape {
        return Err(Error::BadInput(format!(
            "dataset {} has images of shape {:?}, the model expects {:?}",
            d.name,
            d.shape,
            model.spec().input_shape
        )));
    }
    let batch = batch.max(1);
    let mut scores = Vec::with_capacity(d.len());
    let mut predictions = Vec::with_capacity(d.len());
    let all: Vec<usize> = (0..d.len()).collect();
    for chunk in all.chunks(batch) {
        let x = d.batch(chunk, device)?;
        let logits = model.logits_no_grad(&x)?;
        score::check_finite_logits(&logits).map_err(|e| match e {
            Error::BadInput(m) => {
                Error::BadInput(format!("{m} (dataset {}, from index {})", d.name, chunk[0]))
            }
            other => other,
        })?;
        let s = score::score(
            &score::scored_logits(model, logits.clone(), kind)?,
            kind,
            temperature,
        )?;
        scores.extend(s.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        // Predictions are over the in-distribution classes (an absent class is not one).
        let p = crate::model::absent_class::id_logits(&logits, model.has_absent_class())?
            .argmax(D::Minus1)?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        predictions.extend(p);
        pb.inc(chunk.len() as u64);
    }
    Ok(ScoredSet {
        name: d.name.clone(),
        sha256: d.sha256.clone(),
        indices: (0..d.len()).collect(),
        labels: d.labels.clone(),
        scores,
        predictions,
    })
}

/// The columns of `metrics.csv`, in order.
pub const METRICS_COLUMNS: [&str; 12] = [
    "ood",
    "fpr95",
    "auroc",
    "aupr_in",
    "aupr_out",
    "detection_error",
    "id_accuracy",
    "n_id",
    "n_ood",
    "score",
    "convention",
    "tpr",
];

/// What `oodcert eval` needs: a model, an ID test set, OOD sets, the score and the FPR rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalConfig {
    pub model: std::path::PathBuf,
    pub id: String,
    pub ood: Vec<String>,
    pub score: ScoreKind,
    pub temperature: f64,
    #[serde(skip)]
    pub rule: crate::metrics::FprRule,
    pub limit: usize,
    /// How `limit` chooses the images of each set (`--subset`, `--subset-seed`).
    pub subset: crate::data::subset::SubsetSpec,
    pub batch_size: usize,
    pub data_root: std::path::PathBuf,
    pub out: std::path::PathBuf,
    pub progress: bool,
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone)]
pub struct OodRow {
    pub ood: String,
    pub n_ood: usize,
    pub metrics: crate::metrics::DetectionMetrics,
}

/// The result of an evaluation, as written to `metrics.csv`.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub id: ScoredSet,
    pub oods: Vec<ScoredSet>,
    pub rows: Vec<OodRow>,
    pub id_accuracy: Option<f64>,
}

/// Scores the ID and OOD sets, computes the metrics and writes `metrics.csv`, `scores.csv` and
/// `manifest.json` into `cfg.out`.
pub fn evaluate(cfg: &EvalConfig, device: &Device) -> Result<EvalReport> {
    use crate::evidence::{DatasetRecord, Manifest, sha256_file, write_csv_atomic};
    use crate::model::Model;
    let t0 = std::time::Instant::now();
    score::check_temperature(cfg.temperature)?;
    cfg.rule.validate()?;
    crate::evidence::manifest::check_out_dir(&cfg.out, "eval")?;
    if cfg.ood.is_empty() {
        return Err(Error::BadInput(
            "eval needs at least one OOD set (--ood)".into(),
        ));
    }
    if cfg.batch_size == 0 {
        return Err(Error::BadInput("--batch-size must be at least 1".into()));
    }

    crate::data::class_filter::check_disjoint(&cfg.id, &cfg.ood, "--ood")?;
    // DOS's absent-class score reads all K+1 outputs; every other score the K ID logits.
    let model = if cfg.score == ScoreKind::AbsentClass {
        let m = Model::load_full(&cfg.model, device)?;
        if !m.has_absent_class() {
            return Err(Error::BadInput(format!(
                "--score absent-class: {} has no absent class (train it with \
                 `model.absent_class = true`, DOS)",
                cfg.model.display()
            )));
        }
        m
    } else {
        Model::load(&cfg.model, device)?
    };
    let shape = model.spec().input_shape;
    let load = |spec: &str| -> Result<crate::data::subset::Subset> {
        let d = crate::data::load_as(spec, &cfg.data_root, shape)?;
        let s = cfg.subset.apply(d, cfg.limit, "--limit")?;
        s.data.validate()?;
        Ok(s)
    };
    let id_subset = load(&cfg.id)?;
    let ood_subsets: Vec<crate::data::subset::Subset> =
        cfg.ood.iter().map(|s| load(s)).collect::<Result<_>>()?;
    let id = &id_subset.data;
    let oods: Vec<&Dataset> = ood_subsets.iter().map(|s| &s.data).collect();
    // By the sets' canonical names, so `noise-uniform` and `noise-uniform:test` are one set.
    if let Some(i) = (0..oods.len()).find(|&i| oods[..i].iter().any(|d| d.name == oods[i].name)) {
        return Err(Error::BadInput(format!(
            "--ood lists {} twice ({}): give each OOD set once",
            oods[i].name, cfg.ood[i]
        )));
    }
    let total: usize = id.len() + oods.iter().map(|d| d.len()).sum::<usize>();
    let pb = if cfg.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "scoring {bar:30} {pos}/{len} {per_sec} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut sid = score_dataset(
        &model,
        id,
        cfg.score,
        cfg.temperature,
        cfg.batch_size,
        device,
        &pb,
    )?;
    let mut soods: Vec<ScoredSet> = oods
        .iter()
        .map(|&d| {
            score_dataset(
                &model,
                d,
                cfg.score,
                cfg.temperature,
                cfg.batch_size,
                device,
                &pb,
            )
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    sid.indices.clone_from(&id_subset.indices);
    for (s, sub) in soods.iter_mut().zip(&ood_subsets) {
        s.indices.clone_from(&sub.indices);
    }
    let id_accuracy = sid.accuracy();
    let rows: Vec<OodRow> = soods
        .iter()
        .map(|s| {
            Ok(OodRow {
                ood: s.name.clone(),
                n_ood: s.scores.len(),
                metrics: crate::metrics::detection_metrics_split(&sid.scores, &s.scores, cfg.rule)?,
            })
        })
        .collect::<Result<_>>()?;

    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| Error::io(format!("creating {}", cfg.out.display()), e))?;
    let csv_err = |e: csv::Error| Error::Internal(e.to_string());
    let acc = id_accuracy.map_or(String::new(), |v| v.to_string());
    let convention = convention_name(cfg.rule.convention);
    write_csv_atomic(&cfg.out.join("metrics.csv"), |w| {
        w.write_record(METRICS_COLUMNS).map_err(csv_err)?;
        for r in &rows {
            let m = &r.metrics;
            w.write_record([
                r.ood.clone(),
                m.fpr_at_tpr.to_string(),
                m.auroc.to_string(),
                m.aupr_in.to_string(),
                m.aupr_out.to_string(),
                m.detection_error.to_string(),
                acc.clone(),
                sid.scores.len().to_string(),
                r.n_ood.to_string(),
                cfg.score.name().to_string(),
                convention.to_string(),
                cfg.rule.tpr.to_string(),
            ])
            .map_err(csv_err)?;
        }
        Ok(())
    })?;
    write_csv_atomic(&cfg.out.join("scores.csv"), |w| {
        w.write_record(["dataset", "index", "label", "score", "is_id"])
            .map_err(csv_err)?;
        for (set, is_id) in std::iter::once((&sid, "1")).chain(soods.iter().map(|s| (s, "0"))) {
            for i in 0..set.scores.len() {
                w.write_record([
                    set.name.as_str(),
                    &set.indices[i].to_string(),
                    &set.labels[i].to_string(),
                    &set.scores[i].to_string(),
                    is_id,
                ])
                .map_err(csv_err)?;
            }
        }
        Ok(())
    })?;
    let mut config = serde_json::to_value(cfg).unwrap_or_default();
    config["convention"] = serde_json::json!(convention);
    config["convention_text"] = serde_json::json!(cfg.rule.convention.describe());
    config["tpr"] = serde_json::json!(cfg.rule.tpr);
    config["subsets"] = serde_json::json!(
        std::iter::once(&id_subset)
            .chain(&ood_subsets)
            .map(|s| s.record(cfg.subset, cfg.limit))
            .collect::<Vec<_>>()
    );
    let mut man = Manifest::new("eval", config, &crate::device::describe(device));
    man.model_sha256 = Some(sha256_file(&cfg.model)?);
    for (d, role) in std::iter::once((id, "id-test")).chain(oods.iter().map(|&d| (d, "ood-test"))) {
        man.datasets.push(DatasetRecord::of(d, d.len(), role));
    }
    man.add_output(&cfg.out, "metrics.csv")?;
    man.add_output(&cfg.out, "scores.csv")?;
    man.elapsed_s = t0.elapsed().as_secs_f64();
    man.write(&cfg.out)?;
    Ok(EvalReport {
        id: sid,
        oods: soods,
        rows,
        id_accuracy,
    })
}

/// The CLI name of an FPR convention.
pub fn convention_name(c: crate::metrics::FprConvention) -> &'static str {
    match c {
        crate::metrics::FprConvention::First => "first",
        crate::metrics::FprConvention::Nearest => "nearest",
        crate::metrics::FprConvention::OodPositive => "ood-positive",
    }
}

impl EvalReport {
    /// A fixed-width table of the metrics (percent) with the mean row, for stdout.
    pub fn table(&self, rule: crate::metrics::FprRule, score: ScoreKind) -> String {
        let mut s = format!(
            "ID {} (n={}), accuracy {}, score {}\nFPR@{} convention: {}\n",
            self.id.name,
            self.id.scores.len(),
            self.id_accuracy
                .map_or("n/a".into(), |v| format!("{:.2}%", 100.0 * v)),
            score.name(),
            rule.tpr,
            rule.convention.describe()
        );
        s += &format!(
            "{:<32} {:>8} {:>8} {:>8} {:>8}\n",
            "OOD set", "FPR95%", "AUROC%", "AUPR-In%", "AUPR-Out%"
        );
        let mut sums = [0.0; 4];
        for r in &self.rows {
            let m = &r.metrics;
            let v = [m.fpr_at_tpr, m.auroc, m.aupr_in, m.aupr_out];
            for (acc, x) in sums.iter_mut().zip(v) {
                *acc += x;
            }
            s += &format!(
                "{:<32} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                r.ood,
                100.0 * v[0],
                100.0 * v[1],
                100.0 * v[2],
                100.0 * v[3]
            );
        }
        let k = self.rows.len().max(1) as f64;
        s += &format!(
            "{:<32} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
            "mean",
            100.0 * sums[0] / k,
            100.0 * sums[1] / k,
            100.0 * sums[2] / k,
            100.0 * sums[3] / k
        );
        s
    }
}

/// Mean ‖∇ₓS‖₂ (energy, temperature `t`) over the first `limit` images of `d` (0 = all), in
/// evaluation mode: the quantity GReg penalises (the paper's Figure 3).
pub fn mean_energy_grad_norm(
    model: &dyn Classifier,
    d: &Dataset,
    t: f64,
    limit: usize,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let n = if limit == 0 {
        d.len()
    } else {
        limit.min(d.len())
    };
    if n == 0 {
        return Err(Error::BadInput(format!("dataset {} is empty", d.name)));
    }
    let idx: Vec<usize> = (0..n).collect();
    let mut sum = 0.0;
    for chunk in idx.chunks(batch.max(1)) {
        let x = d.batch(chunk, device)?;
        let (_, g) = score::score_and_input_grad(model, &x, ScoreKind::Energy, t)?;
        sum += score::per_sample_norm(&g, 2.0)?.iter().sum::<f64>();
    }
    Ok(sum / n as f64)
}
