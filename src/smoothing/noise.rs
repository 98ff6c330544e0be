//! Counter-based Gaussian noise streams: the noise of every noisy copy of every sample is a pure
//! function of (seed, dataset name, sample index, copy index), so results do not depend on batch
//! size, thread count or how samples are split into shards.
//!
//! Layout (version 1, recorded in every manifest as [`NOISE_LAYOUT`]):
//! - key = SHA-256("oodcert/smoothing/noise/v1" ‖ seed as u64 LE ‖ len(name) as u64 LE ‖ name);
//!   a ChaCha20 generator (rand_chacha, 20 rounds) with that key and stream/nonce = sample index;
//! - a sample of d values uses P = ⌈d/2⌉ Gaussian pairs per copy; pair m of copy c consumes the
//!   two 64-bit words numbered 2(cP+m) and 2(cP+m)+1 of the stream (32-bit word position
//!   4(cP+m)), each word w giving the 53-bit uniform (w >> 11)·2⁻⁵³;
//! - Box–Muller: with u₁ = 1 - first uniform ∈ (0,1] and u₂ = second uniform ∈ [0,1),
//!   z₀ = √(-2 ln u₁)·cos(2πu₂) goes to value 2m, z₁ = √(-2 ln u₁)·sin(2πu₂) to value 2m+1
//!   (dropped when d is odd and 2m+1 = d), computed in f64.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// A one-line description of the noise layout, recorded in manifests.
pub const NOISE_LAYOUT: &str = "v1: ChaCha20 key=SHA-256(\"oodcert/smoothing/noise/v1\"|seed u64 LE|len(name) u64 LE|name), stream=sample index; copy c pair m = u64 words 2(cP+m),2(cP+m)+1, P=ceil(d/2); 53-bit uniforms; Box-Muller (u1=1-U1, cos->even, sin->odd) in f64";

/// The key of all noise streams of one dataset under one seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseKey {
    key: [u8; 32],
}

impl NoiseKey {
    /// Derives the key from a seed and a dataset's canonical name.
    pub fn new(seed: u64, dataset: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"oodcert/smoothing/noise/v1");
        h.update(seed.to_le_bytes());
        h.update((dataset.len() as u64).to_le_bytes());
        h.update(dataset.as_bytes());
        NoiseKey {
            key: h.finalize().into(),
        }
    }

    /// Fills `out` with the standard normal values of copy `copy` of sample `index`.
    pub fn fill_standard_normal(&self, index: u64, copy: u64, out: &mut [f64]) {
        let d = out.len();
        let pairs = d.div_ceil(2) as u128;
        let mut rng = ChaCha20Rng::from_seed(self.key);
        rng.set_stream(index);
        rng.set_word_pos(4 * pairs * copy as u128);
        for pair in out.chunks_mut(2) {
            let (z0, z1) = box_muller(rng.next_u64(), rng.next_u64());
            pair[0] = z0;
            if let Some(v) = pair.get_mut(1) {
                *v = z1;
            }
        }
    }

    /// Writes `x + σ·z` (z the noise of copy `copy` of sample `index`) into `out`, as f32.
    pub fn add_noise(&self, index: u64, copy: u64, sigma: f64, x: &[f32], out: &mut [f32]) {
        let mut z = vec![0.0f64; x.len()];
        self.fill_standard_normal(index, copy, &mut z);
        for ((o, &xi), zi) in out.iter_mut().zip(x).zip(z) {
            *o = (xi as f64 + sigma * zi) as f32;
        }
    }
}

/// The 53-bit uniform in [0,1) of a 64-bit word.
fn unit(w: u64) -> f64 {
    (w >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Box–Muller on two words: u₁ = 1 - U(w₁) ∈ (0,1], u₂ = U(w₂) ∈ [0,1).
fn box_muller(w1: u64, w2: u64) -> (f64, f64) {
    let u1 = 1.0 - unit(w1);
    let u2 = unit(w2);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_random_access_and_distinct() {
        let k = NoiseKey::new(7, "toy:test");
        let mut a = vec![0.0; 5];
        let mut b = vec![0.0; 5];
        k.fill_standard_normal(3, 2, &mut a);
        k.fill_standard_normal(3, 2, &mut b);
        assert_eq!(a, b);
        k.fill_standard_normal(3, 1, &mut b);
        assert_ne!(a, b);
        k.fill_standard_normal(4, 2, &mut b);
        assert_ne!(a, b);
        let mut c = vec![0.0; 5];
        NoiseKey::new(8, "toy:test").fill_standard_normal(3, 2, &mut c);
        assert_ne!(a, c);
        NoiseKey::new(7, "toy:val").fill_standard_normal(3, 2, &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn consecutive_copies_tile_one_stream() {
        // With an even d, copies 0 and 1 are the first 2d values of one long draw.
        let k = NoiseKey::new(1, "x");
        let mut long = vec![0.0; 8];
        k.fill_standard_normal(0, 0, &mut long);
        let mut second = vec![0.0; 4];
        k.fill_standard_normal(0, 1, &mut second);
        assert_eq!(&long[4..], &second[..]);
    }

    #[test]
    fn moments_are_standard_normal() {
        let k = NoiseKey::new(42, "moments");
        let mut z = vec![0.0; 200_001];
        k.fill_standard_normal(0, 0, &mut z);
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let kurt = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n / (var * var);
        // Standard errors: mean 1/√n ≈ 0.0022, var √(2/n) ≈ 0.0032, kurtosis √(24/n) ≈ 0.011.
        assert!(mean.abs() < 0.012, "{mean}");
        assert!((var - 1.0).abs() < 0.016, "{var}");
        assert!((kurt - 3.0).abs() < 0.06, "{kurt}");
        let tail = z.iter().filter(|v| v.abs() > 1.959_963_984_540_054).count() as f64 / n;
        assert!((tail - 0.05).abs() < 0.0025, "{tail}");
    }
}
