//! The candidate rule for copies that fail the float32 coupling check
//! (proofs/smoothing_floating_point.md, "Candidate inputs"): it settles almost every such copy, keeps
//! a copy whose decision flips between its candidates undecided, gives the same intervals whatever
//! the batch size, thread count or copy split, and the fused dense path agrees with the tensor path.

use candle_core::{DType, Device};
use indicatif::ProgressBar;
use oodcert::model::{Arch, Model, ModelSpec};
use oodcert::score::ScoreKind;
use oodcert::smoothing::clip::ClipRange;
use oodcert::smoothing::coupling::Coupling;
use oodcert::smoothing::engine::{BatchScorer, FnScorer, ModelScorer, noisy_score_intervals};
use oodcert::smoothing::noise::{NoiseKey, NoiseLayout};
use oodcert::smoothing::sample::{SampleRef, SmoothingParams, Thresholds, certify_sample};
use std::ops::Range;

const D: usize = 784;

/// An MNIST-like image: zeros, ones and grey levels.
fn image() -> Vec<f32> {
    (0..D)
        .map(|i| match (i * 7919) % 5 {
            0 | 1 => 0.0,
            2 => 1.0,
            _ => ((i * 37) % 255) as f32 / 255.0,
        })
        .collect()
}

/// (scores, intervals) of `copies` of sample 3 at σ = 0.25.
fn intervals(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    x: &[f32],
    copies: Range<u64>,
    batch: usize,
    rule: Coupling,
) -> (Vec<f64>, Vec<(f64, f64)>) {
    let (mut s, mut iv) = (Vec::new(), Vec::new());
    let bar = ProgressBar::hidden();
    noisy_score_intervals(
        scorer,
        key,
        3,
        x,
        0.25,
        copies,
        batch,
        rule,
        &bar,
        |sc, i| {
            s.extend_from_slice(sc);
            iv.extend_from_slice(i);
            Ok(())
        },
    )
    .unwrap();
    (s, iv)
}

/// A nonlinear score that reads every coordinate.
fn wavy(x: &[f32], count: usize) -> oodcert::Result<Vec<f64>> {
    Ok(x.chunks(D)
        .take(count)
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, &v)| ((j % 13 + 1) as f64 * v as f64 * 1e3).sin())
                .sum()
        })
        .collect())
}

/// With a constant scorer the candidate rule leaves ≤ 0.001 % of 10⁵ copies of a 784-pixel image
/// undecided (an infinite interval), where count-against leaves every inexact copy (~0.3 %).
#[test]
fn candidates_settle_almost_every_inexact_copy() {
    let x = image();
    let key = NoiseKey::with_layout(1, "mnist:test", NoiseLayout::V2);
    let flat = FnScorer {
        dim: D,
        f: |_: &[f32], count: usize| Ok(vec![0.5; count]),
    };
    let n = 100_000u64;
    let undecided = |iv: &[(f64, f64)]| iv.iter().filter(|(lo, hi)| lo != hi).count();
    let (_, old) = intervals(&flat, &key, &x, 0..n, 4096, Coupling::CountAgainst);
    let (_, new) = intervals(&flat, &key, &x, 0..n, 4096, Coupling::Candidates);
    let (u_old, u_new) = (undecided(&old), undecided(&new));
    eprintln!("undecided of {n}: count-against {u_old}, candidates {u_new}");
    assert!(u_old >= 100, "{u_old}");
    assert!(u_new as u64 <= n / 100_000, "{u_new}");
    // Exact copies keep [v, v] under both rules.
    let same = old.iter().zip(&new).filter(|(a, b)| a == b).count();
    assert_eq!(same as u64, n - u_old as u64);
}

/// A scorer whose decision flips exactly between the two candidates of an ambiguous coordinate
/// keeps that copy undecided: its interval straddles the threshold 0.
#[test]
fn a_decision_that_flips_between_candidates_stays_undecided() {
    let x = image();
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(2, "mnist:test", layout);
        let mut out = vec![0.0f32; D];
        let mut found = 0;
        for copy in 0..20_000u64 {
            if key.add_noise_checked(3, copy, 0.25, &x, &mut out) {
                continue;
            }
            let Some(amb) = key.ambiguities(3, copy, 0.25, &x, &out, 16) else {
                continue;
            };
            let Some((k, c)) = amb.first() else {
                continue;
            };
            let (k, b) = (*k, c[c.len() - 1]);
            assert!(c.len() >= 2 && c.contains(&out[k]));
            let flip = FnScorer {
                dim: D,
                f: move |r: &[f32], count: usize| {
                    Ok((0..count)
                        .map(|i| if r[i * D + k] >= b { 1.0 } else { -1.0 })
                        .collect())
                },
            };
            let (s, iv) = intervals(&flip, &key, &x, copy..copy + 1, 1, Coupling::Candidates);
            assert_eq!(iv, vec![(-1.0, 1.0)], "{layout:?} copy {copy} value {k}");
            assert!(s[0] == -1.0 || s[0] == 1.0);
            found += 1;
            if found == 5 {
                break;
            }
        }
        assert_eq!(found, 5, "{layout:?}");
    }
}

