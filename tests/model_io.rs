//! Model construction, initialisation, naming, forward shapes and the model-file format:
//! round trips and every kind of broken file (a clear error, never a panic).

mod common;

use candle_core::{DType, Device, Tensor};
use oodcert::Error;
use oodcert::model::{Arch, Classifier, Layer, Model, ModelSpec, ParamKind, sha256_file};
use std::collections::HashMap;
use std::path::Path;

fn spec(arch: Arch, shape: [usize; 3], k: usize) -> ModelSpec {
    let c = shape[0];
    ModelSpec {
        arch,
        input_shape: shape,
        num_classes: k,
        mean: (0..c).map(|i| 0.4 + 0.05 * i as f32).collect(),
        std: (0..c).map(|i| 0.2 + 0.03 * i as f32).collect(),
    }
}

fn mlp() -> ModelSpec {
    spec(Arch::Mlp { hidden: vec![7, 5] }, [1, 4, 4], 3)
}

fn lenet() -> ModelSpec {
    spec(Arch::Lenet, [1, 28, 28], 10)
}

fn input(n: usize, shape: [usize; 3], seed: u64, dtype: DType) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let numel = n * shape.iter().product::<usize>();
    let v: Vec<f64> = (0..numel).map(|_| rng.random::<f64>()).collect();
    Tensor::from_vec(v, (n, shape[0], shape[1], shape[2]), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    common::flat_f64(t)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn init_is_deterministic_under_the_seed() {
    let dev = Device::Cpu;
    let a = Model::init(lenet(), &dev, DType::F32, 11).unwrap();
    let b = Model::init(lenet(), &dev, DType::F32, 11).unwrap();
    let c = Model::init(lenet(), &dev, DType::F32, 12).unwrap();
    for ((na, ta), (nb, tb)) in a.all_tensors().iter().zip(b.all_tensors()) {
        assert_eq!(*na, nb);
        assert_eq!(values(ta), values(&tb), "{na}");
    }
    let w = |m: &Model| {
        values(
            &m.all_tensors()
                .into_iter()
                .find(|(n, _)| n == "fc1.weight")
                .unwrap()
                .1,
        )
    };
    assert_ne!(w(&a), w(&c));
    // f64 and f32 models from the same seed hold the same values up to f32 rounding.
    let d = Model::init(lenet(), &dev, DType::F64, 11).unwrap();
    let diff = w(&a)
        .iter()
        .zip(w(&d))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-7, "{diff}");
}

#[test]
fn init_follows_pytorch_defaults() {
    let m = Model::init(
        spec(Arch::Resnet18, [3, 8, 8], 10),
        &Device::Cpu,
        DType::F64,
        0,
    )
    .unwrap();
    let t: HashMap<String, Tensor> = m.all_tensors().into_iter().collect();
    let check_uniform = |name: &str, fan_in: usize| {
        let v = values(&t[name]);
        let b = 1.0 / (fan_in as f64).sqrt();
        let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max <= b, "{name}: {max} > {b}");
        // U(±b) has variance b²/3; with ≥ 640 draws the sample variance is within 20 %.
        let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        assert!((var / (b * b / 3.0) - 1.0).abs() < 0.2, "{name}: var {var}");
    };
    check_uniform("conv1.weight", 27);
    check_uniform("layer3.0.conv2.weight", 256 * 9);
    check_uniform("layer2.0.shortcut.0.weight", 64);
    check_uniform("linear.weight", 512);
    assert!(values(&t["bn1.weight"]).iter().all(|x| *x == 1.0));
    assert!(values(&t["layer1.1.bn2.bias"]).iter().all(|x| *x == 0.0));
    assert!(
        values(&t["layer4.1.bn1.running_mean"])
            .iter()
            .all(|x| *x == 0.0)
    );
    assert!(
        values(&t["layer4.1.bn1.running_var"])
            .iter()
            .all(|x| *x == 1.0)
    );
}

