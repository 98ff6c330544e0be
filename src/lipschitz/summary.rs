//! `summary.csv` of a Lipschitz run: count, mean and median of every bound, radius and tightness
//! ratio over the samples (shortest round-trip floats), then the seconds spent per sample by each
//! stage (`{:.6e}`: wall-clock, not reproducible).

use super::record::LipschitzRecord;
use crate::error::{Error, Result};
use crate::evidence::fmt_f64;

/// The timed stages, in the order of their `seconds_per_sample_*` rows.
pub const STAGES: [&str; 9] = [
    "sample",
    "pgd",
    "clever",
    "local",
    "radius_lipschitz",
    "radius_bound_prop",
    "recurjac",
    "bab",
    "pattern",
];

/// Wall-clock seconds of a run: per stage (summed over samples) and the global bound's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Seconds per stage of [`STAGES`], summed over the samples.
    pub stages: [f64; 9],
    /// Seconds of the global bound (computed once).
    pub global_once: f64,
}

/// Stage indices into [`Timings::stages`].
pub mod stage {
    pub const SAMPLE: usize = 0;
    pub const PGD: usize = 1;
    pub const CLEVER: usize = 2;
    pub const LOCAL: usize = 3;
    pub const RADIUS_LIPSCHITZ: usize = 4;
    pub const RADIUS_BOUND_PROP: usize = 5;
    pub const RECURJAC: usize = 6;
    pub const BAB: usize = 7;
    pub const PATTERN: usize = 8;
}

/// The median (NaN for no values).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The summarised quantities: name and the values over the samples that have it.
fn quantities(rows: &[LipschitzRecord]) -> Vec<(&'static str, Vec<f64>)> {
    let col = |f: fn(&LipschitzRecord) -> Option<f64>| rows.iter().filter_map(f).collect();
    vec![
        ("grad_norm", col(|r| r.grad_norm)),
        ("lower_sample", col(|r| r.lower_sample)),
        ("lower_pgd", col(|r| r.lower_pgd)),
        ("lower_pattern", col(|r| r.lower_pattern)),
        // The largest gradient norm any empirical method found in the ball (a lower bound).
        ("lower_best", col(LipschitzRecord::lower_best)),
        ("clever", col(|r| r.clever)),
        ("upper_local", col(|r| r.upper_local)),
        ("upper_recurjac", col(|r| r.upper_recurjac)),
        ("upper_bab", col(|r| r.upper_bab)),
        ("upper_global", col(|r| r.upper_global)),
        ("radius_lipschitz", col(|r| r.radius_lipschitz)),
        ("radius_bound_prop", col(|r| r.radius_bound_prop)),
        (
            "tightness_local_over_pgd",
            col(|r| Some(r.upper_local? / r.lower_pgd?)),
        ),
        (
            "tightness_local_over_best_lower",
            col(|r| Some(r.upper_local? / r.lower_best()?)),
        ),
        (
            "tightness_global_over_pgd",
            col(|r| Some(r.upper_global? / r.lower_pgd?)),
        ),
        (
            "tightness_recurjac_over_pgd",
            col(|r| Some(r.upper_recurjac? / r.lower_pgd?)),
        ),
        (
            "tightness_bab_over_pgd",
            col(|r| Some(r.upper_bab? / r.lower_pgd?)),
        ),
        // FastLip here: the box ∩ simplex head on the same boxes, min with the local product.
        (
            "ratio_recurjac_over_fastlip_simplex",
            col(|r| Some(r.upper_recurjac? / r.fastlip_simplex?)),
        ),
        (
            "share_recurjac_strictly_tighter",
            col(|r| Some(f64::from(u8::from(r.upper_recurjac? < r.fastlip_simplex?)))),
        ),
        // The float32 detector (proofs/f32_detector.md): E at the centre, undecided samples.
        ("f32_err_bound", col(|r| r.f32_err_bound)),
        (
            "share_f32_undecided",
            col(|r| Some(f64::from(u8::from(r.f32_undecided?)))),
        ),
    ]
}

/// The bytes of `summary.csv` for `rows` and `times`.
pub fn to_csv_bytes(rows: &[LipschitzRecord], times: &Timings) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::Internal(format!("writing summary.csv: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["quantity", "n", "mean", "median"])
        .map_err(err)?;
    for (name, v) in quantities(rows) {
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        let mut m = v.clone();
        w.write_record([
            name.to_string(),
            v.len().to_string(),
            fmt_f64(mean),
            fmt_f64(median(&mut m)),
        ])
        .map_err(err)?;
    }
    let n = rows.len().max(1) as f64;
    for (name, t) in STAGES.iter().zip(times.stages) {
        w.write_record([
            format!("seconds_per_sample_{name}"),
            rows.len().to_string(),
            format!("{:.6e}", t / n),
            String::new(),
        ])
        .map_err(err)?;
    }
    w.write_record([
        "seconds_global_once".to_string(),
        "1".into(),
        format!("{:.6e}", times.global_once),
        String::new(),
    ])
    .map_err(err)?;
    w.into_inner()
        .map_err(|e| Error::Internal(format!("writing summary.csv: {e}")))
}
