//! `claims.csv` (every number of every claim, full precision) and `claims.md` (the verdict table
//! for reading: rates in percent, differences in percentage points, the rule stated above it).

use super::{Claim, RULE, Verdict};
use crate::error::{Error, Result};
use crate::evidence::write_csv_atomic;
use std::path::Path;

/// Columns of `claims.csv`.
pub const COLUMNS: [&str; 26] = [
    "ood",
    "metric",
    "better",
    "baseline",
    "arm",
    "n_baseline",
    "baseline_mean",
    "baseline_lo",
    "baseline_hi",
    "n_arm",
    "arm_mean",
    "arm_lo",
    "arm_hi",
    "diff",
    "diff_lo",
    "diff_hi",
    "welch_df",
    "u",
    "p_exact",
    "p_count",
    "p_total",
    "p_min",
    "reference",
    "verdict",
    "baseline_values",
    "arm_values",
];

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `claims.csv` atomically.
pub fn write_csv(path: &Path, claims: &[Claim]) -> Result<()> {
    write_csv_atomic(path, |w| {
        let e = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
        w.write_record(COLUMNS).map_err(e)?;
        for c in claims {
            w.write_record([
                c.ood.clone(),
                c.metric.clone(),
                c.better.name().to_string(),
                c.baseline.clone(),
                c.arm.clone(),
                c.baseline_values.len().to_string(),
                c.baseline_mean.estimate.to_string(),
                c.baseline_mean.lo.to_string(),
                c.baseline_mean.hi.to_string(),
                c.arm_values.len().to_string(),
                c.arm_mean.estimate.to_string(),
                c.arm_mean.lo.to_string(),
                c.arm_mean.hi.to_string(),
                c.diff.estimate.to_string(),
                c.diff.lo.to_string(),
                c.diff.hi.to_string(),
                c.diff.df.to_string(),
                c.test.u.to_string(),
                c.test.p.to_string(),
                c.test.extreme.to_string(),
                c.test.total.to_string(),
                c.test.p_min.to_string(),
                c.reference.map_or(String::new(), |r| r.to_string()),
                c.verdict.name().to_string(),
                list(&c.baseline_values),
                list(&c.arm_values),
            ])
            .map_err(e)?;
        }
        Ok(())
    })
}

/// Text safe in a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('*', "\\*")
        .replace('<', "&lt;")
}

/// A rate in percent, two decimals.
pub fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// A difference of rates in percentage points, signed.
pub fn pp(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// The metric's name for reading.
pub fn metric_label(m: &str) -> &str {
    match m {
        "fpr95" => "FPR95",
        "auroc" => "AUROC",
        "aupr_in" => "AUPR-In",
        "aupr_out" => "AUPR-Out",
        "id_accuracy" => "ID accuracy",
        o => o,
    }
}

/// The exact p-value as a number and as the count of splits, e.g. `0.0079 (2/252)`.
pub fn p_text(c: &Claim) -> String {
    format!("{:.4} ({}/{})", c.test.p, c.test.extreme, c.test.total)
}

/// `claims.md`: the verdict table of `claims`, read from `source`.
/// `reference` names the reference arm, when one was asked for.
pub fn markdown(claims: &[Claim], source: &Path, reference: Option<&str>) -> String {
    let mut o = String::from("# Claims decided over seeds\n\n");
    o.push_str(&format!(
        "From `{}`. Rates in percent: each arm's mean over seeds with its 95 % t interval; the difference of means (arm − baseline, percentage points) with its 95 % Welch interval; the exact two-sided rank-sum p-value with the count of the C(n_a + n_b, n_a) splits at least as extreme.\n\n",
        cell(&source.display().to_string())
    ));
    o.push_str(&format!("Verdict rule: {RULE}\n\n"));
    let has_ref = reference.is_some();
    o.push_str("| OOD set | metric | better | baseline | arm |");
    if let Some(r) = reference {
        o.push_str(&format!(" {} (one run) |", cell(r)));
    }
    o.push_str(" arm − baseline (pp) | exact p | verdict |\n|---|---|---|---|---|");
    if has_ref {
        o.push_str("---|");
    }
    o.push_str("---|---|---|\n");
    for c in claims {
        let mean = |name: &str, i: &super::Interval, n: usize| {
            format!(
                "{} {} [{}, {}] (n = {n})",
                cell(name),
                pct(i.estimate),
                pct(i.lo),
                pct(i.hi)
            )
        };
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |",
            cell(&c.ood),
            metric_label(&c.metric),
            c.better.name(),
            mean(&c.baseline, &c.baseline_mean, c.baseline_values.len()),
            mean(&c.arm, &c.arm_mean, c.arm_values.len()),
        ));
        if has_ref {
            o.push_str(&format!(" {} |", c.reference.map_or(String::new(), pct)));
        }
        let v = match c.verdict {
            Verdict::Undecided => c.verdict.name().to_string(),
            v => format!("**{}**", v.name()),
        };
        o.push_str(&format!(
            " {} [{}, {}] | {} | {v} |\n",
            pp(c.diff.estimate),
            pp(c.diff.lo),
            pp(c.diff.hi),
            p_text(c)
        ));
    }
    let count = |v: Verdict| claims.iter().filter(|c| c.verdict == v).count();
    o.push_str(&format!(
        "\n{} claims: {} supported, {} contradicted, {} undecided.",
        claims.len(),
        count(Verdict::Supported),
        count(Verdict::Contradicted),
        count(Verdict::Undecided)
    ));
    let blocked = claims
        .iter()
        .filter(|c| c.test.p_min >= super::ALPHA)
        .count();
    if blocked > 0 {
        o.push_str(&format!(
            " {blocked} of them cannot reach p < 0.05 with their seeds and ties (the most extreme split's p is ≥ 0.05), so they are undecided whatever the data."
        ));
    }
    o.push('\n');
    o
}
