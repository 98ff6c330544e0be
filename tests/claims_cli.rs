//! `oodcert claims` on hand-made `metrics_all.csv` files with known answers: a fully separated
//! 5 vs 5 gives the exact p = 2/252 and a verdict in the right direction for a lower-is-better and
//! a higher-is-better metric, tied sets are undecided, 3 seeds can never be decided, and bad
//! input (missing arm, one seed, NaN or a rate outside [0, 1], unknown metric, duplicate row)
//! exits 2 with one line.

mod common;
use common::{ok, oodcert, s};
use oodcert::evidence::CsvTable;
use std::path::{Path, PathBuf};

const HEADER: &str = "arm,seed,ood,fpr95,auroc,aupr_in,aupr_out,id_accuracy,n_id,n_ood\n";

/// A metrics_all.csv: the CE start point, then `seeds` seeds of energy and greg on three sets:
/// "near" (greg worse: FPR95 0.80+ vs 0.70+), "far,x" (greg better: 0.10+ vs 0.20+; a comma in
/// the name as in class lists) and "noise" (every FPR95 0, AUROC 1: tied).
fn write_metrics(dir: &Path, seeds: usize) -> PathBuf {
    let mut t = String::from(HEADER);
    for o in ["near", "\"far,x\"", "noise"] {
        t.push_str(&format!("ce,-,{o},0.5,0.8,0.8,0.8,0.94,100,100\n"));
    }
    for (arm, near, far) in [("energy", 0.70, 0.20), ("greg", 0.80, 0.10)] {
        for sd in 0..seeds {
            let d = 0.001 * sd as f64;
            let acc = 0.92 + 0.001 * sd as f64;
            t.push_str(&format!(
                "{arm},{sd},near,{:.3},{:.3},0.5,0.5,{acc:.3},100,100\n",
                near + d,
                1.0 - near - d
            ));
            t.push_str(&format!(
                "{arm},{sd},\"far,x\",{:.3},{:.3},0.5,0.5,{acc:.3},100,100\n",
                far + d,
                1.0 - far - d
            ));
            t.push_str(&format!("{arm},{sd},noise,0,1,1,1,{acc:.3},100,100\n"));
        }
    }
    let p = dir.join("metrics_all.csv");
    std::fs::write(&p, t).unwrap();
    p
}

fn claims(metrics: &Path, extra: &[&str], out: &Path) -> std::process::Output {
    let mut a = vec![
        "claims",
        "--metrics",
        s(metrics),
        "--baseline",
        "energy",
        "--out",
        s(out),
    ];
    a.extend_from_slice(extra);
    oodcert(&a, &[])
}

fn row<'a>(t: &'a CsvTable, ood: &str, metric: &str) -> &'a Vec<String> {
    let (co, cm) = (t.col("ood").unwrap(), t.col("metric").unwrap());
    t.rows
        .iter()
        .find(|r| r[co] == ood && r[cm] == metric)
        .unwrap_or_else(|| panic!("no claim {ood} {metric}"))
}

