//! `oodcert verify --run DIR`: re-check a lipschitz, certify or guaranteed run by attacking inside
//! every certified radius (or ball of certified score bounds); writes verify.csv and verify_summary.csv; exit code 1 when a deterministic
//! certificate is violated (or smoothing violations exceed their α budget).

use crate::error::{Error, Result};
use crate::verify::{
    AttackConfig, verify_certify_run, verify_guaranteed_run, verify_lipschitz_run, write_outputs,
};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder written by `oodcert lipschitz`, `oodcert certify` (or `merge`) or
    /// `oodcert guaranteed`.
    #[arg(long)]
    pub run: PathBuf,
    /// The model (required for certify runs, whose manifest holds only its SHA-256).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to write verify.csv and verify_summary.csv (default: the run folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// PGD steps per attack.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// PGD restarts (the first from the clean point, the others uniform in the ball).
    #[arg(long, default_value_t = 5)]
    pub restarts: usize,
    /// Fresh Monte Carlo samples at each attacked point (certify runs).
    #[arg(long, default_value_t = 2000)]
    pub n_fresh: u64,
    /// Check at most K certified samples (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data directory (default: $OODCERT_DATA or data/ at the repository root).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let root = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    if a.steps == 0 || a.restarts == 0 {
        return Err(Error::BadInput(
            "--steps and --restarts must be at least 1".into(),
        ));
    }
    // An --out elsewhere must not hold a run: its verify files would pass for that run's.
    if let Some(out) = &a.out {
        let same = crate::evidence::manifest::same_path(out, &a.run);
        if let (false, Some(other)) = (same, crate::evidence::manifest::occupant(out)) {
            return Err(Error::BadInput(format!(
                "--out {} holds the output of `oodcert {other}`; its verify files would pass for that run's: give another --out, or none (the run's own folder)",
                out.display()
            )));
        }
    }
    let cfg = AttackConfig {
        steps: a.steps,
        restarts: a.restarts,
        step_frac: 2.5 / a.steps as f64,
        seed: a.seed,
    };
    // The file the certificates come from (it tells the run's kind), hashed before it is read, so
    // the summary names what was attacked.
    let Some(prov) = crate::verify::VerifyProvenance::of_run(&a.run, cfg)? else {
        return Err(Error::BadInput(format!(
            "{} holds no lipschitz.csv, certify.csv or bounds.csv: not a lipschitz, certify or guaranteed run",
            a.run.display()
        )));
    };
    let (rows, summary) = match prov.source {
        "lipschitz.csv" => verify_lipschitz_run(&a.run, a.model.as_deref(), &root, &cfg, a.limit)?,
        "bounds.csv" => verify_guaranteed_run(&a.run, a.model.as_deref(), &root, &cfg, a.limit)?,
        _ => {
            let model = a.model.as_deref().ok_or_else(|| {
                Error::BadInput(
                    "verifying a certify run needs --model (its manifest stores only the SHA-256)"
                        .into(),
                )
            })?;
            if a.n_fresh == 0 {
                return Err(Error::BadInput("--n-fresh must be at least 1".into()));
            }
            verify_certify_run(&a.run, model, &root, &cfg, a.n_fresh, a.limit)?
        }
    };
    let out = a.out.clone().unwrap_or_else(|| a.run.clone());
    write_outputs(&out, &rows, &summary, &prov)?;
    println!(
        "{} certificates attacked, {} violated (allowed: {}{}); {} decisions changed by attacks beyond the radius (≤ 8×), median attack/certified radius {}",
        summary.certificates,
        summary.violations,
        summary.allowed,
        if summary.deterministic {
            ", deterministic certificates"
        } else {
            ", α budget of probabilistic certificates"
        },
        summary.changed,
        summary.median_ratio
    );
    if summary.passed() {
        Ok(())
    } else {
        Err(Error::CheckFailed(format!(
            "{} of {} certificates violated by attack (allowed {}): see {}",
            summary.violations,
            summary.certificates,
            summary.allowed,
            out.join("verify.csv").display()
        )))
    }
}
