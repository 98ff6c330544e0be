//! Detection metrics against O(n²) brute-force definitions on random small inputs (seeded),
//! plus the error cases and the ID accuracy helper.

use oodcert::metrics::{
    FprConvention, FprRule, Positive, SortedScores, auroc, average_precision, detection_error,
    detection_metrics, detection_metrics_split, fpr_at_tpr, id_accuracy, roc_curve,
    threshold_at_tpr,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOL: f64 = 1e-12;

/// Random (id, ood) scores: small integers (many ties) or continuous values.
fn random_case(rng: &mut ChaCha8Rng, tied: bool) -> (Vec<f64>, Vec<f64>) {
    let n_id = rng.random_range(1..25);
    let n_ood = rng.random_range(1..25);
    let levels: i32 = rng.random_range(1..8);
    let shift = if rng.random_bool(0.5) { 1.0 } else { 0.0 };
    let mut draw = |shift: f64| {
        if tied {
            (rng.random_range(0..levels) as f64) + shift.round()
        } else {
            rng.random::<f64>() * 4.0 + shift
        }
    };
    let id = (0..n_id).map(|_| draw(0.0)).collect();
    let ood = (0..n_ood).map(|_| draw(shift)).collect();
    (id, ood)
}

/// P(S_ID < S_OOD) + ½ P(S_ID = S_OOD) over all pairs.
fn brute_auroc(id: &[f64], ood: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &a in id {
        for &b in ood {
            wins += if a < b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (id.len() * ood.len()) as f64
}

/// Candidate thresholds: every distinct score value, ascending.
fn distinct(id: &[f64], ood: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = id.iter().chain(ood).copied().collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn share_le(xs: &[f64], g: f64) -> f64 {
    xs.iter().filter(|&&x| x <= g).count() as f64 / xs.len() as f64
}

/// AP by definition: Σ over distinct thresholds of ΔRecall · Precision, positives on `pos`,
/// a sample called positive when `called(score, threshold)`.
fn brute_ap(pos: &[f64], neg: &[f64], ths: &[f64], called: fn(f64, f64) -> bool) -> f64 {
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for &g in ths {
        let tp = pos.iter().filter(|&&x| called(x, g)).count() as f64;
        let fp = neg.iter().filter(|&&x| called(x, g)).count() as f64;
        let recall = tp / pos.len() as f64;
        ap += (recall - prev_recall) * tp / (tp + fp).max(1.0);
        prev_recall = recall;
    }
    ap
}

#[test]
fn auroc_equals_pairwise_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for trial in 0..600 {
        let (id, ood) = random_case(&mut rng, trial % 2 == 0);
        let s = SortedScores::from_split(&id, &ood).unwrap();
        let (got, want) = (auroc(&s), brute_auroc(&id, &ood));
        assert!((got - want).abs() <= TOL, "trial {trial}: {got} vs {want}");
    }
}

#[test]
fn average_precision_and_detection_error_equal_their_definitions() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for trial in 0..400 {
        let (id, ood) = random_case(&mut rng, trial % 2 == 0);
        let s = SortedScores::from_split(&id, &ood).unwrap();
        let asc = distinct(&id, &ood);
        let desc: Vec<f64> = asc.iter().rev().copied().collect();
        let ap_in = brute_ap(&id, &ood, &asc, |x, g| x <= g);
        let ap_out = brute_ap(&ood, &id, &desc, |x, g| x >= g);
        assert!(
            (average_precision(&s, Positive::Id) - ap_in).abs() <= TOL,
            "trial {trial}"
        );
        assert!(
            (average_precision(&s, Positive::Ood) - ap_out).abs() <= TOL,
            "trial {trial}"
        );
        let de = asc
            .iter()
            .map(|&g| 0.5 * (1.0 - share_le(&id, g)) + 0.5 * share_le(&ood, g))
            .fold(0.5, f64::min);
        assert!((detection_error(&s) - de).abs() <= TOL, "trial {trial}");
    }
}

#[test]
fn fpr_first_and_threshold_agree_with_the_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for trial in 0..400 {
        let (id, ood) = random_case(&mut rng, trial % 2 == 0);
        let s = SortedScores::from_split(&id, &ood).unwrap();
        let t = [0.5, 0.8, 0.9, 0.95, 1.0, rng.random_range(0.01..1.0)][trial % 6];
        // The smallest candidate γ whose accepted ID share reaches t.
        let gamma = *distinct(&id, &ood)
            .iter()
            .find(|&&g| share_le(&id, g) >= t)
            .unwrap();
        assert_eq!(threshold_at_tpr(&id, t).unwrap(), gamma, "trial {trial}");
        assert!(share_le(&id, gamma) >= t);
        let rule = FprRule {
            convention: FprConvention::First,
            tpr: t,
        };
        assert_eq!(
            fpr_at_tpr(&s, rule).unwrap(),
            share_le(&ood, gamma),
            "trial {trial}"
        );
    }
}

#[test]
fn ood_positive_is_first_with_roles_swapped_when_scores_are_untied() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for trial in 0..300 {
        let (id, ood) = random_case(&mut rng, false);
        let t = rng.random_range(0.05..1.0);
        let s = SortedScores::from_split(&id, &ood).unwrap();
        let rule = FprRule {
            convention: FprConvention::OodPositive,
            tpr: t,
        };
        // Roles swapped: OOD positive, score S; negate scores to reuse "S ≤ γ" acceptance.
        let neg = |xs: &[f64]| xs.iter().map(|x| -x).collect::<Vec<_>>();
        let swapped = SortedScores::from_split(&neg(&ood), &neg(&id)).unwrap();
        let first = FprRule {
            convention: FprConvention::First,
            tpr: t,
        };
        assert_eq!(
            fpr_at_tpr(&s, rule).unwrap(),
            fpr_at_tpr(&swapped, first).unwrap(),
            "trial {trial}"
        );
    }
}