#[test]
fn five_seeds_decide_in_the_right_direction_with_exact_p() {
    let d = tempfile::tempdir().unwrap();
    let m = write_metrics(d.path(), 5);
    let out = d.path().join("claims");
    ok(&claims(
        &m,
        &[
            "--arm",
            "greg",
            "--metric",
            "fpr95,auroc,id_accuracy",
            "--reference",
            "ce",
        ],
        &out,
    ));
    let t = CsvTable::read(&out.join("claims.csv")).unwrap();
    assert_eq!(t.rows.len(), 7, "3 sets × 2 metrics + ID accuracy");
    let c = |r: &Vec<String>, name: &str| r[t.col(name).unwrap()].clone();
    let f = |r: &Vec<String>, name: &str| c(r, name).parse::<f64>().unwrap();
    // near: greg's FPR95 is higher (worse) in every seed: contradicted, p = 2/252, diff +0.10.
    let near = row(&t, "near", "fpr95");
    assert_eq!(c(near, "verdict"), "contradicted");
    assert_eq!(
        (c(near, "p_count"), c(near, "p_total")),
        ("2".into(), "252".into())
    );
    assert_eq!(f(near, "p_exact"), 2.0 / 252.0);
    assert!((f(near, "diff") - 0.10).abs() < 1e-12);
    assert!(f(near, "diff_lo") > 0.0);
    assert_eq!(f(near, "reference"), 0.5);
    // The per-seed values are identical shifts, so the Welch interval is the point +0.10 ± 0:
    // s² = 2.5e-6 in both arms; half-width t_{0.975, 8}·√(2·2.5e-6/5) = 2.306004·0.001.
    assert!((f(near, "diff_hi") - f(near, "diff") - 2.306_004_135e-3).abs() < 1e-9);
    assert!((f(near, "welch_df") - 8.0).abs() < 1e-9);
    // Mean interval of energy on near: 0.702 ± t_{0.975,4}·√(2.5e-6/5) = 2.776445·7.0711e-4.
    assert!((f(near, "baseline_mean") - 0.702).abs() < 1e-12);
    assert!((f(near, "baseline_hi") - 0.702 - 2.776_445_105e0 * (5e-7f64).sqrt()).abs() < 1e-9);
    // far: greg lower FPR95 (better) → supported; AUROC higher (better) → supported.
    assert_eq!(c(row(&t, "far,x", "fpr95"), "verdict"), "supported");
    assert_eq!(c(row(&t, "far,x", "auroc"), "verdict"), "supported");
    assert_eq!(c(row(&t, "near", "auroc"), "verdict"), "contradicted");
    // noise: all tied → p = 1, undecided.
    let noise = row(&t, "noise", "fpr95");
    assert_eq!(
        (c(noise, "verdict"), f(noise, "p_exact")),
        ("undecided".into(), 1.0)
    );
    // ID accuracy: one claim, the same values in both arms → undecided.
    assert_eq!(
        c(row(&t, "(ID test set)", "id_accuracy"), "verdict"),
        "undecided"
    );
    let md = std::fs::read_to_string(out.join("claims.md")).unwrap();
    assert!(md.contains("Verdict rule: supported when"), "{md}");
    assert!(md.contains("0.0079 (2/252) | **contradicted**"), "{md}");
    assert!(
        md.contains("7 claims: 2 supported, 2 contradicted, 3 undecided."),
        "{md}"
    );
    assert!(md.contains("| ce (one run) |"), "{md}");
    // Deterministic: a second run writes the same bytes.
    let out2 = d.path().join("claims2");
    ok(&claims(
        &m,
        &[
            "--arm",
            "greg",
            "--metric",
            "fpr95,auroc,id_accuracy",
            "--reference",
            "ce",
        ],
        &out2,
    ));
    for f in ["claims.csv", "claims.md"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(out2.join(f)).unwrap()
        );
    }
}

#[test]
fn three_seeds_cannot_be_decided() {
    let d = tempfile::tempdir().unwrap();
    let m = write_metrics(d.path(), 3);
    let out = d.path().join("c");
    ok(&claims(&m, &["--arm", "greg"], &out));
    let t = CsvTable::read(&out.join("claims.csv")).unwrap();
    let cv = t.col("verdict").unwrap();
    assert!(t.rows.iter().all(|r| r[cv] == "undecided"));
    let near = row(&t, "near", "fpr95");
    assert_eq!(near[t.col("p_exact").unwrap()], "0.1");
    let md = std::fs::read_to_string(out.join("claims.md")).unwrap();
    assert!(md.contains("6 of them cannot reach p < 0.05"), "{md}");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let m = write_metrics(d.path(), 5);
    let one = d.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    let m1 = write_metrics(&one, 1);
    let nan = d.path().join("nan.csv");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &nan,
        text.replacen("greg,2,near,0.802", "greg,2,near,NaN", 1),
    )
    .unwrap();
    let over = d.path().join("over.csv");
    std::fs::write(
        &over,
        text.replacen("greg,2,near,0.802", "greg,2,near,1.7", 1),
    )
    .unwrap();
    let dup = d.path().join("dup.csv");
    let extra = text.lines().last().unwrap().to_string();
    std::fs::write(&dup, format!("{text}{extra}\n")).unwrap();
    let out = d.path().join("o");
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (m.clone(), vec!["--arm", "dos"], "no rows of arm 'dos'"),
        (m.clone(), vec!["--arm", "energy"], "compared with itself"),
        (
            m.clone(),
            vec!["--arm", "greg", "--metric", "fpr90"],
            "--metric fpr90: unknown",
        ),
        (
            m.clone(),
            vec!["--arm", "greg", "--reference", "greg"],
            "expected one row",
        ),
        (m1, vec!["--arm", "greg"], "has 1 seed(s)"),
        (nan, vec!["--arm", "greg"], "NaN is not a rate in [0, 1]"),
        (over, vec!["--arm", "greg"], "1.7 is not a rate in [0, 1]"),
        (dup, vec!["--arm", "greg"], "appears twice"),
        (
            d.path().join("absent.csv"),
            vec!["--arm", "greg"],
            "absent.csv",
        ),
    ];
    for (file, args, want) in cases {
        let o = claims(&file, &args, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!out.join("claims.csv").exists());
    }
}
