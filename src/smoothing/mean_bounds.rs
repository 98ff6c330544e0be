//! Confidence bounds on the mean of a random variable in [0,1] from n i.i.d. samples:
//! Hoeffding (1963) and the CDF-based bound of Kumar et al. (2020) with the DKW band in Massart's
//! (1990) form. All bounds are one-sided at level α (0 < α ≤ ½, which Massart's constant needs).
//!
//! Soundness under rounding: sums use Neumaier's compensated summation (error ≈ 2 ulps), and every
//! bound is then moved outward by [`MEAN_MARGIN`] (absolute, on the [0,1] scale) and clamped.

use crate::error::{Error, Result};

/// Absolute outward margin applied to every mean bound (far above the summation error).
pub const MEAN_MARGIN: f64 = 1e-12;

/// Checks 0 < α ≤ ½ and n ≥ 1.
fn check(n: usize, alpha: f64) -> Result<()> {
    if n == 0 {
        return Err(Error::BadInput(
            "a mean bound needs at least one sample".into(),
        ));
    }
    if !(alpha > 0.0 && alpha <= 0.5) {
        return Err(Error::BadInput(format!(
            "alpha must lie in (0, 0.5] for the Hoeffding/DKW bounds, got {alpha}"
        )));
    }
    Ok(())
}

/// Sum with Neumaier's compensation.
pub fn compensated_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = s + v;
        if s.abs() >= v.abs() {
            c += (s - t) + v;
        } else {
            c += (v - t) + s;
        }
        s = t;
    }
    s + c
}

/// Hoeffding's one-sided deviation sqrt(ln(1/α)/(2n)) for variables in [0,1].
pub fn hoeffding_epsilon(n: usize, alpha: f64) -> f64 {
    ((1.0 / alpha).ln() / (2.0 * n as f64)).sqrt()
}

/// Massart's one-sided DKW deviation: P(sup_s (F(s) - F_n(s)) > ε) ≤ exp(-2nε²) = α.
pub fn dkw_epsilon(n: usize, alpha: f64) -> f64 {
    hoeffding_epsilon(n, alpha)
}

/// One-sided (1-α) Hoeffding lower bound on E[X], X ∈ [0,1]: mean - sqrt(ln(1/α)/(2n)).
pub fn hoeffding_lower(samples: &[f64], alpha: f64) -> Result<f64> {
    check_unit(samples)?;
    check(samples.len(), alpha)?;
    let mean = compensated_sum(samples.iter().copied()) / samples.len() as f64;
    Ok((mean - hoeffding_epsilon(samples.len(), alpha) - MEAN_MARGIN).clamp(0.0, 1.0))
}

/// One-sided (1-α) Hoeffding upper bound on E[X], X ∈ [0,1]: mean + sqrt(ln(1/α)/(2n)).
pub fn hoeffding_upper(samples: &[f64], alpha: f64) -> Result<f64> {
    check_unit(samples)?;
    check(samples.len(), alpha)?;
    let mean = compensated_sum(samples.iter().copied()) / samples.len() as f64;
    Ok((mean + hoeffding_epsilon(samples.len(), alpha) + MEAN_MARGIN).clamp(0.0, 1.0))
}

/// One-sided (1-α) CDF-based lower bound on E[X], X ∈ [0,1] (Kumar et al. 2020):
/// E[X] = ∫₀¹ P(X > s) ds ≥ ∫₀¹ max(0, Ŝ_n(s) - ε) ds with Ŝ_n the empirical survival function
/// and ε the one-sided DKW deviation. `sorted` must be ascending.
pub fn cdf_lower(sorted: &[f64], alpha: f64) -> Result<f64> {
    check_sorted_unit(sorted)?;
    let n = sorted.len();
    check(n, alpha)?;
    let eps = dkw_epsilon(n, alpha);
    // On [x_(j-1), x_(j)) (x_(-1) = 0) exactly n - j samples exceed s.
    let mut prev = 0.0;
    let terms = sorted.iter().enumerate().map(|(j, &x)| {
        let w = ((n - j) as f64 / n as f64 - eps).max(0.0);
        let t = (x - prev) * w;
        prev = x;
        t
    });
    Ok((compensated_sum(terms) - MEAN_MARGIN).clamp(0.0, 1.0))
}

