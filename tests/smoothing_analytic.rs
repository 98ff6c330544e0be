//! An analytic case: the linear score S(x) = wᵀx + b, whose smoothed quantities are known in
//! closed form (theory.md §3–4). With s = σ‖w‖ and m = wᵀx + b:
//! P(S(x+δ) ≤ γ) = Φ((γ - m)/s), so the smoothed detector's exact robustness radius is
//! |γ - m|/‖w‖ = σ·Φ⁻¹(p_A); and E[clip(S(x+δ), a, b)] = E[clip(Y, a, b)], Y ~ N(m, s²), which we
//! take in closed form and cross-check by 1-D numerical integration.
//! Checks: computed radii never exceed the exact ones (except within the α budget) and come
//! close to them; the score bounds contain the exact smoothed score; at points inside certified
//! radii the exact smoothed decision and fresh Monte Carlo (new noise) agree with the
//! certified decision except within the α budget.

use indicatif::ProgressBar;
use oodcert::smoothing::clip::ClipRange;
use oodcert::smoothing::engine::FnScorer;
use oodcert::smoothing::engine::noisy_scores;
use oodcert::smoothing::mean_bounds::{hoeffding_lower, hoeffding_upper};
use oodcert::smoothing::noise::NoiseKey;
use oodcert::smoothing::normal::{phi, phi_inv};
use oodcert::smoothing::sample::{SampleRef, SmoothingParams, Thresholds, certify_sample};

const D: usize = 16;
const SIGMA: f64 = 0.25;
const ALPHA: f64 = 0.01;
const N_SAMPLES: usize = 200;

fn weights() -> Vec<f64> {
    // ‖w‖ = 2 exactly: w = 0.5·(±1, …) over 16 coordinates.
    (0..D)
        .map(|i| if i % 3 == 0 { -0.5 } else { 0.5 })
        .collect()
}

fn linear(w: &[f64], bias: f64) -> impl Fn(&[f32], usize) -> oodcert::Result<Vec<f64>> + Sync + '_ {
    move |x: &[f32], count: usize| {
        Ok((0..count)
            .map(|i| {
                x[i * D..(i + 1) * D]
                    .iter()
                    .zip(w)
                    .map(|(&a, &b)| a as f64 * b)
                    .sum::<f64>()
                    + bias
            })
            .collect())
    }
}

fn dot(a: &[f32], w: &[f64]) -> f64 {
    a.iter().zip(w).map(|(&x, &y)| x as f64 * y).sum()
}

fn std_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// E[clip(Y, a, b)] for Y ~ N(m, s²), closed form.
fn clipped_mean(m: f64, s: f64, a: f64, b: f64) -> f64 {
    let (za, zb) = ((a - m) / s, (b - m) / s);
    a * phi(za) + b * (1.0 - phi(zb)) + m * (phi(zb) - phi(za)) + s * (std_pdf(za) - std_pdf(zb))
}

