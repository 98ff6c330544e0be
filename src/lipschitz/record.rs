//! One row of `lipschitz.csv`: a sample's score, threshold, lower bounds, certified upper bounds
//! and certified radii, and its exact text form (floats in the shortest round-trip form of
//! `evidence::fmt_f64`, so parsing a row gives back the same bits and a merge of shards can
//! rebuild a single run's files byte for byte).

use crate::error::{Error, Result};
use crate::evidence::fmt_f64;
use std::collections::HashMap;
use std::path::Path;

/// The columns of `lipschitz.csv`, in order.
pub const COLUMNS: [&str; 26] = [
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
        ]
    }
}

/// The bytes of a `lipschitz.csv` holding `records`.
pub fn to_csv_bytes(records: &[LipschitzRecord]) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::Internal(format!("writing lipschitz.csv: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS).map_err(err)?;
    for r in records {
        w.write_record(r.fields()).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing lipschitz.csv: {e}")))
}

/// Reads a `lipschitz.csv` written by [`to_csv_bytes`]; errors name the file, row and column.
pub fn read_csv(path: &Path) -> Result<Vec<LipschitzRecord>> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| Error::bad_file(path, format!("cannot read as CSV: {e}")))?;
    let headers = r
        .headers()
        .map_err(|e| Error::bad_file(path, format!("no header row: {e}")))?
        .clone();
    if headers.iter().collect::<Vec<_>>() != COLUMNS {
        return Err(Error::bad_file(
            path,
            format!(
                "columns are not those of lipschitz.csv ({}); was it written by another version?",
                COLUMNS.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for (row, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| Error::bad_file(path, format!("row {}: {e}", row + 2)))?;
        let map: HashMap<&str, &str> = COLUMNS.iter().copied().zip(rec.iter()).collect();
        let get = |c: &str| -> Result<&str> {
            map.get(c).copied().ok_or_else(|| {
                Error::bad_file(path, format!("row {}: missing column {c}", row + 2))
            })
        };
        let bad =
            |c: &str| Error::bad_file(path, format!("row {}: bad value in column {c}", row + 2));
        macro_rules! parse {
            ($c:expr) => {
                get($c)?.parse().map_err(|_| bad($c))?
            };
        }
        let opt = |c: &str| -> Result<Option<f64>> {
            match get(c)? {
                "" => Ok(None),
                s => s.parse().map(Some).map_err(|_| bad(c)),
            }
        };
        let rule = get("recurjac_rule")?;
        let undecided = match get("f32_undecided")? {
            "" => None,
            s => Some(s.parse().map_err(|_| bad("f32_undecided"))?),
        };
        out.push(LipschitzRecord {
            index: parse!("index"),
            label: parse!("label"),
            is_id: parse!("is_id"),
            score: parse!("score"),
            threshold: parse!("threshold"),
            norm: get("norm")?.to_string(),
            ball: get("ball")?.to_string(),
            eps: parse!("eps"),
            grad_norm: opt("grad_norm")?,
            lower_sample: opt("lower_sample")?,
            lower_pgd: opt("lower_pgd")?,
            clever: opt("clever")?,
            clever_ks: opt("clever_ks")?,
            upper_local: opt("upper_local")?,
            upper_global: opt("upper_global")?,
            radius_at_eps: opt("radius_at_eps")?,
            radius_lipschitz: opt("radius_lipschitz")?,
            radius_bound_prop: opt("radius_bound_prop")?,
            upper_recurjac: opt("upper_recurjac")?,
            recurjac_rule: (!rule.is_empty()).then(|| rule.to_string()),
            fastlip_simplex: opt("fastlip_simplex")?,
            upper_bab: opt("upper_bab")?,
            bab_lower: opt("bab_lower")?,
            bab_domains: match get("bab_domains")? {
                "" => None,
                s => Some(s.parse().map_err(|_| bad("bab_domains"))?),
            },
            f32_err_bound: opt("f32_err_bound")?,
            f32_undecided: undecided,
        });
    }
    Ok(out)
}
