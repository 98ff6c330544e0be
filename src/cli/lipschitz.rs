//! `oodcert lipschitz`: per-sample Lipschitz analysis of the energy score on a ball — gradient
//! norm, sampling and PGD lower bounds, CLEVER, certified local (FastLip; RecurJac on request)
//! and global bounds, certified radii by the Lipschitz and bound-propagation routes. Writes lipschitz.csv,
//! summary.csv, global.json (every global factor with its rule) and manifest.json.
//!
//! γ is the TPR-95 threshold of S on ID validation data (`--id-val`, default the `--data` set's
//! train split); `is_id` is true when `--data` names the same set as `--id-val` (override with
//! `--is-ood`).

use crate::bounds::Norm;
use crate::error::Result;
use crate::lipschitz::{BoundsKind, Config, Method, Options};
use crate::smoothing::shard::Shard;
use std::path::PathBuf;

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
    /// Bisection steps of the radius search (after doubling from ε while the ball certifies itself).
    #[arg(long, default_value_t = 10)]
    pub radius_iters: usize,
    /// Largest radius searched (default: the pixel box's diameter in the ball's norm, √n for ℓ2 and
    /// 1 for ℓ∞); radius_at_eps stays the certificate from the ε-ball alone.
    #[arg(long)]
    pub radius_max: Option<f64>,
    /// Pre-activation and logit bounds for the local bound and the bound-propagation radius.
    #[arg(long, value_enum, default_value = "crown")]
    pub bounds: BoundsKind,
    /// An extra cap on CROWN: a box with more entries keeps IBP. The affine chain before the first
    /// ReLU is always bounded exactly over the ball, and CROWN's real limit is its work budget
    /// (2·10¹⁰ estimated multiply-adds per box; src/bounds/crown.rs).
    #[arg(long, default_value_t = 4096)]
    pub crown_max_dim: usize,
    /// α-CROWN (`--bounds crown`): Adam steps on the ReLU slopes and max-pool upper planes of
    /// every sign-uncertain ReLU input's bounds, on networks without residual blocks (0: CROWN;
    /// at most 1000). 10 pays on ℓ∞ balls on CNNs (LeNet: 3.04 → 2.94× PGD for +0.3 s/sample; more
    /// steps changed nothing); on ℓ2 balls it cost 3 s/sample on LeNet and gained nothing.
    #[arg(long, default_value_t = 0)]
    pub alpha_iters: usize,
    /// RecurJac recurses at a level only if entries × multiply-adds of a forward pass of the rest
    /// of the network ≤ this (per top row); costlier levels use FastLip's step (sound, looser).
    #[arg(long, default_value_t = 1e10)]
    pub recurjac_max_work: f64,
    /// The Jacobian bound (`--methods …,jacobian`) tightens gradient boxes level by level, from
    /// the logits down, while the multiply-adds of all its rows stay within this budget.
    #[arg(long, default_value_t = 3e9)]
    pub jacobian_max_work: f64,
    /// Branch and bound (`--methods …,bab`): wall-clock seconds per sample (> 0). Results depend
    /// on the machine's speed; `--bab-max-domains` gives a deterministic budget.
    #[arg(long, default_value_t = 10.0)]
    pub bab_budget: f64,
    /// Branch and bound: at most N domains per sample (default: no limit).
    #[arg(long)]
    pub bab_max_domains: Option<usize>,
    /// Pattern search (`--methods …,pattern`): ascent steps per restart (each step costs three
    /// surrogate gradients on the host and one oracle gradient per restart).
    #[arg(long, default_value_t = 40)]
    pub pattern_steps: usize,
    /// Pattern search: restarts (the centre, then uniform points of the ball).
    #[arg(long, default_value_t = 4)]
    pub pattern_restarts: usize,
    /// Bound the local gradient with the box ∩ simplex softmax head (K backward passes).
    #[arg(long)]
    pub simplex: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Analyse one slice of the chosen samples: k/N (0-based k), env (Slurm array) or env/N
    /// (Slurm or Kubernetes Indexed Job); `oodcert merge` joins the slices (docs/sharding.md).
    #[arg(long)]
    pub shard: Option<String>,
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

/// Runs `oodcert lipschitz`.
pub fn run(a: Args) -> Result<()> {
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let cfg = Config {
        shard,
        model: a.model,
        data: a.data,
        id_val: a.id_val,
        id_val_limit: a.id_val_limit,
        is_ood: a.is_ood,
        limit: a.limit,
        subset: a.subset,
        data_dir: a.data_dir,
        out: a.out,
        quiet: a.quiet,
        options: Options {
            norm: a.norm,
            eps: a.eps,
            unit_box: a.unit_box,
            methods: a.methods,
            score: a.score,
            temperature: a.temperature,
            samples: a.samples,
            pgd_steps: a.pgd_steps,
            pgd_restarts: a.pgd_restarts,
            clever_batches: a.clever_batches,
            clever_samples: a.clever_samples,
            radius_iters: a.radius_iters,
            radius_max: a.radius_max,
            bounds: a.bounds,
            crown_max_dim: a.crown_max_dim,
            alpha_iters: a.alpha_iters,
            recurjac_max_work: a.recurjac_max_work,
            jacobian_max_work: a.jacobian_max_work,
            simplex: a.simplex,
            seed: a.seed,
            bab_budget: a.bab_budget,
            bab_max_domains: a.bab_max_domains,
            pattern_steps: a.pattern_steps,
            pattern_restarts: a.pattern_restarts,
        },
    };
    crate::lipschitz::run(&cfg).map(|_| ())
}
