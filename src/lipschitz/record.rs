//! One row of `lipschitz.csv`: a sample's score, threshold, lower bounds, certified upper bounds
//! and certified radii, and its exact text form (floats in the shortest round-trip form of
//! `evidence::fmt_f64`, so parsing a row gives back the same bits and a merge of shards can
//! rebuild a single run's files byte for byte).

use crate::error::Result;
use crate::evidence::{fmt_f64, record_csv};
use std::path::Path;

/// The columns of `lipschitz.csv`, in order.
pub const COLUMNS: [&str; 27] = [
    "index",
    "label",
    "is_id",
    "score",
    "threshold",
    "norm",
    "ball",
    "eps",
    "grad_norm",
    "lower_sample",
    "lower_pgd",
    "clever",
    "clever_ks",
    "upper_local",
    "upper_global",
    "radius_at_eps",
    "radius_lipschitz",
    "radius_bound_prop",
    "upper_recurjac",
    "recurjac_rule",
    "fastlip_simplex",
    "upper_bab",
    "bab_lower",
    "bab_domains",
    "f32_err_bound",
    "f32_undecided",
    "lower_pattern",
];

/// The analysis of one sample (a column is `None`, written empty, when its method did not run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LipschitzRecord {
    /// Original index of the sample in its dataset.
    pub index: usize,
    /// Class label (-1 when none).
    pub label: i64,
    /// Whether the sample is in-distribution.
    pub is_id: bool,
    /// S(x).
    pub score: f64,
    /// γ (TPR 95% on ID validation data).
    pub threshold: f64,
    /// The norm's name.
    pub norm: String,
    /// The ball's name (norm, `∩[0,1]` when clipped).
    pub ball: String,
    /// ε.
    pub eps: f64,
    /// ‖∇S(x)‖_q.
    pub grad_norm: Option<f64>,
    /// Max of ‖∇S‖_q over uniform samples of the ball.
    pub lower_sample: Option<f64>,
    /// Max of ‖∇S‖_q found by PGD.
    pub lower_pgd: Option<f64>,
    /// CLEVER's estimate.
    pub clever: Option<f64>,
    /// CLEVER's Kolmogorov–Smirnov statistic.
    pub clever_ks: Option<f64>,
    /// The best certified local bound on B(x, ε) (min over the local methods that ran).
    pub upper_local: Option<f64>,
    /// The certified global bound.
    pub upper_global: Option<f64>,
    /// min(ε, m / L) with L = min(local, global) on B(x, ε).
    pub radius_at_eps: Option<f64>,
    /// The largest certified radius found by the Lipschitz route.
    pub radius_lipschitz: Option<f64>,
    /// The largest certified radius found by the bound-propagation route.
    pub radius_bound_prop: Option<f64>,
    /// RecurJac's bound.
    pub upper_recurjac: Option<f64>,
    /// The rule RecurJac's value came from (or why it did not run).
    pub recurjac_rule: Option<String>,
    /// FastLip with the box ∩ simplex head on RecurJac's boxes (RecurJac's baseline).
    pub fastlip_simplex: Option<f64>,
    /// The branch and bound's certified bound on B(x, ε).
    pub upper_bab: Option<f64>,
    /// The largest gradient norm the branch and bound knew of (attained in the ball).
    pub bab_lower: Option<f64>,
    /// Domains the branch and bound bounded.
    pub bab_domains: Option<usize>,
    /// E at the centre: a bound on |S₃₂(x) − S(x)| of the float32 detector (radius runs).
    pub f32_err_bound: Option<f64>,
    /// True when the exact margin does not exceed E at the centre: the float32 detector may
    /// decide either way, both radii are 0 (radius runs).
    pub f32_undecided: Option<bool>,
    /// Max of ‖∇S‖_q found by the pattern search (surrogate ascent; a point of the ball).
    pub lower_pattern: Option<f64>,
}

/// A float as written in the CSV.
fn num(x: f64) -> String {
    fmt_f64(x)
}

/// An optional float: empty when `None`.
fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), num)
}

