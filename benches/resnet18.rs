//! ResNet-18 (32×32 CIFAR variant, 3×32×32 inputs) on the CPU, f32: inference throughput at a
//! batch (eval mode, `Classifier::logits_no_grad`), the time of one cross-entropy SGD training step
//! or of one exact GReg step (the trainer's `graph_step`: half the batch ID, half outliers, CE +
//! 0.1·L_S + L_∇ with the penalty on every row, ∇ₓS as `oodcert train` gets it: the explicit input
//! gradient, first order, since BatchNorm and BasicBlock have rules), for one process whose peak memory `/usr/bin/time -v` can measure. The
//! PyTorch side is `analysis/bench/inference_torch.py --resnet18`; both in one go:
//! `analysis/bench/inference.sh`.
//!
//!     cargo bench --bench resnet18 -- infer|train|greg [batch] [reps] [model.safetensors]
//!
//! Prints the median over `reps` timed runs after one warm-up. Weights: the file if given, else a
//! fresh initialisation (throughput does not depend on them). Inputs: uniform [0, 1), seed fixed.

use candle_core::{DType, Device, Tensor};
use oodcert::model::{Arch, Classifier, Model, ModelSpec};
use oodcert::train::config::OptimConfig;
use oodcert::train::losses::cross_entropy;
use oodcert::train::losses::{PenaltyForm, PenaltyNorm};
use oodcert::train::optim::Optimizer;
use oodcert::train::second_order;
use oodcert::train::step::{LossTerms, StepInput, graph_step, needs_second_order};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

/// The binary's allocator (src/main.rs), so that the bench measures what `oodcert` runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn model(path: Option<&str>) -> Model {
    match path {
        Some(p) => Model::load(p, &Device::Cpu).expect("model file"),
        None => {
            let spec = ModelSpec {
                arch: Arch::Resnet18,
                input_shape: [3, 32, 32],
                num_classes: 10,
                mean: vec![0.5, 0.5, 0.5],
                std: vec![0.25, 0.25, 0.25],
            };
            Model::init(spec, &Device::Cpu, DType::F32, 0).expect("model")
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: first statement of main, before any thread exists (as in src/main.rs).
    unsafe { second_order::configure_at_startup() };
    oodcert::allocator::keep_freed_memory();
    // `cargo bench` appends `--bench`; the positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("infer");
    let batch: usize = args.get(1).map_or(500, |s| s.parse().expect("batch"));
    let reps: usize = args.get(2).map_or(5, |s| s.parse().expect("reps"));
    let model = model(args.get(3).map(String::as_str));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let v: Vec<f32> = (0..batch * 3 * 32 * 32)
        .map(|_| rng.random::<f32>())
        .collect();
    let x = Tensor::from_vec(v, (batch, 3, 32, 32), &Device::Cpu).expect("input batch");
    let mut times = Vec::with_capacity(reps);
    match mode {
        "infer" => {
            for i in 0..=reps {
                let t = Instant::now();
                black_box(model.logits_no_grad(black_box(&x)).expect("logits"));
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            let med = median(times);
            println!(
                "resnet18 infer: median {:.1} ms per batch of {batch}, {:.0} images/s ({reps} runs)",
                med * 1e3,
                batch as f64 / med
            );
        }
        "train" => {
            let y = Tensor::from_vec(
                (0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
                batch,
                &Device::Cpu,
            )
            .expect("labels");
            let cfg = OptimConfig {
                kind: "sgd".into(),
                ..OptimConfig::default()
            };
            let mut opt = Optimizer::new(&cfg, model.trainable_vars());
            for i in 0..=reps {
                let t = Instant::now();
                let trace = model.forward_traced(&x, true).expect("forward");
                let loss = cross_entropy(&trace.logits, &y).expect("loss");
                let grads = loss.backward().expect("backward");
                opt.step(&grads, 0.01).expect("step");
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            println!(
                "resnet18 train: median {:.2} s per CE step at batch {batch} ({reps} runs)",
                median(times)
            );
        }
        "greg" => {
            let n_in = batch / 2;
            let y = Tensor::from_vec(
                (0..n_in as u32).map(|i| i % 10).collect::<Vec<_>>(),
                n_in,
                &Device::Cpu,
            )
            .expect("labels");
            let cfg = OptimConfig {
                kind: "sgd".into(),
                ..OptimConfig::default()
            };
            let mut opt = Optimizer::new(&cfg, model.trainable_vars());
            // Margins that mask every row: the penalty covers the whole batch (L_S is then 0).
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
                y,
                n_in,
                n_low: batch - n_in,
                n_high: 0,
            };
            // As the trainer: on a thread of its own only when the step differentiates a reverse
            // pass (not for ResNet-18 on the CPU since its explicit input gradient).
            second_order::run(needs_second_order(&terms, &model), || {
                for i in 0..=reps {
                    let t = Instant::now();
                    let r = graph_step(&terms, &model, &input, false)?;
                    opt.step(&r.grads, 0.01)?;
                    if i > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
                Ok(())
            })
            .expect("GReg steps");
            println!(
                "resnet18 greg: median {:.2} s per exact GReg step at batch {n_in}+{} ({reps} runs)",
                median(times),
                batch - n_in
            );
        }
        other => panic!("mode must be infer, train or greg, got {other}"),
    }
}
