//! `reproduce --manifest` for certify runs, end to end on a tiny MLP and generated data: a single
//! run (bit for bit with `--no-timing`; apart from the wall-clock `time` column without it), a
//! sharded run merged (the shards are re-run from their own recorded commands, slices pinned even
//! when they came from Slurm's environment, then merged), and the failure cases.

mod common;
use common::{ok, oodcert, save_mlp};
use std::path::{Path, PathBuf};
use std::process::Output;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A random 3-class MLP on 8×8 inputs, saved under `dir`.
fn tiny_model(dir: &Path) -> PathBuf {
    save_mlp(dir, [1, 8, 8], &[16], 3)
}

/// `oodcert certify` on generated data into `out` (relative paths work from the test's cwd).
fn certify(model: &Path, out: &Path, timing: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "certify",
        "--model",
        &s(model),
        "--data",
        "noise-gauss:test?n=8",
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
        "5",
        "--id-val",
        "noise-gauss:train?n=20",
        "--cal-n",
        "20",
        "--batch",
        "32",
        "--out",
        &s(out),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    if !timing {
        a.push("--no-timing".into());
    }
    a
}

fn reproduce(manifest: &Path, out: &Path) -> Output {
    oodcert(
        &[
            "reproduce".into(),
            "--manifest".into(),
            s(manifest),
            "--out".into(),
            s(out),
        ],
        &[],
    )
}

/// `reproduce_diff.csv` as (file, identical) pairs.
fn diff_rows(out: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(out.join("reproduce_diff.csv")).unwrap();
    r.records()
        .map(|x| {
            let x = x.unwrap();
            (x[0].to_string(), x[3].to_string())
        })
        .collect()
}

const FILES: [&str; 4] = [
    "certify.csv",
    "curves.csv",
    "curves_all.csv",
    "manifest.json",
];