/// Through `certify_sample` itself (CERTIFY's count, PREDICT): a copy whose decision flips
/// between its candidates counts for neither side, so the count is the number of copies whose
/// whole interval is ID — not the number whose own noisy input scored ID, and not n minus the
/// inexact copies (count-against), which the resolved copies with agreeing candidates beat.
#[test]
fn certify_sample_counts_a_flipping_copy_for_neither_side() {
    let x = image();
    let key = NoiseKey::with_layout(5, "mnist:test", NoiseLayout::V2);
    let (n0, n) = (10u64, 20_000u64);
    // Copies that fail the check; for the resolvable ones, their first ambiguous coordinate k and
    // its largest candidate b: the flip scorer gives the minority side exactly when r[k] is b.
    let mut out = vec![0.0f32; D];
    let (mut inexact, mut unresolved) = (0u64, 0u64);
    let mut flips: Vec<(usize, u32)> = Vec::new();
    for copy in n0..n0 + n {
        if key.add_noise_checked(3, copy, 0.25, &x, &mut out) {
            continue;
        }
        inexact += 1;
        match key.ambiguities(3, copy, 0.25, &x, &out, 16) {
            None => unresolved += 1,
            Some(amb) => {
                if let Some((k, c)) = amb.first() {
                    flips.push((*k, c[c.len() - 1].to_bits()));
                }
            }
        }
    }
    assert!(
        flips.len() >= 20 && unresolved < inexact,
        "{flips:?} {unresolved}"
    );
    // Both majorities: ID (score −1, the flip coordinate's b says OOD) and OOD (+1, b says ID).
    for id_majority in [true, false] {
        let base = if id_majority { -1.0 } else { 1.0 };
        let flip = FnScorer {
            dim: D,
            f: |r: &[f32], count: usize| {
                Ok((0..count)
                    .map(|i| {
                        let row = &r[i * D..(i + 1) * D];
                        let hit = flips.iter().any(|&(k, b)| row[k].to_bits() == b);
                        if hit { -base } else { base }
                    })
                    .collect())
            },
        };
        let constant = FnScorer {
            dim: D,
            f: |_: &[f32], count: usize| Ok(vec![base; count]),
        };
        let th = Thresholds {
            gamma: 0.0,
            gamma_smoothed: 0.0,
            clip: ClipRange::new(-2.0, 2.0).unwrap(),
        };
        let bar = ProgressBar::hidden();
        let run = |scorer: &dyn BatchScorer, coupling: Coupling| {
            let p = SmoothingParams {
                sigma: 0.25,
                n0,
                n,
                alpha: 0.001,
                batch: 1000,
                noise: NoiseLayout::V2,
                coupling,
            };
            let s = SampleRef {
                dataset: "mnist:test",
                key: &key,
                index: 3,
                label: 0,
                is_id: id_majority,
                x: &x,
                clean_score: base,
            };
            certify_sample(scorer, &p, &th, s, &bar).unwrap()
        };
        // What the engine says of each copy: sure ID only when the whole interval is ID (hi ≤ γ),
        // sure OOD only when it is OOD (lo > γ).
        let (scores, iv) = intervals(&flip, &key, &x, n0..n0 + n, 1000, Coupling::Candidates);
        let sure_id = iv.iter().filter(|(_, hi)| *hi <= 0.0).count() as u64;
        let sure_ood = iv.iter().filter(|(lo, _)| *lo > 0.0).count() as u64;
        let (sure_major, sure_minor) = if id_majority {
            (sure_id, sure_ood)
        } else {
            (sure_ood, sure_id)
        };
        let point_major = scores.iter().filter(|&&v| v == base).count() as u64;
        let straddling = iv
            .iter()
            .filter(|(lo, hi)| lo.is_finite() && *lo <= 0.0 && *hi > 0.0)
            .count() as u64;
        assert!(
            straddling >= flips.len() as u64,
            "{straddling} {}",
            flips.len()
        );
        assert!(
            point_major > sure_major,
            "the copies' own scores must differ from their intervals here"
        );

        let flipped = run(&flip, Coupling::Candidates);
        let (code, side) = if id_majority {
            (1, oodcert::smoothing::cohen::Decision::Id)
        } else {
            (0, oodcert::smoothing::cohen::Decision::Ood)
        };
        assert_eq!(flipped.predict, code, "majority ID: {id_majority}");
        assert_eq!(flipped.count, sure_major);
        assert_eq!(flipped.count, n - straddling - unresolved - sure_minor);
        // Count-against leaves every inexact copy out; candidates with a constant score settle
        // all resolvable ones; the flip scorer's straddling copies stay out under candidates too.
        assert_eq!(run(&constant, Coupling::CountAgainst).count, n - inexact);
        assert_eq!(run(&constant, Coupling::Candidates).count, n - unresolved);
        assert!(flipped.count < n - unresolved);
        // PREDICT answers the majority and CERTIFY's bound is the one of its count.
        assert_eq!(flipped.predict_test, code);
        let want =
            oodcert::smoothing::cohen::certify_from_counts(side, flipped.count, n, 0.001, 0.25)
                .unwrap();
        assert_eq!(flipped.p_lo.to_bits(), want.p_lo.to_bits());
    }
}

