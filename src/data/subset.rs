//! Seeded subsets for `--limit K`: K of a dataset's images, stratified by label (largest-remainder
//! quotas, a ChaCha8 Fisher–Yates draw within each label) or the first K (the rule before
//! stratified subsets, kept to reproduce old runs). Indices are the ORIGINAL dataset indices,
//! ascending; the choice depends only on (labels, K, rule, seed), never on threads or batch size.

use super::Dataset;
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How `--limit K` picks K images of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubsetRule {
    /// The first K images in file order (the rule of runs made before `--subset` existed).
    First,
    /// K images with per-label shares proportional to the label counts, drawn under the seed
    /// (an unlabelled set, label −1, is a seeded uniform sample).
    #[default]
    Stratified,
}

impl SubsetRule {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            SubsetRule::First => "first",
            SubsetRule::Stratified => "stratified",
        }
    }
}

/// `--subset` and `--subset-seed`: the rule and seed of every `--limit`-style flag of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::Args, Serialize, Deserialize)]
pub struct SubsetSpec {
    /// How `--limit`-style flags choose their images: stratified by label under --subset-seed,
    /// or the first K in file order (the rule of older runs).
    #[arg(id = "subset_rule", long = "subset", value_enum, default_value_t = SubsetRule::Stratified)]
    pub rule: SubsetRule,
    /// Seed of the stratified subsets (independent of the noise/attack --seed).
    #[arg(id = "subset_seed", long = "subset-seed", default_value_t = 0)]
    pub seed: u64,
}

impl SubsetSpec {
    /// The first-K rule (older runs).
    pub const FIRST: SubsetSpec = SubsetSpec {
        rule: SubsetRule::First,
        seed: 0,
    };

    /// Original indices (ascending) of at most `limit` of the images with these `labels`;
    /// `limit` 0 or ≥ `labels.len()` means all of them.
    pub fn indices(&self, labels: &[i64], limit: usize) -> Vec<usize> {
        let n = labels.len();
        if limit == 0 || limit >= n {
            return (0..n).collect();
        }
        match self.rule {
            SubsetRule::First => (0..limit).collect(),
            SubsetRule::Stratified => stratified_indices(labels, limit, self.seed),
        }
    }

    /// [`SubsetSpec::indices`] of `d`; a `limit` above the set's size is clamped to all of it,
    /// with a note on stderr naming `flag`.
    pub fn chosen(&self, d: &Dataset, limit: usize, flag: &str) -> Vec<usize> {
        if limit > d.len() {
            eprintln!(
                "oodcert: {flag} {limit} exceeds the {} images of {}: using all of them",
                d.len(),
                d.name
            );
        }
        self.indices(&d.labels, limit)
    }

    /// The images of `d` chosen under `limit` ([`SubsetSpec::chosen`]), with their original
    /// indices.
    pub fn apply(&self, d: Dataset, limit: usize, flag: &str) -> Result<Subset> {
        let indices = self.chosen(&d, limit, flag);
        let data = if indices.len() == d.len() {
            d
        } else {
            select(&d, &indices)?
        };
        Ok(Subset { data, indices })
    }
}

/// Chosen images of a dataset: a copy holding only them, and their original indices.
#[derive(Debug, Clone)]
pub struct Subset {
    /// The chosen images, in ascending original order (name and SHA-256 of the source set).
    pub data: Dataset,
    /// `indices[i]` is the original index of `data`'s image i (ascending).
    pub indices: Vec<usize>,
}

impl Subset {
    /// What a manifest records of this subset: rule, seed, size and the indices' SHA-256.
    pub fn record(&self, spec: SubsetSpec, limit: usize) -> SubsetRecord {
        SubsetRecord {
            dataset: self.data.name.clone(),
            rule: spec.rule,
            seed: spec.seed,
            limit,
            n: self.indices.len(),
            indices_sha256: indices_sha256(&self.indices),
        }
    }
}

/// A manifest's record of one dataset's subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsetRecord {
    /// Canonical dataset name.
    pub dataset: String,
    pub rule: SubsetRule,
    pub seed: u64,
    /// The `--limit`-style value asked for (0 = all).
    pub limit: usize,
    /// Images chosen.
    pub n: usize,
    /// [`indices_sha256`] of the chosen original indices.
    pub indices_sha256: String,
}