#[test]
fn parameter_names_and_counts_match_pytorch() {
    let dev = Device::Cpu;
    // kuangliu ResNet18 for CIFAR-10: 11,173,962 trainable parameters.
    let r = Model::init(spec(Arch::Resnet18, [3, 32, 32], 10), &dev, DType::F32, 0).unwrap();
    assert_eq!(r.num_trainable(), 11_173_962);
    let names: Vec<String> = r.all_tensors().into_iter().map(|(n, _)| n).collect();
    for n in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.running_mean",
        "layer2.0.shortcut.0.weight",
        "layer4.0.shortcut.1.bias",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(names.contains(&n.to_string()), "missing {n}");
    }
    assert!(!names.iter().any(|n| n.starts_with("layer1.0.shortcut")));
    // 20 BatchNorms × 2 buffers are not trainable.
    let trainable = r.trainable_vars();
    assert_eq!(names.len() - trainable.len(), 40);
    assert!(trainable.iter().all(|(n, _)| !n.contains("running")));
    assert!(
        trainable.windows(2).all(|w| w[0].0 < w[1].0),
        "trainable_vars sorted by name"
    );
    assert_eq!(r.varmap().all_vars().len(), trainable.len());
    assert!(
        r.params()
            .iter()
            .filter(|p| p.kind == ParamKind::Buffer)
            .count()
            == 40
    );

    // LeNet 28×28: 156 + 2416 + 48120 + 10164 + 850.
    let l = Model::init(lenet(), &dev, DType::F32, 0).unwrap();
    assert_eq!(l.num_trainable(), 61_706);
    let m = Model::init(mlp(), &dev, DType::F32, 0).unwrap();
    assert_eq!(m.num_trainable(), 16 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3);
    let names: Vec<String> = m.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight",
            "fc3.bias",
            "fc3.weight"
        ]
    );
}

#[test]
fn forward_shapes_for_every_architecture_and_input_size() {
    let dev = Device::Cpu;
    let cases = [
        (mlp(), 5),
        (spec(Arch::Mlp { hidden: vec![] }, [2, 3, 3], 4), 18),
        (lenet(), 84),
        (spec(Arch::Lenet, [3, 32, 32], 10), 84),
        (spec(Arch::Lenet, [1, 13, 15], 2), 84),
        (spec(Arch::Resnet18, [1, 28, 28], 10), 512),
        (spec(Arch::Resnet18, [3, 32, 32], 100), 512),
        (spec(Arch::Resnet18, [3, 8, 8], 2), 512),
    ];
    for (s, d) in cases {
        let k = s.num_classes;
        let shape = s.input_shape;
        let m = Model::init(s.clone(), &dev, DType::F32, 3).unwrap();
        let x = input(2, shape, 1, DType::F32);
        let (f, z) = m.forward_t(&x, false).unwrap();
        assert_eq!(f.dims(), [2, d], "{s:?}");
        assert_eq!(z.dims(), [2, k], "{s:?}");
        assert!(values(&z).iter().all(|v| v.is_finite()));
        // The classifier maps the features to the logits.
        assert!(max_abs_diff(&m.classifier().forward(&f).unwrap(), &z) < 1e-6);
        assert!(matches!(m.layers()[0], Layer::Normalize(_)));
        // Rows are independent in eval mode: logits of one sample alone equal its row.
        let z0 = m.logits(&x.narrow(0, 0, 1).unwrap()).unwrap();
        assert!(
            max_abs_diff(&z0, &z.narrow(0, 0, 1).unwrap()) < 1e-5,
            "{s:?}"
        );
    }
}

#[test]
fn bad_inputs_and_specs_are_errors() {
    let dev = Device::Cpu;
    let m = Model::init(lenet(), &dev, DType::F32, 0).unwrap();
    let wrong = input(2, [3, 28, 28], 0, DType::F32);
    assert!(matches!(m.logits(&wrong), Err(Error::BadInput(_))));
    let flat = Tensor::zeros((2, 784), DType::F32, &dev).unwrap();
    assert!(matches!(m.logits(&flat), Err(Error::BadInput(_))));
    // f64 inputs are converted to the model's dtype.
    assert!(m.logits(&input(1, [1, 28, 28], 0, DType::F64)).is_ok());
    assert!(matches!(
        Model::init(spec(Arch::Lenet, [1, 10, 10], 10), &dev, DType::F32, 0),
        Err(Error::BadInput(_))
    ));
    assert!(matches!(
        Model::init(lenet(), &dev, DType::U8, 0),
        Err(Error::BadInput(_))
    ));
    let mut s = lenet();
    s.std = vec![0.0];
    assert!(matches!(
        Model::init(s, &dev, DType::F32, 0),
        Err(Error::BadInput(_))
    ));
    // BatchNorm in training mode needs more than one value per channel (as PyTorch).
    let r = Model::init(spec(Arch::Resnet18, [1, 8, 8], 2), &dev, DType::F32, 0).unwrap();
    assert!(matches!(
        r.forward_t(&input(1, [1, 8, 8], 0, DType::F32), true),
        Err(Error::BadInput(_))
    ));
}