/// The same by composite Simpson integration over y ∈ [m - 12s, m + 12s], split at the kinks a, b.
fn clipped_mean_simpson(m: f64, s: f64, a: f64, b: f64) -> f64 {
    let f = |y: f64| y.clamp(a, b) * std_pdf((y - m) / s) / s;
    let simpson = |lo: f64, hi: f64| {
        if hi <= lo {
            return 0.0;
        }
        let k = 20_000;
        let h = (hi - lo) / k as f64;
        let mut acc = f(lo) + f(hi);
        for i in 1..k {
            acc += f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        acc * h / 3.0
    };
    let (lo, hi) = (m - 12.0 * s, m + 12.0 * s);
    let (ka, kb) = (a.clamp(lo, hi), b.clamp(lo, hi));
    simpson(lo, ka) + simpson(ka, kb) + simpson(kb, hi)
}

fn budget(alpha: f64, trials: usize) -> usize {
    let t = trials as f64;
    (alpha * t + 5.0 * (t * alpha * (1.0 - alpha)).sqrt()).ceil() as usize
}

#[test]
fn closed_form_matches_numerical_integration() {
    for &(m, s) in &[(0.0, 0.5), (-1.3, 0.5), (2.5, 0.2), (0.7, 3.0)] {
        let (c, q) = (
            clipped_mean(m, s, -2.0, 2.0),
            clipped_mean_simpson(m, s, -2.0, 2.0),
        );
        assert!((c - q).abs() < 1e-9, "m={m} s={s}: {c} vs {q}");
    }
}

#[test]
fn linear_score_certificates_are_sound_and_tight() {
    let w = weights();
    let norm_w = 2.0;
    let s = SIGMA * norm_w;
    let bias = 0.0;
    let scorer = FnScorer {
        dim: D,
        f: linear(&w, bias),
    };
    let clip = ClipRange::new(-2.0, 2.0).unwrap();
    let th = Thresholds {
        gamma: 0.0,
        gamma_smoothed: 0.0,
        clip,
    };
    let t = clip.unit_threshold(0.0).unwrap();
    let p = SmoothingParams {
        sigma: SIGMA,
        n0: 64,
        n: 4000,
        alpha: ALPHA,
        batch: 512,
        noise: oodcert::smoothing::noise::NoiseLayout::V1,
        coupling: oodcert::smoothing::coupling::Coupling::Candidates,
    };
    let key = NoiseKey::new(11, "linear:test");
    let fresh = NoiseKey::new(12, "linear:fresh");
    let bar = ProgressBar::hidden();
    let unit_w: Vec<f32> = w.iter().map(|v| (v / norm_w) as f32).collect();

    let mut counts = [0usize; 9];
    let mut lemma_gap = 0.0;
    let (mut gap_sum, mut gap_n) = (0.0, 0usize);
    for i in 0..N_SAMPLES {
        // Clean scores m spread over [-1.6, 1.6]; role ID iff m < 0 (plus a few wrong roles).
        let target = -1.6 + 3.2 * (i as f64 + 0.5) / N_SAMPLES as f64;
        let x: Vec<f32> = w
            .iter()
            .map(|v| (target * v / (norm_w * norm_w)) as f32)
            .collect();
        let m = dot(&x, &w) + bias;
        let is_id = if i % 10 == 0 { m >= 0.0 } else { m < 0.0 };
        let r = certify_sample(
            &scorer,
            &p,
            &th,
            SampleRef {
                dataset: "linear:test",
                key: &key,
                index: i as u64,
                label: -1,
                is_id,
                x: &x,
                clean_score: m,
            },
            &bar,
        )
        .unwrap();

        // Cohen: exact p of the predicted outcome, exact robustness radius |γ - m|/‖w‖.
        let p_id = phi((0.0 - m) / s);
        if r.predict >= 0 {
            let p_true = if r.predict == 1 { p_id } else { 1.0 - p_id };
            counts[0] += usize::from(r.p_lo > p_true);
            let exact = (0.0 - m).abs() / norm_w;
            assert!((r.radius - SIGMA * phi_inv(r.p_lo)).abs() <= 1e-8 * r.radius.max(1.0));
            // σ·Φ⁻¹(p_A) is the exact radius for a linear score.
            assert!((SIGMA * phi_inv(p_true) - exact).abs() < 1e-7 * exact.max(1.0));
            counts[1] += usize::from(r.radius > exact);
            gap_sum += exact - r.radius;
            gap_n += 1;
            // A point inside the radius, moved towards the boundary: the exact smoothed decision
            // must not change, and fresh PREDICT-style Monte Carlo must not contradict it.
            let dir = if r.predict == 1 { 1.0 } else { -1.0 };
            let xp: Vec<f32> = x
                .iter()
                .zip(&unit_w)
                .map(|(&a, &u)| a + (dir * 0.999 * r.radius) as f32 * u)
                .collect();
            let mp = dot(&xp, &w) + bias;
            counts[2] += usize::from((mp <= 0.0) != (r.predict == 1));
            let mut id_hits = 0u64;
            noisy_scores(
                &scorer,
                &fresh,
                i as u64,
                &xp,
                SIGMA,
                0..4000,
                512,
                &bar,
                |sc| {
                    id_hits += sc.iter().filter(|&&v| v <= 0.0).count() as u64;
                    Ok(())
                },
            )
            .unwrap();
            let (d, _) =
                oodcert::smoothing::cohen::predict_from_counts(id_hits, 4000, ALPHA).unwrap();
            counts[3] += usize::from(d.is_some_and(|d| d.code() != r.predict));
        }

        // Score certificate: the exact h(x) lies within the role's one-sided bounds.
        let h_true = (clipped_mean(m, s, -2.0, 2.0) + 2.0) / 4.0;
        if is_id {
            counts[4] += usize::from(r.h_hi < h_true) + usize::from(r.h_hi_hoeffding < h_true);
        } else {
            counts[4] += usize::from(r.h_lo > h_true) + usize::from(r.h_lo_hoeffding > h_true);
        }
        assert!(r.h_hi - r.h_lo <= r.h_hi_hoeffding - r.h_lo_hoeffding + 1e-9);
        if r.radius_score >= 0.0 {
            // The radius the lemma gives with the exact h(x) bounds the certified one (it is
            // larger unless the confidence bound failed), and the exact crossing distance
            // |m|/‖w‖ (h = t exactly at m = 0 for this symmetric clip range) bounds both.
            let exact_lemma = if is_id {
                SIGMA * (phi_inv(t) - phi_inv(h_true))
            } else {
                SIGMA * (phi_inv(h_true) - phi_inv(t))
            };
            counts[8] += usize::from(r.radius_score > exact_lemma);
            assert!(
                exact_lemma <= m.abs() / norm_w + 1e-9,
                "lemma radius beyond the exact one"
            );
            lemma_gap += exact_lemma - r.radius_score;
            // Worst direction for the role: ID samples pushed up the score, OOD samples down.
            let dir = if is_id { 1.0 } else { -1.0 };
            let xp: Vec<f32> = x
                .iter()
                .zip(&unit_w)
                .map(|(&a, &u)| a + (dir * 0.999 * r.radius_score) as f32 * u)
                .collect();
            let mp = dot(&xp, &w) + bias;
            let hp = (clipped_mean(mp, s, -2.0, 2.0) + 2.0) / 4.0;
            counts[5] += usize::from(if is_id { hp > t } else { hp < t });
            // Fresh noise: a one-sided Hoeffding test must not prove the opposite side of t.
            let mut hs = Vec::new();
            noisy_scores(
                &scorer,
                &fresh,
                1_000_000 + i as u64,
                &xp,
                SIGMA,
                0..4000,
                512,
                &bar,
                |sc| {
                    hs.extend(sc.iter().map(|&v| clip.to_unit(v)));
                    Ok(())
                },
            )
            .unwrap();
            let contradicts = if is_id {
                hoeffding_lower(&hs, ALPHA).unwrap() > t
            } else {
                hoeffding_upper(&hs, ALPHA).unwrap() < t
            };
            counts[6] += usize::from(contradicts);
            counts[7] += 1;
        }
    }
    let b = budget(ALPHA, N_SAMPLES);
    assert!(counts[0] <= b, "Clopper-Pearson failures {}", counts[0]);
    assert!(counts[1] <= b, "radii above the exact radius {}", counts[1]);
    assert!(
        counts[2] <= b,
        "exact decision changed inside the radius {}",
        counts[2]
    );
    assert!(
        counts[3] <= budget(2.0 * ALPHA, N_SAMPLES),
        "fresh Monte Carlo contradicted {}",
        counts[3]
    );
    assert!(
        counts[4] <= budget(ALPHA, 2 * N_SAMPLES),
        "score bound failures {}",
        counts[4]
    );
    assert!(
        counts[5] <= b,
        "exact smoothed score crossed t inside the radius {}",
        counts[5]
    );
    assert!(
        counts[6] <= budget(2.0 * ALPHA, N_SAMPLES),
        "fresh score Monte Carlo contradicted {}",
        counts[6]
    );
    // Enough samples were certified for the checks to mean something, and radii are tight.
    assert!(gap_n > N_SAMPLES / 2, "only {gap_n} Cohen certificates");
    assert!(
        counts[7] > N_SAMPLES / 3,
        "only {} score certificates",
        counts[7]
    );
    assert!(
        counts[8] <= b,
        "score radii above the exact lemma radius {}",
        counts[8]
    );
    let mean_lemma_gap = lemma_gap / counts[7] as f64;
    assert!(
        mean_lemma_gap < 0.03,
        "score radii are on average {mean_lemma_gap} below the exact lemma radius"
    );
    let mean_gap = gap_sum / gap_n as f64;
    assert!(
        mean_gap < 0.03,
        "Cohen radii are on average {mean_gap} below the exact radius"
    );
}
