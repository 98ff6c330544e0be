//! The Monte Carlo engine's pipeline (src/smoothing/engine.rs, `pipelined`): batch b is scored
//! and visited while batch b + 1 is filled. On the tensor path (any scorer without the fused
//! dense loop) the visited batches, their scores and exactness flags must be those of scoring
//! every copy on its own, in copy order, for every batch size, copy range and thread count; a
//! failing scorer or visit stops the loop with its own error; a scorer that must not leave the
//! caller's thread (a GPU device) is called from it.

use indicatif::ProgressBar;
use oodcert::error::{Error, Result};
use oodcert::smoothing::engine::{BatchScorer, FnScorer, noisy_scores_checked};
use oodcert::smoothing::noise::{NoiseKey, NoiseLayout};
use std::sync::Mutex;

const D: usize = 37;

/// A score that depends on every value of an input (so a wrong or shifted copy shows).
fn score_of(row: &[f32]) -> f64 {
    row.iter()
        .enumerate()
        .map(|(i, &v)| (i as f64 + 1.0).sqrt() * v as f64)
        .sum()
}

fn input() -> Vec<f32> {
    (0..D).map(|i| (i % 5) as f32 / 4.0).collect()
}

/// (batch sizes visited, score bits, exactness flags) of `copies` through the engine.
fn run(
    scorer: &dyn BatchScorer,
    key: &NoiseKey,
    copies: std::ops::Range<u64>,
    batch: usize,
) -> (Vec<usize>, Vec<u64>, Vec<bool>) {
    let (mut sizes, mut s, mut e) = (Vec::new(), Vec::new(), Vec::new());
    let bar = ProgressBar::hidden();
    noisy_scores_checked(
        scorer,
        key,
        9,
        &input(),
        0.3,
        copies,
        batch,
        &bar,
        |sc, ex| {
            sizes.push(sc.len());
            s.extend(sc.iter().map(|v| v.to_bits()));
            e.extend_from_slice(ex);
            Ok(())
        },
    )
    .unwrap();
    (sizes, s, e)
}

#[test]
fn the_pipelined_tensor_path_equals_scoring_each_copy_alone() {
    let scorer = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| Ok(x.chunks_exact(D).take(count).map(score_of).collect()),
    };
    for layout in [NoiseLayout::V1, NoiseLayout::V2] {
        let key = NoiseKey::with_layout(4, "toy:test", layout);
        for copies in [0..0u64, 0..1, 5..6, 3..203, 100..1100] {
            // Each copy alone, in order.
            let mut row = vec![0.0f32; D];
            let (mut want_s, mut want_e) = (Vec::new(), Vec::new());
            for c in copies.clone() {
                want_e.push(key.add_noise_checked(9, c, 0.3, &input(), &mut row));
                want_s.push(score_of(&row).to_bits());
            }
            let n = (copies.end - copies.start) as usize;
            for batch in [1usize, 7, 64, 1000] {
                for threads in [1, 2, 4] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let (sizes, s, e) = pool.install(|| run(&scorer, &key, copies.clone(), batch));
                    let mut want_sizes = vec![batch; n / batch];
                    if !n.is_multiple_of(batch) {
                        want_sizes.push(n % batch);
                    }
                    let at = format!("{layout:?} {copies:?} batch {batch} threads {threads}");
                    assert_eq!(sizes, want_sizes, "{at}");
                    assert_eq!(s, want_s, "{at}");
                    assert_eq!(e, want_e, "{at}");
                }
            }
        }
    }
}

#[test]
fn a_failing_scorer_or_visit_stops_the_pipeline_with_its_error() {
    let calls = Mutex::new(0usize);
    let scorer = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| {
            let mut n = calls.lock().unwrap();
            *n += 1;
            if *n == 3 {
                return Err(Error::CheckFailed("scorer call 3".into()));
            }
            Ok(x.chunks_exact(D).take(count).map(score_of).collect())
        },
    };
    let key = NoiseKey::with_layout(4, "toy:test", NoiseLayout::V2);
    let bar = ProgressBar::hidden();
    let mut seen = 0;
    let err = noisy_scores_checked(&scorer, &key, 9, &input(), 0.3, 0..100, 10, &bar, |_, _| {
        seen += 1;
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("scorer call 3"), "{err}");
    assert_eq!((seen, bar.position()), (2, 20));

    let ok = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| Ok(x.chunks_exact(D).take(count).map(score_of).collect()),
    };
    let bar = ProgressBar::hidden();
    let mut seen = 0;
    let err = noisy_scores_checked(&ok, &key, 9, &input(), 0.3, 0..100, 10, &bar, |_, _| {
        seen += 1;
        match seen {
            4 => Err(Error::CheckFailed("visit 4".into())),
            _ => Ok(()),
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("visit 4"), "{err}");
    assert_eq!((seen, bar.position()), (4, 30));
}

/// A scorer that must stay on the caller's thread (as a GPU device does): it records the
/// threads it ran on.
struct PinnedScorer {
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl BatchScorer for PinnedScorer {
    fn dim(&self) -> usize {
        D
    }

    fn score_flat(&self, x: &[f32], count: usize) -> Result<Vec<f64>> {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        Ok(x.chunks_exact(D).take(count).map(score_of).collect())
    }

    fn overlaps(&self) -> bool {
        false
    }
}

#[test]
fn a_scorer_that_does_not_overlap_runs_on_the_callers_thread_with_the_same_results() {
    let key = NoiseKey::with_layout(4, "toy:test", NoiseLayout::V2);
    let pinned = PinnedScorer {
        threads: Mutex::new(Vec::new()),
    };
    let free = FnScorer {
        dim: D,
        f: |x: &[f32], count: usize| Ok(x.chunks_exact(D).take(count).map(score_of).collect()),
    };
    assert_eq!(run(&pinned, &key, 2..300, 64), run(&free, &key, 2..300, 64));
    let me = std::thread::current().id();
    let threads = pinned.threads.lock().unwrap();
    assert_eq!(threads.len(), 5);
    assert!(threads.iter().all(|&t| t == me), "{threads:?}");
}
