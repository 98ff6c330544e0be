//! `oodcert claims --paired-baseline A --paired-arm B` on hand-made certify and lipschitz runs with
//! known answers: 10 ID images all certified larger by the arm give the exact signed-rank
//! p = 2/1024 and "supported"; wrong or abstained decisions count as radius 0; OOD images are
//! decided apart; shards are concatenated; runs on different images (or settings, or columns)
//! exit 2 with one line and write nothing.

mod common;
use common::{ok, oodcert, s};
use oodcert::evidence::CsvTable;
use std::path::{Path, PathBuf};

const CERTIFY_HEADER: &str = "idx,label,predict,radius,correct,dataset,is_id,radius_score\n";

/// One certify row: (idx, label, predict, radius, is_id, radius_score).
type Row = (u64, i64, i64, f64, bool, f64);

/// A bad-input case: baseline runs, arm runs, extra flags, the expected message.
type Case<'a> = (Vec<&'a Path>, Vec<&'a Path>, Vec<&'a str>, &'a str);

/// A certify run folder with `rows` (datasets mnist:test#0-5 for ID, #6-9 for OOD) and a manifest
/// whose config holds σ = `sigma`.
fn certify_run(dir: &Path, name: &str, rows: &[Row], sigma: f64) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut t = String::from(CERTIFY_HEADER);
    for &(idx, label, predict, radius, is_id, rs) in rows {
        let ds = if is_id {
            "mnist:test#0-5"
        } else {
            "mnist:test#6-9"
        };
        let correct = u8::from(predict == i64::from(is_id));
        t.push_str(&format!(
            "{idx},{label},{predict},{radius},{correct},{ds},{},{rs}\n",
            u8::from(is_id)
        ));
    }
    std::fs::write(d.join("certify.csv"), t).unwrap();
    std::fs::write(
        d.join("manifest.json"),
        format!(r#"{{"config": {{"sigma": {sigma}, "n0": 100, "n": 1000, "alpha": 0.001}}}}"#),
    )
    .unwrap();
    d
}

/// The baseline and arm rows: 10 ID images (the arm's radius larger by 0.01·k on image k), image
/// 10 abstained (predict −1) by the baseline; 6 OOD images, the arm smaller on 4, equal on 2
/// (both wrong: radius 0).
fn rows() -> (Vec<Row>, Vec<Row>) {
    let (mut b, mut a) = (Vec::new(), Vec::new());
    for k in 1..=10u64 {
        let rb = 0.1 * k as f64;
        let predict_b = if k == 10 { -1 } else { 1 };
        b.push((100 + k, (k % 6) as i64, predict_b, rb, true, rb / 2.0));
        a.push((
            100 + k,
            (k % 6) as i64,
            1,
            rb + 0.01 * k as f64,
            true,
            rb / 2.0,
        ));
    }
    for k in 1..=6u64 {
        let (pb, pa) = if k <= 4 { (0, 0) } else { (1, 1) };
        b.push((7000 + k, 7, pb, 0.5, false, -1.0));
        a.push((7000 + k, 7, pa, 0.5 - 0.1 * k as f64 / 10.0, false, -1.0));
    }
    (b, a)
}

fn paired(base: &[&Path], arm: &[&Path], extra: &[&str], out: &Path) -> std::process::Output {
    let mut a = vec!["claims", "--baseline", "energy", "--arm", "greg"];
    for b in base {
        a.extend(["--paired-baseline", s(b)]);
    }
    for r in arm {
        a.extend(["--paired-arm", s(r)]);
    }
    a.extend(["--out", s(out)]);
    a.extend_from_slice(extra);
    oodcert(&a, &[])
}

fn claim<'a>(t: &'a CsvTable, set: &str) -> &'a Vec<String> {
    let c = t.col("set").unwrap();
    t.rows.iter().find(|r| r[c] == set).unwrap()
}

