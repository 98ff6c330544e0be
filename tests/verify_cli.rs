//! `oodcert verify` attacks real certificates and finds no violation, and catches tampered ones:
//! a lipschitz run and a certify run whose radii were inflated must fail with exit code 1.

mod common;
use common::{inflate, lcg, oodcert_in as run, save_mlp, verify_summary as summary, write_idx};
use std::path::Path;

/// `n` unlabelled 6×6 images of LCG bytes, as a `path:` spec.
fn write_images(dir: &Path, n: usize) -> String {
    let mut s = 12345u64;
    let pixels: Vec<u8> = (0..n * 36).map(|_| (lcg(&mut s) >> 56) as u8).collect();
    let p = write_idx(dir, "pts", [n, 6, 6], &pixels, None);
    format!("path:{}", p.display())
}

fn model(dir: &Path) -> String {
    let p = save_mlp(dir, [1, 6, 6], &[12, 8], 3);
    p.to_str().unwrap().to_string()
}

#[test]
fn lipschitz_certificates_survive_attack_and_inflated_ones_do_not() {
    let t = tempfile::tempdir().unwrap();
    let data = write_images(t.path(), 6);
    let m = model(t.path());
    let out = t.path().join("lip");
    let o = run(
        &[
            "lipschitz",
            "--model",
            &m,
            "--data",
            &data,
            "--id-val",
            &data,
            "--norm",
            "l2",
            "--eps",
            "0.5",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = run(
        &[
            "verify",
            "--run",
            out.to_str().unwrap(),
            "--steps",
            "20",
            "--restarts",
            "3",
        ],
        t.path(),
    );
    assert!(
        v.status.success(),
        "honest certificates flagged: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    let s = summary(&out);
    assert_eq!((s[0].as_str(), s[3].as_str()), ("lipschitz", "0"), "{s:?}");
    assert!(
        s[2].parse::<usize>().unwrap() > 0,
        "no certificate was attacked: {s:?}"
    );
    // What was attacked and how: the run's certificate file with its SHA-256, the PGD settings.
    let sha = oodcert::evidence::sha256_file(out.join("lipschitz.csv")).unwrap();
    assert_eq!(
        s[8..],
        ["lipschitz.csv", sha.as_str(), "20", "3", "0"],
        "{s:?}"
    );
    // The report shows it as a verification of the run in the folder.
    let report = |t: &Path| -> (String, String) {
        let rep = t.join("report");
        let o = run(
            &[
                "report",
                "--runs",
                out.to_str().unwrap(),
                "--out",
                rep.to_str().unwrap(),
            ],
            t,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let table = std::fs::read_to_string(rep.join("tables/verify_summary.csv")).unwrap();
        let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
        (table.lines().nth(1).unwrap().to_string(), md)
    };
    let (row, md) = report(t.path());
    let c: Vec<&str> = row.split(',').collect();
    assert_eq!((c[0], c[3]), ("lip", s[2].as_str()), "{row}");
    assert_eq!(c[4..7], ["0", "0", "true"], "{row}");
    assert_eq!(c[9..], ["20", "3", "current"], "{row}");
    assert!(
        md.contains(&format!(
            "oodcert verify attacked {} certificates inside their certified radii (1 run): 0 violated.",
            s[2]
        )),
        "{md}"
    );
    assert!(!md.contains("FAILED"), "{md}");
    // An --out that holds another run is refused (its verify files would pass for that run's).
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("certify.csv"), "idx\n").unwrap();
    let v = run(
        &[
            "verify",
            "--run",
            out.to_str().unwrap(),
            "--out",
            other.to_str().unwrap(),
        ],
        t.path(),
    );
    assert_eq!(v.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&v.stderr).contains("holds the output of `oodcert certify`"));
    assert!(!other.join("verify_summary.csv").exists());
    // A damaged certificate file is exit 2 naming the cell, never a sample read under another
    // sample's certificate (an index of NaN once attacked image 0) or a silently skipped radius.
    for (col, val) in [
        ("index", "NaN"),
        ("index", "1.5"),
        ("index", "-1"),
        ("is_id", "NaN"),
        ("score", "inf"),
        ("radius_lipschitz", "-0.5"),
    ] {
        let bad = t.path().join("bad");
        let _ = std::fs::remove_dir_all(&bad);
        std::fs::create_dir(&bad).unwrap();
        for e in std::fs::read_dir(&out).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, bad.join(p.file_name().unwrap())).unwrap();
            }
        }
        let text = std::fs::read_to_string(out.join("lipschitz.csv")).unwrap();
        let mut lines: Vec<Vec<String>> = text
            .lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect();
        let c = lines[0].iter().position(|h| h == col).unwrap();
        lines[1][c] = val.into();
        let text: Vec<String> = lines.iter().map(|l| l.join(",")).collect();
        std::fs::write(bad.join("lipschitz.csv"), text.join("\n") + "\n").unwrap();
        let v = run(
            &["verify", "--run", bad.to_str().unwrap(), "--steps", "2"],
            t.path(),
        );
        let err = String::from_utf8_lossy(&v.stderr);
        assert_eq!(v.status.code(), Some(2), "{col}={val}: {err}");
        assert!(
            err.contains("lipschitz.csv") && err.contains(&format!("row 2, column '{col}'")),
            "{col}={val}: {err}"
        );
    }

    // Claim radii 200× larger than certified: the attack must find decision changes.
    inflate(
        &out.join("lipschitz.csv"),
        &["radius_lipschitz", "radius_bound_prop"],
        200.0,
    );
    // The run changed since it was verified: the report says so and does not count it.
    let (row, md) = report(t.path());
    assert!(row.ends_with("stale"), "{row}");
    assert!(
        md.contains("No current verification. Not counted: 1 verification of a certificate file that has changed since"),
        "{md}"
    );
    let v = run(
        &[
            "verify",
            "--run",
            out.to_str().unwrap(),
            "--steps",
            "30",
            "--restarts",
            "3",
        ],
        t.path(),
    );
    assert_eq!(
        v.status.code(),
        Some(1),
        "inflated radii not caught: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    assert!(summary(&out)[3].parse::<usize>().unwrap() > 0);
    // A failed verification of the current run is named in the report's summary.
    let (row, md) = report(t.path());
    assert!(row.contains(",false,") && row.ends_with("current"), "{row}");
    assert!(md.contains("FAILED: lip ("), "{md}");
}

