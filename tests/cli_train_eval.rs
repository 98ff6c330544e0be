//! `oodcert train` and `oodcert eval` from the outside: determinism, a real kill-and-resume,
//! the GReg penalty actually active, refusals with exit code 2 (bad input) or 1 (failed check),
//! and eval's outputs agreeing with `oodcert metrics`.

mod common;
use candle_core::{DType, Device};
use common::{BIN, lcg, ok, s, write_idx};
use oodcert::model::arch::GraphLayer;
use oodcert::model::{Arch, Model, ModelSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes an IDX3 u8 image file and its IDX1 label file: two classes of 12×12 images (bright left
/// half vs bright right half) with deterministic noise.
fn write_toy_mnist(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let (h, w) = (12usize, 12usize);
    let mut pix = Vec::with_capacity(n * h * w);
    let mut labels = Vec::with_capacity(n);
    let mut s = seed;
    let mut next = || (lcg(&mut s) >> 33) as u32;
    for i in 0..n {
        let c = (i % 2) as u8;
        labels.push(c);
        for _ in 0..h {
            for x in 0..w {
                let bright = (x < w / 2) == (c == 0);
                let base: u32 = if bright { 170 } else { 30 };
                pix.push((base + next() % 80) as u8);
            }
        }
    }
    write_idx(dir, "toy", [n, h, w], &pix, Some(&labels))
}

fn config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"seed = 1
[data]
id = "path:{}"
[model]
arch = "mlp"
hidden = [32, 16]
[optim]
kind = "sgd"
lr = 0.05
[train]
epochs = 3
batch_size = 32
log_every = 5
checkpoint_every = 10
{extra}
"#,
        data.display()
    );
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn oodcert(args: &[&str], data_dir: &Path) -> Output {
    common::oodcert_in(args, data_dir)
}

#[test]
fn train_is_deterministic_and_logs_every_column() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 256, 7);
    let cfg = config(t.path(), &data, "");
    let run = |out: &str, seed: &str| {
        let o = t.path().join(out);
        ok(&oodcert(
            &[
                "train",
                "--config",
                s(&cfg),
                "--out",
                s(&o),
                "--seed",
                seed,
                "--quiet",
            ],
            t.path(),
        ));
        o
    };
    let (a, b, c) = (run("a", "3"), run("b", "3"), run("c", "4"));
    let log_a = std::fs::read_to_string(a.join("train_log.csv")).unwrap();
    assert_eq!(
        log_a.lines().next().unwrap(),
        "step,epoch,lr,loss,ce,loss_energy,loss_grad,frac_in_masked,frac_aux_masked,grad_norm_in,grad_norm_aux,acc"
    );
    assert_eq!(
        log_a.lines().count(),
        1 + 24 / 5 + 1,
        "rows every 5 steps plus the last"
    );
    assert_eq!(
        log_a,
        std::fs::read_to_string(b.join("train_log.csv")).unwrap()
    );
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
    assert_ne!(
        log_a,
        std::fs::read_to_string(c.join("train_log.csv")).unwrap()
    );
    // It learns the toy task.
    let last = log_a.lines().last().unwrap();
    let acc: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
    assert!(acc > 0.9, "final batch accuracy {acc}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["command"], "train");
    assert_eq!(m["seeds"][0], 3);
    assert_eq!(m["datasets"][0]["n"], 256);
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_and_log() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 512, 9);
    let cfg = config(
        t.path(),
        &data,
        "max_steps = 1500\n[loss]\nlambda_energy = 0.1\nlambda_grad = 0.5\n[sampler]\nkind = \"greg-plus\"\nnum_cluster = 4\n",
    );
    // The GReg terms need outliers: uniform noise, generated (no fetch).
    let cfg_text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[model]", "aux = \"noise-uniform:train\"\n[model]")
        .replace("epochs = 3", "epochs = 100")
        // At lr 0.05 this GReg run collapses by step 200 (every ReLU of the second layer dead,
        // constant logits: train::collapse stops it); the resume must be checked on a live net.
        .replace("lr = 0.05", "lr = 0.01");
    std::fs::write(&cfg, cfg_text).unwrap();
    let full = t.path().join("full");
    ok(&oodcert(
        &["train", "--config", s(&cfg), "--out", s(&full), "--quiet"],
        t.path(),
    ));

    let cut = t.path().join("cut");
    let mut child = Command::new(BIN)
        .args(["train", "--config", s(&cfg), "--out", s(&cut), "--quiet"])
        .env("OODCERT_DATA", t.path())
        .env("OODCERT_NO_FETCH", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = cut.join("checkpoints/latest.json");
    let t0 = std::time::Instant::now();
    while !latest.exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed; make it longer"
    );
    assert!(!cut.join("model.safetensors").exists());
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&latest).unwrap()).unwrap();
    let at = rec["step"].as_u64().unwrap();
    assert!(at > 0 && at < 1500, "killed at checkpoint step {at}");

    ok(&oodcert(
        &[
            "train",
            "--config",
            s(&cfg),
            "--out",
            s(&cut),
            "--resume",
            "--quiet",
        ],
        t.path(),
    ));
    assert_eq!(
        std::fs::read_to_string(full.join("train_log.csv")).unwrap(),
        std::fs::read_to_string(cut.join("train_log.csv")).unwrap(),
        "the resumed log differs from the uninterrupted one (killed at step {at})"
    );
    assert_eq!(
        std::fs::read(full.join("model.safetensors")).unwrap(),
        std::fs::read(cut.join("model.safetensors")).unwrap(),
        "the resumed weights differ from the uninterrupted run (killed at step {at})"
    );
}