impl LipschitzRecord {
    /// The largest gradient norm any empirical lower-bound method found at a point of the ball
    /// (centre, sampling, PGD, pattern search; CLEVER is an estimate and left out).
    pub fn lower_best(&self) -> Option<f64> {
        [
            self.grad_norm,
            self.lower_sample,
            self.lower_pgd,
            self.lower_pattern,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
    }

    /// The row's fields as text, in [`COLUMNS`] order.
    pub fn fields(&self) -> Vec<String> {
        vec![
            self.index.to_string(),
            self.label.to_string(),
            self.is_id.to_string(),
            num(self.score),
            num(self.threshold),
            self.norm.clone(),
            self.ball.clone(),
            num(self.eps),
            opt(self.grad_norm),
            opt(self.lower_sample),
            opt(self.lower_pgd),
            opt(self.clever),
            opt(self.clever_ks),
            opt(self.upper_local),
            opt(self.upper_global),
            opt(self.radius_at_eps),
            opt(self.radius_lipschitz),
            opt(self.radius_bound_prop),
            opt(self.upper_recurjac),
            self.recurjac_rule.clone().unwrap_or_default(),
            opt(self.fastlip_simplex),
            opt(self.upper_bab),
            opt(self.bab_lower),
            self.bab_domains.map_or(String::new(), |d| d.to_string()),
            opt(self.f32_err_bound),
            self.f32_undecided.map_or(String::new(), |b| b.to_string()),
            opt(self.lower_pattern),
        ]
    }
}

/// The bytes of a `lipschitz.csv` holding `records`.
pub fn to_csv_bytes(records: &[LipschitzRecord]) -> Result<Vec<u8>> {
    record_csv::to_bytes(
        "lipschitz.csv",
        &COLUMNS,
        records.iter().map(LipschitzRecord::fields),
    )
}

/// Reads a `lipschitz.csv` written by [`to_csv_bytes`]; errors name the file, row and column.
pub fn read_csv(path: &Path) -> Result<Vec<LipschitzRecord>> {
    let mismatch = format!(
        "columns are not those of lipschitz.csv ({}); was it written by another version?",
        COLUMNS.join(",")
    );
    // Files written before `lower_pattern` (26 columns) read with it empty.
    record_csv::read_prefix(path, &COLUMNS, COLUMNS.len() - 1, &mismatch, |r| {
        let rule = r.get("recurjac_rule")?;
        Ok(LipschitzRecord {
            index: r.parse("index")?,
            label: r.parse("label")?,
            is_id: r.parse("is_id")?,
            score: r.parse("score")?,
            threshold: r.parse("threshold")?,
            norm: r.get("norm")?.to_string(),
            ball: r.get("ball")?.to_string(),
            eps: r.parse("eps")?,
            grad_norm: r.opt("grad_norm")?,
            lower_sample: r.opt("lower_sample")?,
            lower_pgd: r.opt("lower_pgd")?,
            clever: r.opt("clever")?,
            clever_ks: r.opt("clever_ks")?,
            upper_local: r.opt("upper_local")?,
            upper_global: r.opt("upper_global")?,
            radius_at_eps: r.opt("radius_at_eps")?,
            radius_lipschitz: r.opt("radius_lipschitz")?,
            radius_bound_prop: r.opt("radius_bound_prop")?,
            upper_recurjac: r.opt("upper_recurjac")?,
            recurjac_rule: (!rule.is_empty()).then(|| rule.to_string()),
            fastlip_simplex: r.opt("fastlip_simplex")?,
            upper_bab: r.opt("upper_bab")?,
            bab_lower: r.opt("bab_lower")?,
            bab_domains: r.opt("bab_domains")?,
            f32_err_bound: r.opt("f32_err_bound")?,
            f32_undecided: r.opt("f32_undecided")?,
            lower_pattern: r.opt("lower_pattern")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file from before `lower_pattern` (26 columns) reads with it empty and otherwise equal;
    /// a file missing more columns, or with a renamed one, is refused.
    #[test]
    fn files_from_before_the_pattern_column_read_and_others_are_refused() {
        let rec = LipschitzRecord {
            index: 4,
            label: 7,
            is_id: true,
            score: -12.5,
            threshold: -10.0,
            norm: "l2".into(),
            ball: "l2".into(),
            eps: 0.1,
            grad_norm: Some(3.0),
            upper_bab: Some(5.0),
            bab_domains: Some(12),
            f32_undecided: Some(false),
            lower_pattern: Some(3.5),
            ..Default::default()
        };
        let d = tempfile::tempdir().unwrap();
        let text = String::from_utf8(to_csv_bytes(std::slice::from_ref(&rec)).unwrap()).unwrap();
        // Drops the last `k` columns of every line (no cell holds a comma here).
        let drop_last = |k: usize| -> String {
            text.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    f[..f.len() - k].join(",") + "\n"
                })
                .collect()
        };
        let read = |name: &str, body: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, body).unwrap();
            read_csv(&p)
        };
        assert_eq!(read("now.csv", &text).unwrap(), vec![rec.clone()]);
        let old = LipschitzRecord {
            lower_pattern: None,
            ..rec.clone()
        };
        assert_eq!(read("old.csv", &drop_last(1)).unwrap(), vec![old]);
        for (name, body) in [
            ("older.csv", drop_last(2)),
            (
                "renamed.csv",
                text.replacen("lower_pattern", "lower_other", 1),
            ),
        ] {
            let e = read(name, &body).unwrap_err().to_string();
            assert!(e.contains("columns are not those"), "{name}: {e}");
        }
    }
}
