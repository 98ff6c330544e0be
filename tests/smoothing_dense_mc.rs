//! The fused Monte Carlo loop of dense ReLU networks (src/smoothing/dense_mc.rs) against the tensor
//! path it replaces (`score_batch` on a filled batch): the same scores bit for bit and the same
//! exactness flags, for both noise layouts, several batch sizes (full, partial and single-row
//! blocks), score kinds and temperatures, one and three channels; and the fused path is taken
//! exactly for dense nets in f32.

use candle_core::{DType, Device};
use indicatif::ProgressBar;
use oodcert::model::{Arch, Model, ModelSpec};
use oodcert::score::ScoreKind;
use oodcert::smoothing::engine::{BatchScorer, FnScorer, ModelScorer, noisy_scores_checked};
use oodcert::smoothing::noise::{NoiseKey, NoiseLayout};

fn model(arch: Arch, shape: [usize; 3], k: usize, dtype: DType) -> Model {
    let c = shape[0];
    let spec = ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: (0..c).map(|i| 0.13 + 0.05 * i as f32).collect(),
        std: (0..c).map(|i| 0.31 + 0.03 * i as f32).collect(),
    };
    Model::init(spec, &Device::Cpu, dtype, 7).unwrap()
}

/// (scores as bits, exactness flags) of copies 5..5 + n of sample 3.
fn run(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    x: &[f32],
    n: u64,
    batch: usize,
) -> (Vec<u64>, Vec<bool>) {
    let (mut s, mut e) = (Vec::new(), Vec::new());
    let bar = ProgressBar::hidden();
    noisy_scores_checked(scorer, key, 3, x, 0.25, 5..5 + n, batch, &bar, |sc, ex| {
        s.extend(sc.iter().map(|v| v.to_bits()));
        e.extend_from_slice(ex);
        Ok(())
    })
    .unwrap();
    (s, e)
}

#[test]
fn fused_dense_loop_matches_the_tensor_path_bit_for_bit() {
    let cases = [
        (
            Arch::Mlp {
                hidden: vec![256, 256],
            },
            [1, 28, 28],
            10,
            // ≥ the engine's 2048 copies from which the weights are packed (AVX-512 kernel).
            2100u64,
        ),
        (Arch::Mlp { hidden: vec![32] }, [3, 8, 8], 5, 300),
    ];
    for (arch, shape, k, n) in cases {
        let plain = model(arch.clone(), shape, k, DType::F32);
        // DOS's (K+1)-output view: same weights, the last output marked as the absent class.
        let dos = model(arch, shape, k, DType::F32)
            .into_absent_class()
            .unwrap();
        let d: usize = shape.iter().product();
        let x: Vec<f32> = (0..d).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        for (kind, t) in [
            (ScoreKind::Energy, 1.0),
            (ScoreKind::Energy, 2.0),
            (ScoreKind::Msp, 1.0),
            (ScoreKind::AbsentClass, 1.0),
            (ScoreKind::AbsentClass, 2.0),
        ] {
            let m = if kind == ScoreKind::AbsentClass {
                &dos
            } else {
                &plain
            };
            let fused = ModelScorer {
                model: m,
                device: Device::Cpu,
                kind,
                temperature: t,
            };
            assert!(
                fused.dense_mc().unwrap().is_some(),
                "the fused path applies"
            );
            let tensor = FnScorer {
                dim: d,
                f: |x: &[f32], count: usize| fused.score_flat(x, count),
            };
            for layout in [NoiseLayout::V1, NoiseLayout::V2] {
                let key = NoiseKey::with_layout(11, "toy:test", layout);
                let want = run(&tensor, &key, &x, n, 1000);
                // The tensor path's GEMMs run on rayon's pool; its bits must not depend on the
                // thread count, or the fused loop (each block's GEMMs on one thread) could not
                // match them.
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let again = pool.install(|| run(&tensor, &key, &x, n, 1000));
                    assert_eq!(again, want, "tensor path, {threads} threads, {layout:?}");
                    let fused_t = pool.install(|| run(&fused, &key, &x, n, 128));
                    assert_eq!(fused_t, want, "fused path, {threads} threads, {layout:?}");
                }
                for batch in [1000, 128, 77, 1] {
                    if batch == 1 && n > 300 {
                        continue;
                    }
                    let got = run(&fused, &key, &x, n, batch);
                    assert_eq!(
                        got.0, want.0,
                        "{shape:?} {kind:?} T={t} {layout:?} batch {batch}"
                    );
                    assert_eq!(got.1, want.1, "{shape:?} {layout:?} batch {batch}");
                }
            }
        }
    }
}

#[test]
fn fused_path_is_taken_only_for_dense_f32_nets() {
    let scorer = |m: &Model| {
        ModelScorer {
            model: m,
            device: Device::Cpu,
            kind: ScoreKind::Energy,
            temperature: 1.0,
        }
        .dense_mc()
        .unwrap()
        .is_some()
    };
    let mlp = Arch::Mlp { hidden: vec![16] };
    assert!(scorer(&model(mlp.clone(), [1, 6, 6], 4, DType::F32)));
    assert!(!scorer(&model(mlp, [1, 6, 6], 4, DType::F64)));
    assert!(!scorer(&model(Arch::Lenet, [1, 28, 28], 10, DType::F32)));
}

/// Where the CPU has AVX-512, the MLP's loop runs on the packed kernel once packed (so the test
/// above compares that kernel, at 2100 copies, with the tensor path), and not before.
#[test]
fn the_packed_kernel_applies_to_the_mlp_where_the_cpu_has_it() {
    let m = model(
        Arch::Mlp {
            hidden: vec![256, 256],
        },
        [1, 28, 28],
        10,
        DType::F32,
    );
    let scorer = ModelScorer {
        model: &m,
        device: Device::Cpu,
        kind: ScoreKind::Energy,
        temperature: 1.0,
    };
    let (mc, _, _) = scorer.dense_mc().unwrap().unwrap();
    assert!(!mc.uses_packed_kernel());
    let avx512 = {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    };
    assert_eq!(mc.packed().uses_packed_kernel(), avx512);
}

/// The fused loop is pipelined (batch b + 1 computed while batch b is visited); a visit that fails
/// still stops it at once with its own error: no later batch is visited, and the batches before
/// it were visited in copy order.
#[test]
fn a_failing_visit_stops_the_pipelined_loop_with_its_error() {
    let m = model(Arch::Mlp { hidden: vec![8] }, [1, 6, 6], 3, DType::F32);
    let scorer = ModelScorer {
        model: &m,
        device: Device::Cpu,
        kind: ScoreKind::Energy,
        temperature: 1.0,
    };
    assert!(
        scorer.dense_mc().unwrap().is_some(),
        "the fused loop must be the one tested"
    );
    let key = NoiseKey::with_layout(0, "test", NoiseLayout::V2);
    let x = vec![0.5f32; 36];
    let bar = ProgressBar::hidden();
    let mut seen = Vec::new();
    let err = noisy_scores_checked(&scorer, &key, 3, &x, 0.25, 0..50, 10, &bar, |sc, _| {
        seen.push(sc.len());
        if seen.len() == 2 {
            return Err(oodcert::error::Error::CheckFailed("visit 2".into()));
        }
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("visit 2"), "{err}");
    assert_eq!(seen, [10, 10]);
    assert_eq!(bar.position(), 10);
}
