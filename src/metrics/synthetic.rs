//! A deterministic synthetic score workload defined by an integer hash, so that Rust tests and
//! benches and the Python reference (analysis/reference/sklearn_metrics.py) build bit-identical
//! inputs without sharing files or random number generators.

/// SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 2⁻⁵³, exactly.
const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Sample i of the workload: h = splitmix64(i); ID iff h mod 4 ≠ 0 (about 75% ID);
/// with `levels = None` the score is u = (h >> 11)·2⁻⁵³ ∈ [0, 1) plus 0.5 for OOD;
/// with `levels = Some(L)` it is the integer (h >> 11) mod L plus ⌊L/4⌋ for OOD (heavy ties).
pub fn hashed_sample(i: u64, levels: Option<u64>) -> (f64, bool) {
    let h = splitmix64(i);
    let is_id = !h.is_multiple_of(4);
    let bits = h >> 11;
    let score = match levels {
        None => bits as f64 * TWO_POW_MINUS_53 + if is_id { 0.0 } else { 0.5 },
        Some(l) => {
            let l = l.max(1);
            ((bits % l) + if is_id { 0 } else { l / 4 }) as f64
        }
    };
    (score, is_id)
}

/// Samples 0..n of the workload as (scores, is_id).
pub fn hashed_scores(n: usize, levels: Option<u64>) -> (Vec<f64>, Vec<bool>) {
    (0..n as u64).map(|i| hashed_sample(i, levels)).unzip()
}
