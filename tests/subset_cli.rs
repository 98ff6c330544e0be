//! `--limit K` chooses a seeded stratified subset (`--subset stratified`, the default) or the first
//! K images (`--subset first`, the rule of older runs), end to end on a class-sorted toy set:
//! per-class shares, original indices in scores.csv / lipschitz.csv / verify.csv / certify.csv,
//! the subset recorded in the manifests, certify shards partitioning exactly the subset, and bad
//! values as clean errors.

mod common;
use common::{lcg, ok, oodcert_in, s, save_mlp, write_idx};
use oodcert::data::subset::{indices_sha256, stratified_indices};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PER_CLASS: usize = 10;
const CLASSES: usize = 3;

/// A class-sorted labelled set like animal-mnist:test: 10 images of class 0, then 10 of class 1,
/// then 10 of class 2 (8×8, pseudo-random pixels). Returns its `path:` spec and its labels.
fn sorted_set(dir: &Path) -> (String, Vec<i64>) {
    let n = PER_CLASS * CLASSES;
    let mut state = 11u64;
    let pixels: Vec<u8> = (0..n * 64).map(|_| (lcg(&mut state) >> 56) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i / PER_CLASS) as u8).collect();
    let p = write_idx(dir, "sorted", [n, 8, 8], &pixels, Some(&labels));
    (
        format!("path:{}", p.display()),
        labels.iter().map(|&l| l as i64).collect(),
    )
}

/// The column `col` of every row of `csv_path` whose `key` column equals `value` (all rows when
/// `key` is empty).
fn column(csv_path: &Path, col: &str, key: &str, value: &str) -> Vec<String> {
    let mut rd = csv::Reader::from_path(csv_path).unwrap();
    let h = rd.headers().unwrap().clone();
    let c = h.iter().position(|x| x == col).unwrap();
    let k = h.iter().position(|x| x == key);
    rd.records()
        .map(|r| r.unwrap())
        .filter(|r| k.is_none_or(|k| &r[k] == value))
        .map(|r| r[c].to_string())
        .collect()
}

fn numbers(v: &[String]) -> Vec<usize> {
    v.iter().map(|x| x.parse().unwrap()).collect()
}

