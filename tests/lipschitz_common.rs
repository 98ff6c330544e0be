// Shared helpers for the lipschitz_* integration tests (included with `mod`).
#![allow(dead_code)]

use candle_core::{DType, Device};
use oodcert::bounds::Net;
use oodcert::model::{Arch, Model, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn spec(arch: Arch, shape: [usize; 3], k: usize) -> ModelSpec {
    let c = shape[0];
    ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: (0..c).map(|i| 0.4 + 0.05 * i as f32).collect(),
        std: (0..c).map(|i| 0.25 + 0.02 * i as f32).collect(),
    }
}

pub fn model(arch: Arch, shape: [usize; 3], k: usize, seed: u64) -> (Model, Net) {
    let m = Model::init(spec(arch, shape, k), &Device::Cpu, DType::F64, seed).unwrap();
    let net = Net::from_model(&m).unwrap();
    (m, net)
}

pub fn mlp(shape: [usize; 3], hidden: &[usize], k: usize, seed: u64) -> (Model, Net) {
    model(
        Arch::Mlp {
            hidden: hidden.to_vec(),
        },
        shape,
        k,
        seed,
    )
}

pub fn random_image(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>()).collect()
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
