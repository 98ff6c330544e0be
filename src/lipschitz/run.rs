//! A Lipschitz run (`oodcert lipschitz`): loads the model and the samples, sets γ at TPR 95% on
//! ID validation data, analyses every sample ([`super::sample::Analyser`]) and writes
//! lipschitz.csv, summary.csv, global.json and manifest.json.
//!
//! `is_id` is true when `data` names the same set as `id_val` (override with `is_ood`). With a
//! shard, the samples are chosen first (`limit`, `subset`) and the shard analyses its contiguous
//! slice of them; each sample's randomness is keyed by (seed, original index)
//! ([`super::sample::sample_rng`]), so a shard's rows are those a single run writes.

use super::empirical::GradOracle;
use super::global_bound;
use super::options::{Method, Options};
use super::output::write_run;
use super::record::LipschitzRecord;
use super::sample::{Analyser, sample_rng};
use super::summary::Timings;
use crate::bounds::Net;
use crate::bounds::f32_detector::F32Detector;
use crate::data::subset::SubsetSpec;
use crate::error::{Error, Result};
use crate::evidence::manifest::{DatasetRecord, Manifest};
use crate::model::{Classifier, Model};
use crate::smoothing::shard::Shard;
use candle_core::{DType, Device};
use std::path::PathBuf;
use std::time::Instant;

/// A Lipschitz run: what to analyse, where to write, and the [`Options`].
#[derive(Debug, Clone)]
pub struct Config {
    /// A model file (oodcert safetensors); analysed in f64.
    pub model: PathBuf,
    /// The samples, `NAME[:split]` or `path:FILE`.
    pub data: String,
    /// ID validation set for γ (default: the `data` set's train split).
    pub id_val: Option<String>,
    /// At most this many ID validation images for γ (0 = all), chosen by `subset`.
    pub id_val_limit: usize,
    /// Treat the samples as OOD.
    pub is_ood: bool,
    /// At most this many samples (0 = all), chosen by `subset`.
    pub limit: usize,
    /// Rule and seed of `limit` and `id_val_limit`.
    pub subset: SubsetSpec,
    /// Data directory (default: $OODCERT_DATA or data/).
    pub data_dir: Option<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Analyse only this slice of the chosen samples (`oodcert merge` joins the slices).
    pub shard: Option<Shard>,
    /// What is computed per sample.
    pub options: Options,
}

/// The set a spec names, without split, parameters or class filter (`path:FILE` specs are kept
/// whole).
fn base_name(spec: &str) -> &str {
    let (head, _) = crate::data::class_filter::split_filter(spec);
    if head.starts_with("path:") {
        return head;
    }
    head.split([':', '?']).next().unwrap_or(head)
}

/// The default ID validation spec: the train split of a named set, the file itself for `path:`.
fn default_id_val(spec: &str) -> String {
    if spec.trim_start().starts_with("path:") {
        spec.to_string()
    } else {
        crate::data::class_filter::train_split_of(spec)
    }
}