#[test]
fn certify_runs_decide_id_and_ood_apart() {
    let d = tempfile::tempdir().unwrap();
    let (rb, ra) = rows();
    let b = certify_run(d.path(), "energy", &rb, 0.25);
    let a = certify_run(d.path(), "greg", &ra, 0.25);
    let out = d.path().join("out");
    ok(&paired(&[&b], &[&a], &[], &out));
    let t = CsvTable::read(&out.join("paired_claims.csv")).unwrap();
    let f = |r: &Vec<String>, c: &str| r[t.col(c).unwrap()].parse::<f64>().unwrap();
    let c = |r: &Vec<String>, c: &str| r[t.col(c).unwrap()].clone();
    let id = claim(&t, "ID");
    // All 10 differences positive (image 10: abstained baseline → 0, arm 1.1): p = 2/1024.
    assert_eq!(f(id, "n"), 10.0);
    assert_eq!(f(id, "signed_rank_p"), 2.0 / 1024.0);
    assert_eq!(f(id, "sign_test_p"), 2.0 / 1024.0);
    assert_eq!((f(id, "larger"), f(id, "smaller")), (10.0, 0.0));
    assert_eq!(c(id, "verdict"), "supported");
    assert_eq!(f(id, "baseline_certified"), 9.0);
    // Differences 0.01·k for k < 10 and 1.1 for image 10: sorted 0.01..0.09, 1.1; median
    // (0.05 + 0.06)/2; sign-test interval [d₍₂₎, d₍₉₎] = [0.02, 0.09].
    assert!((f(id, "diff_median") - 0.055).abs() < 1e-12);
    assert!((f(id, "diff_median_lo") - 0.02).abs() < 1e-12);
    assert!((f(id, "diff_median_hi") - 0.09).abs() < 1e-12);
    // Baseline radii 0.1..0.9 and 0: median (0.4 + 0.5)/2.
    assert!((f(id, "baseline_median") - 0.45).abs() < 1e-12);
    // OOD: images 1–4 correct (OOD = 0) for both, arm smaller by 0.01·k; 5–6 wrong in both (0, 0).
    let ood = claim(&t, "OOD");
    assert_eq!(
        (f(ood, "larger"), f(ood, "smaller"), f(ood, "equal")),
        (0.0, 4.0, 2.0)
    );
    // 4 nonzero, all negative: p = 2/16 ≥ 0.05; the median interval of n = 6 is the range
    // [d₍₁₎, d₍₆₎] = [−0.04, 0], which touches 0: undecided either way.
    assert_eq!(f(ood, "signed_rank_p"), 2.0 / 16.0);
    assert_eq!(c(ood, "verdict"), "undecided");
    assert_eq!(f(ood, "diff_median_hi"), 0.0);
    assert!((f(ood, "diff_median_lo") + 0.04).abs() < 1e-12);
    // Curves: at r = 0 the certified shares; the per-image file pairs every image.
    let cv = CsvTable::read(&out.join("paired_curves.csv")).unwrap();
    let first_id = &cv.rows[0];
    assert_eq!(first_id[0], "ID");
    assert_eq!(
        (
            first_id[2].parse::<f64>().unwrap(),
            first_id[3].parse::<f64>().unwrap()
        ),
        (0.9, 1.0)
    );
    let pi = CsvTable::read(&out.join("paired.csv")).unwrap();
    assert_eq!(pi.rows.len(), 16);
    let md = std::fs::read_to_string(out.join("paired.md")).unwrap();
    assert!(
        md.contains("Verdict rule: per image d = arm radius"),
        "{md}"
    );
    assert!(md.contains("**supported**"), "{md}");
    // The smoothed-score radius: identical on ID (p = 1, undecided), −1 = not certified on OOD.
    let out2 = d.path().join("out2");
    ok(&paired(&[&b], &[&a], &["--radius", "radius_score"], &out2));
    let t2 = CsvTable::read(&out2.join("paired_claims.csv")).unwrap();
    let id2 = claim(&t2, "ID");
    assert_eq!(id2[t2.col("signed_rank_p").unwrap()], "1");
    assert_eq!(id2[t2.col("verdict").unwrap()], "undecided");
    let ood2 = claim(&t2, "OOD");
    assert_eq!(ood2[t2.col("arm_certified").unwrap()], "0");
    // Shards: the same images split over two folders per model give the same claims.
    let (b1, b2) = rb.split_at(7);
    let (a1, a2) = ra.split_at(5);
    let sb = [
        certify_run(d.path(), "eb1", b1, 0.25),
        certify_run(d.path(), "eb2", b2, 0.25),
    ];
    let sa = [
        certify_run(d.path(), "ea1", a1, 0.25),
        certify_run(d.path(), "ea2", a2, 0.25),
    ];
    let out3 = d.path().join("out3");
    ok(&paired(&[&sb[0], &sb[1]], &[&sa[0], &sa[1]], &[], &out3));
    assert_eq!(
        std::fs::read(out.join("paired_claims.csv")).unwrap(),
        std::fs::read(out3.join("paired_claims.csv")).unwrap()
    );
}

/// A lipschitz run folder: `rows` = (index, label, score, radius_bound_prop, f32_undecided), one
/// set (`data`, `is_id`), threshold −25.
fn lipschitz_run(
    dir: &Path,
    name: &str,
    data: &str,
    is_id: bool,
    rows: &[(u64, i64, f64, f64, bool)],
) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut t = String::from(
        "index,label,is_id,score,threshold,radius_at_eps,radius_lipschitz,radius_bound_prop,f32_undecided\n",
    );
    for &(i, l, sc, r, u) in rows {
        t.push_str(&format!("{i},{l},{is_id},{sc},-25,0.1,0.1,{r},{u}\n"));
    }
    std::fs::write(d.join("lipschitz.csv"), t).unwrap();
    std::fs::write(
        d.join("manifest.json"),
        format!(r#"{{"config": {{"data": "{data}", "norm": "l2", "eps": 0.1, "box": false}}}}"#),
    )
    .unwrap();
    d
}

