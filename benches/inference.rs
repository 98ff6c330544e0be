//! Inference throughput (images/s) of LeNet and an MLP 784-256-256-10 on 28×28 inputs,
//! batch 1000, f32, CPU. PyTorch side by side: analysis/bench/inference_torch.py; both in one go:
//! analysis/bench/inference.sh. Results: BENCHMARKS-model.md, "## Inference".

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 1000;

/// The binary's allocator (src/main.rs), so that the bench measures what `oodcert` runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn spec(arch: Arch) -> ModelSpec {
    ModelSpec {
        arch,
        input_shape: [1, 28, 28],
        num_classes: 10,
        mean: vec![0.1307],
        std: vec![0.3081],
    }
}

fn bench_inference(c: &mut Criterion) {
    oodcert::allocator::keep_freed_memory();
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let v: Vec<f32> = (0..BATCH * 784).map(|_| rng.random::<f32>()).collect();
    let x = Tensor::from_vec(v, (BATCH, 1, 28, 28), &dev).expect("input batch");
    let mut group = c.benchmark_group("inference_batch1000_28x28");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, arch) in [
        (
            "mlp_784_256_256_10",
            Arch::Mlp {
                hidden: vec![256, 256],
            },
        ),
        ("lenet", Arch::Lenet),
    ] {
        let model = Model::init(spec(arch), &dev, DType::F32, 0).expect("model");
        group.bench_function(name, |b| {
            b.iter(|| black_box(model.logits_no_grad(black_box(&x)).expect("logits")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
