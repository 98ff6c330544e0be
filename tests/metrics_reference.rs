//! Detection metrics against sklearn reference values (tests/reference/metrics/cases.json,
//! produced by analysis/reference/sklearn_metrics.py). Tolerance 1e-9 absolute.

use oodcert::metrics::{
    FprConvention, FprRule, Positive, SortedScores, auroc, average_precision, detection_error,
    detection_metrics, fpr_at_tpr, pr_curve, roc_curve, synthetic, threshold_at_tpr,
};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/metrics/cases.json"
    );
    let text = std::fs::read_to_string(path).expect("reference file readable");
    let doc: Value = serde_json::from_str(&text).expect("reference file is JSON");
    doc["cases"].as_array().expect("cases array").clone()
}

/// A reference float: a '%.17g' string (may be "inf"/"-inf") or a JSON number.
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a float: {s}")),
        Value::Number(n) => n.as_f64().expect("f64"),
        other => panic!("not a float: {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn assert_close(name: &str, what: &str, got: f64, want: f64) {
    let ok = got == want || (got - want).abs() <= TOL;
    assert!(ok, "{name}: {what} = {got}, sklearn says {want}");
}

fn inputs(case: &Value) -> (Vec<f64>, Vec<bool>) {
    if let Some(h) = case.get("hashed") {
        let n = h["n"].as_u64().expect("n") as usize;
        return synthetic::hashed_scores(n, h["levels"].as_u64());
    }
    let scores = nums(&case["scores"]);
    let is_id = case["is_id"]
        .as_array()
        .expect("is_id")
        .iter()
        .map(|b| b.as_i64() == Some(1))
        .collect();
    (scores, is_id)
}

#[test]
fn reference_file_has_the_promised_cases() {
    let cases = cases();
    assert!(cases.len() >= 12, "only {} cases", cases.len());
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in [
        "all_tied",
        "perfectly_separated",
        "reversed",
        "tiny_n2",
        "hashed_ties_1e5",
    ] {
        assert!(names.contains(&want), "missing case {want}");
    }
}

#[test]
fn summary_metrics_match_sklearn() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (scores, is_id) = inputs(&case);
        let sorted = SortedScores::from_labelled(&scores, &is_id).unwrap();
        assert_eq!(
            sorted.n_id() as u64,
            case["n_id"].as_u64().unwrap(),
            "{name}: n_id"
        );
        assert_eq!(
            sorted.n_ood() as u64,
            case["n_ood"].as_u64().unwrap(),
            "{name}: n_ood"
        );
        assert_close(name, "auroc", auroc(&sorted), num(&case["auroc"]));
        let ap_in = average_precision(&sorted, Positive::Id);
        assert_close(name, "aupr_in", ap_in, num(&case["aupr_in"]));
        let ap_out = average_precision(&sorted, Positive::Ood);
        assert_close(name, "aupr_out", ap_out, num(&case["aupr_out"]));
        let de = detection_error(&sorted);
        assert_close(name, "detection_error", de, num(&case["detection_error"]));
    }
}

#[test]
fn fpr_at_tpr_matches_each_convention() {
    let conventions = [
        (FprConvention::First, "fpr_first"),
        (FprConvention::Nearest, "fpr_nearest"),
        (FprConvention::OodPositive, "fpr_ood_positive"),
    ];
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (scores, is_id) = inputs(&case);
        let sorted = SortedScores::from_labelled(&scores, &is_id).unwrap();
        let levels = nums(&case["tpr_levels"]);
        for (convention, key) in conventions {
            for (t, want) in levels.iter().zip(nums(&case[key])) {
                let rule = FprRule {
                    convention,
                    tpr: *t,
                };
                let got = fpr_at_tpr(&sorted, rule).unwrap();
                assert_close(name, &format!("{key}@{t}"), got, want);
            }
        }
        let id_scores: Vec<f64> = sorted.id().to_vec();
        for (t, want) in levels.iter().zip(nums(&case["threshold_at_tpr"])) {
            let got = threshold_at_tpr(&id_scores, *t).unwrap();
            assert_eq!(got, want, "{name}: threshold_at_tpr({t})");
        }
    }
}

#[test]
fn detection_metrics_bundles_the_same_numbers() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (scores, is_id) = inputs(&case);
        let m = detection_metrics(&scores, &is_id, FprRule::FPR95).unwrap();
        let i95 = nums(&case["tpr_levels"])
            .iter()
            .position(|&t| t == 0.95)
            .unwrap();
        assert_close(name, "fpr95", m.fpr_at_tpr, nums(&case["fpr_first"])[i95]);
        assert_close(name, "auroc", m.auroc, num(&case["auroc"]));
        assert_close(name, "aupr_in", m.aupr_in, num(&case["aupr_in"]));
        assert_close(name, "aupr_out", m.aupr_out, num(&case["aupr_out"]));
        assert_close(
            name,
            "detection_error",
            m.detection_error,
            num(&case["detection_error"]),
        );
    }
}

#[test]
fn curves_match_sklearn_point_by_point() {
    let mut checked = 0;
    for case in cases() {
        let Some(roc) = case.get("roc") else { continue };
        let name = case["name"].as_str().unwrap();
        let (scores, is_id) = inputs(&case);
        let sorted = SortedScores::from_labelled(&scores, &is_id).unwrap();
        let points = roc_curve(&sorted);
        let (thr, fpr, tpr) = (
            nums(&roc["threshold"]),
            nums(&roc["fpr"]),
            nums(&roc["tpr"]),
        );
        assert_eq!(points.len(), thr.len(), "{name}: ROC length");
        for (k, p) in points.iter().enumerate() {
            assert_eq!(p.threshold, thr[k], "{name}: ROC threshold #{k}");
            assert_close(name, &format!("roc fpr #{k}"), p.fpr, fpr[k]);
            assert_close(name, &format!("roc tpr #{k}"), p.tpr, tpr[k]);
        }
        for (positive, key) in [(Positive::Id, "pr_in"), (Positive::Ood, "pr_out")] {
            let pr = &case[key];
            let points = pr_curve(&sorted, positive);
            let (thr, prec, rec) = (
                nums(&pr["threshold"]),
                nums(&pr["precision"]),
                nums(&pr["recall"]),
            );
            assert_eq!(points.len(), thr.len(), "{name}: {key} length");
            for (k, p) in points.iter().enumerate() {
                assert_eq!(p.threshold, thr[k], "{name}: {key} threshold #{k}");
                assert_close(name, &format!("{key} precision #{k}"), p.precision, prec[k]);
                assert_close(name, &format!("{key} recall #{k}"), p.recall, rec[k]);
            }
        }
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} cases carry curves");
}