#[test]
fn nearest_picks_a_recall_nearest_t() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for trial in 0..300 {
        let (id, ood) = random_case(&mut rng, trial % 2 == 0);
        let t = rng.random_range(0.05..1.0);
        let s = SortedScores::from_split(&id, &ood).unwrap();
        let rule = FprRule {
            convention: FprConvention::Nearest,
            tpr: t,
        };
        let got = fpr_at_tpr(&s, rule).unwrap();
        let roc = roc_curve(&s);
        let best = roc[1..]
            .iter()
            .map(|p| (p.tpr - t).abs())
            .fold(f64::INFINITY, f64::min);
        // The FPR returned belongs to a ROC point whose recall is nearest t.
        assert!(
            roc[1..]
                .iter()
                .any(|p| (p.tpr - t).abs() == best && p.fpr == got),
            "trial {trial}: fpr {got} is not at a nearest-recall point"
        );
    }
}

#[test]
fn input_order_and_form_do_not_matter() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for trial in 0..100 {
        let (id, ood) = random_case(&mut rng, trial % 2 == 0);
        let mut pairs: Vec<(f64, bool)> = id
            .iter()
            .map(|&x| (x, true))
            .chain(ood.iter().map(|&x| (x, false)))
            .collect();
        pairs.shuffle(&mut rng);
        let (scores, is_id): (Vec<f64>, Vec<bool>) = pairs.into_iter().unzip();
        let a = detection_metrics(&scores, &is_id, FprRule::FPR95).unwrap();
        let b = detection_metrics_split(&id, &ood, FprRule::FPR95).unwrap();
        assert_eq!(a, b, "trial {trial}");
    }
}

