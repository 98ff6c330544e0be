//! Soundness and usefulness of the RecurJac local bound (src/lipschitz/recurjac.rs): brute force
//! on tiny MLPs (gradient grid, difference quotients, activation-pattern enumeration) never
//! exceeds it; sampling/PGD lower ≤ RecurJac ≤ FastLip on random MLPs and balls; RecurJac is
//! strictly tighter than FastLip on some samples; unsupported networks are refused clearly.

mod lipschitz_common;
use lipschitz_common::*;

use oodcert::bounds::net::{LinearOp, Node};
use oodcert::bounds::{Ball, Net, Norm};
use oodcert::error::Error;
use oodcert::lipschitz::empirical::{GradOracle, PgdConfig, lower_by_pgd, lower_by_sampling};
use oodcert::lipschitz::local::{Head, PreBounds, fastlip_with, pre_bounds};
use oodcert::lipschitz::recurjac::{recurjac_with, unsupported};
use oodcert::model::Arch;
use rand::Rng;

const PRES: [PreBounds; 2] = [PreBounds::Ibp, PreBounds::Crown { max_dim: 10_000 }];

/// Tiny MLPs (2 inputs): a 300×300 grid of gradient norms and 20 000 difference quotients never
/// exceed the RecurJac value itself (not only the min with FastLip).
#[test]
fn tiny_mlp_grid_never_exceeds_recurjac() {
    for seed in 0..5u64 {
        let (m, net) = mlp([1, 1, 2], &[5, 4], 3, 70 + seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 4096,
        };
        let mut r = rng(seed);
        let x = random_image(2, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.05, 0.5, 2.0] {
                let ball = Ball::new(x.clone(), eps, norm, false).unwrap();
                let rj = recurjac_with(&net, &ball, 1.0, PRES[(seed % 2) as usize]).unwrap();
                let bound = rj.recurjac_value;
                let g = 300;
                let mut pts = Vec::new();
                for i in 0..=g {
                    for j in 0..=g {
                        let p = vec![
                            x[0] - eps + 2.0 * eps * i as f64 / g as f64,
                            x[1] - eps + 2.0 * eps * j as f64 / g as f64,
                        ];
                        if ball.contains(&p) {
                            pts.push(p);
                        }
                    }
                }
                let sg = oracle.score_grads(&pts).unwrap();
                for (p, (_, gr)) in pts.iter().zip(&sg) {
                    assert!(
                        rj.grad.contains(gr),
                        "seed {seed} {norm:?} eps {eps}: ∇S{p:?} = {gr:?} outside {:?}",
                        rj.grad
                    );
                }
                let max_grad = sg
                    .iter()
                    .map(|(_, g)| norm.dual_norm(g))
                    .fold(0.0, f64::max);
                assert!(
                    max_grad <= bound,
                    "seed {seed} {norm:?} eps {eps}: grid grad {max_grad} > RecurJac {bound}"
                );
                let mut worst = 0.0f64;
                for _ in 0..20_000 {
                    let a = r.random_range(0..pts.len());
                    let b = r.random_range(0..pts.len());
                    let dx: Vec<f64> = pts[a].iter().zip(&pts[b]).map(|(u, v)| u - v).collect();
                    let dist = norm.norm(&dx);
                    if dist > 1e-6 {
                        worst = worst.max((sg[a].0 - sg[b].0).abs() / dist);
                    }
                }
                assert!(
                    worst <= bound * (1.0 + 1e-9),
                    "seed {seed} {norm:?} eps {eps}: quotient {worst} > RecurJac {bound}"
                );
            }
        }
    }
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// −Jᵀp for the MLP `net` with ReLU derivative pattern `d` (one 0/1 vector per hidden layer).
fn grad_for_pattern(net: &Net, d: &[Vec<f64>], p: &[f64]) -> Vec<f64> {
    let mut g: Vec<f64> = p.iter().map(|v| -v).collect();
    let mut layer = d.len();
    for node in net.nodes.iter().rev() {
        match node {
            Node::Affine(a) => match &a.op {
                LinearOp::Dense(w) => {
                    let mut x = vec![0.0; w.inp];
                    for (o, go) in g.iter().enumerate() {
                        for (i, xi) in x.iter_mut().enumerate() {
                            *xi += w.w[o * w.inp + i] * go;
                        }
                    }
                    g = x;
                }
                LinearOp::Diag(s) => g = g.iter().zip(&s.scale).map(|(g, s)| g * s).collect(),
                _ => panic!("MLP only"),
            },
            Node::Relu => {
                layer -= 1;
                g = g.iter().zip(&d[layer]).map(|(g, d)| g * d).collect();
            }
            _ => panic!("MLP only"),
        }
    }
    g
}

