//! The exact two-sided Wilcoxon–Mann–Whitney rank-sum test (Mann & Whitney, Ann. Math. Stat.
//! 1947): ties get midranks, and the p-value is the share of all C(n_a + n_b, n_a) ways of
//! splitting the pooled ranks into groups of n_a and n_b whose rank sum lies at least as far
//! from its mean as the observed one — the permutation distribution counted exactly (integer
//! counts, doubled midranks so every rank is an integer), not a normal approximation.

use crate::error::{Error, Result};

/// The most pooled observations the exact count handles (C(120, 60) < 2^128).
pub const MAX_POOLED: usize = 120;

/// The outcome of the exact rank test of sample `a` against sample `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// Mann–Whitney U of `a`: pairs (x ∈ a, y ∈ b) with x > y, ties counting ½.
    pub u: f64,
    /// Splits at least as extreme as the observed one (two-sided).
    pub extreme: u128,
    /// All splits, C(n_a + n_b, n_a).
    pub total: u128,
    /// The exact two-sided p-value `extreme / total`.
    pub p: f64,
    /// The smallest p-value any data with these ties could give (the most extreme split's).
    pub p_min: f64,
}

/// Twice the midrank of every value of `pooled` (ranks 1..N; tied values share the mean of their
/// ranks, so twice it is an integer). Values must not be NaN.
pub fn doubled_midranks(pooled: &[f64]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..pooled.len()).collect();
    order.sort_by(|&i, &j| pooled[i].total_cmp(&pooled[j]));
    let mut r = vec![0u64; pooled.len()];
    let mut k = 0;
    while k < order.len() {
        let mut e = k;
        while e + 1 < order.len() && pooled[order[e + 1]] == pooled[order[k]] {
            e += 1;
        }
        // Positions k..=e (0-based) hold ranks k+1..=e+1; twice their mean is k + e + 2.
        for &i in &order[k..=e] {
            r[i] = (k + e + 2) as u64;
        }
        k = e + 1;
    }
    r
}