/// Intervals do not depend on the batch size, the thread count or how the copies are split,
/// for both layouts; some copies are resolved to a proper interval.
#[test]
fn intervals_do_not_depend_on_batch_threads_or_split() {
    let x = image();
    let scorer = FnScorer { dim: D, f: wavy };
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(3, "mnist:test", layout);
        let n = 4000u64;
        let whole = intervals(&scorer, &key, &x, 0..n, 1000, Coupling::Candidates);
        let resolved = whole
            .1
            .iter()
            .filter(|(lo, hi)| lo != hi && lo.is_finite() && hi.is_finite())
            .count();
        assert!(resolved >= 3, "{layout:?}: {resolved}");
        for batch in [1, 7, 333] {
            let got = intervals(&scorer, &key, &x, 0..n, batch, Coupling::Candidates);
            assert_eq!(got, whole, "{layout:?} batch {batch}");
        }
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| intervals(&scorer, &key, &x, 0..n, 64, Coupling::Candidates));
            assert_eq!(got, whole, "{layout:?} {threads} threads");
        }
        let (mut s, mut iv) = intervals(&scorer, &key, &x, 0..1234, 50, Coupling::Candidates);
        let rest = intervals(&scorer, &key, &x, 1234..n, 999, Coupling::Candidates);
        s.extend(rest.0);
        iv.extend(rest.1);
        assert_eq!((s, iv), whole, "{layout:?} split");
    }
}

/// The fused dense loop gives the tensor path's intervals bit for bit under both rules, with the
/// weights packed for the AVX-512 kernel (3000 copies) and without (1500).
#[test]
fn fused_dense_path_gives_the_tensor_paths_intervals() {
    let spec = ModelSpec {
        arch: Arch::Mlp {
            hidden: vec![64, 32],
        },
        input_shape: [1, 28, 28],
        num_classes: 10,
        mean: vec![0.13],
        std: vec![0.31],
    };
    let model = Model::init(spec, &Device::Cpu, DType::F32, 7).unwrap();
    let fused = ModelScorer {
        model: &model,
        device: Device::Cpu,
        kind: ScoreKind::Energy,
        temperature: 1.0,
    };
    assert!(fused.dense_mc().unwrap().is_some());
    let tensor = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| fused.score_flat(x, count),
    };
    let x = image();
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(4, "mnist:test", layout);
        for rule in [Coupling::CountAgainst, Coupling::Candidates] {
            let want = intervals(&tensor, &key, &x, 0..3000, 1000, rule);
            let infinite = want.1.iter().filter(|(lo, _)| lo.is_infinite()).count();
            match rule {
                Coupling::CountAgainst => assert!(infinite >= 2, "{layout:?}: {infinite}"),
                Coupling::Candidates => assert_eq!(infinite, 0, "{layout:?}"),
            }
            for batch in [1000, 77] {
                let got = intervals(&fused, &key, &x, 0..3000, batch, rule);
                let bits = |v: &(Vec<f64>, Vec<(f64, f64)>)| {
                    let mut b: Vec<u64> = v.0.iter().map(|s| s.to_bits()).collect();
                    b.extend(v.1.iter().flat_map(|(l, h)| [l.to_bits(), h.to_bits()]));
                    b
                };
                assert_eq!(bits(&got), bits(&want), "{layout:?} {rule:?} batch {batch}");
            }
            // Below the engine's packing threshold (2048 copies) the dense loop keeps the
            // `gemm` crate's kernel for its batches and its candidates: the same intervals.
            let short = intervals(&fused, &key, &x, 0..1500, 1000, rule);
            let (s, iv) = (&want.0[..1500], &want.1[..1500]);
            assert_eq!(
                short.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{layout:?} {rule:?} unpacked"
            );
            assert_eq!(
                short
                    .1
                    .iter()
                    .flat_map(|(l, h)| [l.to_bits(), h.to_bits()])
                    .collect::<Vec<_>>(),
                iv.iter()
                    .flat_map(|(l, h)| [l.to_bits(), h.to_bits()])
                    .collect::<Vec<_>>(),
                "{layout:?} {rule:?} unpacked"
            );
            // The prefix holds inexact copies (the same under both rules), so the candidate
            // scoring is exercised there too.
            let inexact = iv.iter().filter(|(l, _)| l.is_infinite()).count();
            assert!(
                rule != Coupling::CountAgainst || inexact >= 1,
                "{layout:?}: no inexact copy in 1500"
            );
        }
    }
}

