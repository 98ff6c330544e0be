//! The closed-form dense step (`train::dense_step`) equals the autograd step (`train::step::
//! graph_step`, itself checked against finite differences in tests/train_penalty.rs): every loss
//! term, every per-row statistic and every weight gradient, for each penalty form and norm, with
//! and without Outlier Exposure, at T ≠ 1, two-way GReg+ rows and absent-class (DOS) models; in
//! f64 to 1e-9 and f32 to float rounding; and its gradients do not depend on the thread count.
//!
//! Needs CANDLE_GRAD_DO_NOT_DETACH=1 from process start (.cargo/config.toml sets it for tests).

mod common;

use candle_core::{DType, Device, Tensor};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::score::energy;
use oodcert::train::dense_step::{DenseNet, dense_step};
use oodcert::train::losses::{PenaltyForm, PenaltyNorm};
use oodcert::train::optim::Gradients;
use oodcert::train::step::{LossTerms, StepInput, StepResult, graph_step};

/// A 2-channel 3×3 input (the normalisation's channel lookup matters), hidden [6, 5].
fn model(outputs: usize, absent: bool, dtype: DType, seed: u64) -> Model {
    let spec = ModelSpec {
        arch: Arch::Mlp { hidden: vec![6, 5] },
        input_shape: [2, 3, 3],
        num_classes: outputs,
        mean: vec![0.3, 0.55],
        std: vec![0.7, 1.3],
    };
    let m = Model::init(spec, &Device::Cpu, dtype, seed).unwrap();
    if absent {
        m.into_absent_class().unwrap()
    } else {
        m
    }
}

/// Pseudo-random pixels in [0, 1] (splitmix64), `(n, 2, 3, 3)` f32 as the trainer's batches.
fn pixels(seed: u64, n: usize) -> Tensor {
    let v: Vec<f32> = common::splitmix_unit(seed, n * 18)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Tensor::from_vec(v, (n, 2, 3, 3), &Device::Cpu).unwrap()
}

struct Case {
    name: &'static str,
    outputs: usize,
    absent: bool,
    rows: (usize, usize, usize),
    form: PenaltyForm,
    norm: PenaltyNorm,
    temperature: f64,
    lambda_oe: f64,
    lambda_grad: f64,
}

/// The first case; the others change what they name.
const BASE: Case = Case {
    name: "per-sample l2",
    outputs: 4,
    absent: false,
    rows: (5, 6, 0),
    form: PenaltyForm::PerSample,
    norm: PenaltyNorm::L2,
    temperature: 1.0,
    lambda_oe: 0.0,
    lambda_grad: 0.7,
};

const CASES: [Case; 7] = [
    BASE,
    Case {
        name: "group-scaled l2, two-way",
        rows: (5, 3, 4),
        form: PenaltyForm::GroupScaled,
        ..BASE
    },
    Case {
        name: "per-sample l1, T = 2, OE",
        norm: PenaltyNorm::L1,
        temperature: 2.0,
        lambda_oe: 0.4,
        ..BASE
    },
    Case {
        name: "group-scaled l1, two-way, T = 0.5",
        outputs: 3,
        rows: (4, 2, 3),
        form: PenaltyForm::GroupScaled,
        norm: PenaltyNorm::L1,
        temperature: 0.5,
        lambda_grad: 1.3,
        ..BASE
    },
    Case {
        name: "absent class (DOS) with a penalty",
        absent: true,
        ..BASE
    },
    Case {
        name: "no penalty",
        lambda_grad: 0.0,
        ..BASE
    },
    Case {
        name: "ID only",
        rows: (7, 0, 0),
        ..BASE
    },
];

