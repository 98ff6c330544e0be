//! `oodcert train`: train a classifier from a TOML config.

use crate::error::Result;
use crate::evidence::{DatasetRecord, Manifest, sha256_file};
use crate::train::{TrainConfig, TrainOptions};
use std::path::PathBuf;
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
    let t0 = Instant::now();
    let mut sets = a.set.clone();
    if let Some(s) = a.seed {
        sets.push(format!("seed={s}"));
    }
    if let Some(m) = a.max_steps {
        sets.push(format!("train.max_steps={m}"));
    }
    let cfg = TrainConfig::load(&a.config, &sets)?;
    let device = crate::device::parse_device(&a.device)?;
    let opts = TrainOptions {
        out: a.out.clone(),
        data_root: a.data_dir.clone().unwrap_or_else(crate::data::default_data_dir),
        device: device.clone(),
        resume: a.resume,
        progress: !a.quiet,
    };
    eprintln!("oodcert: training {} → {}", a.config.display(), a.out.display());
    let outcome = crate::train::train(&cfg, &opts)?;
    let mut m = Manifest::new(
        "train",
        serde_json::to_value(&cfg).unwrap_or_default(),
        &crate::device::describe(&device),
    );
    m.seeds = vec![cfg.seed];
    m.datasets.push(DatasetRecord {
        name: outcome.id_train.name.clone(),
        sha256: outcome.id_train.sha256.clone(),
        n: outcome.id_train.len(),
        role: "id-train".into(),
    });
    m.model_sha256 = Some(sha256_file(&outcome.model_path)?);
    m.add_output(&a.out, "model.safetensors")?;
    m.add_output(&a.out, "train_log.csv")?;
    m.elapsed_s = t0.elapsed().as_secs_f64();
    m.write(&a.out)?;
    if let Some(r) = &outcome.last {
        eprintln!(
            "oodcert: {} steps in {:.1}s; last logged step: loss {:.4}, batch accuracy {:.3}, mean |∇S| {:.4}",
            outcome.steps, m.elapsed_s, r.loss, r.acc, r.grad_norm_in
        );
    }
    println!("{}", outcome.model_path.display());
    Ok(())
}