#[test]
fn lipschitz_runs_count_wrong_and_undecided_decisions_as_zero() {
    let d = tempfile::tempdir().unwrap();
    // ID images: score ≤ −25 decides ID. Image 3: the arm decides OOD (score −20): radius 0.
    // Image 4: the baseline is float32-undecided: radius 0.
    let bid = lipschitz_run(
        d.path(),
        "b-id",
        "mnist:test#0-5",
        true,
        &[
            (1, 0, -30.0, 0.2, false),
            (3, 1, -30.0, 0.3, false),
            (4, 2, -30.0, 0.4, true),
        ],
    );
    let aid = lipschitz_run(
        d.path(),
        "a-id",
        "mnist:test#0-5",
        true,
        &[
            (1, 0, -30.0, 0.25, false),
            (3, 1, -20.0, 0.3, false),
            (4, 2, -30.0, 0.1, false),
        ],
    );
    let bood = lipschitz_run(
        d.path(),
        "b-ood",
        "mnist:test#6-9",
        false,
        &[(2, 6, -20.0, 0.2, false)],
    );
    let aood = lipschitz_run(
        d.path(),
        "a-ood",
        "mnist:test#6-9",
        false,
        &[(2, 6, -20.0, 0.5, false)],
    );
    let out = d.path().join("out");
    ok(&paired(&[&bid, &bood], &[&aid, &aood], &[], &out));
    let pi = CsvTable::read(&out.join("paired.csv")).unwrap();
    let col = |n: &str| pi.col(n).unwrap();
    let diffs: Vec<(String, String)> = pi
        .rows
        .iter()
        .map(|r| (r[col("index")].clone(), r[col("diff")].clone()))
        .collect();
    assert_eq!(
        diffs,
        vec![
            ("1".into(), "0.04999999999999999".into()),
            ("3".into(), "-0.3".into()),
            ("4".into(), "0.1".into()),
            ("2".into(), "0.3".into()),
        ]
    );
    // The ID run alone against both arm runs: the arm has an image the baseline lacks.
    let o = paired(&[&bid], &[&aid, &aood], &[], &d.path().join("o2"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not on the same images"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let (rb, ra) = rows();
    let b = certify_run(d.path(), "energy", &rb, 0.25);
    let a = certify_run(d.path(), "greg", &ra, 0.25);
    // Another image (idx 111, same label and place in the sorted list) in place of idx 110;
    // another label for idx 101; another σ; a duplicate image.
    let mut moved = ra.clone();
    moved[9].0 = 111;
    let other = certify_run(d.path(), "moved", &moved, 0.25);
    let sigma = certify_run(d.path(), "sigma", &ra, 0.5);
    let mut relabel = ra.clone();
    relabel[0].1 = 5;
    let relabelled = certify_run(d.path(), "relabel", &relabel, 0.25);
    let lip = lipschitz_run(
        d.path(),
        "lip",
        "mnist:test#0-5",
        true,
        &[(101, 1, -30.0, 0.2, false)],
    );
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = d.path().join("o");
    let cases: Vec<Case> = vec![
        (vec![&b], vec![&other], vec![], "not on the same images"),
        (
            vec![&b],
            vec![&relabelled],
            vec![],
            "not on the same images",
        ),
        (
            vec![&b],
            vec![&sigma],
            vec![],
            "differ in their settings: sigma 0.25 vs 0.5",
        ),
        (vec![&b, &b], vec![&a, &a], vec![], "appears twice"),
        (vec![&b], vec![&lip], vec![], "different kinds"),
        (
            vec![&b],
            vec![&a],
            vec!["--radius", "radius_bound_prop"],
            "not a radius column",
        ),
        (
            vec![&b],
            vec![&empty],
            vec![],
            "neither certify.csv nor lipschitz.csv",
        ),
        (
            vec![&b],
            vec![&a],
            vec!["--radius-step", "0"],
            "--radius-step",
        ),
        (vec![&b], vec![&a], vec!["--arm", "dos"], "takes one arm"),
    ];
    for (base, arm, extra, want) in cases {
        let o = paired(&base, &arm, &extra, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{want}: {err}");
        assert!(err.contains(want), "{want}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!out.join("paired_claims.csv").exists());
    }
    // --metrics and --paired-* together: a usage error (clap, exit 2).
    let o = oodcert(
        &[
            "claims",
            "--metrics",
            "x.csv",
            "--baseline",
            "energy",
            "--arm",
            "greg",
            "--paired-baseline",
            s(&b),
            "--paired-arm",
            s(&a),
            "--out",
            s(&out),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}
