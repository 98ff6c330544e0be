//! `oodcert claims --metrics metrics_all.csv --baseline energy --arm greg --out DIR`: the paper's
//! claims decided over seeds with intervals and an exact rank test (`evidence::claims`); with
//! `--paired-baseline RUN --paired-arm RUN` instead of `--metrics`: "the arm certifies larger
//! radii" decided on the same images (`evidence::claims::paired`).

use crate::error::{Error, Result};
use crate::evidence::claims::paired::{PairedConfig, run_paired};
use crate::evidence::claims::{ClaimsConfig, run as run_claims};
use std::path::PathBuf;

/// Flags of `oodcert claims`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A benchmark's metrics_all.csv (columns arm, seed, ood and the metrics).
    #[arg(
        long,
        required_unless_present = "paired_baseline",
        conflicts_with = "paired_baseline"
    )]
    pub metrics: Option<PathBuf>,
    /// The arm the others are compared with (with --paired-*: the baseline model's name).
    #[arg(long)]
    pub baseline: String,
    /// Arms claimed to improve on the baseline, comma-separated (with --paired-*: one name).
    #[arg(long, value_delimiter = ',', required = true)]
    pub arm: Vec<String>,
    /// Metrics, comma-separated: fpr95, auroc, aupr_in, aupr_out, id_accuracy.
    #[arg(long, value_delimiter = ',', default_value = "fpr95,auroc")]
    pub metric: Vec<String>,
    /// A single-run arm shown beside the means for context (e.g. ce, the start point); not tested.
    #[arg(long)]
    pub reference: Option<String>,
    /// Paired radii: a certify or lipschitz run (folder or CSV) of the baseline model; repeat for
    /// several (shards, or one lipschitz run per set).
    #[arg(long, requires = "paired_arm")]
    pub paired_baseline: Vec<PathBuf>,
    /// Paired radii: the arm model's runs on the same images.
    #[arg(long, requires = "paired_baseline")]
    pub paired_arm: Vec<PathBuf>,
    /// Paired radii: the radius column (certify: radius, radius_score, radius_score_hoeffding;
    /// lipschitz: radius_bound_prop, radius_lipschitz, radius_at_eps; default the first).
    #[arg(long, requires = "paired_baseline")]
    pub radius: Option<String>,
    /// Paired radii: radius step of paired_curves.csv (default: the largest radius / 50).
    #[arg(long, requires = "paired_baseline")]
    pub radius_step: Option<f64>,
    /// Output folder (claims.csv, claims.md; paired: paired.csv, paired_claims.csv,
    /// paired_curves.csv, paired.md).
    #[arg(long)]
    pub out: PathBuf,
}

/// Decides the claims, writes the files and prints the verdict counts on stderr.
pub fn run(a: Args) -> Result<()> {
    let Some(metrics_csv) = a.metrics else {
        let [arm] = a.arm.as_slice() else {
            return Err(Error::BadInput(format!(
                "--arm: a paired comparison takes one arm, got {}",
                a.arm.join(",")
            )));
        };
        let cfg = PairedConfig {
            baseline_runs: a.paired_baseline,
            arm_runs: a.paired_arm,
            baseline: a.baseline,
            arm: arm.clone(),
            radius: a.radius,
            radius_step: a.radius_step,
            out: a.out,
        };
        let r = run_paired(&cfg)?;
        for c in &r.claims {
            eprintln!(
                "oodcert claims: {} images, {}: {} larger / {} smaller / {} equal, median difference {}, signed-rank p = {:.3e}: {}",
                c.set,
                r.column,
                c.larger,
                c.smaller,
                c.equal,
                c.diff_median,
                c.signed_rank.p,
                c.verdict.name()
            );
        }
        eprintln!(
            "oodcert claims: wrote {}/{{paired.csv,paired_claims.csv,paired_curves.csv,paired.md}}",
            cfg.out.display()
        );
        return Ok(());
    };
    let cfg = ClaimsConfig {
        metrics_csv,
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
