//! `oodcert import --onnx`: the fixtures of analysis/onnx/export_fixtures.py (tests/fixtures/onnx/)
//! import with logits equal to onnxruntime's to 1e-5 relative; the built-in MLP and LeNet exported
//! from PyTorch import as the built-ins; every unsupported feature is exit 2 with one line naming
//! the node and nothing written; the imported model is a normal model file (save/load, the Net
//! lowering of bound propagation, eval, certify and lipschitz run on it).

mod common;
use candle_core::{DType, Device, Tensor};
use common::{ok, oodcert, s};
use oodcert::bounds::net::Net;
use oodcert::model::arch::GraphLayer;
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::onnx::{ImportOptions, import_onnx};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

struct Io {
    input: Tensor,
    logits_ort: Vec<f32>,
}

fn io(name: &str) -> Io {
    let text = std::fs::read_to_string(fixture(&format!("{name}_io.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
    let input: Vec<f32> = serde_json::from_value(v["input"].clone()).unwrap();
    let logits_ort: Vec<f32> = serde_json::from_value(v["logits_ort"].clone()).unwrap();
    Io {
        input: Tensor::from_vec(input, shape, &Device::Cpu).unwrap(),
        logits_ort,
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| / max |b|.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

/// S = −logsumexp per row of `(n, k)` logits.
fn energies(logits: &[f64], k: usize) -> Vec<f64> {
    logits
        .chunks(k)
        .map(|z| {
            let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            -(m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
        })
        .collect()
}

fn import(name: &str) -> Model {
    import_onnx(&fixture(&format!("{name}.onnx")), &ImportOptions::default()).unwrap()
}

fn count_ops(layers: &[GraphLayer], out: &mut Vec<&'static str>) {
    for l in layers {
        let op = match l {
            GraphLayer::Conv { .. } => "conv",
            GraphLayer::BatchNorm { .. } => "bn",
            GraphLayer::Linear { .. } => "linear",
            GraphLayer::Relu => "relu",
            GraphLayer::Flatten => "flatten",
            GraphLayer::GlobalAvgPool => "gap",
            GraphLayer::MaxPool { .. } => "maxpool",
            GraphLayer::AvgPool { .. } => "avgpool",
            GraphLayer::Pad { .. } => "pad",
            GraphLayer::Residual { main, shortcut } => {
                count_ops(main, out);
                count_ops(shortcut, out);
                "residual"
            }
            GraphLayer::Concat { branches } => {
                branches.iter().for_each(|b| count_ops(b, out));
                "concat"
            }
        };
        out.push(op);
    }
}

#[test]
fn done_when_cnn_matches_onnxruntime() {
    let m = import("cnn");
    let spec = m.spec().clone();
    assert_eq!(spec.input_shape, [3, 16, 16]);
    assert_eq!(spec.num_classes, 5);
    // In-graph (x − mean)/std kept as the model's normalisation, exactly.
    assert_eq!(spec.mean, vec![0.5, 0.4, 0.3]);
    assert_eq!(spec.std, vec![0.25, 0.2, 0.3]);
    let Arch::Graph { name, layers } = &spec.arch else {
        panic!("not a graph: {:?}", spec.arch)
    };
    assert_eq!(name, "cnn");
    let mut ops = Vec::new();
    count_ops(layers, &mut ops);
    for op in [
        "conv", "bn", "residual", "maxpool", "concat", "gap", "linear",
    ] {
        assert!(ops.contains(&op), "no {op} in {ops:?}");
    }
    let r = io("cnn");
    let got = flat(&m.logits(&r.input).unwrap());
    let want: Vec<f64> = r.logits_ort.iter().map(|&v| v as f64).collect();
    let d = rel_diff(&got, &want);
    assert!(
        d <= 1e-5,
        "logits differ from onnxruntime by {d:e} (relative)"
    );
    let de = rel_diff(&energies(&got, 5), &energies(&want, 5));
    assert!(de <= 1e-5, "energies differ from onnxruntime by {de:e}");
    // Not vacuous: a perturbed input moves the logits far beyond the tolerance.
    let moved = flat(&m.logits(&(r.input.clone() * 0.9).unwrap()).unwrap());
    assert!(rel_diff(&moved, &want) > 1e-3);
}

#[test]
fn builtins_exported_to_onnx_import_as_the_builtins() {
    let refdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/pytorch");
    for name in ["mlp", "lenet28"] {
        let imported = import(name);
        let meta_path = refdir.join(format!("{name}_io.safetensors"));
        let bytes = std::fs::read(&meta_path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let spec: ModelSpec =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["spec"]).unwrap();
        let builtin = Model::load_pytorch(
            refdir.join(format!("{name}.safetensors")),
            spec.clone(),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(imported.spec().input_shape, spec.input_shape);
        assert_eq!(imported.spec().num_classes, spec.num_classes);
        assert_eq!(imported.spec().mean, spec.mean, "{name}");
        assert_eq!(imported.spec().std, spec.std, "{name}");
        assert_eq!(imported.num_trainable(), builtin.num_trainable(), "{name}");
        let r = io(name);
        let a = flat(&imported.logits(&r.input).unwrap());
        let b = flat(&builtin.logits(&r.input).unwrap());
        let d = rel_diff(&a, &b);
        assert!(
            d <= 1e-6,
            "{name}: imported vs built-in logits differ by {d:e}"
        );
        let want: Vec<f64> = r.logits_ort.iter().map(|&v| v as f64).collect();
        let d = rel_diff(&a, &want);
        assert!(d <= 1e-5, "{name}: vs onnxruntime {d:e}");
        // The bound code's exact f64 network of the imported model computes the same logits.
        let net = Net::from_model(&imported).unwrap();
        let x0 = flat(&r.input.get(0).unwrap());
        let z = net.forward(&x0).unwrap();
        let d = rel_diff(&z, &a[..z.len()]);
        assert!(d <= 1e-5, "{name}: Net vs model {d:e}");
    }
}

#[test]
fn imported_model_file_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let m = import("cnn");
    let p = t.path().join("cnn.safetensors");
    m.save(&p).unwrap();
    let back = Model::load(&p, &Device::Cpu).unwrap();
    assert_eq!(back.spec(), m.spec());
    let r = io("cnn");
    let (a, b) = (
        flat(&m.logits(&r.input).unwrap()),
        flat(&back.logits(&r.input).unwrap()),
    );
    assert_eq!(a, b);
    // The evaluation forward without autograd (eval, certify): the same bits after the round
    // trip, and the training forward's values up to the dense layers' summation order (the
    // evaluation forward runs them in fixed 128-row GEMMs).
    let e = flat(&back.logits_no_grad(&r.input).unwrap());
    assert_eq!(e, flat(&m.logits_no_grad(&r.input).unwrap()));
    assert!(rel_diff(&e, &a) < 1e-6);
    // An f64 copy (what the bound code and gradient checks use) agrees too.
    let m64 = back.to_dtype(DType::F64).unwrap();
    let c = flat(&m64.logits(&r.input).unwrap());
    assert!(rel_diff(&c, &a) < 1e-5);

    // A file whose stored layer list no longer fits together is refused at load with one line
    // naming the layer: a conv's padding edited to a huge value (once a crash inside the
    // convolution), or its output channels to one more than the next layer takes (once a shape
    // mismatch deep in a GEMM, exit 1).
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for (key, bump, needle) in [
        ("padding", 100_000u64, "values per sample"),
        ("c_out", 1, "channels"),
    ] {
        let mut h = header.clone();
        let spec_text = h["__metadata__"]["oodcert.spec"]
            .as_str()
            .unwrap()
            .to_string();
        let mut spec: serde_json::Value = serde_json::from_str(&spec_text).unwrap();
        let conv = spec["arch"]["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|l| l["op"] == "conv")
            .expect("the fixture has a top-level conv");
        conv[key] = (conv[key].as_u64().unwrap() + bump).into();
        h["__metadata__"]["oodcert.spec"] = spec.to_string().into();
        let hb = serde_json::to_vec(&h).unwrap();
        let mut out = (hb.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&hb);
        out.extend_from_slice(&bytes[8 + n..]);
        let bad = t.path().join("bad.safetensors");
        std::fs::write(&bad, out).unwrap();
        let e = match Model::load(&bad, &Device::Cpu) {
            Ok(_) => panic!("{key}: a misfit model loads"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(needle) && e.contains("model"), "{key}: {e}");
    }
}

#[test]
fn unsupported_graphs_exit_2_with_one_line_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    for (name, needles) in [
        ("bad_sigmoid", &["Sigmoid", "not supported", "Conv"][..]),
        ("bad_dilation", &["Conv", "dilation"][..]),
        ("bad_groups", &["Conv", "group"][..]),
        ("bad_dag", &["Add", "series-parallel"][..]),
    ] {
        let out = t.path().join(format!("{name}.safetensors"));
        let o = oodcert(
            &[
                "import",
                "--onnx",
                s(&fixture(&format!("{name}.onnx"))),
                "--out",
                s(&out),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(err.contains("node"), "{name}: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: `{n}` missing in: {err}");
        }
        assert!(!out.exists(), "{name}: output written");
    }
    // A file that is not ONNX, and a wrong --num-classes.
    let junk = t.path().join("junk.onnx");
    std::fs::write(&junk, b"\xff\xff\xff not protobuf").unwrap();
    let o = oodcert(
        &[
            "import",
            "--onnx",
            s(&junk),
            "--out",
            s(&t.path().join("j")),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let o = oodcert(
        &[
            "import",
            "--onnx",
            s(&fixture("mlp.onnx")),
            "--out",
            s(&t.path().join("m")),
            "--num-classes",
            "7",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("5 logits"));
    assert!(!t.path().join("m").exists());
    // --out naming the ONNX file itself: refused, the source left as it was.
    let src = t.path().join("src.onnx");
    std::fs::copy(fixture("mlp.onnx"), &src).unwrap();
    let o = oodcert(&["import", "--onnx", s(&src), "--out", s(&src)], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the ONNX file being imported"));
    assert_eq!(
        std::fs::read(&src).unwrap(),
        std::fs::read(fixture("mlp.onnx")).unwrap()
    );
}

/// A pooling node with a zero stride (PyTorch cannot export one; written by editing the LeNet
/// fixture's max-pools, then its average-pool twin) is exit 2 naming the node, not a division by
/// zero.
#[test]
fn a_pool_with_a_zero_stride_is_refused() {
    use oodcert::onnx::proto::ModelProto;
    use prost::Message;
    let t = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("lenet28.onnx")).unwrap();
    for (op, strides) in [
        ("MaxPool", [0, 0]),
        ("MaxPool", [1, 0]),
        ("AveragePool", [0, 2]),
    ] {
        let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        let mut pools = 0;
        for n in g
            .node
            .iter_mut()
            .filter(|n| n.op_type.as_deref() == Some("MaxPool"))
        {
            n.op_type = Some(op.into());
            let a = n
                .attribute
                .iter_mut()
                .find(|a| a.name.as_deref() == Some("strides"))
                .expect("the fixture's max-pools have strides");
            a.ints = strides.to_vec();
            pools += 1;
        }
        assert!(pools > 0);
        let onnx = t.path().join("pool.onnx");
        std::fs::write(&onnx, m.encode_to_vec()).unwrap();
        let out = t.path().join("pool.safetensors");
        let o = oodcert(&["import", "--onnx", s(&onnx), "--out", s(&out)], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{op} {strides:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(op) && err.contains("strides"), "{err}");
        assert!(!out.exists());
    }
}

/// Runs `oodcert` with the whitespace-separated arguments of `line` (paths without spaces).
fn cli(line: &str) -> String {
    let args: Vec<&str> = line.split_whitespace().collect();
    ok(&oodcert(&args, &[("OODCERT_NO_FETCH", "1")]))
}

#[test]
fn eval_certify_lipschitz_verify_and_report_run_on_imported_models() {
    let t = tempfile::tempdir().unwrap();
    let p = |name: &str| t.path().join(name).display().to_string();
    // The MLP on 8×8 digits: import, eval, lipschitz, verify.
    let onnx = fixture("mlp.onnx");
    let (mlp, cnn) = (p("mlp.safetensors"), p("cnn.safetensors"));
    cli(&format!(
        "import --onnx {} --out {mlp} --num-classes 5 --name exported-mlp",
        s(&onnx)
    ));
    cli(&format!(
        "eval --model {mlp} --id digits8:test --ood noise-uniform --limit 20 --out {} --quiet",
        p("ev")
    ));
    assert!(t.path().join("ev/metrics.csv").is_file());
    let lip = p("lip");
    cli(&format!(
        "lipschitz --model {mlp} --data digits8:test --norm l2 --eps 0.05 --limit 3 --samples 8 \
         --pgd-steps 3 --clever-batches 4 --clever-samples 8 --radius-iters 4 --box --quiet \
         --out {lip}"
    ));
    cli(&format!("verify --run {lip} --model {mlp}"));
    // The "Done when" CNN (3×16×16) on generated noise: eval, smoothing certificates, Lipschitz
    // bounds (bound propagation through its residual Add and Concat), verify attacks every
    // certificate of both runs, report reads them.
    cli(&format!(
        "import --onnx {} --out {cnn}",
        s(&fixture("cnn.onnx"))
    ));
    cli(&format!(
        "eval --model {cnn} --id noise-uniform:test?n=16 --ood noise-gauss:test?n=16 --out {} \
         --quiet",
        p("ev-cnn")
    ));
    let (cert, lip) = (p("cert-cnn"), p("lip-cnn"));
    cli(&format!(
        "certify --model {cnn} --data noise-uniform:test?n=16 --limit 2 --sigma 0.25 --n0 16 \
         --n 64 --alpha 0.01 --id-val noise-uniform:train?n=16 --cal-n 12 --no-timing \
         --out {cert}"
    ));
    assert!(t.path().join("cert-cnn/certify.csv").is_file());
    cli(&format!(
        "lipschitz --model {cnn} --data noise-uniform:test?n=16 --id-val noise-uniform:train?n=16 \
         --norm l2 --eps 0.02 --limit 1 --samples 8 --pgd-steps 3 --clever-batches 4 \
         --clever-samples 8 --radius-iters 2 --radius-max 0.03 --box --quiet --out {lip}"
    ));
    for run in [&lip, &cert] {
        cli(&format!("verify --run {run} --model {cnn}"));
    }
    cli(&format!("report --runs {lip} {cert} --out {}", p("report")));
    assert!(t.path().join("report/index.html").is_file());
}

/// `oodcert train` fine-tunes an imported model (`model.arch = "graph"`, `init_from` = the
/// imported file) with the energy loss and GReg's gradient penalty (double backpropagation), and
/// the result is again an imported-graph model with changed weights.
#[test]
fn an_imported_model_fine_tunes_with_greg() {
    let t = tempfile::tempdir().unwrap();
    let mlp = t.path().join("mlp.safetensors");
    cli(&format!(
        "import --onnx {} --out {}",
        s(&fixture("mlp.onnx")),
        s(&mlp)
    ));
    let mut st = 5u64;
    let n = 64;
    let pixels: Vec<u8> = (0..n * 64)
        .map(|_| (common::lcg(&mut st) >> 56) as u8)
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 5) as u8).collect();
    let data = common::write_idx(t.path(), "toy", [n, 8, 8], &pixels, Some(&labels));
    let cfg = t.path().join("ft.toml");
    std::fs::write(
        &cfg,
        format!(
            "seed = 1\n[data]\nid = \"path:{}\"\naux = \"noise-uniform:train\"\n[model]\n\
             arch = \"graph\"\ninit_from = \"{}\"\n[optim]\nkind = \"sgd\"\nlr = 0.01\n\
             [train]\nepochs = 1\nbatch_size = 16\naux_batch_size = 16\nmax_steps = 3\n\
             log_every = 1\ncheckpoint_every = 0\n[loss]\nlambda_energy = 0.1\n\
             lambda_grad = 0.5\n",
            data.display(),
            mlp.display()
        ),
    )
    .unwrap();
    let out = t.path().join("ft");
    cli(&format!(
        "train --config {} --out {} --quiet",
        s(&cfg),
        s(&out)
    ));
    let before = Model::load(&mlp, &Device::Cpu).unwrap();
    let after = Model::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(after.spec(), before.spec());
    let moved = before
        .all_tensors()
        .iter()
        .zip(after.all_tensors())
        .any(|((_, a), (_, b))| flat(a) != flat(&b));
    assert!(moved, "fine-tuning left every weight unchanged");
    // Without init_from a "graph" architecture is a clear error.
    let bad = t.path().join("bad.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("init_from"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bad, text).unwrap();
    let o = oodcert(
        &[
            "train",
            "--config",
            s(&bad),
            "--out",
            s(&t.path().join("b")),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("init_from"));
}

/// WRN-40-2 and DenseNet-BC (CIFAR) from `export_fixtures.py --big DIR` (not committed: several
/// MB): logits equal onnxruntime's to 1e-5. Run with
/// `OODCERT_ONNX_BIG=DIR cargo test --release --test onnx_import -- --ignored`.
#[test]
#[ignore = "needs OODCERT_ONNX_BIG=DIR written by analysis/onnx/export_fixtures.py --big DIR"]
fn wrn_and_densenet_match_onnxruntime() {
    let dir = PathBuf::from(std::env::var("OODCERT_ONNX_BIG").expect("set OODCERT_ONNX_BIG"));
    for name in ["wrn40_2", "densenet_bc"] {
        let m = import_onnx(&dir.join(format!("{name}.onnx")), &ImportOptions::default()).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{name}_io.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
        let input: Vec<f32> = serde_json::from_value(v["input"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(v["logits_ort"].clone()).unwrap();
        let x = Tensor::from_vec(input, shape, &Device::Cpu).unwrap();
        let got = flat(&m.logits(&x).unwrap());
        let d = rel_diff(&got, &want);
        eprintln!("{name}: max relative logit difference to onnxruntime {d:.2e}");
        assert!(d <= 1e-5, "{name}: {d:e}");
        let de = rel_diff(&energies(&got, 10), &energies(&want, 10));
        assert!(de <= 1e-5, "{name}: energies {de:e}");
    }
}