/// The exact two-sided rank-sum test of `a` against `b` (each at least one finite value).
pub fn exact_rank_test(a: &[f64], b: &[f64]) -> Result<RankTest> {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(Error::Internal(
            "rank test needs two non-empty samples of finite values".into(),
        ));
    }
    let n = na + nb;
    if n > MAX_POOLED {
        return Err(Error::BadInput(format!(
            "exact rank test: {n} pooled values, more than the {MAX_POOLED} it counts exactly"
        )));
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let r2 = doubled_midranks(&pooled);
    let w2: u64 = r2[..na].iter().sum();
    let center2 = (na * (n + 1)) as i64; // twice E[W] = n_a (N + 1) / 2
    let dev = |s: u64| (s as i64 - center2).unsigned_abs();
    // ways[k][s]: subsets of k of the ranks seen so far with doubled rank sum s.
    let smax: u64 = r2.iter().sum();
    let mut ways = vec![vec![0u128; smax as usize + 1]; na + 1];
    ways[0][0] = 1;
    for &r in &r2 {
        for k in (1..=na).rev() {
            let (lo, hi) = ways.split_at_mut(k);
            let (prev, cur) = (&lo[k - 1], &mut hi[0]);
            for s in (r as usize..=smax as usize).rev() {
                cur[s] += prev[s - r as usize];
            }
        }
    }
    let sums = &ways[na];
    let total: u128 = sums.iter().sum();
    let obs = dev(w2);
    let extreme: u128 = (0..sums.len())
        .filter(|&s| dev(s as u64) >= obs)
        .map(|s| sums[s])
        .sum();
    let max_dev = (0..sums.len())
        .filter(|&s| sums[s] > 0)
        .map(|s| dev(s as u64))
        .max()
        .unwrap_or(0);
    let most: u128 = (0..sums.len())
        .filter(|&s| dev(s as u64) >= max_dev)
        .map(|s| sums[s])
        .sum();
    // U = W − n_a(n_a + 1)/2, with W = w2 / 2.
    let u = (w2 as f64 - (na * (na + 1)) as f64) / 2.0;
    Ok(RankTest {
        u,
        extreme,
        total,
        p: extreme as f64 / total as f64,
        p_min: most as f64 / total as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: every split of the pooled values enumerated, U computed from pairs.
    fn brute(a: &[f64], b: &[f64]) -> (u128, u128) {
        let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
        let n = pooled.len();
        let u_of = |sel: &[usize]| -> f64 {
            let (mut u, na) = (0.0, sel.len());
            for &i in sel {
                for j in (0..n).filter(|j| !sel.contains(j)) {
                    u += if pooled[i] > pooled[j] {
                        1.0
                    } else if pooled[i] == pooled[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            (u - (na * (n - na)) as f64 / 2.0).abs()
        };
        let obs = u_of(&(0..a.len()).collect::<Vec<_>>());
        let (mut ext, mut tot) = (0u128, 0u128);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != a.len() {
                continue;
            }
            let sel: Vec<usize> = (0..n).filter(|i| mask >> i & 1 == 1).collect();
            tot += 1;
            if u_of(&sel) >= obs - 1e-9 {
                ext += 1;
            }
        }
        (ext, tot)
    }

    #[test]
    fn fully_separated_five_vs_five_is_two_of_252() {
        let t = exact_rank_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!((t.extreme, t.total, t.u), (2, 252, 0.0));
        assert_eq!(t.p, 2.0 / 252.0);
        assert_eq!(t.p_min, 2.0 / 252.0);
        // The other direction: U = 25, same p.
        let t = exact_rank_test(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!((t.extreme, t.u), (2, 25.0));
        // Three seeds each can never reach p < 0.05: the most extreme split has p = 2/20.
        let t = exact_rank_test(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!((t.extreme, t.total, t.p_min), (2, 20, 0.1));
    }

    #[test]
    fn one_swap_and_identical_samples() {
        // a = {1,2,3,4,6}, b = {5,7,8,9,10}: W = 16, |W − 27.5| = 11.5; splits with W ≤ 16 are
        // {15, 16} → 2, and by symmetry W ≥ 39 → 2: p = 4/252.
        let t = exact_rank_test(&[1.0, 2.0, 3.0, 4.0, 6.0], &[5.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!((t.extreme, t.total), (4, 252));
        // All values tied: every split is as extreme as any other, p = 1.
        let t = exact_rank_test(&[0.0; 5], &[0.0; 5]).unwrap();
        assert_eq!((t.p, t.p_min, t.u), (1.0, 1.0, 12.5));
    }

    #[test]
    fn ties_get_midranks_and_match_enumeration() {
        assert_eq!(doubled_midranks(&[3.0, 1.0, 3.0, 2.0]), vec![7, 2, 7, 4]);
        // Ties across groups: a = {0, 0, 1, 2}, b = {0, 2, 2, 3, 3}.
        let cases: [(&[f64], &[f64]); 5] = [
            (&[0.0, 0.0, 1.0, 2.0], &[0.0, 2.0, 2.0, 3.0, 3.0]),
            (&[0.0, 0.0, 0.0, 0.0, 0.1], &[0.0, 0.0, 0.0, 0.2, 0.3]),
            (&[1.0, 1.0], &[1.0, 2.0, 2.0]),
            (&[5.0, 4.0, 3.0, 2.0, 1.0, 0.5], &[0.0, 0.5, 0.5, 0.5]),
            (&[0.3, 0.1, 0.7], &[0.2, 0.9, 0.4, 0.8, 0.6]),
        ];
        for (a, b) in cases {
            let t = exact_rank_test(a, b).unwrap();
            assert_eq!((t.extreme, t.total), brute(a, b), "{a:?} vs {b:?}");
            assert!(t.p_min <= t.p && t.p <= 1.0);
        }
        // Tied FPR95 = 0 in both arms except one seed: a = {0,0,0,0,0}, b = {0,0,0,0,0.01}.
        let t = exact_rank_test(&[0.0; 5], &[0.0, 0.0, 0.0, 0.0, 0.01]).unwrap();
        assert_eq!(t.p, 1.0);
        assert!(exact_rank_test(&[f64::NAN], &[1.0]).is_err());
        assert!(exact_rank_test(&[1.0; 61], &[1.0; 60]).is_err());
    }
}
