//! One row of `certify.csv`: Cohen et al.'s columns, then ours (both certificates), and its exact
//! text form (floats in Rust's shortest round-trip `{}` format, so parsing a row back gives the
//! same bits and a merge can rebuild a single run's files byte for byte).

use crate::error::Result;
use crate::evidence::record_csv;
use std::path::Path;

/// The columns of `certify.csv`, in order.
pub const COLUMNS: [&str; 24] = [
    "idx",
    "label",
    "predict",
    "radius",
    "correct",
    "time",
    "dataset",
    "is_id",
    "score",
    "n",
    "count",
    "p_lo",
    "p_value",
    "predict_test",
    "score_mean",
    "score_lo",
    "score_hi",
    "h_lo",
    "h_hi",
    "predict_score",
    "radius_score",
    "h_lo_hoeffding",
    "h_hi_hoeffding",
    "radius_score_hoeffding",
];

/// The per-sample certificates of one input (see docs in proofs/smoothing_*.md).
#[derive(Debug, Clone, PartialEq)]
pub struct CertifyRecord {
    /// Index of the sample in its dataset.
    pub idx: u64,
    /// Class label (-1 when none).
    pub label: i64,
    /// CERTIFY's output: 1 = ID, 0 = OOD, -1 = abstain.
    pub predict: i64,
    /// CERTIFY's ℓ2 radius σ·Φ⁻¹(p_lo) (0 when abstaining).
    pub radius: f64,
    /// 1 when `predict` equals the sample's role (ID for is_id, else OOD).
    pub correct: u8,
    /// Wall-clock seconds spent on this sample (0 with `--no-timing`).
    pub time: f64,
    /// Canonical dataset name.
    pub dataset: String,
    /// 1 for an in-distribution sample.
    pub is_id: u8,
    /// Clean score S(x).
    pub score: f64,
    /// Number of estimation samples.
    pub n: u64,
    /// Hits of the guessed decision among the n estimation samples.
    pub count: u64,
    /// One-sided (1-α) Clopper–Pearson lower bound on P(guess).
    pub p_lo: f64,
    /// Two-sided binomial test p-value of the n estimation counts against ½.
    pub p_value: f64,
    /// PREDICT on the n estimation counts: 1 = ID, 0 = OOD, -1 = abstain.
    pub predict_test: i64,
    /// Point estimate of the smoothed clipped score ĝ(x) (score units).
    pub score_mean: f64,
    /// CDF-based one-sided (1-α) lower bound on ĝ(x) (score units).
    pub score_lo: f64,
    /// CDF-based one-sided (1-α) upper bound on ĝ(x) (score units).
    pub score_hi: f64,
    /// `score_lo` on the [0,1] scale h.
    pub h_lo: f64,
    /// `score_hi` on the [0,1] scale h.
    pub h_hi: f64,
    /// Point-estimate decision of the smoothed score detector: 1 if score_mean ≤ γ', else 0.
    pub predict_score: i64,
    /// Certified radius of the sample's role decision from the CDF bound (-1: not certified).
    pub radius_score: f64,
    /// Hoeffding one-sided (1-α) lower bound on h(x).
    pub h_lo_hoeffding: f64,
    /// Hoeffding one-sided (1-α) upper bound on h(x).
    pub h_hi_hoeffding: f64,
    /// Certified radius of the role decision from the Hoeffding bound (-1: not certified).
    pub radius_score_hoeffding: f64,
}

impl CertifyRecord {
    /// The row's fields as text, in [`COLUMNS`] order.
    pub fn fields(&self) -> Vec<String> {
        vec![
            self.idx.to_string(),
            self.label.to_string(),
            self.predict.to_string(),
            crate::evidence::fmt_f64(self.radius),
            self.correct.to_string(),
            crate::evidence::fmt_f64(self.time),
            self.dataset.clone(),
            self.is_id.to_string(),
            crate::evidence::fmt_f64(self.score),
            self.n.to_string(),
            self.count.to_string(),
            crate::evidence::fmt_f64(self.p_lo),
            crate::evidence::fmt_f64(self.p_value),
            self.predict_test.to_string(),
            crate::evidence::fmt_f64(self.score_mean),
            crate::evidence::fmt_f64(self.score_lo),
            crate::evidence::fmt_f64(self.score_hi),
            crate::evidence::fmt_f64(self.h_lo),
            crate::evidence::fmt_f64(self.h_hi),
            self.predict_score.to_string(),
            crate::evidence::fmt_f64(self.radius_score),
            crate::evidence::fmt_f64(self.h_lo_hoeffding),
            crate::evidence::fmt_f64(self.h_hi_hoeffding),
            crate::evidence::fmt_f64(self.radius_score_hoeffding),
        ]
    }
}

/// The bytes of a `certify.csv` holding `records`.
pub fn to_csv_bytes(records: &[CertifyRecord]) -> Result<Vec<u8>> {
    record_csv::to_bytes(
        "certify.csv",
        &COLUMNS,
        records.iter().map(CertifyRecord::fields),
    )
}

/// Reads a `certify.csv` written by [`to_csv_bytes`]; errors name the file, row and column.
pub fn read_csv(path: &Path) -> Result<Vec<CertifyRecord>> {
    let mismatch = format!(
        "columns are not those of certify.csv ({})",
        COLUMNS.join(",")
    );
    record_csv::read(path, &COLUMNS, &mismatch, |r| {
        Ok(CertifyRecord {
            idx: r.parse("idx")?,
            label: r.parse("label")?,
            predict: r.parse("predict")?,
            radius: r.parse("radius")?,
            correct: r.parse("correct")?,
            time: r.parse("time")?,
            dataset: r.get("dataset")?.to_string(),
            is_id: r.parse("is_id")?,
            score: r.parse("score")?,
            n: r.parse("n")?,
            count: r.parse("count")?,
            p_lo: r.parse("p_lo")?,
            p_value: r.parse("p_value")?,
            predict_test: r.parse("predict_test")?,
            score_mean: r.parse("score_mean")?,
            score_lo: r.parse("score_lo")?,
            score_hi: r.parse("score_hi")?,
            h_lo: r.parse("h_lo")?,
            h_hi: r.parse("h_hi")?,
            predict_score: r.parse("predict_score")?,
            radius_score: r.parse("radius_score")?,
            h_lo_hoeffding: r.parse("h_lo_hoeffding")?,
            h_hi_hoeffding: r.parse("h_hi_hoeffding")?,
            radius_score_hoeffding: r.parse("radius_score_hoeffding")?,
        })
    })
}