/// A batch's inexact copies have their candidate inputs scored in one call (not one call per
/// copy), and the intervals equal those of batch 1, where each call holds one copy's candidates
/// (the wavy score changes with every candidate, so resolved copies have lo < hi).
#[test]
fn a_batchs_candidates_are_scored_in_one_call() {
    let x = image();
    let calls = std::sync::Mutex::new(Vec::new());
    let scorer = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| {
            calls.lock().unwrap().push(count);
            wavy(x, count)
        },
    };
    let key = NoiseKey::with_layout(3, "mnist:test", NoiseLayout::V2);
    let (n, batch) = (20_000u64, 4000usize);
    let whole = intervals(&scorer, &key, &x, 0..n, batch, Coupling::Candidates);
    let sizes = std::mem::take(&mut *calls.lock().unwrap());
    let inexact = whole.1.iter().filter(|(lo, hi)| lo != hi).count();
    let per_batch: Vec<usize> = whole
        .1
        .chunks(batch)
        .map(|c| {
            c.iter()
                .filter(|(lo, hi)| lo != hi && lo.is_finite() && hi.is_finite())
                .count()
        })
        .collect();
    assert!(
        per_batch.iter().any(|&k| k >= 2),
        "no batch with two resolved inexact copies: {per_batch:?} ({inexact} in all)"
    );
    let candidate_calls = sizes.len() - (n as usize).div_ceil(batch);
    let batches_with_inexact = per_batch.iter().filter(|&&k| k > 0).count();
    assert_eq!(
        candidate_calls, batches_with_inexact,
        "calls {sizes:?}, inexact per batch {per_batch:?}"
    );
    let one = intervals(&scorer, &key, &x, 0..n, 1, Coupling::Candidates);
    assert_eq!(one, whole);
}

/// On a convolutional net (the tensor path), each candidate row's score does not depend on the
/// rows scored with it: the batched candidates give the intervals of scoring every row alone,
/// bit for bit, under both layouts.
#[test]
fn lenet_candidates_scored_together_equal_each_row_alone() {
    let spec = ModelSpec {
        arch: Arch::Lenet,
        input_shape: [1, 28, 28],
        num_classes: 10,
        mean: vec![0.13],
        std: vec![0.31],
    };
    let model = Model::init(spec, &Device::Cpu, DType::F32, 11).unwrap();
    let batched = ModelScorer {
        model: &model,
        device: Device::Cpu,
        kind: ScoreKind::Energy,
        temperature: 1.0,
    };
    assert!(batched.dense_mc().unwrap().is_none());
    let rows = std::sync::atomic::AtomicUsize::new(0);
    let alone = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| {
            rows.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            let mut s = Vec::with_capacity(count);
            for row in x.chunks(D).take(count) {
                s.extend(batched.score_flat(row, 1)?);
            }
            Ok(s)
        },
    };
    let x = image();
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(5, "mnist:test", layout);
        let n = 6000u64;
        let got = intervals(&batched, &key, &x, 0..n, 2000, Coupling::Candidates);
        rows.store(0, std::sync::atomic::Ordering::Relaxed);
        let want = intervals(&alone, &key, &x, 0..n, 2000, Coupling::Candidates);
        // Rows beyond the copies themselves are candidate inputs: at least two copies' worth.
        let candidates = rows.load(std::sync::atomic::Ordering::Relaxed) - n as usize;
        assert!(candidates >= 4, "{layout:?}: {candidates} candidate rows");
        let bits = |v: &(Vec<f64>, Vec<(f64, f64)>)| {
            let mut b: Vec<u64> = v.0.iter().map(|s| s.to_bits()).collect();
            b.extend(v.1.iter().flat_map(|(l, h)| [l.to_bits(), h.to_bits()]));
            b
        };
        assert_eq!(bits(&got), bits(&want), "{layout:?}");
    }
}
