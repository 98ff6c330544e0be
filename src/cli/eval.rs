//! `oodcert eval`: score an ID test set and OOD sets with a model; write metrics.csv, scores.csv and
//! manifest.json, and print the metrics.

use crate::error::Result;
use crate::evaluation::{EvalConfig, evaluate};
use crate::metrics::{FprConvention, FprRule};
use crate::score::ScoreKind;
use std::path::PathBuf;

/// How FPR@TPR is read (theory.md §5); see `oodcert metrics --help`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Convention {
    /// ID positive, FPR at the first threshold where TPR ≥ t (default).
    First,
    /// ID positive, recall nearest t (the GReg/energy-OOD code).
    Nearest,
    /// OOD positive (OpenOOD).
    OodPositive,
}

impl From<Convention> for FprConvention {
    fn from(c: Convention) -> Self {
        match c {
            Convention::First => FprConvention::First,
            Convention::Nearest => FprConvention::Nearest,
            Convention::OodPositive => FprConvention::OodPositive,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model file (oodcert safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// In-distribution test set, e.g. `mnist` or `mnist:test`.
    #[arg(long)]
    pub id: String,
    /// OOD test sets, comma-separated, e.g. `animal-mnist,textures,lfw,digits8,noise-gauss`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ood: Vec<String>,
    /// Detector score (larger = more OOD).
    #[arg(long, value_enum, default_value = "energy")]
    pub score: ScoreKind,
    /// Temperature T of the energy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// FPR@TPR convention.
    #[arg(long, value_enum, default_value = "first")]
    pub convention: Convention,
    /// TPR level of the FPR column.
    #[arg(long, default_value_t = 0.95)]
    pub tpr: f64,
    /// Output directory.
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    /// Use at most N images of each set (0 = all), chosen by --subset; scores.csv keeps each
    /// image's original index.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    #[command(flatten)]
    pub subset: crate::data::subset::SubsetSpec,
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
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
    let device = crate::device::parse_device(&a.device)?;
    let cfg = EvalConfig {
        model: a.model,
        id: a.id,
        ood: crate::data::class_filter::rejoin_specs(a.ood),
        score: a.score,
        temperature: a.temperature,
        rule: FprRule {
            convention: a.convention.into(),
            tpr: a.tpr,
        },
        limit: a.limit,
        subset: a.subset,
        batch_size: a.batch_size,
        data_root: a.data_dir.unwrap_or_else(crate::data::default_data_dir),
        out: a.out,
        progress: !a.quiet,
    };
    let report = evaluate(&cfg, &device)?;
    print!("{}", report.table(cfg.rule, cfg.score));
    eprintln!(
        "oodcert: wrote {}/{{metrics.csv,scores.csv,manifest.json}}",
        cfg.out.display()
    );
    Ok(())
}
