//! `oodcert certify`: randomized-smoothing certificates of the detector (Cohen et al. 2019) and of
//! the clipped energy (theory.md §3–4) for an ID test set and OOD sets; writes certify.csv,
//! curves.csv and manifest.json into --out (one shard of the run with --shard).

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::evidence::{DatasetRecord, Manifest};
use crate::model::{Classifier, Model};
use crate::score::ScoreKind;
use crate::smoothing::calibrate::{CalibrationSpec, GammaSource, calibrate};
use crate::smoothing::clip::ClipRange;
use crate::smoothing::coupling::Coupling;
use crate::smoothing::engine::{ModelScorer, progress_bar};
use crate::smoothing::manifest::{
    CANDLE_VERSION, CertifyManifest, DatasetEntry, FORMAT, OUTPUT_FILES, PROVENANCE, RunConfig,
    conventions,
};
use crate::smoothing::noise::NoiseLayout;
use crate::smoothing::output::write_run;
use crate::smoothing::run::{CertifySet, certify_subsets};
use crate::smoothing::sample::{SmoothingParams, Thresholds};
use crate::smoothing::shard::Shard;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `oodcert certify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file (oodcert safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// In-distribution test set, DATASET[:split] (its samples have is_id = 1).
    #[arg(long)]
    pub data: String,
    /// Out-of-distribution test set(s), DATASET[:split]; repeat for several (is_id = 0).
    #[arg(long)]
    pub ood: Vec<String>,
    /// Noise level σ (ℓ2, pixel units of [0,1] images).
    #[arg(long)]
    pub sigma: f64,
    /// Selection samples of CERTIFY.
    #[arg(long, default_value_t = 100)]
    pub n0: u64,
    /// Estimation samples.
    #[arg(long, default_value_t = 100_000)]
    pub n: u64,
    /// Failure probability of each certificate, in (0, 0.5].
    #[arg(long, default_value_t = 0.001)]
    pub alpha: f64,
    /// Certify at most K images of each dataset (0 = all), chosen by --subset; certify.csv keeps
    /// each image's original index (and its noise stream).
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub subset: crate::data::subset::SubsetSpec,
    /// Certify one slice: k/N (0-based k), env (Slurm array) or env/N (Slurm or Kubernetes Indexed Job).
    #[arg(long)]
    pub shard: Option<String>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Noisy copies per forward pass (does not change results).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Seed of the noise streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Noise layout: v2 (Philox4x32-10, vectorised Box–Muller) or v1 (ChaCha20, libm; runs made
    /// before v2). Recorded in manifest.json; `reproduce` replays a run's own layout.
    #[arg(long, value_enum, default_value_t = NoiseLayout::V2)]
    pub noise_layout: NoiseLayout,
    /// How copies that fail the float32 coupling check count: candidates (a copy whose ambiguous
    /// coordinates each round to one of a few adjacent f32 values, ≤ 16 candidate inputs in all,
    /// gets the score interval over them) or count-against (every such copy counts against every
    /// bound; runs made before the flag). Recorded in manifest.json; `reproduce` replays a run's own rule.
    #[arg(long, value_enum, default_value_t = Coupling::Candidates)]
    pub coupling: Coupling,
    /// Detector score (larger = more OOD).
    #[arg(long, value_enum, default_value_t = ScoreKind::Energy)]
    pub score: ScoreKind,
    /// Temperature T of the energy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// ID validation set for γ, [a, b] and γ' (default: the train split of --data's dataset; a
    /// `path:` dataset has none, so it needs --id-val unless γ, --clip and --gamma-smoothed are given).
    #[arg(long)]
    pub id_val: Option<String>,
    /// Auxiliary (outlier) validation set for b (default: b from ID validation scores).
    #[arg(long)]
    pub aux_val: Option<String>,
    /// Noisy copies per validation sample.
    #[arg(long, default_value_t = 100)]
    pub cal_n: u64,
    /// Validation samples used (0 = all), chosen by --subset.
    #[arg(long, default_value_t = 1000)]
    pub cal_limit: u64,
    /// Quantile levels QA,QB of noisy validation scores giving a and b.
    #[arg(long, default_value = "0.01,0.99")]
    pub clip_quantiles: String,
    /// Fixed clip range A,B (skips its calibration).
    #[arg(long, allow_hyphen_values = true)]
    pub clip: Option<String>,
    /// Fixed γ of the base detector (skips its calibration).
    #[arg(long, allow_hyphen_values = true)]
    pub gamma: Option<f64>,
    /// Which ID validation scores set γ.
    #[arg(long, value_enum, default_value_t = GammaSource::Clean)]
    pub gamma_from: GammaSource,
    /// Fixed γ' of the smoothed clipped score (skips its calibration).
    #[arg(long, allow_hyphen_values = true)]
    pub gamma_smoothed: Option<f64>,
    /// Radius step of curves.csv (default σ/10).
    #[arg(long)]
    pub radius_step: Option<f64>,
    /// Write 0 in the time column, so outputs are byte-reproducible.
    #[arg(long)]
    pub no_timing: bool,
    /// Device: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Data directory (default: $OODCERT_DATA or data/ at the repository root).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The conventions line of a run whose `--limit`/`--cal-limit` images are a stratified subset
/// (absent for first-K runs, whose manifests stay as before `--subset`).
pub const SUBSET_CONVENTION: &str = "subset: --limit/--cal-limit images are a stratified subset (largest-remainder per-label quotas, ChaCha8 draw under config.subset.seed; data::subset); datasets[].indices lists the certified original indices, which key the noise streams and fill the idx column";

/// Parses "X,Y" into two floats for `flag`.
fn pair(text: &str, flag: &str) -> Result<(f64, f64)> {
    let bad = || Error::BadInput(format!("--{flag} {text}: expected two numbers X,Y"));
    let (x, y) = text.split_once(',').ok_or_else(bad)?;
    Ok((
        x.trim().parse().map_err(|_| bad())?,
        y.trim().parse().map_err(|_| bad())?,
    ))
}

/// The manifest entry of `d`, of which `chosen` (original indices) were used; `stratified`
/// records them (certified sets) or their SHA-256 (validation sets).
fn dataset_entry(d: &Dataset, role: &str, chosen: &[usize], stratified: bool) -> DatasetEntry {
    let certified = role == "id" || role == "ood";
    DatasetEntry {
        name: d.name.clone(),
        sha256: d.sha256.clone(),
        role: role.to_string(),
        size: d.len() as u64,
        used: chosen.len() as u64,
        indices: (stratified && certified).then(|| chosen.iter().map(|&i| i as u64).collect()),
        indices_sha256: (stratified && !certified)
            .then(|| crate::data::subset::indices_sha256(chosen)),
        class_filter: d.selection.clone(),
    }
}

/// Writes `provenance.json` into `dir`, which holds a certify or merge output: the command line
/// and working directory of `command`, git state, clock, and the SHA-256 of every output file.
/// `config` is recorded as given (`reproduce --manifest` reads it; `merge` never does).
pub fn write_provenance(
    dir: &Path,
    command: &str,
    config: serde_json::Value,
    m: &CertifyManifest,
    t0: Instant,
) -> Result<()> {
    let mut p = Manifest::new(command, config, &m.device);
    p.seeds = vec![m.config.seed];
    p.datasets = m
        .datasets
        .iter()
        .map(|d| DatasetRecord {
            name: d.name.clone(),
            sha256: d.sha256.clone(),
            n: d.used as usize,
            role: d.role.clone(),
            class_filter: d.class_filter.clone(),
        })
        .collect();
    p.model_sha256 = Some(m.model_sha256.clone());
    for f in OUTPUT_FILES {
        p.add_output(dir, f)?;
    }
    p.elapsed_s = t0.elapsed().as_secs_f64();
    let text = serde_json::to_string_pretty(&p)
        .map_err(|e| Error::Internal(format!("serialising {PROVENANCE}: {e}")))?;
    crate::evidence::write_atomic(&dir.join(PROVENANCE), (text + "\n").as_bytes())
}

/// Runs `oodcert certify`.
pub fn run(a: Args) -> Result<()> {
    let t0 = Instant::now();
    let params = SmoothingParams {
        sigma: a.sigma,
        n0: a.n0,
        n: a.n,
        alpha: a.alpha,
        batch: a.batch,
        noise: a.noise_layout,
        coupling: a.coupling,
    };
    params.check()?;
    crate::evidence::manifest::check_out_dir(&a.out, "certify")?;
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let clip_quantiles = pair(&a.clip_quantiles, "clip-quantiles")?;
    let (qa, qb) = clip_quantiles;
    if !((0.0..=1.0).contains(&qa) && (0.0..=1.0).contains(&qb) && qa < qb) {
        return Err(Error::BadInput(format!(
            "--clip-quantiles {}: need 0 <= QA < QB <= 1",
            a.clip_quantiles
        )));
    }
    let clip = a
        .clip
        .as_deref()
        .map(|c| pair(c, "clip").and_then(|(x, y)| ClipRange::new(x, y)))
        .transpose()?;
    let radius_step = a.radius_step.unwrap_or(a.sigma / 10.0);
    if !(radius_step.is_finite() && radius_step > 0.0) {
        return Err(Error::BadInput(format!(
            "--radius-step must be > 0, got {radius_step}"
        )));
    }
    crate::data::class_filter::check_disjoint(&a.data, &a.ood, "--ood")?;
    let device = crate::device::parse_device(&a.device)?;
    // DOS's absent-class score is certified as the energy of its K-output view.
    let (model, kind) = match a.score {
        ScoreKind::AbsentClass => (
            Model::load_energy_of(&a.model, &device, a.score, "--score")?,
            ScoreKind::Energy,
        ),
        k => (Model::load(&a.model, &device)?, k),
    };
    let model_sha256 = crate::model::sha256_file(&a.model)?;
    let shape = model.spec().input_shape;
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    let load = |spec: &str| -> Result<Dataset> {
        let d = crate::data::load_as(spec, &root, shape)?;
        d.validate()?;
        Ok(d)
    };
    let limit = a.limit.filter(|&k| k > 0);
    let stratified = a.subset.rule == crate::data::subset::SubsetRule::Stratified;
    let id = load(&a.data)?;
    let oods = a.ood.iter().map(|s| load(s)).collect::<Result<Vec<_>>>()?;
    let spec = CalibrationSpec {
        n_cal: a.cal_n,
        tpr: 0.95,
        clip_quantiles,
        gamma_source: a.gamma_from,
        gamma: a.gamma,
        clip,
        gamma_smoothed: a.gamma_smoothed,
        noise: a.noise_layout,
    };
    let need_val = a.gamma.is_none() || clip.is_none() || a.gamma_smoothed.is_none();
    let id_val = if need_val {
        // A `path:` dataset has no train split to default to.
        if a.id_val.is_none() && a.data.trim_start().starts_with("path:") {
            return Err(Error::BadInput(format!(
                "--data {} has no train split to calibrate on: pass --id-val DATASET (ID \
                 validation images for γ, [a, b] and γ'), or all of --gamma, --clip and \
                 --gamma-smoothed",
                a.data
            )));
        }
        let name = a
            .id_val
            .clone()
            .unwrap_or_else(|| crate::data::class_filter::train_split_of(&a.data));
        let sub = a
            .subset
            .apply(load(&name)?, a.cal_limit as usize, "--cal-limit")?;
        eprintln!(
            "certify: ID validation set {name} ({} images, {} subset)",
            sub.data.len(),
            a.subset.rule.name()
        );
        Some(sub)
    } else {
        None
    };
    let aux_val = match (&a.aux_val, clip) {
        (Some(s), None) => Some(
            a.subset
                .apply(load(s)?, a.cal_limit as usize, "--cal-limit")?,
        ),
        _ => None,
    };
    let (id_val_sub, aux_val_sub) = (id_val, aux_val);
    let id_val = id_val_sub.as_ref().map(|s| &s.data);
    let aux_val = aux_val_sub.as_ref().map(|s| &s.data);
    let scorer = ModelScorer {
        model: &model,
        device: device.clone(),
        kind,
        temperature: a.temperature,
    };
    let val_len = id_val.map_or(0, |d| d.len()) + aux_val.map_or(0, |d| d.len());
    let cal_bar = progress_bar(val_len as u64 * a.cal_n, "calibrate");
    let cal = calibrate(
        &scorer, &spec, id_val, aux_val, a.sigma, a.seed, a.batch, &cal_bar,
    )?;
    cal_bar.finish_and_clear();
    eprintln!(
        "certify: gamma = {} ({}), clip [{}, {}], gamma' = {} (t = {})",
        cal.gamma, cal.gamma_rule, cal.clip.lo, cal.clip.hi, cal.gamma_smoothed, cal.t
    );
    let mut sets = vec![CertifySet {
        data: &id,
        is_id: true,
    }];
    sets.extend(oods.iter().map(|d| CertifySet {
        data: d,
        is_id: false,
    }));
    let chosen: Vec<Vec<usize>> = sets
        .iter()
        .map(|s| {
            a.subset
                .chosen(s.data, limit.map_or(0, |k| k as usize), "--limit")
        })
        .collect();
    let mut datasets: Vec<DatasetEntry> = sets
        .iter()
        .zip(&chosen)
        .map(|(s, c)| dataset_entry(s.data, if s.is_id { "id" } else { "ood" }, c, stratified))
        .collect();
    if let Some(s) = &id_val_sub {
        datasets.push(dataset_entry(&s.data, "id-val", &s.indices, stratified));
    }
    if let Some(s) = &aux_val_sub {
        datasets.push(dataset_entry(&s.data, "aux-val", &s.indices, stratified));
    }
    let total: u64 = chosen.iter().map(|c| c.len() as u64).sum();
    let mine = shard.map_or(total, |s| {
        let r = s.range(total);
        r.end - r.start
    });
    let manifest = CertifyManifest {
        format: FORMAT.to_string(),
        oodcert_version: env!("CARGO_PKG_VERSION").to_string(),
        candle_version: CANDLE_VERSION.to_string(),
        config: RunConfig {
            sigma: a.sigma,
            n0: a.n0,
            n: a.n,
            alpha: a.alpha,
            seed: a.seed,
            limit,
            score: a.score.name().to_string(),
            temperature: a.temperature,
            radius_step,
            cal_n: a.cal_n,
            cal_limit: need_val.then_some(a.cal_limit),
            clip_quantiles,
            tpr: 0.95,
            timing: !a.no_timing,
            subset: stratified.then_some(a.subset),
        },
        calibration: cal.clone(),
        datasets,
        model_sha256,
        model_spec: serde_json::to_value(model.spec())
            .map_err(|e| Error::Internal(format!("serialising the model spec: {e}")))?,
        device: crate::device::describe(&device),
        noise_layout: a.noise_layout.describe().to_string(),
        coupling: a.coupling.manifest_field(),
        conventions: {
            let mut c = conventions();
            if stratified {
                c.push(SUBSET_CONVENTION.to_string());
            }
            c
        },
        total_samples: total,
        shard,
    };
    let th = Thresholds {
        gamma: cal.gamma,
        gamma_smoothed: cal.gamma_smoothed,
        clip: cal.clip,
    };
    eprintln!(
        "certify: {mine} of {total} samples × {} noisy passes, batch {}, {} threads",
        a.n0 + a.n,
        a.batch,
        rayon::current_num_threads()
    );
    let bar = progress_bar(mine.saturating_mul(a.n0 + a.n), "certify");
    let chosen: Vec<Vec<u64>> = chosen
        .iter()
        .map(|c| c.iter().map(|&i| i as u64).collect())
        .collect();
    let records = certify_subsets(
        &scorer,
        &params,
        &th,
        a.seed,
        &sets,
        &chosen,
        shard,
        !a.no_timing,
        &bar,
    )?;
    bar.finish_and_clear();
    write_run(&a.out, &records, &manifest)?;
    let config = serde_json::json!({
        "run": &manifest.config,
        "shard": manifest.shard,
        "noise_layout": a.noise_layout.name(),
        "coupling": a.coupling.name(),
    });
    write_provenance(&a.out, "certify", config, &manifest, t0)?;
    eprintln!(
        "certify: wrote {}/{{certify.csv,curves.csv,curves_all.csv,manifest.json,provenance.json}}",
        a.out.display()
    );
    Ok(())
}