#[test]
fn greg_penalty_is_active_and_the_closed_form_needs_no_second_order() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 128, 3);
    let cfg = config(
        t.path(),
        &data,
        "max_steps = 20\naux_batch_size = 16\n[loss]\nlambda_energy = 0.1\nlambda_grad = 1.0\n",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[model]", "aux = \"noise-gauss:train\"\n[model]");
    std::fs::write(&cfg, text).unwrap();
    let out = t.path().join("g");
    ok(&oodcert(
        &["train", "--config", s(&cfg), "--out", s(&out), "--quiet"],
        t.path(),
    ));
    let log = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    let rows: Vec<Vec<f64>> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(
        rows.iter().any(|r| r[6] > 0.0),
        "loss_grad never positive:\n{log}"
    );
    assert!(
        rows.iter().all(|r| r[10].is_finite()),
        "grad_norm_aux missing:\n{log}"
    );
    let m = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(m.contains("\"penalty_form_used\": \"per-sample\""), "{m}");

    // The closed-form step (dense ReLU nets on the CPU) needs no second-order gradients: the same
    // run with them switched off trains.
    let o = Command::new(BIN)
        .args([
            "train",
            "--config",
            s(&cfg),
            "--out",
            s(&t.path().join("h")),
            "--quiet",
        ])
        .env("OODCERT_DATA", t.path())
        .env("OODCERT_NO_FETCH", "1")
        .env("CANDLE_GRAD_DO_NOT_DETACH", "0")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(t.path().join("h/model.safetensors")).unwrap(),
        "the closed-form GReg run depends on candle's second-order setting"
    );
}