/// The case's batch and loss terms; margins at the medians of the ID and outlier energies, so
/// that both penalty masks are mixed.
fn setup(c: &Case, m: &Model, seed: u64) -> (StepInput, LossTerms) {
    let (n_in, n_low, n_high) = c.rows;
    let n = n_in + n_low + n_high;
    let x = pixels(seed, n);
    let labels: Vec<u32> = (0..n_in as u32)
        .map(|i| i % m.id_classes() as u32)
        .collect();
    let y = Tensor::from_vec(labels, n_in, &Device::Cpu).unwrap();
    let logits = m.logits(&x.to_dtype(m.dtype()).unwrap()).unwrap();
    let k = m.id_classes();
    let s: Vec<f64> = energy(&logits.narrow(1, 0, k).unwrap(), c.temperature)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    // Halfway between the two middle values: no row sits on a margin (where f32 and f64 energies
    // could mask it differently).
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            1 => v[0] + 1.0,
            l => 0.5 * (v[l / 2 - 1] + v[l / 2]),
        }
    };
    let terms = LossTerms {
        lambda_energy: 0.3,
        lambda_grad: c.lambda_grad,
        lambda_oe: c.lambda_oe,
        lambda_absent: if c.absent { 0.9 } else { 0.0 },
        m_in: median(&s[..n_in]),
        // (the margins cross here on purpose: a mid-range m_out masks half the outliers)
        m_out: median(&s[n_in..]),
        temperature: c.temperature,
        form: c.form,
        norm: c.norm,
    };
    let input = StepInput {
        x,
        y,
        n_in,
        n_low,
        n_high,
    };
    (input, terms)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn host(t: &Tensor) -> Vec<f64> {
    common::flat_f64(t)
}

/// Every field of the two results agrees to `tol` (relative); every trainable variable has a
/// gradient in both.
fn assert_same(name: &str, m: &Model, dense: &StepResult, graph: &StepResult, tol: f64) {
    let scalars = [
        ("loss", dense.loss, graph.loss),
        ("ce", dense.ce, graph.ce),
        ("loss_energy", dense.loss_energy, graph.loss_energy),
        ("loss_grad", dense.loss_grad, graph.loss_grad),
        (
            "loss_absent",
            dense.loss_absent.unwrap_or(-1.0),
            graph.loss_absent.unwrap_or(-1.0),
        ),
    ];
    for (what, a, b) in scalars {
        assert!(close(a, b, tol), "{name}: {what} {a} vs {b}");
    }
    assert_eq!(dense.correct, graph.correct, "{name}: correct");
    for (i, (a, b)) in dense.energies.iter().zip(&graph.energies).enumerate() {
        assert!(close(*a, *b, tol), "{name}: S[{i}] {a} vs {b}");
    }
    let (ga, gb) = (
        dense.grad_norms.as_ref().unwrap(),
        graph.grad_norms.as_ref().unwrap(),
    );
    for (i, (a, b)) in ga.iter().zip(gb).enumerate() {
        assert!(close(*a, *b, tol), "{name}: ‖∇S‖[{i}] {a} vs {b}");
    }
    let vars = m.trainable_vars();
    assert_eq!(vars.len(), 6, "three Linear layers");
    for (pname, var) in &vars {
        let a = host(
            &dense
                .grads
                .grad(var)
                .unwrap_or_else(|| panic!("{name}: dense {pname}")),
        );
        let b = host(
            &graph
                .grads
                .grad(var)
                .unwrap_or_else(|| panic!("{name}: graph {pname}")),
        );
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: {pname} has a zero gradient");
        for (j, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + scale),
                "{name}: ∂L/∂{pname}[{j}] closed form {x} vs autograd {y}"
            );
        }
    }
}

