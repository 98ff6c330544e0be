//! Noise of randomized smoothing: `add_noise` of one MNIST-sized copy (784 values) under layouts
//! v1 (ChaCha20, libm Box–Muller) and v2 (Philox4x32-10, vectorised Box–Muller), one thread, with
//! and without the exactness check of the float32 coupling (`add_noise_checked`, what certify runs).
//! Run: cargo bench --bench noise

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oodcert::smoothing::noise::{NoiseKey, NoiseLayout};
use std::hint::black_box;

const D: usize = 784;

fn bench_noise(c: &mut Criterion) {
    let mut group = c.benchmark_group("add_noise_784");
    group.throughput(Throughput::Elements(D as u64));
    let x: Vec<f32> = (0..D).map(|i| (i % 255) as f32 / 255.0).collect();
    let mut out = vec![0.0f32; D];
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(0, "mnist:test", layout);
        let mut copy = 0u64;
        group.bench_function(layout.name(), |b| {
            b.iter(|| {
                copy = (copy + 1) % (1 << 20);
                key.add_noise(3, black_box(copy), 0.25, black_box(&x), &mut out)
            })
        });
        group.bench_function(format!("{}_checked", layout.name()), |b| {
            b.iter(|| {
                copy = (copy + 1) % (1 << 20);
                key.add_noise_checked(3, black_box(copy), 0.25, black_box(&x), &mut out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_noise);
criterion_main!(benches);