/// `oodcert train` with `CANDLE_GRAD_DO_NOT_DETACH` unset (as users run it): second-order
/// gradients only on the thread of a penalty by autograd (`train::second_order`; here an imported
/// graph with a general max-pool), every other step first order (ResNet-18's penalty included). Each run gives the bits of the same run with second order on every thread
/// (set to 1), and the autograd penalty refuses to run with it off (set to 0); CE trains then.
#[test]
fn second_order_gradients_only_where_the_penalty_needs_them() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 64, 5);
    let greg = "max_steps = 2\nbatch_size = 4\naux_batch_size = 4\n[loss]\nlambda_energy = 0.1\nlambda_grad = 1.0\n";
    let cfg = config(t.path(), &data, greg);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[model]", "aux = \"noise-gauss:train\"\n[model]")
        .replace("batch_size = 32\n", "");
    std::fs::write(&cfg, text).unwrap();
    let train = |out: &str, env: Option<&str>, set: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["train", "--config", s(&cfg), "--out"])
            .arg(t.path().join(out))
            .arg("--quiet")
            .env("OODCERT_DATA", t.path())
            .env("OODCERT_NO_FETCH", "1");
        for kv in set {
            c.args(["--set", kv]);
        }
        match env {
            Some(v) => c.env("CANDLE_GRAD_DO_NOT_DETACH", v),
            None => c.env_remove("CANDLE_GRAD_DO_NOT_DETACH"),
        };
        c.output().unwrap()
    };
    let same = |a: &str, b: &str| {
        for f in ["model.safetensors", "train_log.csv"] {
            assert_eq!(
                std::fs::read(t.path().join(a).join(f)).unwrap(),
                std::fs::read(t.path().join(b).join(f)).unwrap(),
                "{a}/{f} differs from {b}/{f}"
            );
        }
    };
    // An imported graph with a 3×3 max-pool (no explicit input-gradient rule): the penalty by
    // autograd, on the second-order thread. ResNet-18 (BatchNorm, residual blocks) and the MLP on
    // the graph route: the explicit input gradient, first order on the main thread.
    let graph_spec = ModelSpec {
        arch: Arch::Graph {
            name: "pooled".into(),
            layers: vec![
                GraphLayer::Conv {
                    name: "c".into(),
                    c_in: 1,
                    c_out: 4,
                    kernel: [3, 3],
                    stride: 1,
                    padding: 1,
                    bias: true,
                },
                GraphLayer::Relu,
                GraphLayer::MaxPool {
                    kernel: [3, 3],
                    stride: [2, 2],
                    pad: [1, 1],
                },
                GraphLayer::Flatten,
                GraphLayer::Linear {
                    name: "fc".into(),
                    in_features: 4 * 6 * 6,
                    out_features: 2,
                    bias: true,
                },
            ],
        },
        input_shape: [1, 12, 12],
        num_classes: 2,
        mean: vec![0.5],
        std: vec![0.25],
    };
    let pooled = t.path().join("pooled.safetensors");
    let pooled_model = Model::init(graph_spec, &Device::Cpu, DType::F32, 4).unwrap();
    assert!(!pooled_model.has_explicit_input_vjp());
    pooled_model.save(&pooled).unwrap();
    let init_from = format!("model.init_from=\"{}\"", pooled.display());
    // (Margins that every auxiliary row of this untrained net meets: its penalty is active.)
    let graph = [
        "model.arch=\"graph\"",
        "model.hidden=[]",
        &init_from,
        "loss.m_in=-1000",
        "loss.m_out=-999",
    ];
    let resnet = ["model.arch=\"resnet18\"", "model.hidden=[]"];
    let mlp_graph = ["train.backward=\"autograd\""];
    for (name, set) in [
        ("graph", &graph[..]),
        ("resnet", &resnet[..]),
        ("mlp-graph", &mlp_graph[..]),
    ] {
        let default = format!("{name}-default");
        let everywhere = format!("{name}-on");
        ok(&train(&default, None, set));
        ok(&train(&everywhere, Some("1"), set));
        same(&default, &everywhere);
        let log = std::fs::read_to_string(t.path().join(&default).join("train_log.csv")).unwrap();
        assert!(
            log.lines()
                .skip(1)
                .all(|l| l.split(',').nth(6).unwrap().parse::<f64>().unwrap() > 0.0),
            "{name}: the penalty is not active:\n{log}"
        );
    }
    // ResNet-18's penalty needs no second-order gradients: off everywhere, the same bits.
    ok(&train("resnet-off", Some("0"), &resnet));
    same("resnet-off", "resnet-default");
    // Off everywhere: the autograd penalty refuses (exit 1, before any step)…
    let o = train("graph-off", Some("0"), &graph);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("second-order"));
    // …while λ_∇ = 0 trains without it, with the bits of the default run.
    let mut ce = resnet.to_vec();
    ce.push("loss.lambda_grad=0");
    ok(&train("resnet-ce-off", Some("0"), &ce));
    ok(&train("resnet-ce-default", None, &ce));
    same("resnet-ce-off", "resnet-ce-default");
}