fn per_class(labels: &[i64], idx: &[usize]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for &i in idx {
        *m.entry(labels[i]).or_insert(0) += 1;
    }
    m
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn eval_limit_is_stratified_keeps_original_indices_and_first_k_is_the_old_rule() {
    let t = tempfile::tempdir().unwrap();
    let (data, labels) = sorted_set(t.path());
    let model = save_mlp(t.path(), [1, 8, 8], &[16], 3);
    let eval = |out: &str, extra: &[&str]| -> PathBuf {
        let o = t.path().join(out);
        let mut args = vec![
            "eval",
            "--model",
            s(&model),
            "--id",
            &data,
            "--ood",
            "noise-uniform:test?n=8",
            "--quiet",
            "--out",
            s(&o),
        ];
        args.extend_from_slice(extra);
        ok(&oodcert_in(&args, t.path()));
        o.join("scores.csv")
    };
    let full = eval("full", &[]);
    let full_scores: Vec<f64> = column(&full, "score", "is_id", "1")
        .iter()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(
        numbers(&column(&full, "index", "is_id", "1")),
        (0..30).collect::<Vec<_>>()
    );
    let check = |csv: &Path, want: &[usize]| {
        let idx = numbers(&column(csv, "index", "is_id", "1"));
        assert_eq!(idx, want);
        let lab = column(csv, "label", "is_id", "1");
        let sc = column(csv, "score", "is_id", "1");
        for (k, &i) in idx.iter().enumerate() {
            // Each row traces back to its image: the label and score of original index i.
            assert_eq!(lab[k], labels[i].to_string());
            let v: f64 = sc[k].parse().unwrap();
            assert!(
                (v - full_scores[i]).abs() <= 1e-5 * (1.0 + v.abs()),
                "{v} vs {}",
                full_scores[i]
            );
        }
    };
    let strat = eval("strat", &["--limit", "6"]);
    let want = stratified_indices(&labels, 6, 0);
    check(&strat, &want);
    assert_eq!(
        per_class(&labels, &want),
        BTreeMap::from([(0, 2), (1, 2), (2, 2)])
    );
    // Unlabelled OOD rows: a seeded uniform sample of 6 of the 8, original indices ascending.
    let ood = numbers(&column(&strat, "index", "is_id", "0"));
    assert_eq!(ood, stratified_indices(&[-1; 8], 6, 0));
    let m = manifest(&strat.with_file_name(""));
    assert_eq!(m["config"]["subset"]["rule"], "stratified");
    assert_eq!(m["config"]["subsets"][0]["n"], 6);
    assert_eq!(
        m["config"]["subsets"][0]["indices_sha256"],
        indices_sha256(&want)
    );
    // Deterministic under the seed; another seed another subset, same shares.
    check(&eval("strat2", &["--limit", "6"]), &want);
    let other = stratified_indices(&labels, 6, 5);
    assert_ne!(other, want);
    check(
        &eval("seed5", &["--limit", "6", "--subset-seed", "5"]),
        &other,
    );
    // The old rule: the first 6 images, one class only.
    let first = eval("first", &["--limit", "6", "--subset", "first"]);
    check(&first, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(
        numbers(&column(&first, "index", "is_id", "0")),
        [0, 1, 2, 3, 4, 5]
    );
}

#[test]
fn lipschitz_and_verify_rows_carry_original_indices() {
    let t = tempfile::tempdir().unwrap();
    let (data, labels) = sorted_set(t.path());
    let model = save_mlp(t.path(), [1, 8, 8], &[16], 3);
    let out = t.path().join("lip");
    ok(&oodcert_in(
        &[
            "lipschitz",
            "--model",
            s(&model),
            "--data",
            &data,
            "--id-val",
            &data,
            "--id-val-limit",
            "9",
            "--norm",
            "l2",
            "--eps",
            "0.3",
            "--limit",
            "6",
            "--samples",
            "8",
            "--pgd-steps",
            "3",
            "--clever-batches",
            "5",
            "--clever-samples",
            "8",
            "--radius-iters",
            "4",
            "--quiet",
            "--out",
            s(&out),
        ],
        t.path(),
    ));
    let csv = out.join("lipschitz.csv");
    let idx = numbers(&column(&csv, "index", "", ""));
    let want = stratified_indices(&labels, 6, 0);
    assert_eq!(idx, want);
    let lab = column(&csv, "label", "", "");
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(lab[k], labels[i].to_string());
    }
    let m = manifest(&out);
    assert_eq!(
        m["config"]["subsets"][0]["indices_sha256"],
        indices_sha256(&want)
    );
    assert_eq!(
        m["config"]["subsets"][1]["indices_sha256"],
        indices_sha256(&stratified_indices(&labels, 9, 0))
    );
    let o = oodcert_in(
        &[
            "verify",
            "--run",
            s(&out),
            "--steps",
            "3",
            "--restarts",
            "1",
        ],
        t.path(),
    );
    ok(&o);
    let vidx = numbers(&column(&out.join("verify.csv"), "index", "", ""));
    assert!(!vidx.is_empty());
    assert!(
        vidx.iter().all(|i| want.contains(i)),
        "{vidx:?} not in {want:?}"
    );
}

/// `oodcert certify` on the class-sorted set with `extra` flags into `out`.
fn certify(dir: &Path, data: &str, out: &Path, extra: &[&str]) {
    let model = dir.join("m.safetensors");
    let mut args = vec![
        "certify",
        "--model",
        s(&model),
        "--data",
        data,
        "--ood",
        "noise-uniform:test?n=8",
        "--sigma",
        "0.25",
        "--n0",
        "10",
        "--n",
        "100",
        "--alpha",
        "0.01",
        "--limit",
        "6",
        "--id-val",
        data,
        "--cal-n",
        "10",
        "--cal-limit",
        "9",
        "--batch",
        "32",
        "--no-timing",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(&oodcert_in(&args, dir));
}

#[test]
fn certify_shards_partition_exactly_the_stratified_subset() {
    let t = tempfile::tempdir().unwrap();
    let (data, labels) = sorted_set(t.path());
    save_mlp(t.path(), [1, 8, 8], &[16], 3);
    let single = t.path().join("single");
    certify(t.path(), &data, &single, &[]);
    let want = stratified_indices(&labels, 6, 0);
    let name = column(&single.join("certify.csv"), "dataset", "", "")[0].clone();
    assert_eq!(
        numbers(&column(
            &single.join("certify.csv"),
            "idx",
            "dataset",
            &name
        )),
        want
    );
    let m = manifest(&single);
    assert_eq!(m["config"]["subset"]["rule"], "stratified");
    let listed: Vec<usize> = m["datasets"][0]["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(listed, want);
    assert_eq!(m["datasets"][0]["used"], 6);
    assert_eq!(
        m["datasets"][2]["indices_sha256"],
        indices_sha256(&stratified_indices(&labels, 9, 0))
    );
    let mut dirs = vec![];
    for k in 0..4 {
        let d = t.path().join(format!("s{k}"));
        certify(t.path(), &data, &d, &["--shard", &format!("{k}/4")]);
        dirs.push(d);
    }
    // The shards' rows, in order, are exactly the single run's: a partition of the subset.
    let rows = |d: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(d.join("certify.csv")).unwrap();
        text.lines().skip(1).map(String::from).collect()
    };
    let joined: Vec<String> = dirs.iter().flat_map(|d| rows(d)).collect();
    assert_eq!(joined, rows(&single));
    // Merged shards equal the single run byte for byte (this needs serde_json's
    // float_roundtrip: merge re-reads the calibration floats from the shards' manifests).
    let merged = t.path().join("merged");
    let mut args = vec!["merge", "--out", s(&merged)];
    args.extend(dirs.iter().map(|d| s(d)));
    ok(&oodcert_in(&args, t.path()));
    for f in [
        "certify.csv",
        "curves.csv",
        "curves_all.csv",
        "manifest.json",
    ] {
        let read = |d: &Path| std::fs::read_to_string(d.join(f)).unwrap();
        let (m, s) = (read(&merged), read(&single));
        let first_diff = m.lines().zip(s.lines()).find(|(a, b)| a != b);
        assert!(m == s, "{f}: first differing line {first_diff:?}");
    }
    // The first-K rule: idx 0..6 and a manifest without subset fields, as before `--subset`.
    let first = t.path().join("first");
    certify(t.path(), &data, &first, &["--subset", "first"]);
    assert_eq!(
        numbers(&column(&first.join("certify.csv"), "idx", "dataset", &name)),
        [0, 1, 2, 3, 4, 5]
    );
    let text = std::fs::read_to_string(first.join("manifest.json")).unwrap();
    assert!(
        !text.contains("subset") && !text.contains("indices"),
        "{text}"
    );
}

#[test]
fn bad_subset_values_are_clean_errors_and_large_limits_clamp() {
    let t = tempfile::tempdir().unwrap();
    let (data, _) = sorted_set(t.path());
    let model = save_mlp(t.path(), [1, 8, 8], &[16], 3);
    let out = t.path().join("o");
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            s(&model),
            "--id",
            &data,
            "--ood",
            "noise-uniform:test?n=8",
            "--quiet",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        oodcert_in(&args, t.path())
    };
    let o = eval(&["--limit", "1000"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--limit 1000 exceeds the 30 images"), "{err}");
    assert_eq!(
        column(&out.join("scores.csv"), "index", "is_id", "1").len(),
        30
    );
    for bad in [
        &["--subset", "random"][..],
        &["--subset-seed", "-1"],
        &["--limit", "-3"],
        &["--subset-seed", "x"],
    ] {
        let o = eval(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(bad[0]) || err.contains(bad[1]),
            "{bad:?}: {err}"
        );
    }
}