/// Runs the analysis of `cfg` and writes its outputs into `cfg.out` (each file atomically; none
/// is written when an input is refused); returns the rows of lipschitz.csv.
pub fn run(cfg: &Config) -> Result<Vec<LipschitzRecord>> {
    let started = Instant::now();
    let o = &cfg.options;
    o.check()?;
    crate::evidence::manifest::check_out_dir(&cfg.out, "lipschitz")?;
    let methods = o.methods();
    let device = Device::Cpu;
    let model = Model::load_energy_of_as(&cfg.model, &device, o.score, "--score", DType::F64)?;
    let net = Net::from_model(&model)?;
    // The float32 detector `oodcert eval --score` runs (proofs/f32_detector.md).
    let detector = F32Detector::load(&cfg.model, o.score, o.temperature)?;
    let shape = model.spec().input_shape;
    let root = cfg
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    let data_subset = cfg.subset.apply(
        crate::data::load_as(&cfg.data, &root, shape)?,
        cfg.limit,
        "--limit",
    )?;
    let id_val_spec = cfg
        .id_val
        .clone()
        .unwrap_or_else(|| default_id_val(&cfg.data));
    let id_val_subset = cfg.subset.apply(
        crate::data::load_as(&id_val_spec, &root, shape)?,
        cfg.id_val_limit,
        "--id-val-limit",
    )?;
    let subsets = [
        data_subset.record(cfg.subset, cfg.limit),
        id_val_subset.record(cfg.subset, cfg.id_val_limit),
    ];
    let (data, data_indices, id_val) = (data_subset.data, data_subset.indices, id_val_subset.data);
    let is_id = !cfg.is_ood && base_name(&cfg.data) == base_name(&id_val_spec);
    let oracle = GradOracle::for_net(&model, &net, o.temperature, 256);
    let mut val_scores = Vec::with_capacity(id_val.len());
    for start in (0..id_val.len()).step_by(500) {
        let idx: Vec<usize> = (start..(start + 500).min(id_val.len())).collect();
        let x = id_val.batch(&idx, &device)?;
        val_scores.extend(crate::score::score_batch(
            &model,
            &x,
            crate::score::ScoreKind::Energy,
            o.temperature,
        )?);
    }
    let gamma = crate::metrics::threshold_at_tpr(&val_scores, 0.95)?;
    eprintln!(
        "oodcert lipschitz: γ = {gamma:.6} (TPR 95% on {} images of {id_val_spec})",
        id_val.len()
    );

    let mut times = Timings::default();
    let t_global = Instant::now();
    let global = if o.has(Method::Global) || o.has(Method::Radius) {
        Some(global_bound(&net, o.norm)?)
    } else {
        None
    };
    times.global_once = t_global.elapsed().as_secs_f64();
    let radius_max = o.radius_max(data.dim());
    let analyser = Analyser::new(
        &net,
        &detector,
        oracle,
        o,
        gamma,
        global.as_ref().map(|g| g.value),
        radius_max,
    );
    let range = cfg.shard.map_or(0..data.len(), |s| {
        let r = s.range(data.len() as u64);
        r.start as usize..r.end as usize
    });
    let bar = if cfg.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(range.len() as u64)
    };
    let mut rows = Vec::with_capacity(range.len());
    for i in range.clone() {
        let original = data_indices[i];
        let x: Vec<f64> = data.image(i).iter().map(|&v| v as f64).collect();
        let mut rng = sample_rng(o.seed, original);
        rows.push(analyser.analyse(
            original,
            data.labels[i],
            is_id,
            x,
            i == range.start,
            &mut rng,
            &mut times,
        )?);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let ball_name = o.ball_name();
    let recurjac = if !o.has(Method::Recurjac) {
        "not requested".to_string()
    } else {
        analyser.recurjac_skip.clone().unwrap_or_else(|| {
            "RecurJac (energy row and class rows; dense, conv, max-pool, residual), min with FastLip box-simplex and the local product".into()
        })
    };
    let mut config = serde_json::json!({
        "model": cfg.model, "data": cfg.data, "id_val": id_val_spec, "id_val_limit": cfg.id_val_limit, "is_id": is_id,
        "norm": o.norm, "eps": o.eps, "ball": ball_name, "box": o.unit_box, "limit": cfg.limit, "subset": cfg.subset, "subsets": subsets, "methods": methods,
        "score": o.score.name(), "temperature": o.temperature, "threshold": gamma, "threshold_rule": "TPR 95% on ID validation (S <= gamma is ID)",
        "samples": o.samples, "pgd": o.pgd(), "clever": o.clever(), "radius_iters": o.radius_iters, "radius_max": radius_max,
        "local_head": if o.simplex { "box-simplex" } else { "box" },
        "bounds": o.bounds, "crown_max_dim": o.crown_max_dim, "alpha_iters": o.alpha_iters, "recurjac_max_work": o.recurjac_max_work, "jacobian_max_work": o.jacobian_max_work, "dtype": "f64",
        "bab_budget_s": o.bab_budget, "bab_max_domains": o.bab_max_domains,
        "detector": "float32 (candle, any batch size); radii certify its decision: margin = exact-score enclosure minus f32_err_bound (proofs/f32_detector.md)",
        "recurjac": recurjac, "rng": "per sample: ChaCha8 keyed by seed, stream = original index",
    });
    if let Some(s) = cfg.shard {
        config["shard"] = serde_json::json!(s);
    }
    // Only when it runs, so runs without it keep the manifest of runs made before it existed.
    if o.has(Method::Pattern) {
        config["pattern"] = serde_json::json!(o.pattern());
    }
    let mut man = Manifest::new("lipschitz", config, "cpu");
    man.seeds = vec![o.seed];
    man.datasets = vec![
        DatasetRecord::of(&data, data.len(), if is_id { "id" } else { "ood" }),
        DatasetRecord::of(&id_val, id_val.len(), "id-val"),
    ];
    man.model_sha256 = Some(crate::model::sha256_file(&cfg.model)?);
    let gjson =
        serde_json::to_string_pretty(&global).map_err(|e| Error::Internal(format!("json: {e}")))?;
    write_run(&cfg.out, &rows, &times, &(gjson + "\n"), man, started)?;
    Ok(rows)
}