#[test]
fn smoothing_certificates_survive_attack_and_inflated_ones_do_not() {
    let t = tempfile::tempdir().unwrap();
    let data = write_images(t.path(), 8);
    let m = model(t.path());
    let out = t.path().join("cert");
    let o = run(
        &[
            "certify",
            "--model",
            &m,
            "--data",
            &data,
            "--id-val",
            &data,
            "--sigma",
            "0.25",
            "--n0",
            "50",
            "--n",
            "2000",
            "--alpha",
            "0.001",
            "--out",
            out.to_str().unwrap(),
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = [
        "verify",
        "--run",
        out.to_str().unwrap(),
        "--model",
        &m,
        "--steps",
        "20",
        "--restarts",
        "3",
        "--n-fresh",
        "2000",
    ];
    let v = run(&args, t.path());
    assert!(
        v.status.success(),
        "honest certificates flagged: {} {}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let s = summary(&out);
    assert_eq!(s[0], "certify");
    let checked: usize = s[2].parse().unwrap();
    assert!(checked > 0, "nothing certified to attack: {s:?}");

    inflate(&out.join("certify.csv"), &["radius", "radius_score"], 50.0);
    let v = run(&args, t.path());
    assert_eq!(
        v.status.code(),
        Some(1),
        "inflated radii not caught: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    // Without --model a certify run cannot be verified (exit 2, one line).
    let v = run(&["verify", "--run", out.to_str().unwrap()], t.path());
    assert_eq!(v.status.code(), Some(2));
}
