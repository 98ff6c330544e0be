//! Detection metrics on 10^6 scores (the synthetic hash workload shared with
//! analysis/bench/metrics_sklearn.py). Run: cargo bench --bench metrics

use criterion::{Criterion, criterion_group, criterion_main};
use oodcert::metrics::{FprRule, SortedScores, detection_metrics, synthetic};
use std::hint::black_box;

const N: usize = 1_000_000;

fn bench_metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_1e6");
    group.sample_size(10);
    for (name, levels) in [("continuous", None), ("ties_1000_levels", Some(1000))] {
        let (scores, is_id) = synthetic::hashed_scores(N, levels);
        group.bench_function(format!("detection_metrics/{name}"), |b| {
            b.iter(|| detection_metrics(black_box(&scores), black_box(&is_id), FprRule::FPR95))
        });
        group.bench_function(format!("sort_only/{name}"), |b| {
            b.iter(|| SortedScores::from_labelled(black_box(&scores), black_box(&is_id)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