/// One-sided (1-α) CDF-based upper bound on E[X], X ∈ [0,1]: ∫₀¹ min(1, Ŝ_n(s) + ε) ds.
pub fn cdf_upper(sorted: &[f64], alpha: f64) -> Result<f64> {
    check_sorted_unit(sorted)?;
    let n = sorted.len();
    check(n, alpha)?;
    let eps = dkw_epsilon(n, alpha);
    let mut prev = 0.0;
    let ends = sorted.iter().copied().chain(std::iter::once(1.0));
    let terms = ends.enumerate().map(|(j, x)| {
        let w = ((n - j) as f64 / n as f64 + eps).min(1.0);
        let t = (x - prev) * w;
        prev = x;
        t
    });
    Ok((compensated_sum(terms) + MEAN_MARGIN).clamp(0.0, 1.0))
}

fn check_unit(samples: &[f64]) -> Result<()> {
    match samples.iter().position(|v| !(0.0..=1.0).contains(v)) {
        Some(i) => Err(Error::Internal(format!(
            "mean bound: sample {i} is {} (must lie in [0,1])",
            samples[i]
        ))),
        None => Ok(()),
    }
}

fn check_sorted_unit(sorted: &[f64]) -> Result<()> {
    check_unit(sorted)?;
    if sorted.windows(2).any(|w| w[0] > w[1]) {
        return Err(Error::Internal("CDF bound: samples are not sorted".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hoeffding_width() {
        let xs = vec![0.25; 100];
        let lo = hoeffding_lower(&xs, 0.05).unwrap();
        let want = 0.25 - (20f64.ln() / 200.0).sqrt();
        assert!((lo - want).abs() < 1e-11 && lo < want);
        assert_eq!(hoeffding_upper(&[1.0; 3], 0.05).unwrap(), 1.0);
    }

    #[test]
    fn cdf_bounds_bracket_the_empirical_mean_and_hand_values() {
        // n = 4, values 0.1, 0.2, 0.6, 0.9 and ε = 0.3 chosen through α = exp(-2·4·0.09).
        let xs = [0.1, 0.2, 0.6, 0.9];
        let alpha = (-2.0f64 * 4.0 * 0.09).exp();
        let lo = cdf_lower(&xs, alpha).unwrap();
        // widths 0.1,0.1,0.4,0.3 with weights max(0, 1-.3, .75-.3, .5-.3, .25-.3) = .7,.45,.2,0
        let want_lo = 0.1 * 0.7 + 0.1 * 0.45 + 0.4 * 0.2;
        assert!(
            (lo - want_lo).abs() < 1e-11 && lo <= want_lo,
            "{lo} vs {want_lo}"
        );
        let hi = cdf_upper(&xs, alpha).unwrap();
        // widths .1,.1,.4,.3,.1 with weights min(1, 1.3,1.05,.8,.55,.3) = 1,1,.8,.55,.3
        let want_hi = 0.1 + 0.1 + 0.4 * 0.8 + 0.3 * 0.55 + 0.1 * 0.3;
        assert!(
            (hi - want_hi).abs() < 1e-11 && hi >= want_hi,
            "{hi} vs {want_hi}"
        );
    }

    #[test]
    fn cdf_is_tighter_than_hoeffding_for_concentrated_samples() {
        let xs: Vec<f64> = (0..1000).map(|i| 0.02 + 0.0001 * (i % 7) as f64).collect();
        let mut s = xs.clone();
        s.sort_by(f64::total_cmp);
        assert!(cdf_upper(&s, 0.001).unwrap() < hoeffding_upper(&xs, 0.001).unwrap());
        assert!(cdf_lower(&s, 0.001).unwrap() <= hoeffding_lower(&xs, 0.001).unwrap() + 0.1);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(cdf_lower(&[0.5, 0.2], 0.05).is_err());
        assert!(hoeffding_lower(&[1.5], 0.05).is_err());
        assert!(hoeffding_lower(&[], 0.05).is_err());
        assert!(hoeffding_lower(&[0.5], 0.7).is_err());
    }
}
