//! `oodcert claims --metrics metrics_all.csv --baseline energy --arm greg --out DIR`: the paper's
//! claims decided over seeds with intervals and an exact rank test (`evidence::claims`).

use crate::error::Result;
use crate::evidence::claims::{ClaimsConfig, run as run_claims};
use std::path::PathBuf;

/// Flags of `oodcert claims`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A benchmark's metrics_all.csv (columns arm, seed, ood and the metrics).
    #[arg(long)]
    pub metrics: PathBuf,
    /// The arm the others are compared with.
    #[arg(long)]
    pub baseline: String,
    /// Arms claimed to improve on the baseline, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub arm: Vec<String>,
    /// Metrics, comma-separated: fpr95, auroc, aupr_in, aupr_out, id_accuracy.
    #[arg(long, value_delimiter = ',', default_value = "fpr95,auroc")]
    pub metric: Vec<String>,
    /// A single-run arm shown beside the means for context (e.g. ce, the start point); not tested.
    #[arg(long)]
    pub reference: Option<String>,
    /// Output folder (claims.csv, claims.md).
    #[arg(long)]
    pub out: PathBuf,
}

/// Decides the claims, writes the files and prints the verdict counts on stderr.
pub fn run(a: Args) -> Result<()> {
    let cfg = ClaimsConfig {
        metrics_csv: a.metrics,
        baseline: a.baseline,
        arms: a.arm,
        metrics: a.metric,
        reference: a.reference,
        out: a.out,
    };
    let claims = run_claims(&cfg)?;
    let n = |v: &str| claims.iter().filter(|c| c.verdict.name() == v).count();
    eprintln!(
        "oodcert claims: {} claims ({} supported, {} contradicted, {} undecided); wrote {}/{{claims.csv,claims.md}}",
        claims.len(),
        n("supported"),
        n("contradicted"),
        n("undecided"),
        cfg.out.display()
    );
    Ok(())
}
