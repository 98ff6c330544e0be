//! The noise layouts draw standard normal values: moments, tails, a chi-square test on 100
//! equiprobable bins and a Kolmogorov–Smirnov test on 10⁶ values, and no correlation across
//! copies, samples, coordinates of one Box–Muller pair or neighbouring pairs. Fixed seeds, so the
//! tests are deterministic; thresholds sit at significance ≈ 10⁻⁶ so a correct generator does not
//! fail them by chance, and each test checks that a slightly biased copy of the same values
//! (mean +0.01, scale ×1.01, a shared radius) does fail.

use oodcert::smoothing::noise::{NoiseKey, NoiseLayout};
use oodcert::smoothing::normal::phi;

const LAYOUTS: [NoiseLayout; 2] = [NoiseLayout::V1, NoiseLayout::V2];

/// 10⁶ values: copies 0..1000 of sample 17, 1000 values each.
fn million(layout: NoiseLayout) -> Vec<f64> {
    let key = NoiseKey::with_layout(2026, "stats:test", layout);
    let mut z = vec![0.0; 1_000_000];
    for (c, row) in z.chunks_mut(1000).enumerate() {
        key.fill_standard_normal(17, c as u64, row);
    }
    z
}

/// Chi-square statistic of 100 bins equiprobable under N(0,1).
fn chi_square(z: &[f64]) -> f64 {
    let mut bins = [0u64; 100];
    for &v in z {
        bins[((phi(v) * 100.0) as usize).min(99)] += 1;
    }
    let e = z.len() as f64 / 100.0;
    bins.iter().map(|&o| (o as f64 - e).powi(2) / e).sum()
}

/// Kolmogorov–Smirnov statistic D = sup |F_n − Φ|.
fn ks(z: &[f64]) -> f64 {
    let mut s = z.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = phi(v);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// 99 degrees of freedom: P(χ² > 181) ≈ 10⁻⁶ (Wilson–Hilferty).
const CHI2_MAX: f64 = 181.0;
/// P(√n·D > 2.69) ≈ 2·exp(−2·2.69²) ≈ 10⁻⁶ (Kolmogorov's limit law).
const KS_MAX_SQRT_N: f64 = 2.69;

fn passes_chi2_and_ks(z: &[f64]) -> (bool, f64, f64) {
    let (c, d) = (chi_square(z), ks(z) * (z.len() as f64).sqrt());
    (c < CHI2_MAX && d < KS_MAX_SQRT_N, c, d)
}

#[test]
fn chi_square_and_kolmogorov_smirnov_on_a_million_values() {
    for layout in LAYOUTS {
        let z = million(layout);
        let (ok, c, d) = passes_chi2_and_ks(&z);
        assert!(
            ok,
            "{layout:?}: chi2 {c:.1} (< {CHI2_MAX}), sqrt(n) D {d:.3} (< {KS_MAX_SQRT_N})"
        );
        // The tests can fail: a mean shift of 0.01 and a scale error of 1% are rejected.
        let shifted: Vec<f64> = z.iter().map(|v| v + 0.01).collect();
        assert!(
            !passes_chi2_and_ks(&shifted).0,
            "{layout:?}: mean shift undetected"
        );
        let scaled: Vec<f64> = z.iter().map(|v| v * 1.01).collect();
        assert!(
            !passes_chi2_and_ks(&scaled).0,
            "{layout:?}: scale error undetected"
        );
    }
}

#[test]
fn moments_and_tails_are_standard_normal() {
    for layout in LAYOUTS {
        let z = million(layout);
        let n = z.len() as f64;
        let m = |k: i32| z.iter().map(|v| v.powi(k)).sum::<f64>() / n;
        let (mean, var, skew, kurt) = (m(1), m(2), m(3), m(4));
        // Standard errors at n = 10⁶: 0.001, 0.0014, 0.0024, 0.0049; limits ≈ 5 of them.
        assert!(mean.abs() < 0.005, "{layout:?} mean {mean}");
        assert!((var - 1.0).abs() < 0.007, "{layout:?} variance {var}");
        assert!(skew.abs() < 0.012, "{layout:?} third moment {skew}");
        assert!(
            (kurt - 3.0).abs() < 0.025,
            "{layout:?} fourth moment {kurt}"
        );
        for (t, p) in [
            (1.959_963_984_540_054, 0.05),
            (3.0, 0.002_699_796),
            (4.0, 6.334e-5),
        ] {
            let share = z.iter().filter(|v| v.abs() > t).count() as f64 / n;
            let se = (p * (1.0 - p) / n).sqrt();
            assert!(
                (share - p).abs() < 5.0 * se,
                "{layout:?} P(|z| > {t}) = {share}, not {p}"
            );
        }
        assert!(z.iter().all(|v| v.is_finite()));
    }
}

/// Pearson correlation of equally long `a`, `b`.
fn corr(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn copies_samples_and_coordinates_are_uncorrelated() {
    // |r| of independent values has standard error 1/√n; the limit is 5/√n.
    for layout in LAYOUTS {
        let key = NoiseKey::with_layout(9, "independence:test", layout);
        let d = 100;
        let draw = |i: u64, c: u64| {
            let mut v = vec![0.0; d];
            key.fill_standard_normal(i, c, &mut v);
            v
        };
        let (mut a, mut next_copy, mut next_sample) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..2000u64 {
            a.extend(draw(4, c));
            next_copy.extend(draw(4, c + 1));
            next_sample.extend(draw(5, c));
        }
        let n = a.len() as f64;
        let lim = 5.0 / n.sqrt();
        let even: Vec<f64> = a.iter().step_by(2).copied().collect();
        let odd: Vec<f64> = a.iter().skip(1).step_by(2).copied().collect();
        let sq = |v: &[f64]| v.iter().map(|x| x * x).collect::<Vec<_>>();
        let pairs_lim = 5.0 / (n / 2.0).sqrt();
        let checks = [
            ("next copy", corr(&a, &next_copy), lim),
            ("next sample", corr(&a, &next_sample), lim),
            ("within a pair", corr(&even, &odd), pairs_lim),
            (
                "squares within a pair",
                corr(&sq(&even), &sq(&odd)),
                pairs_lim,
            ),
            (
                "next pair",
                corr(&even[..even.len() - 1], &even[1..]),
                pairs_lim,
            ),
        ];
        for (what, r, lim) in checks {
            assert!(r.abs() < lim, "{layout:?} {what}: r = {r} (limit {lim})");
        }
        // The check can fail: values sharing one radius per pair are correlated in their squares.
        let shared: Vec<f64> = even
            .iter()
            .zip(&odd)
            .map(|(e, o)| o.signum() * e.abs())
            .collect();
        assert!(corr(&sq(&even), &sq(&shared)).abs() > pairs_lim);
    }
}
