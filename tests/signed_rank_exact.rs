//! The exact Wilcoxon signed-rank and sign tests of `evidence::claims::signed_rank` against
//! hand-computed null distributions and full enumeration of the 2ⁿ sign patterns (ties, zeros),
//! and the sign-test interval of the median against hand-computed order statistics.

use oodcert::evidence::claims::rank_test::doubled_midranks;
use oodcert::evidence::claims::signed_rank::*;
/// Reference: every one of the 2ⁿ sign patterns of |d| enumerated, T⁺ from midranks.
fn brute(d: &[f64]) -> f64 {
    let nz: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    let n = nz.len();
    let abs: Vec<f64> = nz.iter().map(|v| v.abs()).collect();
    let r = doubled_midranks(&abs);
    let total: u64 = r.iter().sum();
    let t = |mask: u32| -> u64 { (0..n).filter(|i| mask >> i & 1 == 1).map(|i| r[i]).sum() };
    let obs_mask = (0..n)
        .filter(|&i| nz[i] > 0.0)
        .fold(0u32, |m, i| m | 1 << i);
    let obs = (2 * t(obs_mask)).abs_diff(total);
    let hits = (0..1u32 << n)
        .filter(|&m| (2 * t(m)).abs_diff(total) >= obs)
        .count();
    hits as f64 / (1u64 << n) as f64
}

#[test]
fn all_positive_ten_is_two_of_1024() {
    let d: Vec<f64> = (1..=10).map(f64::from).collect();
    let t = signed_rank_test(&d).unwrap();
    assert_eq!(t.p, 2.0 / 1024.0);
    assert_eq!(
        (t.n, t.positive, t.negative, t.t_plus, t.mean),
        (10, 10, 0, 55.0, 27.5)
    );
    // The sign test agrees here: 10 of 10 positive, P = 2·2⁻¹⁰.
    assert_eq!(sign_test(&d).unwrap().p, 2.0 / 1024.0);
    let neg: Vec<f64> = d.iter().map(|v| -v).collect();
    assert_eq!(signed_rank_test(&neg).unwrap().p, 2.0 / 1024.0);
}

#[test]
fn hand_computed_small_cases() {
    // d = (1, −2, 3, 4): ranks 1..4, T⁺ = 1 + 3 + 4 = 8, mean 5, |8 − 5| = 3. Of the 16 sign
    // patterns, T⁺ ∈ {0, 1, 2} ∪ {8, 9, 10}: T⁺ = 0 {}, 1 {1}, 2 {2}, 8 {1,3,4}, 9 {2,3,4},
    // 10 {1,2,3,4} → 6 patterns, p = 6/16.
    let t = signed_rank_test(&[1.0, -2.0, 3.0, 4.0]).unwrap();
    assert_eq!((t.t_plus, t.mean, t.p), (8.0, 5.0, 6.0 / 16.0));
    // Ties: |d| = (1, 1, 2) → doubled midranks (3, 3, 6), total 12; d = (1, −1, 2): T⁺ doubled
    // = 9, |2·9 − 12|… in doubled units dev = |2·9 − 12| = 6. Patterns (sums 0,3,3,6,6,9,9,12):
    // devs 12,6,6,0,0,6,6,12 → 6 of 8 at ≥ 6: p = 0.75.
    let t = signed_rank_test(&[1.0, -1.0, 2.0]).unwrap();
    assert_eq!((t.t_plus, t.p), (4.5, 0.75));
    // Zeros are dropped: the same as (1, −1, 2).
    let z = signed_rank_test(&[0.0, 1.0, 0.0, -1.0, 2.0]).unwrap();
    assert_eq!((z.n, z.p), (3, 0.75));
    // No nonzero difference: p = 1.
    assert_eq!(signed_rank_test(&[0.0, 0.0]).unwrap().p, 1.0);
    // Sign test, 2 positive of 8: P(B ≤ 2) = (1 + 8 + 28)/256, two-sided 74/256.
    let s = sign_test(&[1.0, 1.0, -1.0, -2.0, -3.0, -1.0, -1.0, -5.0]).unwrap();
    assert_eq!((s.positive, s.p), (2, 74.0 / 256.0));
}

#[test]
fn matches_enumeration_with_ties_and_zeros() {
    let cases: [&[f64]; 6] = [
        &[0.3, -0.1, 0.2, 0.5, -0.4, 0.6, 0.7],
        &[1.0, 1.0, -1.0, 2.0, -2.0, 2.0, 3.0, 0.0],
        &[-0.5, -0.5, -0.5, 0.5, 1.5, -2.5, 0.0, 0.0, 4.0],
        &[2.0, 2.0, 2.0, 2.0, 2.0, -2.0],
        &[
            0.01, -0.02, 0.03, -0.04, 0.05, -0.06, 0.07, -0.08, 0.09, 0.1, 0.11, 0.12,
        ],
        &[-1.0],
    ];
    for d in cases {
        let t = signed_rank_test(d).unwrap();
        let b = brute(d);
        assert!((t.p - b).abs() < 1e-15, "{d:?}: {} vs {b}", t.p);
    }
}

#[test]
fn null_distribution_sums_to_one_and_is_symmetric() {
    let w: Vec<u64> = (1..=60).map(|i| 2 * i).collect();
    let p = null_distribution(&w);
    let total: f64 = p.iter().sum();
    assert!((total - 1.0).abs() < 1e-12, "{total}");
    for s in 0..p.len() {
        let q = p[p.len() - 1 - s];
        assert!(
            (p[s] - q).abs() <= 1e-12 * p[s].max(q),
            "{s}: {} vs {q}",
            p[s]
        );
    }
}

#[test]
fn median_interval_order_statistics() {
    // n = 10, α = 0.05: P(B ≤ 1) = 11/1024 ≤ 0.025 < P(B ≤ 2) = 56/1024, so k = 2:
    // [d₍₂₎, d₍₉₎].
    let d: Vec<f64> = (1..=10).map(f64::from).collect();
    let (m, ci) = median_interval(&d, 0.05).unwrap();
    assert_eq!((m, ci), (5.5, Some((2.0, 9.0))));
    // n = 5: P(B ≤ 0) = 1/32 > 0.025: no interval.
    let (m, ci) = median_interval(&[3.0, 1.0, 2.0, 5.0, 4.0], 0.05).unwrap();
    assert_eq!((m, ci), (3.0, None));
    // n = 6: P(B ≤ 0) = 1/64 ≤ 0.025: k = 1, the range.
    let (_, ci) = median_interval(&[3.0, 1.0, 2.0, 5.0, 4.0, 6.0], 0.05).unwrap();
    assert_eq!(ci, Some((1.0, 6.0)));
    assert!(median_interval(&[], 0.05).is_err());
}
