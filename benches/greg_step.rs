//! One exact GReg training step (Sharifi et al. 2024: CE + λ_S·L_S + λ_∇·L_∇ by double backprop,
//! SGD update) on a batch of 64 ID + 64 auxiliary 28×28 images, for the MLP and LeNet; the PyTorch
//! side is analysis/bench/greg_step_torch.py (run both with analysis/bench/greg_step.sh).

use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use oodcert::model::{Arch, Model, ModelSpec};
use oodcert::score::energy;
use oodcert::train::config::OptimConfig;
use oodcert::train::dense_step::{DenseNet, dense_step};
use oodcert::train::losses::{
    InputGradient, PenaltyForm, PenaltyNorm, cross_entropy, energy_margin, grad_penalty,
};
use oodcert::train::optim::Optimizer;
use oodcert::train::step::{LossTerms, StepInput};

fn inputs(n: usize, seed: u64) -> Tensor {
    let mut s = seed;
    let v: Vec<f32> = (0..n * 784)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::from_vec(v, (n, 1, 28, 28), &Device::Cpu).unwrap()
}

/// The binary's allocator (src/main.rs), so that the bench measures what `oodcert train` runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How the step gets the input gradient of the energies.
#[derive(Clone, Copy, PartialEq)]
enum Penalty {
    /// No penalty: CE + energy margins only.
    None,
    /// The trainer's route: the explicit layer-by-layer input gradient.
    Explicit,
    /// A full autograd reverse pass (the route for models without explicit rules).
    Autograd,
}

fn step(model: &Model, opt: &mut Optimizer, x: &Tensor, y: &Tensor, penalty: Penalty) {
    // As in the trainer: the input is a variable only when autograd must deliver ∇ₓS.
    let xv = Var::from_tensor(x).unwrap();
    let input = if penalty == Penalty::Autograd {
        xv.as_tensor()
    } else {
        x
    };
    let trace = model.forward_traced(input, true).unwrap();
    let logits = &trace.logits;
    let ce = cross_entropy(&logits.narrow(0, 0, 64).unwrap(), y).unwrap();
    let s = energy(logits, 1.0).unwrap();
    let ls = energy_margin(
        &s.narrow(0, 0, 64).unwrap(),
        &s.narrow(0, 64, 64).unwrap(),
        -25.0,
        -7.0,
    )
    .unwrap();
    let mut loss = (ce + (ls * 0.1).unwrap()).unwrap();
    if penalty != Penalty::None {
        let source = if penalty == Penalty::Explicit {
            InputGradient::Explicit {
                model,
                trace: &trace,
                id_classes: 10,
                temperature: 1.0,
            }
        } else {
            InputGradient::Autograd(xv.as_tensor())
        };
        // Margins that mask every row, so the penalty is computed for the whole batch.
        let p = grad_penalty(
            source,
            &s,
            64,
            64..128,
            1e9,
            -1e9,
            PenaltyForm::PerSample,
            PenaltyNorm::L2,
        )
        .unwrap();
        loss = (loss + p.loss).unwrap();
    }
    let grads = loss.backward().unwrap();
    opt.step(&grads, 0.01).unwrap();
}

/// The trainer's route for dense ReLU nets: the closed-form step (`train::dense_step`). Its one
/// pair of margins serves L_S and the penalty masks, so they are set to mask every row (as the
/// graph steps' penalty margins do); L_S is then 0 but computed all the same.
fn dense(model: &Model, opt: &mut Optimizer, x: &Tensor, y: &Tensor) {
    let net = DenseNet::of(model).unwrap();
    let terms = LossTerms {
        lambda_energy: 0.1,
        lambda_grad: 1.0,
        lambda_oe: 0.0,
        lambda_absent: 0.0,
        m_in: 1e9,
        m_out: -1e9,
        temperature: 1.0,
        form: PenaltyForm::PerSample,
        norm: PenaltyNorm::L2,
    };
    let input = StepInput {
        x: x.clone(),
        y: y.clone(),
        n_in: 64,
        n_low: 64,
        n_high: 0,
    };
    let r = dense_step(&net, &terms, &input, false).unwrap();
    opt.step(&r.grads, 0.01).unwrap();
}

fn bench(c: &mut Criterion) {
    assert!(
        oodcert::model::double_backprop_enabled().unwrap(),
        "run through cargo bench (.cargo/config.toml sets CANDLE_GRAD_DO_NOT_DETACH)"
    );
    let x = inputs(128, 1);
    let y = Tensor::from_vec(
        (0..64u32).map(|i| i % 10).collect::<Vec<_>>(),
        64,
        &Device::Cpu,
    )
    .unwrap();
    for (name, arch) in [
        (
            "mlp",
            Arch::Mlp {
                hidden: vec![256, 256],
            },
        ),
        ("lenet", Arch::Lenet),
    ] {
        let spec = ModelSpec {
            arch,
            input_shape: [1, 28, 28],
            num_classes: 10,
            mean: vec![0.1307],
            std: vec![0.3081],
        };
        let model = Model::init(spec, &Device::Cpu, DType::F32, 0).unwrap();
        let cfg = OptimConfig {
            kind: "sgd".into(),
            ..OptimConfig::default()
        };
        let mut opt = Optimizer::new(&cfg, model.trainable_vars());
        let mut g = c.benchmark_group(format!("greg_step_{name}"));
        g.sample_size(10);
        if DenseNet::of(&model).is_some() {
            g.bench_function("exact GReg, closed form (the trainer's route)", |b| {
                b.iter(|| dense(&model, &mut opt, &x, &y))
            });
        }
        for (label, penalty) in [
            ("plain (CE + energy)", Penalty::None),
            ("exact GReg (double backprop)", Penalty::Explicit),
            ("exact GReg, autograd input gradient", Penalty::Autograd),
        ] {
            g.bench_function(label, |b| {
                b.iter(|| step(&model, &mut opt, &x, &y, penalty))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
