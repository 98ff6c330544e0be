//! Seeded noise images, the synthetic OOD sets of Hendrycks et al. (Outlier Exposure, ICLR 2019):
//! their Gaussian noise is N(0, 0.5²) clipped to [−1,1] in [−1,1] pixel space, i.e.
//! N(0.5, 0.25²) clipped to [0,1] here; their uniform noise U[−1,1] is U[0,1] here.
//! Every value comes from one ChaCha8 stream seeded with `seed`, in NCHW order.

use super::bytes::sha256_hex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Mean of the Gaussian noise in [0,1] pixel units.
pub const GAUSS_MEAN: f32 = 0.5;
/// Standard deviation of the Gaussian noise in [0,1] pixel units.
pub const GAUSS_STD: f32 = 0.25;

/// Which noise distribution to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// N(0.5, 0.25²) clipped to [0,1].
    Gauss,
    /// U[0,1].
    Uniform,
}

impl NoiseKind {
    /// The dataset name stem (`noise-gauss`, `noise-uniform`).
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::Gauss => "noise-gauss",
            NoiseKind::Uniform => "noise-uniform",
        }
    }
}

/// `n` noise images of `shape` drawn with `seed`.
pub fn noise_images(kind: NoiseKind, n: usize, shape: [usize; 3], seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = n * shape.iter().product::<usize>();
    match kind {
        NoiseKind::Gauss => {
            // Normal::new only fails for a non-finite or negative std; ours is a constant 0.25.
            let d = Normal::new(GAUSS_MEAN, GAUSS_STD).unwrap_or_else(|_| unreachable!());
            (0..total)
                .map(|_| d.sample(&mut rng).clamp(0.0, 1.0))
                .collect()
        }
        NoiseKind::Uniform => (0..total).map(|_| rng.random::<f32>()).collect(),
    }
}

/// SHA-256 of the generator identity: name, parameters, shape, count and seed.
pub fn noise_sha256(kind: NoiseKind, n: usize, shape: [usize; 3], seed: u64) -> String {
    let params = match kind {
        NoiseKind::Gauss => format!("mean={GAUSS_MEAN},std={GAUSS_STD},clip=[0,1]"),
        NoiseKind::Uniform => "low=0,high=1".to_string(),
    };
    sha256_hex(
        format!(
            "{} chacha8 {params} n={n} shape={}x{}x{} seed={seed}",
            kind.name(),
            shape[0],
            shape[1],
            shape[2]
        )
        .as_bytes(),
    )
}
