//! `curves.csv`: certified detection rates and guaranteed FPR@95 / AUROC as functions of the ℓ2
//! radius r, from the per-sample certificates (GOOD / ProoD-style guaranteed metrics).
//!
//! At radius r every sample is replaced by its worst case over the ball (proofs/smoothing_score.md):
//! - `detector` (Cohen's CERTIFY): an ID sample keeps score 0 ("ID") only if certified ID at a
//!   radius ≥ r, else 1; an OOD sample keeps 1 only if certified OOD at ≥ r, else 0. Abstentions
//!   and wrong certified decisions are worst cases.
//! - `score` / `score-hoeffding` (clipped smoothed score, CDF / Hoeffding bound): an ID sample
//!   gets the upper bound Φ(Φ⁻¹(h_hi) + r/σ), an OOD sample the lower bound Φ(Φ⁻¹(h_lo) - r/σ);
//!   certified rates count radius_score ≥ r (radius -1 = never).
//!
//! guaranteed_fpr95 and guaranteed_auroc are then the default-convention metrics of crate::metrics
//! (ID positive, larger = more OOD, FPR at the first threshold with TPR ≥ 0.95).

use super::lemma::{lower_at_radius, upper_at_radius};
use super::record::CertifyRecord;
use crate::error::{Error, Result};
use crate::metrics::{FprRule, SortedScores, auroc, fpr_at_tpr};

/// The columns of `curves.csv`.
pub const CURVE_COLUMNS: [&str; 6] = [
    "certificate",
    "radius",
    "certified_id_rate",
    "certified_ood_rate",
    "guaranteed_fpr95",
    "guaranteed_auroc",
];

/// The certificates a curve can be drawn for.
pub const CERTIFICATES: [&str; 3] = ["detector", "score", "score-hoeffding"];

/// One row of `curves.csv`; rates are `None` when the run has no sample of the needed role.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    /// `detector`, `score` or `score-hoeffding`.
    pub certificate: &'static str,
    /// ℓ2 radius r.
    pub radius: f64,
    /// Share of ID samples certified ID at radius ≥ r.
    pub certified_id_rate: Option<f64>,
    /// Share of OOD samples certified OOD at radius ≥ r.
    pub certified_ood_rate: Option<f64>,
    /// FPR@95 of the worst-case scores at r (an upper bound on the FPR@95 under attack).
    pub guaranteed_fpr95: Option<f64>,
    /// AUROC of the worst-case scores at r (a lower bound on the AUROC under attack).
    pub guaranteed_auroc: Option<f64>,
}

/// The radius grid: 0, Δ, 2Δ, … up to the first multiple of Δ at or beyond the largest finite
/// certified radius of any sample (at least 0 alone).
pub fn radius_grid(records: &[CertifyRecord], step: f64) -> Result<Vec<f64>> {
    if !(step.is_finite() && step > 0.0) {
        return Err(Error::BadInput(format!(
            "--radius-step must be finite and > 0, got {step}"
        )));
    }
    let max = records
        .iter()
        .flat_map(|r| [r.radius, r.radius_score, r.radius_score_hoeffding])
        .filter(|r| r.is_finite())
        .fold(0.0f64, f64::max);
    let k = (max / step).ceil() as u64;
    if k > 100_000 {
        return Err(Error::BadInput(format!(
            "--radius-step {step} gives more than 100000 radii up to {max}; use a larger step"
        )));
    }
    Ok((0..=k).map(|i| i as f64 * step).collect())
}

fn certified_detector(r: &CertifyRecord, radius: f64) -> bool {
    let role = i64::from(r.is_id);
    r.predict == role && r.radius >= radius
}

