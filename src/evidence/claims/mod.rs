//! Claims decided over seeds (issue #14 item 5): per OOD set and metric, each arm's mean with a
//! 95 % t interval, the difference to the baseline with a 95 % Welch interval, the exact two-sided
//! rank-sum test, and a verdict by the rule of [`Verdict::decide`]. Input: a benchmark's
//! `metrics_all.csv` (arm, seed, ood, one column per metric); output: `claims.csv`, `claims.md`.
//! Paired radius comparisons of two models on the same images: [`paired`].

pub mod output;
pub mod paired;
pub mod paired_output;
pub mod paired_runs;
pub mod rank_test;
pub mod signed_rank;
pub mod t_interval;

pub use rank_test::{RankTest, exact_rank_test};
pub use t_interval::{Interval, mean_interval, welch_interval};

use crate::error::{Error, Result};
use crate::evidence::CsvTable;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Significance level: 95 % intervals and p < 0.05.
pub const ALPHA: f64 = 0.05;

/// The metrics a claim can be about, with the direction that is better.
pub const METRICS: [(&str, Better); 5] = [
    ("fpr95", Better::Lower),
    ("auroc", Better::Higher),
    ("aupr_in", Better::Higher),
    ("aupr_out", Better::Higher),
    ("id_accuracy", Better::Higher),
];

/// The OOD column's value for claims about the ID test set (`id_accuracy`), which every OOD row
/// of a run repeats.
pub const ID_SET: &str = "(ID test set)";

/// Which direction of a metric is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    /// `lower` or `higher`.
    pub fn name(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

/// The verdict on "the arm improves on the baseline in this metric on this set".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    Contradicted,
    Undecided,
}

impl Verdict {
    /// The rule: **supported** when the 95 % Welch interval of (arm − baseline) lies strictly on
    /// the better side of 0 *and* the exact two-sided rank test gives p < α; **contradicted**
    /// when the interval lies strictly on the worse side and p < α; **undecided** otherwise.
    pub fn decide(diff: &Interval, p: f64, better: Better) -> Verdict {
        let (improves, worsens) = match better {
            Better::Lower => (diff.hi < 0.0, diff.lo > 0.0),
            Better::Higher => (diff.lo > 0.0, diff.hi < 0.0),
        };
        if p < ALPHA && improves {
            Verdict::Supported
        } else if p < ALPHA && worsens {
            Verdict::Contradicted
        } else {
            Verdict::Undecided
        }
    }

    /// `supported`, `contradicted` or `undecided`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Undecided => "undecided",
        }
    }
}

/// The rule of [`Verdict::decide`] in words, written beside every verdict table.
pub const RULE: &str = "supported when the 95 % Welch interval of (arm − baseline) excludes 0 on the better side and the exact two-sided rank-sum p < 0.05; contradicted when it excludes 0 on the worse side and p < 0.05; undecided otherwise. Each claim is tested on its own (no correction for the number of claims).";

/// What to decide and where to write it.
#[derive(Debug, Clone)]
pub struct ClaimsConfig {
    /// `metrics_all.csv` of a benchmark.
    pub metrics_csv: PathBuf,
    /// The arm every other arm is compared with.
    pub baseline: String,
    /// Arms claimed to improve on the baseline.
    pub arms: Vec<String>,
    /// Metric columns (see [`METRICS`]).
    pub metrics: Vec<String>,
    /// A single-run arm shown beside the means for context (e.g. the CE start point), untested.
    pub reference: Option<String>,
    /// Output folder (`claims.csv`, `claims.md`).
    pub out: PathBuf,
}

/// One decided claim: `arm` vs `baseline` in `metric` on `ood`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub ood: String,
    pub metric: String,
    pub better: Better,
    pub baseline: String,
    pub arm: String,
    /// The baseline's per-seed values (seed order of the file) and their mean's interval.
    pub baseline_values: Vec<f64>,
    pub baseline_mean: Interval,
    pub arm_values: Vec<f64>,
    pub arm_mean: Interval,
    /// mean(arm) − mean(baseline) with its Welch interval.
    pub diff: Interval,
    /// The exact rank test of the arm's values against the baseline's.
    pub test: RankTest,
    /// The reference arm's value, when one was asked for.
    pub reference: Option<f64>,
    pub verdict: Verdict,
}

/// Values of one metric: (arm, ood) → [(seed, value)] in file order.
type Cells = BTreeMap<(String, String), Vec<(String, f64)>>;

