//! Verification of certificates by attack (issue 6): inside every certified radius, search for a
//! point where the decision changes. A deterministic certificate (Lipschitz, bound propagation)
//! admits no such point; a randomized-smoothing certificate holds with probability ≥ 1-α, so its
//! check counts violations against an α budget.

mod attack;
mod guaranteed_run;
mod lipschitz_run;
mod smoothing_run;

pub use attack::{AttackConfig, attack_towards_threshold};
pub use guaranteed_run::verify_guaranteed_run;
pub use lipschitz_run::verify_lipschitz_run;
pub use smoothing_run::verify_certify_run;

use crate::error::{Error, Result};
use crate::evidence::write_csv_atomic;
use std::path::Path;

/// One certificate of one sample, attacked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyRow {
    pub dataset: String,
    pub index: u64,
    pub is_id: bool,
    /// Which certificate: `lipschitz`, `bound_prop`, `smoothing_detector`, `smoothing_score`.
    pub certificate: &'static str,
    pub certified_radius: f64,
    /// The smallest attacked radius (multiples of the certified one) at which the decision changed;
    /// NaN when no attack changed it.
    pub attack_radius: f64,
    /// The attack's most extreme score inside the certified radius (toward the threshold).
    pub best_score: f64,
    /// The decision threshold the certificate is about (γ, or t on the clipped scale).
    pub threshold: f64,
    pub violated: bool,
}

/// The verdict of a whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySummary {
    /// `lipschitz` or `certify`.
    pub run_kind: &'static str,
    /// True when every certificate checked is deterministic (violations must be 0).
    pub deterministic: bool,
    pub certificates: usize,
    pub violations: usize,
    /// Violations tolerated (0 for deterministic certificates; an α budget for smoothing).
    pub allowed: usize,
    /// Median of attack_radius / certified_radius over the certificates whose decision an attack
    /// changed within the escalated radii (NaN when none).
    pub median_ratio: f64,
    /// How many certificates that median is over.
    pub changed: usize,
}

impl VerifySummary {
    /// True when the run's certificates withstood the attacks.
    pub fn passed(&self) -> bool {
        self.violations <= self.allowed
    }
}

/// Builds the summary of a list of attacked certificates.
pub fn summarise(
    rows: &[VerifyRow],
    run_kind: &'static str,
    deterministic: bool,
    allowed: usize,
) -> VerifySummary {
    let mut ratios: Vec<f64> = rows
        .iter()
        .filter(|r| r.attack_radius.is_finite() && r.certified_radius > 0.0)
        .map(|r| r.attack_radius / r.certified_radius)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median_ratio = match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => 0.5 * (ratios[n / 2 - 1] + ratios[n / 2]),
    };
    VerifySummary {
        run_kind,
        deterministic,
        certificates: rows.len(),
        violations: rows.iter().filter(|r| r.violated).count(),
        allowed,
        median_ratio,
        changed: ratios.len(),
    }
}

/// What a verification attacked and how: the run's certificate file (its name and SHA-256, so
/// that `oodcert report` can tell a verification of this run from one of an earlier run written
/// to the same folder) and the attack's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyProvenance {
    /// The run file the certificates were read from: `lipschitz.csv`, `certify.csv` or
    /// `bounds.csv`.
    pub source: &'static str,
    /// SHA-256 of that file when it was read.
    pub source_sha256: String,
    pub attack: AttackConfig,
}

impl VerifyProvenance {
    /// The certificate file of the run in `run` (the one `oodcert verify` reads) and its
    /// SHA-256; `None` when the folder holds none of them.
    pub fn of_run(run: &Path, attack: AttackConfig) -> Result<Option<Self>> {
        let Some(source) = SOURCES.into_iter().find(|f| run.join(f).is_file()) else {
            return Ok(None);
        };
        Ok(Some(VerifyProvenance {
            source,
            source_sha256: crate::evidence::sha256_file(run.join(source))?,
            attack,
        }))
    }
}

/// The certificate files of the run kinds `oodcert verify` checks, in the order it looks for
/// them (a lipschitz, a guaranteed, a certify run).
pub const SOURCES: [&str; 3] = ["lipschitz.csv", "bounds.csv", "certify.csv"];

/// The columns of `verify_summary.csv`, in order.
pub const SUMMARY_COLUMNS: [&str; 13] = [
    "run_kind",
    "deterministic",
    "certificates",
    "violations",
    "allowed_violations",
    "passed",
    "median_attack_to_certified_radius",
    "decisions_changed_by_attack",
    "source",
    "source_sha256",
    "attack_steps",
    "attack_restarts",
    "attack_seed",
];

/// Writes `verify.csv` and `verify_summary.csv` into `out` (atomically).
pub fn write_outputs(
    out: &Path,
    rows: &[VerifyRow],
    s: &VerifySummary,
    prov: &VerifyProvenance,
) -> Result<()> {
    let e = |e: csv::Error| Error::Internal(e.to_string());
    write_csv_atomic(&out.join("verify.csv"), |w| {
        w.write_record([
            "dataset",
            "index",
            "is_id",
            "certificate",
            "certified_radius",
            "attack_radius",
            "best_score",
            "threshold",
            "violated",
        ])
        .map_err(e)?;
        for r in rows {
            w.write_record([
                r.dataset.clone(),
                r.index.to_string(),
                u8::from(r.is_id).to_string(),
                r.certificate.to_string(),
                r.certified_radius.to_string(),
                r.attack_radius.to_string(),
                r.best_score.to_string(),
                r.threshold.to_string(),
                if r.violated { "yes" } else { "no" }.to_string(),
            ])
            .map_err(e)?;
        }
        Ok(())
    })?;
    write_csv_atomic(&out.join("verify_summary.csv"), |w| {
        w.write_record(SUMMARY_COLUMNS).map_err(e)?;
        w.write_record([
            s.run_kind.to_string(),
            s.deterministic.to_string(),
            s.certificates.to_string(),
            s.violations.to_string(),
            s.allowed.to_string(),
            s.passed().to_string(),
            s.median_ratio.to_string(),
            s.changed.to_string(),
            prov.source.to_string(),
            prov.source_sha256.clone(),
            prov.attack.steps.to_string(),
            prov.attack.restarts.to_string(),
            prov.attack.seed.to_string(),
        ])
        .map_err(e)?;
        Ok(())
    })
}