/// Activation-region enumeration on tiny MLPs (3 inputs): every 0/1 derivative pattern allowed
/// by the pre-activation boxes, with p = softmax at corners and random points of the logit box,
/// gives a gradient −Jᵀp inside the RecurJac box and with ‖·‖_q below the RecurJac value. This
/// covers the whole relaxation, not only the patterns the ball realises.
#[test]
fn tiny_mlp_pattern_enumeration_stays_inside_recurjac() {
    let mut checked = 0usize;
    for seed in 0..8u64 {
        let (_m, net) = mlp([1, 1, 3], &[4, 4], 3, 90 + seed);
        let mut r = rng(200 + seed);
        let x = random_image(3, &mut r);
        for norm in [Norm::L2, Norm::Linf] {
            for eps in [0.1, 0.6] {
                let ball = Ball::new(x.clone(), eps, norm, seed % 2 == 0).unwrap();
                let pre = PRES[(seed / 2 % 2) as usize];
                let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                let (traces, logits) = pre_bounds(&net, &ball, pre).unwrap();
                let sets: Vec<Vec<(f64, f64)>> = net
                    .nodes
                    .iter()
                    .zip(&traces)
                    .filter(|(n, _)| matches!(n, Node::Relu))
                    .map(|(_, t)| {
                        let b = t.input();
                        (0..b.len())
                            .map(|j| oodcert::bounds::relu::derivative_set(b.lo[j], b.hi[j]))
                            .collect()
                    })
                    .collect();
                let free: Vec<(usize, usize)> = sets
                    .iter()
                    .enumerate()
                    .flat_map(|(l, s)| {
                        s.iter()
                            .enumerate()
                            .filter(|(_, d)| d.0 != d.1)
                            .map(move |(j, _)| (l, j))
                    })
                    .collect();
                assert!(free.len() <= 12);
                let k = logits.len();
                let mut ps: Vec<Vec<f64>> = (0..(1 << k))
                    .map(|mask: usize| {
                        let z: Vec<f64> = (0..k)
                            .map(|i| {
                                if mask >> i & 1 == 1 {
                                    logits.hi[i]
                                } else {
                                    logits.lo[i]
                                }
                            })
                            .collect();
                        softmax(&z)
                    })
                    .collect();
                for _ in 0..20 {
                    let z: Vec<f64> = (0..k)
                        .map(|i| r.random_range(logits.lo[i]..=logits.hi[i]))
                        .collect();
                    ps.push(softmax(&z));
                }
                for mask in 0..(1usize << free.len()) {
                    let mut d: Vec<Vec<f64>> = sets
                        .iter()
                        .map(|s| s.iter().map(|v| v.0).collect())
                        .collect();
                    for (b, &(l, j)) in free.iter().enumerate() {
                        d[l][j] = (mask >> b & 1) as f64;
                    }
                    for p in &ps {
                        let g = grad_for_pattern(&net, &d, p);
                        let tol = 1e-12 * (1.0 + g.iter().map(|v| v.abs()).sum::<f64>());
                        for (i, gi) in g.iter().enumerate() {
                            assert!(
                                rj.grad.lo[i] - tol <= *gi && *gi <= rj.grad.hi[i] + tol,
                                "seed {seed} {norm:?} eps {eps}: pattern {mask} coordinate {i}: \
                                 {gi} outside [{}, {}]",
                                rj.grad.lo[i],
                                rj.grad.hi[i]
                            );
                        }
                        assert!(norm.dual_norm(&g) <= rj.recurjac_value * (1.0 + 1e-12));
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} pattern/p pairs checked");
}

/// Random MLPs, ℓ2 and ℓ∞ balls, with and without the pixel box, IBP and CROWN boxes:
/// sampling/PGD lower ≤ RecurJac ≤ FastLip (same boxes, box ∩ simplex head), and the reported
/// value is the minimum of the sound rules.
#[test]
fn lower_recurjac_fastlip_chain_on_random_mlps() {
    for (hidden, seed) in [(vec![20, 16], 5u64), (vec![12, 12, 10], 6)] {
        let (m, net) = mlp([1, 4, 4], &hidden, 4, seed);
        let oracle = GradOracle {
            model: &m,
            temperature: 1.0,
            batch: 64,
        };
        let mut r = rng(seed + 10);
        for norm in [Norm::L2, Norm::Linf] {
            for (eps, unit_box) in [(0.01, false), (0.1, true), (0.3, false)] {
                let eps = if norm == Norm::Linf { eps / 4.0 } else { eps };
                let x = random_image(16, &mut r);
                let ball = Ball::new(x, eps, norm, unit_box).unwrap();
                let lo = lower_by_sampling(&oracle, &ball, 32, &mut r).unwrap().max(
                    lower_by_pgd(
                        &oracle,
                        &ball,
                        &PgdConfig {
                            steps: 8,
                            restarts: 2,
                            ..Default::default()
                        },
                        &mut r,
                    )
                    .unwrap(),
                );
                for pre in PRES {
                    let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
                    let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
                    let fl_box = fl.simplex_value.unwrap();
                    assert!(
                        lo <= rj.recurjac_value,
                        "{hidden:?} {norm:?} {eps}: lower {lo} > RecurJac {}",
                        rj.recurjac_value
                    );
                    assert!(
                        rj.recurjac_value <= fl_box * (1.0 + 1e-12),
                        "{hidden:?} {norm:?} {eps}: RecurJac {} > FastLip {fl_box}",
                        rj.recurjac_value
                    );
                    assert_eq!(rj.fastlip_value, fl.value);
                    assert_eq!(rj.value, rj.recurjac_value.min(fl.value));
                }
            }
        }
    }
}

/// RecurJac must beat FastLip strictly on some samples of a random MLP (a regression to the
/// interval rule would fail here), in both norms.
#[test]
fn recurjac_is_strictly_tighter_than_fastlip_on_some_samples() {
    let (_m, net) = mlp([1, 4, 4], &[24, 24], 5, 17);
    let mut r = rng(18);
    for norm in [Norm::L2, Norm::Linf] {
        let mut wins = 0;
        let eps = if norm == Norm::L2 { 0.1 } else { 0.02 };
        for _ in 0..6 {
            let x = random_image(16, &mut r);
            let ball = Ball::new(x, eps, norm, false).unwrap();
            let rj = recurjac_with(&net, &ball, 1.0, PreBounds::Crown { max_dim: 10_000 }).unwrap();
            if rj.recurjac_value < rj.fastlip_value * (1.0 - 1e-6) {
                wins += 1;
            }
        }
        assert!(
            wins >= 3,
            "{norm:?}: RecurJac beat FastLip on only {wins} of 6 samples"
        );
    }
}

/// At ε = 0 every neuron is stable: RecurJac gives ‖∇S(x)‖_q up to rounding.
#[test]
fn recurjac_at_radius_zero_is_the_gradient_norm() {
    let (m, net) = mlp([1, 3, 3], &[10, 10], 4, 5);
    let oracle = GradOracle {
        model: &m,
        temperature: 1.0,
        batch: 8,
    };
    let mut r = rng(9);
    for norm in [Norm::L2, Norm::Linf] {
        let x = random_image(9, &mut r);
        let ball = Ball::new(x.clone(), 0.0, norm, false).unwrap();
        let g = oracle.grad_norms(&[x], norm).unwrap()[0];
        let l = recurjac_with(&net, &ball, 1.0, PreBounds::Ibp)
            .unwrap()
            .recurjac_value;
        assert!(
            g <= l && l <= g * (1.0 + 1e-9),
            "{norm:?}: grad {g} RecurJac {l}"
        );
    }
}

#[test]
fn unsupported_networks_are_refused_with_a_reason() {
    for (arch, shape, why) in [
        (Arch::Lenet, [1, 12, 12], "max-pool"),
        (Arch::Resnet18, [3, 8, 8], "residual"),
    ] {
        let (_m, net) = model(arch, shape, 3, 1);
        let reason = unsupported(&net).expect("should be unsupported");
        assert!(reason.contains(why), "{reason}");
        let d: usize = shape.iter().product();
        let ball = Ball::new(vec![0.5; d], 0.01, Norm::Linf, false).unwrap();
        match recurjac_with(&net, &ball, 1.0, PreBounds::Ibp) {
            Err(Error::BadInput(msg)) => assert!(msg.contains(why), "{msg}"),
            other => panic!("expected BadInput, got {other:?}"),
        }
    }
    let (_m, net) = mlp([1, 2, 2], &[3], 2, 1);
    assert!(unsupported(&net).is_none());
}

#[test]
#[ignore = "timing probe"]
fn timing_probe_mnist_mlp() {
    let (_m, net) = mlp([1, 28, 28], &[256, 256], 10, 3);
    let mut r = rng(4);
    let x = random_image(784, &mut r);
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.01)] {
        let ball = Ball::new(x.clone(), eps, norm, true).unwrap();
        let pre = PreBounds::Crown { max_dim: 4096 };
        let t = std::time::Instant::now();
        let fl = fastlip_with(&net, &ball, 1.0, Head::Simplex, pre).unwrap();
        eprintln!("fastlip {norm:?} {:?} {}", t.elapsed(), fl.value);
        let t = std::time::Instant::now();
        let rj = recurjac_with(&net, &ball, 1.0, pre).unwrap();
        eprintln!(
            "recurjac {norm:?} {:?} rj {} fl {} rule {:?}",
            t.elapsed(),
            rj.recurjac_value,
            rj.fastlip_value,
            rj.rule
        );
    }
}

/// `OODCERT_PROBE_MODEL=FILE cargo test --release --test lipschitz_recurjac probe -- --ignored
/// --nocapture`: RecurJac heads on a trained model at random valid images (timing and tightness).
#[test]
#[ignore = "probe on a trained model"]
fn probe_trained_model() {
    let Ok(path) = std::env::var("OODCERT_PROBE_MODEL") else {
        return;
    };
    let m = oodcert::model::Model::load(std::path::Path::new(&path), &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let net = Net::from_model(&m).unwrap();
    let mut r = rng(1);
    for (norm, eps) in [(Norm::L2, 0.1), (Norm::Linf, 0.01)] {
        let x: Vec<f64> = (0..net.input_dim())
            .map(|_| if r.random::<f64>() < 0.2 { 1.0 } else { 0.0 })
            .collect();
        let ball = Ball::new(x, eps, norm, true).unwrap();
        let t = std::time::Instant::now();
        let rj = recurjac_with(&net, &ball, 1.0, PreBounds::Crown { max_dim: 4096 }).unwrap();
        eprintln!(
            "{norm:?}: {:?} fastlip {} energy-row {} class-rows {} recurjac {} rule {:?}",
            t.elapsed(),
            rj.fastlip_value,
            rj.energy_row_value,
            rj.class_rows_value,
            rj.recurjac_value,
            rj.rule
        );
    }
}
