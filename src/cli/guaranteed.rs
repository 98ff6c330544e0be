//! `oodcert guaranteed`: guaranteed AUROC / FPR95 vs ε from certified score bounds (`guaranteed`).

use crate::bounds::Norm;
use crate::data::subset::SubsetSpec;
use crate::error::{Error, Result};
use crate::guaranteed::{GuaranteedConfig, run as run_guaranteed};
use crate::lipschitz::BoundsKind;
use clap::Parser;
use std::path::PathBuf;

/// Flags of `oodcert guaranteed`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Model file (oodcert safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// In-distribution test set.
    #[arg(long)]
    pub id: String,
    /// OOD test sets, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ood: Vec<String>,
    /// `l2` or `linf` (pixel units of [0,1] images; balls are intersected with the pixel box).
    #[arg(long)]
    pub norm: String,
    /// Radii ε > 0, comma-separated (ε = 0, the clean metrics, is always included).
    #[arg(long, value_delimiter = ',', required = true)]
    pub eps: Vec<f64>,
    /// Bound propagation for S over each ball.
    #[arg(long, value_enum, default_value_t = BoundsKind::Crown)]
    pub bounds: BoundsKind,
    /// CROWN tightens a layer's box only when it has at most this many entries.
    #[arg(long, default_value_t = 4096)]
    pub crown_max_dim: usize,
    /// Temperature T of the energy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Images per set (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    #[command(flatten)]
    pub subset: SubsetSpec,
    /// Data directory (default $OODCERT_DATA or ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output folder (bounds.csv, guaranteed.csv, manifest.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses the flags and runs [`crate::guaranteed::run`].
pub fn run(a: Args) -> Result<()> {
    let norm = match a.norm.as_str() {
        "l2" => Norm::L2,
        "linf" => Norm::Linf,
        o => {
            return Err(Error::BadInput(format!("--norm {o}: expected l2 or linf")));
        }
    };
    let cfg = GuaranteedConfig {
        model: a.model,
        id: a.id,
        ood: crate::data::class_filter::rejoin_specs(a.ood),
        norm,
        eps: a.eps,
        bounds: a.bounds,
        crown_max_dim: a.crown_max_dim,
        temperature: a.temperature,
        limit: a.limit,
        subset: a.subset,
        data_root: a.data_dir.unwrap_or_else(crate::data::default_data_dir),
        out: a.out,
    };
    run_guaranteed(&cfg)?;
    eprintln!(
        "oodcert: wrote {}/{{bounds.csv,guaranteed.csv,manifest.json}}",
        cfg.out.display()
    );
    Ok(())
}
