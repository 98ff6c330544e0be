//! Class filters in dataset specs (`NAME#CLASSES`, issue #14 item 1) from the outside: `data info`,
//! `train` (labels 0..K−1 or `+remap`, manifest record, ID/auxiliary overlap), `eval` and `certify`
//! (ID/OOD overlap), and malformed filters, each refused with exit 2 and one line.

mod common;
use common::{ok, oodcert_in, s, write_toy4};
use std::path::{Path, PathBuf};
use std::process::Output;

fn config(dir: &Path, id: &str, aux: Option<&str>) -> PathBuf {
    let (aux_line, loss) = match aux {
        Some(a) => (
            format!("aux = \"{a}\"\n"),
            "[loss]\nlambda_energy = 0.1\nm_in = -5.0\nm_out = -1.0\n",
        ),
        None => (String::new(), ""),
    };
    let text = format!(
        "seed = 1\n[data]\nid = \"{id}\"\n{aux_line}[model]\narch = \"mlp\"\nhidden = [16]\n\
         [optim]\nkind = \"sgd\"\nlr = 0.05\n[train]\nepochs = 1\nbatch_size = 16\nmax_steps = 8\n\
         log_every = 4\ncheckpoint_every = 0\n{loss}"
    );
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Asserts exit 2 with exactly one stderr line containing `needle`.
fn bad_input(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

fn info(spec: &str, dir: &Path) -> Output {
    oodcert_in(&["data", "info", spec], dir)
}

#[test]
fn data_info_selects_the_classes_and_keeps_their_labels() {
    let t = tempfile::tempdir().unwrap();
    let f = format!("path:{}", s(&write_toy4(t.path(), 40, 11)));
    let out = ok(&info(&format!("{f}#3,1"), t.path()));
    assert!(out.contains(&format!("name\t{f}#1,3\n")), "{out}");
    assert!(
        out.contains("n\t20\n") && out.contains("per_class\t1:10 3:10\n"),
        "{out}"
    );
    let kept: Vec<usize> = (0..40).filter(|i| i % 4 == 1 || i % 4 == 3).collect();
    let sha = oodcert::data::subset::indices_sha256(&kept);
    assert!(
        out.contains(&format!("filter_indices_sha256\t{sha}\n")),
        "{out}"
    );
    let out = ok(&info(&format!("{f}#1-3+remap"), t.path()));
    assert!(out.contains("per_class\t0:10 1:10 2:10\n"), "{out}");
}

#[test]
fn malformed_filters_exit_2_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let f = format!("path:{}", s(&write_toy4(t.path(), 40, 11)));
    bad_input(&info(&format!("{f}#"), t.path()), "no classes after #");
    bad_input(&info(&format!("{f}#3-1"), t.path()), "descending");
    bad_input(&info(&format!("{f}#2-5"), t.path()), "absent from the set");
    bad_input(&info(&format!("{f}#0#1"), t.path()), "one class filter");
    bad_input(&info("noise-gauss#0", t.path()), "no class labels");
}

#[test]
fn train_needs_labels_0_to_k_minus_1_or_remap_and_records_the_filter() {
    let t = tempfile::tempdir().unwrap();
    let f = format!("path:{}", s(&write_toy4(t.path(), 64, 11)));
    let train = |id: &str, aux: Option<&str>, out: &str| {
        let cfg = config(t.path(), id, aux);
        let o = t.path().join(out);
        (
            oodcert_in(
                &["train", "--config", s(&cfg), "--out", s(&o), "--quiet"],
                t.path(),
            ),
            o,
        )
    };
    let (o, _) = train(&format!("{f}#2-3"), None, "a");
    bad_input(&o, "+remap");
    let (o, dir) = train(&format!("{f}#2-3+remap"), None, "b");
    ok(&o);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let d = &m["datasets"][0];
    assert_eq!(d["name"], format!("{f}#2-3+remap"));
    assert_eq!(d["n"], 32);
    assert_eq!(d["class_filter"]["filter"], "#2-3+remap");
    assert_eq!(d["class_filter"]["source_n"], 64);
    let kept: Vec<usize> = (0..64).filter(|i| i % 4 >= 2).collect();
    assert_eq!(
        d["class_filter"]["indices_sha256"],
        oodcert::data::subset::indices_sha256(&kept)
    );
    assert_eq!(
        d["class_filter"]["remap"],
        serde_json::json!([[2, 0], [3, 1]])
    );
    // An auxiliary set sharing a class with the ID set is refused before any loading.
    let (o, _) = train(&format!("{f}#0-1"), Some(&format!("{f}#1-3")), "c");
    bad_input(&o, "shares classes");
    let (o, _) = train(&format!("{f}#0-1"), Some(&format!("{f}#2-3")), "d");
    ok(&o);
}

#[test]
fn eval_and_certify_refuse_ood_sets_sharing_id_classes() {
    let t = tempfile::tempdir().unwrap();
    let f = format!("path:{}", s(&write_toy4(t.path(), 64, 11)));
    let cfg = config(t.path(), &format!("{f}#0-1"), None);
    let model_dir = t.path().join("m");
    ok(&oodcert_in(
        &[
            "train",
            "--config",
            s(&cfg),
            "--out",
            s(&model_dir),
            "--quiet",
        ],
        t.path(),
    ));
    let model = model_dir.join("model.safetensors");
    let eval = |ood: &str, out: &str| {
        oodcert_in(
            &[
                "eval",
                "--model",
                s(&model),
                "--id",
                &format!("{f}#0-1"),
                "--ood",
                ood,
                "--out",
                s(&t.path().join(out)),
            ],
            t.path(),
        )
    };
    let out = t.path().join("e1");
    // A class list inside the comma-separated --ood stays one spec.
    ok(&eval(&format!("{f}#2,3,{f}#3"), "e1"));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(metrics.contains(&format!("{f}#2-3,")), "{metrics}");
    assert_eq!(metrics.lines().count(), 3, "two OOD rows: {metrics}");
    bad_input(&eval(&format!("{f}#1-3"), "e2"), "shares classes");
    bad_input(&eval(&f, "e3"), "shares classes");
    let o = oodcert_in(
        &[
            "certify",
            "--model",
            s(&model),
            "--data",
            &format!("{f}#0-1"),
            "--ood",
            &format!("{f}#1"),
            "--sigma",
            "0.25",
            "--out",
            s(&t.path().join("c")),
        ],
        t.path(),
    );
    bad_input(&o, "shares classes");
    // lipschitz takes filtered specs and records the filter of both sets.
    let lip = t.path().join("lip");
    ok(&oodcert_in(
        &[
            "lipschitz",
            "--model",
            s(&model),
            "--data",
            &format!("{f}#2-3"),
            "--is-ood",
            "--id-val",
            &format!("{f}#0-1"),
            "--norm",
            "l2",
            "--eps",
            "0.05",
            "--limit",
            "2",
            "--quiet",
            "--out",
            s(&lip),
        ],
        t.path(),
    ));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lip.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["datasets"][0]["class_filter"]["filter"], "#2-3");
    assert_eq!(m["datasets"][1]["class_filter"]["filter"], "#0-1");
}
