//! `oodcert train`: train a classifier from a TOML config.

use crate::error::Result;
use crate::evidence::{DatasetRecord, Manifest, sha256_file};
use crate::train::{TrainConfig, TrainOptions};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's TOML configuration (see analysis/configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory (model.safetensors, train_log.csv, checkpoints/, manifest.json).
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Override the config's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override `train.max_steps`.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Override any config key: `--set loss.lambda_grad=0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Data directory (default: $OODCERT_DATA or data/ at the repository root).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// cpu, or cuda[:N] in a binary built with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut sets = a.set.clone();
    if let Some(s) = a.seed {
        sets.push(format!("seed={s}"));
    }
    if let Some(m) = a.max_steps {
        sets.push(format!("train.max_steps={m}"));
    }
    let cfg = TrainConfig::load(&a.config, &sets)?;
    let device = crate::device::parse_device(&a.device)?;
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    let model = run_config(&cfg, &a.config, &a.out, &root, &device, a.resume, a.quiet)?;
    println!("{}", model.display());
    Ok(())
}

/// Trains `cfg` into `out` and writes its manifest; returns the model file.
pub fn run_config(
    cfg: &TrainConfig,
    config_path: &Path,
    out: &Path,
    data_root: &Path,
    device: &Device,
    resume: bool,
    quiet: bool,
) -> Result<PathBuf> {
    let t0 = Instant::now();
    crate::evidence::manifest::check_out_dir(out, "train")?;
    let opts = TrainOptions {
        out: out.to_path_buf(),
        data_root: data_root.to_path_buf(),
        device: device.clone(),
        resume,
        progress: !quiet,
    };
    let outcome = crate::train::train(cfg, &opts)?;
    let config = manifest_config(cfg, config_path);
    let mut m = Manifest::new("train", config, &crate::device::describe(device));
    m.seeds = vec![cfg.seed];
    for (d, role) in std::iter::once((&outcome.id_train, "id-train"))
        .chain(outcome.aux_train.iter().map(|d| (d, "aux-train")))
    {
        m.datasets.push(DatasetRecord::of(d, d.len(), role));
    }
    if let Some(p) = &cfg.model.init_from {
        m.datasets.push(DatasetRecord {
            name: format!("init_from:{p}"),
            sha256: sha256_file(Path::new(p))?,
            n: 0,
            role: "initial-weights".into(),
            class_filter: None,
        });
    }
    m.model_sha256 = Some(sha256_file(&outcome.model_path)?);
    m.add_output(out, "model.safetensors")?;
    m.add_output(out, "train_log.csv")?;
    m.elapsed_s = t0.elapsed().as_secs_f64();
    m.write(out)?;
    if let Some(r) = &outcome.last {
        eprintln!(
            "oodcert: {} steps in {:.1}s; last logged step: loss {:.4}, batch accuracy {:.3}, mean |∇S| {:.4}",
            outcome.steps, m.elapsed_s, r.loss, r.acc, r.grad_norm_in
        );
    }
    Ok(outcome.model_path)
}

/// The configuration recorded in a training run's manifest: the parsed config, the file it came
/// from, and which penalty form was in force.
pub fn manifest_config(cfg: &TrainConfig, config_path: &Path) -> serde_json::Value {
    let mut config = serde_json::to_value(cfg).unwrap_or_default();
    config["config_file"] = serde_json::json!(config_path);
    config["penalty_form_used"] = serde_json::json!(if cfg.loss.lambda_grad > 0.0 {
        cfg.loss.penalty_form.as_str()
    } else {
        "none (lambda_grad = 0)"
    });
    config
}