#[test]
fn bad_configs_and_flags_exit_2_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 64, 1);
    let cfg = config(t.path(), &data, "");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--set".into(), "loss.bogus=1".into()], "bogus"),
        (vec!["--set".into(), "optim.lr=-1".into()], "optim.lr"),
        (
            vec!["--set".into(), "optim.kind=\"rmsprop\"".into()],
            "optim.kind",
        ),
        (vec!["--set".into(), "loss.m_in=0".into()], "m_in"),
        (
            vec!["--set".into(), "loss.lambda_grad=1".into()],
            "data.aux",
        ),
        (
            vec!["--set".into(), "model.arch=\"vgg\"".into()],
            "model.arch",
        ),
        (
            vec!["--set".into(), "sampler.kind=\"best\"".into()],
            "sampler.kind",
        ),
        (vec!["--set".into(), "noequals".into()], "key=value"),
        (vec!["--device".into(), "tpu".into()], "--device"),
        (
            vec!["--set".into(), "data.id=\"nosuchset\"".into()],
            "nosuchset",
        ),
    ];
    for (extra, needle) in cases {
        let out = t.path().join("o");
        let mut args = vec![
            "train".to_string(),
            "--config".into(),
            s(&cfg).into(),
            "--out".into(),
            s(&out).into(),
            "--quiet".into(),
        ];
        args.extend(extra.clone());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = oodcert(&argv, t.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(needle),
            "{extra:?}: error does not name {needle}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{extra:?}: not one line: {err}"
        );
    }
    for (name, content) in [
        ("empty.toml", ""),
        ("broken.toml", "seed = [1,\n"),
        ("nodata.toml", "seed = 1\n"),
    ] {
        let p = t.path().join(name);
        std::fs::write(&p, content).unwrap();
        let o = oodcert(&["train", "--config", s(&p), "--quiet"], t.path());
        assert_eq!(
            o.status.code(),
            Some(2),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = oodcert(
        &["train", "--config", s(&t.path().join("missing.toml"))],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn eval_outputs_agree_with_the_metrics_command() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 256, 5);
    let cfg = config(t.path(), &data, "max_steps = 30\n");
    let run = t.path().join("run");
    ok(&oodcert(
        &["train", "--config", s(&cfg), "--out", s(&run), "--quiet"],
        t.path(),
    ));
    let model = run.join("model.safetensors");
    let ev = t.path().join("ev");
    let spec = format!("path:{}", data.display());
    let o = oodcert(
        &[
            "eval",
            "--model",
            s(&model),
            "--id",
            &spec,
            "--ood",
            "noise-uniform,noise-gauss",
            "--out",
            s(&ev),
            "--quiet",
        ],
        t.path(),
    );
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("noise-uniform") && stdout.contains("mean"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(ev.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    assert_eq!(
        lines.next().unwrap(),
        "ood,fpr95,auroc,aupr_in,aupr_out,detection_error,id_accuracy,n_id,n_ood,score,convention,tpr"
    );
    let first: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let scores = std::fs::read_to_string(ev.join("scores.csv")).unwrap();
    assert_eq!(
        scores.lines().next().unwrap(),
        "dataset,index,label,score,is_id"
    );
    let n_ood: usize = first[8].parse().unwrap();
    assert_eq!(scores.lines().count(), 1 + 256 + 2 * n_ood);
    // The first OOD set's rows + the ID rows, through `oodcert metrics`, give the same numbers.
    let sub: Vec<&str> = scores
        .lines()
        .filter(|l| l.ends_with(",1") || l.starts_with(first[0].as_str()))
        .collect();
    let sub_path = t.path().join("sub.csv");
    std::fs::write(
        &sub_path,
        format!("dataset,index,label,score,is_id\n{}\n", sub[1..].join("\n")),
    )
    .unwrap();
    let m = oodcert(&["metrics", "--scores", s(&sub_path)], t.path());
    ok(&m);
    let got: std::collections::HashMap<String, String> = String::from_utf8_lossy(&m.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(',')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    assert_eq!(got["fpr95"], first[1]);
    assert_eq!(got["auroc"], first[2]);
    assert_eq!(got["aupr_in"], first[3]);
    assert_eq!(got["aupr_out"], first[4]);
    let man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ev.join("manifest.json")).unwrap()).unwrap();
    let sha = oodcert::evidence::sha256_file(&model).unwrap();
    assert_eq!(man["model_sha256"], sha);
    assert_eq!(man["datasets"].as_array().unwrap().len(), 3);
    // A missing model is bad input.
    let o = oodcert(
        &[
            "eval",
            "--model",
            s(&t.path().join("none.safetensors")),
            "--id",
            &spec,
            "--ood",
            "noise-uniform",
        ],
        t.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A zero batch and an OOD set listed twice: exit 2 with one line, nothing written.
    for (extra, needle) in [
        (
            ["--ood", "noise-uniform", "--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
        (
            [
                "--ood",
                "noise-uniform,noise-gauss,noise-uniform:test",
                "--batch-size",
                "7",
            ],
            "twice (noise-uniform:test)",
        ),
    ] {
        let out = t.path().join("ev_bad");
        let mut args = vec![
            "eval",
            "--model",
            s(&model),
            "--id",
            &spec,
            "--out",
            s(&out),
        ];
        args.extend(extra);
        let o = oodcert(&args, t.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn reproduce_manifest_reruns_bit_for_bit_and_reports_differences() {
    let t = tempfile::tempdir().unwrap();
    let data = write_toy_mnist(t.path(), 128, 2);
    let cfg = config(t.path(), &data, "max_steps = 12\n");
    let run = t.path().join("run");
    ok(&oodcert(
        &["train", "--config", s(&cfg), "--out", s(&run), "--quiet"],
        t.path(),
    ));
    let again = t.path().join("again");
    let o = oodcert(
        &[
            "reproduce",
            "--manifest",
            s(&run.join("manifest.json")),
            "--out",
            s(&again),
        ],
        t.path(),
    );
    ok(&o);
    let diff = std::fs::read_to_string(again.join("reproduce_diff.csv")).unwrap();
    assert_eq!(diff.lines().count(), 3, "{diff}");
    assert!(diff.lines().skip(1).all(|l| l.ends_with(",yes")), "{diff}");
    // A recorded hash that the re-run cannot match: exit 1 and the file is named.
    let mpath = run.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["outputs"][0][1] = serde_json::json!("0".repeat(64));
    std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
    let o = oodcert(
        &[
            "reproduce",
            "--manifest",
            s(&mpath),
            "--out",
            s(&t.path().join("third")),
        ],
        t.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.safetensors"));
}