#[test]
fn save_load_round_trip_keeps_every_tensor_and_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    for (s, dtype) in [
        (mlp(), DType::F64),
        (lenet(), DType::F32),
        (spec(Arch::Resnet18, [3, 8, 8], 4), DType::F32),
    ] {
        let m = Model::init(s.clone(), &Device::Cpu, dtype, 5).unwrap();
        // Non-trivial running statistics.
        if matches!(s.arch, Arch::Resnet18) {
            m.forward_t(&input(4, s.input_shape, 9, dtype), true)
                .unwrap();
        }
        let path = dir.path().join("m.safetensors");
        m.save(&path).unwrap();
        let back = Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.spec(), m.spec());
        assert_eq!(back.dtype(), dtype);
        let (a, b) = (m.all_tensors(), back.all_tensors());
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(values(ta), values(tb), "{na}");
        }
        let x = input(3, s.input_shape, 2, dtype);
        assert_eq!(
            values(&m.logits(&x).unwrap()),
            values(&back.logits(&x).unwrap())
        );
        // Saving twice gives the same bytes (deterministic file), no temp file is left behind.
        let h1 = sha256_file(&path).unwrap();
        back.save(&path).unwrap();
        assert_eq!(h1, sha256_file(&path).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn sha256_file_matches_a_known_digest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(matches!(
        sha256_file(dir.path().join("none")),
        Err(Error::Io { .. })
    ));
}

/// Writes `tensors` with `meta` as a safetensors file.
fn write_st(path: &Path, tensors: Vec<(String, Tensor)>, meta: Option<HashMap<String, String>>) {
    std::fs::write(path, safetensors::serialize(tensors, meta).unwrap()).unwrap();
}

fn good_meta(s: &ModelSpec) -> HashMap<String, String> {
    HashMap::from([
        ("oodcert.format".to_string(), "oodcert-model-v1".to_string()),
        (
            "oodcert.spec".to_string(),
            serde_json::to_string(s).unwrap(),
        ),
    ])
}

fn expect_bad_file(path: &Path, needle: &str) {
    match Model::load(path, &Device::Cpu) {
        Err(e @ Error::BadFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "message `{msg}` lacks `{needle}`");
            assert!(
                msg.contains(&path.display().to_string()),
                "message `{msg}` lacks the path"
            );
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert_eq!(e.exit_code(), 2);
        }
        other => panic!("expected BadFile with `{needle}`, got {other:?}"),
    }
}

