//! Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the greedy variant of scikit-learn's
//! `_kmeans_plusplus`): each new centre is the best of 2 + ⌊ln k⌋ candidates drawn with
//! probability ∝ D(x)², "best" meaning the one that minimises the resulting potential Σ D(x)².

use ndarray::Array2;
use rand::Rng;

use super::distances::{argmin, sq_dist_to_few, sq_norms};

/// Number of candidates tried per centre after the first: 2 + ⌊ln k⌋ (scikit-learn's default).
pub fn local_trials(k: usize) -> usize {
    2 + (k as f64).ln().floor() as usize
}

/// Chooses `k` initial centres among the n rows of `x` (n×d row-major f32), returned k×d in f64.
/// Caller guarantees 1 ≤ k ≤ n, d ≥ 1 and `x.len() == n·d`. D² is computed from f32 dot
/// products summed in f64: sampling weights do not need more, and this halves the cost.
pub(crate) fn kmeans_plus_plus<R: Rng + ?Sized>(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    rng: &mut R,
) -> Array2<f64> {
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let x_sq = sq_norms(x, d);
    let mut centres = Array2::<f64>::zeros((k, d));
    let mut set_centre = |c: usize, i: usize| {
        for (dst, &v) in centres.row_mut(c).iter_mut().zip(row(i)) {
            *dst = f64::from(v);
        }
    };
    let first = rng.random_range(0..n);
    set_centre(0, first);
    // D(x)²: squared distance of every point to its closest chosen centre.
    let mut closest = sq_dist_to_few(x, &x_sq, d, &[row(first)], &x_sq[first..=first]);
    let mut potential: f64 = closest.iter().sum();
    let trials = local_trials(k);
    let mut cumsum = vec![0.0f64; n];
    for c in 1..k {
        let mut acc = 0.0;
        for (s, &v) in cumsum.iter_mut().zip(closest.iter()) {
            acc += v;
            *s = acc;
        }
        // Inverse-CDF sampling: the first index whose cumulative D² reaches u·potential.
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let u = rng.random::<f64>() * potential;
                cumsum.partition_point(|&s| s < u).min(n - 1)
            })
            .collect();
        let cand_rows: Vec<&[f32]> = candidates.iter().map(|&i| row(i)).collect();
        let cand_sq: Vec<f64> = candidates.iter().map(|&i| x_sq[i]).collect();
        let dist = sq_dist_to_few(x, &x_sq, d, &cand_rows, &cand_sq); // n × trials
        let potentials = (0..trials).map(|t| {
            closest
                .iter()
                .enumerate()
                .map(|(i, &b)| dist[i * trials + t].min(b))
                .sum::<f64>()
        });
        let (best, best_pot) = argmin(potentials).unwrap_or((0, potential));
        for (i, b) in closest.iter_mut().enumerate() {
            *b = b.min(dist[i * trials + best]);
        }
        potential = best_pot;
        set_centre(c, candidates[best]);
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn trials_follow_two_plus_floor_ln_k() {
        assert_eq!(local_trials(1), 2);
        assert_eq!(local_trials(2), 2);
        assert_eq!(local_trials(3), 3);
        assert_eq!(local_trials(8), 4);
        assert_eq!(local_trials(64), 6);
    }

    #[test]
    fn seeds_one_centre_per_well_separated_blob() {
        // Three tight pairs far apart: k-means++ with k = 3 must put one centre in each pair.
        let x = [
            0.0, 0.0, 0.0, 0.1, 100.0, 0.0, 100.0, 0.1, 0.0, 100.0, 0.1, 100.0,
        ];
        for seed in 0..20 {
            let c = kmeans_plus_plus(&x, 6, 2, 3, &mut ChaCha8Rng::seed_from_u64(seed));
            let mut blobs: Vec<usize> = c
                .rows()
                .into_iter()
                .map(|r| (r[0] > 50.0) as usize + 2 * (r[1] > 50.0) as usize)
                .collect();
            blobs.sort_unstable();
            assert_eq!(blobs, vec![0, 1, 2], "seed {seed}");
        }
    }
}