/// Per-label quotas summing to `k` (≤ the total), proportional to `counts` by the
/// largest-remainder (Hamilton) method: ⌊k·n_c/N⌋ each, the leftover units to the largest
/// remainders k·n_c mod N, ties broken by `tie_order` (a rank per label, smaller first).
pub fn largest_remainder_quotas(counts: &[usize], k: usize, tie_order: &[usize]) -> Vec<usize> {
    let total: u128 = counts.iter().map(|&c| c as u128).sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let k = (k as u128).min(total);
    let mut quotas: Vec<usize> = counts
        .iter()
        .map(|&c| (k * c as u128 / total) as usize)
        .collect();
    let given: usize = quotas.iter().sum();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&c| {
        let rem = k * counts[c] as u128 % total;
        (
            std::cmp::Reverse(rem),
            tie_order.get(c).copied().unwrap_or(c),
        )
    });
    for &c in order.iter().take(k as usize - given) {
        quotas[c] += 1;
    }
    quotas
}

/// `k` original indices (ascending) stratified by `labels` under `seed`: each label's quota from
/// [`largest_remainder_quotas`] (ties in a seeded order), then a seeded Fisher–Yates draw within
/// each label, labels in ascending order, from one ChaCha8 stream. Label −1 is a stratum like any
/// other, so an unlabelled set gets a seeded uniform sample.
pub fn stratified_indices(labels: &[i64], k: usize, seed: u64) -> Vec<usize> {
    let mut by_label: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = by_label.into_values().collect();
    let counts: Vec<usize> = groups.iter().map(Vec::len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tie_order: Vec<usize> = (0..groups.len()).collect();
    tie_order.shuffle(&mut rng);
    let mut rank = vec![0; groups.len()];
    for (r, &c) in tie_order.iter().enumerate() {
        rank[c] = r;
    }
    let quotas = largest_remainder_quotas(&counts, k, &rank);
    let mut out = Vec::with_capacity(k.min(labels.len()));
    for (mut g, q) in groups.into_iter().zip(quotas) {
        g.shuffle(&mut rng);
        out.extend_from_slice(&g[..q]);
    }
    out.sort_unstable();
    out
}

/// A copy of `d` holding the images at `indices` (in that order); an index past the end is an
/// error naming the dataset.
pub fn select(d: &Dataset, indices: &[usize]) -> Result<Dataset> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= d.len()) {
        return Err(Error::BadInput(format!(
            "dataset {}: index {bad} is beyond its {} images",
            d.name,
            d.len()
        )));
    }
    let mut images = Vec::with_capacity(indices.len() * d.dim());
    for &i in indices {
        images.extend_from_slice(d.image(i));
    }
    Ok(Dataset {
        name: d.name.clone(),
        images,
        labels: indices.iter().map(|&i| d.labels[i]).collect(),
        shape: d.shape,
        sha256: d.sha256.clone(),
        selection: d.selection.clone(),
    })
}