#[test]
fn a_certify_run_reproduces_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let run = d.path().join("run");
    ok(&oodcert(&certify(&model, &run, false), &[]));
    let prov = oodcert::evidence::Manifest::read(&run.join("provenance.json")).unwrap();
    assert_eq!(prov.command, "certify");
    assert_eq!(prov.argv[1], "certify");
    let names: Vec<&str> = prov.outputs.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(names, FILES);
    let again = d.path().join("again");
    let stdout = ok(&reproduce(&run.join("manifest.json"), &again));
    assert!(
        stdout.contains("all 4 recorded outputs reproduced bit for bit"),
        "{stdout}"
    );
    let rows = diff_rows(&again);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.1 == "yes"), "{rows:?}");
    for f in FILES {
        assert_eq!(
            std::fs::read(run.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
    // A recorded SHA-256 that the re-run cannot match: exit 1, the file named.
    let mut bad = prov.clone();
    bad.outputs[1].1 = "0".repeat(64);
    let text = serde_json::to_string_pretty(&bad).unwrap();
    std::fs::write(run.join("provenance.json"), text).unwrap();
    let o = reproduce(&run.join("manifest.json"), &d.path().join("again2"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 of 4 outputs differ") && err.contains("curves.csv"),
        "{err}"
    );
    // Without provenance.json (a run from before it was recorded): exit 2, one line.
    std::fs::remove_file(run.join("provenance.json")).unwrap();
    let o = reproduce(&run.join("manifest.json"), &d.path().join("again3"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("without provenance.json"), "{err}");
    // Into the recorded folder itself: refused.
    let o = reproduce(&again.join("provenance.json"), &again);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("recorded run's own folder"));
}

#[test]
fn a_timed_run_reproduces_apart_from_the_time_column() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let run = d.path().join("run");
    ok(&oodcert(&certify(&model, &run, true), &[]));
    let again = d.path().join("again");
    let o = reproduce(&run.join("provenance.json"), &again);
    let stdout = ok(&o);
    let rows = diff_rows(&again);
    for (f, v) in &rows {
        if f == "certify.csv" {
            // Equal bytes are possible only if every timing happened to print the same.
            assert!(v == "yes-except-time" || v == "yes", "{f}: {v}");
        } else {
            assert_eq!(v, "yes", "{f}");
        }
    }
    assert!(
        stdout.contains("all 4 recorded outputs reproduced"),
        "{stdout}"
    );
    // A certificate that differs beyond the time column is caught: alter a radius in the
    // original and record its new SHA-256, so the column-wise comparison is what decides.
    let orig = run.join("certify.csv");
    let csv = std::fs::read_to_string(&orig).unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let header: Vec<String> = lines[0].split(',').map(String::from).collect();
    let c = header.iter().position(|h| h == "radius").unwrap();
    let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
    cells[c] = "12345".into();
    lines[1] = cells.join(",");
    std::fs::write(&orig, lines.join("\n") + "\n").unwrap();
    let mut prov = oodcert::evidence::Manifest::read(&run.join("provenance.json")).unwrap();
    prov.outputs[0].1 = oodcert::evidence::sha256_file(&orig).unwrap();
    std::fs::write(
        run.join("provenance.json"),
        serde_json::to_string_pretty(&prov).unwrap(),
    )
    .unwrap();
    let again2 = d.path().join("again2");
    let o = reproduce(&run.join("provenance.json"), &again2);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("certify.csv"));
    let rows = diff_rows(&again2);
    assert_eq!(rows[0], ("certify.csv".to_string(), "no".to_string()));
}

#[test]
fn a_merged_sharded_run_reproduces_by_rerunning_its_shards() {
    merged_sharded_run_reproduces(&[]);
    merged_sharded_run_reproduces(&["--noise-layout", "v1"]);
}

/// One layout (certify's extra flags `extra`).
fn merged_sharded_run_reproduces(extra: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let certify = |m: &Path, o: &Path, t: bool| {
        let mut a = certify(m, o, t);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let shard = |k: usize| d.path().join(format!("s{k}"));
    // Shard 0 explicit, shard 1 from a Kubernetes index, shard 2 from a Slurm array.
    let mut a0 = certify(&model, &shard(0), false);
    a0.extend(["--shard".into(), "0/3".into()]);
    ok(&oodcert(&a0, &[]));
    let mut a1 = certify(&model, &shard(1), false);
    a1.extend(["--shard".into(), "env/3".into()]);
    ok(&oodcert(&a1, &[("JOB_COMPLETION_INDEX", "1")]));
    let mut a2 = certify(&model, &shard(2), false);
    a2.extend(["--shard".into(), "env".into()]);
    ok(&oodcert(
        &a2,
        &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    ));
    let merged = d.path().join("merged");
    ok(&oodcert(
        &[
            "merge".into(),
            "--out".into(),
            s(&merged),
            s(&shard(0)),
            s(&shard(1)),
            s(&shard(2)),
        ],
        &[],
    ));
    // The merge's provenance holds each shard's.
    let prov = oodcert::evidence::Manifest::read(&merged.join("provenance.json")).unwrap();
    assert_eq!(prov.command, "merge");
    assert_eq!(prov.config["shards"].as_array().unwrap().len(), 3);
    // The merge of the shards is still byte-identical to a single run.
    let single = d.path().join("single");
    ok(&oodcert(&certify(&model, &single, false), &[]));
    for f in FILES {
        assert_eq!(
            std::fs::read(single.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f}"
        );
    }
    // Re-run without any Slurm/Kubernetes variables set: slices come from the manifests.
    let again = d.path().join("again");
    let stdout = ok(&reproduce(&merged.join("manifest.json"), &again));
    assert!(
        stdout.contains("all 16 recorded outputs reproduced bit for bit"),
        "{stdout}"
    );
    let rows = diff_rows(&again);
    let files: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(files.contains(&"certify.csv") && files.contains(&"shards/2/manifest.json"));
    assert!(rows.iter().all(|r| r.1 == "yes"), "{rows:?}");
    for f in FILES {
        assert_eq!(
            std::fs::read(merged.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
    for k in 0..3 {
        let m = oodcert::smoothing::manifest::CertifyManifest::read(
            &again.join(format!("shards/{k}/manifest.json")),
        )
        .unwrap();
        assert_eq!(m.shard.map(|s| (s.index, s.count)), Some((k as u64, 3)));
    }
}

/// Reads `path` as JSON, applies `edit`, writes it back.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Asserts exit 2 with one line on stderr containing `want`.
fn refused(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(want), "{err}");
}

#[test]
fn both_noise_layouts_reproduce_and_runs_from_before_v2_replay_as_v1() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let layout_of = |dir: &Path| {
        let m = oodcert::smoothing::manifest::CertifyManifest::read(&dir.join("manifest.json"));
        m.unwrap().noise_layout
    };
    // The default layout is v2; --noise-layout v1 gives other noise, hence another certify.csv.
    let (v1, v2) = (d.path().join("v1"), d.path().join("v2"));
    let mut a = certify(&model, &v1, false);
    a.extend(["--noise-layout".into(), "v1".into()]);
    ok(&oodcert(&a, &[]));
    ok(&oodcert(&certify(&model, &v2, false), &[]));
    use oodcert::smoothing::noise::{NOISE_LAYOUT, NOISE_LAYOUT_V2};
    assert_eq!(layout_of(&v1), NOISE_LAYOUT);
    assert_eq!(layout_of(&v2), NOISE_LAYOUT_V2);
    let csv = |dir: &Path| std::fs::read(dir.join("certify.csv")).unwrap();
    assert_ne!(csv(&v1), csv(&v2));
    for (run, name) in [(&v1, "again1"), (&v2, "again2")] {
        let again = d.path().join(name);
        let out = ok(&reproduce(&run.join("manifest.json"), &again));
        assert!(out.contains("reproduced bit for bit"), "{out}");
        assert_eq!(csv(run), csv(&again));
    }
    // A run recorded before v2 (no --noise-layout on its command line, no config.noise_layout)
    // replays as v1, bit for bit, although v2 is now the default.
    edit_json(&v1.join("provenance.json"), |p| {
        let argv = p["argv"].as_array_mut().unwrap();
        let at = argv.iter().position(|x| x == "--noise-layout").unwrap();
        argv.drain(at..at + 2);
        p["config"].as_object_mut().unwrap().remove("noise_layout");
    });
    let again = d.path().join("again-old");
    ok(&reproduce(&v1.join("manifest.json"), &again));
    assert_eq!(csv(&v1), csv(&again));
    assert_eq!(layout_of(&again), NOISE_LAYOUT);
    // A v1 record whose command line asks for v2: exit 2, naming the fix.
    edit_json(&v1.join("provenance.json"), |p| {
        let argv = p["argv"].as_array_mut().unwrap();
        argv.extend(["--noise-layout".into(), "v2".into()]);
    });
    refused(
        &reproduce(&v1.join("manifest.json"), &d.path().join("x1")),
        "--noise-layout v1",
    );
    // A layout this version does not know (manifest or provenance): exit 2, one line.
    edit_json(&v2.join("manifest.json"), |m| {
        m["noise_layout"] = "v9: some future generator".into();
    });
    refused(
        &reproduce(&v2.join("manifest.json"), &d.path().join("x2")),
        "unknown noise layout",
    );
    edit_json(&v1.join("provenance.json"), |p| {
        p["config"]["noise_layout"] = "v9".into();
    });
    refused(
        &reproduce(&v1.join("provenance.json"), &d.path().join("x3")),
        "does not know",
    );
    let mut a = certify(&model, &d.path().join("x4"), false);
    a.extend(["--noise-layout".into(), "v9".into()]);
    let o = oodcert(&a, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("v9"));
}

#[test]
fn runs_from_before_coupling_replay_with_count_against() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let manifest = |dir: &Path| std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let csv = |dir: &Path| std::fs::read(dir.join("certify.csv")).unwrap();
    // The default rule is recorded; count-against writes no field (the bytes of older runs).
    // n = 20 000 copies of 64 pixels for each of 10 samples: enough coordinates (~1.3·10⁷) for
    // some copies to fail the float32 coupling check, so the two rules' outputs differ.
    let (new, old) = (d.path().join("new"), d.path().join("old"));
    let more_copies = |mut a: Vec<String>| {
        let at = a.iter().position(|x| x == "--n").unwrap();
        a[at + 1] = "20000".into();
        a
    };
    ok(&oodcert(&more_copies(certify(&model, &new, false)), &[]));
    assert!(manifest(&new).contains("\"coupling\": \"candidates\""));
    let mut a = more_copies(certify(&model, &old, false));
    a.extend(["--coupling".into(), "count-against".into()]);
    ok(&oodcert(&a, &[]));
    assert!(!manifest(&old).contains("coupling"));
    assert_ne!(
        csv(&new),
        csv(&old),
        "the rules must give different certificates on this data, or the replay below proves nothing"
    );
    // A run recorded before --coupling (no flag, no config.coupling) replays under
    // count-against, every output bit for bit, although candidates is now the default.
    edit_json(&old.join("provenance.json"), |p| {
        let argv = p["argv"].as_array_mut().unwrap();
        let at = argv.iter().position(|x| x == "--coupling").unwrap();
        argv.drain(at..at + 2);
        p["config"].as_object_mut().unwrap().remove("coupling");
    });
    for (run, name) in [(&old, "again-old"), (&new, "again-new")] {
        let again = d.path().join(name);
        let out = ok(&reproduce(&run.join("manifest.json"), &again));
        assert!(out.contains("reproduced bit for bit"), "{out}");
        assert_eq!(csv(run), csv(&again));
        assert_eq!(manifest(run), manifest(&again));
    }
    // A record whose command line names another rule, or a rule this version does not know.
    edit_json(&old.join("provenance.json"), |p| {
        let argv = p["argv"].as_array_mut().unwrap();
        argv.extend(["--coupling".into(), "candidates".into()]);
    });
    refused(
        &reproduce(&old.join("manifest.json"), &d.path().join("x1")),
        "--coupling count-against",
    );
    edit_json(&new.join("provenance.json"), |p| {
        p["config"]["coupling"] = "guess".into();
    });
    refused(
        &reproduce(&new.join("manifest.json"), &d.path().join("x2")),
        "does not know",
    );
}
