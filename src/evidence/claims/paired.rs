//! "The arm certifies larger radii than the baseline" decided on paired images (issue #14 item 5):
//! two models' runs on the *same* images, per image the difference of the certified radii of the
//! correct decision (arm − baseline), ID and OOD images separately; the exact Wilcoxon signed-rank
//! test, the sign test, the median difference with its sign-test interval, each model's radius
//! quantiles and certified-rate-vs-radius curves, and a verdict by [`decide_paired`].

use super::paired_runs::{ImageRadius, RunRadii, read_runs};
use super::signed_rank::{PairedTest, median_interval, sign_test, signed_rank_test};
use super::{ALPHA, Verdict};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// The rule of [`decide_paired`] in words, written beside every paired verdict.
pub const PAIRED_RULE: &str = "per image d = arm radius − baseline radius (the certified radius of the correct decision, 0 when it is not certified); supported when the exact two-sided Wilcoxon signed-rank p < 0.05 (zero differences dropped, midranks for ties) and the median difference's 95 % sign-test interval lies above 0; contradicted when p < 0.05 and the interval lies below 0; undecided otherwise. ID and OOD images are decided separately, no correction for the number of claims.";

/// Quantile levels reported for each model's radii.
pub const QUANTILES: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 0.9];

/// What to compare and where to write it.
#[derive(Debug, Clone)]
pub struct PairedConfig {
    /// The baseline model's runs (certify or lipschitz folders or CSVs; several = concatenated).
    pub baseline_runs: Vec<PathBuf>,
    /// The arm model's runs, on the same images.
    pub arm_runs: Vec<PathBuf>,
    /// Names of the two models in the outputs.
    pub baseline: String,
    pub arm: String,
    /// The radius column (default: `radius` for certify, `radius_bound_prop` for lipschitz).
    pub radius: Option<String>,
    /// Radius step of the curves (default: the largest radius / 50).
    pub radius_step: Option<f64>,
    /// Output folder.
    pub out: PathBuf,
}

/// One model's radii on one set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct RadiusSummary {
    /// Images whose correct decision is certified.
    pub certified: usize,
    pub mean: f64,
    /// The radii at [`QUANTILES`] (linear interpolation between order statistics).
    pub quantiles: [f64; 5],
    pub max: f64,
}

/// The decided claim "arm radii > baseline radii" on one set (ID or OOD images).
#[derive(Debug, Clone, PartialEq)]
pub struct PairedClaim {
    /// `ID` or `OOD`.
    pub set: String,
    /// The datasets of these images.
    pub datasets: Vec<String>,
    pub n: usize,
    pub baseline: RadiusSummary,
    pub arm: RadiusSummary,
    /// Differences arm − baseline: mean, median and the median's interval (None: unbounded).
    pub diff_mean: f64,
    pub diff_median: f64,
    pub diff_ci: Option<(f64, f64)>,
    /// Images with d > 0, d < 0, d = 0.
    pub larger: usize,
    pub smaller: usize,
    pub equal: usize,
    pub signed_rank: PairedTest,
    pub sign: PairedTest,
    pub verdict: Verdict,
}

/// One row of the certified-rate curves.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub set: String,
    pub radius: f64,
    /// Share of the set's images certified (correct decision) at radius ≥ r.
    pub baseline_rate: f64,
    pub arm_rate: f64,
}

/// The pairs of one set, matched by (dataset, index).
pub struct Pairs {
    pub set: String,
    pub baseline: Vec<ImageRadius>,
    pub arm: Vec<ImageRadius>,
}

/// The verdict: see [`PAIRED_RULE`].
pub fn decide_paired(p: f64, ci: Option<(f64, f64)>) -> Verdict {
    match ci {
        Some((lo, _)) if p < ALPHA && lo > 0.0 => Verdict::Supported,
        Some((_, hi)) if p < ALPHA && hi < 0.0 => Verdict::Contradicted,
        _ => Verdict::Undecided,
    }
}

/// Matches the two models' images set by set (ID, then OOD); the image lists must be identical
/// (same datasets, indices, labels and roles), else a `BadInput` error naming the first difference.
pub fn pair(base: &RunRadii, arm: &RunRadii) -> Result<Vec<Pairs>> {
    if base.kind != arm.kind || base.column != arm.column {
        return Err(Error::BadInput(format!(
            "paired runs of different kinds: {} ({}) vs {} ({})",
            base.kind.name(),
            base.column,
            arm.kind.name(),
            arm.column
        )));
    }
    if base.settings != arm.settings {
        let diff: Vec<String> = base
            .settings
            .iter()
            .zip(&arm.settings)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("{} {} vs {}", a.0, a.1, b.1))
            .collect();
        return Err(Error::BadInput(format!(
            "the two models' runs differ in their settings: {}",
            diff.join(", ")
        )));
    }
    let sorted = |v: &[ImageRadius]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| (&a.dataset, a.index).cmp(&(&b.dataset, b.index)));
        v
    };
    let (b, a) = (sorted(&base.images), sorted(&arm.images));
    for k in 0..b.len().max(a.len()) {
        let same = match (b.get(k), a.get(k)) {
            (Some(x), Some(y)) => {
                x.dataset == y.dataset
                    && x.index == y.index
                    && x.label == y.label
                    && x.is_id == y.is_id
            }
            _ => false,
        };
        if !same {
            let name = |i: Option<&ImageRadius>| {
                i.map_or("nothing".to_string(), |i| {
                    format!(
                        "{}#{} (label {}, {})",
                        i.dataset,
                        i.index,
                        i.label,
                        if i.is_id { "ID" } else { "OOD" }
                    )
                })
            };
            return Err(Error::BadInput(format!(
                "the two models' runs are not on the same images ({} vs {} images): image {} of the sorted lists is {} for the baseline, {} for the arm",
                b.len(),
                a.len(),
                k + 1,
                name(b.get(k)),
                name(a.get(k))
            )));
        }
    }
    let mut out = Vec::new();
    for (set, id) in [("ID", true), ("OOD", false)] {
        let pick = |v: &[ImageRadius]| v.iter().filter(|i| i.is_id == id).cloned().collect();
        let p = Pairs {
            set: set.to_string(),
            baseline: pick(&b),
            arm: pick(&a),
        };
        if !p.baseline.is_empty() {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::BadInput(
            "paired comparison: the runs hold no image".into(),
        ));
    }
    Ok(out)
}