/// SHA-256 (hex) of the indices written in decimal, one per line, each followed by `\n`.
pub fn indices_sha256(indices: &[usize]) -> String {
    let text: String = indices.iter().map(|i| format!("{i}\n")).collect();
    super::bytes::sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels sorted by class like animal-mnist:test: `sizes[c]` images of class c.
    fn sorted_labels(sizes: &[usize]) -> Vec<i64> {
        sizes
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c as i64, n))
            .collect()
    }

    fn per_label(labels: &[i64], idx: &[usize]) -> BTreeMap<i64, usize> {
        let mut m = BTreeMap::new();
        for &i in idx {
            *m.entry(labels[i]).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn quotas_follow_largest_remainders() {
        // k·n_c/N = 10·(5,3,2)/10 exactly.
        assert_eq!(
            largest_remainder_quotas(&[5, 3, 2], 10, &[0, 1, 2]),
            [5, 3, 2]
        );
        // 7·(50,30,20)/100 = 3.5, 2.1, 1.4: floors 3,2,1, the leftover unit to 0.5.
        assert_eq!(
            largest_remainder_quotas(&[50, 30, 20], 7, &[2, 1, 0]),
            [4, 2, 1]
        );
        // Equal remainders: the tie order decides.
        assert_eq!(
            largest_remainder_quotas(&[4, 4, 4], 2, &[2, 0, 1]),
            [0, 1, 1]
        );
        assert_eq!(
            largest_remainder_quotas(&[4, 4, 4], 2, &[0, 1, 2]),
            [1, 1, 0]
        );
        assert_eq!(largest_remainder_quotas(&[3, 0], 9, &[0, 1]), [3, 0]);
        assert_eq!(largest_remainder_quotas(&[], 3, &[]), Vec::<usize>::new());
    }

    #[test]
    fn stratified_shares_are_proportional_sorted_and_within_one() {
        let sizes = [100, 50, 30, 20, 7];
        let labels = sorted_labels(&sizes);
        let n = labels.len();
        for k in [1, 5, 10, 17, 50, 100, 206] {
            let idx = stratified_indices(&labels, k, 3);
            assert_eq!(idx.len(), k);
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
            let got = per_label(&labels, &idx);
            for (c, &size) in sizes.iter().enumerate() {
                let exact = k as f64 * size as f64 / n as f64;
                let q = *got.get(&(c as i64)).unwrap_or(&0) as f64;
                assert!((q - exact).abs() < 1.0, "k {k} class {c}: {q} vs {exact}");
            }
        }
        // The first-K rule on the same class-sorted set sees one class only.
        let first = SubsetSpec::FIRST.indices(&labels, 20);
        assert_eq!(per_label(&labels, &first).len(), 1);
        let strat = SubsetSpec::default().indices(&labels, 20);
        assert_eq!(per_label(&labels, &strat).len(), 5);
    }

    #[test]
    fn deterministic_under_the_seed_and_thread_count() {
        let labels = sorted_labels(&[40, 40, 40]);
        let a = stratified_indices(&labels, 12, 7);
        assert_eq!(stratified_indices(&labels, 12, 7), a);
        assert_ne!(stratified_indices(&labels, 12, 8), a);
        for threads in [1, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(pool.install(|| stratified_indices(&labels, 12, 7)), a);
        }
        // Pinned: a change of the draw (rand, rand_chacha or this code) would change old subsets.
        assert_eq!(a, [11, 18, 20, 37, 65, 67, 72, 79, 96, 99, 103, 119]);
    }

    #[test]
    fn unlabelled_sets_get_a_uniform_seeded_sample() {
        let labels = vec![-1; 1000];
        let idx = stratified_indices(&labels, 100, 1);
        assert_eq!(idx.len(), 100);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        // Spread over the set, not the first 100: each tenth holds 10 ± 9.
        for t in 0..10 {
            let c = idx.iter().filter(|&&i| i / 100 == t).count();
            assert!((1..=19).contains(&c), "tenth {t}: {c}");
        }
        assert_ne!(idx, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn zero_and_oversized_limits_mean_all_and_first_k_is_the_old_rule() {
        let labels = sorted_labels(&[3, 3]);
        for spec in [SubsetSpec::FIRST, SubsetSpec::default()] {
            assert_eq!(spec.indices(&labels, 0), (0..6).collect::<Vec<_>>());
            assert_eq!(spec.indices(&labels, 6), (0..6).collect::<Vec<_>>());
            assert_eq!(spec.indices(&labels, 1000), (0..6).collect::<Vec<_>>());
            assert!(spec.indices(&[], 5).is_empty());
        }
        assert_eq!(SubsetSpec::FIRST.indices(&labels, 4), [0, 1, 2, 3]);
    }

    #[test]
    fn apply_keeps_original_indices_and_pixels() {
        let labels = sorted_labels(&[4, 4]);
        let d = Dataset {
            name: "toy:test".into(),
            images: (0..8).map(|i| i as f32 / 8.0).collect(),
            labels: labels.clone(),
            shape: [1, 1, 1],
            sha256: "s".into(),
            selection: None,
        };
        let s = SubsetSpec::default()
            .apply(d.clone(), 4, "--limit")
            .unwrap();
        assert_eq!(s.indices.len(), 4);
        assert_eq!(per_label(&labels, &s.indices).values().sum::<usize>(), 4);
        assert_eq!(per_label(&labels, &s.indices)[&0], 2);
        for (i, &orig) in s.indices.iter().enumerate() {
            assert_eq!(s.data.image(i), d.image(orig));
            assert_eq!(s.data.labels[i], d.labels[orig]);
        }
        let all = SubsetSpec::default()
            .apply(d.clone(), 99, "--limit")
            .unwrap();
        assert_eq!(all.indices, (0..8).collect::<Vec<_>>());
        assert_eq!(all.data.images, d.images);
        let r = s.record(SubsetSpec::default(), 4);
        assert_eq!((r.n, r.limit, r.rule), (4, 4, SubsetRule::Stratified));
        assert_eq!(r.indices_sha256, indices_sha256(&s.indices));
        assert!(select(&d, &[8]).is_err());
    }

    #[test]
    fn indices_hash_is_of_the_decimal_lines() {
        assert_eq!(
            indices_sha256(&[0, 12]),
            crate::data::bytes::sha256_hex(b"0\n12\n")
        );
    }
}
