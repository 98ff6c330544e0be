//! Soundness of the confidence bounds (proofs/smoothing_clopper_pearson.md, smoothing_score.md):
//! agreement with scipy, exact and simulated coverage of Clopper–Pearson, simulated coverage of
//! the Hoeffding and CDF-based mean bounds, and PREDICT's error rate.

use oodcert::smoothing::binomial::{
    binomial_test_two_sided, clopper_pearson_lower, clopper_pearson_upper,
};
use oodcert::smoothing::cohen::{Decision, predict_from_counts};
use oodcert::smoothing::mean_bounds::{cdf_lower, cdf_upper, hoeffding_lower, hoeffding_upper};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::function::beta::beta_reg;

/// Largest failure count compatible with a true failure rate ≤ α in `trials` trials: the mean plus
/// 5 standard deviations of Binomial(trials, α) (a false alarm has probability < 1e-6).
fn budget(alpha: f64, trials: usize) -> usize {
    let t = trials as f64;
    (alpha * t + 5.0 * (t * alpha * (1.0 - alpha)).sqrt()).ceil() as usize
}

#[test]
fn clopper_pearson_and_binomial_test_match_scipy() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/smoothing/reference.csv"
    ))
    .unwrap();
    let mut rows = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (k, n): (u64, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let alpha: f64 = f[2].parse().unwrap();
        let (lo_ref, hi_ref, p_ref): (f64, f64, f64) = (
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
            f[5].parse().unwrap(),
        );
        let lo = clopper_pearson_lower(k, n, alpha).unwrap();
        let hi = clopper_pearson_upper(k, n, alpha).unwrap();
        // Sound: never above scipy's exact quantile (beyond scipy's own 1e-13 accuracy); tight to 1e-8.
        assert!(
            lo <= lo_ref * (1.0 + 1e-13),
            "lower k={k} n={n} a={alpha}: {lo} > {lo_ref}"
        );
        assert!(
            lo_ref - lo <= 1e-8 * lo_ref.max(1e-300),
            "lower k={k} n={n} a={alpha}: {lo} vs {lo_ref}"
        );
        assert!(
            hi >= hi_ref * (1.0 - 1e-13),
            "upper k={k} n={n} a={alpha}: {hi} < {hi_ref}"
        );
        assert!(
            hi - hi_ref <= 1e-8,
            "upper k={k} n={n} a={alpha}: {hi} vs {hi_ref}"
        );
        let p = binomial_test_two_sided(k, n).unwrap();
        assert!(
            (p - p_ref).abs() <= 1e-9 * p_ref.max(1e-300),
            "p-value k={k} n={n}: {p} vs {p_ref}"
        );
        rows += 1;
    }
    assert_eq!(rows, 92);
}

/// Exact failure probability of the lower bound at true rate p: Σ_k P(k) 1{lower(k) > p}.
fn exact_failure(n: u64, p: f64, alpha: f64, lower: &[f64]) -> f64 {
    // P(X ≥ k) = I_p(k, n-k+1); the failure set {k : lower(k) > p} is an upper set of k.
    match (0..=n).find(|&k| lower[k as usize] > p) {
        None => 0.0,
        Some(0) => 1.0,
        Some(k) => {
            let _ = alpha;
            beta_reg(k as f64, (n - k + 1) as f64, p)
        }
    }
}

#[test]
fn clopper_pearson_exact_coverage_on_a_grid() {
    for &n in &[1u64, 10, 100, 1000] {
        for &alpha in &[0.05, 0.001] {
            let lower: Vec<f64> = (0..=n)
                .map(|k| clopper_pearson_lower(k, n, alpha).unwrap())
                .collect();
            assert!(
                lower.windows(2).all(|w| w[0] <= w[1]),
                "lower bound not monotone in k"
            );
            let mut worst: f64 = 0.0;
            for i in 1..2000 {
                let p = i as f64 / 2000.0;
                worst = worst.max(exact_failure(n, p, alpha, &lower));
                // Just below each bound value the failure probability is largest.
                for &l in &lower {
                    if l > 0.0 && l < 1.0 {
                        worst = worst.max(exact_failure(n, l * (1.0 - 1e-15), alpha, &lower));
                    }
                }
                if n > 10 {
                    break;
                }
            }
            for &l in &lower {
                if l > 0.0 && l < 1.0 {
                    worst = worst.max(exact_failure(n, l * (1.0 - 1e-15), alpha, &lower));
                }
            }
            assert!(
                worst <= alpha * (1.0 + 1e-9),
                "n={n} alpha={alpha}: exact failure {worst}"
            );
            // And the bound is not vacuous: near the supremum the failure rate approaches α.
            assert!(
                worst > 0.5 * alpha,
                "n={n} alpha={alpha}: bound far too loose ({worst})"
            );
        }
    }
}

