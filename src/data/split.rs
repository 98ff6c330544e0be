//! Deterministic seeded splits for sets that ship without one: within each class the indices are
//! shuffled by a ChaCha8 stream (Fisher–Yates) and the first ⌈f·n_k⌉ go to `train`; both halves
//! keep the original order of the file (sorted indices), so the split is reproducible and stratified.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Train/test index lists of a stratified split with `train_fraction` per class.
pub fn stratified_split(
    labels: &[i64],
    train_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for c in classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        let k = ((idx.len() as f64) * train_fraction).ceil() as usize;
        let k = k.min(idx.len());
        train.extend_from_slice(&idx[..k]);
        test.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_and_deterministic() {
        let labels: Vec<i64> = (0..100).map(|i| i / 10).collect();
        let (a, b) = stratified_split(&labels, 0.5, 3);
        assert_eq!(a.len(), 50);
        assert_eq!(b.len(), 50);
        for c in 0..10 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        assert_eq!(stratified_split(&labels, 0.5, 3), (a.clone(), b));
        assert_ne!(stratified_split(&labels, 0.5, 4).0, a);
    }
}
