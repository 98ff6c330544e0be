//! Exact binomial inference: one-sided Clopper–Pearson bounds (Clopper & Pearson 1934) and the
//! two-sided binomial test against p = ½ used by Cohen et al. (2019)'s PREDICT.
//!
//! Soundness under rounding: the Beta quantile from statrs is an iterative solution (AS 109), so
//! every lower bound is checked against the regularised incomplete Beta function and pushed
//! *down* until the check passes, then shrunk by a relative margin of [`CP_MARGIN`]; upper bounds
//! are obtained by symmetry. A bound can only become looser, never unsound, through rounding.

use crate::error::{Error, Result};
use statrs::function::beta::{beta_reg, inv_beta_reg};

/// Relative margin by which a Clopper–Pearson lower bound is shrunk after the exact check.
pub const CP_MARGIN: f64 = 1e-9;

/// Checks `0 ≤ k ≤ n`, `n ≥ 1` and `0 < α < 1`.
fn check_counts(k: u64, n: u64, alpha: f64) -> Result<()> {
    if n == 0 || k > n {
        return Err(Error::BadInput(format!(
            "binomial counts need 0 <= k <= n and n >= 1, got k = {k}, n = {n}"
        )));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::BadInput(format!(
            "confidence level alpha must lie in (0, 1), got {alpha}"
        )));
    }
    Ok(())
}

/// One-sided (1-α) Clopper–Pearson lower bound on p from k successes in n trials:
/// the α-quantile of Beta(k, n-k+1); exactly 0 for k = 0 and α^{1/n} for k = n (then rounded down).
///
/// Guarantee: P_p(bound > p) ≤ α for every p ∈ [0,1] (proofs/smoothing_clopper_pearson.md).
pub fn clopper_pearson_lower(k: u64, n: u64, alpha: f64) -> Result<f64> {
    check_counts(k, n, alpha)?;
    if k == 0 {
        return Ok(0.0);
    }
    let (a, b) = (k as f64, (n - k + 1) as f64);
    let mut p = if k == n {
        (alpha.ln() / n as f64).exp()
    } else {
        inv_beta_reg(a, b, alpha)
    };
    if !p.is_finite() {
        return Err(Error::Internal(format!(
            "Clopper-Pearson quantile is {p} for k = {k}, n = {n}, alpha = {alpha}"
        )));
    }
    p = p.clamp(0.0, 1.0);
    // P_p(X >= k) = I_p(k, n-k+1) must not exceed α at the returned p: step down until it holds,
    // then bisect back up between the last passing and the first failing point.
    let mut step = p * 1e-12;
    let mut bad = None;
    let mut tries = 0;
    while p > 0.0 && beta_reg(a, b, p) > alpha {
        bad = Some(p);
        p = (p - step).max(0.0);
        step *= 2.0;
        tries += 1;
        if tries > 2000 {
            return Err(Error::Internal(format!(
                "Clopper-Pearson bound did not settle for k = {k}, n = {n}, alpha = {alpha}"
            )));
        }
    }
    if let Some(mut hi) = bad {
        for _ in 0..100 {
            let mid = 0.5 * (p + hi);
            if mid <= p || mid >= hi {
                break;
            }
            if beta_reg(a, b, mid) > alpha {
                hi = mid;
            } else {
                p = mid;
            }
        }
    }
    Ok(p * (1.0 - CP_MARGIN))
}

/// One-sided (1-α) Clopper–Pearson upper bound: `1 - clopper_pearson_lower(n-k, n, α)`, i.e. the
/// (1-α)-quantile of Beta(k+1, n-k); exactly 1 for k = n.
pub fn clopper_pearson_upper(k: u64, n: u64, alpha: f64) -> Result<f64> {
    check_counts(k, n, alpha)?;
    Ok(1.0 - clopper_pearson_lower(n - k, n, alpha)?)
}

/// P(X ≤ m) for X ~ Binomial(n, ½), via the regularised incomplete Beta function.
fn binomial_half_cdf(m: u64, n: u64) -> f64 {
    if m >= n {
        1.0
    } else {
        // P(X ≤ m) = I_{1-p}(n-m, m+1) with p = ½.
        beta_reg((n - m) as f64, (m + 1) as f64, 0.5)
    }
}

/// Two-sided binomial test p-value of k successes in n trials against p = ½
/// (equal to scipy's `binomtest(k, n, 0.5).pvalue`): min(1, 2·P(X ≤ min(k, n-k))).
pub fn binomial_test_two_sided(k: u64, n: u64) -> Result<f64> {
    check_counts(k, n, 0.5)?;
    let m = k.min(n - k);
    if 2 * m == n {
        return Ok(1.0);
    }
    Ok((2.0 * binomial_half_cdf(m, n)).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases_are_exact() {
        assert_eq!(clopper_pearson_lower(0, 10, 0.05).unwrap(), 0.0);
        assert_eq!(clopper_pearson_upper(10, 10, 0.05).unwrap(), 1.0);
        let lo = clopper_pearson_lower(10, 10, 0.05).unwrap();
        let exact = 0.05f64.powf(0.1);
        assert!(lo <= exact && exact - lo < 1e-8, "{lo} vs {exact}");
        let hi = clopper_pearson_upper(0, 10, 0.05).unwrap();
        assert!(hi >= 1.0 - exact && hi - (1.0 - exact) < 1e-8);
    }

    #[test]
    fn lower_bound_solves_the_tail_equation() {
        for &(k, n) in &[
            (1u64, 1u64),
            (3, 10),
            (50, 100),
            (99_990, 100_000),
            (7, 100_000),
        ] {
            let lo = clopper_pearson_lower(k, n, 0.001).unwrap();
            let tail = beta_reg(k as f64, (n - k + 1) as f64, lo);
            assert!(tail <= 0.001, "k={k} n={n}: tail {tail}");
            assert!(
                tail > 0.001 * (1.0 - 1e-3),
                "k={k} n={n}: bound too loose, tail {tail}"
            );
        }
    }

    #[test]
    fn binomial_test_symmetric_values() {
        // n = 10, k = 8: 2·P(X ≤ 2) = 2·(1 + 10 + 45)/1024.
        let p = binomial_test_two_sided(8, 10).unwrap();
        assert!((p - 112.0 / 1024.0).abs() < 1e-14, "{p}");
        assert_eq!(binomial_test_two_sided(5, 10).unwrap(), 1.0);
        assert_eq!(binomial_test_two_sided(2, 10).unwrap(), p);
        let p3 = binomial_test_two_sided(0, 3).unwrap();
        assert!((p3 - 0.25).abs() < 1e-13, "{p3}");
    }

    #[test]
    fn bad_counts_are_errors() {
        assert!(clopper_pearson_lower(3, 2, 0.05).is_err());
        assert!(clopper_pearson_lower(0, 0, 0.05).is_err());
        assert!(clopper_pearson_lower(1, 2, 0.0).is_err());
        assert!(binomial_test_two_sided(5, 4).is_err());
    }
}