#[test]
fn clopper_pearson_simulated_coverage() {
    let (alpha, n, trials) = (0.05, 100u64, 10_000usize);
    let lower: Vec<f64> = (0..=n)
        .map(|k| clopper_pearson_lower(k, n, alpha).unwrap())
        .collect();
    let upper: Vec<f64> = (0..=n)
        .map(|k| clopper_pearson_upper(k, n, alpha).unwrap())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    for &p in &[0.03, 0.3, 0.5, 0.77, 0.95, 0.999] {
        let (mut lo_fail, mut hi_fail) = (0, 0);
        for _ in 0..trials {
            let k = (0..n).filter(|_| rng.random::<f64>() < p).count();
            lo_fail += usize::from(lower[k] > p);
            hi_fail += usize::from(upper[k] < p);
        }
        assert!(
            lo_fail <= budget(alpha, trials),
            "p={p}: lower failed {lo_fail}/{trials}"
        );
        assert!(
            hi_fail <= budget(alpha, trials),
            "p={p}: upper failed {hi_fail}/{trials}"
        );
    }
    // Power check: the same budget catches a bound that is unsound (Wald interval at p = 0.97).
    let p = 0.97;
    let mut wald_fail = 0;
    for _ in 0..trials {
        let k = (0..n).filter(|_| rng.random::<f64>() < p).count() as f64;
        let ph = k / n as f64;
        wald_fail += usize::from(ph - 1.645 * (ph * (1.0 - ph) / n as f64).sqrt() > p);
    }
    assert!(
        wald_fail > budget(alpha, trials),
        "the simulation cannot detect an unsound bound ({wald_fail})"
    );
}

/// Draws from a distribution on [0,1] with atoms at 0 and 1 (like a clipped score) and a
/// continuous part; returns the sample and the exact mean.
fn clipped_like(rng: &mut ChaCha8Rng, n: usize, w0: f64, w1: f64) -> (Vec<f64>, f64) {
    let xs = (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            if u < w0 {
                0.0
            } else if u < w0 + w1 {
                1.0
            } else {
                let v: f64 = rng.random();
                v * v
            }
        })
        .collect();
    (xs, w1 + (1.0 - w0 - w1) / 3.0)
}

#[test]
fn mean_bounds_simulated_coverage() {
    let (alpha, n, trials) = (0.05, 200usize, 10_000usize);
    let mut rng = ChaCha8Rng::seed_from_u64(2020);
    for &(w0, w1) in &[(0.0, 0.0), (0.5, 0.1), (0.05, 0.9), (0.97, 0.0)] {
        let mut fails = [0usize; 4];
        let mut widths = [0.0f64; 2];
        for _ in 0..trials {
            let (mut xs, mean) = clipped_like(&mut rng, n, w0, w1);
            let hl = hoeffding_lower(&xs, alpha).unwrap();
            let hh = hoeffding_upper(&xs, alpha).unwrap();
            xs.sort_by(f64::total_cmp);
            let cl = cdf_lower(&xs, alpha).unwrap();
            let ch = cdf_upper(&xs, alpha).unwrap();
            fails[0] += usize::from(hl > mean);
            fails[1] += usize::from(hh < mean);
            fails[2] += usize::from(cl > mean);
            fails[3] += usize::from(ch < mean);
            widths[0] += hh - hl;
            widths[1] += ch - cl;
        }
        for (f, name) in fails.iter().zip([
            "hoeffding lower",
            "hoeffding upper",
            "cdf lower",
            "cdf upper",
        ]) {
            assert!(
                *f <= budget(alpha, trials),
                "w0={w0} w1={w1}: {name} failed {f}/{trials}"
            );
        }
        // The CDF bound is never wider than Hoeffding's here (same ε, integrated band).
        assert!(
            widths[1] <= widths[0] * (1.0 + 1e-9),
            "w0={w0} w1={w1}: {widths:?}"
        );
    }
}

#[test]
fn predict_errs_at_most_alpha() {
    let (alpha, n, trials) = (0.05, 200u64, 10_000usize);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &p_id in &[0.52, 0.6, 0.45] {
        let truth = if p_id > 0.5 {
            Decision::Id
        } else {
            Decision::Ood
        };
        let mut wrong = 0;
        for _ in 0..trials {
            let k = (0..n).filter(|_| rng.random::<f64>() < p_id).count() as u64;
            let (d, _) = predict_from_counts(k, n, alpha).unwrap();
            wrong += usize::from(d.is_some_and(|d| d != truth));
        }
        assert!(
            wrong <= budget(alpha, trials),
            "p={p_id}: PREDICT wrong {wrong}/{trials}"
        );
    }
}
