//! The files of a paired radius comparison: `paired.csv` (one row per image), `paired_claims.csv`
//! (every number of each set's claim, full precision), `paired_curves.csv` (certified rate vs
//! radius, both models) and `paired.md` (the tables for reading, the rule above them).

use super::paired::{PAIRED_RULE, PairedClaim, PairedConfig, PairedResult, QUANTILES};
use crate::error::{Error, Result};
use crate::evidence::{fmt_f64, write_atomic, write_csv_atomic};
use std::path::Path;

/// Columns of `paired_claims.csv`.
pub const CLAIM_COLUMNS: [&str; 35] = [
    "set",
    "datasets",
    "column",
    "baseline",
    "arm",
    "n",
    "baseline_certified",
    "baseline_mean",
    "baseline_q10",
    "baseline_q25",
    "baseline_median",
    "baseline_q75",
    "baseline_q90",
    "baseline_max",
    "arm_certified",
    "arm_mean",
    "arm_q10",
    "arm_q25",
    "arm_median",
    "arm_q75",
    "arm_q90",
    "arm_max",
    "diff_mean",
    "diff_median",
    "diff_median_lo",
    "diff_median_hi",
    "larger",
    "smaller",
    "equal",
    "signed_rank_t_plus",
    "signed_rank_mean",
    "signed_rank_p",
    "sign_test_p",
    "verdict",
    "rule",
];

fn ci_ends(c: &PairedClaim) -> (f64, f64) {
    c.diff_ci.unwrap_or((f64::NEG_INFINITY, f64::INFINITY))
}

fn write_claims(path: &Path, cfg: &PairedConfig, r: &PairedResult) -> Result<()> {
    write_csv_atomic(path, |w| {
        let e = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
        w.write_record(CLAIM_COLUMNS).map_err(e)?;
        for c in &r.claims {
            let (lo, hi) = ci_ends(c);
            let mut row = vec![
                c.set.clone(),
                c.datasets.join(" "),
                r.column.clone(),
                cfg.baseline.clone(),
                cfg.arm.clone(),
                c.n.to_string(),
            ];
            for s in [&c.baseline, &c.arm] {
                row.push(s.certified.to_string());
                row.push(fmt_f64(s.mean));
                row.extend(s.quantiles.iter().map(|q| fmt_f64(*q)));
                row.push(fmt_f64(s.max));
            }
            row.extend([
                fmt_f64(c.diff_mean),
                fmt_f64(c.diff_median),
                fmt_f64(lo),
                fmt_f64(hi),
                c.larger.to_string(),
                c.smaller.to_string(),
                c.equal.to_string(),
                fmt_f64(c.signed_rank.t_plus),
                fmt_f64(c.signed_rank.mean),
                fmt_f64(c.signed_rank.p),
                fmt_f64(c.sign.p),
                c.verdict.name().to_string(),
                PAIRED_RULE.to_string(),
            ]);
            w.write_record(&row).map_err(e)?;
        }
        Ok(())
    })
}

fn write_images(path: &Path, r: &PairedResult) -> Result<()> {
    write_csv_atomic(path, |w| {
        let e = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
        w.write_record([
            "set",
            "dataset",
            "index",
            "label",
            "baseline_certified",
            "baseline_radius",
            "arm_certified",
            "arm_radius",
            "diff",
        ])
        .map_err(e)?;
        for p in &r.pairs {
            for (b, a) in p.baseline.iter().zip(&p.arm) {
                w.write_record([
                    p.set.clone(),
                    b.dataset.clone(),
                    b.index.to_string(),
                    b.label.to_string(),
                    u8::from(b.certified).to_string(),
                    fmt_f64(b.radius),
                    u8::from(a.certified).to_string(),
                    fmt_f64(a.radius),
                    fmt_f64(a.radius - b.radius),
                ])
                .map_err(e)?;
            }
        }
        Ok(())
    })
}

fn write_curves(path: &Path, r: &PairedResult) -> Result<()> {
    write_csv_atomic(path, |w| {
        let e = |e: csv::Error| Error::Internal(format!("CSV {}: {e}", path.display()));
        w.write_record(["set", "radius", "baseline_rate", "arm_rate"])
            .map_err(e)?;
        for c in &r.curves {
            w.write_record([
                c.set.clone(),
                fmt_f64(c.radius),
                fmt_f64(c.baseline_rate),
                fmt_f64(c.arm_rate),
            ])
            .map_err(e)?;
        }
        Ok(())
    })
}

/// Four significant digits.
fn g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        format!("{x}")
    } else {
        format!("{:.4}", x)
    }
}

/// `paired.md`.
pub fn markdown(cfg: &PairedConfig, r: &PairedResult) -> String {
    let mut o = format!(
        "# Paired radii: {} vs {} ({} runs, column `{}`)\n\n",
        cfg.arm, cfg.baseline, r.kind, r.column
    );
    o.push_str(&format!("Verdict rule: {PAIRED_RULE}\n\n"));
    o.push_str("| set | n | model | certified | mean |");
    for q in QUANTILES {
        o.push_str(&format!(" q{} |", (q * 100.0).round()));
    }
    o.push_str(" max |\n|---|---|---|---|---|");
    o.push_str(&"---|".repeat(QUANTILES.len() + 1));
    o.push('\n');
    for c in &r.claims {
        for (name, s) in [(&cfg.baseline, &c.baseline), (&cfg.arm, &c.arm)] {
            o.push_str(&format!(
                "| {} | {} | {} | {} | {} |",
                c.set,
                c.n,
                name,
                s.certified,
                g(s.mean)
            ));
            for q in s.quantiles {
                o.push_str(&format!(" {} |", g(q)));
            }
            o.push_str(&format!(" {} |\n", g(s.max)));
        }
    }
    o.push_str(&format!(
        "\n| set | {a} − {b}: median [95 % CI] | mean | larger / smaller / equal | signed-rank T⁺ (mean) | signed-rank p | sign-test p | verdict |\n|---|---|---|---|---|---|---|---|\n",
        a = cfg.arm,
        b = cfg.baseline
    ));
    for c in &r.claims {
        let ci = c.diff_ci.map_or("(−∞, ∞)".to_string(), |(lo, hi)| {
            format!("[{}, {}]", g(lo), g(hi))
        });
        o.push_str(&format!(
            "| {} | {} {} | {} | {} / {} / {} | {} ({}) | {:.3e} | {:.3e} | **{}** |\n",
            c.set,
            g(c.diff_median),
            ci,
            g(c.diff_mean),
            c.larger,
            c.smaller,
            c.equal,
            c.signed_rank.t_plus,
            c.signed_rank.mean,
            c.signed_rank.p,
            c.sign.p,
            c.verdict.name()
        ));
    }
    o
}

/// Writes the four files into `cfg.out`.
pub fn write_all(cfg: &PairedConfig, r: &PairedResult) -> Result<()> {
    write_images(&cfg.out.join("paired.csv"), r)?;
    write_claims(&cfg.out.join("paired_claims.csv"), cfg, r)?;
    write_curves(&cfg.out.join("paired_curves.csv"), r)?;
    write_atomic(&cfg.out.join("paired.md"), markdown(cfg, r).as_bytes())
}
