//! Student-t confidence intervals over seeds: the mean's interval x̄ ± t_{1−α/2, n−1}·s/√n and the
//! Welch interval of a difference of means (Welch, Biometrika 1947; Satterthwaite's degrees of
//! freedom), quantiles from statrs.

use crate::error::{Error, Result};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A point estimate with a two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The estimate (a mean, or a difference of means).
    pub estimate: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// Degrees of freedom of the t quantile used (NaN when the spread is 0 and none was needed).
    pub df: f64,
}

/// The quantile t_{p, df} of Student's t distribution (p in (0, 1), df > 0).
pub fn t_quantile(p: f64, df: f64) -> Result<f64> {
    if !(p > 0.0 && p < 1.0 && df > 0.0) {
        return Err(Error::Internal(format!("t quantile of p = {p}, df = {df}")));
    }
    let t = StudentsT::new(0.0, 1.0, df)
        .map_err(|e| Error::Internal(format!("Student t with df = {df}: {e}")))?;
    Ok(t.inverse_cdf(p))
}

/// Sample mean and unbiased variance (n − 1 in the denominator); needs n ≥ 2 finite values.
pub fn mean_var(x: &[f64]) -> Result<(f64, f64)> {
    if x.len() < 2 || x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Internal(format!(
            "mean and variance need at least 2 finite values, got {x:?}"
        )));
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    Ok((m, v))
}

/// The mean of `x` with its two-sided (1 − `alpha`) t interval on n − 1 degrees of freedom.
pub fn mean_interval(x: &[f64], alpha: f64) -> Result<Interval> {
    let (m, v) = mean_var(x)?;
    let df = (x.len() - 1) as f64;
    let half = t_quantile(1.0 - alpha / 2.0, df)? * (v / x.len() as f64).sqrt();
    Ok(Interval {
        estimate: m,
        lo: m - half,
        hi: m + half,
        df,
    })
}

/// mean(`a`) − mean(`b`) with its two-sided (1 − `alpha`) Welch interval: standard error
/// √(s²_a/n_a + s²_b/n_b) on the Welch–Satterthwaite degrees of freedom. When both samples are
/// constant the standard error is 0 and the interval is the single point (df NaN).
pub fn welch_interval(a: &[f64], b: &[f64], alpha: f64) -> Result<Interval> {
    let (ma, va) = mean_var(a)?;
    let (mb, vb) = mean_var(b)?;
    let (qa, qb) = (va / a.len() as f64, vb / b.len() as f64);
    let d = ma - mb;
    let se2 = qa + qb;
    if se2 == 0.0 {
        return Ok(Interval {
            estimate: d,
            lo: d,
            hi: d,
            df: f64::NAN,
        });
    }
    let df = se2 * se2 / (qa * qa / (a.len() - 1) as f64 + qb * qb / (b.len() - 1) as f64);
    let half = t_quantile(1.0 - alpha / 2.0, df)? * se2.sqrt();
    Ok(Interval {
        estimate: d,
        lo: d - half,
        hi: d + half,
        df,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Two-sided 95 % critical values (R: qt(0.975, df)).
        for (df, t) in [
            (1.0, 12.706_204_736_174_7),
            (2.0, 4.302_652_729_749_46),
            (4.0, 2.776_445_105_197_8),
            (8.0, 2.306_004_135_204_17),
            (30.0, 2.042_272_456_301_24),
        ] {
            let q = t_quantile(0.975, df).unwrap();
            assert!((q - t).abs() < 1e-6 * t, "df {df}: {q} vs {t}");
        }
        // Non-integer df (Welch): 2.5018586 by Simpson integration of the t density and bisection.
        assert!((t_quantile(0.975, 5.5).unwrap() - 2.501_858_6).abs() < 1e-6);
    }

    #[test]
    fn mean_interval_known_answer() {
        // x = 1..5: mean 3, s² = 2.5, half-width 2.776445·√0.5 = 1.963243.
        let i = mean_interval(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.05).unwrap();
        assert_eq!(i.estimate, 3.0);
        assert!((i.hi - 3.0 - 1.963_243_6).abs() < 1e-6, "{i:?}");
        assert!((3.0 - i.lo - 1.963_243_6).abs() < 1e-6, "{i:?}");
        assert_eq!(i.df, 4.0);
    }

    #[test]
    fn welch_interval_known_answer() {
        // mean 3 vs 7, s² 2.5 vs 14, n 5 vs 6: se² = 0.5 + 2.3333, df = se⁴/(0.5²/4 + 2.3333²/5)
        // = 6.9722557, half-width t_{0.975, df}·se = 3.9834687 (t by numerical integration).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0];
        let i = welch_interval(&a, &b, 0.05).unwrap();
        assert!((i.df - 6.972_255_73).abs() < 1e-7, "{}", i.df);
        assert_eq!(i.estimate, -4.0);
        assert!((i.lo - (-4.0 - 3.983_468_7)).abs() < 1e-6, "{i:?}");
        assert!((i.hi - (-4.0 + 3.983_468_7)).abs() < 1e-6, "{i:?}");
        // Both constant: the point interval.
        let p = welch_interval(&[1.0, 1.0], &[3.0, 3.0, 3.0], 0.05).unwrap();
        assert_eq!((p.estimate, p.lo, p.hi), (-2.0, -2.0, -2.0));
        assert!(mean_var(&[1.0]).is_err());
        assert!(mean_var(&[1.0, f64::NAN]).is_err());
    }
}