#[test]
fn closed_form_step_equals_autograd_in_f64() {
    assert_eq!(
        std::env::var("CANDLE_GRAD_DO_NOT_DETACH").as_deref(),
        Ok("1"),
        "run through cargo test (.cargo/config.toml sets the flag)"
    );
    for (seed, c) in CASES.iter().enumerate() {
        let m = model(c.outputs, c.absent, DType::F64, seed as u64);
        let net = DenseNet::of(&m).expect("an MLP is a dense ReLU net");
        let (input, terms) = setup(c, &m, 100 + seed as u64);
        let dense = dense_step(&net, &terms, &input, true).unwrap();
        let graph = graph_step(&terms, &m, &input, true).unwrap();
        assert_same(c.name, &m, &dense, &graph, 1e-9);
        // The penalty is live where asked for (the case tests its second-order terms).
        assert_eq!(
            dense.loss_grad > 0.0,
            c.lambda_grad > 0.0 && c.rows.1 > 0,
            "{}",
            c.name
        );
    }
}

#[test]
fn closed_form_step_equals_autograd_in_f32() {
    for (seed, c) in CASES.iter().enumerate() {
        let m = model(c.outputs, c.absent, DType::F32, 40 + seed as u64);
        let net = DenseNet::of(&m).unwrap();
        let (input, terms) = setup(c, &m, 200 + seed as u64);
        let dense = dense_step(&net, &terms, &input, true).unwrap();
        let graph = graph_step(&terms, &m, &input, true).unwrap();
        assert_same(c.name, &m, &dense, &graph, 2e-5);
    }
}

#[test]
fn closed_form_gradients_do_not_depend_on_the_thread_count() {
    let c = &CASES[1];
    let spec = ModelSpec {
        arch: Arch::Mlp {
            hidden: vec![300, 200],
        },
        input_shape: [2, 3, 3],
        num_classes: 4,
        mean: vec![0.3, 0.55],
        std: vec![0.7, 1.3],
    };
    // Wide enough for the GEMMs to split across threads.
    let m = Model::init(spec, &Device::Cpu, DType::F32, 5).unwrap();
    let net = DenseNet::of(&m).unwrap();
    let (input, terms) = setup(c, &m, 9);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let r = pool.install(|| dense_step(&net, &terms, &input, true).unwrap());
        m.trainable_vars()
            .iter()
            .flat_map(|(_, v)| host(&r.grads.grad(v).unwrap()))
            .map(f64::to_bits)
            .collect::<Vec<_>>()
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(4));
}

#[test]
fn only_dense_relu_nets_on_the_cpu_take_the_closed_form() {
    let lenet = ModelSpec {
        arch: Arch::Lenet,
        input_shape: [1, 28, 28],
        num_classes: 10,
        mean: vec![0.1],
        std: vec![0.3],
    };
    let m = Model::init(lenet, &Device::Cpu, DType::F32, 0).unwrap();
    assert!(DenseNet::of(&m).is_none());
    let mlp = model(4, false, DType::F32, 0);
    assert!(DenseNet::of(&mlp).is_some());
    // Half precision: the graph.
    let half = mlp.to_dtype(DType::F16);
    if let Ok(h) = half {
        assert!(DenseNet::of(&h).is_none());
    }
}

#[test]
fn out_of_range_labels_are_an_error_not_a_panic() {
    let c = &CASES[0];
    let m = model(c.outputs, false, DType::F32, 1);
    let net = DenseNet::of(&m).unwrap();
    let (mut input, terms) = setup(c, &m, 3);
    input.y = Tensor::from_vec(vec![9u32; c.rows.0], c.rows.0, &Device::Cpu).unwrap();
    let err = dense_step(&net, &terms, &input, true).err().unwrap();
    assert!(err.to_string().contains("label 9"), "{err}");
}

// ---- through the trainer -----------------------------------------------------------------------

