//! `oodcert lipschitz`: per-sample Lipschitz analysis of the energy score on a ball — gradient
//! norm, sampling and PGD lower bounds, CLEVER, certified local (FastLip; RecurJac on request)
//! and global bounds, certified radii by the Lipschitz and bound-propagation routes. Writes lipschitz.csv,
//! summary.csv, global.json (every global factor with its rule) and manifest.json.
//!
//! γ is the TPR-95 threshold of S on ID validation data (`--id-val`, default the `--data` set's
//! train split); `is_id` is true when `--data` names the same set as `--id-val` (override with
//! `--is-ood`).

use crate::atomic::{write_atomic, write_csv_atomic};
use crate::bounds::{Ball, Net, Norm};
use crate::error::{Error, Result};
use crate::evidence::manifest::{DatasetRecord, Manifest};
use crate::lipschitz::clever::{CleverConfig, clever};
use crate::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling};
use crate::lipschitz::global_bound;
use crate::lipschitz::local::{Head, PreBounds, fastlip_with};
use crate::lipschitz::radius::{
    bound_prop_certify_with, lipschitz_certify_with, lipschitz_radius, search_radius,
};
use crate::lipschitz::recurjac::{recurjac_limited, unsupported};
use crate::model::{Classifier, Model};
use candle_core::{DType, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

/// The per-sample methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ‖∇S(x)‖_q and max over uniform samples of the ball.
    Sample,
    /// PGD ascent on ‖∇S‖_q.
    Pgd,
    /// CLEVER estimate.
    Clever,
    /// FastLip certified local bound.
    Local,
    /// Certified global bound.
    Global,
    /// Certified radii (Lipschitz and bound-propagation routes).
    Radius,
    /// RecurJac certified local bound (dense/conv ReLU networks, max-pool, residual blocks; not in
    /// the default set: about 2–6 s per sample on the MNIST MLP and LeNet; levels costlier than
    /// `--recurjac-max-work` use FastLip's step).
    Recurjac,
}

/// Bound propagation used for pre-activation boxes and bounds on S.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundsKind {
    /// Interval bound propagation.
    Ibp,
    /// IBP ∩ CROWN (backward linear relaxation).
    Crown,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model file (oodcert safetensors); analysed in f64.
    #[arg(long)]
    pub model: PathBuf,
    /// The samples to analyse, `NAME[:split]` or `path:FILE`.
    #[arg(long)]
    pub data: String,
    /// ID validation set for γ (TPR 95%); default: the `--data` set's train split.
    #[arg(long)]
    pub id_val: Option<String>,
    /// Use at most N ID validation images for γ (0 = all), chosen by --subset.
    #[arg(long, default_value_t = 5000)]
    pub id_val_limit: usize,
    /// Treat the `--data` samples as OOD (default: ID when `--data` and `--id-val` name the same set).
    #[arg(long)]
    pub is_ood: bool,
    /// Perturbation norm.
    #[arg(long, value_enum)]
    pub norm: Norm,
    /// Ball radius ε in pixel units.
    #[arg(long)]
    pub eps: f64,
    /// Intersect the ball with the pixel box [0,1] (certificates then cover valid images only).
    #[arg(long = "box")]
    pub unit_box: bool,
    /// Analyse at most N samples (0 = all), chosen by --subset; lipschitz.csv keeps each sample's
    /// original index.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    #[command(flatten)]
    pub subset: crate::data::subset::SubsetSpec,
    /// Methods to run, comma-separated (default: all but recurjac).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// The score whose Lipschitz constant is bounded: `energy`, or `absent-class` for a DOS model
    /// (its absent-class log-odds, bounded as the energy of the K-output view with rows w_k − w_K).
    #[arg(long, value_enum, default_value = "energy")]
    pub score: crate::score::ScoreKind,
    /// Temperature T of the energy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Uniform samples of the ball for the sampling lower bound.
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// PGD steps and restarts.
    #[arg(long, default_value_t = 20)]
    pub pgd_steps: usize,
    #[arg(long, default_value_t = 4)]
    pub pgd_restarts: usize,
    /// CLEVER batches N_b and samples per batch N_s (the paper: 500 and 1024).
    #[arg(long, default_value_t = 50)]
    pub clever_batches: usize,
    #[arg(long, default_value_t = 64)]
    pub clever_samples: usize,
    /// Bisection steps of the radius search over (0, ε].
    #[arg(long, default_value_t = 10)]
    pub radius_iters: usize,
    /// Pre-activation and logit bounds for the local bound and the bound-propagation radius.
    #[arg(long, value_enum, default_value = "crown")]
    pub bounds: BoundsKind,
    /// CROWN tightens a layer's box only when it has at most this many entries (else IBP).
    #[arg(long, default_value_t = 4096)]
    pub crown_max_dim: usize,
    /// RecurJac recurses at a level only if entries × multiply-adds of a forward pass of the rest
    /// of the network ≤ this (per top row); costlier levels use FastLip's step (sound, looser).
    #[arg(long, default_value_t = 1e10)]
    pub recurjac_max_work: f64,
    /// Bound the local gradient with the box ∩ simplex softmax head (K backward passes).
    #[arg(long)]
    pub simplex: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Data directory (default: $OODCERT_DATA or data/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x:.9e}"))
}