/// Reads `metrics_all.csv` and decides every claim (set × metric × arm, sets in file order).
pub fn decide_claims(cfg: &ClaimsConfig) -> Result<Vec<Claim>> {
    if cfg.arms.is_empty() || cfg.metrics.is_empty() {
        return Err(Error::BadInput(
            "claims: give at least one --arm and one --metric".into(),
        ));
    }
    if let Some(a) = cfg.arms.iter().find(|a| **a == cfg.baseline) {
        return Err(Error::BadInput(format!(
            "--arm {a}: the baseline cannot be compared with itself"
        )));
    }
    let t = CsvTable::read(&cfg.metrics_csv)?;
    let (ca, cs, co) = (t.col("arm")?, t.col("seed")?, t.col("ood")?);
    let mut oods: Vec<String> = Vec::new();
    for r in 0..t.rows.len() {
        let o = t.cell(r, co);
        if !oods.iter().any(|x| x == o) {
            oods.push(o.to_string());
        }
    }
    let arms_present: Vec<&str> = (0..t.rows.len()).map(|r| t.cell(r, ca)).collect();
    for a in std::iter::once(&cfg.baseline)
        .chain(&cfg.arms)
        .chain(cfg.reference.as_ref())
    {
        if !arms_present.contains(&a.as_str()) {
            return Err(Error::bad_file(
                &t.path,
                format!(
                    "no rows of arm '{a}' (arms present: {})",
                    distinct(&arms_present)
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for metric in &cfg.metrics {
        let better = METRICS
            .iter()
            .find(|m| m.0 == metric)
            .map(|m| m.1)
            .ok_or_else(|| {
                let known: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
                Error::BadInput(format!(
                    "--metric {metric}: unknown (known: {})",
                    known.join(", ")
                ))
            })?;
        let cm = t.col(metric)?;
        let mut cells: Cells = BTreeMap::new();
        for r in 0..t.rows.len() {
            let (arm, seed, ood) = (t.cell(r, ca), t.cell(r, cs), t.cell(r, co));
            let wanted = *arm == *cfg.baseline
                || cfg.arms.iter().any(|a| a == arm)
                || cfg.reference.as_deref() == Some(arm);
            if !wanted {
                continue;
            }
            let v = t.num(r, cm)?;
            // Every claim metric is a rate.
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::bad_file(
                    &t.path,
                    format!(
                        "row {}, column '{metric}': {v} is not a rate in [0, 1]",
                        r + 2
                    ),
                ));
            }
            let e = cells.entry((arm.to_string(), ood.to_string())).or_default();
            if e.iter().any(|(s, _)| s == seed) {
                return Err(Error::bad_file(
                    &t.path,
                    format!(
                        "row {}: arm '{arm}', seed '{seed}', OOD set '{ood}' appears twice",
                        r + 2
                    ),
                ));
            }
            e.push((seed.to_string(), v));
        }
        // id_accuracy is a property of the ID test set: one claim, from the first OOD set's rows
        // (every OOD row of a run repeats it; checked).
        let sets: Vec<&String> = if metric == "id_accuracy" {
            check_repeated(&cells, &t.path)?;
            oods.iter().take(1).collect()
        } else {
            oods.iter().collect()
        };
        for ood in sets {
            let base = values(&cells, &cfg.baseline, ood, &t.path)?;
            let reference = match &cfg.reference {
                Some(r) => Some(single(&cells, r, ood, &t.path)?),
                None => None,
            };
            for arm in &cfg.arms {
                let vals = values(&cells, arm, ood, &t.path)?;
                let diff = welch_interval(&vals, &base, ALPHA)?;
                let test = exact_rank_test(&vals, &base)?;
                out.push(Claim {
                    ood: if metric == "id_accuracy" {
                        ID_SET.to_string()
                    } else {
                        ood.clone()
                    },
                    metric: metric.clone(),
                    better,
                    baseline: cfg.baseline.clone(),
                    arm: arm.clone(),
                    baseline_mean: mean_interval(&base, ALPHA)?,
                    baseline_values: base.clone(),
                    arm_mean: mean_interval(&vals, ALPHA)?,
                    arm_values: vals,
                    verdict: Verdict::decide(&diff, test.p, better),
                    diff,
                    test,
                    reference,
                });
            }
        }
    }
    Ok(out)
}

/// Decides the claims and writes `claims.csv` and `claims.md` into `cfg.out` (atomically).
pub fn run(cfg: &ClaimsConfig) -> Result<Vec<Claim>> {
    let claims = decide_claims(cfg)?;
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| Error::io(format!("creating {}", cfg.out.display()), e))?;
    output::write_csv(&cfg.out.join("claims.csv"), &claims)?;
    let md = output::markdown(&claims, &cfg.metrics_csv, cfg.reference.as_deref());
    crate::evidence::write_atomic(&cfg.out.join("claims.md"), md.as_bytes())?;
    Ok(claims)
}

fn distinct(v: &[&str]) -> String {
    let mut d: Vec<&str> = Vec::new();
    for x in v {
        if !d.contains(x) {
            d.push(x);
        }
    }
    d.join(", ")
}

/// The per-seed values of `arm` on `ood`: at least 2 seeds, or a `BadFile` error.
fn values(cells: &Cells, arm: &str, ood: &str, path: &std::path::Path) -> Result<Vec<f64>> {
    let v = cells
        .get(&(arm.to_string(), ood.to_string()))
        .map_or(&[][..], Vec::as_slice);
    if v.len() < 2 {
        return Err(Error::bad_file(
            path,
            format!(
                "arm '{arm}' has {} seed(s) on OOD set '{ood}'; an interval needs at least 2",
                v.len()
            ),
        ));
    }
    Ok(v.iter().map(|p| p.1).collect())
}

/// The one value of the reference arm on `ood`.
fn single(cells: &Cells, arm: &str, ood: &str, path: &std::path::Path) -> Result<f64> {
    match cells
        .get(&(arm.to_string(), ood.to_string()))
        .map(Vec::as_slice)
    {
        Some([(_, v)]) => Ok(*v),
        other => Err(Error::bad_file(
            path,
            format!(
                "--reference {arm}: expected one row on OOD set '{ood}', found {}",
                other.map_or(0, <[_]>::len)
            ),
        )),
    }
}

/// Checks that every (arm, seed) has the same value on every OOD set (for `id_accuracy`).
fn check_repeated(cells: &Cells, path: &std::path::Path) -> Result<()> {
    let mut first: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for ((arm, ood), v) in cells {
        for (seed, x) in v {
            match first.insert((arm, seed), *x) {
                Some(y) if y != *x => {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "id_accuracy of arm '{arm}' seed '{seed}' differs between OOD rows ({y} vs {x} on '{ood}')"
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