#[test]
fn broken_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = mlp();
    let m = Model::init(s.clone(), &Device::Cpu, DType::F32, 0).unwrap();
    let good = m.all_tensors();
    let p = |n: &str| dir.path().join(n);

    // Truncated file.
    m.save(p("full.safetensors")).unwrap();
    let bytes = std::fs::read(p("full.safetensors")).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(p("cut.safetensors"), &bytes[..cut]).unwrap();
        expect_bad_file(&p("cut.safetensors"), "safetensors");
    }
    // Missing / unexpected / wrong-shape / NaN tensors.
    let without: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "fc2.bias")
        .cloned()
        .collect();
    write_st(&p("missing.safetensors"), without, Some(good_meta(&s)));
    expect_bad_file(&p("missing.safetensors"), "missing tensor `fc2.bias`");

    let mut extra = good.clone();
    extra.push((
        "fc9.weight".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    ));
    write_st(&p("extra.safetensors"), extra, Some(good_meta(&s)));
    expect_bad_file(
        &p("extra.safetensors"),
        "unexpected tensor(s) not used by the model spec: fc9.weight",
    );

    let reshaped: Vec<_> = good
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                if n == "fc1.weight" {
                    t.reshape((16, 7)).unwrap()
                } else {
                    t.clone()
                },
            )
        })
        .collect();
    write_st(&p("shape.safetensors"), reshaped, Some(good_meta(&s)));
    expect_bad_file(
        &p("shape.safetensors"),
        "tensor `fc1.weight` has shape [16, 7]",
    );

    for bad in [f32::NAN, f32::INFINITY] {
        let poisoned: Vec<_> = good
            .iter()
            .map(|(n, t)| {
                if n == "fc3.bias" {
                    (
                        n.clone(),
                        Tensor::new(&[0.0f32, bad, 1.0], &Device::Cpu).unwrap(),
                    )
                } else {
                    (n.clone(), t.clone())
                }
            })
            .collect();
        write_st(&p("nan.safetensors"), poisoned, Some(good_meta(&s)));
        expect_bad_file(&p("nan.safetensors"), "non-finite");
    }
    // Mixed dtypes and integer tensors.
    let mixed: Vec<_> = good
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                if n == "fc1.bias" {
                    t.to_dtype(DType::F64).unwrap()
                } else {
                    t.clone()
                },
            )
        })
        .collect();
    write_st(&p("mixed.safetensors"), mixed, Some(good_meta(&s)));
    expect_bad_file(&p("mixed.safetensors"), "earlier tensors are");

    // Metadata: absent, bad JSON, unknown format, a spec that fails its check.
    write_st(&p("nometa.safetensors"), good.clone(), None);
    expect_bad_file(&p("nometa.safetensors"), "not an oodcert model file");
    let mut meta = good_meta(&s);
    meta.insert("oodcert.spec".into(), "{\"arch\": ".into());
    write_st(&p("json.safetensors"), good.clone(), Some(meta));
    expect_bad_file(&p("json.safetensors"), "bad `oodcert.spec` metadata JSON");
    let mut meta = good_meta(&s);
    meta.insert("oodcert.format".into(), "oodcert-model-v9".into());
    write_st(&p("fmt.safetensors"), good.clone(), Some(meta));
    expect_bad_file(&p("fmt.safetensors"), "unsupported model format");
    let mut bad_spec = s.clone();
    bad_spec.num_classes = 1;
    write_st(
        &p("spec.safetensors"),
        good.clone(),
        Some(good_meta(&bad_spec)),
    );
    expect_bad_file(&p("spec.safetensors"), "at least 2 classes");
    // Another architecture's spec: every tensor is checked against it.
    write_st(
        &p("arch.safetensors"),
        good.clone(),
        Some(good_meta(&lenet())),
    );
    expect_bad_file(&p("arch.safetensors"), "missing tensor `conv1.weight`");

    // Garbage and pickles.
    std::fs::write(
        p("garbage.safetensors"),
        b"hello, world, this is not a model",
    )
    .unwrap();
    expect_bad_file(&p("garbage.safetensors"), "safetensors");
    for (name, content) in [
        ("m.pt", b"anything".as_slice()),
        ("m.PTH", b"anything".as_slice()),
        ("zip.safetensors", b"PK\x03\x04rest".as_slice()),
        ("pickle.safetensors", b"\x80\x02}q\x00".as_slice()),
    ] {
        std::fs::write(p(name), content).unwrap();
        for r in [
            Model::load(p(name), &Device::Cpu).map(|_| ()),
            Model::load_pytorch(p(name), s.clone(), &Device::Cpu).map(|_| ()),
        ] {
            match r {
                Err(e @ Error::BadInput(_)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("pickle") && msg.contains("save_file"), "{msg}");
                }
                other => panic!("{name}: expected a pickle refusal, got {other:?}"),
            }
        }
    }
    assert!(matches!(
        Model::load(p("nope.safetensors"), &Device::Cpu),
        Err(Error::Io { .. })
    ));
}

/// A model file whose header length has the low byte 0x80 (1 in 32 headers, as they are padded
/// to multiples of 8) is safetensors, not a pickle (whose protocol byte is 0x80): it loads.
#[test]
fn a_header_length_starting_with_0x80_is_not_a_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::init(mlp(), &Device::Cpu, DType::F32, 3).unwrap();
    let path = dir.path().join("m.safetensors");
    m.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut n2 = n;
    while n2 % 256 != 0x80 {
        n2 += 8;
    }
    let mut padded = (n2 as u64).to_le_bytes().to_vec();
    padded.extend_from_slice(&bytes[8..8 + n]);
    padded.resize(8 + n2, b' ');
    padded.extend_from_slice(&bytes[8 + n..]);
    assert_eq!(padded[0], 0x80);
    std::fs::write(&path, &padded).unwrap();
    let back = Model::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.spec(), m.spec());
}