#[test]
fn known_small_values() {
    // ID {1,2,3}, OOD {2,4}: pairs (1<2,1<4,2=2,2<4,3>2,3<4) → (4 + ½)/6.
    let m = detection_metrics_split(&[1.0, 2.0, 3.0], &[2.0, 4.0], FprRule::FPR95).unwrap();
    assert_eq!(m.auroc, 4.5 / 6.0);
    // TPR reaches 1 ≥ 0.95 only at γ = 3, where OOD 2 is accepted: FPR = ½.
    assert_eq!(m.fpr_at_tpr, 0.5);
    // Thresholds γ = 1, 2, 3, 4 give ½(1 - TPR) + ½FPR = 1/3, 5/12, 1/4, 1/2: best γ = 3.
    assert_eq!(m.detection_error, 0.25);
    // Perfect separation.
    let p = detection_metrics_split(&[-3.0, -2.0], &[1.0], FprRule::FPR95).unwrap();
    assert_eq!(
        (p.auroc, p.aupr_in, p.aupr_out, p.fpr_at_tpr),
        (1.0, 1.0, 1.0, 0.0)
    );
    assert_eq!(p.detection_error, 0.0);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let rule = FprRule::FPR95;
    let cases: Vec<(&str, oodcert::Result<_>)> = vec![
        ("empty ID", detection_metrics_split(&[], &[1.0], rule)),
        ("empty OOD", detection_metrics_split(&[1.0], &[], rule)),
        ("NaN", detection_metrics_split(&[f64::NAN], &[1.0], rule)),
        (
            "inf",
            detection_metrics_split(&[1.0], &[f64::INFINITY], rule),
        ),
        (
            "-inf",
            detection_metrics_split(&[f64::NEG_INFINITY], &[1.0], rule),
        ),
        (
            "length mismatch",
            detection_metrics(&[1.0, 2.0], &[true], rule),
        ),
        (
            "only ID",
            detection_metrics(&[1.0, 2.0], &[true, true], rule),
        ),
        ("empty", detection_metrics(&[], &[], rule)),
    ];
    for (what, r) in cases {
        let e = r.expect_err(what);
        assert_eq!(e.exit_code(), 2, "{what}: {e}");
        assert!(!e.to_string().contains('\n'), "{what}: multi-line message");
    }
    for t in [0.0, -0.1, 1.5, f64::NAN] {
        let r = FprRule {
            convention: FprConvention::First,
            tpr: t,
        };
        assert!(
            detection_metrics_split(&[1.0], &[2.0], r).is_err(),
            "tpr {t}"
        );
        assert!(threshold_at_tpr(&[1.0], t).is_err(), "tpr {t}");
    }
    assert!(threshold_at_tpr(&[], 0.95).is_err());
    assert!(threshold_at_tpr(&[1.0, f64::NAN], 0.95).is_err());
}

#[test]
fn threshold_accepts_ties_and_picks_the_kth_smallest() {
    // 20 ID scores 0..19 in scrambled order: 0.95·20 = 19 → the 19th smallest, 18.
    let mut id: Vec<f64> = (0..20).map(f64::from).collect();
    id.shuffle(&mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(threshold_at_tpr(&id, 0.95).unwrap(), 18.0);
    assert_eq!(threshold_at_tpr(&id, 1.0).unwrap(), 19.0);
    assert_eq!(threshold_at_tpr(&id, 0.01).unwrap(), 0.0);
    // Ties: all equal → γ is that value and accepts everything.
    assert_eq!(threshold_at_tpr(&[2.0; 7], 0.5).unwrap(), 2.0);
}

#[test]
fn id_accuracy_counts_argmax_hits() {
    // Rows: argmax 2, 0, 1 (tie between 0 and 1 → first), labels 2, 1, 0.
    let logits: [f32; 9] = [0.1, 0.2, 0.9, 1.0, 0.0, -1.0, 0.5, 0.5, 0.1];
    assert_eq!(id_accuracy(&logits, 3, &[2, 1, 0]).unwrap(), 2.0 / 3.0);
    let logits64: Vec<f64> = logits.iter().map(|&x| x.into()).collect();
    assert_eq!(id_accuracy(&logits64, 3, &[2, 0, 0]).unwrap(), 1.0);
    assert!(id_accuracy(&logits, 3, &[2, 1]).is_err(), "shape");
    assert!(id_accuracy(&logits, 3, &[2, 1, -1]).is_err(), "unlabelled");
    assert!(
        id_accuracy(&logits, 3, &[2, 1, 3]).is_err(),
        "label out of range"
    );
    assert!(id_accuracy(&logits, 0, &[]).is_err(), "no classes");
    let mut nan = logits;
    nan[4] = f32::NAN;
    assert!(id_accuracy(&nan, 3, &[2, 1, 0]).is_err(), "NaN logit");
}