/// 8×8 toy ID data (2 classes: bright left or right half) and outliers (bright top half).
fn toy_data(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut state = 11u64;
    let mut draw = |n: usize, bright: &dyn Fn(usize, usize, usize) -> bool| {
        let mut px = Vec::with_capacity(n * 64);
        for i in 0..n {
            for p in 0..64 {
                let base = if bright(i, p / 8, p % 8) { 170 } else { 30 };
                px.push((base + common::lcg(&mut state) % 80) as u8);
            }
        }
        px
    };
    let id_px = draw(48, &|i, _, x| (x < 4) == (i % 2 == 0));
    let aux_px = draw(64, &|_, y, _| y < 4);
    let labels: Vec<u8> = (0..48).map(|i| (i % 2) as u8).collect();
    let id = common::write_idx(dir, "id", [48, 8, 8], &id_px, Some(&labels));
    let aux = common::write_idx(dir, "aux", [64, 8, 8], &aux_px, None);
    (id, aux)
}

fn greg_config(id: &std::path::Path, aux: &std::path::Path, backward: &str) -> String {
    format!(
        r#"seed = 4
[data]
id = "path:{}"
aux = "path:{}"
[model]
arch = "mlp"
hidden = [32, 16]
[optim]
kind = "sgd"
lr = 0.05
momentum = 0.9
nesterov = true
weight_decay = 5e-4
[schedule]
kind = "cosine"
[train]
epochs = 10
batch_size = 16
max_steps = 20
log_every = 1
backward = "{backward}"
[loss]
lambda_energy = 0.1
lambda_grad = 1.0
m_in = -3.0
m_out = -1.0
[sampler]
kind = "random"
"#,
        id.display(),
        aux.display()
    )
}

/// A GReg run on the closed-form route logs what the autograd route logs (to f32 rounding grown
/// over 20 steps) and ends at the same weights; an unknown `train.backward` is refused by name.
#[test]
fn trainer_routes_agree_and_the_choice_is_validated() {
    use oodcert::train::{TrainConfig, TrainOptions, train};
    let dir = tempfile::tempdir().unwrap();
    let (id, aux) = toy_data(dir.path());
    let run = |backward: &str| {
        let cfg = TrainConfig::from_toml(&greg_config(&id, &aux, backward)).unwrap();
        let out = dir.path().join(backward);
        let opts = TrainOptions {
            out: out.clone(),
            data_root: dir.path().to_path_buf(),
            device: Device::Cpu,
            resume: false,
            progress: false,
        };
        train(&cfg, &opts).unwrap();
        let mut log = csv::Reader::from_path(out.join("train_log.csv")).unwrap();
        let head = log.headers().unwrap().clone();
        let rows: Vec<Vec<f64>> = log
            .records()
            .map(|r| r.unwrap().iter().map(|v| v.parse().unwrap()).collect())
            .collect();
        let m = Model::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        let w: Vec<f64> = m
            .trainable_vars()
            .iter()
            .flat_map(|(_, v)| host(v.as_tensor()))
            .collect();
        (head, rows, w)
    };
    let (head, fast, w_fast) = run("auto");
    let (_, slow, w_slow) = run("autograd");
    assert_eq!(fast.len(), 20);
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    // The penalty is live: both masks catch rows at these margins.
    assert!(fast.iter().any(|r| r[col("loss_grad")] > 0.0));
    for (a, b) in fast.iter().zip(&slow) {
        for (j, name) in head.iter().enumerate() {
            if a[j].is_nan() && b[j].is_nan() {
                continue;
            }
            assert!(
                close(a[j], b[j], 1e-3),
                "step {}: {name} {} vs {}",
                a[0],
                a[j],
                b[j]
            );
        }
    }
    // (Two routes ran: f32 rounding differs somewhere in 20 steps.)
    assert_ne!(w_fast, w_slow, "both runs took the same route");
    for (a, b) in w_fast.iter().zip(&w_slow) {
        assert!((a - b).abs() < 1e-3, "final weights {a} vs {b}");
    }
    let err = TrainConfig::from_toml(&greg_config(&id, &aux, "fast"))
        .and_then(|c| c.check().map(|_| c))
        .err()
        .unwrap();
    assert!(err.to_string().contains("train.backward"), "{err}");
}