/// The set a spec names, without split or parameters (`path:FILE` specs are kept whole).
fn base_name(spec: &str) -> &str {
    if spec.trim_start().starts_with("path:") {
        return spec;
    }
    spec.split([':', '?']).next().unwrap_or(spec)
}

/// The default ID validation spec: the train split of a named set, the file itself for `path:`.
fn default_id_val(spec: &str) -> String {
    if spec.trim_start().starts_with("path:") {
        spec.to_string()
    } else {
        format!("{}:train", base_name(spec))
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[derive(Default, Clone)]
struct Row {
    index: usize,
    label: i64,
    score: f64,
    grad_norm: Option<f64>,
    lower_sample: Option<f64>,
    lower_pgd: Option<f64>,
    clever: Option<f64>,
    clever_ks: Option<f64>,
    upper_local: Option<f64>,
    upper_recurjac: Option<f64>,
    recurjac_rule: Option<String>,
    fastlip_simplex: Option<f64>,
    upper_global: Option<f64>,
    radius_at_eps: Option<f64>,
    radius_lipschitz: Option<f64>,
    radius_bound_prop: Option<f64>,
}

pub fn run(a: Args) -> Result<()> {
    let started = Instant::now();
    if !(a.eps.is_finite() && a.eps >= 0.0) {
        return Err(Error::BadInput(format!(
            "--eps must be finite and ≥ 0, got {}",
            a.eps
        )));
    }
    crate::score::check_temperature(a.temperature).map_err(|_| {
        Error::BadInput(format!(
            "--temperature must be finite and > 0, got {}",
            a.temperature
        ))
    })?;
    let methods = if a.methods.is_empty() {
        vec![
            Method::Sample,
            Method::Pgd,
            Method::Clever,
            Method::Local,
            Method::Global,
            Method::Radius,
        ]
    } else {
        a.methods.clone()
    };
    let has = |m: Method| methods.contains(&m);
    let device = Device::Cpu;
    let model =
        Model::load_energy_of(&a.model, &device, a.score, "--score")?.to_dtype(DType::F64)?;
    let net = Net::from_model(&model)?;
    let shape = model.spec().input_shape;
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    let data_subset = a.subset.apply(
        crate::data::load_as(&a.data, &root, shape)?,
        a.limit,
        "--limit",
    )?;
    let id_val_spec = a.id_val.clone().unwrap_or_else(|| default_id_val(&a.data));
    let id_val_subset = a.subset.apply(
        crate::data::load_as(&id_val_spec, &root, shape)?,
        a.id_val_limit,
        "--id-val-limit",
    )?;
    let subsets = [
        data_subset.record(a.subset, a.limit),
        id_val_subset.record(a.subset, a.id_val_limit),
    ];
    let (data, data_indices, id_val) = (data_subset.data, data_subset.indices, id_val_subset.data);
    let is_id = !a.is_ood && base_name(&a.data) == base_name(&id_val_spec);
    let oracle = GradOracle {
        model: &model,
        temperature: a.temperature,
        batch: 256,
    };
    let mut val_scores = Vec::with_capacity(id_val.len());
    for start in (0..id_val.len()).step_by(500) {
        let idx: Vec<usize> = (start..(start + 500).min(id_val.len())).collect();
        let x = id_val.batch(&idx, &device)?;
        val_scores.extend(crate::score::score_batch(
            &model,
            &x,
            crate::score::ScoreKind::Energy,
            a.temperature,
        )?);
    }
    let gamma = crate::metrics::threshold_at_tpr(&val_scores, 0.95)?;
    eprintln!(
        "oodcert lipschitz: γ = {gamma:.6} (TPR 95% on {} images of {id_val_spec})",
        id_val.len()
    );

    let t_global = Instant::now();
    let global = if has(Method::Global) || has(Method::Radius) {
        Some(global_bound(&net, a.norm)?)
    } else {
        None
    };
    let global_s = t_global.elapsed().as_secs_f64();
    let pgd = PgdConfig {
        steps: a.pgd_steps,
        restarts: a.pgd_restarts,
        ..Default::default()
    };
    let ccfg = CleverConfig {
        batches: a.clever_batches,
        per_batch: a.clever_samples,
    };
    let head = if a.simplex { Head::Simplex } else { Head::Box };
    let pre = match a.bounds {
        BoundsKind::Ibp => PreBounds::Ibp,
        BoundsKind::Crown => PreBounds::Crown {
            max_dim: a.crown_max_dim,
        },
    };
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(data.len() as u64)
    };
    let recurjac_skip = if has(Method::Recurjac) {
        unsupported(&net).map(|why| format!("not supported: {why}"))
    } else {
        None
    };
    if let Some(why) = &recurjac_skip {
        eprintln!("oodcert lipschitz: RecurJac {why} (column upper_recurjac left empty)");
    }
    let mut times = [0.0f64; 7];
    let mut rows = Vec::with_capacity(data.len());
    for (i, &original) in data_indices.iter().enumerate() {
        let x: Vec<f64> = data.image(i).iter().map(|&v| v as f64).collect();
        let ball = Ball::new(x.clone(), a.eps, a.norm, a.unit_box)?;
        let t = Instant::now();
        let sg = oracle.score_grads(std::slice::from_ref(&x))?;
        let (score, g) = sg
            .first()
            .ok_or_else(|| Error::Internal("no score".into()))?;
        let mut row = Row {
            index: original,
            label: data.labels[i],
            score: *score,
            grad_norm: Some(a.norm.dual_norm(g)),
            ..Default::default()
        };
        if has(Method::Sample) {
            row.lower_sample = Some(lower_by_sampling(&oracle, &ball, a.samples, &mut rng)?);
        }
        times[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if has(Method::Pgd) {
            row.lower_pgd = Some(lower_by_pgd(&oracle, &ball, &pgd, &mut rng)?);
        }
        times[1] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if has(Method::Clever) {
            let fit = clever(&oracle, &ball, &ccfg, &mut rng)?;
            row.clever = Some(fit.estimate);
            row.clever_ks = Some(fit.ks_stat);
        }
        times[2] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if has(Method::Local) || has(Method::Radius) {
            row.upper_local = Some(fastlip_with(&net, &ball, a.temperature, head, pre)?.value);
        }
        times[3] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if has(Method::Recurjac) {
            if let Some(why) = &recurjac_skip {
                row.recurjac_rule = Some(why.clone());
            } else {
                let rj = recurjac_limited(&net, &ball, a.temperature, pre, a.recurjac_max_work)?;
                if i == 0 && rj.skipped_levels > 0 {
                    eprintln!(
                        "oodcert lipschitz: RecurJac: {} levels would cost more than \
                         --recurjac-max-work {:e} multiply-adds per row and use FastLip's step \
                         (raise the flag to recurse there)",
                        rj.skipped_levels, a.recurjac_max_work
                    );
                }
                row.upper_recurjac = Some(rj.recurjac_value);
                row.fastlip_simplex = Some(rj.fastlip_value);
                row.recurjac_rule = Some(rj.rule.name().to_string());
                // upper_local stays the best certified local bound: min over the sound rules.
                row.upper_local = Some(row.upper_local.map_or(rj.value, |v| v.min(rj.value)));
            }
        }
        times[6] += t.elapsed().as_secs_f64();
        if let Some(gb) = &global {
            row.upper_global = Some(gb.value);
        }
        let t = Instant::now();
        if has(Method::Radius) {
            let gv = global.as_ref().map_or(f64::INFINITY, |g| g.value);
            let l = row.upper_local.unwrap_or(f64::INFINITY).min(gv);
            row.radius_at_eps = Some(lipschitz_radius((gamma - score).abs(), l, a.eps));
            row.radius_lipschitz = Some(search_radius(
                |e| {
                    lipschitz_certify_with(
                        &net,
                        &ball.with_eps(e),
                        a.temperature,
                        *score,
                        gamma,
                        gv,
                        pre,
                    )
                },
                a.eps,
                a.radius_iters,
            )?);
            times[4] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            row.radius_bound_prop = Some(search_radius(
                |e| {
                    bound_prop_certify_with(
                        &net,
                        &ball.with_eps(e),
                        a.temperature,
                        *score,
                        gamma,
                        pre,
                    )
                },
                a.eps,
                a.radius_iters,
            )?);
            times[5] += t.elapsed().as_secs_f64();
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();

    std::fs::create_dir_all(&a.out)
        .map_err(|e| Error::io(format!("creating {}", a.out.display()), e))?;
    let ball_name = format!(
        "{}{}",
        a.norm.name(),
        if a.unit_box { "∩[0,1]" } else { "" }
    );
    write_csv_atomic(&a.out.join("lipschitz.csv"), |w| {
        w.write_record([
            "index",
            "label",
            "is_id",
            "score",
            "threshold",
            "norm",
            "ball",
            "eps",
            "grad_norm",
            "lower_sample",
            "lower_pgd",
            "clever",
            "clever_ks",
            "upper_local",
            "upper_global",
            "radius_at_eps",
            "radius_lipschitz",
            "radius_bound_prop",
            "upper_recurjac",
            "recurjac_rule",
        ])
        .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        for r in &rows {
            w.write_record([
                r.index.to_string(),
                r.label.to_string(),
                is_id.to_string(),
                format!("{:.9e}", r.score),
                format!("{gamma:.9e}"),
                a.norm.name().to_string(),
                ball_name.clone(),
                format!("{:e}", a.eps),
                opt(r.grad_norm),
                opt(r.lower_sample),
                opt(r.lower_pgd),
                opt(r.clever),
                opt(r.clever_ks),
                opt(r.upper_local),
                opt(r.upper_global),
                opt(r.radius_at_eps),
                opt(r.radius_lipschitz),
                opt(r.radius_bound_prop),
                opt(r.upper_recurjac),
                r.recurjac_rule.clone().unwrap_or_default(),
            ])
            .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        }
        Ok(())
    })?;
    let n = rows.len().max(1) as f64;
    let cols: Vec<(&str, Vec<f64>)> = vec![
        (
            "grad_norm",
            rows.iter().filter_map(|r| r.grad_norm).collect(),
        ),
        (
            "lower_sample",
            rows.iter().filter_map(|r| r.lower_sample).collect(),
        ),
        (
            "lower_pgd",
            rows.iter().filter_map(|r| r.lower_pgd).collect(),
        ),
        ("clever", rows.iter().filter_map(|r| r.clever).collect()),
        (
            "upper_local",
            rows.iter().filter_map(|r| r.upper_local).collect(),
        ),
        (
            "upper_recurjac",
            rows.iter().filter_map(|r| r.upper_recurjac).collect(),
        ),
        (
            "upper_global",
            rows.iter().filter_map(|r| r.upper_global).collect(),
        ),
        (
            "radius_lipschitz",
            rows.iter().filter_map(|r| r.radius_lipschitz).collect(),
        ),
        (
            "radius_bound_prop",
            rows.iter().filter_map(|r| r.radius_bound_prop).collect(),
        ),
        (
            "tightness_local_over_pgd",
            rows.iter()
                .filter_map(|r| Some(r.upper_local? / r.lower_pgd?))
                .collect(),
        ),
        (
            "tightness_global_over_pgd",
            rows.iter()
                .filter_map(|r| Some(r.upper_global? / r.lower_pgd?))
                .collect(),
        ),
        (
            "tightness_recurjac_over_pgd",
            rows.iter()
                .filter_map(|r| Some(r.upper_recurjac? / r.lower_pgd?))
                .collect(),
        ),
        // FastLip here: the box ∩ simplex head on the same boxes, min with the local product.
        (
            "ratio_recurjac_over_fastlip_simplex",
            rows.iter()
                .filter_map(|r| Some(r.upper_recurjac? / r.fastlip_simplex?))
                .collect(),
        ),
        (
            "share_recurjac_strictly_tighter",
            rows.iter()
                .filter_map(|r| Some(f64::from(u8::from(r.upper_recurjac? < r.fastlip_simplex?))))
                .collect(),
        ),
    ];
    let names = [
        "sample",
        "pgd",
        "clever",
        "local",
        "radius_lipschitz",
        "radius_bound_prop",
        "recurjac",
    ];
    write_csv_atomic(&a.out.join("summary.csv"), |w| {
        w.write_record(["quantity", "n", "mean", "median"])
            .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        for (name, v) in &cols {
            let mean = if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            };
            let mut m = v.clone();
            w.write_record([
                name.to_string(),
                v.len().to_string(),
                format!("{mean:.9e}"),
                format!("{:.9e}", median(&mut m)),
            ])
            .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        }
        for (name, t) in names.iter().zip(times) {
            w.write_record([
                format!("seconds_per_sample_{name}"),
                rows.len().to_string(),
                format!("{:.6e}", t / n),
                String::new(),
            ])
            .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        }
        w.write_record([
            "seconds_global_once".to_string(),
            "1".into(),
            format!("{global_s:.6e}"),
            String::new(),
        ])
        .map_err(|e| Error::Internal(format!("csv: {e}")))?;
        Ok(())
    })?;
    let gjson =
        serde_json::to_string_pretty(&global).map_err(|e| Error::Internal(format!("json: {e}")))?;
    write_atomic(&a.out.join("global.json"), (gjson + "\n").as_bytes())?;
    let config = serde_json::json!({
        "model": a.model, "data": a.data, "id_val": id_val_spec, "id_val_limit": a.id_val_limit, "is_id": is_id,
        "norm": a.norm, "eps": a.eps, "ball": ball_name, "box": a.unit_box, "limit": a.limit, "subset": a.subset, "subsets": subsets, "methods": methods,
        "score": a.score.name(), "temperature": a.temperature, "threshold": gamma, "threshold_rule": "TPR 95% on ID validation (S <= gamma is ID)",
        "samples": a.samples, "pgd": pgd, "clever": ccfg, "radius_iters": a.radius_iters,
        "local_head": if a.simplex { "box-simplex" } else { "box" },
        "bounds": a.bounds, "crown_max_dim": a.crown_max_dim, "recurjac_max_work": a.recurjac_max_work, "dtype": "f64",
        "recurjac": if !has(Method::Recurjac) { "not requested".to_string() } else { recurjac_skip.clone().unwrap_or_else(|| "RecurJac (energy row and class rows; dense, conv, max-pool, residual), min with FastLip box-simplex and the local product".into()) },
    });
    let mut man = Manifest::new("lipschitz", config, "cpu");
    man.seeds = vec![a.seed];
    man.datasets = vec![
        DatasetRecord {
            name: data.name.clone(),
            sha256: data.sha256.clone(),
            n: data.len(),
            role: if is_id { "id".into() } else { "ood".into() },
        },
        DatasetRecord {
            name: id_val.name.clone(),
            sha256: id_val.sha256.clone(),
            n: id_val.len(),
            role: "id-val".into(),
        },
    ];
    man.model_sha256 = Some(crate::model::sha256_file(&a.model)?);
    for f in ["lipschitz.csv", "summary.csv", "global.json"] {
        man.add_output(&a.out, f)?;
    }
    man.elapsed_s = started.elapsed().as_secs_f64();
    man.write(&a.out)?;
    eprintln!(
        "oodcert lipschitz: wrote {}/{{lipschitz.csv,summary.csv,global.json,manifest.json}}",
        a.out.display()
    );
    Ok(())
}
