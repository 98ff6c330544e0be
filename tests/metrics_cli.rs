//! `oodcert metrics` end to end: output format, values against a sklearn reference case, and
//! exit code 2 with exactly one stderr line for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn oodcert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oodcert"))
        .args(args)
        .output()
        .expect("run oodcert")
}

/// A scratch CSV in a fresh temp dir (kept alive by the returned guard).
fn csv_file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.csv");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

fn run_metrics(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["metrics", "--scores", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    oodcert(&args)
}

/// Parses stdout as `metric,value` rows, checking the header and the row order.
fn rows(out: &Output) -> Vec<(String, f64)> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("metric,value"));
    lines
        .map(|l| {
            let (k, v) = l.split_once(',').expect("two columns");
            (
                k.to_string(),
                v.parse::<f64>().expect("value parses as f64"),
            )
        })
        .collect()
}

fn reference_case(name: &str) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/metrics/cases.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn prints_metric_value_rows_matching_sklearn() {
    let case = reference_case("heavy_ties_integers");
    // Extra column first, score/is_id in non-default order, scores at full precision.
    let mut csv = String::from("note,is_id,score\n");
    let scores = case["scores"].as_array().unwrap();
    for (s, b) in scores.iter().zip(case["is_id"].as_array().unwrap()) {
        csv.push_str(&format!("x,{},{}\n", b, s.as_str().unwrap()));
    }
    let (_dir, path) = csv_file(&csv);
    let out = run_metrics(&path, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rows(&out);
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["fpr95", "auroc", "aupr_in", "aupr_out", "detection_error"]
    );
    let i95 = case["tpr_levels"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t == "0.94999999999999996")
        .unwrap();
    let want = [
        num(&case["fpr_first"][i95]),
        num(&case["auroc"]),
        num(&case["aupr_in"]),
        num(&case["aupr_out"]),
        num(&case["detection_error"]),
    ];
    for ((k, v), w) in got.iter().zip(want) {
        assert!((v - w).abs() <= 1e-9, "{k}: {v} vs sklearn {w}");
    }
}

#[test]
fn conventions_and_tpr_level_are_honoured() {
    let case = reference_case("recall_steps_n20");
    let mut csv = String::from("score,is_id\n");
    for (s, b) in case["scores"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["is_id"].as_array().unwrap())
    {
        csv.push_str(&format!("{},{}\n", s.as_str().unwrap(), b));
    }
    let (_dir, path) = csv_file(&csv);
    let levels: Vec<String> = case["tpr_levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for (flag, key) in [
        ("first", "fpr_first"),
        ("nearest", "fpr_nearest"),
        ("ood-positive", "fpr_ood_positive"),
    ] {
        for (k, (tpr, label)) in [("0.95", "fpr95"), ("0.8", "fpr80"), ("0.65", "fpr65")]
            .iter()
            .enumerate()
        {
            let out = run_metrics(&path, &["--convention", flag, "--tpr", tpr]);
            assert_eq!(out.status.code(), Some(0));
            let got = rows(&out);
            assert_eq!(got[0].0, *label);
            let t: f64 = tpr.parse().unwrap();
            let i = levels
                .iter()
                .position(|l| l.parse::<f64>().unwrap() == t)
                .unwrap();
            let want = num(&case[key][i]);
            assert!(
                (got[0].1 - want).abs() <= 1e-9,
                "{flag} at {tpr} (#{k}): {} vs {want}",
                got[0].1
            );
        }
    }
}

#[test]
fn values_round_trip_at_full_precision() {
    // AUROC = 1/3 exactly as f64 division: printed digits must parse back to the same bits.
    let (_dir, path) = csv_file("score,is_id\n1,0\n2,1\n3,1\n0,1\n");
    let out = run_metrics(&path, &[]);
    let got = rows(&out);
    assert_eq!(got[1], ("auroc".to_string(), 1.0 / 3.0));
}

/// Runs a bad input and checks: exit 2, nothing on stdout, one stderr line containing `needle`.
fn assert_rejected(out: Output, needle: &str) {
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout not empty");
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let missing = std::env::temp_dir().join("oodcert-metrics-no-such-file.csv");
    assert_rejected(
        run_metrics(&missing, &[]),
        "oodcert-metrics-no-such-file.csv",
    );
    let bad: [(&str, &str); 9] = [
        ("x,is_id\n1,0\n", "missing column `score`"),
        ("score,label\n1,0\n", "missing column `is_id`"),
        (
            "score,is_id\n1,1\nabc,0\n",
            "line 3: score `abc` is not a number",
        ),
        ("score,is_id\n1,1\n2,2\n", "line 3: is_id `2` must be 1"),
        ("score,is_id\n1,1\nNaN,0\n", "line 3: score is NaN"),
        ("score,is_id\n1,1\ninf,0\n", "line 3: score is inf"),
        ("score,is_id\n1,1\n2,1\n", "only ID"),
        ("score,is_id\n1,0\n", "only OOD"),
        ("score,is_id\n1,1\n2\n", "scores.csv"),
    ];
    for (content, needle) in bad {
        let (_dir, path) = csv_file(content);
        assert_rejected(run_metrics(&path, &[]), needle);
    }
    let (_dir, path) = csv_file("");
    assert_rejected(run_metrics(&path, &[]), "missing column `score`");
    let (_dir, path) = csv_file("score,is_id\n1,1\n2,0\n");
    assert_rejected(run_metrics(&path, &["--tpr", "1.5"]), "--tpr 1.5");
    assert_rejected(run_metrics(&path, &["--tpr", "0"]), "--tpr 0");
}

#[test]
fn unknown_convention_is_a_usage_error() {
    let (_dir, path) = csv_file("score,is_id\n1,1\n2,0\n");
    let out = run_metrics(&path, &["--convention", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
