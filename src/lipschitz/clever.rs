//! CLEVER (Weng et al. 2018): an *estimate* (not a certificate) of the local Lipschitz constant
//! of S on a ball. N_b batches of N_s uniform samples of the ball; the maximum of ‖∇ₓS‖_q in
//! each batch; a reverse Weibull fitted to the batch maxima by maximum likelihood (statrs for
//! the distribution, Nelder–Mead for the fit); the fitted location is the estimate. The
//! Kolmogorov–Smirnov statistic of the fit is reported (its p-value is optimistic because the
//! parameters were fitted on the same data).

use super::empirical::{GradOracle, sample_ball};
use super::nelder_mead::minimize;
use crate::bounds::Ball;
use crate::error::{Error, Result};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{Continuous, ContinuousCDF, Weibull};

/// CLEVER's sampling parameters (the paper uses N_b = 500, N_s = 1024).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CleverConfig {
    pub batches: usize,
    pub per_batch: usize,
}

impl Default for CleverConfig {
    fn default() -> Self {
        Self {
            batches: 50,
            per_batch: 64,
        }
    }
}

/// The reverse-Weibull fit: Y ≤ loc with loc − Y ~ Weibull(shape, scale).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CleverFit {
    /// The CLEVER estimate: the fitted location (never below the largest batch maximum).
    pub estimate: f64,
    pub shape: f64,
    pub scale: f64,
    pub max_seen: f64,
    /// Kolmogorov–Smirnov statistic D_n of the fit and its asymptotic p-value.
    pub ks_stat: f64,
    pub ks_pvalue: f64,
}

/// Asymptotic Kolmogorov survival function with Stephens' correction for n samples.
pub fn ks_pvalue(d: f64, n: usize) -> f64 {
    let sn = (n as f64).sqrt();
    let lam = (sn + 0.12 + 0.11 / sn) * d;
    if lam < 0.2 {
        return 1.0;
    }
    let mut s = 0.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * lam * lam).exp();
        s += if k % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * s).clamp(0.0, 1.0)
}

/// Maximum-likelihood reverse-Weibull fit of `maxima` (shape constrained to ≥ 1, where the
/// likelihood is bounded).
pub fn fit_reverse_weibull(maxima: &[f64]) -> Result<CleverFit> {
    let n = maxima.len();
    if n < 3 || maxima.iter().any(|v| !v.is_finite()) {
        return Err(Error::BadInput(format!(
            "CLEVER needs ≥ 3 finite batch maxima, got {n}"
        )));
    }
    let ymax = maxima.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let mean = maxima.iter().sum::<f64>() / n as f64;
    let sd = (maxima.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    if sd.is_nan() || sd <= 1e-12 * ymax.abs().max(1e-300) {
        return Ok(CleverFit {
            estimate: ymax,
            shape: f64::NAN,
            scale: 0.0,
            max_seen: ymax,
            ks_stat: f64::NAN,
            ks_pvalue: f64::NAN,
        });
    }
    let params = |t: &[f64]| (ymax + t[0].exp() * sd, 1.0 + t[1].exp(), t[2].exp() * sd);
    let nll = |t: &[f64]| {
        let (loc, c, b) = params(t);
        let Ok(w) = Weibull::new(c, b) else {
            return f64::INFINITY;
        };
        -maxima.iter().map(|y| w.ln_pdf(loc - y)).sum::<f64>()
    };
    let mut best = (vec![0.0; 3], f64::INFINITY);
    for (l0, c0) in [(-2.0, 0.5), (0.0, 1.0), (-5.0, 2.0), (1.0, 0.0)] {
        let (x, v) = minimize(nll, &[l0, c0, 0.5], 0.7, 1e-12, 4000);
        if v < best.1 {
            best = (x, v);
        }
    }
    let (loc, c, b) = params(&best.0);
    let w = Weibull::new(c, b).map_err(|e| Error::Internal(format!("weibull fit: {e}")))?;
    // F(y) = P(Y ≤ y) = P(loc − Y ≥ loc − y) = 1 − W(loc − y).
    let mut ys = maxima.to_vec();
    ys.sort_by(f64::total_cmp);
    let mut d = 0.0f64;
    for (i, y) in ys.iter().enumerate() {
        let f = 1.0 - w.cdf(loc - y);
        d = d
            .max((i + 1) as f64 / n as f64 - f)
            .max(f - i as f64 / n as f64);
    }
    Ok(CleverFit {
        estimate: loc,
        shape: c,
        scale: b,
        max_seen: ymax,
        ks_stat: d,
        ks_pvalue: ks_pvalue(d, n),
    })
}

/// The batch maxima of ‖∇ₓS‖_q over uniform samples of the ball.
pub fn batch_maxima(
    oracle: &GradOracle,
    ball: &Ball,
    cfg: &CleverConfig,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(cfg.batches);
    for _ in 0..cfg.batches {
        let pts: Vec<Vec<f64>> = (0..cfg.per_batch.max(1))
            .map(|_| sample_ball(ball, rng))
            .collect();
        out.push(
            oracle
                .grad_norms(&pts, ball.norm)?
                .into_iter()
                .fold(0.0, f64::max),
        );
    }
    Ok(out)
}

/// The CLEVER estimate on the ball.
pub fn clever(
    oracle: &GradOracle,
    ball: &Ball,
    cfg: &CleverConfig,
    rng: &mut ChaCha8Rng,
) -> Result<CleverFit> {
    fit_reverse_weibull(&batch_maxima(oracle, ball, cfg, rng)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn recovers_the_location_of_reverse_weibull_samples() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (loc, c, b) in [(3.0, 2.0, 0.5), (10.0, 4.0, 2.0), (0.7, 1.5, 0.05)] {
            // Inverse CDF: X = b (−ln U)^{1/c}, Y = loc − X.
            let ys: Vec<f64> = (0..2000)
                .map(|_| loc - b * (-(rng.random::<f64>().max(1e-300)).ln()).powf(1.0 / c))
                .collect();
            let fit = fit_reverse_weibull(&ys).unwrap();
            assert!((fit.estimate - loc).abs() < 0.05 * b, "loc {loc}: {fit:?}");
            assert!((fit.shape - c).abs() < 0.2 * c, "shape {c}: {fit:?}");
            assert!(fit.ks_stat < 0.04 && fit.ks_pvalue > 0.01, "{fit:?}");
            assert!(fit.estimate >= fit.max_seen);
        }
    }

    #[test]
    fn ks_flags_a_bad_fit_and_pvalue_is_monotone() {
        assert!(ks_pvalue(0.01, 1000) > 0.9);
        assert!(ks_pvalue(0.1, 1000) < 1e-6);
        assert!(ks_pvalue(0.03, 1000) > ks_pvalue(0.05, 1000));
        // Kolmogorov: P(K > 1.36) ≈ 0.049.
        let p = ks_pvalue(1.36 / (1000f64.sqrt() + 0.12 + 0.11 / 1000f64.sqrt()), 1000);
        assert!((p - 0.049).abs() < 0.002, "{p}");
    }
}