/// Worst-case score at radius `radius` of one record under one certificate (larger = more OOD).
fn worst_score(cert: &str, r: &CertifyRecord, radius: f64, sigma: f64) -> f64 {
    let id = r.is_id == 1;
    match cert {
        "detector" => {
            let ok = certified_detector(r, radius);
            if id == ok { 0.0 } else { 1.0 }
        }
        "score" if id => upper_at_radius(r.h_hi, radius, sigma),
        "score" => lower_at_radius(r.h_lo, radius, sigma),
        _ if id => upper_at_radius(r.h_hi_hoeffding, radius, sigma),
        _ => lower_at_radius(r.h_lo_hoeffding, radius, sigma),
    }
}

fn certified(cert: &str, r: &CertifyRecord, radius: f64) -> bool {
    match cert {
        "detector" => certified_detector(r, radius),
        "score" => r.radius_score >= 0.0 && r.radius_score >= radius,
        _ => r.radius_score_hoeffding >= 0.0 && r.radius_score_hoeffding >= radius,
    }
}

/// All curve rows: for each certificate in [`CERTIFICATES`], one row per radius of the grid.
pub fn curves(records: &[CertifyRecord], sigma: f64, step: f64) -> Result<Vec<CurveRow>> {
    let grid = radius_grid(records, step)?;
    let (ids, oods): (Vec<&CertifyRecord>, Vec<&CertifyRecord>) =
        records.iter().partition(|r| r.is_id == 1);
    let rate = |set: &[&CertifyRecord], cert: &str, radius: f64| {
        (!set.is_empty()).then(|| {
            set.iter().filter(|r| certified(cert, r, radius)).count() as f64 / set.len() as f64
        })
    };
    let mut out = Vec::new();
    for cert in CERTIFICATES {
        for &radius in &grid {
            let (fpr, auc) = if ids.is_empty() || oods.is_empty() {
                (None, None)
            } else {
                let wi: Vec<f64> = ids
                    .iter()
                    .map(|r| worst_score(cert, r, radius, sigma))
                    .collect();
                let wo: Vec<f64> = oods
                    .iter()
                    .map(|r| worst_score(cert, r, radius, sigma))
                    .collect();
                let s = SortedScores::from_split(&wi, &wo)?;
                (Some(fpr_at_tpr(&s, FprRule::FPR95)?), Some(auroc(&s)))
            };
            out.push(CurveRow {
                certificate: cert,
                radius,
                certified_id_rate: rate(&ids, cert, radius),
                certified_ood_rate: rate(&oods, cert, radius),
                guaranteed_fpr95: fpr,
                guaranteed_auroc: auc,
            });
        }
    }
    Ok(out)
}

/// The bytes of `curves.csv` (empty field = undefined for lack of ID or OOD samples).
/// `curves.csv`: the interface contract's five columns (radius, certified_id_rate,
/// certified_ood_rate, guaranteed_fpr95, guaranteed_auroc) for one certificate.
pub fn curve_csv_bytes(rows: &[CurveRow], certificate: &str) -> Result<Vec<u8>> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Internal(format!("writing curves.csv: {e}"));
    w.write_record(&CURVE_COLUMNS[1..]).map_err(err)?;
    for r in rows.iter().filter(|r| r.certificate == certificate) {
        w.write_record([
            format!("{}", r.radius),
            opt(r.certified_id_rate),
            opt(r.certified_ood_rate),
            opt(r.guaranteed_fpr95),
            opt(r.guaranteed_auroc),
        ])
        .map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing curves.csv: {e}")))
}

/// `curves_all.csv`: every certificate's curve, with a leading `certificate` column.
pub fn curves_csv_bytes(rows: &[CurveRow]) -> Result<Vec<u8>> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Internal(format!("writing curves.csv: {e}"));
    w.write_record(CURVE_COLUMNS).map_err(err)?;
    for r in rows {
        w.write_record([
            r.certificate.to_string(),
            format!("{}", r.radius),
            opt(r.certified_id_rate),
            opt(r.certified_ood_rate),
            opt(r.guaranteed_fpr95),
            opt(r.guaranteed_auroc),
        ])
        .map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing curves.csv: {e}")))
}
