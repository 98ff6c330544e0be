//! The `oodcert lipschitz` contract: lipschitz.csv with the required columns and sound values,
//! summary.csv, global.json, manifest.json; bad flags are one-line errors with exit code 2.

mod lipschitz_common;
use lipschitz_common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oodcert");

#[test]
fn lipschitz_cli_writes_sound_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[16], 10, 3);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .args([
            "lipschitz",
            "--model",
            mpath.to_str().unwrap(),
            "--data",
            "digits8:test",
            "--norm",
            "l2",
            "--eps",
            "0.05",
            "--limit",
            "5",
            "--samples",
            "16",
            "--pgd-steps",
            "5",
            "--clever-batches",
            "10",
            "--clever-samples",
            "16",
            "--radius-iters",
            "6",
            "--box",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("OODCERT_NO_FETCH", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut rd = csv::Reader::from_path(out.join("lipschitz.csv")).unwrap();
    let h = rd.headers().unwrap().clone();
    for c in [
        "index",
        "label",
        "is_id",
        "score",
        "threshold",
        "grad_norm",
        "lower_sample",
        "lower_pgd",
        "clever",
        "upper_local",
        "upper_global",
        "radius_lipschitz",
        "radius_bound_prop",
    ] {
        assert!(h.iter().any(|x| x == c), "missing column {c}");
    }
    let col = |r: &csv::StringRecord, n: &str| -> f64 {
        r[h.iter().position(|x| x == n).unwrap()].parse().unwrap()
    };
    let mut n = 0;
    for r in rd.records() {
        let r = r.unwrap();
        n += 1;
        let lower = col(&r, "grad_norm")
            .max(col(&r, "lower_sample"))
            .max(col(&r, "lower_pgd"));
        assert!(lower <= col(&r, "upper_local") && lower <= col(&r, "upper_global"));
        let rl = col(&r, "radius_lipschitz");
        // Radii are searched beyond ε, up to the pixel box's ℓ2 diameter √64 = 8; the Lipschitz
        // search starts with the ε-ball's certificate, so it is never below radius_at_eps.
        let (ra, rb) = (col(&r, "radius_at_eps"), col(&r, "radius_bound_prop"));
        assert!((0.0..=0.05).contains(&ra), "{ra}");
        assert!(
            (ra..=8.0).contains(&rl) && (0.0..=8.0).contains(&rb),
            "{rl} {rb}"
        );
        assert_eq!(&r[h.iter().position(|x| x == "is_id").unwrap()], "true");
    }
    assert_eq!(n, 5);
    for f in ["summary.csv", "global.json", "manifest.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let s = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(s.contains("tightness_local_over_pgd") && s.contains("tightness_global_over_pgd"));
}

#[test]
fn lipschitz_cli_rejects_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[4], 10, 3);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let run_with = |eps: &str, model: &str, extra: &[&str]| {
        Command::new(BIN)
            .args([
                "lipschitz",
                "--model",
                model,
                "--data",
                "digits8:test",
                "--norm",
                "linf",
                "--eps",
                eps,
                "--limit",
                "2",
                "--quiet",
                "--out",
            ])
            .arg(dir.path().join("o"))
            .args(extra)
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap()
    };
    let run = |eps: &str, model: &str| run_with(eps, model, &[]);
    for (flag, value) in [
        ("--radius-max", "0"),
        ("--radius-max", "-0.5"),
        ("--radius-max", "NaN"),
        ("--radius-max", "inf"),
        ("--radius-max", "0.05"),
        ("--recurjac-max-work", "0"),
        ("--clever-batches", "2"),
        ("--pgd-restarts", "0"),
        ("--bab-budget", "0"),
        ("--bab-budget", "-1"),
        ("--bab-budget", "NaN"),
        ("--bab-max-domains", "0"),
        ("--alpha-iters", "1001"),
    ] {
        let arg = format!("{flag}={value}");
        let o = run_with("0.1", mpath.to_str().unwrap(), &[&arg]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(
            !dir.path().join("o").exists(),
            "{flag} {value} wrote output"
        );
    }
    let o = run_with(
        "0.1",
        mpath.to_str().unwrap(),
        &["--bounds", "ibp", "--alpha-iters", "10"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--alpha-iters")
            && err.contains("--bounds crown")
            && err.trim().lines().count() == 1
    );
    assert!(!dir.path().join("o").exists());
    let o = run("-1", mpath.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--eps"));
    let o = run(
        "0.1",
        dir.path().join("missing.safetensors").to_str().unwrap(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `--methods …,recurjac`: the upper_recurjac and recurjac_rule columns, PGD lower ≤ RecurJac,
/// upper_local = the minimum over the sound rules, for an MLP and a LeNet; on the LeNet with
/// `--alpha-iters 10`, RecurJac is never looser than with CROWN's boxes, ≥ 1 % tighter on most
/// images (6–13 % when written), and the manifest says so.
#[test]
fn lipschitz_cli_recurjac_column() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[16, 12], 10, 4);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let (l, _) = model(oodcert::model::Arch::Lenet, [1, 12, 12], 10, 4);
    let lpath = dir.path().join("l.safetensors");
    l.save(&lpath).unwrap();
    let run_with = |model: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        let o = Command::new(BIN)
            .args(["lipschitz", "--model", model.to_str().unwrap()])
            .args(["--data", "digits8:test", "--norm", "linf", "--eps", "0.01"])
            .args(["--limit", "4", "--pgd-steps", "5", "--box", "--quiet"])
            .args([
                "--methods",
                "pgd,local,recurjac",
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut rd = csv::Reader::from_path(out.join("lipschitz.csv")).unwrap();
        let h = rd.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        (h, rows)
    };
    let run = |model: &std::path::Path, out: &std::path::Path| run_with(model, out, &[]);
    let (h, rows) = run(&mpath, &dir.path().join("mlp"));
    let at = |n: &str| h.iter().position(|x| x == n).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let f = |n: &str| -> f64 { r[at(n)].parse().unwrap() };
        assert!(f("lower_pgd") <= f("upper_recurjac"));
        assert!(f("upper_local") <= f("upper_recurjac"));
        assert!(
            ["recurjac", "recurjac-signed-l1", "fastlip", "local-product"]
                .contains(&&r[at("recurjac_rule")])
        );
    }
    let s = std::fs::read_to_string(dir.path().join("mlp/summary.csv")).unwrap();
    assert!(s.contains("tightness_recurjac_over_pgd") && s.contains("seconds_per_sample_recurjac"));
    let (h, rows) = run(&lpath, &dir.path().join("lenet"));
    let at = |n: &str| h.iter().position(|x| x == n).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let f = |n: &str| -> f64 { r[at(n)].parse().unwrap() };
        assert!(f("lower_pgd") <= f("upper_recurjac"));
        assert!(f("upper_local") <= f("upper_recurjac"));
    }
    let man = std::fs::read_to_string(dir.path().join("lenet/manifest.json")).unwrap();
    assert!(man.contains("max-pool, residual") && man.contains("recurjac_max_work"));
    // α-CROWN's boxes lie inside CROWN's: RecurJac on them stays above PGD and is never looser.
    let (ha, alpha) = run_with(
        &lpath,
        &dir.path().join("lenet-a"),
        &["--alpha-iters", "10"],
    );
    assert_eq!(ha, h);
    let mut tighter = 0;
    for (a, c) in alpha.iter().zip(&rows) {
        let f = |r: &csv::StringRecord, n: &str| -> f64 { r[at(n)].parse().unwrap() };
        assert_eq!(f(a, "lower_pgd"), f(c, "lower_pgd"));
        assert!(f(a, "lower_pgd") <= f(a, "upper_recurjac"));
        assert!(f(a, "upper_recurjac") <= f(c, "upper_recurjac"));
        tighter += usize::from(f(a, "upper_recurjac") < 0.99 * f(c, "upper_recurjac"));
    }
    assert!(
        tighter >= 3,
        "α-CROWN tightened RecurJac on {tighter} of 4 images"
    );
    let man = std::fs::read_to_string(dir.path().join("lenet-a/manifest.json")).unwrap();
    assert!(man.contains("\"alpha_iters\": 10"), "{man}");
}

/// `--methods …,bab --bab-max-domains N`: the upper_bab, bab_lower and bab_domains columns;
/// PGD lower ≤ BaB ≤ RecurJac (the root is RecurJac on the same boxes), PGD lower ≤ upper_local
/// ≤ both (it is the minimum of every requested bound), the domain budget respected; and the same run twice gives the same BaB columns.
#[test]
fn lipschitz_cli_bab_column() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[16, 12], 10, 4);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let run = |out: &std::path::Path| {
        let o = Command::new(BIN)
            .args(["lipschitz", "--model", mpath.to_str().unwrap()])
            .args(["--data", "digits8:test", "--norm", "l2", "--eps", "0.3"])
            .args(["--limit", "3", "--pgd-steps", "5", "--quiet"])
            .args([
                "--methods",
                "pgd,local,recurjac,bab",
                "--bab-max-domains",
                "40",
            ])
            .args(["--bab-budget", "600", "--out", out.to_str().unwrap()])
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut rd = csv::Reader::from_path(out.join("lipschitz.csv")).unwrap();
        let h = rd.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        (h, rows)
    };
    let (h, rows) = run(&dir.path().join("a"));
    let at = |n: &str| h.iter().position(|x| x == n).unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let f = |n: &str| -> f64 { r[at(n)].parse().unwrap() };
        assert!(f("lower_pgd") <= f("bab_lower") && f("bab_lower") <= f("upper_bab"));
        assert!(f("upper_bab") <= f("upper_recurjac") * (1.0 + 1e-12));
        // The minimum of every requested bound: the local stage's own bounds (the gradient
        // zonotope) can be below both.
        assert!(f("upper_local") <= f("upper_bab").min(f("upper_recurjac")));
        assert!(f("upper_local") >= f("lower_pgd"));
        assert!(f("bab_domains") <= 41.0);
    }
    let s = std::fs::read_to_string(dir.path().join("a/summary.csv")).unwrap();
    assert!(s.contains("tightness_bab_over_pgd") && s.contains("seconds_per_sample_bab"));
    let (_, again) = run(&dir.path().join("b"));
    for (r, q) in rows.iter().zip(&again) {
        for c in ["upper_bab", "bab_domains"] {
            assert_eq!(r[at(c)], q[at(c)]);
        }
    }
}

/// `lipschitz --shard k/N` then `merge` through the binary: the merged files equal one run's
/// (apart from summary's seconds rows), a merge of shards from two runs exits 2 with one line,
/// `--shard` out of range exits 2, and `reproduce --manifest` re-runs the shards and the merge.
#[test]
fn lipschitz_cli_shards_merge_and_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = mlp([1, 8, 8], &[12], 10, 5);
    let mpath = dir.path().join("m.safetensors");
    m.save(&mpath).unwrap();
    let oodcert = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("OODCERT_NO_FETCH", "1")
            .output()
            .unwrap()
    };
    let lip = |out: &str, extra: &[&str]| {
        let mut a = vec!["lipschitz", "--model", mpath.to_str().unwrap()];
        a.extend(["--data", "digits8:test", "--norm", "linf", "--eps", "0.01"]);
        a.extend(["--limit", "5", "--samples", "8", "--pgd-steps", "3"]);
        a.extend(["--clever-batches", "4", "--clever-samples", "4", "--quiet"]);
        a.extend(["--out", out]);
        a.extend(extra);
        oodcert(&a)
    };
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(lip("one", &[]));
    ok(lip("s0", &["--shard", "0/2"]));
    ok(lip("s1", &["--shard", "1/2"]));
    ok(oodcert(&["merge", "--out", "all", "s1", "s0"]));
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("one/lipschitz.csv"), read("all/lipschitz.csv"));
    let untimed = |p: &str| {
        read(p)
            .lines()
            .filter(|l| !l.starts_with("seconds_"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(untimed("one/summary.csv"), untimed("all/summary.csv"));
    ok(lip("t1", &["--shard", "1/2", "--seed", "1"]));
    let o = oodcert(&["merge", "--out", "bad", "s0", "t1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.path().join("bad").exists());
    let o = lip("s2", &["--shard", "2/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.path().join("s2").exists());
    // An --out holding another command's run is refused before anything is written.
    let before = read("s0/lipschitz.csv");
    let o = oodcert(&[
        "certify",
        "--model",
        mpath.to_str().unwrap(),
        "--data",
        "digits8:test",
        "--sigma",
        "0.25",
        "--out",
        "s0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds the output of `oodcert lipschitz`"),
        "{err}"
    );
    assert_eq!(read("s0/lipschitz.csv"), before);
    assert!(!dir.path().join("s0/certify.csv").exists());
    std::fs::create_dir(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c/certify.csv"), "idx\n").unwrap();
    let o = lip("c", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the output of `oodcert certify`"));
    assert!(!dir.path().join("c/lipschitz.csv").exists());
    // A folder known only by its provenance record (here a bare one, as an older version might
    // have written it): lipschitz and merge refuse it; merging again into the merge's own
    // folder is fine.
    std::fs::create_dir(dir.path().join("ev")).unwrap();
    std::fs::write(
        dir.path().join("ev/manifest.json"),
        r#"{"command": "eval"}"#,
    )
    .unwrap();
    let o = lip("ev", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the output of `oodcert eval`"));
    let o = oodcert(&["merge", "--out", "ev", "s0", "s1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the output of `oodcert eval`"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("ev")).unwrap().count(),
        1,
        "nothing written"
    );
    // A merge into one of its shards, and an --out that is a file (refused before any work).
    let before = read("s0/lipschitz.csv");
    let o = oodcert(&["merge", "--out", "s0", "s0", "s1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the shard s0"));
    assert_eq!(read("s0/lipschitz.csv"), before);
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    let o = lip("afile", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out afile is a file, not a folder"));
    ok(oodcert(&["merge", "--out", "all", "s0", "s1"]));
    assert_eq!(read("one/lipschitz.csv"), read("all/lipschitz.csv"));
    // A shard edited after its run: refused by the SHA-256 its manifest records.
    std::fs::create_dir(dir.path().join("e1")).unwrap();
    for f in [
        "lipschitz.csv",
        "global.json",
        "summary.csv",
        "manifest.json",
    ] {
        std::fs::copy(dir.path().join("s1").join(f), dir.path().join("e1").join(f)).unwrap();
    }
    let csv = read("e1/lipschitz.csv");
    std::fs::write(
        dir.path().join("e1/lipschitz.csv"),
        csv.replacen(",linf,", ",linf, ", 1),
    )
    .unwrap();
    let o = oodcert(&["merge", "--out", "edited", "s0", "e1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lipschitz.csv is not the file its run wrote"),
        "{err}"
    );
    assert!(!dir.path().join("edited").exists());
    ok(oodcert(&[
        "reproduce",
        "--manifest",
        "all/manifest.json",
        "--out",
        "again",
    ]));
    assert!(read("again/reproduce_diff.csv").lines().count() >= 10);
}
