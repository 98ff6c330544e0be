//! The exact Wilcoxon signed-rank test (Wilcoxon, Biometrics Bulletin 1945) and the sign test of
//! paired differences, both from one exact null distribution: under H0 every nonzero difference is
//! equally likely positive or negative, independently, so the statistic T⁺ = Σ_{d_i > 0} w_i (w_i
//! the doubled midrank of |d_i| for the signed-rank test, 1 for the sign test) has the law of a sum
//! of independent fair {0, w_i} coins, counted by dynamic programming over the weights.
//!
//! Zero differences are **dropped** before ranking (Wilcoxon's rule); ties among |d_i| get
//! midranks, doubled so every weight is an integer. Probabilities are held in f64, each step halving:
//! exact while every count fits in 53 bits (n ≤ 53 nonzero differences); beyond that each step
//! adds at most one rounding per entry, so the absolute error of every tail probability is below
//! n·2⁻⁵³ (relative accuracy is lost only where the probabilities underflow, n ≳ 1 000, far below
//! any level this is compared with). The table has n(n + 1) + 1 entries and the count n³/2 updates,
//! hence the limit below (a few seconds and ≤ 72 MB at the limit).

use crate::error::{Error, Result};

/// The most nonzero differences the counts handle (the table has Σ w_i + 1 ≤ n(n + 1) + 1 entries
/// and the count takes ~n³/2 updates: 3 000 pairs is ~10¹⁰ updates, 72 MB).
pub const MAX_PAIRS: usize = 3_000;

/// The outcome of an exact test on paired differences (zeros dropped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedTest {
    /// Nonzero differences used.
    pub n: usize,
    /// Positive and negative differences.
    pub positive: usize,
    pub negative: usize,
    /// T⁺, the weight sum of the positive differences (for the signed-rank test: the sum of the
    /// midranks of the positive |d_i|, in rank units; for the sign test: `positive`).
    pub t_plus: f64,
    /// Its null mean, Σ w_i / 2 (same units).
    pub mean: f64,
    /// The exact two-sided p-value P(|T⁺ − mean| ≥ |t⁺ − mean|) (1 when n = 0).
    pub p: f64,
}

/// P(T⁺ = s) for s = 0..=Σw, T⁺ the sum of independent fair {0, w_i} coins.
pub fn null_distribution(weights: &[u64]) -> Vec<f64> {
    let total: u64 = weights.iter().sum();
    let mut prob = vec![0.0f64; total as usize + 1];
    prob[0] = 1.0;
    let mut reach = 0usize;
    for &w in weights {
        let w = w as usize;
        reach += w;
        // New P(s) = ½ P_old(s) + ½ P_old(s − w), updated from the top so P_old(s − w) is unread.
        for s in (0..=reach).rev() {
            let carried = if s >= w { prob[s - w] } else { 0.0 };
            prob[s] = 0.5 * (prob[s] + carried);
        }
    }
    prob
}

/// The exact two-sided test of "T⁺ is centred" for weights `w` of which those flagged in
/// `positive` carry a positive sign. All in integer weight units; `scale` converts T⁺ and its mean
/// to the reported units.
fn exact_two_sided(w: &[u64], positive: &[bool], scale: f64) -> PairedTest {
    let total: u64 = w.iter().sum();
    let t: u64 = w.iter().zip(positive).filter(|p| *p.1).map(|p| *p.0).sum();
    let pos = positive.iter().filter(|p| **p).count();
    let dev = |s: u64| (2 * s).abs_diff(total); // 2·|s − total/2|, an integer
    let p = if w.is_empty() {
        1.0
    } else {
        let prob = null_distribution(w);
        let obs = dev(t);
        let tail: f64 = (0..prob.len())
            .filter(|&s| dev(s as u64) >= obs)
            .map(|s| prob[s])
            .sum();
        tail.min(1.0)
    };
    PairedTest {
        n: w.len(),
        positive: pos,
        negative: w.len() - pos,
        t_plus: t as f64 * scale,
        mean: total as f64 * scale / 2.0,
        p,
    }
}

/// The nonzero differences of `d` (finite values required).
fn nonzero(d: &[f64]) -> Result<Vec<f64>> {
    if d.iter().any(|v| !v.is_finite()) {
        return Err(Error::Internal(
            "paired test of a non-finite difference".into(),
        ));
    }
    let nz: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    if nz.len() > MAX_PAIRS {
        return Err(Error::BadInput(format!(
            "paired test: {} nonzero differences, more than the {MAX_PAIRS} it counts exactly; compare a subset of the images (e.g. runs made with --limit {MAX_PAIRS})",
            nz.len()
        )));
    }
    Ok(nz)
}

/// The exact two-sided Wilcoxon signed-rank test of the differences `d` (zeros dropped, midranks).
pub fn signed_rank_test(d: &[f64]) -> Result<PairedTest> {
    let nz = nonzero(d)?;
    let abs: Vec<f64> = nz.iter().map(|v| v.abs()).collect();
    let w = super::rank_test::doubled_midranks(&abs);
    let positive: Vec<bool> = nz.iter().map(|v| *v > 0.0).collect();
    Ok(exact_two_sided(&w, &positive, 0.5))
}

/// The exact two-sided sign test of the differences `d` (zeros dropped): Binomial(n, ½).
pub fn sign_test(d: &[f64]) -> Result<PairedTest> {
    let nz = nonzero(d)?;
    let w = vec![1u64; nz.len()];
    let positive: Vec<bool> = nz.iter().map(|v| *v > 0.0).collect();
    Ok(exact_two_sided(&w, &positive, 1.0))
}

/// The median of `d` with its distribution-free (1 − `alpha`) interval from the sign test's
/// inversion: [d₍ₖ₎, d₍ₙ₊₁₋ₖ₎] for the largest k with P(Binomial(n, ½) ≤ k − 1) ≤ α/2 (coverage
/// ≥ 1 − α for any continuous law of the differences; all n differences, zeros included).
/// `None` for the interval when n is too small for any k (n ≤ 5 at α = 0.05): (−∞, ∞).
pub fn median_interval(d: &[f64], alpha: f64) -> Result<(f64, Option<(f64, f64)>)> {
    if d.is_empty() || d.iter().any(|v| !v.is_finite()) {
        return Err(Error::Internal(
            "median interval needs finite differences".into(),
        ));
    }
    let mut s = d.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    };
    let pmf = null_distribution(&vec![1u64; n]);
    // cdf(k − 1) = P(B ≤ k − 1); the largest k ≥ 1 with cdf(k − 1) ≤ α/2.
    let (mut cdf, mut k) = (0.0, 0usize);
    for (j, p) in pmf.iter().enumerate() {
        cdf += p;
        if cdf <= alpha / 2.0 {
            k = j + 1;
        } else {
            break;
        }
    }
    let ci = (k >= 1 && k <= n + 1 - k).then(|| (s[k - 1], s[n - k]));
    Ok((median, ci))
}