/// The q-quantile of sorted `s` (type 7: linear between order statistics).
fn quantile(s: &[f64], q: f64) -> f64 {
    let h = q * (s.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

fn summary(v: &[ImageRadius]) -> RadiusSummary {
    let mut s: Vec<f64> = v.iter().map(|i| i.radius).collect();
    s.sort_by(f64::total_cmp);
    RadiusSummary {
        certified: v.iter().filter(|i| i.certified).count(),
        mean: s.iter().sum::<f64>() / s.len() as f64,
        quantiles: QUANTILES.map(|q| quantile(&s, q)),
        max: s[s.len() - 1],
    }
}

/// Decides the claim on one set's pairs.
pub fn decide_set(p: &Pairs) -> Result<PairedClaim> {
    let d: Vec<f64> = p
        .baseline
        .iter()
        .zip(&p.arm)
        .map(|(b, a)| a.radius - b.radius)
        .collect();
    let (median, ci) = median_interval(&d, ALPHA)?;
    let signed_rank = signed_rank_test(&d)?;
    let mut datasets: Vec<String> = p.baseline.iter().map(|i| i.dataset.clone()).collect();
    datasets.dedup();
    datasets.sort();
    datasets.dedup();
    Ok(PairedClaim {
        set: p.set.clone(),
        datasets,
        n: d.len(),
        baseline: summary(&p.baseline),
        arm: summary(&p.arm),
        diff_mean: d.iter().sum::<f64>() / d.len() as f64,
        diff_median: median,
        diff_ci: ci,
        larger: d.iter().filter(|x| **x > 0.0).count(),
        smaller: d.iter().filter(|x| **x < 0.0).count(),
        equal: d.iter().filter(|x| **x == 0.0).count(),
        verdict: decide_paired(signed_rank.p, ci),
        signed_rank,
        sign: sign_test(&d)?,
    })
}

/// Certified rates at radii 0, step, 2·step, … up to the largest radius of either model.
pub fn curves(pairs: &[Pairs], step: Option<f64>) -> Result<Vec<CurvePoint>> {
    let max = pairs
        .iter()
        .flat_map(|p| p.baseline.iter().chain(&p.arm))
        .map(|i| i.radius)
        .fold(0.0f64, f64::max);
    let step = match step {
        Some(s) if s.is_finite() && s > 0.0 => s,
        Some(s) => {
            return Err(Error::BadInput(format!(
                "--radius-step must be finite and > 0, got {s}"
            )));
        }
        None if max > 0.0 => max / 50.0,
        None => 1.0,
    };
    let k = (max / step).ceil() as usize;
    if k > 100_000 {
        return Err(Error::BadInput(format!(
            "--radius-step {step} gives more than 100000 radii up to {max}; use a larger step"
        )));
    }
    let rate = |v: &[ImageRadius], r: f64| {
        v.iter().filter(|i| i.certified && i.radius >= r).count() as f64 / v.len() as f64
    };
    let mut out = Vec::new();
    for p in pairs {
        for j in 0..=k {
            let r = j as f64 * step;
            out.push(CurvePoint {
                set: p.set.clone(),
                radius: r,
                baseline_rate: rate(&p.baseline, r),
                arm_rate: rate(&p.arm, r),
            });
        }
    }
    Ok(out)
}

/// Everything a paired comparison produces.
pub struct PairedResult {
    pub column: String,
    pub kind: &'static str,
    pub pairs: Vec<Pairs>,
    pub claims: Vec<PairedClaim>,
    pub curves: Vec<CurvePoint>,
}

/// Reads both models' runs, pairs their images and decides each set's claim.
pub fn compare(cfg: &PairedConfig) -> Result<PairedResult> {
    if cfg.baseline_runs.is_empty() || cfg.arm_runs.is_empty() {
        return Err(Error::BadInput(
            "paired comparison: give at least one --paired-baseline and one --paired-arm run"
                .into(),
        ));
    }
    let base = read_runs(&cfg.baseline_runs, cfg.radius.as_deref())?;
    let arm = read_runs(&cfg.arm_runs, cfg.radius.as_deref())?;
    let pairs = pair(&base, &arm)?;
    let claims = pairs.iter().map(decide_set).collect::<Result<Vec<_>>>()?;
    let curves = curves(&pairs, cfg.radius_step)?;
    Ok(PairedResult {
        column: base.column,
        kind: base.kind.name(),
        pairs,
        claims,
        curves,
    })
}

/// Compares and writes `paired.csv` (per image), `paired_claims.csv`, `paired_curves.csv` and
/// `paired.md` into `cfg.out` (atomically).
pub fn run_paired(cfg: &PairedConfig) -> Result<PairedResult> {
    let r = compare(cfg)?;
    std::fs::create_dir_all(&cfg.out)
        .map_err(|e| Error::io(format!("creating {}", cfg.out.display()), e))?;
    super::paired_output::write_all(cfg, &r)?;
    Ok(r)
}
